/* SPDX-License-Identifier: MIT */
/* report.c - full chunk reports and lost-chunk reports to the master, on
 * the reporter's own thread. */
#include "worker/report.h"
#include "echofs.pb-c.h"
#include "echofs/http_client.h"
#include "echofs/log.h"
#include "echofs/rpc.h"
#include "echofs/util.h"
#include "worker/context.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* How often the report thread looks for work: a (re)registration's report
 * or queued lost chunks go out within this. */
#define REPORT_POLL_MS 200
/* A failed full report is tried again after this. */
#define REPORT_RETRY_MS 5000
/* A worker that speaks gRPC opens its control stream right after a
 * (re)registration; the full report the registration asks for waits this
 * long for it, so that it goes on the stream (judged and counted on the
 * control plane) rather than racing it over HTTP. Then HTTP: a master
 * without GRPC_PORT never gives one. */
#define REPORT_STREAM_WAIT_MS 3000
/* A report that kept copies the master said to delete (written after it
 * began) is followed by another within this: soon enough for the copy to
 * go within a minute, rarely enough that a worker under constant upload
 * churn (a few such copies in every report) does not report all the time. */
#define REPORT_KEPT_RECHECK_MS 30000

/* Chunk ids per report request to the master: bounds the request body (about
 * 100 bytes of JSON each) and the master's work per transaction. The same
 * batches go over gRPC (about 75 bytes each there, with up to EFS_LOST_MAX
 * lost ids: well under the 1 MiB message cap). */
#define REPORT_BATCH_CHUNKS 5000

#define PATH_REPORT "/echofs.v1.ControlPlane/Report"
/* Most opening a Report call or writing one batch on it may take. */
#define REPORT_GRPC_SEND_MS 10000
/* The longest slice of a wait for a verdict (the stop is checked between). */
#define REPORT_GRPC_SLICE_MS 200
/* Exchanges of one batch before the report is given up (report.h): the
 * first and this many less one resends, REPORT_BATCH_BACKOFF_MS times the
 * attempt apart (a broken gRPC call goes on over HTTP at once). */
#define REPORT_BATCH_ATTEMPTS 4
#define REPORT_BATCH_BACKOFF_MS 500

/* Moves the queued ids into a JSON array. */
static json_t *lost_take(struct efs_lost_queue *q)
{
	json_t *list = json_array();
	pthread_mutex_lock(&q->lock);
	for (size_t i = 0; i < q->count; i++)
		json_array_append_new(list, json_string(q->ids[i]));
	q->count = 0;
	pthread_mutex_unlock(&q->lock);
	return list;
}

struct report {
	struct efs_worker_ctx *ctx;
	struct efs_reporter *rp;
	int64_t started_ms;	   /* our clock, before the snapshot */
	int64_t master_started_ms; /* the master's, before the snapshot (0: unknown) */
	int64_t master_last_ms;	   /* the master's, in its last answer (0: none yet) */
	/* Sent with the lost ids when > 0: they were found gone after it
	 * (the master's clock). */
	int64_t lost_checked_after_ms;
	bool reading_start;	   /* the request whose answer gives master_started_ms */
	json_t *chunks; /* the batch being filled */
	json_t *lost;   /* sent with the next request (the first batch, or the deleted ids') */
	char path[EFS_ID_MAX + 64];
	const char *worker_id;
	/* Non-NULL: the batches go on this Report call (gRPC), else HTTP. */
	struct efs_rpc_stream *stream;
	size_t listed, deleted;
	size_t batches, resent; /* batches answered; exchanges repeated after a failure */
	size_t kept_newer; /* told to delete, but written after the report began */
	int64_t again_in_ms; /* the longest "report_again_in_ms" answered */
	int error;
};

/* True once the worker is stopping: a long report gives up between
 * requests and deletions rather than holding the shutdown. */
static bool stopping(struct efs_reporter *rp)
{
	pthread_mutex_lock(&rp->ticker.lock);
	bool stop = rp->ticker.stop;
	pthread_mutex_unlock(&rp->ticker.lock);
	return stop;
}

/* One batch as a ReportBatch on rep->stream, and its ReportReply as the
 * HTTP report's answer (*@answer: "delete", "now_ms",
 * "report_again_in_ms"). 0 or -errno (-EPIPE and the like: the caller
 * goes over HTTP). */
