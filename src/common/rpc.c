/* SPDX-License-Identifier: MIT */
/* rpc.c - grpc's core C API, wrapped once (contracts in echofs/rpc.h).
 *
 * Server: one completion queue and one thread. With batch_ms the thread,
 * once nothing is ready, sleeps that long before it waits again: at a
 * thousand streams of one beat a second each, waking for every message
 * cost the master more than handling it (context switches were a quarter
 * of its samples; docs/PERFORMANCE.md). Each batch we start carries
 * a tag naming its call and its kind; the call is freed when the last of
 * its batches has completed, which is never before RECV_CLOSE_ON_SERVER
 * (started first, completes when the call is over). Sends are queued per
 * call and written one at a time (grpc allows one SEND_MESSAGE in flight);
 * the status goes out once the queue is empty. Calls are accepted as
 * "unregistered" calls and routed by their method path.
 *
 * Client: one stream, one completion queue, driven by the one thread that
 * calls efs_rpc_stream_*: every wait is grpc_completion_queue_next with a
 * deadline, so a broken stream is seen by the next send or receive.
 */
#include "echofs/rpc.h"
#include "echofs/util.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AUTH_MAX 512
#define PEER_MAX 96

enum tag_kind { T_REQUEST, T_SHUTDOWN, T_RECV, T_SEND, T_CLOSE, T_STATUS, T_META };

struct tag {
	enum tag_kind kind;
	struct efs_rpc_call *call; /* NULL for the server's own tags */
};

struct efs_rpc_server {
	grpc_server *server;
	grpc_completion_queue *cq;
	pthread_t thread;
	bool thread_started;
	const struct efs_rpc_method *methods;
	size_t method_count;
	void *ctx;
	size_t max_message;
	uint16_t port;
	unsigned batch_ms;
	atomic_bool stopping;
	_Atomic int64_t last_send_ms; /* efs_mono_ms() of the latest send */
	/* CQ thread only: calls taken and not yet freed, and whether the
	 * server's shutdown tag came. The queue is shut down only when both
	 * say so: a live call may still start a batch (a send from another
	 * thread, its status), and a batch started on a shut-down queue
	 * aborts the process inside grpc. */
	size_t live_calls;
	bool shutdown_seen;
	/* The one outstanding request for a new call. */
	struct tag request_tag, shutdown_tag;
	grpc_call *new_call;
	grpc_call_details details;
	grpc_metadata_array request_md;
};

struct efs_rpc_call {
	struct efs_rpc_server *srv;
	grpc_call *call;
	const struct efs_rpc_method *method;
	void *state;
	bool opened; /* open() accepted it: close() is owed */
	char peer[PEER_MAX];
	pthread_mutex_t lock; /* everything below */
	int refs;	      /* batches in flight */
	bool done;	      /* refs fell to 0: sends refused, being freed */
	bool md_sent;	      /* initial metadata is in a started batch */
	bool ending;	      /* send the status once the queue is empty */
	bool status_started;
	int end_err; /* the status, as -errno (0: OK) */
	int cancelled;
	bool sending;
	grpc_byte_buffer *queue[EFS_RPC_SENDQ_MAX];
	size_t q_head, q_count;
	grpc_byte_buffer *in_flight;
	grpc_byte_buffer *recv_bb; /* CQ thread only */
	grpc_slice status_details;
	bool status_details_set;
	char why[EFS_RPC_WHY_MAX + 1];
	struct tag t_recv, t_send, t_close, t_status;
};

int efs_rpc_status_errno(int status)
{
	switch (status) {
	case GRPC_STATUS_OK:
		return 0;
	case GRPC_STATUS_UNAUTHENTICATED:
	case GRPC_STATUS_PERMISSION_DENIED:
		return -EACCES;
	case GRPC_STATUS_INVALID_ARGUMENT:
		return -EINVAL;
	case GRPC_STATUS_NOT_FOUND:
		return -ENOENT;
	case GRPC_STATUS_FAILED_PRECONDITION:
		return -EXDEV;
	case GRPC_STATUS_UNIMPLEMENTED:
		return -ENOSYS;
	case GRPC_STATUS_RESOURCE_EXHAUSTED:
		return -EMSGSIZE;
	case GRPC_STATUS_DEADLINE_EXCEEDED:
		return -ETIMEDOUT;
	case GRPC_STATUS_UNAVAILABLE:
		return -ECONNREFUSED;
	case GRPC_STATUS_CANCELLED:
		return -ECANCELED;
	default:
		return -EIO;
	}
}

