/* SPDX-License-Identifier: MIT */
/* dynamodb_s3.c - the S3 API's buckets and objects on DynamoDB, as extra
 * items of the files table (docs/AWS.md "S3 buckets and objects"):
 *
 *   BUCKET#<name>    / META           name, owner, region, created_at;
 *                                     deleting, deleting_at while a delete runs
 *   BUCKETS#<owner>  / B#<name>       name, owner, region, created_at (listing)
 *   BUCKETS#<owner>  / COUNT          bucket_count (the per-owner cap)
 *   OBJECTS#<bucket> / <object key>   file_id, size, etag, headers, user_meta,
 *                                     last_modified
 *
 * and on the file's META item, s3_bucket and s3_key: the link back, written
 * in the put's transaction, so that deleting the file through the REST API
 * removes the object too (as SQL's sql_file_release does) and a replaced
 * file is released by exactly one transaction.
 *
 * An object's sort key is its key: DynamoDB orders sort keys by their UTF-8
 * bytes, so a listing is one Query of the bucket's partition from a cursor,
 * never a Scan, and reads at most the page asked for.
 *
 * Writes into a bucket check in their transaction that the bucket META
 * exists and carries no `deleting` mark. A bucket delete sets the mark (a
 * random token), then reads the partition (consistently, one item); when
 * empty it deletes the bucket in a transaction conditioned on its own
 * token, else it clears the mark: a put that committed before the mark is
 * seen by the read, one after it fails its check. A mark whose deleter died
 * is cleared by the next put after DYN_RELEASE_STALE_MS (conditioned on the
 * token read, so a slow deleter then fails its final condition and deletes
 * nothing) or taken over by the next delete.
 *
 * Replacing or deleting an object is one transaction that also deletes the
 * old file's META (conditioned on its link to this key) and puts a release
 * marker; dyn_release() then subtracts its chunk references, and the lease
 * holder finishes a release whose master died (docs/AWS.md, rule 3).
 */
#include "meta/dynamodb.h"

#include "echofs/log.h"
#include "echofs/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BUCKET_PK "BUCKET#"
#define OWNER_PK "BUCKETS#"
#define LIST_SK "B#"
#define COUNT_SK "COUNT"
#define OBJECTS_PK "OBJECTS#"
#define FILE_PK "FILE#"

void (*dyn_test_bucket_delete_hook)(const char *bucket);

#define BUCKET_PK_MAX (EFS_S3_BUCKET_MAX + 16)
#define OWNER_PK_MAX (EFS_ID_MAX + 16)

static void bucket_pk(const char *name, char out[BUCKET_PK_MAX])
{
	snprintf(out, BUCKET_PK_MAX, BUCKET_PK "%s", name);
}

static void owner_pk(const char *owner, char out[OWNER_PK_MAX])
{
	snprintf(out, OWNER_PK_MAX, OWNER_PK "%s", owner);
}

static void list_sk(const char *name, char out[BUCKET_PK_MAX])
{
	snprintf(out, BUCKET_PK_MAX, LIST_SK "%s", name);
}

static void objects_pk(const char *bucket, char out[BUCKET_PK_MAX])
{
	snprintf(out, BUCKET_PK_MAX, OBJECTS_PK "%s", bucket);
}

static void file_pk(const char *file_id, char out[EFS_ID_MAX + 16])
{
	snprintf(out, EFS_ID_MAX + 16, FILE_PK "%s", file_id);
}

/* ---- buckets ---------------------------------------------------------- */

static json_t *bucket_item(const char *pk, const char *sk, const struct efs_bucket_info *b)
{
	return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "pk", ddb_s(pk), "sk", ddb_s(sk), "name",
			 ddb_s(b->name), "owner", ddb_s(b->owner), "region", ddb_s(b->region),
			 "created_at", ddb_n(b->created_at_ms));
}

static int bucket_from_item(const json_t *item, struct efs_bucket_info *b)
{
	memset(b, 0, sizeof(*b));
	if (ddb_get_s(item, "name", b->name, EFS_S3_BUCKET_MAX) < 0 ||
	    ddb_get_s(item, "owner", b->owner, EFS_ID_MAX) < 0 ||
	    ddb_get_s(item, "region", b->region, EFS_S3_REGION_MAX) < 0 ||
	    ddb_get_n(item, "created_at", &b->created_at_ms) < 0)
		return -EIO;
	return 0;
}

int dyn_bucket_create(void *impl, const struct efs_bucket_info *b)
{
	struct dyn *d = impl;
	struct ddb_result res;
	char bpk[BUCKET_PK_MAX], opk[OWNER_PK_MAX], lsk[BUCKET_PK_MAX];
	int r = -EAGAIN;

	bucket_pk(b->name, bpk);
	owner_pk(b->owner, opk);
	list_sk(b->name, lsk);
	for (int attempt = 0; attempt < DYN_TX_ATTEMPTS; attempt++) {
		json_t *items = json_array();
		/* names are unique in the cluster: of two creates one puts the META */
		json_array_append_new(items, dyn_tx_put(d->files, bucket_item(bpk, "META", b),
							"attribute_not_exists(pk)", NULL, NULL));
		json_array_append_new(items, dyn_tx_put(d->files, bucket_item(opk, lsk, b), NULL,
							NULL, NULL));
		json_array_append_new(
		    items, dyn_tx_update(d->files, ddb_key(opk, COUNT_SK),
					 "SET bucket_count = if_not_exists(bucket_count, :zero) + :one",
					 "attribute_not_exists(bucket_count) OR bucket_count < :cap",
					 NULL,
					 json_pack("{s:o, s:o, s:o}", ":zero", ddb_n(0), ":one", ddb_n(1),
						   ":cap", ddb_n(EFS_S3_BUCKETS_PER_OWNER))));
		r = dyn_tx(d, items, 3, &res);
		if (r == 0)
			return 0;
		if (r == -ECANCELED && res.failed[0])
			return -EEXIST;
		if (r == -ECANCELED && res.failed[2])
			return -EDQUOT;
		if (r == -ECANCELED) { /* a server that names no item: ask */
			json_t *existing = NULL;
			if ((r = dyn_get(d, d->files, bpk, "META", &existing)) == 0) {
				json_decref(existing);
				return -EEXIST;
			}
			return r == -ENOENT ? -EDQUOT : r;
		}
		if (r != -EBUSY)
			return dyn_fail("TransactWriteItems (bucket create)", r, &res);
		efs_sleep_ms(5 * (attempt + 1));
	}
	return -EAGAIN;
}

