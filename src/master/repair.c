/* SPDX-License-Identifier: MIT */
/* repair.c - the re-replication loop. */
#include "master/repair.h"
#include "echofs/codec.h"
#include "echofs/control_plane.h"
#include "echofs/log.h"
#include "echofs/pace.h"
#include "echofs/util.h"
#include "master/chunk_ec.h"
#include "master/chunk_io.h"
#include "master/control.h"
#include "master/ec_convert.h"
#include "master/placement.h"

#include <stdlib.h>
#include <string.h>

#define REPAIR_INTERVAL_MS 1000
#define REPAIR_BACKOFF_MS 10000
/* Chunks taken from the metadata per repair pass (the most under-replicated
 * first); the rest wait for the next pass: REPAIR_INTERVAL_MS later, or at
 * once after a full pass that repaired something (then without the count,
 * which scans every chunk), so that REPAIR_BANDWIDTH, not this number,
 * bounds how fast a dead worker's chunks are copied. */
#define REPAIR_PASS_CHUNKS 64
/* After a pass that found nothing under-replicated, the next waits this
 * many times as long as the count took (repair.h). */
#define REPAIR_IDLE_SHARE 10

/* The workers that hold (or may still hold) a good replica of the chunk,
 * into @keep; returns how many. */
static unsigned holding_workers(const struct efs_replica *replicas, unsigned count,
				int64_t holding_after, struct efs_target *keep)
{
	unsigned holding = 0;
	for (unsigned i = 0; i < count; i++) {
		if (replicas[i].bad || replicas[i].last_heartbeat_ms <= holding_after)
			continue;
		efs_strlcpy(keep[holding].worker_id, replicas[i].worker_id,
			    sizeof(keep[holding].worker_id));
		efs_strlcpy(keep[holding].url, replicas[i].url, sizeof(keep[holding].url));
		holding++;
	}
	return holding;
}

/* A metadata call of a duty failed (other than "gone meanwhile"): the
 * store may be unreachable, and another master may take the lease: it is
 * dropped here before any further instruction goes out. Returns @r. */
static int meta_failed(const struct efs_repair_deps *d, int r)
{
	if (r < 0 && r != -ENOENT)
		efs_meta_lease_drop(d->meta);
	return r;
}

/* Pushed copies a pass has under way at once (sent, their Acks not yet
 * collected), in all and to one worker: a share of the worker copier's
 * queue (EFS_COPIER_JOBS_MAX, 16), so that repair alone does not fill it
 * and have copies refused busy. */
#define REPAIR_PUSHED_MAX 32
#define REPAIR_PUSHED_PER_WORKER 4

/* A chunk with pushed copies not all answered: it stays being written
 * (efs_chunk_writing_begin) until they are; then its replaced bad rows
 * are forgotten and, if a copy failed, it is written over HTTP. */
struct pushed_chunk {
	char chunk_id[65];
	unsigned waiting; /* copies unanswered, +1 while repair_one holds it; 0: free */
	bool failed;	  /* a copy failed or timed out: a retry over HTTP follows */
	bool keep_bad;	  /* the HTTP write or its record failed: keep the bad rows */
	unsigned bad_count, added_count;
	char bad[EFS_MAX_REPLICAS][EFS_ID_MAX + 1];   /* bad replicas to forget */
	char added[EFS_MAX_REPLICAS][EFS_ID_MAX + 1]; /* the new copies recorded */
};

/* One pass's pushed copies: tickets[i] is copies[i]'s. */
struct repair_pushes {
	struct efs_control_ticket *tickets[REPAIR_PUSHED_MAX];
	struct {
		size_t chunk; /* into chunks[] */
		char worker_id[EFS_ID_MAX + 1];
	} copies[REPAIR_PUSHED_MAX];
	size_t count;
	struct pushed_chunk chunks[REPAIR_PUSHED_MAX + 1]; /* + the one being sent */
	struct efs_repair_need retry[REPAIR_PASS_CHUNKS];  /* to write over HTTP */
	size_t retry_count;
	bool stale;    /* a worker refused the lease epoch (409): no more instructions */
	bool stopping; /* the master is stopping: a collect gave up waiting */
	uint64_t done; /* chunks whose pushed copies all landed (chunk_finish) */
};

/* All of @c's copies are answered: forget the bad replicas the new copies
 * replace (their workers, if they still hold a copy, are told to delete
 * it at their next report), end its write, and queue an HTTP retry if a
 * copy failed. The chunk counts as repaired here, once, when every copy
 * landed (acknowledged and recorded, its HTTP part written); a failed one
 * counts when its retry writes it. */
