/* SPDX-License-Identifier: MIT */
/* api_workers.c - worker registration, heartbeats and the worker list. */
#include "echofs/config.h"
#include "echofs/json.h"
#include "echofs/log.h"
#include "echofs/util.h"
#include "master/api.h"

#include <stdlib.h>

int efs_api_store_error(struct efs_http_req *req, int r)
{
	if (r == -EAGAIN)
		return efs_http_reply_error(req, 503, "metadata_unavailable",
					    "the metadata store is unavailable; retry shortly");
	efs_error("%s %s: metadata store error: %s", req->method, req->path, strerror(-r));
	return efs_http_reply_error(req, 500, "internal_error", "metadata store error: %s",
				    strerror(-r));
}

/* Reads the capacity figures a worker sends: capacity_bytes and
 * free_bytes (required, free <= capacity), chunk_count (optional, 0).
 * Replies 400 when malformed. */
static int read_capacity(struct efs_http_req *req, json_t *body, uint64_t *capacity,
			 uint64_t *free_bytes, uint64_t *chunk_count)
{
	static const char *const keys[] = {"capacity_bytes", "free_bytes", "chunk_count"};
	uint64_t *outs[] = {capacity, free_bytes, chunk_count};
	for (size_t i = 0; i < EFS_ARRAY_SIZE(keys); i++) {
		*outs[i] = 0;
		int r = efs_json_u64(body, keys[i], outs[i]);
		bool required = i < 2;
		if (r == -EINVAL || (r == -ENOENT && required) || *outs[i] > INT64_MAX) {
			efs_http_reply_error(req, 400, "invalid_field",
					     "%s must be a non-negative integer%s", keys[i],
					     required ? " (required)" : "");
			return -EINVAL;
		}
	}
	if (*free_bytes > *capacity) {
		efs_http_reply_error(req, 400, "invalid_field",
				     "free_bytes (%llu) exceeds capacity_bytes (%llu)",
				     (unsigned long long)*free_bytes, (unsigned long long)*capacity);
		return -EINVAL;
	}
	return 0;
}

int efs_api_worker_register(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	json_t *body;
	const char *url, *worker_id = NULL;
	uint64_t capacity, free_bytes, chunk_count;
	char id[EFS_ID_MAX + 1];
	int r;

	if (efs_http_body_json(req, &body) < 0)
		return 0;
	if (efs_json_str(body, "url", EFS_URL_MAX, &url) < 0 || !efs_http_url_valid(url)) {
		efs_http_reply_error(req, 400, "invalid_field",
				     "url must be an http:// or https:// URL");
		goto out;
	}
	r = efs_json_str(body, "worker_id", EFS_ID_MAX, &worker_id);
	if (r == -EINVAL || (r == 0 && !efs_id_valid(worker_id))) {
		efs_http_reply_error(req, 400, "invalid_field",
				     "worker_id must be 1-64 characters of [A-Za-z0-9_-]");
		goto out;
	}
	if (read_capacity(req, body, &capacity, &free_bytes, &chunk_count) < 0)
		goto out;
	r = efs_registry_register(&m->registry, r == 0 ? worker_id : NULL, url, capacity,
				  free_bytes, chunk_count, id);
	if (r < 0) {
		efs_api_store_error(req, r);
		goto out;
	}
	efs_http_reply_json(req, 200,
			    json_pack("{s:s, s:I}", "worker_id", id, "heartbeat_interval_ms",
				      (json_int_t)m->cfg.heartbeat_interval_ms));
out:
	json_decref(body);
	return 0;
}

int efs_api_worker_heartbeat(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	const char *worker_id = efs_http_param(req, "workerId");
	uint64_t capacity, free_bytes, chunk_count;
	json_t *body;

	if (!efs_id_valid(worker_id))
		return efs_http_reply_error(req, 400, "invalid_worker_id",
					    "worker id must be 1-64 characters of [A-Za-z0-9_-]");
	if (efs_http_body_json(req, &body) < 0)
		return 0;
	if (read_capacity(req, body, &capacity, &free_bytes, &chunk_count) == 0) {
		int r = efs_registry_heartbeat(&m->registry, worker_id, capacity, free_bytes,
					       chunk_count);
		if (r == -ENOENT)
			efs_http_reply_error(req, 404, "worker_not_found",
					     "unknown worker %s: register again", worker_id);
		else if (r < 0)
			efs_api_store_error(req, r);
		else
			efs_http_reply_json(req, 200,
					    json_pack("{s:s, s:I}", "status", "ok",
						      "heartbeat_interval_ms",
						      (json_int_t)m->cfg.heartbeat_interval_ms));
	}
	json_decref(body);
	return 0;
}

int efs_api_worker_list(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	struct efs_worker_status *list;
	size_t n;
	char when[EFS_ISO8601_LEN];

	int r = efs_registry_list(&m->registry, &list, &n);
	if (r < 0)
		return efs_api_store_error(req, r);
	json_t *workers = json_array();
	for (size_t i = 0; i < n; i++) {
		const struct efs_worker_info *w = &list[i].info;
		json_array_append_new(
			workers,
			json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "worker_id", w->worker_id,
				  "url", w->url, "status", list[i].alive ? "alive" : "dead",
				  "last_heartbeat", efs_iso8601(w->last_heartbeat_ms, when),
				  "capacity_bytes", (json_int_t)w->capacity_bytes, "free_bytes",
				  (json_int_t)w->free_bytes, "chunk_count",
				  (json_int_t)w->chunk_count));
	}
	free(list);
	return efs_http_reply_json(req, 200, json_pack("{s:o}", "workers", workers));
}
