/* SPDX-License-Identifier: MIT */
/* store.h - the worker's chunk store.
 *
 * A narrow interface (write, get, stat, delete, iterate, stats) so the
 * inside can change without touching the routes.
 *
 * Layout: data/volumes/<10-digit id>.vol, files that only grow by appends
 * while active. Each holds records back to back:
 *
 *   header (96 bytes)  "EFSR", version, type (chunk or tombstone), flags,
 *                      payload length, for a tombstone the range of
 *                      volumes (first..last id) that may hold records it
 *                      deletes, the chunk id, CRC32C of the header
 *   payload            the chunk as stored (gzip or raw); none for a tombstone
 *   trailer (32 bytes) CRC32C of the payload, "EFSK", sequence number
 *                      (at most INT64_MAX: a larger one does not commit),
 *                      commit time (ms), CRC32C of the trailer seeded with
 *                      the header's CRC
 *
 * A write reserves its region at the end of the active volume and writes
 * the header at once; the payload is written where it goes as it arrives
 * (never held whole); commit writes the trailer, points the in-memory index
 * at the record and waits for a group fdatasync that covers it: concurrent
 * commits share one sync. A region without a valid trailer (aborted, or cut
 * by a crash) is dead. At open every volume is read header by header (a
 * header that does not check ends that volume: a torn tail) and the index
 * rebuilt: for each chunk the committed record with the highest sequence
 * number wins, a tombstone meaning deleted. New records always go to a new
 * volume after an open; a volume is sealed past volume_bytes.
 *
 * The parts of a record reach the disk in any order before its sync, so
 * after a crash a trailer may be there without all of its payload. The
 * file volumes/clean holds the highest volume id known free of such torn
 * records (written at open, and at a clean close after a last sync); at
 * open the payload CRC of every record in a newer volume is checked, and a
 * torn one is uncommitted on disk (its commit magic zeroed, synced), so an
 * older acknowledged copy wins.
 *
 * Delete appends a tombstone (synced like a write) naming the range of
 * volumes that may hold a committed record of the chunk: every copy, the
 * older ones included (a rewrite appends; commits may land out of volume
 * order). A compactor thread copies the live records of sealed volumes
 * that are at least half dead, or smaller than an eighth of volume_bytes
 * (left by restarts), into the active volume (verbatim, so replay order is
 * kept), syncs, then unlinks the old file (and forgets it once that is
 * durable); an active volume that is half dead is sealed for it. A
 * tombstone is kept while a volume of its range other than its own
 * exists; a copied chunk is committed only if the index still points at
 * the original. Every read checks the header, the trailer and the payload
 * CRC; a record that fails is copied to data/corrupt/<id>, dropped from
 * the index and uncommitted on disk (so it reads as absent and repair can
 * replace it; an older good copy, if any, is served again after a
 * restart) and reported as -EBADMSG. A data directory of the layout before volumes
 * (data/chunks/<2 hex>/<id>) is imported at open and then removed.
 */
#ifndef ECHOFS_WORKER_STORE_H
#define ECHOFS_WORKER_STORE_H

#include "echofs/buf.h"
#include "echofs/common.h"

#include <stdbool.h>
#include <stdint.h>

struct efs_store;
struct efs_store_writer;

#define EFS_STORE_GZIP 0x1 /* the payload is gzip */
#define EFS_STORE_MAX_CHUNK (65 * 1024 * 1024) /* largest payload accepted */

struct efs_store_stats {
	uint64_t chunk_count;
	uint64_t bytes; /* payload bytes held, plus what writes in flight reserved */
};

struct efs_store_options {
	uint64_t capacity_bytes;     /* payload bytes it will hold; 0: no cap but the disk */
	uint64_t volume_bytes;	     /* a volume is sealed past this; 0: 256 MiB */
	int64_t compact_interval_ms; /* compactor thread period; 0: no thread */
	size_t iterate_slice;	     /* efs_store_iterate's chunks per lock hold; 0: 4096 */
};

/* Opens (creating) the store under @dir: rebuilds the index from the
 * volumes and imports chunk files of the old layout. On failure writes one
 * line to @err; -EINVAL when a volume holds a record of a format newer
 * than this binary's (written by a newer worker: nothing is changed on
 * disk, the caller must not start). */
int efs_store_open_with(const char *dir, const struct efs_store_options *opt,
			struct efs_store **out, char *err, size_t errlen);
