/* SPDX-License-Identifier: MIT */
/* sql_s3_multipart.c - S3 multipart uploads in the SQL store (contract in
 * meta.h, "S3 multipart uploads").
 *
 * A part's chunks stay referenced by the hidden session its upload
 * pipeline recorded them in (session_chunks rows count in chunks.refcount
 * as file_chunks rows do); the part row names that session. So an
 * acknowledged part never loses its chunks to the collector, and there is
 * one way to let them go: sql_session_release, on replacement, abort,
 * expiry or a bucket's deletion. Completing moves the session_chunks rows
 * into file_chunks (the reference moves, the count stays), as
 * session_complete does for one session; when the master copied
 * misaligned parts into a session of its own, that session's rows move
 * instead and every part is released.
 *
 * Lock order, everywhere: the bucket's row, then the upload's, then
 * sessions. Complete locks the bucket first (through sql_object_replace),
 * as a bucket's deletion does before it releases the bucket's uploads.
 */
#include "echofs/util.h"
#include "meta/sql_store.h"

#include <stdlib.h>
#include <string.h>

/* A marker above every upload id (ids are lower-case hex). */
#define ID_MARKER_LAST "~"

#define UPLOAD_COLUMNS                                                                             \
	"upload_id, bucket, object_key, owner, content_type, content_encoding,"                    \
	" content_disposition, cache_control, expires, user_meta, created_at, expires_at,"         \
	" completed, file_id, size, etag, last_modified, policy"

#define PART_COLUMNS                                                                               \
	"part_number, session_id, size, etag, chunk_size, chunk_count, stored_bytes, "             \
	"last_modified, checksum"

static int row_upload(void *ctx, const struct efs_sql_row *row)
{
	struct efs_s3_upload *u = ctx;
	struct efs_object_info *o = &u->obj;
	memset(u, 0, sizeof(*u));
	efs_strlcpy(u->upload_id, efs_sql_text(row, 0), sizeof(u->upload_id));
	efs_strlcpy(o->bucket, efs_sql_text(row, 1), sizeof(o->bucket));
	efs_strlcpy(o->key, efs_sql_text(row, 2), sizeof(o->key));
	efs_strlcpy(u->owner, efs_sql_text(row, 3), sizeof(u->owner));
	efs_strlcpy(o->content_type, efs_sql_text(row, 4), sizeof(o->content_type));
	efs_strlcpy(o->content_encoding, efs_sql_text(row, 5), sizeof(o->content_encoding));
	efs_strlcpy(o->content_disposition, efs_sql_text(row, 6), sizeof(o->content_disposition));
	efs_strlcpy(o->cache_control, efs_sql_text(row, 7), sizeof(o->cache_control));
	efs_strlcpy(o->expires, efs_sql_text(row, 8), sizeof(o->expires));
	efs_strlcpy(o->user_meta, efs_sql_text(row, 9), sizeof(o->user_meta));
	u->created_at_ms = efs_sql_int(row, 10);
	u->expires_at_ms = efs_sql_int(row, 11);
	u->completed = efs_sql_int(row, 12) != 0;
	efs_strlcpy(o->file_id, efs_sql_text(row, 13), sizeof(o->file_id));
	o->size = (uint64_t)efs_sql_int(row, 14);
	efs_strlcpy(o->etag, efs_sql_text(row, 15), sizeof(o->etag));
	o->last_modified_ms = efs_sql_int(row, 16);
	efs_strlcpy(u->policy, efs_sql_text(row, 17), sizeof(u->policy));
	return 0;
}

