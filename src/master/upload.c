/* SPDX-License-Identifier: MIT */
/* upload.c - one chunk from bytes to a durable, referenced, replicated
 * chunk. */
#include "master/upload.h"
#include "echofs/codec.h"
#include "echofs/hash.h"
#include "echofs/log.h"
#include "echofs/util.h"
#include "master/chunk_backend.h"
#include "master/config.h"

#include <string.h>

#define ATTEMPTS 3
/* Lookups again because the backend stored the chunk meanwhile for another
 * upload (put's -ESTALE); bounded by the uploads of the same bytes at once. */
#define MAX_LOOK_AGAIN 64

void efs_upload_buffers_init(struct efs_upload_buffers *b)
{
	efs_buf_init(&b->encoded, EFS_MAX_CHUNK_SIZE);
	b->encoded_gzip = false;
}

void efs_upload_buffers_release(struct efs_upload_buffers *b)
{
	efs_buf_release(&b->encoded);
}

/* Where a stored chunk is recorded: chunk @index of session @session_id,
 * or, when @file is set, the one chunk of @file (efs_meta_file_create_single,
 * which writes the file row in the same transaction). */
struct record_target {
	const char *session_id;
	uint64_t index;
	struct efs_file_info *file;
	struct efs_object_link *link; /* with @file: its S3 object, or NULL */
};

/* The reference to the chunk (written, or reused with @dedup), in one
 * transaction. For a file, its stored_bytes are those of the chunk row
 * that the file will name: the existing one when deduplicated. */
static int record_chunk(const struct efs_uploader *up, const struct record_target *to,
			const struct efs_chunk_info *chunk, const struct efs_chunk_info *existing,
			const char *const *added_ids, unsigned added, bool dedup)
{
	int64_t now = efs_now_ms();
	if (!to->file)
		return efs_meta_session_put_chunk(up->meta, to->session_id, to->index, chunk,
						  added_ids, added, dedup, now,
						  now + up->upload_idle_ms, now + up->session_ttl_ms);
	to->file->chunk_count = 1;
	to->file->stored_bytes = dedup ? existing->stored_size : chunk->stored_size;
	if (to->link)
		return efs_meta_file_create_object(up->meta, to->file, chunk, added_ids, added,
						   dedup, to->link, now);
	return efs_meta_file_create_single(up->meta, to->file, chunk, added_ids, added, dedup, now);
}

/* Copies written (@put's locations) that no reference will name (the
 * write or its record failed) must not be lost track of: they are recorded
 * unreferenced, and the collector takes them after its grace period. When
 * the store refuses even that, the backend's reconciliation (the workers'
 * reports) finds them as orphans after ORPHAN_GRACE_MS. */
static void keep_track_of_copies(const struct efs_uploader *up, const struct efs_chunk_info *chunk,
				 const struct efs_chunk_put_result *put)
{
	const char *ids[EFS_MAX_REPLICAS];
	for (unsigned i = 0; i < put->location_count; i++)
		ids[i] = put->location_ids[i];
	if (put->location_count > 0)
		efs_meta_chunk_record_unreferenced(up->meta, chunk, ids, put->location_count,
						   efs_now_ms());
}

/* LIFECYCLE R13, trim: uploads of the same new bytes through several
 * masters at once each wrote and recorded a copy of their own (S3
 * generations). After recording one, the row is read back; each redundant
 * copy the backend names is first unrecorded (only while the kept one is
 * still recorded), then deleted: no row names it any more and nobody
 * writes that key again, so the delete needs no condition, and a reader
 * holding the old locations reads the kept one (efs_chunk_backend_get_fresh).
 * A copy another trim (or the collector) unrecorded first is theirs to
 * delete. Best effort: the upload has succeeded whatever happens here; a
 * copy left recorded goes with the chunk, one left unrecorded goes with
 * the orphan sweep (R14). */
