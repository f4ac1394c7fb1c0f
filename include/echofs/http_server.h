/* SPDX-License-Identifier: MIT */
/* http_server.h - the one wrapper around libmicrohttpd, used by both daemons.
 *
 * A server owns a route table. Each route names a method, a path pattern
 * whose "{name}" segments capture path parameters
 * ("/api/v1/files/{fileId}/download"), the authentication it needs, and up
 * to three callbacks:
 *
 *   begin(req)   headers are in, the body is not: may reply at once (a 411,
 *                413, 404...), in which case the body is never read.
 *   body(req)    streaming routes only: called with each piece of the body
 *                as it arrives; nothing is buffered by the wrapper.
 *   handle(req)  the whole body has arrived (for buffered routes it is in
 *                req->body, capped at the route's max_body): must reply.
 *
 * Every callback returns 0 or a negative errno. The contract (see
 * http_error.h): a callback that decides the outcome replies once, through
 * http_error.h for an error, and returns 0; a negative return without a
 * reply becomes a 500 internal_error, logged once here. After a reply has
 * been set, the rest of the body is read and dropped (up to a limit, then
 * the connection is closed).
 *
 * Slow clients: a connection must complete its request line and headers
 * within header_timeout_ms of opening (within idle_timeout_s of its
 * previous request's end, when kept alive: our own clients keep idle
 * connections for 20 s), or it is closed, however slowly it keeps sending; a
 * request being served is bound only by idle_timeout_s (no byte in or out
 * for that long). When more than 7/8 of max_connections are open, each new
 * connection closes the one that has waited longest for its headers, so
 * clients trickling half-sent requests cannot take every slot. Past
 * max_connections a new connection is closed at once by libmicrohttpd.
 *
 * TLS: given a certificate and key (tls_cert_file, tls_key_file) the
 * server speaks only HTTPS (libmicrohttpd with GnuTLS); a plain HTTP
 * request on it fails its handshake and the connection is closed.
 *
 * Threading, chosen per server (cfg.event_threads):
 *   0  one thread per connection (MHD_USE_THREAD_PER_CONNECTION): a
 *      handler may block on disk or on another server. The master's
 *      servers run so: their handlers wait for workers.
 *   N  N event threads, each serving many connections through epoll
 *      (libmicrohttpd's internal thread pool): fewer threads and context
 *      switches, but a callback that blocks stalls every connection of
 *      its thread. Callbacks may do short disk I/O; a wait that may be
 *      long (an fdatasync) is parked instead with efs_http_defer().
 *   N event threads and M blocking threads (cfg.blocking_threads): the
 *      event threads do the I/O of every connection, and the callbacks
 *      run on a pool of M threads that may block, one step at a time with
 *      the connection suspended: begin() (at once when the client waits
 *      for 100 Continue, sends no body, or the route buffers its body;
 *      else with the body's first piece), each piece of a streaming body
 *      (copied; the last goes with handle()), handle(), each read() of a
 *      streaming reply (read ahead into a buffer of up to 256 KiB), and
 *      the request's free (state_free, the reply's free_fn) once it is
 *      complete. A route marked nonblocking runs on the event thread
 *      instead, and its handle() may hand itself over to the pool with
 *      efs_http_offload() when it finds it must wait. Past M waiting
 *      steps the others queue; an urgent route's go first, and 4 more
 *      threads take only those. Once a stop's grace is over nothing more
 *      is handed over: such a request's connection is closed. The
 *      master's API runs so with MASTER_HTTP_THREADS.
 * Either way one thread at a time touches a request. Per-request state
 * lives in struct efs_http_req, allocated on the first call and freed,
 * with req->state (via state_free), when the request is complete. One
 * access-log line is written per request at info level.
 *
 * Metrics: given a registry (cfg.metrics), the server records every
 * request in it when the request completes, labelled with the route's
 * pattern (never the raw path: "unmatched" when no route fits), the method
 * (GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, or OTHER) and the status
 * ("0" when no reply was sent):
 *
 *   echofs_http_requests_total{route,method,status}        counter
 *   echofs_http_request_duration_seconds{route,method}     histogram, from
 *                               the first byte in to the last byte out
 *   echofs_http_request_body_bytes_total{route,method}     bytes in
 *   echofs_http_response_body_bytes_total{route,method}    bytes out
 *   echofs_http_requests_aborted_total{route,method}       connection
 *                               closed before the reply was complete
 *   echofs_http_requests_in_flight                         gauge
 *   echofs_http_slow_connections_closed_total              counter: closed
 *                               for want of request headers (see above)
 */
