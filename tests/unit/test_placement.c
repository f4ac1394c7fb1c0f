/* SPDX-License-Identifier: MIT */
/* test_placement.c - unit tests of placement's slow-worker rule
 * (src/master/placement.h) over a registry on SQLite: a worker marked slow
 * is chosen only when the others cannot fill the request, the mark
 * expires by itself, each abandon is counted, the candidate count tells
 * chunk_io whether a replacement exists, and which finished transfers are
 * judged slow; and the zone rule: copies spread over the most zones, then
 * evenly, the holders' zones counted, zones before slowness; and the
 * digest of the workers heard from that ends repair's back-off.
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

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FREE_BYTES (1ULL << 30)
#define WORKERS 4

struct fixture {
	char dir[64];
	struct efs_meta *meta;
	struct efs_registry registry;
	struct efs_placement placement;
	char id[WORKERS][EFS_ID_MAX + 1];
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
	snprintf(f->dir, sizeof(f->dir), "/tmp/efs-placement-XXXXXX");
	if (!mkdtemp(f->dir) || efs_meta_open(NULL, f->dir, &f->meta, err, sizeof(err)) < 0) {
		print_error("setup: %s\n", err);
		return -1;
	}
	efs_registry_init(&f->registry, f->meta, NULL, 60000);
	efs_placement_init(&f->placement, &f->registry);
	for (int n = 0; n < WORKERS; n++) {
		char url[64];
		snprintf(url, sizeof(url), "http://127.0.0.1:%d", 9000 + n);
		if (efs_registry_register(&f->registry, NULL, url, NULL, FREE_BYTES, FREE_BYTES, 0,
					  f->id[n]) < 0)
			return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	efs_placement_release(&f->placement);
	efs_registry_release(&f->registry);
	efs_meta_close(f->meta);
	nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static bool chosen(const struct efs_target *out, int n, const char *worker_id)
{
	for (int i = 0; i < n; i++)
		if (strcmp(out[i].worker_id, worker_id) == 0)
			return true;
	return false;
}

static void test_defaults_and_nothing_slow(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(f->placement.slow_min_rate, EFS_PLACEMENT_DEFAULT_SLOW_MIN_RATE);
	assert_int_equal(f->placement.slow_avoid_ms, EFS_PLACEMENT_DEFAULT_SLOW_AVOID_MS);
	for (int n = 0; n < WORKERS; n++)
		assert_int_equal(efs_placement_slow_for_ms(&f->placement, f->id[n]), 0);
	assert_int_equal(efs_placement_slow_for_ms(&f->placement, "w-unknown"), 0);
}

static void test_slow_worker_is_chosen_only_when_the_others_do_not_suffice(void **state)
{
	struct fixture *f = *state;
	struct efs_target out[WORKERS];
	size_t candidates = 0;

	efs_placement_set_slowness(&f->placement, 1024, 60000);
	assert_true(efs_placement_note_slow(&f->placement, f->id[2], true));
	/* Marked again while slow: counted, but not a change to log. */
	assert_false(efs_placement_note_slow(&f->placement, f->id[2], true));
	assert_true(efs_placement_slow_for_ms(&f->placement, f->id[2]) > 59000);
	assert_int_equal(atomic_load(&f->placement.slow_abandons_write), 2);
	assert_int_equal(atomic_load(&f->placement.slow_abandons_read), 0);

	/* Three replicas, three fast workers: never the slow one (random
	 * choice: many rounds). */
	for (int round = 0; round < 200; round++) {
		int n = efs_placement_choose_counted(&f->placement, 3, 4096, NULL, 0, out,
						     &candidates);
		assert_int_equal(n, 3);
		assert_int_equal(candidates, WORKERS);
		assert_false(chosen(out, n, f->id[2]));
	}
	/* Four: the slow one too (the replication factor comes first). */
	assert_int_equal(efs_placement_choose(&f->placement, 4, 4096, NULL, 0, out), 4);
	assert_true(chosen(out, 4, f->id[2]));
	/* Two fast ones excluded (tried already): the slow one fills in. */
	struct efs_target exclude[2];
	for (int i = 0; i < 2; i++) {
		efs_strlcpy(exclude[i].worker_id, f->id[i], sizeof(exclude[i].worker_id));
		snprintf(exclude[i].url, sizeof(exclude[i].url), "http://127.0.0.1:%d", 9000 + i);
	}
	int n = efs_placement_choose_counted(&f->placement, 2, 4096, exclude, 2, out,
					     &candidates);
	assert_int_equal(n, 2);
	assert_int_equal(candidates, 2); /* no replacement left beyond these */
	assert_true(chosen(out, n, f->id[2]));
	assert_true(chosen(out, n, f->id[3]));
}

