/* SPDX-License-Identifier: MIT */
/* dynamodb_leftovers.c - the lease holder's sweep of items a dead master left
 * that no file or session names (docs/AWS.md, "Leftovers").
 *
 * Two kinds, found by a Scan of the files and of the sessions table (each
 * partition's items come together, sorted by sort key):
 *
 * - a file's CHUNKS# items without the file's META and without a release
 *   marker: a complete that wrote them and never committed. They count
 *   nothing (the session still holds the references). Deleted; the first
 *   one in a transaction that checks the META and the marker absent, and
 *   the complete's commit checks that first item present, so a slow
 *   complete and the sweep never both succeed.
 * - a session's CHUNK# items (or its COMPLETED item) without the session's
 *   META and without a release marker:
 *   - with COMPLETED or DONE# (or written before CHUNK# items had
 *     created_at: see below): a complete committed and died in its
 *     cleanup. They count nothing: deleted, then COMPLETED;
 *   - otherwise the META went without a complete or a release: DynamoDB's
 *     TTL removed an open session the collector had not expired. They hold
 *     one reference each: a release marker is put (conditioned on the META,
 *     COMPLETED and the marker being absent) and dyn_release() subtracts
 *     them exactly once, as for a deleted session.
 *
 * Items younger than the grace are left alone: a complete or a cleanup in
 * progress. Every write is conditional or idempotent, so a sweep that dies
 * half way is redone by the next one.
 */
#include "meta/dynamodb.h"

#include "echofs/log.h"
#include "echofs/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Partitions one pass looks at, per table: the rest waits for the next. */
#define SWEEP_MAX_PARTITIONS 64

struct nominees {
	const char *pk_prefix;	 /* FILE# or SESSION# */
	const char *unit_prefix; /* CHUNKS# or CHUNK# */
	int64_t before_ms;
	/* the partition being read */
	char cur[EFS_ID_MAX + 24];
	bool units, young, meta, completed;
	/* what the pass found */
	char pk[SWEEP_MAX_PARTITIONS][EFS_ID_MAX + 24];
	size_t count;
};

static void nominate(struct nominees *n)
{
	if (n->cur[0] && !n->meta && (n->units || n->completed) && !n->young &&
	    n->count < SWEEP_MAX_PARTITIONS)
		memcpy(n->pk[n->count++], n->cur, sizeof(n->cur));
	n->cur[0] = 0;
	n->units = n->young = n->meta = n->completed = false;
}

static int see_item(void *ctx, const json_t *item)
{
	struct nominees *n = ctx;
	char pk[EFS_ID_MAX + 24], sk[64];
	int64_t created = 0;
	if (ddb_get_s(item, "pk", pk, sizeof(pk) - 1) < 0 ||
	    ddb_get_s(item, "sk", sk, sizeof(sk) - 1) < 0)
		return 0;
	if (strncmp(pk, n->pk_prefix, strlen(n->pk_prefix)) != 0)
		return 0;
	if (strcmp(pk, n->cur) != 0) {
		nominate(n);
		efs_strlcpy(n->cur, pk, sizeof(n->cur));
	}
	if (strcmp(sk, "META") == 0) {
		n->meta = true;
		return 0;
	}
	bool unit = strncmp(sk, n->unit_prefix, strlen(n->unit_prefix)) == 0;
	bool completed = strcmp(sk, DYN_SESSION_COMPLETED_SK) == 0;
	if (!unit && !completed)
		return 0;
	n->units |= unit;
	n->completed |= completed;
	if (ddb_get_n(item, "created_at", &created) == 0 && created >= n->before_ms)
		n->young = true;
	return 0;
}

/* Scans @table for partitions of @pk_prefix holding leftovers. */
static int scan(struct dyn *d, const char *table, struct nominees *n)
{
	json_t *body = json_pack("{s:s, s:s, s:{s:s, s:s, s:s}}", "TableName", table,
				 "ProjectionExpression", "#p, #s, #c", "ExpressionAttributeNames",
				 "#p", "pk", "#s", "sk", "#c", "created_at");
	int r = body ? ddb_query_all(&d->ddb, "Scan", body, 0, see_item, n) : -ENOMEM;
	json_decref(body);
	nominate(n);
	return r;
}

