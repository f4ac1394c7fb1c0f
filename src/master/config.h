/* SPDX-License-Identifier: MIT */
/* config.h - the master's configuration, read from the environment.
 * Every variable, its default and why: docs/OPERATIONS.md. */
#ifndef ECHOFS_MASTER_CONFIG_H
#define ECHOFS_MASTER_CONFIG_H

#include "echofs/aws.h"
#include "echofs/config.h"
#include "echofs/ec.h"
#include "echofs/log.h"
#include "echofs/meta.h"

#include <stdint.h>
#include <sys/socket.h>

struct efs_master_config {
	const char *host;
	uint16_t port;
	struct sockaddr_storage listen_addr;
	unsigned listen_addrlen;
	const char *database_url; /* NULL: SQLite under data_dir */
	/* DYNAMODB_*_TABLE: all three set for DynamoDB metadata, else NULL */
	struct efs_meta_dynamodb_config dynamodb;
	const char *data_dir;
	const char *redis_addr;   /* NULL: no Redis */
	int64_t redis_timeout_ms; /* REDIS_TIMEOUT_MS: deadline of each Redis step */
	const char *jwt_secret;
	/* KEYS_ENCRYPTION_KEY: 64 hex digits sealing the access keys' secrets
	 * (keyseal.h); NULL: a key derived from JWT_SECRET. */
	const char *keys_encryption_key;
	unsigned max_access_keys_per_user; /* MAX_ACCESS_KEYS_PER_USER */
	const char *cluster_secret;
	unsigned replication_factor;
	/* STORAGE_POLICY: how an upload that asks for no ?policy= stores its
	 * chunks (echofs/ec.h). Unset: replicas:REPLICATION_FACTOR; a
	 * "replicas:N" sets REPLICATION_FACTOR (both set must agree). */
	struct efs_policy default_policy;
	uint64_t chunk_size;
	uint64_t min_chunk_size; /* smallest chunk_size a session may ask for */
	uint64_t upload_memory;  /* chunk bytes of all uploads in flight together */
	uint64_t upload_memory_per_user; /* ... of one user's uploads in flight */
	unsigned header_timeout_ms; /* HEADER_TIMEOUT_MS: request headers complete within */
	int64_t shutdown_grace_ms;  /* SHUTDOWN_GRACE_MS: requests in flight at a stop */
	/* MASTER_HTTP_THREADS: 0, the API serves a thread per connection; N,
	 * N event threads and EFS_MASTER_HTTP_BLOCKING_THREADS threads for
	 * the handlers that wait (http_server.h, Threading). */
	unsigned http_threads;
	enum efs_log_level log_level;
	int64_t heartbeat_interval_ms;
	int64_t worker_dead_after_ms;
	int64_t repair_after_ms;
	int64_t session_ttl_ms;  /* SESSION_TTL, seconds in the environment */
	int64_t gc_grace_ms;     /* unreferenced chunks are kept this long */
	int64_t upload_idle_ms;  /* a one-request upload silent this long is dropped */
	int64_t orphan_grace_ms; /* unknown chunks on a worker younger than this are kept */
	uint64_t repair_bandwidth; /* bytes/s that re-replication may copy */
	/* Conversion of old replicated files to EC (ec_convert.h): files
	 * older than EC_AFTER (0: off) and of at least EC_MIN_SIZE bytes
	 * become EC_POLICY (an ec:K+M), paced to EC_CONVERT_BANDWIDTH. */
	int64_t ec_after_ms;
	struct efs_policy ec_policy;
	uint64_t ec_min_size;
	uint64_t ec_convert_bandwidth;
	uint64_t chunk_cache_size; /* bytes of verified chunks kept for reads; 0: none */
	int64_t history_interval_ms; /* the dashboard's charts: one sample this often */
	/* glibc malloc arenas at most (efs_daemon_malloc_arenas), set before
	 * any thread starts: each arena keeps its own freed memory, so the
	 * count bounds memory held free in them. */
	unsigned malloc_arena_max;
	/* Slow workers (placement.h): a transfer under this many bytes/s
	 * over the stall window is given up on when another worker can take
	 * it (0: only stalls are); a worker given up on is avoided this long. */
	int64_t slow_worker_min_rate; /* SLOW_WORKER_MIN_RATE */
	int64_t slow_worker_avoid_ms; /* SLOW_WORKER_AVOID_MS */
	/* REPLICA_BATCH_MAX_ITEMS: small replica writes per batch to a worker
	 * (master/replica_batch.h); 0: one PUT per replica. */
	unsigned replica_batch_items;
	struct efs_tls_config tls; /* HTTPS served with cert/key; workers verified with ca */
	enum efs_topology_audience topology; /* TOPOLOGY_VISIBLE_TO */
	/* S3_BUCKET_NAME: chunks in this bucket instead of on workers; NULL:
	 * on workers. @aws is loaded (AWS_REGION, credentials, endpoints)
	 * only when it is set. */
	const char *s3_bucket;
	struct efs_aws_config aws;
	/* The S3 API (docs/S3.md): S3_PORT on MASTER_HOST, 0 (unset): off.
	 * S3_DOMAIN: virtual-host addressing under it (NULL: path style
	 * only). AWS_REGION (us-east-1): the region it signs and answers for. */
	uint16_t s3_port;
	struct sockaddr_storage s3_listen_addr;
	unsigned s3_listen_addrlen;
	const char *s3_domain;
	const char *s3_region;
	int64_t s3_multipart_expiry_ms; /* S3_MULTIPART_EXPIRY: an upload left this long is aborted */
	/* S3_KEEPALIVE_MS: a Complete that copies parts answers 200 at once
	 * and sends a space this often until its document (s3_hold.h). */
	int64_t s3_keepalive_ms;
	/* The gRPC control plane (control.h): GRPC_PORT on MASTER_HOST (0:
	 * off; default 8090, 0 when TLS_CERT_FILE is set), and how long a
	 * worker whose stream broke stays suspect before it is dead
	 * (GRPC_STREAM_GRACE_MS). */
	uint16_t grpc_port;
	int64_t grpc_stream_grace_ms;
};

