/* SPDX-License-Identifier: MIT */
/* http_server.c - owns libmicrohttpd: routing, auth hook, replies, limits,
 * access log and graceful shutdown. Nothing else in EchoFS includes
 * microhttpd.h. */
#include "echofs/http_server.h"
#include "echofs/http_error.h"
#include "echofs/json.h"
#include "echofs/log.h"
#include "echofs/ticker.h"
#include "echofs/util.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_MAX_BODY (1024 * 1024)
#define DEFAULT_CONN_MEMORY (256 * 1024)
#define DEFAULT_MAX_CONNECTIONS 512
#define DEFAULT_IDLE_TIMEOUT_S 60
/* The reaper looks for overdue header blocks this often (at most). */
#define REAP_INTERVAL_MS 250
#define REAP_LOG_INTERVAL_MS 10000
/* Reply headers a handler may add: S3 objects carry their stored headers
 * and user metadata (x-amz-meta-*) besides the usual ones. */
#define MAX_REPLY_HEADERS 48
/* After an early reply, at most this much of the remaining body is read and
 * dropped (so the client sees the reply); past it the connection closes. */
#define MAX_DISCARD_BYTES (64 * 1024 * 1024)
#define STREAM_BLOCK_SIZE (64 * 1024)
/* With a blocking pool, a streaming reply's read() runs on a pool thread
 * into a buffer of this size, which the event thread then sends. */
#define STREAM_BRIDGE_SIZE (256 * 1024)
#define MAX_METRICS_TEXT (16 * 1024 * 1024)
/* A certificate chain or a key file larger than this is refused. */
#define MAX_TLS_FILE (1024 * 1024)
/* Limits on the request head (docs/API.md, Limits), checked before the
 * route is looked up. libmicrohttpd's own limit, the connection's memory
 * pool (64 KiB on the master, 256 KiB on a worker), stays above them: only
 * a head too large for that pool gets libmicrohttpd's HTML page. */
#define MAX_TARGET_BYTES (8 * 1024)  /* the request target, as sent */
#define MAX_HEADER_BYTES (32 * 1024) /* names and values of every field */
#define MAX_HEADER_COUNT 100
#define MAX_QUERY_PARAMS 100

/* The families requests are recorded in (all NULL without a registry). */
struct http_metrics {
	struct efs_metric *requests;
	struct efs_metric *duration;
	struct efs_metric *bytes_in;
	struct efs_metric *bytes_out;
	struct efs_metric *aborted;
	struct efs_metric *in_flight;
	struct efs_metric *slow_closed;
};

/* One open connection, from libmicrohttpd's STARTED notification to its
 * CLOSED one. libmicrohttpd closes the socket only after CLOSED returns,
 * and CLOSED removes the entry under conns_lock: whoever holds the lock
 * and finds the entry may shutdown() its fd, which cannot have been closed
 * (and reused by another connection) yet. */
struct conn_entry {
	struct conn_entry *prev, *next; /* in the order of arrival */
	int fd;
	/* The peer at accept: checked again before a shutdown(), in case the
	 * fd has been closed and reused after all. */
	struct sockaddr_storage peer;
	socklen_t peer_len;
	/* Since when it waits for request headers, and until when it may
	 * (monotonic ms): set at accept (HEADER_TIMEOUT_MS) and at the end of
	 * each request (the idle timeout: a kept-alive connection), both 0
	 * while a request is served. */
	int64_t waiting_since_ms;
	int64_t header_deadline_ms;
	bool shut; /* shutdown() already */
};

/* Requests waiting for a pool thread, linked through priv->job_next. */
struct job_queue {
	struct efs_http_req *head, *tail;
};

struct efs_http_server {
	struct MHD_Daemon *daemon;
	int listen_fd;
	uint16_t port;
	struct efs_http_server_config cfg;
	atomic_int inflight;
	atomic_int parked; /* requests between efs_http_defer() and efs_http_resume() */
	/* Set when efs_http_server_stop() begins: every reply from then on
	 * closes its connection, so kept-alive clients cannot keep the drain
	 * busy with new requests until the grace runs out. */
	atomic_bool stopping;
	/* efs_http_server_quiesce's: it ran, and the listening socket
	 * libmicrohttpd gave back (closed at the stop). */
	bool quiesced;
	MHD_socket quiesced_fd;
	struct http_metrics metrics;
	/* Open connections (see struct conn_entry) and the reaper that closes
	 * those whose request headers are overdue. */
	pthread_mutex_t conns_lock;
	struct conn_entry *conns_head, *conns_tail;
	unsigned conn_count;
	uint64_t conns_reaped; /* since the last log line */
	struct efs_ticker reaper;
	/* HTTPS: the PEM texts handed to libmicrohttpd (kept for its life). */
	char *tls_cert;
	char *tls_key;
	/* The blocking pool (cfg.blocking_threads): requests whose next step
	 * may wait, queued by the event threads (suspended meanwhile). */
	pthread_mutex_t pool_lock;
	pthread_cond_t pool_cond;   /* the general threads wait here */
	pthread_cond_t urgent_cond; /* the urgent threads wait here */
	/* [0]: the steps of urgent routes, taken first by every thread and
	 * alone by the EFS_HTTP_URGENT_THREADS urgent ones; [1]: the others. */
	struct job_queue jobs[2];
	bool pool_stop;
	/* Set by efs_http_server_stop once its grace is over: no connection
	 * is suspended for a job from then on (offload refuses). */
	bool pool_closing;
	unsigned pool_started;
	pthread_t *pool_threads;
};

/* What a pool thread does for a suspended request (see Threading). */
enum pool_job {
	JOB_NONE = 0,
	JOB_BEGIN,  /* begin(), from the first call */
	JOB_BODY,   /* a piece of the body */
	JOB_HANDLE, /* handle() */
	JOB_FILL,   /* a streaming reply's next read() into its bridge */
	JOB_FREE,   /* the request is complete: free it (no connection) */
};

struct reply_header {
	char *name;
	char *value;
};

/* Everything about a request the route callbacks do not see. */
struct efs_http_req_private {
	struct MHD_Connection *conn;
	const char *version; /* "HTTP/1.1" */
	int64_t start_ns;
	/* The request target as the client sent it (uri_seen()): its length,
	 * and a copy (NULL when it is over MAX_TARGET_BYTES: refused then). */
	size_t target_bytes;
	char *raw_target;
	char *log_target; /* efs_http_set_log_target(): logged instead of the path */
	size_t query_params;
	bool must_close; /* a framing anomaly: reply at once, then close */
	bool abort;      /* a refusal could not be sent (out of memory): close */
	struct MHD_Response *response; /* the reply, once set */
	unsigned status;
	uint64_t bytes_in;
	_Atomic uint64_t bytes_out;
	uint64_t discarded;
	bool queued; /* the reply has been handed to libmicrohttpd */
	bool parked; /* efs_http_defer(): the next final call is the resumed one */
	/* The blocking pool: this request's callbacks run there (offloaded),
	 * its begin() ran there (the next call is the first call again:
	 * first_again), the job queued or running, and the link in the
	 * server's queue. One step at a time: the connection is suspended
	 * while a job holds the request. */
	bool offloaded;
	bool first_again;
	bool begin_due; /* begin() runs first in the next job */
	enum pool_job job;
	struct efs_http_req *job_next;
	/* The body not yet handed to the route: copied here until the next
	 * job (the buffer grows to the largest piece, at most libmicrohttpd's
	 * read buffer; the body's last piece waits for JOB_HANDLE), its
	 * bytes counted in body_seen, and job_close when the pool's
	 * body_piece() said to close. */
	char *piece;
	size_t piece_len, piece_cap;
	uint64_t body_seen;
	bool job_close;
	/* held: set by the event thread when it suspends the request for a
	 * job, cleared by it once it sees job_finished, which the pool sets
	 * under pool_lock together with its resume (see job_running). */
	bool held;
	bool job_finished;
	struct stream_tramp *stream; /* a bridged streaming reply (JOB_FILL) */
	unsigned header_count;
	struct reply_header headers[MAX_REPLY_HEADERS];
};

/* A streaming reply read on the blocking pool: what the last read()
 * there gave, sent from here by the event thread. */
struct stream_bridge {
	size_t cap; /* of data: STREAM_BRIDGE_SIZE, or the body's length if less */
	size_t len, off;
	ssize_t end;  /* 0, or the MHD_CONTENT_READER_END_* that comes next */
	uint64_t pos; /* the offset the next read() starts at */
	char data[];
};

struct stream_tramp {
	efs_http_read_fn read;
	void *ctx;
	void (*free_fn)(void *ctx);
	struct efs_http_req *req;
	struct stream_bridge *bridge; /* NULL: read() runs where libmicrohttpd calls it */
	/* Whoever sets it first calls free_fn: stream_free (libmicrohttpd's
	 * last reference, on whichever thread drops it) or, with a pool,
	 * req_free on the pool, so that a free_fn that waits (a download's
	 * read-ahead) never runs on an event thread. */
	atomic_bool free_claimed;
};

/* ---- route matching ------------------------------------------------- */

/* Returns the end of the segment starting at @s. */
static const char *segment_end(const char *s)
{
	const char *e = strchr(s, '/');
	return e ? e : s + strlen(s);
}