static void chunk_finish(struct efs_repair *rp, struct repair_pushes *ps, size_t c)
{
	const struct efs_repair_deps *d = &rp->deps;
	struct pushed_chunk *pc = &ps->chunks[c];
	for (unsigned i = 0; i < pc->bad_count && !pc->keep_bad && !ps->stale; i++) {
		bool rewritten = false;
		for (unsigned k = 0; k < pc->added_count; k++)
			rewritten |= strcmp(pc->added[k], pc->bad[i]) == 0;
		if (!rewritten)
			efs_meta_replica_remove(d->meta, pc->chunk_id, pc->bad[i]);
	}
	efs_chunk_writing_end(d->chunk_io, pc->chunk_id);
	if (!pc->failed && !pc->keep_bad && pc->added_count > 0)
		ps->done++;
	if (pc->failed && !ps->stale && ps->retry_count < REPAIR_PASS_CHUNKS) {
		struct efs_repair_need *need = &ps->retry[ps->retry_count++];
		memset(need, 0, sizeof(*need));
		efs_strlcpy(need->chunk_id, pc->chunk_id, sizeof(need->chunk_id));
	}
}

/* Waits for the first of the pass's pushed copies to be answered (or to
 * run out of time) and acts on it: a copy the worker stored (201) or held
 * (204) is recorded now, not before; any other answer leaves its chunk
 * for an HTTP retry (a 409 stops the pass). When the master stops
 * meanwhile (efs_repair_stop), returns at once with ps->stopping set and
 * every copy still under way. */
static void collect_one(struct efs_repair *rp, struct repair_pushes *ps)
{
	const struct efs_repair_deps *d = &rp->deps;
	int st;
	size_t i = efs_control_collect(d->control, ps->tickets, ps->count, &st, &rp->stopping);
	if (i == ps->count) {
		ps->stopping = true;
		return;
	}
	/* An Ack that came before the stop is still recorded below; no more
	 * copies are sent after it. */
	ps->stopping |= atomic_load(&rp->stopping);
	size_t c = ps->copies[i].chunk;
	char worker_id[EFS_ID_MAX + 1];
	efs_strlcpy(worker_id, ps->copies[i].worker_id, sizeof(worker_id));
	ps->count--;
	ps->tickets[i] = ps->tickets[ps->count];
	ps->copies[i] = ps->copies[ps->count];
	struct pushed_chunk *pc = &ps->chunks[c];
	if (st == 201 || st == 204) {
		const char *ids[1] = {worker_id};
		int r = meta_failed(d, efs_meta_replica_add(d->meta, pc->chunk_id, ids, 1,
							   efs_now_ms()));
		if (r == 0 && pc->added_count < EFS_MAX_REPLICAS)
			efs_strlcpy(pc->added[pc->added_count++], worker_id, sizeof(pc->added[0]));
		if (r == 0)
			efs_debug("repair: chunk %.12s: the copy pushed to worker %s is stored "
				  "(%d): recorded",
				  pc->chunk_id, worker_id, st);
		pc->keep_bad |= r < 0 && r != -ENOENT;
	} else if (st == 503) { /* its copier's queue is full (a busy worker) */
		efs_info("repair: worker %s is busy with other pushed copies: chunk %.12s is "
			 "written over HTTP instead",
			 worker_id, pc->chunk_id);
		pc->failed = true;
	} else {
		ps->stale |= st == 409;
		pc->failed = true;
		efs_warn("repair: pushed copy of chunk %.12s to worker %s failed (%s%d): %s",
			 pc->chunk_id, worker_id, st < 0 ? "errno " : "status ", st < 0 ? -st : st,
			 st == 409 ? "a newer lease epoch was seen: stopping"
				   : "writing it over HTTP instead");
	}
	if (--pc->waiting == 0)
		chunk_finish(rp, ps, c);
}

/* Copies @chunk (slot @c of @ps) to up to @want targets that have a
 * control stream, as CopyChunk instructions (the worker fetches it from a
 * good replica's worker, keep[0]), without waiting for their Acks: the
 * targets sent to go into @sent. With REPAIR_PUSHED_MAX copies under way,
 * or REPAIR_PUSHED_PER_WORKER on a target, the oldest answers are
 * collected first. Returns how many were sent. */
