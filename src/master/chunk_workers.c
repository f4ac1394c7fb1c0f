/* SPDX-License-Identifier: MIT */
/* chunk_workers.c - the worker cluster behind the chunk backend
 * interface: dedup against the replicas that still hold the chunk, writes
 * of the missing ones, failover reads, the collector's conditional
 * deletes. */
#include "master/chunk_workers.h"
#include "master/control.h"
#include "echofs/http_client.h"
#include "echofs/log.h"
#include "echofs/util.h"
#include "master/chunk_ec.h"
#include "master/chunk_io.h"
#include "master/late_writes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A collector's DELETE is one unlink on the worker. */
#define DELETE_TIMEOUT_MS 5000
#define DELETE_CONNECT_TIMEOUT_MS 1000

struct workers {
	struct efs_chunk_io io;
	unsigned replication_factor;
	struct efs_control *control; /* NULL: every delete is an HTTP call */
};

/* The known replicas that are not marked bad and whose worker is alive,
 * as targets. */
static unsigned usable_targets(const struct workers *w, const struct efs_replica *known,
			       unsigned known_count, struct efs_target *out)
{
	unsigned good = 0;
	known_count = EFS_MIN(known_count, EFS_MAX_REPLICAS);
	for (unsigned i = 0; i < known_count; i++) {
		if (known[i].bad || !efs_replica_alive(&w->io, &known[i]))
			continue;
		efs_strlcpy(out[good].worker_id, known[i].worker_id, sizeof(out[good].worker_id));
		efs_strlcpy(out[good].url, known[i].url, sizeof(out[good].url));
		good++;
	}
	return good;
}

static int workers_put(void *impl, const struct efs_chunk_info *chunk, const void *stored,
		       const struct efs_replica *known, unsigned known_count, bool recorded,
		       struct efs_chunk_put_result *out)
{
	/* The caller passes replicas only for a recorded chunk; a rewrite
	 * stamps a new mtime on each worker, which R4 relies on. */
	(void)recorded;
	struct workers *w = impl;
	struct efs_target have[EFS_MAX_REPLICAS], added[EFS_MAX_REPLICAS];
	unsigned want = w->replication_factor, written = 0;

	if (chunk->ec_data > 0) {
		/* An EC chunk already recorded is referenced as it is (the
		 * dedup rule, docs/ARCHITECTURE.md "Erasure coding"); a new one
		 * is encoded and its K + M shards written, one per worker. */
		if (known_count > 0)
			return 0;
		out->sent = true;
		int r = efs_chunk_ec_write(&w->io, chunk, stored, added, &written);
		for (unsigned i = 0; i < written; i++)
			efs_strlcpy(out->location_ids[i], added[i].worker_id,
				    sizeof(out->location_ids[i]));
		out->location_count = written;
		return r;
	}

	/* Workers holding a good, live replica are not asked again; a bad
	 * replica's worker may take a fresh copy (it overwrites). */
	unsigned good = usable_targets(w, known, known_count, have);
	/* A replica row is not a copy: one deleted behind the master's back,
	 * or on a disk replaced since, would leave the new file unreadable.
	 * Only the workers that say they hold it count; the others are
	 * written as for a new chunk. */
	struct efs_target unreached[EFS_MAX_REPLICAS];
	unsigned unreached_count = 0;
	if (good > 0)
		efs_chunk_confirm(&w->io, chunk->chunk_id, have, &good, unreached,
				  &unreached_count);
	unsigned missing = good >= want ? 0 : want - good;
	if (missing == 0)
		return 0;
	/* Each replica records its own encoding (the worker answers it on
	 * read), so new replicas may use ours. */
	out->sent = true;
	int r = efs_chunk_write(&w->io, chunk->chunk_id, stored, chunk->stored_size,
				chunk->compressed, missing, have, good, 0, added, &written);
	/* Written in place of copies that could not be confirmed: those
	 * workers' reports trim what is surplus now. */
	for (unsigned i = 0; written > 0 && i < unreached_count; i++)
		if (w->io.placement->registry)
			efs_registry_ask_report(w->io.placement->registry, unreached[i].worker_id,
						chunk->chunk_id);
	for (unsigned i = 0; i < written; i++)
		efs_strlcpy(out->location_ids[i], added[i].worker_id, sizeof(out->location_ids[i]));
	out->location_count = written;
	return r;
}

