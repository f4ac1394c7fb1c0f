/* SPDX-License-Identifier: MIT */
/* http_client.h - the one wrapper around libcurl.
 *
 * A call describes one request; efs_http_call_run() performs it and
 * efs_http_call_run_parallel() performs several at once (curl multi), which
 * is how replicas are written side by side. Connections are kept alive
 * and reused between calls, single and parallel, from any thread: calls
 * run on pooled curl multi handles whose connection caches outlive the
 * call (at most 32 idle multis, each keeping up to 32 idle connections, so
 * at most 32 idle connections to any one server; a connection idle for
 * 20 s is not reused). A connection whose transfer failed, timed
 * out or was aborted is closed, never reused; a request that finds its
 * reused connection closed by the server is sent again on a new one (a
 * memory body is rewound; a streamed body cannot be, and fails).
 * Every response body is capped: a reply larger than resp_cap fails with
 * -E2BIG. The pools and the connection count belong to a struct
 * efs_http_client, which its owner (the master, a worker's heartbeat, the
 * CLI) creates and passes to every call: two clients in one process share
 * nothing. Thread-safe; call efs_http_client_global_init() once at start.
 *
 * A request body comes from memory (body/body_len) or is streamed from a
 * source callback (source/source_len), so a client can send a file of any
 * size without holding it. A memory body must stay valid and unchanged
 * until the call returns; through libcurl one under 64 KiB goes out in the
 * same write as the request head, and one marked direct_body, of any size,
 * goes out from the caller's buffer without libcurl (see the field). No
 * Content-Type is sent unless the call names one. A progress hook sees the
 * bytes moved while a transfer runs, and max_speed caps its rate.
 */
#ifndef ECHOFS_HTTP_CLIENT_H
#define ECHOFS_HTTP_CLIENT_H

#include "echofs/buf.h"
#include "echofs/common.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Called with each piece of a streamed response body; return 0 to go on or
 * a negative errno to abort the transfer with that error. */
typedef int (*efs_http_sink_fn)(void *ctx, const char *data, size_t len);

/* Fills @buf with up to @cap more bytes of a streamed request body. Returns
 * how many (0 only at the end of the body) or a negative errno to abort the
 * transfer with that error. */
/* Called with each response header (@name and @value trimmed, not
 * NUL-terminated; every response's, including an interim 100's). Return 0
 * to go on or a negative errno to abort the transfer with that error. */
typedef int (*efs_http_header_fn)(void *ctx, const char *name, size_t name_len,
				  const char *value, size_t value_len);

typedef ssize_t (*efs_http_source_fn)(void *ctx, char *buf, size_t cap);

/* Called while a transfer runs (at least about once a second, and whenever
 * bytes move) with the bytes received and sent so far; a total is 0 while
 * it is unknown. Return 0 to go on or a negative errno to abort. */
typedef int (*efs_http_progress_fn)(void *ctx, int64_t down_total, int64_t down_now,
				    int64_t up_total, int64_t up_now);

