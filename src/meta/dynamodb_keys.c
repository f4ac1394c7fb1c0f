/* SPDX-License-Identifier: MIT */
/* dynamodb_keys.c - the S3 API's access keys on DynamoDB (not yet: every
 * operation answers -EIO). */
#include "meta/dynamodb.h"

int dyn_key_create(void *impl, const struct efs_access_key *k, unsigned max_per_owner)
{
	(void)impl, (void)k, (void)max_per_owner;
	return -EIO;
}

int dyn_key_get(void *impl, const char *access_key_id, struct efs_access_key *out)
{
	(void)impl, (void)access_key_id, (void)out;
	return -EIO;
}

int dyn_key_list(void *impl, const char *owner, struct efs_access_key **out, size_t *count)
{
	(void)impl, (void)owner, (void)out, (void)count;
	return -EIO;
}

int dyn_key_delete(void *impl, const char *access_key_id, const char *owner)
{
	(void)impl, (void)access_key_id, (void)owner;
	return -EIO;
}
