/* SPDX-License-Identifier: MIT */
/* api_keys.c - the caller's S3 access keys: POST, GET and DELETE
 * /api/v1/keys (docs/API.md "Access keys").
 *
 * An access key belongs to the user of the JWT that created it (its
 * "sub"); the S3 listener (s3_auth.c) answers requests signed with it as
 * that user. The secret is drawn here, shown once in the 201 of its
 * creation and stored only sealed (AES-256-GCM, keyseal.h, bound to the
 * key id): nothing can show it again, not even to its owner.
 */
#include "master/api.h"
#include "master/s3_auth.h"

#include "echofs/keyseal.h"
#include "echofs/log.h"
#include "echofs/util.h"

#include <jansson.h>
#include <string.h>

#define SECRET_LEN 40
#define ID_ALPHABET "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
#define SECRET_ALPHABET "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
/* A fresh id taken already (about 2^93 ids: never, but cheap to handle). */
#define CREATE_ATTEMPTS 3

/* @len random characters of @alphabet (unbiased: bytes past the largest
 * multiple of its size are drawn again) and a NUL into @out. */
static int random_chars(char *out, size_t len, const char *alphabet)
{
	size_t n = strlen(alphabet), limit = 256 - 256 % n, filled = 0;
	unsigned char bytes[64];
	while (filled < len) {
		int r = efs_random_bytes(bytes, sizeof(bytes));
		if (r < 0)
			return r;
		for (size_t i = 0; i < sizeof(bytes) && filled < len; i++)
			if (bytes[i] < limit)
				out[filled++] = alphabet[bytes[i] % n];
	}
	out[len] = '\0';
	memset(bytes, 0, sizeof(bytes));
	return 0;
}

static json_t *key_json(const struct efs_access_key *k)
{
	char at[EFS_ISO8601_LEN];
	return json_pack("{s:s, s:s}", "access_key_id", k->access_key_id, "created_at",
			 efs_iso8601(k->created_at_ms, at));
}

/* POST /api/v1/keys - a new access key for the caller. */
int efs_api_key_create(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	struct efs_access_key k = {0};
	char secret[SECRET_LEN + 1];
	int r = -EEXIST;

	efs_strlcpy(k.owner, req->user, sizeof(k.owner));
	for (int attempt = 0; attempt < CREATE_ATTEMPTS && r == -EEXIST; attempt++) {
		memcpy(k.access_key_id, "EK", 2);
		if ((r = random_chars(k.access_key_id + 2, EFS_ACCESS_KEY_ID_LEN - 2,
				      ID_ALPHABET)) < 0 ||
		    (r = random_chars(secret, SECRET_LEN, SECRET_ALPHABET)) < 0 ||
		    (r = efs_keyseal_seal(&m->keyseal, k.access_key_id, secret, k.sealed_secret,
					  sizeof(k.sealed_secret))) < 0)
			break;
		k.created_at_ms = efs_now_ms();
		r = efs_meta_key_create(m->meta, &k, m->cfg.max_access_keys_per_user);
	}
	if (r < 0) {
		memset(secret, 0, sizeof(secret));
		if (r == -EDQUOT)
			efs_info("access key refused to %s: %u keys already", req->user,
				 m->cfg.max_access_keys_per_user);
		return efs_http_reply_errno(req, EFS_HTTP_OP_ACCESS_KEY, r, NULL);
	}
	efs_info("access key %s created by %s", k.access_key_id, k.owner);
	json_t *body = key_json(&k);
	if (body)
		json_object_set_new(body, "secret_access_key", json_string(secret));
	memset(secret, 0, sizeof(secret));
	return efs_http_reply_json(req, 201, body);
}

/* GET /api/v1/keys - the caller's keys, oldest first, without secrets. */
int efs_api_key_list(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	struct efs_access_key *keys = NULL;
	size_t count = 0;
	int r = efs_meta_key_list(m->meta, req->user, &keys, &count);
	if (r < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_ACCESS_KEY, r, NULL);
	json_t *list = json_array();
	for (size_t i = 0; list && i < count; i++)
		json_array_append_new(list, key_json(&keys[i]));
	free(keys);
	return efs_http_reply_json(req, 200, json_pack("{s:o}", "keys", list));
}

/* DELETE /api/v1/keys/{accessKeyId} - one of the caller's keys; another
 * user's is 404 like a key that does not exist. S3 requests signed with
 * it stop working at once on this master (its signing-key cache forgets
 * the key) and within EFS_S3_AUTH_CACHE_TTL_S on the others. */
int efs_api_key_delete(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	const char *id = efs_http_param(req, "accessKeyId");
	int r =
	    efs_s3_access_key_id_valid(id) ? efs_meta_key_delete(m->meta, id, req->user) : -ENOENT;
	if (r < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_ACCESS_KEY, r, id);
	efs_s3_auth_forget(m->s3_auth, id);
	efs_info("access key %s deleted by %s", id, req->user);
	return efs_http_reply_empty(req, 204);
}
