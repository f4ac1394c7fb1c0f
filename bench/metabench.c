/* SPDX-License-Identifier: MIT */
/* metabench.c - micro benchmark of the metadata store's write path: the
 * metadata calls of one small one-request upload, repeated by several
 * threads at once against one store, without HTTP or workers.
 *
 * One operation is what POST /api/v1/files/upload of a one-chunk file does
 * to the store: session_create (hidden), chunk_get (a miss), put_chunk (a
 * new chunk on 3 workers), session_get, session_complete: three write
 * transactions and two reads. With --single 1 it is what the same upload
 * costs through efs_meta_file_create_single: chunk_get and one write
 * transaction (that mode needs a commit that has the function). Uses only
 * the public meta.h interface. Prints one JSON object.
 *
 *   build/bench/metabench [--threads 16] [--seconds 5] [--single 0|1]
 *                         [--dir DIR | --url URL]
 *
 * DIR (default: a new directory under /var/tmp, removed afterwards; keep it
 * on the disk you want to measure, /tmp may be tmpfs) holds the SQLite
 * file; --url names any DATABASE_URL (e.g. postgres://...). Not a test:
 * nothing here asserts a time.
 */
#include "echofs/log.h"
#include "echofs/meta.h"
#include "echofs/util.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 256
#define MAX_SAMPLES (1u << 20) /* latencies kept per thread, at most */

#ifndef METABENCH_SINGLE
#define METABENCH_SINGLE 1 /* 0: build against a meta.h without file_create_single */
#endif

