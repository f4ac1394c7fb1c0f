/* SPDX-License-Identifier: MIT */
/* redis.c - hiredis behind a small pool, with hard deadlines and a circuit
 * breaker.
 *
 * Redis is an accelerator: a Redis that does not answer must cost the
 * master nothing, or close to it. Three things see to that:
 *
 * - Deadlines: connecting and every socket read and write of a command
 *   give up after the client's timeout (REDIS_TIMEOUT_MS).
 * - The breaker: the first call that fails to reach Redis opens it; from
 *   then on every call returns -EAGAIN at once, without touching the
 *   network, and callers fall back to the metadata store. Threads waiting
 *   for a pooled connection are woken and see it open: they do not queue
 *   behind connections that are each waiting out their own timeout.
 * - The probe: while the breaker is open, a background thread PINGs Redis
 *   on a fresh connection every EFS_REDIS_PROBE_INTERVAL_MS (and
 *   efs_redis_ping(), which health calls, probes at once); the first
 *   answer closes the breaker. Connections made before the breaker opened
 *   are never used again: after a restart they would only fail once more.
 *
 * The two transitions are logged once each, not per call. */
#include "echofs/redis.h"
#include "echofs/log.h"
#include "echofs/ticker.h"
#include "echofs/util.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define POOL 4

struct efs_redis {
	char host[256];
	uint16_t port;
	int64_t timeout_ms;
	pthread_mutex_t lock; /* guards the pool and generation */
	pthread_cond_t cond;  /* a slot was freed, or the breaker opened (monotonic) */
	redisContext *conns[POOL];
	uint64_t conn_generation[POOL];
	bool busy[POOL];
	uint64_t generation; /* bumped each time the breaker opens */
	atomic_bool up;	     /* the breaker is closed: calls go to Redis */
	atomic_uint_fast64_t opened_total;
	pthread_mutex_t probe_lock; /* one probe at a time */
	struct efs_ticker prober;
};

int efs_redis_parse_addr(const char *addr, char *host, size_t host_len, uint16_t *port)
{
	uint64_t p;
	const char *colon = addr ? strrchr(addr, ':') : NULL;
	if (!colon || colon == addr || (size_t)(colon - addr) >= host_len ||
	    efs_parse_u64(colon + 1, false, &p) < 0 || p < 1 || p > 65535)
		return -EINVAL;
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	*port = (uint16_t)p;
	return 0;
}

static struct timeval timeout_tv(const struct efs_redis *r)
{
	return (struct timeval){.tv_sec = (time_t)(r->timeout_ms / 1000),
				.tv_usec = (suseconds_t)(r->timeout_ms % 1000) * 1000};
}

/* A new connection with the deadlines set, or NULL. */
static redisContext *connect_one(const struct efs_redis *r)
{
	struct timeval tv = timeout_tv(r);
	redisContext *c = redisConnectWithTimeout(r->host, r->port, tv);
	if (c && !c->err && redisSetTimeout(c, tv) == REDIS_OK)
		return c;
	if (c)
		redisFree(c);
	return NULL;
}

/* Opens the breaker (once per outage): later calls return at once, the
 * waiters for a slot are woken to see it, idle connections are closed and
 * busy ones are dropped when given back. */
static void breaker_open(struct efs_redis *r)
{
	pthread_mutex_lock(&r->lock);
	bool was_up = atomic_exchange(&r->up, false);
	if (was_up) {
		r->generation++;
		for (int i = 0; i < POOL; i++) {
			if (!r->busy[i] && r->conns[i]) {
				redisFree(r->conns[i]);
				r->conns[i] = NULL;
			}
		}
		atomic_fetch_add(&r->opened_total, 1);
		pthread_cond_broadcast(&r->cond);
	}
	pthread_mutex_unlock(&r->lock);
	if (was_up)
		efs_warn("redis %s:%u unreachable: working from the metadata store alone "
			 "(calls bypass redis until a probe answers)",
			 r->host, r->port);
}

static void breaker_close(struct efs_redis *r)
{
	if (!atomic_exchange(&r->up, true))
		efs_info("redis %s:%u reachable", r->host, r->port);
}

/* PING on a connection of its own, made for it; closes the breaker when
 * Redis answers. One probe runs at a time: a caller that finds one running
 * gets -EAGAIN at once rather than a second wait. */
static int probe(struct efs_redis *r)
{
	if (pthread_mutex_trylock(&r->probe_lock) != 0)
		return atomic_load(&r->up) ? 0 : -EAGAIN;
	int rc = -EAGAIN;
	redisContext *c = connect_one(r);
	if (c) {
		redisReply *reply = redisCommand(c, "PING");
		if (reply && reply->type != REDIS_REPLY_ERROR)
			rc = 0;
		if (reply)
			freeReplyObject(reply);
		redisFree(c);
	}
	if (rc == 0)
		breaker_close(r);
	pthread_mutex_unlock(&r->probe_lock);
	return rc;
}

