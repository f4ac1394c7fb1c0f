/* SPDX-License-Identifier: MIT */
/* dynamodb_files.c - files, chunks and garbage in DynamoDB, and the release
 * of the references a deleted file or session held.
 *
 * A file is its META item (visible, listed through the by_owner index) and
 * chunk-list items of up to 99 chunk ids, written before the META (so a
 * file of any size appears at once, docs/AWS.md "Write order"). Deleting
 * makes the file invisible first (its META goes, a release marker comes,
 * one transaction), then releases the chunk-list items one transaction at
 * a time, each deleting the list item (only if still there: never twice)
 * and subtracting its references; the marker lets the lease holder finish
 * a release whose master died.
 */
#include "meta/dynamodb.h"

#include "echofs/log.h"
#include "echofs/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILE_PK "FILE#"

static int chunk_replicas(struct dyn *d, const char *chunk_id, struct efs_replica *replicas,
			  unsigned *replica_count);
#define RELEASE_PK "RELEASE#"
#define MAX_TX_CHUNKS (2 * DDB_MAX_TX_ITEMS)

void dyn_list_sk(uint64_t first, char out[32])
{
	snprintf(out, 32, "CHUNKS#%012llu", (unsigned long long)first);
}

static void list_key(const struct efs_file_info *f, char out[EFS_ID_MAX + 24])
{
	snprintf(out, EFS_ID_MAX + 24, "%016lld#%s", (long long)f->created_at_ms, f->file_id);
}

json_t *dyn_file_item(const struct efs_file_info *f)
{
	char pk[EFS_ID_MAX + 16], lk[EFS_ID_MAX + 24];
	snprintf(pk, sizeof(pk), FILE_PK "%s", f->file_id);
	list_key(f, lk);
	return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "pk",
			 ddb_s(pk), "sk", ddb_s("META"), "owner", ddb_s(f->owner), "name",
			 ddb_s(f->name), "size", ddb_n((int64_t)f->size), "sha256", ddb_s(f->sha256),
			 "chunk_size", ddb_n((int64_t)f->chunk_size), "chunk_count",
			 ddb_n((int64_t)f->chunk_count), "replication", ddb_n(f->replication),
			 "stored_bytes", ddb_n((int64_t)f->stored_bytes), "created_at",
			 ddb_n(f->created_at_ms), "list_key", ddb_s(lk));
}

int dyn_file_from_item(const json_t *item, struct efs_file_info *f)
{
	char pk[EFS_ID_MAX + 16];
	int64_t size, chunk_size, chunk_count, replication, stored;
	memset(f, 0, sizeof(*f));
	if (ddb_get_s(item, "pk", pk, sizeof(pk) - 1) < 0 || strncmp(pk, FILE_PK, 5) != 0 ||
	    ddb_get_s(item, "owner", f->owner, EFS_ID_MAX) < 0 ||
	    ddb_get_s(item, "name", f->name, EFS_NAME_MAX) < 0 ||
	    ddb_get_n(item, "size", &size) < 0 || ddb_get_s(item, "sha256", f->sha256, 64) < 0 ||
	    ddb_get_n(item, "chunk_size", &chunk_size) < 0 ||
	    ddb_get_n(item, "chunk_count", &chunk_count) < 0 ||
	    ddb_get_n(item, "replication", &replication) < 0 ||
	    ddb_get_n(item, "stored_bytes", &stored) < 0 ||
	    ddb_get_n(item, "created_at", &f->created_at_ms) < 0)
		return -EIO;
	/* the link of a file that is an S3 object (dynamodb_s3.c) */
	if (ddb_get_s(item, "s3_bucket", f->s3_bucket, EFS_S3_BUCKET_MAX) < 0 ||
	    ddb_get_s(item, "s3_key", f->s3_key, EFS_S3_KEY_MAX) < 0)
		f->s3_bucket[0] = f->s3_key[0] = 0;
	efs_strlcpy(f->file_id, pk + 5, sizeof(f->file_id));
	f->size = (uint64_t)size;
	f->chunk_size = (uint64_t)chunk_size;
	f->chunk_count = (uint64_t)chunk_count;
	f->replication = (unsigned)replication;
	f->stored_bytes = (uint64_t)stored;
	return 0;
}

