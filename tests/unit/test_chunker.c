/* SPDX-License-Identifier: MIT */
/* test_chunker.c - unit tests of the fixed-size stream chunker
 * (src/master/chunker.h).
 *
 * The contract under test: every chunk but the last is exactly chunk_size
 * bytes, the last holds the rest, an empty stream has none; chunks are
 * numbered 0..n-1 in order whatever the sizes of the pieces fed; an error
 * from the emit callback stops the chunker and is returned; whole chunks
 * found in the input are passed on without a copy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "master/chunker.h"

#include <string.h>

#define SMALL_CHUNK 16
#define MAX_CHUNKS 64
#define MAX_BYTES 4096

/* Everything the emit callback saw, copied at the time of the call. */
struct recorder {
	size_t calls;
	uint64_t indices[MAX_CHUNKS];
	size_t sizes[MAX_CHUNKS];
	const char *pointers[MAX_CHUNKS];
	unsigned char bytes[MAX_BYTES]; /* the chunks, concatenated */
	size_t bytes_len;
	int64_t fail_index; /* the call with this index returns fail_code; -1: never */
	int fail_code;
};

struct fixture {
	struct efs_chunker chunker;
	struct recorder rec;
};

static int record_chunk(void *ctx, uint64_t index, const char *data, size_t len)
{
	struct recorder *rec = ctx;
	assert_true(rec->calls < MAX_CHUNKS);
	assert_true(rec->bytes_len + len <= MAX_BYTES);
	rec->indices[rec->calls] = index;
	rec->sizes[rec->calls] = len;
	rec->pointers[rec->calls] = data;
	memcpy(rec->bytes + rec->bytes_len, data, len);
	rec->bytes_len += len;
	rec->calls++;
	if (rec->fail_index >= 0 && (uint64_t)rec->fail_index == index)
		return rec->fail_code;
	return 0;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	f->rec.fail_index = -1;
	efs_chunker_init(&f->chunker, SMALL_CHUNK, record_chunk, &f->rec);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	efs_chunker_release(&f->chunker);
	free(f);
	return 0;
}

/* A recognisable stream: byte i is a function of i with a long period. */
static void fill_pattern(unsigned char *data, size_t len)
{
	for (size_t i = 0; i < len; i++)
		data[i] = (unsigned char)((i * 31 + i / 251 + 7) & 0xff);
}

static void test_empty_stream_has_no_chunk(void **state)
{
	struct fixture *f = *state;
	char byte = 'x';

	assert_int_equal(efs_chunker_feed(&f->chunker, &byte, 0), 0);
	assert_int_equal(efs_chunker_finish(&f->chunker), 0);
	assert_int_equal(f->rec.calls, 0);
	assert_int_equal(f->chunker.total_bytes, 0);
}

static void test_one_byte_gives_one_chunk_of_one(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(efs_chunker_feed(&f->chunker, "x", 1), 0);
	assert_int_equal(f->rec.calls, 0); /* incomplete: held until finish */
	assert_int_equal(efs_chunker_finish(&f->chunker), 0);
	assert_int_equal(f->rec.calls, 1);
	assert_int_equal(f->rec.indices[0], 0);
	assert_int_equal(f->rec.sizes[0], 1);
	assert_int_equal(f->rec.bytes[0], 'x');
	assert_int_equal(f->chunker.total_bytes, 1);
}

static void test_exactly_chunk_size_gives_one_chunk(void **state)
{
	struct fixture *f = *state;
	unsigned char data[SMALL_CHUNK];
	fill_pattern(data, sizeof(data));

	assert_int_equal(efs_chunker_feed(&f->chunker, (const char *)data, sizeof(data)), 0);
	assert_int_equal(f->rec.calls, 1); /* complete: emitted by feed */
	assert_int_equal(efs_chunker_finish(&f->chunker), 0);
	assert_int_equal(f->rec.calls, 1);
	assert_int_equal(f->rec.indices[0], 0);
	assert_int_equal(f->rec.sizes[0], SMALL_CHUNK);
	assert_memory_equal(f->rec.bytes, data, sizeof(data));
	assert_int_equal(f->chunker.total_bytes, SMALL_CHUNK);
}

