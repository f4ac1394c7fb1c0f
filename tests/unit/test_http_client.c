/* SPDX-License-Identifier: MIT */
/* test_http_client.c - unit tests of connection reuse in http_client.h.
 *
 * A tiny HTTP/1.1 server on loopback (raw sockets, one thread per
 * connection) counts the connections it accepts and the requests it
 * answers, so the tests see from the server's side whether calls reuse
 * keep-alive connections: parallel calls (replica writes) across calls,
 * single calls too, a connection the server closed is replaced and the
 * request sent again with its body, and a connection whose transfer timed
 * out is never reused. It also checks what the server receives: bodies of
 * every size whole (small ones go inline with the request head, larger
 * ones through libcurl's read callback), the method unchanged, no
 * Content-Type the caller did not ask for, and an error status reported.
 * A reply that trickles in is given up by the min_speed rule.
 *
 * Every test runs twice: through libcurl, and with direct_body (bodies of
 * every size, 0 bytes included, sent from the caller's buffer on the
 * client's own connections), where the replies are also chunked, preceded
 * by a 100 Continue, sent before the body was read, or ended by a close. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "echofs/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS 64
#define BODY_LEN (64 * 1024)
#define BODY_MAX (256 * 1024) /* several of libcurl's 64 KiB upload buffers */

enum server_mode {
	ANSWER,            /* answer every request */
	DROP_SECOND,       /* read the 2nd request on a connection, then close it unanswered */
	SLOW_FIRST,        /* answer the very first request only after 1 s */
	FAIL,              /* answer every request with a 500 */
	SLOW_REPLY,        /* answer 200 with SLOW_REPLY_LEN bytes, 16 KiB every 100 ms */
	CHUNKED,           /* answer 201 "ok" in a chunked body, with a trailer */
	CONTINUE,          /* a 100 Continue with a header, then the 201 */
	UNTIL_CLOSE,       /* answer 201 "ok" without a length, then close */
	EARLY,             /* read the head only, answer 413 and close */
	SERVE_GET,         /* answer "GET /chunks/N" with N pattern bytes (get_byte), a PUT with 201 */
	WAIT_RELEASE,      /* answer once release is set (at most 5 s; release_seen says which) */
};

#define SLOW_REPLY_LEN (256 * 1024)

struct server {
	int listen_fd;
	uint16_t port;
	enum server_mode mode;
	pthread_t acceptor;
	atomic_int accepted;
	atomic_int answered;
	atomic_int bad_bodies; /* requests whose body was not Content-Length bytes of 'x' */
	atomic_int not_put;    /* requests whose method was not PUT */
	atomic_int typed;      /* requests with a Content-Type header */
	atomic_llong body_bytes; /* body bytes received, all requests */
	atomic_bool slow_done;  /* SLOW_FIRST: the slow answer has been decided */
	atomic_bool release;      /* WAIT_RELEASE: answer now */
	atomic_bool release_seen; /* WAIT_RELEASE: answered because of it, not the 5 s */
	pthread_mutex_t lock;
	int fds[MAX_CONNS];
	pthread_t threads[MAX_CONNS];
	int conn_count;
};

struct conn {
	struct server *srv;
	int fd;
};

/* Reads one request (headers, then Content-Length bytes of body). 1 when
 * one was read, 0 at EOF, -1 on error. */
/* The client every test's calls run on, as a master's do. */
static struct efs_http_client *client;
/* The calls of this round set direct_body. */
static bool use_direct;

/* Byte @i of a SERVE_GET body: a pattern, so a byte out of place shows. */
static char get_byte(size_t i)
{
	return (char)('a' + (i * 7) % 23);
}

