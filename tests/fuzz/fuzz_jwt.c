/* SPDX-License-Identifier: MIT */
/* fuzz_jwt.c - libFuzzer harness for user token checks (src/common/auth.c:
 * efs_auth_bearer on the Authorization header, efs_jwt_verify_role on the
 * token (the subject and the "admin" claim),
 * libjwt and jansson under them).
 *
 * Input: a mode byte, then bytes.
 *   mode even: the bytes are an Authorization header value; its bearer
 *     token (if any) is verified as is. Almost all of these fail the
 *     signature: this covers the splitting, base64 and header parsing.
 *   mode odd: the bytes are "<header JSON>\0<claims JSON>"; the harness
 *     encodes both (base64url) and signs them with the secret (HS256), so
 *     the claims checks behind the signature (alg, exp, sub) are reached.
 * Checked beyond the sanitizers:
 *   - verify returns 0 or -EACCES, and on -EACCES a reason;
 *   - on success the subject is a valid user id (efs_user_valid);
 *   - with a token cache the answer (subject and admin claim) is the same,
 *     twice (the second time from the cache), as without one;
 *   - a token verified under one secret never verifies under another;
 *   - the cluster secret check (efs_secret_equal, constant time) agrees
 *     with strcmp.
 * Build and run: make fuzz; bin/fuzz_jwt tests/fuzz/corpus/jwt
 */
#include "echofs/auth.h"
#include "echofs/util.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SECRET "fuzz-jwt-secret"
#define NOW_S 1800000000 /* 2027-01-15 */

static struct efs_token_cache *cache;

static size_t b64url(const uint8_t *in, size_t len, char *out)
{
	static const char abc[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0, i = 0;
	for (; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = abc[v >> 18 & 63];
		out[o++] = abc[v >> 12 & 63];
		out[o++] = abc[v >> 6 & 63];
		out[o++] = abc[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = abc[v >> 18 & 63];
		out[o++] = abc[v >> 12 & 63];
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = abc[v >> 18 & 63];
		out[o++] = abc[v >> 12 & 63];
		out[o++] = abc[v >> 6 & 63];
	}
	out[o] = '\0';
	return o;
}

/* "<b64 header>.<b64 claims>.<b64 HMAC>" of the two parts of @data. */
static char *sign(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, '\0', size);
	size_t hlen = nul ? (size_t)(nul - data) : size;
	const uint8_t *claims = nul ? nul + 1 : data + size;
	size_t clen = (size_t)(data + size - claims);
	char *tok = malloc(4 * (size / 3 + 2) + 64 + 8);
	if (!tok)
		return NULL;
	size_t o = b64url(data, hlen, tok);
	tok[o++] = '.';
	o += b64url(claims, clen, tok + o);
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned mac_len = 0;
	HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)tok, o, mac,
	     &mac_len);
	tok[o++] = '.';
	b64url(mac, mac_len, tok + o);
	return tok;
}

static int verify(struct efs_token_cache *c, const char *secret, const char *token, char *user,
		  bool *admin)
{
	const char *reason = NULL;
	memset(user, 0, EFS_ID_MAX + 1);
	*admin = false;
	int r = efs_jwt_verify_role(c, secret, token, NOW_S, user, admin, &reason);
	if (r == 0) {
		if (!efs_user_valid(user))
			abort();
	} else if (r != -EACCES || !reason || !*reason) {
		abort();
	}
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 3 * EFS_JWT_MAX)
		return 0;
	if (!cache && efs_token_cache_new(&cache) != 0)
		abort();
	uint8_t mode = data[0];
	data++, size--;

	char *text = NULL;
	const char *token;
	if (mode & 1) {
		text = sign(data, size);
		token = text;
	} else {
		text = malloc(size + 1); /* exact size: ASan sees reads past it */
		if (text) {
			memcpy(text, data, size);
			text[size] = '\0';
		}
		token = text ? efs_auth_bearer(text) : NULL;
		if (token && (token < text || token > text + size || *token == ' ' || !*token))
			abort();
	}
	if (!token) {
		free(text);
		return 0;
	}
	if (efs_secret_equal(token, SECRET) != (strcmp(token, SECRET) == 0) ||
	    efs_secret_equal(SECRET, token) != (strcmp(token, SECRET) == 0))
		abort();
	char user[EFS_ID_MAX + 1], cached_user[EFS_ID_MAX + 1];
	bool admin, cached_admin;
	int r = verify(NULL, SECRET, token, user, &admin);
	for (int i = 0; i < 2; i++)
		if (verify(cache, SECRET, token, cached_user, &cached_admin) != r ||
		    (r == 0 && (strcmp(user, cached_user) != 0 || admin != cached_admin)))
			abort();
	if (r == 0 && verify(cache, SECRET "x", token, cached_user, &cached_admin) == 0)
		abort();
	free(text);
	return 0;
}
