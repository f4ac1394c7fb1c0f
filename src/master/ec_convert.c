/* SPDX-License-Identifier: MIT */
/* ec_convert.c - old replicated files become erasure-coded (see
 * ec_convert.h; the order of the steps: docs/LIFECYCLE.md T36-T40). */
#include "master/ec_convert.h"
#include "echofs/log.h"
#include "echofs/pace.h"
#include "echofs/util.h"
#include "master/chunk_ec.h"
#include "master/chunk_io.h"
#include "master/placement.h"

#include <stdlib.h>
#include <string.h>

/* Files taken from the metadata per listing. */
#define CONVERT_LIST_FILES 4
/* A pass goes on to the next file only while it has handled fewer chunks
 * than this: repair's next pass is not held up long. */
#define CONVERT_PASS_CHUNKS 64
/* A file's chunks read from the metadata at a time. */
#define FILE_CHUNK_ROWS 16
/* After a full cycle over the candidates that converted nothing, the next
 * waits EC_AFTER / 10, within these bounds. */
#define CONVERT_IDLE_MIN_MS 1000
#define CONVERT_IDLE_MAX_MS 60000

/* What convert_chunk made of a chunk. */
#define CHUNK_WHOLE 0 /* EC, every row a distinct shard */
#define CHUNK_LATER 1 /* not (yet): skipped, or partly done; a later pass goes on */

void efs_ec_convert_init(struct efs_ec_converter *cv, const struct efs_ec_convert_deps *deps)
{
	memset(cv, 0, sizeof(*cv));
	cv->deps = *deps;
	atomic_init(&cv->chunks_total, 0);
	atomic_init(&cv->bytes_total, 0);
	atomic_init(&cv->files_total, 0);
}

/* Whether every row of replicated @chunk is a good copy on a live worker,
 * and K + M - @count workers outside them could take a shard: only then is
 * it read. */
static bool ready(struct efs_ec_converter *cv, const struct efs_chunk_info *chunk,
		  const struct efs_replica *replicas, unsigned count)
{
	struct efs_chunk_io *io = cv->deps.chunk_io;
	struct efs_target holders[EFS_MAX_REPLICAS], probe[EFS_MAX_REPLICAS];
	unsigned n = cv->deps.policy.data_shards + cv->deps.policy.parity_shards;
	if (count == 0 || count > n)
		return false;
	for (unsigned i = 0; i < count; i++) {
		if (replicas[i].bad || !replicas[i].url[0] || !efs_replica_alive(io, &replicas[i]))
			return false; /* repair's business first */
		efs_strlcpy(holders[i].worker_id, replicas[i].worker_id,
			    sizeof(holders[i].worker_id));
		efs_strlcpy(holders[i].url, replicas[i].url, sizeof(holders[i].url));
	}
	if (count == n)
		return true;
	uint64_t shard = chunk->stored_size / cv->deps.policy.data_shards + 64;
	int chosen = efs_placement_choose(io->placement, n - count, shard, holders, count, probe);
	return chosen >= (int)(n - count);
}

/* Converts chunk @chunk_id (LIFECYCLE T36-T40), or completes its conversion
 * when it is EC already (T39, after a crash). Adds the shard bytes written
 * to *@written. CHUNK_WHOLE, CHUNK_LATER, or -ESTALE (the lease is gone)
 * or another -errno of the store (the pass stops). */
