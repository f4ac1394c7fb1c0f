/* SPDX-License-Identifier: MIT */
/* dynamodb_s3_multipart.c - S3 multipart uploads on DynamoDB (contract in
 * meta.h, "S3 multipart uploads"; items and write order in docs/AWS.md,
 * "Multipart uploads on DynamoDB"). In the sessions table:
 *
 *   UPLOAD#<id>      / META        bucket, object_key, owner, headers,
 *                                  created_at, expires_at, kind = "s3upload"
 *                                  (the by_expiry index: the collector's
 *                                  list), parts_version, completed (0/1);
 *                                  file_id, size, etag, last_modified once
 *                                  completed; aborted once aborted
 *   UPLOAD#<id>      / PART#<5 digits>  session_id, size, etag, chunk_size,
 *                                  chunk_count, stored_bytes, last_modified,
 *                                  gen (a random token per acknowledgement)
 *   UPLOADS#<bucket> / <key>\1\1<id>    object_key, upload_id, owner,
 *                                  created_at: an upload in progress, for
 *                                  ListMultipartUploads in (key, id) order
 *
 * A part's chunks stay referenced by the hidden session its pipeline
 * recorded them in (CHUNK# items count as chunk lists do). Acknowledging a
 * part is one transaction: the upload still open (and its parts_version
 * raised), the part's session unchanged since its chunks were counted (and
 * given the upload's expiry), the PART# item over exactly the one read,
 * and the session of the part it replaces ended (META out, release marker
 * in: released exactly once, after the transaction).
 *
 * Complete cannot move thousands of sessions' references in one
 * transaction (100 items at most), so it writes as CopyObject does: the
 * new file's chunk lists first, each in one transaction with the counts it
 * adds (`counted`) and a check that the part's session still holds its
 * chunks (so no count can have reached 0); then one commit transaction (the
 * object, the file META, the upload marked completed at the parts_version
 * its parts were read at, the listing item out); then every part's session
 * is released and its PART# item deleted. Misaligned parts copied by the
 * master into a session of its own: the lists come from that session
 * (the listed parts still checked current), which is released after the
 * commit with the parts. A master that dies before the
 * commit leaves counted lists without META (kind D of the leftovers sweep);
 * one that dies after it leaves part sessions and PART# items that the
 * upload's expiry releases (the collector's abort of the completed upload).
 */
#include "meta/dynamodb.h"

#include "echofs/log.h"
#include "echofs/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UPLOAD_PK "UPLOAD#"
#define UPLOADS_PK "UPLOADS#"
#define PART_SK "PART#"
#define UPLOAD_KIND "s3upload"
/* A listing item's sort key: the key escaped (\1 -> \1\2), \1\1, the id. */
#define LISTING_SK_MAX (2 * EFS_S3_KEY_MAX + EFS_ID_MAX + 8)

int (*dyn_test_complete_hook)(struct dyn *d, const char *file_id, unsigned step);

static void upload_pk(const char *upload_id, char out[EFS_ID_MAX + 16])
{
	snprintf(out, EFS_ID_MAX + 16, UPLOAD_PK "%s", upload_id);
}

static void part_sk(unsigned number, char out[16])
{
	snprintf(out, 16, PART_SK "%05u", number);
}

static void uploads_pk(const char *bucket, char out[EFS_S3_BUCKET_MAX + 16])
{
	snprintf(out, EFS_S3_BUCKET_MAX + 16, UPLOADS_PK "%s", bucket);
}

/* @key with each \1 written \1\2, then @tail: the order of the results is
 * the keys' byte order, and \1\1 after a key sorts below anything a longer
 * key can continue with (keys hold no NUL). */
static void escaped(const char *key, const char *tail, char out[LISTING_SK_MAX])
{
	size_t n = 0;
	for (const char *p = key; *p && n + 2 < LISTING_SK_MAX; p++) {
		out[n++] = *p;
		if (*p == '\1')
			out[n++] = '\2';
	}
	out[n] = '\0';
	efs_strlcpy(out + n, tail, LISTING_SK_MAX - n);
}

static void listing_sk(const char *key, const char *upload_id, char out[LISTING_SK_MAX])
{
	char tail[EFS_ID_MAX + 4];
	snprintf(tail, sizeof(tail), "\1\1%s", upload_id);
	escaped(key, tail, out);
}

