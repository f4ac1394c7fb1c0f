/* SPDX-License-Identifier: MIT */
/* test_auth.c - unit tests of auth.h: JWT issue and verification (HS256
 * only, sub and exp required, expiry honoured, "alg": "none" and other
 * algorithms refused), user id rules and Bearer header parsing. Some
 * tokens are built with libjwt directly, or by hand, to reach the cases
 * efs_jwt_issue never produces. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jwt.h>

#include "echofs/auth.h"

#define SECRET "unit-test-jwt-secret"
#define NOW ((int64_t)1795687200) /* 2026-11-26T10:00:00Z */

/* ---- helpers --------------------------------------------------------- */

/* Base64url without padding, as JWT uses it. Returns a malloc'd string. */
static char *b64url(const char *in)
{
	static const char digits[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t len = strlen(in), o = 0;
	char *out = malloc(len * 4 / 3 + 4);
	const unsigned char *p = (const unsigned char *)in;

	assert_non_null(out);
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < len)
			v |= p[i + 2];
		out[o++] = digits[(v >> 18) & 63];
		out[o++] = digits[(v >> 12) & 63];
		if (i + 1 < len)
			out[o++] = digits[(v >> 6) & 63];
		if (i + 2 < len)
			out[o++] = digits[v & 63];
	}
	out[o] = '\0';
	return out;
}

/* Builds "b64(header).b64(payload).signature" by hand. */
static char *token_by_hand(const char *header, const char *payload, const char *signature)
{
	char *h = b64url(header), *p = b64url(payload);
	size_t size = strlen(h) + strlen(p) + strlen(signature) + 3;
	char *tok = malloc(size);

	assert_non_null(tok);
	snprintf(tok, size, "%s.%s.%s", h, p, signature);
	free(h);
	free(p);
	return tok;
}

/* Builds a token with libjwt: @sub and @exp are left out when NULL / 0. */
static char *token_libjwt(jwt_alg_t alg, const char *secret, const char *sub, long exp)
{
	jwt_t *jwt = NULL;
	char *tok;

	assert_int_equal(jwt_new(&jwt), 0);
	if (sub)
		assert_int_equal(jwt_add_grant(jwt, "sub", sub), 0);
	if (exp)
		assert_int_equal(jwt_add_grant_int(jwt, "exp", exp), 0);
	assert_int_equal(jwt_add_grant_int(jwt, "iat", (long)NOW), 0);
	assert_int_equal(jwt_set_alg(jwt, alg, (const unsigned char *)secret, (int)strlen(secret)),
			 0);
	tok = jwt_encode_str(jwt);
	assert_non_null(tok);
	jwt_free(jwt);
	return tok;
}

/* The verified-token cache every check here goes through, as the
 * master's does (created by the group setup). */
static struct efs_token_cache *tokens;

static int tokens_new(void **state)
{
	(void)state;
	return efs_token_cache_new(&tokens);
}

static int tokens_free(void **state)
{
	(void)state;
	efs_token_cache_free(tokens);
	return 0;
}

/* Asserts @token is refused at NOW, leaves @user alone, and gives a reason
 * (containing @why when not NULL). */
static void assert_refused(const char *secret, const char *token, const char *why)
{
	char user[EFS_ID_MAX + 1] = "untouched";
	const char *reason = NULL;

	assert_int_equal(efs_jwt_verify(tokens, secret, token, NOW, user, &reason), -EACCES);
	assert_non_null(reason);
	assert_true(*reason != '\0');
	if (why && !strstr(reason, why))
		print_error("reason \"%s\" does not say \"%s\"\n", reason, why);
	if (why)
		assert_non_null(strstr(reason, why));
	assert_string_equal(user, "untouched");
}

static void assert_accepted(const char *secret, const char *token, int64_t now,
			    const char *want_user)
{
	char user[EFS_ID_MAX + 1] = "";
	const char *reason = NULL;
	int r = efs_jwt_verify(tokens, secret, token, now, user, &reason);

	if (r != 0)
		print_error("token refused: %s\n", reason ? reason : "(no reason)");
	assert_int_equal(r, 0);
	assert_string_equal(user, want_user);
}

/* ---- issue and verify -------------------------------------------------- */

