/* SPDX-License-Identifier: MIT */
/* test_store.c - unit tests of the worker's chunk store (src/worker/store.h),
 * each in a fresh directory under /tmp.
 *
 * Covers the write protocol (begin/write/commit, CRC check, short and long
 * writes, abort), capacity reservations, id validation, conditional delete,
 * quarantine of corrupt chunks (payload, header, truncation), what a reopen
 * finds, iteration and replacement. Chunk files are looked at where the
 * header documents them: <dir>/chunks/<first 2 hex>/<id>, corrupt ones in
 * <dir>/corrupt/<id>.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "echofs/hash.h"
#include "echofs/util.h"
#include "worker/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
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

static int open_store(struct fixture *f, uint64_t capacity)
{
	char err[256] = "";
	int r = efs_store_open(f->dir, capacity, &f->store, err, sizeof(err));
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

static void chunk_file(const struct fixture *f, const char *id, char *path, size_t size)
{
	snprintf(path, size, "%s/chunks/%.2s/%s", f->dir, id, id);
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

/* Entries other than "." and ".." in @dir. */
static size_t dir_entries(const char *dir)
{
	size_t n = 0;
	DIR *d = opendir(dir);
	struct dirent *e;
	assert_non_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

/* Entries of the subdirectory chunk @id lives in. */
static size_t subdir_entries(const struct fixture *f, const char *id)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/chunks/%.2s", f->dir, id);
	return dir_entries(path);
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
	assert_int_equal(subdir_entries(f, id), 0);
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
	assert_int_equal(subdir_entries(f, id), 0);
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
	assert_int_equal(subdir_entries(f, id), 0);
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

/* ---- corruption ------------------------------------------------------ */

/* After damage to chunk @id's file: the read fails with -EBADMSG, the file
 * is in corrupt/, a second read finds nothing, and the chunk count dropped
 * by one (and, unless @bytes_before is UINT64_MAX, the bytes by @length). */
static void expect_quarantined(struct fixture *f, const char *id, uint64_t count_before,
			       uint64_t bytes_before, uint64_t length)
{
	char path[PATH_MAX], quarantine[PATH_MAX];
	uint32_t flags = 0x5555;

	chunk_file(f, id, path, sizeof(path));
	corrupt_file(f, id, quarantine, sizeof(quarantine));
	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), -EBADMSG);
	assert_int_equal(flags, 0x5555);
	assert_false(exists(path));
	assert_true(exists(quarantine));
	assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), -ENOENT);
	if (bytes_before == UINT64_MAX)
		assert_int_equal(get_stats(f->store).chunk_count, count_before - 1);
	else
		expect_stats(f->store, count_before - 1, bytes_before - length);
}

static void test_flipped_payload_byte_is_quarantined(void **state)
{
	struct fixture *f = *state;
	unsigned char data[1000];
	char id[65], other[65], path[PATH_MAX];
	uint32_t flags;

	fill_pattern(data, sizeof(data), 14);
	chunk_id(40, id);
	chunk_id(41, other);
	put(f->store, id, data, sizeof(data), 0);
	put(f->store, other, data, 500, 0);
	expect_stats(f->store, 2, 1500);

	chunk_file(f, id, path, sizeof(path));
	/* the payload is the last 1000 bytes of the file */
	flip_byte(path, file_size(path) - 500);
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
	/* magic, version, flags, reserved, length, payload CRC, header CRC */
	static const off_t offsets[] = {0, 4, 5, 6, 8, 12, 16, 20, 28, 31};

	fill_pattern(data, sizeof(data), 15);
	chunk_id(42, id);
	for (size_t i = 0; i < EFS_ARRAY_SIZE(offsets); i++) {
		put(f->store, id, data, sizeof(data), 0);
		expect_stats(f->store, 1, 1000);
		chunk_file(f, id, path, sizeof(path));
		assert_int_equal(file_size(path), 32 + 1000); /* the 32-byte header */
		flip_byte(path, offsets[i]);
		print_message("header byte %lld\n", (long long)offsets[i]);
		expect_quarantined(f, id, 1, 1000, 1000);
	}
}

static const off_t truncated_lengths[] = {32 + 999, 32 + 500, 32, 10, 0};

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
		efs_store_close(f->store);
		f->store = NULL;
		assert_int_equal(open_store(f, 0), 0);
		put(f->store, id, data, sizeof(data), 0);
		chunk_file(f, id, path, sizeof(path));
		assert_int_equal(truncate(path, truncated_lengths[i]), 0);
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
		efs_store_close(f->store);
		f->store = NULL;
		assert_int_equal(open_store(f, 0), 0);
		put(f->store, id, data, sizeof(data), 0);
		chunk_file(f, id, path, sizeof(path));
		assert_int_equal(truncate(path, truncated_lengths[i]), 0);
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

/* A temporary file left by a write that never finished (a crash between
 * create and rename) is removed when the store opens. */
static void test_reopen_removes_stray_temporary(void **state)
{
	struct fixture *f = *state;
	unsigned char data[100];
	char id[65], stray[PATH_MAX], path[PATH_MAX];

	fill_pattern(data, sizeof(data), 18);
	chunk_id(53, id);
	put(f->store, id, data, sizeof(data), 0);
	efs_store_close(f->store);
	f->store = NULL;

	snprintf(stray, sizeof(stray), "%s/chunks/%.2s/.tmp-xyz", f->dir, id);
	FILE *fp = fopen(stray, "w");
	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, 50, fp), 50);
	assert_int_equal(fclose(fp), 0);

	assert_int_equal(open_store(f, 0), 0);
	expect_stats(f->store, 1, 100);
	assert_false(exists(stray));
	chunk_file(f, id, path, sizeof(path));
	assert_true(exists(path));
	assert_int_equal(subdir_entries(f, id), 1);
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
	chunk_file(f, damaged, path, sizeof(path));
	assert_int_equal(truncate(path, 10), 0);

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
	assert_int_equal(subdir_entries(f, id), 1);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_write_then_get_returns_bytes_and_flags),
		T(test_commit_without_crc_check),
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
		T(test_flipped_payload_byte_is_quarantined),
		T(test_flipped_header_byte_is_quarantined),
		T(test_truncated_file_is_quarantined),
		T(test_truncated_chunk_releases_its_bytes),
		T(test_reopen_counts_existing_chunks),
		T(test_reopen_removes_stray_temporary),
		T(test_reopen_with_damaged_chunk_keeps_counts_right),
		T(test_iterate_visits_every_chunk_once),
		T(test_rewriting_a_chunk_replaces_it),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
