/* SPDX-License-Identifier: MIT */
/* chunk_s3.c - chunks as objects of one S3 bucket (chunk_s3.h): dedup by
 * HeadObject for recorded chunks, verified reads, the collector's
 * conditional delete by S3's own clock, a listing for the orphan sweep.
 *
 * Within one master, a remove and a put of the same chunk never overlap:
 * the remove skips a pinned chunk (an upload holds its pin from before it
 * looks the chunk up until its record committed), and a put waits while a
 * remove of its chunk is between its HeadObject and its DeleteObject. So a
 * chunk this master stores again after the collector took its row is
 * either kept (pinned first) or written after the delete. */
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
};

struct s3_backend {
	struct efs_aws_client *aws;
	struct efs_s3 *s3;
	char bucket[EFS_S3_MAX_BUCKET + 1];
	char endpoint[EFS_AWS_MAX_AUTHORITY + 16]; /* for log lines */
	pthread_mutex_t lock;
	pthread_cond_t removed; /* @removing changed */
	struct pin pins[PIN_SLOTS];
	unsigned pin_overflow; /* pins that found no slot, still held */
	char removing[65];     /* the chunk a remove is deleting, or "" */
};

void efs_chunk_s3_key(const char *chunk_id, char key[EFS_CHUNK_S3_KEY_SIZE])
{
	snprintf(key, EFS_CHUNK_S3_KEY_SIZE, EFS_CHUNK_S3_PREFIX "%.2s/%.64s", chunk_id, chunk_id);
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

/* ---- pins and the remove in progress (under lock) ---------------------- */

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
		efs_warn("s3: more than %d chunks being written at once: the orphan sweep and the "
			 "collector keep every chunk until they end",
			 PIN_SLOTS);
	pthread_mutex_unlock(&b->lock);
}

static void s3_unpin(void *impl, const char *chunk_id)
{
	struct s3_backend *b = impl;
	pthread_mutex_lock(&b->lock);
	struct pin *p = pin_find(b, chunk_id);
	if (p)
		p->count--;
	else if (b->pin_overflow > 0)
		b->pin_overflow--;
	pthread_mutex_unlock(&b->lock);
}

static bool s3_pinned(void *impl, const char *chunk_id)
{
	struct s3_backend *b = impl;
	pthread_mutex_lock(&b->lock);
	bool r = pinned_locked(b, chunk_id);
	pthread_mutex_unlock(&b->lock);
	return r;
}

/* Waits until no remove of @chunk_id is between its HEAD and its DELETE. */
static void wait_not_removing(struct s3_backend *b, const char *chunk_id)
{
	pthread_mutex_lock(&b->lock);
	while (strcmp(b->removing, chunk_id) == 0)
		pthread_cond_wait(&b->removed, &b->lock);
	pthread_mutex_unlock(&b->lock);
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
	const char *op = "PutObject";
	int r;

	(void)known;
	(void)known_count;
	memset(&err, 0, sizeof(err));
	efs_chunk_s3_key(chunk->chunk_id, key);
	wait_not_removing(b, chunk->chunk_id);
	if (recorded) {
		/* A row is not an object: only one S3 answers for counts. */
		struct efs_s3_object_info info;
		r = efs_s3_head(b->s3, key, &info, &err);
		if (r == 0 && info.size == chunk->stored_size)
			return 0; /* deduplicated: nothing sent */
		if (r < 0 && r != -ENOENT) {
			op = "HeadObject";
			goto fail;
		}
		/* Gone (or another size: a foreign object): written anew. */
	}
	uint32_t crc = efs_crc32c(0, stored, chunk->stored_size);
	efs_strlcpy(meta[0].name, "encoding", sizeof(meta[0].name));
	efs_strlcpy(meta[0].value, chunk->compressed ? "gzip" : "raw", sizeof(meta[0].value));
	efs_strlcpy(meta[1].name, "crc32c", sizeof(meta[1].name));
	snprintf(meta[1].value, sizeof(meta[1].value), "%08" PRIx32, crc);
	out->sent = true;
	r = efs_s3_put(b->s3, key, stored, chunk->stored_size, "application/octet-stream", meta, 2,
		       NULL, &err);
	if (r == 0)
		return 0;
fail:
	efs_warn("chunk %.12s: %s s3://%s/%s at %s failed: %s%s%s (status %ld, %d attempts)",
		 chunk->chunk_id, op, b->bucket, key, b->endpoint, err.code, err.code[0] ? " " : "",
		 err.message[0] ? err.message : strerror(-r), err.status, err.attempts);
	/* Whatever S3 answered (unreachable, AccessDenied, NoSuchBucket...),
	 * the chunk cannot be stored: 503 chunk_store_unavailable, the
	 * warning above says why. -ENOENT must not reach the caller (it
	 * means "the session ended" there). */
	return r == -ENOMEM ? r : -EHOSTUNREACH;
}

