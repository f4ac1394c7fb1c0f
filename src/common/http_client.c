/* SPDX-License-Identifier: MIT */
/* http_client.c - owns libcurl: handle pools, checked setup, multi transfers.
 *
 * Every transfer, single or parallel, runs on a curl multi handle taken
 * from its client's pool and given back afterwards. Connections live in the multi's
 * connection cache, so they outlive the call: the next call that takes
 * that multi reuses its keep-alive connections to the same servers (a
 * chunk's three replica writes open no new connection once warm). A multi
 * is used by one thread at a time; libcurl closes a connection whose
 * transfer failed, timed out or was aborted, so only connections that
 * completed a response cleanly are kept. */
#include "echofs/http_client.h"
#include "echofs/util.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_RESP_CAP (1024 * 1024)
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_CONNECT_TIMEOUT_MS 2000
#define POOL_MAX 64
/* Idle multi handles kept, and the idle connections each may keep. A
 * multi holds at most one idle connection per server it has called (calls
 * never send two requests to one server at once), so a server sees at
 * most MULTI_POOL_MAX idle connections from one client (one thread each
 * on a worker), whatever the cluster's size; with 16 concurrent uploads
 * and 3 replicas about 16 multis hold 3 connections each. */
#define MULTI_POOL_MAX 32
#define MULTI_MAX_CONNECTS 32L
/* An idle connection older than this is closed rather than reused: well
 * below the servers' idle timeout (http_server.h: 60 s), so a request is
 * not sent on a connection the server is closing. */
#define MAX_CONN_AGE_S 20L
/* An in-memory body shorter than this goes to libcurl as POSTFIELDS, which
 * it appends to the request head and sends in one write (libcurl's
 * MAX_INITIAL_POST_SIZE is 64 KiB; without "Expect: 100-continue"). Given
 * through the read callback it goes in a second write after the head: one
 * more send() here and one more wake-up and recv() on the server for each
 * replica of a small file. */
#define INLINE_BODY_MAX (64 * 1024)

/* A stack of idle handles shared by all threads; the most recently given
 * back is taken first. */
struct idle_pool {
	pthread_mutex_t lock;
	size_t len, cap;
	void **items;
};

/* A client: its idle handles and its connection count. Connections
 * belong to the multis, so two clients in one process share none. */
struct efs_http_client {
	/* Idle easy handles (set-up cost only: connections belong to the
	 * multis). */
	void *easy_items[POOL_MAX];
	struct idle_pool easy_pool;
	/* Idle multi handles, each with its cache of keep-alive connections. */
	void *multi_items[MULTI_POOL_MAX];
	struct idle_pool multi_pool;
	_Atomic uint64_t connections_opened;
	/* CURLOPT_CAINFO of every transfer, or NULL for the system's store.
	 * Every transfer of a client has the same TLS settings, so libcurl
	 * reuses its kept-alive https connections as it does plain ones. */
	char *ca_file;
};

/* An idle handle, or NULL when there is none. */
static void *idle_take(struct idle_pool *p)
{
	void *item = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->len > 0)
		item = p->items[--p->len];
	pthread_mutex_unlock(&p->lock);
	return item;
}

/* Keeps @item; false when the pool is full (the caller frees it). */
static bool idle_give(struct idle_pool *p, void *item)
{
	bool kept = false;
	pthread_mutex_lock(&p->lock);
	if (p->len < p->cap) {
		p->items[p->len++] = item;
		kept = true;
	}
	pthread_mutex_unlock(&p->lock);
	return kept;
}

