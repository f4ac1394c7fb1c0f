/* SPDX-License-Identifier: MIT */
/* test_redis.c - unit tests of redis.h against fake servers on loopback:
 * every call has a deadline, a Redis that hangs opens the circuit breaker
 * so that later calls (and threads waiting for a connection) return at
 * once, and a background probe closes it again when Redis answers.
 *
 * The fake server answers "+OK" to every command (hiredis takes any status
 * reply) until it is told to go silent; then it reads and never answers,
 * as a stopped redis-server does. A blackhole is a listening socket that
 * is never accepted from: the kernel completes the connections, nothing
 * answers. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "echofs/log.h"
#include "echofs/redis.h"
#include "echofs/util.h"

#define TIMEOUT_MS 100
/* What one call may take at most: borrow, connect and one read, each
 * bounded by the timeout, plus scheduling slack on a loaded machine. */
#define CALL_BOUND_MS (4 * TIMEOUT_MS + 400)

static int listen_loopback(uint16_t *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 128), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

/* ---- a fake Redis that can go silent ----------------------------------- */

#define FAKE_CONNS 32

struct fake {
	int listen_fd;
	uint16_t port;
	atomic_bool silent, stop;
	pthread_t thread;
};

static void *fake_serve(void *arg)
{
	struct fake *f = arg;
	struct pollfd fds[FAKE_CONNS + 1];
	size_t n = 1;
	fds[0] = (struct pollfd){.fd = f->listen_fd, .events = POLLIN};
	while (!atomic_load(&f->stop)) {
		if (poll(fds, n, 20) <= 0)
			continue;
		if ((fds[0].revents & POLLIN) && n < FAKE_CONNS + 1) {
			int c = accept(f->listen_fd, NULL, NULL);
			if (c >= 0)
				fds[n++] = (struct pollfd){.fd = c, .events = POLLIN};
		}
		for (size_t i = 1; i < n; i++) {
			if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			char buf[4096];
			ssize_t got = read(fds[i].fd, buf, sizeof(buf));
			if (got <= 0) {
				close(fds[i].fd);
				fds[i--] = fds[--n];
				continue;
			}
			/* One command per read: the client waits for each reply. */
			if (!atomic_load(&f->silent) && write(fds[i].fd, "+OK\r\n", 5) != 5) {
				close(fds[i].fd);
				fds[i--] = fds[--n];
			}
		}
	}
	for (size_t i = 0; i < n; i++)
		close(fds[i].fd);
	return NULL;
}

static void fake_start(struct fake *f)
{
	memset(f, 0, sizeof(*f));
	f->listen_fd = listen_loopback(&f->port);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_serve, f), 0);
}

static void fake_stop(struct fake *f)
{
	atomic_store(&f->stop, true);
	pthread_join(f->thread, NULL);
}

static struct efs_redis *client_for(uint16_t port)
{
	char addr[32];
	struct efs_redis *r = NULL;
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	assert_int_equal(efs_redis_new(addr, TIMEOUT_MS, &r), 0);
	return r;
}

/* ---- tests -------------------------------------------------------------- */

