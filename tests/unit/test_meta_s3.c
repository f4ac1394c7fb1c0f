/* SPDX-License-Identifier: MIT */
/* test_meta_s3.c - unit tests of the S3 operations of the metadata store
 * (buckets and objects, include/echofs/meta.h) on SQLite, each in a fresh
 * directory, and, when ECHOFS_TEST_PG_URL is set, a second time on
 * PostgreSQL, each test on a database of its own (efs_s3unit_<pid>_<n>),
 * and, when ECHOFS_TEST_DYNAMODB is set (as for test_meta_files.c: "1" with
 * the AWS variables, or DynamoDB Local's URL), a third time on DynamoDB,
 * each test on three tables of its own (efsu3_<pid>_<n>_files...).
 *
 * What the S3 listener relies on: bucket names unique across owners,
 * deletion only when empty, an object's file released in the transaction
 * that replaces or deletes the object (checked through what the collector
 * would take), a file deleted through the REST API taking its object with
 * it, and listings in byte order, bounded by their limit.
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

#include <pthread.h>

#include <ftw.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const worker_ids[] = {"w1"};

struct fixture {
	char tables[3][64]; /* DynamoDB run: this test's tables */
	struct efs_meta_dynamodb_config ddb;
	char dir[64];
	char db[64]; /* the PostgreSQL database of this test, or "" (SQLite) */
	struct efs_meta *m;
	int64_t now;
};

static const char *pg_url;
static unsigned pg_databases;

