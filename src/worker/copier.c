/* SPDX-License-Identifier: MIT */
/* copier.c - pushed repair copies and deletes, run on threads of their
 * own (contract in copier.h). */
#include "worker/copier.h"
#include "echofs/codec.h"
#include "echofs/control_plane.h"
#include "echofs/hash.h"
#include "echofs/http_client.h"
#include "echofs/log.h"
#include "echofs/util.h"
#include "worker/context.h"
#include "worker/fence.h"
#include "worker/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct efs_copy_job {
	struct efs_copy_request req; /* a delete: its instruction_id and stream_generation */
	bool is_delete;
	char (*delete_ids)[65]; /* a delete's ids (its own allocation) */
	size_t delete_count;
	int64_t unmodified_for_ms;
	int64_t came_ms; /* efs_mono_ms() when it was handed over */
	unsigned status;
	struct efs_copy_job *next;
};

/* Gives a running fetch up once the copier stops. */
static int fetch_progress(void *arg, int64_t down_total, int64_t down_now, int64_t up_total,
			  int64_t up_now)
{
	struct efs_copier *cp = arg;
	return atomic_load(&cp->aborting) ? -ECANCELED : 0;
}

/* Fetches @req's chunk from its source worker over HTTP (the data path),
 * verifies it (its size, and the SHA-256 of the uncompressed bytes is
 * the chunk id) and stores it as it came (gzip or raw). Returns the
 * Ack's status. */
