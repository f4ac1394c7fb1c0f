/* SPDX-License-Identifier: MIT */
/* api_workers.c - worker registration, heartbeats and the worker list. */
#include "echofs/config.h"
#include "echofs/json.h"
#include "echofs/log.h"
#include "echofs/util.h"
#include "master/api.h"
#include "master/chunk_backend.h"

#include <stdlib.h>
#include <string.h>

/* Added to a report's "report_again_in_ms": the young copy is surely past
 * the grace when the worker lists it again. */
#define REPORT_RECHECK_MARGIN_MS 500

/* A worker names the cluster its data belongs to in EFS_HDR_CLUSTER (none
 * before its first registration). One of another cluster is refused
 * before anything it says is read: its chunks are not orphans of this
 * cluster, and this master must never tell it to delete them. True when
 * refused (and answered 409 wrong_cluster). */
static bool refuse_other_cluster(struct efs_http_req *req, struct efs_master *m,
				 const char *worker)
{
	const char *ours = efs_meta_cluster_id(m->meta);
	const char *theirs = efs_http_header(req, EFS_HDR_CLUSTER);
	if (!theirs || strcmp(theirs, ours) == 0)
		return false;
	if (!efs_cluster_id_valid(theirs))
		theirs = "(malformed)";
	efs_error("worker %s belongs to cluster %s, this master to cluster %s: refused; "
		  "point it at its own masters or wipe its data directory deliberately",
		  worker, theirs, ours);
	efs_http_reply_err_extra(req, EFS_HTTP_E_WRONG_CLUSTER,
				 json_pack("{s:s}", "cluster_id", ours),
				 "this master belongs to cluster %s; the worker's data belongs to "
				 "cluster %s",
				 ours, theirs);
	return true;
}

/* Reads the capacity figures a worker sends: capacity_bytes and
 * free_bytes (required, free <= capacity), chunk_count (optional, 0).
 * -EINVAL when malformed, with what is wrong in @why (@why_size bytes). */
static int read_capacity(json_t *body, uint64_t *capacity, uint64_t *free_bytes,
			 uint64_t *chunk_count, char *why, size_t why_size)
{
	static const char *const keys[] = {"capacity_bytes", "free_bytes", "chunk_count"};
	uint64_t *outs[] = {capacity, free_bytes, chunk_count};
	for (size_t i = 0; i < EFS_ARRAY_SIZE(keys); i++) {
		*outs[i] = 0;
		int r = efs_json_u64(body, keys[i], outs[i]);
		bool required = i < 2;
		if (r == -EINVAL || (r == -ENOENT && required) || *outs[i] > INT64_MAX) {
			snprintf(why, why_size, "%s must be a non-negative integer%s", keys[i],
				 required ? " (required)" : "");
			return -EINVAL;
		}
	}
	if (*free_bytes > *capacity) {
		snprintf(why, why_size, "free_bytes (%llu) exceeds capacity_bytes (%llu)",
			 (unsigned long long)*free_bytes, (unsigned long long)*capacity);
		return -EINVAL;
	}
	return 0;
}

/* The gRPC address a worker that reached this master as @req's Host
 * should use: "grpc://HOST:GRPC_PORT" into @out (NULL when gRPC is off or
 * the Host header is unusable). */
static const char *grpc_url(struct efs_http_req *req, struct efs_master *m, char *out,
			    size_t size)
{
	uint16_t port = efs_control_port(&m->control);
	const char *host = efs_http_header(req, "Host");
	if (!port || !host || !*host || strlen(host) > 255)
		return NULL;
	size_t len = strlen(host);
	const char *close = host[0] == '[' ? strchr(host, ']') : NULL;
	if (close)
		len = (size_t)(close - host) + 1; /* [v6] */
	else if (strchr(host, ':'))
		len = (size_t)(strchr(host, ':') - host);
	for (size_t i = 0; i < len; i++)
		if (host[i] == '/' || host[i] == '@' || host[i] == ' ' || host[i] == ',')
			return NULL;
	int n = snprintf(out, size, "grpc://%.*s:%u", (int)len, host, port);
	return n > 0 && (size_t)n < size ? out : NULL;
}