static void set_opt(json_t *item, const char *name, const char *value)
{
	if (value[0])
		json_object_set_new(item, name, ddb_s(value));
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

static int64_t ttl_of(int64_t expires_at_ms)
{
	return (expires_at_ms > 0 ? expires_at_ms / 1000 : 0) + DYN_TTL_GRACE_S;
}

/* ---- the upload item ------------------------------------------------- */

/* The upload item as stored: the struct, its parts_version, whether it was
 * aborted (its cleanup possibly unfinished). */
struct upload_state {
	struct efs_s3_upload u;
	int64_t parts_version;
	bool aborted;
};

static int upload_from_item(const json_t *item, const char *upload_id, struct upload_state *st)
{
	struct efs_s3_upload *u = &st->u;
	struct efs_object_info *o = &u->obj;
	int64_t completed = 0, size = 0, flag = 0;
	memset(st, 0, sizeof(*st));
	efs_strlcpy(u->upload_id, upload_id, sizeof(u->upload_id));
	if (ddb_get_s(item, "bucket", o->bucket, EFS_S3_BUCKET_MAX) < 0 ||
	    ddb_get_s(item, "object_key", o->key, EFS_S3_KEY_MAX) < 0 ||
	    ddb_get_s(item, "owner", u->owner, EFS_ID_MAX) < 0 ||
	    ddb_get_n(item, "created_at", &u->created_at_ms) < 0 ||
	    ddb_get_n(item, "expires_at", &u->expires_at_ms) < 0 ||
	    ddb_get_n(item, "parts_version", &st->parts_version) < 0 ||
	    ddb_get_n(item, "completed", &completed) < 0 ||
	    get_opt(item, "content_type", o->content_type, EFS_S3_HEADER_MAX) < 0 ||
	    get_opt(item, "content_encoding", o->content_encoding, EFS_S3_HEADER_MAX) < 0 ||
	    get_opt(item, "content_disposition", o->content_disposition, EFS_S3_HEADER_MAX) < 0 ||
	    get_opt(item, "cache_control", o->cache_control, EFS_S3_HEADER_MAX) < 0 ||
	    get_opt(item, "expires", o->expires, EFS_S3_HEADER_MAX) < 0 ||
	    get_opt(item, "user_meta", o->user_meta, EFS_S3_USER_META_MAX) < 0 ||
	    get_opt(item, "file_id", o->file_id, EFS_ID_MAX) < 0 ||
	    get_opt(item, "etag", o->etag, EFS_S3_ETAG_MAX) < 0)
		return -EIO;
	u->completed = completed != 0;
	if (u->completed && (ddb_get_n(item, "size", &size) < 0 ||
			     ddb_get_n(item, "last_modified", &o->last_modified_ms) < 0))
		return -EIO;
	o->size = (uint64_t)size;
	st->aborted = ddb_get_n(item, "aborted", &flag) == 0 && flag != 0;
	return 0;
}

/* The upload item, consistently. -ENOENT when there is none. */
static int upload_read(struct dyn *d, const char *upload_id, struct upload_state *st)
{
	char pk[EFS_ID_MAX + 16];
	json_t *item = NULL;
	if (!upload_id[0] || strlen(upload_id) > EFS_ID_MAX)
		return -ENOENT;
	upload_pk(upload_id, pk);
	int r = dyn_get(d, d->sessions, pk, "META", &item);
	if (r < 0)
		return r;
	r = upload_from_item(item, upload_id, st);
	json_decref(item);
	return r;
}

int dyn_s3_upload_create(void *impl, const struct efs_s3_upload *u)
{
	struct dyn *d = impl;
	const struct efs_object_info *o = &u->obj;
	char pk[EFS_ID_MAX + 16], bpk[EFS_S3_BUCKET_MAX + 16], lpk[EFS_S3_BUCKET_MAX + 16];
	char *lsk = malloc(LISTING_SK_MAX);
	int r = -EAGAIN;

	if (!lsk)
		return -ENOMEM;
	upload_pk(u->upload_id, pk);
	snprintf(bpk, sizeof(bpk), "BUCKET#%s", o->bucket);
	uploads_pk(o->bucket, lpk);
	listing_sk(o->key, u->upload_id, lsk);
	for (int attempt = 0; attempt < DYN_TX_ATTEMPTS; attempt++) {
		struct ddb_result res;
		json_t *meta = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "pk",
					 ddb_s(pk), "sk", ddb_s("META"), "bucket", ddb_s(o->bucket),
					 "object_key", ddb_s(o->key), "owner", ddb_s(u->owner),
					 "created_at", ddb_n(u->created_at_ms), "expires_at",
					 ddb_n(u->expires_at_ms), "kind", ddb_s(UPLOAD_KIND),
					 "parts_version", ddb_n(0), "completed", ddb_n(0));
		if (meta) {
			set_opt(meta, "content_type", o->content_type);
			set_opt(meta, "content_encoding", o->content_encoding);
			set_opt(meta, "content_disposition", o->content_disposition);
			set_opt(meta, "cache_control", o->cache_control);
			set_opt(meta, "expires", o->expires);
			set_opt(meta, "user_meta", o->user_meta);
		}
		json_t *items = json_array();
		/* 0: the bucket takes writes (a DeleteBucket's mark: it would
		 * not see this upload) */
		json_array_append_new(
		    items, dyn_tx_check(d->files, ddb_key(bpk, "META"),
					"attribute_exists(pk) AND attribute_not_exists(#d)",
					json_pack("{s:s}", "#d", "deleting"), NULL));
		json_array_append_new(
		    items, dyn_tx_put(d->sessions, meta, "attribute_not_exists(pk)", NULL, NULL));
		json_array_append_new(
		    items,
		    dyn_tx_put(d->sessions,
			       json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "pk", ddb_s(lpk), "sk",
					 ddb_s(lsk), "object_key", ddb_s(o->key), "upload_id",
					 ddb_s(u->upload_id), "owner", ddb_s(u->owner),
					 "created_at", ddb_n(u->created_at_ms)),
			       NULL, NULL, NULL));
		r = dyn_tx(d, items, 3, &res);
		if (r == 0)
			break;
		if (r == -ECANCELED && res.failed[1]) {
			r = -EEXIST;
			break;
		}
		if (r == -ECANCELED) {
			if ((r = dyn_bucket_blocked(d, o->bucket, efs_now_ms())) < 0)
				break; /* -ENOENT: the bucket is gone */
		} else if (r != -EBUSY) {
			r = dyn_fail("TransactWriteItems (S3 upload create)", r, &res);
			break;
		}
		efs_sleep_ms(5 * (attempt + 1));
		r = -EAGAIN;
	}
	free(lsk);
	return r;
}

int dyn_s3_upload_get(void *impl, const char *upload_id, struct efs_s3_upload *out)
{
	struct upload_state *st = malloc(sizeof(*st));
	if (!st)
		return -ENOMEM;
	int r = upload_read(impl, upload_id, st);
	if (r == 0 && st->aborted)
		r = -ENOENT; /* its cleanup is under way */
	if (r == 0)
		*out = st->u;
	free(st);
	return r;
}

/* ---- parts ------------------------------------------------------------ */