static unsigned copy_run(struct efs_copier *cp, const struct efs_copy_request *req,
			 int64_t came_ms)
{
	struct efs_worker_ctx *ctx = cp->ctx;
	char url[EFS_URL_MAX + 80], cluster[EFS_CLUSTER_ID_LEN + 1];
	char header[EFS_CLUSTER_ID_LEN + 32], hex[EFS_SHA256_HEX_LEN + 1];
	struct efs_http_call call;
	struct efs_buf raw;
	uint64_t length;
	uint32_t flags;
	int64_t mtime_ms;
	unsigned status;

	/* What the heartbeat thread checked, again: time passed. */
	if (req->lease_epoch && ctx->fence && req->lease_epoch < efs_fence_newest(ctx->fence)) {
		efs_warn("pushed copy of chunk %s refused: lease epoch %llu is older than %llu, "
			 "seen while it waited",
			 req->chunk_id, (unsigned long long)req->lease_epoch,
			 (unsigned long long)efs_fence_newest(ctx->fence));
		return 409;
	}
	if (efs_store_stat(ctx->store, req->chunk_id, &length, &flags, &mtime_ms) == 0) {
		atomic_fetch_add(&cp->held, 1);
		return 204; /* stored meanwhile */
	}
	/* The master stops waiting EFS_COPY_ACK_MS after it sent the copy;
	 * this worker's share of that ends sooner (control_plane.h). */
	int64_t left_ms = came_ms + EFS_COPY_DEADLINE_MS - efs_mono_ms();
	if (left_ms <= 0) {
		atomic_fetch_add(&cp->expired, 1);
		efs_warn("pushed copy of chunk %s not started: it waited %lld ms for a copier "
			 "thread, past its deadline (the master writes it over HTTP)",
			 req->chunk_id, (long long)(efs_mono_ms() - came_ms));
		return 504;
	}
	snprintf(url, sizeof(url), "%s/chunks/%s", req->from_url, req->chunk_id);
	efs_http_call_init(&call, "GET", url);
	call.bearer = ctx->cfg->cluster_secret;
	efs_worker_ctx_cluster(ctx, cluster);
	if (cluster[0]) {
		snprintf(header, sizeof(header), EFS_HDR_CLUSTER ": %s", cluster);
		call.headers[0] = header;
	}
	call.capture_header = EFS_HDR_ENCODING;
	call.resp_cap = (size_t)req->size + 4096; /* gzip of incompressible bytes: a little more */
	call.timeout_ms = (long)left_ms;
	call.stall_timeout_s = EFS_COPY_STALL_S;
	call.min_speed = EFS_COPY_MIN_SPEED;
	call.progress = fetch_progress;
	call.progress_ctx = cp;
	int r = efs_http_call_run(ctx->http, &call);
	efs_buf_init(&raw, (size_t)req->size);
	if (r < 0 || call.status != 200) {
		bool late = r == -ETIMEDOUT && efs_mono_ms() >= came_ms + EFS_COPY_DEADLINE_MS;
		if (late)
			atomic_fetch_add(&cp->expired, 1);
		if (r != -ECANCELED)
			efs_warn("pushed copy of chunk %s: GET from %s failed (%s%s)", req->chunk_id,
				 req->from_url, r < 0 ? strerror(-r) : "an HTTP error status",
				 late		 ? ": past the copy's deadline"
				 : call.too_slow ? ": slower than the copy's least speed"
						 : "");
		status = late ? 504 : 502;
		goto out;
	}
	bool gzip = strcasecmp(call.captured, "gzip") == 0;
	const struct efs_buf *plain = &call.resp;
	if (gzip) {
		if (efs_codec_decode(call.resp.data, call.resp.len, (size_t)req->size, &raw) < 0) {
			efs_warn("pushed copy of chunk %s from %s: not valid gzip; not stored",
				 req->chunk_id, req->from_url);
			status = 502;
			goto out;
		}
		plain = &raw;
	}
	efs_sha256_hex(plain->data, plain->len, hex);
	if (plain->len != req->size || strcmp(hex, req->chunk_id) != 0) {
		efs_warn("pushed copy of chunk %s from %s: the bytes do not verify; not stored",
			 req->chunk_id, req->from_url);
		status = 502;
		goto out;
	}
	struct efs_store_writer *w;
	r = efs_store_write_begin(ctx->store, req->chunk_id, call.resp.len,
				  gzip ? EFS_STORE_GZIP : 0, &w);
	if (r == 0 && (r = efs_store_write(w, call.resp.data, call.resp.len)) < 0)
		efs_store_write_abort(w);
	else if (r == 0)
		r = efs_store_write_commit(w, false, 0);
	status = r == 0 ? 201 : r == -ENOSPC ? 507 : 500;
	if (r == 0) {
		atomic_fetch_add(&cp->stored, 1);
		efs_debug("chunk %s copied from %s (pushed by the master)", req->chunk_id,
			  req->from_url);
	} else {
		efs_warn("pushed copy of chunk %s: cannot store it: %s", req->chunk_id,
			 strerror(-r));
	}
out:
	efs_buf_release(&raw);
	efs_http_call_release(&call);
	return status;
}

/* Deletes a delete job's chunks, as DELETE /chunks/{id} with
 * X-Unmodified-For-Ms does (api.c); the status of the last one. */
static unsigned delete_run(struct efs_copier *cp, const struct efs_copy_job *job)
{
	struct efs_worker_ctx *ctx = cp->ctx;
	unsigned status = 204;
	for (size_t i = 0; i < job->delete_count; i++) {
		const char *id = job->delete_ids[i];
		int r = efs_store_delete_unmodified_for(ctx->store, id, job->unmodified_for_ms);
		status = r == 0 ? 204 : r == -ENOENT ? 404 : r == -EBUSY ? 412 : 500;
		if (r == 0) {
			atomic_fetch_add(&cp->deleted, 1);
			/* as a DELETE over HTTP: a full report may have listed it */
			efs_worker_ctx_note_delete(ctx, id);
			efs_debug("chunk %s deleted (pushed by the master)", id);
		} else if (status == 500) {
			efs_warn("pushed delete of chunk %s failed: %s", id, strerror(-r));
		}
	}
	return status;
}

/* Files @job's result for the heartbeat thread. Under cp->lock. */
static void job_finished(struct efs_copier *cp, struct efs_copy_job *job)
{
	if (cp->done_tail)
		cp->done_tail->next = job;
	else
		cp->done = job;
	cp->done_tail = job;
}

