/* SPDX-License-Identifier: MIT */
/* heartbeat.h - the worker's side of membership: registration, heartbeats,
 * master failover, and the worker id kept in WORKER_DATA_DIR/worker_id.
 *
 * A thread registers with the first master that answers (trying the
 * MASTER_URL list in turn, backing off from 100 ms to 5 s while none
 * does), then beats every heartbeat_interval_ms the master asked for. A
 * 404 on a heartbeat means the master forgot the worker: it registers
 * again, under the same id. The id the master assigns on the very first
 * registration is written to the data directory before it is used, so a
 * restarted worker comes back as itself.
 *
 * The registration state lives in the worker context (context.h), where
 * the chunk report and the API read it. After each successful beat the
 * thread calls the context's after_beat hook; every (re)registration sets
 * its full_report_due.
 */
#ifndef ECHOFS_WORKER_HEARTBEAT_H
#define ECHOFS_WORKER_HEARTBEAT_H

#include "echofs/common.h"
#include "echofs/ticker.h"
#include "worker/config.h"

#include <stdbool.h>
#include <stdint.h>

struct efs_worker_ctx;

struct efs_heartbeat {
	struct efs_worker_ctx *ctx;
	struct efs_ticker ticker;
	int64_t interval_ms;
	/* A refusal (another cluster's master) was logged for this master
	 * index: once per master URL. */
	bool refused_logged[EFS_MAX_MASTERS];
};

/* Loads the stored id (if any) into @ctx and starts the thread. 0 or
 * -errno. */
int efs_heartbeat_start(struct efs_heartbeat *hb, struct efs_worker_ctx *ctx);
/* Stops and joins the thread. */
void efs_heartbeat_stop(struct efs_heartbeat *hb);

#endif