/* @asked: the N of a "GET /chunks/N" request, else -1. */
static int read_request(struct server *srv, int fd, long *asked)
{
	char head[8192];
	size_t used = 0;
	char *end = NULL;
	while (!end) {
		if (used == sizeof(head) - 1)
			return -1;
		ssize_t n = recv(fd, head + used, sizeof(head) - 1 - used, 0);
		if (n <= 0)
			return used == 0 ? 0 : -1;
		used += (size_t)n;
		head[used] = '\0';
		end = strstr(head, "\r\n\r\n");
	}
	size_t header_len = (size_t)(end + 4 - head);
	size_t content_length = 0;
	*asked = strncmp(head, "GET /chunks/", 12) == 0 ? strtol(head + 12, NULL, 10) : -1;
	if (strncmp(head, "PUT ", 4) != 0)
		atomic_fetch_add(&srv->not_put, 1);
	for (char *line = strstr(head, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n")) {
		if (strncasecmp(line + 2, "Content-Length:", 15) == 0)
			content_length = strtoul(line + 17, NULL, 10);
		if (strncasecmp(line + 2, "Content-Type:", 13) == 0)
			atomic_fetch_add(&srv->typed, 1);
	}
	size_t have = used - header_len;
	bool good = true;
	for (size_t i = 0; i < have; i++)
		good = good && head[header_len + i] == 'x';
	char body[4096];
	while (have < content_length) {
		ssize_t n = recv(fd, body, EFS_MIN(sizeof(body), content_length - have), 0);
		if (n <= 0)
			return -1;
		for (ssize_t i = 0; i < n; i++)
			good = good && body[i] == 'x';
		have += (size_t)n;
	}
	if (!good || have != content_length)
		atomic_fetch_add(&srv->bad_bodies, 1);
	atomic_fetch_add(&srv->body_bytes, (long long)have);
	return 1;
}

/* Reads a request head only (EARLY); false at EOF. */
static bool read_head_only(int fd)
{
	char head[8192];
	size_t used = 0;
	while (used < sizeof(head) - 1) {
		ssize_t n = recv(fd, head + used, 1, 0);
		if (n <= 0)
			return false;
		used += (size_t)n;
		head[used] = '\0';
		if (used >= 4 && memcmp(head + used - 4, "\r\n\r\n", 4) == 0)
			return true;
	}
	return false;
}

/* The reply of modes that only change its form. */
static const char *form_reply(enum server_mode mode)
{
	switch (mode) {
	case CHUNKED:
		return "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-Answer: chunked\r\n\r\n"
		       "1\r\no\r\n1;ext=1\r\nk\r\n0\r\nX-Trailer: t\r\n\r\n";
	case CONTINUE:
		return "HTTP/1.1 100 Continue\r\nX-Interim: yes\r\n\r\n"
		       "HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-Answer: final\r\n\r\nok";
	case UNTIL_CLOSE:
		return "HTTP/1.1 201 Created\r\nConnection: close\r\n\r\nok";
	default:
		return NULL;
	}
}

static void *serve_conn(void *arg)
{
	struct conn *c = arg;
	if (c->srv->mode == EARLY) {
		static const char early[] = "HTTP/1.1 413 Payload Too Large\r\n"
					    "Content-Length: 8\r\nConnection: close\r\n\r\ntoo big!";
		if (read_head_only(c->fd)) {
			atomic_fetch_add(&c->srv->answered, 1);
			send(c->fd, early, sizeof(early) - 1, MSG_NOSIGNAL);
		}
		shutdown(c->fd, SHUT_WR);
		/* Drain what comes (as a server does before it closes), so the
		 * client sees the reply rather than a reset. */
		char sink[4096];
		while (recv(c->fd, sink, sizeof(sink), 0) > 0)
			;
		shutdown(c->fd, SHUT_RDWR);
		free(c);
		return NULL;
	}
	static const char reply[] = "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
	static const char failure[] = "HTTP/1.1 500 Internal Server Error\r\n"
				      "Content-Length: 4\r\n\r\nfail";
	for (int n = 1;; n++) {
		long asked = -1;
		if (read_request(c->srv, c->fd, &asked) <= 0)
			break;
		if (c->srv->mode == DROP_SECOND && n == 2)
			break;
		if (c->srv->mode == SLOW_FIRST && !atomic_exchange(&c->srv->slow_done, true))
			usleep(1000 * 1000);
		if (c->srv->mode == WAIT_RELEASE) {
			for (int waited = 0; waited < 500 && !atomic_load(&c->srv->release); waited++)
				usleep(10 * 1000);
			atomic_store(&c->srv->release_seen, atomic_load(&c->srv->release));
		}
		if (c->srv->mode == SLOW_REPLY) {
			static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 262144\r\n\r\n";
			static char piece[16384];
			bool sent = send(c->fd, head, sizeof(head) - 1, MSG_NOSIGNAL) > 0;
			memset(piece, 'y', sizeof(piece));
			for (size_t left = SLOW_REPLY_LEN; sent && left > 0; left -= sizeof(piece)) {
				usleep(100 * 1000);
				sent = send(c->fd, piece, sizeof(piece), MSG_NOSIGNAL) ==
				       (ssize_t)sizeof(piece);
			}
			atomic_fetch_add(&c->srv->answered, sent);
			if (!sent)
				break;
			continue;
		}
		/* Counted before the client can see the answer. */
		atomic_fetch_add(&c->srv->answered, 1);
		if (c->srv->mode == SERVE_GET && asked >= 0) {
			/* The head with the first bytes, then the rest: the
			 * client sees a body cut anywhere. */
			char head[128];
			int head_len = snprintf(head, sizeof(head),
						"HTTP/1.1 200 OK\r\nContent-Length: %ld\r\n"
						"X-Chunk-Encoding: identity\r\n\r\n",
						asked);
			char *reply_buf = malloc((size_t)head_len + (size_t)asked);
			assert_non_null(reply_buf);
			memcpy(reply_buf, head, (size_t)head_len);
			for (long i = 0; i < asked; i++)
				reply_buf[head_len + i] = get_byte((size_t)i);
			size_t first = (size_t)head_len + (size_t)EFS_MIN(asked, 100);
			size_t total = (size_t)head_len + (size_t)asked;
			bool sent = send(c->fd, reply_buf, first, MSG_NOSIGNAL) == (ssize_t)first;
			for (size_t off = first; sent && off < total;) {
				ssize_t k = send(c->fd, reply_buf + off, total - off, MSG_NOSIGNAL);
				sent = k > 0;
				off += sent ? (size_t)k : 0;
			}
			free(reply_buf);
			if (!sent)
				break;
			continue;
		}
		const char *form = form_reply(c->srv->mode);
		if (form) {
			if (send(c->fd, form, strlen(form), MSG_NOSIGNAL) < 0 ||
			    c->srv->mode == UNTIL_CLOSE)
				break;
			continue;
		}
		bool fail = c->srv->mode == FAIL;
		if (send(c->fd, fail ? failure : reply, (fail ? sizeof(failure) : sizeof(reply)) - 1,
			 MSG_NOSIGNAL) < 0)
			break;
	}
	shutdown(c->fd, SHUT_RDWR);
	free(c);
	return NULL;
}

static void *accept_loop(void *arg)
{
	struct server *srv = arg;
	for (;;) {
		int fd = accept(srv->listen_fd, NULL, NULL);
		if (fd < 0)
			break;
		atomic_fetch_add(&srv->accepted, 1); /* before anything is answered on it */
		pthread_mutex_lock(&srv->lock);
		struct conn *c = malloc(sizeof(*c));
		if (!c || srv->conn_count == MAX_CONNS) {
			pthread_mutex_unlock(&srv->lock);
			free(c);
			close(fd);
			continue;
		}
		c->srv = srv;
		c->fd = fd;
		srv->fds[srv->conn_count] = fd;
		pthread_create(&srv->threads[srv->conn_count], NULL, serve_conn, c);
		srv->conn_count++;
		pthread_mutex_unlock(&srv->lock);
	}
	return NULL;
}

static void server_start(struct server *srv, enum server_mode mode)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	memset(srv, 0, sizeof(*srv));
	srv->mode = mode;
	pthread_mutex_init(&srv->lock, NULL);
	srv->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(srv->listen_fd >= 0);
	assert_int_equal(bind(srv->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(srv->listen_fd, 64), 0);
	getsockname(srv->listen_fd, (struct sockaddr *)&sa, &len);
	srv->port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&srv->acceptor, NULL, accept_loop, srv), 0);
}

