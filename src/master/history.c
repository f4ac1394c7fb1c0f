/* SPDX-License-Identifier: MIT */
/* history.c - a ring of per-interval samples of the master's load, for the
 * dashboard's charts of the last hour (contract in history.h).
 *
 * Each sample is a difference of totals the master keeps anyway (the HTTP
 * server's counters and latency histogram, the repair loop's atomics), so
 * recording a request costs nothing more; the sampler thread wakes once an
 * interval. The p99 of an interval comes from the difference of the
 * latency histogram's buckets, as Prometheus would compute it from two
 * scrapes. */
#include "master/history.h"
#include "master/registry.h"
#include "echofs/util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void read_family(struct efs_metrics *reg, const char *name, struct efs_metric_totals *out)
{
	memset(out, 0, sizeof(*out));
	struct efs_metric *m = efs_metrics_find(reg, name);
	if (m)
		efs_metric_totals(m, out);
}

static void read_totals(struct efs_history *h, struct efs_history_totals *t)
{
	struct efs_metric_totals tot;
	memset(t, 0, sizeof(*t));
	t->mono_ms = efs_mono_ms();
	read_family(h->src.http_metrics, "echofs_http_requests_total", &tot);
	t->requests = tot.value;
	read_family(h->src.http_metrics, "echofs_http_request_body_bytes_total", &tot);
	t->bytes_in = tot.value;
	read_family(h->src.http_metrics, "echofs_http_response_body_bytes_total", &tot);
	t->bytes_out = tot.value;
	read_family(h->src.http_metrics, "echofs_http_request_duration_seconds", &t->latency);
	t->repaired = h->src.repaired_total ? atomic_load(h->src.repaired_total) : 0;
}

double efs_history_quantile(double q, const double *bounds, size_t bound_count,
			    const uint64_t *buckets)
{
	uint64_t total = 0;
	for (size_t b = 0; b <= bound_count; b++)
		total += buckets[b];
	if (total == 0)
		return -1;
	double rank = q * (double)total;
	uint64_t below = 0;
	for (size_t b = 0; b < bound_count; b++) {
		if ((double)(below + buckets[b]) >= rank) {
			double lower = b == 0 ? 0 : bounds[b - 1];
			double within =
			    buckets[b] ? (rank - (double)below) / (double)buckets[b] : 1;
			return lower + (bounds[b] - lower) * within;
		}
		below += buckets[b];
	}
	return bound_count ? bounds[bound_count - 1] : -1;
}

/* The slot of @worker_id in the chart's worker list, added when there is
 * room; -1 when the list is full. Called with the lock held. */
static int worker_slot(struct efs_history *h, const char *worker_id)
{
	for (size_t i = 0; i < h->worker_count; i++)
		if (strcmp(h->worker_ids[i], worker_id) == 0)
			return (int)i;
	if (h->worker_count == EFS_HISTORY_MAX_WORKERS)
		return -1;
	efs_strlcpy(h->worker_ids[h->worker_count], worker_id, sizeof(h->worker_ids[0]));
	return (int)h->worker_count++;
}

static double per_second(double delta, double seconds)
{
	return seconds > 0 && delta > 0 ? delta / seconds : 0;
}

void efs_history_sample_now(struct efs_history *h)
{
	struct efs_history_totals now;
	struct efs_history_sample s;
	struct efs_worker_status *workers = NULL;
	size_t worker_count = 0;

	read_totals(h, &now);
	memset(&s, 0, sizeof(s));
	s.at_ms = efs_now_ms();
	s.seconds = (double)(now.mono_ms - h->last.mono_ms) / 1000.0;
	s.requests = per_second(now.requests - h->last.requests, s.seconds);
	s.bytes_in = per_second(now.bytes_in - h->last.bytes_in, s.seconds);
	s.bytes_out = per_second(now.bytes_out - h->last.bytes_out, s.seconds);
	s.repaired = per_second((double)(now.repaired - h->last.repaired), s.seconds);
	s.under_replicated = h->src.under_replicated ? atomic_load(h->src.under_replicated) : -1;

	uint64_t interval[EFS_METRIC_MAX_BUCKETS + 1] = {0};
	size_t bounds = now.latency.bucket_count;
	for (size_t b = 0; b <= bounds; b++) /* counts only grow: no underflow */
		interval[b] = now.latency.buckets[b] - h->last.latency.buckets[b];
	s.p99_s = efs_history_quantile(0.99, now.latency.bounds, bounds, interval);
	h->last = now;

	for (size_t i = 0; i < EFS_HISTORY_MAX_WORKERS; i++)
		s.used_bytes[i] = s.capacity_bytes[i] = EFS_HISTORY_NO_DATA;
	/* A store error leaves the workers out of this sample only. */
	if (!h->src.registry ||
	    efs_registry_list_cached(h->src.registry, &workers, &worker_count) < 0)
		worker_count = 0;

	pthread_mutex_lock(&h->lock);
	for (size_t i = 0; i < worker_count; i++) {
		const struct efs_worker_info *w = &workers[i].info;
		int slot = worker_slot(h, w->worker_id);
		if (slot < 0 || !workers[i].alive)
			continue;
		s.capacity_bytes[slot] = w->capacity_bytes;
		s.used_bytes[slot] =
		    w->capacity_bytes > w->free_bytes ? w->capacity_bytes - w->free_bytes : 0;
	}
	h->ring[h->next] = s;
	h->next = (h->next + 1) % EFS_HISTORY_SLOTS;
	if (h->count < EFS_HISTORY_SLOTS)
		h->count++;
	pthread_mutex_unlock(&h->lock);
	free(workers);
}