static void probe_loop(struct efs_ticker *t, void *ctx)
{
	struct efs_redis *r = ctx;
	while (!efs_ticker_wait(t, EFS_REDIS_PROBE_INTERVAL_MS))
		if (!atomic_load(&r->up))
			probe(r);
}

int efs_redis_new(const char *addr, int64_t timeout_ms, struct efs_redis **out)
{
	int rc;
	if (timeout_ms <= 0)
		timeout_ms = EFS_REDIS_DEFAULT_TIMEOUT_MS;
	struct efs_redis *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	if (efs_redis_parse_addr(addr, r->host, sizeof(r->host), &r->port) < 0) {
		free(r);
		return -EINVAL;
	}
	r->timeout_ms = timeout_ms;
	if ((rc = efs_ticker_cond_init(&r->cond)) < 0) {
		free(r);
		return rc;
	}
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_init(&r->probe_lock, NULL);
	/* Open until the first probe answers: nothing waits on a Redis that
	 * was never seen. */
	atomic_init(&r->up, false);
	atomic_init(&r->opened_total, 0);
	if ((rc = efs_ticker_start(&r->prober, probe_loop, r)) < 0) {
		pthread_mutex_destroy(&r->lock);
		pthread_mutex_destroy(&r->probe_lock);
		pthread_cond_destroy(&r->cond);
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

void efs_redis_free(struct efs_redis *r)
{
	if (!r)
		return;
	efs_ticker_stop(&r->prober);
	for (int i = 0; i < POOL; i++)
		if (r->conns[i])
			redisFree(r->conns[i]);
	pthread_mutex_destroy(&r->lock);
	pthread_mutex_destroy(&r->probe_lock);
	pthread_cond_destroy(&r->cond);
	free(r);
}

bool efs_redis_up(const struct efs_redis *r)
{
	return r && atomic_load(&r->up);
}

uint64_t efs_redis_opened_total(const struct efs_redis *r)
{
	return r ? (uint64_t)atomic_load(&r->opened_total) : 0;
}

/* Borrows a connected context (slot in *slot) or returns NULL with *why:
 * -EAGAIN when the breaker is open (or opens while waiting) or connecting
 * failed (which opens it), -EBUSY when no slot freed up within the
 * timeout. */
static redisContext *borrow(struct efs_redis *r, int *slot, int *why)
{
	struct timespec deadline;
	redisContext *c = NULL;
	int i;

	*why = -EAGAIN;
	efs_ticker_deadline(r->timeout_ms, &deadline);
	pthread_mutex_lock(&r->lock);
	for (int waited = 0;;) {
		if (!atomic_load(&r->up))
			goto out_unlock;
		for (i = 0; i < POOL && r->busy[i]; i++)
			;
		if (i < POOL)
			break;
		/* Timed out with the breaker closed: a busy pool, not a dead
		 * Redis; this call falls back to the store. */
		if (waited == ETIMEDOUT) {
			*why = -EBUSY;
			goto out_unlock;
		}
		waited = pthread_cond_timedwait(&r->cond, &r->lock, &deadline);
	}
	r->busy[i] = true;
	*slot = i;
	c = r->conns[i];
	if (c && r->conn_generation[i] != r->generation) {
		redisFree(c); /* made before the breaker last opened */
		c = NULL;
	}
	r->conns[i] = NULL;
	uint64_t generation = r->generation;
	pthread_mutex_unlock(&r->lock);
	if (!c) {
		c = connect_one(r);
		if (!c) {
			pthread_mutex_lock(&r->lock);
			r->busy[i] = false;
			pthread_cond_signal(&r->cond);
			pthread_mutex_unlock(&r->lock);
			breaker_open(r);
			return NULL;
		}
		pthread_mutex_lock(&r->lock);
		r->conn_generation[i] = generation;
		pthread_mutex_unlock(&r->lock);
	}
	return c;
out_unlock:
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* Gives the slot back with @c, or empty when @c is NULL, broken, or older
 * than the last opening of the breaker. */
static void give_back(struct efs_redis *r, int slot, redisContext *c)
{
	pthread_mutex_lock(&r->lock);
	if (c && (c->err || r->conn_generation[slot] != r->generation)) {
		redisFree(c);
		c = NULL;
	}
	r->conns[slot] = c;
	r->busy[slot] = false;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

/* Runs one command; *reply is the reply (free it) or NULL with -EAGAIN, or
 * -EBUSY when every pooled connection stayed busy for the timeout. A call
 * that cannot reach Redis opens the breaker; an error reply (Redis
 * answered) and a busy pool do not. */
static int command_or_busy(struct efs_redis *r, int argc, const char **argv,
			   const size_t *lens, redisReply **reply)
{
	int slot, why;
	redisContext *c = borrow(r, &slot, &why);
	if (!c)
		return why;
	*reply = redisCommandArgv(c, argc, argv, lens);
	bool unreachable = !*reply || c->err;
	give_back(r, slot, c);
	if (unreachable)
		breaker_open(r);
	if (!*reply || (*reply)->type == REDIS_REPLY_ERROR) {
		if (*reply)
			freeReplyObject(*reply);
		*reply = NULL;
		return -EAGAIN;
	}
	return 0;
}

/* command_or_busy() for the callers, to whom a busy pool is one more
 * reason to use the store: 0 or -EAGAIN. */
static int command(struct efs_redis *r, int argc, const char **argv, const size_t *lens,
		   redisReply **reply)
{
	int rc = command_or_busy(r, argc, argv, lens, reply);
	return rc == -EBUSY ? -EAGAIN : rc;
}

int efs_redis_ping(struct efs_redis *r)
{
	if (!atomic_load(&r->up))
		return probe(r);
	const char *argv[] = {"PING"};
	redisReply *reply;
	int rc = command_or_busy(r, 1, argv, NULL, &reply);
	if (rc == 0)
		freeReplyObject(reply);
	/* Every connection busy: Redis is answering them. */
	return rc == -EBUSY ? 0 : rc;
}

int efs_redis_set(struct efs_redis *r, const char *key, const void *value, size_t len,
		  int64_t ttl_ms, bool only_new)
{
	char ttl[24];
	const char *argv[6] = {"SET", key, value};
	size_t lens[6] = {3, strlen(key), len};
	int argc = 3;
	redisReply *reply;
	if (ttl_ms > 0) {
		snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_ms);
		argv[argc] = "PX", lens[argc++] = 2;
		argv[argc] = ttl, lens[argc++] = strlen(ttl);
	}
	if (only_new)
		argv[argc] = "NX", lens[argc++] = 2;
	int rc = command(r, argc, argv, lens, &reply);
	if (rc < 0)
		return rc;
	rc = reply->type == REDIS_REPLY_NIL ? 0 : 1;
	freeReplyObject(reply);
	return only_new ? rc : 0;
}

int efs_redis_set_many(struct efs_redis *r, const char *const *keys, const char *const *values,
		       const int64_t *ttls_ms, size_t n)
{
	int slot, why;
	size_t i, answered = 0;
	bool ok = true;

	if (n == 0)
		return 0;
	redisContext *c = borrow(r, &slot, &why);
	if (!c)
		return -EAGAIN;
	for (i = 0; i < n; i++) {
		char ttl[24];
		snprintf(ttl, sizeof(ttl), "%lld", (long long)EFS_MAX(ttls_ms[i], 1));
		const char *argv[5] = {"SET", keys[i], values[i], "PX", ttl};
		if (redisAppendCommandArgv(c, 5, argv, NULL) != REDIS_OK)
			break;
	}
	/* every appended command's reply, even after a failure: the
	 * connection goes back to the pool in step (or broken: c->err) */
	for (size_t sent = i; answered < sent; answered++) {
		redisReply *reply = NULL;
		if (redisGetReply(c, (void **)&reply) != REDIS_OK || !reply) {
			ok = false;
			break;
		}
		ok = ok && reply->type != REDIS_REPLY_ERROR;
		freeReplyObject(reply);
	}
	bool unreachable = c->err != 0;
	give_back(r, slot, c);
	if (unreachable)
		breaker_open(r);
	return ok && !unreachable && answered == n ? 0 : -EAGAIN;
}

int efs_redis_get(struct efs_redis *r, const char *key, struct efs_buf *out)
{
	const char *argv[] = {"GET", key};
	redisReply *reply;
	int rc = command(r, 2, argv, NULL, &reply);
	if (rc < 0)
		return rc;
	if (reply->type != REDIS_REPLY_STRING) {
		rc = -ENOENT;
	} else {
		efs_buf_reset(out);
		rc = efs_buf_append(out, reply->str, reply->len);
	}
	freeReplyObject(reply);
	return rc;
}

int efs_redis_del(struct efs_redis *r, const char *key)
{
	const char *argv[] = {"DEL", key};
	redisReply *reply;
	int rc = command(r, 2, argv, NULL, &reply);
	if (rc == 0)
		freeReplyObject(reply);
	return rc;
}

int efs_redis_exists_many(struct efs_redis *r, const char *const *keys, size_t n, bool *out)
{
	if (n == 0)
		return 0;
	if (!atomic_load(&r->up))
		return -EAGAIN;
	const char **argv = calloc(n + 1, sizeof(*argv));
	if (!argv)
		return -ENOMEM;
	argv[0] = "MGET";
	for (size_t i = 0; i < n; i++)
		argv[i + 1] = keys[i];
	redisReply *reply;
	int rc = command(r, (int)n + 1, argv, NULL, &reply);
	free(argv);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n; i++)
		out[i] = reply->type == REDIS_REPLY_ARRAY && i < reply->elements &&
			 reply->element[i]->type == REDIS_REPLY_STRING;
	freeReplyObject(reply);
	return 0;
}
