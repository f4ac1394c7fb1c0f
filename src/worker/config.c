/* SPDX-License-Identifier: MIT */
/* config.c - the worker's environment variables. */
#include "worker/config.h"
#include "echofs/config.h"
#include "echofs/http_server.h"
#include "echofs/util.h"

#include <stdio.h>
#include <string.h>

/* Splits a comma-separated URL list into cfg->master_urls. */
static int parse_master_urls(struct efs_worker_config *cfg, const char *list, char *err,
			     size_t errlen)
{
	const char *p = list;
	cfg->master_count = 0;
	while (*p) {
		while (*p == ' ' || *p == ',')
			p++;
		if (!*p)
			break;
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '/'))
			len--;
		if (cfg->master_count >= EFS_MAX_MASTERS) {
			snprintf(err, errlen, "MASTER_URL: more than %d masters", EFS_MAX_MASTERS);
			return -EINVAL;
		}
		char *url = cfg->master_urls[cfg->master_count];
		if (len > EFS_URL_MAX) {
			snprintf(err, errlen, "MASTER_URL: a URL is longer than %d bytes",
				 EFS_URL_MAX);
			return -EINVAL;
		}
		memcpy(url, p, len);
		url[len] = '\0';
		if (!efs_http_url_valid(url)) {
			snprintf(err, errlen, "MASTER_URL: '%.64s' is not an http(s):// URL", url);
			return -EINVAL;
		}
		cfg->master_count++;
		p += len;
		while (*p && *p != ',')
			p++;
	}
	if (cfg->master_count == 0) {
		snprintf(err, errlen, "MASTER_URL: no URL given");
		return -EINVAL;
	}
	return 0;
}

/* The "host:port" of a gRPC address ("grpc://" dropped) into @out; false
 * when it is not one. */
bool efs_worker_grpc_target(const char *text, size_t len, char *out, size_t size)
{
	if (len >= 7 && strncmp(text, "grpc://", 7) == 0) {
		text += 7;
		len -= 7;
	}
	while (len > 0 && text[len - 1] == '/')
		len--;
	if (len == 0 || len >= size)
		return false;
	const char *colon = memrchr(text, ':', len);
	if (!colon || colon == text || colon == text + len - 1)
		return false;
	for (const char *c = colon + 1; c < text + len; c++)
		if (*c < '0' || *c > '9')
			return false;
	for (size_t i = 0; i < len; i++)
		if (text[i] == '/' || text[i] == '@' || text[i] == ' ' || text[i] == ',' ||
		    (unsigned char)text[i] < 0x21)
			return false;
	memcpy(out, text, len);
	out[len] = '\0';
	return true;
}

/* MASTER_GRPC_URL: one address per MASTER_URL entry, in the same order. */
static int parse_grpc_urls(struct efs_worker_config *cfg, const char *list, char *err,
			   size_t errlen)
{
	unsigned count = 0;
	const char *p = list;
	while (*p) {
		while (*p == ' ' || *p == ',')
			p++;
		if (!*p)
			break;
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		while (len > 0 && p[len - 1] == ' ')
			len--;
		if (count >= cfg->master_count ||
		    !efs_worker_grpc_target(p, len, cfg->master_grpc[count],
					    sizeof(cfg->master_grpc[count]))) {
			snprintf(err, errlen,
				 count >= cfg->master_count
					 ? "MASTER_GRPC_URL: more addresses than MASTER_URL has masters"
					 : "MASTER_GRPC_URL: '%.*s' is not grpc://host:port",
				 (int)EFS_MIN(len, 64), p);
			return -EINVAL;
		}
		count++;
		p += len;
		while (*p && *p != ',')
			p++;
	}
	if (count != cfg->master_count) {
		snprintf(err, errlen,
			 "MASTER_GRPC_URL: %u addresses for %u masters (one per MASTER_URL entry, "
			 "in the same order)",
			 count, cfg->master_count);
		return -EINVAL;
	}
	return 0;
}