int dyn_chunk_from_item(const json_t *item, struct efs_chunk_info *c)
{
	int64_t size, stored, compressed;
	memset(c, 0, sizeof(*c));
	if (ddb_get_s(item, "pk", c->chunk_id, 64) < 0 || ddb_get_n(item, "size", &size) < 0 ||
	    ddb_get_n(item, "stored_size", &stored) < 0 ||
	    ddb_get_n(item, "compressed", &compressed) < 0)
		return -EIO;
	c->size = (uint64_t)size;
	c->stored_size = (uint64_t)stored;
	c->compressed = compressed != 0;
	return 0;
}

/* ---- create, read, list -------------------------------------------------------- */

int dyn_file_create_single(void *impl, const struct efs_file_info *file,
			   const struct efs_chunk_info *chunk, const char *const *worker_ids,
			   size_t worker_count, bool dedup, int64_t now_ms)
{
	struct dyn *d = impl;
	struct ddb_result res;
	char pk[EFS_ID_MAX + 16], sk[32];
	int r = -EAGAIN;

	if (worker_count > EFS_MAX_REPLICAS)
		return -EINVAL;
	if (!chunk) {
		json_t *item = dyn_file_item(file);
		r = item ? dyn_put(d, d->files, item, "attribute_not_exists(pk)", NULL, NULL, &res)
			 : -ENOMEM;
		json_decref(item);
		if (r == -ECANCELED)
			return -EEXIST;
		return r < 0 ? dyn_fail("PutItem (file)", r, &res) : 0;
	}
	snprintf(pk, sizeof(pk), FILE_PK "%s", file->file_id);
	dyn_list_sk(0, sk);
	/* A taken id fails before the transaction (which checks again). */
	json_t *existing = NULL;
	if ((r = dyn_get(d, d->files, pk, "META", &existing)) == 0) {
		json_decref(existing);
		return -EEXIST;
	}
	if (r != -ENOENT)
		return r;
	for (int attempt = 0; attempt < DYN_TX_ATTEMPTS; attempt++) {
		json_t *items = json_array();
		json_array_append_new(items, dyn_tx_put(d->files, dyn_file_item(file),
							"attribute_not_exists(pk)", NULL, NULL));
		json_array_append_new(
		    items, dyn_tx_put(d->files,
				      json_pack("{s:o, s:o, s:o, s:{s:[o]}}", "pk", ddb_s(pk), "sk",
						ddb_s(sk), "first", ddb_n(0), "chunk_ids", "L",
						ddb_s(chunk->chunk_id)),
				      "attribute_not_exists(sk)", NULL, NULL));
		json_array_append_new(items, dedup ? dyn_chunk_ref(d, chunk->chunk_id, 1)
						   : dyn_chunk_ref_new(d, chunk, now_ms));
		for (size_t i = 0; i < worker_count; i++)
			json_array_append_new(items, dyn_replica_good(d, chunk->chunk_id,
								      worker_ids[i], now_ms));
		r = dyn_tx(d, items, 3 + worker_count, &res);
		if (r == 0)
			return 0;
		if (r == -ECANCELED && (res.failed[0] || res.failed[1]))
			return -EEXIST;
		if (r == -ECANCELED && dedup)
			return -ESTALE;
		if (r != -ECANCELED && r != -EBUSY)
			return dyn_fail("TransactWriteItems (file of one chunk)", r, &res);
		efs_sleep_ms(5 * (attempt + 1));
	}
	return -EAGAIN;
}

int dyn_file_get(void *impl, const char *file_id, struct efs_file_info *out)
{
	struct dyn *d = impl;
	struct efs_file_info f;
	char pk[EFS_ID_MAX + 16];
	json_t *item = NULL;
	snprintf(pk, sizeof(pk), FILE_PK "%s", file_id);
	int r = dyn_get(d, d->files, pk, "META", &item);
	if (r < 0)
		return r;
	r = dyn_file_from_item(item, &f);
	json_decref(item);
	if (r == 0)
		*out = f;
	return r;
}

struct file_rows {
	struct efs_file_info *items;
	size_t count, alloc;
};

static int push_file(void *ctx, const json_t *item)
{
	struct file_rows *rows = ctx;
	if (efs_array_reserve((void **)&rows->items, &rows->alloc, rows->count,
			      sizeof(*rows->items), 32) < 0)
		return -ENOMEM;
	if (dyn_file_from_item(item, &rows->items[rows->count]) < 0)
		return -EIO;
	rows->count++;
	return 0;
}

