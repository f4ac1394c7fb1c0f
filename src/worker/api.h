/* SPDX-License-Identifier: MIT */
/* api.h - the worker's HTTP handlers; routes.c maps them to paths. */
#ifndef ECHOFS_WORKER_API_H
#define ECHOFS_WORKER_API_H

#include "echofs/http_server.h"
#include "worker/worker.h"

int efs_worker_api_health(struct efs_http_req *req);

#endif
