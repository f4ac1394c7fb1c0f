/* SPDX-License-Identifier: MIT */
/* test_sql_driver.c - unit tests of the SQL drivers (sqlite.c, and
 * postgres.c when ECHOFS_TEST_PG_URL is set) below the store: their
 * prepared-statement caches find a statement by its text, so SQL built at
 * run time in one reused buffer runs as the statement it says, and more
 * distinct texts than a cache holds still run; SQLite's savepoint
 * journals stay in memory (no temp file per request). Also the row
 * collector (struct sql_rows) the queries share. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "meta/sql_store.h"

struct driver_case {
	const struct efs_sql_driver *driver;
	char target[512];
	void *conn;
};

static int row_int(void *ctx, const struct efs_sql_row *row)
{
	*(int64_t *)ctx = efs_sql_int(row, 0);
	return 0;
}

static int connect_case(struct driver_case *dc)
{
	char err[256] = "";
	int r = dc->driver->connect(dc->target, &dc->conn, err, sizeof(err));
	if (r < 0)
		print_error("%s: %s\n", dc->driver->name, err);
	return r;
}

static int sqlite_setup(void **state)
{
	struct driver_case *dc = calloc(1, sizeof(*dc));
	if (!dc)
		return -1;
	dc->driver = &efs_sql_sqlite_driver;
	snprintf(dc->target, sizeof(dc->target), "/tmp/echofs-test-sql-%d.db", (int)getpid());
	unlink(dc->target);
	if (connect_case(dc) < 0) {
		free(dc);
		return -1;
	}
	*state = dc;
	return 0;
}

static int pg_setup(void **state)
{
	const char *url = getenv("ECHOFS_TEST_PG_URL");
	struct driver_case *dc = calloc(1, sizeof(*dc));
	if (!dc)
		return -1;
	dc->driver = efs_sql_postgres_driver;
	snprintf(dc->target, sizeof(dc->target), "%s", url ? url : "");
	if (url && connect_case(dc) < 0) {
		free(dc);
		return -1;
	}
	*state = dc;
	return 0;
}

static int case_teardown(void **state)
{
	struct driver_case *dc = *state;
	if (dc->conn)
		dc->driver->disconnect(dc->conn);
	if (dc->driver == &efs_sql_sqlite_driver) {
		char path[600];
		unlink(dc->target);
		snprintf(path, sizeof(path), "%s-wal", dc->target);
		unlink(path);
		snprintf(path, sizeof(path), "%s-shm", dc->target);
		unlink(path);
	}
	free(dc);
	return 0;
}

/* Two different texts written one after the other into the same buffer:
 * keyed by address, the second would run the first's statement. */
static void test_runtime_sql_in_one_buffer(void **state)
{
	struct driver_case *dc = *state;
	if (!dc->conn)
		skip();
	char sql[64];
	for (int64_t want = 1; want <= 5; want++) {
		snprintf(sql, sizeof(sql), "SELECT %d", (int)want);
		int64_t got = -1;
		assert_int_equal(dc->driver->exec(dc->conn, sql, NULL, 0, row_int, &got, NULL), 0);
		assert_int_equal(got, want);
	}
	/* The first text again, after the buffer held the others: the cached
	 * statement is found by content and still gives its own answer. */
	snprintf(sql, sizeof(sql), "SELECT %d", 1);
	int64_t got = -1;
	assert_int_equal(dc->driver->exec(dc->conn, sql, NULL, 0, row_int, &got, NULL), 0);
	assert_int_equal(got, 1);
}

/* The same text at two addresses is one statement with one answer; with
 * parameters the bound values decide. */
