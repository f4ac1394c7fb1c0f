/* SPDX-License-Identifier: MIT */
/* sql_store.c - the metadata store over an SQL driver: connection pool,
 * transactions with retry, migrations, and every query, written once. */
#include "echofs/log.h"
#include "echofs/util.h"
#include "meta/schema.h"
#include "meta/sql.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POOL_MAX 16
#define ACQUIRE_TIMEOUT_MS 5000
#define TX_ATTEMPTS 5

struct sql_store {
	const struct efs_sql_driver *driver;
	char *target;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned size;
	void *conns[POOL_MAX]; /* NULL: not connected (yet, or after a failure) */
	bool busy[POOL_MAX];
};

/* A connection borrowed from the pool for one operation. */
struct sql_conn {
	struct sql_store *store;
	unsigned slot;
	void *conn;
};

/* ---- pool ----------------------------------------------------------- */

static int conn_acquire(struct sql_store *s, struct sql_conn *c)
{
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += ACQUIRE_TIMEOUT_MS / 1000;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		for (unsigned i = 0; i < s->size; i++) {
			if (s->busy[i])
				continue;
			s->busy[i] = true;
			c->store = s;
			c->slot = i;
			c->conn = s->conns[i];
			pthread_mutex_unlock(&s->lock);
			if (!c->conn) {
				char err[256];
				int r = s->driver->connect(s->target, &c->conn, err, sizeof(err));
				if (r < 0) {
					efs_warn("metadata store unreachable: %s", err);
					pthread_mutex_lock(&s->lock);
					s->busy[i] = false;
					pthread_cond_signal(&s->cond);
					pthread_mutex_unlock(&s->lock);
					return -EAGAIN;
				}
				s->conns[i] = c->conn;
			}
			return 0;
		}
		if (pthread_cond_timedwait(&s->cond, &s->lock, &deadline) != 0) {
			pthread_mutex_unlock(&s->lock);
			return -EAGAIN;
		}
	}
}

static void conn_release(struct sql_conn *c)
{
	struct sql_store *s = c->store;
	if (s->driver->broken(c->conn)) {
		s->driver->disconnect(c->conn);
		c->conn = NULL;
	}
	pthread_mutex_lock(&s->lock);
	s->conns[c->slot] = c->conn;
	s->busy[c->slot] = false;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* ---- statements and transactions ------------------------------------ */

static int q(struct sql_conn *c, const char *sql, const struct efs_sql_value *params, size_t n,
	     efs_sql_row_fn cb, void *ctx, int64_t *changes)
{
	return c->store->driver->exec(c->conn, sql, params, n, cb, ctx, changes);
}

#define Q(c, sql, cb, ctx, changes, ...)                                                          \
	q((c), (sql), (const struct efs_sql_value[]){__VA_ARGS__},                                \
	  sizeof((const struct efs_sql_value[]){__VA_ARGS__}) / sizeof(struct efs_sql_value),     \
	  (cb), (ctx), (changes))

typedef int (*tx_fn)(struct sql_conn *c, void *ctx);

/* Runs @fn inside a transaction, retrying when the store reports a
 * conflict (-EBUSY: SQLite busy, PostgreSQL serialization failure). */
static int run_tx(struct sql_store *s, tx_fn fn, void *ctx)
{
	struct sql_conn c;
	int r = conn_acquire(s, &c);
	if (r < 0)
		return r;
	for (int attempt = 0; attempt < TX_ATTEMPTS; attempt++) {
		r = s->driver->begin(c.conn);
		if (r == 0) {
			r = fn(&c, ctx);
			if (r == 0)
				r = s->driver->commit(c.conn);
			if (r < 0)
				s->driver->rollback(c.conn);
		}
		if (r != -EBUSY)
			break;
		efs_sleep_ms(5 << attempt);
	}
	conn_release(&c);
	return r == -EBUSY ? -EAGAIN : r;
}

/* Runs one statement outside an explicit transaction. */
static int run_one(struct sql_store *s, const char *sql, const struct efs_sql_value *params,
		   size_t n, efs_sql_row_fn cb, void *ctx, int64_t *changes)
{
	struct sql_conn c;
	int r = conn_acquire(s, &c);
	if (r < 0)
		return r;
	for (int attempt = 0; attempt < TX_ATTEMPTS; attempt++) {
		r = q(&c, sql, params, n, cb, ctx, changes);
		if (r != -EBUSY)
			break;
		efs_sleep_ms(5 << attempt);
	}
	conn_release(&c);
	return r == -EBUSY ? -EAGAIN : r;
}

#define ONE(s, sql, cb, ctx, changes, ...)                                                        \
	run_one((s), (sql), (const struct efs_sql_value[]){__VA_ARGS__},                          \
		sizeof((const struct efs_sql_value[]){__VA_ARGS__}) / sizeof(struct efs_sql_value), \
		(cb), (ctx), (changes))

static int row_int(void *ctx, const struct efs_sql_row *row)
{
	*(int64_t *)ctx = efs_sql_int(row, 0);
	return 0;
}

/* ---- migrations ------------------------------------------------------ */

static int migrate_tx(struct sql_conn *c, void *ctx)
{
	const struct efs_sql_driver *d = c->store->driver;
	int64_t version = 0;
	int r;

	if ((r = d->lock_schema(c->conn)) < 0)
		return r;
	r = d->exec_script(c->conn, "CREATE TABLE IF NOT EXISTS efs_schema ("
				    "  version INTEGER PRIMARY KEY,"
				    "  applied_at BIGINT NOT NULL)");
	if (r < 0)
		return r;
	r = q(c, "SELECT COALESCE(MAX(version), 0) FROM efs_schema", NULL, 0, row_int, &version,
	      NULL);
	if (r < 0)
		return r;
	for (size_t i = 0; i < efs_migration_count; i++) {
		const struct efs_migration *mig = &efs_migrations[i];
		if (mig->version <= version)
			continue;
		if ((r = d->exec_script(c->conn, mig->sql)) < 0)
			return r;
		r = Q(c, "INSERT INTO efs_schema (version, applied_at) VALUES ($1, $2)", NULL,
		      NULL, NULL, SQL_INT(mig->version), SQL_INT(efs_now_ms()));
		if (r < 0)
			return r;
		efs_info("metadata schema migrated to version %d", mig->version);
	}
	*(int64_t *)ctx = version;
	return 0;
}

static void store_close(void *impl)
{
	struct sql_store *s = impl;
	if (!s)
		return;
	for (unsigned i = 0; i < s->size; i++)
		if (s->conns[i])
			s->driver->disconnect(s->conns[i]);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s->target);
	free(s);
}

