/* SPDX-License-Identifier: MIT */
/* sigv4.h - AWS Signature Version 4 (AWS4-HMAC-SHA256), written once for
 * both sides: signing requests the master sends to S3 and DynamoDB, and
 * verifying requests an S3 client sends to EchoFS.
 *
 * What it covers: the canonical request (path, query, headers, payload
 * hash), the string to sign, the signing key, the signature and the
 * Authorization header; presigned URLs (the X-Amz-* query parameters); the
 * aws-chunked streaming payload's chunk signatures; and, for a server, the
 * strict parsing of an Authorization header, of a presigned query and of a
 * chunk header, with a constant-time signature comparison.
 *
 * What it does not: no network, no clock (callers pass the X-Amz-Date
 * value), no credentials lookup. It does not add headers to a request: a
 * client puts host, x-amz-date, x-amz-content-sha256 (S3) and
 * x-amz-security-token (temporary credentials) in the request itself and
 * passes them here to be signed.
 *
 * Everything here may read bytes from the network: every input has a cap
 * (the EFS_SIGV4_MAX_* below), and every function returns 0 or a negative
 * errno (-EINVAL malformed input, -E2BIG over a cap, -EACCES a signature
 * that does not match, -ENOMEM), with its out-parameters untouched on
 * failure. Parsers also give a short static reason for -EINVAL, fit for a
 * log line or an S3 error message (never containing request bytes).
 *
 * Reference: "Create a signed AWS API request" and the S3 API reference's
 * "Authenticating Requests (AWS Signature Version 4)"; tested against AWS's
 * SigV4 test suite and the S3 documentation's worked examples
 * (tests/unit/test_sigv4.c).
 */
#ifndef ECHOFS_SIGV4_H
#define ECHOFS_SIGV4_H

#include "echofs/buf.h"
#include "echofs/common.h"
#include "echofs/hash.h"

#include <stdbool.h>
#include <stdint.h>

#define EFS_SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
#define EFS_SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define EFS_SIGV4_STREAMING_PAYLOAD "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
/* aws-chunked bodies that end with trailing headers (a checksum), their
 * chunks signed as above (and the trailer too), or not signed at all. */
#define EFS_SIGV4_STREAMING_TRAILER_PAYLOAD "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
#define EFS_SIGV4_STREAMING_UNSIGNED_TRAILER_PAYLOAD "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
/* SHA-256 of the empty string: the payload hash of a request without body. */
#define EFS_SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* Caps on untrusted parts (bytes, without the NUL). */
#define EFS_SIGV4_MAX_PATH 8192		    /* request path as sent */
#define EFS_SIGV4_MAX_QUERY 8192	    /* query string as sent, without '?' */
#define EFS_SIGV4_MAX_QUERY_PARAMS 128	    /* name=value pairs in a query */
#define EFS_SIGV4_MAX_HEADERS 128	    /* headers given to the canonicaliser */
#define EFS_SIGV4_MAX_HEADER_VALUE 8192	    /* one header value */
#define EFS_SIGV4_MAX_SIGNED_HEADERS 512    /* the SignedHeaders list */
#define EFS_SIGV4_MAX_CANONICAL (64 * 1024) /* a whole canonical request */
#define EFS_SIGV4_MAX_AUTHORIZATION 2048    /* an Authorization header value */
#define EFS_SIGV4_MAX_ACCESS_KEY 128
#define EFS_SIGV4_MAX_SECRET 256
#define EFS_SIGV4_MAX_REGION 32
#define EFS_SIGV4_MAX_SERVICE 32
#define EFS_SIGV4_MAX_EXPIRES 604800 /* 7 days: the longest presigned URL AWS allows */

#define EFS_SIGV4_DATE_LEN 8	  /* YYYYMMDD */
#define EFS_SIGV4_AMZ_DATE_LEN 16 /* YYYYMMDDTHHMMSSZ */
#define EFS_SIGV4_SIGNATURE_LEN 64

