/* SPDX-License-Identifier: MIT */
/* sql_s3.c - S3 buckets and objects in the SQL store.
 *
 * An object row names the file holding its bytes; replacing or deleting
 * the row deletes that file and releases its chunks in the same
 * transaction (sql_file_release), so an object never points at a file
 * that is gone and a replaced file never lingers. Writes into a bucket
 * and the bucket's deletion lock the bucket's row first (a no-op update,
 * as lock_session does for sessions), so an object cannot land in a
 * bucket being deleted.
 */
#include "echofs/util.h"
#include "meta/sql_store.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- buckets ---------------------------------------------------------- */

#define BUCKET_COLUMNS "name, owner, region, created_at"

static int row_bucket(void *ctx, const struct efs_sql_row *row)
{
	struct efs_bucket_info *b = sql_rows_push(ctx);
	if (!b)
		return sql_rows_full(ctx);
	efs_strlcpy(b->name, efs_sql_text(row, 0), sizeof(b->name));
	efs_strlcpy(b->owner, efs_sql_text(row, 1), sizeof(b->owner));
	efs_strlcpy(b->region, efs_sql_text(row, 2), sizeof(b->region));
	b->created_at_ms = efs_sql_int(row, 3);
	return 0;
}

static int bucket_create_tx(struct sql_conn *c, void *ctx)
{
	const struct efs_bucket_info *b = ctx;
	int64_t owned = 0, changed = 0;
	int r = SQL_Q(c, "SELECT COUNT(*) FROM s3_buckets WHERE owner = $1", sql_row_int, &owned,
		      NULL, SQL_TEXT(b->owner));
	if (r < 0)
		return r;
	if (owned >= EFS_S3_BUCKETS_PER_OWNER)
		return -EDQUOT;
	r = SQL_Q(c,
		  "INSERT INTO s3_buckets (" BUCKET_COLUMNS ") VALUES ($1, $2, $3, $4)"
		  " ON CONFLICT (name) DO NOTHING",
		  NULL, NULL, &changed, SQL_TEXT(b->name), SQL_TEXT(b->owner), SQL_TEXT(b->region),
		  SQL_INT(b->created_at_ms));
	if (r < 0)
		return r;
	return changed ? 0 : -EEXIST;
}

int sql_bucket_create(void *impl, const struct efs_bucket_info *b)
{
	return sql_run_tx(impl, bucket_create_tx, (void *)b);
}

int sql_bucket_get(void *impl, const char *name, struct efs_bucket_info *out)
{
	struct efs_bucket_info b;
	struct sql_rows rows = SQL_ROWS_FIXED(&b, 1);
	int r = SQL_ONE(impl, "SELECT " BUCKET_COLUMNS " FROM s3_buckets WHERE name = $1",
			row_bucket, &rows, NULL, SQL_TEXT(name));
	if (r == 0 && rows.count == 0)
		r = -ENOENT;
	if (r == 0)
		*out = b;
	return r;
}

int sql_bucket_list(void *impl, const char *owner, struct efs_bucket_info **out, size_t *count)
{
	struct sql_rows rows = SQL_ROWS_GROW(struct efs_bucket_info);
	void *items;
	int r =
	    SQL_ONE(impl,
		    "SELECT " BUCKET_COLUMNS " FROM s3_buckets WHERE owner = $1"
		    " ORDER BY name LIMIT $2",
		    row_bucket, &rows, NULL, SQL_TEXT(owner), SQL_INT(EFS_S3_BUCKETS_PER_OWNER));
	if ((r = sql_rows_finish(&rows, r, &items, count)) == 0)
		*out = items;
	return r;
}

/* Locks bucket @name's row for the rest of the transaction. -ENOENT
 * unless it exists (and, with @owner, belongs to @owner). */
static int lock_bucket(struct sql_conn *c, const char *name, const char *owner)
{
	int64_t changed = 0;
	int r = owner ? SQL_Q(c,
			      "UPDATE s3_buckets SET created_at = created_at"
			      " WHERE name = $1 AND owner = $2",
			      NULL, NULL, &changed, SQL_TEXT(name), SQL_TEXT(owner))
		      : SQL_Q(c, "UPDATE s3_buckets SET created_at = created_at WHERE name = $1",
			      NULL, NULL, &changed, SQL_TEXT(name));
	return r < 0 ? r : (changed ? 0 : -ENOENT);
}

