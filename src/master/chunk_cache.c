/* SPDX-License-Identifier: MIT */
/* chunk_cache.c - verified chunk bytes by chunk id, least recently used
 * out first.
 *
 * A chained hash table over the entries plus a doubly linked recency list;
 * each entry is one allocation holding its id and bytes. The id is a
 * SHA-256, so its first 16 hex digits are a well-spread hash already. */
#include "master/chunk_cache.h"
#include "echofs/hash.h"
#include "echofs/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define ID_LEN 64
/* Counted per entry on top of its bytes: the entry header and malloc's
 * own bookkeeping, so that many tiny chunks cannot overrun the capacity. */
#define ENTRY_OVERHEAD 128
#define MIN_BUCKETS 64
#define MAX_BUCKETS (1u << 20)

struct entry {
	struct entry *hash_next;
	struct entry *newer, *older;
	size_t len;
	char id[ID_LEN + 1];
	char data[]; /* len bytes */
};

struct efs_chunk_cache {
	pthread_mutex_t lock;
	size_t capacity;
	size_t max_item;
	size_t bytes;
	struct entry **buckets;
	size_t bucket_mask;
	struct entry *newest, *oldest;
	struct efs_chunk_cache_stats stats;
};

int efs_chunk_cache_new(size_t capacity, struct efs_chunk_cache **out)
{
	*out = NULL;
	if (capacity == 0)
		return 0;
	struct efs_chunk_cache *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	/* About one bucket per 4 KiB of capacity: short chains for the small
	 * chunks the cache is for. */
	size_t buckets = MIN_BUCKETS;
	while (buckets < MAX_BUCKETS && buckets < capacity / 4096)
		buckets *= 2;
	c->buckets = calloc(buckets, sizeof(*c->buckets));
	if (!c->buckets) {
		free(c);
		return -ENOMEM;
	}
	c->bucket_mask = buckets - 1;
	c->capacity = capacity;
	c->max_item = EFS_MIN((size_t)EFS_CHUNK_CACHE_MAX_ITEM, capacity / 64);
	pthread_mutex_init(&c->lock, NULL);
	*out = c;
	return 0;
}

void efs_chunk_cache_free(struct efs_chunk_cache *c)
{
	if (!c)
		return;
	for (struct entry *e = c->newest, *next; e; e = next) {
		next = e->older;
		free(e);
	}
	free(c->buckets);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static size_t entry_cost(size_t len)
{
	return len + ENTRY_OVERHEAD;
}

/* The entry for @id and the link that points at it (for unlinking). */
static struct entry *find(struct efs_chunk_cache *c, const char *id, struct entry ***link)
{
	struct entry **p = &c->buckets[efs_fnv1a(EFS_FNV1A_INIT, id, ID_LEN) & c->bucket_mask];
	for (; *p; p = &(*p)->hash_next) {
		if (memcmp((*p)->id, id, ID_LEN) == 0)
			break;
	}
	if (link)
		*link = p;
	return *p;
}

static void recency_unlink(struct efs_chunk_cache *c, struct entry *e)
{
	if (e->newer)
		e->newer->older = e->older;
	else
		c->newest = e->older;
	if (e->older)
		e->older->newer = e->newer;
	else
		c->oldest = e->newer;
	e->newer = e->older = NULL;
}

static void recency_push(struct efs_chunk_cache *c, struct entry *e)
{
	e->newer = NULL;
	e->older = c->newest;
	if (c->newest)
		c->newest->newer = e;
	c->newest = e;
	if (!c->oldest)
		c->oldest = e;
}

static void evict_oldest(struct efs_chunk_cache *c)
{
	struct entry *e = c->oldest;
	struct entry **link;
	find(c, e->id, &link);
	*link = e->hash_next;
	recency_unlink(c, e);
	c->bytes -= entry_cost(e->len);
	c->stats.entries--;
	free(e);
}

static bool id_ok(const char *id)
{
	return id && strnlen(id, ID_LEN + 1) == ID_LEN;
}

int efs_chunk_cache_get(struct efs_chunk_cache *c, const char *chunk_id, struct efs_buf *out)
{
	if (!c || !id_ok(chunk_id))
		return -ENOENT;
	int r = 0;
	pthread_mutex_lock(&c->lock);
	struct entry *e = find(c, chunk_id, NULL);
	if (!e) {
		c->stats.misses++;
		r = -ENOENT;
		goto out;
	}
	c->stats.hits++;
	recency_unlink(c, e);
	recency_push(c, e);
	efs_buf_reset(out);
	r = efs_buf_append(out, e->data, e->len);
out:
	pthread_mutex_unlock(&c->lock);
	return r;
}

bool efs_chunk_cache_contains(struct efs_chunk_cache *c, const char *chunk_id)
{
	if (!c || !id_ok(chunk_id))
		return false;
	pthread_mutex_lock(&c->lock);
	bool found = find(c, chunk_id, NULL) != NULL;
	pthread_mutex_unlock(&c->lock);
	return found;
}

void efs_chunk_cache_put(struct efs_chunk_cache *c, const char *chunk_id, const void *data,
			 size_t len)
{
	if (!c || !id_ok(chunk_id) || len > c->max_item || entry_cost(len) > c->capacity)
		return;
	/* Allocated and filled outside the lock; dropped if another reader
	 * put the same chunk meanwhile. */
	struct entry *e = malloc(sizeof(*e) + (len ? len : 1));
	if (!e)
		return;
	memcpy(e->id, chunk_id, ID_LEN + 1);
	e->len = len;
	if (len)
		memcpy(e->data, data, len);
	pthread_mutex_lock(&c->lock);
	struct entry **link;
	if (find(c, chunk_id, &link)) {
		pthread_mutex_unlock(&c->lock);
		free(e);
		return;
	}
	while (c->oldest && c->bytes + entry_cost(len) > c->capacity)
		evict_oldest(c);
	/* Eviction may have emptied the bucket: look the link up again. */
	find(c, chunk_id, &link);
	e->hash_next = NULL;
	*link = e;
	recency_push(c, e);
	c->bytes += entry_cost(len);
	c->stats.entries++;
	pthread_mutex_unlock(&c->lock);
}

void efs_chunk_cache_stats(struct efs_chunk_cache *c, struct efs_chunk_cache_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	*out = c->stats;
	out->bytes = c->bytes;
	pthread_mutex_unlock(&c->lock);
}
