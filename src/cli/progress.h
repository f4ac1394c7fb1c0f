/* SPDX-License-Identifier: MIT */
/* progress.h - a one-line progress bar on stderr for transfers:
 *
 *   big.iso  45% [=========>           ] 90.0 MiB/200.0 MiB  35.2 MiB/s  0:03 left
 *
 * Redrawn in place at most 10 times a second, from any thread. A disabled
 * bar (stderr is not a terminal, or -q) accepts every call and draws
 * nothing, so callers never need to check.
 */
#ifndef ECHOFS_CLI_PROGRESS_H
#define ECHOFS_CLI_PROGRESS_H

#include "echofs/common.h"

#include <pthread.h>
#include <stdbool.h>

#define EFS_PROGRESS_SAMPLES 32

struct efs_progress {
	pthread_mutex_t lock;
	bool enabled;
	bool drawn; /* the line holds a bar that has no newline yet */
	char label[96];
	int64_t total; /* bytes, or -1 while unknown */
	int64_t done;
	int64_t base; /* done at the start or the last set(): not transferred now */
	int64_t started_ns;
	int64_t last_draw_ns;
	/* Recent (time, done) samples: the rate is over the last few seconds. */
	int64_t sample_ns[EFS_PROGRESS_SAMPLES];
	int64_t sample_done[EFS_PROGRESS_SAMPLES];
	unsigned sample_next, sample_count;
};

/* Sets up a bar for @total bytes (-1: unknown) labelled @label (copied).
 * Nothing is drawn until bytes move. */
void efs_progress_init(struct efs_progress *p, bool enabled, const char *label, int64_t total);
/* Frees what the bar holds; draws nothing. */
void efs_progress_release(struct efs_progress *p);

/* Sets the bytes done to @done, e.g. what a resumed transfer already has,
 * or 0 when it starts over. A jump is not counted in the rate. */
void efs_progress_set(struct efs_progress *p, int64_t done);
/* Adds @delta bytes (negative when a failed request is retried). */
void efs_progress_add(struct efs_progress *p, int64_t delta);
/* Redraws if the last drawing is old enough, with no new bytes. */
void efs_progress_tick(struct efs_progress *p);
/* Ends the line: with @completed the final state (average rate and the
 * time taken) is drawn first; otherwise the line is just closed so an
 * error message starts on a line of its own. */
void efs_progress_end(struct efs_progress *p, bool completed);

#endif