/* Per transfer: the client, the call, its header list, and the upload position. */
struct transfer {
	struct efs_http_client *client;
	struct efs_http_call *call;
	CURL *easy;
	struct curl_slist *headers;
	size_t upload_pos;
	int sink_error; /* also the source's and the progress hook's */
	char curl_error[CURL_ERROR_SIZE]; /* libcurl's detailed reason */
	/* Stall detection: bytes moved so far, and when that last changed. */
	int64_t moved;
	int64_t moved_at_ms;
	/* The min_speed rule: bytes moved at a few past moments (a ring, one
	 * sample every eighth of the window, two windows long). */
	struct {
		int64_t at_ms, moved;
	} samples[16];
	unsigned sample_count; /* pushed so far; the newest is (count - 1) % 16 */
	bool stalled;          /* the stall rule gave up */
	bool slow_stop;        /* the min_speed rule gave up */
	char slow_why[96];
};

/* Whether fewer than min_speed * window bytes moved over the last window
 * (judged once the transfer is a window old). Records a sample. */
static bool under_min_speed(struct transfer *t, int64_t now, int64_t moved, bool remaining)
{
	const size_t ring = EFS_ARRAY_SIZE(t->samples);
	int64_t window_ms = t->call->stall_timeout_s * 1000;
	int64_t step_ms = EFS_MAX(window_ms / 8, 1);
	if (t->sample_count == 0 ||
	    now - t->samples[(t->sample_count - 1) % ring].at_ms >= step_ms) {
		t->samples[t->sample_count % ring].at_ms = now;
		t->samples[t->sample_count % ring].moved = moved;
		t->sample_count++;
	}
	/* Nothing moved for a second: stopped, not slow (a partition, a
	 * pause); the stall rule's business. */
	if (!remaining || now - t->moved_at_ms >= 1000)
		return false;
	/* The newest sample at least a window old. */
	for (unsigned k = 0; k < t->sample_count && k < ring; k++) {
		unsigned idx = (t->sample_count - 1 - k) % ring;
		if (now - t->samples[idx].at_ms < window_ms)
			continue;
		int64_t span_ms = now - t->samples[idx].at_ms;
		int64_t got = moved - t->samples[idx].moved;
		if (got * 1000 >= t->call->min_speed * span_ms)
			return false;
		snprintf(t->slow_why, sizeof(t->slow_why),
			 "too slow: %lld bytes in %lld ms, under %lld bytes/s", (long long)got,
			 (long long)span_ms, (long long)t->call->min_speed);
		return true;
	}
	return false;
}

/* libcurl's own initialisation is process-wide by libcurl's design (it
 * sets up the TLS library); everything else lives in a client. */
int efs_http_client_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

void efs_http_client_global_cleanup(void)
{
	curl_global_cleanup();
}

int efs_http_client_new(struct efs_http_client **out)
{
	struct efs_http_client *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->easy_pool.lock, NULL);
	c->easy_pool.cap = POOL_MAX;
	c->easy_pool.items = c->easy_items;
	pthread_mutex_init(&c->multi_pool.lock, NULL);
	c->multi_pool.cap = MULTI_POOL_MAX;
	c->multi_pool.items = c->multi_items;
	*out = c;
	return 0;
}

void efs_http_client_free(struct efs_http_client *c)
{
	CURL *easy;
	CURLM *multi;
	if (!c)
		return;
	while ((easy = idle_take(&c->easy_pool)))
		curl_easy_cleanup(easy);
	while ((multi = idle_take(&c->multi_pool)))
		curl_multi_cleanup(multi);
	pthread_mutex_destroy(&c->easy_pool.lock);
	pthread_mutex_destroy(&c->multi_pool.lock);
	free(c->ca_file);
	free(c);
}

int efs_http_client_set_ca_file(struct efs_http_client *c, const char *ca_file)
{
	char *copy = NULL;
	if (ca_file && !(copy = strdup(ca_file)))
		return -ENOMEM;
	free(c->ca_file);
	c->ca_file = copy;
	return 0;
}

uint64_t efs_http_client_connections_opened(const struct efs_http_client *c)
{
	return atomic_load(&c->connections_opened);
}

/* The most recently used idle multi (its connections are the likeliest to
 * be alive), or a new one. */
