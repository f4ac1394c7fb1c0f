/* SPDX-License-Identifier: MIT */
/* million.c - fills a metadata store and a worker's volume store with N
 * small files, and times what a pass over the data costs, for
 * bench/million.sh (costs at a million files, docs/PERFORMANCE.md).
 *
 *   million meta-fill  --data DIR [--url URL] --n N --worker ID [--threads 16]
 *   million store-fill --dir DIR --n N [--threads 32]
 *   million meta-probe --data DIR [--url URL]
 *   million store-probe --dir DIR [--sample 20000]
 *
 * File i (0 <= i < N) belongs to owner "bench", is named m<i>, was created
 * at (now at fill - N - 60 s + i) ms, and has one chunk of CHUNK_BYTES
 * bytes derived from i, whose id is the SHA-256 of those bytes; its one
 * replica is on worker ID. store-fill writes the same chunks into a
 * worker's volume store (the worker's WORKER_DATA_DIR), so a worker
 * started on it reports chunks the master knows. Fills go through the
 * public interfaces (efs_meta_file_create_single; the store's writer) from
 * several threads, so group commit batches the transactions and the
 * fsyncs. The directories must not be in use by a running master or
 * worker. Probes print one JSON object of milliseconds. Not a test:
 * nothing here asserts a time.
 */
#include "echofs/hash.h"
#include "echofs/log.h"
#include "echofs/meta.h"
#include "echofs/util.h"
#include "worker/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHUNK_BYTES 512
#define MAX_THREADS 128
#define OWNER "bench"

