/* SPDX-License-Identifier: MIT */
/* store.c - the chunk store's entry points: open and close, reads, stat,
 * delete, iterate and the counts. The layout and the crash rules are in
 * store.h; the parts live in store_record.c (the on-disk record),
 * store_volume.c (the volume set), store_commit.c (writes, group commit),
 * store_recovery.c (replay at open, clean marker, quarantine),
 * store_compact.c (compaction) and store_legacy.c (the old layout).
 *
 * Why volumes: one file per chunk cost an inode allocation, a rename and
 * two syncs per replica; appends that share an fdatasync cost a fraction of
 * one sync each.
 *
 * Invariants owned here: every read checks the header, the trailer and
 * the payload CRC, and a record that fails is quarantined (-EBADMSG), also
 * one handed out by descriptor, which is checked before the descriptor is
 * made; a stat checks the header only; open replays every volume and
 * imports the old layout before the store serves, and new records always
 * go to a new volume after an open.
 */
#include "worker/store_internal.h"
#include "echofs/hash.h"
#include "echofs/ticker.h"
#include "echofs/util.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define DEFAULT_VOLUME_BYTES (256ull << 20)
#define DEFAULT_ITERATE_SLICE 4096
/* A large index is walked in at most about this many slices. */
#define ITERATE_SCANS 16
#define DEFAULT_COMPACT_INTERVAL_MS 2000
/* Payload bytes read at a time when a payload is verified without being
 * kept (efs_store_get_payload by descriptor, efs_store_verify): the buffer
 * stays in the CPU's cache, and a 4 MiB chunk costs 16 reads. */
#define VERIFY_PIECE_LEN EFS_STORE_VERIFY_PIECE

/* ---- reading ----------------------------------------------------------- */

/* Looks @chunk_id up; on success *loc is a copy and the caller holds a
 * reference to its volume (release with put_volume). */
static int lookup(struct efs_store *s, const char *chunk_id, struct efs_chunk_loc *loc)
{
	uint8_t key[EFS_CHUNK_KEY_LEN];
	if (!efs_chunk_id_valid(chunk_id))
		return -EINVAL;
	efs_chunk_key(chunk_id, key);
	pthread_mutex_lock(&s->lock);
	struct efs_chunk_loc *found = efs_chunk_index_find(&s->index, key);
	if (found) {
		*loc = *found;
		((struct volume *)loc->volume)->refs++;
	}
	pthread_mutex_unlock(&s->lock);
	return found ? 0 : -ENOENT;
}

static void put_volume(struct efs_store *s, struct volume *v)
{
	pthread_mutex_lock(&s->lock);
	store_volume_unref(v);
	pthread_mutex_unlock(&s->lock);
}

/* The header at @loc must be the chunk's, as indexed. */
static int check_header(const unsigned char *h, const char *chunk_id,
			const struct efs_chunk_loc *loc, struct record *rec)
{
	if (store_header_decode(h, rec) < 0 || rec->type != TYPE_CHUNK ||
	    strcmp(rec->chunk_id, chunk_id) != 0 || rec->length != loc->length ||
	    rec->flags != loc->flags)
		return -EBADMSG;
	return 0;
}

int efs_store_get(struct efs_store *s, const char *chunk_id, struct efs_buf *out, uint32_t *flags)
{
	uint32_t crc;

	return efs_store_get_crc(s, chunk_id, out, flags, &crc);
}

int efs_store_get_crc(struct efs_store *s, const char *chunk_id, struct efs_buf *out,
		      uint32_t *flags, uint32_t *crc)
{
	struct efs_store_payload p;
	int r = efs_store_get_payload(s, chunk_id, UINT64_MAX, out, &p);
	if (r == 0) {
		*flags = p.flags;
		*crc = p.crc;
	}
	return r;
}

/* Header, payload (into @out, which must have room for it) and trailer of
 * the record at @loc, in one system call when it can. */
static int read_record(struct volume *v, const struct efs_chunk_loc *loc, unsigned char *header,
		       char *out, unsigned char *trailer)
{
	struct iovec iov[3] = {{header, HEADER_LEN}, {out, loc->length}, {trailer, TRAILER_LEN}};
	ssize_t got = preadv(v->fd, iov, 3, (off_t)loc->offset);
	if (got == (ssize_t)RECORD_LEN(loc->length))
		return 0;
	int r;
	if ((r = store_read_all(v->fd, header, HEADER_LEN, loc->offset)) < 0 ||
	    (r = store_read_all(v->fd, out, loc->length, loc->offset + HEADER_LEN)) < 0)
		return r;
	return store_read_all(v->fd, trailer, TRAILER_LEN, loc->offset + HEADER_LEN + loc->length);
}