int efs_rpc_errno_status(int err)
{
	switch (err) {
	case 0:
		return GRPC_STATUS_OK;
	case -EACCES:
		return GRPC_STATUS_UNAUTHENTICATED;
	case -EINVAL:
	case -EPROTO:
		return GRPC_STATUS_INVALID_ARGUMENT;
	case -ENOENT:
		return GRPC_STATUS_NOT_FOUND;
	case -EXDEV:
		return GRPC_STATUS_FAILED_PRECONDITION;
	case -ENOSYS:
		return GRPC_STATUS_UNIMPLEMENTED;
	case -EMSGSIZE:
	case -ENOBUFS:
		return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case -EAGAIN:
	case -EIO:
	case -EBUSY:
		return GRPC_STATUS_UNAVAILABLE;
	default:
		return GRPC_STATUS_INTERNAL;
	}
}

/* Both sides ping every KEEPALIVE_MS and drop the connection when no
 * answer comes within KEEPALIVE_TIMEOUT_MS: a partition that sends no
 * reset still breaks a client's stream (the worker falls back to HTTP).
 * The server accepts the clients' pings; its own did not break a frozen
 * stream in grpc 1.51, so the master ends silent streams itself
 * (efs_rpc_call_cancel from control.c's sweep). */
#define KEEPALIVE_MS 10000
#define KEEPALIVE_TIMEOUT_MS 5000
#define CHANNEL_ARGS 7

static void channel_args(grpc_arg args[CHANNEL_ARGS], grpc_channel_args *list, size_t max_message,
			 bool server)
{
	static const char *const keys[CHANNEL_ARGS] = {
	    GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
	    GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
	    GRPC_ARG_KEEPALIVE_TIME_MS,
	    GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
	    GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA,
	    /* No bandwidth probe: it pings the peer as data arrives, so
	     * each tiny beat cost the master one more read (the ping's
	     * answer): 297 recvmsg for 150 beats with it, 150 without
	     * (strace, 50 streams; docs/PERFORMANCE.md). */
	    GRPC_ARG_HTTP2_BDP_PROBE,
	    GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
	};
	const int values[CHANNEL_ARGS] = {
	    (int)max_message, (int)max_message, KEEPALIVE_MS, KEEPALIVE_TIMEOUT_MS, 0, 0,
	    KEEPALIVE_MS / 2,
	};
	for (size_t i = 0; i < CHANNEL_ARGS; i++) {
		args[i].type = GRPC_ARG_INTEGER;
		args[i].key = (char *)keys[i];
		args[i].value.integer = values[i];
	}
	list->args = args;
	/* the last one is the server's ping policy */
	list->num_args = server ? CHANNEL_ARGS : CHANNEL_ARGS - 1;
}

/* A PEM file, NUL-terminated, into a malloc'd *@out. 0 or -errno. */
static int read_pem(const char *path, char **out)
{
	char *buf = malloc(EFS_RPC_PEM_MAX + 1);
	if (!buf)
		return -ENOMEM;
	long n = efs_read_file(path, buf, EFS_RPC_PEM_MAX + 1);
	if (n < 0) {
		free(buf);
		return (int)n;
	}
	*out = buf;
	return 0;
}

/* The server's credentials: TLS from @cert_file and @key_file, or
 * plaintext when they are NULL. */
static int server_credentials(const char *cert_file, const char *key_file,
			      grpc_server_credentials **out)
{
	char *cert = NULL, *key = NULL;
	int r = 0;
	if (!cert_file || !key_file) {
		*out = grpc_insecure_server_credentials_create();
		return 0;
	}
	if ((r = read_pem(cert_file, &cert)) < 0 || (r = read_pem(key_file, &key)) < 0)
		goto out;
	grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
	*out = grpc_ssl_server_credentials_create(NULL, &pair, 1, 0, NULL);
	if (!*out)
		r = -EINVAL;
out:
	free(cert);
	free(key);
	return r;
}

/* The whole message of @bb into a malloc'd buffer (NULL on no memory). */
static uint8_t *flatten(grpc_byte_buffer *bb, size_t *len)
{
	grpc_byte_buffer_reader reader;
	if (!grpc_byte_buffer_reader_init(&reader, bb))
		return NULL;
	grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
	grpc_byte_buffer_reader_destroy(&reader);
	size_t n = GRPC_SLICE_LENGTH(all);
	uint8_t *out = malloc(n ? n : 1);
	if (out && n)
		memcpy(out, GRPC_SLICE_START_PTR(all), n);
	grpc_slice_unref(all);
	*len = n;
	return out;
}

