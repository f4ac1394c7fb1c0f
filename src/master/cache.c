/* SPDX-License-Identifier: MIT */
/* cache.c - file and session metadata in Redis, JSON-encoded, and the
 * file metadata of recent downloads in this process's memory. */
#include "master/cache.h"
#include "echofs/hash.h"
#include "echofs/json.h"
#include "echofs/redis.h"
#include "echofs/util.h"

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The local tier: set-associative by file id (LOCAL_SETS sets of
 * LOCAL_WAYS entries, the least recently used of a full set replaced),
 * EFS_FILE_CACHE_TTL_MS. It saves the store query (or the Redis round
 * trip) that every download began with, and with the chunk ids it may
 * hold (efs_cache_file_learn) the chunk list query too. Another master's
 * delete does not reach it; see cache.h for why downloads stay correct.
 * Its entries hold what a download uses of a file row (not its S3 bucket
 * and key, which the Redis entries do not carry either), the name out of
 * line and the chunk ids as bytes: 472 bytes each, 15 MiB for all
 * 32,768 (sets of 3,840 bytes, aligned to cache lines), of which only the
 * sets used are ever touched. Direct-mapped 16,384 slots held about 58%
 * of 20,000 files downloaded at random and 38% of 35,000 (a full `make
 * bench` upload phase); these hold about 98% and 83% (docs/PERFORMANCE.md,
 * "A local file tier of 32,768 entries"). */
#define LOCAL_WAYS EFS_FILE_CACHE_WAYS
#define LOCAL_SETS EFS_FILE_CACHE_SETS

struct local_file {
	int64_t added_ms; /* efs_mono_ms */
	uint64_t used;	  /* efs_cache.clock at its last put or hit */
	char file_id[EFS_ID_MAX + 1];
	char owner[EFS_ID_MAX + 1];
	char *name; /* malloc'd; NULL for "" */
	char sha256[65];
	char policy[24];
	uint64_t size, chunk_size, chunk_count, stored_bytes;
	int64_t created_at_ms;
	unsigned replication;
	/* The chunk ids a download learnt (efs_reader_known, packed): 0 none. */
	unsigned known_count;
	uint64_t known_removals;
	struct {
		uint8_t id[32];
		uint64_t size;
	} known[EFS_READER_KNOWN_MAX];
};

#define CACHE_LINE 64

struct local_set {
	/* Per way: a hash of its file id, never 0; 0: the way is empty. Read
	 * before any entry's id, so a miss touches one cache line. */
	_Alignas(CACHE_LINE) uint32_t tag[LOCAL_WAYS];
	struct local_file way[LOCAL_WAYS];
};

/* Copied field by field with memcpy: the arrays must be the row's. */
_Static_assert(sizeof(((struct local_file *)0)->policy) ==
		   sizeof(((struct efs_file_info *)0)->policy),
	       "local_file.policy");
_Static_assert(sizeof(((struct local_file *)0)->sha256) ==
		   sizeof(((struct efs_file_info *)0)->sha256),
	       "local_file.sha256");
_Static_assert(sizeof(((struct local_file *)0)->file_id) ==
		   sizeof(((struct efs_file_info *)0)->file_id),
	       "local_file.file_id");
_Static_assert(sizeof(((struct local_file *)0)->owner) ==
		   sizeof(((struct efs_file_info *)0)->owner),
	       "local_file.owner");

struct efs_cache {
	struct efs_meta *meta;
	struct efs_redis *redis; /* NULL: no Redis tier */
	pthread_mutex_t local_lock;
	uint64_t clock;		 /* under local_lock: one tick per put or hit */
	struct local_set *local; /* LOCAL_SETS, aligned in local_mem */
	void *local_mem;
};

