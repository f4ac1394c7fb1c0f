/* SPDX-License-Identifier: MIT */
/* chunk_ec.h - erasure-coded chunks on the workers (issue 17): one chunk's
 * stored bytes as one Reed-Solomon stripe of K data and M parity shards
 * (echofs/ec.h), each shard on its own worker.
 *
 * A shard is stored on its worker as an ordinary chunk copy under the
 * chunk's id, so the worker's store, its checksums, its reports, the
 * scrubber and the collector's conditional delete handle it unchanged; the
 * chunk's replica rows are its shards, one per worker. A shard's bytes
 * start with a header (EFS_EC_SHARD_HDR bytes) that says which shard it
 * is, the stripe's K, M and payload length and the CRC32C of the shard:
 * the header is the truth on a read, the metadata only says where the
 * shards are. At write time shard i goes to the i-th of the chosen
 * workers by worker id (strcmp), so a healthy read asks the K first rows
 * by worker id for the data shards and decodes nothing.
 *
 * Writes and reads log each shard they give up on (as chunk_io.c does for
 * replicas); the caller logs the chunk's outcome.
 */
#ifndef ECHOFS_MASTER_CHUNK_EC_H
#define ECHOFS_MASTER_CHUNK_EC_H

#include "echofs/buf.h"
#include "echofs/meta.h"
#include "master/chunk_io.h"

/* The bytes before a shard's payload on its worker. */
#define EFS_EC_SHARD_HDR 32

/* Encodes @stored (@chunk->stored_size bytes, the chunk's stored form)
 * into @chunk->ec_data + @chunk->ec_parity shards and writes each to a
 * distinct live worker with room, spread over zones (placement.h: as many
 * zones as there are, then evenly), all in parallel; a shard whose write
 * fails goes to another worker the stripe does not use (three rounds, as
 * chunk_io.c's replicas). 0: every shard is durable; the workers, one per
 * shard, are in @out (*@written of them). -ENOSPC: fewer live workers
 * with room than shards, or a shard found no worker (*@written says which
 * shards did land: the caller records them unreferenced, as for
 * replicas); -EINVAL: the chunk is not EC or has more
 * shards than EFS_MAX_REPLICAS; -ENOMEM. */
int efs_chunk_ec_write(struct efs_chunk_io *io, const struct efs_chunk_info *chunk,
		       const void *stored, struct efs_target *out, unsigned *written);

/* Reads EC chunk @chunk from its shards @replicas (one row per shard) into
 * @out, decoded and verified against the chunk id; @scratch holds the
 * reassembled stored form. The K data shards first, in parallel; a shard
 * that is missing, corrupt (its CRC32C, its header) or on a dead worker is
 * replaced by another (parity) one and the stripe is reconstructed from
 * any K good shards. A shard found missing or corrupt is marked bad in the
 * metadata. A row holding a full copy of the chunk instead of a shard (a
 * chunk half converted from replicas, efs_chunk_ec_convert_begin) is read
 * as that copy, verified. -EIO when fewer than K good shards could be read (or the
 * decoded bytes do not verify: never wrong bytes); -ENOMEM. */
int efs_chunk_ec_read(struct efs_chunk_io *io, const struct efs_chunk_info *chunk,
		      const struct efs_replica *replicas, unsigned replica_count,
		      struct efs_buf *out, struct efs_buf *scratch);

/* What efs_chunk_ec_rebuild did to a stripe. */
struct efs_ec_rebuild {
	unsigned missing;			   /* shards no good row held */
	struct efs_target added[EFS_MAX_REPLICAS]; /* the workers that took a rebuilt one */
	unsigned added_count;
	/* Rows (indexes into the caller's replicas) whose shard is replaced:
	 * set only when every missing shard was written. */
	unsigned drop[EFS_MAX_REPLICAS];
	unsigned drop_count;
	size_t shard_bytes; /* one shard as stored, header included */
};

/* Rebuilds the shards EC chunk @chunk lacks (repair). Its rows
 * @replicas: the good ones on workers heard from after @holding_after_ms
 * are its held shards, and every one of them is read (which shards are
 * missing is known from the headers of those that are not); rows marked
 * bad on live workers are read too when fewer than K good shards answer,
 * as sources only. The missing shards are reconstructed, the stripe is
 * decoded and checked against the chunk id, and each missing shard is
 * written (with @epoch) to a live worker holding no good shard of the
 * stripe, distinct ones (a worker with a bad row may take one: its copy
 * is overwritten), in the zones holding the fewest of the stripe's good
 * shards (placement.h). A shard read missing or corrupt is marked bad.
 * @data and @scratch are work buffers. Nothing is recorded: the caller
 * records @out->added, then removes the @out->drop rows, in that order.
 * 0: @out says what was done (added_count 0 when nothing was missing;
 * fewer than missing when workers ran out). -EAGAIN: a held shard could
 * not be read (its worker is down, not yet for the repair delay, or did
 * not answer): nothing written. -EIO: fewer than K good shards, or they do
 * not decode to the chunk: nothing written, never wrong bytes. -ENOSPC:
 * no live worker with room outside the good shards' (nothing read), or
 * none took a shard; -ESTALE: a worker refused @epoch; -ENOMEM. */
