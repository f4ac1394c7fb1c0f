/* SPDX-License-Identifier: MIT */
/* test_json.c - unit tests of the JSON nesting check (include/echofs/json.h)
 * that every JSON request body passes before jansson parses it.
 *
 * The depth counts arrays and objects, not brackets inside strings (nor
 * escaped quotes that would end a string early); past the limit it is
 * -E2BIG at once, at the limit 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "echofs/json.h"

static int check(const char *text, unsigned max_depth)
{
	return efs_json_check_depth(text, strlen(text), max_depth);
}

/* "[[[...]]]" nested @depth deep, as a malloc'd string. */
static char *nested(unsigned depth, char open, char close)
{
	char *s = malloc(2 * (size_t)depth + 1);
	assert_non_null(s);
	memset(s, open, depth);
	memset(s + depth, close, depth);
	s[2 * depth] = '\0';
	return s;
}

static void test_flat_and_shallow_bodies_pass(void **state)
{
	assert_int_equal(check("", 32), 0);
	assert_int_equal(check("17", 32), 0);
	assert_int_equal(check("{}", 32), 0);
	assert_int_equal(check("{\"a\": [1, {\"b\": [2]}]}", 4), 0);
	assert_int_equal(check("{\"a\": [1, {\"b\": [2]}]}", 3), -E2BIG);
}

static void test_the_limit_itself_passes_one_more_does_not(void **state)
{
	char *at = nested(EFS_JSON_MAX_DEPTH, '[', ']');
	char *past = nested(EFS_JSON_MAX_DEPTH + 1, '{', '}');
	assert_int_equal(check(at, EFS_JSON_MAX_DEPTH), 0);
	assert_int_equal(check(past, EFS_JSON_MAX_DEPTH), -E2BIG);
	free(at);
	free(past);
}

static void test_depth_is_the_maximum_not_the_total(void **state)
{
	/* Many siblings, each one deep. */
	assert_int_equal(check("[[],[],[],[],[],[],[],[]]", 2), 0);
	assert_int_equal(check("{\"a\":{},\"b\":{},\"c\":[[]]}", 2), -E2BIG);
}

static void test_brackets_in_strings_do_not_count(void **state)
{
	assert_int_equal(check("{\"name\": \"[[[[{{{{\"}", 1), 0);
	/* An escaped quote does not end the string; an escaped backslash
	 * before the closing quote does not escape it. */
	assert_int_equal(check("[\"\\\"[[[[\"]", 1), 0);
	assert_int_equal(check("[\"\\\\\", [[]]]", 2), -E2BIG);
	assert_int_equal(check("[\"\\\\\", [[]]]", 3), 0);
}

static void test_unbalanced_text_is_left_to_the_parser(void **state)
{
	assert_int_equal(check("]]]]}}}}[", 1), 0);
	assert_int_equal(check("[[[", 2), -E2BIG);
	assert_int_equal(check("\"never closed [[[[", 1), 0);
}

static void test_a_deep_body_is_refused_before_its_end(void **state)
{
	/* Only the bytes up to the first level past the limit are needed: a
	 * megabyte of opening brackets costs one pass and no recursion. */
	size_t len = 1024 * 1024;
	char *s = malloc(len);
	assert_non_null(s);
	memset(s, '[', len);
	assert_int_equal(efs_json_check_depth(s, len, EFS_JSON_MAX_DEPTH), -E2BIG);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_flat_and_shallow_bodies_pass),
	    cmocka_unit_test(test_the_limit_itself_passes_one_more_does_not),
	    cmocka_unit_test(test_depth_is_the_maximum_not_the_total),
	    cmocka_unit_test(test_brackets_in_strings_do_not_count),
	    cmocka_unit_test(test_unbalanced_text_is_left_to_the_parser),
	    cmocka_unit_test(test_a_deep_body_is_refused_before_its_end),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
