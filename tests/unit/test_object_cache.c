/* SPDX-License-Identifier: MIT */
/* test_object_cache.c - unit tests of the S3 object cache
 * (src/master/object_cache.h): the zero-run squeezing gives back exactly
 * the struct it was given; an entry is handed out only at the removal
 * count it was stored at, and dropped once the count moved; chunk ids are
 * kept only for the entry's file at its count; two keys of one slot; the
 * byte cap; and, on a real SQLite store, that the calls beyond file
 * removals that change what GetObject reads (bucket delete, storage class
 * change) move the count.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/master/object_cache.c"

#include "echofs/meta.h"
#include "echofs/util.h"

#include <ftw.h>
#include <stdio.h>
#include <unistd.h>

/* An object read as the store would answer it, zeroed first (as
 * efs_s3_get_object does); @tag varies the headers. */
static struct efs_object_read *object_of(const char *bucket, const char *key, unsigned tag)
{
	struct efs_object_read *x = calloc(1, sizeof(*x));
	assert_non_null(x);
	efs_strlcpy(x->bucket_owner, "alice", sizeof(x->bucket_owner));
	efs_strlcpy(x->object.bucket, bucket, sizeof(x->object.bucket));
	efs_strlcpy(x->object.key, key, sizeof(x->object.key));
	snprintf(x->object.file_id, sizeof(x->object.file_id), "%032x", tag);
	x->object.size = 4096;
	snprintf(x->object.etag, sizeof(x->object.etag), "%032x", tag * 7u);
	efs_strlcpy(x->object.content_type, "text/plain", sizeof(x->object.content_type));
	snprintf(x->object.user_meta, sizeof(x->object.user_meta), "{\"tag\":\"%u\"}", tag);
	x->object.last_modified_ms = 1700000000000 + tag;
	x->file = (struct efs_file_info){.size = 4096,
					 .chunk_size = 4096,
					 .chunk_count = 1,
					 .replication = 3,
					 .created_at_ms = 1700000000000};
	efs_strlcpy(x->file.file_id, x->object.file_id, sizeof(x->file.file_id));
	efs_strlcpy(x->file.owner, "alice", sizeof(x->file.owner));
	efs_strlcpy(x->file.s3_bucket, bucket, sizeof(x->file.s3_bucket));
	efs_strlcpy(x->file.s3_key, key, sizeof(x->file.s3_key));
	return x;
}

static void round_trip(const unsigned char *src, size_t len)
{
	unsigned char *squeezed = malloc(SQUEEZE_BOUND(len)), *back = malloc(len + 1);
	assert_non_null(squeezed);
	assert_non_null(back);
	size_t n = squeeze(src, len, squeezed);
	assert_true(n <= SQUEEZE_BOUND(len));
	memset(back, 0xa5, len + 1);
	assert_int_equal(expand(squeezed, n, back, len), 0);
	assert_memory_equal(back, src, len);
	assert_int_equal(back[len], 0xa5); /* nothing past the end */
	/* One byte short or long is refused, never overrun. */
	if (len > 0)
		assert_int_equal(expand(squeezed, n, back, len - 1), -EINVAL);
	if (n > 0)
		assert_int_equal(expand(squeezed, n - 1, back, len), -EINVAL);
	free(squeezed);
	free(back);
}

static void test_squeeze_gives_back_the_bytes(void **state)
{
	(void)state;
	unsigned char buf[4096] = {0};
	round_trip(buf, 0);
	memset(buf, 0, sizeof(buf));
	round_trip(buf, sizeof(buf)); /* all zeros */
	memset(buf, 'x', sizeof(buf));
	round_trip(buf, sizeof(buf)); /* no zeros */
	/* zero runs of every length around SQUEEZE_MIN_RUN, at the ends too */
	for (size_t run = 1; run <= 2 * SQUEEZE_MIN_RUN; run++) {
		memset(buf, 'y', sizeof(buf));
		for (size_t at = 0; at + run <= sizeof(buf); at += run + 3)
			memset(buf + at, 0, run);
		round_trip(buf, sizeof(buf));
		round_trip(buf, 100 + run);
	}
	/* pseudo-random bytes, a third of them zero */
	uint32_t seed = 12345;
	for (size_t i = 0; i < sizeof(buf); i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (seed >> 16) % 3 == 0 ? 0 : (unsigned char)(seed >> 8);
	}
	round_trip(buf, sizeof(buf));
}

