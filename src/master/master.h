/* SPDX-License-Identifier: MIT */
/* master.h - the master process: wires the metadata store, the worker
 * registry and the HTTP API together. */
#ifndef ECHOFS_MASTER_MASTER_H
#define ECHOFS_MASTER_MASTER_H

#include "echofs/auth.h"
#include "echofs/http_server.h"
#include "echofs/meta.h"
#include "echofs/redis.h"
#include "master/config.h"
#include "master/gc.h"
#include "master/repair.h"
#include "master/registry.h"

struct efs_master {
	struct efs_master_config cfg;
	struct efs_meta *meta;
	struct efs_redis *redis; /* NULL without REDIS_ADDR */
	struct efs_registry registry;
	struct efs_auth_keys keys;
	struct efs_http_server *http;
	struct efs_gc gc;
	struct efs_repair repair;
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