static CURLM *multi_get(struct efs_http_client *c)
{
	CURLM *multi = idle_take(&c->multi_pool);
	if (multi)
		return multi;
	multi = curl_multi_init();
	if (multi && curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, MULTI_MAX_CONNECTS) != CURLM_OK) {
		curl_multi_cleanup(multi);
		multi = NULL;
	}
	return multi;
}

/* Gives back a multi with no transfer attached. */
static void multi_put(struct efs_http_client *c, CURLM *multi)
{
	if (!idle_give(&c->multi_pool, multi))
		curl_multi_cleanup(multi); /* closes its connections */
}

static CURL *handle_get(struct efs_http_client *c)
{
	CURL *h = idle_take(&c->easy_pool);
	if (h)
		curl_easy_reset(h); /* keeps live connections and caches */
	else
		h = curl_easy_init();
	return h;
}

static void handle_put(struct efs_http_client *c, CURL *h)
{
	if (h && !idle_give(&c->easy_pool, h))
		curl_easy_cleanup(h);
}

void efs_http_call_init(struct efs_http_call *call, const char *method, const char *url)
{
	memset(call, 0, sizeof(*call));
	call->method = method;
	call->url = url;
	efs_buf_init(&call->resp, DEFAULT_RESP_CAP);
}

void efs_http_call_release(struct efs_http_call *call)
{
	if (call)
		efs_buf_release(&call->resp);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct transfer *t = userdata;
	size_t len = size * nmemb;
	int r;
	/* The sink may decide by the status (append on 206, restart on 200). */
	if (t->call->status == 0)
		curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->call->status);
	if (t->call->sink)
		r = t->call->sink(t->call->sink_ctx, data, len);
	else
		r = efs_buf_append(&t->call->resp, data, len);
	if (r < 0) {
		t->sink_error = r;
		return 0; /* aborts the transfer */
	}
	return len;
}

/* Keeps the value of call->capture_header and gives every header to
 * call->header_fn. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct transfer *t = userdata;
	size_t len = size * nmemb;
	const char *colon = memchr(data, ':', len);
	if (!colon || (len > 5 && memcmp(data, "HTTP/", 5) == 0))
		return len; /* the status line, the blank line */
	size_t name_len = (size_t)(colon - data);
	const char *v = colon + 1;
	size_t vlen = len - name_len - 1;
	while (vlen > 0 && (*v == ' ' || *v == '\t'))
		v++, vlen--;
	while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
		vlen--;
	if (t->call->capture_header && name_len == strlen(t->call->capture_header) &&
	    strncasecmp(data, t->call->capture_header, name_len) == 0) {
		size_t n = EFS_MIN(vlen, sizeof(t->call->captured) - 1);
		memcpy(t->call->captured, v, n);
		t->call->captured[n] = '\0';
	}
	if (t->call->header_fn) {
		int r = t->call->header_fn(t->call->header_ctx, data, name_len, v, vlen);
		if (r < 0) {
			t->sink_error = r;
			return 0; /* aborts the transfer */
		}
	}
	return len;
}

static size_t on_read(char *out, size_t size, size_t nmemb, void *userdata)
{
	struct transfer *t = userdata;
	size_t left = t->call->body_len - t->upload_pos;
	size_t n = EFS_MIN(left, size * nmemb);
	memcpy(out, (const char *)t->call->body + t->upload_pos, n);
	t->upload_pos += n;
	return n;
}

/* libcurl rewinds the body when it sends the request again on a new
 * connection (a reused connection that the server had closed). */
static int on_seek(void *userdata, curl_off_t offset, int origin)
{
	struct transfer *t = userdata;
	if (origin != SEEK_SET || offset < 0 || (size_t)offset > t->call->body_len)
		return CURL_SEEKFUNC_FAIL;
	t->upload_pos = (size_t)offset;
	return CURL_SEEKFUNC_OK;
}