/* An object's headers squeeze to a small fraction of the struct. */
static void test_entry_is_small(void **state)
{
	(void)state;
	struct efs_object_cache *c = NULL;
	struct efs_object_read *x = object_of("b", "k", 1);
	size_t entries, bytes;
	assert_int_equal(efs_object_cache_new(&c), 0);
	efs_object_cache_put(c, x, 5);
	efs_object_cache_usage(c, &entries, &bytes);
	assert_int_equal(entries, 1);
	assert_true(bytes < sizeof(*x) / 8);
	efs_object_cache_free(c);
	free(x);
}

static void test_handed_out_only_at_its_count(void **state)
{
	(void)state;
	struct efs_object_cache *c = NULL;
	struct efs_object_read *x = object_of("bucket", "dir/key", 2);
	struct efs_object_read *got = malloc(sizeof(*got));
	struct efs_reader_known known = {.count = 9};
	size_t entries, bytes;
	assert_non_null(got);
	assert_int_equal(efs_object_cache_new(&c), 0);
	assert_int_equal(efs_object_cache_get(c, "bucket", "dir/key", 7, got, &known), -ENOENT);
	assert_int_equal(known.count, 9); /* untouched on a miss */

	efs_object_cache_put(c, x, 7);
	memset(got, 0xee, sizeof(*got));
	assert_int_equal(efs_object_cache_get(c, "bucket", "dir/key", 7, got, &known), 0);
	assert_memory_equal(got, x, sizeof(*x));
	assert_int_equal(known.count, 0); /* no ids learnt */
	assert_int_equal(efs_object_cache_get(c, "bucket", "dir/key", 7, got, NULL), 0);
	/* another bucket, another key */
	assert_int_equal(efs_object_cache_get(c, "bucket2", "dir/key", 7, got, NULL), -ENOENT);
	assert_int_equal(efs_object_cache_get(c, "bucket", "dir/ke", 7, got, NULL), -ENOENT);

	/* The count moved: stale, and dropped. */
	assert_int_equal(efs_object_cache_get(c, "bucket", "dir/key", 8, got, NULL), -ENOENT);
	efs_object_cache_usage(c, &entries, &bytes);
	assert_int_equal(entries, 0);
	assert_int_equal(bytes, 0);
	assert_int_equal(efs_object_cache_get(c, "bucket", "dir/key", 7, got, NULL), -ENOENT);

	efs_object_cache_put(c, x, 8);
	efs_object_cache_forget(c, "bucket", "dir/key");
	assert_int_equal(efs_object_cache_get(c, "bucket", "dir/key", 8, got, NULL), -ENOENT);
	efs_object_cache_free(c);
	free(x);
	free(got);
}

static void test_ids_kept_for_the_entry_file_at_its_count(void **state)
{
	(void)state;
	struct efs_object_cache *c = NULL;
	struct efs_object_read *x = object_of("b", "k", 3);
	struct efs_object_read *got = malloc(sizeof(*got));
	struct efs_reader_known learned = {.count = 1, .removals = 4}, known;
	assert_non_null(got);
	efs_strlcpy(learned.chunk[0].chunk_id, "ab", sizeof(learned.chunk[0].chunk_id));
	learned.chunk[0].size = 4096;
	assert_int_equal(efs_object_cache_new(&c), 0);
	efs_object_cache_put(c, x, 4);

	/* read at another count, or for another file: not kept */
	learned.removals = 5;
	efs_object_cache_learn(c, "b", "k", x->file.file_id, &learned);
	learned.removals = 4;
	efs_object_cache_learn(c, "b", "k", "00000000000000000000000000000bad", &learned);
	assert_int_equal(efs_object_cache_get(c, "b", "k", 4, got, &known), 0);
	assert_int_equal(known.count, 0);

	efs_object_cache_learn(c, "b", "k", x->file.file_id, &learned);
	assert_int_equal(efs_object_cache_get(c, "b", "k", 4, got, &known), 0);
	assert_int_equal(known.count, 1);
	assert_string_equal(known.chunk[0].chunk_id, "ab");
	assert_int_equal(known.chunk[0].size, 4096);
	/* A new put of the key (another read) starts without ids. */
	efs_object_cache_put(c, x, 4);
	assert_int_equal(efs_object_cache_get(c, "b", "k", 4, got, &known), 0);
	assert_int_equal(known.count, 0);
	efs_object_cache_free(c);
	free(x);
	free(got);
}