int dyn_bucket_get(void *impl, const char *name, struct efs_bucket_info *out)
{
	struct dyn *d = impl;
	struct efs_bucket_info b;
	char pk[BUCKET_PK_MAX];
	json_t *item = NULL;
	if (strlen(name) > EFS_S3_BUCKET_MAX)
		return -ENOENT;
	bucket_pk(name, pk);
	int r = dyn_get(d, d->files, pk, "META", &item);
	if (r < 0)
		return r;
	r = bucket_from_item(item, &b);
	json_decref(item);
	if (r == 0)
		*out = b;
	return r;
}

struct bucket_rows {
	struct efs_bucket_info *items;
	size_t count, alloc;
};

static int push_bucket(void *ctx, const json_t *item)
{
	struct bucket_rows *rows = ctx;
	if (efs_array_reserve((void **)&rows->items, &rows->alloc, rows->count,
			      sizeof(*rows->items), 16) < 0)
		return -ENOMEM;
	if (bucket_from_item(item, &rows->items[rows->count]) < 0)
		return -EIO;
	rows->count++;
	return 0;
}

/* Sort keys are B#<name>: by name, as SQL's ORDER BY name (bucket names
 * are ASCII). */
int dyn_bucket_list(void *impl, const char *owner, struct efs_bucket_info **out,
			   size_t *count)
{
	struct dyn *d = impl;
	struct bucket_rows rows = {0};
	char pk[OWNER_PK_MAX];
	owner_pk(owner, pk);
	json_t *body = json_pack("{s:s, s:s, s:b, s:{s:o, s:o}}", "TableName", d->files,
				 "KeyConditionExpression", "pk = :pk AND begins_with(sk, :p)",
				 "ConsistentRead", 1, "ExpressionAttributeValues", ":pk", ddb_s(pk),
				 ":p", ddb_s(LIST_SK));
	int r = body ? ddb_query_all(&d->ddb, "Query", body, EFS_S3_BUCKETS_PER_OWNER, push_bucket,
				     &rows)
		     : -ENOMEM;
	json_decref(body);
	if (r < 0) {
		free(rows.items);
		return r == -ENOMEM || r == -EIO ? r : dyn_fail("Query (buckets)", r, NULL);
	}
	*out = rows.items;
	*count = rows.count;
	return 0;
}

/* Removes the delete mark @token from bucket @pk if it is still there. */
static void bucket_unmark(struct dyn *d, const char *pk, const char *token)
{
	struct ddb_result res;
	json_t *names = json_pack("{s:s, s:s}", "#d", "deleting", "#da", "deleting_at");
	json_t *values = json_pack("{s:o}", ":t", ddb_s(token));
	int r = names && values ? dyn_update(d, d->files, pk, "META", "REMOVE #d, #da", "#d = :t",
					     names, values, true, &res)
				: -ENOMEM;
	json_decref(names);
	json_decref(values);
	if (r < 0 && r != -ECANCELED)
		dyn_fail("UpdateItem (bucket delete mark)", r, &res);
}

/* True when the bucket's partition of objects holds at least one item (a
 * consistent read of one key). */
static int bucket_has_objects(struct dyn *d, const char *name, bool *any)
{
	char pk[BUCKET_PK_MAX];
	json_t *answer = NULL;
	struct ddb_result res;
	objects_pk(name, pk);
	json_t *body = json_pack("{s:s, s:s, s:b, s:i, s:s, s:{s:o}}", "TableName", d->files,
				 "KeyConditionExpression", "pk = :pk", "ConsistentRead", 1, "Limit",
				 1, "ProjectionExpression", "pk", "ExpressionAttributeValues",
				 ":pk", ddb_s(pk));
	int r = body ? ddb_call(&d->ddb, "Query", body, true, &answer, &res) : -ENOMEM;
	json_decref(body);
	if (r < 0)
		return r == -ENOMEM ? r : dyn_fail("Query (bucket objects)", r, &res);
	*any = json_array_size(json_object_get(answer, "Items")) > 0;
	json_decref(answer);
	return 0;
}

