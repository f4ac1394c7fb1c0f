/* SPDX-License-Identifier: MIT */
/* object_cache.c - S3 object reads kept in this master's memory, valid
 * while the store's removal count has not moved (object_cache.h).
 *
 * Why the count and not a TTL: a GET must see a PUT, copy or delete that
 * answered before it began (S3's read-after-write), and every such call
 * goes through meta.c, which counts it after it returns. An entry is
 * stored with the count read *before* its object was read, so an entry
 * that missed a write made during the read is already stale.
 */
#include "master/object_cache.h"
#include "echofs/hash.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* An entry: its bucket and key ("bucket\0key"), then the struct's bytes
 * squeezed (squeeze below). */
struct entry {
	uint64_t removals; /* the count it was read at */
	char file_id[EFS_ID_MAX + 1];
	struct efs_reader_known known; /* count 0: not learnt */
	size_t name_len;	       /* bucket, '\0', key */
	size_t data_len;	       /* squeezed bytes after the name */
	unsigned char bytes[];
};

struct efs_object_cache {
	pthread_mutex_t lock;
	size_t entries, bytes; /* held; bytes counts whole entries */
	struct entry *slots[EFS_OBJECT_CACHE_SLOTS];
};

/* ---- zero-run squeezing ---------------------------------------------
 * The struct is mostly fixed-size strings, mostly NUL padding. Squeezed
 * form: records of { uint32 literal, uint32 zeros, literal bytes }, which
 * expand back to exactly the input; runs of fewer than SQUEEZE_MIN_RUN
 * zeros stay literal, so that a record's header always saves more than it
 * costs. Whatever the struct's fields, nothing is lost. */
#define SQUEEZE_MIN_RUN 16
#define SQUEEZE_HEADER (2 * sizeof(uint32_t))
/* The squeezed size of @len bytes is at most this. */
#define SQUEEZE_BOUND(len) ((len) + SQUEEZE_HEADER * ((len) / SQUEEZE_MIN_RUN + 1))

/* Squeezes @src[0..@len) into @out (SQUEEZE_BOUND(@len) bytes); its
 * length. */
static size_t squeeze(const unsigned char *src, size_t len, unsigned char *out)
{
	size_t i = 0, o = 0;
	while (i < len) {
		size_t start = i, zeros = 0;
		/* literal bytes up to a run long enough to squeeze, or the end */
		while (i < len) {
			if (src[i] != 0) {
				i++;
				continue;
			}
			size_t z = i;
			while (z < len && src[z] == 0)
				z++;
			if (z - i >= SQUEEZE_MIN_RUN || z == len) {
				zeros = z - i;
				break;
			}
			i = z;
		}
		uint32_t header[2] = {(uint32_t)(i - start), (uint32_t)zeros};
		memcpy(out + o, header, sizeof(header));
		o += sizeof(header);
		memcpy(out + o, src + start, i - start);
		o += i - start;
		i += zeros;
	}
	return o;
}

/* Expands @in[0..@in_len) into exactly @len bytes at @out: 0, or -EINVAL
 * when it does not (@out then partly written). */
static int expand(const unsigned char *in, size_t in_len, unsigned char *out, size_t len)
{
	size_t i = 0, o = 0;
	while (i < in_len) {
		uint32_t header[2];
		if (in_len - i < sizeof(header))
			return -EINVAL;
		memcpy(header, in + i, sizeof(header));
		i += sizeof(header);
		if (header[0] > in_len - i || header[0] > len - o ||
		    header[1] > len - o - header[0])
			return -EINVAL;
		memcpy(out + o, in + i, header[0]);
		i += header[0];
		o += header[0];
		memset(out + o, 0, header[1]);
		o += header[1];
	}
	return o == len ? 0 : -EINVAL;
}

/* ---- the slots ------------------------------------------------------ */

int efs_object_cache_new(struct efs_object_cache **out)
{
	struct efs_object_cache *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	*out = c;
	return 0;
}

void efs_object_cache_free(struct efs_object_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < EFS_OBJECT_CACHE_SLOTS; i++)
		free(c->slots[i]);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static size_t entry_size(const struct entry *e)
{
	return sizeof(*e) + e->name_len + e->data_len;
}

/* Slot of @bucket/@key; @name_len gets the length of "bucket\0key". */
static size_t slot_of(const char *bucket, const char *key, size_t *name_len)
{
	size_t bucket_len = strlen(bucket), key_len = strlen(key);
	uint64_t h = efs_fnv1a(EFS_FNV1A_INIT, bucket, bucket_len + 1);
	h = efs_fnv1a(h, key, key_len);
	*name_len = bucket_len + 1 + key_len;
	return (size_t)(h % EFS_OBJECT_CACHE_SLOTS);
}