struct efs_http_call {
	/* request */
	const char *method;       /* "GET", "PUT", ... */
	const char *url;
	const char *bearer;       /* Authorization: Bearer <bearer>, or NULL */
	const char *content_type; /* or NULL */
	const char *headers[16];  /* more "Name: value" headers; unused slots NULL, anywhere */
	const void *body;         /* request body from memory, or NULL */
	size_t body_len;
	/* Or a streamed request body (used when body is NULL): source_len
	 * bytes, or -1 when unknown (sent with chunked transfer encoding). */
	efs_http_source_fn source;
	void *source_ctx;
	int64_t source_len;
	/* Run the call without libcurl, on a kept-alive connection of the
	 * client's own: a memory body of any size leaves straight from @body
	 * (one sendmsg of head and body; libcurl copies every byte into its
	 * upload buffer first, and costs more set-up per call than a small
	 * body's send), and the reply's body, when it has a Content-Length,
	 * is received straight into @resp (sized for it once; libcurl
	 * receives into its own buffer and a write callback copies it out).
	 * For replica writes and chunk reads between master and workers.
	 * Everything else holds as for any call (the fields below, the
	 * results, keep-alive and the send again on a new connection when a
	 * reused one was closed). The call goes through libcurl after all for
	 * an https:// URL, a HEAD, a streamed body, with progress, max_speed
	 * or a sink, when a proxy is set in the environment (http_proxy,
	 * all_proxy), or when another call of the same parallel batch cannot
	 * go direct. The peer must answer in HTTP/1.1 or 1.0 (Content-Length,
	 * chunked or until close). */
	bool direct_body;
	efs_http_progress_fn progress; /* or NULL */
	void *progress_ctx;
	/* Optional: called once, on the thread running the call, as soon as
	 * this call's results below are final, while other calls of the same
	 * efs_http_call_run_parallel may still be running (a batch's queue is
	 * freed when its own call ends, not the slowest of the lot). Must not
	 * block or release the call. Not called for a call that failed before
	 * it started (set-up, out of memory): its error is set all the same. */
	void (*on_done)(struct efs_http_call *call, void *ctx);
	void *on_done_ctx;
	int64_t max_speed;        /* bytes/s cap each way; 0 = none */
	long timeout_ms;          /* whole transfer; 0 = 30 s */
	long connect_timeout_ms;  /* 0 = 2 s */
	long stall_timeout_s;     /* give up (-ETIMEDOUT) after this many seconds without a
				   * byte moving either way; 0 = never */
	/* With stall_timeout_s: also give up (-ETIMEDOUT, too_slow) when, while
	 * bytes of the body remain to be sent or of the response to be
	 * received, and some byte moved within the last second, fewer than
	 * min_speed * stall_timeout_s bytes moved (both ways together) over the
	 * last stall_timeout_s seconds; bytes/s, 0 = no such rule. A transfer
	 * younger than stall_timeout_s is never judged by it; one that stopped
	 * is the stall rule's. */
	int64_t min_speed;
	/* response: into @resp (capped at resp_cap; 0 = 1 MiB), or to @sink.
	 * When the sink sees the first bytes, status and captured are set. */
	efs_http_sink_fn sink;
	void *sink_ctx;
	size_t resp_cap;
	struct efs_buf resp;
	/* One response header to capture (case-insensitive name), or NULL. */
	const char *capture_header;
	char captured[128]; /* its value, "" when absent */
	/* Or every response header, one by one (with capture_header too). */
	efs_http_header_fn header_fn;
	void *header_ctx;
	/* results */
	long status;          /* HTTP status, 0 when no response arrived */
	int error;            /* 0, or -errno of a transport failure */
	/* Set with error -ETIMEDOUT when the min_speed rule gave up on the
	 * transfer (the peer moves bytes, but too slowly); not for a stall or
	 * a deadline. */
	bool too_slow;
	int64_t elapsed_ms;   /* how long the transfer took, connection set-up included */
	char errmsg[160];     /* what failed, for logs */
};

/* The pools of idle handles and kept-alive connections calls run on. */
struct efs_http_client;

/* Initialises libcurl (process-wide by libcurl's design); call once from
 * main before any thread starts. */
int efs_http_client_global_init(void);
/* Frees libcurl; after every client is freed. */
void efs_http_client_global_cleanup(void);

/* A client with empty pools. 0 or -ENOMEM. */
int efs_http_client_new(struct efs_http_client **out);
/* Verifies https servers against the CA certificates in the PEM file
 * @ca_file (copied) instead of the system's store; NULL restores the
 * system's store. Call before the client's first call. Verification of
 * the server's certificate and of its name (the URL's host, an IP address
 * too) is always on for https:// URLs; there is no way to turn it off.
 * 0 or -ENOMEM. */
int efs_http_client_set_ca_file(struct efs_http_client *client, const char *ca_file);
/* Closes the client's idle connections and frees it; after every call on
 * it has finished. NULL accepted. */
void efs_http_client_free(struct efs_http_client *client);

/* New connections @client opened so far (libcurl's CURLINFO_NUM_CONNECTS
 * summed over finished transfers): for tests and metrics of connection
 * reuse. */
uint64_t efs_http_client_connections_opened(const struct efs_http_client *client);

/* Prepares @call for @method and @url with everything else zero. */
void efs_http_call_init(struct efs_http_call *call, const char *method, const char *url);
/* Frees the response buffer. */
void efs_http_call_release(struct efs_http_call *call);

/* Performs one call. Returns 0 when a response arrived (any status; see
 * call->status) or the transport error (also in call->error):
 * -ECONNREFUSED, -ETIMEDOUT, -E2BIG (response over the cap), -EPERM (an
 * https server whose certificate could not be verified, or a CA file that
 * could not be read), -EIO. call->errmsg then says what failed in
 * libcurl's words ("SSL certificate problem: unable to get local issuer
 * certificate"). */
int efs_http_call_run(struct efs_http_client *client, struct efs_http_call *call);

/* Performs @n calls concurrently and returns when all are done. Returns 0;
 * each call's own result is in its status / error fields. Both run on
 * @client's pooled handles and connections. */
int efs_http_call_run_parallel(struct efs_http_client *client, struct efs_http_call **calls,
			       size_t n);

#endif