/* One partition's items of @prefix (consistent): their sort keys, whether
 * each has created_at. */
struct units {
	char (*sk)[32];
	bool *dated;
	size_t count, alloc;
};

static int push_unit(void *ctx, const json_t *item)
{
	struct units *u = ctx;
	int64_t created;
	if (u->count == u->alloc) {
		size_t alloc = u->alloc ? u->alloc * 2 : 64;
		void *sk = realloc(u->sk, alloc * sizeof(*u->sk));
		if (!sk)
			return -ENOMEM;
		u->sk = sk;
		void *dated = realloc(u->dated, alloc * sizeof(*u->dated));
		if (!dated)
			return -ENOMEM;
		u->dated = dated;
		u->alloc = alloc;
	}
	if (ddb_get_s(item, "sk", u->sk[u->count], 31) < 0)
		return -EIO;
	u->dated[u->count++] = ddb_get_n(item, "created_at", &created) == 0;
	return 0;
}

static int query_units(struct dyn *d, const char *table, const char *pk, const char *prefix,
		       struct units *u)
{
	json_t *body = json_pack(
	    "{s:s, s:s, s:b, s:s, s:{s:s, s:s}, s:{s:o, s:o}}", "TableName", table,
	    "KeyConditionExpression", "pk = :pk AND begins_with(sk, :p)", "ConsistentRead", 1,
	    "ProjectionExpression", "#s, #c", "ExpressionAttributeNames", "#s", "sk", "#c",
	    "created_at", "ExpressionAttributeValues", ":pk", ddb_s(pk), ":p", ddb_s(prefix));
	int r = body ? ddb_query_all(&d->ddb, "Query", body, 0, push_unit, u) : -ENOMEM;
	json_decref(body);
	return r;
}

static void units_release(struct units *u)
{
	free(u->sk);
	free(u->dated);
}

/* Whether the item exists: 1, 0, or a negative errno. */
static int exists(struct dyn *d, const char *table, const char *pk, const char *sk)
{
	json_t *item = NULL;
	int r = dyn_get(d, table, pk, sk, &item);
	json_decref(item);
	return r == 0 ? 1 : r == -ENOENT ? 0 : r;
}

/* Deletes @u's items from index @from on (they count nothing). */
static int delete_units(struct dyn *d, const char *table, const char *pk, const struct units *u,
			size_t from)
{
	for (size_t i = from; i < u->count; i++) {
		struct ddb_result res;
		int r = dyn_delete(d, table, pk, u->sk[i], NULL, NULL, NULL, &res);
		if (r < 0)
			return dyn_fail("DeleteItem (leftover)", r, &res);
	}
	return 0;
}

/* Whether the list item (@pk, @sk) holds references (`counted`, written by
 * a CopyObject's lists): 1, 0, or a negative errno. */
static int counted(struct dyn *d, const char *pk, const char *sk)
{
	json_t *item = NULL;
	int64_t flag = 0;
	int r = dyn_get(d, d->files, pk, sk, &item);
	if (r == 0)
		r = ddb_get_n(item, "counted", &flag) == 0 && flag == 1;
	json_decref(item);
	return r == -ENOENT ? 0 : r;
}

/* Kind D: a CopyObject's or a multipart Complete's lists without META (its
 * master died before the commit). They hold references: one transaction
 * claims them with a release marker (META absent, no marker yet, the first
 * item old: the commit checks the marker absent and that first item
 * present, so of the two exactly one wins), then the release subtracts each
 * item's references once. */
