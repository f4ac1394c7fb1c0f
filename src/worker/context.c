/* SPDX-License-Identifier: MIT */
/* context.c - the state the worker's threads share: the lost-chunk queue,
 * posts to the current master, the registration state, disk space. */
#include "worker/context.h"
#include "echofs/http_client.h"
#include "echofs/util.h"

#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#define REQUEST_TIMEOUT_MS 5000

int efs_lost_queue_init(struct efs_lost_queue *q)
{
	q->ids = calloc(EFS_LOST_MAX, sizeof(*q->ids));
	q->count = 0;
	pthread_mutex_init(&q->lock, NULL);
	return q->ids ? 0 : -ENOMEM;
}

void efs_lost_queue_release(struct efs_lost_queue *q)
{
	free(q->ids);
	q->ids = NULL;
	pthread_mutex_destroy(&q->lock);
}

void efs_lost_queue_push(struct efs_lost_queue *q, const char *chunk_id)
{
	pthread_mutex_lock(&q->lock);
	if (q->count < EFS_LOST_MAX)
		efs_strlcpy(q->ids[q->count++], chunk_id, 65);
	pthread_mutex_unlock(&q->lock);
}

size_t efs_lost_queue_take(struct efs_lost_queue *q, char (*out)[65], size_t max)
{
	pthread_mutex_lock(&q->lock);
	size_t n = EFS_MIN(q->count, max);
	memcpy(out, q->ids, n * sizeof(*q->ids));
	memmove(q->ids, q->ids + n, (q->count - n) * sizeof(*q->ids));
	q->count -= n;
	pthread_mutex_unlock(&q->lock);
	return n;
}

int efs_worker_ctx_init(struct efs_worker_ctx *ctx, const struct efs_worker_config *cfg,
			struct efs_store *store)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->cfg = cfg;
	ctx->store = store;
	atomic_init(&ctx->full_report_due, false);
	atomic_init(&ctx->full_report_began_ms, 0);
	atomic_init(&ctx->report_listing, false);
	int r = efs_lost_queue_init(&ctx->lost);
	if (r == 0)
		r = efs_lost_queue_init(&ctx->deleted_in_report);
	if (r == 0)
		r = efs_lost_queue_init(&ctx->removed);
	if (r < 0 || (r = efs_http_client_new(&ctx->http)) < 0) {
		/* a queue never set up is zeroed (memset): releasing it is a no-op */
		efs_lost_queue_release(&ctx->lost);
		efs_lost_queue_release(&ctx->deleted_in_report);
		efs_lost_queue_release(&ctx->removed);
		return r;
	}
	pthread_mutex_init(&ctx->lock, NULL);
	return 0;
}

void efs_worker_ctx_release(struct efs_worker_ctx *ctx)
{
	efs_http_client_free(ctx->http);
	ctx->http = NULL;
	efs_lost_queue_release(&ctx->lost);
	efs_lost_queue_release(&ctx->deleted_in_report);
	efs_lost_queue_release(&ctx->removed);
	pthread_mutex_destroy(&ctx->lock);
}

void efs_worker_ctx_grpc_target(struct efs_worker_ctx *ctx, char *target)
{
	pthread_mutex_lock(&ctx->lock);
	memcpy(target, ctx->grpc_target, sizeof(ctx->grpc_target));
	pthread_mutex_unlock(&ctx->lock);
}

void efs_worker_ctx_note_delete(struct efs_worker_ctx *ctx, const char *chunk_id)
{
	if (atomic_load(&ctx->report_listing))
		efs_lost_queue_push(&ctx->deleted_in_report, chunk_id);
	pthread_mutex_lock(&ctx->lock);
	bool streaming = ctx->grpc_target[0] != '\0';
	pthread_mutex_unlock(&ctx->lock);
	if (streaming)
		efs_lost_queue_push(&ctx->removed, chunk_id);
}

int efs_worker_ctx_post(struct efs_worker_ctx *ctx, struct efs_http_call *call, const char *path,
			json_t *body)
{
	return efs_worker_ctx_post_on(ctx, ctx->http, 0, NULL, NULL, call, path, body);
}