static int convert_chunk(struct efs_ec_converter *cv, const char *chunk_id, uint64_t epoch,
			 struct efs_buf *data, struct efs_buf *scratch, uint64_t *written)
{
	const struct efs_ec_convert_deps *d = &cv->deps;
	struct efs_chunk_info chunk;
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	struct efs_ec_convert plan;
	const char *added_ids[EFS_MAX_REPLICAS];
	unsigned count = 0, left = 0;
	int r = efs_meta_chunk_get(d->meta, chunk_id, &chunk, replicas, &count);
	if (r == -ENOENT)
		return CHUNK_LATER; /* its file is going */
	if (r < 0)
		return r;
	if (chunk.ec_data > 0) {
		efs_chunk_writing_begin(d->chunk_io, chunk_id);
		r = efs_chunk_ec_finish(d->chunk_io, &chunk, replicas, count, epoch, data, scratch,
					&left);
		efs_chunk_writing_end(d->chunk_io, chunk_id);
		if (r == -ESTALE)
			return r;
		if (r < 0 || left > 0) {
			efs_debug("ec convert: EC chunk %.12s not whole yet (%s, %u full copies "
				  "left); a later pass goes on",
				  chunk_id, r < 0 ? strerror(-r) : "ok", left);
			return CHUNK_LATER;
		}
		return CHUNK_WHOLE;
	}
	if (!ready(cv, &chunk, replicas, count)) {
		efs_debug("ec convert: chunk %.12s waits: %u rows, not all good on live workers, "
			  "or too few other workers for %s",
			  chunk_id, count, "its shards");
		return CHUNK_LATER;
	}
	/* T36: the stored form, verified against the chunk id. */
	if ((r = efs_chunk_read(d->chunk_io, &chunk, replicas, count, data, scratch)) < 0) {
		efs_warn("ec convert: chunk %.12s: no replica read back good; not converted",
			 chunk_id);
		return CHUNK_LATER;
	}
	const struct efs_buf *stored = chunk.compressed ? scratch : data;
	if (stored->len != chunk.stored_size)
		return CHUNK_LATER;
	struct efs_chunk_info target = chunk;
	target.ec_data = d->policy.data_shards;
	target.ec_parity = d->policy.parity_shards;
	/* T36: the shards of the workers holding no copy, durable, unnamed
	 * (the write guard keeps this master's reports from deleting them;
	 * any master's keep them until ORPHAN_GRACE_MS). */
	efs_chunk_writing_begin(d->chunk_io, chunk_id);
	r = efs_chunk_ec_convert_begin(d->chunk_io, &target, stored->data, replicas, count, epoch,
				       &plan);
	if (r == 0) {
		/* T37: the flip, with the new shards' rows, in one transaction. */
		for (unsigned i = 0; i < plan.added_count; i++)
			added_ids[i] = plan.added[i].worker_id;
		r = efs_meta_chunk_make_ec(d->meta, chunk_id, target.ec_data, target.ec_parity,
					   added_ids, plan.added_count, efs_now_ms());
		if (r == -EALREADY || r == -ENOENT) {
			efs_debug("ec convert: chunk %.12s: %s meanwhile; its new shards are left "
				  "unnamed (deleted at their workers' reports)",
				  chunk_id, r == -ENOENT ? "released" : "converted");
			r = CHUNK_LATER;
		}
	} else if (r != -ESTALE) {
		efs_debug("ec convert: chunk %.12s: its shards could not all be written (%s); "
			  "%u landed, left unnamed",
			  chunk_id, strerror(-r), plan.added_count);
		r = CHUNK_LATER;
	}
	efs_chunk_writing_end(d->chunk_io, chunk_id);
	*written += (uint64_t)plan.slot * plan.added_count;
	if (r != 0) {
		efs_ec_convert_release(&plan);
		return r;
	}
	atomic_fetch_add(&cv->chunks_total, 1);
	atomic_fetch_add(&cv->bytes_total, chunk.size);
	/* T38: each holder's full copy becomes its shard, one at a time: the
	 * rows name them already. One that fails stays a full copy, readable;
	 * a later pass finishes it (T39). */
	for (unsigned h = 0; h < plan.holder_count; h++) {
		int w = efs_chunk_ec_convert_overwrite(d->chunk_io, &target, &plan, h, epoch);
		if (w == -ESTALE) {
			efs_ec_convert_release(&plan);
			return w;
		}
		if (w < 0)
			left++;
		else
			*written += plan.slot;
	}
	efs_ec_convert_release(&plan);
	efs_debug("ec convert: chunk %.12s is ec:%u+%u (%u full copies overwritten, %u left)",
		  chunk_id, target.ec_data, target.ec_parity, plan.holder_count - left, left);
	return left ? CHUNK_LATER : CHUNK_WHOLE;
}

/* Converts every chunk of candidate @file, then its policy. 0 when the
 * file is EC now, CHUNK_LATER when not, -ECANCELED when the loop is
 * stopping, or convert_chunk's error. *@chunks counts the chunks seen. */
