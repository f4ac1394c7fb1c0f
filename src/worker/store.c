/* SPDX-License-Identifier: MIT */
/* store.c - the chunk store: checksummed records appended to volume files,
 * with group commit (one fdatasync covers every commit waiting for one).
 *
 * Why volumes: one file per chunk cost an inode allocation, a rename and
 * two syncs per replica; appends that share an fdatasync cost a fraction of
 * one sync each. The layout and the crash rules are in store.h.
 *
 * Locking: one mutex (s->lock) guards the index, the volume table, the
 * counts and the sync state. It is held across the small pwrites that must
 * be ordered with the index (a reserved region's header, a trailer, a
 * tombstone), never across payload I/O or fdatasync.
 */
#include "worker/store.h"
#include "echofs/hash.h"
#include "echofs/ticker.h"
#include "echofs/util.h"
#include "worker/chunk_index.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define HEADER_LEN 96
#define TRAILER_LEN 32
#define RECORD_MAGIC "EFSR"
#define COMMIT_MAGIC "EFSK"
#define FORMAT_VERSION 1
#define TYPE_CHUNK 1
#define TYPE_TOMBSTONE 2
#define RECORD_LEN(length) ((uint64_t)HEADER_LEN + (length) + TRAILER_LEN)

#define DEFAULT_VOLUME_BYTES (256ull << 20)
#define DEFAULT_COMPACT_INTERVAL_MS 2000
/* The active volume is sealed for compaction once at least half of it is
 * dead and it is at least this big (or the volume size, if smaller). */
#define SEAL_ACTIVE_MIN_BYTES (64ull << 10)
/* A sealed volume under volume_bytes / this is merged into the active one. */
#define SMALL_VOLUME_DIV 8
#define COPY_BUF_LEN (1u << 20)
/* volumes/clean: the decimal id of the highest volume known to hold no
 * record torn by a crash (written at open once the volumes were checked,
 * and at a clean close once they are synced). Only newer volumes are
 * checked at the next open. */
#define CLEAN_FILE "clean"

/* The layout before volumes: data/chunks/<2 hex>/<id>, a 32-byte header. */
#define LEGACY_HEADER_LEN 32
#define LEGACY_MAGIC "EFSC"

struct tomb_bytes {
	uint32_t first, last; /* the volume ids that may hold records it deletes */
	uint64_t bytes;
};

struct volume {
	uint32_t id;
	int fd;
	uint64_t size;	  /* end of the last region reserved */
	uint64_t live;	  /* bytes of the records the index points to */
	unsigned refs;	  /* the table, writers, readers, the dirty list, compaction */
	unsigned writers; /* regions reserved whose writer has not finished */
	bool sealed;	  /* takes no more records */
	bool dirty;	  /* on the dirty list: written since a sync round took it */
	bool stuck;	  /* a compaction of it failed: not tried again */
	struct volume *dirty_next;
	struct volume *sync_next; /* the list a sync round works through */
	/* Tombstones held here, by the range of volumes that may hold records
	 * each deletes: one is needed (counts as live) only while a volume of
	 * its range (other than this one) exists. */
	struct tomb_bytes *tombs;
	size_t tomb_count;
};

struct efs_store {
	char dir[PATH_MAX - 128]; /* leaves room for "/volumes/<id>.vol" */
	uint64_t capacity;
	uint64_t volume_bytes;
	pthread_mutex_t lock;
	pthread_cond_t synced;
	struct efs_chunk_index index;
	uint64_t bytes;	      /* payload bytes of indexed chunks */
	uint64_t reserved;    /* payload bytes of writes in flight */
	struct volume **vols; /* by increasing id */
	size_t vol_count, vol_alloc;
	struct volume *active; /* NULL: the next reservation starts a volume */
	uint32_t next_volume_id;
	uint64_t next_seq;
	int vol_dir_fd;
	/* Group commit: tickets are handed out after a trailer or tombstone is
	 * written; a sync round started after ticket t was handed out covers it. */
	struct volume *dirty;
	uint64_t sync_requested, sync_done;
	bool syncing;
	int broken; /* a failed fdatasync: writes refused from then on */
	bool compactor_running;
	struct efs_ticker compactor;
	int64_t compact_interval_ms;
	/* Volumes up to this id hold no record torn by a crash: synced by a
	 * clean close, or checked at open (see CLEAN_FILE). */
	uint32_t clean_through;
	bool opened; /* open succeeded: close may record a clean shutdown */
};

struct efs_store_writer {
	struct efs_store *s;
	struct volume *v;
	uint64_t offset; /* of the header */
	char chunk_id[65];
	uint32_t header_crc;
	uint64_t length;
	uint64_t written;
	uint32_t flags;
	uint32_t crc;
};

