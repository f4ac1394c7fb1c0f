/* SPDX-License-Identifier: MIT */
/* sql_files.c - sessions, files, chunks, replicas and garbage.
 *
 * Reference counting: chunks.refcount is the number of session_chunks and
 * file_chunks rows naming the chunk, kept exact inside the transactions
 * that add or remove those rows (a chunk listed twice in one file counts
 * twice). A chunk whose count drops to 0 gets zero_since; the collector
 * takes it once that is older than its grace period, and only while the
 * count is still 0 (garbage_take re-checks inside its transaction).
 */
#include "echofs/util.h"
#include "meta/sql_store.h"

#include <stdlib.h>
#include <string.h>

/* Row callback for a struct sql_rows of fixed-width strings: column 0
 * into the next one. */
static int row_text(void *ctx, const struct efs_sql_row *row)
{
	struct sql_rows *rows = ctx;
	char *text = sql_rows_push(rows);
	if (!text)
		return sql_rows_full(rows);
	efs_strlcpy(text, efs_sql_text(row, 0), rows->item_size);
	return 0;
}

/* ---- sessions -------------------------------------------------------- */

#define SESSION_COLUMNS                                                                           \
	"session_id, owner, name, declared_size, chunk_size, hidden, version, created_at,"       \
	" expires_at, policy"

int sql_session_create(void *impl, const struct efs_session_info *s)
{
	return SQL_WRITE(impl,
		       "INSERT INTO sessions (" SESSION_COLUMNS ")"
		       " VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $9)",
		       NULL, NULL, NULL, SQL_TEXT(s->session_id), SQL_TEXT(s->owner),
		       SQL_TEXT(s->name), s->declared_size < 0 ? SQL_NULL : SQL_INT(s->declared_size),
		       SQL_INT(s->chunk_size), SQL_INT(s->hidden ? 1 : 0), SQL_INT(s->created_at_ms),
		       SQL_INT(s->expires_at_ms), SQL_TEXT(s->policy));
}

static int row_session(void *ctx, const struct efs_sql_row *row)
{
	struct efs_session_info *s = ctx;
	efs_strlcpy(s->session_id, efs_sql_text(row, 0), sizeof(s->session_id));
	efs_strlcpy(s->owner, efs_sql_text(row, 1), sizeof(s->owner));
	efs_strlcpy(s->name, efs_sql_text(row, 2), sizeof(s->name));
	s->declared_size = efs_sql_null(row, 3) ? -1 : efs_sql_int(row, 3);
	s->chunk_size = (uint64_t)efs_sql_int(row, 4);
	s->hidden = efs_sql_int(row, 5) != 0;
	s->version = efs_sql_int(row, 6);
	s->created_at_ms = efs_sql_int(row, 7);
	s->expires_at_ms = efs_sql_int(row, 8);
	efs_strlcpy(s->policy, efs_sql_text(row, 9), sizeof(s->policy));
	return 0;
}

int sql_session_get(void *impl, const char *session_id, struct efs_session_info *out)
{
	struct efs_session_info s = {0};
	int r = SQL_ONE(impl, "SELECT " SESSION_COLUMNS " FROM sessions WHERE session_id = $1",
			row_session, &s, NULL, SQL_TEXT(session_id));
	if (r < 0)
		return r;
	if (!s.session_id[0])
		return -ENOENT;
	*out = s;
	return 0;
}

static int row_session_chunk(void *ctx, const struct efs_sql_row *row)
{
	struct efs_session_chunk *c = sql_rows_push(ctx);
	if (!c)
		return sql_rows_full(ctx);
	c->index = (uint64_t)efs_sql_int(row, 0);
	efs_strlcpy(c->chunk_id, efs_sql_text(row, 1), sizeof(c->chunk_id));
	c->size = (uint64_t)efs_sql_int(row, 2);
	c->stored_size = (uint64_t)efs_sql_int(row, 3);
	return 0;
}

int sql_session_chunks(void *impl, const char *session_id, struct efs_session_chunk **out,
		       size_t *count)
{
	struct sql_rows rows = SQL_ROWS_GROW(struct efs_session_chunk);
	void *items;
	int r = SQL_ONE(impl,
			"SELECT sc.idx, sc.chunk_id, sc.size, c.stored_size FROM session_chunks sc"
			" JOIN chunks c ON c.chunk_id = sc.chunk_id"
			" WHERE sc.session_id = $1 ORDER BY sc.idx",
			row_session_chunk, &rows, NULL, SQL_TEXT(session_id));
	if ((r = sql_rows_finish(&rows, r, &items, count)) == 0)
		*out = items;
	return r;
}

/* Locks the session's row for the rest of the transaction (a no-op update
 * takes the row lock in PostgreSQL; SQLite's BEGIN IMMEDIATE already
 * serialises writers), so a concurrent chunk, complete or abort of the
 * same session waits. -ENOENT unless the session exists. */
static int lock_session(struct sql_conn *c, const char *session_id)
{
	int64_t changed = 0;
	int r = SQL_Q(c, "UPDATE sessions SET version = version WHERE session_id = $1", NULL, NULL,
		      &changed, SQL_TEXT(session_id));
	return r < 0 ? r : (changed ? 0 : -ENOENT);
}

/* Records good replicas of @chunk_id on @worker_ids (a replica marked bad
 * before is good again: its worker was just written). */