static void test_chunk_size_plus_one_gives_two_chunks(void **state)
{
	struct fixture *f = *state;
	unsigned char data[SMALL_CHUNK + 1];
	fill_pattern(data, sizeof(data));

	assert_int_equal(efs_chunker_feed(&f->chunker, (const char *)data, sizeof(data)), 0);
	assert_int_equal(f->rec.calls, 1);
	assert_int_equal(efs_chunker_finish(&f->chunker), 0);
	assert_int_equal(f->rec.calls, 2);
	assert_int_equal(f->rec.indices[0], 0);
	assert_int_equal(f->rec.sizes[0], SMALL_CHUNK);
	assert_int_equal(f->rec.indices[1], 1);
	assert_int_equal(f->rec.sizes[1], 1);
	assert_int_equal(f->rec.bytes_len, sizeof(data));
	assert_memory_equal(f->rec.bytes, data, sizeof(data));
	assert_int_equal(f->chunker.total_bytes, SMALL_CHUNK + 1);
}

/* Feeds @len bytes of @data in pieces of @piece bytes (the last shorter)
 * through a fresh chunker and checks the chunks against the contract. */
static void check_chunks_for_piece_size(const unsigned char *data, size_t len, size_t piece)
{
	struct efs_chunker chunker;
	struct recorder *rec = calloc(1, sizeof(*rec));
	size_t expected_count = (len + SMALL_CHUNK - 1) / SMALL_CHUNK;

	assert_non_null(rec);
	rec->fail_index = -1;
	efs_chunker_init(&chunker, SMALL_CHUNK, record_chunk, rec);
	for (size_t off = 0; off < len; off += piece) {
		size_t n = len - off < piece ? len - off : piece;
		assert_int_equal(efs_chunker_feed(&chunker, (const char *)data + off, n), 0);
	}
	assert_int_equal(efs_chunker_finish(&chunker), 0);

	assert_int_equal(rec->calls, expected_count);
	for (size_t i = 0; i < rec->calls; i++) {
		size_t want = i + 1 < expected_count ? SMALL_CHUNK : len - i * SMALL_CHUNK;
		assert_int_equal(rec->indices[i], i);
		assert_int_equal(rec->sizes[i], want);
	}
	assert_int_equal(rec->bytes_len, len);
	assert_memory_equal(rec->bytes, data, len);
	assert_int_equal(chunker.total_bytes, len);
	efs_chunker_release(&chunker);
	free(rec);
}

static void test_every_piece_size_gives_identical_chunks(void **state)
{
	const size_t len = 10 * SMALL_CHUNK + 7;
	unsigned char data[10 * SMALL_CHUNK + 7];
	fill_pattern(data, len);

	for (size_t piece = 1; piece <= 2 * SMALL_CHUNK + 3; piece++)
		check_chunks_for_piece_size(data, len, piece);
}

static void test_irregular_pieces_give_identical_chunks(void **state)
{
	struct fixture *f = *state;
	const size_t len = 10 * SMALL_CHUNK + 7;
	unsigned char data[10 * SMALL_CHUNK + 7];
	/* Piece sizes around every boundary: 0, short, exact, over. */
	static const size_t pieces[] = {0, 3, 13, 16, 0, 1, 31, 17, 15, 16, 2, 40};
	size_t off = 0, k = 0;
	fill_pattern(data, len);

	while (off < len) {
		size_t piece = pieces[k++ % EFS_ARRAY_SIZE(pieces)];
		size_t n = len - off < piece ? len - off : piece;
		assert_int_equal(efs_chunker_feed(&f->chunker, (const char *)data + off, n), 0);
		off += n;
	}
	assert_int_equal(efs_chunker_finish(&f->chunker), 0);
	assert_int_equal(f->rec.calls, 11);
	for (size_t i = 0; i < 11; i++) {
		assert_int_equal(f->rec.indices[i], i);
		assert_int_equal(f->rec.sizes[i], i < 10 ? SMALL_CHUNK : 7);
	}
	assert_memory_equal(f->rec.bytes, data, len);
	assert_int_equal(f->chunker.total_bytes, len);
}

/* The error of the emit callback, met on a whole chunk passed straight
 * from the input, stops feed: no later chunk is emitted. */
static void test_emit_error_stops_feed_direct(void **state)
{
	struct fixture *f = *state;
	unsigned char data[4 * SMALL_CHUNK];
	fill_pattern(data, sizeof(data));
	f->rec.fail_index = 1;
	f->rec.fail_code = -EIO;

	assert_int_equal(efs_chunker_feed(&f->chunker, (const char *)data, sizeof(data)), -EIO);
	assert_int_equal(f->rec.calls, 2); /* chunk 0, then chunk 1 which failed */
	assert_int_equal(f->rec.indices[1], 1);
}

