/* SPDX-License-Identifier: MIT */
/* test_meta_sqlite.c - unit tests of the metadata store (meta.h) over its
 * SQLite backend, in a temporary directory: opening by data dir and by
 * "sqlite:PATH" URL, bad URLs, schema migrations (applied once, kept on
 * reopen), the worker registry operations, and concurrent use of one store
 * from several threads. */
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
#include <sqlite3.h>

#include "echofs/log.h"
#include "echofs/meta.h"
#include "meta/schema.h"
#include "echofs/util.h"

/* The newest migration: tests follow the schema as it grows. */
#define LATEST_SCHEMA_VERSION (efs_migrations[efs_migration_count - 1].version)

/* ---- helpers --------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int tmpdir_setup(void **state)
{
	char *dir = strdup("/tmp/echofs-test-meta-XXXXXX");
	if (!dir || !mkdtemp(dir)) {
		free(dir);
		return -1;
	}
	*state = dir;
	return 0;
}

static int tmpdir_teardown(void **state)
{
	char *dir = *state;
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(dir);
	return 0;
}

static void path_in(char *out, size_t size, const char *dir, const char *name)
{
	int n = snprintf(out, size, "%s/%s", dir, name);
	assert_true(n > 0 && (size_t)n < size);
}

static struct efs_meta *open_ok(const char *url, const char *dir)
{
	struct efs_meta *m = NULL;
	char err[256] = "";
	int r = efs_meta_open(url, dir, &m, err, sizeof(err));
	if (r != 0)
		print_error("efs_meta_open(%s, %s): %d: %s\n", url ? url : "NULL", dir, r, err);
	assert_int_equal(r, 0);
	assert_non_null(m);
	return m;
}

static void worker_fill(struct efs_worker_info *w, const char *id, const char *url,
			uint64_t capacity, uint64_t free_bytes, uint64_t chunks, int64_t now_ms)
{
	memset(w, 0, sizeof(*w));
	snprintf(w->worker_id, sizeof(w->worker_id), "%s", id);
	snprintf(w->url, sizeof(w->url), "%s", url);
	w->capacity_bytes = capacity;
	w->free_bytes = free_bytes;
	w->chunk_count = chunks;
	w->registered_at_ms = now_ms;
	w->last_heartbeat_ms = now_ms;
}

static void register_ok(struct efs_meta *m, const char *id, const char *url, int64_t now_ms)
{
	struct efs_worker_info w;
	worker_fill(&w, id, url, 100 * EFS_GIB, 60 * EFS_GIB, 5, now_ms);
	assert_int_equal(efs_meta_worker_register(m, &w), 0);
}

static struct efs_worker_info get_ok(struct efs_meta *m, const char *id)
{
	struct efs_worker_info w;
	memset(&w, 0, sizeof(w));
	int r = efs_meta_worker_get(m, id, &w);
	if (r != 0)
		print_error("efs_meta_worker_get(%s): %d\n", id, r);
	assert_int_equal(r, 0);
	assert_string_equal(w.worker_id, id);
	return w;
}

/* Reads the efs_schema table with SQLite directly (store closed). */
static void schema_rows(const char *db_path, int *rows, int64_t *max_version,
			int64_t *applied_at)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *stmt = NULL;

	assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT COUNT(*), MAX(version), MAX(applied_at)"
					    " FROM efs_schema",
					    -1, &stmt, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
	*rows = sqlite3_column_int(stmt, 0);
	*max_version = sqlite3_column_int64(stmt, 1);
	*applied_at = sqlite3_column_int64(stmt, 2);
	sqlite3_finalize(stmt);
	sqlite3_close(db);
}

/* ---- opening ---------------------------------------------------------- */

static void test_open_data_dir(void **state)
{
	const char *dir = *state;
	char db[PATH_MAX];
	int version = -1;

	struct efs_meta *m = open_ok(NULL, dir);
	path_in(db, sizeof(db), dir, "echofs.db");
	assert_int_equal(access(db, F_OK), 0);
	assert_string_equal(efs_meta_backend(m), "sqlite");
	assert_int_equal(efs_meta_schema_version(m, &version), 0);
	assert_int_equal(version, LATEST_SCHEMA_VERSION);
	assert_int_equal(efs_meta_ping(m), 0);
	/* The cluster id is drawn with the metadata and kept with it. */
	char cluster_id[EFS_CLUSTER_ID_LEN + 1];
	efs_strlcpy(cluster_id, efs_meta_cluster_id(m), sizeof(cluster_id));
	assert_true(efs_cluster_id_valid(cluster_id));
	efs_meta_close(m);

	/* "" is the same as NULL */
	m = open_ok("", dir);
	assert_string_equal(efs_meta_backend(m), "sqlite");
	assert_string_equal(efs_meta_cluster_id(m), cluster_id);
	efs_meta_close(m);

	/* Other metadata, another cluster. */
	char other[PATH_MAX];
	path_in(other, sizeof(other), dir, "other");
	m = open_ok(NULL, other);
	assert_true(efs_cluster_id_valid(efs_meta_cluster_id(m)));
	assert_string_not_equal(efs_meta_cluster_id(m), cluster_id);
	efs_meta_close(m);
	efs_meta_close(NULL);
}

