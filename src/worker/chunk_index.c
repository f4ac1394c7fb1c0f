/* SPDX-License-Identifier: MIT */
/* chunk_index.c - chunk id -> record location, an open-addressing table. */
#include "worker/chunk_index.h"

#include "echofs/util.h"

#include <stdlib.h>
#include <string.h>

#define MIN_CAPACITY 1024

void efs_chunk_key(const char *chunk_id, uint8_t key[EFS_CHUNK_KEY_LEN])
{
	for (size_t i = 0; i < EFS_CHUNK_KEY_LEN; i++)
		key[i] = (uint8_t)(efs_hex_value((unsigned char)chunk_id[2 * i]) << 4 |
				   efs_hex_value((unsigned char)chunk_id[2 * i + 1]));
}

/* Chunk ids are SHA-256 digests, but the store accepts any 64 hex digits, so
 * every byte is mixed in. */
static size_t slot_of(const struct efs_chunk_index *ix, const uint8_t *key)
{
	uint64_t h = 0;
	for (size_t i = 0; i < EFS_CHUNK_KEY_LEN; i += 8) {
		uint64_t word;
		memcpy(&word, key + i, 8);
		h = (h ^ word) * 0x9e3779b97f4a7c15ull;
	}
	return (size_t)(h >> 17) & (ix->capacity - 1);
}

void efs_chunk_index_init(struct efs_chunk_index *ix)
{
	memset(ix, 0, sizeof(*ix));
}

void efs_chunk_index_release(struct efs_chunk_index *ix)
{
	free(ix->slots);
	memset(ix, 0, sizeof(*ix));
}

struct efs_chunk_loc *efs_chunk_index_find(struct efs_chunk_index *ix, const uint8_t *key)
{
	if (ix->count == 0)
		return NULL;
	for (size_t i = slot_of(ix, key);; i = (i + 1) & (ix->capacity - 1)) {
		struct efs_chunk_slot *slot = &ix->slots[i];
		if (!slot->used)
			return NULL;
		if (memcmp(slot->key, key, EFS_CHUNK_KEY_LEN) == 0)
			return &slot->loc;
	}
}

static void insert_new(struct efs_chunk_index *ix, const uint8_t *key,
		       const struct efs_chunk_loc *loc)
{
	size_t i = slot_of(ix, key);
	while (ix->slots[i].used)
		i = (i + 1) & (ix->capacity - 1);
	memcpy(ix->slots[i].key, key, EFS_CHUNK_KEY_LEN);
	ix->slots[i].used = true;
	ix->slots[i].loc = *loc;
	ix->count++;
}

/* Keeps the load at or under 3/4, so probes stay short and a free slot
 * always ends a probe. */
static int grow(struct efs_chunk_index *ix)
{
	size_t capacity = ix->capacity ? ix->capacity * 2 : MIN_CAPACITY;
	struct efs_chunk_slot *slots = calloc(capacity, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	struct efs_chunk_index bigger = {.slots = slots, .capacity = capacity};
	for (size_t i = 0; i < ix->capacity; i++)
		if (ix->slots[i].used)
			insert_new(&bigger, ix->slots[i].key, &ix->slots[i].loc);
	free(ix->slots);
	*ix = bigger;
	return 0;
}

int efs_chunk_index_put(struct efs_chunk_index *ix, const uint8_t *key,
			const struct efs_chunk_loc *loc)
{
	struct efs_chunk_loc *found = efs_chunk_index_find(ix, key);
	if (found) {
		*found = *loc;
		return 0;
	}
	if ((ix->count + 1) * 4 > ix->capacity * 3) {
		int r = grow(ix);
		if (r < 0)
			return r;
	}
	insert_new(ix, key, loc);
	return 0;
}

bool efs_chunk_index_remove(struct efs_chunk_index *ix, const uint8_t *key)
{
	struct efs_chunk_loc *loc = efs_chunk_index_find(ix, key);
	if (!loc)
		return false;
	size_t mask = ix->capacity - 1;
	size_t hole =
	    (size_t)((struct efs_chunk_slot *)((char *)loc - offsetof(struct efs_chunk_slot, loc)) -
		     ix->slots);
	/* Backward shift: later entries of the same probe run move into the
	 * hole, so lookups never need tombstones. */
	for (size_t i = (hole + 1) & mask; ix->slots[i].used; i = (i + 1) & mask) {
		size_t home = slot_of(ix, ix->slots[i].key);
		/* Movable when its home is not in (hole, i], cyclically. */
		bool movable = hole <= i ? (home <= hole || home > i) : (home <= hole && home > i);
		if (movable) {
			ix->slots[hole] = ix->slots[i];
			hole = i;
		}
	}
	ix->slots[hole].used = false;
	ix->count--;
	return true;
}

struct efs_chunk_slot *efs_chunk_index_next(struct efs_chunk_index *ix, size_t *pos)
{
	for (; *pos < ix->capacity; (*pos)++)
		if (ix->slots[*pos].used)
			return &ix->slots[*pos];
	return NULL;
}
