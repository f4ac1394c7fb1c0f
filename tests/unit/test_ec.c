/* SPDX-License-Identifier: MIT */
/* test_ec.c - unit tests of the erasure coding module (include/echofs/ec.h).
 *
 * What must hold: any K of the K + M shards give back every other shard
 * byte-identical (every erasure pattern for 4+2 and 6+3); more than M
 * losses are reported (-EIO), never decoded into something; the parity
 * is the Cauchy Reed-Solomon code the header names, checked against a
 * slow GF(2^8) implementation written here (the shards are an on-disk
 * format: an ISA-L upgrade must not change them); CRC32C catches a
 * corrupt shard before it is used; the layout pads and restores any
 * payload length; the policy parser accepts exactly the documented
 * strings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "echofs/ec.h"
#include "echofs/hash.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1024 * 1024)

/* xorshift64*: a fixed, portable sequence for reproducible test data. */
static uint64_t prng_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static void fill_random(unsigned char *data, size_t len, uint64_t seed)
{
	uint64_t s = seed | 1;
	for (size_t i = 0; i < len; i++)
		data[i] = (unsigned char)(prng_next(&s) >> 56);
}

static uint32_t mask_all(unsigned n)
{
	return n == 32 ? UINT32_MAX : ((uint32_t)1 << n) - 1;
}

/* ---- a stripe under test ------------------------------------------------ */

/* One payload cut into K + M shards, and a pristine copy of every shard
 * to compare rebuilt ones with. */
struct stripe {
	struct efs_ec *ec;
	struct efs_ec_layout layout;
	unsigned k, m, total;
	unsigned char *payload;
	unsigned char *shards[EFS_EC_MAX_SHARDS];
	unsigned char *pristine[EFS_EC_MAX_SHARDS];
	uint32_t crcs[EFS_EC_MAX_SHARDS];
};

/* Makes, splits and encodes a stripe of @len random bytes. */
static void stripe_make(struct stripe *s, unsigned k, unsigned m, size_t len, uint64_t seed)
{
	memset(s, 0, sizeof(*s));
	assert_int_equal(efs_ec_new(k, m, &s->ec), 0);
	s->k = k;
	s->m = m;
	s->total = k + m;
	assert_int_equal(efs_ec_layout(s->ec, len, &s->layout), 0);
	s->payload = malloc(len ? len : 1);
	assert_non_null(s->payload);
	fill_random(s->payload, len, seed);
	for (unsigned i = 0; i < s->total; i++) {
		/* Never zero-sized, so that an empty shard is still a valid
		 * pointer; garbage first, so encode must write every byte. */
		s->shards[i] = malloc(s->layout.shard_len + 1);
		s->pristine[i] = malloc(s->layout.shard_len + 1);
		assert_non_null(s->shards[i]);
		assert_non_null(s->pristine[i]);
		memset(s->shards[i], 0xa5, s->layout.shard_len);
	}
	efs_ec_split(&s->layout, s->payload, s->shards);
	assert_int_equal(efs_ec_encode(s->ec, s->layout.shard_len, s->shards, &s->shards[k]), 0);
	for (unsigned i = 0; i < s->total; i++) {
		memcpy(s->pristine[i], s->shards[i], s->layout.shard_len);
		s->crcs[i] = efs_ec_shard_crc(s->shards[i], s->layout.shard_len);
	}
}

static void stripe_free(struct stripe *s)
{
	for (unsigned i = 0; i < s->total; i++) {
		free(s->shards[i]);
		free(s->pristine[i]);
	}
	free(s->payload);
	efs_ec_free(s->ec);
}

/* Overwrites the shards in @lost with garbage, as a lost shard's buffer. */
static void stripe_lose(struct stripe *s, uint32_t lost, unsigned char garbage)
{
	for (unsigned i = 0; i < s->total; i++)
		if (lost >> i & 1)
			memset(s->shards[i], garbage, s->layout.shard_len);
}

static void assert_stripe_pristine(const struct stripe *s)
{
	for (unsigned i = 0; i < s->total; i++)
		assert_memory_equal(s->shards[i], s->pristine[i], s->layout.shard_len);
}

