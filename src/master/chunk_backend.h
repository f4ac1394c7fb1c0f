/* SPDX-License-Identifier: MIT */
/* chunk_backend.h - where the master keeps chunk bytes: one small
 * interface, one implementation per place (the worker cluster,
 * chunk_workers.c; an S3 bucket, chunk_s3.c).
 *
 * The contract every backend keeps:
 *
 * - A chunk is named by its id, the SHA-256 hex of its uncompressed bytes.
 *   It is stored in one of two forms, chosen by the caller (efs_codec):
 *   raw, or gzip when that is smaller; the backend keeps the form with its
 *   encoding and its CRC32C and never re-encodes. Two puts of one id store
 *   the same bytes, so a put may overwrite.
 * - put returns only when the chunk is durable (on every replica the
 *   backend wants, fsync'd; or acknowledged by the object store). The
 *   caller then records the reference in the metadata; a crash between the
 *   two leaves an unreferenced copy that the backend's reconciliation
 *   finds, never a reference to nothing.
 * - get returns the whole chunk, decoded and verified against its id;
 *   bytes that do not verify are never returned (-EIO). A range of a chunk
 *   is served by slicing the verified chunk (download.c): verification
 *   needs every byte, so the interface has no partial read.
 * - remove is the collector's conditional delete: the copy goes only if it
 *   was last written more than @unmodified_for_ms ago, measured by the
 *   place that holds it on its own clock (a duration, not a timestamp: see
 *   docs/LIFECYCLE.md). A copy stored again after the decision stays.
 * - pin/unpin bracket "written but not yet recorded in the metadata":
 *   the backend's reconciliation (the workers' reports; a bucket listing
 *   for S3) must not delete a pinned chunk (LIFECYCLE R2).
 *
 * Recorded locations: a backend may record where each copy lives in the
 * metadata (the worker backend's replica rows, struct efs_replica). Callers
 * pass what the metadata gave them (@known, efs_meta_chunk_get,
 * efs_meta_file_chunks, efs_meta_garbage_take) without interpreting it; a
 * put names in its result the new locations to record with the reference.
 * The S3 backend records one location per object it writes: the object's
 * generation (chunk_s3.h), so that the collector deletes exactly the
 * objects of the row it took (docs/LIFECYCLE.md R13).
 *
 * Errors: -ENOSPC (no room: 503 no_capacity), -EIO (no good copy could be
 * read), -EHOSTUNREACH (the object store is unreachable or refusing right
 * now: 503 chunk_store_unavailable), -EAGAIN (the metadata store is busy:
 * 503 metadata_unavailable), -errno.
 * Every operation is thread-safe. get never logs (the caller, which knows
 * what the bytes were for, does); put and remove log each copy they gave
 * up on, with where it was (the worker backend: HACKING's known exception
 * for chunk_io.c).
 */
#ifndef ECHOFS_MASTER_CHUNK_BACKEND_H
#define ECHOFS_MASTER_CHUNK_BACKEND_H

#include "echofs/buf.h"
#include "echofs/meta.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a put did. */
struct efs_chunk_put_result {
	/* New locations the metadata must record with the reference (worker
	 * ids; S3 object generations, "s3:<16 hex>"), also on failure: copies written by a put that failed are
	 * recorded unreferenced by the caller so none is lost track of. */
	char location_ids[EFS_MAX_REPLICAS][EFS_ID_MAX + 1];
	unsigned location_count;
	bool sent; /* bytes were transferred (false: already held: deduplicated) */
};

/* The opaque position of a listing (efs_chunk_backend_list). */
#define EFS_CHUNK_LIST_CURSOR_MAX 1100

/* One stored copy a listing found: its chunk, and the location the backend
 * records for it in the metadata (a struct efs_replica's worker_id), or ""
 * when the copy is the chunk's location-less one (a row without locations
 * names it: the S3 backend's objects written before generations). */
struct efs_chunk_listed {
	char chunk_id[65];
	char location[EFS_ID_MAX + 1];
};

/* What the health check shows of the backend. */
struct efs_chunk_health {
	bool ok;		  /* chunks can be stored and read now */
	char detail[320];	  /* why not, for the operator; "" when ok */
};

/* The operations of one backend; @impl is the backend's own state. NULL
 * marks an optional operation the backend does not have. */
