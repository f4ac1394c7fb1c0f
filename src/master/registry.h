/* SPDX-License-Identifier: MIT */
/* registry.h - the master's view of its workers: registration, heartbeats,
 * and liveness.
 *
 * A worker is alive while its last heartbeat (or registration) is at most
 * WORKER_DEAD_AFTER_MS old; otherwise it is dead for reads and placement.
 * The registry keeps no state of its own: every record lives in the
 * metadata store, so several masters over one store agree on it. With
 * Redis, each heartbeat lands there as a key that expires after
 * WORKER_DEAD_AFTER_MS (alive = the key exists, the same for every
 * master), and the store's copy of the heartbeat is refreshed only every
 * quarter of that period, which takes most of the write load off it.
 *
 * Placement reads the list through a short-lived copy
 * (efs_registry_list_cached): at most EFS_REGISTRY_CACHE_MS old, emptied
 * at once when this master registers a worker or takes a heartbeat from a
 * worker the copy does not show alive, and patched in place (capacity,
 * free space) by every other heartbeat this master takes. Another
 * master's registrations and heartbeats, and deaths, reach it at most
 * EFS_REGISTRY_CACHE_MS late. Health, /api/v1/workers and metrics read
 * the store every time (efs_registry_list).
 */
#ifndef ECHOFS_MASTER_REGISTRY_H
#define ECHOFS_MASTER_REGISTRY_H

#include "echofs/meta.h"
#include "echofs/redis.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Most workers this master stamps in memory at once (more beat through
 * the store, as HTTP beats do). */
#define EFS_REGISTRY_STAMPS_MAX 65536

/* A stream worker's latest beat, held in memory until the flusher writes
 * it (efs_registry_stamp). */
struct efs_registry_stamp {
	char worker_id[EFS_ID_MAX + 1];
	uint64_t capacity_bytes, free_bytes, chunk_count;
	int64_t at_ms;	       /* efs_now_ms() of its latest beat */
	/* efs_now_ms() of its latest beat heard while one went through the
	 * store (efs_registry_heard): alive here, not fresh for a stamp */
	int64_t heard_ms;
	uint64_t flushed_free; /* free_bytes as last written to the store */
	bool dirty;	       /* beat since the last write */
};

/* Longest time efs_registry_list_cached serves one read of the store. */
#define EFS_REGISTRY_CACHE_MS 250
/* Most workers at once that owe this master a full report after a rejoin
 * (more are asked once, by the answer to the beat that found them dead). */
#define EFS_REGISTRY_REPORT_WANTED_MAX 1024

struct efs_registry {
	struct efs_meta *meta;
	struct efs_redis *redis; /* NULL without REDIS_ADDR */
	int64_t dead_after_ms;
	/* efs_registry_list_cached's copy, under cache_lock. */
	pthread_mutex_t cache_lock;
	struct efs_worker_status *cache; /* NULL: no copy */
	size_t cache_count;
	/* Hash index of the copy by worker id (a power of two of slots, each
	 * an index + 1, 0 free; NULL: look up by a walk), so that a beat
	 * patches its worker without a walk over a thousand ids. */
	uint32_t *cache_index;
	size_t cache_index_size;
	int64_t cache_at_ms;	   /* efs_mono_ms() of the read behind it */
	uint64_t cache_generation; /* bumped when the copy is dropped */
	/* Rejoined workers asked for a full report that has not begun yet,
	 * under cache_lock: every heartbeat answer asks again until one whose
	 * snapshot follows the ask is under way (an answer can be lost: the
	 * beat that found the worker dead may be one a healed link delivered
	 * late, whose sender gave up on it). Not until it ends: beats answered
	 * during a long report would each ask for one more after it. */
	struct efs_registry_ids {
		char (*ids)[EFS_ID_MAX + 1]; /* EFS_REGISTRY_REPORT_WANTED_MAX, lazily */
		int64_t *asked_ms;	     /* parallel: efs_now_ms() of the latest ask */
		size_t count;
	} report_wanted;
	/* Workers a chunk write to failed in transport (timeout, stall,
	 * reset) since their last good write, under cache_lock: the bytes may
	 * still land later (a healed link delivers what it held), as a copy
	 * no replica row names. The next good write asks for a report. */
	struct efs_registry_ids late_writes;
	/* When this master last heard from each worker (efs_mono_ms() in
	 * asked_ms): the end of its last heartbeat here, or a report batch's
	 * arrival. Under cache_lock. */
	struct efs_registry_ids contact;
	/* REPAIR_AFTER_MS (0 until set): a worker this master kept hearing
	 * from is counted as rejoining only when its store record was older
	 * than WORKER_DEAD_AFTER_MS + this, i.e. when repair may have copied
	 * its chunks meanwhile. */
	int64_t repair_after_ms;
	/* Stream beats stamped in memory (efs_registry_stamp) and their
	 * flusher. stamp_lock guards the table, flush_urgent, flusher_stop;
	 * flush_lock is held across a whole flush and by efs_registry_suspect,
	 * so that no flush writes a beat after the worker was suspected. */
	pthread_mutex_t stamp_lock, flush_lock;
	pthread_cond_t flush_wake; /* CLOCK_MONOTONIC */
	struct efs_registry_stamp *stamps;
	size_t stamp_count, stamp_alloc;
	bool flush_urgent, flusher_stop, flusher_running;
	pthread_t flusher;
	/* A stamp whose free space crosses this line (either way) since the
	 * last flush is written at once: placement on every master must see
	 * a worker fill up (and free up) without waiting a quarter period.
	 * 0: only a change of an eighth of the capacity counts. */
	uint64_t full_below_bytes;
	/* Counters for /metrics: flushes done, beats they wrote, stamps. */
	_Atomic uint64_t flushes, flushed_beats, stamped_beats;
};

