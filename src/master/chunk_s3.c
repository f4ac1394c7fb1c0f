/* SPDX-License-Identifier: MIT */
/* chunk_s3.c - chunks as objects of one S3 bucket (chunk_s3.h): one new
 * generation key per PutObject, recorded in the metadata as the chunk's
 * location; dedup by HeadObject for recorded chunks, verified reads, the
 * collector's conditional delete of the generations of the row it took, a
 * listing for the orphan sweep.
 *
 * Why generations (docs/LIFECYCLE.md R13): S3 has no delete conditioned
 * on anything that tells two writes of the same bytes apart (the ETag is
 * the same), so "HeadObject says old, then DeleteObject" on one key for
 * every write of a chunk left a window where another master's fresh
 * PutObject of the same chunk was deleted (W7). With a key per write, the
 * objects a taken row names are written by nobody again: an upload that
 * finds no row writes and records a generation of its own. Generations
 * recorded at once through several masters are trimmed to one
 * (s3_redundant). */
#include "master/chunk_s3.h"
#include "echofs/hash.h"
#include "echofs/log.h"
#include "echofs/s3.h"
#include "echofs/util.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Chunks pinned at once (uploads in flight x their pipeline depth). More
 * fail safe: while any pin found no slot, every chunk counts as pinned. */
#define PIN_SLOTS 1024

struct pin {
	char chunk_id[65];
	unsigned count; /* 0: free slot */
	/* An upload on this master is writing a new generation of the chunk
	 * and has not recorded it yet: the thread that holds that pin
	 * (upload.c pins, puts, records and unpins on one thread). */
	bool writing;
	pthread_t writer;
};

struct s3_backend {
	struct efs_aws_client *aws;
	struct efs_s3 *s3;
	char bucket[EFS_S3_MAX_BUCKET + 1];
	char endpoint[EFS_AWS_MAX_AUTHORITY + 16]; /* for log lines */
	pthread_mutex_t lock;
	pthread_cond_t written; /* a pin's @writing ended */
	struct pin pins[PIN_SLOTS];
	unsigned pin_overflow; /* pins that found no slot, still held */
};

/* Most generations one operation looks at (a row's locations). */
#define GENS_MAX EFS_MAX_REPLICAS

void efs_chunk_s3_key(const char *chunk_id, const char *gen, char key[EFS_CHUNK_S3_KEY_SIZE])
{
	if (gen && gen[0])
		snprintf(key, EFS_CHUNK_S3_KEY_SIZE, EFS_CHUNK_S3_PREFIX "%.2s/%.64s.%.16s",
			 chunk_id, chunk_id, gen);
	else
		snprintf(key, EFS_CHUNK_S3_KEY_SIZE, EFS_CHUNK_S3_PREFIX "%.2s/%.64s", chunk_id,
			 chunk_id);
}

static bool lower_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* The generation a recorded location names ("s3:<16 hex>"), or NULL when
 * it is not one of this backend's. */
static const char *location_gen(const char *location)
{
	size_t plen = strlen(EFS_CHUNK_S3_LOCATION_PREFIX);
	if (strncmp(location, EFS_CHUNK_S3_LOCATION_PREFIX, plen) != 0 ||
	    strlen(location + plen) != EFS_CHUNK_S3_GEN_LEN ||
	    !lower_hex(location + plen, EFS_CHUNK_S3_GEN_LEN))
		return NULL;
	return location + plen;
}

/* The generations @known names into @gens (each EFS_CHUNK_S3_GEN_LEN + 1
 * bytes), at most GENS_MAX; with none, one "": the legacy key. Returns how
 * many (at least 1). */
static unsigned known_gens(const struct efs_replica *known, unsigned known_count,
			   char (*gens)[EFS_CHUNK_S3_GEN_LEN + 1])
{
	unsigned n = 0;
	for (unsigned i = 0; known && i < known_count && n < GENS_MAX; i++) {
		const char *gen = location_gen(known[i].worker_id);
		if (gen)
			efs_strlcpy(gens[n++], gen, sizeof(gens[0]));
	}
	if (n == 0)
		gens[n++][0] = '\0';
	return n;
}

/* S3's failure as the backend's errno: no answer, a 5xx or throttling
 * after aws.c's retries is "unreachable" (-EHOSTUNREACH: 503
 * chunk_store_unavailable); AWS's refusals keep aws.c's mapping. */
