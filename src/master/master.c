/* SPDX-License-Identifier: MIT */
/* master.c - start and stop of the master's parts, in dependency order. */
#include "master/master.h"
#include "master/chunk_cache.h"
#include "echofs/log.h"
#include "echofs/util.h"

#include <stdio.h>
#include <string.h>

#define SHUTDOWN_GRACE_MS 30000
/* Each connection's libmicrohttpd memory pool, which holds the request
 * line and headers and the buffer the body is received into (half the
 * pool at first). libmicrohttpd zeroes the whole pool before every request
 * on a kept-alive connection: at 256 KiB that was 6-10% of the master's
 * CPU in 4 KiB downloads. 64 KiB still takes any sane header block, and
 * the upload body then arrives in 32 KiB reads instead of 128 KiB. */
#define MASTER_CONN_MEMORY (64 * 1024)

/* Stops and frees whatever of the master is running, in reverse order of
 * start; parts never started are skipped. */
static void release(struct efs_master *m, int64_t grace_ms)
{
	efs_repair_stop(&m->repair);
	efs_gc_stop(&m->gc);
	efs_http_server_stop(m->http, grace_ms);
	m->http = NULL;
	efs_registry_release(&m->registry);
	efs_meta_close(m->meta);
	m->meta = NULL;
	efs_redis_free(m->redis);
	m->redis = NULL;
	efs_metrics_free(m->metrics);
	m->metrics = NULL;
	efs_chunk_cache_free(m->chunk_cache);
	m->chunk_cache = NULL;
}

int efs_master_start(struct efs_master *m, const struct efs_master_config *cfg, char *err,
		     size_t errlen)
{
	int r;

	memset(m, 0, sizeof(*m));
	m->cfg = *cfg;
	if ((r = efs_mkdir_p(cfg->data_dir)) < 0) {
		snprintf(err, errlen, "DATA_DIR: cannot create %s: %s", cfg->data_dir,
			 strerror(-r));
		return r;
	}
	if ((r = efs_meta_open(cfg->database_url, cfg->data_dir, &m->meta, err, errlen)) < 0)
		goto fail;
	if ((r = efs_metrics_new(&m->metrics)) < 0) {
		snprintf(err, errlen, "cannot set up metrics: %s", strerror(-r));
		goto fail;
	}
	if (cfg->redis_addr) {
		if ((r = efs_redis_new(cfg->redis_addr, cfg->redis_timeout_ms, &m->redis)) < 0) {
			snprintf(err, errlen, "REDIS_ADDR: '%s' is not host:port", cfg->redis_addr);
			r = -EINVAL;
			goto fail;
		}
		if (efs_redis_ping(m->redis) < 0)
			efs_warn("redis at %s does not answer yet: working from the metadata store "
				 "until it does",
				 cfg->redis_addr);
	}
	if ((r = efs_chunk_cache_new((size_t)cfg->chunk_cache_size, &m->chunk_cache)) < 0) {
		snprintf(err, errlen, "cannot set up the chunk cache: %s", strerror(-r));
		goto fail;
	}
	efs_registry_init(&m->registry, m->meta, m->redis, cfg->worker_dead_after_ms);
	m->keys.jwt_secret = cfg->jwt_secret;
	m->keys.cluster_secret = cfg->cluster_secret;

	struct efs_http_server_config http = {
		.addr = &m->cfg.listen_addr,
		.addrlen = m->cfg.listen_addrlen,
		.routes = efs_master_routes,
		.route_count = efs_master_route_count,
		.auth = efs_auth_check,
		.auth_ctx = &m->keys,
		.ctx = m,
		.metrics = m->metrics,
		.conn_memory_limit = MASTER_CONN_MEMORY,
	};
	if ((r = efs_http_server_start(&http, &m->http)) < 0) {
		snprintf(err, errlen, "cannot listen on %s:%u (MASTER_HOST/MASTER_PORT): %s",
			 cfg->host, cfg->port, strerror(-r));
		goto fail;
	}
	if ((r = efs_gc_start(&m->gc, m)) < 0 || (r = efs_repair_start(&m->repair, m)) < 0) {
		snprintf(err, errlen, "cannot start the background loops: %s", strerror(-r));
		goto fail;
	}
	efs_info("listening on %s:%u; metadata in %s%s%s; replication %u, chunk size %llu",
		 cfg->host, efs_http_server_port(m->http), efs_meta_backend(m->meta),
		 m->redis ? ", redis at " : "", m->redis ? cfg->redis_addr : "",
		 cfg->replication_factor, (unsigned long long)cfg->chunk_size);
	return 0;
fail:
	release(m, 0);
	return r;
}

void efs_master_stop(struct efs_master *m)
{
	release(m, SHUTDOWN_GRACE_MS);
}