/* The payload read back from the data shards. */
static void assert_payload_joins(const struct stripe *s)
{
	size_t len = (size_t)s->layout.payload_len;
	unsigned char *out = malloc(len + 1);
	assert_non_null(out);
	memset(out, 0x5a, len);
	efs_ec_join(&s->layout, s->shards, out);
	assert_memory_equal(out, s->payload, len);
	free(out);
}

/* Loses @lost, rebuilds all of it from the rest, checks every shard and
 * the payload. */
static void lose_and_rebuild(struct stripe *s, uint32_t lost)
{
	uint32_t all = mask_all(s->total);
	stripe_lose(s, lost, 0xa5);
	assert_int_equal(
	    efs_ec_reconstruct(s->ec, s->layout.shard_len, s->shards, all & ~lost, lost), 0);
	assert_stripe_pristine(s);
	assert_payload_joins(s);
}

/* ---- a reference Reed-Solomon, slow and independent of ISA-L ---------- */

/* GF(2^8) with the polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d), ISA-L's. */
static unsigned char ref_mul(unsigned char a, unsigned char b)
{
	unsigned product = 0, x = a;
	for (unsigned bit = 0; bit < 8; bit++) {
		if (b >> bit & 1)
			product ^= x;
		x <<= 1;
		if (x & 0x100)
			x ^= 0x11d;
	}
	return (unsigned char)product;
}

static unsigned char ref_inv(unsigned char a)
{
	for (unsigned b = 1; b < 256; b++)
		if (ref_mul(a, (unsigned char)b) == 1)
			return (unsigned char)b;
	fail_msg("%u has no inverse", a);
	return 0;
}

/* Parity shard p, byte t: sum over data shards j of data[j][t] / (K+p ^ j),
 * the Cauchy code of gf_gen_cauchy1_matrix. */
static void assert_parity_matches_reference(const struct stripe *s)
{
	for (unsigned p = 0; p < s->m; p++) {
		unsigned char coeff[EFS_EC_MAX_SHARDS];
		for (unsigned j = 0; j < s->k; j++)
			coeff[j] = ref_inv((unsigned char)((s->k + p) ^ j));
		for (size_t t = 0; t < s->layout.shard_len; t++) {
			unsigned char acc = 0;
			for (unsigned j = 0; j < s->k; j++)
				acc ^= ref_mul(coeff[j], s->pristine[j][t]);
			if (acc != s->pristine[s->k + p][t])
				fail_msg("parity %u byte %zu: %#x, the reference says %#x", p, t,
					 s->pristine[s->k + p][t], acc);
		}
	}
}

/* ---- tests ---------------------------------------------------------------- */

static void test_new_refuses_bad_parameters(void **state)
{
	struct efs_ec *ec = (struct efs_ec *)&ec; /* must stay untouched */
	assert_int_equal(efs_ec_new(0, 2, &ec), -EINVAL);
	assert_int_equal(efs_ec_new(4, 0, &ec), -EINVAL);
	assert_int_equal(efs_ec_new(0, 0, &ec), -EINVAL);
	assert_int_equal(efs_ec_new(30, 3, &ec), -EINVAL);
	assert_int_equal(efs_ec_new(40, 10, &ec), -EINVAL);
	assert_int_equal(efs_ec_new(1, EFS_EC_MAX_SHARDS, &ec), -EINVAL);
	assert_int_equal(efs_ec_new(UINT32_MAX, 2, &ec), -EINVAL);
	assert_ptr_equal(ec, (struct efs_ec *)&ec);
	assert_int_equal(efs_ec_new(31, 1, &ec), 0);
	assert_int_equal(efs_ec_data_shards(ec), 31);
	assert_int_equal(efs_ec_parity_shards(ec), 1);
	efs_ec_free(ec);
	efs_ec_free(NULL);
}