static int pg_admin(const char *sql)
{
	PGconn *c = PQconnectdb(pg_url);
	int r = 0;
	if (PQstatus(c) != CONNECTION_OK) {
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

/* @pg_url naming database @db instead (postgres://user@host:port/db). */
static void pg_url_with_db(const char *db, char *out, size_t size)
{
	const char *auth = strstr(pg_url, "://");
	const char *path = auth ? strchr(auth + 3, '/') : NULL;
	size_t head = path ? (size_t)(path - pg_url) : strlen(pg_url);
	snprintf(out, size, "%.*s/%s", (int)head, pg_url, db);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	return remove(path);
}

/* True while the DynamoDB run is on. */
static bool ddb_on;
static unsigned ddb_tables;

/* Opens @f->m on three fresh tables (@create) or on @f's tables again. */
static int ddb_open(struct fixture *f, bool create, struct efs_meta **out)
{
	char err[256] = "";
	if (create) {
		static const char *const kinds[3] = {"files", "chunks", "sessions"};
		unsigned n = ++ddb_tables;
		for (int i = 0; i < 3; i++)
			snprintf(f->tables[i], sizeof(f->tables[i]), "efsu3_%ld_%u_%s",
				 (long)getpid(), n, kinds[i]);
		f->ddb.files_table = f->tables[0];
		f->ddb.chunks_table = f->tables[1];
		f->ddb.sessions_table = f->tables[2];
		if (efs_meta_dynamodb_tables(&f->ddb, false, err, sizeof(err)) < 0) {
			print_error("DynamoDB: %s\n", err);
			return -1;
		}
	}
	if (efs_meta_open_dynamodb(&f->ddb, out, err, sizeof(err)) < 0) {
		print_error("DynamoDB: %s\n", err);
		return -1;
	}
	return 0;
}

/* A second handle on the fixture's store (a second master); NULL on
 * SQLite, where two handles would only contend for the file lock. */
static struct efs_meta *open_second(struct fixture *f)
{
	char err[256] = "", url[512];
	struct efs_meta *m = NULL;
	if (ddb_on)
		return ddb_open(f, false, &m) == 0 ? m : NULL;
	if (!pg_url)
		return NULL;
	pg_url_with_db(f->db, url, sizeof(url));
	return efs_meta_open(url, f->dir, &m, err, sizeof(err)) == 0 ? m : NULL;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256] = "", url[512] = "", sql[128];
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/efs-meta-s3-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	if (ddb_on) {
		*state = f;
		if (ddb_open(f, true, &f->m) < 0)
			return -1;
	} else if (pg_url) {
		snprintf(f->db, sizeof(f->db), "efs_s3unit_%ld_%u", (long)getpid(), ++pg_databases);
		snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->db);
		if (pg_admin(sql) < 0)
			return -1;
		pg_url_with_db(f->db, url, sizeof(url));
	}
	if (!ddb_on && efs_meta_open(pg_url ? url : NULL, f->dir, &f->m, err, sizeof(err)) < 0) {
		print_error("efs_meta_open: %s\n", err);
		return -1;
	}
	struct efs_worker_info w = {.worker_id = "w1",
				    .url = "http://10.0.0.1:9000",
				    .registered_at_ms = 1000,
				    .last_heartbeat_ms = 1000};
	if (efs_meta_worker_register(f->m, &w) < 0)
		return -1;
	f->now = efs_now_ms();
	*state = f;
	return 0;
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

/* ---- helpers ------------------------------------------------------------ */

static struct efs_bucket_info bucket(const char *name, const char *owner)
{
	struct efs_bucket_info b;
	memset(&b, 0, sizeof(b));
	efs_strlcpy(b.name, name, sizeof(b.name));
	efs_strlcpy(b.owner, owner, sizeof(b.owner));
	efs_strlcpy(b.region, "us-east-1", sizeof(b.region));
	b.created_at_ms = 1000;
	return b;
}

/* A recorded file of @owner with one chunk of content @seed; the chunk's
 * id into @chunk_id (65 bytes). */
static void make_file(struct fixture *f, const char *owner, int seed, char *file_id, char *chunk_id)
{
	struct efs_file_info fi;
	struct efs_chunk_info c;
	char data[32];
	memset(&fi, 0, sizeof(fi));
	memset(&c, 0, sizeof(c));
	snprintf(data, sizeof(data), "object bytes %d", seed);
	efs_sha256_hex(data, strlen(data), c.chunk_id);
	c.size = c.stored_size = strlen(data);
	assert_int_equal(efs_random_hex(fi.file_id, EFS_FILE_ID_LEN / 2), 0);
	efs_strlcpy(fi.owner, owner, sizeof(fi.owner));
	efs_strlcpy(fi.name, "obj", sizeof(fi.name));
	fi.size = c.size;
	efs_strlcpy(fi.sha256, c.chunk_id, sizeof(fi.sha256));
	fi.chunk_size = 1024;
	fi.replication = 1;
	fi.created_at_ms = f->now;
	assert_int_equal(efs_meta_file_create_single(f->m, &fi, &c, worker_ids, 1, false, f->now),
			 0);
	efs_strlcpy(file_id, fi.file_id, EFS_ID_MAX + 1);
	efs_strlcpy(chunk_id, c.chunk_id, 65);
}

/* True when the collector would take @chunk_id (no reference left). */
static bool is_garbage(struct fixture *f, const char *chunk_id)
{
	char ids[64][65];
	size_t count = 0;
	assert_int_equal(efs_meta_garbage_list(f->m, f->now + 1, 64, ids, &count), 0);
	for (size_t i = 0; i < count; i++)
		if (strcmp(ids[i], chunk_id) == 0)
			return true;
	return false;
}

static struct efs_object_info *object(const char *bucket_name, const char *key, const char *file_id)
{
	struct efs_object_info *o = calloc(1, sizeof(*o));
	assert_non_null(o);
	efs_strlcpy(o->bucket, bucket_name, sizeof(o->bucket));
	efs_strlcpy(o->key, key, sizeof(o->key));
	efs_strlcpy(o->file_id, file_id, sizeof(o->file_id));
	o->size = 14;
	efs_strlcpy(o->etag, "0123456789abcdef0123456789abcdef", sizeof(o->etag));
	efs_strlcpy(o->content_type, "text/plain", sizeof(o->content_type));
	efs_strlcpy(o->user_meta, "{\"a\":\"b\"}", sizeof(o->user_meta));
	efs_strlcpy(o->checksum, "CRC32:4waSgw==", sizeof(o->checksum));
	o->last_modified_ms = 2000;
	return o;
}

/* ---- buckets -------------------------------------------------------------- */

static void test_bucket_names_are_unique_across_owners(void **state)
{
	struct fixture *f = *state;
	struct efs_bucket_info a = bucket("photos", "alice"), b = bucket("photos", "bob"), got;
	struct efs_bucket_info c = bucket("alpha", "alice");
	struct efs_bucket_info *list = NULL;
	size_t n = 0;

	assert_int_equal(efs_meta_bucket_get(f->m, "photos", &got), -ENOENT);
	assert_int_equal(efs_meta_bucket_create(f->m, &a), 0);
	assert_int_equal(efs_meta_bucket_create(f->m, &a), -EEXIST);
	assert_int_equal(efs_meta_bucket_create(f->m, &b), -EEXIST);
	assert_int_equal(efs_meta_bucket_get(f->m, "photos", &got), 0);
	assert_string_equal(got.owner, "alice");
	assert_string_equal(got.region, "us-east-1");
	assert_int_equal(got.created_at_ms, 1000);
	assert_int_equal(efs_meta_bucket_create(f->m, &c), 0);
	assert_int_equal(efs_meta_bucket_list(f->m, "alice", &list, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].name, "alpha");
	assert_string_equal(list[1].name, "photos");
	free(list);
	list = NULL;
	assert_int_equal(efs_meta_bucket_list(f->m, "bob", &list, &n), 0);
	assert_int_equal(n, 0);
	free(list);
	/* only its owner deletes it */
	assert_int_equal(efs_meta_bucket_delete(f->m, "photos", "bob"), -ENOENT);
	assert_int_equal(efs_meta_bucket_delete(f->m, "photos", "alice"), 0);
	assert_int_equal(efs_meta_bucket_delete(f->m, "photos", "alice"), -ENOENT);
	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
}

static void test_a_bucket_with_an_object_is_not_deleted(void **state)
{
	struct fixture *f = *state;
	struct efs_bucket_info b = bucket("full", "alice");
	char file_id[EFS_ID_MAX + 1], chunk_id[65];
	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	make_file(f, "alice", 1, file_id, chunk_id);
	struct efs_object_info *o = object("full", "k", file_id);
	assert_int_equal(efs_meta_object_put(f->m, o, f->now), 0);
	assert_int_equal(efs_meta_bucket_delete(f->m, "full", "alice"), -ENOTEMPTY);
	assert_int_equal(efs_meta_object_delete(f->m, "full", "k", f->now), 0);
	assert_int_equal(efs_meta_bucket_delete(f->m, "full", "alice"), 0);
	/* an object into a bucket that is gone: refused */
	assert_int_equal(efs_meta_object_put(f->m, o, f->now), -ENOENT);
	free(o);
}

/* ---- objects ------------------------------------------------------------- */

static void test_overwrite_releases_the_old_file_in_the_same_step(void **state)
{
	struct fixture *f = *state;
	struct efs_bucket_info b = bucket("docs", "alice");
	char first[EFS_ID_MAX + 1], second[EFS_ID_MAX + 1], chunk1[65], chunk2[65];
	struct efs_object_info *got = calloc(1, sizeof(*got));
	struct efs_file_info fi;

	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	make_file(f, "alice", 1, first, chunk1);
	make_file(f, "alice", 2, second, chunk2);
	struct efs_object_info *o1 = object("docs", "a/b.txt", first);
	struct efs_object_info *o2 = object("docs", "a/b.txt", second);
	efs_strlcpy(o2->content_type, "application/json", sizeof(o2->content_type));
	o2->checksum[0] = '\0';

	assert_int_equal(efs_meta_object_get(f->m, "docs", "a/b.txt", got), -ENOENT);
	assert_int_equal(efs_meta_object_put(f->m, o1, f->now), 0);
	assert_int_equal(efs_meta_object_get(f->m, "docs", "a/b.txt", got), 0);
	assert_string_equal(got->file_id, first);
	assert_string_equal(got->etag, o1->etag);
	assert_string_equal(got->content_type, "text/plain");
	assert_string_equal(got->user_meta, "{\"a\":\"b\"}");
	assert_string_equal(got->checksum, "CRC32:4waSgw==");
	assert_int_equal(got->last_modified_ms, 2000);
	/* the file knows it is an object */
	assert_int_equal(efs_meta_file_get(f->m, first, &fi), 0);
	assert_string_equal(fi.s3_bucket, "docs");
	assert_string_equal(fi.s3_key, "a/b.txt");

	assert_int_equal(efs_meta_object_put(f->m, o2, f->now), 0);
	assert_int_equal(efs_meta_object_get(f->m, "docs", "a/b.txt", got), 0);
	assert_string_equal(got->file_id, second);
	assert_string_equal(got->content_type, "application/json");
	assert_string_equal(got->checksum, ""); /* the new object's: none */
	assert_int_equal(efs_meta_file_get(f->m, first, &fi), -ENOENT);
	assert_true(is_garbage(f, chunk1));
	assert_false(is_garbage(f, chunk2));

	assert_int_equal(efs_meta_object_delete(f->m, "docs", "a/b.txt", f->now), 0);
	assert_int_equal(efs_meta_object_get(f->m, "docs", "a/b.txt", got), -ENOENT);
	assert_int_equal(efs_meta_file_get(f->m, second, &fi), -ENOENT);
	assert_true(is_garbage(f, chunk2));
	assert_int_equal(efs_meta_object_delete(f->m, "docs", "a/b.txt", f->now), -ENOENT);
	free(o1);
	free(o2);
	free(got);
}

/* efs_meta_file_create_object: a small PutObject's file, chunk and object
 * row in one transaction; a refused object (no bucket, a condition that
 * does not hold) leaves no file and no chunk reference behind; an
 * overwrite releases the old file. Backends without it say so. */
static void test_file_and_object_in_one_step(void **state)
{
	struct fixture *f = *state;
	struct efs_bucket_info b = bucket("small", "alice");
	struct efs_object_info *got = calloc(1, sizeof(*got));
	struct efs_object_cond absent = {.if_absent = true};
	struct efs_object_cond other = {.if_etag = "fedcba9876543210fedcba9876543210"};
	char old_file[EFS_ID_MAX + 1], old_chunk[65];
	const char *data = "one small object";
	struct efs_file_info fi, read_back;
	struct efs_chunk_info c;

	if (!efs_meta_has_file_create_object(f->m)) {
		struct efs_object_link link = {got, NULL, 0};
		memset(&fi, 0, sizeof(fi));
		assert_int_equal(efs_meta_file_create_object(f->m, &fi, NULL, NULL, 0, false, &link,
							     f->now),
				 -ENOTSUP);
		free(got);
		skip();
	}
	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	make_file(f, "alice", 7, old_file, old_chunk);
	struct efs_object_info *old = object("small", "k", old_file);
	assert_int_equal(efs_meta_object_put(f->m, old, f->now), 0);

	memset(&fi, 0, sizeof(fi));
	memset(&c, 0, sizeof(c));
	efs_sha256_hex(data, strlen(data), c.chunk_id);
	c.size = c.stored_size = strlen(data);
	assert_int_equal(efs_random_hex(fi.file_id, EFS_FILE_ID_LEN / 2), 0);
	efs_strlcpy(fi.owner, "alice", sizeof(fi.owner));
	efs_strlcpy(fi.name, "k", sizeof(fi.name));
	fi.size = c.size;
	efs_strlcpy(fi.sha256, c.chunk_id, sizeof(fi.sha256));
	fi.chunk_size = 1024;
	fi.replication = 1;
	fi.chunk_count = 1;
	fi.stored_bytes = c.size;
	fi.created_at_ms = f->now;
	struct efs_object_info *o = object("small", "k", fi.file_id);
	struct efs_object_link link = {o, &absent, 0};

	/* refused by its condition: nothing recorded */
	assert_int_equal(efs_meta_file_create_object(f->m, &fi, &c, worker_ids, 1, false, &link,
						     f->now),
			 -ECANCELED);
	assert_int_equal(link.refused, -EEXIST);
	link.cond = &other;
	assert_int_equal(efs_meta_file_create_object(f->m, &fi, &c, worker_ids, 1, false, &link,
						     f->now),
			 -ECANCELED);
	assert_int_equal(link.refused, -ESTALE);
	assert_int_equal(efs_meta_file_get(f->m, fi.file_id, &read_back), -ENOENT);
	assert_int_equal(efs_meta_object_get(f->m, "small", "k", got), 0);
	assert_string_equal(got->file_id, old_file);
	/* no bucket */
	struct efs_object_info *nowhere = object("nobucket", "k", fi.file_id);
	struct efs_object_link lost = {nowhere, NULL, 0};
	assert_int_equal(efs_meta_file_create_object(f->m, &fi, &c, worker_ids, 1, false, &lost,
						     f->now),
			 -ECANCELED);
	assert_int_equal(lost.refused, -ENOENT);
	assert_int_equal(efs_meta_file_get(f->m, fi.file_id, &read_back), -ENOENT);

	/* unconditional: the file, its chunk and the row; the old file goes */
	link.cond = NULL;
	assert_int_equal(efs_meta_file_create_object(f->m, &fi, &c, worker_ids, 1, false, &link,
						     f->now),
			 0);
	assert_int_equal(link.refused, 0);
	assert_int_equal(efs_meta_object_get(f->m, "small", "k", got), 0);
	assert_string_equal(got->file_id, fi.file_id);
	assert_int_equal(efs_meta_file_get(f->m, fi.file_id, &read_back), 0);
	assert_string_equal(read_back.s3_bucket, "small");
	assert_int_equal(read_back.chunk_count, 1);
	assert_false(is_garbage(f, c.chunk_id));
	assert_int_equal(efs_meta_file_get(f->m, old_file, &read_back), -ENOENT);
	assert_true(is_garbage(f, old_chunk));
	free(old);
	free(o);
	free(nowhere);
	free(got);
}

/* efs_meta_object_read (GetObject's one read): no bucket, no key, the
 * object with its file, the new file after an overwrite. SQL answers it
 * with one join; DynamoDB through meta.c's three reads. */
static void test_object_read_joins_bucket_object_and_file(void **state)
{
	struct fixture *f = *state;
	struct efs_bucket_info b = bucket("readme", "carol");
	char first[EFS_ID_MAX + 1], second[EFS_ID_MAX + 1], chunk1[65], chunk2[65];
	struct efs_object_read *x = calloc(1, sizeof(*x));
	assert_non_null(x);

	efs_strlcpy(x->bucket_owner, "untouched", sizeof(x->bucket_owner));
	assert_int_equal(efs_meta_object_read(f->m, "readme", "k", x), -ENOENT);
	assert_string_equal(x->bucket_owner, "untouched");
	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	assert_int_equal(efs_meta_object_read(f->m, "readme", "k", x), -ENOKEY);
	assert_string_equal(x->bucket_owner, "carol");

	make_file(f, "carol", 11, first, chunk1);
	make_file(f, "carol", 12, second, chunk2);
	struct efs_object_info *o1 = object("readme", "dir/k", first);
	struct efs_object_info *o2 = object("readme", "dir/k", second);
	efs_strlcpy(o2->content_type, "image/png", sizeof(o2->content_type));
	assert_int_equal(efs_meta_object_put(f->m, o1, f->now), 0);
	/* another key of the bucket, and the key in another bucket: no match */
	assert_int_equal(efs_meta_object_read(f->m, "readme", "dir", x), -ENOKEY);
	assert_int_equal(efs_meta_object_read(f->m, "readme2", "dir/k", x), -ENOENT);

	memset(x, 0, sizeof(*x));
	assert_int_equal(efs_meta_object_read(f->m, "readme", "dir/k", x), 0);
	assert_string_equal(x->bucket_owner, "carol");
	assert_string_equal(x->object.bucket, "readme");
	assert_string_equal(x->object.key, "dir/k");
	assert_string_equal(x->object.file_id, first);
	assert_int_equal(x->object.size, 14);
	assert_string_equal(x->object.etag, o1->etag);
	assert_string_equal(x->object.content_type, "text/plain");
	assert_string_equal(x->object.user_meta, "{\"a\":\"b\"}");
	assert_string_equal(x->object.checksum, "CRC32:4waSgw==");
	assert_int_equal(x->object.last_modified_ms, 2000);
	assert_string_equal(x->file.file_id, first);
	assert_string_equal(x->file.owner, "carol");
	assert_int_equal(x->file.size, strlen("object bytes 11"));
	assert_int_equal(x->file.chunk_size, 1024);
	assert_int_equal(x->file.replication, 1);
	assert_string_equal(x->file.sha256, chunk1);
	assert_string_equal(x->file.s3_bucket, "readme");
	assert_string_equal(x->file.s3_key, "dir/k");

	assert_int_equal(efs_meta_object_put(f->m, o2, f->now), 0);
	assert_int_equal(efs_meta_object_read(f->m, "readme", "dir/k", x), 0);
	assert_string_equal(x->object.file_id, second);
	assert_string_equal(x->object.content_type, "image/png");
	assert_string_equal(x->file.file_id, second);
	assert_string_equal(x->file.sha256, chunk2);

	assert_int_equal(efs_meta_object_delete(f->m, "readme", "dir/k", f->now), 0);
	assert_int_equal(efs_meta_object_read(f->m, "readme", "dir/k", x), -ENOKEY);
	free(o1);
	free(o2);
	free(x);
}

static void test_conditional_put_checks_the_current_row(void **state)
{
	struct fixture *f = *state;
	struct efs_bucket_info b = bucket("cond", "alice");
	char first[EFS_ID_MAX + 1], second[EFS_ID_MAX + 1], third[EFS_ID_MAX + 1];
	char chunk1[65], chunk2[65], chunk3[65];
	struct efs_object_info *got = calloc(1, sizeof(*got));
	const struct efs_object_cond absent = {.if_absent = true};
	const struct efs_object_cond any = {.if_etag = "*"};
	const struct efs_object_cond same = {.if_etag = "0123456789ABCDEF0123456789ABCDEF"};
	const struct efs_object_cond other = {.if_etag = "ffffffffffffffffffffffffffffffff"};

	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	make_file(f, "alice", 1, first, chunk1);
	make_file(f, "alice", 2, second, chunk2);
	make_file(f, "alice", 3, third, chunk3);
	struct efs_object_info *o1 = object("cond", "k", first);
	struct efs_object_info *o2 = object("cond", "k", second);
	struct efs_object_info *o3 = object("cond", "k", third);
	efs_strlcpy(o3->etag, "fedcba9876543210fedcba9876543210", sizeof(o3->etag));

	/* no object yet: If-Match fails, If-None-Match: * succeeds once */
	assert_int_equal(efs_meta_object_put_if(f->m, o1, &any, f->now), -ENODATA);
	assert_int_equal(efs_meta_object_put_if(f->m, o1, &same, f->now), -ENODATA);
	assert_int_equal(efs_meta_object_put_if(f->m, o1, &absent, f->now), 0);
	assert_int_equal(efs_meta_object_put_if(f->m, o2, &absent, f->now), -EEXIST);
	assert_int_equal(efs_meta_object_put_if(f->m, o2, &other, f->now), -ESTALE);
	/* refused: nothing changed, the old file kept */
	assert_int_equal(efs_meta_object_get(f->m, "cond", "k", got), 0);
	assert_string_equal(got->file_id, first);
	assert_false(is_garbage(f, chunk1));
	/* the ETag matches (case-insensitively): replaced, old file released */
	assert_int_equal(efs_meta_object_put_if(f->m, o2, &same, f->now), 0);
	assert_true(is_garbage(f, chunk1));
	assert_int_equal(efs_meta_object_put_if(f->m, o3, &any, f->now), 0);
	assert_int_equal(efs_meta_object_get(f->m, "cond", "k", got), 0);
	assert_string_equal(got->file_id, third);
	assert_int_equal(efs_meta_object_put_if(f->m, o3, &same, f->now), -ESTALE);
	free(o1);
	free(o2);
	free(o3);
	free(got);
}

static int refuse_source(void *ctx, const struct efs_object_info *src)
{
	int *calls = ctx;
	(*calls)++;
	return strcmp(src->etag, "0123456789abcdef0123456789abcdef") == 0 ? -ECANCELED : 0;
}

/* CopyObject of a file listing chunk A twice adds two references (one
 * grouped count per chunk, sql_s3.c): with a third file holding A once,
 * A outlives the source and the copy and is garbage only with the third.
 * An increment of one per distinct chunk would let the two deletes (two
 * references each) free A under the third file. */
static void test_copy_counts_a_repeated_chunk_twice(void **state)
{
	struct fixture *f = *state;
	struct efs_bucket_info b = bucket("rptsrc", "alice");
	struct efs_session_info s;
	struct efs_file_info fi;
	struct efs_chunk_info c;
	char third[EFS_ID_MAX + 1], chunk_a[65];
	char data[32];

	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	make_file(f, "alice", 77, third, chunk_a);
	memset(&s, 0, sizeof(s));
	memset(&fi, 0, sizeof(fi));
	memset(&c, 0, sizeof(c));
	snprintf(data, sizeof(data), "object bytes %d", 77); /* make_file's bytes */
	efs_strlcpy(c.chunk_id, chunk_a, sizeof(c.chunk_id));
	c.size = c.stored_size = strlen(data);
	efs_strlcpy(s.session_id, "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e", sizeof(s.session_id));
	efs_strlcpy(s.owner, "alice", sizeof(s.owner));
	efs_strlcpy(s.name, "rpt", sizeof(s.name));
	s.declared_size = -1;
	s.chunk_size = c.size;
	s.created_at_ms = f->now;
	s.expires_at_ms = f->now + 3600000;
	assert_int_equal(efs_meta_session_create(f->m, &s), 0);
	for (uint64_t i = 0; i < 2; i++)
		assert_int_equal(efs_meta_session_put_chunk(f->m, s.session_id, i, &c, worker_ids, 1,
							    true, f->now, f->now + 60000, 0),
				 0);
	assert_int_equal(efs_meta_session_get(f->m, s.session_id, &s), 0);
	efs_strlcpy(fi.file_id, "5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f", sizeof(fi.file_id));
	efs_strlcpy(fi.owner, "alice", sizeof(fi.owner));
	efs_strlcpy(fi.name, "rpt", sizeof(fi.name));
	fi.size = 2 * c.size;
	efs_strlcpy(fi.sha256, chunk_a, sizeof(fi.sha256));
	fi.chunk_size = c.size;
	fi.chunk_count = 2;
	fi.replication = 1;
	fi.stored_bytes = 2 * c.size;
	fi.created_at_ms = f->now;
	assert_int_equal(efs_meta_session_complete(f->m, s.session_id, s.version, &fi, 0), 0);
	struct efs_object_info *o = object("rptsrc", "k", fi.file_id);
	assert_int_equal(efs_meta_object_put(f->m, o, f->now), 0);

	struct efs_object_info *dst = calloc(1, sizeof(*dst));
	assert_non_null(dst);
	efs_strlcpy(dst->bucket, "rptsrc", sizeof(dst->bucket));
	efs_strlcpy(dst->key, "k2", sizeof(dst->key));
	efs_strlcpy(dst->file_id, "5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d", sizeof(dst->file_id));
	dst->last_modified_ms = 5000;
	struct efs_object_copy copy = {.owner = "alice",
				       .src_bucket = "rptsrc",
				       .src_key = "k",
				       .dst = dst,
				       .file_name = "k2",
				       .copy_headers = true};
	assert_int_equal(efs_meta_object_copy(f->m, &copy, f->now), 0);

	assert_int_equal(efs_meta_object_delete(f->m, "rptsrc", "k", f->now), 0);
	assert_int_equal(efs_meta_object_delete(f->m, "rptsrc", "k2", f->now), 0);
	assert_false(is_garbage(f, chunk_a));
	assert_int_equal(efs_meta_file_delete(f->m, third, "alice", f->now), 0);
	assert_true(is_garbage(f, chunk_a));
	free(o);
	free(dst);
}

/* CopyObject: a new file listing the same chunks, counted once more. */
static void test_copy_shares_the_chunks_and_counts_them(void **state)
{
	struct fixture *f = *state;
	struct efs_bucket_info src_b = bucket("cpsrc", "alice"), dst_b = bucket("cpdst", "alice");
	struct efs_bucket_info bobs = bucket("cpbob", "bob");
	char first[EFS_ID_MAX + 1], chunk1[65];
	struct efs_object_info *got = calloc(1, sizeof(*got));
	struct efs_object_info *dst = calloc(1, sizeof(*dst));
	struct efs_file_info fi, copied;
	struct efs_file_chunk *chunks = NULL;
	size_t count = 0;
	int calls = 0;

	assert_int_equal(efs_meta_bucket_create(f->m, &src_b), 0);
	assert_int_equal(efs_meta_bucket_create(f->m, &dst_b), 0);
	assert_int_equal(efs_meta_bucket_create(f->m, &bobs), 0);
	make_file(f, "alice", 1, first, chunk1);
	struct efs_object_info *o1 = object("cpsrc", "k", first);
	assert_int_equal(efs_meta_object_put(f->m, o1, f->now), 0);

	efs_strlcpy(dst->bucket, "cpdst", sizeof(dst->bucket));
	efs_strlcpy(dst->key, "dir/c", sizeof(dst->key));
	efs_strlcpy(dst->file_id, "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0", sizeof(dst->file_id));
	dst->last_modified_ms = 5000;
	struct efs_object_copy copy = {.owner = "alice",
				       .src_bucket = "cpsrc",
				       .src_key = "k",
				       .dst = dst,
				       .file_name = "c",
				       .copy_headers = true};
	assert_int_equal(efs_meta_object_copy(f->m, &copy, f->now), 0);
	assert_int_equal(efs_meta_object_get(f->m, "cpdst", "dir/c", got), 0);
	assert_string_equal(got->file_id, dst->file_id);
	assert_string_equal(got->etag, o1->etag);
	assert_string_equal(got->content_type, "text/plain");
	assert_string_equal(got->user_meta, "{\"a\":\"b\"}");
	assert_string_equal(got->checksum, o1->checksum); /* the same bytes */
	assert_int_equal(got->size, o1->size);
	assert_int_equal(got->last_modified_ms, 5000);
	assert_int_equal(efs_meta_file_get(f->m, first, &fi), 0);
	assert_int_equal(efs_meta_file_get(f->m, dst->file_id, &copied), 0);
	assert_string_equal(copied.owner, "alice");
	assert_string_equal(copied.name, "c");
	assert_string_equal(copied.sha256, fi.sha256);
	assert_int_equal(copied.size, fi.size);
	assert_int_equal(copied.chunk_count, fi.chunk_count);
	assert_string_equal(copied.s3_bucket, "cpdst");
	assert_int_equal(efs_meta_file_chunks(f->m, dst->file_id, 0, 16, &chunks, &count), 0);
	assert_int_equal(count, 1);
	assert_string_equal(chunks[0].chunk.chunk_id, chunk1);
	free(chunks);

	/* refused: nothing stored, nothing counted */
	efs_strlcpy(dst->key, "x", sizeof(dst->key));
	efs_strlcpy(dst->file_id, "d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1", sizeof(dst->file_id));
	copy.src_key = "absent";
	assert_int_equal(efs_meta_object_copy(f->m, &copy, f->now), -ENOKEY);
	copy.src_key = "k";
	copy.src_bucket = "cpbob";
	assert_int_equal(efs_meta_object_copy(f->m, &copy, f->now), -EACCES);
	copy.src_bucket = "cpsrc";
	efs_strlcpy(dst->bucket, "cpbob", sizeof(dst->bucket));
	assert_int_equal(efs_meta_object_copy(f->m, &copy, f->now), -ENOENT);
	efs_strlcpy(dst->bucket, "cpdst", sizeof(dst->bucket));
	copy.check_source = refuse_source;
	copy.check_ctx = &calls;
	assert_int_equal(efs_meta_object_copy(f->m, &copy, f->now), -ECANCELED);
	assert_true(calls >= 1);
	copy.check_source = NULL;
	const struct efs_object_cond absent = {.if_absent = true};
	efs_strlcpy(dst->key, "dir/c", sizeof(dst->key));
	copy.cond = &absent;
	assert_int_equal(efs_meta_object_copy(f->m, &copy, f->now), -EEXIST);
	copy.cond = NULL;
	assert_int_equal(efs_meta_file_get(f->m, "d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1", &fi), -ENOENT);
	assert_int_equal(efs_meta_object_get(f->m, "cpdst", "x", got), -ENOENT);

	/* the copy onto itself (new headers): a new file, the old released,
	 * the chunk still referenced by it and the source */
	copy.src_bucket = "cpdst";
	copy.src_key = "dir/c";
	copy.copy_headers = false;
	efs_strlcpy(dst->content_type, "image/png", sizeof(dst->content_type));
	efs_strlcpy(dst->user_meta, "{}", sizeof(dst->user_meta));
	assert_int_equal(efs_meta_object_copy(f->m, &copy, f->now), 0);
	assert_int_equal(efs_meta_object_get(f->m, "cpdst", "dir/c", got), 0);
	assert_string_equal(got->file_id, "d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1");
	assert_string_equal(got->content_type, "image/png");
	assert_int_equal(efs_meta_file_get(f->m, "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0", &fi), -ENOENT);

	/* the source goes: the copy holds the chunk; the copy goes: garbage */
	assert_int_equal(efs_meta_object_delete(f->m, "cpsrc", "k", f->now), 0);
	assert_false(is_garbage(f, chunk1));
	assert_int_equal(efs_meta_object_delete(f->m, "cpdst", "dir/c", f->now), 0);
	assert_true(is_garbage(f, chunk1));
	free(o1);
	free(dst);
	free(got);
}

/* A file (of the REST API) as the source: its chunks counted once more. */
static void test_copy_from_a_file(void **state)
{
	struct fixture *f = *state;
	struct efs_bucket_info b = bucket("fromfile", "alice");
	char mine[EFS_ID_MAX + 1], theirs[EFS_ID_MAX + 1], chunk1[65], chunk2[65];
	struct efs_object_info *dst = calloc(1, sizeof(*dst));
	struct efs_object_info *got = calloc(1, sizeof(*got));

	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	make_file(f, "alice", 1, mine, chunk1);
	make_file(f, "bob", 2, theirs, chunk2);
	efs_strlcpy(dst->bucket, "fromfile", sizeof(dst->bucket));
	efs_strlcpy(dst->key, "k", sizeof(dst->key));
	efs_strlcpy(dst->file_id, "e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2", sizeof(dst->file_id));
	struct efs_object_copy copy = {.owner = "alice",
				       .src_file_id = theirs,
				       .src_etag = "00112233445566778899aabbccddeeff",
				       .dst = dst,
				       .file_name = "k",
				       .copy_headers = true};
	assert_int_equal(efs_meta_object_copy(f->m, &copy, f->now), -ENOKEY);
	copy.src_file_id = mine;
	assert_int_equal(efs_meta_object_copy(f->m, &copy, f->now), 0);
	assert_int_equal(efs_meta_object_get(f->m, "fromfile", "k", got), 0);
	assert_string_equal(got->etag, "00112233445566778899aabbccddeeff");
	assert_string_equal(got->content_type, "binary/octet-stream");
	assert_string_equal(got->user_meta, "{}");
	assert_int_equal(got->size, strlen("object bytes 1"));
	/* the REST file goes: the object keeps the chunk */
	assert_int_equal(efs_meta_file_delete(f->m, mine, "alice", f->now), 0);
	assert_false(is_garbage(f, chunk1));
	assert_int_equal(efs_meta_object_delete(f->m, "fromfile", "k", f->now), 0);
	assert_true(is_garbage(f, chunk1));
	free(dst);
	free(got);
}

struct delete_meanwhile {
	struct efs_meta *other; /* a second store on the same database */
	const char *file_id;
	int64_t now;
	int deleted;
};

/* check_source hook: the REST API's delete of the source's file, through
 * another connection, committed while the copy's transaction runs. */
static int delete_source_meanwhile(void *ctx, const struct efs_object_info *src)
{
	struct delete_meanwhile *d = ctx;
	if (!d->deleted++)
		assert_int_equal(efs_meta_file_delete(d->other, d->file_id, "alice", d->now), 0);
	return 0;
}

/* The source's file deleted (REST API: it locks the file's row, not the
 * bucket's) after the copy read the object row: the copy must see it gone
 * (-ENOKEY), never record an object whose file lists no chunks. PostgreSQL
 * only: SQLite runs one writer at a time, so there the delete cannot run
 * inside the copy. */
static void test_copy_of_a_source_deleted_meanwhile_is_refused(void **state)
{
	struct fixture *f = *state;
	struct efs_bucket_info b = bucket("gone", "alice");
	char first[EFS_ID_MAX + 1], chunk1[65], url[512], dir[128], err[256] = "";
	struct efs_object_info *dst = calloc(1, sizeof(*dst));
	struct efs_object_info *got = calloc(1, sizeof(*got));
	struct efs_meta *other = NULL;

	if (!f->db[0]) {
		free(dst);
		free(got);
		skip();
	}
	pg_url_with_db(f->db, url, sizeof(url));
	snprintf(dir, sizeof(dir), "%s/other", f->dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(efs_meta_open(url, dir, &other, err, sizeof(err)), 0);
	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	make_file(f, "alice", 1, first, chunk1);
	struct efs_object_info *o1 = object("gone", "src", first);
	assert_int_equal(efs_meta_object_put(f->m, o1, f->now), 0);
	efs_strlcpy(dst->bucket, "gone", sizeof(dst->bucket));
	efs_strlcpy(dst->key, "copy", sizeof(dst->key));
	efs_strlcpy(dst->file_id, "f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3", sizeof(dst->file_id));
	struct delete_meanwhile d = {other, first, f->now, 0};
	struct efs_object_copy copy = {.owner = "alice",
				       .src_bucket = "gone",
				       .src_key = "src",
				       .dst = dst,
				       .file_name = "copy",
				       .copy_headers = true,
				       .check_source = delete_source_meanwhile,
				       .check_ctx = &d};
	assert_int_equal(efs_meta_object_copy(f->m, &copy, f->now), -ENOKEY);
	assert_int_equal(efs_meta_object_get(f->m, "gone", "copy", got), -ENOENT);
	assert_true(is_garbage(f, chunk1));
	efs_meta_close(other);
	free(o1);
	free(dst);
	free(got);
}

static void make_part_session(struct fixture *f, int seed, unsigned count, char *session_id,
			      char (*chunk_ids)[65]);

/* How many of @ids the collector would take. */
static size_t garbage_among(struct fixture *f, char (*ids)[65], size_t n)
{
	static char listed[1024][65];
	size_t count = 0, found = 0;
	assert_int_equal(efs_meta_garbage_list(f->m, efs_now_ms() + 1000, 1024, listed, &count), 0);
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < count; k++)
			if (strcmp(ids[i], listed[k]) == 0) {
				found++;
				break;
			}
	return found;
}

#define BIG_CHUNKS 150 /* two DynamoDB list items, three copy transactions */

/* An object of BIG_CHUNKS distinct chunks at (@bucket_name, @key); the
 * chunk ids into @ids. */
static void make_big_object(struct fixture *f, const char *bucket_name, const char *key, int seed,
			    char (*ids)[65])
{
	char sid[EFS_ID_MAX + 1];
	struct efs_session_info sess;
	struct efs_file_info fi;
	make_part_session(f, seed, BIG_CHUNKS, sid, ids);
	assert_int_equal(efs_meta_session_get(f->m, sid, &sess), 0);
	memset(&fi, 0, sizeof(fi));
	assert_int_equal(efs_random_hex(fi.file_id, EFS_FILE_ID_LEN / 2), 0);
	efs_strlcpy(fi.owner, "alice", sizeof(fi.owner));
	efs_strlcpy(fi.name, key, sizeof(fi.name));
	fi.size = BIG_CHUNKS * 16;
	efs_strlcpy(fi.sha256, ids[0], sizeof(fi.sha256));
	fi.chunk_size = 1024;
	fi.chunk_count = BIG_CHUNKS;
	fi.replication = 1;
	fi.created_at_ms = f->now;
	assert_int_equal(efs_meta_session_complete(f->m, sid, sess.version, &fi, 0), 0);
	struct efs_object_info *o = object(bucket_name, key, fi.file_id);
	assert_int_equal(efs_meta_object_put(f->m, o, f->now), 0);
	free(o);
}

struct copy_hook_state {
	struct efs_meta *m;
	const char *bucket, *key;
	int64_t now;
	unsigned at_step;
	int fired;
} copy_hook_state;

/* dyn_test_copy_hook: the source object deleted (its file released) after
 * the copy's list item number at_step. */
static int delete_source_during_copy(struct dyn *d, const char *dst_file_id, unsigned step)
{
	struct copy_hook_state *h = &copy_hook_state;
	(void)d;
	(void)dst_file_id;
	if (step == h->at_step && !h->fired++)
		assert_int_equal(efs_meta_object_delete(h->m, h->bucket, h->key, h->now), 0);
	return 0;
}

/* dyn_test_copy_hook: the copy's master dies after list item at_step. */
static int die_during_copy(struct dyn *d, const char *dst_file_id, unsigned step)
{
	(void)d;
	(void)dst_file_id;
	if (step != copy_hook_state.at_step)
		return 0;
	copy_hook_state.fired++;
	return -1;
}

/* dyn_test_copy_hook: the leftovers sweep, taking every item as old, runs
 * after the copy's list item at_step (a copy slower than the sweep's
 * grace). */
static int sweep_during_copy(struct dyn *d, const char *dst_file_id, unsigned step)
{
	(void)dst_file_id;
	if (step == copy_hook_state.at_step && !copy_hook_state.fired++)
		dyn_sweep_leftovers(d, efs_now_ms() + 3600000, efs_now_ms());
	return 0;
}

/* DynamoDB: a copy's chunk lists hold references before its commit. A
 * master that dies there leaves them without META: the leftovers sweep
 * releases them (each reference once). A sweep that takes them while the
 * copy still runs makes its commit fail (-EAGAIN), never a visible file
 * whose lists are gone. */
static void test_dynamodb_copy_leftovers(void **state)
{
	struct fixture *f = *state;
	struct efs_bucket_info b = bucket("copyleft", "alice");
	static char ids[BIG_CHUNKS][65];
	struct efs_object_info *dst = calloc(1, sizeof(*dst));
	struct efs_object_info *got = calloc(1, sizeof(*got));
	struct efs_file_info fi;

	if (!ddb_on) {
		free(dst);
		free(got);
		skip();
	}
	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	efs_strlcpy(dst->bucket, "copyleft", sizeof(dst->bucket));
	efs_strlcpy(dst->key, "copy", sizeof(dst->key));
	struct efs_object_copy copy = {.owner = "alice",
				       .src_bucket = "copyleft",
				       .src_key = "src",
				       .dst = dst,
				       .file_name = "copy",
				       .copy_headers = true};

	/* died after two of its three list items (99 of the 150 ids) */
	make_big_object(f, "copyleft", "src", 50, ids);
	efs_strlcpy(dst->file_id, "c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6", sizeof(dst->file_id));
	copy_hook_state = (struct copy_hook_state){.at_step = 2};
	dyn_test_copy_hook = die_during_copy;
	int r = efs_meta_object_copy(f->m, &copy, f->now);
	dyn_test_copy_hook = NULL;
	assert_int_equal(copy_hook_state.fired, 1);
	assert_true(r < 0);
	assert_int_equal(efs_meta_object_get(f->m, "copyleft", "copy", got), -ENOENT);
	assert_int_equal(efs_meta_file_get(f->m, dst->file_id, &fi), -ENOENT);
	assert_int_equal(efs_meta_object_delete(f->m, "copyleft", "src", f->now), 0);
	assert_int_equal(garbage_among(f, ids, BIG_CHUNKS), BIG_CHUNKS - 99);
	dyn_sweep_leftovers(f->m->impl, efs_now_ms() + 3600000, efs_now_ms());
	assert_int_equal(garbage_among(f, ids, BIG_CHUNKS), BIG_CHUNKS);

	/* the sweep runs before the commit: the commit is refused */
	make_big_object(f, "copyleft", "src", 51, ids);
	efs_strlcpy(dst->file_id, "d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7", sizeof(dst->file_id));
	copy_hook_state = (struct copy_hook_state){.at_step = 3};
	dyn_test_copy_hook = sweep_during_copy;
	r = efs_meta_object_copy(f->m, &copy, f->now);
	dyn_test_copy_hook = NULL;
	assert_int_equal(copy_hook_state.fired, 1);
	assert_int_equal(r, -EAGAIN);
	assert_int_equal(efs_meta_object_get(f->m, "copyleft", "copy", got), -ENOENT);
	assert_int_equal(efs_meta_file_get(f->m, dst->file_id, &fi), -ENOENT);
	assert_int_equal(garbage_among(f, ids, BIG_CHUNKS), 0);
	assert_int_equal(efs_meta_object_delete(f->m, "copyleft", "src", f->now), 0);
	assert_int_equal(garbage_among(f, ids, BIG_CHUNKS), BIG_CHUNKS);
	free(dst);
	free(got);
}

/* A copy of a file longer than one DynamoDB transaction: every chunk
 * listed and counted once more; on DynamoDB, the source deleted between two
 * of the copy's transactions refuses the copy (-ENOKEY) and leaves every
 * chunk unreferenced, not counted by a half-made copy. */
static void test_copy_of_a_large_object(void **state)
{
	struct fixture *f = *state;
	struct efs_bucket_info b = bucket("bigcopy", "alice");
	static char ids[BIG_CHUNKS][65];
	struct efs_object_info *dst = calloc(1, sizeof(*dst));
	struct efs_object_info *got = calloc(1, sizeof(*got));
	struct efs_file_chunk *chunks = NULL;
	struct efs_file_info fi;
	size_t count = 0;

	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	make_big_object(f, "bigcopy", "src", 40, ids);
	efs_strlcpy(dst->bucket, "bigcopy", sizeof(dst->bucket));
	efs_strlcpy(dst->key, "copy", sizeof(dst->key));
	efs_strlcpy(dst->file_id, "a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4", sizeof(dst->file_id));
	struct efs_object_copy copy = {.owner = "alice",
				       .src_bucket = "bigcopy",
				       .src_key = "src",
				       .dst = dst,
				       .file_name = "copy",
				       .copy_headers = true};
	assert_int_equal(efs_meta_object_copy(f->m, &copy, f->now), 0);
	assert_int_equal(
	    efs_meta_file_chunks(f->m, dst->file_id, 0, 2 * BIG_CHUNKS, &chunks, &count), 0);
	assert_int_equal(count, BIG_CHUNKS);
	for (size_t i = 0; i < count; i++) {
		assert_int_equal(chunks[i].index, i);
		assert_string_equal(chunks[i].chunk.chunk_id, ids[i]);
	}
	free(chunks);
	/* the source goes: the copy holds every chunk; the copy goes: none */
	assert_int_equal(efs_meta_object_delete(f->m, "bigcopy", "src", f->now), 0);
	assert_int_equal(garbage_among(f, ids, BIG_CHUNKS), 0);
	assert_int_equal(efs_meta_object_delete(f->m, "bigcopy", "copy", f->now), 0);
	assert_int_equal(garbage_among(f, ids, BIG_CHUNKS), BIG_CHUNKS);

	if (ddb_on) {
		make_big_object(f, "bigcopy", "src", 40, ids);
		copy_hook_state = (struct copy_hook_state){f->m, "bigcopy", "src", f->now, 1, 0};
		dyn_test_copy_hook = delete_source_during_copy;
		efs_strlcpy(dst->file_id, "b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5", sizeof(dst->file_id));
		int r = efs_meta_object_copy(f->m, &copy, f->now);
		dyn_test_copy_hook = NULL;
		assert_int_equal(copy_hook_state.fired, 1);
		assert_int_equal(r, -ENOKEY);
		assert_int_equal(efs_meta_object_get(f->m, "bigcopy", "copy", got), -ENOENT);
		assert_int_equal(efs_meta_file_get(f->m, dst->file_id, &fi), -ENOENT);
		count = 0;
		chunks = NULL;
		r = efs_meta_file_chunks(f->m, dst->file_id, 0, 16, &chunks, &count);
		assert_true(r == 0 || r == -ENOENT);
		free(chunks);
		assert_int_equal(count, 0);
		assert_int_equal(garbage_among(f, ids, BIG_CHUNKS), BIG_CHUNKS);
	}
	free(dst);
	free(got);
}

/* PutObject's If-Unmodified-Since, in the transaction as the others. */
static void test_put_if_unmodified_since(void **state)
{
	struct fixture *f = *state;
	struct efs_bucket_info b = bucket("dates", "alice");
	char first[EFS_ID_MAX + 1], second[EFS_ID_MAX + 1], chunk1[65], chunk2[65];
	const struct efs_object_cond before = {.if_unmodified_since_s = 1};
	const struct efs_object_cond at = {.if_unmodified_since_s = 2};
	const struct efs_object_cond match_wins = {.if_etag = "*", .if_unmodified_since_s = 1};

	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	make_file(f, "alice", 1, first, chunk1);
	make_file(f, "alice", 2, second, chunk2);
	struct efs_object_info *o1 = object("dates", "k", first); /* modified at 2 s */
	struct efs_object_info *o2 = object("dates", "k", second);
	/* no object: the condition holds */
	assert_int_equal(efs_meta_object_put_if(f->m, o1, &before, f->now), 0);
	assert_int_equal(efs_meta_object_put_if(f->m, o2, &before, f->now), -ESTALE);
	assert_false(is_garbage(f, chunk1));
	assert_int_equal(efs_meta_object_put_if(f->m, o2, &match_wins, f->now), 0);
	assert_int_equal(efs_meta_object_put_if(f->m, o2, &at, f->now), 0);
	free(o1);
	free(o2);
}

static void test_deleting_the_file_deletes_the_object(void **state)
{
	struct fixture *f = *state;
	struct efs_bucket_info b = bucket("rest", "alice");
	char file_id[EFS_ID_MAX + 1], chunk_id[65];
	struct efs_object_info *got = calloc(1, sizeof(*got));
	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	make_file(f, "alice", 3, file_id, chunk_id);
	struct efs_object_info *o = object("rest", "k", file_id);
	assert_int_equal(efs_meta_object_put(f->m, o, f->now), 0);
	assert_int_equal(efs_meta_file_delete(f->m, file_id, "alice", f->now), 0);
	assert_int_equal(efs_meta_object_get(f->m, "rest", "k", got), -ENOENT);
	assert_true(is_garbage(f, chunk_id));
	assert_int_equal(efs_meta_bucket_delete(f->m, "rest", "alice"), 0);
	free(o);
	free(got);
}

static void test_listing_in_byte_order_by_prefix_and_after(void **state)
{
	struct fixture *f = *state;
	/* byte order: uppercase < lowercase < UTF-8 beyond ASCII */
	static const char *const keys[] = {"Zeta",
					   "a",
					   "a/1",
					   "a/2",
					   "a0",
					   "b",
					   "zeta",
					   "\xc3\xa9t\xc3\xa9",
					   "\xc3\xa9t\xc3\xa9/x"};
	const size_t n = sizeof(keys) / sizeof(keys[0]);
	struct efs_bucket_info b = bucket("list", "alice");
	struct efs_object_entry *out = calloc(16, sizeof(*out));
	char file_id[EFS_ID_MAX + 1], chunk_id[65];
	size_t count = 0;

	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	/* inserted in reverse order */
	for (size_t i = n; i-- > 0;) {
		make_file(f, "alice", (int)i + 10, file_id, chunk_id);
		struct efs_object_info *o = object("list", keys[i], file_id);
		assert_int_equal(efs_meta_object_put(f->m, o, f->now), 0);
		free(o);
	}
	assert_int_equal(efs_meta_object_list(f->m, "list", "", "", 16, out, &count), 0);
	assert_int_equal(count, n);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(out[i].key, keys[i]);
	assert_int_equal(out[0].size, 14);
	assert_string_equal(out[0].etag, "0123456789abcdef0123456789abcdef");

	/* a limit, then after the last one */
	assert_int_equal(efs_meta_object_list(f->m, "list", "", "", 3, out, &count), 0);
	assert_int_equal(count, 3);
	assert_string_equal(out[2].key, "a/1");
	assert_int_equal(efs_meta_object_list(f->m, "list", "", "a/1", 3, out, &count), 0);
	assert_int_equal(count, 3);
	assert_string_equal(out[0].key, "a/2");
	assert_string_equal(out[2].key, "b");
	/* a prefix */
	assert_int_equal(efs_meta_object_list(f->m, "list", "a/", "", 16, out, &count), 0);
	assert_int_equal(count, 2);
	assert_string_equal(out[0].key, "a/1");
	assert_string_equal(out[1].key, "a/2");
	assert_int_equal(efs_meta_object_list(f->m, "list", "\xc3\xa9", "", 16, out, &count), 0);
	assert_int_equal(count, 2);
	assert_int_equal(efs_meta_object_list(f->m, "list", "a", "a/2", 16, out, &count), 0);
	assert_int_equal(count, 1);
	assert_string_equal(out[0].key, "a0");
	/* past everything; another bucket */
	assert_int_equal(
	    efs_meta_object_list(f->m, "list", "", "\xf4\x8f\xbf\xbf", 16, out, &count), 0);
	assert_int_equal(count, 0);
	assert_int_equal(efs_meta_object_list(f->m, "nope", "", "", 16, out, &count), 0);
	assert_int_equal(count, 0);
	free(out);
}

/* ---- multipart uploads ------------------------------------------------- */

/* A hidden session holding @count chunks of content @seed.i; their ids
 * into @chunk_ids (65 bytes each). */
static void make_part_session(struct fixture *f, int seed, unsigned count, char *session_id,
			      char (*chunk_ids)[65])
{
	struct efs_session_info sess;
	memset(&sess, 0, sizeof(sess));
	assert_int_equal(efs_random_hex(sess.session_id, EFS_FILE_ID_LEN / 2), 0);
	efs_strlcpy(sess.owner, "alice", sizeof(sess.owner));
	efs_strlcpy(sess.name, "part", sizeof(sess.name));
	sess.declared_size = -1;
	sess.chunk_size = 1024;
	sess.hidden = true;
	sess.created_at_ms = f->now;
	sess.expires_at_ms = f->now + 60000;
	assert_int_equal(efs_meta_session_create(f->m, &sess), 0);
	for (unsigned i = 0; i < count; i++) {
		struct efs_chunk_info c;
		char data[48];
		memset(&c, 0, sizeof(c));
		snprintf(data, sizeof(data), "part bytes %d.%u", seed, i);
		efs_sha256_hex(data, strlen(data), c.chunk_id);
		c.size = c.stored_size = strlen(data);
		assert_int_equal(efs_meta_session_put_chunk(f->m, sess.session_id, i, &c, worker_ids,
							    1, false, f->now, f->now + 60000, 0),
				 0);
		efs_strlcpy(chunk_ids[i], c.chunk_id, 65);
	}
	efs_strlcpy(session_id, sess.session_id, EFS_ID_MAX + 1);
}

static struct efs_s3_part part_of(unsigned number, const char *session_id, unsigned chunks)
{
	struct efs_s3_part p;
	memset(&p, 0, sizeof(p));
	p.part_number = number;
	efs_strlcpy(p.session_id, session_id, sizeof(p.session_id));
	p.size = chunks * 1024;
	snprintf(p.etag, sizeof(p.etag), "%032x", number);
	snprintf(p.checksum, sizeof(p.checksum), "SHA1:part%u", number);
	p.chunk_size = 1024;
	p.chunk_count = chunks;
	p.last_modified_ms = 3000;
	return p;
}

/* The run-length layout of parts of unequal sizes, and part 1 of an
 * object no Complete made (the whole of it). */
static void test_part_layout(void **state)
{
	struct fixture *f = *state;
	struct efs_s3_part parts[5];
	uint64_t sizes[5] = {5, 5, 5, 9, 2}, first = 0, size = 0;
	unsigned count = 0;
	char *layout = NULL;
	memset(parts, 0, sizeof(parts));
	for (unsigned i = 0; i < 5; i++)
		parts[i].size = sizes[i];
	assert_int_equal(efs_s3_parts_encode(parts, 5, &layout), 0);
	assert_string_equal(layout, "5*3,9*1,2*1");
	uint64_t offset = 0;
	for (unsigned i = 0; i < 5; i++) {
		assert_int_equal(efs_s3_parts_find(layout, i + 1, &first, &size, &count), 0);
		assert_int_equal(first, offset);
		assert_int_equal(size, sizes[i]);
		assert_int_equal(count, 5);
		offset += sizes[i];
	}
	assert_int_equal(efs_s3_parts_find(layout, 6, &first, &size, &count), -ERANGE);
	assert_int_equal(efs_s3_parts_find(layout, 0, &first, &size, &count), -ERANGE);
	assert_int_equal(efs_s3_parts_find("", 1, &first, &size, &count), -ERANGE);
	assert_int_equal(count, 0);
	assert_int_equal(efs_s3_parts_find("5*", 1, &first, &size, &count), -EIO);
	assert_int_equal(efs_s3_parts_find("5*0", 1, &first, &size, &count), -EIO);
	assert_int_equal(efs_s3_parts_find("5*10001", 1, &first, &size, &count), -EIO);
	free(layout);

	/* a PutObject's object: part 1 is all of it, no parts count */
	struct efs_bucket_info b = bucket("plain", "alice");
	char file_id[EFS_ID_MAX + 1], chunk_id[65];
	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	make_file(f, "alice", 1, file_id, chunk_id);
	struct efs_object_info *o = object("plain", "k", file_id);
	assert_int_equal(efs_meta_object_put(f->m, o, f->now), 0);
	first = 9;
	assert_int_equal(
	    efs_meta_object_part(f->m, "plain", "k", o->file_id, 300, 1, &first, &size, &count), 0);
	assert_int_equal(first, 0);
	assert_int_equal(size, 300);
	assert_int_equal(count, 0);
	assert_int_equal(
	    efs_meta_object_part(f->m, "plain", "k", o->file_id, 300, 2, &first, &size, &count),
	    -ERANGE);
	free(o);
}

static struct efs_s3_upload *new_upload(struct fixture *f, const char *id, const char *key,
					int64_t expires_at_ms)
{
	struct efs_s3_upload *u = calloc(1, sizeof(*u));
	assert_non_null(u);
	efs_strlcpy(u->upload_id, id, sizeof(u->upload_id));
	efs_strlcpy(u->owner, "alice", sizeof(u->owner));
	efs_strlcpy(u->obj.bucket, "mp", sizeof(u->obj.bucket));
	efs_strlcpy(u->obj.key, key, sizeof(u->obj.key));
	efs_strlcpy(u->obj.content_type, "text/plain", sizeof(u->obj.content_type));
	efs_strlcpy(u->obj.user_meta, "{}", sizeof(u->obj.user_meta));
	efs_strlcpy(u->policy, "ec:4+2", sizeof(u->policy));
	u->created_at_ms = f->now;
	u->expires_at_ms = expires_at_ms;
	assert_int_equal(efs_meta_s3_upload_create(f->m, u), 0);
	return u;
}

/* A Complete of parts the master copied into new chunks (re-chunked: their
 * sizes not whole chunks): the file's chunks are the copy's session's, the
 * layout the parts', every part is released; a stale part or a copy's
 * session that does not hold the file's chunks changes nothing. */
static void test_multipart_complete_from_a_copy_session(void **state)
{
	struct fixture *f = *state;
	struct efs_bucket_info b = bucket("mp", "alice");
	char s1[EFS_ID_MAX + 1], s2[EFS_ID_MAX + 1], s2b[EFS_ID_MAX + 1], cs[EFS_ID_MAX + 1];
	char c1[2][65], c2[1][65], c2b[1][65], cc[3][65];
	struct efs_s3_part parts[4], p;
	struct efs_session_info sess;
	struct efs_file_info fi, back;
	struct efs_file_chunk *chunks = NULL;
	struct efs_object_info *obj = calloc(1, sizeof(*obj));
	size_t n = 0;

	assert_non_null(obj);
	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	struct efs_s3_upload *u = new_upload(f, "00000000000c", "r", f->now + 100000);
	make_part_session(f, 21, 2, s1, c1);
	p = part_of(1, s1, 2);
	p.size = 1500; /* not a whole number of 1024-byte chunks */
	assert_int_equal(efs_meta_s3_part_put(f->m, u->upload_id, "alice", &p, f->now), 0);
	make_part_session(f, 22, 1, s2, c2);
	p = part_of(2, s2, 1);
	p.size = 600;
	assert_int_equal(efs_meta_s3_part_put(f->m, u->upload_id, "alice", &p, f->now), 0);
	assert_int_equal(efs_meta_s3_part_list(f->m, u->upload_id, 0, 4, parts, &n), 0);
	assert_int_equal(n, 2);
	/* the copy: 2100 bytes in three chunks */
	make_part_session(f, 23, 3, cs, cc);
	memset(&fi, 0, sizeof(fi));
	assert_int_equal(efs_random_hex(fi.file_id, EFS_FILE_ID_LEN / 2), 0);
	efs_strlcpy(fi.owner, "alice", sizeof(fi.owner));
	efs_strlcpy(fi.name, "r", sizeof(fi.name));
	fi.size = 2100;
	efs_strlcpy(fi.sha256, cc[0], sizeof(fi.sha256));
	fi.chunk_size = 1024;
	fi.replication = 1;
	fi.created_at_ms = f->now;
	efs_strlcpy(u->obj.file_id, fi.file_id, sizeof(u->obj.file_id));
	efs_strlcpy(u->obj.etag, "00000000000000000000000000000000-2", sizeof(u->obj.etag));
	u->obj.size = 2100;
	u->obj.last_modified_ms = 4000;

	/* the copy's session does not hold the file's chunk count: nothing */
	fi.chunk_count = 4;
	assert_int_equal(efs_meta_s3_upload_complete(f->m, u, parts, 2, cs, &fi, f->now), -ESTALE);
	fi.chunk_count = 3;
	/* part 2 replaced after it was read: nothing either */
	make_part_session(f, 24, 1, s2b, c2b);
	p = part_of(2, s2b, 1);
	p.size = 600;
	assert_int_equal(efs_meta_s3_part_put(f->m, u->upload_id, "alice", &p, f->now), 0);
	assert_int_equal(efs_meta_s3_upload_complete(f->m, u, parts, 2, cs, &fi, f->now), -ESTALE);
	assert_int_equal(efs_meta_object_get(f->m, "mp", "r", obj), -ENOENT);
	assert_int_equal(efs_meta_file_get(f->m, fi.file_id, &back), -ENOENT);
	assert_int_equal(efs_meta_session_get(f->m, cs, &sess), 0);
	assert_false(is_garbage(f, cc[2]));
	assert_false(is_garbage(f, c1[0]));

	/* read again: the copy's chunks are the file's, every part goes */
	assert_int_equal(efs_meta_s3_part_list(f->m, u->upload_id, 0, 4, parts, &n), 0);
	assert_int_equal(efs_meta_s3_upload_complete(f->m, u, parts, 2, cs, &fi, f->now), 0);
	assert_int_equal(efs_meta_file_chunks(f->m, fi.file_id, 0, 8, &chunks, &n), 0);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_string_equal(chunks[i].chunk.chunk_id, cc[i]);
		assert_false(is_garbage(f, cc[i]));
	}
	free(chunks);
	assert_true(is_garbage(f, c1[0]));
	assert_true(is_garbage(f, c1[1]));
	assert_true(is_garbage(f, c2b[0]));
	assert_int_equal(efs_meta_session_get(f->m, cs, &sess), -ENOENT);
	assert_int_equal(efs_meta_session_get(f->m, s1, &sess), -ENOENT);
	assert_int_equal(efs_meta_session_get(f->m, s2b, &sess), -ENOENT);
	/* the layout is the parts': part 2 is bytes 1500..2099 */
	uint64_t part_first = 0, part_size = 0;
	unsigned part_count = 0;
	assert_int_equal(efs_meta_object_part(f->m, "mp", "r", fi.file_id, 2100, 2, &part_first,
					      &part_size, &part_count),
			 0);
	assert_int_equal(part_first, 1500);
	assert_int_equal(part_size, 600);
	assert_int_equal(part_count, 2);
	assert_int_equal(efs_meta_s3_upload_get(f->m, u->upload_id, u), 0);
	assert_true(u->completed);
	free(u);
	free(obj);
}

