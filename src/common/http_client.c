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
 * completed a response cleanly are kept.
 *
 * Calls marked direct_body skip libcurl (the "Direct bodies" section
 * below): their bodies leave from the caller's buffer, and their replies'
 * bodies arrive in the caller's, on sockets of the client's own pool;
 * this file speaks HTTP/1.1 for them. */
#include "echofs/http_client.h"
#include "echofs/util.h"

#include <curl/curl.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

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

/* Idle direct connections a client keeps, to all servers and to one (as
 * for libcurl's: MULTI_POOL_MAX, each multi keeping one per server): a
 * chunk's replicas on 3 workers, 16 uploads with 3 chunks in flight each,
 * fit; a give-back beyond a server's 32 closes the connection, beyond
 * the total the oldest idle one. Take and give scan the list: 256 short
 * compares under the lock, about what libcurl's own connection-cache
 * lookup and handle set-up cost per call. */
#define DIRECT_IDLE_MAX 256
#define DIRECT_IDLE_PER_ORIGIN 32
#define DIRECT_ORIGIN_MAX 280     /* "host:port" as in the URL */
#define DIRECT_HEAD_MAX 8192      /* our request head; a call whose head is longer uses libcurl */
#define DIRECT_RESP_HEAD_MAX 16384 /* one response head; longer fails the call (-EIO) */
#define DIRECT_LINE_MAX 256       /* a chunk-size or trailer line of a chunked reply */
#define DIRECT_RETRIES 5          /* sends on another connection, as libcurl's CONN_MAX_RETRIES */
#define DIRECT_ADDRS 4            /* resolved addresses tried in turn */

/* An idle kept-alive direct connection. */
struct direct_idle {
	int fd;
	int64_t since_ms; /* given back at */
	char origin[DIRECT_ORIGIN_MAX];
};

/* The direct connections of a client (inside struct efs_http_client). */
struct direct_pool {
	pthread_mutex_t lock;
	struct direct_idle idle[DIRECT_IDLE_MAX]; /* oldest first */
	size_t len;
	/* A proxy in the environment: libcurl would use it, so every call
	 * goes through libcurl. */
	bool off;
};

static void direct_pool_init(struct direct_pool *p)
{
	pthread_mutex_init(&p->lock, NULL);
	p->len = 0;
	p->off = getenv("http_proxy") || getenv("all_proxy") || getenv("ALL_PROXY");
}

static void direct_pool_release(struct direct_pool *p)
{
	for (size_t i = 0; i < p->len; i++)
		close(p->idle[i].fd);
	p->len = 0;
	pthread_mutex_destroy(&p->lock);
}

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
	/* Direct calls' own connections (direct_body, below). */
	struct direct_pool direct;
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

/* The stall and min_speed rules of one call (efs_http_call's
 * stall_timeout_s and min_speed), fed with the bytes moved so far; the
 * libcurl path and the direct path (below) judge transfers alike. */
