/* SPDX-License-Identifier: MIT */
/* test_store.c - unit tests of the worker's chunk store (src/worker/store.h),
 * each in a fresh directory under /tmp.
 *
 * Covers the write protocol (begin/write/commit, CRC check, short and long
 * writes, abort), capacity reservations, id validation, conditional delete,
 * quarantine of corrupt chunks (payload, header, trailer, truncation), what
 * a reopen finds (torn tails, dead regions, tombstones, the order of a
 * write and a delete), group commit from many threads, compaction, the
 * import of the old one-file-per-chunk layout, iteration and replacement.
 * Records are looked at where store.h documents them: volume files
 * <dir>/volumes/<id>.vol (96-byte header with the type at 5, the length at
 * 8 and the chunk id at 24; payload; 32-byte trailer), corrupt copies in
 * <dir>/corrupt/<id>.
 *
 * `test_store --bench [DIR]` runs a micro benchmark instead (see below).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "echofs/hash.h"
#include "echofs/util.h"
#include "worker/store.h"
#include "worker/store_internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fixture {
	char dir[64];
	struct efs_store *store;
	struct efs_buf buf;
};

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	return remove(path);
}

static void remove_tree(const char *dir)
{
	nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#define HEADER 96
#define TRAILER 32

/* Volumes of a few records, so tests see sealing and compaction; no
 * compactor thread: tests call efs_store_compact(). */
static uint64_t volume_bytes = 0;

static int open_store(struct fixture *f, uint64_t capacity)
{
	char err[256] = "";
	struct efs_store_options opt = {.capacity_bytes = capacity, .volume_bytes = volume_bytes};
	int r = efs_store_open_with(f->dir, &opt, &f->store, err, sizeof(err));
	if (r < 0)
		print_error("efs_store_open(%s): %d %s\n", f->dir, r, err);
	return r;
}

static int setup_with_capacity(void **state, uint64_t capacity)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/efs-store-XXXXXX");
	if (!mkdtemp(f->dir) || open_store(f, capacity) < 0) {
		free(f);
		return -1;
	}
	efs_buf_init(&f->buf, EFS_STORE_MAX_CHUNK);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_with_capacity(state, 0);
}

static int setup_capacity_1000(void **state)
{
	return setup_with_capacity(state, 1000);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	efs_store_close(f->store);
	efs_buf_release(&f->buf);
	remove_tree(f->dir);
	free(f);
	return 0;
}

/* A valid chunk id, distinct for each @n (the SHA-256 of a label). */
static void chunk_id(unsigned n, char id[65])
{
	char label[32];
	int len = snprintf(label, sizeof(label), "chunk-%u", n);
	efs_sha256_hex(label, (size_t)len, id);
}

static void fill_pattern(unsigned char *data, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		data[i] = (unsigned char)((i * 131 + seed * 17 + i / 256) & 0xff);
}

/* Stores @len bytes of @data as chunk @id, checking the CRC. */
static void put(struct efs_store *s, const char *id, const void *data, size_t len,
		uint32_t flags)
{
	struct efs_store_writer *w = NULL;
	assert_int_equal(efs_store_write_begin(s, id, len, flags, &w), 0);
	assert_non_null(w);
	assert_int_equal(efs_store_write(w, data, len), 0);
	assert_int_equal(efs_store_write_commit(w, true, efs_crc32c(0, data, len)), 0);
}

static void reopen(struct fixture *f)
{
	efs_store_close(f->store);
	f->store = NULL;
	assert_int_equal(open_store(f, 0), 0);
}

/* Where the newest record (chunk or tombstone) of @id is: its volume file
 * and the offset of its header, by following the header chain of every
 * volume. False when there is none. */
struct located {
	char path[PATH_MAX];
	off_t offset;
	uint64_t length;
	int type;
};

static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* The volume files' names, in order. */
static size_t volume_files(const struct fixture *f, char names[][64], size_t max)
{
	char dir[PATH_MAX];
	size_t n = 0;
	snprintf(dir, sizeof(dir), "%s/volumes", f->dir);
	DIR *d = opendir(dir);
	struct dirent *e;
	assert_non_null(d);
	while ((e = readdir(d)) && n < max)
		if (strlen(e->d_name) < 64 && strstr(e->d_name, ".vol"))
			snprintf(names[n++], 64, "%.63s", e->d_name);
	closedir(d);
	qsort(names, n, 64, compare_names);
	return n;
}

static bool locate(const struct fixture *f, const char *id, struct located *out)
{
	char names[64][64];
	bool found = false;
	size_t n = volume_files(f, names, 64);
	for (size_t i = 0; i < n; i++) {
		char path[PATH_MAX];
		unsigned char h[HEADER];
		snprintf(path, sizeof(path), "%.200s/volumes/%.63s", f->dir, names[i]);
		int fd = open(path, O_RDONLY);
		assert_true(fd >= 0);
		for (off_t off = 0; pread(fd, h, HEADER, off) == HEADER && memcmp(h, "EFSR", 4) == 0;) {
			uint64_t len = le64(h + 8);
			if (memcmp(h + 24, id, 64) == 0) {
				snprintf(out->path, sizeof(out->path), "%s", path);
				out->offset = off;
				out->length = len;
				out->type = h[5];
				found = true;
			}
			off += (off_t)(HEADER + len + TRAILER);
		}
		close(fd);
	}
	return found;
}

static void chunk_file(const struct fixture *f, const char *id, char *path, size_t size,
		       off_t *offset)
{
	struct located loc;
	assert_true(locate(f, id, &loc));
	assert_int_equal(loc.type, 1);
	snprintf(path, size, "%.*s", (int)(size - 1), loc.path);
	*offset = loc.offset;
}

static void corrupt_file(const struct fixture *f, const char *id, char *path, size_t size)
{
	snprintf(path, size, "%s/corrupt/%s", f->dir, id);
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static off_t file_size(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
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

static struct efs_store_stats get_stats(struct efs_store *s)
{
	struct efs_store_stats st = {UINT64_MAX, UINT64_MAX};
	efs_store_stats(s, &st);
	return st;
}

static void expect_stats(struct efs_store *s, uint64_t chunk_count, uint64_t bytes)
{
	struct efs_store_stats st = get_stats(s);
	if (st.chunk_count != chunk_count || st.bytes != bytes)
		print_error("stats: %llu chunks, %llu bytes; want %llu chunks, %llu bytes\n",
			    (unsigned long long)st.chunk_count, (unsigned long long)st.bytes,
			    (unsigned long long)chunk_count, (unsigned long long)bytes);
	assert_int_equal(st.chunk_count, chunk_count);
	assert_int_equal(st.bytes, bytes);
}

/* A failed or aborted write leaves no chunk behind, also after a reopen
 * (its region is dead). */
static void expect_gone_after_reopen(struct fixture *f, const char *id)
{
	uint32_t flags;
	reopen(f);
	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), -ENOENT);
	expect_stats(f->store, 0, 0);
}

/* ---- write and read ------------------------------------------------- */

static void test_write_then_get_returns_bytes_and_flags(void **state)
{
	struct fixture *f = *state;
	unsigned char raw[1000], gz[3000];
	char raw_id[65], gz_id[65];
	struct efs_store_writer *w = NULL;
	uint32_t flags = 0xffff;

	fill_pattern(raw, sizeof(raw), 1);
	fill_pattern(gz, sizeof(gz), 2);
	chunk_id(1, raw_id);
	chunk_id(2, gz_id);
	put(f->store, raw_id, raw, sizeof(raw), 0);

	/* the gzip flag, and a payload written in three pieces */
	assert_int_equal(efs_store_write_begin(f->store, gz_id, sizeof(gz), EFS_STORE_GZIP, &w), 0);
	assert_int_equal(efs_store_write(w, gz, 1), 0);
	assert_int_equal(efs_store_write(w, gz + 1, 1999), 0);
	assert_int_equal(efs_store_write(w, gz + 2000, 1000), 0);
	assert_int_equal(efs_store_write_commit(w, true, efs_crc32c(0, gz, sizeof(gz))), 0);

	assert_int_equal(efs_store_get(f->store, raw_id, &f->buf, &flags), 0);
	assert_int_equal(flags, 0);
	assert_int_equal(f->buf.len, sizeof(raw));
	assert_memory_equal(f->buf.data, raw, sizeof(raw));

	assert_int_equal(efs_store_get(f->store, gz_id, &f->buf, &flags), 0);
	assert_int_equal(flags, EFS_STORE_GZIP);
	assert_int_equal(f->buf.len, sizeof(gz));
	assert_memory_equal(f->buf.data, gz, sizeof(gz));
}

static void test_commit_without_crc_check(void **state)
{
	struct fixture *f = *state;
	unsigned char data[500];
	char id[65];
	struct efs_store_writer *w = NULL;
	uint32_t flags = 0xffff;

	fill_pattern(data, sizeof(data), 3);
	chunk_id(3, id);
	assert_int_equal(efs_store_write_begin(f->store, id, sizeof(data), 0, &w), 0);
	assert_int_equal(efs_store_write(w, data, sizeof(data)), 0);
	assert_int_equal(efs_store_write_commit(w, false, 0), 0);
	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), 0);
	assert_int_equal(f->buf.len, sizeof(data));
	assert_memory_equal(f->buf.data, data, sizeof(data));
}

