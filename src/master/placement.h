/* SPDX-License-Identifier: MIT */
/* placement.h - choose which workers receive a chunk's replicas.
 *
 * Candidates are the live workers with room for the chunk, never two on
 * one worker or one URL, never an excluded one (already holding the chunk,
 * or just failed). Among them the choice is random, weighted by free space
 * divided by (1 + the writes this master has in flight to the worker), so
 * emptier and idler workers get more and a burst does not pile on one.
 */
#ifndef ECHOFS_MASTER_PLACEMENT_H
#define ECHOFS_MASTER_PLACEMENT_H

#include "master/registry.h"

#include <pthread.h>

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
	} load[EFS_PLACEMENT_LOAD_SLOTS];
};

/* Sets up @p to choose among @registry's workers (which must outlive it),
 * with no write in flight. */
void efs_placement_init(struct efs_placement *p, struct efs_registry *registry);
void efs_placement_release(struct efs_placement *p);

/* Free space a worker must have beyond a chunk's bytes to be chosen for
 * it: the record's header and trailer, the filesystem's block rounding and
 * the store's small files (the clean marker). Without it a worker with
 * exactly the chunk's size free is chosen and answers 507. */
#define EFS_PLACEMENT_FREE_MARGIN (16 * 1024)

/* Chooses up to @want targets for @need_bytes: live workers, not in
 * @exclude, with at least @need_bytes + EFS_PLACEMENT_FREE_MARGIN free as
 * last reported. Returns how many were chosen (possibly fewer than @want,
 * possibly 0) or a store error. */
int efs_placement_choose(struct efs_placement *p, unsigned want, uint64_t need_bytes,
			 const struct efs_target *exclude, size_t exclude_count,
			 struct efs_target *out);
/* Counts the live workers. */
int efs_placement_live_count(struct efs_placement *p, size_t *alive);

/* Writes in flight to a worker, for the load part of the weighting. */
void efs_placement_load_add(struct efs_placement *p, const char *worker_id, int delta);
/* The writes in flight to a worker, as the weighting sees them. */
int efs_placement_load(struct efs_placement *p, const char *worker_id);

#endif