int efs_cache_new(struct efs_meta *meta, struct efs_redis *redis, struct efs_cache **out)
{
	struct efs_cache *c = calloc(1, sizeof(*c));
	/* Untouched until used: calloc maps zero pages (an aligned
	 * allocation would have to be cleared, touching all of it). */
	void *mem = calloc(1, LOCAL_SETS * sizeof(struct local_set) + CACHE_LINE - 1);
	if (!c || !mem) {
		free(c);
		free(mem);
		return -ENOMEM;
	}
	c->meta = meta;
	c->redis = redis;
	c->local_mem = mem;
	c->local =
	    (struct local_set *)(((uintptr_t)mem + CACHE_LINE - 1) & ~(uintptr_t)(CACHE_LINE - 1));
	pthread_mutex_init(&c->local_lock, NULL);
	*out = c;
	return 0;
}

void efs_cache_free(struct efs_cache *c)
{
	if (!c)
		return;
	for (size_t s = 0; s < LOCAL_SETS; s++)
		for (size_t w = 0; w < LOCAL_WAYS; w++)
			free(c->local[s].way[w].name);
	free(c->local_mem);
	pthread_mutex_destroy(&c->local_lock);
	free(c);
}

struct local_key {
	size_t set;
	uint32_t tag;
};

static struct local_key local_key(const char *file_id)
{
	uint64_t h = efs_fnv1a(EFS_FNV1A_INIT, file_id, strlen(file_id));
	uint32_t tag = (uint32_t)(h >> 32);
	return (struct local_key){.set = (size_t)(h % LOCAL_SETS), .tag = tag ? tag : 1};
}

size_t efs_cache_file_set(const char *file_id)
{
	return local_key(file_id).set;
}

/* The way of @set holding @file_id, or -1. Under local_lock. */
static int local_find(const struct local_set *set, struct local_key k, const char *file_id)
{
	for (int w = 0; w < LOCAL_WAYS; w++)
		if (set->tag[w] == k.tag && strcmp(set->way[w].file_id, file_id) == 0)
			return w;
	return -1;
}

/* The way of @file_id's entry if it is there and fresh, or -1. Under
 * local_lock. */
static int local_fresh(struct efs_cache *c, struct local_key k, const char *file_id)
{
	const struct local_set *set = &c->local[k.set];
	int w = local_find(set, k, file_id);
	if (w >= 0 && efs_mono_ms() - set->way[w].added_ms >= EFS_FILE_CACHE_TTL_MS)
		return -1;
	return w;
}

/* The local entry of @file_id, with its chunk ids in @known (when not
 * NULL) if they were read at the current removal count. */
static bool local_get(struct efs_cache *c, const char *file_id, struct efs_file_info *out,
		      struct efs_reader_known *known)
{
	struct local_key k = local_key(file_id);
	uint64_t removals;
	/* Read before the entry: a removal after it is a concurrent
	 * request's, which may go either way. */
	bool counted = known && efs_meta_removals(c->meta, &removals) == 0;
	pthread_mutex_lock(&c->local_lock);
	int w = local_fresh(c, k, file_id);
	if (w >= 0) {
		struct local_file *l = &c->local[k.set].way[w];
		memset(out, 0, sizeof(*out));
		memcpy(out->file_id, l->file_id, sizeof(out->file_id));
		memcpy(out->owner, l->owner, sizeof(out->owner));
		if (l->name)
			efs_strlcpy(out->name, l->name, sizeof(out->name));
		memcpy(out->sha256, l->sha256, sizeof(out->sha256));
		memcpy(out->policy, l->policy, sizeof(out->policy));
		out->size = l->size;
		out->chunk_size = l->chunk_size;
		out->chunk_count = l->chunk_count;
		out->stored_bytes = l->stored_bytes;
		out->created_at_ms = l->created_at_ms;
		out->replication = l->replication;
		l->used = ++c->clock;
		if (counted && l->known_count > 0 && l->known_removals == removals) {
			known->count = l->known_count;
			known->removals = l->known_removals;
			for (unsigned i = 0; i < l->known_count; i++) {
				efs_hex_encode(l->known[i].id, sizeof(l->known[i].id),
					       known->chunk[i].chunk_id);
				known->chunk[i].size = l->known[i].size;
			}
		}
	}
	pthread_mutex_unlock(&c->local_lock);
	return w >= 0;
}