static void test_same_text_two_addresses(void **state)
{
	struct driver_case *dc = *state;
	if (!dc->conn)
		skip();
	char *a = strdup("SELECT $1 + 1");
	char *b = strdup("SELECT $1 + 1");
	assert_non_null(a);
	assert_non_null(b);
	int64_t got = -1;
	struct efs_sql_value p1[] = {SQL_INT(41)};
	assert_int_equal(dc->driver->exec(dc->conn, a, p1, 1, row_int, &got, NULL), 0);
	assert_int_equal(got, 42);
	struct efs_sql_value p2[] = {SQL_INT(99)};
	assert_int_equal(dc->driver->exec(dc->conn, b, p2, 1, row_int, &got, NULL), 0);
	assert_int_equal(got, 100);
	free(a);
	free(b);
}

struct nested {
	const struct driver_case *dc;
	const char *sql;
	int outer_rows;
	int64_t inner_sum;
};

static int row_nested(void *ctx, const struct efs_sql_row *row)
{
	struct nested *n = ctx;
	n->outer_rows++;
	if (n->outer_rows > 10)
		return -ELOOP; /* the outer statement was restarted */
	int64_t got = -1;
	/* The same text again, from inside the outer statement's rows. */
	int r = n->dc->driver->exec(n->dc->conn, n->sql, NULL, 0, row_int, &got, NULL);
	if (r < 0)
		return r;
	n->inner_sum += got;
	return 0;
}

/* A row callback running the same text as the statement it is called
 * from: found by content, the cached statement is the running one, and
 * must not be reset under it. */
static void test_same_text_nested(void **state)
{
	struct driver_case *dc = *state;
	if (!dc->conn)
		skip();
	char sql[64];
	snprintf(sql, sizeof(sql), "SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9");
	struct nested n = {dc, sql, 0, 0};
	assert_int_equal(dc->driver->exec(dc->conn, sql, NULL, 0, row_nested, &n, NULL), 0);
	assert_int_equal(n.outer_rows, 3);
	assert_int_equal(n.inner_sum, 3 * 9); /* row_int keeps the last row: 9 */
}

/* More distinct texts than any driver caches (64 SQLite, 128 PostgreSQL):
 * those past the cache run unprepared-once and still answer right, and
 * the cached ones keep theirs. */
static void test_more_texts_than_cache(void **state)
{
	struct driver_case *dc = *state;
	if (!dc->conn)
		skip();
	char sql[64];
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 200; i++) {
			snprintf(sql, sizeof(sql), "SELECT %d", 1000 + i);
			int64_t got = -1;
			assert_int_equal(dc->driver->exec(dc->conn, sql, NULL, 0, row_int, &got, NULL),
					 0);
			assert_int_equal(got, 1000 + i);
		}
	}
}

/* ---- struct sql_rows -------------------------------------------------- */

static void test_rows_grow(void **state)
{
	struct sql_rows rows = SQL_ROWS_GROW(int64_t);
	assert_null(sql_rows_last(&rows));
	for (int64_t i = 0; i < 1000; i++) {
		int64_t *item = sql_rows_push(&rows);
		assert_non_null(item);
		assert_int_equal(*item, 0); /* zeroed */
		*item = i;
		assert_ptr_equal(sql_rows_last(&rows), item);
	}
	assert_int_equal(sql_rows_full(&rows), -ENOMEM);
	void *items = NULL;
	size_t count = 0;
	assert_int_equal(sql_rows_finish(&rows, 0, &items, &count), 0);
	assert_int_equal(count, 1000);
	for (int64_t i = 0; i < 1000; i++)
		assert_int_equal(((int64_t *)items)[i], i);
	free(items);
}

static void test_rows_grow_failure_frees(void **state)
{
	struct sql_rows rows = SQL_ROWS_GROW(int64_t);
	for (int i = 0; i < 40; i++)
		assert_non_null(sql_rows_push(&rows));
	void *items = (void *)&rows; /* must stay as it is */
	size_t count = 7;
	assert_int_equal(sql_rows_finish(&rows, -EIO, &items, &count), -EIO);
	assert_ptr_equal(items, &rows);
	assert_int_equal(count, 7);
	assert_null(rows.items); /* freed (ASan would see a leak otherwise) */
}