static int convert_file(struct efs_ec_converter *cv, const struct efs_ec_candidate *file,
			uint64_t epoch, struct efs_ticker *t, struct efs_pace *pace,
			struct efs_buf *data, struct efs_buf *scratch, unsigned *chunks)
{
	const struct efs_ec_convert_deps *d = &cv->deps;
	uint64_t first = 0, before = atomic_load(&cv->chunks_total);
	bool whole = true;
	for (;;) {
		struct efs_file_chunk *batch = NULL;
		size_t n = 0;
		int r = efs_meta_file_chunks(d->meta, file->file_id, first, FILE_CHUNK_ROWS, &batch,
					     &n);
		if (r == -ENOENT)
			return CHUNK_LATER; /* deleted meanwhile */
		if (r < 0)
			return r;
		for (size_t i = 0; i < n; i++) {
			uint64_t written = 0;
			r = convert_chunk(cv, batch[i].chunk.chunk_id, epoch, data, scratch,
					  &written);
			++*chunks;
			if (r < 0) {
				free(batch);
				return r;
			}
			whole &= r == CHUNK_WHOLE;
			/* Pace: never ahead of EC_CONVERT_BANDWIDTH. */
			int64_t ahead = efs_pace_add(pace, written);
			if (ahead > 0 && efs_ticker_wait(t, ahead)) {
				free(batch);
				return -ECANCELED;
			}
		}
		free(batch);
		if (n < FILE_CHUNK_ROWS)
			break;
		first += n;
	}
	if (!whole)
		return CHUNK_LATER;
	char policy[EFS_POLICY_MAX_LEN + 1];
	if (efs_ec_policy_format(&d->policy, policy, sizeof(policy)) < 0)
		return -EINVAL;
	int r = efs_meta_file_set_policy(d->meta, file->file_id, policy,
					 d->policy.data_shards + d->policy.parity_shards);
	if (r == -ENOENT || r == -EAGAIN)
		return CHUNK_LATER; /* deleted, or a chunk is replicated again */
	if (r < 0)
		return r;
	atomic_fetch_add(&cv->files_total, 1);
	efs_info("ec convert: file %s (%llu bytes, %llu chunks converted here) is now %s",
		 file->file_id, (unsigned long long)file->size,
		 (unsigned long long)(atomic_load(&cv->chunks_total) - before), policy);
	return 0;
}

void efs_ec_convert_pass(struct efs_ec_converter *cv, struct efs_ticker *t, struct efs_buf *data,
			 struct efs_buf *scratch)
{
	const struct efs_ec_convert_deps *d = &cv->deps;
	struct efs_ec_candidate files[CONVERT_LIST_FILES];
	size_t n = 0;
	unsigned chunks = 0;

	if (cv->off || efs_mono_ms() < cv->idle_until || !efs_meta_lease(d->meta))
		return;
	uint64_t epoch = efs_meta_lease_epoch(d->meta);
	if (epoch == 0)
		return;
	int r = efs_meta_ec_candidates(d->meta, efs_now_ms() - d->after_ms, d->min_size,
				       cv->cursor_created_ms, cv->cursor_id, CONVERT_LIST_FILES,
				       files, &n);
	if (r == -ENOTSUP) {
		cv->off = true;
		efs_warn("EC_AFTER is set, but the metadata store keeps no erasure-coded chunks "
			 "(DynamoDB): conversion to EC is off");
		return;
	}
	if (r < 0) {
		efs_meta_lease_drop(d->meta); /* as the other duties: the store may be gone */
		return;
	}
	if (n == 0) {
		/* The end of a cycle over the candidates: one that converted
		 * nothing waits before the next (nothing old enough, or
		 * nothing that can be converted now). */
		if (!cv->cycle_progress) {
			int64_t idle =
			    EFS_MIN(EFS_MAX(d->after_ms / 10, (int64_t)CONVERT_IDLE_MIN_MS),
				    (int64_t)CONVERT_IDLE_MAX_MS);
			cv->idle_until = efs_mono_ms() + idle;
		}
		cv->cycle_progress = false;
		cv->cursor_created_ms = 0;
		cv->cursor_id[0] = '\0';
		return;
	}
	struct efs_pace pace;
	efs_pace_init(&pace, d->bandwidth);
	for (size_t i = 0; i < n && chunks < CONVERT_PASS_CHUNKS; i++) {
		cv->cursor_created_ms = files[i].created_at_ms;
		efs_strlcpy(cv->cursor_id, files[i].file_id, sizeof(cv->cursor_id));
		uint64_t converted = atomic_load(&cv->chunks_total);
		r = convert_file(cv, &files[i], epoch, t, &pace, data, scratch, &chunks);
		cv->cycle_progress |= r == 0 || atomic_load(&cv->chunks_total) != converted;
		if (r == -ECANCELED)
			return;
		if (r < 0) {
			if (r != -ESTALE)
				efs_warn("ec convert: file %s: %s; the pass stops",
					 files[i].file_id, strerror(-r));
			/* The lease may be gone, or the store: no further
			 * instruction until it is taken again. */
			efs_meta_lease_drop(d->meta);
			return;
		}
	}
}
