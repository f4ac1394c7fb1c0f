/* SPDX-License-Identifier: MIT */
/* s3_checksum.c - x-amz-checksum-* on PutObject and UploadPart (contract
 * in s3_checksum.h).
 *
 * The value is compared as bytes (base64 decoded, then hex), so a client
 * that pads or not the same way S3 does is judged on the digest alone.
 * DeleteObjects checks its own body digests over its small buffered body
 * (s3_object.c); this module is for bodies that stream.
 */
#include "master/s3_checksum.h"

#include "echofs/http_server.h"
#include "echofs/log.h"
#include "echofs/util.h"
#include "master/s3_auth.h"
#include "master/s3_routes.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const struct {
	const char *header;
	const char *name; /* in messages */
	size_t len;	  /* digest bytes */
} ALGS[] = {
    [EFS_S3_CHECKSUM_NONE] = {"", "", 0},
    [EFS_S3_CHECKSUM_CRC32] = {"x-amz-checksum-crc32", "CRC32", 4},
    [EFS_S3_CHECKSUM_CRC32C] = {"x-amz-checksum-crc32c", "CRC32C", 4},
    [EFS_S3_CHECKSUM_SHA1] = {"x-amz-checksum-sha1", "SHA1", EFS_SHA1_LEN},
    [EFS_S3_CHECKSUM_SHA256] = {"x-amz-checksum-sha256", "SHA256", EFS_SHA256_LEN},
    [EFS_S3_CHECKSUM_CRC64NVME] = {"x-amz-checksum-crc64nvme", "CRC64NVME", 8},
};
#define ALG_COUNT (sizeof(ALGS) / sizeof(ALGS[0]))

enum efs_s3_checksum_alg efs_s3_checksum_alg_of(const char *name)
{
	for (size_t i = 1; name && i < ALG_COUNT; i++)
		if (strcasecmp(name, ALGS[i].header) == 0)
			return (enum efs_s3_checksum_alg)i;
	return EFS_S3_CHECKSUM_NONE;
}

/* 0 when @value is the base64 of @alg's digest length, else -EINVAL. */
static int value_decode(enum efs_s3_checksum_alg alg, const char *value,
			unsigned char out[EFS_SHA256_LEN])
{
	if (strlen(value) > EFS_S3_CHECKSUM_VALUE_MAX)
		return -EINVAL;
	return efs_base64_decode_exact(value, out, ALGS[alg].len);
}

static int invalid(struct efs_s3_req *s, const char *header)
{
	efs_s3_error(s, 400, "InvalidRequest", "Value for %s header is invalid.", header);
	return 1;
}

int efs_s3_checksum_begin(struct efs_s3_req *s, struct efs_s3_checksum *ck)
{
	enum efs_s3_checksum_alg alg = EFS_S3_CHECKSUM_NONE;
	const char *value = NULL;
	unsigned char digest[EFS_SHA256_LEN];
	int r;

	memset(ck, 0, sizeof(*ck));
	for (size_t i = 1; i < ALG_COUNT; i++) {
		const char *v = efs_http_header(s->http, ALGS[i].header);
		if (!v)
			continue;
		if (value) {
			efs_s3_error(s, 400, "InvalidRequest",
				     "Expecting a single x-amz-checksum- header. Multiple "
				     "checksum Types are not allowed.");
			return 1;
		}
		alg = (enum efs_s3_checksum_alg)i;
		value = v;
	}
	if (s->principal.trailer[0]) {
		if (value) {
			efs_s3_error(s, 400, "InvalidRequest",
				     "Expecting a single x-amz-checksum- header or trailer.");
			return 1;
		}
		alg = efs_s3_checksum_alg_of(s->principal.trailer);
		ck->from_trailer = true;
	} else if (value) {
		if (value_decode(alg, value, digest) < 0)
			return invalid(s, ALGS[alg].header);
		efs_strlcpy(ck->value, value, sizeof(ck->value));
	}
	ck->alg = alg;
	switch (alg) {
	case EFS_S3_CHECKSUM_SHA1:
		if ((r = efs_sha1_init(&ck->sha1)) < 0)
			return r;
		break;
	case EFS_S3_CHECKSUM_SHA256:
		if ((r = efs_sha256_init(&ck->sha256)) < 0)
			return r;
		break;
	default:
		break;
	}
	return 0;
}

