/* SPDX-License-Identifier: MIT */
/* api.c - the worker's HTTP handlers. */
#include "worker/api.h"
#include "echofs/auth.h"
#include "echofs/chunk_batch.h"
#include "echofs/hash.h"
#include "echofs/log.h"
#include "echofs/util.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

int efs_worker_api_health(struct efs_http_req *req)
{
	struct efs_worker *w = efs_http_ctx(req);
	struct efs_worker_space space = {0};
	char id[EFS_ID_MAX + 1];
	bool registered;

	char cluster[EFS_CLUSTER_ID_LEN + 1];

	efs_worker_ctx_status(&w->ctx, id, &registered);
	efs_worker_ctx_cluster(&w->ctx, cluster);
	int r = efs_worker_space(w, &space);
	return efs_http_reply_json(
		req, 200,
		json_pack("{s:s, s:s?, s:s?, s:b, s:s, s:I, s:I, s:I}", "status",
			  r == 0 ? "ok" : "degraded", "worker_id", id[0] ? id : NULL, "cluster_id",
			  cluster[0] ? cluster : NULL, "registered", registered, "url",
			  w->cfg.advertise_url, "capacity_bytes", (json_int_t)space.capacity_bytes,
			  "free_bytes", (json_int_t)space.free_bytes, "chunk_count",
			  (json_int_t)space.chunk_count));
}