static size_t on_source(char *out, size_t size, size_t nmemb, void *userdata)
{
	struct transfer *t = userdata;
	ssize_t n = t->call->source(t->call->source_ctx, out, size * nmemb);
	if (n < 0) {
		t->sink_error = (int)n;
		return CURL_READFUNC_ABORT;
	}
	return (size_t)n;
}

static int on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	struct transfer *t = userdata;
	if (t->call->stall_timeout_s > 0) {
		/* No byte in either direction for the whole window: the peer is
		 * stuck (paused, disk hung). libcurl's low-speed check averages
		 * over several seconds and reacts far later. */
		int64_t now = efs_mono_ms(), moved = (int64_t)(dlnow + ulnow);
		if (moved != t->moved || t->moved_at_ms == 0) {
			t->moved = moved;
			t->moved_at_ms = now;
		} else if (now - t->moved_at_ms > t->call->stall_timeout_s * 1000) {
			snprintf(t->slow_why, sizeof(t->slow_why), "stalled: no byte for %ld s",
				 t->call->stall_timeout_s);
			t->stalled = true;
			t->sink_error = -ETIMEDOUT;
			return 1;
		}
		/* Bytes remain: the body is not all sent, or the response's
		 * body has begun and is not all here. Waiting for the answer is
		 * the stall rule's business. */
		bool remaining = (ultotal > 0 && ulnow < ultotal) ||
				 (dlnow > 0 && (dltotal <= 0 || dlnow < dltotal));
		if (t->call->min_speed > 0 && under_min_speed(t, now, moved, remaining)) {
			t->slow_stop = true;
			t->sink_error = -ETIMEDOUT;
			return 1;
		}
	}
	if (!t->call->progress)
		return 0;
	int r = t->call->progress(t->call->progress_ctx, (int64_t)dltotal, (int64_t)dlnow,
				  (int64_t)ultotal, (int64_t)ulnow);
	if (r < 0) {
		t->sink_error = r;
		return 1; /* aborts the transfer */
	}
	return 0;
}

/* Every setopt is checked once, here. */
#define SETOPT(h, opt, val)                                                                       \
	do {                                                                                      \
		if (curl_easy_setopt((h), (opt), (val)) != CURLE_OK)                              \
			goto fail;                                                                \
	} while (0)

static int transfer_setup(struct transfer *t, struct efs_http_client *client,
			  struct efs_http_call *call)
{
	char header[4200]; /* fits "Authorization: Bearer " + a token */
	memset(t, 0, sizeof(*t));
	t->client = client;
	t->call = call;
	call->status = 0;
	call->error = 0;
	call->too_slow = false;
	call->elapsed_ms = 0;
	call->errmsg[0] = '\0';
	if (call->resp_cap)
		call->resp.cap = call->resp_cap;
	efs_buf_reset(&call->resp);

