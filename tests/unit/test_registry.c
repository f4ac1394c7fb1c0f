/* SPDX-License-Identifier: MIT */
/* test_registry.c - unit tests of the master's worker registry
 * (src/master/registry.h) on SQLite: the cached worker list that placement
 * reads. A registration or a heartbeat through this master is seen at
 * once; another master's registration (a second registry over the same
 * database) at most EFS_REGISTRY_CACHE_MS late; a worker that stops
 * beating is dead for placement within WORKER_DEAD_AFTER_MS plus that.
 * A worker that beats again after it was dead (a healed partition), or
 * takes writes again after writes to it were given up, is asked for a full
 * chunk report until one ends (issue 19).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "echofs/log.h"
#include "echofs/meta.h"
#include "echofs/util.h"
#include "master/placement.h"
#include "master/registry.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEAD_AFTER_MS 400
#define FREE_BYTES (1ULL << 30)

struct fixture {
	char dir[64];
	struct efs_meta *meta, *other_meta; /* this master's and another's */
	struct efs_registry registry;	    /* this master's */
	struct efs_placement placement;	    /* over registry */
	struct efs_registry other;
};

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256] = "";

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/efs-registry-XXXXXX");
	if (!mkdtemp(f->dir) ||
	    efs_meta_open(NULL, f->dir, &f->meta, err, sizeof(err)) < 0 ||
	    efs_meta_open(NULL, f->dir, &f->other_meta, err, sizeof(err)) < 0) {
		print_error("setup: %s\n", err);
		return -1;
	}
	efs_registry_init(&f->registry, f->meta, NULL, DEAD_AFTER_MS);
	efs_placement_init(&f->placement, &f->registry);
	efs_registry_init(&f->other, f->other_meta, NULL, DEAD_AFTER_MS);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	efs_placement_release(&f->placement);
	efs_registry_release(&f->registry);
	efs_registry_release(&f->other);
	efs_meta_close(f->meta);
	efs_meta_close(f->other_meta);
	nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* Registers worker @n (URL port 9000 + @n) through @reg. */
static void register_worker(struct efs_registry *reg, int n, char *id)
{
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", 9000 + n);
	assert_int_equal(efs_registry_register(reg, NULL, url, NULL, FREE_BYTES, FREE_BYTES, 0, id), 0);
}

static size_t cached_alive(struct efs_registry *reg, size_t *total)
{
	size_t alive = 0, n = 0;
	assert_int_equal(efs_registry_count_cached(reg, &alive, &n), 0);
	if (total)
		*total = n;
	return alive;
}

static void test_register_through_this_master_is_placed_at_once(void **state)
{
	struct fixture *f = *state;
	struct efs_target out[3];
	char id[3][EFS_ID_MAX + 1];

	register_worker(&f->registry, 0, id[0]);
	register_worker(&f->registry, 1, id[1]);
	/* Fills the cache with two workers. */
	assert_int_equal(efs_placement_choose(&f->placement, 3, 4096, NULL, 0, out), 2);
	register_worker(&f->registry, 2, id[2]);
	/* No wait: the registration dropped the copy. */
	assert_int_equal(efs_placement_choose(&f->placement, 3, 4096, NULL, 0, out), 3);
	bool placed = false;
	for (size_t i = 0; i < 3; i++)
		placed = placed || strcmp(out[i].worker_id, id[2]) == 0;
	assert_true(placed);
}

static void test_other_master_is_seen_within_the_cache_age(void **state)
{
	struct fixture *f = *state;
	char id[2][EFS_ID_MAX + 1];
	size_t total;

	register_worker(&f->registry, 0, id[0]);
	int64_t filled = efs_mono_ms();
	assert_int_equal(cached_alive(&f->registry, &total), 1);
	register_worker(&f->other, 1, id[1]);
	cached_alive(&f->registry, &total);
	if (efs_mono_ms() - filled < EFS_REGISTRY_CACHE_MS)
		assert_int_equal(total, 1); /* still the copy */
	sleep_ms(EFS_REGISTRY_CACHE_MS + 10);
	assert_int_equal(cached_alive(&f->registry, &total), 2);
	assert_int_equal(total, 2);
	/* The uncached list always reads the store. */
	assert_int_equal(efs_registry_count(&f->other, &(size_t){0}, &total), 0);
	assert_int_equal(total, 2);
}

