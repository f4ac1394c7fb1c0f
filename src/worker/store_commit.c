/* SPDX-License-Identifier: MIT */
/* store_commit.c - when a record counts and when it is durable: writers
 * (reserve, payload, trailer), tombstones, the index updates a commit
 * makes, and group commit (one fdatasync covers every commit waiting for
 * one).
 *
 * Invariants owned here: a sequence number is taken under s->lock when the
 * trailer (or tombstone) is written, so a replay orders a write and a
 * delete of one chunk the way they happened; the index points at a record
 * only once its trailer is written, and a committed record the index does
 * not know of is uncommitted again; a commit is acknowledged only after a
 * sync round that started after its ticket was handed out; after a failed
 * fdatasync the store refuses writes (s->broken). Async waiters
 * (store.h) are acknowledged by the committer thread, which joins the
 * same sync rounds as the blocking callers.
 */
#include "worker/store_internal.h"
#include "echofs/hash.h"
#include "echofs/util.h"

#include <string.h>
#include <unistd.h>

/* ---- group commit ------------------------------------------------------ */

/* Under s->lock: @v has bytes the next sync round must cover; returns the
 * caller's ticket for store_wait_durable(). */
uint64_t store_mark_dirty(struct efs_store *s, struct volume *v)
{
	if (!v->dirty) {
		v->dirty = true;
		v->refs++;
		v->dirty_next = s->dirty;
		s->dirty = v;
	}
	return ++s->sync_requested;
}

/* Group commit. Returns once a sync round that started after @ticket was
 * handed out has finished: the first waiter to find no round running leads
 * one (fdatasync of every dirty volume), the others wait for it, so
 * concurrent commits share one fdatasync. -EIO style errors when the sync
 * failed; the store then refuses writes (the kernel may have dropped the
 * dirty pages, so a retry proves nothing). */