int efs_sql_store_open(const struct efs_sql_driver *driver, const char *target, void **impl,
		       char *err, size_t errlen)
{
	struct sql_store *s = calloc(1, sizeof(*s));
	int64_t old_version = 0;
	int r;

	if (!s || !(s->target = strdup(target))) {
		free(s);
		return -ENOMEM;
	}
	s->driver = driver;
	s->size = EFS_MIN(driver->pool_size, POOL_MAX);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);

	/* Connect one now, so a bad target fails at start with its reason. */
	r = driver->connect(target, &s->conns[0], err, errlen);
	if (r < 0)
		goto fail;
	r = run_tx(s, migrate_tx, &old_version);
	if (r < 0) {
		snprintf(err, errlen, "%s: schema migration failed: %s", driver->name,
			 strerror(-r));
		goto fail;
	}
	*impl = s;
	return 0;
fail:
	store_close(s);
	return r;
}

/* ---- operations ----------------------------------------------------- */

static const char *store_backend_name(void *impl)
{
	return ((struct sql_store *)impl)->driver->name;
}

static int store_schema_version(void *impl, int *out)
{
	int64_t v = 0;
	int r = run_one(impl, "SELECT COALESCE(MAX(version), 0) FROM efs_schema", NULL, 0,
			row_int, &v, NULL);
	if (r == 0)
		*out = (int)v;
	return r;
}

static int store_ping(void *impl)
{
	int64_t one = 0;
	int r = run_one(impl, "SELECT 1", NULL, 0, row_int, &one, NULL);
	return r < 0 ? -EAGAIN : 0;
}

static int store_worker_register(void *impl, const struct efs_worker_info *w)
{
	return ONE(impl,
		   "INSERT INTO workers (worker_id, url, capacity_bytes, free_bytes, chunk_count,"
		   "  registered_at, last_heartbeat)"
		   " VALUES ($1, $2, $3, $4, $5, $6, $7)"
		   " ON CONFLICT (worker_id) DO UPDATE SET url = excluded.url,"
		   "  capacity_bytes = excluded.capacity_bytes, free_bytes = excluded.free_bytes,"
		   "  chunk_count = excluded.chunk_count, last_heartbeat = excluded.last_heartbeat",
		   NULL, NULL, NULL, SQL_TEXT(w->worker_id), SQL_TEXT(w->url),
		   SQL_INT(w->capacity_bytes), SQL_INT(w->free_bytes), SQL_INT(w->chunk_count),
		   SQL_INT(w->registered_at_ms), SQL_INT(w->last_heartbeat_ms));
}