static void *delete_main(void *arg)
{
	struct efs_copier *cp = arg;
	pthread_mutex_lock(&cp->lock);
	for (;;) {
		while (!cp->deletes && !cp->stopping)
			pthread_cond_wait(&cp->delete_ready, &cp->lock);
		if (cp->stopping)
			break;
		struct efs_copy_job *job = cp->deletes;
		cp->deletes = job->next;
		if (!cp->deletes)
			cp->deletes_tail = NULL;
		job->next = NULL;
		pthread_mutex_unlock(&cp->lock);
		job->status = delete_run(cp, job);
		pthread_mutex_lock(&cp->lock);
		job_finished(cp, job);
	}
	pthread_mutex_unlock(&cp->lock);
	return NULL;
}

static void *copier_main(void *arg)
{
	struct efs_copier *cp = arg;
	pthread_mutex_lock(&cp->lock);
	for (;;) {
		while (!cp->queue && !cp->stopping)
			pthread_cond_wait(&cp->ready, &cp->lock);
		if (cp->stopping)
			break;
		struct efs_copy_job *job = cp->queue;
		cp->queue = job->next;
		if (!cp->queue)
			cp->queue_tail = NULL;
		job->next = NULL;
		pthread_mutex_unlock(&cp->lock);
		job->status = copy_run(cp, &job->req, job->came_ms);
		pthread_mutex_lock(&cp->lock);
		atomic_fetch_sub(&cp->running, 1);
		job_finished(cp, job);
	}
	pthread_mutex_unlock(&cp->lock);
	return NULL;
}

int efs_copier_start(struct efs_copier *cp, struct efs_worker_ctx *ctx)
{
	memset(cp, 0, sizeof(*cp));
	cp->ctx = ctx;
	pthread_mutex_init(&cp->lock, NULL);
	pthread_cond_init(&cp->ready, NULL);
	pthread_cond_init(&cp->delete_ready, NULL);
	for (size_t i = 0; i < EFS_COPIER_THREADS; i++) {
		int r = pthread_create(&cp->threads[i], NULL, copier_main, cp);
		if (r != 0) {
			efs_copier_stop(cp);
			return -r;
		}
		cp->thread_count++;
	}
	int r = pthread_create(&cp->delete_thread, NULL, delete_main, cp);
	if (r != 0) {
		efs_copier_stop(cp);
		return -r;
	}
	cp->delete_started = true;
	return 0;
}

static void free_job(struct efs_copy_job *job)
{
	if (job) {
		free(job->delete_ids);
		free(job);
	}
}

int efs_copier_submit_delete(struct efs_copier *cp, const struct efs_delete_request *req)
{
	struct efs_copy_job *job = NULL;
	int r = 0;
	if (!cp->ctx)
		return -ESHUTDOWN;
	if (req->chunk_count == 0 || req->chunk_count > EFS_COPIER_DELETE_IDS_MAX)
		return -EINVAL;
	/* Allocated before the lock: up to 1024 ids. */
	job = calloc(1, sizeof(*job));
	if (!job || !(job->delete_ids = calloc(req->chunk_count, sizeof(*job->delete_ids)))) {
		free_job(job);
		return -ENOMEM;
	}
	job->is_delete = true;
	job->req.instruction_id = req->instruction_id;
	job->req.stream_generation = req->stream_generation;
	job->delete_count = req->chunk_count;
	job->unmodified_for_ms = req->unmodified_for_ms;
	for (size_t i = 0; i < req->chunk_count; i++)
		efs_strlcpy(job->delete_ids[i], req->chunk_ids[i], sizeof(job->delete_ids[i]));
	job->came_ms = efs_mono_ms();
	pthread_mutex_lock(&cp->lock);
	if (cp->stopping || !cp->delete_started) {
		r = -ESHUTDOWN;
		goto out;
	}
	if (cp->delete_jobs >= EFS_COPIER_DELETES_MAX) {
		atomic_fetch_add(&cp->deletes_refused, 1);
		r = -EBUSY;
		goto out;
	}
	if (cp->deletes_tail)
		cp->deletes_tail->next = job;
	else
		cp->deletes = job;
	cp->deletes_tail = job;
	cp->delete_jobs++;
	job = NULL;
	pthread_cond_signal(&cp->delete_ready);
out:
	pthread_mutex_unlock(&cp->lock);
	free_job(job);
	return r;
}

