/* SPDX-License-Identifier: MIT */
/* chunk_io.h - the master's chunk transfers to and from workers.
 *
 * Writes go to all replicas in parallel; a replica that fails is replaced
 * by another worker and only that one is retried. Reads try the usable
 * replicas (alive, not marked bad) in random order, those on workers
 * marked slow after the others, then the rest; the bytes are decoded and
 * checked against the chunk's SHA-256, and a replica that fails is marked
 * bad in the metadata so repair replaces it.
 *
 * A transfer is given up when it moves no byte for 3 s, or (only when
 * another worker or replica can take its place) fewer than the
 * placement's SLOW_WORKER_MIN_RATE x 3 s bytes over its last 3 s while
 * bytes remain. The latter marks its worker slow in placement, and so
 * does a large transfer that finished under that rate (placement.h); a
 * stall does not (a paused or cut-off worker is liveness's business).
 */
#ifndef ECHOFS_MASTER_CHUNK_IO_H
#define ECHOFS_MASTER_CHUNK_IO_H

#include "echofs/buf.h"
#include "echofs/meta.h"
#include "master/placement.h"
#include "master/replica_batch.h"

#include <pthread.h>

struct efs_http_client;
struct efs_late_writes;

#define EFS_CHUNK_WRITING_SLOTS 1024

/* Chunks one master is writing now (from the first replica PUT until the
 * metadata records them): a worker's report answered by this master does
 * not have such copies deleted, however short ORPHAN_GRACE_MS is. Counted,
 * so concurrent writers of the same chunk nest. An optimisation, not the
 * protection: every report verdict that deletes a copy no replica row
 * names requires it older than ORPHAN_GRACE_MS on the worker's clock,
 * which holds whichever master writes and whichever answers. When every
 * slot is taken, the write is counted in @unguarded and, while that is
 * non-zero, every chunk counts as being written (fail safe: reports delete
 * nothing rather than something unguarded). */
struct efs_chunk_writing {
	pthread_mutex_t lock;
	struct {
		char chunk_id[65];
		unsigned count;
	} slots[EFS_CHUNK_WRITING_SLOTS];
	unsigned unguarded; /* writes under way that found no free slot */
	bool overflow_logged;
};

/* What chunk transfers need: all borrowed from the master (they outlive
 * this), but the in-flight write guard, which this owns. */
struct efs_chunk_io {
	struct efs_meta *meta;		 /* replicas marked bad on a failed read */
	struct efs_placement *placement; /* targets of writes */
	struct efs_http_client *http;	 /* calls to the workers */
	const char *cluster_secret;	 /* their credential */
	int64_t worker_dead_after_ms;	 /* a replica is alive within this of its heartbeat */
	/* EFS_HDR_CLUSTER with the cluster id, sent on every call to a worker
	 * (which refuses another cluster's master); "" sends none. Set by
	 * efs_chunk_io_set_cluster. */
	char cluster_header[EFS_CLUSTER_ID_LEN + 32];
	struct efs_chunk_writing writing;
	/* Given-up writes are noted here (late_writes.h); NULL: not watched. */
	struct efs_late_writes *late_writes;
	/* Small replica writes of uploads go through per-worker batches
	 * (replica_batch.h); NULL: every replica is one PUT. */
	struct efs_replica_batch *batch;
};

/* Sets up @io with the given parts and an empty write guard. */
void efs_chunk_io_init(struct efs_chunk_io *io, struct efs_meta *meta,
		       struct efs_placement *placement, struct efs_http_client *http,
		       const char *cluster_secret, int64_t worker_dead_after_ms);
void efs_chunk_io_release(struct efs_chunk_io *io);
/* Names the cluster (@cluster_id, copied) on every later call to a worker. */
void efs_chunk_io_set_cluster(struct efs_chunk_io *io, const char *cluster_id);

/* Stores the encoded chunk on @want workers besides those in @exclude,
 * which are the workers holding it (at most EFS_MAX_REPLICAS): their
 * zones count as used, so the new copies go to the zones holding the
 * fewest (placement.h; a worker tried and failed here is excluded
 * without its zone counting). Returns 0 with the targets in @out, or -ENOSPC (not enough live workers
 * with room: no capacity) or another -errno. *written is how many targets
 * in @out hold the chunk, on failure too: the caller records them (as
 * garbage, or as extra replicas) so no copy is left unaccounted for.
 * @lease_epoch: a duty's write (repair) sends its lease epoch
 * (EFS_HDR_LEASE_EPOCH) and a worker that has seen a newer one refuses it
 * (409, not retried elsewhere: -ESTALE); 0 (an upload) sends none. */
int efs_chunk_write(struct efs_chunk_io *io, const char *chunk_id, const void *data, size_t len,
		    bool gzip, unsigned want, const struct efs_target *exclude,
		    size_t exclude_count, uint64_t lease_epoch, struct efs_target *out,
		    unsigned *written);

/* Reads chunk @chunk from one of its replicas into @out (decoded and
 * verified). @scratch holds the stored bytes. -EIO when no replica gave
 * good bytes. Never logs (a replica found missing or corrupt is marked bad
 * in the metadata): the caller logs the failure once. -ESTALE instead
 * when some replica held an EC shard of the chunk (not marked: the chunk
 * was converted to EC since @chunk was loaded; load it again and read it
 * as EC). A replica marked bad
 * that gives bytes verifying against the chunk id is made good again
 * (efs_meta_replica_mark_good: only if not marked bad anew since
 * @replicas were loaded). */
int efs_chunk_read(struct efs_chunk_io *io, const struct efs_chunk_info *chunk,
		   const struct efs_replica *replicas, unsigned replica_count, struct efs_buf *out,
		   struct efs_buf *scratch);

/* Asks each of @targets[0..*count) whether it holds chunk @chunk_id (a
 * HEAD, all in parallel: the worker checks its index and the record's
 * header, not the payload). Keeps in @targets, in order, those that
 * answered 200 and sets *count to how many; a target that answered 404 no
 * longer holds it, and its replica is marked bad. A target that could not
 * be asked is dropped but not marked; with @unreached (room for *count
 * targets) it is copied there and counted in *@unreached_count. 0. */
int efs_chunk_confirm(struct efs_chunk_io *io, const char *chunk_id, struct efs_target *targets,
		      unsigned *count, struct efs_target *unreached, unsigned *unreached_count);

/* The write guard of @io (struct efs_chunk_writing above). Every begin is
 * matched by one end for the same id; efs_chunk_is_writing is true for
 * every id while a begin found the table full. */
void efs_chunk_writing_begin(struct efs_chunk_io *io, const char *chunk_id);
void efs_chunk_writing_end(struct efs_chunk_io *io, const char *chunk_id);
bool efs_chunk_is_writing(struct efs_chunk_io *io, const char *chunk_id);

/* True when the replica's worker is alive now. */
bool efs_replica_alive(const struct efs_chunk_io *io, const struct efs_replica *rep);

#endif