/* ---- record encoding ------------------------------------------------- */

struct record {
	uint8_t type;
	uint8_t flags;
	uint64_t length;
	/* Tombstones: the ids of the volumes that may hold records it deletes,
	 * first_volume..target_volume. */
	uint32_t target_volume;
	uint32_t first_volume;
	char chunk_id[65];
	uint32_t header_crc;
};

struct commit {
	uint32_t payload_crc;
	uint64_t seq;
	int64_t mtime_ms;
};

static void put_le(unsigned char *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* Header: "EFSR", version, type, flags, 1 reserved, length (le64), target
 * volume (le32), first volume (le32; 0 in tombstones written before it
 * existed), chunk id (64 ASCII), 4 reserved, CRC32C of the first 92 bytes.
 * Returns the header CRC. */
static uint32_t header_encode(unsigned char *h, const struct record *rec)
{
	memset(h, 0, HEADER_LEN);
	memcpy(h, RECORD_MAGIC, 4);
	h[4] = FORMAT_VERSION;
	h[5] = rec->type;
	h[6] = rec->flags;
	put_le(h + 8, rec->length, 8);
	put_le(h + 16, rec->target_volume, 4);
	put_le(h + 20, rec->first_volume, 4);
	memcpy(h + 24, rec->chunk_id, 64);
	uint32_t crc = efs_crc32c(0, h, 92);
	put_le(h + 92, crc, 4);
	return crc;
}

static int header_decode(const unsigned char *h, struct record *rec)
{
	uint32_t crc = (uint32_t)get_le(h + 92, 4);
	if (memcmp(h, RECORD_MAGIC, 4) != 0 || h[4] != FORMAT_VERSION ||
	    efs_crc32c(0, h, 92) != crc)
		return -EBADMSG;
	rec->type = h[5];
	rec->flags = h[6];
	rec->length = get_le(h + 8, 8);
	rec->target_volume = (uint32_t)get_le(h + 16, 4);
	/* An old tombstone named only the newest record's volume: assume any
	 * volume up to it may hold an older one. */
	rec->first_volume = (uint32_t)get_le(h + 20, 4);
	if (rec->first_volume == 0 && rec->target_volume)
		rec->first_volume = 1;
	memcpy(rec->chunk_id, h + 24, 64);
	rec->chunk_id[64] = '\0';
	rec->header_crc = crc;
	if ((rec->type != TYPE_CHUNK && rec->type != TYPE_TOMBSTONE) ||
	    rec->length > EFS_STORE_MAX_CHUNK || (rec->type == TYPE_TOMBSTONE && rec->length) ||
	    !efs_chunk_id_valid(rec->chunk_id))
		return -EBADMSG;
	return 0;
}

/* Trailer: payload CRC32C, "EFSK", sequence number (le64), commit time
 * (le64 ms), 4 reserved, CRC32C of the first 28 bytes seeded with the
 * header's CRC (so a trailer only ever commits its own header). */
static void trailer_encode(unsigned char *t, uint32_t header_crc, const struct commit *c)
{
	memset(t, 0, TRAILER_LEN);
	put_le(t, c->payload_crc, 4);
	memcpy(t + 4, COMMIT_MAGIC, 4);
	put_le(t + 8, c->seq, 8);
	put_le(t + 16, (uint64_t)c->mtime_ms, 8);
	put_le(t + 28, efs_crc32c(header_crc, t, 28), 4);
}

static int trailer_decode(const unsigned char *t, uint32_t header_crc, struct commit *c)
{
	if (memcmp(t + 4, COMMIT_MAGIC, 4) != 0 ||
	    efs_crc32c(header_crc, t, 28) != (uint32_t)get_le(t + 28, 4))
		return -EBADMSG;
	c->payload_crc = (uint32_t)get_le(t, 4);
	c->seq = get_le(t + 8, 8);
	c->mtime_ms = (int64_t)get_le(t + 16, 8);
	return 0;
}

/* ---- I/O helpers ----------------------------------------------------- */

static int write_all(int fd, const void *data, size_t len, uint64_t offset)
{
	const char *p = data;
	while (len > 0) {
		ssize_t w = pwrite(fd, p, len, (off_t)offset);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		len -= (size_t)w;
		offset += (uint64_t)w;
	}
	return 0;
}

/* -EBADMSG when the file ends first (a truncated volume). */
static int read_all(int fd, void *data, size_t len, uint64_t offset)
{
	char *p = data;
	while (len > 0) {
		ssize_t got = pread(fd, p, len, (off_t)offset);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (got == 0)
			return -EBADMSG;
		p += got;
		len -= (size_t)got;
		offset += (uint64_t)got;
	}
	return 0;
}

/* ---- volumes ---------------------------------------------------------- */

static int fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return r;
}