void efs_s3_checksum_update(struct efs_s3_checksum *ck, const void *data, size_t len)
{
	switch (ck->alg) {
	case EFS_S3_CHECKSUM_NONE:
		break;
	case EFS_S3_CHECKSUM_CRC32:
		ck->crc = efs_crc32(ck->crc, data, len);
		break;
	case EFS_S3_CHECKSUM_CRC32C:
		ck->crc = efs_crc32c(ck->crc, data, len);
		break;
	case EFS_S3_CHECKSUM_CRC64NVME:
		ck->crc64 = efs_crc64nvme(ck->crc64, data, len);
		break;
	case EFS_S3_CHECKSUM_SHA1:
		efs_sha1_update(&ck->sha1, data, len);
		break;
	case EFS_S3_CHECKSUM_SHA256:
		efs_sha256_update(&ck->sha256, data, len);
		break;
	}
}

int efs_s3_checksum_check(struct efs_s3_req *s, struct efs_s3_checksum *ck)
{
	unsigned char given[EFS_SHA256_LEN];
	char given_hex[EFS_SHA256_HEX_LEN + 1], computed_hex[EFS_SHA256_HEX_LEN + 1];

	if (ck->alg == EFS_S3_CHECKSUM_NONE)
		return 0;
	if (ck->from_trailer) {
		const char *v = s->chunked ? efs_s3_chunked_trailer(s->chunked) : NULL;
		if (!v || value_decode(ck->alg, v, given) < 0)
			return invalid(s, ALGS[ck->alg].header);
		efs_strlcpy(ck->value, v, sizeof(ck->value));
	} else if (value_decode(ck->alg, ck->value, given) < 0) {
		return invalid(s, ALGS[ck->alg].header);
	}
	switch (ck->alg) {
	case EFS_S3_CHECKSUM_CRC32:
	case EFS_S3_CHECKSUM_CRC32C: /* big-endian bytes, as S3 encodes it */
		snprintf(computed_hex, sizeof(computed_hex), "%08x", (unsigned)ck->crc);
		break;
	case EFS_S3_CHECKSUM_CRC64NVME:
		snprintf(computed_hex, sizeof(computed_hex), "%016llx",
			 (unsigned long long)ck->crc64);
		break;
	case EFS_S3_CHECKSUM_SHA1:
		efs_sha1_final_hex(&ck->sha1, computed_hex);
		break;
	case EFS_S3_CHECKSUM_SHA256:
		efs_sha256_final_hex(&ck->sha256, computed_hex);
		break;
	case EFS_S3_CHECKSUM_NONE:
		return 0;
	}
	efs_hex_encode(given, ALGS[ck->alg].len, given_hex);
	if (strcmp(given_hex, computed_hex) != 0) {
		efs_info("s3 %s/%s refused: the body's %s is %s, the client's %s (%s, request %s)",
			 s->bucket, s->key, ALGS[ck->alg].name, computed_hex, given_hex,
			 ck->from_trailer ? "trailer" : "header", s->request_id);
		efs_s3_error(s, 400, "BadDigest",
			     "The %s you specified did not match the calculated checksum.",
			     ALGS[ck->alg].name);
		return 1;
	}
	return 0;
}

void efs_s3_checksum_reply(struct efs_s3_req *s, const struct efs_s3_checksum *ck)
{
	if (ck->alg != EFS_S3_CHECKSUM_NONE && ck->value[0])
		efs_http_add_header(s->http, ALGS[ck->alg].header, ck->value);
}

void efs_s3_checksum_stored(const struct efs_s3_checksum *ck, char *out, size_t size)
{
	out[0] = '\0';
	if (ck->alg != EFS_S3_CHECKSUM_NONE && ck->value[0])
		snprintf(out, size, "%s:%s", ALGS[ck->alg].name, ck->value);
}

/* The algorithm of a stored checksum and where its value starts, or NONE. */
static enum efs_s3_checksum_alg stored_alg(const char *stored, const char **value)
{
	const char *colon = strchr(stored, ':');
	for (size_t i = 1; colon && i < ALG_COUNT; i++)
		if (strlen(ALGS[i].name) == (size_t)(colon - stored) &&
		    strncmp(stored, ALGS[i].name, (size_t)(colon - stored)) == 0) {
			*value = colon + 1;
			return (enum efs_s3_checksum_alg)i;
		}
	return EFS_S3_CHECKSUM_NONE;
}

