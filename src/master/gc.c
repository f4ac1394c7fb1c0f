/* SPDX-License-Identifier: MIT */
/* gc.c - session and S3 multipart upload expiry, and chunk collection. */
#include "master/gc.h"
#include "echofs/log.h"
#include "echofs/util.h"
#include "master/cache.h"
#include "master/chunk_backend.h"

#include <string.h>

#define GC_INTERVAL_MS 1000
/* Items one collector pass takes from the metadata, of each kind (expired
 * sessions, unreferenced chunks); the rest wait for the next pass,
 * GC_INTERVAL_MS later. */
#define GC_PASS_ITEMS 128
/* Chunk ids the orphan sweep takes from the backend's listing per pass. */
#define SWEEP_PAGE 1000
/* A full sweep of the listing starts this long after the last ended, or
 * ORPHAN_GRACE_MS when shorter (tests), but at most once a second. */
#define ORPHAN_SWEEP_INTERVAL_MS (10 * 60 * 1000)

static void expire_sessions(struct efs_gc *gc)
{
	char (*ids)[EFS_ID_MAX + 1] = calloc(GC_PASS_ITEMS, sizeof(*ids));
	size_t n = 0;
	if (!ids)
		return;
	if (efs_meta_session_expired(gc->deps.meta, efs_now_ms(), GC_PASS_ITEMS, ids, &n) == 0) {
		for (size_t i = 0; i < n; i++) {
			int r = efs_meta_session_delete(gc->deps.meta, ids[i], efs_now_ms());
			efs_cache_session_forget(gc->deps.cache, ids[i]);
			if (r == 0) {
				atomic_fetch_add(&gc->sessions_expired, 1);
				efs_info("session %s expired: its chunks were released", ids[i]);
			}
		}
	}
	free(ids);
	/* Completed sessions are remembered (for a repeated complete) until
	 * their expiry; then they go too. */
	size_t forgotten = 0;
	int purged = efs_meta_session_done_purge(gc->deps.meta, efs_now_ms(), GC_PASS_ITEMS,
						 &forgotten);
	if (purged == 0 && forgotten > 0)
		efs_debug("%zu completed sessions past their expiry forgotten", forgotten);
}

/* Multipart uploads past their expiry (S3_MULTIPART_EXPIRY after they
 * began) are aborted: their parts' chunks released. Completed ones are
 * kept until then for a retried complete, and forgotten now (on DynamoDB
 * also uploads whose abort or whose complete's cleanup did not finish). A
 * store without multipart uploads answers -ENOTSUP: nothing to do. */
static void expire_s3_uploads(struct efs_gc *gc)
{
	char (*ids)[EFS_ID_MAX + 1] = calloc(GC_PASS_ITEMS, sizeof(*ids));
	size_t n = 0;
	if (!ids)
		return;
	if (efs_meta_s3_upload_expired(gc->deps.meta, efs_now_ms(), GC_PASS_ITEMS, ids, &n) == 0) {
		for (size_t i = 0; i < n; i++) {
			int r = efs_meta_s3_upload_abort(gc->deps.meta, ids[i], NULL, efs_now_ms());
			if (r == 0)
				efs_info("s3 multipart upload %s expired: its parts were released "
					 "(or it was completed and is forgotten)",
					 ids[i]);
			else if (r != -ENOENT)
				efs_warn("s3 multipart upload %s expired but could not be released: "
					 "%s; the next pass retries",
					 ids[i], strerror(-r));
		}
	}
	free(ids);
}

int efs_gc_run_once(struct efs_gc *gc)
{
	char (*ids)[65] = calloc(GC_PASS_ITEMS, sizeof(*ids));
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	size_t n = 0;
	int collected = 0;

	if (!ids)
		return -ENOMEM;
	expire_sessions(gc);
	expire_s3_uploads(gc);
	int64_t now = efs_now_ms();
	int r = efs_meta_garbage_list(gc->deps.meta, now - gc->deps.grace_ms, GC_PASS_ITEMS, ids, &n);
	if (r < 0)
		efs_meta_lease_drop(gc->deps.meta);
	for (size_t i = 0; r == 0 && i < n; i++) {
		unsigned count = 0;
		/* The lease as of now (another duty may have dropped it),
		 * read before the chunk is taken: the workers refuse an epoch
		 * older than one they have seen (docs/OPERATIONS.md#fencing). */
		uint64_t epoch = efs_meta_lease_epoch(gc->deps.meta);
		if (epoch == 0) {
			r = -ESTALE;
			break;
		}
		int t = efs_meta_garbage_take(gc->deps.meta, ids[i], replicas, &count);
		if (t == -ENOENT)
			continue; /* referenced again meanwhile */
		if (t < 0) {
			/* The store may be gone, and the lease with it: no
			 * instruction goes out until it is taken again. */
			efs_meta_lease_drop(gc->deps.meta);
			r = t;
			break;
		}
		/* Each copy goes only if unmodified for grace/2 where it
		 * lives, by that clock (docs/LIFECYCLE.md). */
		int removed = efs_chunk_backend_remove(gc->deps.chunks, ids[i], replicas, count,
						       gc->deps.grace_ms / 2, epoch);
		atomic_fetch_add(&gc->chunks_collected, 1);
		collected++;
		if (removed == -ECANCELED) {
			/* The master is stopping: no more chunks taken (their
			 * rows stay for the next lease holder's pass). */
			r = removed;
			break;
		}
	}
	free(ids);
	if (collected > 0)
		efs_info("collector: %d unreferenced chunks removed", collected);
	return r < 0 ? r : collected;
}

