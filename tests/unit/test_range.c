/* SPDX-License-Identifier: MIT */
/* test_range.c - unit tests of the HTTP Range header parser
 * (include/echofs/range.h).
 *
 * Each case of the contract: 0 and partial with the inclusive [first,
 * last] for a single satisfiable range, 0 and not partial for anything to
 * be ignored (send the whole body with 200), -ERANGE for a well-formed
 * unsatisfiable range (416).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "echofs/range.h"

#define UNTOUCHED UINT64_C(0xdeadbeefcafef00d)

/* Parses @header for @size and checks it gives the range [first, last]. */
static void expect_range(const char *header, uint64_t size, uint64_t first, uint64_t last)
{
	uint64_t got_first = UNTOUCHED, got_last = UNTOUCHED;
	bool partial = false;
	int r = efs_range_parse(header, size, &partial, &got_first, &got_last);
	if (r != 0 || !partial)
		fail_msg("\"%s\" on %llu bytes returned %d (partial %d), not a range",
			 header ? header : "(null)", (unsigned long long)size, r, partial);
	assert_int_equal(got_first, first);
	assert_int_equal(got_last, last);
}

/* Checks that @header gives @want (0: no range, the whole body; or
 * -ERANGE) and leaves the range untouched. */
static void expect_result(const char *header, uint64_t size, int want)
{
	uint64_t got_first = UNTOUCHED, got_last = UNTOUCHED;
	bool partial = true;
	int r = efs_range_parse(header, size, &partial, &got_first, &got_last);
	if (r != want || (want == 0 && partial))
		fail_msg("\"%s\" on %llu bytes returned %d (partial %d), not %d",
			 header ? header : "(null)", (unsigned long long)size, r, partial, want);
	if (want < 0) {
		assert_int_equal(got_first, UNTOUCHED);
		assert_int_equal(got_last, UNTOUCHED);
	}
}

static void test_first_byte(void **state)
{
	expect_range("bytes=0-0", 100, 0, 0);
	expect_range("bytes=0-0", 1, 0, 0);
}

static void test_closed_range(void **state)
{
	expect_range("bytes=10-19", 100, 10, 19);
	expect_range("bytes=99-99", 100, 99, 99);
	expect_range("bytes=0-99", 100, 0, 99);
}

static void test_open_range(void **state)
{
	expect_range("bytes=10-", 100, 10, 99);
	expect_range("bytes=0-", 100, 0, 99);
	expect_range("bytes=99-", 100, 99, 99);
}

static void test_suffix_range(void **state)
{
	expect_range("bytes=-5", 100, 95, 99);
	expect_range("bytes=-1", 100, 99, 99);
	expect_range("bytes=-100", 100, 0, 99);
}

static void test_suffix_longer_than_size_is_whole(void **state)
{
	expect_range("bytes=-5", 3, 0, 2);
	expect_range("bytes=-101", 100, 0, 99);
}

static void test_empty_suffix_is_unsatisfiable(void **state)
{
	expect_result("bytes=-0", 100, -ERANGE);
}

static void test_end_is_clamped(void **state)
{
	expect_range("bytes=5-1000000", 100, 5, 99);
	expect_range("bytes=0-100", 100, 0, 99);
	expect_range("bytes=5-18446744073709551615", 100, 5, 99);
}

static void test_start_past_end_is_unsatisfiable(void **state)
{
	expect_result("bytes=100-", 100, -ERANGE);
	expect_result("bytes=100-200", 100, -ERANGE);
	expect_result("bytes=1000-", 100, -ERANGE);
	expect_result("bytes=18446744073709551615-", 100, -ERANGE);
}

static void test_empty_representation_is_unsatisfiable(void **state)
{
	expect_result("bytes=0-0", 0, -ERANGE);
	expect_result("bytes=0-", 0, -ERANGE);
	expect_result("bytes=0-10", 0, -ERANGE);
	expect_result("bytes=-5", 0, -ERANGE);
}

