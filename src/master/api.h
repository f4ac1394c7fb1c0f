/* SPDX-License-Identifier: MIT */
/* api.h - the master's HTTP handlers, one file per resource:
 * api_workers.c, api_system.c, api_files.c, api_sessions.c,
 * api_keys.c, api_metrics.c, api_dashboard.c. routes.c maps them to paths. */
#ifndef ECHOFS_MASTER_API_H
#define ECHOFS_MASTER_API_H

#include "echofs/http_error.h"
#include "echofs/http_server.h"
#include "master/master.h"

/* api_workers.c */
int efs_api_worker_register(struct efs_http_req *req);
int efs_api_worker_heartbeat(struct efs_http_req *req);
int efs_api_worker_list(struct efs_http_req *req);
int efs_api_worker_report(struct efs_http_req *req);
/* A chunk report's body, checked (see efs_api_worker_report). */
struct efs_report_body {
	int64_t started_ms;		  /* worker clock */
	int64_t worker_now_ms;		  /* worker clock */
	uint64_t master_started_ms;	  /* master clock: the answer to the report's first request; 0: absent */
	struct efs_report_entry *entries; /* malloc'd: count entries, verdicts unset */
	size_t count;
	const json_t *lost; /* borrowed from the body: an array, or NULL */
	/* Master clock: every lost id was found gone after it (the master's
	 * answer to the report's last batch); 0: absent. */
	uint64_t lost_checked_after_ms;
	bool last;
};
/* The parse step of a report, no I/O (so it can be fuzzed alone): reads
 * started_at_ms, now_ms (0..INT64_MAX), master_started_ms and
 * lost_checked_after_ms (optional), chunks ([["<64 hex>", mtime_ms],
 * ...]), lost (an array; its items are checked where used) and last. 0
 * with *out filled (the caller frees out->entries), -EINVAL with what is
 * wrong in @why (@why_size bytes), or -ENOMEM; *out untouched on failure. */
int efs_api_report_parse(const json_t *body, struct efs_report_body *out, char *why,
			 size_t why_size);
/* The verdicts on one report batch (efs_api_report_judge). */
struct efs_report_verdicts {
	json_t *del;		 /* new reference: chunk ids the worker deletes */
	int adopted;		 /* replicas recorded again */
	int marked;		 /* lost ids whose replica was marked bad */
	int64_t again_in_ms;	 /* > 0: the worker reports again within this */
};
/* Judges one checked report batch of @worker_id (known to the registry):
 * notes the contact, marks the lost ids' replicas bad, records or
 * condemns each listed copy, and after the last batch drops the rows it
 * did not list. The one judge of both transports: POST
 * /api/v1/workers/{id}/report and the gRPC Report stream (control.c).
 * Fills @rb's entries' verdicts. 0 with *@out set (the caller decrefs
 * out->del), or -errno from the metadata store (out->del NULL). */
int efs_api_report_judge(struct efs_master *m, const char *worker_id,
			 const struct efs_report_body *rb, struct efs_report_verdicts *out);
/* api_keys.c: the caller's S3 access keys */
int efs_api_key_create(struct efs_http_req *req);
int efs_api_key_list(struct efs_http_req *req);
int efs_api_key_delete(struct efs_http_req *req);
/* api_system.c */
int efs_api_health(struct efs_http_req *req);
/* Who sees the cluster's internal topology (worker URLs and capacities,
 * cluster-wide totals; docs/API.md "Who sees what"): true when
 * TOPOLOGY_VISIBLE_TO is "users" or the authenticated caller is an
 * operator (the cluster secret, or a user token with "admin": true). */
bool efs_api_topology_visible(struct efs_http_req *req);
/* For an endpoint that is all topology (@what names it): when the caller
 * may not see it, replies 403 operators_only and returns true. */
bool efs_api_refuse_topology(struct efs_http_req *req, const char *what);
/* api_metrics.c: GET /metrics (Prometheus text), GET /api/v1/stats, and
 * GET /api/v1/stats/history (the dashboard's charts, history.h) */
int efs_api_metrics(struct efs_http_req *req);
int efs_api_stats(struct efs_http_req *req);
int efs_api_stats_history(struct efs_http_req *req);
/* api_dashboard.c: GET / */
int efs_api_dashboard(struct efs_http_req *req);
/* api_files.c */
int efs_api_file_upload_begin(struct efs_http_req *req);
int efs_api_file_upload_body(struct efs_http_req *req, const char *data, size_t len);
int efs_api_file_upload(struct efs_http_req *req);
int efs_api_file_list(struct efs_http_req *req);
/* A listing cursor, "<created_ms>.<file_id>" of the last file of a page
 * (GET /api/v1/files?cursor=): 0 with the time and the id (@file_id holds
 * EFS_ID_MAX + 1 bytes), or -EINVAL with the outputs untouched. */
int efs_api_cursor_parse(const char *cursor, int64_t *created, char *file_id);
int efs_api_file_get(struct efs_http_req *req);
int efs_api_file_download(struct efs_http_req *req);
int efs_api_file_delete(struct efs_http_req *req);
json_t *efs_api_file_json(const struct efs_file_info *f);
/* The message of a 503 upload_memory_full for what
 * efs_upload_memory_take returned (-EDQUOT: the user's share is full,
 * else the whole budget is). */
const char *efs_api_upload_memory_full(int err);
/* The storage policy an upload asks for (issue 17): @asked is ?policy=,
 * the "policy" of a session's init or an S3 header, NULL for the master's
 * STORAGE_POLICY. Checks that this cluster stores it (REPLICATION_FACTOR
 * copies, or EC on the worker chunk store with SQL metadata) and can
 * place a chunk by it now (K+M or the replicas' live workers with room).
 * 0 with *@out set; -EINVAL (not a policy this cluster stores) or -ENOSPC
 * (cannot be placed now) with @why saying so; or a negative errno of the
 * store. *@out is untouched on error. */
int efs_api_policy_check(struct efs_master *m, const char *asked, struct efs_policy *out,
			 char *why, size_t why_size);
/* efs_api_policy_check for a REST request: 0 with *@out set; 1 after
 * replying 400 invalid_policy or 503 no_capacity; or a negative errno of
 * the store, nothing replied. */
int efs_api_upload_policy(struct efs_http_req *req, const char *asked, struct efs_policy *out);
/* *@out = *@base storing by @policy (its ec_data, ec_parity). */
void efs_api_policy_uploader(const struct efs_uploader *base, const struct efs_policy *policy,
			     struct efs_uploader *out);
/* api_sessions.c */
int efs_api_session_init(struct efs_http_req *req);
int efs_api_session_chunk_begin(struct efs_http_req *req);
int efs_api_session_chunk_body(struct efs_http_req *req, const char *data, size_t len);
int efs_api_session_chunk(struct efs_http_req *req);
int efs_api_session_complete(struct efs_http_req *req);
int efs_api_session_status(struct efs_http_req *req);
int efs_api_session_abort(struct efs_http_req *req);

static inline struct efs_master *efs_api_master(struct efs_http_req *req)
{
	return efs_http_ctx(req);
}

#endif
