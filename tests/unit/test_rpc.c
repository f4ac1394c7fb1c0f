/* SPDX-License-Identifier: MIT */
/* test_rpc.c - unit tests of rpc.h over loopback: a real grpc server and
 * client stream in one process. Messages round trip; a refused open, an
 * unknown method and a handler's error reach the client as the right
 * errno with the status message; a message over the cap is refused before
 * any callback sees it; close() runs once per accepted call, "broken" when
 * the client cancelled or the server stopped, not when the server ended
 * the call itself. A server that batches its wake-ups (batch_ms) still
 * takes every message of many streams, and every stream's end. */
#include "echofs/rpc.h"
#include "echofs/util.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define SECRET "Bearer s3cret"
#define MAX_MESSAGE 4096

struct counts {
	atomic_int opened, messages, closed, closed_broken, stopping_seen;
	struct efs_rpc_server *server;
};

static struct counts counts;

static int echo_open(void *ctx, struct efs_rpc_call *call, const char *auth, void **state)
{
	if (!auth || strcmp(auth, SECRET) != 0) {
		efs_rpc_call_set_why(call, "no secret");
		return -EACCES;
	}
	atomic_fetch_add(&counts.opened, 1);
	*state = ctx;
	return 0;
}

/* Echoes each message; "bad" ends the call with INVALID_ARGUMENT. */
static int echo_message(void *state, struct efs_rpc_call *call, const uint8_t *data, size_t len)
{
	atomic_fetch_add(&counts.messages, 1);
	if (len == 3 && memcmp(data, "bad", 3) == 0) {
		efs_rpc_call_set_why(call, "bad message");
		return -EINVAL;
	}
	return efs_rpc_call_send(call, data, len);
}

static void echo_close(void *state, bool broken)
{
	if (counts.server && efs_rpc_server_stopping(counts.server))
		atomic_fetch_add(&counts.stopping_seen, 1);
	atomic_fetch_add(broken ? &counts.closed_broken : &counts.closed, 1);
}

/* Counts each message and answers none (a heartbeat stream): nothing
 * sent, so a batching server sleeps between its wake-ups. */
static int sink_message(void *state, struct efs_rpc_call *call, const uint8_t *data, size_t len)
{
	atomic_fetch_add(&counts.messages, 1);
	return 0;
}

static const struct efs_rpc_method methods[] = {
    {"/t.T/Echo", echo_open, echo_message, NULL, echo_close},
    {"/t.T/Sink", echo_open, sink_message, NULL, echo_close},
};

static struct efs_rpc_server *start_batching_server(char *target, size_t size, unsigned batch_ms)
{
	struct efs_rpc_server *s = NULL;
	struct efs_rpc_server_config cfg = {
	    .host = "127.0.0.1",
	    .port = 0,
	    .methods = methods,
	    .method_count = EFS_ARRAY_SIZE(methods),
	    .ctx = &counts,
	    .max_message = MAX_MESSAGE,
	    .batch_ms = batch_ms,
	};
	memset(&counts, 0, sizeof(counts));
	assert_int_equal(efs_rpc_server_start(&cfg, &s), 0);
	assert_true(efs_rpc_server_port(s) > 0);
	snprintf(target, size, "127.0.0.1:%u", efs_rpc_server_port(s));
	counts.server = s;
	return s;
}

static struct efs_rpc_server *start_server(char *target, size_t size)
{
	return start_batching_server(target, size, 0);
}

/* Waits up to 10 s for *@counter to reach @want. */
static void wait_count(atomic_int *counter, int want)
{
	for (int i = 0; i < 1000 && atomic_load(counter) < want; i++)
		usleep(10000);
	assert_int_equal(atomic_load(counter), want);
}

