/* SPDX-License-Identifier: MIT */
/* test_store_recovery.c - review findings on the worker's volume store:
 * scenarios where a deleted chunk comes back after compaction + restart,
 * an acknowledged copy is hidden after a crash or a quarantine, the replay
 * miscounts, or a volume whose removal failed is forgotten. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "echofs/hash.h"
#include "echofs/util.h"
#include "worker/store.h"

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>

struct fixture {
	char dir[64];
	struct efs_store *store;
	struct efs_buf buf;
};

static uint64_t volume_bytes = 1 << 20;

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	return remove(path);
}

static int open_store(struct fixture *f)
{
	char err[256] = "";
	struct efs_store_options opt = {.volume_bytes = volume_bytes};
	return efs_store_open_with(f->dir, &opt, &f->store, err, sizeof(err));
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	volume_bytes = 1 << 20; /* a test may have changed it */
	snprintf(f->dir, sizeof(f->dir), "/tmp/efs-review-XXXXXX");
	if (!mkdtemp(f->dir) || open_store(f) < 0)
		return -1;
	efs_buf_init(&f->buf, EFS_STORE_MAX_CHUNK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	efs_store_close(f->store);
	efs_buf_release(&f->buf);
	nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void reopen(struct fixture *f)
{
	efs_store_close(f->store);
	f->store = NULL;
	assert_int_equal(open_store(f), 0);
}

static void chunk_id(unsigned n, char id[65])
{
	char label[32];
	int len = snprintf(label, sizeof(label), "review-%u", n);
	efs_sha256_hex(label, (size_t)len, id);
}

static void put(struct efs_store *s, const char *id, const void *data, size_t len)
{
	struct efs_store_writer *w = NULL;
	assert_int_equal(efs_store_write_begin(s, id, len, 0, &w), 0);
	assert_int_equal(efs_store_write(w, data, len), 0);
	assert_int_equal(efs_store_write_commit(w, true, efs_crc32c(0, data, len)), 0);
}

static void compact_all(struct efs_store *s)
{
	int r;
	while ((r = efs_store_compact(s)) > 0)
		;
	assert_int_equal(r, 0);
}

/* A chunk stored twice (the worker's PUT always appends a new record: a
 * re-upload, a repair, a retried replica) and then deleted: the tombstone
 * names only the volume of the newest record. When that volume is
 * compacted away, the tombstone is dropped although the older record of
 * the same chunk is still committed in an older volume: after a restart
 * the deleted chunk is back (and its space is never reclaimed). */
static void test_delete_after_rewrite_survives_compaction_and_restart(void **state)
{
	struct fixture *f = *state;
	static unsigned char data[1000], filler[300 * 1024];
	char x[65], keep[65];
	uint32_t flags;

	memset(data, 'x', sizeof(data));
	memset(filler, 'f', sizeof(filler));
	chunk_id(1, x);
	chunk_id(2, keep);

	/* volume 1: X, plus enough live data that volume 1 is never compacted */
	put(f->store, x, data, sizeof(data));
	put(f->store, keep, filler, sizeof(filler));
	reopen(f);
	/* volume 2: X again, then deleted (the tombstone targets volume 2) */
	put(f->store, x, data, sizeof(data));
	assert_int_equal(efs_store_delete(f->store, x, 0), 0);
	assert_int_equal(efs_store_get(f->store, x, &f->buf, &flags), -ENOENT);
	reopen(f);
	assert_int_equal(efs_store_get(f->store, x, &f->buf, &flags), -ENOENT);
	/* volume 2 is small: merged away, and its tombstone with it */
	compact_all(f->store);
	assert_int_equal(efs_store_get(f->store, x, &f->buf, &flags), -ENOENT);
	reopen(f);
	/* the delete was acknowledged: X must stay deleted */
	assert_int_equal(efs_store_get(f->store, x, &f->buf, &flags), -ENOENT);
}

/* The same without restarts in between, by sealing on size: X in volume
 * 1, X rewritten in volume 2 and deleted there; volume 2 becomes half
 * dead and is compacted. */
static void test_delete_after_rewrite_no_restart_between(void **state)
{
	struct fixture *f = *state;
	static unsigned char data[20000];
	char x[65], id[65];
	uint32_t flags;

	volume_bytes = 64 * 1024;
	reopen(f);
	memset(data, 'y', sizeof(data));
	chunk_id(10, x);
	put(f->store, x, data, sizeof(data)); /* volume 1 */
	for (unsigned i = 11; i < 13; i++) {  /* volume 1 stays mostly live */
		chunk_id(i, id);
		put(f->store, id, data, sizeof(data));
	}
	put(f->store, x, data, sizeof(data)); /* does not fit: volume 2 */
	assert_int_equal(efs_store_delete(f->store, x, 0), 0);
	for (unsigned i = 13; i < 15; i++) {
		chunk_id(i, id);
		put(f->store, id, data, sizeof(data));
		assert_int_equal(efs_store_delete(f->store, id, 0), 0);
	}
	chunk_id(15, id);
	put(f->store, id, data, sizeof(data)); /* volume 3; volume 2 is sealed and dead */
	compact_all(f->store);
	assert_int_equal(efs_store_get(f->store, x, &f->buf, &flags), -ENOENT);
	reopen(f);
	assert_int_equal(efs_store_get(f->store, x, &f->buf, &flags), -ENOENT);
}

/* A rewrite of a chunk the worker already holds (acknowledged, durable),
 * cut by a power failure before its group fdatasync: header, payload and
 * trailer were all issued with no barrier between them, so the disk may
 * hold the new trailer but not all of the new payload. Simulated here by
 * a run that exits without closing the store (a clean close syncs and
 * records that no volume can hold a torn record), then damaging the new
 * record's payload. The replay trusted the trailer (it
 * never checks the payload CRC), so the torn record wins over the older,
 * good one; the first read quarantines it and appends a tombstone, and
 * the acknowledged copy is gone from this worker for good. */
static void flip(const char *path, off_t offset)
{
	unsigned char b;
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, offset), 1);
	b ^= 0xff;
	assert_int_equal(pwrite(fd, &b, 1, offset), 1);
	close(fd);
}

