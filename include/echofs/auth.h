/* SPDX-License-Identifier: MIT */
/* auth.h - user tokens (JWT, HS256, through libjwt) and cluster credentials.
 *
 * User requests carry "Authorization: Bearer <JWT>": HS256 signed with
 * JWT_SECRET, "sub" (the user id) and "exp" required, "exp" honoured.
 * Cluster requests (worker <-> master) carry "Authorization: Bearer
 * <CLUSTER_SECRET>", compared in constant time. Operators are the cluster
 * secret and user tokens with "admin": true. This is the only file that
 * includes jwt.h.
 */
#ifndef ECHOFS_AUTH_H
#define ECHOFS_AUTH_H

#include "echofs/common.h"
#include "echofs/http_server.h"

#include <stdbool.h>
#include <stdint.h>

/* The claim that makes a user token an operator's: "admin": true (the JSON
 * value true only). An operator sees the cluster's topology whatever
 * TOPOLOGY_VISIBLE_TO says (docs/API.md, "Who sees what"). */
#define EFS_JWT_ADMIN_CLAIM "admin"

/* Longest token accepted, in bytes. */
#define EFS_JWT_MAX 4096

/* Tokens that passed verification, remembered (with their secret, subject
 * and exp) so the same token is accepted again, until its exp, without
 * decoding it: 256 direct-mapped slots, thread-safe. Each daemon that
 * checks user tokens owns one (the master: struct efs_master). */
struct efs_token_cache;

/* An empty cache. 0 or -ENOMEM. */
int efs_token_cache_new(struct efs_token_cache **out);
/* Frees the cache (its entries wiped). NULL accepted. */
void efs_token_cache_free(struct efs_token_cache *cache);
/* True when @cache remembers @token as verified under @secret and not
 * expired at @now_s (for tests and diagnostics). */
bool efs_token_cache_holds(struct efs_token_cache *cache, const char *secret, const char *token,
			   int64_t now_s);

/* Verifies @token against @secret at time @now_s (Unix seconds). On
 * success writes the subject into @user (EFS_ID_MAX + 1 bytes) and returns
 * 0; otherwise returns -EACCES and points *reason at a static phrase
 * ("token expired", "bad signature"...). A subject is 1..64 characters of
 * [A-Za-z0-9_.@+-]. With a @cache (NULL: none), a token found there is
 * accepted without decoding and one that passes is added to it;
 * thread-safe. */
int efs_jwt_verify(struct efs_token_cache *cache, const char *secret, const char *token,
		   int64_t now_s, char *user, const char **reason);

/* As efs_jwt_verify, and on success *@admin tells whether the token
 * carries "admin": true (untouched on failure). */
int efs_jwt_verify_role(struct efs_token_cache *cache, const char *secret, const char *token,
			int64_t now_s, char *user, bool *admin, const char **reason);

/* Creates an HS256 token for @user valid for @ttl_s seconds from @now_s.
 * On success *out is a malloc'd string the caller frees. 0, -EINVAL (bad
 * user) or -ENOMEM. */
int efs_jwt_issue(const char *secret, const char *user, int64_t ttl_s, int64_t now_s,
		  char **out);

/* As efs_jwt_issue; with @admin the token also carries "admin": true (an
 * operator's token). */
int efs_jwt_issue_role(const char *secret, const char *user, bool admin, int64_t ttl_s,
		       int64_t now_s, char **out);

/* True when @user is a valid subject. */
bool efs_user_valid(const char *user);

/* Returns the token of an "Authorization: Bearer <token>" header value, or
 * NULL when @header is NULL or another scheme. */
const char *efs_auth_bearer(const char *header);

/* The secrets a daemon checks requests against. */
struct efs_auth_keys {
	const char *jwt_secret;     /* NULL: user tokens are refused */
	const char *cluster_secret; /* NULL: cluster credentials are refused */
	struct efs_token_cache *tokens; /* NULL: every user token is decoded */
};

/* The efs_http_auth_fn both daemons use; @ctx is a struct efs_auth_keys.
 * Replies 401 with a JSON error (and WWW-Authenticate) when the request's
 * credentials do not satisfy @mode. */
int efs_auth_check(struct efs_http_req *req, enum efs_auth_mode mode, void *ctx);

/* For a route that needs no credentials but shows more to an operator:
 * reads the request's bearer token, if any, as EFS_AUTH_ANY would, and
 * never replies. 0 when it is valid (req->user, req->is_cluster,
 * req->is_admin filled), -ENOENT when there is none, -EACCES when it is
 * refused (the request stays anonymous). */
int efs_auth_identify(struct efs_http_req *req, const struct efs_auth_keys *keys);

/* True when the authenticated caller is an operator: the cluster secret,
 * or a user token with "admin": true. */
bool efs_auth_is_operator(const struct efs_http_req *req);

#endif
