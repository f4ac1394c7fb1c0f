/* SPDX-License-Identifier: MIT */
/* stats_cache.c - the metadata totals, computed once per period and shared
 * by the requests that want them. */
#include "master/stats_cache.h"
#include "echofs/util.h"

void efs_stats_cache_init(struct efs_stats_cache *c)
{
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->done, NULL);
	c->computing = c->have = false;
	c->taken_ms = 0;
	c->error = 0;
	atomic_init(&c->computations, 0);
}

void efs_stats_cache_release(struct efs_stats_cache *c)
{
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->done);
}

int efs_stats_cache_get(struct efs_stats_cache *c, struct efs_meta *meta,
			struct efs_meta_stats *out)
{
	struct efs_meta_stats totals;
	int r;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		/* Read-your-writes: totals computed before a write this master
		 * made are stale whatever their age. */
		uint64_t changes = efs_meta_changes(meta);
		if (c->have && c->changes == changes &&
		    efs_mono_ms() - c->taken_ms < EFS_STATS_CACHE_MS) {
			r = c->error;
			if (r == 0)
				*out = c->totals;
			pthread_mutex_unlock(&c->lock);
			return r;
		}
		if (!c->computing)
			break;
		pthread_cond_wait(&c->done, &c->lock); /* another request's result */
	}
	c->computing = true;
	/* Read before the pass: a write during it makes the result stale. */
	uint64_t changes = efs_meta_changes(meta);
	pthread_mutex_unlock(&c->lock);

	r = efs_meta_stats(meta, &totals);

	pthread_mutex_lock(&c->lock);
	c->computing = false;
	c->have = true;
	c->changes = changes;
	c->taken_ms = efs_mono_ms();
	c->error = r;
	if (r == 0) {
		c->totals = totals;
		*out = totals;
	}
	atomic_fetch_add(&c->computations, 1);
	pthread_cond_broadcast(&c->done);
	pthread_mutex_unlock(&c->lock);
	return r;
}