static double now_ms_f(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Chunk i's bytes and id. */
static void chunk_of(uint64_t i, unsigned char *bytes, char id[65])
{
	uint64_t x = i * 0x9E3779B97F4A7C15ull + 1;
	for (size_t k = 0; k < CHUNK_BYTES; k += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(bytes + k, &x, 8);
	}
	memcpy(bytes, &i, sizeof(i));
	struct efs_sha256 h;
	efs_sha256_init(&h);
	efs_sha256_update(&h, bytes, CHUNK_BYTES);
	efs_sha256_final_hex(&h, id);
	efs_sha256_release(&h);
}

struct fill {
	struct efs_meta *meta;
	struct efs_store *store;
	const char *worker_id;
	uint64_t n;
	int64_t base_ms;
	atomic_uint_fast64_t next;
	atomic_uint_fast64_t done;
	atomic_int error;
};

#define FILL_STEP 64 /* items a thread takes at a time */

static int fill_one_meta(struct fill *f, uint64_t i)
{
	struct efs_file_info file;
	struct efs_chunk_info chunk;
	unsigned char bytes[CHUNK_BYTES];
	const char *workers[1] = {f->worker_id};

	memset(&file, 0, sizeof(file));
	memset(&chunk, 0, sizeof(chunk));
	chunk_of(i, bytes, chunk.chunk_id);
	chunk.size = chunk.stored_size = CHUNK_BYTES;
	snprintf(file.file_id, sizeof(file.file_id), "b1%030llx", (unsigned long long)i);
	snprintf(file.owner, sizeof(file.owner), OWNER);
	snprintf(file.name, sizeof(file.name), "m%09llu", (unsigned long long)i);
	file.size = CHUNK_BYTES;
	efs_strlcpy(file.sha256, chunk.chunk_id, sizeof(file.sha256));
	file.chunk_size = 1 << 20;
	file.chunk_count = 1;
	file.replication = 1;
	file.stored_bytes = CHUNK_BYTES;
	file.created_at_ms = f->base_ms + (int64_t)i;
	int r = efs_meta_file_create_single(f->meta, &file, &chunk, workers, 1, false,
					    file.created_at_ms);
	return r == -EEXIST ? 0 : r; /* a fill run again */
}

static int fill_one_store(struct fill *f, uint64_t i)
{
	unsigned char bytes[CHUNK_BYTES];
	char id[65];
	struct efs_store_writer *w;
	chunk_of(i, bytes, id);
	int r = efs_store_write_begin(f->store, id, CHUNK_BYTES, 0, &w);
	if (r < 0)
		return r;
	if ((r = efs_store_write(w, bytes, CHUNK_BYTES)) < 0) {
		efs_store_write_abort(w);
		return r;
	}
	return efs_store_write_commit(w, false, 0);
}

static void *fill_main(void *arg)
{
	struct fill *f = arg;
	for (;;) {
		uint64_t first = atomic_fetch_add(&f->next, FILL_STEP);
		if (first >= f->n || atomic_load(&f->error))
			break;
		uint64_t last = EFS_MIN(first + FILL_STEP, f->n);
		for (uint64_t i = first; i < last; i++) {
			int r = f->meta ? fill_one_meta(f, i) : fill_one_store(f, i);
			if (r < 0) {
				int expected = 0;
				atomic_compare_exchange_strong(&f->error, &expected, r);
				return NULL;
			}
		}
		uint64_t done = atomic_fetch_add(&f->done, last - first) + (last - first);
		if (done / 100000 != (done - (last - first)) / 100000)
			fprintf(stderr, "million: %llu / %llu\n", (unsigned long long)done,
				(unsigned long long)f->n);
	}
	return NULL;
}

static int run_fill(struct fill *f, unsigned threads)
{
	pthread_t tids[MAX_THREADS];
	unsigned started = 0;
	double t0 = now_ms_f();
	for (; started < threads; started++)
		if (pthread_create(&tids[started], NULL, fill_main, f) != 0)
			break;
	for (unsigned i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	int r = atomic_load(&f->error);
	if (started == 0)
		r = -EAGAIN;
	double took = now_ms_f() - t0;
	printf("{\"n\": %llu, \"fill_ms\": %.0f, \"per_s\": %.0f, \"error\": \"%s\"}\n",
	       (unsigned long long)f->n, took, took > 0 ? (double)f->n * 1e3 / took : 0.0,
	       r < 0 ? strerror(-r) : "");
	return r;
}

/* ---- probes ------------------------------------------------------------- */

static double time_list(struct efs_meta *m, int64_t after, const char *after_id, size_t *n)
{
	struct efs_file_info *files = NULL;
	double t0 = now_ms_f();
	int r = efs_meta_file_list(m, OWNER, after, after_id, 101, &files, n);
	double took = now_ms_f() - t0;
	free(files);
	return r < 0 ? -1 : took;
}

static int meta_probe(struct efs_meta *m)
{
	int64_t now = efs_now_ms();
	size_t n = 0, listed = 0;
	double t0;
	char ids[128][65];
	char sids[128][EFS_ID_MAX + 1];
	uint64_t under = 0;
	struct efs_meta_stats st;
	struct efs_repair_need need[128];

	double first = time_list(m, -1, "", &listed);
	/* The last page: after every file but the newest few (the fill's
	 * files are all older than a minute; the bench's own uploads are
	 * newer). */
	double last = time_list(m, now - 30000, "", &n);
	printf("{\"list_first_ms\": %.2f, \"list_last_ms\": %.2f, \"list_last_rows\": %zu", first,
	       last, n);
	/* One collector pass's store calls when there is nothing to do. */
	t0 = now_ms_f();
	int r = efs_meta_garbage_list(m, now, 128, ids, &n);
	r |= efs_meta_session_expired(m, now, 128, sids, &n);
	r |= efs_meta_session_done_purge(m, now, 128, &n);
	int s3 = efs_meta_s3_upload_expired(m, now, 128, sids, &n);
	printf(", \"gc_pass_ms\": %.2f",
	       r < 0 || (s3 < 0 && s3 != -ENOTSUP) ? -1 : now_ms_f() - t0);
	/* One repair pass's store calls (every REPAIR_INTERVAL_MS). */
	t0 = now_ms_f();
	r = efs_meta_under_replicated(m, 1, now - 60000, &under);
	printf(", \"under_replicated_ms\": %.2f, \"under_replicated\": %llu",
	       r < 0 ? -1 : now_ms_f() - t0, (unsigned long long)under);
	t0 = now_ms_f();
	r = efs_meta_repair_list(m, 1, now - 60000, 128, need, &n);
	printf(", \"repair_list_ms\": %.2f", r < 0 ? -1 : now_ms_f() - t0);
	t0 = now_ms_f();
	r = efs_meta_stats(m, &st);
	printf(", \"stats_ms\": %.2f, \"files\": %llu}\n", r < 0 ? -1 : now_ms_f() - t0,
	       (unsigned long long)st.file_count);
	return 0;
}

struct ids {
	char (*id)[65];
	size_t count, alloc;
};

static int collect(void *ctx, const char *chunk_id, uint64_t length, int64_t mtime_ms)
{
	struct ids *l = ctx;
	if (l->count == l->alloc) {
		size_t grow = l->alloc ? l->alloc * 2 : 4096;
		void *p = realloc(l->id, grow * sizeof(*l->id));
		if (!p)
			return -ENOMEM;
		l->id = p;
		l->alloc = grow;
	}
	efs_strlcpy(l->id[l->count++], chunk_id, 65);
	return 0;
}

static int store_probe(const char *dir, size_t sample)
{
	struct efs_store *s;
	char err[256];
	struct ids l = {0};
	struct efs_buf buf;

	double t0 = now_ms_f();
	if (efs_store_open(dir, 0, &s, err, sizeof(err)) < 0) {
		fprintf(stderr, "million: %s\n", err);
		return 1;
	}
	double open_ms = now_ms_f() - t0;
	t0 = now_ms_f();
	int r = efs_store_iterate(s, collect, &l);
	double iterate_ms = now_ms_f() - t0;
	/* The scrubber's per-chunk work: read and verify, chunks spread
	 * over the whole store. */
	efs_buf_init(&buf, SIZE_MAX);
	size_t got = 0, step = l.count > sample ? l.count / sample : 1;
	t0 = now_ms_f();
	for (size_t i = 0; r == 0 && i < l.count && got < sample; i += step, got++) {
		uint32_t flags;
		if ((r = efs_store_get(s, l.id[i], &buf, &flags)) < 0)
			break;
	}
	double read_ms = now_ms_f() - t0;
	printf("{\"chunks\": %zu, \"open_ms\": %.1f, \"iterate_ms\": %.1f, \"read_us_per_chunk\": "
	       "%.2f, \"scrub_pass_est_ms\": %.0f, \"error\": \"%s\"}\n",
	       l.count, open_ms, iterate_ms, got ? read_ms * 1e3 / (double)got : 0.0,
	       got ? read_ms / (double)got * (double)l.count : 0.0, r < 0 ? strerror(-r) : "");
	efs_buf_release(&buf);
	free(l.id);
	efs_store_close(s);
	return r < 0;
}

/* ---- main --------------------------------------------------------------- */

static const char *opt(int argc, char **argv, const char *name, const char *def)
{
	for (int i = 2; i + 1 < argc; i += 2)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return def;
}

static int usage(void)
{
	fprintf(stderr, "usage: million meta-fill --data DIR [--url URL] --n N --worker ID "
			"[--threads 16]\n"
			"       million store-fill --dir DIR --n N [--threads 32]\n"
			"       million meta-probe --data DIR [--url URL]\n"
			"       million store-probe --dir DIR [--sample 20000]\n");
	return 2;
}

int main(int argc, char **argv)
{
	char err[256];
	if (argc < 2)
		return usage();
	const char *cmd = argv[1];
	efs_log_set_level(EFS_LOG_WARN);
	uint64_t n = strtoull(opt(argc, argv, "--n", "0"), NULL, 10);
	if (strcmp(cmd, "store-probe") == 0) {
		const char *dir = opt(argc, argv, "--dir", NULL);
		return dir ? store_probe(dir,
					 strtoull(opt(argc, argv, "--sample", "20000"), NULL, 10))
			   : usage();
	}
	if (strcmp(cmd, "store-fill") == 0) {
		const char *dir = opt(argc, argv, "--dir", NULL);
		unsigned threads = (unsigned)strtoul(opt(argc, argv, "--threads", "32"), NULL, 10);
		if (!dir || n == 0 || threads < 1 || threads > MAX_THREADS)
			return usage();
		struct fill f = {.n = n};
		if (efs_store_open(dir, 0, &f.store, err, sizeof(err)) < 0) {
			fprintf(stderr, "million: %s\n", err);
			return 1;
		}
		int r = run_fill(&f, threads);
		efs_store_close(f.store);
		return r < 0;
	}
	const char *data = opt(argc, argv, "--data", NULL);
	const char *url = opt(argc, argv, "--url", NULL);
	struct efs_meta *m;
	if (!data || (strcmp(cmd, "meta-fill") != 0 && strcmp(cmd, "meta-probe") != 0))
		return usage();
	if (efs_meta_open(url, data, &m, err, sizeof(err)) < 0) {
		fprintf(stderr, "million: %s\n", err);
		return 1;
	}
	int r;
	if (strcmp(cmd, "meta-probe") == 0) {
		r = meta_probe(m);
	} else {
		unsigned threads = (unsigned)strtoul(opt(argc, argv, "--threads", "16"), NULL, 10);
		struct fill f = {.meta = m, .n = n, .worker_id = opt(argc, argv, "--worker", NULL)};
		f.base_ms = efs_now_ms() - (int64_t)n - 60000;
		if (!f.worker_id || n == 0 || threads < 1 || threads > MAX_THREADS)
			r = usage();
		else
			r = run_fill(&f, threads) < 0;
	}
	efs_meta_close(m);
	return r;
}