static unsigned push_copies(struct efs_repair *rp, struct repair_pushes *ps, size_t c,
			    const struct efs_chunk_info *chunk, const struct efs_target *keep,
			    unsigned holding, unsigned want, uint64_t epoch, struct efs_target *sent)
{
	const struct efs_repair_deps *d = &rp->deps;
	struct efs_target to[EFS_MAX_REPLICAS];
	unsigned pushed = 0;
	int n = efs_placement_choose(d->placement, want, chunk->stored_size, keep, holding, to);
	for (int i = 0; i < n && !ps->stale && !ps->stopping; i++) {
		if (!efs_control_streaming(d->control, to[i].worker_id))
			continue;
		for (;;) {
			size_t on_worker = 0;
			for (size_t k = 0; k < ps->count; k++)
				on_worker += strcmp(ps->copies[k].worker_id, to[i].worker_id) == 0;
			if (ps->stopping || (ps->count < REPAIR_PUSHED_MAX &&
					     on_worker < REPAIR_PUSHED_PER_WORKER))
				break;
			collect_one(rp, ps);
		}
		if (ps->stale || ps->stopping)
			break;
		struct efs_control_ticket *ticket;
		int r = efs_control_copy_send(d->control, to[i].worker_id, chunk->chunk_id,
					      chunk->size, keep[0].url, epoch, EFS_COPY_ACK_MS, &ticket);
		if (r < 0) {
			efs_warn("repair: pushed copy of chunk %.12s to worker %s not sent (errno "
				 "%d): writing it over HTTP instead",
				 chunk->chunk_id, to[i].worker_id, -r);
			continue;
		}
		ps->tickets[ps->count] = ticket;
		ps->copies[ps->count].chunk = c;
		efs_strlcpy(ps->copies[ps->count].worker_id, to[i].worker_id,
			    sizeof(ps->copies[0].worker_id));
		ps->count++;
		ps->chunks[c].waiting++;
		sent[pushed++] = to[i];
	}
	return pushed;
}

/* A free slot of @ps for @chunk_id (one always is: at most
 * REPAIR_PUSHED_MAX chunks have copies under way), held by the caller
 * (waiting 1), with the bad replicas of @replicas to forget. */
static size_t chunk_slot(struct repair_pushes *ps, const char *chunk_id,
			 const struct efs_replica *replicas, unsigned count)
{
	size_t c = 0;
	while (ps->chunks[c].waiting > 0)
		c++;
	struct pushed_chunk *pc = &ps->chunks[c];
	memset(pc, 0, sizeof(*pc));
	efs_strlcpy(pc->chunk_id, chunk_id, sizeof(pc->chunk_id));
	pc->waiting = 1;
	for (unsigned i = 0; i < count; i++)
		if (replicas[i].bad)
			efs_strlcpy(pc->bad[pc->bad_count++], replicas[i].worker_id,
				    sizeof(pc->bad[0]));
	return c;
}

/* Whether unrecoverable stripe @chunk_id is logged already; notes it if
 * not (the last EFS_REPAIR_LOGGED_MAX are remembered). */
static bool logged_before(struct efs_repair *rp, const char *chunk_id)
{
	for (unsigned i = 0; i < EFS_REPAIR_LOGGED_MAX; i++)
		if (strcmp(rp->unrecoverable_logged[i], chunk_id) == 0)
			return true;
	efs_strlcpy(rp->unrecoverable_logged[rp->unrecoverable_next], chunk_id,
		    sizeof(rp->unrecoverable_logged[0]));
	rp->unrecoverable_next = (rp->unrecoverable_next + 1) % EFS_REPAIR_LOGGED_MAX;
	return false;
}

/* @chunk_id was rebuilt: should it become unrecoverable again, it is
 * logged again. */
static void logged_forget(struct efs_repair *rp, const char *chunk_id)
{
	for (unsigned i = 0; i < EFS_REPAIR_LOGGED_MAX; i++)
		if (strcmp(rp->unrecoverable_logged[i], chunk_id) == 0)
			rp->unrecoverable_logged[i][0] = '\0';
}

/* Rebuilds the missing shards of EC chunk @chunk (rows @replicas): the
 * new shards are durable (efs_chunk_ec_rebuild) and recorded before any
 * replaced row is removed. Returns the bytes written (for pacing), 0 when
 * it must wait (a held shard cannot be read now), or -errno; -ESTALE when
 * the lease is no longer held here. */