/* The same with 256 MiB volumes and a compaction step every 2 s. */
int efs_store_open(const char *dir, uint64_t capacity_bytes, struct efs_store **out, char *err,
		   size_t errlen);
/* Stops the compactor, runs the sync round every async waiter still
 * waits for (see struct efs_store_waiter) and frees the store; no call may
 * be in flight. */
void efs_store_close(struct efs_store *s);

/* Starts writing chunk @chunk_id of exactly @length payload bytes.
 * -EINVAL (bad id or length), -ENOSPC (over capacity), -errno. */
int efs_store_write_begin(struct efs_store *s, const char *chunk_id, uint64_t length,
			  uint32_t flags, struct efs_store_writer **out);
/* Appends payload bytes. -E2BIG past the announced length. */
int efs_store_write(struct efs_store_writer *w, const void *data, size_t len);
/* Makes the chunk visible and durable (group commit), then frees the writer. With
 * @check_crc, the payload's CRC32C must equal @crc. -EPROTO (short),
 * -EBADMSG (CRC mismatch), -errno. The writer is freed on every outcome. */
int efs_store_write_commit(struct efs_store_writer *w, bool check_crc, uint32_t crc);
/* Waiting for durability without a thread: a caller-owned node handed to
 * the *_async calls below. done(waiter, result) is called exactly once,
 * with 0 once the change is durable or a negative errno (the same codes as
 * the blocking call): on the calling thread, before the call returns, when
 * the change failed before it had to be synced; otherwise on the store's
 * committer thread, which runs sync rounds for every waiter at once (group
 * commit, shared with the blocking calls). done must not block: the next
 * round waits for it. The node must stay valid until done is called. */
struct efs_store_waiter {
	void (*done)(struct efs_store_waiter *waiter, int result);
	uint64_t ticket;		      /* private to the store */
	struct efs_store_waiter *next; /* private to the store */
};

/* efs_store_write_commit without waiting: the writer is freed before this
 * returns, @waiter->done says when (and whether) the chunk is durable. */
void efs_store_write_commit_async(struct efs_store_writer *w, bool check_crc, uint32_t crc,
				  struct efs_store_waiter *waiter);
/* A batch of writes under one group commit (POST /chunks/batch): writes
 * a whole payload held in memory and commits it like
 * efs_store_write_commit, without waiting; 0 with *@ticket for
 * efs_store_wait / efs_store_wait_async (the chunk is visible at once,
 * durable only once that wait ends), or the codes of begin and commit
 * (nothing committed). Waiting once for the largest ticket of several
 * writes covers them all: one fdatasync round for the lot. */
int efs_store_put_nowait(struct efs_store *s, const char *chunk_id, const void *data,
			 size_t len, uint32_t flags, bool check_crc, uint32_t crc,
			 uint64_t *ticket);
/* Returns once every write whose ticket is at most @ticket is durable: 0,
 * or the failed sync's -errno (the store then refuses writes). */
int efs_store_wait(struct efs_store *s, uint64_t ticket);
/* efs_store_wait without blocking: @waiter->done gets its result (see
 * struct efs_store_waiter). */
void efs_store_wait_async(struct efs_store *s, uint64_t ticket, struct efs_store_waiter *waiter);
/* Drops an unfinished write; NULL accepted. */
void efs_store_write_abort(struct efs_store_writer *w);

/* Reads and verifies a chunk's payload into @out (reset first; its cap must
 * allow the payload). -ENOENT, -EBADMSG (corrupt: quarantined), -errno. */
int efs_store_get(struct efs_store *s, const char *chunk_id, struct efs_buf *out,
		  uint32_t *flags);
/* efs_store_get that also gives the payload's CRC32C, the one it verified
 * against the record's trailer (so a caller need not compute it again).
 * @crc is set only on success. */
int efs_store_get_crc(struct efs_store *s, const char *chunk_id, struct efs_buf *out,
		      uint32_t *flags, uint32_t *crc);

/* A verified payload, as efs_store_get_payload hands it out. */
struct efs_store_payload {
	uint32_t flags;
	uint32_t crc;	 /* the payload's CRC32C, as verified */
	uint64_t length; /* payload bytes */
	/* -1: the payload is in the caller's buffer. Else the caller's own
	 * descriptor (O_CLOEXEC; the caller closes it) of the volume file,
	 * the payload at @offset: those bytes stay as verified while it is
	 * open, even when compaction moves the chunk and unlinks the file. */
	int fd;
	uint64_t offset;
};

