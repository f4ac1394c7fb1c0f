/* SPDX-License-Identifier: MIT */
/* fuzz_s3_target.c - libFuzzer harness for what the S3 listener reads
 * from a request's URL and Host before anything else: the bucket and key
 * (efs_s3_target_parse in src/master/s3_routes.c, path style and
 * virtual-host style under a fixed S3_DOMAIN) and a ListObjectsV2
 * continuation token (efs_s3_token_decode in src/master/s3_bucket.c);
 * and the base64 digests of its headers (Content-MD5, x-amz-checksum-*:
 * efs_base64_decode_exact in src/common/util.c). CopyObject's
 * x-amz-copy-source goes through efs_s3_target_parse too.
 *
 * Input: "<host>\n<target>" (the Host header, then the request target of
 * at most 8 KiB); the target is also decoded as a token. Checked beyond
 * the sanitizers:
 *   - 0 or -EINVAL with one of the three documented codes, the output
 *     untouched on failure;
 *   - a parsed bucket is at most 63 bytes without '/', a key at most 1024
 *     bytes of UTF-8, has_key exactly when the key is not empty, and
 *     (path style) percent-encoding them back into "/bucket/key" parses
 *     to the same bucket and key;
 *   - a decoded token is UTF-8 without NUL and hex-encodes back to the
 *     token (lowercase);
 *   - a target decoded as the base64 of 4, 16 or 32 bytes encodes back
 *     (OpenSSL's encoder) to exactly the target: one encoding per value.
 * Build and run: make fuzz; bin/fuzz_s3_target tests/fuzz/corpus/s3_target
 */
#include "echofs/util.h"
#include "master/s3_bucket.h"
#include "master/s3_routes.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TARGET_MAX (8 * 1024)
#define DOMAIN "s3.example.com"

static size_t encode(const char *in, char *out)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		if (isalnum(*p) || strchr("-_.~", *p)) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	out[o] = '\0';
	return o;
}

static void check_target(const char *host, const char *target)
{
	static struct efs_s3_target t, again;
	const char *code = NULL;
	memset(&t, 0xAB, sizeof(t));
	int r = efs_s3_target_parse(target, host, DOMAIN, &t, &code);
	if (r != 0) {
		if (r != -EINVAL || !code ||
		    (strcmp(code, "InvalidURI") && strcmp(code, "InvalidBucketName") &&
		     strcmp(code, "KeyTooLongError")))
			abort();
		if (((unsigned char *)&t)[0] != 0xAB) /* untouched */
			abort();
		return;
	}
	size_t blen = strnlen(t.bucket, sizeof(t.bucket)), klen = strnlen(t.key, sizeof(t.key));
	if (blen > EFS_S3_BUCKET_MAX || klen > EFS_S3_KEY_MAX || t.has_key != (klen > 0) ||
	    !efs_utf8_valid(t.key, klen))
		abort();
	bool vhost = host && strstr(host, "." DOMAIN) != NULL;
	if (vhost || !blen || memchr(t.bucket, '/', blen))
		return; /* a path-style bucket never holds '/' by construction */
	/* Path style: encode back and parse again. */
	static char rebuilt[3 * (EFS_S3_BUCKET_MAX + EFS_S3_KEY_MAX) + 8];
	size_t o = 0;
	rebuilt[o++] = '/';
	o += encode(t.bucket, rebuilt + o);
	if (t.has_key) {
		rebuilt[o++] = '/';
		encode(t.key, rebuilt + o);
	}
	memset(&again, 0, sizeof(again));
	if (efs_s3_target_parse(rebuilt, NULL, DOMAIN, &again, &code) != 0 ||
	    strcmp(again.bucket, t.bucket) != 0 || strcmp(again.key, t.key) != 0 ||
	    again.has_key != t.has_key)
		abort();
}

static void check_token(const char *token)
{
	static char out[EFS_S3_KEY_MAX + 64], hex[2 * sizeof(out) + 1];
	if (efs_s3_token_decode(token, out, sizeof(out)) != 0)
		return;
	size_t len = strlen(out);
	if (!efs_utf8_valid(out, len) || 2 * len != strlen(token))
		abort();
	efs_hex_encode(out, len, hex);
	for (size_t i = 0; token[i]; i++)
		if (tolower((unsigned char)token[i]) != hex[i])
			abort();
}

static void check_base64(const char *text)
{
	static const size_t lengths[] = {4, 16, 32};
	for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		unsigned char out[EFS_BASE64_DECODE_MAX];
		char again[2 * EFS_BASE64_DECODE_MAX];
		memset(out, 0xAB, sizeof(out));
		if (efs_base64_decode_exact(text, out, lengths[i]) != 0) {
			if (out[0] != 0xAB) /* untouched */
				abort();
			continue;
		}
		EVP_EncodeBlock((unsigned char *)again, out, (int)lengths[i]);
		if (strcmp(again, text) != 0)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > TARGET_MAX + 256)
		return 0;
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (strlen(text) != size) { /* a request line holds no NUL */
		free(text);
		return 0;
	}
	char *nl = strchr(text, '\n');
	const char *host = NULL, *target = text;
	if (nl) {
		*nl = '\0';
		host = text;
		target = nl + 1;
	}
	check_target(host, target);
	check_target(NULL, target);
	check_token(target);
	check_base64(target);
	free(text);
	return 0;
}
