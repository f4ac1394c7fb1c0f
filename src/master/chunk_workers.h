/* SPDX-License-Identifier: MIT */
/* chunk_workers.h - the worker cluster as a chunk backend
 * (chunk_backend.h): chunks on REPLICATION_FACTOR workers, placed by
 * placement.c, written and read by chunk_io.c, their copies recorded as
 * replica rows in the metadata.
 *
 * What only this backend has stays inside it: placement and the load per
 * worker, replica rows (marked bad on a failed read, good again on a good
 * one), worker liveness, the in-flight write guard the workers' reports
 * respect (pin/unpin), and the transport (HTTP with the cluster secret and
 * cluster id). Repair (repair.c) and the reports (api_workers.c) are this
 * backend's own duties: they reach its chunk_io through
 * efs_chunk_workers_io.
 */
#ifndef ECHOFS_MASTER_CHUNK_WORKERS_H
#define ECHOFS_MASTER_CHUNK_WORKERS_H

#include "master/chunk_backend.h"

struct efs_chunk_io;
struct efs_http_client;
struct efs_placement;

/* What the worker backend works with, all borrowed from the master (which
 * outlives it); strings are copied. */
struct efs_control;

struct efs_chunk_workers_config {
	struct efs_meta *meta;		 /* replica rows marked bad / good */
	struct efs_placement *placement; /* targets of writes */
	struct efs_http_client *http;	 /* calls to the workers */
	const char *cluster_secret;	 /* their credential (borrowed) */
	const char *cluster_id;		 /* sent on every call; NULL: none */
	int64_t worker_dead_after_ms;	 /* a replica is alive within this of its heartbeat */
	unsigned replication_factor;	 /* copies each chunk gets */
	/* The gRPC control plane: replica deletes go down a worker's stream
	 * when it has one (NULL, or no stream: HTTP). */
	struct efs_control *control;
	/* REPLICA_BATCH_MAX_ITEMS: small replica writes of concurrent uploads
	 * go to each worker in batches of up to this many (replica_batch.h);
	 * 0: one PUT per replica. */
	unsigned replica_batch_items;
};

/* The worker backend over @cfg. 0 or -ENOMEM. */
int efs_chunk_workers_new(const struct efs_chunk_workers_config *cfg,
			  struct efs_chunk_backend **out);

/* The worker backend's transfers and write guard, for the duties that
 * exist only with workers (repair, reports, the late-write watch: master.c
 * wires them); NULL when @b is another backend. Request handlers go
 * through chunk_backend.h only. */
struct efs_chunk_io *efs_chunk_workers_io(struct efs_chunk_backend *b);

#endif