struct bucket_delete {
	const char *name;
	const char *owner;
	int64_t now_ms;
};

static int bucket_delete_tx(struct sql_conn *c, void *ctx)
{
	struct bucket_delete *p = ctx;
	int64_t objects = 0;
	int r = lock_bucket(c, p->name, p->owner);
	if (r < 0)
		return r;
	r = SQL_Q(c, "SELECT COUNT(*) FROM (SELECT 1 FROM s3_objects WHERE bucket = $1 LIMIT 1) t",
		  sql_row_int, &objects, NULL, SQL_TEXT(p->name));
	if (r < 0)
		return r;
	if (objects)
		return -ENOTEMPTY;
	/* Uploads in progress go with the bucket, their parts released. */
	if ((r = sql_s3_bucket_uploads_release(c, p->name, p->now_ms)) < 0)
		return r;
	return SQL_Q(c, "DELETE FROM s3_buckets WHERE name = $1", NULL, NULL, NULL,
		     SQL_TEXT(p->name));
}

int sql_bucket_delete(void *impl, const char *name, const char *owner)
{
	/* The interface passes no time: the release's zero_since is now. */
	struct bucket_delete p = {name, owner, efs_now_ms()};
	return sql_run_tx(impl, bucket_delete_tx, &p);
}

/* ---- objects ---------------------------------------------------------- */

#define OBJECT_COLUMNS                                                                             \
	"bucket, object_key, file_id, size, etag, content_type, content_encoding,"                 \
	" content_disposition, cache_control, expires, user_meta, last_modified, checksum"

/* OBJECT_COLUMNS from column @at on (checksum, the last, at @at + 12;
 * sql_object_read's join reads it from its own place over this). */
static void object_from_row(const struct efs_sql_row *row, int at, struct efs_object_info *o)
{
	efs_strlcpy(o->bucket, efs_sql_text(row, at + 0), sizeof(o->bucket));
	efs_strlcpy(o->key, efs_sql_text(row, at + 1), sizeof(o->key));
	efs_strlcpy(o->file_id, efs_sql_text(row, at + 2), sizeof(o->file_id));
	o->size = (uint64_t)efs_sql_int(row, at + 3);
	efs_strlcpy(o->etag, efs_sql_text(row, at + 4), sizeof(o->etag));
	efs_strlcpy(o->content_type, efs_sql_text(row, at + 5), sizeof(o->content_type));
	efs_strlcpy(o->content_encoding, efs_sql_text(row, at + 6), sizeof(o->content_encoding));
	efs_strlcpy(o->content_disposition, efs_sql_text(row, at + 7),
		    sizeof(o->content_disposition));
	efs_strlcpy(o->cache_control, efs_sql_text(row, at + 8), sizeof(o->cache_control));
	efs_strlcpy(o->expires, efs_sql_text(row, at + 9), sizeof(o->expires));
	efs_strlcpy(o->user_meta, efs_sql_text(row, at + 10), sizeof(o->user_meta));
	o->last_modified_ms = efs_sql_int(row, at + 11);
	efs_strlcpy(o->checksum, efs_sql_text(row, at + 12), sizeof(o->checksum));
}

static int row_object(void *ctx, const struct efs_sql_row *row)
{
	struct efs_object_info *o = sql_rows_push(ctx);
	if (!o)
		return sql_rows_full(ctx);
	object_from_row(row, 0, o);
	return 0;
}

int sql_object_get(void *impl, const char *bucket, const char *key, struct efs_object_info *out)
{
	struct efs_object_info *o = malloc(sizeof(*o)); /* ~10 KiB: not on the stack */
	if (!o)
		return -ENOMEM;
	struct sql_rows rows = SQL_ROWS_FIXED(o, 1);
	int r = SQL_ONE(impl,
			"SELECT " OBJECT_COLUMNS " FROM s3_objects"
			" WHERE bucket = $1 AND object_key = $2",
			row_object, &rows, NULL, SQL_TEXT(bucket), SQL_TEXT(key));
	if (r == 0 && rows.count == 0)
		r = -ENOENT;
	if (r == 0)
		*out = *o;
	free(o);
	return r;
}