static void test_jwt_round_trip(void **state)
{
	char *tok = NULL;

	assert_int_equal(efs_jwt_issue(SECRET, "alice", 3600, NOW, &tok), 0);
	assert_non_null(tok);
	/* three base64url parts */
	const char *dot1 = strchr(tok, '.');
	assert_non_null(dot1);
	assert_non_null(strchr(dot1 + 1, '.'));
	assert_null(strchr(tok, '='));

	assert_accepted(SECRET, tok, NOW, "alice");
	assert_accepted(SECRET, tok, NOW + 3599, "alice");

	/* libjwt agrees on the algorithm and the claims */
	jwt_t *jwt = NULL;
	assert_int_equal(jwt_decode(&jwt, tok, (const unsigned char *)SECRET,
				    (int)strlen(SECRET)),
			 0);
	assert_int_equal(jwt_get_alg(jwt), JWT_ALG_HS256);
	assert_string_equal(jwt_get_grant(jwt, "sub"), "alice");
	assert_int_equal(jwt_get_grant_int(jwt, "exp"), NOW + 3600);
	jwt_free(jwt);
	free(tok);

	/* the full set of subject characters */
	assert_int_equal(efs_jwt_issue(SECRET, "Bob.Smith+ci_2@example-corp.com", 60, NOW, &tok),
			 0);
	assert_accepted(SECRET, tok, NOW, "Bob.Smith+ci_2@example-corp.com");
	free(tok);
}

static void test_jwt_issue_refuses(void **state)
{
	char *tok = (char *)"untouched";

	assert_int_equal(efs_jwt_issue(SECRET, "", 60, NOW, &tok), -EINVAL);
	assert_int_equal(efs_jwt_issue(SECRET, "a b", 60, NOW, &tok), -EINVAL);
	assert_int_equal(efs_jwt_issue(SECRET, "a/b", 60, NOW, &tok), -EINVAL);
	assert_int_equal(efs_jwt_issue(SECRET, NULL, 60, NOW, &tok), -EINVAL);
	assert_int_equal(efs_jwt_issue(SECRET, "alice", 0, NOW, &tok), -EINVAL);
	assert_int_equal(efs_jwt_issue(SECRET, "alice", -5, NOW, &tok), -EINVAL);
	assert_string_equal(tok, "untouched");
}

static void test_jwt_expired(void **state)
{
	char *tok = NULL;

	/* issued two hours ago for one hour */
	assert_int_equal(efs_jwt_issue(SECRET, "alice", 3600, NOW - 7200, &tok), 0);
	assert_refused(SECRET, tok, "expired");
	free(tok);

	/* exp == now is already expired */
	assert_int_equal(efs_jwt_issue(SECRET, "alice", 3600, NOW - 3600, &tok), 0);
	assert_refused(SECRET, tok, "expired");
	free(tok);

	/* one second left is fine */
	assert_int_equal(efs_jwt_issue(SECRET, "alice", 3600, NOW - 3599, &tok), 0);
	assert_accepted(SECRET, tok, NOW, "alice");
	free(tok);
}

/* A token accepted once is remembered: the second check must still honour
 * exp, the secret, and every byte of the token. */
static void test_jwt_remembered_token_keeps_every_check(void **state)
{
	char user[EFS_ID_MAX + 1];
	const char *reason = NULL;
	char *tok = NULL;

	assert_int_equal(efs_jwt_issue(SECRET, "carol", 100, NOW, &tok), 0);
	assert_accepted(SECRET, tok, NOW, "carol");
	assert_accepted(SECRET, tok, NOW + 99, "carol");
	/* exp reached: refused although remembered */
	snprintf(user, sizeof(user), "untouched");
	assert_int_equal(efs_jwt_verify(tokens, SECRET, tok, NOW + 100, user, &reason), -EACCES);
	assert_non_null(strstr(reason, "expired"));
	assert_string_equal(user, "untouched");
	/* another secret, or one byte changed, is not the remembered token */
	assert_refused("another-secret", tok, NULL);
	size_t n = strlen(tok);
	tok[n - 1] = tok[n - 1] == 'A' ? 'B' : 'A';
	assert_refused(SECRET, tok, NULL);
	tok[n - 1] = '\0';
	assert_refused(SECRET, tok, NULL);
	free(tok);

	/* Many tokens share the slots: each still gets its own subject. */
	char *toks[600];
	char name[32];
	for (int i = 0; i < 600; i++) {
		snprintf(name, sizeof(name), "user%d", i);
		assert_int_equal(efs_jwt_issue(SECRET, name, 3600, NOW, &toks[i]), 0);
		assert_accepted(SECRET, toks[i], NOW, name);
	}
	for (int i = 599; i >= 0; i--) {
		snprintf(name, sizeof(name), "user%d", i);
		assert_accepted(SECRET, toks[i], NOW, name);
		assert_refused("another-secret", toks[i], NULL);
		free(toks[i]);
	}
}