bool efs_http_route_match(const char *pattern, const char *path, struct efs_http_req *req)
{
	unsigned nparams = 0;
	const char *p = pattern, *u = path;

	/* "*" is the catch-all of a server whose handler routes itself. */
	if (strcmp(pattern, "*") == 0) {
		if (req)
			req->param_count = 0;
		return true;
	}
	if (*p != '/' || *u != '/')
		return false;
	while (*p && *u) {
		p++, u++; /* skip '/' */
		const char *pe = segment_end(p), *ue = segment_end(u);
		size_t plen = (size_t)(pe - p), ulen = (size_t)(ue - u);
		if (plen > 2 && p[0] == '{' && p[plen - 1] == '}') {
			if (ulen == 0 || ulen > EFS_HTTP_PARAM_MAX || nparams >= EFS_HTTP_MAX_PARAMS)
				return false;
			if (req) {
				size_t nlen = EFS_MIN(plen - 2, sizeof(req->param_names[0]) - 1);
				memcpy(req->param_names[nparams], p + 1, nlen);
				req->param_names[nparams][nlen] = '\0';
				memcpy(req->params[nparams], u, ulen);
				req->params[nparams][ulen] = '\0';
			}
			nparams++;
		} else if (plen != ulen || memcmp(p, u, plen) != 0) {
			return false;
		}
		p = pe, u = ue;
	}
	if (*p || *u)
		return false;
	if (req)
		req->param_count = nparams;
	return true;
}

/* Finds the route for method+path. When none fits but some route has this
 * path under other methods (405 rather than 404), lists them in @allow
 * ("GET, HEAD, DELETE"), which is "" otherwise. */
static const struct efs_http_route *find_route(const struct efs_http_server *srv,
					       const char *method, const char *path,
					       struct efs_http_req *req, char *allow,
					       size_t allow_len)
{
	allow[0] = '\0';
	for (int pass = 0; pass < 2; pass++) {
		/* HEAD falls back to the GET route on the second pass. */
		const char *m = pass == 0 ? method : "GET";
		if (pass == 1 && strcmp(method, "HEAD") != 0)
			break;
		for (size_t i = 0; i < srv->cfg.route_count; i++) {
			const struct efs_http_route *r = &srv->cfg.routes[i];
			if (!efs_http_route_match(r->pattern, path, NULL))
				continue;
			if (strcmp(r->method, m) != 0 && strcmp(r->method, "*") != 0) {
				if (pass == 0 && !strstr(allow, r->method)) {
					size_t used = strlen(allow);
					snprintf(allow + used, allow_len - used, "%s%s%s",
						 used ? ", " : "", r->method,
						 strcmp(r->method, "GET") == 0 ? ", HEAD" : "");
				}
				continue;
			}
			efs_http_route_match(r->pattern, path, req);
			return r;
		}
	}
	return NULL;
}

/* ---- accessors ------------------------------------------------------ */

void *efs_http_ctx(const struct efs_http_req *req)
{
	return req->server->cfg.ctx;
}

const char *efs_http_param(const struct efs_http_req *req, const char *name)
{
	for (unsigned i = 0; i < req->param_count; i++)
		if (strcmp(req->param_names[i], name) == 0)
			return req->params[i];
	return NULL;
}

int efs_http_set_log_target(struct efs_http_req *req, const char *target)
{
	struct efs_http_req_private *priv = req->priv;
	char *copy = strndup(target, EFS_HTTP_LOG_TARGET_MAX);
	if (!copy)
		return -ENOMEM;
	free(priv->log_target);
	priv->log_target = copy;
	return 0;
}

const char *efs_http_raw_target(const struct efs_http_req *req)
{
	return req->priv->raw_target ? req->priv->raw_target : req->path;
}

/* Adapter from libmicrohttpd's header iterator to efs_http_req_header_fn. */
struct header_walk {
	efs_http_req_header_fn fn;
	void *ctx;
	int result;
};

static enum MHD_Result walk_header(void *cls, enum MHD_ValueKind kind, const char *key,
				   size_t key_size, const char *value, size_t value_size)
{
	struct header_walk *w = cls;
	(void)kind, (void)key_size, (void)value_size;
	w->result = w->fn(w->ctx, key, value ? value : "");
	return w->result == 0 ? MHD_YES : MHD_NO;
}

int efs_http_headers(const struct efs_http_req *req, efs_http_req_header_fn fn, void *ctx)
{
	struct header_walk w = {fn, ctx, 0};
	MHD_get_connection_values_n(req->priv->conn, MHD_HEADER_KIND, walk_header, &w);
	return w.result;
}

const char *efs_http_header(const struct efs_http_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->priv->conn, MHD_HEADER_KIND, name);
}

const char *efs_http_query(const struct efs_http_req *req, const char *name)
{
	const char *value = NULL;
	size_t len = 0;
	if (MHD_lookup_connection_value_n(req->priv->conn, MHD_GET_ARGUMENT_KIND, name,
					  strlen(name), &value, &len) != MHD_YES ||
	    !value)
		return NULL;
	/* "%00" decodes to a NUL: such a value would be silently cut short. */
	return strlen(value) == len ? value : EFS_HTTP_INVALID_VALUE;
}

bool efs_http_replied(const struct efs_http_req *req)
{
	return req->priv->response != NULL;
}

int efs_http_add_header(struct efs_http_req *req, const char *name, const char *value)
{
	struct efs_http_req_private *priv = req->priv;
	for (unsigned i = 0; i < priv->header_count; i++) {
		if (strcasecmp(priv->headers[i].name, name) != 0)
			continue;
		char *v = strdup(value);
		if (!v)
			return -ENOMEM;
		free(priv->headers[i].value);
		priv->headers[i].value = v;
		return 0;
	}
	if (priv->header_count >= MAX_REPLY_HEADERS)
		return -E2BIG;
	char *n = strdup(name), *v = strdup(value);
	if (!n || !v) {
		free(n);
		free(v);
		return -ENOMEM;
	}
	priv->headers[priv->header_count].name = n;
	priv->headers[priv->header_count].value = v;
	priv->header_count++;
	return 0;
}

/* ---- replies -------------------------------------------------------- */

/* Attaches @resp (owned from here on) as the request's reply. */
static int set_reply(struct efs_http_req *req, unsigned status, struct MHD_Response *resp)
{
	struct efs_http_req_private *priv = req->priv;
	if (!resp)
		return -ENOMEM;
	if (priv->response) {
		MHD_destroy_response(resp);
		return -EALREADY;
	}
	/* A header the reply itself set (its content type) wins over one
	 * added before: a fallback reply after a failed stream keeps its own. */
	for (unsigned i = 0; i < priv->header_count; i++)
		if (!MHD_get_response_header(resp, priv->headers[i].name))
			MHD_add_response_header(resp, priv->headers[i].name,
						priv->headers[i].value);
	priv->response = resp;
	priv->status = status;
	return 0;
}

/* Queues @resp (which owns @owned, freed here when @resp is NULL) as a
 * reply of @len bytes. */
static int reply_owned(struct efs_http_req *req, unsigned status, const char *content_type,
		       struct MHD_Response *resp, void *owned, size_t len)
{
	if (!resp) {
		free(owned);
		return -ENOMEM;
	}
	if (content_type)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	req->priv->bytes_out = len;
	return set_reply(req, status, resp);
}

static int reply_buffer(struct efs_http_req *req, unsigned status, const char *content_type,
			char *data, size_t len)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
	return reply_owned(req, status, content_type, resp, data, len);
}

int efs_http_reply_json(struct efs_http_req *req, unsigned status, json_t *body)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!text)
		return -ENOMEM;
	return reply_buffer(req, status, "application/json", text, strlen(text));
}

int efs_http_reply_empty(struct efs_http_req *req, unsigned status)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	return set_reply(req, status, resp);
}

int efs_http_reply_bytes(struct efs_http_req *req, unsigned status, const char *content_type,
			 const void *data, size_t len)
{
	char *copy = malloc(len ? len : 1);
	if (!copy)
		return -ENOMEM;
	if (len)
		memcpy(copy, data, len);
	return reply_buffer(req, status, content_type, copy, len);
}

static void free_cls(void *cls)
{
	free(cls);
}

int efs_http_reply_buf(struct efs_http_req *req, unsigned status, const char *content_type,
		       struct efs_buf *buf, size_t offset, size_t len)
{
	if (offset > buf->len || len > buf->len - offset)
		return -EINVAL;
	char *data = efs_buf_detach(buf);
	if (!data)
		return -ENOMEM;
	struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback_cls(
		len, data + offset, free_cls, data);
	return reply_owned(req, status, content_type, resp, data, len);
}

int efs_http_reply_file(struct efs_http_req *req, unsigned status, const char *content_type, int fd,
			uint64_t offset, uint64_t len)
{
	/* libmicrohttpd closes @fd when it destroys the response (also one
	 * never queued), but not when it fails to make one. */
	struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(len, fd, offset);
	if (!resp) {
		close(fd);
		return -ENOMEM;
	}
	if (content_type)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	req->priv->bytes_out = len;
	return set_reply(req, status, resp);
}

bool efs_http_sends_files(const struct efs_http_req *req)
{
	return req->server->tls_cert == NULL;
}

int efs_http_reply_error_extra(struct efs_http_req *req, unsigned status, const char *code,
			       json_t *extra, const char *fmt, ...)
{
	char message[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);

	json_t *err = json_pack("{s:s, s:s}", "code", code, "message", message);
	if (!err) {
		json_decref(extra);
		return -ENOMEM;
	}
	if (extra)
		json_object_update(err, extra);
	json_decref(extra);
	return efs_http_reply_json(req, status, json_pack("{s:o}", "error", err));
}