static void test_layout_pads_to_the_alignment(void **state)
{
	struct efs_ec *ec;
	struct efs_ec_layout l;
	assert_int_equal(efs_ec_new(4, 2, &ec), 0);

	static const struct {
		uint64_t n;
		size_t shard_len;
	} cases[] = {
	    {0, 0},	  {1, 64},	  {255, 64},
	    {256, 64},	  {257, 128},	  {4096, 1024},
	    {4097, 1088}, {4 * MIB, MIB}, {4 * MIB + 1, MIB + 64},
	};
	for (size_t c = 0; c < EFS_ARRAY_SIZE(cases); c++) {
		assert_int_equal(efs_ec_layout(ec, cases[c].n, &l), 0);
		assert_int_equal(l.payload_len, cases[c].n);
		assert_int_equal(l.shard_len, cases[c].shard_len);
		assert_int_equal(l.shard_len % EFS_EC_SHARD_ALIGN, 0);
		assert_int_equal(l.data_shards, 4);
		assert_int_equal(l.parity_shards, 2);
		uint64_t sum = 0;
		for (unsigned i = 0; i < 6; i++)
			sum += efs_ec_layout_data_len(&l, i);
		assert_int_equal(sum, cases[c].n);
		assert_int_equal(efs_ec_layout_data_len(&l, 4), 0); /* parity */
		assert_int_equal(efs_ec_layout_data_len(&l, 5), 0);
	}
	/* 257 bytes: 128-byte shards, the third holds the last byte, the
	 * fourth only padding. */
	assert_int_equal(efs_ec_layout(ec, 257, &l), 0);
	assert_int_equal(efs_ec_layout_data_len(&l, 0), 128);
	assert_int_equal(efs_ec_layout_data_len(&l, 1), 128);
	assert_int_equal(efs_ec_layout_data_len(&l, 2), 1);
	assert_int_equal(efs_ec_layout_data_len(&l, 3), 0);

	/* The cap: K * 1 GiB fits, one byte more does not; nothing overflows
	 * near UINT64_MAX. */
	assert_int_equal(efs_ec_layout(ec, 4 * (uint64_t)EFS_EC_MAX_SHARD_LEN, &l), 0);
	assert_int_equal(l.shard_len, EFS_EC_MAX_SHARD_LEN);
	struct efs_ec_layout before = l;
	assert_int_equal(efs_ec_layout(ec, 4 * (uint64_t)EFS_EC_MAX_SHARD_LEN + 1, &l), -E2BIG);
	assert_int_equal(efs_ec_layout(ec, UINT64_MAX, &l), -E2BIG);
	assert_memory_equal(&l, &before, sizeof(l));
	efs_ec_free(ec);
}

static void test_split_zero_pads_and_join_restores(void **state)
{
	struct stripe s;
	stripe_make(&s, 4, 2, 4 * 64 * 3 + 7, 11); /* 776 bytes: shards of 256 */
	assert_int_equal(s.layout.shard_len, 256);
	/* Shard 3 holds 776 - 768 = 8 bytes, then zeros (not the 0xa5 the
	 * buffer held). */
	assert_memory_equal(s.shards[3], s.payload + 768, 8);
	for (size_t t = 8; t < 256; t++)
		assert_int_equal(s.shards[3][t], 0);
	assert_payload_joins(&s);
	stripe_free(&s);
}

/* Round trips of the layouts in use and at the limits: encode, lose M
 * shards (data first: the hardest case, every lost byte is payload), and
 * rebuild them; the parity is the reference code's. */
static void test_round_trips(void **state)
{
	static const unsigned shapes[][2] = {
	    {4, 2}, {6, 3}, {10, 4}, {1, 1}, {16, 16}, {31, 1}, {1, 31}, {2, 30}, {17, 3},
	};
	for (size_t c = 0; c < EFS_ARRAY_SIZE(shapes); c++) {
		unsigned k = shapes[c][0], m = shapes[c][1];
		struct stripe s;
		stripe_make(&s, k, m, (size_t)k * 1000 + 13, 100 + c);
		assert_parity_matches_reference(&s);
		lose_and_rebuild(&s, mask_all(EFS_MIN(m, k))); /* data shards */
		/* The last M shards: parity only, rebuilt from the data. */
		lose_and_rebuild(&s, mask_all(s.total) & ~mask_all(k));
		/* M shards spread out: every other one from the first. */
		uint32_t spread = 0;
		for (unsigned i = 0, n = 0; i < s.total && n < m; i += 2, n++)
			spread |= (uint32_t)1 << i;
		if ((unsigned)__builtin_popcount(spread) < m) /* top up from the end */
			for (unsigned i = s.total;
			     i-- > 0 && (unsigned)__builtin_popcount(spread) < m;)
				spread |= (uint32_t)1 << i;
		lose_and_rebuild(&s, spread);
		stripe_free(&s);
	}
}