struct efs_worker_status {
	struct efs_worker_info info;
	bool alive;
};

void efs_registry_init(struct efs_registry *reg, struct efs_meta *meta, struct efs_redis *redis,
		       int64_t dead_after_ms);
/* Frees the cached list; a zeroed, never initialised registry is accepted. */
void efs_registry_release(struct efs_registry *reg);

/* Registers a worker at @url in failure domain @zone (efs_zone_valid;
 * "" or NULL: none, a zone of its own; a registration replaces the zone
 * recorded before). With @worker_id NULL a new id is made; otherwise the
 * worker keeps that id (a restart). The id is written to @out_id
 * (EFS_ID_MAX + 1 bytes). Other records at the same URL are the same
 * machine under an old id: they are marked dead. -EINVAL for an invalid
 * zone. */
int efs_registry_register(struct efs_registry *reg, const char *worker_id, const char *url,
			  const char *zone, uint64_t capacity_bytes, uint64_t free_bytes,
			  uint64_t chunk_count, char *out_id);
/* Records a heartbeat; -ENOENT for an unknown worker (it registers again).
 * @rejoined (may be NULL) is set to true when the worker was dead just
 * before this beat (its last one older than WORKER_DEAD_AFTER_MS, and no
 * live Redis key; older than WORKER_DEAD_AFTER_MS + repair_after_ms when
 * this master answered one of its beats or took one of its report batches
 * within WORKER_DEAD_AFTER_MS: a worker that kept talking while this
 * master, or its store, was slow to record its beats was not cut off, and
 * asking it for a report would only load the store more), or was so at an earlier beat and has not finished a
 * full report since (efs_registry_report_done), or a chunk write to it
 * succeeded after writes to it were given up (efs_registry_note_write): a
 * worker that was cut off and comes back without restarting. Its chunks
 * may have been repaired elsewhere and files deleted meanwhile, so the
 * caller asks it for a full chunk report at once. It costs no store read
 * while this master's cached list shows the worker beating recently (the
 * usual case); otherwise one read of its record (and, with Redis, one
 * EXISTS). Untouched on error. */
int efs_registry_heartbeat(struct efs_registry *reg, const char *worker_id,
			   uint64_t capacity_bytes, uint64_t free_bytes, uint64_t chunk_count,
			   bool *rejoined);
/* Stream beats (the gRPC control plane). An open, beating stream is this
 * master's proof of the worker's life, so a stream beat is only stamped
 * in memory; one flusher writes the stamps of every stream worker that
 * beat since its last pass to the store (one transaction) and to Redis
 * (one pipeline, each key expiring WORKER_DEAD_AFTER_MS after the beat it
 * records), every WORKER_DEAD_AFTER_MS / 4, and at once when a worker's
 * free space crosses full_below_bytes or moves by an eighth of its
 * capacity. Other masters thus see a stream worker's liveness at most a
 * quarter period (plus one interval) late, well within
 * WORKER_DEAD_AFTER_MS; this master patches its placement copy at every
 * beat. A broken stream still suspects the worker at once
 * (efs_registry_suspect drops its stamp first).
 *
 * efs_registry_stamp: the beat of a worker stamped within
 * WORKER_DEAD_AFTER_MS / 2 is stamped again, in memory only: 0, with
 * *@rejoined true while the worker still owes a rejoin report (as
 * efs_registry_heartbeat). -EAGAIN: no fresh stamp (the stream's first
 * beat, or one after a gap, which may be a rejoin), or no room: call
 * efs_registry_stream_heartbeat from a thread that may wait for the
 * store. Never blocks on I/O. */
int efs_registry_stamp(struct efs_registry *reg, const char *worker_id, uint64_t capacity_bytes,
		       uint64_t free_bytes, uint64_t chunk_count, bool *rejoined);