/* Closes every connection (the client's pooled ones go dead) and stops. */
static void server_stop(struct server *srv)
{
	shutdown(srv->listen_fd, SHUT_RDWR);
	pthread_join(srv->acceptor, NULL);
	close(srv->listen_fd);
	for (int i = 0; i < srv->conn_count; i++) {
		shutdown(srv->fds[i], SHUT_RDWR);
		pthread_join(srv->threads[i], NULL);
		close(srv->fds[i]);
	}
	pthread_mutex_destroy(&srv->lock);
}

static char body[BODY_MAX];

static void put_init(struct efs_http_call *call, char *url, size_t url_len,
		     const struct server *srv, int n)
{
	snprintf(url, url_len, "http://127.0.0.1:%u/chunks/%d", srv->port, n);
	efs_http_call_init(call, "PUT", url);
	call->body = body;
	call->body_len = BODY_LEN;
	call->stall_timeout_s = 3;
	call->direct_body = use_direct;
}

/* Sizes on both sides of the inline limit and of libcurl's buffer. */
static const size_t body_sizes[] = {0, 1, 4096, BODY_LEN - 1, BODY_LEN, BODY_LEN + 1, BODY_MAX};

/* Every size arrives whole, as a PUT without a Content-Type, all on the
 * one kept-alive connection (inline and streamed bodies alternate on it;
 * with direct_body every size goes direct: when bodies under 64 KiB still
 * went through libcurl, the server saw a second connection). */
