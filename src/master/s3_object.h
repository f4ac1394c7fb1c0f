/* SPDX-License-Identifier: MIT */
/* s3_object.h - S3 object operations: PutObject, GetObject, HeadObject,
 * DeleteObject. An object IS an EchoFS file (owner: the bucket's owner):
 * its bytes go through the upload pipeline (chunked, deduplicated,
 * compressed, replicated; memory bounded whatever the size) and come back
 * through the download reader (ranges streamed). */
#ifndef ECHOFS_MASTER_S3_OBJECT_H
#define ECHOFS_MASTER_S3_OBJECT_H

#include "master/s3_routes.h"

/* The largest single PUT, as S3's (5 GiB). */
#define EFS_S3_MAX_PUT_SIZE ((uint64_t)5 * 1024 * 1024 * 1024)

/* PutObject's begin step: checks the bucket, the key, the headers and the
 * capacity, sets up the upload and its on_body / on_end; or replies. */
int efs_s3_put_object_begin(struct efs_s3_req *s);
/* CopyObject: PUT /bucket/key with x-amz-copy-source (docs/S3.md
 * "CopyObject"): the new object shares the source's chunks, nothing is
 * copied. Sets s->on_end, or replies. */
int efs_s3_copy_object_begin(struct efs_s3_req *s);
/* GET and HEAD of an object (Range: one range, suffix and open ranges). */
int efs_s3_get_object(struct efs_s3_req *s);
/* 204 whether or not the key existed, as S3. */
int efs_s3_delete_object(struct efs_s3_req *s);

/* Keys in one DeleteObjects request, as S3's limit. */
#define EFS_S3_DELETE_MAX 1000
/* DeleteObjects (POST /bucket?delete)'s begin step: the <Delete> body is
 * buffered (capped: 400 MaxMessageLengthExceeded), then checked
 * (Content-MD5 required, as S3; a signed payload's SHA-256), parsed
 * (400 MalformedXML) and each key deleted in its own transaction; the
 * answer lists each <Deleted> (unless Quiet) and <Error>. */
int efs_s3_delete_objects_begin(struct efs_s3_req *s);

/* DeleteObjects' <Delete> document, parsed. */
struct efs_s3_delete_list {
	struct efs_buf keys; /* the keys, each NUL-terminated, in order */
	size_t key_count;
	bool quiet;
	const char *refused; /* an element not implemented (VersionId...), static */
};
/* Sets up an empty @list (its keys capped at EFS_S3_DELETE_MAX of
 * EFS_XML_MAX_TEXT bytes). */
void efs_s3_delete_list_init(struct efs_s3_delete_list *list);
void efs_s3_delete_list_release(struct efs_s3_delete_list *list);
/* Parses @len bytes of @body (a <Delete> of 1..EFS_S3_DELETE_MAX <Object>
 * each with one non-empty <Key> without NUL, an optional <Quiet> of
 * true/false) into @out (initialised). 0; -EBADMSG (MalformedXML: not
 * that, or empty), -E2BIG (a text over the XML reader's cap) or -ENOMEM.
 * On failure @out holds what was read so far: release it all the same. */
int efs_s3_delete_parse(const char *body, size_t len, struct efs_s3_delete_list *out);

/* Shared with multipart uploads (s3_multipart.c): */
/* The request's stored headers (Content-Type, Content-Encoding without
 * aws-chunked, Content-Disposition, Cache-Control, Expires, x-amz-meta-*)
 * into @o, as PutObject takes them. Replies and returns -EINVAL when one is
 * unusable; -ENOMEM. */
int efs_s3_object_headers(struct efs_s3_req *s, struct efs_object_info *o);
/* The name of an object's file: @key's last segment, made a valid EchoFS
 * name (control characters as '_', cut to @size - 1 bytes). */
void efs_s3_file_name(const char *key, char *out, size_t size);
/* Opens the hidden session an S3 upload's chunks are held by until it is
 * recorded (a PutObject's, a part's), expiring UPLOAD_IDLE_MS from now
 * unless completed or given another expiry; its id into @session_id.
 * -errno of the store. */
int efs_s3_session_open(struct efs_master *m, const char *owner, const char *name,
			uint64_t expected, char session_id[EFS_ID_MAX + 1]);
/* One piece of an upload's body (a PutObject's, a part's): counted into
 * @received, refused past @expected (400 IncompleteBody, -EINVAL),
 * hashed into @checksum, fed to @pipeline, which hashes its MD5
 * (efs_upload_pipeline_hash_md5; no room on the workers: 503 SlowDown,
 * -ENOSPC). Replies on those two failures. */
struct efs_upload_pipeline;
struct efs_s3_checksum;
int efs_s3_body_feed(struct efs_s3_req *s, struct efs_upload_pipeline *pipeline,
		     struct efs_s3_checksum *checksum, uint64_t *received, uint64_t expected,
		     const char *data, size_t len);
/* Content-MD5 (base64 of 16 bytes) into @out: 0, or -EINVAL. */
int efs_s3_content_md5(const char *text, unsigned char out[16]);

#endif