static int64_t rebuild_one(struct efs_repair *rp, const struct efs_chunk_info *chunk,
			   const struct efs_replica *replicas, unsigned count,
			   int64_t holding_after, struct efs_buf *data, struct efs_buf *scratch)
{
	const struct efs_repair_deps *d = &rp->deps;
	const char *added_ids[EFS_MAX_REPLICAS];
	struct efs_ec_rebuild rb;
	unsigned n = chunk->ec_data + chunk->ec_parity;
	/* The lease as of now: dropped, nothing is sent. */
	uint64_t epoch = efs_meta_lease_epoch(d->meta);
	if (epoch == 0)
		return -ESTALE;
	efs_chunk_writing_begin(d->chunk_io, chunk->chunk_id);
	int w = efs_chunk_ec_rebuild(d->chunk_io, chunk, replicas, count, holding_after, epoch,
				     data, scratch, &rb);
	/* Whatever landed is recorded, even when not all of it could be. */
	for (unsigned i = 0; i < rb.added_count; i++)
		added_ids[i] = rb.added[i].worker_id;
	int r = rb.added_count
		    ? meta_failed(d, efs_meta_replica_add(d->meta, chunk->chunk_id, added_ids,
							  rb.added_count, efs_now_ms()))
		    : 0;
	efs_chunk_writing_end(d->chunk_io, chunk->chunk_id);
	if (w == -EAGAIN)
		return 0; /* its next pass (logged at debug by the rebuild) */
	if (w == -EIO) {
		unsigned good = 0;
		for (unsigned i = 0; i < count; i++)
			good += !replicas[i].bad && replicas[i].last_heartbeat_ms > holding_after;
		if (!logged_before(rp, chunk->chunk_id))
			efs_error(
			    "repair: EC chunk %s (ec:%u+%u) is UNRECOVERABLE for now: fewer "
			    "than %u of its %u shards read back good (%u good rows of %u "
			    "recorded); nothing rebuilt (never from wrong bytes): its data is "
			    "unavailable until a worker holding a shard of it returns",
			    chunk->chunk_id, chunk->ec_data, chunk->ec_parity, chunk->ec_data, n,
			    good, count);
		return w;
	}
	if (w < 0 && rb.added_count == 0) {
		if (w == -ENOSPC) /* no worker free for it: counted, as replica repair's */
			efs_debug("repair: EC chunk %.12s (%u shards): no live worker with room "
				  "outside those holding its good shards; not rebuilt",
				  chunk->chunk_id, n);
		else if (w != -ESTALE)
			efs_warn("repair: EC chunk %.12s: %u of %u shards missing; rebuild failed: "
				 "%s",
				 chunk->chunk_id, rb.missing, n, strerror(-w));
		return w;
	}
	if (r < 0)
		return r == -ENOENT ? 0 : r;
	atomic_fetch_add(&rp->ec_shards_rebuilt_total, rb.added_count);
	logged_forget(rp, chunk->chunk_id);
	/* The replaced rows go last: their workers, if they still hold a
	 * copy, are told to delete it at their next report. */
	for (unsigned i = 0; i < rb.drop_count; i++)
		efs_meta_replica_remove(d->meta, chunk->chunk_id, replicas[rb.drop[i]].worker_id);
	efs_info("repair: EC chunk %.12s (ec:%u+%u): %u of %u shards were missing; rebuilt %u "
		 "(first on worker %s), %u replaced rows removed",
		 chunk->chunk_id, chunk->ec_data, chunk->ec_parity, rb.missing, n, rb.added_count,
		 rb.added[0].worker_id, rb.drop_count);
	if (w < 0)
		return w; /* -ESTALE after some landed */
	return (int64_t)(rb.shard_bytes * rb.added_count);
}

/* Copies one chunk to as many new workers as it lacks (an EC chunk: its
 * missing shards are rebuilt): down control streams as pushed copies
 * (with @ps; NULL: all over HTTP), whose Acks the pass collects later,
 * and the rest over HTTP now. Returns the bytes copied or sent (for
 * pacing) or -errno; -ESTALE when the lease is no longer held here (the
 * pass stops), -ECANCELED when the master stops. *@repaired: the chunk
 * is whole now (count it); false as well when pushed copies are under way
 * (chunk_finish counts it when they have all landed). */