static grpc_byte_buffer *wrap(const void *data, size_t len)
{
	grpc_slice slice = grpc_slice_from_copied_buffer(data, len);
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
	grpc_slice_unref(slice);
	return bb;
}

/* ---- server ---- */

static void request_next(struct efs_rpc_server *s)
{
	grpc_call_details_init(&s->details);
	grpc_metadata_array_init(&s->request_md);
	s->new_call = NULL;
	if (grpc_server_request_call(s->server, &s->new_call, &s->details, &s->request_md, s->cq,
				     s->cq, &s->request_tag) != GRPC_CALL_OK) {
		grpc_call_details_destroy(&s->details);
		grpc_metadata_array_destroy(&s->request_md);
	}
}

/* Starts one batch for @c with a reference; the caller holds c->lock or is
 * the only one who can reach @c. False when grpc refused it. */
static bool start(struct efs_rpc_call *c, const grpc_op *ops, size_t n, struct tag *t)
{
	if (grpc_call_start_batch(c->call, ops, n, t, NULL) != GRPC_CALL_OK)
		return false;
	c->refs++;
	return true;
}

/* Under c->lock: the next queued message, or the status when ending and
 * nothing is left to send. */
static void pump_sends_locked(struct efs_rpc_call *c)
{
	if (c->sending || c->status_started)
		return;
	if (c->q_count > 0) {
		grpc_op ops[2];
		size_t n = 0;
		memset(ops, 0, sizeof(ops));
		if (!c->md_sent) {
			ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
			c->md_sent = true;
		}
		c->in_flight = c->queue[c->q_head];
		c->q_head = (c->q_head + 1) % EFS_RPC_SENDQ_MAX;
		c->q_count--;
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = c->in_flight;
		c->sending = start(c, ops, n, &c->t_send);
		if (!c->sending) {
			grpc_byte_buffer_destroy(c->in_flight);
			c->in_flight = NULL;
		}
		return;
	}
	if (!c->ending)
		return;
	grpc_op ops[2];
	size_t n = 0;
	memset(ops, 0, sizeof(ops));
	if (!c->md_sent) {
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
		c->md_sent = true;
	}
	c->status_details = grpc_slice_from_copied_string(c->end_err && c->why[0] ? c->why : "");
	c->status_details_set = true;
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = efs_rpc_errno_status(c->end_err);
	ops[n++].data.send_status_from_server.status_details = &c->status_details;
	c->status_started = start(c, ops, n, &c->t_status);
}

static void end_call(struct efs_rpc_call *c, int err)
{
	pthread_mutex_lock(&c->lock);
	if (!c->ending) {
		c->ending = true;
		c->end_err = err;
	}
	pump_sends_locked(c);
	pthread_mutex_unlock(&c->lock);
}

static void call_free(struct efs_rpc_call *c)
{
	while (c->q_count > 0) {
		grpc_byte_buffer_destroy(c->queue[c->q_head]);
		c->q_head = (c->q_head + 1) % EFS_RPC_SENDQ_MAX;
		c->q_count--;
	}
	if (c->status_details_set)
		grpc_slice_unref(c->status_details);
	grpc_call_unref(c->call);
	pthread_mutex_destroy(&c->lock);
	struct efs_rpc_server *s = c->srv;
	free(c);
	if (--s->live_calls == 0 && s->shutdown_seen)
		grpc_completion_queue_shutdown(s->cq);
}

/* One batch of @c completed: the last one frees it (after close()). */
static void unref(struct efs_rpc_call *c)
{
	pthread_mutex_lock(&c->lock);
	bool last = --c->refs == 0;
	if (last)
		c->done = true;
	pthread_mutex_unlock(&c->lock);
	if (!last)
		return;
	if (c->opened)
		c->method->close(c->state, c->cancelled != 0 || !c->status_started);
	call_free(c);
}

static void post_recv(struct efs_rpc_call *c)
{
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &c->recv_bb;
	pthread_mutex_lock(&c->lock);
	if (!c->ending) {
		if (!c->md_sent) {
			/* headers first, so the client knows the call was taken */
			grpc_op ops[2];
			memset(ops, 0, sizeof(ops));
			ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
			ops[1] = op;
			c->md_sent = true;
			start(c, ops, 2, &c->t_recv);
		} else {
			start(c, &op, 1, &c->t_recv);
		}
	}
	pthread_mutex_unlock(&c->lock);
}