int efs_worker_ctx_post_on(struct efs_worker_ctx *ctx, struct efs_http_client *http,
			   long timeout_ms, efs_http_progress_fn progress, void *progress_ctx,
			   struct efs_http_call *call, const char *path, json_t *body)
{
	char url[EFS_URL_MAX + 128];
	pthread_mutex_lock(&ctx->lock); /* the heartbeat may be failing over */
	snprintf(url, sizeof(url), "%s%s", efs_worker_ctx_master_url(ctx), path);
	pthread_mutex_unlock(&ctx->lock);
	/* Initialised before anything can fail: every caller releases the
	 * call, also after -ENOMEM (a NULL @body is a failed json_pack). */
	efs_http_call_init(call, "POST", url);
	char cluster[EFS_CLUSTER_ID_LEN + 1], header[EFS_CLUSTER_ID_LEN + 32];
	efs_worker_ctx_cluster(ctx, cluster);
	if (cluster[0]) { /* the master refuses us if it is another cluster's */
		snprintf(header, sizeof(header), EFS_HDR_CLUSTER ": %s", cluster);
		call->headers[0] = header;
	}
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!text)
		return -ENOMEM;
	call->bearer = ctx->cfg->cluster_secret;
	call->content_type = "application/json";
	call->body = text;
	call->body_len = strlen(text);
	call->timeout_ms = timeout_ms > 0 ? timeout_ms : REQUEST_TIMEOUT_MS;
	call->progress = progress;
	call->progress_ctx = progress_ctx;
	call->resp_cap = 4 * 1024 * 1024;
	int r = efs_http_call_run(http, call);
	call->headers[0] = NULL; /* it pointed here */
	free(text);
	return r;
}

const char *efs_worker_ctx_master_url(const struct efs_worker_ctx *ctx)
{
	return ctx->cfg->master_urls[ctx->master_index];
}

void efs_worker_ctx_status(struct efs_worker_ctx *ctx, char *worker_id, bool *registered)
{
	pthread_mutex_lock(&ctx->lock);
	efs_strlcpy(worker_id, ctx->worker_id, EFS_ID_MAX + 1);
	*registered = ctx->registered;
	pthread_mutex_unlock(&ctx->lock);
}

void efs_worker_ctx_cluster(struct efs_worker_ctx *ctx, char *cluster_id)
{
	pthread_mutex_lock(&ctx->lock);
	efs_strlcpy(cluster_id, ctx->cluster_id, EFS_CLUSTER_ID_LEN + 1);
	pthread_mutex_unlock(&ctx->lock);
}

bool efs_worker_ctx_cluster_ok(struct efs_worker_ctx *ctx, const char *theirs)
{
	char ours[EFS_CLUSTER_ID_LEN + 1];
	efs_worker_ctx_cluster(ctx, ours);
	return !theirs || !ours[0] || strcmp(ours, theirs) == 0;
}

int efs_worker_ctx_space(const struct efs_worker_ctx *ctx, struct efs_worker_space *out)
{
	const struct efs_worker_config *cfg = ctx->cfg;
	struct statvfs vfs;
	if (statvfs(cfg->data_dir, &vfs) < 0)
		return -errno;
	uint64_t fs_size = (uint64_t)vfs.f_blocks * vfs.f_frsize;
	uint64_t fs_free = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	struct efs_store_stats stats;
	efs_store_stats(ctx->store, &stats);
	uint64_t used = stats.bytes;

	out->chunk_count = stats.chunk_count;
	if (cfg->capacity_bytes) {
		out->capacity_bytes = cfg->capacity_bytes;
		uint64_t left = used < cfg->capacity_bytes ? cfg->capacity_bytes - used : 0;
		out->free_bytes = EFS_MIN(left, fs_free);
	} else {
		out->capacity_bytes = fs_size;
		out->free_bytes = fs_free;
	}
	return 0;
}