static void test_dead_within_dead_after_plus_cache_age(void **state)
{
	struct fixture *f = *state;
	char id[EFS_ID_MAX + 1];

	/* Taken before the registration's own clock reading: never later. */
	int64_t last_beat = efs_mono_ms();
	register_worker(&f->registry, 0, id);
	assert_int_equal(cached_alive(&f->registry, NULL), 1);
	/* No more beats: poll the cached view until it says dead. */
	int64_t dead_at = 0;
	while (!dead_at && efs_mono_ms() - last_beat < 4 * (DEAD_AFTER_MS + EFS_REGISTRY_CACHE_MS)) {
		if (cached_alive(&f->registry, NULL) == 0)
			dead_at = efs_mono_ms();
		else
			sleep_ms(10);
	}
	assert_true(dead_at > 0);
	/* Never before WORKER_DEAD_AFTER_MS. */
	assert_true(dead_at - last_beat >= DEAD_AFTER_MS - 20); /* clock granularity */
	/* At most the cache age after the store says dead: once the uncached
	 * view says dead, a copy taken after that is at most one cache age
	 * away (a sleep is a lower bound, so this holds on a loaded machine). */
	size_t alive = 1, total;
	while (alive > 0) {
		assert_int_equal(efs_registry_count(&f->registry, &alive, &total), 0);
		if (alive > 0)
			sleep_ms(10);
	}
	sleep_ms(EFS_REGISTRY_CACHE_MS + 10);
	assert_int_equal(cached_alive(&f->registry, NULL), 0);

	/* A heartbeat through this master brings it back at once. */
	assert_int_equal(efs_registry_heartbeat(&f->registry, id, FREE_BYTES, FREE_BYTES, 0, NULL),
			 0);
	assert_int_equal(cached_alive(&f->registry, NULL), 1);
}

