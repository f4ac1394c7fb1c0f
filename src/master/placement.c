/* SPDX-License-Identifier: MIT */
/* placement.c - weighted random choice of live workers for new replicas. */
#include "master/placement.h"
#include "echofs/util.h"
#include "master/master.h"

#include <pthread.h>
#include <string.h>

#define LOAD_SLOTS 256

/* Writes in flight per worker (this master only), a small open table. */
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	char worker_id[EFS_ID_MAX + 1];
	int inflight;
} load[LOAD_SLOTS];

void efs_placement_load_add(const char *worker_id, int delta)
{
	pthread_mutex_lock(&load_lock);
	for (size_t i = 0; i < LOAD_SLOTS; i++) {
		if (strcmp(load[i].worker_id, worker_id) == 0 || load[i].worker_id[0] == '\0') {
			efs_strlcpy(load[i].worker_id, worker_id, sizeof(load[i].worker_id));
			load[i].inflight += delta;
			if (load[i].inflight < 0)
				load[i].inflight = 0;
			break;
		}
	}
	pthread_mutex_unlock(&load_lock);
}

static int load_get(const char *worker_id)
{
	int n = 0;
	pthread_mutex_lock(&load_lock);
	for (size_t i = 0; i < LOAD_SLOTS && load[i].worker_id[0]; i++) {
		if (strcmp(load[i].worker_id, worker_id) == 0) {
			n = load[i].inflight;
			break;
		}
	}
	pthread_mutex_unlock(&load_lock);
	return n;
}

static bool excluded(const struct efs_worker_info *w, const struct efs_target *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].worker_id, w->worker_id) == 0 || strcmp(list[i].url, w->url) == 0)
			return true;
	return false;
}

int efs_placement_live_count(struct efs_master *m, size_t *alive)
{
	size_t total;
	return efs_registry_count_cached(&m->registry, alive, &total);
}

int efs_placement_choose(struct efs_master *m, unsigned want, uint64_t need_bytes,
			 const struct efs_target *exclude, size_t exclude_count,
			 struct efs_target *out)
{
	struct efs_worker_status *list;
	size_t n;
	unsigned chosen = 0;
	int r = efs_registry_list_cached(&m->registry, &list, &n);
	if (r < 0)
		return r;
	double *weight = calloc(n ? n : 1, sizeof(*weight));
	if (!weight) {
		free(list);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		const struct efs_worker_info *w = &list[i].info;
		if (!list[i].alive || w->free_bytes < need_bytes ||
		    excluded(w, exclude, exclude_count))
			continue;
		/* +1 MiB keeps nearly full workers selectable but rare. */
		weight[i] = ((double)w->free_bytes + 1048576.0) / (1.0 + load_get(w->worker_id));
	}
	while (chosen < want) {
		double total = 0;
		for (size_t i = 0; i < n; i++)
			total += weight[i];
		if (total <= 0)
			break;
		uint64_t rnd;
		efs_random_bytes(&rnd, sizeof(rnd));
		double pick = (double)(rnd >> 11) / (double)(1ULL << 53) * total;
		size_t i = 0;
		for (; i < n; i++) {
			if (weight[i] <= 0)
				continue;
			if (pick < weight[i])
				break;
			pick -= weight[i];
		}
		if (i == n) /* rounding: take the last candidate */
			for (i = n; i-- > 0 && weight[i] <= 0;)
				;
		efs_strlcpy(out[chosen].worker_id, list[i].info.worker_id,
			    sizeof(out[chosen].worker_id));
		efs_strlcpy(out[chosen].url, list[i].info.url, sizeof(out[chosen].url));
		chosen++;
		/* Never twice the same worker or the same URL. */
		for (size_t j = 0; j < n; j++)
			if (strcmp(list[j].info.url, list[i].info.url) == 0)
				weight[j] = 0;
	}
	free(weight);
	free(list);
	return (int)chosen;
}