/* The scrape-time families: the store, the disk and the scrubber. */
static int scrape(struct efs_worker *w, struct efs_metrics *reg)
{
	struct efs_worker_space space = {0};
	struct efs_store_stats stats;
	char id[EFS_ID_MAX + 1];
	bool registered;

	efs_worker_ctx_status(&w->ctx, id, &registered);
	efs_store_stats(w->store, &stats);
	int space_error = efs_worker_space(w, &space);
	const struct {
		enum efs_metric_type type;
		const char *name, *help;
		double value;
		bool present;
	} values[] = {
		{EFS_METRIC_GAUGE, "echofs_worker_registered",
		 "1 when the master has accepted this worker's registration, else 0.", registered,
		 true},
		{EFS_METRIC_GAUGE, "echofs_store_chunks", "Chunks stored on this worker.",
		 (double)stats.chunk_count, true},
		{EFS_METRIC_GAUGE, "echofs_store_bytes",
		 "Payload bytes stored (as stored: compressed or not), with writes in flight.",
		 (double)stats.bytes, true},
		{EFS_METRIC_GAUGE, "echofs_store_capacity_bytes",
		 "Capacity: WORKER_CAPACITY_BYTES, or the size of the file system.",
		 (double)space.capacity_bytes, space_error == 0},
		{EFS_METRIC_GAUGE, "echofs_store_free_bytes",
		 "Space left for chunks, as reported to the master.", (double)space.free_bytes,
		 space_error == 0},
		{EFS_METRIC_COUNTER, "echofs_scrub_passes_total",
		 "Complete scrub passes over every stored chunk.",
		 (double)atomic_load(&w->scrub.passes), true},
		{EFS_METRIC_COUNTER, "echofs_scrub_chunks_checked_total",
		 "Chunks the scrubber has re-read and verified.",
		 (double)atomic_load(&w->scrub.chunks_checked), true},
		{EFS_METRIC_COUNTER, "echofs_scrub_corrupt_chunks_total",
		 "Chunks the scrubber found corrupt (quarantined and reported).",
		 (double)atomic_load(&w->scrub.corrupt_found), true},
		{EFS_METRIC_COUNTER, "echofs_worker_chunk_bytes_sent_from_file_total",
		 "Chunk payload bytes GET /chunks sent straight from the volume file (sendfile, "
		 "after verifying them): chunks of WORKER_SENDFILE_MIN_BYTES or more over plain "
		 "HTTP; 0 while that is 0 (the default).",
		 (double)atomic_load(&w->chunk_bytes_sent_from_file), true},
		{EFS_METRIC_COUNTER, "echofs_worker_batch_requests_total",
		 "POST /chunks/batch requests (several small chunks under one group commit) "
		 "this worker parsed and stored.",
		 (double)atomic_load(&w->batch_requests), true},
		{EFS_METRIC_COUNTER, "echofs_worker_batch_items_total",
		 "Chunks those batch requests held (each stored, or refused on its own).",
		 (double)atomic_load(&w->batch_items), true},
		{EFS_METRIC_GAUGE, "echofs_worker_grpc_connected",
		 "1 while this worker beats on a gRPC control stream to its master, 0 over HTTP.",
		 (double)atomic_load(&w->heartbeat.streaming), true},
		{EFS_METRIC_COUNTER, "echofs_worker_pushed_deletes_total",
		 "Chunk deletes the master pushed on the control stream that this worker carried "
		 "out.",
		 (double)atomic_load(&w->heartbeat.copier.deleted), true},
		{EFS_METRIC_COUNTER, "echofs_worker_pushed_copies_total",
		 "Repair copies the master pushed on the control stream that this worker fetched, "
		 "verified and stored.",
		 (double)atomic_load(&w->heartbeat.copier.stored), true},
		{EFS_METRIC_COUNTER, "echofs_worker_pushed_copies_held_total",
		 "Repair copies pushed on the control stream for a chunk this worker held "
		 "already: answered 204, nothing fetched.",
		 (double)atomic_load(&w->heartbeat.copier.held), true},
		{EFS_METRIC_COUNTER, "echofs_worker_pushed_copies_busy_total",
		 "Repair copies pushed on the control stream refused busy (503): the copy queue "
		 "was full; the master writes them over HTTP.",
		 (double)atomic_load(&w->heartbeat.copier.refused), true},
		{EFS_METRIC_COUNTER, "echofs_worker_pushed_copies_expired_total",
		 "Repair copies pushed on the control stream answered 504: their deadline "
		 "(shorter than the master's wait) passed before they were stored.",
		 (double)atomic_load(&w->heartbeat.copier.expired), true},
		{EFS_METRIC_COUNTER, "echofs_worker_pushed_deletes_busy_total",
		 "Chunk deletes pushed on the control stream refused busy (503): the delete "
		 "queue was full; the master deletes them over HTTP.",
		 (double)atomic_load(&w->heartbeat.copier.deletes_refused), true},
		{EFS_METRIC_GAUGE, "echofs_worker_pushed_copies_pending",
		 "Repair copies pushed on the control stream now waiting or under way (off the "
		 "heartbeat thread).",
		 (double)atomic_load(&w->heartbeat.copier.running), true},
		{EFS_METRIC_COUNTER, "echofs_worker_chunk_deltas_total",
		 "Chunk deltas (corrupt and deleted chunks) sent up the gRPC control stream.",
		 (double)atomic_load(&w->heartbeat.deltas_sent), true},
		{EFS_METRIC_COUNTER, "echofs_worker_report_batches_total",
		 "Chunk report batches (full and lost-chunk reports) the master answered.",
		 (double)atomic_load(&w->report.batches_answered), true},
		{EFS_METRIC_COUNTER, "echofs_worker_report_batches_resent_total",
		 "Chunk report batches sent again after a failed exchange (a timeout, a lost "
		 "answer, a broken gRPC call): the report resumed at that batch.",
		 (double)atomic_load(&w->report.batches_resent), true},
		{EFS_METRIC_COUNTER, "echofs_worker_full_reports_failed_total",
		 "Full chunk reports given up (a batch failed every attempt): each starts over "
		 "later.",
		 (double)atomic_load(&w->report.reports_failed), true},
		{EFS_METRIC_GAUGE, "echofs_worker_lease_epoch",
		 "The newest lease epoch a master's background duty has sent (0: none yet).",
		 (double)efs_fence_newest(&w->fence), true},
		{EFS_METRIC_COUNTER, "echofs_worker_fenced_total",
		 "Background duties' instructions refused: their lease epoch was older than the "
		 "newest seen.",
		 (double)atomic_load(&w->fence.refused), true},
	};
	int r = 0;
	for (size_t i = 0; r == 0 && i < EFS_ARRAY_SIZE(values); i++)
		if (values[i].present)
			r = efs_metrics_put(reg, values[i].type, values[i].name, values[i].help,
					    values[i].value);
	return r;
}

