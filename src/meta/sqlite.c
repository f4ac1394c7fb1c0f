/* SPDX-License-Identifier: MIT */
/* sqlite.c - the SQLite driver of the SQL metadata store (embedded default).
 *
 * WAL mode with synchronous=FULL: a committed transaction survives a crash
 * and a power cut. Inside one process every write goes through the store's
 * single writer connection (group_commit: see sql_store.c), which runs
 * each queued transaction in its own savepoint of one BEGIN IMMEDIATE ...
 * COMMIT; readers use the pool and, in WAL mode, never wait for it. The
 * busy handler (busy_timeout, 5 s) is left for other processes on the same
 * file: another store opened on it, or the sqlite3 tool. Prepared
 * statements are cached per connection by the SQL text's content (a hash,
 * then a full compare): a text built at run time in a reused buffer is
 * never mistaken for the one that lay there before.
 */
#include "echofs/hash.h"
#include "echofs/log.h"
#include "echofs/util.h"
#include "meta/sql.h"
#include "meta/sqlite_checkpoint.h"

#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STMT_CACHE 64

struct sqlite_conn {
	sqlite3 *db;
	struct {
		uint64_t hash;
		char *sql; /* owned copy of the text */
		sqlite3_stmt *stmt;
	} cache[STMT_CACHE];
	size_t cached;
	/* Checkpoints off the committing thread (NULL: SQLite's own). */
	struct efs_sqlite_checkpointer *checkpointer;
};

static int map_error(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_NOMEM:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

static int parent_dir_create(const char *path)
{
	char dir[PATH_MAX];
	if (efs_strlcpy(dir, path, sizeof(dir)) >= sizeof(dir))
		return -ENAMETOOLONG;
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	return efs_mkdir_p(dir);
}

static void sqlite_disconnect(void *conn)
{
	struct sqlite_conn *c = conn;
	if (!c)
		return;
	for (size_t i = 0; i < c->cached; i++) {
		sqlite3_finalize(c->cache[i].stmt);
		free(c->cache[i].sql);
	}
	efs_sqlite_checkpointer_detach(c->checkpointer);
	sqlite3_close(c->db);
	free(c);
}

/* How much of a statement journal SQLite keeps in memory before it
 * spills the rest to a temp file. Every request of a group commit runs
 * in a SAVEPOINT (sqlite_begin), so every page it changes is first copied
 * to that journal: SQLite's default, 64 KiB, was less than one 4 KiB
 * upload's pages (18), and each upload wrote about 5 pages to a file in
 * /var/tmp besides its WAL frames. The journal is emptied at each
 * RELEASE: this bounds the memory of the one request under way. */
#define SQLITE_STMTJRNL_SPILL_BYTES (4 << 20)

static void sqlite_configure(void)
{
	/* Before any connection (sqlite3_config refuses once SQLite is
	 * initialised: then the default stays, which is only slower). */
	sqlite3_config(SQLITE_CONFIG_STMTJRNL_SPILL, SQLITE_STMTJRNL_SPILL_BYTES);
}

static int sqlite_connect(const char *target, void **conn, char *err, size_t errlen)
{
	static pthread_once_t configured = PTHREAD_ONCE_INIT;
	static const char pragmas[] = "PRAGMA journal_mode = WAL;"
				      "PRAGMA synchronous = FULL;"
				      "PRAGMA foreign_keys = ON;";
	struct sqlite_conn *c = calloc(1, sizeof(*c));
	char *msg = NULL;
	int rc;

	if (!c)
		return -ENOMEM;
	pthread_once(&configured, sqlite_configure);
	int r = parent_dir_create(target);
	if (r < 0) {
		snprintf(err, errlen, "cannot create the directory of %s: %s", target, strerror(-r));
		free(c);
		return -EIO;
	}
	rc = sqlite3_open_v2(target, &c->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK)
		goto fail;
	sqlite3_busy_timeout(c->db, 5000);
	/* Switching a new database to WAL answers SQLITE_BUSY at once (no
	 * busy handler) while another connection writes: retry for 5 s. */
	for (int tries = 0; tries < 500; tries++) {
		rc = sqlite3_exec(c->db, pragmas, NULL, NULL, &msg);
		if (rc != SQLITE_BUSY)
			break;
		sqlite3_free(msg);
		msg = NULL;
		efs_sleep_ms(10);
	}
	if (rc != SQLITE_OK)
		goto fail;
	/* After the pragmas: a connection of the pool that never writes
	 * never starts its thread. */
	c->checkpointer = efs_sqlite_checkpointer_attach(c->db, target);
	*conn = c;
	return 0;
fail:
	snprintf(err, errlen, "cannot open SQLite database %s: %s", target,
		 msg ? msg : (c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc)));
	sqlite3_free(msg);
	sqlite_disconnect(c);
	return -EIO;
}

