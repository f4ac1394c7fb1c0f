/* SPDX-License-Identifier: MIT */
/* routes.c - every endpoint of the worker, in one table. All need the
 * cluster secret. */
#include "worker/api.h"

const struct efs_http_route efs_worker_routes[] = {
	{"GET", "/health", EFS_AUTH_CLUSTER, .handle = efs_worker_api_health},
};

const size_t efs_worker_route_count = sizeof(efs_worker_routes) / sizeof(efs_worker_routes[0]);