static void test_get_crc_gives_the_verified_crc(void **state)
{
	struct fixture *f = *state;
	unsigned char first[3000], second[700];
	char id[65];
	uint32_t flags = 0xffff, crc = 0;

	fill_pattern(first, sizeof(first), 4);
	fill_pattern(second, sizeof(second), 5);
	chunk_id(4, id);
	put(f->store, id, first, sizeof(first), 0);
	assert_int_equal(efs_store_get_crc(f->store, id, &f->buf, &flags, &crc), 0);
	assert_int_equal(crc, efs_crc32c(0, first, sizeof(first)));
	assert_memory_equal(f->buf.data, first, sizeof(first));

	/* an overwrite: the CRC of the new record, not of the old one */
	put(f->store, id, second, sizeof(second), EFS_STORE_GZIP);
	assert_int_equal(efs_store_get_crc(f->store, id, &f->buf, &flags, &crc), 0);
	assert_int_equal(crc, efs_crc32c(0, second, sizeof(second)));
	assert_int_equal(flags, EFS_STORE_GZIP);
	assert_int_equal(f->buf.len, sizeof(second));

	/* absent: the out-parameter is untouched */
	chunk_id(6, id);
	crc = 0x12345678;
	assert_int_equal(efs_store_get_crc(f->store, id, &f->buf, &flags, &crc), -ENOENT);
	assert_int_equal(crc, 0x12345678);
}

static void test_get_of_absent_chunk(void **state)
{
	struct fixture *f = *state;
	char id[65];
	uint32_t flags = 0xabcd;
	uint64_t length = 777;
	int64_t mtime = 888;

	chunk_id(4, id);
	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), -ENOENT);
	assert_int_equal(flags, 0xabcd);
	assert_int_equal(efs_store_stat(f->store, id, &length, &flags, &mtime), -ENOENT);
	assert_int_equal(length, 777);
	assert_int_equal(mtime, 888);
}

static void test_stat_gives_length_flags_mtime(void **state)
{
	struct fixture *f = *state;
	unsigned char data[1234];
	char id[65];
	uint64_t length = 0;
	uint32_t flags = 0;
	int64_t mtime = 0;

	fill_pattern(data, sizeof(data), 5);
	chunk_id(5, id);
	int64_t before = efs_now_ms();
	put(f->store, id, data, sizeof(data), EFS_STORE_GZIP);
	int64_t after = efs_now_ms();

	assert_int_equal(efs_store_stat(f->store, id, &length, &flags, &mtime), 0);
	assert_int_equal(length, sizeof(data));
	assert_int_equal(flags, EFS_STORE_GZIP);
	/* file times come from a coarse clock that may lag a few ms */
	assert_true(mtime >= before - 100);
	assert_true(mtime <= after + 1);
}

static void test_stats_count_chunks_and_bytes(void **state)
{
	struct fixture *f = *state;
	unsigned char data[300];
	char id[65];

	fill_pattern(data, sizeof(data), 6);
	expect_stats(f->store, 0, 0);
	for (unsigned i = 1; i <= 3; i++) {
		chunk_id(10 + i, id);
		put(f->store, id, data, 100 * i, 0);
	}
	expect_stats(f->store, 3, 100 + 200 + 300);
	chunk_id(12, id);
	assert_int_equal(efs_store_delete(f->store, id, 0), 0);
	expect_stats(f->store, 2, 100 + 300);
}

/* ---- failed writes leave nothing ------------------------------------ */

static void test_wrong_crc_fails_and_leaves_no_chunk(void **state)
{
	struct fixture *f = *state;
	unsigned char data[700];
	char id[65];
	struct efs_store_writer *w = NULL;
	uint32_t flags;

	fill_pattern(data, sizeof(data), 7);
	chunk_id(7, id);
	assert_int_equal(efs_store_write_begin(f->store, id, sizeof(data), 0, &w), 0);
	assert_int_equal(efs_store_write(w, data, sizeof(data)), 0);
	assert_int_equal(efs_store_write_commit(w, true, efs_crc32c(0, data, sizeof(data)) ^ 1),
			 -EBADMSG);

	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), -ENOENT);
	expect_stats(f->store, 0, 0);
	expect_gone_after_reopen(f, id);
}

static void test_short_write_fails(void **state)
{
	struct fixture *f = *state;
	unsigned char data[100];
	char id[65];
	struct efs_store_writer *w = NULL;
	uint32_t flags;

	fill_pattern(data, sizeof(data), 8);
	chunk_id(8, id);
	assert_int_equal(efs_store_write_begin(f->store, id, 100, 0, &w), 0);
	assert_int_equal(efs_store_write(w, data, 50), 0);
	assert_int_equal(efs_store_write_commit(w, true, efs_crc32c(0, data, 50)), -EPROTO);

	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), -ENOENT);
	expect_stats(f->store, 0, 0);
	expect_gone_after_reopen(f, id);
}

static void test_write_past_announced_length_fails(void **state)
{
	struct fixture *f = *state;
	unsigned char data[200];
	char id[65];
	struct efs_store_writer *w = NULL;
	uint32_t flags;

	fill_pattern(data, sizeof(data), 9);
	chunk_id(9, id);
	assert_int_equal(efs_store_write_begin(f->store, id, 100, 0, &w), 0);
	assert_int_equal(efs_store_write(w, data, 101), -E2BIG);
	assert_int_equal(efs_store_write(w, data, 60), 0);
	assert_int_equal(efs_store_write(w, data + 60, 41), -E2BIG);
	efs_store_write_abort(w);

	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), -ENOENT);
	expect_stats(f->store, 0, 0);
}

static void test_abort_leaves_nothing(void **state)
{
	struct fixture *f = *state;
	unsigned char data[100];
	char id[65];
	struct efs_store_writer *w = NULL;
	uint32_t flags;

	fill_pattern(data, sizeof(data), 10);
	chunk_id(10, id);
	assert_int_equal(efs_store_write_begin(f->store, id, 100, 0, &w), 0);
	assert_int_equal(efs_store_write(w, data, 50), 0);
	expect_stats(f->store, 0, 100); /* reserved while in flight */
	efs_store_write_abort(w);
	efs_store_write_abort(NULL);

	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), -ENOENT);
	expect_stats(f->store, 0, 0);
	expect_gone_after_reopen(f, id);
}

/* ---- capacity -------------------------------------------------------- */

static void test_capacity_counts_writes_in_flight(void **state)
{
	struct fixture *f = *state;
	unsigned char data[600];
	char id1[65], id2[65];
	struct efs_store_writer *w1 = NULL, *w2 = NULL;

	fill_pattern(data, sizeof(data), 11);
	chunk_id(21, id1);
	chunk_id(22, id2);
	assert_int_equal(efs_store_write_begin(f->store, id1, 600, 0, &w1), 0);
	expect_stats(f->store, 0, 600);
	/* nothing is stored yet, but 600 are promised */
	assert_int_equal(efs_store_write_begin(f->store, id2, 600, 0, &w2), -ENOSPC);
	assert_null(w2);

	assert_int_equal(efs_store_write(w1, data, 600), 0);
	assert_int_equal(efs_store_write_commit(w1, true, efs_crc32c(0, data, 600)), 0);
	expect_stats(f->store, 1, 600);
	assert_int_equal(efs_store_write_begin(f->store, id2, 600, 0, &w2), -ENOSPC);
	assert_int_equal(efs_store_write_begin(f->store, id2, 401, 0, &w2), -ENOSPC);

	/* exactly up to the capacity is fine */
	assert_int_equal(efs_store_write_begin(f->store, id2, 400, 0, &w2), 0);
	expect_stats(f->store, 1, 1000);
	efs_store_write_abort(w2);
	expect_stats(f->store, 1, 600);

	/* a delete frees the space */
	assert_int_equal(efs_store_delete(f->store, id1, 0), 0);
	w2 = NULL;
	assert_int_equal(efs_store_write_begin(f->store, id2, 600, 0, &w2), 0);
	efs_store_write_abort(w2);
	expect_stats(f->store, 0, 0);
}

/* ---- ids --------------------------------------------------------------- */

static void test_invalid_ids_are_refused(void **state)
{
	struct fixture *f = *state;
	char good[65], upper[65], short_id[64], long_id[66];
	const char *bad[5];
	struct efs_store_writer *w = NULL;
	uint64_t length;
	uint32_t flags;
	int64_t mtime;

	chunk_id(30, good);
	memcpy(short_id, good, 63);
	short_id[63] = '\0';
	memcpy(long_id, good, 64);
	long_id[64] = 'a';
	long_id[65] = '\0';
	memcpy(upper, good, 65);
	for (size_t i = 0; i < 64; i++)
		if (upper[i] >= 'a' && upper[i] <= 'f')
			upper[i] = (char)(upper[i] - 'a' + 'A');
	assert_string_not_equal(upper, good); /* it has letters to change */
	bad[0] = short_id;
	bad[1] = long_id;
	bad[2] = upper;
	bad[3] = "../x";
	bad[4] = "";

	for (size_t i = 0; i < EFS_ARRAY_SIZE(bad); i++) {
		assert_int_equal(efs_store_write_begin(f->store, bad[i], 10, 0, &w), -EINVAL);
		assert_null(w);
		assert_int_equal(efs_store_get(f->store, bad[i], &f->buf, &flags), -EINVAL);
		assert_int_equal(efs_store_stat(f->store, bad[i], &length, &flags, &mtime), -EINVAL);
		assert_int_equal(efs_store_delete(f->store, bad[i], 0), -EINVAL);
	}
	/* a length over the largest chunk is refused the same way */
	assert_int_equal(efs_store_write_begin(f->store, good, (uint64_t)EFS_STORE_MAX_CHUNK + 1, 0,
					       &w),
			 -EINVAL);
	assert_null(w);
	expect_stats(f->store, 0, 0);
}

