/* SPDX-License-Identifier: MIT */
/* chunk_index.h - the chunk store's in-memory index: chunk id -> where the
 * newest record of that chunk is in the volume files.
 *
 * An open-addressing hash table (linear probing, backward-shift deletion)
 * keyed by the 32 bytes of the chunk id. It is not thread-safe: the store
 * holds its lock around every call. A pointer returned by find or put stays
 * valid only until the next put or remove.
 */
#ifndef ECHOFS_WORKER_CHUNK_INDEX_H
#define ECHOFS_WORKER_CHUNK_INDEX_H

#include "echofs/common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EFS_CHUNK_KEY_LEN 32

struct efs_chunk_loc {
	void *volume;	  /* the store's volume holding the record (opaque here) */
	uint64_t offset;  /* of the record's header in that volume */
	uint64_t seq;	  /* the record's sequence number: the newest wins */
	int64_t mtime_ms; /* when the record was committed (Unix ms) */
	uint32_t length;  /* payload bytes */
	uint8_t flags;	  /* EFS_STORE_* */
	bool tombstone;	  /* a delete; only while the store replays its volumes */
	/* The lowest and highest ids of the volumes that may hold a committed
	 * record of this chunk (older copies included): what a tombstone for
	 * it must outlive. */
	uint32_t first_volume, last_volume;
};

struct efs_chunk_slot {
	uint8_t key[EFS_CHUNK_KEY_LEN];
	bool used;
	struct efs_chunk_loc loc;
};

struct efs_chunk_index {
	struct efs_chunk_slot *slots;
	size_t capacity; /* a power of two, or 0 */
	size_t count;
};

/* Decodes a valid 64-hex-digit chunk id into its key. */
void efs_chunk_key(const char *chunk_id, uint8_t key[EFS_CHUNK_KEY_LEN]);

void efs_chunk_index_init(struct efs_chunk_index *ix);
void efs_chunk_index_release(struct efs_chunk_index *ix);
/* The entry for @key, or NULL. */
struct efs_chunk_loc *efs_chunk_index_find(struct efs_chunk_index *ix, const uint8_t *key);
/* Sets the entry for @key to @loc (adding it if absent). 0 or -ENOMEM (the
 * index is unchanged then). */
int efs_chunk_index_put(struct efs_chunk_index *ix, const uint8_t *key,
			const struct efs_chunk_loc *loc);
/* Removes @key's entry; false when there was none. */
bool efs_chunk_index_remove(struct efs_chunk_index *ix, const uint8_t *key);
/* Walks the slots: the first used slot at or after *pos, or NULL at the end;
 * *pos is left on that slot (add 1 to go on). No put or remove may happen
 * during a walk: a remove shifts entries backwards, and one from the start
 * of a probe run that wraps around the end would land in a slot the walk
 * has passed (seen twice, or never). Collect keys first, change after. */
struct efs_chunk_slot *efs_chunk_index_next(struct efs_chunk_index *ix, size_t *pos);

#endif