static bool offload(struct efs_http_req *req, enum pool_job job);
static bool job_running(struct efs_http_req *req);
static void req_free(struct efs_http_req *req);

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream_tramp *t = cls;
	struct stream_bridge *b = t->bridge;
	if (b) {
		if (job_running(t->req))
			return 0; /* still suspended, the pool reading */
		if (b->off == b->len && !b->end) {
			/* Empty: the pool reads the next piece while the
			 * connection is suspended; libmicrohttpd calls again once
			 * it is resumed (0 is allowed with a suspend). */
			b->pos = pos;
			if (!offload(t->req, JOB_FILL))
				return MHD_CONTENT_READER_END_WITH_ERROR; /* stopping */
			return 0;
		}
		if (b->off == b->len)
			return b->end;
		size_t n = EFS_MIN(max, b->len - b->off);
		memcpy(buf, b->data + b->off, n);
		b->off += n;
		t->req->priv->bytes_out += n;
		return (ssize_t)n;
	}
	ssize_t n = t->read(t->ctx, pos, buf, max);
	if (n == 0)
		return MHD_CONTENT_READER_END_OF_STREAM;
	if (n < 0)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	t->req->priv->bytes_out += (uint64_t)n;
	return n;
}

/* JOB_FILL, on a pool thread: the next read() into the bridge. */
static void stream_fill(struct stream_tramp *t)
{
	struct stream_bridge *b = t->bridge;
	ssize_t n = t->read(t->ctx, b->pos, b->data, b->cap);
	b->off = 0;
	b->len = n > 0 ? (size_t)n : 0;
	if (n == 0)
		b->end = MHD_CONTENT_READER_END_OF_STREAM;
	else if (n < 0)
		b->end = MHD_CONTENT_READER_END_WITH_ERROR;
}

static void stream_free(void *cls)
{
	struct stream_tramp *t = cls;
	if (t->free_fn && !atomic_exchange(&t->free_claimed, true))
		t->free_fn(t->ctx);
	free(t->bridge);
	free(t);
}

int efs_http_reply_stream(struct efs_http_req *req, unsigned status, int64_t length,
			  efs_http_read_fn read, void *ctx, void (*free_fn)(void *ctx))
{
	struct stream_tramp *t = calloc(1, sizeof(*t));
	/* With a blocking pool every read() runs there: it may wait. */
	size_t bridge = length >= 0 && length < STREAM_BRIDGE_SIZE ? (size_t)EFS_MAX(length, 1)
								   : STREAM_BRIDGE_SIZE;
	if (t && req->server->cfg.blocking_threads > 0 &&
	    (t->bridge = malloc(sizeof(*t->bridge) + bridge)))
		*t->bridge = (struct stream_bridge){.cap = bridge};
	if (!t || (req->server->cfg.blocking_threads > 0 && !t->bridge)) {
		free(t);
		if (free_fn)
			free_fn(ctx);
		return -ENOMEM;
	}
	t->read = read;
	t->ctx = ctx;
	t->free_fn = free_fn;
	t->req = req;
	uint64_t size = length < 0 ? MHD_SIZE_UNKNOWN : (uint64_t)length;
	/* libmicrohttpd allocates (and zeroes) the block with the response:
	 * no bigger than the body. */
	size_t block = length >= 0 && length < STREAM_BLOCK_SIZE ? (size_t)EFS_MAX(length, 1)
								  : STREAM_BLOCK_SIZE;
	struct MHD_Response *resp =
		MHD_create_response_from_callback(size, block, stream_read, t, stream_free);
	if (!resp) {
		stream_free(t);
		return -ENOMEM;
	}
	int r = set_reply(req, status, resp);
	if (r == 0)
		req->priv->stream = t;
	return r;
}

int efs_http_reply_metrics(struct efs_http_req *req, struct efs_metrics *const *regs,
			   size_t count)
{
	struct efs_buf text;
	int r = 0;
	efs_buf_init(&text, MAX_METRICS_TEXT);
	for (size_t i = 0; r == 0 && i < count; i++)
		r = efs_metrics_render(regs[i], &text);
	if (r == 0)
		r = efs_http_reply_bytes(req, 200, EFS_METRICS_CONTENT_TYPE, text.data ? text.data : "",
					 text.len);
	efs_buf_release(&text);
	return r;
}

int efs_http_body_json(struct efs_http_req *req, json_t **out, char *why)
{
	json_error_t jerr;
	json_t *j = NULL;
	why[0] = '\0';
	/* Refused before jansson sees it: its parser recurses once per level. */
	if (efs_json_check_depth(req->body.data, req->body.len, EFS_JSON_MAX_DEPTH) < 0) {
		snprintf(why, EFS_HTTP_JSON_WHY_MAX, ": nested deeper than %d levels",
			 EFS_JSON_MAX_DEPTH);
		return -EINVAL;
	}
	if (req->body.len > 0)
		j = json_loadb(req->body.data, req->body.len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j || !json_is_object(j)) {
		json_decref(j);
		if (req->body.len)
			snprintf(why, EFS_HTTP_JSON_WHY_MAX, ": %s", jerr.text);
		return -EINVAL;
	}
	*out = j;
	return 0;
}

/* ---- metrics -------------------------------------------------------- */

/* The method as a label: the usual ones, anything else is OTHER (a client
 * must not be able to invent label values). */
static const char *method_label(const char *method)
{
	static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS",
					    "PATCH"};
	for (size_t i = 0; i < EFS_ARRAY_SIZE(known); i++)
		if (strcmp(method, known[i]) == 0)
			return known[i];
	return "OTHER";
}

static int declare_metrics(struct efs_metrics *reg, struct http_metrics *hm)
{
	static const char *const by_route[] = {"route", "method", NULL};
	static const char *const by_status[] = {"route", "method", "status", NULL};
	int r;

	if ((r = efs_metrics_declare(reg, EFS_METRIC_COUNTER, "echofs_http_requests_total",
				     "HTTP requests completed, by route pattern, method and "
				     "status (0: no reply was sent).",
				     by_status, NULL, 0, &hm->requests)) < 0 ||
	    (r = efs_metrics_declare(reg, EFS_METRIC_HISTOGRAM,
				     "echofs_http_request_duration_seconds",
				     "Time from a request's arrival to the last byte of its "
				     "reply, by route pattern and method.",
				     by_route, NULL, 0, &hm->duration)) < 0 ||
	    (r = efs_metrics_declare(reg, EFS_METRIC_COUNTER,
				     "echofs_http_request_body_bytes_total",
				     "Request body bytes received, by route pattern and method.",
				     by_route, NULL, 0, &hm->bytes_in)) < 0 ||
	    (r = efs_metrics_declare(reg, EFS_METRIC_COUNTER,
				     "echofs_http_response_body_bytes_total",
				     "Response body bytes sent, by route pattern and method.",
				     by_route, NULL, 0, &hm->bytes_out)) < 0 ||
	    (r = efs_metrics_declare(reg, EFS_METRIC_COUNTER,
				     "echofs_http_requests_aborted_total",
				     "Requests whose connection closed before the reply was "
				     "complete, by route pattern and method.",
				     by_route, NULL, 0, &hm->aborted)) < 0 ||
	    (r = efs_metrics_declare(reg, EFS_METRIC_GAUGE, "echofs_http_requests_in_flight",
				     "Requests being served now.", NULL, NULL, 0,
				     &hm->in_flight)) < 0 ||
	    (r = efs_metrics_declare(reg, EFS_METRIC_COUNTER,
				     "echofs_http_slow_connections_closed_total",
				     "Connections closed because their request headers did not "
				     "arrive in time (HEADER_TIMEOUT_MS), or because they waited "
				     "longest for them while connections ran short.",
				     NULL, NULL, 0, &hm->slow_closed)) < 0)
		return r;
	return 0;
}

/* Records a finished request. Failures (the series cap) only lose the
 * sample: metrics never fail a request. */
static void record_request(struct efs_http_server *srv, const struct efs_http_req *req,
			   double seconds, bool aborted)
{
	const struct http_metrics *hm = &srv->metrics;
	char status[16];
	if (!hm->requests)
		return;
	snprintf(status, sizeof(status), "%u", req->priv->status);
	const char *route = req->route ? req->route->pattern : "unmatched";
	const char *method = method_label(req->method);
	const char *const with_status[] = {route, method, status};
	const char *const labels[] = {route, method};

	efs_metric_add(hm->requests, with_status, 1);
	efs_metric_observe(hm->duration, labels, seconds);
	efs_metric_add(hm->bytes_in, labels, (double)req->priv->bytes_in);
	efs_metric_add(hm->bytes_out, labels, (double)req->priv->bytes_out);
	if (aborted)
		efs_metric_add(hm->aborted, labels, 1);
	efs_metric_add(hm->in_flight, NULL, -1);
}

/* ---- slow clients: the header deadline ------------------------------ */

/* Shuts down @c's socket: its connection's thread sees the end of the
 * stream and closes it. Under conns_lock, which keeps the fd from being
 * closed meanwhile (see struct conn_entry); the peer is compared all the
 * same, so that a libmicrohttpd closing earlier than it documents could
 * never make us cut another client's connection. */
static void shut_conn(struct efs_http_server *srv, struct conn_entry *c)
{
	struct sockaddr_storage peer;
	socklen_t len = sizeof(peer);
	c->shut = true;
	if (getpeername(c->fd, (struct sockaddr *)&peer, &len) < 0 || len != c->peer_len ||
	    memcmp(&peer, &c->peer, len) != 0)
		return; /* gone already, or not ours any more */
	shutdown(c->fd, SHUT_RDWR);
	srv->conns_reaped++;
	if (srv->metrics.slow_closed)
		efs_metric_add(srv->metrics.slow_closed, NULL, 1);
}