int efs_worker_config_load(struct efs_worker_config *cfg, char *err, size_t errlen)
{
	const char *advertise, *masters, *grpc_urls, *protocol, *zone;
	uint64_t v;
	int r;

	memset(cfg, 0, sizeof(*cfg));
	if ((r = efs_env_port("WORKER_PORT", 8081, &cfg->port, err, errlen)) < 0 ||
	    (r = efs_env_string("WORKER_HOST", "0.0.0.0", false, &cfg->host, err, errlen)) < 0 ||
	    (r = efs_env_listen_host("WORKER_HOST", "0.0.0.0", cfg->port, &cfg->listen_addr,
				     &cfg->listen_addrlen, err, errlen)) < 0 ||
	    (r = efs_env_string("WORKER_DATA_DIR", "./data/worker", false, &cfg->data_dir, err,
				errlen)) < 0 ||
	    (r = efs_env_string("WORKER_ADVERTISE_URL", NULL, false, &advertise, err, errlen)) <
		    0 ||
	    (r = efs_env_string("MASTER_URL", "http://127.0.0.1:8080", false, &masters, err,
				errlen)) < 0 ||
	    (r = efs_env_string("CLUSTER_SECRET", NULL, true, &cfg->cluster_secret, err,
				errlen)) < 0 ||
	    (r = efs_env_u64("WORKER_CAPACITY_BYTES", 0, 0, UINT64_MAX >> 1, true,
			     &cfg->capacity_bytes, err, errlen)) < 0 ||
	    (r = efs_env_log_level("LOG_LEVEL", EFS_LOG_INFO, &cfg->log_level, err, errlen)) < 0 ||
	    (r = efs_env_topology("TOPOLOGY_VISIBLE_TO", EFS_TOPOLOGY_USERS, &cfg->topology, err,
				  errlen)) < 0)
		return r;
	if ((r = efs_env_u64("SCRUB_INTERVAL_MS", EFS_WORKER_DEFAULT_SCRUB_MS, 100,
			     365LL * 86400000, false, &v, err, errlen)) < 0)
		return r;
	cfg->scrub_interval_ms = (int64_t)v;
	if ((r = efs_env_u64("SCRUB_BANDWIDTH", EFS_WORKER_DEFAULT_SCRUB_BANDWIDTH, 1024,
			     UINT64_MAX >> 2, true, &cfg->scrub_bandwidth, err, errlen)) < 0)
		return r;
	if ((r = efs_env_u64("REPORT_INTERVAL_MS", EFS_WORKER_DEFAULT_REPORT_MS, 100,
			     30LL * 86400000, false, &v, err, errlen)) < 0)
		return r;
	cfg->report_interval_ms = (int64_t)v;
	/* A master judges a batch of 5000 chunks in tens of milliseconds; a
	 * minute covers a store that stalls (a checkpoint, a failover) without
	 * judging the batch again. */
	if ((r = efs_env_u64("REPORT_BATCH_TIMEOUT_MS", 60000, 1000, 600000, false, &v, err,
			     errlen)) < 0)
		return r;
	cfg->report_batch_timeout_ms = (int64_t)v;
	if ((r = efs_env_tls(&cfg->tls, err, errlen)) < 0)
		return r;
	if ((r = efs_env_u64("HEADER_TIMEOUT_MS", EFS_HTTP_DEFAULT_HEADER_TIMEOUT_MS,
			     EFS_HTTP_MIN_HEADER_TIMEOUT_MS, EFS_HTTP_MAX_HEADER_TIMEOUT_MS, false, &v,
			     err, errlen)) < 0)
		return r;
	cfg->header_timeout_ms = (unsigned)v;
	if ((r = efs_env_u64("SHUTDOWN_GRACE_MS", EFS_HTTP_DEFAULT_SHUTDOWN_GRACE_MS, 0,
			     EFS_HTTP_MAX_SHUTDOWN_GRACE_MS, false, &v, err, errlen)) < 0)
		return r;
	cfg->shutdown_grace_ms = (int64_t)v;
	if ((r = efs_env_u64("WORKER_HTTP_THREADS", EFS_WORKER_DEFAULT_HTTP_THREADS, 0,
			     EFS_HTTP_MAX_EVENT_THREADS, false, &v, err, errlen)) < 0)
		return r;
	cfg->http_threads = (unsigned)v;
	if ((r = efs_env_u64("WORKER_SENDFILE_MIN_BYTES", 0, 0, UINT64_MAX >> 2, true,
			     &cfg->sendfile_min_bytes, err, errlen)) < 0)
		return r;
	if ((r = efs_env_u64("WORKER_BATCH_WRITES", 1, 0, 1, false, &v, err, errlen)) < 0)
		return r;
	cfg->batch_writes = v != 0;
	if ((r = efs_env_string("MASTER_GRPC_URL", NULL, false, &grpc_urls, err, errlen)) < 0 ||
	    (r = efs_env_string("WORKER_PROTOCOL", "grpc", false, &protocol, err, errlen)) < 0)
		return r;
	if (strcmp(protocol, "grpc") != 0 && strcmp(protocol, "http") != 0) {
		snprintf(err, errlen, "WORKER_PROTOCOL: '%.32s' is neither grpc nor http", protocol);
		return -EINVAL;
	}
	cfg->use_grpc = strcmp(protocol, "grpc") == 0;
	if ((r = efs_env_string("WORKER_ZONE", "", false, &zone, err, errlen)) < 0)
		return r;
	if (!efs_zone_valid(zone)) {
		snprintf(err, errlen,
			 "WORKER_ZONE: '%.40s' is not a zone name (at most %d characters of "
			 "[A-Za-z0-9._-]; empty for none)",
			 zone, EFS_ZONE_MAX);
		return -EINVAL;
	}
	efs_strlcpy(cfg->zone, zone, sizeof(cfg->zone));

	if (advertise) {
		size_t len = efs_strlcpy(cfg->advertise_url, advertise, sizeof(cfg->advertise_url));
		bool too_long = len >= sizeof(cfg->advertise_url);
		while (!too_long && len > 0 && cfg->advertise_url[len - 1] == '/')
			cfg->advertise_url[--len] = '\0';
		if (too_long || !efs_http_url_valid(cfg->advertise_url)) {
			snprintf(err, errlen,
				 "WORKER_ADVERTISE_URL: '%.64s' is not an http(s):// URL",
				 advertise);
			return -EINVAL;
		}
		if (cfg->tls.cert_file && strncmp(cfg->advertise_url, "https://", 8) != 0) {
			snprintf(err, errlen,
				 "WORKER_ADVERTISE_URL: '%.64s' must be an https:// URL when "
				 "TLS_CERT_FILE is set (the worker serves only HTTPS)",
				 advertise);
			return -EINVAL;
		}
	} else {
		snprintf(cfg->advertise_url, sizeof(cfg->advertise_url), "%s://127.0.0.1:%u",
			 cfg->tls.cert_file ? "https" : "http", cfg->port);
	}
	if ((r = parse_master_urls(cfg, masters, err, errlen)) < 0)
		return r;
	return grpc_urls && *grpc_urls ? parse_grpc_urls(cfg, grpc_urls, err, errlen) : 0;
}
