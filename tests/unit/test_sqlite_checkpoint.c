/* SPDX-License-Identifier: MIT */
/* test_sqlite_checkpoint.c - unit tests of the SQLite driver's WAL
 * checkpoints off the committing thread (src/meta/sqlite_checkpoint.c,
 * included to read its counters), on a real database file in a temp dir:
 * the thread copies the WAL while the writer commits and the writer runs
 * none itself until the WAL reaches its inline limit, after which the WAL
 * starts again from its beginning (its file stays bounded) and every row
 * is there on a new connection; a reader on an old snapshot, which keeps
 * the thread from copying more, does not make it run again at every
 * commit, and once the reader is done the copying goes on. */
#include <errno.h>
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

#include "../../src/meta/sqlite_checkpoint.c"

#define ROW_BYTES 3500 /* one row per 4 KiB page, about */
/* Smaller than the daemon's marks: less to write. */
#define MARK_PAGES 500
#define INLINE_PAGES 3000

struct fixture {
	char dir[64];
	char path[96];
	sqlite3 *db;
	struct efs_sqlite_checkpointer *ck;
	int rows;
};

static void exec_ok(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		fail_msg("%s: %s", sql, msg ? msg : sqlite3_errstr(rc));
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/efs-ckpt-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/meta.db", f->dir);
	assert_int_equal(sqlite3_open_v2(f->path, &f->db,
					 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
					     SQLITE_OPEN_NOMUTEX,
					 NULL),
			 SQLITE_OK);
	exec_ok(f->db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
		       "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)");
	f->ck = efs_sqlite_checkpointer_attach(f->db, f->path);
	assert_non_null(f->ck);
	f->ck->mark_pages = MARK_PAGES;
	f->ck->inline_pages = INLINE_PAGES;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	efs_sqlite_checkpointer_detach(f->ck);
	sqlite3_close(f->db);
	char path[128];
	static const char *const files[] = {"meta.db", "meta.db-wal", "meta.db-shm"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", f->dir, files[i]);
		unlink(path);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

/* Commits @count transactions of @rows_each rows (a page each). */
static void write_rows(struct fixture *f, int count, int rows_each)
{
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(f->db, "INSERT INTO t (k, v) VALUES (?, zeroblob(?))",
					    -1, &st, NULL),
			 SQLITE_OK);
	for (int i = 0; i < count; i++) {
		exec_ok(f->db, "BEGIN IMMEDIATE");
		for (int r = 0; r < rows_each; r++) {
			sqlite3_bind_int(st, 1, ++f->rows);
			sqlite3_bind_int(st, 2, ROW_BYTES);
			assert_int_equal(sqlite3_step(st), SQLITE_DONE);
			sqlite3_reset(st);
		}
		exec_ok(f->db, "COMMIT");
	}
	sqlite3_finalize(st);
}

static struct efs_sqlite_checkpointer snapshot(struct efs_sqlite_checkpointer *ck)
{
	pthread_mutex_lock(&ck->lock);
	struct efs_sqlite_checkpointer copy = *ck;
	pthread_mutex_unlock(&ck->lock);
	return copy;
}

/* Waits up to 10 s for the thread to have copied @frames of the WAL and
 * run @runs checkpoints. */
static bool reached(struct efs_sqlite_checkpointer *ck, int frames, uint64_t runs)
{
	for (int i = 0; i < 1000; i++) {
		struct efs_sqlite_checkpointer now = snapshot(ck);
		if (now.copied >= frames && now.background >= runs)
			return true;
		efs_sleep_ms(10);
	}
	return false;
}

static void test_the_thread_checkpoints_and_the_wal_stays_bounded(void **state)
{
	struct fixture *f = *state;
	/* Past the thread's mark, far below the inline limit. */
	write_rows(f, 15, 100);
	assert_true(reached(f->ck, MARK_PAGES, 0));
	struct efs_sqlite_checkpointer now = snapshot(f->ck);
	assert_true(now.started);
	assert_true(now.background >= 1);
	assert_int_equal(now.inline_runs, 0); /* the writer copied nothing */

	/* The thread no longer woken (a mark past the cap): at the cap the
	 * writer copies what is left, and the WAL starts again from its
	 * beginning (a writer slower than the thread could have seen that
	 * happen already above). */
	f->ck->mark_pages = 2 * INLINE_PAGES;
	write_rows(f, 2 * INLINE_PAGES / 100, 100);
	struct efs_sqlite_checkpointer after = snapshot(f->ck);
	assert_true(after.inline_runs >= 1);
	assert_true(after.generation > now.generation);
	char wal[128];
	struct stat stw;
	snprintf(wal, sizeof(wal), "%s-wal", f->path);
	assert_int_equal(stat(wal, &stw), 0);
	/* A frame is a page and its 24-byte header; one transaction's pages
	 * may follow the limit. */
	assert_true(stw.st_size <= (off_t)(INLINE_PAGES + 200) * (4096 + 24));

	/* Every row, on a connection of its own. */
	sqlite3 *other;
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_open_v2(f->path, &other, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(other, "SELECT COUNT(*), MAX(k) FROM t", -1, &st, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), f->rows);
	assert_int_equal(sqlite3_column_int(st, 1), f->rows);
	sqlite3_finalize(st);
	sqlite3_close(other);
}

static void test_a_reader_on_an_old_snapshot_does_not_make_it_spin(void **state)
{
	struct fixture *f = *state;
	sqlite3 *reader;
	sqlite3_stmt *st;
	/* Commits without a sync each: many of them within one retry wait. */
	exec_ok(f->db, "PRAGMA synchronous = OFF");
	write_rows(f, 1, 10);
	assert_int_equal(sqlite3_open_v2(f->path, &reader, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	exec_ok(reader, "BEGIN");
	assert_int_equal(sqlite3_prepare_v2(reader, "SELECT COUNT(*) FROM t", -1, &st, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW); /* its snapshot: 10 rows */
	assert_int_equal(sqlite3_column_int(st, 0), 10);
	sqlite3_reset(st);

	int64_t began = efs_mono_ms();
	write_rows(f, 200, 10); /* ~2,000 pages: the mark passed at ~50 commits */
	int64_t took = efs_mono_ms() - began;
	/* The thread, started at the mark, may not have run yet on a loaded
	 * machine (CI once saw none 50 ms after 23 ms of commits): wait for
	 * its first run. With no commit after these, it runs at most once
	 * more (one wake-up pending), whatever the wait. */
	efs_sleep_ms(50);
	assert_true(reached(f->ck, 0, 1));
	struct efs_sqlite_checkpointer now = snapshot(f->ck);
	/* Each run after the first copies nothing (the frames are after the
	 * reader's snapshot) and waits EFS_SQLITE_CHECKPOINT_RETRY_MS before
	 * the next; without that wait it ran at each of ~150 commits. */
	uint64_t most = 3 + (uint64_t)(took + 50) / EFS_SQLITE_CHECKPOINT_RETRY_MS;
	print_message("%llu background checkpoints in %lld ms of commits (at most %llu)\n",
		      (unsigned long long)now.background, (long long)took,
		      (unsigned long long)most);
	assert_true(now.background >= 1);
	assert_true(now.background <= most);
	assert_true(now.copied < MARK_PAGES);

	/* The reader done, the next commits are copied. */
	exec_ok(reader, "COMMIT");
	sqlite3_finalize(st);
	sqlite3_close(reader);
	write_rows(f, 1, 10);
	assert_true(reached(f->ck, MARK_PAGES, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_the_thread_checkpoints_and_the_wal_stays_bounded,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_reader_on_an_old_snapshot_does_not_make_it_spin,
					    setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
