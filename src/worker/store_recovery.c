/* SPDX-License-Identifier: MIT */
/* store_recovery.c - what the store believes after a crash or a damaged
 * read: the scan of a volume's chain of headers, the replay that rebuilds
 * the index at open, the clean-through marker that says which volumes
 * need their payloads checked, and the quarantine of a record that fails
 * its checks.
 *
 * Invariants owned here: for each chunk the committed record with the
 * highest sequence number wins, a tombstone meaning deleted; a header that
 * does not check ends a volume (a torn tail); a record in a volume newer
 * than the clean marker whose payload does not match its trailer was never
 * acknowledged and is uncommitted on disk before anything is served, so an
 * older acknowledged copy wins; a quarantined record is dropped from the
 * index and uncommitted alone (no tombstone: older good copies survive).
 */
#include "worker/store_internal.h"
#include "echofs/hash.h"
#include "echofs/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* volumes/clean: the decimal id of the highest volume known to hold no
 * record torn by a crash (written at open once the volumes were checked,
 * and at a clean close once they are synced). Only newer volumes are
 * checked at the next open. */
#define CLEAN_FILE "clean"

/* ---- quarantine -------------------------------------------------------- */

/* Copies a damaged record's bytes to corrupt/<id> for the operator (best
 * effort: a short file is fine, nothing depends on it). */
static void copy_to_corrupt(struct efs_store *s, const char *chunk_id, int fd, uint64_t offset,
			    uint64_t len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/corrupt/%s", s->dir, chunk_id);
	int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	char *buf = malloc(COPY_BUF_LEN);
	if (out >= 0 && buf) {
		for (uint64_t pos = 0; pos < len;) {
			ssize_t got =
			    pread(fd, buf, EFS_MIN(len - pos, COPY_BUF_LEN), (off_t)(offset + pos));
			if (got <= 0 || store_write_all(out, buf, (size_t)got, pos) < 0)
				break;
			pos += (uint64_t)got;
		}
	}
	free(buf);
	if (out >= 0)
		close(out);
}

/* Takes a record that failed its checks out of the index (if the index
 * still points at it) and uncommits that record alone on disk, so that it
 * stays gone after a restart; repair writes a good copy later. No
 * tombstone: one would also shadow older good copies of the chunk (a
 * rewrite or a repair leaves them behind), which a restart now serves
 * again; with no other copy the chunk is absent. */
void store_quarantine(struct efs_store *s, const char *chunk_id, struct volume *v, uint64_t offset,
		      uint64_t length)
{
	uint8_t key[EFS_CHUNK_KEY_LEN];
	copy_to_corrupt(s, chunk_id, v->fd, offset, RECORD_LEN(length));
	efs_chunk_key(chunk_id, key);
	pthread_mutex_lock(&s->lock);
	struct efs_chunk_loc *loc = efs_chunk_index_find(&s->index, key);
	if (loc && loc->volume == v && loc->offset == offset) {
		/* Not waited for: if it is lost in a crash, the next read finds
		 * the damage again. */
		if (store_uncommit(v, offset, length) == 0)
			store_mark_dirty(s, v);
		store_index_drop(s, key, loc);
	}
	pthread_mutex_unlock(&s->lock);
}

/* ---- scanning a volume ------------------------------------------------ */

/* The scan reads a volume through a window of SCAN_WINDOW bytes: one
 * pread serves the headers and trailers of every small record inside it
 * (a million 4 KiB chunks: ~40 reads per volume instead of two per record,
 * docs/PERFORMANCE.md#costs-at-a-million-files), and a large record costs
 * one window read at its header and one at its trailer, as two preads did. */
#define SCAN_WINDOW (64 * 1024)

struct scan_window {
	unsigned char *buf; /* SCAN_WINDOW bytes, or NULL: plain preads */
	uint64_t start;	    /* volume offset of buf[0] */
	size_t len;	    /* bytes valid from start */
};

/* Reads @len bytes at @offset (never past @end) through the window;
 * -EBADMSG when the file ends first. */