/* Each cache is its own: a token verified through one is remembered there
 * only, and without a cache nothing is remembered. */
static void test_jwt_caches_are_separate(void **state)
{
	struct efs_token_cache *a = NULL, *b = NULL;
	char user[EFS_ID_MAX + 1];
	const char *reason = NULL;
	char *tok = NULL;
	(void)state;

	assert_int_equal(efs_token_cache_new(&a), 0);
	assert_int_equal(efs_token_cache_new(&b), 0);
	assert_int_equal(efs_jwt_issue(SECRET, "dora", 100, NOW, &tok), 0);
	assert_false(efs_token_cache_holds(a, SECRET, tok, NOW));
	assert_int_equal(efs_jwt_verify(NULL, SECRET, tok, NOW, user, &reason), 0);
	assert_string_equal(user, "dora");
	assert_false(efs_token_cache_holds(a, SECRET, tok, NOW));
	assert_int_equal(efs_jwt_verify(a, SECRET, tok, NOW, user, &reason), 0);
	assert_true(efs_token_cache_holds(a, SECRET, tok, NOW));
	assert_false(efs_token_cache_holds(a, "another-secret", tok, NOW));
	assert_false(efs_token_cache_holds(a, SECRET, tok, NOW + 100));
	assert_false(efs_token_cache_holds(b, SECRET, tok, NOW));
	free(tok);
	efs_token_cache_free(a);
	efs_token_cache_free(b);
	efs_token_cache_free(NULL);
}

static void test_jwt_wrong_secret(void **state)
{
	char *tok = NULL;

	assert_int_equal(efs_jwt_issue(SECRET, "alice", 3600, NOW, &tok), 0);
	assert_refused("another-secret", tok, NULL);
	assert_refused(SECRET "x", tok, NULL);
	free(tok);
}

static void test_jwt_tampered(void **state)
{
	char *alice = NULL, *bob = NULL;

	assert_int_equal(efs_jwt_issue(SECRET, "alice", 3600, NOW, &alice), 0);
	assert_int_equal(efs_jwt_issue(SECRET, "bob", 3600, NOW, &bob), 0);

	/* alice's header and signature around bob's payload */
	char forged[1024];
	const char *a1 = strchr(alice, '.'), *a2 = strrchr(alice, '.');
	const char *b1 = strchr(bob, '.'), *b2 = strrchr(bob, '.');
	int n = snprintf(forged, sizeof(forged), "%.*s%.*s%s", (int)(a1 - alice), alice,
			 (int)(b2 - b1), b1, a2);
	assert_true(n > 0 && (size_t)n < sizeof(forged));
	assert_refused(SECRET, forged, NULL);

	/* a flipped signature character */
	size_t len = strlen(alice);
	alice[len - 2] = alice[len - 2] == 'A' ? 'B' : 'A';
	assert_refused(SECRET, alice, NULL);

	/* the signature cut off */
	alice[a2 - alice + 1] = '\0';
	assert_refused(SECRET, alice, NULL);
	free(alice);
	free(bob);
}