/* ---- delete ------------------------------------------------------------ */

static void test_delete(void **state)
{
	struct fixture *f = *state;
	unsigned char data[100];
	char id[65];
	uint64_t length;
	uint32_t flags;
	int64_t mtime;

	fill_pattern(data, sizeof(data), 12);
	chunk_id(31, id);
	put(f->store, id, data, sizeof(data), 0);
	assert_int_equal(efs_store_delete(f->store, id, 0), 0);
	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), -ENOENT);
	assert_int_equal(efs_store_stat(f->store, id, &length, &flags, &mtime), -ENOENT);
	assert_int_equal(efs_store_delete(f->store, id, 0), -ENOENT);
	expect_stats(f->store, 0, 0);
}

static void test_conditional_delete(void **state)
{
	struct fixture *f = *state;
	unsigned char data[100];
	char id[65];
	uint64_t length;
	uint32_t flags;
	int64_t mtime = 0;

	fill_pattern(data, sizeof(data), 13);
	chunk_id(32, id);
	put(f->store, id, data, sizeof(data), 0);
	assert_int_equal(efs_store_stat(f->store, id, &length, &flags, &mtime), 0);
	assert_true(mtime > 0);

	/* the collector decided before the chunk was written: keep it */
	assert_int_equal(efs_store_delete(f->store, id, mtime - 60000), -EBUSY);
	assert_int_equal(efs_store_delete(f->store, id, mtime - 1), -EBUSY);
	assert_int_equal(efs_store_delete(f->store, id, mtime), -EBUSY); /* "at or after" */
	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), 0);
	assert_memory_equal(f->buf.data, data, sizeof(data));
	expect_stats(f->store, 1, 100);

	/* it decided after the write: delete */
	assert_int_equal(efs_store_delete(f->store, id, mtime + 1), 0);
	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), -ENOENT);
	expect_stats(f->store, 0, 0);
}

/* The collector's form (LIFECYCLE R4): a duration measured on the store's
 * own clock from the write time it stamped, so no other clock is
 * involved: a copy written just now survives any duration of a second or
 * more, and goes once it is older than the duration. */
static void test_conditional_delete_by_age(void **state)
{
	struct fixture *f = *state;
	unsigned char data[100];
	char id[65];
	uint32_t flags;

	fill_pattern(data, sizeof(data), 14);
	chunk_id(33, id);
	put(f->store, id, data, sizeof(data), 0);

	assert_int_equal(efs_store_delete_unmodified_for(f->store, id, 3600000), -EBUSY);
	assert_int_equal(efs_store_delete_unmodified_for(f->store, id, 60000), -EBUSY);
	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), 0);
	assert_memory_equal(f->buf.data, data, sizeof(data));
	expect_stats(f->store, 1, 100);

	/* older than 2 ms (wait until the clock moved past it): deleted */
	int64_t written = efs_now_ms();
	while (efs_now_ms() - written < 5)
		usleep(1000);
	assert_int_equal(efs_store_delete_unmodified_for(f->store, id, 2), 0);
	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), -ENOENT);
	assert_int_equal(efs_store_delete_unmodified_for(f->store, id, 2), -ENOENT);
	expect_stats(f->store, 0, 0);
}

/* ---- corruption ------------------------------------------------------ */

/* After damage to chunk @id's file: the read fails with -EBADMSG, the file
 * is in corrupt/, a second read finds nothing, and the chunk count dropped
 * by one (and, unless @bytes_before is UINT64_MAX, the bytes by @length). */
static void expect_quarantined(struct fixture *f, const char *id, uint64_t count_before,
			       uint64_t bytes_before, uint64_t length)
{
	char quarantine[PATH_MAX];
	uint32_t flags = 0x5555;

	corrupt_file(f, id, quarantine, sizeof(quarantine));
	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), -EBADMSG);
	assert_int_equal(flags, 0x5555);
	assert_true(exists(quarantine));
	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), -ENOENT);
	if (bytes_before == UINT64_MAX)
		assert_int_equal(get_stats(f->store).chunk_count, count_before - 1);
	else
		expect_stats(f->store, count_before - 1, bytes_before - length);
	/* a tombstone (or, for a damaged header, the end of the scan) keeps
	 * it gone after a restart */
	reopen(f);
	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), -ENOENT);
	assert_int_equal(get_stats(f->store).chunk_count, count_before - 1);
}

static void test_flipped_payload_byte_is_quarantined(void **state)
{
	struct fixture *f = *state;
	unsigned char data[1000];
	char id[65], other[65], path[PATH_MAX];
	off_t offset;
	uint32_t flags;

	fill_pattern(data, sizeof(data), 14);
	chunk_id(40, id);
	chunk_id(41, other);
	put(f->store, id, data, sizeof(data), 0);
	put(f->store, other, data, 500, 0);
	expect_stats(f->store, 2, 1500);

	chunk_file(f, id, path, sizeof(path), &offset);
	flip_byte(path, offset + HEADER + 500);
	expect_quarantined(f, id, 2, 1500, 1000);

	/* the other chunk is unharmed */
	assert_int_equal(efs_store_get(f->store, other, &f->buf, &flags), 0);
	assert_memory_equal(f->buf.data, data, 500);
}

static void test_flipped_header_byte_is_quarantined(void **state)
{
	struct fixture *f = *state;
	unsigned char data[1000];
	char id[65], path[PATH_MAX];
	off_t offset;
	/* header: magic, version, type, flags, length, target volume, chunk id,
	 * header CRC; then the trailer: payload CRC, commit magic, sequence
	 * number, commit time, trailer CRC */
	static const off_t offsets[] = {0,    4,    5,    6,    8,    12,   16,   24,   60,
					87,   92,   95,   1096, 1100, 1104, 1112, 1124, 1127};

	fill_pattern(data, sizeof(data), 15);
	chunk_id(42, id);
	for (size_t i = 0; i < EFS_ARRAY_SIZE(offsets); i++) {
		put(f->store, id, data, sizeof(data), 0);
		expect_stats(f->store, 1, 1000);
		chunk_file(f, id, path, sizeof(path), &offset);
		assert_true(file_size(path) >= offset + HEADER + 1000 + TRAILER);
		flip_byte(path, offset + offsets[i]);
		print_message("record byte %lld\n", (long long)offsets[i]);
		expect_quarantined(f, id, 1, 1000, 1000);
	}
}

/* An intact header of a newer format (its CRC recomputed, as a newer
 * binary writes it) is not a torn tail: the open is refused with -EINVAL
 * and a line naming both versions, and nothing on disk changes; with the
 * header as it was, the store opens and serves the chunk. */
static void test_newer_format_refuses_the_open(void **state)
{
	struct fixture *f = *state;
	unsigned char data[700], header[HEADER], original[HEADER];
	char id[65], path[PATH_MAX], err[256] = "", want[64];
	struct efs_store_options opt = {0};
	uint32_t flags;
	off_t offset;

	fill_pattern(data, sizeof(data), 23);
	chunk_id(77, id);
	put(f->store, id, data, sizeof(data), 0);
	chunk_file(f, id, path, sizeof(path), &offset);
	efs_store_close(f->store);
	f->store = NULL;

	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, original, HEADER, offset), HEADER);
	memcpy(header, original, HEADER);
	header[4] = FORMAT_VERSION + 1;
	uint32_t crc = efs_crc32c(0, header, 92);
	for (int i = 0; i < 4; i++)
		header[92 + i] = (unsigned char)(crc >> (8 * i));
	assert_int_equal(pwrite(fd, header, HEADER, offset), HEADER);
	off_t size = file_size(path);

	assert_int_equal(efs_store_open_with(f->dir, &opt, &f->store, err, sizeof(err)), -EINVAL);
	assert_null(f->store);
	snprintf(want, sizeof(want), "format version %d, newer than this binary's (%d)",
		 FORMAT_VERSION + 1, FORMAT_VERSION);
	assert_non_null(strstr(err, want));
	assert_int_equal(file_size(path), size);
	unsigned char now[HEADER];
	assert_int_equal(pread(fd, now, HEADER, offset), HEADER);
	assert_memory_equal(now, header, HEADER);

	assert_int_equal(pwrite(fd, original, HEADER, offset), HEADER);
	close(fd);
	assert_int_equal(open_store(f, 0), 0);
	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), 0);
	assert_memory_equal(f->buf.data, data, sizeof(data));
}

/* ---- payloads handed out by descriptor (efs_store_get_payload) ------- */

/* Longer than two of the store's 256 KiB verification pieces, with a short
 * last one. */
#define BY_FD_LEN (600 * 1000 + 1)

/* The @len bytes at @offset of @fd equal @data. */
static void expect_fd_bytes(int fd, uint64_t offset, const unsigned char *data, size_t len)
{
	unsigned char *got = malloc(len);
	assert_non_null(got);
	assert_int_equal(pread(fd, got, len, (off_t)offset), (ssize_t)len);
	assert_memory_equal(got, data, len);
	free(got);
}