static int workers_get(void *impl, const struct efs_chunk_info *chunk,
		       const struct efs_replica *known, unsigned known_count, struct efs_buf *out,
		       struct efs_buf *scratch)
{
	struct workers *w = impl;
	if (chunk->ec_data > 0)
		return efs_chunk_ec_read(&w->io, chunk, known, known_count, out, scratch);
	int r = efs_chunk_read(&w->io, chunk, known, known_count, out, scratch);
	if (r != -ESTALE)
		return r;
	/* Converted to EC since the caller loaded it (ec_convert.c): read
	 * as it is now. */
	struct efs_chunk_info now;
	struct efs_replica rows[EFS_MAX_REPLICAS];
	unsigned count = 0;
	if (efs_meta_chunk_get(w->io.meta, chunk->chunk_id, &now, rows, &count) < 0 ||
	    now.ec_data == 0)
		return -EIO;
	return efs_chunk_ec_read(&w->io, &now, rows, count, out, scratch);
}

/* The outcome of one replica delete, @status as the worker answered (HTTP
 * or an Ack on its stream; 0 with @error for a transport failure). 1 when
 * it failed (the copy stays), 0 otherwise. */
static int delete_outcome(struct workers *w, const char *chunk_id, const struct efs_replica *of,
			  const char *where, long status, bool stale, const char *error,
			  uint64_t lease_epoch)
{
	if (stale) {
		efs_warn("chunk %.12s: delete on %s refused: lease epoch %llu is stale there "
			 "(another master took the lease); the copy is kept",
			 chunk_id, where, (unsigned long long)lease_epoch);
		return 1;
	}
	if (!error && (status == 204 || status == 404 || status == 412))
		return 0;
	efs_warn("chunk %.12s: delete on %s failed (%s%ld); left as an orphan", chunk_id, where,
		 error ? error : "status ", error ? 0L : status);
	/* Watched as a given-up write: a worker that never stops beating (only
	 * the master cannot reach it) is asked for no rejoin report, and the
	 * copy would wait for its periodic one. The watch deletes it once no
	 * row names that worker (late_writes.h). */
	if (w->io.late_writes)
		efs_late_writes_note(w->io.late_writes, of->worker_id, of->url, chunk_id);
	return 1;
}

/* Deletes the replicas of one collected chunk from their workers, each
 * only if its worker last wrote it more than @unmodified_for_ms ago by the
 * worker's own clock: a copy an upload stored again after the decision is
 * kept (412), whatever the skew between this master and the worker. With
 * @lease_epoch, a worker that has seen a newer lease epoch keeps it too
 * (409 stale_lease_epoch: the decision was an old lease holder's). The
 * deletes go down the control streams of the workers that have one, all
 * at once, then over HTTP, in parallel, to the others and to those whose
 * push was not answered. */