	t->easy = handle_get(client);
	if (!t->easy)
		return -ENOMEM;
	CURL *h = t->easy;
	SETOPT(h, CURLOPT_URL, call->url);
	SETOPT(h, CURLOPT_CUSTOMREQUEST, call->method);
	SETOPT(h, CURLOPT_NOSIGNAL, 1L);
	SETOPT(h, CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(h, CURLOPT_TIMEOUT_MS, call->timeout_ms ? call->timeout_ms : DEFAULT_TIMEOUT_MS);
	SETOPT(h, CURLOPT_CONNECTTIMEOUT_MS,
	       call->connect_timeout_ms ? call->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS);
	SETOPT(h, CURLOPT_WRITEFUNCTION, on_write);
	SETOPT(h, CURLOPT_WRITEDATA, t);
	SETOPT(h, CURLOPT_TCP_NODELAY, 1L);
	SETOPT(h, CURLOPT_MAXAGE_CONN, MAX_CONN_AGE_S);
	SETOPT(h, CURLOPT_ERRORBUFFER, t->curl_error);
	/* libcurl's defaults, stated: an https peer's certificate and name are
	 * always verified (the cluster secret goes out in the request). */
	SETOPT(h, CURLOPT_SSL_VERIFYPEER, 1L);
	SETOPT(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (client->ca_file)
		SETOPT(h, CURLOPT_CAINFO, client->ca_file);
	call->captured[0] = '\0';
	if (call->capture_header || call->header_fn) {
		SETOPT(h, CURLOPT_HEADERFUNCTION, on_header);
		SETOPT(h, CURLOPT_HEADERDATA, t);
	}
	if (strcmp(call->method, "HEAD") == 0)
		SETOPT(h, CURLOPT_NOBODY, 1L);
	if (call->body && call->body_len < INLINE_BODY_MAX) {
		/* libcurl reads the body from call->body while the call runs
		 * (no copy of it is made), and sends it again itself when it
		 * retries on a new connection. POSTFIELDS would add a form
		 * Content-Type: the header list below removes it. */
		SETOPT(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body_len);
		SETOPT(h, CURLOPT_POSTFIELDS, call->body);
	} else if (call->body) {
		SETOPT(h, CURLOPT_UPLOAD, 1L);
		SETOPT(h, CURLOPT_READFUNCTION, on_read);
		SETOPT(h, CURLOPT_READDATA, t);
		SETOPT(h, CURLOPT_SEEKFUNCTION, on_seek);
		SETOPT(h, CURLOPT_SEEKDATA, t);
		SETOPT(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)call->body_len);
		/* The method stays what the call says (CUSTOMREQUEST). */
	} else if (call->source) {
		SETOPT(h, CURLOPT_UPLOAD, 1L);
		SETOPT(h, CURLOPT_READFUNCTION, on_source);
		SETOPT(h, CURLOPT_READDATA, t);
		/* -1 makes libcurl send "Transfer-Encoding: chunked". */
		SETOPT(h, CURLOPT_INFILESIZE_LARGE,
		       (curl_off_t)(call->source_len >= 0 ? call->source_len : -1));
	}
	if (call->progress || call->stall_timeout_s > 0) {
		SETOPT(h, CURLOPT_XFERINFOFUNCTION, on_progress);
		SETOPT(h, CURLOPT_XFERINFODATA, t);
		SETOPT(h, CURLOPT_NOPROGRESS, 0L);
	}
	if (call->max_speed > 0) {
		SETOPT(h, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)call->max_speed);
		SETOPT(h, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)call->max_speed);
	}
	/* No "Expect: 100-continue" round trip on uploads. */
	t->headers = curl_slist_append(t->headers, "Expect:");
	if (call->bearer) {
		snprintf(header, sizeof(header), "Authorization: Bearer %s", call->bearer);
		t->headers = curl_slist_append(t->headers, header);
	}
	if (call->content_type) {
		snprintf(header, sizeof(header), "Content-Type: %s", call->content_type);
		t->headers = curl_slist_append(t->headers, header);
	} else if (call->body) {
		/* No Content-Type unless the caller gives one (in call->headers
		 * too): a removal, so libcurl adds none to an inline body. */
		t->headers = curl_slist_append(t->headers, "Content-Type:");
	}
	for (size_t i = 0; i < EFS_ARRAY_SIZE(call->headers) && call->headers[i]; i++)
		t->headers = curl_slist_append(t->headers, call->headers[i]);
	if (!t->headers)
		goto fail;
	SETOPT(h, CURLOPT_HTTPHEADER, t->headers);
	return 0;
fail:
	curl_slist_free_all(t->headers);
	t->headers = NULL;
	handle_put(t->client, t->easy);
	t->easy = NULL;
	return -EIO;
}

static int map_curl_error(CURLcode code)
{
	switch (code) {
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_RESOLVE_HOST:
		return -EHOSTUNREACH;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		return -EPERM;
	default:
		return -EIO;
	}
}

