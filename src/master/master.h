/* SPDX-License-Identifier: MIT */
/* master.h - the master process: wires the metadata store, the worker
 * registry and the HTTP API together. */
#ifndef ECHOFS_MASTER_MASTER_H
#define ECHOFS_MASTER_MASTER_H

#include "echofs/auth.h"
#include "echofs/http_server.h"
#include "echofs/meta.h"
#include "echofs/redis.h"
#include "echofs/metrics.h"
#include "master/cache.h"
#include "master/object_cache.h"
#include "master/chunk_backend.h"
#include "master/control.h"
#include "echofs/keyseal.h"
#include "master/config.h"
#include "master/download.h"
#include "master/ec_convert.h"
#include "master/gc.h"
#include "master/late_writes.h"
#include "master/history.h"
#include "master/placement.h"
#include "master/repair.h"
#include "master/stats_cache.h"
#include "master/registry.h"
#include "master/upload.h"
#include "master/upload_pipeline.h"
#include "master/upload_memory.h"

#include <stdatomic.h>

struct efs_chunk_cache;
struct efs_s3_auth;
struct efs_http_client;

/* Everything a master holds is here, created by efs_master_start and freed
 * by efs_master_stop: no module keeps state of its own, so two masters can
 * run in one process. */
struct efs_master {
	struct efs_master_config cfg;
	struct efs_meta *meta;
	struct efs_redis *redis; /* NULL without REDIS_ADDR */
	struct efs_registry registry;
	struct efs_auth_keys keys;
	/* Seals and opens the S3 access keys' secrets (KEYS_ENCRYPTION_KEY,
	 * or derived from JWT_SECRET): api_keys.c and the S3 listener. */
	struct efs_keyseal keyseal;
	struct efs_token_cache *tokens;		/* user tokens verified (keys.tokens) */
	struct efs_http_client *http_client;	/* calls to the workers (chunks, repair) */
	struct efs_placement placement;		/* over registry */
	struct efs_chunk_backend *chunks;	/* where chunk bytes live (workers) */
	struct efs_cache *cache;		/* file and session metadata */
	struct efs_object_cache *object_cache;	/* GetObject's reads (SQLite only) */
	struct efs_upload_budget upload_budget; /* extra buffers of all uploads */
	/* Chunk bytes of uploads in flight, both ways in (UPLOAD_MEMORY), and
	 * each user's share (UPLOAD_MEMORY_PER_USER). */
	struct efs_upload_memory upload_memory;
	struct efs_uploader uploader;		/* what storing a chunk needs */
	struct efs_reader_source reader_source; /* what downloads read from */
	struct efs_http_server *http;
	struct efs_control control; /* the gRPC control plane (GRPC_PORT) */
	/* The S3 API (S3_PORT): its listener and its request verifier (over
	 * the access keys @keyseal opens); both NULL without S3_PORT. */
	struct efs_http_server *s3_http;
	struct efs_s3_auth *s3_auth;
	struct efs_gc gc;
	struct efs_repair repair;
	struct efs_ec_converter ec_convert; /* run by repair's thread when EC_AFTER is set */
	struct efs_late_writes late_writes; /* the worker backend's given-up writes */
	struct efs_metrics *metrics; /* every HTTP request (http_server.c) */
	struct efs_master_counters counters;
	struct efs_chunk_cache *chunk_cache; /* NULL: CHUNK_CACHE_SIZE=0 */
	struct efs_stats_cache stats_cache;  /* the totals /metrics and /stats show */
	struct efs_history history;	     /* the dashboard's charts (stats/history) */
};

/* Opens the store and starts serving. On failure writes one line to @err
 * and returns -EINVAL (configuration: exit 2) or another -errno (exit 1). */
int efs_master_start(struct efs_master *m, const struct efs_master_config *cfg, char *err,
		     size_t errlen);
/* Finishes requests in flight, stops serving and closes the store. */
void efs_master_stop(struct efs_master *m);

/* The master's route table (routes.c). */
extern const struct efs_http_route efs_master_routes[];
extern const size_t efs_master_route_count;

#endif
