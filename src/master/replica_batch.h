/* SPDX-License-Identifier: MIT */
/* replica_batch.h - small replica writes of concurrent uploads sent to a
 * worker together: one POST /chunks/batch (echofs/chunk_batch.h) per
 * worker at a time, one HTTP exchange and one group commit for the small
 * chunks of several uploads (issue 16, item 3; docs/ARCHITECTURE.md,
 * "Batched replica writes").
 *
 * Per worker a queue and at most one batch in flight. A caller whose
 * worker has no batch in flight sends at once what is queued there (its
 * own item and whoever queued meanwhile, up to max_items items and
 * EFS_CHUNK_BATCH_MAX_BODY bytes); the others wait for that batch to end
 * and one of them sends the next. No timer: an idle cluster's write goes
 * out at once, alone. A caller that is leading one worker's batch does
 * not lead another's until it is back, so its items elsewhere may wait for
 * another caller to send them; each caller returns once every item it
 * queued has its own answer. A caller that leads batches to several
 * workers sends them in parallel and frees each worker's queue as soon as
 * that worker's batch ends (efs_http_call.on_done): a stalled worker holds
 * its own queue only.
 *
 * A worker that answers the endpoint 404 or 405 (one older than it,
 * during a rolling upgrade, or WORKER_BATCH_WRITES=0) is remembered: its
 * items come back marked unsupported, and the caller writes them with a
 * single PUT, now and from then on. */
#ifndef ECHOFS_MASTER_REPLICA_BATCH_H
#define ECHOFS_MASTER_REPLICA_BATCH_H

#include "echofs/http_client.h"
#include "master/placement.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Largest chunk (as stored) that goes in a batch; a larger one is one PUT. */
#define EFS_REPLICA_BATCH_MAX_CHUNK (64 * 1024)
/* REPLICA_BATCH_MAX_ITEMS: its default and its cap. */
#define EFS_REPLICA_BATCH_DEFAULT_ITEMS 16
/* Workers the batcher keeps a queue for; past this, a new worker's items
 * come back unsupported (single PUTs). */
#define EFS_REPLICA_BATCH_MAX_WORKERS 4096

struct efs_replica_batch;

struct efs_replica_batch_config {
	struct efs_http_client *http;
	const char *cluster_secret; /* borrowed: the workers' credential */
	const char *cluster_header; /* borrowed: "X-Echofs-Cluster: ..." or "" */
	unsigned max_items;	    /* per batch, 1..EFS_CHUNK_BATCH_MAX_ITEMS */
};

/* The answer to one item, shaped like a single PUT's: @error a transport
 * failure of the batch (-errno, @errmsg says what), else @status the
 * item's own (201 stored and durable) and @body its error object, if any.
 * @unsupported: the worker has no batch endpoint, nothing was written by
 * the batch: write it with a single PUT. @unsent (with @error): never sent,
 * because the batch before it to the same worker failed in transport (a
 * stalled or unreachable worker): no copy can land late, and the caller
 * places the replica elsewhere at once instead of waiting out a second
 * stall on the same worker. */
struct efs_replica_batch_result {
	int error;
	long status;
	bool unsupported;
	bool unsent;
	int64_t elapsed_ms; /* of the whole batch */
	char errmsg[160];
	char body[256]; /* {"error": {...}} of a refused item, cut; "" */
};

/* 0 or -ENOMEM / -EINVAL (max_items out of range). */
int efs_replica_batch_new(const struct efs_replica_batch_config *cfg,
			  struct efs_replica_batch **out);
/* No call may be in flight. NULL accepted. */
void efs_replica_batch_free(struct efs_replica_batch *b);

/* False once @worker_id answered the batch endpoint 404/405. */
bool efs_replica_batch_supported(struct efs_replica_batch *b, const char *worker_id);

/* Writes chunk @chunk_id (@data, @len <= EFS_REPLICA_BATCH_MAX_CHUNK bytes
 * as stored, @gzip, CRC32C @crc) to each of the @count targets (distinct
 * workers, at most EFS_MAX_REPLICAS) through their workers' batches;
 * returns once each has its answer in @results[i]. @data must stay valid
 * until then (it is sent from there). */
void efs_replica_batch_write(struct efs_replica_batch *b, const char *chunk_id, const void *data,
			     size_t len, bool gzip, uint32_t crc, const struct efs_target *targets,
			     size_t count, struct efs_replica_batch_result *results);

struct efs_replica_batch_stats {
	uint64_t batches;     /* POST /chunks/batch sent */
	uint64_t items;	      /* items they held */
	uint64_t unsupported; /* workers found without the endpoint */
	uint64_t queued;      /* replica writes waiting now for a batch */
};
void efs_replica_batch_stats(struct efs_replica_batch *b, struct efs_replica_batch_stats *out);

#endif