/* No credentials by default; with TOPOLOGY_VISIBLE_TO=operators the
 * worker's capacity and chunk figures are an operator's, and a worker
 * knows only the cluster secret (it has no JWT_SECRET): 401 without it. */
int efs_worker_api_metrics(struct efs_http_req *req)
{
	struct efs_worker *w = efs_http_ctx(req);
	struct efs_metrics *now = NULL;

	if (w->cfg.topology == EFS_TOPOLOGY_OPERATORS) {
		int a = efs_auth_check(req, EFS_AUTH_CLUSTER, &w->keys);
		if (a < 0 || efs_http_replied(req))
			return a < 0 ? a : 0;
	}
	int r = efs_metrics_new(&now);
	if (r == 0)
		r = scrape(w, now);
	if (r == 0) {
		struct efs_metrics *const regs[] = {w->metrics, now};
		r = efs_http_reply_metrics(req, regs, EFS_ARRAY_SIZE(regs));
	}
	efs_metrics_free(now);
	return r;
}

/* The path's chunk id, or NULL when it is not a valid one. */
static const char *chunk_id_param(struct efs_http_req *req)
{
	const char *id = efs_http_param(req, "chunkId");
	return efs_chunk_id_valid(id) ? id : NULL;
}

/* A master of another cluster gets 409 wrong_cluster on every chunk call,
 * and above all never deletes here. True when refused (and answered). */
static bool refuse_other_cluster(struct efs_http_req *req, struct efs_worker *w)
{
	const char *theirs = efs_http_header(req, EFS_HDR_CLUSTER);
	if (efs_worker_ctx_cluster_ok(&w->ctx, theirs))
		return false;
	char ours[EFS_CLUSTER_ID_LEN + 1];
	efs_worker_ctx_cluster(&w->ctx, ours);
	if (!efs_cluster_id_valid(theirs))
		theirs = "(malformed)";
	efs_warn("%s %s from a master of cluster %s refused: this worker's data belongs to "
		 "cluster %s; nothing changed",
		 req->method, req->path, theirs, ours);
	if (strcmp(req->method, "HEAD") == 0)
		efs_http_reply_empty(req, efs_http_error_kind(EFS_HTTP_E_WRONG_CLUSTER)->status);
	else
		efs_http_reply_err_extra(req, EFS_HTTP_E_WRONG_CLUSTER,
					 json_pack("{s:s}", "cluster_id", ours),
					 "this worker's data belongs to cluster %s, not %s", ours,
					 theirs);
	return true;
}

/* A background duty's instruction (EFS_HDR_LEASE_EPOCH) is admitted only
 * if its lease epoch is not older than the newest seen here (fence.h); a
 * call without the header (an upload's replica write, a tool) is not a
 * duty's and is not checked. True when refused (and answered). */
static bool refuse_stale_epoch(struct efs_http_req *req, struct efs_worker *w,
			       enum efs_http_op op)
{
	const char *text = efs_http_header(req, EFS_HDR_LEASE_EPOCH);
	uint64_t epoch = 0;
	if (!text)
		return false;
	if (efs_parse_u64(text, false, &epoch) < 0 || epoch == 0) {
		efs_http_reply_err(req, EFS_HTTP_E_INVALID_HEADER,
				   EFS_HDR_LEASE_EPOCH " must be an integer of at least 1");
		return true;
	}
	int r = efs_fence_admit(&w->fence, epoch);
	if (r == 0)
		return false;
	if (r != -ESTALE) {
		efs_error("cannot record lease epoch %llu in %s: %s; %s %s refused",
			  (unsigned long long)epoch, w->fence.path, strerror(-r), req->method,
			  req->path);
		efs_http_reply_errno(req, op, r, efs_http_param(req, "chunkId"));
		return true;
	}
	uint64_t newest = efs_fence_newest(&w->fence);
	efs_warn("%s %s refused: lease epoch %llu is older than %llu, the newest seen (a master "
		 "that lost the lease for background duties); nothing changed",
		 req->method, req->path, (unsigned long long)epoch, (unsigned long long)newest);
	efs_http_reply_err_extra(req, EFS_HTTP_E_STALE_LEASE_EPOCH,
				 json_pack("{s:I}", "lease_epoch", (json_int_t)newest),
				 "lease epoch %llu is older than %llu, the newest this worker has "
				 "seen: another master holds the lease now",
				 (unsigned long long)epoch, (unsigned long long)newest);
	return true;
}

