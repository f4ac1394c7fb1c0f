/* SPDX-License-Identifier: MIT */
/* metrics.c - labelled counters, gauges and histograms, and their
 * Prometheus text rendering.
 *
 * Series are found by a hash of their label values, then compared in full;
 * families are small (a route table times a few methods and statuses), so
 * a linear scan over the hashes costs less than the request it records.
 * Histogram buckets are counted per bucket and summed at render time, so
 * an observation touches one bucket only. */
#include "echofs/metrics.h"
#include "echofs/hash.h"
#include "echofs/util.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

const double efs_metrics_latency_buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
					      0.5,   1,	    2.5,  5,	 10,   30,  60};
const size_t efs_metrics_latency_bucket_count = EFS_ARRAY_SIZE(efs_metrics_latency_buckets);

struct series {
	uint64_t hash;
	char *values[EFS_METRIC_MAX_LABELS];
	double value; /* counters and gauges */
	/* histograms: per-bucket counts (the last one is +Inf), sum, count */
	uint64_t *bucket_counts;
	double sum;
	uint64_t count;
};

struct efs_metric {
	enum efs_metric_type type;
	char *name;
	char *help;
	unsigned label_count;
	char *labels[EFS_METRIC_MAX_LABELS];
	size_t bucket_count; /* finite bounds; bucket_counts has one more */
	double *bounds;
	pthread_mutex_t lock;
	struct series **series;
	size_t series_count, series_alloc;
};

struct efs_metrics {
	pthread_mutex_t lock; /* the family list */
	struct efs_metric *families[EFS_METRIC_MAX_FAMILIES];
	size_t family_count;
};

static const char *const type_names[] = {"counter", "gauge", "histogram"};

/* ---- names ----------------------------------------------------------- */

static bool name_valid(const char *s, bool colon_ok)
{
	if (!s || !*s)
		return false;
	for (const char *p = s; *p; p++) {
		char c = *p;
		bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
			     (colon_ok && c == ':');
		if (!alpha && !(p > s && c >= '0' && c <= '9'))
			return false;
	}
	return true;
}

static bool labels_valid(const char *const *labels, enum efs_metric_type type, unsigned *count)
{
	unsigned n = 0;
	for (; labels && labels[n]; n++) {
		if (n >= EFS_METRIC_MAX_LABELS || !name_valid(labels[n], false) ||
		    strncmp(labels[n], "__", 2) == 0 ||
		    (type == EFS_METRIC_HISTOGRAM && strcmp(labels[n], "le") == 0))
			return false;
		for (unsigned j = 0; j < n; j++)
			if (strcmp(labels[j], labels[n]) == 0)
				return false;
	}
	*count = n;
	return true;
}

/* ---- families --------------------------------------------------------- */

static void series_free(struct series *s)
{
	if (!s)
		return;
	for (unsigned i = 0; i < EFS_METRIC_MAX_LABELS; i++)
		free(s->values[i]);
	free(s->bucket_counts);
	free(s);
}

static void family_free(struct efs_metric *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->series_count; i++)
		series_free(m->series[i]);
	free(m->series);
	for (unsigned i = 0; i < m->label_count; i++)
		free(m->labels[i]);
	free(m->bounds);
	free(m->name);
	free(m->help);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static int family_new(enum efs_metric_type type, const char *name, const char *help,
		      const char *const *labels, unsigned label_count, const double *buckets,
		      size_t bucket_count, struct efs_metric **out)
{
	struct efs_metric *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	pthread_mutex_init(&m->lock, NULL);
	m->type = type;
	m->name = strdup(name);
	m->help = strdup(help ? help : "");
	m->label_count = label_count;
	bool ok = m->name && m->help;
	for (unsigned i = 0; ok && i < label_count; i++)
		ok = (m->labels[i] = strdup(labels[i])) != NULL;
	if (ok && type == EFS_METRIC_HISTOGRAM) {
		m->bucket_count = bucket_count;
		m->bounds = malloc(bucket_count * sizeof(*m->bounds));
		ok = m->bounds != NULL;
		if (ok)
			memcpy(m->bounds, buckets, bucket_count * sizeof(*m->bounds));
	}
	if (!ok) {
		family_free(m);
		return -ENOMEM;
	}
	*out = m;
	return 0;
}

