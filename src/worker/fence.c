/* SPDX-License-Identifier: MIT */
/* fence.c - the newest lease epoch a worker has seen, kept durably. */
#include "worker/fence.h"
#include "echofs/util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int efs_fence_open(struct efs_fence *f, const char *data_dir)
{
	char text[32];
	memset(f, 0, sizeof(*f));
	atomic_init(&f->refused, 0);
	int n = snprintf(f->path, sizeof(f->path), "%s/%s", data_dir, EFS_FENCE_FILE);
	if (n < 0 || (size_t)n >= sizeof(f->path))
		return -ENAMETOOLONG;
	long len = efs_read_file(f->path, text, sizeof(text));
	if (len == -ENOENT)
		len = 0; /* a new data directory: no epoch seen yet */
	else if (len < 0)
		return len == -E2BIG ? -EINVAL : (int)len;
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
		text[--len] = '\0';
	if (len > 0 && efs_parse_u64(text, false, &f->newest) < 0)
		return -EINVAL;
	pthread_mutex_init(&f->lock, NULL);
	return 0;
}

void efs_fence_close(struct efs_fence *f)
{
	pthread_mutex_destroy(&f->lock);
}

int efs_fence_admit(struct efs_fence *f, uint64_t epoch)
{
	int r = 0;
	pthread_mutex_lock(&f->lock);
	if (epoch < f->newest) {
		atomic_fetch_add(&f->refused, 1);
		r = -ESTALE;
	} else if (epoch > f->newest) {
		/* Durable before it is acted on: after a crash the worker
		 * still refuses what is older. Rare (once per lease move), so
		 * the fsync under the lock costs nothing in steady state. */
		char text[32];
		int n = snprintf(text, sizeof(text), "%llu\n", (unsigned long long)epoch);
		r = efs_write_file_atomic(f->path, text, (size_t)n);
		if (r == 0)
			f->newest = epoch;
	}
	pthread_mutex_unlock(&f->lock);
	return r;
}

uint64_t efs_fence_newest(struct efs_fence *f)
{
	pthread_mutex_lock(&f->lock);
	uint64_t newest = f->newest;
	pthread_mutex_unlock(&f->lock);
	return newest;
}