/* The CRC32C of the payload at @loc, read VERIFY_PIECE_LEN at a time into
 * a buffer that stays in the CPU's cache: nothing of it is kept. */
static int crc_in_pieces(struct volume *v, const struct efs_chunk_loc *loc, uint32_t *crc)
{
	size_t piece = (size_t)EFS_MIN(loc->length, (uint64_t)VERIFY_PIECE_LEN);
	char *buf = malloc(EFS_MAX(piece, 1));
	uint32_t sum = 0;
	int r = buf ? 0 : -ENOMEM;
	for (uint64_t pos = 0; r == 0 && pos < loc->length; pos += piece) {
		size_t n = (size_t)EFS_MIN(loc->length - pos, (uint64_t)piece);
		if ((r = store_read_all(v->fd, buf, n, loc->offset + HEADER_LEN + pos)) == 0)
			sum = efs_crc32c(sum, buf, n);
	}
	free(buf);
	if (r == 0)
		*crc = sum;
	return r;
}

/* Header, trailer and payload CRC32C of the record at @loc checked
 * without keeping the payload (crc_in_pieces); the trailer decoded into
 * *@c. 0, -EBADMSG (the caller quarantines), -errno. */
static int verify_in_pieces(struct volume *v, const struct efs_chunk_loc *loc,
			    const char *chunk_id, struct commit *c)
{
	unsigned char header[HEADER_LEN], trailer[TRAILER_LEN];
	struct record rec;
	uint32_t crc = 0;
	int r;
	/* Header and trailer first: a record that does not check is refused
	 * before its payload is read. */
	if ((r = store_read_all(v->fd, header, HEADER_LEN, loc->offset)) < 0 ||
	    (r = store_read_all(v->fd, trailer, TRAILER_LEN,
				loc->offset + HEADER_LEN + loc->length)) < 0 ||
	    (r = check_header(header, chunk_id, loc, &rec)) < 0 ||
	    (r = store_trailer_decode(trailer, rec.header_crc, c)) < 0 ||
	    (r = crc_in_pieces(v, loc, &crc)) < 0)
		return r;
	return crc == c->payload_crc ? 0 : -EBADMSG;
}

int efs_store_verify(struct efs_store *s, const char *chunk_id, uint64_t *length)
{
	struct efs_chunk_loc loc;
	struct commit c;
	int r = lookup(s, chunk_id, &loc);
	if (r < 0)
		return r;
	struct volume *v = loc.volume;
	r = verify_in_pieces(v, &loc, chunk_id, &c);
	if (r == -EBADMSG)
		store_quarantine(s, chunk_id, v, loc.offset, loc.length);
	put_volume(s, v);
	if (r == 0)
		*length = loc.length;
	return r;
}

int efs_store_get_payload(struct efs_store *s, const char *chunk_id, uint64_t by_fd_min,
			  struct efs_buf *buf, struct efs_store_payload *out)
{
	unsigned char header[HEADER_LEN], trailer[TRAILER_LEN];
	struct efs_chunk_loc loc;
	struct record rec;
	struct commit c;
	uint32_t crc = 0;
	int fd = -1;