static int window_read(struct scan_window *w, int fd, uint64_t end, void *out, size_t len,
		       uint64_t offset)
{
	if (!w->buf || len > SCAN_WINDOW)
		return store_read_all(fd, out, len, offset);
	if (offset < w->start || offset + len > w->start + w->len) {
		size_t want = (size_t)EFS_MIN((uint64_t)SCAN_WINDOW, end - offset);
		if (want < len)
			want = len;
		w->start = offset;
		w->len = 0;
		while (w->len < len) {
			ssize_t got =
			    pread(fd, w->buf + w->len, want - w->len, (off_t)(offset + w->len));
			if (got < 0 && errno == EINTR)
				continue;
			if (got < 0)
				return -errno;
			if (got == 0)
				return -EBADMSG;
			w->len += (size_t)got;
		}
	}
	memcpy(out, w->buf + (offset - w->start), len);
	return 0;
}

/* Follows the chain of headers from the start of @v up to @end. A region
 * whose trailer does not check (aborted, or cut by a crash) is skipped by
 * its length; a header that does not check ends the scan: what follows is
 * a torn tail (or damage) and counts as dead; an intact header of a newer
 * format ends it with -EPROTONOSUPPORT (s->newer_format says which).
 * @fn may write to @v at or
 * before the record it is handed (an uncommit), never after it: the window
 * only ever holds bytes at or past the record being read. */
int store_scan_volume(struct efs_store *s, struct volume *v, uint64_t end, scan_fn fn, void *ctx)
{
	struct scanned r;
	struct scan_window w = {.buf = malloc(SCAN_WINDOW)};
	int err = 0;
	for (uint64_t off = 0; off + HEADER_LEN + TRAILER_LEN <= end;) {
		err = window_read(&w, v->fd, end, r.header, HEADER_LEN, off);
		if (err == -EBADMSG) {
			err = 0;
			break;
		}
		if (err < 0)
			break;
		if ((err = store_header_decode(r.header, &r.rec)) == -EPROTONOSUPPORT) {
			/* a newer binary's record: nothing here may be trusted
			 * to be dead, the whole open is refused */
			s->newer_format = r.header[4];
			s->newer_format_volume = v->id;
			break;
		}
		if (err < 0 || off + RECORD_LEN(r.rec.length) > end) {
			err = 0;
			break;
		}
		err = window_read(&w, v->fd, end, r.trailer, TRAILER_LEN,
				  off + HEADER_LEN + r.rec.length);
		if (err < 0 && err != -EBADMSG)
			break;
		r.committed =
		    err == 0 && store_trailer_decode(r.trailer, r.rec.header_crc, &r.commit) == 0;
		err = 0;
		r.offset = off;
		/* The callback may uncommit this record: its trailer, held
		 * in the window, is never read again. */
		if ((err = fn(s, v, &r, ctx)) < 0)
			break;
		off += RECORD_LEN(r.rec.length);
	}
	free(w.buf);
	return err;
}

struct replay {
	char *buf;	  /* COPY_BUF_LEN bytes */
	bool uncommitted; /* a torn record of the volume being read was uncommitted */
};

/* -EBADMSG when the payload does not match its trailer's CRC (or the file
 * ends first). */
static int check_payload(struct volume *v, const struct scanned *r, char *buf)
{
	uint32_t crc = 0;
	for (uint64_t pos = 0; pos < r->rec.length;) {
		size_t n = (size_t)EFS_MIN(r->rec.length - pos, COPY_BUF_LEN);
		int err = store_read_all(v->fd, buf, n, r->offset + HEADER_LEN + pos);
		if (err < 0)
			return err;
		crc = efs_crc32c(crc, buf, n);
		pos += n;
	}
	return crc == r->commit.payload_crc ? 0 : -EBADMSG;
}

