/* SPDX-License-Identifier: MIT */
/* ec_bench.c - erasure coding throughput (src/common/ec.c, ISA-L) against
 * memcpy of the same bytes, measured in the same run.
 *
 * For each layout (4+2 and 10+4 by default) one 4 MiB stripe of random
 * bytes is split into K data shards; then, on one thread, alternating so
 * that each sees the same machine state:
 *
 *   memcpy        the 4 MiB payload into another buffer (the baseline)
 *   encode        the M parity shards from the K data shards
 *   rebuild 1     one lost data shard from K others (a degraded read with
 *                 one worker down)
 *   rebuild M     M lost data shards (the worst case a stripe survives)
 *   setup         a rebuild of 64-byte shards: what building the decode
 *                 tables costs per call (the K x K inversion and table
 *                 expansion), to weigh against caching them
 *
 * Each figure is the median of RUNS samples of at least 50 ms of the
 * thread's CPU time each (CLOCK_THREAD_CPUTIME_ID, as multipart_bench), in MiB
 * of payload per second (a stripe is 4 MiB of payload whatever is done to
 * it), with its ratio to memcpy's median and the CPU seconds per GiB of
 * payload (one thread, so 1 / throughput). Every rebuilt shard is compared
 * with the original once, outside the timing.
 *
 *   make -C bench ec_bench            (needs `make` at the top first)
 *   build/bench/ec_bench [--facts] [--runs N] [--mib N] [K+M ...]
 *
 * --facts prints KEY=VALUE lines for bench/run.sh (bench/report.py turns
 * them into the "Erasure coding" lines of `make bench`); the default is a
 * table. Not a test: it asserts nothing about speed.
 */
#include "echofs/ec.h"
#include "echofs/util.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MIB (1024.0 * 1024.0)
#define MAX_RUNS 101
#define MIN_SAMPLE_NS 50000000LL /* 50 ms */

/* The calling thread's CPU time: a shared, busy machine delays the
 * process but does not inflate what it spends. */