int efs_api_worker_register(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	json_t *body;
	const char *url, *worker_id = NULL;
	uint64_t capacity, free_bytes, chunk_count;
	char id[EFS_ID_MAX + 1];
	char why[EFS_HTTP_JSON_WHY_MAX];
	int r;

	if ((r = efs_http_body_json(req, &body, why)) < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_JSON_BODY, r, why);
	if (efs_json_str(body, "url", EFS_URL_MAX, &url) < 0 || !efs_http_url_valid(url)) {
		efs_http_reply_err(req, EFS_HTTP_E_INVALID_FIELD,
				   "url must be an http:// or https:// URL");
		goto out;
	}
	if (refuse_other_cluster(req, m, url))
		goto out;
	r = efs_json_str(body, "worker_id", EFS_ID_MAX, &worker_id);
	if (r == -EINVAL || (r == 0 && !efs_id_valid(worker_id))) {
		efs_http_reply_err(req, EFS_HTTP_E_INVALID_FIELD,
				   "worker_id must be 1-64 characters of [A-Za-z0-9_-]");
		goto out;
	}
	bool with_id = r == 0;
	const char *zone = "";
	r = efs_json_str(body, "zone", EFS_ZONE_MAX, &zone);
	if (r == -EINVAL || (r == 0 && !efs_zone_valid(zone))) {
		efs_http_reply_err(req, EFS_HTTP_E_INVALID_FIELD,
				   "zone must be at most %d characters of [A-Za-z0-9._-]",
				   EFS_ZONE_MAX);
		goto out;
	}
	if (r < 0)
		zone = "";
	if (read_capacity(body, &capacity, &free_bytes, &chunk_count, why, sizeof(why)) < 0) {
		efs_http_reply_err(req, EFS_HTTP_E_INVALID_FIELD, "%s", why);
		goto out;
	}
	r = efs_registry_register(&m->registry, with_id ? worker_id : NULL, url, zone, capacity,
				  free_bytes, chunk_count, id);
	if (r < 0) {
		efs_http_reply_errno(req, EFS_HTTP_OP_META, r, NULL);
		goto out;
	}
	char grpc[300];
	json_t *answer = json_pack("{s:s, s:I, s:s}", "worker_id", id, "heartbeat_interval_ms",
				   (json_int_t)m->cfg.heartbeat_interval_ms, "cluster_id",
				   efs_meta_cluster_id(m->meta));
	/* Where this master's control plane listens (absent: GRPC_PORT=0). */
	if (grpc_url(req, m, grpc, sizeof(grpc)))
		json_object_set_new(answer, "grpc_url", json_string(grpc));
	efs_http_reply_json(req, 200, answer);
out:
	json_decref(body);
	return 0;
}

int efs_api_worker_heartbeat(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	const char *worker_id = efs_http_param(req, "workerId");
	uint64_t capacity, free_bytes, chunk_count;
	char why[EFS_HTTP_JSON_WHY_MAX];
	bool rejoined = false;
	json_t *body;
	int r;

	if (!efs_id_valid(worker_id))
		return efs_http_reply_err(req, EFS_HTTP_E_INVALID_WORKER_ID,
					  "worker id must be 1-64 characters of [A-Za-z0-9_-]");
	if (refuse_other_cluster(req, m, worker_id))
		return 0;
	if ((r = efs_http_body_json(req, &body, why)) < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_JSON_BODY, r, why);
	if (read_capacity(body, &capacity, &free_bytes, &chunk_count, why, sizeof(why)) < 0)
		efs_http_reply_err(req, EFS_HTTP_E_INVALID_FIELD, "%s", why);
	else if ((r = efs_registry_heartbeat(&m->registry, worker_id, capacity, free_bytes,
					     chunk_count, &rejoined)) < 0)
		efs_http_reply_errno(req, EFS_HTTP_OP_WORKER, r, worker_id);
	else
		/* Back from a partition without a restart (logged by the
		 * registry): what it holds may have been repaired elsewhere or
		 * deleted meanwhile; its full report removes the surplus now
		 * rather than at its next REPORT_INTERVAL_MS
		 * (docs/OPERATIONS.md#failure-model). */
		efs_http_reply_json(req, 200,
				    json_pack("{s:s, s:I, s:s, s:b}", "status", "ok",
					      "heartbeat_interval_ms",
					      (json_int_t)m->cfg.heartbeat_interval_ms, "cluster_id",
					      efs_meta_cluster_id(m->meta), "full_report", rejoined));
	json_decref(body);
	return 0;
}

