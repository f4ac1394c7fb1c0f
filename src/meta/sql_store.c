/* SPDX-License-Identifier: MIT */
/* sql_store.c - the metadata store over an SQL driver: connection pool,
 * transactions with retry and group commit, migrations.
 *
 * Group commit (drivers with group_commit, i.e. SQLite): a database with
 * one writer at a time gains nothing from several connections competing
 * for its lock, and each commit costs an fsync. So every write
 * transaction of this process is queued for one writer connection. The
 * first waiting caller that finds no group running leads: it takes what
 * is queued, runs it as one BEGIN IMMEDIATE ... COMMIT with each caller's
 * work in its own savepoint, and wakes the callers with their results.
 * Callers wait on a condition variable, never in a sleep-and-poll loop;
 * while one group commits, the next one gathers. Reads stay on the pool
 * and run beside the writer (WAL). */
#include "echofs/log.h"
#include "echofs/ticker.h"
#include "echofs/util.h"
#include "meta/schema.h"
#include "meta/sql_store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ACQUIRE_TIMEOUT_MS 5000
#define TX_ATTEMPTS 5

/* ---- pool ----------------------------------------------------------- */

/* Logs an outage of the store once, and its end. Called with s->lock held. */
static void note_connect_locked(struct sql_store *s, int r, const char *err)
{
	if (r < 0 && !s->unreachable)
		efs_warn("metadata store unreachable: %s (answering 503 until it is back)", err);
	else if (r == 0 && s->unreachable)
		efs_info("metadata store reachable again");
	s->unreachable = r < 0;
}

static int conn_acquire(struct sql_store *s, struct sql_conn *c)
{
	struct timespec deadline; /* on CLOCK_MONOTONIC: s->cond is set up so */
	efs_ticker_deadline(ACQUIRE_TIMEOUT_MS, &deadline);

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
			/* A connection that died while idle (the server
			 * restarted) is replaced before it fails a statement. */
			if (c->conn && s->driver->broken(c->conn)) {
				s->driver->disconnect(c->conn);
				c->conn = NULL;
				pthread_mutex_lock(&s->lock);
				s->conns[i] = NULL;
				pthread_mutex_unlock(&s->lock);
			}
			if (!c->conn) {
				char err[256];
				int r = s->driver->connect(s->target, &c->conn, err, sizeof(err));
				pthread_mutex_lock(&s->lock);
				note_connect_locked(s, r, err);
				if (r < 0) {
					s->busy[i] = false;
					pthread_cond_signal(&s->cond);
					pthread_mutex_unlock(&s->lock);
					return -EAGAIN;
				}
				s->conns[i] = c->conn;
				pthread_mutex_unlock(&s->lock);
			}
			return 0;
		}
		if (pthread_cond_timedwait(&s->cond, &s->lock, &deadline) != 0) {
			pthread_mutex_unlock(&s->lock);
			return -EAGAIN;
		}
	}
}

/* Gives the connection back as it is: conn_acquire checks it (broken in
 * use or ended while idle) before the next use, so it is checked once. */
