/* SPDX-License-Identifier: MIT */
/* dynamodb_keys.c - the S3 API's access keys on DynamoDB, as extra items
 * of the files table (docs/AWS.md "Access keys"):
 *
 *   ACCESSKEY#<id> / META              owner, sealed_secret, created_at
 *   KEYS#<owner>   / KEY#<created>#<id> the same attributes (the listing)
 *   KEYS#<owner>   / COUNT             key_count (the per-owner cap)
 *
 * A create is one transaction of the three (the count's condition keeps
 * the cap exact, the key's attribute_not_exists(pk) the id unique); a
 * delete removes both key items and decrements the count, conditioned on
 * the owner. The listing is one consistent Query of the owner's partition:
 * no index, no Scan.
 */
#include "meta/dynamodb.h"

#include "echofs/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_PK "ACCESSKEY#"
#define OWNER_PK "KEYS#"
#define LIST_SK "KEY#"
#define COUNT_SK "COUNT"

static void key_pk(const char *id, char out[EFS_ACCESS_KEY_ID_LEN + 16])
{
	snprintf(out, EFS_ACCESS_KEY_ID_LEN + 16, KEY_PK "%s", id);
}

static void owner_pk(const char *owner, char out[EFS_ID_MAX + 16])
{
	snprintf(out, EFS_ID_MAX + 16, OWNER_PK "%s", owner);
}

static void list_sk(const struct efs_access_key *k, char out[EFS_ACCESS_KEY_ID_LEN + 32])
{
	snprintf(out, EFS_ACCESS_KEY_ID_LEN + 32, LIST_SK "%016lld#%s", (long long)k->created_at_ms,
		 k->access_key_id);
}

static json_t *key_item(const char *pk, const char *sk, const struct efs_access_key *k)
{
	return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "pk", ddb_s(pk), "sk", ddb_s(sk),
			 "access_key_id", ddb_s(k->access_key_id), "owner", ddb_s(k->owner),
			 "sealed_secret", ddb_s(k->sealed_secret), "created_at",
			 ddb_n(k->created_at_ms));
}

static int key_from_item(const json_t *item, struct efs_access_key *k)
{
	memset(k, 0, sizeof(*k));
	if (ddb_get_s(item, "access_key_id", k->access_key_id, EFS_ACCESS_KEY_ID_LEN) < 0 ||
	    ddb_get_s(item, "owner", k->owner, EFS_ID_MAX) < 0 ||
	    ddb_get_s(item, "sealed_secret", k->sealed_secret, EFS_ACCESS_KEY_SEALED_MAX) < 0 ||
	    ddb_get_n(item, "created_at", &k->created_at_ms) < 0)
		return -EIO;
	return 0;
}

int dyn_key_create(void *impl, const struct efs_access_key *k, unsigned max_per_owner)
{
	struct dyn *d = impl;
	struct ddb_result res;
	char kpk[EFS_ACCESS_KEY_ID_LEN + 16], opk[EFS_ID_MAX + 16];
	char lsk[EFS_ACCESS_KEY_ID_LEN + 32];
	int r = -EAGAIN;

	key_pk(k->access_key_id, kpk);
	owner_pk(k->owner, opk);
	list_sk(k, lsk);
	for (int attempt = 0; attempt < DYN_TX_ATTEMPTS; attempt++) {
		json_t *items = json_array();
		json_array_append_new(items, dyn_tx_put(d->files, key_item(kpk, "META", k),
							"attribute_not_exists(pk)", NULL, NULL));
		json_array_append_new(items, dyn_tx_put(d->files, key_item(opk, lsk, k),
							"attribute_not_exists(pk)", NULL, NULL));
		json_array_append_new(
		    items,
		    dyn_tx_update(d->files, ddb_key(opk, COUNT_SK),
				  "SET key_count = if_not_exists(key_count, :zero) + :one",
				  "attribute_not_exists(key_count) OR key_count < :cap", NULL,
				  json_pack("{s:o, s:o, s:o}", ":zero", ddb_n(0), ":one", ddb_n(1),
					    ":cap", ddb_n(max_per_owner))));
		r = dyn_tx(d, items, 3, &res);
		if (r == 0)
			return 0;
		if (r == -ECANCELED && (res.failed[0] || res.failed[1]))
			return -EEXIST;
		if (r == -ECANCELED && res.failed[2])
			return -EDQUOT;
		if (r == -ECANCELED) { /* a server that names no item: ask */
			json_t *existing = NULL;
			if ((r = dyn_get(d, d->files, kpk, "META", &existing)) == 0) {
				json_decref(existing);
				return -EEXIST;
			}
			return r == -ENOENT ? -EDQUOT : r;
		}
		if (r != -EBUSY)
			return dyn_fail("TransactWriteItems (access key)", r, &res);
		efs_sleep_ms(5 * (attempt + 1));
	}
	return -EAGAIN;
}

