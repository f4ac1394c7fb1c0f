/* SPDX-License-Identifier: MIT */
/* chunker.h - cuts a byte stream of unknown length into CHUNK_SIZE chunks.
 *
 * Every chunk but the last is exactly chunk_size bytes; the last holds the
 * rest (1..chunk_size bytes); an empty stream has no chunks. At most one
 * chunk is buffered; whole chunks found in the input are passed on
 * without a copy.
 */
#ifndef ECHOFS_MASTER_CHUNKER_H
#define ECHOFS_MASTER_CHUNKER_H

#include "echofs/buf.h"

#include <stdint.h>

/* Receives chunk number @index (0-based). Return 0 or a negative errno,
 * which stops the chunker and is returned by feed/finish. */
typedef int (*efs_chunk_fn)(void *ctx, uint64_t index, const char *data, size_t len);

struct efs_chunker {
	size_t chunk_size;
	struct efs_buf pending; /* the incomplete chunk */
	uint64_t next_index;
	uint64_t total_bytes;
	efs_chunk_fn emit;
	void *ctx;
};

void efs_chunker_init(struct efs_chunker *c, size_t chunk_size, efs_chunk_fn emit, void *ctx);
/* Adds bytes; emits every chunk they complete. */
int efs_chunker_feed(struct efs_chunker *c, const char *data, size_t len);
/* The stream ended: emits the last, partial chunk if there is one. */
int efs_chunker_finish(struct efs_chunker *c);
void efs_chunker_release(struct efs_chunker *c);

#endif