static int row_part(void *ctx, const struct efs_sql_row *row)
{
	struct efs_s3_part *p = sql_rows_push(ctx);
	if (!p)
		return sql_rows_full(ctx);
	p->part_number = (unsigned)efs_sql_int(row, 0);
	efs_strlcpy(p->session_id, efs_sql_text(row, 1), sizeof(p->session_id));
	p->size = (uint64_t)efs_sql_int(row, 2);
	efs_strlcpy(p->etag, efs_sql_text(row, 3), sizeof(p->etag));
	p->chunk_size = (uint64_t)efs_sql_int(row, 4);
	p->chunk_count = (uint64_t)efs_sql_int(row, 5);
	p->stored_bytes = (uint64_t)efs_sql_int(row, 6);
	p->last_modified_ms = efs_sql_int(row, 7);
	efs_strlcpy(p->checksum, efs_sql_text(row, 8), sizeof(p->checksum));
	return 0;
}

/* Column 0 as an id, pushed onto a collector of char[EFS_ID_MAX + 1]. */
typedef char id_text[EFS_ID_MAX + 1];
static int row_id(void *ctx, const struct efs_sql_row *row)
{
	id_text *id = sql_rows_push(ctx);
	if (!id)
		return sql_rows_full(ctx);
	efs_strlcpy(*id, efs_sql_text(row, 0), sizeof(*id));
	return 0;
}

/* Column 0 as text into one id_text (a single-row lookup). */
static int row_one_id(void *ctx, const struct efs_sql_row *row)
{
	struct {
		bool found;
		id_text id;
	} *out = ctx;
	out->found = true;
	efs_strlcpy(out->id, efs_sql_text(row, 0), sizeof(out->id));
	return 0;
}

/* ---- create, get ------------------------------------------------------ */

static int upload_create_tx(struct sql_conn *c, void *ctx)
{
	const struct efs_s3_upload *u = ctx;
	const struct efs_object_info *o = &u->obj;
	int64_t changed = 0;
	/* The bucket's row, locked: a concurrent DeleteBucket either ran
	 * before (no bucket) or waits and then releases this upload. */
	int r = SQL_Q(c, "UPDATE s3_buckets SET created_at = created_at WHERE name = $1", NULL,
		      NULL, &changed, SQL_TEXT(o->bucket));
	if (r < 0)
		return r;
	if (!changed)
		return -ENOENT;
	return SQL_Q(c,
		     "INSERT INTO s3_uploads (upload_id, bucket, object_key, owner, content_type,"
		     "  content_encoding, content_disposition, cache_control, expires, user_meta,"
		     "  created_at, expires_at, policy)"
		     " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
		     NULL, NULL, NULL, SQL_TEXT(u->upload_id), SQL_TEXT(o->bucket),
		     SQL_TEXT(o->key), SQL_TEXT(u->owner), SQL_TEXT(o->content_type),
		     SQL_TEXT(o->content_encoding), SQL_TEXT(o->content_disposition),
		     SQL_TEXT(o->cache_control), SQL_TEXT(o->expires), SQL_TEXT(o->user_meta),
		     SQL_INT(u->created_at_ms), SQL_INT(u->expires_at_ms), SQL_TEXT(u->policy));
}

int sql_s3_upload_create(void *impl, const struct efs_s3_upload *u)
{
	return sql_run_tx(impl, upload_create_tx, (void *)u);
}

int sql_s3_upload_get(void *impl, const char *upload_id, struct efs_s3_upload *out)
{
	struct efs_s3_upload *u = malloc(sizeof(*u)); /* ~10 KiB: not on the stack */
	if (!u)
		return -ENOMEM;
	u->upload_id[0] = '\0';
	int r = SQL_ONE(impl, "SELECT " UPLOAD_COLUMNS " FROM s3_uploads WHERE upload_id = $1",
			row_upload, u, NULL, SQL_TEXT(upload_id));
	if (r >= 0 && !u->upload_id[0])
		r = -ENOENT;
	if (r >= 0) {
		*out = *u;
		r = 0;
	}
	free(u);
	return r;
}

/* ---- releasing parts ---------------------------------------------------- */

/* Releases every part of upload @upload_id (their sessions) and deletes
 * the part rows. A session already gone (expired with the upload) is
 * fine. */
