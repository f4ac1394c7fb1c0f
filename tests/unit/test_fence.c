/* SPDX-License-Identifier: MIT */
/* test_fence.c - unit tests of the worker's fencing check
 * (src/worker/fence.h): an epoch older than the newest seen is refused
 * and counted, equal and newer ones are admitted, the newest is written
 * to the data directory before it is admitted and read back by a new
 * open (a restarted worker still refuses the old epoch), and a damaged
 * file stops the open. */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "echofs/util.h"
#include "worker/fence.h"

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	char *dir = strdup("/tmp/efs-fence-XXXXXX");
	if (!dir || !mkdtemp(dir)) {
		free(dir);
		return -1;
	}
	*state = dir;
	return 0;
}

static int teardown(void **state)
{
	char *dir = *state;
	nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	free(dir);
	return 0;
}

static long read_epoch_file(const char *dir, char *out, size_t cap)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, EFS_FENCE_FILE);
	return efs_read_file(path, out, cap);
}

static void test_older_refused_newer_admitted(void **state)
{
	const char *dir = *state;
	struct efs_fence f;
	char text[32];

	assert_int_equal(efs_fence_open(&f, dir), 0);
	assert_int_equal(efs_fence_newest(&f), 0);
	/* no file until an epoch is seen */
	assert_int_equal(read_epoch_file(dir, text, sizeof(text)), -ENOENT);

	assert_int_equal(efs_fence_admit(&f, 3), 0);
	assert_int_equal(efs_fence_newest(&f), 3);
	assert_true(read_epoch_file(dir, text, sizeof(text)) > 0);
	assert_string_equal(text, "3\n");
	assert_int_equal(efs_fence_admit(&f, 3), 0); /* the same holder again */
	assert_int_equal(efs_fence_admit(&f, 2), -ESTALE);
	assert_int_equal(efs_fence_admit(&f, 1), -ESTALE);
	assert_int_equal(atomic_load(&f.refused), 2);
	assert_int_equal(efs_fence_newest(&f), 3);
	assert_int_equal(efs_fence_admit(&f, 5), 0);
	assert_int_equal(efs_fence_admit(&f, 4), -ESTALE);
	assert_int_equal(atomic_load(&f.refused), 3);
	efs_fence_close(&f);

	/* A restart remembers the newest: the old holder is still refused. */
	assert_int_equal(efs_fence_open(&f, dir), 0);
	assert_int_equal(efs_fence_newest(&f), 5);
	assert_int_equal(atomic_load(&f.refused), 0);
	assert_int_equal(efs_fence_admit(&f, 4), -ESTALE);
	assert_int_equal(efs_fence_admit(&f, 5), 0);
	efs_fence_close(&f);
}

static void test_unwritable_epoch_not_admitted(void **state)
{
	const char *dir = *state;
	char path[PATH_MAX], inner[PATH_MAX + 8];
	struct efs_fence f;

	assert_int_equal(efs_fence_open(&f, dir), 0);
	/* A directory where the file goes: the rename fails (for root too). */
	snprintf(path, sizeof(path), "%s/%s", dir, EFS_FENCE_FILE);
	snprintf(inner, sizeof(inner), "%s/x", path);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(efs_write_file_atomic(inner, "x", 1), 0);
	/* Not recorded, not admitted: a restart would have forgotten it. */
	int r = efs_fence_admit(&f, 2);
	assert_true(r < 0 && r != -ESTALE);
	assert_int_equal(efs_fence_newest(&f), 0);
	assert_int_equal(atomic_load(&f.refused), 0);
	efs_fence_close(&f);
}

static void test_damaged_file_stops_open(void **state)
{
	const char *dir = *state;
	char path[PATH_MAX];
	struct efs_fence f;

	snprintf(path, sizeof(path), "%s/%s", dir, EFS_FENCE_FILE);
	assert_int_equal(efs_write_file_atomic(path, "12x\n", 4), 0);
	assert_int_equal(efs_fence_open(&f, dir), -EINVAL);
	assert_int_equal(efs_write_file_atomic(path, "", 0), 0);
	assert_int_equal(efs_fence_open(&f, dir), 0); /* empty: none seen */
	assert_int_equal(efs_fence_newest(&f), 0);
	efs_fence_close(&f);
	assert_int_equal(efs_write_file_atomic(path, "42\n", 3), 0);
	assert_int_equal(efs_fence_open(&f, dir), 0);
	assert_int_equal(efs_fence_newest(&f), 42);
	efs_fence_close(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_older_refused_newer_admitted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unwritable_epoch_not_admitted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_damaged_file_stops_open, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