static void test_payload_by_fd_or_in_the_buffer(void **state)
{
	struct fixture *f = *state;
	unsigned char *data = malloc(BY_FD_LEN);
	char id[65];
	struct efs_store_payload p;

	assert_non_null(data);
	fill_pattern(data, BY_FD_LEN, 30);
	chunk_id(300, id);
	put(f->store, id, data, BY_FD_LEN, EFS_STORE_GZIP);
	uint32_t crc = efs_crc32c(0, data, BY_FD_LEN);

	/* At or over the threshold: verified, not kept; a descriptor. */
	assert_int_equal(efs_store_get_payload(f->store, id, BY_FD_LEN, &f->buf, &p), 0);
	assert_true(p.fd >= 0);
	assert_int_equal(f->buf.len, 0);
	assert_int_equal(p.length, BY_FD_LEN);
	assert_int_equal(p.flags, EFS_STORE_GZIP);
	assert_int_equal(p.crc, crc);
	assert_true(fcntl(p.fd, F_GETFD) & FD_CLOEXEC);
	expect_fd_bytes(p.fd, p.offset, data, BY_FD_LEN);
	close(p.fd);

	/* Under it (and with UINT64_MAX): in the buffer, as efs_store_get_crc. */
	static const uint64_t in_buffer[] = {BY_FD_LEN + 1, UINT64_MAX};
	for (size_t i = 0; i < EFS_ARRAY_SIZE(in_buffer); i++) {
		assert_int_equal(efs_store_get_payload(f->store, id, in_buffer[i], &f->buf, &p), 0);
		assert_int_equal(p.fd, -1);
		assert_int_equal(p.crc, crc);
		assert_int_equal(f->buf.len, BY_FD_LEN);
		assert_memory_equal(f->buf.data, data, BY_FD_LEN);
	}
	free(data);
}

/* A record that does not check is refused by the descriptor path as by a
 * read into memory: quarantined, no descriptor handed out. The payload is
 * damaged in each verification piece (the first, a middle one, the last
 * short one), then the header and the trailer. */
static void test_payload_by_fd_refuses_a_damaged_record(void **state)
{
	struct fixture *f = *state;
	unsigned char *data = malloc(BY_FD_LEN);
	char id[65], path[PATH_MAX], quarantine[PATH_MAX];
	static const off_t offsets[] = {HEADER, HEADER + (300 << 10), HEADER + BY_FD_LEN - 1, 8,
					HEADER + BY_FD_LEN + 2};

	assert_non_null(data);
	fill_pattern(data, BY_FD_LEN, 31);
	chunk_id(301, id);
	corrupt_file(f, id, quarantine, sizeof(quarantine));
	for (size_t i = 0; i < EFS_ARRAY_SIZE(offsets); i++) {
		struct efs_store_payload p = {.fd = -7};
		off_t offset;
		put(f->store, id, data, BY_FD_LEN, 0);
		chunk_file(f, id, path, sizeof(path), &offset);
		flip_byte(path, offset + offsets[i]);
		remove(quarantine);
		print_message("record byte %lld\n", (long long)offsets[i]);
		assert_int_equal(efs_store_get_payload(f->store, id, 1, &f->buf, &p), -EBADMSG);
		assert_int_equal(p.fd, -7);
		assert_true(exists(quarantine));
		assert_int_equal(efs_store_get_payload(f->store, id, 1, &f->buf, &p), -ENOENT);
		expect_stats(f->store, 0, 0);
	}
	free(data);
}

/* Where the volume is cut, from the start of the record. */
static const off_t truncated_lengths[] = {HEADER + 1000 + 31, HEADER + 999, HEADER + 500,
					  HEADER, 10, 0};

static void test_truncated_file_is_quarantined(void **state)
{
	struct fixture *f = *state;
	unsigned char data[1000];
	char id[65], path[PATH_MAX];

	fill_pattern(data, sizeof(data), 16);
	chunk_id(43, id);
	for (size_t i = 0; i < EFS_ARRAY_SIZE(truncated_lengths); i++) {
		/* a fresh store each time, so a drift in the byte count (checked
		 * below) does not hide this */
		off_t offset;
		reopen(f);
		put(f->store, id, data, sizeof(data), 0);
		chunk_file(f, id, path, sizeof(path), &offset);
		assert_int_equal(truncate(path, offset + truncated_lengths[i]), 0);
		print_message("truncated to %lld bytes\n", (long long)truncated_lengths[i]);
		expect_quarantined(f, id, 1, UINT64_MAX, 1000);
	}
}

/* A quarantined chunk no longer counts in the bytes held, whatever is left
 * of its file: the store's accounting (and so its capacity) must not drift. */
static void test_truncated_chunk_releases_its_bytes(void **state)
{
	struct fixture *f = *state;
	unsigned char data[1000];
	char id[65], path[PATH_MAX];

	fill_pattern(data, sizeof(data), 16);
	chunk_id(44, id);
	for (size_t i = 0; i < EFS_ARRAY_SIZE(truncated_lengths); i++) {
		off_t offset;
		reopen(f);
		put(f->store, id, data, sizeof(data), 0);
		chunk_file(f, id, path, sizeof(path), &offset);
		assert_int_equal(truncate(path, offset + truncated_lengths[i]), 0);
		print_message("truncated to %lld bytes\n", (long long)truncated_lengths[i]);
		expect_quarantined(f, id, 1, 1000, 1000);
	}
}

/* ---- reopening ----------------------------------------------------- */

static void test_reopen_counts_existing_chunks(void **state)
{
	struct fixture *f = *state;
	unsigned char data[300];
	char id[65];
	uint32_t flags;

	fill_pattern(data, sizeof(data), 17);
	for (unsigned i = 0; i < 3; i++) {
		chunk_id(50 + i, id);
		put(f->store, id, data, 100 * (i + 1), 0);
	}
	efs_store_close(f->store);
	f->store = NULL;
	assert_int_equal(open_store(f, 0), 0);

	expect_stats(f->store, 3, 600);
	chunk_id(52, id);
	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), 0);
	assert_int_equal(f->buf.len, 300);
	assert_memory_equal(f->buf.data, data, 300);
}

/* A crash while a header was being written leaves a torn tail: the scan
 * stops there, what came before is kept, and new writes go on. */
static void test_reopen_ignores_a_torn_tail(void **state)
{
	struct fixture *f = *state;
	unsigned char data[100];
	char id[65], other[65], path[PATH_MAX];
	off_t offset;
	uint32_t flags;

	fill_pattern(data, sizeof(data), 18);
	chunk_id(53, id);
	chunk_id(56, other);
	put(f->store, id, data, sizeof(data), 0);
	efs_store_close(f->store);
	f->store = NULL;

	chunk_file(f, id, path, sizeof(path), &offset);
	FILE *fp = fopen(path, "a");
	assert_non_null(fp);
	assert_int_equal(fwrite("EFSR\x01\x01", 1, 6, fp), 6); /* half a header */
	assert_int_equal(fclose(fp), 0);

	assert_int_equal(open_store(f, 0), 0);
	expect_stats(f->store, 1, 100);
	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), 0);
	put(f->store, other, data, 50, 0);
	reopen(f);
	expect_stats(f->store, 2, 150);
	assert_int_equal(efs_store_get(f->store, other, &f->buf, &flags), 0);
	assert_memory_equal(f->buf.data, data, 50);
}

/* A chunk file damaged while the store was closed: whatever the reopen
 * counts, quarantining it must leave the counts of the healthy chunks. */
static void test_reopen_with_damaged_chunk_keeps_counts_right(void **state)
{
	struct fixture *f = *state;
	unsigned char data[300];
	char good[65], damaged[65], path[PATH_MAX];
	uint32_t flags;

	fill_pattern(data, sizeof(data), 22);
	chunk_id(54, good);
	chunk_id(55, damaged);
	put(f->store, good, data, 300, 0);
	put(f->store, damaged, data, 200, 0);
	efs_store_close(f->store);
	f->store = NULL;
	off_t offset;
	chunk_file(f, damaged, path, sizeof(path), &offset);
	flip_byte(path, offset + HEADER + 10); /* the payload: the scan still follows */

	assert_int_equal(open_store(f, 0), 0);
	assert_int_equal(efs_store_get(f->store, damaged, &f->buf, &flags), -EBADMSG);
	assert_int_equal(efs_store_get(f->store, damaged, &f->buf, &flags), -ENOENT);
	expect_stats(f->store, 1, 300);
	assert_int_equal(efs_store_get(f->store, good, &f->buf, &flags), 0);
	assert_memory_equal(f->buf.data, data, 300);
}

/* ---- iterate --------------------------------------------------------- */

#define ITER_CHUNKS 6

struct visits {
	char ids[ITER_CHUNKS][65];
	uint64_t lengths[ITER_CHUNKS];
	unsigned seen[ITER_CHUNKS];
	size_t calls;
	size_t stop_after; /* 0: never */
};

static int visit(void *ctx, const char *chunk_id_seen, uint64_t length, int64_t mtime_ms)
{
	struct visits *v = ctx;
	v->calls++;
	for (size_t i = 0; i < ITER_CHUNKS; i++) {
		if (strcmp(v->ids[i], chunk_id_seen) == 0) {
			v->seen[i]++;
			assert_int_equal(length, v->lengths[i]);
			assert_true(mtime_ms > 0);
		}
	}
	if (v->stop_after && v->calls == v->stop_after)
		return -ECANCELED;
	return 0;
}