static int part_from_item(const json_t *item, struct efs_s3_part *p)
{
	int64_t n = 0, size = 0, chunk_size = 0, chunk_count = 0, stored = 0;
	memset(p, 0, sizeof(*p));
	if (ddb_get_n(item, "part_number", &n) < 0 || n < 1 || n > EFS_S3_PART_MAX ||
	    get_opt(item, "session_id", p->session_id, EFS_ID_MAX) < 0 ||
	    ddb_get_n(item, "size", &size) < 0 ||
	    ddb_get_s(item, "etag", p->etag, EFS_S3_ETAG_MAX) < 0 ||
	    ddb_get_n(item, "chunk_size", &chunk_size) < 0 ||
	    ddb_get_n(item, "chunk_count", &chunk_count) < 0 ||
	    ddb_get_n(item, "stored_bytes", &stored) < 0 ||
	    ddb_get_n(item, "last_modified", &p->last_modified_ms) < 0 ||
	    get_opt(item, "checksum", p->checksum, EFS_S3_CHECKSUM_MAX) < 0)
		return -EIO;
	p->part_number = (unsigned)n;
	p->size = (uint64_t)size;
	p->chunk_size = (uint64_t)chunk_size;
	p->chunk_count = (uint64_t)chunk_count;
	p->stored_bytes = (uint64_t)stored;
	return 0;
}

/* The PART# item of @number: found, its session id and its gen. */
static int part_read(struct dyn *d, const char *pk, unsigned number, bool *found,
		     char session_id[EFS_ID_MAX + 1], char gen[33])
{
	char sk[16];
	json_t *item = NULL;
	part_sk(number, sk);
	int r = dyn_get(d, d->sessions, pk, sk, &item);
	*found = r == 0;
	session_id[0] = gen[0] = 0;
	if (r == 0 && (get_opt(item, "session_id", session_id, EFS_ID_MAX) < 0 ||
		       ddb_get_s(item, "gen", gen, 32) < 0))
		r = -EIO;
	json_decref(item);
	return r == -ENOENT ? 0 : r;
}

int dyn_s3_part_put(void *impl, const char *upload_id, const char *owner,
		    const struct efs_s3_part *p, int64_t now_ms)
{
	struct dyn *d = impl;
	struct upload_state *st = malloc(sizeof(*st));
	char pk[EFS_ID_MAX + 16], spk[EFS_ID_MAX + 16], opk[EFS_ID_MAX + 16], sk[16];
	char old[EFS_ID_MAX + 1], old_gen[33], gen[33], what[EFS_ID_MAX + 8];
	int r = -EAGAIN;

	if (!st)
		return -ENOMEM;
	upload_pk(upload_id, pk);
	part_sk(p->part_number, sk);
	snprintf(spk, sizeof(spk), "SESSION#%s", p->session_id);
	for (int attempt = 0; attempt < DYN_TX_ATTEMPTS; attempt++) {
		struct efs_session_info sess, old_sess;
		struct ddb_result res;
		bool found = false, release = false;

		memset(&sess, 0, sizeof(sess));
		memset(&old_sess, 0, sizeof(old_sess));
		if ((r = upload_read(d, upload_id, st)) < 0)
			goto out;
		if (st->aborted || st->u.completed || strcmp(st->u.owner, owner) != 0 ||
		    st->u.expires_at_ms <= now_ms) {
			r = -ENOENT;
			goto out;
		}
		if (p->session_id[0]) {
			/* the session holds the part's chunks, counted now; its
			 * version (every chunk moves it) keeps them so until the
			 * transaction */
			struct efs_session_chunk *chunks = NULL;
			size_t count = 0;
			if ((r = dyn_session_get(d, p->session_id, &sess)) < 0 ||
			    (r = dyn_session_chunks(d, p->session_id, &chunks, &count)) < 0) {
				r = r == -ENOENT ? -ESTALE : r;
				goto out;
			}
			free(chunks);
			if (count != p->chunk_count) {
				r = -ESTALE;
				goto out;
			}
		}
		if ((r = part_read(d, pk, p->part_number, &found, old, old_gen)) < 0)
			goto out;
		/* the part it replaces: its session ends in this transaction */
		if (found && old[0] && strcmp(old, p->session_id) != 0) {
			r = dyn_session_get(d, old, &old_sess);
			if (r < 0 && r != -ENOENT)
				goto out;
			release = r == 0;
		}
		if ((r = efs_random_hex(gen, 16)) < 0)
			goto out;
		json_t *items = json_array();
		size_t n = 0, session_at = SIZE_MAX;
		/* 0: the upload open, and its parts changed (Complete checks) */
		json_array_append_new(
		    items, dyn_tx_update(
			       d->sessions, ddb_key(pk, "META"), "ADD parts_version :one",
			       "#o = :o AND completed = :zero AND attribute_not_exists(aborted)"
			       " AND expires_at > :now",
			       json_pack("{s:s}", "#o", "owner"),
			       json_pack("{s:o, s:o, s:o, s:o}", ":one", ddb_n(1), ":o",
					 ddb_s(owner), ":zero", ddb_n(0), ":now", ddb_n(now_ms))));
		n++;
		if (p->session_id[0]) {
			session_at = n++;
			json_array_append_new(
			    items, dyn_tx_update(d->sessions, ddb_key(spk, "META"),
						 "SET expires_at = :e, #t = :ttl", "version = :v",
						 json_pack("{s:s}", "#t", "ttl"),
						 json_pack("{s:o, s:o, s:o}", ":e",
							   ddb_n(st->u.expires_at_ms), ":ttl",
							   ddb_n(ttl_of(st->u.expires_at_ms)), ":v",
							   ddb_n(sess.version))));
		}
		json_t *item = json_pack(
		    "{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "pk", ddb_s(pk), "sk",
		    ddb_s(sk), "part_number", ddb_n(p->part_number), "size",
		    ddb_n((int64_t)p->size), "etag", ddb_s(p->etag), "chunk_size",
		    ddb_n((int64_t)p->chunk_size), "chunk_count", ddb_n((int64_t)p->chunk_count),
		    "stored_bytes", ddb_n((int64_t)p->stored_bytes), "last_modified",
		    ddb_n(p->last_modified_ms), "gen", ddb_s(gen));
		if (item) {
			set_opt(item, "session_id", p->session_id);
			set_opt(item, "checksum", p->checksum);
		}
		json_array_append_new(
		    items,
		    found ? dyn_tx_put(d->sessions, item, "gen = :g", NULL,
				       json_pack("{s:o}", ":g", ddb_s(old_gen)))
			  : dyn_tx_put(d->sessions, item, "attribute_not_exists(sk)", NULL, NULL));
		n++;
		if (release) {
			snprintf(opk, sizeof(opk), "SESSION#%s", old);
			snprintf(what, sizeof(what), "S#%s", old);
			json_array_append_new(items,
					      dyn_tx_delete(d->sessions, ddb_key(opk, "META"),
							    "attribute_exists(pk)", NULL, NULL));
			json_array_append_new(
			    items, dyn_tx_put(d->sessions,
					      dyn_release_marker(d, what, old_sess.owner, now_ms),
					      NULL, NULL, NULL));
			n += 2;
		}
		r = dyn_tx(d, items, n, &res);
		if (r == 0) {
			if (release && (r = dyn_release(d, what, now_ms)) < 0)
				efs_warn(
				    "dynamodb: S3 upload %s part %u: the session %s it replaced"
				    " is ended, its chunks not all released yet (%s): the lease"
				    " holder finishes it",
				    upload_id, p->part_number, old, strerror(-r));
			r = 0;
			goto out;
		}
		if (r == -ECANCELED && session_at != SIZE_MAX && res.failed[session_at]) {
			r = -ESTALE; /* the session expired or changed since counted */
			goto out;
		}
		if (r != -ECANCELED && r != -EBUSY) {
			r = dyn_fail("TransactWriteItems (S3 part)", r, &res);
			goto out;
		}
		/* the upload ended (read again: -ENOENT), or another
		 * acknowledgement of this number or a conflict: again */
		efs_sleep_ms(5 * (attempt + 1));
		r = -EAGAIN;
	}
out:
	free(st);
	return r;
}