/* Request flags. */
enum {
	/* S3's rules for the path: no dot-segment or slash normalisation, and
	 * the path is encoded once (decoded as sent, then encoded), where every
	 * other service normalises it and encodes the path as sent again. */
	EFS_SIGV4_S3 = 1 << 0,
	/* The query is a presigned URL's: X-Amz-Signature is left out of the
	 * canonical query string (it cannot sign itself). */
	EFS_SIGV4_PRESIGNED = 1 << 1,
};

struct efs_sigv4_header {
	const char *name;  /* any case; a token (RFC 9110) */
	const char *value; /* as received; trimmed and collapsed here */
};

/* A request to canonicalise. Nothing is copied or kept. */
struct efs_sigv4_request {
	const char *method; /* "GET", ... (upper case, as sent) */
	const char *path;   /* path as sent (percent-encoded), "" means "/" */
	const char *query;  /* query as sent, without '?'; NULL or "" for none */
	const struct efs_sigv4_header *headers;
	size_t header_count;
	/* NULL: every header given is signed (a client signing what it sends).
	 * Otherwise a SignedHeaders list ("host;x-amz-date"): only those are
	 * signed, each must be among @headers (a server verifying). */
	const char *signed_headers;
	/* 64 lowercase hex digits, EFS_SIGV4_UNSIGNED_PAYLOAD or
	 * EFS_SIGV4_STREAMING_PAYLOAD. */
	const char *payload_hash;
	unsigned flags; /* EFS_SIGV4_S3, EFS_SIGV4_PRESIGNED */
};

/* A signing key: derived once per secret, day, region and service, and
 * reusable for every request of that scope (callers cache it). */
struct efs_sigv4_key {
	unsigned char key[EFS_SHA256_LEN];
	char date[EFS_SIGV4_DATE_LEN + 1];
	char region[EFS_SIGV4_MAX_REGION + 1];
	char service[EFS_SIGV4_MAX_SERVICE + 1];
};

/* Derives the signing key for @secret on @date (YYYYMMDD, or a whole
 * X-Amz-Date of which the first 8 characters are used), @region and
 * @service: HMAC chain "AWS4"+secret, date, region, service, "aws4_request".
 * 0 or -EINVAL (a malformed date, region or service, an empty or overlong
 * secret). */
int efs_sigv4_key_derive(struct efs_sigv4_key *key, const char *secret, const char *date,
			 const char *region, const char *service);
/* True when @key was derived for @date (YYYYMMDD or an X-Amz-Date), @region
 * and @service: a cached key can be reused. */
bool efs_sigv4_key_matches(const struct efs_sigv4_key *key, const char *date, const char *region,
			   const char *service);
/* Forgets the key material (memset that the compiler keeps). NULL accepted. */
void efs_sigv4_key_wipe(struct efs_sigv4_key *key);

/* Writes @epoch_s as an X-Amz-Date ("20130524T000000Z") into @out. 0 or
 * -EINVAL (before 1970 or past 9999). */
int efs_sigv4_amz_date(int64_t epoch_s, char out[EFS_SIGV4_AMZ_DATE_LEN + 1]);
/* Parses an X-Amz-Date (exactly YYYYMMDDTHHMMSSZ, a real UTC date) into
 * seconds since the epoch. 0 or -EINVAL. */
int efs_sigv4_amz_date_parse(const char *amz_date, int64_t *epoch_s);

/* Appends @len bytes of @s to @out URI-encoded as SigV4 wants: every byte
 * but A-Z a-z 0-9 - . _ ~ as %XX (upper-case hex), and '/' too unless
 * @keep_slash. For building URLs (an S3 key in a path: keep_slash; a query
 * value: not). 0, -E2BIG or -ENOMEM. */
int efs_sigv4_uri_encode(struct efs_buf *out, const char *s, size_t len, bool keep_slash);

/* Builds the canonical request of @req into @out (emptied first, and
 * holding nothing useful after a failure; give it a cap of at least
 * EFS_SIGV4_MAX_CANONICAL). 0, -EINVAL (with @reason), -E2BIG (a part over
 * its cap, with @reason) or -ENOMEM. @reason may be NULL. Mostly for tests
 * and debugging: the functions below build it themselves. */