/* Whether the metadata names @listed: a row whose locations include it
 * (or, for a copy without a location, any row: R14). 1 named, 0 not,
 * -errno. */
static int sweep_named(struct efs_gc *gc, const struct efs_chunk_listed *listed)
{
	struct efs_chunk_info info;
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	unsigned count = 0;
	int r = efs_meta_chunk_get(gc->deps.meta, listed->chunk_id, &info, replicas, &count);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	if (!listed->location[0])
		return 1; /* a row without locations: the collector's */
	/* A row names at most EFS_MAX_REPLICAS locations as loaded: one it
	 * did not load (a chunk stored by more uploads at once than that) is
	 * kept rather than judged. */
	if (count >= EFS_MAX_REPLICAS)
		return 1;
	for (unsigned i = 0; i < count; i++)
		if (strcmp(replicas[i].worker_id, listed->location) == 0)
			return 1;
	return 0;
}

int efs_gc_sweep_once(struct efs_gc *gc)
{
	int64_t now = efs_now_ms();
	if (!gc->sweeping && now < gc->next_sweep_ms)
		return 0;
	struct efs_chunk_listed *listed = calloc(SWEEP_PAGE, sizeof(*listed));
	size_t n = 0;
	int removed = 0; /* handed to the conditional remove, which may keep them */
	if (!listed)
		return -ENOMEM;
	int r = efs_chunk_backend_list(gc->deps.chunks, gc->sweep_cursor, SWEEP_PAGE, listed, &n);
	if (r == -ENOTSUP) {
		gc->next_sweep_ms = INT64_MAX; /* the workers report instead */
		r = 0;
		goto out;
	}
	if (r < 0)
		goto out; /* the same page again next pass */
	/* The cursor moved on: a page left half done (the store failed) is
	 * looked at again by the next full sweep. */
	gc->sweeping = gc->sweep_cursor[0] != '\0';
	if (!gc->sweeping) {
		int64_t interval = EFS_MIN((int64_t)ORPHAN_SWEEP_INTERVAL_MS, gc->deps.orphan_grace_ms);
		gc->next_sweep_ms = efs_now_ms() + EFS_MAX(interval, (int64_t)GC_INTERVAL_MS);
	}
	for (size_t i = 0; i < n; i++) {
		const struct efs_chunk_listed *l = &listed[i];
		int named = sweep_named(gc, l);
		if (named < 0) {
			efs_meta_lease_drop(gc->deps.meta);
			r = named;
			goto out;
		}
		if (named)
			continue; /* referenced, or the collector's */
		uint64_t epoch = efs_meta_lease_epoch(gc->deps.meta);
		if (epoch == 0) {
			r = -ESTALE;
			goto out;
		}
		if (efs_chunk_backend_pinned(gc->deps.chunks, l->chunk_id))
			continue; /* being written through this master */
		/* Gone only if not written within ORPHAN_GRACE_MS by the
		 * backend's clock: an upload through another master that has
		 * not recorded it yet keeps it (R3). The backend logs what it
		 * could not delete. */
		struct efs_replica where;
		memset(&where, 0, sizeof(where));
		efs_strlcpy(where.worker_id, l->location, sizeof(where.worker_id));
		if (efs_chunk_backend_remove(gc->deps.chunks, l->chunk_id, &where,
					     l->location[0] ? 1 : 0, gc->deps.orphan_grace_ms,
					     epoch) == 0) {
			efs_debug("orphan sweep: chunk %.12s%s%s is named by no metadata; removed "
				  "unless written within ORPHAN_GRACE_MS",
				  l->chunk_id, l->location[0] ? " at " : "", l->location);
			removed++;
		}
	}
	atomic_fetch_add(&gc->orphans_swept, (uint64_t)removed);
out:
	free(listed);
	return r < 0 ? r : removed;
}

static void gc_main(struct efs_ticker *t, void *ctx)
{
	struct efs_gc *gc = ctx;
	bool failing = false;
	while (!efs_ticker_wait(t, GC_INTERVAL_MS)) {
		/* One master at a time collects (the others wait their turn). */
		if (!efs_meta_lease(gc->deps.meta))
			continue;
		int r = efs_gc_run_once(gc);
		if (r >= 0)
			r = efs_gc_sweep_once(gc);
		/* -ESTALE: the lease was dropped (logged by the store);
		 * -ECANCELED: the master is stopping (efs_gc_stop follows) */
		if (r < 0 && r != -ESTALE && r != -ECANCELED && !failing)
			efs_warn("collector: pass failed: %s (retrying every second)", strerror(-r));
		failing = r < 0;
	}
}

int efs_gc_start(struct efs_gc *gc, const struct efs_gc_deps *deps)
{
	gc->deps = *deps;
	atomic_init(&gc->chunks_collected, 0);
	atomic_init(&gc->sessions_expired, 0);
	atomic_init(&gc->orphans_swept, 0);
	gc->sweep_cursor[0] = '\0';
	gc->sweeping = false;
	/* The first sweep waits one interval: uploads in flight through
	 * other masters at start are not this master's to judge early. */
	gc->next_sweep_ms = efs_now_ms() + EFS_MAX(EFS_MIN((int64_t)ORPHAN_SWEEP_INTERVAL_MS,
							    deps->orphan_grace_ms),
						    (int64_t)GC_INTERVAL_MS);
	return efs_ticker_start(&gc->ticker, gc_main, gc);
}

void efs_gc_stop(struct efs_gc *gc)
{
	efs_ticker_stop(&gc->ticker);
}