static void test_open_missing_data_dir(void **state)
{
	const char *dir = *state;
	char sub[PATH_MAX], db[PATH_MAX];

	path_in(sub, sizeof(sub), dir, "data/master");
	struct efs_meta *m = open_ok(NULL, sub);
	path_in(db, sizeof(db), sub, "echofs.db");
	assert_int_equal(access(db, F_OK), 0);
	efs_meta_close(m);
}

static void test_open_sqlite_url(void **state)
{
	const char *dir = *state;
	char url[PATH_MAX + 16], db[PATH_MAX], parent[PATH_MAX];
	int version = -1;

	path_in(db, sizeof(db), dir, "deep/er/x.db");
	path_in(parent, sizeof(parent), dir, "deep/er");
	snprintf(url, sizeof(url), "sqlite:%s", db);
	assert_int_equal(access(parent, F_OK), -1);

	struct efs_meta *m = open_ok(url, "/nonexistent-data-dir-unused");
	assert_int_equal(access(db, F_OK), 0);
	struct stat st;
	assert_int_equal(stat(parent, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_string_equal(efs_meta_backend(m), "sqlite");
	assert_int_equal(efs_meta_schema_version(m, &version), 0);
	assert_int_equal(version, LATEST_SCHEMA_VERSION);
	assert_int_equal(efs_meta_ping(m), 0);
	efs_meta_close(m);

	/* the data dir was not used */
	char unused[PATH_MAX];
	path_in(unused, sizeof(unused), dir, "echofs.db");
	assert_int_equal(access(unused, F_OK), -1);
}

static void test_open_bad_url(void **state)
{
	const char *dir = *state;
	static const char *const bad[] = {"mysql://x", "sqlite:", "sqlite", "file:/tmp/x.db",
					  "http://db:5432", "redis://x"};

	for (size_t i = 0; i < EFS_ARRAY_SIZE(bad); i++) {
		struct efs_meta *m = (struct efs_meta *)(uintptr_t)0x1;
		char err[256] = "";
		int r = efs_meta_open(bad[i], dir, &m, err, sizeof(err));
		if (r != -EINVAL)
			print_error("efs_meta_open(\"%s\") returned %d\n", bad[i], r);
		assert_int_equal(r, -EINVAL);
		assert_ptr_equal(m, (struct efs_meta *)(uintptr_t)0x1);
		assert_non_null(strstr(err, "DATABASE_URL"));
		assert_null(strchr(err, '\n'));
	}
	/* nothing was created */
	char db[PATH_MAX];
	path_in(db, sizeof(db), dir, "echofs.db");
	assert_int_equal(access(db, F_OK), -1);
}

static void test_open_unusable_path(void **state)
{
	const char *dir = *state;
	char file[PATH_MAX], sub[PATH_MAX];
	struct efs_meta *m = (struct efs_meta *)(uintptr_t)0x1;
	char err[256] = "";

	/* the data dir would have to be created below a regular file */
	path_in(file, sizeof(file), dir, "plain-file");
	FILE *f = fopen(file, "w");
	assert_non_null(f);
	fclose(f);
	path_in(sub, sizeof(sub), file, "sub");
	int r = efs_meta_open(NULL, sub, &m, err, sizeof(err));
	assert_int_equal(r, -EIO);
	assert_ptr_equal(m, (struct efs_meta *)(uintptr_t)0x1);
	assert_true(err[0] != '\0');
}

/* ---- workers ----------------------------------------------------------- */

static void test_worker_register_get(void **state)
{
	struct efs_meta *m = open_ok(NULL, *state);
	struct efs_worker_info w, got;

	worker_fill(&w, "worker-1", "http://10.0.0.1:8081", 100 * EFS_GIB, 40 * EFS_GIB, 17,
		    1700000000123LL);
	assert_int_equal(efs_meta_worker_register(m, &w), 0);
	got = get_ok(m, "worker-1");
	assert_string_equal(got.url, "http://10.0.0.1:8081");
	assert_true(got.capacity_bytes == 100 * EFS_GIB);
	assert_true(got.free_bytes == 40 * EFS_GIB);
	assert_true(got.chunk_count == 17);
	assert_int_equal(got.registered_at_ms, 1700000000123LL);
	assert_int_equal(got.last_heartbeat_ms, 1700000000123LL);

	/* unknown id: -ENOENT and the output untouched */
	memset(&got, 0x5a, sizeof(got));
	assert_int_equal(efs_meta_worker_get(m, "worker-2", &got), -ENOENT);
	assert_int_equal((unsigned char)got.worker_id[0], 0x5a);
	assert_int_equal(efs_meta_worker_get(m, "", &got), -ENOENT);
	efs_meta_close(m);
}

static void test_worker_list(void **state)
{
	struct efs_meta *m = open_ok(NULL, *state);
	struct efs_worker_info *list = (struct efs_worker_info *)(uintptr_t)0x1;
	size_t count = 99;

	/* empty store: NULL and 0 */
	assert_int_equal(efs_meta_worker_list(m, &list, &count), 0);
	assert_null(list);
	assert_int_equal(count, 0);

	register_ok(m, "w-c", "http://c:1", 3000);
	register_ok(m, "w-a", "http://a:1", 1000);
	register_ok(m, "w-b", "http://b:1", 2000);
	register_ok(m, "w-B", "http://B:1", 4000);

	assert_int_equal(efs_meta_worker_list(m, &list, &count), 0);
	assert_int_equal(count, 4);
	assert_non_null(list);
	/* ordered by id (byte order: uppercase first) */
	assert_string_equal(list[0].worker_id, "w-B");
	assert_string_equal(list[1].worker_id, "w-a");
	assert_string_equal(list[2].worker_id, "w-b");
	assert_string_equal(list[3].worker_id, "w-c");
	assert_string_equal(list[1].url, "http://a:1");
	assert_int_equal(list[1].registered_at_ms, 1000);
	assert_string_equal(list[3].url, "http://c:1");
	assert_int_equal(list[3].last_heartbeat_ms, 3000);
	assert_true(list[2].capacity_bytes == 100 * EFS_GIB);
	free(list);

	/* more rows than the first allocation */
	char id[16];
	for (int i = 0; i < 20; i++) {
		snprintf(id, sizeof(id), "n-%02d", i);
		register_ok(m, id, "http://n:1", i);
	}
	assert_int_equal(efs_meta_worker_list(m, &list, &count), 0);
	assert_int_equal(count, 24);
	for (size_t i = 1; i < count; i++)
		assert_true(strcmp(list[i - 1].worker_id, list[i].worker_id) < 0);
	assert_string_equal(list[0].worker_id, "n-00");
	assert_string_equal(list[19].worker_id, "n-19");
	assert_string_equal(list[20].worker_id, "w-B");
	assert_string_equal(list[23].worker_id, "w-c");
	free(list);
	efs_meta_close(m);
}

static void test_worker_heartbeat(void **state)
{
	struct efs_meta *m = open_ok(NULL, *state);
	struct efs_worker_info got;

	assert_int_equal(efs_meta_worker_heartbeat(m, "ghost", 1, 1, 1, 5000), -ENOENT);
	/* the failed heartbeat did not create a row */
	assert_int_equal(efs_meta_worker_get(m, "ghost", &got), -ENOENT);

	register_ok(m, "w1", "http://w1:8081", 1000);
	register_ok(m, "w2", "http://w2:8081", 1000);
	assert_int_equal(efs_meta_worker_heartbeat(m, "w1", 200 * EFS_GIB, 150 * EFS_GIB, 321,
						   9000),
			 0);
	got = get_ok(m, "w1");
	assert_true(got.capacity_bytes == 200 * EFS_GIB);
	assert_true(got.free_bytes == 150 * EFS_GIB);
	assert_true(got.chunk_count == 321);
	assert_int_equal(got.last_heartbeat_ms, 9000);
	/* unchanged by a heartbeat */
	assert_int_equal(got.registered_at_ms, 1000);
	assert_string_equal(got.url, "http://w1:8081");

	/* the other worker is untouched */
	got = get_ok(m, "w2");
	assert_int_equal(got.last_heartbeat_ms, 1000);
	assert_true(got.chunk_count == 5);

	/* a full disk */
	assert_int_equal(efs_meta_worker_heartbeat(m, "w1", 200 * EFS_GIB, 0, 400, 9500), 0);
	got = get_ok(m, "w1");
	assert_true(got.free_bytes == 0);
	assert_true(got.chunk_count == 400);
	assert_int_equal(got.last_heartbeat_ms, 9500);
	efs_meta_close(m);
}

static void test_worker_register_twice(void **state)
{
	struct efs_meta *m = open_ok(NULL, *state);
	struct efs_worker_info w, got;

	worker_fill(&w, "w1", "http://old:8081", 10 * EFS_GIB, 9 * EFS_GIB, 1, 1000);
	assert_int_equal(efs_meta_worker_register(m, &w), 0);

	/* re-registration after a restart, moved and resized */
	worker_fill(&w, "w1", "http://new:9091", 20 * EFS_GIB, 18 * EFS_GIB, 2, 50000);
	assert_int_equal(efs_meta_worker_register(m, &w), 0);
	got = get_ok(m, "w1");
	assert_int_equal(got.registered_at_ms, 1000);
	assert_int_equal(got.last_heartbeat_ms, 50000);
	assert_string_equal(got.url, "http://new:9091");
	assert_true(got.capacity_bytes == 20 * EFS_GIB);
	assert_true(got.free_bytes == 18 * EFS_GIB);
	assert_true(got.chunk_count == 2);

	/* still a single row */
	struct efs_worker_info *list = NULL;
	size_t count = 0;
	assert_int_equal(efs_meta_worker_list(m, &list, &count), 0);
	assert_int_equal(count, 1);
	free(list);
	efs_meta_close(m);
}

static void test_worker_retire_url(void **state)
{
	struct efs_meta *m = open_ok(NULL, *state);
	struct efs_worker_info got;

	register_ok(m, "old-1", "http://10.0.0.5:8081", 1000);
	register_ok(m, "old-2", "http://10.0.0.5:8081", 2000);
	register_ok(m, "new", "http://10.0.0.5:8081", 3000);
	register_ok(m, "other", "http://10.0.0.6:8081", 4000);

	assert_int_equal(efs_meta_worker_retire_url(m, "http://10.0.0.5:8081", "new"), 2);
	got = get_ok(m, "old-1");
	assert_int_equal(got.last_heartbeat_ms, 0);
	assert_int_equal(got.registered_at_ms, 1000);
	assert_string_equal(got.url, "http://10.0.0.5:8081");
	got = get_ok(m, "old-2");
	assert_int_equal(got.last_heartbeat_ms, 0);
	got = get_ok(m, "new");
	assert_int_equal(got.last_heartbeat_ms, 3000);
	got = get_ok(m, "other");
	assert_int_equal(got.last_heartbeat_ms, 4000);

	/* nothing left to retire */
	assert_int_equal(efs_meta_worker_retire_url(m, "http://10.0.0.5:8081", "new"), 0);
	/* unknown URL */
	assert_int_equal(efs_meta_worker_retire_url(m, "http://10.9.9.9:1", "new"), 0);
	/* the keeper itself is never retired */
	assert_int_equal(efs_meta_worker_retire_url(m, "http://10.0.0.6:8081", "other"), 0);
	got = get_ok(m, "other");
	assert_int_equal(got.last_heartbeat_ms, 4000);

	/* a retired worker that heartbeats again comes back */
	assert_int_equal(efs_meta_worker_heartbeat(m, "old-1", 1, 1, 1, 7000), 0);
	assert_int_equal(get_ok(m, "old-1").last_heartbeat_ms, 7000);
	efs_meta_close(m);
}

/* ---- persistence and migrations ----------------------------------------- */

static void test_reopen_keeps_data(void **state)
{
	const char *dir = *state;
	char db[PATH_MAX];
	int rows_before = 0, rows_after = 0, version = -1;
	int64_t max_before = 0, max_after = 0, applied_before = 0, applied_after = 0;

	path_in(db, sizeof(db), dir, "echofs.db");
	struct efs_meta *m = open_ok(NULL, dir);
	register_ok(m, "persist", "http://p:1", 1234);
	assert_int_equal(efs_meta_worker_heartbeat(m, "persist", 7, 6, 5, 5678), 0);
	efs_meta_close(m);

	schema_rows(db, &rows_before, &max_before, &applied_before);
	assert_int_equal(rows_before, (int)efs_migration_count);
	assert_int_equal(max_before, LATEST_SCHEMA_VERSION);
	assert_true(applied_before > 0);

	m = open_ok(NULL, dir);
	assert_int_equal(efs_meta_schema_version(m, &version), 0);
	assert_int_equal(version, LATEST_SCHEMA_VERSION);
	struct efs_worker_info got = get_ok(m, "persist");
	assert_string_equal(got.url, "http://p:1");
	assert_int_equal(got.registered_at_ms, 1234);
	assert_int_equal(got.last_heartbeat_ms, 5678);
	assert_true(got.capacity_bytes == 7);
	assert_true(got.free_bytes == 6);
	assert_true(got.chunk_count == 5);
	efs_meta_close(m);

	/* the migration was not applied a second time */
	schema_rows(db, &rows_after, &max_after, &applied_after);
	assert_int_equal(rows_after, (int)efs_migration_count);
	assert_int_equal(max_after, LATEST_SCHEMA_VERSION);
	assert_int_equal(applied_after, applied_before);
}

/* A migration numbered below the store's highest but never applied there
 * (two changes landed in the other order than their numbers) is applied
 * at the next open: version 12 (sessions.policy) removed as if the store
 * had been migrated to 13 by a build without 12. */
static void test_a_skipped_migration_is_applied(void **state)
{
	const char *dir = *state;
	char db[PATH_MAX];
	sqlite3 *raw = NULL;
	int rows = 0;
	int64_t max_version = 0, applied = 0;

	path_in(db, sizeof(db), dir, "echofs.db");
	efs_meta_close(open_ok(NULL, dir));
	assert_int_equal(sqlite3_open_v2(db, &raw, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(raw,
				      "ALTER TABLE sessions DROP COLUMN policy;"
				      "ALTER TABLE s3_uploads DROP COLUMN policy;"
				      "DELETE FROM efs_schema WHERE version = 12",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(raw);
	schema_rows(db, &rows, &max_version, &applied);
	assert_int_equal(rows, (int)efs_migration_count - 1);
	assert_int_equal(max_version, LATEST_SCHEMA_VERSION);
	assert_true(LATEST_SCHEMA_VERSION > 12);

	efs_meta_close(open_ok(NULL, dir));
	schema_rows(db, &rows, &max_version, &applied);
	assert_int_equal(rows, (int)efs_migration_count);
	assert_int_equal(sqlite3_open_v2(db, &raw, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(raw, "SELECT policy FROM sessions; SELECT policy FROM s3_uploads",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(raw);
}

/* One text value of a query on @db (NULL column: ""), into @out. */
static void raw_text(sqlite3 *db, const char *sql, char *out, size_t size)
{
	sqlite3_stmt *stmt = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
	const unsigned char *v = sqlite3_column_text(stmt, 0);
	snprintf(out, size, "%s", v ? (const char *)v : "");
	sqlite3_finalize(stmt);
}

/* A store at version 14 (as every store before versions 15 and 16 is:
 * the by-chunk indexes, chunks_garbage over every row, replicas a rowid
 * table with replicas_good) is migrated with its rows: every replica and
 * each of its columns survives the rebuild into a WITHOUT ROWID table,
 * the indexes 15 dropped are gone, chunks_garbage lists only rows with a
 * zero_since. */
static void test_versions_15_and_16_keep_the_rows(void **state)
{
	const char *dir = *state;
	char db[PATH_MAX], got[512];
	sqlite3 *raw = NULL;

	path_in(db, sizeof(db), dir, "echofs.db");
	efs_meta_close(open_ok(NULL, dir));
	assert_int_equal(sqlite3_open_v2(db, &raw, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(
	    sqlite3_exec(raw,
			 "DROP TABLE replicas;"
			 "CREATE TABLE replicas (chunk_id TEXT NOT NULL, worker_id TEXT NOT NULL,"
			 " state INTEGER NOT NULL DEFAULT 0, created_at BIGINT NOT NULL,"
			 " PRIMARY KEY (chunk_id, worker_id));"
			 "CREATE INDEX replicas_by_worker ON replicas (worker_id);"
			 "ALTER TABLE replicas ADD COLUMN seen_at BIGINT;"
			 "ALTER TABLE replicas ADD COLUMN bad_marks BIGINT NOT NULL DEFAULT 0;"
			 "CREATE INDEX replicas_good ON replicas (chunk_id, worker_id, state)"
			 " WHERE state = 0;"
			 "CREATE INDEX file_chunks_by_chunk ON file_chunks (chunk_id);"
			 "CREATE INDEX session_chunks_by_chunk ON session_chunks (chunk_id);"
			 "DROP INDEX chunks_garbage;"
			 "CREATE INDEX chunks_garbage ON chunks (zero_since);"
			 "INSERT INTO replicas VALUES ('c1', 'w1', 0, 100, NULL, 0),"
			 " ('c1', 'w2', 1, 101, 555, 2), ('c2', 'w1', 0, 102, 556, 0);"
			 "DELETE FROM efs_schema WHERE version IN (15, 16)",
			 NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(raw);

	struct efs_meta *m = open_ok(NULL, dir);
	efs_meta_close(m);
	assert_int_equal(sqlite3_open_v2(db, &raw, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	raw_text(raw,
		 "SELECT group_concat(chunk_id || '/' || worker_id || '/' || state || '/' ||"
		 " created_at || '/' || COALESCE(seen_at, '-') || '/' || bad_marks, ' ')"
		 " FROM (SELECT * FROM replicas ORDER BY chunk_id, worker_id)",
		 got, sizeof(got));
	assert_string_equal(got, "c1/w1/0/100/-/0 c1/w2/1/101/555/2 c2/w1/0/102/556/0");
	/* No rowid: the rows live in the key's B-tree. */
	assert_int_not_equal(sqlite3_exec(raw, "SELECT rowid FROM replicas", NULL, NULL, NULL),
			     SQLITE_OK);
	raw_text(raw,
		 "SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlite_master"
		 " WHERE type = 'index' AND tbl_name IN ('replicas', 'file_chunks',"
		 " 'session_chunks', 'chunks') AND sql IS NOT NULL ORDER BY name)",
		 got, sizeof(got));
	assert_string_equal(got, "chunks_garbage replicas_by_worker");
	raw_text(raw, "SELECT sql FROM sqlite_master WHERE name = 'chunks_garbage'", got,
		 sizeof(got));
	assert_non_null(strstr(got, "WHERE zero_since IS NOT NULL"));
	raw_text(raw, "SELECT sql FROM sqlite_master WHERE name = 'replicas_by_worker'", got,
		 sizeof(got));
	assert_non_null(strstr(got, "(worker_id, created_at)"));
	sqlite3_close(raw);
}

static void test_two_stores_one_file(void **state)
{
	struct efs_meta *a = open_ok(NULL, *state);
	struct efs_meta *b = open_ok(NULL, *state);
	int version = -1;

	register_ok(a, "shared", "http://s:1", 10);
	assert_int_equal(get_ok(b, "shared").registered_at_ms, 10);
	assert_int_equal(efs_meta_worker_heartbeat(b, "shared", 1, 1, 1, 20), 0);
	assert_int_equal(get_ok(a, "shared").last_heartbeat_ms, 20);
	assert_int_equal(efs_meta_schema_version(b, &version), 0);
	assert_int_equal(version, LATEST_SCHEMA_VERSION);
	efs_meta_close(a);
	efs_meta_close(b);
}

/* ---- concurrency -------------------------------------------------------- */

#define BEATS 200

struct beat_thread {
	struct efs_meta *m;
	char worker_id[16];
	int beats;
	int failures;
	int first_error;
};

/* Beats its own worker @beats times, and a worker every thread shares. */
static void *beat_main(void *arg)
{
	struct beat_thread *t = arg;
	for (int i = 0; i < t->beats; i++) {
		int r = efs_meta_worker_heartbeat(t->m, t->worker_id, 1000, (uint64_t)(1000 - i),
						  (uint64_t)i, 100000 + i);
		if (r == 0)
			r = efs_meta_worker_heartbeat(t->m, "beat-shared", 1, 1, (uint64_t)i,
						      100000 + i);
		if (r != 0) {
			if (!t->failures)
				t->first_error = r;
			t->failures++;
		}
	}
	return NULL;
}

/* @nthreads threads beat @beats times each on one store. */
static void run_heartbeat_threads(const char *dir, int nthreads, int beats)
{
	struct efs_meta *m = open_ok(NULL, dir);
	struct beat_thread *threads = calloc((size_t)nthreads, sizeof(*threads));
	pthread_t *tids = calloc((size_t)nthreads, sizeof(*tids));

	assert_non_null(threads);
	assert_non_null(tids);
	register_ok(m, "beat-shared", "http://beat:1", 1);
	for (int i = 0; i < nthreads; i++) {
		threads[i].m = m;
		threads[i].beats = beats;
		snprintf(threads[i].worker_id, sizeof(threads[i].worker_id), "beat-%d", i);
		register_ok(m, threads[i].worker_id, "http://beat:1", 1);
	}
	for (int i = 0; i < nthreads; i++)
		assert_int_equal(pthread_create(&tids[i], NULL, beat_main, &threads[i]), 0);
	for (int i = 0; i < nthreads; i++)
		assert_int_equal(pthread_join(tids[i], NULL), 0);

	for (int i = 0; i < nthreads; i++) {
		if (threads[i].failures)
			print_error("%s: %d heartbeats failed, first with %d\n",
				    threads[i].worker_id, threads[i].failures,
				    threads[i].first_error);
		assert_int_equal(threads[i].failures, 0);
		struct efs_worker_info got = get_ok(m, threads[i].worker_id);
		assert_true(got.chunk_count == (uint64_t)beats - 1);
		assert_true(got.free_bytes == 1000 - ((uint64_t)beats - 1));
		assert_int_equal(got.last_heartbeat_ms, 100000 + beats - 1);
		assert_int_equal(got.registered_at_ms, 1);
	}
	/* the shared worker holds one of the final beats */
	struct efs_worker_info shared = get_ok(m, "beat-shared");
	assert_in_range(shared.last_heartbeat_ms, 100000, 100000 + beats - 1);
	assert_int_equal(efs_meta_ping(m), 0);
	free(threads);
	free(tids);
	efs_meta_close(m);
}

static void test_concurrent_heartbeats(void **state)
{
	run_heartbeat_threads(*state, 4, BEATS);
}

/* More threads than the store has connections: they wait their turn. */
static void test_more_threads_than_connections(void **state)
{
	run_heartbeat_threads(*state, 12, 30);
}

#define OPENERS 8

struct open_thread {
	const char *dir;
	pthread_barrier_t *start; /* NULL: start at once */
	struct efs_meta *m;
	int result;
	int version;
	char err[256];
};

static void *open_main(void *arg)
{
	struct open_thread *t = arg;
	if (t->start)
		pthread_barrier_wait(t->start);
	t->result = efs_meta_open(NULL, t->dir, &t->m, t->err, sizeof(t->err));
	if (t->result == 0)
		t->result = efs_meta_schema_version(t->m, &t->version);
	return NULL;
}

/* Another connection is in a write transaction on a new database (as a
 * second master starting at the same moment would be) for 300 ms: the open
 * waits for it, within the 5 s busy timeout, rather than failing. */
static void test_open_waits_for_lock(void **state)
{
	const char *dir = *state;
	char db[PATH_MAX];
	sqlite3 *other = NULL;
	struct open_thread t;
	pthread_t tid;

	path_in(db, sizeof(db), dir, "echofs.db");
	assert_int_equal(sqlite3_open_v2(db, &other, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
					 NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "CREATE TABLE other_tool (x INTEGER)", NULL, NULL,
				      NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

	memset(&t, 0, sizeof(t));
	t.dir = dir;
	assert_int_equal(pthread_create(&tid, NULL, open_main, &t), 0);
	efs_sleep_ms(300);
	assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(pthread_join(tid, NULL), 0);
	sqlite3_close(other);

	if (t.result != 0) {
		efs_meta_close(t.m);
		fail_msg("efs_meta_open did not wait for the lock: %d: %s", t.result, t.err);
	}
	assert_int_equal(t.version, LATEST_SCHEMA_VERSION);
	register_ok(t.m, "after-wait", "http://w:1", 7);
	assert_int_equal(get_ok(t.m, "after-wait").registered_at_ms, 7);
	efs_meta_close(t.m);
}

struct write_thread {
	struct efs_meta *m;
	int result;
};

static void *register_main(void *arg)
{
	struct write_thread *t = arg;
	struct efs_worker_info w;
	worker_fill(&w, "while-busy", "http://busy:1", 100 * EFS_GIB, 60 * EFS_GIB, 5, 9);
	t->result = efs_meta_worker_register(t->m, &w);
	return NULL;
}

/* Another process (here a second connection) holds the database's write
 * lock past the driver's 5 s busy timeout: the store's BEGIN IMMEDIATE
 * answers SQLITE_BUSY once, and the store retries it (TX_ATTEMPTS times)
 * instead of failing the write at the first busy answer. */
static void test_busy_begin_is_retried(void **state)
{
	const char *dir = *state;
	char db[PATH_MAX];
	sqlite3 *other = NULL;
	struct write_thread t = {0};
	pthread_t tid;

	t.m = open_ok(NULL, dir);
	register_ok(t.m, "before", "http://w:1", 1); /* the writer's connection is open */
	path_in(db, sizeof(db), dir, "echofs.db");
	assert_int_equal(sqlite3_open_v2(db, &other, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

	assert_int_equal(pthread_create(&tid, NULL, register_main, &t), 0);
	efs_sleep_ms(5500); /* one busy timeout (5 s) and a half */
	assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(pthread_join(tid, NULL), 0);
	sqlite3_close(other);

	assert_int_equal(t.result, 0);
	assert_int_equal(get_ok(t.m, "while-busy").registered_at_ms, 9);
	efs_meta_close(t.m);
}

/* Several masters starting at once on a new database: one migrates, the
 * others wait and find the schema in place. A race is timing dependent, so
 * this runs OPEN_ROUNDS times, each on a new database. */
static void concurrent_open_round(const char *dir)
{
	struct open_thread threads[OPENERS];
	pthread_t tids[OPENERS];
	pthread_barrier_t start;
	char db[PATH_MAX];
	int rows = 0;
	int64_t max_version = 0, applied_at = 0;

	assert_int_equal(pthread_barrier_init(&start, NULL, OPENERS), 0);
	for (int i = 0; i < OPENERS; i++) {
		memset(&threads[i], 0, sizeof(threads[i]));
		threads[i].dir = dir;
		threads[i].start = &start;
	}
	for (int i = 0; i < OPENERS; i++)
		assert_int_equal(pthread_create(&tids[i], NULL, open_main, &threads[i]), 0);
	for (int i = 0; i < OPENERS; i++)
		assert_int_equal(pthread_join(tids[i], NULL), 0);
	pthread_barrier_destroy(&start);

	int failed = 0;
	for (int i = 0; i < OPENERS; i++) {
		if (threads[i].result == 0)
			continue;
		print_error("opener %d: %d: %s\n", i, threads[i].result, threads[i].err);
		failed++;
	}
	if (failed) {
		for (int i = 0; i < OPENERS; i++)
			efs_meta_close(threads[i].m); /* NULL when its open failed */
		fail_msg("%d of %d concurrent opens of a new database failed", failed, OPENERS);
	}
	for (int i = 0; i < OPENERS; i++) {
		assert_int_equal(threads[i].version, LATEST_SCHEMA_VERSION);
		/* Every master opening a new store at once reads one cluster id. */
		assert_true(efs_cluster_id_valid(efs_meta_cluster_id(threads[i].m)));
		assert_string_equal(efs_meta_cluster_id(threads[i].m),
				    efs_meta_cluster_id(threads[0].m));
	}
	register_ok(threads[0].m, "seen-by-all", "http://x:1", 42);
	for (int i = 0; i < OPENERS; i++) {
		assert_int_equal(get_ok(threads[i].m, "seen-by-all").registered_at_ms, 42);
		efs_meta_close(threads[i].m);
	}
	path_in(db, sizeof(db), dir, "echofs.db");
	schema_rows(db, &rows, &max_version, &applied_at);
	assert_int_equal(rows, (int)efs_migration_count);
	assert_int_equal(max_version, LATEST_SCHEMA_VERSION);
}

#define OPEN_ROUNDS 50

static void test_concurrent_open(void **state)
{
	char sub[PATH_MAX], name[32];

	for (int round = 0; round < OPEN_ROUNDS; round++) {
		snprintf(name, sizeof(name), "round-%d", round);
		path_in(sub, sizeof(sub), *state, name);
		concurrent_open_round(sub);
	}
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, tmpdir_setup, tmpdir_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_open_data_dir),
		T(test_open_missing_data_dir),
		T(test_open_sqlite_url),
		T(test_open_bad_url),
		T(test_open_unusable_path),
		T(test_worker_register_get),
		T(test_worker_list),
		T(test_worker_heartbeat),
		T(test_worker_register_twice),
		T(test_worker_retire_url),
		T(test_reopen_keeps_data),
		T(test_a_skipped_migration_is_applied),
		T(test_versions_15_and_16_keep_the_rows),
		T(test_two_stores_one_file),
		T(test_concurrent_heartbeats),
		T(test_more_threads_than_connections),
		T(test_open_waits_for_lock),
		T(test_busy_begin_is_retried),
		T(test_concurrent_open),
	};

	/* the store logs migrations at info level; keep the output to failures */
	efs_log_set_level(EFS_LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