	int r = lookup(s, chunk_id, &loc);
	if (r < 0)
		return r;
	struct volume *v = loc.volume;
	bool by_fd = loc.length >= by_fd_min;
	efs_buf_reset(buf);
	if (by_fd) {
		if ((r = verify_in_pieces(v, &loc, chunk_id, &c)) < 0)
			goto out;
	} else {
		if ((r = efs_buf_reserve(buf, loc.length)) < 0 ||
		    (r = read_record(v, &loc, header, buf->data, trailer)) < 0 ||
		    (r = check_header(header, chunk_id, &loc, &rec)) < 0 ||
		    (r = store_trailer_decode(trailer, rec.header_crc, &c)) < 0)
			goto out;
		crc = efs_crc32c(0, buf->data, loc.length);
		if (crc != c.payload_crc) {
			r = -EBADMSG;
			goto out;
		}
	}
	/* The caller's own descriptor of the volume file: it keeps the file's
	 * bytes (even once compaction unlinks it) after the reference below
	 * is dropped, and a committed record's bytes are never written again
	 * (volumes only grow; compaction copies and unlinks). */
	if (by_fd && (fd = fcntl(v->fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		r = -errno;
		goto out;
	}
	if (!by_fd) {
		buf->len = loc.length;
		buf->data[loc.length] = '\0';
	}
	*out = (struct efs_store_payload){.flags = loc.flags,
					  .crc = c.payload_crc,
					  .length = loc.length,
					  .fd = fd,
					  .offset = by_fd ? loc.offset + HEADER_LEN : 0};
out:
	if (r == -EBADMSG)
		store_quarantine(s, chunk_id, v, loc.offset, loc.length);
	put_volume(s, v);
	return r;
}

int efs_store_stat(struct efs_store *s, const char *chunk_id, uint64_t *length, uint32_t *flags,
		   int64_t *mtime_ms)
{
	unsigned char header[HEADER_LEN];
	struct efs_chunk_loc loc;
	struct record rec;

	int r = lookup(s, chunk_id, &loc);
	if (r < 0)
		return r;
	struct volume *v = loc.volume;
	/* The header only: a HEAD must stay cheap; the payload is checked by
	 * reads and the scrubber. */
	if ((r = store_read_all(v->fd, header, HEADER_LEN, loc.offset)) == 0)
		r = check_header(header, chunk_id, &loc, &rec);
	if (r == -EBADMSG)
		store_quarantine(s, chunk_id, v, loc.offset, loc.length);
	put_volume(s, v);
	if (r < 0)
		return r;
	*length = loc.length;
	*flags = loc.flags;
	*mtime_ms = loc.mtime_ms;
	return 0;
}

/* Writes the tombstone of a delete; *ticket is for store_wait_durable(). */
static int delete_begin(struct efs_store *s, const char *chunk_id, int64_t unmodified_since_ms,
			uint64_t *ticket)
{
	uint8_t key[EFS_CHUNK_KEY_LEN];
	int r;

	if (!efs_chunk_id_valid(chunk_id))
		return -EINVAL;
	efs_chunk_key(chunk_id, key);
	pthread_mutex_lock(&s->lock);
	struct efs_chunk_loc *loc = efs_chunk_index_find(&s->index, key);
	if (!loc)
		r = -ENOENT;
	else if (unmodified_since_ms > 0 && loc->mtime_ms >= unmodified_since_ms)
		r = -EBUSY;
	else if ((r = store_append_tombstone(s, chunk_id, loc->first_volume, loc->last_volume,
					     ticket)) == 0)
		store_index_drop(s, key, loc);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int efs_store_delete(struct efs_store *s, const char *chunk_id, int64_t unmodified_since_ms)
{
	uint64_t ticket = 0;
	int r = delete_begin(s, chunk_id, unmodified_since_ms, &ticket);
	return r < 0 ? r : store_wait_durable(s, ticket);
}

void efs_store_delete_async(struct efs_store *s, const char *chunk_id,
			    int64_t unmodified_since_ms, struct efs_store_waiter *waiter)
{
	uint64_t ticket = 0;
	int r = delete_begin(s, chunk_id, unmodified_since_ms, &ticket);
	if (r < 0)
		waiter->done(waiter, r);
	else
		store_wait_async(s, ticket, waiter);
}

/* Kept when mtime >= now - for_ms: written within the last @for_ms. A
 * copy stamped ahead of now (the clock was stepped back) is kept too. */
static int64_t unmodified_since(int64_t for_ms)
{
	return EFS_MAX(efs_now_ms() - EFS_MAX(for_ms, 0), 1);
}

int efs_store_delete_unmodified_for(struct efs_store *s, const char *chunk_id, int64_t for_ms)
{
	return efs_store_delete(s, chunk_id, unmodified_since(for_ms));
}

void efs_store_delete_unmodified_for_async(struct efs_store *s, const char *chunk_id,
					   int64_t for_ms, struct efs_store_waiter *waiter)
{
	efs_store_delete_async(s, chunk_id, unmodified_since(for_ms), waiter);
}

struct listed {
	uint8_t key[EFS_CHUNK_KEY_LEN];
	uint64_t length;
	int64_t mtime_ms;
};

static int listed_cmp(const void *a, const void *b)
{
	return memcmp(((const struct listed *)a)->key, ((const struct listed *)b)->key,
		      EFS_CHUNK_KEY_LEN);
}

/* A max-heap by key of the smallest keys seen so far. */
static void heap_sift_down(struct listed *heap, size_t count, size_t i)
{
	for (;;) {
		size_t big = i, l = 2 * i + 1, r = l + 1;
		if (l < count && memcmp(heap[l].key, heap[big].key, EFS_CHUNK_KEY_LEN) > 0)
			big = l;
		if (r < count && memcmp(heap[r].key, heap[big].key, EFS_CHUNK_KEY_LEN) > 0)
			big = r;
		if (big == i)
			return;
		struct listed t = heap[i];
		heap[i] = heap[big];
		heap[big] = t;
		i = big;
	}
}

static void heap_sift_up(struct listed *heap, size_t i)
{
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (memcmp(heap[parent].key, heap[i].key, EFS_CHUNK_KEY_LEN) >= 0)
			return;
		struct listed t = heap[i];
		heap[i] = heap[parent];
		heap[parent] = t;
		i = parent;
	}
}

/* Under the lock: the (at most) @max smallest keys greater than @after
 * (all keys with @after NULL) into @heap; returns how many. */
static size_t slice_take(struct efs_store *s, const uint8_t *after, struct listed *heap, size_t max)
{
	struct efs_chunk_slot *slot;
	size_t pos = 0, count = 0;
	while ((slot = efs_chunk_index_next(&s->index, &pos))) {
		pos++;
		if (after && memcmp(slot->key, after, EFS_CHUNK_KEY_LEN) <= 0)
			continue;
		if (count == max) {
			if (memcmp(slot->key, heap[0].key, EFS_CHUNK_KEY_LEN) >= 0)
				continue;
			/* It takes the largest's place: one sift, not two. */
			memcpy(heap[0].key, slot->key, EFS_CHUNK_KEY_LEN);
			heap[0].length = slot->loc.length;
			heap[0].mtime_ms = slot->loc.mtime_ms;
			heap_sift_down(heap, count, 0);
			continue;
		}
		memcpy(heap[count].key, slot->key, EFS_CHUNK_KEY_LEN);
		heap[count].length = slot->loc.length;
		heap[count].mtime_ms = slot->loc.mtime_ms;
		heap_sift_up(heap, count);
		count++;
	}
	return count;
}

int efs_store_iterate(struct efs_store *s, efs_store_iter_fn fn, void *ctx)
{
	char chunk_id[65];
	uint8_t after[EFS_CHUNK_KEY_LEN];
	bool started = false;
	int r = 0;

	/* In slices, in key order: the lock is held to copy one slice (the
	 * smallest keys after the last one listed), never for the whole
	 * index, so writes and reads go on during a long walk, and @fn runs
	 * without it (it may call back into the store: the chunk report
	 * deletes as it goes). Key order makes the walk immune to the table
	 * moving entries between slices: every chunk present for the whole
	 * walk is listed exactly once; one written or deleted meanwhile may
	 * or may not be. Each slice costs one scan of the whole table under
	 * the lock whatever its size, so the walk's cost is the number of
	 * slices times the index: a slice is iterate_slice chunks, or 1/ITERATE_SCANS
	 * of the index when that is more (a million chunks: 16 scans and a 3 MB
	 * heap; with 64 scans the walk took 13 s,
	 * docs/PERFORMANCE.md#costs-at-a-million-files). */
	pthread_mutex_lock(&s->lock);
	size_t max = EFS_MAX(s->iterate_slice, s->index.count / ITERATE_SCANS);
	pthread_mutex_unlock(&s->lock);
	struct listed *heap = malloc(max * sizeof(*heap));
	if (!heap)
		return -ENOMEM;
	for (;;) {
		pthread_mutex_lock(&s->lock);
		size_t count = slice_take(s, started ? after : NULL, heap, max);
		pthread_mutex_unlock(&s->lock);
		if (count == 0)
			break;
		memcpy(after, heap[0].key, EFS_CHUNK_KEY_LEN); /* the slice's largest */
		started = true;
		qsort(heap, count, sizeof(*heap), listed_cmp);
		for (size_t i = 0; i < count && r == 0; i++) {
			efs_hex_encode(heap[i].key, EFS_CHUNK_KEY_LEN, chunk_id);
			r = fn(ctx, chunk_id, heap[i].length, heap[i].mtime_ms);
		}
		if (r != 0 || count < max)
			break;
	}
	free(heap);
	return r;
}

void efs_store_stats(struct efs_store *s, struct efs_store_stats *out)
{
	pthread_mutex_lock(&s->lock);
	out->chunk_count = s->index.count;
	out->bytes = s->bytes + s->reserved;
	pthread_mutex_unlock(&s->lock);
}

/* ---- open and close ---------------------------------------------------- */

int efs_store_open_with(const char *dir, const struct efs_store_options *opt,
			struct efs_store **out, char *err, size_t errlen)
{
	char path[PATH_MAX];
	int r;
	struct efs_store *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->synced, NULL);
	pthread_cond_init(&s->waiters_cond, NULL);
	efs_chunk_index_init(&s->index);
	s->vol_dir_fd = -1;
	s->capacity = opt->capacity_bytes;
	s->volume_bytes = opt->volume_bytes ? opt->volume_bytes : DEFAULT_VOLUME_BYTES;
	s->compact_interval_ms = opt->compact_interval_ms;
	s->iterate_slice = opt->iterate_slice ? opt->iterate_slice : DEFAULT_ITERATE_SLICE;
	s->next_volume_id = 1;
	s->next_seq = 1;
	if (efs_strlcpy(s->dir, dir, sizeof(s->dir)) >= sizeof(s->dir)) {
		r = -ENAMETOOLONG;
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/corrupt", dir);
	if ((r = efs_mkdir_p(path)) < 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/volumes", dir);
	if ((r = efs_mkdir_p(path)) < 0)
		goto fail;
	s->vol_dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->vol_dir_fd < 0) {
		r = -errno;
		goto fail;
	}
	/* volumes/ itself must survive a crash before the first record in it
	 * is acknowledged (the files in it are covered by volume_start). */
	if ((r = store_fsync_dir(dir)) < 0)
		goto fail;
	s->clean_through = store_read_clean_through(s);
	if ((r = store_load_volumes(s)) < 0)
		goto fail;
	/* This run's volumes get ids above the marker; the checked ones are
	 * at or under it from now on. */
	if (s->next_volume_id <= s->clean_through)
		s->next_volume_id = s->clean_through + 1;
	/* The marker only saves checking these volumes again at the next
	 * open: a full disk (it needs a new file) must not keep a worker from
	 * starting and serving the chunks it holds. */
	if (s->next_volume_id - 1 > s->clean_through &&
	    (r = store_write_clean_through(s, s->next_volume_id - 1)) < 0 && r != -ENOSPC &&
	    r != -EDQUOT)
		goto fail;
	if ((r = store_migrate_legacy(s)) < 0)
		goto fail;
	if (s->compact_interval_ms > 0) {
		if ((r = efs_ticker_start(&s->compactor, store_compactor_main, s)) < 0)
			goto fail;
		s->compactor_running = true;
	}
	if ((r = store_committer_start(s)) < 0)
		goto fail;
	s->opened = true;
	*out = s;
	return 0;
fail:
	if (r == -EPROTONOSUPPORT && s->newer_format) {
		/* A configuration error (exit status 2), as the master's newer
		 * schema: docs/OPERATIONS.md#upgrades-and-downgrades. */
		snprintf(err, errlen,
			 "the chunk store holds records of format version %u, newer than this "
			 "binary's (%d): run the newer echofs-worker that wrote them (or a later "
			 "one); first in %s/volumes/%010u.vol",
			 s->newer_format, FORMAT_VERSION, dir, s->newer_format_volume);
		r = -EINVAL;
	} else {
		snprintf(err, errlen, "cannot open the chunk store in %s: %s", dir,
			 strerror(-r));
	}
	efs_store_close(s);
	return r;
}

int efs_store_open(const char *dir, uint64_t capacity_bytes, struct efs_store **out, char *err,
		   size_t errlen)
{
	struct efs_store_options opt = {.capacity_bytes = capacity_bytes,
					.compact_interval_ms = DEFAULT_COMPACT_INTERVAL_MS};
	return efs_store_open_with(dir, &opt, out, err, errlen);
}

void efs_store_close(struct efs_store *s)
{
	if (!s)
		return;
	if (s->compactor_running)
		efs_ticker_stop(&s->compactor);
	store_committer_stop(s);
	store_mark_clean(s);
	/* No writer is left (the caller stopped serving); a last sync round
	 * may hold dirty volumes: drop those references too. */
	while (s->dirty) {
		struct volume *next = s->dirty->dirty_next;
		store_volume_unref(s->dirty);
		s->dirty = next;
	}
	for (size_t i = 0; i < s->vol_count; i++)
		store_volume_unref(s->vols[i]);
	free(s->vols);
	if (s->vol_dir_fd >= 0)
		close(s->vol_dir_fd);
	efs_chunk_index_release(&s->index);
	pthread_cond_destroy(&s->waiters_cond);
	pthread_cond_destroy(&s->synced);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void efs_store_volume_stats(struct efs_store *s, struct efs_store_volume_stats *out)
{
	pthread_mutex_lock(&s->lock);
	memset(out, 0, sizeof(*out));
	out->volume_count = s->vol_count;
	for (size_t i = 0; i < s->vol_count; i++) {
		out->file_bytes += s->vols[i]->size;
		out->live_bytes += s->vols[i]->live;
	}
	pthread_mutex_unlock(&s->lock);
}