/* Past 7/8 of max_connections open, the connections that have waited
 * longest for their request headers are closed (at each new arrival and
 * at each reaper pass) until 7/8 are open again: slow clients cannot take
 * every slot, and a client that sends its headers at once is never the one
 * waiting longest. A connection younger than EVICT_MIN_WAIT_MS is spared:
 * it may just not have been read yet. Under conns_lock. */
#define EVICT_MIN_WAIT_MS 1000
static void evict_waiting(struct efs_http_server *srv, int64_t now)
{
	unsigned mark = srv->cfg.max_connections - srv->cfg.max_connections / 8;
	int64_t min_wait = EFS_MIN((int64_t)EVICT_MIN_WAIT_MS,
				   (int64_t)srv->cfg.header_timeout_ms / 2);
	unsigned open = 0;
	for (struct conn_entry *c = srv->conns_head; c; c = c->next)
		open += !c->shut;
	while (open > mark) {
		struct conn_entry *longest = NULL;
		for (struct conn_entry *c = srv->conns_head; c; c = c->next)
			if (c->waiting_since_ms && !c->shut && now - c->waiting_since_ms >= min_wait &&
			    (!longest || c->waiting_since_ms < longest->waiting_since_ms))
				longest = c;
		if (!longest)
			break;
		shut_conn(srv, longest);
		open--;
	}
}

/* The socket context of a connection counted in conn_count but not in
 * the list (its entry could not be made). */
static struct conn_entry untracked_conn;

static void conn_started(struct efs_http_server *srv, struct MHD_Connection *conn,
			 void **socket_context)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct conn_entry *c = calloc(1, sizeof(*c));
	if (!c || !info) {
		/* Not tracked: only libmicrohttpd's idle timeout applies. Still
		 * counted, for accept_policy's limit. */
		free(c);
		pthread_mutex_lock(&srv->conns_lock);
		srv->conn_count++;
		pthread_mutex_unlock(&srv->conns_lock);
		*socket_context = &untracked_conn;
		return;
	}
	c->fd = info->connect_fd;
	c->peer_len = sizeof(c->peer);
	if (getpeername(c->fd, (struct sockaddr *)&c->peer, &c->peer_len) < 0)
		c->peer_len = 0; /* never matches: never shut down */
	c->waiting_since_ms = efs_mono_ms();
	c->header_deadline_ms = c->waiting_since_ms + (int64_t)srv->cfg.header_timeout_ms;
	pthread_mutex_lock(&srv->conns_lock);
	c->prev = srv->conns_tail;
	if (srv->conns_tail)
		srv->conns_tail->next = c;
	else
		srv->conns_head = c;
	srv->conns_tail = c;
	srv->conn_count++;
	if (srv->conn_count > srv->cfg.max_connections - srv->cfg.max_connections / 8)
		evict_waiting(srv, efs_mono_ms());
	pthread_mutex_unlock(&srv->conns_lock);
	*socket_context = c;
}

static void conn_closed(struct efs_http_server *srv, void **socket_context)
{
	struct conn_entry *c = *socket_context;
	if (!c)
		return;
	pthread_mutex_lock(&srv->conns_lock);
	if (c == &untracked_conn) {
		srv->conn_count--;
		pthread_mutex_unlock(&srv->conns_lock);
		*socket_context = NULL;
		return;
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns_head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		srv->conns_tail = c->prev;
	srv->conn_count--;
	pthread_mutex_unlock(&srv->conns_lock);
	free(c);
	*socket_context = NULL;
}

/* With event threads, libmicrohttpd shares its connection limit out
 * between them, and a thread at its share stops accepting: with its
 * share taken, connections waited in the listen backlog (a client saw no
 * answer at all) while other threads had room. So each thread's share is
 * the whole max_connections, and the limit is kept here, over all of
 * them: past it a new connection is closed at once, as libmicrohttpd does
 * with a thread per connection. Two threads accepting at the same moment
 * may both pass: at most event_threads - 1 over, for as long as those
 * connections last. Nothing evens the connections out between the
 * threads any more: whichever thread's epoll wakes first accepts, so one
 * may hold more than its share (libmicrohttpd's own balance, with its
 * per-thread limits, was what left connections in the backlog). */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
	struct efs_http_server *srv = cls;
	(void)addr, (void)addrlen;
	pthread_mutex_lock(&srv->conns_lock);
	bool room = srv->conn_count < srv->cfg.max_connections;
	pthread_mutex_unlock(&srv->conns_lock);
	return room ? MHD_YES : MHD_NO;
}

static void notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			      enum MHD_ConnectionNotificationCode code)
{
	struct efs_http_server *srv = cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED)
		conn_started(srv, conn, socket_context);
	else if (code == MHD_CONNECTION_NOTIFY_CLOSED)
		conn_closed(srv, socket_context);
}

/* Starts @conn's wait for request headers, for @timeout_ms, or ends it
 * (@timeout_ms 0: a request is being served). */
static void set_header_deadline(struct efs_http_server *srv, struct MHD_Connection *conn,
				int64_t timeout_ms)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct conn_entry *c = info ? info->socket_context : NULL;
	if (!c || c == &untracked_conn)
		return;
	int64_t now = timeout_ms ? efs_mono_ms() : 0;
	pthread_mutex_lock(&srv->conns_lock);
	c->waiting_since_ms = now;
	c->header_deadline_ms = timeout_ms ? now + timeout_ms : 0;
	pthread_mutex_unlock(&srv->conns_lock);
}

/* Closes the connections whose request headers are overdue, whatever
 * trickle of bytes they send (libmicrohttpd's idle timeout restarts with
 * each byte). */
static void reaper_main(struct efs_ticker *t, void *ctx)
{
	struct efs_http_server *srv = ctx;
	int64_t interval = EFS_MIN((int64_t)REAP_INTERVAL_MS,
				   EFS_MAX((int64_t)srv->cfg.header_timeout_ms / 4, 10));
	uint64_t reaped = 0;
	int64_t logged_ms = 0;
	while (!efs_ticker_wait(t, interval)) {
		int64_t now = efs_mono_ms();
		pthread_mutex_lock(&srv->conns_lock);
		for (struct conn_entry *c = srv->conns_head; c; c = c->next)
			if (c->header_deadline_ms && !c->shut && now >= c->header_deadline_ms)
				shut_conn(srv, c);
		evict_waiting(srv, now);
		reaped += srv->conns_reaped;
		srv->conns_reaped = 0;
		pthread_mutex_unlock(&srv->conns_lock);
		/* One line at most every REAP_LOG_INTERVAL_MS, however busy. */
		if (reaped && now - logged_ms >= REAP_LOG_INTERVAL_MS) {
			logged_ms = now;
			efs_info("closed %llu connections that did not complete their request "
				 "headers in time (HEADER_TIMEOUT_MS %u ms on a new connection), "
				 "or waited longest for them while connections ran short",
				 (unsigned long long)reaped, srv->cfg.header_timeout_ms);
			reaped = 0;
		}
	}
}

/* ---- the libmicrohttpd callbacks ------------------------------------ */

static enum MHD_Result queue_reply(struct efs_http_req *req)
{
	struct efs_http_req_private *priv = req->priv;
	if (priv->queued)
		return MHD_YES;
	priv->queued = true;
	if (atomic_load(&req->server->stopping) &&
	    !MHD_get_response_header(priv->response, MHD_HTTP_HEADER_CONNECTION))
		MHD_add_response_header(priv->response, MHD_HTTP_HEADER_CONNECTION, "close");
	enum MHD_Result ret = MHD_queue_response(priv->conn, priv->status, priv->response);
	if (ret != MHD_YES)
		efs_warn("could not queue the %u reply to %s %s", priv->status, req->method,
			 req->path);
	return ret;
}

/* Runs a route callback and turns an unanswered failure into a 500. */
static void run_callback(struct efs_http_req *req, efs_http_fn fn)
{
	int r = fn(req);
	if (r < 0 && !efs_http_replied(req))
		efs_http_reply_errno(req, EFS_HTTP_OP_REQUEST, r, NULL);
}

/* What check_head() learns from the header fields. */
struct head_scan {
	size_t count;
	size_t bytes;
	unsigned content_lengths;
	unsigned transfer_encodings;
	unsigned chunked;	  /* "chunked" codings seen */
	bool chunked_last;	  /* the last coding seen was "chunked" */
	bool other_coding;	  /* a coding other than "chunked" */
	const char *bad_name;	  /* a field name that is not a token */
	const char *folded;	  /* a field continued on the next line */
	const char *bad_value;	  /* a value holding a NUL (0.9.75 cuts it there) */
};

/* RFC 9110 5.1: a field name is a token. */
static bool is_token(const char *s, size_t len)
{
	static const char extra[] = "!#$%&'*+-.^_`|~";
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!(c >= '0' && c <= '9') && !(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') &&
		    (c == '\0' || !strchr(extra, c)))
			return false;
	}
	return true;
}

/* Reads the codings of one Transfer-Encoding field value (a list). */
static void scan_codings(struct head_scan *scan, const char *value, size_t len)
{
	const char *p = value, *end = value + len;
	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *e = comma ? comma : end;
		const char *b = p;
		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		const char *t = e;
		while (t > b && (t[-1] == ' ' || t[-1] == '\t'))
			t--;
		if (t > b) { /* empty list elements are allowed */
			bool chunked = (size_t)(t - b) == 7 && strncasecmp(b, "chunked", 7) == 0;
			scan->chunked += chunked;
			scan->other_coding |= !chunked;
			scan->chunked_last = chunked;
		}
		p = comma ? comma + 1 : end;
	}
}

