/* SPDX-License-Identifier: MIT */
/* chunk_s3.h - an S3 bucket as a chunk backend (chunk_backend.h): one
 * object per chunk, key chunks/<first two hex digits>/<chunk id>, holding
 * the chunk's stored form (raw, or gzip when smaller) with its encoding
 * and CRC32C in user metadata (x-amz-meta-encoding, x-amz-meta-crc32c).
 * docs/AWS.md "The S3 chunk store" has the request counts and what each
 * failure does.
 *
 * Chosen when S3_BUCKET_NAME is set. No locations are recorded in the
 * metadata (a put returns none, @known is ignored), no placement, no
 * repair: REPLICATION_FACTOR is S3's business. What the backend keeps:
 *
 * - put: for a chunk the metadata records, a HeadObject confirms the object
 *   is there (dedup: nothing sent); otherwise, or when it is gone, one
 *   PutObject, which returns when S3 acknowledged it. Retries with backoff
 *   (5xx, 429, SlowDown, connection errors) are aws.c's.
 * - get: one GetObject, decoded by its x-amz-meta-encoding, checked
 *   against its x-amz-meta-crc32c and the chunk id (-EIO on any mismatch:
 *   never bad bytes).
 * - remove (LIFECYCLE R4-S3): skipped while this master pins the chunk
 *   (an upload of it is under way); else HeadObject, and DeleteObject only
 *   when the object's age by S3's own clock (the answer's Date minus
 *   Last-Modified) exceeds the duration. A put of the same id on this
 *   master waits for a remove in progress, so a rewrite is never deleted
 *   behind the HEAD's back.
 * - list: ListObjectsV2 under chunks/ (the collector's orphan sweep).
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

/* The object key of @chunk_id into @key (at least EFS_CHUNK_S3_KEY_SIZE
 * bytes): "chunks/ab/abcd...". */
#define EFS_CHUNK_S3_PREFIX "chunks/"
#define EFS_CHUNK_S3_KEY_SIZE 80
void efs_chunk_s3_key(const char *chunk_id, char key[EFS_CHUNK_S3_KEY_SIZE]);

#endif