static void local_put(struct efs_cache *c, const struct efs_file_info *f)
{
	/* An empty file has no chunk list that would reveal its deletion. */
	if (f->size == 0 || !f->file_id[0])
		return;
	char *name = NULL;
	if (f->name[0] && !(name = strdup(f->name)))
		return; /* out of memory: not kept */
	struct local_key k = local_key(f->file_id);
	pthread_mutex_lock(&c->local_lock);
	struct local_set *set = &c->local[k.set];
	int w = local_find(set, k, f->file_id);
	if (w < 0) { /* an empty or expired way, else the least recently used */
		int64_t now = efs_mono_ms();
		w = 0;
		for (int i = 0; i < LOCAL_WAYS; i++) {
			if (!set->tag[i] || now - set->way[i].added_ms >= EFS_FILE_CACHE_TTL_MS) {
				w = i;
				break;
			}
			if (set->way[i].used < set->way[w].used)
				w = i;
		}
	}
	struct local_file *l = &set->way[w];
	char *old = l->name;
	set->tag[w] = k.tag;
	memcpy(l->file_id, f->file_id, sizeof(l->file_id));
	memcpy(l->owner, f->owner, sizeof(l->owner));
	l->name = name;
	memcpy(l->sha256, f->sha256, sizeof(l->sha256));
	memcpy(l->policy, f->policy, sizeof(l->policy));
	l->size = f->size;
	l->chunk_size = f->chunk_size;
	l->chunk_count = f->chunk_count;
	l->stored_bytes = f->stored_bytes;
	l->created_at_ms = f->created_at_ms;
	l->replication = f->replication;
	l->known_count = 0;
	l->added_ms = efs_mono_ms();
	l->used = ++c->clock;
	pthread_mutex_unlock(&c->local_lock);
	free(old);
}

static void local_forget(struct efs_cache *c, const char *file_id)
{
	struct local_key k = local_key(file_id);
	char *old = NULL;
	pthread_mutex_lock(&c->local_lock);
	struct local_set *set = &c->local[k.set];
	int w = local_find(set, k, file_id);
	if (w >= 0) {
		set->tag[w] = 0;
		set->way[w].file_id[0] = '\0';
		old = set->way[w].name;
		set->way[w].name = NULL;
	}
	pthread_mutex_unlock(&c->local_lock);
	free(old);
}

#define ENTRY_MAX (8 * 1024)

static void key_for(const char *kind, const char *id, char *out, size_t size)
{
	snprintf(out, size, "efs:%s:%s", kind, id);
}

/* What a forgotten entry holds until its TTL ends: a read that raced the
 * delete cannot put the old entry back (entries are only ever added with
 * NX), and a reader sees "gone" without asking the store. */
#define TOMBSTONE "deleted"
#define TOMBSTONE_TTL_MS (10 * 60 * 1000)

/* Reads a cached JSON object; NULL on any miss. *gone is set when the
 * entry says the object was deleted. */
static json_t *cache_get(struct efs_cache *c, const char *kind, const char *id, bool *gone)
{
	char key[EFS_ID_MAX + 16];
	struct efs_buf buf;
	json_t *j = NULL;
	*gone = false;
	if (!c->redis)
		return NULL;
	key_for(kind, id, key, sizeof(key));
	efs_buf_init(&buf, ENTRY_MAX);
	if (efs_redis_get(c->redis, key, &buf) == 0) {
		if (buf.len == strlen(TOMBSTONE) && memcmp(buf.data, TOMBSTONE, buf.len) == 0)
			*gone = true;
		else
			j = json_loadb(buf.data, buf.len, 0, NULL);
	}
	efs_buf_release(&buf);
	return j;
}

