/* SPDX-License-Identifier: MIT */
/* test_meta_files.c - unit tests of the data-path operations of the metadata
 * store (include/echofs/meta.h) on SQLite, each in a fresh directory:
 * sessions, chunks and their replicas, files (also those of one chunk
 * recorded without a session), reference counting and the garbage the
 * collector takes.
 *
 * When ECHOFS_TEST_PG_URL is set (postgres://..., e.g. from
 * `scripts/services.sh start DIR`), the same tests run a second time on
 * PostgreSQL, each on a database of its own (efs_unit_<pid>_<n>, created
 * through libpq and dropped at teardown). Unset, only SQLite runs.
 *
 * When ECHOFS_TEST_DYNAMODB=1 and the AWS variables name a DynamoDB
 * (AWS_ENDPOINT_URL_DYNAMODB from `scripts/aws_local.sh start DIR`'s env),
 * or ECHOFS_TEST_DYNAMODB is that endpoint's URL (http://127.0.0.1:PORT,
 * keys then default to any: DynamoDB Local checks none; test/all.sh does
 * this), they run a third time on DynamoDB, each test on three tables of its own
 * (efsu_<pid>_<n>_files...) created by efs_meta_dynamodb_tables and dropped
 * at teardown, with the same workers and replicas as the SQL runs. With ECHOFS_REQUIRE_AWS_LOCAL=1 a
 * missing DynamoDB fails the run instead of skipping it.
 *
 * Reference counts are not visible through the interface; they are checked
 * through what they decide: whether efs_meta_garbage_list names a chunk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "echofs/hash.h"
#include "echofs/log.h"
#include "echofs/meta.h"
#include "echofs/util.h"
#include "meta/backend.h"
#include "meta/dynamodb.h"

#include <ftw.h>
#include <pthread.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WORKERS 3
#define MAX_GARBAGE 64

static const char *const worker_ids[WORKERS] = {"w1", "w2", "w3"};

struct fixture {
	char tables[3][64]; /* DynamoDB run: this test's tables */
	struct efs_meta_dynamodb_config ddb;
	char dir[64];
	char db[64]; /* the PostgreSQL database of this test, or "" (SQLite) */
	struct efs_meta *m;
	int64_t now; /* the "now" the test passes to the store */
};

/* ---- DynamoDB ---------------------------------------------------------- */

/* True while the DynamoDB run is on. */
static bool ddb_on;
static unsigned ddb_tables;
static int ddb_setup(struct fixture *f)
{
	char err[256] = "";
	static const char *const kinds[3] = {"files", "chunks", "sessions"};
	unsigned n = ++ddb_tables;
	for (int i = 0; i < 3; i++)
		snprintf(f->tables[i], sizeof(f->tables[i]), "efsu_%ld_%u_%s", (long)getpid(), n,
			 kinds[i]);
	f->ddb.files_table = f->tables[0];
	f->ddb.chunks_table = f->tables[1];
	f->ddb.sessions_table = f->tables[2];
	if (efs_meta_dynamodb_tables(&f->ddb, false, err, sizeof(err)) < 0 ||
	    efs_meta_open_dynamodb(&f->ddb, &f->m, err, sizeof(err)) < 0) {
		print_error("DynamoDB: %s\n", err);
		return -1;
	}
	if (strcmp(efs_meta_backend(f->m), "dynamodb") != 0)
		return -1;
	f->now = efs_now_ms();
	return 0;
}

/* A second handle on the fixture's store (a second master). */
static int open_second(struct fixture *f, struct efs_meta **out);

/* ---- PostgreSQL -------------------------------------------------------- */

/* ECHOFS_TEST_PG_URL while the PostgreSQL run is on, NULL for SQLite. */
static const char *pg_url;
static unsigned pg_databases;

/* @base (postgres://user@host:port/db?query) naming database @db instead. */
static int pg_url_with_db(const char *base, const char *db, char *out, size_t size)
{
	const char *auth = strstr(base, "://");
	if (!auth)
		return -EINVAL;
	const char *path = strchr(auth + 3, '/');
	const char *query = strchr(auth + 3, '?');
	size_t head = path ? (size_t)(path - base) : query ? (size_t)(query - base) : strlen(base);
	if (query && query < base + head)
		head = (size_t)(query - base);
	int n = snprintf(out, size, "%.*s/%s%s", (int)head, base, db, query ? query : "");
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* Runs one statement on the server's own database (CREATE/DROP DATABASE). */
static int pg_admin(const char *sql)
{
	PGconn *c = PQconnectdb(pg_url);
	int r = 0;
	if (PQstatus(c) != CONNECTION_OK) {
		print_error("cannot connect to %s: %s", pg_url, PQerrorMessage(c));
		r = -1;
	} else {
		PGresult *res = PQexec(c, sql);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			print_error("%s: %s", sql, PQresultErrorMessage(res));
			r = -1;
		}
		PQclear(res);
	}
	PQfinish(c);
	return r;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	return remove(path);
}

static int64_t worker_heartbeat(size_t i)
{
	return 5000 + (int64_t)i * 111;
}

static void worker_url(size_t i, char *url, size_t size)
{
	snprintf(url, size, "http://10.0.0.%zu:9000", i + 1);
}

/* Registers the fixture's WORKERS workers, in @zones (NULL: none). 0 or
 * -1. */
static int register_workers_in(struct fixture *f, const char *const *zones)
{
	for (size_t i = 0; i < WORKERS; i++) {
		struct efs_worker_info w;
		memset(&w, 0, sizeof(w));
		efs_strlcpy(w.worker_id, worker_ids[i], sizeof(w.worker_id));
		worker_url(i, w.url, sizeof(w.url));
		w.capacity_bytes = 1000000;
		w.free_bytes = 500000;
		w.registered_at_ms = 1000;
		w.last_heartbeat_ms = worker_heartbeat(i);
		if (zones)
			efs_strlcpy(w.zone, zones[i], sizeof(w.zone));
		if (efs_meta_worker_register(f->m, &w) < 0)
			return -1;
	}
	return 0;
}

/* The fixture's WORKERS workers, registered on every backend. */
static int register_workers(struct fixture *f)
{
	if (register_workers_in(f, NULL) < 0)
		return -1;
	f->now = efs_now_ms();
	return 0;
}

static int setup_store(void **state, bool workers)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256] = "", url[512], sql[128];
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/efs-meta-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	if (ddb_on) {
		*state = f;
		if (ddb_setup(f) < 0)
			return -1;
		return workers ? register_workers(f) : 0;
	}
	if (pg_url) {
		snprintf(f->db, sizeof(f->db), "efs_unit_%ld_%u", (long)getpid(), ++pg_databases);
		snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->db);
		if (pg_url_with_db(pg_url, f->db, url, sizeof(url)) < 0 || pg_admin(sql) < 0) {
			rmdir(f->dir);
			free(f);
			return -1;
		}
	}
	if (efs_meta_open(pg_url ? url : NULL, f->dir, &f->m, err, sizeof(err)) < 0) {
		print_error("efs_meta_open: %s\n", err);
		if (f->db[0]) {
			snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", f->db);
			pg_admin(sql);
		}
		rmdir(f->dir);
		free(f);
		return -1;
	}
	if (pg_url && strcmp(efs_meta_backend(f->m), "postgres") != 0) {
		print_error("backend is %s, not postgres\n", efs_meta_backend(f->m));
		return -1;
	}
	*state = f;
	if (!workers) {
		f->now = efs_now_ms();
		return 0;
	}
	return register_workers(f);
}

static int setup(void **state)
{
	return setup_store(state, true);
}

/* A store no worker ever registered with: the S3 chunk mode. */
static int setup_without_workers(void **state)
{
	return setup_store(state, false);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int r = 0;
	efs_meta_close(f->m);
	nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (f->tables[0][0]) {
		char err[256] = "";
		if (efs_meta_dynamodb_tables(&f->ddb, true, err, sizeof(err)) < 0) {
			print_error("DynamoDB: %s\n", err);
			r = -1;
		}
	}
	if (f->db[0]) {
		char sql[128];
		snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", f->db);
		r = pg_admin(sql);
	}
	free(f);
	return r;
}

/* ---- helpers ----------------------------------------------------------- */

/* Chunk @n: a real-looking id, sizes that tell chunks apart. */
static struct efs_chunk_info chunk(unsigned n)
{
	struct efs_chunk_info c;
	char label[32];
	int len = snprintf(label, sizeof(label), "meta-chunk-%u", n);
	memset(&c, 0, sizeof(c));
	efs_sha256_hex(label, (size_t)len, c.chunk_id);
	c.size = 1000 * (uint64_t)n + 1;
	c.stored_size = 600 * (uint64_t)n + 1;
	c.compressed = n % 2 == 1;
	return c;
}

/* Session and file ids: 32 hex digits. */
static void session_id(unsigned n, char id[EFS_ID_MAX + 1])
{
	snprintf(id, EFS_ID_MAX + 1, "%032x", 0x5e550000u + n);
}

static void file_id(unsigned n, char id[EFS_ID_MAX + 1])
{
	snprintf(id, EFS_ID_MAX + 1, "%032x", 0xf11e0000u + n);
}

static struct efs_session_info session_info(unsigned n, const char *owner, int64_t expires_at)
{
	struct efs_session_info s;
	memset(&s, 0, sizeof(s));
	session_id(n, s.session_id);
	efs_strlcpy(s.owner, owner, sizeof(s.owner));
	snprintf(s.name, sizeof(s.name), "upload-%u.bin", n);
	s.declared_size = -1;
	s.chunk_size = 4 * EFS_MIB;
	s.hidden = false;
	s.created_at_ms = 1000;
	s.expires_at_ms = expires_at;
	return s;
}

static void new_session(struct fixture *f, unsigned n, const char *owner)
{
	struct efs_session_info s = session_info(n, owner, f->now + 3600000);
	assert_int_equal(efs_meta_session_create(f->m, &s), 0);
}

/* Puts chunk @c at @index of session @n, stored on every worker. */
static int put(struct fixture *f, unsigned n, uint64_t index, const struct efs_chunk_info *c,
	       bool dedup)
{
	char sid[EFS_ID_MAX + 1];
	session_id(n, sid);
	return efs_meta_session_put_chunk(f->m, sid, index, c, worker_ids, WORKERS, dedup, f->now,
					  f->now + 60000, 0);
}

static int64_t session_version(struct fixture *f, unsigned n)
{
	char sid[EFS_ID_MAX + 1];
	struct efs_session_info s;
	session_id(n, sid);
	assert_int_equal(efs_meta_session_get(f->m, sid, &s), 0);
	return s.version;
}

static struct efs_file_info file_info(unsigned n, const char *owner, int64_t created_at,
				      uint64_t chunk_count)
{
	struct efs_file_info fi;
	memset(&fi, 0, sizeof(fi));
	file_id(n, fi.file_id);
	efs_strlcpy(fi.owner, owner, sizeof(fi.owner));
	snprintf(fi.name, sizeof(fi.name), "file-%u.txt", n);
	fi.size = 12345 + n;
	efs_sha256_hex(fi.name, strlen(fi.name), fi.sha256);
	fi.chunk_size = 4 * EFS_MIB;
	fi.chunk_count = chunk_count;
	fi.replication = 3;
	fi.stored_bytes = 777 + n;
	fi.created_at_ms = created_at;
	return fi;
}

/* Completes session @session_n (at its current version) as file @file_n. */
static void complete(struct fixture *f, unsigned session_n, const struct efs_file_info *fi)
{
	char sid[EFS_ID_MAX + 1];
	session_id(session_n, sid);
	assert_int_equal(efs_meta_session_complete(f->m, sid, session_version(f, session_n), fi, 0),
			 0);
}

/* A file of @owner made of chunks @chunks[0..count-1] through a session. */
static void make_file(struct fixture *f, unsigned n, const char *owner, int64_t created_at,
		      const unsigned *chunks, size_t count)
{
	struct efs_file_info fi = file_info(n, owner, created_at, count);
	new_session(f, 1000 + n, owner);
	for (size_t i = 0; i < count; i++) {
		struct efs_chunk_info c = chunk(chunks[i]);
		assert_int_equal(put(f, 1000 + n, i, &c, false), 0);
	}
	complete(f, 1000 + n, &fi);
}

/* Whether garbage_list(@before) names chunk @c. */
static bool is_garbage(struct fixture *f, int64_t before, const struct efs_chunk_info *c)
{
	char ids[MAX_GARBAGE][65];
	size_t count = SIZE_MAX;
	assert_int_equal(efs_meta_garbage_list(f->m, before, MAX_GARBAGE, ids, &count), 0);
	assert_true(count <= MAX_GARBAGE);
	for (size_t i = 0; i < count; i++)
		if (strcmp(ids[i], c->chunk_id) == 0)
			return true;
	return false;
}

static size_t garbage_count(struct fixture *f, int64_t before)
{
	char ids[MAX_GARBAGE][65];
	size_t count = SIZE_MAX;
	assert_int_equal(efs_meta_garbage_list(f->m, before, MAX_GARBAGE, ids, &count), 0);
	return count;
}

static const struct efs_replica *find_replica(const struct efs_replica *replicas, unsigned count,
					      const char *worker_id)
{
	for (unsigned i = 0; i < count; i++)
		if (strcmp(replicas[i].worker_id, worker_id) == 0)
			return &replicas[i];
	return NULL;
}

/* The replicas are exactly the three workers, with their urls and
 * heartbeats; @bad_worker (or NULL) is the one marked bad. */
static void expect_worker_replicas(const struct efs_replica *replicas, unsigned count,
				   const char *bad_worker)
{
	assert_int_equal(count, WORKERS);
	for (size_t i = 0; i < WORKERS; i++) {
		char url[EFS_URL_MAX + 1];
		const struct efs_replica *r = find_replica(replicas, count, worker_ids[i]);
		assert_non_null(r);
		worker_url(i, url, sizeof(url));
		assert_string_equal(r->url, url);
		assert_int_equal(r->last_heartbeat_ms, worker_heartbeat(i));
		assert_int_equal(r->bad, bad_worker && strcmp(bad_worker, worker_ids[i]) == 0);
	}
}

static void expect_chunk(struct fixture *f, const struct efs_chunk_info *c,
			 const char *bad_worker)
{
	struct efs_chunk_info got;
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	unsigned count = 0;
	memset(&got, 0, sizeof(got));
	assert_int_equal(efs_meta_chunk_get(f->m, c->chunk_id, &got, replicas, &count), 0);
	assert_string_equal(got.chunk_id, c->chunk_id);
	assert_int_equal(got.size, c->size);
	assert_int_equal(got.stored_size, c->stored_size);
	assert_int_equal(got.compressed, c->compressed);
	expect_worker_replicas(replicas, count, bad_worker);
}

