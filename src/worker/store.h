/* SPDX-License-Identifier: MIT */
/* store.h - the worker's chunk store.
 *
 * A narrow interface (write, get, stat, delete, iterate, stats) so the
 * inside can change (the performance work turns small writes into appends
 * to volume files) without touching the routes.
 *
 * Today each chunk is one file, data/chunks/<2 hex>/<chunk id>: a 32-byte
 * header (magic, version, flags, payload length, CRC32C of the payload,
 * CRC32C of the header) and the payload, the chunk as stored (gzip or
 * raw). A write goes to a temporary file, is fsync'd, renamed into place
 * and the directory fsync'd before it is acknowledged: after a crash a
 * chunk is either whole or absent. Every read checks both CRCs; a chunk
 * that fails is moved to data/corrupt/ (so it reads as absent and repair
 * can replace it) and reported as -EBADMSG.
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

/* Opens (creating) the store under @dir; removes leftover temporary files
 * and counts what it holds. @capacity_bytes caps the payload bytes it will
 * hold (0: no cap but the disk). On failure writes one line to @err. */
int efs_store_open(const char *dir, uint64_t capacity_bytes, struct efs_store **out, char *err,
		   size_t errlen);
void efs_store_close(struct efs_store *s);

/* Starts writing chunk @chunk_id of exactly @length payload bytes.
 * -EINVAL (bad id or length), -ENOSPC (over capacity), -errno. */
int efs_store_write_begin(struct efs_store *s, const char *chunk_id, uint64_t length,
			  uint32_t flags, struct efs_store_writer **out);
/* Appends payload bytes. -E2BIG past the announced length. */
int efs_store_write(struct efs_store_writer *w, const void *data, size_t len);
/* Makes the chunk durable and visible, then frees the writer. With
 * @check_crc, the payload's CRC32C must equal @crc. -EPROTO (short),
 * -EBADMSG (CRC mismatch), -errno. The writer is freed on every outcome. */
int efs_store_write_commit(struct efs_store_writer *w, bool check_crc, uint32_t crc);
/* Drops an unfinished write; NULL accepted. */
void efs_store_write_abort(struct efs_store_writer *w);

/* Reads and verifies a chunk's payload into @out (reset first; its cap must
 * allow the payload). -ENOENT, -EBADMSG (corrupt: quarantined), -errno. */
int efs_store_get(struct efs_store *s, const char *chunk_id, struct efs_buf *out,
		  uint32_t *flags);
/* Length, flags and last write time (Unix ms) without reading the payload. */
int efs_store_stat(struct efs_store *s, const char *chunk_id, uint64_t *length, uint32_t *flags,
		   int64_t *mtime_ms);
/* Deletes a chunk. With @unmodified_since_ms > 0 a chunk written at or
 * after that time is kept (-EBUSY): the collector's guard against removing a
 * chunk that was stored again after it decided. -ENOENT when absent. */
int efs_store_delete(struct efs_store *s, const char *chunk_id, int64_t unmodified_since_ms);

/* Calls @fn for every chunk (in no particular order); a negative return
 * stops the walk and is returned. */
typedef int (*efs_store_iter_fn)(void *ctx, const char *chunk_id, uint64_t length,
				 int64_t mtime_ms);
int efs_store_iterate(struct efs_store *s, efs_store_iter_fn fn, void *ctx);

void efs_store_stats(struct efs_store *s, struct efs_store_stats *out);

#endif
