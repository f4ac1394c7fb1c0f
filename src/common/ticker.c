/* SPDX-License-Identifier: MIT */
/* ticker.c - a stoppable background thread.
 *
 * The wait is timed on CLOCK_MONOTONIC (a condition variable set up with
 * pthread_condattr_setclock): a wall clock stepped back by NTP or an
 * operator must not stop heartbeats, collection, repair, compaction or
 * scrubbing for the size of the step, nor a step forward make them run
 * early. */
#include "echofs/ticker.h"

#include <string.h>
#include <time.h>

static void *ticker_thread(void *arg)
{
	struct efs_ticker *t = arg;
	t->main(t, t->ctx);
	return NULL;
}

int efs_ticker_cond_init(pthread_cond_t *cond)
{
	pthread_condattr_t attr;
	int r = pthread_condattr_init(&attr);
	if (r != 0)
		return -r;
	r = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	if (r == 0)
		r = pthread_cond_init(cond, &attr);
	pthread_condattr_destroy(&attr);
	return -r;
}

void efs_ticker_deadline(int64_t ms, struct timespec *deadline)
{
	if (ms < 0)
		ms = 0;
	clock_gettime(CLOCK_MONOTONIC, deadline);
	deadline->tv_sec += (time_t)(ms / 1000);
	deadline->tv_nsec += (long)(ms % 1000) * 1000000;
	if (deadline->tv_nsec >= 1000000000) {
		deadline->tv_sec++;
		deadline->tv_nsec -= 1000000000;
	}
}

int efs_ticker_start(struct efs_ticker *t, void (*main)(struct efs_ticker *t, void *ctx),
		     void *ctx)
{
	memset(t, 0, sizeof(*t));
	t->main = main;
	t->ctx = ctx;
	int r = efs_ticker_cond_init(&t->cond);
	if (r < 0)
		return r;
	pthread_mutex_init(&t->lock, NULL);
	r = pthread_create(&t->thread, NULL, ticker_thread, t);
	if (r != 0) {
		pthread_mutex_destroy(&t->lock);
		pthread_cond_destroy(&t->cond);
		return -r;
	}
	t->running = true;
	return 0;
}

bool efs_ticker_wait(struct efs_ticker *t, int64_t ms)
{
	struct timespec deadline;
	efs_ticker_deadline(ms, &deadline);
	pthread_mutex_lock(&t->lock);
	while (!t->stop && pthread_cond_timedwait(&t->cond, &t->lock, &deadline) == 0)
		;
	bool stop = t->stop;
	pthread_mutex_unlock(&t->lock);
	return stop;
}

void efs_ticker_stop(struct efs_ticker *t)
{
	if (!t->running)
		return;
	pthread_mutex_lock(&t->lock);
	t->stop = true;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	pthread_join(t->thread, NULL);
	t->running = false;
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->cond);
}
