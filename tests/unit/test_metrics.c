/* SPDX-License-Identifier: MIT */
/* test_metrics.c - unit tests of metrics.h: the text format (HELP/TYPE
 * lines, labels, escaping, number formatting), cumulative histogram
 * buckets, the checks on names and updates, the caps, and a smoke test of
 * many threads updating while another renders. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "echofs/buf.h"
#include "echofs/metrics.h"

/* ---- helpers --------------------------------------------------------- */

static int registry_setup(void **state)
{
	struct efs_metrics *reg = NULL;
	if (efs_metrics_new(&reg) < 0)
		return -1;
	*state = reg;
	return 0;
}

static int registry_teardown(void **state)
{
	efs_metrics_free(*state);
	return 0;
}

/* Renders @reg into a fresh buffer the caller releases. */
static struct efs_buf render(struct efs_metrics *reg)
{
	struct efs_buf out;
	efs_buf_init(&out, 1 << 20);
	assert_int_equal(efs_metrics_render(reg, &out), 0);
	if (!out.data)
		efs_buf_puts(&out, "");
	return out;
}

static void assert_renders(struct efs_metrics *reg, const char *expected)
{
	struct efs_buf out = render(reg);
	assert_string_equal(out.data, expected);
	efs_buf_release(&out);
}

static const char *const route_method[] = {"route", "method", NULL};

/* ---- format ----------------------------------------------------------- */

static void test_counter_with_labels(void **state)
{
	struct efs_metrics *reg = *state;
	struct efs_metric *m;
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_COUNTER, "echofs_requests_total",
					     "Requests.", route_method, NULL, 0, &m),
			 0);
	assert_int_equal(efs_metric_add(m, (const char *const[]){"/a/{id}", "GET"}, 1), 0);
	assert_int_equal(efs_metric_add(m, (const char *const[]){"/b", "POST"}, 2), 0);
	assert_int_equal(efs_metric_add(m, (const char *const[]){"/a/{id}", "GET"}, 3), 0);
	assert_renders(reg, "# HELP echofs_requests_total Requests.\n"
			    "# TYPE echofs_requests_total counter\n"
			    "echofs_requests_total{route=\"/a/{id}\",method=\"GET\"} 4\n"
			    "echofs_requests_total{route=\"/b\",method=\"POST\"} 2\n");
	double v = 0;
	assert_int_equal(efs_metric_get(m, (const char *const[]){"/b", "POST"}, &v), 0);
	assert_true(v == 2);
	assert_int_equal(efs_metric_get(m, (const char *const[]){"/c", "POST"}, &v), -ENOENT);
}

static void test_gauge_without_labels_and_families_in_order(void **state)
{
	struct efs_metrics *reg = *state;
	struct efs_metric *g, *empty;
	assert_int_equal(
	    efs_metrics_declare(reg, EFS_METRIC_GAUGE, "b_in_flight", "Now.", NULL, NULL, 0, &g),
	    0);
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_COUNTER, "a_total", "Never used.",
					     route_method, NULL, 0, &empty),
			 0);
	assert_int_equal(efs_metric_add(g, NULL, 3), 0);
	assert_int_equal(efs_metric_add(g, NULL, -5), 0); /* gauges go down */
	assert_int_equal(efs_metrics_put(reg, EFS_METRIC_GAUGE, "c_ratio", "A ratio.", 0.25), 0);
	assert_renders(reg, "# HELP b_in_flight Now.\n"
			    "# TYPE b_in_flight gauge\n"
			    "b_in_flight -2\n"
			    "# HELP a_total Never used.\n"
			    "# TYPE a_total counter\n"
			    "# HELP c_ratio A ratio.\n"
			    "# TYPE c_ratio gauge\n"
			    "c_ratio 0.25\n");
	assert_int_equal(efs_metric_set(g, NULL, 7), 0);
	double v = 0;
	assert_int_equal(efs_metric_get(g, NULL, &v), 0);
	assert_true(v == 7);
}

