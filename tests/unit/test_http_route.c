/* SPDX-License-Identifier: MIT */
/* test_http_route.c - unit tests of the route pattern matcher of
 * http_server.h (efs_http_route_match): literal segments, {name}
 * parameters captured into struct efs_http_req, and the paths that must
 * not match (trailing slash, extra, missing or empty segments, parameters
 * over EFS_HTTP_PARAM_MAX). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "echofs/http_server.h"

/* Matches with a zeroed request and without one; both must agree. */
static bool match(const char *pattern, const char *path, struct efs_http_req *req)
{
	bool with = efs_http_route_match(pattern, path, req);
	bool without = efs_http_route_match(pattern, path, NULL);
	assert_int_equal(with, without);
	return with;
}

static void no_match(const char *pattern, const char *path)
{
	struct efs_http_req req;
	memset(&req, 0, sizeof(req));
	if (match(pattern, path, &req))
		print_error("\"%s\" unexpectedly matched \"%s\"\n", path, pattern);
	assert_false(efs_http_route_match(pattern, path, &req));
	assert_int_equal(req.param_count, 0);
}

static void test_literal(void **state)
{
	struct efs_http_req req;

	memset(&req, 0, sizeof(req));
	assert_true(match("/api/v1/health", "/api/v1/health", &req));
	assert_int_equal(req.param_count, 0);
	assert_true(match("/", "/", &req));
	assert_int_equal(req.param_count, 0);

	no_match("/api/v1/health", "/api/v1/healthz");
	no_match("/api/v1/health", "/api/v1/healt");
	no_match("/api/v1/health", "/api/v2/health");
	no_match("/api/v1/health", "/API/v1/health");
	no_match("/api/v1/health", "/");
	no_match("/", "/x");
	no_match("/", "");
}

static void test_one_param(void **state)
{
	struct efs_http_req req;

	memset(&req, 0, sizeof(req));
	assert_true(match("/api/v1/files/{file_id}", "/api/v1/files/f-123", &req));
	assert_int_equal(req.param_count, 1);
	assert_string_equal(req.param_names[0], "file_id");
	assert_string_equal(req.params[0], "f-123");
	assert_string_equal(efs_http_param(&req, "file_id"), "f-123");
	assert_null(efs_http_param(&req, "id"));
	assert_null(efs_http_param(&req, "file_i"));

	/* a parameter followed by a literal */
	memset(&req, 0, sizeof(req));
	assert_true(match("/api/v1/files/{file_id}/download", "/api/v1/files/abc/download", &req));
	assert_int_equal(req.param_count, 1);
	assert_string_equal(efs_http_param(&req, "file_id"), "abc");
	no_match("/api/v1/files/{file_id}/download", "/api/v1/files/abc/downloads");
	no_match("/api/v1/files/{file_id}/download", "/api/v1/files/abc/upload");

	/* one character is enough */
	memset(&req, 0, sizeof(req));
	assert_true(match("/x/{id}", "/x/1", &req));
	assert_string_equal(efs_http_param(&req, "id"), "1");
}

static void test_two_params(void **state)
{
	struct efs_http_req req;

	memset(&req, 0, sizeof(req));
	assert_true(match("/api/v1/sessions/{session_id}/chunks/{index}",
			  "/api/v1/sessions/s_9/chunks/42", &req));
	assert_int_equal(req.param_count, 2);
	assert_string_equal(req.param_names[0], "session_id");
	assert_string_equal(req.params[0], "s_9");
	assert_string_equal(req.param_names[1], "index");
	assert_string_equal(req.params[1], "42");
	assert_string_equal(efs_http_param(&req, "session_id"), "s_9");
	assert_string_equal(efs_http_param(&req, "index"), "42");
	assert_null(efs_http_param(&req, "chunks"));

	/* adjacent parameters */
	memset(&req, 0, sizeof(req));
	assert_true(match("/{a}/{b}", "/one/two", &req));
	assert_int_equal(req.param_count, 2);
	assert_string_equal(efs_http_param(&req, "a"), "one");
	assert_string_equal(efs_http_param(&req, "b"), "two");

	/* a later match overwrites the earlier captures */
	assert_true(match("/{a}", "/three", &req));
	assert_int_equal(req.param_count, 1);
	assert_string_equal(efs_http_param(&req, "a"), "three");
	assert_null(efs_http_param(&req, "b"));
}

static void test_trailing_slash(void **state)
{
	no_match("/api/v1/files", "/api/v1/files/");
	no_match("/api/v1/files/{file_id}", "/api/v1/files/abc/");
	no_match("/api/v1/files/", "/api/v1/files");
}