int dyn_bucket_delete(void *impl, const char *name, const char *owner)
{
	struct dyn *d = impl;
	struct ddb_result res;
	struct efs_bucket_info b;
	char bpk[BUCKET_PK_MAX], opk[OWNER_PK_MAX], lsk[BUCKET_PK_MAX], token[33];
	bool any = false;

	int r = dyn_bucket_get(d, name, &b);
	if (r < 0)
		return r;
	if (strcmp(b.owner, owner) != 0)
		return -ENOENT;
	if ((r = efs_random_hex(token, 16)) < 0)
		return r;
	bucket_pk(name, bpk);
	owner_pk(owner, opk);
	list_sk(name, lsk);
	/* 1. the mark: from now on no put into the bucket commits */
	json_t *names = json_pack("{s:s, s:s, s:s}", "#d", "deleting", "#da", "deleting_at", "#o",
				  "owner");
	json_t *values = json_pack("{s:o, s:o, s:o}", ":t", ddb_s(token), ":now",
				   ddb_n(efs_now_ms()), ":o", ddb_s(owner));
	r = names && values ? dyn_update(d, d->files, bpk, "META", "SET #d = :t, #da = :now",
					 "#o = :o", names, values, true, &res)
			    : -ENOMEM;
	json_decref(names);
	json_decref(values);
	if (r == -ECANCELED)
		return -ENOENT; /* deleted meanwhile */
	if (r < 0)
		return r == -ENOMEM ? r : dyn_fail("UpdateItem (bucket delete mark)", r, &res);
	/* 2. every put that committed before the mark is visible now */
	if ((r = bucket_has_objects(d, name, &any)) < 0 || any) {
		bucket_unmark(d, bpk, token);
		return r < 0 ? r : -ENOTEMPTY;
	}
	if (dyn_test_bucket_delete_hook)
		dyn_test_bucket_delete_hook(name);
	/* its multipart uploads in progress go with it (none can begin now) */
	if ((r = dyn_s3_bucket_uploads_abort(d, name, efs_now_ms())) < 0) {
		bucket_unmark(d, bpk, token);
		return r;
	}
	/* 3. the bucket goes if the mark is still ours */
	json_t *items = json_array();
	json_array_append_new(items, dyn_tx_delete(d->files, ddb_key(bpk, "META"), "#d = :t",
						   json_pack("{s:s}", "#d", "deleting"),
						   json_pack("{s:o}", ":t", ddb_s(token))));
	json_array_append_new(items, dyn_tx_delete(d->files, ddb_key(opk, lsk), NULL, NULL, NULL));
	json_array_append_new(items, dyn_tx_update(d->files, ddb_key(opk, COUNT_SK),
						   "ADD bucket_count :minus", NULL, NULL,
						   json_pack("{s:o}", ":minus", ddb_n(-1))));
	r = dyn_tx(d, items, 3, &res);
	if (r == -ECANCELED || r == -EBUSY) {
		/* another delete took the mark over, or a put cleared it as
		 * stale: nothing was deleted */
		bucket_unmark(d, bpk, token);
		return -EAGAIN;
	}
	return r < 0 ? dyn_fail("TransactWriteItems (bucket delete)", r, &res) : 0;
}

/* ---- objects ---------------------------------------------------------- */

/* Optional string attributes: absent when "" (read back as ""). */
static void set_opt(json_t *item, const char *name, const char *value)
{
	if (value[0])
		json_object_set_new(item, name, ddb_s(value));
}

json_t *dyn_object_item(const struct efs_object_info *o)
{
	char pk[BUCKET_PK_MAX];
	objects_pk(o->bucket, pk);
	json_t *item = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "pk", ddb_s(pk), "sk",
				 ddb_s(o->key), "file_id", ddb_s(o->file_id), "size",
				 ddb_n((int64_t)o->size), "etag", ddb_s(o->etag), "last_modified",
				 ddb_n(o->last_modified_ms));
	if (!item)
		return NULL;
	set_opt(item, "content_type", o->content_type);
	set_opt(item, "content_encoding", o->content_encoding);
	set_opt(item, "content_disposition", o->content_disposition);
	set_opt(item, "cache_control", o->cache_control);
	set_opt(item, "expires", o->expires);
	set_opt(item, "user_meta", o->user_meta);
	set_opt(item, "checksum", o->checksum);
	return item;
}

static int get_opt(const json_t *item, const char *name, char *out, size_t max)
{
	int r = ddb_get_s(item, name, out, max);
	if (r == -ENOENT) {
		out[0] = 0;
		return 0;
	}
	return r;
}

static int object_from_item(const json_t *item, const char *bucket, struct efs_object_info *o)
{
	int64_t size;
	memset(o, 0, sizeof(*o));
	efs_strlcpy(o->bucket, bucket, sizeof(o->bucket));
	if (ddb_get_s(item, "sk", o->key, EFS_S3_KEY_MAX) < 0 ||
	    ddb_get_s(item, "file_id", o->file_id, EFS_ID_MAX) < 0 ||
	    ddb_get_n(item, "size", &size) < 0 || ddb_get_s(item, "etag", o->etag, EFS_S3_ETAG_MAX) < 0 ||
	    ddb_get_n(item, "last_modified", &o->last_modified_ms) < 0 ||
	    get_opt(item, "content_type", o->content_type, EFS_S3_HEADER_MAX) < 0 ||
	    get_opt(item, "content_encoding", o->content_encoding, EFS_S3_HEADER_MAX) < 0 ||
	    get_opt(item, "content_disposition", o->content_disposition, EFS_S3_HEADER_MAX) < 0 ||
	    get_opt(item, "cache_control", o->cache_control, EFS_S3_HEADER_MAX) < 0 ||
	    get_opt(item, "expires", o->expires, EFS_S3_HEADER_MAX) < 0 ||
	    get_opt(item, "user_meta", o->user_meta, EFS_S3_USER_META_MAX) < 0 ||
	    get_opt(item, "checksum", o->checksum, EFS_S3_CHECKSUM_MAX) < 0)
		return -EIO;
	o->size = (uint64_t)size;
	return 0;
}

/* The object at (@bucket, @key) into *@out (heap: ~10 KiB). -ENOENT when
 * there is none. */
int dyn_object_read(struct dyn *d, const char *bucket, const char *key,
		       struct efs_object_info *out)
{
	char pk[BUCKET_PK_MAX];
	json_t *item = NULL;
	if (strlen(bucket) > EFS_S3_BUCKET_MAX || !key[0] || strlen(key) > EFS_S3_KEY_MAX)
		return -ENOENT;
	objects_pk(bucket, pk);
	int r = dyn_get(d, d->files, pk, key, &item);
	if (r < 0)
		return r;
	r = object_from_item(item, bucket, out);
	json_decref(item);
	return r;
}