static void test_jwt_garbage(void **state)
{
	static const char *const bad[] = {
		"", "abc", "a.b.c", "..", "a..", "...", "e30.e30.", "e30.e30", "Bearer x",
		"eyJhbGciOiJIUzI1NiJ9", "eyJhbGciOiJIUzI1NiJ9.!!!.abc",
	};
	for (size_t i = 0; i < EFS_ARRAY_SIZE(bad); i++)
		assert_refused(SECRET, bad[i], NULL);
	assert_refused(SECRET, NULL, NULL);

	/* longer than EFS_JWT_MAX */
	char *huge = malloc(5001);
	assert_non_null(huge);
	memset(huge, 'a', 5000);
	huge[5000] = '\0';
	huge[100] = '.';
	huge[200] = '.';
	assert_refused(SECRET, huge, "too long");
	free(huge);

	/* a valid token with 5000 characters of padding claims is too long too */
	jwt_t *jwt = NULL;
	char *filler = malloc(5001);
	assert_non_null(filler);
	memset(filler, 'x', 5000);
	filler[5000] = '\0';
	assert_int_equal(jwt_new(&jwt), 0);
	assert_int_equal(jwt_add_grant(jwt, "sub", "alice"), 0);
	assert_int_equal(jwt_add_grant_int(jwt, "exp", (long)NOW + 3600), 0);
	assert_int_equal(jwt_add_grant(jwt, "pad", filler), 0);
	assert_int_equal(jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)SECRET,
				     (int)strlen(SECRET)),
			 0);
	char *tok = jwt_encode_str(jwt);
	assert_non_null(tok);
	assert_true(strlen(tok) > EFS_JWT_MAX);
	assert_refused(SECRET, tok, "too long");
	free(tok);
	jwt_free(jwt);
	free(filler);
}

static void test_jwt_alg_none(void **state)
{
	static const char header[] = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
	char payload[128];
	snprintf(payload, sizeof(payload), "{\"sub\":\"mallory\",\"exp\":%lld}",
		 (long long)NOW + 3600);

	char *unsigned_tok = token_by_hand(header, payload, "");
	char *signed_tok = token_by_hand(header, payload, "c2lnbmF0dXJl");

	/* the hand-made token is well formed: libjwt decodes it without a key */
	jwt_t *jwt = NULL;
	assert_int_equal(jwt_decode(&jwt, unsigned_tok, NULL, 0), 0);
	assert_non_null(jwt);
	assert_int_equal(jwt_get_alg(jwt), JWT_ALG_NONE);
	assert_string_equal(jwt_get_grant(jwt, "sub"), "mallory");
	jwt_free(jwt);

	assert_refused(SECRET, unsigned_tok, NULL);
	assert_refused(SECRET, signed_tok, NULL);

	/* the same with an HMAC of the secret as the signature makes no difference */
	char *tok = NULL;
	assert_int_equal(efs_jwt_issue(SECRET, "mallory", 3600, NOW, &tok), 0);
	char *mixed = token_by_hand(header, payload, strrchr(tok, '.') + 1);
	assert_refused(SECRET, mixed, NULL);
	free(mixed);
	free(tok);

	free(unsigned_tok);
	free(signed_tok);
}

static void test_jwt_missing_claims(void **state)
{
	char *tok;

	/* no sub */
	tok = token_libjwt(JWT_ALG_HS256, SECRET, NULL, (long)NOW + 3600);
	assert_refused(SECRET, tok, "sub");
	free(tok);

	/* no exp */
	tok = token_libjwt(JWT_ALG_HS256, SECRET, "alice", 0);
	assert_refused(SECRET, tok, "exp");
	free(tok);

	/* empty sub */
	tok = token_libjwt(JWT_ALG_HS256, SECRET, "", (long)NOW + 3600);
	assert_refused(SECRET, tok, "sub");
	free(tok);

	/* with both, the same construction is accepted */
	tok = token_libjwt(JWT_ALG_HS256, SECRET, "alice", (long)NOW + 3600);
	assert_accepted(SECRET, tok, NOW, "alice");
	free(tok);
}

static void test_jwt_non_string_sub(void **state)
{
	jwt_t *jwt = NULL;

	assert_int_equal(jwt_new(&jwt), 0);
	assert_int_equal(jwt_add_grant_int(jwt, "sub", 42), 0);
	assert_int_equal(jwt_add_grant_int(jwt, "exp", (long)NOW + 3600), 0);
	assert_int_equal(jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)SECRET,
				     (int)strlen(SECRET)),
			 0);
	char *tok = jwt_encode_str(jwt);
	assert_non_null(tok);
	assert_refused(SECRET, tok, "sub");
	free(tok);
	jwt_free(jwt);
}