static int workers_remove(void *impl, const char *chunk_id, const struct efs_replica *known,
			   unsigned known_count, int64_t unmodified_for_ms, uint64_t lease_epoch)
{
	struct workers *w = impl;
	struct efs_http_call calls[EFS_MAX_REPLICAS];
	struct efs_http_call *callp[EFS_MAX_REPLICAS];
	char urls[EFS_MAX_REPLICAS][EFS_URL_MAX + 80];
	const struct efs_replica *of[EFS_MAX_REPLICAS];
	struct efs_control_ticket *tickets[EFS_MAX_REPLICAS];
	const struct efs_replica *pushed_to[EFS_MAX_REPLICAS];
	char condition[64], epoch_header[64];
	unsigned n = 0, pushes = 0;
	int failed = 0;
	bool cancelled = false;

	known_count = EFS_MIN(known_count, EFS_MAX_REPLICAS);
	for (unsigned i = 0; i < known_count; i++) {
		if (!known[i].url[0])
			continue; /* its worker is unknown now */
		/* Down the worker's control stream when it has one; the same
		 * conditions, answered by an Ack. No stream, or no Ack in time:
		 * an HTTP call (a delete is idempotent). */
		int r = w->control ? efs_control_delete_send(w->control, known[i].worker_id,
							     chunk_id, unmodified_for_ms,
							     lease_epoch, DELETE_TIMEOUT_MS,
							     &tickets[pushes])
				   : -ENOTCONN;
		if (r == 0) {
			pushed_to[pushes++] = &known[i];
			continue;
		}
		if (r != -ENOTCONN)
			efs_warn("chunk %.12s: cannot push its delete to worker %s (%s): calling "
				 "it over HTTP",
				 chunk_id, known[i].worker_id, strerror(-r));
		of[n++] = &known[i];
	}
	while (pushes > 0) {
		int st;
		size_t k = efs_control_collect(w->control, tickets, pushes, &st, NULL);
		if (k == pushes) {
			/* Sent, not waited for: the master is stopping
			 * (efs_control_delete_send says why that is safe).
			 * No HTTP retry: it could wait DELETE_TIMEOUT_MS. */
			for (unsigned j = 0; j < pushes; j++) {
				efs_info("chunk %.12s: delete pushed to worker %s not waited for: "
					 "this master is stopping (a copy it leaves is an orphan "
					 "for the worker's next chunk report)",
					 chunk_id, pushed_to[j]->worker_id);
				efs_control_forget(w->control, tickets[j]);
			}
			failed += (int)pushes;
			cancelled = true;
			break;
		}
		const struct efs_replica *to = pushed_to[k];
		pushes--;
		tickets[k] = tickets[pushes];
		pushed_to[k] = pushed_to[pushes];
		if (st > 0 && st != 503) {
			char where[EFS_ID_MAX + 32];
			snprintf(where, sizeof(where), "worker %s (gRPC)", to->worker_id);
			failed += delete_outcome(w, chunk_id, to, where, st, st == 409, NULL,
						 lease_epoch);
			continue;
		}
		if (st == 503)
			efs_info("chunk %.12s: worker %s is busy with other pushed deletes: calling "
				 "it over HTTP",
				 chunk_id, to->worker_id);
		else
			efs_warn("chunk %.12s: delete pushed to worker %s got no answer (%s): "
				 "calling it over HTTP",
				 chunk_id, to->worker_id, strerror(-st));
		of[n++] = to;
	}
	snprintf(condition, sizeof(condition), "X-Unmodified-For-Ms: %lld",
		 (long long)unmodified_for_ms);
	snprintf(epoch_header, sizeof(epoch_header), EFS_HDR_LEASE_EPOCH ": %llu",
		 (unsigned long long)lease_epoch);
	for (unsigned i = 0; i < n; i++) {
		snprintf(urls[i], sizeof(urls[i]), "%s/chunks/%s", of[i]->url, chunk_id);
		efs_http_call_init(&calls[i], "DELETE", urls[i]);
		calls[i].bearer = w->io.cluster_secret;
		calls[i].headers[0] = condition;
		/* A worker of another cluster answers 409 wrong_cluster and
		 * keeps the chunk. */
		calls[i].headers[1] = w->io.cluster_header[0] ? w->io.cluster_header : NULL;
		calls[i].headers[2] = lease_epoch ? epoch_header : NULL;
		calls[i].timeout_ms = DELETE_TIMEOUT_MS;
		calls[i].connect_timeout_ms = DELETE_CONNECT_TIMEOUT_MS;
		calls[i].resp_cap = 16 * 1024;
		callp[i] = &calls[i];
	}
	efs_http_call_run_parallel(w->io.http, callp, n);
	for (unsigned i = 0; i < n; i++) {
		long st = calls[i].status;
		bool stale = !calls[i].error && st == 409 && calls[i].resp.data &&
			     strstr(calls[i].resp.data, "\"stale_lease_epoch\"");
		failed += delete_outcome(w, chunk_id, of[i], urls[i], st, stale,
					 calls[i].error ? calls[i].errmsg : NULL, lease_epoch);
		efs_http_call_release(&calls[i]);
	}
	return cancelled ? -ECANCELED : failed;
}

