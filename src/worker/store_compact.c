/* SPDX-License-Identifier: MIT */
/* store_compact.c - which volumes are reclaimed and how: a compaction
 * step copies the live records of one sealed volume that is at least half
 * dead (or small) into the active volume, syncs, then unlinks the file;
 * the compactor thread runs steps every compact_interval_ms.
 *
 * Invariants owned here: records are copied verbatim (same sequence
 * number and commit time), so replay order is kept; a copied chunk is
 * committed only if the index still points at the original; a tombstone is
 * kept while a volume of its range other than its own exists; a volume
 * leaves the table only once its unlink is durable, so a crash at any
 * point leaves every chunk in one volume or both.
 */
#include "worker/store_internal.h"
#include "echofs/hash.h"
#include "echofs/util.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The active volume is sealed for compaction once at least half of it is
 * dead and it is at least this big (or the volume size, if smaller). */
#define SEAL_ACTIVE_MIN_BYTES (64ull << 10)
/* A sealed volume under volume_bytes / this is merged into the active one. */
#define SMALL_VOLUME_DIV 8
/* After a failed compaction of a volume (an I/O error, a damaged header
 * hiding records, a failed unlink) it is tried again after this, doubled
 * per failure in a row up to COMPACT_RETRY_MAX_MS: a passing error costs
 * one retry, a lasting one a try every few minutes, never a busy loop. */
#define COMPACT_RETRY_MIN_MS 1000
#define COMPACT_RETRY_MAX_MS (5 * 60 * 1000)

/* ---- compaction -------------------------------------------------------- */

struct compaction {
	char *buf;
	uint64_t ticket;
};

/* Copies one record of @v, verbatim (same sequence number and commit
 * time), to the end of the active volume, if it is still needed: a chunk
 * the index points at, or a tombstone a volume of whose range still exists.
 * A chunk whose payload fails its CRC is quarantined instead. The payload
 * is copied without the lock; the copy of a chunk gets its trailer (is
 * committed) only if, under the lock, the index still points at the
 * original: a delete or rewrite meanwhile leaves the copy dead, since a
 * committed copy would be a record no tombstone covers. */
static int copy_record(struct efs_store *s, struct volume *v, const struct scanned *r, void *ctx)
{
	struct compaction *cp = ctx;
	uint8_t key[EFS_CHUNK_KEY_LEN];
	struct volume *dest = NULL;
	uint64_t dest_off = 0;
	uint64_t len = r->rec.length;
	int err;

	if (!r->committed)
		return 0;
	efs_chunk_key(r->rec.chunk_id, key);
	pthread_mutex_lock(&s->lock);
	bool keep;
	if (r->rec.type == TYPE_CHUNK) {
		struct efs_chunk_loc *loc = efs_chunk_index_find(&s->index, key);
		keep = loc && loc->volume == v && loc->offset == r->offset;
	} else {
		keep = store_volume_in_range(s, r->rec.first_volume, r->rec.target_volume, v);
	}
	err = keep ? store_reserve(s, r->header, RECORD_LEN(len), &dest, &dest_off) : 0;
	pthread_mutex_unlock(&s->lock);
	if (!keep || err < 0)
		return err;

	uint32_t crc = 0;
	for (uint64_t pos = 0; pos < len && err == 0;) {
		size_t n = (size_t)EFS_MIN(len - pos, COPY_BUF_LEN);
		err = store_read_all(v->fd, cp->buf, n, r->offset + HEADER_LEN + pos);
		if (err == 0)
			err = store_write_all(dest->fd, cp->buf, n, dest_off + HEADER_LEN + pos);
		crc = efs_crc32c(crc, cp->buf, n);
		pos += n;
	}
	bool damaged = err == -EBADMSG || (err == 0 && crc != r->commit.payload_crc);
	pthread_mutex_lock(&s->lock);
	if (err == 0 && !damaged) {
		struct efs_chunk_loc *loc = NULL;
		bool current = true; /* a tombstone is not indexed: always copied */
		if (r->rec.type == TYPE_CHUNK) {
			loc = efs_chunk_index_find(&s->index, key);
			current = loc && loc->volume == v && loc->offset == r->offset;
		}
		if (current)
			err = store_write_all(dest->fd, r->trailer, TRAILER_LEN,
					      dest_off + HEADER_LEN + len);
		if (current && err == 0) {
			if (loc) {
				v->live -= RECORD_LEN(len);
				dest->live += RECORD_LEN(len);
				loc->volume = dest;
				loc->offset = dest_off;
				loc->last_volume = EFS_MAX(loc->last_volume, dest->id);
			} else {
				store_volume_add_tomb(dest, r->rec.first_volume,
						      r->rec.target_volume);
			}
			cp->ticket = store_mark_dirty(s, dest);
		}
	}
	dest->writers--;
	store_volume_unref(dest);
	pthread_mutex_unlock(&s->lock);
	if (damaged) {
		store_quarantine(s, r->rec.chunk_id, v, r->offset, len);
		return 0;
	}
	return err;
}

