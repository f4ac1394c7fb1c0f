/* SPDX-License-Identifier: MIT */
/* gc.c - session expiry and chunk collection. */
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

int efs_gc_run_once(struct efs_gc *gc)
{
	char (*ids)[65] = calloc(GC_PASS_ITEMS, sizeof(*ids));
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	size_t n = 0;
	int collected = 0;

	if (!ids)
		return -ENOMEM;
	expire_sessions(gc);
	int64_t now = efs_now_ms();
	int r = efs_meta_garbage_list(gc->deps.meta, now - gc->deps.grace_ms, GC_PASS_ITEMS, ids, &n);
	for (size_t i = 0; r == 0 && i < n; i++) {
		unsigned count = 0;
		int t = efs_meta_garbage_take(gc->deps.meta, ids[i], replicas, &count);
		if (t == -ENOENT)
			continue; /* referenced again meanwhile */
		if (t < 0) {
			r = t;
			break;
		}
		/* Each copy goes only if unmodified for grace/2 where it
		 * lives, by that clock (docs/LIFECYCLE.md). */
		efs_chunk_backend_remove(gc->deps.chunks, ids[i], replicas, count,
					 gc->deps.grace_ms / 2);
		atomic_fetch_add(&gc->chunks_collected, 1);
		collected++;
	}
	free(ids);
	if (collected > 0)
		efs_info("collector: %d unreferenced chunks removed", collected);
	return r < 0 ? r : collected;
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
		if (r < 0 && !failing)
			efs_warn("collector: pass failed: %s (retrying every second)", strerror(-r));
		failing = r < 0;
	}
}

int efs_gc_start(struct efs_gc *gc, const struct efs_gc_deps *deps)
{
	gc->deps = *deps;
	atomic_init(&gc->chunks_collected, 0);
	atomic_init(&gc->sessions_expired, 0);
	return efs_ticker_start(&gc->ticker, gc_main, gc);
}

void efs_gc_stop(struct efs_gc *gc)
{
	efs_ticker_stop(&gc->ticker);
}