static void test_messages_round_trip_and_cancel_is_broken(void **state)
{
	char target[64];
	struct efs_rpc_server *s = start_server(target, sizeof(target));
	struct efs_rpc_stream *st = NULL;
	struct efs_buf in;
	efs_buf_init(&in, MAX_MESSAGE);

	assert_int_equal(efs_rpc_stream_open(target, "/t.T/Echo", SECRET, 5000, &st, NULL, 0), 0);
	for (int i = 0; i < 20; i++) {
		char text[32];
		int n = snprintf(text, sizeof(text), "message %d", i);
		assert_int_equal(efs_rpc_stream_send(st, text, (size_t)n, 5000), 0);
		assert_int_equal(efs_rpc_stream_recv(st, 5000, &in), 1);
		assert_int_equal(in.len, (size_t)n);
		assert_memory_equal(in.data, text, (size_t)n);
	}
	/* nothing more comes: a timeout, not an end */
	assert_int_equal(efs_rpc_stream_recv(st, 50, &in), 0);
	assert_int_equal(efs_rpc_stream_error(st, NULL, 0), 0);
	efs_rpc_stream_close(st); /* a cancel: the peer went away */
	wait_count(&counts.closed_broken, 1);
	assert_int_equal(atomic_load(&counts.closed), 0);
	assert_int_equal(atomic_load(&counts.opened), 1);
	efs_rpc_server_stop(s);
	efs_buf_release(&in);
}

static void test_refusals_reach_the_client(void **state)
{
	char target[64], why[EFS_RPC_WHY_MAX + 1];
	struct efs_rpc_server *s = start_server(target, sizeof(target));
	struct efs_rpc_stream *st = NULL;

	assert_int_equal(
	    efs_rpc_stream_open(target, "/t.T/Echo", NULL, 5000, &st, why, sizeof(why)), -EACCES);
	assert_string_equal(why, "no secret");
	assert_int_equal(
	    efs_rpc_stream_open(target, "/t.T/Echo", "Bearer wrong", 5000, &st, why, sizeof(why)),
	    -EACCES);
	assert_int_equal(
	    efs_rpc_stream_open(target, "/t.T/Nope", SECRET, 5000, &st, why, sizeof(why)), -ENOSYS);
	assert_int_equal(atomic_load(&counts.opened), 0);
	efs_rpc_server_stop(s);
	/* nobody listens there any more */
	assert_int_equal(
	    efs_rpc_stream_open(target, "/t.T/Echo", SECRET, 5000, &st, why, sizeof(why)),
	    -ECONNREFUSED);
}

