/* SPDX-License-Identifier: MIT */
/* upload_pipeline.c - chunks of one upload stored by a few helper threads
 * while the connection thread reads on.
 *
 * Every chunk buffer (a slot) goes FREE -> FILLING (the feeding thread
 * copies into it) -> QUEUED -> BUSY (a helper, or the feeding thread for
 * the last chunk and at depth 1, stores it) -> FREE. One mutex guards the
 * slot states, the queues and the results; the bytes of a FILLING or BUSY
 * slot belong to the one thread writing or storing it and are touched
 * unlocked.
 *
 * With the MD5 asked for (efs_upload_pipeline_hash_md5) and a stream of
 * more than one chunk, a digest thread hashes the handed-on chunks in
 * index order, reading the slot's bytes while a helper stores them (both
 * only read). Such a slot is `hashing` from its hand-over until its MD5
 * is done; when its store ends first it waits as SLOT_STORED, and it is
 * FREE (its bytes reset) only once both are over. So the MD5 adds no
 * buffer, and a digest thread that falls behind holds the feeding thread
 * back through the slots, as slow stores do.
 */
#include "master/upload_pipeline.h"
#include "echofs/log.h"
#include "echofs/util.h"
#include "master/upload.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* SLOT_STORED: stored (or dropped), its MD5 not done yet. */
enum slot_state { SLOT_FREE, SLOT_FILLING, SLOT_QUEUED, SLOT_BUSY, SLOT_STORED };

struct slot {
	enum slot_state state;
	/* Capped at chunk_size; it grows while first filled (a small upload
	 * never allocates a whole chunk) and is reused for later chunks. */
	struct efs_buf data;
	uint64_t index;
	bool storing; /* its chunk_id is set and being stored */
	bool hashing; /* handed to the digest thread, its MD5 not done */
	char chunk_id[EFS_SHA256_HEX_LEN + 1];
};

struct efs_upload_pipeline {
	const struct efs_uploader *up;
	struct efs_upload_budget *budget; /* pays for the buffers beyond the first */
	efs_upload_session_open_fn open_session;
	void *open_ctx;
	/* Set (by open_session) before the first chunk is handed on; "" until
	 * then, and for good when the stream fits in one chunk. */
	char session_id[EFS_ID_MAX + 1];
	size_t chunk_size;
	unsigned depth;

	/* The feeding thread's own. */
	struct efs_sha256 file_hash;
	uint64_t total_bytes;
	uint64_t next_index;
	struct slot *filling;
	struct efs_upload_buffers bufs;
	/* Buffers beyond the first, each paid for from the shared budget and
	 * kept until free: slots 0 .. extra are usable, and as many helpers. */
	unsigned extra;

	pthread_mutex_t lock;
	pthread_cond_t changed; /* a slot or the queue changed, or stopping */
	struct slot slots[EFS_UPLOAD_PIPELINE_MAX_DEPTH];
	struct slot *queue[EFS_UPLOAD_PIPELINE_MAX_DEPTH]; /* ring, oldest first */
	unsigned queue_head, queue_len;
	unsigned in_flight; /* QUEUED + BUSY */
	pthread_t threads[EFS_UPLOAD_PIPELINE_MAX_DEPTH - 1];
	unsigned thread_count;
	bool stopping;

	/* The MD5 (efs_upload_pipeline_hash_md5). While the digest thread
	 * runs, md5 is its own but between its chunks (under lock); the
	 * feeding thread takes it back once md5_queue is empty and
	 * md5_active false, or when the thread never started. */
	bool want_md5;
	bool md5_thread;   /* started (joined by free) */
	bool md5_active;   /* the digest thread is hashing a chunk */
	bool digests_done; /* end_stream ran: sha256_hex, md5_hex final */
	struct efs_md5 md5;
	struct slot *md5_queue[EFS_UPLOAD_PIPELINE_MAX_DEPTH]; /* ring, index order */
	unsigned md5_head, md5_len;
	pthread_t md5_tid;
	char sha256_hex[EFS_SHA256_HEX_LEN + 1];
	char md5_hex[EFS_MD5_HEX_LEN + 1];
	atomic_int error; /* the first failure; written under lock */
	uint64_t failed_index;
	uint64_t stored_bytes;
};

void efs_upload_budget_init(struct efs_upload_budget *b, size_t limit)
{
	atomic_init(&b->used, 0);
	b->limit = limit;
}

size_t efs_upload_budget_used(struct efs_upload_budget *b)
{
	return atomic_load(&b->used);
}