struct speed_watch {
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

/* Per transfer: the client, the call, its header list, and the upload position. */
struct transfer {
	struct efs_http_client *client;
	struct efs_http_call *call;
	CURL *easy;
	struct curl_slist *headers;
	size_t upload_pos;
	int sink_error; /* also the source's and the progress hook's */
	char curl_error[CURL_ERROR_SIZE]; /* libcurl's detailed reason */
	struct speed_watch watch;
};

/* Whether fewer than min_speed * window bytes moved over the last window
 * (judged once the transfer is a window old). Records a sample. */
static bool under_min_speed(struct speed_watch *w, const struct efs_http_call *call, int64_t now,
			    int64_t moved, bool remaining)
{
	const size_t ring = EFS_ARRAY_SIZE(w->samples);
	int64_t window_ms = call->stall_timeout_s * 1000;
	int64_t step_ms = EFS_MAX(window_ms / 8, 1);
	if (w->sample_count == 0 ||
	    now - w->samples[(w->sample_count - 1) % ring].at_ms >= step_ms) {
		w->samples[w->sample_count % ring].at_ms = now;
		w->samples[w->sample_count % ring].moved = moved;
		w->sample_count++;
	}
	/* Nothing moved for a second: stopped, not slow (a partition, a
	 * pause); the stall rule's business. */
	if (!remaining || now - w->moved_at_ms >= 1000)
		return false;
	/* The newest sample at least a window old. */
	for (unsigned k = 0; k < w->sample_count && k < ring; k++) {
		unsigned idx = (w->sample_count - 1 - k) % ring;
		if (now - w->samples[idx].at_ms < window_ms)
			continue;
		int64_t span_ms = now - w->samples[idx].at_ms;
		int64_t got = moved - w->samples[idx].moved;
		if (got * 1000 >= call->min_speed * span_ms)
			return false;
		snprintf(w->slow_why, sizeof(w->slow_why),
			 "too slow: %lld bytes in %lld ms, under %lld bytes/s", (long long)got,
			 (long long)span_ms, (long long)call->min_speed);
		return true;
	}
	return false;
}

/* Applies both rules with call->stall_timeout_s > 0 (call at least about
 * once a second): @moved bytes so far either way, @remaining whether
 * bytes of the body remain to be sent or of a begun response body to be
 * received. 0 to go on, or -ETIMEDOUT with stalled or slow_stop set and
 * the reason in slow_why. */
static int watch_check(struct speed_watch *w, const struct efs_http_call *call, int64_t now,
		       int64_t moved, bool remaining)
{
	/* No byte in either direction for the whole window: the peer is
	 * stuck (paused, disk hung). libcurl's low-speed check averages over
	 * several seconds and reacts far later. */
	if (moved != w->moved || w->moved_at_ms == 0) {
		w->moved = moved;
		w->moved_at_ms = now;
	} else if (now - w->moved_at_ms > call->stall_timeout_s * 1000) {
		snprintf(w->slow_why, sizeof(w->slow_why), "stalled: no byte for %ld s",
			 call->stall_timeout_s);
		w->stalled = true;
		return -ETIMEDOUT;
	}
	if (call->min_speed > 0 && under_min_speed(w, call, now, moved, remaining)) {
		w->slow_stop = true;
		return -ETIMEDOUT;
	}
	return 0;
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
	direct_pool_init(&c->direct);
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
	direct_pool_release(&c->direct);
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
		/* Bytes remain: the body is not all sent, or the response's
		 * body has begun and is not all here. Waiting for the answer is
		 * the stall rule's business. */
		bool remaining = (ultotal > 0 && ulnow < ultotal) ||
				 (dlnow > 0 && (dltotal <= 0 || dlnow < dltotal));
		int r = watch_check(&t->watch, t->call, efs_mono_ms(), (int64_t)(dlnow + ulnow),
				    remaining);
		if (r < 0) {
			t->sink_error = r;
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

/* Clears @call's results before it is run (either path) and applies its
 * reply cap. */
static void call_reset(struct efs_http_call *call)
{
	call->status = 0;
	call->error = 0;
	call->too_slow = false;
	call->elapsed_ms = 0;
	call->errmsg[0] = '\0';
	if (call->resp_cap)
		call->resp.cap = call->resp_cap;
}

static int transfer_setup(struct transfer *t, struct efs_http_client *client,
			  struct efs_http_call *call)
{
	char header[4200]; /* fits "Authorization: Bearer " + a token */
	memset(t, 0, sizeof(*t));
	t->client = client;
	t->call = call;
	call_reset(call);
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
	for (size_t i = 0; i < EFS_ARRAY_SIZE(call->headers); i++)
		if (call->headers[i]) /* unused slots may sit anywhere */
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
		if (t->watch.slow_stop || t->watch.stalled) {
			call->error = t->sink_error;
			call->too_slow = t->watch.slow_stop;
			snprintf(call->errmsg, sizeof(call->errmsg), "%s", t->watch.slow_why);
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
	if (call->on_done)
		call->on_done(call, call->on_done_ctx);
}

/* ---- Direct bodies ------------------------------------------------------
 *
 * libcurl copies every byte of a request body into its upload buffer
 * before send(): a memory body over 64 KiB goes through a read callback
 * (ours, or libcurl's own for POSTFIELDS), which fills the 64 KiB buffer;
 * a larger CURLOPT_UPLOAD_BUFFERSIZE makes fewer, larger copies of the
 * same bytes, and CURL_READFUNC_PAUSE only delays them. For a replica
 * write that is the chunk copied once more per replica; for a small one
 * libcurl's per-call set-up (handle options, header list, multi loop,
 * connection cache) costs more than the send. A reply body is received
 * into libcurl's buffer and copied out by the write callback. A call
 * marked direct_body skips libcurl: its head and body (if any) leave with
 * sendmsg() straight from the caller's buffer, on a plain-HTTP connection
 * from the client's own pool, and the reply is parsed here (status line,
 * headers, Content-Length or chunked body); the rest of a Content-Length
 * body after the head's recv() is received straight into call->resp.
 * The rules of a libcurl call hold:
 * deadlines, the stall and min_speed rules, the reply cap, the error
 * codes, keep-alive with the same age limit, a reused connection found
 * closed sends the request again on another (the body is in memory), and
 * a connection whose transfer failed is closed. */

/* An http:// URL cut up. */
struct direct_url {
	char origin[DIRECT_ORIGIN_MAX]; /* the authority: Host header and pool key */
	char host[256];                 /* without brackets */
	char port[8];
	const char *path; /* into the URL: "/...", "?..." or "" */
	size_t path_len;  /* up to a '#' */
};

enum chunk_state { CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER };

/* One call on the direct path. */
struct direct {
	struct efs_http_call *call;
	struct direct_url url;
	char head[DIRECT_HEAD_MAX];
	size_t head_len;
	size_t total; /* head_len + body_len */
	int fd;       /* -1: none */
	bool reused;  /* the connection came from the pool */
	bool connecting;
	int retries;
	int64_t start_ms, connect_start_ms;
	struct sockaddr_storage addrs[DIRECT_ADDRS];
	socklen_t addr_lens[DIRECT_ADDRS];
	int addr_count, addr_next;
	int connect_errno;
	/* sending */
	size_t sent;     /* of total */
	int send_errno;  /* the send failed: no more sending (the reply may still come) */
	/* the reply on this connection */
	int64_t received;   /* bytes of it, head included */
	char rhead[DIRECT_RESP_HEAD_MAX];
	size_t rhead_len;
	bool head_done;
	long status;
	bool keep_alive;
	int64_t body_left;  /* Content-Length bytes to come; -2 until EOF */
	int64_t body_got;
	bool chunked;       /* a chunked body: chunk_left bytes of the current chunk to come */
	int64_t chunk_left;
	bool resp_done;
	bool extra;         /* bytes after the reply: the connection is not reused */
	enum chunk_state ch;
	char line[DIRECT_LINE_MAX];
	size_t line_len;
	struct speed_watch watch;
	bool done;
};

/* Whether an idle connection is still open: nothing to read on it (a
 * server that closes it makes it readable, at EOF). */
static bool direct_idle_alive(int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	return poll(&pfd, 1, 0) == 0;
}

/* A live idle connection to @origin, most recently given back first, or
 * -1. Closes the dead and the too old ones it meets. */
static int direct_idle_take(struct direct_pool *p, const char *origin)
{
	for (;;) {
		int fd = -1;
		int64_t since = 0;
		pthread_mutex_lock(&p->lock);
		for (size_t i = p->len; i-- > 0;) {
			if (strcmp(p->idle[i].origin, origin) != 0)
				continue;
			fd = p->idle[i].fd;
			since = p->idle[i].since_ms;
			memmove(&p->idle[i], &p->idle[i + 1], (p->len - i - 1) * sizeof(p->idle[0]));
			p->len--;
			break;
		}
		pthread_mutex_unlock(&p->lock);
		if (fd < 0)
			return -1;
		if (efs_mono_ms() - since <= MAX_CONN_AGE_S * 1000 && direct_idle_alive(fd))
			return fd;
		close(fd);
	}
}

/* Keeps @fd for the next call to @origin; closes it when that server has
 * DIRECT_IDLE_PER_ORIGIN idle ones already. A full pool closes its oldest;
 * connections idle longer than MAX_CONN_AGE_S are closed on the way. */
static void direct_idle_give(struct direct_pool *p, const char *origin, int fd)
{
	int64_t now = efs_mono_ms();
	size_t same = 0, kept = 0;
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < p->len; i++) {
		if (now - p->idle[i].since_ms > MAX_CONN_AGE_S * 1000) {
			close(p->idle[i].fd);
			continue;
		}
		same += strcmp(p->idle[i].origin, origin) == 0;
		p->idle[kept++] = p->idle[i];
	}
	p->len = kept;
	if (same >= DIRECT_IDLE_PER_ORIGIN) {
		close(fd);
	} else {
		if (p->len == DIRECT_IDLE_MAX) {
			close(p->idle[0].fd);
			memmove(&p->idle[0], &p->idle[1], (p->len - 1) * sizeof(p->idle[0]));
			p->len--;
		}
		p->idle[p->len].fd = fd;
		p->idle[p->len].since_ms = now;
		efs_strlcpy(p->idle[p->len].origin, origin, sizeof(p->idle[0].origin));
		p->len++;
	}
	pthread_mutex_unlock(&p->lock);
}

/* Cuts "http://host[:port][/path][?query]" (host a name, an IPv4 address
 * or a bracketed IPv6 one). False for anything else (https, user info,
 * a bad port): such a call goes through libcurl. */
static bool direct_url_parse(const char *url, struct direct_url *u)
{
	if (strncasecmp(url, "http://", 7) != 0)
		return false;
	const char *auth = url + 7;
	size_t auth_len = strcspn(auth, "/?#");
	if (auth_len == 0 || auth_len >= sizeof(u->origin) || memchr(auth, '@', auth_len))
		return false;
	memcpy(u->origin, auth, auth_len);
	u->origin[auth_len] = '\0';
	const char *host = u->origin, *port = NULL;
	size_t host_len;
	if (host[0] == '[') {
		const char *bracket = strchr(host, ']');
		if (!bracket)
			return false;
		host++;
		host_len = (size_t)(bracket - host);
		if (bracket[1] == ':')
			port = bracket + 2;
		else if (bracket[1] != '\0')
			return false;
	} else {
		const char *colon = strchr(host, ':');
		host_len = colon ? (size_t)(colon - host) : auth_len;
		port = colon ? colon + 1 : NULL;
	}
	if (host_len == 0 || host_len >= sizeof(u->host))
		return false;
	memcpy(u->host, host, host_len);
	u->host[host_len] = '\0';
	if (port) {
		size_t n = strlen(port);
		if (n == 0 || n >= sizeof(u->port) || strspn(port, "0123456789") != n)
			return false;
		memcpy(u->port, port, n + 1);
	} else {
		efs_strlcpy(u->port, "80", sizeof(u->port));
	}
	u->path = auth + auth_len;
	u->path_len = strcspn(u->path, "#");
	return true;
}

/* Appends to the request head; -E2BIG when it does not fit. */
EFS_PRINTF(2, 3)
static int head_add(struct direct *d, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(d->head + d->head_len, sizeof(d->head) - d->head_len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(d->head) - d->head_len)
		return -E2BIG;
	d->head_len += (size_t)n;
	return 0;
}

/* The request head, with the headers libcurl would send for the call:
 * Host, Accept, Content-Length (with a body), then the call's own; no
 * Expect (so no 100-continue round trip), no Content-Type unless the call
 * names one.
 * A call header "Name:" (a removal, for libcurl) is left out, "Name;"
 * goes as an empty "Name:"; like libcurl's list, they end at the first
 * NULL slot. */
static int direct_head(struct direct *d)
{
	const struct efs_http_call *call = d->call;
	int r = head_add(d, "%s %s%.*s HTTP/1.1\r\nHost: %s\r\nAccept: */*\r\n",
			 call->method, d->url.path[0] == '/' ? "" : "/", (int)d->url.path_len,
			 d->url.path, d->url.origin);
	if (r == 0 && call->body)
		r = head_add(d, "Content-Length: %zu\r\n", call->body_len);
	if (r == 0 && call->bearer)
		r = head_add(d, "Authorization: Bearer %s\r\n", call->bearer);
	if (r == 0 && call->content_type)
		r = head_add(d, "Content-Type: %s\r\n", call->content_type);
	for (size_t i = 0; r == 0 && i < EFS_ARRAY_SIZE(call->headers); i++) {
		const char *h = call->headers[i];
		if (!h)
			continue; /* unused slots may sit anywhere */
		const char *colon = strchr(h, ':');
		size_t len = strlen(h);
		if (colon && colon[1 + strspn(colon + 1, " \t")] == '\0')
			continue;
		if (!colon && len > 0 && h[len - 1] == ';')
			r = head_add(d, "%.*s:\r\n", (int)(len - 1), h);
		else
			r = head_add(d, "%s\r\n", h);
	}
	if (r == 0)
		r = head_add(d, "\r\n");
	return r;
}

/* Whether @call asks for the direct path: marked direct_body, with a
 * memory body of any size (a small one leaves in one sendmsg with its
 * head, as an inline body does through libcurl, without libcurl's
 * per-transfer set-up, multi loop and header list) or none at all (a GET,
 * whose reply body is received straight into call->resp). */
static bool direct_wanted(const struct efs_http_call *call)
{
	return call->direct_body && !call->source;
}

/* Whether @call may take the direct path, and its head if so. */
static bool direct_prepare(const struct direct_pool *p, struct direct *d,
			   struct efs_http_call *call)
{
	d->call = call;
	d->fd = -1;
	return !p->off && direct_wanted(call) && !call->progress && !call->sink &&
	       call->max_speed == 0 && strcmp(call->method, "HEAD") != 0 &&
	       direct_url_parse(call->url, &d->url) && direct_head(d) == 0;
}

/* ---- one call's connection and reply ---- */

static void direct_close(struct direct *d)
{
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
}

/* Ends the call: @error 0 with the reply's status (the connection is
 * kept when the exchange ended cleanly), or the error with @fmt. */
EFS_PRINTF(4, 5)
static void direct_finish(struct direct_pool *p, struct direct *d, int error, const char *fmt, ...)
{
	struct efs_http_call *call = d->call;
	d->done = true;
	call->elapsed_ms = efs_mono_ms() - d->start_ms;
	if (error) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(call->errmsg, sizeof(call->errmsg), fmt, ap);
		va_end(ap);
		call->error = error;
		call->status = 0;
		direct_close(d);
	} else {
		call->status = d->status;
		if (d->keep_alive && !d->extra && d->sent == d->total && d->send_errno == 0)
			direct_idle_give(p, d->url.origin, d->fd);
		else
			close(d->fd);
		d->fd = -1;
	}
	if (call->on_done)
		call->on_done(call, call->on_done_ctx);
}

/* Starts a connection to the next resolved address; -ECONNREFUSED when
 * none is left (libcurl's COULDNT_CONNECT), the reason in d->connect_errno. */
static int direct_connect_next(struct direct *d)
{
	while (d->addr_next < d->addr_count) {
		int i = d->addr_next++;
		int fd = socket(d->addrs[i].ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			d->connect_errno = errno;
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, (struct sockaddr *)&d->addrs[i], d->addr_lens[i]) == 0 ||
		    errno == EINPROGRESS) {
			d->fd = fd;
			d->connecting = true;
			return 0;
		}
		d->connect_errno = errno;
		close(fd);
	}
	return -ECONNREFUSED;
}

/* A connection for the call: an idle one, or a new one being connected. */
static void direct_open(struct direct_pool *p, struct direct *d)
{
	d->sent = 0;
	d->send_errno = 0;
	d->received = 0;
	d->rhead_len = 0;
	d->head_done = d->resp_done = d->extra = false;
	d->status = 0;
	d->body_got = 0;
	d->call->captured[0] = '\0';
	efs_buf_reset(&d->call->resp);
	d->fd = direct_idle_take(p, d->url.origin);
	d->reused = d->fd >= 0;
	d->connecting = false;
	if (d->reused)
		return;
	d->connect_start_ms = efs_mono_ms();
	if (d->addr_count == 0) {
		struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
		struct addrinfo *res = NULL;
		if (getaddrinfo(d->url.host, d->url.port, &hints, &res) != 0 || !res) {
			direct_finish(p, d, -EHOSTUNREACH, "Could not resolve host: %s",
				      d->url.host);
			return;
		}
		for (struct addrinfo *a = res; a && d->addr_count < DIRECT_ADDRS; a = a->ai_next) {
			if (a->ai_addrlen > sizeof(d->addrs[0]))
				continue;
			memcpy(&d->addrs[d->addr_count], a->ai_addr, a->ai_addrlen);
			d->addr_lens[d->addr_count++] = a->ai_addrlen;
		}
		freeaddrinfo(res);
	}
	d->addr_next = 0;
	d->connect_errno = ECONNREFUSED;
	if (direct_connect_next(d) < 0)
		direct_finish(p, d, -ECONNREFUSED, "Failed to connect to %s port %s: %s",
			      d->url.host, d->url.port, strerror(d->connect_errno));
}

/* The connection broke (@err, 0 at EOF). Before any byte of a reply, a
 * reused connection (the server closed it while it sat idle) sends the
 * request again on another; otherwise the call fails with -EIO. */
static void direct_broken(struct efs_http_client *c, struct direct *d, int err)
{
	struct direct_pool *p = &c->direct;
	if (d->reused && d->received == 0 && d->retries < DIRECT_RETRIES) {
		d->retries++;
		direct_close(d);
		direct_open(p, d);
		return;
	}
	if (d->send_errno)
		err = d->send_errno;
	if (d->received == 0)
		direct_finish(p, d, -EIO, "%s failure: %s (no reply from %s)",
			      d->send_errno ? "Send" : "Recv", err ? strerror(err) : "connection closed",
			      d->url.origin);
	else
		direct_finish(p, d, -EIO, "the reply from %s ended early: %s", d->url.origin,
			      err ? strerror(err) : "connection closed");
}

/* Keeps @len bytes of the reply body; -E2BIG over the call's cap. */
static int direct_keep(struct direct *d, const char *data, size_t len)
{
	d->body_got += (int64_t)len;
	return len ? efs_buf_append(&d->call->resp, data, len) : 0;
}

/* Feeds bytes of a chunked body; 0, or a negative errno. */
static int direct_chunked(struct direct *d, const char *data, size_t len)
{
	while (len > 0 && !d->resp_done) {
		if (d->ch == CH_DATA) {
			size_t n = (size_t)EFS_MIN((int64_t)len, d->chunk_left);
			int r = direct_keep(d, data, n);
			if (r < 0)
				return r;
			data += n;
			len -= n;
			d->chunk_left -= (int64_t)n;
			if (d->chunk_left == 0)
				d->ch = CH_DATA_END;
			continue;
		}
		/* A line: a chunk's size, the CRLF after its data, a trailer. */
		char ch = *data++;
		len--;
		if (ch != '\n') {
			if (d->line_len == sizeof(d->line) - 1)
				return -EIO;
			d->line[d->line_len++] = ch;
			continue;
		}
		if (d->line_len > 0 && d->line[d->line_len - 1] == '\r')
			d->line_len--;
		d->line[d->line_len] = '\0';
		size_t line_len = d->line_len;
		d->line_len = 0;
		if (d->ch == CH_DATA_END) {
			if (line_len != 0)
				return -EIO;
			d->ch = CH_SIZE;
		} else if (d->ch == CH_SIZE) {
			char *end = NULL;
			errno = 0;
			unsigned long long size = strtoull(d->line, &end, 16);
			if (end == d->line || errno || size > (unsigned long long)INT64_MAX ||
			    (*end && *end != ';' && *end != ' ' && *end != '\t'))
				return -EIO;
			d->chunk_left = (int64_t)size;
			d->ch = size ? CH_DATA : CH_TRAILER;
		} else if (line_len == 0) { /* CH_TRAILER: the blank line ends the body */
			d->resp_done = true;
		}
	}
	if (len > 0)
		d->extra = true;
	return 0;
}

/* Feeds bytes of the final reply's body; 0, or a negative errno. */
static int direct_body_bytes(struct direct *d, const char *data, size_t len)
{
	if (d->resp_done) {
		d->extra = d->extra || len > 0;
		return 0;
	}
	if (d->chunked)
		return direct_chunked(d, data, len);
	if (d->body_left == -2)
		return direct_keep(d, data, len);
	size_t n = (size_t)EFS_MIN((int64_t)len, d->body_left);
	int r = direct_keep(d, data, n);
	d->body_left -= (int64_t)n;
	d->resp_done = d->body_left == 0;
	d->extra = n < len;
	return r;
}

/* Parses one reply head (@len bytes, blank line included): the status,
 * the framing, keep-alive; gives each header to the call as libcurl's
 * header callback does. 0, or a negative errno. */
static int direct_parse_head(struct direct *d, const char *head, size_t len)
{
	struct efs_http_call *call = d->call;
	if (len < 12 || memcmp(head, "HTTP/1.", 7) != 0 || head[8] != ' ' ||
	    strspn(head + 9, "0123456789") < 3)
		return -EIO;
	d->status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
	if (d->status < 100)
		return -EIO;
	d->keep_alive = head[7] == '1';
	bool length_known = false, chunked = false;
	const char *line = memchr(head, '\n', len);
	const char *end = head + len;
	while (line && ++line < end) {
		const char *eol = memchr(line, '\n', (size_t)(end - line));
		if (!eol)
			break;
		const char *colon = memchr(line, ':', (size_t)(eol - line));
		if (colon) {
			size_t name_len = (size_t)(colon - line);
			const char *v = colon + 1;
			size_t vlen = (size_t)(eol - v);
			while (vlen > 0 && (*v == ' ' || *v == '\t'))
				v++, vlen--;
			while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == ' ' ||
					    v[vlen - 1] == '\t'))
				vlen--;
			if (name_len == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
				char num[24];
				char *num_end = NULL;
				size_t n = EFS_MIN(vlen, sizeof(num) - 1);
				memcpy(num, v, n);
				num[n] = '\0';
				errno = 0;
				long long cl = strtoll(num, &num_end, 10);
				if (n == 0 || *num_end || errno || cl < 0)
					return -EIO;
				d->body_left = cl;
				length_known = true;
			} else if (name_len == 17 &&
				   strncasecmp(line, "Transfer-Encoding", 17) == 0) {
				chunked = vlen >= 7 && strncasecmp(v + vlen - 7, "chunked", 7) == 0;
			} else if (name_len == 10 && strncasecmp(line, "Connection", 10) == 0) {
				if (vlen == 5 && strncasecmp(v, "close", 5) == 0)
					d->keep_alive = false;
				else if (vlen == 10 && strncasecmp(v, "keep-alive", 10) == 0)
					d->keep_alive = true;
			}
			if (call->capture_header && name_len == strlen(call->capture_header) &&
			    strncasecmp(line, call->capture_header, name_len) == 0) {
				size_t n = EFS_MIN(vlen, sizeof(call->captured) - 1);
				memcpy(call->captured, v, n);
				call->captured[n] = '\0';
			}
			if (call->header_fn) {
				int r = call->header_fn(call->header_ctx, line, name_len, v, vlen);
				if (r < 0)
					return r;
			}
		}
		line = eol;
	}
	d->chunked = false;
	if ((d->status >= 100 && d->status < 200) || d->status == 204 || d->status == 304) {
		d->body_left = 0; /* no body, whatever the headers say */
	} else if (chunked) {
		d->chunked = true;
		d->ch = CH_SIZE;
		d->line_len = 0;
	} else if (!length_known) {
		d->body_left = -2;
		d->keep_alive = false; /* the body ends when the server closes */
	}
	d->resp_done = !d->chunked && d->body_left == 0;
	return 0;
}

