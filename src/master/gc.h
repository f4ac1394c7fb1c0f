/* SPDX-License-Identifier: MIT */
/* gc.h - the master's collector: ends expired sessions and removes
 * unreferenced chunks from the chunk backend.
 *
 * Every second, on the master holding the lease (efs_meta_lease): expired
 * sessions release their chunks; chunks unreferenced
 * for longer than GC_GRACE_MS have their metadata removed (in one
 * transaction that re-checks the count) and then the backend removes every
 * copy (efs_chunk_backend_remove) unless modified within grace/2. On the
 * worker backend a DELETE goes to each worker that held a replica,
 * carrying X-Unmodified-For-Ms = grace/2, a duration the worker measures
 * on its own clock from its own write time, so a replica stored again
 * after the decision (a new upload of the same bytes) is kept by the
 * worker whatever the clock skew. A replica the worker could not delete
 * (worker down) stays behind as an orphan, for the worker's chunk report
 * to find (docs/LIFECYCLE.md, T13).
 *
 * A backend that lists its chunks (S3) has no reports: the lease holder
 * also sweeps its listing, one page per pass, and removes each chunk the
 * metadata has no row for, that this master is not writing (pinned), and
 * that was last written more than ORPHAN_GRACE_MS ago by the backend's
 * clock (the conditional remove with that duration). A full sweep starts
 * again ORPHAN_SWEEP_INTERVAL after the last one ended (LIFECYCLE T14-S3).
 */
#ifndef ECHOFS_MASTER_GC_H
#define ECHOFS_MASTER_GC_H

#include "echofs/ticker.h"
#include "master/chunk_backend.h"

#include <stdatomic.h>
#include <stdint.h>

struct efs_cache;
struct efs_chunk_backend;
struct efs_meta;

/* What the collector works with, all borrowed from the master (which
 * outlives the collector). */
struct efs_gc_deps {
	struct efs_meta *meta;	      /* expired sessions, unreferenced chunks */
	struct efs_cache *cache;      /* expired sessions are forgotten there */
	struct efs_chunk_backend *chunks; /* the conditional deletes */
	int64_t grace_ms;	      /* unreferenced chunks are kept this long */
	int64_t orphan_grace_ms;      /* the orphan sweep keeps younger objects */
};

struct efs_gc {
	struct efs_gc_deps deps;
	struct efs_ticker ticker;
	_Atomic uint64_t chunks_collected; /* since start */
	_Atomic uint64_t sessions_expired; /* since start */
	/* Objects without metadata the sweep handed to the conditional
	 * remove (kept when younger than ORPHAN_GRACE_MS), since start. */
	_Atomic uint64_t orphans_swept;
	/* The sweep's position (the collector's thread only). */
	char sweep_cursor[EFS_CHUNK_LIST_CURSOR_MAX];
	int64_t next_sweep_ms; /* when the next full sweep may begin */
	bool sweeping;	       /* a sweep is between its pages */
};

/* Starts the collector's loop with @deps (copied). 0 or -errno. */
int efs_gc_start(struct efs_gc *gc, const struct efs_gc_deps *deps);
void efs_gc_stop(struct efs_gc *gc);
/* One pass now (tests and the loop). Returns chunks collected or -errno;
 * -ECANCELED when the master stopping ended it (a remove that did not wait:
 * efs_chunk_backend_remove). */
int efs_gc_run_once(struct efs_gc *gc);
/* One page of the orphan sweep, when one is due (the loop). Returns the
 * orphans handed to the conditional remove, 0 when not due or for a backend without a listing, or
 * -errno. */
int efs_gc_sweep_once(struct efs_gc *gc);

#endif