static void test_bodies_of_every_size_arrive_whole(void **state)
{
	struct server srv;
	long long sent = 0;
	server_start(&srv, ANSWER);
	for (int round = 0; round < 2; round++) {
		for (size_t i = 0; i < EFS_ARRAY_SIZE(body_sizes); i++) {
			struct efs_http_call call;
			char url[64];
			put_init(&call, url, sizeof(url), &srv, (int)i);
			call.body_len = body_sizes[i];
			assert_int_equal(efs_http_call_run(client, &call), 0);
			assert_int_equal(call.status, 201);
			assert_string_equal(call.resp.data, "ok");
			efs_http_call_release(&call);
			sent += (long long)body_sizes[i];
		}
	}
	assert_int_equal(atomic_load(&srv.answered), 2 * EFS_ARRAY_SIZE(body_sizes));
	assert_int_equal(atomic_load(&srv.bad_bodies), 0);
	assert_int_equal(atomic_load(&srv.not_put), 0);
	assert_int_equal(atomic_load(&srv.typed), 0);
	assert_int_equal(atomic_load(&srv.body_bytes), sent);
	assert_int_equal(atomic_load(&srv.accepted), 1);
	server_stop(&srv);
}

/* A Content-Type the caller asks for is sent, once, with an inline body. */
static void test_inline_body_keeps_the_callers_content_type(void **state)
{
	struct server srv;
	struct efs_http_call call;
	char url[64];
	server_start(&srv, ANSWER);
	put_init(&call, url, sizeof(url), &srv, 1);
	call.body_len = 10;
	call.content_type = "application/json";
	assert_int_equal(efs_http_call_run(client, &call), 0);
	assert_int_equal(call.status, 201);
	efs_http_call_release(&call);
	assert_int_equal(atomic_load(&srv.typed), 1);
	assert_int_equal(atomic_load(&srv.bad_bodies), 0);
	server_stop(&srv);
}

/* A failed write is reported as its status, inline body or not, and the
 * connection stays usable (the 500 came with a complete response). */
static void test_failed_put_is_reported(void **state)
{
	struct server srv;
	server_start(&srv, FAIL);
	for (size_t i = 0; i < EFS_ARRAY_SIZE(body_sizes); i++) {
		struct efs_http_call call;
		char url[64];
		put_init(&call, url, sizeof(url), &srv, (int)i);
		call.body_len = body_sizes[i];
		assert_int_equal(efs_http_call_run(client, &call), 0);
		assert_int_equal(call.status, 500);
		assert_string_equal(call.resp.data, "fail");
		efs_http_call_release(&call);
	}
	assert_int_equal(atomic_load(&srv.bad_bodies), 0);
	assert_int_equal(atomic_load(&srv.accepted), 1);
	server_stop(&srv);
}

/* test_closed_connection_is_replaced with a small body: libcurl (inline)
 * or the direct path sends it again on the new connection. */
