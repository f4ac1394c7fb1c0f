/* SPDX-License-Identifier: MIT */
/* test_placement.c - unit tests of placement's slow-worker rule
 * (src/master/placement.h) over a registry on SQLite: a worker marked slow
 * is chosen only when the others cannot fill the request, the mark
 * expires by itself, each abandon is counted, the candidate count tells
 * chunk_io whether a replacement exists, and which finished transfers are
 * judged slow.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "echofs/log.h"
#include "echofs/meta.h"
#include "echofs/util.h"
#include "master/placement.h"
#include "master/registry.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FREE_BYTES (1ULL << 30)
#define WORKERS 4

struct fixture {
	char dir[64];
	struct efs_meta *meta;
	struct efs_registry registry;
	struct efs_placement placement;
	char id[WORKERS][EFS_ID_MAX + 1];
};

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256] = "";

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/efs-placement-XXXXXX");
	if (!mkdtemp(f->dir) || efs_meta_open(NULL, f->dir, &f->meta, err, sizeof(err)) < 0) {
		print_error("setup: %s\n", err);
		return -1;
	}
	efs_registry_init(&f->registry, f->meta, NULL, 60000);
	efs_placement_init(&f->placement, &f->registry);
	for (int n = 0; n < WORKERS; n++) {
		char url[64];
		snprintf(url, sizeof(url), "http://127.0.0.1:%d", 9000 + n);
		if (efs_registry_register(&f->registry, NULL, url, FREE_BYTES, FREE_BYTES, 0,
					  f->id[n]) < 0)
			return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	efs_placement_release(&f->placement);
	efs_registry_release(&f->registry);
	efs_meta_close(f->meta);
	nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static bool chosen(const struct efs_target *out, int n, const char *worker_id)
{
	for (int i = 0; i < n; i++)
		if (strcmp(out[i].worker_id, worker_id) == 0)
			return true;
	return false;
}

static void test_defaults_and_nothing_slow(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(f->placement.slow_min_rate, EFS_PLACEMENT_DEFAULT_SLOW_MIN_RATE);
	assert_int_equal(f->placement.slow_avoid_ms, EFS_PLACEMENT_DEFAULT_SLOW_AVOID_MS);
	for (int n = 0; n < WORKERS; n++)
		assert_int_equal(efs_placement_slow_for_ms(&f->placement, f->id[n]), 0);
	assert_int_equal(efs_placement_slow_for_ms(&f->placement, "w-unknown"), 0);
}

static void test_slow_worker_is_chosen_only_when_the_others_do_not_suffice(void **state)
{
	struct fixture *f = *state;
	struct efs_target out[WORKERS];
	size_t candidates = 0;

	efs_placement_set_slowness(&f->placement, 1024, 60000);
	assert_true(efs_placement_note_slow(&f->placement, f->id[2], true));
	/* Marked again while slow: counted, but not a change to log. */
	assert_false(efs_placement_note_slow(&f->placement, f->id[2], true));
	assert_true(efs_placement_slow_for_ms(&f->placement, f->id[2]) > 59000);
	assert_int_equal(atomic_load(&f->placement.slow_abandons_write), 2);
	assert_int_equal(atomic_load(&f->placement.slow_abandons_read), 0);

	/* Three replicas, three fast workers: never the slow one (random
	 * choice: many rounds). */
	for (int round = 0; round < 200; round++) {
		int n = efs_placement_choose_counted(&f->placement, 3, 4096, NULL, 0, out,
						     &candidates);
		assert_int_equal(n, 3);
		assert_int_equal(candidates, WORKERS);
		assert_false(chosen(out, n, f->id[2]));
	}
	/* Four: the slow one too (the replication factor comes first). */
	assert_int_equal(efs_placement_choose(&f->placement, 4, 4096, NULL, 0, out), 4);
	assert_true(chosen(out, 4, f->id[2]));
	/* Two fast ones excluded (tried already): the slow one fills in. */
	struct efs_target exclude[2];
	for (int i = 0; i < 2; i++) {
		efs_strlcpy(exclude[i].worker_id, f->id[i], sizeof(exclude[i].worker_id));
		snprintf(exclude[i].url, sizeof(exclude[i].url), "http://127.0.0.1:%d", 9000 + i);
	}
	int n = efs_placement_choose_counted(&f->placement, 2, 4096, exclude, 2, out,
					     &candidates);
	assert_int_equal(n, 2);
	assert_int_equal(candidates, 2); /* no replacement left beyond these */
	assert_true(chosen(out, n, f->id[2]));
	assert_true(chosen(out, n, f->id[3]));
}