struct part_rows {
	struct efs_s3_part *out; /* fixed (out, limit) or grown (NULL: items) */
	size_t count, limit, alloc;
};

static int push_part(void *ctx, const json_t *item)
{
	struct part_rows *rows = ctx;
	if (rows->limit == 0 && efs_array_reserve((void **)&rows->out, &rows->alloc, rows->count,
						  sizeof(*rows->out), 64) < 0)
		return -ENOMEM;
	if (rows->limit && rows->count >= rows->limit)
		return -E2BIG;
	if (part_from_item(item, &rows->out[rows->count]) < 0)
		return -EIO;
	rows->count++;
	return 0;
}

/* Parts numbered above @after, in order: at most @rows->limit into
 * rows->out, or (limit 0) all of them into a grown array. */
static int query_parts(struct dyn *d, const char *upload_id, unsigned after, struct part_rows *rows)
{
	char pk[EFS_ID_MAX + 16], from[16];
	upload_pk(upload_id, pk);
	part_sk(after + 1, from);
	json_t *body = json_pack("{s:s, s:s, s:b, s:{s:o, s:o, s:o}}", "TableName", d->sessions,
				 "KeyConditionExpression", "pk = :pk AND sk BETWEEN :a AND :z",
				 "ConsistentRead", 1, "ExpressionAttributeValues", ":pk", ddb_s(pk),
				 ":a", ddb_s(from), ":z", ddb_s(PART_SK "99999"));
	int r =
	    body ? ddb_query_all(&d->ddb, "Query", body, rows->limit, push_part, rows) : -ENOMEM;
	json_decref(body);
	if (r < 0 && r != -ENOMEM && r != -EIO)
		r = dyn_fail("Query (S3 parts)", r, NULL);
	return r;
}

int dyn_s3_part_list(void *impl, const char *upload_id, unsigned after, size_t limit,
		     struct efs_s3_part *out, size_t *count)
{
	struct part_rows rows = {out, 0, limit, 0};
	if (limit == 0 || strlen(upload_id) > EFS_ID_MAX) {
		*count = 0;
		return 0;
	}
	int r = query_parts(impl, upload_id, after, &rows);
	if (r < 0)
		return r;
	*count = rows.count;
	return 0;
}

/* Releases every part of the upload (its session: exactly once, through
 * the session's conditional end) and deletes its PART# items. A session
 * already gone is fine. */
static int release_parts(struct dyn *d, const char *upload_id, int64_t now_ms)
{
	struct part_rows rows = {0};
	char pk[EFS_ID_MAX + 16], sk[16];
	int r = query_parts(d, upload_id, 0, &rows);
	upload_pk(upload_id, pk);
	for (size_t i = 0; i < rows.count && r >= 0; i++) {
		struct ddb_result res;
		if (rows.out[i].session_id[0] &&
		    (r = dyn_session_delete(d, rows.out[i].session_id, now_ms)) < 0 && r != -ENOENT)
			break;
		part_sk(rows.out[i].part_number, sk);
		if ((r = dyn_delete(d, d->sessions, pk, sk, NULL, NULL, NULL, &res)) < 0)
			r = dyn_fail("DeleteItem (S3 part)", r, &res);
	}
	free(rows.out);
	return r < 0 ? r : 0;
}

