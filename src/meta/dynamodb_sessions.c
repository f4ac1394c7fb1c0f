/* SPDX-License-Identifier: MIT */
/* dynamodb_sessions.c - upload sessions in DynamoDB: the session item, its
 * CHUNK# items, completion into a file and the completed-session records.
 *
 * A session's item carries a version; every change to the session (a
 * chunk, the complete, the delete) is a transaction conditioned on the
 * version it read, so of two concurrent changes one wins and the other
 * reads again (what the SQL backends get from the row lock). Reference
 * counts move only inside those transactions (docs/AWS.md, write order).
 */
#include "meta/dynamodb.h"

#include "echofs/log.h"
#include "echofs/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SESSION_PK "SESSION#"

void (*dyn_test_before_commit)(struct dyn *d, const char *file_id);
#define DONE_PK "DONE#"

static void session_pk(const char *session_id, char out[EFS_ID_MAX + 16])
{
	snprintf(out, EFS_ID_MAX + 16, SESSION_PK "%s", session_id);
}

static void chunk_sk(uint64_t index, char out[32])
{
	snprintf(out, 32, "CHUNK#%012llu", (unsigned long long)index);
}

static int64_t ttl_of(int64_t expires_at_ms)
{
	return (expires_at_ms > 0 ? expires_at_ms / 1000 : 0) + DYN_TTL_GRACE_S;
}

int dyn_session_create(void *impl, const struct efs_session_info *s)
{
	struct dyn *d = impl;
	struct ddb_result res;
	char pk[EFS_ID_MAX + 16];
	session_pk(s->session_id, pk);
	json_t *item = json_pack(
	    "{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "pk", ddb_s(pk), "sk",
	    ddb_s("META"), "owner", ddb_s(s->owner), "name", ddb_s(s->name), "declared_size",
	    ddb_n(s->declared_size), "chunk_size", ddb_n((int64_t)s->chunk_size), "hidden",
	    ddb_n(s->hidden ? 1 : 0), "version", ddb_n(0), "created_at", ddb_n(s->created_at_ms),
	    "expires_at", ddb_n(s->expires_at_ms), "kind", ddb_s("session"), "ttl",
	    ddb_n(ttl_of(s->expires_at_ms)));
	if (!item)
		return -ENOMEM;
	int r = dyn_put(d, d->sessions, item, "attribute_not_exists(pk)", NULL, NULL, &res);
	json_decref(item);
	if (r == -ECANCELED)
		return -EEXIST;
	return r < 0 ? dyn_fail("PutItem (session)", r, &res) : 0;
}

static int session_from_item(const json_t *item, struct efs_session_info *s)
{
	char pk[EFS_ID_MAX + 16];
	int64_t hidden = 0, chunk_size = 0;
	memset(s, 0, sizeof(*s));
	if (ddb_get_s(item, "pk", pk, sizeof(pk) - 1) < 0 || strncmp(pk, SESSION_PK, 8) != 0 ||
	    ddb_get_s(item, "owner", s->owner, EFS_ID_MAX) < 0 ||
	    ddb_get_s(item, "name", s->name, EFS_NAME_MAX) < 0 ||
	    ddb_get_n(item, "declared_size", &s->declared_size) < 0 ||
	    ddb_get_n(item, "chunk_size", &chunk_size) < 0 ||
	    ddb_get_n(item, "hidden", &hidden) < 0 || ddb_get_n(item, "version", &s->version) < 0 ||
	    ddb_get_n(item, "created_at", &s->created_at_ms) < 0 ||
	    ddb_get_n(item, "expires_at", &s->expires_at_ms) < 0)
		return -EIO;
	efs_strlcpy(s->session_id, pk + 8, sizeof(s->session_id));
	s->chunk_size = (uint64_t)chunk_size;
	s->hidden = hidden != 0;
	return 0;
}

int dyn_session_get(void *impl, const char *session_id, struct efs_session_info *out)
{
	struct dyn *d = impl;
	struct efs_session_info s;
	char pk[EFS_ID_MAX + 16];
	json_t *item = NULL;
	session_pk(session_id, pk);
	int r = dyn_get(d, d->sessions, pk, "META", &item);
	if (r < 0)
		return r;
	r = session_from_item(item, &s);
	json_decref(item);
	if (r == 0)
		*out = s;
	return r;
}

