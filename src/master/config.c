/* SPDX-License-Identifier: MIT */
/* config.c - the master's environment variables. */
#include "master/config.h"
#include "echofs/keyseal.h"
#include "echofs/config.h"
#include "echofs/http_server.h"
#include "echofs/redis.h"
#include "echofs/util.h"
#include "master/placement.h"
#include "master/replica_batch.h"
#include "echofs/chunk_batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* DynamoDB metadata: the three tables together or none; not with
 * DATABASE_URL. Chunks in S3 (S3_BUCKET_NAME) or on workers, both. */
/* STORAGE_POLICY, after REPLICATION_FACTOR (issue 17). */
static int load_storage_policy(struct efs_master_config *cfg, char *err, size_t errlen)
{
	const char *text = NULL;
	int r = efs_env_string("STORAGE_POLICY", NULL, false, &text, err, errlen);
	if (r < 0)
		return r;
	memset(&cfg->default_policy, 0, sizeof(cfg->default_policy));
	cfg->default_policy.kind = EFS_POLICY_REPLICAS;
	cfg->default_policy.replicas = cfg->replication_factor;
	if (!text)
		return 0;
	if (efs_ec_policy_parse(text, &cfg->default_policy) < 0) {
		snprintf(err, errlen,
			 "STORAGE_POLICY: '%.32s' is not replicas:N (1-%u) or ec:K+M (K, M >= 1, "
			 "K + M <= %u)",
			 text, EFS_POLICY_MAX_REPLICAS, EFS_EC_MAX_SHARDS);
		return -EINVAL;
	}
	if (cfg->default_policy.kind == EFS_POLICY_REPLICAS) {
		if (getenv("REPLICATION_FACTOR") &&
		    cfg->default_policy.replicas != cfg->replication_factor) {
			snprintf(err, errlen,
				 "STORAGE_POLICY %s and REPLICATION_FACTOR %u disagree: set one",
				 text, cfg->replication_factor);
			return -EINVAL;
		}
		cfg->replication_factor = cfg->default_policy.replicas;
	}
	return 0;
}

/* A duration: decimal digits and a unit (ms, s, m, h, d; none: seconds),
 * at most 10 years. 0 or -EINVAL. */
static int duration_parse(const char *text, int64_t *out_ms)
{
	static const struct {
		const char *unit;
		int64_t ms;
	} units[] = {{"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000},
		     {"d", 86400000}};
	uint64_t n = 0;
	const char *p = text;
	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		n = n * 10 + (uint64_t)(*p - '0');
		if (n > 10ULL * 365 * 86400000)
			return -EINVAL;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(p, units[i].unit) == 0) {
			if (n * (uint64_t)units[i].ms > 10ULL * 365 * 86400000)
				return -EINVAL;
			*out_ms = (int64_t)n * units[i].ms;
			return 0;
		}
	return -EINVAL;
}

/* EC_AFTER, EC_POLICY, EC_MIN_SIZE, EC_CONVERT_BANDWIDTH (issue 17). */
static int load_ec_convert(struct efs_master_config *cfg, char *err, size_t errlen)
{
	const char *text = NULL;
	int r = efs_env_string("EC_AFTER", NULL, false, &text, err, errlen);
	if (r < 0)
		return r;
	cfg->ec_after_ms = 0;
	if (text && duration_parse(text, &cfg->ec_after_ms) < 0) {
		snprintf(err, errlen,
			 "EC_AFTER: '%.32s' is not a duration (digits and ms, s, m, h or d; 0: "
			 "off)",
			 text);
		return -EINVAL;
	}
	if ((r = efs_env_string("EC_POLICY", "ec:4+2", false, &text, err, errlen)) < 0)
		return r;
	if (efs_ec_policy_parse(text, &cfg->ec_policy) < 0 ||
	    cfg->ec_policy.kind != EFS_POLICY_EC ||
	    cfg->ec_policy.data_shards + cfg->ec_policy.parity_shards > EFS_MAX_REPLICAS) {
		snprintf(err, errlen, "EC_POLICY: '%.32s' is not ec:K+M (K, M >= 1, K + M <= %u)",
			 text, EFS_MAX_REPLICAS);
		return -EINVAL;
	}
	if ((r = efs_env_u64("EC_MIN_SIZE", EFS_MASTER_DEFAULT_EC_MIN_SIZE, 0, UINT64_MAX >> 2,
			     true, &cfg->ec_min_size, err, errlen)) < 0 ||
	    (r = efs_env_u64("EC_CONVERT_BANDWIDTH", EFS_MASTER_DEFAULT_EC_CONVERT_BANDWIDTH, 1024,
			     UINT64_MAX >> 2, true, &cfg->ec_convert_bandwidth, err, errlen)) < 0)
		return r;
	return 0;
}