static int add_replicas(struct sql_conn *c, const char *chunk_id, const char *const *worker_ids,
			size_t count, int64_t now_ms)
{
	for (size_t i = 0; i < count; i++) {
		int r = SQL_Q(c,
			      "INSERT INTO replicas (chunk_id, worker_id, state, created_at)"
			      " VALUES ($1, $2, 0, $3)"
			      " ON CONFLICT (chunk_id, worker_id) DO UPDATE SET state = 0,"
			      "  created_at = excluded.created_at",
			      NULL, NULL, NULL, SQL_TEXT(chunk_id), SQL_TEXT(worker_ids[i]),
			      SQL_INT(now_ms));
		if (r < 0)
			return r;
	}
	return 0;
}

struct put_chunk {
	const char *session_id;
	uint64_t index;
	const struct efs_chunk_info *chunk;
	const char *const *worker_ids;
	size_t worker_count;
	bool dedup;
	int64_t now_ms;
	int64_t hidden_expires_ms;
	int64_t expires_at_least_ms;
};

/* Gives @chunk one more reference: with @dedup the existing row (-ESTALE
 * when the collector removed it), else the row is created (or, written
 * concurrently by another upload, counted up); @worker_ids become its
 * good replicas. */
static int take_chunk_ref(struct sql_conn *c, const struct efs_chunk_info *chunk,
			  const char *const *worker_ids, size_t worker_count, bool dedup,
			  int64_t now_ms)
{
	int64_t changed = 0;
	int r;

	if (dedup) {
		r = SQL_Q(c,
			  "UPDATE chunks SET refcount = refcount + 1, zero_since = NULL"
			  " WHERE chunk_id = $1",
			  NULL, NULL, &changed, SQL_TEXT(chunk->chunk_id));
		if (r < 0)
			return r;
		if (changed == 0)
			return -ESTALE; /* collected since the caller looked */
	} else {
		r = SQL_Q(c,
			  "INSERT INTO chunks (chunk_id, size, stored_size, compressed, refcount,"
			  "  zero_since, created_at, ec_data, ec_parity)"
			  " VALUES ($1, $2, $3, $4, 1, NULL, $5, $6, $7)"
			  " ON CONFLICT (chunk_id) DO UPDATE SET refcount = chunks.refcount + 1,"
			  "  zero_since = NULL",
			  NULL, NULL, NULL, SQL_TEXT(chunk->chunk_id), SQL_INT(chunk->size),
			  SQL_INT(chunk->stored_size), SQL_INT(chunk->compressed ? 1 : 0),
			  SQL_INT(now_ms), SQL_INT(chunk->ec_data), SQL_INT(chunk->ec_parity));
		if (r < 0)
			return r;
	}
	return add_replicas(c, chunk->chunk_id, worker_ids, worker_count, now_ms);
}

static int put_chunk_tx(struct sql_conn *c, void *ctx)
{
	struct put_chunk *p = ctx;
	int r;

	if ((r = lock_session(c, p->session_id)) < 0)
		return r;
	if ((r = take_chunk_ref(c, p->chunk, p->worker_ids, p->worker_count, p->dedup,
				p->now_ms)) < 0)
		return r;
	/* The chunk the session had at this index, if any, loses its ref. */
	r = SQL_Q(c,
		  "UPDATE chunks SET refcount = refcount - 1,"
		  "  zero_since = CASE WHEN refcount - 1 <= 0 THEN $3 ELSE zero_since END"
		  " WHERE chunk_id = (SELECT chunk_id FROM session_chunks"
		  "  WHERE session_id = $1 AND idx = $2)",
		  NULL, NULL, NULL, SQL_TEXT(p->session_id), SQL_INT(p->index), SQL_INT(p->now_ms));
	if (r < 0)
		return r;
	r = SQL_Q(c,
		  "INSERT INTO session_chunks (session_id, idx, chunk_id, size)"
		  " VALUES ($1, $2, $3, $4)"
		  " ON CONFLICT (session_id, idx) DO UPDATE SET chunk_id = excluded.chunk_id,"
		  "  size = excluded.size",
		  NULL, NULL, NULL, SQL_TEXT(p->session_id), SQL_INT(p->index),
		  SQL_TEXT(p->chunk->chunk_id), SQL_INT(p->chunk->size));
	if (r < 0)
		return r;
	/* An upload stays alive while chunks keep arriving: a one-request
	 * upload for UPLOAD_IDLE_MS after its last chunk, a client's session
	 * for at least SESSION_TTL after it (never shorter than it was). */
	return SQL_Q(c,
		     "UPDATE sessions SET version = version + 1,"
		     "  expires_at = CASE WHEN hidden = 1 THEN $2"
		     "   WHEN expires_at < $3 THEN $3 ELSE expires_at END"
		     " WHERE session_id = $1",
		     NULL, NULL, NULL, SQL_TEXT(p->session_id), SQL_INT(p->hidden_expires_ms),
		     SQL_INT(p->expires_at_least_ms));
}

int sql_session_put_chunk(void *impl, const char *session_id, uint64_t index,
			  const struct efs_chunk_info *chunk, const char *const *worker_ids,
			  size_t worker_count, bool dedup, int64_t now_ms, int64_t hidden_expires_ms,
			  int64_t expires_at_least_ms)
{
	struct put_chunk p = {
	    .session_id = session_id,
	    .index = index,
	    .chunk = chunk,
	    .worker_ids = worker_ids,
	    .worker_count = worker_count,
	    .dedup = dedup,
	    .now_ms = now_ms,
	    .hidden_expires_ms = hidden_expires_ms,
	    .expires_at_least_ms = expires_at_least_ms,
	};
	return sql_run_tx(impl, put_chunk_tx, &p);
}

/* Removes a session and its chunk list (their references were moved or
 * released by the caller). */