static void expect_no_chunk(struct fixture *f, const struct efs_chunk_info *c)
{
	struct efs_chunk_info got;
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	unsigned count = 0;
	assert_int_equal(efs_meta_chunk_get(f->m, c->chunk_id, &got, replicas, &count), -ENOENT);
}

static void expect_same_file(const struct efs_file_info *got, const struct efs_file_info *want)
{
	assert_string_equal(got->file_id, want->file_id);
	assert_string_equal(got->owner, want->owner);
	assert_string_equal(got->name, want->name);
	assert_int_equal(got->size, want->size);
	assert_string_equal(got->sha256, want->sha256);
	assert_int_equal(got->chunk_size, want->chunk_size);
	assert_int_equal(got->chunk_count, want->chunk_count);
	assert_int_equal(got->replication, want->replication);
	assert_int_equal(got->stored_bytes, want->stored_bytes);
	assert_int_equal(got->created_at_ms, want->created_at_ms);
}

/* ---- sessions ---------------------------------------------------------- */

static void test_session_create_and_get(void **state)
{
	struct fixture *f = *state;
	struct efs_session_info s = session_info(1, "alice", 99999), got;

	s.hidden = true;
	s.version = 42; /* ignored: a session starts at version 0 */
	assert_int_equal(efs_meta_session_create(f->m, &s), 0);
	memset(&got, 0x55, sizeof(got));
	assert_int_equal(efs_meta_session_get(f->m, s.session_id, &got), 0);
	assert_string_equal(got.session_id, s.session_id);
	assert_string_equal(got.owner, "alice");
	assert_string_equal(got.name, s.name);
	assert_int_equal(got.declared_size, -1);
	assert_int_equal(got.chunk_size, 4 * EFS_MIB);
	assert_true(got.hidden);
	assert_int_equal(got.version, 0);
	assert_int_equal(got.created_at_ms, 1000);
	assert_int_equal(got.expires_at_ms, 99999);
	assert_string_equal(got.policy, ""); /* the default */

	struct efs_session_info s2 = session_info(2, "bob", 123456);
	s2.declared_size = 10 * (int64_t)EFS_GIB;
	efs_strlcpy(s2.policy, "ec:4+2", sizeof(s2.policy));
	assert_int_equal(efs_meta_session_create(f->m, &s2), 0);
	assert_int_equal(efs_meta_session_get(f->m, s2.session_id, &got), 0);
	assert_int_equal(got.declared_size, 10 * (int64_t)EFS_GIB);
	assert_false(got.hidden);
	assert_string_equal(got.owner, "bob");
	assert_int_equal(got.expires_at_ms, 123456);
	/* SQL keeps the session's policy (schema version 12); DynamoDB only
	 * the default (the master refuses EC there). */
	bool dynamodb = strcmp(efs_meta_backend(f->m), "dynamodb") == 0;
	assert_string_equal(got.policy, dynamodb ? "" : "ec:4+2");
}

static void test_session_create_conflict_and_unknown(void **state)
{
	struct fixture *f = *state;
	struct efs_session_info s = session_info(3, "alice", 99999), got;
	char sid[EFS_ID_MAX + 1];

	assert_int_equal(efs_meta_session_create(f->m, &s), 0);
	assert_int_equal(efs_meta_session_create(f->m, &s), -EEXIST);
	session_id(4, sid);
	got.version = 77;
	assert_int_equal(efs_meta_session_get(f->m, sid, &got), -ENOENT);
	assert_int_equal(got.version, 77); /* untouched */
}

static void test_put_chunk_adds_chunk_with_replicas(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1), got;

	new_session(f, 1, "alice");
	assert_int_equal(put(f, 1, 0, &a, false), 0);
	assert_int_equal(session_version(f, 1), 1);
	expect_chunk(f, &a, NULL);

	/* NULL replicas: just the chunk */
	memset(&got, 0, sizeof(got));
	assert_int_equal(efs_meta_chunk_get(f->m, a.chunk_id, &got, NULL, NULL), 0);
	assert_int_equal(got.size, a.size);

	/* each put bumps the version */
	struct efs_chunk_info b = chunk(2);
	assert_int_equal(put(f, 1, 1, &b, false), 0);
	assert_int_equal(session_version(f, 1), 2);
}

/* The worker calls on every backend (test_meta_sqlite.c has the details
 * on SQL): registration keeps registered_at, a heartbeat of an unknown
 * worker is -ENOENT, the list is ordered by id, retire_url marks every
 * other worker at the URL dead once, the zone is kept and replaced. */
static void test_worker_calls(void **state)
{
	struct fixture *f = *state;
	struct efs_worker_info w, got, *list = NULL;
	size_t count = 0, before = 0;

	assert_int_equal(efs_meta_worker_list(f->m, &list, &count), 0);
	before = count;
	free(list);
	const char *ids[3] = {"rt-old", "rt-new", "rt-B"};
	for (int i = 0; i < 3; i++) {
		memset(&w, 0, sizeof(w));
		efs_strlcpy(w.worker_id, ids[i], sizeof(w.worker_id));
		efs_strlcpy(w.url, "http://10.0.0.5:8081", sizeof(w.url));
		w.capacity_bytes = 100;
		w.free_bytes = 50;
		w.registered_at_ms = 1000 + i;
		w.last_heartbeat_ms = 2000 + i;
		assert_int_equal(efs_meta_worker_register(f->m, &w), 0);
	}
	/* registered again, moved: registered_at kept */
	efs_strlcpy(w.url, "http://10.0.0.6:8081", sizeof(w.url));
	w.registered_at_ms = 9999;
	w.last_heartbeat_ms = 5000;
	assert_int_equal(efs_meta_worker_register(f->m, &w), 0);
	assert_int_equal(efs_meta_worker_get(f->m, "rt-B", &got), 0);
	assert_int_equal(got.registered_at_ms, 1002);
	assert_int_equal(got.last_heartbeat_ms, 5000);
	assert_string_equal(got.url, "http://10.0.0.6:8081");

	assert_int_equal(efs_meta_worker_heartbeat(f->m, "ghost", 1, 1, 1, 7000), -ENOENT);
	assert_int_equal(efs_meta_worker_get(f->m, "ghost", &got), -ENOENT);
	assert_int_equal(efs_meta_worker_heartbeat(f->m, "rt-old", 300, 200, 7, 7000), 0);
	assert_int_equal(efs_meta_worker_get(f->m, "rt-old", &got), 0);
	assert_int_equal(got.last_heartbeat_ms, 7000);
	assert_true(got.capacity_bytes == 300 && got.free_bytes == 200 && got.chunk_count == 7);

	assert_int_equal(efs_meta_worker_list(f->m, &list, &count), 0);
	assert_int_equal(count, before + 3);
	for (size_t i = 1; i < count; i++)
		assert_true(strcmp(list[i - 1].worker_id, list[i].worker_id) < 0);
	free(list);

	/* rt-B moved away: only rt-old is retired, once */
	assert_int_equal(efs_meta_worker_retire_url(f->m, "http://10.0.0.5:8081", "rt-new"), 1);
	assert_int_equal(efs_meta_worker_get(f->m, "rt-old", &got), 0);
	assert_int_equal(got.last_heartbeat_ms, 0);
	assert_int_equal(efs_meta_worker_get(f->m, "rt-new", &got), 0);
	assert_int_equal(got.last_heartbeat_ms, 2001);
	assert_int_equal(efs_meta_worker_retire_url(f->m, "http://10.0.0.5:8081", "rt-new"), 0);

	/* The zone: none by default, recorded, kept by heartbeats, replaced
	 * (or cleared) by the next registration, listed. */
	assert_int_equal(efs_meta_worker_get(f->m, "rt-old", &got), 0);
	assert_string_equal(got.zone, "");
	efs_strlcpy(w.zone, "eu-west-1a", sizeof(w.zone));
	assert_int_equal(efs_meta_worker_register(f->m, &w), 0);
	assert_int_equal(efs_meta_worker_heartbeat(f->m, "rt-B", 300, 200, 7, 8000), 0);
	assert_int_equal(efs_meta_worker_get(f->m, "rt-B", &got), 0);
	assert_string_equal(got.zone, "eu-west-1a");
	assert_int_equal(efs_meta_worker_list(f->m, &list, &count), 0);
	int zoned = 0;
	for (size_t i = 0; i < count; i++)
		if (strcmp(list[i].worker_id, "rt-B") == 0)
			zoned += strcmp(list[i].zone, "eu-west-1a") == 0;
		else if (strncmp(list[i].worker_id, "rt-", 3) == 0)
			assert_string_equal(list[i].zone, "");
	free(list);
	assert_int_equal(zoned, 1);
	w.zone[0] = '\0';
	assert_int_equal(efs_meta_worker_register(f->m, &w), 0);
	assert_int_equal(efs_meta_worker_get(f->m, "rt-B", &got), 0);
	assert_string_equal(got.zone, "");
}

static void test_replica_on_unknown_worker(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(3), got;
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	unsigned count = 0;
	const char *const workers[] = {"w1", "w9"};
	char sid[EFS_ID_MAX + 1];

	new_session(f, 1, "alice");
	session_id(1, sid);
	assert_int_equal(efs_meta_session_put_chunk(f->m, sid, 0, &a, workers, 2, false, f->now, f->now + 60000, 0),
			 0);
	assert_int_equal(efs_meta_chunk_get(f->m, a.chunk_id, &got, replicas, &count), 0);
	assert_int_equal(count, 2);
	const struct efs_replica *known = find_replica(replicas, count, "w1");
	const struct efs_replica *unknown = find_replica(replicas, count, "w9");
	assert_non_null(known);
	assert_non_null(unknown);
	assert_int_equal(known->last_heartbeat_ms, worker_heartbeat(0));
	assert_int_equal(unknown->last_heartbeat_ms, 0);
}

static void test_put_at_same_index_releases_old_chunk(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1), b = chunk(2);
	struct efs_session_chunk *chunks = NULL;
	size_t count = 0;
	char sid[EFS_ID_MAX + 1];

	new_session(f, 1, "alice");
	session_id(1, sid);
	assert_int_equal(put(f, 1, 0, &a, false), 0);
	assert_false(is_garbage(f, f->now + 1, &a));
	assert_int_equal(put(f, 1, 0, &b, false), 0);
	assert_int_equal(session_version(f, 1), 2);

	assert_true(is_garbage(f, f->now + 1, &a));
	assert_false(is_garbage(f, f->now + 1, &b));
	/* unreferenced since now, which is not before now */
	assert_false(is_garbage(f, f->now, &a));

	assert_int_equal(efs_meta_session_chunks(f->m, sid, &chunks, &count), 0);
	assert_int_equal(count, 1);
	assert_int_equal(chunks[0].index, 0);
	assert_string_equal(chunks[0].chunk_id, b.chunk_id);
	free(chunks);

	/* putting the same chunk at the same index again changes nothing */
	assert_int_equal(put(f, 1, 0, &b, false), 0);
	assert_false(is_garbage(f, f->now + 1, &b));
}

static void test_dedup_put(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1), missing = chunk(9);
	struct efs_chunk_info got;
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	struct efs_session_chunk *chunks = NULL;
	unsigned replica_count = 0;
	size_t count = 0;
	const char *const first_two[] = {"w1", "w2"};
	const char *const third[] = {"w3"};
	char sid1[EFS_ID_MAX + 1], sid2[EFS_ID_MAX + 1];

	new_session(f, 1, "alice");
	new_session(f, 2, "bob");
	session_id(1, sid1);
	session_id(2, sid2);
	assert_int_equal(
		efs_meta_session_put_chunk(f->m, sid1, 0, &a, first_two, 2, false, f->now, f->now + 60000, 0), 0);

	/* an existing chunk is reused and gains the new replicas */
	assert_int_equal(efs_meta_session_put_chunk(f->m, sid2, 0, &a, third, 1, true, f->now, f->now + 60000, 0), 0);
	assert_int_equal(session_version(f, 2), 1);
	assert_int_equal(efs_meta_chunk_get(f->m, a.chunk_id, &got, replicas, &replica_count), 0);
	expect_worker_replicas(replicas, replica_count, NULL);

	/* a chunk the collector removed: -ESTALE, and nothing changed */
	assert_int_equal(put(f, 2, 1, &missing, true), -ESTALE);
	assert_int_equal(session_version(f, 2), 1);
	expect_no_chunk(f, &missing);
	assert_int_equal(efs_meta_session_chunks(f->m, sid2, &chunks, &count), 0);
	assert_int_equal(count, 1);
	free(chunks);

	/* both sessions hold a reference */
	assert_int_equal(efs_meta_session_delete(f->m, sid1, f->now), 0);
	assert_false(is_garbage(f, f->now + 1, &a));
	assert_int_equal(efs_meta_session_delete(f->m, sid2, f->now), 0);
	assert_true(is_garbage(f, f->now + 1, &a));
}

static void test_put_on_unknown_session(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1);

	assert_int_equal(put(f, 77, 0, &a, false), -ENOENT);
	assert_int_equal(put(f, 77, 0, &a, true), -ENOENT);
	expect_no_chunk(f, &a); /* one transaction: no row left behind */
}

static void test_session_chunks_ordered_by_index(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info c[3] = {chunk(1), chunk(2), chunk(3)};
	struct efs_session_chunk *chunks = NULL;
	size_t count = 0;
	char sid[EFS_ID_MAX + 1];

	new_session(f, 1, "alice");
	session_id(1, sid);
	assert_int_equal(put(f, 1, 2, &c[2], false), 0);
	assert_int_equal(put(f, 1, 0, &c[0], false), 0);
	assert_int_equal(put(f, 1, 1, &c[1], false), 0);

	assert_int_equal(efs_meta_session_chunks(f->m, sid, &chunks, &count), 0);
	assert_int_equal(count, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(chunks[i].index, i);
		assert_string_equal(chunks[i].chunk_id, c[i].chunk_id);
		assert_int_equal(chunks[i].size, c[i].size);
		assert_int_equal(chunks[i].stored_size, c[i].stored_size);
	}
	free(chunks);
}

/* ---- completing a session ------------------------------------------------ */

