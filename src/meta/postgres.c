/* SPDX-License-Identifier: MIT */
/* postgres.c - the PostgreSQL driver of the SQL metadata store (libpq).
 *
 * Statements are prepared once per connection, found again by the SQL
 * text's content (a hash, then a full compare) and named after their cache
 * slot, and run with text parameters. Transactions run at READ
 * COMMITTED: every read-modify-write in sql_*.c starts by writing (and so
 * locking) the row it depends on, which is what makes that level enough
 * for reference counts. Serialization failures and deadlocks come back as
 * -EBUSY (the store retries the transaction); a broken connection as
 * -EAGAIN, and the pool replaces it, so a restarted PostgreSQL is picked
 * up again without restarting the master. Migrations run under a
 * transaction-level advisory lock, so masters starting together take
 * turns.
 */
#include "echofs/hash.h"
#include "echofs/log.h"
#include "echofs/util.h"
#include "meta/sql.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STMT_CACHE 128
#define STACK_PARAMS 16
#define MAX_PARAMS 1024

struct pg_conn {
	PGconn *db;
	struct {
		uint64_t hash;
		char *sql; /* owned copy; prepared as "s<slot>" */
	} prepared[STMT_CACHE];
	size_t prepared_count;
	bool broken;
};

struct pg_row {
	PGresult *res;
	int row;
};

/* Maps a failed result to -errno, logging what is worth a line. */
static int result_error(struct pg_conn *c, PGresult *res, const char *sql)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (PQstatus(c->db) != CONNECTION_OK) {
		c->broken = true;
		efs_warn("postgres: connection lost: %s", PQerrorMessage(c->db));
		return -EAGAIN;
	}
	if (state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
		      strcmp(state, "55P03") == 0))
		return -EBUSY; /* serialization failure, deadlock, lock timeout */
	if (state && strcmp(state, "23505") == 0)
		return -EEXIST;
	if (state && strncmp(state, "08", 2) == 0) {
		c->broken = true;
		return -EAGAIN;
	}
	if (state && (strcmp(state, "57P01") == 0 || strcmp(state, "57P03") == 0)) {
		c->broken = true; /* admin shutdown, cannot connect now */
		return -EAGAIN;
	}
	efs_error("postgres: %s (in \"%.60s\")",
		  res ? PQresultErrorMessage(res) : PQerrorMessage(c->db), sql);
	return -EIO;
}

static void pg_disconnect(void *conn)
{
	struct pg_conn *c = conn;
	if (!c)
		return;
	for (size_t i = 0; i < c->prepared_count; i++)
		free(c->prepared[i].sql);
	PQfinish(c->db);
	free(c);
}

static int pg_connect(const char *target, void **conn, char *err, size_t errlen)
{
	struct pg_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	/* Defaults first: anything the URL says overrides them. A dead peer
	 * is noticed in seconds, not after the kernel's 2 h keepalive. */
	static const char *const keywords[] = {"connect_timeout", "keepalives_idle",
					       "keepalives_interval", "keepalives_count",
					       "dbname", NULL};
	const char *values[] = {"5", "10", "5", "3", target, NULL};
	c->db = PQconnectdbParams(keywords, values, 1);
	if (!c->db || PQstatus(c->db) != CONNECTION_OK) {
		const char *msg = c->db ? PQerrorMessage(c->db) : "out of memory";
		char line[256];
		efs_strlcpy(line, msg, sizeof(line));
		for (char *p = line; *p; p++)
			if (*p == '\n')
				*p = ' ';
		snprintf(err, errlen, "cannot connect to PostgreSQL: %s", line);
		pg_disconnect(c);
		return -EAGAIN;
	}
	/* Quiet notices ("relation already exists, skipping"). */
	PGresult *res = PQexec(c->db, "SET client_min_messages = warning");
	PQclear(res);
	res = PQexec(c->db, "SET statement_timeout = '30s'");
	PQclear(res);
	*conn = c;
	return 0;
}

/* Prepares @sql on this connection once and writes its statement name to
 * @name, or "" when it is to run unnamed (the cache is full, or the copy
 * of the text cannot be made). */
static int prepare(struct pg_conn *c, const char *sql, char *name, size_t size)
{
	size_t len = strlen(sql);
	uint64_t hash = efs_fnv1a(EFS_FNV1A_INIT, sql, len);
	for (size_t i = 0; i < c->prepared_count; i++) {
		if (c->prepared[i].hash == hash && strcmp(c->prepared[i].sql, sql) == 0) {
			snprintf(name, size, "s%zu", i);
			return 0;
		}
	}
	name[0] = '\0';
	if (c->prepared_count >= STMT_CACHE)
		return 0;
	char *copy = malloc(len + 1);
	if (!copy)
		return 0;
	memcpy(copy, sql, len + 1);
	snprintf(name, size, "s%zu", c->prepared_count);
	PGresult *res = PQprepare(c->db, name, sql, 0, NULL);
	int r = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : result_error(c, res, sql);
	PQclear(res);
	if (r < 0) {
		free(copy);
		return r;
	}
	c->prepared[c->prepared_count].hash = hash;
	c->prepared[c->prepared_count].sql = copy;
	c->prepared_count++;
	return 0;
}

