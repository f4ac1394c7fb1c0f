/* SPDX-License-Identifier: MIT */
/* chunk_io.c - parallel replica writes with replacement, verified reads. */
#include "master/chunk_io.h"
#include "master/chunk_ec.h"
#include "master/late_writes.h"
#include "master/chunk_backend.h"
#include "echofs/hash.h"
#include "echofs/http_client.h"
#include "echofs/log.h"
#include "echofs/util.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define WRITE_ROUNDS 3
#define CONNECT_TIMEOUT_MS 2000
/* A worker that moves no byte for this long (paused, disk stuck) is
 * given up on and the replica goes elsewhere. Also the window of the
 * min-rate rule (SLOW_WORKER_MIN_RATE, placement.h): a transfer that
 * moved fewer than rate * 3 s bytes over its last 3 s, while bytes
 * remained, is given up on too, when another worker can take its place. */
#define STALL_TIMEOUT_S 3
/* The longest error reply of a worker read (its JSON envelope). */
#define ERROR_BODY_MAX 4096

/* Budget for moving @len bytes to or from a worker: a stalled worker is
 * given up on quickly enough for the client not to notice much. */
static long transfer_timeout_ms(size_t len)
{
	return 10000 + (long)(len / (10 * 1024)); /* 10 s + 10 MB/s */
}

/* A transfer to or from @worker_id was given up for slowness: counted,
 * and the worker marked slow (logged when it was not already). */
static void note_slow(struct efs_chunk_io *io, const char *worker_id, bool write,
		      const char *why)
{
	if (efs_placement_note_slow(io->placement, worker_id, write))
		efs_warn("worker %s marked slow for %lld ms (a chunk %s %s): placement prefers "
			 "other workers and reads try its replicas last meanwhile",
			 worker_id, (long long)io->placement->slow_avoid_ms,
			 write ? "write to it" : "read from it", why);
}

/* A transfer to or from @worker_id finished, but under the minimum rate:
 * the worker is marked slow all the same (logged when it was not). */
static void finished_slowly(struct efs_chunk_io *io, const char *worker_id, bool write,
			    uint64_t bytes, int64_t elapsed_ms)
{
	if (efs_placement_mark_slow(io->placement, worker_id))
		efs_warn("worker %s marked slow for %lld ms (a chunk %s took %lld ms for %llu "
			 "bytes, under %lld bytes/s): placement prefers other workers and reads "
			 "try its replicas last meanwhile",
			 worker_id, (long long)io->placement->slow_avoid_ms,
			 write ? "write to it" : "read from it", (long long)elapsed_ms,
			 (unsigned long long)bytes, (long long)io->placement->slow_min_rate);
}

void efs_chunk_io_init(struct efs_chunk_io *io, struct efs_meta *meta,
		       struct efs_placement *placement, struct efs_http_client *http,
		       const char *cluster_secret, int64_t worker_dead_after_ms)
{
	memset(io, 0, sizeof(*io));
	io->meta = meta;
	io->placement = placement;
	io->http = http;
	io->cluster_secret = cluster_secret;
	io->worker_dead_after_ms = worker_dead_after_ms;
	pthread_mutex_init(&io->writing.lock, NULL);
}

void efs_chunk_io_set_cluster(struct efs_chunk_io *io, const char *cluster_id)
{
	snprintf(io->cluster_header, sizeof(io->cluster_header), EFS_HDR_CLUSTER ": %s",
		 cluster_id);
}

void efs_chunk_io_release(struct efs_chunk_io *io)
{
	if (io->placement)
		pthread_mutex_destroy(&io->writing.lock);
	io->placement = NULL;
}