static int release_parts(struct sql_conn *c, const char *upload_id, int64_t now_ms)
{
	struct sql_rows rows = SQL_ROWS_GROW(id_text);
	id_text *ids = NULL;
	size_t n = 0;
	int r =
	    SQL_Q(c, "SELECT session_id FROM s3_parts WHERE upload_id = $1 AND session_id <> ''",
		  row_id, &rows, NULL, SQL_TEXT(upload_id));
	if ((r = sql_rows_finish(&rows, r, (void **)&ids, &n)) < 0)
		return r;
	for (size_t i = 0; i < n && r >= 0; i++)
		if ((r = sql_session_release(c, ids[i], now_ms)) == -ENOENT)
			r = 0;
	free(ids);
	if (r < 0)
		return r;
	return SQL_Q(c, "DELETE FROM s3_parts WHERE upload_id = $1", NULL, NULL, NULL,
		     SQL_TEXT(upload_id));
}

/* ---- parts --------------------------------------------------------------- */

struct part_put {
	const char *upload_id;
	const char *owner;
	const struct efs_s3_part *p;
	int64_t now_ms;
};

static int part_put_tx(struct sql_conn *c, void *ctx)
{
	struct part_put *a = ctx;
	const struct efs_s3_part *p = a->p;
	struct {
		bool found;
		id_text id;
	} old = {0};
	int64_t changed = 0, held = 0;
	/* The upload's row, locked: parts of one upload are acknowledged one
	 * at a time, and never into one being completed or aborted. */
	int r = SQL_Q(c,
		      "UPDATE s3_uploads SET completed = completed"
		      " WHERE upload_id = $1 AND owner = $2 AND completed = 0 AND expires_at > $3",
		      NULL, NULL, &changed, SQL_TEXT(a->upload_id), SQL_TEXT(a->owner),
		      SQL_INT(a->now_ms));
	if (r < 0)
		return r;
	if (!changed)
		return -ENOENT;
	if (p->session_id[0]) {
		r = SQL_Q(c, "SELECT COUNT(*) FROM session_chunks WHERE session_id = $1",
			  sql_row_int, &held, NULL, SQL_TEXT(p->session_id));
		if (r < 0)
			return r;
		if ((uint64_t)held != p->chunk_count)
			return -ESTALE; /* the session expired (or is not the part's) */
		/* From now on the session lives as long as the upload. */
		r = SQL_Q(c,
			  "UPDATE sessions SET expires_at ="
			  " (SELECT expires_at FROM s3_uploads WHERE upload_id = $2)"
			  " WHERE session_id = $1",
			  NULL, NULL, &changed, SQL_TEXT(p->session_id), SQL_TEXT(a->upload_id));
		if (r < 0)
			return r;
		if (!changed)
			return -ESTALE;
	}
	/* A part of that number already there is replaced: its chunks go. */
	r = SQL_Q(c, "SELECT session_id FROM s3_parts WHERE upload_id = $1 AND part_number = $2",
		  row_one_id, &old, NULL, SQL_TEXT(a->upload_id), SQL_INT(p->part_number));
	if (r < 0)
		return r;
	if (old.found && old.id[0] && strcmp(old.id, p->session_id) != 0 &&
	    (r = sql_session_release(c, old.id, a->now_ms)) < 0 && r != -ENOENT)
		return r;
	if (old.found &&
	    (r = SQL_Q(c, "DELETE FROM s3_parts WHERE upload_id = $1 AND part_number = $2", NULL,
		       NULL, NULL, SQL_TEXT(a->upload_id), SQL_INT(p->part_number))) < 0)
		return r;
	return SQL_Q(c,
		     "INSERT INTO s3_parts (upload_id, " PART_COLUMNS ")"
		     " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
		     NULL, NULL, NULL, SQL_TEXT(a->upload_id), SQL_INT(p->part_number),
		     SQL_TEXT(p->session_id), SQL_INT(p->size), SQL_TEXT(p->etag),
		     SQL_INT(p->chunk_size), SQL_INT(p->chunk_count), SQL_INT(p->stored_bytes),
		     SQL_INT(p->last_modified_ms), SQL_TEXT(p->checksum));
}