bool efs_upload_budget_take(struct efs_upload_budget *b, size_t bytes)
{
	size_t used = atomic_load(&b->used);
	do {
		if (bytes > b->limit || used > b->limit - bytes)
			return false;
	} while (!atomic_compare_exchange_weak(&b->used, &used, used + bytes));
	return true;
}

void efs_upload_budget_give(struct efs_upload_budget *b, size_t bytes)
{
	atomic_fetch_sub(&b->used, bytes);
}

unsigned efs_upload_pipeline_depth(size_t chunk_size)
{
	size_t depth = chunk_size ? EFS_UPLOAD_PIPELINE_BYTES / chunk_size : 1;
	return (unsigned)EFS_MAX(1, EFS_MIN(depth, EFS_UPLOAD_PIPELINE_MAX_DEPTH));
}

int efs_upload_pipeline_new(const struct efs_uploader *up, struct efs_upload_budget *budget,
			    size_t chunk_size, efs_upload_session_open_fn open_session,
			    void *open_ctx, struct efs_upload_pipeline **out)
{
	struct efs_upload_pipeline *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	if (efs_sha256_init(&p->file_hash) < 0) {
		free(p);
		return -ENOMEM;
	}
	p->up = up;
	p->budget = budget;
	p->open_session = open_session;
	p->open_ctx = open_ctx;
	p->chunk_size = chunk_size;
	p->depth = efs_upload_pipeline_depth(chunk_size);
	p->failed_index = UINT64_MAX;
	efs_upload_buffers_init(&p->bufs);
	for (unsigned i = 0; i < EFS_UPLOAD_PIPELINE_MAX_DEPTH; i++)
		efs_buf_init(&p->slots[i].data, chunk_size);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->changed, NULL);
	*out = p;
	return 0;
}

/* Under lock. */
static void record_error(struct efs_upload_pipeline *p, int err, uint64_t index)
{
	if (atomic_load(&p->error) == 0) {
		p->failed_index = index;
		atomic_store(&p->error, err);
	}
}

/* Under lock: @s is FREE again (its bytes reset) once neither its store
 * nor its MD5 is pending; a stored slot still being hashed waits as
 * SLOT_STORED. */
static void slot_settle(struct efs_upload_pipeline *p, struct slot *s)
{
	if (s->hashing) {
		s->state = SLOT_STORED;
	} else {
		s->state = SLOT_FREE;
		efs_buf_reset(&s->data);
	}
	pthread_cond_broadcast(&p->changed);
}

/* Under lock: the slot's store is over (stored, failed or dropped). */
static void slot_done(struct efs_upload_pipeline *p, struct slot *s)
{
	s->storing = false;
	p->in_flight--;
	slot_settle(p, s);
}

/* Under lock: another chunk of this upload with the same id is being
 * stored; storing both at once would send the bytes twice. */
static bool same_chunk_storing(const struct efs_upload_pipeline *p, const struct slot *s)
{
	for (unsigned i = 0; i < p->depth; i++) {
		const struct slot *o = &p->slots[i];
		if (o != s && o->storing && strcmp(o->chunk_id, s->chunk_id) == 0)
			return true;
	}
	return false;
}

/* Stores BUSY slot @s with @bufs (the calling thread's); called unlocked.
 * The chunk's SHA-256 is computed here, in the storing thread, so it
 * overlaps the feeding thread's whole-file hash, and in the same pass as
 * its compression (efs_upload_encode), before the same-chunk check needs
 * the id. */
static int store_slot(struct efs_upload_pipeline *p, struct slot *s,
		      struct efs_upload_buffers *bufs)
{
	struct efs_chunk_result res;
	int r;

	if ((r = efs_upload_encode(bufs, s->data.data, s->data.len, s->chunk_id)) < 0) {
		pthread_mutex_lock(&p->lock);
		record_error(p, r, s->index);
		slot_done(p, s); /* not started: dropped */
		pthread_mutex_unlock(&p->lock);
		return r;
	}
	pthread_mutex_lock(&p->lock);
	while (same_chunk_storing(p, s) && !atomic_load(&p->error) && !p->stopping)
		pthread_cond_wait(&p->changed, &p->lock);
	if ((r = atomic_load(&p->error)) < 0 || p->stopping) {
		slot_done(p, s); /* not started: dropped */
		pthread_mutex_unlock(&p->lock);
		return r < 0 ? r : -ECANCELED;
	}
	s->storing = true;
	pthread_mutex_unlock(&p->lock);

	r = efs_upload_chunk_encoded(p->up, bufs, p->session_id, s->index, s->data.data,
				     s->data.len, s->chunk_id, &res);