/* GET /api/v1/workers - every worker with its URL and capacity: the
 * cluster's topology (403 operators_only for a plain user when
 * TOPOLOGY_VISIBLE_TO=operators). */
int efs_api_worker_list(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	struct efs_worker_status *list;
	size_t n;
	char when[EFS_ISO8601_LEN];

	if (efs_api_refuse_topology(req, "the worker list"))
		return 0;
	int r = efs_registry_list(&m->registry, &list, &n);
	if (r < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_META, r, NULL);
	json_t *workers = json_array();
	for (size_t i = 0; i < n; i++) {
		const struct efs_worker_info *w = &list[i].info;
		/* This master's view: marked slow after a transfer it gave up
		 * on for slowness, for SLOW_WORKER_AVOID_MS. */
		int64_t slow_ms = efs_placement_slow_for_ms(&m->placement, w->worker_id);
		json_array_append_new(
			workers,
			json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:b, s:I, s:s}",
				  "worker_id", w->worker_id, "url", w->url, "zone", w->zone, "status",
				  list[i].alive ? "alive" : "dead", "last_heartbeat",
				  efs_iso8601(w->last_heartbeat_ms, when), "capacity_bytes",
				  (json_int_t)w->capacity_bytes, "free_bytes",
				  (json_int_t)w->free_bytes, "chunk_count",
				  (json_int_t)w->chunk_count, "slow", slow_ms > 0, "slow_for_ms",
				  (json_int_t)slow_ms, "protocol",
				  efs_control_streaming(&m->control, w->worker_id) ? "grpc"
										   : "http"));
	}
	free(list);
	return efs_http_reply_json(req, 200, json_pack("{s:o}", "workers", workers));
}

int efs_api_report_parse(const json_t *body, struct efs_report_body *out, char *why,
			 size_t why_size)
{
	const json_t *chunks = json_object_get(body, "chunks");
	const json_t *lost = json_object_get(body, "lost");
	const json_t *item;
	uint64_t started = 0, worker_now = 0, master_started = 0, lost_after = 0;
	size_t n, i;

	if (efs_json_u64(body, "started_at_ms", &started) < 0 ||
	    efs_json_u64(body, "now_ms", &worker_now) < 0 || started > INT64_MAX ||
	    worker_now > INT64_MAX ||
	    efs_json_u64(body, "master_started_ms", &master_started) == -EINVAL ||
	    efs_json_u64(body, "lost_checked_after_ms", &lost_after) == -EINVAL ||
	    (chunks && !json_is_array(chunks)) ||
	    (lost && !json_is_array(lost))) {
		snprintf(why, why_size, "a report needs started_at_ms, now_ms, and arrays chunks/lost");
		return -EINVAL;
	}
	n = chunks ? json_array_size(chunks) : 0;
	struct efs_report_entry *entries = calloc(n ? n : 1, sizeof(*entries));
	if (!entries)
		return -ENOMEM;
	json_array_foreach(chunks, i, item)
	{
		const char *id = json_string_value(json_array_get(item, 0));
		const json_t *mtime = json_array_get(item, 1);
		if (!efs_chunk_id_valid(id) || !json_is_integer(mtime)) {
			snprintf(why, why_size, "chunks[%zu] must be [\"<64 hex>\", mtime_ms]", i);
			free(entries);
			return -EINVAL;
		}
		efs_strlcpy(entries[i].chunk_id, id, sizeof(entries[i].chunk_id));
		entries[i].mtime_ms = (int64_t)json_integer_value(mtime);
	}
	out->started_ms = (int64_t)started;
	out->worker_now_ms = (int64_t)worker_now;
	out->master_started_ms = master_started;
	out->entries = entries;
	out->count = n;
	out->lost = lost;
	out->lost_checked_after_ms = lost_after;
	out->last = json_is_true(json_object_get(body, "last"));
	return 0;
}