int sql_session_end(struct sql_conn *c, const char *session_id)
{
	int r = SQL_Q(c, "DELETE FROM session_chunks WHERE session_id = $1", NULL, NULL, NULL,
		      SQL_TEXT(session_id));
	if (r < 0)
		return r;
	return SQL_Q(c, "DELETE FROM sessions WHERE session_id = $1", NULL, NULL, NULL,
		     SQL_TEXT(session_id));
}

struct complete {
	const char *session_id;
	int64_t version;
	const struct efs_file_info *file;
	int64_t remember_until_ms; /* 0: no completed-session record */
};

int sql_file_insert(struct sql_conn *c, const struct efs_file_info *f)
{
	return SQL_Q(c,
		     "INSERT INTO files (file_id, owner, name, size, sha256, chunk_size, chunk_count,"
		     "  replication, stored_bytes, created_at, policy)"
		     " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
		     NULL, NULL, NULL, SQL_TEXT(f->file_id), SQL_TEXT(f->owner), SQL_TEXT(f->name),
		     SQL_INT(f->size), SQL_TEXT(f->sha256), SQL_INT(f->chunk_size),
		     SQL_INT(f->chunk_count), SQL_INT(f->replication), SQL_INT(f->stored_bytes),
		     SQL_INT(f->created_at_ms), SQL_TEXT(f->policy));
}

static int complete_tx(struct sql_conn *c, void *ctx)
{
	struct complete *p = ctx;
	const struct efs_file_info *f = p->file;
	int64_t version = -1;
	int r = lock_session(c, p->session_id);
	if (r < 0)
		return r;
	r = SQL_Q(c, "SELECT version FROM sessions WHERE session_id = $1", sql_row_int, &version,
		  NULL, SQL_TEXT(p->session_id));
	if (r < 0)
		return r;
	if (version < 0)
		return -ENOENT;
	if (version != p->version)
		return -ESTALE;
	if ((r = sql_file_insert(c, f)) < 0)
		return r;
	/* The references move from the session to the file: counts stay. */
	r = SQL_Q(c,
		  "INSERT INTO file_chunks (file_id, idx, chunk_id)"
		  " SELECT $1, idx, chunk_id FROM session_chunks WHERE session_id = $2",
		  NULL, NULL, NULL, SQL_TEXT(f->file_id), SQL_TEXT(p->session_id));
	if (r < 0)
		return r;
	if ((r = sql_session_end(c, p->session_id)) < 0)
		return r;
	if (p->remember_until_ms <= 0)
		return 0;
	/* In the file's own transaction: a crash after the commit and before
	 * the reply still leaves the retry its answer. A session id is
	 * random and used once, so a record of it cannot exist already. */
	return SQL_Q(c,
		     "INSERT INTO completed_sessions (session_id, owner, file_id, expires_at)"
		     " VALUES ($1, $2, $3, $4)",
		     NULL, NULL, NULL, SQL_TEXT(p->session_id), SQL_TEXT(f->owner),
		     SQL_TEXT(f->file_id), SQL_INT(p->remember_until_ms));
}

int sql_session_complete(void *impl, const char *session_id, int64_t version,
			 const struct efs_file_info *file, int64_t remember_until_ms)
{
	struct complete p = {session_id, version, file, remember_until_ms};
	return sql_run_tx(impl, complete_tx, &p);
}

static int row_session_done(void *ctx, const struct efs_sql_row *row)
{
	struct efs_session_done *d = ctx;
	efs_strlcpy(d->session_id, efs_sql_text(row, 0), sizeof(d->session_id));
	efs_strlcpy(d->owner, efs_sql_text(row, 1), sizeof(d->owner));
	efs_strlcpy(d->file_id, efs_sql_text(row, 2), sizeof(d->file_id));
	d->expires_at_ms = efs_sql_int(row, 3);
	return 0;
}

int sql_session_done_get(void *impl, const char *session_id, struct efs_session_done *out)
{
	struct efs_session_done d = {0};
	int r = SQL_ONE(impl,
			"SELECT session_id, owner, file_id, expires_at FROM completed_sessions"
			" WHERE session_id = $1",
			row_session_done, &d, NULL, SQL_TEXT(session_id));
	if (r < 0)
		return r;
	if (!d.session_id[0])
		return -ENOENT;
	*out = d;
	return 0;
}

int sql_session_done_purge(void *impl, int64_t now_ms, size_t max, size_t *count)
{
	int64_t removed = 0;
	int r = SQL_WRITE(impl,
			  "DELETE FROM completed_sessions WHERE session_id IN"
			  " (SELECT session_id FROM completed_sessions WHERE expires_at < $1"
			  "  LIMIT $2)",
			  NULL, NULL, &removed, SQL_INT(now_ms), SQL_INT(max));
	if (r == 0)
		*count = (size_t)removed;
	return r;
}

struct single {
	const struct efs_file_info *file;
	const struct efs_chunk_info *chunk;
	const char *const *worker_ids;
	size_t worker_count;
	bool dedup;
	int64_t now_ms;
	struct efs_object_link *link; /* NULL: the file alone */
};

/* With an object, the bucket's row is locked first, as every object put
 * does (sql_object_replace), so no two transactions take the bucket and a
 * chunk row in opposite orders; its condition is checked before anything
 * is written. Then the file row: a taken id fails before any reference is
 * taken. */
