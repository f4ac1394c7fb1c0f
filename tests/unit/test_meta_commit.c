/* SPDX-License-Identifier: MIT */
/* test_meta_commit.c - unit tests of the SQL store's write transactions
 * over SQLite (sql_run_tx with group commit, sql_store.c), with test
 * transactions on a test table: many threads committing at once all keep
 * their rows, each visible to other connections as soon as its call
 * returns; transactions queued together share one COMMIT; a failing
 * transaction in a group loses only its own work and each caller gets its
 * own result; a failed COMMIT fails every caller of its group; a member
 * that loses the whole transaction is blamed alone and the others run
 * again; -EBUSY from a transaction runs it again; reads are not held up by
 * a writing group.
 *
 * To queue transactions deterministically behind one group, a "gate"
 * transaction holds the writer until the wanted number of callers are
 * queued. */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "echofs/log.h"
#include "echofs/util.h"
#include "meta/sql_store.h"

/* ---- fixture ---------------------------------------------------------- */

struct fixture {
	char dir[64];
	struct sql_store *s;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int create_tables_tx(struct sql_conn *c, void *ctx)
{
	return c->store->driver->exec_script(
		c->conn, "CREATE TABLE t (k TEXT PRIMARY KEY, run INTEGER NOT NULL);"
			 "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
			 "CREATE TABLE child (parent_id INTEGER"
			 "  REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);"
			 "INSERT INTO t (k, run) VALUES ('taken', 0);");
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char path[PATH_MAX], err[256] = "";
	void *impl = NULL;

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/echofs-test-commit-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/echofs.db", f->dir);
	if (efs_sql_store_open(&efs_sql_sqlite_driver, path, &impl, err, sizeof(err)) < 0) {
		print_error("open: %s\n", err);
		free(f);
		return -1;
	}
	f->s = impl;
	if (sql_run_tx(f->s, create_tables_tx, NULL) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	efs_sql_store_ops.close(f->s);
	nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* ---- helpers ---------------------------------------------------------- */

/* A test transaction: inserts (key, run number), then optionally a second
 * row under @also_key, a child row naming no parent (caught only at
 * COMMIT), answers -EBUSY for its first @busy_runs runs, and finally
 * returns @fail_with. */
struct insert {
	struct sql_store *s;
	const char *key;
	const char *also_key;
	bool dangling_child;
	bool end_transaction; /* ROLLBACK the whole group, as SQLite does on an I/O error */
	int busy_runs;
	int fail_with;
	int runs;
	int result;
};

static int insert_tx(struct sql_conn *c, void *arg)
{
	struct insert *in = arg;
	int r;

	in->runs++;
	r = SQL_Q(c, "INSERT INTO t (k, run) VALUES ($1, $2)", NULL, NULL, NULL,
		  SQL_TEXT(in->key), SQL_INT(in->runs));
	if (r < 0)
		return r;
	if (in->also_key) {
		r = SQL_Q(c, "INSERT INTO t (k, run) VALUES ($1, $2)", NULL, NULL, NULL,
			  SQL_TEXT(in->also_key), SQL_INT(in->runs));
		if (r < 0)
			return r;
	}
	if (in->dangling_child) {
		r = SQL_Q(c, "INSERT INTO child (parent_id) VALUES ($1)", NULL, NULL, NULL,
			  SQL_INT(999));
		if (r < 0)
			return r;
	}
	if (in->end_transaction && (r = c->store->driver->exec_script(c->conn, "ROLLBACK")) < 0)
		return r;
	if (in->runs <= in->busy_runs)
		return -EBUSY;
	return in->fail_with;
}

static void *insert_main(void *arg)
{
	struct insert *in = arg;
	in->result = sql_run_tx(in->s, insert_tx, in);
	return NULL;
}

/* The run number stored under @key, read on a pooled connection (so only
 * committed rows are seen); -1 when there is no such row. */
static int64_t run_of(struct sql_store *s, const char *key)
{
	int64_t run = -1;
	assert_int_equal(SQL_ONE(s, "SELECT run FROM t WHERE k = $1", sql_row_int, &run, NULL,
				 SQL_TEXT(key)),
			 0);
	return run;
}

static int64_t row_count(struct sql_store *s)
{
	int64_t n = -1;
	assert_int_equal(sql_run_one(s, "SELECT COUNT(*) FROM t", NULL, 0, sql_row_int, &n, NULL),
			 0);
	return n;
}

struct counters {
	size_t queued;
	bool running;
	uint64_t groups, txs;
};

static struct counters counters(struct sql_store *s)
{
	struct counters c;
	pthread_mutex_lock(&s->writer.lock);
	c.queued = s->writer.queued;
	c.running = s->writer.running;
	c.groups = s->writer.groups_committed;
	c.txs = s->writer.txs_committed;
	pthread_mutex_unlock(&s->writer.lock);
	return c;
}

/* Holds the writer (as a running group) until @wait_for callers are queued
 * behind it; commits one row. */
struct gate {
	struct sql_store *s;
	size_t wait_for;
	int result;
};

static int gate_tx(struct sql_conn *c, void *arg)
{
	struct gate *g = arg;
	while (counters(g->s).queued < g->wait_for)
		efs_sleep_ms(1);
	return sql_q(c, "INSERT INTO t (k, run) VALUES ('gate', 1)", NULL, 0, NULL, NULL, NULL);
}

static void *gate_main(void *arg)
{
	struct gate *g = arg;
	g->result = sql_run_tx(g->s, gate_tx, g);
	return NULL;
}

/* Runs @n insert transactions queued together, in this order, behind a
 * gate, so that they form one group (n <= SQL_GROUP_MAX); each result lands
 * in ins[i].result. */
static void run_as_one_group(struct sql_store *s, struct insert *ins, size_t n)
{
	struct gate g = {s, n, -1};
	pthread_t gate_tid, tids[SQL_GROUP_MAX];

	assert_true(n <= SQL_GROUP_MAX);
	assert_int_equal(pthread_create(&gate_tid, NULL, gate_main, &g), 0);
	while (!counters(s).running)
		efs_sleep_ms(1); /* the gate leads its own group: nothing else is queued */
	for (size_t i = 0; i < n; i++) {
		ins[i].s = s;
		assert_int_equal(pthread_create(&tids[i], NULL, insert_main, &ins[i]), 0);
		/* queued in this order (the last one releases the gate, after
		 * which the queue empties) */
		while (i + 1 < n && counters(s).queued < i + 1)
			efs_sleep_ms(1);
	}
	assert_int_equal(pthread_join(gate_tid, NULL), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(pthread_join(tids[i], NULL), 0);
	assert_int_equal(g.result, 0);
}

/* ---- tests ------------------------------------------------------------ */

#define THREADS 16
#define TXS_PER_THREAD 40

struct writer_thread {
	struct sql_store *s;
	int index;
	int failures, first_error, invisible;
};

/* Commits its transactions one after the other; after each returns, the
 * row must already be visible to another connection (committed). */
static void *writer_main(void *arg)
{
	struct writer_thread *t = arg;
	char key[32];
	for (int i = 0; i < TXS_PER_THREAD; i++) {
		struct insert in = {.s = t->s, .key = key};
		snprintf(key, sizeof(key), "w%d-%d", t->index, i);
		int r = sql_run_tx(t->s, insert_tx, &in);
		if (r != 0) {
			if (!t->failures++)
				t->first_error = r;
			continue;
		}
		int64_t run = -1;
		if (SQL_ONE(t->s, "SELECT run FROM t WHERE k = $1", sql_row_int, &run, NULL,
			    SQL_TEXT(key)) != 0 ||
		    run != 1)
			t->invisible++;
	}
	return NULL;
}

static void test_concurrent_writers_all_commit(void **state)
{
	struct fixture *f = *state;
	struct writer_thread threads[THREADS];
	pthread_t tids[THREADS];
	struct counters before = counters(f->s);

	for (int i = 0; i < THREADS; i++) {
		threads[i] = (struct writer_thread){.s = f->s, .index = i};
		assert_int_equal(pthread_create(&tids[i], NULL, writer_main, &threads[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(tids[i], NULL), 0);
	for (int i = 0; i < THREADS; i++) {
		if (threads[i].failures)
			print_error("thread %d: %d failed, first with %d\n", i, threads[i].failures,
				    threads[i].first_error);
		assert_int_equal(threads[i].failures, 0);
		assert_int_equal(threads[i].invisible, 0);
	}
	assert_int_equal(row_count(f->s), 1 + THREADS * TXS_PER_THREAD);
	struct counters after = counters(f->s);
	assert_int_equal(after.txs - before.txs, THREADS * TXS_PER_THREAD);
	assert_true(after.groups - before.groups <= after.txs - before.txs);
	assert_int_equal(after.queued, 0);
	assert_false(after.running);
}

/* Transactions queued together commit together: one group, one COMMIT. */
static void test_queued_transactions_share_one_commit(void **state)
{
	struct fixture *f = *state;
	struct insert ins[8];
	char keys[8][8];
	struct counters before = counters(f->s);

	for (int i = 0; i < 8; i++) {
		snprintf(keys[i], sizeof(keys[i]), "g%d", i);
		ins[i] = (struct insert){.key = keys[i]};
	}
	run_as_one_group(f->s, ins, 8);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(ins[i].result, 0);
		assert_int_equal(ins[i].runs, 1);
		assert_int_equal(run_of(f->s, keys[i]), 1);
	}
	struct counters after = counters(f->s);
	assert_int_equal(after.groups - before.groups, 2); /* the gate's, then all 8 */
	assert_int_equal(after.txs - before.txs, 9);
}

/* In one group: a transaction that fails with its own error (-ESTALE, as
 * a stale session version), and one whose statement fails (-EEXIST, a
 * taken key), lose their own work only; the others commit, and every
 * caller gets its own result. */
static void test_failing_transaction_loses_only_its_own_work(void **state)
{
	struct fixture *f = *state;
	struct insert ins[5] = {
		{.key = "ok-1"},
		{.key = "stale", .fail_with = -ESTALE},
		{.key = "ok-2"},
		{.key = "dup", .also_key = "taken"},
		{.key = "gone", .fail_with = -ENOENT},
	};
	struct counters before = counters(f->s);

	run_as_one_group(f->s, ins, 5);
	assert_int_equal(ins[0].result, 0);
	assert_int_equal(ins[1].result, -ESTALE);
	assert_int_equal(ins[2].result, 0);
	assert_int_equal(ins[3].result, -EEXIST);
	assert_int_equal(ins[4].result, -ENOENT);
	for (int i = 0; i < 5; i++)
		assert_int_equal(ins[i].runs, 1);
	assert_int_equal(run_of(f->s, "ok-1"), 1);
	assert_int_equal(run_of(f->s, "ok-2"), 1);
	assert_int_equal(run_of(f->s, "stale"), -1);
	assert_int_equal(run_of(f->s, "dup"), -1);
	assert_int_equal(run_of(f->s, "gone"), -1);
	assert_int_equal(run_of(f->s, "taken"), 0);
	struct counters after = counters(f->s);
	assert_int_equal(after.groups - before.groups, 2);
	assert_int_equal(after.txs - before.txs, 3); /* the gate, ok-1, ok-2 */
}

/* A COMMIT that fails (here a deferred foreign key, checked only then)
 * fails every transaction of its group, and each caller hears of it; the
 * writer goes on with the next group. */
static void test_commit_failure_reaches_every_waiter(void **state)
{
	struct fixture *f = *state;
	struct insert ins[4] = {
		{.key = "c-1"},
		{.key = "c-2", .dangling_child = true},
		{.key = "c-3"},
		{.key = "c-4", .fail_with = -ESTALE},
	};
	struct counters before = counters(f->s);

	run_as_one_group(f->s, ins, 4);
	assert_int_equal(ins[0].result, -EEXIST); /* SQLITE_CONSTRAINT */
	assert_int_equal(ins[1].result, -EEXIST);
	assert_int_equal(ins[2].result, -EEXIST);
	assert_int_equal(ins[3].result, -ESTALE); /* its own error comes first */
	for (int i = 0; i < 4; i++)
		assert_int_equal(run_of(f->s, ins[i].key), -1);
	struct counters after = counters(f->s);
	assert_int_equal(after.groups - before.groups, 1); /* the gate's only */
	assert_int_equal(after.txs - before.txs, 1);

	struct insert next = {.s = f->s, .key = "after"};
	assert_int_equal(sql_run_tx(f->s, insert_tx, &next), 0);
	assert_int_equal(run_of(f->s, "after"), 1);
}

/* -EBUSY from a transaction runs it again in a new transaction (its
 * earlier runs leave nothing behind); one that stays busy gets -EAGAIN
 * after 5 runs. Its group mates are not affected. */
static void test_busy_transaction_runs_again(void **state)
{
	struct fixture *f = *state;
	struct insert ins[3] = {
		{.key = "busy-twice", .busy_runs = 2},
		{.key = "calm"},
		{.key = "busy-always", .busy_runs = 1000},
	};

	run_as_one_group(f->s, ins, 3);
	assert_int_equal(ins[0].result, 0);
	assert_int_equal(ins[0].runs, 3);
	assert_int_equal(run_of(f->s, "busy-twice"), 3);
	assert_int_equal(ins[1].result, 0);
	assert_int_equal(ins[1].runs, 1);
	assert_int_equal(run_of(f->s, "calm"), 1);
	assert_int_equal(ins[2].result, -EAGAIN);
	assert_int_equal(ins[2].runs, 5);
	assert_int_equal(run_of(f->s, "busy-always"), -1);
	struct counters after = counters(f->s);
	assert_int_equal(after.queued, 0);
}

/* A member whose failure ends the whole transaction (SQLite rolls it back
 * by itself on an I/O error or a full disk) gets its error; the members
 * that ran before it and those not run yet run again in the next group and
 * commit. One that ends it while answering 0 is run again like a conflict,
 * up to 5 times, and its mates are not charged for it. */
static void test_lost_transaction_runs_the_others_again(void **state)
{
	struct fixture *f = *state;
	struct insert ins[4] = {
		{.key = "before"},
		{.key = "io-error", .end_transaction = true, .fail_with = -EIO},
		{.key = "after"},
		{.key = "silent", .end_transaction = true},
	};

	run_as_one_group(f->s, ins, 4);
	assert_int_equal(ins[1].result, -EIO);
	assert_int_equal(ins[1].runs, 1);
	assert_int_equal(run_of(f->s, "io-error"), -1);
	/* "silent" ends every group it runs in: first [before, io-error],
	 * then [before, after, silent] x 5; "before" and "after" are run
	 * again each time and commit once "silent" has given up */
	assert_int_equal(ins[3].result, -EAGAIN);
	assert_int_equal(ins[3].runs, 5);
	assert_int_equal(run_of(f->s, "silent"), -1);
	assert_int_equal(ins[0].result, 0);
	assert_int_equal(ins[0].runs, 7);
	assert_int_equal(run_of(f->s, "before"), 7);
	assert_int_equal(ins[2].result, 0);
	assert_int_equal(ins[2].runs, 6);
	assert_int_equal(run_of(f->s, "after"), 6);
	assert_int_equal(counters(f->s).queued, 0);
}

/* A read on the pool neither waits for a group that is writing nor sees
 * its uncommitted rows. */
struct peek {
	int64_t count_inside;
	int read_result;
};

static int peek_tx(struct sql_conn *c, void *arg)
{
	struct peek *p = arg;
	int r = sql_q(c, "INSERT INTO t (k, run) VALUES ('peek', 1)", NULL, 0, NULL, NULL, NULL);
	if (r < 0)
		return r;
	p->read_result = sql_run_one(c->store, "SELECT COUNT(*) FROM t", NULL, 0, sql_row_int,
				     &p->count_inside, NULL);
	return 0;
}

static void test_reads_run_beside_a_writing_group(void **state)
{
	struct fixture *f = *state;
	struct peek p = {-1, -1};
	int64_t before = row_count(f->s);

	assert_int_equal(sql_run_tx(f->s, peek_tx, &p), 0);
	assert_int_equal(p.read_result, 0);
	assert_int_equal(p.count_inside, before);
	assert_int_equal(row_count(f->s), before + 1);
}

/* sql_write_one goes through the writer and reports the rows it changed. */
static void test_write_one(void **state)
{
	struct fixture *f = *state;
	int64_t changed = -1;
	struct counters before = counters(f->s);

	assert_int_equal(SQL_WRITE(f->s, "UPDATE t SET run = 7 WHERE k = $1", NULL, NULL, &changed,
				   SQL_TEXT("taken")),
			 0);
	assert_int_equal(changed, 1);
	assert_int_equal(SQL_WRITE(f->s, "UPDATE t SET run = 7 WHERE k = $1", NULL, NULL, &changed,
				   SQL_TEXT("nobody")),
			 0);
	assert_int_equal(changed, 0);
	assert_int_equal(SQL_WRITE(f->s, "INSERT INTO t (k, run) VALUES ($1, 1)", NULL, NULL, NULL,
				   SQL_TEXT("taken")),
			 -EEXIST);
	assert_int_equal(run_of(f->s, "taken"), 7);
	assert_int_equal(counters(f->s).txs - before.txs, 2);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_concurrent_writers_all_commit),
		T(test_queued_transactions_share_one_commit),
		T(test_failing_transaction_loses_only_its_own_work),
		T(test_commit_failure_reaches_every_waiter),
		T(test_busy_transaction_runs_again),
		T(test_lost_transaction_runs_the_others_again),
		T(test_reads_run_beside_a_writing_group),
		T(test_write_one),
	};

	efs_log_set_level(EFS_LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
