/* SPDX-License-Identifier: MIT */
/* human.c - sizes, rates and durations as people read them. */
#include "cli/human.h"

#include <stdio.h>

char *efs_human_bytes(uint64_t bytes, char *out, size_t cap)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
	if (bytes < 1024) {
		snprintf(out, cap, "%llu B", (unsigned long long)bytes);
		return out;
	}
	double v = (double)bytes / 1024.0;
	size_t u = 0;
	while (v >= 1024.0 && u + 1 < EFS_ARRAY_SIZE(units)) {
		v /= 1024.0;
		u++;
	}
	snprintf(out, cap, "%.1f %s", v, units[u]);
	return out;
}

char *efs_human_duration(int64_t seconds, char *out, size_t cap)
{
	if (seconds < 0 || seconds > 99LL * 3600) {
		snprintf(out, cap, "--:--");
		return out;
	}
	long long h = seconds / 3600, m = seconds / 60 % 60, s = seconds % 60;
	if (h > 0)
		snprintf(out, cap, "%lld:%02lld:%02lld", h, m, s);
	else
		snprintf(out, cap, "%lld:%02lld", m, s);
	return out;
}