static int create_single_tx(struct sql_conn *c, void *ctx)
{
	struct single *p = ctx;
	int r;
	if (p->link) {
		p->link->refused = 0;
		r = sql_object_lock_check(c, p->link->object, p->link->cond);
		if (r == -ENOENT || r == -EEXIST || r == -ENODATA || r == -ESTALE) {
			p->link->refused = r;
			return -ECANCELED;
		}
		if (r < 0)
			return r;
	}
	if ((r = sql_file_insert(c, p->file)) < 0)
		return r;
	if (p->chunk) {
		if ((r = take_chunk_ref(c, p->chunk, p->worker_ids, p->worker_count, p->dedup,
					p->now_ms)) < 0)
			return r;
		r = SQL_Q(c, "INSERT INTO file_chunks (file_id, idx, chunk_id) VALUES ($1, 0, $2)",
			  NULL, NULL, NULL, SQL_TEXT(p->file->file_id),
			  SQL_TEXT(p->chunk->chunk_id));
		if (r < 0)
			return r;
	}
	return p->link ? sql_object_write(c, p->link->object, p->now_ms) : 0;
}

int sql_file_create_single(void *impl, const struct efs_file_info *file,
			   const struct efs_chunk_info *chunk, const char *const *worker_ids,
			   size_t worker_count, bool dedup, int64_t now_ms)
{
	struct single p = {file, chunk, worker_ids, worker_count, dedup, now_ms, NULL};
	return sql_run_tx(impl, create_single_tx, &p);
}

int sql_file_create_object(void *impl, const struct efs_file_info *file,
			   const struct efs_chunk_info *chunk, const char *const *worker_ids,
			   size_t worker_count, bool dedup, struct efs_object_link *link,
			   int64_t now_ms)
{
	struct single p = {file, chunk, worker_ids, worker_count, dedup, now_ms, link};
	return sql_run_tx(impl, create_single_tx, &p);
}

/* With SQL_REFS_PER_CHUNK: drops a file's or session's references from
 * their chunks; a count that reaches 0 gets zero_since $2. */
#define RELEASE_SQL                                                                                \
	"UPDATE chunks SET refcount = chunks.refcount - d.n, zero_since = CASE"                    \
	" WHEN chunks.refcount - d.n <= 0 THEN $2 ELSE chunks.zero_since END"

struct release {
	const char *id;
	const char *owner; /* files only */
	int64_t now_ms;
};

int sql_session_release(struct sql_conn *c, const char *session_id, int64_t now_ms)
{
	int r = lock_session(c, session_id);
	if (r < 0)
		return r;
	r = SQL_Q(c, RELEASE_SQL SQL_REFS_PER_CHUNK("session_chunks", "session_id"), NULL, NULL,
		  NULL, SQL_TEXT(session_id), SQL_INT(now_ms));
	if (r < 0)
		return r;
	return sql_session_end(c, session_id);
}

static int session_delete_tx(struct sql_conn *c, void *ctx)
{
	struct release *p = ctx;
	return sql_session_release(c, p->id, p->now_ms);
}

int sql_session_delete(void *impl, const char *session_id, int64_t now_ms)
{
	struct release p = {session_id, NULL, now_ms};
	return sql_run_tx(impl, session_delete_tx, &p);
}

int sql_session_expired(void *impl, int64_t now_ms, size_t max, char (*ids)[EFS_ID_MAX + 1],
			size_t *count)
{
	struct sql_rows rows = SQL_ROWS_FIXED(ids, max);
	int r = SQL_ONE(impl, "SELECT session_id FROM sessions WHERE expires_at < $1 LIMIT $2",
			row_text, &rows, NULL, SQL_INT(now_ms), SQL_INT(max));
	return sql_rows_finish(&rows, r, NULL, count);
}

/* ---- files ----------------------------------------------------------- */

/* A file and, when it is an S3 object, its bucket and key. */
#define FILE_COLUMNS                                                                              \
	"f.file_id, f.owner, f.name, f.size, f.sha256, f.chunk_size, f.chunk_count,"            \
	" f.replication, f.stored_bytes, f.created_at, o.bucket, o.object_key, f.policy"
#define FILE_FROM " FROM files f LEFT JOIN s3_objects o ON o.file_id = f.file_id"

static void file_from_row(const struct efs_sql_row *row, struct efs_file_info *f)
{
	efs_strlcpy(f->file_id, efs_sql_text(row, 0), sizeof(f->file_id));
	efs_strlcpy(f->owner, efs_sql_text(row, 1), sizeof(f->owner));
	efs_strlcpy(f->name, efs_sql_text(row, 2), sizeof(f->name));
	f->size = (uint64_t)efs_sql_int(row, 3);
	efs_strlcpy(f->sha256, efs_sql_text(row, 4), sizeof(f->sha256));
	f->chunk_size = (uint64_t)efs_sql_int(row, 5);
	f->chunk_count = (uint64_t)efs_sql_int(row, 6);
	f->replication = (unsigned)efs_sql_int(row, 7);
	f->stored_bytes = (uint64_t)efs_sql_int(row, 8);
	f->created_at_ms = efs_sql_int(row, 9);
	efs_strlcpy(f->s3_bucket, efs_sql_text(row, 10), sizeof(f->s3_bucket));
	efs_strlcpy(f->s3_key, efs_sql_text(row, 11), sizeof(f->s3_key));
	efs_strlcpy(f->policy, efs_sql_text(row, 12), sizeof(f->policy));
}

static int row_file_push(void *ctx, const struct efs_sql_row *row)
{
	struct efs_file_info *f = sql_rows_push(ctx);
	if (!f)
		return sql_rows_full(ctx);
	file_from_row(row, f);
	return 0;
}

int sql_file_get(void *impl, const char *file_id, struct efs_file_info *out)
{
	struct efs_file_info file;
	struct sql_rows rows = SQL_ROWS_FIXED(&file, 1);
	int r = SQL_ONE(impl, "SELECT " FILE_COLUMNS FILE_FROM " WHERE f.file_id = $1",
			row_file_push, &rows, NULL, SQL_TEXT(file_id));
	if (r == 0 && rows.count == 0)
		r = -ENOENT;
	if (r == 0)
		*out = file;
	return r;
}