static void conn_release(struct sql_conn *c)
{
	struct sql_store *s = c->store;
	pthread_mutex_lock(&s->lock);
	s->conns[c->slot] = c->conn;
	s->busy[c->slot] = false;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* ---- statements and transactions ------------------------------------ */

int sql_q(struct sql_conn *c, const char *sql, const struct efs_sql_value *params, size_t n,
	  efs_sql_row_fn cb, void *ctx, int64_t *changes)
{
	return c->store->driver->exec(c->conn, sql, params, n, cb, ctx, changes);
}

/* ---- group commit ---------------------------------------------------- */

/* Opens the writer's connection if it has none. Leader only. */
static int writer_connect(struct sql_store *s)
{
	char err[256];
	if (s->writer.conn)
		return 0;
	int r = s->driver->connect(s->target, &s->writer.conn, err, sizeof(err));
	if (r < 0)
		s->writer.conn = NULL;
	pthread_mutex_lock(&s->lock);
	note_connect_locked(s, r, err);
	pthread_mutex_unlock(&s->lock);
	return r < 0 ? -EAGAIN : 0;
}

/* Runs @n queued transactions as one database transaction, each in its
 * own savepoint, and commits once. Leaves each request's outcome in its
 * result, or sets its retry flag (run it in a later group). A transaction
 * lost before its COMMIT is blamed on the one member that lost it; the
 * others run again without using up their attempts. Returns how many were
 * committed. Leader only, without the writer's lock. */
static size_t group_run(struct sql_store *s, struct sql_tx_request **batch, size_t n)
{
	const struct efs_sql_driver *d = s->driver;
	struct sql_conn c = {s, 0, NULL};
	size_t ran = 0, kept = 0, culprit = 0;
	bool lost = false;
	int fate = writer_connect(s);

	c.conn = s->writer.conn;
	/* Another process holds the database (past the driver's own busy
	 * wait): try again, TX_ATTEMPTS times in all. */
	for (int attempt = 0; fate == 0; attempt++) {
		fate = d->begin(c.conn);
		if (fate != -EBUSY || attempt + 1 == TX_ATTEMPTS)
			break;
		fate = 0;
		efs_sleep_ms(5 << attempt);
	}
	if (fate < 0) {
		for (size_t i = 0; i < n; i++)
			batch[i]->result = fate == -EBUSY ? -EAGAIN : fate;
		goto out;
	}
	/* A savepoint that cannot be released or rolled back means the whole
	 * transaction is gone (SQLite rolls it back itself on an I/O error or
	 * a full disk): nothing more runs in it. */
	while (ran < n && !lost) {
		struct sql_tx_request *q = batch[ran];
		culprit = ran;
		if (d->savepoint(c.conn) < 0) {
			lost = true;
			break;
		}
		ran++;
		q->result = q->fn(&c, q->ctx);
		lost = (q->result == 0 ? d->savepoint_release(c.conn)
				       : d->savepoint_rollback(c.conn)) < 0;
	}
	fate = lost ? -EAGAIN : d->commit(c.conn);
	if (fate < 0)
		d->rollback(c.conn);
	for (size_t i = 0; i < n; i++) {
		struct sql_tx_request *q = batch[i];
		if (i < ran && q->result < 0)
			q->retry = q->result == -EBUSY; /* its own error; its work undone */
		else if (i < ran && fate == 0)
			kept++;
		else if (lost && i != culprit)
			q->retry = q->blameless = true; /* lost with another's transaction */
		else if (i >= ran || lost || fate == -EBUSY)
			q->retry = true;
		else
			q->result = fate; /* the COMMIT failed, and so did all it held */
	}
out:
	if (s->writer.conn && d->broken(s->writer.conn)) {
		d->disconnect(s->writer.conn);
		s->writer.conn = NULL;
	}
	return kept;
}

/* Hands the outcomes of a group to its callers, and queues the ones to
 * run again first, in their order. Called with the writer's lock held. */
static void group_finish(struct sql_writer *w, struct sql_tx_request **batch, size_t n,
			 size_t kept)
{
	struct sql_tx_request *again = NULL, *last = NULL;
	size_t again_count = 0;

	for (size_t i = 0; i < n; i++) {
		struct sql_tx_request *q = batch[i];
		if (q->retry && (q->blameless || ++q->attempts < TX_ATTEMPTS)) {
			q->retry = q->blameless = false;
			q->next = NULL;
			if (last)
				last->next = q;
			else
				again = q;
			last = q;
			again_count++;
			continue;
		}
		if (q->retry)
			q->result = -EAGAIN; /* stays busy */
		q->done = true;
		pthread_cond_signal(&q->wake); /* under the lock: it cannot leave before */
	}
	if (again) {
		last->next = w->head;
		if (!w->head)
			w->tail = last;
		w->head = again;
		w->queued += again_count;
	}
	if (kept) {
		w->groups_committed++;
		w->txs_committed += kept;
	}
}

/* Queues @fn for the writer and waits for the COMMIT that holds it (or for
 * its error), leading groups whenever no other caller does. */
static int run_grouped(struct sql_store *s, sql_tx_fn fn, void *ctx)
{
	struct sql_writer *w = &s->writer;
	struct sql_tx_request req = {.fn = fn, .ctx = ctx};
	struct sql_tx_request *batch[SQL_GROUP_MAX];

	pthread_cond_init(&req.wake, NULL);
	pthread_mutex_lock(&w->lock);
	if (w->tail)
		w->tail->next = &req;
	else
		w->head = &req;
	w->tail = &req;
	w->queued++;
	while (!req.done) {
		if (w->running) {
			pthread_cond_wait(&req.wake, &w->lock);
			continue;
		}
		w->running = true;
		size_t n = 0;
		while (w->head && n < SQL_GROUP_MAX) {
			batch[n++] = w->head;
			w->head = w->head->next;
		}
		if (!w->head)
			w->tail = NULL;
		w->queued -= n;
		pthread_mutex_unlock(&w->lock);
		size_t kept = group_run(s, batch, n);
		pthread_mutex_lock(&w->lock);
		group_finish(w, batch, n, kept);
		w->running = false;
		if (w->head && w->head != &req)
			pthread_cond_signal(&w->head->wake);
	}
	pthread_mutex_unlock(&w->lock);
	pthread_cond_destroy(&req.wake);
	return req.result;
}

/* ---- one transaction per connection ------------------------------------ */

/* Runs @fn inside a transaction, retrying when the store reports a
 * conflict (-EBUSY: SQLite busy, PostgreSQL serialization failure). */
int sql_run_tx(struct sql_store *s, sql_tx_fn fn, void *ctx)
{
	if (s->driver->group_commit)
		return run_grouped(s, fn, ctx);
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
int sql_run_one(struct sql_store *s, const char *sql, const struct efs_sql_value *params,
		size_t n, efs_sql_row_fn cb, void *ctx, int64_t *changes)
{
	struct sql_conn c;
	int r = conn_acquire(s, &c);
	if (r < 0)
		return r;
	for (int attempt = 0; attempt < TX_ATTEMPTS; attempt++) {
		r = sql_q(&c, sql, params, n, cb, ctx, changes);
		if (r != -EBUSY)
			break;
		efs_sleep_ms(5 << attempt);
	}
	conn_release(&c);
	return r == -EBUSY ? -EAGAIN : r;
}

struct write_one {
	const char *sql;
	const struct efs_sql_value *params;
	size_t n;
	efs_sql_row_fn cb;
	void *ctx;
	int64_t *changes;
};

static int write_one_tx(struct sql_conn *c, void *arg)
{
	struct write_one *w = arg;
	return sql_q(c, w->sql, w->params, w->n, w->cb, w->ctx, w->changes);
}

int sql_write_one(struct sql_store *s, const char *sql, const struct efs_sql_value *params,
		  size_t n, efs_sql_row_fn cb, void *ctx, int64_t *changes)
{
	struct write_one w = {sql, params, n, cb, ctx, changes};
	if (!s->driver->group_commit)
		return sql_run_one(s, sql, params, n, cb, ctx, changes);
	return sql_run_tx(s, write_one_tx, &w);
}

int sql_row_int(void *ctx, const struct efs_sql_row *row)
{
	*(int64_t *)ctx = efs_sql_int(row, 0);
	return 0;
}

/* ---- row collectors --------------------------------------------------- */

void *sql_rows_push(struct sql_rows *r)
{
	if (r->count == r->alloc) {
		if (r->fixed)
			return NULL;
		size_t grow = r->alloc ? r->alloc * 2 : 16;
		if (grow > SQL_ROWS_MAX_BYTES / r->item_size)
			return NULL;
		void *p = realloc(r->items, grow * r->item_size);
		if (!p)
			return NULL;
		r->items = p;
		r->alloc = grow;
	}
	void *item = (char *)r->items + r->count * r->item_size;
	memset(item, 0, r->item_size);
	r->count++;
	return item;
}

int sql_rows_full(const struct sql_rows *r)
{
	return r->fixed ? 0 : -ENOMEM;
}

void *sql_rows_last(const struct sql_rows *r)
{
	return r->count ? (char *)r->items + (r->count - 1) * r->item_size : NULL;
}

int sql_rows_finish(struct sql_rows *r, int result, void **out, size_t *count)
{
	if (result < 0) {
		if (!r->fixed)
			free(r->items);
		r->items = NULL;
		return result;
	}
	if (!r->fixed)
		*out = r->items;
	*count = r->count;
	r->items = NULL;
	return result;
}

/* ---- migrations ------------------------------------------------------ */

/* What opening the store learns: the version it found, the cluster id. */
struct migrate_result {
	int64_t old_version;
	char cluster_id[EFS_CLUSTER_ID_LEN + 1];
};

static int row_cluster_id(void *ctx, const struct efs_sql_row *row)
{
	efs_strlcpy(ctx, efs_sql_text(row, 0), EFS_CLUSTER_ID_LEN + 1);
	return 0;
}

/* Draws the cluster id unless the store has one, and reads it back: in the
 * migration's transaction, under its schema lock, so masters opening one
 * store at once all read the id the first of them wrote. */
static int cluster_id_tx(struct sql_conn *c, char *out)
{
	char fresh[EFS_CLUSTER_ID_LEN + 1];
	int r = efs_random_hex(fresh, EFS_CLUSTER_ID_LEN / 2);
	if (r < 0)
		return r;
	r = SQL_Q(c,
		  "INSERT INTO cluster (singleton, cluster_id) VALUES (1, $1)"
		  " ON CONFLICT (singleton) DO NOTHING",
		  NULL, NULL, NULL, SQL_TEXT(fresh));
	if (r < 0)
		return r;
	out[0] = '\0';
	r = sql_q(c, "SELECT cluster_id FROM cluster WHERE singleton = 1", NULL, 0,
		  row_cluster_id, out, NULL);
	if (r < 0)
		return r;
	return efs_cluster_id_valid(out) ? 0 : -EIO;
}

static int migrate_tx(struct sql_conn *c, void *ctx)
{
	const struct efs_sql_driver *d = c->store->driver;
	struct migrate_result *result = ctx;
	int64_t version = 0;
	int r;

	if ((r = d->lock_schema(c->conn)) < 0)
		return r;
	r = d->exec_script(c->conn, "CREATE TABLE IF NOT EXISTS efs_schema ("
				    "  version INTEGER PRIMARY KEY,"
				    "  applied_at BIGINT NOT NULL)");
	if (r < 0)
		return r;
	r = sql_q(c, "SELECT COALESCE(MAX(version), 0) FROM efs_schema", NULL, 0, sql_row_int,
		  &version, NULL);
	if (r < 0)
		return r;
	/* A newer binary migrated this store: nothing is applied or written
	 * (the cluster id included), the caller refuses to start. */
	if (version > efs_schema_latest()) {
		result->old_version = version;
		return -EPROTONOSUPPORT;
	}
	/* Every migration without a row is applied, not only those above the
	 * highest: two changes developed side by side may land in either
	 * order, and a store that took the later number first still gets the
	 * earlier one (each is independent of the other's columns). */
	for (size_t i = 0; i < efs_migration_count; i++) {
		const struct efs_migration *mig = &efs_migrations[i];
		int64_t applied = 0;
		if (mig->version <= version &&
		    (r = SQL_Q(c, "SELECT COUNT(*) FROM efs_schema WHERE version = $1", sql_row_int,
			       &applied, NULL, SQL_INT(mig->version))) < 0)
			return r;
		if (applied > 0)
			continue;
		const char *sql = mig->postgres_sql && strcmp(d->name, "postgres") == 0
					  ? mig->postgres_sql
					  : mig->sql;
		if ((r = d->exec_script(c->conn, sql)) < 0)
			return r;
		r = SQL_Q(c, "INSERT INTO efs_schema (version, applied_at) VALUES ($1, $2)", NULL,
		      NULL, NULL, SQL_INT(mig->version), SQL_INT(efs_now_ms()));
		if (r < 0)
			return r;
		efs_info("metadata schema migrated to version %d", mig->version);
	}
	if ((r = cluster_id_tx(c, result->cluster_id)) < 0)
		return r;
	result->old_version = version;
	return 0;
}

/* A takeover: the lease's epoch grows by one (docs/OPERATIONS.md#fencing). */
#define SQL_LEASE_NEXT_EPOCH "UPDATE lease SET epoch = epoch + 1 WHERE singleton = 1 RETURNING epoch"

/* Under lease_lock: forgets the lease and closes its connection (the
 * server frees a lock held on it once it sees the close). */
static void lease_forget(struct sql_store *s)
{
	if (s->lease_conn) {
		s->driver->disconnect(s->lease_conn);
		s->lease_conn = NULL;
	}
	s->lease_held = false;
	s->lease_epoch = 0;
}

static bool store_lease(void *impl)
{
	struct sql_store *s = impl;
	char err[256];
	int r;

	pthread_mutex_lock(&s->lease_lock);
	bool was_held = s->lease_held;
	if (!s->driver->lease_try) {
		r = 1; /* a single-process store: always ours */
	} else {
		if (!s->lease_conn &&
		    s->driver->connect(s->target, &s->lease_conn, err, sizeof(err)) < 0)
			s->lease_conn = NULL;
		r = s->lease_conn ? s->driver->lease_try(s->lease_conn, s->lease_held) : -EAGAIN;
	}
	if (r == 1 && !s->lease_held) {
		/* Taken now: a new epoch, written where the lease lives (the
		 * locked connection; SQLite: its one writer) before any duty
		 * runs under it. */
		int64_t epoch = 0;
		int e = s->driver->lease_try
			    ? s->driver->exec(s->lease_conn, SQL_LEASE_NEXT_EPOCH, NULL, 0,
					      sql_row_int, &epoch, NULL)
			    : sql_write_one(s, SQL_LEASE_NEXT_EPOCH, NULL, 0, sql_row_int, &epoch,
					    NULL);
		if (e < 0 || epoch <= 0) {
			efs_warn("the lease for background duties was taken but its epoch could "
				 "not be advanced (%s): not used",
				 e < 0 ? strerror(-e) : "no lease row");
			r = e < 0 ? e : -EIO;
		} else {
			s->lease_epoch = epoch;
			s->lease_held = true;
		}
	}
	if (r < 0) {
		lease_forget(s); /* a broken connection has lost the lock with it */
	} else if (r == 0) {
		s->lease_held = false; /* another master's: its connection is kept */
		s->lease_epoch = 0;
	}
	if (s->lease_held && !was_held)
		efs_info("this master now runs the background duties (collection, repair), "
			 "lease epoch %lld",
			 (long long)s->lease_epoch);
	else if (was_held && !s->lease_held)
		efs_info(r < 0 ? "background duties paused: the metadata store is unreachable "
				 "(lease dropped)"
			       : "another master runs the background duties now");
	bool held = s->lease_held;
	pthread_mutex_unlock(&s->lease_lock);
	return held;
}

static uint64_t store_lease_epoch(void *impl)
{
	struct sql_store *s = impl;
	pthread_mutex_lock(&s->lease_lock);
	uint64_t epoch = s->lease_held ? (uint64_t)s->lease_epoch : 0;
	pthread_mutex_unlock(&s->lease_lock);
	return epoch;
}

static void store_lease_drop(void *impl)
{
	struct sql_store *s = impl;
	pthread_mutex_lock(&s->lease_lock);
	if (s->lease_held)
		efs_warn("background duties stopped: a metadata call failed, lease epoch %lld "
			 "dropped (taken again, with a new epoch, once the store answers)",
			 (long long)s->lease_epoch);
	lease_forget(s);
	pthread_mutex_unlock(&s->lease_lock);
}

static void store_close(void *impl)
{
	struct sql_store *s = impl;
	if (!s)
		return;
	if (s->lease_conn)
		s->driver->disconnect(s->lease_conn);
	pthread_mutex_destroy(&s->lease_lock);
	if (s->writer.conn)
		s->driver->disconnect(s->writer.conn);
	pthread_mutex_destroy(&s->writer.lock);
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
	struct migrate_result migrated = {0};
	int r;

	if (!s || !(s->target = strdup(target))) {
		free(s);
		return -ENOMEM;
	}
	s->driver = driver;
	s->size = EFS_MIN(driver->pool_size, SQL_POOL_MAX);
	pthread_mutex_init(&s->lock, NULL);
	efs_ticker_cond_init(&s->cond); /* conn_acquire's deadline is monotonic */
	pthread_mutex_init(&s->lease_lock, NULL);
	pthread_mutex_init(&s->writer.lock, NULL);

	/* Connect one now, so a bad target fails at start with its reason. */
	r = driver->connect(target, &s->conns[0], err, errlen);
	if (r < 0)
		goto fail;
	r = sql_run_tx(s, migrate_tx, &migrated);
	if (r == -EPROTONOSUPPORT) {
		/* A configuration error (exit status 2): this binary is too old
		 * for the store, docs/OPERATIONS.md#upgrades-and-downgrades. */
		snprintf(err, errlen,
			 "the %s metadata store is at schema version %lld, newer than this "
			 "binary's (%d): run the newer echofs-master that migrated it (or a later "
			 "one)",
			 driver->name, (long long)migrated.old_version, efs_schema_latest());
		r = -EINVAL;
		goto fail;
	}
	if (r < 0) {
		snprintf(err, errlen, "%s: schema migration failed: %s", driver->name,
			 strerror(-r));
		goto fail;
	}
	efs_strlcpy(s->cluster_id, migrated.cluster_id, sizeof(s->cluster_id));
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
	int r = sql_run_one(impl, "SELECT COALESCE(MAX(version), 0) FROM efs_schema", NULL, 0,
			sql_row_int, &v, NULL);
	if (r == 0)
		*out = (int)v;
	return r;
}

static const char *store_cluster_id(void *impl)
{
	return ((struct sql_store *)impl)->cluster_id;
}

static int store_ping(void *impl)
{
	int64_t one = 0;
	int r = sql_run_one(impl, "SELECT 1", NULL, 0, sql_row_int, &one, NULL);
	return r < 0 ? -EAGAIN : 0;
}

const struct efs_meta_ops efs_sql_store_ops = {
	.backend_name = store_backend_name,
	.close = store_close,
	.schema_version = store_schema_version,
	.cluster_id = store_cluster_id,
	.ping = store_ping,
	.worker_register = sql_worker_register,
	.worker_retire_url = sql_worker_retire_url,
	.worker_heartbeat = sql_worker_heartbeat,
	.worker_heartbeat_many = sql_worker_heartbeat_many,
	.worker_get = sql_worker_get,
	.worker_list = sql_worker_list,
	.session_create = sql_session_create,
	.session_get = sql_session_get,
	.session_chunks = sql_session_chunks,
	.session_put_chunk = sql_session_put_chunk,
	.session_complete = sql_session_complete,
	.session_done_get = sql_session_done_get,
	.session_done_purge = sql_session_done_purge,
	.file_create_single = sql_file_create_single,
	.file_create_object = sql_file_create_object,
	.session_delete = sql_session_delete,
	.session_expired = sql_session_expired,
	.file_get = sql_file_get,
	.file_chunks = sql_file_chunks,
	.file_list = sql_file_list,
	.file_delete = sql_file_delete,
	.chunk_get = sql_chunk_get,
	.replica_mark_bad = sql_replica_mark_bad,
	.replica_mark_good = sql_replica_mark_good,
	.replica_add = sql_replica_add,
	.chunk_record_unreferenced = sql_chunk_record_unreferenced,
	.replica_remove = sql_replica_remove,
	.replica_remove_if = sql_replica_remove_if,
	.repair_list = sql_repair_list,
	.under_replicated = sql_under_replicated,
	.ec_stripes = sql_ec_stripes,
	.ec_candidates = sql_ec_candidates,
	.chunk_make_ec = sql_chunk_make_ec,
	.file_set_policy = sql_file_set_policy,
	.report_batch = sql_report_batch,
	.report_finish = sql_report_finish,
	.lease = store_lease,
	.lease_epoch = store_lease_epoch,
	.lease_drop = store_lease_drop,
	.stats = sql_stats,
	.garbage_list = sql_garbage_list,
	.garbage_take = sql_garbage_take,
	.bucket_create = sql_bucket_create,
	.bucket_get = sql_bucket_get,
	.bucket_list = sql_bucket_list,
	.bucket_delete = sql_bucket_delete,
	.object_get = sql_object_get,
	.object_read = sql_object_read,
	.object_put = sql_object_put,
	.object_delete = sql_object_delete,
	.object_copy = sql_object_copy,
	.object_list = sql_object_list,
	.object_parts = sql_object_parts,
	.s3_upload_create = sql_s3_upload_create,
	.s3_upload_get = sql_s3_upload_get,
	.s3_part_put = sql_s3_part_put,
	.s3_part_list = sql_s3_part_list,
	.s3_upload_complete = sql_s3_upload_complete,
	.s3_upload_abort = sql_s3_upload_abort,
	.s3_upload_list = sql_s3_upload_list,
	.s3_upload_expired = sql_s3_upload_expired,
	.key_create = sql_key_create,
	.key_get = sql_key_get,
	.key_list = sql_key_list,
	.key_delete = sql_key_delete,
};
