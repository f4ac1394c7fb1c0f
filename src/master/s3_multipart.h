/* SPDX-License-Identifier: MIT */
/* s3_multipart.h - S3 multipart uploads: CreateMultipartUpload,
 * UploadPart, CompleteMultipartUpload, AbortMultipartUpload, ListParts,
 * ListMultipartUploads (docs/S3.md#multipart-upload). An upload belongs to
 * the bucket's owner, the only user who reaches the bucket; an upload id
 * of another bucket or key is NoSuchUpload. Parts are held by references
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
 * part number sent again replaces the part. */
int efs_s3_upload_part_begin(struct efs_s3_req *s);
/* POST /bucket/key?uploadId=X (begin step): the <CompleteMultipartUpload>
 * body (capped) is checked (MalformedXML, InvalidPartOrder, InvalidPart,
 * EntityTooSmall) and the object made, atomically. */
int efs_s3_complete_upload_begin(struct efs_s3_req *s);
/* DELETE /bucket/key?uploadId=X: 204, the parts released. */
int efs_s3_abort_upload(struct efs_s3_req *s);
/* GET /bucket/key?uploadId=X: ListParts (max-parts, part-number-marker). */
int efs_s3_list_parts(struct efs_s3_req *s);
/* GET /bucket?uploads: ListMultipartUploads (prefix, key-marker,
 * upload-id-marker, max-uploads, encoding-type). */
int efs_s3_list_uploads(struct efs_s3_req *s);

#endif