/* A beat of @worker_id's stream that goes through the store
 * (efs_registry_stream_heartbeat, queued: the stamp was not fresh, or a
 * beat is already queued or under way): while that write waits for a
 * slow or locked store, the stream still proves the worker alive on this
 * master (R17), so a stamp within WORKER_DEAD_AFTER_MS is kept alive (for
 * efs_registry_list and the flusher's drop), though not fresh for
 * efs_registry_stamp: the rejoin check stays the store's. A worker with
 * no stamp, or one already past the limit here, is left to the store.
 * Never blocks on I/O. */
void efs_registry_heard(struct efs_registry *reg, const char *worker_id);
/* efs_registry_heartbeat (the store, the rejoin check), then stamps the
 * worker so that its next beats take efs_registry_stamp's fast path. */
int efs_registry_stream_heartbeat(struct efs_registry *reg, const char *worker_id,
				  uint64_t capacity_bytes, uint64_t free_bytes,
				  uint64_t chunk_count, bool *rejoined);
/* Writes every stamp that changed since the last flush (as the flusher
 * does) and drops stamps older than WORKER_DEAD_AFTER_MS; a stamp whose
 * worker the store does not know is dropped too (its next beat goes to
 * efs_registry_stream_heartbeat, which answers -ENOENT). 0 or the store's
 * error (those stamps are written at the next flush). */
int efs_registry_flush(struct efs_registry *reg);
/* Starts / stops the flusher thread (0 or -errno); stop is a no-op when
 * not started and flushes once more before it returns. */
int efs_registry_flusher_start(struct efs_registry *reg);
void efs_registry_flusher_stop(struct efs_registry *reg);

/* A request from @worker_id arrived (a report batch): it is talking to
 * this master, however slowly the store records its beats. */
void efs_registry_note_contact(struct efs_registry *reg, const char *worker_id);
/* A full report of @worker_id ended (its last batch): it owes no report
 * for a rejoin any more. */
void efs_registry_report_done(struct efs_registry *reg, const char *worker_id);
/* Asks @worker_id for a full chunk report from now on (its beats say so
 * until a report begun later is under way): the master could not ask it
 * whether it holds chunk @chunk_id and wrote a copy elsewhere in its place,
 * so its own copy, if it is still there, is a surplus replica that only
 * its report can trim (a worker whose beats arrive is never counted dead,
 * so no rejoin report comes). */
void efs_registry_ask_report(struct efs_registry *reg, const char *worker_id,
			     const char *chunk_id);
/* A batch of a full report of @worker_id whose snapshot was taken after
 * @master_started_ms (a master's clock, the "master_started_ms" the worker
 * sends) arrived: a rejoin ask made at or before that time is answered, and
 * heartbeats stop asking. An ask made later (the worker was counted dead
 * again during the report: repair may have copied its chunks since the
 * snapshot) stands. */
void efs_registry_report_begun(struct efs_registry *reg, const char *worker_id,
			       int64_t master_started_ms);
/* The outcome of a chunk write to @worker_id: @ok false for a transport
 * failure (the master gave up; the bytes may land later). The first good
 * write after such failures means the link works again: the worker is
 * then asked for a full report at its next heartbeat (as a rejoined one),
 * so a late copy is listed, kept while younger than ORPHAN_GRACE_MS and
 * deleted by the follow-up report the master asks for
 * ("report_again_in_ms"). */
void efs_registry_note_write(struct efs_registry *reg, const char *worker_id, bool ok);
/* @worker_id's control stream to this master broke (control.c): its
 * stamp is dropped (waiting for a flush under way), and it is suspect now and dead @grace_ms from now unless it beats again (on a new
 * stream or over HTTP), or WORKER_DEAD_AFTER_MS after its last beat if
 * that is sooner (a grace never extends a life). Its recorded last beat
 * is moved back (never forward) to now - WORKER_DEAD_AFTER_MS +
 * @grace_ms, and its Redis key expires in @grace_ms when that is shorter
 * than WORKER_DEAD_AFTER_MS (else the last beat's key expires first), so
 * every master over the store agrees; the cached list is dropped. Repair counts from the death as always (REPAIR_AFTER_MS later).
 * 0, -ENOENT (unknown worker) or the store's error. */
int efs_registry_suspect(struct efs_registry *reg, const char *worker_id, int64_t grace_ms);
/* Every worker with its liveness at this moment. *out is malloc'd. */
int efs_registry_list(struct efs_registry *reg, struct efs_worker_status **out, size_t *count);
/* The same from the cached copy (see the top of this file): liveness as of
 * at most EFS_REGISTRY_CACHE_MS ago. *out is malloc'd (the caller's own
 * copy); thread-safe. */
int efs_registry_list_cached(struct efs_registry *reg, struct efs_worker_status **out,
			     size_t *count);
/* Live and total worker counts, read from the store. */
int efs_registry_count(struct efs_registry *reg, size_t *alive, size_t *total);
/* The same from the cached copy. */
int efs_registry_count_cached(struct efs_registry *reg, size_t *alive, size_t *total);

#endif