static int store_worker_retire_url(void *impl, const char *url, const char *keep_id)
{
	int64_t changed = 0;
	int r = ONE(impl,
		    "UPDATE workers SET last_heartbeat = 0"
		    " WHERE url = $1 AND worker_id <> $2 AND last_heartbeat <> 0",
		    NULL, NULL, &changed, SQL_TEXT(url), SQL_TEXT(keep_id));
	return r < 0 ? r : (int)changed;
}

static int store_worker_heartbeat(void *impl, const char *worker_id, uint64_t capacity_bytes,
				  uint64_t free_bytes, uint64_t chunk_count, int64_t now_ms)
{
	int64_t changed = 0;
	int r = ONE(impl,
		    "UPDATE workers SET capacity_bytes = $2, free_bytes = $3, chunk_count = $4,"
		    "  last_heartbeat = $5 WHERE worker_id = $1",
		    NULL, NULL, &changed, SQL_TEXT(worker_id), SQL_INT(capacity_bytes),
		    SQL_INT(free_bytes), SQL_INT(chunk_count), SQL_INT(now_ms));
	if (r < 0)
		return r;
	return changed > 0 ? 0 : -ENOENT;
}

#define WORKER_COLUMNS                                                                            \
	"worker_id, url, capacity_bytes, free_bytes, chunk_count, registered_at, last_heartbeat"

static void worker_from_row(const struct efs_sql_row *row, struct efs_worker_info *w)
{
	efs_strlcpy(w->worker_id, efs_sql_text(row, 0), sizeof(w->worker_id));
	efs_strlcpy(w->url, efs_sql_text(row, 1), sizeof(w->url));
	w->capacity_bytes = (uint64_t)efs_sql_int(row, 2);
	w->free_bytes = (uint64_t)efs_sql_int(row, 3);
	w->chunk_count = (uint64_t)efs_sql_int(row, 4);
	w->registered_at_ms = efs_sql_int(row, 5);
	w->last_heartbeat_ms = efs_sql_int(row, 6);
}

struct worker_one {
	struct efs_worker_info *out;
	bool found;
};

static int row_worker_one(void *ctx, const struct efs_sql_row *row)
{
	struct worker_one *one = ctx;
	worker_from_row(row, one->out);
	one->found = true;
	return 0;
}

static int store_worker_get(void *impl, const char *worker_id, struct efs_worker_info *out)
{
	struct efs_worker_info tmp;
	struct worker_one one = {&tmp, false};
	int r = ONE(impl, "SELECT " WORKER_COLUMNS " FROM workers WHERE worker_id = $1",
		    row_worker_one, &one, NULL, SQL_TEXT(worker_id));
	if (r < 0)
		return r;
	if (!one.found)
		return -ENOENT;
	*out = tmp;
	return 0;
}

struct worker_many {
	struct efs_worker_info *items;
	size_t count, alloc;
};

static int row_worker_many(void *ctx, const struct efs_sql_row *row)
{
	struct worker_many *many = ctx;
	if (many->count == many->alloc) {
		size_t grow = many->alloc ? many->alloc * 2 : 8;
		struct efs_worker_info *p = realloc(many->items, grow * sizeof(*p));
		if (!p)
			return -ENOMEM;
		many->items = p;
		many->alloc = grow;
	}
	worker_from_row(row, &many->items[many->count++]);
	return 0;
}

static int store_worker_list(void *impl, struct efs_worker_info **out, size_t *count)
{
	struct worker_many many = {0};
	int r = run_one(impl, "SELECT " WORKER_COLUMNS " FROM workers ORDER BY worker_id", NULL,
			0, row_worker_many, &many, NULL);
	if (r < 0) {
		free(many.items);
		return r;
	}
	*out = many.items;
	*count = many.count;
	return 0;
}

const struct efs_meta_ops efs_sql_store_ops = {
	.backend_name = store_backend_name,
	.close = store_close,
	.schema_version = store_schema_version,
	.ping = store_ping,
	.worker_register = store_worker_register,
	.worker_retire_url = store_worker_retire_url,
	.worker_heartbeat = store_worker_heartbeat,
	.worker_get = store_worker_get,
	.worker_list = store_worker_list,
};
