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
 */
#ifndef ECHOFS_MASTER_REGISTRY_H
#define ECHOFS_MASTER_REGISTRY_H

#include "echofs/meta.h"
#include "echofs/redis.h"

#include <stdbool.h>
#include <stdint.h>

struct efs_registry {
	struct efs_meta *meta;
	struct efs_redis *redis; /* NULL without REDIS_ADDR */
	int64_t dead_after_ms;
};

struct efs_worker_status {
	struct efs_worker_info info;
	bool alive;
};

void efs_registry_init(struct efs_registry *reg, struct efs_meta *meta, struct efs_redis *redis,
		       int64_t dead_after_ms);

/* Registers a worker at @url. With @worker_id NULL a new id is made;
 * otherwise the worker keeps that id (a restart). The id is written to
 * @out_id (EFS_ID_MAX + 1 bytes). Other records at the same URL are the
 * same machine under an old id: they are marked dead. */
int efs_registry_register(struct efs_registry *reg, const char *worker_id, const char *url,
			  uint64_t capacity_bytes, uint64_t free_bytes, uint64_t chunk_count,
			  char *out_id);
/* Records a heartbeat; -ENOENT for an unknown worker (it registers again). */
int efs_registry_heartbeat(struct efs_registry *reg, const char *worker_id,
			   uint64_t capacity_bytes, uint64_t free_bytes, uint64_t chunk_count);
/* Every worker with its liveness at this moment. *out is malloc'd. */
int efs_registry_list(struct efs_registry *reg, struct efs_worker_status **out, size_t *count);
/* Live and total worker counts. */
int efs_registry_count(struct efs_registry *reg, size_t *alive, size_t *total);

#endif