/* At most this many copies of one report batch kept for a write under way
 * are handed to the late-write watch; any more wait for the next report
 * (uploads pin only the chunks they are writing: a handful). */
#define WITHHELD_MAX 64

/* Hands the copies of @worker_id a report's verdicts said to delete, kept
 * because this master is writing those chunks right now, to the
 * late-write watch (late_writes.h): no row names them, and the next full
 * report may be an hour away. */
static void watch_withheld(struct efs_master *m, const char *worker_id, const char *const *ids,
			   size_t count)
{
	struct efs_worker_info w;
	if (efs_meta_worker_get(m->meta, worker_id, &w) < 0)
		return; /* gone: nothing to call; a report of its next life judges */
	size_t watched = 0;
	for (size_t i = 0; i < count; i++)
		watched += efs_late_writes_note(&m->late_writes, worker_id, w.url, ids[i]);
	efs_info("worker %s report: %zu copies to delete kept for now (this master is writing "
		 "those chunks): %zu handed to the late-write watch, which deletes each once the "
		 "write is over unless a row names it or its chunk is short of good copies%s",
		 worker_id, count, watched,
		 watched < count ? "; the others wait for the worker's next full report" : "");
}

/* Whether a replica row of @chunk_id on @worker_id exists. */
static bool replica_recorded(struct efs_master *m, const char *chunk_id, const char *worker_id)
{
	struct efs_chunk_info info;
	struct efs_replica reps[EFS_MAX_REPLICAS];
	unsigned n = 0;
	if (efs_meta_chunk_get(m->meta, chunk_id, &info, reps, &n) < 0)
		return false;
	for (unsigned i = 0; i < n; i++)
		if (strcmp(reps[i].worker_id, worker_id) == 0)
			return true;
	return false;
}

/* Marks @worker_id's replicas of a batch's lost ids bad: copies its
 * scrubber quarantined, or deleted while its report listed the store.
 * With lost_checked_after_ms (the deleted ones), only rows recorded by
 * then: a later row names a copy an upload or a repair wrote again after
 * the worker found it gone, and is good (marked bad, it sent a good chunk
 * to repair, and its copy stayed on the disk beside the repair's: a bad
 * row on a chunk with enough good ones is never looked at again). Returns
 * how many lost ids have such a later row; *@marked counts the rows
 * marked. */
static unsigned mark_lost(struct efs_master *m, const char *worker_id,
			  const struct efs_report_body *rb, int64_t now, int *marked)
{
	int64_t by = rb->lost_checked_after_ms > 0
			 ? (int64_t)EFS_MIN(rb->lost_checked_after_ms, (uint64_t)now)
			 : INT64_MAX;
	unsigned later = 0;
	const json_t *item;
	size_t i;
	json_array_foreach(rb->lost, i, item)
	{
		const char *id = json_string_value(item);
		if (!efs_chunk_id_valid(id))
			continue;
		int r = efs_meta_replica_mark_lost(m->meta, id, worker_id, by);
		*marked += r > 0;
		later += r == 0 && by != INT64_MAX && replica_recorded(m, id, worker_id);
	}
	return later;
}