int efs_sigv4_canonical_request(const struct efs_sigv4_request *req, struct efs_buf *out,
				const char **reason);

/* Writes the signature (64 lowercase hex digits) of @req at @amz_date under
 * @key into @signature. The key's scope is the credential scope.
 * 0, -EINVAL (with @reason, may be NULL), -E2BIG or -ENOMEM. */
int efs_sigv4_signature(const struct efs_sigv4_request *req, const char *amz_date,
			const struct efs_sigv4_key *key,
			char signature[EFS_SIGV4_SIGNATURE_LEN + 1], const char **reason);

/* Signs @req (every header in it, which must include host and x-amz-date)
 * and writes the Authorization header value ("AWS4-HMAC-SHA256
 * Credential=..., SignedHeaders=..., Signature=...") into @out (replaced
 * on success). @signature, when not NULL, gets the signature too (the seed
 * of an aws-chunked body). 0, -EINVAL, -E2BIG or -ENOMEM. */
int efs_sigv4_authorization(const struct efs_sigv4_request *req, const char *access_key_id,
			    const char *amz_date, const struct efs_sigv4_key *key,
			    struct efs_buf *out, char signature[EFS_SIGV4_SIGNATURE_LEN + 1]);

/* Presigns @req: puts in @out (replaced on success) the whole query string of
 * the presigned URL, without '?': @req->query's parameters (as sent), then
 * X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date, X-Amz-Expires,
 * X-Amz-SignedHeaders, X-Amz-Security-Token (when @session_token is not
 * NULL; signed, as S3 wants) and X-Amz-Signature last. @req's headers (at
 * least host) are the signed ones; its payload_hash is usually
 * EFS_SIGV4_UNSIGNED_PAYLOAD. @expires_s is 1..EFS_SIGV4_MAX_EXPIRES.
 * 0, -EINVAL, -E2BIG or -ENOMEM. */
int efs_sigv4_presign(const struct efs_sigv4_request *req, const char *access_key_id,
		      const char *session_token, const char *amz_date, unsigned expires_s,
		      const struct efs_sigv4_key *key, struct efs_buf *out);

/* The signature of one chunk of an aws-chunked body
 * (STREAMING-AWS4-HMAC-SHA256-PAYLOAD): the string to sign is
 * "AWS4-HMAC-SHA256-PAYLOAD", @amz_date, the scope, @prev_signature (the
 * request's signature for the first chunk, then the previous chunk's), the
 * hash of the empty string and @chunk_sha256_hex (the chunk's data; the
 * final chunk is empty). 0 or -EINVAL. */
int efs_sigv4_chunk_signature(const struct efs_sigv4_key *key, const char *amz_date,
			      const char *prev_signature, const char *chunk_sha256_hex,
			      char signature[EFS_SIGV4_SIGNATURE_LEN + 1]);

/* The signature of an aws-chunked body's trailing headers
 * (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, sent as
 * x-amz-trailer-signature): the string to sign is
 * "AWS4-HMAC-SHA256-TRAILER", @amz_date, the scope, @prev_signature (the
 * final, empty chunk's) and @trailer_sha256_hex, the SHA-256 of the
 * trailing headers as "name:value\n" lines (without the signature's).
 * 0 or -EINVAL. */
int efs_sigv4_trailer_signature(const struct efs_sigv4_key *key, const char *amz_date,
				const char *prev_signature, const char *trailer_sha256_hex,
				char signature[EFS_SIGV4_SIGNATURE_LEN + 1]);

/* Parses an aws-chunked chunk header line of @len bytes, without its CRLF:
 * "<hex size>;chunk-signature=<64 hex>", or, when @signature is NULL (an
 * unsigned body, STREAMING-UNSIGNED-PAYLOAD-TRAILER), "<hex size>" alone.
 * The size must be at most @max_size (the server's chunk cap). 0, -EINVAL
 * (with @reason) or -E2BIG (size over @max_size). */
int efs_sigv4_chunk_header_parse(const char *line, size_t len, uint64_t max_size, uint64_t *size,
				 char signature[EFS_SIGV4_SIGNATURE_LEN + 1], const char **reason);

