/* SPDX-License-Identifier: MIT */
/* pace.h - keep a background job at or below a byte rate.
 *
 * A job that reads or copies in steps (the worker's scrub, the master's
 * repair) counts the bytes of each step and waits as long as it is ahead
 * of @bytes_per_sec since it started, on the monotonic clock. It never
 * makes up for time lost: a slow step lets the next ones run unpaced only
 * until the average is back at the rate.
 */
#ifndef ECHOFS_PACE_H
#define ECHOFS_PACE_H

#include <stdint.h>

struct efs_pace {
	uint64_t bytes_per_sec; /* 0: no limit */
	uint64_t bytes;		/* counted since @started_ms */
	int64_t started_ms;	/* efs_mono_ms() at init */
};

/* Starts pacing now at @bytes_per_sec (0: never wait). */
void efs_pace_init(struct efs_pace *p, uint64_t bytes_per_sec);

/* Counts @bytes more and returns how many milliseconds the caller should
 * wait before its next step to stay at the rate: 0 when not ahead. The
 * caller waits (an efs_ticker_wait, so that a stop is not held up). */
int64_t efs_pace_add(struct efs_pace *p, uint64_t bytes);

/* efs_pace_add with the clock read by the caller: for tests. */
int64_t efs_pace_add_at(struct efs_pace *p, uint64_t bytes, int64_t now_ms);

#endif