static int exchange_grpc(struct report *rep, const json_t *body, json_t **answer)
{
	Echofs__V1__ReportBatch b = ECHOFS__V1__REPORT_BATCH__INIT;
	const json_t *chunks = json_object_get(body, "chunks");
	const json_t *lost = json_object_get(body, "lost");
	size_t n = json_array_size(chunks), nl = json_array_size(lost), i;
	char cluster[EFS_CLUSTER_ID_LEN + 1];
	struct efs_buf in;
	uint8_t *buf = NULL;
	int r;

	Echofs__V1__ReportedChunk *items = calloc(n ? n : 1, sizeof(*items));
	Echofs__V1__ReportedChunk **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	char **lost_ids = calloc(nl ? nl : 1, sizeof(*lost_ids));
	efs_buf_init(&in, EFS_RPC_MESSAGE_MAX);
	if (!items || !ptrs || !lost_ids) {
		r = -ENOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		const json_t *c = json_array_get(chunks, i);
		echofs__v1__reported_chunk__init(&items[i]);
		items[i].chunk_id = (char *)json_string_value(json_array_get(c, 0));
		items[i].mtime_ms = (int64_t)json_integer_value(json_array_get(c, 1));
		ptrs[i] = &items[i];
	}
	for (i = 0; i < nl; i++)
		lost_ids[i] = (char *)json_string_value(json_array_get(lost, i));
	efs_worker_ctx_cluster(rep->ctx, cluster);
	b.worker_id = (char *)rep->worker_id;
	b.cluster_id = cluster;
	b.started_at_ms = (uint64_t)json_integer_value(json_object_get(body, "started_at_ms"));
	b.now_ms = (uint64_t)json_integer_value(json_object_get(body, "now_ms"));
	b.master_started_ms =
	    (uint64_t)json_integer_value(json_object_get(body, "master_started_ms"));
	b.lost_checked_after_ms =
	    (uint64_t)json_integer_value(json_object_get(body, "lost_checked_after_ms"));
	b.last = json_is_true(json_object_get(body, "last"));
	b.n_chunks = n;
	b.chunks = ptrs;
	b.n_lost = nl;
	b.lost = lost_ids;
	size_t len = echofs__v1__report_batch__get_packed_size(&b);
	if (len > EFS_RPC_MESSAGE_MAX) {
		r = -EMSGSIZE;
		goto out;
	}
	if (!(buf = malloc(len ? len : 1))) {
		r = -ENOMEM;
		goto out;
	}
	echofs__v1__report_batch__pack(&b, buf);
	if ((r = efs_rpc_stream_send(rep->stream, buf, len, REPORT_GRPC_SEND_MS)) < 0)
		goto out;
	/* The most the master may take to judge one batch, on either
	 * transport (REPORT_BATCH_TIMEOUT_MS). */
	int64_t deadline = efs_mono_ms() + rep->ctx->cfg->report_batch_timeout_ms;
	while ((r = efs_rpc_stream_recv(rep->stream, REPORT_GRPC_SLICE_MS, &in)) == 0) {
		if (stopping(rep->rp)) {
			r = -ECANCELED;
			goto out;
		}
		if (efs_mono_ms() >= deadline) {
			r = -ETIMEDOUT;
			goto out;
		}
	}
	if (r < 0)
		goto out;
	Echofs__V1__ReportReply *reply =
	    echofs__v1__report_reply__unpack(NULL, in.len, (const uint8_t *)in.data);
	if (!reply) {
		r = -EPROTO;
		goto out;
	}
	json_t *del = json_array();
	for (i = 0; i < reply->n_delete_; i++)
		json_array_append_new(del, json_string(reply->delete_[i]));
	*answer = json_pack("{s:o, s:I, s:I}", "delete", del, "now_ms",
			    (json_int_t)EFS_MIN(reply->now_ms, (uint64_t)INT64_MAX),
			    "report_again_in_ms",
			    (json_int_t)EFS_MIN(reply->report_again_in_ms, (uint64_t)INT32_MAX));
	echofs__v1__report_reply__free_unpacked(reply, NULL);
	r = *answer ? 0 : -ENOMEM;
out:
	free(buf);
	free(items);
	free(ptrs);
	free(lost_ids);
	efs_buf_release(&in);
	return r;
}

/* The progress hook of a batch's HTTP exchange: a worker that stops does
 * not wait out REPORT_BATCH_TIMEOUT_MS for the verdicts. */
static int stop_waiting(void *ctx, int64_t down_total, int64_t down_now, int64_t up_total,
			int64_t up_now)
{
	(void)down_total, (void)down_now, (void)up_total, (void)up_now;
	return stopping(ctx) ? -ECANCELED : 0;
}

