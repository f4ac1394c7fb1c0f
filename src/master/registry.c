/* SPDX-License-Identifier: MIT */
/* registry.c - worker registration, heartbeats and liveness. */
#include "master/registry.h"
#include "echofs/log.h"
#include "echofs/util.h"

#include <stdlib.h>

void efs_registry_init(struct efs_registry *reg, struct efs_meta *meta, struct efs_redis *redis,
		       int64_t dead_after_ms)
{
	reg->meta = meta;
	reg->redis = redis;
	reg->dead_after_ms = dead_after_ms;
}

static void hb_key(const char *worker_id, char *out, size_t size)
{
	snprintf(out, size, "efs:worker:%s:alive", worker_id);
}

/* Records liveness in Redis. 0, or -EAGAIN when Redis is not there. */
static int redis_beat(struct efs_registry *reg, const char *worker_id, int64_t now)
{
	char key[EFS_ID_MAX + 32], value[24];
	if (!reg->redis)
		return -EAGAIN;
	hb_key(worker_id, key, sizeof(key));
	int n = snprintf(value, sizeof(value), "%lld", (long long)now);
	return efs_redis_set(reg->redis, key, value, (size_t)n, reg->dead_after_ms, false);
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
	redis_beat(reg, w.worker_id, now);
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
	int64_t now = efs_now_ms();
	char key[EFS_ID_MAX + 32];
	int r;

	/* With Redis, the store's copy is written once a quarter period (the
	 * first master to set the NX key writes it); in between, a worker the
	 * store confirmed recently only refreshes its Redis key. */
	if (reg->redis) {
		snprintf(key, sizeof(key), "efs:worker:%s:stored", worker_id);
		r = efs_redis_set(reg->redis, key, "1", 1, EFS_MAX(reg->dead_after_ms / 4, 1), true);
		if (r == 0 && redis_beat(reg, worker_id, now) == 0)
			return 0;
	}
	r = efs_meta_worker_heartbeat(reg->meta, worker_id, capacity_bytes, free_bytes,
				      chunk_count, now);
	if (r < 0) {
		/* Unknown (or unconfirmed): no key may claim it is alive. */
		if (reg->redis)
			efs_redis_del(reg->redis, key);
		return r;
	}
	redis_beat(reg, worker_id, now);
	return 0;
}

/* Liveness from Redis, where it answers: the key expires with the worker. */
static void redis_alive(struct efs_registry *reg, struct efs_worker_status *list, size_t n)
{
	char (*keys)[EFS_ID_MAX + 32] = calloc(n, sizeof(*keys));
	const char **key_ptrs = calloc(n, sizeof(*key_ptrs));
	bool *alive = calloc(n, sizeof(*alive));
	if (keys && key_ptrs && alive) {
		for (size_t i = 0; i < n; i++) {
			hb_key(list[i].info.worker_id, keys[i], sizeof(keys[i]));
			key_ptrs[i] = keys[i];
		}
		/* Alive when the key says so, or when the store saw a beat
		 * recently (an emptied, restarted Redis must not make every
		 * worker dead until its next beat). */
		if (efs_redis_exists_many(reg->redis, key_ptrs, n, alive) == 0)
			for (size_t i = 0; i < n; i++)
				list[i].alive = list[i].alive ||
						(alive[i] && list[i].info.last_heartbeat_ms > 0);
	}
	free(keys);
	free(key_ptrs);
	free(alive);
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
	if (reg->redis && n > 0)
		redis_alive(reg, list, n);
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