static void test_jwt_other_algorithms(void **state)
{
	char *tok;

	tok = token_libjwt(JWT_ALG_HS512, SECRET, "alice", (long)NOW + 3600);
	/* correctly signed for HS512 */
	jwt_t *jwt = NULL;
	assert_int_equal(jwt_decode(&jwt, tok, (const unsigned char *)SECRET,
				    (int)strlen(SECRET)),
			 0);
	assert_int_equal(jwt_get_alg(jwt), JWT_ALG_HS512);
	jwt_free(jwt);
	assert_refused(SECRET, tok, "HS256");
	free(tok);

	tok = token_libjwt(JWT_ALG_HS384, SECRET, "alice", (long)NOW + 3600);
	assert_refused(SECRET, tok, NULL);
	free(tok);
}

static void test_jwt_bad_sub(void **state)
{
	static const char *const bad[] = {"a b", "a/b", "../etc", "al'ice", "x\ny", "caf\xc3\xa9"};
	char *tok;
	char long_sub[EFS_ID_MAX + 2];

	for (size_t i = 0; i < EFS_ARRAY_SIZE(bad); i++) {
		tok = token_libjwt(JWT_ALG_HS256, SECRET, bad[i], (long)NOW + 3600);
		assert_refused(SECRET, tok, "sub");
		free(tok);
	}

	memset(long_sub, 'u', EFS_ID_MAX + 1);
	long_sub[EFS_ID_MAX + 1] = '\0';
	tok = token_libjwt(JWT_ALG_HS256, SECRET, long_sub, (long)NOW + 3600);
	assert_refused(SECRET, tok, "sub");
	free(tok);

	/* 64 characters is the longest accepted */
	long_sub[EFS_ID_MAX] = '\0';
	tok = token_libjwt(JWT_ALG_HS256, SECRET, long_sub, (long)NOW + 3600);
	assert_accepted(SECRET, tok, NOW, long_sub);
	free(tok);
}

/* ---- users and headers ------------------------------------------------- */

static void test_user_valid(void **state)
{
	char name[EFS_ID_MAX + 2];

	assert_true(efs_user_valid("alice"));
	assert_true(efs_user_valid("A"));
	assert_true(efs_user_valid("user_1.test+tag@example-org.com"));
	assert_false(efs_user_valid(NULL));
	assert_false(efs_user_valid(""));
	assert_false(efs_user_valid("a b"));
	assert_false(efs_user_valid("a/b"));
	assert_false(efs_user_valid("a\\b"));
	assert_false(efs_user_valid("a:b"));
	assert_false(efs_user_valid("a\"b"));
	assert_false(efs_user_valid("caf\xc3\xa9"));

	memset(name, 'a', EFS_ID_MAX);
	name[EFS_ID_MAX] = '\0';
	assert_true(efs_user_valid(name));
	name[EFS_ID_MAX] = 'a';
	name[EFS_ID_MAX + 1] = '\0';
	assert_false(efs_user_valid(name));
}

static void test_auth_bearer(void **state)
{
	const char *h;

	h = "Bearer x";
	assert_ptr_equal(efs_auth_bearer(h), h + 7);
	assert_string_equal(efs_auth_bearer("Bearer x"), "x");
	assert_string_equal(efs_auth_bearer("bearer x"), "x");
	assert_string_equal(efs_auth_bearer("BEARER tok.en.sig"), "tok.en.sig");
	assert_string_equal(efs_auth_bearer("Bearer   spaced"), "spaced");
	assert_null(efs_auth_bearer("Basic x"));
	assert_null(efs_auth_bearer("Basic dXNlcjpwYXNz"));
	assert_null(efs_auth_bearer("Bearer "));
	assert_null(efs_auth_bearer("Bearer    "));
	assert_null(efs_auth_bearer("Bearer"));
	assert_null(efs_auth_bearer("Bearerx"));
	assert_null(efs_auth_bearer(""));
	assert_null(efs_auth_bearer(NULL));
}

/* ---- the admin claim ----------------------------------------------------- */

/* Verifies @token (it must pass) and returns its admin claim. */
static bool verified_admin(const char *token)
{
	char user[EFS_ID_MAX + 1] = "";
	const char *reason = NULL;
	bool admin = true;
	assert_int_equal(efs_jwt_verify_role(tokens, SECRET, token, NOW, user, &admin, &reason), 0);
	return admin;
}