int sql_file_list(void *impl, const char *owner, int64_t after_created_ms, const char *after_id,
		  size_t limit, struct efs_file_info **out, size_t *count)
{
	struct sql_rows rows = SQL_ROWS_GROW(struct efs_file_info);
	void *items;
	int r = SQL_ONE(impl,
			"SELECT " FILE_COLUMNS FILE_FROM " WHERE f.owner = $1"
			" AND (f.created_at > $2 OR (f.created_at = $2 AND f.file_id > $3))"
			" ORDER BY f.created_at, f.file_id LIMIT $4",
			row_file_push, &rows, NULL, SQL_TEXT(owner), SQL_INT(after_created_ms),
			SQL_TEXT(after_id), SQL_INT(limit));
	if ((r = sql_rows_finish(&rows, r, &items, count)) == 0)
		*out = items;
	return r;
}

static void replica_from_row(const struct efs_sql_row *row, int col, struct efs_replica *rep)
{
	efs_strlcpy(rep->worker_id, efs_sql_text(row, col), sizeof(rep->worker_id));
	rep->bad = efs_sql_int(row, col + 1) != 0;
	efs_strlcpy(rep->url, efs_sql_text(row, col + 2), sizeof(rep->url));
	rep->last_heartbeat_ms = efs_sql_null(row, col + 3) ? 0 : efs_sql_int(row, col + 3);
	rep->created_at_ms = efs_sql_int(row, col + 4);
	rep->bad_marks = efs_sql_int(row, col + 5);
}

static int row_file_chunk(void *ctx, const struct efs_sql_row *row)
{
	struct sql_rows *rows = ctx;
	uint64_t index = (uint64_t)efs_sql_int(row, 0);
	struct efs_file_chunk *fc = sql_rows_last(rows);
	if (!fc || fc->index != index) {
		if (!(fc = sql_rows_push(rows)))
			return sql_rows_full(rows);
		fc->index = index;
		efs_strlcpy(fc->chunk.chunk_id, efs_sql_text(row, 1), sizeof(fc->chunk.chunk_id));
		fc->chunk.size = (uint64_t)efs_sql_int(row, 2);
		fc->chunk.stored_size = (uint64_t)efs_sql_int(row, 3);
		fc->chunk.compressed = efs_sql_int(row, 4) != 0;
		fc->chunk.ec_data = (unsigned)efs_sql_int(row, 11);
		fc->chunk.ec_parity = (unsigned)efs_sql_int(row, 12);
	}
	if (!efs_sql_null(row, 5) && fc->replica_count < EFS_MAX_REPLICAS)
		replica_from_row(row, 5, &fc->replicas[fc->replica_count++]);
	return 0;
}

int sql_file_chunks(void *impl, const char *file_id, uint64_t first, size_t max,
		    struct efs_file_chunk **out, size_t *count)
{
	struct sql_rows rows = SQL_ROWS_GROW(struct efs_file_chunk);
	void *items;
	int r = SQL_ONE(
	    impl,
	    "SELECT fc.idx, c.chunk_id, c.size, c.stored_size, c.compressed,"
	    "  r.worker_id, r.state, w.url, w.last_heartbeat, r.created_at, r.bad_marks,"
	    "  c.ec_data, c.ec_parity"
	    " FROM file_chunks fc JOIN chunks c ON c.chunk_id = fc.chunk_id"
	    " LEFT JOIN replicas r ON r.chunk_id = c.chunk_id"
	    " LEFT JOIN workers w ON w.worker_id = r.worker_id"
	    " WHERE fc.file_id = $1 AND fc.idx >= $2 AND fc.idx < $3"
	    " ORDER BY fc.idx, r.worker_id",
	    row_file_chunk, &rows, NULL, SQL_TEXT(file_id), SQL_INT(first), SQL_INT(first + max));
	if ((r = sql_rows_finish(&rows, r, &items, count)) == 0)
		*out = items;
	return r;
}

int sql_file_release(struct sql_conn *c, const char *file_id, const char *owner, int64_t now_ms)
{
	int64_t deleted = 0;
	/* The file row goes first: of two concurrent deletes, the second finds
	 * nothing and releases nothing. */
	int r = owner ? SQL_Q(c, "DELETE FROM files WHERE file_id = $1 AND owner = $2", NULL, NULL,
			      &deleted, SQL_TEXT(file_id), SQL_TEXT(owner))
		      : SQL_Q(c, "DELETE FROM files WHERE file_id = $1", NULL, NULL, &deleted,
			      SQL_TEXT(file_id));
	if (r < 0)
		return r;
	if (!deleted)
		return -ENOENT;
	/* A file that was an S3 object stops being one (a no-op otherwise). */
	r = SQL_Q(c, "DELETE FROM s3_objects WHERE file_id = $1", NULL, NULL, NULL,
		  SQL_TEXT(file_id));
	if (r < 0)
		return r;
	r = SQL_Q(c, RELEASE_SQL SQL_REFS_PER_CHUNK("file_chunks", "file_id"), NULL, NULL, NULL,
		  SQL_TEXT(file_id), SQL_INT(now_ms));
	if (r < 0)
		return r;
	return SQL_Q(c, "DELETE FROM file_chunks WHERE file_id = $1", NULL, NULL, NULL,
		     SQL_TEXT(file_id));
}

static int file_delete_tx(struct sql_conn *c, void *ctx)
{
	struct release *p = ctx;
	return sql_file_release(c, p->id, p->owner, p->now_ms);
}