#ifndef ECHOFS_HTTP_SERVER_H
#define ECHOFS_HTTP_SERVER_H

#include "echofs/buf.h"
#include "echofs/common.h"
#include "echofs/metrics.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct efs_http_server;
struct efs_http_req;

/* Authentication a route requires; checked before begin(). */
enum efs_auth_mode {
	EFS_AUTH_NONE = 0,   /* anyone */
	EFS_AUTH_USER = 1,   /* a valid user JWT; req->user is its subject */
	EFS_AUTH_CLUSTER = 2, /* Authorization: Bearer <CLUSTER_SECRET> */
	EFS_AUTH_ANY = 3,    /* either of the two */
};

typedef int (*efs_http_fn)(struct efs_http_req *req);
typedef int (*efs_http_body_fn)(struct efs_http_req *req, const char *data, size_t len);

struct efs_http_route {
	const char *method;  /* "GET", "POST", ..., or "*": any method */
	/* "/api/v1/workers/{workerId}/heartbeat", or "*": any path (a server
	 * whose handler routes by itself, the S3 listener: s3_routes.c) */
	const char *pattern;
	enum efs_auth_mode auth;
	efs_http_fn begin;     /* optional */
	efs_http_body_fn body; /* optional: streaming body */
	efs_http_fn handle;    /* required */
	size_t max_body;       /* buffered routes: 0 = the server default */
	/* With blocking threads: the callbacks run on the event thread (they
	 * never wait, or call efs_http_offload when they must). */
	bool nonblocking;
	/* With blocking threads: its steps go before the others' and have
	 * EFS_HTTP_URGENT_THREADS threads of their own, so that requests hung
	 * on slow peers cannot hold it up (the workers' heartbeats). Only for
	 * routes that strangers cannot flood. */
	bool urgent;
};

/* HEADER_TIMEOUT_MS of both daemons: its default and its range. */
#define EFS_HTTP_DEFAULT_HEADER_TIMEOUT_MS 10000
/* SHUTDOWN_GRACE_MS of both daemons (efs_http_server_stop's wait for the
 * requests in flight at a SIGTERM): its default and its cap. */
#define EFS_HTTP_DEFAULT_SHUTDOWN_GRACE_MS 30000
#define EFS_HTTP_MAX_SHUTDOWN_GRACE_MS 3600000
#define EFS_HTTP_MIN_HEADER_TIMEOUT_MS 100
#define EFS_HTTP_MAX_HEADER_TIMEOUT_MS 600000

#define EFS_HTTP_MAX_EVENT_THREADS 256
#define EFS_HTTP_MAX_BLOCKING_THREADS 1024
/* Threads for urgent routes alone, besides blocking_threads. */
#define EFS_HTTP_URGENT_THREADS 4

#define EFS_HTTP_MAX_PARAMS 4
#define EFS_HTTP_PARAM_MAX 128 /* longest path parameter, bytes */