/* Takes what the head buffer holds: interim 1xx heads are parsed (their
 * headers seen) and dropped; the final head is parsed and the bytes after
 * it are body. 0, or a negative errno. */
static int direct_heads(struct direct *d)
{
	while (!d->head_done) {
		char *end = memmem(d->rhead, d->rhead_len, "\r\n\r\n", 4);
		if (!end)
			return d->rhead_len == sizeof(d->rhead) ? -EIO : 0;
		size_t head_len = (size_t)(end + 4 - d->rhead);
		int r = direct_parse_head(d, d->rhead, head_len);
		if (r < 0)
			return r;
		size_t rest = d->rhead_len - head_len;
		if (d->status >= 100 && d->status < 200 && d->status != 101) {
			memmove(d->rhead, d->rhead + head_len, rest);
			d->rhead_len = rest;
			d->status = 0;
			d->resp_done = false;
			continue;
		}
		d->head_done = true;
		d->rhead_len = 0;
		return direct_body_bytes(d, end + 4, rest);
	}
	return 0;
}

/* Takes @len more bytes of the reply, however they were cut: 0, or
 * -EIO (malformed, a head over DIRECT_RESP_HEAD_MAX), -E2BIG (a body over
 * the call's cap) or a header_fn's error. Then d->resp_done says whether
 * the reply is complete (tests/fuzz/fuzz_http_reply.c feeds it). */