static void test_handler_error_ends_the_call_cleanly(void **state)
{
	char target[64], why[EFS_RPC_WHY_MAX + 1];
	struct efs_rpc_server *s = start_server(target, sizeof(target));
	struct efs_rpc_stream *st = NULL;
	struct efs_buf in;
	efs_buf_init(&in, MAX_MESSAGE);

	assert_int_equal(efs_rpc_stream_open(target, "/t.T/Echo", SECRET, 5000, &st, NULL, 0), 0);
	assert_int_equal(efs_rpc_stream_send(st, "bad", 3, 5000), 0);
	assert_int_equal(efs_rpc_stream_recv(st, 5000, &in), -EPIPE);
	assert_int_equal(efs_rpc_stream_error(st, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "bad message");
	assert_int_equal(efs_rpc_stream_send(st, "more", 4, 5000), -EPIPE);
	efs_rpc_stream_close(st);
	wait_count(&counts.closed, 1); /* ended by the server: not broken */
	assert_int_equal(atomic_load(&counts.closed_broken), 0);
	efs_rpc_server_stop(s);
	efs_buf_release(&in);
}

static void test_oversized_message_is_refused_before_the_handler(void **state)
{
	char target[64];
	struct efs_rpc_server *s = start_server(target, sizeof(target));
	struct efs_rpc_stream *st = NULL;
	struct efs_buf in;
	char *big = calloc(1, MAX_MESSAGE + 1);
	assert_non_null(big);
	efs_buf_init(&in, MAX_MESSAGE);

	assert_int_equal(efs_rpc_stream_open(target, "/t.T/Echo", SECRET, 5000, &st, NULL, 0), 0);
	int r = efs_rpc_stream_send(st, big, MAX_MESSAGE + 1, 5000);
	assert_true(r == 0 || r == -EPIPE);
	assert_int_equal(efs_rpc_stream_recv(st, 5000, &in), -EPIPE);
	assert_int_equal(efs_rpc_stream_error(st, NULL, 0), -EMSGSIZE);
	assert_int_equal(atomic_load(&counts.messages), 0);
	efs_rpc_stream_close(st);
	/* the server is unharmed: a new stream works */
	assert_int_equal(efs_rpc_stream_open(target, "/t.T/Echo", SECRET, 5000, &st, NULL, 0), 0);
	assert_int_equal(efs_rpc_stream_send(st, "ok", 2, 5000), 0);
	assert_int_equal(efs_rpc_stream_recv(st, 5000, &in), 1);
	efs_rpc_stream_close(st);
	efs_rpc_server_stop(s);
	efs_buf_release(&in);
	free(big);
}

static void test_server_stop_closes_open_calls_as_broken(void **state)
{
	char target[64];
	struct efs_rpc_server *s = start_server(target, sizeof(target));
	struct efs_rpc_stream *st = NULL;
	struct efs_buf in;
	efs_buf_init(&in, MAX_MESSAGE);

	assert_int_equal(efs_rpc_stream_open(target, "/t.T/Echo", SECRET, 5000, &st, NULL, 0), 0);
	assert_int_equal(efs_rpc_stream_send(st, "x", 1, 5000), 0);
	assert_int_equal(efs_rpc_stream_recv(st, 5000, &in), 1);
	efs_rpc_server_stop(s);
	assert_int_equal(atomic_load(&counts.closed_broken), 1);
	assert_int_equal(atomic_load(&counts.stopping_seen), 1);
	counts.server = NULL;
	assert_int_equal(efs_rpc_stream_recv(st, 5000, &in), -EPIPE);
	assert_true(efs_rpc_stream_error(st, NULL, 0) < 0);
	efs_rpc_stream_close(st);
	efs_buf_release(&in);
}

#define BATCH_STREAMS 16
#define BATCH_MESSAGES 25

/* Streams that only send (as workers beat) to a server that sleeps 20 ms
 * whenever it has drained what was ready: every message is taken, and
 * every stream's end is seen. */
static void test_batching_server_takes_every_message_and_end(void **state)
{
	char target[64];
	struct efs_rpc_server *s = start_batching_server(target, sizeof(target), 20);
	struct efs_rpc_stream *st[BATCH_STREAMS] = {0};

	for (int i = 0; i < BATCH_STREAMS; i++)
		assert_int_equal(
		    efs_rpc_stream_open(target, "/t.T/Sink", SECRET, 5000, &st[i], NULL, 0), 0);
	for (int m = 0; m < BATCH_MESSAGES; m++) {
		for (int i = 0; i < BATCH_STREAMS; i++)
			assert_int_equal(efs_rpc_stream_send(st[i], "beat", 4, 5000), 0);
		if (m % 5 == 0)
			usleep(30000); /* some arrive while it sleeps, some while it waits */
	}
	wait_count(&counts.messages, BATCH_STREAMS * BATCH_MESSAGES);
	for (int i = 0; i < BATCH_STREAMS; i++)
		efs_rpc_stream_close(st[i]);
	wait_count(&counts.closed_broken, BATCH_STREAMS);
	assert_int_equal(atomic_load(&counts.opened), BATCH_STREAMS);
	efs_rpc_server_stop(s);
}

static void test_status_mapping_round_trips(void **state)
{
	static const int errs[] = {0, -EACCES, -EINVAL, -ENOENT, -EXDEV, -ENOSYS, -EMSGSIZE};
	for (size_t i = 0; i < EFS_ARRAY_SIZE(errs); i++)
		assert_int_equal(efs_rpc_status_errno(efs_rpc_errno_status(errs[i])), errs[i]);
	assert_int_equal(efs_rpc_status_errno(efs_rpc_errno_status(-EAGAIN)), -ECONNREFUSED);
	assert_int_equal(efs_rpc_status_errno(efs_rpc_errno_status(-ENOMEM)), -EIO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_messages_round_trip_and_cancel_is_broken),
	    cmocka_unit_test(test_refusals_reach_the_client),
	    cmocka_unit_test(test_handler_error_ends_the_call_cleanly),
	    cmocka_unit_test(test_oversized_message_is_refused_before_the_handler),
	    cmocka_unit_test(test_server_stop_closes_open_calls_as_broken),
	    cmocka_unit_test(test_batching_server_takes_every_message_and_end),
	    cmocka_unit_test(test_status_mapping_round_trips),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