/* Sends @body (a batch, borrowed) to the master on the report's transport;
 * *@answer gets the master's answer (NULL when it does not parse). 0 or
 * -errno (-ENOENT: the master does not know this worker). */
static int exchange(struct report *rep, json_t *body, json_t **answer)
{
	struct efs_http_call call;
	*answer = NULL;
	if (rep->stream)
		return exchange_grpc(rep, body, answer);
	int r = efs_worker_ctx_post_on(rep->ctx, rep->rp->http,
				       (long)rep->ctx->cfg->report_batch_timeout_ms, stop_waiting,
				       rep->rp, &call, rep->path, json_incref(body));
	if (r == 0 && call.status != 200)
		r = call.status == 404 ? -ENOENT : -EIO;
	if (r == 0)
		*answer = json_loadb(call.resp.data, call.resp.len, 0, NULL);
	efs_http_call_release(&call);
	return r;
}

static void report_stream_failed(struct efs_rpc_stream *s, int r);

/* Whether a failed exchange of a batch is worth repeating: not a stop,
 * nor a master that does not know this worker (it must register again),
 * nor a batch that can never go. */
static bool batch_retryable(int r)
{
	return r != -ECANCELED && r != -ENOENT && r != -ENOMEM && r != -EMSGSIZE;
}

/* Exchanges @body (borrowed) until the master answers, at most
 * REPORT_BATCH_ATTEMPTS times: the report resumes at this batch rather
 * than starting over (report.h). A failure on the gRPC call moves the rest
 * of the report to HTTP (the call may still carry a late answer to this
 * batch, which would be taken for the next one's). */
static int exchange_batch(struct report *rep, json_t *body, json_t **answer)
{
	int r;
	for (int attempt = 1;; attempt++) {
		r = exchange(rep, body, answer);
		if (r == 0 || !batch_retryable(r) || attempt >= REPORT_BATCH_ATTEMPTS)
			break;
		rep->resent++;
		atomic_fetch_add(&rep->rp->batches_resent, 1);
		if (rep->stream) {
			report_stream_failed(rep->stream, r);
			rep->stream = NULL; /* the caller closes it */
			continue;
		}
		efs_warn("chunk report: a batch of %zu chunks failed (%s): sending it again "
			 "(attempt %d of %d); the batches before it stand",
			 json_array_size(json_object_get(body, "chunks")), strerror(-r),
			 attempt + 1, REPORT_BATCH_ATTEMPTS);
		if (efs_ticker_wait(&rep->rp->ticker, (int64_t)REPORT_BATCH_BACKOFF_MS * attempt))
			return -ECANCELED;
	}
	if (r == 0) {
		rep->batches++;
		atomic_fetch_add(&rep->rp->batches_answered, 1);
	}
	return r;
}

/* Sends the current batch (again, while it fails, exchange_batch);
 * deletes what the master says is not needed. */