#define EFS_MASTER_DEFAULT_HEARTBEAT_MS 2000
/* With MASTER_HTTP_THREADS: the threads that run the API's waiting
 * handlers (each waits for the store or the workers, as a connection's
 * thread does without it): requests past this many wait their turn. */
#define EFS_MASTER_HTTP_BLOCKING_THREADS 64
#define EFS_MASTER_DEFAULT_DEAD_AFTER_MS 10000
#define EFS_MASTER_DEFAULT_GRPC_PORT 8090
#define EFS_MASTER_DEFAULT_GRPC_GRACE_MS 2000
#define EFS_MASTER_DEFAULT_REPAIR_AFTER_MS 600000
#define EFS_MASTER_DEFAULT_SESSION_TTL_S 86400
#define EFS_MASTER_DEFAULT_GC_GRACE_MS 10000
#define EFS_MASTER_DEFAULT_UPLOAD_IDLE_MS 900000
#define EFS_MASTER_DEFAULT_ORPHAN_GRACE_MS 3600000
#define EFS_MASTER_DEFAULT_REPAIR_BANDWIDTH (32 * 1024 * 1024)
#define EFS_MASTER_DEFAULT_EC_MIN_SIZE (4 * 1024 * 1024)
#define EFS_MASTER_DEFAULT_EC_CONVERT_BANDWIDTH (32 * 1024 * 1024)
#define EFS_MASTER_DEFAULT_CHUNK_CACHE_SIZE (64 * 1024 * 1024)
/* 360 samples of 10 s: the dashboard's charts cover the last hour. */
#define EFS_MASTER_DEFAULT_HISTORY_INTERVAL_MS 10000
/* MALLOC_ARENA_MAX: unset, the number of online CPUs but at least this. */
#define EFS_MASTER_MIN_MALLOC_ARENAS 2
#define EFS_MASTER_MAX_MALLOC_ARENAS 1024
#define EFS_MAX_CHUNK_SIZE (64 * 1024 * 1024)
/* A chunk list's cost is per chunk: below this a file's metadata outweighs
 * its bytes (MIN_CHUNK_SIZE lowers it, for tests only). */
#define EFS_MASTER_DEFAULT_MIN_CHUNK_SIZE (64 * 1024)
/* An upload (a session chunk request, or a one-request upload's first
 * chunk buffer) holds its chunk and its compressed copy: twice the chunk,
 * from this budget. At least one chunk of the largest size must fit. */
#define EFS_MASTER_DEFAULT_UPLOAD_MEMORY ((uint64_t)256 * 1024 * 1024)
#define EFS_MIN_UPLOAD_MEMORY ((uint64_t)2 * EFS_MAX_CHUNK_SIZE)
#define EFS_MAX_REPLICATION 16
/* Access keys one user may hold (POST /api/v1/keys answers 409 beyond). */
#define EFS_MASTER_DEFAULT_MAX_ACCESS_KEYS 100
#define EFS_MASTER_MAX_ACCESS_KEYS 10000

/* Reads the master's variables. 0, or -EINVAL with one line naming the
 * variable in @err. */
int efs_master_config_load(struct efs_master_config *cfg, char *err, size_t errlen);

#endif
