/* SPDX-License-Identifier: MIT */
/* s3_policy.c - the storage policy of an S3 write, the storage class of a
 * read (contract and mapping in s3_policy.h, docs/S3.md "Storage classes
 * and policies"). */
#include "master/s3_policy.h"
#include "master/api.h"
#include "master/chunk_backend.h"
#include "master/master.h"
#include "master/s3_routes.h"

#include <errno.h>
#include <string.h>

enum class_kind { CLASS_DEFAULT, CLASS_IA, CLASS_ARCHIVE };

static const struct {
	const char *name;
	enum class_kind kind;
} classes[] = {
    {"STANDARD", CLASS_DEFAULT},     {"REDUCED_REDUNDANCY", CLASS_DEFAULT},
    {"INTELLIGENT_TIERING", CLASS_DEFAULT}, {"STANDARD_IA", CLASS_IA},
    {"ONEZONE_IA", CLASS_IA},	     {"GLACIER_IR", CLASS_IA},
    {"GLACIER", CLASS_ARCHIVE},	     {"DEEP_ARCHIVE", CLASS_ARCHIVE},
    {"OUTPOSTS", CLASS_ARCHIVE},     {"SNOW", CLASS_ARCHIVE},
    {"EXPRESS_ONEZONE", CLASS_ARCHIVE},
};

int efs_s3_policy(struct efs_s3_req *s, struct efs_policy *out, bool *asked)
{
	struct efs_master *m = s->m;
	const char *class_name = efs_http_header(s->http, "x-amz-storage-class");
	const char *policy = efs_http_header(s->http, "x-echofs-policy");
	const char *want = NULL;
	char ia_policy[EFS_POLICY_MAX_LEN + 1];
	char why[160];
	int r;

	if (class_name) {
		size_t i = 0, n = sizeof(classes) / sizeof(classes[0]);
		while (i < n && strcmp(classes[i].name, class_name) != 0)
			i++;
		if (i == n)
			return efs_s3_error(s, 400, "InvalidStorageClass",
					    "The storage class you specified is not valid"),
			       -EINVAL;
		if (classes[i].kind == CLASS_ARCHIVE)
			return efs_s3_error(s, 501, "NotImplemented",
					    "A header you provided implies functionality that is "
					    "not implemented: x-amz-storage-class %s",
					    classes[i].name),
			       -EINVAL;
		/* The IA classes erasure-code where this master can, and store as
		 * STANDARD where it cannot (docs/S3.md). */
		if (classes[i].kind == CLASS_IA && efs_chunk_backend_erasure_coding(m->chunks) &&
		    !m->cfg.dynamodb.files_table) {
			efs_ec_policy_format(&m->cfg.ec_policy, ia_policy, sizeof(ia_policy));
			want = ia_policy;
		}
	}
	if (policy) {
		if (strlen(policy) > EFS_S3_POLICY_HEADER_MAX)
			return efs_s3_error(s, 400, "InvalidArgument",
					    "x-echofs-policy must be replicas:N or ec:K+M"),
			       -EINVAL;
		want = policy;
	}
	*asked = class_name || policy;
	if (!*asked) {
		/* As before policies: no capacity check up front. */
		*out = m->cfg.default_policy;
		return 0;
	}
	r = efs_api_policy_check(m, want, out, why, sizeof(why));
	if (r == -EINVAL)
		return efs_s3_error(s, 400, "InvalidArgument", "x-echofs-policy: %s", why), r;
	if (r == -ENOSPC)
		return efs_s3_error(s, 503, "SlowDown", "%s", why), -EINVAL;
	return r;
}

int efs_s3_upload_policy(const struct efs_master *m, const struct efs_s3_upload *u,
			 struct efs_policy *out)
{
	if (!u->policy[0]) {
		*out = m->cfg.default_policy;
		return 0;
	}
	return efs_ec_policy_parse(u->policy, out) < 0 ? -EIO : 0;
}

void efs_s3_policy_file(const struct efs_master *m, const struct efs_policy *policy,
			struct efs_file_info *f)
{
	f->replication = policy->kind == EFS_POLICY_EC
				 ? policy->data_shards + policy->parity_shards
				 : m->cfg.replication_factor;
	efs_ec_policy_format(policy, f->policy, sizeof(f->policy));
}

const char *efs_s3_storage_class(const char *policy)
{
	return strncmp(policy, "ec:", 3) == 0 ? "STANDARD_IA" : "STANDARD";
}
