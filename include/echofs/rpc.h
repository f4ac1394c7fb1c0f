/* SPDX-License-Identifier: MIT */
/* rpc.h - gRPC, wrapped once: a server whose methods are handled by
 * callbacks, and a client stream driven by one thread.
 *
 * The only file that includes grpc's headers is src/common/rpc.c (grpc's
 * core C API, completion queues). Messages here are bytes: the callers
 * encode and decode them with protobuf-c (proto/echofs.proto).
 *
 * Server. Every method is served the same way, whatever its kind in the
 * proto (unary, client stream, bidirectional stream): @open when the call
 * arrives, @message for each message the client sends, @end when the client
 * half-closes, @close once when the call is over. A reply message is sent
 * with efs_rpc_call_send(), from any thread, at any time before @close; a
 * unary or client-stream method sends its one reply from @end. After @end
 * (or after a callback returned an error) the call ends with the status as
 * soon as what was queued has been sent. All callbacks run on the server's
 * one completion-queue thread: a callback must not block for long.
 *
 * Limits: every message either way is capped at max_message bytes (larger
 * ones end the call with RESOURCE_EXHAUSTED before any callback sees
 * them); a call's send queue holds at most EFS_RPC_SENDQ_MAX messages.
 *
 * Errors are negative errno values; the status a client sees is mapped
 * from them: -EACCES UNAUTHENTICATED, -EINVAL/-EPROTO INVALID_ARGUMENT,
 * -ENOENT NOT_FOUND, -EXDEV FAILED_PRECONDITION, -ENOSYS UNIMPLEMENTED,
 * -EMSGSIZE RESOURCE_EXHAUSTED, -EAGAIN/-EIO UNAVAILABLE, others INTERNAL.
 * On the client side, a status ending a call maps back the same way.
 */
#ifndef ECHOFS_RPC_H
#define ECHOFS_RPC_H

#include "echofs/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EFS_RPC_MESSAGE_MAX (1024 * 1024)
#define EFS_RPC_SENDQ_MAX 64
/* The longest status message kept (longer ones are cut). */
#define EFS_RPC_WHY_MAX 200
/* The largest PEM file (certificate chain, key, CAs) read for TLS. */
#define EFS_RPC_PEM_MAX (1024 * 1024)

struct efs_rpc_server;
struct efs_rpc_call;

struct efs_rpc_method {
	const char *path; /* "/package.Service/Method" */
	/* The call arrived. @authorization is the "authorization" metadata
	 * value (NULL when absent). 0 to take the call (*@state is passed to
	 * the other callbacks), or -errno to end it with that status. */
	int (*open)(void *ctx, struct efs_rpc_call *call, const char *authorization, void **state);
	/* One message from the client (@data valid during the call only). 0
	 * to go on, or -errno to end the call with that status. */
	int (*message)(void *state, struct efs_rpc_call *call, const uint8_t *data, size_t len);
	/* The client half-closed (sends nothing more). 0, or -errno for the
	 * status. May be NULL. */
	int (*end)(void *state, struct efs_rpc_call *call);
	/* The call is over: @broken when it did not end by our status (the
	 * peer went away, the connection broke, the server is stopping). Runs
	 * once for every call @open accepted; after it returns, @call is gone
	 * and efs_rpc_call_send() on it is a use after free: whatever else
	 * holds @call must drop it here, under its own lock. */
	void (*close)(void *state, bool broken);
};

struct efs_rpc_server_config {
	const char *host; /* address to bind, e.g. "0.0.0.0" or "127.0.0.1" */
	uint16_t port;	  /* 0: any free port (see efs_rpc_server_port) */
	const struct efs_rpc_method *methods;
	size_t method_count;
	void *ctx;	    /* passed to open */
	size_t max_message; /* 0: EFS_RPC_MESSAGE_MAX */
	/* Both set: serve TLS only, with this PEM certificate (chain) and key
	 * (no client certificates asked: calls authenticate with their
	 * authorization metadata). Both NULL: plaintext. */
	const char *tls_cert_file;
	const char *tls_key_file;
	/* 0: the server's thread waits for each completion as it comes. N:
	 * once it has taken every completion that was ready, and that was
	 * more than one since it last waited, it sleeps N ms before it waits
	 * again, so that what arrives meanwhile (many calls' messages, a
	 * call's end) is taken in one wake-up: fewer wake-ups for up to N ms
	 * more latency per message on a busy server, none on a quiet one. It
	 * does not sleep for EFS_RPC_ANSWER_MS after any message was sent on
	 * a call (an answer is awaited, and waits for no sleep). */
	unsigned batch_ms;
};

