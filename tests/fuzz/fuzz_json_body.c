/* SPDX-License-Identifier: MIT */
/* fuzz_json_body.c - libFuzzer harness for the JSON request bodies the
 * master reads: parsed as efs_http_body_json parses them (the nesting
 * check efs_json_check_depth, then json_loadb with JSON_REJECT_DUPLICATES,
 * an object, at most the 16 KiB those routes accept), then read with the typed readers of src/common/json.c
 * (efs_json_u64, efs_json_str) and the validators the handlers apply to
 * what they read: session init (name + efs_name_valid, chunk_size, size),
 * complete (session_id), worker register (url + efs_http_url_valid,
 * worker_id + efs_id_valid), register and heartbeat capacity figures; and
 * every key of the body, read both ways with several length limits.
 *
 * Checked beyond the sanitizers, per json.h and util.h:
 *   - efs_json_check_depth: a body it lets through never parses into
 *     arrays and objects nested deeper than EFS_JSON_MAX_DEPTH;
 *   - efs_json_u64: 0 only for a JSON integer >= 0, with its value;
 *     -ENOENT for absent or null; else -EINVAL; *out untouched on failure;
 *   - efs_json_str: 0 only for a string of at most max_len bytes with no
 *     NUL inside; -ENOENT for absent or null; else -EINVAL;
 *   - efs_name_valid: true only for 1..max bytes of UTF-8 without control
 *     characters; efs_id_valid: only 1..64 of [A-Za-z0-9_-];
 *     efs_http_url_valid: only http:// or https:// and no space, quote or
 *     backslash.
 * Build and run: make fuzz; bin/fuzz_json_body tests/fuzz/corpus/json_body
 */
#include "echofs/config.h"
#include "echofs/json.h"
#include "echofs/meta.h"
#include "echofs/util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define JSON_BODY_MAX (16 * 1024) /* routes.c: init, complete, register, heartbeat */
#define UNTOUCHED 0x5a5a5a5a5a5a5a5aULL

static int read_u64(const json_t *obj, const char *key, uint64_t *out)
{
	*out = UNTOUCHED;
	int r = efs_json_u64(obj, key, out);
	const json_t *v = json_object_get(obj, key);
	if (!v || json_is_null(v)) {
		if (r != -ENOENT)
			abort();
	} else if (json_is_integer(v) && json_integer_value(v) >= 0) {
		if (r != 0 || *out != (uint64_t)json_integer_value(v))
			abort();
	} else if (r != -EINVAL) {
		abort();
	}
	if (r < 0 && *out != UNTOUCHED)
		abort();
	return r;
}

static int read_str(const json_t *obj, const char *key, size_t max_len, const char **out)
{
	static const char untouched[] = "untouched";
	*out = untouched;
	int r = efs_json_str(obj, key, max_len, out);
	const json_t *v = json_object_get(obj, key);
	if (!v || json_is_null(v)) {
		if (r != -ENOENT)
			abort();
	} else if (r == 0) {
		if (!json_is_string(v) || *out != json_string_value(v) ||
		    strlen(*out) != json_string_length(v) || strlen(*out) > max_len)
			abort();
	} else if (r != -EINVAL || (json_is_string(v) && json_string_length(v) <= max_len &&
				    strlen(json_string_value(v)) == json_string_length(v))) {
		abort();
	}
	if (r < 0 && *out != untouched)
		abort();
	return r;
}

static void check_name(const char *s, size_t max_len)
{
	if (!efs_name_valid(s, max_len))
		return;
	size_t n = strlen(s);
	if (n < 1 || n > max_len || !efs_utf8_valid(s, n))
		abort();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			abort();
}

static void check_id(const char *s)
{
	if (!efs_id_valid(s))
		return;
	size_t n = strlen(s);
	if (n < 1 || n > EFS_ID_MAX ||
	    strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
		      "qrstuvwxyz0123456789_-") != n)
		abort();
}

static void check_url(const char *s)
{
	if (!efs_http_url_valid(s))
		return;
	if ((strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0) ||
	    strpbrk(s, " \"\\\t\r\n") || strlen(s) > EFS_URL_MAX)
		abort();
}

/* The depth of a parsed value, as efs_json_check_depth counts it. */
static unsigned tree_depth(const json_t *v)
{
	unsigned deepest = 0;
	if (json_is_object(v)) {
		const char *key;
		const json_t *member;
		json_object_foreach ((json_t *)v, key, member) {
			unsigned d = tree_depth(member);
			deepest = EFS_MAX(deepest, d);
		}
		return deepest + 1;
	}
	if (json_is_array(v)) {
		for (size_t i = 0; i < json_array_size(v); i++) {
			unsigned d = tree_depth(json_array_get(v, i));
			deepest = EFS_MAX(deepest, d);
		}
		return deepest + 1;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_error_t jerr;
	uint64_t u;
	const char *s;
	if (size == 0 || size > JSON_BODY_MAX)
		return 0;
	if (efs_json_check_depth((const char *)data, size, EFS_JSON_MAX_DEPTH) < 0)
		return 0;
	json_t *body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
	if (!body || !json_is_object(body)) {
		json_decref(body);
		return 0;
	}
	if (tree_depth(body) > EFS_JSON_MAX_DEPTH)
		abort();
	/* POST /api/v1/files/upload/init */
	if (read_str(body, "name", EFS_NAME_MAX, &s) == 0)
		check_name(s, EFS_NAME_MAX);
	read_u64(body, "chunk_size", &u);
	read_u64(body, "size", &u);
	/* POST /api/v1/files/upload/complete */
	if (read_str(body, "session_id", EFS_ID_MAX, &s) == 0)
		check_id(s);
	/* POST /api/v1/workers/register and .../heartbeat */
	if (read_str(body, "url", EFS_URL_MAX, &s) == 0)
		check_url(s);
	if (read_str(body, "worker_id", EFS_ID_MAX, &s) == 0)
		check_id(s);
	read_u64(body, "capacity_bytes", &u);
	read_u64(body, "free_bytes", &u);
	read_u64(body, "chunk_count", &u);
	/* What a worker reads from a master's answer. */
	read_u64(body, "heartbeat_interval_ms", &u);

	/* Every key, whatever its value. */
	const char *key;
	json_t *value;
	json_object_foreach(body, key, value)
	{
		read_u64(body, key, &u);
		static const size_t limits[] = {0, 1, 64, 255, 4096};
		for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++)
			if (read_str(body, key, limits[i], &s) == 0) {
				check_name(s, limits[i]);
				check_id(s);
				check_url(s);
			}
	}
	json_decref(body);
	return 0;
}
