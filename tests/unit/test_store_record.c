/* SPDX-License-Identifier: MIT */
/* test_store_record.c - unit tests of the store's on-disk record
 * (src/worker/store_record.c, through the store's private header
 * store_internal.h): header and trailer round trips, the byte positions
 * store.h documents, what makes a header or a trailer fail its checks (a
 * trailer commits only its own header), the read/write loops, and
 * store_uncommit. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_round_trip),
		cmocka_unit_test(test_tombstone_range),
		cmocka_unit_test(test_header_rejects),
		cmocka_unit_test(test_trailer_commits_its_own_header),
		cmocka_unit_test(test_io_and_uncommit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