static int pg_exec(void *conn, const char *sql, const struct efs_sql_value *params, size_t n,
		   efs_sql_row_fn cb, void *ctx, int64_t *changes)
{
	struct pg_conn *c = conn;
	char stack_texts[STACK_PARAMS][24];
	const char *stack_values[STACK_PARAMS];
	char (*texts)[24] = stack_texts;
	const char **values = stack_values;
	char name[32];
	PGresult *res = NULL;
	int r = 0;

	if (n > MAX_PARAMS)
		return -E2BIG;
	if (n > STACK_PARAMS) {
		/* long IN lists (a report's slice, sql_repair.c) */
		texts = malloc(n * sizeof(*texts));
		values = malloc(n * sizeof(*values));
		if (!texts || !values) {
			r = -ENOMEM;
			goto out;
		}
	}
	for (size_t i = 0; i < n; i++) {
		switch (params[i].type) {
		case EFS_SQL_INT:
			snprintf(texts[i], sizeof(texts[i]), "%" PRId64, params[i].i);
			values[i] = texts[i];
			break;
		case EFS_SQL_TEXT:
			values[i] = params[i].s;
			break;
		default:
			values[i] = NULL;
			break;
		}
	}
	if ((r = prepare(c, sql, name, sizeof(name))) < 0)
		goto out;
	if (name[0])
		res = PQexecPrepared(c->db, name, (int)n, values, NULL, NULL, 0);
	else
		res = PQexecParams(c->db, sql, (int)n, NULL, values, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		r = result_error(c, res, sql);
		goto out;
	}
	if (cb) {
		struct pg_row row = {res, 0};
		struct efs_sql_row handle = {efs_sql_postgres_driver, &row};
		int rows = PQntuples(res);
		for (row.row = 0; row.row < rows && r == 0; row.row++)
			r = cb(ctx, &handle);
	}
	if (r == 0 && changes) {
		const char *t = PQcmdTuples(res);
		*changes = t && *t ? strtoll(t, NULL, 10) : 0;
	}
out:
	PQclear(res);
	if (texts != stack_texts) {
		free(texts);
		free(values);
	}
	return r;
}

static int simple(struct pg_conn *c, const char *sql)
{
	PGresult *res = PQexec(c->db, sql);
	ExecStatusType st = PQresultStatus(res);
	int r = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) ? 0 : result_error(c, res, sql);
	PQclear(res);
	return r;
}

static int pg_exec_script(void *conn, const char *sql)
{
	return simple(conn, sql); /* PQexec runs ;-separated statements */
}

static int pg_begin(void *conn)
{
	return simple(conn, "BEGIN ISOLATION LEVEL READ COMMITTED");
}

static int pg_commit(void *conn)
{
	return simple(conn, "COMMIT");
}

static int pg_rollback(void *conn)
{
	struct pg_conn *c = conn;
	if (PQstatus(c->db) != CONNECTION_OK)
		return -EAGAIN;
	return simple(conn, "ROLLBACK");
}

static int pg_lock_schema(void *conn)
{
	return simple(conn, "SELECT pg_advisory_xact_lock(4242424242)");
}

/* The lease is a session-level advisory lock: PostgreSQL drops it when
 * this connection ends, however the master dies. */
static int pg_lease_try(void *conn, bool held)
{
	struct pg_conn *c = conn;
	/* Held: the connection being alive is proof enough (asking again
	 * would only raise the lock's count). */
	PGresult *res = PQexec(c->db, held ? "SELECT true" : "SELECT pg_try_advisory_lock(4242424243)");
	int r;
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		r = result_error(c, res, "pg_try_advisory_lock");
	else
		r = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return r;
}

/* Called between uses. An idle connection's socket is readable only when
 * the server spoke on its own: almost always the goodbye of a restart or
 * an admin's pg_terminate_backend, then EOF (a notice while idle is rare
 * and costs only a reconnect). Such a connection is dropped now, before a
 * statement fails on it. */
static bool pg_broken(void *conn)
{
	struct pg_conn *c = conn;
	if (c->broken || PQstatus(c->db) != CONNECTION_OK)
		return true;
	struct pollfd pfd = {.fd = PQsocket(c->db), .events = POLLIN};
	if (pfd.fd < 0 || poll(&pfd, 1, 0) != 0)
		c->broken = true;
	return c->broken;
}

static bool pg_col_null(const struct efs_sql_row *row, int col)
{
	const struct pg_row *r = row->impl;
	return PQgetisnull(r->res, r->row, col);
}

static int64_t pg_col_int(const struct efs_sql_row *row, int col)
{
	const struct pg_row *r = row->impl;
	return strtoll(PQgetvalue(r->res, r->row, col), NULL, 10);
}

static const char *pg_col_text(const struct efs_sql_row *row, int col)
{
	const struct pg_row *r = row->impl;
	return PQgetvalue(r->res, r->row, col);
}

static const struct efs_sql_driver postgres_driver = {
	.name = "postgres",
	.connect = pg_connect,
	.disconnect = pg_disconnect,
	.exec = pg_exec,
	.exec_script = pg_exec_script,
	.begin = pg_begin,
	.commit = pg_commit,
	.rollback = pg_rollback,
	.lock_schema = pg_lock_schema,
	.lease_try = pg_lease_try,
	.broken = pg_broken,
	.col_null = pg_col_null,
	.col_int = pg_col_int,
	.col_text = pg_col_text,
	.pool_size = 8,
};

const struct efs_sql_driver *const efs_sql_postgres_driver = &postgres_driver;
