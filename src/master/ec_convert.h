/* SPDX-License-Identifier: MIT */
/* ec_convert.h - conversion of old replicated files to erasure coding
 * (issue 17, docs/ARCHITECTURE.md "Conversion to EC").
 *
 * Files stored with replicas, created more than EC_AFTER ago and of at
 * least EC_MIN_SIZE bytes, are converted to EC_POLICY (an ec:K+M) by the
 * master holding the lease, in the repair loop's thread (after each repair
 * pass: repair first, and never both on one chunk at once), paced to
 * EC_CONVERT_BANDWIDTH bytes per second of shards written. Each chunk of
 * such a file is converted in the order of docs/LIFECYCLE.md T36-T40: read
 * and verified; its shards written to workers that hold no copy; flipped
 * to EC with their rows in one transaction (the old rows stay: their full
 * copies are read as such); then each old holder's copy overwritten with
 * its shard. A master killed at any point leaves every chunk readable,
 * and the next pass completes what was begun. A chunk is converted for
 * every file that shares it (the chunk's form is the chunk's); a file's
 * policy becomes EC_POLICY once all of its chunks are EC and whole.
 *
 * Only with the worker chunk store and SQL metadata: on DynamoDB the first
 * pass logs once that conversion is off.
 */
#ifndef ECHOFS_MASTER_EC_CONVERT_H
#define ECHOFS_MASTER_EC_CONVERT_H

#include "echofs/buf.h"
#include "echofs/ec.h"
#include "echofs/meta.h"
#include "echofs/ticker.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct efs_chunk_io;

struct efs_ec_convert_deps {
	struct efs_meta *meta;
	struct efs_chunk_io *chunk_io;
	struct efs_policy policy; /* EC_POLICY: an ec:K+M */
	int64_t after_ms;	  /* EC_AFTER, > 0 */
	uint64_t min_size;	  /* EC_MIN_SIZE */
	uint64_t bandwidth;	  /* EC_CONVERT_BANDWIDTH, bytes/s of shards written */
	int64_t worker_dead_after_ms;
};

struct efs_ec_converter {
	struct efs_ec_convert_deps deps;
	_Atomic uint64_t chunks_total; /* chunks flipped to EC since start */
	_Atomic uint64_t bytes_total;  /* their logical (uncompressed) bytes */
	_Atomic uint64_t files_total;  /* files whose policy became EC_POLICY */
	/* The loop's thread only. */
	bool off;		   /* the store has no EC: logged once, nothing more */
	int64_t cursor_created_ms; /* the last file taken: the next pass goes on after it */
	char cursor_id[EFS_ID_MAX + 1];
	bool cycle_progress; /* this cycle over the candidates converted something */
	int64_t idle_until;  /* monotonic ms: a cycle converted nothing; no pass before */
};

/* Sets up @cv with @deps (copied). */
void efs_ec_convert_init(struct efs_ec_converter *cv, const struct efs_ec_convert_deps *deps);

/* One pass, in the repair loop's thread, while this master holds the
 * lease: up to a few files' chunks, then it returns. @t is the loop's
 * ticker (the pacing waits on it: a stop ends the pass); @data and
 * @scratch are work buffers. Logs what it does; returns nothing. */
void efs_ec_convert_pass(struct efs_ec_converter *cv, struct efs_ticker *t, struct efs_buf *data,
			 struct efs_buf *scratch);

#endif