static void cache_put(struct efs_cache *c, const char *kind, const char *id, json_t *j,
		      int64_t ttl_ms)
{
	char key[EFS_ID_MAX + 16];
	char *text = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (text && ttl_ms > 0) {
		key_for(kind, id, key, sizeof(key));
		efs_redis_set(c->redis, key, text, strlen(text), ttl_ms, true);
	}
	free(text);
}

static void cache_forget(struct efs_cache *c, const char *kind, const char *id)
{
	char key[EFS_ID_MAX + 16];
	if (!c->redis)
		return;
	key_for(kind, id, key, sizeof(key));
	/* If Redis is away now, a stale entry may outlive the delete: the
	 * download path notices the missing chunk list and answers 404. */
	efs_redis_set(c->redis, key, TOMBSTONE, strlen(TOMBSTONE), TOMBSTONE_TTL_MS, false);
}

/* Copies string member @name into @out; false when missing or too long. */
static bool take_str(const json_t *j, const char *name, char *out, size_t size)
{
	const char *s;
	if (efs_json_str(j, name, size - 1, &s) < 0)
		return false;
	efs_strlcpy(out, s, size);
	return true;
}

static bool take_u64(const json_t *j, const char *name, uint64_t *out)
{
	return efs_json_u64(j, name, out) == 0;
}

void efs_cache_file_learn(struct efs_cache *c, const char *file_id,
			  const struct efs_reader_known *known)
{
	uint8_t ids[EFS_READER_KNOWN_MAX][32];
	if (!known->count || known->count > EFS_READER_KNOWN_MAX)
		return;
	/* Packed, so they must come back as they were: 64 lowercase hex
	 * digits (every chunk id is; anything else is not kept). */
	for (size_t i = 0; i < known->count; i++) {
		if (!efs_chunk_id_valid(known->chunk[i].chunk_id))
			return;
		efs_hex_decode(known->chunk[i].chunk_id, sizeof(ids[i]), ids[i]);
	}
	struct local_key k = local_key(file_id);
	pthread_mutex_lock(&c->local_lock);
	int w = local_fresh(c, k, file_id);
	if (w >= 0) {
		struct local_file *l = &c->local[k.set].way[w];
		l->known_count = (unsigned)known->count;
		l->known_removals = known->removals;
		for (size_t i = 0; i < known->count; i++) {
			memcpy(l->known[i].id, ids[i], sizeof(l->known[i].id));
			l->known[i].size = known->chunk[i].size;
		}
	}
	pthread_mutex_unlock(&c->local_lock);
}

int efs_cache_file_peek(struct efs_cache *c, const char *file_id, struct efs_file_info *out,
			struct efs_reader_known *known)
{
	known->count = 0;
	return local_get(c, file_id, out, known) ? 0 : -EAGAIN;
}

