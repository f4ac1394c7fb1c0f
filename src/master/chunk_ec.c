/* SPDX-License-Identifier: MIT */
/* chunk_ec.c - an erasure-coded chunk's shards to and from the workers:
 * encode and place K + M shards on distinct workers, read the K data
 * shards back in parallel, and reconstruct from any K good shards when
 * some are missing or corrupt (degraded read). */
#include "master/chunk_ec.h"
#include "echofs/ec.h"
#include "echofs/hash.h"
#include "echofs/http_client.h"
#include "echofs/log.h"
#include "echofs/util.h"
#include "master/chunk_backend.h"
#include "master/late_writes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WRITE_ROUNDS 3 /* as chunk_io.c: a failed shard is placed anew twice */
#define CONNECT_TIMEOUT_MS 2000
#define STALL_TIMEOUT_S 3
#define ERROR_BODY_MAX 4096
static const char shard_magic[8] = {'E', 'F', 'S', 'S', 'H', 'R', 'D', '1'};

static long transfer_timeout_ms(size_t len)
{
	return 10000 + (long)(len / (10 * 1024)); /* 10 s + 10 MB/s, as chunk_io.c */
}

static void put_le(unsigned char *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* The header of shard @index of a stripe of @layout, whose shard bytes
 * follow it. */
static void header_write(unsigned char *h, const struct efs_ec_layout *layout, unsigned index)
{
	memset(h, 0, EFS_EC_SHARD_HDR);
	memcpy(h, shard_magic, sizeof(shard_magic));
	h[8] = (unsigned char)layout->data_shards;
	h[9] = (unsigned char)layout->parity_shards;
	h[10] = (unsigned char)index;
	put_le(h + 12, efs_ec_shard_crc(h + EFS_EC_SHARD_HDR, layout->shard_len), 4);
	put_le(h + 16, layout->payload_len, 8);
	put_le(h + 24, layout->shard_len, 8);
}

/* The shard index of @len bytes read back for a stripe of @layout (the
 * header @h, and the shard bytes at @body when @len covers them), or -1
 * when they are not one of its shards, intact. */
static int header_check(const unsigned char *h, const unsigned char *body, size_t len,
			const struct efs_ec_layout *layout)
{
	if (len != EFS_EC_SHARD_HDR + layout->shard_len ||
	    memcmp(h, shard_magic, sizeof(shard_magic)) != 0 || h[8] != layout->data_shards ||
	    h[9] != layout->parity_shards || h[10] >= layout->data_shards + layout->parity_shards ||
	    get_le(h + 16, 8) != layout->payload_len || get_le(h + 24, 8) != layout->shard_len ||
	    get_le(h + 12, 4) != efs_ec_shard_crc(body, layout->shard_len))
		return -1;
	return h[10];
}

bool efs_chunk_ec_is_shard(const struct efs_chunk_info *chunk, const void *bytes, size_t len)
{
	return len > EFS_EC_SHARD_HDR && len != chunk->stored_size &&
	       memcmp(bytes, shard_magic, sizeof(shard_magic)) == 0;
}

static int target_cmp(const void *a, const void *b)
{
	return strcmp(((const struct efs_target *)a)->worker_id,
		      ((const struct efs_target *)b)->worker_id);
}

static int replica_cmp(const void *a, const void *b)
{
	return strcmp(((const struct efs_replica *)a)->worker_id,
		      ((const struct efs_replica *)b)->worker_id);
}

/* Room for the workers a stripe's writes may not use: those holding its
 * shards (at most EFS_MAX_REPLICAS) and those tried in each round. */
#define TRIED_MAX (EFS_MAX_REPLICAS * (WRITE_ROUNDS + 1))

/* Writes the @pending shards listed in @shard_of (shard s's bytes, header
 * first, at @stripe + s * @slot) to distinct workers: in the first round to
 * @first (one worker per shard, in order) when given, else to workers
 * placement chooses outside @tried; later rounds place the shards that
 * failed again, outside @tried. Every worker tried joins @tried
 * (TRIED_MAX). At most @rounds rounds (1: @first only, no other worker).
 * The workers that stored one are appended to @out (*@done).
 * A non-zero @epoch goes with each write (a duty's: a worker that has seen
 * a newer one refuses it). 0 when all landed; -ENOSPC when some found no
 * worker; -ESTALE when a worker refused @epoch (no further round). */
static int put_shards(struct efs_chunk_io *io, const struct efs_chunk_info *chunk,
		      const unsigned char *stripe, size_t slot, unsigned *shard_of,
		      unsigned pending, const struct efs_target *first, struct efs_target *tried,
		      size_t *tried_count, uint64_t epoch, int rounds, struct efs_target *out,
		      unsigned *done)
{
	struct efs_target targets[EFS_MAX_REPLICAS];
	struct efs_http_call calls[EFS_MAX_REPLICAS];
	struct efs_http_call *callp[EFS_MAX_REPLICAS];
	char urls[EFS_MAX_REPLICAS][EFS_URL_MAX + 80];
	char crc_headers[EFS_MAX_REPLICAS][40];
	char epoch_header[64];
	bool fenced = false;

	/* The workers that hold a shard of the stripe: those in @tried on
	 * entry (a rebuild's good rows) and those that stored one here. */
	struct efs_target held[2 * EFS_MAX_REPLICAS];
	size_t held_before = EFS_MIN(*tried_count, (size_t)EFS_MAX_REPLICAS);
	memcpy(held, tried, held_before * sizeof(*held));

	snprintf(epoch_header, sizeof(epoch_header), EFS_HDR_LEASE_EPOCH ": %llu",
		 (unsigned long long)epoch);
	/* A shard whose write failed goes to another worker, never one that
	 * holds or was tried for a shard of this stripe, in the zones holding
	 * the fewest shards (placement.h: a failed worker's zone is not
	 * counted); it is then out of the order by worker id, which only
	 * makes healthy reads of this stripe decode (the shard's header says
	 * which it is). */
	for (int round = 0; round < rounds && pending > 0 && !fenced; round++) {
		if (round == 0 && first) {
			memcpy(targets, first, pending * sizeof(*targets));
		} else {
			size_t held_count = held_before, candidates;
			for (unsigned i = 0; i < *done && held_count < EFS_ARRAY_SIZE(held); i++)
				held[held_count++] = out[i];
			int chosen = efs_placement_choose_spread(io->placement, pending, slot, held,
								 held_count, tried, *tried_count,
								 targets, &candidates);
			if (chosen < (int)pending)
				break; /* not enough workers left for them */
		}
		for (unsigned i = 0; i < pending && *tried_count < TRIED_MAX; i++)
			tried[(*tried_count)++] = targets[i];
		for (unsigned i = 0; i < pending; i++) {
			const unsigned char *body = stripe + shard_of[i] * slot;
			snprintf(urls[i], sizeof(urls[i]), "%s/chunks/%s", targets[i].url,
				 chunk->chunk_id);
			snprintf(crc_headers[i], sizeof(crc_headers[i]), "X-Chunk-CRC32C: %08x",
				 efs_crc32c(0, body, slot));
			efs_http_call_init(&calls[i], "PUT", urls[i]);
			calls[i].bearer = io->cluster_secret;
			calls[i].content_type = "application/octet-stream";
			calls[i].headers[0] = "X-Chunk-Encoding: identity";
			calls[i].headers[1] = crc_headers[i];
			calls[i].headers[2] = io->cluster_header[0] ? io->cluster_header : NULL;
			calls[i].headers[3] = epoch ? epoch_header : NULL;
			calls[i].body = body;
			calls[i].body_len = slot;
			/* Sent from this buffer, not copied into libcurl's. */
			calls[i].direct_body = true;
			calls[i].timeout_ms = transfer_timeout_ms(slot);
			calls[i].connect_timeout_ms = CONNECT_TIMEOUT_MS;
			calls[i].stall_timeout_s = STALL_TIMEOUT_S;
			calls[i].resp_cap = 64 * 1024;
			callp[i] = &calls[i];
			efs_placement_load_add(io->placement, targets[i].worker_id, 1);
		}
		efs_http_call_run_parallel(io->http, callp, pending);
		unsigned failed = 0;
		for (unsigned i = 0; i < pending; i++) {
			unsigned shard = shard_of[i];
			efs_placement_load_add(io->placement, targets[i].worker_id, -1);
			if (calls[i].error == 0 && calls[i].status == 201) {
				out[(*done)++] = targets[i];
			} else {
				if (calls[i].error)
					efs_warn(
					    "chunk %.12s: shard %u write to worker %s failed: %s; "
					    "trying another",
					    chunk->chunk_id, shard, targets[i].worker_id,
					    calls[i].errmsg);
				else
					efs_warn("chunk %.12s: worker %s answered %ld to shard %u: "
						 "%.120s",
						 chunk->chunk_id, targets[i].worker_id,
						 calls[i].status, shard,
						 calls[i].resp.data ? calls[i].resp.data : "");
				if (calls[i].error == 0 && calls[i].status == 409 &&
				    calls[i].resp.data &&
				    strstr(calls[i].resp.data, "\"stale_lease_epoch\""))
					fenced = true; /* another master holds the lease */
				/* A transport failure may still land (late writes). */
				if (calls[i].error && io->late_writes)
					efs_late_writes_note(io->late_writes, targets[i].worker_id,
							     targets[i].url, chunk->chunk_id);
				shard_of[failed++] = shard; /* in order: i >= failed */
			}
			efs_http_call_release(&calls[i]);
		}
		pending = failed;
	}
	return fenced ? -ESTALE : pending > 0 ? -ENOSPC : 0;
}

/* A zeroed stripe of @n slots for @layout, each a shard header and its
 * payload; *@slot is a slot's size and @shards[i] the payload of slot i.
 * NULL when out of memory. */
static unsigned char *stripe_alloc(const struct efs_ec_layout *layout, unsigned n, size_t *slot,
				   unsigned char **shards)
{
	*slot = EFS_EC_SHARD_HDR + layout->shard_len;
	unsigned char *stripe = calloc(n, *slot);
	if (stripe)
		for (unsigned i = 0; i < n; i++)
			shards[i] = stripe + i * *slot + EFS_EC_SHARD_HDR;
	return stripe;
}

/* The K + M shards of @stored (@chunk's stored form), each with its
 * header, at slot s of a new stripe (*@stripe, to free; *@slot bytes a
 * slot). 0, -ENOMEM or ISA-L's error. */
static int stripe_build(const struct efs_chunk_info *chunk, const void *stored,
			unsigned char **stripe, size_t *slot)
{
	struct efs_ec *ec = NULL;
	struct efs_ec_layout layout;
	unsigned n = chunk->ec_data + chunk->ec_parity;
	unsigned char *bytes = NULL;
	int r;
	if ((r = efs_ec_new(chunk->ec_data, chunk->ec_parity, &ec)) < 0)
		return r;
	if ((r = efs_ec_layout(ec, chunk->stored_size, &layout)) < 0)
		goto out;
	size_t size;
	unsigned char *shards[EFS_EC_MAX_SHARDS];
	if (!(bytes = stripe_alloc(&layout, n, &size, shards))) {
		r = -ENOMEM;
		goto out;
	}
	efs_ec_split(&layout, stored, shards);
	if ((r = efs_ec_encode(ec, layout.shard_len, shards, shards + chunk->ec_data)) < 0)
		goto out;
	for (unsigned i = 0; i < n; i++)
		header_write(bytes + i * size, &layout, i);
	*stripe = bytes;
	*slot = size;
	bytes = NULL;
out:
	free(bytes);
	efs_ec_free(ec);
	return r;
}

int efs_chunk_ec_write(struct efs_chunk_io *io, const struct efs_chunk_info *chunk,
		       const void *stored, struct efs_target *out, unsigned *written)
{
	struct efs_target targets[EFS_MAX_REPLICAS];
	struct efs_target tried[TRIED_MAX];
	unsigned shard_of[EFS_MAX_REPLICAS]; /* the shard each target of a round takes */
	size_t tried_count = 0;
	unsigned char *stripe = NULL;
	size_t slot = 0;
	unsigned n = chunk->ec_data + chunk->ec_parity, done = 0;
	int r;

	*written = 0;
	if (chunk->ec_data == 0 || n > EFS_MAX_REPLICAS)
		return -EINVAL;
	if ((r = stripe_build(chunk, stored, &stripe, &slot)) < 0)
		return r;

	/* Distinct workers, one shard each; shard i on the i-th by id. */
	int chosen = efs_placement_choose(io->placement, n, slot, NULL, 0, targets);
	if (chosen < 0) {
		r = chosen;
		goto out;
	}
	if ((unsigned)chosen < n) {
		r = -ENOSPC;
		goto out;
	}
	qsort(targets, n, sizeof(*targets), target_cmp);
	for (unsigned i = 0; i < n; i++)
		shard_of[i] = i;
	r = put_shards(io, chunk, stripe, slot, shard_of, n, targets, tried, &tried_count, 0,
		       WRITE_ROUNDS, out, &done);
	*written = done;
	/* Every shard, or the put fails (its landed shards are recorded
	 * unreferenced by the caller and collected). */
	if (r < 0)
		r = -ENOSPC;
out:
	free(stripe);
	return r;
}

/* How a shard's row ranks for a read: its position by worker id below K
 * (a data shard, written there) first, then the other usable rows, then
 * the rows marked bad on live workers, then those on dead workers. */
static int shard_rank(struct efs_chunk_io *io, const struct efs_replica *rep, unsigned pos,
		      unsigned data_shards)
{
	if (!efs_replica_alive(io, rep))
		return 3;
	if (rep->bad)
		return 2;
	return pos < data_shards ? 0 : 1;
}

/* What fetch_shards found for one row. */
#define FETCH_LOST (-1)	       /* missing or corrupt there: marked bad */
#define FETCH_UNREACHABLE (-2) /* no answer (or no worker): nothing known */
#define FETCH_FULL (-3)	       /* a full copy of the chunk, not a shard (conversion) */

/* Whether @len bytes are @chunk's whole stored form, intact: what a
 * worker holds of a chunk being converted from replicas to EC (a copy
 * written before the conversion overwrote it with its shard). */
static bool full_copy_verifies(const struct efs_chunk_info *chunk, const void *bytes, size_t len)
{
	struct efs_buf stored, plain;
	bool ok = false;
	if (len != chunk->stored_size)
		return false;
	efs_buf_init(&stored, SIZE_MAX);
	efs_buf_init(&plain, SIZE_MAX);
	if (efs_buf_append(&stored, bytes, len) == 0)
		ok = efs_chunk_from_stored(chunk, chunk->compressed, &stored, &plain) == 0;
	efs_buf_release(&stored);
	efs_buf_release(&plain);
	return ok;
}

/* Where one shard GET's body goes while it arrives (fetch_shards' sink).
 * A 200 answer's header is kept apart; when it names a shard of the
 * stripe that no other call of the batch has claimed and none is in yet,
 * the shard bytes that follow go straight to that shard's place in the
 * stripe (no copy afterwards). Anything else (an error body, a full copy
 * of the chunk, a header naming a shard already claimed, a body longer
 * than a shard) goes to the call's resp buffer, capped as before, and is
 * judged from there after the transfer. */
struct shard_sink {
	struct efs_http_call *call;
	const struct efs_ec_layout *layout;
	unsigned char *const *shards;
	uint32_t *claimed; /* the batch's: shards present or being received in place */
	unsigned char hdr[EFS_EC_SHARD_HDR];
	size_t got;   /* body bytes received so far */
	int index;    /* the shard received in place, or -1 (to resp) */
	bool decided; /* header seen (or not a 200): where the bytes go is known */
};

/* The bytes received in place so far, moved to resp: the body turned out
 * not to be a shard of this stripe. */
static int sink_spill(struct shard_sink *k)
{
	int r = efs_buf_append(&k->call->resp, k->hdr, EFS_MIN(k->got, (size_t)EFS_EC_SHARD_HDR));
	if (r == 0 && k->index >= 0 && k->got > EFS_EC_SHARD_HDR)
		r = efs_buf_append(&k->call->resp, k->shards[k->index], k->got - EFS_EC_SHARD_HDR);
	if (k->index >= 0)
		*k->claimed &= ~(1u << k->index);
	k->index = -1;
	return r;
}

static int shard_sink_write(void *ctx, const char *data, size_t len)
{
	struct shard_sink *k = ctx;
	const struct efs_ec_layout *layout = k->layout;

	if (!k->decided && k->call->status != 200)
		k->decided = true; /* an error body: to resp */
	if (!k->decided) {
		size_t take = EFS_MIN(len, EFS_EC_SHARD_HDR - k->got);
		memcpy(k->hdr + k->got, data, take);
		k->got += take;
		data += take;
		len -= take;
		if (k->got < EFS_EC_SHARD_HDR)
			return 0;
		k->decided = true;
		unsigned index = k->hdr[10];
		if (memcmp(k->hdr, shard_magic, sizeof(shard_magic)) == 0 &&
		    index < layout->data_shards + layout->parity_shards &&
		    !(*k->claimed & (1u << index))) {
			k->index = (int)index;
			*k->claimed |= 1u << index;
		} else {
			int r = efs_buf_append(&k->call->resp, k->hdr, EFS_EC_SHARD_HDR);
			if (r < 0)
				return r;
		}
	}
	if (k->index >= 0 && k->got - EFS_EC_SHARD_HDR + len > layout->shard_len) {
		int r = sink_spill(k); /* longer than a shard: judged (lost) from resp */
		if (r < 0)
			return r;
	}
	if (k->index >= 0) {
		memcpy(k->shards[k->index] + (k->got - EFS_EC_SHARD_HDR), data, len);
		k->got += len;
		return 0;
	}
	k->got += len;
	return efs_buf_append(&k->call->resp, data, len);
}

/* GETs the shards of @rows (@count, at most EFS_MAX_REPLICAS) in parallel,
 * each checked (header, length, CRC32C); a good one not yet in *@present
 * lands in @shards[index] (received there directly when it can be) and is
 * added there. A @shards[i] not in *@present on return may hold any bytes.
 * @outcome[i] says what row i
 * gave: its shard index (also when that index was in already), FETCH_LOST
 * (404, the worker's chunk_corrupt, or a bad header or CRC: the row is
 * marked bad in the metadata, as a bad replica is) or FETCH_UNREACHABLE.
 * With @full, a row holding a full copy of the chunk instead of a shard
 * (stored_size bytes, no shard header: a chunk being converted from
 * replicas) gives FETCH_FULL, not marked: the first such copy that
 * verifies against the chunk id is kept in @full (its stored form, left
 * empty by the caller), later ones are only counted (any of them is
 * overwritten by its shard at the conversion's end). Without @full, or
 * when the bytes do not verify, such a row is FETCH_LOST.
 * Returns how many shards were added. */
static unsigned fetch_shards(struct efs_chunk_io *io, const struct efs_chunk_info *chunk,
			     const struct efs_ec_layout *layout,
			     const struct efs_replica *const *rows, unsigned count,
			     unsigned char *const shards[], uint32_t *present, int *outcome,
			     struct efs_buf *full)
{
	struct efs_http_call calls[EFS_MAX_REPLICAS];
	struct efs_http_call *callp[EFS_MAX_REPLICAS];
	struct shard_sink sinks[EFS_MAX_REPLICAS];
	char urls[EFS_MAX_REPLICAS][EFS_URL_MAX + 80];
	unsigned asked[EFS_MAX_REPLICAS]; /* the row each call reads */
	unsigned batch = 0, added = 0;
	uint32_t claimed = *present;
	size_t slot = EFS_EC_SHARD_HDR + layout->shard_len;

	for (unsigned i = 0; i < count && i < EFS_MAX_REPLICAS; i++) {
		const struct efs_replica *rep = rows[i];
		outcome[i] = FETCH_UNREACHABLE;
		if (!rep->url[0])
			continue; /* its worker is unknown now */
		snprintf(urls[batch], sizeof(urls[batch]), "%s/chunks/%s", rep->url,
			 chunk->chunk_id);
		efs_http_call_init(&calls[batch], "GET", urls[batch]);
		calls[batch].bearer = io->cluster_secret;
		calls[batch].headers[0] = io->cluster_header[0] ? io->cluster_header : NULL;
		calls[batch].timeout_ms = transfer_timeout_ms(slot);
		calls[batch].connect_timeout_ms = CONNECT_TIMEOUT_MS;
		calls[batch].stall_timeout_s = STALL_TIMEOUT_S;
		/* A full copy (conversion) is larger than a shard. */
		calls[batch].resp_cap =
		    EFS_MAX(EFS_MAX(slot, chunk->stored_size) + 1, (size_t)ERROR_BODY_MAX);
		sinks[batch] = (struct shard_sink){.call = &calls[batch],
						   .layout = layout,
						   .shards = shards,
						   .claimed = &claimed,
						   .index = -1};
		calls[batch].sink = shard_sink_write;
		calls[batch].sink_ctx = &sinks[batch];
		callp[batch] = &calls[batch];
		asked[batch++] = i;
	}
	if (batch == 0)
		return 0;
	efs_http_call_run_parallel(io->http, callp, batch);
	/* Shards received in place are judged first (each on its own bytes),
	 * then those in resp, copied only into a place still empty. */
	for (int pass = 0; pass < 2; pass++) {
		for (unsigned b = 0; b < batch; b++) {
			struct efs_http_call *c = &calls[b];
			struct shard_sink *k = &sinks[b];
			const struct efs_replica *rep = rows[asked[b]];
			int *res = &outcome[asked[b]];
			bool in_place = !c->error && c->status == 200 && k->index >= 0;
			if (in_place != (pass == 0))
				continue;
			if (!c->error && !k->decided && k->got > 0 &&
			    efs_buf_append(&c->resp, k->hdr, k->got) < 0)
				c->resp.len = 0; /* shorter than a header: judged lost */
			if (c->error) {
				efs_warn("chunk %.12s: shard read from worker %s failed: %s",
					 chunk->chunk_id, rep->worker_id, c->errmsg);
			} else if (in_place) {
				int index = header_check(k->hdr, shards[k->index], k->got, layout);
				if (index < 0) {
					*res = FETCH_LOST;
					efs_warn("chunk %.12s: the shard on worker %s fails its "
						 "checksum or header; reading another",
						 chunk->chunk_id, rep->worker_id);
				} else {
					*res = index;
					*present |= 1u << index;
					added++;
				}
			} else if (c->status == 200) {
				const unsigned char *body = (const unsigned char *)c->resp.data;
				int index = c->resp.len >= EFS_EC_SHARD_HDR
						? header_check(body, body + EFS_EC_SHARD_HDR,
							       c->resp.len, layout)
						: -1;
				if (index < 0 && full && c->resp.len == chunk->stored_size &&
				    (full->len > 0 ||
				     (full_copy_verifies(chunk, c->resp.data, c->resp.len) &&
				      efs_buf_append(full, c->resp.data, c->resp.len) == 0))) {
					*res =
					    FETCH_FULL; /* not a shard yet: conversion's business */
				} else if (index < 0) {
					*res = FETCH_LOST;
					efs_warn("chunk %.12s: the shard on worker %s fails its "
						 "checksum or header; reading another",
						 chunk->chunk_id, rep->worker_id);
				} else {
					*res = index;
					if (!(*present & (1u << index))) {
						memcpy(shards[index], body + EFS_EC_SHARD_HDR,
						       layout->shard_len);
						*present |= 1u << index;
						added++;
					}
				}
			} else {
				if (c->status == 404 || (c->status == 500 && c->resp.data &&
							 strstr(c->resp.data, "\"chunk_corrupt\"")))
					*res = FETCH_LOST;
				efs_warn("chunk %.12s: worker %s answered %ld to a shard read",
					 chunk->chunk_id, rep->worker_id, c->status);
			}
			/* Missing or corrupt there: marked as a bad replica is. */
			if (*res == FETCH_LOST)
				efs_meta_replica_mark_bad(io->meta, chunk->chunk_id,
							  rep->worker_id);
			efs_http_call_release(c);
		}
	}
	return added;
}

int efs_chunk_ec_read(struct efs_chunk_io *io, const struct efs_chunk_info *chunk,
		      const struct efs_replica *replicas, unsigned replica_count,
		      struct efs_buf *out, struct efs_buf *scratch)
{
	struct efs_replica rows[EFS_MAX_REPLICAS];
	unsigned order[EFS_MAX_REPLICAS], ordered = 0;
	struct efs_ec *ec = NULL;
	struct efs_ec_layout layout;
	struct efs_buf full;
	unsigned k = chunk->ec_data, n = chunk->ec_data + chunk->ec_parity;
	uint32_t present = 0;
	unsigned good = 0;
	int r;

	if (k == 0 || n > EFS_MAX_REPLICAS)
		return -EINVAL;
	replica_count = EFS_MIN(replica_count, EFS_MAX_REPLICAS);
	memcpy(rows, replicas, replica_count * sizeof(*rows));
	qsort(rows, replica_count, sizeof(*rows), replica_cmp);
	for (int rank = 0; rank < 4; rank++)
		for (unsigned i = 0; i < replica_count; i++)
			if (shard_rank(io, &rows[i], i, k) == rank)
				order[ordered++] = i;

	/* A row may hold a full copy, not a shard (a chunk half converted
	 * from replicas): kept here, and then it is the chunk. */
	efs_buf_init(&full, SIZE_MAX);
	if ((r = efs_ec_new(chunk->ec_data, chunk->ec_parity, &ec)) < 0)
		return r;
	if ((r = efs_ec_layout(ec, chunk->stored_size, &layout)) < 0)
		goto out;
	/* The stripe is @scratch itself, shard after shard, not zeroed:
	 * shards are received straight into their places, and a place is
	 * read only once its shard is in (or reconstructed). The data shards
	 * lie in payload order, so the first payload_len bytes are the
	 * stored form, without a join. */
	efs_buf_reset(scratch);
	scratch->cap = SIZE_MAX; /* as a replica read leaves it: the stored form's size is capped */
	if ((r = efs_buf_reserve(scratch, (size_t)n * layout.shard_len + 1)) < 0)
		goto out;
	unsigned char *shards[EFS_EC_MAX_SHARDS];
	for (unsigned i = 0; i < n; i++)
		shards[i] = (unsigned char *)scratch->data + i * layout.shard_len;

	unsigned next = 0;
	/* Rounds of parallel reads, each asking as many rows as shards are
	 * still missing, until K good ones (or a full copy) are in or no row
	 * is left. */
	while (good < k && next < ordered && full.len == 0) {
		const struct efs_replica *batch[EFS_MAX_REPLICAS];
		int outcome[EFS_MAX_REPLICAS];
		unsigned want = k - good, count = 0;
		while (count < want && next < ordered) {
			const struct efs_replica *rep = &rows[order[next++]];
			if (rep->url[0])
				batch[count++] = rep;
		}
		if (count == 0)
			break;
		good += fetch_shards(io, chunk, &layout, batch, count, shards, &present, outcome,
				     &full);
	}
	if (full.len > 0) {
		/* A full copy, verified by fetch_shards: decoded once more
		 * into @out (a few half-converted chunks only). */
		r = efs_chunk_from_stored(chunk, chunk->compressed, &full, out);
		if (r == -EBADMSG)
			r = -EIO;
		goto out;
	}
	if (good < k) {
		r = -EIO; /* more than M shards lost: reported, never guessed */
		goto out;
	}
	uint32_t data_mask = (k == 32) ? UINT32_MAX : ((1u << k) - 1);
	uint32_t wanted = data_mask & ~present;
	if (wanted && (r = efs_ec_reconstruct(ec, layout.shard_len, shards, present, wanted)) < 0) {
		r = -EIO;
		goto out;
	}
	scratch->len = layout.payload_len;
	scratch->data[scratch->len] = '\0'; /* as efs_buf keeps it; the shards are used */
	r = efs_chunk_from_stored(chunk, chunk->compressed, scratch, out);
	if (r == -EBADMSG)
		r = -EIO;
out:
	efs_buf_release(&full);
	efs_ec_free(ec);
	return r;
}

static uint32_t all_shards(unsigned n)
{
	return n == 32 ? UINT32_MAX : (1u << n) - 1;
}

static unsigned popcount32(uint32_t v)
{
	unsigned c = 0;
	for (; v; v &= v - 1)
		c++;
	return c;
}

int efs_chunk_ec_rebuild(struct efs_chunk_io *io, const struct efs_chunk_info *chunk,
			 const struct efs_replica *replicas, unsigned count,
			 int64_t holding_after_ms, uint64_t epoch, struct efs_buf *data,
			 struct efs_buf *scratch, struct efs_ec_rebuild *out)
{
	const struct efs_replica *asked[EFS_MAX_REPLICAS] = {0};
	unsigned asked_row[EFS_MAX_REPLICAS], asked_count = 0;
	int outcome[EFS_MAX_REPLICAS];
	int row_index[EFS_MAX_REPLICAS]; /* the good shard each row gave, or -1 */
	struct efs_target tried[TRIED_MAX];
	size_t tried_count = 0;
	unsigned shard_of[EFS_MAX_REPLICAS];
	struct efs_ec *ec = NULL;
	struct efs_ec_layout layout;
	unsigned char *stripe = NULL;
	unsigned k = chunk->ec_data, n = chunk->ec_data + chunk->ec_parity;
	uint32_t held = 0, sources = 0;
	int r;

	memset(out, 0, sizeof(*out));
	if (k == 0 || n > EFS_MAX_REPLICAS)
		return -EINVAL;
	count = EFS_MIN(count, EFS_MAX_REPLICAS);
	if ((r = efs_ec_new(chunk->ec_data, chunk->ec_parity, &ec)) < 0)
		return r;
	if ((r = efs_ec_layout(ec, chunk->stored_size, &layout)) < 0)
		goto out;
	size_t slot;
	unsigned char *shards[EFS_EC_MAX_SHARDS];
	stripe = stripe_alloc(&layout, n, &slot, shards);
	out->shard_bytes = slot;
	if (!stripe) {
		r = -ENOMEM;
		goto out;
	}

	/* Every counted shard (a good row on a worker heard from after
	 * @holding_after_ms) is read, not only K: which shards are missing is
	 * known only from the headers of those that are not. */
	for (unsigned i = 0; i < count; i++) {
		row_index[i] = -1;
		const struct efs_replica *rep = &replicas[i];
		if (rep->bad || rep->last_heartbeat_ms <= holding_after_ms)
			continue;
		if (!efs_replica_alive(io, rep) || !rep->url[0]) {
			/* Dead for less than the repair delay: its shard counts
			 * as held, but which one it is cannot be known now. */
			efs_debug("repair: EC chunk %.12s waits: the shard on worker %s (down, not "
				  "for REPAIR_AFTER_MS yet) cannot be named",
				  chunk->chunk_id, rep->worker_id);
			r = -EAGAIN;
			goto out;
		}
		asked[asked_count] = rep;
		asked_row[asked_count++] = i;
		efs_strlcpy(tried[tried_count].worker_id, rep->worker_id,
			    sizeof(tried[tried_count].worker_id));
		efs_strlcpy(tried[tried_count].url, rep->url, sizeof(tried[tried_count].url));
		tried_count++;
	}
	/* Somewhere to put a shard? If not, read nothing (as replica repair:
	 * a cluster of exactly K + M workers with one dead would otherwise
	 * read and decode its stripes at every pass for nothing). A stripe
	 * short of K good rows is read all the same: it is found
	 * unrecoverable (or rebuildable from bad rows) and said so. */
	struct efs_target probe[1];
	if (asked_count >= k) {
		r = efs_placement_choose(io->placement, 1, slot, tried, tried_count, probe);
		if (r <= 0) {
			r = r < 0 ? r : -ENOSPC;
			goto out;
		}
	}
	tried_count = 0;
	/* A row may hold a full copy (a chunk half converted from replicas):
	 * a source of every shard, but no shard itself: its row is replaced
	 * (or its worker overwritten with a missing shard), as a lost one's. */
	efs_buf_reset(scratch);
	scratch->cap = SIZE_MAX;
	fetch_shards(io, chunk, &layout, asked, asked_count, shards, &held, outcome, scratch);
	for (unsigned a = 0; a < asked_count; a++) {
		if (outcome[a] == FETCH_UNREACHABLE) {
			r = -EAGAIN; /* a counted shard did not answer: try again later */
			goto out;
		}
		row_index[asked_row[a]] = outcome[a];
	}
	sources = held;
	/* Fewer than K good: the rows marked bad on live workers may still
	 * hold intact bytes (marked by a passing failure). Such a shard is a
	 * source only; its index is rebuilt all the same, so that its row can
	 * go. */
	if (popcount32(sources) < k) {
		asked_count = 0;
		for (unsigned i = 0; i < count; i++)
			if (replicas[i].bad && efs_replica_alive(io, &replicas[i]) &&
			    replicas[i].url[0])
				asked[asked_count++] = &replicas[i];
		fetch_shards(io, chunk, &layout, asked, asked_count, shards, &sources, outcome,
			     scratch);
	}
	if (scratch->len > 0) {
		/* A verified full copy: every shard from it. */
		efs_ec_split(&layout, scratch->data, shards);
		if ((r = efs_ec_encode(ec, layout.shard_len, shards, shards + k)) < 0)
			goto out;
		sources = all_shards(n);
	}
	uint32_t missing = all_shards(n) & ~held;
	out->missing = popcount32(missing);
	if (missing == 0)
		goto out; /* r == 0: nothing to rebuild */
	if (popcount32(sources) < k) {
		r = -EIO; /* more than M shards lost: reported, never guessed */
		goto out;
	}
	/* The missing shards, and the data shards the check below needs. */
	uint32_t data_mask = (k == 32) ? UINT32_MAX : ((1u << k) - 1);
	if ((r = efs_ec_reconstruct(ec, layout.shard_len, shards, sources,
				    (missing | data_mask) & ~sources)) < 0) {
		r = -EIO;
		goto out;
	}
	/* The stripe decodes to the chunk's bytes (the id checked) before any
	 * shard of it is written: a rebuild never stores wrong bytes. */
	efs_buf_reset(scratch);
	scratch->cap = SIZE_MAX;
	if ((r = efs_buf_reserve(scratch, layout.payload_len)) < 0)
		goto out;
	efs_ec_join(&layout, shards, scratch->data);
	scratch->len = layout.payload_len;
	if ((r = efs_chunk_from_stored(chunk, chunk->compressed, scratch, data)) < 0) {
		efs_error("repair: chunk %s: its stripe rebuilt from %u shards does not match "
			  "the chunk id; nothing written",
			  chunk->chunk_id, popcount32(sources));
		r = -EIO;
		goto out;
	}
	unsigned pending = 0;
	for (unsigned s = 0; s < n; s++)
		if (missing & (1u << s)) {
			header_write(stripe + s * slot, &layout, s);
			shard_of[pending++] = s;
		}
	/* Distinct workers: none holding a good shard of the stripe. A worker
	 * whose row is bad (or gone) may take one: its copy is replaced. */
	for (unsigned i = 0; i < count; i++)
		if (row_index[i] >= 0) {
			efs_strlcpy(tried[tried_count].worker_id, replicas[i].worker_id,
				    sizeof(tried[tried_count].worker_id));
			efs_strlcpy(tried[tried_count].url, replicas[i].url,
				    sizeof(tried[tried_count].url));
			tried_count++;
		}
	r = put_shards(io, chunk, stripe, slot, shard_of, pending, NULL, tried, &tried_count, epoch,
		       WRITE_ROUNDS, out->added, &out->added_count);
	if (r < 0 && r != -ENOSPC)
		goto out;
	if (out->added_count == 0) {
		r = -ENOSPC;
		goto out;
	}
	r = 0;
	/* Every missing shard is placed: the rows that held no good shard
	 * (bad, lost, or on workers dead past the repair delay) are replaced,
	 * unless a new shard went to their worker. Some shards unplaced: no
	 * row can be said replaced (a bad row's index is unknown). */
	if (out->added_count < out->missing)
		goto out;
	for (unsigned i = 0; i < count; i++) {
		bool rewritten = false;
		for (unsigned a = 0; a < out->added_count; a++)
			rewritten |= strcmp(out->added[a].worker_id, replicas[i].worker_id) == 0;
		if (row_index[i] < 0 && !rewritten)
			out->drop[out->drop_count++] = i;
	}
out:
	free(stripe);
	efs_ec_free(ec);
	return r;
}

int efs_chunk_ec_convert_begin(struct efs_chunk_io *io, const struct efs_chunk_info *chunk,
			       const void *stored, const struct efs_replica *holders,
			       unsigned holder_count, uint64_t epoch, struct efs_ec_convert *plan)
{
	struct efs_target all[EFS_MAX_REPLICAS], fresh[EFS_MAX_REPLICAS];
	struct efs_target tried[TRIED_MAX];
	unsigned shard_of[EFS_MAX_REPLICAS];
	size_t tried_count = 0;
	unsigned n = chunk->ec_data + chunk->ec_parity;
	int r;

	memset(plan, 0, sizeof(*plan));
	if (chunk->ec_data == 0 || n > EFS_MAX_REPLICAS || holder_count > n)
		return -EINVAL;
	if ((r = stripe_build(chunk, stored, &plan->stripe, &plan->slot)) < 0)
		return r;
	for (unsigned i = 0; i < holder_count; i++) {
		efs_strlcpy(all[i].worker_id, holders[i].worker_id, sizeof(all[i].worker_id));
		efs_strlcpy(all[i].url, holders[i].url, sizeof(all[i].url));
		tried[tried_count++] = all[i];
	}
	/* The workers that hold no copy take the shards the holders cannot. */
	unsigned want = n - holder_count;
	if (want > 0) {
		int chosen = efs_placement_choose(io->placement, want, plan->slot, tried,
						  tried_count, fresh);
		if (chosen < 0)
			return chosen;
		if ((unsigned)chosen < want)
			return -ENOSPC;
		memcpy(all + holder_count, fresh, want * sizeof(*fresh));
	}
	/* Shard i on the i-th of all K + M workers by id, as a write puts
	 * them (a healthy read then decodes nothing). */
	qsort(all, n, sizeof(*all), target_cmp);
	unsigned pending = 0;
	for (unsigned s = 0; s < n; s++) {
		bool holder = false;
		for (unsigned h = 0; h < holder_count; h++)
			holder |= strcmp(all[s].worker_id, holders[h].worker_id) == 0;
		if (holder) {
			plan->holders[plan->holder_count] = all[s];
			plan->holder_shard[plan->holder_count++] = s;
		} else {
			fresh[pending] = all[s];
			shard_of[pending++] = s;
		}
	}
	if (pending == 0)
		return 0;
	r = put_shards(io, chunk, plan->stripe, plan->slot, shard_of, pending, fresh, tried,
		       &tried_count, epoch, WRITE_ROUNDS, plan->added, &plan->added_count);
	return r;
}

int efs_chunk_ec_convert_overwrite(struct efs_chunk_io *io, const struct efs_chunk_info *chunk,
				   struct efs_ec_convert *plan, unsigned holder, uint64_t epoch)
{
	struct efs_target tried[TRIED_MAX], landed[1];
	size_t tried_count = 0;
	unsigned shard_of[1] = {plan->holder_shard[holder]}, done = 0;
	if (holder >= plan->holder_count || !plan->stripe)
		return -EINVAL;
	return put_shards(io, chunk, plan->stripe, plan->slot, shard_of, 1, &plan->holders[holder],
			  tried, &tried_count, epoch, 1, landed, &done);
}

void efs_ec_convert_release(struct efs_ec_convert *plan)
{
	free(plan->stripe);
	plan->stripe = NULL;
}

int efs_chunk_ec_finish(struct efs_chunk_io *io, const struct efs_chunk_info *chunk,
			const struct efs_replica *replicas, unsigned count, uint64_t epoch,
			struct efs_buf *data, struct efs_buf *scratch, unsigned *left)
{
	const struct efs_replica *asked[EFS_MAX_REPLICAS];
	int outcome[EFS_MAX_REPLICAS];
	struct efs_ec *ec = NULL;
	struct efs_ec_layout layout;
	unsigned char *stripe = NULL;
	unsigned k = chunk->ec_data, n = chunk->ec_data + chunk->ec_parity, asked_count = 0;
	uint32_t held = 0;
	int r;

	*left = 0;
	if (k == 0 || n > EFS_MAX_REPLICAS)
		return -EINVAL;
	count = EFS_MIN(count, EFS_MAX_REPLICAS);
	for (unsigned i = 0; i < count; i++) {
		if (replicas[i].bad)
			continue; /* repair's business */
		if (!efs_replica_alive(io, &replicas[i]) || !replicas[i].url[0])
			return -EAGAIN; /* what it holds cannot be known now */
		asked[asked_count++] = &replicas[i];
	}
	if ((r = efs_ec_new(chunk->ec_data, chunk->ec_parity, &ec)) < 0)
		return r;
	if ((r = efs_ec_layout(ec, chunk->stored_size, &layout)) < 0)
		goto out;
	size_t slot;
	unsigned char *shards[EFS_EC_MAX_SHARDS];
	if (!(stripe = stripe_alloc(&layout, n, &slot, shards))) {
		r = -ENOMEM;
		goto out;
	}
	efs_buf_reset(scratch);
	scratch->cap = SIZE_MAX;
	fetch_shards(io, chunk, &layout, asked, asked_count, shards, &held, outcome, scratch);
	unsigned full_rows[EFS_MAX_REPLICAS], full_count = 0;
	for (unsigned a = 0; a < asked_count; a++) {
		if (outcome[a] == FETCH_UNREACHABLE) {
			r = -EAGAIN;
			goto out;
		}
		if (outcome[a] == FETCH_FULL)
			full_rows[full_count++] = a;
	}
	if (full_count == 0)
		goto out; /* r == 0: every good row holds a shard */
	uint32_t missing = all_shards(n) & ~held;
	if (scratch->len > 0) {
		efs_ec_split(&layout, scratch->data, shards);
		if ((r = efs_ec_encode(ec, layout.shard_len, shards, shards + k)) < 0)
			goto out;
	} else if (popcount32(held) >= k) {
		/* Only unverified full copies (never here: the first one is
		 * verified or is no full copy): from K shards, checked. */
		uint32_t data_mask = (k == 32) ? UINT32_MAX : ((1u << k) - 1);
		if ((r = efs_ec_reconstruct(ec, layout.shard_len, shards, held,
					    (missing | data_mask) & ~held)) < 0) {
			r = -EIO;
			goto out;
		}
		efs_buf_reset(scratch);
		if ((r = efs_buf_reserve(scratch, layout.payload_len)) < 0)
			goto out;
		efs_ec_join(&layout, shards, scratch->data);
		scratch->len = layout.payload_len;
		if (efs_chunk_from_stored(chunk, chunk->compressed, scratch, data) < 0) {
			r = -EIO;
			goto out;
		}
	} else {
		r = -EIO;
		goto out;
	}
	/* Each full copy, one at a time, becomes a missing shard; the stripe
	 * is whole (every row a distinct shard) once none is left. */
	unsigned f = 0;
	for (unsigned s = 0; s < n && f < full_count; s++) {
		if (!(missing & (1u << s)))
			continue;
		const struct efs_replica *rep = asked[full_rows[f++]];
		struct efs_target target, tried[TRIED_MAX], landed[1];
		size_t tried_count = 0;
		unsigned shard_of[1] = {s}, done = 0;
		efs_strlcpy(target.worker_id, rep->worker_id, sizeof(target.worker_id));
		efs_strlcpy(target.url, rep->url, sizeof(target.url));
		header_write(stripe + s * slot, &layout, s);
		r = put_shards(io, chunk, stripe, slot, shard_of, 1, &target, tried, &tried_count,
			       epoch, 1, landed, &done);
		if (r == -ESTALE)
			goto out;
		if (r < 0)
			++*left;
	}
	/* More full copies than missing shards (a copy added after the
	 * conversion began): surplus to a stripe now whole, their rows go
	 * (their copies are deleted at their workers' next report). While a
	 * shard is still missing they stay: they are the chunk. */
	for (; f < full_count; f++) {
		if (*left == 0)
			efs_meta_replica_remove(io->meta, chunk->chunk_id,
						asked[full_rows[f]]->worker_id);
		else
			++*left;
	}
	r = 0;
out:
	free(stripe);
	efs_ec_free(ec);
	return r;
}
