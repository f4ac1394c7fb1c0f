/* SPDX-License-Identifier: MIT */
/* api_files.c - the file endpoints. */
#include "echofs/util.h"
#include "master/api.h"

#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 1000

/* GET /api/v1/files?limit=N&cursor=C - the caller's files. The data path
 * has not landed yet, so the list is always empty; the parameters are
 * already checked as they will be. */
int efs_api_file_list(struct efs_http_req *req)
{
	const char *limit_s = efs_http_query(req, "limit");
	uint64_t limit = LIST_LIMIT_DEFAULT;
	if (limit_s && (efs_parse_u64(limit_s, false, &limit) < 0 || limit < 1 ||
			limit > LIST_LIMIT_MAX))
		return efs_http_reply_error(req, 400, "invalid_limit",
					    "limit must be an integer from 1 to %d", LIST_LIMIT_MAX);
	return efs_http_reply_json(req, 200,
				   json_pack("{s:[], s:n}", "files", "next_cursor"));
}