int sql_s3_part_put(void *impl, const char *upload_id, const char *owner,
		    const struct efs_s3_part *p, int64_t now_ms)
{
	struct part_put a = {upload_id, owner, p, now_ms};
	return sql_run_tx(impl, part_put_tx, &a);
}

int sql_s3_part_list(void *impl, const char *upload_id, unsigned after, size_t limit,
		     struct efs_s3_part *out, size_t *count)
{
	struct sql_rows rows = SQL_ROWS_FIXED(out, limit);
	int r = SQL_ONE(impl,
			"SELECT " PART_COLUMNS " FROM s3_parts"
			" WHERE upload_id = $1 AND part_number > $2 ORDER BY part_number LIMIT $3",
			row_part, &rows, NULL, SQL_TEXT(upload_id), SQL_INT(after), SQL_INT(limit));
	return sql_rows_finish(&rows, r, NULL, count);
}

/* ---- complete, abort ----------------------------------------------------- */

struct complete {
	const struct efs_s3_upload *u;
	const struct efs_s3_part *parts;
	size_t count;
	const char *chunks_session; /* NULL: the parts' chunks are the file's */
	const struct efs_file_info *file;
	const char *layout; /* efs_s3_parts_encode's, for the object's parts column */
	int64_t now_ms;
};

/* Part @p is still the upload's part of its number, with the same session
 * as when it was read; else -ESTALE (replaced meanwhile). */
static int part_current(struct sql_conn *c, const char *upload_id, const struct efs_s3_part *p)
{
	struct {
		bool found;
		id_text id;
	} cur = {0};
	int r =
	    SQL_Q(c, "SELECT session_id FROM s3_parts WHERE upload_id = $1 AND part_number = $2",
		  row_one_id, &cur, NULL, SQL_TEXT(upload_id), SQL_INT(p->part_number));
	if (r < 0)
		return r;
	return cur.found && strcmp(cur.id, p->session_id) == 0 ? 0 : -ESTALE;
}

/* Session @session_id's @count chunk references become chunks @first..
 * of @file_id (moved: the counts stay) and the session ends. -ESTALE when
 * it does not hold exactly @count (gone: nothing may be half moved). */
static int move_session(struct sql_conn *c, const char *session_id, uint64_t count,
			const char *file_id, uint64_t first)
{
	int64_t moved = 0;
	int r = SQL_Q(c,
		      "INSERT INTO file_chunks (file_id, idx, chunk_id)"
		      " SELECT $1, idx + $2, chunk_id FROM session_chunks WHERE session_id = $3",
		      NULL, NULL, &moved, SQL_TEXT(file_id), SQL_INT(first), SQL_TEXT(session_id));
	if (r < 0)
		return r;
	if ((uint64_t)moved != count)
		return -ESTALE;
	return sql_session_end(c, session_id);
}

/* Part @p's chunk references become chunks @first.. of @file_id. */
static int move_part(struct sql_conn *c, const char *upload_id, const struct efs_s3_part *p,
		     const char *file_id, uint64_t first)
{
	int r = part_current(c, upload_id, p);
	if (r < 0)
		return r;
	if (p->session_id[0] &&
	    (r = move_session(c, p->session_id, p->chunk_count, file_id, first)) < 0)
		return r;
	return SQL_Q(c, "DELETE FROM s3_parts WHERE upload_id = $1 AND part_number = $2", NULL,
		     NULL, NULL, SQL_TEXT(upload_id), SQL_INT(p->part_number));
}