static void trim_copies(const struct efs_uploader *up, const struct efs_chunk_info *chunk)
{
	struct efs_replica known[EFS_MAX_REPLICAS];
	struct efs_chunk_info row;
	char keep[EFS_ID_MAX + 1];
	char drop[EFS_MAX_REPLICAS][EFS_ID_MAX + 1];
	unsigned known_count = 0, drop_count = 0;

	if (!efs_chunk_backend_has_redundant(up->chunks) ||
	    efs_meta_chunk_get(up->meta, chunk->chunk_id, &row, known, &known_count) < 0 ||
	    efs_chunk_backend_redundant(up->chunks, &row, known, known_count, keep, drop,
					&drop_count) < 0)
		return;
	for (unsigned i = 0; i < drop_count; i++) {
		int r = efs_meta_replica_remove_if(up->meta, chunk->chunk_id, drop[i], keep);
		if (r == -ENOENT)
			continue; /* another master's trim or the collector has it */
		if (r < 0) {
			efs_warn("chunk %.12s: redundant copy %s could not be unrecorded (%s); kept "
				 "with %s until the chunk is collected",
				 chunk->chunk_id, drop[i], strerror(-r), keep);
			continue;
		}
		struct efs_replica where;
		memset(&where, 0, sizeof(where));
		efs_strlcpy(where.worker_id, drop[i], sizeof(where.worker_id));
		/* a failure is logged by the backend: the orphan sweep's now */
		if (efs_chunk_backend_remove(up->chunks, chunk->chunk_id, &where, 1, -1, 0) == 0)
			efs_info("chunk %.12s: stored at once through several masters; redundant "
				 "copy %s removed, %s kept",
				 chunk->chunk_id, drop[i], keep);
	}
}

/* The dedup / put / record loop for one encoded chunk. */
static int store_chunk(const struct efs_uploader *up, const struct record_target *to,
		       const struct efs_chunk_info *chunkp, const char *stored,
		       struct efs_chunk_result *out)
{
	struct efs_chunk_info chunk = *chunkp;
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	struct efs_chunk_put_result put;
	const char *added_ids[EFS_MAX_REPLICAS];
	int look_again = 0;
	int r;

	for (int attempt = 0; attempt < ATTEMPTS; attempt++) {
		struct efs_chunk_info existing;
		unsigned replica_count = 0;
		r = efs_meta_chunk_get(up->meta, chunk.chunk_id, &existing, replicas,
				       &replica_count);
		bool dedup = r == 0;
		if (r < 0 && r != -ENOENT)
			return r;
		/* A chunk already stored is referenced as it is stored, whatever
		 * this upload's policy (replicated or EC: the dedup rule). */
		chunk.ec_data = dedup ? existing.ec_data : chunkp->ec_data;
		chunk.ec_parity = dedup ? existing.ec_parity : chunkp->ec_parity;
		/* The backend reuses the copies that still hold the chunk and
		 * writes what is missing (nothing: deduplicated). */
		r = efs_chunk_backend_put(up->chunks, &chunk, stored, replicas,
					  dedup ? replica_count : 0, dedup, &put);
		if (r == -ESTALE && look_again++ < MAX_LOOK_AGAIN) {
			attempt--; /* not a failure: the row is there now */
			continue;
		}
		if (r < 0) {
			keep_track_of_copies(up, &chunk, &put);
			return r;
		}
		for (unsigned i = 0; i < put.location_count; i++)
			added_ids[i] = put.location_ids[i];
		r = record_chunk(up, to, &chunk, &existing, added_ids, put.location_count, dedup);
		if (r == -ESTALE) {
			efs_debug("chunk %.12s was collected while being reused; storing it again",
				  chunk.chunk_id);
			continue;
		}
		if (r < 0) {
			keep_track_of_copies(up, &chunk, &put);
			return r;
		}
		if (put.sent && put.location_count > 0)
			trim_copies(up, &chunk);
		out->chunk = dedup ? existing : chunk;
		out->deduplicated = dedup && !put.sent;
		atomic_fetch_add(&up->counters->chunks_uploaded, 1);
		if (out->deduplicated)
			atomic_fetch_add(&up->counters->chunks_deduplicated, 1);
		return 0;
	}
	return -EAGAIN;
}