static void test_complete_creates_file(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info c[3] = {chunk(1), chunk(2), chunk(3)};
	struct efs_file_info fi = file_info(1, "alice", 5555, 3), got;
	struct efs_file_chunk *chunks = NULL;
	struct efs_file_info *list = NULL;
	struct efs_session_info s;
	size_t count = 0;
	char sid[EFS_ID_MAX + 1];

	new_session(f, 1, "alice");
	session_id(1, sid);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(put(f, 1, i, &c[i], false), 0);
	assert_int_equal(efs_meta_session_complete(f->m, sid, 3, &fi, 0), 0);

	assert_int_equal(efs_meta_file_get(f->m, fi.file_id, &got), 0);
	expect_same_file(&got, &fi);

	assert_int_equal(efs_meta_file_chunks(f->m, fi.file_id, 0, 100, &chunks, &count), 0);
	assert_int_equal(count, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(chunks[i].index, i);
		assert_string_equal(chunks[i].chunk.chunk_id, c[i].chunk_id);
		assert_int_equal(chunks[i].chunk.size, c[i].size);
		assert_int_equal(chunks[i].chunk.stored_size, c[i].stored_size);
		assert_int_equal(chunks[i].chunk.compressed, c[i].compressed);
		expect_worker_replicas(chunks[i].replicas, chunks[i].replica_count, NULL);
	}
	free(chunks);
	chunks = NULL;

	/* a window of the list */
	assert_int_equal(efs_meta_file_chunks(f->m, fi.file_id, 1, 1, &chunks, &count), 0);
	assert_int_equal(count, 1);
	assert_int_equal(chunks[0].index, 1);
	assert_string_equal(chunks[0].chunk.chunk_id, c[1].chunk_id);
	free(chunks);

	assert_int_equal(efs_meta_file_list(f->m, "alice", 0, "", 10, &list, &count), 0);
	assert_int_equal(count, 1);
	expect_same_file(&list[0], &fi);
	free(list);

	/* the session is gone; its references moved to the file */
	assert_int_equal(efs_meta_session_get(f->m, sid, &s), -ENOENT);
	struct efs_session_chunk *left = NULL;
	assert_int_equal(efs_meta_session_chunks(f->m, sid, &left, &count), 0);
	assert_int_equal(count, 0);
	free(left);
	assert_int_equal(efs_meta_session_complete(f->m, sid, 3, &fi, 0), -ENOENT);
	assert_int_equal(garbage_count(f, INT64_MAX), 0);
}

static void test_complete_with_stale_version(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1), b = chunk(2);
	struct efs_file_info fi = file_info(1, "alice", 5555, 2), got;
	char sid[EFS_ID_MAX + 1];

	new_session(f, 1, "alice");
	session_id(1, sid);
	assert_int_equal(put(f, 1, 0, &a, false), 0);
	int64_t version = session_version(f, 1);
	assert_int_equal(put(f, 1, 1, &b, false), 0); /* arrives after the read */

	assert_int_equal(efs_meta_session_complete(f->m, sid, version, &fi, 0), -ESTALE);
	assert_int_equal(efs_meta_file_get(f->m, fi.file_id, &got), -ENOENT);
	assert_int_equal(session_version(f, 1), version + 1);

	assert_int_equal(efs_meta_session_complete(f->m, sid, version + 1, &fi, 0), 0);
	assert_int_equal(efs_meta_file_get(f->m, fi.file_id, &got), 0);
	assert_int_equal(got.chunk_count, 2);
}

/* A completed session is remembered (owner, file) until the time given,
 * in the transaction that creates the file, and purged after it; without
 * a time nothing is remembered. */
static void test_complete_remembers_the_session(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1);
	struct efs_file_info fi = file_info(1, "alice", 5555, 1), fi2 = file_info(2, "bob", 5555, 1);
	struct efs_session_done done;
	char sid[EFS_ID_MAX + 1], sid2[EFS_ID_MAX + 1];
	size_t purged = SIZE_MAX;

	new_session(f, 1, "alice");
	session_id(1, sid);
	assert_int_equal(efs_meta_session_done_get(f->m, sid, &done), -ENOENT);
	assert_int_equal(put(f, 1, 0, &a, false), 0);
	assert_int_equal(efs_meta_session_complete(f->m, sid, session_version(f, 1), &fi, 10000), 0);
	assert_int_equal(efs_meta_session_done_get(f->m, sid, &done), 0);
	assert_string_equal(done.session_id, sid);
	assert_string_equal(done.owner, "alice");
	assert_string_equal(done.file_id, fi.file_id);
	assert_int_equal(done.expires_at_ms, 10000);
	/* a repeated complete of the session finds no session */
	assert_int_equal(efs_meta_session_complete(f->m, sid, 1, &fi2, 10000), -ENOENT);

	new_session(f, 2, "bob");
	session_id(2, sid2);
	assert_int_equal(put(f, 2, 0, &a, false), 0);
	assert_int_equal(efs_meta_session_complete(f->m, sid2, session_version(f, 2), &fi2, 0), 0);
	assert_int_equal(efs_meta_session_done_get(f->m, sid2, &done), -ENOENT);

	assert_int_equal(efs_meta_session_done_purge(f->m, 10000, 100, &purged), 0);
	assert_int_equal(purged, 0); /* expires_at 10000 is not before 10000 */
	assert_int_equal(efs_meta_session_done_get(f->m, sid, &done), 0);
	assert_int_equal(efs_meta_session_done_purge(f->m, 10001, 100, &purged), 0);
	assert_int_equal(purged, 1);
	assert_int_equal(efs_meta_session_done_get(f->m, sid, &done), -ENOENT);
	/* the file itself stays */
	struct efs_file_info got;
	assert_int_equal(efs_meta_file_get(f->m, fi.file_id, &got), 0);
}

/* Each chunk moves a client's session's expiry forward, never back. */
static void test_put_chunk_moves_expiry_forward(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1), b = chunk(2);
	struct efs_session_info s;
	char sid[EFS_ID_MAX + 1];
	int64_t first = f->now + 3600000;

	new_session(f, 1, "alice"); /* expires at f->now + 3600000 */
	session_id(1, sid);
	assert_int_equal(efs_meta_session_put_chunk(f->m, sid, 0, &a, worker_ids, WORKERS, false,
						    f->now, f->now + 60000, first + 5000),
			 0);
	assert_int_equal(efs_meta_session_get(f->m, sid, &s), 0);
	assert_int_equal(s.expires_at_ms, first + 5000);
	assert_int_equal(efs_meta_session_put_chunk(f->m, sid, 1, &b, worker_ids, WORKERS, false,
						    f->now, f->now + 60000, first),
			 0);
	assert_int_equal(efs_meta_session_get(f->m, sid, &s), 0);
	assert_int_equal(s.expires_at_ms, first + 5000);
}

/* ---- files --------------------------------------------------------------- */

/* A one-chunk file in one transaction: the file row, its chunk list, the
 * chunk with its replicas and one reference; a taken file id records
 * nothing. */
static void test_create_single_records_file_and_chunk(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1), b = chunk(2);
	struct efs_file_info fi = file_info(1, "alice", 100, 1), got;
	struct efs_file_info other = file_info(1, "bob", 200, 1);
	struct efs_file_chunk *chunks = NULL;
	size_t count = 0;

	assert_int_equal(efs_meta_file_create_single(f->m, &fi, &a, worker_ids, WORKERS, false,
						     f->now),
			 0);
	assert_int_equal(efs_meta_file_get(f->m, fi.file_id, &got), 0);
	expect_same_file(&got, &fi);
	assert_int_equal(efs_meta_file_chunks(f->m, fi.file_id, 0, 100, &chunks, &count), 0);
	assert_int_equal(count, 1);
	assert_int_equal(chunks[0].index, 0);
	assert_string_equal(chunks[0].chunk.chunk_id, a.chunk_id);
	expect_worker_replicas(chunks[0].replicas, chunks[0].replica_count, NULL);
	free(chunks);
	expect_chunk(f, &a, NULL);
	assert_false(is_garbage(f, f->now + 1, &a));

	/* the same file id again: -EEXIST, and its chunk is not recorded */
	assert_int_equal(efs_meta_file_create_single(f->m, &other, &b, worker_ids, WORKERS, false,
						     f->now),
			 -EEXIST);
	expect_no_chunk(f, &b);
	assert_int_equal(efs_meta_file_get(f->m, fi.file_id, &got), 0);
	assert_string_equal(got.owner, "alice");

	/* exactly one reference: the delete releases the chunk */
	assert_int_equal(efs_meta_file_delete(f->m, fi.file_id, "alice", f->now), 0);
	assert_true(is_garbage(f, f->now + 1, &a));
}

/* With @dedup the existing chunk gains a reference and the new replicas;
 * a chunk collected meanwhile answers -ESTALE and records nothing. */
static void test_create_single_dedup(void **state)
{
	struct fixture *f = *state;
	static const unsigned numbers[] = {1};
	struct efs_chunk_info a = chunk(1), missing = chunk(9);
	struct efs_file_info fi = file_info(2, "bob", 200, 1), got;
	struct efs_file_info stale = file_info(3, "bob", 300, 1);
	const char *const third[] = {"w3"};
	char first[EFS_ID_MAX + 1];

	make_file(f, 1, "alice", 100, numbers, 1);
	file_id(1, first);
	assert_int_equal(efs_meta_file_create_single(f->m, &fi, &a, third, 1, true, f->now), 0);
	expect_chunk(f, &a, NULL);
	assert_int_equal(efs_meta_file_delete(f->m, first, "alice", f->now), 0);
	assert_false(is_garbage(f, f->now + 1, &a)); /* the second file holds it */
	assert_int_equal(efs_meta_file_delete(f->m, fi.file_id, "bob", f->now), 0);
	assert_true(is_garbage(f, f->now + 1, &a));

	assert_int_equal(efs_meta_file_create_single(f->m, &stale, &missing, worker_ids, WORKERS,
						     true, f->now),
			 -ESTALE);
	assert_int_equal(efs_meta_file_get(f->m, stale.file_id, &got), -ENOENT);
	expect_no_chunk(f, &missing);
}

/* An empty file: the file row alone. */
static void test_create_single_empty_file(void **state)
{
	struct fixture *f = *state;
	struct efs_file_info fi = file_info(4, "alice", 100, 0), got;
	struct efs_file_chunk *chunks = NULL;
	size_t count = 7;

	fi.size = 0;
	fi.stored_bytes = 0;
	assert_int_equal(efs_meta_file_create_single(f->m, &fi, NULL, NULL, 0, false, f->now), 0);
	assert_int_equal(efs_meta_file_get(f->m, fi.file_id, &got), 0);
	expect_same_file(&got, &fi);
	assert_int_equal(efs_meta_file_chunks(f->m, fi.file_id, 0, 100, &chunks, &count), 0);
	assert_int_equal(count, 0);
	free(chunks);
}


static void test_file_list_pages_by_created_at_and_id(void **state)
{
	struct fixture *f = *state;
	/* created_at, in creation order; two share 200, inserted id-descending */
	static const unsigned numbers[] = {5, 2, 4, 3, 1};
	static const int64_t created[] = {400, 200, 300, 200, 100};
	/* expected order: (100,f1) (200,f2) (200,f3) (300,f4) (400,f5) */
	const unsigned one = 1;
	struct efs_file_info *page = NULL;
	size_t count = 0, seen = 0;
	int64_t after_created = 0;
	char after_id[EFS_ID_MAX + 1] = "";

	for (size_t i = 0; i < EFS_ARRAY_SIZE(numbers); i++)
		make_file(f, numbers[i], "alice", created[i], &one, 1);
	make_file(f, 9, "bob", 250, &one, 1);

	for (int pages = 0; pages < 3; pages++) {
		assert_int_equal(efs_meta_file_list(f->m, "alice", after_created, after_id, 2,
						    &page, &count),
				 0);
		assert_int_equal(count, pages < 2 ? 2 : 1);
		for (size_t i = 0; i < count; i++) {
			char want[EFS_ID_MAX + 1];
			file_id((unsigned)(seen + 1), want);
			assert_string_equal(page[i].file_id, want);
			assert_string_equal(page[i].owner, "alice");
			seen++;
		}
		after_created = page[count - 1].created_at_ms;
		efs_strlcpy(after_id, page[count - 1].file_id, sizeof(after_id));
		free(page);
		page = NULL;
	}
	assert_int_equal(seen, 5);
	assert_int_equal(efs_meta_file_list(f->m, "alice", after_created, after_id, 2, &page,
					    &count),
			 0);
	assert_int_equal(count, 0);
	free(page);

	/* owners see only their own files */
	assert_int_equal(efs_meta_file_list(f->m, "bob", 0, "", 10, &page, &count), 0);
	assert_int_equal(count, 1);
	char bobs[EFS_ID_MAX + 1];
	file_id(9, bobs);
	assert_string_equal(page[0].file_id, bobs);
	free(page);
	page = NULL;
	assert_int_equal(efs_meta_file_list(f->m, "carol", 0, "", 10, &page, &count), 0);
	assert_int_equal(count, 0);
	free(page);
}

static void test_file_delete_releases_chunks_to_the_collector(void **state)
{
	struct fixture *f = *state;
	static const unsigned numbers[] = {1, 2, 3};
	struct efs_file_info got;
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	unsigned replica_count = 0;
	char fid[EFS_ID_MAX + 1];

	make_file(f, 1, "alice", 100, numbers, 3);
	file_id(1, fid);

	assert_int_equal(efs_meta_file_delete(f->m, fid, "bob", f->now), -ENOENT);
	assert_int_equal(efs_meta_file_get(f->m, fid, &got), 0);
	assert_int_equal(garbage_count(f, f->now + 1), 0);

	assert_int_equal(efs_meta_file_delete(f->m, fid, "alice", f->now), 0);
	assert_int_equal(efs_meta_file_get(f->m, fid, &got), -ENOENT);
	assert_int_equal(efs_meta_file_delete(f->m, fid, "alice", f->now), -ENOENT);

	assert_int_equal(garbage_count(f, f->now + 1), 3);
	for (unsigned i = 0; i < 3; i++) {
		struct efs_chunk_info c = chunk(numbers[i]);
		assert_true(is_garbage(f, f->now + 1, &c));
		memset(replicas, 0, sizeof(replicas));
		replica_count = 0;
		assert_int_equal(efs_meta_garbage_take(f->m, c.chunk_id, replicas, &replica_count),
				 0);
		expect_worker_replicas(replicas, replica_count, NULL);
		expect_no_chunk(f, &c);
		assert_int_equal(efs_meta_garbage_take(f->m, c.chunk_id, replicas, &replica_count),
				 -ENOENT);
		assert_false(is_garbage(f, f->now + 1, &c));
	}
	assert_int_equal(garbage_count(f, INT64_MAX), 0);
}

/* refcount counts every index a chunk is at: one file listing chunk A
 * twice, and a session listing it once. */
