/* SPDX-License-Identifier: MIT */
/* http_client.c - owns libcurl: handle pool, checked setup, multi transfers. */
#include "echofs/http_client.h"
#include "echofs/util.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_RESP_CAP (1024 * 1024)
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_CONNECT_TIMEOUT_MS 2000
#define POOL_MAX 64

/* Idle easy handles; each keeps its own connection cache, so reusing one
 * reuses its keep-alive connection. */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static CURL *pool[POOL_MAX];
static size_t pool_len;

/* Per transfer: the call, its header list, and the upload position. */
struct transfer {
	struct efs_http_call *call;
	CURL *easy;
	struct curl_slist *headers;
	size_t upload_pos;
	int sink_error; /* also the source's and the progress hook's */
	/* Stall detection: bytes moved so far, and when that last changed. */
	int64_t moved;
	int64_t moved_at_ms;
};

int efs_http_client_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

void efs_http_client_global_cleanup(void)
{
	pthread_mutex_lock(&pool_lock);
	for (size_t i = 0; i < pool_len; i++)
		curl_easy_cleanup(pool[i]);
	pool_len = 0;
	pthread_mutex_unlock(&pool_lock);
	curl_global_cleanup();
}

static CURL *handle_get(void)
{
	CURL *h = NULL;
	pthread_mutex_lock(&pool_lock);
	if (pool_len > 0)
		h = pool[--pool_len];
	pthread_mutex_unlock(&pool_lock);
	if (h)
		curl_easy_reset(h); /* keeps live connections and caches */
	else
		h = curl_easy_init();
	return h;
}

static void handle_put(CURL *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&pool_lock);
	if (pool_len < POOL_MAX) {
		pool[pool_len++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&pool_lock);
	if (h)
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

/* Keeps the value of call->capture_header. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct transfer *t = userdata;
	size_t len = size * nmemb;
	size_t name_len = strlen(t->call->capture_header);
	if (len > name_len + 1 && data[name_len] == ':' &&
	    strncasecmp(data, t->call->capture_header, name_len) == 0) {
		const char *v = data + name_len + 1;
		size_t vlen = len - name_len - 1;
		while (vlen > 0 && (*v == ' ' || *v == '\t'))
			v++, vlen--;
		while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
			vlen--;
		vlen = EFS_MIN(vlen, sizeof(t->call->captured) - 1);
		memcpy(t->call->captured, v, vlen);
		t->call->captured[vlen] = '\0';
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

static int transfer_setup(struct transfer *t, struct efs_http_call *call)
{
	char header[4200]; /* fits "Authorization: Bearer " + a token */
	memset(t, 0, sizeof(*t));
	t->call = call;
	call->status = 0;
	call->error = 0;
	call->errmsg[0] = '\0';
	if (call->resp_cap)
		call->resp.cap = call->resp_cap;
	efs_buf_reset(&call->resp);

	t->easy = handle_get();
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
	call->captured[0] = '\0';
	if (call->capture_header) {
		SETOPT(h, CURLOPT_HEADERFUNCTION, on_header);
		SETOPT(h, CURLOPT_HEADERDATA, t);
	}
	if (strcmp(call->method, "HEAD") == 0)
		SETOPT(h, CURLOPT_NOBODY, 1L);
	if (call->body) {
		SETOPT(h, CURLOPT_UPLOAD, 1L);
		SETOPT(h, CURLOPT_READFUNCTION, on_read);
		SETOPT(h, CURLOPT_READDATA, t);
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
	handle_put(t->easy);
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
	default:
		return -EIO;
	}
}

static void transfer_finish(struct transfer *t, CURLcode code)
{
	struct efs_http_call *call = t->call;
	if (code == CURLE_OK) {
		curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &call->status);
	} else {
		call->status = 0;
		if (t->sink_error) {
			call->error = t->sink_error;
			snprintf(call->errmsg, sizeof(call->errmsg), "%s",
				 t->sink_error == -E2BIG ? "response too large"
							 : strerror(-t->sink_error));
			/* The status stays 0: the caller sees the error. */
		} else {
			call->error = map_curl_error(code);
			snprintf(call->errmsg, sizeof(call->errmsg), "%s", curl_easy_strerror(code));
		}
	}
	curl_slist_free_all(t->headers);
	t->headers = NULL;
	handle_put(t->easy);
	t->easy = NULL;
}

int efs_http_call_run(struct efs_http_call *call)
{
	struct transfer t;
	int r = transfer_setup(&t, call);
	if (r < 0) {
		call->error = r;
		snprintf(call->errmsg, sizeof(call->errmsg), "could not set up the request");
		return r;
	}
	transfer_finish(&t, curl_easy_perform(t.easy));
	return call->error;
}

int efs_http_call_run_parallel(struct efs_http_call **calls, size_t n)
{
	struct transfer *ts = calloc(n ? n : 1, sizeof(*ts));
	CURLM *multi = curl_multi_init();
	int r = 0;
	if (!ts || !multi) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		int s = transfer_setup(&ts[i], calls[i]);
		if (s < 0) {
			calls[i]->error = s;
			snprintf(calls[i]->errmsg, sizeof(calls[i]->errmsg),
				 "could not set up the request");
			continue;
		}
		curl_easy_setopt(ts[i].easy, CURLOPT_PRIVATE, &ts[i]);
		curl_multi_add_handle(multi, ts[i].easy);
	}
	int running = 1;
	while (running) {
		if (curl_multi_perform(multi, &running) != CURLM_OK)
			break;
		if (running)
			curl_multi_poll(multi, NULL, 0, 1000, NULL);
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
	}
	/* Anything still attached (a multi failure) is finished as an error. */
	for (size_t i = 0; i < n; i++) {
		if (ts[i].easy) {
			curl_multi_remove_handle(multi, ts[i].easy);
			transfer_finish(&ts[i], CURLE_RECV_ERROR);
		}
	}
out:
	if (multi)
		curl_multi_cleanup(multi);
	free(ts);
	return r;
}
