/* SPDX-License-Identifier: MIT */
/* heartbeat.c - registration, heartbeats and master failover. */
#include "worker/heartbeat.h"
#include "echofs/http_client.h"
#include "echofs/json.h"
#include "echofs/log.h"
#include "echofs/util.h"
#include "worker/report.h"
#include "worker/worker.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define REQUEST_TIMEOUT_MS 5000
#define ID_FILE "worker_id"

static int id_path(const struct efs_worker *w, char *out, size_t size)
{
	int n = snprintf(out, size, "%s/%s", w->cfg.data_dir, ID_FILE);
	return (n < 0 || (size_t)n >= size) ? -ENAMETOOLONG : 0;
}

/* Reads the stored id into hb->worker_id; absent is fine. */
static void id_load(struct efs_heartbeat *hb)
{
	char path[PATH_MAX], text[EFS_ID_MAX + 2];
	if (id_path(hb->worker, path, sizeof(path)) < 0)
		return;
	long n = efs_read_file(path, text, sizeof(text));
	if (n == -ENOENT)
		return;
	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
		text[--n] = '\0';
	if (n < 0 || !efs_id_valid(text)) {
		efs_warn("ignoring %s: not a valid worker id; registering as a new worker", path);
		return;
	}
	efs_strlcpy(hb->worker_id, text, sizeof(hb->worker_id));
	efs_info("worker id %s (from %s)", hb->worker_id, path);
}

static int id_store(const struct efs_heartbeat *hb, const char *id)
{
	char path[PATH_MAX], text[EFS_ID_MAX + 2];
	int r = id_path(hb->worker, path, sizeof(path));
	if (r < 0)
		return r;
	int n = snprintf(text, sizeof(text), "%s\n", id);
	return efs_write_file_atomic(path, text, (size_t)n);
}

int efs_heartbeat_post(struct efs_heartbeat *hb, struct efs_http_call *call, const char *path,
		       json_t *body)
{
	struct efs_worker *w = hb->worker;
	char url[EFS_URL_MAX + 128];
	snprintf(url, sizeof(url), "%s%s", w->cfg.master_urls[hb->master_index], path);
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (!text)
		return -ENOMEM;
	efs_http_call_init(call, "POST", url);
	call->bearer = w->cfg.cluster_secret;
	call->content_type = "application/json";
	call->body = text;
	call->body_len = strlen(text);
	call->timeout_ms = REQUEST_TIMEOUT_MS;
	call->resp_cap = 4 * 1024 * 1024;
	int r = efs_http_call_run(hb->http, call);
	free(text);
	return r;
}

static json_t *space_json(struct efs_heartbeat *hb)
{
	struct efs_worker_space space = {0};
	int r = efs_worker_space(hb->worker, &space);
	if (r < 0)
		efs_warn("cannot measure %s: %s", hb->worker->cfg.data_dir, strerror(-r));
	return json_pack("{s:I, s:I, s:I}", "capacity_bytes", (json_int_t)space.capacity_bytes,
			 "free_bytes", (json_int_t)space.free_bytes, "chunk_count",
			 (json_int_t)space.chunk_count);
}

/* Reads heartbeat_interval_ms from a master's answer, if it sent one. */
static void take_interval(struct efs_heartbeat *hb, const json_t *answer)
{
	uint64_t ms;
	if (efs_json_u64(answer, "heartbeat_interval_ms", &ms) == 0 && ms >= 10 &&
	    ms <= 3600000)
		hb->interval_ms = (int64_t)ms;
}

/* Registers with the current master. 0 on success. */
static int do_register(struct efs_heartbeat *hb)
{
	struct efs_http_call call;
	json_t *body = space_json(hb);
	const char *id;
	int r;

	json_object_set_new(body, "url", json_string(hb->worker->cfg.advertise_url));
	if (hb->worker_id[0])
		json_object_set_new(body, "worker_id", json_string(hb->worker_id));
	r = efs_heartbeat_post(hb, &call, "/api/v1/workers/register", body);
	if (r < 0)
		goto out;
	if (call.status != 200) {
		r = call.status == 401 ? -EACCES : -EIO;
		goto out;
	}
	json_t *answer = json_loadb(call.resp.data, call.resp.len, 0, NULL);
	if (!answer || efs_json_str(answer, "worker_id", EFS_ID_MAX, &id) < 0 ||
	    !efs_id_valid(id)) {
		json_decref(answer);
		r = -EPROTO;
		goto out;
	}
	if (strcmp(id, hb->worker_id) != 0) {
		if ((r = id_store(hb, id)) < 0) {
			efs_error("cannot store the worker id in %s: %s", hb->worker->cfg.data_dir,
				  strerror(-r));
			json_decref(answer);
			goto out;
		}
		pthread_mutex_lock(&hb->lock);
		efs_strlcpy(hb->worker_id, id, sizeof(hb->worker_id));
		pthread_mutex_unlock(&hb->lock);
	}
	take_interval(hb, answer);
	json_decref(answer);
	pthread_mutex_lock(&hb->lock);
	hb->registered = true;
	pthread_mutex_unlock(&hb->lock);
	hb->next_report_ms = 0; /* a (re)registered worker reports what it holds */
	efs_info("registered with %s as %s; heartbeat every %lld ms",
		 hb->worker->cfg.master_urls[hb->master_index], hb->worker_id,
		 (long long)hb->interval_ms);
out:
	efs_http_call_release(&call);
	return r;
}