static void test_escaping(void **state)
{
	struct efs_metrics *reg = *state;
	struct efs_metric *m;
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_GAUGE, "x",
					     "Back\\slash and\nnewline \"kept\".",
					     (const char *const[]){"v", NULL}, NULL, 0, &m),
			 0);
	assert_int_equal(efs_metric_set(m, (const char *const[]){"a\\b\"c\nd"}, 1), 0);
	assert_int_equal(efs_metric_set(m, (const char *const[]){""}, 2), 0);
	assert_int_equal(efs_metric_set(m, (const char *const[]){"caf\xc3\xa9 {x=\"1\"}"}, 3), 0);
	assert_renders(reg, "# HELP x Back\\\\slash and\\nnewline \"kept\".\n"
			    "# TYPE x gauge\n"
			    "x{v=\"a\\\\b\\\"c\\nd\"} 1\n"
			    "x{v=\"\"} 2\n"
			    "x{v=\"caf\xc3\xa9 {x=\\\"1\\\"}\"} 3\n");
}

static void test_histogram_buckets_are_cumulative(void **state)
{
	struct efs_metrics *reg = *state;
	struct efs_metric *h;
	static const double bounds[] = {0.1, 0.5, 1};
	const char *const get[] = {"/x", "GET"};
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_HISTOGRAM, "lat_seconds", "Latency.",
					     route_method, bounds, 3, &h),
			 0);
	/* 0.1 falls in le="0.1" (bounds are inclusive); 7 only in +Inf. */
	const double seen[] = {0.05, 0.1, 0.2, 0.7, 0.9, 7};
	for (size_t i = 0; i < sizeof(seen) / sizeof(seen[0]); i++)
		assert_int_equal(efs_metric_observe(h, get, seen[i]), 0);
	assert_renders(reg, "# HELP lat_seconds Latency.\n"
			    "# TYPE lat_seconds histogram\n"
			    "lat_seconds_bucket{route=\"/x\",method=\"GET\",le=\"0.1\"} 2\n"
			    "lat_seconds_bucket{route=\"/x\",method=\"GET\",le=\"0.5\"} 3\n"
			    "lat_seconds_bucket{route=\"/x\",method=\"GET\",le=\"1\"} 5\n"
			    "lat_seconds_bucket{route=\"/x\",method=\"GET\",le=\"+Inf\"} 6\n"
			    "lat_seconds_sum{route=\"/x\",method=\"GET\"} 8.95\n"
			    "lat_seconds_count{route=\"/x\",method=\"GET\"} 6\n");
	double count = 0;
	assert_int_equal(efs_metric_get(h, get, &count), 0);
	assert_true(count == 6);
}

static void test_histogram_default_buckets_and_no_labels(void **state)
{
	struct efs_metrics *reg = *state;
	struct efs_metric *h;
	assert_int_equal(
	    efs_metrics_declare(reg, EFS_METRIC_HISTOGRAM, "d_seconds", "D.", NULL, NULL, 0, &h),
	    0);
	assert_int_equal(efs_metric_observe(h, NULL, 0.003), 0);
	struct efs_buf out = render(reg);
	assert_non_null(strstr(out.data, "d_seconds_bucket{le=\"0.001\"} 0\n"
					 "d_seconds_bucket{le=\"0.005\"} 1\n"));
	assert_non_null(strstr(out.data, "d_seconds_bucket{le=\"60\"} 1\n"
					 "d_seconds_bucket{le=\"+Inf\"} 1\n"
					 "d_seconds_sum 0.003\n"
					 "d_seconds_count 1\n"));
	size_t lines = 0;
	for (const char *p = out.data; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, 2 + efs_metrics_latency_bucket_count + 1 + 2);
	efs_buf_release(&out);
}

static void test_format_value(void **state)
{
	char buf[32];
	assert_string_equal(efs_metrics_format_value(0, buf), "0");
	assert_string_equal(efs_metrics_format_value(-0.0, buf), "0");
	assert_string_equal(efs_metrics_format_value(1, buf), "1");
	assert_string_equal(efs_metrics_format_value(-3, buf), "-3");
	assert_string_equal(efs_metrics_format_value(0.005, buf), "0.005");
	assert_string_equal(efs_metrics_format_value(0.1, buf), "0.1");
	assert_string_equal(efs_metrics_format_value(2.5, buf), "2.5");
	assert_string_equal(efs_metrics_format_value(1099511627776.0, buf), "1099511627776");
	assert_string_equal(efs_metrics_format_value(1e300, buf), "1e+300");
	assert_string_equal(efs_metrics_format_value(NAN, buf), "NaN");
	assert_string_equal(efs_metrics_format_value(INFINITY, buf), "+Inf");
	assert_string_equal(efs_metrics_format_value(-INFINITY, buf), "-Inf");
	/* Whatever the value, the text reads back exactly. */
	const double hard[] = {0.1 + 0.2, 1.0 / 3, 123456789.123456789, 9007199254740993.0};
	for (size_t i = 0; i < sizeof(hard) / sizeof(hard[0]); i++)
		assert_true(strtod(efs_metrics_format_value(hard[i], buf), NULL) == hard[i]);
}