static int s3_errno(int r, const struct efs_s3_error *err)
{
	if (r == -ENOMEM || r == -EINVAL || r == -E2BIG)
		return r;
	if (err->status == 0 || err->status >= 500 || err->status == 429 || r == -EAGAIN)
		return -EHOSTUNREACH;
	return r;
}

static const char *meta_value(const struct efs_s3_object_info *info, const char *name)
{
	for (size_t i = 0; i < info->meta_count; i++)
		if (strcmp(info->meta[i].name, name) == 0)
			return info->meta[i].value;
	return NULL;
}

/* ---- pins (under lock) -------------------------------------------------- */

static struct pin *pin_find(struct s3_backend *b, const char *chunk_id)
{
	for (size_t i = 0; i < PIN_SLOTS; i++)
		if (b->pins[i].count > 0 && strcmp(b->pins[i].chunk_id, chunk_id) == 0)
			return &b->pins[i];
	return NULL;
}

static bool pinned_locked(struct s3_backend *b, const char *chunk_id)
{
	return b->pin_overflow > 0 || pin_find(b, chunk_id) != NULL;
}

static void s3_pin(void *impl, const char *chunk_id)
{
	struct s3_backend *b = impl;
	pthread_mutex_lock(&b->lock);
	struct pin *p = pin_find(b, chunk_id);
	for (size_t i = 0; !p && i < PIN_SLOTS; i++)
		if (b->pins[i].count == 0) {
			p = &b->pins[i];
			efs_strlcpy(p->chunk_id, chunk_id, sizeof(p->chunk_id));
		}
	if (p)
		p->count++;
	else if (b->pin_overflow++ == 0)
		efs_warn("s3: more than %d chunks being written at once: the orphan sweep keeps "
			 "every object until they end",
			 PIN_SLOTS);
	pthread_mutex_unlock(&b->lock);
}

static void s3_unpin(void *impl, const char *chunk_id)
{
	struct s3_backend *b = impl;
	pthread_mutex_lock(&b->lock);
	struct pin *p = pin_find(b, chunk_id);
	if (p) {
		p->count--;
		if (p->writing && pthread_equal(p->writer, pthread_self())) {
			p->writing = false; /* recorded (or given up): the others look again */
			pthread_cond_broadcast(&b->written);
		}
	} else if (b->pin_overflow > 0) {
		b->pin_overflow--;
	}
	pthread_mutex_unlock(&b->lock);
}

/* Before a new generation of @chunk_id is written: when another upload on
 * this master is writing one (same bytes in flight twice: a file of
 * repeated chunks, two clients), waits until it recorded it and returns
 * -ESTALE, so that the caller looks the chunk up again and deduplicates
 * instead of storing a second object. Else marks this thread the writer
 * and returns 0. Only the uploads of one master coalesce: two masters may
 * each write and record a generation; the trim after the record keeps one
 * (s3_redundant, upload.c). */
static int claim_writer(struct s3_backend *b, const char *chunk_id)
{
	int r = 0;
	pthread_mutex_lock(&b->lock);
	struct pin *p = pin_find(b, chunk_id);
	if (p && p->writing && !pthread_equal(p->writer, pthread_self())) {
		while ((p = pin_find(b, chunk_id)) && p->writing)
			pthread_cond_wait(&b->written, &b->lock);
		r = -ESTALE;
	} else if (p) {
		p->writing = true;
		p->writer = pthread_self();
	}
	pthread_mutex_unlock(&b->lock);
	return r;
}

static bool s3_pinned(void *impl, const char *chunk_id)
{
	struct s3_backend *b = impl;
	pthread_mutex_lock(&b->lock);
	bool r = pinned_locked(b, chunk_id);
	pthread_mutex_unlock(&b->lock);
	return r;
}

/* ---- operations --------------------------------------------------------- */

static int s3_put(void *impl, const struct efs_chunk_info *chunk, const void *stored,
		  const struct efs_replica *known, unsigned known_count, bool recorded,
		  struct efs_chunk_put_result *out)
{
	struct s3_backend *b = impl;
	struct efs_s3_error err;
	struct efs_s3_meta meta[2];
	char key[EFS_CHUNK_S3_KEY_SIZE];
	char gens[GENS_MAX][EFS_CHUNK_S3_GEN_LEN + 1];
	char gen[EFS_CHUNK_S3_GEN_LEN + 1];
	const char *op = "PutObject";
	int r;