static int s3_get(void *impl, const struct efs_chunk_info *chunk, const struct efs_replica *known,
		  unsigned known_count, struct efs_buf *out, struct efs_buf *scratch)
{
	struct s3_backend *b = impl;
	struct efs_s3_object_info info;
	struct efs_s3_error err;
	char key[EFS_CHUNK_S3_KEY_SIZE];
	size_t scratch_cap = scratch->cap;
	int r;

	(void)known;
	(void)known_count;
	memset(&err, 0, sizeof(err));
	efs_chunk_s3_key(chunk->chunk_id, key);
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

/* LIFECYCLE R4-S3: a pinned chunk is kept; else the object goes only when
 * S3 says it was last written more than @unmodified_for_ms ago. */
static int s3_remove(void *impl, const char *chunk_id, const struct efs_replica *known,
		     unsigned known_count, int64_t unmodified_for_ms, uint64_t lease_epoch)
{
	struct s3_backend *b = impl;
	struct efs_s3_object_info info;
	struct efs_s3_error err;
	char key[EFS_CHUNK_S3_KEY_SIZE];
	const char *op = "HeadObject";
	int failed = 0, r;

	(void)known;
	(void)known_count;
	/* S3 takes no fencing token: the conditional delete (the object's
	 * age on S3's clock) is what guards a late one. */
	(void)lease_epoch;
	memset(&err, 0, sizeof(err));
	efs_chunk_s3_key(chunk_id, key);
	pthread_mutex_lock(&b->lock);
	if (pinned_locked(b, chunk_id)) {
		pthread_mutex_unlock(&b->lock);
		efs_debug("chunk %.12s: being stored again; its object is kept", chunk_id);
		return 0;
	}
	/* One remove at a time: the collector's thread is the only caller. */
	efs_strlcpy(b->removing, chunk_id, sizeof(b->removing));
	pthread_mutex_unlock(&b->lock);

	r = efs_s3_head(b->s3, key, &info, &err);
	if (r == -ENOENT) {
		r = 0; /* already gone */
		goto out;
	}
	if (r < 0)
		goto out;
	int64_t age = object_age_ms(&info);
	if (age < 0) {
		efs_warn("chunk %.12s: s3://%s/%s has no readable Date/Last-Modified ('%s', '%s'); "
			 "kept",
			 chunk_id, b->bucket, key, info.date, info.last_modified);
		failed = 1;
		goto out;
	}
	if (age <= unmodified_for_ms) {
		efs_debug("chunk %.12s: written %lld ms ago by S3's clock; kept", chunk_id,
			  (long long)age);
		goto out;
	}
	op = "DeleteObject";
	r = efs_s3_delete(b->s3, key, &err);
	if (r == 0)
		efs_debug("chunk %.12s: s3://%s/%s deleted", chunk_id, b->bucket, key);
out:
	if (r < 0) {
		failed = 1;
		efs_warn("chunk %.12s: %s s3://%s/%s at %s failed: %s%s%s (status %ld, %d "
			 "attempts); left as an orphan",
			 chunk_id, op, b->bucket, key, b->endpoint, err.code,
			 err.code[0] ? " " : "", err.message[0] ? err.message : strerror(-r),
			 err.status, err.attempts);
	}
	pthread_mutex_lock(&b->lock);
	b->removing[0] = '\0';
	pthread_cond_broadcast(&b->removed);
	pthread_mutex_unlock(&b->lock);
	return failed;
}

static int s3_exists(void *impl, const char *chunk_id, const struct efs_replica *known,
		     unsigned known_count)
{
	struct s3_backend *b = impl;
	struct efs_s3_error err;
	char key[EFS_CHUNK_S3_KEY_SIZE];
	(void)known;
	(void)known_count;
	memset(&err, 0, sizeof(err));
	efs_chunk_s3_key(chunk_id, key);
	int r = efs_s3_head(b->s3, key, NULL, &err);
	if (r == -ENOENT)
		return 0;
	return r < 0 ? s3_errno(r, &err) : 1;
}

/* The chunk id of @key when it is a chunk's ("chunks/ab/ab..."), else NULL. */
static const char *key_chunk_id(const char *key)
{
	size_t plen = strlen(EFS_CHUNK_S3_PREFIX);
	if (strlen(key) != plen + 3 + 64 || strncmp(key, EFS_CHUNK_S3_PREFIX, plen) != 0)
		return NULL;
	const char *id = key + plen + 3;
	if (key[plen + 2] != '/' || strncmp(key + plen, id, 2) != 0)
		return NULL;
	for (size_t i = 0; i < 64; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return NULL;
	return id;
}

static int s3_list(void *impl, char *cursor, size_t max, char (*ids)[65], size_t *count)
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
	for (size_t i = 0; i < list.count; i++) {
		const char *id = key_chunk_id(list.entries[i].key);
		if (id) /* anything else under the prefix is not ours to judge */
			efs_strlcpy(ids[n++], id, sizeof(ids[0]));
	}
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
	pthread_cond_destroy(&b->removed);
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
	pthread_cond_init(&b->removed, NULL);
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