/* ---- checks --------------------------------------------------------------- */

static void test_declare_checks(void **state)
{
	struct efs_metrics *reg = *state;
	struct efs_metric *m, *again;
	static const double up[] = {1, 2}, down[] = {2, 1}, inf[] = {1, INFINITY};

	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_COUNTER, "", "", NULL, NULL, 0, &m),
			 -EINVAL);
	assert_int_equal(
	    efs_metrics_declare(reg, EFS_METRIC_COUNTER, "9lives", "", NULL, NULL, 0, &m), -EINVAL);
	assert_int_equal(
	    efs_metrics_declare(reg, EFS_METRIC_COUNTER, "has-dash", "", NULL, NULL, 0, &m),
	    -EINVAL);
	assert_int_equal(
	    efs_metrics_declare(reg, EFS_METRIC_COUNTER, "ok:name_1", "", NULL, NULL, 0, &m), 0);
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_GAUGE, "g", "",
					     (const char *const[]){"a:b", NULL}, NULL, 0, &m),
			 -EINVAL);
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_GAUGE, "g", "",
					     (const char *const[]){"__reserved", NULL}, NULL, 0,
					     &m),
			 -EINVAL);
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_GAUGE, "g", "",
					     (const char *const[]){"a", "a", NULL}, NULL, 0, &m),
			 -EINVAL);
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_GAUGE, "g", "",
					     (const char *const[]){"a", "b", "c", "d", "e", NULL},
					     NULL, 0, &m),
			 -EINVAL);
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_HISTOGRAM, "h", "",
					     (const char *const[]){"le", NULL}, NULL, 0, &m),
			 -EINVAL);
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_HISTOGRAM, "h", "", NULL, down, 2, &m),
			 -EINVAL);
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_HISTOGRAM, "h", "", NULL, inf, 2, &m),
			 -EINVAL);
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_HISTOGRAM, "h", "", NULL, up, 0, &m),
			 -EINVAL);
	/* "le" is fine outside histograms. */
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_GAUGE, "g", "",
					     (const char *const[]){"le", NULL}, NULL, 0, &m),
			 0);
	/* Declaring again: the same family, or a conflict. */
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_GAUGE, "g", "other help",
					     (const char *const[]){"le", NULL}, NULL, 0, &again),
			 0);
	assert_ptr_equal(m, again);
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_COUNTER, "g", "",
					     (const char *const[]){"le", NULL}, NULL, 0, &again),
			 -EEXIST);
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_GAUGE, "g", "", NULL, NULL, 0, &again),
			 -EEXIST);
}

static void test_update_checks(void **state)
{
	struct efs_metrics *reg = *state;
	struct efs_metric *c, *g, *h;
	const char *const one[] = {"x"};
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_COUNTER, "c_total", "",
					     (const char *const[]){"k", NULL}, NULL, 0, &c),
			 0);
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_GAUGE, "g", "", NULL, NULL, 0, &g), 0);
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_HISTOGRAM, "h", "", NULL, NULL, 0, &h),
			 0);
	assert_int_equal(efs_metric_add(c, one, -1), -EINVAL); /* counters only go up */
	assert_int_equal(efs_metric_add(c, one, NAN), -EINVAL);
	assert_int_equal(efs_metric_add(c, NULL, 1), -EINVAL); /* labels missing */
	assert_int_equal(efs_metric_add(c, (const char *const[]){NULL}, 1), -EINVAL);
	assert_int_equal(efs_metric_observe(c, one, 1), -EINVAL); /* not a histogram */
	assert_int_equal(efs_metric_observe(g, NULL, 1), -EINVAL);
	assert_int_equal(efs_metric_add(h, NULL, 1), -EINVAL);
	assert_int_equal(efs_metric_set(h, NULL, 1), -EINVAL);
	assert_int_equal(efs_metric_set(c, one, 41), 0); /* a total kept elsewhere */
	assert_int_equal(efs_metric_add(c, one, 1), 0);
	double v = 0;
	assert_int_equal(efs_metric_get(c, one, &v), 0);
	assert_true(v == 42);
	efs_metrics_free(NULL);
}