static int direct_take(struct direct *d, const char *data, size_t len)
{
	while (len > 0 && !d->head_done) {
		size_t n = EFS_MIN(len, sizeof(d->rhead) - d->rhead_len);
		memcpy(d->rhead + d->rhead_len, data, n);
		d->rhead_len += n;
		data += n;
		len -= n;
		int r = direct_heads(d);
		if (r < 0)
			return r;
	}
	return len > 0 ? direct_body_bytes(d, data, len) : 0;
}

/* Where the rest of a Content-Length body goes: straight into the
 * call's reply buffer, sized for it once (the body's only copy on this
 * side is the kernel's into it). NULL when the reply is not at that
 * point; -E2BIG in *@err when the body would pass the call's cap. */
static char *direct_body_room(struct direct *d, size_t *room, int *err)
{
	struct efs_buf *resp = &d->call->resp;
	if (!d->head_done || d->chunked || d->resp_done || d->body_left <= 0)
		return NULL;
	if (d->body_left > (int64_t)(SIZE_MAX / 2)) {
		*err = -E2BIG;
		return NULL;
	}
	*err = efs_buf_reserve(resp, (size_t)d->body_left);
	if (*err < 0)
		return NULL;
	*room = (size_t)d->body_left;
	return resp->data + resp->len;
}