/* The prepared statement of @sql, from the cache when the same text was
 * prepared before and is not running (a row callback may run the same
 * text again). Otherwise, and past STMT_CACHE texts (or when the copy
 * cannot be made), the statement is prepared for this one use: see
 * is_cached. */
static sqlite3_stmt *statement(struct sqlite_conn *c, const char *sql, int *rc)
{
	sqlite3_stmt *stmt = NULL;
	size_t len = strlen(sql);
	uint64_t hash = efs_fnv1a(EFS_FNV1A_INIT, sql, len);
	bool running = false;
	for (size_t i = 0; i < c->cached; i++) {
		if (c->cache[i].hash == hash && strcmp(c->cache[i].sql, sql) == 0) {
			if (!sqlite3_stmt_busy(c->cache[i].stmt))
				return c->cache[i].stmt;
			running = true;
			break;
		}
	}
	*rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL);
	if (*rc != SQLITE_OK)
		return NULL;
	if (!running && c->cached < STMT_CACHE) {
		char *copy = malloc(len + 1);
		if (copy) {
			memcpy(copy, sql, len + 1);
			c->cache[c->cached].hash = hash;
			c->cache[c->cached].sql = copy;
			c->cache[c->cached].stmt = stmt;
			c->cached++;
		}
	}
	return stmt;
}

static bool is_cached(struct sqlite_conn *c, sqlite3_stmt *stmt)
{
	for (size_t i = 0; i < c->cached; i++)
		if (c->cache[i].stmt == stmt)
			return true;
	return false;
}

/* Binds params[k-1] to every parameter named "$k". */
static int bind_all(sqlite3_stmt *stmt, const struct efs_sql_value *params, size_t n)
{
	int count = sqlite3_bind_parameter_count(stmt);
	for (int i = 1; i <= count; i++) {
		const char *name = sqlite3_bind_parameter_name(stmt, i);
		uint64_t k;
		if (!name || name[0] != '$' || efs_parse_u64(name + 1, false, &k) < 0 || k < 1 ||
		    k > n)
			return SQLITE_RANGE;
		const struct efs_sql_value *v = &params[k - 1];
		int rc;
		switch (v->type) {
		case EFS_SQL_INT:
			rc = sqlite3_bind_int64(stmt, i, v->i);
			break;
		case EFS_SQL_TEXT:
			rc = sqlite3_bind_text(stmt, i, v->s, -1, SQLITE_STATIC);
			break;
		default:
			rc = sqlite3_bind_null(stmt, i);
			break;
		}
		if (rc != SQLITE_OK)
			return rc;
	}
	return SQLITE_OK;
}

static int sqlite_exec(void *conn, const char *sql, const struct efs_sql_value *params,
		       size_t n, efs_sql_row_fn cb, void *ctx, int64_t *changes)
{
	struct sqlite_conn *c = conn;
	int rc = SQLITE_OK, r = 0;
	sqlite3_stmt *stmt = statement(c, sql, &rc);
	if (!stmt)
		goto fail;
	rc = bind_all(stmt, params, n);
	if (rc != SQLITE_OK)
		goto fail;
	struct efs_sql_row row = {&efs_sql_sqlite_driver, stmt};
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (cb && (r = cb(ctx, &row)) < 0)
			break;
	}
	if (r == 0 && rc != SQLITE_DONE)
		goto fail;
	if (r == 0 && changes)
		*changes = sqlite3_changes64(c->db);
	goto out;
