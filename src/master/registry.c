/* SPDX-License-Identifier: MIT */
/* registry.c - worker registration, heartbeats and liveness. */
#include "master/registry.h"
#include "echofs/log.h"
#include "echofs/util.h"

#include <stdlib.h>

void efs_registry_init(struct efs_registry *reg, struct efs_meta *meta, int64_t dead_after_ms)
{
	reg->meta = meta;
	reg->dead_after_ms = dead_after_ms;
}

int efs_registry_register(struct efs_registry *reg, const char *worker_id, const char *url,
			  uint64_t capacity_bytes, uint64_t free_bytes, uint64_t chunk_count,
			  char *out_id)
{
	struct efs_worker_info w = {0};
	struct efs_worker_info old;
	int64_t now = efs_now_ms();
	int r;

	if (worker_id) {
		efs_strlcpy(w.worker_id, worker_id, sizeof(w.worker_id));
	} else {
		w.worker_id[0] = 'w';
		w.worker_id[1] = '-';
		if ((r = efs_random_hex(w.worker_id + 2, 8)) < 0)
			return r;
	}
	efs_strlcpy(w.url, url, sizeof(w.url));
	w.capacity_bytes = capacity_bytes;
	w.free_bytes = free_bytes;
	w.chunk_count = chunk_count;
	w.registered_at_ms = now;
	w.last_heartbeat_ms = now;

	bool known = efs_meta_worker_get(reg->meta, w.worker_id, &old) == 0;
	if ((r = efs_meta_worker_register(reg->meta, &w)) < 0)
		return r;
	r = efs_meta_worker_retire_url(reg->meta, w.url, w.worker_id);
	if (r > 0)
		efs_warn("worker %s now answers at %s: %d older record(s) at that URL marked dead",
			 w.worker_id, w.url, r);
	efs_info("worker %s %s at %s (capacity %llu, free %llu, chunks %llu)", w.worker_id,
		 known ? "registered again" : "registered", w.url,
		 (unsigned long long)capacity_bytes, (unsigned long long)free_bytes,
		 (unsigned long long)chunk_count);
	efs_strlcpy(out_id, w.worker_id, EFS_ID_MAX + 1);
	return 0;
}

int efs_registry_heartbeat(struct efs_registry *reg, const char *worker_id,
			   uint64_t capacity_bytes, uint64_t free_bytes, uint64_t chunk_count)
{
	return efs_meta_worker_heartbeat(reg->meta, worker_id, capacity_bytes, free_bytes,
					 chunk_count, efs_now_ms());
}

int efs_registry_list(struct efs_registry *reg, struct efs_worker_status **out, size_t *count)
{
	struct efs_worker_info *infos = NULL;
	size_t n = 0;
	int64_t now = efs_now_ms();
	int r = efs_meta_worker_list(reg->meta, &infos, &n);
	if (r < 0)
		return r;
	struct efs_worker_status *list = calloc(n ? n : 1, sizeof(*list));
	if (!list) {
		free(infos);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		list[i].info = infos[i];
		list[i].alive = infos[i].last_heartbeat_ms > 0 &&
				now - infos[i].last_heartbeat_ms <= reg->dead_after_ms;
	}
	free(infos);
	*out = list;
	*count = n;
	return 0;
}

int efs_registry_count(struct efs_registry *reg, size_t *alive, size_t *total)
{
	struct efs_worker_status *list;
	size_t n, live = 0;
	int r = efs_registry_list(reg, &list, &n);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++)
		live += list[i].alive;
	free(list);
	*alive = live;
	*total = n;
	return 0;
}