	memset(&err, 0, sizeof(err));
	key[0] = '\0';
	if (recorded) {
		/* A row is not an object: only one S3 answers for counts. The
		 * row's own objects (the legacy key when it names none). */
		unsigned n = known_gens(known, known_count, gens);
		for (unsigned i = 0; i < n; i++) {
			struct efs_s3_object_info info;
			efs_chunk_s3_key(chunk->chunk_id, gens[i], key);
			r = efs_s3_head(b->s3, key, &info, &err);
			if (r == 0 && info.size == chunk->stored_size)
				return 0; /* deduplicated: nothing sent */
			if (r < 0 && r != -ENOENT) {
				op = "HeadObject";
				goto fail;
			}
		}
		/* Gone (or another size: a foreign object): written anew. */
	}
	if (claim_writer(b, chunk->chunk_id) == -ESTALE)
		return -ESTALE; /* stored meanwhile through this master: look again */
	/* A key nobody wrote before: whatever a collector is deleting, it is
	 * not this object (R13). */
	if ((r = efs_random_hex(gen, EFS_CHUNK_S3_GEN_LEN / 2)) < 0)
		goto fail;
	efs_chunk_s3_key(chunk->chunk_id, gen, key);
	uint32_t crc = efs_crc32c(0, stored, chunk->stored_size);
	efs_strlcpy(meta[0].name, "encoding", sizeof(meta[0].name));
	efs_strlcpy(meta[0].value, chunk->compressed ? "gzip" : "raw", sizeof(meta[0].value));
	efs_strlcpy(meta[1].name, "crc32c", sizeof(meta[1].name));
	snprintf(meta[1].value, sizeof(meta[1].value), "%08" PRIx32, crc);
	out->sent = true;
	r = efs_s3_put(b->s3, key, stored, chunk->stored_size, "application/octet-stream", meta, 2,
		       NULL, &err);
	if (r == 0) {
		snprintf(out->location_ids[0], sizeof(out->location_ids[0]),
			 EFS_CHUNK_S3_LOCATION_PREFIX "%s", gen);
		out->location_count = 1;
		return 0;
	}
fail:
	efs_warn("chunk %.12s: %s s3://%s/%s at %s failed: %s%s%s (status %ld, %d attempts)",
		 chunk->chunk_id, op, b->bucket, key, b->endpoint, err.code, err.code[0] ? " " : "",
		 err.message[0] ? err.message : strerror(-r), err.status, err.attempts);
	/* Whatever S3 answered (unreachable, AccessDenied, NoSuchBucket...),
	 * the chunk cannot be stored: 503 chunk_store_unavailable, the
	 * warning above says why. -ENOENT must not reach the caller (it
	 * means "the session ended" there). A PutObject that failed may
	 * still have stored its object: no row names it, so the orphan
	 * sweep removes it (R14). */
	return r == -ENOMEM ? r : -EHOSTUNREACH;
}

/* One object of the chunk, decoded and verified, into @out. */
static int get_object(struct s3_backend *b, const struct efs_chunk_info *chunk, const char *gen,
		      struct efs_buf *out, struct efs_buf *scratch)
{
	struct efs_s3_object_info info;
	struct efs_s3_error err;
	char key[EFS_CHUNK_S3_KEY_SIZE];
	size_t scratch_cap = scratch->cap;
	int r;

	memset(&err, 0, sizeof(err));
	efs_chunk_s3_key(chunk->chunk_id, gen, key);
	/* Raw or gzip (kept only when smaller): never more than the chunk;
	 * one byte over tells a longer object from an exact one. */
	size_t cap = (size_t)EFS_MAX(chunk->stored_size, chunk->size) + 1;
	r = efs_s3_get(b->s3, key, 0, 0, cap, scratch, &info, &err);
	scratch->cap = scratch_cap;
	if (r == -ENOENT || r == -E2BIG)
		return -EIO; /* lost, or not a chunk of that id */
	if (r < 0)
		return s3_errno(r, &err);
	const char *encoding = meta_value(&info, "encoding");
	const char *crc_text = meta_value(&info, "crc32c");
	const char *bytes = scratch->data ? scratch->data : "";
	if (crc_text) {
		char crc[16];
		snprintf(crc, sizeof(crc), "%08" PRIx32, efs_crc32c(0, bytes, scratch->len));
		if (strcmp(crc, crc_text) != 0)
			return -EIO;
	}
	bool gzip = encoding ? strcmp(encoding, "gzip") == 0 : chunk->compressed;
	r = efs_chunk_from_stored(chunk, gzip, scratch, out);
	return r == -EBADMSG ? -EIO : r;
}

