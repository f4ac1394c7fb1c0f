/* SPDX-License-Identifier: MIT */
/* scrub.c - periodic verification of every stored chunk.
 *
 * Each chunk is checked in pieces (efs_store_verify): the scrubber holds
 * EFS_STORE_VERIFY_PIECE bytes of it at a time, whatever the chunk's size,
 * and keeps nothing between chunks. */
#include "worker/scrub.h"
#include "echofs/log.h"
#include "echofs/pace.h"
#include "echofs/util.h"
#include "worker/context.h"

#include <string.h>

#define FIRST_PASS_MAX_DELAY_MS (5 * 60 * 1000)

struct id_list {
	char (*ids)[65];
	size_t count, alloc;
};

static int collect(void *ctx, const char *chunk_id, uint64_t length, int64_t mtime_ms)
{
	struct id_list *l = ctx;
	if (l->count == l->alloc) {
		size_t grow = l->alloc ? l->alloc * 2 : 1024;
		void *p = realloc(l->ids, grow * sizeof(*l->ids));
		if (!p)
			return -ENOMEM;
		l->ids = p;
		l->alloc = grow;
	}
	efs_strlcpy(l->ids[l->count++], chunk_id, 65);
	return 0;
}

/* One pass over every chunk. Returns false when asked to stop. */
static bool scrub_pass(struct efs_scrub *sc)
{
	struct efs_worker_ctx *ctx = sc->ctx;
	struct id_list list = {0};
	uint64_t bytes = 0, corrupt = 0;
	int64_t started = efs_mono_ms();
	struct efs_pace pace;
	bool go_on = true;

	efs_pace_init(&pace, ctx->cfg->scrub_bandwidth);
	/* The ids first: the walk does not hold directories open while it
	 * sleeps, and chunks written meanwhile wait for the next pass. */
	if (efs_store_iterate(ctx->store, collect, &list) < 0) {
		free(list.ids);
		return true;
	}
	for (size_t i = 0; i < list.count; i++) {
		uint64_t length = 0;
		int r = efs_store_verify(ctx->store, list.ids[i], &length);
		atomic_fetch_add(&sc->chunks_checked, 1);
		if (r == -EBADMSG) {
			corrupt++;
			atomic_fetch_add(&sc->corrupt_found, 1);
			efs_error("scrub: chunk %s failed its checksum: quarantined, reporting it",
				  list.ids[i]);
			efs_lost_queue_push(&ctx->lost, list.ids[i]);
		}
		bytes += length; /* 0 unless it checked */
		int64_t ahead = efs_pace_add(&pace, length);
		if (ahead > 0 && efs_ticker_wait(&sc->ticker, ahead)) {
			go_on = false;
			break;
		}
	}
	atomic_fetch_add(&sc->passes, 1);
	efs_debug("scrub: pass over %zu chunks (%llu bytes) in %lld ms, %llu corrupt", list.count,
		  (unsigned long long)bytes, (long long)(efs_mono_ms() - started),
		  (unsigned long long)corrupt);
	free(list.ids);
	return go_on;
}

static void scrub_main(struct efs_ticker *t, void *ctx)
{
	struct efs_scrub *sc = ctx;
	int64_t interval = sc->ctx->cfg->scrub_interval_ms;
	/* The first pass comes within 5 minutes of a start, so a worker that
	 * restarts more often than SCRUB_INTERVAL_MS is still scrubbed. */
	int64_t wait_ms = EFS_MIN(interval, FIRST_PASS_MAX_DELAY_MS);
	for (;;) {
		if (efs_ticker_wait(t, wait_ms))
			break;
		int64_t started = efs_mono_ms();
		if (!scrub_pass(sc))
			break;
		/* Passes start SCRUB_INTERVAL_MS apart (or back to back when a
		 * pass takes longer than that). */
		wait_ms = EFS_MAX(interval - (efs_mono_ms() - started), 0);
	}
}

int efs_scrub_start(struct efs_scrub *sc, struct efs_worker_ctx *ctx)
{
	sc->ctx = ctx;
	atomic_init(&sc->passes, 0);
	atomic_init(&sc->chunks_checked, 0);
	atomic_init(&sc->corrupt_found, 0);
	return efs_ticker_start(&sc->ticker, scrub_main, sc);
}

void efs_scrub_stop(struct efs_scrub *sc)
{
	efs_ticker_stop(&sc->ticker);
}