/* True when @m was declared with exactly this type and these labels. */
static bool family_same(const struct efs_metric *m, enum efs_metric_type type,
			const char *const *labels, unsigned label_count)
{
	if (m->type != type || m->label_count != label_count)
		return false;
	for (unsigned i = 0; i < label_count; i++)
		if (strcmp(m->labels[i], labels[i]) != 0)
			return false;
	return true;
}

int efs_metrics_new(struct efs_metrics **out)
{
	struct efs_metrics *reg = calloc(1, sizeof(*reg));
	if (!reg)
		return -ENOMEM;
	pthread_mutex_init(&reg->lock, NULL);
	*out = reg;
	return 0;
}

void efs_metrics_free(struct efs_metrics *reg)
{
	if (!reg)
		return;
	for (size_t i = 0; i < reg->family_count; i++)
		family_free(reg->families[i]);
	pthread_mutex_destroy(&reg->lock);
	free(reg);
}

int efs_metrics_declare(struct efs_metrics *reg, enum efs_metric_type type, const char *name,
			const char *help, const char *const *labels, const double *buckets,
			size_t bucket_count, struct efs_metric **out)
{
	struct efs_metric *m = NULL;
	unsigned label_count = 0;
	int r = 0;

	if (type > EFS_METRIC_HISTOGRAM || !name_valid(name, true) ||
	    !labels_valid(labels, type, &label_count))
		return -EINVAL;
	if (type == EFS_METRIC_HISTOGRAM) {
		if (!buckets) {
			buckets = efs_metrics_latency_buckets;
			bucket_count = efs_metrics_latency_bucket_count;
		}
		if (bucket_count == 0 || bucket_count > EFS_METRIC_MAX_BUCKETS)
			return -EINVAL;
		for (size_t i = 0; i < bucket_count; i++)
			if (!isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1]))
				return -EINVAL;
	}

	pthread_mutex_lock(&reg->lock);
	for (size_t i = 0; i < reg->family_count; i++) {
		if (strcmp(reg->families[i]->name, name) != 0)
			continue;
		if (!family_same(reg->families[i], type, labels, label_count)) {
			r = -EEXIST;
			goto out;
		}
		m = reg->families[i];
		goto out;
	}
	if (reg->family_count >= EFS_METRIC_MAX_FAMILIES) {
		r = -E2BIG;
		goto out;
	}
	r = family_new(type, name, help, labels, label_count, buckets, bucket_count, &m);
	if (r == 0)
		reg->families[reg->family_count++] = m;
out:
	pthread_mutex_unlock(&reg->lock);
	if (r == 0)
		*out = m;
	return r;
}

/* ---- series ------------------------------------------------------------ */

/* FNV-1a over the label values, each cut to EFS_METRIC_LABEL_MAX bytes
 * (the length they are stored with) and followed by a separator. */
static uint64_t values_hash(const char *const *values, unsigned count)
{
	static const unsigned char separator = 0xff;
	uint64_t h = EFS_FNV1A_INIT;
	for (unsigned i = 0; i < count; i++) {
		h = efs_fnv1a(h, values[i], strnlen(values[i], EFS_METRIC_LABEL_MAX));
		h = efs_fnv1a(h, &separator, 1);
	}
	return h;
}

static bool values_equal(const struct series *s, const char *const *values, unsigned count)
{
	for (unsigned i = 0; i < count; i++)
		if (strncmp(s->values[i], values[i], EFS_METRIC_LABEL_MAX) != 0 ||
		    strlen(s->values[i]) != strnlen(values[i], EFS_METRIC_LABEL_MAX))
			return false;
	return true;
}

/* Finds the series for @values, creating it when @create. Called with the
 * family's lock held. NULL with *err set when it is absent or cannot be
 * made. */
static struct series *series_find(struct efs_metric *m, const char *const *values, bool create,
				  int *err)
{
	uint64_t h = values_hash(values, m->label_count);
	for (size_t i = 0; i < m->series_count; i++) {
		struct series *s = m->series[i];
		if (s->hash == h && values_equal(s, values, m->label_count))
			return s;
	}
	*err = -ENOENT;
	if (!create)
		return NULL;
	*err = -E2BIG;
	if (m->series_count >= EFS_METRIC_MAX_SERIES)
		return NULL;
	*err = -ENOMEM;
	if (m->series_count == m->series_alloc) {
		size_t grow = m->series_alloc ? m->series_alloc * 2 : 8;
		struct series **p = realloc(m->series, grow * sizeof(*p));
		if (!p)
			return NULL;
		m->series = p;
		m->series_alloc = grow;
	}
	struct series *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->hash = h;
	for (unsigned i = 0; i < m->label_count; i++) {
		if (!(s->values[i] = strndup(values[i], EFS_METRIC_LABEL_MAX))) {
			series_free(s);
			return NULL;
		}
	}
	if (m->type == EFS_METRIC_HISTOGRAM &&
	    !(s->bucket_counts = calloc(m->bucket_count + 1, sizeof(*s->bucket_counts)))) {
		series_free(s);
		return NULL;
	}
	m->series[m->series_count++] = s;
	return s;
}

