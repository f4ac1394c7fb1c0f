/* SPDX-License-Identifier: MIT */
/* chunk_s3.h - an S3 bucket as a chunk backend (chunk_backend.h): one
 * object per stored generation of a chunk, key
 * chunks/<first two hex digits>/<chunk id>.<generation>, holding the
 * chunk's stored form (raw, or gzip when smaller) with its encoding and
 * CRC32C in user metadata (x-amz-meta-encoding, x-amz-meta-crc32c).
 * docs/AWS.md "The S3 chunk store" has the request counts and what each
 * failure does.
 *
 * A generation is 16 random hex digits drawn by the PutObject that writes
 * it; no key is ever written twice. The put returns it as the location to
 * record with the reference ("s3:<generation>", kept where the worker mode
 * keeps replica rows), and get and remove use the recorded locations: the
 * collector deletes exactly the objects of the row it took, never an
 * object another master wrote for a row recorded after (LIFECYCLE R13,
 * which closed W7). Objects written before generations existed,
 * chunks/ab/<chunk id> with no suffix, are the "legacy" copy of a row
 * that records no location: read, kept by dedup, and collected as before.
 *
 * Chosen when S3_BUCKET_NAME is set. No placement, no repair:
 * REPLICATION_FACTOR is S3's business. What the backend keeps:
 *
 * - put: for a chunk the metadata records, a HeadObject of a recorded
 *   generation (or of the legacy key when none is recorded) confirms the
 *   object is there (dedup: nothing sent, no location); otherwise, or when
 *   it is gone, one PutObject of a new generation, which returns when S3
 *   acknowledged it. While another upload on this master is writing a
 *   generation of the same chunk, a put waits for its record and returns
 *   -ESTALE (look again: deduplicated) rather than write a second one. Retries with backoff (5xx, 429, SlowDown, connection
 *   errors) are aws.c's.
 * - get: GetObject of each recorded generation in turn (the legacy key
 *   when none is recorded) until one verifies: decoded by its
 *   x-amz-meta-encoding, checked against its x-amz-meta-crc32c and the
 *   chunk id (-EIO when none does: never bad bytes).
 * - remove (LIFECYCLE R13): for each generation named (the legacy key when
 *   none is), HeadObject, and DeleteObject only when the object's age by
 *   S3's own clock (the answer's Date minus Last-Modified) exceeds the
 *   duration.
 * - list: ListObjectsV2 under chunks/ (the collector's orphan sweep, R14),
 *   each object as its chunk id and its location ("" for a legacy key).
 * - health: HeadBucket.
 *
 * Errors: -EHOSTUNREACH when S3 is unreachable or still failing after the
 * retries (503 chunk_store_unavailable), -EACCES refused (credentials,
 * policy), -ENOENT the bucket is missing (put) / the object is missing
 * (get: -EIO), -EIO bytes that do not verify. Each failure is logged once
 * by the backend for put and remove (what S3 answered, after how many
 * attempts), by the caller for get (chunk_backend.h).
 */
#ifndef ECHOFS_MASTER_CHUNK_S3_H
#define ECHOFS_MASTER_CHUNK_S3_H

#include "echofs/aws.h"
#include "master/chunk_backend.h"

struct efs_http_client;

/* What the S3 backend works with: @http is borrowed (it must outlive the
 * backend), @aws and @bucket are copied. */
struct efs_chunk_s3_config {
	const struct efs_aws_config *aws;
	struct efs_http_client *http; /* keep-alive connections, shared with the master */
	const char *bucket;	      /* S3_BUCKET_NAME */
};

/* The S3 backend over @cfg. 0, -EINVAL (a malformed bucket name) or
 * -ENOMEM. Sends no request: a bucket that cannot be reached shows in
 * health and in the first operations' errors. */
int efs_chunk_s3_new(const struct efs_chunk_s3_config *cfg, struct efs_chunk_backend **out);

/* The object key of generation @gen (16 hex digits) of @chunk_id into
 * @key (EFS_CHUNK_S3_KEY_SIZE bytes): "chunks/ab/abcd....0123456789abcdef";
 * with @gen NULL or "", the legacy key "chunks/ab/abcd...". */
#define EFS_CHUNK_S3_PREFIX "chunks/"
#define EFS_CHUNK_S3_GEN_LEN 16
#define EFS_CHUNK_S3_KEY_SIZE 96
void efs_chunk_s3_key(const char *chunk_id, const char *gen, char key[EFS_CHUNK_S3_KEY_SIZE]);

/* A location as recorded in the metadata: "s3:" and the generation. */
#define EFS_CHUNK_S3_LOCATION_PREFIX "s3:"

#endif