int efs_api_report_judge(struct efs_master *m, const char *worker_id,
			 const struct efs_report_body *rb_in, struct efs_report_verdicts *out)
{
	const struct efs_report_body rb = *rb_in;
	struct efs_report_entry *entries = rb.entries;
	size_t n = rb.count, i;
	bool *pinned = NULL; /* entries[i] was pinned before the verdicts */
	int adopted = 0, marked = 0, r;
	const char *withheld_ids[WITHHELD_MAX];
	size_t withheld = 0;

	out->del = NULL;
	efs_registry_note_contact(&m->registry, worker_id);
	/* A report under way whose snapshot follows a rejoin ask answers it:
	 * the beats stop asking now, not at its end (a long report's beats
	 * would each ask for another). A worker that sends no reading of the
	 * master's clock is done asking at its last batch, as before. */
	if (rb.master_started_ms > 0)
		efs_registry_report_begun(&m->registry, worker_id,
					  (int64_t)EFS_MIN(rb.master_started_ms,
							   (uint64_t)efs_now_ms()));
	else if (rb.last)
		efs_registry_report_done(&m->registry, worker_id);
	int64_t now = efs_now_ms();
	/* A copy written again after the worker found it gone: its next full
	 * report tells, one that begins late enough for its end to mark the
	 * row if the copy is not there (rows recorded EFS_META_SKEW_MARGIN_MS
	 * before its start). */
	int64_t lost_recheck_ms = 0;
	unsigned later = mark_lost(m, worker_id, &rb, now, &marked);
	if (later > 0) {
		lost_recheck_ms = EFS_META_SKEW_MARGIN_MS + REPORT_RECHECK_MARGIN_MS;
		efs_info("worker %s report: %u chunks it found deleted have a replica here recorded "
			 "since (written again): left good, the worker reports again within %lld ms",
			 worker_id, later, (long long)lost_recheck_ms);
	}
	if (marked > 0 && rb.lost_checked_after_ms > 0)
		efs_info("worker %s report: %d replicas of chunks deleted while its report listed "
			 "the store marked bad (recorded by %llu, the master's time before it looked)",
			 worker_id, marked, (unsigned long long)rb.lost_checked_after_ms);
	struct efs_report_context ctx = {
		.worker_id = worker_id,
		.started_ms = rb.started_ms,
		.worker_now_ms = rb.worker_now_ms,
		.orphan_grace_ms = m->cfg.orphan_grace_ms,
		.replication = m->cfg.replication_factor,
		.live_after_ms = now - m->cfg.worker_dead_after_ms,
		.now_ms = now,
		/* never later than now: a master's reading cannot be from the future */
		.master_started_ms = (int64_t)EFS_MIN(rb.master_started_ms, (uint64_t)now),
	};
	/* The pins are read BEFORE the verdicts: an upload pins, writes,
	 * records, then unpins, so a chunk not pinned now was either recorded
	 * already (the batch below sees its row) or not yet pinned (its write
	 * comes after the worker's listing and survives the worker's mtime
	 * check). Read after the batch alone, an upload that recorded and
	 * unpinned in between would lose a replica it had just reported
	 * durable. Read again after it, for uploads that pinned meanwhile. */
	if (n > 0 && !(pinned = calloc(n, sizeof(*pinned))))
		return -ENOMEM;
	for (i = 0; i < n; i++)
		pinned[i] = efs_chunk_backend_pinned(m->chunks, entries[i].chunk_id);
	if (n > 0 && (r = efs_meta_report_batch(m->meta, &ctx, entries, n)) < 0) {
		free(pinned);
		return r;
	}
	json_t *del = json_array();
	int64_t recheck_ms = 0;
	for (i = 0; i < n; i++) {
		/* A young unnamed copy of a known chunk: the worker reports
		 * again once the youngest is past the grace (a late write
		 * after a partition goes in seconds, not at the next
		 * REPORT_INTERVAL_MS). Both times are the worker's clock. */
		if (entries[i].verdict == EFS_REPORT_YOUNG) {
			int64_t age = EFS_MAX(ctx.worker_now_ms - entries[i].mtime_ms, 0);
			recheck_ms = EFS_MAX(recheck_ms,
					     ctx.orphan_grace_ms - age + REPORT_RECHECK_MARGIN_MS);
		}
		/* A copy this master is writing right now is kept, however
		 * short ORPHAN_GRACE_MS is (the age check in the verdict is
		 * what protects other masters' writes). But no row names it
		 * now (the verdict dropped a surplus replica's, or there was
		 * none), and the worker's next full report may be an hour
		 * away: the late-write watch deletes it once the write is
		 * over, unless a row names it by then (late_writes.h). */
		if (entries[i].verdict == EFS_REPORT_DELETE) {
			if (!pinned[i] && !efs_chunk_backend_pinned(m->chunks, entries[i].chunk_id))
				json_array_append_new(del, json_string(entries[i].chunk_id));
			else if (withheld < WITHHELD_MAX)
				withheld_ids[withheld++] = entries[i].chunk_id;
		}
		adopted += entries[i].verdict == EFS_REPORT_ADOPT;
	}
	if (withheld > 0)
		watch_withheld(m, worker_id, withheld_ids, withheld);
	if (rb.last) {
		r = efs_meta_report_finish(m->meta, &ctx);
		if (r > 0)
			efs_warn("worker %s no longer holds %d replicas it should: marked bad for "
				 "repair",
				 worker_id, r);
		if (r < 0) {
			json_decref(del);
			free(pinned);
			return r;
		}
	}
	if (adopted || json_array_size(del) || marked)
		efs_info("worker %s report: %zu chunks, %d adopted again, %zu to delete, %d "
			 "replicas marked bad (lost)",
			 worker_id, n, adopted, json_array_size(del), marked);
	free(pinned);
	out->del = del;
	out->adopted = adopted;
	out->marked = marked;
	out->again_in_ms = EFS_MAX(
	    recheck_ms > 0 ? EFS_MIN(recheck_ms, ctx.orphan_grace_ms + REPORT_RECHECK_MARGIN_MS) : 0,
	    lost_recheck_ms);
	return 0;
}