static void test_chunk_twice_in_one_file(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1), b = chunk(2);
	struct efs_file_info fi = file_info(1, "alice", 100, 3);
	struct efs_file_chunk *chunks = NULL;
	size_t count = 0;
	char sid2[EFS_ID_MAX + 1];

	new_session(f, 1, "alice");
	assert_int_equal(put(f, 1, 0, &a, false), 0);
	assert_int_equal(put(f, 1, 1, &a, true), 0);
	assert_int_equal(put(f, 1, 2, &b, false), 0);
	/* replacing one of the two loses one reference of two */
	assert_int_equal(put(f, 1, 1, &b, true), 0);
	assert_false(is_garbage(f, f->now + 1, &a));
	assert_int_equal(put(f, 1, 1, &a, true), 0);
	complete(f, 1, &fi);

	assert_int_equal(efs_meta_file_chunks(f->m, fi.file_id, 0, 10, &chunks, &count), 0);
	assert_int_equal(count, 3);
	assert_string_equal(chunks[0].chunk.chunk_id, a.chunk_id);
	assert_string_equal(chunks[1].chunk.chunk_id, a.chunk_id);
	assert_string_equal(chunks[2].chunk.chunk_id, b.chunk_id);
	free(chunks);

	/* another holder of A */
	new_session(f, 2, "bob");
	session_id(2, sid2);
	assert_int_equal(put(f, 2, 0, &a, true), 0);

	/* deleting the file drops its two references, not the session's */
	assert_int_equal(efs_meta_file_delete(f->m, fi.file_id, "alice", f->now), 0);
	assert_false(is_garbage(f, f->now + 1, &a));
	assert_true(is_garbage(f, f->now + 1, &b));

	assert_int_equal(efs_meta_session_delete(f->m, sid2, f->now), 0);
	assert_true(is_garbage(f, f->now + 1, &a));
}

static void test_file_with_repeated_chunk_stays_referenced(void **state)
{
	struct fixture *f = *state;
	static const unsigned twice[] = {1, 1};
	static const unsigned once[] = {1};
	struct efs_chunk_info a = chunk(1);
	char fid1[EFS_ID_MAX + 1], fid2[EFS_ID_MAX + 1];

	make_file(f, 1, "alice", 100, twice, 2);
	make_file(f, 2, "alice", 200, once, 1);
	file_id(1, fid1);
	file_id(2, fid2);

	assert_int_equal(efs_meta_file_delete(f->m, fid2, "alice", f->now), 0);
	assert_false(is_garbage(f, f->now + 1, &a));
	expect_chunk(f, &a, NULL);
	assert_int_equal(efs_meta_file_delete(f->m, fid1, "alice", f->now), 0);
	assert_true(is_garbage(f, f->now + 1, &a));
}

/* ---- garbage -------------------------------------------------------------- */

static void test_garbage_take_of_rereferenced_chunk(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1);
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	unsigned replica_count = 0;
	char sid1[EFS_ID_MAX + 1];

	new_session(f, 1, "alice");
	session_id(1, sid1);
	assert_int_equal(put(f, 1, 0, &a, false), 0);
	assert_int_equal(efs_meta_session_delete(f->m, sid1, f->now), 0);
	assert_true(is_garbage(f, f->now + 1, &a)); /* the collector decides */

	new_session(f, 2, "bob"); /* and meanwhile an upload reuses the chunk */
	assert_int_equal(put(f, 2, 0, &a, true), 0);
	assert_false(is_garbage(f, f->now + 1, &a));

	assert_int_equal(efs_meta_garbage_take(f->m, a.chunk_id, replicas, &replica_count),
			 -ENOENT);
	expect_chunk(f, &a, NULL);
}

/* The S3 chunk mode (no worker ever registered) records each object's
 * generation as a location where the worker mode records replicas
 * (chunk_s3.h): every backend must return them from chunk_get,
 * file_chunks and garbage_take, which the collector deletes by (LIFECYCLE
 * R13). */
/* The trim of a redundant generation (R13): a location goes only while
 * the one kept is still recorded; nothing removed is -ENOENT. */
static void test_replica_remove_if_keeps_the_keeper(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info b = chunk(2), got;
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	unsigned replica_count = 0;
	const char *const gens[3] = {"s3:00000000000000b1", "s3:00000000000000b2",
				     "s3:00000000000000b3"};
	char sid[EFS_ID_MAX + 1];

	new_session(f, 1, "alice");
	session_id(1, sid);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(efs_meta_session_put_chunk(f->m, sid, i, &b, gens + i, 1, false,
							    f->now, f->now + 60000, 0),
				 0);
	assert_int_equal(efs_meta_replica_remove_if(f->m, b.chunk_id, gens[1], gens[0]), 0);
	/* already removed: nothing to do */
	assert_int_equal(efs_meta_replica_remove_if(f->m, b.chunk_id, gens[1], gens[0]), -ENOENT);
	/* the keeper is not recorded (any more): kept */
	assert_int_equal(efs_meta_replica_remove_if(f->m, b.chunk_id, gens[2], gens[1]), -ENOENT);
	assert_int_equal(efs_meta_replica_remove_if(f->m, b.chunk_id, gens[0], gens[0]), -EINVAL);
	assert_int_equal(efs_meta_chunk_get(f->m, b.chunk_id, &got, replicas, &replica_count), 0);
	assert_int_equal(replica_count, 2);
	assert_string_equal(replicas[0].worker_id, gens[0]);
	assert_string_equal(replicas[1].worker_id, gens[2]);
	assert_int_equal(efs_meta_replica_remove_if(f->m, b.chunk_id, gens[2], gens[0]), 0);
	assert_int_equal(efs_meta_chunk_get(f->m, b.chunk_id, &got, replicas, &replica_count), 0);
	assert_int_equal(replica_count, 1);
	assert_string_equal(replicas[0].worker_id, gens[0]);
	/* a chunk without a row */
	struct efs_chunk_info c = chunk(3);
	assert_int_equal(efs_meta_replica_remove_if(f->m, c.chunk_id, gens[1], gens[0]), -ENOENT);
}

static void test_locations_without_workers_are_returned_like_replicas(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1), b = chunk(2), got;
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	unsigned replica_count = 0;
	const char *const gen_a[1] = {"s3:00000000000000aa"};
	const char *const gen_b[2] = {"s3:00000000000000b1", "s3:00000000000000b2"};
	char sid[EFS_ID_MAX + 1];
	struct efs_file_chunk *chunks = NULL;
	size_t count = 0;

	new_session(f, 1, "alice");
	session_id(1, sid);
	assert_int_equal(efs_meta_session_put_chunk(f->m, sid, 0, &a, gen_a, 1, false, f->now,
						    f->now + 60000, 0),
			 0);
	/* b stored by two uploads at once: two generations, both recorded */
	assert_int_equal(efs_meta_session_put_chunk(f->m, sid, 1, &b, gen_b, 1, false, f->now,
						    f->now + 60000, 0),
			 0);
	assert_int_equal(efs_meta_session_put_chunk(f->m, sid, 2, &b, gen_b + 1, 1, false, f->now,
						    f->now + 60000, 0),
			 0);
	assert_int_equal(efs_meta_chunk_get(f->m, a.chunk_id, &got, replicas, &replica_count), 0);
	assert_int_equal(replica_count, 1);
	assert_string_equal(replicas[0].worker_id, gen_a[0]);
	assert_false(replicas[0].bad);

	struct efs_file_info fi = file_info(1, "alice", 1000, 3);
	complete(f, 1, &fi);
	assert_int_equal(efs_meta_file_chunks(f->m, fi.file_id, 0, 10, &chunks, &count), 0);
	assert_int_equal(count, 3);
	assert_int_equal(chunks[0].replica_count, 1);
	assert_string_equal(chunks[0].replicas[0].worker_id, gen_a[0]);
	assert_int_equal(chunks[1].replica_count, 2);
	assert_string_equal(chunks[1].replicas[0].worker_id, gen_b[0]);
	assert_string_equal(chunks[1].replicas[1].worker_id, gen_b[1]);
	free(chunks);

	assert_int_equal(efs_meta_file_delete(f->m, fi.file_id, "alice", f->now), 0);
	assert_int_equal(efs_meta_garbage_take(f->m, b.chunk_id, replicas, &replica_count), 0);
	assert_int_equal(replica_count, 2);
	assert_string_equal(replicas[0].worker_id, gen_b[0]);
	assert_string_equal(replicas[1].worker_id, gen_b[1]);
	/* Taken with the row: a new row of the same chunk names only its own. */
	new_session(f, 2, "bob");
	session_id(2, sid);
	assert_int_equal(efs_meta_session_put_chunk(f->m, sid, 0, &b, gen_a, 1, false, f->now,
						    f->now + 60000, 0),
			 0);
	assert_int_equal(efs_meta_chunk_get(f->m, b.chunk_id, &got, replicas, &replica_count), 0);
	assert_int_equal(replica_count, 1);
	assert_string_equal(replicas[0].worker_id, gen_a[0]);
}

static void test_session_delete_releases_chunks(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1), b = chunk(2);
	struct efs_session_info s;
	char sid[EFS_ID_MAX + 1];

	new_session(f, 1, "alice");
	session_id(1, sid);
	assert_int_equal(put(f, 1, 0, &a, false), 0);
	assert_int_equal(put(f, 1, 1, &b, false), 0);
	assert_int_equal(garbage_count(f, f->now + 1), 0);

	assert_int_equal(efs_meta_session_delete(f->m, sid, f->now), 0);
	assert_int_equal(efs_meta_session_get(f->m, sid, &s), -ENOENT);
	assert_true(is_garbage(f, f->now + 1, &a));
	assert_true(is_garbage(f, f->now + 1, &b));
	assert_int_equal(garbage_count(f, f->now + 1), 2);
	assert_int_equal(efs_meta_session_delete(f->m, sid, f->now), -ENOENT);
}

/* A session listing a chunk twice holds two references, and its release
 * drops both at once (one grouped count per chunk): the chunk stays
 * while another session still names it, and becomes garbage with it. */
static void test_session_release_counts_a_repeated_chunk_twice(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1), b = chunk(2);
	char sid1[EFS_ID_MAX + 1], sid2[EFS_ID_MAX + 1];

	new_session(f, 1, "alice");
	new_session(f, 2, "alice");
	session_id(1, sid1);
	session_id(2, sid2);
	assert_int_equal(put(f, 1, 0, &a, false), 0);
	assert_int_equal(put(f, 1, 1, &a, true), 0);
	assert_int_equal(put(f, 1, 2, &b, false), 0);
	assert_int_equal(put(f, 2, 0, &a, true), 0);

	assert_int_equal(efs_meta_session_delete(f->m, sid1, f->now), 0);
	assert_false(is_garbage(f, f->now + 1, &a));
	assert_true(is_garbage(f, f->now + 1, &b));
	assert_int_equal(garbage_count(f, f->now + 1), 1);
	assert_int_equal(efs_meta_session_delete(f->m, sid2, f->now), 0);
	assert_true(is_garbage(f, f->now + 1, &a));
	assert_int_equal(garbage_count(f, f->now + 1), 2);
}

static void test_session_expired(void **state)
{
	struct fixture *f = *state;
	char ids[8][EFS_ID_MAX + 1], want[EFS_ID_MAX + 1];
	size_t count = SIZE_MAX;

	for (unsigned i = 1; i <= 3; i++) {
		struct efs_session_info s = session_info(i, "alice", 1000 * (int64_t)i);
		assert_int_equal(efs_meta_session_create(f->m, &s), 0);
	}

	assert_int_equal(efs_meta_session_expired(f->m, 500, 8, ids, &count), 0);
	assert_int_equal(count, 0);

	assert_int_equal(efs_meta_session_expired(f->m, 2000, 8, ids, &count), 0);
	assert_int_equal(count, 1); /* expires_at 2000 is not before 2000 */
	session_id(1, want);
	assert_string_equal(ids[0], want);

	assert_int_equal(efs_meta_session_expired(f->m, 2001, 8, ids, &count), 0);
	assert_int_equal(count, 2);
	bool saw1 = false, saw2 = false;
	for (size_t i = 0; i < count; i++) {
		char id1[EFS_ID_MAX + 1], id2[EFS_ID_MAX + 1];
		session_id(1, id1);
		session_id(2, id2);
		saw1 |= strcmp(ids[i], id1) == 0;
		saw2 |= strcmp(ids[i], id2) == 0;
	}
	assert_true(saw1 && saw2);

	assert_int_equal(efs_meta_session_expired(f->m, 100000, 1, ids, &count), 0);
	assert_int_equal(count, 1);
	assert_int_equal(efs_meta_session_expired(f->m, 100000, 8, ids, &count), 0);
	assert_int_equal(count, 3);
}

static void test_replica_mark_bad(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1);
	struct efs_file_info fi = file_info(1, "alice", 100, 1);
	struct efs_file_chunk *chunks = NULL;
	size_t count = 0;

	new_session(f, 1, "alice");
	assert_int_equal(put(f, 1, 0, &a, false), 0);
	expect_chunk(f, &a, NULL);
	assert_int_equal(efs_meta_replica_mark_bad(f->m, a.chunk_id, "w2"), 0);
	expect_chunk(f, &a, "w2");

	complete(f, 1, &fi);
	assert_int_equal(efs_meta_file_chunks(f->m, fi.file_id, 0, 10, &chunks, &count), 0);
	assert_int_equal(count, 1);
	expect_worker_replicas(chunks[0].replicas, chunks[0].replica_count, "w2");
	free(chunks);
}

/* A worker's lost id (a copy deleted while its report listed the store)
 * marks only a replica recorded by the time it found the copy gone: a
 * later row names a copy an upload wrote again since, which is there. */
static void test_replica_mark_lost_spares_a_later_row(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1);
	const char *w2[] = {"w2"};

	new_session(f, 1, "alice");
	assert_int_equal(put(f, 1, 0, &a, false), 0);
	/* w2's copy written again, recorded at now + 5000 */
	assert_int_equal(efs_meta_replica_add(f->m, a.chunk_id, w2, 1, f->now + 5000), 0);
	assert_int_equal(efs_meta_replica_mark_lost(f->m, a.chunk_id, "w2", f->now + 4999), 0);
	expect_chunk(f, &a, NULL);
	/* no row of that worker: nothing marked */
	assert_int_equal(efs_meta_replica_mark_lost(f->m, a.chunk_id, "w9", INT64_MAX), 0);
	expect_chunk(f, &a, NULL);
	/* found gone after the row was recorded: marked */
	assert_int_equal(efs_meta_replica_mark_lost(f->m, a.chunk_id, "w2", f->now + 5000), 1);
	expect_chunk(f, &a, "w2");
	/* efs_meta_replica_mark_bad marks whenever the row was recorded */
	assert_int_equal(efs_meta_replica_add(f->m, a.chunk_id, w2, 1, f->now + 9000), 0);
	expect_chunk(f, &a, NULL);
	assert_int_equal(efs_meta_replica_mark_bad(f->m, a.chunk_id, "w2"), 0);
	expect_chunk(f, &a, "w2");
}

