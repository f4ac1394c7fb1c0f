/* SPDX-License-Identifier: MIT */
/* test_s3_auth.c - unit tests of src/master/s3_auth.c: requests signed by
 * botocore (tests/unit/s3_auth_vectors.h, made by s3_auth_botocore.py)
 * verified against a key in a real SQLite store in a temporary directory,
 * and the aws-chunked decoder on a body whose chunk signatures that script
 * computed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "echofs/hash.h"
#include "echofs/keyseal.h"
#include "echofs/meta.h"
#include "echofs/util.h"
#include "master/s3_auth.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct vector {
	const char *method, *path, *query;
	const struct efs_sigv4_header *headers;
	size_t header_count;
	const char *body;
	size_t body_len;
};

#include "s3_auth_vectors.h"

#define OWNER "alice"
#define SEAL_HEX "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define VECTORS_SCRIPT "tests/unit/s3_auth_botocore.py"
#define VECTORS_HEADER "tests/unit/s3_auth_vectors.h"

struct fixture {
	char dir[64];
	struct efs_meta *meta;
	struct efs_keyseal seal;
	struct efs_s3_auth *auth;
	int64_t t0; /* VEC_AMZ_DATE in seconds */
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void store_key(struct fixture *f, const char *id, const char *owner, const char *secret)
{
	struct efs_access_key k = {0};
	efs_strlcpy(k.access_key_id, id, sizeof(k.access_key_id));
	efs_strlcpy(k.owner, owner, sizeof(k.owner));
	assert_int_equal(
	    efs_keyseal_seal(&f->seal, id, secret, k.sealed_secret, sizeof(k.sealed_secret)), 0);
	k.created_at_ms = 1;
	assert_int_equal(efs_meta_key_create(f->meta, &k, 100), 0);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256] = "";
	if (!f)
		return -1;
	efs_strlcpy(f->dir, "/tmp/echofs-test-s3auth-XXXXXX", sizeof(f->dir));
	if (!mkdtemp(f->dir))
		return -1;
	if (efs_meta_open(NULL, f->dir, &f->meta, err, sizeof(err)) < 0) {
		print_error("efs_meta_open: %s\n", err);
		return -1;
	}
	if (efs_keyseal_init_hex(&f->seal, SEAL_HEX) < 0 ||
	    efs_sigv4_amz_date_parse(VEC_AMZ_DATE, &f->t0) < 0)
		return -1;
	store_key(f, VEC_KEY_ID, OWNER, VEC_SECRET);
	struct efs_s3_auth_deps deps = {.meta = f->meta, .region = "us-east-1", .seal = &f->seal};
	if (efs_s3_auth_new(&deps, &f->auth) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	efs_s3_auth_free(f->auth);
	efs_meta_close(f->meta);
	nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static struct efs_s3_auth_request request_of(const struct vector *v)
{
	return (struct efs_s3_auth_request){v->method, v->path, v->query, v->headers,
					    v->header_count};
}

static int verify_at(struct fixture *f, const struct efs_s3_auth_request *rq, int64_t now_s,
		     struct efs_s3_principal *p, struct efs_s3_auth_error *err)
{
	memset(err, 0, sizeof(*err));
	return efs_s3_auth_verify(f->auth, rq, now_s, p, err);
}

/* Expects a refusal with @status and @code. */
static void expect_refused(struct fixture *f, const struct efs_s3_auth_request *rq, int64_t now_s,
			   int status, const char *code)
{
	struct efs_s3_principal p;
	struct efs_s3_auth_error err;
	int r = verify_at(f, rq, now_s, &p, &err);
	if (r != -EACCES || err.http_status != status || strcmp(err.code, code) != 0)
		fail_msg("expected %d %s, got r=%d %d %s (%s)", status, code, r, err.http_status,
			 err.code ? err.code : "-", err.message ? err.message : "-");
	assert_non_null(err.message);
}

/* A copy of @v's headers with header @name's value replaced by @value
 * (added when absent; removed when @value is NULL). */
struct headers_copy {
	struct efs_sigv4_header h[16];
	size_t n;
};
static struct efs_s3_auth_request with_header(const struct vector *v, struct headers_copy *c,
					      const char *name, const char *value)
{
	bool seen = false;
	c->n = 0;
	for (size_t i = 0; i < v->header_count; i++) {
		if (strcasecmp(v->headers[i].name, name) == 0) {
			seen = true;
			if (!value)
				continue;
			c->h[c->n++] = (struct efs_sigv4_header){v->headers[i].name, value};
		} else {
			c->h[c->n++] = v->headers[i];
		}
	}
	if (!seen && value)
		c->h[c->n++] = (struct efs_sigv4_header){name, value};
	struct efs_s3_auth_request rq = request_of(v);
	rq.headers = c->h;
	rq.header_count = c->n;
	return rq;
}

static const char *header_of(const struct vector *v, const char *name)
{
	for (size_t i = 0; i < v->header_count; i++)
		if (strcasecmp(v->headers[i].name, name) == 0)
			return v->headers[i].value;
	return NULL;
}

/* ---- header-signed requests ---- */

static void test_good_header_request(void **state)
{
	struct fixture *f = *state;
	struct efs_s3_auth_request rq = request_of(&put_signed);
	struct efs_s3_principal p;
	struct efs_s3_auth_error err;
	char body_sha[EFS_SHA256_HEX_LEN + 1];

	assert_int_equal(verify_at(f, &rq, f->t0, &p, &err), 0);
	assert_string_equal(p.owner, OWNER);
	assert_string_equal(p.access_key_id, VEC_KEY_ID);
	assert_int_equal(p.payload, EFS_S3_PAYLOAD_SIGNED);
	efs_sha256_hex(put_signed.body, put_signed.body_len, body_sha);
	assert_string_equal(p.payload_sha256, body_sha);
	assert_true(p.decoded_length == -1);

	/* again: from the signing-key cache, the same answer */
	assert_int_equal(verify_at(f, &rq, f->t0 + 1, &p, &err), 0);
	assert_string_equal(p.owner, OWNER);

	/* an unsigned payload, and a query string (list v2 with a delimiter) */
	rq = request_of(&get_unsigned);
	assert_int_equal(verify_at(f, &rq, f->t0, &p, &err), 0);
	assert_int_equal(p.payload, EFS_S3_PAYLOAD_UNSIGNED);
	assert_string_equal(p.payload_sha256, "");
}

static void test_bad_signature(void **state)
{
	struct fixture *f = *state;
	struct headers_copy c;
	char authz[1024];

	/* the signature's last digit changed */
	efs_strlcpy(authz, header_of(&put_signed, "Authorization"), sizeof(authz));
	size_t n = strlen(authz);
	authz[n - 1] = authz[n - 1] == '0' ? '1' : '0';
	struct efs_s3_auth_request rq = with_header(&put_signed, &c, "Authorization", authz);
	expect_refused(f, &rq, f->t0, 403, "SignatureDoesNotMatch");

	/* a signed header changed */
	rq = with_header(&put_signed, &c, "Content-Type", "text/html");
	expect_refused(f, &rq, f->t0, 403, "SignatureDoesNotMatch");

	/* the payload hash changed (another body) */
	rq = with_header(&put_signed, &c, "X-Amz-Content-SHA256", EFS_SIGV4_EMPTY_SHA256);
	expect_refused(f, &rq, f->t0, 403, "SignatureDoesNotMatch");

	/* another path, another query */
	rq = request_of(&put_signed);
	rq.path = "/bucket/dir/my%20key%2B2.txt";
	expect_refused(f, &rq, f->t0, 403, "SignatureDoesNotMatch");
	rq = request_of(&get_unsigned);
	rq.query = "list-type=2&prefix=a%2Fc&delimiter=%2F";
	expect_refused(f, &rq, f->t0, 403, "SignatureDoesNotMatch");
	rq = request_of(&get_unsigned);
	rq.method = "DELETE";
	expect_refused(f, &rq, f->t0, 403, "SignatureDoesNotMatch");

	/* a signed header missing */
	rq = with_header(&put_signed, &c, "Content-Type", NULL);
	expect_refused(f, &rq, f->t0, 403, "SignatureDoesNotMatch");

	/* the right key id with another secret: a key stored for "bob" signs nothing of alice's */
	rq = with_header(
	    &put_signed, &c, "Authorization",
	    "AWS4-HMAC-SHA256 Credential=" VEC_KEY_ID
	    "/20261203/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, "
	    "Signature=0000000000000000000000000000000000000000000000000000000000000000");
	expect_refused(f, &rq, f->t0, 403, "SignatureDoesNotMatch");
}

static void test_unknown_key(void **state)
{
	struct fixture *f = *state;
	struct headers_copy c;
	struct efs_s3_auth_request rq = request_of(&unknown_key);
	expect_refused(f, &rq, f->t0, 403, "InvalidAccessKeyId");

	/* not of our shape (an AWS key id): refused before any lookup */
	char authz[1024];
	efs_strlcpy(authz, header_of(&unknown_key, "Authorization"), sizeof(authz));
	memcpy(strstr(authz, "EKNOSUCHKEY"), "AKIAIOSFODNN7EXAMPLE", 20);
	rq = with_header(&unknown_key, &c, "Authorization", authz);
	expect_refused(f, &rq, f->t0, 403, "InvalidAccessKeyId");
}

static void test_deleted_key_stops_working(void **state)
{
	struct fixture *f = *state;
	struct efs_s3_auth_request rq = request_of(&put_signed);
	struct efs_s3_principal p;
	struct efs_s3_auth_error err;

	assert_int_equal(verify_at(f, &rq, f->t0, &p, &err), 0); /* cached now */
	assert_int_equal(efs_meta_key_delete(f->meta, VEC_KEY_ID, OWNER), 0);
	/* once the cached entry is older than its TTL, the store is asked again */
	expect_refused(f, &rq, f->t0 + EFS_S3_AUTH_CACHE_TTL_S, 403, "InvalidAccessKeyId");
}

static void test_skewed_clock(void **state)
{
	struct fixture *f = *state;
	struct efs_s3_auth_request rq = request_of(&put_signed);
	struct efs_s3_principal p;
	struct efs_s3_auth_error err;

	assert_int_equal(verify_at(f, &rq, f->t0 + 15 * 60, &p, &err), 0);
	assert_int_equal(verify_at(f, &rq, f->t0 - 15 * 60, &p, &err), 0);
	expect_refused(f, &rq, f->t0 + 15 * 60 + 1, 403, "RequestTimeTooSkewed");
	expect_refused(f, &rq, f->t0 - 15 * 60 - 1, 403, "RequestTimeTooSkewed");
	expect_refused(f, &rq, f->t0 + 86400, 403, "RequestTimeTooSkewed");

	/* no x-amz-date at all */
	struct headers_copy c;
	rq = with_header(&put_signed, &c, "X-Amz-Date", NULL);
	expect_refused(f, &rq, f->t0, 403, "AccessDenied");
}

static void test_wrong_region(void **state)
{
	struct fixture *f = *state;
	struct efs_s3_auth_request rq = request_of(&wrong_region);
	struct efs_s3_principal p;
	struct efs_s3_auth_error err;

	expect_refused(f, &rq, f->t0, 400, "AuthorizationHeaderMalformed");
	assert_int_equal(verify_at(f, &rq, f->t0, &p, &err), -EACCES);
	assert_non_null(err.region);
	assert_string_equal(err.region, "us-east-1");
	assert_non_null(strstr(err.message, "'eu-west-1' is wrong; expecting 'us-east-1'"));

	/* a server in eu-west-1 takes it (and refuses us-east-1's) */
	struct efs_s3_auth *eu = NULL;
	struct efs_s3_auth_deps deps = {.meta = f->meta, .region = "eu-west-1", .seal = &f->seal};
	assert_int_equal(efs_s3_auth_new(&deps, &eu), 0);
	memset(&err, 0, sizeof(err));
	assert_int_equal(efs_s3_auth_verify(eu, &rq, f->t0, &p, &err), 0);
	rq = request_of(&put_signed);
	assert_int_equal(efs_s3_auth_verify(eu, &rq, f->t0, &p, &err), -EACCES);
	assert_string_equal(err.code, "AuthorizationHeaderMalformed");
	efs_s3_auth_free(eu);
}

static void test_malformed_and_anonymous(void **state)
{
	struct fixture *f = *state;
	struct headers_copy c;

	/* anonymous: no Authorization, no X-Amz-Signature */
	struct efs_s3_auth_request rq = with_header(&put_signed, &c, "Authorization", NULL);
	expect_refused(f, &rq, f->t0, 403, "AccessDenied");

	/* x-amz-content-sha256 missing on a header-signed request (S3's answer) */
	rq = request_of(&no_content_sha);
	expect_refused(f, &rq, f->t0, 400, "InvalidRequest");
	rq = with_header(&put_signed, &c, "X-Amz-Content-SHA256", "not-a-hash");
	expect_refused(f, &rq, f->t0, 400, "InvalidArgument");
	/* a trailer without a -TRAILER payload mode */
	rq = with_header(&put_signed, &c, "X-Amz-Trailer", "x-amz-checksum-crc32");
	expect_refused(f, &rq, f->t0, 400, "InvalidArgument");

	/* a malformed Authorization header */
	rq = with_header(&put_signed, &c, "Authorization",
			 "AWS4-HMAC-SHA256 Credential=" VEC_KEY_ID "/20261203/us-east-1/s3");
	expect_refused(f, &rq, f->t0, 400, "AuthorizationHeaderMalformed");
	/* Signature Version 2 */
	rq = with_header(&put_signed, &c, "Authorization", "AWS " VEC_KEY_ID ":c2lnbmF0dXJl");
	expect_refused(f, &rq, f->t0, 400, "InvalidArgument");
	/* a session token: EchoFS keys have none */
	rq = with_header(&put_signed, &c, "X-Amz-Security-Token", "token");
	expect_refused(f, &rq, f->t0, 400, "InvalidToken");

	/* both mechanisms at once */
	rq = request_of(&presigned_get);
	struct efs_sigv4_header h[3] = {presigned_get.headers[0],
					{"Authorization", header_of(&put_signed, "Authorization")}};
	rq.headers = h;
	rq.header_count = 2;
	expect_refused(f, &rq, f->t0, 400, "InvalidArgument");

	/* a header-signed request with a query over the verifier's cap: not
	 * mistaken for a presigned one */
	static char long_query[EFS_SIGV4_MAX_QUERY + 64];
	memset(long_query, 'a', sizeof(long_query) - 1);
	memcpy(long_query, "prefix=", 7);
	rq = request_of(&get_unsigned);
	rq.query = long_query;
	expect_refused(f, &rq, f->t0, 400, "InvalidArgument");
	struct efs_s3_principal p;
	struct efs_s3_auth_error err;
	assert_int_equal(verify_at(f, &rq, f->t0, &p, &err), -EACCES);
	assert_non_null(strstr(err.message, "too large to verify"));
	rq.headers = h; /* and without Authorization: anonymous */
	rq.header_count = 1;
	expect_refused(f, &rq, f->t0, 403, "AccessDenied");

	/* a malformed presigned query */
	rq = request_of(&presigned_get);
	rq.query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00";
	expect_refused(f, &rq, f->t0, 400, "AuthorizationQueryParametersError");
}

/* ---- presigned URLs ---- */

static void test_good_presigned_get(void **state)
{
	struct fixture *f = *state;
	struct efs_s3_auth_request rq = request_of(&presigned_get);
	struct efs_s3_principal p;
	struct efs_s3_auth_error err;

	assert_int_equal(verify_at(f, &rq, f->t0, &p, &err), 0);
	assert_string_equal(p.owner, OWNER);
	assert_int_equal(p.payload, EFS_S3_PAYLOAD_UNSIGNED);
	/* valid until X-Amz-Expires (300 s) is over */
	assert_int_equal(verify_at(f, &rq, f->t0 + 300, &p, &err), 0);

	/* another object with the same query: the path is signed */
	rq.path = "/bucket/dir/a%20c.txt";
	expect_refused(f, &rq, f->t0, 403, "SignatureDoesNotMatch");
}

static void test_expired_presigned(void **state)
{
	struct fixture *f = *state;
	struct efs_s3_auth_request rq = request_of(&presigned_get);
	struct efs_s3_principal p;
	struct efs_s3_auth_error err;

	assert_int_equal(verify_at(f, &rq, f->t0 + 301, &p, &err), -EACCES);
	assert_int_equal(err.http_status, 403);
	assert_string_equal(err.code, "AccessDenied");
	assert_string_equal(err.message, "Request has expired");
	/* from the future */
	expect_refused(f, &rq, f->t0 - 16 * 60, 403, "AccessDenied");
	/* X-Amz-Expires lengthened by the holder: the signature covers it */
	char query[1024];
	efs_strlcpy(query, presigned_get.query, sizeof(query));
	char *e = strstr(query, "X-Amz-Expires=300");
	assert_non_null(e);
	memcpy(e, "X-Amz-Expires=900", 17);
	rq.query = query;
	expect_refused(f, &rq, f->t0 + 301, 403, "SignatureDoesNotMatch");
}

/* ---- aws-chunked ---- */

struct collected {
	char data[512];
	size_t len;
};

static int collect(void *ctx, const char *data, size_t len)
{
	struct collected *c = ctx;
	if (c->len + len > sizeof(c->data))
		return -E2BIG;
	memcpy(c->data + c->len, data, len);
	c->len += len;
	return 0;
}

static void stream_principal(struct fixture *f, struct efs_s3_principal *p)
{
	struct efs_s3_auth_request rq = request_of(&stream_put);
	struct efs_s3_auth_error err;
	assert_int_equal(verify_at(f, &rq, f->t0, p, &err), 0);
	assert_int_equal(p->payload, EFS_S3_PAYLOAD_STREAMING);
	assert_true(p->decoded_length == VEC_STREAM_DATA_LEN);
	assert_string_equal(p->amz_date, VEC_AMZ_DATE);
	assert_int_equal(strlen(p->seed_signature), EFS_SIGV4_SIGNATURE_LEN);
}

/* Feeds @len bytes of @body in pieces cut at @cut (one cut) or of @step
 * bytes (@cut == SIZE_MAX); returns the first error or finish's result. */
static int decode(const struct efs_s3_principal *p, const char *body, size_t len, size_t cut,
		  size_t step, struct collected *out)
{
	struct efs_s3_chunked *c = NULL;
	int r;
	memset(out, 0, sizeof(*out));
	assert_int_equal(efs_s3_chunked_new(p, &c), 0);
	if (cut != SIZE_MAX) {
		if ((r = efs_s3_chunked_feed(c, body, cut, collect, out)) == 0)
			r = efs_s3_chunked_feed(c, body + cut, len - cut, collect, out);
	} else {
		r = 0;
		for (size_t i = 0; i < len && r == 0; i += step)
			r = efs_s3_chunked_feed(c, body + i, len - i < step ? len - i : step,
						collect, out);
	}
	if (r == 0)
		r = efs_s3_chunked_finish(c);
	else
		assert_int_equal(efs_s3_chunked_finish(c), r); /* sticky */
	efs_s3_chunked_free(c);
	return r;
}

static void test_streaming_every_split(void **state)
{
	struct fixture *f = *state;
	struct efs_s3_principal p;
	struct collected out;
	stream_principal(f, &p);

	for (size_t cut = 0; cut <= stream_put.body_len; cut++) {
		int r = decode(&p, stream_put.body, stream_put.body_len, cut, 0, &out);
		if (r != 0)
			fail_msg("split at %zu: %d", cut, r);
		assert_int_equal(out.len, VEC_STREAM_DATA_LEN);
		assert_memory_equal(out.data, vec_stream_data, VEC_STREAM_DATA_LEN);
	}
	for (size_t step = 1; step <= 7; step++) {
		assert_int_equal(
		    decode(&p, stream_put.body, stream_put.body_len, SIZE_MAX, step, &out), 0);
		assert_memory_equal(out.data, vec_stream_data, VEC_STREAM_DATA_LEN);
	}
	efs_sigv4_key_wipe(&p.key);
}

static void test_streaming_tampered_chunk(void **state)
{
	struct fixture *f = *state;
	struct efs_s3_principal p;
	struct collected out;
	char body[512];
	stream_principal(f, &p);
	assert_true(stream_put.body_len <= sizeof(body));

	const char *first_data = strstr(stream_put.body, "\r\n") + 2;
	size_t data_at = (size_t)(first_data - stream_put.body);
	/* one byte of the first chunk's data, of the second's, a signature digit
	 * of each chunk (the final one included) */
	const char *sig2 = strstr(first_data, "chunk-signature=");
	const char *sig3 = strstr(sig2 + 1, "chunk-signature=");
	size_t flips[] = {data_at,
			  data_at + 63,
			  (size_t)(sig2 - stream_put.body) + 100,
			  (size_t)(sig2 - stream_put.body) + 20,
			  (size_t)(sig3 - stream_put.body) + 20,
			  16 + 3};
	for (size_t i = 0; i < sizeof(flips) / sizeof(flips[0]); i++) {
		memcpy(body, stream_put.body, stream_put.body_len);
		char *b = body + flips[i];
		*b = *b == '0' ? '1' : (*b >= 'a' && *b <= 'f') ? '0' : (char)(*b ^ 1);
		int r = decode(&p, body, stream_put.body_len, SIZE_MAX, 5, &out);
		if (r != -EACCES)
			fail_msg("byte %zu tampered: %d, expected -EACCES", flips[i], r);
	}

	/* chunks chained from another seed (the chain is checked) */
	struct efs_s3_principal other = p;
	memset(other.seed_signature, 'a', EFS_SIGV4_SIGNATURE_LEN);
	assert_int_equal(decode(&other, stream_put.body, stream_put.body_len, 0, 0, &out), -EACCES);
	/* the contract: a chunk's bytes reach the sink before its signature
	 * is checked (nothing is buffered); the caller discards them */
	assert_int_equal(out.len, 64);

	/* malformed framing: a header without CR, junk after the end */
	memcpy(body, stream_put.body, stream_put.body_len);
	body[data_at - 2] = ' ';
	assert_int_equal(decode(&p, body, stream_put.body_len, 0, 0, &out), -EINVAL);
	memcpy(body, stream_put.body, stream_put.body_len);
	body[stream_put.body_len] = 'x';
	assert_int_equal(decode(&p, body, stream_put.body_len + 1, 0, 0, &out), -EINVAL);
	/* a chunk over the cap */
	const char big[] = "1000001;chunk-signature="
			   "0000000000000000000000000000000000000000000000000000000000000000\r\n";
	assert_int_equal(decode(&p, big, sizeof(big) - 1, 0, 0, &out), -E2BIG);
	/* an endless header line */
	char line[EFS_S3_CHUNK_LINE_MAX + 8];
	memset(line, 'a', sizeof(line));
	assert_int_equal(decode(&p, line, sizeof(line), 0, 0, &out), -EINVAL);
	/* more bytes than x-amz-decoded-content-length */
	struct efs_s3_principal shorter = p;
	shorter.decoded_length = VEC_STREAM_DATA_LEN - 1;
	assert_int_equal(decode(&shorter, stream_put.body, stream_put.body_len, 0, 0, &out),
			 -EINVAL);
	efs_sigv4_key_wipe(&p.key);
}

static void test_streaming_truncated(void **state)
{
	struct fixture *f = *state;
	struct efs_s3_principal p;
	struct collected out;
	stream_principal(f, &p);

	for (size_t len = 0; len < stream_put.body_len; len++) {
		int r = decode(&p, stream_put.body, len, SIZE_MAX, 3, &out);
		if (r != -EINVAL)
			fail_msg("body cut to %zu bytes: %d, expected -EINVAL", len, r);
	}
	/* a body of fewer bytes than x-amz-decoded-content-length, well framed */
	struct efs_s3_principal longer = p;
	longer.decoded_length = VEC_STREAM_DATA_LEN + 1;
	assert_int_equal(decode(&longer, stream_put.body, stream_put.body_len, 0, 0, &out),
			 -EINVAL);
	/* a principal of another mode has no decoder */
	struct efs_s3_chunked *c = NULL;
	struct efs_s3_principal unsigned_p = p;
	unsigned_p.payload = EFS_S3_PAYLOAD_UNSIGNED;
	assert_int_equal(efs_s3_chunked_new(&unsigned_p, &c), -EINVAL);
	efs_sigv4_key_wipe(&p.key);
}

static void test_streaming_needs_decoded_length(void **state)
{
	struct fixture *f = *state;
	struct headers_copy c;
	/* not signed, but checked before the signature */
	struct efs_s3_auth_request rq =
	    with_header(&stream_put, &c, "X-Amz-Decoded-Content-Length", NULL);
	expect_refused(f, &rq, f->t0, 411, "MissingContentLength");
}

/* ---- aws-chunked with a trailer ---- */

#define TRAILER_DATA "0123456789"
#define TRAILER_SEED "1111111111111111111111111111111111111111111111111111111111111111"

/* A principal of a -TRAILER mode declaring x-amz-checksum-crc32, its key
 * derived here (the request's own signature is test_good_header_request's
 * business). */
static void trailer_principal(struct efs_s3_principal *p, bool chunk_signed)
{
	memset(p, 0, sizeof(*p));
	p->payload = EFS_S3_PAYLOAD_STREAMING;
	assert_int_equal(efs_sigv4_key_derive(&p->key, VEC_SECRET, "20261203", "us-east-1", "s3"),
			 0);
	efs_strlcpy(p->amz_date, VEC_AMZ_DATE, sizeof(p->amz_date));
	efs_strlcpy(p->seed_signature, TRAILER_SEED, sizeof(p->seed_signature));
	p->decoded_length = sizeof(TRAILER_DATA) - 1;
	p->chunk_signed = chunk_signed;
	p->trailer_mode = true;
	efs_strlcpy(p->trailer, "x-amz-checksum-crc32", sizeof(p->trailer));
}

/* Feeds @body whole and answers finish's result; the trailer's value into
 * @value (or "" when none). */
static int decode_trailer(const struct efs_s3_principal *p, const char *body, size_t len,
			  size_t cut, char *value, size_t value_size)
{
	struct efs_s3_chunked *c = NULL;
	struct collected out = {0};
	int r;
	assert_int_equal(efs_s3_chunked_new(p, &c), 0);
	if ((r = efs_s3_chunked_feed(c, body, cut, collect, &out)) == 0)
		r = efs_s3_chunked_feed(c, body + cut, len - cut, collect, &out);
	if (r == 0)
		r = efs_s3_chunked_finish(c);
	else
		assert_int_equal(efs_s3_chunked_finish(c), r);
	if (r == 0) {
		assert_int_equal(out.len, sizeof(TRAILER_DATA) - 1);
		assert_memory_equal(out.data, TRAILER_DATA, out.len);
	}
	const char *v = efs_s3_chunked_trailer(c);
	if (r != 0)
		assert_null(v); /* a trailer only from a body that decoded */
	efs_strlcpy(value, v ? v : "", value_size);
	efs_s3_chunked_free(c);
	return r;
}

static void test_trailer_unsigned(void **state)
{
	struct efs_s3_principal p;
	char value[80];
	trailer_principal(&p, false);
	static const char good[] =
	    "a\r\n" TRAILER_DATA "\r\n0\r\nx-amz-checksum-crc32:pbQ6Aw==\r\n\r\n";
	for (size_t cut = 0; cut < sizeof(good); cut++) {
		int r = decode_trailer(&p, good, sizeof(good) - 1, cut, value, sizeof(value));
		if (r != 0)
			fail_msg("split at %zu: %d", cut, r);
		assert_string_equal(value, "pbQ6Aw==");
	}
	/* the name in any case, blanks around the value */
	static const char spaced[] =
	    "a\r\n" TRAILER_DATA "\r\n0\r\nX-Amz-Checksum-CRC32: pbQ6Aw== \r\n\r\n";
	assert_int_equal(decode_trailer(&p, spaced, sizeof(spaced) - 1, 3, value, sizeof(value)),
			 0);
	assert_string_equal(value, "pbQ6Aw==");
	/* every prefix of the body is incomplete */
	for (size_t len = 0; len < sizeof(good) - 1; len++)
		assert_int_equal(decode_trailer(&p, good, len, 0, value, sizeof(value)), -EINVAL);

	static const char *const bad[] = {
	    /* the declared trailer missing, twice, another one, no colon, empty */
	    "a\r\n" TRAILER_DATA "\r\n0\r\n\r\n",
	    "a\r\n" TRAILER_DATA "\r\n0\r\nx-amz-checksum-crc32:AA==\r\nx-amz-checksum-crc32:AA=="
	    "\r\n\r\n",
	    "a\r\n" TRAILER_DATA "\r\n0\r\nx-amz-checksum-sha256:AA==\r\n\r\n",
	    "a\r\n" TRAILER_DATA "\r\n0\r\nx-amz-checksum-crc32\r\n\r\n",
	    "a\r\n" TRAILER_DATA "\r\n0\r\nx-amz-checksum-crc32: \r\n\r\n",
	    /* a trailer signature in unsigned mode */
	    "a\r\n" TRAILER_DATA "\r\n0\r\nx-amz-checksum-crc32:AA==\r\nx-amz-trailer-signature:"
	    "0000000000000000000000000000000000000000000000000000000000000000\r\n\r\n",
	    /* a signed chunk header in unsigned mode */
	    "a;chunk-signature="
	    "0000000000000000000000000000000000000000000000000000000000000000\r\n" TRAILER_DATA
	    "\r\n0\r\nx-amz-checksum-crc32:AA==\r\n\r\n",
	    /* a value over the cap, a bare LF, bytes after the end */
	    "a\r\n" TRAILER_DATA
	    "\r\n0\r\nx-amz-checksum-crc32:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n\r\n",
	    "a\r\n" TRAILER_DATA "\r\n0\r\nx-amz-checksum-crc32:AA==\n\r\n",
	    "a\r\n" TRAILER_DATA "\r\n0\r\nx-amz-checksum-crc32:AA==\r\n\r\nx",
	    /* well framed, with its trailer, but short of x-amz-decoded-content-length */
	    "9\r\n012345678\r\n0\r\nx-amz-checksum-crc32:AA==\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = decode_trailer(&p, bad[i], strlen(bad[i]), 1, value, sizeof(value));
		if (r != -EINVAL)
			fail_msg("body %zu: %d, expected -EINVAL", i, r);
	}
	/* a NUL in the trailer's name or value */
	static const char nul_value[] =
	    "a\r\n" TRAILER_DATA "\r\n0\r\nx-amz-checksum-crc32:\0A==\r\n\r\n";
	static const char nul_name[] =
	    "a\r\n" TRAILER_DATA "\r\n0\r\nx-amz-checksum-crc32\0x:AA==\r\n\r\n";
	assert_int_equal(
	    decode_trailer(&p, nul_value, sizeof(nul_value) - 1, 0, value, sizeof(value)), -EINVAL);
	assert_int_equal(
	    decode_trailer(&p, nul_name, sizeof(nul_name) - 1, 0, value, sizeof(value)), -EINVAL);
	/* a -TRAILER mode that declared none: an empty trailer */
	struct efs_s3_principal none = p;
	none.trailer[0] = '\0';
	assert_int_equal(decode_trailer(&none, bad[0], strlen(bad[0]), 0, value, sizeof(value)), 0);
	assert_string_equal(value, "");
	efs_sigv4_key_wipe(&p.key);
	efs_sigv4_key_wipe(&none.key);
}

/* The signed body of TRAILER_DATA in one chunk, with @trailer_line (as
 * sent) whose canonical form "x-amz-checksum-crc32:<value>\n" is signed,
 * then x-amz-trailer-signature (@signature_override when not NULL, none
 * when ""). */
static size_t signed_trailer_body(const struct efs_s3_principal *p, const char *value,
				  const char *signature_override, char *body, size_t size)
{
	char sig1[EFS_SIGV4_SIGNATURE_LEN + 1], sig2[EFS_SIGV4_SIGNATURE_LEN + 1];
	char tsig[EFS_SIGV4_SIGNATURE_LEN + 1], sha[EFS_SHA256_HEX_LEN + 1], canonical[128];
	efs_sha256_hex(TRAILER_DATA, sizeof(TRAILER_DATA) - 1, sha);
	assert_int_equal(
	    efs_sigv4_chunk_signature(&p->key, p->amz_date, p->seed_signature, sha, sig1), 0);
	assert_int_equal(
	    efs_sigv4_chunk_signature(&p->key, p->amz_date, sig1, EFS_SIGV4_EMPTY_SHA256, sig2), 0);
	int n = snprintf(canonical, sizeof(canonical), "x-amz-checksum-crc32:%s\n", value);
	efs_sha256_hex(canonical, (size_t)n, sha);
	assert_int_equal(efs_sigv4_trailer_signature(&p->key, p->amz_date, sig2, sha, tsig), 0);
	const char *s = signature_override ? signature_override : tsig;
	n = snprintf(body, size,
		     "a;chunk-signature=%s\r\n" TRAILER_DATA "\r\n0;chunk-signature=%s\r\n"
		     "x-amz-checksum-crc32:%s\r\n%s%s%s\r\n",
		     sig1, sig2, value, *s ? "x-amz-trailer-signature:" : "", s, *s ? "\r\n" : "");
	assert_true(n > 0 && (size_t)n < size);
	return (size_t)n;
}

static void test_trailer_signed(void **state)
{
	struct efs_s3_principal p;
	char body[512], value[80];
	trailer_principal(&p, true);
	size_t len = signed_trailer_body(&p, "pbQ6Aw==", NULL, body, sizeof(body));
	for (size_t cut = 0; cut <= len; cut++) {
		int r = decode_trailer(&p, body, len, cut, value, sizeof(value));
		if (r != 0)
			fail_msg("split at %zu: %d", cut, r);
		assert_string_equal(value, "pbQ6Aw==");
	}
	for (size_t l = 0; l < len; l++)
		assert_int_equal(decode_trailer(&p, body, l, 0, value, sizeof(value)), -EINVAL);
	/* the value changed after signing */
	char *v = strstr(body, "pbQ6Aw==");
	*v = 'q';
	assert_int_equal(decode_trailer(&p, body, len, 0, value, sizeof(value)), -EACCES);
	/* a wrong signature, none */
	len = signed_trailer_body(
	    &p, "pbQ6Aw==", "0000000000000000000000000000000000000000000000000000000000000000",
	    body, sizeof(body));
	assert_int_equal(decode_trailer(&p, body, len, 0, value, sizeof(value)), -EACCES);
	len = signed_trailer_body(&p, "pbQ6Aw==", "", body, sizeof(body));
	assert_int_equal(decode_trailer(&p, body, len, 0, value, sizeof(value)), -EACCES);
	/* a signature of the wrong length */
	len = signed_trailer_body(&p, "pbQ6Aw==", "00", body, sizeof(body));
	assert_int_equal(decode_trailer(&p, body, len, 0, value, sizeof(value)), -EINVAL);
	/* an unsigned chunk header in signed mode */
	static const char unsigned_body[] =
	    "a\r\n" TRAILER_DATA "\r\n0\r\nx-amz-checksum-crc32:AA==\r\n\r\n";
	assert_int_equal(
	    decode_trailer(&p, unsigned_body, sizeof(unsigned_body) - 1, 0, value, sizeof(value)),
	    -EINVAL);
	efs_sigv4_key_wipe(&p.key);
}

/* ---- the store and the sealing key ---- */

static void test_secret_sealed_with_another_key(void **state)
{
	struct fixture *f = *state;
	struct efs_keyseal other;
	struct efs_s3_auth *a = NULL;
	struct efs_s3_principal p;
	struct efs_s3_auth_error err;
	assert_int_equal(efs_keyseal_init_derive(&other, "another-jwt-secret"), 0);
	struct efs_s3_auth_deps deps = {.meta = f->meta, .region = NULL, .seal = &other};
	assert_int_equal(efs_s3_auth_new(&deps, &a), 0);
	struct efs_s3_auth_request rq = request_of(&put_signed);
	memset(&err, 0, sizeof(err));
	assert_int_equal(efs_s3_auth_verify(a, &rq, f->t0, &p, &err), -EIO);
	assert_int_equal(err.http_status, 500);
	assert_string_equal(err.code, "InternalError");
	efs_s3_auth_free(a);

	deps.region = "US_EAST";
	assert_int_equal(efs_s3_auth_new(&deps, &a), -EINVAL);
}

static void test_access_key_id_shape(void **state)
{
	(void)state;
	assert_true(efs_s3_access_key_id_valid("EKABCDEFGHIJ01234567"));
	assert_false(efs_s3_access_key_id_valid("EKABCDEFGHIJ0123456"));
	assert_false(efs_s3_access_key_id_valid("EKABCDEFGHIJ012345678"));
	assert_false(efs_s3_access_key_id_valid("AKABCDEFGHIJ01234567"));
	assert_false(efs_s3_access_key_id_valid("EKabcdefghij01234567"));
	assert_false(efs_s3_access_key_id_valid(NULL));
}

/* The checked-in vectors are what botocore makes (skipped without it). */
static void test_vectors_are_botocores(void **state)
{
	(void)state;
	if (access(VECTORS_SCRIPT, R_OK) != 0 || access(VECTORS_HEADER, R_OK) != 0) {
		print_message("%s not found (not run from the repository root): skipped\n",
			      VECTORS_SCRIPT);
		skip();
	}
	FILE *gen = popen("/usr/bin/python3 " VECTORS_SCRIPT " 2>/dev/null", "r");
	FILE *want = fopen(VECTORS_HEADER, "r");
	assert_non_null(gen);
	assert_non_null(want);
	char a[4096], b[4096];
	size_t lines = 0;
	bool differ = false;
	while (fgets(a, sizeof(a), gen)) {
		lines++;
		if (lines == 2)
			continue; /* names botocore's version */
		if (!fgets(b, sizeof(b), want) || strcmp(a, b) != 0) {
			differ = true;
			break;
		}
		if (lines == 1 && !fgets(b, sizeof(b), want))
			differ = true;
	}
	int status = pclose(gen);
	fclose(want);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
		print_message("python3-botocore not installed: skipped\n");
		skip();
	}
	assert_int_equal(status, 0);
	if (differ)
		fail_msg("%s differs from what %s prints now (line %zu): regenerate it",
			 VECTORS_HEADER, VECTORS_SCRIPT, lines);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_good_header_request, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_signature, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_key, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deleted_key_stops_working, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_skewed_clock, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_region, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_malformed_and_anonymous, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_good_presigned_get, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_expired_presigned, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_streaming_every_split, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_streaming_tampered_chunk, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_streaming_truncated, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_streaming_needs_decoded_length, setup, teardown),
	    cmocka_unit_test(test_trailer_unsigned),
	    cmocka_unit_test(test_trailer_signed),
	    cmocka_unit_test_setup_teardown(test_secret_sealed_with_another_key, setup, teardown),
	    cmocka_unit_test(test_access_key_id_shape),
	    cmocka_unit_test(test_vectors_are_botocores),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
