/* SPDX-License-Identifier: MIT */
/* fuzz_report.c - libFuzzer harness for the master's chunk report parser
 * (efs_api_report_parse in src/master/api_workers.c), the body of
 * POST /api/v1/workers/{id}/report, read as the server reads it
 * (json_loadb with JSON_REJECT_DUPLICATES, an object, at most the route's
 * 4 MiB).
 *
 * Checked beyond the sanitizers:
 *   - 0, -EINVAL (with a reason) or -ENOMEM, nothing else; *out untouched
 *     on failure;
 *   - on success: started_ms and worker_now_ms in 0..INT64_MAX, one entry
 *     per item of "chunks", each a valid chunk id (64 lowercase hex) whose
 *     mtime is the item's, "lost" an array or NULL, "last" only when true;
 *   - a body that parses re-parses the same after a dump and a load (so
 *     the parser's answer depends on the JSON value, not on its spelling).
 * Build and run: make fuzz; bin/fuzz_report tests/fuzz/corpus/report
 */
#include "echofs/util.h"
#include "master/api.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REPORT_BODY_MAX (4 * 1024 * 1024) /* the route's max_body */

static int parse(const json_t *body, struct efs_report_body *out)
{
	char why[EFS_HTTP_JSON_WHY_MAX] = "";
	memset(out, 0x5a, sizeof(*out));
	struct efs_report_body before = *out;
	int r = efs_api_report_parse(body, out, why, sizeof(why));
	if (r < 0) {
		if ((r != -EINVAL && r != -ENOMEM) || (r == -EINVAL && !why[0]) ||
		    memcmp(&before, out, sizeof(*out)) != 0)
			abort();
		return r;
	}
	if (r != 0 || out->started_ms < 0 || out->worker_now_ms < 0 || !out->entries)
		abort();
	const json_t *chunks = json_object_get(body, "chunks");
	if (out->count != (chunks ? json_array_size(chunks) : 0))
		abort();
	for (size_t i = 0; i < out->count; i++) {
		const json_t *item = json_array_get(chunks, i);
		if (!efs_chunk_id_valid(out->entries[i].chunk_id) ||
		    strcmp(out->entries[i].chunk_id, json_string_value(json_array_get(item, 0))) ||
		    out->entries[i].mtime_ms != json_integer_value(json_array_get(item, 1)))
			abort();
	}
	if (out->lost && (!json_is_array(out->lost) || out->lost != json_object_get(body, "lost")))
		abort();
	if (out->last != json_is_true(json_object_get(body, "last")))
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_error_t jerr;
	if (size == 0 || size > REPORT_BODY_MAX)
		return 0;
	json_t *body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
	if (!body || !json_is_object(body)) {
		json_decref(body);
		return 0;
	}
	struct efs_report_body rb;
	int r = parse(body, &rb);
	if (r == 0) {
		char *text = json_dumps(body, JSON_COMPACT);
		json_t *again = text ? json_loads(text, JSON_REJECT_DUPLICATES, &jerr) : NULL;
		struct efs_report_body rb2;
		if (again) {
			if (parse(again, &rb2) != 0 || rb2.count != rb.count ||
			    rb2.started_ms != rb.started_ms ||
			    rb2.worker_now_ms != rb.worker_now_ms || rb2.last != rb.last ||
			    memcmp(rb2.entries, rb.entries, rb.count * sizeof(*rb.entries)) != 0)
				abort();
			free(rb2.entries);
		}
		json_decref(again);
		free(text);
		free(rb.entries);
	}
	json_decref(body);
	return 0;
}
