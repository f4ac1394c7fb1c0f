/* SPDX-License-Identifier: MIT */
/* s3_policy.h - the storage policy of an S3 write (issue 17), and the
 * storage class an S3 read reports.
 *
 * PutObject, CreateMultipartUpload and CopyObject may ask for a policy
 * with x-amz-storage-class (mapped below) or EchoFS's own x-echofs-policy
 * ("ec:4+2", "replicas:3"), which decides when both are sent:
 *
 *   STANDARD, REDUCED_REDUNDANCY,   the master's STORAGE_POLICY (EchoFS
 *   INTELLIGENT_TIERING             has no less durable policy)
 *   STANDARD_IA, ONEZONE_IA,        EC_POLICY (default ec:4+2), on a master
 *   GLACIER_IR                      that erasure-codes; STORAGE_POLICY on
 *                                   one that cannot (S3 chunks, DynamoDB)
 *   GLACIER, DEEP_ARCHIVE,          501 NotImplemented (archival: a GET
 *   OUTPOSTS, SNOW, EXPRESS_ONEZONE would need a restore first)
 *   anything else                   400 InvalidStorageClass
 *
 * A read reports the class of how the object's file is stored now, not of
 * what was asked: STANDARD_IA for an erasure-coded file, STANDARD (no
 * header on GET/HEAD, as S3) for a replicated one.
 */
#ifndef ECHOFS_MASTER_S3_POLICY_H
#define ECHOFS_MASTER_S3_POLICY_H

#include "echofs/ec.h"
#include "echofs/meta.h"

#include <stdbool.h>

struct efs_master;
struct efs_s3_req;

/* The longest x-echofs-policy taken. */
#define EFS_S3_POLICY_HEADER_MAX 32

/* The policy @s asks for, checked as a REST upload's ?policy= is
 * (efs_api_policy_check: one this cluster stores, placeable now). 0 with
 * *@out set and *@asked telling whether a header asked for one (false:
 * *@out is STORAGE_POLICY, not checked: capacity is found short, if it
 * is, while storing, as before policies); or replies (400 InvalidStorageClass, 400
 * InvalidArgument, 501 NotImplemented, 503 SlowDown when it cannot be
 * placed now) and returns -EINVAL; or a negative errno of the store,
 * nothing replied. */
int efs_s3_policy(struct efs_s3_req *s, struct efs_policy *out, bool *asked);

/* The policy upload @u's parts are stored by: its own, or STORAGE_POLICY
 * when it has none. 0, or -EIO for a stored policy that does not parse. */
int efs_s3_upload_policy(const struct efs_master *m, const struct efs_s3_upload *u,
			 struct efs_policy *out);

/* A new file's replication and policy columns for @policy: K + M and
 * "ec:K+M", or REPLICATION_FACTOR and "replicas:N". */
void efs_s3_policy_file(const struct efs_master *m, const struct efs_policy *policy,
			struct efs_file_info *f);

/* The storage class of a file stored by @policy (a file's policy column:
 * "" is replicated): "STANDARD_IA" for ec:K+M, else "STANDARD". */
const char *efs_s3_storage_class(const char *policy);

#endif
