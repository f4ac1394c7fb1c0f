/* SPDX-License-Identifier: MIT */
/* late_writes.c - given-up replica writes watched until their late copies
 * are settled (the contract is in late_writes.h). */
#include "master/late_writes.h"
#include "echofs/http_client.h"
#include "echofs/log.h"
#include "echofs/util.h"
#include "master/chunk_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Past ORPHAN_GRACE_MS before the first check: a copy landing at the
 * give-up is old enough by then. */
#define LATE_WRITE_MARGIN_MS 500
#define LATE_WRITE_STEP_MIN_MS 1000
#define LATE_WRITE_STEP_MAX_MS 15000
/* How often the thread looks for checks due, and how many it makes at
 * most per look (the rest wait for the next). */
#define LATE_WRITE_POLL_MS 250
#define LATE_WRITE_PASS_MAX 64
/* A DELETE is one unlink on the worker. */
#define LATE_WRITE_DELETE_TIMEOUT_MS 5000
#define LATE_WRITE_CONNECT_TIMEOUT_MS 1000

enum outcome { LATE_DONE, LATE_AGAIN };

bool efs_late_writes_note(struct efs_late_writes *lw, const char *worker_id, const char *url,
			  const char *chunk_id)
{
	int64_t now = efs_mono_ms();
	bool dropped = false;
	pthread_mutex_lock(&lw->lock);
	if (!lw->list) {
		pthread_mutex_unlock(&lw->lock);
		return false; /* not started: the reports alone settle it */
	}
	size_t i = 0;
	while (i < lw->count && (strcmp(lw->list[i].chunk_id, chunk_id) != 0 ||
				 strcmp(lw->list[i].worker_id, worker_id) != 0))
		i++;
	if (i == lw->count && lw->count < EFS_LATE_WRITES_MAX) {
		struct efs_late_write *e = &lw->list[lw->count++];
		efs_strlcpy(e->worker_id, worker_id, sizeof(e->worker_id));
		efs_strlcpy(e->url, url, sizeof(e->url));
		efs_strlcpy(e->chunk_id, chunk_id, sizeof(e->chunk_id));
	} else if (i == lw->count) {
		dropped = !lw->full_logged;
		lw->full_logged = true;
		i = SIZE_MAX;
	}
	if (i != SIZE_MAX) {
		struct efs_late_write *e = &lw->list[i];
		e->given_up_ms = now;
		e->next_ms = now + lw->orphan_grace_ms + LATE_WRITE_MARGIN_MS;
		e->step_ms = LATE_WRITE_STEP_MIN_MS;
	}
	pthread_mutex_unlock(&lw->lock);
	if (dropped)
		efs_warn("%d given-up replica writes watched already: copies more of them leave "
			 "on their workers wait for the workers' chunk reports",
			 EFS_LATE_WRITES_MAX);
	return i != SIZE_MAX;
}

/* Whether a replica row names @e's worker for its chunk: 1, 0 (none, or
 * the chunk is not stored at all), or -errno (the store did not answer).
 * *@short_of is set when the chunk (full replicas) has fewer good replicas
 * on live workers than REPLICATION_FACTOR: the copy may be worth keeping
 * (a report adopts such a copy, sql_repair.c judge()). */
static int named(struct efs_late_writes *lw, const struct efs_late_write *e, bool *short_of)
{
	struct efs_chunk_info chunk;
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	unsigned count = 0, good = 0;
	*short_of = false;
	int r = efs_meta_chunk_get(lw->meta, e->chunk_id, &chunk, replicas, &count);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	for (unsigned i = 0; i < EFS_MIN(count, (unsigned)EFS_MAX_REPLICAS); i++) {
		if (strcmp(replicas[i].worker_id, e->worker_id) == 0)
			return 1;
		good += !replicas[i].bad && efs_replica_alive(lw->chunk_io, &replicas[i]);
	}
	*short_of = chunk.ec_data == 0 && good < lw->replication;
	return 0;
}

