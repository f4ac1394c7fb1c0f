/* SPDX-License-Identifier: MIT */
/* test_scrub.c - unit tests of the worker's scrubber (src/worker/scrub.c,
 * included to reach its pass): over a real store, one pass finds a chunk
 * whose payload was flipped on disk (quarantined, queued for the master,
 * counted) and passes a good one; and checking a 16 MiB chunk holds a
 * piece of it at a time (EFS_STORE_VERIFY_PIECE), never the chunk: the
 * peak resident size of this process (VmHWM, reset through clear_refs
 * before the pass) grows by far less than the chunk. Before, the pass read
 * each chunk whole into a buffer as large as the chunk. */
#include <dirent.h>
#include <fcntl.h>
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

#include "echofs/hash.h"
#include "../../src/worker/scrub.c"

#define HEADER 96
#define BIG_CHUNK (16u << 20)

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	return remove(path);
}

static void chunk_id(unsigned n, char id[65])
{
	char label[32];
	int len = snprintf(label, sizeof(label), "scrub-%u", n);
	efs_sha256_hex(label, (size_t)len, id);
}

/* Stores @len bytes (a pattern of @seed) as chunk @id, 1 MiB at a time:
 * this test never holds the chunk whole either. */
static void put_pattern(struct efs_store *s, const char *id, size_t len, unsigned seed)
{
	size_t piece = 1u << 20;
	unsigned char *data = malloc(piece);
	struct efs_store_writer *w = NULL;
	uint32_t crc = 0;
	assert_non_null(data);
	assert_int_equal(efs_store_write_begin(s, id, len, 0, &w), 0);
	for (size_t pos = 0; pos < len; pos += piece) {
		size_t n = EFS_MIN(piece, len - pos);
		for (size_t i = 0; i < n; i++)
			data[i] = (unsigned char)(((pos + i) * 131 + seed * 17) & 0xff);
		crc = efs_crc32c(crc, data, n);
		assert_int_equal(efs_store_write(w, data, n), 0);
	}
	assert_int_equal(efs_store_write_commit(w, true, crc), 0);
	free(data);
}

/* The one volume file of a fresh store. */
static void only_volume(const char *dir, char *path, size_t size)
{
	char vols[300];
	struct dirent *e;
	snprintf(vols, sizeof(vols), "%s/volumes", dir);
	DIR *d = opendir(vols);
	assert_non_null(d);
	path[0] = '\0';
	while ((e = readdir(d)))
		if (strstr(e->d_name, ".vol"))
			snprintf(path, size, "%s/%.60s", vols, e->d_name);
	closedir(d);
	assert_true(path[0] != '\0');
}

static void flip_byte(const char *path, off_t offset)
{
	unsigned char byte;
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &byte, 1, offset), 1);
	byte ^= 0x01;
	assert_int_equal(pwrite(fd, &byte, 1, offset), 1);
	close(fd);
}

/* A kB figure of /proc/self/status ("VmHWM", "VmRSS"). */
static long status_kb(const char *field)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, strlen(field)) == 0 && line[strlen(field)] == ':')
			kb = strtol(line + strlen(field) + 1, NULL, 10);
	fclose(f);
	return kb;
}

/* Resets VmHWM to the current resident size (Linux 4.0+); false where
 * /proc refuses. */
static bool reset_peak(void)
{
	int fd = open("/proc/self/clear_refs", O_WRONLY);
	bool ok = fd >= 0 && write(fd, "5", 1) == 1;
	if (fd >= 0)
		close(fd);
	return ok;
}

static void test_pass_quarantines_the_corrupt_chunk_and_holds_a_piece_at_a_time(void **state)
{
	char dir[64] = "/tmp/efs-scrub-XXXXXX", err[256] = "", vol[400];
	char small[65], big[65], taken[4][65];
	struct efs_store *store = NULL;
	struct efs_worker_config cfg = {.scrub_bandwidth = 0}; /* 0: no pacing */
	struct efs_worker_ctx ctx;
	struct efs_scrub sc = {0};
	uint64_t length = 0;

	assert_non_null(mkdtemp(dir));
	assert_int_equal(efs_store_open_with(dir, &(struct efs_store_options){0}, &store, err,
					     sizeof(err)),
			 0);
	chunk_id(1, small);
	chunk_id(2, big);
	put_pattern(store, small, 4096, 1); /* the volume's first record */
	put_pattern(store, big, BIG_CHUNK, 2);
	only_volume(dir, vol, sizeof(vol));
	flip_byte(vol, HEADER + 100); /* in the small chunk's payload */
	assert_int_equal(efs_worker_ctx_init(&ctx, &cfg, store), 0);
	sc.ctx = &ctx;
	atomic_init(&sc.passes, 0);
	atomic_init(&sc.chunks_checked, 0);
	atomic_init(&sc.corrupt_found, 0);

	bool measured = reset_peak();
	long before_kb = status_kb("VmRSS");
	assert_true(scrub_pass(&sc));
	long grown_kb = status_kb("VmHWM") - before_kb;

	assert_int_equal(atomic_load(&sc.passes), 1);
	assert_int_equal(atomic_load(&sc.chunks_checked), 2);
	assert_int_equal(atomic_load(&sc.corrupt_found), 1);
	assert_int_equal(efs_lost_queue_take(&ctx.lost, taken, 4), 1);
	assert_string_equal(taken[0], small);
	/* The corrupt one is quarantined: gone from the store; the big one
	 * still checks. */
	assert_int_equal(efs_store_verify(store, small, &length), -ENOENT);
	assert_int_equal(efs_store_verify(store, big, &length), 0);
	assert_int_equal(length, BIG_CHUNK);
	if (measured) {
		/* A piece (256 KiB) and the pass's bookkeeping, with room for
		 * the allocator and a sanitizer's shadow: far below the chunk. */
		print_message("peak resident size grew by %ld KiB over the pass\n", grown_kb);
		assert_true(grown_kb < (long)(BIG_CHUNK / 4 / 1024));
	} else {
		print_message("/proc/self/clear_refs refused: the memory bound is not measured\n");
	}
	efs_worker_ctx_release(&ctx);
	efs_store_close(store);
	nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pass_quarantines_the_corrupt_chunk_and_holds_a_piece_at_a_time),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