/* ---- complete ---------------------------------------------------------- */

/* Session @session_id's @chunk_count chunks become the new file's chunks
 * @first.., counted; -ESTALE when it no longer holds exactly those. */
static int session_lists(struct dyn_lists *st, const char *session_id, uint64_t chunk_count,
			 uint64_t first)
{
	struct efs_session_info sess;
	struct efs_session_chunk *chunks = NULL;
	char spk[EFS_ID_MAX + 16];
	size_t count = 0;
	int r;

	if (!session_id[0])
		return chunk_count ? -ESTALE : 0;
	if ((r = dyn_session_get(st->d, session_id, &sess)) < 0 ||
	    (r = dyn_session_chunks(st->d, session_id, &chunks, &count)) < 0)
		return r == -ENOENT ? -ESTALE : r;
	if (count != chunk_count)
		r = -ESTALE;
	for (size_t i = 0; i < count && r == 0; i++)
		if (chunks[i].index != i)
			r = -ESTALE;
	snprintf(spk, sizeof(spk), "SESSION#%s", session_id);
	/* the part's session unchanged (its version: it still holds every
	 * chunk, so none of them is at 0) */
	json_t *guard = r == 0 ? dyn_tx_check(st->d->sessions, ddb_key(spk, "META"), "version = :v",
					      NULL, json_pack("{s:o}", ":v", ddb_n(sess.version)))
			       : NULL;
	if (r == 0 && count)
		r = guard ? dyn_lists_write(st, guard, first, chunks[0].chunk_id, sizeof(chunks[0]),
					    count)
			  : -ENOMEM;
	json_decref(guard);
	if (r == -ECANCELED)
		r = -ESTALE; /* the session changed or ended */
	free(chunks);
	return r;
}

/* Part @p's chunks become the new file's chunks @first.., counted. */
static int part_lists(struct dyn_lists *st, const struct efs_s3_part *p, uint64_t first)
{
	return session_lists(st, p->session_id, p->chunk_count, first);
}

/* The listed parts are the upload's current ones (same session each). */
static int parts_current(struct dyn *d, const char *upload_id, const struct efs_s3_part *parts,
			 size_t count)
{
	struct part_rows rows = {0};
	int r = query_parts(d, upload_id, 0, &rows);
	for (size_t i = 0, j = 0; r == 0 && i < count; i++) {
		while (j < rows.count && rows.out[j].part_number < parts[i].part_number)
			j++;
		if (j == rows.count || rows.out[j].part_number != parts[i].part_number ||
		    strcmp(rows.out[j].session_id, parts[i].session_id) != 0)
			r = -ESTALE;
	}
	free(rows.out);
	return r;
}

struct complete_run {
	struct upload_state st;
	struct efs_object_info cur; /* the object being replaced */
	bool found, old_file_gone;
	struct dyn_lists lists;
	char *layout; /* efs_s3_parts_encode's: the object item's parts attribute */
};

/* The commit: the object, the new file's META (linked to the key), the
 * upload completed at the parts_version its parts were read at, its
 * listing item out, checks that the bucket takes writes and that the sweep
 * has not claimed the lists, and the replaced object's file released. */
static int complete_commit(struct dyn *d, const struct efs_s3_upload *u,
			   const struct efs_file_info *file, struct complete_run *run,
			   int64_t now_ms, struct ddb_result *res, bool *release,
			   size_t *release_at)
{
	const struct efs_object_info *o = &u->obj;
	char bpk[EFS_S3_BUCKET_MAX + 16], fpk[EFS_ID_MAX + 16], marker[EFS_ID_MAX + 24];
	char pk[EFS_ID_MAX + 16], lpk[EFS_S3_BUCKET_MAX + 16];
	char *lsk = malloc(LISTING_SK_MAX);
	size_t n;

	if (!lsk)
		return -ENOMEM;
	snprintf(bpk, sizeof(bpk), "BUCKET#%s", o->bucket);
	snprintf(fpk, sizeof(fpk), "FILE#%s", file->file_id);
	snprintf(marker, sizeof(marker), "RELEASE#F#%s", file->file_id);
	upload_pk(u->upload_id, pk);
	uploads_pk(o->bucket, lpk);
	listing_sk(o->key, u->upload_id, lsk);
	*release = run->found && !run->old_file_gone && strcmp(run->cur.file_id, o->file_id) != 0;
	json_t *meta = dyn_file_item(file);
	if (meta) {
		json_object_set_new(meta, "s3_bucket", ddb_s(o->bucket));
		json_object_set_new(meta, "s3_key", ddb_s(o->key));
	}
	json_t *object = dyn_object_item(o);
	if (object && run->layout[0])
		json_object_set_new(object, "parts", ddb_s(run->layout));
	json_t *items = json_array();
	/* 0 */
	json_array_append_new(items,
			      dyn_tx_check(d->files, ddb_key(bpk, "META"),
					   "attribute_exists(pk) AND attribute_not_exists(#d)",
					   json_pack("{s:s}", "#d", "deleting"), NULL));
	/* 1 */
	json_array_append_new(
	    items, run->found
		       ? dyn_tx_put(d->files, object, "file_id = :old", NULL,
				    json_pack("{s:o}", ":old", ddb_s(run->cur.file_id)))
		       : dyn_tx_put(d->files, object, "attribute_not_exists(sk)", NULL, NULL));
	/* 2 */
	json_array_append_new(items,
			      dyn_tx_put(d->files, meta, "attribute_not_exists(pk)", NULL, NULL));
	/* 3: the sweep did not claim the lists (kind D) */
	json_array_append_new(items, dyn_tx_check(d->sessions, ddb_key(marker, "META"),
						  "attribute_not_exists(pk)", NULL, NULL));
	/* 4: the upload, as its parts were read */
	json_array_append_new(
	    items, dyn_tx_update(
		       d->sessions, ddb_key(pk, "META"),
		       "SET completed = :one, file_id = :f, #s = :size, etag = :etag,"
		       " last_modified = :lm",
		       "#o = :o AND completed = :zero AND attribute_not_exists(aborted) AND"
		       " parts_version = :pv AND expires_at > :now",
		       json_pack("{s:s, s:s}", "#s", "size", "#o", "owner"),
		       json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", ":one", ddb_n(1),
				 ":f", ddb_s(o->file_id), ":size", ddb_n((int64_t)o->size), ":etag",
				 ddb_s(o->etag), ":lm", ddb_n(o->last_modified_ms), ":o",
				 ddb_s(u->owner), ":zero", ddb_n(0), ":pv",
				 ddb_n(run->st.parts_version), ":now", ddb_n(now_ms))));
	/* 5: no longer in progress */
	json_array_append_new(items,
			      dyn_tx_delete(d->sessions, ddb_key(lpk, lsk), NULL, NULL, NULL));
	n = 6;
	/* 6: the first list is there (the sweep deletes nothing else first) */
	if (run->lists.first_sk[0]) {
		json_array_append_new(items,
				      dyn_tx_check(d->files, ddb_key(fpk, run->lists.first_sk),
						   "attribute_exists(sk)", NULL, NULL));
		n++;
	}
	*release_at = n;
	if (*release) {
		dyn_object_release_append(d, items, run->cur.file_id, u->owner, o->bucket, o->key,
					  now_ms);
		n += 2;
	}
	free(lsk);
	return dyn_tx(d, items, n, res);
}