int store_wait_durable(struct efs_store *s, uint64_t ticket)
{
	int r = 0;
	pthread_mutex_lock(&s->lock);
	while (s->sync_done < ticket && !s->broken) {
		if (s->syncing) {
			pthread_cond_wait(&s->synced, &s->lock);
			continue;
		}
		s->syncing = true;
		uint64_t target = s->sync_requested;
		/* The round's own list: a volume written during the sync goes
		 * back on s->dirty (dirty_next) without touching this one. */
		struct volume *list = NULL;
		for (struct volume *v = s->dirty; v; v = v->dirty_next) {
			v->dirty = false;
			v->sync_next = list;
			list = v;
		}
		s->dirty = NULL;
		pthread_mutex_unlock(&s->lock);
		int err = 0;
		for (struct volume *v = list; v; v = v->sync_next)
			if (fdatasync(v->fd) < 0 && !err)
				err = -errno;
		pthread_mutex_lock(&s->lock);
		while (list) {
			struct volume *next = list->sync_next;
			store_volume_unref(list);
			list = next;
		}
		s->syncing = false;
		if (err)
			s->broken = err;
		else
			s->sync_done = target;
		pthread_cond_broadcast(&s->synced);
	}
	if (s->sync_done < ticket)
		r = s->broken;
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* ---- the committer: sync rounds for async waiters ---------------------- */

void store_wait_async(struct efs_store *s, uint64_t ticket, struct efs_store_waiter *waiter)
{
	waiter->ticket = ticket;
	waiter->next = NULL;
	pthread_mutex_lock(&s->lock);
	if (s->waiters_tail)
		s->waiters_tail->next = waiter;
	else
		s->waiters_head = waiter;
	s->waiters_tail = waiter;
	pthread_cond_signal(&s->waiters_cond);
	pthread_mutex_unlock(&s->lock);
}

/* Takes every queued waiter, waits for a round covering the newest ticket
 * among them (they were all handed out before it), and calls them: the
 * waiters that arrive meanwhile share the next round, as blocking commits
 * that arrive during a round do. Runs until stopped with none queued. */
static void *committer_main(void *arg)
{
	struct efs_store *s = arg;
	pthread_mutex_lock(&s->lock);
	for (;;) {
		while (!s->waiters_head && !s->committer_stop)
			pthread_cond_wait(&s->waiters_cond, &s->lock);
		struct efs_store_waiter *list = s->waiters_head;
		if (!list)
			break; /* stopping, nothing left */
		s->waiters_head = s->waiters_tail = NULL;
		uint64_t target = 0;
		for (struct efs_store_waiter *w = list; w; w = w->next)
			target = EFS_MAX(target, w->ticket);
		pthread_mutex_unlock(&s->lock);
		int r = store_wait_durable(s, target);
		while (list) {
			struct efs_store_waiter *next = list->next;
			list->done(list, r); /* may free the node */
			list = next;
		}
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int store_committer_start(struct efs_store *s)
{
	int r = pthread_create(&s->committer, NULL, committer_main, s);
	if (r != 0)
		return -r;
	s->committer_running = true;
	return 0;
}

void store_committer_stop(struct efs_store *s)
{
	if (!s->committer_running)
		return;
	pthread_mutex_lock(&s->lock);
	s->committer_stop = true;
	pthread_cond_signal(&s->waiters_cond);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->committer, NULL);
	s->committer_running = false;
}

/* ---- the index and the counts (under s->lock) ------------------------ */

void store_index_drop(struct efs_store *s, const uint8_t *key, const struct efs_chunk_loc *loc)
{
	struct volume *v = loc->volume;
	v->live -= RECORD_LEN(loc->length);
	s->bytes -= EFS_MIN(s->bytes, loc->length);
	efs_chunk_index_remove(&s->index, key);
}

/* Points the index at a committed record, replacing what it pointed to
 * (in place: nothing changes when adding a new entry fails). The volume
 * range grows to cover the older records of the chunk still on disk. */
static int index_set(struct efs_store *s, const uint8_t *key, const struct efs_chunk_loc *loc)
{
	struct efs_chunk_loc *old = efs_chunk_index_find(&s->index, key);
	if (old) {
		struct efs_chunk_loc merged = *loc;
		merged.first_volume = EFS_MIN(old->first_volume, loc->first_volume);
		merged.last_volume = EFS_MAX(old->last_volume, loc->last_volume);
		((struct volume *)old->volume)->live -= RECORD_LEN(old->length);
		s->bytes -= EFS_MIN(s->bytes, old->length);
		*old = merged;
	} else {
		int r = efs_chunk_index_put(&s->index, key, loc);
		if (r < 0)
			return r;
	}
	((struct volume *)loc->volume)->live += RECORD_LEN(loc->length);
	s->bytes += loc->length;
	return 0;
}

/* Appends a tombstone for @chunk_id (whose committed records may be in
 * volumes @first..@last) and returns its sync ticket. Under s->lock. */
int store_append_tombstone(struct efs_store *s, const char *chunk_id, uint32_t first, uint32_t last,
			   uint64_t *ticket)
{
	unsigned char rec[HEADER_LEN + TRAILER_LEN];
	struct record h = {.type = TYPE_TOMBSTONE, .target_volume = last, .first_volume = first};
	struct volume *v;
	uint64_t offset;

	efs_strlcpy(h.chunk_id, chunk_id, sizeof(h.chunk_id));
	uint32_t hcrc = store_header_encode(rec, &h);
	struct commit c = {.payload_crc = 0, .seq = s->next_seq++, .mtime_ms = efs_now_ms()};
	store_trailer_encode(rec + HEADER_LEN, hcrc, &c);
	int r = store_reserve(s, rec, sizeof(rec), &v, &offset);
	if (r < 0)
		return r;
	r = store_write_all(v->fd, rec + HEADER_LEN, TRAILER_LEN, offset + HEADER_LEN);
	if (r == 0)
		store_volume_add_tomb(v, first,
				      last); /* ENOMEM: counts as dead (compacted early) */
	v->writers--;
	if (r == 0)
		*ticket = store_mark_dirty(s, v);
	store_volume_unref(v);
	return r;
}

/* ---- writing ----------------------------------------------------------- */

int store_writer_begin(struct efs_store *s, const char *chunk_id, uint64_t length, uint32_t flags,
		       bool check_capacity, struct efs_store_writer **out)
{
	unsigned char header[HEADER_LEN];
	struct record rec = {.type = TYPE_CHUNK, .flags = (uint8_t)flags, .length = length};

	if (!efs_chunk_id_valid(chunk_id) || length > EFS_STORE_MAX_CHUNK)
		return -EINVAL;
	struct efs_store_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	efs_strlcpy(rec.chunk_id, chunk_id, sizeof(rec.chunk_id));
	efs_strlcpy(w->chunk_id, chunk_id, sizeof(w->chunk_id));
	w->s = s;
	w->length = length;
	w->flags = flags;
	w->header_crc = store_header_encode(header, &rec);
	pthread_mutex_lock(&s->lock);
	int r = 0;
	if (check_capacity && s->capacity && s->bytes + s->reserved + length > s->capacity)
		r = -ENOSPC;
	else if ((r = store_reserve(s, header, RECORD_LEN(length), &w->v, &w->offset)) == 0)
		s->reserved += length;
	pthread_mutex_unlock(&s->lock);
	if (r < 0) {
		free(w);
		return r;
	}
	*out = w;
	return 0;
}

/* Under s->lock. The region stays behind without a trailer (dead) unless
 * the caller wrote one. */
static void writer_finish(struct efs_store_writer *w)
{
	struct efs_store *s = w->s;
	s->reserved -= w->length;
	w->v->writers--;
	store_volume_unref(w->v);
	free(w);
}

static void writer_drop(struct efs_store_writer *w)
{
	struct efs_store *s = w->s;
	pthread_mutex_lock(&s->lock);
	writer_finish(w);
	pthread_mutex_unlock(&s->lock);
}

/* Writes the trailer and points the index at the record, then (with
 * @wait) returns once it is durable. The sequence number is taken when the
 * trailer is written, under the lock that orders index changes, so a replay
 * orders a write and a delete of one chunk the way they happened. The
 * index changes before the sync (as a rename used to): a read may see a
 * chunk whose write is not acknowledged yet, never one that is lost after
 * being acknowledged. Without @wait, *ticket is for store_wait_durable(). */
int store_writer_commit(struct efs_store_writer *w, bool check_crc, uint32_t crc, int64_t mtime_ms,
			bool wait, uint64_t *ticket)
{
	struct efs_store *s = w->s;
	unsigned char trailer[TRAILER_LEN];
	uint8_t key[EFS_CHUNK_KEY_LEN];
	uint64_t my_ticket = 0;
	int r;

	if (w->written != w->length) {
		writer_drop(w);
		return -EPROTO;
	}
	if (check_crc && crc != w->crc) {
		writer_drop(w);
		return -EBADMSG;
	}
	efs_chunk_key(w->chunk_id, key);
	pthread_mutex_lock(&s->lock);
	r = s->broken;
	if (r == 0) {
		struct commit c = {.payload_crc = w->crc,
				   .seq = s->next_seq++,
				   .mtime_ms = mtime_ms ? mtime_ms : efs_now_ms()};
		store_trailer_encode(trailer, w->header_crc, &c);
		r = store_write_all(w->v->fd, trailer, TRAILER_LEN,
				    w->offset + HEADER_LEN + w->length);
		struct efs_chunk_loc loc = {.volume = w->v,
					    .offset = w->offset,
					    .seq = c.seq,
					    .mtime_ms = c.mtime_ms,
					    .length = (uint32_t)w->length,
					    .flags = (uint8_t)w->flags,
					    .first_volume = w->v->id,
					    .last_volume = w->v->id};
		/* A committed record the index does not know of could outlive a
		 * later delete's tombstone: take the commit back. */
		if (r == 0 && (r = index_set(s, key, &loc)) < 0)
			store_uncommit(w->v, w->offset, w->length);
		if (r == 0)
			my_ticket = store_mark_dirty(s, w->v);
	}
	writer_finish(w);
	pthread_mutex_unlock(&s->lock);
	if (r < 0)
		return r;
	if (!wait) {
		*ticket = my_ticket;
		return 0;
	}
	return store_wait_durable(s, my_ticket);
}

int efs_store_write_begin(struct efs_store *s, const char *chunk_id, uint64_t length,
			  uint32_t flags, struct efs_store_writer **out)
{
	return store_writer_begin(s, chunk_id, length, flags, true, out);
}

int efs_store_write(struct efs_store_writer *w, const void *data, size_t len)
{
	if (len > w->length - w->written)
		return -E2BIG;
	int r = store_write_all(w->v->fd, data, len, w->offset + HEADER_LEN + w->written);
	if (r < 0)
		return r;
	w->crc = efs_crc32c(w->crc, data, len);
	w->written += len;
	return 0;
}

int efs_store_write_commit(struct efs_store_writer *w, bool check_crc, uint32_t crc)
{
	return store_writer_commit(w, check_crc, crc, 0, true, NULL);
}

void efs_store_write_commit_async(struct efs_store_writer *w, bool check_crc, uint32_t crc,
				  struct efs_store_waiter *waiter)
{
	struct efs_store *s = w->s;
	uint64_t ticket = 0;
	int r = store_writer_commit(w, check_crc, crc, 0, false, &ticket);
	if (r < 0)
		waiter->done(waiter, r);
	else
		store_wait_async(s, ticket, waiter);
}

int efs_store_put_nowait(struct efs_store *s, const char *chunk_id, const void *data,
			 size_t len, uint32_t flags, bool check_crc, uint32_t crc,
			 uint64_t *ticket)
{
	struct efs_store_writer *w;
	int r = efs_store_write_begin(s, chunk_id, len, flags, &w);
	if (r < 0)
		return r;
	if ((r = efs_store_write(w, data, len)) < 0) {
		writer_drop(w);
		return r;
	}
	return store_writer_commit(w, check_crc, crc, 0, false, ticket);
}

int efs_store_wait(struct efs_store *s, uint64_t ticket)
{
	return store_wait_durable(s, ticket);
}

void efs_store_wait_async(struct efs_store *s, uint64_t ticket, struct efs_store_waiter *waiter)
{
	store_wait_async(s, ticket, waiter);
}

void efs_store_write_abort(struct efs_store_writer *w)
{
	if (w)
		writer_drop(w);
}