int sql_file_delete(void *impl, const char *file_id, const char *owner, int64_t now_ms)
{
	struct release p = {file_id, owner, now_ms};
	return sql_run_tx(impl, file_delete_tx, &p);
}

/* ---- chunks, replicas, garbage ---------------------------------------- */

static int row_chunk(void *ctx, const struct efs_sql_row *row)
{
	struct efs_chunk_info *c = ctx;
	efs_strlcpy(c->chunk_id, efs_sql_text(row, 0), sizeof(c->chunk_id));
	c->size = (uint64_t)efs_sql_int(row, 1);
	c->stored_size = (uint64_t)efs_sql_int(row, 2);
	c->compressed = efs_sql_int(row, 3) != 0;
	c->ec_data = (unsigned)efs_sql_int(row, 4);
	c->ec_parity = (unsigned)efs_sql_int(row, 5);
	return 0;
}

/* Row callback for a struct sql_rows of EFS_MAX_REPLICAS replicas. */
static int row_replica(void *ctx, const struct efs_sql_row *row)
{
	struct efs_replica *rep = sql_rows_push(ctx);
	if (!rep)
		return sql_rows_full(ctx);
	replica_from_row(row, 0, rep);
	return 0;
}

static const char replicas_sql[] = "SELECT r.worker_id, r.state, w.url, w.last_heartbeat,"
				   " r.created_at, r.bad_marks"
				   " FROM replicas r LEFT JOIN workers w"
				   " ON w.worker_id = r.worker_id WHERE r.chunk_id = $1"
				   " ORDER BY r.worker_id";

int sql_chunk_get(void *impl, const char *chunk_id, struct efs_chunk_info *out,
		  struct efs_replica *replicas, unsigned *replica_count)
{
	struct efs_chunk_info c;
	memset(&c, 0, sizeof(c));
	int r = SQL_ONE(impl,
			"SELECT chunk_id, size, stored_size, compressed, ec_data, ec_parity"
			" FROM chunks WHERE chunk_id = $1",
			row_chunk, &c, NULL, SQL_TEXT(chunk_id));
	if (r < 0)
		return r;
	if (!c.chunk_id[0])
		return -ENOENT;
	if (replicas) {
		struct sql_rows rows = SQL_ROWS_FIXED(replicas, EFS_MAX_REPLICAS);
		r = SQL_ONE(impl, replicas_sql, row_replica, &rows, NULL, SQL_TEXT(chunk_id));
		if (r < 0)
			return r;
		*replica_count = (unsigned)rows.count;
	}
	*out = c;
	return 0;
}

struct add {
	const char *chunk_id;
	const char *const *worker_ids;
	size_t count;
	int64_t now_ms;
};

static int replica_add_tx(struct sql_conn *c, void *ctx)
{
	struct add *a = ctx;
	int64_t found = 0;
	int r = SQL_Q(c, "SELECT 1 FROM chunks WHERE chunk_id = $1", sql_row_int, &found, NULL,
		      SQL_TEXT(a->chunk_id));
	if (r < 0)
		return r;
	if (!found)
		return -ENOENT; /* collected meanwhile: nothing to record */
	return add_replicas(c, a->chunk_id, a->worker_ids, a->count, a->now_ms);
}

int sql_replica_add(void *impl, const char *chunk_id, const char *const *worker_ids,
		    size_t worker_count, int64_t now_ms)
{
	struct add a = {chunk_id, worker_ids, worker_count, now_ms};
	return sql_run_tx(impl, replica_add_tx, &a);
}

struct unreferenced {
	const struct efs_chunk_info *chunk;
	const char *const *worker_ids;
	size_t count;
	int64_t now_ms;
};

static int record_unreferenced_tx(struct sql_conn *c, void *ctx)
{
	struct unreferenced *u = ctx;
	int r = SQL_Q(c,
		      "INSERT INTO chunks (chunk_id, size, stored_size, compressed, refcount,"
		      "  zero_since, created_at, ec_data, ec_parity)"
		      " VALUES ($1, $2, $3, $4, 0, $5, $5, $6, $7)"
		      " ON CONFLICT (chunk_id) DO NOTHING",
		      NULL, NULL, NULL, SQL_TEXT(u->chunk->chunk_id), SQL_INT(u->chunk->size),
		      SQL_INT(u->chunk->stored_size), SQL_INT(u->chunk->compressed ? 1 : 0),
		      SQL_INT(u->now_ms), SQL_INT(u->chunk->ec_data), SQL_INT(u->chunk->ec_parity));
	if (r < 0)
		return r;
	return add_replicas(c, u->chunk->chunk_id, u->worker_ids, u->count, u->now_ms);
}

int sql_chunk_record_unreferenced(void *impl, const struct efs_chunk_info *chunk,
				  const char *const *worker_ids, size_t worker_count, int64_t now_ms)
{
	struct unreferenced u = {chunk, worker_ids, worker_count, now_ms};
	return sql_run_tx(impl, record_unreferenced_tx, &u);
}

int sql_replica_remove(void *impl, const char *chunk_id, const char *worker_id)
{
	return SQL_WRITE(impl, "DELETE FROM replicas WHERE chunk_id = $1 AND worker_id = $2", NULL,
		       NULL, NULL, SQL_TEXT(chunk_id), SQL_TEXT(worker_id));
}

