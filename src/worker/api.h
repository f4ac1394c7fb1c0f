/* SPDX-License-Identifier: MIT */
/* api.h - the worker's HTTP handlers; routes.c maps them to paths. */
#ifndef ECHOFS_WORKER_API_H
#define ECHOFS_WORKER_API_H

#include "echofs/http_error.h"
#include "echofs/http_server.h"
#include "worker/worker.h"

/* Headers of the chunk protocol between master and workers. */
/* EFS_HDR_ENCODING, EFS_HDR_CRC32C: echofs/common.h (a pushed copy reads
 * the first too, heartbeat.c) */
#include "echofs/common.h"
#define EFS_HDR_UNMODIFIED "X-Unmodified-Since-Ms"   /* conditional DELETE, worker clock */
#define EFS_HDR_UNMODIFIED_FOR "X-Unmodified-For-Ms" /* conditional DELETE, a duration */

int efs_worker_api_health(struct efs_http_req *req);
int efs_worker_api_metrics(struct efs_http_req *req);
int efs_worker_api_chunk_put_begin(struct efs_http_req *req);
int efs_worker_api_chunk_put_body(struct efs_http_req *req, const char *data, size_t len);
int efs_worker_api_chunk_put(struct efs_http_req *req);
/* POST /chunks/batch: several small chunks (echofs/chunk_batch.h) under
 * one group commit; a buffered route capped at EFS_CHUNK_BATCH_MAX_BODY. */
int efs_worker_api_chunk_batch(struct efs_http_req *req);
int efs_worker_api_chunk_get(struct efs_http_req *req);
int efs_worker_api_chunk_head(struct efs_http_req *req);
int efs_worker_api_chunk_delete(struct efs_http_req *req);

#endif