static void test_series_cap_and_long_values(void **state)
{
	struct efs_metrics *reg = *state;
	struct efs_metric *m;
	char value[32];
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_COUNTER, "many_total", "",
					     (const char *const[]){"k", NULL}, NULL, 0, &m),
			 0);
	for (int i = 0; i < EFS_METRIC_MAX_SERIES; i++) {
		snprintf(value, sizeof(value), "v%d", i);
		assert_int_equal(efs_metric_add(m, (const char *const[]){value}, 1), 0);
	}
	assert_int_equal(efs_metric_add(m, (const char *const[]){"one more"}, 1), -E2BIG);
	assert_int_equal(efs_metric_add(m, (const char *const[]){"v7"}, 1), 0); /* existing */

	/* Values are cut at EFS_METRIC_LABEL_MAX: two that differ only after
	 * the cut are one series. */
	struct efs_metric *g;
	char a[EFS_METRIC_LABEL_MAX + 10], b[EFS_METRIC_LABEL_MAX + 10];
	memset(a, 'q', sizeof(a) - 1);
	a[sizeof(a) - 1] = '\0';
	memcpy(b, a, sizeof(b));
	b[EFS_METRIC_LABEL_MAX + 5] = 'z';
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_GAUGE, "long", "",
					     (const char *const[]){"k", NULL}, NULL, 0, &g),
			 0);
	assert_int_equal(efs_metric_add(g, (const char *const[]){a}, 1), 0);
	assert_int_equal(efs_metric_add(g, (const char *const[]){b}, 1), 0);
	double v = 0;
	assert_int_equal(efs_metric_get(g, (const char *const[]){a}, &v), 0);
	assert_true(v == 2);
}

static void test_render_respects_the_buffer_cap(void **state)
{
	struct efs_metrics *reg = *state;
	struct efs_metric *m;
	struct efs_buf small;
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_COUNTER, "c_total",
					     "A help text longer than the buffer.", NULL, NULL, 0,
					     &m),
			 0);
	efs_buf_init(&small, 16);
	assert_int_equal(efs_metrics_render(reg, &small), -E2BIG);
	assert_true(small.len <= 16);
	efs_buf_release(&small);
}

/* ---- threads ------------------------------------------------------------------ */

#define THREADS 8
#define ROUNDS 20000

struct smoke {
	struct efs_metrics *reg;
	struct efs_metric *counter, *hist, *gauge;
	int id;
	volatile int stop;
};

static void *updater(void *arg)
{
	struct smoke *s = arg;
	static const char *const routes[] = {"/a", "/b", "/c", "/d"};
	for (int i = 0; i < ROUNDS; i++) {
		const char *labels[] = {routes[(i + s->id) % 4], "GET"};
		efs_metric_add(s->counter, labels, 1);
		efs_metric_observe(s->hist, labels, (i % 100) / 1000.0);
		efs_metric_add(s->gauge, NULL, 1);
		efs_metric_add(s->gauge, NULL, -1);
		if (i % 5000 == 0) { /* families declared while others render */
			char name[32];
			snprintf(name, sizeof(name), "late_%d_%d", s->id, i / 5000);
			efs_metrics_put(s->reg, EFS_METRIC_GAUGE, name, "Late.", i);
		}
	}
	return NULL;
}

static void *renderer(void *arg)
{
	struct smoke *s = arg;
	while (!s->stop) {
		struct efs_buf out;
		efs_buf_init(&out, 1 << 22);
		efs_metrics_render(s->reg, &out);
		efs_buf_release(&out);
	}
	return NULL;
}