static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void fill_random(unsigned char *data, size_t len, uint64_t seed)
{
	uint64_t x = seed | 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		data[i] = (unsigned char)((x * 0x2545F4914F6CDD1DULL) >> 56);
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One stripe and its scratch buffers. */
struct stripe {
	struct efs_ec *ec;
	struct efs_ec_layout layout;
	unsigned k, m;
	unsigned char *payload, *copy;
	unsigned char *shards[EFS_EC_MAX_SHARDS];
	unsigned char *pristine[EFS_EC_MAX_SHARDS];
};

enum op { OP_MEMCPY, OP_ENCODE, OP_REBUILD_1, OP_REBUILD_M, OP_SETUP, OP_COUNT };
static const char *const op_names[OP_COUNT] = {"memcpy", "encode", "rebuild_1", "rebuild_m",
					       "setup"};

static bool fail(const char *what)
{
	fprintf(stderr, "ec_bench: %s\n", what);
	return false;
}

static uint32_t lost_mask(const struct stripe *s, enum op op)
{
	unsigned lost = op == OP_REBUILD_1 ? 1 : s->m;
	if (lost > s->k)
		lost = s->k;
	return ((uint32_t)1 << lost) - 1; /* the first data shards */
}

/* One call of @op. */
static bool run_once(struct stripe *s, enum op op)
{
	uint32_t all = ((uint64_t)1 << (s->k + s->m)) - 1, lost;
	switch (op) {
	case OP_MEMCPY:
		memcpy(s->copy, s->payload, (size_t)s->layout.payload_len);
		return true;
	case OP_ENCODE:
		return efs_ec_encode(s->ec, s->layout.shard_len, s->shards, &s->shards[s->k]) == 0;
	case OP_REBUILD_1:
	case OP_REBUILD_M:
		lost = lost_mask(s, op);
		return efs_ec_reconstruct(s->ec, s->layout.shard_len, s->shards, all & ~lost,
					  lost) == 0;
	case OP_SETUP:
		lost = lost_mask(s, OP_REBUILD_M);
		return efs_ec_reconstruct(s->ec, EFS_EC_SHARD_ALIGN, s->shards, all & ~lost,
					  lost) == 0;
	case OP_COUNT:
		break;
	}
	return false;
}

/* One sample: calls of @op for at least MIN_SAMPLE_NS; their mean time in
 * ns into *ns_per_call. */
static bool sample(struct stripe *s, enum op op, double *ns_per_call)
{
	int64_t start = now_ns(), elapsed;
	uint64_t calls = 0;
	do {
		for (int i = 0; i < 8; i++)
			if (!run_once(s, op))
				return fail("an ec call failed");
		calls += 8;
		elapsed = now_ns() - start;
	} while (elapsed < MIN_SAMPLE_NS);
	*ns_per_call = (double)elapsed / (double)calls;
	return true;
}

static bool stripe_make(struct stripe *s, unsigned k, unsigned m, size_t payload_len)
{
	memset(s, 0, sizeof(*s));
	s->k = k;
	s->m = m;
	if (efs_ec_new(k, m, &s->ec) != 0)
		return fail("efs_ec_new failed");
	if (efs_ec_layout(s->ec, payload_len, &s->layout) != 0)
		return fail("efs_ec_layout failed");
	s->payload = malloc(payload_len);
	s->copy = malloc(payload_len);
	if (!s->payload || !s->copy)
		return fail("out of memory");
	fill_random(s->payload, payload_len, k * 100 + m);
	memset(s->copy, 0, payload_len); /* faulted in before any timing */
	for (unsigned i = 0; i < k + m; i++) {
		s->shards[i] = aligned_alloc(64, s->layout.shard_len);
		s->pristine[i] = malloc(s->layout.shard_len);
		if (!s->shards[i] || !s->pristine[i])
			return fail("out of memory");
		memset(s->shards[i], 0, s->layout.shard_len);
	}
	efs_ec_split(&s->layout, s->payload, s->shards);
	if (efs_ec_encode(s->ec, s->layout.shard_len, s->shards, &s->shards[k]) != 0)
		return fail("encode failed");
	for (unsigned i = 0; i < k + m; i++)
		memcpy(s->pristine[i], s->shards[i], s->layout.shard_len);
	return true;
}

static void stripe_free(struct stripe *s)
{
	for (unsigned i = 0; i < s->k + s->m; i++) {
		free(s->shards[i]);
		free(s->pristine[i]);
	}
	free(s->payload);
	free(s->copy);
	efs_ec_free(s->ec);
}

/* The rebuilds must give back the original shards: checked once, after
 * wiping the lost ones. */
static bool check_rebuilds(struct stripe *s)
{
	const enum op ops[] = {OP_REBUILD_1, OP_REBUILD_M};
	for (size_t o = 0; o < 2; o++) {
		uint32_t lost = lost_mask(s, ops[o]);
		for (unsigned i = 0; i < s->k; i++)
			if (lost >> i & 1)
				memset(s->shards[i], 0xa5, s->layout.shard_len);
		if (!run_once(s, ops[o]))
			return fail("rebuild failed");
		for (unsigned i = 0; i < s->k + s->m; i++)
			if (memcmp(s->shards[i], s->pristine[i], s->layout.shard_len) != 0)
				return fail("a rebuilt shard differs from the original");
	}
	return true;
}

static bool bench_layout(unsigned k, unsigned m, size_t payload_len, int runs, bool facts)
{
	struct stripe s;
	double samples[OP_COUNT][MAX_RUNS], med[OP_COUNT];
	bool ok = false;

	if (!stripe_make(&s, k, m, payload_len) || !check_rebuilds(&s))
		goto out;
	for (int r = 0; r < runs; r++)
		for (int op = 0; op < OP_COUNT; op++)
			if (!sample(&s, (enum op)op, &samples[op][r]))
				goto out;
	if (!check_rebuilds(&s))
		goto out;
	for (int op = 0; op < OP_COUNT; op++)
		med[op] = median(samples[op], runs);

	double mib = (double)payload_len / MIB;
	double base_mib_s = mib / (med[OP_MEMCPY] / 1e9);
	if (facts) {
		printf("ec_%u_%u_payload_bytes=%zu\n", k, m, payload_len);
		printf("ec_%u_%u_shard_len=%zu\n", k, m, s.layout.shard_len);
		for (int op = 0; op < OP_SETUP; op++) {
			double mib_s = mib / (med[op] / 1e9);
			printf("ec_%u_%u_%s_mib_s=%.1f\n", k, m, op_names[op], mib_s);
			if (op != OP_MEMCPY)
				printf("ec_%u_%u_%s_ratio=%.4f\n", k, m, op_names[op],
				       mib_s / base_mib_s);
		}
		printf("ec_%u_%u_setup_us=%.2f\n", k, m, med[OP_SETUP] / 1e3);
		printf("ec_%u_%u_rebuild_m_us=%.1f\n", k, m, med[OP_REBUILD_M] / 1e3);
	} else {
		printf("ec:%u+%u  %.0f MiB stripe, %u data shards of %zu bytes, %u parity\n", k, m,
		       mib, k, s.layout.shard_len, m);
		for (int op = 0; op < OP_SETUP; op++) {
			double mib_s = mib / (med[op] / 1e9);
			printf("  %-22s %9.1f MiB/s  %6.3fx memcpy  %6.3f CPU s/GiB  %8.1f "
			       "us/stripe\n",
			       op == OP_REBUILD_M   ? "rebuild M data shards"
			       : op == OP_REBUILD_1 ? "rebuild 1 data shard"
						    : op_names[op],
			       mib_s, mib_s / base_mib_s, 1024.0 / mib_s, med[op] / 1e3);
		}
		printf("  %-22s %9.2f us per call (%.2f%% of a %.0f MiB rebuild of M shards)\n",
		       "decode table setup", med[OP_SETUP] / 1e3,
		       100.0 * med[OP_SETUP] / med[OP_REBUILD_M], mib);
	}
	ok = true;
out:
	stripe_free(&s);
	return ok;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: ec_bench [--facts] [--runs N (1..%d)] [--mib N (1..1024)] "
		"[K+M ...]\n",
		MAX_RUNS);
	exit(2);
}