/* GetObject's one read (efs_meta_object_read): the bucket's row, left
 * joined with the object at the key and its file, so that one statement
 * (one snapshot, one round trip, one set of SQLite locks) tells "no
 * bucket" (no row), "no key" (NULL object) and "file gone" (NULL file)
 * apart. The object's columns come first, prefixed: "file_id", "size"
 * and "owner" are in several tables. */
#define READ_COLUMNS                                                                               \
	"b.owner, o.bucket, o.object_key, o.file_id, o.size, o.etag, o.content_type,"              \
	" o.content_encoding, o.content_disposition, o.cache_control, o.expires, o.user_meta,"     \
	" o.last_modified, f.file_id, f.owner, f.name, f.size, f.sha256, f.chunk_size,"            \
	" f.chunk_count, f.replication, f.stored_bytes, f.created_at, o.checksum, f.policy"
#define READ_FROM                                                                                  \
	" FROM s3_buckets b"                                                                       \
	" LEFT JOIN s3_objects o ON o.bucket = b.name AND o.object_key = $2"                       \
	" LEFT JOIN files f ON f.file_id = o.file_id"                                              \
	" WHERE b.name = $1"

struct object_read_row {
	struct efs_object_read *out;
	int found; /* -ENOENT (no row yet), -ENOKEY, -ESTALE or 0 */
};

static int row_object_read(void *ctx, const struct efs_sql_row *row)
{
	struct object_read_row *p = ctx;
	struct efs_object_read *x = p->out;
	efs_strlcpy(x->bucket_owner, efs_sql_text(row, 0), sizeof(x->bucket_owner));
	if (efs_sql_null(row, 3)) {
		p->found = -ENOKEY;
		return 0;
	}
	object_from_row(row, 1, &x->object);
	efs_strlcpy(x->object.checksum, efs_sql_text(row, 23), sizeof(x->object.checksum));
	if (efs_sql_null(row, 13)) {
		p->found = -ESTALE;
		return 0;
	}
	struct efs_file_info *f = &x->file;
	memset(f, 0, sizeof(*f));
	efs_strlcpy(f->file_id, efs_sql_text(row, 13), sizeof(f->file_id));
	efs_strlcpy(f->owner, efs_sql_text(row, 14), sizeof(f->owner));
	efs_strlcpy(f->name, efs_sql_text(row, 15), sizeof(f->name));
	f->size = (uint64_t)efs_sql_int(row, 16);
	efs_strlcpy(f->sha256, efs_sql_text(row, 17), sizeof(f->sha256));
	f->chunk_size = (uint64_t)efs_sql_int(row, 18);
	f->chunk_count = (uint64_t)efs_sql_int(row, 19);
	f->replication = (unsigned)efs_sql_int(row, 20);
	f->stored_bytes = (uint64_t)efs_sql_int(row, 21);
	f->created_at_ms = efs_sql_int(row, 22);
	efs_strlcpy(f->policy, efs_sql_text(row, 24), sizeof(f->policy));
	efs_strlcpy(f->s3_bucket, x->object.bucket, sizeof(f->s3_bucket));
	efs_strlcpy(f->s3_key, x->object.key, sizeof(f->s3_key));
	p->found = 0;
	return 0;
}

int sql_object_read(void *impl, const char *bucket, const char *key, struct efs_object_read *out)
{
	/* Straight into @out (~13 KiB: no copy): the row callback runs at
	 * most once, and not at all for -ENOENT, which leaves @out untouched;
	 * on a store error @out may be partly written (callers do not read
	 * it then). (bucket, object_key) and file_id are keys: one row. */
	struct object_read_row p = {out, -ENOENT};
	int r = SQL_ONE(impl, "SELECT " READ_COLUMNS READ_FROM, row_object_read, &p, NULL,
			SQL_TEXT(bucket), SQL_TEXT(key));
	return r < 0 ? r : p.found;
}

/* The file id of the object at (bucket, key), into *(char[EFS_ID_MAX+1]). */
static int row_file_id(void *ctx, const struct efs_sql_row *row)
{
	efs_strlcpy(ctx, efs_sql_text(row, 0), EFS_ID_MAX + 1);
	return 0;
}