static void test_iterate_visits_every_chunk_once(void **state)
{
	struct fixture *f = *state;
	unsigned char data[ITER_CHUNKS * 100];
	struct visits v;
	struct efs_store_writer *w = NULL;
	char pending[65];

	memset(&v, 0, sizeof(v));
	fill_pattern(data, sizeof(data), 19);
	for (size_t i = 0; i < ITER_CHUNKS; i++) {
		chunk_id(60 + (unsigned)i, v.ids[i]);
		v.lengths[i] = 1 + 97 * i;
		put(f->store, v.ids[i], data, v.lengths[i], 0);
	}
	/* neither a write in flight nor a failed one is a chunk */
	chunk_id(70, pending);
	assert_int_equal(efs_store_write_begin(f->store, pending, 10, 0, &w), 0);
	assert_int_equal(efs_store_write(w, data, 5), 0);

	assert_int_equal(efs_store_iterate(f->store, visit, &v), 0);
	assert_int_equal(v.calls, ITER_CHUNKS);
	for (size_t i = 0; i < ITER_CHUNKS; i++)
		assert_int_equal(v.seen[i], 1);

	/* a negative return stops the walk and is returned */
	memset(v.seen, 0, sizeof(v.seen));
	v.calls = 0;
	v.stop_after = 2;
	assert_int_equal(efs_store_iterate(f->store, visit, &v), -ECANCELED);
	assert_int_equal(v.calls, 2);
	efs_store_write_abort(w);
}

/* A walk over many chunks copies its ids a slice at a time, in key order,
 * with the lock released between slices: while it runs, another thread's
 * write and delete complete, and the walk sees the store as it is when
 * each slice is copied (a chunk deleted before its slice is not listed,
 * which a snapshot of the whole index taken up front would list), while
 * every chunk present throughout is listed exactly once. */
#define SLICED_CHUNKS 300
#define SLICE 7

struct sliced {
	struct efs_store *store;
	char ids[SLICED_CHUNKS][65]; /* sorted */
	unsigned seen[SLICED_CHUNKS];
	bool deleted[SLICED_CHUNKS];
	size_t calls, added;
	char last[65];
};

struct side_write {
	struct efs_store *store;
	char add[65], drop[65];
	int add_result, drop_result;
};

/* Another thread's write and delete, while the walk is in its callback. */
static void *side_write_main(void *arg)
{
	struct side_write *sw = arg;
	unsigned char data[50];
	struct efs_store_writer *w = NULL;
	fill_pattern(data, sizeof(data), 3);
	sw->add_result = efs_store_write_begin(sw->store, sw->add, sizeof(data), 0, &w);
	if (sw->add_result == 0 && (sw->add_result = efs_store_write(w, data, sizeof(data))) == 0)
		sw->add_result = efs_store_write_commit(w, false, 0);
	sw->drop_result = efs_store_delete(sw->store, sw->drop, 0);
	return NULL;
}

static int id_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

static int visit_sliced(void *ctx, const char *id, uint64_t length, int64_t mtime_ms)
{
	struct sliced *sl = ctx;
	char (*hit)[65] = bsearch(id, sl->ids, SLICED_CHUNKS, sizeof(sl->ids[0]), id_cmp);
	/* in key order (hex of the key: the same order as the ids) */
	assert_true(strcmp(sl->last, id) < 0);
	efs_strlcpy(sl->last, id, sizeof(sl->last));
	if (hit)
		sl->seen[hit - sl->ids]++;
	size_t victim = SLICED_CHUNKS - 1 - sl->added;
	if (sl->calls++ % 10 != 0 || !hit || victim <= (size_t)(hit - sl->ids) + SLICE)
		return 0; /* (the victim must lie past the slice already copied) */
	/* Every tenth chunk: a write and a delete of a chunk not listed yet,
	 * from another thread, done before the walk goes on. */
	struct side_write sw = {.store = sl->store};
	chunk_id(5000 + (unsigned)sl->added++, sw.add);
	efs_strlcpy(sw.drop, sl->ids[victim], sizeof(sw.drop));
	pthread_t thread;
	assert_int_equal(pthread_create(&thread, NULL, side_write_main, &sw), 0);
	assert_int_equal(pthread_join(thread, NULL), 0);
	assert_int_equal(sw.add_result, 0);
	assert_int_equal(sw.drop_result, 0);
	sl->deleted[victim] = true;
	return 0;
}

static void test_iterate_in_slices_lets_writes_through(void **state)
{
	struct fixture *f = *state;
	unsigned char data[100];
	char err[256] = "";
	struct sliced *sl = calloc(1, sizeof(*sl));
	assert_non_null(sl);

	efs_store_close(f->store);
	struct efs_store_options opt = {.volume_bytes = volume_bytes, .iterate_slice = SLICE};
	assert_int_equal(efs_store_open_with(f->dir, &opt, &f->store, err, sizeof(err)), 0);
	sl->store = f->store;
	fill_pattern(data, sizeof(data), 23);
	for (unsigned i = 0; i < SLICED_CHUNKS; i++) {
		chunk_id(1000 + i, sl->ids[i]);
		put(f->store, sl->ids[i], data, 1 + i % 90, 0);
	}
	qsort(sl->ids, SLICED_CHUNKS, sizeof(sl->ids[0]), id_cmp);

	assert_int_equal(efs_store_iterate(f->store, visit_sliced, sl), 0);
	assert_true(sl->added > 20);
	for (size_t i = 0; i < SLICED_CHUNKS; i++) {
		if (sl->deleted[i])
			assert_int_equal(sl->seen[i], 0); /* deleted before its slice */
		else
			assert_int_equal(sl->seen[i], 1);
	}
	free(sl);
}

/* ---- replace --------------------------------------------------------- */

static void test_rewriting_a_chunk_replaces_it(void **state)
{
	struct fixture *f = *state;
	unsigned char first[100], second[300];
	char id[65];
	uint32_t flags = 0;

	fill_pattern(first, sizeof(first), 20);
	fill_pattern(second, sizeof(second), 21);
	chunk_id(80, id);
	put(f->store, id, first, sizeof(first), 0);
	put(f->store, id, second, sizeof(second), EFS_STORE_GZIP);
	expect_stats(f->store, 1, 300);
	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), 0);
	assert_int_equal(flags, EFS_STORE_GZIP);
	assert_int_equal(f->buf.len, sizeof(second));
	assert_memory_equal(f->buf.data, second, sizeof(second));
	reopen(f); /* the newer record wins on replay too */
	expect_stats(f->store, 1, 300);
	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), 0);
	assert_memory_equal(f->buf.data, second, sizeof(second));
}


/* ---- volumes: order, group commit, compaction, the old layout --------- */

/* A write that began before a delete of the same chunk and committed after
 * it wins, now and after a restart (the order is the commit order). */
static void test_write_committed_after_a_delete_survives_reopen(void **state)
{
	struct fixture *f = *state;
	unsigned char data[200];
	char id[65];
	struct efs_store_writer *w = NULL;
	uint32_t flags;

	fill_pattern(data, sizeof(data), 30);
	chunk_id(90, id);
	put(f->store, id, data, 100, 0);
	assert_int_equal(efs_store_write_begin(f->store, id, 200, 0, &w), 0);
	assert_int_equal(efs_store_write(w, data, 200), 0);
	assert_int_equal(efs_store_delete(f->store, id, 0), 0);
	assert_int_equal(efs_store_write_commit(w, true, efs_crc32c(0, data, 200)), 0);
	expect_stats(f->store, 1, 200);
	reopen(f);
	expect_stats(f->store, 1, 200);
	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), 0);
	assert_int_equal(f->buf.len, 200);

	/* and a delete after it is kept too */
	assert_int_equal(efs_store_delete(f->store, id, 0), 0);
	reopen(f);
	expect_stats(f->store, 0, 0);
	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), -ENOENT);
}

/* An aborted write between two committed ones: the scan skips its region
 * by its length and finds the one after it. */
static void test_reopen_skips_an_aborted_region(void **state)
{
	struct fixture *f = *state;
	unsigned char data[300];
	char a[65], b[65], c[65];
	struct efs_store_writer *w = NULL;
	uint32_t flags;

	fill_pattern(data, sizeof(data), 31);
	chunk_id(91, a);
	chunk_id(92, b);
	chunk_id(93, c);
	put(f->store, a, data, 100, 0);
	assert_int_equal(efs_store_write_begin(f->store, b, 300, 0, &w), 0);
	assert_int_equal(efs_store_write(w, data, 120), 0);
	put(f->store, c, data, 300, EFS_STORE_GZIP);
	efs_store_write_abort(w);
	reopen(f);
	expect_stats(f->store, 2, 400);
	assert_int_equal(efs_store_get(f->store, b, &f->buf, &flags), -ENOENT);
	assert_int_equal(efs_store_get(f->store, c, &f->buf, &flags), 0);
	assert_int_equal(flags, EFS_STORE_GZIP);
	assert_memory_equal(f->buf.data, data, 300);
}

/* The replay at open reads the volumes through a window of 64 KiB
 * (store_recovery.c:store_scan_volume): records that straddle its edges
 * (small ones of varied sizes by the hundred, one larger than the window),
 * a tombstone and an aborted region among them, and a torn tail: every
 * chunk comes back as it was written. */