static void volume_path(const struct efs_store *s, uint32_t id, char *out, size_t size)
{
	snprintf(out, size, "%s/volumes/%010u.vol", s->dir, id);
}

/* Under s->lock. */
static void volume_unref(struct volume *v)
{
	if (--v->refs > 0)
		return;
	close(v->fd);
	free(v->tombs);
	free(v);
}

/* Under s->lock (or at open). */
static int volume_add_tomb(struct volume *v, uint32_t first, uint32_t last)
{
	for (size_t i = 0; i < v->tomb_count; i++) {
		if (v->tombs[i].first == first && v->tombs[i].last == last) {
			v->tombs[i].bytes += RECORD_LEN(0);
			return 0;
		}
	}
	struct tomb_bytes *p = realloc(v->tombs, (v->tomb_count + 1) * sizeof(*p));
	if (!p)
		return -ENOMEM;
	v->tombs = p;
	v->tombs[v->tomb_count++] = (struct tomb_bytes){first, last, RECORD_LEN(0)};
	return 0;
}

static int volume_table_add(struct efs_store *s, struct volume *v)
{
	if (s->vol_count == s->vol_alloc) {
		size_t grow = s->vol_alloc ? s->vol_alloc * 2 : 16;
		struct volume **p = realloc(s->vols, grow * sizeof(*p));
		if (!p)
			return -ENOMEM;
		s->vols = p;
		s->vol_alloc = grow;
	}
	s->vols[s->vol_count++] = v;
	return 0;
}

/* Whether a volume other than @except with an id in [first, last] exists:
 * a tombstone in @except for that range still shadows records there. A
 * volume counts until its unlink is durable (compact_volume). */
static bool volume_in_range(const struct efs_store *s, uint32_t first, uint32_t last,
			    const struct volume *except)
{
	for (size_t i = 0; i < s->vol_count; i++)
		if (s->vols[i] != except && s->vols[i]->id >= first && s->vols[i]->id <= last)
			return true;
	return false;
}

/* Bytes of @v that compaction would have to keep. */
static uint64_t volume_needed(const struct efs_store *s, const struct volume *v)
{
	uint64_t needed = v->live;
	for (size_t i = 0; i < v->tomb_count; i++)
		if (volume_in_range(s, v->tombs[i].first, v->tombs[i].last, v))
			needed += v->tombs[i].bytes;
	return needed;
}

static void volume_table_remove(struct efs_store *s, struct volume *v)
{
	for (size_t i = 0; i < s->vol_count; i++) {
		if (s->vols[i] == v) {
			memmove(&s->vols[i], &s->vols[i + 1], (s->vol_count - i - 1) * sizeof(v));
			s->vol_count--;
			return;
		}
	}
}

/* Starts a new active volume. Under s->lock (rare: once per volume_bytes).
 * The directory is fsync'd before any record in the file can be acknowledged. */
static int volume_start(struct efs_store *s)
{
	char path[PATH_MAX];
	struct volume *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->id = s->next_volume_id;
	volume_path(s, v->id, path, sizeof(path));
	v->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (v->fd < 0) {
		int r = -errno;
		free(v);
		return r;
	}
	v->refs = 1;
	int r = fsync(s->vol_dir_fd) < 0 ? -errno : volume_table_add(s, v);
	if (r < 0) {
		close(v->fd);
		unlink(path);
		free(v);
		return r;
	}
	s->next_volume_id++;
	s->active = v;
	return 0;
}

/* Takes a region of @record_len bytes at the end of the active volume and
 * writes @header there. Under s->lock: because the header is written before
 * any later region is reserved, a sync that covers a later record covers
 * this header too, so a scan can always follow the chain of headers. The
 * caller gets a reference to the volume and counts as one of its writers. */
static int reserve(struct efs_store *s, const unsigned char *header, uint64_t record_len,
		   struct volume **vol, uint64_t *offset)
{
	int r;
	if (s->broken)
		return s->broken;
	struct volume *v = s->active;
	if (v && v->size > 0 && v->size + record_len > s->volume_bytes) {
		v->sealed = true;
		s->active = v = NULL;
	}
	if (!v) {
		if ((r = volume_start(s)) < 0)
			return r;
		v = s->active;
	}
	if ((r = write_all(v->fd, header, HEADER_LEN, v->size)) < 0)
		return r;
	*offset = v->size;
	v->size += record_len;
	v->refs++;
	v->writers++;
	*vol = v;
	return 0;
}