static int64_t repair_one(struct efs_repair *rp, const struct efs_repair_need *need,
			  int64_t holding_after, struct efs_buf *data, struct efs_buf *scratch,
			  struct efs_buf *encoded, struct repair_pushes *ps, bool *repaired)
{
	const struct efs_repair_deps *d = &rp->deps;
	struct efs_chunk_info chunk;
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	struct efs_target keep[EFS_MAX_REPLICAS], added[EFS_MAX_REPLICAS];
	const char *added_ids[EFS_MAX_REPLICAS];
	unsigned count = 0;
	*repaired = false;
	int r = meta_failed(d, efs_meta_chunk_get(d->meta, need->chunk_id, &chunk, replicas, &count));
	if (r < 0)
		return r == -ENOENT ? 0 : r; /* collected meanwhile */
	if (chunk.ec_data > 0) {
		int64_t rebuilt = rebuild_one(rp, &chunk, replicas, count, holding_after, data,
					      scratch);
		*repaired = rebuilt > 0;
		return rebuilt;
	}

	unsigned holding = holding_workers(replicas, count, holding_after, keep);
	if (holding >= d->replication_factor)
		return 0;
	/* Somewhere to put a copy? If not, do not read the chunk at all. */
	struct efs_target probe[EFS_MAX_REPLICAS];
	r = efs_placement_choose(d->placement, 1, chunk.stored_size, keep, holding, probe);
	if (r <= 0)
		return r < 0 ? r : -ENOSPC;

	/* Good replicas are read first; with none (or none readable), the bad
	 * ones: bytes that verify make that replica good again. */
	bool had_good = holding > 0;
	r = efs_chunk_read(d->chunk_io, &chunk, replicas, count, data, scratch);
	if (r == -ESTALE)
		r = -EIO; /* a row holds a shard (ec_convert.c): not the lease's -ESTALE */
	if (r < 0) {
		/* With no good replica this is expected of a chunk truly lost
		 * (it still counts in under_replicated): not an error each
		 * pass. */
		if (had_good)
			efs_error("repair: chunk %s has no readable replica (%u recorded): its "
				  "data is unavailable until a worker holding it returns",
				  chunk.chunk_id, count);
		else
			efs_debug("repair: chunk %.12s: none of its %u bad replicas verifies",
				  chunk.chunk_id, count);
		return r;
	}
	/* The read may have marked replicas bad or good again: copy to what
	 * is missing now, and keep what turned good. */
	r = meta_failed(d, efs_meta_chunk_get(d->meta, need->chunk_id, &chunk, replicas, &count));
	if (r < 0)
		return r == -ENOENT ? 0 : r;
	holding = holding_workers(replicas, count, holding_after, keep);
	if (!had_good && holding > 0)
		efs_info("repair: chunk %.12s had no good replica; a bad one read back intact "
			 "and is good again (%u of %u replicas good)",
			 chunk.chunk_id, holding, count);
	if (holding >= d->replication_factor)
		return 0;
	unsigned missing = d->replication_factor - holding;
	bool gzip = false;
	r = efs_codec_encode(data->data, data->len, encoded, &gzip);
	if (r < 0)
		return r;
	const char *bytes = gzip ? encoded->data : data->data;
	size_t len = gzip ? encoded->len : data->len;
	unsigned written = 0;
	/* The lease as of now: dropped (by a failed metadata call here or in
	 * another duty), nothing is sent. */
	uint64_t epoch = efs_meta_lease_epoch(d->meta);
	if (epoch == 0)
		return -ESTALE;
	efs_chunk_writing_begin(d->chunk_io, chunk.chunk_id);
	/* Down the targets' control streams first (their Acks are collected
	 * later: the copies are recorded as they come); the rest over HTTP now,
	 * to other workers than those. */
	unsigned sent = 0;
	size_t c = SIZE_MAX;
	if (ps && d->control && holding > 0 && efs_control_streams(d->control) > 0) {
		c = chunk_slot(ps, chunk.chunk_id, replicas, count);
		sent = push_copies(rp, ps, c, &chunk, keep, holding, missing, epoch, added);
	}
	bool stale = ps && ps->stale, stopping = ps && ps->stopping;
	int w = stale ? -ESTALE : stopping ? -ECANCELED : 0;
	if (w == 0 && sent < missing) {
		struct efs_target exclude[2 * EFS_MAX_REPLICAS];
		memcpy(exclude, keep, holding * sizeof(*keep));
		memcpy(exclude + holding, added, sent * sizeof(*added));
		w = efs_chunk_write(d->chunk_io, chunk.chunk_id, bytes, len, gzip, missing - sent,
				    exclude, holding + sent, epoch, added + sent, &written);
	}
	/* Whatever was written counts, even when not all of it could be. */
	for (unsigned i = 0; i < written; i++)
		added_ids[i] = added[sent + i].worker_id;
	r = written ? meta_failed(d, efs_meta_replica_add(d->meta, chunk.chunk_id, added_ids,
							  written, efs_now_ms()))
		    : 0;
	if (c != SIZE_MAX) {
		/* The rest when its last pushed copy is answered (chunk_finish). */
		struct pushed_chunk *pc = &ps->chunks[c];
		for (unsigned i = 0; i < written && r == 0; i++)
			efs_strlcpy(pc->added[pc->added_count++], added_ids[i],
				    sizeof(pc->added[0]));
		pc->keep_bad |= w < 0 || r < 0;
		if (--pc->waiting == 0)
			chunk_finish(rp, ps, c);
	} else {
		efs_chunk_writing_end(d->chunk_io, chunk.chunk_id);
	}
	if (w < 0)
		return w;
	if (r < 0)
		return r == -ENOENT ? 0 : r;
	if (c == SIZE_MAX) {
		/* The bad replicas are replaced: forget them (their workers, if
		 * they still hold a copy, are told to delete it at their next
		 * report). */
		for (unsigned i = 0; i < count; i++) {
			bool rewritten = false;
			for (unsigned k = 0; k < written; k++)
				rewritten |= strcmp(added[k].worker_id, replicas[i].worker_id) == 0;
			if (replicas[i].bad && !rewritten)
				efs_meta_replica_remove(d->meta, chunk.chunk_id,
							replicas[i].worker_id);
		}
	}
	efs_debug("repair: chunk %.12s had %u usable replicas; %u copies pushed, %u written "
		  "(first: %s)",
		  chunk.chunk_id, holding, sent, written, added[0].worker_id);
	*repaired = c == SIZE_MAX && written > 0;
	return (int64_t)len * (sent + written);
}