static void test_rows_fixed(void **state)
{
	char ids[3][8];
	struct sql_rows rows = SQL_ROWS_FIXED(ids, 3);
	assert_int_equal(rows.item_size, 8);
	for (int i = 0; i < 3; i++) {
		char *id = sql_rows_push(&rows);
		assert_ptr_equal(id, ids[i]);
		snprintf(id, 8, "id%d", i);
	}
	assert_null(sql_rows_push(&rows)); /* full: the row is dropped */
	assert_int_equal(sql_rows_full(&rows), 0);
	size_t count = 0;
	assert_int_equal(sql_rows_finish(&rows, 0, NULL, &count), 0);
	assert_int_equal(count, 3);
	assert_string_equal(ids[2], "id2");
}

/* Open files of this process whose path holds @part (deleted ones too:
 * SQLite unlinks a temp file as soon as it opens it). */
static int open_files_named(const char *part)
{
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	int found = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char link[300], target[512];
		snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
		ssize_t n = readlink(link, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		found += strstr(target, part) != NULL;
	}
	closedir(d);
	return found;
}

/* A request of a group commit runs in a savepoint, and SQLite first
 * copies every page it changes into a statement journal: beyond SQLite's
 * default 64 KiB that journal spilled to a temp file (etilqs_* in
 * /var/tmp), a few pages a 4 KiB upload. The driver keeps one request's
 * journal in memory (sqlite.c, SQLITE_STMTJRNL_SPILL_BYTES): 40 rows of
 * 3,500 bytes (a page each, 160 KiB) in a savepoint open no temp file. */
static void test_savepoint_journal_stays_in_memory(void **state)
{
	struct driver_case *dc = *state;
	const struct efs_sql_driver *d = dc->driver;
	assert_int_equal(d->exec_script(dc->conn, "CREATE TABLE big (k INTEGER PRIMARY KEY, v BLOB)"),
			 0);
	assert_int_equal(d->begin(dc->conn), 0);
	assert_int_equal(d->savepoint(dc->conn), 0);
	for (int k = 0; k < 40; k++)
		assert_int_equal(d->exec(dc->conn, "INSERT INTO big (k, v) VALUES ($1, zeroblob(3500))",
					 (struct efs_sql_value[]){SQL_INT(k)}, 1, NULL, NULL, NULL),
				 0);
	/* Rewritten in a second savepoint: every page journaled again. */
	assert_int_equal(d->savepoint_release(dc->conn), 0);
	assert_int_equal(d->savepoint(dc->conn), 0);
	assert_int_equal(d->exec(dc->conn, "UPDATE big SET v = zeroblob(3600)", NULL, 0, NULL, NULL,
				 NULL),
			 0);
	assert_int_equal(open_files_named("etilqs"), 0);
	assert_int_equal(d->savepoint_release(dc->conn), 0);
	assert_int_equal(d->commit(dc->conn), 0);
	int64_t rows = -1;
	assert_int_equal(d->exec(dc->conn, "SELECT COUNT(*) FROM big", NULL, 0, row_int, &rows, NULL),
			 0);
	assert_int_equal(rows, 40);
}

#define SQLITE(fn) cmocka_unit_test_setup_teardown(fn, sqlite_setup, case_teardown)
#define PG(fn) cmocka_unit_test_setup_teardown(fn, pg_setup, case_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rows_grow),
		cmocka_unit_test(test_rows_grow_failure_frees),
		cmocka_unit_test(test_rows_fixed),
		SQLITE(test_runtime_sql_in_one_buffer),
		SQLITE(test_same_text_two_addresses),
		SQLITE(test_more_texts_than_cache),
		SQLITE(test_same_text_nested),
		SQLITE(test_savepoint_journal_stays_in_memory),
		PG(test_runtime_sql_in_one_buffer),
		PG(test_same_text_two_addresses),
		PG(test_more_texts_than_cache),
		PG(test_same_text_nested),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