int efs_cache_file_get(struct efs_cache *c, const char *file_id, struct efs_file_info *out,
		       struct efs_reader_known *known)
{
	struct efs_file_info f;
	uint64_t replication, created;
	bool gone;
	if (known)
		known->count = 0;
	if (local_get(c, file_id, out, known))
		return 0;
	json_t *j = cache_get(c, "file", file_id, &gone);
	if (gone)
		return -ENOENT;
	memset(&f, 0, sizeof(f));
	if (j && take_str(j, "file_id", f.file_id, sizeof(f.file_id)) &&
	    take_str(j, "owner", f.owner, sizeof(f.owner)) &&
	    take_str(j, "name", f.name, sizeof(f.name)) && take_u64(j, "size", &f.size) &&
	    take_str(j, "sha256", f.sha256, sizeof(f.sha256)) &&
	    take_u64(j, "chunk_size", &f.chunk_size) &&
	    take_u64(j, "chunk_count", &f.chunk_count) &&
	    take_u64(j, "replication", &replication) &&
	    take_u64(j, "stored_bytes", &f.stored_bytes) && take_u64(j, "created_at", &created) &&
	    strcmp(f.file_id, file_id) == 0) {
		/* absent from entries cached before policies: "" (replicas) */
		(void)take_str(j, "policy", f.policy, sizeof(f.policy));
		json_decref(j);
		f.replication = (unsigned)replication;
		f.created_at_ms = (int64_t)created;
		local_put(c, &f);
		*out = f;
		return 0;
	}
	json_decref(j);
	int r = efs_meta_file_get(c->meta, file_id, &f);
	if (r < 0)
		return r;
	if (c->redis)
		cache_put(c, "file", file_id,
			  json_pack("{s:s, s:s, s:s, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:s}", "file_id",
				    f.file_id, "owner", f.owner, "name", f.name, "size",
				    (json_int_t)f.size, "sha256", f.sha256, "chunk_size",
				    (json_int_t)f.chunk_size, "chunk_count", (json_int_t)f.chunk_count,
				    "replication", (json_int_t)f.replication, "stored_bytes",
				    (json_int_t)f.stored_bytes, "created_at",
				    (json_int_t)f.created_at_ms, "policy", f.policy),
			  EFS_FILE_CACHE_TTL_MS);
	local_put(c, &f);
	*out = f;
	return 0;
}

void efs_cache_file_forget(struct efs_cache *c, const char *file_id)
{
	local_forget(c, file_id);
	cache_forget(c, "file", file_id);
}

int efs_cache_session_get(struct efs_cache *c, const char *session_id,
			  struct efs_session_info *out)
{
	struct efs_session_info s;
	uint64_t chunk_size, created, expires;
	bool gone;
	json_t *j = cache_get(c, "session", session_id, &gone);
	if (gone)
		return -ENOENT;
	memset(&s, 0, sizeof(s));
	if (j && take_str(j, "session_id", s.session_id, sizeof(s.session_id)) &&
	    take_str(j, "owner", s.owner, sizeof(s.owner)) &&
	    take_str(j, "name", s.name, sizeof(s.name)) &&
	    take_u64(j, "chunk_size", &chunk_size) && take_u64(j, "created_at", &created) &&
	    take_u64(j, "expires_at", &expires) && strcmp(s.session_id, session_id) == 0) {
		json_t *size = json_object_get(j, "declared_size");
		s.declared_size = json_is_integer(size) ? (int64_t)json_integer_value(size) : -1;
		s.hidden = json_is_true(json_object_get(j, "hidden"));
		s.chunk_size = chunk_size;
		s.created_at_ms = (int64_t)created;
		s.expires_at_ms = (int64_t)expires;
		(void)take_str(j, "policy", s.policy, sizeof(s.policy)); /* "" if absent */
		s.version = -1;
		json_decref(j);
		*out = s;
		return 0;
	}
	json_decref(j);
	int r = efs_meta_session_get(c->meta, session_id, &s);
	if (r < 0)
		return r;
	/* Hidden sessions move their expiry with every chunk: not cached. */
	if (c->redis && !s.hidden)
		cache_put(c, "session", session_id,
			  json_pack("{s:s, s:s, s:s, s:I, s:I, s:b, s:I, s:I, s:s}", "session_id",
				    s.session_id, "owner", s.owner, "name", s.name, "declared_size",
				    (json_int_t)s.declared_size, "chunk_size",
				    (json_int_t)s.chunk_size, "hidden", s.hidden, "created_at",
				    (json_int_t)s.created_at_ms, "expires_at",
				    (json_int_t)s.expires_at_ms, "policy", s.policy),
			  s.expires_at_ms - efs_now_ms());
	*out = s;
	return 0;
}

void efs_cache_session_forget(struct efs_cache *c, const char *session_id)
{
	cache_forget(c, "session", session_id);
}