static int reply_invalid_chunk_id(struct efs_http_req *req)
{
	return efs_http_reply_err(req, EFS_HTTP_E_INVALID_CHUNK_ID,
				  "a chunk id is 64 lowercase hex digits (SHA-256)");
}

/* A chunk write whose body stopped for this long was very likely given
 * up by the master (chunk_io.c gives up after 3 s without progress) and
 * finished only now, a healed link delivering what it held: a copy no
 * replica row names. */
#define STALLED_WRITE_MS 3000

/* A chunk upload under way: the store's writer and how its body arrived. */
struct chunk_put {
	struct efs_store_writer *writer;
	int64_t last_data_ms;	 /* efs_mono_ms() of the headers or the last body bytes */
	int64_t longest_gap_ms; /* the longest wait for body bytes */
	/* Parked for its group commit (event-thread server): the store calls
	 * back through waiter, which answers and resumes req. */
	struct efs_store_waiter waiter;
	struct efs_http_req *req;
	int64_t gap_ms;
};

static void writer_free(void *state)
{
	struct chunk_put *put = state;
	if (!put)
		return;
	efs_store_write_abort(put->writer);
	free(put);
}

int efs_worker_api_chunk_put_begin(struct efs_http_req *req)
{
	struct efs_worker *w = efs_http_ctx(req);
	struct efs_store_writer *writer;
	const char *id = chunk_id_param(req);
	const char *enc = efs_http_header(req, EFS_HDR_ENCODING);
	uint32_t flags = 0;

	if (refuse_other_cluster(req, w))
		return 0;
	if (!id)
		return reply_invalid_chunk_id(req);
	if (refuse_stale_epoch(req, w, EFS_HTTP_OP_CHUNK_WRITE))
		return 0;
	if (enc && strcmp(enc, "gzip") == 0)
		flags = EFS_STORE_GZIP;
	else if (enc && strcmp(enc, "identity") != 0)
		return efs_http_reply_err(req, EFS_HTTP_E_INVALID_ENCODING,
					  EFS_HDR_ENCODING " must be gzip or identity");
	if (req->content_length < 0)
		return efs_http_reply_err(req, EFS_HTTP_E_LENGTH_REQUIRED,
					  "a chunk upload needs a Content-Length");
	if (req->content_length > EFS_STORE_MAX_CHUNK)
		return efs_http_reply_err(req, EFS_HTTP_E_CHUNK_TOO_LARGE,
					  "a chunk holds at most %d bytes", EFS_STORE_MAX_CHUNK);
	struct chunk_put *put = calloc(1, sizeof(*put));
	if (!put)
		return efs_http_reply_errno(req, EFS_HTTP_OP_CHUNK_WRITE, -ENOMEM, id);
	int r = efs_store_write_begin(w->store, id, (uint64_t)req->content_length, flags, &writer);
	if (r < 0) {
		free(put);
		return efs_http_reply_errno(req, EFS_HTTP_OP_CHUNK_WRITE, r, id);
	}
	put->writer = writer;
	put->last_data_ms = efs_mono_ms();
	req->state = put;
	req->state_free = writer_free;
	return 0;
}