/* ---- worker reports ---------------------------------------------------- */

#define GRACE_MS 60000

/* A report context for @worker_id: every registered worker counts as alive,
 * the worker's clock reads @worker_now. */
static struct efs_report_context report_ctx(struct fixture *f, const char *worker_id,
					    int64_t worker_now)
{
	struct efs_report_context ctx = {
		.worker_id = worker_id,
		.started_ms = worker_now - 10,
		.worker_now_ms = worker_now,
		.orphan_grace_ms = GRACE_MS,
		.replication = WORKERS,
		.live_after_ms = 0,
		.now_ms = f->now,
	};
	return ctx;
}

/* What a report from @worker_id of chunk @c, written at @mtime (worker
 * clock), is told. */
static enum efs_report_verdict report_one(struct fixture *f, const char *worker_id,
					  const struct efs_chunk_info *c, int64_t mtime)
{
	struct efs_report_context ctx = report_ctx(f, worker_id, f->now);
	struct efs_report_entry e;
	memset(&e, 0, sizeof(e));
	efs_strlcpy(e.chunk_id, c->chunk_id, sizeof(e.chunk_id));
	e.mtime_ms = mtime;
	e.verdict = (enum efs_report_verdict)-1;
	assert_int_equal(efs_meta_report_batch(f->m, &ctx, &e, 1), 0);
	return e.verdict;
}

/* Registers a fourth worker, alive like the others. */
static void add_worker(struct fixture *f, const char *worker_id)
{
	struct efs_worker_info w;
	memset(&w, 0, sizeof(w));
	efs_strlcpy(w.worker_id, worker_id, sizeof(w.worker_id));
	snprintf(w.url, sizeof(w.url), "http://10.0.0.9:9000");
	w.capacity_bytes = 1000000;
	w.free_bytes = 500000;
	w.registered_at_ms = 1000;
	w.last_heartbeat_ms = 6000;
	assert_int_equal(efs_meta_worker_register(f->m, &w), 0);
}

/* Puts chunk @c at index 0 of a new session @n with replicas on the first
 * @replicas workers only. */
static void put_on(struct fixture *f, unsigned n, const struct efs_chunk_info *c,
		   size_t replicas)
{
	char sid[EFS_ID_MAX + 1];
	new_session(f, n, "alice");
	session_id(n, sid);
	assert_int_equal(efs_meta_session_put_chunk(f->m, sid, 0, c, worker_ids, replicas, false,
						    f->now, f->now + 60000, 0),
			 0);
}

/* A chunk the master has never heard of is an orphan once older than the
 * grace, and kept while younger (it may belong to an upload under way). */
static void test_report_unknown_chunk(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1);

	assert_int_equal(report_one(f, "w1", &a, f->now - 1000), EFS_REPORT_KEEP);
	assert_int_equal(report_one(f, "w1", &a, f->now - GRACE_MS - 1000), EFS_REPORT_DELETE);
	expect_no_chunk(f, &a);
}

/* LIFECYCLE T16: a copy of an unreferenced chunk that no replica row names
 * is deleted once older than the grace, kept while younger. */
static void test_report_unreferenced_unnamed_copy(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1);
	char sid[EFS_ID_MAX + 1];

	put_on(f, 1, &a, 2); /* rows on w1, w2 */
	session_id(1, sid);
	assert_int_equal(efs_meta_session_delete(f->m, sid, f->now), 0);
	assert_true(is_garbage(f, f->now + 1, &a)); /* unreferenced */

	/* young: kept, and judged again once old (issue 19) */
	assert_int_equal(report_one(f, "w3", &a, f->now - 1000), EFS_REPORT_YOUNG);
	assert_int_equal(report_one(f, "w3", &a, f->now - GRACE_MS - 1000), EFS_REPORT_DELETE);
	/* a named copy of an unreferenced chunk is the collector's business */
	assert_int_equal(report_one(f, "w1", &a, f->now - GRACE_MS - 1000), EFS_REPORT_KEEP);
}

/* LIFECYCLE T17: a copy of a referenced chunk that already has the
 * replication factor in good replicas elsewhere, and that no row names, is
 * surplus: deleted once older than the grace. A young one is kept: it may
 * be a first upload of the same bytes through another master, written and
 * not yet recorded (W3, fixed: this used to be deleted at any age). */
static void test_report_surplus_unnamed_copy(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1);
	struct efs_chunk_info got;
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	unsigned count = 0;

	add_worker(f, "w4");
	put_on(f, 1, &a, WORKERS); /* rows on w1, w2, w3 */
	assert_int_equal(report_one(f, "w4", &a, f->now - 10), EFS_REPORT_YOUNG);
	assert_int_equal(report_one(f, "w4", &a, f->now - GRACE_MS + 1000), EFS_REPORT_YOUNG);
	assert_int_equal(report_one(f, "w4", &a, f->now - GRACE_MS - 1000), EFS_REPORT_DELETE);
	assert_int_equal(efs_meta_chunk_get(f->m, a.chunk_id, &got, replicas, &count), 0);
	assert_int_equal(count, WORKERS);
	assert_null(find_replica(replicas, count, "w4"));
}

/* A bad replica whose worker lists its copy, on a chunk with
 * REPLICATION_FACTOR good replicas besides it (marked bad while repair
 * replaced it: CI, 2026-12-05), is surplus once older than the orphan
 * grace: repair never looks at the chunk again, so it goes (row and
 * copy). Younger, it is kept (a write over it may be about to be
 * recorded good); with fewer good ones it is kept for repair. */
static void test_report_drops_a_bad_replica_of_a_chunk_good_elsewhere(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1);
	struct efs_chunk_info got;
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	unsigned count = 0;
	const char *w4[] = {"w4"};

	add_worker(f, "w4");
	put_on(f, 1, &a, WORKERS); /* rows on w1, w2, w3 */
	assert_int_equal(efs_meta_replica_mark_bad(f->m, a.chunk_id, "w2"), 0);
	/* two good besides it: repair's */
	assert_int_equal(report_one(f, "w2", &a, f->now - 10), EFS_REPORT_KEEP);
	assert_int_equal(efs_meta_chunk_get(f->m, a.chunk_id, &got, replicas, &count), 0);
	assert_int_equal(count, WORKERS);
	/* repair wrote w4's copy but kept w2's row (marked meanwhile) */
	assert_int_equal(efs_meta_replica_add(f->m, a.chunk_id, w4, 1, f->now), 0);
	/* a young copy may be a write over the bad one, not yet recorded */
	assert_int_equal(report_one(f, "w2", &a, f->now - 10), EFS_REPORT_YOUNG);
	assert_int_equal(efs_meta_chunk_get(f->m, a.chunk_id, &got, replicas, &count), 0);
	assert_int_equal(count, WORKERS + 1);
	assert_int_equal(report_one(f, "w2", &a, f->now - GRACE_MS - 1000), EFS_REPORT_DELETE);
	assert_int_equal(efs_meta_chunk_get(f->m, a.chunk_id, &got, replicas, &count), 0);
	assert_int_equal(count, WORKERS);
	assert_null(find_replica(replicas, count, "w2"));
	for (unsigned i = 0; i < count; i++)
		assert_false(replicas[i].bad);
}

/* Registers the fixture's workers again with @zones ("" none). */
static void set_zones(struct fixture *f, const char *const zones[WORKERS])
{
	assert_int_equal(register_workers_in(f, zones), 0);
}

/* A report of chunk @a by @worker_id with REPLICATION_FACTOR 2 (the
 * fixture's three good rows make one surplus). */
static enum efs_report_verdict report_rf2(struct fixture *f, const char *worker_id,
					  const struct efs_chunk_info *a)
{
	struct efs_report_context ctx = report_ctx(f, worker_id, f->now);
	ctx.replication = 2;
	struct efs_report_entry e;
	memset(&e, 0, sizeof(e));
	efs_strlcpy(e.chunk_id, a->chunk_id, sizeof(e.chunk_id));
	e.mtime_ms = f->now - 10;
	e.verdict = (enum efs_report_verdict)-1;
	assert_int_equal(efs_meta_report_batch(f->m, &ctx, &e, 1), 0);
	return e.verdict;
}

/* LIFECYCLE T19 with zones (issue 17): a surplus good replica goes only
 * if the other good copies still cover as many zones (or the replication
 * factor's worth). w1 alone in zone a, w2 and w3 in zone b: w1's copy is
 * kept (its zone's only one), w2's goes, and then w3's is no longer
 * surplus. Without zones, or over more zones than the replication factor,
 * the first report drops its copy, as before zones. */
static void test_report_surplus_keeps_a_zone_s_only_copy(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1), b = chunk(2), c = chunk(3), got;
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	unsigned count = 0;

	put_on(f, 1, &a, WORKERS);
	put_on(f, 2, &b, WORKERS);
	put_on(f, 3, &c, WORKERS);

	/* no zones: each worker a zone of its own, the reporter's copy goes */
	assert_int_equal(report_rf2(f, "w1", &a), EFS_REPORT_DELETE);
	assert_int_equal(efs_meta_chunk_get(f->m, a.chunk_id, &got, replicas, &count), 0);
	assert_int_equal(count, 2);
	assert_null(find_replica(replicas, count, "w1"));

	/* a, b, b: the only copy of zone a stays, one of zone b goes */
	set_zones(f, (const char *const[WORKERS]){"a", "b", "b"});
	assert_int_equal(report_rf2(f, "w1", &b), EFS_REPORT_KEEP);
	assert_int_equal(report_rf2(f, "w1", &b), EFS_REPORT_KEEP); /* and again */
	assert_int_equal(report_rf2(f, "w2", &b), EFS_REPORT_DELETE);
	assert_int_equal(report_rf2(f, "w3", &b), EFS_REPORT_KEEP); /* not surplus now */
	assert_int_equal(efs_meta_chunk_get(f->m, b.chunk_id, &got, replicas, &count), 0);
	assert_int_equal(count, 2);
	assert_non_null(find_replica(replicas, count, "w1"));
	assert_non_null(find_replica(replicas, count, "w3"));

	/* a, b, c with REPLICATION_FACTOR 2: any two cover two zones */
	set_zones(f, (const char *const[WORKERS]){"a", "b", "c"});
	assert_int_equal(report_rf2(f, "w3", &c), EFS_REPORT_DELETE);
	assert_int_equal(efs_meta_chunk_get(f->m, c.chunk_id, &got, replicas, &count), 0);
	assert_int_equal(count, 2);
	assert_null(find_replica(replicas, count, "w3"));
}

/* Issue 17: an erasure-coded chunk keeps its shape (ec_data, ec_parity)
 * and its replica rows are its shards: a report never drops one as
 * surplus (K + M rows exceed the replication factor by design), and never
 * adopts an unnamed copy (which shard it is is not known here); such a
 * copy is an orphan once old. SQL stores only (DynamoDB keeps no EC). */
static void test_report_ec_shards_are_never_surplus(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1), got;
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	unsigned count = 0;

	if (strcmp(efs_meta_backend(f->m), "dynamodb") == 0)
		skip();
	a.ec_data = 2;
	a.ec_parity = 1;
	add_worker(f, "w4");
	put_on(f, 1, &a, WORKERS); /* shards on w1, w2, w3 */
	assert_int_equal(efs_meta_chunk_get(f->m, a.chunk_id, &got, replicas, &count), 0);
	assert_int_equal(got.ec_data, 2);
	assert_int_equal(got.ec_parity, 1);
	assert_int_equal(count, WORKERS);

	/* replication 2: three good rows would make a replica surplus */
	struct efs_report_context ctx = report_ctx(f, "w1", f->now);
	ctx.replication = 2;
	struct efs_report_entry e;
	memset(&e, 0, sizeof(e));
	efs_strlcpy(e.chunk_id, a.chunk_id, sizeof(e.chunk_id));
	e.mtime_ms = f->now - GRACE_MS - 1000;
	assert_int_equal(efs_meta_report_batch(f->m, &ctx, &e, 1), 0);
	assert_int_equal(e.verdict, EFS_REPORT_KEEP);

	/* replication 5: a replicated chunk would adopt w4's copy */
	ctx = report_ctx(f, "w4", f->now);
	ctx.replication = 5;
	e.verdict = (enum efs_report_verdict)-1;
	e.mtime_ms = f->now - 10;
	assert_int_equal(efs_meta_report_batch(f->m, &ctx, &e, 1), 0);
	assert_int_equal(e.verdict, EFS_REPORT_YOUNG);
	e.mtime_ms = f->now - GRACE_MS - 1000;
	assert_int_equal(efs_meta_report_batch(f->m, &ctx, &e, 1), 0);
	assert_int_equal(e.verdict, EFS_REPORT_DELETE);
	assert_int_equal(efs_meta_chunk_get(f->m, a.chunk_id, &got, replicas, &count), 0);
	assert_int_equal(count, WORKERS);
	assert_null(find_replica(replicas, count, "w4"));
}

/* The same copy judged on a worker whose clock is far from the master's:
 * the age is the worker's now minus the worker's write time, so a young
 * copy is kept whether the worker is hours behind or ahead. */
static void test_report_age_is_judged_on_the_worker_clock(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1), b = chunk(2);
	static const int64_t skews[] = {-3600000, -30000, 30000, 3600000};

	add_worker(f, "w4");
	put_on(f, 1, &a, WORKERS); /* fully replicated without w4 */
	for (size_t i = 0; i < sizeof(skews) / sizeof(skews[0]); i++) {
		int64_t worker_now = f->now + skews[i];
		struct efs_report_context ctx = report_ctx(f, "w4", worker_now);
		struct efs_report_entry e[2];
		memset(e, 0, sizeof(e));
		efs_strlcpy(e[0].chunk_id, a.chunk_id, sizeof(e[0].chunk_id));
		efs_strlcpy(e[1].chunk_id, b.chunk_id, sizeof(e[1].chunk_id)); /* unknown */
		e[0].mtime_ms = e[1].mtime_ms = worker_now - 1000;
		assert_int_equal(efs_meta_report_batch(f->m, &ctx, e, 2), 0);
		assert_int_equal(e[0].verdict, EFS_REPORT_YOUNG); /* kept, judged again */
		assert_int_equal(e[1].verdict, EFS_REPORT_KEEP);
	}
}

/* LIFECYCLE T23/R7: the end of a report marks bad the good replicas it did
 * not list that were recorded before the master's reading of the report's
 * start (less the masters' margin); the worker's own times take no part,
 * so a worker clock far ahead does not get a replica recorded after its
 * snapshot marked. Without the master's reading nothing is marked. */