/* ---- the chunks of a session ----------------------------------------------- */

struct chunk_list {
	struct efs_session_chunk *items;
	size_t count, alloc;
};

static int push_session_chunk(void *ctx, const json_t *item)
{
	struct chunk_list *l = ctx;
	char sk[32];
	int64_t size = 0, stored = 0;
	if (l->count == l->alloc) {
		size_t alloc = l->alloc ? l->alloc * 2 : 64;
		void *grown = realloc(l->items, alloc * sizeof(*l->items));
		if (!grown)
			return -ENOMEM;
		l->items = grown;
		l->alloc = alloc;
	}
	struct efs_session_chunk *c = &l->items[l->count];
	memset(c, 0, sizeof(*c));
	if (ddb_get_s(item, "sk", sk, sizeof(sk) - 1) < 0 || strncmp(sk, "CHUNK#", 6) != 0 ||
	    ddb_get_s(item, "chunk_id", c->chunk_id, 64) < 0 ||
	    ddb_get_n(item, "size", &size) < 0 || ddb_get_n(item, "stored_size", &stored) < 0)
		return -EIO;
	c->index = strtoull(sk + 6, NULL, 10);
	c->size = (uint64_t)size;
	c->stored_size = (uint64_t)stored;
	l->count++;
	return 0;
}

/* The CHUNK# items of a session, by index (the sort key's order). */
static int query_chunks(struct dyn *d, const char *session_id, struct chunk_list *l)
{
	char pk[EFS_ID_MAX + 16];
	session_pk(session_id, pk);
	json_t *body = json_pack("{s:s, s:s, s:b, s:{s:o, s:o}}", "TableName", d->sessions,
				 "KeyConditionExpression", "pk = :pk AND begins_with(sk, :c)",
				 "ConsistentRead", 1, "ExpressionAttributeValues", ":pk", ddb_s(pk),
				 ":c", ddb_s("CHUNK#"));
	int r = body ? ddb_query_all(&d->ddb, "Query", body, 0, push_session_chunk, l) : -ENOMEM;
	json_decref(body);
	if (r < 0) {
		free(l->items);
		l->items = NULL;
		l->count = 0;
		return r == -ENOMEM || r == -EIO ? r : dyn_fail("Query (session chunks)", r, NULL);
	}
	return 0;
}

int dyn_session_chunks(void *impl, const char *session_id, struct efs_session_chunk **out,
		       size_t *count)
{
	struct chunk_list l = {0};
	int r = query_chunks(impl, session_id, &l);
	if (r < 0)
		return r;
	*out = l.items;
	*count = l.count;
	return 0;
}

/* ---- a chunk received -------------------------------------------------------- */