/* Every pattern of 1..M lost shards, data and parity alike. */
static void every_erasure_pattern(unsigned k, unsigned m, size_t len)
{
	struct stripe s;
	unsigned patterns = 0;
	stripe_make(&s, k, m, len, k * 31 + m);
	assert_parity_matches_reference(&s);
	for (uint32_t lost = 1; lost <= mask_all(s.total); lost++) {
		if ((unsigned)__builtin_popcount(lost) > m)
			continue;
		lose_and_rebuild(&s, lost);
		patterns++;
	}
	/* sum of C(K + M, i) for i = 1..M */
	unsigned expected = 0, binom = 1;
	for (unsigned i = 1; i <= m; i++) {
		binom = binom * (s.total - i + 1) / i;
		expected += binom;
	}
	assert_int_equal(patterns, expected);
	stripe_free(&s);
}

static void test_every_erasure_pattern_4_2(void **state)
{
	every_erasure_pattern(4, 2, 4 * 4096 - 3); /* 21 patterns */
}

static void test_every_erasure_pattern_6_3(void **state)
{
	every_erasure_pattern(6, 3, 6 * 1024 + 5); /* 129 patterns */
}

/* One shard more than M lost: -EIO, and not one byte written anywhere. */
static void test_more_than_m_lost_is_an_error(void **state)
{
	static const unsigned shapes[][2] = {{4, 2}, {6, 3}, {10, 4}, {1, 1}};
	for (size_t c = 0; c < EFS_ARRAY_SIZE(shapes); c++) {
		unsigned k = shapes[c][0], m = shapes[c][1];
		struct stripe s;
		stripe_make(&s, k, m, k * 512, 7 + c);
		uint32_t all = mask_all(s.total);
		for (uint32_t lost = 1; lost <= all; lost++) {
			if ((unsigned)__builtin_popcount(lost) != m + 1)
				continue;
			stripe_lose(&s, lost, 0xee);
			assert_int_equal(efs_ec_reconstruct(s.ec, s.layout.shard_len, s.shards,
							    all & ~lost, all),
					 -EIO);
			for (unsigned i = 0; i < s.total; i++) {
				if (lost >> i & 1) {
					for (size_t t = 0; t < s.layout.shard_len; t++)
						assert_int_equal(s.shards[i][t], 0xee);
				} else {
					assert_memory_equal(s.shards[i], s.pristine[i],
							    s.layout.shard_len);
				}
			}
			/* Restore for the next pattern. */
			for (unsigned i = 0; i < s.total; i++)
				memcpy(s.shards[i], s.pristine[i], s.layout.shard_len);
			if (s.total > 12)
				break; /* 10+4: the first pattern makes the point */
		}
		/* Nothing present at all. */
		assert_int_equal(efs_ec_reconstruct(s.ec, s.layout.shard_len, s.shards, 0, all),
				 -EIO);
		stripe_free(&s);
	}
}

/* Payload sizes around the shard boundaries, odd ones, and 4 MiB. */
static void test_payload_sizes(void **state)
{
	static const unsigned shapes[][2] = {{4, 2}, {6, 3}, {10, 4}};
	for (size_t c = 0; c < EFS_ARRAY_SIZE(shapes); c++) {
		unsigned k = shapes[c][0], m = shapes[c][1];
		const size_t sizes[] = {
		    0, 1, 2, 63, 64, k * 64 - 1, k * 64, k * 64 + 1, 1000003, 65537, 4 * MIB,
		};
		for (size_t z = 0; z < EFS_ARRAY_SIZE(sizes); z++) {
			struct stripe s;
			stripe_make(&s, k, m, sizes[z], sizes[z] * 7 + c);
			size_t want = (sizes[z] + k - 1) / k;
			want = (want + 63) / 64 * 64;
			assert_int_equal(s.layout.shard_len, want);
			assert_payload_joins(&s);
			/* The first M data shards lost, then M spread over
			 * data and parity. */
			lose_and_rebuild(&s, mask_all(m));
			lose_and_rebuild(&s, mask_all(m) << (k - 1));
			stripe_free(&s);
		}
	}
}

