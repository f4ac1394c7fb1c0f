/* SPDX-License-Identifier: MIT */
/* test_store_record.c - unit tests of the store's on-disk record
 * (src/worker/store_record.c, through the store's private header
 * store_internal.h): header and trailer round trips, the byte positions
 * store.h documents, what makes a header or a trailer fail its checks (a
 * trailer commits only its own header), the read/write loops,
 * store_uncommit, and the cases tests/fuzz/fuzz_volume.c found. */
#include <errno.h>
#include <fcntl.h>
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

#include "echofs/buf.h"
#include "echofs/hash.h"
#include "worker/store_internal.h"

#define ID_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define ID_B "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static struct record chunk_record(const char *id, uint64_t length, uint8_t flags)
{
	struct record rec = {.type = TYPE_CHUNK, .flags = flags, .length = length};
	memcpy(rec.chunk_id, id, 65);
	return rec;
}

static void test_header_round_trip(void **state)
{
	unsigned char h[HEADER_LEN];
	struct record in = chunk_record(ID_A, 123456, EFS_STORE_GZIP), out;

	uint32_t crc = store_header_encode(h, &in);
	/* Where store.h says the fields are. */
	assert_memory_equal(h, RECORD_MAGIC, 4);
	assert_int_equal(h[4], FORMAT_VERSION);
	assert_int_equal(h[5], TYPE_CHUNK);
	assert_int_equal(h[6], EFS_STORE_GZIP);
	assert_int_equal(store_get_le(h + 8, 8), 123456);
	assert_memory_equal(h + 24, ID_A, 64);
	assert_int_equal(store_get_le(h + 92, 4), crc);

	assert_int_equal(store_header_decode(h, &out), 0);
	assert_int_equal(out.type, TYPE_CHUNK);
	assert_int_equal(out.flags, EFS_STORE_GZIP);
	assert_int_equal(out.length, 123456);
	assert_string_equal(out.chunk_id, ID_A);
	assert_int_equal(out.header_crc, crc);
}

static void test_tombstone_range(void **state)
{
	unsigned char h[HEADER_LEN];
	struct record in = {.type = TYPE_TOMBSTONE, .target_volume = 9, .first_volume = 4}, out;
	memcpy(in.chunk_id, ID_B, 65);

	store_header_encode(h, &in);
	assert_int_equal(store_header_decode(h, &out), 0);
	assert_int_equal(out.type, TYPE_TOMBSTONE);
	assert_int_equal(out.first_volume, 4);
	assert_int_equal(out.target_volume, 9);

	/* A tombstone written before first_volume existed covers 1..target. */
	in.first_volume = 0;
	store_header_encode(h, &in);
	assert_int_equal(store_header_decode(h, &out), 0);
	assert_int_equal(out.first_volume, 1);
	assert_int_equal(out.target_volume, 9);

	/* A tombstone has no payload. */
	in.length = 1;
	store_header_encode(h, &in);
	assert_int_equal(store_header_decode(h, &out), -EBADMSG);
}

static void test_header_rejects(void **state)
{
	unsigned char h[HEADER_LEN], bad[HEADER_LEN];
	struct record in = chunk_record(ID_A, 10, 0), out;
	store_header_encode(h, &in);

	/* Any flipped byte fails the CRC (or the magic). */
	for (size_t i = 0; i < HEADER_LEN; i++) {
		memcpy(bad, h, HEADER_LEN);
		bad[i] ^= 0x40;
		assert_int_equal(store_header_decode(bad, &out), -EBADMSG);
	}
	/* Well formed, but naming nothing valid. */
	in.length = EFS_STORE_MAX_CHUNK + 1ull;
	store_header_encode(h, &in);
	assert_int_equal(store_header_decode(h, &out), -EBADMSG);
	in = chunk_record(ID_A, 10, 0);
	in.type = 7;
	store_header_encode(h, &in);
	assert_int_equal(store_header_decode(h, &out), -EBADMSG);
	in = chunk_record("0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", 10, 0);
	store_header_encode(h, &in);
	assert_int_equal(store_header_decode(h, &out), -EBADMSG);
}

static void test_trailer_commits_its_own_header(void **state)
{
	unsigned char ha[HEADER_LEN], hb[HEADER_LEN], t[TRAILER_LEN];
	struct record a = chunk_record(ID_A, 10, 0), b = chunk_record(ID_B, 10, 0);
	struct commit in = {.payload_crc = 0xdeadbeef, .seq = 77, .mtime_ms = 1700000000123LL}, out;
	uint32_t crc_a = store_header_encode(ha, &a), crc_b = store_header_encode(hb, &b);

	store_trailer_encode(t, crc_a, &in);
	assert_memory_equal(t + 4, COMMIT_MAGIC, 4);
	assert_int_equal(store_trailer_decode(t, crc_a, &out), 0);
	assert_int_equal(out.payload_crc, 0xdeadbeef);
	assert_int_equal(out.seq, 77);
	assert_int_equal(out.mtime_ms, 1700000000123LL);
	/* The same trailer after another header does not commit it. */
	assert_int_equal(store_trailer_decode(t, crc_b, &out), -EBADMSG);
	/* Nor does a damaged one. */
	t[9] ^= 1;
	assert_int_equal(store_trailer_decode(t, crc_a, &out), -EBADMSG);
}