static void test_closed_connection_is_replaced_inline(void **state)
{
	struct server srv;
	server_start(&srv, DROP_SECOND);
	for (int n = 0; n < 3; n++) {
		struct efs_http_call call;
		char url[64];
		put_init(&call, url, sizeof(url), &srv, n);
		call.body_len = 4096;
		assert_int_equal(efs_http_call_run(client, &call), 0);
		assert_int_equal(call.status, 201);
		efs_http_call_release(&call);
	}
	assert_int_equal(atomic_load(&srv.answered), 3);
	assert_int_equal(atomic_load(&srv.accepted), 3);
	assert_int_equal(atomic_load(&srv.bad_bodies), 0);
	server_stop(&srv);
}

/* Three servers stand for three workers: twenty rounds of three parallel
 * writes open three connections, not sixty; single calls share them. */
static void test_parallel_calls_reuse_connections(void **state)
{
	struct server srv[3];
	uint64_t opened = efs_http_client_connections_opened(client);
	for (int i = 0; i < 3; i++)
		server_start(&srv[i], ANSWER);
	for (int round = 0; round < 20; round++) {
		struct efs_http_call calls[3], *callp[3];
		char urls[3][64];
		for (int i = 0; i < 3; i++) {
			put_init(&calls[i], urls[i], sizeof(urls[i]), &srv[i], round);
			callp[i] = &calls[i];
		}
		assert_int_equal(efs_http_call_run_parallel(client, callp, 3), 0);
		for (int i = 0; i < 3; i++) {
			assert_int_equal(calls[i].error, 0);
			assert_int_equal(calls[i].status, 201);
			assert_string_equal(calls[i].resp.data, "ok");
			efs_http_call_release(&calls[i]);
		}
	}
	for (int i = 0; i < 3; i++) {
		struct efs_http_call call;
		char url[64];
		put_init(&call, url, sizeof(url), &srv[i], 99);
		assert_int_equal(efs_http_call_run(client, &call), 0);
		assert_int_equal(call.status, 201);
		efs_http_call_release(&call);
	}
	for (int i = 0; i < 3; i++) {
		assert_int_equal(atomic_load(&srv[i].answered), 21);
		assert_int_equal(atomic_load(&srv[i].accepted), 1);
		assert_int_equal(atomic_load(&srv[i].bad_bodies), 0);
		server_stop(&srv[i]);
	}
	assert_int_equal(efs_http_client_connections_opened(client) - opened, 3);
}

/* on_done of a parallel run's call comes when that call ends, not when the
 * run does: the first call's on_done releases the second's server, which
 * otherwise holds its answer for 5 s (past the 3 s stall rule: the second
 * call would fail). Each on_done comes once. */
static atomic_int done_calls;

static void release_other(struct efs_http_call *call, void *ctx)
{
	struct server *held = ctx;
	assert_int_equal(call->status, 201);
	atomic_store(&held->release, true);
	atomic_fetch_add(&done_calls, 1);
}

static void count_done(struct efs_http_call *call, void *ctx)
{
	(void)call;
	(void)ctx;
	atomic_fetch_add(&done_calls, 1);
}

static void test_on_done_comes_as_each_parallel_call_ends(void **state)
{
	struct server fast, held;
	struct efs_http_call calls[2], *callp[2] = {&calls[0], &calls[1]};
	char urls[2][64];
	server_start(&fast, ANSWER);
	server_start(&held, WAIT_RELEASE);
	atomic_store(&done_calls, 0);
	put_init(&calls[0], urls[0], sizeof(urls[0]), &fast, 1);
	calls[0].on_done = release_other;
	calls[0].on_done_ctx = &held;
	put_init(&calls[1], urls[1], sizeof(urls[1]), &held, 2);
	calls[1].on_done = count_done;
	assert_int_equal(efs_http_call_run_parallel(client, callp, 2), 0);
	assert_int_equal(calls[0].status, 201);
	assert_int_equal(calls[1].error, 0);
	assert_int_equal(calls[1].status, 201);
	assert_true(atomic_load(&held.release_seen));
	assert_int_equal(atomic_load(&done_calls), 2);
	for (int i = 0; i < 2; i++)
		efs_http_call_release(&calls[i]);
	server_stop(&fast);
	server_stop(&held);
}

/* Two clients share no connection: a server called through both sees two,
 * and each client counts only its own. */