/* A corrupt shard is found by its CRC and left out; the stripe rebuilds
 * it. Without the check the same shard would decode silently into wrong
 * bytes: the CRC is what makes a degraded read trustworthy. */
static void test_corrupt_shard_found_by_crc(void **state)
{
	struct stripe s;
	stripe_make(&s, 4, 2, 4 * 4096, 99);
	uint32_t all = mask_all(s.total);
	assert_int_equal(efs_ec_verify(s.layout.shard_len, s.shards, s.crcs, s.total, all), all);

	/* One flipped bit in parity shard 5. */
	s.shards[5][100] ^= 0x04;
	uint32_t good = efs_ec_verify(s.layout.shard_len, s.shards, s.crcs, s.total, all);
	assert_int_equal(good, all & ~(1u << 5));
	/* Parity 5 rebuilt from the good ones. */
	assert_int_equal(efs_ec_reconstruct(s.ec, s.layout.shard_len, s.shards, good, all), 0);
	assert_stripe_pristine(&s);

	/* A corrupt data shard with a lost one: 2 bad, still decodable. */
	s.shards[1][0] ^= 0xff;
	stripe_lose(&s, 1u << 3, 0);
	good = efs_ec_verify(s.layout.shard_len, s.shards, s.crcs, s.total, all & ~(1u << 3));
	assert_int_equal(good, all & ~(1u << 1) & ~(1u << 3));
	assert_int_equal(efs_ec_reconstruct(s.ec, s.layout.shard_len, s.shards, good, all), 0);
	assert_stripe_pristine(&s);
	assert_payload_joins(&s);

	/* Trusting a corrupt parity shard: data shard 0 decodes wrong. */
	s.shards[4][17] ^= 0x01;
	stripe_lose(&s, 1u << 0, 0);
	assert_int_equal(efs_ec_reconstruct(s.ec, s.layout.shard_len, s.shards,
					    all & ~(1u << 0) & ~(1u << 1), 1u << 0),
			 0);
	assert_memory_not_equal(s.shards[0], s.pristine[0], s.layout.shard_len);
	/* ...which its CRC then shows. */
	assert_int_equal(efs_ec_verify(s.layout.shard_len, s.shards, s.crcs, 1, 1), 0);

	/* Shards outside present are never read: NULL is fine there. */
	unsigned char *none[EFS_EC_MAX_SHARDS] = {0};
	assert_int_equal(efs_ec_verify(s.layout.shard_len, none, s.crcs, s.total, 0), 0);
	assert_int_equal(efs_ec_verify(s.layout.shard_len, none, s.crcs, s.total, all), 0);
	assert_int_equal(efs_ec_shard_crc(s.pristine[2], s.layout.shard_len),
			 efs_crc32c(0, s.pristine[2], s.layout.shard_len));
	stripe_free(&s);
}

/* A degraded read rebuilds only the data shards it needs: parity that is
 * also gone need not have a buffer. */
static void test_rebuild_only_what_is_wanted(void **state)
{
	struct stripe s;
	stripe_make(&s, 6, 3, 6 * 2048, 5);
	uint32_t all = mask_all(s.total);
	unsigned char *saved6 = s.shards[6], *saved8 = s.shards[8];
	stripe_lose(&s, (1u << 2) | (1u << 6) | (1u << 8), 0x33);
	s.shards[6] = NULL;
	s.shards[8] = NULL;
	uint32_t present = all & ~((1u << 2) | (1u << 6) | (1u << 8));
	assert_int_equal(efs_ec_reconstruct(s.ec, s.layout.shard_len, s.shards, present, 0x3f), 0);
	assert_memory_equal(s.shards[2], s.pristine[2], s.layout.shard_len);
	/* Asking for a shard without a buffer is refused, before any write. */
	memset(s.shards[2], 0x33, s.layout.shard_len);
	assert_int_equal(
	    efs_ec_reconstruct(s.ec, s.layout.shard_len, s.shards, present, (1u << 2) | (1u << 6)),
	    -EINVAL);
	for (size_t t = 0; t < s.layout.shard_len; t++)
		assert_int_equal(s.shards[2][t], 0x33);
	/* Nothing missing among the wanted: nothing to do. */
	assert_int_equal(efs_ec_reconstruct(s.ec, s.layout.shard_len, s.shards, present, 1u << 0),
			 0);
	s.shards[6] = saved6;
	s.shards[8] = saved8;
	stripe_free(&s);
}