/* Reads what the connection has; ends the call when the reply is
 * complete or the connection failed. The head, and what comes with it
 * in its recv(), go through @buf; the rest of a Content-Length body is
 * received into call->resp (direct_body_room). */
static void direct_recv(struct efs_http_client *c, struct direct *d)
{
	char buf[16384];
	while (!d->done) {
		int err = 0;
		size_t room = sizeof(buf);
		char *into = direct_body_room(d, &room, &err);
		if (err < 0) {
			direct_finish(&c->direct, d, err, "%s",
				      err == -E2BIG ? "response too large" : strerror(-err));
			return;
		}
		ssize_t n = recv(d->fd, into ? into : buf, room, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			if (n == 0 && d->head_done && d->body_left == -2) {
				d->resp_done = true; /* a body that ends at EOF */
				d->keep_alive = false;
				direct_finish(&c->direct, d, 0, "%s", "");
				return;
			}
			direct_broken(c, d, n < 0 ? errno : 0);
			return;
		}
		d->received += n;
		int r = 0;
		if (into) {
			struct efs_buf *resp = &d->call->resp;
			resp->len += (size_t)n;
			resp->data[resp->len] = '\0';
			d->body_got += n;
			d->body_left -= n;
			d->resp_done = d->body_left == 0;
		} else {
			r = direct_take(d, buf, (size_t)n);
		}
		if (r == -E2BIG) {
			direct_finish(&c->direct, d, -E2BIG, "%s", "response too large");
			return;
		}
		if (r < 0) {
			direct_finish(&c->direct, d, r,
				      r == -EIO ? "a malformed reply from %s" : "reply from %s: %s",
				      d->url.origin, strerror(-r));
			return;
		}
		if (d->resp_done) {
			/* A reply before the whole body went (an early error):
			 * the connection is closed rather than kept. */
			direct_finish(&c->direct, d, 0, "%s", "");
			return;
		}
	}
}

