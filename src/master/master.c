/* SPDX-License-Identifier: MIT */
/* master.c - start and stop of the master's parts, in dependency order. */
#include "master/master.h"
#include "master/chunk_cache.h"
#include "master/chunk_io.h"
#include "master/chunk_s3.h"
#include "master/chunk_workers.h"
#include "master/s3_auth.h"
#include "master/s3_routes.h"
#include "echofs/http_client.h"
#include "echofs/log.h"
#include "echofs/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	efs_history_stop(&m->history);
	efs_repair_stop(&m->repair);
	/* The collector's pushed deletes wait for no Ack any more (up to 5 s
	 * per chunk): its pass ends at the first chunk it waits for
	 * (efs_control_collect on a delete's ticket). */
	efs_control_stopping(&m->control);
	efs_gc_stop(&m->gc);
	/* Both listeners drain at once, within one grace. */
	efs_http_server_quiesce(m->s3_http);
	efs_http_server_quiesce(m->http);
	int64_t drained_by = efs_mono_ms() + grace_ms;
	efs_http_server_stop(m->s3_http, grace_ms);
	m->s3_http = NULL;
	efs_http_server_stop(m->http, EFS_MAX(0, drained_by - efs_mono_ms()));
	m->http = NULL;
	efs_late_writes_stop(&m->late_writes);
	/* after every caller of the chunk backend's remove (gc, repair, the
	 * HTTP handlers, late writes): it may push deletes down the streams */
	efs_control_stop(&m->control);
	efs_s3_auth_free(m->s3_auth);
	m->s3_auth = NULL;
	efs_cache_free(m->cache);
	m->cache = NULL;
	efs_object_cache_free(m->object_cache);
	m->object_cache = NULL;
	efs_chunk_backend_free(m->chunks);
	m->chunks = NULL;
	efs_placement_release(&m->placement);
	efs_http_client_free(m->http_client);
	m->http_client = NULL;
	efs_token_cache_free(m->tokens);
	m->tokens = NULL;
	efs_registry_release(&m->registry);
	efs_meta_close(m->meta);
	m->meta = NULL;
	efs_redis_free(m->redis);
	m->redis = NULL;
	efs_metrics_free(m->metrics);
	m->metrics = NULL;
	efs_chunk_cache_free(m->chunk_cache);
	m->chunk_cache = NULL;
	efs_stats_cache_release(&m->stats_cache);
	if (m->upload_memory.limit)
		efs_upload_memory_release(&m->upload_memory);
	efs_keyseal_release(&m->keyseal);
}

/* The S3 API's listener (S3_PORT): a second HTTP server in this process
 * over the same stores, speaking S3 (s3_routes.h). */
static int start_s3(struct efs_master *m, char *err, size_t errlen)
{
	const struct efs_master_config *cfg = &m->cfg;
	char tls_error[200] = "";
	int r;

	struct efs_s3_auth_deps auth = {
		.meta = m->meta,
		.region = cfg->s3_region,
		.seal = &m->keyseal,
	};
	if ((r = efs_s3_auth_new(&auth, &m->s3_auth)) < 0) {
		snprintf(err, errlen, "AWS_REGION: '%.40s' is not a region name (a-z, 0-9, '-')",
			 cfg->s3_region);
		return r == -ENOMEM ? r : -EINVAL;
	}
	struct efs_http_server_config http = {
		.addr = &cfg->s3_listen_addr,
		.addrlen = cfg->s3_listen_addrlen,
		.routes = efs_s3_routes,
		.route_count = efs_s3_route_count,
		.ctx = m,
		/* The REST server's families, redeclared: S3 requests are
		 * recorded beside the others, as route "*". */
		.metrics = m->metrics,
		.conn_memory_limit = MASTER_CONN_MEMORY,
		.header_timeout_ms = cfg->header_timeout_ms,
		.tls_cert_file = cfg->tls.cert_file,
		.tls_key_file = cfg->tls.key_file,
		.error = tls_error,
		.error_len = sizeof(tls_error),
	};
	if ((r = efs_http_server_start(&http, &m->s3_http)) < 0) {
		if (tls_error[0])
			snprintf(err, errlen, "%s", tls_error);
		else
			snprintf(err, errlen, "cannot listen on %s:%u (MASTER_HOST/S3_PORT): %s",
				 cfg->host, cfg->s3_port, strerror(-r));
		return tls_error[0] ? -EINVAL : r;
	}
	efs_info("S3 API listening on %s:%u (%s), region %s, %s", cfg->host,
		 efs_http_server_port(m->s3_http), cfg->tls.cert_file ? "https" : "http",
		 cfg->s3_region,
		 cfg->s3_domain ? "path-style and virtual-host addressing" : "path-style addressing");
	if (cfg->s3_domain)
		efs_info("S3 virtual-host addressing: <bucket>.%s", cfg->s3_domain);
	return 0;
}

