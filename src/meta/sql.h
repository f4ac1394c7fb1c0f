/* SPDX-License-Identifier: MIT */
/* sql.h - the SQL driver interface the SQL metadata backends implement
 * (private to src/meta).
 *
 * sql_store.c holds every query, written once with $1, $2... placeholders
 * that both SQLite and PostgreSQL accept, and runs them through a driver:
 * sqlite.c or postgres.c. Drivers own their library and the dialect
 * differences (transaction start, locking for migrations, error mapping).
 * A connection is used by one thread at a time (the store pools them).
 */
#ifndef ECHOFS_META_SQL_H
#define ECHOFS_META_SQL_H

#include "echofs/common.h"
#include "meta/backend.h"

#include <stdbool.h>
#include <stdint.h>

enum efs_sql_type { EFS_SQL_NULL, EFS_SQL_INT, EFS_SQL_TEXT };

struct efs_sql_value {
	enum efs_sql_type type;
	int64_t i;
	const char *s;
};

#define SQL_INT(v) ((struct efs_sql_value){.type = EFS_SQL_INT, .i = (int64_t)(v)})
#define SQL_TEXT(v) ((struct efs_sql_value){.type = EFS_SQL_TEXT, .s = (v)})
#define SQL_NULL ((struct efs_sql_value){.type = EFS_SQL_NULL})

/* One result row, valid only during the row callback. */
struct efs_sql_row {
	const struct efs_sql_driver *driver;
	void *impl;
};

/* Called per result row; return 0 to go on or a negative errno to stop
 * (the query then fails with that error). */
typedef int (*efs_sql_row_fn)(void *ctx, const struct efs_sql_row *row);

struct efs_sql_driver {
	const char *name;
	/* Opens a connection to @target. On failure writes one line to @err. */
	int (*connect)(const char *target, void **conn, char *err, size_t errlen);
	void (*disconnect)(void *conn);
	/* Runs one statement with @params bound to $1..$n; every result row
	 * goes to @cb (may be NULL). *changes (may be NULL) gets the number of
	 * rows changed. Drivers cache prepared statements per connection by
	 * the text's content, never its address: @sql may be built at run
	 * time, in a buffer reused for another text later. */
	int (*exec)(void *conn, const char *sql, const struct efs_sql_value *params, size_t n,
		    efs_sql_row_fn cb, void *ctx, int64_t *changes);
	/* Runs several ;-separated statements without parameters. */
	int (*exec_script)(void *conn, const char *sql);
	/* Starts a read-write transaction that holds its locks until commit. */
	int (*begin)(void *conn);
	int (*commit)(void *conn);
	int (*rollback)(void *conn);
	/* Inside a transaction: opens a savepoint; releases it (keeping what
	 * was done since); or rolls back to it and releases it. A failure of
	 * the last two means the transaction itself is lost. Needed only
	 * with @group_commit (NULL otherwise). */
	int (*savepoint)(void *conn);
	int (*savepoint_release)(void *conn);
	int (*savepoint_rollback)(void *conn);
	/* Inside a transaction: serialises schema migrations between
	 * processes starting at once. */
	int (*lock_schema)(void *conn);
	/* Tries to take the lease for background duties on a connection kept
	 * for it alone, or, with @held, confirms it still holds it: 1 held, 0
	 * held by another process, -errno. NULL: the lease is always held (a
	 * single-process store). */
	int (*lease_try)(void *conn, bool held);
	/* True when the connection is broken and must be replaced. */
	bool (*broken)(void *conn);
	/* Column accessors (0-based). */
	bool (*col_null)(const struct efs_sql_row *row, int col);
	int64_t (*col_int)(const struct efs_sql_row *row, int col);
	const char *(*col_text)(const struct efs_sql_row *row, int col); /* never NULL */
	/* How many connections the store keeps for reads (and, without
	 * @group_commit, for writes). */
	unsigned pool_size;
	/* True: the database has one writer at a time (SQLite), so write
	 * transactions go through the store's one in-process writer, which
	 * commits the queued ones together (sql_store.c). False: each runs on
	 * a pooled connection, and the server groups concurrent commits
	 * itself (PostgreSQL). */
	bool group_commit;
};

extern const struct efs_sql_driver efs_sql_sqlite_driver;
/* The PostgreSQL driver (postgres.c). */
extern const struct efs_sql_driver *const efs_sql_postgres_driver;

static inline int64_t efs_sql_int(const struct efs_sql_row *row, int col)
{
	return row->driver->col_int(row, col);
}

static inline const char *efs_sql_text(const struct efs_sql_row *row, int col)
{
	return row->driver->col_text(row, col);
}

static inline bool efs_sql_null(const struct efs_sql_row *row, int col)
{
	return row->driver->col_null(row, col);
}

/* The SQL store: opens @driver connections to @target and migrates. */
int efs_sql_store_open(const struct efs_sql_driver *driver, const char *target, void **impl,
		       char *err, size_t errlen);
extern const struct efs_meta_ops efs_sql_store_ops;

#endif