static int sweep_copy(struct dyn *d, const char *pk, const char *first_sk, int64_t before_ms)
{
	const char *file_id = pk + strlen("FILE#");
	char what[EFS_ID_MAX + 8];
	struct ddb_result res;
	int64_t now = efs_now_ms();

	snprintf(what, sizeof(what), "F#%s", file_id);
	json_t *items = json_array();
	json_array_append_new(items, dyn_tx_check(d->files, ddb_key(pk, "META"),
						  "attribute_not_exists(pk)", NULL, NULL));
	json_array_append_new(items, dyn_tx_put(d->sessions,
						dyn_release_marker(d, what, "(leftover copy)", now),
						"attribute_not_exists(pk)", NULL, NULL));
	json_array_append_new(items, dyn_tx_check(d->files, ddb_key(pk, first_sk),
						  "attribute_exists(sk) AND #c < :b",
						  json_pack("{s:s}", "#c", "created_at"),
						  json_pack("{s:o}", ":b", ddb_n(before_ms))));
	int r = dyn_tx(d, items, 3, &res);
	if (r == -ECANCELED || r == -EBUSY)
		return 0; /* committed, being released, or young */
	if (r < 0)
		return dyn_fail("TransactWriteItems (leftover copy)", r, &res);
	if ((r = dyn_release(d, what, now)) < 0)
		return r;
	efs_info("dynamodb: released the chunk lists of file %s, a copy or a multipart complete"
		 " that never became visible (its master stopped before the commit)",
		 file_id);
	return 0;
}

static int sweep_file(struct dyn *d, const char *pk, int64_t before_ms)
{
	const char *file_id = pk + strlen("FILE#");
	char marker[EFS_ID_MAX + 24];
	struct units u = {0};
	struct ddb_result res;
	int r;

	snprintf(marker, sizeof(marker), "RELEASE#F#%s", file_id);
	if ((r = query_units(d, d->files, pk, "CHUNKS#", &u)) < 0 || u.count == 0)
		goto out;
	if ((r = counted(d, pk, u.sk[0])) != 0) {
		if (r > 0)
			r = sweep_copy(d, pk, u.sk[0], before_ms);
		goto out;
	}
	/* The first list item, with the checks that make it a leftover: no
	 * META (the complete's commit checks this item present), no release
	 * in progress, and old enough. */
	json_t *items = json_array();
	json_array_append_new(items, dyn_tx_check(d->files, ddb_key(pk, "META"),
						  "attribute_not_exists(pk)", NULL, NULL));
	json_array_append_new(items, dyn_tx_check(d->sessions, ddb_key(marker, "META"),
						  "attribute_not_exists(pk)", NULL, NULL));
	json_array_append_new(
	    items, dyn_tx_delete(d->files, ddb_key(pk, u.sk[0]),
				 "attribute_exists(sk) AND (attribute_not_exists(#c) OR #c < :b)",
				 json_pack("{s:s}", "#c", "created_at"),
				 json_pack("{s:o}", ":b", ddb_n(before_ms))));
	r = dyn_tx(d, items, 3, &res);
	if (r == -ECANCELED || r == -EBUSY) {
		r = 0; /* a file, a release, or a young complete: not a leftover */
		goto out;
	}
	if (r < 0) {
		r = dyn_fail("TransactWriteItems (leftover chunk list)", r, &res);
		goto out;
	}
	if ((r = delete_units(d, d->files, pk, &u, 1)) == 0)
		efs_info("dynamodb: removed %zu chunk-list item(s) of file %s, which never became"
			 " visible (a complete that did not commit); they held no references",
			 u.count, file_id);
out:
	units_release(&u);
	return r;
}