static int s3_get(void *impl, const struct efs_chunk_info *chunk, const struct efs_replica *known,
		  unsigned known_count, struct efs_buf *out, struct efs_buf *scratch)
{
	struct s3_backend *b = impl;
	char gens[GENS_MAX][EFS_CHUNK_S3_GEN_LEN + 1];
	unsigned n = known_gens(known, known_count, gens);
	int r = -EIO;
	/* Usually one generation; several when uploads through several
	 * masters stored the chunk at once. A lost or bad one is skipped; S3
	 * unreachable is the answer only when no other one verified. */
	for (unsigned i = 0; i < n; i++) {
		int g = get_object(b, chunk, gens[i], out, scratch);
		if (g == 0 || g == -ENOMEM)
			return g;
		if (r == -EIO)
			r = g;
	}
	return r;
}

/* The object's age on S3's clock (Date minus Last-Modified), or -1 when
 * either is missing or unreadable. */
static int64_t object_age_ms(const struct efs_s3_object_info *info)
{
	int64_t now_ms, modified_ms;
	if (efs_s3_parse_http_date(info->date, &now_ms) < 0 ||
	    efs_s3_parse_http_date(info->last_modified, &modified_ms) < 0)
		return -1;
	return now_ms - modified_ms;
}

/* Deletes the object at @key unless S3 says it was written within
 * @unmodified_for_ms (negative: unconditionally, without asking). 0
 * (deleted, kept young, or already gone) or 1 (left: S3 failed or gave no
 * age; logged). */
static int remove_object(struct s3_backend *b, const char *chunk_id, const char *key,
			 int64_t unmodified_for_ms)
{
	struct efs_s3_object_info info;
	struct efs_s3_error err;
	const char *op = "HeadObject";
	int r;

	memset(&err, 0, sizeof(err));
	if (unmodified_for_ms < 0)
		goto delete;
	r = efs_s3_head(b->s3, key, &info, &err);
	if (r == -ENOENT)
		return 0; /* already gone */
	if (r < 0)
		goto failed;
	int64_t age = object_age_ms(&info);
	if (age < 0) {
		efs_warn("chunk %.12s: s3://%s/%s has no readable Date/Last-Modified ('%s', '%s'); "
			 "kept",
			 chunk_id, b->bucket, key, info.date, info.last_modified);
		return 1;
	}
	if (age <= unmodified_for_ms) {
		efs_debug("chunk %.12s: s3://%s/%s written %lld ms ago by S3's clock; kept",
			  chunk_id, b->bucket, key, (long long)age);
		return 0;
	}
delete:
	op = "DeleteObject";
	r = efs_s3_delete(b->s3, key, &err);
	if (r == 0) {
		efs_debug("chunk %.12s: s3://%s/%s deleted", chunk_id, b->bucket, key);
		return 0;
	}
failed:
	efs_warn("chunk %.12s: %s s3://%s/%s at %s failed: %s%s%s (status %ld, %d attempts); left "
		 "as an orphan",
		 chunk_id, op, b->bucket, key, b->endpoint, err.code, err.code[0] ? " " : "",
		 err.message[0] ? err.message : strerror(-r), err.status, err.attempts);
	return 1;
}

/* LIFECYCLE R13: the objects @known names (a taken row's generations, a
 * listed orphan's; the legacy key when it names none) go when S3 says
 * they were last written more than @unmodified_for_ms ago. No upload
 * writes any of them again (each PutObject draws a new generation), so the
 * HeadObject's answer still holds at the DeleteObject, whichever master
 * stores the chunk meanwhile. */
