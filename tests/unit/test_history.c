/* SPDX-License-Identifier: MIT */
/* test_history.c - unit tests of src/master/history.c: the p99 of an
 * interval from histogram buckets (as Prometheus' histogram_quantile()
 * computes it), rates from the registry's counters, and the ring keeping
 * the last EFS_HISTORY_SLOTS samples, oldest first, whatever the uptime. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "master/history.h"

static const double bounds[] = {0.001, 0.01, 0.1, 1};

static void test_quantile(void **state)
{
	(void)state;
	uint64_t none[5] = {0};
	assert_true(efs_history_quantile(0.99, bounds, 4, none) < 0);

	/* 100 requests in (0.01, 0.1]: the 99th is 99% of the way through it */
	uint64_t one_bucket[5] = {0, 0, 100, 0, 0};
	assert_true(fabs(efs_history_quantile(0.99, bounds, 4, one_bucket) - 0.0991) < 1e-9);

	/* 99 fast, 1 slow: the 99th is still the fast bucket's top */
	uint64_t mostly_fast[5] = {99, 0, 0, 1, 0};
	assert_true(fabs(efs_history_quantile(0.99, bounds, 4, mostly_fast) - 0.001) < 1e-9);

	/* 10 fast, 10 slow: the 99th lies in (0.1, 1] */
	uint64_t half_slow[5] = {10, 0, 0, 10, 0};
	double q = efs_history_quantile(0.99, bounds, 4, half_slow);
	assert_true(q > 0.1 && q <= 1);

	/* past the last finite bound: that bound, as histogram_quantile says */
	uint64_t beyond[5] = {0, 0, 0, 0, 7};
	assert_true(efs_history_quantile(0.99, bounds, 4, beyond) == 1);
}

struct fixture {
	struct efs_metrics *reg;
	struct efs_metric *requests, *bytes_in, *bytes_out, *latency;
	_Atomic int64_t under_replicated;
	_Atomic uint64_t repaired;
	struct efs_history history;
};

static int setup(void **state)
{
	static struct fixture f;
	static const char *const route[] = {"route", NULL};
	memset(&f, 0, sizeof(f));
	if (efs_metrics_new(&f.reg) < 0 ||
	    efs_metrics_declare(f.reg, EFS_METRIC_COUNTER, "echofs_http_requests_total", "", route,
				NULL, 0, &f.requests) < 0 ||
	    efs_metrics_declare(f.reg, EFS_METRIC_COUNTER, "echofs_http_request_body_bytes_total",
				"", route, NULL, 0, &f.bytes_in) < 0 ||
	    efs_metrics_declare(f.reg, EFS_METRIC_COUNTER, "echofs_http_response_body_bytes_total",
				"", route, NULL, 0, &f.bytes_out) < 0 ||
	    efs_metrics_declare(f.reg, EFS_METRIC_HISTOGRAM, "echofs_http_request_duration_seconds",
				"", route, NULL, 0, &f.latency) < 0)
		return -1;
	atomic_init(&f.under_replicated, -1);
	atomic_init(&f.repaired, 0);
	/* an hour between ticks: only efs_history_sample_now() samples */
	struct efs_history_sources src = {
	    .http_metrics = f.reg,
	    .under_replicated = &f.under_replicated,
	    .repaired_total = &f.repaired,
	    .interval_ms = 3600000,
	};
	if (efs_history_start(&f.history, &src) < 0)
		return -1;
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	efs_history_stop(&f->history);
	efs_history_stop(&f->history); /* twice is fine */
	efs_metrics_free(f->reg);
	return 0;
}

static json_t *samples_of(struct fixture *f, json_t **body)
{
	assert_int_equal(efs_history_json(&f->history, body), 0);
	assert_int_equal(json_integer_value(json_object_get(*body, "capacity")), EFS_HISTORY_SLOTS);
	assert_int_equal(json_integer_value(json_object_get(*body, "interval_ms")), 3600000);
	assert_int_equal(json_array_size(json_object_get(*body, "workers")), 0);
	return json_object_get(*body, "samples");
}

static void test_a_sample_counts_what_happened_in_its_interval(void **state)
{
	struct fixture *f = *state;
	json_t *body;
	const char *const a[] = {"/a"};

	/* before anything: no samples */
	assert_int_equal(json_array_size(samples_of(f, &body)), 0);
	json_decref(body);

	usleep(5000); /* a measurable interval (the daemon's is at least 100 ms) */
	efs_metric_add(f->requests, a, 10);
	efs_metric_add(f->bytes_in, a, 4096);
	for (int i = 0; i < 10; i++)
		efs_metric_observe(f->latency, a, 0.02);
	efs_history_sample_now(&f->history);
	/* a second interval with nothing in it */
	atomic_store(&f->under_replicated, 5);
	atomic_store(&f->repaired, 3);
	efs_history_sample_now(&f->history);

	json_t *samples = samples_of(f, &body);
	assert_int_equal(json_array_size(samples), 2);
	json_t *first = json_array_get(samples, 0), *second = json_array_get(samples, 1);
	double secs = json_real_value(json_object_get(first, "seconds"));
	assert_true(secs > 0);
	/* the rates times the interval are what happened in it */
	assert_true(fabs(json_real_value(json_object_get(first, "requests_per_second")) * secs -
			 10) < 1e-6);
	assert_true(fabs(json_real_value(json_object_get(first, "bytes_in_per_second")) * secs -
			 4096) < 1e-6);
	double p99 = json_real_value(json_object_get(first, "p99_latency_seconds"));
	assert_true(p99 > 0.01 && p99 <= 0.025); /* the 0.01-0.025 bucket of the defaults */
	assert_true(json_is_null(json_object_get(first, "under_replicated_chunks")));
	assert_true(json_real_value(json_object_get(first, "bytes_out_per_second")) == 0);
	/* the second interval saw no request: no latency, no rate */
	assert_true(json_is_null(json_object_get(second, "p99_latency_seconds")));
	assert_true(json_real_value(json_object_get(second, "requests_per_second")) == 0);
	assert_int_equal(json_integer_value(json_object_get(second, "under_replicated_chunks")), 5);
	assert_non_null(json_string_value(json_object_get(second, "time")));
	json_decref(body);
}

static void test_the_ring_keeps_the_last_slots_oldest_first(void **state)
{
	struct fixture *f = *state;
	json_t *body;
	const char *const a[] = {"/a"};

	for (int i = 0; i < EFS_HISTORY_SLOTS + 25; i++) {
		atomic_store(&f->under_replicated, i);
		efs_metric_add(f->requests, a, 1);
		efs_history_sample_now(&f->history);
	}
	json_t *samples = samples_of(f, &body);
	assert_int_equal(json_array_size(samples), EFS_HISTORY_SLOTS);
	for (size_t i = 0; i < EFS_HISTORY_SLOTS; i++) {
		json_t *s = json_array_get(samples, i);
		assert_int_equal(json_integer_value(json_object_get(s, "under_replicated_chunks")),
				 (json_int_t)(i + 25));
	}
	json_decref(body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_quantile),
	    cmocka_unit_test_setup_teardown(test_a_sample_counts_what_happened_in_its_interval,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_the_ring_keeps_the_last_slots_oldest_first, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