static void test_slow_mark_expires(void **state)
{
	struct fixture *f = *state;
	struct efs_target out[WORKERS];

	efs_placement_set_slowness(&f->placement, 1024, 50);
	assert_true(efs_placement_note_slow(&f->placement, f->id[0], false));
	assert_int_equal(atomic_load(&f->placement.slow_abandons_read), 1);
	assert_true(efs_placement_slow_for_ms(&f->placement, f->id[0]) > 0);
	struct timespec ts = {0, 80 * 1000000};
	nanosleep(&ts, NULL);
	assert_int_equal(efs_placement_slow_for_ms(&f->placement, f->id[0]), 0);
	/* Chosen again: with all four asked for, and among three at times. */
	bool seen = false;
	for (int round = 0; round < 200 && !seen; round++) {
		int n = efs_placement_choose(&f->placement, 3, 4096, NULL, 0, out);
		assert_int_equal(n, 3);
		seen = chosen(out, n, f->id[0]);
	}
	assert_true(seen);
	/* A newly slow mark logs again (a change). */
	assert_true(efs_placement_note_slow(&f->placement, f->id[0], false));
}

static void test_avoid_zero_marks_nothing_but_counts(void **state)
{
	struct fixture *f = *state;
	efs_placement_set_slowness(&f->placement, 1024, 0);
	assert_false(efs_placement_note_slow(&f->placement, f->id[1], true));
	assert_int_equal(efs_placement_slow_for_ms(&f->placement, f->id[1]), 0);
	assert_int_equal(atomic_load(&f->placement.slow_abandons_write), 1);
}

static void test_finished_slowly_judges_long_large_transfers_only(void **state)
{
	struct fixture *f = *state;
	efs_placement_set_slowness(&f->placement, 2 * 1024 * 1024, 60000);
	/* 1 MiB in 1.1 s: under 2 MiB/s. */
	assert_true(efs_placement_finished_slowly(&f->placement, 1 << 20, 1100));
	/* Under a second: a hiccup, not judged. */
	assert_false(efs_placement_finished_slowly(&f->placement, 1 << 20, 900));
	/* 64 KiB in 2 s: a latency, not a rate. */
	assert_false(efs_placement_finished_slowly(&f->placement, 64 * 1024, 2000));
	/* 8 MiB in 2 s: 4 MiB/s, fast enough. */
	assert_false(efs_placement_finished_slowly(&f->placement, 8 << 20, 2000));
	/* The rule off. */
	efs_placement_set_slowness(&f->placement, 0, 60000);
	assert_false(efs_placement_finished_slowly(&f->placement, 1 << 20, 5000));
	/* A finished transfer marks without counting an abandon. */
	efs_placement_set_slowness(&f->placement, 2 * 1024 * 1024, 60000);
	assert_true(efs_placement_mark_slow(&f->placement, f->id[3]));
	assert_true(efs_placement_slow_for_ms(&f->placement, f->id[3]) > 0);
	assert_int_equal(atomic_load(&f->placement.slow_abandons_write), 0);
	assert_int_equal(atomic_load(&f->placement.slow_abandons_read), 0);
}

/* The heard digest: the same for the same workers (read again, or from
 * the store once the cached copy has expired); another once a worker
 * joins, or once one's last beat falls behind the limit while another's
 * does not, though as many are counted either way. */
