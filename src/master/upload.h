/* SPDX-License-Identifier: MIT */
/* upload.h - storing one chunk of an upload: hash, compress, deduplicate,
 * store (chunk_backend.h), record.
 *
 * Both ways in use it: the one-request upload (a hidden session, or no
 * session at all when the body fits in one chunk: efs_upload_single) and
 * the client's chunked sessions. The order is the durability contract:
 * the chunk is durable in the chunk backend (efs_chunk_backend_put: on
 * every replica, fsync'd by the workers) before the metadata transaction
 * that makes the session (or the file) reference it; a crash in between
 * leaves an orphan in the backend, never a reference to nothing.
 *
 * Deduplication: when the chunk is already stored with enough good, live
 * replicas, nothing is sent: the session only takes a reference, in a
 * transaction that fails (-ESTALE, and the chunk is stored afresh) if the
 * collector removed the chunk meanwhile. When replicas are missing, only
 * those are written before the reference is taken.
 */
#ifndef ECHOFS_MASTER_UPLOAD_H
#define ECHOFS_MASTER_UPLOAD_H

#include "echofs/buf.h"
#include "echofs/hash.h"
#include "echofs/meta.h"

#include <stdatomic.h>
#include <stdint.h>

struct efs_chunk_backend;

/* Data-path counters since start, for GET /metrics and GET /api/v1/stats. */
struct efs_master_counters {
	_Atomic uint64_t chunks_uploaded;     /* chunks stored by uploads, both ways in */
	_Atomic uint64_t chunks_deduplicated; /* of those, already on enough workers */
	_Atomic uint64_t chunk_lists_read;    /* chunk list queries of downloads (download.c) */
	_Atomic uint64_t s3_object_reads;     /* store reads of GetObject/HeadObject (s3_object.c) */
};

/* What storing chunks needs, all borrowed from the master (which outlives
 * every upload). */
struct efs_uploader {
	struct efs_meta *meta;          /* chunk rows, sessions, files */
	struct efs_chunk_backend *chunks; /* where the bytes go (put, pin) */
	int64_t upload_idle_ms;         /* a hidden session's expiry moves this far per chunk */
	int64_t session_ttl_ms;         /* a client's session lives at least this long
					 * after each chunk */
	struct efs_master_counters *counters; /* counted into */
	/* The upload's storage policy for new chunks: ec_data (K) data and
	 * ec_parity (M) parity shards per chunk, or 0, 0 for the backend's
	 * replicas. An upload with its own policy stores through a copy of
	 * the master's uploader with these set. */
	unsigned ec_data;
	unsigned ec_parity;
};

struct efs_chunk_result {
	struct efs_chunk_info chunk;
	bool deduplicated; /* no bytes were sent to workers */
};

/* Scratch buffers an upload keeps across its chunks (no allocation per
 * chunk). */
struct efs_upload_buffers {
	struct efs_buf encoded;
	bool encoded_gzip; /* efs_upload_encode: encoded holds gzip, else raw */
};

void efs_upload_buffers_init(struct efs_upload_buffers *b);
void efs_upload_buffers_release(struct efs_upload_buffers *b);

/* Stores @data as chunk @index of session @session_id. When @chunk_id is
 * not NULL it is the chunk's SHA-256 hex, already computed. -ENOSPC: not
 * enough live workers with room (503 no_capacity); -EAGAIN: the metadata
 * store is unavailable; -ENOENT: the session is gone; -errno. */
int efs_upload_chunk(const struct efs_uploader *up, struct efs_upload_buffers *bufs,
		     const char *session_id, uint64_t index, const char *data, size_t len,
		     const char *chunk_id, struct efs_chunk_result *out);

/* The first half of efs_upload_chunk, for a caller that needs the chunk
 * id before storing (the upload pipeline's same-chunk check): hashes and
 * encodes @data into @bufs in one pass over its bytes
 * (efs_codec_encode_hash), its SHA-256 hex into @chunk_id. 0 or -ENOMEM. */
int efs_upload_encode(struct efs_upload_buffers *bufs, const char *data, size_t len,
		      char chunk_id[EFS_SHA256_HEX_LEN + 1]);

/* efs_upload_chunk for @data that efs_upload_encode has just encoded into
 * @bufs, @chunk_id the id it gave; the same errors. */
int efs_upload_chunk_encoded(const struct efs_uploader *up, struct efs_upload_buffers *bufs,
			     const char *session_id, uint64_t index, const char *data, size_t len,
			     const char *chunk_id, struct efs_chunk_result *out);

/* Stores @data as the only chunk of @file and records both in one
 * transaction (efs_meta_file_create_single), once every replica is
 * durable; @len 0 records an empty file without a chunk. @file is filled
 * by the caller except chunk_count and stored_bytes, which are set here.
 * With @link (a PutObject; NULL otherwise) its object is written in the
 * same transaction (efs_meta_file_create_object): -ECANCELED with
 * link->refused set when it is refused. @chunk_id as for efs_upload_chunk.
 * Errors as for efs_upload_chunk
 * (never -ENOENT), and -EEXIST when @file's id is taken; on error no file
 * is recorded (copies already written are recorded unreferenced, as for a
 * chunk, when the store takes that record; otherwise the workers' reports
 * find them as orphans). */
int efs_upload_single(const struct efs_uploader *up, struct efs_upload_buffers *bufs,
		      const char *data, size_t len, const char *chunk_id,
		      struct efs_file_info *file, struct efs_object_link *link,
		      struct efs_chunk_result *out);

#endif