/* Hash (unless @chunk_id is given) and encode, both in one pass when
 * hashing, unless @encoded (efs_upload_encode did both into @bufs, and
 * @chunk_id is its id); then store_chunk under the in-flight guard. */
static int upload_one(const struct efs_uploader *up, struct efs_upload_buffers *bufs,
		      const struct record_target *to, const char *data, size_t len,
		      const char *chunk_id, bool encoded, struct efs_chunk_result *out)
{
	struct efs_chunk_info chunk;
	int r;

	memset(&chunk, 0, sizeof(chunk));
	chunk.size = len;
	chunk.ec_data = up->ec_data;
	chunk.ec_parity = up->ec_parity;
	if (encoded) {
		efs_strlcpy(chunk.chunk_id, chunk_id, sizeof(chunk.chunk_id));
		chunk.compressed = bufs->encoded_gzip;
	} else if (chunk_id) {
		efs_strlcpy(chunk.chunk_id, chunk_id, sizeof(chunk.chunk_id));
		if ((r = efs_codec_encode(data, len, &bufs->encoded, &chunk.compressed)) < 0)
			return r;
	} else if ((r = efs_codec_encode_hash(data, len, &bufs->encoded, &chunk.compressed,
					      chunk.chunk_id)) < 0) {
		return r;
	}
	const char *stored = chunk.compressed ? bufs->encoded.data : data;
	chunk.stored_size = chunk.compressed ? bufs->encoded.len : len;

	/* From the first copy written until the metadata names it, the
	 * backend's reconciliation (a worker's report) must not have the chunk
	 * deleted as an orphan. */
	efs_chunk_backend_pin(up->chunks, chunk.chunk_id);
	r = store_chunk(up, to, &chunk, stored, out);
	efs_chunk_backend_unpin(up->chunks, chunk.chunk_id);
	return r;
}

int efs_upload_chunk(const struct efs_uploader *up, struct efs_upload_buffers *bufs,
		     const char *session_id, uint64_t index, const char *data, size_t len,
		     const char *chunk_id, struct efs_chunk_result *out)
{
	struct record_target to = {session_id, index, NULL, NULL};
	return upload_one(up, bufs, &to, data, len, chunk_id, false, out);
}

int efs_upload_encode(struct efs_upload_buffers *bufs, const char *data, size_t len,
		      char chunk_id[EFS_SHA256_HEX_LEN + 1])
{
	return efs_codec_encode_hash(data, len, &bufs->encoded, &bufs->encoded_gzip, chunk_id);
}

int efs_upload_chunk_encoded(const struct efs_uploader *up, struct efs_upload_buffers *bufs,
			     const char *session_id, uint64_t index, const char *data, size_t len,
			     const char *chunk_id, struct efs_chunk_result *out)
{
	struct record_target to = {session_id, index, NULL, NULL};
	return upload_one(up, bufs, &to, data, len, chunk_id, true, out);
}

int efs_upload_single(const struct efs_uploader *up, struct efs_upload_buffers *bufs,
		      const char *data, size_t len, const char *chunk_id,
		      struct efs_file_info *file, struct efs_object_link *link,
		      struct efs_chunk_result *out)
{
	struct record_target to = {NULL, 0, file, link};
	if (len == 0) {
		/* No chunk: the file row alone. */
		file->chunk_count = 0;
		file->stored_bytes = 0;
		memset(out, 0, sizeof(*out));
		if (link)
			return efs_meta_file_create_object(up->meta, file, NULL, NULL, 0, false,
							   link, efs_now_ms());
		return efs_meta_file_create_single(up->meta, file, NULL, NULL, 0, false,
						   efs_now_ms());
	}
	return upload_one(up, bufs, &to, data, len, chunk_id, false, out);
}