#if MHD_VERSION <= 0x00097500
/* libmicrohttpd up to 0.9.75 glues an obs-fold continuation line (one
 * starting with a space or a tab) to the field's *name*, not its value:
 * "X-A: a\r\n b" arrives as "X-Ab: a", and "Content-: 0\r\n Length" as
 * "Content-Length: 0", which is not what a proxy would have read. It does
 * so in a copy of the name made elsewhere in the connection's pool; every
 * other field is parsed in place in the read buffer, its value right
 * after its name, the NUL that replaced the colon and optional
 * whitespace. A name not so placed was folded. (RFC 9112 5.2: reject
 * obs-fold, or replace it with a space; we reject.) Later versions parse
 * headers differently: there the check is off and theirs applies. */
static bool was_folded(const char *key, size_t key_size, const char *value)
{
	uintptr_t k = (uintptr_t)key, v = (uintptr_t)value;
	if (!value)
		return false;
	if (v < k + key_size + 1 || v - (k + key_size + 1) > MAX_HEADER_BYTES)
		return true;
	for (const char *p = key + key_size + 1; p < value; p++)
		if (*p != ' ' && *p != '\t')
			return true;
	return false;
}
#else
static bool was_folded(const char *key, size_t key_size, const char *value)
{
	return false;
}
#endif

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
				   size_t key_size, const char *value, size_t value_size)
{
	struct head_scan *scan = cls;
	(void)kind;
	scan->count++;
	scan->bytes += key_size + value_size;
	if (!scan->bad_name && !is_token(key, key_size))
		scan->bad_name = key;
	if (!scan->folded && was_folded(key, key_size, value))
		scan->folded = key;
	if (!scan->bad_value && value && memchr(value, '\0', value_size))
		scan->bad_value = key;
	if (key_size == 14 && strncasecmp(key, "Content-Length", 14) == 0)
		scan->content_lengths++;
	if (key_size == 17 && strncasecmp(key, "Transfer-Encoding", 17) == 0) {
		scan->transfer_encodings++;
		scan_codings(scan, value ? value : "", value ? value_size : 0);
	}
	return MHD_YES;
}

/* Refuses a request whose framing could be read two ways (RFC 9112 6.1,
 * 6.3) or whose head is over our limits, before any other work. A framing
 * anomaly is answered at once and closes the connection (must_close), so
 * that nothing after the head - a body, or a request smuggled in it - is
 * ever read as a request. Replies and returns true when it refused. */
static bool check_head(struct efs_http_req *req)
{
	struct efs_http_req_private *priv = req->priv;
	struct head_scan scan = {0};
	MHD_get_connection_values_n(priv->conn, MHD_HEADER_KIND, scan_header, &scan);

	enum efs_http_err err = EFS_HTTP_E_COUNT;
	const char *why = NULL;
	if (scan.bad_name) {
		err = EFS_HTTP_E_MALFORMED_HEADER;
		why = "a header field name is not a token (no spaces, no separators, "
		      "no space before the colon)";
	} else if (scan.folded) {
		err = EFS_HTTP_E_MALFORMED_HEADER;
		why = "a header field continues on the next line (obs-fold)";
	} else if (scan.bad_value) {
		err = EFS_HTTP_E_MALFORMED_HEADER;
		why = "a header field value holds a NUL byte";
	} else if (scan.transfer_encodings && priv->version &&
		   strcmp(priv->version, MHD_HTTP_VERSION_1_0) == 0) {
		err = EFS_HTTP_E_INVALID_FRAMING;
		why = "Transfer-Encoding in an HTTP/1.0 request";
	} else if (scan.transfer_encodings && scan.content_lengths) {
		err = EFS_HTTP_E_INVALID_FRAMING;
		why = "both Transfer-Encoding and Content-Length";
	} else if (scan.content_lengths > 1) {
		err = EFS_HTTP_E_INVALID_FRAMING;
		why = "more than one Content-Length";
	} else if (scan.transfer_encodings && (!scan.chunked_last || scan.chunked != 1)) {
		err = EFS_HTTP_E_INVALID_FRAMING;
		why = "Transfer-Encoding does not end with chunked, once";
	} else if (scan.other_coding) {
		err = EFS_HTTP_E_UNSUPPORTED_TRANSFER_CODING;
		why = "the only transfer coding accepted is chunked";
	}
	if (err != EFS_HTTP_E_COUNT) {
		priv->must_close = true;
		efs_http_add_header(req, MHD_HTTP_HEADER_CONNECTION, "close");
		efs_http_reply_err(req, err, "%s", why);
		return true;
	}

	if (priv->target_bytes > MAX_TARGET_BYTES)
		efs_http_reply_err(req, EFS_HTTP_E_URI_TOO_LONG,
				   "the request target is %zu bytes; the limit is %d",
				   priv->target_bytes, MAX_TARGET_BYTES);
	else if (scan.count > MAX_HEADER_COUNT)
		efs_http_reply_err(req, EFS_HTTP_E_HEADERS_TOO_LARGE,
				   "%zu header fields; the limit is %d", scan.count,
				   MAX_HEADER_COUNT);
	else if (scan.bytes > MAX_HEADER_BYTES)
		efs_http_reply_err(req, EFS_HTTP_E_HEADERS_TOO_LARGE,
				   "header fields of %zu bytes; the limit is %d", scan.bytes,
				   MAX_HEADER_BYTES);
	else if (priv->query_params > MAX_QUERY_PARAMS)
		efs_http_reply_err(req, EFS_HTTP_E_TOO_MANY_PARAMETERS,
				   "%zu query parameters; the limit is %d", priv->query_params,
				   MAX_QUERY_PARAMS);
	return efs_http_replied(req);
}

static int64_t parse_content_length(struct MHD_Connection *conn)
{
	const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_LENGTH);
	uint64_t v;
	if (!cl || efs_parse_u64(cl, false, &v) < 0 || v > INT64_MAX)
		return -1;
	return (int64_t)v;
}

/* True when the client is sending a body it did not ask permission for. */
static bool body_expected(struct MHD_Connection *conn, const struct efs_http_req *req)
{
	const char *expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Expect");
	const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding");
	if (expect && strcasecmp(expect, "100-continue") == 0)
		return false;
	return req->content_length > 0 || (te && strcasestr(te, "chunked"));
}

/* First call for a request: route, authenticate, begin(). */
static void first_call(struct efs_http_server *srv, struct efs_http_req *req)
{
	char allow[128];
	struct efs_http_req_private *priv = req->priv;

	req->content_length = parse_content_length(priv->conn);
	if (check_head(req))
		return;
	const struct efs_http_route *route =
		find_route(srv, req->method, req->path, req, allow, sizeof(allow));
	if (!route) {
		if (allow[0]) {
			efs_http_add_header(req, "Allow", allow);
			efs_http_reply_err(req, EFS_HTTP_E_METHOD_NOT_ALLOWED,
					   "%s is not allowed on %s (allowed: %s)", req->method,
					   req->path, allow);
		}
		else
			efs_http_reply_err(req, EFS_HTTP_E_NOT_FOUND, "no such endpoint: %s",
					   req->path);
		return;
	}
	req->route = route;
	size_t max_body = route->max_body ? route->max_body : srv->cfg.max_body;
	efs_buf_init(&req->body, max_body);

	if (route->auth != EFS_AUTH_NONE && srv->cfg.auth) {
		int r = srv->cfg.auth(req, route->auth, srv->cfg.auth_ctx);
		if (r < 0 && !efs_http_replied(req))
			efs_http_reply_errno(req, EFS_HTTP_OP_REQUEST, r, NULL);
		if (r < 0 && !efs_http_replied(req))
			priv->abort = true; /* never run a handler unauthenticated */
		if (r < 0 || efs_http_replied(req))
			return;
	}
	if (!route->body && req->content_length > (int64_t)max_body) {
		efs_http_reply_err(req, EFS_HTTP_E_BODY_TOO_LARGE,
				   "request body of %lld bytes exceeds the limit of %zu bytes",
				   (long long)req->content_length, max_body);
		return;
	}
	/* With a blocking pool begin() runs there. When the client waits for
	 * 100 Continue (or sends no body), or the route buffers its body, it
	 * runs now: libmicrohttpd makes the first call again once it is
	 * resumed, before it asks for the body, so a refusal still comes
	 * first. Otherwise a streamed body is on its way anyway, and begin()
	 * runs with the first job that follows. */
	priv->offloaded = srv->cfg.blocking_threads > 0 && !route->nonblocking;
	if (route->begin && priv->offloaded && (!route->body || !body_expected(priv->conn, req))) {
		priv->first_again = true;
		if (!offload(req, JOB_BEGIN)) {
			priv->first_again = false;
			priv->abort = true; /* stopping: close */
		}
	} else if (route->begin && priv->offloaded) {
		priv->begin_due = true;
	} else if (route->begin) {
		run_callback(req, route->begin);
	}
}

/* A piece of the body. Returns false when the connection must close. */
static bool body_piece(struct efs_http_req *req, const char *data, size_t len)
{
	struct efs_http_req_private *priv = req->priv;
	priv->bytes_in += len;
	if (efs_http_replied(req)) {
		priv->discarded += len;
		return priv->discarded <= MAX_DISCARD_BYTES;
	}
	if (req->route->body) {
		int r = req->route->body(req, data, len);
		if (r < 0 && !efs_http_replied(req))
			efs_http_reply_errno(req, EFS_HTTP_OP_REQUEST, r, NULL);
		return true;
	}
	if (efs_buf_append(&req->body, data, len) < 0)
		efs_http_reply_err(req, EFS_HTTP_E_BODY_TOO_LARGE,
				   "request body exceeds the limit of %zu bytes", req->body.cap);
	return true;
}