struct efs_http_req {
	struct efs_http_server *server;
	const struct efs_http_route *route;
	const char *method;
	const char *path;
	/* Captured path parameters, in pattern order, NUL-terminated. */
	unsigned param_count;
	char param_names[EFS_HTTP_MAX_PARAMS][32];
	char params[EFS_HTTP_MAX_PARAMS][EFS_HTTP_PARAM_MAX + 1];
	/* Content-Length, or -1 when absent (chunked or no body). */
	int64_t content_length;
	/* Buffered routes: the body once handle() runs. */
	struct efs_buf body;
	/* Set by authentication: the user id (JWT sub) or "" for the cluster. */
	char user[EFS_ID_MAX + 1];
	bool is_cluster;
	bool is_admin; /* a user token with "admin": true (auth.h) */
	/* Free for the route: per-request state, freed by state_free. */
	void *state;
	void (*state_free)(void *state);
	/* Private to the wrapper. */
	struct efs_http_req_private *priv;
};

/* Called for every route needing authentication. Must either fill
 * req->user / req->is_cluster / req->is_admin and return 0, or reply 401 and return 0,
 * or return a negative errno. */
typedef int (*efs_http_auth_fn)(struct efs_http_req *req, enum efs_auth_mode mode, void *ctx);

struct efs_http_server_config {
	const void *addr; /* struct sockaddr_in / sockaddr_in6 */
	unsigned addrlen;
	const struct efs_http_route *routes;
	size_t route_count;
	efs_http_auth_fn auth;
	void *auth_ctx;            /* handed to auth */
	void *ctx;                 /* the daemon's context: efs_http_ctx(req) */
	size_t max_body;           /* default cap for buffered bodies (1 MiB) */
	size_t conn_memory_limit;  /* per-connection pool: caps headers (256 KiB) */
	unsigned max_connections;  /* (512) */
	unsigned idle_timeout_s;   /* a connection sending or taking no byte for this
				    * long is closed (60) */
	/* A connection whose request line and headers are not complete this
	 * long after it opened is closed, however slowly it keeps sending
	 * (10000); the next request on a kept-alive connection has
	 * idle_timeout_s instead. */
	unsigned header_timeout_ms;
	/* 0: a thread per connection; 1..EFS_HTTP_MAX_EVENT_THREADS: that many
	 * epoll event threads (see Threading above). max_connections then
	 * holds over all of them (not libmicrohttpd's share per thread); two
	 * threads accepting at the same instant may each let one more in. */
	unsigned event_threads;
	/* With event_threads: 0, the callbacks run on the event threads; M,
	 * they run on a pool of M threads (see Threading) unless their route
	 * is nonblocking. Ignored without event threads. */
	unsigned blocking_threads;
	struct efs_metrics *metrics; /* optional: requests are recorded here (see above);
				      * must outlive the server */
	/* HTTPS: PEM files of the server's certificate (chain) and its private
	 * key, read once at start; both NULL: plain HTTP. */
	const char *tls_cert_file;
	const char *tls_key_file;
	/* Optional: one line saying why the TLS files were refused, naming
	 * TLS_CERT_FILE / TLS_KEY_FILE (see efs_http_tls_check). */
	char *error;
	size_t error_len;
};

/* Starts listening and serving. On success *out is the server.
 * -EADDRINUSE, -EACCES, or another -errno when the socket cannot be bound;
 * with TLS files: -ENOTSUP when libmicrohttpd was built without TLS,
 * -EINVAL when only one of the two files is given, or when they cannot be
 * read or are not a matching PEM certificate and key (cfg->error says
 * which: check them first with efs_http_tls_check). */
int efs_http_server_start(const struct efs_http_server_config *cfg,
			  struct efs_http_server **out);
/* Checks before a start that @cert_file and @key_file (PEM) hold a
 * certificate and its private key that libmicrohttpd accepts, without
 * binding anything. 0, -ENOTSUP (no TLS in libmicrohttpd) or -EINVAL,
 * with one line naming TLS_CERT_FILE / TLS_KEY_FILE in @err. */
int efs_http_tls_check(const char *cert_file, const char *key_file, char *err, size_t errlen);

