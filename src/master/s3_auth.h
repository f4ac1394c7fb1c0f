/* SPDX-License-Identifier: MIT */
/* s3_auth.h - who sent an S3 request: SigV4 verification against the
 * access keys in the metadata store, and the aws-chunked body decoder.
 *
 * efs_s3_auth_verify takes a request as the S3 listener received it and
 * answers the access key's owner (a user id, the same as a JWT's "sub") or
 * the S3 error to refuse it with. Both ways of signing are accepted: the
 * Authorization header (AWS4-HMAC-SHA256) and a presigned URL (the X-Amz-*
 * query parameters, X-Amz-Expires honoured). Anonymous requests are
 * refused. The request's time must be within 15 minutes of the server's;
 * the credential scope must be this server's region and service "s3".
 *
 * The payload: a header-signed request must carry x-amz-content-sha256
 * (S3 answers InvalidRequest without it), one of a SHA-256 in hex (the
 * listener hashes the body and refuses a mismatch with
 * XAmzContentSHA256Mismatch), UNSIGNED-PAYLOAD, or an aws-chunked body
 * (feed it through efs_s3_chunked_*): STREAMING-AWS4-HMAC-SHA256-PAYLOAD
 * (every chunk's signature verified), its -TRAILER variant (the same, and
 * the trailing checksum's x-amz-trailer-signature too) or
 * STREAMING-UNSIGNED-PAYLOAD-TRAILER (chunks without signatures, then the
 * trailing checksum). The trailer a body ends with is declared by
 * x-amz-trailer: one of x-amz-checksum-crc32, -crc32c, -sha1, -sha256.
 * A presigned request's payload is unsigned.
 *
 * Signing keys (derived from the unsealed secret) are cached per access
 * key, day and region in a fixed-size table (EFS_S3_AUTH_CACHE_SLOTS); an
 * entry is re-read from the store after EFS_S3_AUTH_CACHE_TTL_S seconds.
 * So a request on a cache hit costs no store read, no AES-GCM unsealing
 * and no key derivation (one HMAC chain per day per key, on the miss).
 * A key deleted through this master stops working at once
 * (efs_s3_auth_forget); through another master, within
 * EFS_S3_AUTH_CACHE_TTL_S seconds (the bound docs/S3.md states).
 * Thread-safe (one mutex around the cache; the store is read outside it).
 *
 * docs/S3.md#authentication says what a client sees.
 */
#ifndef ECHOFS_MASTER_S3_AUTH_H
#define ECHOFS_MASTER_S3_AUTH_H

#include "echofs/common.h"
#include "echofs/keyseal.h"
#include "echofs/meta.h"
#include "echofs/sigv4.h"

#include <stddef.h>
#include <stdint.h>

#define EFS_S3_AUTH_MAX_SKEW_S (15 * 60) /* S3's RequestTimeTooSkewed limit */
#define EFS_S3_AUTH_CACHE_SLOTS 256	 /* signing keys cached */
#define EFS_S3_AUTH_CACHE_TTL_S 10	 /* a cached key is re-read after this */
/* The largest aws-chunked chunk accepted (clients send 8 KiB..1 MiB). */
#define EFS_S3_CHUNK_MAX (16u << 20)
/* The longest chunk header line ("<hex>;chunk-signature=<64 hex>"), and
 * the longest trailer line ("x-amz-checksum-sha256:<44 base64>"). */
#define EFS_S3_CHUNK_LINE_MAX 256
/* The longest x-amz-trailer name accepted ("x-amz-checksum-crc32c"), and
 * the longest trailer value (a checksum's base64: SHA-256's is 44). */
#define EFS_S3_TRAILER_NAME_MAX 32
#define EFS_S3_TRAILER_VALUE_MAX 64

struct efs_s3_auth_deps {
	struct efs_meta *meta;
	const char *region; /* AWS_REGION, default us-east-1; copied */
	/* The sealing key of the secrets (keyseal.h), borrowed: it must
	 * outlive the efs_s3_auth. */
	const struct efs_keyseal *seal;
};
struct efs_s3_auth;

/* A verifier over @deps. 0, -EINVAL (no meta or seal, a region that is
 * not 1..EFS_SIGV4_MAX_REGION of [a-z0-9-]) or -ENOMEM. */
int efs_s3_auth_new(const struct efs_s3_auth_deps *deps, struct efs_s3_auth **out);
/* Frees @a, wiping its cached keys. NULL accepted. */
void efs_s3_auth_free(struct efs_s3_auth *a);
/* Drops every cached signing key of @access_key_id (wiped): the next
 * request signed with it reads the store. For a key just deleted through
 * this master. NULL @a (no S3 listener) accepted. */
void efs_s3_auth_forget(struct efs_s3_auth *a, const char *access_key_id);

struct efs_s3_auth_request {
	const char *method;			/* as sent */
	const char *path;			/* raw path as sent, percent-encoded */
	const char *query;			/* raw query without '?', or NULL */
	const struct efs_sigv4_header *headers; /* every request header as received */
	size_t header_count;
};

enum efs_s3_payload { EFS_S3_PAYLOAD_SIGNED, EFS_S3_PAYLOAD_UNSIGNED, EFS_S3_PAYLOAD_STREAMING };

