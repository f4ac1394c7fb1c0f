/* SPDX-License-Identifier: MIT */
/* context.h - what the worker's background threads share: the
 * configuration, the chunk store, the link to the master (which master is
 * current, the worker id, whether it is registered), the queue of chunks
 * the scrubber found corrupt, and the hook the heartbeat calls after each
 * successful beat.
 *
 * worker.c owns the context and wires it. heartbeat.c, report.c and
 * scrub.c depend on this header and on store.h, never on each other or on
 * worker.h: the heartbeat triggers reports through full_report_due, not
 * by calling report.c; reports run on their own thread (report.h).
 */
#ifndef ECHOFS_WORKER_CONTEXT_H
#define ECHOFS_WORKER_CONTEXT_H

#include "echofs/common.h"
#include "echofs/http_client.h"
#include "worker/config.h"
#include "worker/store.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct efs_http_call;
struct efs_http_client;

/* Chunks the scrubber quarantined, waiting to be reported. */
#define EFS_LOST_MAX 4096
struct efs_lost_queue {
	pthread_mutex_t lock;
	char (*ids)[65];
	size_t count;
};

int efs_lost_queue_init(struct efs_lost_queue *q);
void efs_lost_queue_release(struct efs_lost_queue *q);
/* Queues a chunk id (dropped when the queue is full: the next full report
 * finds the chunk missing anyway). */
void efs_lost_queue_push(struct efs_lost_queue *q, const char *chunk_id);
/* Moves up to @max queued ids (the oldest first) into @out; returns how
 * many. */
size_t efs_lost_queue_take(struct efs_lost_queue *q, char (*out)[65], size_t max);

/* What the worker reports about its space: the capacity (the filesystem's
 * size, or WORKER_CAPACITY_BYTES) and what is still free of it. */
struct efs_worker_space {
	uint64_t capacity_bytes;
	uint64_t free_bytes;
	uint64_t chunk_count;
};

struct efs_fence;

struct efs_worker_ctx {
	const struct efs_worker_config *cfg; /* the worker's; outlives the context */
	struct efs_store *store;
	/* The newest lease epoch seen (fence.h): instructions pushed on the
	 * control stream are fenced like the HTTP calls. Set by worker.c. */
	struct efs_fence *fence;
	struct efs_lost_queue lost; /* corrupt chunks for the master */
	/* Chunks deleted through the API or a pushed delete while a gRPC
	 * stream was open: sent as a ChunkDelta's removed ids (heartbeat.c),
	 * so the master marks a replica row that still names the copy bad at
	 * once, not at the next full report. */
	struct efs_lost_queue removed;
	struct efs_http_client *http; /* the worker's calls to the masters run on it */

	/* The link to the master. Written by the heartbeat thread only, under
	 * lock; that thread reads them without it, other threads through
	 * efs_worker_ctx_status(). */
	pthread_mutex_t lock;
	char worker_id[EFS_ID_MAX + 1]; /* "" until the first registration */
	/* The cluster this worker's data belongs to (WORKER_DATA_DIR/cluster_id),
	 * sent to the masters in EFS_HDR_CLUSTER; "" until the first master
	 * that accepts the worker names its cluster. */
	char cluster_id[EFS_CLUSTER_ID_LEN + 1];
	bool registered;
	unsigned master_index; /* the master being talked to */
	/* The current master's gRPC address ("host:port") while this worker
	 * has a Connect stream open to it, else "": the worker speaks gRPC
	 * to that master, and its chunk reports go there as Report calls
	 * (report.c), over HTTP otherwise. */
	char grpc_target[EFS_URL_MAX + 1];

	/* Set by the heartbeat on every (re)registration: a registered worker
	 * reports what it holds; the report thread takes it (report.c). */
	atomic_bool full_report_due;
	/* efs_mono_ms() when the report thread last began a full report: a
	 * heartbeat answer asking for one (a rejoin, "full_report") is
	 * covered by a report begun after that heartbeat was sent. */
	atomic_llong full_report_began_ms;
	/* True while a full report lists the store and its batches are
	 * judged; chunks deleted through the API meanwhile (a collector's
	 * DELETE, the master's watch of a given-up write) are queued in
	 * deleted_in_report: a batch judged after such a delete may have
	 * adopted the copy its snapshot listed (report.c). */
	atomic_bool report_listing;
	struct efs_lost_queue deleted_in_report;
	/* Called on the heartbeat thread after each successful beat; NULL:
	 * nothing. worker.c sets none: chunk reports run on their own thread
	 * (report.h), and whatever is hooked here delays the next beat. */
	void (*after_beat)(void *arg);
	void *after_beat_arg;
};

/* Sets up @ctx for @cfg and @store (both kept, not copied). 0 or -ENOMEM. */
int efs_worker_ctx_init(struct efs_worker_ctx *ctx, const struct efs_worker_config *cfg,
			struct efs_store *store);
/* Frees what efs_worker_ctx_init set up; no thread may use @ctx any more. */
void efs_worker_ctx_release(struct efs_worker_ctx *ctx);

/* POSTs @body (stolen; NULL, a failed allocation, gives -ENOMEM) as JSON
 * to @path on the current master with the cluster secret. 0 with
 * call->status set, or -ENOMEM or the transport error; @call is
 * initialised in every case: release it after. Heartbeat thread only. */
int efs_worker_ctx_post(struct efs_worker_ctx *ctx, struct efs_http_call *call, const char *path,
			json_t *body);
/* efs_worker_ctx_post on the caller's own client @http, waiting up to
 * @timeout_ms for the whole exchange (0: efs_worker_ctx_post's 5 s);
 * @progress (may be NULL) is called about once a second while it runs and
 * ends it early by returning a negative errno: any thread (the report
 * thread, which stops a long wait when the worker stops). */
int efs_worker_ctx_post_on(struct efs_worker_ctx *ctx, struct efs_http_client *http,
			   long timeout_ms, efs_http_progress_fn progress, void *progress_ctx,
			   struct efs_http_call *call, const char *path, json_t *body);
/* The current master's URL (for messages). Heartbeat thread only. */
const char *efs_worker_ctx_master_url(const struct efs_worker_ctx *ctx);
/* Copies the current id (EFS_ID_MAX + 1 bytes) and registration state. Any
 * thread. */
void efs_worker_ctx_status(struct efs_worker_ctx *ctx, char *worker_id, bool *registered);

/* Copies grpc_target (EFS_URL_MAX + 1 bytes; "" when no stream is open).
 * Any thread. */
void efs_worker_ctx_grpc_target(struct efs_worker_ctx *ctx, char *target);

/* Copies the cluster id (EFS_CLUSTER_ID_LEN + 1 bytes; "" when none yet).
 * Any thread. */
void efs_worker_ctx_cluster(struct efs_worker_ctx *ctx, char *cluster_id);

/* Whether a call naming cluster @theirs (the EFS_HDR_CLUSTER header, NULL
 * when absent) may act on this worker's chunks: false only when both this
 * worker and the caller name a cluster and they differ. Any thread. */
bool efs_worker_ctx_cluster_ok(struct efs_worker_ctx *ctx, const char *theirs);

/* A chunk was deleted through the API (or a pushed delete): queued in
 * deleted_in_report while a full report is under way (report_listing),
 * and in removed while a gRPC stream is open. Any thread. */
void efs_worker_ctx_note_delete(struct efs_worker_ctx *ctx, const char *chunk_id);

/* Measures the data directory's filesystem and the store. 0 or -errno. */
int efs_worker_ctx_space(const struct efs_worker_ctx *ctx, struct efs_worker_space *out);

#endif
