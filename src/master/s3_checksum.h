/* SPDX-License-Identifier: MIT */
/* s3_checksum.h - the x-amz-checksum-* of an S3 PutObject or UploadPart:
 * the checksum newer SDKs send (botocore >= 1.36 by default: CRC32), as a
 * request header over a plain body or as the trailer of an aws-chunked
 * one, verified over the decoded body.
 *
 * Use: efs_s3_checksum_begin when the operation starts (it reads the
 * request's header, or the trailer its principal declares), update with
 * every decoded body byte, efs_s3_checksum_check once the body is whole
 * (the trailer has been read by then: s3_routes.c finishes the aws-chunked
 * decoder before the operation's end step), and efs_s3_checksum_reply to
 * echo it on the success reply, as S3 does. efs_s3_checksum_stored gives
 * the text an object or part keeps ("CRC32:4waSgw=="), _composite a
 * multipart object's from its parts' ("CRC32:...-N"), and
 * efs_s3_checksum_reply_stored returns a kept one on a GET or HEAD with
 * x-amz-checksum-mode: ENABLED (docs/S3.md#checksums).
 */
#ifndef ECHOFS_MASTER_S3_CHECKSUM_H
#define ECHOFS_MASTER_S3_CHECKSUM_H

#include "echofs/hash.h"
#include "echofs/meta.h"
#include "master/s3_auth.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct efs_s3_req;

enum efs_s3_checksum_alg {
	EFS_S3_CHECKSUM_NONE,
	EFS_S3_CHECKSUM_CRC32,
	EFS_S3_CHECKSUM_CRC32C,
	EFS_S3_CHECKSUM_SHA1,
	EFS_S3_CHECKSUM_SHA256,
	EFS_S3_CHECKSUM_CRC64NVME,
};

/* The longest base64 checksum value accepted (SHA-256's is 44). */
#define EFS_S3_CHECKSUM_VALUE_MAX EFS_S3_TRAILER_VALUE_MAX

/* The algorithm of header @name ("x-amz-checksum-crc32" ..., any case),
 * or EFS_S3_CHECKSUM_NONE when it is not one of the five. */
enum efs_s3_checksum_alg efs_s3_checksum_alg_of(const char *name);

struct efs_s3_checksum {
	enum efs_s3_checksum_alg alg; /* NONE: the request has no checksum */
	bool from_trailer;	      /* the value comes with the aws-chunked trailer */
	uint32_t crc;
	uint64_t crc64; /* CRC64NVME */
	struct efs_sha1 sha1;
	struct efs_sha256 sha256;
	char value[EFS_S3_CHECKSUM_VALUE_MAX + 1]; /* base64 as the client sent it */
};

/* Reads @s's checksum into @ck (zeroed first): an x-amz-checksum-* header
 * or the trailer the principal declares (x-amz-trailer). 0 (ck->alg NONE
 * when there is none); 1 when refused, @s replied (400 InvalidRequest:
 * two checksums, a value that is not the base64 of its digest); -ENOMEM. Release with
 * efs_s3_checksum_release whatever it returned. */
int efs_s3_checksum_begin(struct efs_s3_req *s, struct efs_s3_checksum *ck);
void efs_s3_checksum_update(struct efs_s3_checksum *ck, const void *data, size_t len);
/* Compares the digest of what was fed with the value (the trailer's, read
 * from s->chunked, when it came that way). 0 when it holds or there is
 * none; 1 when refused, @s replied (400 BadDigest, or InvalidRequest for a
 * trailer value that is not base64 of the right length); -ENOMEM. */
int efs_s3_checksum_check(struct efs_s3_req *s, struct efs_s3_checksum *ck);
/* Adds the x-amz-checksum-<alg> header to @s's reply (nothing for NONE). */
void efs_s3_checksum_reply(struct efs_s3_req *s, const struct efs_s3_checksum *ck);
/* The text to store for @ck once checked ("<ALG>:<base64>", as
 * efs_object_info.checksum), "" for none, into @out (@size bytes, at
 * least EFS_S3_CHECKSUM_MAX + 1). */
void efs_s3_checksum_stored(const struct efs_s3_checksum *ck, char *out, size_t size);
/* A multipart object's composite checksum from its @count parts (in
 * order), as S3 makes it: the algorithm's digest of the parts' digests
 * joined, base64, then "-<count>" ("CRC32:Ck6Rsg==-3"); "" when a part
 * has none, the parts' algorithms differ, or they are CRC64NVME (which S3
 * combines into a full-object CRC instead: not done here). Into @out as above. 0 or
 * -ENOMEM. */
int efs_s3_checksum_composite(const struct efs_s3_part *parts, size_t count, char *out,
			      size_t size);
/* The XML element of @stored ("ChecksumCRC32", as S3's <Part> of
 * ListParts names it) into @element and where its value starts into
 * *value; false for "" (no element then). */
bool efs_s3_checksum_element(const char *stored, char element[32], const char **value);
/* Adds @stored's x-amz-checksum-<alg> and x-amz-checksum-type (FULL_OBJECT,
 * or COMPOSITE for a "-N" value) to @s's reply; nothing for "". */
void efs_s3_checksum_reply_stored(struct efs_s3_req *s, const char *stored);
/* Frees what @ck holds. A zeroed @ck accepted. */
void efs_s3_checksum_release(struct efs_s3_checksum *ck);

#endif
