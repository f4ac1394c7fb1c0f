/* SPDX-License-Identifier: MIT */
/* test_ticker.c - unit tests of ticker.h: a wait lasts its interval, a
 * stop wakes a waiting ticker at once, and the interval does not depend
 * on the wall clock.
 *
 * The wall clock cannot be stepped in a test (that needs root and would
 * disturb every other process on the machine), and libfaketime does not
 * help: it rewrites pthread_cond_timedwait's deadlines along with the
 * clock, so a CLOCK_REALTIME wait looks right under it. So ticker.c is
 * included here with clock_gettime replaced: the process sees a wall
 * clock an hour off the kernel's, as it does after a step, while
 * CLOCK_MONOTONIC stays true. A wait timed on the wall clock then lasts an
 * hour (a step back) or no time at all (a step forward); a monotonic one
 * lasts its interval either way. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

/* Offset added to CLOCK_REALTIME as ticker.c sees it, in seconds. */
static time_t wall_offset_s;

static int stepped_clock_gettime(clockid_t clock, struct timespec *ts)
{
	int r = clock_gettime(clock, ts);
	if (r == 0 && clock == CLOCK_REALTIME)
		ts->tv_sec += wall_offset_s;
	return r;
}

#define clock_gettime stepped_clock_gettime
#include "../../src/common/ticker.c"
#undef clock_gettime

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define INTERVAL_MS 100
#define TICKS 3

struct ticks {
	pthread_mutex_t lock;
	int count;
	int64_t longest_ms, shortest_ms;
};

static void count_ticks(struct efs_ticker *t, void *ctx)
{
	struct ticks *k = ctx;
	for (;;) {
		int64_t started = mono_ms();
		if (efs_ticker_wait(t, INTERVAL_MS))
			return;
		int64_t took = mono_ms() - started;
		pthread_mutex_lock(&k->lock);
		k->count++;
		if (took > k->longest_ms)
			k->longest_ms = took;
		if (k->shortest_ms < 0 || took < k->shortest_ms)
			k->shortest_ms = took;
		pthread_mutex_unlock(&k->lock);
	}
}

/* Runs a ticker until it has ticked TICKS times or 3 s have passed, then
 * stops it; fills *k. */
static void run_ticker(struct ticks *k)
{
	struct efs_ticker t;
	pthread_mutex_init(&k->lock, NULL);
	k->count = 0;
	k->longest_ms = 0;
	k->shortest_ms = -1;
	assert_int_equal(efs_ticker_start(&t, count_ticks, k), 0);
	int64_t until = mono_ms() + 3000;
	for (;;) {
		pthread_mutex_lock(&k->lock);
		int count = k->count;
		pthread_mutex_unlock(&k->lock);
		if (count >= TICKS || mono_ms() >= until)
			break;
		struct timespec nap = {0, 10 * 1000000};
		nanosleep(&nap, NULL);
	}
	efs_ticker_stop(&t);
	pthread_mutex_destroy(&k->lock);
}

static void assert_ticks_on_time(const struct ticks *k)
{
	assert_true(k->count >= TICKS);
	/* Loose bounds: a loaded machine may run late, never early. */
	assert_true(k->shortest_ms >= INTERVAL_MS - 5);
	assert_true(k->longest_ms < 1500);
}

static void test_wait_lasts_its_interval(void **state)
{
	(void)state;
	struct ticks k;
	wall_offset_s = 0;
	run_ticker(&k);
	assert_ticks_on_time(&k);
}

/* The wall clock read an hour ahead of the kernel's when the deadline was
 * taken: what a wait sees when the clock is stepped back an hour. */
static void test_wall_clock_stepped_back_does_not_stop_ticks(void **state)
{
	(void)state;
	struct ticks k;
	wall_offset_s = 3600;
	run_ticker(&k);
	wall_offset_s = 0;
	assert_ticks_on_time(&k);
}

static void test_wall_clock_stepped_forward_does_not_hurry_ticks(void **state)
{
	(void)state;
	struct ticks k;
	wall_offset_s = -3600;
	run_ticker(&k);
	wall_offset_s = 0;
	assert_ticks_on_time(&k);
}

static void wait_long(struct efs_ticker *t, void *ctx)
{
	bool *stopped = ctx;
	*stopped = efs_ticker_wait(t, 60 * 1000);
}

static void test_stop_wakes_a_long_wait(void **state)
{
	(void)state;
	struct efs_ticker t;
	bool stopped = false;
	wall_offset_s = 0;
	assert_int_equal(efs_ticker_start(&t, wait_long, &stopped), 0);
	struct timespec nap = {0, 50 * 1000000};
	nanosleep(&nap, NULL);
	int64_t started = mono_ms();
	efs_ticker_stop(&t);
	assert_true(mono_ms() - started < 1000);
	assert_true(stopped);
}

static void test_deadline_is_ahead_on_the_monotonic_clock(void **state)
{
	(void)state;
	struct timespec now, deadline;
	clock_gettime(CLOCK_MONOTONIC, &now);
	efs_ticker_deadline(1500, &deadline);
	int64_t ahead = (int64_t)(deadline.tv_sec - now.tv_sec) * 1000 +
			(deadline.tv_nsec - now.tv_nsec) / 1000000;
	assert_true(deadline.tv_nsec >= 0 && deadline.tv_nsec < 1000000000);
	assert_true(ahead >= 1490 && ahead <= 1600);
	efs_ticker_deadline(-5, &deadline); /* negative: now */
	ahead = (int64_t)(deadline.tv_sec - now.tv_sec) * 1000 +
		(deadline.tv_nsec - now.tv_nsec) / 1000000;
	assert_true(ahead >= 0 && ahead < 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_wait_lasts_its_interval),
	    cmocka_unit_test(test_wall_clock_stepped_back_does_not_stop_ticks),
	    cmocka_unit_test(test_wall_clock_stepped_forward_does_not_hurry_ticks),
	    cmocka_unit_test(test_stop_wakes_a_long_wait),
	    cmocka_unit_test(test_deadline_is_ahead_on_the_monotonic_clock),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