int dyn_file_list(void *impl, const char *owner, int64_t after_created_ms, const char *after_id,
		  size_t limit, struct efs_file_info **out, size_t *count)
{
	struct dyn *d = impl;
	struct file_rows rows = {0};
	char cursor[EFS_ID_MAX + 24];
	int r = 0;
	snprintf(cursor, sizeof(cursor), "%016lld#%s", (long long)after_created_ms, after_id);
	if (limit) {
		json_t *body = json_pack(
		    "{s:s, s:s, s:s, s:{s:s}, s:{s:o, s:o}}", "TableName", d->files, "IndexName",
		    "by_owner", "KeyConditionExpression", "#o = :o AND list_key > :c",
		    "ExpressionAttributeNames", "#o", "owner", "ExpressionAttributeValues", ":o",
		    ddb_s(owner), ":c", ddb_s(cursor));
		r = body ? ddb_query_all(&d->ddb, "Query", body, limit, push_file, &rows) : -ENOMEM;
		json_decref(body);
	}
	if (r < 0) {
		free(rows.items);
		return r == -ENOMEM || r == -EIO ? r : dyn_fail("Query (by_owner)", r, NULL);
	}
	*out = rows.items;
	*count = rows.count;
	return 0;
}

/* ---- a file's chunks ---------------------------------------------------------- */

struct chunk_rows {
	struct efs_file_chunk *items;
	size_t count, alloc;
	uint64_t first, end;
};

static int push_list_item(void *ctx, const json_t *item)
{
	struct chunk_rows *rows = ctx;
	const json_t *ids = json_object_get(json_object_get(item, "chunk_ids"), "L"), *id;
	int64_t first = 0;
	size_t k;
	if (!json_is_array(ids) || ddb_get_n(item, "first", &first) < 0 || first < 0)
		return -EIO;
	json_array_foreach(ids, k, id) {
		uint64_t index = (uint64_t)first + k;
		const char *text = json_string_value(json_object_get(id, "S"));
		if (index < rows->first || index >= rows->end)
			continue;
		if (!text || strlen(text) != 64)
			return -EIO;
		if (efs_array_reserve((void **)&rows->items, &rows->alloc, rows->count,
				      sizeof(*rows->items), 64) < 0)
			return -ENOMEM;
		struct efs_file_chunk *fc = &rows->items[rows->count++];
		memset(fc, 0, sizeof(*fc));
		fc->index = index;
		efs_strlcpy(fc->chunk.chunk_id, text, sizeof(fc->chunk.chunk_id));
	}
	return 0;
}

/* Fills rows' chunk fields by BatchGetItem (100 keys a call); entries whose
 * chunk item is missing get size 0 and are dropped by the caller. */
static int fill_chunks(struct dyn *d, struct chunk_rows *rows, bool *found)
{
	for (size_t i = 0; i < rows->count; i += DDB_MAX_BATCH_GET) {
		size_t n = rows->count - i < DDB_MAX_BATCH_GET ? rows->count - i : DDB_MAX_BATCH_GET;
		json_t *keys = json_array();
		for (size_t k = 0; k < n; k++) {
			bool dup = false;
			for (size_t j = 0; j < k && !dup; j++)
				dup = strcmp(rows->items[i + j].chunk.chunk_id,
					     rows->items[i + k].chunk.chunk_id) == 0;
			if (!dup)
				json_array_append_new(keys,
						      ddb_key(rows->items[i + k].chunk.chunk_id, "META"));
		}
		json_t *request = json_pack("{s:{s:o, s:b}}", d->chunks, "Keys", keys,
					    "ConsistentRead", 1);
		for (int attempt = 0; request && attempt < DYN_TX_ATTEMPTS; attempt++) {
			json_t *body = json_pack("{s:O}", "RequestItems", request), *answer = NULL;
			struct ddb_result res;
			int r = body ? ddb_call(&d->ddb, "BatchGetItem", body, true, &answer, &res)
				     : -ENOMEM;
			json_decref(body);
			if (r < 0) {
				json_decref(request);
				return dyn_fail("BatchGetItem (chunks)", r, &res);
			}
			size_t idx;
			json_t *item;
			json_array_foreach(json_object_get(json_object_get(answer, "Responses"),
							   d->chunks),
					   idx, item) {
				struct efs_chunk_info c;
				if (dyn_chunk_from_item(item, &c) < 0)
					continue;
				for (size_t k = 0; k < n; k++)
					if (strcmp(rows->items[i + k].chunk.chunk_id, c.chunk_id) == 0) {
						rows->items[i + k].chunk = c;
						found[i + k] = true;
					}
			}
			json_t *left = json_object_get(answer, "UnprocessedKeys");
			json_decref(request);
			request = left && json_object_size(left) ? json_incref(left) : NULL;
			json_decref(answer);
		}
		if (request) {
			json_decref(request);
			return -EAGAIN;
		}
	}
	return 0;
}