/* Two keys of one slot: the later replaces the earlier. */
static void test_one_slot_two_keys(void **state)
{
	(void)state;
	struct efs_object_cache *c = NULL;
	char other[32];
	size_t name_len, slot = slot_of("b", "key-0", &name_len);
	bool found = false;
	for (unsigned i = 1; i < 10 * EFS_OBJECT_CACHE_SLOTS && !found; i++) {
		snprintf(other, sizeof(other), "key-%u", i);
		found = slot_of("b", other, &name_len) == slot;
	}
	assert_true(found);
	struct efs_object_read *a = object_of("b", "key-0", 1), *b = object_of("b", other, 2);
	struct efs_object_read *got = malloc(sizeof(*got));
	assert_non_null(got);
	assert_int_equal(efs_object_cache_new(&c), 0);
	efs_object_cache_put(c, a, 1);
	efs_object_cache_put(c, b, 1);
	assert_int_equal(efs_object_cache_get(c, "b", "key-0", 1, got, NULL), -ENOENT);
	assert_int_equal(efs_object_cache_get(c, "b", other, 1, got, NULL), 0);
	assert_memory_equal(got, b, sizeof(*b));
	efs_object_cache_free(c);
	free(a);
	free(b);
	free(got);
}

/* Entries with every header full: the cap holds. */
static void test_bytes_capped(void **state)
{
	(void)state;
	struct efs_object_cache *c = NULL;
	struct efs_object_read *x = object_of("b", "k", 1);
	size_t entries, bytes;
	memset(x->object.user_meta, 'm', sizeof(x->object.user_meta) - 1);
	memset(x->object.content_disposition, 'd', sizeof(x->object.content_disposition) - 1);
	memset(x->object.cache_control, 'c', sizeof(x->object.cache_control) - 1);
	assert_int_equal(efs_object_cache_new(&c), 0);
	for (unsigned i = 0; i < EFS_OBJECT_CACHE_SLOTS; i++) {
		snprintf(x->object.key, sizeof(x->object.key), "key-%u", i);
		efs_object_cache_put(c, x, 1);
	}
	efs_object_cache_usage(c, &entries, &bytes);
	assert_true(bytes <= EFS_OBJECT_CACHE_BYTES);
	assert_true(bytes > EFS_OBJECT_CACHE_BYTES / 2);
	assert_true(entries < EFS_OBJECT_CACHE_SLOTS);
	efs_object_cache_free(c);
	free(x);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

/* A bucket delete and a storage class change move the count (besides
 * every file removal, test_file_cache.c); reads do not. */
static void test_sqlite_counts_object_writes(void **state)
{
	(void)state;
	char dir[64], err[256];
	struct efs_meta *meta;
	struct efs_bucket_info b = {.created_at_ms = 1};
	uint64_t before, after;
	snprintf(dir, sizeof(dir), "/tmp/efs-object-cache-XXXXXX");
	assert_non_null(mkdtemp(dir));
	assert_int_equal(efs_meta_open(NULL, dir, &meta, err, sizeof(err)), 0);
	efs_strlcpy(b.name, "counted", sizeof(b.name));
	efs_strlcpy(b.owner, "alice", sizeof(b.owner));
	efs_strlcpy(b.region, "us-east-1", sizeof(b.region));
	assert_int_equal(efs_meta_bucket_create(meta, &b), 0);
	assert_int_equal(efs_meta_removals(meta, &before), 0);
	struct efs_object_read *x = calloc(1, sizeof(*x));
	assert_non_null(x);
	assert_int_equal(efs_meta_object_read(meta, "counted", "nokey", x), -ENOKEY);
	assert_int_equal(efs_meta_removals(meta, &after), 0);
	assert_int_equal(after, before);
	assert_int_equal(efs_meta_bucket_delete(meta, "counted", "alice"), 0);
	assert_int_equal(efs_meta_removals(meta, &after), 0);
	assert_int_equal(after, before + 1);
	(void)efs_meta_file_set_policy(meta, "00000000000000000000000000000bad", "replicas:2", 2);
	assert_int_equal(efs_meta_removals(meta, &after), 0);
	assert_int_equal(after, before + 2);
	free(x);
	efs_meta_close(meta);
	nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_squeeze_gives_back_the_bytes),
	    cmocka_unit_test(test_entry_is_small),
	    cmocka_unit_test(test_handed_out_only_at_its_count),
	    cmocka_unit_test(test_ids_kept_for_the_entry_file_at_its_count),
	    cmocka_unit_test(test_one_slot_two_keys),
	    cmocka_unit_test(test_bytes_capped),
	    cmocka_unit_test(test_sqlite_counts_object_writes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