/* The port actually bound (useful with port 0). */
uint16_t efs_http_server_port(const struct efs_http_server *srv);
/* The first half of a graceful stop: stops accepting connections, and
 * every reply from now on closes its connection. A daemon with several
 * servers quiesces them all before it waits for any, so that the drains
 * share one grace. NULL is accepted; a second call does nothing. */
void efs_http_server_quiesce(struct efs_http_server *srv);
/* Graceful stop: quiesces (if not done yet), waits up to @grace_ms for
 * requests in flight to finish, then for every parked request to be
 * resumed (however long: see efs_http_defer), then closes every
 * connection and frees the server. NULL is accepted. */
void efs_http_server_stop(struct efs_http_server *srv, int64_t grace_ms);

/* The ctx given in the server config. */
void *efs_http_ctx(const struct efs_http_req *req);

/* Request accessors; returned strings live as long as the request. */
const char *efs_http_param(const struct efs_http_req *req, const char *name);
const char *efs_http_header(const struct efs_http_req *req, const char *name);
/* The request target (path and query) exactly as the client sent it,
 * undecoded: what a signature over the request covers. */
const char *efs_http_raw_target(const struct efs_http_req *req);
/* What the access log line of this request shows instead of its path
 * (the S3 listener: path and query, credentials left out). Copied, cut
 * to EFS_HTTP_LOG_TARGET_MAX bytes. 0 or -ENOMEM. */
#define EFS_HTTP_LOG_TARGET_MAX 2048
int efs_http_set_log_target(struct efs_http_req *req, const char *target);
/* Calls @fn(@ctx, name, value) for each request header field in the order
 * received, stopping at the first non-zero return, which is returned. */
typedef int (*efs_http_req_header_fn)(void *ctx, const char *name, const char *value);
int efs_http_headers(const struct efs_http_req *req, efs_http_req_header_fn fn, void *ctx);
/* A query value with an encoded NUL ("%00") comes back as this string,
 * which no validation accepts. */
#define EFS_HTTP_INVALID_VALUE "\x01invalid"
const char *efs_http_query(const struct efs_http_req *req, const char *name);
/* True when a reply has been set for this request. */
bool efs_http_replied(const struct efs_http_req *req);

/* Parks the request so that no thread waits for it (event-thread servers
 * only): called from handle(), which then returns 0 without a reply. The
 * connection reads and times out nothing until efs_http_resume(). From
 * here on the request belongs to whoever will resume it: that thread sets
 * the reply (efs_http_reply_*; none set becomes a 500) and then calls
 * efs_http_resume(req), after which it must not touch req again. The
 * resume may come from any thread, even before handle() returns. Every
 * parked request must be resumed: efs_http_server_stop() waits for it.
 * 0, or -ENOTSUP on a thread-per-connection server or a blocking thread
 * (handle() then blocks as usual), -EALREADY when a reply is set already. */
int efs_http_defer(struct efs_http_req *req);
void efs_http_resume(struct efs_http_req *req);

/* From handle() of a nonblocking route running on an event thread: the
 * request is suspended and handle() is called again, from the start, on a
 * blocking thread; this call returns 0 and handle() must return 0 without
 * a reply. -ENOTSUP when the server has no blocking threads (without
 * event threads the caller may block; on event threads alone it must not)
 * or the caller is one of them, -EALREADY when a reply is set,
 * -ESHUTDOWN once a stop's grace is over (return it: a 500, the
 * connection closes). */
int efs_http_offload(struct efs_http_req *req);
/* True when the calling callback may block: a thread-per-connection
 * server, or a blocking thread. */
bool efs_http_may_block(const struct efs_http_req *req);

/* Sets a response header of the reply that will be sent: one added
 * before under the same name (any case) gets this value instead, so that
 * a fallback reply after a failed one never sends a header twice. 0 or
 * -ENOMEM, -E2BIG past 48 headers. */
int efs_http_add_header(struct efs_http_req *req, const char *name, const char *value);