/* efs_jwt_issue_role(admin) makes an operator's token, read back as one,
 * also from the cache; a plain token is not one. */
static void test_jwt_admin_round_trip(void **state)
{
	char *admin = NULL, *plain = NULL, *plain_role = NULL;

	assert_int_equal(efs_jwt_issue_role(SECRET, "root", true, 3600, NOW, &admin), 0);
	assert_int_equal(efs_jwt_issue_role(SECRET, "alice", false, 3600, NOW, &plain_role), 0);
	assert_int_equal(efs_jwt_issue(SECRET, "bob", 3600, NOW, &plain), 0);
	assert_true(verified_admin(admin));
	assert_true(verified_admin(admin)); /* the second time from the cache */
	assert_true(efs_token_cache_holds(tokens, SECRET, admin, NOW));
	assert_false(verified_admin(plain));
	assert_false(verified_admin(plain));
	assert_false(verified_admin(plain_role));

	/* the claim is the JSON value true */
	jwt_t *jwt = NULL;
	assert_int_equal(
	    jwt_decode(&jwt, admin, (const unsigned char *)SECRET, (int)strlen(SECRET)), 0);
	errno = 0;
	assert_int_equal(jwt_get_grant_bool(jwt, EFS_JWT_ADMIN_CLAIM), 1);
	assert_int_equal(errno, 0);
	jwt_free(jwt);
	/* a token with the claim is still refused under another secret */
	assert_refused("another-secret", admin, "bad signature");
	free(admin);
	free(plain);
	free(plain_role);
}

/* A signed HS256 token for "eve" with the claims of @extra (a JSON object)
 * added. */
static char *token_with(const char *extra)
{
	jwt_t *jwt = NULL;
	assert_int_equal(jwt_new(&jwt), 0);
	assert_int_equal(jwt_add_grant(jwt, "sub", "eve"), 0);
	assert_int_equal(jwt_add_grant_int(jwt, "exp", (long)(NOW + 60)), 0);
	assert_int_equal(jwt_add_grants_json(jwt, extra), 0);
	assert_int_equal(
	    jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)SECRET, (int)strlen(SECRET)), 0);
	char *tok = jwt_encode_str(jwt);
	assert_non_null(tok);
	jwt_free(jwt);
	return tok;
}

/* Only "admin": true makes an operator: "true", 1, false, [true] or a
 * role claim do not. */
static void test_jwt_admin_claim_must_be_true(void **state)
{
	static const char *const not_admin[] = {
	    "{\"admin\": \"true\"}", "{\"admin\": 1}",	      "{\"admin\": false}",
	    "{\"admin\": [true]}",   "{\"role\": \"admin\"}", "{\"admin\": null}",
	};
	for (size_t i = 0; i < sizeof(not_admin) / sizeof(not_admin[0]); i++) {
		char *tok = token_with(not_admin[i]);
		if (verified_admin(tok))
			print_error("%s made an operator\n", not_admin[i]);
		assert_false(verified_admin(tok));
		free(tok);
	}
	char *tok = token_with("{\"admin\": true}");
	assert_true(verified_admin(tok));
	free(tok);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_jwt_round_trip),
	    cmocka_unit_test(test_jwt_issue_refuses),
	    cmocka_unit_test(test_jwt_expired),
	    cmocka_unit_test(test_jwt_remembered_token_keeps_every_check),
	    cmocka_unit_test(test_jwt_wrong_secret),
	    cmocka_unit_test(test_jwt_tampered),
	    cmocka_unit_test(test_jwt_garbage),
	    cmocka_unit_test(test_jwt_alg_none),
	    cmocka_unit_test(test_jwt_missing_claims),
	    cmocka_unit_test(test_jwt_non_string_sub),
	    cmocka_unit_test(test_jwt_other_algorithms),
	    cmocka_unit_test(test_jwt_bad_sub),
	    cmocka_unit_test(test_user_valid),
	    cmocka_unit_test(test_auth_bearer),
	    cmocka_unit_test(test_jwt_caches_are_separate),
	    cmocka_unit_test(test_jwt_admin_round_trip),
	    cmocka_unit_test(test_jwt_admin_claim_must_be_true),
	};
	return cmocka_run_group_tests(tests, tokens_new, tokens_free);
}