static int send_batch(struct report *rep, bool last)
{
	struct efs_worker_ctx *ctx = rep->ctx;
	json_t *answer = NULL;
	if (stopping(rep->rp))
		return -ECANCELED;
	json_t *body = json_pack("{s:I, s:I, s:o, s:b}", "started_at_ms",
				 (json_int_t)rep->started_ms, "now_ms", (json_int_t)efs_now_ms(),
				 "chunks", rep->chunks, "last", last);
	rep->chunks = json_array();
	if (rep->master_started_ms > 0)
		json_object_set_new(body, "master_started_ms",
				    json_integer((json_int_t)rep->master_started_ms));
	if (rep->lost_checked_after_ms > 0)
		json_object_set_new(body, "lost_checked_after_ms",
				    json_integer((json_int_t)rep->lost_checked_after_ms));
	json_t *lost = rep->lost; /* ours until the master has it */
	rep->lost = NULL;
	if (lost)
		json_object_set(body, "lost", lost);
	int r = body ? exchange_batch(rep, body, &answer) : -ENOMEM;
	json_decref(body);
	if (r < 0 && lost && rep->lost_checked_after_ms > 0) {
		/* Deleted while the report listed the store, not delivered:
		 * not queued with the scrubber's (they would go without their
		 * time and mark a copy written again since); the next full
		 * report's end marks a replica that is not there. */
		efs_warn("chunk report: %zu chunks deleted while it listed the store not told to "
			 "the master (%s): left to the next full report",
			 json_array_size(lost), strerror(-r));
	} else if (r < 0 && lost) {
		/* Not delivered: queued again for the next attempt. */
		json_t *item;
		size_t i;
		json_array_foreach(lost, i, item)
			efs_lost_queue_push(&ctx->lost, json_string_value(item));
	}
	json_decref(lost);
	if (r == 0) {
		json_t *item;
		size_t i;
		/* Only an answer received before the snapshot can stand for
		 * the start of the report on the master's clock. */
		json_t *master_now = json_object_get(answer, "now_ms");
		if (rep->reading_start && json_is_integer(master_now))
			rep->master_started_ms = (int64_t)json_integer_value(master_now);
		if (json_is_integer(master_now))
			rep->master_last_ms = (int64_t)json_integer_value(master_now);
		json_t *again = json_object_get(answer, "report_again_in_ms");
		if (json_is_integer(again) && json_integer_value(again) > 0)
			rep->again_in_ms =
			    EFS_MAX(rep->again_in_ms, (int64_t)EFS_MIN(json_integer_value(again),
								       (json_int_t)INT32_MAX));
		json_array_foreach(json_object_get(answer, "delete"), i, item)
		{
			const char *id = json_string_value(item);
			if (i % 256 == 255 && stopping(rep->rp))
				break;
			/* Written after the report began: a new upload; kept. */
			if (!efs_chunk_id_valid(id))
				continue;
			int d = efs_store_delete(ctx->store, id, rep->started_ms);
			rep->deleted += d == 0;
			rep->kept_newer += d == -EBUSY;
		}
		json_decref(answer);
	}
	return r;
}

static int list_chunk(void *ctx, const char *chunk_id, uint64_t length, int64_t mtime_ms)
{
	struct report *rep = ctx;
	json_array_append_new(rep->chunks, json_pack("[s, I]", chunk_id, (json_int_t)mtime_ms));
	rep->listed++;
	if (json_array_size(rep->chunks) >= REPORT_BATCH_CHUNKS)
		return send_batch(rep, false);
	return 0;
}

/* Copies deleted through the API while this report listed the store and
 * its batches were judged (a collector's DELETE, the master's watch of a
 * given-up write): the snapshot may have listed one, and a batch judged
 * after the delete may have adopted it (a chunk short of good replicas),
 * recording a replica whose copy is gone; the master would count it until
 * the next full report (REPORT_INTERVAL_MS). Sent as lost ids after the
 * last batch's answer, so after any adoption: the master marks such a
 * replica bad, for repair; an id no replica row of this worker names
 * changes nothing there. A copy written again since is not sent; one
 * written again just after the look below (an upload of the same bytes)
 * is recorded after the master's answer to the last batch, whose now_ms
 * goes with the ids: the master leaves such a later row alone
 * (efs_meta_replica_mark_lost). More deletes than the queue holds: the
 * next full report soon (its end marks what it does not list). */
static int report_deleted(struct report *rep)
{
	struct efs_worker_ctx *ctx = rep->ctx;
	/* Every adoption of the report's batches came before the master's
	 * reading in its last answer, and every look below after it. */
	rep->lost_checked_after_ms = rep->master_last_ms;
	json_t *deleted = lost_take(&ctx->deleted_in_report);
	json_t *gone = json_array(), *item;
	size_t i;
	json_array_foreach(deleted, i, item)
	{
		uint64_t length;
		uint32_t flags;
		int64_t mtime_ms;
		if (efs_store_stat(ctx->store, json_string_value(item), &length, &flags,
				   &mtime_ms) == -ENOENT)
			json_array_append(gone, item);
	}
	if (json_array_size(deleted) >= EFS_LOST_MAX)
		rep->again_in_ms = EFS_MAX(rep->again_in_ms, REPORT_KEPT_RECHECK_MS);
	json_decref(deleted);
	size_t n = json_array_size(gone);
	if (n == 0) {
		json_decref(gone);
		return 0;
	}
	/* Not a batch of the report: no reading of the master's clock. */
	rep->master_started_ms = 0;
	rep->lost = gone;
	int r = send_batch(rep, false);
	if (r == 0)
		efs_info("%zu chunks deleted while the report listed the store: told the master "
			 "they are gone (a replica a batch adopted meanwhile is marked bad)",
			 n);
	return r;
}