/* Each chunk's replicas: one Query of the workers, then one Query per
 * chunk (with chunks in S3: the objects' generations, chunk_s3.h). */
static int file_replicas(struct dyn *d, struct efs_file_chunk *chunks, size_t count)
{
	struct efs_worker_info *workers = NULL;
	size_t worker_count = 0;
	int r = count ? dyn_worker_list(d, &workers, &worker_count) : 0;
	for (size_t i = 0; r == 0 && i < count; i++)
		r = dyn_replicas_load(d, chunks[i].chunk.chunk_id, workers, worker_count,
				      chunks[i].replicas, &chunks[i].replica_count);
	free(workers);
	return r;
}

int dyn_file_chunks(void *impl, const char *file_id, uint64_t first, size_t max,
		    struct efs_file_chunk **out, size_t *count)
{
	struct dyn *d = impl;
	struct chunk_rows rows = {0};
	char pk[EFS_ID_MAX + 16], lo[32], hi[32];
	const uint64_t top = 999999999999ull;
	bool *found = NULL;
	int r;

	rows.first = first;
	rows.end = max > top - (first < top ? first : top) ? top + 1 : first + max;
	snprintf(pk, sizeof(pk), FILE_PK "%s", file_id);
	/* a list item holds at most DYN_LIST_IDS ids: the one covering
	 * @first starts at most that far before it */
	dyn_list_sk(first > DYN_LIST_IDS ? first - DYN_LIST_IDS : 0, lo);
	dyn_list_sk(rows.end > 0 ? rows.end - 1 : 0, hi);
	if (max == 0 || first > top) {
		*out = NULL;
		*count = 0;
		return 0;
	}
	json_t *body = json_pack("{s:s, s:s, s:b, s:{s:o, s:o, s:o}}", "TableName", d->files,
				 "KeyConditionExpression", "pk = :pk AND sk BETWEEN :lo AND :hi",
				 "ConsistentRead", 1, "ExpressionAttributeValues", ":pk", ddb_s(pk),
				 ":lo", ddb_s(lo), ":hi", ddb_s(hi));
	r = body ? ddb_query_all(&d->ddb, "Query", body, 0, push_list_item, &rows) : -ENOMEM;
	json_decref(body);
	if (r < 0 && r != -ENOMEM && r != -EIO)
		r = dyn_fail("Query (file chunk lists)", r, NULL);
	if (r == 0 && rows.count && !(found = calloc(rows.count, sizeof(*found))))
		r = -ENOMEM;
	if (r == 0)
		r = fill_chunks(d, &rows, found);
	if (r < 0) {
		free(rows.items);
		free(found);
		return r;
	}
	size_t kept = 0;
	for (size_t i = 0; i < rows.count; i++)
		if (found[i])
			rows.items[kept++] = rows.items[i];
	free(found);
	if ((r = file_replicas(d, rows.items, kept)) < 0) {
		free(rows.items);
		return r;
	}
	*out = rows.items;
	*count = kept;
	return 0;
}

/* ---- delete and release ---------------------------------------------------------- */