static void test_clients_keep_their_own_connections(void **state)
{
	struct efs_http_client *a = NULL, *b = NULL;
	struct server srv;
	assert_int_equal(efs_http_client_new(&a), 0);
	assert_int_equal(efs_http_client_new(&b), 0);
	server_start(&srv, ANSWER);
	for (int round = 0; round < 4; round++) {
		struct efs_http_call call;
		char url[64];
		put_init(&call, url, sizeof(url), &srv, round);
		assert_int_equal(efs_http_call_run(round % 2 ? b : a, &call), 0);
		assert_int_equal(call.status, 201);
		efs_http_call_release(&call);
	}
	assert_int_equal(atomic_load(&srv.answered), 4);
	assert_int_equal(atomic_load(&srv.accepted), 2);
	assert_int_equal(efs_http_client_connections_opened(a), 1);
	assert_int_equal(efs_http_client_connections_opened(b), 1);
	server_stop(&srv);
	efs_http_client_free(a);
	efs_http_client_free(b);
	efs_http_client_free(NULL);
}

/* The server closes a kept-alive connection on the next request without
 * answering: the request goes again on a new connection, with its whole
 * body (rewound), and succeeds. */
static void test_closed_connection_is_replaced(void **state)
{
	struct server srv;
	server_start(&srv, DROP_SECOND);
	for (int n = 0; n < 3; n++) {
		struct efs_http_call call;
		char url[64];
		put_init(&call, url, sizeof(url), &srv, n);
		assert_int_equal(efs_http_call_run(client, &call), 0);
		assert_int_equal(call.status, 201);
		efs_http_call_release(&call);
	}
	/* 1st on connection 1; 2nd dropped there, answered on connection 2;
	 * 3rd dropped there, answered on connection 3. */
	assert_int_equal(atomic_load(&srv.answered), 3);
	assert_int_equal(atomic_load(&srv.accepted), 3);
	assert_int_equal(atomic_load(&srv.bad_bodies), 0);
	server_stop(&srv);
}

/* A call that times out leaves its connection closed: the next call gets a
 * new connection and its own answer, not the late answer to the first. */
static void test_timed_out_connection_is_not_reused(void **state)
{
	struct server srv;
	struct efs_http_call call;
	char url[64];
	server_start(&srv, SLOW_FIRST);
	put_init(&call, url, sizeof(url), &srv, 1);
	call.timeout_ms = 200;
	assert_int_equal(efs_http_call_run(client, &call), -ETIMEDOUT);
	assert_int_equal(call.status, 0);
	efs_http_call_release(&call);

	put_init(&call, url, sizeof(url), &srv, 2);
	assert_int_equal(efs_http_call_run(client, &call), 0);
	assert_int_equal(call.status, 201);
	assert_string_equal(call.resp.data, "ok");
	efs_http_call_release(&call);
	assert_int_equal(atomic_load(&srv.accepted), 2);
	server_stop(&srv);
}

/* A reply that trickles in (160 KiB/s): given up as too slow after the
 * stall window when min_speed asks for more, whole when it asks for less,
 * and the stall rule alone never gives it up (bytes keep moving). */
static void test_min_speed_gives_up_a_trickling_transfer(void **state)
{
	struct server srv;
	struct efs_http_call call;
	char url[64];
	server_start(&srv, SLOW_REPLY);

	put_init(&call, url, sizeof(url), &srv, 1);
	call.stall_timeout_s = 1;
	call.min_speed = 1024 * 1024;
	assert_int_equal(efs_http_call_run(client, &call), -ETIMEDOUT);
	assert_true(call.too_slow);
	assert_int_equal(call.status, 0);
	assert_non_null(strstr(call.errmsg, "too slow"));
	efs_http_call_release(&call);

	put_init(&call, url, sizeof(url), &srv, 2);
	call.stall_timeout_s = 1;
	call.min_speed = 32 * 1024;
	assert_int_equal(efs_http_call_run(client, &call), 0);
	assert_false(call.too_slow);
	assert_int_equal(call.status, 200);
	assert_int_equal(call.resp.len, SLOW_REPLY_LEN);
	efs_http_call_release(&call);

	put_init(&call, url, sizeof(url), &srv, 3);
	call.stall_timeout_s = 1; /* min_speed 0: the stall rule only */
	assert_int_equal(efs_http_call_run(client, &call), 0);
	assert_false(call.too_slow);
	assert_int_equal(call.resp.len, SLOW_REPLY_LEN);
	efs_http_call_release(&call);
	server_stop(&srv);
}