int efs_worker_api_chunk_put_body(struct efs_http_req *req, const char *data, size_t len)
{
	struct chunk_put *put = req->state;
	int64_t now = efs_mono_ms();
	put->longest_gap_ms = EFS_MAX(put->longest_gap_ms, now - put->last_data_ms);
	put->last_data_ms = now;
	int r = efs_store_write(put->writer, data, len);
	if (r < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_CHUNK_WRITE, r,
					    efs_http_param(req, "chunkId"));
	return 0;
}

/* The answer to a chunk upload once its commit is over (@r: its result). */
static int chunk_put_reply(struct efs_http_req *req, struct chunk_put *put, int r)
{
	struct efs_worker *w = efs_http_ctx(req);
	if (r < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_CHUNK_WRITE, r,
					    efs_http_param(req, "chunkId"));
	/* Stored after a long stall: the master probably wrote it elsewhere
	 * meanwhile. A full report soon lets it judge the copy (kept while
	 * younger than its orphan grace, then deleted by the report it asks
	 * for), instead of at REPORT_INTERVAL_MS. */
	if (put->gap_ms >= STALLED_WRITE_MS && !atomic_exchange(&w->ctx.full_report_due, true))
		efs_warn("chunk %.12s stored after its upload stalled for %lld ms (given up by "
			 "the master?): sending a full chunk report",
			 efs_http_param(req, "chunkId"), (long long)put->gap_ms);
	return efs_http_reply_json(req, 201,
				   json_pack("{s:s, s:I}", "chunk_id", efs_http_param(req, "chunkId"),
					     "size", (json_int_t)req->content_length));
}

/* The store's call once a parked upload's commit is durable or failed:
 * on the committer thread, or on the event thread when it failed at once. */
static void chunk_put_durable(struct efs_store_waiter *waiter, int result)
{
	struct chunk_put *put = (struct chunk_put *)((char *)waiter - offsetof(struct chunk_put, waiter));
	struct efs_http_req *req = put->req;
	int r = chunk_put_reply(req, put, result);
	if (r < 0 && !efs_http_replied(req)) /* out of memory: the wrapper's 500 */
		efs_warn("chunk %.12s: cannot build the reply: %s", efs_http_param(req, "chunkId"),
			 strerror(-r));
	efs_http_resume(req);
}

int efs_worker_api_chunk_put(struct efs_http_req *req)
{
	struct chunk_put *put = req->state;
	struct efs_store_writer *writer = put->writer;
	const char *crc_hex = efs_http_header(req, EFS_HDR_CRC32C);
	uint32_t crc = 0;

	if (crc_hex) {
		size_t n = strlen(crc_hex);
		if (n != 8 || strspn(crc_hex, "0123456789abcdefABCDEF") != n)
			return efs_http_reply_err(req, EFS_HTTP_E_INVALID_CHECKSUM,
						  EFS_HDR_CRC32C " must be 8 hex digits");
		crc = (uint32_t)strtoul(crc_hex, NULL, 16);
	}
	put->gap_ms = EFS_MAX(put->longest_gap_ms, efs_mono_ms() - put->last_data_ms);
	put->writer = NULL; /* commit frees the writer whatever happens */
	/* On an event thread the wait for the group commit's fdatasync must
	 * not hold the thread: park the request, the committer answers. */
	if (efs_http_defer(req) == 0) {
		put->req = req;
		put->waiter.done = chunk_put_durable;
		efs_store_write_commit_async(writer, crc_hex != NULL, crc, &put->waiter);
		return 0;
	}
	return chunk_put_reply(req, put, efs_store_write_commit(writer, crc_hex != NULL, crc));
}

/* A batched write under way: each item's result, then the wait for the
 * one group commit that covers every item stored. */
struct chunk_batch {
	struct efs_store_waiter waiter; /* parked for the commit (event threads) */
	struct efs_http_req *req;
	size_t count;
	int results[EFS_CHUNK_BATCH_MAX_ITEMS]; /* 0 stored, or the store's -errno */
	char ids[EFS_CHUNK_BATCH_MAX_ITEMS][65]; /* for the log of refusals */
};