int dyn_object_parts(void *impl, const char *bucket, const char *key, char *file_id,
		     char **layout)
{
	struct dyn *d = impl;
	char pk[BUCKET_PK_MAX];
	json_t *item = NULL;
	if (strlen(bucket) > EFS_S3_BUCKET_MAX || !key[0] || strlen(key) > EFS_S3_KEY_MAX)
		return -ENOENT;
	objects_pk(bucket, pk);
	int r = dyn_get(d, d->files, pk, key, &item);
	if (r < 0)
		return r;
	/* The parts attribute is absent for an object no Complete made. */
	const char *parts = json_string_value(json_object_get(json_object_get(item, "parts"), "S"));
	char *text = strdup(parts ? parts : "");
	if (!text)
		r = -ENOMEM;
	else if (ddb_get_s(item, "file_id", file_id, EFS_ID_MAX) < 0)
		r = -EIO;
	if (r < 0)
		free(text);
	else
		*layout = text;
	json_decref(item);
	return r;
}

int dyn_object_get(void *impl, const char *bucket, const char *key,
			  struct efs_object_info *out)
{
	struct efs_object_info *o = malloc(sizeof(*o));
	if (!o)
		return -ENOMEM;
	int r = dyn_object_read(impl, bucket, key, o);
	if (r == 0)
		*out = *o;
	free(o);
	return r;
}

/* The two elements that end @file_id's life as the object at (@bucket,
 * @key): its META out (only while it is still linked to that key, so of
 * two transactions only one releases it) and a release marker in. */
void dyn_object_release_append(struct dyn *d, json_t *items, const char *file_id, const char *owner,
			   const char *bucket, const char *key, int64_t now_ms)
{
	char fpk[EFS_ID_MAX + 16], what[EFS_ID_MAX + 8];
	file_pk(file_id, fpk);
	snprintf(what, sizeof(what), "F#%s", file_id);
	json_array_append_new(items,
			      dyn_tx_delete(d->files, ddb_key(fpk, "META"), "#b = :b AND #k = :k",
					    json_pack("{s:s, s:s}", "#b", "s3_bucket", "#k", "s3_key"),
					    json_pack("{s:o, s:o}", ":b", ddb_s(bucket), ":k",
						      ddb_s(key))));
	json_array_append_new(items,
			      dyn_tx_put(d->sessions, dyn_release_marker(d, what, owner, now_ms), NULL,
					 NULL, NULL));
}

/* After a transaction that deleted @file_id's META: its references. */
void dyn_object_release_finish(struct dyn *d, const char *file_id, int64_t now_ms)
{
	char what[EFS_ID_MAX + 8];
	snprintf(what, sizeof(what), "F#%s", file_id);
	int r = dyn_release(d, what, now_ms);
	if (r < 0)
		efs_warn("dynamodb: file %s of a replaced or deleted S3 object is gone, its chunks"
			 " not all released yet (%s): the lease holder finishes it",
			 file_id, strerror(-r));
}

/* True when @file_id's META exists (a consistent read). */
int dyn_file_exists(struct dyn *d, const char *file_id, bool *exists)
{
	char fpk[EFS_ID_MAX + 16];
	json_t *item = NULL;
	file_pk(file_id, fpk);
	int r = dyn_get(d, d->files, fpk, "META", &item);
	json_decref(item);
	if (r < 0 && r != -ENOENT)
		return r;
	*exists = r == 0;
	return 0;
}

/* What to do about a bucket check that failed: -ENOENT (gone), 0 (retry:
 * a stale delete mark was cleared, or a fresh one may go away), or an
 * error. */
int dyn_bucket_blocked(struct dyn *d, const char *bucket, int64_t now_ms)
{
	char pk[BUCKET_PK_MAX], token[33];
	json_t *item = NULL;
	int64_t since = 0;
	bucket_pk(bucket, pk);
	int r = dyn_get(d, d->files, pk, "META", &item);
	if (r < 0)
		return r;
	if (ddb_get_s(item, "deleting", token, sizeof(token) - 1) == 0 &&
	    ddb_get_n(item, "deleting_at", &since) == 0 && now_ms - since > DYN_RELEASE_STALE_MS) {
		efs_warn("dynamodb: bucket %s: clearing a delete mark of %lld ms ago (its master"
			 " died before finishing)",
			 bucket, (long long)(now_ms - since));
		bucket_unmark(d, pk, token);
	}
	json_decref(item);
	return 0;
}

struct put_state {
	struct efs_object_info cur; /* the object being replaced */
	bool found;		    /* cur is valid */
	bool old_file_gone;	    /* cur's file has no META (never released here) */
};

static int check_cond(const struct put_state *st, const struct efs_object_cond *cond)
{
	if (!cond)
		return 0;
	if (cond->if_absent && st->found)
		return -EEXIST;
	if (cond->if_etag && !st->found)
		return -ENODATA;
	if (cond->if_etag && strcmp(cond->if_etag, "*") != 0 &&
	    strcasecmp(cond->if_etag, st->cur.etag) != 0)
		return -ESTALE;
	/* If-Unmodified-Since, ignored with an ETag condition (RFC 7232 3.4) */
	if (!cond->if_etag && cond->if_unmodified_since_s && st->found &&
	    st->cur.last_modified_ms / 1000 > cond->if_unmodified_since_s)
		return -ESTALE;
	return 0;
}