static void test_heard_digest_follows_the_counted_set(void **state)
{
	struct fixture *f = *state;
	uint64_t all, again, joined, only_b, only_a;
	char id[EFS_ID_MAX + 1];
	struct timespec past_cache = {0, (EFS_REGISTRY_CACHE_MS + 50) * 1000000L};
	int64_t t0 = efs_now_ms();

	assert_int_equal(efs_placement_heard_digest(&f->placement, t0 - 60000, &all), 0);
	assert_int_equal(efs_placement_heard_digest(&f->placement, t0 - 60000, &again), 0);
	assert_true(all != 0);
	assert_true(all == again);
	assert_int_equal(efs_registry_register(&f->registry, NULL, "http://127.0.0.1:9990", NULL,
					       FREE_BYTES, FREE_BYTES, 0, id),
			 0);
	assert_int_equal(efs_placement_heard_digest(&f->placement, t0 - 60000, &joined), 0);
	assert_true(joined != all);
	nanosleep(&past_cache, NULL);
	assert_int_equal(efs_placement_heard_digest(&f->placement, t0 - 60000, &again), 0);
	assert_true(again == joined);

	/* One beat each, 300 ms apart: after the first, only it counts; after
	 * the second, with the limit between them, only the second. */
	int64_t t1 = efs_now_ms();
	assert_int_equal(
	    efs_registry_heartbeat(&f->registry, f->id[1], FREE_BYTES, FREE_BYTES, 0, NULL), 0);
	assert_int_equal(efs_placement_heard_digest(&f->placement, t1 - 1, &only_b), 0);
	nanosleep(&past_cache, NULL);
	int64_t t2 = efs_now_ms();
	assert_int_equal(
	    efs_registry_heartbeat(&f->registry, f->id[0], FREE_BYTES, FREE_BYTES, 0, NULL), 0);
	assert_int_equal(efs_placement_heard_digest(&f->placement, t2 - 1, &only_a), 0);
	assert_true(only_a != 0 && only_b != 0);
	assert_true(only_a != only_b);
	/* Nobody heard from since: nothing counted. */
	assert_int_equal(efs_placement_heard_digest(&f->placement, efs_now_ms() + 1000, &again), 0);
	assert_true(again == 0);
}

/* ---- zones ---------------------------------------------------------------- */

#define ZONED_MAX 12

/* A registry of workers in zones: worker i in zone zones[i] ("" none),
 * all with the same free space, so that only the zone rule tells them
 * apart. */
struct zoned {
	char dir[64];
	struct efs_meta *meta;
	struct efs_registry registry;
	struct efs_placement placement;
	unsigned count;
	char id[ZONED_MAX][EFS_ID_MAX + 1];
	char url[ZONED_MAX][EFS_URL_MAX + 1];
	const char *zone[ZONED_MAX];
};

static void zoned_open(struct zoned *z, const char *const *zones, unsigned count)
{
	char err[256] = "";
	memset(z, 0, sizeof(*z));
	snprintf(z->dir, sizeof(z->dir), "/tmp/efs-placement-XXXXXX");
	assert_non_null(mkdtemp(z->dir));
	assert_int_equal(efs_meta_open(NULL, z->dir, &z->meta, err, sizeof(err)), 0);
	efs_registry_init(&z->registry, z->meta, NULL, 60000);
	efs_placement_init(&z->placement, &z->registry);
	z->count = count;
	for (unsigned i = 0; i < count; i++) {
		snprintf(z->url[i], sizeof(z->url[i]), "http://127.0.0.1:%u", 9100 + i);
		z->zone[i] = zones[i];
		assert_int_equal(efs_registry_register(&z->registry, NULL, z->url[i], zones[i],
						       FREE_BYTES, FREE_BYTES, 0, z->id[i]),
				 0);
	}
}