int dyn_file_delete(void *impl, const char *file_id, const char *owner, int64_t now_ms)
{
	struct dyn *d = impl;
	struct ddb_result res;
	char pk[EFS_ID_MAX + 16], what[EFS_ID_MAX + 8];
	struct efs_file_info *f = NULL;
	int r = -EAGAIN;

	snprintf(pk, sizeof(pk), FILE_PK "%s", file_id);
	snprintf(what, sizeof(what), "F#%s", file_id);
	/* Of two concurrent deletes one removes the META, the other fails its
	 * condition and releases nothing. A file that is an S3 object
	 * (s3_bucket, s3_key: dynamodb_s3.c) takes its object item with it,
	 * in the same transaction, as SQL's sql_file_release does; the first
	 * attempt assumes it is not one (no read), a failed condition reads
	 * the META to tell. */
	for (int attempt = 0; attempt < DYN_TX_ATTEMPTS; attempt++) {
		bool object = f && f->s3_bucket[0];
		json_t *items = json_array();
		json_array_append_new(
		    items,
		    object ? dyn_tx_delete(d->files, ddb_key(pk, "META"),
					   "#o = :o AND #b = :b AND #k = :k",
					   json_pack("{s:s, s:s, s:s}", "#o", "owner", "#b",
						     "s3_bucket", "#k", "s3_key"),
					   json_pack("{s:o, s:o, s:o}", ":o", ddb_s(owner), ":b",
						     ddb_s(f->s3_bucket), ":k", ddb_s(f->s3_key)))
			   : dyn_tx_delete(d->files, ddb_key(pk, "META"),
					   "#o = :o AND attribute_not_exists(#b)",
					   json_pack("{s:s, s:s}", "#o", "owner", "#b", "s3_bucket"),
					   json_pack("{s:o}", ":o", ddb_s(owner))));
		json_array_append_new(items, dyn_tx_put(d->sessions,
							dyn_release_marker(d, what, owner, now_ms),
							NULL, NULL, NULL));
		if (object) {
			char opk[EFS_S3_BUCKET_MAX + 16];
			snprintf(opk, sizeof(opk), "OBJECTS#%s", f->s3_bucket);
			json_array_append_new(items, dyn_tx_delete(d->files, ddb_key(opk, f->s3_key),
								   "file_id = :f", NULL,
								   json_pack("{s:o}", ":f",
									     ddb_s(file_id))));
		}
		r = dyn_tx(d, items, object ? 3 : 2, &res);
		if (r == 0)
			break;
		if (r == -ECANCELED) {
			/* not this owner's, gone, or linked otherwise than assumed */
			if (!f && !(f = malloc(sizeof(*f)))) {
				r = -ENOMEM;
				goto out;
			}
			if ((r = dyn_file_get(d, file_id, f)) < 0)
				goto out; /* -ENOENT: no such file */
			if (strcmp(f->owner, owner) != 0) {
				r = -ENOENT;
				goto out;
			}
		} else if (r != -EBUSY) {
			r = dyn_fail("TransactWriteItems (file delete)", r, &res);
			goto out;
		} else {
			efs_sleep_ms(5 * (attempt + 1));
		}
		r = -EAGAIN;
	}
	if (r < 0)
		goto out;
	if ((r = dyn_release(d, what, now_ms)) < 0)
		efs_warn("dynamodb: file %s deleted, its chunks not all released yet (%s): the"
			 " lease holder finishes it",
			 file_id, strerror(-r));
	r = 0;
out:
	free(f);
	return r;
}

json_t *dyn_release_marker(struct dyn *d, const char *what, const char *owner, int64_t now_ms)
{
	char pk[EFS_ID_MAX + 24];
	snprintf(pk, sizeof(pk), RELEASE_PK "%s", what);
	return json_pack("{s:o, s:o, s:o, s:o, s:o}", "pk", ddb_s(pk), "sk", ddb_s("META"),
			 "owner", ddb_s(owner), "kind", ddb_s("release"), "expires_at",
			 ddb_n(now_ms));
}

/* What a release has left to do: units (a file's chunk-list item, or a
 * session's CHUNK# item) and the chunk ids each names. */
struct unit {
	char sk[32];
	size_t first_id, id_count;
};
struct release_set {
	struct unit *units;
	size_t unit_count, unit_alloc;
	char (*ids)[65];
	size_t id_count, id_alloc;
};

static int push_id(struct release_set *set, const char *id)
{
	if (!id || strlen(id) != 64)
		return -EIO;
	if (set->id_count == set->id_alloc) {
		size_t alloc = set->id_alloc ? set->id_alloc * 2 : 128;
		void *grown = realloc(set->ids, alloc * sizeof(*set->ids));
		if (!grown)
			return -ENOMEM;
		set->ids = grown;
		set->id_alloc = alloc;
	}
	memcpy(set->ids[set->id_count++], id, 65);
	return 0;
}