/* Under s->lock: @v has bytes the next sync round must cover; returns the
 * caller's ticket for wait_durable(). */
static uint64_t mark_dirty(struct efs_store *s, struct volume *v)
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
static int wait_durable(struct efs_store *s, uint64_t ticket)
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
			volume_unref(list);
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

/* ---- the index and the counts (under s->lock) ------------------------ */

static void index_drop(struct efs_store *s, const uint8_t *key, const struct efs_chunk_loc *loc)
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

/* Makes a committed record dead on disk by overwriting its commit magic,
 * if the trailer at the place the index gives carries one. A replay then
 * treats it like a write cut before its commit: an older copy of the chunk
 * wins, or none. The caller syncs the volume (or accepts that a crash
 * undoes it). */
static int uncommit(struct volume *v, uint64_t offset, uint64_t length)
{
	static const unsigned char zero[4];
	unsigned char magic[4];
	uint64_t at = offset + HEADER_LEN + length + 4;
	int r = read_all(v->fd, magic, sizeof(magic), at);
	if (r == -EBADMSG || (r == 0 && memcmp(magic, COMMIT_MAGIC, 4) != 0))
		return 0; /* not there (truncated) or not committed */
	return r < 0 ? r : write_all(v->fd, zero, sizeof(zero), at);
}

/* Appends a tombstone for @chunk_id (whose committed records may be in
 * volumes @first..@last) and returns its sync ticket. Under s->lock. */
static int append_tombstone(struct efs_store *s, const char *chunk_id, uint32_t first,
			    uint32_t last, uint64_t *ticket)
{
	unsigned char rec[HEADER_LEN + TRAILER_LEN];
	struct record h = {.type = TYPE_TOMBSTONE, .target_volume = last, .first_volume = first};
	struct volume *v;
	uint64_t offset;

	efs_strlcpy(h.chunk_id, chunk_id, sizeof(h.chunk_id));
	uint32_t hcrc = header_encode(rec, &h);
	struct commit c = {.payload_crc = 0, .seq = s->next_seq++, .mtime_ms = efs_now_ms()};
	trailer_encode(rec + HEADER_LEN, hcrc, &c);
	int r = reserve(s, rec, sizeof(rec), &v, &offset);
	if (r < 0)
		return r;
	r = write_all(v->fd, rec + HEADER_LEN, TRAILER_LEN, offset + HEADER_LEN);
	if (r == 0)
		volume_add_tomb(v, first, last); /* ENOMEM: counts as dead (compacted early) */
	v->writers--;
	if (r == 0)
		*ticket = mark_dirty(s, v);
	volume_unref(v);
	return r;
}

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
			if (got <= 0 || write_all(out, buf, (size_t)got, pos) < 0)
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
static void quarantine(struct efs_store *s, const char *chunk_id, struct volume *v, uint64_t offset,
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
		if (uncommit(v, offset, length) == 0)
			mark_dirty(s, v);
		index_drop(s, key, loc);
	}
	pthread_mutex_unlock(&s->lock);
}

/* ---- scanning a volume ------------------------------------------------ */

struct scanned {
	uint64_t offset;
	struct record rec;
	bool committed; /* the trailer checks: the record counts */
	struct commit commit;
	unsigned char header[HEADER_LEN];
	unsigned char trailer[TRAILER_LEN];
};

typedef int (*scan_fn)(struct efs_store *s, struct volume *v, const struct scanned *r, void *ctx);

/* Follows the chain of headers from the start of @v up to @end. A region
 * whose trailer does not check (aborted, or cut by a crash) is skipped by
 * its length; a header that does not check ends the scan: what follows is
 * a torn tail (or damage) and counts as dead. */