/* Sends one heartbeat. 0, -ENOENT (the master does not know us), or an
 * error. */
static int do_heartbeat(struct efs_heartbeat *hb)
{
	struct efs_http_call call;
	char path[EFS_ID_MAX + 64];
	snprintf(path, sizeof(path), "/api/v1/workers/%s/heartbeat", hb->worker_id);
	int r = efs_heartbeat_post(hb, &call, path, space_json(hb));
	if (r == 0) {
		if (call.status == 200) {
			json_t *answer = json_loadb(call.resp.data, call.resp.len, 0, NULL);
			take_interval(hb, answer);
			json_decref(answer);
		} else {
			r = call.status == 404 ? -ENOENT : call.status == 401 ? -EACCES : -EIO;
		}
	}
	efs_http_call_release(&call);
	return r;
}

static void heartbeat_main(struct efs_ticker *t, void *arg)
{
	struct efs_heartbeat *hb = arg;
	struct efs_worker *w = hb->worker;
	int64_t backoff = BACKOFF_MIN_MS;
	bool failing = false; /* logged once per outage, not per retry */

	for (;;) {
		int r;
		if (!hb->registered) {
			r = do_register(hb);
		} else {
			r = do_heartbeat(hb);
			if (r == -ENOENT) {
				efs_warn("master %s does not know worker %s: registering again",
					 w->cfg.master_urls[hb->master_index], hb->worker_id);
				pthread_mutex_lock(&hb->lock);
				hb->registered = false;
				pthread_mutex_unlock(&hb->lock);
				r = do_register(hb);
			}
		}
		if (r == 0) {
			if (failing)
				efs_info("master %s reachable again",
					 w->cfg.master_urls[hb->master_index]);
			failing = false;
			backoff = BACKOFF_MIN_MS;
			efs_report_tick(hb);
			if (efs_ticker_wait(t, hb->interval_ms))
				break;
			continue;
		}
		if (!failing)
			efs_warn("master %s: %s; retrying with backoff%s",
				 w->cfg.master_urls[hb->master_index],
				 r == -EACCES ? "refused CLUSTER_SECRET (401)" : strerror(-r),
				 w->cfg.master_count > 1 ? ", trying the other masters" : "");
		failing = true;
		/* Next master in the list, if there is more than one. */
		pthread_mutex_lock(&hb->lock);
		hb->master_index = (hb->master_index + 1) % w->cfg.master_count;
		pthread_mutex_unlock(&hb->lock);
		if (efs_ticker_wait(t, backoff))
			break;
		backoff = EFS_MIN(backoff * 2, BACKOFF_MAX_MS);
	}
}

int efs_heartbeat_start(struct efs_heartbeat *hb, struct efs_worker *worker)
{
	memset(hb, 0, sizeof(*hb));
	hb->worker = worker;
	hb->interval_ms = 2000;
	int r = efs_http_client_new(&hb->http);
	if (r < 0)
		return r;
	pthread_mutex_init(&hb->lock, NULL);
	id_load(hb);
	r = efs_ticker_start(&hb->ticker, heartbeat_main, hb);
	if (r < 0) {
		pthread_mutex_destroy(&hb->lock);
		efs_http_client_free(hb->http);
		hb->http = NULL;
	}
	return r;
}

void efs_heartbeat_stop(struct efs_heartbeat *hb)
{
	if (!hb->ticker.running)
		return;
	efs_ticker_stop(&hb->ticker);
	pthread_mutex_destroy(&hb->lock);
	efs_http_client_free(hb->http);
	hb->http = NULL;
}

void efs_heartbeat_status(struct efs_heartbeat *hb, char *worker_id, bool *registered)
{
	pthread_mutex_lock(&hb->lock);
	efs_strlcpy(worker_id, hb->worker_id, EFS_ID_MAX + 1);
	*registered = hb->registered;
	pthread_mutex_unlock(&hb->lock);
}