static void test_parse_addr(void **state)
{
	char host[64];
	uint16_t port;
	assert_int_equal(efs_redis_parse_addr("cache.internal:6379", host, sizeof(host), &port), 0);
	assert_string_equal(host, "cache.internal");
	assert_int_equal(port, 6379);
	assert_int_equal(efs_redis_parse_addr("nohost", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(efs_redis_parse_addr(":1", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(efs_redis_parse_addr("h:0", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(efs_redis_parse_addr("h:65536", host, sizeof(host), &port), -EINVAL);
}

static void test_starts_bypassed_until_a_probe_answers(void **state)
{
	struct fake f;
	fake_start(&f);
	struct efs_redis *r = client_for(f.port);
	/* Nothing is sent before a probe has seen Redis. */
	assert_false(efs_redis_up(r));
	assert_int_equal(efs_redis_set(r, "k", "v", 1, 0, false), -EAGAIN);
	assert_int_equal(efs_redis_ping(r), 0);
	assert_true(efs_redis_up(r));
	assert_int_equal(efs_redis_set(r, "k", "v", 1, 0, false), 0);
	assert_int_equal(efs_redis_opened_total(r), 0);
	efs_redis_free(r);
	fake_stop(&f);
}

struct caller {
	pthread_t thread;
	struct efs_redis *r;
	int rc;
	int64_t took_ms;
};

static void *call_set(void *arg)
{
	struct caller *c = arg;
	int64_t started = efs_mono_ms();
	c->rc = efs_redis_set(c->r, "key", "value", 5, 1000, false);
	c->took_ms = efs_mono_ms() - started;
	return NULL;
}

/* Redis answers, then goes silent (a stopped process): concurrent callers
 * each return within a bounded time, none queues behind the others, the
 * breaker opens once, and later calls skip Redis at once. When it answers
 * again, the background probe closes the breaker. */
static void test_silent_redis_opens_the_breaker_then_a_probe_closes_it(void **state)
{
	enum { CALLERS = 16 };
	struct fake f;
	struct caller callers[CALLERS];
	fake_start(&f);
	struct efs_redis *r = client_for(f.port);
	assert_int_equal(efs_redis_ping(r), 0);
	assert_int_equal(efs_redis_set(r, "k", "v", 1, 0, false), 0);

	atomic_store(&f.silent, true);
	int64_t started = efs_mono_ms();
	for (int i = 0; i < CALLERS; i++) {
		callers[i] = (struct caller){.r = r};
		assert_int_equal(pthread_create(&callers[i].thread, NULL, call_set, &callers[i]), 0);
	}
	for (int i = 0; i < CALLERS; i++) {
		pthread_join(callers[i].thread, NULL);
		assert_int_equal(callers[i].rc, -EAGAIN);
		if (callers[i].took_ms > CALL_BOUND_MS)
			fail_msg("caller %d took %lld ms (bound %d)", i,
				 (long long)callers[i].took_ms, CALL_BOUND_MS);
	}
	assert_true(efs_mono_ms() - started <= CALL_BOUND_MS);
	assert_false(efs_redis_up(r));
	assert_int_equal(efs_redis_opened_total(r), 1);

	/* Open: no network, no wait. */
	started = efs_mono_ms();
	for (int i = 0; i < 100; i++)
		assert_int_equal(efs_redis_set(r, "k", "v", 1, 0, false), -EAGAIN);
	bool exists[2];
	const char *keys[] = {"a", "b"};
	assert_int_equal(efs_redis_exists_many(r, keys, 2, exists), -EAGAIN);
	assert_true(efs_mono_ms() - started < TIMEOUT_MS);
	/* A probe of a silent Redis keeps it open, within its deadline. */
	started = efs_mono_ms();
	assert_int_equal(efs_redis_ping(r), -EAGAIN);
	assert_true(efs_mono_ms() - started <= CALL_BOUND_MS);

	atomic_store(&f.silent, false);
	int64_t until = efs_mono_ms() + 3 * EFS_REDIS_PROBE_INTERVAL_MS;
	while (!efs_redis_up(r) && efs_mono_ms() < until)
		efs_sleep_ms(10);
	assert_true(efs_redis_up(r));
	assert_int_equal(efs_redis_set(r, "k", "v", 1, 0, false), 0);
	assert_int_equal(efs_redis_opened_total(r), 1);
	efs_redis_free(r);
	fake_stop(&f);
}

static void test_blackhole_costs_one_deadline(void **state)
{
	uint16_t port;
	int fd = listen_loopback(&port); /* never accepted from */
	struct efs_redis *r = client_for(port);
	int64_t started = efs_mono_ms();
	assert_int_equal(efs_redis_ping(r), -EAGAIN);
	assert_true(efs_mono_ms() - started <= CALL_BOUND_MS);
	started = efs_mono_ms();
	assert_int_equal(efs_redis_del(r, "k"), -EAGAIN);
	struct efs_buf buf;
	efs_buf_init(&buf, 64);
	assert_int_equal(efs_redis_get(r, "k", &buf), -EAGAIN);
	efs_buf_release(&buf);
	assert_true(efs_mono_ms() - started < TIMEOUT_MS);
	efs_redis_free(r);
	close(fd);
}

static void test_refused_connection_fails_at_once(void **state)
{
	uint16_t port;
	int fd = listen_loopback(&port);
	close(fd); /* nothing listens there now */
	struct efs_redis *r = client_for(port);
	int64_t started = efs_mono_ms();
	assert_int_equal(efs_redis_ping(r), -EAGAIN);
	assert_true(efs_mono_ms() - started < CALL_BOUND_MS);
	assert_false(efs_redis_up(r));
	efs_redis_free(r);
}

int main(void)
{
	efs_log_set_level(EFS_LOG_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_addr),
	    cmocka_unit_test(test_starts_bypassed_until_a_probe_answers),
	    cmocka_unit_test(test_silent_redis_opens_the_breaker_then_a_probe_closes_it),
	    cmocka_unit_test(test_blackhole_costs_one_deadline),
	    cmocka_unit_test(test_refused_connection_fails_at_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