static void zoned_close(struct zoned *z)
{
	efs_placement_release(&z->placement);
	efs_registry_release(&z->registry);
	efs_meta_close(z->meta);
	nftw(z->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static struct efs_target zoned_target(const struct zoned *z, unsigned i)
{
	struct efs_target t;
	efs_strlcpy(t.worker_id, z->id[i], sizeof(t.worker_id));
	efs_strlcpy(t.url, z->url[i], sizeof(t.url));
	return t;
}

/* The zone of a chosen target. */
static const char *zone_of(const struct zoned *z, const struct efs_target *t)
{
	for (unsigned i = 0; i < z->count; i++)
		if (strcmp(z->id[i], t->worker_id) == 0)
			return z->zone[i];
	fail_msg("target %s is no worker of the test", t->worker_id);
	return NULL;
}

/* How many of @out (@n) are in @zone, and that no worker is there twice. */
static unsigned in_zone(const struct zoned *z, const struct efs_target *out, int n,
			const char *zone)
{
	unsigned count = 0;
	for (int i = 0; i < n; i++) {
		for (int j = 0; j < i; j++)
			assert_string_not_equal(out[i].worker_id, out[j].worker_id);
		count += strcmp(zone_of(z, &out[i]), zone) == 0;
	}
	return count;
}

/* ec:4+2 over three zones, one of them larger (five workers against two
 * and two): every stripe has exactly two shards per zone, though a
 * weighted choice alone puts three or more in the large zone most of the
 * time; three replicas take one worker per zone. */
static void test_zones_spread_a_stripe_evenly(void **state)
{
	static const char *const zones[] = {"a", "a", "a", "a", "a", "b", "b", "c", "c"};
	struct zoned z;
	struct efs_target out[ZONED_MAX];
	size_t candidates;

	zoned_open(&z, zones, EFS_ARRAY_SIZE(zones));
	for (int round = 0; round < 200; round++) {
		int n = efs_placement_choose(&z.placement, 6, 4096, NULL, 0, out);
		assert_int_equal(n, 6);
		assert_int_equal(in_zone(&z, out, n, "a"), 2);
		assert_int_equal(in_zone(&z, out, n, "b"), 2);
		assert_int_equal(in_zone(&z, out, n, "c"), 2);
		n = efs_placement_choose_counted(&z.placement, 3, 4096, NULL, 0, out, &candidates);
		assert_int_equal(n, 3);
		assert_int_equal(candidates, 9);
		assert_int_equal(in_zone(&z, out, n, "a"), 1);
		assert_int_equal(in_zone(&z, out, n, "b"), 1);
		assert_int_equal(in_zone(&z, out, n, "c"), 1);
	}
	/* Every worker: the zones' sizes decide, nothing is left out. */
	assert_int_equal(efs_placement_choose(&z.placement, 12, 4096, NULL, 0, out), 9);
	zoned_close(&z);
	(void)state;
}

/* Fewer zones than places and a zone too small for its share: the small
 * zone gives what it has, the rest goes to the other one; workers
 * without a zone are each a zone of their own. */
static void test_zones_fewer_than_places(void **state)
{
	static const char *const zones[] = {"big", "big", "big", "big", "small", "", ""};
	struct zoned z;
	struct efs_target out[ZONED_MAX];

	zoned_open(&z, zones, EFS_ARRAY_SIZE(zones));
	for (int round = 0; round < 100; round++) {
		/* four zones (big, small and the two without one): one each */
		int n = efs_placement_choose(&z.placement, 4, 4096, NULL, 0, out);
		assert_int_equal(n, 4);
		assert_int_equal(in_zone(&z, out, n, "big"), 1);
		assert_int_equal(in_zone(&z, out, n, "small"), 1);
		assert_int_equal(in_zone(&z, out, n, ""), 2);
		/* six: "small" and the zoneless ones hold one each at most */
		n = efs_placement_choose(&z.placement, 6, 4096, NULL, 0, out);
		assert_int_equal(n, 6);
		assert_int_equal(in_zone(&z, out, n, "big"), 3);
		assert_int_equal(in_zone(&z, out, n, "small"), 1);
	}
	zoned_close(&z);
	(void)state;
}

/* Repair and rebuild: the zones of the workers holding the chunk count,
 * those of workers tried and failed do not. */
static void test_zones_count_the_holders_not_the_failed(void **state)
{
	static const char *const zones[] = {"a", "a", "b", "b", "c", "c"};
	struct zoned z;
	struct efs_target out[ZONED_MAX], held[4], failed[1];
	size_t candidates;
	bool b_chosen = false;

	zoned_open(&z, zones, EFS_ARRAY_SIZE(zones));
	for (int round = 0; round < 200; round++) {
		/* a replica in a (a1): two more go to b and c */
		held[0] = zoned_target(&z, 0);
		int n = efs_placement_choose(&z.placement, 2, 4096, held, 1, out);
		assert_int_equal(n, 2);
		assert_int_equal(in_zone(&z, out, n, "a"), 0);
		assert_int_equal(in_zone(&z, out, n, "b"), 1);
		/* a stripe holding a1, a2, b1, c1: the two lost shards go to
		 * b2 and c2, never back to a */
		held[1] = zoned_target(&z, 1);
		held[2] = zoned_target(&z, 2);
		held[3] = zoned_target(&z, 4);
		n = efs_placement_choose(&z.placement, 2, 4096, held, 4, out);
		assert_int_equal(n, 2);
		assert_int_equal(in_zone(&z, out, n, "b"), 1);
		assert_int_equal(in_zone(&z, out, n, "c"), 1);
		/* a1 holds, b1 failed: b2 is as good as c (b holds nothing) */
		failed[0] = zoned_target(&z, 2);
		n = efs_placement_choose_spread(&z.placement, 1, 4096, held, 1, failed, 1, out,
						&candidates);
		assert_int_equal(n, 1);
		assert_int_equal(candidates, 4); /* a2, b2, c1, c2 */
		assert_string_not_equal(zone_of(&z, &out[0]), "a");
		assert_string_not_equal(out[0].worker_id, z.id[2]);
		b_chosen |= strcmp(out[0].worker_id, z.id[3]) == 0;
	}
	assert_true(b_chosen);
	zoned_close(&z);
	(void)state;
}

/* Zones come before slowness: a slow worker alone in its zone is chosen
 * rather than a second copy in another zone; within a zone, the one that
 * is not slow first. */
static void test_zones_before_slowness(void **state)
{
	static const char *const zones[] = {"a", "a", "b", "b", "c"};
	struct zoned z;
	struct efs_target out[ZONED_MAX];

	zoned_open(&z, zones, EFS_ARRAY_SIZE(zones));
	efs_placement_set_slowness(&z.placement, 1024, 60000);
	efs_placement_note_slow(&z.placement, z.id[4], true); /* c's only worker */
	efs_placement_note_slow(&z.placement, z.id[0], true); /* one of a's */
	for (int round = 0; round < 100; round++) {
		int n = efs_placement_choose(&z.placement, 3, 4096, NULL, 0, out);
		assert_int_equal(n, 3);
		assert_int_equal(in_zone(&z, out, n, "c"), 1);
		assert_int_equal(in_zone(&z, out, n, "a"), 1);
		assert_false(chosen(out, n, z.id[0]));
	}
	zoned_close(&z);
	(void)state;
}

/* WORKER_ZONE's rule, and a registration with a bad zone is refused. */
static void test_zone_names(void **state)
{
	struct fixture *f = *state;
	char id[EFS_ID_MAX + 1];
	char longest[EFS_ZONE_MAX + 2];

	assert_true(efs_zone_valid(""));
	assert_true(efs_zone_valid("eu-west-1a"));
	assert_true(efs_zone_valid("rack_7.row-2"));
	memset(longest, 'z', EFS_ZONE_MAX);
	longest[EFS_ZONE_MAX] = '\0';
	assert_true(efs_zone_valid(longest));
	longest[EFS_ZONE_MAX] = 'z';
	longest[EFS_ZONE_MAX + 1] = '\0';
	assert_false(efs_zone_valid(longest));
	assert_false(efs_zone_valid("rack 7"));
	assert_false(efs_zone_valid("a/b"));
	assert_false(efs_zone_valid("zone'"));
	assert_false(efs_zone_valid(NULL));
	assert_int_equal(efs_registry_register(&f->registry, NULL, "http://127.0.0.1:9999", "a b",
					       FREE_BYTES, FREE_BYTES, 0, id),
			 -EINVAL);
}

int main(void)
{
	efs_log_set_level(EFS_LOG_ERROR);
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_defaults_and_nothing_slow),
		T(test_slow_worker_is_chosen_only_when_the_others_do_not_suffice),
		T(test_slow_mark_expires),
		T(test_avoid_zero_marks_nothing_but_counts),
		T(test_finished_slowly_judges_long_large_transfers_only),
		T(test_heard_digest_follows_the_counted_set),
		T(test_zones_spread_a_stripe_evenly),
		T(test_zones_fewer_than_places),
		T(test_zones_count_the_holders_not_the_failed),
		T(test_zones_before_slowness),
		T(test_zone_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
