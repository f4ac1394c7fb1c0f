/* SPDX-License-Identifier: MIT */
/* upload_pipeline.h - a byte stream of unknown length to stored chunks,
 * several chunks at a time (the one-request upload).
 *
 * The feeding thread (the connection's) copies the bytes into chunk
 * buffers and hashes the whole stream (the file's SHA-256) as they pass.
 * Each full chunk goes to helper threads of the upload, which hash it (its
 * chunk id), compress it, write its replicas and record it in the session
 * (efs_upload_chunk), while the feeding thread reads on. So the file hash,
 * the chunk hashes and compression, the replica writes and the metadata
 * commits of consecutive chunks overlap.
 *
 * Memory is bounded: an upload holds at most `depth` chunk buffers,
 * depth = EFS_UPLOAD_PIPELINE_BYTES / chunk_size, clamped to
 * 1..EFS_UPLOAD_PIPELINE_MAX_DEPTH, and one encode buffer per storing
 * thread. Every buffer beyond an upload's first comes with a helper thread
 * and takes its size from a budget shared by all the uploads of the
 * process (EFS_UPLOAD_PIPELINE_SHARED_BYTES), until the upload ends: with
 * many uploads at once the later ones get fewer buffers, down to one, and
 * an upload with one buffer stores its chunks itself, one after the other,
 * as uploads did before the pipeline. So the master's memory is at most
 * about uploads x 2 chunks + 2 x the shared budget, whatever the number of
 * uploads. When no buffer is free the feeding thread waits for one of its
 * chunks to end (back pressure on the client's socket). The last chunk,
 * given at finish, is always stored by the feeding thread, so an upload of
 * one chunk starts no thread.
 *
 * Chunks are recorded in any order, each under its own index; finish
 * returns only once every chunk is recorded, so the caller's file row
 * comes after all of them (the order upload.h promises still holds). Two
 * chunks of the upload with the same id are stored one after the other,
 * the second as a deduplicated reference.
 *
 * The first failure stops the pipeline: no further chunk is started, the
 * chunks in flight end (copies written for a failed chunk are recorded as
 * upload.h says), and feed and finish return that error from then on.
 */
#ifndef ECHOFS_MASTER_UPLOAD_PIPELINE_H
#define ECHOFS_MASTER_UPLOAD_PIPELINE_H

#include "echofs/hash.h"

#include <stddef.h>
#include <stdint.h>

struct efs_master;
struct efs_upload_pipeline;

/* Chunk bytes an upload may hold in its buffers, and the most chunks. */
#define EFS_UPLOAD_PIPELINE_BYTES (4u * 1024 * 1024)
#define EFS_UPLOAD_PIPELINE_MAX_DEPTH 4u
/* Chunk buffers beyond each upload's first, all uploads together. */
#define EFS_UPLOAD_PIPELINE_SHARED_BYTES ((size_t)16 * 1024 * 1024)

/* What finish reports about a stream that was stored whole. */
struct efs_upload_summary {
	uint64_t size;         /* bytes fed */
	uint64_t chunk_count;  /* chunks stored, indexes 0 .. chunk_count - 1 */
	uint64_t stored_bytes; /* sum of the chunks' stored (maybe gzip) sizes */
	char sha256[EFS_SHA256_HEX_LEN + 1]; /* of the whole stream */
};

/* Chunk buffers for @chunk_size (the depth described above). */
unsigned efs_upload_pipeline_depth(size_t chunk_size);

/* A pipeline storing chunks of @chunk_size bytes into session @session_id
 * (copied). 0 or -ENOMEM. No thread is started yet. */
int efs_upload_pipeline_new(struct efs_master *m, const char *session_id, size_t chunk_size,
			    struct efs_upload_pipeline **out);

/* Adds @len bytes of the stream; every chunk they complete is handed on
 * (or, at depth 1, stored before this returns). Waits while every buffer
 * is in flight. 0, or the pipeline's first error: an efs_upload_chunk
 * error of some chunk (see efs_upload_pipeline_failed_index), -ENOMEM,
 * -EAGAIN (no helper thread could be started). */
int efs_upload_pipeline_feed(struct efs_upload_pipeline *p, const char *data, size_t len);

/* The stream ended: stores the last, partial chunk (in this thread) and
 * waits until every chunk is recorded. 0 with @out filled, or the first
 * error as for feed (@out untouched). Call at most once. */
int efs_upload_pipeline_finish(struct efs_upload_pipeline *p, struct efs_upload_summary *out);

/* After feed or finish failed with a chunk's error: the index of the
 * chunk whose failure came first; otherwise UINT64_MAX. */
uint64_t efs_upload_pipeline_failed_index(struct efs_upload_pipeline *p);

/* Stops the pipeline (chunks not yet started are dropped, those being
 * stored are waited for), joins its threads and frees it. NULL accepted.
 * Afterwards no thread of the pipeline touches the session: the caller may
 * end it. */
void efs_upload_pipeline_free(struct efs_upload_pipeline *p);

#endif
