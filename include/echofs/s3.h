/* SPDX-License-Identifier: MIT */
/* s3.h - an S3 object client over aws.h: put, get (whole or a byte range),
 * head, delete and list (ListObjectsV2) the objects of one bucket, and head
 * or create the bucket. What the S3 chunk backend stores chunks with.
 *
 * Every call is one signed request (retried by aws.h when it may be: all of
 * these are idempotent), every answer is size-capped, every key and
 * metadata value has a cap. Each call returns 0 or a negative errno
 * (aws.h's mapping: -ENOENT no such key or bucket, -EACCES refused,
 * -EAGAIN still throttled or failing after the retries, -E2BIG an answer
 * over its cap, a transport error...) and, when @err is not NULL, fills it
 * with AWS's error code and message, the HTTP status and the attempts made,
 * for the caller's JSON error envelope and its log line. Out-parameters are
 * untouched on failure. Thread-safe (the client holds no per-call state).
 */
#ifndef ECHOFS_S3_H
#define ECHOFS_S3_H

#include "echofs/aws.h"
#include "echofs/buf.h"
#include "echofs/common.h"

#include <stdbool.h>
#include <stdint.h>

#define EFS_S3_MAX_KEY 1024	     /* bytes of a key (S3's own limit) */
#define EFS_S3_MAX_BUCKET 63
#define EFS_S3_MAX_META 8	     /* user metadata entries of an object */
#define EFS_S3_MAX_META_NAME 64
#define EFS_S3_MAX_META_VALUE 256
#define EFS_S3_MAX_LIST_KEYS 1000    /* max-keys of one list call */
#define EFS_S3_MAX_LIST_RESPONSE (4 * 1024 * 1024)
#define EFS_S3_MAX_TOKEN 1024	     /* a continuation token */
#define EFS_S3_ETAG_SIZE 80
#define EFS_S3_DATE_SIZE 40

/* One x-amz-meta-<name> entry: name lower-case [a-z0-9-_], value printable
 * ASCII (S3 keeps metadata as HTTP header text). */
struct efs_s3_meta {
	char name[EFS_S3_MAX_META_NAME + 1];
	char value[EFS_S3_MAX_META_VALUE + 1];
};

struct efs_s3_object_info {
	uint64_t size;			   /* the whole object's bytes */
	char etag[EFS_S3_ETAG_SIZE];	   /* as sent, quotes included */
	char last_modified[EFS_S3_DATE_SIZE]; /* HTTP date (HEAD, GET) or ISO 8601 (list) */
	/* The answer's Date header (HEAD, GET; "" when absent): "now" on the
	 * server's clock, so now - last_modified is an age measured on one
	 * clock (the S3 chunk store's conditional delete). */
	char date[EFS_S3_DATE_SIZE];
	size_t meta_count;
	struct efs_s3_meta meta[EFS_S3_MAX_META];
};

/* What AWS answered when a call failed. */
struct efs_s3_error {
	long status; /* 0 when no answer arrived */
	int attempts;
	char code[64];	   /* "NoSuchKey", "SignatureDoesNotMatch", ... or "" */
	char message[256]; /* AWS's message, or the transport's */
};

struct efs_s3;

/* A client of @bucket over @aws (not owned; must outlive it). 0, -EINVAL
 * (a bucket name that is not 3..63 of [a-z0-9.-]) or -ENOMEM. */
int efs_s3_new(struct efs_aws_client *aws, const char *bucket, struct efs_s3 **out);
void efs_s3_free(struct efs_s3 *s3);

/* Stores @len bytes at @data as @key, signed with their SHA-256
 * (x-amz-content-sha256), with @meta_count entries of user metadata and
 * @content_type (NULL: none). @etag (may be NULL) gets the new ETag.
 * -EINVAL for a key that is empty, over EFS_S3_MAX_KEY or not UTF-8, or
 * malformed metadata. */
int efs_s3_put(struct efs_s3 *s3, const char *key, const void *data, size_t len,
	       const char *content_type, const struct efs_s3_meta *meta, size_t meta_count,
	       char etag[EFS_S3_ETAG_SIZE], struct efs_s3_error *err);

/* Reads @key into @out (released and replaced on success, with @cap as its
 * cap; untouched on failure): the whole object when @length is 0, else the
 * @length bytes from @offset (fewer at the object's end). At most @cap
 * bytes are accepted: a larger answer fails with -E2BIG. @info (may
 * be NULL) gets the object's size, ETag, Last-Modified and metadata.
 * -ERANGE for an offset at or past the end. */
int efs_s3_get(struct efs_s3 *s3, const char *key, uint64_t offset, uint64_t length, size_t cap,
	       struct efs_buf *out, struct efs_s3_object_info *info, struct efs_s3_error *err);

/* The size, ETag, Last-Modified and metadata of @key. -ENOENT (code
 * "NotFound": a HEAD answer has no body) when absent. */
int efs_s3_head(struct efs_s3 *s3, const char *key, struct efs_s3_object_info *info,
		struct efs_s3_error *err);

/* An HTTP date ("Sun, 06 Nov 1994 08:49:37 GMT", what Last-Modified and
 * Date carry) as Unix milliseconds into *@out_ms. 0 or -EINVAL. */
int efs_s3_parse_http_date(const char *text, int64_t *out_ms);

/* Deletes @key; 0 also when it did not exist (S3's rule). */
int efs_s3_delete(struct efs_s3 *s3, const char *key, struct efs_s3_error *err);

struct efs_s3_list_entry {
	char key[EFS_S3_MAX_KEY + 1];
	uint64_t size;
	char etag[EFS_S3_ETAG_SIZE];
	char last_modified[EFS_S3_DATE_SIZE];
};

struct efs_s3_list {
	struct efs_s3_list_entry *entries; /* heap, @count of them */
	size_t count;
	bool truncated; /* more after these: call again with next_token */
	char next_token[EFS_S3_MAX_TOKEN + 1];
};

/* One page of ListObjectsV2: the keys starting with @prefix (NULL or "":
 * all), after @continuation_token (NULL or "": from the start), at most
 * @max_keys (1..EFS_S3_MAX_LIST_KEYS). @out is replaced; free it with
 * efs_s3_list_release. -EBADMSG for an answer that is not a listing (more
 * entries than asked for, a key over its cap, truncated without a token). */
int efs_s3_list(struct efs_s3 *s3, const char *prefix, const char *continuation_token,
		unsigned max_keys, struct efs_s3_list *out, struct efs_s3_error *err);
void efs_s3_list_release(struct efs_s3_list *list);
/* Parses a ListObjectsV2 answer of @len bytes (what efs_s3_list does with
 * the body; for tests and fuzzing): at most @max_keys entries. 0, -EINVAL
 * (@max_keys out of 1..EFS_S3_MAX_LIST_KEYS), -EBADMSG (not a
 * ListBucketResult, more entries than @max_keys, an entry without a key or
 * a key over EFS_S3_MAX_KEY, a bad size, truncated without a token) or
 * -ENOMEM; @out is replaced on success only. */
int efs_s3_list_parse(const char *body, size_t len, unsigned max_keys, struct efs_s3_list *out);

/* 0 when the bucket exists and the credentials may use it; -ENOENT,
 * -EACCES... otherwise (for health checks). */
int efs_s3_bucket_head(struct efs_s3 *s3, struct efs_s3_error *err);
/* Creates the bucket in the configured region. -EEXIST (code
 * BucketAlreadyOwnedByYou or BucketAlreadyExists) when it exists. */
int efs_s3_bucket_create(struct efs_s3 *s3, struct efs_s3_error *err);

#endif