static void test_torn_rewrite_hides_the_acknowledged_copy(void **state)
{
	struct fixture *f = *state;
	static unsigned char data[5000], filler[300 * 1024];
	char x[65], keep[65], path[PATH_MAX];
	uint32_t flags;
	int status;

	memset(data, 'z', sizeof(data));
	memset(filler, 'f', sizeof(filler));
	chunk_id(20, x);
	chunk_id(21, keep);
	put(f->store, x, data, sizeof(data)); /* acknowledged: volume 1 */
	put(f->store, keep, filler, sizeof(filler));
	reopen(f);
	efs_store_close(f->store);
	f->store = NULL;
	/* A run that crashes (exits without closing the store) right after
	 * the rewrite: volume 2, offset 0. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (open_store(f) < 0)
			_exit(1);
		struct efs_store_writer *w = NULL;
		if (efs_store_write_begin(f->store, x, sizeof(data), 0, &w) < 0 ||
		    efs_store_write(w, data, sizeof(data)) < 0 ||
		    efs_store_write_commit(w, true, efs_crc32c(0, data, sizeof(data))) < 0)
			_exit(2);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* the crash state: volume 2's trailer on disk, a payload block not */
	snprintf(path, sizeof(path), "%s/volumes/%010u.vol", f->dir, 2u);
	flip(path, 96 + 4096 + 10);
	assert_int_equal(open_store(f), 0);
	/* the acknowledged copy in volume 1 is intact and should be served */
	int r = efs_store_get(f->store, x, &f->buf, &flags);
	if (r != 0)
		print_error("get after the torn rewrite: %d (volume 1 still holds a good copy)\n",
			    r);
	assert_int_equal(r, 0);
	assert_memory_equal(f->buf.data, data, sizeof(data));
	/* the torn record was taken back on disk: it does not win again after
	 * a clean restart (when volumes are no longer checked) */
	reopen(f);
	assert_int_equal(efs_store_get(f->store, x, &f->buf, &flags), 0);
	assert_memory_equal(f->buf.data, data, sizeof(data));
}

/* Damage found by a read after a clean shutdown (bit rot, not a crash):
 * the damaged record is quarantined, and only that record: an older good
 * copy of the chunk is served again after a restart, where a tombstone
 * would have hidden it for good. */
