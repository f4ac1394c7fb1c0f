/* SPDX-License-Identifier: MIT */
/* test_file_cache.c - unit tests of the chunk ids a master keeps with a
 * small file's cached row (src/master/cache.h, src/master/download.h), on
 * a real SQLite store: the store's removal count, a reader learning a
 * file's chunk ids from the chunk list and serving cached chunks by them
 * without reading that list again, and the file cache handing the ids
 * out only while no file was removed since they were read.
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
#include "master/cache.h"
#include "master/chunk_cache.h"
#include "master/download.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WORKERS 3
static const char *const worker_ids[WORKERS] = {"w1", "w2", "w3"};

struct fixture {
	char dir[64];
	struct efs_meta *meta;
	struct efs_cache *cache;
	struct efs_chunk_cache *chunk_cache;
	_Atomic uint64_t lists_read;
	struct efs_reader_source src;
	struct efs_chunk_info chunk;
	struct efs_file_info file;
	char bytes[1000];
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

/* A one-chunk file of 1000 bytes in a fresh SQLite store, its chunk in
 * the chunk cache (as a download that verified it would leave it). */
static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/efs-file-cache-XXXXXX");
	if (!mkdtemp(f->dir) || efs_meta_open(NULL, f->dir, &f->meta, err, sizeof(err)) < 0)
		return -1;
	for (size_t i = 0; i < WORKERS; i++) {
		struct efs_worker_info w;
		memset(&w, 0, sizeof(w));
		efs_strlcpy(w.worker_id, worker_ids[i], sizeof(w.worker_id));
		snprintf(w.url, sizeof(w.url), "http://127.0.0.1:%zu", 9100 + i);
		w.capacity_bytes = 1000000;
		w.free_bytes = 500000;
		w.registered_at_ms = w.last_heartbeat_ms = efs_now_ms();
		if (efs_meta_worker_register(f->meta, &w) < 0)
			return -1;
	}
	memset(f->bytes, 'k', sizeof(f->bytes));
	efs_sha256_hex(f->bytes, sizeof(f->bytes), f->chunk.chunk_id);
	f->chunk.size = f->chunk.stored_size = sizeof(f->bytes);
	snprintf(f->file.file_id, sizeof(f->file.file_id), "%032x", 0xf11eu);
	efs_strlcpy(f->file.owner, "alice", sizeof(f->file.owner));
	efs_strlcpy(f->file.name, "small.bin", sizeof(f->file.name));
	f->file.size = sizeof(f->bytes);
	efs_strlcpy(f->file.sha256, f->chunk.chunk_id, sizeof(f->file.sha256));
	f->file.chunk_size = 4096;
	f->file.chunk_count = 1;
	f->file.replication = 3;
	f->file.stored_bytes = sizeof(f->bytes);
	f->file.created_at_ms = efs_now_ms();
	if (efs_meta_file_create_single(f->meta, &f->file, &f->chunk, worker_ids, WORKERS, false,
					efs_now_ms()) < 0 ||
	    efs_cache_new(f->meta, NULL, &f->cache) < 0 ||
	    efs_chunk_cache_new(1 << 20, &f->chunk_cache) < 0)
		return -1;
	efs_chunk_cache_put(f->chunk_cache, f->chunk.chunk_id, f->bytes, sizeof(f->bytes));
	/* No chunk backend: every chunk these tests read is in the cache. */
	f->src = (struct efs_reader_source){
	    .meta = f->meta, .chunk_cache = f->chunk_cache, .chunk_lists_read = &f->lists_read};
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	efs_cache_free(f->cache);
	efs_chunk_cache_free(f->chunk_cache);
	efs_meta_close(f->meta);
	nftw(f->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* Downloads the whole file through a reader told @known (NULL: nothing);
 * checks the bytes; what the reader learnt goes to @learned (count 0:
 * nothing). */
static void download(struct fixture *f, const struct efs_reader_known *known,
		     struct efs_reader_known *learned)
{
	struct efs_reader *rd;
	struct efs_buf whole;
	size_t offset, len;
	assert_int_equal(efs_reader_new(&f->src, &f->file, 0, f->file.size - 1, &rd), 0);
	efs_reader_know(rd, known);
	assert_int_equal(efs_reader_prefetch(rd), 0);
	learned->count = 0;
	(void)efs_reader_learned(rd, learned);
	efs_buf_init(&whole, SIZE_MAX);
	assert_true(efs_reader_take(rd, &whole, &offset, &len));
	assert_int_equal(offset, 0);
	assert_int_equal(len, sizeof(f->bytes));
	assert_memory_equal(whole.data + offset, f->bytes, len);
	efs_buf_release(&whole);
	efs_reader_free(rd);
}

/* SQLite counts the calls that may remove a file, after they return and
 * whatever they return; reads count nothing. */
static void test_sqlite_counts_removals(void **state)
{
	struct fixture *f = *state;
	struct efs_file_info got;
	uint64_t before, after;
	assert_int_equal(efs_meta_removals(f->meta, &before), 0);
	assert_int_equal(efs_meta_file_get(f->meta, f->file.file_id, &got), 0);
	assert_int_equal(efs_meta_removals(f->meta, &after), 0);
	assert_int_equal(after, before);
	assert_int_equal(efs_meta_file_delete(f->meta, "00000000000000000000000000000bad", "alice",
					      efs_now_ms()),
			 -ENOENT);
	assert_int_equal(efs_meta_removals(f->meta, &after), 0);
	assert_int_equal(after, before + 1);
	assert_int_equal(efs_meta_file_delete(f->meta, f->file.file_id, "alice", efs_now_ms()), 0);
	assert_int_equal(efs_meta_removals(f->meta, &after), 0);
	assert_int_equal(after, before + 2);
}

/* A reader without known ids reads the chunk list and learns the ids; a
 * reader told them takes the cached chunk without reading the list. */
static void test_reader_learns_ids_then_reads_no_list(void **state)
{
	struct fixture *f = *state;
	struct efs_reader_known learned, again;
	uint64_t removals;
	download(f, NULL, &learned);
	assert_int_equal(f->lists_read, 1);
	assert_int_equal(learned.count, 1);
	assert_string_equal(learned.chunk[0].chunk_id, f->chunk.chunk_id);
	assert_int_equal(learned.chunk[0].size, sizeof(f->bytes));
	assert_int_equal(efs_meta_removals(f->meta, &removals), 0);
	assert_int_equal(learned.removals, removals);

	download(f, &learned, &again);
	assert_int_equal(f->lists_read, 1);
	assert_int_equal(again.count, 0); /* no list read: nothing learnt */
}

/* A known id whose chunk left the cache: the list is read after all. */
static void test_known_id_not_cached_reads_the_list(void **state)
{
	struct fixture *f = *state;
	struct efs_reader_known known, learned;
	download(f, NULL, &known);
	known.chunk[0].size++; /* what a cached chunk of another size looks like */
	download(f, &known, &learned);
	assert_int_equal(f->lists_read, 2);
	assert_int_equal(learned.count, 1);
}

/* The file cache hands the ids out with the row once learnt, stops at the
 * next removal of any file (the row is still returned), and hands out
 * ids learnt after it. */
static void test_cache_hands_out_ids_until_a_removal(void **state)
{
	struct fixture *f = *state;
	struct efs_file_info got;
	struct efs_reader_known known, learned;
	known.count = 9;
	assert_int_equal(efs_cache_file_get(f->cache, f->file.file_id, &got, &known), 0);
	assert_string_equal(got.file_id, f->file.file_id);
	assert_int_equal(known.count, 0); /* row cached now, nothing learnt yet */
	download(f, NULL, &learned);
	efs_cache_file_learn(f->cache, f->file.file_id, &learned);
	assert_int_equal(efs_cache_file_get(f->cache, f->file.file_id, &got, &known), 0);
	assert_int_equal(known.count, 1);
	assert_string_equal(known.chunk[0].chunk_id, f->chunk.chunk_id);

	/* Another file's removal (here: one that did not exist). */
	assert_int_equal(efs_meta_file_delete(f->meta, "00000000000000000000000000000bad", "alice",
					      efs_now_ms()),
			 -ENOENT);
	assert_int_equal(efs_cache_file_get(f->cache, f->file.file_id, &got, &known), 0);
	assert_string_equal(got.file_id, f->file.file_id);
	assert_int_equal(known.count, 0);

	download(f, NULL, &learned);
	efs_cache_file_learn(f->cache, f->file.file_id, &learned);
	assert_int_equal(efs_cache_file_get(f->cache, f->file.file_id, &got, &known), 0);
	assert_int_equal(known.count, 1);

	/* Forgotten (a delete through this master): the row comes from the
	 * store again, without ids. */
	efs_cache_file_forget(f->cache, f->file.file_id);
	assert_int_equal(efs_cache_file_get(f->cache, f->file.file_id, &got, &known), 0);
	assert_int_equal(known.count, 0);
}

/* Ids learnt before a removal are never handed out, even when stored
 * after it (a download that read the list just before a delete). */
static void test_ids_read_before_a_removal_are_not_handed_out(void **state)
{
	struct fixture *f = *state;
	struct efs_file_info got;
	struct efs_reader_known known, learned;
	assert_int_equal(efs_cache_file_get(f->cache, f->file.file_id, &got, &known), 0);
	download(f, NULL, &learned);
	assert_int_equal(efs_meta_file_delete(f->meta, f->file.file_id, "alice", efs_now_ms()), 0);
	efs_cache_file_learn(f->cache, f->file.file_id, &learned);
	assert_int_equal(efs_cache_file_get(f->cache, f->file.file_id, &got, &known), 0);
	assert_int_equal(known.count, 0); /* the row (stale) needs the list: a 404 */
	struct efs_reader *rd;
	assert_int_equal(efs_reader_new(&f->src, &got, 0, got.size - 1, &rd), 0);
	efs_reader_know(rd, &known);
	assert_int_equal(efs_reader_prefetch(rd), -ENOENT);
	efs_reader_free(rd);
}

/* Learning for a file this master has no entry of keeps nothing. */
static void test_learn_without_an_entry_keeps_nothing(void **state)
{
	struct fixture *f = *state;
	struct efs_file_info got;
	struct efs_reader_known known, learned;
	download(f, NULL, &learned);
	efs_cache_file_learn(f->cache, f->file.file_id, &learned);
	assert_int_equal(efs_cache_file_get(f->cache, f->file.file_id, &got, &known), 0);
	assert_int_equal(known.count, 0);
	/* NULL: the caller wants the row only. */
	assert_int_equal(efs_cache_file_get(f->cache, f->file.file_id, &got, NULL), 0);
}

/* Records a one-chunk file @file_id named @name in the store (the
 * fixture's chunk, deduplicated), its row in *out. */
static void create_file(struct fixture *f, const char *file_id, const char *name,
			struct efs_file_info *out)
{
	*out = f->file;
	efs_strlcpy(out->file_id, file_id, sizeof(out->file_id));
	efs_strlcpy(out->name, name, sizeof(out->name));
	assert_int_equal(efs_meta_file_create_single(f->meta, out, &f->chunk, worker_ids, WORKERS,
						     true, efs_now_ms()),
			 0);
}

/* Whether this master's memory holds @file_id's row (peek never reads
 * the store); when it does, the row must be @want's. */
static bool held(struct fixture *f, const struct efs_file_info *want)
{
	struct efs_file_info got;
	struct efs_reader_known known;
	if (efs_cache_file_peek(f->cache, want->file_id, &got, &known) < 0)
		return false;
	assert_string_equal(got.file_id, want->file_id);
	assert_string_equal(got.owner, want->owner);
	assert_string_equal(got.name, want->name);
	assert_string_equal(got.sha256, want->sha256);
	assert_int_equal(got.size, want->size);
	assert_int_equal(got.chunk_count, want->chunk_count);
	assert_int_equal(got.replication, want->replication);
	return true;
}

/* 3,000 files read once are all held afterwards, with their names (out
 * of line: a long one, an empty one). Direct-mapped slots lost about 9%
 * of them to collisions (16,384 slots: 263 here). */
#define MANY_FILES 3000
static void test_many_files_are_all_held(void **state)
{
	struct fixture *f = *state;
	static struct efs_file_info files[MANY_FILES];
	struct efs_file_info got;
	char id[EFS_ID_MAX + 1], name[EFS_NAME_MAX + 1];
	for (size_t i = 0; i < MANY_FILES; i++) {
		snprintf(id, sizeof(id), "%032zx", 0x100000 + i);
		if (i == 1)
			memset(name, 'n', EFS_NAME_MAX), name[EFS_NAME_MAX] = '\0';
		else
			snprintf(name, sizeof(name), i == 2 ? "" : "file-%zu", i);
		create_file(f, id, name, &files[i]);
	}
	for (size_t i = 0; i < MANY_FILES; i++) {
		assert_false(held(f, &files[i]));
		assert_int_equal(efs_cache_file_get(f->cache, files[i].file_id, &got, NULL), 0);
	}
	for (size_t i = 0; i < MANY_FILES; i++)
		assert_true(held(f, &files[i]));
}

/* A full set drops its least recently used entry, not its oldest: nine
 * files of one set, the first read again before the ninth comes in. */
static void test_a_full_set_drops_its_least_recently_used(void **state)
{
	struct fixture *f = *state;
	struct efs_file_info files[EFS_FILE_CACHE_WAYS + 1], got;
	char id[EFS_ID_MAX + 1];
	size_t n = 0, set = SIZE_MAX;
	for (unsigned i = 0; n < EFS_FILE_CACHE_WAYS + 1; i++) {
		snprintf(id, sizeof(id), "%032x", 0x200000 + i);
		if (set == SIZE_MAX)
			set = efs_cache_file_set(id);
		if (efs_cache_file_set(id) == set)
			create_file(f, id, "same-set", &files[n++]);
	}
	for (size_t i = 0; i < EFS_FILE_CACHE_WAYS; i++)
		assert_int_equal(efs_cache_file_get(f->cache, files[i].file_id, &got, NULL), 0);
	assert_true(held(f, &files[0])); /* a hit: now the most recently used */
	assert_int_equal(efs_cache_file_get(f->cache, files[EFS_FILE_CACHE_WAYS].file_id, &got,
					    NULL),
			 0);
	assert_true(held(f, &files[EFS_FILE_CACHE_WAYS]));
	assert_true(held(f, &files[0]));
	assert_false(held(f, &files[1]));
	for (size_t i = 2; i < EFS_FILE_CACHE_WAYS; i++)
		assert_true(held(f, &files[i]));

	/* A forgotten entry's way takes the next file; the others stay. */
	efs_cache_file_forget(f->cache, files[3].file_id);
	assert_false(held(f, &files[3]));
	assert_int_equal(efs_cache_file_get(f->cache, files[1].file_id, &got, NULL), 0);
	for (size_t i = 0; i < EFS_FILE_CACHE_WAYS + 1; i++)
		assert_true(i == 3 ? !held(f, &files[i]) : held(f, &files[i]));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_sqlite_counts_removals, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reader_learns_ids_then_reads_no_list, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_known_id_not_cached_reads_the_list, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_cache_hands_out_ids_until_a_removal, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_ids_read_before_a_removal_are_not_handed_out,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_learn_without_an_entry_keeps_nothing, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_many_files_are_all_held, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_full_set_drops_its_least_recently_used, setup,
					    teardown),
	};
	efs_log_set_level(EFS_LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