int dyn_s3_upload_complete(void *impl, const struct efs_s3_upload *u,
			   const struct efs_s3_part *parts, size_t count,
			   const char *chunks_session, const struct efs_file_info *file,
			   int64_t now_ms)
{
	struct dyn *d = impl;
	const struct efs_object_info *o = &u->obj;
	struct ddb_result res;
	uint64_t next = 0;
	int r;

	struct complete_run *run = calloc(1, sizeof(*run));
	if (!run)
		return -ENOMEM;
	run->lists.d = d;
	run->lists.file_id = file->file_id;
	run->lists.now_ms = now_ms;
	run->lists.what = "S3 complete";
	run->lists.hook = dyn_test_complete_hook;
	if ((r = efs_s3_parts_encode(parts, count, &run->layout)) < 0)
		goto out;
	/* 1. the upload and its parts, as the caller read them */
	if ((r = upload_read(d, u->upload_id, &run->st)) < 0)
		goto out;
	if (run->st.aborted || strcmp(run->st.u.owner, u->owner) != 0) {
		r = -ENOENT;
		goto out;
	}
	if (run->st.u.completed) {
		r = -EALREADY;
		goto out;
	}
	if (run->st.u.expires_at_ms <= now_ms) {
		r = -ENOENT;
		goto out;
	}
	if ((r = parts_current(d, u->upload_id, parts, count)) < 0)
		goto out;
	/* 2. the new file's chunk lists, counted, each checked against the
	 * part's session (or the copy's, which holds them all) */
	if (chunks_session &&
	    (r = session_lists(&run->lists, chunks_session, file->chunk_count, 0)) < 0)
		goto undo;
	for (size_t i = 0; i < count && !chunks_session; i++) {
		if ((r = part_lists(&run->lists, &parts[i], next)) < 0)
			goto undo;
		next += parts[i].chunk_count;
	}
	/* 3. the commit; a changed destination is read again */
	r = dyn_object_read(d, o->bucket, o->key, &run->cur);
	if (r < 0 && r != -ENOENT)
		goto undo;
	run->found = r == 0;
	r = -EAGAIN;
	for (int attempt = 0; attempt < DYN_TX_ATTEMPTS; attempt++) {
		bool release = false;
		size_t release_at = 0;
		r = complete_commit(d, u, file, run, now_ms, &res, &release, &release_at);
		if (r == 0) {
			if (release)
				dyn_object_release_finish(d, run->cur.file_id, now_ms);
			break;
		}
		if (r == -ECANCELED && res.failed[0]) {
			if ((r = dyn_bucket_blocked(d, o->bucket, now_ms)) < 0) {
				r = r == -ENOENT ? -ENXIO : r;
				break;
			}
		} else if (r == -ECANCELED && res.failed[2]) {
			efs_warn("dynamodb: S3 complete of upload %s: file id %s is taken",
				 u->upload_id, file->file_id);
			r = -EIO;
			break;
		} else if (r == -ECANCELED && res.failed[4]) {
			/* completed, aborted or expired meanwhile, or a part changed */
			struct upload_state *now = malloc(sizeof(*now));
			r = now ? upload_read(d, u->upload_id, now) : -ENOMEM;
			if (r == 0)
				r = now->u.completed				     ? -EALREADY
				    : now->aborted || now->u.expires_at_ms <= now_ms ? -ENOENT
										     : -ESTALE;
			free(now);
			break;
		} else if (r == -ECANCELED &&
			   (res.failed[3] || (release_at > 6 && res.failed[6])) && !res.failed[1]) {
			efs_warn(
			    "dynamodb: S3 complete of upload %s: the chunk lists of file %s were"
			    " swept as leftovers before its commit (slower than the sweep's"
			    " grace): not committed",
			    u->upload_id, file->file_id);
			r = -EAGAIN;
			break;
		} else if (r == -ECANCELED && release && res.failed[release_at] && !res.failed[1]) {
			bool exists = true;
			if ((r = dyn_file_exists(d, run->cur.file_id, &exists)) < 0)
				break;
			run->old_file_gone = !exists;
			continue;
		} else if (r != -ECANCELED && r != -EBUSY) {
			r = dyn_fail("TransactWriteItems (S3 complete)", r, &res);
			break;
		}
		/* the destination changed: what is there now */
		efs_sleep_ms(5 * (attempt + 1));
		if ((r = dyn_object_read(d, o->bucket, o->key, &run->cur)) < 0 && r != -ENOENT)
			break;
		run->found = r == 0;
		run->old_file_gone = false;
		r = -EAGAIN;
	}
	if (r < 0)
		goto undo;
	/* 4. the parts' sessions (and the copy's): the file's lists count
	 * their chunks now */
	if ((r = release_parts(d, u->upload_id, now_ms)) < 0)
		efs_warn("dynamodb: S3 upload %s completed, its parts not all released yet (%s):"
			 " the upload's expiry does it",
			 u->upload_id, strerror(-r));
	if (chunks_session && (r = dyn_session_delete(d, chunks_session, now_ms)) < 0 &&
	    r != -ENOENT)
		efs_warn("dynamodb: S3 upload %s completed, its copy's session %s not released"
			 " yet (%s): its expiry does it",
			 u->upload_id, chunks_session, strerror(-r));
	r = 0;
	goto out;
undo:
	dyn_lists_undo(&run->lists, u->owner);
out:
	free(run->layout);
	free(run);
	return r;
}

