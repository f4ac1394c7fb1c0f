/* SPDX-License-Identifier: MIT */
/* history.h - the last hour of the master's own load, for the dashboard's
 * charts (GET /api/v1/stats/history).
 *
 * A background thread takes a sample every HISTORY_INTERVAL_MS (10 s):
 * the rates of the master's requests and request/response body bytes over
 * the interval, the 99th percentile of the latency of the requests that
 * completed in it, the under-replicated chunk count and the repair rate,
 * and each worker's used and total space as last reported. Samples go into
 * a ring of EFS_HISTORY_SLOTS (360: an hour at 10 s), so memory is fixed
 * (about 200 KiB) whatever the uptime. Nothing is stored: a restarted
 * master starts an empty history.
 *
 * Rates come from the HTTP server's counters in the master's registry
 * (every request this master served, the dashboard's own polls included)
 * and from the repair loop's atomics; other masters' load is not in it.
 * The first EFS_HISTORY_MAX_WORKERS workers seen get a chart line; later
 * ones are left out of the chart (they stay in the worker table).
 */
#ifndef ECHOFS_MASTER_HISTORY_H
#define ECHOFS_MASTER_HISTORY_H

#include "echofs/common.h"
#include "echofs/metrics.h"
#include "echofs/ticker.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define EFS_HISTORY_SLOTS 360
#define EFS_HISTORY_MAX_WORKERS 32
#define EFS_HISTORY_NO_DATA UINT64_MAX /* a worker dead or not yet seen */

struct efs_registry;

struct efs_history_sample {
	int64_t at_ms;		  /* wall clock at the end of the interval, Unix ms */
	double seconds;		  /* the interval's length (monotonic clock) */
	double requests;	  /* completed in the interval, per second */
	double bytes_in;	  /* request body bytes per second */
	double bytes_out;	  /* response body bytes per second */
	double p99_s;		  /* latency; negative: no request completed */
	int64_t under_replicated; /* -1: the repair loop has not run a pass */
	double repaired;	  /* chunks copied by repair per second */
	uint64_t used_bytes[EFS_HISTORY_MAX_WORKERS];	  /* EFS_HISTORY_NO_DATA */
	uint64_t capacity_bytes[EFS_HISTORY_MAX_WORKERS]; /* EFS_HISTORY_NO_DATA */
};

/* Where the samples are read from; every pointer outlives the history. */
struct efs_history_sources {
	struct efs_metrics *http_metrics;  /* the server's registry */
	struct efs_registry *registry;	   /* worker space; NULL: none charted */
	_Atomic int64_t *under_replicated; /* NULL: no repair loop (-1 in samples) */
	_Atomic uint64_t *repaired_total;  /* NULL: no repair loop */
	int64_t interval_ms;
};

/* The previous sample's raw totals, to take differences from. */
struct efs_history_totals {
	int64_t mono_ms;
	double requests, bytes_in, bytes_out;
	uint64_t repaired;
	struct efs_metric_totals latency;
};

struct efs_history {
	struct efs_history_sources src;
	struct efs_ticker ticker;
	pthread_mutex_t lock;		 /* the ring and the worker ids */
	struct efs_history_sample *ring; /* EFS_HISTORY_SLOTS */
	size_t next, count;
	char worker_ids[EFS_HISTORY_MAX_WORKERS][EFS_ID_MAX + 1];
	size_t worker_count;
	struct efs_history_totals last; /* the sampler thread's own */
};

/* Takes the baseline and starts the sampler thread. 0, -ENOMEM, or the
 * errno of creating the thread. */
int efs_history_start(struct efs_history *h, const struct efs_history_sources *src);
/* Stops the thread and frees the ring; a zeroed, never started history is
 * accepted. */
void efs_history_stop(struct efs_history *h);
/* Takes one sample now (the thread does this every interval; tests call
 * it to avoid waiting). */
void efs_history_sample_now(struct efs_history *h);
/* The history as the JSON of GET /api/v1/stats/history (docs/API.md),
 * oldest sample first, into *out (a new reference). 0 or -ENOMEM. */
int efs_history_json(struct efs_history *h, json_t **out);

/* The @q quantile (0 < q < 1) of the observations counted in @buckets
 * (per bucket, the last one +Inf) under @bounds, interpolated linearly
 * inside the bucket as Prometheus' histogram_quantile() does; the highest
 * finite bound when it falls in +Inf; negative when @buckets count
 * nothing. Exposed for the unit test. */
double efs_history_quantile(double q, const double *bounds, size_t bound_count,
			    const uint64_t *buckets);

#endif