/* An object's file id and part layout (sql_object_parts). */
struct object_parts_row {
	char *file_id;
	char *layout;
	bool found;
};

static int row_object_parts(void *ctx, const struct efs_sql_row *row)
{
	struct object_parts_row *p = ctx;
	efs_strlcpy(p->file_id, efs_sql_text(row, 0), EFS_ID_MAX + 1);
	free(p->layout);
	if (!(p->layout = strdup(efs_sql_text(row, 1))))
		return -ENOMEM;
	p->found = true;
	return 0;
}

int sql_object_parts(void *impl, const char *bucket, const char *key, char *file_id, char **layout)
{
	struct object_parts_row p = {file_id, NULL, false};
	int r = SQL_ONE(
	    impl, "SELECT file_id, parts FROM s3_objects WHERE bucket = $1 AND object_key = $2",
	    row_object_parts, &p, NULL, SQL_TEXT(bucket), SQL_TEXT(key));
	if (r == 0 && !p.found)
		r = -ENOENT;
	if (r < 0) {
		free(p.layout);
		return r;
	}
	*layout = p.layout;
	return 0;
}

/* Deletes the row at (@bucket, @key) and its file: -ENOENT when none. */
static int drop_object(struct sql_conn *c, const char *bucket, const char *key, int64_t now_ms)
{
	char file_id[EFS_ID_MAX + 1] = "";
	int r = SQL_Q(c, "SELECT file_id FROM s3_objects WHERE bucket = $1 AND object_key = $2",
		      row_file_id, file_id, NULL, SQL_TEXT(bucket), SQL_TEXT(key));
	if (r < 0)
		return r;
	if (!file_id[0])
		return -ENOENT;
	/* Removes the object row too (it names the file). */
	r = sql_file_release(c, file_id, NULL, now_ms);
	if (r == -ENOENT) /* the file went without its row: drop the row alone */
		r = SQL_Q(c, "DELETE FROM s3_objects WHERE bucket = $1 AND object_key = $2", NULL,
			  NULL, NULL, SQL_TEXT(bucket), SQL_TEXT(key));
	return r;
}

struct object_put {
	const struct efs_object_info *o;
	const struct efs_object_cond *cond;
	int64_t now_ms;
};

static int object_put_tx(struct sql_conn *c, void *ctx);

struct found_etag {
	bool found;
	char etag[EFS_S3_ETAG_MAX + 1];
	int64_t last_modified_ms;
};

static int row_etag(void *ctx, const struct efs_sql_row *row)
{
	struct found_etag *f = ctx;
	f->found = true;
	efs_strlcpy(f->etag, efs_sql_text(row, 0), sizeof(f->etag));
	f->last_modified_ms = efs_sql_int(row, 1);
	return 0;
}

/* @cond against the current row; the bucket's row is locked, so no other
 * put or delete of the key runs until this transaction ends. */
static int check_cond(struct sql_conn *c, const struct efs_object_info *o,
		      const struct efs_object_cond *cond)
{
	struct found_etag cur = {0};
	if (!cond || (!cond->if_absent && !cond->if_etag && !cond->if_unmodified_since_s))
		return 0;
	int r = SQL_Q(c,
		      "SELECT etag, last_modified FROM s3_objects"
		      " WHERE bucket = $1 AND object_key = $2",
		      row_etag, &cur, NULL, SQL_TEXT(o->bucket), SQL_TEXT(o->key));
	if (r < 0)
		return r;
	if (cond->if_absent && cur.found)
		return -EEXIST;
	if (cond->if_etag && !cur.found)
		return -ENODATA;
	if (cond->if_etag && strcmp(cond->if_etag, "*") != 0 &&
	    strcasecmp(cond->if_etag, cur.etag) != 0)
		return -ESTALE;
	if (!cond->if_etag && cond->if_unmodified_since_s && cur.found &&
	    cur.last_modified_ms / 1000 > cond->if_unmodified_since_s)
		return -ESTALE;
	return 0;
}

int sql_object_replace(struct sql_conn *c, const struct efs_object_info *o, int64_t now_ms)
{
	struct object_put p = {o, NULL, now_ms};
	return object_put_tx(c, &p);
}