static void test_bad_arguments_are_refused(void **state)
{
	struct stripe s;
	stripe_make(&s, 4, 2, 4 * 128, 3);
	uint32_t all = mask_all(6);
	size_t len = s.layout.shard_len;
	/* shard_len not a multiple of 64, or over the cap. */
	assert_int_equal(efs_ec_encode(s.ec, len - 1, s.shards, &s.shards[4]), -EINVAL);
	assert_int_equal(efs_ec_encode(s.ec, len + 32, s.shards, &s.shards[4]), -EINVAL);
	assert_int_equal(efs_ec_encode(s.ec, EFS_EC_MAX_SHARD_LEN + 64, s.shards, &s.shards[4]),
			 -EINVAL);
	assert_int_equal(efs_ec_reconstruct(s.ec, len - 1, s.shards, all & ~1u, 1u), -EINVAL);
	/* NULL buffers. */
	unsigned char *holes[6] = {s.shards[0], NULL,	     s.shards[2],
				   s.shards[3], s.shards[4], s.shards[5]};
	assert_int_equal(efs_ec_encode(s.ec, len, holes, &s.shards[4]), -EINVAL);
	unsigned char *parity_hole[2] = {s.shards[4], NULL};
	assert_int_equal(efs_ec_encode(s.ec, len, s.shards, parity_hole), -EINVAL);
	assert_int_equal(efs_ec_encode(s.ec, len, NULL, &s.shards[4]), -EINVAL);
	assert_int_equal(efs_ec_reconstruct(s.ec, len, NULL, all, all), -EINVAL);
	/* A mask naming a shard past K + M. */
	assert_int_equal(efs_ec_reconstruct(s.ec, len, s.shards, all | (1u << 6), 1u), -EINVAL);
	assert_int_equal(efs_ec_reconstruct(s.ec, len, s.shards, all, 1u << 31), -EINVAL);
	assert_stripe_pristine(&s); /* nothing was written */
	/* An empty stripe encodes and rebuilds to nothing. */
	assert_int_equal(efs_ec_encode(s.ec, 0, s.shards, &s.shards[4]), 0);
	assert_int_equal(efs_ec_reconstruct(s.ec, 0, s.shards, all & ~3u, 3u), 0);
	assert_stripe_pristine(&s);
	stripe_free(&s);
}

/* One codec, several threads encoding and rebuilding at once: the codec is
 * read-only after efs_ec_new(), so each thread's results are exact. */
struct worker_arg {
	const struct efs_ec *ec;
	uint64_t seed;
	int failures;
};

static void *thread_main(void *p)
{
	struct worker_arg *a = p;
	struct efs_ec_layout l;
	unsigned char *payload = malloc(256 * 1024), *out = malloc(256 * 1024);
	unsigned char *shards[14], *saved[14];

	if (!payload || !out || efs_ec_layout(a->ec, 256 * 1024, &l) != 0) {
		a->failures++;
		goto out_free;
	}
	for (unsigned i = 0; i < 14; i++) {
		shards[i] = malloc(l.shard_len);
		saved[i] = malloc(l.shard_len);
		if (!shards[i] || !saved[i])
			abort();
	}
	for (unsigned round = 0; round < 40; round++) {
		fill_random(payload, 256 * 1024, a->seed * 1000 + round);
		efs_ec_split(&l, payload, shards);
		if (efs_ec_encode(a->ec, l.shard_len, shards, &shards[10]) != 0)
			a->failures++;
		for (unsigned i = 0; i < 14; i++)
			memcpy(saved[i], shards[i], l.shard_len);
		uint32_t lost = (uint32_t)0xf << (round % 11); /* 4 in a row */
		for (unsigned i = 0; i < 14; i++)
			if (lost >> i & 1)
				memset(shards[i], 0, l.shard_len);
		if (efs_ec_reconstruct(a->ec, l.shard_len, shards, 0x3fff & ~lost, 0x3fff) != 0)
			a->failures++;
		for (unsigned i = 0; i < 14; i++)
			if (memcmp(shards[i], saved[i], l.shard_len) != 0)
				a->failures++;
		efs_ec_join(&l, shards, out);
		if (memcmp(out, payload, 256 * 1024) != 0)
			a->failures++;
	}
	for (unsigned i = 0; i < 14; i++) {
		free(shards[i]);
		free(saved[i]);
	}
out_free:
	free(payload);
	free(out);
	return NULL;
}