/* The parts of a signature a server receives, from an Authorization header
 * or a presigned query. */
struct efs_sigv4_auth {
	char access_key_id[EFS_SIGV4_MAX_ACCESS_KEY + 1];
	char date[EFS_SIGV4_DATE_LEN + 1]; /* the credential scope's */
	char region[EFS_SIGV4_MAX_REGION + 1];
	char service[EFS_SIGV4_MAX_SERVICE + 1];
	char signed_headers[EFS_SIGV4_MAX_SIGNED_HEADERS + 1];
	char signature[EFS_SIGV4_SIGNATURE_LEN + 1];
	/* Presigned only (zero/empty from an Authorization header). */
	char amz_date[EFS_SIGV4_AMZ_DATE_LEN + 1];
	uint64_t expires_s;
	bool has_security_token;
};

/* Parses an Authorization header value: "AWS4-HMAC-SHA256 Credential=
 * <key>/<date>/<region>/<service>/aws4_request, SignedHeaders=<a;b;c>,
 * Signature=<64 hex>" (the three in any order, each once, separated by
 * commas and optional spaces). Strict: the access key is 1..128 of
 * [A-Za-z0-9_-], the date a real YYYYMMDD, region and service 1..32 of
 * [a-z0-9-], SignedHeaders lower-case tokens in strictly increasing order
 * including "host", the signature 64 lower-case hex digits. 0 or -EINVAL
 * with @reason (may be NULL). */
int efs_sigv4_auth_parse(const char *authorization, struct efs_sigv4_auth *auth,
			 const char **reason);

/* Parses a presigned URL's query (as sent, without '?'): X-Amz-Algorithm
 * (AWS4-HMAC-SHA256), X-Amz-Credential, X-Amz-Date, X-Amz-Expires
 * (1..EFS_SIGV4_MAX_EXPIRES), X-Amz-SignedHeaders and X-Amz-Signature, each
 * exactly once, with the same rules as efs_sigv4_auth_parse, and the
 * credential's date equal to X-Amz-Date's day. Other parameters are left
 * alone. 0, -ENOENT (no X-Amz-Algorithm and no X-Amz-Signature: not a
 * presigned request) or -EINVAL with @reason (may be NULL). */
int efs_sigv4_presigned_parse(const char *query, struct efs_sigv4_auth *auth, const char **reason);

/* Verifies a request a server received against @auth (parsed from it) and
 * @key (derived from the secret of @auth's access key for @auth's scope).
 * @req's signed_headers is ignored: @auth's is used. @amz_date is the
 * X-Amz-Date header (or @auth->amz_date when presigned); its day must be
 * the scope's. Does not check the clock: the caller compares @amz_date
 * with its own time (15 minutes of skew; the presigned expiry).
 * 0 (the signature matches), -EACCES (it does not), -EINVAL with @reason
 * (malformed, a key for another scope, a signed header absent), -E2BIG or
 * -ENOMEM. */
int efs_sigv4_verify(const struct efs_sigv4_request *req, const struct efs_sigv4_auth *auth,
		     const char *amz_date, const struct efs_sigv4_key *key, const char **reason);

/* Checks the request time against the server's clock @now_s (seconds
 * since the epoch): for a header-signed request (@auth->expires_s == 0),
 * @amz_date within @max_skew_s of now (S3: 15 minutes); for a presigned
 * one, not more than @max_skew_s in the future and not past its
 * X-Amz-Expires. 0, -ERANGE (too far from now: S3's RequestTimeTooSkewed,
 * or a presigned URL not valid yet), -ETIMEDOUT (a presigned URL expired)
 * or -EINVAL (a malformed date), each with @reason (may be NULL). */
int efs_sigv4_check_time(const struct efs_sigv4_auth *auth, const char *amz_date, int64_t now_s,
			 int64_t max_skew_s, const char **reason);

/* Compares two signatures in constant time (for equal lengths up to
 * EFS_SIGV4_SIGNATURE_LEN). False when either is NULL or the lengths
 * differ. */
bool efs_sigv4_signature_equal(const char *a, const char *b);

#endif