int dyn_session_put_chunk(void *impl, const char *session_id, uint64_t index,
			  const struct efs_chunk_info *chunk, const char *const *worker_ids,
			  size_t worker_count, bool dedup, int64_t now_ms, int64_t hidden_expires_ms,
			  int64_t expires_at_least_ms)
{
	struct dyn *d = impl;
	char pk[EFS_ID_MAX + 16], sk[32];
	int r = -EAGAIN;

	if (worker_count > EFS_MAX_REPLICAS)
		return -EINVAL;
	session_pk(session_id, pk);
	chunk_sk(index, sk);
	for (int attempt = 0; attempt < DYN_TX_ATTEMPTS; attempt++) {
		struct efs_session_info s;
		struct ddb_result res;
		char old[65] = "";
		json_t *item = NULL;

		if ((r = dyn_session_get(d, session_id, &s)) < 0)
			return r;
		r = dyn_get(d, d->sessions, pk, sk, &item);
		if (r == 0 && ddb_get_s(item, "chunk_id", old, 64) < 0)
			r = -EIO;
		json_decref(item);
		if (r < 0 && r != -ENOENT)
			return r;
		/* An upload stays alive while chunks arrive: a one-request upload
		 * until @hidden_expires_ms, a client's session at least until
		 * @expires_at_least_ms (never shorter than it was). */
		int64_t expires = s.hidden ? hidden_expires_ms
					   : (s.expires_at_ms < expires_at_least_ms ? expires_at_least_ms
										    : s.expires_at_ms);
		json_t *items = json_array();
		json_array_append_new(
		    items, dyn_tx_update(d->sessions, ddb_key(pk, "META"),
					 "SET version = :v1, expires_at = :e, #t = :ttl",
					 "version = :v", json_pack("{s:s}", "#t", "ttl"),
					 json_pack("{s:o, s:o, s:o, s:o}", ":v", ddb_n(s.version),
						   ":v1", ddb_n(s.version + 1), ":e", ddb_n(expires),
						   ":ttl", ddb_n(ttl_of(expires)))));
		json_array_append_new(
		    items, dyn_tx_put(d->sessions,
				      json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "pk", ddb_s(pk),
						"sk", ddb_s(sk), "chunk_id", ddb_s(chunk->chunk_id),
						"size", ddb_n((int64_t)chunk->size), "stored_size",
						ddb_n((int64_t)chunk->stored_size), "created_at",
						ddb_n(now_ms)),
				      old[0] ? "chunk_id = :old" : "attribute_not_exists(sk)", NULL,
				      old[0] ? json_pack("{s:o}", ":old", ddb_s(old)) : NULL));
		size_t new_at = SIZE_MAX, expected = 2;
		if (strcmp(old, chunk->chunk_id) != 0) {
			new_at = 2;
			json_array_append_new(items, dedup ? dyn_chunk_ref(d, chunk->chunk_id, 1)
							   : dyn_chunk_ref_new(d, chunk, now_ms));
			expected++;
			if (old[0]) {
				json_array_append_new(items, dyn_chunk_ref(d, old, -1));
				expected++;
			}
		}
		/* the replicas with the reference, as SQL's take_chunk_ref */
		for (size_t i = 0; i < worker_count; i++, expected++)
			json_array_append_new(items, dyn_replica_good(d, chunk->chunk_id,
								      worker_ids[i], now_ms));
		r = dyn_tx(d, items, expected, &res);
		if (r == 0) {
			if (old[0] && strcmp(old, chunk->chunk_id) != 0)
				dyn_chunks_mark_zero(d, (const char(*)[65])old, 1, now_ms);
			return 0;
		}
		if (r == -ECANCELED && new_at != SIZE_MAX && res.failed[new_at] && dedup)
			return -ESTALE; /* collected since the caller looked */
		if (r != -ECANCELED && r != -EBUSY)
			return dyn_fail("TransactWriteItems (session chunk)", r, &res);
		/* lost a race with another change of the session, or the
		 * collector took the chunk's item: read again */
		efs_sleep_ms(5 * (attempt + 1));
	}
	return -EAGAIN;
}

/* ---- completion -------------------------------------------------------------- */

/* How many entries of @l from @i go into one chunk-list item: a run of
 * consecutive indexes, at most DYN_LIST_IDS. */
static size_t run_length(const struct chunk_list *l, size_t i)
{
	size_t n = 1;
	while (i + n < l->count && n < DYN_LIST_IDS && l->items[i + n].index == l->items[i].index + n)
		n++;
	return n;
}

/* Removes the chunk-list items a complete wrote before its commit failed
 * (the session moved on or ended): best effort, they count nothing. */
static void delete_chunk_lists(struct dyn *d, const char *file_id, const struct chunk_list *l)
{
	char pk[EFS_ID_MAX + 16], sk[32];
	snprintf(pk, sizeof(pk), "FILE#%s", file_id);
	for (size_t i = 0; i < l->count; i += run_length(l, i)) {
		struct ddb_result res;
		dyn_list_sk(l->items[i].index, sk);
		int r = dyn_delete(d, d->files, pk, sk, NULL, NULL, NULL, &res);
		if (r < 0) {
			dyn_fail("DeleteItem (uncommitted chunk list)", r, &res);
			return;
		}
	}
}

/* Writes the file's chunk-list items (runs of consecutive indexes, at most
 * DYN_LIST_IDS each); invisible until the file's META exists. */