static void test_quarantine_spares_an_older_good_copy(void **state)
{
	struct fixture *f = *state;
	static unsigned char data[5000], filler[300 * 1024];
	char x[65], keep[65], path[PATH_MAX];
	uint32_t flags;

	memset(data, 'q', sizeof(data));
	memset(filler, 'f', sizeof(filler));
	chunk_id(25, x);
	chunk_id(26, keep);
	put(f->store, x, data, sizeof(data)); /* volume 1 */
	put(f->store, keep, filler, sizeof(filler));
	reopen(f);
	put(f->store, x, data, sizeof(data)); /* volume 2, offset 0 */
	reopen(f);
	snprintf(path, sizeof(path), "%s/volumes/%010u.vol", f->dir, 2u);
	flip(path, 96 + 100);
	assert_int_equal(efs_store_get(f->store, x, &f->buf, &flags), -EBADMSG);
	assert_int_equal(efs_store_get(f->store, x, &f->buf, &flags), -ENOENT);
	reopen(f);
	assert_int_equal(efs_store_get(f->store, x, &f->buf, &flags), 0);
	assert_memory_equal(f->buf.data, data, sizeof(data));
}

/* Two writes of one chunk whose commits land out of order: A reserves in
 * volume 1, B reserves in volume 2 and commits first, A commits last and
 * wins. The delete's tombstone (volume 3) must also cover B's older record
 * in volume 2, a volume above the newest record's: once volume 1 and then
 * the tombstone's volume are compacted, the chunk must stay deleted. */
static void test_delete_covers_an_older_record_in_a_newer_volume(void **state)
{
	struct fixture *f = *state;
	static unsigned char data[20000];
	char x[65], f1[65], f2[65], k[65];
	struct efs_store_writer *a = NULL;
	uint32_t flags;

	volume_bytes = 64 * 1024;
	reopen(f);
	memset(data, 'o', sizeof(data));
	chunk_id(40, x);
	chunk_id(41, f1);
	chunk_id(42, f2);
	assert_int_equal(efs_store_write_begin(f->store, x, sizeof(data), 0, &a), 0); /* vol 1 */
	assert_int_equal(efs_store_write(a, data, sizeof(data)), 0);
	put(f->store, f1, data, sizeof(data)); /* volume 1 */
	put(f->store, f2, data, sizeof(data)); /* volume 1: full */
	put(f->store, x, data, sizeof(data));  /* B: volume 2 */
	for (unsigned i = 43; i < 45; i++) {   /* volume 2 stays live */
		chunk_id(i, k);
		put(f->store, k, data, sizeof(data));
	}
	chunk_id(45, k);
	put(f->store, k, data, 5000); /* volume 2 has no room for a tombstone */
	assert_int_equal(efs_store_write_commit(a, true, efs_crc32c(0, data, sizeof(data))), 0);
	assert_int_equal(efs_store_delete(f->store, x, 0), 0); /* volume 3 */
	assert_int_equal(efs_store_delete(f->store, f1, 0), 0);
	assert_int_equal(efs_store_delete(f->store, f2, 0), 0);
	compact_all(f->store); /* volume 1 (all dead) goes */
	assert_int_equal(efs_store_get(f->store, x, &f->buf, &flags), -ENOENT);
	reopen(f);
	compact_all(f->store); /* volume 3 (tombstones only, small) goes */
	reopen(f);
	int r = efs_store_get(f->store, x, &f->buf, &flags);
	if (r == 0)
		print_error("the deleted chunk is back\n");
	assert_int_equal(r, -ENOENT);
}

/* The slot a chunk id hashes to in an index of 1024 slots (the smallest),
 * as chunk_index.c computes it. */
static size_t home_slot(const char *id)
{
	uint8_t key[32];
	uint64_t h = 0;
	for (int i = 0; i < 32; i++) {
		unsigned hi, lo;
		sscanf(id + 2 * i, "%1x%1x", &hi, &lo);
		key[i] = (uint8_t)(hi << 4 | lo);
	}
	for (int i = 0; i < 32; i += 8) {
		uint64_t word;
		memcpy(&word, key + i, 8);
		h = (h ^ word) * 0x9e3779b97f4a7c15ull;
	}
	return (size_t)(h >> 17) & 1023;
}

/* load_volumes walks the index and removes the replayed tombstones as it
 * goes, "looking at *pos again" after a remove. But the backward shift of
 * a remove can pull an entry from the start of the table (a probe run
 * that wraps around the end) into the last slots, which the walk has
 * already passed: that entry is counted twice. Its bytes and its volume's
 * live bytes are inflated; the volume can then never be compacted (live
 * stays above 0 after every record is gone: -EAGAIN, stuck), so the space
 * of deleted chunks is never reclaimed, and capacity is under-reported. */