static int report_full(struct efs_reporter *rp, const char *worker_id,
		       struct efs_rpc_stream *stream)
{
	struct efs_worker_ctx *ctx = rp->ctx;
	struct report rep = {.ctx = ctx, .rp = rp, .started_ms = efs_now_ms(),
			     .chunks = json_array(), .worker_id = worker_id, .stream = stream};
	rep.lost = lost_take(&ctx->lost);
	snprintf(rep.path, sizeof(rep.path), "/api/v1/workers/%s/report", worker_id);
	/* First a request listing nothing (it carries the lost ids): its
	 * answer gives the master's time, read before our snapshot, which the
	 * master compares with replica creation times at the end (its clock
	 * with its clock: ours may be off by any amount). */
	rep.reading_start = true;
	/* From before the snapshot until the last batch is judged. */
	json_decref(lost_take(&ctx->deleted_in_report));
	atomic_store(&ctx->report_listing, true);
	int r = send_batch(&rep, false);
	rep.reading_start = false;
	rep.started_ms = efs_now_ms();
	if (r == 0)
		r = efs_store_iterate(ctx->store, list_chunk, &rep);
	if (r == 0)
		r = send_batch(&rep, true);
	atomic_store(&ctx->report_listing, false);
	if (r == 0)
		r = report_deleted(&rep);
	json_decref(rep.chunks);
	json_decref(rep.lost);
	rp->again_in_ms = r == 0 ? rep.again_in_ms : 0;
	/* The master dropped its row of a copy we then kept (an upload or
	 * repair wrote it again after the report began, e.g. while this
	 * report listed the store): no row names that copy now, and only a
	 * report can tell the master about it. The next one soon judges it
	 * (kept while young, deleted once older than ORPHAN_GRACE_MS), instead
	 * of at REPORT_INTERVAL_MS. */
	if (r == 0 && rep.kept_newer > 0) {
		rp->again_in_ms = EFS_MAX(rp->again_in_ms, REPORT_KEPT_RECHECK_MS);
		efs_info("kept %zu chunks the master said to delete, written after the report "
			 "began: reporting again within %d ms",
			 rep.kept_newer, REPORT_KEPT_RECHECK_MS);
	}
	if (r == 0)
		efs_info("chunk report sent%s: %zu chunks held, %zu requests answered (%zu sent "
			 "again after a failure), %zu deleted as not needed%s",
			 rep.stream ? " over gRPC" : stream ? " (over HTTP after gRPC failed)" : "",
			 rep.listed, rep.batches, rep.resent, rep.deleted,
			 rep.again_in_ms ? "; the master asks for another once young copies age"
					 : "");
	else if (r != -ECANCELED)
		atomic_fetch_add(&rp->reports_failed, 1);
	return r;
}

static int report_lost(struct efs_reporter *rp, const char *worker_id,
		       struct efs_rpc_stream *stream)
{
	struct efs_worker_ctx *ctx = rp->ctx;
	struct report rep = {.ctx = ctx, .rp = rp, .started_ms = efs_now_ms(),
			     .chunks = json_array(), .worker_id = worker_id, .stream = stream};
	rep.lost = lost_take(&ctx->lost);
	size_t n = json_array_size(rep.lost);
	snprintf(rep.path, sizeof(rep.path), "/api/v1/workers/%s/report", worker_id);
	int r = send_batch(&rep, false);
	json_decref(rep.chunks);
	json_decref(rep.lost);
	if (r == 0)
		efs_warn("reported %zu corrupt chunks to the master for repair", n);
	return r;
}

/* Opens a Report call to the master this worker has a Connect stream to
 * (it speaks gRPC): NULL when it has none, or the call cannot be opened
 * (logged; the report then goes over HTTP). */
static struct efs_rpc_stream *report_stream(struct efs_reporter *rp)
{
	struct efs_worker_ctx *ctx = rp->ctx;
	char target[EFS_URL_MAX + 1], auth[520], why[EFS_RPC_WHY_MAX + 1];
	struct efs_rpc_stream *s = NULL;

	efs_worker_ctx_grpc_target(ctx, target);
	if (!target[0])
		return NULL;
	int n = snprintf(auth, sizeof(auth), "Bearer %s", ctx->cfg->cluster_secret);
	if (n < 0 || n > 512) /* too long for gRPC here: the heartbeat said so */
		return NULL;
	int r = efs_rpc_stream_open(target, PATH_REPORT, auth, REPORT_GRPC_SEND_MS, &s, why,
				    sizeof(why));
	if (r < 0) {
		efs_warn("cannot open a gRPC chunk report to %s (%s%s%s): sending it over HTTP",
			 target, strerror(-r), why[0] ? ": " : "", why);
		return NULL;
	}
	return s;
}