static int push_unit(void *ctx, const json_t *item)
{
	struct release_set *set = ctx;
	const json_t *list = json_object_get(json_object_get(item, "chunk_ids"), "L"), *id;
	char one[65];
	size_t k;
	int r = 0;
	if (set->unit_count == set->unit_alloc) {
		size_t alloc = set->unit_alloc ? set->unit_alloc * 2 : 32;
		void *grown = realloc(set->units, alloc * sizeof(*set->units));
		if (!grown)
			return -ENOMEM;
		set->units = grown;
		set->unit_alloc = alloc;
	}
	struct unit *u = &set->units[set->unit_count];
	if (ddb_get_s(item, "sk", u->sk, sizeof(u->sk) - 1) < 0)
		return -EIO;
	u->first_id = set->id_count;
	if (list) {
		json_array_foreach(list, k, id) if ((r = push_id(set, json_string_value(
							      json_object_get(id, "S")))) < 0) return r;
	} else if (ddb_get_s(item, "chunk_id", one, 64) == 0) {
		if ((r = push_id(set, one)) < 0)
			return r;
	} else {
		return -EIO;
	}
	u->id_count = set->id_count - u->first_id;
	if (u->id_count > DYN_LIST_IDS)
		return -EIO;
	set->unit_count++;
	return 0;
}

struct tally {
	char ids[MAX_TX_CHUNKS][65];
	int64_t counts[MAX_TX_CHUNKS];
	size_t count;
};

static void tally_add(struct tally *t, const char *id)
{
	for (size_t i = 0; i < t->count; i++)
		if (strcmp(t->ids[i], id) == 0) {
			t->counts[i]++;
			return;
		}
	memcpy(t->ids[t->count], id, 65);
	t->counts[t->count++] = 1;
}

/* Reads what is left of a release: the table, the partition and the prefix
 * of its unit items. */
static int release_query(struct dyn *d, const char *table, const char *pk, const char *prefix,
			 struct release_set *set)
{
	set->unit_count = set->id_count = 0;
	json_t *body = json_pack("{s:s, s:s, s:b, s:{s:o, s:o}}", "TableName", table,
				 "KeyConditionExpression", "pk = :pk AND begins_with(sk, :p)",
				 "ConsistentRead", 1, "ExpressionAttributeValues", ":pk", ddb_s(pk),
				 ":p", ddb_s(prefix));
	int r = body ? ddb_query_all(&d->ddb, "Query", body, 0, push_unit, set) : -ENOMEM;
	json_decref(body);
	return r;
}

int dyn_release(struct dyn *d, const char *what, int64_t now_ms)
{
	struct release_set set = {0};
	struct tally *t = malloc(sizeof(*t)), *saved = malloc(sizeof(*saved));
	bool file = strncmp(what, "F#", 2) == 0;
	const char *table = file ? d->files : d->sessions;
	char pk[EFS_ID_MAX + 24];
	int r = 0, restarts = 0;

	snprintf(pk, sizeof(pk), "%s%s", file ? FILE_PK : "SESSION#", what + 2);
	if (!t || !saved) {
		r = -ENOMEM;
		goto out;
	}
again:
	if ((r = release_query(d, table, pk, file ? "CHUNKS#" : "CHUNK#", &set)) < 0)
		goto out;
	for (size_t u = 0; u < set.unit_count;) {
		size_t start = u;
		t->count = 0;
		/* as many units as fit with their distinct chunks in one
		 * transaction of at most 100 items */
		while (u < set.unit_count) {
			memcpy(saved, t, sizeof(*t));
			for (size_t k = 0; k < set.units[u].id_count; k++)
				tally_add(t, set.ids[set.units[u].first_id + k]);
			if (u - start + 1 + t->count > DDB_MAX_TX_ITEMS) {
				memcpy(t, saved, sizeof(*t));
				break;
			}
			u++;
		}
		json_t *items = json_array();
		for (size_t k = start; k < u; k++)
			json_array_append_new(items,
					      dyn_tx_delete(table, ddb_key(pk, set.units[k].sk),
							    "attribute_exists(sk)", NULL, NULL));
		for (size_t k = 0; k < t->count; k++)
			json_array_append_new(items, dyn_chunk_ref(d, t->ids[k], -t->counts[k]));
		struct ddb_result res;
		r = dyn_tx(d, items, u - start + t->count, &res);
		if ((r == -ECANCELED || r == -EBUSY) && restarts++ < DYN_TX_ATTEMPTS) {
			/* released meanwhile by another master (or a conflict):
			 * read what is left */
			for (size_t k = u - start; r == -ECANCELED && k < u - start + t->count; k++)
				if (res.failed[k])
					efs_error("dynamodb: release of %s: chunk %s has no item;"
						  " its references cannot be subtracted",
						  what, t->ids[k - (u - start)]);
			efs_sleep_ms(5 * restarts);
			goto again;
		}
		if (r < 0) {
			r = dyn_fail("TransactWriteItems (release)", r, &res);
			goto out;
		}
		dyn_chunks_mark_zero(d, (const char(*)[65])t->ids, t->count, now_ms);
	}
	{
		struct ddb_result res;
		char marker[EFS_ID_MAX + 24];
		snprintf(marker, sizeof(marker), RELEASE_PK "%s", what);
		r = dyn_delete(d, d->sessions, marker, "META", NULL, NULL, NULL, &res);
		if (r < 0)
			r = dyn_fail("DeleteItem (release marker)", r, &res);
	}
out:
	free(set.units);
	free(set.ids);
	free(t);
	free(saved);
	return r;
}

