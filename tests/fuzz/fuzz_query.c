/* SPDX-License-Identifier: MIT */
/* fuzz_query.c - libFuzzer harness for what the servers read from a
 * request's URL: route matching and path parameters
 * (efs_http_route_match in src/common/http_server.c, against the master's
 * and the worker's real route tables), and the query parameters the master
 * reads, decoded as libmicrohttpd decodes them (split at '&' and '=',
 * MHD_http_unescape; a value with a NUL inside is refused as
 * efs_http_query refuses it), then parsed as the handlers parse them:
 * limit and chunk_index (efs_parse_u64), cursor (efs_api_cursor_parse, the
 * GET /api/v1/files?cursor= format), name (efs_name_valid), session_id
 * (efs_id_valid).
 *
 * Input: "<path>?<query>" (at most 8 KiB, as a request line would be).
 * Checked beyond the sanitizers:
 *   - a match gives at most EFS_HTTP_MAX_PARAMS parameters, each 1..
 *     EFS_HTTP_PARAM_MAX bytes without '/', and putting them back into the
 *     pattern gives the path again; matching with and without a request
 *     agrees;
 *   - a cursor that parses has a time in 0..INT64_MAX and a valid id, and
 *     printing those back ("%lld.%s") parses to the same values;
 *   - efs_parse_u64 succeeds only on digits (and, with suffixes, K/M/G/T
 *     with an optional B or iB), and printing the value back re-parses.
 * Build and run: make fuzz; bin/fuzz_query tests/fuzz/corpus/query
 */
#include "echofs/util.h"
#include "master/api.h"

#include <inttypes.h>
#include <microhttpd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

extern const struct efs_http_route efs_worker_routes[];
extern const size_t efs_worker_route_count;

#define URL_MAX (8 * 1024)

static void check_route(const char *pattern, const char *path)
{
	struct efs_http_req req;
	memset(&req, 0, sizeof(req));
	bool matched = efs_http_route_match(pattern, path, &req);
	if (matched != efs_http_route_match(pattern, path, NULL))
		abort();
	if (!matched)
		return;
	if (req.param_count > EFS_HTTP_MAX_PARAMS)
		abort();
	/* Rebuild the path from the pattern and the parameters. */
	char rebuilt[URL_MAX + 1];
	size_t used = 0;
	unsigned k = 0;
	for (const char *p = pattern; *p;) {
		if (*p == '{') {
			const char *close = strchr(p, '}');
			if (!close || k >= req.param_count)
				abort();
			const char *v = req.params[k];
			size_t n = strlen(v);
			if (n < 1 || n > EFS_HTTP_PARAM_MAX || strchr(v, '/') ||
			    strncmp(req.param_names[k], p + 1, (size_t)(close - p - 1)) != 0 ||
			    efs_http_param(&req, req.param_names[k]) == NULL)
				abort();
			if (used + n > URL_MAX)
				abort();
			memcpy(rebuilt + used, v, n);
			used += n;
			k++;
			p = close + 1;
		} else {
			if (used >= URL_MAX)
				abort();
			rebuilt[used++] = *p++;
		}
	}
	rebuilt[used] = '\0';
	if (k != req.param_count || strcmp(rebuilt, path) != 0)
		abort();
}

static void check_u64(const char *s, bool allow_suffix)
{
	uint64_t v = 0;
	int r = efs_parse_u64(s, allow_suffix, &v);
	if (r == 0) {
		size_t digits = strspn(s, "0123456789");
		if (digits == 0 || (!allow_suffix && s[digits]))
			abort();
		char text[32];
		uint64_t again = 0;
		snprintf(text, sizeof(text), "%" PRIu64, v);
		if (efs_parse_u64(text, false, &again) != 0 || again != v)
			abort();
	} else if (r != -EINVAL && r != -ERANGE) {
		abort();
	}
}

static void check_cursor(const char *cursor)
{
	int64_t created = -7, created2 = -7;
	char id[EFS_ID_MAX + 1] = "", id2[EFS_ID_MAX + 1] = "";
	if (efs_api_cursor_parse(cursor, &created, id) != 0) {
		if (created != -7 || id[0])
			abort();
		return;
	}
	if (created < 0 || !efs_id_valid(id))
		abort();
	char text[160];
	snprintf(text, sizeof(text), "%lld.%s", (long long)created, id);
	if (efs_api_cursor_parse(text, &created2, id2) != 0 || created2 != created ||
	    strcmp(id, id2) != 0)
		abort();
}

static void check_param(const char *name, const char *value)
{
	if (strcmp(name, "limit") == 0 || strcmp(name, "chunk_index") == 0) {
		check_u64(value, false);
	} else if (strcmp(name, "cursor") == 0) {
		check_cursor(value);
	} else if (strcmp(name, "name") == 0) {
		if (efs_name_valid(value, EFS_NAME_MAX) &&
		    (strlen(value) > EFS_NAME_MAX || !efs_utf8_valid(value, strlen(value))))
			abort();
	} else if (strcmp(name, "session_id") == 0) {
		efs_id_valid(value);
	} else {
		check_u64(value, true); /* the config parser reads sizes this way */
		check_cursor(value);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > URL_MAX)
		return 0;
	char *url = malloc(size + 1);
	if (!url)
		return 0;
	memcpy(url, data, size);
	url[size] = '\0';
	char *query = strchr(url, '?');
	if (query)
		*query++ = '\0';

	for (size_t i = 0; i < efs_master_route_count; i++)
		check_route(efs_master_routes[i].pattern, url);
	for (size_t i = 0; i < efs_worker_route_count; i++)
		check_route(efs_worker_routes[i].pattern, url);

	/* "a=1&b&c=%41": what libmicrohttpd hands to efs_http_query. */
	for (char *arg = query; arg && *arg;) {
		char *amp = strchr(arg, '&');
		if (amp)
			*amp = '\0';
		char *eq = strchr(arg, '=');
		if (eq)
			*eq = '\0';
		MHD_http_unescape(arg);
		if (eq) {
			char *value = eq + 1;
			size_t len = MHD_http_unescape(value);
			if (strlen(value) == len) /* else efs_http_query refuses it */
				check_param(arg, value);
		}
		arg = amp ? amp + 1 : NULL;
	}
	free(url);
	return 0;
}
