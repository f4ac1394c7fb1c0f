/* SPDX-License-Identifier: MIT */
/* stats_cache.h - the metadata totals (files, chunks, bytes) for /metrics
 * and /api/v1/stats, computed at most once per EFS_STATS_CACHE_MS.
 *
 * The totals are an aggregate over the files and chunks tables: a pass
 * over both. Computed per request, a storm of scrapes would keep the
 * metadata store busy with them and starve the reads uploads and downloads
 * need. Here one request computes them while concurrent ones wait for its
 * result, and every request within EFS_STATS_CACHE_MS after gets the same
 * result (an error included: a store that is down is not asked again per
 * scrape), unless this master wrote files or chunks since: its own writes
 * always show (a scrape after an upload counts it). Another master's
 * writes show within EFS_STATS_CACHE_MS.
 */
#ifndef ECHOFS_MASTER_STATS_CACHE_H
#define ECHOFS_MASTER_STATS_CACHE_H

#include "echofs/meta.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* How long computed totals are served before they are computed again. */
#define EFS_STATS_CACHE_MS 1000

struct efs_stats_cache {
	pthread_mutex_t lock;
	pthread_cond_t done; /* a computation finished */
	bool computing;	     /* one request is computing them now */
	bool have;	     /* totals (or error) below are set */
	int64_t taken_ms;    /* monotonic: when they were computed */
	uint64_t changes;    /* efs_meta_changes when their computation began */
	int error;	     /* 0, or the computation's error */
	struct efs_meta_stats totals;
	_Atomic uint64_t computations; /* since start (echofs_metadata_stats_computed_total) */
};

void efs_stats_cache_init(struct efs_stats_cache *c);
/* Frees what init set up; no request may use @c any more. */
void efs_stats_cache_release(struct efs_stats_cache *c);
/* The totals of @meta, at most EFS_STATS_CACHE_MS old and computed after
 * this master's last write (efs_meta_changes): computed by this call when
 * none are fresh and no other call is computing them, else by another
 * call (this one waits for it). 0 with *out set, or the computation's
 * error (*out untouched). */
int efs_stats_cache_get(struct efs_stats_cache *c, struct efs_meta *meta,
			struct efs_meta_stats *out);

#endif
