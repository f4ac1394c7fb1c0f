/* SPDX-License-Identifier: MIT */
/* common.h - small macros every EchoFS source file uses.
 *
 * Error convention, project-wide: a function returns 0 (or a count) on
 * success and a negative errno value on failure (-EINVAL bad input, -ENOENT
 * not found, -EEXIST conflict, -ENOMEM, -E2BIG over a cap, -EIO a backend
 * failed, -EAGAIN a dependency is unavailable right now). Out-parameters are
 * left untouched on failure. Helpers never log; the caller that decides
 * what to do logs once, with context.
 */
#ifndef ECHOFS_COMMON_H
#define ECHOFS_COMMON_H

/* The system headers that declare banned functions come before banned.h. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EFS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define EFS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define EFS_MAX(a, b) ((a) > (b) ? (a) : (b))
#define EFS_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define EFS_UNUSED __attribute__((unused))
#define EFS_WARN_UNUSED __attribute__((warn_unused_result))

#define EFS_KIB ((uint64_t)1024)
#define EFS_MIB (EFS_KIB * 1024)
#define EFS_GIB (EFS_MIB * 1024)

/* Longest id (worker, file, session) accepted anywhere, without the NUL. */
#define EFS_ID_MAX 64
/* A worker's failure domain (WORKER_ZONE): 0..EFS_ZONE_MAX bytes. */
#define EFS_ZONE_MAX 32

/* A cluster's id: 32 lowercase hex digits, drawn with its metadata. The
 * master sends it to the workers in EFS_HDR_CLUSTER on every call, a
 * worker sends the one its data belongs to on every call to a master. */
#define EFS_CLUSTER_ID_LEN 32
#define EFS_HDR_CLUSTER "X-Echofs-Cluster"
/* Of a chunk's bytes between master and workers (and worker to worker, a
 * pushed repair copy): how they are stored, and their CRC32C. */
#define EFS_HDR_ENCODING "X-Chunk-Encoding" /* "gzip" or "identity" */
#define EFS_HDR_CRC32C "X-Chunk-CRC32C"     /* 8 hex digits, of the payload */

/* The lease epoch a background duty's instruction to a worker carries (a
 * GC delete, a repair copy): decimal, >= 1. A worker refuses an epoch
 * older than the newest it has seen (409 stale_lease_epoch); a call
 * without it (the client data path) is not a duty and is not checked
 * (docs/OPERATIONS.md#fencing). */
#define EFS_HDR_LEASE_EPOCH "X-EchoFS-Lease-Epoch"

#include "echofs/banned.h"

#endif
