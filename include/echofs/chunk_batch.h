/* SPDX-License-Identifier: MIT */
/* chunk_batch.h - the body of a batched replica write (POST /chunks/batch
 * on a worker): several small chunks in one request, so that the master
 * makes one HTTP exchange per worker for the small chunks of several
 * concurrent uploads and the worker covers them all with one group commit
 * (docs/API.md, "Worker protocol").
 *
 * The frame, every integer little-endian:
 *
 *   head (12 bytes)   "EFSB", version (1 byte, 1), 3 zero bytes, item count (u32)
 *   per item (80 bytes + payload)
 *                     chunk id (64 lowercase hex digits), flags (1 byte:
 *                     EFS_CHUNK_BATCH_GZIP, EFS_CHUNK_BATCH_CRC), 3 zero
 *                     bytes, CRC32C of the payload (u32; checked only with
 *                     EFS_CHUNK_BATCH_CRC), payload length (u32), 4 zero
 *                     bytes, then the payload (the chunk as stored, as the single PUT sends it)
 *
 * Caps: 1 to EFS_CHUNK_BATCH_MAX_ITEMS items, each payload at most
 * EFS_CHUNK_BATCH_MAX_ITEM bytes, the whole frame at most
 * EFS_CHUNK_BATCH_MAX_BODY bytes, nothing after the last item.
 */
#ifndef ECHOFS_CHUNK_BATCH_H
#define ECHOFS_CHUNK_BATCH_H

#include "echofs/buf.h"
#include "echofs/common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EFS_CHUNK_BATCH_MAGIC "EFSB"
#define EFS_CHUNK_BATCH_ID_LEN 64 /* a chunk id: SHA-256 in lowercase hex */
#define EFS_CHUNK_BATCH_VERSION 1
#define EFS_CHUNK_BATCH_HEAD_LEN 12
#define EFS_CHUNK_BATCH_ITEM_HEAD_LEN 80
#define EFS_CHUNK_BATCH_MAX_ITEMS 64
#define EFS_CHUNK_BATCH_MAX_ITEM (64 * 1024)
#define EFS_CHUNK_BATCH_MAX_BODY (1024 * 1024)

#define EFS_CHUNK_BATCH_GZIP 0x1 /* the payload is gzip (X-Chunk-Encoding: gzip) */
#define EFS_CHUNK_BATCH_CRC 0x2	 /* @crc is to be checked (X-Chunk-CRC32C) */

/* One item of a parsed frame; @payload points into the parsed body. */
struct efs_chunk_batch_item {
	char chunk_id[EFS_CHUNK_BATCH_ID_LEN + 1];
	uint8_t flags;
	uint32_t crc;
	const uint8_t *payload;
	uint32_t length;
};

/* Parses @body (@len bytes) into @items (room for
 * EFS_CHUNK_BATCH_MAX_ITEMS) and *@count. Nothing is checked against the
 * payloads' CRCs here (the store does, as for a single PUT). 0, or
 * -EBADMSG (malformed: bad magic, version, reserved bytes, flags or chunk
 * id, a count of 0 or over the cap, an item over its cap, truncated, bytes
 * after the last item) or -E2BIG (@len over EFS_CHUNK_BATCH_MAX_BODY), with
 * a reason in @why (one line, for the client's error message). @items and
 * *@count are untouched on failure. */
int efs_chunk_batch_parse(const void *body, size_t len, struct efs_chunk_batch_item *items,
			  size_t *count, char *why, size_t why_len);

/* Bytes a frame of @count items with @payload_bytes payload bytes in all
 * takes. */
size_t efs_chunk_batch_size(size_t count, size_t payload_bytes);

/* Starts a frame in @out (reset first) announcing @count items; the caller
 * then appends exactly @count items. -EINVAL (count out of range),
 * -ENOMEM or -E2BIG (@out's cap). */
int efs_chunk_batch_begin(struct efs_buf *out, size_t count);
/* Appends one item. -EINVAL (bad chunk id, flags or a payload over
 * EFS_CHUNK_BATCH_MAX_ITEM), -ENOMEM or -E2BIG (@out's cap). */
int efs_chunk_batch_add(struct efs_buf *out, const char *chunk_id, uint8_t flags, uint32_t crc,
			const void *payload, size_t length);

#endif
