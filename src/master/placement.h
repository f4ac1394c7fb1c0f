/* SPDX-License-Identifier: MIT */
/* placement.h - choose which workers receive a chunk's replicas.
 *
 * Candidates are the live workers with room for the chunk, never two on
 * one worker or one URL, never an excluded one (already holding the chunk,
 * or just failed). Among them the choice is random, weighted by free space
 * divided by (1 + the writes this master has in flight to the worker), so
 * emptier and idler workers get more and a burst does not pile on one.
 *
 * Zones (failure domains): a worker declares one with WORKER_ZONE; a
 * worker without one is a zone of its own. Every pick is made among the
 * candidates of the zones that hold the fewest copies of the chunk so far
 * (counting the workers that hold it already, @held), and only then by
 * the weighting above. So the copies (replicas, or an EC stripe's shards)
 * land in as many distinct zones as the candidates allow, and with fewer
 * zones than copies they are spread evenly: no zone gets one more while
 * another zone with a candidate left holds fewer (so none holds more than
 * ceil(copies / zones) when every zone has room; held copies already over
 * that are not moved). Without zones every worker is a zone of its own
 * and the choice is exactly the weighted one.
 *
 * Slow workers: a transfer to or from a worker that chunk_io gave up on
 * for moving under SLOW_WORKER_MIN_RATE (not a stall), or one that
 * finished under that rate (efs_placement_finished_slowly), marks the
 * worker slow for SLOW_WORKER_AVOID_MS (each such abandon starts the time
 * again). While a worker is slow, placement chooses it only when the
 * workers that are not slow cannot fill the request (so the replication
 * factor is still met with exactly that many live workers) or the spread
 * over zones needs it (zones come first: a slow worker is chosen rather
 * than a second copy in one zone), and reads try its replicas last. The mark expires by itself: a recovered worker is
 * chosen again once its time is over.
 */
#ifndef ECHOFS_MASTER_PLACEMENT_H
#define ECHOFS_MASTER_PLACEMENT_H

#include "master/registry.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define EFS_PLACEMENT_LOAD_SLOTS 256

struct efs_target {
	char worker_id[EFS_ID_MAX + 1];
	char url[EFS_URL_MAX + 1];
};

/* One master's placement: the registry it picks live workers from, and
 * the writes it has in flight per worker (a small open table, never
 * shared with another master). */
struct efs_placement {
	struct efs_registry *registry;
	pthread_mutex_t load_lock;
	struct {
		char worker_id[EFS_ID_MAX + 1];
		int inflight;
		int64_t slow_until_ms; /* efs_now_ms() before which it is slow; 0 */
	} load[EFS_PLACEMENT_LOAD_SLOTS];
	/* The slowness policy (SLOW_WORKER_MIN_RATE, SLOW_WORKER_AVOID_MS). */
	int64_t slow_min_rate; /* bytes/s; 0: no min-rate rule */
	int64_t slow_avoid_ms; /* how long an abandon marks a worker slow; 0: never */
	/* Transfers given up for slowness, since start (metrics). */
	_Atomic uint64_t slow_abandons_write, slow_abandons_read;
};

/* Sets up @p to choose among @registry's workers (which must outlive it),
 * with no write in flight, no worker slow, and the default slowness
 * policy (EFS_PLACEMENT_DEFAULT_SLOW_*). */
void efs_placement_init(struct efs_placement *p, struct efs_registry *registry);
/* Sets the slowness policy: @min_rate bytes/s (0: none), @avoid_ms (0:
 * abandons mark nothing). Before the first choice. */
void efs_placement_set_slowness(struct efs_placement *p, int64_t min_rate, int64_t avoid_ms);

#define EFS_PLACEMENT_DEFAULT_SLOW_MIN_RATE (2 * 1024 * 1024)
#define EFS_PLACEMENT_DEFAULT_SLOW_AVOID_MS 60000
void efs_placement_release(struct efs_placement *p);

/* Free space a worker must have beyond a chunk's bytes to be chosen for
 * it: the record's header and trailer, the filesystem's block rounding and
 * the store's small files (the clean marker). Without it a worker with
 * exactly the chunk's size free is chosen and answers 507. */
#define EFS_PLACEMENT_FREE_MARGIN (16 * 1024)

/* Chooses up to @want targets for @need_bytes, spread over zones (see
 * the top of this file): live workers, not in @held nor @exclude, with at
 * least @need_bytes + EFS_PLACEMENT_FREE_MARGIN free as last reported.
 * @held are the workers holding the chunk already (their zones count as
 * used, matched by worker id); @exclude others it must not go to (tried
 * and failed: their zones do not count). Sets *@candidates to how many
 * workers were eligible, chosen ones included: more than the return value
 * means a replacement exists. Returns how many were chosen (possibly
 * fewer than @want, possibly 0), -ENOMEM or a store error. */
int efs_placement_choose_spread(struct efs_placement *p, unsigned want, uint64_t need_bytes,
				const struct efs_target *held, size_t held_count,
				const struct efs_target *exclude, size_t exclude_count,
				struct efs_target *out, size_t *candidates);
/* efs_placement_choose_spread with @exclude as the holders (@held) and
 * nothing else excluded: for callers whose exclusions all hold the chunk. */
int efs_placement_choose(struct efs_placement *p, unsigned want, uint64_t need_bytes,
			 const struct efs_target *exclude, size_t exclude_count,
			 struct efs_target *out);
/* The same, with the count of eligible workers in *@candidates. */
int efs_placement_choose_counted(struct efs_placement *p, unsigned want, uint64_t need_bytes,
				 const struct efs_target *exclude, size_t exclude_count,
				 struct efs_target *out, size_t *candidates);
/* Counts the live workers. */
int efs_placement_live_count(struct efs_placement *p, size_t *alive);
/* A digest of which workers were heard from after @heard_after_ms (Unix
 * ms; the registry's cached list, at most EFS_REGISTRY_CACHE_MS old) into
 * *@digest: two equal digests mean, short of a 64-bit collision, the same
 * set of workers. 0 or -errno. */
int efs_placement_heard_digest(struct efs_placement *p, int64_t heard_after_ms, uint64_t *digest);

/* Writes in flight to a worker, for the load part of the weighting. */
void efs_placement_load_add(struct efs_placement *p, const char *worker_id, int delta);
/* The writes in flight to a worker, as the weighting sees them. */
int efs_placement_load(struct efs_placement *p, const char *worker_id);

/* A transfer to (@write) or from a worker was given up for slowness:
 * counts it and marks the worker slow for the policy's avoid time from
 * now. Returns true when the worker was not slow before (the caller logs
 * the change once). */
bool efs_placement_note_slow(struct efs_placement *p, const char *worker_id, bool write);
/* Marks the worker slow as above without counting an abandon (a transfer
 * that finished, but under the minimum rate). Same return. */
bool efs_placement_mark_slow(struct efs_placement *p, const char *worker_id);
/* Whether a transfer of @bytes that finished in @elapsed_ms went under
 * the minimum rate: judged only for transfers of a second or more and of
 * at least EFS_PLACEMENT_SLOW_JUDGE_BYTES, where the rate is the link's
 * or the disk's and not a latency (a slow fsync of a small chunk). */
#define EFS_PLACEMENT_SLOW_JUDGE_BYTES (512 * 1024)
bool efs_placement_finished_slowly(const struct efs_placement *p, uint64_t bytes,
				   int64_t elapsed_ms);
/* Milliseconds the worker stays marked slow; 0 when it is not. */
int64_t efs_placement_slow_for_ms(struct efs_placement *p, const char *worker_id);

#endif
