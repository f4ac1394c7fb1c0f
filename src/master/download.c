/* SPDX-License-Identifier: MIT */
/* download.c - a streaming, verifying reader of file ranges, with one
 * chunk of read-ahead.
 *
 * While the connection's thread hands out chunk N, a helper thread of the
 * reader fetches and verifies chunk N+1 (efs_chunk_backend_get: on the
 * worker backend, failover and bad replica marking as for any read; or
 * from the master's chunk cache), so the backend's round trip, the SHA-256 and the decompression of the next
 * chunk overlap the sending of this one.
 * The helper exists only for ranges that span more than one chunk; a
 * reader holds at most two chunks (the current one and the next).
 *
 * Who touches what: the chunk list batch and the "next" slot belong to the
 * helper from the moment a fetch is requested until it reports it done;
 * the connection's thread waits for that before it uses either. */
#include "master/download.h"
#include "master/chunk_cache.h"
#include "master/chunk_backend.h"

#include <pthread.h>
#include <string.h>

/* Chunk rows (with their replicas) read from the metadata at once while a
 * download walks a file: one query per this many chunks. */
#define DOWNLOAD_CHUNK_ROWS 64

/* One decoded chunk and the buffer its stored bytes arrived in. */
struct slot {
	int64_t index; /* -1: none */
	struct efs_buf data;
	struct efs_buf scratch;
};

enum ahead_state {
	AHEAD_IDLE,      /* no fetch requested; the next slot is free */
	AHEAD_REQUESTED, /* the helper owns the next slot and the batch */
	AHEAD_DONE,      /* fetched (or failed: ahead_result) */
};

struct efs_reader {
	struct efs_reader_source src;
	struct efs_file_info file;
	uint64_t pos;  /* next file offset to hand out */
	uint64_t last; /* last offset (inclusive) */
	/* chunk list batch */
	struct efs_file_chunk *batch;
	size_t batch_count;
	struct slot cur; /* the chunk being handed out */
	/* read-ahead */
	struct slot next;
	bool helper_running;
	pthread_t helper;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum ahead_state ahead;
	int ahead_result;
	bool stop;
};

static void slot_init(struct slot *s)
{
	s->index = -1;
	efs_buf_init(&s->data, SIZE_MAX);
	efs_buf_init(&s->scratch, SIZE_MAX);
}

static void slot_release(struct slot *s)
{
	efs_buf_release(&s->data);
	efs_buf_release(&s->scratch);
}

int efs_reader_new(const struct efs_reader_source *src, const struct efs_file_info *file,
		   uint64_t first, uint64_t last, struct efs_reader **out)
{
	struct efs_reader *rd = calloc(1, sizeof(*rd));
	if (!rd)
		return -ENOMEM;
	rd->src = *src;
	rd->file = *file;
	rd->pos = first;
	rd->last = last;
	slot_init(&rd->cur);
	slot_init(&rd->next);
	pthread_mutex_init(&rd->lock, NULL);
	pthread_cond_init(&rd->cond, NULL);
	*out = rd;
	return 0;
}

void efs_reader_free(struct efs_reader *rd)
{
	if (!rd)
		return;
	if (rd->helper_running) {
		/* A fetch in progress ends within its transfer timeouts. */
		pthread_mutex_lock(&rd->lock);
		rd->stop = true;
		pthread_cond_broadcast(&rd->cond);
		pthread_mutex_unlock(&rd->lock);
		pthread_join(rd->helper, NULL);
	}
	pthread_cond_destroy(&rd->cond);
	pthread_mutex_destroy(&rd->lock);
	free(rd->batch);
	slot_release(&rd->cur);
	slot_release(&rd->next);
	free(rd);
}

/* Finds chunk @index in the batch, fetching the batch that holds it. */
static int chunk_entry(struct efs_reader *rd, uint64_t index, const struct efs_file_chunk **out)
{
	for (int pass = 0; pass < 2; pass++) {
		if (rd->batch_count > 0 && index >= rd->batch[0].index &&
		    index < rd->batch[0].index + rd->batch_count) {
			const struct efs_file_chunk *fc = &rd->batch[index - rd->batch[0].index];
			if (fc->index != index)
				return -EIO; /* a hole in the chunk list */
			*out = fc;
			return 0;
		}
		if (pass == 1)
			break;
		free(rd->batch);
		rd->batch = NULL;
		rd->batch_count = 0;
		int r = efs_meta_file_chunks(rd->src.meta, rd->file.file_id, index, DOWNLOAD_CHUNK_ROWS,
					     &rd->batch, &rd->batch_count);
		if (r < 0)
			return r;
		if (rd->batch_count == 0)
			return -ENOENT; /* the file is gone (deleted meanwhile) */
	}
	return -EIO; /* the chunk list has no such chunk */
}