	pthread_mutex_lock(&p->lock);
	if (r == 0)
		p->stored_bytes += res.chunk.stored_size;
	else
		record_error(p, r, s->index);
	slot_done(p, s);
	pthread_mutex_unlock(&p->lock);
	return r;
}

static void *helper_main(void *arg)
{
	struct efs_upload_pipeline *p = arg;
	struct efs_upload_buffers bufs;

	pthread_setname_np(pthread_self(), "upload-helper"); /* for top and perf */
	efs_upload_buffers_init(&bufs);
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->queue_len == 0 && !p->stopping)
			pthread_cond_wait(&p->changed, &p->lock);
		if (p->queue_len == 0)
			break; /* stopping, nothing left */
		struct slot *s = p->queue[p->queue_head];
		p->queue_head = (p->queue_head + 1) % EFS_UPLOAD_PIPELINE_MAX_DEPTH;
		p->queue_len--;
		s->state = SLOT_BUSY;
		if (atomic_load(&p->error) < 0 || p->stopping) {
			slot_done(p, s); /* the upload failed or ended: dropped */
			continue;
		}
		pthread_mutex_unlock(&p->lock);
		store_slot(p, s, &bufs);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	efs_upload_buffers_release(&bufs);
	return NULL;
}

/* The digest thread: the MD5 of the handed-on chunks, in index order.
 * After a failure or once stopping it only drains its queue (the MD5 is
 * of no use then), so that every slot settles and free can join it. */
static void *digest_main(void *arg)
{
	struct efs_upload_pipeline *p = arg;

	pthread_setname_np(pthread_self(), "upload-md5"); /* for top and perf */
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->md5_len == 0 && !p->stopping)
			pthread_cond_wait(&p->changed, &p->lock);
		if (p->md5_len == 0)
			break; /* stopping, nothing left */
		struct slot *s = p->md5_queue[p->md5_head];
		p->md5_head = (p->md5_head + 1) % EFS_UPLOAD_PIPELINE_MAX_DEPTH;
		p->md5_len--;
		if (!p->stopping && atomic_load(&p->error) == 0) {
			p->md5_active = true;
			pthread_mutex_unlock(&p->lock);
			/* The slot's bytes stay put while it is hashing. */
			efs_md5_update(&p->md5, s->data.data, s->data.len);
			pthread_mutex_lock(&p->lock);
			p->md5_active = false;
		}
		s->hashing = false;
		if (s->state == SLOT_STORED)
			slot_settle(p, s);
		else
			pthread_cond_broadcast(&p->changed); /* end_stream may wait */
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Chunk @s, just numbered (chunks come here in index order, in the
 * feeding thread), goes into the MD5: to the digest thread, started at
 * the first chunk of a stream that has more (not @here); hashed here when
 * that thread could not start. A stream of one chunk never comes here
 * with a thread: end_stream or this call hashes it in the feeding thread. */
static void md5_hand_over(struct efs_upload_pipeline *p, struct slot *s, bool here)
{
	if (!p->md5_thread && s->index == 0 && !here) {
		int r = pthread_create(&p->md5_tid, NULL, digest_main, p);
		if (r == 0)
			p->md5_thread = true;
		else
			efs_warn("upload %s: cannot start the MD5 thread (%s): hashing in the "
				 "connection's thread",
				 p->session_id, strerror(r));
	}
	if (!p->md5_thread) {
		efs_md5_update(&p->md5, s->data.data, s->data.len);
		return;
	}
	pthread_mutex_lock(&p->lock);
	s->hashing = true;
	p->md5_queue[(p->md5_head + p->md5_len) % EFS_UPLOAD_PIPELINE_MAX_DEPTH] = s;
	p->md5_len++;
	pthread_cond_broadcast(&p->changed);
	pthread_mutex_unlock(&p->lock);
}

/* The stream ended (feeding thread): its SHA-256 and MD5 made final into
 * sha256_hex and md5_hex, once. The MD5 waits for the digest thread to
 * have hashed every chunk handed on (it drains its queue even after a
 * failure), then takes the chunk being filled, not handed on yet. */
static void end_stream(struct efs_upload_pipeline *p)
{
	if (p->digests_done)
		return;
	if (p->want_md5) {
		pthread_mutex_lock(&p->lock);
		while (p->md5_len > 0 || p->md5_active)
			pthread_cond_wait(&p->changed, &p->lock);
		pthread_mutex_unlock(&p->lock);
		if (p->filling)
			efs_md5_update(&p->md5, p->filling->data.data, p->filling->data.len);
		efs_md5_final_hex(&p->md5, p->md5_hex);
	}
	efs_sha256_final_hex(&p->file_hash, p->sha256_hex);
	p->digests_done = true;
}

