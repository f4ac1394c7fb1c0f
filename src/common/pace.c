/* SPDX-License-Identifier: MIT */
/* pace.c - byte-rate pacing for background jobs (see pace.h). */
#include "echofs/pace.h"
#include "echofs/util.h"

void efs_pace_init(struct efs_pace *p, uint64_t bytes_per_sec)
{
	p->bytes_per_sec = bytes_per_sec;
	p->bytes = 0;
	p->started_ms = efs_mono_ms();
}

int64_t efs_pace_add_at(struct efs_pace *p, uint64_t bytes, int64_t now_ms)
{
	p->bytes += bytes;
	if (p->bytes_per_sec == 0)
		return 0;
	/* When the bytes so far are due, without bytes * 1000 overflowing. */
	uint64_t rate = p->bytes_per_sec;
	uint64_t whole = p->bytes / rate, part = p->bytes % rate;
	if (whole > (uint64_t)INT64_MAX / 1000 - 1)
		return INT64_MAX;
	/* part < rate, so its share is under 1000 ms (in double: part * 1000
	 * could overflow for rates past 2^54 bytes per second). */
	int64_t due_ms = (int64_t)(whole * 1000) + (int64_t)((double)part * 1000.0 / (double)rate);
	int64_t ahead = due_ms - (now_ms - p->started_ms);
	return ahead > 0 ? ahead : 0;
}

int64_t efs_pace_add(struct efs_pace *p, uint64_t bytes)
{
	return efs_pace_add_at(p, bytes, efs_mono_ms());
}