static int complete_tx(struct sql_conn *c, void *ctx)
{
	struct complete *a = ctx;
	const struct efs_s3_upload *u = a->u;
	struct efs_s3_upload *cur = NULL;
	int64_t changed = 0;
	uint64_t next = 0;
	/* The object first: it locks the bucket's row (see the lock order). */
	int r = sql_object_replace(c, &u->obj, a->now_ms);
	if (r == -ENOENT)
		return -ENXIO;
	if (r < 0)
		return r;
	r = SQL_Q(c, "UPDATE s3_objects SET parts = $3 WHERE bucket = $1 AND object_key = $2", NULL,
		  NULL, NULL, SQL_TEXT(u->obj.bucket), SQL_TEXT(u->obj.key), SQL_TEXT(a->layout));
	if (r < 0)
		return r;
	r = SQL_Q(c,
		  "UPDATE s3_uploads SET completed = completed WHERE upload_id = $1 AND owner = $2",
		  NULL, NULL, &changed, SQL_TEXT(u->upload_id), SQL_TEXT(u->owner));
	if (r < 0)
		return r;
	if (!changed)
		return -ENOENT;
	if (!(cur = malloc(sizeof(*cur))))
		return -ENOMEM;
	cur->upload_id[0] = '\0';
	r = SQL_Q(c, "SELECT " UPLOAD_COLUMNS " FROM s3_uploads WHERE upload_id = $1", row_upload,
		  cur, NULL, SQL_TEXT(u->upload_id));
	if (r >= 0)
		r = cur->completed ? -EALREADY : cur->expires_at_ms <= a->now_ms ? -ENOENT : 0;
	free(cur);
	if (r < 0)
		return r;
	if ((r = sql_file_insert(c, a->file)) < 0)
		return r;
	for (size_t i = 0; i < a->count; i++) {
		r = a->chunks_session
			? part_current(c, u->upload_id, &a->parts[i])
			: move_part(c, u->upload_id, &a->parts[i], a->file->file_id, next);
		if (r < 0)
			return r;
		next += a->parts[i].chunk_count;
	}
	/* A copy: its session holds the file's chunks; the parts (all
	 * released below) only lent it their bytes. */
	if (a->chunks_session &&
	    (r = move_session(c, a->chunks_session, a->file->chunk_count, a->file->file_id, 0)) < 0)
		return r;
	/* Parts the list left out (all, after a copy) are released (as S3
	 * discards them). */
	if ((r = release_parts(c, u->upload_id, a->now_ms)) < 0)
		return r;
	return SQL_Q(c,
		     "UPDATE s3_uploads SET completed = 1, file_id = $2, size = $3, etag = $4,"
		     "  last_modified = $5 WHERE upload_id = $1",
		     NULL, NULL, NULL, SQL_TEXT(u->upload_id), SQL_TEXT(u->obj.file_id),
		     SQL_INT(u->obj.size), SQL_TEXT(u->obj.etag), SQL_INT(u->obj.last_modified_ms));
}

int sql_s3_upload_complete(void *impl, const struct efs_s3_upload *u,
			   const struct efs_s3_part *parts, size_t count,
			   const char *chunks_session, const struct efs_file_info *file,
			   int64_t now_ms)
{
	char *layout = NULL;
	int r = efs_s3_parts_encode(parts, count, &layout);
	if (r < 0)
		return r;
	struct complete a = {u, parts, count, chunks_session, file, layout, now_ms};
	r = sql_run_tx(impl, complete_tx, &a);
	free(layout);
	return r;
}

struct abort_args {
	const char *upload_id;
	const char *owner; /* NULL: the collector */
	int64_t now_ms;
};

static int abort_tx(struct sql_conn *c, void *ctx)
{
	struct abort_args *a = ctx;
	int64_t changed = 0;
	int r = a->owner
		    ? SQL_Q(c,
			    "UPDATE s3_uploads SET completed = completed"
			    " WHERE upload_id = $1 AND owner = $2 AND completed = 0",
			    NULL, NULL, &changed, SQL_TEXT(a->upload_id), SQL_TEXT(a->owner))
		    : SQL_Q(c, "UPDATE s3_uploads SET completed = completed WHERE upload_id = $1",
			    NULL, NULL, &changed, SQL_TEXT(a->upload_id));
	if (r < 0)
		return r;
	if (!changed)
		return -ENOENT;
	if ((r = release_parts(c, a->upload_id, a->now_ms)) < 0)
		return r;
	return SQL_Q(c, "DELETE FROM s3_uploads WHERE upload_id = $1", NULL, NULL, NULL,
		     SQL_TEXT(a->upload_id));
}