static void test_segment_count(void **state)
{
	/* extra segments */
	no_match("/api/v1/files/{file_id}", "/api/v1/files/abc/download");
	no_match("/api/v1/files", "/api/v1/files/abc");
	no_match("/{a}", "/a/b");
	/* missing segments */
	no_match("/api/v1/files/{file_id}/download", "/api/v1/files/abc");
	no_match("/api/v1/files/{file_id}", "/api/v1/files");
	no_match("/api/v1/files/{file_id}", "/api/v1");
	no_match("/{a}/{b}", "/a");
}

static void test_empty_segment(void **state)
{
	no_match("/api/v1/files/{file_id}/download", "/api/v1/files//download");
	no_match("/api/v1/files/{file_id}", "/api/v1/files/");
	no_match("/{a}/{b}", "//b");
	no_match("/{a}/{b}", "/a/");
	no_match("/api/v1/health", "/api//v1/health");
	no_match("/api/v1/health", "//api/v1/health");
}

static void test_param_length(void **state)
{
	struct efs_http_req req;
	char path[EFS_HTTP_PARAM_MAX + 16];

	/* exactly EFS_HTTP_PARAM_MAX bytes fits */
	memcpy(path, "/f/", 3);
	memset(path + 3, 'p', EFS_HTTP_PARAM_MAX);
	path[3 + EFS_HTTP_PARAM_MAX] = '\0';
	memset(&req, 0, sizeof(req));
	assert_true(match("/f/{id}", path, &req));
	assert_int_equal(strlen(efs_http_param(&req, "id")), EFS_HTTP_PARAM_MAX);
	assert_string_equal(efs_http_param(&req, "id"), path + 3);

	/* one byte more does not */
	path[3 + EFS_HTTP_PARAM_MAX] = 'p';
	path[4 + EFS_HTTP_PARAM_MAX] = '\0';
	no_match("/f/{id}", path);

	/* nor in a middle segment */
	path[4 + EFS_HTTP_PARAM_MAX] = '\0';
	char longer[EFS_HTTP_PARAM_MAX + 32];
	snprintf(longer, sizeof(longer), "%s/download", path);
	no_match("/f/{id}/download", longer);
}

static void test_not_absolute(void **state)
{
	no_match("api/v1/health", "api/v1/health");
	no_match("/api/v1/health", "api/v1/health");
	no_match("api/v1/health", "/api/v1/health");
	no_match("{a}", "x");
	no_match("", "");
	no_match("/", "");
	no_match("", "/");
}

static void test_braces_literal(void **state)
{
	struct efs_http_req req;

	/* "{}" is too short to be a parameter: it is matched literally */
	memset(&req, 0, sizeof(req));
	assert_true(match("/a/{}", "/a/{}", &req));
	assert_int_equal(req.param_count, 0);
	no_match("/a/{}", "/a/x");
	/* a parameter must span the whole segment */
	no_match("/a/x{id}", "/a/x1");
	memset(&req, 0, sizeof(req));
	assert_true(match("/a/x{id}", "/a/x{id}", &req));
	assert_int_equal(req.param_count, 0);
}

/* "*" (the S3 listener's one route) matches every path, capturing
 * nothing; a "*" segment elsewhere is a literal. */
static void test_catch_all(void **state)
{
	struct efs_http_req req;
	memset(&req, 0, sizeof(req));
	req.param_count = 3;
	assert_true(match("*", "/", &req));
	assert_int_equal(req.param_count, 0);
	assert_true(match("*", "/bucket/a/very/deep/key", &req));
	assert_true(match("*", "", &req));
	assert_false(match("/*", "/bucket", &req));
	assert_true(match("/*", "/*", &req));
}

static void test_too_many_params(void **state)
{
	struct efs_http_req req;

	memset(&req, 0, sizeof(req));
	assert_true(match("/{a}/{b}/{c}/{d}", "/1/2/3/4", &req));
	assert_int_equal(req.param_count, EFS_HTTP_MAX_PARAMS);
	assert_string_equal(efs_http_param(&req, "d"), "4");
	no_match("/{a}/{b}/{c}/{d}/{e}", "/1/2/3/4/5");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_literal),
		cmocka_unit_test(test_one_param),
		cmocka_unit_test(test_two_params),
		cmocka_unit_test(test_trailing_slash),
		cmocka_unit_test(test_segment_count),
		cmocka_unit_test(test_empty_segment),
		cmocka_unit_test(test_param_length),
		cmocka_unit_test(test_not_absolute),
		cmocka_unit_test(test_braces_literal),
		cmocka_unit_test(test_too_many_params),
		cmocka_unit_test(test_catch_all),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