int dyn_object_put(void *impl, const struct efs_object_info *o,
			  const struct efs_object_cond *cond, int64_t now_ms)
{
	struct dyn *d = impl;
	struct ddb_result res;
	struct efs_bucket_info b;
	char bpk[BUCKET_PK_MAX], fpk[EFS_ID_MAX + 16];
	int r;

	if (!o->key[0] || strlen(o->key) > EFS_S3_KEY_MAX)
		return -EINVAL;
	if ((r = dyn_bucket_get(d, o->bucket, &b)) < 0)
		return r;
	struct put_state *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	bucket_pk(o->bucket, bpk);
	file_pk(o->file_id, fpk);
	r = -EAGAIN;
	for (int attempt = 0; attempt < DYN_TX_ATTEMPTS; attempt++) {
		r = dyn_object_read(d, o->bucket, o->key, &st->cur);
		if (r < 0 && r != -ENOENT)
			goto out;
		st->found = r == 0;
		if ((r = check_cond(st, cond)) < 0)
			goto out;
		bool release = st->found && !st->old_file_gone &&
			       strcmp(st->cur.file_id, o->file_id) != 0;
		json_t *items = json_array();
		/* 0: the bucket is there and no delete of it runs */
		json_array_append_new(
		    items, dyn_tx_check(d->files, ddb_key(bpk, "META"),
					"attribute_exists(pk) AND attribute_not_exists(#d)",
					json_pack("{s:s}", "#d", "deleting"), NULL));
		/* 1: the object, over exactly the one read (or none) */
		json_array_append_new(
		    items, st->found ? dyn_tx_put(d->files, dyn_object_item(o), "file_id = :old", NULL,
						  json_pack("{s:o}", ":old", ddb_s(st->cur.file_id)))
				     : dyn_tx_put(d->files, dyn_object_item(o), "attribute_not_exists(sk)",
						  NULL, NULL));
		/* 2: the new file, linked to its key (a file is one object at
		 * most; the same put again finds it linked to this key) */
		json_array_append_new(
		    items, dyn_tx_update(d->files, ddb_key(fpk, "META"), "SET #b = :b, #k = :k",
					 "attribute_exists(pk) AND (attribute_not_exists(#b) OR"
					 " (#b = :b AND #k = :k))",
					 json_pack("{s:s, s:s}", "#b", "s3_bucket", "#k", "s3_key"),
					 json_pack("{s:o, s:o}", ":b", ddb_s(o->bucket), ":k",
						   ddb_s(o->key))));
		/* 3, 4: the replaced file out, its release marker in */
		if (release)
			dyn_object_release_append(d, items, st->cur.file_id, b.owner, o->bucket, o->key,
				       now_ms);
		r = dyn_tx(d, items, release ? 5 : 3, &res);
		if (r == 0) {
			if (release)
				dyn_object_release_finish(d, st->cur.file_id, now_ms);
			goto out;
		}
		if (r == -ECANCELED && res.failed[0]) {
			if ((r = dyn_bucket_blocked(d, o->bucket, now_ms)) < 0)
				goto out;
		} else if (r == -ECANCELED && res.failed[2] && !res.failed[1]) {
			efs_warn("dynamodb: S3 put %s/%s: file %s is gone or already an object",
				 o->bucket, o->key, o->file_id);
			r = -EIO;
			goto out;
		} else if (r == -ECANCELED && res.failed[3] && !res.failed[1]) {
			/* the old file lost its META without the object (not
			 * written by this code): replace the item alone */
			bool exists = true;
			if ((r = dyn_file_exists(d, st->cur.file_id, &exists)) < 0)
				goto out;
			st->old_file_gone = !exists;
		} else if (r == -ECANCELED && !res.failed[1] && !res.failed[2] && !res.failed[3]) {
			/* a server that names no item: read everything again */
		} else if (r != -ECANCELED && r != -EBUSY) {
			r = dyn_fail("TransactWriteItems (S3 object put)", r, &res);
			goto out;
		}
		/* the object changed meanwhile (another put or a delete won):
		 * read it again and decide again */
		efs_sleep_ms(5 * (attempt + 1));
		r = -EAGAIN;
	}
out:
	free(st);
	return r;
}

int dyn_object_delete(void *impl, const char *bucket, const char *key, int64_t now_ms)
{
	struct dyn *d = impl;
	struct ddb_result res;
	struct efs_bucket_info b;
	char opk[BUCKET_PK_MAX];
	bool old_file_gone = false;
	int r;

	if ((r = dyn_bucket_get(d, bucket, &b)) < 0)
		return r;
	struct efs_object_info *cur = malloc(sizeof(*cur));
	if (!cur)
		return -ENOMEM;
	objects_pk(bucket, opk);
	r = -EAGAIN;
	for (int attempt = 0; attempt < DYN_TX_ATTEMPTS; attempt++) {
		if ((r = dyn_object_read(d, bucket, key, cur)) < 0)
			goto out;
		json_t *items = json_array();
		json_array_append_new(items, dyn_tx_delete(d->files, ddb_key(opk, key),
							   "file_id = :f", NULL,
							   json_pack("{s:o}", ":f",
								     ddb_s(cur->file_id))));
		if (!old_file_gone)
			dyn_object_release_append(d, items, cur->file_id, b.owner, bucket, key, now_ms);
		r = dyn_tx(d, items, old_file_gone ? 1 : 3, &res);
		if (r == 0) {
			if (!old_file_gone)
				dyn_object_release_finish(d, cur->file_id, now_ms);
			goto out;
		}
		if (r == -ECANCELED && res.failed[1] && !res.failed[0]) {
			bool exists = true;
			if ((r = dyn_file_exists(d, cur->file_id, &exists)) < 0)
				goto out;
			old_file_gone = !exists;
		} else if (r != -ECANCELED && r != -EBUSY) {
			r = dyn_fail("TransactWriteItems (S3 object delete)", r, &res);
			goto out;
		}
		efs_sleep_ms(5 * (attempt + 1));
		r = -EAGAIN;
	}
out:
	free(cur);
	return r;
}

struct entry_rows {
	struct efs_object_entry *out;
	size_t count, limit;
	const char *prefix;
	size_t prefix_len;
	bool past; /* an item beyond the prefix was seen: the listing is over */
};

/* Stops at the first key beyond the prefix (with a code the caller takes
 * for the end). */
#define LIST_END (-EPIPE)