/* ---- abort, the bucket's uploads ----------------------------------------- */

int dyn_s3_upload_abort(void *impl, const char *upload_id, const char *owner, int64_t now_ms)
{
	struct dyn *d = impl;
	struct upload_state *st = malloc(sizeof(*st));
	char pk[EFS_ID_MAX + 16], lpk[EFS_S3_BUCKET_MAX + 16];
	char *lsk = malloc(LISTING_SK_MAX);
	struct ddb_result res;
	int r;

	if (!st || !lsk) {
		r = -ENOMEM;
		goto out;
	}
	if ((r = upload_read(d, upload_id, st)) < 0)
		goto out;
	if (owner && (st->aborted || st->u.completed || strcmp(st->u.owner, owner) != 0)) {
		r = -ENOENT;
		goto out;
	}
	upload_pk(upload_id, pk);
	if (!st->aborted) {
		/* 1. no part is acknowledged and no complete commits from now
		 * on; expires_at now: a master dying in 2 leaves it to the
		 * collector's next pass */
		uploads_pk(st->u.obj.bucket, lpk);
		listing_sk(st->u.obj.key, upload_id, lsk);
		json_t *items = json_array();
		json_array_append_new(
		    items,
		    dyn_tx_update(
			d->sessions, ddb_key(pk, "META"), "SET aborted = :one, expires_at = :now",
			owner ? "#o = :o AND completed = :zero AND"
				" attribute_not_exists(aborted)"
			      : "attribute_exists(pk)",
			owner ? json_pack("{s:s}", "#o", "owner") : NULL,
			owner ? json_pack("{s:o, s:o, s:o, s:o}", ":one", ddb_n(1), ":now",
					  ddb_n(now_ms), ":o", ddb_s(owner), ":zero", ddb_n(0))
			      : json_pack("{s:o, s:o}", ":one", ddb_n(1), ":now", ddb_n(now_ms))));
		json_array_append_new(
		    items, dyn_tx_delete(d->sessions, ddb_key(lpk, lsk), NULL, NULL, NULL));
		r = dyn_tx(d, items, 2, &res);
		if (r == -ECANCELED) {
			r = -ENOENT; /* completed, aborted or gone meanwhile */
			goto out;
		}
		if (r < 0) {
			r = dyn_fail("TransactWriteItems (S3 upload abort)", r, &res);
			goto out;
		}
	}
	/* 2. the parts' sessions released, the items gone */
	if ((r = release_parts(d, upload_id, now_ms)) < 0)
		goto out;
	if ((r = dyn_delete(d, d->sessions, pk, "META", NULL, NULL, NULL, &res)) < 0)
		r = dyn_fail("DeleteItem (S3 upload)", r, &res);
out:
	free(st);
	free(lsk);
	return r;
}

struct id_rows {
	char (*ids)[EFS_ID_MAX + 1];
	size_t count, alloc, max;
	const char *attr; /* the attribute holding the id; NULL: pk after UPLOAD# */
};

static int push_id(void *ctx, const json_t *item)
{
	struct id_rows *rows = ctx;
	char pk[EFS_ID_MAX + 16];
	if (!rows->max && efs_array_reserve((void **)&rows->ids, &rows->alloc, rows->count,
					    sizeof(*rows->ids), 16) < 0)
		return -ENOMEM;
	if (rows->max && rows->count >= rows->max)
		return -E2BIG;
	if (rows->attr)
		return ddb_get_s(item, rows->attr, rows->ids[rows->count++], EFS_ID_MAX) < 0 ? -EIO
											     : 0;
	if (ddb_get_s(item, "pk", pk, sizeof(pk) - 1) < 0 ||
	    strncmp(pk, UPLOAD_PK, strlen(UPLOAD_PK)) != 0)
		return 0;
	efs_strlcpy(rows->ids[rows->count++], pk + strlen(UPLOAD_PK), EFS_ID_MAX + 1);
	return 0;
}