static void test_report_finish_judges_on_the_master_clock(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1), b = chunk(2), got;
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	unsigned count = 0;

	put_on(f, 1, &a, WORKERS); /* recorded at f->now, on w1..w3 */
	f->now += 60000;
	put_on(f, 2, &b, WORKERS); /* recorded a minute later */

	/* a worker an hour ahead, whose report listed neither */
	struct efs_report_context ctx = report_ctx(f, "w1", f->now + 3600000);
	ctx.master_started_ms = 0; /* not sent: nothing is judged */
	assert_int_equal(efs_meta_report_finish(f->m, &ctx), 0);
	ctx.master_started_ms = f->now - 30000; /* between the two records */
	assert_int_equal(efs_meta_report_finish(f->m, &ctx), 1);

	assert_int_equal(efs_meta_chunk_get(f->m, a.chunk_id, &got, replicas, &count), 0);
	assert_true(find_replica(replicas, count, "w1")->bad);
	assert_int_equal(efs_meta_chunk_get(f->m, b.chunk_id, &got, replicas, &count), 0);
	assert_false(find_replica(replicas, count, "w1")->bad);
}

/* The replica of @c on @worker_id as the store has it now. */
static struct efs_replica replica_now(struct fixture *f, const struct efs_chunk_info *c,
				      const char *worker_id)
{
	struct efs_chunk_info got;
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	unsigned count = 0;
	assert_int_equal(efs_meta_chunk_get(f->m, c->chunk_id, &got, replicas, &count), 0);
	const struct efs_replica *rep = find_replica(replicas, count, worker_id);
	assert_non_null(rep);
	return *rep;
}

/* LIFECYCLE T29/R12: a verified read makes a bad replica good again only
 * while the row is the one loaded before the read: a replica marked bad
 * again meanwhile, or removed and recorded again, stays as it is. */
static void test_replica_mark_good_only_the_same_bad_replica(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1);

	put_on(f, 1, &a, WORKERS);
	struct efs_replica good = replica_now(f, &a, "w2");
	assert_false(good.bad);
	assert_int_equal(good.created_at_ms, f->now);
	assert_int_equal(efs_meta_replica_mark_good(f->m, a.chunk_id, &good, f->now + 1), -ESTALE);

	/* marked bad, read back intact: good again, recorded at the read */
	assert_int_equal(efs_meta_replica_mark_bad(f->m, a.chunk_id, "w2"), 0);
	struct efs_replica loaded = replica_now(f, &a, "w2");
	assert_true(loaded.bad);
	assert_int_equal(loaded.bad_marks, good.bad_marks + 1);
	assert_int_equal(efs_meta_replica_mark_good(f->m, a.chunk_id, &loaded, f->now + 1000), 0);
	struct efs_replica now = replica_now(f, &a, "w2");
	assert_false(now.bad);
	assert_int_equal(now.created_at_ms, f->now + 1000);
	expect_chunk(f, &a, NULL);
	/* twice: the second finds it good */
	assert_int_equal(efs_meta_replica_mark_good(f->m, a.chunk_id, &loaded, f->now + 2000),
			 -ESTALE);

	/* marked bad again after the reader loaded it (a later read found the
	 * copy gone): the earlier read does not undo that */
	assert_int_equal(efs_meta_replica_mark_bad(f->m, a.chunk_id, "w2"), 0);
	loaded = replica_now(f, &a, "w2");
	assert_int_equal(efs_meta_replica_mark_bad(f->m, a.chunk_id, "w2"), 0);
	assert_int_equal(efs_meta_replica_mark_good(f->m, a.chunk_id, &loaded, f->now + 3000),
			 -ESTALE);
	expect_chunk(f, &a, "w2");

	/* removed and recorded again, then marked as many times: another row */
	loaded = replica_now(f, &a, "w2");
	const char *w2[] = {"w2"};
	assert_int_equal(efs_meta_replica_remove(f->m, a.chunk_id, "w2"), 0);
	assert_int_equal(efs_meta_replica_add(f->m, a.chunk_id, w2, 1, f->now + 4000), 0);
	for (int64_t i = 0; i < loaded.bad_marks; i++)
		assert_int_equal(efs_meta_replica_mark_bad(f->m, a.chunk_id, "w2"), 0);
	assert_int_equal(replica_now(f, &a, "w2").bad_marks, loaded.bad_marks);
	assert_int_equal(efs_meta_replica_mark_good(f->m, a.chunk_id, &loaded, f->now + 5000),
			 -ESTALE);
	expect_chunk(f, &a, "w2");

	/* the end of a report counts its mark too */
	loaded = replica_now(f, &a, "w1");
	struct efs_report_context ctx = report_ctx(f, "w1", f->now);
	ctx.master_started_ms = f->now + 60000;
	assert_int_equal(efs_meta_report_finish(f->m, &ctx), 1);
	struct efs_replica marked = replica_now(f, &a, "w1");
	assert_true(marked.bad);
	assert_int_equal(marked.bad_marks, loaded.bad_marks + 1);
}

/* The under-replicated count (each backend has its own form of it) takes
 * only good replicas on workers heard from after the cut, counts a chunk
 * with no replica row at all, and leaves out unreferenced chunks. */
static void test_under_replicated_counts_good_live_replicas(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1), b = chunk(2), c = chunk(3), d = chunk(4), e = chunk(5);
	uint64_t under = 99;

	put_on(f, 1, &a, WORKERS); /* full */
	put_on(f, 2, &b, 2);       /* w1, w2 */
	put_on(f, 3, &c, WORKERS); /* one bad below */
	put_on(f, 4, &d, 1);       /* w1 */
	put_on(f, 5, &e, WORKERS); /* every row removed below */
	assert_int_equal(efs_meta_replica_mark_bad(f->m, c.chunk_id, "w3"), 0);
	for (size_t i = 0; i < WORKERS; i++)
		assert_int_equal(efs_meta_replica_remove(f->m, e.chunk_id, worker_ids[i]), 0);

	assert_int_equal(efs_meta_under_replicated(f->m, WORKERS, 0, &under), 0);
	assert_int_equal(under, 4); /* b, c, d, e */
	assert_int_equal(efs_meta_under_replicated(f->m, 1, 0, &under), 0);
	assert_int_equal(under, 1); /* e */
	/* w1 not heard from after the cut: a, b, c and d lose its copy */
	assert_int_equal(efs_meta_under_replicated(f->m, 2, worker_heartbeat(0), &under), 0);
	assert_int_equal(under, 4); /* b (1), c (1: w2; w3 is bad), d (0), e (0); a keeps 2 */
	assert_int_equal(efs_meta_under_replicated(f->m, 1, worker_heartbeat(WORKERS), &under), 0);
	assert_int_equal(under, 5);

	/* a session that lets go of its chunk: no longer referenced, not counted */
	char sid[EFS_ID_MAX + 1];
	session_id(5, sid);
	assert_int_equal(efs_meta_session_delete(f->m, sid, f->now), 0);
	assert_int_equal(efs_meta_under_replicated(f->m, 1, 0, &under), 0);
	assert_int_equal(under, 0);
}

/* LIFECYCLE T25/T26: repair lists chunks short of good replicas, fewest
 * first, then those with none good but a bad one on a worker heard from
 * (it may be intact); a chunk whose only replicas are on workers not heard
 * from is left out. */
static void test_repair_list_tries_bad_replicas_last(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1), b = chunk(2), c = chunk(3);
	struct efs_repair_need needs[8];
	size_t count = 0;

	put_on(f, 1, &a, WORKERS);
	put_on(f, 2, &b, WORKERS);
	put_on(f, 3, &c, WORKERS);
	for (size_t i = 0; i < WORKERS; i++)
		assert_int_equal(efs_meta_replica_mark_bad(f->m, a.chunk_id, worker_ids[i]), 0);
	assert_int_equal(efs_meta_replica_mark_bad(f->m, b.chunk_id, "w1"), 0);

	assert_int_equal(efs_meta_repair_list(f->m, WORKERS, 0, 8, needs, &count), 0);
	assert_int_equal(count, 2);
	assert_string_equal(needs[0].chunk_id, b.chunk_id);
	assert_int_equal(needs[0].holding, WORKERS - 1);
	assert_string_equal(needs[1].chunk_id, a.chunk_id);
	assert_int_equal(needs[1].holding, 0);
	assert_int_equal(efs_meta_repair_list(f->m, WORKERS, 0, 1, needs, &count), 0);
	assert_int_equal(count, 1);
	assert_string_equal(needs[0].chunk_id, b.chunk_id);

	/* every worker silent since before the cut: nothing to read from */
	assert_int_equal(efs_meta_repair_list(f->m, WORKERS, worker_heartbeat(WORKERS), 8, needs,
					      &count),
			 0);
	assert_int_equal(count, 0);
	uint64_t under = 0;
	assert_int_equal(efs_meta_under_replicated(f->m, WORKERS, 0, &under), 0);
	assert_int_equal(under, 2);
}

/* Issue 17: EC chunks short of K + M good shard rows are listed for repair
 * with the replicated ones, by how many more losses each survives (good
 * shards above K, good replicas above 1); one with fewer than K good
 * shards comes after every other. efs_meta_ec_stripes counts the
 * degraded and unrecoverable ones; under_replicated counts replicated
 * chunks only. SQL stores only (DynamoDB keeps no EC). */
static void test_repair_list_orders_ec_stripes_by_shards_left(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info full = chunk(1), rep = chunk(2), ec1 = chunk(3), ec2 = chunk(4);
	struct efs_repair_need needs[8];
	size_t count = 0;
	uint64_t degraded = 99, unrecoverable = 99, under = 99;

	if (strcmp(efs_meta_backend(f->m), "dynamodb") == 0)
		skip();
	full.ec_data = ec1.ec_data = ec2.ec_data = 2;
	full.ec_parity = ec1.ec_parity = ec2.ec_parity = 1;
	put_on(f, 1, &full, WORKERS); /* 3 of 3 shards */
	put_on(f, 2, &rep, WORKERS);
	put_on(f, 3, &ec1, WORKERS);
	put_on(f, 4, &ec2, WORKERS);
	assert_int_equal(efs_meta_ec_stripes(f->m, 0, &degraded, &unrecoverable), 0);
	assert_int_equal(degraded, 0);
	assert_int_equal(unrecoverable, 0);

	assert_int_equal(efs_meta_replica_mark_bad(f->m, rep.chunk_id, "w1"), 0); /* 1 spare */
	assert_int_equal(efs_meta_replica_mark_bad(f->m, ec1.chunk_id, "w2"), 0); /* K left */
	assert_int_equal(efs_meta_replica_mark_bad(f->m, ec2.chunk_id, "w1"), 0);
	assert_int_equal(efs_meta_replica_mark_bad(f->m, ec2.chunk_id, "w3"), 0); /* < K */

	assert_int_equal(efs_meta_repair_list(f->m, WORKERS, 0, 8, needs, &count), 0);
	assert_int_equal(count, 3);
	assert_string_equal(needs[0].chunk_id, ec1.chunk_id);
	assert_int_equal(needs[0].holding, 2);
	assert_string_equal(needs[1].chunk_id, rep.chunk_id);
	assert_int_equal(needs[1].holding, 2);
	assert_string_equal(needs[2].chunk_id, ec2.chunk_id);
	assert_int_equal(needs[2].holding, 1);

	assert_int_equal(efs_meta_ec_stripes(f->m, 0, &degraded, &unrecoverable), 0);
	assert_int_equal(degraded, 2);
	assert_int_equal(unrecoverable, 1);
	assert_int_equal(efs_meta_under_replicated(f->m, WORKERS, 0, &under), 0);
	assert_int_equal(under, 1);
	/* no worker heard from after the cut: every stripe is unrecoverable */
	assert_int_equal(efs_meta_ec_stripes(f->m, worker_heartbeat(WORKERS), &degraded,
					     &unrecoverable),
			 0);
	assert_int_equal(degraded, 3);
	assert_int_equal(unrecoverable, 3);
}

/* LIFECYCLE T18: a copy of a referenced chunk short of good replicas, that
 * no row names, is adopted: recorded as a good replica of that worker. */
static void test_report_adopts_copy_of_under_replicated_chunk(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info a = chunk(1);

	put_on(f, 1, &a, 2); /* rows on w1, w2: one short */
	assert_int_equal(report_one(f, "w3", &a, f->now - 10), EFS_REPORT_ADOPT);
	expect_chunk(f, &a, NULL); /* all three workers, none bad */
	/* adopted: the next report of it keeps it */
	assert_int_equal(report_one(f, "w3", &a, f->now - 10), EFS_REPORT_KEEP);
}

/* One batch of 5000 entries, as a worker sends them, mixing every verdict
 * and a chunk listed twice, gets the verdicts single reports give (the
 * batch is judged in slices of a few statements each, not statements per
 * chunk). Prints the time the batch took: a figure, not an assertion. */
#define BIG_BATCH 5000
static void test_report_batch_of_5000(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_info kept = chunk(1), adopted = chunk(2), surplus = chunk(3);
	struct efs_report_context ctx = report_ctx(f, "w3", f->now);
	struct efs_report_entry *e = calloc(BIG_BATCH, sizeof(*e));
	assert_non_null(e);

	add_worker(f, "w4");
	put_on(f, 1, &kept, WORKERS);   /* w1, w2, w3: w3's copy is known and needed */
	put_on(f, 2, &adopted, 2);      /* w1, w2: w3's copy is adopted */
	put_on(f, 3, &surplus, WORKERS); /* w1, w2, w3 ... */
	char sid[EFS_ID_MAX + 1];
	session_id(3, sid);
	const char *w4[] = {"w4"};
	/* ... and w4: four good replicas of three wanted, w3's is surplus */
	assert_int_equal(efs_meta_replica_add(f->m, surplus.chunk_id, w4, 1, f->now), 0);
	for (size_t i = 0; i < BIG_BATCH; i++) {
		/* unknown chunks, alternately older and younger than the grace */
		snprintf(e[i].chunk_id, sizeof(e[i].chunk_id), "%064zx", (size_t)0xabc00000 + i);
		e[i].mtime_ms = i % 2 ? f->now - GRACE_MS - 1000 : f->now - 1000;
		e[i].verdict = (enum efs_report_verdict)-1;
	}
	efs_strlcpy(e[10].chunk_id, kept.chunk_id, sizeof(e[10].chunk_id));
	efs_strlcpy(e[2500].chunk_id, adopted.chunk_id, sizeof(e[2500].chunk_id));
	efs_strlcpy(e[4999].chunk_id, adopted.chunk_id, sizeof(e[4999].chunk_id)); /* twice */
	efs_strlcpy(e[777].chunk_id, surplus.chunk_id, sizeof(e[777].chunk_id));
	e[10].mtime_ms = e[2500].mtime_ms = e[4999].mtime_ms = e[777].mtime_ms = f->now - 10;

	int64_t started = efs_mono_ms();
	assert_int_equal(efs_meta_report_batch(f->m, &ctx, e, BIG_BATCH), 0);
	print_message("report batch of %d entries: %lld ms\n", BIG_BATCH,
		      (long long)(efs_mono_ms() - started));
	for (size_t i = 0; i < BIG_BATCH; i++) {
		enum efs_report_verdict want = i % 2 ? EFS_REPORT_DELETE : EFS_REPORT_KEEP;
		if (i == 10 || i == 4999)
			want = EFS_REPORT_KEEP;
		else if (i == 2500)
			want = EFS_REPORT_ADOPT;
		else if (i == 777)
			want = EFS_REPORT_DELETE;
		assert_int_equal(e[i].verdict, want);
	}
	expect_chunk(f, &adopted, NULL); /* all three workers, none bad */
	struct efs_chunk_info got;
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	unsigned count = 0;
	assert_int_equal(efs_meta_chunk_get(f->m, surplus.chunk_id, &got, replicas, &count), 0);
	assert_int_equal(count, WORKERS);
	assert_null(find_replica(replicas, count, "w3"));
	free(e);
}

