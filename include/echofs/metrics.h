/* SPDX-License-Identifier: MIT */
/* metrics.h - counters, gauges and histograms with labels, rendered in the
 * Prometheus text exposition format (version 0.0.4).
 *
 * A registry holds metric families, rendered in the order they were
 * declared. A family has a name, a help text, a type, up to
 * EFS_METRIC_MAX_LABELS label names and, for a histogram, the upper bounds
 * of its buckets (+Inf is implicit). Each distinct list of label values is
 * a series, created the first time it is updated.
 *
 * Label values reach the output escaped (\\, \" and \n), so any bytes are
 * safe; callers still choose values from small sets (a route pattern, not
 * the raw path), because every series is kept for the life of the
 * registry. A family holds at most EFS_METRIC_MAX_SERIES series: an update
 * that would create one more is dropped with -E2BIG.
 *
 * Thread-safe: each family has its own mutex, held only to find a series
 * and update it, or to render the family. Updates from many threads never
 * lose counts, and a render sees each family in one consistent state.
 *
 * Two ways to use it: a daemon keeps one registry for its lifetime
 * (the HTTP server records every request in it), and a /metrics handler
 * may build a short-lived registry at scrape time for values it reads from
 * elsewhere (gauges of the disk, counters kept as atomics), render both
 * into one buffer and free the short-lived one. The two must not declare
 * the same name.
 */
#ifndef ECHOFS_METRICS_H
#define ECHOFS_METRICS_H

#include "echofs/buf.h"
#include "echofs/common.h"

#include <stddef.h>
#include <stdint.h>

#define EFS_METRIC_MAX_LABELS 4
#define EFS_METRIC_MAX_BUCKETS 32
#define EFS_METRIC_MAX_SERIES 1024  /* per family */
#define EFS_METRIC_MAX_FAMILIES 128 /* per registry */
#define EFS_METRIC_LABEL_MAX 256    /* longer label values are cut to this many bytes */

/* The Content-Type of a rendered registry. */
#define EFS_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

enum efs_metric_type {
	EFS_METRIC_COUNTER = 0,
	EFS_METRIC_GAUGE = 1,
	EFS_METRIC_HISTOGRAM = 2,
};

struct efs_metrics; /* a registry */
struct efs_metric;  /* one family, owned by its registry */

/* Bucket bounds for request latencies, in seconds: 1 ms to 60 s. */
extern const double efs_metrics_latency_buckets[];
extern const size_t efs_metrics_latency_bucket_count;

/* A new, empty registry. 0 or -ENOMEM. */
int efs_metrics_new(struct efs_metrics **out);
/* Frees the registry and every family in it; NULL is accepted. No update
 * may run concurrently. */
void efs_metrics_free(struct efs_metrics *reg);

/* Declares a family. @name must match [a-zA-Z_:][a-zA-Z0-9_:]*; @labels
 * is a NULL-terminated list of label names ([a-zA-Z_][a-zA-Z0-9_]*, not
 * starting with "__", not "le" for a histogram), or NULL for none. For a
 * histogram, @buckets holds @bucket_count strictly increasing finite
 * bounds (NULL: efs_metrics_latency_buckets); they are ignored otherwise.
 * Declaring a name again with the same type and label names returns the
 * existing family. On success *out is the family (owned by @reg).
 * -EINVAL (bad name, labels or buckets), -EEXIST (the name is declared
 * with another type or other labels), -E2BIG (too many families),
 * -ENOMEM. */
int efs_metrics_declare(struct efs_metrics *reg, enum efs_metric_type type, const char *name,
			const char *help, const char *const *labels, const double *buckets,
			size_t bucket_count, struct efs_metric **out);

/* Updates the series whose label values are @values (as many as the
 * family has label names; NULL when it has none), creating it at 0 first.
 * -EINVAL (wrong type for the call, a NULL value, a negative or NaN
 * increment of a counter), -E2BIG (series cap), -ENOMEM.
 *
 *   add      counters and gauges: adds @v (a counter only goes up)
 *   set      gauges: sets @v; counters: sets a total kept elsewhere (an
 *            atomic read at scrape time), which must never go down
 *   observe  histograms: counts @v in its bucket, its sum and its count */
int efs_metric_add(struct efs_metric *m, const char *const *values, double v);
int efs_metric_set(struct efs_metric *m, const char *const *values, double v);
int efs_metric_observe(struct efs_metric *m, const char *const *values, double v);

/* For values read at scrape time: declares an unlabelled family and sets
 * its one series to @v. The errors of efs_metrics_declare. */
int efs_metrics_put(struct efs_metrics *reg, enum efs_metric_type type, const char *name,
		    const char *help, double v);

/* Reads the value of one counter or gauge series into *out; for a
 * histogram, its count. -ENOENT when the series does not exist yet. */
int efs_metric_get(struct efs_metric *m, const char *const *values, double *out);

/* A family summed over all its series: what the master's dashboard history
 * (src/master/history.c) samples. */
struct efs_metric_totals {
	/* counters and gauges: the sum of the series' values; histograms:
	 * the sum of the observations */
	double value;
	uint64_t count;	     /* histograms: observations; otherwise 0 */
	size_t bucket_count; /* histograms: the finite bounds, as declared */
	double bounds[EFS_METRIC_MAX_BUCKETS];
	/* histograms: observations per bucket (not cumulative); the one after
	 * the last finite bound is +Inf */
	uint64_t buckets[EFS_METRIC_MAX_BUCKETS + 1];
};

/* The family named @name in @reg, or NULL when none is declared. */
struct efs_metric *efs_metrics_find(struct efs_metrics *reg, const char *name);
/* Sums family @m over every series into *out (a consistent state: the
 * family's lock is held). 0, or -EINVAL when @m is NULL. */
int efs_metric_totals(struct efs_metric *m, struct efs_metric_totals *out);

/* Appends every family of @reg to @out in the text format: "# HELP" and
 * "# TYPE" lines, then one line per series (for a histogram, its
 * cumulative _bucket lines ending with le="+Inf", then _sum and _count).
 * 0, or -E2BIG / -ENOMEM when @out cannot hold it (what was appended
 * stays). */
int efs_metrics_render(struct efs_metrics *reg, struct efs_buf *out);

/* Writes @v as the text format spells a sample value: the shortest
 * decimal that reads back as @v, "NaN", "+Inf" or "-Inf". @out needs 32
 * bytes. Returns @out. */
char *efs_metrics_format_value(double v, char *out);

#endif