static bool values_present(const struct efs_metric *m, const char *const *values)
{
	if (m->label_count == 0)
		return true;
	if (!values)
		return false;
	for (unsigned i = 0; i < m->label_count; i++)
		if (!values[i])
			return false;
	return true;
}

enum op { OP_ADD, OP_SET, OP_OBSERVE };

static int update(struct efs_metric *m, const char *const *values, enum op op, double v)
{
	int r = 0;

	if (!m || !values_present(m, values) || isnan(v))
		return -EINVAL;
	if ((op == OP_OBSERVE) != (m->type == EFS_METRIC_HISTOGRAM) ||
	    (op == OP_ADD && m->type == EFS_METRIC_COUNTER && v < 0))
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	struct series *s = series_find(m, values, true, &r);
	if (!s)
		goto out;
	r = 0;
	if (op == OP_ADD) {
		s->value += v;
	} else if (op == OP_SET) {
		s->value = v;
	} else {
		size_t b = 0;
		while (b < m->bucket_count && v > m->bounds[b])
			b++;
		s->bucket_counts[b]++;
		s->sum += v;
		s->count++;
	}
out:
	pthread_mutex_unlock(&m->lock);
	return r;
}

int efs_metric_add(struct efs_metric *m, const char *const *values, double v)
{
	return update(m, values, OP_ADD, v);
}

int efs_metric_set(struct efs_metric *m, const char *const *values, double v)
{
	return update(m, values, OP_SET, v);
}

int efs_metric_observe(struct efs_metric *m, const char *const *values, double v)
{
	return update(m, values, OP_OBSERVE, v);
}

int efs_metrics_put(struct efs_metrics *reg, enum efs_metric_type type, const char *name,
		    const char *help, double v)
{
	struct efs_metric *m;
	int r = efs_metrics_declare(reg, type, name, help, NULL, NULL, 0, &m);
	return r < 0 ? r : efs_metric_set(m, NULL, v);
}