struct efs_s3_principal {
	char owner[EFS_ID_MAX + 1]; /* the key's user: the same id as a JWT sub */
	char access_key_id[EFS_SIGV4_MAX_ACCESS_KEY + 1];
	enum efs_s3_payload payload;
	/* SIGNED: the body must hash to this (the listener checks at the end:
	 * XAmzContentSHA256Mismatch). */
	char payload_sha256[EFS_SIGV4_SIGNATURE_LEN + 1];
	/* STREAMING: what the aws-chunked decoder needs. @key is the signing
	 * key itself: wipe it (efs_sigv4_key_wipe) when done. */
	struct efs_sigv4_key key;
	char amz_date[EFS_SIGV4_AMZ_DATE_LEN + 1];
	char seed_signature[EFS_SIGV4_SIGNATURE_LEN + 1];
	/* STREAMING: whether chunks (and the trailer) carry signatures
	 * (false: STREAMING-UNSIGNED-PAYLOAD-TRAILER). */
	bool chunk_signed;
	/* STREAMING with a -TRAILER mode: the x-amz-trailer the body ends
	 * with, lower case ("x-amz-checksum-crc32"...), or "" (no trailer;
	 * also every other mode). */
	bool trailer_mode;
	char trailer[EFS_S3_TRAILER_NAME_MAX + 1];
	/* STREAMING: x-amz-decoded-content-length, the object's size (the
	 * decoder checks the body decodes to exactly this many bytes). -1 for
	 * the other modes. */
	int64_t decoded_length;
};

struct efs_s3_auth_error {
	int http_status;
	/* S3 code: AccessDenied, SignatureDoesNotMatch, InvalidAccessKeyId,
	 * RequestTimeTooSkewed, AuthorizationHeaderMalformed,
	 * AuthorizationQueryParametersError, InvalidArgument, InvalidRequest,
	 * InvalidToken, MissingContentLength, ServiceUnavailable,
	 * InternalError. Static. */
	const char *code;
	const char *message; /* for the client; points into @detail or static */
	/* AuthorizationHeaderMalformed for a wrong region: the region
	 * expected (S3 puts it in the error's <Region>), else NULL. */
	const char *region;
	char detail[192];
};

/* Verifies @rq at the server's time @now_s (Unix seconds).
 * 0 with @out filled; -EACCES with @err filled (refuse with
 * err->http_status/code: 400 or 403, or 411 MissingContentLength);
 * -EIO when the store cannot be reached (@err: 503 ServiceUnavailable) or
 * the key's secret cannot be unsealed (@err: 500 InternalError, its
 * message says so: KEYS_ENCRYPTION_KEY or JWT_SECRET changed), -ENOMEM
 * (@err: 500 InternalError). @err is filled on every failure, @out only
 * on success.
 * Anonymous requests (no Authorization, no X-Amz-Signature) are refused:
 * AccessDenied. Presigned: X-Amz-Expires honoured against @now_s (expired:
 * AccessDenied "Request has expired"). Clock skew over 15 min:
 * RequestTimeTooSkewed. */
int efs_s3_auth_verify(struct efs_s3_auth *a, const struct efs_s3_auth_request *rq, int64_t now_s,
		       struct efs_s3_principal *out, struct efs_s3_auth_error *err);

/* The aws-chunked body (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) decoder: every
 * chunk signature verified (chained from the seed signature), decoded
 * bytes passed to @sink; capped sizes (EFS_S3_CHUNK_MAX a chunk,
 * EFS_S3_CHUNK_LINE_MAX a header line).
 *
 * A chunk is not buffered: its bytes reach the sink as they arrive, and
 * its signature is checked when its last byte has. On any error the
 * caller must discard everything the sink got (abort the upload). */
struct efs_s3_chunked;
typedef int (*efs_s3_sink_fn)(void *ctx, const char *data, size_t len);
/* A decoder for the request @p authenticated (payload STREAMING). 0,
 * -EINVAL (@p is not a streaming request) or -ENOMEM. */
int efs_s3_chunked_new(const struct efs_s3_principal *p, struct efs_s3_chunked **out);
/* Feed received bytes in any split. 0; -EACCES a chunk or trailer
 * signature mismatch, or a signed trailer without its signature
 * (SignatureDoesNotMatch); -EINVAL malformed framing (a trailer line that
 * is not "name:value", a name other than the declared trailer's, the
 * declared trailer missing or twice) (or more bytes than
 * x-amz-decoded-content-length); -E2BIG a chunk over its cap; or the
 * sink's error. Errors are sticky: later calls return the same. */
int efs_s3_chunked_feed(struct efs_s3_chunked *c, const char *data, size_t len, efs_s3_sink_fn sink,
			void *ctx);
/* 0 once the final zero-length chunk was seen and verified (and the body
 * decoded to x-amz-decoded-content-length bytes); -EINVAL when the body
 * ended early (IncompleteBody); an earlier sticky error as it was. */
int efs_s3_chunked_finish(struct efs_s3_chunked *c);
/* The value of the trailer the principal declared (its x-amz-trailer),
 * as sent, once efs_s3_chunked_finish returned 0; NULL when there is
 * none. Valid until @c is freed. In signed mode its
 * x-amz-trailer-signature was verified (chained from the final chunk's). */
const char *efs_s3_chunked_trailer(const struct efs_s3_chunked *c);
/* Frees @c, wiping its key. NULL accepted. */
void efs_s3_chunked_free(struct efs_s3_chunked *c);

/* True when @id looks like an EchoFS access key id: EFS_ACCESS_KEY_ID_LEN
 * characters of [A-Z0-9] starting with "EK" (others are refused without a
 * store lookup). */
bool efs_s3_access_key_id_valid(const char *id);

#endif