struct bench_thread {
	struct efs_meta *m;
	bool single;
	int index;
	int64_t deadline_ns;
	uint64_t ops, errors;
	int first_error;
	uint32_t *lat_us;
	size_t samples;
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void file_fill(struct efs_file_info *f, int thread, uint64_t n, const char *name,
		      const char *sha256)
{
	snprintf(f->file_id, sizeof(f->file_id), "f%07d%024llx", thread, (unsigned long long)n);
	snprintf(f->owner, sizeof(f->owner), "bench");
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->size = 4096;
	snprintf(f->sha256, sizeof(f->sha256), "%s", sha256);
	f->chunk_size = 1 << 20;
	f->chunk_count = 1;
	f->replication = 3;
	f->stored_bytes = 4096;
	f->created_at_ms = efs_now_ms();
}

/* The store calls of one small upload. */
static int one_upload(struct efs_meta *m, bool single, int thread, uint64_t n)
{
	static const char *const workers[3] = {"bench-w1", "bench-w2", "bench-w3"};
	struct efs_session_info s = {0}, got;
	struct efs_chunk_info chunk = {0}, existing;
	struct efs_file_info f = {0};
	int r;

	if (single) {
#if METABENCH_SINGLE
		snprintf(chunk.chunk_id, sizeof(chunk.chunk_id), "%016x%048llx", (unsigned)thread,
			 (unsigned long long)n);
		chunk.size = chunk.stored_size = 4096;
		r = efs_meta_chunk_get(m, chunk.chunk_id, &existing, NULL, NULL);
		if (r != -ENOENT)
			return r < 0 ? r : -EEXIST;
		file_fill(&f, thread, n, "small", chunk.chunk_id);
		return efs_meta_file_create_single(m, &f, &chunk, workers, 3, false, efs_now_ms());
#else
		return -ENOSYS;
#endif
	}
	snprintf(s.session_id, sizeof(s.session_id), "s%07d%024llx", thread, (unsigned long long)n);
	snprintf(s.owner, sizeof(s.owner), "bench");
	snprintf(s.name, sizeof(s.name), "small-%d-%llu", thread, (unsigned long long)n);
	s.declared_size = -1;
	s.chunk_size = 1 << 20;
	s.hidden = true;
	s.created_at_ms = efs_now_ms();
	s.expires_at_ms = s.created_at_ms + 60000;
	if ((r = efs_meta_session_create(m, &s)) < 0)
		return r;
	snprintf(chunk.chunk_id, sizeof(chunk.chunk_id), "%016x%048llx", (unsigned)thread,
		 (unsigned long long)n);
	chunk.size = chunk.stored_size = 4096;
	r = efs_meta_chunk_get(m, chunk.chunk_id, &existing, NULL, NULL);
	if (r != -ENOENT)
		return r < 0 ? r : -EEXIST;
	int64_t now = efs_now_ms();
	if ((r = efs_meta_session_put_chunk(m, s.session_id, 0, &chunk, workers, 3, false, now,
					    now + 60000, 0)) < 0)
		return r;
	if ((r = efs_meta_session_get(m, s.session_id, &got)) < 0)
		return r;
	file_fill(&f, thread, n, s.name, chunk.chunk_id);
	return efs_meta_session_complete(m, s.session_id, got.version, &f, 0);
}

static void *bench_main(void *arg)
{
	struct bench_thread *t = arg;
	for (uint64_t n = 0;; n++) {
		int64_t start = now_ns();
		if (start >= t->deadline_ns)
			break;
		int r = one_upload(t->m, t->single, t->index, n);
		int64_t took = now_ns() - start;
		if (r < 0) {
			if (!t->errors++)
				t->first_error = r;
			continue;
		}
		t->ops++;
		if (t->samples < MAX_SAMPLES)
			t->lat_us[t->samples++] = (uint32_t)(took / 1000);
	}
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

int main(int argc, char **argv)
{
	int threads = 16;
	bool single = false;
	double seconds = 5;
	const char *dir = NULL, *url = NULL;
	char tmpdir[] = "/var/tmp/echofs-metabench-XXXXXX";
	char err[256] = "";
	struct efs_meta *m = NULL;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--threads") == 0)
			threads = (int)strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--seconds") == 0)
			seconds = strtod(argv[i + 1], NULL);
		else if (strcmp(argv[i], "--single") == 0)
			single = strcmp(argv[i + 1], "0") != 0;
		else if (strcmp(argv[i], "--dir") == 0)
			dir = argv[i + 1];
		else if (strcmp(argv[i], "--url") == 0)
			url = argv[i + 1];
		else {
			fprintf(stderr, "usage: metabench [--threads N] [--seconds S] [--single 0|1]"
					" [--dir DIR | --url URL]\n");
			return 2;
		}
	}
	if (threads < 1 || threads > MAX_THREADS || seconds <= 0) {
		fprintf(stderr, "metabench: 1-%d threads and a positive duration\n", MAX_THREADS);
		return 2;
	}
	efs_log_set_level(EFS_LOG_WARN); /* not the migrations' info lines */
	if (!dir && !url) {
		if (!mkdtemp(tmpdir)) {
			perror("mkdtemp");
			return 1;
		}
	}
	if (efs_meta_open(url, dir ? dir : tmpdir, &m, err, sizeof(err)) < 0) {
		fprintf(stderr, "metabench: %s\n", err);
		return 1;
	}

	struct bench_thread *t = calloc((size_t)threads, sizeof(*t));
	pthread_t *tids = calloc((size_t)threads, sizeof(*tids));
	if (!t || !tids)
		return 1;
	int64_t start = now_ns();
	for (int i = 0; i < threads; i++) {
		t[i].m = m;
		t[i].single = single;
		t[i].index = i + (int)(getpid() % 1000) * MAX_THREADS; /* ids unique per run */
		t[i].deadline_ns = start + (int64_t)(seconds * 1e9);
		t[i].lat_us = malloc(MAX_SAMPLES * sizeof(uint32_t));
		if (!t[i].lat_us || pthread_create(&tids[i], NULL, bench_main, &t[i]) != 0)
			return 1;
	}
	uint64_t ops = 0, errors = 0;
	size_t samples = 0;
	int first_error = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(tids[i], NULL);
		ops += t[i].ops;
		errors += t[i].errors;
		samples += t[i].samples;
		if (!first_error)
			first_error = t[i].first_error;
	}
	double elapsed = (double)(now_ns() - start) / 1e9;
	uint32_t *all = malloc((samples ? samples : 1) * sizeof(uint32_t));
	if (!all)
		return 1;
	size_t k = 0;
	for (int i = 0; i < threads; i++) {
		memcpy(all + k, t[i].lat_us, t[i].samples * sizeof(uint32_t));
		k += t[i].samples;
		free(t[i].lat_us);
	}
	qsort(all, samples, sizeof(uint32_t), cmp_u32);
	double p50 = samples ? all[(samples - 1) / 2] / 1000.0 : 0;
	double p99 = samples ? all[(size_t)((double)(samples - 1) * 0.99)] / 1000.0 : 0;
	double max = samples ? all[samples - 1] / 1000.0 : 0;
	printf("{\"backend\": \"%s\", \"single\": %s, \"threads\": %d, \"seconds\": %.2f,"
	       " \"uploads\": %llu, \"uploads_per_s\": %.1f, \"write_tx_per_s\": %.1f,"
	       " \"p50_ms\": %.2f, \"p99_ms\": %.2f, \"max_ms\": %.2f, \"errors\": %llu,"
	       " \"first_error\": %d}\n",
	       efs_meta_backend(m), single ? "true" : "false", threads, elapsed,
	       (unsigned long long)ops, (double)ops / elapsed,
	       (single ? 1.0 : 3.0) * (double)ops / elapsed, p50, p99, max,
	       (unsigned long long)errors, first_error);
	free(all);
	free(t);
	free(tids);
	efs_meta_close(m);
	if (!dir && !url)
		nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return errors ? 1 : 0;
}
