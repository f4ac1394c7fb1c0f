/* SPDX-License-Identifier: MIT */
/* test_chunk_batch.c - unit tests of the batched replica write frame
 * (include/echofs/chunk_batch.h): what the master builds parses back
 * item for item, and every malformed frame the worker could receive is
 * refused with the items untouched: each cap (count, item length, body
 * length), truncation at every byte, bad magic, version, reserved bytes,
 * flags and chunk ids, and bytes after the last item.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "echofs/chunk_batch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char ID_A[] = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
static const char ID_B[] = "486ea46224d1bb4fb680f34f7c9ad96a8f24ec88be73ea8e5a6c65260e9cb8a7";

/* A frame of @count items, item i of @len bytes of value i, ids A and B
 * alternately, item i gzip when odd. */
static void build(struct efs_buf *out, size_t count, size_t len)
{
	unsigned char *payload = malloc(len ? len : 1);
	assert_non_null(payload);
	efs_buf_init(out, EFS_CHUNK_BATCH_MAX_BODY + 4096);
	assert_int_equal(efs_chunk_batch_begin(out, count), 0);
	for (size_t i = 0; i < count; i++) {
		memset(payload, (int)i, len);
		assert_int_equal(
		    efs_chunk_batch_add(out, i % 2 ? ID_B : ID_A,
					EFS_CHUNK_BATCH_CRC | (i % 2 ? EFS_CHUNK_BATCH_GZIP : 0),
					(uint32_t)(0x1000 + i), payload, len),
		    0);
	}
	free(payload);
	assert_int_equal(out->len, efs_chunk_batch_size(count, count * len));
}

/* Parses @body and checks it fails with @want, leaving the outputs alone. */
static void expect_refused(const void *body, size_t len, int want)
{
	struct efs_chunk_batch_item items[EFS_CHUNK_BATCH_MAX_ITEMS];
	size_t count = 12345;
	char why[160] = "";
	memset(items, 0x5a, sizeof(items));
	int r = efs_chunk_batch_parse(body, len, items, &count, why, sizeof(why));
	if (r != want)
		fail_msg("%zu bytes: returned %d, wanted %d (%s)", len, r, want, why);
	assert_int_equal(count, 12345);
	assert_int_equal(((unsigned char *)items)[0], 0x5a);
	assert_true(why[0] != '\0');
}

static void test_round_trip(void **state)
{
	(void)state;
	struct efs_buf b;
	struct efs_chunk_batch_item items[EFS_CHUNK_BATCH_MAX_ITEMS];
	size_t count = 0;
	char why[160];
	build(&b, 5, 4096);
	assert_int_equal(efs_chunk_batch_parse(b.data, b.len, items, &count, why, sizeof(why)), 0);
	assert_int_equal(count, 5);
	for (size_t i = 0; i < count; i++) {
		assert_string_equal(items[i].chunk_id, i % 2 ? ID_B : ID_A);
		assert_int_equal(items[i].flags,
				 EFS_CHUNK_BATCH_CRC | (i % 2 ? EFS_CHUNK_BATCH_GZIP : 0));
		assert_int_equal(items[i].crc, 0x1000 + i);
		assert_int_equal(items[i].length, 4096);
		for (size_t k = 0; k < 4096; k++)
			assert_int_equal(items[i].payload[k], (unsigned char)i);
	}
	efs_buf_release(&b);
}

static void test_empty_payload_and_caps_exactly(void **state)
{
	(void)state;
	struct efs_buf b;
	struct efs_chunk_batch_item items[EFS_CHUNK_BATCH_MAX_ITEMS];
	size_t count = 0;
	char why[160];
	build(&b, 1, 0);
	assert_int_equal(efs_chunk_batch_parse(b.data, b.len, items, &count, why, sizeof(why)), 0);
	assert_int_equal(items[0].length, 0);
	efs_buf_release(&b);
	/* The most items, each at the item cap: over the body cap, so the
	 * largest legal frame is 15 items of 64 KiB (15 * (64 KiB + 80) + 12). */
	size_t fit = (EFS_CHUNK_BATCH_MAX_BODY - EFS_CHUNK_BATCH_HEAD_LEN) /
		     (EFS_CHUNK_BATCH_ITEM_HEAD_LEN + EFS_CHUNK_BATCH_MAX_ITEM);
	build(&b, fit, EFS_CHUNK_BATCH_MAX_ITEM);
	assert_true(b.len <= EFS_CHUNK_BATCH_MAX_BODY);
	assert_int_equal(efs_chunk_batch_parse(b.data, b.len, items, &count, why, sizeof(why)), 0);
	assert_int_equal(count, fit);
	efs_buf_release(&b);
	build(&b, EFS_CHUNK_BATCH_MAX_ITEMS, 16);
	assert_int_equal(efs_chunk_batch_parse(b.data, b.len, items, &count, why, sizeof(why)), 0);
	assert_int_equal(count, EFS_CHUNK_BATCH_MAX_ITEMS);
	efs_buf_release(&b);
}

static void test_truncated_anywhere(void **state)
{
	(void)state;
	struct efs_buf b;
	build(&b, 3, 100);
	for (size_t cut = 0; cut < b.len; cut++)
		expect_refused(b.data, cut, -EBADMSG);
	efs_buf_release(&b);
}

static void test_trailing_bytes(void **state)
{
	(void)state;
	struct efs_buf b;
	build(&b, 2, 10);
	assert_int_equal(efs_buf_append(&b, "x", 1), 0);
	expect_refused(b.data, b.len, -EBADMSG);
	efs_buf_release(&b);
}