static int workers_exists(void *impl, const char *chunk_id, const struct efs_replica *known,
			  unsigned known_count)
{
	struct workers *w = impl;
	struct efs_target have[EFS_MAX_REPLICAS];
	unsigned good = usable_targets(w, known, known_count, have);
	if (good == 0)
		return 0;
	efs_chunk_confirm(&w->io, chunk_id, have, &good, NULL, NULL);
	return good > 0;
}

static void workers_pin(void *impl, const char *chunk_id)
{
	struct workers *w = impl;
	efs_chunk_writing_begin(&w->io, chunk_id);
}

static void workers_unpin(void *impl, const char *chunk_id)
{
	struct workers *w = impl;
	efs_chunk_writing_end(&w->io, chunk_id);
}

static bool workers_pinned(void *impl, const char *chunk_id)
{
	struct workers *w = impl;
	return efs_chunk_is_writing(&w->io, chunk_id);
}

static void workers_free(void *impl)
{
	struct workers *w = impl;
	if (!w)
		return;
	efs_replica_batch_free(w->io.batch);
	efs_chunk_io_release(&w->io);
	free(w);
}

static int workers_writable(void *impl, unsigned copies, char *why, size_t why_len)
{
	struct workers *w = impl;
	size_t alive = 0;
	unsigned needed = copies ? copies : w->replication_factor;
	int r = efs_placement_live_count(w->io.placement, &alive);
	if (r < 0)
		return r;
	if (alive >= needed)
		return 0;
	snprintf(why, why_len, "%zu live workers, %u needed for every %s", alive, needed,
		 copies ? "stripe's shards" : "replica");
	return -ENOSPC;
}

static bool workers_location_live(void *impl, const struct efs_replica *rep)
{
	struct workers *w = impl;
	return !rep->bad && efs_replica_alive(&w->io, rep);
}

static const struct efs_chunk_backend_ops workers_ops = {
	.name = "workers",
	.put = workers_put,
	.get = workers_get,
	.remove = workers_remove,
	.exists = workers_exists,
	.list = NULL,	/* reconciliation: the workers report their chunks */
	.pin = workers_pin,
	.unpin = workers_unpin,
	.pinned = workers_pinned,
	.erasure_coding = true,
	.writable = workers_writable,
	.location_live = workers_location_live,
	.health = NULL, /* the registry's workers alive */
	.free = workers_free,
};

int efs_chunk_workers_new(const struct efs_chunk_workers_config *cfg,
			  struct efs_chunk_backend **out)
{
	struct workers *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	efs_chunk_io_init(&w->io, cfg->meta, cfg->placement, cfg->http, cfg->cluster_secret,
			  cfg->worker_dead_after_ms);
	if (cfg->cluster_id)
		efs_chunk_io_set_cluster(&w->io, cfg->cluster_id);
	w->replication_factor = cfg->replication_factor;
	w->control = cfg->control;
	if (cfg->replica_batch_items > 0) {
		struct efs_replica_batch_config bc = {.http = cfg->http,
						      .cluster_secret = cfg->cluster_secret,
						      .cluster_header = w->io.cluster_header,
						      .max_items = cfg->replica_batch_items};
		int r = efs_replica_batch_new(&bc, &w->io.batch);
		if (r < 0) {
			workers_free(w);
			return r;
		}
	}
	return efs_chunk_backend_new(&workers_ops, w, out);
}

struct efs_chunk_io *efs_chunk_workers_io(struct efs_chunk_backend *b)
{
	if (!b || b->ops != &workers_ops)
		return NULL;
	return &((struct workers *)b->impl)->io;
}

