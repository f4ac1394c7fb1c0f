/* SPDX-License-Identifier: MIT */
/* store_internal.h - PRIVATE to the chunk store's files (store.c and
 * store_*.c). Nothing else in the worker includes it: the rest of the
 * worker sees the store through store.h only.
 *
 * What the store files share: the on-disk record constants, the store and
 * volume structures, and the internal functions one file defines and
 * another calls (all prefixed store_). Each function's full contract is
 * in the comment at its definition; the file that defines it is named
 * above each group.
 *
 * Locking: one mutex (s->lock) guards the index, the volume table, the
 * counts and the sync state. It is held across the small pwrites that must
 * be ordered with the index (a reserved region's header, a trailer, a
 * tombstone), never across payload I/O or fdatasync. "Under s->lock"
 * below means the caller holds it.
 */
#ifndef ECHOFS_WORKER_STORE_INTERNAL_H
#define ECHOFS_WORKER_STORE_INTERNAL_H

#include "echofs/common.h"
#include "echofs/ticker.h"
#include "worker/chunk_index.h"
#include "worker/store.h"

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* The record format (store.h has the layout, store_record.c the codec). */
#define HEADER_LEN 96
#define TRAILER_LEN 32
#define RECORD_MAGIC "EFSR"
#define COMMIT_MAGIC "EFSK"
/* Every format keeps the first 5 bytes of a header ("EFSR", version) and
 * the CRC32C of its first 92 bytes at 92, so that an older binary can
 * tell a newer format's record from damage and refuse the store
 * (store_header_decode: -EPROTONOSUPPORT) instead of taking it for a torn
 * tail, which replay would drop and compaction would then delete. */
#define FORMAT_VERSION 1
#define TYPE_CHUNK 1
#define TYPE_TOMBSTONE 2
#define RECORD_LEN(length) ((uint64_t)HEADER_LEN + (length) + TRAILER_LEN)

/* Payload I/O outside the read path goes in pieces of this size. */
#define COPY_BUF_LEN (1u << 20)

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
	/* Failed compactions of it in a row, and when (monotonic) it may be
	 * tried again: the wait doubles per failure (store_compact.c). */
	unsigned compact_failures;
	int64_t compact_retry_ms;
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
	/* Async waiters (store.h), in arrival order, and the committer thread
	 * that syncs for them (store_commit.c). */
	struct efs_store_waiter *waiters_head, *waiters_tail;
	pthread_cond_t waiters_cond;
	pthread_t committer;
	bool committer_running, committer_stop;
	bool compactor_running;
	struct efs_ticker compactor;
	int64_t compact_interval_ms;
	size_t iterate_slice; /* chunks efs_store_iterate copies per lock hold (at least) */
	/* Volumes up to this id hold no record torn by a crash: synced by a
	 * clean close, or checked at open (see CLEAN_FILE). */
	uint32_t clean_through;
	/* Set by the scan that met a newer format's record (the open is
	 * refused): its format version and volume, for the error. */
	unsigned newer_format;
	uint32_t newer_format_volume;
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

/* One record as store_scan_volume found it, handed to a scan_fn. */
struct scanned {
	uint64_t offset;
	struct record rec;
	bool committed; /* the trailer checks: the record counts */
	struct commit commit;
	unsigned char header[HEADER_LEN];
	unsigned char trailer[TRAILER_LEN];
};

typedef int (*scan_fn)(struct efs_store *s, struct volume *v, const struct scanned *r, void *ctx);

/* ---- store_record.c: the on-disk record and I/O helpers ---------------- */

/* Little-endian field of @n bytes at @p. */
uint64_t store_get_le(const unsigned char *p, int n);
/* Encodes @rec into HEADER_LEN bytes at @h; returns the header CRC. */
uint32_t store_header_encode(unsigned char *h, const struct record *rec);
/* 0, or -EBADMSG when the header does not check or names nothing valid,
 * or -EPROTONOSUPPORT when it is an intact header of a format version
 * above FORMAT_VERSION (a newer binary's; @rec untouched). */
int store_header_decode(const unsigned char *h, struct record *rec);
/* Encodes the TRAILER_LEN bytes that commit the header of CRC @header_crc. */
void store_trailer_encode(unsigned char *t, uint32_t header_crc, const struct commit *c);
/* 0, or -EBADMSG when @t does not commit the header of CRC @header_crc. */
int store_trailer_decode(const unsigned char *t, uint32_t header_crc, struct commit *c);
/* pwrite/pread all of @len at @offset; EINTR retried. 0 or -errno;
 * store_read_all gives -EBADMSG when the file ends first. */
