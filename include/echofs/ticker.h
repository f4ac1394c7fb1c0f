/* SPDX-License-Identifier: MIT */
/* ticker.h - a background thread that can be stopped while it waits.
 *
 * The thread runs @main(ticker, ctx); the loop inside waits with
 * efs_ticker_wait(), which returns true as soon as efs_ticker_stop() is
 * called, so stopping never waits out a long interval. Used by the
 * worker's heartbeat loop and the master's collector.
 */
#ifndef ECHOFS_TICKER_H
#define ECHOFS_TICKER_H

#include "echofs/common.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

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

#endif