int efs_chunk_ec_rebuild(struct efs_chunk_io *io, const struct efs_chunk_info *chunk,
			 const struct efs_replica *replicas, unsigned count,
			 int64_t holding_after_ms, uint64_t epoch, struct efs_buf *data,
			 struct efs_buf *scratch, struct efs_ec_rebuild *out);

/* Whether @len bytes read for @chunk as a full copy are an EC shard of it
 * instead (its header's magic, and not @chunk->stored_size bytes): the
 * chunk was converted to EC after the reader loaded it as replicated.
 * Such bytes are no sign of a bad replica. */
bool efs_chunk_ec_is_shard(const struct efs_chunk_info *chunk, const void *bytes, size_t len);

/* Conversion of a replicated chunk to EC (docs/LIFECYCLE.md T36-T40): the
 * stripe of its stored form and where each shard goes. */
struct efs_ec_convert {
	unsigned char *stripe; /* K + M slots of @slot bytes, header first */
	size_t slot;
	/* Workers that held no copy and now hold their shard: the rows the
	 * flip records. */
	struct efs_target added[EFS_MAX_REPLICAS];
	unsigned added_count;
	/* The workers holding a full copy, and the shard each gets last. */
	struct efs_target holders[EFS_MAX_REPLICAS];
	unsigned holder_shard[EFS_MAX_REPLICAS];
	unsigned holder_count;
};

/* First step of converting replicated chunk @chunk (given with the target
 * ec_data/ec_parity set) whose stored form is @stored and whose full
 * copies are on @holders (@holder_count <= K + M, all alive): encodes the
 * stripe, assigns shard i to the i-th of the holders and K + M -
 * @holder_count workers holding no copy (by worker id), and writes their
 * shards to the latter, with @epoch. Nothing is recorded. 0: every new
 * shard is durable, @plan->added (to record at the flip) and the holders'
 * shards are in @plan; -ENOSPC: too few live workers with room outside
 * the holders, or a shard found none (@plan->added says which landed: left
 * unnamed, they are deleted at their workers' reports once older than
 * ORPHAN_GRACE_MS); -ESTALE: a worker refused @epoch; -EINVAL, -ENOMEM.
 * @plan is released with efs_ec_convert_release in every case. */
int efs_chunk_ec_convert_begin(struct efs_chunk_io *io, const struct efs_chunk_info *chunk,
			       const void *stored, const struct efs_replica *holders,
			       unsigned holder_count, uint64_t epoch, struct efs_ec_convert *plan);

/* After the flip: overwrites holder @holder's full copy with its shard
 * (one PUT, no other worker tried). 0, -ENOSPC (not written: the full
 * copy stays, readable; efs_chunk_ec_finish completes it later), -ESTALE. */
int efs_chunk_ec_convert_overwrite(struct efs_chunk_io *io, const struct efs_chunk_info *chunk,
				   struct efs_ec_convert *plan, unsigned holder, uint64_t epoch);
void efs_ec_convert_release(struct efs_ec_convert *plan);

/* Completes the conversion of EC chunk @chunk (rows @replicas) that may
 * still have full copies on some of its rows (a conversion interrupted
 * after its flip): reads every good row; each full copy is overwritten
 * with one of the shards no row holds, one at a time (from a verified
 * full copy, or from K good shards, checked against the chunk id). Full
 * copies beyond the missing shards (surplus to the whole stripe) lose
 * their rows. *@left: full copies still in place (0: the stripe is whole,
 * or was). -EAGAIN: a good row's worker is down or did not answer
 * (nothing written); -EIO: neither a full copy nor K shards; -ESTALE;
 * -ENOMEM. @data and @scratch are work buffers. */
int efs_chunk_ec_finish(struct efs_chunk_io *io, const struct efs_chunk_info *chunk,
			const struct efs_replica *replicas, unsigned count, uint64_t epoch,
			struct efs_buf *data, struct efs_buf *scratch, unsigned *left);

#endif
