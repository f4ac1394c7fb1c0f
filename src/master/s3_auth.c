/* SPDX-License-Identifier: MIT */
/* s3_auth.c - SigV4 verification of S3 requests against stored access
 * keys, and the aws-chunked decoder (contract in s3_auth.h).
 *
 * The order of checks follows what S3 answers first: the shape of the
 * signature (400), then the scope (region), the clock, the key, and the
 * signature itself (403). Nothing here reads the store before the request
 * is well formed, in scope and in time, and a key id that cannot be ours
 * is refused without a lookup: a flood of junk costs no store reads.
 */
#include "master/s3_auth.h"

#include "echofs/hash.h"
#include "echofs/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SERVICE "s3"
#define EK_PREFIX "EK"

struct cache_entry {
	bool used;
	char access_key_id[EFS_ACCESS_KEY_ID_LEN + 1];
	char date[EFS_SIGV4_DATE_LEN + 1];
	char owner[EFS_ID_MAX + 1];
	struct efs_sigv4_key key;
	int64_t loaded_s; /* server time when read from the store */
};

struct efs_s3_auth {
	struct efs_meta *meta;
	const struct efs_keyseal *seal;
	char region[EFS_SIGV4_MAX_REGION + 1];
	pthread_mutex_t lock;
	/* Bumped by efs_s3_auth_forget: a key read from the store before a
	 * forget is not cached after it (it may be the key just deleted). */
	uint64_t forgets;
	struct cache_entry cache[EFS_S3_AUTH_CACHE_SLOTS];
};