static int scan_volume(struct efs_store *s, struct volume *v, uint64_t end, scan_fn fn, void *ctx)
{
	struct scanned r;
	for (uint64_t off = 0; off + HEADER_LEN + TRAILER_LEN <= end;) {
		int err = read_all(v->fd, r.header, HEADER_LEN, off);
		if (err == -EBADMSG)
			break;
		if (err < 0)
			return err;
		if (header_decode(r.header, &r.rec) < 0 || off + RECORD_LEN(r.rec.length) > end)
			break;
		err = read_all(v->fd, r.trailer, TRAILER_LEN, off + HEADER_LEN + r.rec.length);
		if (err < 0 && err != -EBADMSG)
			return err;
		r.committed =
		    err == 0 && trailer_decode(r.trailer, r.rec.header_crc, &r.commit) == 0;
		r.offset = off;
		if ((err = fn(s, v, &r, ctx)) < 0)
			return err;
		off += RECORD_LEN(r.rec.length);
	}
	return 0;
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
		int err = read_all(v->fd, buf, n, r->offset + HEADER_LEN + pos);
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
		if (err == -EBADMSG && (err = uncommit(v, r->offset, r->rec.length)) == 0) {
			rp->uncommitted = true;
			return 0;
		}
		if (err < 0)
			return err;
	}
	if (!chunk && volume_add_tomb(v, r->rec.first_volume, r->rec.target_volume) < 0)
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
static int load_volumes(struct efs_store *s)
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
		if (v->fd < 0 || fstat(v->fd, &st) < 0 || (r = volume_table_add(s, v)) < 0) {
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
		r = scan_volume(s, v, v->size, replay_record, &rp);
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

/* ---- writing ----------------------------------------------------------- */

static int writer_begin(struct efs_store *s, const char *chunk_id, uint64_t length, uint32_t flags,
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
	w->header_crc = header_encode(header, &rec);
	pthread_mutex_lock(&s->lock);
	int r = 0;
	if (check_capacity && s->capacity && s->bytes + s->reserved + length > s->capacity)
		r = -ENOSPC;
	else if ((r = reserve(s, header, RECORD_LEN(length), &w->v, &w->offset)) == 0)
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
	volume_unref(w->v);
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
 * being acknowledged. Without @wait, *ticket is for wait_durable(). */
static int writer_commit(struct efs_store_writer *w, bool check_crc, uint32_t crc, int64_t mtime_ms,
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
		trailer_encode(trailer, w->header_crc, &c);
		r = write_all(w->v->fd, trailer, TRAILER_LEN, w->offset + HEADER_LEN + w->length);
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
			uncommit(w->v, w->offset, w->length);
		if (r == 0)
			my_ticket = mark_dirty(s, w->v);
	}
	writer_finish(w);
	pthread_mutex_unlock(&s->lock);
	if (r < 0)
		return r;
	if (!wait) {
		*ticket = my_ticket;
		return 0;
	}
	return wait_durable(s, my_ticket);
}

int efs_store_write_begin(struct efs_store *s, const char *chunk_id, uint64_t length,
			  uint32_t flags, struct efs_store_writer **out)
{
	return writer_begin(s, chunk_id, length, flags, true, out);
}

int efs_store_write(struct efs_store_writer *w, const void *data, size_t len)
{
	if (len > w->length - w->written)
		return -E2BIG;
	int r = write_all(w->v->fd, data, len, w->offset + HEADER_LEN + w->written);
	if (r < 0)
		return r;
	w->crc = efs_crc32c(w->crc, data, len);
	w->written += len;
	return 0;
}

int efs_store_write_commit(struct efs_store_writer *w, bool check_crc, uint32_t crc)
{
	return writer_commit(w, check_crc, crc, 0, true, NULL);
}

void efs_store_write_abort(struct efs_store_writer *w)
{
	if (w)
		writer_drop(w);
}

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
	volume_unref(v);
	pthread_mutex_unlock(&s->lock);
}