/* A free slot for the feeding thread, waiting while all it may use are
 * in flight. */
static int acquire_slot(struct efs_upload_pipeline *p)
{
	struct slot *s = NULL;
	int r;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		if ((r = atomic_load(&p->error)) < 0) {
			pthread_mutex_unlock(&p->lock);
			return r;
		}
		for (unsigned i = 0; i <= p->extra && !s; i++)
			if (p->slots[i].state == SLOT_FREE)
				s = &p->slots[i];
		if (s)
			break;
		pthread_cond_wait(&p->changed, &p->lock);
	}
	s->state = SLOT_FILLING;
	pthread_mutex_unlock(&p->lock);
	p->filling = s;
	return 0;
}

/* Hands the filled slot on: queued for a helper (one is started when
 * fewer run than chunks are in flight), or stored here when @here, when
 * the upload has no buffer beyond this one (depth 1, or the shared budget
 * is spent: a helper would gain nothing, the feeding thread would only
 * wait), or when no helper runs and none could be started. */
static int submit_slot(struct efs_upload_pipeline *p, struct slot *s, bool here)
{
	int r;

	/* A chunk is handed on only when another follows it (or, at finish,
	 * follows others): the upload needs its session now. */
	if (!p->session_id[0] && (r = p->open_session(p->open_ctx, p->session_id)) < 0) {
		p->session_id[0] = '\0';
		pthread_mutex_lock(&p->lock);
		record_error(p, r, UINT64_MAX);
		pthread_mutex_unlock(&p->lock);
		return r;
	}
	p->filling = NULL;
	s->index = p->next_index++;
	if (p->want_md5 && !p->digests_done)
		md5_hand_over(p, s, here);
	/* More buffers while the budget allows: tried at each full chunk, as
	 * other uploads end and give theirs back. */
	while (!here && p->extra + 1 < p->depth && efs_upload_budget_take(p->budget, p->chunk_size))
		p->extra++;
	pthread_mutex_lock(&p->lock);
	p->in_flight++;
	if (!here && p->extra > 0) {
		unsigned tail = (p->queue_head + p->queue_len) % EFS_UPLOAD_PIPELINE_MAX_DEPTH;
		p->queue[tail] = s;
		p->queue_len++;
		s->state = SLOT_QUEUED;
		if (p->thread_count < p->in_flight && p->thread_count < p->extra) {
			r = pthread_create(&p->threads[p->thread_count], NULL, helper_main, p);
			if (r == 0)
				p->thread_count++;
			else
				efs_warn("upload %s: cannot start a helper thread (%s)",
					 p->session_id, strerror(r));
		}
		if (p->thread_count > 0) {
			pthread_cond_broadcast(&p->changed);
			pthread_mutex_unlock(&p->lock);
			return 0;
		}
		p->queue_len--; /* no helper at all: take it back */
	}
	s->state = SLOT_BUSY;
	pthread_mutex_unlock(&p->lock);
	return store_slot(p, s, &p->bufs);
}

int efs_upload_pipeline_feed(struct efs_upload_pipeline *p, const char *data, size_t len)
{
	int r;

	while (len > 0) {
		/* A full chunk is handed on only now that more bytes follow:
		 * a stream that fits in one chunk never opens a session. */
		if (p->filling && p->filling->data.len == p->chunk_size &&
		    (r = submit_slot(p, p->filling, false)) < 0)
			return r;
		if (!p->filling && (r = acquire_slot(p)) < 0)
			return r;
		struct slot *s = p->filling;
		size_t take = EFS_MIN(len, p->chunk_size - s->data.len);
		if ((r = efs_buf_append(&s->data, data, take)) < 0) {
			pthread_mutex_lock(&p->lock);
			record_error(p, r, UINT64_MAX); /* -ENOMEM: the stream is cut */
			pthread_mutex_unlock(&p->lock);
			return r;
		}
		/* Hashed from the copy just written: still in cache. */
		efs_sha256_update(&p->file_hash, s->data.data + s->data.len - take, take);
		p->total_bytes += take;
		data += take;
		len -= take;
	}
	r = atomic_load(&p->error);
	return r < 0 ? r : 0;
}

/* The whole stream is in the one slot being filled (or there is none: an
 * empty stream): stored and recorded with @file in one transaction, here. */
