/* SPDX-License-Identifier: MIT */
/* download.c - a streaming, verifying reader of file ranges, with
 * read-ahead: one chunk, two for erasure-coded chunks.
 *
 * While the connection's thread hands out chunk N, a helper thread of the
 * reader fetches and verifies chunk N+1 (efs_chunk_backend_get: on the
 * worker backend, failover and bad replica marking as for any read; or
 * from the master's chunk cache), so the backend's round trip, the SHA-256 and the decompression of
 * the next chunk overlap the sending of this one. When chunk N+2 is erasure-coded a second helper
 * fetches it at the same time: an EC chunk is ready only when the slowest of its K shard GETs is,
 * and two in flight hide that. Helpers exist only for ranges that span more than one chunk; a
 * reader holds at most two chunks (the current one and the next), three when the file is
 * erasure-coded.
 *
 * Who touches what: a helper's slot and its copy of the chunk's row belong
 * to it from the moment a fetch is requested until it reports it done;
 * the connection's thread waits for that before it uses either. The chunk
 * list batch is the connection's thread's alone. */
#include "master/download.h"
#include "master/chunk_cache.h"
#include "master/chunk_backend.h"

#include <pthread.h>
#include <string.h>

/* Chunk rows (with their replicas) read from the metadata at once while a
 * download walks a file: one query per this many chunks. */
#define DOWNLOAD_CHUNK_ROWS 64

/* How many chunks a download reads ahead: one for a replicated chunk;
 * for an erasure-coded one two, fetched at once by two helpers, since
 * each EC chunk waits for the slowest of its K shard GETs (measured in
 * docs/PERFORMANCE.md, "Erasure coding in a cluster"). Replicated chunks
 * stay at one: two helpers were measured slower for them on the 2-CPU
 * development machine. */
#define AHEAD_MAX 2
/* The second chunk ahead only for EC chunks stored in at most this many
 * bytes: an EC slot holds its stripe (1.5x the stored size for 4+2) and
 * the decoded chunk, so the extra slot costs a download about 3x this at
 * most (48 MiB), 3 MiB at the default 1 MiB CHUNK_SIZE. */
#define AHEAD_EC_MAX_STORED ((uint64_t)16 << 20)

/* One decoded chunk and the buffer its stored bytes arrived in. */
struct slot {
	int64_t index; /* -1: none */
	struct efs_buf data;
	struct efs_buf scratch;
};

enum ahead_state {
	AHEAD_IDLE,	 /* no fetch requested; the slot is free */
	AHEAD_REQUESTED, /* the helper owns the slot and the entry */
	AHEAD_DONE,	 /* fetched (or failed: result) */
};

struct efs_reader;

/* A read-ahead helper thread and the chunk it fetches. */
struct ahead {
	struct efs_reader *rd;
	struct slot s;
	/* The chunk's row, copied from the batch when requested: the
	 * helpers never touch the batch, the connection's thread owns it. */
	struct efs_file_chunk entry;
	int64_t index; /* the chunk requested; the connection's thread's */
	enum ahead_state state;
	int result;
	bool running;
	pthread_t thread;
};

struct efs_reader {
	struct efs_reader_source src;
	struct efs_file_info file;
	uint64_t pos;  /* next file offset to hand out */
	uint64_t last; /* last offset (inclusive) */
	/* chunk list batch */
	struct efs_file_chunk *batch;
	size_t batch_count;
	/* efs_meta_removals before the batch was read (ok: counted) */
	bool batch_removals_ok;
	uint64_t batch_removals;
	/* chunk ids told by efs_reader_know: tried in the chunk cache before
	 * the chunk list is read */
	struct efs_reader_known known;
	struct slot cur; /* the chunk being handed out */
	/* efs_reader_cached_only: a chunk not in the chunk cache is not
	 * fetched (-EWOULDBLOCK), nor read ahead */
	bool cached_only;
	/* read-ahead, under lock */
	struct ahead ahead[AHEAD_MAX];
	pthread_mutex_t lock;
	pthread_cond_t cond;
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
	for (int i = 0; i < AHEAD_MAX; i++) {
		rd->ahead[i].rd = rd;
		slot_init(&rd->ahead[i].s);
	}
	pthread_mutex_init(&rd->lock, NULL);
	pthread_cond_init(&rd->cond, NULL);
	*out = rd;
	return 0;
}