/* The header at @loc must be the chunk's, as indexed. */
static int check_header(const unsigned char *h, const char *chunk_id,
			const struct efs_chunk_loc *loc, struct record *rec)
{
	if (header_decode(h, rec) < 0 || rec->type != TYPE_CHUNK ||
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
	unsigned char header[HEADER_LEN], trailer[TRAILER_LEN];
	struct efs_chunk_loc loc;
	struct record rec;
	struct commit c;

	int r = lookup(s, chunk_id, &loc);
	if (r < 0)
		return r;
	struct volume *v = loc.volume;
	efs_buf_reset(out);
	if ((r = efs_buf_reserve(out, loc.length)) < 0)
		goto out;
	/* One system call for header, payload and trailer. */
	struct iovec iov[3] = {
	    {header, HEADER_LEN}, {out->data, loc.length}, {trailer, TRAILER_LEN}};
	ssize_t got = preadv(v->fd, iov, 3, (off_t)loc.offset);
	if (got != (ssize_t)RECORD_LEN(loc.length)) {
		if ((r = read_all(v->fd, header, HEADER_LEN, loc.offset)) < 0 ||
		    (r = read_all(v->fd, out->data, loc.length, loc.offset + HEADER_LEN)) < 0 ||
		    (r = read_all(v->fd, trailer, TRAILER_LEN,
				  loc.offset + HEADER_LEN + loc.length)) < 0)
			goto out;
	}
	if ((r = check_header(header, chunk_id, &loc, &rec)) < 0 ||
	    (r = trailer_decode(trailer, rec.header_crc, &c)) < 0)
		goto out;
	if (efs_crc32c(0, out->data, loc.length) != c.payload_crc) {
		r = -EBADMSG;
		goto out;
	}
	out->len = loc.length;
	out->data[loc.length] = '\0';
	*flags = loc.flags;
	*crc = c.payload_crc;
out:
	if (r == -EBADMSG)
		quarantine(s, chunk_id, v, loc.offset, loc.length);
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
	if ((r = read_all(v->fd, header, HEADER_LEN, loc.offset)) == 0)
		r = check_header(header, chunk_id, &loc, &rec);
	if (r == -EBADMSG)
		quarantine(s, chunk_id, v, loc.offset, loc.length);
	put_volume(s, v);
	if (r < 0)
		return r;
	*length = loc.length;
	*flags = loc.flags;
	*mtime_ms = loc.mtime_ms;
	return 0;
}

int efs_store_delete(struct efs_store *s, const char *chunk_id, int64_t unmodified_since_ms)
{
	uint8_t key[EFS_CHUNK_KEY_LEN];
	uint64_t ticket = 0;
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
	else if ((r = append_tombstone(s, chunk_id, loc->first_volume, loc->last_volume,
				       &ticket)) == 0)
		index_drop(s, key, loc);
	pthread_mutex_unlock(&s->lock);
	return r < 0 ? r : wait_durable(s, ticket);
}

struct listed {
	uint8_t key[EFS_CHUNK_KEY_LEN];
	uint64_t length;
	int64_t mtime_ms;
};

int efs_store_iterate(struct efs_store *s, efs_store_iter_fn fn, void *ctx)
{
	char chunk_id[65];
	size_t count = 0, pos = 0;
	int r = 0;

	/* A snapshot (48 bytes a chunk), so @fn runs without the lock and may
	 * call back into the store (the chunk report deletes as it goes). */
	pthread_mutex_lock(&s->lock);
	struct listed *list = malloc(EFS_MAX(s->index.count, 1) * sizeof(*list));
	struct efs_chunk_slot *slot;
	while (list && (slot = efs_chunk_index_next(&s->index, &pos))) {
		memcpy(list[count].key, slot->key, EFS_CHUNK_KEY_LEN);
		list[count].length = slot->loc.length;
		list[count].mtime_ms = slot->loc.mtime_ms;
		count++;
		pos++;
	}
	pthread_mutex_unlock(&s->lock);
	if (!list)
		return -ENOMEM;
	for (size_t i = 0; i < count && r == 0; i++) {
		efs_hex_encode(list[i].key, EFS_CHUNK_KEY_LEN, chunk_id);
		r = fn(ctx, chunk_id, list[i].length, list[i].mtime_ms);
	}
	free(list);
	return r;
}

void efs_store_stats(struct efs_store *s, struct efs_store_stats *out)
{
	pthread_mutex_lock(&s->lock);
	out->chunk_count = s->index.count;
	out->bytes = s->bytes + s->reserved;
	pthread_mutex_unlock(&s->lock);
}

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
		keep = volume_in_range(s, r->rec.first_volume, r->rec.target_volume, v);
	}
	err = keep ? reserve(s, r->header, RECORD_LEN(len), &dest, &dest_off) : 0;
	pthread_mutex_unlock(&s->lock);
	if (!keep || err < 0)
		return err;

	uint32_t crc = 0;
	for (uint64_t pos = 0; pos < len && err == 0;) {
		size_t n = (size_t)EFS_MIN(len - pos, COPY_BUF_LEN);
		err = read_all(v->fd, cp->buf, n, r->offset + HEADER_LEN + pos);
		if (err == 0)
			err = write_all(dest->fd, cp->buf, n, dest_off + HEADER_LEN + pos);
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
			err = write_all(dest->fd, r->trailer, TRAILER_LEN,
					dest_off + HEADER_LEN + len);
		if (current && err == 0) {
			if (loc) {
				v->live -= RECORD_LEN(len);
				dest->live += RECORD_LEN(len);
				loc->volume = dest;
				loc->offset = dest_off;
				loc->last_volume = EFS_MAX(loc->last_volume, dest->id);
			} else {
				volume_add_tomb(dest, r->rec.first_volume, r->rec.target_volume);
			}
			cp->ticket = mark_dirty(s, dest);
		}
	}
	dest->writers--;
	volume_unref(dest);
	pthread_mutex_unlock(&s->lock);
	if (damaged) {
		quarantine(s, r->rec.chunk_id, v, r->offset, len);
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
	int r = cp.buf ? scan_volume(s, v, v->size, copy_record, &cp) : -ENOMEM;
	free(cp.buf);
	if (r == 0 && cp.ticket)
		r = wait_durable(s, cp.ticket);
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
	 * are kept) until its removal is durable; if that fails it stays,
	 * marked stuck by the caller, rather than live on disk untracked. It
	 * is sealed and holds nothing the index points at: nobody writes it. */
	volume_path(s, v->id, path, sizeof(path));
	if (unlink(path) < 0 || fsync(s->vol_dir_fd) < 0)
		return -errno;
	pthread_mutex_lock(&s->lock);
	volume_table_remove(s, v);
	volume_unref(v); /* the table's reference; readers may still hold theirs */
	pthread_mutex_unlock(&s->lock);
	return 1;
}

