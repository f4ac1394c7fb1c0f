/* SPDX-License-Identifier: MIT */
/* worker.c - start and stop of the worker's parts, and its disk space. */
#include "worker/worker.h"
#include "echofs/http_client.h"
#include "echofs/log.h"
#include "echofs/util.h"

#include <stdio.h>
#include <string.h>

int efs_worker_space(const struct efs_worker *w, struct efs_worker_space *out)
{
	return efs_worker_ctx_space(&w->ctx, out);
}

int efs_worker_start(struct efs_worker *w, const struct efs_worker_config *cfg, char *err,
		     size_t errlen)
{
	char tls_error[200] = "";
	int r;

	memset(w, 0, sizeof(*w));
	w->cfg = *cfg;
	w->keys.cluster_secret = cfg->cluster_secret;
	if ((r = efs_mkdir_p(cfg->data_dir)) < 0) {
		snprintf(err, errlen, "WORKER_DATA_DIR: cannot create %s: %s", cfg->data_dir,
			 strerror(-r));
		return r;
	}
	if ((r = efs_fence_open(&w->fence, cfg->data_dir)) < 0) {
		snprintf(err, errlen,
			 "%s is not a lease epoch (%s): refusing to start rather than forget it "
			 "(docs/OPERATIONS.md#fencing)",
			 w->fence.path, strerror(-r));
		return r == -EINVAL ? -EIO : r;
	}
	if ((r = efs_store_open(cfg->data_dir, cfg->capacity_bytes, &w->store, err, errlen)) < 0) {
		efs_fence_close(&w->fence);
		return r;
	}
	if ((r = efs_worker_ctx_init(&w->ctx, &w->cfg, w->store)) < 0) {
		efs_store_close(w->store);
		w->store = NULL;
		efs_fence_close(&w->fence);
		return r;
	}
	w->ctx.fence = &w->fence;
	if ((r = efs_http_client_set_ca_file(w->ctx.http, cfg->tls.ca_file)) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail_ctx;
	}
	if ((r = efs_metrics_new(&w->metrics)) < 0) {
		snprintf(err, errlen, "cannot set up metrics: %s", strerror(-r));
		goto fail_store;
	}
	struct efs_http_server_config http = {
		.addr = &w->cfg.listen_addr,
		.addrlen = w->cfg.listen_addrlen,
		.routes = efs_worker_routes,
		.route_count = efs_worker_route_count,
		.auth = efs_auth_check,
		.auth_ctx = &w->keys,
		.ctx = w,
		.metrics = w->metrics,
		.header_timeout_ms = cfg->header_timeout_ms,
		.event_threads = cfg->http_threads,
		.tls_cert_file = cfg->tls.cert_file,
		.tls_key_file = cfg->tls.key_file,
		.error = tls_error,
		.error_len = sizeof(tls_error),
	};
	if ((r = efs_http_server_start(&http, &w->http)) < 0) {
		if (tls_error[0]) /* a configuration error: exit status 2 */
			snprintf(err, errlen, "%s", tls_error);
		else
			snprintf(err, errlen, "cannot listen on %s:%u (WORKER_HOST/WORKER_PORT): %s",
				 cfg->host, cfg->port, strerror(-r));
		r = tls_error[0] ? -EINVAL : r;
		goto fail_store;
	}
	if ((r = efs_heartbeat_start(&w->heartbeat, &w->ctx)) < 0 ||
	    (r = efs_report_start(&w->report, &w->ctx)) < 0 ||
	    (r = efs_scrub_start(&w->scrub, &w->ctx)) < 0) {
		snprintf(err, errlen, "cannot start the background loops: %s", strerror(-r));
		efs_report_stop(&w->report);
		efs_heartbeat_stop(&w->heartbeat);
		efs_http_server_stop(w->http, 0);
		w->http = NULL;
		goto fail_store;
	}
	char threading[48] = "a thread per connection";
	if (cfg->http_threads)
		snprintf(threading, sizeof(threading), "%u event threads", cfg->http_threads);
	efs_info("listening on %s:%u (%s), advertised as %s; data in %s; masters: %s%s",
		 cfg->host, efs_http_server_port(w->http), threading, cfg->advertise_url,
		 cfg->data_dir, cfg->master_urls[0], cfg->master_count > 1 ? " (and more)" : "");
	return 0;
fail_store:
	efs_metrics_free(w->metrics);
	w->metrics = NULL;
fail_ctx:
	efs_worker_ctx_release(&w->ctx);
	efs_store_close(w->store);
	w->store = NULL;
	efs_fence_close(&w->fence);
	return r;
}

void efs_worker_stop(struct efs_worker *w)
{
	efs_scrub_stop(&w->scrub);
	efs_report_stop(&w->report);
	efs_heartbeat_stop(&w->heartbeat);
	efs_http_server_stop(w->http, w->cfg.shutdown_grace_ms);
	w->http = NULL;
	efs_store_close(w->store);
	w->store = NULL;
	efs_worker_ctx_release(&w->ctx);
	efs_fence_close(&w->fence);
	efs_metrics_free(w->metrics);
	w->metrics = NULL;
}