/* Reads and verifies a chunk (header, trailer, payload CRC32C) like
 * efs_store_get_crc, for sending it. A payload shorter than @by_fd_min is
 * read into @buf (reset first; its cap must allow the payload), out->fd -1.
 * A longer one is verified through a small buffer, not kept (@buf only
 * reset): out->fd and out->offset say where to send it from (sendfile), a
 * second read of the same page-cache pages. UINT64_MAX: always in @buf.
 * -ENOENT, -EBADMSG (corrupt: quarantined), -EMFILE, -errno; @out untouched
 * on failure. */
int efs_store_get_payload(struct efs_store *s, const char *chunk_id, uint64_t by_fd_min,
			  struct efs_buf *buf, struct efs_store_payload *out);
/* Bytes of a payload efs_store_verify (and efs_store_get_payload by
 * descriptor) reads at a time: what checking a chunk holds in memory,
 * whatever its size. */
#define EFS_STORE_VERIFY_PIECE (256u << 10)
/* Checks a chunk as a read does (header, trailer, payload CRC32C) without
 * keeping it: the payload is read EFS_STORE_VERIFY_PIECE bytes at a time
 * into one buffer of at most that size. 0 with its payload length in
 * *@length, -ENOENT, -EBADMSG (corrupt: quarantined, as efs_store_get
 * does), -ENOMEM, -errno; *@length untouched on failure. */
int efs_store_verify(struct efs_store *s, const char *chunk_id, uint64_t *length);
/* Length, flags and last write time (Unix ms) without reading the payload. */
int efs_store_stat(struct efs_store *s, const char *chunk_id, uint64_t *length, uint32_t *flags,
		   int64_t *mtime_ms);
/* Deletes a chunk. With @unmodified_since_ms > 0 a chunk written at or
 * after that time is kept (-EBUSY): the collector's guard against removing a
 * chunk that was stored again after it decided. -ENOENT when absent. */
int efs_store_delete(struct efs_store *s, const char *chunk_id, int64_t unmodified_since_ms);
/* Deletes a chunk only if this worker last wrote it more than @for_ms ago
 * by its own clock (the time stamped at commit): -EBUSY otherwise,
 * -ENOENT when absent. The collector's form of the guard above: it sends a
 * duration, not a time of its own clock, so no skew between the master
 * and this worker can make a fresh copy look old. */
int efs_store_delete_unmodified_for(struct efs_store *s, const char *chunk_id, int64_t for_ms);
/* The two deletes without waiting for the tombstone to be durable:
 * @waiter->done gets their result (see struct efs_store_waiter). */
void efs_store_delete_async(struct efs_store *s, const char *chunk_id,
			    int64_t unmodified_since_ms, struct efs_store_waiter *waiter);
void efs_store_delete_unmodified_for_async(struct efs_store *s, const char *chunk_id,
					   int64_t for_ms, struct efs_store_waiter *waiter);

/* Calls @fn for every chunk, without the store's lock (@fn may call the
 * store), in key order; a negative return stops the walk and is returned.
 * The walk copies a slice of ids at a time under the lock, so the store
 * serves writes and reads all along: a chunk present for the whole walk is
 * listed once; one written or deleted during the walk may or may not be.
 * -ENOMEM. */
typedef int (*efs_store_iter_fn)(void *ctx, const char *chunk_id, uint64_t length,
				 int64_t mtime_ms);
int efs_store_iterate(struct efs_store *s, efs_store_iter_fn fn, void *ctx);

void efs_store_stats(struct efs_store *s, struct efs_store_stats *out);

/* One compaction step: reclaims at most one volume (seals a half-dead
 * active volume first). 1 when a volume file was removed, 0 when none
 * qualified, -errno (that volume is tried again after a backoff: 1 s,
 * doubling per failure in a row, at most 5 min). The compactor thread
 * calls it; tests call it directly. */
int efs_store_compact(struct efs_store *s);

struct efs_store_volume_stats {
	uint64_t volume_count;
	uint64_t file_bytes; /* the volumes' sizes: what the disk holds */
	uint64_t live_bytes; /* of records the index points at (headers included) */
};
void efs_store_volume_stats(struct efs_store *s, struct efs_store_volume_stats *out);

#endif