/* The slot holding @chunk_id, or (with @claim) a free one for it; -1. */
static int writing_slot(struct efs_chunk_writing *w, const char *chunk_id, bool claim)
{
	int free_slot = -1;
	for (int i = 0; i < EFS_CHUNK_WRITING_SLOTS; i++) {
		if (w->slots[i].count && strcmp(w->slots[i].chunk_id, chunk_id) == 0)
			return i;
		if (!w->slots[i].count && free_slot < 0)
			free_slot = i;
	}
	return claim ? free_slot : -1;
}

void efs_chunk_writing_begin(struct efs_chunk_io *io, const char *chunk_id)
{
	struct efs_chunk_writing *w = &io->writing;
	pthread_mutex_lock(&w->lock);
	int i = writing_slot(w, chunk_id, true);
	bool log_overflow = false;
	if (i >= 0) {
		efs_strlcpy(w->slots[i].chunk_id, chunk_id, sizeof(w->slots[i].chunk_id));
		w->slots[i].count++;
	} else {
		w->unguarded++;
		log_overflow = !w->overflow_logged;
		w->overflow_logged = true;
	}
	pthread_mutex_unlock(&w->lock);
	if (log_overflow)
		efs_warn("more than %d chunks being written at once: reports answered here "
			 "delete nothing until the surplus writes end",
			 EFS_CHUNK_WRITING_SLOTS);
}

void efs_chunk_writing_end(struct efs_chunk_io *io, const char *chunk_id)
{
	struct efs_chunk_writing *w = &io->writing;
	pthread_mutex_lock(&w->lock);
	int i = writing_slot(w, chunk_id, false);
	/* A begin that found the table full has no slot; a slot freed since
	 * may hold the same id for a later begin: either way the counts
	 * balance, and @unguarded stays non-zero until the last such end. */
	if (i >= 0)
		w->slots[i].count--;
	else if (w->unguarded > 0 && --w->unguarded == 0)
		w->overflow_logged = false; /* a later overflow is logged again */
	pthread_mutex_unlock(&w->lock);
}

bool efs_chunk_is_writing(struct efs_chunk_io *io, const char *chunk_id)
{
	struct efs_chunk_writing *w = &io->writing;
	pthread_mutex_lock(&w->lock);
	bool found = w->unguarded > 0 || writing_slot(w, chunk_id, false) >= 0;
	pthread_mutex_unlock(&w->lock);
	return found;
}

bool efs_replica_alive(const struct efs_chunk_io *io, const struct efs_replica *rep)
{
	return rep->last_heartbeat_ms > 0 &&
	       efs_now_ms() - rep->last_heartbeat_ms <= io->worker_dead_after_ms;
}

/* How one replica write ended, from its own PUT or from its item of a
 * batch (replica_batch.h): the same judgement either way. */
struct write_outcome {
	int error;	    /* transport failure, -errno */
	long status;	    /* else the worker's answer */
	bool too_slow;	    /* given up by the min-rate rule */
	bool unsent;	    /* with error: never sent (replica_batch.h) */
	int64_t elapsed_ms;
	const char *errmsg; /* with error */
	const char *body;   /* the answer's body, or NULL */
};

/* Sets up @call as the single PUT of a replica to @target. */
static void single_put(struct efs_chunk_io *io, struct efs_http_call *call, char *url,
		       size_t url_size, const struct efs_target *target, const char *chunk_id,
		       const void *data, size_t len, bool gzip, const char *crc_header,
		       const char *epoch_header, bool may_bypass)
{
	snprintf(url, url_size, "%s/chunks/%s", target->url, chunk_id);
	efs_http_call_init(call, "PUT", url);
	call->bearer = io->cluster_secret;
	call->content_type = "application/octet-stream";
	call->headers[0] = gzip ? "X-Chunk-Encoding: gzip" : "X-Chunk-Encoding: identity";
	call->headers[1] = crc_header;
	call->headers[2] = io->cluster_header[0] ? io->cluster_header : NULL;
	call->headers[3] = epoch_header;
	call->body = data;
	call->body_len = len;
	/* Sent from this buffer, not copied into libcurl's. */
	call->direct_body = true;
	call->timeout_ms = transfer_timeout_ms(len);
	call->connect_timeout_ms = CONNECT_TIMEOUT_MS;
	call->stall_timeout_s = STALL_TIMEOUT_S;
	/* Only with a worker to replace it: with none left (as many live
	 * workers as replicas) a slow one is waited for, up to the deadline,
	 * rather than the write failed. */
	if (may_bypass)
		call->min_speed = io->placement->slow_min_rate;
	call->resp_cap = 64 * 1024;
}