/* At open: the newest record of each chunk wins; tombstones stay in the
 * index (marked) until every volume has been read. Every committed chunk
 * record, winner or not, widens its chunk's volume range.
 *
 * A volume newer than s->clean_through was being written when the store
 * last stopped without a clean close: header, payload and trailer reach the
 * disk in any order before the sync, so a trailer may be there while part
 * of its payload is not. Such a record was never acknowledged; its payload
 * is checked here and, if torn, uncommitted on disk, so that the older,
 * acknowledged copy wins (now and after later restarts). */
static int replay_record(struct efs_store *s, struct volume *v, const struct scanned *r, void *ctx)
{
	struct replay *rp = ctx;
	uint8_t key[EFS_CHUNK_KEY_LEN];
	if (!r->committed)
		return 0;
	if (r->commit.seq >= s->next_seq)
		s->next_seq = r->commit.seq + 1;
	bool chunk = r->rec.type == TYPE_CHUNK;
	if (chunk && v->id > s->clean_through) {
		int err = check_payload(v, r, rp->buf);
		if (err == -EBADMSG && (err = store_uncommit(v, r->offset, r->rec.length)) == 0) {
			rp->uncommitted = true;
			return 0;
		}
		if (err < 0)
			return err;
	}
	if (!chunk && store_volume_add_tomb(v, r->rec.first_volume, r->rec.target_volume) < 0)
		return -ENOMEM;
	efs_chunk_key(r->rec.chunk_id, key);
	struct efs_chunk_loc *old = efs_chunk_index_find(&s->index, key);
	/* A tombstone adds no volume: it covers its own range. */
	uint32_t first = chunk ? v->id : UINT32_MAX, last = chunk ? v->id : 0;
	if (old) {
		first = EFS_MIN(first, old->first_volume);
		last = EFS_MAX(last, old->last_volume);
		if (old->seq >= r->commit.seq) {
			old->first_volume = first;
			old->last_volume = last;
			return 0;
		}
	}
	struct efs_chunk_loc loc = {
	    .volume = v,
	    .offset = r->offset,
	    .seq = r->commit.seq,
	    .mtime_ms = r->commit.mtime_ms,
	    .length = (uint32_t)r->rec.length,
	    .flags = r->rec.flags,
	    .tombstone = !chunk,
	    .first_volume = first,
	    .last_volume = last,
	};
	return efs_chunk_index_put(&s->index, key, &loc);
}

static bool volume_name(const char *name, uint32_t *id)
{
	if (strlen(name) != 14 || strcmp(name + 10, ".vol") != 0)
		return false;
	uint64_t n = 0;
	for (int i = 0; i < 10; i++) {
		if (name[i] < '0' || name[i] > '9')
			return false;
		n = n * 10 + (uint64_t)(name[i] - '0');
	}
	if (n == 0 || n > UINT32_MAX - 1)
		return false;
	*id = (uint32_t)n;
	return true;
}

static int compare_volume_ids(const void *a, const void *b)
{
	uint32_t x = (*(struct volume *const *)a)->id, y = (*(struct volume *const *)b)->id;
	return x < y ? -1 : x > y;
}

/* Opens every volume (all sealed: new records go to a new volume), replays
 * them into the index and counts what is live. */