static bool region_valid(const char *r)
{
	size_t n = strlen(r);
	if (n == 0 || n > EFS_SIGV4_MAX_REGION)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = r[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return true;
}

bool efs_s3_access_key_id_valid(const char *id)
{
	if (!id || strlen(id) != EFS_ACCESS_KEY_ID_LEN || strncmp(id, EK_PREFIX, 2) != 0)
		return false;
	for (size_t i = 2; i < EFS_ACCESS_KEY_ID_LEN; i++) {
		char c = id[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
			return false;
	}
	return true;
}

int efs_s3_auth_new(const struct efs_s3_auth_deps *deps, struct efs_s3_auth **out)
{
	const char *region = deps->region ? deps->region : "us-east-1";
	if (!deps->meta || !deps->seal || !region_valid(region))
		return -EINVAL;
	struct efs_s3_auth *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->meta = deps->meta;
	a->seal = deps->seal;
	efs_strlcpy(a->region, region, sizeof(a->region));
	if (pthread_mutex_init(&a->lock, NULL) != 0) {
		free(a);
		return -ENOMEM;
	}
	*out = a;
	return 0;
}

void efs_s3_auth_free(struct efs_s3_auth *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < EFS_S3_AUTH_CACHE_SLOTS; i++)
		efs_sigv4_key_wipe(&a->cache[i].key);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

/* ---- errors ---- */

static int refuse(struct efs_s3_auth_error *err, int status, const char *code, const char *message)
{
	err->http_status = status;
	err->code = code;
	err->message = message;
	err->region = NULL;
	err->detail[0] = '\0';
	return -EACCES;
}

static int refusef(struct efs_s3_auth_error *err, int status, const char *code, const char *fmt,
		   ...) EFS_PRINTF(4, 5);
static int refusef(struct efs_s3_auth_error *err, int status, const char *code, const char *fmt,
		   ...)
{
	va_list ap;
	refuse(err, status, code, NULL);
	va_start(ap, fmt);
	vsnprintf(err->detail, sizeof(err->detail), fmt, ap);
	va_end(ap);
	err->message = err->detail;
	return -EACCES;
}

static int fail(struct efs_s3_auth_error *err, int r, int status, const char *code,
		const char *message)
{
	refuse(err, status, code, message);
	return r;
}

/* ---- headers ---- */

/* The value of header @name (first of its name), or NULL. *@count gets how
 * many headers of that name there are. */
static const char *header_find(const struct efs_s3_auth_request *rq, const char *name,
			       size_t *count)
{
	const char *v = NULL;
	size_t n = 0;
	for (size_t i = 0; i < rq->header_count; i++) {
		if (rq->headers[i].name && strcasecmp(rq->headers[i].name, name) == 0) {
			if (!v)
				v = rq->headers[i].value ? rq->headers[i].value : "";
			n++;
		}
	}
	if (count)
		*count = n;
	return v;
}

static bool sha256_hex_valid(const char *s)
{
	if (strlen(s) != EFS_SIGV4_SIGNATURE_LEN)
		return false;
	for (size_t i = 0; i < EFS_SIGV4_SIGNATURE_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* True when @name (x-amz-trailer's value) is a checksum this server
 * verifies; @out gets it in lower case. */
static bool trailer_name_valid(const char *name, char out[EFS_S3_TRAILER_NAME_MAX + 1])
{
	static const char *const names[] = {"x-amz-checksum-crc32", "x-amz-checksum-crc32c",
					    "x-amz-checksum-sha1", "x-amz-checksum-sha256",
					    "x-amz-checksum-crc64nvme"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(name, names[i]) == 0) {
			efs_strlcpy(out, names[i], EFS_S3_TRAILER_NAME_MAX + 1);
			return true;
		}
	}
	return false;
}

/* True when @query has an X-Amz-Algorithm or X-Amz-Signature parameter. */
static bool query_names_presign(const char *query)
{
	static const char *const names[] = {"X-Amz-Algorithm=", "X-Amz-Signature="};
	for (const char *p = query; *p;) {
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (strncmp(p, names[i], strlen(names[i])) == 0)
				return true;
		const char *amp = strchr(p, '&');
		if (!amp)
			break;
		p = amp + 1;
	}
	return false;
}

/* ---- signing keys ---- */

static size_t cache_slot(const char *access_key_id, const char *date)
{
	uint64_t h = efs_fnv1a(EFS_FNV1A_INIT, access_key_id, strlen(access_key_id));
	h = efs_fnv1a(h, date, strlen(date));
	return (size_t)(h % EFS_S3_AUTH_CACHE_SLOTS);
}

/* The signing key and owner of @access_key_id for @date (YYYYMMDD) in this
 * server's region: from the cache while fresh, else from the store. 0,
 * -ENOENT (no such key), -EACCES (its secret does not unseal), -EAGAIN /
 * -EIO (the store), -EINVAL. */
static int signing_key(struct efs_s3_auth *a, const char *access_key_id, const char *date,
		       int64_t now_s, struct efs_sigv4_key *key, char owner[EFS_ID_MAX + 1])
{
	size_t slot = cache_slot(access_key_id, date);
	struct cache_entry *e = &a->cache[slot];
	bool hit = false;
	uint64_t forgets;

	pthread_mutex_lock(&a->lock);
	forgets = a->forgets;
	if (e->used && strcmp(e->access_key_id, access_key_id) == 0 && strcmp(e->date, date) == 0 &&
	    now_s >= e->loaded_s && now_s - e->loaded_s < EFS_S3_AUTH_CACHE_TTL_S) {
		*key = e->key;
		efs_strlcpy(owner, e->owner, EFS_ID_MAX + 1);
		hit = true;
	}
	pthread_mutex_unlock(&a->lock);
	if (hit)
		return 0;

	struct efs_access_key row;
	char secret[EFS_SIGV4_MAX_SECRET + 1];
	struct efs_sigv4_key fresh;
	int r = efs_meta_key_get(a->meta, access_key_id, &row);
	if (r < 0) {
		if (r == -ENOENT) { /* forget a deleted key at once */
			pthread_mutex_lock(&a->lock);
			if (e->used && strcmp(e->access_key_id, access_key_id) == 0) {
				efs_sigv4_key_wipe(&e->key);
				e->used = false;
			}
			pthread_mutex_unlock(&a->lock);
		}
		return r;
	}
	r = efs_keyseal_open(a->seal, row.access_key_id, row.sealed_secret, secret, sizeof(secret));
	if (r < 0)
		return r == -EACCES || r == -EINVAL ? -EACCES : r;
	r = efs_sigv4_key_derive(&fresh, secret, date, a->region, SERVICE);
	memset(secret, 0, sizeof(secret));
	if (r < 0)
		return r;

	pthread_mutex_lock(&a->lock);
	if (a->forgets != forgets) { /* used once, not kept */
		pthread_mutex_unlock(&a->lock);
		*key = fresh;
		efs_strlcpy(owner, row.owner, EFS_ID_MAX + 1);
		efs_sigv4_key_wipe(&fresh);
		return 0;
	}
	efs_sigv4_key_wipe(&e->key);
	e->used = true;
	efs_strlcpy(e->access_key_id, access_key_id, sizeof(e->access_key_id));
	efs_strlcpy(e->date, date, sizeof(e->date));
	efs_strlcpy(e->owner, row.owner, sizeof(e->owner));
	e->key = fresh;
	e->loaded_s = now_s;
	pthread_mutex_unlock(&a->lock);

	*key = fresh;
	efs_strlcpy(owner, row.owner, EFS_ID_MAX + 1);
	efs_sigv4_key_wipe(&fresh);
	return 0;
}

void efs_s3_auth_forget(struct efs_s3_auth *a, const char *access_key_id)
{
	if (!a || !access_key_id)
		return;
	/* Every slot: the key may be cached for two days (around midnight). */
	pthread_mutex_lock(&a->lock);
	a->forgets++;
	for (size_t i = 0; i < EFS_S3_AUTH_CACHE_SLOTS; i++) {
		struct cache_entry *e = &a->cache[i];
		if (e->used && strcmp(e->access_key_id, access_key_id) == 0) {
			efs_sigv4_key_wipe(&e->key);
			e->used = false;
		}
	}
	pthread_mutex_unlock(&a->lock);
}

/* ---- verify ---- */

int efs_s3_auth_verify(struct efs_s3_auth *a, const struct efs_s3_auth_request *rq, int64_t now_s,
		       struct efs_s3_principal *out, struct efs_s3_auth_error *err)
{
	struct efs_sigv4_auth auth;
	const char *reason = NULL;
	size_t count = 0;
	int r;

	const char *authorization = header_find(rq, "authorization", &count);
	if (count > 1)
		return refuse(err, 400, "InvalidArgument", "More than one Authorization header");
	int presigned = efs_sigv4_presigned_parse(rq->query ? rq->query : "", &auth, &reason);
	/* A query the parser refuses before looking at its parameters (too
	 * long, too many) is a presigned URL's only if it names one. */
	bool is_presigned = presigned != -ENOENT &&
			    (presigned == 0 || query_names_presign(rq->query ? rq->query : ""));

	if (authorization && is_presigned)
		return refuse(err, 400, "InvalidArgument",
			      "Only one auth mechanism allowed; only the X-Amz-Algorithm query "
			      "parameter, Signature query string parameter or the Authorization "
			      "header should be specified");
	if (!authorization && !is_presigned)
		return refuse(err, 403, "AccessDenied", "Access Denied");

	const char *malformed_code =
	    is_presigned ? "AuthorizationQueryParametersError" : "AuthorizationHeaderMalformed";
	if (is_presigned) {
		if (presigned < 0)
			return refusef(err, 400, malformed_code,
				       "Query-string authentication is malformed: %s",
				       reason ? reason : "invalid");
	} else {
		if (strncmp(authorization, EFS_SIGV4_ALGORITHM " ", sizeof(EFS_SIGV4_ALGORITHM)) !=
		    0)
			return refuse(err, 400, "InvalidArgument",
				      "Unsupported Authorization Type: only AWS4-HMAC-SHA256 "
				      "(Signature Version 4) is accepted");
		if (strlen(authorization) > EFS_SIGV4_MAX_AUTHORIZATION)
			return refuse(err, 400, malformed_code,
				      "The authorization header is malformed: too long");
		if (efs_sigv4_auth_parse(authorization, &auth, &reason) < 0)
			return refusef(err, 400, malformed_code,
				       "The authorization header is malformed: %s",
				       reason ? reason : "invalid");
	}

	/* The scope: this server's region, the service "s3". */
	if (strcmp(auth.service, SERVICE) != 0)
		return refusef(err, 400, malformed_code,
			       "The credential scope's service '%s' is wrong; expecting 's3'",
			       auth.service);
	if (strcmp(auth.region, a->region) != 0) {
		refusef(err, 400, malformed_code,
			"The authorization %s is malformed; the region '%s' is wrong; "
			"expecting '%s'",
			is_presigned ? "query parameters are" : "header", auth.region, a->region);
		err->region = a->region;
		return -EACCES;
	}
	if (auth.has_security_token || header_find(rq, "x-amz-security-token", NULL))
		return refuse(err, 400, "InvalidToken",
			      "The provided token is malformed or otherwise invalid: EchoFS "
			      "access keys take no session token");

	/* The time, and the payload mode. */
	const char *amz_date = auth.amz_date;
	const char *payload_hash = EFS_SIGV4_UNSIGNED_PAYLOAD;
	enum efs_s3_payload payload = EFS_S3_PAYLOAD_UNSIGNED;
	int64_t decoded_length = -1;
	bool chunk_signed = false, trailer_mode = false;
	char trailer[EFS_S3_TRAILER_NAME_MAX + 1] = "";
	if (!is_presigned) {
		amz_date = header_find(rq, "x-amz-date", &count);
		if (!amz_date || count > 1)
			return refuse(err, 403, "AccessDenied",
				      "AWS authentication requires a valid x-amz-date header");
		payload_hash = header_find(rq, "x-amz-content-sha256", &count);
		if (!payload_hash)
			return refuse(err, 400, "InvalidRequest",
				      "Missing required header for this request: "
				      "x-amz-content-sha256");
		if (count > 1)
			return refuse(err, 400, "InvalidArgument",
				      "More than one x-amz-content-sha256 header");
		if (strcmp(payload_hash, EFS_SIGV4_UNSIGNED_PAYLOAD) == 0) {
			payload = EFS_S3_PAYLOAD_UNSIGNED;
		} else if (strcmp(payload_hash, EFS_SIGV4_STREAMING_PAYLOAD) == 0 ||
			   strcmp(payload_hash, EFS_SIGV4_STREAMING_TRAILER_PAYLOAD) == 0 ||
			   strcmp(payload_hash, EFS_SIGV4_STREAMING_UNSIGNED_TRAILER_PAYLOAD) ==
			       0) {
			payload = EFS_S3_PAYLOAD_STREAMING;
			chunk_signed =
			    strcmp(payload_hash, EFS_SIGV4_STREAMING_UNSIGNED_TRAILER_PAYLOAD) != 0;
			trailer_mode = strcmp(payload_hash, EFS_SIGV4_STREAMING_PAYLOAD) != 0;
			const char *dl = header_find(rq, "x-amz-decoded-content-length", &count);
			uint64_t v = 0;
			if (!dl)
				return refuse(err, 411, "MissingContentLength",
					      "You must provide x-amz-decoded-content-length "
					      "with an aws-chunked body");
			if (count > 1 || efs_parse_u64(dl, false, &v) < 0 || v > INT64_MAX)
				return refuse(err, 400, "InvalidArgument",
					      "x-amz-decoded-content-length is not a number");
			decoded_length = (int64_t)v;
		} else if (sha256_hex_valid(payload_hash)) {
			payload = EFS_S3_PAYLOAD_SIGNED;
		} else {
			return refuse(
			    err, 400, "InvalidArgument",
			    "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
			    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, "
			    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, "
			    "STREAMING-UNSIGNED-PAYLOAD-TRAILER, or a valid sha256 value.");
		}
		/* The trailer: only with a -TRAILER mode, and only a checksum. */
		const char *trailer_name = header_find(rq, "x-amz-trailer", &count);
		if (trailer_name) {
			if (!trailer_mode)
				return refuse(err, 400, "InvalidArgument",
					      "x-amz-trailer needs x-amz-content-sha256 "
					      "STREAMING-UNSIGNED-PAYLOAD-TRAILER or "
					      "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER");
			if (count > 1 || !trailer_name_valid(trailer_name, trailer))
				return refuse(err, 400, "InvalidRequest",
					      "x-amz-trailer must name one checksum: "
					      "x-amz-checksum-crc32, x-amz-checksum-crc32c, "
					      "x-amz-checksum-sha1, x-amz-checksum-sha256 or "
					      "x-amz-checksum-crc64nvme");
		}
	}
	r = efs_sigv4_check_time(&auth, amz_date, now_s, EFS_S3_AUTH_MAX_SKEW_S, &reason);
	if (r == -ETIMEDOUT)
		return refuse(err, 403, "AccessDenied", "Request has expired");
	if (r == -ERANGE && is_presigned)
		return refuse(err, 403, "AccessDenied", "Request is not valid yet");
	if (r == -ERANGE)
		return refuse(err, 403, "RequestTimeTooSkewed",
			      "The difference between the request time and the current time is "
			      "too large.");
	if (r < 0)
		return is_presigned
			   ? refusef(err, 400, malformed_code, "X-Amz-Date is malformed: %s",
				     reason ? reason : "invalid")
			   : refuse(err, 403, "AccessDenied",
				    "AWS authentication requires a valid x-amz-date header");

	/* The key. */
	if (!efs_s3_access_key_id_valid(auth.access_key_id))
		return refuse(err, 403, "InvalidAccessKeyId",
			      "The AWS Access Key Id you provided does not exist in our records.");
	struct efs_sigv4_key key;
	char owner[EFS_ID_MAX + 1];
	r = signing_key(a, auth.access_key_id, auth.date, now_s, &key, owner);
	if (r == -ENOENT)
		return refuse(err, 403, "InvalidAccessKeyId",
			      "The AWS Access Key Id you provided does not exist in our records.");
	if (r == -EACCES)
		return fail(err, -EIO, 500, "InternalError",
			    "The access key's secret cannot be decrypted (KEYS_ENCRYPTION_KEY or "
			    "JWT_SECRET changed since it was created)");
	if (r == -ENOMEM)
		return fail(err, -ENOMEM, 500, "InternalError", "Out of memory");
	if (r < 0)
		return fail(err, -EIO, 503, "ServiceUnavailable",
			    "The access key store cannot be reached; please retry");

	/* The signature. */
	struct efs_sigv4_request req = {
	    .method = rq->method,
	    .path = rq->path,
	    .query = rq->query,
	    .headers = rq->headers,
	    .header_count = rq->header_count,
	    .payload_hash = payload_hash,
	    .flags = EFS_SIGV4_S3 | (is_presigned ? EFS_SIGV4_PRESIGNED : 0),
	};
	r = efs_sigv4_verify(&req, &auth, amz_date, &key, &reason);
	if (r < 0) {
		efs_sigv4_key_wipe(&key);
		if (r == -ENOMEM)
			return fail(err, -ENOMEM, 500, "InternalError", "Out of memory");
		if (r == -EACCES)
			return refuse(err, 403, "SignatureDoesNotMatch",
				      "The request signature we calculated does not match the "
				      "signature you provided. Check your key and signing method.");
		if (r == -E2BIG)
			return refusef(err, 400, "InvalidArgument",
				       "The request is too large to "
				       "verify: %s",
				       reason ? reason : "over a limit");
		return refusef(err, 403, "SignatureDoesNotMatch",
			       "The request cannot be verified: %s", reason ? reason : "invalid");
	}

	memset(out, 0, sizeof(*out));
	efs_strlcpy(out->owner, owner, sizeof(out->owner));
	efs_strlcpy(out->access_key_id, auth.access_key_id, sizeof(out->access_key_id));
	out->payload = payload;
	out->decoded_length = decoded_length;
	if (payload == EFS_S3_PAYLOAD_SIGNED)
		efs_strlcpy(out->payload_sha256, payload_hash, sizeof(out->payload_sha256));
	if (payload == EFS_S3_PAYLOAD_STREAMING) {
		out->key = key;
		efs_strlcpy(out->amz_date, amz_date, sizeof(out->amz_date));
		efs_strlcpy(out->seed_signature, auth.signature, sizeof(out->seed_signature));
		out->chunk_signed = chunk_signed;
		out->trailer_mode = trailer_mode;
		efs_strlcpy(out->trailer, trailer, sizeof(out->trailer));
	}
	efs_sigv4_key_wipe(&key);
	return 0;
}

/* ---- aws-chunked ---- */

#define TRAILER_SIGNATURE "x-amz-trailer-signature"

enum chunked_state {
	CH_HEADER,   /* reading a chunk header line up to its LF */
	CH_DATA,     /* @remaining bytes of chunk data to go */
	CH_DATA_CR,  /* the CR after a chunk's data */
	CH_DATA_LF,  /* the LF after it */
	CH_TRAILER,  /* -TRAILER modes: trailer lines after the 0-size chunk, to "" */
	CH_FINAL_CR, /* the CRLF that ends the body after the 0-size chunk */
	CH_FINAL_LF,
	CH_DONE,
	CH_FAILED,
};

struct efs_s3_chunked {
	struct efs_sigv4_key key;
	char amz_date[EFS_SIGV4_AMZ_DATE_LEN + 1];
	char prev_signature[EFS_SIGV4_SIGNATURE_LEN + 1];
	char chunk_signature[EFS_SIGV4_SIGNATURE_LEN + 1];
	enum chunked_state state;
	int error; /* CH_FAILED's */
	char line[EFS_S3_CHUNK_LINE_MAX + 2];
	size_t line_len;
	uint64_t remaining;
	struct efs_sha256 sha;
	bool sha_open;
	int64_t decoded_length; /* -1: not checked */
	uint64_t decoded;
	bool chunk_signed; /* false: STREAMING-UNSIGNED-PAYLOAD-TRAILER */
	bool trailer_mode; /* the body ends with trailer lines */
	/* The declared trailer (x-amz-trailer, lower case) or "", its value
	 * once read, and the trailer's signature (signed mode). */
	char trailer_name[EFS_S3_TRAILER_NAME_MAX + 1];
	char trailer_value[EFS_S3_TRAILER_VALUE_MAX + 1];
	bool trailer_seen;
	char trailer_signature[EFS_SIGV4_SIGNATURE_LEN + 1];
	bool trailer_signature_seen;
};

int efs_s3_chunked_new(const struct efs_s3_principal *p, struct efs_s3_chunked **out)
{
	if (p->payload != EFS_S3_PAYLOAD_STREAMING ||
	    strlen(p->seed_signature) != EFS_SIGV4_SIGNATURE_LEN)
		return -EINVAL;
	struct efs_s3_chunked *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->key = p->key;
	efs_strlcpy(c->amz_date, p->amz_date, sizeof(c->amz_date));
	efs_strlcpy(c->prev_signature, p->seed_signature, sizeof(c->prev_signature));
	c->state = CH_HEADER;
	c->decoded_length = p->decoded_length;
	c->chunk_signed = p->chunk_signed || !p->trailer_mode; /* the old mode is signed */
	c->trailer_mode = p->trailer_mode;
	efs_strlcpy(c->trailer_name, p->trailer, sizeof(c->trailer_name));
	*out = c;
	return 0;
}

void efs_s3_chunked_free(struct efs_s3_chunked *c)
{
	if (!c)
		return;
	if (c->sha_open)
		efs_sha256_release(&c->sha);
	efs_sigv4_key_wipe(&c->key);
	free(c);
}

static int chunked_fail(struct efs_s3_chunked *c, int r)
{
	if (c->sha_open) {
		efs_sha256_release(&c->sha);
		c->sha_open = false;
	}
	c->state = CH_FAILED;
	c->error = r;
	return r;
}

/* Checks the signature of the chunk whose data hashed to @sha_hex. */
static int chunk_check(struct efs_s3_chunked *c, const char *sha_hex)
{
	char expected[EFS_SIGV4_SIGNATURE_LEN + 1];
	int r =
	    efs_sigv4_chunk_signature(&c->key, c->amz_date, c->prev_signature, sha_hex, expected);
	if (r < 0)
		return -EINVAL;
	if (!efs_sigv4_signature_equal(expected, c->chunk_signature))
		return -EACCES;
	efs_strlcpy(c->prev_signature, c->chunk_signature, sizeof(c->prev_signature));
	return 0;
}

/* A whole header line (without its CRLF) was read. */
static int header_done(struct efs_s3_chunked *c)
{
	uint64_t size = 0;
	int r = efs_sigv4_chunk_header_parse(c->line, c->line_len, EFS_S3_CHUNK_MAX, &size,
					     c->chunk_signed ? c->chunk_signature : NULL, NULL);
	c->line_len = 0;
	if (r < 0)
		return r == -E2BIG ? -E2BIG : -EINVAL;
	if (size == 0) {
		if (c->chunk_signed && (r = chunk_check(c, EFS_SIGV4_EMPTY_SHA256)) < 0)
			return r;
		c->state = c->trailer_mode ? CH_TRAILER : CH_FINAL_CR;
		return 0;
	}
	if (c->decoded_length >= 0 && size > (uint64_t)c->decoded_length - c->decoded)
		return -EINVAL; /* more than x-amz-decoded-content-length */
	if (c->chunk_signed) {
		if ((r = efs_sha256_init(&c->sha)) < 0)
			return r;
		c->sha_open = true;
	}
	c->remaining = size;
	c->state = CH_DATA;
	return 0;
}

/* One trailer line "name:value" (without its CRLF) was read. Only the
 * declared trailer and, signed, x-amz-trailer-signature (after it) may
 * come, once each. */
static int trailer_line(struct efs_s3_chunked *c)
{
	char *colon = memchr(c->line, ':', c->line_len);
	if (!colon || memchr(c->line, '\0', c->line_len))
		return -EINVAL; /* a NUL would cut the name or the value short */
	*colon = '\0';
	char *name = c->line, *value = colon + 1, *end = c->line + c->line_len;
	while (value < end && (*value == ' ' || *value == '\t'))
		value++;
	while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*end = '\0';
	size_t value_len = (size_t)(end - value);
	c->line_len = 0;
	if (c->trailer_name[0] && strcasecmp(name, c->trailer_name) == 0) {
		if (c->trailer_seen || c->trailer_signature_seen || value_len == 0 ||
		    value_len > EFS_S3_TRAILER_VALUE_MAX)
			return -EINVAL;
		memcpy(c->trailer_value, value, value_len + 1);
		c->trailer_seen = true;
		return 0;
	}
	if (c->chunk_signed && strcasecmp(name, TRAILER_SIGNATURE) == 0) {
		if (c->trailer_signature_seen || value_len != EFS_SIGV4_SIGNATURE_LEN)
			return -EINVAL;
		memcpy(c->trailer_signature, value, value_len + 1);
		c->trailer_signature_seen = true;
		return 0;
	}
	return -EINVAL;
}

/* The empty line that ends the trailer was read: the declared trailer
 * must have come, and, signed, its signature must hold (chained from the
 * final chunk's). An unsigned body, or a signed one that declared no
 * trailer and sent no signature, has nothing to check. */
static int trailer_end(struct efs_s3_chunked *c)
{
	char canonical[EFS_S3_TRAILER_NAME_MAX + EFS_S3_TRAILER_VALUE_MAX + 4];
	char sha_hex[EFS_SHA256_HEX_LEN + 1], expected[EFS_SIGV4_SIGNATURE_LEN + 1];
	if (c->trailer_name[0] && !c->trailer_seen)
		return -EINVAL;
	if (!c->chunk_signed || (!c->trailer_seen && !c->trailer_signature_seen))
		return 0;
	if (!c->trailer_signature_seen)
		return -EACCES;
	int n = c->trailer_seen ? snprintf(canonical, sizeof(canonical), "%s:%s\n", c->trailer_name,
					   c->trailer_value)
				: 0;
	if (n < 0 || (size_t)n >= sizeof(canonical))
		return -EINVAL;
	efs_sha256_hex(canonical, (size_t)n, sha_hex);
	if (efs_sigv4_trailer_signature(&c->key, c->amz_date, c->prev_signature, sha_hex,
					expected) < 0)
		return -EINVAL;
	if (!efs_sigv4_signature_equal(expected, c->trailer_signature))
		return -EACCES;
	return 0;
}

int efs_s3_chunked_feed(struct efs_s3_chunked *c, const char *data, size_t len, efs_s3_sink_fn sink,
			void *ctx)
{
	size_t i = 0;
	int r;

	if (c->state == CH_FAILED)
		return c->error;
	while (i < len) {
		switch (c->state) {
		case CH_HEADER:
		case CH_TRAILER: {
			const char *lf = memchr(data + i, '\n', len - i);
			size_t take = lf ? (size_t)(lf - (data + i)) : len - i;
			if (c->line_len + take > EFS_S3_CHUNK_LINE_MAX + 1)
				return chunked_fail(c, -EINVAL);
			memcpy(c->line + c->line_len, data + i, take);
			c->line_len += take;
			i += take;
			if (!lf)
				break;
			i++; /* the LF */
			if (c->line_len == 0 || c->line[c->line_len - 1] != '\r')
				return chunked_fail(c, -EINVAL);
			c->line_len--;
			c->line[c->line_len] = '\0';
			if (c->state == CH_TRAILER && c->line_len) {
				if ((r = trailer_line(c)) < 0)
					return chunked_fail(c, r);
			} else if (c->state == CH_TRAILER) {
				if ((r = trailer_end(c)) < 0)
					return chunked_fail(c, r);
				c->state = CH_DONE;
			} else if ((r = header_done(c)) < 0) {
				return chunked_fail(c, r);
			}
			break;
		}
		case CH_DATA: {
			size_t take = len - i;
			if ((uint64_t)take > c->remaining)
				take = (size_t)c->remaining;
			if (c->sha_open)
				efs_sha256_update(&c->sha, data + i, take);
			if ((r = sink(ctx, data + i, take)) < 0)
				return chunked_fail(c, r);
			c->remaining -= take;
			c->decoded += take;
			i += take;
			if (c->remaining == 0)
				c->state = CH_DATA_CR;
			break;
		}
		case CH_DATA_CR:
		case CH_FINAL_CR:
			if (data[i++] != '\r')
				return chunked_fail(c, -EINVAL);
			c->state = c->state == CH_DATA_CR ? CH_DATA_LF : CH_FINAL_LF;
			break;
		case CH_DATA_LF: {
			char sha_hex[EFS_SHA256_HEX_LEN + 1];
			if (data[i++] != '\n')
				return chunked_fail(c, -EINVAL);
			if (c->chunk_signed) {
				efs_sha256_final_hex(&c->sha, sha_hex); /* releases it */
				c->sha_open = false;
				if ((r = chunk_check(c, sha_hex)) < 0)
					return chunked_fail(c, r);
			}
			c->state = CH_HEADER;
			break;
		}
		case CH_FINAL_LF:
			if (data[i++] != '\n')
				return chunked_fail(c, -EINVAL);
			c->state = CH_DONE;
			break;
		case CH_DONE: /* bytes after the final chunk */
		case CH_FAILED:
			return chunked_fail(c, -EINVAL);
		}
	}
	return 0;
}

static int chunked_result(const struct efs_s3_chunked *c)
{
	if (c->state == CH_FAILED)
		return c->error;
	if (c->state != CH_DONE)
		return -EINVAL;
	if (c->decoded_length >= 0 && c->decoded != (uint64_t)c->decoded_length)
		return -EINVAL;
	return 0;
}

int efs_s3_chunked_finish(struct efs_s3_chunked *c)
{
	return chunked_result(c);
}

const char *efs_s3_chunked_trailer(const struct efs_s3_chunked *c)
{
	/* not from a body that framed well but decoded to the wrong length */
	return chunked_result(c) == 0 && c->trailer_seen ? c->trailer_value : NULL;
}