static void on_recv(struct efs_rpc_call *c, bool ok)
{
	grpc_byte_buffer *bb = c->recv_bb;
	c->recv_bb = NULL;
	if (!ok || c->ending) {
		grpc_byte_buffer_destroy(bb);
		return;
	}
	if (!bb) { /* the client half-closed */
		int r = c->method->end ? c->method->end(c->state, c) : 0;
		end_call(c, r);
		return;
	}
	size_t len = 0;
	uint8_t *data = NULL;
	int r;
	if (grpc_byte_buffer_length(bb) > c->srv->max_message) {
		efs_rpc_call_set_why(c, "message larger than %zu bytes", c->srv->max_message);
		r = -EMSGSIZE;
	} else if (!(data = flatten(bb, &len))) {
		r = -ENOMEM;
	} else {
		r = c->method->message(c->state, c, data, len);
	}
	free(data);
	grpc_byte_buffer_destroy(bb);
	if (r < 0)
		end_call(c, r);
	else
		post_recv(c);
}

static void on_send(struct efs_rpc_call *c, bool ok)
{
	pthread_mutex_lock(&c->lock);
	grpc_byte_buffer_destroy(c->in_flight);
	c->in_flight = NULL;
	c->sending = false;
	if (!ok) {
		/* the call is broken: what is queued will never go */
		c->ending = true;
		c->status_started = true; /* nothing more to start */
		while (c->q_count > 0) {
			grpc_byte_buffer_destroy(c->queue[c->q_head]);
			c->q_head = (c->q_head + 1) % EFS_RPC_SENDQ_MAX;
			c->q_count--;
		}
		c->cancelled = 1;
	}
	pump_sends_locked(c);
	pthread_mutex_unlock(&c->lock);
}

static void take_call(struct efs_rpc_server *s)
{
	struct efs_rpc_call *c = calloc(1, sizeof(*c));
	char auth[AUTH_MAX + 1] = "";
	bool has_auth = false;

	if (!c) {
		grpc_call_cancel_with_status(s->new_call, GRPC_STATUS_RESOURCE_EXHAUSTED,
					     "out of memory", NULL);
		grpc_call_unref(s->new_call);
		return;
	}
	c->srv = s;
	s->live_calls++;
	c->call = s->new_call;
	pthread_mutex_init(&c->lock, NULL);
	c->t_recv = (struct tag){T_RECV, c};
	c->t_send = (struct tag){T_SEND, c};
	c->t_close = (struct tag){T_CLOSE, c};
	c->t_status = (struct tag){T_STATUS, c};
	char *peer = grpc_call_get_peer(c->call);
	efs_strlcpy(c->peer, peer ? peer : "?", sizeof(c->peer));
	gpr_free(peer);
	for (size_t i = 0; i < s->method_count; i++)
		if (grpc_slice_str_cmp(s->details.method, s->methods[i].path) == 0)
			c->method = &s->methods[i];
	for (size_t i = 0; i < s->request_md.count; i++) {
		const grpc_metadata *md = &s->request_md.metadata[i];
		if (grpc_slice_str_cmp(md->key, "authorization") != 0)
			continue;
		size_t n = GRPC_SLICE_LENGTH(md->value);
		if (n <= AUTH_MAX) {
			memcpy(auth, GRPC_SLICE_START_PTR(md->value), n);
			auth[n] = '\0';
			has_auth = strlen(auth) == n;
		}
	}

	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op.data.recv_close_on_server.cancelled = &c->cancelled;
	pthread_mutex_lock(&c->lock);
	bool started = start(c, &op, 1, &c->t_close);
	pthread_mutex_unlock(&c->lock);
	if (!started) {
		grpc_call_cancel(c->call, NULL);
		call_free(c);
		return;
	}
	if (!c->method) {
		efs_rpc_call_set_why(c, "no such method");
		end_call(c, -ENOSYS);
		return;
	}
	int r = c->method->open(s->ctx, c, has_auth ? auth : NULL, &c->state);
	if (r < 0) {
		end_call(c, r);
		return;
	}
	c->opened = true;
	post_recv(c);
}

/* Polls without waiting that find nothing, in a row, before the queue
 * counts as drained: one poll handles one descriptor's events, and some
 * (a write finished, a window update) complete nothing of ours. */