/* The same when the failing chunk was completed in the pending buffer. */
static void test_emit_error_stops_feed_pending(void **state)
{
	struct fixture *f = *state;
	unsigned char data[4 * SMALL_CHUNK];
	fill_pattern(data, sizeof(data));
	f->rec.fail_index = 0;
	f->rec.fail_code = -EIO;

	assert_int_equal(efs_chunker_feed(&f->chunker, (const char *)data, 5), 0);
	assert_int_equal(f->rec.calls, 0);
	assert_int_equal(efs_chunker_feed(&f->chunker, (const char *)data + 5, sizeof(data) - 5),
			 -EIO);
	assert_int_equal(f->rec.calls, 1);
	assert_int_equal(f->rec.indices[0], 0);
	assert_int_equal(f->rec.sizes[0], SMALL_CHUNK);
}

static void test_emit_error_is_returned_by_finish(void **state)
{
	struct fixture *f = *state;
	unsigned char data[SMALL_CHUNK + 5];
	fill_pattern(data, sizeof(data));
	f->rec.fail_index = 1;
	f->rec.fail_code = -EIO;

	assert_int_equal(efs_chunker_feed(&f->chunker, (const char *)data, sizeof(data)), 0);
	assert_int_equal(f->rec.calls, 1);
	assert_int_equal(efs_chunker_finish(&f->chunker), -EIO);
	assert_int_equal(f->rec.calls, 2);
	assert_int_equal(f->rec.sizes[1], 5);
}

/* Whole chunks in the input go out as pointers into the caller's buffer. */
static void test_whole_chunks_are_not_copied(void **state)
{
	struct fixture *f = *state;
	unsigned char data[3 * SMALL_CHUNK + 5];
	fill_pattern(data, sizeof(data));

	assert_int_equal(efs_chunker_feed(&f->chunker, (const char *)data, sizeof(data)), 0);
	assert_int_equal(f->rec.calls, 3);
	for (size_t i = 0; i < 3; i++)
		assert_ptr_equal(f->rec.pointers[i], (const char *)data + i * SMALL_CHUNK);
	assert_int_equal(efs_chunker_finish(&f->chunker), 0);
	assert_int_equal(f->rec.calls, 4);
	assert_int_equal(f->rec.sizes[3], 5);
	assert_memory_equal(f->rec.bytes, data, sizeof(data));
}

/* Once the pending chunk is completed (a copy), the whole chunks after it
 * in the same piece are again passed without a copy. */
static void test_whole_chunks_after_pending_are_not_copied(void **state)
{
	struct fixture *f = *state;
	unsigned char first[1];
	unsigned char data[2 * SMALL_CHUNK + 9];
	fill_pattern(first, sizeof(first));
	fill_pattern(data, sizeof(data));

	assert_int_equal(efs_chunker_feed(&f->chunker, (const char *)first, 1), 0);
	assert_int_equal(efs_chunker_feed(&f->chunker, (const char *)data, sizeof(data)), 0);
	/* chunk 0 = first[0] + data[0..14] (copied), chunk 1 = data[15..30] */
	assert_int_equal(f->rec.calls, 2);
	assert_int_equal(f->rec.sizes[0], SMALL_CHUNK);
	assert_int_equal(f->rec.bytes[0], first[0]);
	assert_memory_equal(f->rec.bytes + 1, data, SMALL_CHUNK - 1);
	assert_ptr_equal(f->rec.pointers[1], (const char *)data + SMALL_CHUNK - 1);
	assert_int_equal(f->rec.sizes[1], SMALL_CHUNK);
	assert_int_equal(efs_chunker_finish(&f->chunker), 0);
	assert_int_equal(f->rec.calls, 3);
	assert_int_equal(f->rec.sizes[2], sizeof(data) - (2 * SMALL_CHUNK - 1));
	assert_int_equal(f->chunker.total_bytes, 1 + sizeof(data));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_empty_stream_has_no_chunk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_byte_gives_one_chunk_of_one, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_exactly_chunk_size_gives_one_chunk, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_chunk_size_plus_one_gives_two_chunks, setup,
						teardown),
		cmocka_unit_test(test_every_piece_size_gives_identical_chunks),
		cmocka_unit_test_setup_teardown(test_irregular_pieces_give_identical_chunks, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_emit_error_stops_feed_direct, setup, teardown),
		cmocka_unit_test_setup_teardown(test_emit_error_stops_feed_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_emit_error_is_returned_by_finish, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_whole_chunks_are_not_copied, setup, teardown),
		cmocka_unit_test_setup_teardown(test_whole_chunks_after_pending_are_not_copied,
						setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