int dyn_s3_bucket_uploads_abort(struct dyn *d, const char *bucket, int64_t now_ms)
{
	struct id_rows rows = {.attr = "upload_id"};
	char pk[EFS_S3_BUCKET_MAX + 16];
	uploads_pk(bucket, pk);
	json_t *body = json_pack("{s:s, s:s, s:b, s:{s:o}}", "TableName", d->sessions,
				 "KeyConditionExpression", "pk = :pk", "ConsistentRead", 1,
				 "ExpressionAttributeValues", ":pk", ddb_s(pk));
	int r = body ? ddb_query_all(&d->ddb, "Query", body, 0, push_id, &rows) : -ENOMEM;
	json_decref(body);
	if (r < 0 && r != -ENOMEM && r != -EIO)
		r = dyn_fail("Query (S3 bucket uploads)", r, NULL);
	for (size_t i = 0; i < rows.count && r >= 0; i++)
		if ((r = dyn_s3_upload_abort(d, rows.ids[i], NULL, now_ms)) == -ENOENT)
			r = 0;
	if (r == 0 && rows.count)
		efs_info("dynamodb: bucket %s deleted with %zu multipart upload(s) in progress:"
			 " aborted, their parts released",
			 bucket, rows.count);
	free(rows.ids);
	return r;
}

/* ---- listing, expiry ------------------------------------------------------ */

#define LIST_END (-EPIPE)

struct entry_rows {
	struct efs_s3_upload_entry *out;
	size_t count, limit;
	const char *prefix;
	size_t prefix_len;
};

static int push_entry(void *ctx, const json_t *item)
{
	struct entry_rows *rows = ctx;
	struct efs_s3_upload_entry *e = &rows->out[rows->count];
	if (rows->count >= rows->limit)
		return LIST_END;
	if (ddb_get_s(item, "object_key", e->key, EFS_S3_KEY_MAX) < 0 ||
	    ddb_get_s(item, "upload_id", e->upload_id, EFS_ID_MAX) < 0 ||
	    ddb_get_s(item, "owner", e->owner, EFS_ID_MAX) < 0 ||
	    ddb_get_n(item, "created_at", &e->created_at_ms) < 0)
		return -EIO;
	if (strncmp(e->key, rows->prefix, rows->prefix_len) != 0)
		return LIST_END; /* beyond the prefix */
	e->policy[0] = '\0'; /* DynamoDB keeps the default policy only */
	rows->count++;
	return 0;
}

int dyn_s3_upload_list(void *impl, const char *bucket, const char *prefix, const char *key_marker,
		       const char *id_marker, size_t limit, struct efs_s3_upload_entry *out,
		       size_t *count)
{
	struct dyn *d = impl;
	struct entry_rows rows = {out, 0, limit, prefix, strlen(prefix)};
	char pk[EFS_S3_BUCKET_MAX + 16];
	char *from = malloc(LISTING_SK_MAX), *start = malloc(LISTING_SK_MAX);
	const char *cond = "pk = :pk";
	json_t *values = NULL, *body = NULL;
	int r = 0;

	*count = 0;
	if (!from || !start) {
		r = -ENOMEM;
		goto out;
	}
	if (limit == 0 || strlen(bucket) > EFS_S3_BUCKET_MAX || strlen(prefix) > EFS_S3_KEY_MAX ||
	    strlen(key_marker) > EFS_S3_KEY_MAX || (id_marker && strlen(id_marker) > EFS_ID_MAX))
		goto out;
	uploads_pk(bucket, pk);
	escaped(prefix, "", start);
	values = json_pack("{s:o}", ":pk", ddb_s(pk));
	if (key_marker[0]) {
		/* after (key_marker, id_marker), or after every upload of
		 * key_marker: from its \1\2 on, which no upload of it reaches */
		char tail[EFS_ID_MAX + 4];
		snprintf(tail, sizeof(tail), "\1%s%s", id_marker ? "\1" : "\2",
			 id_marker ? id_marker : "");
		escaped(key_marker, tail, from);
	}
	if (key_marker[0] && strcmp(from, start) >= 0) {
		if (strncmp(from, start, strlen(start)) != 0)
			goto out; /* beyond every key with the prefix */
		cond = id_marker ? "pk = :pk AND sk > :a" : "pk = :pk AND sk >= :a";
		json_object_set_new(values, ":a", ddb_s(from));
	} else if (prefix[0]) {
		cond = "pk = :pk AND begins_with(sk, :p)";
		json_object_set_new(values, ":p", ddb_s(start));
	}
	body = json_pack("{s:s, s:s, s:b, s:O}", "TableName", d->sessions, "KeyConditionExpression",
			 cond, "ConsistentRead", 1, "ExpressionAttributeValues", values);
	r = body ? ddb_query_all(&d->ddb, "Query", body, limit, push_entry, &rows) : -ENOMEM;
	if (r == LIST_END)
		r = 0;
	if (r < 0 && r != -ENOMEM && r != -EIO)
		r = dyn_fail("Query (S3 uploads)", r, NULL);
	if (r == 0)
		*count = rows.count;
out:
	json_decref(values);
	json_decref(body);
	free(from);
	free(start);
	return r;
}

int dyn_s3_upload_expired(void *impl, int64_t now_ms, size_t max, char (*ids)[EFS_ID_MAX + 1],
			  size_t *count)
{
	struct dyn *d = impl;
	struct id_rows rows = {.ids = ids, .max = max};
	if (max == 0) {
		*count = 0;
		return 0;
	}
	json_t *body =
	    json_pack("{s:s, s:s, s:s, s:{s:s, s:s}, s:{s:o, s:o}}", "TableName", d->sessions,
		      "IndexName", "by_expiry", "KeyConditionExpression", "#k = :k AND #e < :now",
		      "ExpressionAttributeNames", "#k", "kind", "#e", "expires_at",
		      "ExpressionAttributeValues", ":k", ddb_s(UPLOAD_KIND), ":now", ddb_n(now_ms));
	int r = body ? ddb_query_all(&d->ddb, "Query", body, max, push_id, &rows) : -ENOMEM;
	json_decref(body);
	if (r < 0)
		return r == -ENOMEM || r == -EIO ? r
						 : dyn_fail("Query (S3 uploads expired)", r, NULL);
	*count = rows.count;
	return 0;
}