int sql_replica_remove_if(void *impl, const char *chunk_id, const char *worker_id,
			  const char *keep_id)
{
	int64_t changed = 0;
	/* One statement: the keeper's row is checked where the delete is
	 * decided (two trims of one chunk never remove each other's keeper:
	 * a keeper is always the smaller location, R13). */
	int r = SQL_WRITE(impl,
			  "DELETE FROM replicas WHERE chunk_id = $1 AND worker_id = $2"
			  " AND EXISTS (SELECT 1 FROM replicas k"
			  "  WHERE k.chunk_id = $1 AND k.worker_id = $3)",
			  NULL, NULL, &changed, SQL_TEXT(chunk_id), SQL_TEXT(worker_id),
			  SQL_TEXT(keep_id));
	if (r < 0)
		return r;
	return changed > 0 ? 0 : -ENOENT;
}

int sql_replica_mark_bad(void *impl, const char *chunk_id, const char *worker_id,
			 int64_t recorded_by_ms)
{
	int64_t changed = 0;
	/* Every mark counts, on a bad replica too: a verified read that began
	 * before it must not undo it (sql_replica_mark_good). */
	int r = SQL_WRITE(impl,
			"UPDATE replicas SET state = 1, bad_marks = bad_marks + 1"
			" WHERE chunk_id = $1 AND worker_id = $2 AND created_at <= $3",
			NULL, NULL, &changed, SQL_TEXT(chunk_id), SQL_TEXT(worker_id),
			SQL_INT(recorded_by_ms));
	return r < 0 ? r : changed > 0;
}

int sql_replica_mark_good(void *impl, const char *chunk_id, const struct efs_replica *rep,
			  int64_t now_ms)
{
	int64_t changed = 0;
	/* Only the bad row the reader loaded before its read: not one marked
	 * again since (a later read found the copy gone, the scrubber
	 * quarantined it, a report's end missed it), nor one removed and
	 * recorded again. created_at moves to now, as for a rewrite: a report
	 * whose snapshot predates this read does not mark it again (R7). */
	int r = SQL_WRITE(impl,
			"UPDATE replicas SET state = 0, created_at = $5"
			" WHERE chunk_id = $1 AND worker_id = $2 AND state = 1"
			" AND created_at = $3 AND bad_marks = $4",
			NULL, NULL, &changed, SQL_TEXT(chunk_id), SQL_TEXT(rep->worker_id),
			SQL_INT(rep->created_at_ms), SQL_INT(rep->bad_marks), SQL_INT(now_ms));
	if (r < 0)
		return r;
	return changed ? 0 : -ESTALE;
}

/* ---- totals ----------------------------------------------------------- */

static int row_stats(void *ctx, const struct efs_sql_row *row)
{
	struct efs_meta_stats *st = ctx;
	st->file_count = (uint64_t)efs_sql_int(row, 0);
	st->logical_bytes = (uint64_t)efs_sql_int(row, 1);
	st->chunk_count = (uint64_t)efs_sql_int(row, 2);
	st->chunk_bytes = (uint64_t)efs_sql_int(row, 3);
	st->stored_bytes = (uint64_t)efs_sql_int(row, 4);
	st->ec_chunk_count = (uint64_t)efs_sql_int(row, 5);
	st->ec_stored_bytes = (uint64_t)efs_sql_int(row, 6);
	st->ec_shard_bytes = (uint64_t)efs_sql_int(row, 7);
	st->ec_file_count = (uint64_t)efs_sql_int(row, 8);
	st->ec_logical_bytes = (uint64_t)efs_sql_int(row, 9);
	return 0;
}

int sql_stats(void *impl, struct efs_meta_stats *out)
{
	struct efs_meta_stats st;
	memset(&st, 0, sizeof(st));
	int r = sql_run_one(impl,
			    "SELECT f.n, f.bytes, c.n, c.bytes, c.stored, c.ec_n, c.ec_stored,"
			    " c.ec_shards, f.ec_n, f.ec_bytes FROM"
			    " (SELECT COUNT(*) AS n, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes,"
			    "  CAST(COALESCE(SUM(CASE WHEN policy LIKE 'ec:%' THEN 1 ELSE 0 END), 0)"
			    "   AS BIGINT) AS ec_n,"
			    "  CAST(COALESCE(SUM(CASE WHEN policy LIKE 'ec:%' THEN size ELSE 0 END), 0)"
			    "   AS BIGINT) AS ec_bytes"
			    "  FROM files) f,"
			    " (SELECT COUNT(*) AS n, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes,"
			    "  CAST(COALESCE(SUM(stored_size), 0) AS BIGINT) AS stored,"
			    "  CAST(COALESCE(SUM(CASE WHEN ec_data > 0 THEN 1 ELSE 0 END), 0)"
			    "   AS BIGINT) AS ec_n,"
			    "  CAST(COALESCE(SUM(CASE WHEN ec_data > 0 THEN stored_size ELSE 0 END), 0)"
			    "   AS BIGINT) AS ec_stored,"
			    /* chunk_ec.c's layout: a 32-byte header and ceil(stored / K)
			     * rounded up to 64 bytes, on each of the K + M shards */
			    "  CAST(COALESCE(SUM(CASE WHEN ec_data > 0 THEN (ec_data + ec_parity) *"
			    "   (32 + ((stored_size + ec_data - 1) / ec_data + 63) / 64 * 64)"
			    "   ELSE 0 END), 0) AS BIGINT) AS ec_shards"
			    "  FROM chunks WHERE refcount > 0) c",
			    NULL, 0, row_stats, &st, NULL);
	if (r == 0)
		*out = st;
	return r;
}

int sql_garbage_list(void *impl, int64_t before_ms, size_t max, char (*ids)[65], size_t *count)
{
	struct sql_rows rows = SQL_ROWS_FIXED(ids, max);
	int r = SQL_ONE(impl,
			"SELECT chunk_id FROM chunks WHERE refcount <= 0"
			" AND zero_since IS NOT NULL AND zero_since < $1 LIMIT $2",
			row_text, &rows, NULL, SQL_INT(before_ms), SQL_INT(max));
	return sql_rows_finish(&rows, r, NULL, count);
}