static int finish_single(struct efs_upload_pipeline *p, struct efs_file_info *file,
			 const char *expect_sha256, struct efs_object_link *link)
{
	struct efs_chunk_result res;
	struct slot *s = p->filling;
	int r;

	/* The file's SHA-256 is its one chunk's id: hashed once. */
	end_stream(p);
	file->size = p->total_bytes;
	efs_strlcpy(file->sha256, p->sha256_hex, sizeof(file->sha256));
	if (expect_sha256 && strcasecmp(file->sha256, expect_sha256) != 0)
		return -EBADMSG; /* not the pipeline's error: nothing failed */
	r = efs_upload_single(p->up, &p->bufs, s ? s->data.data : "", s ? s->data.len : 0,
			      file->sha256, file, link, &res);
	pthread_mutex_lock(&p->lock);
	if (r < 0)
		record_error(p, r, 0);
	else
		p->next_index = file->chunk_count;
	pthread_mutex_unlock(&p->lock);
	return r;
}

int efs_upload_pipeline_finish(struct efs_upload_pipeline *p, struct efs_file_info *file,
			       struct efs_upload_summary *out)
{
	return efs_upload_pipeline_finish_object(p, file, NULL, NULL, out);
}

int efs_upload_pipeline_finish_object(struct efs_upload_pipeline *p, struct efs_file_info *file,
				      const char *expect_sha256, struct efs_object_link *link,
				      struct efs_upload_summary *out)
{
	struct efs_file_info single;
	int r;

	if ((r = atomic_load(&p->error)) < 0)
		return r;
	if (p->next_index == 0 && file) {
		single = *file;
		if ((r = finish_single(p, &single, expect_sha256, link)) < 0)
			return r;
		*file = single;
		out->size = file->size;
		out->chunk_count = file->chunk_count;
		out->stored_bytes = file->stored_bytes;
		efs_strlcpy(out->sha256, file->sha256, sizeof(out->sha256));
		efs_strlcpy(out->md5, p->md5_hex, sizeof(out->md5));
		out->recorded = true;
		out->object_linked = link != NULL;
		return 0;
	}
	/* The last chunk is stored here: the thread would only wait anyway. */
	if (p->filling)
		submit_slot(p, p->filling, true);
	pthread_mutex_lock(&p->lock);
	while (p->in_flight > 0)
		pthread_cond_wait(&p->changed, &p->lock);
	r = atomic_load(&p->error);
	pthread_mutex_unlock(&p->lock);
	if (r < 0)
		return r;
	end_stream(p);
	out->size = p->total_bytes;
	out->chunk_count = p->next_index;
	out->stored_bytes = p->stored_bytes;
	efs_strlcpy(out->sha256, p->sha256_hex, sizeof(out->sha256));
	efs_strlcpy(out->md5, p->md5_hex, sizeof(out->md5));
	if (expect_sha256 && strcasecmp(out->sha256, expect_sha256) != 0)
		return -EBADMSG;
	out->recorded = false;
	out->object_linked = false;
	return 0;
}

int efs_upload_pipeline_hash_md5(struct efs_upload_pipeline *p)
{
	int r;
	if (p->want_md5)
		return 0;
	if ((r = efs_md5_init(&p->md5)) < 0)
		return r;
	p->want_md5 = true;
	return 0;
}

int efs_upload_pipeline_digests(struct efs_upload_pipeline *p, char sha256[EFS_SHA256_HEX_LEN + 1],
				char md5[EFS_MD5_HEX_LEN + 1])
{
	int r;
	if ((r = atomic_load(&p->error)) < 0)
		return r;
	end_stream(p);
	if ((r = atomic_load(&p->error)) < 0)
		return r;
	efs_strlcpy(sha256, p->sha256_hex, EFS_SHA256_HEX_LEN + 1);
	efs_strlcpy(md5, p->md5_hex, EFS_MD5_HEX_LEN + 1);
	return 0;
}

uint64_t efs_upload_pipeline_failed_index(struct efs_upload_pipeline *p)
{
	pthread_mutex_lock(&p->lock);
	uint64_t index = p->failed_index;
	pthread_mutex_unlock(&p->lock);
	return index;
}

void efs_upload_pipeline_free(struct efs_upload_pipeline *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->changed);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->thread_count; i++)
		pthread_join(p->threads[i], NULL);
	if (p->md5_thread)
		pthread_join(p->md5_tid, NULL);
	efs_md5_release(&p->md5);
	for (unsigned i = 0; i < EFS_UPLOAD_PIPELINE_MAX_DEPTH; i++)
		efs_buf_release(&p->slots[i].data);
	efs_upload_budget_give(p->budget, p->extra * p->chunk_size);
	efs_sha256_release(&p->file_hash);
	efs_upload_buffers_release(&p->bufs);
	pthread_cond_destroy(&p->changed);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