#define DRAINED_POLLS 3

/* The batching sleep, after a wake-up that took @taken completions: none
 * when it took one (a quiet server: sleeping would only add a wake-up),
 * nor within EFS_RPC_ANSWER_MS of a send. */
static void batch_sleep(struct efs_rpc_server *s, int taken)
{
	if (!s->batch_ms || taken < 2 || atomic_load(&s->stopping) ||
	    efs_mono_ms() - atomic_load(&s->last_send_ms) < EFS_RPC_ANSWER_MS)
		return;
	struct timespec nap = {.tv_sec = s->batch_ms / 1000,
			       .tv_nsec = (long)(s->batch_ms % 1000) * 1000000};
	nanosleep(&nap, NULL);
}

static void *server_main(void *arg)
{
	struct efs_rpc_server *s = arg;
	int empty_polls = DRAINED_POLLS; /* start by waiting */
	int taken = 0;			 /* completions since the last wait */
	for (;;) {
		/* Draining: a past deadline polls once without waiting. */
		bool drained = empty_polls >= DRAINED_POLLS;
		if (drained)
			taken = 0;
		grpc_event ev = grpc_completion_queue_next(
		    s->cq,
		    drained ? gpr_inf_future(GPR_CLOCK_MONOTONIC) : gpr_time_0(GPR_CLOCK_MONOTONIC),
		    NULL);
		if (ev.type == GRPC_QUEUE_TIMEOUT) {
			if (++empty_polls >= DRAINED_POLLS)
				batch_sleep(s, taken);
			continue;
		}
		taken++;
		empty_polls = s->batch_ms ? 0 : DRAINED_POLLS;
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		struct tag *t = ev.tag;
		switch (t->kind) {
		case T_REQUEST: {
			bool ok = ev.success && s->new_call;
			if (ok)
				take_call(s);
			grpc_call_details_destroy(&s->details);
			grpc_metadata_array_destroy(&s->request_md);
			if (ok && !atomic_load(&s->stopping))
				request_next(s);
			break;
		}
		case T_SHUTDOWN:
			s->shutdown_seen = true;
			if (s->live_calls == 0)
				grpc_completion_queue_shutdown(s->cq);
			break;
		case T_RECV:
			on_recv(t->call, ev.success);
			unref(t->call);
			break;
		case T_SEND:
			on_send(t->call, ev.success);
			unref(t->call);
			break;
		case T_CLOSE:
		case T_STATUS:
		case T_META:
			unref(t->call);
			break;
		}
	}
	return NULL;
}

int efs_rpc_server_start(const struct efs_rpc_server_config *cfg, struct efs_rpc_server **out)
{
	struct efs_rpc_server *s = calloc(1, sizeof(*s));
	char addr[300];
	grpc_arg args[CHANNEL_ARGS];
	grpc_channel_args list;
	int r;

	if (!s)
		return -ENOMEM;
	grpc_init();
	s->methods = cfg->methods;
	s->method_count = cfg->method_count;
	s->ctx = cfg->ctx;
	s->max_message = cfg->max_message ? cfg->max_message : EFS_RPC_MESSAGE_MAX;
	s->batch_ms = cfg->batch_ms;
	atomic_init(&s->last_send_ms, INT64_MIN / 2);
	s->request_tag.kind = T_REQUEST;
	s->shutdown_tag.kind = T_SHUTDOWN;
	atomic_init(&s->stopping, false);
	channel_args(args, &list, s->max_message, true);
	int n = snprintf(addr, sizeof(addr), strchr(cfg->host, ':') ? "[%s]:%u" : "%s:%u",
			 cfg->host, cfg->port);
	if (n < 0 || (size_t)n >= sizeof(addr)) {
		r = -EINVAL;
		goto fail;
	}
	grpc_server_credentials *creds = NULL;
	if ((r = server_credentials(cfg->tls_cert_file, cfg->tls_key_file, &creds)) < 0)
		goto fail;
	s->cq = grpc_completion_queue_create_for_next(NULL);
	s->server = grpc_server_create(&list, NULL);
	grpc_server_register_completion_queue(s->server, s->cq, NULL);
	int port = grpc_server_add_http2_port(s->server, addr, creds);
	grpc_server_credentials_release(creds);
	if (port <= 0) {
		r = -EADDRINUSE;
		goto fail;
	}
	s->port = (uint16_t)port;
	grpc_server_start(s->server);
	request_next(s);
	if ((r = -pthread_create(&s->thread, NULL, server_main, s)) < 0) {
		atomic_store(&s->stopping, true);
		grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
		grpc_server_cancel_all_calls(s->server);
		server_main(s); /* drains on this thread */
		goto fail;
	}
	s->thread_started = true;
	*out = s;
	return 0;
fail:
	if (s->server)
		grpc_server_destroy(s->server);
	if (s->cq) {
		if (!atomic_load(&s->stopping)) {
			grpc_completion_queue_shutdown(s->cq);
			while (grpc_completion_queue_next(s->cq,
							  gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL)
				   .type != GRPC_QUEUE_SHUTDOWN)
				;
		}
		grpc_completion_queue_destroy(s->cq);
	}
	free(s);
	grpc_shutdown();
	return r;
}