int efs_chunk_write(struct efs_chunk_io *io, const char *chunk_id, const void *data, size_t len,
		    bool gzip, unsigned want, const struct efs_target *exclude,
		    size_t exclude_count, uint64_t lease_epoch, struct efs_target *out,
		    unsigned *written)
{
	struct efs_target tried[EFS_MAX_REPLICAS * (WRITE_ROUNDS + 1) + EFS_MAX_REPLICAS];
	struct efs_target pending[EFS_MAX_REPLICAS];
	struct efs_http_call calls[EFS_MAX_REPLICAS];
	struct efs_http_call *callp[EFS_MAX_REPLICAS];
	struct efs_replica_batch_result batched[EFS_MAX_REPLICAS];
	struct efs_target batch_targets[EFS_MAX_REPLICAS];
	char urls[EFS_MAX_REPLICAS][EFS_URL_MAX + 80];
	char crc_header[40], epoch_header[64];
	size_t tried_count = 0;
	unsigned done = 0;
	bool fenced = false;

	*written = 0;
	if (want > EFS_MAX_REPLICAS || exclude_count > EFS_MAX_REPLICAS)
		return -EINVAL;
	memcpy(tried, exclude, exclude_count * sizeof(*exclude));
	tried_count = exclude_count;
	uint32_t crc = efs_crc32c(0, data, len);
	snprintf(crc_header, sizeof(crc_header), "X-Chunk-CRC32C: %08x", crc);
	snprintf(epoch_header, sizeof(epoch_header), EFS_HDR_LEASE_EPOCH ": %llu",
		 (unsigned long long)lease_epoch);
	/* An upload's small replica (not a duty's: those carry a lease epoch)
	 * joins its worker's batch. */
	bool may_batch = io->batch && lease_epoch == 0 && len <= EFS_REPLICA_BATCH_MAX_CHUNK;

	/* The workers holding the chunk: @exclude (the copies kept) and those
	 * written here; the zones of the others tried (failed) are not
	 * counted as used (placement.h). */
	struct efs_target held[2 * EFS_MAX_REPLICAS];
	if (exclude_count)
		memcpy(held, exclude, exclude_count * sizeof(*exclude));
	for (int round = 0; round < WRITE_ROUNDS && done < want && !fenced; round++) {
		size_t candidates = 0, held_count = exclude_count;
		for (unsigned i = 0; i < done; i++)
			held[held_count++] = out[i];
		int n = efs_placement_choose_spread(io->placement, want - done, len, held,
						    held_count, tried, tried_count, pending,
						    &candidates);
		if (n < 0) {
			*written = done;
			return n;
		}
		if (n == 0)
			break;
		bool may_bypass = candidates > (size_t)n && round < WRITE_ROUNDS - 1;
		bool single[EFS_MAX_REPLICAS] = {false};
		int batch_of[EFS_MAX_REPLICAS]; /* index in batched[], or -1 */
		size_t batch_count = 0, call_count = 0;
		for (int i = 0; i < n; i++) {
			tried[tried_count++] = pending[i];
			efs_placement_load_add(io->placement, pending[i].worker_id, 1);
			batch_of[i] = -1;
			if (may_batch && efs_replica_batch_supported(io->batch, pending[i].worker_id)) {
				batch_of[i] = (int)batch_count;
				batch_targets[batch_count++] = pending[i];
			}
		}
		/* The batched replicas first (a leader sends them to every
		 * worker at once); then single PUTs for the rest, and for a
		 * worker found without the batch endpoint. */
		if (batch_count)
			efs_replica_batch_write(io->batch, chunk_id, data, len, gzip, crc,
						batch_targets, batch_count, batched);
		for (int i = 0; i < n; i++) {
			if (batch_of[i] >= 0 && !batched[batch_of[i]].unsupported)
				continue;
			single[i] = true;
			single_put(io, &calls[i], urls[i], sizeof(urls[i]), &pending[i], chunk_id, data,
				   len, gzip, crc_header, lease_epoch ? epoch_header : NULL,
				   may_bypass);
			callp[call_count++] = &calls[i];
		}
		if (call_count)
			efs_http_call_run_parallel(io->http, callp, call_count);
		for (int i = 0; i < n; i++) {
			struct write_outcome o;
			if (single[i])
				o = (struct write_outcome){.error = calls[i].error,
							   .status = calls[i].status,
							   .too_slow = calls[i].too_slow,
							   .elapsed_ms = calls[i].elapsed_ms,
							   .errmsg = calls[i].errmsg,
							   .body = calls[i].resp.data};
			else {
				const struct efs_replica_batch_result *b = &batched[batch_of[i]];
				o = (struct write_outcome){.error = b->error,
							   .unsent = b->unsent,
							   .status = b->status,
							   .elapsed_ms = b->elapsed_ms,
							   .errmsg = b->errmsg,
							   .body = b->body};
			}
			efs_placement_load_add(io->placement, pending[i].worker_id, -1);
			/* A transport failure may still land (late writes). */
			if (io->placement->registry && !o.unsent)
				efs_registry_note_write(io->placement->registry,
							pending[i].worker_id, o.error == 0);
			if (o.error == 0 && o.status == 201) {
				out[done++] = pending[i];
				if (efs_placement_finished_slowly(io->placement, len, o.elapsed_ms))
					finished_slowly(io, pending[i].worker_id, true, len,
							o.elapsed_ms);
			} else if (o.error == 0 && o.status == 409 && o.body &&
				   strstr(o.body, "\"stale_lease_epoch\"")) {
				/* Another master holds the lease now: this duty
				 * stops, on every worker. */
				fenced = true;
				efs_warn("chunk %.12s: worker %s refused a copy: lease epoch %llu is "
					 "stale there (another master took the lease)",
					 chunk_id, pending[i].worker_id,
					 (unsigned long long)lease_epoch);
			} else if (o.error) {
				efs_warn("chunk %.12s: write to worker %s failed: %s; trying another",
					 chunk_id, pending[i].worker_id, o.errmsg);
				if (o.too_slow)
					note_slow(io, pending[i].worker_id, true, o.errmsg);
				if (io->late_writes && !o.unsent)
					efs_late_writes_note(io->late_writes, pending[i].worker_id,
							     pending[i].url, chunk_id);
			} else {
				efs_warn("chunk %.12s: worker %s answered %ld to a write: %.120s",
					 chunk_id, pending[i].worker_id, o.status,
					 o.body ? o.body : "");
			}
			if (single[i])
				efs_http_call_release(&calls[i]);
		}
	}
	*written = done;
	return fenced ? -ESTALE : done < want ? -ENOSPC : 0;
}