static void sampler(struct efs_ticker *t, void *ctx)
{
	struct efs_history *h = ctx;
	while (!efs_ticker_wait(t, h->src.interval_ms))
		efs_history_sample_now(h);
}

int efs_history_start(struct efs_history *h, const struct efs_history_sources *src)
{
	int r;
	memset(h, 0, sizeof(*h));
	h->src = *src;
	h->ring = calloc(EFS_HISTORY_SLOTS, sizeof(*h->ring));
	if (!h->ring)
		return -ENOMEM;
	pthread_mutex_init(&h->lock, NULL);
	read_totals(h, &h->last);
	if ((r = efs_ticker_start(&h->ticker, sampler, h)) < 0) {
		pthread_mutex_destroy(&h->lock);
		free(h->ring);
		h->ring = NULL;
		return r;
	}
	return 0;
}

void efs_history_stop(struct efs_history *h)
{
	if (!h->ring)
		return;
	efs_ticker_stop(&h->ticker);
	pthread_mutex_destroy(&h->lock);
	free(h->ring);
	h->ring = NULL;
}

/* A JSON number, or null for "no value" (negative, or the no-data mark). */
static json_t *number_or_null(double v)
{
	return v < 0 || !isfinite(v) ? json_null() : json_real(v);
}

static json_t *bytes_or_null(uint64_t v)
{
	return v == EFS_HISTORY_NO_DATA ? json_null() : json_integer((json_int_t)v);
}

static json_t *sample_json(const struct efs_history_sample *s, size_t worker_count)
{
	char at[EFS_ISO8601_LEN];
	json_t *used = json_array(), *capacity = json_array();
	for (size_t i = 0; used && capacity && i < worker_count; i++) {
		json_array_append_new(used, bytes_or_null(s->used_bytes[i]));
		json_array_append_new(capacity, bytes_or_null(s->capacity_bytes[i]));
	}
	efs_iso8601(s->at_ms, at);
	return json_pack(
	    "{s:s, s:I, s:f, s:f, s:f, s:f, s:o, s:o, s:f, s:o, s:o}", "time", at, "time_ms",
	    (json_int_t)s->at_ms, "seconds", s->seconds, "requests_per_second", s->requests,
	    "bytes_in_per_second", s->bytes_in, "bytes_out_per_second", s->bytes_out,
	    "p99_latency_seconds", number_or_null(s->p99_s), "under_replicated_chunks",
	    s->under_replicated < 0 ? json_null() : json_integer(s->under_replicated),
	    "repaired_chunks_per_second", s->repaired, "disk_used_bytes", used ? used : json_null(),
	    "disk_capacity_bytes", capacity ? capacity : json_null());
}

int efs_history_json(struct efs_history *h, json_t **out)
{
	json_t *workers = json_array(), *samples = json_array();
	int r = -ENOMEM;
	if (!workers || !samples)
		goto out;
	pthread_mutex_lock(&h->lock);
	size_t first = (h->next + EFS_HISTORY_SLOTS - h->count) % EFS_HISTORY_SLOTS;
	bool ok = true;
	for (size_t i = 0; ok && i < h->worker_count; i++)
		ok = json_array_append_new(workers, json_string(h->worker_ids[i])) == 0;
	for (size_t i = 0; ok && i < h->count; i++) {
		json_t *s = sample_json(&h->ring[(first + i) % EFS_HISTORY_SLOTS], h->worker_count);
		ok = s && json_array_append_new(samples, s) == 0;
	}
	pthread_mutex_unlock(&h->lock);
	if (!ok)
		goto out;
	json_t *body = json_pack(
	    "{s:I, s:I, s:o, s:o}", "interval_ms", (json_int_t)h->src.interval_ms, "capacity",
	    (json_int_t)EFS_HISTORY_SLOTS, "workers", workers, "samples", samples);
	workers = samples = NULL; /* "o" took them, also on failure */
	if (!body)
		goto out;
	*out = body;
	r = 0;
out:
	json_decref(workers);
	json_decref(samples);
	return r;
}