uint16_t efs_rpc_server_port(const struct efs_rpc_server *s)
{
	return s->port;
}

bool efs_rpc_server_stopping(const struct efs_rpc_server *s)
{
	return atomic_load(&s->stopping);
}

void efs_rpc_server_stop(struct efs_rpc_server *s)
{
	if (!s)
		return;
	atomic_store(&s->stopping, true);
	grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
	grpc_server_cancel_all_calls(s->server);
	pthread_join(s->thread, NULL);
	grpc_server_destroy(s->server);
	grpc_completion_queue_destroy(s->cq);
	free(s);
	grpc_shutdown();
}

int efs_rpc_call_send(struct efs_rpc_call *c, const void *data, size_t len)
{
	if (len > c->srv->max_message)
		return -EMSGSIZE;
	grpc_byte_buffer *bb = wrap(data, len);
	if (!bb)
		return -ENOMEM;
	int r = 0;
	pthread_mutex_lock(&c->lock);
	if (c->done || c->ending)
		r = -EPIPE;
	else if (c->q_count >= EFS_RPC_SENDQ_MAX)
		r = -ENOBUFS;
	if (r == 0) {
		atomic_store(&c->srv->last_send_ms, efs_mono_ms());
		c->queue[(c->q_head + c->q_count) % EFS_RPC_SENDQ_MAX] = bb;
		c->q_count++;
		pump_sends_locked(c);
	}
	pthread_mutex_unlock(&c->lock);
	if (r < 0)
		grpc_byte_buffer_destroy(bb);
	return r;
}

void efs_rpc_call_set_why(struct efs_rpc_call *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
}

int efs_rpc_call_cancel(struct efs_rpc_call *c, int err, const char *why)
{
	int r = 0;
	pthread_mutex_lock(&c->lock);
	if (c->done || c->ending) {
		r = -EPIPE;
	} else {
		/* no status batch of ours follows: close() sees it broken */
		c->ending = true;
		c->end_err = err;
		grpc_call_cancel_with_status(c->call, (grpc_status_code)efs_rpc_errno_status(err),
					     why ? why : "", NULL);
	}
	pthread_mutex_unlock(&c->lock);
	return r;
}

const char *efs_rpc_call_peer(const struct efs_rpc_call *c)
{
	return c->peer;
}

/* ---- client ---- */

struct efs_rpc_stream {
	grpc_channel *channel;
	grpc_completion_queue *cq;
	grpc_call *call;
	grpc_metadata auth_md;
	bool has_auth;
	grpc_metadata_array initial_md, trailing_md;
	grpc_status_code status;
	grpc_slice status_details;
	grpc_byte_buffer *recv_bb, *send_bb;
	int pending; /* batches in flight */
	bool meta_done, status_done, send_busy, send_failed, recv_busy, recv_end;
	struct tag t_meta, t_status, t_send, t_recv;
};

/* Waits for one event until @deadline_ms (efs_mono_ms clock). False on
 * timeout. */
static bool client_pump(struct efs_rpc_stream *s, int64_t deadline_ms)
{
	int64_t wait = deadline_ms - efs_mono_ms();
	gpr_timespec until = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
					  gpr_time_from_millis(wait > 0 ? wait : 0, GPR_TIMESPAN));
	grpc_event ev = grpc_completion_queue_next(s->cq, until, NULL);
	if (ev.type != GRPC_OP_COMPLETE)
		return false;
	struct tag *t = ev.tag;
	s->pending--;
	switch (t->kind) {
	case T_META:
		s->meta_done = true;
		break;
	case T_STATUS:
		s->status_done = true;
		break;
	case T_SEND:
		s->send_busy = false;
		grpc_byte_buffer_destroy(s->send_bb);
		s->send_bb = NULL;
		if (!ev.success)
			s->send_failed = true;
		break;
	case T_RECV:
		s->recv_busy = false;
		if (!ev.success || !s->recv_bb)
			s->recv_end = true;
		break;
	default:
		break;
	}
	return true;
}

