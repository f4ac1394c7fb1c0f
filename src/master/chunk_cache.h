/* SPDX-License-Identifier: MIT */
/* chunk_cache.h - a bounded in-memory cache of verified chunk bytes, keyed
 * by chunk id, for reads.
 *
 * A chunk id is the SHA-256 of the chunk's bytes, so an entry can never be
 * stale: whatever file lists that id, these are its bytes. The cache only
 * stands in for the chunk backend's round trip, the decompression and the
 * SHA-256 check of a chunk read again (efs_chunk_backend_get, download.c:
 * the cache sits in front of the backend, whichever it is); it never
 * answers whether a file or a chunk still exists, which the chunk-list
 * read before it does.
 *
 * Only chunks of at most max_item bytes are kept, so that one large
 * download streaming through does not push out the small hot ones. Least
 * recently used entries go first once the bytes held (payload plus a
 * fixed per-entry overhead) would pass the capacity. Thread-safe: one
 * mutex, held for the lookup and the copy. A NULL cache (capacity 0) is
 * valid everywhere and holds nothing.
 */
#ifndef ECHOFS_MASTER_CHUNK_CACHE_H
#define ECHOFS_MASTER_CHUNK_CACHE_H

#include "echofs/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct efs_chunk_cache;

/* Largest chunk kept, whatever the capacity: 256 KiB (small files and
 * the last chunk of others); a 64th of the capacity when that is less. */
#define EFS_CHUNK_CACHE_MAX_ITEM (256 * 1024)

/* Counters, for tests and metrics. */
struct efs_chunk_cache_stats {
	uint64_t hits;
	uint64_t misses;
	uint64_t entries;
	uint64_t bytes; /* counted against the capacity */
};

/* A cache of at most @capacity bytes in *@out; with @capacity 0, *@out is
 * NULL (no cache). 0 or -ENOMEM. */
int efs_chunk_cache_new(size_t capacity, struct efs_chunk_cache **out);
/* Frees the cache and every entry. NULL is accepted. */
void efs_chunk_cache_free(struct efs_chunk_cache *c);
/* Copies the bytes of @chunk_id (64 hex digits) into @out, replacing its
 * contents, and marks the entry recently used. 0; -ENOENT when not cached
 * (always with a NULL cache); -E2BIG (over @out's cap) or -ENOMEM, with
 * @out's contents then unspecified. */
int efs_chunk_cache_get(struct efs_chunk_cache *c, const char *chunk_id, struct efs_buf *out);
/* Whether @chunk_id is cached now (it may be evicted before a get): a
 * peek that neither copies nor counts a hit or miss nor marks the entry
 * used. false with a NULL cache. */
bool efs_chunk_cache_contains(struct efs_chunk_cache *c, const char *chunk_id);
/* Keeps a copy of @len bytes as @chunk_id; the caller has verified that
 * they hash to it. Does nothing when the chunk is too large, already
 * cached, or memory is short. */
void efs_chunk_cache_put(struct efs_chunk_cache *c, const char *chunk_id, const void *data,
			 size_t len);
/* The counters so far (all 0 with a NULL cache). */
void efs_chunk_cache_stats(struct efs_chunk_cache *c, struct efs_chunk_cache_stats *out);

#endif