/* The case of a large worker's routine report: every chunk known, with a
 * good replica on the reporting worker, all kept (and noted as seen).
 * Prints the time the batch took: a figure, not an assertion. */
#define KNOWN_BATCH 5000
static void test_report_batch_of_known_chunks(void **state)
{
	struct fixture *f = *state;
	struct efs_report_context ctx = report_ctx(f, "w3", f->now);
	struct efs_report_entry *e = calloc(KNOWN_BATCH, sizeof(*e));
	assert_non_null(e);

	new_session(f, 1, "alice");
	for (unsigned i = 0; i < KNOWN_BATCH; i++) {
		struct efs_chunk_info c = chunk(100 + i);
		assert_int_equal(put(f, 1, i, &c, false), 0);
		efs_strlcpy(e[i].chunk_id, c.chunk_id, sizeof(e[i].chunk_id));
		e[i].mtime_ms = f->now - 10;
		e[i].verdict = (enum efs_report_verdict)-1;
	}
	int64_t started = efs_mono_ms();
	assert_int_equal(efs_meta_report_batch(f->m, &ctx, e, KNOWN_BATCH), 0);
	print_message("report batch of %d known chunks: %lld ms\n", KNOWN_BATCH,
		      (long long)(efs_mono_ms() - started));
	for (size_t i = 0; i < KNOWN_BATCH; i++)
		assert_int_equal(e[i].verdict, EFS_REPORT_KEEP);
	free(e);
}

/* The cluster totals: complete files only, distinct referenced chunks
 * (a session's too) counted once, unreferenced chunks not at all. */
/* Runs @sql on the server's own database; returns the first column of the
 * first row as a number, or -1. */
static long pg_admin_value(const char *sql)
{
	PGconn *c = PQconnectdb(pg_url);
	long v = -1;
	if (PQstatus(c) == CONNECTION_OK) {
		PGresult *res = PQexec(c, sql);
		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0)
			v = strtol(PQgetvalue(res, 0, 0), NULL, 10);
		PQclear(res);
	}
	PQfinish(c);
	return v;
}

/* The server ends the store's idle pooled connections (a restart, an
 * admin's pg_terminate_backend): the next calls reconnect instead of
 * failing once per dead connection. */
static void test_idle_connections_ended_by_the_server(void **state)
{
	struct fixture *f = *state;
	struct efs_session_info s = session_info(1, "alice", 99999), got;
	char sql[256];

	if (!f->db[0])
		skip(); /* SQLite has no server */
	assert_int_equal(efs_meta_session_create(f->m, &s), 0);
	assert_int_equal(efs_meta_session_get(f->m, s.session_id, &got), 0);
	snprintf(sql, sizeof(sql),
		 "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
		 " WHERE datname = '%s' AND pid <> pg_backend_pid()",
		 f->db);
	assert_true(pg_admin_value(sql) >= 1);
	/* Wait until they are gone (the server ends them asynchronously). */
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_stat_activity WHERE datname = '%s'",
		 f->db);
	for (int i = 0; i < 500 && pg_admin_value(sql) != 0; i++)
		usleep(10 * 1000);
	assert_int_equal(pg_admin_value(sql), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(efs_meta_session_get(f->m, s.session_id, &got), 0);
	assert_string_equal(got.owner, "alice");
}

static void test_stats(void **state)
{
	struct fixture *f = *state;
	static const unsigned first[] = {1, 2, 3}, second[] = {2, 3, 4};
	struct efs_meta_stats st;
	char fid[EFS_ID_MAX + 1];

	assert_int_equal(efs_meta_stats(f->m, &st), 0);
	assert_true(st.file_count == 0 && st.logical_bytes == 0 && st.chunk_count == 0 &&
		    st.chunk_bytes == 0 && st.stored_bytes == 0);

	make_file(f, 1, "alice", 100, first, 3);
	make_file(f, 2, "bob", 200, second, 3);
	new_session(f, 7, "carol");
	struct efs_chunk_info open = chunk(5);
	assert_int_equal(put(f, 7, 0, &open, false), 0);

	assert_int_equal(efs_meta_stats(f->m, &st), 0);
	assert_int_equal(st.file_count, 2);
	assert_int_equal(st.logical_bytes, (12345 + 1) + (12345 + 2));
	assert_int_equal(st.chunk_count, 5); /* chunks 1..5, each once */
	assert_int_equal(st.chunk_bytes, 1000 * (1 + 2 + 3 + 4 + 5) + 5);
	assert_int_equal(st.stored_bytes, 600 * (1 + 2 + 3 + 4 + 5) + 5);

	file_id(1, fid);
	assert_int_equal(efs_meta_file_delete(f->m, fid, "alice", f->now), 0);
	assert_int_equal(efs_meta_stats(f->m, &st), 0);
	assert_int_equal(st.file_count, 1);
	assert_int_equal(st.logical_bytes, 12345 + 2);
	assert_int_equal(st.chunk_count, 4); /* chunk 1 waits for the collector */
	assert_int_equal(st.chunk_bytes, 1000 * (2 + 3 + 4 + 5) + 4);
	assert_true(st.ec_file_count == 0 && st.ec_logical_bytes == 0);

	/* An erasure-coded file counts in the totals and in its policy's
	 * (DynamoDB keeps no policy: its files are in S3, never EC). */
	if (ddb_on)
		return;
	struct efs_file_info ec = file_info(3, "dave", 300, 1);
	efs_strlcpy(ec.policy, "ec:4+2", sizeof(ec.policy));
	new_session(f, 1003, "dave");
	struct efs_chunk_info c2 = chunk(2);
	assert_int_equal(put(f, 1003, 0, &c2, false), 0);
	complete(f, 1003, &ec);
	assert_int_equal(efs_meta_stats(f->m, &st), 0);
	assert_int_equal(st.file_count, 2);
	assert_int_equal(st.logical_bytes, (12345 + 2) + (12345 + 3));
	assert_int_equal(st.ec_file_count, 1);
	assert_int_equal(st.ec_logical_bytes, 12345 + 3);
}

/* ---- two stores on one database (two masters) ---------------------------- */

/* A second store opened on the same database (a second master) sees what
 * the first wrote, and the lease for background duties is held by one of
 * them at a time: with PostgreSQL the first to ask keeps it until its store
 * closes, then the other gets it; SQLite has one master and always holds
 * it. */
static int open_second(struct fixture *f, struct efs_meta **out)
{
	char err[256] = "", url[512];
	int r;
	if (ddb_on)
		r = efs_meta_open_dynamodb(&f->ddb, out, err, sizeof(err));
	else if (f->db[0] && pg_url_with_db(pg_url, f->db, url, sizeof(url)) < 0)
		r = -ENAMETOOLONG;
	else
		r = efs_meta_open(f->db[0] ? url : NULL, f->dir, out, err, sizeof(err));
	if (r < 0)
		print_error("open: %s\n", err);
	return r;
}

static void test_second_store_on_the_same_database(void **state)
{
	struct fixture *f = *state;
	static const unsigned numbers[] = {1, 2};
	struct efs_meta *other = NULL;
	struct efs_file_info got;
	char fid[EFS_ID_MAX + 1];

	assert_int_equal(open_second(f, &other), 0);
	/* One metadata, one cluster: the second store reads the first's id. */
	assert_true(efs_cluster_id_valid(efs_meta_cluster_id(other)));
	assert_string_equal(efs_meta_cluster_id(other), efs_meta_cluster_id(f->m));

	make_file(f, 1, "alice", 100, numbers, 2);
	file_id(1, fid);
	assert_int_equal(efs_meta_file_get(other, fid, &got), 0);
	assert_int_equal(got.chunk_count, 2);
	assert_int_equal(efs_meta_file_delete(other, fid, "alice", f->now), 0);
	assert_int_equal(efs_meta_file_get(f->m, fid, &got), -ENOENT);
	assert_int_equal(garbage_count(f, f->now + 1), 2);

	if (!f->db[0] && !ddb_on) {
		/* SQLite: always held, but each store's taking is a new epoch,
		 * and so is taking it again after a drop. */
		assert_true(efs_meta_lease(f->m));
		uint64_t first = efs_meta_lease_epoch(f->m);
		assert_true(first >= 1);
		assert_true(efs_meta_lease(f->m));
		assert_int_equal(efs_meta_lease_epoch(f->m), first); /* a renewal */
		assert_true(efs_meta_lease(other));
		assert_true(efs_meta_lease_epoch(other) > first);
		efs_meta_lease_drop(f->m);
		assert_int_equal(efs_meta_lease_epoch(f->m), 0);
		assert_true(efs_meta_lease(f->m));
		assert_true(efs_meta_lease_epoch(f->m) > efs_meta_lease_epoch(other));
		efs_meta_close(other);
		return;
	}
	assert_true(efs_meta_lease(f->m));
	uint64_t first = efs_meta_lease_epoch(f->m);
	assert_true(first >= 1);
	assert_false(efs_meta_lease(other));
	assert_int_equal(efs_meta_lease_epoch(other), 0);
	assert_true(efs_meta_lease(f->m)); /* kept while held */
	assert_int_equal(efs_meta_lease_epoch(f->m), first); /* a renewal: the same epoch */
	assert_false(efs_meta_lease(other));
	/* Dropped here (a failed metadata call): epoch 0 at once; taken
	 * again (nobody else took it meanwhile), it is a new epoch. */
	efs_meta_lease_drop(f->m);
	assert_int_equal(efs_meta_lease_epoch(f->m), 0);
	bool again = false;
	for (int i = 0; i < 200 && !(again = efs_meta_lease(f->m)); i++)
		efs_sleep_ms(10);
	assert_true(again);
	uint64_t second = efs_meta_lease_epoch(f->m);
	assert_true(second > first);
	assert_false(efs_meta_lease(other));
	efs_meta_close(f->m);
	f->m = NULL;
	/* the lock went with the first store's connection (the server drops
	 * it when it has processed the disconnect: allow it a moment); the
	 * DynamoDB lease item is deleted by the closing store */
	bool leased = false;
	for (int i = 0; i < 200 && !(leased = efs_meta_lease(other)); i++)
		efs_sleep_ms(10);
	assert_true(leased);
	/* a takeover: the epoch grew */
	assert_true(efs_meta_lease_epoch(other) > second);
	assert_true(efs_meta_lease(other));
	/* a third store does not get it while the second holds it */
	struct efs_meta *third = NULL;
	assert_int_equal(open_second(f, &third), 0);
	assert_false(efs_meta_lease(third));
	efs_meta_close(third);
	f->m = other; /* closed by teardown */
}

/* ---- many chunks, two writers ---------------------------------------------- */

/* A file of 250 chunks (more than one DynamoDB transaction holds: the chunk
 * list is written in items of 99 before the file appears), read back in
 * pages, listed, deleted: every chunk then waits for the collector, and
 * the collector takes them all. */
static void test_file_of_250_chunks(void **state)
{
	struct fixture *f = *state;
	enum { N = 250 };
	static unsigned numbers[N];
	struct efs_file_chunk *chunks = NULL;
	struct efs_file_info *files = NULL, got;
	size_t count = 0;
	char fid[EFS_ID_MAX + 1];

	for (unsigned i = 0; i < N; i++)
		numbers[i] = 100 + i;
	make_file(f, 7, "carol", 5000, numbers, N);
	file_id(7, fid);
	assert_int_equal(efs_meta_file_get(f->m, fid, &got), 0);
	assert_int_equal(got.chunk_count, N);
	/* pages that straddle the list items (0..98, 99..197, 198..249) */
	for (uint64_t first = 0; first < N; first += 60) {
		assert_int_equal(efs_meta_file_chunks(f->m, fid, first, 60, &chunks, &count), 0);
		assert_int_equal(count, first + 60 <= N ? 60 : N - first);
		for (size_t i = 0; i < count; i++) {
			struct efs_chunk_info want = chunk(numbers[first + i]);
			assert_int_equal(chunks[i].index, first + i);
			assert_string_equal(chunks[i].chunk.chunk_id, want.chunk_id);
			assert_int_equal(chunks[i].chunk.size, want.size);
			assert_int_equal(chunks[i].chunk.stored_size, want.stored_size);
		}
		free(chunks);
	}
	assert_int_equal(efs_meta_file_list(f->m, "carol", 0, "", 10, &files, &count), 0);
	assert_int_equal(count, 1);
	assert_string_equal(files[0].file_id, fid);
	free(files);
	assert_int_equal(garbage_count(f, f->now + 1), 0);

	assert_int_equal(efs_meta_file_delete(f->m, fid, "carol", f->now), 0);
	assert_int_equal(efs_meta_file_get(f->m, fid, &got), -ENOENT);
	struct efs_meta_stats st;
	assert_int_equal(efs_meta_stats(f->m, &st), 0);
	assert_int_equal(st.file_count, 0);
	assert_int_equal(st.chunk_count, 0); /* every count back to 0 */
	static char ids[N + 10][65];
	assert_int_equal(efs_meta_garbage_list(f->m, f->now + 1, N + 10, ids, &count), 0);
	assert_int_equal(count, N);
	for (size_t i = 0; i < count; i++) {
		struct efs_replica replicas[EFS_MAX_REPLICAS];
		unsigned replica_count = 0;
		assert_int_equal(efs_meta_garbage_take(f->m, ids[i], replicas, &replica_count), 0);
	}
	assert_int_equal(garbage_count(f, f->now + 1), 0);
}