/* Replies in other forms arrive whole: chunked (with an extension and a
 * trailer) and after an interim 100 on one kept connection; a reply that
 * ends with the connection, on a new connection each time. The headers
 * of every response are seen, the interim's too. */
static int count_header(void *ctx, const char *name, size_t name_len, const char *value,
			size_t value_len)
{
	int *count = ctx;
	(*count)++;
	return 0;
}

static void test_reply_forms(void **state)
{
	static const enum server_mode modes[] = {CHUNKED, CONTINUE, UNTIL_CLOSE};
	static const char *const answers[] = {"chunked", "final", ""};
	for (size_t m = 0; m < EFS_ARRAY_SIZE(modes); m++) {
		struct server srv;
		server_start(&srv, modes[m]);
		for (int n = 0; n < 2; n++) {
			struct efs_http_call call;
			char url[64];
			int headers = 0;
			put_init(&call, url, sizeof(url), &srv, n);
			call.capture_header = "X-Answer";
			call.header_fn = count_header;
			call.header_ctx = &headers;
			assert_int_equal(efs_http_call_run(client, &call), 0);
			assert_int_equal(call.status, 201);
			assert_string_equal(call.resp.data, "ok");
			assert_string_equal(call.captured, answers[m]);
			assert_true(headers >= (modes[m] == CONTINUE ? 3 : 1));
			efs_http_call_release(&call);
		}
		assert_int_equal(atomic_load(&srv.answered), 2);
		assert_int_equal(atomic_load(&srv.bad_bodies), 0);
		assert_int_equal(atomic_load(&srv.accepted), modes[m] == UNTIL_CLOSE ? 2 : 1);
		server_stop(&srv);
	}
}

/* A server that answers before it has read the body (and closes) gives
 * the call its status, not a send error; the body is not sent again. */
static void test_early_reply_is_the_answer(void **state)
{
	struct server srv;
	server_start(&srv, EARLY);
	for (int n = 0; n < 2; n++) {
		struct efs_http_call call;
		char url[64];
		put_init(&call, url, sizeof(url), &srv, n);
		call.body_len = BODY_MAX;
		assert_int_equal(efs_http_call_run(client, &call), 0);
		assert_int_equal(call.status, 413);
		assert_string_equal(call.resp.data, "too big!");
		efs_http_call_release(&call);
	}
	assert_int_equal(atomic_load(&srv.answered), 2);
	assert_int_equal(atomic_load(&srv.accepted), 2);
	server_stop(&srv);
}

/* GETs (a master's chunk reads) of every size come back whole, on the
 * connection a PUT to the same server used: with direct_body that is the
 * direct path's (the reply body received straight into call->resp), so one
 * connection in both rounds; when direct_body GETs still went through
 * libcurl, the direct round saw two. A reply over the call's cap is
 * -E2BIG, and a reused connection the server closed is replaced. */