struct efs_chunk_backend_ops {
	const char *name; /* "workers", "s3": logged at start */
	/* put and get take erasure-coded chunks (efs_chunk_info's ec_data
	 * and ec_parity set: K+M shards on distinct places); false: the
	 * backend stores every chunk whole (S3's own durability). */
	bool erasure_coding;
	/* Makes chunk @chunk durable from its stored form @stored
	 * (@chunk->stored_size bytes, gzip when @chunk->compressed), reusing
	 * the copies @known[0..@known_count) still holds (dedup). @recorded:
	 * the metadata holds a row for the chunk now (dedup may skip sending
	 * bytes that are confirmed present); false: the chunk is new or was
	 * collected (R5), so the bytes must be written again even when a copy
	 * is still there, since the collector may be about to delete it (R4
	 * relies on the fresh write). -ESTALE (S3): another upload through
	 * this backend has just stored and recorded the chunk; nothing was
	 * written: look the chunk up again and deduplicate. */
	int (*put)(void *impl, const struct efs_chunk_info *chunk, const void *stored,
		   const struct efs_replica *known, unsigned known_count, bool recorded,
		   struct efs_chunk_put_result *out);
	/* The chunk, decoded and verified, into @out; @scratch holds the
	 * stored bytes (both caller-owned, reused across calls). */
	int (*get)(void *impl, const struct efs_chunk_info *chunk, const struct efs_replica *known,
		   unsigned known_count, struct efs_buf *out, struct efs_buf *scratch);
	/* Conditional delete of the copies @known[0..@known_count) names
	 * (what efs_meta_garbage_take returned, or one listed copy's location;
	 * a backend that records no location for a copy deletes the chunk's
	 * location-less copy when @known names none of its own). Returns how
	 * many copies could not be deleted (a copy kept because it was
	 * modified within the duration, or already gone, counts as done):
	 * those stay as orphans for the backend's reconciliation, logged by
	 * the backend with where they are. -ECANCELED instead when the master
	 * is stopping and some copy's delete was not waited for (the worker
	 * backend's pushed deletes, efs_control_stopping): the caller stops
	 * too; what stays is an orphan as well.
	 * @lease_epoch: the lease epoch of the duty that decided it (the
	 * worker backend sends it, EFS_HDR_LEASE_EPOCH; a worker that has
	 * seen a newer one keeps its copy); 0: none.
	 * A negative @unmodified_for_ms removes unconditionally: only for a
	 * copy that no metadata names any more and nobody writes again (a
	 * redundant S3 generation just unrecorded, R13).
	 */
	int (*remove)(void *impl, const char *chunk_id, const struct efs_replica *known,
		       unsigned known_count, int64_t unmodified_for_ms, uint64_t lease_epoch);
	/* 1 when at least one copy answers that it holds the chunk, 0 when
	 * none does, -errno when none could be asked. */
	int (*exists)(void *impl, const char *chunk_id, const struct efs_replica *known,
		      unsigned known_count);
	/* One page of up to @max stored copies, for reconciliation against
	 * the metadata: from the start when @cursor is "", else from where
	 * the page that set it ended. @cursor (EFS_CHUNK_LIST_CURSOR_MAX
	 * bytes, opaque) is replaced by the next page's, "" after the last
	 * page. NULL: the backend reconciles otherwise (the workers report
	 * their chunks). */
	int (*list)(void *impl, char *cursor, size_t max, struct efs_chunk_listed *out,
		    size_t *count);
	/* After an upload recorded a copy it wrote: of the chunk's recorded
	 * locations @known (read back after that record), the one to keep in
	 * @keep and the redundant ones to drop in @drop (*@drop_count, none
	 * when the keeper could not be confirmed present). Every caller that
	 * sees the same locations picks the same keeper, so concurrent trims
	 * never drop each other's. NULL: the backend's copies are never
	 * redundant (the worker backend's replicas). */
	int (*redundant)(void *impl, const struct efs_chunk_info *chunk,
			 const struct efs_replica *known, unsigned known_count,
			 char keep[EFS_ID_MAX + 1], char (*drop)[EFS_ID_MAX + 1],
			 unsigned *drop_count);
	void (*pin)(void *impl, const char *chunk_id);
	void (*unpin)(void *impl, const char *chunk_id);
	bool (*pinned)(void *impl, const char *chunk_id);
	/* 0 when a new chunk can be stored now on @copies distinct places
	 * (the K+M shards of an erasure-coded policy; 0: the backend's own
	 * replicas, REPLICATION_FACTOR of them); -ENOSPC, with why in @why
	 * (for the client), when it cannot (the worker backend: fewer live
	 * workers than that); -errno when that could not be told (a metadata
	 * error). Asked before an upload takes its memory, so that a cluster
	 * that cannot place the bytes refuses at once. NULL: always 0 (S3
	 * takes any chunk; a failure shows at put). */
	int (*writable)(void *impl, unsigned copies, char *why, size_t why_len);
	/* Whether recorded location @rep is a copy a read can use now (the
	 * worker backend: not bad, its worker alive). NULL: the backend's
	 * locations are its own business (S3 generations) and are not shown
	 * to users as replicas. */
	bool (*location_live)(void *impl, const struct efs_replica *rep);
	/* NULL: health is the worker registry's (workers alive). */
	int (*health)(void *impl, struct efs_chunk_health *out);
	void (*free)(void *impl);
};