/* Why a report on @s failed, for the log. */
static void report_stream_failed(struct efs_rpc_stream *s, int r)
{
	char why[EFS_RPC_WHY_MAX + 1] = "";
	if (r == -EPIPE)
		r = efs_rpc_stream_error(s, why, sizeof(why));
	efs_warn("chunk report over gRPC failed (%s%s%s): sending it over HTTP",
		 strerror(-r), why[0] ? ": " : "", why);
}

/* One look for work: a full report when due (or asked for by a
 * registration), otherwise the queued lost chunks, if any. */
static void report_tick(struct efs_reporter *rp)
{
	struct efs_worker_ctx *ctx = rp->ctx;
	char id[EFS_ID_MAX + 1];
	bool registered, pending;
	int r = 0;

	efs_worker_ctx_status(ctx, id, &registered);
	if (!registered || !id[0])
		return;
	int64_t now = efs_mono_ms();
	/* A (re)registration asks for a full report at once. */
	if (atomic_exchange(&ctx->full_report_due, false)) {
		rp->next_report_ms = 0;
		rp->stream_wait_until_ms = ctx->cfg->use_grpc ? now + REPORT_STREAM_WAIT_MS : 0;
	}
	bool full = now >= rp->next_report_ms;
	pthread_mutex_lock(&ctx->lost.lock);
	pending = ctx->lost.count > 0;
	pthread_mutex_unlock(&ctx->lost.lock);
	/* With a gRPC stream open, corrupt chunks go up it as deltas before
	 * the next beat (heartbeat.c); a full report still takes them. */
	char target[EFS_URL_MAX + 1];
	efs_worker_ctx_grpc_target(ctx, target);
	if (target[0])
		pending = false;
	else if (full && now < rp->stream_wait_until_ms)
		return; /* the stream is opening: the report goes on it */
	if (!full && !pending)
		return;
	/* A connection of its own for the report's requests, closed after:
	 * none is held open between reports (an hour apart by default). */
	if ((r = efs_http_client_new(&rp->http)) < 0)
		goto out;
	if ((r = efs_http_client_set_ca_file(rp->http, ctx->cfg->tls.ca_file)) < 0)
		goto done; /* TLS_CA_FILE, as the heartbeat's client */
	struct efs_rpc_stream *stream = report_stream(rp);
	if (full) {
		atomic_store(&ctx->full_report_began_ms, (long long)efs_mono_ms());
		/* A failed batch is sent again, over HTTP once the gRPC call
		 * broke (send_batch); a report that fails all the same starts
		 * over after REPORT_RETRY_MS. */
		r = report_full(rp, id, stream);
		rp->next_report_ms = now + (r == 0 ? ctx->cfg->report_interval_ms : REPORT_RETRY_MS);
		/* Copies kept for their youth are judged again once old, not
		 * at the next interval (at most one grace away). */
		if (r == 0 && rp->again_in_ms > 0)
			rp->next_report_ms = EFS_MIN(rp->next_report_ms,
						     efs_mono_ms() +
							     EFS_MAX(rp->again_in_ms, REPORT_POLL_MS));
	} else {
		r = report_lost(rp, id, stream); /* over HTTP if the gRPC call breaks */
	}
	efs_rpc_stream_close(stream);
done:
	efs_http_client_free(rp->http);
	rp->http = NULL;
out:
	if (r < 0 && r != -ECANCELED) {
		pthread_mutex_lock(&ctx->lock); /* the heartbeat may be failing over */
		const char *url = efs_worker_ctx_master_url(ctx); /* cfg's: outlives the lock */
		pthread_mutex_unlock(&ctx->lock);
		efs_warn("chunk report to %s failed: %s; retrying later", url, strerror(-r));
	}
}

static void report_main(struct efs_ticker *t, void *arg)
{
	struct efs_reporter *rp = arg;
	while (!efs_ticker_wait(t, REPORT_POLL_MS))
		report_tick(rp);
}

int efs_report_start(struct efs_reporter *rp, struct efs_worker_ctx *ctx)
{
	memset(rp, 0, sizeof(*rp));
	rp->ctx = ctx;
	return efs_ticker_start(&rp->ticker, report_main, rp);
}

void efs_report_stop(struct efs_reporter *rp)
{
	if (!rp->ticker.running)
		return;
	efs_ticker_stop(&rp->ticker);
}