/* The stream has ended (or a write failed): waits until @deadline_ms for
 * its status, which says why, and returns -EPIPE. */
static int ended(struct efs_rpc_stream *s, int64_t deadline_ms)
{
	while (!s->status_done && client_pump(s, deadline_ms))
		;
	return -EPIPE;
}

static bool client_start(struct efs_rpc_stream *s, const grpc_op *ops, size_t n, struct tag *t)
{
	if (grpc_call_start_batch(s->call, ops, n, t, NULL) != GRPC_CALL_OK)
		return false;
	s->pending++;
	return true;
}

static void client_post_recv(struct efs_rpc_stream *s)
{
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &s->recv_bb;
	s->recv_busy = client_start(s, &op, 1, &s->t_recv);
	if (!s->recv_busy)
		s->recv_end = true;
}

static int stream_open(const char *target, const char *path, const char *authorization,
		       bool tls, const char *ca_file, int64_t timeout_ms,
		       struct efs_rpc_stream **out, char *why, size_t why_size)
{
	struct efs_rpc_stream *s;
	grpc_channel_credentials *creds;
	char *ca = NULL;
	grpc_arg args[CHANNEL_ARGS + 1];
	grpc_channel_args list;
	int r = 0;

	if (why && why_size)
		why[0] = '\0';
	if (tls && ca_file && (r = read_pem(ca_file, &ca)) < 0)
		return r;
	if (!(s = calloc(1, sizeof(*s)))) {
		free(ca);
		return -ENOMEM;
	}
	grpc_init();
	s->t_meta.kind = T_META;
	s->t_status.kind = T_STATUS;
	s->t_send.kind = T_SEND;
	s->t_recv.kind = T_RECV;
	grpc_metadata_array_init(&s->initial_md);
	grpc_metadata_array_init(&s->trailing_md);
	channel_args(args, &list, EFS_RPC_MESSAGE_MAX, false);
	/* Each stream its own connection, never one shared by grpc among the
	 * process's channels to the same target (one worker has one stream;
	 * bench/grpc_sim_client.c has a thousand, as a thousand workers). */
	args[list.num_args].type = GRPC_ARG_INTEGER;
	args[list.num_args].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
	args[list.num_args].value.integer = 1;
	list.num_args++;
	creds = tls ? grpc_ssl_credentials_create(ca, NULL, NULL, NULL)
		    : grpc_insecure_credentials_create();
	free(ca);
	s->channel = grpc_channel_create(target, creds, &list);
	grpc_channel_credentials_release(creds);
	s->cq = grpc_completion_queue_create_for_next(NULL);
	s->call = grpc_channel_create_call(s->channel, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq,
					   grpc_slice_from_static_string(path), NULL,
					   gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	if (!s->call) {
		r = -EINVAL;
		goto fail;
	}
	grpc_op ops[2];
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	if (authorization) {
		s->auth_md.key = grpc_slice_from_static_string("authorization");
		s->auth_md.value = grpc_slice_from_copied_string(authorization);
		s->has_auth = true;
		ops[0].data.send_initial_metadata.count = 1;
		ops[0].data.send_initial_metadata.metadata = &s->auth_md;
	}
	ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[1].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
	bool ok = client_start(s, ops, 2, &s->t_meta);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.trailing_metadata = &s->trailing_md;
	ops[0].data.recv_status_on_client.status = &s->status;
	ops[0].data.recv_status_on_client.status_details = &s->status_details;
	ok = ok && client_start(s, ops, 1, &s->t_status);
	if (!ok) {
		r = -EIO;
		goto fail;
	}
	client_post_recv(s);
	int64_t deadline = efs_mono_ms() + timeout_ms;
	while (!s->meta_done && !s->status_done && client_pump(s, deadline))
		;
	/* headers then an immediate status: a refusal (trailers only) */
	while (s->meta_done && !s->status_done && client_pump(s, efs_mono_ms()))
		;
	if (s->status_done || !s->meta_done) {
		r = s->status_done ? efs_rpc_stream_error(s, why, why_size) : -ETIMEDOUT;
		if (r == 0)
			r = -EPIPE;
		goto fail;
	}
	*out = s;
	return 0;
fail:
	efs_rpc_stream_close(s);
	return r;
}

int efs_rpc_stream_open(const char *target, const char *path, const char *authorization,
			int64_t timeout_ms, struct efs_rpc_stream **out, char *why, size_t why_size)
{
	return stream_open(target, path, authorization, false, NULL, timeout_ms, out, why,
			   why_size);
}

int efs_rpc_stream_open_tls(const char *target, const char *path, const char *authorization,
			    const char *ca_file, int64_t timeout_ms, struct efs_rpc_stream **out,
			    char *why, size_t why_size)
{
	return stream_open(target, path, authorization, true, ca_file, timeout_ms, out, why,
			   why_size);
}

int efs_rpc_stream_send(struct efs_rpc_stream *s, const void *data, size_t len, int64_t timeout_ms)
{
	int64_t deadline = efs_mono_ms() + timeout_ms;
	if (len > EFS_RPC_MESSAGE_MAX)
		return -EMSGSIZE;
	while (s->send_busy && client_pump(s, deadline))
		;
	if (s->status_done || s->send_failed)
		return ended(s, deadline);
	if (s->send_busy)
		return -ETIMEDOUT;
	grpc_op op;
	memset(&op, 0, sizeof(op));
	s->send_bb = wrap(data, len);
	if (!s->send_bb)
		return -ENOMEM;
	op.op = GRPC_OP_SEND_MESSAGE;
	op.data.send_message.send_message = s->send_bb;
	s->send_busy = client_start(s, &op, 1, &s->t_send);
	if (!s->send_busy) {
		grpc_byte_buffer_destroy(s->send_bb);
		s->send_bb = NULL;
		return -EPIPE;
	}
	/* its own completion, even when the status came first: it was written
	 * (0) or it was not (-EPIPE) */
	while (s->send_busy && client_pump(s, deadline))
		;
	if (s->send_failed)
		return ended(s, deadline);
	return s->send_busy ? -ETIMEDOUT : 0;
}

int efs_rpc_stream_recv(struct efs_rpc_stream *s, int64_t timeout_ms, struct efs_buf *out)
{
	int64_t deadline = efs_mono_ms() + timeout_ms;
	for (;;) {
		if (!s->recv_busy && s->recv_bb) {
			size_t len = 0;
			uint8_t *data = flatten(s->recv_bb, &len);
			grpc_byte_buffer_destroy(s->recv_bb);
			s->recv_bb = NULL;
			if (!s->status_done)
				client_post_recv(s);
			if (!data)
				return -ENOMEM;
			efs_buf_reset(out);
			int r = efs_buf_append(out, data, len);
			free(data);
			return r < 0 ? -EMSGSIZE : 1;
		}
		if (s->recv_end || s->status_done || s->send_failed)
			return ended(s, deadline);
		if (!client_pump(s, deadline))
			return 0;
	}
}

int efs_rpc_stream_error(const struct efs_rpc_stream *s, char *why, size_t why_size)
{
	if (why && why_size)
		why[0] = '\0';
	if (!s->status_done)
		return (s->recv_end || s->send_failed) ? -EPIPE : 0;
	if (why && why_size) {
		size_t n = GRPC_SLICE_LENGTH(s->status_details);
		n = n < why_size - 1 ? n : why_size - 1;
		memcpy(why, GRPC_SLICE_START_PTR(s->status_details), n);
		why[n] = '\0';
	}
	int r = efs_rpc_status_errno(s->status);
	return r == 0 ? -EPIPE : r;
}

void efs_rpc_stream_close(struct efs_rpc_stream *s)
{
	if (!s)
		return;
	if (s->call) {
		if (!s->status_done)
			grpc_call_cancel(s->call, NULL);
		while (s->pending > 0) /* cancelled: each completes promptly */
			client_pump(s, efs_mono_ms() + 1000);
		grpc_call_unref(s->call);
	}
	grpc_byte_buffer_destroy(s->recv_bb);
	grpc_completion_queue_shutdown(s->cq);
	while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(s->cq);
	grpc_channel_destroy(s->channel);
	grpc_metadata_array_destroy(&s->initial_md);
	grpc_metadata_array_destroy(&s->trailing_md);
	if (s->status_done)
		grpc_slice_unref(s->status_details);
	if (s->has_auth)
		grpc_slice_unref(s->auth_md.value);
	free(s);
	grpc_shutdown();
}
