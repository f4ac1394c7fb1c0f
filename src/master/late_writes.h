/* SPDX-License-Identifier: MIT */
/* late_writes.h - replica writes this master gave up on, watched until the
 * copy each may still leave on its worker is settled.
 *
 * A chunk PUT given up in transport (timeout, stall, reset) may land on
 * its worker later: a healed link delivers what it held, and when it held
 * the whole request the worker stores it without seeing any stall, so it
 * does not report on its own. The master wrote the chunk elsewhere
 * meanwhile, so no replica row names that copy: a surplus the worker's
 * next full report would delete, but that report may have run before the
 * copy landed (a rejoin's, the one the next good write asks for), and the
 * next is REPORT_INTERVAL_MS (an hour) away.
 *
 * So each given-up write (worker, chunk) is remembered and checked from
 * ORPHAN_GRACE_MS + LATE_WRITE_MARGIN_MS after the give-up, then again at
 * growing intervals (1 s, doubling, at most 15 s) until
 * EFS_LATE_WRITES_WATCH_MS after it: when a replica row names that worker
 * for the chunk, the copy is a replica (a later write put it there) and
 * the watch ends. Otherwise, unless this master is writing the chunk right
 * now or the chunk has fewer good replicas on live workers than
 * REPLICATION_FACTOR (the copy is then left for repair or the worker's
 * next report, which adopts it), the worker is sent DELETE /chunks/{id} with X-Unmodified-For-Ms:
 * ORPHAN_GRACE_MS (measured on the worker's clock): 204, deleted, ends the
 * watch; 404 (not landed, or not yet), 412 (written within the grace: the
 * late copy is young, or an upload wrote it again) and failures are tried
 * again later. That is the rule a report's verdict applies to a copy no
 * replica row names (docs/LIFECYCLE.md, R4): only one older than
 * ORPHAN_GRACE_MS on the worker's clock goes, which keeps any master's
 * upload under way. A copy landing after the watch ends waits for a
 * report, as before. At most EFS_LATE_WRITES_MAX writes are watched; more
 * are logged and left to the reports.
 */
#ifndef ECHOFS_MASTER_LATE_WRITES_H
#define ECHOFS_MASTER_LATE_WRITES_H

#include "echofs/meta.h"
#include "echofs/ticker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define EFS_LATE_WRITES_MAX 4096
#define EFS_LATE_WRITES_WATCH_MS (5 * 60 * 1000)

struct efs_chunk_io;
struct efs_meta;

struct efs_late_write {
	char worker_id[EFS_ID_MAX + 1];
	char url[EFS_URL_MAX + 1];
	char chunk_id[65];
	int64_t given_up_ms; /* monotonic */
	int64_t next_ms;     /* monotonic: the next check */
	int64_t step_ms;     /* the wait after the next check */
};

struct efs_late_writes {
	struct efs_meta *meta;
	struct efs_chunk_io *chunk_io; /* transport, credentials, write guard */
	int64_t orphan_grace_ms;
	unsigned replication; /* REPLICATION_FACTOR */
	struct efs_ticker ticker;
	pthread_mutex_t lock; /* over the list */
	struct efs_late_write *list; /* EFS_LATE_WRITES_MAX, from start */
	size_t count;
	bool full_logged;
	_Atomic uint64_t deleted_total; /* late copies deleted */
};

/* Starts the watch (its own thread) over @chunk_io's workers. 0 or -errno.
 * A zeroed, never started struct is accepted by efs_late_writes_note (it
 * drops the note) and by efs_late_writes_stop. */
int efs_late_writes_start(struct efs_late_writes *lw, struct efs_meta *meta,
			  struct efs_chunk_io *chunk_io, int64_t orphan_grace_ms,
			  unsigned replication);
/* Stops the thread and frees the list. */
void efs_late_writes_stop(struct efs_late_writes *lw);
/* A write of @chunk_id to @worker_id at @url was given up in transport:
 * watch it (again from now, if it is watched already). True when it is
 * watched; false when the watch is not running or is full (the copy waits
 * for its worker's chunk report). Thread-safe; never blocks on I/O. */
bool efs_late_writes_note(struct efs_late_writes *lw, const char *worker_id, const char *url,
			  const char *chunk_id);

#endif