/* {"items": [{"status": 201} | {"status": N, "error": {"code", "message"}}, ...]}
 * in item order, @synced the group commit's result: a stored item is 201
 * only when it is durable, as the single PUT's reply. */
static int chunk_batch_reply(struct efs_http_req *req, struct chunk_batch *b, int synced)
{
	json_t *items = json_array();
	size_t refused = 0, first = 0;
	unsigned first_status = 0;
	char first_message[256] = "";
	if (!items)
		return -ENOMEM;
	for (size_t i = 0; i < b->count; i++) {
		int r = b->results[i] < 0 ? b->results[i] : synced;
		json_t *item;
		if (r == 0) {
			item = json_pack("{s:i}", "status", 201);
		} else {
			const struct efs_http_errno_rule *rule =
			    efs_http_errno_rule(EFS_HTTP_OP_CHUNK_WRITE, r);
			const struct efs_http_error_kind *kind = efs_http_error_kind(rule->kind);
			char message[256];
			efs_http_errno_message(rule, r, "", message, sizeof(message));
			item = json_pack("{s:i, s:{s:s, s:s}}", "status", (int)kind->status, "error",
					 "code", kind->code, "message", message);
			if (refused++ == 0) {
				first = i;
				first_status = kind->status;
				efs_strlcpy(first_message, message, sizeof(first_message));
			}
		}
		if (!item || json_array_append_new(items, item) < 0) {
			json_decref(items);
			return -ENOMEM;
		}
	}
	/* The access log shows the batch's 200: what it refused is said here,
	 * as a refused single PUT's status is there. */
	if (refused > 0)
		efs_warn("chunk batch: %zu of %zu chunks refused (the first, chunk %.12s: %u %s)",
			 refused, b->count, b->ids[first], first_status, first_message);
	return efs_http_reply_json(req, 200, json_pack("{s:o}", "items", items));
}

static void chunk_batch_durable(struct efs_store_waiter *waiter, int result)
{
	struct chunk_batch *b =
	    (struct chunk_batch *)((char *)waiter - offsetof(struct chunk_batch, waiter));
	struct efs_http_req *req = b->req;
	int r = chunk_batch_reply(req, b, result);
	if (r < 0 && !efs_http_replied(req))
		efs_warn("chunk batch: cannot build the reply: %s", strerror(-r));
	efs_http_resume(req);
}

int efs_worker_api_chunk_batch(struct efs_http_req *req)
{
	struct efs_worker *w = efs_http_ctx(req);
	struct efs_chunk_batch_item items[EFS_CHUNK_BATCH_MAX_ITEMS];
	char why[160];
	size_t count = 0;
	uint64_t ticket = 0;
	bool stored = false;

	if (!w->cfg.batch_writes)
		return efs_http_reply_err(req, EFS_HTTP_E_NOT_FOUND,
					  "batched writes are off on this worker "
					  "(WORKER_BATCH_WRITES=0): use PUT /chunks/{id}");
	if (refuse_other_cluster(req, w))
		return 0;
	if (refuse_stale_epoch(req, w, EFS_HTTP_OP_CHUNK_WRITE))
		return 0;
	int r = efs_chunk_batch_parse(req->body.data, req->body.len, items, &count, why,
				      sizeof(why));
	if (r < 0)
		return efs_http_reply_err(req, EFS_HTTP_E_INVALID_BATCH, "malformed batch: %s", why);
	struct chunk_batch *b = calloc(1, sizeof(*b));
	if (!b)
		return efs_http_reply_errno(req, EFS_HTTP_OP_CHUNK_WRITE, -ENOMEM, "");
	req->state = b;
	req->state_free = free;
	b->count = count;
	atomic_fetch_add(&w->batch_requests, 1);
	atomic_fetch_add(&w->batch_items, count);
	/* Each item as a single PUT would store it (an existing id is
	 * rewritten, its write time refreshed); none waits for its sync. */
	for (size_t i = 0; i < count; i++) {
		uint64_t t = 0;
		efs_strlcpy(b->ids[i], items[i].chunk_id, sizeof(b->ids[i]));
		b->results[i] = efs_store_put_nowait(
		    w->store, items[i].chunk_id, items[i].payload, items[i].length,
		    (items[i].flags & EFS_CHUNK_BATCH_GZIP) ? EFS_STORE_GZIP : 0,
		    (items[i].flags & EFS_CHUNK_BATCH_CRC) != 0, items[i].crc, &t);
		if (b->results[i] == 0) {
			ticket = EFS_MAX(ticket, t);
			stored = true;
		}
	}
	if (!stored)
		return chunk_batch_reply(req, b, 0);
	/* One wait for the newest ticket covers every item stored above. */
	if (efs_http_defer(req) == 0) {
		b->req = req;
		b->waiter.done = chunk_batch_durable;
		efs_store_wait_async(w->store, ticket, &b->waiter);
		return 0;
	}
	return chunk_batch_reply(req, b, efs_store_wait(w->store, ticket));
}