static void test_one_codec_shared_by_threads(void **state)
{
	struct efs_ec *ec;
	pthread_t threads[4];
	struct worker_arg args[4];
	assert_int_equal(efs_ec_new(10, 4, &ec), 0);
	for (unsigned t = 0; t < 4; t++) {
		args[t] = (struct worker_arg){.ec = ec, .seed = t + 1};
		assert_int_equal(pthread_create(&threads[t], NULL, thread_main, &args[t]), 0);
	}
	for (unsigned t = 0; t < 4; t++) {
		assert_int_equal(pthread_join(threads[t], NULL), 0);
		assert_int_equal(args[t].failures, 0);
	}
	efs_ec_free(ec);
}

/* ---- policies ------------------------------------------------------------- */

static void test_policy_parse_accepts(void **state)
{
	static const struct {
		const char *s;
		enum efs_policy_kind kind;
		unsigned a, b;
	} ok[] = {
	    {"replicas:1", EFS_POLICY_REPLICAS, 1, 0},
	    {"replicas:3", EFS_POLICY_REPLICAS, 3, 0},
	    {"replicas:16", EFS_POLICY_REPLICAS, 16, 0},
	    {"ec:4+2", EFS_POLICY_EC, 4, 2},
	    {"ec:6+3", EFS_POLICY_EC, 6, 3},
	    {"ec:10+4", EFS_POLICY_EC, 10, 4},
	    {"ec:1+1", EFS_POLICY_EC, 1, 1},
	    {"ec:31+1", EFS_POLICY_EC, 31, 1},
	    {"ec:1+31", EFS_POLICY_EC, 1, 31},
	    {"ec:16+16", EFS_POLICY_EC, 16, 16},
	    {"ec:17+3", EFS_POLICY_EC, 17, 3},
	};
	for (size_t c = 0; c < EFS_ARRAY_SIZE(ok); c++) {
		struct efs_policy p;
		char back[EFS_POLICY_MAX_LEN + 1];
		memset(&p, 0xff, sizeof(p));
		if (efs_ec_policy_parse(ok[c].s, &p) != 0)
			fail_msg("\"%s\" refused", ok[c].s);
		assert_int_equal(p.kind, ok[c].kind);
		if (p.kind == EFS_POLICY_REPLICAS) {
			assert_int_equal(p.replicas, ok[c].a);
		} else {
			assert_int_equal(p.data_shards, ok[c].a);
			assert_int_equal(p.parity_shards, ok[c].b);
			/* A codec exists for every accepted EC policy. */
			struct efs_ec *ec;
			assert_int_equal(efs_ec_new(p.data_shards, p.parity_shards, &ec), 0);
			efs_ec_free(ec);
		}
		/* Canonical: formatting gives the same string back. */
		assert_int_equal(efs_ec_policy_format(&p, back, sizeof(back)), 0);
		assert_string_equal(back, ok[c].s);
	}
}

