/* SPDX-License-Identifier: MIT */
/* test_chunk_ec.c - the shard header of src/master/chunk_ec.c: what a read
 * accepts from a worker as shard i of a stripe. The transfers themselves
 * are tested black-box (tests/integration/test_ec.py). Includes the .c to
 * reach its static functions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/master/chunk_ec.c"

/* A 4+2 stripe of @payload_len bytes, shard @index, header included, into
 * @buf (EFS_EC_SHARD_HDR + shard_len bytes); its layout into *@layout. */
static size_t make_shard(unsigned char *buf, size_t cap, uint64_t payload_len, unsigned index,
			 struct efs_ec_layout *layout)
{
	struct efs_ec *ec = NULL;
	assert_int_equal(efs_ec_new(4, 2, &ec), 0);
	assert_int_equal(efs_ec_layout(ec, payload_len, layout), 0);
	efs_ec_free(ec);
	size_t len = EFS_EC_SHARD_HDR + layout->shard_len;
	assert_true(len <= cap);
	for (size_t i = 0; i < layout->shard_len; i++)
		buf[EFS_EC_SHARD_HDR + i] = (unsigned char)(i * 7 + index);
	header_write(buf, layout, index);
	return len;
}

static void test_header_round_trip(void **state)
{
	(void)state;
	unsigned char buf[EFS_EC_SHARD_HDR + 4096];
	struct efs_ec_layout layout;
	for (unsigned index = 0; index < 6; index++) {
		size_t len = make_shard(buf, sizeof(buf), 10000, index, &layout);
		assert_int_equal(header_check(buf, buf + EFS_EC_SHARD_HDR, len, &layout),
				 (int)index);
	}
}

/* Any flipped byte, of the header or of the shard, and any other length or
 * stripe shape: not this stripe's shard (never decoded into wrong bytes). */
static void test_header_rejects_damage(void **state)
{
	(void)state;
	unsigned char buf[EFS_EC_SHARD_HDR + 4096];
	struct efs_ec_layout layout;
	size_t len = make_shard(buf, sizeof(buf), 10000, 3, &layout);
	for (size_t i = 0; i < len; i++) {
		if (i == 11)
			continue; /* the reserved byte: not checked */
		buf[i] ^= 0x20;
		assert_int_equal(header_check(buf, buf + EFS_EC_SHARD_HDR, len, &layout), -1);
		buf[i] ^= 0x20;
	}
	assert_int_equal(header_check(buf, buf + EFS_EC_SHARD_HDR, len - 1, &layout), -1);
	assert_int_equal(header_check(buf, buf + EFS_EC_SHARD_HDR, 0, &layout), -1);
	struct efs_ec_layout other = layout;
	other.payload_len--;
	assert_int_equal(header_check(buf, buf + EFS_EC_SHARD_HDR, len, &other), -1);
	other = layout;
	other.parity_shards = 3;
	assert_int_equal(header_check(buf, buf + EFS_EC_SHARD_HDR, len, &other), -1);
	/* An index past the stripe, with a valid CRC otherwise. */
	buf[10] = 6;
	assert_int_equal(header_check(buf, buf + EFS_EC_SHARD_HDR, len, &layout), -1);
	/* A full replica (no header) is not a shard. */
	memset(buf, 0, len);
	assert_int_equal(header_check(buf, buf + EFS_EC_SHARD_HDR, len, &layout), -1);
}

/* A raw chunk of @len bytes of @payload: its info, id computed. */
static struct efs_chunk_info raw_chunk(const unsigned char *payload, size_t len)
{
	struct efs_chunk_info c = {0};
	struct efs_sha256 h;
	assert_int_equal(efs_sha256_init(&h), 0);
	efs_sha256_update(&h, payload, len);
	efs_sha256_final_hex(&h, c.chunk_id);
	efs_sha256_release(&h);
	c.size = c.stored_size = len;
	return c;
}

/* Conversion (issue 17 item 5): a full copy among shards is recognised,
 * verified against the chunk id, and never taken for a shard; a shard is
 * never taken for a damaged full copy. */
static void test_full_copy_is_told_from_a_shard(void **state)
{
	(void)state;
	static unsigned char payload[20000];
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (unsigned char)(i * 31 + 7);
	struct efs_chunk_info chunk = raw_chunk(payload, sizeof(payload));
	assert_true(full_copy_verifies(&chunk, payload, sizeof(payload)));
	assert_false(full_copy_verifies(&chunk, payload, sizeof(payload) - 1));
	payload[100] ^= 1;
	assert_false(full_copy_verifies(&chunk, payload, sizeof(payload)));
	payload[100] ^= 1;
	assert_false(efs_chunk_ec_is_shard(&chunk, payload, sizeof(payload)));

	chunk.ec_data = 4;
	chunk.ec_parity = 2;
	unsigned char *stripe = NULL;
	size_t slot = 0;
	assert_int_equal(stripe_build(&chunk, payload, &stripe, &slot), 0);
	struct efs_ec *ec = NULL;
	struct efs_ec_layout layout;
	assert_int_equal(efs_ec_new(4, 2, &ec), 0);
	assert_int_equal(efs_ec_layout(ec, chunk.stored_size, &layout), 0);
	efs_ec_free(ec);
	assert_int_equal(slot, EFS_EC_SHARD_HDR + layout.shard_len);
	for (unsigned i = 0; i < 6; i++) {
		/* Shard i in slot i, with its header: what a read accepts. */
		assert_int_equal(header_check(stripe + i * slot,
					      stripe + i * slot + EFS_EC_SHARD_HDR, slot, &layout),
				 (int)i);
		assert_true(efs_chunk_ec_is_shard(&chunk, stripe + i * slot, slot));
		assert_false(full_copy_verifies(&chunk, stripe + i * slot, slot));
	}
	/* The data shards join back to the stored form. */
	unsigned char *shards[6];
	for (unsigned i = 0; i < 6; i++)
		shards[i] = stripe + i * slot + EFS_EC_SHARD_HDR;
	static unsigned char joined[sizeof(payload)];
	efs_ec_join(&layout, shards, joined);
	assert_memory_equal(joined, payload, sizeof(payload));
	free(stripe);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_header_round_trip),
	    cmocka_unit_test(test_header_rejects_damage),
	    cmocka_unit_test(test_full_copy_is_told_from_a_shard),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