static void test_reopen_reads_records_across_the_scan_window(void **state)
{
	struct fixture *f = *state;
	enum { SMALL = 400, BIG = 150 * 1024 };
	unsigned char *big = malloc(BIG);
	unsigned char data[1500];
	char id[65], path[PATH_MAX];
	struct efs_store_writer *w = NULL;
	uint32_t flags;
	uint64_t bytes = 0;
	off_t offset;

	assert_non_null(big);
	fill_pattern(big, BIG, 41);
	fill_pattern(data, sizeof(data), 42);
	for (unsigned i = 0; i < SMALL; i++) {
		chunk_id(7000 + i, id);
		if (i == 150) {
			chunk_id(6999, id);
			put(f->store, id, big, BIG, 0);
			bytes += BIG;
			chunk_id(7000 + i, id);
		}
		if (i == 200) {
			assert_int_equal(efs_store_write_begin(f->store, id, 900, 0, &w), 0);
			assert_int_equal(efs_store_write(w, data, 100), 0);
			efs_store_write_abort(w);
		}
		put(f->store, id, data, 1 + (i * 37) % sizeof(data), i % 3 ? 0 : EFS_STORE_GZIP);
		bytes += 1 + (i * 37) % sizeof(data);
	}
	chunk_id(7000 + 10, id);
	assert_int_equal(efs_store_delete(f->store, id, 0), 0);
	bytes -= 1 + (10 * 37) % sizeof(data);
	efs_store_close(f->store);
	f->store = NULL;
	chunk_id(7000 + SMALL - 1, id);
	chunk_file(f, id, path, sizeof(path), &offset);
	FILE *fp = fopen(path, "a");
	assert_non_null(fp);
	assert_int_equal(fwrite("EFSR\x01", 1, 5, fp), 5); /* a torn tail */
	assert_int_equal(fclose(fp), 0);

	assert_int_equal(open_store(f, 0), 0);
	expect_stats(f->store, SMALL, bytes);
	for (unsigned i = 0; i < SMALL; i++) {
		size_t len = 1 + (i * 37) % sizeof(data);
		chunk_id(7000 + i, id);
		if (i == 10) {
			assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), -ENOENT);
			continue;
		}
		assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), 0);
		assert_int_equal(flags, i % 3 ? 0 : EFS_STORE_GZIP);
		assert_int_equal(f->buf.len, len);
		assert_memory_equal(f->buf.data, data, len);
	}
	chunk_id(6999, id);
	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), 0);
	assert_int_equal(f->buf.len, BIG);
	assert_memory_equal(f->buf.data, big, BIG);
	free(big);
}

#define GROUP_THREADS 16
#define GROUP_PUTS 40

struct group_thread {
	struct efs_store *store;
	unsigned index;
	int failures;
};

static void *group_main(void *arg)
{
	struct group_thread *t = arg;
	unsigned char data[777];
	char id[65];
	for (unsigned i = 0; i < GROUP_PUTS; i++) {
		struct efs_store_writer *w = NULL;
		chunk_id(10000 + t->index * 1000 + i, id);
		fill_pattern(data, sizeof(data), t->index * 1000 + i);
		if (efs_store_write_begin(t->store, id, sizeof(data), 0, &w) < 0 ||
		    efs_store_write(w, data, sizeof(data)) < 0 ||
		    efs_store_write_commit(w, true, efs_crc32c(0, data, sizeof(data))) < 0)
			t->failures++;
	}
	return NULL;
}

/* Many threads committing at once (they share fdatasyncs): every chunk is
 * there and right, before and after a reopen, across sealed volumes. */
static void test_concurrent_commits_are_all_kept(void **state)
{
	struct fixture *f = *state;
	struct group_thread threads[GROUP_THREADS];
	pthread_t tids[GROUP_THREADS];
	unsigned char want[777];
	char id[65];
	uint32_t flags;

	for (unsigned i = 0; i < GROUP_THREADS; i++) {
		threads[i] = (struct group_thread){.store = f->store, .index = i};
		assert_int_equal(pthread_create(&tids[i], NULL, group_main, &threads[i]), 0);
	}
	for (unsigned i = 0; i < GROUP_THREADS; i++) {
		assert_int_equal(pthread_join(tids[i], NULL), 0);
		assert_int_equal(threads[i].failures, 0);
	}
	for (int round = 0; round < 2; round++) {
		expect_stats(f->store, GROUP_THREADS * GROUP_PUTS, GROUP_THREADS * GROUP_PUTS * 777);
		for (unsigned t = 0; t < GROUP_THREADS; t++) {
			for (unsigned i = 0; i < GROUP_PUTS; i++) {
				chunk_id(10000 + t * 1000 + i, id);
				fill_pattern(want, sizeof(want), t * 1000 + i);
				assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), 0);
				assert_memory_equal(f->buf.data, want, sizeof(want));
			}
		}
		reopen(f);
	}
	struct efs_store_volume_stats vs;
	efs_store_volume_stats(f->store, &vs);
	assert_true(vs.volume_count > 1); /* 4 KiB volumes: sealed as they filled */
}

/* An async waiter that records its result and wakes the test. */
struct test_waiter {
	struct efs_store_waiter waiter;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool called;
	int calls;
	int result;
	pthread_t thread;
};

static void test_waiter_done(struct efs_store_waiter *waiter, int result)
{
	struct test_waiter *t =
		(struct test_waiter *)((char *)waiter - offsetof(struct test_waiter, waiter));
	pthread_mutex_lock(&t->lock);
	t->called = true;
	t->calls++;
	t->result = result;
	t->thread = pthread_self();
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

static void test_waiter_init(struct test_waiter *t)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	t->waiter.done = test_waiter_done;
}

static int test_waiter_wait(struct test_waiter *t)
{
	pthread_mutex_lock(&t->lock);
	while (!t->called)
		pthread_cond_wait(&t->cond, &t->lock);
	int r = t->result;
	pthread_mutex_unlock(&t->lock);
	return r;
}

static void test_waiter_release(struct test_waiter *t)
{
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
}

/* The async commit and delete: done is called once, from the committer
 * (not the caller's thread) when the change had to be synced, at once on
 * the caller's thread when it failed before; what it acknowledged is there
 * after a reopen. */
#define ASYNC_PUTS 8
static void test_async_commit_and_delete(void **state)
{
	struct fixture *f = *state;
	struct test_waiter waiters[ASYNC_PUTS], bad, del, absent;
	unsigned char data[300];
	char id[65];
	uint32_t flags;

	for (unsigned i = 0; i < ASYNC_PUTS; i++) {
		struct efs_store_writer *w = NULL;
		fill_pattern(data, sizeof(data), 500 + i);
		chunk_id(500 + i, id);
		test_waiter_init(&waiters[i]);
		assert_int_equal(efs_store_write_begin(f->store, id, sizeof(data), 0, &w), 0);
		assert_int_equal(efs_store_write(w, data, sizeof(data)), 0);
		efs_store_write_commit_async(w, true, efs_crc32c(0, data, sizeof(data)),
					     &waiters[i].waiter);
	}
	for (unsigned i = 0; i < ASYNC_PUTS; i++) {
		assert_int_equal(test_waiter_wait(&waiters[i]), 0);
		assert_int_equal(waiters[i].calls, 1);
		assert_false(pthread_equal(waiters[i].thread, pthread_self()));
	}

	/* A CRC mismatch fails before any sync: answered on this thread. */
	struct efs_store_writer *w = NULL;
	chunk_id(600, id);
	test_waiter_init(&bad);
	assert_int_equal(efs_store_write_begin(f->store, id, sizeof(data), 0, &w), 0);
	assert_int_equal(efs_store_write(w, data, sizeof(data)), 0);
	efs_store_write_commit_async(w, true, efs_crc32c(0, data, sizeof(data)) ^ 1, &bad.waiter);
	assert_true(bad.called);
	assert_int_equal(bad.result, -EBADMSG);
	assert_true(pthread_equal(bad.thread, pthread_self()));

	chunk_id(500, id);
	test_waiter_init(&del);
	efs_store_delete_async(f->store, id, 0, &del.waiter);
	assert_int_equal(test_waiter_wait(&del), 0);
	test_waiter_init(&absent);
	efs_store_delete_unmodified_for_async(f->store, id, 0, &absent.waiter);
	assert_true(absent.called);
	assert_int_equal(absent.result, -ENOENT);

	reopen(f);
	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), -ENOENT);
	for (unsigned i = 1; i < ASYNC_PUTS; i++) {
		fill_pattern(data, sizeof(data), 500 + i);
		chunk_id(500 + i, id);
		assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), 0);
		assert_memory_equal(f->buf.data, data, sizeof(data));
	}
	for (unsigned i = 0; i < ASYNC_PUTS; i++)
		test_waiter_release(&waiters[i]);
	test_waiter_release(&bad);
	test_waiter_release(&del);
	test_waiter_release(&absent);
}

static struct efs_store_volume_stats volumes(struct efs_store *s)
{
	struct efs_store_volume_stats vs;
	efs_store_volume_stats(s, &vs);
	return vs;
}

static void compact_all(struct efs_store *s)
{
	int r;
	while ((r = efs_store_compact(s)) > 0)
		;
	assert_int_equal(r, 0);
}

/* Deletes free disk space: compaction moves what is live out of mostly
 * dead volumes and removes them; everything live stays readable, with its
 * write time, and a restart finds the same. */