/* ---- the blocking pool ----------------------------------------------- */

/* The server whose pool the calling thread belongs to (NULL: none). */
static _Thread_local const struct efs_http_server *pool_member;

/* Appends @req to the pool's queue; under pool_lock. */
static void enqueue(struct efs_http_server *srv, struct efs_http_req *req)
{
	bool urgent = req->route && req->route->urgent && req->priv->job != JOB_FREE;
	struct job_queue *q = &srv->jobs[urgent ? 0 : 1];
	req->priv->job_next = NULL;
	if (q->tail)
		q->tail->priv->job_next = req;
	else
		q->head = req;
	q->tail = req;
	pthread_cond_signal(&srv->pool_cond);
	if (urgent)
		pthread_cond_signal(&srv->urgent_cond);
}

/* The next job a thread takes (@urgent_only: an urgent thread), or NULL;
 * under pool_lock. */
static struct efs_http_req *dequeue(struct efs_http_server *srv, bool urgent_only)
{
	for (int i = 0; i < (urgent_only ? 1 : 2); i++) {
		struct efs_http_req *req = srv->jobs[i].head;
		if (!req)
			continue;
		srv->jobs[i].head = req->priv->job_next;
		if (!srv->jobs[i].head)
			srv->jobs[i].tail = NULL;
		return req;
	}
	return NULL;
}

/* Suspends @req's connection and queues @job for a pool thread: from now
 * until run_job() resumes it, @req belongs to that thread. Called by the
 * event thread serving @req, from libmicrohttpd's callbacks only. False,
 * with nothing suspended, once the server's stop has passed its grace
 * (pool_closing): libmicrohttpd must not be stopped with a connection
 * suspended, so the caller ends the request (closes the connection). The
 * suspend happens under pool_lock, as run_job's resume does. */
static bool offload(struct efs_http_req *req, enum pool_job job)
{
	struct efs_http_server *srv = req->server;
	struct efs_http_req_private *priv = req->priv;
	pthread_mutex_lock(&srv->pool_lock);
	if (srv->pool_closing) {
		pthread_mutex_unlock(&srv->pool_lock);
		return false;
	}
	priv->job = job;
	priv->held = true;
	priv->job_finished = false;
	atomic_fetch_add(&srv->parked, 1);
	MHD_suspend_connection(priv->conn);
	enqueue(srv, req);
	pthread_mutex_unlock(&srv->pool_lock);
	return true;
}

/* request_completed(), with a blocking pool: frees @req there, since its
 * state_free and its reply's free_fn may wait (an upload's pipeline, a
 * download's read-ahead). The connection is done with it. */
static void free_on_pool(struct efs_http_req *req)
{
	struct efs_http_server *srv = req->server;
	req->priv->job = JOB_FREE;
	pthread_mutex_lock(&srv->pool_lock);
	enqueue(srv, req);
	pthread_mutex_unlock(&srv->pool_lock);
}

/* Runs @req's job on a pool thread, then hands the request back to its
 * event thread (which may free it at once). */
static void run_job(struct efs_http_req *req)
{
	struct efs_http_req_private *priv = req->priv;
	enum pool_job job = priv->job;
	priv->job = JOB_NONE;
	if (job == JOB_FREE) {
		req_free(req);
		return;
	}
	if (priv->begin_due && job != JOB_FILL) {
		priv->begin_due = false;
		if (!efs_http_replied(req))
			run_callback(req, req->route->begin);
	}
	if (priv->piece_len > 0 && (job == JOB_BODY || job == JOB_HANDLE)) {
		priv->job_close = !body_piece(req, priv->piece, priv->piece_len);
		priv->piece_len = 0;
	}
	if (job == JOB_BEGIN) {
		run_callback(req, req->route->begin);
	} else if (job == JOB_HANDLE) {
		/* parked is set: the resumed final call queues the reply */
		if (!efs_http_replied(req))
			run_callback(req, req->route->handle);
	} else if (job == JOB_FILL) {
		stream_fill(priv->stream);
	}
	/* Finished and resumed at once, as job_running() expects; req may be
	 * freed once resumed (efs_http_resume reads nothing of it after). */
	struct efs_http_server *srv = req->server;
	pthread_mutex_lock(&srv->pool_lock);
	priv->job_finished = true;
	efs_http_resume(req);
	pthread_mutex_unlock(&srv->pool_lock);
}

/* Called by the event thread whenever libmicrohttpd calls about @req: true
 * while a job it queued is still running. libmicrohttpd may call again
 * before it has noticed its own suspend (a chunked body's next piece in
 * the same pass), and must then be told to wait. Once the pool has
 * finished, the hold ends here; a suspend from now on is safe even if
 * libmicrohttpd has not yet applied the pool's resume (it cancels it). */
static bool job_running(struct efs_http_req *req)
{
	struct efs_http_req_private *priv = req->priv;
	if (!priv->held)
		return false;
	pthread_mutex_lock(&req->server->pool_lock);
	bool finished = priv->job_finished;
	pthread_mutex_unlock(&req->server->pool_lock);
	if (!finished)
		return true;
	priv->held = false;
	priv->job_finished = false;
	return false;
}

static void pool_run(struct efs_http_server *srv, bool urgent_only)
{
	pool_member = srv;
	pthread_cond_t *cond = urgent_only ? &srv->urgent_cond : &srv->pool_cond;
	pthread_mutex_lock(&srv->pool_lock);
	for (;;) {
		struct efs_http_req *req;
		while (!(req = dequeue(srv, urgent_only)) && !srv->pool_stop)
			pthread_cond_wait(cond, &srv->pool_lock);
		if (!req)
			break; /* stopping, and nothing is left */
		/* A wake may have been meant for a job of the other queue than
		 * the one taken: pass it on while work is left. */
		if (srv->jobs[0].head || srv->jobs[1].head)
			pthread_cond_signal(&srv->pool_cond);
		if (srv->jobs[0].head)
			pthread_cond_signal(&srv->urgent_cond);
		pthread_mutex_unlock(&srv->pool_lock);
		run_job(req);
		pthread_mutex_lock(&srv->pool_lock);
	}
	pthread_mutex_unlock(&srv->pool_lock);
}

static void *pool_main(void *arg)
{
	pthread_setname_np(pthread_self(), "http-blocking"); /* for top and perf */
	pool_run(arg, false);
	return NULL;
}

static void *pool_urgent_main(void *arg)
{
	pthread_setname_np(pthread_self(), "http-urgent");
	pool_run(arg, true);
	return NULL;
}

static int pool_start(struct efs_http_server *srv)
{
	unsigned n = srv->cfg.blocking_threads + EFS_HTTP_URGENT_THREADS;
	if (!(srv->pool_threads = calloc(n, sizeof(*srv->pool_threads))))
		return -ENOMEM;
	for (; srv->pool_started < n; srv->pool_started++) {
		bool urgent = srv->pool_started < EFS_HTTP_URGENT_THREADS;
		int r = pthread_create(&srv->pool_threads[srv->pool_started], NULL,
				       urgent ? pool_urgent_main : pool_main, srv);
		if (r != 0)
			return -r;
	}
	return 0;
}

/* Once libmicrohttpd has stopped: no job can be queued any more. */
static void pool_stop(struct efs_http_server *srv)
{
	pthread_mutex_lock(&srv->pool_lock);
	srv->pool_stop = true;
	pthread_cond_broadcast(&srv->pool_cond);
	pthread_cond_broadcast(&srv->urgent_cond);
	pthread_mutex_unlock(&srv->pool_lock);
	for (unsigned i = 0; i < srv->pool_started; i++)
		pthread_join(srv->pool_threads[i], NULL);
	srv->pool_started = 0;
	free(srv->pool_threads);
	srv->pool_threads = NULL;
}

int efs_http_offload(struct efs_http_req *req)
{
	struct efs_http_req_private *priv = req->priv;
	if (req->server->cfg.blocking_threads == 0 || pool_member == req->server)
		return -ENOTSUP;
	if (efs_http_replied(req))
		return -EALREADY;
	priv->parked = true;
	if (!offload(req, JOB_HANDLE)) {
		priv->parked = false;
		return -ESHUTDOWN;
	}
	return 0;
}

bool efs_http_may_block(const struct efs_http_req *req)
{
	return req->server->cfg.event_threads == 0 || pool_member == req->server;
}

static struct efs_http_req *req_new(struct efs_http_server *srv, struct MHD_Connection *conn)
{
	struct efs_http_req *req = calloc(1, sizeof(*req));
	struct efs_http_req_private *priv = calloc(1, sizeof(*priv));
	if (!req || !priv) {
		free(req);
		free(priv);
		return NULL;
	}
	req->priv = priv;
	req->server = srv;
	req->content_length = -1;
	efs_buf_init(&req->body, 0);
	priv->conn = conn;
	return req;
}

/* Called by libmicrohttpd with the request target as the client sent it,
 * before it splits off and decodes the query string: the one place its
 * length and parameter count are seen undecoded. The request's state is
 * born here; libmicrohttpd hands it to access_handler() as *con_cls. */
static void *uri_seen(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct efs_http_req *req = req_new(cls, conn);
	if (!req)
		return NULL; /* access_handler() tries again, without the counts */
	req->priv->target_bytes = strlen(uri);
	if (req->priv->target_bytes <= MAX_TARGET_BYTES)
		req->priv->raw_target = strdup(uri); /* NULL: efs_http_raw_target falls back */
	const char *query = strchr(uri, '?');
	if (query && query[1]) {
		req->priv->query_params = 1;
		for (const char *p = query + 1; *p; p++)
			req->priv->query_params += *p == '&';
	}
	return req;
}

