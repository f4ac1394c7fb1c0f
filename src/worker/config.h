/* SPDX-License-Identifier: MIT */
/* config.h - the worker's configuration, read from the environment.
 * Every variable, its default and why: docs/OPERATIONS.md. */
#ifndef ECHOFS_WORKER_CONFIG_H
#define ECHOFS_WORKER_CONFIG_H

#include "echofs/config.h"
#include "echofs/log.h"
#include "echofs/meta.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define EFS_MAX_MASTERS 8

struct efs_worker_config {
	const char *host;
	uint16_t port;
	struct sockaddr_storage listen_addr;
	unsigned listen_addrlen;
	const char *data_dir;
	char advertise_url[EFS_URL_MAX + 1];
	/* WORKER_ZONE: the failure domain the worker declares at registration
	 * (efs_zone_valid); "" for none, a zone of its own. */
	char zone[EFS_ZONE_MAX + 1];
	/* MASTER_URL split at commas, without trailing slashes. */
	char master_urls[EFS_MAX_MASTERS][EFS_URL_MAX + 1];
	unsigned master_count;
	/* MASTER_GRPC_URL split at commas, "host:port" (a "grpc://" prefix is
	 * dropped): the i-th is the i-th master's control plane. All "" when
	 * unset: each master's registration answer names it (grpc_url). */
	char master_grpc[EFS_MAX_MASTERS][EFS_URL_MAX + 1];
	/* WORKER_PROTOCOL: "grpc" (default) beats on a gRPC stream where the
	 * master has one; "http" never opens one. */
	bool use_grpc;
	const char *cluster_secret;
	uint64_t capacity_bytes; /* 0: the filesystem's size */
	int64_t scrub_interval_ms;
	uint64_t scrub_bandwidth;   /* bytes/s the scrubber may read */
	int64_t report_interval_ms; /* full chunk reports, besides one per registration */
	/* REPORT_BATCH_TIMEOUT_MS: how long a report batch waits for the
	 * master's verdicts (HTTP and gRPC) before it is sent again. */
	int64_t report_batch_timeout_ms;
	struct efs_tls_config tls;  /* HTTPS served with cert/key; masters verified with ca */
	enum efs_log_level log_level;
	/* TOPOLOGY_VISIBLE_TO: "operators" puts /metrics behind the cluster secret */
	enum efs_topology_audience topology;
	unsigned header_timeout_ms; /* HEADER_TIMEOUT_MS: request headers complete within */
	int64_t shutdown_grace_ms;  /* SHUTDOWN_GRACE_MS: requests in flight at a stop */
	/* WORKER_HTTP_THREADS: 0, a thread per connection; N, N epoll event
	 * threads (http_server.h, Threading). */
	unsigned http_threads;
	/* WORKER_SENDFILE_MIN_BYTES: chunk GETs of at least this many bytes
	 * are sent from the volume file (sendfile) on plain HTTP; 0 (the
	 * default): never, every chunk is sent from the buffer it was
	 * verified in (docs/PERFORMANCE.md: on loopback sendfile costs more). */
	uint64_t sendfile_min_bytes;
	/* WORKER_BATCH_WRITES: 1 (the default) serves POST /chunks/batch
	 * (several small chunks under one group commit); 0 answers it 404 as
	 * a worker without the endpoint would (tests of the master's
	 * fallback, or to rule it out). */
	bool batch_writes;
};

#define EFS_WORKER_DEFAULT_SCRUB_MS (24LL * 3600 * 1000)
#define EFS_WORKER_DEFAULT_SCRUB_BANDWIDTH (32 * 1024 * 1024)
#define EFS_WORKER_DEFAULT_REPORT_MS (3600LL * 1000)
#define EFS_WORKER_DEFAULT_HTTP_THREADS 0

/* Reads the worker's variables. 0, or -EINVAL with one line naming the
 * variable in @err. */
int efs_worker_config_load(struct efs_worker_config *cfg, char *err, size_t errlen);

/* Whether @text (@len bytes) is a gRPC address, "host:port" or
 * "grpc://host:port"; its "host:port" into @out (@size bytes). */
bool efs_worker_grpc_target(const char *text, size_t len, char *out, size_t size);

#endif