static void test_compaction_reclaims_deleted_space(void **state)
{
	struct fixture *f = *state;
	unsigned char data[1000];
	char id[65];
	uint32_t flags;
	uint64_t length;
	int64_t mtimes[40];

	for (unsigned i = 0; i < 40; i++) {
		chunk_id(200 + i, id);
		fill_pattern(data, sizeof(data), i);
		put(f->store, id, data, sizeof(data), 0);
		assert_int_equal(efs_store_stat(f->store, id, &length, &flags, &mtimes[i]), 0);
	}
	struct efs_store_volume_stats before = volumes(f->store);
	assert_true(before.file_bytes >= 40 * 1000);
	for (unsigned i = 0; i < 40; i++) {
		if (i % 8 == 0)
			continue; /* keeps 5 */
		chunk_id(200 + i, id);
		assert_int_equal(efs_store_delete(f->store, id, 0), 0);
	}
	compact_all(f->store);
	struct efs_store_volume_stats after = volumes(f->store);
	print_message("volumes %llu -> %llu, bytes %llu -> %llu\n",
		      (unsigned long long)before.volume_count, (unsigned long long)after.volume_count,
		      (unsigned long long)before.file_bytes, (unsigned long long)after.file_bytes);
	assert_true(after.file_bytes < before.file_bytes / 2);
	assert_true(after.volume_count < before.volume_count);
	for (int round = 0; round < 2; round++) {
		expect_stats(f->store, 5, 5000);
		for (unsigned i = 0; i < 40; i++) {
			int64_t mtime = 0;
			chunk_id(200 + i, id);
			fill_pattern(data, sizeof(data), i);
			if (i % 8 != 0) {
				assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), -ENOENT);
				continue;
			}
			assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), 0);
			assert_memory_equal(f->buf.data, data, sizeof(data));
			assert_int_equal(efs_store_stat(f->store, id, &length, &flags, &mtime), 0);
			assert_int_equal(mtime, mtimes[i]); /* the collector's guard still works */
		}
		reopen(f);
	}
}

/* Sealed volumes at least half dead: what compaction has yet to reclaim. */
static size_t half_dead_volumes(struct efs_store *s)
{
	size_t n = 0;
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->vol_count; i++) {
		struct volume *v = s->vols[i];
		if (v->sealed && store_volume_needed(s, v) * 2 <= v->size)
			n++;
	}
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* A compaction that fails (here: reads of its volume fail) does not leave
 * that volume alone until a restart: it is tried again after a backoff,
 * and once the error has passed the space is reclaimed. */
static void test_compaction_retries_a_failed_volume_later(void **state)
{
	struct fixture *f = *state;
	unsigned char data[1000];
	char id[65];
	int broken[64];
	size_t nbroken = 0;

	for (unsigned i = 0; i < 40; i++) {
		chunk_id(300 + i, id);
		fill_pattern(data, sizeof(data), i);
		put(f->store, id, data, sizeof(data), 0);
	}
	for (unsigned i = 0; i < 40; i++) {
		if (i % 8 == 0)
			continue; /* keeps 5 */
		chunk_id(300 + i, id);
		assert_int_equal(efs_store_delete(f->store, id, 0), 0);
	}
	struct efs_store_volume_stats before = volumes(f->store);

	/* Every sealed volume's reads fail: its descriptor is swapped for
	 * one open for writing only. */
	struct efs_store *s = f->store;
	int wronly = open("/dev/null", O_WRONLY);
	assert_true(wronly >= 0);
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->vol_count && nbroken < 64; i++) {
		struct volume *v = s->vols[i];
		broken[nbroken++] = v->fd;
		v->fd = wronly;
	}
	pthread_mutex_unlock(&s->lock);
	int r = efs_store_compact(s);
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < nbroken; i++)
		s->vols[i]->fd = broken[i];
	pthread_mutex_unlock(&s->lock);
	close(wronly);
	assert_true(r < 0);

	/* The error has passed: after the backoff (1 s; waited for up to 20 s
	 * on a loaded machine), compaction reclaims every dead volume, the one
	 * that failed included. */
	int64_t deadline = efs_mono_ms() + 20000;
	do {
		while (efs_store_compact(s) > 0)
			;
		usleep(100 * 1000);
	} while (half_dead_volumes(s) > 0 && efs_mono_ms() < deadline);
	assert_int_equal(half_dead_volumes(s), 0);
	struct efs_store_volume_stats after = volumes(s);
	assert_true(after.file_bytes < before.file_bytes / 2);
	expect_stats(s, 5, 5000);
	for (unsigned i = 0; i < 40; i += 8) {
		uint32_t flags;
		chunk_id(300 + i, id);
		fill_pattern(data, sizeof(data), i);
		assert_int_equal(efs_store_get(s, id, &f->buf, &flags), 0);
		assert_memory_equal(f->buf.data, data, sizeof(data));
	}
}

/* A tombstone whose chunk's volume still exists is carried over when the
 * tombstone's own volume is compacted: the chunk stays deleted. */
static void test_compaction_keeps_needed_tombstones(void **state)
{
	struct fixture *f = *state;
	unsigned char data[1000];
	char id[65], doomed[65];
	uint32_t flags;

	fill_pattern(data, sizeof(data), 40);
	chunk_id(300, doomed);
	put(f->store, doomed, data, sizeof(data), 0);
	for (unsigned i = 1; i < 4; i++) { /* its volume stays mostly live */
		chunk_id(300 + i, id);
		put(f->store, id, data, sizeof(data), 0);
	}
	assert_int_equal(efs_store_delete(f->store, doomed, 0), 0);
	/* fill the tombstone's volume with chunks, then delete them */
	for (unsigned i = 10; i < 20; i++) {
		chunk_id(300 + i, id);
		put(f->store, id, data, sizeof(data), 0);
	}
	for (unsigned i = 10; i < 20; i++) {
		chunk_id(300 + i, id);
		assert_int_equal(efs_store_delete(f->store, id, 0), 0);
	}
	compact_all(f->store);
	reopen(f);
	compact_all(f->store);
	reopen(f);
	assert_int_equal(efs_store_get(f->store, doomed, &f->buf, &flags), -ENOENT);
	expect_stats(f->store, 3, 3000);
}

/* Compaction verifies what it copies: a damaged record is quarantined, not
 * copied. */
static void test_compaction_quarantines_a_damaged_record(void **state)
{
	struct fixture *f = *state;
	unsigned char data[1000];
	char id[65], damaged[65], path[PATH_MAX], quarantine[PATH_MAX];
	off_t offset;
	uint32_t flags;

	fill_pattern(data, sizeof(data), 41);
	chunk_id(400, damaged);
	put(f->store, damaged, data, sizeof(data), 0);
	for (unsigned i = 1; i < 4; i++) {
		chunk_id(400 + i, id);
		put(f->store, id, data, sizeof(data), 0);
		assert_int_equal(efs_store_delete(f->store, id, 0), 0);
	}
	chunk_file(f, damaged, path, sizeof(path), &offset);
	flip_byte(path, offset + HEADER + 3);
	compact_all(f->store);
	corrupt_file(f, damaged, quarantine, sizeof(quarantine));
	assert_true(exists(quarantine));
	expect_stats(f->store, 0, 0);
	assert_int_equal(efs_store_get(f->store, damaged, &f->buf, &flags), -ENOENT);
	reopen(f);
	assert_int_equal(efs_store_get(f->store, damaged, &f->buf, &flags), -ENOENT);
}

/* The descriptor keeps the verified bytes after the chunk is deleted and
 * compaction removed its volume file, and after other chunks were written
 * (they never go where the old record was). */
static void test_payload_fd_outlives_delete_and_compaction(void **state)
{
	struct fixture *f = *state;
	unsigned char *data = malloc(BY_FD_LEN), other[3000];
	char id[65], other_id[65];
	struct efs_store_payload p;
	struct located loc;

	assert_non_null(data);
	fill_pattern(data, BY_FD_LEN, 32);
	chunk_id(302, id);
	put(f->store, id, data, BY_FD_LEN, 0);
	assert_true(locate(f, id, &loc));
	assert_int_equal(efs_store_get_payload(f->store, id, 1, &f->buf, &p), 0);

	assert_int_equal(efs_store_delete(f->store, id, 0), 0);
	for (unsigned i = 0; i < 8; i++) {
		chunk_id(310 + i, other_id);
		fill_pattern(other, sizeof(other), 40 + i);
		put(f->store, other_id, other, sizeof(other), 0);
	}
	compact_all(f->store);
	assert_false(exists(loc.path)); /* its volume is gone */
	for (unsigned i = 0; i < 8; i++) {
		chunk_id(320 + i, other_id);
		fill_pattern(other, sizeof(other), 50 + i);
		put(f->store, other_id, other, sizeof(other), 0);
	}
	expect_fd_bytes(p.fd, p.offset, data, BY_FD_LEN);
	close(p.fd);
	free(data);
}

/* Every open starts a new volume; the small ones restarts leave behind
 * are merged, and what they hold stays readable. */
