/* SPDX-License-Identifier: MIT */
/* routes.c - every endpoint of the master, in one table. */
#include "master/api.h"

const struct efs_http_route efs_master_routes[] = {
	/* system */
	{"GET", "/api/v1/health", EFS_AUTH_NONE, .handle = efs_api_health},
	/* workers (cluster) */
	{"POST", "/api/v1/workers/register", EFS_AUTH_CLUSTER,
	 .handle = efs_api_worker_register, .max_body = 16 * 1024},
	{"POST", "/api/v1/workers/{workerId}/heartbeat", EFS_AUTH_CLUSTER,
	 .handle = efs_api_worker_heartbeat, .max_body = 16 * 1024},
	{"GET", "/api/v1/workers", EFS_AUTH_ANY, .handle = efs_api_worker_list},
	/* files (users) */
	{"GET", "/api/v1/files", EFS_AUTH_USER, .handle = efs_api_file_list},
};

const size_t efs_master_route_count = sizeof(efs_master_routes) / sizeof(efs_master_routes[0]);