/* A HEAD is a lookup in the worker's index and a read of one header: a
 * worker that takes longer (paused, disk stuck) is not counted, and the
 * chunk is written elsewhere. */
#define CONFIRM_TIMEOUT_MS 3000

int efs_chunk_confirm(struct efs_chunk_io *io, const char *chunk_id, struct efs_target *targets,
		      unsigned *count, struct efs_target *unreached, unsigned *unreached_count)
{
	struct efs_http_call calls[EFS_MAX_REPLICAS];
	struct efs_http_call *callp[EFS_MAX_REPLICAS];
	char urls[EFS_MAX_REPLICAS][EFS_URL_MAX + 80];
	unsigned n = EFS_MIN(*count, EFS_MAX_REPLICAS), kept = 0;
	if (unreached_count)
		*unreached_count = 0;

	for (unsigned i = 0; i < n; i++) {
		snprintf(urls[i], sizeof(urls[i]), "%s/chunks/%s", targets[i].url, chunk_id);
		efs_http_call_init(&calls[i], "HEAD", urls[i]);
		calls[i].bearer = io->cluster_secret;
		calls[i].headers[0] = io->cluster_header[0] ? io->cluster_header : NULL;
		calls[i].timeout_ms = CONFIRM_TIMEOUT_MS;
		calls[i].connect_timeout_ms = CONNECT_TIMEOUT_MS;
		calls[i].resp_cap = ERROR_BODY_MAX;
		callp[i] = &calls[i];
	}
	if (n > 0)
		efs_http_call_run_parallel(io->http, callp, n);
	for (unsigned i = 0; i < n; i++) {
		if (calls[i].error == 0 && calls[i].status == 200) {
			if (kept != i)
				targets[kept] = targets[i];
			kept++;
		} else if (calls[i].error == 0 && calls[i].status == 404) {
			/* Lost there (deleted, a disk replaced): as a read
			 * finding it gone would. */
			efs_meta_replica_mark_bad(io->meta, chunk_id, targets[i].worker_id);
		} else if (calls[i].error != 0 && unreached) {
			unreached[(*unreached_count)++] = targets[i];
		}
		efs_http_call_release(&calls[i]);
	}
	*count = kept;
	return 0;
}