static int push_entry(void *ctx, const json_t *item)
{
	struct entry_rows *rows = ctx;
	struct efs_object_entry *e = &rows->out[rows->count];
	int64_t size;
	if (rows->count >= rows->limit)
		return LIST_END;
	if (ddb_get_s(item, "sk", e->key, EFS_S3_KEY_MAX) < 0 ||
	    ddb_get_n(item, "size", &size) < 0 || ddb_get_s(item, "etag", e->etag, EFS_S3_ETAG_MAX) < 0 ||
	    ddb_get_n(item, "last_modified", &e->last_modified_ms) < 0)
		return -EIO;
	if (strncmp(e->key, rows->prefix, rows->prefix_len) != 0) {
		rows->past = true;
		return LIST_END;
	}
	e->size = (uint64_t)size;
	e->policy[0] = '\0'; /* DynamoDB stores every file replicated */
	rows->count++;
	return 0;
}

/* One Query of the bucket's partition: with keys after @after when it is
 * past the prefix's start, else with begins_with(prefix); Limit = @limit,
 * so it reads at most one page beyond what it returns. */
int dyn_object_list(void *impl, const char *bucket, const char *prefix, const char *after,
			   size_t limit, struct efs_object_entry *out, size_t *count)
{
	struct dyn *d = impl;
	struct entry_rows rows = {out, 0, limit, prefix, strlen(prefix), false};
	char pk[BUCKET_PK_MAX];
	json_t *body;
	int r;

	if (limit == 0 || strlen(bucket) > EFS_S3_BUCKET_MAX || strlen(prefix) > EFS_S3_KEY_MAX ||
	    strlen(after) > EFS_S3_KEY_MAX) {
		*count = 0;
		return 0;
	}
	objects_pk(bucket, pk);
	bool from_after = after[0] && strcmp(after, prefix) >= 0;
	if (from_after && strncmp(after, prefix, rows.prefix_len) != 0) {
		/* @after sorts beyond every key with the prefix */
		*count = 0;
		return 0;
	}
	if (from_after)
		body = json_pack("{s:s, s:s, s:b, s:s, s:{s:s}, s:{s:o, s:o}}", "TableName", d->files,
				 "KeyConditionExpression", "pk = :pk AND sk > :a", "ConsistentRead",
				 1, "ProjectionExpression", "sk, #s, etag, last_modified",
				 "ExpressionAttributeNames", "#s", "size",
				 "ExpressionAttributeValues", ":pk", ddb_s(pk), ":a", ddb_s(after));
	else if (prefix[0])
		body = json_pack("{s:s, s:s, s:b, s:s, s:{s:s}, s:{s:o, s:o}}", "TableName", d->files,
				 "KeyConditionExpression", "pk = :pk AND begins_with(sk, :p)",
				 "ConsistentRead", 1, "ProjectionExpression",
				 "sk, #s, etag, last_modified", "ExpressionAttributeNames", "#s",
				 "size", "ExpressionAttributeValues", ":pk", ddb_s(pk), ":p",
				 ddb_s(prefix));
	else
		body = json_pack("{s:s, s:s, s:b, s:s, s:{s:s}, s:{s:o}}", "TableName", d->files,
				 "KeyConditionExpression", "pk = :pk", "ConsistentRead", 1,
				 "ProjectionExpression", "sk, #s, etag, last_modified",
				 "ExpressionAttributeNames", "#s", "size",
				 "ExpressionAttributeValues", ":pk", ddb_s(pk));
	r = body ? ddb_query_all(&d->ddb, "Query", body, limit, push_entry, &rows) : -ENOMEM;
	json_decref(body);
	if (r == LIST_END)
		r = 0;
	if (r < 0)
		return r == -ENOMEM || r == -EIO ? r : dyn_fail("Query (S3 objects)", r, NULL);
	*count = rows.count;
	return 0;
}

/* ---- CopyObject --------------------------------------------------------- */

/* A copy writes the new file's chunk lists first, each in one transaction
 * with the references it adds (so the lists hold counts while the file is
 * invisible: dynamodb_lists.c), then commits the file META and the object
 * in one more (docs/AWS.md, "CopyObject"). */

int (*dyn_test_copy_hook)(struct dyn *d, const char *dst_file_id, unsigned step);

struct copy_state {
	struct dyn_lists lists; /* the new file's */
	const char *src_file;
	json_t *guard; /* the source file's META still there */
	char ids[DYN_LIST_IDS][65];
};

/* One of the source's list items, copied as the new file's lists of the
 * same chunk indexes. Each piece is conditioned on the source file's META
 * (a release deletes it before any of its lists: so every list of the
 * source still holds its references, no chunk can be collected
 * meanwhile, and the Query that read them saw them all). -ENOKEY when the
 * source's META is gone. */
static int copy_list_item(void *ctx, const json_t *item)
{
	struct copy_state *st = ctx;
	const json_t *list = json_object_get(json_object_get(item, "chunk_ids"), "L"), *id;
	char src_sk[32];
	int64_t first = 0;
	size_t n = 0, k;

	if (ddb_get_s(item, "sk", src_sk, sizeof(src_sk) - 1) < 0 ||
	    ddb_get_n(item, "first", &first) < 0 || first < 0 || !list ||
	    json_array_size(list) > DYN_LIST_IDS)
		return -EIO;
	json_array_foreach(list, k, id)
	{
		const char *s = json_string_value(json_object_get(id, "S"));
		if (!s || strlen(s) != 64)
			return -EIO;
		memcpy(st->ids[n++], s, 65);
	}
	int r = dyn_lists_write(&st->lists, st->guard, (uint64_t)first, st->ids[0],
				sizeof(st->ids[0]), n);
	return r == -ECANCELED ? -ENOKEY : r;
}