static void test_slow_mark_expires(void **state)
{
	struct fixture *f = *state;
	struct efs_target out[WORKERS];

	efs_placement_set_slowness(&f->placement, 1024, 50);
	assert_true(efs_placement_note_slow(&f->placement, f->id[0], false));
	assert_int_equal(atomic_load(&f->placement.slow_abandons_read), 1);
	assert_true(efs_placement_slow_for_ms(&f->placement, f->id[0]) > 0);
	struct timespec ts = {0, 80 * 1000000};
	nanosleep(&ts, NULL);
	assert_int_equal(efs_placement_slow_for_ms(&f->placement, f->id[0]), 0);
	/* Chosen again: with all four asked for, and among three at times. */
	bool seen = false;
	for (int round = 0; round < 200 && !seen; round++) {
		int n = efs_placement_choose(&f->placement, 3, 4096, NULL, 0, out);
		assert_int_equal(n, 3);
		seen = chosen(out, n, f->id[0]);
	}
	assert_true(seen);
	/* A newly slow mark logs again (a change). */
	assert_true(efs_placement_note_slow(&f->placement, f->id[0], false));
}

static void test_avoid_zero_marks_nothing_but_counts(void **state)
{
	struct fixture *f = *state;
	efs_placement_set_slowness(&f->placement, 1024, 0);
	assert_false(efs_placement_note_slow(&f->placement, f->id[1], true));
	assert_int_equal(efs_placement_slow_for_ms(&f->placement, f->id[1]), 0);
	assert_int_equal(atomic_load(&f->placement.slow_abandons_write), 1);
}

static void test_finished_slowly_judges_long_large_transfers_only(void **state)
{
	struct fixture *f = *state;
	efs_placement_set_slowness(&f->placement, 2 * 1024 * 1024, 60000);
	/* 1 MiB in 1.1 s: under 2 MiB/s. */
	assert_true(efs_placement_finished_slowly(&f->placement, 1 << 20, 1100));
	/* Under a second: a hiccup, not judged. */
	assert_false(efs_placement_finished_slowly(&f->placement, 1 << 20, 900));
	/* 64 KiB in 2 s: a latency, not a rate. */
	assert_false(efs_placement_finished_slowly(&f->placement, 64 * 1024, 2000));
	/* 8 MiB in 2 s: 4 MiB/s, fast enough. */
	assert_false(efs_placement_finished_slowly(&f->placement, 8 << 20, 2000));
	/* The rule off. */
	efs_placement_set_slowness(&f->placement, 0, 60000);
	assert_false(efs_placement_finished_slowly(&f->placement, 1 << 20, 5000));
	/* A finished transfer marks without counting an abandon. */
	efs_placement_set_slowness(&f->placement, 2 * 1024 * 1024, 60000);
	assert_true(efs_placement_mark_slow(&f->placement, f->id[3]));
	assert_true(efs_placement_slow_for_ms(&f->placement, f->id[3]) > 0);
	assert_int_equal(atomic_load(&f->placement.slow_abandons_write), 0);
	assert_int_equal(atomic_load(&f->placement.slow_abandons_read), 0);
}

int main(void)
{
	efs_log_set_level(EFS_LOG_ERROR);
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_defaults_and_nothing_slow),
		T(test_slow_worker_is_chosen_only_when_the_others_do_not_suffice),
		T(test_slow_mark_expires),
		T(test_avoid_zero_marks_nothing_but_counts),
		T(test_finished_slowly_judges_long_large_transfers_only),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