/* How a replica ranks for a read: 0 usable (alive, not bad), 1 usable
 * but on a worker marked slow, 2 the others. */
static int replica_rank(struct efs_chunk_io *io, const struct efs_replica *rep)
{
	if (rep->bad || !efs_replica_alive(io, rep))
		return 2;
	return efs_placement_slow_for_ms(io->placement, rep->worker_id) > 0 ? 1 : 0;
}

/* Orders replicas by rank, each rank shuffled; *@usable is how many are
 * of rank 0 or 1. */
static void order_replicas(struct efs_chunk_io *io, const struct efs_replica *replicas,
			   unsigned n, unsigned *order, unsigned *usable)
{
	int rank[EFS_MAX_REPLICAS];
	unsigned k = 0;
	for (unsigned i = 0; i < n; i++)
		rank[i] = replica_rank(io, &replicas[i]);
	for (int pass = 0; pass < 3; pass++) {
		unsigned start = k;
		if (pass == 2)
			*usable = k;
		for (unsigned i = 0; i < n; i++) {
			if (rank[i] == pass)
				order[k++] = i;
		}
		for (unsigned i = k; i > start + 1; i--) {
			uint32_t rnd;
			efs_random_bytes(&rnd, sizeof(rnd));
			unsigned j = start + rnd % (i - start);
			unsigned t = order[i - 1];
			order[i - 1] = order[j];
			order[j] = t;
		}
	}
}

/* Fetches and verifies one replica. 0, or -EBADMSG (bad bytes: mark it)
 * or another error (unreachable: do not). */
static int read_replica(struct efs_chunk_io *io, const struct efs_chunk_info *chunk,
			const struct efs_replica *rep, bool may_bypass, struct efs_buf *out,
			struct efs_buf *scratch)
{
	struct efs_http_call call;
	char url[EFS_URL_MAX + 80];
	int r;