static void transfer_finish(struct transfer *t, CURLcode code)
{
	struct efs_http_call *call = t->call;
	long connects = 0;
	curl_off_t total_us = 0;
	if (curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK && connects > 0)
		atomic_fetch_add(&t->client->connections_opened, (uint64_t)connects);
	if (curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &total_us) == CURLE_OK)
		call->elapsed_ms = (int64_t)(total_us / 1000);
	if (code == CURLE_OK) {
		curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &call->status);
	} else {
		call->status = 0;
		if (t->slow_stop || t->stalled) {
			call->error = t->sink_error;
			call->too_slow = t->slow_stop;
			snprintf(call->errmsg, sizeof(call->errmsg), "%s", t->slow_why);
		} else if (t->sink_error) {
			call->error = t->sink_error;
			snprintf(call->errmsg, sizeof(call->errmsg), "%s",
				 t->sink_error == -E2BIG ? "response too large"
							 : strerror(-t->sink_error));
			/* The status stays 0: the caller sees the error. */
		} else {
			call->error = map_curl_error(code);
			efs_strlcpy(call->errmsg,
				    t->curl_error[0] ? t->curl_error : curl_easy_strerror(code),
				    sizeof(call->errmsg));
		}
	}
	curl_slist_free_all(t->headers);
	t->headers = NULL;
	handle_put(t->client, t->easy);
	t->easy = NULL;
}

/* Runs @n calls on a pooled multi; each call's result is in its fields. */
static int run_transfers(struct efs_http_client *client, struct efs_http_call **calls, size_t n)
{
	struct transfer one;
	struct transfer *ts = n == 1 ? &one : calloc(n ? n : 1, sizeof(*ts));
	CURLM *multi = multi_get(client);
	int r = 0;
	if (!ts || !multi) {
		r = -ENOMEM;
		for (size_t i = 0; i < n; i++) {
			calls[i]->error = r;
			snprintf(calls[i]->errmsg, sizeof(calls[i]->errmsg), "out of memory");
		}
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		int s = transfer_setup(&ts[i], client, calls[i]);
		if (s == 0 && curl_easy_setopt(ts[i].easy, CURLOPT_PRIVATE, &ts[i]) == CURLE_OK &&
		    curl_multi_add_handle(multi, ts[i].easy) == CURLM_OK)
			continue;
		if (s == 0) { /* set up, but not attached */
			transfer_finish(&ts[i], CURLE_FAILED_INIT);
			s = -EIO;
		}
		calls[i]->error = s;
		snprintf(calls[i]->errmsg, sizeof(calls[i]->errmsg), "could not set up the request");
	}
	int running = 1;
	while (running) {
		if (curl_multi_perform(multi, &running) != CURLM_OK)
			break;
		CURLMsg *msg;
		int queued;
		while ((msg = curl_multi_info_read(multi, &queued))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			struct transfer *t = NULL;
			CURL *easy = msg->easy_handle;
			CURLcode code = msg->data.result;
			curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
			curl_multi_remove_handle(multi, easy);
			transfer_finish(t, code);
		}
		/* libcurl shortens the wait to its own next timeout. */
		if (running && curl_multi_poll(multi, NULL, 0, 1000, NULL) != CURLM_OK)
			break;
	}
	/* Anything still attached (a multi failure) is finished as an error;
	 * removing it mid-transfer closes its connection. */
	for (size_t i = 0; i < n; i++) {
		if (ts[i].easy) {
			curl_multi_remove_handle(multi, ts[i].easy);
			transfer_finish(&ts[i], CURLE_RECV_ERROR);
		}
	}
out:
	if (multi)
		multi_put(client, multi);
	if (ts != &one)
		free(ts);
	return r;
}

int efs_http_call_run(struct efs_http_client *client, struct efs_http_call *call)
{
	struct efs_http_call *calls[1] = {call};
	run_transfers(client, calls, 1);
	return call->error;
}

int efs_http_call_run_parallel(struct efs_http_client *client, struct efs_http_call **calls,
			       size_t n)
{
	return run_transfers(client, calls, n);
}