static void test_io_and_uncommit(void **state)
{
	char path[] = "/tmp/echofs-test-store-record-XXXXXX";
	unsigned char h[HEADER_LEN], t[TRAILER_LEN], got[HEADER_LEN];
	struct record rec = chunk_record(ID_A, 5, 0), out;
	struct commit c = {.payload_crc = 1, .seq = 1, .mtime_ms = 1}, cout;
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);

	uint32_t crc = store_header_encode(h, &rec);
	store_trailer_encode(t, crc, &c);
	assert_int_equal(store_write_all(fd, h, HEADER_LEN, 0), 0);
	assert_int_equal(store_write_all(fd, "hello", 5, HEADER_LEN), 0);
	assert_int_equal(store_write_all(fd, t, TRAILER_LEN, HEADER_LEN + 5), 0);
	assert_int_equal(store_read_all(fd, got, HEADER_LEN, 0), 0);
	assert_int_equal(store_header_decode(got, &out), 0);
	/* Reading past the end is a truncated record. */
	assert_int_equal(store_read_all(fd, got, 2, RECORD_LEN(5) - 1), -EBADMSG);

	struct volume v = {.fd = fd};
	assert_int_equal(store_uncommit(&v, 0, 5), 0);
	assert_int_equal(store_read_all(fd, t, TRAILER_LEN, HEADER_LEN + 5), 0);
	assert_int_equal(store_trailer_decode(t, crc, &cout), -EBADMSG);
	/* Uncommitting twice, or past the end, changes nothing and is fine. */
	assert_int_equal(store_uncommit(&v, 0, 5), 0);
	assert_int_equal(store_uncommit(&v, RECORD_LEN(5), 5), 0);
	close(fd);
}

/* Found by tests/fuzz/fuzz_volume.c: a volume holding a committed record
 * whose sequence number is the largest there is (UINT64_MAX; its CRCs
 * check) made the replay set the next sequence number to UINT64_MAX + 1,
 * that is 0. Every later record then lost to it at the next open: a
 * chunk deleted after the restart came back, and a rewrite was replaced by
 * the old copy. A sequence number past INT64_MAX (2^63 writes: not reached
 * by any real store) does not commit. */
static void test_replay_refuses_a_sequence_number_that_would_wrap(void **state)
{
	char dir[] = "/tmp/echofs-test-store-record-XXXXXX", path[128], err[256] = "";
	unsigned char h[HEADER_LEN], t[TRAILER_LEN];
	struct record rec = chunk_record(ID_A, 5, 0);
	struct commit c = {.payload_crc = efs_crc32c(0, "hello", 5), .seq = UINT64_MAX, .mtime_ms = 1};
	struct efs_store_options opt = {.volume_bytes = 1 << 20};
	struct efs_store *s = NULL;
	struct efs_store_writer *w = NULL;
	struct efs_buf buf;
	uint64_t length;
	uint32_t flags;
	int64_t mtime;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/volumes", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/volumes/0000000001.vol", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	uint32_t crc = store_header_encode(h, &rec);
	store_trailer_encode(t, crc, &c);
	assert_int_equal(store_write_all(fd, h, HEADER_LEN, 0), 0);
	assert_int_equal(store_write_all(fd, "hello", 5, HEADER_LEN), 0);
	assert_int_equal(store_write_all(fd, t, TRAILER_LEN, HEADER_LEN + 5), 0);
	close(fd);

	/* Open, write ID_B, delete ID_A (if it is there), reopen. */
	assert_int_equal(efs_store_open_with(dir, &opt, &s, err, sizeof(err)), 0);
	assert_int_equal(efs_store_write_begin(s, ID_B, 3, 0, &w), 0);
	assert_int_equal(efs_store_write(w, "new", 3), 0);
	assert_int_equal(efs_store_write_commit(w, false, 0), 0);
	int r = efs_store_delete(s, ID_A, 0);
	assert_true(r == 0 || r == -ENOENT);
	efs_store_close(s);
	assert_int_equal(efs_store_open_with(dir, &opt, &s, err, sizeof(err)), 0);

	assert_int_equal(efs_store_stat(s, ID_A, &length, &flags, &mtime), -ENOENT);
	efs_buf_init(&buf, EFS_STORE_MAX_CHUNK);
	assert_int_equal(efs_store_get(s, ID_B, &buf, &flags), 0);
	assert_int_equal(buf.len, 3);
	assert_memory_equal(buf.data, "new", 3);
	efs_buf_release(&buf);
	efs_store_close(s);

	/* The codec itself: such a trailer does not commit its header. */
	struct commit out;
	assert_int_equal(store_trailer_decode(t, crc, &out), -EBADMSG);
	c.seq = (uint64_t)INT64_MAX;
	store_trailer_encode(t, crc, &c);
	assert_int_equal(store_trailer_decode(t, crc, &out), 0);

	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	assert_int_equal(system(path), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_round_trip),
		cmocka_unit_test(test_tombstone_range),
		cmocka_unit_test(test_header_rejects),
		cmocka_unit_test(test_trailer_commits_its_own_header),
		cmocka_unit_test(test_io_and_uncommit),
		cmocka_unit_test(test_replay_refuses_a_sequence_number_that_would_wrap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
