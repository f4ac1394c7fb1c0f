/* SPDX-License-Identifier: MIT */
/* auth.c - JWT verification and issue (libjwt), cluster secret checks. */
#include "echofs/auth.h"
#include "echofs/hash.h"
#include "echofs/http_error.h"
#include "echofs/util.h"

#include <jwt.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Tokens that passed the full check, so that a client sending the same
 * token again and again (every request) costs a lookup rather than
 * base64, JSON and HMAC work (10% of the master's CPU on 4 KiB downloads).
 * Direct-mapped by a hash of the token; an entry holds the exact token and
 * secret, the subject and exp, and is used only for that token under that
 * secret and only until exp. Only successes are kept: a bad token always
 * takes the full check. */
#define TOKEN_CACHE_SLOTS 256
#define TOKEN_CACHE_MAX_TOKEN 1024
#define TOKEN_CACHE_MAX_SECRET 256

struct token_entry {
	size_t token_len; /* 0: empty slot */
	char token[TOKEN_CACHE_MAX_TOKEN];
	char secret[TOKEN_CACHE_MAX_SECRET + 1];
	int64_t exp_s;
	char user[EFS_ID_MAX + 1];
	bool admin;
};

struct efs_token_cache {
	pthread_mutex_t lock;
	struct token_entry slots[TOKEN_CACHE_SLOTS];
};

int efs_token_cache_new(struct efs_token_cache **out)
{
	struct efs_token_cache *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	*out = c;
	return 0;
}

void efs_token_cache_free(struct efs_token_cache *c)
{
	if (!c)
		return;
	pthread_mutex_destroy(&c->lock);
	OPENSSL_cleanse(c->slots, sizeof(c->slots)); /* tokens are credentials */
	free(c);
}

static struct token_entry *token_slot(struct efs_token_cache *c, const char *token, size_t len)
{
	return &c->slots[efs_fnv1a(EFS_FNV1A_INIT, token, len) % TOKEN_CACHE_SLOTS];
}

static bool cacheable(const char *secret, size_t token_len)
{
	return token_len <= TOKEN_CACHE_MAX_TOKEN && strlen(secret) <= TOKEN_CACHE_MAX_SECRET;
}

/* True (and the subject in @user, the admin claim in *@admin) when @token
 * under @secret was verified before and has not expired at @now_s. */
static bool token_cached(struct efs_token_cache *c, const char *secret, const char *token,
			 size_t len, int64_t now_s, char *user, bool *admin)
{
	bool hit = false;
	if (!c || !cacheable(secret, len))
		return false;
	struct token_entry *e = token_slot(c, token, len);
	pthread_mutex_lock(&c->lock);
	/* Constant time over the token: its bytes are a credential. */
	if (e->token_len == len && CRYPTO_memcmp(e->token, token, len) == 0 &&
	    strcmp(e->secret, secret) == 0 && e->exp_s > now_s) {
		efs_strlcpy(user, e->user, EFS_ID_MAX + 1);
		*admin = e->admin;
		hit = true;
	}
	pthread_mutex_unlock(&c->lock);
	return hit;
}

static void token_remember(struct efs_token_cache *c, const char *secret, const char *token,
			   size_t len, int64_t exp_s, const char *user, bool admin)
{
	if (!c || !cacheable(secret, len))
		return;
	struct token_entry *e = token_slot(c, token, len);
	pthread_mutex_lock(&c->lock);
	e->token_len = len;
	memcpy(e->token, token, len);
	efs_strlcpy(e->secret, secret, sizeof(e->secret));
	e->exp_s = exp_s;
	efs_strlcpy(e->user, user, sizeof(e->user));
	e->admin = admin;
	pthread_mutex_unlock(&c->lock);
}

bool efs_token_cache_holds(struct efs_token_cache *c, const char *secret, const char *token,
			   int64_t now_s)
{
	char user[EFS_ID_MAX + 1];
	bool admin;
	return token && token_cached(c, secret, token, strlen(token), now_s, user, &admin);
}

bool efs_user_valid(const char *user)
{
	size_t n = 0;
	if (!user)
		return false;
	for (; user[n]; n++) {
		char c = user[n];
		if (n >= EFS_ID_MAX)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '@' || c == '+' || c == '-'))
			return false;
	}
	return n > 0;
}

int efs_jwt_verify(struct efs_token_cache *cache, const char *secret, const char *token,
		   int64_t now_s, char *user, const char **reason)
{
	bool admin;
	return efs_jwt_verify_role(cache, secret, token, now_s, user, &admin, reason);
}

