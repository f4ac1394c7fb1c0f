/* SPDX-License-Identifier: MIT */
/* heartbeat.h - the worker's side of membership: registration, heartbeats,
 * master failover, and the worker id kept in WORKER_DATA_DIR/worker_id.
 *
 * A thread registers with the first master that answers (trying the
 * MASTER_URL list in turn, backing off from 100 ms to 5 s while none
 * does), then beats every heartbeat_interval_ms the master asked for. A
 * 404 on a heartbeat means the master forgot the worker: it registers
 * again, under the same id. The id the master assigns on the very first
 * registration is written to the data directory before it is used, so a
 * restarted worker comes back as itself.
 *
 * With WORKER_PROTOCOL=grpc (the default) and a gRPC address for the
 * current master (MASTER_GRPC_URL, or the registration answer's
 * "grpc_url"), the beats after registration go on one Connect stream
 * (proto/echofs.proto) instead of one HTTP request each; the thread waits
 * between beats for the master's instructions on it (the interval, a full
 * report, deletes, repair copies). A repair copy (CopyChunk) is only
 * checked here and then runs on the copier's threads (copier.h), so a slow
 * copy never delays a beat; the thread sends each finished copy's Ack
 * between the slices of its wait, on the stream the copy came down. Before
 * each beat on the stream go the chunk deltas:
 * the chunks the scrubber found corrupt and those deleted since (corrupt
 * and removed ids of a ChunkDelta). When the stream cannot be opened or breaks, the beats go over
 * HTTP at once, and the stream is tried again after a backoff (1 s,
 * doubling up to 5 s). Registration stays HTTP.
 *
 * The registration state lives in the worker context (context.h), where
 * the chunk report and the API read it. After each successful beat the
 * thread calls the context's after_beat hook; every (re)registration sets
 * its full_report_due.
 */
#ifndef ECHOFS_WORKER_HEARTBEAT_H
#define ECHOFS_WORKER_HEARTBEAT_H

#include "echofs/common.h"
#include "echofs/ticker.h"
#include "worker/copier.h"
#include "worker/config.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct efs_worker_ctx;
struct efs_rpc_stream;

struct efs_heartbeat {
	struct efs_worker_ctx *ctx;
	struct efs_ticker ticker;
	int64_t interval_ms;
	/* A refusal (another cluster's master) was logged for this master
	 * index: once per master URL. */
	bool refused_logged[EFS_MAX_MASTERS];
	/* The gRPC control plane (heartbeat thread only). Each master's
	 * address as its registration answer named it ("" : none). */
	char grpc_learned[EFS_MAX_MASTERS][EFS_URL_MAX + 1];
	/* That master's control plane answered WrongCluster (or ended a
	 * stream with FAILED_PRECONDITION): no stream is opened to it again
	 * (until the worker restarts); its beats stay HTTP, where the
	 * registration checks the cluster again. */
	bool grpc_wrong_cluster[EFS_MAX_MASTERS];
	struct efs_rpc_stream *stream; /* NULL: beats go over HTTP */
	unsigned stream_master;	       /* the master index it goes to */
	int64_t stream_opened_ms;      /* efs_mono_ms() */
	uint64_t stream_sequence;      /* heartbeats sent on it */
	int64_t grpc_retry_ms;	       /* efs_mono_ms() of the next try to open one */
	int64_t grpc_backoff_ms;
	bool grpc_failing;	       /* a failure was logged; quiet until it works */
	/* For the worker's metrics (any thread): a stream is open (the
	 * pushed deletes carried out are the copier's `deleted`). */
	atomic_bool streaming;
	_Atomic uint64_t deltas_sent; /* ChunkDelta messages sent */
	/* Streams opened so far: a pushed copy is acked only on the stream
	 * it came down (heartbeat thread only). */
	uint64_t stream_generation;
	/* Runs the repair copies pushed on a stream (CopyChunk) off this
	 * thread; its counters are the worker's metrics. */
	struct efs_copier copier;
};

/* Loads the stored id (if any) into @ctx and starts the thread. 0 or
 * -errno. */
int efs_heartbeat_start(struct efs_heartbeat *hb, struct efs_worker_ctx *ctx);
/* Stops and joins the thread. */
void efs_heartbeat_stop(struct efs_heartbeat *hb);

#endif
