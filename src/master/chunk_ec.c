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

/* The shard index of @len bytes read back for a stripe of @layout, or -1
 * when they are not one of its shards, intact. */
static int header_check(const unsigned char *h, size_t len, const struct efs_ec_layout *layout)
{
	if (len != EFS_EC_SHARD_HDR + layout->shard_len ||
	    memcmp(h, shard_magic, sizeof(shard_magic)) != 0 || h[8] != layout->data_shards ||
	    h[9] != layout->parity_shards || h[10] >= layout->data_shards + layout->parity_shards ||
	    get_le(h + 16, 8) != layout->payload_len || get_le(h + 24, 8) != layout->shard_len ||
	    get_le(h + 12, 4) != efs_ec_shard_crc(h + EFS_EC_SHARD_HDR, layout->shard_len))
		return -1;
	return h[10];
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

int efs_chunk_ec_write(struct efs_chunk_io *io, const struct efs_chunk_info *chunk,
		       const void *stored, struct efs_target *out, unsigned *written)
{
	struct efs_ec *ec = NULL;
	struct efs_ec_layout layout;
	struct efs_target targets[EFS_MAX_REPLICAS];
	struct efs_http_call calls[EFS_MAX_REPLICAS];
	struct efs_http_call *callp[EFS_MAX_REPLICAS];
	char urls[EFS_MAX_REPLICAS][EFS_URL_MAX + 80];
	char crc_headers[EFS_MAX_REPLICAS][40];
	struct efs_target tried[EFS_MAX_REPLICAS * WRITE_ROUNDS];
	unsigned shard_of[EFS_MAX_REPLICAS]; /* the shard each target of a round takes */
	size_t tried_count = 0;
	unsigned char *stripe = NULL;
	unsigned n = chunk->ec_data + chunk->ec_parity, done = 0;
	int r;

	*written = 0;
	if (chunk->ec_data == 0 || n > EFS_MAX_REPLICAS)
		return -EINVAL;
	if ((r = efs_ec_new(chunk->ec_data, chunk->ec_parity, &ec)) < 0)
		return r;
	if ((r = efs_ec_layout(ec, chunk->stored_size, &layout)) < 0)
		goto out;
	size_t slot = EFS_EC_SHARD_HDR + layout.shard_len;
	if (!(stripe = calloc(n, slot))) {
		r = -ENOMEM;
		goto out;
	}
	unsigned char *shards[EFS_EC_MAX_SHARDS];
	for (unsigned i = 0; i < n; i++)
		shards[i] = stripe + i * slot + EFS_EC_SHARD_HDR;
	efs_ec_split(&layout, stored, shards);
	if ((r = efs_ec_encode(ec, layout.shard_len, shards, shards + chunk->ec_data)) < 0)
		goto out;
	for (unsigned i = 0; i < n; i++)
		header_write(stripe + i * slot, &layout, i);

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
	for (unsigned i = 0; i < n; i++) {
		tried[tried_count++] = targets[i];
		shard_of[i] = i;
	}
	unsigned pending = n;
	/* A shard whose write failed goes to another worker, never one that
	 * holds or was tried for a shard of this stripe; it is then out of
	 * the order by worker id, which only makes healthy reads of this
	 * stripe decode (the shard's header says which it is). */
	for (int round = 0; round < WRITE_ROUNDS && pending > 0; round++) {
		if (round > 0) {
			chosen = efs_placement_choose(io->placement, pending, slot, tried,
						      tried_count, targets);
			if (chosen < (int)pending)
				break; /* not enough workers left for them: the put fails */
			for (unsigned i = 0; i < pending; i++)
				tried[tried_count++] = targets[i];
		}
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
			calls[i].body = body;
			calls[i].body_len = slot;
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
				out[done++] = targets[i];
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
	*written = done;
	/* Every shard, or the put fails (its landed shards are recorded
	 * unreferenced by the caller and collected). */
	r = done < n ? -ENOSPC : 0;
out:
	free(stripe);
	efs_ec_free(ec);
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

int efs_chunk_ec_read(struct efs_chunk_io *io, const struct efs_chunk_info *chunk,
		      const struct efs_replica *replicas, unsigned replica_count,
		      struct efs_buf *out, struct efs_buf *scratch)
{
	struct efs_replica rows[EFS_MAX_REPLICAS];
	unsigned order[EFS_MAX_REPLICAS], ordered = 0;
	struct efs_ec *ec = NULL;
	struct efs_ec_layout layout;
	unsigned char *stripe = NULL;
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

	if ((r = efs_ec_new(chunk->ec_data, chunk->ec_parity, &ec)) < 0)
		return r;
	if ((r = efs_ec_layout(ec, chunk->stored_size, &layout)) < 0)
		goto out;
	if (!(stripe = calloc(n, layout.shard_len ? layout.shard_len : 1))) {
		r = -ENOMEM;
		goto out;
	}
	unsigned char *shards[EFS_EC_MAX_SHARDS];
	for (unsigned i = 0; i < n; i++)
		shards[i] = stripe + i * layout.shard_len;

	size_t slot = EFS_EC_SHARD_HDR + layout.shard_len;
	unsigned next = 0;
	/* Rounds of parallel reads, each asking as many rows as shards are
	 * still missing, until K good ones are in or no row is left. */
	while (good < k && next < ordered) {
		struct efs_http_call calls[EFS_MAX_REPLICAS];
		struct efs_http_call *callp[EFS_MAX_REPLICAS];
		char urls[EFS_MAX_REPLICAS][EFS_URL_MAX + 80];
		const struct efs_replica *of[EFS_MAX_REPLICAS];
		unsigned batch = 0;
		while (batch < k - good && next < ordered) {
			const struct efs_replica *rep = &rows[order[next++]];
			if (!rep->url[0])
				continue; /* its worker is unknown now */
			of[batch] = rep;
			snprintf(urls[batch], sizeof(urls[batch]), "%s/chunks/%s", rep->url,
				 chunk->chunk_id);
			efs_http_call_init(&calls[batch], "GET", urls[batch]);
			calls[batch].bearer = io->cluster_secret;
			calls[batch].headers[0] = io->cluster_header[0] ? io->cluster_header : NULL;
			calls[batch].timeout_ms = transfer_timeout_ms(slot);
			calls[batch].connect_timeout_ms = CONNECT_TIMEOUT_MS;
			calls[batch].stall_timeout_s = STALL_TIMEOUT_S;
			calls[batch].resp_cap = EFS_MAX(slot + 1, (size_t)ERROR_BODY_MAX);
			callp[batch] = &calls[batch];
			batch++;
		}
		if (batch == 0)
			break;
		efs_http_call_run_parallel(io->http, callp, batch);
		for (unsigned i = 0; i < batch; i++) {
			struct efs_http_call *c = &calls[i];
			bool lost = false;
			if (c->error) {
				efs_warn("chunk %.12s: shard read from worker %s failed: %s",
					 chunk->chunk_id, of[i]->worker_id, c->errmsg);
			} else if (c->status == 200) {
				int index = header_check((const unsigned char *)c->resp.data,
							 c->resp.len, &layout);
				if (index < 0) {
					lost = true;
					efs_warn("chunk %.12s: the shard on worker %s fails its "
						 "checksum or header; reading another",
						 chunk->chunk_id, of[i]->worker_id);
				} else if (!(present & (1u << index))) {
					memcpy(shards[index], c->resp.data + EFS_EC_SHARD_HDR,
					       layout.shard_len);
					present |= 1u << index;
					good++;
				}
			} else {
				lost =
				    c->status == 404 || (c->status == 500 && c->resp.data &&
							 strstr(c->resp.data, "\"chunk_corrupt\""));
				efs_warn("chunk %.12s: worker %s answered %ld to a shard read",
					 chunk->chunk_id, of[i]->worker_id, c->status);
			}
			/* Missing or corrupt there: marked as a bad replica is. */
			if (lost)
				efs_meta_replica_mark_bad(io->meta, chunk->chunk_id,
							  of[i]->worker_id);
			efs_http_call_release(c);
		}
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
	efs_buf_reset(scratch);
	scratch->cap = SIZE_MAX; /* as a replica read leaves it: the stored form's size is capped */
	if ((r = efs_buf_reserve(scratch, layout.payload_len)) < 0)
		goto out;
	efs_ec_join(&layout, shards, scratch->data);
	scratch->len = layout.payload_len;
	r = efs_chunk_from_stored(chunk, chunk->compressed, scratch, out);
	if (r == -EBADMSG)
		r = -EIO;
out:
	free(stripe);
	efs_ec_free(ec);
	return r;
}