/* Moves what is live out of @v, makes the copies durable, then removes
 * the file: a crash at any point leaves every chunk in one volume or both. */
static int compact_volume(struct efs_store *s, struct volume *v)
{
	char path[PATH_MAX];
	struct compaction cp = {.buf = malloc(COPY_BUF_LEN)};
	int r = cp.buf ? store_scan_volume(s, v, v->size, copy_record, &cp) : -ENOMEM;
	free(cp.buf);
	if (r == 0 && cp.ticket)
		r = store_wait_durable(s, cp.ticket);
	if (r < 0)
		return r;
	pthread_mutex_lock(&s->lock);
	r = v->live != 0 ? -EAGAIN : 0;
	pthread_mutex_unlock(&s->lock);
	if (r < 0) {
		/* A header damaged since open hid records from the scan: they
		 * stay until reads quarantine them. */
		return r;
	}
	/* The volume stays in the table (so the tombstones for records in it
	 * are kept) until its removal is durable; if that fails it stays, to
	 * be tried again later (the caller's backoff), rather than live on
	 * disk untracked. It is sealed and holds nothing the index points at:
	 * nobody writes it. */
	store_volume_path(s, v->id, path, sizeof(path));
	if (unlink(path) < 0 || fsync(s->vol_dir_fd) < 0)
		return -errno;
	pthread_mutex_lock(&s->lock);
	store_volume_table_remove(s, v);
	store_volume_unref(v); /* the table's reference; readers may still hold theirs */
	pthread_mutex_unlock(&s->lock);
	return 1;
}

int efs_store_compact(struct efs_store *s)
{
	struct volume *pick = NULL;
	int64_t now = efs_mono_ms();
	pthread_mutex_lock(&s->lock);
	struct volume *a = s->active;
	if (a && a->size >= EFS_MIN(SEAL_ACTIVE_MIN_BYTES, s->volume_bytes) &&
	    store_volume_needed(s, a) * 2 <= a->size) {
		a->sealed = true;
		s->active = NULL;
	}
	for (size_t i = 0; i < s->vol_count && !pick; i++) {
		struct volume *v = s->vols[i];
		/* Half dead, or small: every start seals the volume it was
		 * writing, and small ones are merged rather than kept for ever. */
		if (v->sealed && now >= v->compact_retry_ms && v->writers == 0 &&
		    (store_volume_needed(s, v) * 2 <= v->size ||
		     v->size < s->volume_bytes / SMALL_VOLUME_DIV))
			pick = v;
	}
	if (pick)
		pick->refs++;
	pthread_mutex_unlock(&s->lock);
	if (!pick)
		return 0;
	int r = compact_volume(s, pick);
	pthread_mutex_lock(&s->lock);
	if (r < 0) {
		/* Not for ever: tried again after a backoff. */
		unsigned shift = EFS_MIN(pick->compact_failures, 20u);
		int64_t wait =
		    EFS_MIN((int64_t)COMPACT_RETRY_MIN_MS << shift, (int64_t)COMPACT_RETRY_MAX_MS);
		pick->compact_failures++;
		pick->compact_retry_ms = efs_mono_ms() + wait;
	}
	store_volume_unref(pick);
	pthread_mutex_unlock(&s->lock);
	return r;
}

void store_compactor_main(struct efs_ticker *t, void *ctx)
{
	struct efs_store *s = ctx;
	while (!efs_ticker_wait(t, s->compact_interval_ms)) {
		/* One volume at a time, until none qualifies or the store closes. */
		while (efs_store_compact(s) > 0 && !efs_ticker_wait(t, 0))
			;
	}
}
