/* SPDX-License-Identifier: MIT */
/* ticker.c - a stoppable background thread. */
#include "echofs/ticker.h"

#include <string.h>
#include <time.h>

static void *ticker_thread(void *arg)
{
	struct efs_ticker *t = arg;
	t->main(t, t->ctx);
	return NULL;
}

int efs_ticker_start(struct efs_ticker *t, void (*main)(struct efs_ticker *t, void *ctx),
		     void *ctx)
{
	memset(t, 0, sizeof(*t));
	t->main = main;
	t->ctx = ctx;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	int r = pthread_create(&t->thread, NULL, ticker_thread, t);
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
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += ms / 1000;
	deadline.tv_nsec += (ms % 1000) * 1000000;
	if (deadline.tv_nsec >= 1000000000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}
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