int efs_copier_submit(struct efs_copier *cp, const struct efs_copy_request *req)
{
	int r = 0;
	if (!cp->ctx)
		return -ESHUTDOWN; /* stopped (or never started) */
	pthread_mutex_lock(&cp->lock);
	if (cp->stopping || cp->thread_count == 0) {
		r = -ESHUTDOWN;
		goto out;
	}
	if (cp->jobs >= EFS_COPIER_JOBS_MAX) {
		atomic_fetch_add(&cp->refused, 1);
		r = -EBUSY;
		goto out;
	}
	struct efs_copy_job *job = calloc(1, sizeof(*job));
	if (!job) {
		r = -ENOMEM;
		goto out;
	}
	job->req = *req;
	job->came_ms = efs_mono_ms();
	if (cp->queue_tail)
		cp->queue_tail->next = job;
	else
		cp->queue = job;
	cp->queue_tail = job;
	cp->jobs++;
	atomic_fetch_add(&cp->running, 1);
	pthread_cond_signal(&cp->ready);
out:
	pthread_mutex_unlock(&cp->lock);
	return r;
}

size_t efs_copier_take(struct efs_copier *cp, struct efs_copy_result *out, size_t max)
{
	size_t n = 0;
	if (!cp->ctx)
		return 0;
	pthread_mutex_lock(&cp->lock);
	while (cp->done && n < max) {
		struct efs_copy_job *job = cp->done;
		cp->done = job->next;
		if (!cp->done)
			cp->done_tail = NULL;
		if (job->is_delete)
			cp->delete_jobs--;
		else
			cp->jobs--;
		out[n].instruction_id = job->req.instruction_id;
		out[n].stream_generation = job->req.stream_generation;
		out[n].status = job->status;
		out[n].took_ms = efs_mono_ms() - job->came_ms;
		n++;
		free_job(job);
	}
	pthread_mutex_unlock(&cp->lock);
	return n;
}

void efs_copier_held(struct efs_copier *cp, size_t *copies, size_t *deletes)
{
	*copies = *deletes = 0;
	if (!cp->ctx)
		return;
	pthread_mutex_lock(&cp->lock);
	*copies = cp->jobs;
	*deletes = cp->delete_jobs;
	pthread_mutex_unlock(&cp->lock);
}

static void free_jobs(struct efs_copy_job *job)
{
	while (job) {
		struct efs_copy_job *next = job->next;
		free_job(job);
		job = next;
	}
}

void efs_copier_stop(struct efs_copier *cp)
{
	if (!cp->ctx)
		return;
	atomic_store(&cp->aborting, true);
	pthread_mutex_lock(&cp->lock);
	cp->stopping = true;
	pthread_cond_broadcast(&cp->ready);
	pthread_cond_broadcast(&cp->delete_ready);
	pthread_mutex_unlock(&cp->lock);
	for (size_t i = 0; i < cp->thread_count; i++)
		pthread_join(cp->threads[i], NULL);
	cp->thread_count = 0;
	if (cp->delete_started)
		pthread_join(cp->delete_thread, NULL);
	cp->delete_started = false;
	free_jobs(cp->queue);
	free_jobs(cp->deletes);
	free_jobs(cp->done);
	cp->queue = cp->queue_tail = cp->done = cp->done_tail = NULL;
	cp->deletes = cp->deletes_tail = NULL;
	cp->jobs = cp->delete_jobs = 0;
	atomic_store(&cp->running, 0);
	pthread_cond_destroy(&cp->ready);
	pthread_cond_destroy(&cp->delete_ready);
	pthread_mutex_destroy(&cp->lock);
	cp->ctx = NULL;
}