int store_write_all(int fd, const void *data, size_t len, uint64_t offset);
int store_read_all(int fd, void *data, size_t len, uint64_t offset);
/* fsync of a directory. 0 or -errno. */
int store_fsync_dir(const char *path);
/* Makes the committed record at @offset (payload @length) dead on disk by
 * zeroing its commit magic; 0 when it was not committed. The caller syncs. */
int store_uncommit(struct volume *v, uint64_t offset, uint64_t length);

/* ---- store_volume.c: the volume set (all under s->lock) ----------------- */

void store_volume_path(const struct efs_store *s, uint32_t id, char *out, size_t size);
/* Drops a reference; the last one closes and frees the volume. */
void store_volume_unref(struct volume *v);
/* Counts a tombstone of range @first..@last held in @v. -ENOMEM. */
int store_volume_add_tomb(struct volume *v, uint32_t first, uint32_t last);
int store_volume_table_add(struct efs_store *s, struct volume *v);
void store_volume_table_remove(struct efs_store *s, struct volume *v);
/* Whether a volume other than @except with an id in [first, last] exists. */
bool store_volume_in_range(const struct efs_store *s, uint32_t first, uint32_t last,
			   const struct volume *except);
/* Bytes of @v that compaction would have to keep. */
uint64_t store_volume_needed(const struct efs_store *s, const struct volume *v);
/* Reserves @record_len bytes at the end of the active volume (starting one
 * if needed) and writes @header there; the caller gets a reference to
 * *vol and counts as one of its writers. */
int store_reserve(struct efs_store *s, const unsigned char *header, uint64_t record_len,
		  struct volume **vol, uint64_t *offset);

/* ---- store_commit.c: writes, tombstones, group commit ------------------- */

/* Under s->lock: puts @v on the dirty list; returns a ticket for
 * store_wait_durable(). */
uint64_t store_mark_dirty(struct efs_store *s, struct volume *v);
/* Takes s->lock itself: returns once a sync round covers @ticket, or the
 * error that broke the store. */
int store_wait_durable(struct efs_store *s, uint64_t ticket);
/* Hands @waiter, whose change has @ticket, to the committer thread. */
void store_wait_async(struct efs_store *s, uint64_t ticket, struct efs_store_waiter *waiter);
/* Start and stop of the committer thread (open and close). Stopping runs
 * the rounds the waiters still queued need before the thread ends. */
int store_committer_start(struct efs_store *s);
void store_committer_stop(struct efs_store *s);
/* Under s->lock: drops @key (at @loc) from the index and the counts. */
void store_index_drop(struct efs_store *s, const uint8_t *key, const struct efs_chunk_loc *loc);
/* Under s->lock: appends a tombstone for @chunk_id covering volumes
 * @first..@last; *ticket is for store_wait_durable(). */
int store_append_tombstone(struct efs_store *s, const char *chunk_id, uint32_t first, uint32_t last,
			   uint64_t *ticket);
/* Starts a write (@check_capacity: -ENOSPC past the capacity). */
int store_writer_begin(struct efs_store *s, const char *chunk_id, uint64_t length, uint32_t flags,
		       bool check_capacity, struct efs_store_writer **out);
/* Commits a write (@mtime_ms 0: now); with @wait returns once durable,
 * else *ticket is for store_wait_durable(). Frees the writer. */
int store_writer_commit(struct efs_store_writer *w, bool check_crc, uint32_t crc, int64_t mtime_ms,
			bool wait, uint64_t *ticket);

/* ---- store_recovery.c: scan, replay, clean marker, quarantine ----------- */

/* Takes s->lock itself: copies a record that failed its checks to
 * corrupt/, drops it from the index if it is still indexed there, and
 * uncommits it on disk. */
void store_quarantine(struct efs_store *s, const char *chunk_id, struct volume *v, uint64_t offset,
		      uint64_t length);
/* Calls @fn for every record in the chain of headers of @v up to @end. */
int store_scan_volume(struct efs_store *s, struct volume *v, uint64_t end, scan_fn fn, void *ctx);
/* At open: opens every volume and rebuilds the index and the counts. */
int store_load_volumes(struct efs_store *s);
/* The clean marker (volumes/clean): 0 when absent or invalid. */
uint32_t store_read_clean_through(const struct efs_store *s);
/* Replaces the clean marker durably; sets s->clean_through on success. */
int store_write_clean_through(struct efs_store *s, uint32_t id);
/* At a clean close: syncs and marks this run's volumes clean (best effort). */
void store_mark_clean(struct efs_store *s);

/* ---- store_compact.c ------------------------------------------------------ */

/* The compactor thread's body (efs_ticker). */
void store_compactor_main(struct efs_ticker *t, void *ctx);

/* ---- store_legacy.c ------------------------------------------------------- */

/* At open: imports data/chunks/ of the old layout, then removes it. */
int store_migrate_legacy(struct efs_store *s);

#endif