static void add_chunk_headers(struct efs_http_req *req, uint32_t flags, uint32_t crc, bool with_crc)
{
	char hex[9];
	efs_http_add_header(req, EFS_HDR_ENCODING, (flags & EFS_STORE_GZIP) ? "gzip" : "identity");
	if (with_crc) {
		snprintf(hex, sizeof(hex), "%08x", crc);
		efs_http_add_header(req, EFS_HDR_CRC32C, hex);
	}
}

int efs_worker_api_chunk_get(struct efs_http_req *req)
{
	struct efs_worker *w = efs_http_ctx(req);
	const char *id = chunk_id_param(req);
	struct efs_store_payload payload;
	struct efs_buf data;

	if (refuse_other_cluster(req, w))
		return 0;
	if (!id)
		return reply_invalid_chunk_id(req);
	/* With WORKER_SENDFILE_MIN_BYTES a large chunk is verified through a
	 * small buffer and sent from the volume file. Not over TLS: the bytes
	 * would be read again to be encrypted; they are sent from the buffer
	 * they were verified in. */
	uint64_t by_fd_min = w->cfg.sendfile_min_bytes > 0 && efs_http_sends_files(req)
				     ? w->cfg.sendfile_min_bytes
				     : UINT64_MAX;
	efs_buf_init(&data, EFS_STORE_MAX_CHUNK);
	int r = efs_store_get_payload(w->store, id, by_fd_min, &data, &payload);
	if (r < 0) {
		/* A corrupt chunk is quarantined by the store, and logged as
		 * chunk_corrupt here. */
		r = efs_http_reply_errno(req, EFS_HTTP_OP_CHUNK_READ, r, id);
	} else {
		/* The CRC the store just checked the payload against. */
		add_chunk_headers(req, payload.flags, payload.crc, true);
		if (payload.fd >= 0) {
			/* The reply takes the descriptor: the kernel sends the
			 * verified record's bytes from the page cache. */
			r = efs_http_reply_file(req, 200, "application/octet-stream", payload.fd,
						payload.offset, payload.length);
			if (r == 0)
				atomic_fetch_add(&w->chunk_bytes_sent_from_file, payload.length);
		} else {
			/* The reply takes the buffer: no second copy. */
			r = efs_http_reply_buf(req, 200, "application/octet-stream", &data, 0,
					       data.len);
		}
	}
	efs_buf_release(&data);
	return r;
}

static ssize_t no_body(void *ctx, uint64_t pos, char *out, size_t max)
{
	return -EIO; /* HEAD: never asked for */
}