/* One check of @e (a copy of the list entry): LATE_DONE when settled. */
static enum outcome check(struct efs_late_writes *lw, const struct efs_late_write *e)
{
	struct efs_chunk_io *io = lw->chunk_io;
	char url[EFS_URL_MAX + 80], condition[64];
	bool short_of;
	int r = named(lw, e, &short_of);
	if (r != 0)
		return r > 0 ? LATE_DONE : LATE_AGAIN;
	/* Not deleted while the chunk is short of good copies: repair adds
	 * one, or the worker's next report adopts this one. */
	if (short_of)
		return LATE_AGAIN;
	/* This master's own upload or repair of the chunk, under way. */
	if (efs_chunk_is_writing(io, e->chunk_id))
		return LATE_AGAIN;
	snprintf(url, sizeof(url), "%s/chunks/%s", e->url, e->chunk_id);
	snprintf(condition, sizeof(condition), "X-Unmodified-For-Ms: %lld",
		 (long long)lw->orphan_grace_ms);
	struct efs_http_call call;
	efs_http_call_init(&call, "DELETE", url);
	call.bearer = io->cluster_secret;
	call.headers[0] = condition;
	call.headers[1] = io->cluster_header[0] ? io->cluster_header : NULL;
	call.timeout_ms = LATE_WRITE_DELETE_TIMEOUT_MS;
	call.connect_timeout_ms = LATE_WRITE_CONNECT_TIMEOUT_MS;
	call.resp_cap = 16 * 1024;
	efs_http_call_run(io->http, &call);
	bool deleted = call.error == 0 && call.status == 204;
	if (deleted) {
		atomic_fetch_add(&lw->deleted_total, 1);
		efs_info("chunk %.12s: the copy a write to worker %s given up %lld ms ago left "
			 "there (no replica row names it) deleted",
			 e->chunk_id, e->worker_id, (long long)(efs_mono_ms() - e->given_up_ms));
	} else {
		efs_debug("chunk %.12s on worker %s, a write given up: %s%ld; checked again later",
			  e->chunk_id, e->worker_id, call.error ? call.errmsg : "status ",
			  call.error ? 0L : call.status);
	}
	efs_http_call_release(&call);
	return deleted ? LATE_DONE : LATE_AGAIN;
}

/* Takes up to @max entries due at @now out of the list into @due (ended
 * watches are dropped). */
static size_t take_due(struct efs_late_writes *lw, int64_t now, struct efs_late_write *due,
		       size_t max)
{
	size_t n = 0, i = 0;
	pthread_mutex_lock(&lw->lock);
	while (i < lw->count) {
		struct efs_late_write *e = &lw->list[i];
		bool ended = now - e->given_up_ms > EFS_LATE_WRITES_WATCH_MS;
		if (ended || (e->next_ms <= now && n < max)) {
			if (!ended)
				due[n++] = *e;
			lw->list[i] = lw->list[--lw->count];
			continue;
		}
		i++;
	}
	if (lw->count < EFS_LATE_WRITES_MAX / 2)
		lw->full_logged = false;
	pthread_mutex_unlock(&lw->lock);
	return n;
}

/* Puts @e back to be checked again, unless a new give-up of the same
 * write was noted meanwhile (that entry's schedule stands). */
static void put_back(struct efs_late_writes *lw, struct efs_late_write *e, int64_t now)
{
	e->next_ms = now + e->step_ms;
	e->step_ms = EFS_MIN(e->step_ms * 2, (int64_t)LATE_WRITE_STEP_MAX_MS);
	pthread_mutex_lock(&lw->lock);
	size_t i = 0;
	while (i < lw->count && (strcmp(lw->list[i].chunk_id, e->chunk_id) != 0 ||
				 strcmp(lw->list[i].worker_id, e->worker_id) != 0))
		i++;
	if (i == lw->count && lw->count < EFS_LATE_WRITES_MAX)
		lw->list[lw->count++] = *e;
	pthread_mutex_unlock(&lw->lock);
}

static void late_main(struct efs_ticker *t, void *arg)
{
	struct efs_late_writes *lw = arg;
	struct efs_late_write *due = calloc(LATE_WRITE_PASS_MAX, sizeof(*due));
	if (!due) {
		efs_error("late writes: out of memory; given-up writes wait for the reports");
		return;
	}
	while (!efs_ticker_wait(t, LATE_WRITE_POLL_MS)) {
		size_t n = take_due(lw, efs_mono_ms(), due, LATE_WRITE_PASS_MAX);
		for (size_t i = 0; i < n; i++) {
			if (check(lw, &due[i]) == LATE_AGAIN)
				put_back(lw, &due[i], efs_mono_ms());
		}
	}
	free(due);
}

int efs_late_writes_start(struct efs_late_writes *lw, struct efs_meta *meta,
			  struct efs_chunk_io *chunk_io, int64_t orphan_grace_ms,
			  unsigned replication)
{
	lw->meta = meta;
	lw->chunk_io = chunk_io;
	lw->orphan_grace_ms = orphan_grace_ms;
	lw->replication = replication;
	lw->count = 0;
	lw->full_logged = false;
	atomic_init(&lw->deleted_total, 0);
	pthread_mutex_init(&lw->lock, NULL);
	lw->list = calloc(EFS_LATE_WRITES_MAX, sizeof(*lw->list));
	if (!lw->list)
		return -ENOMEM;
	int r = efs_ticker_start(&lw->ticker, late_main, lw);
	if (r < 0) {
		free(lw->list);
		lw->list = NULL;
	}
	return r;
}

void efs_late_writes_stop(struct efs_late_writes *lw)
{
	if (!lw)
		return;
	efs_ticker_stop(&lw->ticker);
	pthread_mutex_lock(&lw->lock);
	free(lw->list);
	lw->list = NULL;
	lw->count = 0;
	pthread_mutex_unlock(&lw->lock);
}