static bool entry_is(const struct entry *e, const char *bucket, const char *key, size_t name_len)
{
	size_t bucket_len = strlen(bucket);
	return e && e->name_len == name_len && memcmp(e->bytes, bucket, bucket_len + 1) == 0 &&
	       memcmp(e->bytes + bucket_len + 1, key, name_len - bucket_len - 1) == 0;
}

/* Empties slot @i (lock held). */
static void slot_drop(struct efs_object_cache *c, size_t i)
{
	if (!c->slots[i])
		return;
	c->entries--;
	c->bytes -= entry_size(c->slots[i]);
	free(c->slots[i]);
	c->slots[i] = NULL;
}

int efs_object_cache_get(struct efs_object_cache *c, const char *bucket, const char *key,
			 uint64_t removals, struct efs_object_read *out,
			 struct efs_reader_known *known)
{
	size_t name_len, i = slot_of(bucket, key, &name_len);
	int r = -ENOENT;
	pthread_mutex_lock(&c->lock);
	struct entry *e = c->slots[i];
	if (entry_is(e, bucket, key, name_len)) {
		if (e->removals != removals) {
			slot_drop(c, i); /* stale for good: the count only grows */
		} else if (expand(e->bytes + e->name_len, e->data_len, (unsigned char *)out,
				  sizeof(*out)) == 0) {
			if (known)
				*known = e->known;
			r = 0;
		} else {
			slot_drop(c, i); /* cannot happen: squeezed by us */
		}
	}
	pthread_mutex_unlock(&c->lock);
	return r;
}

void efs_object_cache_put(struct efs_object_cache *c, const struct efs_object_read *x,
			  uint64_t removals)
{
	const char *bucket = x->object.bucket, *key = x->object.key;
	size_t bucket_len = strlen(bucket);
	size_t name_len, i = slot_of(bucket, key, &name_len);
	/* Squeezed into a scratch buffer at its bound (18 KiB, too much for a
	 * connection thread's stack), then copied into an entry of its exact
	 * size. Not squeezed in place and shrunk with realloc: that left an
	 * 18 KiB hole behind each kept entry, which malloc kept (the master's
	 * peak RSS in make bench's S3 phase). */
	unsigned char *scratch = malloc(SQUEEZE_BOUND(sizeof(*x)));
	if (!scratch)
		return;
	size_t data_len = squeeze((const unsigned char *)x, sizeof(*x), scratch);
	struct entry *e = malloc(sizeof(*e) + name_len + data_len);
	if (!e) {
		free(scratch);
		return;
	}
	e->removals = removals;
	memcpy(e->file_id, x->file.file_id, sizeof(e->file_id));
	e->known.count = 0;
	e->name_len = name_len;
	memcpy(e->bytes, bucket, bucket_len + 1);
	memcpy(e->bytes + bucket_len + 1, key, name_len - bucket_len - 1);
	memcpy(e->bytes + name_len, scratch, data_len);
	e->data_len = data_len;
	free(scratch);
	pthread_mutex_lock(&c->lock);
	slot_drop(c, i);
	if (c->bytes + entry_size(e) <= EFS_OBJECT_CACHE_BYTES) {
		c->slots[i] = e;
		c->entries++;
		c->bytes += entry_size(e);
		e = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	free(e);
}

void efs_object_cache_learn(struct efs_object_cache *c, const char *bucket, const char *key,
			    const char *file_id, const struct efs_reader_known *known)
{
	if (!known->count || known->count > EFS_READER_KNOWN_MAX)
		return;
	size_t name_len, i = slot_of(bucket, key, &name_len);
	pthread_mutex_lock(&c->lock);
	struct entry *e = c->slots[i];
	if (entry_is(e, bucket, key, name_len) && e->removals == known->removals &&
	    strcmp(e->file_id, file_id) == 0)
		e->known = *known;
	pthread_mutex_unlock(&c->lock);
}

void efs_object_cache_forget(struct efs_object_cache *c, const char *bucket, const char *key)
{
	size_t name_len, i = slot_of(bucket, key, &name_len);
	pthread_mutex_lock(&c->lock);
	if (entry_is(c->slots[i], bucket, key, name_len))
		slot_drop(c, i);
	pthread_mutex_unlock(&c->lock);
}

void efs_object_cache_usage(struct efs_object_cache *c, size_t *entries, size_t *bytes)
{
	pthread_mutex_lock(&c->lock);
	*entries = c->entries;
	*bytes = c->bytes;
	pthread_mutex_unlock(&c->lock);
}