void efs_reader_free(struct efs_reader *rd)
{
	if (!rd)
		return;
	/* A fetch in progress ends within its transfer timeouts. */
	pthread_mutex_lock(&rd->lock);
	rd->stop = true;
	pthread_cond_broadcast(&rd->cond);
	pthread_mutex_unlock(&rd->lock);
	for (int i = 0; i < AHEAD_MAX; i++)
		if (rd->ahead[i].running)
			pthread_join(rd->ahead[i].thread, NULL);
	pthread_cond_destroy(&rd->cond);
	pthread_mutex_destroy(&rd->lock);
	free(rd->batch);
	slot_release(&rd->cur);
	for (int i = 0; i < AHEAD_MAX; i++)
		slot_release(&rd->ahead[i].s);
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
		/* Read before the list: a removal after this is counted past it
		 * (efs_reader_learned). */
		rd->batch_removals_ok = efs_meta_removals(rd->src.meta, &rd->batch_removals) == 0;
		if (rd->src.chunk_lists_read)
			atomic_fetch_add(rd->src.chunk_lists_read, 1);
		int r = efs_meta_file_chunks(rd->src.meta, rd->file.file_id, index,
					     DOWNLOAD_CHUNK_ROWS, &rd->batch, &rd->batch_count);
		if (r < 0)
			return r;
		if (rd->batch_count == 0)
			return -ENOENT; /* the file is gone (deleted meanwhile) */
	}
	return -EIO; /* the chunk list has no such chunk */
}

/* Fetches, decodes and verifies the chunk of row @fc into @s; looks in
 * the chunk cache first unless @cache_tried (a known id just missed). */
static int load_entry(struct efs_reader *rd, const struct efs_file_chunk *fc, struct slot *s,
		      bool cache_tried)
{
	s->index = -1;
	/* Verified bytes read before: the id is their SHA-256, so they are
	 * right for any file that lists it, and the list was just read. */
	if (!cache_tried &&
	    efs_chunk_cache_get(rd->src.chunk_cache, fc->chunk.chunk_id, &s->data) == 0 &&
	    s->data.len == fc->chunk.size) {
		s->index = (int64_t)fc->index;
		return 0;
	}
	if (rd->cached_only)
		return -EWOULDBLOCK;
	/* The batch may be older than a trim of a redundant copy (R13). */
	int r = efs_chunk_backend_get_fresh(rd->src.chunks, rd->src.meta, &fc->chunk, fc->replicas,
					    fc->replica_count, &s->data, &s->scratch);
	if (r < 0)
		return r;
	efs_chunk_cache_put(rd->src.chunk_cache, fc->chunk.chunk_id, s->data.data, s->data.len);
	s->index = (int64_t)fc->index;
	return 0;
}

/* Fetches chunk @index into @s on the connection's thread: from the chunk
 * cache by a known id without reading the chunk list, else as its row
 * says. */
static int load(struct efs_reader *rd, uint64_t index, struct slot *s)
{
	const struct efs_file_chunk *fc;
	bool missed = false; /* the known id is not in the cache */
	s->index = -1;
	if (index < rd->known.count) {
		int r = efs_chunk_cache_get(rd->src.chunk_cache, rd->known.chunk[index].chunk_id,
					    &s->data);
		if (r == 0 && s->data.len == rd->known.chunk[index].size) {
			s->index = (int64_t)index;
			return 0;
		}
		missed = r == -ENOENT;
		/* The chunk list would be read from the store (Redis and
		 * PostgreSQL included) for a fetch that cached_only forbids. */
		if (rd->cached_only)
			return -EWOULDBLOCK;
	}
	int r = chunk_entry(rd, index, &fc);
	if (r < 0)
		return r;
	/* The list's id is the known one (a file's ids never change). */
	bool same = missed && strcmp(fc->chunk.chunk_id, rd->known.chunk[index].chunk_id) == 0;
	return load_entry(rd, fc, s, same);
}

static void *helper_main(void *arg)
{
	struct ahead *a = arg;
	struct efs_reader *rd = a->rd;
	pthread_mutex_lock(&rd->lock);
	for (;;) {
		while (!rd->stop && a->state != AHEAD_REQUESTED)
			pthread_cond_wait(&rd->cond, &rd->lock);
		if (rd->stop)
			break;
		pthread_mutex_unlock(&rd->lock);
		int r = load_entry(rd, &a->entry, &a->s, false);
		pthread_mutex_lock(&rd->lock);
		a->result = r;
		a->state = AHEAD_DONE;
		pthread_cond_broadcast(&rd->cond);
	}
	pthread_mutex_unlock(&rd->lock);
	return NULL;
}

/* Asks helper @a (idle) for chunk @fc, starting its thread on first use.
 * Without a thread (none could be made) reading simply stays
 * synchronous. */