int efs_store_compact(struct efs_store *s)
{
	struct volume *pick = NULL;
	pthread_mutex_lock(&s->lock);
	struct volume *a = s->active;
	if (a && a->size >= EFS_MIN(SEAL_ACTIVE_MIN_BYTES, s->volume_bytes) &&
	    volume_needed(s, a) * 2 <= a->size) {
		a->sealed = true;
		s->active = NULL;
	}
	for (size_t i = 0; i < s->vol_count && !pick; i++) {
		struct volume *v = s->vols[i];
		/* Half dead, or small: every start seals the volume it was
		 * writing, and small ones are merged rather than kept for ever. */
		if (v->sealed && !v->stuck && v->writers == 0 &&
		    (volume_needed(s, v) * 2 <= v->size ||
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
	if (r < 0)
		pick->stuck = true;
	volume_unref(pick);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static void compactor_main(struct efs_ticker *t, void *ctx)
{
	struct efs_store *s = ctx;
	while (!efs_ticker_wait(t, s->compact_interval_ms)) {
		/* One volume at a time, until none qualifies or the store closes. */
		while (efs_store_compact(s) > 0 && !efs_ticker_wait(t, 0))
			;
	}
}

/* ---- the layout before volumes ------------------------------------------ */

static int legacy_header_decode(const unsigned char *h, uint32_t *flags, uint64_t *length,
				uint32_t *crc)
{
	if (memcmp(h, LEGACY_MAGIC, 4) != 0 || h[4] != 1 ||
	    efs_crc32c(0, h, 28) != (uint32_t)get_le(h + 28, 4))
		return -EBADMSG;
	*flags = h[5];
	*length = get_le(h + 8, 8);
	*crc = (uint32_t)get_le(h + 16, 4);
	return *length > EFS_STORE_MAX_CHUNK ? -EBADMSG : 0;
}

/* Appends one chunk file of the old layout as a record (its write time
 * kept). -EBADMSG when the file is damaged: the caller moves it to
 * corrupt/. */
static int import_legacy(struct efs_store *s, int dir_fd, const char *name, char *buf,
			 uint64_t *ticket)
{
	unsigned char header[LEGACY_HEADER_LEN];
	struct efs_store_writer *w = NULL;
	struct stat st;
	uint64_t length;
	uint32_t flags, crc;
	int r;

	int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if ((r = read_all(fd, header, LEGACY_HEADER_LEN, 0)) < 0 ||
	    (r = legacy_header_decode(header, &flags, &length, &crc)) < 0)
		goto out;
	if ((uint64_t)st.st_size != length + LEGACY_HEADER_LEN) {
		r = -EBADMSG;
		goto out;
	}
	if ((r = writer_begin(s, name, length, flags, false, &w)) < 0)
		goto out;
	for (uint64_t pos = 0; pos < length && r == 0;) {
		size_t n = (size_t)EFS_MIN(length - pos, COPY_BUF_LEN);
		if ((r = read_all(fd, buf, n, LEGACY_HEADER_LEN + pos)) == 0)
			r = efs_store_write(w, buf, n);
		pos += n;
	}
	if (r < 0) {
		efs_store_write_abort(w);
		goto out;
	}
	r = writer_commit(w, true, crc,
			  (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000, false,
			  ticket);
out:
	close(fd);
	return r;
}

/* A data directory of the old layout (data/chunks/<2 hex>/<id>) is moved
 * into volumes at open: every file appended, the volume synced once, then
 * the files removed, and the removals synced before the store serves: a
 * file that came back after a crash would be imported again with a new
 * sequence number, over a delete made in between. A crash before that
 * imports them again (the copies are identical; the newest wins). Damaged
 * files go to corrupt/. */
static int migrate_legacy(struct efs_store *s)
{
	char path[PATH_MAX], dest[PATH_MAX];
	uint64_t ticket = 0;
	int r = 0;

	snprintf(path, sizeof(path), "%s/chunks", s->dir);
	if (access(path, F_OK) < 0)
		return 0;
	char *buf = malloc(COPY_BUF_LEN);
	if (!buf)
		return -ENOMEM;
	for (int pass = 0; pass < 2 && r == 0; pass++) {
		for (int i = 0; i < 256 && r == 0; i++) {
			snprintf(path, sizeof(path), "%s/chunks/%02x", s->dir, i);
			DIR *d = opendir(path);
			if (!d)
				continue;
			struct dirent *e;
			while (r == 0 && (e = readdir(d))) {
				if (pass == 1 || strncmp(e->d_name, ".tmp-", 5) == 0) {
					if (e->d_name[0] != '.' ||
					    strncmp(e->d_name, ".tmp-", 5) == 0)
						unlinkat(dirfd(d), e->d_name, 0);
					continue;
				}
				if (!efs_chunk_id_valid(e->d_name))
					continue;
				r = import_legacy(s, dirfd(d), e->d_name, buf, &ticket);
				if (r == -EBADMSG || r == -EPROTO) {
					snprintf(dest, sizeof(dest), "%s/corrupt/%.64s", s->dir,
						 e->d_name);
					renameat(dirfd(d), e->d_name, AT_FDCWD, dest);
					r = 0;
				}
			}
			if (pass == 1 && r == 0 && fsync(dirfd(d)) < 0)
				r = -errno;
			closedir(d);
			if (pass == 1 && r == 0)
				rmdir(path);
		}
		/* Everything imported is durable before any file goes. */
		if (pass == 0 && r == 0 && ticket)
			r = wait_durable(s, ticket);
	}
	free(buf);
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "%s/chunks", s->dir);
	rmdir(path);
	return fsync_dir(s->dir);
}

/* ---- open and close ---------------------------------------------------- */

/* 0 when there is no valid clean marker: every volume gets checked. */
static uint32_t read_clean_through(const struct efs_store *s)
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
static int write_clean_through(struct efs_store *s, uint32_t id)
{
	char text[16];
	int len = snprintf(text, sizeof(text), "%u\n", id);
	int fd = openat(s->vol_dir_fd, CLEAN_FILE ".tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			0600);
	if (fd < 0)
		return -errno;
	int r = write_all(fd, text, (size_t)len, 0);
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
static void mark_clean(struct efs_store *s)
{
	if (!s->opened || s->broken)
		return;
	for (size_t i = 0; i < s->vol_count; i++)
		if (s->vols[i]->id > s->clean_through && fdatasync(s->vols[i]->fd) < 0)
			return;
	if (s->next_volume_id - 1 > s->clean_through)
		write_clean_through(s, s->next_volume_id - 1);
}

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
	efs_chunk_index_init(&s->index);
	s->vol_dir_fd = -1;
	s->capacity = opt->capacity_bytes;
	s->volume_bytes = opt->volume_bytes ? opt->volume_bytes : DEFAULT_VOLUME_BYTES;
	s->compact_interval_ms = opt->compact_interval_ms;
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
	if ((r = fsync_dir(dir)) < 0)
		goto fail;
	s->clean_through = read_clean_through(s);
	if ((r = load_volumes(s)) < 0)
		goto fail;
	/* This run's volumes get ids above the marker; the checked ones are
	 * at or under it from now on. */
	if (s->next_volume_id <= s->clean_through)
		s->next_volume_id = s->clean_through + 1;
	if (s->next_volume_id - 1 > s->clean_through &&
	    (r = write_clean_through(s, s->next_volume_id - 1)) < 0)
		goto fail;
	if ((r = migrate_legacy(s)) < 0)
		goto fail;
	if (s->compact_interval_ms > 0) {
		if ((r = efs_ticker_start(&s->compactor, compactor_main, s)) < 0)
			goto fail;
		s->compactor_running = true;
	}
	s->opened = true;
	*out = s;
	return 0;
fail:
	snprintf(err, errlen, "cannot open the chunk store in %s: %s", dir, strerror(-r));
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
	mark_clean(s);
	/* No writer is left (the caller stopped serving); a last sync round
	 * may hold dirty volumes: drop those references too. */
	while (s->dirty) {
		struct volume *next = s->dirty->dirty_next;
		volume_unref(s->dirty);
		s->dirty = next;
	}
	for (size_t i = 0; i < s->vol_count; i++)
		volume_unref(s->vols[i]);
	free(s->vols);
	if (s->vol_dir_fd >= 0)
		close(s->vol_dir_fd);
	efs_chunk_index_release(&s->index);
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