struct stale {
	char what[8][EFS_ID_MAX + 8];
	size_t count;
};

static int take_stale(void *ctx, const json_t *item)
{
	struct stale *s = ctx;
	char pk[EFS_ID_MAX + 24];
	if (s->count < 8 && ddb_get_s(item, "pk", pk, sizeof(pk) - 1) == 0 &&
	    strncmp(pk, RELEASE_PK, 8) == 0)
		efs_strlcpy(s->what[s->count++], pk + 8, sizeof(s->what[0]));
	return 0;
}

int dyn_release_stale(struct dyn *d, int64_t before_ms, size_t max)
{
	struct stale s = {.count = 0};
	json_t *body = json_pack("{s:s, s:s, s:s, s:{s:s, s:s}, s:{s:o, s:o}}", "TableName",
				 d->sessions, "IndexName", "by_expiry", "KeyConditionExpression",
				 "#k = :k AND #e < :b", "ExpressionAttributeNames", "#k", "kind",
				 "#e", "expires_at", "ExpressionAttributeValues", ":k",
				 ddb_s("release"), ":b", ddb_n(before_ms));
	int r = body ? ddb_query_all(&d->ddb, "Query", body, max < 8 ? max : 8, take_stale, &s)
		     : -ENOMEM;
	json_decref(body);
	if (r < 0)
		return ddb_public_errno(r);
	for (size_t i = 0; i < s.count && r == 0; i++) {
		efs_info("dynamodb: finishing the release of %s left by another master", s.what[i]);
		r = dyn_release(d, s.what[i], efs_now_ms());
	}
	return r;
}

/* ---- chunks and garbage ------------------------------------------------------------ */

/* The replicas of one chunk with their workers (two Queries; with chunks
 * in S3 the replica items are the objects' generations, chunk_s3.h, and
 * the workers' partition is empty). */
static int chunk_replicas(struct dyn *d, const char *chunk_id, struct efs_replica *replicas,
			  unsigned *replica_count)
{
	struct efs_worker_info *workers = NULL;
	size_t worker_count = 0;
	int r = dyn_worker_list(d, &workers, &worker_count);
	if (r == 0)
		r = dyn_replicas_load(d, chunk_id, workers, worker_count, replicas, replica_count);
	free(workers);
	return r;
}

int dyn_chunk_get(void *impl, const char *chunk_id, struct efs_chunk_info *out,
		  struct efs_replica *replicas, unsigned *replica_count)
{
	struct dyn *d = impl;
	struct efs_chunk_info c;
	json_t *item = NULL;
	int r = dyn_get(d, d->chunks, chunk_id, "META", &item);
	if (r < 0)
		return r;
	r = dyn_chunk_from_item(item, &c);
	json_decref(item);
	if (r < 0)
		return r;
	if (replicas && (r = chunk_replicas(d, chunk_id, replicas, replica_count)) < 0)
		return r;
	*out = c;
	return 0;
}

struct garbage {
	char (*ids)[65];
	size_t count;
};

static int take_garbage(void *ctx, const json_t *item)
{
	struct garbage *g = ctx;
	if (ddb_get_s(item, "pk", g->ids[g->count], 64) == 0)
		g->count++;
	return 0;
}

