/* SPDX-License-Identifier: MIT */
/* s3_multipart.h - S3 multipart uploads: CreateMultipartUpload,
 * UploadPart, UploadPartCopy, CompleteMultipartUpload,
 * AbortMultipartUpload, ListParts, ListMultipartUploads
 * (docs/S3.md#multipart-upload). An upload belongs to the bucket's
 * owner, the only user who reaches the bucket; an upload id of another
 * bucket or key is NoSuchUpload. Parts are held by references
 * from the moment they are stored (meta.h, "S3 multipart uploads");
 * completing joins them into one file without copying a byte. With a
 * metadata store that has no multipart operations (DynamoDB) every one of
 * these answers 501 NotImplemented. */
#ifndef ECHOFS_MASTER_S3_MULTIPART_H
#define ECHOFS_MASTER_S3_MULTIPART_H

#include "master/s3_routes.h"

/* POST /bucket/key?uploads (on_end): the upload, with the object's
 * headers taken as PutObject takes them. */
int efs_s3_create_upload(struct efs_s3_req *s);
/* PUT /bucket/key?partNumber=N&uploadId=X (begin step): the body streams
 * through the upload pipeline (memory bounded); the ETag is its MD5. A
 * part number sent again replaces the part. With x-amz-copy-source
 * (UploadPartCopy) the part is a range of an object of the caller's,
 * read through the download reader into the same pipeline. */
int efs_s3_upload_part_begin(struct efs_s3_req *s);
/* POST /bucket/key?uploadId=X (begin step): the <CompleteMultipartUpload>
 * body (capped) is checked (MalformedXML, InvalidPartOrder, InvalidPart,
 * EntityTooSmall) and the object made, atomically. */
int efs_s3_complete_upload_begin(struct efs_s3_req *s);
/* A part a CompleteMultipartUpload body lists. */
struct efs_s3_listed_part {
	unsigned number; /* 1..EFS_S3_PART_MAX */
	char etag[33];	 /* lower-case hex MD5, when etag_valid */
	bool etag_valid; /* the <ETag> was 32 hex digits (quoted or not) */
};
/* Parses a <CompleteMultipartUpload> body of @len bytes: 1 to
 * EFS_S3_PART_MAX <Part>s, each with one <PartNumber> (1..EFS_S3_PART_MAX)
 * and one <ETag>, and optional <Checksum*> elements (ignored), into @out
 * (EFS_S3_PART_MAX entries, the caller's) and *@count. 0; -ERANGE when the
 * numbers are not strictly ascending (@out and *@count filled all the
 * same); -EBADMSG when it is not such a document (not well-formed, a
 * DOCTYPE, another element, too deep or too long a text); -ENOMEM. Pure:
 * fuzzed by tests/fuzz/fuzz_s3_complete.c. */
int efs_s3_complete_parse(const char *body, size_t len, struct efs_s3_listed_part *out,
			  size_t *count);
/* DELETE /bucket/key?uploadId=X: 204, the parts released. */
int efs_s3_abort_upload(struct efs_s3_req *s);
/* GET /bucket/key?uploadId=X: ListParts (max-parts, part-number-marker). */
int efs_s3_list_parts(struct efs_s3_req *s);
/* GET /bucket?uploads: ListMultipartUploads (prefix, key-marker,
 * upload-id-marker, max-uploads, encoding-type). */
int efs_s3_list_uploads(struct efs_s3_req *s);

#endif