static int sweep_session(struct dyn *d, const char *pk, int64_t before_ms, int64_t now_ms)
{
	const char *session_id = pk + strlen("SESSION#");
	char marker[EFS_ID_MAX + 24], done[EFS_ID_MAX + 16], what[EFS_ID_MAX + 8];
	struct units u = {0};
	bool legacy = false;
	int r, completed, done_item;

	snprintf(marker, sizeof(marker), "RELEASE#S#%s", session_id);
	snprintf(done, sizeof(done), "DONE#%s", session_id);
	snprintf(what, sizeof(what), "S#%s", session_id);
	/* alive, being released, or an error: nothing to do now */
	if ((r = exists(d, d->sessions, pk, "META")) != 0 ||
	    (r = exists(d, d->sessions, marker, "META")) != 0)
		goto out;
	if ((completed = r = exists(d, d->sessions, pk, DYN_SESSION_COMPLETED_SK)) < 0 ||
	    (done_item = r = exists(d, d->sessions, done, "META")) < 0)
		goto out;
	if ((r = query_units(d, d->sessions, pk, "CHUNK#", &u)) < 0)
		goto out;
	for (size_t i = 0; i < u.count; i++)
		legacy |= !u.dated[i];
	if (completed || done_item || legacy) {
		/* A committed complete's cleanup died: the file holds the
		 * references. Legacy items (written before CHUNK# items had
		 * created_at and completes their COMPLETED item) are taken as
		 * such: at worst counts stay up, never a chunk lost. */
		if ((r = delete_units(d, d->sessions, pk, &u, 0)) < 0)
			goto out;
		struct ddb_result res;
		if (completed && (r = dyn_delete(d, d->sessions, pk, DYN_SESSION_COMPLETED_SK, NULL,
						 NULL, NULL, &res)) < 0) {
			r = dyn_fail("DeleteItem (completed session's mark)", r, &res);
			goto out;
		}
		if (u.count && !completed && !done_item)
			efs_warn("dynamodb: removed %zu CHUNK# item(s) of session %s, which has no"
				 " item saying whether it completed (written by an older version):"
				 " taken as completed; if it was not, their chunks' counts stay up",
				 u.count, session_id);
		else
			efs_info("dynamodb: removed %zu CHUNK# item(s) of completed session %s"
				 " (its cleanup did not finish); they held no references",
				 u.count, session_id);
		goto out;
	}
	if (u.count == 0)
		goto out;
	/* The META went with no complete and no release (DynamoDB's TTL): the
	 * items hold the session's references. Release them as a delete
	 * would, through a marker put only if nothing else explains them. */
	struct ddb_result res;
	json_t *items = json_array();
	json_array_append_new(items,
			      dyn_tx_put(d->sessions,
					 dyn_release_marker(d, what, "(session vanished)", now_ms),
					 "attribute_not_exists(pk)", NULL, NULL));
	json_array_append_new(items, dyn_tx_check(d->sessions, ddb_key(pk, "META"),
						  "attribute_not_exists(pk)", NULL, NULL));
	json_array_append_new(items,
			      dyn_tx_check(d->sessions, ddb_key(pk, DYN_SESSION_COMPLETED_SK),
					   "attribute_not_exists(pk)", NULL, NULL));
	r = dyn_tx(d, items, 3, &res);
	if (r == -ECANCELED || r == -EBUSY) {
		r = 0;
		goto out;
	}
	if (r < 0) {
		r = dyn_fail("TransactWriteItems (vanished session's release)", r, &res);
		goto out;
	}
	efs_warn("dynamodb: session %s is gone without a complete or a release (removed by"
		 " DynamoDB's TTL?): releasing the references of its %zu CHUNK# item(s)",
		 session_id, u.count);
	r = dyn_release(d, what, now_ms);
out:
	units_release(&u);
	return r < 0 ? r : 0;
}

void dyn_sweep_leftovers(struct dyn *d, int64_t before_ms, int64_t now_ms)
{
	struct nominees *n = calloc(1, sizeof(*n));
	int r = 0;
	if (!n)
		return;
	n->pk_prefix = "FILE#";
	n->unit_prefix = "CHUNKS#";
	n->before_ms = before_ms;
	if ((r = scan(d, d->files, n)) < 0) {
		dyn_fail("Scan (leftover chunk lists)", r, NULL);
		goto out;
	}
	for (size_t i = 0; i < n->count && r >= 0; i++)
		r = sweep_file(d, n->pk[i], before_ms);
	if (r < 0)
		goto out;
	memset(n, 0, sizeof(*n));
	n->pk_prefix = "SESSION#";
	n->unit_prefix = "CHUNK#";
	n->before_ms = before_ms;
	if ((r = scan(d, d->sessions, n)) < 0) {
		dyn_fail("Scan (leftover session chunks)", r, NULL);
		goto out;
	}
	for (size_t i = 0; i < n->count && r >= 0; i++)
		r = sweep_session(d, n->pk[i], before_ms, now_ms);
out:
	if (r < 0)
		efs_warn("dynamodb: sweep of leftover items stopped (%s); the next one goes on",
			 strerror(-r));
	free(n);
}