static int mark_missed(void *ctx, const json_t *item)
{
	struct dyn *d = ctx;
	char id[65];
	if (ddb_get_s(item, "pk", id, 64) == 0)
		dyn_chunks_mark_zero(d, (const char(*)[65])id, 1, efs_now_ms());
	return 0;
}

/* A master that died between a release's transaction and marking its
 * chunks leaves them at 0 off the collector's list: a filtered Scan of the
 * chunks table finds them, at most every DYN_SWEEP_MS per process. */
#define DYN_SWEEP_MS (10 * 60 * 1000)

static void sweep(struct dyn *d, int64_t now_ms)
{
	pthread_mutex_lock(&d->lease_lock);
	bool due = now_ms - d->last_sweep_ms >= DYN_SWEEP_MS;
	if (due)
		d->last_sweep_ms = now_ms;
	pthread_mutex_unlock(&d->lease_lock);
	if (!due)
		return;
	/* first: a vanished session's release may bring chunks to 0 */
	dyn_sweep_leftovers(d, now_ms - DYN_LEFTOVER_GRACE_MS, now_ms);
	json_t *body = json_pack("{s:s, s:s, s:s, s:{s:o, s:o}}", "TableName", d->chunks,
				 "FilterExpression",
				 "sk = :meta AND refcount <= :z AND attribute_not_exists(zero_since)",
				 "ProjectionExpression", "pk", "ExpressionAttributeValues", ":meta",
				 ddb_s("META"), ":z", ddb_n(0));
	int r = body ? ddb_query_all(&d->ddb, "Scan", body, 0, mark_missed, d) : -ENOMEM;
	json_decref(body);
	if (r < 0)
		dyn_fail("Scan (unlisted unreferenced chunks)", r, NULL);
}

int dyn_garbage_list(void *impl, int64_t before_ms, size_t max, char (*ids)[65], size_t *count)
{
	struct dyn *d = impl;
	struct garbage g = {ids, 0};
	int r = 0;
	sweep(d, efs_now_ms());
	if (max) {
		json_t *body = json_pack("{s:s, s:s, s:s, s:{s:o, s:o}}", "TableName", d->chunks,
					 "IndexName", "garbage", "KeyConditionExpression",
					 "gc = :g AND zero_since < :b", "ExpressionAttributeValues",
					 ":g", ddb_s("0"), ":b", ddb_n(before_ms));
		r = body ? ddb_query_all(&d->ddb, "Query", body, max, take_garbage, &g) : -ENOMEM;
		json_decref(body);
	}
	if (r < 0)
		return dyn_fail("Query (garbage)", r, NULL);
	*count = g.count;
	return 0;
}

/* Reads the replicas, then deletes the chunk item (re-checking that it is
 * unreferenced) and those replica items in one transaction. A replica
 * recorded between the read and the transaction (a report adopting a copy
 * at that instant) outlives the chunk item: docs/AWS.md. */
int dyn_garbage_take(void *impl, const char *chunk_id, struct efs_replica *replicas,
		     unsigned *replica_count)
{
	struct dyn *d = impl;
	struct ddb_result res;
	struct efs_replica found[EFS_MAX_REPLICAS];
	unsigned n = 0;
	int r = chunk_replicas(d, chunk_id, found, &n);
	if (r < 0)
		return r;
	json_t *items = json_array();
	/* re-checked in the condition: a chunk referenced again is kept */
	json_array_append_new(items, dyn_tx_delete(d->chunks, ddb_key(chunk_id, "META"),
						   "refcount <= :z", NULL,
						   json_pack("{s:o}", ":z", ddb_n(0))));
	for (unsigned i = 0; i < n; i++) {
		char sk[EFS_ID_MAX + 16];
		snprintf(sk, sizeof(sk), "REPLICA#%s", found[i].worker_id);
		json_array_append_new(items,
				      dyn_tx_delete(d->chunks, ddb_key(chunk_id, sk), NULL, NULL, NULL));
	}
	r = dyn_tx(d, items, n + 1, &res);
	if (r == -ECANCELED && res.failed[0])
		return -ENOENT;
	if (r < 0)
		return dyn_fail("TransactWriteItems (garbage)", r, &res);
	memcpy(replicas, found, n * sizeof(*found));
	*replica_count = n;
	return 0;
}