struct take {
	const char *chunk_id;
	struct sql_rows replicas; /* fixed, EFS_MAX_REPLICAS */
};

static int garbage_take_tx(struct sql_conn *c, void *ctx)
{
	struct take *t = ctx;
	int64_t changed = 0;
	int r = SQL_Q(c, "DELETE FROM chunks WHERE chunk_id = $1 AND refcount <= 0", NULL, NULL,
		      &changed, SQL_TEXT(t->chunk_id));
	if (r < 0)
		return r;
	if (changed == 0)
		return -ENOENT;
	t->replicas.count = 0;
	if ((r = SQL_Q(c, replicas_sql, row_replica, &t->replicas, NULL, SQL_TEXT(t->chunk_id))) <
	    0)
		return r;
	return SQL_Q(c, "DELETE FROM replicas WHERE chunk_id = $1", NULL, NULL, NULL,
		     SQL_TEXT(t->chunk_id));
}

int sql_garbage_take(void *impl, const char *chunk_id, struct efs_replica *replicas,
		     unsigned *replica_count)
{
	struct take t = {chunk_id, SQL_ROWS_FIXED(replicas, EFS_MAX_REPLICAS)};
	int r = sql_run_tx(impl, garbage_take_tx, &t);
	if (r == 0)
		*replica_count = (unsigned)t.replicas.count;
	return r;
}

/* ---- conversion to erasure coding (issue 17) -------------------------- */

static int row_candidate(void *ctx, const struct efs_sql_row *row)
{
	struct efs_ec_candidate *c = sql_rows_push(ctx);
	if (!c)
		return sql_rows_full(ctx);
	efs_strlcpy(c->file_id, efs_sql_text(row, 0), sizeof(c->file_id));
	c->created_at_ms = efs_sql_int(row, 1);
	c->size = (uint64_t)efs_sql_int(row, 2);
	return 0;
}

int sql_ec_candidates(void *impl, int64_t created_before_ms, uint64_t min_size,
		      int64_t after_created_ms, const char *after_id, size_t max,
		      struct efs_ec_candidate *out, size_t *count)
{
	struct sql_rows rows = SQL_ROWS_FIXED(out, max);
	/* Replicated: policy '' (before policies) or replicas:N. */
	int r = SQL_ONE(impl,
			"SELECT file_id, created_at, size FROM files"
			" WHERE created_at < $1 AND size >= $2 AND policy NOT LIKE 'ec:%'"
			" AND (created_at > $3 OR (created_at = $3 AND file_id > $4))"
			" ORDER BY created_at, file_id LIMIT $5",
			row_candidate, &rows, NULL, SQL_INT(created_before_ms),
			SQL_INT((int64_t)EFS_MIN(min_size, (uint64_t)INT64_MAX)),
			SQL_INT(after_created_ms), SQL_TEXT(after_id), SQL_INT(max));
	return sql_rows_finish(&rows, r, NULL, count);
}

struct make_ec {
	const char *chunk_id;
	unsigned data_shards, parity_shards;
	const char *const *worker_ids;
	size_t count;
	int64_t now_ms;
};

static int chunk_make_ec_tx(struct sql_conn *c, void *ctx)
{
	struct make_ec *a = ctx;
	int64_t changed = 0, ec = -1;
	int r = SQL_Q(c,
		      "UPDATE chunks SET ec_data = $2, ec_parity = $3"
		      " WHERE chunk_id = $1 AND ec_data = 0 AND refcount > 0",
		      NULL, NULL, &changed, SQL_TEXT(a->chunk_id), SQL_INT(a->data_shards),
		      SQL_INT(a->parity_shards));
	if (r < 0)
		return r;
	if (changed == 0) {
		r = SQL_Q(c, "SELECT ec_data FROM chunks WHERE chunk_id = $1 AND refcount > 0",
			  sql_row_int, &ec, NULL, SQL_TEXT(a->chunk_id));
		if (r < 0)
			return r;
		return ec > 0 ? -EALREADY : -ENOENT;
	}
	return add_replicas(c, a->chunk_id, a->worker_ids, a->count, a->now_ms);
}

int sql_chunk_make_ec(void *impl, const char *chunk_id, unsigned data_shards,
		      unsigned parity_shards, const char *const *worker_ids, size_t worker_count,
		      int64_t now_ms)
{
	struct make_ec a = {chunk_id, data_shards, parity_shards, worker_ids, worker_count, now_ms};
	return sql_run_tx(impl, chunk_make_ec_tx, &a);
}

int sql_file_set_policy(void *impl, const char *file_id, const char *policy,
			unsigned replication)
{
	int64_t changed = 0, found = 0;
	int r = SQL_WRITE(impl,
			  "UPDATE files SET policy = $2, replication = $3 WHERE file_id = $1"
			  " AND NOT EXISTS (SELECT 1 FROM file_chunks fc"
			  "  JOIN chunks c ON c.chunk_id = fc.chunk_id"
			  "  WHERE fc.file_id = $1 AND c.ec_data = 0)",
			  NULL, NULL, &changed, SQL_TEXT(file_id), SQL_TEXT(policy),
			  SQL_INT(replication));
	if (r < 0 || changed > 0)
		return r;
	r = SQL_ONE(impl, "SELECT 1 FROM files WHERE file_id = $1", sql_row_int, &found, NULL,
		    SQL_TEXT(file_id));
	if (r < 0)
		return r;
	return found ? -EAGAIN : -ENOENT;
}