static void test_small_volumes_left_by_restarts_are_merged(void **state)
{
	struct fixture *f = *state;
	unsigned char data[100];
	char id[65];
	uint32_t flags;

	volume_bytes = 1 << 20;
	for (unsigned i = 0; i < 4; i++) {
		reopen(f);
		chunk_id(600 + i, id);
		fill_pattern(data, sizeof(data), i);
		put(f->store, id, data, sizeof(data), 0);
	}
	reopen(f);
	volume_bytes = 4096;
	assert_int_equal(volumes(f->store).volume_count, 4);
	compact_all(f->store);
	assert_int_equal(volumes(f->store).volume_count, 1);
	for (int round = 0; round < 2; round++) {
		expect_stats(f->store, 4, 400);
		for (unsigned i = 0; i < 4; i++) {
			chunk_id(600 + i, id);
			fill_pattern(data, sizeof(data), i);
			assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), 0);
			assert_memory_equal(f->buf.data, data, sizeof(data));
		}
		reopen(f);
	}
}

/* Writes a chunk file of the layout before volumes. */
static void write_legacy(const struct fixture *f, const char *id, const unsigned char *data,
			 size_t len, uint32_t flags, uint32_t crc)
{
	unsigned char h[32] = "EFSC";
	char path[PATH_MAX];
	h[4] = 1;
	h[5] = (unsigned char)flags;
	for (int i = 0; i < 8; i++)
		h[8 + i] = (unsigned char)((uint64_t)len >> (8 * i));
	for (int i = 0; i < 4; i++)
		h[16 + i] = (unsigned char)(crc >> (8 * i));
	uint32_t hcrc = efs_crc32c(0, h, 28);
	for (int i = 0; i < 4; i++)
		h[28 + i] = (unsigned char)(hcrc >> (8 * i));
	snprintf(path, sizeof(path), "%s/chunks/%.2s", f->dir, id);
	assert_int_equal(efs_mkdir_p(path), 0);
	snprintf(path, sizeof(path), "%s/chunks/%.2s/%s", f->dir, id, id);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fwrite(h, 1, 32, fp), 32);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

/* A worker started on a data directory of the old layout serves its
 * chunks: they are imported into volumes (write times kept), damaged ones
 * go to corrupt/, and the old directory is removed. */
static void test_old_layout_is_imported(void **state)
{
	struct fixture *f = *state;
	unsigned char data[3000];
	char a[65], b[65], bad[65], path[PATH_MAX];
	uint32_t flags;
	uint64_t length;
	int64_t mtime;

	efs_store_close(f->store);
	f->store = NULL;
	fill_pattern(data, sizeof(data), 50);
	chunk_id(500, a);
	chunk_id(501, b);
	chunk_id(502, bad);
	write_legacy(f, a, data, 3000, EFS_STORE_GZIP, efs_crc32c(0, data, 3000));
	write_legacy(f, b, data, 10, 0, efs_crc32c(0, data, 10));
	write_legacy(f, bad, data, 100, 0, efs_crc32c(0, data, 100) ^ 1);
	snprintf(path, sizeof(path), "%s/chunks/%.2s/%s", f->dir, a, a);
	struct timespec times[2] = {{1600000000, 123000000}, {1600000000, 123000000}};
	assert_int_equal(utimensat(AT_FDCWD, path, times, 0), 0);
	snprintf(path, sizeof(path), "%s/chunks/%.2s/.tmp-abc", f->dir, a);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fclose(fp);

	assert_int_equal(open_store(f, 0), 0);
	expect_stats(f->store, 2, 3010);
	assert_int_equal(efs_store_get(f->store, a, &f->buf, &flags), 0);
	assert_int_equal(flags, EFS_STORE_GZIP);
	assert_memory_equal(f->buf.data, data, 3000);
	assert_int_equal(efs_store_stat(f->store, a, &length, &flags, &mtime), 0);
	assert_int_equal(mtime, 1600000000123LL);
	assert_int_equal(efs_store_get(f->store, bad, &f->buf, &flags), -ENOENT);
	corrupt_file(f, bad, path, sizeof(path));
	assert_true(exists(path));
	snprintf(path, sizeof(path), "%s/chunks", f->dir);
	assert_false(exists(path));
	reopen(f);
	expect_stats(f->store, 2, 3010);
	assert_int_equal(efs_store_get(f->store, b, &f->buf, &flags), 0);
	assert_memory_equal(f->buf.data, data, 10);
}

/* ---- micro benchmark (not a test) ------------------------------------ */

/* `test_store --bench [DIR]`: 16 threads each commit 4 KiB chunks for about
 * 3 s into a fresh store under DIR (default: build/), then print the rate.
 * Nothing is asserted on the figure; it is for before/after comparisons. */
#define BENCH_THREADS 16
#define BENCH_SECONDS 3

struct bench_thread {
	struct efs_store *store;
	unsigned index;
	int64_t deadline_ms;
	unsigned long ops;
	int error;
};

static void *bench_main(void *arg)
{
	struct bench_thread *t = arg;
	unsigned char data[4096];
	char id[65];
	char label[64];
	while (efs_mono_ms() < t->deadline_ms) {
		struct efs_store_writer *w = NULL;
		int len = snprintf(label, sizeof(label), "bench-%u-%lu", t->index, t->ops);
		efs_sha256_hex(label, (size_t)len, id);
		fill_pattern(data, sizeof(data), (unsigned)t->ops);
		int r = efs_store_write_begin(t->store, id, sizeof(data), 0, &w);
		if (r == 0 && (r = efs_store_write(w, data, sizeof(data))) < 0)
			efs_store_write_abort(w);
		else if (r == 0)
			r = efs_store_write_commit(w, true, efs_crc32c(0, data, sizeof(data)));
		if (r < 0) {
			t->error = r;
			break;
		}
		t->ops++;
	}
	return NULL;
}

static int run_bench(const char *parent)
{
	char dir[PATH_MAX], err[256] = "";
	struct efs_store *store = NULL;
	struct bench_thread threads[BENCH_THREADS];
	pthread_t tids[BENCH_THREADS];
	unsigned long total = 0;

	snprintf(dir, sizeof(dir), "%s/efs-store-bench-XXXXXX", parent);
	if (!mkdtemp(dir) || efs_store_open(dir, 0, &store, err, sizeof(err)) < 0) {
		fprintf(stderr, "cannot open a store in %s: %s\n", dir, err);
		return 1;
	}
	int64_t started = efs_mono_ms();
	for (unsigned i = 0; i < BENCH_THREADS; i++) {
		threads[i] = (struct bench_thread){.store = store, .index = i,
						   .deadline_ms = started + BENCH_SECONDS * 1000};
		pthread_create(&tids[i], NULL, bench_main, &threads[i]);
	}
	for (unsigned i = 0; i < BENCH_THREADS; i++) {
		pthread_join(tids[i], NULL);
		total += threads[i].ops;
		if (threads[i].error)
			fprintf(stderr, "thread %u: %s\n", i, strerror(-threads[i].error));
	}
	int64_t took = efs_mono_ms() - started;
	printf("{\"threads\": %d, \"chunk_bytes\": 4096, \"commits\": %lu, \"ms\": %lld, "
	       "\"commits_per_s\": %.0f}\n",
	       BENCH_THREADS, total, (long long)took, took > 0 ? total * 1000.0 / took : 0.0);
	efs_store_close(store);
	remove_tree(dir);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--bench") == 0)
		return run_bench(argc > 2 ? argv[2] : "build");
	volume_bytes = 4096;

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_write_then_get_returns_bytes_and_flags),
		T(test_commit_without_crc_check),
		T(test_get_crc_gives_the_verified_crc),
		T(test_get_of_absent_chunk),
		T(test_stat_gives_length_flags_mtime),
		T(test_stats_count_chunks_and_bytes),
		T(test_wrong_crc_fails_and_leaves_no_chunk),
		T(test_short_write_fails),
		T(test_write_past_announced_length_fails),
		T(test_abort_leaves_nothing),
		cmocka_unit_test_setup_teardown(test_capacity_counts_writes_in_flight,
						setup_capacity_1000, teardown),
		T(test_invalid_ids_are_refused),
		T(test_delete),
		T(test_conditional_delete),
		T(test_conditional_delete_by_age),
		T(test_flipped_payload_byte_is_quarantined),
		T(test_flipped_header_byte_is_quarantined),
		T(test_newer_format_refuses_the_open),
		T(test_truncated_file_is_quarantined),
		T(test_payload_by_fd_or_in_the_buffer),
		T(test_payload_by_fd_refuses_a_damaged_record),
		T(test_truncated_chunk_releases_its_bytes),
		T(test_reopen_counts_existing_chunks),
		T(test_reopen_ignores_a_torn_tail),
		T(test_reopen_with_damaged_chunk_keeps_counts_right),
		T(test_iterate_visits_every_chunk_once),
		T(test_iterate_in_slices_lets_writes_through),
		T(test_rewriting_a_chunk_replaces_it),
		T(test_write_committed_after_a_delete_survives_reopen),
		T(test_reopen_skips_an_aborted_region),
		T(test_reopen_reads_records_across_the_scan_window),
		T(test_concurrent_commits_are_all_kept),
		T(test_async_commit_and_delete),
		T(test_compaction_reclaims_deleted_space),
		T(test_compaction_retries_a_failed_volume_later),
		T(test_compaction_keeps_needed_tombstones),
		T(test_compaction_quarantines_a_damaged_record),
		T(test_payload_fd_outlives_delete_and_compaction),
		T(test_small_volumes_left_by_restarts_are_merged),
		T(test_old_layout_is_imported),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