/* Replies. Each returns 0 or a negative errno; only the first reply of a
 * request counts (later ones return -EALREADY). */
int efs_http_reply_json(struct efs_http_req *req, unsigned status, json_t *body); /* steals body */
int efs_http_reply_empty(struct efs_http_req *req, unsigned status);
int efs_http_reply_bytes(struct efs_http_req *req, unsigned status, const char *content_type,
			 const void *data, size_t len); /* copies data */
/* Replies with @len bytes of @buf from @offset without copying them: the
 * reply takes over the buffer's allocation (freed once sent, or when the
 * request ends unsent) and @buf is left empty, reusable. @content_type may
 * be NULL (then set it with efs_http_add_header). -EINVAL when the bytes
 * lie outside the buffer (@buf untouched). */
int efs_http_reply_buf(struct efs_http_req *req, unsigned status, const char *content_type,
		       struct efs_buf *buf, size_t offset, size_t len);
/* Replies with @len bytes of the file @fd from @offset, which must not
 * change until the reply is done. It takes @fd: closed when the reply is
 * done or dropped, or at once when this fails. On plain HTTP the kernel
 * sends them from the page cache (sendfile, no copy through user space);
 * over TLS libmicrohttpd reads them into a buffer to encrypt them (see
 * efs_http_sends_files). @content_type may be NULL. */
int efs_http_reply_file(struct efs_http_req *req, unsigned status, const char *content_type, int fd,
			uint64_t offset, uint64_t len);
/* True when efs_http_reply_file sends without copying: the server speaks
 * plain HTTP. Over TLS a caller that reads the bytes anyway (to verify
 * them) does better replying from its buffer than having them read again. */
bool efs_http_sends_files(const struct efs_http_req *req);
/* {"error": {"code": code, "message": ...}}; @extra (stolen, may be NULL)
 * is merged into the error object, e.g. {"missing": [1, 2]}. The raw form
 * under http_error.h: handlers reply errors with efs_http_reply_err or
 * efs_http_reply_errno, whose table gives the status and the code. */
int efs_http_reply_error_extra(struct efs_http_req *req, unsigned status, const char *code,
			       json_t *extra, const char *fmt, ...) EFS_PRINTF(5, 6);

/* Streaming reply: read() is called from the thread serving the connection
 * (its own, or its event thread: it must not block long) for the
 * next piece at byte offset @pos, returns the bytes written into @out
 * (1..max), 0 at the end, or a negative errno to abort the connection.
 * @length is the Content-Length or -1 (chunked). free_fn(ctx) runs when the
 * response is done, also when it was never sent. */
typedef ssize_t (*efs_http_read_fn)(void *ctx, uint64_t pos, char *out, size_t max);
int efs_http_reply_stream(struct efs_http_req *req, unsigned status, int64_t length,
			  efs_http_read_fn read, void *ctx, void (*free_fn)(void *ctx));

/* Replies 200 with @count registries rendered one after the other in the
 * Prometheus text format (they must not share family names). 0, -E2BIG
 * past 16 MiB of text, -ENOMEM. */
int efs_http_reply_metrics(struct efs_http_req *req, struct efs_metrics *const *regs,
			   size_t count);

/* Parses the buffered body as a JSON object into *out (the caller's).
 * -EINVAL when it is not one, with @why (EFS_HTTP_JSON_WHY_MAX bytes) set
 * to ": <the parser's complaint>" or "" (the subject of the
 * EFS_HTTP_OP_JSON_BODY reply). Never replies. */
#define EFS_HTTP_JSON_WHY_MAX 192
int efs_http_body_json(struct efs_http_req *req, json_t **out, char *why);

/* Path matching, exposed for unit tests: true when @path matches @pattern;
 * captured parameters are written to @req (may be NULL). */
bool efs_http_route_match(const char *pattern, const char *path, struct efs_http_req *req);

#endif