static int write_chunk_lists(struct dyn *d, const char *file_id, const struct chunk_list *l,
			     int64_t now_ms)
{
	char pk[EFS_ID_MAX + 16], sk[32];
	snprintf(pk, sizeof(pk), "FILE#%s", file_id);
	for (size_t i = 0, n; i < l->count; i += n) {
		n = run_length(l, i);
		json_t *ids = json_array();
		for (size_t k = 0; k < n; k++)
			json_array_append_new(ids, ddb_s(l->items[i + k].chunk_id));
		dyn_list_sk(l->items[i].index, sk);
		/* created_at: the collector's sweep leaves younger items of a
		 * file without META alone (dynamodb_leftovers.c) */
		json_t *item = json_pack("{s:o, s:o, s:o, s:{s:o}, s:o}", "pk", ddb_s(pk), "sk",
					 ddb_s(sk), "first", ddb_n((int64_t)l->items[i].index),
					 "chunk_ids", "L", ids, "created_at", ddb_n(now_ms));
		struct ddb_result res;
		int r = item ? dyn_put(d, d->files, item, NULL, NULL, NULL, &res) : -ENOMEM;
		json_decref(item);
		if (r < 0)
			return dyn_fail("PutItem (file chunk list)", r, &res);
	}
	return 0;
}

/* Deletes a completed session's CHUNK# items, then its COMPLETED item: they
 * count nothing any more (the session's META is gone). Best effort: what a
 * failure leaves, the collector's sweep removes (dynamodb_leftovers.c). */
static void delete_session_chunks(struct dyn *d, const char *session_id,
				  const struct chunk_list *l)
{
	char pk[EFS_ID_MAX + 16], sk[32];
	session_pk(session_id, pk);
	for (size_t i = 0; i < l->count; i += DDB_MAX_BATCH_WRITE) {
		json_t *requests = json_array();
		for (size_t k = i; k < l->count && k < i + DDB_MAX_BATCH_WRITE; k++) {
			chunk_sk(l->items[k].index, sk);
			json_array_append_new(requests, json_pack("{s:{s:o}}", "DeleteRequest", "Key",
								  ddb_key(pk, sk)));
		}
		json_t *body = json_pack("{s:{s:o}}", "RequestItems", d->sessions, requests);
		json_t *answer = NULL;
		struct ddb_result res;
		int r =
		    body ? ddb_call(&d->ddb, "BatchWriteItem", body, true, &answer, &res) : -ENOMEM;
		json_decref(body);
		/* BatchWriteItem may leave some undone: they stay for the sweep,
		 * and so must the COMPLETED item that says they count nothing */
		size_t undone = json_object_size(json_object_get(answer, "UnprocessedItems"));
		json_decref(answer);
		if (r < 0) {
			dyn_fail("BatchWriteItem (completed session's chunks)", r, &res);
			return;
		}
		if (undone)
			return;
	}
	struct ddb_result res;
	int r = dyn_delete(d, d->sessions, pk, DYN_SESSION_COMPLETED_SK, NULL, NULL, NULL, &res);
	if (r < 0)
		dyn_fail("DeleteItem (completed session's mark)", r, &res);
}