/* Sends what the socket takes of head and body, from the caller's
 * buffer. A failed send stops sending; the reply may still come. */
static void direct_send(struct direct *d)
{
	const struct efs_http_call *call = d->call;
	while (d->sent < d->total && d->send_errno == 0) {
		struct iovec iov[2];
		struct msghdr msg = {.msg_iov = iov};
		if (d->sent < d->head_len) {
			iov[0].iov_base = d->head + d->sent;
			iov[0].iov_len = d->head_len - d->sent;
			iov[1].iov_base = (void *)call->body;
			iov[1].iov_len = d->total - d->head_len;
			msg.msg_iovlen = 2;
		} else {
			iov[0].iov_base = (char *)call->body + (d->sent - d->head_len);
			iov[0].iov_len = d->total - d->sent;
			msg.msg_iovlen = 1;
		}
		ssize_t n = sendmsg(d->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0) {
			d->send_errno = errno;
			return;
		}
		d->sent += (size_t)n;
	}
}

/* Handles poll's @revents for the call's connection. */
static void direct_io(struct efs_http_client *c, struct direct *d, short revents)
{
	if (d->connecting) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(d->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err == 0 && (revents & POLLOUT)) {
			d->connecting = false;
			atomic_fetch_add(&c->connections_opened, 1);
		} else if (err || (revents & (POLLERR | POLLHUP))) {
			d->connect_errno = err ? err : ECONNREFUSED;
			direct_close(d);
			if (direct_connect_next(d) < 0)
				direct_finish(&c->direct, d, -ECONNREFUSED,
					      "Failed to connect to %s port %s: %s", d->url.host,
					      d->url.port, strerror(d->connect_errno));
			return;
		} else {
			return;
		}
	}
	if (revents & (POLLIN | POLLERR | POLLHUP))
		direct_recv(c, d);
	if (!d->done && d->send_errno == 0 && d->sent < d->total)
		direct_send(d);
}