static void test_policy_parse_refuses(void **state)
{
	static const char *const bad[] = {
	    "",
	    "ec:0+2",
	    "ec:4+0",
	    "ec:40+10",
	    "ec:30+3", /* 33 shards */
	    "ec:4+2x",
	    "ec:4+2 ",
	    " ec:4+2",
	    "ec: 4+2",
	    "ec:4 +2",
	    "ec:4+",
	    "ec:+2",
	    "ec:4",
	    "ec:42",
	    "ec:4+2+1",
	    "ec:4-2",
	    "ec:-4+2",
	    "ec:+4+2",
	    "ec:04+2",
	    "ec:4+02",
	    "ec:00+2",
	    "ec:100+1",
	    "ec:4294967300+2", /* wraps a 32-bit parse to 4 */
	    "EC:4+2",
	    "Ec:4+2",
	    "ec4+2",
	    "ec:",
	    "ec",
	    "ec:4+2\n",
	    "ec:0x4+2",
	    "rs:4+2",
	    "replicas:0",
	    "replicas:17",
	    "replicas:99",
	    "replicas:100",
	    "replicas:03",
	    "replicas:-1",
	    "replicas:+3",
	    "replicas:3 ",
	    "replicas: 3",
	    "replicas:",
	    "replicas",
	    "replicas:3x",
	    "replicas:3:",
	    "Replicas:3",
	    "replica:3",
	    "replicas:4294967299",
	    "replicas:3,ec:4+2",
	    "ec:4+2aaaaaaaaaaaaaaaaaaaaaaaaa", /* over the length cap */
	};
	for (size_t c = 0; c < EFS_ARRAY_SIZE(bad); c++) {
		struct efs_policy p, before;
		memset(&p, 0x5c, sizeof(p));
		before = p;
		int r = efs_ec_policy_parse(bad[c], &p);
		if (r != -EINVAL)
			fail_msg("\"%s\" gave %d, not -EINVAL", bad[c], r);
		assert_memory_equal(&p, &before, sizeof(p)); /* untouched */
	}
	struct efs_policy p;
	assert_int_equal(efs_ec_policy_parse(NULL, &p), -EINVAL);

	/* One character over the cap, all digits: refused for its length. */
	char longer[EFS_POLICY_MAX_LEN + 2];
	memset(longer, '1', sizeof(longer) - 1);
	memcpy(longer, "replicas:", 9);
	longer[sizeof(longer) - 1] = '\0';
	assert_int_equal(efs_ec_policy_parse(longer, &p), -EINVAL);
}

static void test_policy_format(void **state)
{
	char buf[EFS_POLICY_MAX_LEN + 1];
	struct efs_policy ec = {.kind = EFS_POLICY_EC, .data_shards = 10, .parity_shards = 4};
	struct efs_policy rep = {.kind = EFS_POLICY_REPLICAS, .replicas = 3};
	assert_int_equal(efs_ec_policy_format(&ec, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "ec:10+4");
	assert_int_equal(efs_ec_policy_format(&rep, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "replicas:3");
	/* Too small: -E2BIG and an empty string, never a cut policy. */
	assert_int_equal(efs_ec_policy_format(&ec, buf, 7), -E2BIG);
	assert_string_equal(buf, "");
	assert_int_equal(efs_ec_policy_format(&ec, buf, 8), 0);
	/* Out of the caps. */
	struct efs_policy wide = {.kind = EFS_POLICY_EC, .data_shards = 30, .parity_shards = 3};
	struct efs_policy none = {.kind = EFS_POLICY_REPLICAS, .replicas = 0};
	struct efs_policy many = {.kind = EFS_POLICY_REPLICAS, .replicas = 17};
	assert_int_equal(efs_ec_policy_format(&wide, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(efs_ec_policy_format(&none, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(efs_ec_policy_format(&many, buf, sizeof(buf)), -EINVAL);
	/* The longest canonical strings fit the documented size. */
	struct efs_policy longest = {.kind = EFS_POLICY_EC, .data_shards = 16, .parity_shards = 16};
	assert_int_equal(efs_ec_policy_format(&longest, buf, sizeof(buf)), 0);
	rep.replicas = 16;
	assert_int_equal(efs_ec_policy_format(&rep, buf, sizeof(buf)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_new_refuses_bad_parameters),
	    cmocka_unit_test(test_layout_pads_to_the_alignment),
	    cmocka_unit_test(test_split_zero_pads_and_join_restores),
	    cmocka_unit_test(test_round_trips),
	    cmocka_unit_test(test_every_erasure_pattern_4_2),
	    cmocka_unit_test(test_every_erasure_pattern_6_3),
	    cmocka_unit_test(test_more_than_m_lost_is_an_error),
	    cmocka_unit_test(test_payload_sizes),
	    cmocka_unit_test(test_corrupt_shard_found_by_crc),
	    cmocka_unit_test(test_rebuild_only_what_is_wanted),
	    cmocka_unit_test(test_bad_arguments_are_refused),
	    cmocka_unit_test(test_one_codec_shared_by_threads),
	    cmocka_unit_test(test_policy_parse_accepts),
	    cmocka_unit_test(test_policy_parse_refuses),
	    cmocka_unit_test(test_policy_format),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
