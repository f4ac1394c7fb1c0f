/* SPDX-License-Identifier: MIT */
/* report.h - telling the master what this worker holds (after HDFS block
 * reports), and which chunks its scrubber found corrupt.
 *
 * A full report lists every chunk (id, last write time) in batches of
 * 5000; the master answers each batch with the chunks to delete (surplus,
 * unreferenced, or unknown and older than its orphan grace), which are
 * deleted unless written after the report began. The last batch lets the
 * master mark what the worker no longer holds. Full reports go out after
 * every registration and every REPORT_INTERVAL_MS; corrupt chunks after
 * the next heartbeat.
 */
#ifndef ECHOFS_WORKER_REPORT_H
#define ECHOFS_WORKER_REPORT_H

#include "echofs/common.h"

#include <pthread.h>

struct efs_heartbeat;

/* Chunks the scrubber quarantined, waiting to be reported. */
#define EFS_LOST_MAX 4096
struct efs_lost_queue {
	pthread_mutex_t lock;
	char (*ids)[65];
	size_t count;
};

int efs_lost_queue_init(struct efs_lost_queue *q);
void efs_lost_queue_release(struct efs_lost_queue *q);
/* Queues a chunk id (dropped when the queue is full: the next full report
 * finds the chunk missing anyway). */
void efs_lost_queue_push(struct efs_lost_queue *q, const char *chunk_id);

/* Called by the heartbeat thread after each successful beat: sends a full
 * report when one is due, otherwise the queued lost chunks, if any. */
void efs_report_tick(struct efs_heartbeat *hb);

#endif
