/* SPDX-License-Identifier: MIT */
/* redis.c - hiredis behind a small pool with timeouts and reconnection. */
#include "echofs/redis.h"
#include "echofs/log.h"
#include "echofs/util.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define POOL 4
#define TIMEOUT_MS 500

struct efs_redis {
	char host[256];
	uint16_t port;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	redisContext *conns[POOL];
	bool busy[POOL];
	atomic_bool up;
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

int efs_redis_new(const char *addr, struct efs_redis **out)
{
	struct efs_redis *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	if (efs_redis_parse_addr(addr, r->host, sizeof(r->host), &r->port) < 0) {
		free(r);
		return -EINVAL;
	}
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	atomic_init(&r->up, false);
	*out = r;
	return 0;
}

void efs_redis_free(struct efs_redis *r)
{
	if (!r)
		return;
	for (int i = 0; i < POOL; i++)
		if (r->conns[i])
			redisFree(r->conns[i]);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	free(r);
}

static void mark(struct efs_redis *r, bool up)
{
	bool was = atomic_exchange(&r->up, up);
	if (was && !up)
		efs_warn("redis %s:%u unreachable: working from the metadata store alone", r->host,
			 r->port);
	else if (!was && up)
		efs_info("redis %s:%u reachable", r->host, r->port);
}

/* Borrows a connected context (slot in *slot) or returns NULL. */
static redisContext *borrow(struct efs_redis *r, int *slot)
{
	pthread_mutex_lock(&r->lock);
	for (;;) {
		for (int i = 0; i < POOL; i++) {
			if (r->busy[i])
				continue;
			r->busy[i] = true;
			*slot = i;
			redisContext *c = r->conns[i];
			pthread_mutex_unlock(&r->lock);
			if (!c) {
				struct timeval tv = {0, TIMEOUT_MS * 1000};
				c = redisConnectWithTimeout(r->host, r->port, tv);
				if (!c || c->err) {
					if (c)
						redisFree(c);
					c = NULL;
				} else {
					redisSetTimeout(c, tv);
				}
			}
			if (!c) {
				pthread_mutex_lock(&r->lock);
				r->busy[i] = false;
				pthread_cond_signal(&r->cond);
				pthread_mutex_unlock(&r->lock);
				mark(r, false);
			}
			return c;
		}
		pthread_cond_wait(&r->cond, &r->lock);
	}
}

static void give_back(struct efs_redis *r, int slot, redisContext *c)
{
	if (c && c->err) {
		redisFree(c);
		c = NULL;
	}
	pthread_mutex_lock(&r->lock);
	r->conns[slot] = c;
	r->busy[slot] = false;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

/* Runs one command; *reply is the reply (free it) or NULL with -EAGAIN. */
static int command(struct efs_redis *r, int argc, const char **argv, const size_t *lens,
		   redisReply **reply)
{
	int slot;
	redisContext *c = borrow(r, &slot);
	if (!c)
		return -EAGAIN;
	*reply = redisCommandArgv(c, argc, argv, lens);
	give_back(r, slot, c);
	if (!*reply || (*reply)->type == REDIS_REPLY_ERROR) {
		if (*reply)
			freeReplyObject(*reply);
		*reply = NULL;
		mark(r, false);
		return -EAGAIN;
	}
	mark(r, true);
	return 0;
}

int efs_redis_ping(struct efs_redis *r)
{
	const char *argv[] = {"PING"};
	redisReply *reply;
	int rc = command(r, 1, argv, NULL, &reply);
	if (rc == 0)
		freeReplyObject(reply);
	return rc;
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
