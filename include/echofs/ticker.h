/* SPDX-License-Identifier: MIT */
/* ticker.h - a background thread that can be stopped while it waits.
 *
 * The thread runs @main(ticker, ctx); the loop inside waits with
 * efs_ticker_wait(), which returns true as soon as efs_ticker_stop() is
 * called, so stopping never waits out a long interval. Used by the
 * worker's heartbeat loop and the master's collector.
 *
 * Every wait here is timed on CLOCK_MONOTONIC, never on the wall clock:
 * stepping the wall clock back or forth changes no interval.
 */
#ifndef ECHOFS_TICKER_H
#define ECHOFS_TICKER_H

#include "echofs/common.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct efs_ticker {
	pthread_t thread;
	bool running;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	void (*main)(struct efs_ticker *t, void *ctx);
	void *ctx;
};

/* Starts the thread. 0 or -errno. */
int efs_ticker_start(struct efs_ticker *t, void (*main)(struct efs_ticker *t, void *ctx),
		     void *ctx);
/* Waits @ms milliseconds; true when the ticker is being stopped. */
bool efs_ticker_wait(struct efs_ticker *t, int64_t ms);
/* Asks the thread to stop and joins it. Does nothing if not running. */
void efs_ticker_stop(struct efs_ticker *t);

/* Initialises @cond so that pthread_cond_timedwait() takes deadlines on
 * CLOCK_MONOTONIC (make them with efs_ticker_deadline()). 0 or -errno. */
int efs_ticker_cond_init(pthread_cond_t *cond);
/* Sets *@deadline to @ms milliseconds from now on CLOCK_MONOTONIC (a
 * negative @ms counts as 0). */
void efs_ticker_deadline(int64_t ms, struct timespec *deadline);

#endif