int main(int argc, char **argv)
{
	bool facts = false;
	uint64_t runs = 7, mib = 4;
	unsigned shapes[16][2];
	size_t nshapes = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--facts") == 0) {
			facts = true;
		} else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
			if (efs_parse_u64(argv[++i], false, &runs) != 0 || runs < 1 ||
			    runs > MAX_RUNS)
				usage();
		} else if (strcmp(argv[i], "--mib") == 0 && i + 1 < argc) {
			if (efs_parse_u64(argv[++i], false, &mib) != 0 || mib < 1 || mib > 1024)
				usage();
		} else {
			char policy[EFS_POLICY_MAX_LEN + 8];
			struct efs_policy p;
			snprintf(policy, sizeof(policy), "ec:%s", argv[i]);
			if (nshapes == 16 || efs_ec_policy_parse(policy, &p) != 0)
				usage();
			shapes[nshapes][0] = p.data_shards;
			shapes[nshapes++][1] = p.parity_shards;
		}
	}
	if (nshapes == 0) {
		shapes[0][0] = 4, shapes[0][1] = 2;
		shapes[1][0] = 10, shapes[1][1] = 4;
		nshapes = 2;
	}
	if (!facts)
		printf("erasure coding, one thread, median of %d samples of >= 50 ms CPU each; "
		       "MiB of payload per CPU second\n",
		       (int)runs);
	for (size_t i = 0; i < nshapes; i++)
		if (!bench_layout(shapes[i][0], shapes[i][1], (size_t)(mib * 1024 * 1024),
				  (int)runs, facts))
			return 1;
	return 0;
}