int efs_jwt_verify_role(struct efs_token_cache *cache, const char *secret, const char *token,
			int64_t now_s, char *user, bool *admin, const char **reason)
{
	jwt_t *jwt = NULL;
	int r = -EACCES;

	if (!token || !*token) {
		*reason = "empty token";
		return -EACCES;
	}
	size_t token_len = strlen(token);
	if (token_len > EFS_JWT_MAX) {
		*reason = "token too long";
		return -EACCES;
	}
	if (token_cached(cache, secret, token, token_len, now_s, user, admin))
		return 0;
	/* libjwt skips the signature check for "alg": "none", so the
	 * algorithm is checked explicitly after decoding. */
	if (jwt_decode(&jwt, token, (const unsigned char *)secret, (int)strlen(secret)) != 0 ||
	    !jwt) {
		*reason = "malformed token or bad signature";
		goto out;
	}
	if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
		*reason = "token not signed with HS256";
		goto out;
	}
	errno = 0;
	long exp = jwt_get_grant_int(jwt, "exp");
	if (errno != 0) {
		*reason = "token has no numeric exp claim";
		goto out;
	}
	if ((int64_t)exp <= now_s) {
		*reason = "token expired";
		goto out;
	}
	const char *sub = jwt_get_grant(jwt, "sub");
	if (!sub || !*sub) {
		*reason = "token has no sub claim";
		goto out;
	}
	if (!efs_user_valid(sub)) {
		*reason = "token sub is not a valid user id";
		goto out;
	}
	/* Only the JSON value true makes an operator: "true", 1 or a
	 * missing claim do not (libjwt sets errno for a non-boolean). */
	errno = 0;
	bool is_admin = jwt_get_grant_bool(jwt, EFS_JWT_ADMIN_CLAIM) == 1 && errno == 0;
	efs_strlcpy(user, sub, EFS_ID_MAX + 1);
	*admin = is_admin;
	token_remember(cache, secret, token, token_len, (int64_t)exp, user, is_admin);
	r = 0;
out:
	jwt_free(jwt);
	return r;
}

int efs_jwt_issue(const char *secret, const char *user, int64_t ttl_s, int64_t now_s,
		  char **out)
{
	return efs_jwt_issue_role(secret, user, false, ttl_s, now_s, out);
}

int efs_jwt_issue_role(const char *secret, const char *user, bool admin, int64_t ttl_s,
		       int64_t now_s, char **out)
{
	jwt_t *jwt = NULL;
	int r = -ENOMEM;

	if (!efs_user_valid(user) || ttl_s <= 0)
		return -EINVAL;
	if (jwt_new(&jwt) != 0)
		return -ENOMEM;
	if (jwt_add_grant(jwt, "sub", user) != 0 ||
	    jwt_add_grant_int(jwt, "iat", (long)now_s) != 0 ||
	    jwt_add_grant_int(jwt, "exp", (long)(now_s + ttl_s)) != 0 ||
	    (admin && jwt_add_grant_bool(jwt, EFS_JWT_ADMIN_CLAIM, 1) != 0) ||
	    jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret)) !=
		0)
		goto out;
	char *token = jwt_encode_str(jwt);
	if (!token)
		goto out;
	*out = token;
	r = 0;
out:
	jwt_free(jwt);
	return r;
}

const char *efs_auth_bearer(const char *header)
{
	if (!header || strncasecmp(header, "Bearer ", 7) != 0)
		return NULL;
	header += 7;
	while (*header == ' ')
		header++;
	return *header ? header : NULL;
}

static int refuse(struct efs_http_req *req, enum efs_http_err err, const char *message)
{
	efs_http_add_header(req, "WWW-Authenticate", "Bearer");
	return efs_http_reply_err(req, err, "%s", message);
}

/* Who the bearer @token is, without replying: the cluster (when @mode
 * allows it), a user (and whether an operator), or -EACCES with *@reason /
 * *@err. Fills req->user, req->is_cluster and req->is_admin on success
 * only. */
static int identify(struct efs_http_req *req, const struct efs_auth_keys *keys,
		    enum efs_auth_mode mode, const char *token, enum efs_http_err *err,
		    const char **reason)
{
	char user[EFS_ID_MAX + 1];
	bool admin = false;

	if (mode == EFS_AUTH_CLUSTER || mode == EFS_AUTH_ANY) {
		if (keys->cluster_secret && efs_secret_equal(token, keys->cluster_secret)) {
			req->is_cluster = true;
			req->is_admin = false;
			req->user[0] = '\0';
			return 0;
		}
		if (mode == EFS_AUTH_CLUSTER) {
			*err = EFS_HTTP_E_UNAUTHORIZED;
			*reason = "this endpoint needs the cluster secret";
			return -EACCES;
		}
	}
	*err = EFS_HTTP_E_INVALID_TOKEN;
	if (!keys->jwt_secret) {
		*reason = "user tokens are not accepted here";
		return -EACCES;
	}
	if (efs_jwt_verify_role(keys->tokens, keys->jwt_secret, token, (int64_t)time(NULL), user,
				&admin, reason) < 0)
		return -EACCES;
	efs_strlcpy(req->user, user, sizeof(req->user));
	req->is_cluster = false;
	req->is_admin = admin;
	return 0;
}

int efs_auth_check(struct efs_http_req *req, enum efs_auth_mode mode, void *ctx)
{
	const struct efs_auth_keys *keys = ctx;
	const char *token = efs_auth_bearer(efs_http_header(req, "Authorization"));
	const char *reason = NULL;
	enum efs_http_err err;

	if (!token)
		return refuse(req, EFS_HTTP_E_UNAUTHORIZED,
			      "missing credentials: send Authorization: Bearer <token>");
	if (identify(req, keys, mode, token, &err, &reason) < 0)
		return refuse(req, err, reason);
	return 0;
}

int efs_auth_identify(struct efs_http_req *req, const struct efs_auth_keys *keys)
{
	const char *token = efs_auth_bearer(efs_http_header(req, "Authorization"));
	const char *reason = NULL;
	enum efs_http_err err;

	if (!token)
		return -ENOENT;
	return identify(req, keys, EFS_AUTH_ANY, token, &err, &reason);
}

bool efs_auth_is_operator(const struct efs_http_req *req)
{
	return req->is_cluster || req->is_admin;
}