static void test_reopen_counts_a_wrapped_entry_once(void **state)
{
	struct fixture *f = *state;
	unsigned char data[1000];
	char a[65], b[65], id[65];
	struct efs_store_stats st;
	unsigned found = 0;

	for (unsigned n = 1000; found < 2; n++) {
		chunk_id(n, id);
		if (home_slot(id) == 1023)
			memcpy(found++ ? b : a, id, 65);
	}
	memset(data, 'w', sizeof(data));
	put(f->store, a, data, sizeof(data)); /* slot 1023 at the replay */
	put(f->store, b, data, sizeof(data)); /* wraps: slot 0 */
	assert_int_equal(efs_store_delete(f->store, a, 0), 0);
	reopen(f);
	efs_store_stats(f->store, &st);
	assert_int_equal(st.chunk_count, 1);
	if (st.bytes != sizeof(data))
		print_error("after reopen: %llu bytes for one chunk of %zu\n",
			    (unsigned long long)st.bytes, sizeof(data));
	assert_int_equal(st.bytes, sizeof(data));
}

/* The consequence: once both chunks are deleted, the volume still counts
 * one record as live; compaction fails with -EAGAIN and marks it stuck,
 * and its file is never removed. */
static void test_wrapped_entry_volume_is_reclaimed(void **state)
{
	struct fixture *f = *state;
	unsigned char data[1000];
	char a[65], b[65], id[65];
	unsigned found = 0;

	for (unsigned n = 1000; found < 2; n++) {
		chunk_id(n, id);
		if (home_slot(id) == 1023)
			memcpy(found++ ? b : a, id, 65);
	}
	memset(data, 'w', sizeof(data));
	put(f->store, a, data, sizeof(data));
	put(f->store, b, data, sizeof(data));
	assert_int_equal(efs_store_delete(f->store, a, 0), 0);
	reopen(f);
	assert_int_equal(efs_store_delete(f->store, b, 0), 0);
	int r;
	while ((r = efs_store_compact(f->store)) > 0)
		;
	if (r != 0)
		print_error("compaction: %d\n", r);
	assert_int_equal(r, 0);
	struct efs_store_volume_stats vs;
	efs_store_volume_stats(f->store, &vs);
	if (vs.live_bytes != 0)
		print_error("nothing is stored, yet %llu live bytes in %llu volumes\n",
			    (unsigned long long)vs.live_bytes, (unsigned long long)vs.volume_count);
	assert_int_equal(vs.live_bytes, 0);
}

/* ---- compaction racing a delete --------------------------------------- */

/* pread64 of this program: the store's calls come here (the library is
 * linked statically), so a test can hold compaction in the middle of
 * copying a record. Armed for one read of exactly hook_len bytes. */
static pthread_mutex_t hook_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hook_cond = PTHREAD_COND_INITIALIZER;
static size_t hook_len;
static int hook_stage; /* 0 idle, 1 armed, 2 a read is held, 3 released */

ssize_t pread64(int fd, void *buf, size_t n, off64_t off)
{
	pthread_mutex_lock(&hook_lock);
	if (hook_stage == 1 && n == hook_len) {
		hook_stage = 2;
		pthread_cond_broadcast(&hook_cond);
		while (hook_stage == 2)
			pthread_cond_wait(&hook_cond, &hook_lock);
	}
	pthread_mutex_unlock(&hook_lock);
	return syscall(SYS_pread64, fd, buf, n, off);
}

static void *compact_thread(void *arg)
{
	static int r;
	r = efs_store_compact(arg);
	return &r;
}

/* Compaction copies X (reserve, payload, trailer; the lock is not held
 * while copying); a delete of X lands in between. The delete's tombstone
 * names X's old volume (the index still points there), the copy is written
 * with its trailer anyway (a committed record, only its index update is
 * skipped), and the old volume is removed. From then on the tombstone
 * counts as not needed; once its volume is compacted (here: a small one
 * after a restart) nothing shadows the copy, and X is back. */