int sql_object_lock_check(struct sql_conn *c, const struct efs_object_info *o,
			  const struct efs_object_cond *cond)
{
	int r = lock_bucket(c, o->bucket, NULL);
	return r < 0 ? r : check_cond(c, o, cond);
}

static int object_put_tx(struct sql_conn *c, void *ctx)
{
	struct object_put *p = ctx;
	int r = sql_object_lock_check(c, p->o, p->cond);
	return r < 0 ? r : sql_object_write(c, p->o, p->now_ms);
}

int sql_object_write(struct sql_conn *c, const struct efs_object_info *o, int64_t now_ms)
{
	int r = drop_object(c, o->bucket, o->key, now_ms);
	if (r < 0 && r != -ENOENT)
		return r;
	return SQL_Q(c,
		     "INSERT INTO s3_objects (" OBJECT_COLUMNS ")"
		     " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
		     NULL, NULL, NULL, SQL_TEXT(o->bucket), SQL_TEXT(o->key), SQL_TEXT(o->file_id),
		     SQL_INT(o->size), SQL_TEXT(o->etag), SQL_TEXT(o->content_type),
		     SQL_TEXT(o->content_encoding), SQL_TEXT(o->content_disposition),
		     SQL_TEXT(o->cache_control), SQL_TEXT(o->expires), SQL_TEXT(o->user_meta),
		     SQL_INT(o->last_modified_ms), SQL_TEXT(o->checksum));
}

int sql_object_put(void *impl, const struct efs_object_info *o, const struct efs_object_cond *cond,
		   int64_t now_ms)
{
	struct object_put p = {o, cond, now_ms};
	return sql_run_tx(impl, object_put_tx, &p);
}

struct object_delete {
	const char *bucket;
	const char *key;
	int64_t now_ms;
};

static int object_delete_tx(struct sql_conn *c, void *ctx)
{
	struct object_delete *p = ctx;
	int r = lock_bucket(c, p->bucket, NULL);
	if (r < 0)
		return r;
	return drop_object(c, p->bucket, p->key, p->now_ms);
}

int sql_object_delete(void *impl, const char *bucket, const char *key, int64_t now_ms)
{
	struct object_delete p = {bucket, key, now_ms};
	return sql_run_tx(impl, object_delete_tx, &p);
}

/* ---- CopyObject -------------------------------------------------------- */

/* Locks the copy's buckets in name order (two copies between the same
 * buckets in opposite directions cannot deadlock): the source's -ENOENT
 * becomes -EACCES, the destination's stays -ENOENT. */
static int lock_copy_buckets(struct sql_conn *c, const struct efs_object_copy *p)
{
	const char *src = p->src_bucket, *dst = p->dst->bucket;
	int order = strcmp(src, dst);
	int r;
	if (order == 0)
		return lock_bucket(c, dst, p->owner);
	const char *first = order < 0 ? src : dst, *second = order < 0 ? dst : src;
	if ((r = lock_bucket(c, first, p->owner)) == 0)
		r = lock_bucket(c, second, p->owner);
	if (r == -ENOENT) /* which one: look again without locking */
		r = lock_bucket(c, dst, p->owner) == -ENOENT ? -ENOENT : -EACCES;
	return r;
}

/* The new file: the source file's row under a new id, name and owner,
 * its chunk list, and one more reference on each chunk per listing. The
 * source file's row is locked first, so a concurrent delete of it (the
 * REST API's, which does not lock the bucket) waits for this transaction
 * and the chunks it lists cannot reach a count of 0 meanwhile. */