int efs_master_start(struct efs_master *m, const struct efs_master_config *cfg, char *err,
		     size_t errlen)
{
	char tls_error[200] = "";
	int r;

	memset(m, 0, sizeof(*m));
	m->cfg = *cfg;
	efs_stats_cache_init(&m->stats_cache);
	if ((r = efs_mkdir_p(cfg->data_dir)) < 0) {
		snprintf(err, errlen, "DATA_DIR: cannot create %s: %s", cfg->data_dir,
			 strerror(-r));
		return r;
	}
	if (cfg->dynamodb.files_table) {
		const char *endpoint = getenv("AWS_ENDPOINT_URL_DYNAMODB");
		if (!endpoint || !*endpoint)
			endpoint = getenv("AWS_ENDPOINT_URL");
		if ((r = efs_meta_open_dynamodb(&cfg->dynamodb, &m->meta, err, errlen)) < 0)
			goto fail;
		efs_info("metadata backend: dynamodb, tables files=%s chunks=%s sessions=%s,"
			 " endpoint %s",
			 cfg->dynamodb.files_table, cfg->dynamodb.chunks_table,
			 cfg->dynamodb.sessions_table,
			 endpoint && *endpoint ? endpoint : "AWS's own for AWS_REGION");
	} else if ((r = efs_meta_open(cfg->database_url, cfg->data_dir, &m->meta, err, errlen)) <
		   0) {
		goto fail;
	}
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
	m->registry.repair_after_ms = cfg->repair_after_ms;
	/* a stream worker falling under a chunk's room is written at once */
	m->registry.full_below_bytes = cfg->chunk_size + EFS_PLACEMENT_FREE_MARGIN;
	if ((r = efs_token_cache_new(&m->tokens)) < 0 ||
	    (r = efs_http_client_new(&m->http_client)) < 0 ||
	    (r = efs_http_client_set_ca_file(m->http_client, cfg->tls.ca_file)) < 0 ||
	    (r = efs_cache_new(m->meta, m->redis, &m->cache)) < 0 ||
	    (r = efs_object_cache_new(&m->object_cache)) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	m->keys.jwt_secret = m->cfg.jwt_secret;
	m->keys.cluster_secret = m->cfg.cluster_secret;
	m->keys.tokens = m->tokens;
	r = cfg->keys_encryption_key ? efs_keyseal_init_hex(&m->keyseal, cfg->keys_encryption_key)
				     : efs_keyseal_init_derive(&m->keyseal, cfg->jwt_secret);
	if (r < 0) {
		snprintf(err, errlen, "cannot set up the access keys' encryption: %s",
			 cfg->keys_encryption_key ? "KEYS_ENCRYPTION_KEY is not 64 hex digits"
						  : "JWT_SECRET is empty");
		r = -EINVAL;
		goto fail;
	}
	efs_placement_init(&m->placement, &m->registry);
	efs_placement_set_slowness(&m->placement, m->cfg.slow_worker_min_rate,
				   m->cfg.slow_worker_avoid_ms);
	struct efs_chunk_workers_config workers = {
		.meta = m->meta,
		.placement = &m->placement,
		.http = m->http_client,
		.cluster_secret = m->cfg.cluster_secret,
		.cluster_id = efs_meta_cluster_id(m->meta),
		.worker_dead_after_ms = m->cfg.worker_dead_after_ms,
		.replication_factor = m->cfg.replication_factor,
		/* started later (after the HTTP listener), before the collector */
		.control = &m->control,
		.replica_batch_items = m->cfg.replica_batch_items,
	};
	struct efs_chunk_s3_config s3 = {
		.aws = &m->cfg.aws,
		.http = m->http_client,
		.bucket = m->cfg.s3_bucket,
	};
	/* S3_BUCKET_NAME chooses S3; the worker registry still runs (a
	 * worker that registers is listed) but nothing is placed on it. */
	r = cfg->s3_bucket ? efs_chunk_s3_new(&s3, &m->chunks)
			   : efs_chunk_workers_new(&workers, &m->chunks);
	if (r < 0) {
		snprintf(err, errlen, "cannot set up the chunk backend: %s", strerror(-r));
		goto fail;
	}
	if (cfg->s3_bucket)
		efs_info("chunk backend: s3 bucket=%s endpoint=%s://%s region=%s credentials from "
			 "%s; REPLICATION_FACTOR is S3's business (no placement, no repair)",
			 cfg->s3_bucket, cfg->aws.s3.https ? "https" : "http", cfg->aws.s3.authority,
			 cfg->aws.region, cfg->aws.credentials_source);
	else
		efs_info("chunk backend: workers, replication %u", cfg->replication_factor);
	/* Before the server takes uploads: their given-up writes are noted. */
	struct efs_chunk_io *chunk_io = efs_chunk_workers_io(m->chunks);
	if (chunk_io) {
		if ((r = efs_late_writes_start(&m->late_writes, m->meta, chunk_io,
					       m->cfg.orphan_grace_ms,
					       m->cfg.replication_factor)) < 0) {
			snprintf(err, errlen, "cannot start the late-write watch: %s",
				 strerror(-r));
			goto fail;
		}
		chunk_io->late_writes = &m->late_writes;
	}
	efs_upload_budget_init(&m->upload_budget, EFS_UPLOAD_PIPELINE_SHARED_BYTES);
	efs_upload_memory_init(&m->upload_memory, (size_t)m->cfg.upload_memory,
			       (size_t)m->cfg.upload_memory_per_user);
	m->uploader = (struct efs_uploader){
		.meta = m->meta,
		.chunks = m->chunks,
		.upload_idle_ms = m->cfg.upload_idle_ms,
		.session_ttl_ms = m->cfg.session_ttl_ms,
		.counters = &m->counters,
	};
	m->reader_source = (struct efs_reader_source){
		.meta = m->meta,
		.chunks = m->chunks,
		.chunk_cache = m->chunk_cache,
		.chunk_lists_read = &m->counters.chunk_lists_read,
	};

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
		.header_timeout_ms = cfg->header_timeout_ms,
		.event_threads = cfg->http_threads,
		.blocking_threads = cfg->http_threads ? EFS_MASTER_HTTP_BLOCKING_THREADS : 0,
		.tls_cert_file = cfg->tls.cert_file,
		.tls_key_file = cfg->tls.key_file,
		.error = tls_error,
		.error_len = sizeof(tls_error),
	};
	if ((r = efs_http_server_start(&http, &m->http)) < 0) {
		if (tls_error[0]) /* a configuration error: exit status 2 */
			snprintf(err, errlen, "%s", tls_error);
		else
			snprintf(err, errlen, "cannot listen on %s:%u (MASTER_HOST/MASTER_PORT): %s",
				 cfg->host, cfg->port, strerror(-r));
		r = tls_error[0] ? -EINVAL : r;
		goto fail;
	}
	if (cfg->s3_port && (r = start_s3(m, err, errlen)) < 0)
		goto fail;
	if ((r = efs_control_start(&m->control, m, err, errlen)) < 0)
		goto fail;
	struct efs_gc_deps gc = {
		.meta = m->meta,
		.cache = m->cache,
		.chunks = m->chunks,
		.grace_ms = m->cfg.gc_grace_ms,
		.orphan_grace_ms = m->cfg.orphan_grace_ms,
	};
	struct efs_repair_deps repair = {
		.meta = m->meta,
		.placement = &m->placement,
		/* repair is the worker backend's own duty */
		.chunk_io = efs_chunk_workers_io(m->chunks),
		.replication_factor = m->cfg.replication_factor,
		.worker_dead_after_ms = m->cfg.worker_dead_after_ms,
		.repair_after_ms = m->cfg.repair_after_ms,
		.bandwidth = m->cfg.repair_bandwidth,
		.control = &m->control,
	};
	if (m->cfg.ec_after_ms > 0 && repair.chunk_io) {
		struct efs_ec_convert_deps convert = {
			.meta = m->meta,
			.chunk_io = repair.chunk_io,
			.policy = m->cfg.ec_policy,
			.after_ms = m->cfg.ec_after_ms,
			.min_size = m->cfg.ec_min_size,
			.bandwidth = m->cfg.ec_convert_bandwidth,
			.worker_dead_after_ms = m->cfg.worker_dead_after_ms,
		};
		efs_ec_convert_init(&m->ec_convert, &convert);
		repair.convert = &m->ec_convert;
	} else if (m->cfg.ec_after_ms > 0) {
		efs_warn("EC_AFTER is set, but the chunks are not on workers (%s): conversion to "
			 "EC is off",
			 efs_chunk_backend_name(m->chunks));
	}
	/* No replicas, no repair: a backend without chunk_io has none. */
	if ((r = efs_gc_start(&m->gc, &gc)) < 0 ||
	    (repair.chunk_io && (r = efs_repair_start(&m->repair, &repair)) < 0)) {
		snprintf(err, errlen, "cannot start the background loops: %s", strerror(-r));
		goto fail;
	}
	struct efs_history_sources history = {
	    .http_metrics = m->metrics,
	    .registry = &m->registry,
	    .under_replicated = repair.chunk_io ? &m->repair.under_replicated : NULL,
	    .repaired_total = repair.chunk_io ? &m->repair.repaired_total : NULL,
	    .interval_ms = m->cfg.history_interval_ms,
	};
	if ((r = efs_history_start(&m->history, &history)) < 0) {
		snprintf(err, errlen, "cannot start the dashboard's history: %s", strerror(-r));
		goto fail;
	}
	char threading[64] = "a thread per connection";
	if (cfg->http_threads)
		snprintf(threading, sizeof(threading), "%u event threads, %u blocking",
			 cfg->http_threads, EFS_MASTER_HTTP_BLOCKING_THREADS);
	efs_info("listening on %s:%u (%s); cluster %s; metadata in %s%s%s; chunks on %s; "
		 "replication %u, chunk size %llu",
		 cfg->host, efs_http_server_port(m->http), threading, efs_meta_cluster_id(m->meta),
		 efs_meta_backend(m->meta), m->redis ? ", redis at " : "",
		 m->redis ? cfg->redis_addr : "", efs_chunk_backend_name(m->chunks),
		 cfg->replication_factor, (unsigned long long)cfg->chunk_size);
	return 0;
fail:
	release(m, 0);
	return r;
}

void efs_master_stop(struct efs_master *m)
{
	release(m, m->cfg.shutdown_grace_ms);
}
