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
 * master (struct efs_upload_budget of EFS_UPLOAD_PIPELINE_SHARED_BYTES),
 * until the upload ends: with
 * many uploads at once the later ones get fewer buffers, down to one, and
 * an upload with one buffer stores its chunks itself, one after the other,
 * as uploads did before the pipeline. So the master's memory is at most
 * about uploads x 2 chunks + 2 x the shared budget, whatever the number of
 * uploads; the caller bounds the first term (api_files.c takes each
 * upload's 2 chunks from the master's UPLOAD_MEMORY budget, with
 * efs_upload_memory_take). When no buffer is free the feeding thread waits for one of its
 * chunks to end (back pressure on the client's socket). The last chunk,
 * given at finish, is always stored by the feeding thread, so an upload of
 * one chunk starts no thread.
 *
 * A full chunk is handed on only once a byte after it arrives, and the
 * upload's session is opened (the caller's open_session) just before the
 * first chunk is: a stream that fits in one chunk (or is empty) never has
 * a session. At finish it is stored by the feeding thread and recorded
 * together with its file row in one transaction (efs_upload_single).
 *
 * Chunks are recorded in any order, each under its own index; finish
 * returns only once every chunk is recorded, so the caller's file row
 * comes after all of them (the order upload.h promises still holds). Two
 * chunks of the upload with the same id are stored one after the other,
 * the second as a deduplicated reference.
 *
 * PutObject and UploadPart also want the stream's MD5 (the S3 ETag;
 * efs_upload_pipeline_hash_md5). For a stream of more than one chunk a
 * digest thread of the upload hashes the chunks in order as they are
 * handed on, beside the helpers storing them, so the MD5 is off the
 * feeding thread (which keeps the file's SHA-256). It reads the chunk
 * buffers in place: a buffer is free again only once both its store and
 * its MD5 are done, so the MD5 adds no buffer to the budget above, and a
 * digest thread that falls behind slows the feeding thread (back pressure)
 * rather than holding more memory. A stream of one chunk starts no thread:
 * its MD5 is computed by the feeding thread at the end.
 *
 * The first failure stops the pipeline: no further chunk is started, the
 * chunks in flight end (copies written for a failed chunk are recorded as
 * upload.h says), and feed and finish return that error from then on.
 */
#ifndef ECHOFS_MASTER_UPLOAD_PIPELINE_H
#define ECHOFS_MASTER_UPLOAD_PIPELINE_H

#include "echofs/hash.h"
#include "echofs/meta.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct efs_uploader;
struct efs_upload_pipeline;

/* Chunk bytes an upload may hold in its buffers, and the most chunks. */
#define EFS_UPLOAD_PIPELINE_BYTES (4u * 1024 * 1024)
#define EFS_UPLOAD_PIPELINE_MAX_DEPTH 4u
/* Chunk buffers beyond each upload's first, all uploads together. */
#define EFS_UPLOAD_PIPELINE_SHARED_BYTES ((size_t)16 * 1024 * 1024)

/* Chunk-buffer bytes held beyond each upload's first, over all the uploads
 * that share this budget (one master's): at most @limit. */
struct efs_upload_budget {
	atomic_size_t used;
	size_t limit;
};

/* An unused budget of @limit bytes. */
void efs_upload_budget_init(struct efs_upload_budget *budget, size_t limit);
/* The bytes taken from it now. */
size_t efs_upload_budget_used(struct efs_upload_budget *budget);
/* Takes @bytes from the budget: true, or false (nothing taken) when they
 * would take it over its limit. */
bool efs_upload_budget_take(struct efs_upload_budget *budget, size_t bytes);
/* Gives back @bytes taken earlier. */
void efs_upload_budget_give(struct efs_upload_budget *budget, size_t bytes);

/* What finish reports about a stream that was stored whole. */
struct efs_upload_summary {
	uint64_t size;         /* bytes fed */
	uint64_t chunk_count;  /* chunks stored, indexes 0 .. chunk_count - 1 */
	uint64_t stored_bytes; /* sum of the chunks' stored (maybe gzip) sizes */
	char sha256[EFS_SHA256_HEX_LEN + 1]; /* of the whole stream */
	/* Of the whole stream with efs_upload_pipeline_hash_md5; "" without. */
	char md5[EFS_MD5_HEX_LEN + 1];
	/* The file row is written (one chunk or none, no session); otherwise
	 * the chunks are in the session and the caller completes it. */
	bool recorded;
	/* efs_upload_pipeline_finish_object: the object row is written with
	 * the file, in the same transaction (only when recorded). */
	bool object_linked;
};

/* Opens the session the upload's chunks will be recorded in and writes its
 * id (at most EFS_ID_MAX characters) to @session_id. 0 or -errno, which
 * fails the pipeline. Called at most once, in the feeding thread. */
typedef int (*efs_upload_session_open_fn)(void *ctx, char *session_id);

/* Chunk buffers for @chunk_size (the depth described above). */
unsigned efs_upload_pipeline_depth(size_t chunk_size);

/* A pipeline storing chunks of @chunk_size bytes into the session that
 * @open_session(@open_ctx) opens when the stream turns out to need more
 * than one chunk with @up (efs_upload_chunk), its buffers beyond the first
 * paid from @budget (both must outlive it). 0 or -ENOMEM. No thread is started and no session is
 * opened yet. */
int efs_upload_pipeline_new(const struct efs_uploader *up, struct efs_upload_budget *budget,
			    size_t chunk_size,
			    efs_upload_session_open_fn open_session, void *open_ctx,
			    struct efs_upload_pipeline **out);

/* Also hash the stream with MD5 (the S3 ETag), as described above; its
 * hex digest comes in the summary and from efs_upload_pipeline_digests.
 * Call before the first feed. 0 or -ENOMEM. */
int efs_upload_pipeline_hash_md5(struct efs_upload_pipeline *p);

/* Adds @len bytes of the stream; every chunk they complete is handed on
 * (or, at depth 1, stored before this returns). Waits while every buffer
 * is in flight. 0, or the pipeline's first error: an efs_upload_chunk
 * error of some chunk (see efs_upload_pipeline_failed_index), an
 * open_session error, -ENOMEM. */
int efs_upload_pipeline_feed(struct efs_upload_pipeline *p, const char *data, size_t len);

/* The stream ended: stores the last, partial chunk (in this thread) and
 * waits until every chunk is recorded. When no session was opened (the
 * stream fitted in one chunk), the chunk is stored and recorded with
 * @file in one transaction: @file is filled by the caller but for size,
 * sha256, chunk_count and stored_bytes, which are set here, and
 * out->recorded is true. Otherwise @file is untouched and the caller
 * completes the session. @file NULL: the chunks always go into the
 * session (opened now when the stream fitted in one chunk; never opened
 * for an empty stream): a multipart part, which is no file of its own.
 * 0 with @out filled, or the first error as for
 * feed, or an efs_upload_single error (chunk index 0) (@out and @file
 * untouched). Call it again only to get the error back. */
int efs_upload_pipeline_finish(struct efs_upload_pipeline *p, struct efs_file_info *file,
			       struct efs_upload_summary *out);

/* efs_upload_pipeline_finish for PutObject. @expect_sha256 (hex, any
 * case; NULL: none) is the SHA-256 the stream must have: when it differs
 * the call returns -EBADMSG, having stored nothing more of a stream that
 * fitted in one chunk (no file is recorded in either case; a session's
 * chunks are the caller's to release, as on any error). A stream recorded
 * with @file (out->recorded) is recorded with @link's object in the same
 * transaction when @link is not NULL (efs_meta_file_create_object):
 * out->object_linked is then true; when the object is refused nothing is
 * recorded, -ECANCELED is returned and link->refused says why.
 * link->object must already name @file's id, size and created_at_ms. */
int efs_upload_pipeline_finish_object(struct efs_upload_pipeline *p, struct efs_file_info *file,
				      const char *expect_sha256, struct efs_object_link *link,
				      struct efs_upload_summary *out);

/* The stream ended (no feed after this): its SHA-256 into @sha256 and its
 * MD5 into @md5 ("" unless efs_upload_pipeline_hash_md5), known before the
 * last chunk is stored and before anything is recorded, so that the
 * caller can refuse the body (Content-MD5, checksums) and then call
 * finish, or free. Waits for the digest thread to hash the chunks handed
 * on (at most the upload's depth); the chunk being filled is hashed by the
 * calling thread. 0, or the pipeline's first error (the digests are then
 * untouched). Finish reports the same digests. */
int efs_upload_pipeline_digests(struct efs_upload_pipeline *p, char sha256[EFS_SHA256_HEX_LEN + 1],
				char md5[EFS_MD5_HEX_LEN + 1]);

/* After feed or finish failed with a chunk's error: the index of the
 * chunk whose failure came first; otherwise UINT64_MAX. */
uint64_t efs_upload_pipeline_failed_index(struct efs_upload_pipeline *p);

/* Stops the pipeline (chunks not yet started are dropped, those being
 * stored or hashed are waited for), joins its threads and frees it. NULL accepted.
 * Afterwards no thread of the pipeline touches the session: the caller may
 * end it. */
void efs_upload_pipeline_free(struct efs_upload_pipeline *p);

#endif