static void test_heartbeat_updates_the_cached_figures(void **state)
{
	struct fixture *f = *state;
	struct efs_worker_status *list;
	struct efs_target out[1];
	char id[EFS_ID_MAX + 1];
	size_t n;

	register_worker(&f->registry, 0, id);
	assert_int_equal(efs_placement_choose(&f->placement, 1, 4096, NULL, 0, out), 1);
	/* Full now: placement must not pick it for a chunk that does not fit,
	 * without waiting for the copy to expire. */
	assert_int_equal(efs_registry_heartbeat(&f->registry, id, FREE_BYTES, 100, 7, NULL), 0);
	assert_int_equal(efs_placement_choose(&f->placement, 1, 4096, NULL, 0, out), 0);
	/* Room for the bytes but not for the record and the block rounding
	 * (issue 12, defect 13): a write there would answer 507. */
	assert_int_equal(efs_registry_heartbeat(&f->registry, id, FREE_BYTES, 4096 + 100, 7, NULL), 0);
	assert_int_equal(efs_placement_choose(&f->placement, 1, 4096, NULL, 0, out), 0);
	assert_int_equal(efs_registry_heartbeat(&f->registry, id, FREE_BYTES,
						4096 + EFS_PLACEMENT_FREE_MARGIN, 7, NULL), 0);
	assert_int_equal(efs_placement_choose(&f->placement, 1, 4096, NULL, 0, out), 1);
	assert_int_equal(efs_registry_heartbeat(&f->registry, id, FREE_BYTES, 100, 7, NULL), 0);
	assert_int_equal(efs_registry_list_cached(&f->registry, &list, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(list[0].info.free_bytes, 100);
	assert_int_equal(list[0].info.chunk_count, 7);
	assert_true(list[0].alive);
	free(list);
}

/* Issue 19: a heartbeat from a worker that was dead (a partition healed,
 * no restart) says so, and keeps saying so at every beat until a full
 * report of that worker ended; a live worker's beats never do. */
static void test_rejoin_asks_for_a_report_until_one_ends(void **state)
{
	struct fixture *f = *state;
	char id[EFS_ID_MAX + 1];
	bool rejoined = true;

	register_worker(&f->registry, 0, id);
	assert_int_equal(efs_registry_heartbeat(&f->registry, id, FREE_BYTES, FREE_BYTES, 0,
						&rejoined),
			 0);
	assert_false(rejoined);
	/* Dead for every master: no beat for longer than DEAD_AFTER_MS. */
	sleep_ms(DEAD_AFTER_MS + 100);
	assert_int_equal(efs_registry_heartbeat(&f->registry, id, FREE_BYTES, FREE_BYTES, 0,
						&rejoined),
			 0);
	assert_true(rejoined);
	/* Alive again, but its answer may have been lost: asked again. */
	rejoined = false;
	assert_int_equal(efs_registry_heartbeat(&f->registry, id, FREE_BYTES, FREE_BYTES, 0,
						&rejoined),
			 0);
	assert_true(rejoined);
	efs_registry_report_done(&f->registry, id);
	assert_int_equal(efs_registry_heartbeat(&f->registry, id, FREE_BYTES, FREE_BYTES, 0,
						&rejoined),
			 0);
	assert_false(rejoined);
	/* The other master did not see it rejoin through itself, and the
	 * store says alive: no report asked there. */
	rejoined = true;
	assert_int_equal(efs_registry_heartbeat(&f->other, id, FREE_BYTES, FREE_BYTES, 0, &rejoined),
			 0);
	assert_false(rejoined);
	/* An unknown worker is not a rejoin: it registers again. */
	assert_int_equal(efs_registry_heartbeat(&f->registry, "w-unknown", FREE_BYTES, FREE_BYTES,
						0, &rejoined),
			 -ENOENT);
}

/* Issue 19: writes to a worker given up in transport may land later; the
 * first good write after them asks for a report (once). */
static void test_good_write_after_given_up_ones_asks_for_a_report(void **state)
{
	struct fixture *f = *state;
	char id[2][EFS_ID_MAX + 1];
	bool rejoined = true;

	register_worker(&f->registry, 0, id[0]);
	register_worker(&f->registry, 1, id[1]);
	efs_registry_note_write(&f->registry, id[0], true); /* nothing given up: nothing */
	assert_int_equal(efs_registry_heartbeat(&f->registry, id[0], FREE_BYTES, FREE_BYTES, 0,
						&rejoined),
			 0);
	assert_false(rejoined);
	efs_registry_note_write(&f->registry, id[0], false);
	efs_registry_note_write(&f->registry, id[0], false);
	/* Still failing: the late copies cannot have landed yet. */
	assert_int_equal(efs_registry_heartbeat(&f->registry, id[0], FREE_BYTES, FREE_BYTES, 0,
						&rejoined),
			 0);
	assert_false(rejoined);
	efs_registry_note_write(&f->registry, id[1], true); /* another worker's: no */
	efs_registry_note_write(&f->registry, id[0], true);
	assert_int_equal(efs_registry_heartbeat(&f->registry, id[1], FREE_BYTES, FREE_BYTES, 0,
						&rejoined),
			 0);
	assert_false(rejoined);
	assert_int_equal(efs_registry_heartbeat(&f->registry, id[0], FREE_BYTES, FREE_BYTES, 0,
						&rejoined),
			 0);
	assert_true(rejoined);
	efs_registry_report_done(&f->registry, id[0]);
	efs_registry_note_write(&f->registry, id[0], true);
	assert_int_equal(efs_registry_heartbeat(&f->registry, id[0], FREE_BYTES, FREE_BYTES, 0,
						&rejoined),
			 0);
	assert_false(rejoined);
}

/* A broken control stream (control.c): the worker is dead for every master
 * once the grace ends, a beat brings it back, and the recorded beat is
 * never moved forward. */
static void test_suspect_moves_the_last_beat_back_never_forward(void **state)
{
	struct fixture *f = *state;
	char id[EFS_ID_MAX + 1];
	struct efs_worker_info before, after;
	size_t alive, total;

	register_worker(&f->registry, 0, id);
	assert_int_equal(efs_registry_suspect(&f->registry, "w-unknown", 0), -ENOENT);
	/* A grace longer than WORKER_DEAD_AFTER_MS changes nothing. */
	assert_int_equal(efs_meta_worker_get(f->meta, id, &before), 0);
	assert_int_equal(efs_registry_suspect(&f->registry, id, 10 * DEAD_AFTER_MS), 0);
	assert_int_equal(efs_meta_worker_get(f->meta, id, &after), 0);
	assert_int_equal(after.last_heartbeat_ms, before.last_heartbeat_ms);
	assert_int_equal(cached_alive(&f->registry, NULL), 1);

	/* No grace: dead at once, here and for another master. */
	assert_int_equal(efs_registry_suspect(&f->registry, id, 0), 0);
	sleep_ms(5);
	assert_int_equal(cached_alive(&f->registry, NULL), 0);
	assert_int_equal(efs_registry_count(&f->other, &alive, &total), 0);
	assert_int_equal(alive, 0);
	assert_int_equal(total, 1);
	assert_int_equal(efs_meta_worker_get(f->meta, id, &after), 0);
	assert_true(after.last_heartbeat_ms < before.last_heartbeat_ms);
	assert_true(after.capacity_bytes == before.capacity_bytes &&
		    after.free_bytes == before.free_bytes);

	/* A beat (the worker fell back to HTTP) brings it back. */
	assert_int_equal(efs_registry_heartbeat(&f->registry, id, FREE_BYTES, FREE_BYTES, 0, NULL),
			 0);
	assert_int_equal(cached_alive(&f->registry, NULL), 1);
}

/* Issue 14: a stream beat is stamped in memory; the flusher writes the
 * stamps (one transaction), which is what another master reads. */
static void test_stream_beats_are_stamped_then_flushed(void **state)
{
	struct fixture *f = *state;
	char id[EFS_ID_MAX + 1];
	struct efs_worker_info first, seen;
	size_t alive, total;
	bool rejoined = true;

	register_worker(&f->registry, 0, id);
	/* No stamp yet: the stream's first beat goes through the store. */
	assert_int_equal(efs_registry_stamp(&f->registry, id, FREE_BYTES, FREE_BYTES, 1, NULL),
			 -EAGAIN);
	assert_int_equal(efs_registry_stream_heartbeat(&f->registry, id, FREE_BYTES, FREE_BYTES,
						       1, &rejoined),
			 0);
	assert_false(rejoined);
	assert_int_equal(efs_meta_worker_get(f->other_meta, id, &first), 0);
	assert_int_equal(first.chunk_count, 1);
	sleep_ms(5);
	/* The next beats are stamped only: the store keeps the first. */
	rejoined = true;
	assert_int_equal(efs_registry_stamp(&f->registry, id, FREE_BYTES, FREE_BYTES - 10, 42,
					    &rejoined),
			 0);
	assert_false(rejoined);
	assert_int_equal(efs_meta_worker_get(f->other_meta, id, &seen), 0);
	assert_int_equal(seen.chunk_count, 1);
	assert_int_equal(seen.last_heartbeat_ms, first.last_heartbeat_ms);
	/* The flush writes them: another master reads the latest beat. */
	assert_int_equal(efs_registry_flush(&f->registry), 0);
	assert_int_equal(efs_meta_worker_get(f->other_meta, id, &seen), 0);
	assert_int_equal(seen.chunk_count, 42);
	assert_int_equal(seen.free_bytes, FREE_BYTES - 10);
	assert_true(seen.last_heartbeat_ms > first.last_heartbeat_ms);
	assert_int_equal(efs_registry_count(&f->other, &alive, &total), 0);
	assert_int_equal(alive, 1);
	/* Nothing stamped since: a flush writes nothing. */
	uint64_t written = atomic_load(&f->registry.flushed_beats);
	assert_int_equal(efs_registry_flush(&f->registry), 0);
	assert_int_equal(atomic_load(&f->registry.flushed_beats), written);
}

/* A stamp older than half a period is not renewed in memory: that beat
 * goes through the store (and its rejoin check), and a flush drops stamps
 * with no beat for a whole period. */
static void test_stale_stamp_goes_through_the_store(void **state)
{
	struct fixture *f = *state;
	char id[EFS_ID_MAX + 1];

	register_worker(&f->registry, 0, id);
	assert_int_equal(efs_registry_stream_heartbeat(&f->registry, id, FREE_BYTES, FREE_BYTES,
						       0, NULL),
			 0);
	sleep_ms(DEAD_AFTER_MS / 2 + 20);
	assert_int_equal(efs_registry_stamp(&f->registry, id, FREE_BYTES, FREE_BYTES, 0, NULL),
			 -EAGAIN);
	sleep_ms(DEAD_AFTER_MS / 2 + 20);
	assert_int_equal(efs_registry_flush(&f->registry), 0);
	assert_int_equal(f->registry.stamp_count, 0);
	/* Dead by now: the beat through the store is a rejoin. */
	bool rejoined = false;
	assert_int_equal(efs_registry_stream_heartbeat(&f->registry, id, FREE_BYTES, FREE_BYTES,
						       0, &rejoined),
			 0);
	assert_true(rejoined);
	/* ...and the stamps that follow keep asking until a report begins. */
	rejoined = false;
	assert_int_equal(efs_registry_stamp(&f->registry, id, FREE_BYTES, FREE_BYTES, 0,
					    &rejoined),
			 0);
	assert_true(rejoined);
	efs_registry_report_done(&f->registry, id);
	assert_int_equal(efs_registry_stamp(&f->registry, id, FREE_BYTES, FREE_BYTES, 0,
					    &rejoined),
			 0);
	assert_false(rejoined);
}

/* A broken stream: its stamp is gone, no flush writes it back to life. */
static void test_suspect_drops_the_stamp(void **state)
{
	struct fixture *f = *state;
	char id[EFS_ID_MAX + 1];
	size_t alive, total;

	register_worker(&f->registry, 0, id);
	assert_int_equal(efs_registry_stream_heartbeat(&f->registry, id, FREE_BYTES, FREE_BYTES,
						       0, NULL),
			 0);
	assert_int_equal(efs_registry_stamp(&f->registry, id, FREE_BYTES, FREE_BYTES, 0, NULL), 0);
	assert_int_equal(efs_registry_suspect(&f->registry, id, 0), 0);
	assert_int_equal(efs_registry_flush(&f->registry), 0);
	sleep_ms(5);
	assert_int_equal(efs_registry_count(&f->other, &alive, &total), 0);
	assert_int_equal(alive, 0);
	assert_int_equal(efs_registry_stamp(&f->registry, id, FREE_BYTES, FREE_BYTES, 0, NULL),
			 -EAGAIN);
}

/* Free space crossing the full line (or moving by an eighth of the
 * capacity) asks for a flush at once; small moves wait for the period.
 * This master's placement sees every stamp at once. */
static void test_material_space_change_is_flushed_at_once(void **state)
{
	struct fixture *f = *state;
	struct efs_target out[1];
	char id[EFS_ID_MAX + 1];

	f->registry.full_below_bytes = 1 << 20;
	register_worker(&f->registry, 0, id);
	assert_int_equal(efs_registry_stream_heartbeat(&f->registry, id, FREE_BYTES, FREE_BYTES,
						       0, NULL),
			 0);
	assert_int_equal(efs_placement_choose(&f->placement, 1, 4096, NULL, 0, out), 1);
	assert_int_equal(efs_registry_stamp(&f->registry, id, FREE_BYTES, FREE_BYTES - 4096, 1,
					    NULL),
			 0);
	assert_false(f->registry.flush_urgent);
	/* Full: urgent, and this master places nothing there already. */
	assert_int_equal(efs_registry_stamp(&f->registry, id, FREE_BYTES, 100, 2, NULL), 0);
	assert_true(f->registry.flush_urgent);
	assert_int_equal(efs_placement_choose(&f->placement, 1, 4096, NULL, 0, out), 0);
	assert_int_equal(efs_registry_flush(&f->registry), 0);
	assert_false(f->registry.flush_urgent);
	struct efs_worker_info seen;
	assert_int_equal(efs_meta_worker_get(f->other_meta, id, &seen), 0);
	assert_int_equal(seen.free_bytes, 100);
	/* Freed again: urgent too. */
	assert_int_equal(efs_registry_stamp(&f->registry, id, FREE_BYTES, FREE_BYTES / 2, 2, NULL),
			 0);
	assert_true(f->registry.flush_urgent);
}

/* The stamp table is a hash table with deletions: after many workers and
 * the removal of every third, each remaining one is still found (its
 * beat stamped in memory) and each removed one is not. */
static void test_stamp_table_survives_many_removals(void **state)
{
	struct fixture *f = *state;
	enum { N = 300 };
	static char ids[N][EFS_ID_MAX + 1];
	struct efs_registry reg; /* a long period: stamps stay fresh here */

	efs_registry_init(&reg, f->meta, NULL, 600000);
	for (int i = 0; i < N; i++) {
		register_worker(&reg, i, ids[i]);
		assert_int_equal(efs_registry_stream_heartbeat(&reg, ids[i], FREE_BYTES, FREE_BYTES,
							       0, NULL),
				 0);
	}
	assert_int_equal(reg.stamp_count, N);
	for (int i = 0; i < N; i += 3)
		assert_int_equal(efs_registry_suspect(&reg, ids[i], 1000), 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(efs_registry_stamp(&reg, ids[i], FREE_BYTES, FREE_BYTES, 1, NULL),
				 i % 3 == 0 ? -EAGAIN : 0);
	assert_int_equal(reg.stamp_count, N - (N + 2) / 3);
	efs_registry_release(&reg);
}

int main(void)
{
	efs_log_set_level(EFS_LOG_ERROR);
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_register_through_this_master_is_placed_at_once),
		T(test_other_master_is_seen_within_the_cache_age),
		T(test_dead_within_dead_after_plus_cache_age),
		T(test_heartbeat_updates_the_cached_figures),
		T(test_rejoin_asks_for_a_report_until_one_ends),
		T(test_good_write_after_given_up_ones_asks_for_a_report),
		T(test_suspect_moves_the_last_beat_back_never_forward),
		T(test_stream_beats_are_stamped_then_flushed),
		T(test_stale_stamp_goes_through_the_store),
		T(test_suspect_drops_the_stamp),
		T(test_material_space_change_is_flushed_at_once),
		T(test_stamp_table_survives_many_removals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
