/* SPDX-License-Identifier: MIT */
/* redis.h - the one wrapper around hiredis.
 *
 * A small pool of connections, each used by one thread at a time. Callers
 * treat Redis as an accelerator: -EAGAIN (unreachable) means "fall back to
 * the metadata store", never an error for the client.
 *
 * Bounded cost when Redis does not answer: connecting, each socket read
 * and write of a command, and waiting for a free pooled connection each
 * give up after the client's timeout. A call that cannot reach Redis opens
 * a circuit breaker: every call then returns -EAGAIN at once, without
 * network traffic, until a probe (a background thread, every
 * EFS_REDIS_PROBE_INTERVAL_MS, or efs_redis_ping()) gets an answer on a
 * fresh connection and closes it. The breaker starts open: the first probe
 * (efs_redis_new() starts the thread; the master pings at start) closes
 * it. Opening and closing are logged once each (WARN / INFO).
 */
#ifndef ECHOFS_REDIS_H
#define ECHOFS_REDIS_H

#include "echofs/buf.h"
#include "echofs/common.h"

#include <stdbool.h>
#include <stdint.h>

struct efs_redis;

#define EFS_REDIS_DEFAULT_TIMEOUT_MS 200
#define EFS_REDIS_PROBE_INTERVAL_MS 1000

/* Parses "host:port" (0 or -EINVAL). */
int efs_redis_parse_addr(const char *addr, char *host, size_t host_len, uint16_t *port);
/* Creates the client for @addr with a deadline of @timeout_ms (<= 0:
 * EFS_REDIS_DEFAULT_TIMEOUT_MS) and starts its probe thread; connections
 * are made on first use. 0, -EINVAL (bad @addr), -ENOMEM or -errno. */
int efs_redis_new(const char *addr, int64_t timeout_ms, struct efs_redis **out);
/* Stops the probe thread and closes every connection; NULL is accepted.
 * No call may run concurrently. */
void efs_redis_free(struct efs_redis *r);

/* PING: 0 or -EAGAIN. With the breaker open this is a probe (one at a
 * time: a caller that finds one running gets -EAGAIN without waiting), so
 * it costs at most two timeouts and closes the breaker when Redis
 * answers. */
int efs_redis_ping(struct efs_redis *r);
/* SET key value [PX ttl_ms] (ttl_ms <= 0: no expiry). With @only_new, NX:
 * returns 1 when set, 0 when the key existed. */
int efs_redis_set(struct efs_redis *r, const char *key, const void *value, size_t len,
		  int64_t ttl_ms, bool only_new);
/* SET keys[i] values[i] PX ttls_ms[i] for each of @n keys (values are
 * strings), pipelined: one round trip for all. 0 when every SET was
 * answered OK, else -EAGAIN (some may have been set). */
int efs_redis_set_many(struct efs_redis *r, const char *const *keys, const char *const *values,
		       const int64_t *ttls_ms, size_t n);
/* GET into @out: 0, -ENOENT (no key), -E2BIG, -EAGAIN. */
int efs_redis_get(struct efs_redis *r, const char *key, struct efs_buf *out);
/* DEL: 0 or -EAGAIN. */
int efs_redis_del(struct efs_redis *r, const char *key);
/* EXISTS for each of @n keys (one MGET round trip): 0 or -EAGAIN. */
int efs_redis_exists_many(struct efs_redis *r, const char *const *keys, size_t n, bool *out);
/* True while the breaker is closed (calls go to Redis); false for NULL. */
bool efs_redis_up(const struct efs_redis *r);
/* How many times the breaker has opened since efs_redis_new(). */
uint64_t efs_redis_opened_total(const struct efs_redis *r);

#endif