struct efs_chunk_backend {
	const struct efs_chunk_backend_ops *ops;
	void *impl;
};

/* A backend over @ops and @impl (taken: freed by efs_chunk_backend_free
 * through ops->free). 0 or -ENOMEM (then @impl is freed too). */
int efs_chunk_backend_new(const struct efs_chunk_backend_ops *ops, void *impl,
			  struct efs_chunk_backend **out);
/* NULL is accepted. */
void efs_chunk_backend_free(struct efs_chunk_backend *b);
const char *efs_chunk_backend_name(const struct efs_chunk_backend *b);

int efs_chunk_backend_put(struct efs_chunk_backend *b, const struct efs_chunk_info *chunk,
			  const void *stored, const struct efs_replica *known,
			  unsigned known_count, bool recorded, struct efs_chunk_put_result *out);
int efs_chunk_backend_get(struct efs_chunk_backend *b, const struct efs_chunk_info *chunk,
			  const struct efs_replica *known, unsigned known_count,
			  struct efs_buf *out, struct efs_buf *scratch);
int efs_chunk_backend_remove(struct efs_chunk_backend *b, const char *chunk_id,
			      const struct efs_replica *known, unsigned known_count,
			      int64_t unmodified_for_ms, uint64_t lease_epoch);
int efs_chunk_backend_exists(struct efs_chunk_backend *b, const char *chunk_id,
			     const struct efs_replica *known, unsigned known_count);
/* efs_chunk_backend_get from @known; when no copy could be read (-EIO),
 * the chunk's row is read from @meta again and, if it names other
 * locations than @known (a redundant copy was trimmed since @known was
 * read: LIFECYCLE R13), read once more from those. */
int efs_chunk_backend_get_fresh(struct efs_chunk_backend *b, struct efs_meta *meta,
				const struct efs_chunk_info *chunk, const struct efs_replica *known,
				unsigned known_count, struct efs_buf *out, struct efs_buf *scratch);
/* The redundant copies of a chunk (ops->redundant); *@drop_count is 0
 * when the backend has no such operation. @drop holds EFS_MAX_REPLICAS. */
int efs_chunk_backend_redundant(struct efs_chunk_backend *b, const struct efs_chunk_info *chunk,
				const struct efs_replica *known, unsigned known_count,
				char keep[EFS_ID_MAX + 1], char (*drop)[EFS_ID_MAX + 1],
				unsigned *drop_count);
/* Whether ops->redundant exists (skip reading the row back when not). */
bool efs_chunk_backend_has_redundant(const struct efs_chunk_backend *b);
/* -ENOTSUP when the backend has no list. */
int efs_chunk_backend_list(struct efs_chunk_backend *b, char *cursor, size_t max,
			   struct efs_chunk_listed *out, size_t *count);
/* Every pin is matched by one unpin of the same id; pins nest. A backend
 * without reconciliation has neither (no-ops, pinned is false). */
void efs_chunk_backend_pin(struct efs_chunk_backend *b, const char *chunk_id);
void efs_chunk_backend_unpin(struct efs_chunk_backend *b, const char *chunk_id);
bool efs_chunk_backend_pinned(struct efs_chunk_backend *b, const char *chunk_id);
/* For backends: chunk @chunk from its stored form in @scratch (gzip when
 * @gzip, else raw), into @out, verified against its id. 0; -EBADMSG when
 * the bytes do not decode to @chunk->size bytes that hash to the id;
 * -E2BIG over @out's cap; -ENOMEM. A raw chunk is not copied: @scratch and
 * @out swap their allocations (each keeps its cap). */
int efs_chunk_from_stored(const struct efs_chunk_info *chunk, bool gzip, struct efs_buf *scratch,
			  struct efs_buf *out);
/* ops->erasure_coding. */
bool efs_chunk_backend_erasure_coding(const struct efs_chunk_backend *b);
/* ops->writable; 0 when the backend has none. */
int efs_chunk_backend_writable(struct efs_chunk_backend *b, unsigned copies, char *why,
			       size_t why_len);
/* Whether the backend shows its recorded locations as replicas a user
 * can count (ops->location_live exists). */
bool efs_chunk_backend_shows_locations(const struct efs_chunk_backend *b);
/* ops->location_live; false when the backend has none. */
bool efs_chunk_backend_location_live(struct efs_chunk_backend *b, const struct efs_replica *rep);
/* -ENOTSUP when the backend's health is the worker registry's. */
int efs_chunk_backend_health(struct efs_chunk_backend *b, struct efs_chunk_health *out);

#endif
