/* SPDX-License-Identifier: MIT */
/* worker.h - the worker process: its identity, its disk, its HTTP API and
 * its heartbeat loop to the master.
 *
 * worker.c owns every part and wires them: the background threads
 * (heartbeat, report, scrub) see only the worker context (context.h) and
 * the store, never this header or each other. Included by the API, the
 * routes, main.c and worker.c. */
#ifndef ECHOFS_WORKER_WORKER_H
#define ECHOFS_WORKER_WORKER_H

#include "echofs/auth.h"
#include "echofs/http_server.h"
#include "echofs/metrics.h"
#include "worker/config.h"
#include "worker/context.h"
#include "worker/fence.h"
#include "worker/heartbeat.h"
#include "worker/report.h"
#include "worker/scrub.h"
#include "worker/store.h"

#include <pthread.h>
#include <stdbool.h>

struct efs_worker {
	struct efs_worker_config cfg;
	struct efs_auth_keys keys;
	struct efs_store *store;
	struct efs_http_server *http;
	/* What the threads share: &cfg, store, the master link, lost chunks. */
	struct efs_worker_ctx ctx;
	struct efs_heartbeat heartbeat;
	struct efs_reporter report; /* its own thread */
	struct efs_scrub scrub;
	struct efs_fence fence; /* the newest lease epoch seen (fence.h) */
	struct efs_metrics *metrics; /* every HTTP request (http_server.c) */
	/* Payload bytes chunk GETs handed to sendfile (api.c). */
	_Atomic uint64_t chunk_bytes_sent_from_file;
	/* POST /chunks/batch requests answered, and the items they held (api.c). */
	_Atomic uint64_t batch_requests, batch_items;
};

/* Prepares the data directory, starts serving and the heartbeat loop. On
 * failure writes one line to @err; -EINVAL means configuration (exit 2). */
int efs_worker_start(struct efs_worker *w, const struct efs_worker_config *cfg, char *err,
		     size_t errlen);
/* Stops the heartbeat loop, finishes requests in flight, stops serving. */
void efs_worker_stop(struct efs_worker *w);

/* What the worker reports about its space (struct efs_worker_space,
 * context.h): efs_worker_ctx_space of its context. */
int efs_worker_space(const struct efs_worker *w, struct efs_worker_space *out);

/* The worker's route table (routes.c). */
extern const struct efs_http_route efs_worker_routes[];
extern const size_t efs_worker_route_count;

#endif