static void test_multipart_parts_hold_their_chunks_and_complete_moves_them(void **state)
{
	struct fixture *f = *state;
	struct efs_bucket_info b = bucket("mp", "alice");
	char s1[EFS_ID_MAX + 1], s1b[EFS_ID_MAX + 1], s2[EFS_ID_MAX + 1], s3[EFS_ID_MAX + 1];
	char c1[2][65], c1b[1][65], c2[1][65], c3[1][65];
	struct efs_s3_part parts[8], p;
	struct efs_s3_upload *got = calloc(1, sizeof(*got));
	struct efs_object_info *obj = calloc(1, sizeof(*obj));
	struct efs_session_info sess;
	struct efs_file_info fi, back;
	struct efs_file_chunk *chunks = NULL;
	size_t n = 0;

	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	struct efs_s3_upload *u = new_upload(f, "00000000000a", "k", f->now + 100000);
	assert_int_equal(efs_meta_s3_upload_get(f->m, "00000000000a", got), 0);
	assert_false(got->completed);
	assert_string_equal(got->obj.key, "k");
	assert_string_equal(got->obj.content_type, "text/plain");
	/* the parts' policy (schema version 12); DynamoDB keeps none */
	assert_string_equal(got->policy,
			    strcmp(efs_meta_backend(f->m), "dynamodb") == 0 ? "" : "ec:4+2");

	/* part 1: two chunks, held; a wrong owner or chunk count changes nothing */
	make_part_session(f, 1, 2, s1, c1);
	p = part_of(1, s1, 2);
	assert_int_equal(efs_meta_s3_part_put(f->m, u->upload_id, "bob", &p, f->now), -ENOENT);
	p.chunk_count = 3;
	assert_int_equal(efs_meta_s3_part_put(f->m, u->upload_id, "alice", &p, f->now), -ESTALE);
	p.chunk_count = 2;
	assert_int_equal(efs_meta_s3_part_put(f->m, u->upload_id, "alice", &p, f->now), 0);
	/* the part's session now lives as long as the upload */
	assert_int_equal(efs_meta_session_get(f->m, s1, &sess), 0);
	assert_int_equal(sess.expires_at_ms, u->expires_at_ms);
	assert_false(is_garbage(f, c1[0]));
	/* part 1 sent again: the first version's chunks are released */
	make_part_session(f, 11, 1, s1b, c1b);
	p = part_of(1, s1b, 1);
	assert_int_equal(efs_meta_s3_part_put(f->m, u->upload_id, "alice", &p, f->now), 0);
	assert_true(is_garbage(f, c1[0]));
	assert_true(is_garbage(f, c1[1]));
	assert_int_equal(efs_meta_session_get(f->m, s1, &sess), -ENOENT);
	make_part_session(f, 2, 1, s2, c2);
	p = part_of(2, s2, 1);
	assert_int_equal(efs_meta_s3_part_put(f->m, u->upload_id, "alice", &p, f->now), 0);
	make_part_session(f, 3, 1, s3, c3);
	p = part_of(3, s3, 1);
	assert_int_equal(efs_meta_s3_part_put(f->m, u->upload_id, "alice", &p, f->now), 0);
	assert_int_equal(efs_meta_s3_part_list(f->m, u->upload_id, 0, 8, parts, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(parts[0].part_number, 1);
	assert_string_equal(parts[0].session_id, s1b);
	assert_string_equal(parts[0].checksum, "SHA1:part1");
	assert_int_equal(efs_meta_s3_part_list(f->m, u->upload_id, 1, 1, parts + 4, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(parts[4].part_number, 2);

	/* complete with parts 1 and 2: their references move, part 3's go */
	memset(&fi, 0, sizeof(fi));
	assert_int_equal(efs_random_hex(fi.file_id, EFS_FILE_ID_LEN / 2), 0);
	efs_strlcpy(fi.owner, "alice", sizeof(fi.owner));
	efs_strlcpy(fi.name, "k", sizeof(fi.name));
	fi.size = 2048;
	efs_strlcpy(fi.sha256, c2[0], sizeof(fi.sha256));
	fi.chunk_size = 1024;
	fi.chunk_count = 2;
	fi.replication = 1;
	fi.created_at_ms = f->now;
	efs_strlcpy(u->obj.file_id, fi.file_id, sizeof(u->obj.file_id));
	efs_strlcpy(u->obj.etag, "00000000000000000000000000000000-2", sizeof(u->obj.etag));
	u->obj.size = 2048;
	u->obj.last_modified_ms = 4000;
	struct efs_s3_upload *other = calloc(1, sizeof(*other));
	*other = *u;
	efs_strlcpy(other->owner, "bob", sizeof(other->owner));
	assert_int_equal(efs_meta_s3_upload_complete(f->m, other, parts, 2, NULL, &fi, f->now),
			 -ENOENT);
	assert_int_equal(efs_meta_s3_upload_complete(f->m, u, parts, 2, NULL, &fi, f->now), 0);
	assert_int_equal(efs_meta_file_chunks(f->m, fi.file_id, 0, 8, &chunks, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(chunks[0].chunk.chunk_id, c1b[0]);
	assert_string_equal(chunks[1].chunk.chunk_id, c2[0]);
	free(chunks);
	assert_false(is_garbage(f, c1b[0]));
	assert_false(is_garbage(f, c2[0]));
	assert_true(is_garbage(f, c3[0]));
	assert_int_equal(efs_meta_session_get(f->m, s2, &sess), -ENOENT);
	assert_int_equal(efs_meta_file_get(f->m, fi.file_id, &back), 0);
	assert_string_equal(back.s3_key, "k");
	assert_int_equal(efs_meta_object_get(f->m, "mp", "k", obj), 0);
	assert_string_equal(obj->file_id, fi.file_id);
	assert_string_equal(obj->etag, u->obj.etag);
	/* the part layout went with the object (?partNumber) */
	uint64_t part_first = 7, part_size = 7;
	unsigned part_count = 0;
	assert_int_equal(efs_meta_object_part(f->m, "mp", "k", fi.file_id, 2048, 2, &part_first,
					      &part_size, &part_count),
			 0);
	assert_int_equal(part_first, 1024);
	assert_int_equal(part_size, 1024);
	assert_int_equal(part_count, 2);
	assert_int_equal(efs_meta_object_part(f->m, "mp", "k", fi.file_id, 2048, 3, &part_first,
					      &part_size, &part_count),
			 -ERANGE);
	assert_int_equal(part_count, 2);
	assert_int_equal(efs_meta_object_part(f->m, "mp", "k", "0123", 2048, 1, &part_first,
					      &part_size, &part_count),
			 -ESTALE);
	assert_int_equal(efs_meta_object_part(f->m, "mp", "nokey", fi.file_id, 2048, 1, &part_first,
					      &part_size, &part_count),
			 -ESTALE);
	assert_int_equal(efs_meta_s3_upload_get(f->m, u->upload_id, got), 0);
	assert_true(got->completed);
	assert_string_equal(got->obj.etag, u->obj.etag);
	assert_int_equal(efs_meta_s3_upload_complete(f->m, u, parts, 2, NULL, &fi, f->now),
			 -EALREADY);
	assert_int_equal(efs_meta_s3_upload_abort(f->m, u->upload_id, "alice", f->now), -ENOENT);

	/* a part replaced after it was read: the complete moves nothing */
	struct efs_s3_upload *u2 = new_upload(f, "00000000000b", "k2", f->now + 100000);
	make_part_session(f, 4, 1, s1, c1);
	p = part_of(1, s1, 1);
	assert_int_equal(efs_meta_s3_part_put(f->m, u2->upload_id, "alice", &p, f->now), 0);
	assert_int_equal(efs_meta_s3_part_list(f->m, u2->upload_id, 0, 8, parts, &n), 0);
	make_part_session(f, 5, 1, s2, c2);
	p = part_of(1, s2, 1);
	assert_int_equal(efs_meta_s3_part_put(f->m, u2->upload_id, "alice", &p, f->now), 0);
	assert_int_equal(efs_random_hex(fi.file_id, EFS_FILE_ID_LEN / 2), 0);
	fi.chunk_count = 1;
	efs_strlcpy(u2->obj.file_id, fi.file_id, sizeof(u2->obj.file_id));
	assert_int_equal(efs_meta_s3_upload_complete(f->m, u2, parts, 1, NULL, &fi, f->now),
			 -ESTALE);
	assert_int_equal(efs_meta_object_get(f->m, "mp", "k2", obj), -ENOENT);
	assert_int_equal(efs_meta_file_get(f->m, fi.file_id, &back), -ENOENT);
	assert_false(is_garbage(f, c2[0]));
	/* listed until aborted; abort releases */
	struct efs_s3_upload_entry entries[4];
	assert_int_equal(efs_meta_s3_upload_list(f->m, "mp", "", "", NULL, 4, entries, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(entries[0].upload_id, "00000000000b");
	assert_int_equal(efs_meta_s3_upload_abort(f->m, u2->upload_id, "bob", f->now), -ENOENT);
	assert_int_equal(efs_meta_s3_upload_abort(f->m, u2->upload_id, "alice", f->now), 0);
	assert_true(is_garbage(f, c2[0]));
	assert_int_equal(efs_meta_s3_upload_get(f->m, u2->upload_id, got), -ENOENT);

	/* expiry: listed for the collector, whose abort releases the parts */
	struct efs_s3_upload *u3 = new_upload(f, "00000000000c", "k3", f->now - 1);
	char ids[4][EFS_ID_MAX + 1];
	assert_int_equal(efs_meta_s3_upload_expired(f->m, f->now, 4, ids, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(ids[0], "00000000000c");
	assert_int_equal(efs_meta_s3_upload_abort(f->m, ids[0], NULL, f->now), 0);
	free(u);
	free(u2);
	free(u3);
	free(other);
	free(got);
	free(obj);
}

/* A file for completing upload @u (in bucket "mp") from @chunks chunks. */
static void complete_target(struct efs_s3_upload *u, struct efs_file_info *fi, uint64_t chunks)
{
	memset(fi, 0, sizeof(*fi));
	assert_int_equal(efs_random_hex(fi->file_id, EFS_FILE_ID_LEN / 2), 0);
	efs_strlcpy(fi->owner, "alice", sizeof(fi->owner));
	efs_strlcpy(fi->name, u->obj.key, sizeof(fi->name));
	fi->size = chunks * 1024;
	efs_strlcpy(fi->sha256, "00000000000000000000000000000000000000000000000000000000000000aa",
		    sizeof(fi->sha256));
	fi->chunk_size = 1024;
	fi->chunk_count = chunks;
	fi->replication = 1;
	fi->created_at_ms = u->created_at_ms;
	efs_strlcpy(u->obj.file_id, fi->file_id, sizeof(u->obj.file_id));
	efs_strlcpy(u->obj.etag, "00000000000000000000000000000000-2", sizeof(u->obj.etag));
	u->obj.size = fi->size;
	u->obj.last_modified_ms = 4000;
}

struct complete_hook_state {
	struct efs_meta *m;
	unsigned at_step;
	int fired;
	enum { DIE, SWEEP, REPLACE, ABORT } what;
	const char *upload_id;
	struct efs_s3_part part; /* REPLACE: acknowledged at at_step */
	int64_t now;
} complete_hook_state;

/* dyn_test_complete_hook: at list item at_step, the master dies, the
 * leftovers sweep runs (taking every item as old), a part is sent again,
 * or the upload is aborted. */
static int during_complete(struct dyn *d, const char *file_id, unsigned step)
{
	struct complete_hook_state *h = &complete_hook_state;
	(void)file_id;
	if (step != h->at_step || h->fired++)
		return 0;
	switch (h->what) {
	case DIE:
		return -1;
	case SWEEP:
		dyn_sweep_leftovers(d, efs_now_ms() + 3600000, efs_now_ms());
		break;
	case REPLACE:
		assert_int_equal(efs_meta_s3_part_put(h->m, h->upload_id, "alice", &h->part, h->now),
				 0);
		break;
	case ABORT:
		assert_int_equal(efs_meta_s3_upload_abort(h->m, h->upload_id, "alice", h->now), 0);
		break;
	}
	return 0;
}

#define MP_BIG 150 /* a part of two list items (99 + 51 ids) */

/* DynamoDB: Complete writes the new file's chunk lists (counted) before its
 * commit. A master that dies between them leaves counted lists without
 * META: the leftovers sweep releases them, every reference once. A sweep
 * that takes them while the complete runs, a part sent again or an abort
 * meanwhile make the commit fail, its lists undone: no object, every count
 * as before. */
static void test_dynamodb_multipart_complete_leftovers(void **state)
{
	struct fixture *f = *state;
	struct efs_bucket_info b = bucket("mp", "alice");
	static char ids[MP_BIG + 2][65];
	char s1[EFS_ID_MAX + 1], s2[EFS_ID_MAX + 1], s3[EFS_ID_MAX + 1];
	struct efs_s3_part parts[2], p;
	struct efs_object_info *obj = calloc(1, sizeof(*obj));
	struct efs_file_info fi, back;
	size_t n = 0;

	if (!ddb_on) {
		free(obj);
		skip();
	}
	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	static const char *const upload_ids[] = {"00000000001a", "00000000001b", "00000000001c",
						 "00000000001d"};
	for (int round = 0; round < 4; round++) {
		struct efs_s3_upload *u = new_upload(f, upload_ids[round], "big", f->now + 100000);
		make_part_session(f, 100 + 10 * round, MP_BIG, s1, ids);
		p = part_of(1, s1, MP_BIG);
		assert_int_equal(efs_meta_s3_part_put(f->m, u->upload_id, "alice", &p, f->now), 0);
		make_part_session(f, 101 + 10 * round, 1, s2, ids + MP_BIG);
		p = part_of(2, s2, 1);
		assert_int_equal(efs_meta_s3_part_put(f->m, u->upload_id, "alice", &p, f->now), 0);
		assert_int_equal(efs_meta_s3_part_list(f->m, u->upload_id, 0, 2, parts, &n), 0);
		assert_int_equal(n, 2);
		complete_target(u, &fi, MP_BIG + 1);
		complete_hook_state = (struct complete_hook_state){
		    .m = f->m, .upload_id = u->upload_id, .now = f->now};
		if (round == 0) { /* died after two of its three list items */
			complete_hook_state.what = DIE;
			complete_hook_state.at_step = 2;
		} else if (round == 1) { /* the sweep took the lists */
			complete_hook_state.what = SWEEP;
			complete_hook_state.at_step = 3;
		} else if (round == 2) { /* part 2 sent again before the commit */
			make_part_session(f, 102 + 10 * round, 1, s3, ids + MP_BIG + 1);
			complete_hook_state.what = REPLACE;
			complete_hook_state.at_step = 3;
			complete_hook_state.part = part_of(2, s3, 1);
		} else { /* aborted before the commit */
			complete_hook_state.what = ABORT;
			complete_hook_state.at_step = 3;
		}
		dyn_test_complete_hook = during_complete;
		int r = efs_meta_s3_upload_complete(f->m, u, parts, 2, NULL, &fi, f->now);
		dyn_test_complete_hook = NULL;
		assert_int_equal(complete_hook_state.fired, 1);
		assert_int_equal(r, round == 0 ? -EINTR
				    : round == 1 ? -EAGAIN
				    : round == 2 ? -ESTALE
						 : -ENOENT);
		assert_int_equal(efs_meta_object_get(f->m, "mp", "big", obj), -ENOENT);
		assert_int_equal(efs_meta_file_get(f->m, fi.file_id, &back), -ENOENT);
		if (round == 0) {
			/* the parts still hold every chunk; the abort lets them
			 * go but the dead complete's two lists (99 + 51 ids) */
			assert_int_equal(garbage_among(f, ids, MP_BIG + 1), 0);
			assert_int_equal(efs_meta_s3_upload_abort(f->m, u->upload_id, "alice", f->now),
					 0);
			assert_int_equal(garbage_among(f, ids, MP_BIG + 1), 1);
			dyn_sweep_leftovers(f->m->impl, efs_now_ms() + 3600000, efs_now_ms());
		} else if (round == 1 || round == 2) {
			/* nothing counted by the complete is left */
			assert_int_equal(garbage_among(f, ids, MP_BIG + 1), round == 2 ? 1 : 0);
			assert_int_equal(efs_meta_s3_upload_abort(f->m, u->upload_id, "alice", f->now),
					 0);
		}
		size_t all = round == 2 ? MP_BIG + 2 : MP_BIG + 1;
		assert_int_equal(garbage_among(f, ids, all), all);
		free(u);
	}
	/* and one that completes: the object, every chunk held by it alone */
	struct efs_s3_upload *u = new_upload(f, "00000000001e", "big", f->now + 100000);
	make_part_session(f, 200, MP_BIG, s1, ids);
	p = part_of(1, s1, MP_BIG);
	assert_int_equal(efs_meta_s3_part_put(f->m, u->upload_id, "alice", &p, f->now), 0);
	assert_int_equal(efs_meta_s3_part_list(f->m, u->upload_id, 0, 2, parts, &n), 0);
	complete_target(u, &fi, MP_BIG);
	assert_int_equal(efs_meta_s3_upload_complete(f->m, u, parts, 1, NULL, &fi, f->now), 0);
	assert_int_equal(efs_meta_session_get(f->m, s1, &(struct efs_session_info){0}), -ENOENT);
	assert_int_equal(garbage_among(f, ids, MP_BIG), 0);
	assert_int_equal(efs_meta_object_delete(f->m, "mp", "big", f->now), 0);
	assert_int_equal(garbage_among(f, ids, MP_BIG), MP_BIG);
	free(u);
	free(obj);
}

/* A bucket deleted with uploads in progress: they are aborted, their parts
 * released; an object in it still refuses the delete, uploads kept. */
static void test_bucket_delete_aborts_its_uploads(void **state)
{
	struct fixture *f = *state;
	struct efs_bucket_info b = bucket("mp", "alice");
	char s1[EFS_ID_MAX + 1], c1[1][65], first[EFS_ID_MAX + 1], chunk1[65];
	struct efs_s3_upload *got = calloc(1, sizeof(*got));
	struct efs_s3_upload_entry entries[4];
	size_t n = 0;

	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	struct efs_s3_upload *u = new_upload(f, "00000000002a", "k", f->now + 100000);
	make_part_session(f, 300, 1, s1, c1);
	struct efs_s3_part p = part_of(1, s1, 1);
	assert_int_equal(efs_meta_s3_part_put(f->m, u->upload_id, "alice", &p, f->now), 0);
	make_file(f, "alice", 301, first, chunk1);
	struct efs_object_info *o = object("mp", "obj", first);
	assert_int_equal(efs_meta_object_put(f->m, o, f->now), 0);
	assert_int_equal(efs_meta_bucket_delete(f->m, "mp", "alice"), -ENOTEMPTY);
	assert_int_equal(efs_meta_s3_upload_get(f->m, u->upload_id, got), 0);
	assert_int_equal(efs_meta_object_delete(f->m, "mp", "obj", f->now), 0);
	assert_int_equal(garbage_among(f, c1, 1), 0);
	assert_int_equal(efs_meta_bucket_delete(f->m, "mp", "alice"), 0);
	assert_int_equal(efs_meta_s3_upload_get(f->m, u->upload_id, got), -ENOENT);
	assert_int_equal(garbage_among(f, c1, 1), 1);
	/* a bucket of that name again: no upload of the old one in it */
	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	assert_int_equal(efs_meta_s3_upload_list(f->m, "mp", "", "", NULL, 4, entries, &n), 0);
	assert_int_equal(n, 0);
	free(o);
	free(u);
	free(got);
}

/* ListMultipartUploads: (key, upload id) order by the keys' bytes, also
 * for keys one of which begins another, prefixes and markers. */
static void test_upload_listing_order_and_markers(void **state)
{
	struct fixture *f = *state;
	struct efs_bucket_info b = bucket("mp", "alice");
	struct efs_s3_upload_entry e[8];
	size_t n = 0;
	static const struct {
		const char *key, *id;
	} made[] = {{"a", "000000000003"}, {"a", "000000000001"}, {"a b", "000000000002"},
		    {"a\x01", "000000000004"}, {"ab", "000000000005"}, {"b/1", "000000000006"}};

	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++)
		free(new_upload(f, made[i].id, made[i].key, f->now + 100000));
	assert_int_equal(efs_meta_s3_upload_list(f->m, "mp", "", "", NULL, 8, e, &n), 0);
	assert_int_equal(n, 6);
	const char *order[] = {"000000000001", "000000000003", "000000000004",
			       "000000000002", "000000000005", "000000000006"};
	for (size_t i = 0; i < 6; i++)
		assert_string_equal(e[i].upload_id, order[i]);
	assert_string_equal(e[2].key, "a\001");
	/* after ("a", 1): a's second upload on */
	assert_int_equal(efs_meta_s3_upload_list(f->m, "mp", "", "a", "000000000001", 2, e, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(e[0].upload_id, "000000000003");
	assert_string_equal(e[1].upload_id, "000000000004");
	/* after every upload of "a" */
	assert_int_equal(efs_meta_s3_upload_list(f->m, "mp", "", "a", NULL, 8, e, &n), 0);
	assert_int_equal(n, 4);
	assert_string_equal(e[0].upload_id, "000000000004");
	/* a prefix; a marker before it; a marker beyond it */
	assert_int_equal(efs_meta_s3_upload_list(f->m, "mp", "a", "", NULL, 8, e, &n), 0);
	assert_int_equal(n, 5);
	assert_int_equal(efs_meta_s3_upload_list(f->m, "mp", "b/", "a", NULL, 8, e, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(e[0].key, "b/1");
	assert_int_equal(efs_meta_s3_upload_list(f->m, "mp", "a", "b", NULL, 8, e, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(efs_meta_s3_upload_list(f->m, "mp", "a ", "a", "000000000003", 8, e, &n),
			 0);
	assert_int_equal(n, 1);
	assert_string_equal(e[0].upload_id, "000000000002");
}

/* ---- two masters --------------------------------------------------------- */

#define RACE_ROUNDS 6

struct racer {
	struct efs_meta *m;
	struct efs_object_info *objects[RACE_ROUNDS];
	struct efs_bucket_info bucket;
	int64_t now;
	int results[RACE_ROUNDS];
	pthread_barrier_t *start;
};

static void *race_puts(void *arg)
{
	struct racer *r = arg;
	pthread_barrier_wait(r->start);
	for (int i = 0; i < RACE_ROUNDS; i++)
		r->results[i] = efs_meta_object_put(r->m, r->objects[i], r->now);
	return NULL;
}

/* Two handles (two masters) overwrite one key at once, each with files of
 * its own: one object remains, every file it does not name is deleted and
 * its chunk unreferenced (released exactly once: a second release would
 * drive a count below 0, a missed one keep a chunk off the collector's
 * list). Not on SQLite (one writer). */
static void test_two_masters_overwriting_one_key(void **state)
{
	struct fixture *f = *state;
	struct efs_meta *second = open_second(f);
	if (!second) {
		print_message("  (two handles need PostgreSQL or DynamoDB)\n");
		return;
	}
	struct efs_bucket_info b = bucket("race", "alice");
	char file_ids[2][RACE_ROUNDS][EFS_ID_MAX + 1], chunk_ids[2][RACE_ROUNDS][65];
	struct racer racers[2];
	pthread_t threads[2];
	pthread_barrier_t start;
	struct efs_object_info *got = calloc(1, sizeof(*got));
	struct efs_file_info fi;

	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	pthread_barrier_init(&start, NULL, 2);
	for (int t = 0; t < 2; t++) {
		racers[t].m = t ? second : f->m;
		racers[t].now = f->now;
		racers[t].start = &start;
		for (int i = 0; i < RACE_ROUNDS; i++) {
			make_file(f, "alice", 100 * (t + 1) + i, file_ids[t][i], chunk_ids[t][i]);
			racers[t].objects[i] = object("race", "same/key", file_ids[t][i]);
		}
	}
	for (int t = 0; t < 2; t++)
		assert_int_equal(pthread_create(&threads[t], NULL, race_puts, &racers[t]), 0);
	for (int t = 0; t < 2; t++)
		pthread_join(threads[t], NULL);
	pthread_barrier_destroy(&start);
	for (int t = 0; t < 2; t++)
		for (int i = 0; i < RACE_ROUNDS; i++)
			assert_int_equal(racers[t].results[i], 0);

	assert_int_equal(efs_meta_object_get(f->m, "race", "same/key", got), 0);
	struct efs_object_entry *list = calloc(8, sizeof(*list));
	size_t count = 0;
	assert_int_equal(efs_meta_object_list(f->m, "race", "", "", 8, list, &count), 0);
	assert_int_equal(count, 1);
	unsigned alive = 0;
	for (int t = 0; t < 2; t++)
		for (int i = 0; i < RACE_ROUNDS; i++) {
			bool winner = strcmp(file_ids[t][i], got->file_id) == 0;
			int r = efs_meta_file_get(f->m, file_ids[t][i], &fi);
			assert_int_equal(r, winner ? 0 : -ENOENT);
			assert_true(is_garbage(f, chunk_ids[t][i]) == !winner);
			alive += winner;
		}
	assert_int_equal(alive, 1);
	/* the object's delete releases the last one */
	assert_int_equal(efs_meta_object_delete(second, "race", "same/key", f->now), 0);
	for (int t = 0; t < 2; t++)
		for (int i = 0; i < RACE_ROUNDS; i++)
			assert_true(is_garbage(f, chunk_ids[t][i]));
	assert_int_equal(efs_meta_bucket_delete(f->m, "race", "alice"), 0);
	for (int t = 0; t < 2; t++)
		for (int i = 0; i < RACE_ROUNDS; i++)
			free(racers[t].objects[i]);
	free(list);
	free(got);
	efs_meta_close(second);
}

static void *race_bucket_create(void *arg)
{
	struct racer *r = arg;
	pthread_barrier_wait(r->start);
	r->results[0] = efs_meta_bucket_create(r->m, &r->bucket);
	return NULL;
}

static void *race_bucket_delete(void *arg)
{
	struct racer *r = arg;
	pthread_barrier_wait(r->start);
	r->results[0] = efs_meta_bucket_delete(r->m, r->bucket.name, r->bucket.owner);
	return NULL;
}

static void *race_one_put(void *arg)
{
	struct racer *r = arg;
	pthread_barrier_wait(r->start);
	r->results[0] = efs_meta_object_put(r->m, r->objects[0], r->now);
	return NULL;
}

static void race_two(struct racer *a, void *(*fa)(void *), struct racer *b, void *(*fb)(void *))
{
	pthread_t threads[2];
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, 2);
	a->start = b->start = &start;
	assert_int_equal(pthread_create(&threads[0], NULL, fa, a), 0);
	assert_int_equal(pthread_create(&threads[1], NULL, fb, b), 0);
	pthread_join(threads[0], NULL);
	pthread_join(threads[1], NULL);
	pthread_barrier_destroy(&start);
}

struct part_racer {
	struct efs_meta *m;
	const char *upload_id;
	struct efs_s3_part part;
	int result;
	int64_t now;
	pthread_barrier_t *start;
};

static void *race_part(void *arg)
{
	struct part_racer *r = arg;
	pthread_barrier_wait(r->start);
	r->result = efs_meta_s3_part_put(r->m, r->upload_id, "alice", &r->part, r->now);
	return NULL;
}

/* Two handles (two masters) acknowledge part 1 of one upload at once,
 * each with a session of its own, over an empty part 1 (no session to
 * end): one part remains, naming one session; the other session is ended
 * and its chunk unreferenced (the later acknowledgement replaced the
 * earlier one and released it: none is left holding its chunk). Not on
 * SQLite. */
static void test_two_masters_sending_one_part(void **state)
{
	struct fixture *f = *state;
	struct efs_meta *second = open_second(f);
	struct efs_bucket_info b = bucket("mp", "alice");
	static char chunks[RACE_ROUNDS][2][1][65];
	struct part_racer racers[2];
	struct efs_s3_part got[2], empty = part_of(1, "", 0);
	struct efs_session_info sess;
	pthread_barrier_t start;
	pthread_t threads[2];
	size_t n = 0;

	if (!second) {
		print_message("  (two handles need PostgreSQL or DynamoDB)\n");
		return;
	}
	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	struct efs_s3_upload *u = new_upload(f, "00000000003a", "raced", f->now + 100000);
	empty.size = 0;
	for (int i = 0; i < RACE_ROUNDS; i++) {
		assert_int_equal(efs_meta_s3_part_put(f->m, u->upload_id, "alice", &empty, f->now), 0);
		pthread_barrier_init(&start, NULL, 2);
		for (int t = 0; t < 2; t++) {
			char sid[EFS_ID_MAX + 1];
			make_part_session(f, 400 + 10 * i + t, 1, sid, chunks[i][t]);
			racers[t] = (struct part_racer){t ? second : f->m, u->upload_id,
							part_of(1, sid, 1), -1, f->now, &start};
		}
		for (int t = 0; t < 2; t++)
			assert_int_equal(pthread_create(&threads[t], NULL, race_part, &racers[t]), 0);
		for (int t = 0; t < 2; t++)
			pthread_join(threads[t], NULL);
		pthread_barrier_destroy(&start);
		assert_int_equal(efs_meta_s3_part_list(f->m, u->upload_id, 0, 2, got, &n), 0);
		assert_int_equal(n, 1);
		size_t alive = 0;
		for (int t = 0; t < 2; t++) {
			assert_int_equal(racers[t].result, 0);
			bool kept = strcmp(racers[t].part.session_id, got[0].session_id) == 0;
			int r = efs_meta_session_get(f->m, racers[t].part.session_id, &sess);
			assert_int_equal(r, kept ? 0 : -ENOENT);
			assert_int_equal(garbage_among(f, chunks[i][t], 1), kept ? 0 : 1);
			alive += kept;
		}
		assert_int_equal(alive, 1);
	}
	assert_int_equal(efs_meta_s3_upload_abort(f->m, u->upload_id, "alice", f->now), 0);
	for (int i = 0; i < RACE_ROUNDS; i++)
		for (int t = 0; t < 2; t++)
			assert_int_equal(garbage_among(f, chunks[i][t], 1), 1);
	efs_meta_close(second);
	free(u);
}

/* Two owners create one name at once: exactly one gets it. A bucket
 * deleted while a put into it runs: never both (the object would be in no
 * bucket); a put that lost finds the bucket gone. */
static void test_two_masters_racing_for_a_bucket(void **state)
{
	struct fixture *f = *state;
	struct efs_meta *second = open_second(f);
	if (!second) {
		print_message("  (two handles need PostgreSQL or DynamoDB)\n");
		return;
	}
	struct efs_bucket_info got;
	for (int round = 0; round < RACE_ROUNDS; round++) {
		struct racer a = {.m = f->m}, b = {.m = second};
		char name[32];
		snprintf(name, sizeof(name), "contested-%d", round);
		a.bucket = bucket(name, "alice");
		b.bucket = bucket(name, "bob");
		race_two(&a, race_bucket_create, &b, race_bucket_create);
		assert_true((a.results[0] == 0 && b.results[0] == -EEXIST) ||
			    (a.results[0] == -EEXIST && b.results[0] == 0));
		assert_int_equal(efs_meta_bucket_get(f->m, name, &got), 0);
		assert_string_equal(got.owner, a.results[0] == 0 ? "alice" : "bob");
	}
	for (int round = 0; round < RACE_ROUNDS; round++) {
		struct racer put = {.m = f->m, .now = f->now}, del = {.m = second};
		char name[32], file_id[EFS_ID_MAX + 1], chunk_id[65];
		struct efs_object_entry entry;
		size_t count = 9;
		snprintf(name, sizeof(name), "doomed-%d", round);
		del.bucket = bucket(name, "alice");
		assert_int_equal(efs_meta_bucket_create(f->m, &del.bucket), 0);
		make_file(f, "alice", 1000 + round, file_id, chunk_id);
		put.objects[0] = object(name, "k", file_id);
		race_two(&put, race_one_put, &del, race_bucket_delete);
		if (del.results[0] == 0) {
			assert_int_equal(put.results[0], -ENOENT);
			assert_int_equal(efs_meta_bucket_get(f->m, name, &got), -ENOENT);
			assert_int_equal(efs_meta_object_list(f->m, name, "", "", 1, &entry, &count),
					 0);
			assert_int_equal(count, 0);
			/* the caller deletes the new file on -ENOENT */
			assert_int_equal(efs_meta_file_delete(f->m, file_id, "alice", f->now), 0);
		} else {
			assert_true(del.results[0] == -ENOTEMPTY || del.results[0] == -EAGAIN);
			assert_int_equal(put.results[0], 0);
			assert_int_equal(efs_meta_object_delete(f->m, name, "k", f->now), 0);
			assert_int_equal(efs_meta_bucket_delete(f->m, name, "alice"), 0);
		}
		assert_true(is_garbage(f, chunk_id));
		free(put.objects[0]);
	}
	efs_meta_close(second);
}

/* The DynamoDB bucket delete's window: a put that runs after the delete
 * found the bucket empty and before it deletes the bucket. The put must
 * not land (the delete's mark stops it: -EAGAIN after its retries), or
 * the object would outlive its bucket. */
static struct efs_meta *hook_store;
static struct efs_object_info *hook_object;
static int hook_result;

static void put_in_the_window(const char *bucket_name)
{
	hook_result = efs_meta_object_put(hook_store, hook_object, efs_now_ms());
}

static void test_dynamodb_put_during_a_bucket_delete(void **state)
{
	struct fixture *f = *state;
	if (!ddb_on) {
		print_message("  (DynamoDB only)\n");
		return;
	}
	struct efs_bucket_info b = bucket("closing", "alice"), got;
	char file_id[EFS_ID_MAX + 1], chunk_id[65];
	struct efs_object_entry entry;
	size_t count = 9;
	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	make_file(f, "alice", 7, file_id, chunk_id);
	hook_store = open_second(f);
	assert_non_null(hook_store);
	hook_object = object("closing", "late", file_id);
	hook_result = 1;
	dyn_test_bucket_delete_hook = put_in_the_window;
	int r = efs_meta_bucket_delete(f->m, "closing", "alice");
	dyn_test_bucket_delete_hook = NULL;
	assert_int_equal(r, 0);
	assert_int_equal(hook_result, -EAGAIN);
	assert_int_equal(efs_meta_bucket_get(f->m, "closing", &got), -ENOENT);
	assert_int_equal(efs_meta_object_list(f->m, "closing", "", "", 1, &entry, &count), 0);
	assert_int_equal(count, 0);
	/* after the delete, the same put finds no bucket */
	assert_int_equal(efs_meta_object_put(hook_store, hook_object, f->now), -ENOENT);
	free(hook_object);
	efs_meta_close(hook_store);
}

/* A delete mark its master left (it died between the mark and the end):
 * a fresh one holds puts off (-EAGAIN), one older than
 * DYN_RELEASE_STALE_MS is cleared by the next put, which then lands; the
 * next delete takes a mark over. */
static void set_mark(struct fixture *f, const char *name, int64_t at_ms)
{
	char pk[EFS_S3_BUCKET_MAX + 16];
	snprintf(pk, sizeof(pk), "BUCKET#%s", name);
	json_t *names = json_pack("{s:s, s:s}", "#d", "deleting", "#da", "deleting_at");
	json_t *values = json_pack("{s:o, s:o}", ":t", ddb_s("0123456789abcdef0123456789abcdef"),
				   ":at", ddb_n(at_ms));
	assert_int_equal(dyn_update(f->m->impl, f->tables[0], pk, "META", "SET #d = :t, #da = :at",
				    NULL, names, values, true, NULL),
			 0);
	json_decref(names);
	json_decref(values);
}

static void test_dynamodb_a_dead_deleters_mark_goes(void **state)
{
	struct fixture *f = *state;
	if (!ddb_on) {
		print_message("  (DynamoDB only)\n");
		return;
	}
	struct efs_bucket_info b = bucket("orphaned", "alice"), got;
	char file_id[EFS_ID_MAX + 1], chunk_id[65];
	assert_int_equal(efs_meta_bucket_create(f->m, &b), 0);
	make_file(f, "alice", 9, file_id, chunk_id);
	struct efs_object_info *o = object("orphaned", "k", file_id);
	set_mark(f, "orphaned", efs_now_ms());
	assert_int_equal(efs_meta_object_put(f->m, o, f->now), -EAGAIN);
	set_mark(f, "orphaned", efs_now_ms() - DYN_RELEASE_STALE_MS - 1000);
	assert_int_equal(efs_meta_object_put(f->m, o, f->now), 0);
	assert_int_equal(efs_meta_bucket_delete(f->m, "orphaned", "alice"), -ENOTEMPTY);
	assert_int_equal(efs_meta_object_delete(f->m, "orphaned", "k", f->now), 0);
	/* a fresh mark of another (dead) deleter: the delete takes it over */
	set_mark(f, "orphaned", efs_now_ms());
	assert_int_equal(efs_meta_bucket_delete(f->m, "orphaned", "alice"), 0);
	assert_int_equal(efs_meta_bucket_get(f->m, "orphaned", &got), -ENOENT);
	assert_true(is_garbage(f, chunk_id));
	free(o);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_bucket_names_are_unique_across_owners),
	    T(test_a_bucket_with_an_object_is_not_deleted),
	    T(test_overwrite_releases_the_old_file_in_the_same_step),
	    T(test_deleting_the_file_deletes_the_object),
	    T(test_file_and_object_in_one_step),
	    T(test_object_read_joins_bucket_object_and_file),
	    T(test_conditional_put_checks_the_current_row),
	    T(test_copy_shares_the_chunks_and_counts_them),
	    T(test_copy_counts_a_repeated_chunk_twice),
	    T(test_put_if_unmodified_since),
	    T(test_copy_from_a_file),
	    T(test_copy_of_a_source_deleted_meanwhile_is_refused),
	    T(test_copy_of_a_large_object),
	    T(test_dynamodb_copy_leftovers),
	    T(test_listing_in_byte_order_by_prefix_and_after),
	    T(test_multipart_parts_hold_their_chunks_and_complete_moves_them),
	    T(test_part_layout),
	    T(test_multipart_complete_from_a_copy_session),
	    T(test_dynamodb_multipart_complete_leftovers),
	    T(test_bucket_delete_aborts_its_uploads),
	    T(test_upload_listing_order_and_markers),
	    T(test_two_masters_overwriting_one_key),
	    T(test_two_masters_racing_for_a_bucket),
	    T(test_two_masters_sending_one_part),
	    T(test_dynamodb_put_during_a_bucket_delete),
	    T(test_dynamodb_a_dead_deleters_mark_goes),
	};
#undef T
	efs_log_set_level(getenv("T_DEBUG") ? EFS_LOG_DEBUG : EFS_LOG_WARN);
	int failed = cmocka_run_group_tests_name("meta_s3_sqlite", tests, NULL, NULL);
	const char *url = getenv("ECHOFS_TEST_PG_URL");
	if (url && *url) {
		pg_url = url;
		failed += cmocka_run_group_tests_name("meta_s3_postgres", tests, NULL, NULL);
	} else {
		print_message("meta_s3_postgres: not run (ECHOFS_TEST_PG_URL is not set)\n");
	}
	pg_url = NULL;
	const char *ddb = getenv("ECHOFS_TEST_DYNAMODB");
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
		failed += cmocka_run_group_tests_name("meta_s3_dynamodb", tests, NULL, NULL);
	} else {
		print_message("meta_s3_dynamodb: not run (ECHOFS_TEST_DYNAMODB is not set)\n");
	}
	return failed;
}