int dyn_key_get(void *impl, const char *access_key_id, struct efs_access_key *out)
{
	struct dyn *d = impl;
	struct efs_access_key k;
	char pk[EFS_ACCESS_KEY_ID_LEN + 16];
	json_t *item = NULL;
	if (strlen(access_key_id) > EFS_ACCESS_KEY_ID_LEN)
		return -ENOENT;
	key_pk(access_key_id, pk);
	int r = dyn_get(d, d->files, pk, "META", &item);
	if (r < 0)
		return r;
	r = key_from_item(item, &k);
	json_decref(item);
	if (r == 0)
		*out = k;
	return r;
}

struct key_rows {
	struct efs_access_key *items;
	size_t count, alloc;
};

static int push_key(void *ctx, const json_t *item)
{
	struct key_rows *rows = ctx;
	if (efs_array_reserve((void **)&rows->items, &rows->alloc, rows->count,
			      sizeof(*rows->items), 16) < 0)
		return -ENOMEM;
	if (key_from_item(item, &rows->items[rows->count]) < 0)
		return -EIO;
	rows->count++;
	return 0;
}

/* Sort keys are KEY#<created_at, 16 digits>#<id>: oldest first, as SQL's
 * ORDER BY created_at, access_key_id. */
int dyn_key_list(void *impl, const char *owner, struct efs_access_key **out, size_t *count)
{
	struct dyn *d = impl;
	struct key_rows rows = {0};
	char pk[EFS_ID_MAX + 16];
	owner_pk(owner, pk);
	json_t *body = json_pack("{s:s, s:s, s:b, s:{s:o, s:o}}", "TableName", d->files,
				 "KeyConditionExpression", "pk = :pk AND begins_with(sk, :p)",
				 "ConsistentRead", 1, "ExpressionAttributeValues", ":pk", ddb_s(pk),
				 ":p", ddb_s(LIST_SK));
	int r = body ? ddb_query_all(&d->ddb, "Query", body, 0, push_key, &rows) : -ENOMEM;
	json_decref(body);
	if (r < 0) {
		free(rows.items);
		return r == -ENOMEM || r == -EIO ? r : dyn_fail("Query (access keys)", r, NULL);
	}
	*out = rows.items;
	*count = rows.count;
	return 0;
}

int dyn_key_delete(void *impl, const char *access_key_id, const char *owner)
{
	struct dyn *d = impl;
	struct ddb_result res;
	struct efs_access_key k;
	char kpk[EFS_ACCESS_KEY_ID_LEN + 16], opk[EFS_ID_MAX + 16];
	char lsk[EFS_ACCESS_KEY_ID_LEN + 32];

	int r = dyn_key_get(d, access_key_id, &k);
	if (r < 0)
		return r;
	if (strcmp(k.owner, owner) != 0)
		return -ENOENT;
	key_pk(access_key_id, kpk);
	owner_pk(owner, opk);
	list_sk(&k, lsk);
	/* Of two concurrent deletes one removes the META, the other fails its
	 * condition and changes nothing. */
	json_t *items = json_array();
	json_array_append_new(items, dyn_tx_delete(d->files, ddb_key(kpk, "META"), "#o = :o",
						   json_pack("{s:s}", "#o", "owner"),
						   json_pack("{s:o}", ":o", ddb_s(owner))));
	json_array_append_new(items, dyn_tx_delete(d->files, ddb_key(opk, lsk), NULL, NULL, NULL));
	json_array_append_new(items, dyn_tx_update(d->files, ddb_key(opk, COUNT_SK),
						   "ADD key_count :minus", NULL, NULL,
						   json_pack("{s:o}", ":minus", ddb_n(-1))));
	r = dyn_tx(d, items, 3, &res);
	if (r == -ECANCELED)
		return -ENOENT;
	return r < 0 ? dyn_fail("TransactWriteItems (access key delete)", r, &res) : 0;
}