/* The deadlines and the stall and min_speed rules, at @now. */
static void direct_check_time(struct efs_http_client *c, struct direct *d, int64_t now)
{
	const struct efs_http_call *call = d->call;
	long timeout_ms = call->timeout_ms ? call->timeout_ms : DEFAULT_TIMEOUT_MS;
	long connect_ms =
		call->connect_timeout_ms ? call->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
	if (now - d->start_ms >= timeout_ms) {
		direct_finish(&c->direct, d, -ETIMEDOUT,
			      "Operation timed out after %lld milliseconds with %zu out of %zu "
			      "bytes sent and %lld received",
			      (long long)(now - d->start_ms), d->sent, d->total,
			      (long long)d->received);
		return;
	}
	if (d->connecting && now - d->connect_start_ms >= connect_ms) {
		direct_finish(&c->direct, d, -ETIMEDOUT,
			      "Connection timed out after %lld milliseconds",
			      (long long)(now - d->connect_start_ms));
		return;
	}
	if (call->stall_timeout_s > 0) {
		bool remaining = (d->sent < d->total && d->send_errno == 0) ||
				 (d->body_got > 0 && !d->resp_done);
		int64_t moved = (int64_t)d->sent + d->received;
		if (watch_check(&d->watch, call, now, moved, remaining) < 0) {
			d->call->too_slow = d->watch.slow_stop;
			direct_finish(&c->direct, d, -ETIMEDOUT, "%s", d->watch.slow_why);
		}
	}
}

