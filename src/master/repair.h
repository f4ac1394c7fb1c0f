/* SPDX-License-Identifier: MIT */
/* repair.h - re-replication: brings every referenced chunk back to
 * REPLICATION_FACTOR good replicas on live workers.
 *
 * Every second the master holding the lease (efs_meta_lease) asks the
 * store for chunks with too few good
 * replicas, counting a dead worker's replicas as still there until it has
 * been dead for REPAIR_AFTER_MS (a worker that only restarts causes no
 * copying). Chunks with the fewest replicas go first. Each is read from a
 * good replica (verified against its SHA-256), written to new workers
 * chosen by placement, and recorded; the replicas marked bad are then
 * forgotten. Copying is paced to REPAIR_BANDWIDTH bytes per second so
 * repair never starves client traffic. The count of under-replicated
 * chunks (good replicas on live workers only) is kept for /health.
 *
 * Erasure-coded chunks (issue 17) are repaired by rebuilding: a stripe
 * with fewer than K + M good shard rows (a shard lost, corrupt, or on a
 * worker dead for REPAIR_AFTER_MS) has its missing shards reconstructed
 * from K good ones and written to live workers holding no good shard of
 * it (efs_chunk_ec_rebuild), recorded, and only then are the replaced rows
 * removed. They are taken in the same list as replicated chunks, by how
 * many further losses each survives, and paced by the same knobs; a
 * stripe with fewer than K good shards is counted (ec_unrecoverable) and
 * logged once, never rebuilt into wrong bytes.
 *
 * Counting them scans every referenced chunk (a million: about a second
 * on SQLite). A pass that finds nothing to do makes the next one wait
 * REPAIR_IDLE_SHARE times as long as its count took (at least the second),
 * so an idle master spends at most about a tenth of a core on it however
 * large the store; a pass that finds work is followed by the next at once,
 * as before (docs/PERFORMANCE.md#costs-at-a-million-files).
 */
#ifndef ECHOFS_MASTER_REPAIR_H
#define ECHOFS_MASTER_REPAIR_H

#include "echofs/ticker.h"

#include <stdatomic.h>
#include <stdint.h>

struct efs_chunk_io;
struct efs_meta;
struct efs_placement;

/* What re-replication works with: parts borrowed from the master (which
 * outlives the loop) and the settings it follows. */
struct efs_control;
struct efs_ec_converter;

#define EFS_REPAIR_LOGGED_MAX 256

struct efs_repair_deps {
	struct efs_meta *meta;           /* under-replicated chunks, new replicas */
	struct efs_placement *placement; /* where new copies go */
	struct efs_chunk_io *chunk_io;   /* reading and writing the copies */
	unsigned replication_factor;
	int64_t worker_dead_after_ms;
	int64_t repair_after_ms;         /* a dead worker's copies are replaced after this */
	uint64_t bandwidth;              /* bytes/s copied at most */
	/* Copies to a worker with a control stream go down it (CopyChunk);
	 * NULL: every copy is written over HTTP. */
	struct efs_control *control;
	/* Conversion of old replicated files to EC, run after each pass in
	 * this loop's thread (ec_convert.h); NULL: none. */
	struct efs_ec_converter *convert;
};

struct efs_repair {
	struct efs_repair_deps deps;
	struct efs_ticker ticker;
	/* Set by efs_repair_stop: a pass waiting for pushed copies' Acks gives
	 * up (efs_control_collect's cancel). */
	atomic_bool stopping;
	_Atomic int64_t under_replicated; /* -1 until the first pass */
	/* Chunks repaired since start, each once, when done: its copies
	 * written over HTTP, or every pushed copy acknowledged and recorded
	 * (one that failed counts when its HTTP retry writes it); an EC chunk
	 * when shards were rebuilt. */
	_Atomic uint64_t repaired_total;
	_Atomic uint64_t failed_total;     /* copies that failed */
	_Atomic int64_t ec_degraded;       /* EC chunks short of K + M good shards; -1 until known */
	_Atomic int64_t ec_unrecoverable;  /* ... short of K; -1 until known */
	_Atomic uint64_t ec_shards_rebuilt_total;
	/* The last unrecoverable stripes logged, so each is logged once
	 * (while fewer than EFS_REPAIR_LOGGED_MAX others are logged after it). */
	char unrecoverable_logged[EFS_REPAIR_LOGGED_MAX][65];
	unsigned unrecoverable_next;
	/* Loop thread only. */
	int64_t store_ok_since; /* monotonic ms: the store answered since then */
	int64_t backoff_until;  /* monotonic ms: no pass before */
	/* The digest of the workers repair counted (efs_placement_heard_digest
	 * after its holding_after) when the pass before the back-off listed
	 * its chunks (watched: it was read): a change ends the back-off. */
	uint64_t backoff_counted;
	bool backoff_watched;
	int64_t idle_until;     /* monotonic ms: the last pass found nothing; none before */
};

/* Starts the loop with @deps (copied). 0 or -errno. */
int efs_repair_start(struct efs_repair *rp, const struct efs_repair_deps *deps);
/* Stops the loop promptly: a pass waiting for pushed copies' Acks stops
 * waiting (the copies are forgotten: a late Ack touches nothing) and ends
 * without writing their chunks over HTTP. Does nothing if not started. */
void efs_repair_stop(struct efs_repair *rp);

#endif