/* Fetches, decodes and verifies chunk @index into @s. */
static int load(struct efs_reader *rd, uint64_t index, struct slot *s)
{
	const struct efs_file_chunk *fc;
	s->index = -1;
	int r = chunk_entry(rd, index, &fc);
	if (r < 0)
		return r;
	/* Verified bytes read before: the id is their SHA-256, so they are
	 * right for any file that lists it, and the list was just read. */
	if (efs_chunk_cache_get(rd->src.chunk_cache, fc->chunk.chunk_id, &s->data) == 0 &&
	    s->data.len == fc->chunk.size) {
		s->index = (int64_t)index;
		return 0;
	}
	/* The batch may be older than a trim of a redundant copy (R13). */
	r = efs_chunk_backend_get_fresh(rd->src.chunks, rd->src.meta, &fc->chunk, fc->replicas,
					fc->replica_count, &s->data, &s->scratch);
	if (r < 0)
		return r;
	efs_chunk_cache_put(rd->src.chunk_cache, fc->chunk.chunk_id, s->data.data, s->data.len);
	s->index = (int64_t)index;
	return 0;
}

static void *helper_main(void *arg)
{
	struct efs_reader *rd = arg;
	pthread_mutex_lock(&rd->lock);
	for (;;) {
		while (!rd->stop && rd->ahead != AHEAD_REQUESTED)
			pthread_cond_wait(&rd->cond, &rd->lock);
		if (rd->stop)
			break;
		uint64_t index = (uint64_t)rd->next.index;
		pthread_mutex_unlock(&rd->lock);
		int r = load(rd, index, &rd->next);
		pthread_mutex_lock(&rd->lock);
		rd->ahead_result = r;
		rd->ahead = AHEAD_DONE;
		pthread_cond_broadcast(&rd->cond);
	}
	pthread_mutex_unlock(&rd->lock);
	return NULL;
}

/* Asks the helper for chunk @index, starting the helper on first use.
 * Without a helper (no thread could be made) reading simply stays
 * synchronous. */
static void ahead_request(struct efs_reader *rd, uint64_t index)
{
	if (!rd->helper_running) {
		if (pthread_create(&rd->helper, NULL, helper_main, rd) != 0)
			return;
		rd->helper_running = true;
	}
	pthread_mutex_lock(&rd->lock);
	rd->next.index = (int64_t)index;
	rd->ahead = AHEAD_REQUESTED;
	pthread_cond_broadcast(&rd->cond);
	pthread_mutex_unlock(&rd->lock);
}

/* Waits for a requested fetch; afterwards the next slot and the batch are
 * the caller's again. Returns the fetch's result (0 when none was asked). */
static int ahead_wait(struct efs_reader *rd)
{
	int r = 0;
	pthread_mutex_lock(&rd->lock);
	while (rd->ahead == AHEAD_REQUESTED)
		pthread_cond_wait(&rd->cond, &rd->lock);
	if (rd->ahead == AHEAD_DONE)
		r = rd->ahead_result;
	rd->ahead = AHEAD_IDLE;
	pthread_mutex_unlock(&rd->lock);
	return r;
}

int efs_reader_prefetch(struct efs_reader *rd)
{
	if (rd->pos > rd->last || rd->file.chunk_size == 0)
		return 0;
	uint64_t index = rd->pos / rd->file.chunk_size;
	if ((int64_t)index == rd->cur.index)
		return 0;
	/* The chunk read ahead, when it is this one and it arrived intact;
	 * a failed read-ahead is tried again now, as a read would be. */
	if (ahead_wait(rd) == 0 && rd->next.index == (int64_t)index) {
		struct slot t = rd->cur;
		rd->cur = rd->next;
		rd->next = t;
	} else {
		int r = load(rd, index, &rd->cur);
		if (r < 0)
			return r;
	}
	rd->next.index = -1;
	if ((index + 1) * rd->file.chunk_size <= rd->last)
		ahead_request(rd, index + 1);
	return 0;
}

ssize_t efs_reader_read(struct efs_reader *rd, char *out, size_t max)
{
	if (rd->pos > rd->last)
		return 0;
	int r = efs_reader_prefetch(rd);
	if (r < 0)
		return r;
	uint64_t offset = rd->pos - (uint64_t)rd->cur.index * rd->file.chunk_size;
	if (offset >= rd->cur.data.len)
		return -EIO;
	size_t n = (size_t)EFS_MIN((uint64_t)max, rd->cur.data.len - offset);
	n = (size_t)EFS_MIN((uint64_t)n, rd->last - rd->pos + 1);
	memcpy(out, rd->cur.data.data + offset, n);
	rd->pos += n;
	return (ssize_t)n;
}

const char *efs_reader_file_id(const struct efs_reader *rd)
{
	return rd->file.file_id;
}

bool efs_reader_take(struct efs_reader *rd, struct efs_buf *out, size_t *offset, size_t *len)
{
	if (rd->pos > rd->last || rd->cur.index < 0)
		return false;
	uint64_t start = (uint64_t)rd->cur.index * rd->file.chunk_size;
	if (rd->pos < start || rd->last - start >= rd->cur.data.len)
		return false; /* not loaded, or the range goes on past this chunk */
	efs_buf_release(out);
	*out = rd->cur.data;
	*offset = (size_t)(rd->pos - start);
	*len = (size_t)(rd->last - rd->pos + 1);
	efs_buf_init(&rd->cur.data, SIZE_MAX);
	rd->cur.index = -1;
	rd->pos = rd->last + 1;
	return true;
}