/* Writes the new file's chunk lists from the source file's (-ENOKEY when
 * the source goes meanwhile; then nothing stays counted). */
static int copy_lists(struct copy_state *st, const char *owner)
{
	struct dyn *d = st->lists.d;
	char spk[EFS_ID_MAX + 16];
	file_pk(st->src_file, spk);
	st->guard = dyn_tx_check(d->files, ddb_key(spk, "META"), "attribute_exists(pk)", NULL, NULL);
	json_t *body = json_pack("{s:s, s:s, s:b, s:{s:o, s:o}}", "TableName", d->files,
				 "KeyConditionExpression", "pk = :pk AND begins_with(sk, :p)",
				 "ConsistentRead", 1, "ExpressionAttributeValues", ":pk",
				 ddb_s(spk), ":p", ddb_s("CHUNKS#"));
	int r = body && st->guard ? ddb_query_all(&d->ddb, "Query", body, 0, copy_list_item, st)
				  : -ENOMEM;
	json_decref(body);
	json_decref(st->guard);
	st->guard = NULL;
	if (r == 0 && st->lists.written == 0) {
		/* no list: the file is empty only if its META is still there
		 * (else a release may have taken the lists before the Query) */
		struct efs_file_info *f = malloc(sizeof(*f));
		r = f ? dyn_file_get(d, st->src_file, f) : -ENOMEM;
		free(f);
		if (r == -ENOENT)
			r = -ENOKEY;
	}
	if (r < 0) {
		dyn_lists_undo(&st->lists, owner);
		if (r != -ENOKEY && r != -ENOMEM && r != -EIO && r != -EINTR)
			r = dyn_fail("Query (copy source chunks)", r, NULL);
	}
	return r;
}

/* The source as an object: both buckets the owner's, the source object
 * and its file read. */
static int copy_source(struct dyn *d, const struct efs_object_copy *p, struct efs_object_info *src,
		       struct efs_file_info *file)
{
	struct efs_bucket_info b;
	int r = dyn_bucket_get(d, p->dst->bucket, &b);
	if (r == -ENOENT || (r == 0 && strcmp(b.owner, p->owner) != 0))
		return -ENOENT;
	if (r < 0)
		return r;
	if (p->src_file_id) {
		if ((r = dyn_file_get(d, p->src_file_id, file)) == -ENOENT ||
		    (r == 0 && strcmp(file->owner, p->owner) != 0))
			return -ENOKEY;
		if (r < 0)
			return r;
		memset(src, 0, sizeof(*src));
		efs_strlcpy(src->file_id, p->src_file_id, sizeof(src->file_id));
		efs_strlcpy(src->etag, p->src_etag ? p->src_etag : "", sizeof(src->etag));
		efs_strlcpy(src->content_type, "binary/octet-stream", sizeof(src->content_type));
		efs_strlcpy(src->user_meta, "{}", sizeof(src->user_meta));
		src->size = file->size;
		src->last_modified_ms = file->created_at_ms;
		return 0;
	}
	r = dyn_bucket_get(d, p->src_bucket, &b);
	if (r == -ENOENT || (r == 0 && strcmp(b.owner, p->owner) != 0))
		return -EACCES;
	if (r < 0)
		return r;
	if ((r = dyn_object_read(d, p->src_bucket, p->src_key, src)) < 0)
		return r == -ENOENT ? -ENOKEY : r;
	if ((r = dyn_file_get(d, src->file_id, file)) < 0)
		return r == -ENOENT ? -ENOKEY : r;
	return 0;
}

struct copy_run {
	struct efs_object_info src;
	struct efs_file_info file;
	struct put_state dst;
	struct copy_state st;
};

/* The commit: one transaction putting the new file META (linked to the
 * destination key), the object over the one read, the old destination's
 * release, with checks that the bucket takes writes, the sweep has not
 * claimed the new lists (no release marker of the new file) and the first
 * of them is there. */
static int copy_commit(struct dyn *d, struct efs_object_copy *p, struct copy_run *run,
		       const char *owner, int64_t now_ms, struct ddb_result *res, bool *release,
		       size_t *release_at)
{
	struct efs_object_info *dst = p->dst;
	struct efs_file_info nf = run->file;
	char bpk[BUCKET_PK_MAX], fpk[EFS_ID_MAX + 16], marker[EFS_ID_MAX + 24];
	size_t n = 0;

	efs_strlcpy(nf.file_id, dst->file_id, sizeof(nf.file_id));
	efs_strlcpy(nf.owner, p->owner, sizeof(nf.owner));
	efs_strlcpy(nf.name, p->file_name ? p->file_name : dst->key, sizeof(nf.name));
	nf.created_at_ms = now_ms;
	bucket_pk(dst->bucket, bpk);
	file_pk(dst->file_id, fpk);
	snprintf(marker, sizeof(marker), "RELEASE#F#%s", dst->file_id);
	*release = run->dst.found && !run->dst.old_file_gone &&
		   strcmp(run->dst.cur.file_id, dst->file_id) != 0;
	json_t *meta = dyn_file_item(&nf);
	if (meta) {
		json_object_set_new(meta, "s3_bucket", ddb_s(dst->bucket));
		json_object_set_new(meta, "s3_key", ddb_s(dst->key));
	}
	json_t *items = json_array();
	json_array_append_new(items,
			      dyn_tx_check(d->files, ddb_key(bpk, "META"),
					   "attribute_exists(pk) AND attribute_not_exists(#d)",
					   json_pack("{s:s}", "#d", "deleting"), NULL));
	json_array_append_new(
	    items,
	    run->dst.found
		? dyn_tx_put(d->files, dyn_object_item(dst), "file_id = :old", NULL,
			     json_pack("{s:o}", ":old", ddb_s(run->dst.cur.file_id)))
		: dyn_tx_put(d->files, dyn_object_item(dst), "attribute_not_exists(sk)", NULL, NULL));
	json_array_append_new(items,
			      dyn_tx_put(d->files, meta, "attribute_not_exists(pk)", NULL, NULL));
	json_array_append_new(items, dyn_tx_check(d->sessions, ddb_key(marker, "META"),
						  "attribute_not_exists(pk)", NULL, NULL));
	n = 4;
	if (run->st.lists.first_sk[0]) {
		json_array_append_new(items, dyn_tx_check(d->files, ddb_key(fpk, run->st.lists.first_sk),
							  "attribute_exists(sk)", NULL, NULL));
		n++;
	}
	*release_at = n;
	if (*release) {
		dyn_object_release_append(d, items, run->dst.cur.file_id, owner, dst->bucket, dst->key,
			       now_ms);
		n += 2;
	}
	return dyn_tx(d, items, n, res);
}

