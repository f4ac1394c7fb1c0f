/* SPDX-License-Identifier: MIT */
/* test_pace.c - unit tests of the byte-rate pacer (pace.h): the wait it
 * asks for at a given clock, no limit at rate 0, no catching up after a
 * slow step, and no overflow with huge counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "echofs/pace.h"
#include "echofs/util.h"

static void test_pace_waits_when_ahead(void **state)
{
	struct efs_pace p;
	efs_pace_init(&p, 1000); /* 1000 bytes per second */
	int64_t t0 = p.started_ms;
	/* 500 bytes at once: due at 500 ms, so wait 500. */
	assert_int_equal(efs_pace_add_at(&p, 500, t0), 500);
	/* 100 ms later: 400 to go. */
	assert_int_equal(efs_pace_add_at(&p, 0, t0 + 100), 400);
	/* 500 more (1000 in all) at 600 ms: due at 1000. */
	assert_int_equal(efs_pace_add_at(&p, 500, t0 + 600), 400);
	/* At or behind the rate: no wait. */
	assert_int_equal(efs_pace_add_at(&p, 0, t0 + 1000), 0);
	assert_int_equal(efs_pace_add_at(&p, 0, t0 + 5000), 0);
	assert_int_equal(p.bytes, 1000);
}

static void test_pace_no_catch_up_beyond_average(void **state)
{
	struct efs_pace p;
	efs_pace_init(&p, 1000);
	int64_t t0 = p.started_ms;
	/* A slow start (nothing for 2 s) lets 2000 bytes through unpaced... */
	assert_int_equal(efs_pace_add_at(&p, 2000, t0 + 2000), 0);
	/* ...and the average rules from there on. */
	assert_int_equal(efs_pace_add_at(&p, 1000, t0 + 2000), 1000);
}

static void test_pace_fractions(void **state)
{
	struct efs_pace p;
	efs_pace_init(&p, 3000);
	int64_t t0 = p.started_ms;
	assert_int_equal(efs_pace_add_at(&p, 1, t0), 0); /* 1/3 ms rounds down */
	assert_int_equal(efs_pace_add_at(&p, 2, t0), 1);
	assert_int_equal(efs_pace_add_at(&p, 4497, t0), 1500);
}

static void test_pace_unlimited(void **state)
{
	struct efs_pace p;
	efs_pace_init(&p, 0);
	assert_int_equal(efs_pace_add_at(&p, UINT64_MAX / 2, p.started_ms), 0);
}

static void test_pace_huge_values(void **state)
{
	struct efs_pace p;
	efs_pace_init(&p, 1024);
	/* bytes * 1000 would overflow 64 bits: the wait saturates. */
	assert_int_equal(efs_pace_add_at(&p, UINT64_MAX, p.started_ms), INT64_MAX);
	/* A rate near the configured maximum (2^62) with a large remainder. */
	efs_pace_init(&p, UINT64_MAX >> 2);
	int64_t wait = efs_pace_add_at(&p, (UINT64_MAX >> 3), p.started_ms);
	assert_in_range(wait, 499, 500);
}

static void test_pace_real_clock(void **state)
{
	struct efs_pace p;
	efs_pace_init(&p, 1 << 20);
	int64_t wait = efs_pace_add(&p, 1 << 20); /* one second's worth */
	assert_in_range(wait, 900, 1000);
	efs_sleep_ms(20);
	assert_true(efs_pace_add(&p, 0) < wait);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pace_waits_when_ahead),
		cmocka_unit_test(test_pace_no_catch_up_beyond_average),
		cmocka_unit_test(test_pace_fractions),
		cmocka_unit_test(test_pace_unlimited),
		cmocka_unit_test(test_pace_huge_values),
		cmocka_unit_test(test_pace_real_clock),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