/* POST /api/v1/workers/{workerId}/report - a worker's list of the chunks
 * it holds (in batches), and the chunks its scrubber found corrupt:
 *
 *   {"started_at_ms": T, "now_ms": N, "master_started_ms": M,
 *    "chunks": [["<id>", mtime_ms], ...], "last": true, "lost": ["<id>", ...]}
 *
 * Answers {"delete": [ids], "adopted": n, "lost_marked": n, "now_ms": this
 * master's clock}: the worker deletes the listed chunks unless it wrote
 * them after T. With "report_again_in_ms": D (at most ORPHAN_GRACE_MS +
 * REPORT_RECHECK_MARGIN_MS) some listed copies were kept only for their
 * youth (EFS_REPORT_YOUNG): the worker sends its next full report within D. A full report begins
 * with a request listing nothing; the worker takes its snapshot after the answer and sends that
 * answer's now_ms back as M, so the end of the report compares master times with master times (T
 * and N are the worker's clock). */
int efs_api_worker_report(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	const char *worker_id = efs_http_param(req, "workerId");
	struct efs_worker_info w;
	struct efs_report_body rb = {0};
	struct efs_report_entry *entries = NULL;
	struct efs_report_verdicts v = {0};
	json_t *body;
	int r;
	char why[EFS_HTTP_JSON_WHY_MAX];

	if (!efs_id_valid(worker_id))
		return efs_http_reply_err(req, EFS_HTTP_E_INVALID_WORKER_ID,
					  "worker id must be 1-64 characters of [A-Za-z0-9_-]");
	if (refuse_other_cluster(req, m, worker_id))
		return 0;
	if ((r = efs_http_body_json(req, &body, why)) < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_JSON_BODY, r, why);
	r = efs_meta_worker_get(m->meta, worker_id, &w);
	if (r < 0) {
		efs_http_reply_errno(req, EFS_HTTP_OP_WORKER, r, worker_id);
		goto out;
	}
	r = efs_api_report_parse(body, &rb, why, sizeof(why));
	if (r == -EINVAL) {
		efs_http_reply_err(req, EFS_HTTP_E_INVALID_REPORT, "%s", why);
		goto out;
	}
	if (r < 0)
		goto out;
	entries = rb.entries;
	r = efs_api_report_judge(m, worker_id, &rb, &v);
	if (r < 0) {
		efs_http_reply_errno(req, EFS_HTTP_OP_META, r, NULL);
		goto out;
	}
	json_t *answer = json_pack("{s:o, s:i, s:i, s:I}", "delete", v.del, "adopted", v.adopted,
				   "lost_marked", v.marked, "now_ms", (json_int_t)efs_now_ms());
	if (v.again_in_ms > 0)
		json_object_set_new(answer, "report_again_in_ms",
				    json_integer((json_int_t)v.again_in_ms));
	efs_http_reply_json(req, 200, answer);
out:
	free(entries);
	json_decref(body);
	return r < 0 && !efs_http_replied(req) ? r : 0;
}