int sql_s3_upload_abort(void *impl, const char *upload_id, const char *owner, int64_t now_ms)
{
	struct abort_args a = {upload_id, owner, now_ms};
	return sql_run_tx(impl, abort_tx, &a);
}

int sql_s3_bucket_uploads_release(struct sql_conn *c, const char *bucket, int64_t now_ms)
{
	struct sql_rows rows = SQL_ROWS_GROW(id_text);
	id_text *ids = NULL;
	size_t n = 0;
	int r = SQL_Q(c, "SELECT upload_id FROM s3_uploads WHERE bucket = $1", row_id, &rows, NULL,
		      SQL_TEXT(bucket));
	if ((r = sql_rows_finish(&rows, r, (void **)&ids, &n)) < 0)
		return r;
	for (size_t i = 0; i < n && r >= 0; i++)
		r = release_parts(c, ids[i], now_ms);
	free(ids);
	if (r < 0)
		return r;
	return SQL_Q(c, "DELETE FROM s3_uploads WHERE bucket = $1", NULL, NULL, NULL,
		     SQL_TEXT(bucket));
}

/* ---- listing, expiry ------------------------------------------------------ */

static int row_upload_entry(void *ctx, const struct efs_sql_row *row)
{
	struct efs_s3_upload_entry *e = sql_rows_push(ctx);
	if (!e)
		return sql_rows_full(ctx);
	efs_strlcpy(e->key, efs_sql_text(row, 0), sizeof(e->key));
	efs_strlcpy(e->upload_id, efs_sql_text(row, 1), sizeof(e->upload_id));
	efs_strlcpy(e->owner, efs_sql_text(row, 2), sizeof(e->owner));
	e->created_at_ms = efs_sql_int(row, 3);
	efs_strlcpy(e->policy, efs_sql_text(row, 4), sizeof(e->policy));
	return 0;
}

int sql_s3_upload_list(void *impl, const char *bucket, const char *prefix, const char *key_marker,
		       const char *id_marker, size_t limit, struct efs_s3_upload_entry *out,
		       size_t *count)
{
	struct sql_rows rows = SQL_ROWS_FIXED(out, limit);
	/* As sql_object_list: the range condition lets the index serve the
	 * scan, the substr test ends the prefix. */
	int r = SQL_ONE(
	    impl,
	    "SELECT object_key, upload_id, owner, created_at, policy FROM s3_uploads"
	    " WHERE bucket = $1 AND completed = 0"
	    "  AND (object_key > CAST($2 AS TEXT)"
	    "       OR (object_key = CAST($2 AS TEXT) AND upload_id > CAST($3 AS TEXT)))"
	    "  AND object_key >= CAST($4 AS TEXT)"
	    "  AND substr(object_key, 1, length(CAST($4 AS TEXT))) = CAST($4 AS TEXT)"
	    " ORDER BY object_key, upload_id LIMIT $5",
	    row_upload_entry, &rows, NULL, SQL_TEXT(bucket), SQL_TEXT(key_marker),
	    SQL_TEXT(id_marker ? id_marker : ID_MARKER_LAST), SQL_TEXT(prefix), SQL_INT(limit));
	return sql_rows_finish(&rows, r, NULL, count);
}

int sql_s3_upload_expired(void *impl, int64_t now_ms, size_t max, char (*ids)[EFS_ID_MAX + 1],
			  size_t *count)
{
	struct sql_rows rows = SQL_ROWS_FIXED(ids, max);
	int r = SQL_ONE(impl, "SELECT upload_id FROM s3_uploads WHERE expires_at < $1 LIMIT $2",
			row_id, &rows, NULL, SQL_INT(now_ms), SQL_INT(max));
	return sql_rows_finish(&rows, r, NULL, count);
}