static void test_several_ranges_are_ignored(void **state)
{
	expect_result("bytes=0-1,3-4", 100, 0);
	expect_result("bytes=0-1, 3-4", 100, 0);
	expect_result("bytes=-5,0-1", 100, 0);
}

static void test_other_units_are_ignored(void **state)
{
	expect_result("items=0-1", 100, 0);
	expect_result("bytesx=0-1", 100, 0);
	expect_result("byte=0-1", 100, 0);
}

static void test_unit_is_case_insensitive(void **state)
{
	expect_range("Bytes=1-2", 100, 1, 2);
	expect_range("BYTES=1-2", 100, 1, 2);
}

static void test_malformed_is_ignored(void **state)
{
	expect_result("bytes=a-b", 100, 0);
	expect_result("bytes=1-b", 100, 0);
	expect_result("bytes=a-", 100, 0);
	expect_result("bytes=-a", 100, 0);
	expect_result("bytes=", 100, 0);
	expect_result("bytes=-", 100, 0);
	expect_result("bytes", 100, 0);
	expect_result("bytes=1", 100, 0);
	expect_result("bytes=1-2-3", 100, 0);
	expect_result("bytes=1-2x", 100, 0);
	expect_result("bytes=+1-2", 100, 0);
	expect_result("bytes=--1", 100, 0);
	expect_result("", 100, 0);
}

static void test_reversed_range_is_ignored(void **state)
{
	/* RFC 9110 14.1.1: last-pos < first-pos makes the range invalid, and
	 * an invalid Range header is ignored: 0, not -ERANGE. */
	expect_result("bytes=5-2", 100, 0);
	expect_result("bytes=5-4", 100, 0);
	expect_result("bytes=500-2", 100, 0);
}

static void test_absent_header_is_ignored(void **state)
{
	expect_result(NULL, 100, 0);
	expect_result(NULL, 0, 0);
}

static void test_whitespace_is_tolerated(void **state)
{
	expect_range("bytes = 1-2", 100, 1, 2);
	expect_range(" bytes=1-2", 100, 1, 2);
	expect_range("bytes=1-2 ", 100, 1, 2);
	expect_range("bytes=\t-5", 100, 95, 99);
}

static void test_overflowing_numbers_are_ignored(void **state)
{
	/* 2^64 and longer: not a number we can represent */
	expect_result("bytes=18446744073709551616-", 100, 0);
	expect_result("bytes=0-18446744073709551616", 100, 0);
	expect_result("bytes=-18446744073709551616", 100, 0);
	expect_result("bytes=99999999999999999999999999-", 100, 0);
	/* 2^64 - 1 itself is fine */
	expect_range("bytes=-18446744073709551615", 100, 0, 99);
}

static void test_large_representation(void **state)
{
	const uint64_t size = UINT64_C(5) * 1024 * 1024 * 1024 * 1024; /* 5 TiB */
	expect_range("bytes=4398046511104-", size, UINT64_C(4398046511104), size - 1);
	expect_range("bytes=-10", size, size - 10, size - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_byte),
		cmocka_unit_test(test_closed_range),
		cmocka_unit_test(test_open_range),
		cmocka_unit_test(test_suffix_range),
		cmocka_unit_test(test_suffix_longer_than_size_is_whole),
		cmocka_unit_test(test_empty_suffix_is_unsatisfiable),
		cmocka_unit_test(test_end_is_clamped),
		cmocka_unit_test(test_start_past_end_is_unsatisfiable),
		cmocka_unit_test(test_empty_representation_is_unsatisfiable),
		cmocka_unit_test(test_several_ranges_are_ignored),
		cmocka_unit_test(test_other_units_are_ignored),
		cmocka_unit_test(test_unit_is_case_insensitive),
		cmocka_unit_test(test_malformed_is_ignored),
		cmocka_unit_test(test_reversed_range_is_ignored),
		cmocka_unit_test(test_absent_header_is_ignored),
		cmocka_unit_test(test_whitespace_is_tolerated),
		cmocka_unit_test(test_overflowing_numbers_are_ignored),
		cmocka_unit_test(test_large_representation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