/* The end of the first call, once begin() has run. */
static enum MHD_Result first_call_done(struct MHD_Connection *conn, struct efs_http_req *req)
{
	struct efs_http_req_private *priv = req->priv;
	/* Refused, but the reply could not be made (out of memory): no
	 * route or no authentication to go on with, so close. */
	if (!efs_http_replied(req) && (!req->route || priv->abort))
		return MHD_NO;
	/* A reply decided before the body is read goes out now when the
	 * client waits for "100 Continue" (it then sends no body) or
	 * sends none, or when the body's framing is in doubt (the
	 * connection then closes); otherwise the body is read and
	 * dropped first, so a client still sending sees the reply, not
	 * a reset. */
	if (efs_http_replied(req) && (priv->must_close || !body_expected(conn, req)))
		return queue_reply(req);
	return MHD_YES;
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url,
				      const char *method, const char *version,
				      const char *upload_data, size_t *upload_data_size,
				      void **con_cls)
{
	struct efs_http_server *srv = cls;
	struct efs_http_req *req = *con_cls;

	if (!req || !req->method) {
		if (!req && !(req = req_new(srv, conn)))
			return MHD_NO;
		struct efs_http_req_private *priv = req->priv;
		req->method = method;
		req->path = url;
		priv->version = version;
		priv->start_ns = efs_mono_ns();
		set_header_deadline(srv, conn, 0);
		atomic_fetch_add(&srv->inflight, 1);
		if (srv->metrics.in_flight)
			efs_metric_add(srv->metrics.in_flight, NULL, 1);
		*con_cls = req;
		first_call(srv, req);
		if (priv->first_again)
			return MHD_YES; /* begin() is on the pool */
		return first_call_done(conn, req);
	}

	struct efs_http_req_private *priv = req->priv;
	/* A piece left unread is handed over again once resumed. */
	if (job_running(req))
		return MHD_YES;
	if (priv->job_close)
		return MHD_NO; /* the pool's last piece said so (body_piece) */
	if (priv->first_again) {
		/* begin() has run on the pool: the first call's end */
		priv->first_again = false;
		return first_call_done(conn, req);
	}
	if (*upload_data_size > 0 && priv->offloaded && !efs_http_replied(req) &&
	    req->route->body) {
		/* Copied: libmicrohttpd moves what is left in its buffer once
		 * this returns, while the pool may still be reading. */
		size_t len = *upload_data_size;
		if (len > priv->piece_cap - priv->piece_len) {
			char *p = realloc(priv->piece, priv->piece_len + len);
			if (!p)
				return MHD_NO;
			priv->piece = p;
			priv->piece_cap = priv->piece_len + len;
		}
		memcpy(priv->piece + priv->piece_len, upload_data, len);
		priv->piece_len += len;
		priv->body_seen += len;
		*upload_data_size = 0;
		/* The body's last piece goes with handle(): one job, not two. */
		if ((req->content_length < 0 || priv->body_seen < (uint64_t)req->content_length) &&
		    !offload(req, JOB_BODY))
			return MHD_NO; /* stopping */
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		bool keep = body_piece(req, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return keep ? MHD_YES : MHD_NO;
	}

	/* The whole body is in. A parked request comes back here when
	 * resumed, its reply set by the thread that resumed it. */
	if (priv->parked) {
		priv->parked = false;
	} else if (priv->offloaded && !efs_http_replied(req)) {
		priv->parked = true;
		if (!offload(req, JOB_HANDLE))
			return MHD_NO; /* stopping */
		return MHD_YES;
	} else {
		if (!efs_http_replied(req))
			run_callback(req, req->route->handle);
		/* Parked: req may be another thread's by now, resumed or not;
		 * libmicrohttpd calls again once it is resumed. */
		if (req->priv->parked)
			return MHD_YES;
	}
	if (!efs_http_replied(req)) {
		efs_error("%s %s: handler returned without a reply", req->method, req->path);
		efs_http_reply_err(req, EFS_HTTP_E_INTERNAL_ERROR, "no reply");
	}
	return queue_reply(req);
}

int efs_http_defer(struct efs_http_req *req)
{
	struct efs_http_req_private *priv = req->priv;
	if (req->server->cfg.event_threads == 0 || pool_member == req->server)
		return -ENOTSUP;
	if (efs_http_replied(req))
		return -EALREADY;
	priv->parked = true;
	atomic_fetch_add(&req->server->parked, 1);
	MHD_suspend_connection(priv->conn);
	return 0;
}

void efs_http_resume(struct efs_http_req *req)
{
	/* Once resumed, the event thread may finish and free req at once. */
	struct efs_http_server *srv = req->server;
	MHD_resume_connection(req->priv->conn);
	atomic_fetch_sub(&srv->parked, 1);
}

static void req_free(struct efs_http_req *req)
{
	struct efs_http_req_private *priv = req->priv;
	if (req->state_free)
		req->state_free(req->state);
	efs_buf_release(&req->body);
	/* The stream's free_fn here, while this reference keeps it alive:
	 * libmicrohttpd may drop its own last, on the event thread. */
	struct stream_tramp *t = priv->stream;
	if (t && t->free_fn && !atomic_exchange(&t->free_claimed, true))
		t->free_fn(t->ctx);
	if (priv->response)
		MHD_destroy_response(priv->response);
	for (unsigned i = 0; i < priv->header_count; i++) {
		free(priv->headers[i].name);
		free(priv->headers[i].value);
	}
	free(priv->raw_target);
	free(priv->log_target);
	free(priv->piece);
	free(priv);
	free(req);
}

static void request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			      enum MHD_RequestTerminationCode toe)
{
	struct efs_http_server *srv = cls;
	struct efs_http_req *req = *con_cls;
	if (!req)
		return;
	*con_cls = NULL;
	if (!req->method) {
		/* libmicrohttpd refused the head itself (its own page) or the
		 * client left before it: never counted, nothing to log. */
		req_free(req);
		return;
	}
	struct efs_http_req_private *priv = req->priv;
	double ms = (double)(efs_mono_ns() - priv->start_ns) / 1e6;
	record_request(srv, req, ms / 1e3, toe != MHD_REQUEST_TERMINATED_COMPLETED_OK);
	const char *user = req->is_cluster ? "(cluster)" : (req->user[0] ? req->user : "-");
	const char *shown = priv->log_target ? priv->log_target : req->path;
	if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
		efs_info("access %s %s %u in=%llu out=%llu ms=%.2f user=%s", req->method, shown,
			 priv->status, (unsigned long long)priv->bytes_in,
			 (unsigned long long)priv->bytes_out, ms, user);
	else
		efs_info("access %s %s %u in=%llu out=%llu ms=%.2f user=%s aborted=%d", req->method,
			 shown, priv->status, (unsigned long long)priv->bytes_in,
			 (unsigned long long)priv->bytes_out, ms, user, (int)toe);

	/* What may wait (a route's state, a stream's free_fn) is freed on the
	 * pool; the rest at once. */
	if (srv->cfg.blocking_threads > 0 && (req->state_free || priv->stream))
		free_on_pool(req);
	else
		req_free(req);
	/* A kept-alive connection has the idle timeout for its next request's
	 * headers: clients reuse idle connections for a while (http_client.c:
	 * 20 s), and under pressure the waiting ones go first anyway. */
	set_header_deadline(srv, conn, (int64_t)srv->cfg.idle_timeout_s * 1000);
	atomic_fetch_sub(&srv->inflight, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	vsnprintf(line, sizeof(line), fmt, ap);
	size_t n = strlen(line);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	efs_debug("libmicrohttpd: %s", line);
}

/* ---- lifecycle ------------------------------------------------------ */

static int open_listener(const struct efs_http_server_config *cfg, int *out_fd,
			 uint16_t *out_port)
{
	const struct sockaddr *sa = cfg->addr;
	int one = 1;
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, sa, cfg->addrlen) < 0 || listen(fd, 1024) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	struct sockaddr_storage bound;
	socklen_t len = sizeof(bound);
	getsockname(fd, (struct sockaddr *)&bound, &len);
	if (bound.ss_family == AF_INET6)
		*out_port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
	else
		*out_port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
	*out_fd = fd;
	return 0;
}

static void server_free(struct efs_http_server *srv)
{
	if (!srv)
		return;
	if (srv->pool_threads)
		pool_stop(srv);
	pthread_mutex_destroy(&srv->conns_lock);
	pthread_mutex_destroy(&srv->pool_lock);
	pthread_cond_destroy(&srv->pool_cond);
	pthread_cond_destroy(&srv->urgent_cond);
	free(srv->tls_cert);
	free(srv->tls_key);
	free(srv);
}

static int set_error(char *err, size_t errlen, int r, const char *fmt, ...) EFS_PRINTF(4, 5);

/* Writes one line into @err (may be NULL); returns @r. */
static int set_error(char *err, size_t errlen, int r, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return r;
}

/* Reads a PEM file for libmicrohttpd into *out (malloc'd); @marker is
 * the text its PEM block must hold ("CERTIFICATE", "PRIVATE KEY"). */