static void base64_encode(const unsigned char *data, size_t len, char *out)
{
	static const char table[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)data[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)data[i + 1] << 8;
		if (i + 2 < len)
			v |= data[i + 2];
		out[o++] = table[(v >> 18) & 63];
		out[o++] = table[(v >> 12) & 63];
		out[o++] = i + 1 < len ? table[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? table[v & 63] : '=';
	}
	out[o] = '\0';
}

int efs_s3_checksum_composite(const struct efs_s3_part *parts, size_t count, char *out, size_t size)
{
	struct efs_s3_checksum ck;
	enum efs_s3_checksum_alg alg = EFS_S3_CHECKSUM_NONE;
	unsigned char digest[EFS_SHA256_LEN];
	char hex[EFS_SHA256_HEX_LEN + 1], value[EFS_S3_CHECKSUM_VALUE_MAX + 1];
	int r = 0;

	out[0] = '\0';
	memset(&ck, 0, sizeof(ck));
	for (size_t i = 0; i < count; i++) {
		const char *v = NULL;
		enum efs_s3_checksum_alg a = stored_alg(parts[i].checksum, &v);
		if (a == EFS_S3_CHECKSUM_NONE || a == EFS_S3_CHECKSUM_CRC64NVME || (i && a != alg))
			goto out;
		alg = a;
	}
	if (alg == EFS_S3_CHECKSUM_NONE)
		goto out;
	ck.alg = alg;
	if ((alg == EFS_S3_CHECKSUM_SHA1 && (r = efs_sha1_init(&ck.sha1)) < 0) ||
	    (alg == EFS_S3_CHECKSUM_SHA256 && (r = efs_sha256_init(&ck.sha256)) < 0))
		goto out;
	for (size_t i = 0; i < count; i++) {
		const char *v = NULL;
		stored_alg(parts[i].checksum, &v);
		if (efs_base64_decode_exact(v, digest, ALGS[alg].len) < 0)
			goto out; /* not what efs_s3_checksum_stored wrote: none */
		efs_s3_checksum_update(&ck, digest, ALGS[alg].len);
	}
	switch (alg) {
	case EFS_S3_CHECKSUM_CRC32:
	case EFS_S3_CHECKSUM_CRC32C:
		for (int b = 0; b < 4; b++)
			digest[b] = (unsigned char)(ck.crc >> (24 - 8 * b));
		break;
	case EFS_S3_CHECKSUM_SHA1:
		efs_sha1_final_hex(&ck.sha1, hex);
		efs_hex_decode(hex, EFS_SHA1_LEN, digest); /* a digest we computed */
		break;
	case EFS_S3_CHECKSUM_SHA256:
		efs_sha256_final_hex(&ck.sha256, hex);
		efs_hex_decode(hex, EFS_SHA256_LEN, digest);
		break;
	case EFS_S3_CHECKSUM_CRC64NVME: /* refused above */
	case EFS_S3_CHECKSUM_NONE:
		break;
	}
	base64_encode(digest, ALGS[alg].len, value);
	snprintf(out, size, "%s:%s-%zu", ALGS[alg].name, value, count);
out:
	efs_s3_checksum_release(&ck);
	return r;
}

bool efs_s3_checksum_element(const char *stored, char element[32], const char **value)
{
	enum efs_s3_checksum_alg alg = stored_alg(stored, value);
	if (alg == EFS_S3_CHECKSUM_NONE || !**value)
		return false;
	snprintf(element, 32, "Checksum%s", ALGS[alg].name);
	return true;
}

void efs_s3_checksum_reply_stored(struct efs_s3_req *s, const char *stored)
{
	const char *value = NULL;
	enum efs_s3_checksum_alg alg = stored_alg(stored, &value);
	if (alg == EFS_S3_CHECKSUM_NONE || !*value)
		return;
	efs_http_add_header(s->http, ALGS[alg].header, value);
	efs_http_add_header(s->http, "x-amz-checksum-type",
			    strchr(value, '-') ? "COMPOSITE" : "FULL_OBJECT");
}

void efs_s3_checksum_release(struct efs_s3_checksum *ck)
{
	efs_sha1_release(&ck->sha1);
	efs_sha256_release(&ck->sha256);
}
