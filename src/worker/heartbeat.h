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
 */
#ifndef ECHOFS_WORKER_HEARTBEAT_H
#define ECHOFS_WORKER_HEARTBEAT_H

#include "echofs/common.h"
#include "echofs/ticker.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct efs_worker;
struct efs_http_call;
struct efs_http_client;

struct efs_heartbeat {
	struct efs_worker *worker;
	struct efs_http_client *http; /* the worker's calls to the masters run on it */
	struct efs_ticker ticker;
	pthread_mutex_t lock;
	/* Guarded by lock. */
	char worker_id[EFS_ID_MAX + 1]; /* "" until the first registration */
	bool registered;
	unsigned master_index; /* the master being talked to */
	int64_t interval_ms;
	int64_t next_report_ms; /* monotonic: when the next full report is due */
};

/* Loads the stored id (if any), creates the HTTP client and starts the
 * thread. 0 or -errno. */
int efs_heartbeat_start(struct efs_heartbeat *hb, struct efs_worker *worker);
/* Stops and joins the thread and frees the HTTP client. */
void efs_heartbeat_stop(struct efs_heartbeat *hb);
/* POSTs @body (stolen) as JSON to @path on the current master with the
 * cluster secret. 0 with call->status set (release the call after), or
 * the transport error. */
int efs_heartbeat_post(struct efs_heartbeat *hb, struct efs_http_call *call, const char *path,
		       json_t *body);

/* Copies the current id (EFS_ID_MAX + 1 bytes) and registration state. */
void efs_heartbeat_status(struct efs_heartbeat *hb, char *worker_id, bool *registered);

#endif