/* The heartbeat time after which a worker's replicas count as held at
 * @now_ms (Unix ms): a dead worker's count until it has been dead for
 * REPAIR_AFTER_MS. A pass's list and a back-off's watch use this one
 * rule, so that the watch sees the change that changes the list. */
static int64_t holding_after_at(const struct efs_repair_deps *d, int64_t now_ms)
{
	return now_ms - d->worker_dead_after_ms - d->repair_after_ms;
}

/* One pass: count (unless @recount is false: a full pass just ran), then
 * repair up to REPAIR_PASS_CHUNKS chunks. True when the pass was full and
 * repaired some: the next should follow at once. */
static bool repair_pass(struct efs_repair *rp, struct efs_buf *data, struct efs_buf *scratch,
			struct efs_buf *encoded, bool recount)
{
	const struct efs_repair_deps *d = &rp->deps;
	struct efs_repair_need needs[REPAIR_PASS_CHUNKS];
	uint64_t under = 0, degraded = 0, unrecoverable = 0;
	size_t n = 0;
	int64_t now = efs_now_ms();

	/* What the operator watches: chunks short of good replicas on workers
	 * alive right now. */
	int64_t scan_started = efs_mono_ms();
	if (!recount) {
		under = 1; /* unknown: the list says */
	} else if (efs_meta_under_replicated(d->meta, d->replication_factor, now - d->worker_dead_after_ms,
				      &under) == 0 &&
	    efs_meta_ec_stripes(d->meta, now - d->worker_dead_after_ms, &degraded,
				&unrecoverable) == 0) {
		atomic_store(&rp->under_replicated, (int64_t)under);
		atomic_store(&rp->ec_degraded, (int64_t)degraded);
		atomic_store(&rp->ec_unrecoverable, (int64_t)unrecoverable);
		under += degraded; /* what this pass may act on */
		/* Nothing to do: the count's cost sets when to look again. */
		int64_t took = efs_mono_ms() - scan_started;
		rp->idle_until = under == 0 ? scan_started + took * REPAIR_IDLE_SHARE : 0;
		if (under == 0 && took * REPAIR_IDLE_SHARE > REPAIR_INTERVAL_MS)
			efs_debug("repair: counting under-replicated chunks took %lld ms; the next "
				  "count in %lld ms",
				  (long long)took, (long long)(took * REPAIR_IDLE_SHARE));
	} else {
		rp->store_ok_since = efs_mono_ms(); /* counts from its return */
		efs_meta_lease_drop(d->meta);
		return false;
	}
	if (under == 0 || !efs_meta_lease(d->meta))
		return false; /* nothing to do, or another master repairs */
	/* Heartbeat times in the store are stale after a start or an outage
	 * of the store: wait until every live worker has beaten again, or
	 * all of them would look dead and be copied needlessly. */
	if (efs_mono_ms() - rp->store_ok_since < 2 * d->worker_dead_after_ms)
		return false;
	/* What repair acts on; the workers counted so, as the list is read:
	 * the baseline of a back-off after this pass. */
	int64_t holding_after = holding_after_at(d, now);
	uint64_t counted = 0;
	bool watched = efs_placement_heard_digest(d->placement, holding_after, &counted) == 0;
	if (meta_failed(d, efs_meta_repair_list(d->meta, d->replication_factor, holding_after,
						REPAIR_PASS_CHUNKS, needs, &n)) < 0 ||
	    n == 0)
		return false;

