/* SPDX-License-Identifier: MIT */
/* test_http_server.c - unit tests of the reply headers of http_server.h.
 *
 * A plain server on loopback and http_client.h's calls, which list every
 * response header: a header added twice under one name (any case) is sent
 * once, with the last value; a reply's own content type wins over one
 * added before it (the S3 held Complete adds application/xml for its
 * stream, and when the stream cannot be made its fallback replies with a
 * content type of its own: once, not twice). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "echofs/http_client.h"
#include "echofs/http_server.h"
#include "echofs/log.h"
#include "echofs/util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Adds Content-Type and ETag twice each (the second in other case), then
 * replies with no content type of its own. */
static int twice(struct efs_http_req *req)
{
	if (efs_http_add_header(req, "Content-Type", "text/plain") < 0 ||
	    efs_http_add_header(req, "content-type", "application/xml") < 0 ||
	    efs_http_add_header(req, "ETag", "\"first\"") < 0 ||
	    efs_http_add_header(req, "ETAG", "\"second\"") < 0)
		return -ENOMEM;
	return efs_http_reply_bytes(req, 200, NULL, "<a/>", 4);
}

/* Adds a content type, then replies with another. */
static int fallback(struct efs_http_req *req)
{
	if (efs_http_add_header(req, "Content-Type", "application/xml") < 0 ||
	    efs_http_add_header(req, "X-Kept", "yes") < 0)
		return -ENOMEM;
	return efs_http_reply_bytes(req, 503, "application/json", "{}", 2);
}

static const struct efs_http_route routes[] = {
    {"GET", "/twice", EFS_AUTH_NONE, .handle = twice},
    {"GET", "/fallback", EFS_AUTH_NONE, .handle = fallback},
};

static struct efs_http_server *server;
static struct efs_http_client *client;
static uint16_t port;

static int setup(void **state)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	char err[256] = "";
	struct efs_http_server_config cfg = {
	    .addr = &sa,
	    .addrlen = sizeof(sa),
	    .routes = routes,
	    .route_count = EFS_ARRAY_SIZE(routes),
	    .error = err,
	    .error_len = sizeof(err),
	};
	if (efs_http_server_start(&cfg, &server) < 0) {
		fprintf(stderr, "cannot start the server: %s\n", err);
		return -1;
	}
	port = efs_http_server_port(server);
	return efs_http_client_new(&client) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
	efs_http_client_free(client);
	efs_http_server_stop(server, 1000);
	return 0;
}

/* The values of the response headers named @name (up to 4). */
struct seen {
	const char *name;
	unsigned count;
	char values[4][64];
};

static int note_header(void *ctx, const char *name, size_t name_len, const char *value,
		       size_t value_len)
{
	struct seen *s = ctx;
	if (name_len != strlen(s->name) || strncasecmp(name, s->name, name_len) != 0)
		return 0;
	if (s->count < EFS_ARRAY_SIZE(s->values))
		snprintf(s->values[s->count], sizeof(s->values[0]), "%.*s", (int)value_len, value);
	s->count++;
	return 0;
}

/* GETs @path and records its headers named @name in @s; returns the status. */
static long get(const char *path, struct seen *s)
{
	char url[64];
	struct efs_http_call call;
	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
	efs_http_call_init(&call, "GET", url);
	call.header_fn = note_header;
	call.header_ctx = s;
	assert_int_equal(efs_http_call_run(client, &call), 0);
	long status = call.status;
	efs_http_call_release(&call);
	return status;
}

static void test_a_header_added_twice_is_sent_once_with_the_last_value(void **state)
{
	struct seen ct = {.name = "Content-Type"}, etag = {.name = "ETag"};
	assert_int_equal(get("/twice", &ct), 200);
	assert_int_equal(ct.count, 1);
	assert_string_equal(ct.values[0], "application/xml");
	assert_int_equal(get("/twice", &etag), 200);
	assert_int_equal(etag.count, 1);
	assert_string_equal(etag.values[0], "\"second\"");
}

static void test_the_replys_own_content_type_wins(void **state)
{
	struct seen ct = {.name = "Content-Type"}, kept = {.name = "X-Kept"};
	assert_int_equal(get("/fallback", &ct), 503);
	assert_int_equal(ct.count, 1);
	assert_string_equal(ct.values[0], "application/json");
	assert_int_equal(get("/fallback", &kept), 503);
	assert_int_equal(kept.count, 1);
	assert_string_equal(kept.values[0], "yes");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_a_header_added_twice_is_sent_once_with_the_last_value),
	    cmocka_unit_test(test_the_replys_own_content_type_wins),
	};
	efs_log_set_level(EFS_LOG_ERROR);
	if (efs_http_client_global_init() < 0)
		return 1;
	int failed = cmocka_run_group_tests_name("http_server", tests, setup, teardown);
	efs_http_client_global_cleanup();
	return failed;
}