static int load_dynamodb(struct efs_master_config *cfg, char *err, size_t errlen)
{
	static const char *const vars[3] = {"DYNAMODB_FILES_TABLE", "DYNAMODB_CHUNKS_TABLE",
					    "DYNAMODB_SESSIONS_TABLE"};
	const char *values[3];
	int set = 0, r;
	for (int i = 0; i < 3; i++) {
		if ((r = efs_env_string(vars[i], NULL, false, &values[i], err, errlen)) < 0)
			return r;
		set += values[i] != NULL;
	}
	if (set == 0)
		return 0;
	for (int i = 0; i < 3; i++)
		if (!values[i]) {
			snprintf(err, errlen,
				 "%s is not set: DynamoDB metadata needs DYNAMODB_FILES_TABLE,"
				 " DYNAMODB_CHUNKS_TABLE and DYNAMODB_SESSIONS_TABLE",
				 vars[i]);
			return -EINVAL;
		}
	if (cfg->database_url) {
		snprintf(err, errlen,
			 "DATABASE_URL and DYNAMODB_*_TABLE are both set: choose one metadata store");
		return -EINVAL;
	}
	cfg->dynamodb.files_table = values[0];
	cfg->dynamodb.chunks_table = values[1];
	cfg->dynamodb.sessions_table = values[2];
	return 0;
}

/* S3's rule for the bucket names EchoFS accepts (s3.c checks it again). */
static bool s3_bucket_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n < 3 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
		      name[i] == '.' || name[i] == '-'))
			return false;
	return true;
}

/* The S3 API's listener: S3_PORT, S3_DOMAIN, AWS_REGION. */
static int load_s3_api(struct efs_master_config *cfg, char *err, size_t errlen)
{
	uint64_t port, expiry_s;
	int r;
	if ((r = efs_env_u64("S3_PORT", 0, 0, 65535, false, &port, err, errlen)) < 0 ||
	    (r = efs_env_string("S3_DOMAIN", NULL, false, &cfg->s3_domain, err, errlen)) < 0 ||
	    (r = efs_env_string("AWS_REGION", "us-east-1", false, &cfg->s3_region, err, errlen)) <
		    0)
		return r;
	cfg->s3_port = (uint16_t)port;
	/* S3 keeps incomplete uploads until a lifecycle rule aborts them; a
	 * week bounds what abandoned parts hold (tests set seconds). */
	if ((r = efs_env_u64("S3_MULTIPART_EXPIRY", 7 * 86400, 1, 365LL * 86400, false, &expiry_s,
			     err, errlen)) < 0)
		return r;
	cfg->s3_multipart_expiry_ms = (int64_t)expiry_s * 1000;
	/* Well inside the common clients' read timeouts (60 s for the aws CLI
	 * and boto3, 300 s for s3cmd, 5 min for rclone) and the server's own
	 * 60 s idle timeout: at most half of either. */
	uint64_t keepalive;
	if ((r = efs_env_u64("S3_KEEPALIVE_MS", 5000, 10, 30000, false, &keepalive, err,
			     errlen)) < 0)
		return r;
	cfg->s3_keepalive_ms = (int64_t)keepalive;
	if (cfg->s3_port && cfg->s3_port == cfg->port) {
		snprintf(err, errlen, "S3_PORT (%u) must differ from MASTER_PORT", cfg->s3_port);
		return -EINVAL;
	}
	if (cfg->s3_domain && (!*cfg->s3_domain || strlen(cfg->s3_domain) > 200 ||
			       strchr(cfg->s3_domain, ':') || strchr(cfg->s3_domain, '/'))) {
		snprintf(err, errlen, "S3_DOMAIN: '%.64s' is not a host name (e.g. s3.example.com)",
			 cfg->s3_domain);
		return -EINVAL;
	}
	if (!cfg->s3_port)
		return 0;
	return efs_env_listen_host("MASTER_HOST", "0.0.0.0", cfg->s3_port, &cfg->s3_listen_addr,
				   &cfg->s3_listen_addrlen, err, errlen);
}