	struct efs_pace pace;
	uint64_t copied = 0, done = 0, failed = 0;
	bool stopped = false, stopping = false;
	struct repair_pushes *ps = calloc(1, sizeof(*ps));
	if (!ps)
		return false;
	efs_pace_init(&pace, d->bandwidth);
	/* The pass's chunks, then those whose pushed copies failed (over
	 * HTTP), once the copies still under way are answered. */
	for (size_t i = 0; !stopped; i++) {
		const struct efs_repair_need *need = NULL;
		bool http_only = false;
		if (atomic_load(&rp->stopping)) {
			stopped = stopping = true; /* no more copies sent or written */
			break;
		}
		if (i < n) {
			need = &needs[i];
		} else if (ps->count > 0) {
			collect_one(rp, ps);
			stopped = stopping = ps->stopping;
			i--;
			continue;
		} else if (ps->retry_count > 0 && !ps->stale) {
			need = &ps->retry[--ps->retry_count];
			http_only = true;
			i--;
		} else {
			break;
		}
		bool repaired;
		int64_t r = repair_one(rp, need, holding_after, data, scratch, encoded,
				       http_only ? NULL : ps, &repaired);
		if (r == -ECANCELED || ps->stopping) {
			stopped = stopping = true; /* the master stops: the lease stays */
			break;
		}
		if (r == -ESTALE || ps->stale || (r < 0 && efs_meta_lease_epoch(d->meta) == 0)) {
			/* The lease is gone (dropped here, or a worker has
			 * seen a newer epoch: another master holds it): not
			 * another instruction until it is taken again. */
			efs_meta_lease_drop(d->meta);
			stopped = true;
			break;
		}
		if (r < 0) {
			failed++;
			continue;
		}
		done += repaired;
		copied += (uint64_t)r;
		/* Pace: never ahead of REPAIR_BANDWIDTH bytes per second. */
		int64_t ahead = efs_pace_add(&pace, (uint64_t)r);
		if (ahead > 0 && efs_ticker_wait(&rp->ticker, ahead)) {
			stopped = stopping = true;
			break;
		}
	}
	/* What is still under way: answered and recorded (their HTTP retries
	 * wait for the next pass), or, when the master stops, forgotten (an
	 * Ack that comes later finds no ticket: efs_control_forget). */
	size_t abandoned = 0;
	while (ps->count > 0) {
		if (!stopping) {
			collect_one(rp, ps);
			stopping = ps->stopping;
			continue;
		}
		abandoned++;
		ps->count--;
		efs_control_forget(d->control, ps->tickets[ps->count]);
		if (--ps->chunks[ps->copies[ps->count].chunk].waiting == 0)
			efs_chunk_writing_end(d->chunk_io,
					      ps->chunks[ps->copies[ps->count].chunk].chunk_id);
	}
	if (abandoned)
		efs_info("repair: stopping: %zu pushed copies not waited for (their Acks are "
			 "ignored; the next lease holder repairs what they did not)",
			 abandoned);
	done += ps->done;
	free(ps);
	atomic_fetch_add(&rp->repaired_total, done);
	atomic_fetch_add(&rp->failed_total, failed);
	/* Nothing could be done (no room, nothing readable): back off, until
	 * the workers repair counts change (backoff_over). */
	rp->backoff_until = 0;
	if (done == 0 && failed > 0) {
		rp->backoff_until = efs_mono_ms() + REPAIR_BACKOFF_MS;
		rp->backoff_counted = counted;
		rp->backoff_watched = watched;
	}
	if ((done || failed) && recount)
		efs_info(
		    "repair: %llu chunks re-replicated or rebuilt (%llu bytes), %llu failed; "
		    "%llu were under-replicated, %llu EC stripes degraded (%llu unrecoverable)",
		    (unsigned long long)done, (unsigned long long)copied,
		    (unsigned long long)failed, (unsigned long long)(under - degraded),
		    (unsigned long long)degraded, (unsigned long long)unrecoverable);
	else if (done || failed)
		efs_info("repair: %llu more chunks re-replicated or rebuilt (%llu bytes), %llu "
			 "failed (a full pass continued)",
			 (unsigned long long)done, (unsigned long long)copied,
			 (unsigned long long)failed);
	return !stopped && n == REPAIR_PASS_CHUNKS && done > 0;
}