int store_load_volumes(struct efs_store *s)
{
	char path[PATH_MAX];
	int r = 0;
	snprintf(path, sizeof(path), "%s/volumes", s->dir);
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	struct dirent *e;
	while ((e = readdir(d))) {
		uint32_t id;
		struct stat st;
		if (!volume_name(e->d_name, &id))
			continue;
		struct volume *v = calloc(1, sizeof(*v));
		if (!v) {
			r = -ENOMEM;
			break;
		}
		v->id = id;
		v->sealed = true;
		v->refs = 1;
		v->fd = openat(dirfd(d), e->d_name, O_RDWR | O_CLOEXEC);
		if (v->fd < 0 || fstat(v->fd, &st) < 0 || (r = store_volume_table_add(s, v)) < 0) {
			r = r ? r : -errno;
			if (v->fd >= 0)
				close(v->fd);
			free(v);
			break;
		}
		v->size = (uint64_t)st.st_size;
		if (id >= s->next_volume_id)
			s->next_volume_id = id + 1;
	}
	closedir(d);
	if (r < 0)
		return r;
	if (s->vol_count)
		qsort(s->vols, s->vol_count, sizeof(*s->vols), compare_volume_ids);
	struct replay rp = {.buf = malloc(COPY_BUF_LEN)};
	if (!rp.buf)
		return -ENOMEM;
	for (size_t i = 0; i < s->vol_count && r == 0; i++) {
		struct volume *v = s->vols[i];
		rp.uncommitted = false;
		r = store_scan_volume(s, v, v->size, replay_record, &rp);
		/* What was uncommitted stays so before anything is served. */
		if (r == 0 && rp.uncommitted && fdatasync(v->fd) < 0)
			r = -errno;
	}
	free(rp.buf);
	if (r < 0)
		return r;
	/* Count in one pass, then remove the tombstones' entries: a remove
	 * during the walk can move an entry into a slot already passed. */
	size_t pos = 0, tombstones = 0;
	struct efs_chunk_slot *slot;
	for (; (slot = efs_chunk_index_next(&s->index, &pos)); pos++) {
		if (slot->loc.tombstone) {
			tombstones++;
			continue;
		}
		((struct volume *)slot->loc.volume)->live += RECORD_LEN(slot->loc.length);
		s->bytes += slot->loc.length;
	}
	if (tombstones) {
		uint8_t(*keys)[EFS_CHUNK_KEY_LEN] = malloc(tombstones * EFS_CHUNK_KEY_LEN);
		size_t n = 0;
		if (!keys)
			return -ENOMEM;
		for (pos = 0; (slot = efs_chunk_index_next(&s->index, &pos)); pos++)
			if (slot->loc.tombstone)
				memcpy(keys[n++], slot->key, EFS_CHUNK_KEY_LEN);
		for (size_t i = 0; i < n; i++)
			efs_chunk_index_remove(&s->index, keys[i]);
		free(keys);
	}
	return 0;
}

/* ---- the clean marker -------------------------------------------------- */

/* 0 when there is no valid clean marker: every volume gets checked. */
uint32_t store_read_clean_through(const struct efs_store *s)
{
	char text[16] = "";
	int fd = openat(s->vol_dir_fd, CLEAN_FILE, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t got = pread(fd, text, sizeof(text) - 1, 0);
	close(fd);
	uint64_t id = 0;
	for (ssize_t i = 0; i < got && text[i] != '\n'; i++) {
		if (text[i] < '0' || text[i] > '9' || id > UINT32_MAX)
			return 0;
		id = id * 10 + (uint64_t)(text[i] - '0');
	}
	return id > UINT32_MAX ? 0 : (uint32_t)id;
}

/* Replaces the clean marker durably (a new file renamed over it). */
int store_write_clean_through(struct efs_store *s, uint32_t id)
{
	char text[16];
	int len = snprintf(text, sizeof(text), "%u\n", id);
	int fd = openat(s->vol_dir_fd, CLEAN_FILE ".tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			0600);
	if (fd < 0)
		return -errno;
	int r = store_write_all(fd, text, (size_t)len, 0);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	close(fd);
	if (r == 0 && renameat(s->vol_dir_fd, CLEAN_FILE ".tmp", s->vol_dir_fd, CLEAN_FILE) < 0)
		r = -errno;
	if (r == 0 && fsync(s->vol_dir_fd) < 0)
		r = -errno;
	s->clean_through = r == 0 ? id : s->clean_through;
	return r;
}

/* At a clean close: everything written is synced, so no volume can hold a
 * torn record; the next open need not check them. Best effort: without
 * the marker, the next open checks this run's volumes. */
void store_mark_clean(struct efs_store *s)
{
	if (!s->opened || s->broken)
		return;
	for (size_t i = 0; i < s->vol_count; i++)
		if (s->vols[i]->id > s->clean_through && fdatasync(s->vols[i]->fd) < 0)
			return;
	if (s->next_volume_id - 1 > s->clean_through)
		store_write_clean_through(s, s->next_volume_id - 1);
}