static int copy_file(struct sql_conn *c, const struct efs_object_copy *p, const char *src_file,
		     int64_t now_ms)
{
	int64_t changed = 0;
	int r = SQL_Q(c, "UPDATE files SET created_at = created_at WHERE file_id = $1", NULL, NULL,
		      &changed, SQL_TEXT(src_file));
	if (r < 0)
		return r;
	if (!changed)
		return -ENOKEY; /* the file went (its row goes with it) */
	r = SQL_Q(c,
		  "INSERT INTO files (file_id, owner, name, size, sha256, chunk_size, chunk_count,"
		  "  replication, stored_bytes, created_at, policy)"
		  " SELECT $1, $2, $3, size, sha256, chunk_size, chunk_count,"
		  "  CASE WHEN $6 = '' THEN replication ELSE $7 END, stored_bytes, $4,"
		  "  CASE WHEN $6 = '' THEN policy ELSE $6 END FROM files WHERE file_id = $5",
		  NULL, NULL, NULL, SQL_TEXT(p->dst->file_id), SQL_TEXT(p->owner),
		  SQL_TEXT(p->file_name), SQL_INT(now_ms), SQL_TEXT(src_file),
		  SQL_TEXT(p->dst_policy ? p->dst_policy : ""), SQL_INT(p->dst_replication));
	if (r < 0)
		return r;
	r = SQL_Q(c,
		  "INSERT INTO file_chunks (file_id, idx, chunk_id)"
		  " SELECT $1, idx, chunk_id FROM file_chunks WHERE file_id = $2",
		  NULL, NULL, NULL, SQL_TEXT(p->dst->file_id), SQL_TEXT(src_file));
	if (r < 0)
		return r;
	/* The source holds every one of these references, so no count is 0
	 * here; zero_since is cleared all the same, as take_chunk_ref does. */
	return SQL_Q(c,
		     "UPDATE chunks SET refcount = chunks.refcount + d.n,"
		     " zero_since = NULL" SQL_REFS_PER_CHUNK("file_chunks", "file_id"),
		     NULL, NULL, NULL, SQL_TEXT(p->dst->file_id));
}

/* A file as a copy's source: the destination bucket locked (-ENOENT), the
 * file's size and creation time into @src with the caller's ETag and the
 * default headers; -ENOKEY unless @p->owner owns the file. */
struct file_source {
	bool found;
	struct efs_object_info *src;
};

static int row_file_source(void *ctx, const struct efs_sql_row *row)
{
	struct file_source *f = ctx;
	f->found = true;
	f->src->size = (uint64_t)efs_sql_int(row, 0);
	f->src->last_modified_ms = efs_sql_int(row, 1);
	return 0;
}

static int source_file(struct sql_conn *c, const struct efs_object_copy *p,
		       struct efs_object_info *src)
{
	struct file_source found = {false, src};
	int r = lock_bucket(c, p->dst->bucket, p->owner);
	if (r < 0)
		return r;
	memset(src, 0, sizeof(*src));
	r = SQL_Q(c, "SELECT size, created_at FROM files WHERE file_id = $1 AND owner = $2",
		  row_file_source, &found, NULL, SQL_TEXT(p->src_file_id), SQL_TEXT(p->owner));
	if (r < 0)
		return r;
	if (!found.found)
		return -ENOKEY;
	efs_strlcpy(src->file_id, p->src_file_id, sizeof(src->file_id));
	efs_strlcpy(src->etag, p->src_etag ? p->src_etag : "", sizeof(src->etag));
	efs_strlcpy(src->content_type, "binary/octet-stream", sizeof(src->content_type));
	efs_strlcpy(src->user_meta, "{}", sizeof(src->user_meta));
	return 0;
}

struct object_copy_run {
	struct efs_object_copy *copy;
	struct efs_object_info *src; /* scratch: the source's row */
	int64_t now_ms;
};