static void ahead_request(struct efs_reader *rd, struct ahead *a, const struct efs_file_chunk *fc)
{
	if (!a->running) {
		if (pthread_create(&a->thread, NULL, helper_main, a) != 0)
			return;
		a->running = true;
	}
	pthread_mutex_lock(&rd->lock);
	a->entry = *fc;
	a->index = (int64_t)fc->index;
	a->state = AHEAD_REQUESTED;
	pthread_cond_broadcast(&rd->cond);
	pthread_mutex_unlock(&rd->lock);
}

/* Waits for @a's requested fetch; afterwards its slot is the caller's
 * again and @a is idle. Returns the fetch's result (0 when none was
 * asked). */
static int ahead_wait(struct efs_reader *rd, struct ahead *a)
{
	int r = 0;
	pthread_mutex_lock(&rd->lock);
	while (a->state == AHEAD_REQUESTED)
		pthread_cond_wait(&rd->cond, &rd->lock);
	if (a->state == AHEAD_DONE)
		r = a->result;
	a->state = AHEAD_IDLE;
	pthread_mutex_unlock(&rd->lock);
	return r;
}

/* The helper asked for chunk @index, or NULL. Only the connection's
 * thread changes a helper's state to requested or idle, so it may read
 * them without the lock. */
static struct ahead *ahead_find(struct efs_reader *rd, int64_t index)
{
	for (int i = 0; i < AHEAD_MAX; i++)
		if (rd->ahead[i].state != AHEAD_IDLE && rd->ahead[i].index == index)
			return &rd->ahead[i];
	return NULL;
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
	struct ahead *got = ahead_find(rd, (int64_t)index);
	if (got && ahead_wait(rd, got) == 0 && got->s.index == (int64_t)index) {
		struct slot t = rd->cur;
		rd->cur = got->s;
		got->s = t;
	} else {
		int r = load(rd, index, &rd->cur);
		if (r < 0)
			return r;
	}
	if (got)
		got->s.index = -1;
	/* Fetches for chunks this download will not take (behind it, or
	 * further ahead than it reads) are waited out. */
	for (int i = 0; i < AHEAD_MAX; i++) {
		struct ahead *a = &rd->ahead[i];
		if (a->state != AHEAD_IDLE &&
		    (a->index <= (int64_t)index || a->index > (int64_t)(index + AHEAD_MAX))) {
			ahead_wait(rd, a);
			a->s.index = -1;
		}
	}
	/* The next chunk; for an EC chunk the one after it too (not while
	 * cached_only: its caller must not wait, and the helpers would read
	 * the flag it clears). */
	for (uint64_t want = index + 1; !rd->cached_only && want <= index + AHEAD_MAX; want++) {
		if (want * rd->file.chunk_size > rd->last)
			break;
		/* A known chunk in the cache is copied from there when its turn
		 * comes: no helper, no chunk list. */
		if (want < rd->known.count &&
		    efs_chunk_cache_contains(rd->src.chunk_cache, rd->known.chunk[want].chunk_id))
			continue;
		const struct efs_file_chunk *fc;
		if (chunk_entry(rd, want, &fc) < 0)
			break; /* the read itself reports it */
		if (want > index + 1 &&
		    (fc->chunk.ec_data == 0 || fc->chunk.stored_size > AHEAD_EC_MAX_STORED))
			break;
		if (ahead_find(rd, (int64_t)want))
			continue;
		for (int i = 0; i < AHEAD_MAX; i++)
			if (rd->ahead[i].state == AHEAD_IDLE) {
				ahead_request(rd, &rd->ahead[i], fc);
				break;
			}
	}
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

void efs_reader_cached_only(struct efs_reader *rd, bool on)
{
	rd->cached_only = on;
}

void efs_reader_know(struct efs_reader *rd, const struct efs_reader_known *known)
{
	if (known && known->count <= EFS_READER_KNOWN_MAX)
		rd->known = *known;
}

bool efs_reader_learned(const struct efs_reader *rd, struct efs_reader_known *out)
{
	uint64_t count = rd->file.chunk_count;
	if (!rd->batch_removals_ok || count == 0 || count > EFS_READER_KNOWN_MAX ||
	    rd->batch_count != count)
		return false;
	for (size_t i = 0; i < count; i++)
		if (rd->batch[i].index != i)
			return false;
	out->count = (size_t)count;
	out->removals = rd->batch_removals;
	for (size_t i = 0; i < count; i++) {
		memcpy(out->chunk[i].chunk_id, rd->batch[i].chunk.chunk_id,
		       sizeof(out->chunk[i].chunk_id));
		out->chunk[i].size = rd->batch[i].chunk.size;
	}
	return true;
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
