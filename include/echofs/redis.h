/* SPDX-License-Identifier: MIT */
/* redis.h - the one wrapper around hiredis.
 *
 * A small pool of connections, each used by one thread at a time. Every
 * call has a short timeout (500 ms); a failed connection is dropped and
 * the next call connects again, so a restarted Redis is picked up by
 * itself. Callers treat Redis as an accelerator: -EAGAIN (unreachable)
 * means "fall back to the metadata store", never an error for the client.
 */
#ifndef ECHOFS_REDIS_H
#define ECHOFS_REDIS_H

#include "echofs/buf.h"
#include "echofs/common.h"

#include <stdbool.h>
#include <stdint.h>

struct efs_redis;

/* Parses "host:port" (0 or -EINVAL). */
int efs_redis_parse_addr(const char *addr, char *host, size_t host_len, uint16_t *port);
/* Creates the client for @addr; connections are made on first use. */
int efs_redis_new(const char *addr, struct efs_redis **out);
void efs_redis_free(struct efs_redis *r);

/* PING: 0 or -EAGAIN. */
int efs_redis_ping(struct efs_redis *r);
/* SET key value [PX ttl_ms] (ttl_ms <= 0: no expiry). With @only_new, NX:
 * returns 1 when set, 0 when the key existed. */
int efs_redis_set(struct efs_redis *r, const char *key, const void *value, size_t len,
		  int64_t ttl_ms, bool only_new);
/* GET into @out: 0, -ENOENT (no key), -E2BIG, -EAGAIN. */
int efs_redis_get(struct efs_redis *r, const char *key, struct efs_buf *out);
/* DEL: 0 or -EAGAIN. */
int efs_redis_del(struct efs_redis *r, const char *key);
/* EXISTS for each of @n keys (one MGET round trip): 0 or -EAGAIN. */
int efs_redis_exists_many(struct efs_redis *r, const char *const *keys, size_t n, bool *out);

#endif