static void test_threads_smoke(void **state)
{
	struct efs_metrics *reg = *state;
	struct smoke shared = {.reg = reg};
	struct smoke each[THREADS];
	pthread_t threads[THREADS], render_thread;

	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_COUNTER, "req_total", "", route_method,
					     NULL, 0, &shared.counter),
			 0);
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_HISTOGRAM, "lat_seconds", "",
					     route_method, NULL, 0, &shared.hist),
			 0);
	assert_int_equal(
	    efs_metrics_declare(reg, EFS_METRIC_GAUGE, "busy", "", NULL, NULL, 0, &shared.gauge),
	    0);
	assert_int_equal(pthread_create(&render_thread, NULL, renderer, &shared), 0);
	for (int t = 0; t < THREADS; t++) {
		each[t] = shared;
		each[t].id = t;
		assert_int_equal(pthread_create(&threads[t], NULL, updater, &each[t]), 0);
	}
	for (int t = 0; t < THREADS; t++)
		pthread_join(threads[t], NULL);
	shared.stop = 1;
	pthread_join(render_thread, NULL);

	double total = 0, count = 0, v;
	static const char *const routes[] = {"/a", "/b", "/c", "/d"};
	for (int r = 0; r < 4; r++) {
		const char *labels[] = {routes[r], "GET"};
		assert_int_equal(efs_metric_get(shared.counter, labels, &v), 0);
		assert_true(v == THREADS * ROUNDS / 4);
		total += v;
		assert_int_equal(efs_metric_get(shared.hist, labels, &v), 0);
		count += v;
	}
	assert_true(total == THREADS * ROUNDS);
	assert_true(count == THREADS * ROUNDS);
	assert_int_equal(efs_metric_get(shared.gauge, NULL, &v), 0);
	assert_true(v == 0);

	/* Every +Inf bucket equals its _count in the final text. */
	struct efs_buf out = render(reg);
	assert_non_null(strstr(
	    out.data, "lat_seconds_bucket{route=\"/a\",method=\"GET\",le=\"+Inf\"} 40000\n"));
	assert_non_null(strstr(out.data, "lat_seconds_count{route=\"/a\",method=\"GET\"} 40000\n"));
	assert_non_null(strstr(out.data, "late_7_3 15000\n"));
	efs_buf_release(&out);
}

static void test_find_and_totals(void **state)
{
	struct efs_metrics *reg = *state;
	struct efs_metric *req, *lat;
	struct efs_metric_totals t;
	static const char *const labels[] = {"route", NULL};
	static const double bounds[] = {0.01, 0.1, 1};

	assert_int_equal(
	    efs_metrics_declare(reg, EFS_METRIC_COUNTER, "req_total", "r", labels, NULL, 0, &req),
	    0);
	assert_int_equal(efs_metrics_declare(reg, EFS_METRIC_HISTOGRAM, "lat_seconds", "l", labels,
					     bounds, 3, &lat),
			 0);
	assert_ptr_equal(efs_metrics_find(reg, "req_total"), req);
	assert_ptr_equal(efs_metrics_find(reg, "lat_seconds"), lat);
	assert_null(efs_metrics_find(reg, "nothing"));
	assert_null(efs_metrics_find(NULL, "req_total"));
	assert_int_equal(efs_metric_totals(NULL, &t), -EINVAL);

	/* no series yet: zeros */
	assert_int_equal(efs_metric_totals(req, &t), 0);
	assert_true(t.value == 0 && t.count == 0 && t.bucket_count == 0);

	efs_metric_add(req, (const char *const[]){"/a"}, 3);
	efs_metric_add(req, (const char *const[]){"/b"}, 4);
	assert_int_equal(efs_metric_totals(req, &t), 0);
	assert_true(t.value == 7);

	efs_metric_observe(lat, (const char *const[]){"/a"}, 0.005); /* bucket 0 */
	efs_metric_observe(lat, (const char *const[]){"/b"}, 0.05);  /* bucket 1 */
	efs_metric_observe(lat, (const char *const[]){"/b"}, 0.06);  /* bucket 1 */
	efs_metric_observe(lat, (const char *const[]){"/a"}, 5);     /* +Inf */
	assert_int_equal(efs_metric_totals(lat, &t), 0);
	assert_int_equal(t.count, 4);
	assert_int_equal(t.bucket_count, 3);
	assert_true(t.bounds[0] == 0.01 && t.bounds[2] == 1);
	assert_int_equal(t.buckets[0], 1);
	assert_int_equal(t.buckets[1], 2);
	assert_int_equal(t.buckets[2], 0);
	assert_int_equal(t.buckets[3], 1);
	assert_true(fabs(t.value - 5.115) < 1e-9);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, registry_setup, registry_teardown)
	    T(test_counter_with_labels),
	    T(test_gauge_without_labels_and_families_in_order),
	    T(test_escaping),
	    T(test_histogram_buckets_are_cumulative),
	    T(test_histogram_default_buckets_and_no_labels),
	    cmocka_unit_test(test_format_value),
	    T(test_declare_checks),
	    T(test_update_checks),
	    T(test_series_cap_and_long_values),
	    T(test_render_respects_the_buffer_cap),
	    T(test_threads_smoke),
	    T(test_find_and_totals),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