int efs_worker_api_chunk_head(struct efs_http_req *req)
{
	struct efs_worker *w = efs_http_ctx(req);
	const char *id = chunk_id_param(req);
	uint64_t length;
	uint32_t flags;
	int64_t mtime;

	if (refuse_other_cluster(req, w))
		return 0;
	if (!id)
		return reply_invalid_chunk_id(req);
	int r = efs_store_stat(w->store, id, &length, &flags, &mtime);
	if (r < 0) /* HEAD: the table's status, no body */
		return efs_http_reply_empty(req, efs_http_errno_status(EFS_HTTP_OP_CHUNK_STAT, r));
	add_chunk_headers(req, flags, 0, false);
	return efs_http_reply_stream(req, 200, (int64_t)length, no_body, NULL, NULL);
}

/* A chunk delete parked for its tombstone's sync. */
struct chunk_delete {
	struct efs_store_waiter waiter;
	struct efs_http_req *req;
};

static int chunk_delete_reply(struct efs_http_req *req, int r)
{
	struct efs_worker *w = efs_http_ctx(req);
	const char *id = efs_http_param(req, "chunkId");
	if (r < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_CHUNK_DELETE, r, id);
	efs_worker_ctx_note_delete(&w->ctx, id);
	efs_debug("chunk %s deleted", id);
	return efs_http_reply_empty(req, 204);
}

static void chunk_delete_durable(struct efs_store_waiter *waiter, int result)
{
	struct chunk_delete *del =
		(struct chunk_delete *)((char *)waiter - offsetof(struct chunk_delete, waiter));
	struct efs_http_req *req = del->req;
	int r = chunk_delete_reply(req, result);
	if (r < 0 && !efs_http_replied(req))
		efs_warn("chunk %.12s: cannot build the reply: %s", efs_http_param(req, "chunkId"),
			 strerror(-r));
	efs_http_resume(req);
}

int efs_worker_api_chunk_delete(struct efs_http_req *req)
{
	struct efs_worker *w = efs_http_ctx(req);
	const char *id = chunk_id_param(req);
	const char *since = efs_http_header(req, EFS_HDR_UNMODIFIED);
	const char *unmodified_for = efs_http_header(req, EFS_HDR_UNMODIFIED_FOR);
	uint64_t since_ms = 0, for_ms = 0;
	int r;

	if (refuse_other_cluster(req, w))
		return 0;
	if (!id)
		return reply_invalid_chunk_id(req);
	if (since && (efs_parse_u64(since, false, &since_ms) < 0 || since_ms > INT64_MAX))
		return efs_http_reply_err(req, EFS_HTTP_E_INVALID_HEADER,
					  EFS_HDR_UNMODIFIED " must be Unix milliseconds");
	if (unmodified_for &&
	    (efs_parse_u64(unmodified_for, false, &for_ms) < 0 || for_ms > INT64_MAX / 2))
		return efs_http_reply_err(req, EFS_HTTP_E_INVALID_HEADER,
					  EFS_HDR_UNMODIFIED_FOR " must be milliseconds");
	if (refuse_stale_epoch(req, w, EFS_HTTP_OP_CHUNK_DELETE))
		return 0;
	/* The duration is measured on this worker's clock, against the write
	 * time this worker stamped: the collector's guard does not depend on
	 * the master's clock agreeing with ours. */
	struct chunk_delete *del = calloc(1, sizeof(*del));
	if (!del)
		return efs_http_reply_errno(req, EFS_HTTP_OP_CHUNK_DELETE, -ENOMEM, id);
	req->state = del;
	req->state_free = free;
	/* As an upload's commit: the tombstone's sync parks the request on an
	 * event-thread server. */
	if (efs_http_defer(req) == 0) {
		del->req = req;
		del->waiter.done = chunk_delete_durable;
		if (unmodified_for)
			efs_store_delete_unmodified_for_async(w->store, id, (int64_t)for_ms,
							      &del->waiter);
		else
			efs_store_delete_async(w->store, id, (int64_t)since_ms, &del->waiter);
		return 0;
	}
	if (unmodified_for)
		r = efs_store_delete_unmodified_for(w->store, id, (int64_t)for_ms);
	else
		r = efs_store_delete(w->store, id, (int64_t)since_ms);
	return chunk_delete_reply(req, r);
}