static int read_pem(const char *what, const char *path, const char *marker, char **out,
		    char *err, size_t errlen)
{
	char *text = malloc(MAX_TLS_FILE);
	if (!text)
		return -ENOMEM;
	long n = efs_read_file(path, text, MAX_TLS_FILE);
	if (n < 0) {
		free(text);
		return set_error(err, errlen, -EINVAL, "%s: cannot read '%.128s': %s", what, path,
				 n == -E2BIG ? "larger than 1 MiB" : strerror((int)-n));
	}
	if (!strstr(text, "-----BEGIN ") || !strstr(text, marker)) {
		free(text);
		return set_error(err, errlen, -EINVAL, "%s: '%.128s' holds no PEM %s", what, path,
				 marker);
	}
	*out = text;
	return 0;
}

/* Reads the certificate and key files; the names in messages are the
 * variables operators set. */
static int load_tls(const char *cert_file, const char *key_file, char **cert, char **key,
		    char *err, size_t errlen)
{
	int r;
	if (!cert_file || !key_file)
		return set_error(err, errlen, -EINVAL,
				 "%s is set but %s is not: HTTPS needs both the certificate and "
				 "its key",
				 cert_file ? "TLS_CERT_FILE" : "TLS_KEY_FILE",
				 cert_file ? "TLS_KEY_FILE" : "TLS_CERT_FILE");
	if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
		return set_error(err, errlen, -ENOTSUP,
				 "TLS_CERT_FILE: this libmicrohttpd was built without TLS");
	if ((r = read_pem("TLS_CERT_FILE", cert_file, "CERTIFICATE", cert, err, errlen)) < 0)
		return r;
	if ((r = read_pem("TLS_KEY_FILE", key_file, "PRIVATE KEY", key, err, errlen)) < 0) {
		free(*cert);
		*cert = NULL;
	}
	return r;
}

static enum MHD_Result refuse_all(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *data,
				  size_t *size, void **con_cls)
{
	return MHD_NO;
}

int efs_http_tls_check(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
	char *cert = NULL, *key = NULL;
	int r = load_tls(cert_file, key_file, &cert, &key, err, errlen);
	if (r < 0)
		return r;
	/* GnuTLS parses both and checks that the key is the certificate's
	 * when libmicrohttpd starts; a daemon without a socket or a thread
	 * does exactly that and nothing else. */
	struct MHD_Daemon *d = MHD_start_daemon(
		MHD_USE_TLS | MHD_USE_NO_LISTEN_SOCKET, 0, NULL, NULL, refuse_all, NULL,
		MHD_OPTION_HTTPS_MEM_CERT, cert, MHD_OPTION_HTTPS_MEM_KEY, key,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
	if (d)
		MHD_stop_daemon(d);
	else
		r = set_error(err, errlen, -EINVAL,
			      "TLS_CERT_FILE and TLS_KEY_FILE: '%.100s' and '%.100s' are not a "
			      "valid certificate and its private key",
			      cert_file, key_file);
	free(cert);
	free(key);
	return r;
}

int efs_http_server_start(const struct efs_http_server_config *cfg,
			  struct efs_http_server **out)
{
	struct efs_http_server *srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->cfg = *cfg;
	if (!srv->cfg.max_body)
		srv->cfg.max_body = DEFAULT_MAX_BODY;
	if (!srv->cfg.conn_memory_limit)
		srv->cfg.conn_memory_limit = DEFAULT_CONN_MEMORY;
	if (!srv->cfg.max_connections)
		srv->cfg.max_connections = DEFAULT_MAX_CONNECTIONS;
	if (!srv->cfg.idle_timeout_s)
		srv->cfg.idle_timeout_s = DEFAULT_IDLE_TIMEOUT_S;
	if (!srv->cfg.header_timeout_ms)
		srv->cfg.header_timeout_ms = EFS_HTTP_DEFAULT_HEADER_TIMEOUT_MS;
	atomic_init(&srv->inflight, 0);
	atomic_init(&srv->stopping, false);
	atomic_init(&srv->parked, 0);
	if (srv->cfg.event_threads > EFS_HTTP_MAX_EVENT_THREADS)
		srv->cfg.event_threads = EFS_HTTP_MAX_EVENT_THREADS;
	if (srv->cfg.blocking_threads > EFS_HTTP_MAX_BLOCKING_THREADS)
		srv->cfg.blocking_threads = EFS_HTTP_MAX_BLOCKING_THREADS;
	if (srv->cfg.event_threads == 0)
		srv->cfg.blocking_threads = 0; /* a thread per connection may block anyway */
	pthread_mutex_init(&srv->conns_lock, NULL);
	pthread_mutex_init(&srv->pool_lock, NULL);
	pthread_cond_init(&srv->pool_cond, NULL);
	pthread_cond_init(&srv->urgent_cond, NULL);

	srv->cfg.error = NULL; /* the caller's buffer serves this call only */
	srv->cfg.error_len = 0;
	int r = 0;
	if (cfg->tls_cert_file || cfg->tls_key_file)
		r = load_tls(cfg->tls_cert_file, cfg->tls_key_file, &srv->tls_cert, &srv->tls_key,
			     cfg->error, cfg->error_len);
	if (r == 0 && cfg->metrics)
		r = declare_metrics(cfg->metrics, &srv->metrics);
	if (r < 0) {
		server_free(srv);
		return r;
	}
	if (srv->cfg.blocking_threads > 0 && (r = pool_start(srv)) < 0) {
		server_free(srv);
		return r;
	}
	r = open_listener(cfg, &srv->listen_fd, &srv->port);
	if (r < 0) {
		server_free(srv);
		return r;
	}
	unsigned flags = MHD_USE_ITC | MHD_USE_ERROR_LOG;
	/* The threading model's and TLS's options, through one MHD_OPTION_ARRAY. */
	struct MHD_OptionItem options[4];
	size_t n_options = 0;
	unsigned mhd_limit = srv->cfg.max_connections;
	if (srv->cfg.event_threads > 0) {
		/* Suspend/resume parks requests (efs_http_defer); ITC wakes a
		 * thread's epoll when one is resumed from another thread. */
		flags |= MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME;
		options[n_options++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE,
							       srv->cfg.event_threads, NULL};
		/* The limit over all threads: accept_policy. */
		mhd_limit = srv->cfg.max_connections * srv->cfg.event_threads;
	} else {
		flags |= MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
			 MHD_USE_POLL;
	}
	if (((const struct sockaddr *)cfg->addr)->sa_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (srv->tls_cert) {
		flags |= MHD_USE_TLS;
		options[n_options++] =
			(struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, srv->tls_cert};
		options[n_options++] =
			(struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, srv->tls_key};
	}
	options[n_options] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
	srv->daemon = MHD_start_daemon(
		flags, 0, srv->cfg.event_threads > 0 ? accept_policy : NULL, srv, access_handler, srv,
		MHD_OPTION_LISTEN_SOCKET, srv->listen_fd,
		MHD_OPTION_CONNECTION_LIMIT, mhd_limit,
		MHD_OPTION_CONNECTION_TIMEOUT, srv->cfg.idle_timeout_s,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, srv->cfg.conn_memory_limit,
		MHD_OPTION_NOTIFY_COMPLETED, request_completed, srv,
		MHD_OPTION_URI_LOG_CALLBACK, uri_seen, srv,
		MHD_OPTION_NOTIFY_CONNECTION, notify_connection, srv,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
		MHD_OPTION_ARRAY, options,
		MHD_OPTION_END);
	if (!srv->daemon) {
		close(srv->listen_fd);
		/* With TLS, what fails here is the certificate or the key. */
		r = srv->tls_cert ? set_error(cfg->error, cfg->error_len, -EINVAL,
					      "TLS_CERT_FILE and TLS_KEY_FILE are not a valid "
					      "certificate and its private key")
				  : -EIO;
		server_free(srv);
		return r;
	}
	if ((r = efs_ticker_start(&srv->reaper, reaper_main, srv)) < 0) {
		MHD_stop_daemon(srv->daemon);
		server_free(srv);
		return r;
	}
	*out = srv;
	return 0;
}

uint16_t efs_http_server_port(const struct efs_http_server *srv)
{
	return srv->port;
}

void efs_http_server_quiesce(struct efs_http_server *srv)
{
	if (!srv || srv->quiesced)
		return;
	atomic_store(&srv->stopping, true);
	srv->quiesced_fd = MHD_quiesce_daemon(srv->daemon);
	srv->quiesced = true;
}

void efs_http_server_stop(struct efs_http_server *srv, int64_t grace_ms)
{
	if (!srv)
		return;
	efs_http_server_quiesce(srv);
	MHD_socket fd = srv->quiesced_fd;
	int64_t deadline = efs_mono_ms() + grace_ms;
	while (atomic_load(&srv->inflight) > 0 && efs_mono_ms() < deadline)
		efs_sleep_ms(10);
	int left = atomic_load(&srv->inflight);
	if (left > 0)
		efs_warn("shutdown: %d requests still in flight after %lld ms, closing them", left,
			 (long long)grace_ms);
	/* From here no connection is suspended for the pool (offload), so the
	 * wait below ends once the jobs running have. */
	pthread_mutex_lock(&srv->pool_lock);
	srv->pool_closing = true;
	pthread_mutex_unlock(&srv->pool_lock);
	/* libmicrohttpd must not be stopped with a connection suspended: a
	 * parked request is resumed by its owner whatever happens (the
	 * worker's committer after its sync round), so wait for it. */
	for (int64_t waited_ms = 0; atomic_load(&srv->parked) > 0; waited_ms += 10) {
		if (waited_ms % 5000 == 0)
			efs_warn("shutdown: waiting for %d parked requests to be resumed",
				 atomic_load(&srv->parked));
		efs_sleep_ms(10);
	}
	efs_ticker_stop(&srv->reaper);
	MHD_stop_daemon(srv->daemon);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	server_free(srv);
}