/* Whether a back-off ends early: the workers repair counts as holding
 * their replicas (heard from within WORKER_DEAD_AFTER_MS +
 * REPAIR_AFTER_MS) changed since the failed pass read its list. Workers
 * lost one after another (a rack at once) leave chunks whose only counted
 * holders are dead (or unreachable) but still counted: every read of
 * them fails, and with the fewest replicas they fill the next pass too,
 * until the last of those holders drops out of the count. Then they leave
 * the list and the chunks that can be copied come first: at once, not
 * the rest of REPAIR_BACKOFF_MS later. A worker that joins counts too (it
 * may be the room a pass lacked). */
static bool backoff_over(struct efs_repair *rp)
{
	const struct efs_repair_deps *d = &rp->deps;
	int64_t holding_after = holding_after_at(d, efs_now_ms());
	uint64_t counted;
	if (!rp->backoff_watched ||
	    efs_placement_heard_digest(d->placement, holding_after, &counted) < 0 ||
	    counted == rp->backoff_counted)
		return false;
	efs_info("repair: the workers counted as holding replicas changed during a back-off "
		 "after a pass that repaired nothing: repairing again now");
	return true;
}

static void repair_main(struct efs_ticker *t, void *ctx)
{
	struct efs_repair *rp = ctx;
	struct efs_buf data, scratch, encoded;
	efs_buf_init(&data, SIZE_MAX);
	efs_buf_init(&scratch, SIZE_MAX);
	efs_buf_init(&encoded, SIZE_MAX);
	bool again = false; /* the last pass was full: the next follows at once */
	while (!efs_ticker_wait(t, again ? 0 : REPAIR_INTERVAL_MS)) {
		int64_t mono = efs_mono_ms();
		if (mono < rp->backoff_until && backoff_over(rp))
			rp->backoff_until = 0;
		if (again || (mono >= rp->backoff_until && mono >= rp->idle_until))
			again = repair_pass(rp, &data, &scratch, &encoded, !again);
		/* In this thread: never on a chunk repair is working on, and
		 * only when repair has no full pass to follow at once. */
		if (rp->deps.convert && !again)
			efs_ec_convert_pass(rp->deps.convert, t, &data, &scratch);
	}
	efs_buf_release(&data);
	efs_buf_release(&scratch);
	efs_buf_release(&encoded);
}

int efs_repair_start(struct efs_repair *rp, const struct efs_repair_deps *deps)
{
	rp->deps = *deps;
	atomic_init(&rp->stopping, false);
	rp->store_ok_since = efs_mono_ms();
	rp->backoff_until = 0;
	rp->backoff_watched = false;
	rp->idle_until = 0;
	atomic_init(&rp->under_replicated, -1);
	atomic_init(&rp->repaired_total, 0);
	atomic_init(&rp->failed_total, 0);
	atomic_init(&rp->ec_degraded, -1);
	atomic_init(&rp->ec_unrecoverable, -1);
	atomic_init(&rp->ec_shards_rebuilt_total, 0);
	memset(rp->unrecoverable_logged, 0, sizeof(rp->unrecoverable_logged));
	rp->unrecoverable_next = 0;
	return efs_ticker_start(&rp->ticker, repair_main, rp);
}

void efs_repair_stop(struct efs_repair *rp)
{
	if (!rp->ticker.running)
		return;
	/* A pass waiting for pushed copies' Acks (up to EFS_COPY_ACK_MS) gives
	 * up at once, as its pacing wait does when the ticker stops. */
	atomic_store(&rp->stopping, true);
	if (rp->deps.control)
		efs_control_wake(rp->deps.control);
	efs_ticker_stop(&rp->ticker);
}