int dyn_session_complete(void *impl, const char *session_id, int64_t version,
			 const struct efs_file_info *file, int64_t remember_until_ms)
{
	struct dyn *d = impl;
	struct efs_session_info s;
	struct chunk_list l = {0};
	char pk[EFS_ID_MAX + 16], fpk[EFS_ID_MAX + 16];
	json_t *existing = NULL;
	int r;

	if ((r = dyn_session_get(d, session_id, &s)) < 0)
		return r;
	if (s.version != version)
		return -ESTALE;
	snprintf(fpk, sizeof(fpk), "FILE#%s", file->file_id);
	if ((r = dyn_get(d, d->files, fpk, "META", &existing)) == 0) {
		json_decref(existing);
		return -EEXIST; /* never overwrite a file's chunk list */
	}
	if (r != -ENOENT)
		return r;
	if ((r = query_chunks(d, session_id, &l)) < 0)
		return r;
	if ((r = write_chunk_lists(d, file->file_id, &l, efs_now_ms())) < 0) {
		delete_chunk_lists(d, file->file_id, &l);
		goto out;
	}
	if (dyn_test_before_commit)
		dyn_test_before_commit(d, file->file_id);
	session_pk(session_id, pk);
	for (int attempt = 0; attempt < DYN_TX_ATTEMPTS; attempt++) {
		struct ddb_result res;
		json_t *items = json_array();
		char dpk[EFS_ID_MAX + 16];
		json_array_append_new(items, dyn_tx_delete(d->sessions, ddb_key(pk, "META"),
							   "version = :v", NULL,
							   json_pack("{s:o}", ":v", ddb_n(version))));
		json_array_append_new(items, dyn_tx_put(d->files, dyn_file_item(file),
							"attribute_not_exists(pk)", NULL, NULL));
		if (remember_until_ms > 0) {
			snprintf(dpk, sizeof(dpk), DONE_PK "%s", session_id);
			json_array_append_new(
			    items,
			    dyn_tx_put(d->sessions,
				       json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "pk",
						 ddb_s(dpk), "sk", ddb_s("META"), "owner",
						 ddb_s(file->owner), "file_id", ddb_s(file->file_id),
						 "expires_at", ddb_n(remember_until_ms), "kind",
						 ddb_s("done"), "ttl", ddb_n(ttl_of(remember_until_ms))),
				       NULL, NULL, NULL));
		}
		size_t expected = remember_until_ms > 0 ? 3 : 2, check_at = SIZE_MAX;
		/* The mark that the session's CHUNK# items count nothing from now
		 * on, until they are deleted (the collector's sweep reads it). */
		json_array_append_new(
		    items,
		    dyn_tx_put(d->sessions,
			       json_pack("{s:o, s:o, s:o, s:o}", "pk", ddb_s(pk), "sk",
					 ddb_s(DYN_SESSION_COMPLETED_SK), "file_id",
					 ddb_s(file->file_id), "created_at", ddb_n(efs_now_ms())),
			       NULL, NULL, NULL));
		expected++;
		/* The file's first chunk-list item must still be there: the
		 * collector's sweep deletes a file's chunk lists without META,
		 * the first one in a transaction checking that META is absent,
		 * so either this commit or that sweep wins, never both. */
		if (l.count) {
			char first_sk[32];
			dyn_list_sk(l.items[0].index, first_sk);
			check_at = expected++;
			json_array_append_new(items,
					      dyn_tx_check(d->files, ddb_key(fpk, first_sk),
							   "attribute_exists(sk)", NULL, NULL));
		}
		r = dyn_tx(d, items, expected, &res);
		if (r == -EBUSY) {
			efs_sleep_ms(5 * (attempt + 1));
			continue;
		}
		if (r == -ECANCELED && check_at != SIZE_MAX && res.failed[check_at]) {
			efs_warn("dynamodb: complete of session %s: the chunk lists of file %s were"
				 " swept as leftovers before its commit (slower than the sweep's"
				 " grace): not committed",
				 session_id, file->file_id);
			r = -EAGAIN;
		} else if (r == -ECANCELED && res.failed[1])
			r = -EEXIST;
		else if (r == -ECANCELED)
			r = dyn_session_get(d, session_id, &s) == -ENOENT ? -ENOENT : -ESTALE;
		else if (r < 0)
			r = dyn_fail("TransactWriteItems (complete)", r, &res);
		break;
	}
	if (r == 0)
		delete_session_chunks(d, session_id, &l);
	else if (r != -EEXIST)
		delete_chunk_lists(d, file->file_id, &l); /* the file never appeared */
out:
	free(l.items);
	return r;
}

int dyn_session_done_get(void *impl, const char *session_id, struct efs_session_done *out)
{
	struct dyn *d = impl;
	struct efs_session_done done;
	char pk[EFS_ID_MAX + 16];
	json_t *item = NULL;
	memset(&done, 0, sizeof(done));
	snprintf(pk, sizeof(pk), DONE_PK "%s", session_id);
	int r = dyn_get(d, d->sessions, pk, "META", &item);
	if (r < 0)
		return r;
	if (ddb_get_s(item, "owner", done.owner, EFS_ID_MAX) < 0 ||
	    ddb_get_s(item, "file_id", done.file_id, EFS_ID_MAX) < 0 ||
	    ddb_get_n(item, "expires_at", &done.expires_at_ms) < 0)
		r = -EIO;
	json_decref(item);
	if (r < 0)
		return r;
	efs_strlcpy(done.session_id, session_id, sizeof(done.session_id));
	*out = done;
	return 0;
}

/* ---- expiry through the by_expiry index ------------------------------------------ */