static void test_get_bodies_of_every_size(void **state)
{
	static const size_t sizes[] = {0, 1, 100, 4096, 16383, 16384, 16385, BODY_MAX, 1048576};
	struct server srv;
	struct efs_http_call call;
	char url[64];
	server_start(&srv, SERVE_GET);
	put_init(&call, url, sizeof(url), &srv, 0);
	call.body_len = 4096;
	assert_int_equal(efs_http_call_run(client, &call), 0);
	assert_int_equal(call.status, 201);
	efs_http_call_release(&call);
	for (int round = 0; round < 2; round++) {
		for (size_t i = 0; i < EFS_ARRAY_SIZE(sizes); i++) {
			snprintf(url, sizeof(url), "http://127.0.0.1:%u/chunks/%zu", srv.port, sizes[i]);
			efs_http_call_init(&call, "GET", url);
			call.direct_body = use_direct;
			call.stall_timeout_s = 3;
			call.resp_cap = sizes[i] + round; /* exactly the body, then one more */
			call.capture_header = "X-Chunk-Encoding";
			assert_int_equal(efs_http_call_run(client, &call), 0);
			assert_int_equal(call.status, 200);
			assert_string_equal(call.captured, "identity");
			assert_int_equal(call.resp.len, sizes[i]);
			for (size_t k = 0; k < sizes[i]; k++)
				if (call.resp.data[k] != get_byte(k))
					fail_msg("byte %zu of %zu is wrong", k, sizes[i]);
			if (call.resp.data)
				assert_int_equal(call.resp.data[call.resp.len], '\0');
			efs_http_call_release(&call);
		}
	}
	assert_int_equal(atomic_load(&srv.accepted), 1);
	/* Over the cap: -E2BIG, and that connection is not kept. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/chunks/%d", srv.port, BODY_MAX);
	efs_http_call_init(&call, "GET", url);
	call.direct_body = use_direct;
	call.resp_cap = BODY_MAX - 1;
	assert_int_equal(efs_http_call_run(client, &call), -E2BIG);
	assert_int_equal(call.status, 0);
	efs_http_call_release(&call);
	server_stop(&srv);

	/* A kept connection closed by the server: the GET goes again on a
	 * new one (DROP_SECOND reads the second request, then closes). */
	server_start(&srv, DROP_SECOND);
	for (int n = 0; n < 3; n++) {
		snprintf(url, sizeof(url), "http://127.0.0.1:%u/x/%d", srv.port, n);
		efs_http_call_init(&call, "GET", url);
		call.direct_body = use_direct;
		assert_int_equal(efs_http_call_run(client, &call), 0);
		assert_int_equal(call.status, 201);
		assert_string_equal(call.resp.data, "ok");
		efs_http_call_release(&call);
	}
	assert_int_equal(atomic_load(&srv.answered), 3);
	assert_int_equal(atomic_load(&srv.accepted), 3);
	server_stop(&srv);
}

/* Nobody listens: -ECONNREFUSED with a message, as through libcurl; a
 * reply over the cap is -E2BIG. */
static void test_refused_and_oversized(void **state)
{
	struct server srv;
	struct efs_http_call call;
	char url[64];
	server_start(&srv, SLOW_REPLY);
	uint16_t port = srv.port;
	put_init(&call, url, sizeof(url), &srv, 1);
	call.resp_cap = 1024;
	assert_int_equal(efs_http_call_run(client, &call), -E2BIG);
	assert_int_equal(call.status, 0);
	efs_http_call_release(&call);
	server_stop(&srv);

	snprintf(url, sizeof(url), "http://127.0.0.1:%u/chunks/x", port);
	efs_http_call_init(&call, "PUT", url);
	call.body = body;
	call.body_len = BODY_LEN;
	call.direct_body = use_direct;
	assert_int_equal(efs_http_call_run(client, &call), -ECONNREFUSED);
	assert_int_equal(call.status, 0);
	assert_true(call.errmsg[0] != '\0');
	efs_http_call_release(&call);
}

static int libcurl_round(void **state)
{
	use_direct = false;
	return 0;
}

static int direct_round(void **state)
{
	use_direct = true;
	return 0;
}

int main(void)
{
	memset(body, 'x', sizeof(body));
	if (efs_http_client_global_init() < 0 || efs_http_client_new(&client) < 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clients_keep_their_own_connections),
		cmocka_unit_test(test_parallel_calls_reuse_connections),
		cmocka_unit_test(test_on_done_comes_as_each_parallel_call_ends),
		cmocka_unit_test(test_closed_connection_is_replaced),
		cmocka_unit_test(test_timed_out_connection_is_not_reused),
		cmocka_unit_test(test_min_speed_gives_up_a_trickling_transfer),
		cmocka_unit_test(test_bodies_of_every_size_arrive_whole),
		cmocka_unit_test(test_inline_body_keeps_the_callers_content_type),
		cmocka_unit_test(test_failed_put_is_reported),
		cmocka_unit_test(test_closed_connection_is_replaced_inline),
		cmocka_unit_test(test_reply_forms),
		cmocka_unit_test(test_early_reply_is_the_answer),
		cmocka_unit_test(test_get_bodies_of_every_size),
		cmocka_unit_test(test_refused_and_oversized),
	};
	int failed = cmocka_run_group_tests_name("libcurl", tests, libcurl_round, NULL);
	failed += cmocka_run_group_tests_name("direct_body", tests, direct_round, NULL);
	efs_http_client_free(client);
	efs_http_client_global_cleanup();
	return failed;
}