/* Runs @n prepared calls at once on direct connections; each call's
 * result is in its fields. */
static void direct_run(struct efs_http_client *c, struct direct *ds, size_t n)
{
	struct pollfd *pfds = calloc(n, sizeof(*pfds));
	size_t *which = calloc(n, sizeof(*which));
	int64_t start = efs_mono_ms();
	for (size_t i = 0; i < n; i++) {
		struct direct *d = &ds[i];
		struct efs_http_call *call = d->call;
		call_reset(call);
		d->total = d->head_len + (call->body ? call->body_len : 0);
		d->start_ms = start;
		if (!pfds || !which) {
			direct_finish(&c->direct, d, -ENOMEM, "%s", "out of memory");
			continue;
		}
		direct_open(&c->direct, d);
		/* A kept connection is writable: a small request leaves now,
		 * without a poll() round first. */
		if (!d->done && !d->connecting)
			direct_send(d);
	}
	for (;;) {
		size_t active = 0;
		int64_t now = efs_mono_ms();
		int wait_ms = 1000;
		for (size_t i = 0; i < n && pfds && which; i++) {
			struct direct *d = &ds[i];
			if (d->done)
				continue;
			short events = POLLIN;
			if (d->connecting || (d->sent < d->total && d->send_errno == 0))
				events |= POLLOUT;
			if (d->connecting)
				events = POLLOUT;
			pfds[active] = (struct pollfd){.fd = d->fd, .events = events};
			which[active++] = i;
			long timeout_ms = d->call->timeout_ms ? d->call->timeout_ms
							      : DEFAULT_TIMEOUT_MS;
			int64_t left = d->start_ms + timeout_ms - now;
			wait_ms = (int)EFS_MAX(0, EFS_MIN((int64_t)wait_ms, left));
			if (d->connecting) {
				long connect_ms = d->call->connect_timeout_ms
							  ? d->call->connect_timeout_ms
							  : DEFAULT_CONNECT_TIMEOUT_MS;
				left = d->connect_start_ms + connect_ms - now;
				wait_ms = (int)EFS_MAX(0, EFS_MIN((int64_t)wait_ms, left));
			}
		}
		if (active == 0)
			break;
		if (poll(pfds, active, wait_ms) < 0 && errno != EINTR)
			for (size_t k = 0; k < active; k++) /* only EINVAL/ENOMEM */
				pfds[k].revents = POLLERR;
		for (size_t k = 0; k < active; k++)
			if (pfds[k].revents && !ds[which[k]].done)
				direct_io(c, &ds[which[k]], pfds[k].revents);
		now = efs_mono_ms();
		for (size_t k = 0; k < active; k++)
			if (!ds[which[k]].done)
				direct_check_time(c, &ds[which[k]], now);
	}
	free(pfds);
	free(which);
}

/* Runs @n calls on a pooled multi; each call's result is in its fields. */
static int run_transfers(struct efs_http_client *client, struct efs_http_call **calls, size_t n)
{
	/* A batch goes direct when every call in it can (a cluster's
	 * workers are all http or all https); otherwise libcurl runs it all. */
	bool direct = n > 0;
	for (size_t i = 0; direct && i < n; i++)
		direct = direct_wanted(calls[i]);
	struct direct *ds = direct ? calloc(n, sizeof(*ds)) : NULL;
	direct = ds != NULL;
	for (size_t i = 0; direct && i < n; i++)
		direct = direct_prepare(&client->direct, &ds[i], calls[i]);
	if (direct)
		direct_run(client, ds, n);
	free(ds);
	if (direct)
		return 0;

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