/* DynamoDB only: the collector's sweep of leftovers (docs/AWS.md,
 * "Leftovers") against a complete. A sweep run between a complete's chunk
 * lists and its commit, as if the complete were slower than the sweep's
 * grace, deletes the lists and the commit then fails (-EAGAIN): no file
 * with missing chunks, the session and its counts intact, and the complete
 * done again succeeds. A sweep after a normal complete touches nothing. */
static void sweep_everything(struct dyn *d, const char *file_id)
{
	(void)file_id;
	dyn_sweep_leftovers(d, efs_now_ms() + 3600000, efs_now_ms());
}

static void test_dynamodb_sweep_against_a_complete(void **state)
{
	struct fixture *f = *state;
	static const unsigned numbers[3] = {501, 502, 503};
	struct efs_file_info fi = file_info(40, "dave", f->now, 3), got;
	struct efs_session_chunk *sc = NULL;
	struct efs_file_chunk *chunks = NULL;
	char sid[EFS_ID_MAX + 1];
	size_t count = 0;

	if (strcmp(efs_meta_backend(f->m), "dynamodb") != 0)
		skip();
	new_session(f, 40, "dave");
	for (size_t i = 0; i < 3; i++) {
		struct efs_chunk_info c = chunk(numbers[i]);
		assert_int_equal(put(f, 40, i, &c, false), 0);
	}
	session_id(40, sid);
	dyn_test_before_commit = sweep_everything;
	int r = efs_meta_session_complete(f->m, sid, session_version(f, 40), &fi, 0);
	dyn_test_before_commit = NULL;
	assert_int_equal(r, -EAGAIN);
	assert_int_equal(efs_meta_file_get(f->m, fi.file_id, &got), -ENOENT);
	assert_int_equal(efs_meta_session_chunks(f->m, sid, &sc, &count), 0);
	assert_int_equal(count, 3);
	free(sc);
	for (size_t i = 0; i < 3; i++) {
		struct efs_chunk_info c = chunk(numbers[i]);
		assert_false(is_garbage(f, f->now + 1, &c));
	}
	complete(f, 40, &fi);
	/* after a complete, a sweep that takes everything old removes nothing */
	sweep_everything(f->m->impl, fi.file_id);
	assert_int_equal(efs_meta_file_chunks(f->m, fi.file_id, 0, 10, &chunks, &count), 0);
	assert_int_equal(count, 3);
	free(chunks);
	for (size_t i = 0; i < 3; i++) {
		struct efs_chunk_info c = chunk(numbers[i]);
		assert_false(is_garbage(f, f->now + 1, &c));
	}
}

/* Two stores (two masters), one thread each, put the same chunk ids into
 * sessions of their own, complete some into files and delete the rest,
 * at the same time: no update is lost, so the files' chunks stay
 * referenced, and once everything is deleted every chunk is garbage. */
#define WRITER_ROUNDS 6
#define WRITER_CHUNKS 4

struct writer {
	struct fixture *f;
	struct efs_meta *m;
	unsigned base; /* session and file numbers of this writer */
	int failures;
};

static void *writer_run(void *arg)
{
	struct writer *w = arg;
	for (unsigned round = 0; round < WRITER_ROUNDS; round++) {
		unsigned n = w->base + round;
		char sid[EFS_ID_MAX + 1];
		struct efs_session_info s = session_info(n, "dave", w->f->now + 3600000);
		session_id(n, sid);
		if (efs_meta_session_create(w->m, &s) < 0) {
			w->failures++;
			continue;
		}
		for (unsigned i = 0; i < WRITER_CHUNKS; i++) {
			struct efs_chunk_info c = chunk(50 + i);
			if (efs_meta_session_put_chunk(w->m, sid, i, &c, worker_ids, WORKERS, false,
						       w->f->now, w->f->now + 60000, 0) < 0)
				w->failures++;
		}
		if (round % 2 == 0) {
			struct efs_session_info now;
			struct efs_file_info fi = file_info(n, "dave", 100 + n, WRITER_CHUNKS);
			if (efs_meta_session_get(w->m, sid, &now) < 0 ||
			    efs_meta_session_complete(w->m, sid, now.version, &fi, 0) < 0)
				w->failures++;
		} else if (efs_meta_session_delete(w->m, sid, w->f->now) < 0) {
			w->failures++;
		}
	}
	return NULL;
}

static void test_two_writers_keep_counts_exact(void **state)
{
	struct fixture *f = *state;
	struct writer w[2] = {{f, f->m, 2000, 0}, {f, NULL, 3000, 0}};
	pthread_t threads[2];

	assert_int_equal(open_second(f, &w[1].m), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&threads[i], NULL, writer_run, &w[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(threads[i], NULL);
	assert_int_equal(w[0].failures, 0);
	assert_int_equal(w[1].failures, 0);
	/* six files hold the chunks; nothing is garbage */
	assert_int_equal(garbage_count(f, f->now + 1), 0);
	struct efs_meta_stats st;
	assert_int_equal(efs_meta_stats(f->m, &st), 0);
	assert_int_equal(st.file_count, WRITER_ROUNDS);
	assert_int_equal(st.chunk_count, WRITER_CHUNKS);

	/* both delete their files concurrently: the counts reach 0 exactly */
	for (int k = 0; k < 2; k++) {
		for (unsigned round = 0; round < WRITER_ROUNDS; round += 2) {
			char fid[EFS_ID_MAX + 1];
			file_id(w[k].base + round, fid);
			if (round == WRITER_ROUNDS - 2 && k == 1)
				break; /* one file stays */
			assert_int_equal(efs_meta_file_delete(w[k].m, fid, "dave", f->now), 0);
		}
	}
	assert_int_equal(garbage_count(f, f->now + 1), 0);
	char last[EFS_ID_MAX + 1];
	file_id(w[1].base + WRITER_ROUNDS - 2, last);
	assert_int_equal(efs_meta_file_delete(w[0].m, last, "dave", f->now), 0);
	assert_int_equal(garbage_count(f, f->now + 1), WRITER_CHUNKS);
	efs_meta_close(w[1].m);
}

/* ---- access keys ---- */

static void key_fill(struct efs_access_key *k, const char *id, const char *owner, int64_t at)
{
	memset(k, 0, sizeof(*k));
	efs_strlcpy(k->access_key_id, id, sizeof(k->access_key_id));
	efs_strlcpy(k->owner, owner, sizeof(k->owner));
	snprintf(k->sealed_secret, sizeof(k->sealed_secret), "v1:sealed-%s", id);
	k->created_at_ms = at;
}

/* Create, get, list (own keys only, oldest first), delete (only the
 * owner's), the per-owner cap held exactly and given back by a delete. */
static void test_access_keys(void **state)
{
	struct fixture *f = *state;
	struct efs_access_key k, got, *list = NULL;
	size_t n = 99;

	key_fill(&k, "EKAAAAAAAAAAAAAAAAA2", "alice", 2000);
	assert_int_equal(efs_meta_key_create(f->m, &k, 3), 0);
	key_fill(&k, "EKAAAAAAAAAAAAAAAAA1", "alice", 1000);
	assert_int_equal(efs_meta_key_create(f->m, &k, 3), 0);
	key_fill(&k, "EKBBBBBBBBBBBBBBBBB1", "bob", 1500);
	assert_int_equal(efs_meta_key_create(f->m, &k, 3), 0);
	/* an id taken (by anyone) */
	key_fill(&k, "EKAAAAAAAAAAAAAAAAA1", "bob", 3000);
	assert_int_equal(efs_meta_key_create(f->m, &k, 3), -EEXIST);

	assert_int_equal(efs_meta_key_get(f->m, "EKAAAAAAAAAAAAAAAAA1", &got), 0);
	assert_string_equal(got.owner, "alice");
	assert_string_equal(got.sealed_secret, "v1:sealed-EKAAAAAAAAAAAAAAAAA1");
	assert_true(got.created_at_ms == 1000);
	assert_int_equal(efs_meta_key_get(f->m, "EKNONEXISTENT0000000", &got), -ENOENT);

	assert_int_equal(efs_meta_key_list(f->m, "alice", &list, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].access_key_id, "EKAAAAAAAAAAAAAAAAA1");
	assert_string_equal(list[1].access_key_id, "EKAAAAAAAAAAAAAAAAA2");
	free(list);
	list = NULL;
	assert_int_equal(efs_meta_key_list(f->m, "carol", &list, &n), 0);
	assert_int_equal(n, 0);
	free(list);

	/* the cap: alice has 2 of 3 */
	key_fill(&k, "EKAAAAAAAAAAAAAAAAA3", "alice", 3000);
	assert_int_equal(efs_meta_key_create(f->m, &k, 3), 0);
	key_fill(&k, "EKAAAAAAAAAAAAAAAAA4", "alice", 4000);
	assert_int_equal(efs_meta_key_create(f->m, &k, 3), -EDQUOT);
	assert_int_equal(efs_meta_key_get(f->m, "EKAAAAAAAAAAAAAAAAA4", &got), -ENOENT);

	/* bob cannot delete alice's key; alice can, once */
	assert_int_equal(efs_meta_key_delete(f->m, "EKAAAAAAAAAAAAAAAAA1", "bob"), -ENOENT);
	assert_int_equal(efs_meta_key_delete(f->m, "EKAAAAAAAAAAAAAAAAA1", "alice"), 0);
	assert_int_equal(efs_meta_key_delete(f->m, "EKAAAAAAAAAAAAAAAAA1", "alice"), -ENOENT);
	assert_int_equal(efs_meta_key_get(f->m, "EKAAAAAAAAAAAAAAAAA1", &got), -ENOENT);
	/* the delete gave a place back */
	assert_int_equal(efs_meta_key_create(f->m, &k, 3), 0);
	key_fill(&k, "EKAAAAAAAAAAAAAAAAA5", "alice", 5000);
	assert_int_equal(efs_meta_key_create(f->m, &k, 3), -EDQUOT);
	assert_int_equal(efs_meta_key_list(f->m, "alice", &list, &n), 0);
	assert_int_equal(n, 3);
	free(list);
	assert_int_equal(efs_meta_key_list(f->m, "bob", &list, &n), 0);
	assert_int_equal(n, 1);
	free(list);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define T_NO_WORKERS(fn) cmocka_unit_test_setup_teardown(fn, setup_without_workers, teardown)
	const struct CMUnitTest tests[] = {
		T(test_session_create_and_get),
		T(test_session_create_conflict_and_unknown),
		T(test_put_chunk_adds_chunk_with_replicas),
		T(test_worker_calls),
		T(test_replica_on_unknown_worker),
		T(test_put_at_same_index_releases_old_chunk),
		T(test_dedup_put),
		T(test_put_on_unknown_session),
		T(test_session_chunks_ordered_by_index),
		T(test_complete_creates_file),
		T(test_complete_with_stale_version),
		T(test_complete_remembers_the_session),
		T(test_put_chunk_moves_expiry_forward),
		T(test_create_single_records_file_and_chunk),
		T(test_create_single_dedup),
		T(test_create_single_empty_file),
		T(test_file_list_pages_by_created_at_and_id),
		T(test_file_delete_releases_chunks_to_the_collector),
		T(test_chunk_twice_in_one_file),
		T(test_file_with_repeated_chunk_stays_referenced),
		T(test_garbage_take_of_rereferenced_chunk),
		T_NO_WORKERS(test_locations_without_workers_are_returned_like_replicas),
		T_NO_WORKERS(test_replica_remove_if_keeps_the_keeper),
		T(test_session_delete_releases_chunks),
		T(test_session_release_counts_a_repeated_chunk_twice),
		T(test_session_expired),
		T(test_replica_mark_bad),
		T(test_replica_mark_lost_spares_a_later_row),
		T(test_report_drops_a_bad_replica_of_a_chunk_good_elsewhere),
		T(test_report_unknown_chunk),
		T(test_report_unreferenced_unnamed_copy),
		T(test_report_surplus_unnamed_copy),
		T(test_report_surplus_keeps_a_zone_s_only_copy),
		T(test_report_age_is_judged_on_the_worker_clock),
		T(test_report_ec_shards_are_never_surplus),
		T(test_report_finish_judges_on_the_master_clock),
		T(test_report_adopts_copy_of_under_replicated_chunk),
		T(test_replica_mark_good_only_the_same_bad_replica),
		T(test_repair_list_tries_bad_replicas_last),
		T(test_under_replicated_counts_good_live_replicas),
		T(test_repair_list_orders_ec_stripes_by_shards_left),
		T(test_report_batch_of_5000),
		T(test_report_batch_of_known_chunks),
		T(test_stats),
		T(test_idle_connections_ended_by_the_server),
		T(test_second_store_on_the_same_database),
		T(test_file_of_250_chunks),
		T(test_dynamodb_sweep_against_a_complete),
		T(test_two_writers_keep_counts_exact),
		T(test_access_keys),
	};
#undef T
	/* the store logs migrations at info level; keep the output to failures */
	efs_log_set_level(EFS_LOG_WARN);
	int failed = cmocka_run_group_tests_name("meta_files_sqlite", tests, NULL, NULL);
	const char *url = getenv("ECHOFS_TEST_PG_URL");
	if (url && *url) {
		pg_url = url;
		failed += cmocka_run_group_tests_name("meta_files_postgres", tests, NULL, NULL);
	} else {
		print_message("meta_files_postgres: not run (ECHOFS_TEST_PG_URL is not set)\n");
	}
	pg_url = NULL;
	const char *ddb = getenv("ECHOFS_TEST_DYNAMODB");
	const char *require = getenv("ECHOFS_REQUIRE_AWS_LOCAL");
	if (ddb && strncmp(ddb, "http", 4) == 0) {
		/* an endpoint: DynamoDB Local, which takes any key */
		setenv("AWS_ENDPOINT_URL_DYNAMODB", ddb, 1);
		if (!getenv("AWS_ACCESS_KEY_ID") || !getenv("AWS_SECRET_ACCESS_KEY")) {
			setenv("AWS_ACCESS_KEY_ID", "local", 1);
			setenv("AWS_SECRET_ACCESS_KEY", "local", 1);
		}
	}
	if (ddb && (strcmp(ddb, "1") == 0 || strncmp(ddb, "http", 4) == 0)) {
		ddb_on = true;
		failed += cmocka_run_group_tests_name("meta_files_dynamodb", tests, NULL, NULL);
	} else if (require && strcmp(require, "1") == 0) {
		print_error("meta_files_dynamodb: ECHOFS_REQUIRE_AWS_LOCAL=1 but"
			    " ECHOFS_TEST_DYNAMODB is not set\n");
		failed++;
	} else {
		print_message("meta_files_dynamodb: not run (ECHOFS_TEST_DYNAMODB is not set)\n");
	}
	return failed;
}

