/* SPDX-License-Identifier: MIT */
/* s3_bucket.h - S3 bucket operations and listings: ListBuckets,
 * CreateBucket, DeleteBucket, HeadBucket, GetBucketLocation,
 * ListObjects (v1) and ListObjectsV2. Each runs once the request's body
 * (if any) is in: the on_end step of s3_routes.h, which has authenticated
 * the caller. A user sees and touches only their own buckets. */
#ifndef ECHOFS_MASTER_S3_BUCKET_H
#define ECHOFS_MASTER_S3_BUCKET_H

#include "master/s3_routes.h"

/* Bucket names: S3's rules (3-63 bytes of [a-z0-9.-], starting and
 * ending with a letter or digit, no "..", not an IPv4 address, not
 * "xn--"... nor "...-s3alias"). */
bool efs_s3_bucket_name_valid(const char *name);

/* A ListObjectsV2 continuation token is the hex of where the next page
 * starts (exclusive). Decodes @token into @out (@size bytes): 0, or
 * -EINVAL (odd length, not hex, an encoded NUL, not UTF-8, too long for
 * @out). Pure: fuzzed by tests/fuzz/fuzz_s3_target.c. */
int efs_s3_token_decode(const char *token, char *out, size_t size);

int efs_s3_list_buckets(struct efs_s3_req *s);
int efs_s3_create_bucket(struct efs_s3_req *s);
int efs_s3_delete_bucket(struct efs_s3_req *s);
int efs_s3_head_bucket(struct efs_s3_req *s);
int efs_s3_bucket_location(struct efs_s3_req *s);
/* GetBucketVersioning: GET /bucket?versioning. Versioning is not
 * supported, so always the empty <VersioningConfiguration/> S3 answers
 * for a bucket where it was never enabled (PutBucketVersioning is 501). */
int efs_s3_bucket_versioning(struct efs_s3_req *s);
/* GET /bucket: ListObjectsV2 with list-type=2, else ListObjects (v1). */
int efs_s3_list_objects(struct efs_s3_req *s);

/* Shared with multipart uploads (s3_multipart.c): */
struct efs_s3_xml;
/* @text, or with @url its URL encoding (encoding-type=url: every byte but
 * unreserved ones and '/' as %XX) into @buf (@size bytes, cut to fit). */
const char *efs_s3_url_encoded(bool url, const char *text, char *buf, size_t size);
/* <@name><ID>owner</ID><DisplayName>owner</DisplayName></@name>. */
void efs_s3_owner_xml(struct efs_s3_xml *x, const char *name, const char *owner);

#endif