struct expired {
	char (*ids)[EFS_ID_MAX + 1]; /* NULL: delete each item found */
	struct dyn *d;
	size_t count;
	const char *prefix;
};

static int take_expired(void *ctx, const json_t *item)
{
	struct expired *e = ctx;
	char pk[EFS_ID_MAX + 16];
	size_t plen = strlen(e->prefix);
	if (ddb_get_s(item, "pk", pk, sizeof(pk) - 1) < 0 || strncmp(pk, e->prefix, plen) != 0)
		return 0;
	if (e->ids) {
		efs_strlcpy(e->ids[e->count++], pk + plen, EFS_ID_MAX + 1);
		return 0;
	}
	struct ddb_result res;
	int r = dyn_delete(e->d, e->d->sessions, pk, "META", NULL, NULL, NULL, &res);
	if (r < 0)
		return dyn_fail("DeleteItem (completed session)", r, &res);
	e->count++;
	return 0;
}

static int query_expired(struct dyn *d, const char *kind, int64_t before_ms, size_t max,
			 struct expired *e)
{
	if (max == 0)
		return 0;
	json_t *body = json_pack("{s:s, s:s, s:s, s:{s:s, s:s}, s:{s:o, s:o}}", "TableName",
				 d->sessions, "IndexName", "by_expiry", "KeyConditionExpression",
				 "#k = :k AND #e < :now", "ExpressionAttributeNames", "#k", "kind",
				 "#e", "expires_at", "ExpressionAttributeValues", ":k", ddb_s(kind),
				 ":now", ddb_n(before_ms));
	int r = body ? ddb_query_all(&d->ddb, "Query", body, max, take_expired, e) : -ENOMEM;
	json_decref(body);
	return r < 0 && r != -ENOMEM ? dyn_fail("Query (by_expiry)", r, NULL) : r;
}

int dyn_session_done_purge(void *impl, int64_t now_ms, size_t max, size_t *count)
{
	struct expired e = {NULL, impl, 0, DONE_PK};
	int r = query_expired(impl, "done", now_ms, max, &e);
	if (r == 0)
		*count = e.count;
	return r;
}

int dyn_session_expired(void *impl, int64_t now_ms, size_t max, char (*ids)[EFS_ID_MAX + 1],
			size_t *count)
{
	struct dyn *d = impl;
	struct expired e = {ids, d, 0, SESSION_PK};
	/* The collector calls this under the lease: it also finishes the
	 * releases a dead master left half done. */
	int r = dyn_release_stale(d, now_ms - DYN_RELEASE_STALE_MS, 8);
	if (r < 0)
		efs_warn("dynamodb: finishing stale releases: %s", strerror(-r));
	r = query_expired(d, "session", now_ms, max, &e);
	if (r == 0)
		*count = e.count;
	return r;
}

/* ---- delete ------------------------------------------------------------------ */

int dyn_session_delete(void *impl, const char *session_id, int64_t now_ms)
{
	struct dyn *d = impl;
	struct efs_session_info s;
	struct ddb_result res;
	char pk[EFS_ID_MAX + 16], what[EFS_ID_MAX + 8];
	int r;

	if ((r = dyn_session_get(d, session_id, &s)) < 0)
		return r;
	session_pk(session_id, pk);
	snprintf(what, sizeof(what), "S#%s", session_id);
	/* Invisible first (the META goes, with the version condition that
	 * makes a concurrent chunk fail), the release marker with it. */
	json_t *items = json_array();
	json_array_append_new(items, dyn_tx_delete(d->sessions, ddb_key(pk, "META"),
						   "attribute_exists(pk)", NULL, NULL));
	json_array_append_new(items, dyn_tx_put(d->sessions,
						dyn_release_marker(d, what, s.owner, now_ms), NULL,
						NULL, NULL));
	r = dyn_tx(d, items, 2, &res);
	if (r == -ECANCELED)
		return -ENOENT; /* ended meanwhile */
	if (r < 0)
		return dyn_fail("TransactWriteItems (session delete)", r, &res);
	if ((r = dyn_release(d, what, now_ms)) < 0)
		efs_warn("dynamodb: session %s deleted, its chunks not all released yet (%s): the"
			 " lease holder finishes it",
			 session_id, strerror(-r));
	return 0;
}
