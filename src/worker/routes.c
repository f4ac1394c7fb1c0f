/* SPDX-License-Identifier: MIT */
/* routes.c - every endpoint of the worker, in one table. All but /metrics
 * need the cluster secret; Prometheus scrapes without credentials (see
 * docs/OPERATIONS.md). */
#include "worker/api.h"
#include "echofs/chunk_batch.h"

const struct efs_http_route efs_worker_routes[] = {
	{"GET", "/health", EFS_AUTH_CLUSTER, .handle = efs_worker_api_health},
	{"GET", "/metrics", EFS_AUTH_NONE, .handle = efs_worker_api_metrics},
	/* Before /chunks/{chunkId}, which a POST does not match anyway. */
	{"POST", "/chunks/batch", EFS_AUTH_CLUSTER, .handle = efs_worker_api_chunk_batch,
	 .max_body = EFS_CHUNK_BATCH_MAX_BODY},
	{"PUT", "/chunks/{chunkId}", EFS_AUTH_CLUSTER, .begin = efs_worker_api_chunk_put_begin,
	 .body = efs_worker_api_chunk_put_body, .handle = efs_worker_api_chunk_put},
	{"GET", "/chunks/{chunkId}", EFS_AUTH_CLUSTER, .handle = efs_worker_api_chunk_get},
	{"HEAD", "/chunks/{chunkId}", EFS_AUTH_CLUSTER, .handle = efs_worker_api_chunk_head},
	{"DELETE", "/chunks/{chunkId}", EFS_AUTH_CLUSTER, .handle = efs_worker_api_chunk_delete},
};

const size_t efs_worker_route_count = sizeof(efs_worker_routes) / sizeof(efs_worker_routes[0]);
