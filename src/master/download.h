/* SPDX-License-Identifier: MIT */
/* download.h - streams a byte range of a file, chunk by chunk.
 *
 * A reader holds the chunk being handed out and, for ranges of more than
 * one chunk, the next one, which a helper thread of the reader fetches
 * while the current one is sent (each decoded and verified by the chunk backend,
 * or taken from the master's chunk cache),
 * and the chunk list in batches: a download of any size needs about four
 * chunks of memory (two chunks, each with its stored bytes). The HTTP
 * layer pulls bytes with efs_reader_read, or takes a range that fits in
 * one chunk whole with efs_reader_take. A reader is used by one thread.
 */
#ifndef ECHOFS_MASTER_DOWNLOAD_H
#define ECHOFS_MASTER_DOWNLOAD_H

#include "echofs/buf.h"
#include "echofs/meta.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

struct efs_chunk_cache;
struct efs_chunk_backend;
struct efs_reader;

/* Where a reader gets a file's chunks from, all borrowed from the master
 * (which outlives every reader). */
struct efs_reader_source {
	struct efs_meta *meta;		     /* the file's chunk list */
	struct efs_chunk_backend *chunks;    /* where the bytes are read from */
	struct efs_chunk_cache *chunk_cache; /* verified chunks; NULL: none */
	_Atomic uint64_t *chunk_lists_read;  /* +1 per chunk list query; NULL: none */
};

/* What a reader may be told of a small file's chunks beforehand: their
 * ids and sizes, without replicas (which change), and the
 * efs_meta_removals count read before they were. Enough to take each
 * chunk from the chunk cache without reading the chunk list; the list
 * (with replicas) is read only for a chunk that is not cached. */
#define EFS_READER_KNOWN_MAX 4
struct efs_reader_known {
	size_t count; /* chunks 0 .. count-1 of the file; 0: none known */
	uint64_t removals;
	struct {
		char chunk_id[65];
		uint64_t size; /* uncompressed */
	} chunk[EFS_READER_KNOWN_MAX];
};

/* A reader of bytes [@first, @last] of @file, from @src. */
int efs_reader_new(const struct efs_reader_source *src, const struct efs_file_info *file,
		   uint64_t first, uint64_t last, struct efs_reader **out);
/* Tells @rd the file's chunk ids (before the first read). The caller
 * vouches that the file still exists (efs_cache_file_get checks the
 * removal count): a chunk found in the chunk cache by these ids is served
 * without a store read. NULL or a count of 0 changes nothing. */
void efs_reader_know(struct efs_reader *rd, const struct efs_reader_known *known);
/* With @on, a chunk that is not in the chunk cache is not fetched from
 * its replicas: efs_reader_prefetch and efs_reader_read fail with
 * -EWOULDBLOCK instead (a caller that must not wait for a worker), and
 * no chunk is read ahead. A known chunk id (efs_reader_know) that is no
 * longer cached fails so too, before any store read; without known ids
 * the chunk list is still read from the store (the caller's to allow). */
void efs_reader_cached_only(struct efs_reader *rd, bool on);
/* What the reader learnt of the file's chunks for a later efs_reader_know:
 * true and *out filled when it read the whole chunk list from the store in
 * one query (at most EFS_READER_KNOWN_MAX chunks) and the store counts
 * removals (efs_meta_removals); false otherwise, *out untouched. */
bool efs_reader_learned(const struct efs_reader *rd, struct efs_reader_known *out);
/* Frees the reader; waits for a read-ahead in progress to end (within its
 * transfer timeouts). NULL is accepted. */
void efs_reader_free(struct efs_reader *rd);
/* Loads the chunk holding the next byte, so a failure shows before any
 * byte is sent. 0, -ENOENT (the file has no chunk list: deleted), -EIO or
 * store errors. */
int efs_reader_prefetch(struct efs_reader *rd);
/* The next bytes into @out: count, 0 at the end, or -errno (as
 * efs_reader_prefetch; never logged here: the caller decides). */
ssize_t efs_reader_read(struct efs_reader *rd, char *out, size_t max);
/* When every byte left to read lies in the chunk efs_reader_prefetch
 * loaded, hands that chunk's buffer over without copying: @out (released
 * first) then holds the bytes, the range being @len bytes from *offset,
 * and the reader is at its end. Returns true, or false (nothing changed)
 * when the range needs more than that chunk. */
bool efs_reader_take(struct efs_reader *rd, struct efs_buf *out, size_t *offset, size_t *len);
/* The id of the file being read (for the caller's log line). */
const char *efs_reader_file_id(const struct efs_reader *rd);

#endif