int dyn_object_copy(void *impl, struct efs_object_copy *p, int64_t now_ms)
{
	struct dyn *d = impl;
	struct efs_object_info *dst = p->dst;
	struct ddb_result res;
	int r = -EAGAIN;

	if (!dst->key[0] || strlen(dst->key) > EFS_S3_KEY_MAX)
		return -EINVAL;
	struct copy_run *run = calloc(1, sizeof(*run));
	if (!run)
		return -ENOMEM;
	run->st.lists.d = d;
	run->st.lists.file_id = dst->file_id;
	run->st.lists.now_ms = now_ms;
	run->st.lists.what = "copy";
	run->st.lists.hook = dyn_test_copy_hook;
	for (int attempt = 0; attempt < DYN_TX_ATTEMPTS; attempt++) {
		/* 1. the source, as read now; its checks */
		if ((r = copy_source(d, p, &run->src, &run->file)) < 0)
			goto out;
		if (p->check_source && (r = p->check_source(p->check_ctx, &run->src)) < 0)
			goto out;
		/* 2. the destination's conditions, on the object there now */
		if ((r = dyn_object_read(d, dst->bucket, dst->key, &run->dst.cur)) < 0 && r != -ENOENT)
			goto out;
		run->dst.found = r == 0;
		run->dst.old_file_gone = false;
		if ((r = check_cond(&run->dst, p->cond)) < 0)
			goto out;
		/* 3. the new file's chunk lists, counted */
		run->st.src_file = run->src.file_id;
		r = copy_lists(&run->st, p->owner);
		if (r == -ENOKEY) {
			/* the source's file went (deleted, or its object
			 * replaced): read the source again */
			efs_sleep_ms(5 * (attempt + 1));
			r = -ENOKEY;
			continue;
		}
		if (r < 0)
			goto out;
		break;
	}
	if (r == -ENOKEY)
		r = -EAGAIN; /* the source was there each time, but kept changing */
	if (r < 0)
		goto out;
	dst->size = run->src.size;
	efs_strlcpy(dst->etag, run->src.etag, sizeof(dst->etag));
	efs_strlcpy(dst->checksum, run->src.checksum, sizeof(dst->checksum));
	if (p->copy_headers) {
		memcpy(dst->content_type, run->src.content_type, sizeof(dst->content_type));
		memcpy(dst->content_encoding, run->src.content_encoding,
		       sizeof(dst->content_encoding));
		memcpy(dst->content_disposition, run->src.content_disposition,
		       sizeof(dst->content_disposition));
		memcpy(dst->cache_control, run->src.cache_control, sizeof(dst->cache_control));
		memcpy(dst->expires, run->src.expires, sizeof(dst->expires));
		memcpy(dst->user_meta, run->src.user_meta, sizeof(dst->user_meta));
	}
	/* 4. the commit; a lost race on the destination reads it again */
	r = -EAGAIN;
	for (int attempt = 0; attempt < DYN_TX_ATTEMPTS; attempt++) {
		struct efs_bucket_info b;
		bool release = false;
		size_t release_at = 0;
		if ((r = dyn_bucket_get(d, dst->bucket, &b)) < 0)
			break;
		r = copy_commit(d, p, run, b.owner, now_ms, &res, &release, &release_at);
		if (r == 0) {
			if (release)
				dyn_object_release_finish(d, run->dst.cur.file_id, now_ms);
			goto out;
		}
		if (r == -ECANCELED && res.failed[0]) {
			if ((r = dyn_bucket_blocked(d, dst->bucket, now_ms)) < 0)
				break;
		} else if (r == -ECANCELED && res.failed[2]) {
			efs_warn("dynamodb: S3 copy to %s/%s: file id %s is taken", dst->bucket,
				 dst->key, dst->file_id);
			r = -EIO;
			break;
		} else if (r == -ECANCELED &&
			   (res.failed[3] || (release_at > 4 && res.failed[4])) && !res.failed[1]) {
			/* the sweep took the lists (a copy stalled over an hour) */
			r = -EAGAIN;
			break;
		} else if (r == -ECANCELED && release && res.failed[release_at] && !res.failed[1]) {
			bool exists = true;
			if ((r = dyn_file_exists(d, run->dst.cur.file_id, &exists)) < 0)
				break;
			run->dst.old_file_gone = !exists;
			continue;
		} else if (r != -ECANCELED && r != -EBUSY) {
			r = dyn_fail("TransactWriteItems (S3 copy)", r, &res);
			break;
		}
		/* the destination changed: its conditions on what is there now */
		efs_sleep_ms(5 * (attempt + 1));
		if ((r = dyn_object_read(d, dst->bucket, dst->key, &run->dst.cur)) < 0 && r != -ENOENT)
			break;
		run->dst.found = r == 0;
		if ((r = check_cond(&run->dst, p->cond)) < 0)
			break;
		r = -EAGAIN;
	}
	/* not committed: the lists go again */
	dyn_lists_undo(&run->st.lists, p->owner);
out:
	free(run);
	return r;
}
