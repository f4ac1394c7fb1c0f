/* SPDX-License-Identifier: MIT */
/* api.c - the worker's HTTP handlers. */
#include "worker/api.h"

int efs_worker_api_health(struct efs_http_req *req)
{
	struct efs_worker *w = efs_http_ctx(req);
	struct efs_worker_space space = {0};
	char id[EFS_ID_MAX + 1];
	bool registered;

	efs_heartbeat_status(&w->heartbeat, id, &registered);
	int r = efs_worker_space(w, &space);
	return efs_http_reply_json(
		req, 200,
		json_pack("{s:s, s:s?, s:b, s:s, s:I, s:I, s:I}", "status", r == 0 ? "ok" : "degraded",
			  "worker_id", id[0] ? id : NULL, "registered", registered, "url",
			  w->cfg.advertise_url, "capacity_bytes", (json_int_t)space.capacity_bytes,
			  "free_bytes", (json_int_t)space.free_bytes, "chunk_count",
			  (json_int_t)space.chunk_count));
}
