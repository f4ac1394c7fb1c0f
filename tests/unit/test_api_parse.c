/* SPDX-License-Identifier: MIT */
/* test_api_parse.c - unit tests of the master's pure request parsers
 * (master/api.h): the chunk report body (efs_api_report_parse) and the
 * listing cursor (efs_api_cursor_parse). Their fuzz harnesses are
 * tests/fuzz/fuzz_report.c and fuzz_query.c; a crash either finds goes
 * here as a case. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "master/api.h"

#define ID_A "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define ID_B "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"

static int parse(const char *text, struct efs_report_body *out, char *why)
{
	json_error_t jerr;
	json_t *body = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	assert_non_null(body);
	int r = efs_api_report_parse(body, out, why, EFS_HTTP_JSON_WHY_MAX);
	json_decref(body); /* out->lost is borrowed: not used after this */
	return r;
}

static void test_report_parse(void **state)
{
	struct efs_report_body rb;
	char why[EFS_HTTP_JSON_WHY_MAX] = "";
	assert_int_equal(parse("{\"started_at_ms\": 10, \"now_ms\": 20, \"chunks\": [[\"" ID_A
			       "\", 5], [\"" ID_B "\", -3]], \"last\": true}",
			       &rb, why),
			 0);
	assert_int_equal(rb.started_ms, 10);
	assert_int_equal(rb.worker_now_ms, 20);
	assert_int_equal(rb.count, 2);
	assert_string_equal(rb.entries[0].chunk_id, ID_A);
	assert_int_equal(rb.entries[0].mtime_ms, 5);
	assert_string_equal(rb.entries[1].chunk_id, ID_B);
	assert_int_equal(rb.entries[1].mtime_ms, -3);
	assert_true(rb.last);
	free(rb.entries);

	/* No chunks, no lost: an empty batch. */
	assert_int_equal(parse("{\"started_at_ms\": 0, \"now_ms\": 0}", &rb, why), 0);
	assert_int_equal(rb.count, 0);
	assert_null(rb.lost);
	assert_false(rb.last);
	free(rb.entries);
}

static void test_report_parse_refuses(void **state)
{
	static const char *const bad[] = {
	    "{}",
	    "{\"started_at_ms\": -1, \"now_ms\": 0}",
	    "{\"started_at_ms\": 1, \"now_ms\": 9223372036854775807, \"chunks\": {}}",
	    "{\"started_at_ms\": 1, \"now_ms\": 2, \"lost\": \"x\"}",
	    "{\"started_at_ms\": 1, \"now_ms\": 2, \"chunks\": [[\"abc\", 1]]}",
	    "{\"started_at_ms\": 1, \"now_ms\": 2, \"chunks\": [[\"" ID_A "\", 1.5]]}",
	    "{\"started_at_ms\": 1, \"now_ms\": 2, \"chunks\": [\"" ID_A "\"]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct efs_report_body rb = {.count = 77};
		char why[EFS_HTTP_JSON_WHY_MAX] = "";
		assert_int_equal(parse(bad[i], &rb, why), -EINVAL);
		assert_true(why[0] != '\0');
		assert_int_equal(rb.count, 77); /* untouched */
	}
}

static void test_cursor_parse(void **state)
{
	int64_t created = -1;
	char id[EFS_ID_MAX + 1] = "";
	assert_int_equal(efs_api_cursor_parse("1764700000000.abc-DEF_1", &created, id), 0);
	assert_int_equal(created, 1764700000000LL);
	assert_string_equal(id, "abc-DEF_1");

	static const char *const bad[] = {
	    "",
	    ".",
	    "1.",
	    ".abc",
	    "-1.abc",
	    "x.abc",
	    "1.a/b",
	    "1.a.b",
	    "9223372036854775808.abc",
	    "18446744073709551616.abc",
	    "1.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		created = -7;
		id[0] = '\0';
		assert_int_equal(efs_api_cursor_parse(bad[i], &created, id), -EINVAL);
		assert_int_equal(created, -7);
		assert_string_equal(id, "");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_report_parse),
	    cmocka_unit_test(test_report_parse_refuses),
	    cmocka_unit_test(test_cursor_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