static int s3_remove(void *impl, const char *chunk_id, const struct efs_replica *known,
		     unsigned known_count, int64_t unmodified_for_ms, uint64_t lease_epoch)
{
	struct s3_backend *b = impl;
	/* S3 takes no fencing token: the conditional delete (the object's
	 * age on S3's clock) is what guards a late one. */
	(void)lease_epoch;
	char gens[GENS_MAX][EFS_CHUNK_S3_GEN_LEN + 1];
	char key[EFS_CHUNK_S3_KEY_SIZE];
	unsigned n = known_gens(known, known_count, gens);
	int failed = 0;
	for (unsigned i = 0; i < n; i++) {
		efs_chunk_s3_key(chunk_id, gens[i], key);
		failed += remove_object(b, chunk_id, key, unmodified_for_ms);
	}
	return failed;
}

/* LIFECYCLE R13, trim: uploads of the same new bytes through several
 * masters at once each wrote and recorded a generation. The smallest
 * recorded one is kept (every master that reads the row picks the same
 * one, and a keeper is never dropped by anyone, since only larger ones
 * are), once a HeadObject confirms it holds the chunk: a recorded
 * generation that was lost keeps the others. */
static int s3_redundant(void *impl, const struct efs_chunk_info *chunk,
			const struct efs_replica *known, unsigned known_count,
			char keep[EFS_ID_MAX + 1], char (*drop)[EFS_ID_MAX + 1], unsigned *drop_count)
{
	struct s3_backend *b = impl;
	char gens[GENS_MAX][EFS_CHUNK_S3_GEN_LEN + 1];
	char key[EFS_CHUNK_S3_KEY_SIZE];
	struct efs_s3_object_info info;
	struct efs_s3_error err;
	unsigned n = known_gens(known, known_count, gens);
	unsigned smallest = 0;

	*drop_count = 0;
	if (n < 2)
		return 0; /* one generation (or the legacy key alone) */
	for (unsigned i = 1; i < n; i++)
		if (strcmp(gens[i], gens[smallest]) < 0)
			smallest = i;
	memset(&err, 0, sizeof(err));
	efs_chunk_s3_key(chunk->chunk_id, gens[smallest], key);
	int r = efs_s3_head(b->s3, key, &info, &err);
	if (r < 0 || info.size != chunk->stored_size) {
		efs_warn("chunk %.12s: %u recorded generations, but s3://%s/%s, the one to keep, "
			 "%s: all kept",
			 chunk->chunk_id, n, b->bucket, key,
			 r == -ENOENT ? "is missing" : r < 0 ? "could not be checked" : "has another size");
		return 0;
	}
	snprintf(keep, EFS_ID_MAX + 1, EFS_CHUNK_S3_LOCATION_PREFIX "%.16s", gens[smallest]);
	for (unsigned i = 0; i < n; i++)
		if (i != smallest)
			snprintf(drop[(*drop_count)++], EFS_ID_MAX + 1,
				 EFS_CHUNK_S3_LOCATION_PREFIX "%.16s", gens[i]);
	return 0;
}

static int s3_exists(void *impl, const char *chunk_id, const struct efs_replica *known,
		     unsigned known_count)
{
	struct s3_backend *b = impl;
	char gens[GENS_MAX][EFS_CHUNK_S3_GEN_LEN + 1];
	char key[EFS_CHUNK_S3_KEY_SIZE];
	unsigned n = known_gens(known, known_count, gens);
	int r = 0;
	for (unsigned i = 0; i < n; i++) {
		struct efs_s3_error err;
		memset(&err, 0, sizeof(err));
		efs_chunk_s3_key(chunk_id, gens[i], key);
		int e = efs_s3_head(b->s3, key, NULL, &err);
		if (e == 0)
			return 1;
		if (e != -ENOENT && r == 0)
			r = s3_errno(e, &err);
	}
	return r;
}

/* @key as a chunk's object: "chunks/ab/<id>.<gen>" (@listed->location
 * "s3:<gen>") or the legacy "chunks/ab/<id>" (location ""). -EINVAL for
 * anything else. */