fail:
	r = map_error(rc);
	if (r != -EBUSY && r != -EEXIST)
		efs_error("sqlite: %s (in \"%.60s\")", sqlite3_errmsg(c->db), sql);
out:
	if (stmt) {
		sqlite3_reset(stmt);
		sqlite3_clear_bindings(stmt);
		if (!is_cached(c, stmt))
			sqlite3_finalize(stmt);
	}
	return r;
}

static int sqlite_exec_script(void *conn, const char *sql)
{
	struct sqlite_conn *c = conn;
	char *msg = NULL;
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
	if (rc == SQLITE_OK)
		return 0;
	efs_error("sqlite: %s", msg ? msg : sqlite3_errstr(rc));
	sqlite3_free(msg);
	return map_error(rc);
}

static int sqlite_simple(void *conn, const char *sql)
{
	struct sqlite_conn *c = conn;
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : map_error(rc);
}

/* One statement without parameters or rows, from the connection's
 * statement cache: the transaction verbs run for every group, and parsing
 * them each time cost more than a small upload's own SQL. */
static int sqlite_verb(void *conn, const char *sql)
{
	struct sqlite_conn *c = conn;
	int rc = SQLITE_OK;
	sqlite3_stmt *stmt = statement(c, sql, &rc);
	if (!stmt)
		return map_error(rc);
	rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	if (!is_cached(c, stmt))
		sqlite3_finalize(stmt);
	return rc == SQLITE_DONE ? 0 : map_error(rc);
}

static int sqlite_begin(void *conn)
{
	return sqlite_verb(conn, "BEGIN IMMEDIATE");
}

static int sqlite_commit(void *conn)
{
	return sqlite_verb(conn, "COMMIT");
}

static int sqlite_rollback(void *conn)
{
	return sqlite_verb(conn, "ROLLBACK");
}

static int sqlite_savepoint(void *conn)
{
	return sqlite_verb(conn, "SAVEPOINT efs_tx");
}

static int sqlite_savepoint_release(void *conn)
{
	return sqlite_verb(conn, "RELEASE efs_tx");
}

/* Fails ("no such savepoint") when an error such as SQLITE_FULL or
 * SQLITE_IOERR has already rolled the whole transaction back. */
static int sqlite_savepoint_rollback(void *conn)
{
	return sqlite_simple(conn, "ROLLBACK TO efs_tx; RELEASE efs_tx");
}

static int sqlite_lock_schema(void *conn)
{
	return 0; /* BEGIN IMMEDIATE already holds the write lock */
}

/* Called between transactions: a connection still inside one (a failed
 * ROLLBACK left it open) would fail every later BEGIN, so it is replaced. */
static bool sqlite_broken(void *conn)
{
	struct sqlite_conn *c = conn;
	return !sqlite3_get_autocommit(c->db);
}

static bool sqlite_col_null(const struct efs_sql_row *row, int col)
{
	return sqlite3_column_type(row->impl, col) == SQLITE_NULL;
}

static int64_t sqlite_col_int(const struct efs_sql_row *row, int col)
{
	return sqlite3_column_int64(row->impl, col);
}

static const char *sqlite_col_text(const struct efs_sql_row *row, int col)
{
	const unsigned char *t = sqlite3_column_text(row->impl, col);
	return t ? (const char *)t : "";
}

const struct efs_sql_driver efs_sql_sqlite_driver = {
	.name = "sqlite",
	.connect = sqlite_connect,
	.disconnect = sqlite_disconnect,
	.exec = sqlite_exec,
	.exec_script = sqlite_exec_script,
	.begin = sqlite_begin,
	.commit = sqlite_commit,
	.rollback = sqlite_rollback,
	.savepoint = sqlite_savepoint,
	.savepoint_release = sqlite_savepoint_release,
	.savepoint_rollback = sqlite_savepoint_rollback,
	.lock_schema = sqlite_lock_schema,
	.broken = sqlite_broken,
	.col_null = sqlite_col_null,
	.col_int = sqlite_col_int,
	.col_text = sqlite_col_text,
	.pool_size = 4,
	.group_commit = true,
};

