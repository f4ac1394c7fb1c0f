/* SPDX-License-Identifier: MIT */
/* fence.h - the worker's side of fencing: the newest lease epoch it has
 * seen, and the check of each background duty's instruction against it.
 *
 * A master holding the lease for background duties sends its lease epoch
 * (EFS_HDR_LEASE_EPOCH) with every instruction of a duty: a collector's
 * DELETE, a repair copy's PUT. The epoch grows each time the lease
 * changes hands, so an instruction carrying an older epoch than one this
 * worker has already seen comes from a master that lost the lease (cut
 * off from its database, paused, or delayed in the network) and is
 * refused. The newest epoch is kept in WORKER_DATA_DIR/lease_epoch,
 * written durably (efs_write_file_atomic: fsync, rename, fsync of the
 * directory) before an instruction carrying it is admitted, so a restart
 * does not forget it and a stale instruction arriving after the restart
 * is still refused. docs/OPERATIONS.md#fencing.
 */
#ifndef ECHOFS_WORKER_FENCE_H
#define ECHOFS_WORKER_FENCE_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define EFS_FENCE_FILE "lease_epoch"

struct efs_fence {
	pthread_mutex_t lock;
	char path[PATH_MAX];	  /* WORKER_DATA_DIR/lease_epoch */
	uint64_t newest;	  /* under lock; 0: none seen yet */
	_Atomic uint64_t refused; /* instructions refused since start */
};

/* Loads the newest epoch from @data_dir (none when the file is absent).
 * -EINVAL when the file is there but not a decimal number (the worker
 * refuses to start rather than forget it), -ENAMETOOLONG, or 0. */
int efs_fence_open(struct efs_fence *f, const char *data_dir);
void efs_fence_close(struct efs_fence *f);

/* Admits an instruction carrying lease epoch @epoch (>= 1): 0 when it is
 * the newest seen or newer (a newer one is written durably first);
 * -ESTALE when older than the newest (counted in @refused; nothing to
 * do); another -errno when a newer epoch could not be recorded (the
 * instruction must not run: a restart would forget the epoch). Any
 * thread. */
int efs_fence_admit(struct efs_fence *f, uint64_t epoch);

/* The newest epoch seen (0: none). Any thread. */
uint64_t efs_fence_newest(struct efs_fence *f);

#endif