static int key_parse(const char *key, struct efs_chunk_listed *listed)
{
	size_t plen = strlen(EFS_CHUNK_S3_PREFIX);
	size_t len = strlen(key);
	size_t legacy = plen + 3 + 64;
	if (strncmp(key, EFS_CHUNK_S3_PREFIX, plen) != 0 ||
	    (len != legacy && len != legacy + 1 + EFS_CHUNK_S3_GEN_LEN))
		return -EINVAL;
	const char *id = key + plen + 3;
	if (key[plen + 2] != '/' || strncmp(key + plen, id, 2) != 0 || !lower_hex(id, 64))
		return -EINVAL;
	const char *gen = id + 64;
	if (len > legacy && (gen[0] != '.' || !lower_hex(gen + 1, EFS_CHUNK_S3_GEN_LEN)))
		return -EINVAL;
	memcpy(listed->chunk_id, id, 64);
	listed->chunk_id[64] = '\0';
	if (len > legacy)
		snprintf(listed->location, sizeof(listed->location),
			 EFS_CHUNK_S3_LOCATION_PREFIX "%s", gen + 1);
	else
		listed->location[0] = '\0';
	return 0;
}

static int s3_list(void *impl, char *cursor, size_t max, struct efs_chunk_listed *out,
		   size_t *count)
{
	struct s3_backend *b = impl;
	struct efs_s3_list list;
	struct efs_s3_error err;
	size_t n = 0;

	memset(&err, 0, sizeof(err));
	memset(&list, 0, sizeof(list));
	max = EFS_MIN(max, (size_t)EFS_S3_MAX_LIST_KEYS);
	if (max == 0)
		return -EINVAL;
	int r = efs_s3_list(b->s3, EFS_CHUNK_S3_PREFIX, cursor, (unsigned)max, &list, &err);
	if (r < 0)
		return s3_errno(r, &err);
	for (size_t i = 0; i < list.count; i++)
		/* anything else under the prefix is not ours to judge */
		if (key_parse(list.entries[i].key, &out[n]) == 0)
			n++;
	if (list.truncated)
		efs_strlcpy(cursor, list.next_token, EFS_CHUNK_LIST_CURSOR_MAX);
	else
		cursor[0] = '\0';
	efs_s3_list_release(&list);
	*count = n;
	return 0;
}

static int s3_health(void *impl, struct efs_chunk_health *out)
{
	struct s3_backend *b = impl;
	struct efs_s3_error err;
	memset(&err, 0, sizeof(err));
	int r = efs_s3_bucket_head(b->s3, &err);
	out->ok = r == 0;
	if (r == 0)
		out->detail[0] = '\0';
	else if (err.status == 0)
		snprintf(out->detail, sizeof(out->detail), "bucket %s at %.60s unreachable: %.150s",
			 b->bucket, b->endpoint, err.message[0] ? err.message : strerror(-r));
	else
		snprintf(out->detail, sizeof(out->detail), "bucket %s at %.60s: %.30s (HTTP %ld)",
			 b->bucket, b->endpoint, err.code[0] ? err.code : strerror(-r), err.status);
	return 0;
}

static void s3_free(void *impl)
{
	struct s3_backend *b = impl;
	if (!b)
		return;
	efs_s3_free(b->s3);
	efs_aws_client_free(b->aws);
	pthread_cond_destroy(&b->written);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

static const struct efs_chunk_backend_ops s3_ops = {
    .name = "s3",
    .put = s3_put,
    .get = s3_get,
    .remove = s3_remove,
    .exists = s3_exists,
    .list = s3_list,
    .redundant = s3_redundant,
    .pin = s3_pin,
    .unpin = s3_unpin,
    .pinned = s3_pinned,
    .health = s3_health,
    .free = s3_free,
};

int efs_chunk_s3_new(const struct efs_chunk_s3_config *cfg, struct efs_chunk_backend **out)
{
	struct s3_backend *b = calloc(1, sizeof(*b));
	int r;
	if (!b)
		return -ENOMEM;
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->written, NULL);
	efs_strlcpy(b->bucket, cfg->bucket, sizeof(b->bucket));
	snprintf(b->endpoint, sizeof(b->endpoint), "%s://%s", cfg->aws->s3.https ? "https" : "http",
		 cfg->aws->s3.authority);
	if ((r = efs_aws_client_new(cfg->aws, cfg->http, &b->aws)) < 0 ||
	    (r = efs_s3_new(b->aws, cfg->bucket, &b->s3)) < 0) {
		s3_free(b);
		return r;
	}
	return efs_chunk_backend_new(&s3_ops, b, out);
}
