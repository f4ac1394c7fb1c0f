/* SPDX-License-Identifier: MIT */
/* test_chunk_cache.c - unit tests of the master's cache of verified chunk
 * bytes (src/master/chunk_cache.h): hits and misses, the byte bound with
 * least-recently-used eviction, the per-chunk size limit, and capacity 0
 * meaning no cache at all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "master/chunk_cache.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* A well-formed chunk id (64 hex digits) for @n. */
static void make_id(unsigned n, char id[65])
{
	snprintf(id, 65, "%016x%048x", n * 2654435761u, n);
}

static void put_n(struct efs_chunk_cache *c, unsigned n, size_t len)
{
	char id[65], data[8192];
	make_id(n, id);
	memset(data, (int)(n & 0xff), sizeof(data));
	efs_chunk_cache_put(c, id, data, len);
}

/* 1 when chunk @n is cached with @len bytes of its pattern. */
static int has_n(struct efs_chunk_cache *c, unsigned n, size_t len)
{
	char id[65];
	struct efs_buf out;
	efs_buf_init(&out, SIZE_MAX);
	make_id(n, id);
	int r = efs_chunk_cache_get(c, id, &out);
	int ok = r == 0;
	if (ok) {
		assert_int_equal(out.len, len);
		for (size_t i = 0; i < len; i++)
			assert_int_equal((unsigned char)out.data[i], n & 0xff);
	} else {
		assert_int_equal(r, -ENOENT);
	}
	efs_buf_release(&out);
	return ok;
}

static void test_capacity_0_is_no_cache(void **state)
{
	struct efs_chunk_cache *c = (void *)1;
	assert_int_equal(efs_chunk_cache_new(0, &c), 0);
	assert_null(c);
	put_n(c, 1, 100); /* a NULL cache takes and holds nothing */
	assert_false(has_n(c, 1, 100));
	struct efs_chunk_cache_stats st;
	efs_chunk_cache_stats(c, &st);
	assert_int_equal(st.entries, 0);
	efs_chunk_cache_free(c);
}

static void test_get_returns_what_was_put(void **state)
{
	struct efs_chunk_cache *c;
	assert_int_equal(efs_chunk_cache_new(1 << 20, &c), 0);
	assert_false(has_n(c, 1, 4096));
	put_n(c, 1, 4096);
	put_n(c, 2, 0); /* an empty chunk is a chunk too */
	assert_true(has_n(c, 1, 4096));
	assert_true(has_n(c, 2, 0));
	put_n(c, 1, 4096); /* again: still one entry */
	struct efs_chunk_cache_stats st;
	efs_chunk_cache_stats(c, &st);
	assert_int_equal(st.entries, 2);
	assert_int_equal(st.hits, 2);
	assert_int_equal(st.misses, 1);
	efs_chunk_cache_free(c);
}

/* contains is a peek: it counts neither a hit nor a miss and does not
 * make an entry recently used. */
static void test_contains_peeks_without_touching(void **state)
{
	struct efs_chunk_cache *c;
	char id[65];
	const unsigned fit = 65536 / (1024 + 128); /* 1 KiB entries that fit: 56 */
	assert_false(efs_chunk_cache_contains(NULL, "x"));
	assert_int_equal(efs_chunk_cache_new(65536, &c), 0);
	for (unsigned n = 1; n <= fit; n++)
		put_n(c, n, 1024);
	make_id(1, id);
	assert_true(efs_chunk_cache_contains(c, id));
	make_id(fit + 1, id);
	assert_false(efs_chunk_cache_contains(c, id));
	assert_false(efs_chunk_cache_contains(c, "abc"));
	struct efs_chunk_cache_stats st;
	efs_chunk_cache_stats(c, &st);
	assert_int_equal(st.hits, 0);
	assert_int_equal(st.misses, 0);
	put_n(c, fit + 1, 1024); /* 1 is still the oldest: it goes */
	make_id(1, id);
	assert_false(efs_chunk_cache_contains(c, id));
	assert_true(has_n(c, 2, 1024));
	assert_true(has_n(c, fit + 1, 1024));
	efs_chunk_cache_free(c);
}

static void test_malformed_ids_are_never_cached(void **state)
{
	struct efs_chunk_cache *c;
	struct efs_buf out;
	efs_buf_init(&out, SIZE_MAX);
	assert_int_equal(efs_chunk_cache_new(1 << 20, &c), 0);
	efs_chunk_cache_put(c, "abc", "x", 1);
	assert_int_equal(efs_chunk_cache_get(c, "abc", &out), -ENOENT);
	assert_int_equal(efs_chunk_cache_get(c, NULL, &out), -ENOENT);
	efs_buf_release(&out);
	efs_chunk_cache_free(c);
}

static void test_bytes_stay_under_capacity_oldest_out_first(void **state)
{
	struct efs_chunk_cache *c;
	const size_t capacity = 64 * 1024;
	assert_int_equal(efs_chunk_cache_new(capacity, &c), 0);
	/* 1 KiB chunks (the largest a 64 KiB cache keeps): about 56 fit with
	 * the per-entry overhead. */
	for (unsigned n = 0; n < 40; n++)
		put_n(c, n, 1024);
	assert_true(has_n(c, 0, 1024)); /* 0 is now the most recently used */
	for (unsigned n = 40; n < 200; n++) {
		put_n(c, n, 1024);
		if (n < 50)
			assert_true(has_n(c, 0, 1024));
		struct efs_chunk_cache_stats st;
		efs_chunk_cache_stats(c, &st);
		assert_true(st.bytes <= capacity);
	}
	assert_true(has_n(c, 199, 1024));
	assert_false(has_n(c, 1, 1024));   /* evicted long ago */
	assert_false(has_n(c, 100, 1024)); /* pushed out by 100 newer ones */
	efs_chunk_cache_free(c);
}

static void test_chunks_over_the_item_limit_are_not_kept(void **state)
{
	struct efs_chunk_cache *c;
	/* 64 KiB of capacity keeps chunks up to a 64th of it: 1 KiB. */
	assert_int_equal(efs_chunk_cache_new(64 * 1024, &c), 0);
	put_n(c, 1, 1024);
	put_n(c, 2, 1025);
	assert_true(has_n(c, 1, 1024));
	assert_false(has_n(c, 2, 1025));
	efs_chunk_cache_free(c);
}

static void test_get_respects_the_output_cap(void **state)
{
	struct efs_chunk_cache *c;
	char id[65];
	struct efs_buf out;
	assert_int_equal(efs_chunk_cache_new(1 << 20, &c), 0);
	put_n(c, 7, 4096);
	make_id(7, id);
	efs_buf_init(&out, 100);
	assert_int_equal(efs_chunk_cache_get(c, id, &out), -E2BIG);
	efs_buf_release(&out);
	efs_chunk_cache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_capacity_0_is_no_cache),
	    cmocka_unit_test(test_get_returns_what_was_put),
	    cmocka_unit_test(test_contains_peeks_without_touching),
	    cmocka_unit_test(test_malformed_ids_are_never_cached),
	    cmocka_unit_test(test_bytes_stay_under_capacity_oldest_out_first),
	    cmocka_unit_test(test_chunks_over_the_item_limit_are_not_kept),
	    cmocka_unit_test(test_get_respects_the_output_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