/* The control plane's listener: GRPC_PORT (0: off), GRPC_STREAM_GRACE_MS. */
static int load_grpc(struct efs_master_config *cfg, char *err, size_t errlen)
{
	uint64_t port, grace;
	int r;
	/* With TLS_CERT_FILE the control plane serves TLS from the same files
	 * (control.c): never plaintext beside HTTPS. */
	if ((r = efs_env_u64("GRPC_PORT", EFS_MASTER_DEFAULT_GRPC_PORT, 0, 65535, false, &port,
			     err, errlen)) < 0 ||
	    (r = efs_env_u64("GRPC_STREAM_GRACE_MS", EFS_MASTER_DEFAULT_GRPC_GRACE_MS, 0, 3600000,
			     false, &grace, err, errlen)) < 0)
		return r;
	cfg->grpc_port = (uint16_t)port;
	cfg->grpc_stream_grace_ms = (int64_t)grace;
	if (cfg->grpc_port && (cfg->grpc_port == cfg->port || cfg->grpc_port == cfg->s3_port)) {
		snprintf(err, errlen, "GRPC_PORT (%u) must differ from MASTER_PORT and S3_PORT",
			 cfg->grpc_port);
		return -EINVAL;
	}
	return 0;
}

int efs_master_config_load(struct efs_master_config *cfg, char *err, size_t errlen)
{
	uint64_t v;
	int r;

	memset(cfg, 0, sizeof(*cfg));
	if ((r = efs_env_port("MASTER_PORT", 8080, &cfg->port, err, errlen)) < 0 ||
	    (r = efs_env_string("MASTER_HOST", "0.0.0.0", false, &cfg->host, err, errlen)) < 0 ||
	    (r = efs_env_listen_host("MASTER_HOST", "0.0.0.0", cfg->port, &cfg->listen_addr,
				     &cfg->listen_addrlen, err, errlen)) < 0 ||
	    (r = efs_env_string("DATABASE_URL", NULL, false, &cfg->database_url, err, errlen)) <
		    0 ||
	    (r = efs_env_string("DATA_DIR", "./data/master", false, &cfg->data_dir, err,
				errlen)) < 0 ||
	    (r = efs_env_string("REDIS_ADDR", NULL, false, &cfg->redis_addr, err, errlen)) < 0 ||
	    (r = efs_env_string("JWT_SECRET", NULL, true, &cfg->jwt_secret, err, errlen)) < 0 ||
	    (r = efs_env_string("CLUSTER_SECRET", NULL, true, &cfg->cluster_secret, err,
				errlen)) < 0 ||
	    (r = efs_env_log_level("LOG_LEVEL", EFS_LOG_INFO, &cfg->log_level, err, errlen)) < 0 ||
	    (r = efs_env_topology("TOPOLOGY_VISIBLE_TO", EFS_TOPOLOGY_USERS, &cfg->topology, err,
				  errlen)) < 0)
		return r;

	if ((r = efs_env_tls(&cfg->tls, err, errlen)) < 0)
		return r;
	if ((r = efs_env_string("KEYS_ENCRYPTION_KEY", NULL, false, &cfg->keys_encryption_key, err,
				errlen)) < 0)
		return r;
	if (cfg->keys_encryption_key) {
		struct efs_keyseal probe;
		if (efs_keyseal_init_hex(&probe, cfg->keys_encryption_key) < 0) {
			snprintf(err, errlen,
				 "KEYS_ENCRYPTION_KEY: must be 64 hex digits (32 bytes, e.g. from "
				 "'openssl rand -hex 32')");
			return -EINVAL;
		}
		efs_keyseal_release(&probe);
	}
	if ((r = efs_env_u64("MAX_ACCESS_KEYS_PER_USER", EFS_MASTER_DEFAULT_MAX_ACCESS_KEYS, 1,
			     EFS_MASTER_MAX_ACCESS_KEYS, false, &v, err, errlen)) < 0)
		return r;
	cfg->max_access_keys_per_user = (unsigned)v;
	if ((r = efs_env_u64("HEADER_TIMEOUT_MS", EFS_HTTP_DEFAULT_HEADER_TIMEOUT_MS,
			     EFS_HTTP_MIN_HEADER_TIMEOUT_MS, EFS_HTTP_MAX_HEADER_TIMEOUT_MS, false, &v,
			     err, errlen)) < 0)
		return r;
	cfg->header_timeout_ms = (unsigned)v;
	if ((r = efs_env_u64("SHUTDOWN_GRACE_MS", EFS_HTTP_DEFAULT_SHUTDOWN_GRACE_MS, 0,
			     EFS_HTTP_MAX_SHUTDOWN_GRACE_MS, false, &v, err, errlen)) < 0)
		return r;
	cfg->shutdown_grace_ms = (int64_t)v;
	if ((r = efs_env_u64("MASTER_HTTP_THREADS", 0, 0, EFS_HTTP_MAX_EVENT_THREADS, false, &v,
			     err, errlen)) < 0)
		return r;
	cfg->http_threads = (unsigned)v;
	if (cfg->redis_addr) {
		char host[256];
		uint16_t port;
		if (efs_redis_parse_addr(cfg->redis_addr, host, sizeof(host), &port) < 0) {
			snprintf(err, errlen, "REDIS_ADDR: '%.64s' is not host:port", cfg->redis_addr);
			return -EINVAL;
		}
	}
	if ((r = efs_env_u64("REDIS_TIMEOUT_MS", EFS_REDIS_DEFAULT_TIMEOUT_MS, 1, 60000, false, &v,
			     err, errlen)) < 0)
		return r;
	cfg->redis_timeout_ms = (int64_t)v;
	if ((r = efs_env_u64("REPLICATION_FACTOR", 3, 1, EFS_MAX_REPLICATION, false, &v, err,
			     errlen)) < 0)
		return r;
	cfg->replication_factor = (unsigned)v;
	if ((r = load_storage_policy(cfg, err, errlen)) < 0)
		return r;
	if ((r = efs_env_u64("MIN_CHUNK_SIZE", EFS_MASTER_DEFAULT_MIN_CHUNK_SIZE, 1,
			     EFS_MAX_CHUNK_SIZE, true, &cfg->min_chunk_size, err, errlen)) < 0 ||
	    (r = efs_env_u64("CHUNK_SIZE", 1024 * 1024, 1, EFS_MAX_CHUNK_SIZE, true,
			     &cfg->chunk_size, err, errlen)) < 0 ||
	    (r = efs_env_u64("UPLOAD_MEMORY", EFS_MASTER_DEFAULT_UPLOAD_MEMORY,
			     EFS_MIN_UPLOAD_MEMORY, (uint64_t)1 << 40, true,
			     &cfg->upload_memory, err, errlen)) < 0)
		return r;
	/* One user's share: a quarter of the whole, but at least one chunk of
	 * the largest size (with its compressed copy). */
	uint64_t share = EFS_MIN(cfg->upload_memory,
				 EFS_MAX(cfg->upload_memory / 4, EFS_MIN_UPLOAD_MEMORY));
	if ((r = efs_env_u64("UPLOAD_MEMORY_PER_USER", share, EFS_MIN_UPLOAD_MEMORY,
			     cfg->upload_memory, true, &cfg->upload_memory_per_user, err,
			     errlen)) < 0)
		return r;
	if (cfg->chunk_size < cfg->min_chunk_size) {
		snprintf(err, errlen, "CHUNK_SIZE (%llu) must be at least MIN_CHUNK_SIZE (%llu)",
			 (unsigned long long)cfg->chunk_size,
			 (unsigned long long)cfg->min_chunk_size);
		return -EINVAL;
	}
	if ((r = efs_env_u64("HEARTBEAT_INTERVAL_MS", EFS_MASTER_DEFAULT_HEARTBEAT_MS, 10,
			     3600000, false, &v, err, errlen)) < 0)
		return r;
	cfg->heartbeat_interval_ms = (int64_t)v;
	if ((r = efs_env_u64("WORKER_DEAD_AFTER_MS", EFS_MASTER_DEFAULT_DEAD_AFTER_MS, 10,
			     86400000, false, &v, err, errlen)) < 0)
		return r;
	cfg->worker_dead_after_ms = (int64_t)v;
	if ((r = efs_env_u64("REPAIR_AFTER_MS", EFS_MASTER_DEFAULT_REPAIR_AFTER_MS, 0,
			     30LL * 86400000, false, &v, err, errlen)) < 0)
		return r;
	cfg->repair_after_ms = (int64_t)v;
	if ((r = efs_env_u64("SESSION_TTL", EFS_MASTER_DEFAULT_SESSION_TTL_S, 1, 30LL * 86400,
			     false, &v, err, errlen)) < 0)
		return r;
	cfg->session_ttl_ms = (int64_t)v * 1000;
	if ((r = efs_env_u64("GC_GRACE_MS", EFS_MASTER_DEFAULT_GC_GRACE_MS, 0, 7LL * 86400000,
			     false, &v, err, errlen)) < 0)
		return r;
	cfg->gc_grace_ms = (int64_t)v;
	if ((r = efs_env_u64("UPLOAD_IDLE_TIMEOUT_MS", EFS_MASTER_DEFAULT_UPLOAD_IDLE_MS, 1000,
			     7LL * 86400000, false, &v, err, errlen)) < 0)
		return r;
	cfg->upload_idle_ms = (int64_t)v;
	if ((r = efs_env_u64("ORPHAN_GRACE_MS", EFS_MASTER_DEFAULT_ORPHAN_GRACE_MS, 0,
			     30LL * 86400000, false, &v, err, errlen)) < 0)
		return r;
	cfg->orphan_grace_ms = (int64_t)v;
	if ((r = efs_env_u64("REPAIR_BANDWIDTH", EFS_MASTER_DEFAULT_REPAIR_BANDWIDTH, 1024,
			     UINT64_MAX >> 2, true, &cfg->repair_bandwidth, err, errlen)) < 0)
		return r;
	if ((r = load_ec_convert(cfg, err, errlen)) < 0)
		return r;
	if ((r = efs_env_u64("CHUNK_CACHE_SIZE", EFS_MASTER_DEFAULT_CHUNK_CACHE_SIZE, 0,
			     (uint64_t)16 << 30, true, &cfg->chunk_cache_size, err, errlen)) < 0)
		return r;
	/* One malloc arena per CPU (at least 2) rather than glibc's 8 per CPU:
	 * docs/OPERATIONS.md, "Memory". */
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t arenas_default =
	    cpus > EFS_MASTER_MIN_MALLOC_ARENAS ? (uint64_t)cpus : EFS_MASTER_MIN_MALLOC_ARENAS;
	if ((r = efs_env_u64("MALLOC_ARENA_MAX", arenas_default, 1, EFS_MASTER_MAX_MALLOC_ARENAS,
			     false, &v, err, errlen)) < 0)
		return r;
	cfg->malloc_arena_max = (unsigned)v;
	if ((r = efs_env_u64("HISTORY_INTERVAL_MS", EFS_MASTER_DEFAULT_HISTORY_INTERVAL_MS, 100,
			     3600000, false, &v, err, errlen)) < 0)
		return r;
	cfg->history_interval_ms = (int64_t)v;
	if ((r = efs_env_u64("SLOW_WORKER_MIN_RATE", EFS_PLACEMENT_DEFAULT_SLOW_MIN_RATE, 0,
			     (uint64_t)1 << 40, true, &v, err, errlen)) < 0)
		return r;
	cfg->slow_worker_min_rate = (int64_t)v;
	if ((r = efs_env_u64("SLOW_WORKER_AVOID_MS", EFS_PLACEMENT_DEFAULT_SLOW_AVOID_MS, 0,
			     86400000, false, &v, err, errlen)) < 0)
		return r;
	cfg->slow_worker_avoid_ms = (int64_t)v;
	if ((r = efs_env_u64("REPLICA_BATCH_MAX_ITEMS", EFS_REPLICA_BATCH_DEFAULT_ITEMS, 0,
			     EFS_CHUNK_BATCH_MAX_ITEMS, false, &v, err, errlen)) < 0)
		return r;
	cfg->replica_batch_items = (unsigned)v;

	if ((r = efs_env_string("S3_BUCKET_NAME", NULL, false, &cfg->s3_bucket, err, errlen)) < 0)
		return r;
	if (cfg->s3_bucket) {
		const char *reason = NULL;
		if (!s3_bucket_name_valid(cfg->s3_bucket)) {
			snprintf(err, errlen,
				 "S3_BUCKET_NAME: '%.70s' is not a bucket name (3-63 of a-z, 0-9, "
				 "'.', '-')",
				 cfg->s3_bucket);
			return -EINVAL;
		}
		if ((r = efs_aws_config_load(&cfg->aws, &reason)) < 0) {
			snprintf(err, errlen, "S3_BUCKET_NAME is set, but the AWS configuration is not "
					      "usable: %s",
				 reason ? reason : strerror(-r));
			return -EINVAL;
		}
	}
	if ((r = load_dynamodb(cfg, err, errlen)) < 0)
		return r;
	if (cfg->default_policy.kind == EFS_POLICY_EC &&
	    (cfg->s3_bucket || cfg->dynamodb.files_table ||
	     cfg->default_policy.data_shards + cfg->default_policy.parity_shards >
		     EFS_MAX_REPLICAS)) {
		snprintf(err, errlen,
			 "STORAGE_POLICY ec:K+M needs the worker chunk store and a SQL metadata "
			 "store (not S3_BUCKET_NAME or DynamoDB) and at most %u shards",
			 EFS_MAX_REPLICAS);
		return -EINVAL;
	}
	if ((r = load_s3_api(cfg, err, errlen)) < 0)
		return r;
	if ((r = load_grpc(cfg, err, errlen)) < 0)
		return r;

	if (cfg->worker_dead_after_ms <= cfg->heartbeat_interval_ms) {
		snprintf(err, errlen,
			 "WORKER_DEAD_AFTER_MS (%lld) must be greater than HEARTBEAT_INTERVAL_MS "
			 "(%lld), or live workers would flap",
			 (long long)cfg->worker_dead_after_ms,
			 (long long)cfg->heartbeat_interval_ms);
		return -EINVAL;
	}
	return 0;
}