	snprintf(url, sizeof(url), "%s/chunks/%s", rep->url, chunk->chunk_id);
	efs_http_call_init(&call, "GET", url);
	call.bearer = io->cluster_secret;
	call.headers[0] = io->cluster_header[0] ? io->cluster_header : NULL;
	call.timeout_ms = transfer_timeout_ms(chunk->stored_size);
	call.connect_timeout_ms = CONNECT_TIMEOUT_MS;
	call.stall_timeout_s = STALL_TIMEOUT_S;
	/* Only with another replica to read instead (see efs_chunk_write). */
	if (may_bypass)
		call.min_speed = io->placement->slow_min_rate;
	call.capture_header = "X-Chunk-Encoding";
	/* Received straight into @scratch, not through libcurl's buffer and
	 * write callback: with the swap in efs_chunk_from_stored(), a raw
	 * chunk is copied once on the master (socket to scratch). */
	call.direct_body = true;
	call.resp = *scratch; /* reuse the caller's allocation */
	/* Raw or gzip (kept only when smaller): never more than size; but
	 * room for an error's JSON body, which may be longer than a small
	 * chunk (a 404 read as "unreachable" would never mark it bad). */
	call.resp_cap = EFS_MAX(EFS_MAX(chunk->stored_size, chunk->size) + 1, ERROR_BODY_MAX);
	r = efs_http_call_run(io->http, &call);
	*scratch = call.resp;
	scratch->cap = SIZE_MAX;
	if (r < 0 && call.too_slow) {
		efs_warn("chunk %.12s: read from worker %s given up: %s; trying another replica",
			 chunk->chunk_id, rep->worker_id, call.errmsg);
		note_slow(io, rep->worker_id, false, call.errmsg);
	}
	if (r < 0)
		return r; /* unreachable */
	if (call.status == 404)
		return -EBADMSG; /* lost there */
	if (call.status == 500 && scratch->data && strstr(scratch->data, "\"chunk_corrupt\""))
		return -EBADMSG; /* failed its checksum there (quarantined) */
	if (call.status != 200)
		return -EIO; /* a passing failure: not marked */
	if (efs_placement_finished_slowly(io->placement, scratch->len, call.elapsed_ms))
		finished_slowly(io, rep->worker_id, false, scratch->len, call.elapsed_ms);
	bool gzip = strcmp(call.captured, "gzip") == 0 ||
		    (call.captured[0] == '\0' && chunk->compressed);
	r = efs_chunk_from_stored(chunk, gzip, scratch, out);
	/* A shard, not a bad copy: the chunk became EC since it was loaded
	 * (ec_convert.c overwrote this copy). */
	if (r == -EBADMSG && efs_chunk_ec_is_shard(chunk, scratch->data, scratch->len))
		return -ESTALE;
	return r;
}

int efs_chunk_read(struct efs_chunk_io *io, const struct efs_chunk_info *chunk,
		   const struct efs_replica *replicas, unsigned replica_count, struct efs_buf *out,
		   struct efs_buf *scratch)
{
	unsigned order[EFS_MAX_REPLICAS], usable = 0;
	bool converted = false;
	replica_count = EFS_MIN(replica_count, EFS_MAX_REPLICAS);
	order_replicas(io, replicas, replica_count, order, &usable);
	for (unsigned k = 0; k < replica_count; k++) {
		const struct efs_replica *rep = &replicas[order[k]];
		int r = read_replica(io, chunk, rep, k + 1 < usable, out, scratch);
		converted |= r == -ESTALE; /* a shard there: not marked */
		if (r == 0) {
			/* Bytes that verify against the chunk id: a replica
			 * marked bad is intact after all (a passing failure, a
			 * disk back). Good again, unless marked bad anew since
			 * it was loaded (-ESTALE: left as it is). */
			if (rep->bad)
				efs_meta_replica_mark_good(io->meta, chunk->chunk_id, rep,
							   efs_now_ms());
			return 0;
		}
		/* Missing or corrupt there: repair replaces it (and logs that). */
		if (r == -EBADMSG)
			efs_meta_replica_mark_bad(io->meta, chunk->chunk_id, rep->worker_id);
	}
	/* The caller, which knows what the bytes were for, logs. */
	return converted ? -ESTALE : -EIO;
}
