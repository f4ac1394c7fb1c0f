/* SPDX-License-Identifier: MIT */
/* routes.c - every endpoint of the master, in one table. Literal paths
 * come before parameter paths that could match them. */
#include "master/api.h"

#define JSON_BODY_MAX (16 * 1024)

const struct efs_http_route efs_master_routes[] = {
	/* system */
	{"GET", "/api/v1/health", EFS_AUTH_NONE, .handle = efs_api_health},
	{"GET", "/api/v1/stats", EFS_AUTH_ANY, .handle = efs_api_stats},
	{"GET", "/api/v1/stats/history", EFS_AUTH_ANY, .handle = efs_api_stats_history},
	/* observability: Prometheus scrapes without credentials (see
	 * docs/OPERATIONS.md); the page holds no data of its own */
	{"GET", "/metrics", EFS_AUTH_NONE, .handle = efs_api_metrics},
	{"GET", "/", EFS_AUTH_NONE, .handle = efs_api_dashboard},
	/* workers (cluster); urgent (MASTER_HTTP_THREADS): threads of their
	 * own, so that the beats never wait behind requests hung on a worker
	 * (only the cluster may send these: no flood can outrank the rest) */
	{"POST", "/api/v1/workers/register", EFS_AUTH_CLUSTER,
	 .handle = efs_api_worker_register, .max_body = JSON_BODY_MAX, .urgent = true},
	{"POST", "/api/v1/workers/{workerId}/heartbeat", EFS_AUTH_CLUSTER,
	 .handle = efs_api_worker_heartbeat, .max_body = JSON_BODY_MAX, .urgent = true},
	{"POST", "/api/v1/workers/{workerId}/report", EFS_AUTH_CLUSTER,
	 .handle = efs_api_worker_report, .max_body = 4 * 1024 * 1024, .urgent = true},
	{"GET", "/api/v1/workers", EFS_AUTH_ANY, .handle = efs_api_worker_list},
	/* upload sessions (users) */
	{"POST", "/api/v1/files/upload/init", EFS_AUTH_USER, .handle = efs_api_session_init,
	 .max_body = JSON_BODY_MAX},
	{"POST", "/api/v1/files/upload/chunk", EFS_AUTH_USER,
	 .begin = efs_api_session_chunk_begin, .body = efs_api_session_chunk_body,
	 .handle = efs_api_session_chunk},
	{"POST", "/api/v1/files/upload/complete", EFS_AUTH_USER,
	 .handle = efs_api_session_complete, .max_body = JSON_BODY_MAX},
	{"GET", "/api/v1/files/upload/{sessionId}", EFS_AUTH_USER,
	 .handle = efs_api_session_status},
	{"DELETE", "/api/v1/files/upload/{sessionId}", EFS_AUTH_USER,
	 .handle = efs_api_session_abort},
	/* files (users) */
	{"POST", "/api/v1/files/upload", EFS_AUTH_USER, .begin = efs_api_file_upload_begin,
	 .body = efs_api_file_upload_body, .handle = efs_api_file_upload},
	{"GET", "/api/v1/files", EFS_AUTH_USER, .handle = efs_api_file_list},
	{"GET", "/api/v1/files/{fileId}", EFS_AUTH_USER, .handle = efs_api_file_get},
	{"DELETE", "/api/v1/files/{fileId}", EFS_AUTH_USER, .handle = efs_api_file_delete},
	/* nonblocking: a cached download is answered by an event thread
	 * (MASTER_HTTP_THREADS), the others offload themselves */
	{"GET", "/api/v1/files/{fileId}/download", EFS_AUTH_USER,
	 .handle = efs_api_file_download, .nonblocking = true},
	/* the caller's S3 access keys (api_keys.c); POST takes no body */
	{"POST", "/api/v1/keys", EFS_AUTH_USER, .handle = efs_api_key_create, .max_body = 4096},
	{"GET", "/api/v1/keys", EFS_AUTH_USER, .handle = efs_api_key_list},
	{"DELETE", "/api/v1/keys/{accessKeyId}", EFS_AUTH_USER, .handle = efs_api_key_delete},
};

const size_t efs_master_route_count = sizeof(efs_master_routes) / sizeof(efs_master_routes[0]);