static int object_copy_tx(struct sql_conn *c, void *ctx)
{
	struct object_copy_run *run = ctx;
	struct efs_object_copy *p = run->copy;
	struct efs_object_info *src = run->src, *dst = p->dst;
	struct sql_rows rows = SQL_ROWS_FIXED(src, 1);
	int r;

	if (p->src_file_id)
		r = source_file(c, p, src);
	else if ((r = lock_copy_buckets(c, p)) == 0)
		r = SQL_Q(c,
			  "SELECT " OBJECT_COLUMNS " FROM s3_objects"
			  " WHERE bucket = $1 AND object_key = $2",
			  row_object, &rows, NULL, SQL_TEXT(p->src_bucket), SQL_TEXT(p->src_key));
	if (r < 0)
		return r;
	if (!p->src_file_id && rows.count == 0)
		return -ENOKEY;
	if (p->check_source && (r = p->check_source(p->check_ctx, src)) < 0)
		return r;
	if ((r = check_cond(c, dst, p->cond)) < 0)
		return r;
	/* The new references first: when the destination is the source, its
	 * release below must not leave the chunks unreferenced. */
	if ((r = copy_file(c, p, src->file_id, run->now_ms)) < 0)
		return r;
	dst->size = src->size;
	efs_strlcpy(dst->etag, src->etag, sizeof(dst->etag));
	/* the same bytes: the same checksum (a REST file's: none) */
	efs_strlcpy(dst->checksum, src->checksum, sizeof(dst->checksum));
	if (p->copy_headers) {
		memcpy(dst->content_type, src->content_type, sizeof(dst->content_type));
		memcpy(dst->content_encoding, src->content_encoding, sizeof(dst->content_encoding));
		memcpy(dst->content_disposition, src->content_disposition,
		       sizeof(dst->content_disposition));
		memcpy(dst->cache_control, src->cache_control, sizeof(dst->cache_control));
		memcpy(dst->expires, src->expires, sizeof(dst->expires));
		memcpy(dst->user_meta, src->user_meta, sizeof(dst->user_meta));
	}
	if ((r = drop_object(c, dst->bucket, dst->key, run->now_ms)) < 0 && r != -ENOENT)
		return r;
	return SQL_Q(c,
		     "INSERT INTO s3_objects (" OBJECT_COLUMNS ")"
		     " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
		     NULL, NULL, NULL, SQL_TEXT(dst->bucket), SQL_TEXT(dst->key),
		     SQL_TEXT(dst->file_id), SQL_INT(dst->size), SQL_TEXT(dst->etag),
		     SQL_TEXT(dst->content_type), SQL_TEXT(dst->content_encoding),
		     SQL_TEXT(dst->content_disposition), SQL_TEXT(dst->cache_control),
		     SQL_TEXT(dst->expires), SQL_TEXT(dst->user_meta),
		     SQL_INT(dst->last_modified_ms), SQL_TEXT(dst->checksum));
}

int sql_object_copy(void *impl, struct efs_object_copy *copy, int64_t now_ms)
{
	struct object_copy_run run = {copy, malloc(sizeof(struct efs_object_info)), now_ms};
	if (!run.src)
		return -ENOMEM;
	int r = sql_run_tx(impl, object_copy_tx, &run);
	free(run.src);
	return r;
}

static int row_entry(void *ctx, const struct efs_sql_row *row)
{
	struct efs_object_entry *e = sql_rows_push(ctx);
	if (!e)
		return sql_rows_full(ctx);
	efs_strlcpy(e->key, efs_sql_text(row, 0), sizeof(e->key));
	e->size = (uint64_t)efs_sql_int(row, 1);
	efs_strlcpy(e->etag, efs_sql_text(row, 2), sizeof(e->etag));
	e->last_modified_ms = efs_sql_int(row, 3);
	efs_strlcpy(e->policy, efs_sql_text(row, 4), sizeof(e->policy));
	return 0;
}

int sql_object_list(void *impl, const char *bucket, const char *prefix, const char *after,
		    size_t limit, struct efs_object_entry *out, size_t *count)
{
	struct sql_rows rows = SQL_ROWS_FIXED(out, limit);
	/* The range condition (>= prefix) lets the primary key index serve
	 * the scan; the substr test ends the prefix. Both engines count
	 * characters in substr and length, alike for valid UTF-8. */
	/* The file's policy is the storage class ListObjects shows. */
	int r = SQL_ONE(impl,
			"SELECT o.object_key, o.size, o.etag, o.last_modified,"
			"  COALESCE(f.policy, '') FROM s3_objects o"
			" LEFT JOIN files f ON f.file_id = o.file_id"
			" WHERE o.bucket = $1 AND o.object_key > CAST($2 AS TEXT)"
			"  AND o.object_key >= CAST($3 AS TEXT)"
			"  AND substr(o.object_key, 1, length(CAST($3 AS TEXT))) = CAST($3 AS TEXT)"
			" ORDER BY o.object_key LIMIT $4",
			row_entry, &rows, NULL, SQL_TEXT(bucket), SQL_TEXT(after), SQL_TEXT(prefix),
			SQL_INT(limit));
	return sql_rows_finish(&rows, r, NULL, count);
}