static void put_u32(char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (char)(v >> (8 * i));
}

static void test_bad_counts(void **state)
{
	(void)state;
	struct efs_buf b;
	build(&b, 2, 10);
	put_u32(b.data + 8, 0);
	expect_refused(b.data, b.len, -EBADMSG);
	put_u32(b.data + 8, 1); /* fewer than there are: bytes left over */
	expect_refused(b.data, b.len, -EBADMSG);
	put_u32(b.data + 8, 3); /* more than there are: truncated */
	expect_refused(b.data, b.len, -EBADMSG);
	put_u32(b.data + 8, EFS_CHUNK_BATCH_MAX_ITEMS + 1);
	expect_refused(b.data, b.len, -EBADMSG);
	put_u32(b.data + 8, UINT32_MAX);
	expect_refused(b.data, b.len, -EBADMSG);
	efs_buf_release(&b);
	/* The builder refuses them too. */
	efs_buf_init(&b, 1024);
	assert_int_equal(efs_chunk_batch_begin(&b, 0), -EINVAL);
	assert_int_equal(efs_chunk_batch_begin(&b, EFS_CHUNK_BATCH_MAX_ITEMS + 1), -EINVAL);
	efs_buf_release(&b);
}

static void test_item_over_cap(void **state)
{
	(void)state;
	struct efs_buf b;
	build(&b, 1, 10);
	size_t len_at = EFS_CHUNK_BATCH_HEAD_LEN + 72;
	put_u32(b.data + len_at, EFS_CHUNK_BATCH_MAX_ITEM + 1);
	expect_refused(b.data, b.len, -EBADMSG);
	put_u32(b.data + len_at, UINT32_MAX); /* no overflow past the end */
	expect_refused(b.data, b.len, -EBADMSG);
	efs_buf_release(&b);
	efs_buf_init(&b, 2 * EFS_CHUNK_BATCH_MAX_ITEM);
	assert_int_equal(efs_chunk_batch_begin(&b, 1), 0);
	char *big = calloc(1, EFS_CHUNK_BATCH_MAX_ITEM + 1);
	assert_non_null(big);
	assert_int_equal(efs_chunk_batch_add(&b, ID_A, 0, 0, big, EFS_CHUNK_BATCH_MAX_ITEM + 1),
			 -EINVAL);
	free(big);
	efs_buf_release(&b);
}

static void test_body_over_cap(void **state)
{
	(void)state;
	char *big = calloc(1, EFS_CHUNK_BATCH_MAX_BODY + 1);
	assert_non_null(big);
	memcpy(big, EFS_CHUNK_BATCH_MAGIC, 4);
	big[4] = EFS_CHUNK_BATCH_VERSION;
	put_u32(big + 8, 1);
	expect_refused(big, EFS_CHUNK_BATCH_MAX_BODY + 1, -E2BIG);
	free(big);
}

static void test_bad_head_fields(void **state)
{
	(void)state;
	struct efs_buf b;
	build(&b, 1, 10);
	size_t item = EFS_CHUNK_BATCH_HEAD_LEN;
	struct {
		size_t at;
		char value;
	} cases[] = {
	    {0, 'X'},		     /* magic */
	    {4, 2},		     /* version */
	    {5, 1},		     /* reserved */
	    {7, 1},		     /* reserved */
	    {item + 0, 'G'},	     /* chunk id: not hex */
	    {item + 63, 'A'},	     /* chunk id: upper case */
	    {item + 10, '\0'},	     /* chunk id: a NUL inside */
	    {item + 64, 0x4},	     /* unknown flag */
	    {item + 65, 1},	     /* reserved */
	    {item + 67, 1},	     /* reserved */
	    {item + 76, 1},	     /* reserved */
	    {item + 79, (char)0x80}, /* reserved */
	};
	for (size_t i = 0; i < EFS_ARRAY_SIZE(cases); i++) {
		char saved = b.data[cases[i].at];
		b.data[cases[i].at] = cases[i].value;
		expect_refused(b.data, b.len, -EBADMSG);
		b.data[cases[i].at] = saved;
	}
	efs_buf_release(&b);
	efs_buf_init(&b, 1024);
	assert_int_equal(efs_chunk_batch_begin(&b, 1), 0);
	assert_int_equal(efs_chunk_batch_add(&b, "abc", 0, 0, "x", 1), -EINVAL);
	assert_int_equal(efs_chunk_batch_add(&b, ID_A, 0x80, 0, "x", 1), -EINVAL);
	efs_buf_release(&b);
}

static void test_builder_respects_the_buffer_cap(void **state)
{
	(void)state;
	struct efs_buf b;
	efs_buf_init(&b, 100);
	assert_int_equal(efs_chunk_batch_begin(&b, 1), 0);
	char payload[200] = {0};
	assert_int_equal(efs_chunk_batch_add(&b, ID_A, 0, 0, payload, sizeof(payload)), -E2BIG);
	efs_buf_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_empty_payload_and_caps_exactly),
	    cmocka_unit_test(test_truncated_anywhere),
	    cmocka_unit_test(test_trailing_bytes),
	    cmocka_unit_test(test_bad_counts),
	    cmocka_unit_test(test_item_over_cap),
	    cmocka_unit_test(test_body_over_cap),
	    cmocka_unit_test(test_bad_head_fields),
	    cmocka_unit_test(test_builder_respects_the_buffer_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