static void test_delete_during_compaction_copy_stays_deleted(void **state)
{
	struct fixture *f = *state;
	static unsigned char x_data[4000], big[61216];
	char x[65], f1[65], l[65];
	uint32_t flags;
	pthread_t t;
	void *ret;

	volume_bytes = 64 * 1024;
	reopen(f);
	memset(x_data, 'x', sizeof(x_data));
	memset(big, 'b', sizeof(big));
	chunk_id(30, x);
	chunk_id(31, f1);
	chunk_id(32, l);
	put(f->store, x, x_data, sizeof(x_data));		/* volume 1 */
	put(f->store, f1, big, 50000);				/* volume 1 */
	assert_int_equal(efs_store_delete(f->store, f1, 0), 0); /* volume 1 half dead */
	put(f->store, l, big, sizeof(big)); /* volume 2: 61344 bytes, stays live */
	/* the copy of X will take volume 2 to 65472: the tombstone goes to 3 */

	pthread_mutex_lock(&hook_lock);
	hook_len = sizeof(x_data);
	hook_stage = 1;
	pthread_mutex_unlock(&hook_lock);
	assert_int_equal(pthread_create(&t, NULL, compact_thread, f->store), 0);
	pthread_mutex_lock(&hook_lock);
	while (hook_stage != 2)
		pthread_cond_wait(&hook_cond, &hook_lock);
	pthread_mutex_unlock(&hook_lock);

	assert_int_equal(efs_store_delete(f->store, x, 0), 0); /* acknowledged */

	pthread_mutex_lock(&hook_lock);
	hook_stage = 3;
	pthread_cond_broadcast(&hook_cond);
	pthread_mutex_unlock(&hook_lock);
	assert_int_equal(pthread_join(t, &ret), 0);
	assert_int_equal(*(int *)ret, 1); /* volume 1 removed */
	assert_int_equal(efs_store_get(f->store, x, &f->buf, &flags), -ENOENT);

	reopen(f);
	assert_int_equal(efs_store_get(f->store, x, &f->buf, &flags), -ENOENT);
	compact_all(f->store); /* volume 3 (the tombstone alone) is small */
	reopen(f);
	int r = efs_store_get(f->store, x, &f->buf, &flags);
	if (r == 0)
		print_error("the deleted chunk is back\n");
	assert_int_equal(r, -ENOENT);
}

/* ---- a volume whose removal fails ----------------------------------- */

/* unlink of this program (the store is linked statically): fails once with
 * EIO when armed. */
static int unlink_fail;

int unlink(const char *path)
{
	if (unlink_fail) {
		unlink_fail = 0;
		errno = EIO;
		return -1;
	}
	return (int)syscall(SYS_unlink, path);
}

/* A compaction whose unlink fails keeps the volume tracked (and stuck),
 * as its file is still on disk: counted in the volume stats, and its
 * records still shadowed by the tombstones that cover them. */
static void test_failed_unlink_keeps_the_volume_tracked(void **state)
{
	struct fixture *f = *state;
	static unsigned char data[20000];
	char id[65];
	struct efs_store_volume_stats before, after;

	volume_bytes = 64 * 1024;
	reopen(f);
	memset(data, 'u', sizeof(data));
	for (unsigned i = 50; i < 53; i++) { /* volume 1 */
		chunk_id(i, id);
		put(f->store, id, data, sizeof(data));
	}
	chunk_id(53, id);
	put(f->store, id, data, sizeof(data)); /* volume 2 */
	for (unsigned i = 50; i < 53; i++) {   /* volume 1 all dead */
		chunk_id(i, id);
		assert_int_equal(efs_store_delete(f->store, id, 0), 0);
	}
	efs_store_volume_stats(f->store, &before);
	unlink_fail = 1;
	assert_int_equal(efs_store_compact(f->store), -EIO);
	efs_store_volume_stats(f->store, &after);
	assert_int_equal(after.volume_count, before.volume_count);
	assert_int_equal(after.file_bytes, before.file_bytes);
	/* stuck: not tried again */
	assert_int_equal(efs_store_compact(f->store), 0);
	/* after a restart it is tried again, and goes */
	reopen(f);
	compact_all(f->store);
	efs_store_volume_stats(f->store, &after);
	assert_true(after.volume_count < before.volume_count);
	for (unsigned i = 50; i < 53; i++) {
		uint32_t flags;
		chunk_id(i, id);
		assert_int_equal(efs_store_get(f->store, id, &f->buf, &flags), -ENOENT);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
		test_delete_after_rewrite_survives_compaction_and_restart, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delete_after_rewrite_no_restart_between, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_torn_rewrite_hides_the_acknowledged_copy, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_quarantine_spares_an_older_good_copy, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_delete_covers_an_older_record_in_a_newer_volume,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failed_unlink_keeps_the_volume_tracked, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_reopen_counts_a_wrapped_entry_once, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_wrapped_entry_volume_is_reclaimed, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_delete_during_compaction_copy_stays_deleted, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