int efs_metric_get(struct efs_metric *m, const char *const *values, double *out)
{
	int r = 0;
	if (!m || !values_present(m, values))
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	struct series *s = series_find(m, values, false, &r);
	if (s) {
		*out = m->type == EFS_METRIC_HISTOGRAM ? (double)s->count : s->value;
		r = 0;
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

struct efs_metric *efs_metrics_find(struct efs_metrics *reg, const char *name)
{
	struct efs_metric *found = NULL;
	if (!reg || !name)
		return NULL;
	pthread_mutex_lock(&reg->lock);
	for (size_t i = 0; !found && i < reg->family_count; i++)
		if (strcmp(reg->families[i]->name, name) == 0)
			found = reg->families[i];
	pthread_mutex_unlock(&reg->lock);
	return found;
}

int efs_metric_totals(struct efs_metric *m, struct efs_metric_totals *out)
{
	if (!m || !out)
		return -EINVAL;
	struct efs_metric_totals t;
	memset(&t, 0, sizeof(t));
	pthread_mutex_lock(&m->lock);
	if (m->type == EFS_METRIC_HISTOGRAM) {
		t.bucket_count = m->bucket_count;
		memcpy(t.bounds, m->bounds, m->bucket_count * sizeof(*m->bounds));
	}
	for (size_t i = 0; i < m->series_count; i++) {
		const struct series *s = m->series[i];
		if (m->type != EFS_METRIC_HISTOGRAM) {
			t.value += s->value;
			continue;
		}
		t.value += s->sum;
		t.count += s->count;
		for (size_t b = 0; b <= m->bucket_count; b++)
			t.buckets[b] += s->bucket_counts[b];
	}
	pthread_mutex_unlock(&m->lock);
	*out = t;
	return 0;
}

/* ---- rendering ---------------------------------------------------------- */

char *efs_metrics_format_value(double v, char *out)
{
	if (isnan(v)) {
		snprintf(out, 32, "NaN");
	} else if (isinf(v)) {
		snprintf(out, 32, "%s", v > 0 ? "+Inf" : "-Inf");
	} else if (v == 0) {
		snprintf(out, 32, "0"); /* also -0 */
	} else {
		/* The shortest of %.15g, %.16g and %.17g that reads back
		 * exactly: 0.005 stays 0.005, integers stay integers. */
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(out, 32, "%.*g", prec, v);
			if (strtod(out, NULL) == v)
				break;
		}
	}
	return out;
}

/* Appends @s with the escapes the text format needs: backslash and
 * newline always, the double quote inside label values. */
static int put_escaped(struct efs_buf *out, const char *s, bool quote)
{
	const char *run = s;
	int r = 0;
	for (const char *p = s; *p && r == 0; p++) {
		const char *esc = *p == '\\'		 ? "\\\\"
				  : *p == '\n'		 ? "\\n"
				  : (quote && *p == '"') ? "\\\""
							 : NULL;
		if (!esc)
			continue;
		r = efs_buf_append(out, run, (size_t)(p - run));
		if (r == 0)
			r = efs_buf_puts(out, esc);
		run = p + 1;
	}
	if (r == 0)
		r = efs_buf_puts(out, run);
	return r;
}

/* {a="x",b="y"} plus an optional le="..." at the end; nothing when there
 * are no labels at all. */
static int put_labels(struct efs_buf *out, const struct efs_metric *m, const struct series *s,
		      const char *le)
{
	int r = 0;
	if (m->label_count == 0 && !le)
		return 0;
	r = efs_buf_puts(out, "{");
	for (unsigned i = 0; r == 0 && i < m->label_count; i++) {
		r = efs_buf_printf(out, "%s%s=\"", i ? "," : "", m->labels[i]);
		if (r == 0)
			r = put_escaped(out, s->values[i], true);
		if (r == 0)
			r = efs_buf_puts(out, "\"");
	}
	if (r == 0 && le)
		r = efs_buf_printf(out, "%sle=\"%s\"", m->label_count ? "," : "", le);
	if (r == 0)
		r = efs_buf_puts(out, "}");
	return r;
}

static int put_sample(struct efs_buf *out, const struct efs_metric *m, const char *suffix,
		      const struct series *s, const char *le, double v)
{
	char num[32];
	int r = efs_buf_printf(out, "%s%s", m->name, suffix);
	if (r == 0)
		r = put_labels(out, m, s, le);
	if (r == 0)
		r = efs_buf_printf(out, " %s\n", efs_metrics_format_value(v, num));
	return r;
}

static int put_histogram(struct efs_buf *out, const struct efs_metric *m, const struct series *s)
{
	char le[32];
	uint64_t cumulative = 0;
	int r = 0;
	for (size_t b = 0; r == 0 && b <= m->bucket_count; b++) {
		cumulative += s->bucket_counts[b];
		if (b < m->bucket_count)
			efs_metrics_format_value(m->bounds[b], le);
		else
			snprintf(le, sizeof(le), "+Inf");
		r = put_sample(out, m, "_bucket", s, le, (double)cumulative);
	}
	if (r == 0)
		r = put_sample(out, m, "_sum", s, NULL, s->sum);
	if (r == 0)
		r = put_sample(out, m, "_count", s, NULL, (double)s->count);
	return r;
}

static int render_family(struct efs_metric *m, struct efs_buf *out)
{
	int r = efs_buf_printf(out, "# HELP %s ", m->name);
	if (r == 0)
		r = put_escaped(out, m->help, false);
	if (r == 0)
		r = efs_buf_printf(out, "\n# TYPE %s %s\n", m->name, type_names[m->type]);
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; r == 0 && i < m->series_count; i++) {
		const struct series *s = m->series[i];
		if (m->type == EFS_METRIC_HISTOGRAM)
			r = put_histogram(out, m, s);
		else
			r = put_sample(out, m, "", s, NULL, s->value);
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

int efs_metrics_render(struct efs_metrics *reg, struct efs_buf *out)
{
	struct efs_metric *families[EFS_METRIC_MAX_FAMILIES];
	size_t count;
	int r = 0;

	/* Families are never removed before the registry is freed: a copy
	 * of the list lets updates declare new ones while this renders. */
	pthread_mutex_lock(&reg->lock);
	count = reg->family_count;
	memcpy(families, reg->families, count * sizeof(families[0]));
	pthread_mutex_unlock(&reg->lock);
	for (size_t i = 0; r == 0 && i < count; i++)
		r = render_family(families[i], out);
	return r;
}