/* How long after a send the server's thread keeps out of its batching
 * sleep (efs_rpc_server_config.batch_ms). */
#define EFS_RPC_ANSWER_MS 1000

/* Starts a server and its completion-queue thread. 0 or -errno
 * (-EADDRINUSE or -EINVAL when it cannot listen; the error of reading a
 * TLS file, -E2BIG past EFS_RPC_PEM_MAX). */
int efs_rpc_server_start(const struct efs_rpc_server_config *cfg, struct efs_rpc_server **out);
/* The port it listens on. */
uint16_t efs_rpc_server_port(const struct efs_rpc_server *s);
/* Whether efs_rpc_server_stop has begun (a close callback can tell a
 * stopping server's cancelled calls from broken streams). */
bool efs_rpc_server_stopping(const struct efs_rpc_server *s);
/* Cancels every call (each gets its close callback, broken), stops the
 * thread and frees the server. NULL is accepted. */
void efs_rpc_server_stop(struct efs_rpc_server *s);

/* Queues one message to the client. 0, -EPIPE (the call is ending or
 * over), -ENOBUFS (the queue is full), -EMSGSIZE, -ENOMEM. Thread-safe. */
int efs_rpc_call_send(struct efs_rpc_call *call, const void *data, size_t len);
/* Sets the message that goes with an error status (printf-style, cut at
 * EFS_RPC_WHY_MAX). Call it before the callback returns the error. */
void efs_rpc_call_set_why(struct efs_rpc_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Ends the call now with the status of @err (its message @why, may be
 * NULL), whatever is queued: the peer is told (when its connection still
 * carries anything) and @close follows, broken. For a call that went
 * silent. 0, or -EPIPE when the call is already over or ending. Any thread
 * holding what keeps @call alive (the lock @close takes). */
int efs_rpc_call_cancel(struct efs_rpc_call *call, int err, const char *why);
/* The peer's address ("ipv4:127.0.0.1:5555"), for logs. */
const char *efs_rpc_call_peer(const struct efs_rpc_call *call);

/* ---- client: one stream, driven by one thread ---- */

struct efs_rpc_stream;

/* Opens a stream call of @path to @target ("host:port") with
 * "authorization: @authorization" (NULL: none), and waits up to
 * @timeout_ms for the server to take it. 0, or -errno: the status the
 * server ended it with, or -ETIMEDOUT, or -ECONNREFUSED (the server is not
 * there). @why (may be NULL, @why_size bytes) gets the status message. */
int efs_rpc_stream_open(const char *target, const char *path, const char *authorization,
			int64_t timeout_ms, struct efs_rpc_stream **out, char *why,
			size_t why_size);
/* As efs_rpc_stream_open, over TLS: the server's certificate must chain to
 * a CA of the PEM file @ca_file (NULL: grpc's default roots) and name
 * @target's host. A server that fails that check ends the open with
 * -ECONNREFUSED (grpc tells no more: @why says "TLS"); an unreadable
 * @ca_file is its -errno (-E2BIG past EFS_RPC_PEM_MAX). */
int efs_rpc_stream_open_tls(const char *target, const char *path, const char *authorization,
			    const char *ca_file, int64_t timeout_ms, struct efs_rpc_stream **out,
			    char *why, size_t why_size);
/* Sends one message and waits up to @timeout_ms until it is written. 0,
 * -EPIPE when the stream has ended (efs_rpc_stream_error says how), or
 * -ETIMEDOUT. */
int efs_rpc_stream_send(struct efs_rpc_stream *s, const void *data, size_t len, int64_t timeout_ms);
/* Waits up to @timeout_ms for a message from the server, appended to @out
 * (reset first). 1: a message; 0: none yet; -EPIPE: the stream ended;
 * -EMSGSIZE: larger than @out's cap. */
int efs_rpc_stream_recv(struct efs_rpc_stream *s, int64_t timeout_ms, struct efs_buf *out);
/* How the stream ended: 0 while it has not, else the -errno of its
 * status, with the status message in @why (may be NULL). */
int efs_rpc_stream_error(const struct efs_rpc_stream *s, char *why, size_t why_size);
/* Cancels the call (if still open), waits for grpc to let go and frees.
 * NULL is accepted. */
void efs_rpc_stream_close(struct efs_rpc_stream *s);

/* The -errno a grpc status code stands for (0 for OK), and back. */
int efs_rpc_status_errno(int status);
int efs_rpc_errno_status(int err);

#endif
