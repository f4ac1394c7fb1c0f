/* SPDX-License-Identifier: MIT */
/* test_sigv4.c - unit tests of AWS Signature Version 4
 * (include/echofs/sigv4.h), against published vectors:
 *
 * 1. AWS's SigV4 test suite (the "aws-sig-v4-test-suite", 2015-08-30,
 *    AKIDEXAMPLE, region us-east-1, service "service"), once in the AWS
 *    General Reference; the requests (.req) and expected Authorization
 *    values (.authz) are copied inline below, in the suite's own .req text
 *    form, from the copies vendored by aws/aws-sdk-js-v3
 *    (packages/signature-v4/src/suite.fixture.ts) and awslabs/aws-c-auth
 *    (tests/aws-signing-test-suite/v4), and a few canonical requests
 *    (.creq) to show where a difference would be.
 * 2. The S3 API reference, "Examples: Signature Calculations in AWS
 *    Signature Version 4" (GET object with a range, PUT object, GET bucket
 *    lifecycle, list objects), "Authenticating Requests: Using Query
 *    Parameters" (the presigned URL, AKIAIOSFODNN7EXAMPLE, 20130524) and
 *    "Signature Calculations for the Authorization Header: Transferring
 *    Payload in Multiple Chunks" (the aws-chunked seed and chunk
 *    signatures).
 * 3. The IAM signing-key example of "Create a signed AWS API request".
 * 4. botocore, when installed: tests/unit/sigv4_botocore.py prints its
 *    signatures of four requests and test_matches_botocore compares (skipped
 *    without python3-botocore).
 *
 * Then the verifying side: the parsers' strictness and reasons, verify()
 * on what sign() made, tampering detected, caps enforced.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "echofs/sigv4.h"
#include "echofs/util.h"

#include <sys/wait.h>
#include <unistd.h>

#define SUITE_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_DATE "20150830T123600Z"
#define SUITE_AUTHZ                                                                                \
	"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
#define S3_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define S3_KEY_ID "AKIAIOSFODNN7EXAMPLE"
#define S3_DATE "20130524T000000Z"
#define S3_CREDENTIAL                                                                              \
	"AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"

/* ---- a request in the test suite's .req form ---- */

#define MAX_TEST_HEADERS 16

struct parsed_req {
	char text[4096]; /* the .req copied and cut in place */
	char method[16];
	char *path;
	char *query;
	struct efs_sigv4_header headers[MAX_TEST_HEADERS];
	size_t header_count;
	char payload_hash[EFS_SHA256_HEX_LEN + 1];
	struct efs_sigv4_request req;
};

/* Parses "METHOD target HTTP/1.1\nName:value\n...\n\nbody" as the suite's
 * files are written: a line starting with a space continues the previous
 * header with another value (get-header-value-multiline), which the
 * canonical form joins with a comma like a repeated header. */
static void parse_req(struct parsed_req *p, const char *text)
{
	memset(p, 0, sizeof(*p));
	assert_true(strlen(text) < sizeof(p->text));
	efs_strlcpy(p->text, text, sizeof(p->text));

	char *line_end = strchr(p->text, '\n');
	assert_non_null(line_end);
	*line_end = '\0';
	char *sp1 = strchr(p->text, ' ');
	char *sp2 = strrchr(p->text, ' '); /* before HTTP/1.1: the target may hold spaces */
	assert_true(sp1 && sp2 && sp2 > sp1);
	*sp1 = '\0';
	*sp2 = '\0';
	efs_strlcpy(p->method, p->text, sizeof(p->method));
	p->path = sp1 + 1;
	char *q = strchr(p->path, '?');
	if (q) {
		*q = '\0';
		p->query = q + 1;
	}

	char *line = line_end + 1;
	const char *body = "";
	const char *last_name = NULL;
	while (*line) {
		char *end = strchr(line, '\n');
		if (end)
			*end = '\0';
		if (*line == '\0') { /* the blank line: the body follows */
			body = end ? end + 1 : "";
			break;
		}
		assert_true(p->header_count < MAX_TEST_HEADERS);
		struct efs_sigv4_header *h = &p->headers[p->header_count++];
		if (*line == ' ' || *line == '\t') {
			assert_non_null(last_name);
			h->name = last_name;
			h->value = line;
		} else {
			char *colon = strchr(line, ':');
			assert_non_null(colon);
			*colon = '\0';
			h->name = line;
			h->value = colon + 1;
			last_name = line;
		}
		if (!end)
			break;
		line = end + 1;
	}
	efs_sha256_hex(body, strlen(body), p->payload_hash);
	p->req = (struct efs_sigv4_request){
	    .method = p->method,
	    .path = p->path,
	    .query = p->query,
	    .headers = p->headers,
	    .header_count = p->header_count,
	    .payload_hash = p->payload_hash,
	};
}

static void suite_key(struct efs_sigv4_key *key)
{
	assert_int_equal(
	    efs_sigv4_key_derive(key, SUITE_SECRET, SUITE_DATE, "us-east-1", "service"), 0);
}

static void expect_authorization(const struct efs_sigv4_request *req, const char *key_id,
				 const struct efs_sigv4_key *key, const char *amz_date,
				 const char *expected)
{
	struct efs_buf out;
	efs_buf_init(&out, 4096);
	int r = efs_sigv4_authorization(req, key_id, amz_date, key, &out, NULL);
	if (r != 0)
		fail_msg("authorization failed: %d", r);
	assert_string_equal(out.data, expected);
	efs_buf_release(&out);
}

static void expect_canonical(const struct efs_sigv4_request *req, const char *expected)
{
	struct efs_buf out;
	const char *reason = NULL;
	efs_buf_init(&out, EFS_SIGV4_MAX_CANONICAL);
	int r = efs_sigv4_canonical_request(req, &out, &reason);
	if (r != 0)
		fail_msg("canonical request failed: %d (%s)", r, reason ? reason : "");
	assert_string_equal(out.data, expected);
	efs_buf_release(&out);
}

/* ---- 1. AWS's SigV4 test suite ---- */

struct suite_case {
	const char *name;
	const char *req;
	const char *authz; /* after SUITE_AUTHZ */
};

#define HOST "Host:example.amazonaws.com\n"
#define XDATE "X-Amz-Date:20150830T123600Z\n"
#define VANILLA                                                                                    \
	"SignedHeaders=host;x-amz-date, "                                                          \
	"Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"

static const struct suite_case suite[] = {
    {"get-vanilla", "GET / HTTP/1.1\n" HOST XDATE "\n", VANILLA},
    {"get-vanilla-query", "GET / HTTP/1.1\n" HOST XDATE "\n", VANILLA},
    {"get-vanilla-empty-query-key", "GET /?Param1=value1 HTTP/1.1\n" HOST XDATE "\n",
     "SignedHeaders=host;x-amz-date, "
     "Signature=a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"},
    {"get-vanilla-query-order-key-case",
     "GET /?Param2=value2&Param1=value1 HTTP/1.1\n" HOST XDATE "\n",
     "SignedHeaders=host;x-amz-date, "
     "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
    {"get-vanilla-query-unreserved",
     "GET /?-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
     "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz HTTP/1.1\n" HOST XDATE
     "\n",
     "SignedHeaders=host;x-amz-date, "
     "Signature=9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"},
    {"get-vanilla-utf8-query", "GET /?\xe1\x88\xb4=bar HTTP/1.1\n" HOST XDATE "\n",
     "SignedHeaders=host;x-amz-date, "
     "Signature=2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"},
    {"get-unreserved",
     "GET /-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz HTTP/1.1\n" HOST XDATE
     "\n",
     "SignedHeaders=host;x-amz-date, "
     "Signature=07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"},
    {"get-utf8", "GET /\xe1\x88\xb4 HTTP/1.1\n" HOST XDATE "\n",
     "SignedHeaders=host;x-amz-date, "
     "Signature=8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"},
    {"get-space", "GET /example space/ HTTP/1.1\n" HOST XDATE "\n",
     "SignedHeaders=host;x-amz-date, "
     "Signature=652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"},
    {"get-slash", "GET // HTTP/1.1\n" HOST XDATE "\n", VANILLA},
    {"get-slash-dot-slash", "GET /./ HTTP/1.1\n" HOST XDATE "\n", VANILLA},
    {"get-slash-pointless-dot", "GET /./example HTTP/1.1\n" HOST XDATE "\n",
     "SignedHeaders=host;x-amz-date, "
     "Signature=ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5"},
    {"get-slashes", "GET //example// HTTP/1.1\n" HOST XDATE "\n",
     "SignedHeaders=host;x-amz-date, "
     "Signature=9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84"},
    {"get-relative", "GET /example/.. HTTP/1.1\n" HOST XDATE "\n", VANILLA},
    {"get-relative-relative", "GET /example1/example2/../.. HTTP/1.1\n" HOST XDATE "\n", VANILLA},
    {"get-header-key-duplicate",
     "GET / HTTP/1.1\n" HOST "My-Header1:value2\nMy-Header1:value2\nMy-Header1:value1\n" XDATE "\n",
     "SignedHeaders=host;my-header1;x-amz-date, "
     "Signature=c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"},
    {"get-header-value-multiline",
     "GET / HTTP/1.1\n" HOST "My-Header1:value1\n  value2\n     value3\n" XDATE "\n",
     "SignedHeaders=host;my-header1;x-amz-date, "
     "Signature=ba17b383a53190154eb5fa66a1b836cc297cc0a3d70a5d00705980573d8ff790"},
    {"get-header-value-order",
     "GET / HTTP/1.1\n" HOST
     "My-Header1:value4\nMy-Header1:value1\nMy-Header1:value3\nMy-Header1:value2\n" XDATE "\n",
     "SignedHeaders=host;my-header1;x-amz-date, "
     "Signature=08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01"},
    {"get-header-value-trim",
     "GET / HTTP/1.1\n" HOST "My-Header1: value1\nMy-Header2: \"a   b   c\"\n" XDATE "\n",
     "SignedHeaders=host;my-header1;my-header2;x-amz-date, "
     "Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"},
    {"post-header-key-case", "POST / HTTP/1.1\n" HOST XDATE "\n",
     "SignedHeaders=host;x-amz-date, "
     "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
    {"post-header-key-sort", "POST / HTTP/1.1\n" HOST "My-Header1:value1\n" XDATE "\n",
     "SignedHeaders=host;my-header1;x-amz-date, "
     "Signature=c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c"},
    {"post-header-value-case", "POST / HTTP/1.1\n" HOST "My-Header1:VALUE1\n" XDATE "\n",
     "SignedHeaders=host;my-header1;x-amz-date, "
     "Signature=cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"},
    {"post-vanilla", "POST / HTTP/1.1\n" HOST XDATE "\n",
     "SignedHeaders=host;x-amz-date, "
     "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
    {"post-vanilla-empty-query-value", "POST /?Param1=value1 HTTP/1.1\n" HOST XDATE "\n",
     "SignedHeaders=host;x-amz-date, "
     "Signature=28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"},
    {"post-vanilla-query", "POST /?Param1=value1 HTTP/1.1\n" HOST XDATE "\n",
     "SignedHeaders=host;x-amz-date, "
     "Signature=28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"},
    {"post-x-www-form-urlencoded",
     "POST / HTTP/1.1\nContent-Type:application/x-www-form-urlencoded\n" HOST XDATE
     "\nParam1=value1",
     "SignedHeaders=content-type;host;x-amz-date, "
     "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"},
    {"post-x-www-form-urlencoded-parameters",
     "POST / HTTP/1.1\nContent-Type:application/x-www-form-urlencoded; charset=utf8\n" HOST XDATE
     "\nParam1=value1",
     "SignedHeaders=content-type;host;x-amz-date, "
     "Signature=1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe"},
    {"post-sts-token/post-sts-header-before",
     "POST / HTTP/1.1\n" HOST XDATE "X-Amz-Security-Token:AQoDYXdzEPT//////////"
     "wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthA"
     "x7mSEI/qkPpKPi/"
     "kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHN"
     "VXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+"
     "scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==\n\n",
     "SignedHeaders=host;x-amz-date;x-amz-security-token, "
     "Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"},
};

static void test_aws_test_suite(void **state)
{
	struct efs_sigv4_key key;
	char expected[512];
	suite_key(&key);
	for (size_t i = 0; i < EFS_ARRAY_SIZE(suite); i++) {
		struct parsed_req p;
		parse_req(&p, suite[i].req);
		snprintf(expected, sizeof(expected), SUITE_AUTHZ "%s", suite[i].authz);
		struct efs_buf out;
		efs_buf_init(&out, 4096);
		int r =
		    efs_sigv4_authorization(&p.req, "AKIDEXAMPLE", SUITE_DATE, &key, &out, NULL);
		if (r != 0 || strcmp(out.data, expected) != 0)
			fail_msg("%s: got %d \"%s\"\nwant \"%s\"", suite[i].name, r,
				 out.data ? out.data : "", expected);
		efs_buf_release(&out);
	}
}

/* The suite's .creq files for the cases that exercise each rule. */
static void test_aws_test_suite_canonical_requests(void **state)
{
	struct parsed_req p;
	parse_req(&p, "GET //example// HTTP/1.1\n" HOST XDATE "\n");
	expect_canonical(&p.req,
			 "GET\n/example/\n\nhost:example.amazonaws.com\n"
			 "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EFS_SIGV4_EMPTY_SHA256);
	parse_req(&p, "GET /example space/ HTTP/1.1\n" HOST XDATE "\n");
	expect_canonical(&p.req,
			 "GET\n/example%20space/\n\nhost:example.amazonaws.com\n"
			 "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EFS_SIGV4_EMPTY_SHA256);
	parse_req(&p, "GET /?Param2=value2&Param1=value1 HTTP/1.1\n" HOST XDATE "\n");
	expect_canonical(&p.req,
			 "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\n"
			 "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EFS_SIGV4_EMPTY_SHA256);
	parse_req(&p, "GET / HTTP/1.1\n" HOST
		      "My-Header1: value1\nMy-Header2: \"a   b   c\"\n" XDATE "\n");
	expect_canonical(&p.req, "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\n"
				 "my-header2:\"a b c\"\nx-amz-date:20150830T123600Z\n\n"
				 "host;my-header1;my-header2;x-amz-date\n" EFS_SIGV4_EMPTY_SHA256);
	parse_req(&p,
		  "GET / HTTP/1.1\n" HOST "My-Header1:value1\n  value2\n     value3\n" XDATE "\n");
	expect_canonical(
	    &p.req,
	    "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1,value2,value3\n"
	    "x-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n" EFS_SIGV4_EMPTY_SHA256);
	parse_req(&p, "POST / HTTP/1.1\nContent-Type:application/x-www-form-urlencoded\n" HOST XDATE
		      "\nParam1=value1");
	expect_canonical(&p.req,
			 "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\n"
			 "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
			 "content-type;host;x-amz-date\n"
			 "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e");
}

/* post-vanilla-query-nonunreserved: the query built from its decoded pairs
 * with efs_sigv4_uri_encode, as a client builds a URL. */
static void test_aws_test_suite_query_nonunreserved(void **state)
{
	struct efs_sigv4_key key;
	struct efs_buf query;
	struct parsed_req p;
	const char *n1 = "@#$%^", *n2 = "+", *v2 = "/,?><`\";:\\|][{}";

	suite_key(&key);
	efs_buf_init(&query, 1024);
	assert_int_equal(efs_sigv4_uri_encode(&query, n1, strlen(n1), false), 0);
	assert_int_equal(efs_buf_puts(&query, "=&"), 0);
	assert_int_equal(efs_sigv4_uri_encode(&query, n2, strlen(n2), false), 0);
	assert_int_equal(efs_buf_puts(&query, "="), 0);
	assert_int_equal(efs_sigv4_uri_encode(&query, v2, strlen(v2), false), 0);
	assert_string_equal(query.data,
			    "%40%23%24%25%5E=&%2B=%2F%2C%3F%3E%3C%60%22%3B%3A%5C%7C%5D%5B%7B%7D");

	parse_req(&p, "POST / HTTP/1.1\n" HOST XDATE "\n");
	p.req.query = query.data;
	expect_authorization(&p.req, "AKIDEXAMPLE", &key, SUITE_DATE,
			     SUITE_AUTHZ
			     "SignedHeaders=host;x-amz-date, Signature="
			     "66c82657c86e26fb25238d0e69f011edc4c6df5ae71119d7cb98ed9b87393c1e");
	efs_buf_release(&query);
}

/* post-sts-header-after: the token is sent but added after signing, so a
 * verifier signs only what SignedHeaders lists. */
static void test_aws_test_suite_sts_header_after(void **state)
{
	struct efs_sigv4_key key;
	char sig[EFS_SIGV4_SIGNATURE_LEN + 1];
	struct parsed_req p;
	suite_key(&key);
	parse_req(&p, "POST / HTTP/1.1\n" HOST XDATE
		      "X-Amz-Security-Token:AQoDYXdzEPT//////////wEXAMPLE\n\n");
	p.req.signed_headers = "host;x-amz-date";
	assert_int_equal(efs_sigv4_signature(&p.req, SUITE_DATE, &key, sig, NULL), 0);
	assert_string_equal(sig,
			    "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
}

/* ---- 3. signing keys ---- */

static void test_signing_key_iam_example(void **state)
{
	struct efs_sigv4_key key;
	char hex[EFS_SHA256_HEX_LEN + 1];
	assert_int_equal(efs_sigv4_key_derive(&key, SUITE_SECRET, "20120215", "us-east-1", "iam"),
			 0);
	efs_hex_encode(key.key, sizeof(key.key), hex);
	assert_string_equal(hex,
			    "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
	assert_int_equal(efs_sigv4_key_derive(&key, SUITE_SECRET, SUITE_DATE, "us-east-1", "iam"),
			 0);
	efs_hex_encode(key.key, sizeof(key.key), hex);
	assert_string_equal(hex,
			    "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
	assert_true(efs_sigv4_key_matches(&key, "20150830", "us-east-1", "iam"));
	assert_true(efs_sigv4_key_matches(&key, SUITE_DATE, "us-east-1", "iam"));
	assert_false(efs_sigv4_key_matches(&key, "20150831", "us-east-1", "iam"));
	assert_false(efs_sigv4_key_matches(&key, "20150830", "eu-west-1", "iam"));
	assert_false(efs_sigv4_key_matches(&key, "20150830", "us-east-1", "s3"));
	efs_sigv4_key_wipe(&key);
	efs_sigv4_key_wipe(NULL);
}

static void test_signing_key_refuses_bad_scope(void **state)
{
	struct efs_sigv4_key key;
	memset(&key, 0x5a, sizeof(key));
	struct efs_sigv4_key before = key;
	assert_int_equal(efs_sigv4_key_derive(&key, SUITE_SECRET, "20150230", "us-east-1", "s3"),
			 -EINVAL);
	assert_int_equal(efs_sigv4_key_derive(&key, SUITE_SECRET, "2015083", "us-east-1", "s3"),
			 -EINVAL);
	assert_int_equal(efs_sigv4_key_derive(&key, SUITE_SECRET, "20150830X", "us-east-1", "s3"),
			 -EINVAL);
	assert_int_equal(efs_sigv4_key_derive(&key, SUITE_SECRET, "20150830", "US-EAST-1", "s3"),
			 -EINVAL);
	assert_int_equal(efs_sigv4_key_derive(&key, SUITE_SECRET, "20150830", "us/east", "s3"),
			 -EINVAL);
	assert_int_equal(efs_sigv4_key_derive(&key, SUITE_SECRET, "20150830", "", "s3"), -EINVAL);
	assert_int_equal(efs_sigv4_key_derive(&key, "", "20150830", "us-east-1", "s3"), -EINVAL);
	assert_int_equal(efs_sigv4_key_derive(&key, NULL, "20150830", "us-east-1", "s3"), -EINVAL);
	assert_memory_equal(&key, &before, sizeof(key));
}

static void test_amz_date(void **state)
{
	char out[EFS_SIGV4_AMZ_DATE_LEN + 1];
	int64_t t = -1;
	assert_int_equal(efs_sigv4_amz_date(1440938160, out), 0);
	assert_string_equal(out, SUITE_DATE);
	assert_int_equal(efs_sigv4_amz_date_parse(SUITE_DATE, &t), 0);
	assert_int_equal(t, 1440938160);
	assert_int_equal(efs_sigv4_amz_date_parse("20000229T235959Z", &t), 0);
	assert_int_equal(efs_sigv4_amz_date(t, out), 0);
	assert_string_equal(out, "20000229T235959Z");
	t = 7;
	assert_int_equal(efs_sigv4_amz_date_parse("19000229T000000Z", &t), -EINVAL);
	assert_int_equal(efs_sigv4_amz_date_parse("20150229T000000Z", &t), -EINVAL);
	assert_int_equal(efs_sigv4_amz_date_parse("20150830T240000Z", &t), -EINVAL);
	assert_int_equal(efs_sigv4_amz_date_parse("20150830T123600", &t), -EINVAL);
	assert_int_equal(efs_sigv4_amz_date_parse("20150830T123600ZZ", &t), -EINVAL);
	assert_int_equal(efs_sigv4_amz_date_parse("2015-08-30T12:36", &t), -EINVAL);
	assert_int_equal(efs_sigv4_amz_date_parse(NULL, &t), -EINVAL);
	assert_int_equal(t, 7);
	assert_int_equal(efs_sigv4_amz_date(-1, out), -EINVAL);
}

/* ---- 2. the S3 documentation's examples ---- */

static void s3_key(struct efs_sigv4_key *key)
{
	assert_int_equal(efs_sigv4_key_derive(key, S3_SECRET, "20130524", "us-east-1", "s3"), 0);
}

static void test_s3_get_object_with_range(void **state)
{
	struct efs_sigv4_key key;
	const struct efs_sigv4_header headers[] = {
	    {"Host", "examplebucket.s3.amazonaws.com"},
	    {"Range", "bytes=0-9"},
	    {"x-amz-content-sha256", EFS_SIGV4_EMPTY_SHA256},
	    {"x-amz-date", S3_DATE},
	};
	const struct efs_sigv4_request req = {
	    .method = "GET",
	    .path = "/test.txt",
	    .headers = headers,
	    .header_count = EFS_ARRAY_SIZE(headers),
	    .payload_hash = EFS_SIGV4_EMPTY_SHA256,
	    .flags = EFS_SIGV4_S3,
	};
	s3_key(&key);
	expect_canonical(
	    &req, "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
		  "x-amz-content-sha256:" EFS_SIGV4_EMPTY_SHA256 "\nx-amz-date:20130524T000000Z\n\n"
		  "host;range;x-amz-content-sha256;x-amz-date\n" EFS_SIGV4_EMPTY_SHA256);
	expect_authorization(
	    &req, S3_KEY_ID, &key, S3_DATE,
	    S3_CREDENTIAL
	    ", SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
	    "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

static void test_s3_put_object(void **state)
{
	struct efs_sigv4_key key;
	char body_hash[EFS_SHA256_HEX_LEN + 1];
	const char *body = "Welcome to Amazon S3.";
	efs_sha256_hex(body, strlen(body), body_hash);
	assert_string_equal(body_hash,
			    "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
	const struct efs_sigv4_header headers[] = {
	    {"Host", "examplebucket.s3.amazonaws.com"},
	    {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
	    {"x-amz-date", S3_DATE},
	    {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
	    {"x-amz-content-sha256", body_hash},
	};
	/* The key "test$file.text": S3 signs it encoded once, whether the
	 * client sent the '$' raw or as %24. */
	struct efs_sigv4_request req = {
	    .method = "PUT",
	    .path = "/test$file.text",
	    .headers = headers,
	    .header_count = EFS_ARRAY_SIZE(headers),
	    .payload_hash = body_hash,
	    .flags = EFS_SIGV4_S3,
	};
	const char *expected = S3_CREDENTIAL
	    ", SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, "
	    "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd";
	s3_key(&key);
	expect_authorization(&req, S3_KEY_ID, &key, S3_DATE, expected);
	req.path = "/test%24file.text";
	expect_authorization(&req, S3_KEY_ID, &key, S3_DATE, expected);
}

static void test_s3_get_bucket_lifecycle_and_list_objects(void **state)
{
	struct efs_sigv4_key key;
	const struct efs_sigv4_header headers[] = {
	    {"Host", "examplebucket.s3.amazonaws.com"},
	    {"x-amz-date", S3_DATE},
	    {"x-amz-content-sha256", EFS_SIGV4_EMPTY_SHA256},
	};
	struct efs_sigv4_request req = {
	    .method = "GET",
	    .path = "/",
	    .query = "lifecycle",
	    .headers = headers,
	    .header_count = EFS_ARRAY_SIZE(headers),
	    .payload_hash = EFS_SIGV4_EMPTY_SHA256,
	    .flags = EFS_SIGV4_S3,
	};
	s3_key(&key);
	expect_authorization(
	    &req, S3_KEY_ID, &key, S3_DATE,
	    S3_CREDENTIAL
	    ", SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
	    "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
	req.query = "max-keys=2&prefix=J";
	expect_authorization(
	    &req, S3_KEY_ID, &key, S3_DATE,
	    S3_CREDENTIAL
	    ", SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
	    "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
	/* The same query in another order signs the same. */
	req.query = "prefix=J&max-keys=2";
	expect_authorization(
	    &req, S3_KEY_ID, &key, S3_DATE,
	    S3_CREDENTIAL
	    ", SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
	    "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

#define PRESIGNED_QUERY                                                                            \
	"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-"  \
	"east-1%2Fs3%2Faws4_request"                                                               \
	"&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"                \
	"&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"

static const struct efs_sigv4_header presign_headers[] = {
    {"Host", "examplebucket.s3.amazonaws.com"}};

static void test_s3_presigned_url(void **state)
{
	struct efs_sigv4_key key;
	struct efs_buf out;
	const struct efs_sigv4_request req = {
	    .method = "GET",
	    .path = "/test.txt",
	    .headers = presign_headers,
	    .header_count = 1,
	    .payload_hash = EFS_SIGV4_UNSIGNED_PAYLOAD,
	    .flags = EFS_SIGV4_S3,
	};
	s3_key(&key);
	efs_buf_init(&out, 4096);
	assert_int_equal(efs_sigv4_presign(&req, S3_KEY_ID, NULL, S3_DATE, 86400, &key, &out), 0);
	assert_string_equal(out.data, PRESIGNED_QUERY);
	/* Out of range expiries. */
	assert_int_equal(efs_sigv4_presign(&req, S3_KEY_ID, NULL, S3_DATE, 0, &key, &out), -EINVAL);
	assert_int_equal(efs_sigv4_presign(&req, S3_KEY_ID, NULL, S3_DATE, 604801, &key, &out),
			 -EINVAL);
	assert_string_equal(out.data, PRESIGNED_QUERY);
	efs_buf_release(&out);
}

/* The server side of the same URL: parse, then verify; any change breaks it. */
static void test_s3_presigned_url_verifies(void **state)
{
	struct efs_sigv4_key key;
	struct efs_sigv4_auth auth;
	const char *reason = NULL;
	struct efs_sigv4_request req = {
	    .method = "GET",
	    .path = "/test.txt",
	    .query = PRESIGNED_QUERY,
	    .headers = presign_headers,
	    .header_count = 1,
	    .payload_hash = EFS_SIGV4_UNSIGNED_PAYLOAD,
	    .flags = EFS_SIGV4_S3 | EFS_SIGV4_PRESIGNED,
	};
	s3_key(&key);
	assert_int_equal(efs_sigv4_presigned_parse(PRESIGNED_QUERY, &auth, &reason), 0);
	assert_string_equal(auth.access_key_id, S3_KEY_ID);
	assert_string_equal(auth.date, "20130524");
	assert_string_equal(auth.region, "us-east-1");
	assert_string_equal(auth.service, "s3");
	assert_string_equal(auth.signed_headers, "host");
	assert_string_equal(auth.amz_date, S3_DATE);
	assert_int_equal(auth.expires_s, 86400);
	assert_false(auth.has_security_token);
	assert_int_equal(efs_sigv4_verify(&req, &auth, auth.amz_date, &key, &reason), 0);

	req.path = "/test2.txt";
	assert_int_equal(efs_sigv4_verify(&req, &auth, auth.amz_date, &key, &reason), -EACCES);
	assert_string_equal(reason, "signature does not match");
	req.path = "/test.txt";
	req.method = "PUT";
	assert_int_equal(efs_sigv4_verify(&req, &auth, auth.amz_date, &key, &reason), -EACCES);
	req.method = "GET";
	/* A parameter added to the URL after signing. */
	req.query = PRESIGNED_QUERY "&x-id=GetObject";
	assert_int_equal(efs_sigv4_verify(&req, &auth, auth.amz_date, &key, &reason), -EACCES);
	/* A key for another day is refused before any signing. */
	struct efs_sigv4_key other;
	assert_int_equal(efs_sigv4_key_derive(&other, S3_SECRET, "20130525", "us-east-1", "s3"), 0);
	req.query = PRESIGNED_QUERY;
	assert_int_equal(efs_sigv4_verify(&req, &auth, auth.amz_date, &other, &reason), -EINVAL);
	/* The wrong secret. */
	assert_int_equal(efs_sigv4_key_derive(&other, SUITE_SECRET, "20130524", "us-east-1", "s3"),
			 0);
	assert_int_equal(efs_sigv4_verify(&req, &auth, auth.amz_date, &other, &reason), -EACCES);
}

static void test_presign_with_session_token_round_trips(void **state)
{
	struct efs_sigv4_key key;
	struct efs_sigv4_auth auth;
	struct efs_buf out;
	const char *reason = NULL;
	struct efs_sigv4_request req = {
	    .method = "PUT",
	    .path = "/bucket/dir/a%20b.txt",
	    .query = "partNumber=1&uploadId=x%2By",
	    .headers = presign_headers,
	    .header_count = 1,
	    .payload_hash = EFS_SIGV4_UNSIGNED_PAYLOAD,
	    .flags = EFS_SIGV4_S3,
	};
	s3_key(&key);
	efs_buf_init(&out, 8192);
	assert_int_equal(efs_sigv4_presign(&req, S3_KEY_ID, "tok/en+==", S3_DATE, 900, &key, &out),
			 0);
	assert_non_null(strstr(out.data, "partNumber=1&uploadId=x%2By&X-Amz-Algorithm="));
	assert_non_null(
	    strstr(out.data, "&X-Amz-Security-Token=tok%2Fen%2B%3D%3D&X-Amz-Signature="));
	assert_int_equal(efs_sigv4_presigned_parse(out.data, &auth, &reason), 0);
	assert_true(auth.has_security_token);
	assert_int_equal(auth.expires_s, 900);
	req.query = out.data;
	req.flags |= EFS_SIGV4_PRESIGNED;
	assert_int_equal(efs_sigv4_verify(&req, &auth, auth.amz_date, &key, &reason), 0);
	efs_buf_release(&out);
}

/* "Transferring Payload in Multiple Chunks": 66560 bytes of 'a' in chunks of
 * 65536, 1024 and 0. */
static void test_s3_streaming_chunk_signatures(void **state)
{
	struct efs_sigv4_key key;
	char seed[EFS_SIGV4_SIGNATURE_LEN + 1], sig[EFS_SIGV4_SIGNATURE_LEN + 1];
	char hash[EFS_SHA256_HEX_LEN + 1];
	struct efs_buf out;
	const struct efs_sigv4_header headers[] = {
	    {"Host", "s3.amazonaws.com"},
	    {"x-amz-date", S3_DATE},
	    {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
	    {"Content-Encoding", "aws-chunked"},
	    {"x-amz-decoded-content-length", "66560"},
	    {"Content-Length", "66824"},
	    {"x-amz-content-sha256", EFS_SIGV4_STREAMING_PAYLOAD},
	};
	const struct efs_sigv4_request req = {
	    .method = "PUT",
	    .path = "/examplebucket/chunkObject.txt",
	    .headers = headers,
	    .header_count = EFS_ARRAY_SIZE(headers),
	    .payload_hash = EFS_SIGV4_STREAMING_PAYLOAD,
	    .flags = EFS_SIGV4_S3,
	};
	s3_key(&key);
	efs_buf_init(&out, 4096);
	assert_int_equal(efs_sigv4_authorization(&req, S3_KEY_ID, S3_DATE, &key, &out, seed), 0);
	assert_string_equal(out.data, S3_CREDENTIAL
			    ", SignedHeaders=content-encoding;content-length;host;"
			    "x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
			    "x-amz-storage-class, Signature="
			    "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9");
	assert_string_equal(seed,
			    "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9");
	efs_buf_release(&out);

	char *data = malloc(65536);
	assert_non_null(data);
	memset(data, 'a', 65536);
	efs_sha256_hex(data, 65536, hash);
	assert_int_equal(efs_sigv4_chunk_signature(&key, S3_DATE, seed, hash, sig), 0);
	assert_string_equal(sig,
			    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648");
	efs_sha256_hex(data, 1024, hash);
	assert_int_equal(efs_sigv4_chunk_signature(&key, S3_DATE, sig, hash, sig), 0);
	assert_string_equal(sig,
			    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497");
	assert_int_equal(efs_sigv4_chunk_signature(&key, S3_DATE, sig, EFS_SIGV4_EMPTY_SHA256, sig),
			 0);
	assert_string_equal(sig,
			    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9");
	free(data);

	/* Malformed inputs change nothing. */
	assert_int_equal(efs_sigv4_chunk_signature(&key, S3_DATE, "abc", hash, sig), -EINVAL);
	assert_int_equal(efs_sigv4_chunk_signature(&key, "20130525T000000Z", seed, hash, sig),
			 -EINVAL);
	assert_string_equal(sig,
			    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9");
}

/* The trailer's signature: the string to sign computed by hand (Python's
 * hmac) over the final chunk's signature of the S3 reference's example
 * above and the trailer "x-amz-checksum-crc32c:sOO8/Q==". */
static void test_s3_trailer_signature(void **state)
{
	struct efs_sigv4_key key;
	char sig[EFS_SIGV4_SIGNATURE_LEN + 1], hash[EFS_SHA256_HEX_LEN + 1];
	const char *final_chunk =
	    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9";
	const char trailer[] = "x-amz-checksum-crc32c:sOO8/Q==\n";
	s3_key(&key);
	efs_sha256_hex(trailer, sizeof(trailer) - 1, hash);
	assert_string_equal(hash,
			    "1e376db7e1a34a8ef1c4bcee131a2d60a1cb62503747488624e10995f448d774");
	assert_int_equal(efs_sigv4_trailer_signature(&key, S3_DATE, final_chunk, hash, sig), 0);
	assert_string_equal(sig,
			    "838d1eeafd0ec086f3e98ef47cfb73e3cf6fea3c489e22a61089fa643e8b4b61");
	/* not the chunk signature of the same inputs */
	char chunk_sig[EFS_SIGV4_SIGNATURE_LEN + 1];
	assert_int_equal(efs_sigv4_chunk_signature(&key, S3_DATE, final_chunk, hash, chunk_sig), 0);
	assert_string_not_equal(sig, chunk_sig);
	/* malformed inputs */
	assert_int_equal(efs_sigv4_trailer_signature(&key, S3_DATE, "abc", hash, sig), -EINVAL);
	assert_int_equal(efs_sigv4_trailer_signature(&key, S3_DATE, final_chunk, "ABC", sig),
			 -EINVAL);
	assert_int_equal(
	    efs_sigv4_trailer_signature(&key, "20130525T000000Z", final_chunk, hash, sig), -EINVAL);
}

static void test_unsigned_chunk_header_parse(void **state)
{
	uint64_t size = 7;
	const char *reason = NULL;
	assert_int_equal(efs_sigv4_chunk_header_parse("10000", 5, 1 << 20, &size, NULL, &reason),
			 0);
	assert_int_equal(size, 65536);
	assert_int_equal(efs_sigv4_chunk_header_parse("0", 1, 1 << 20, &size, NULL, &reason), 0);
	assert_int_equal(size, 0);
	static const char *const bad[] = {
	    "",
	    "x",
	    "10000;",
	    "10000 ",
	    "10000;chunk-signature="
	    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
	    "00000000000000010000",
	};
	for (size_t i = 0; i < EFS_ARRAY_SIZE(bad); i++) {
		size = 7;
		reason = NULL;
		if (efs_sigv4_chunk_header_parse(bad[i], strlen(bad[i]), 1 << 20, &size, NULL,
						 &reason) != -EINVAL)
			fail_msg("accepted \"%s\"", bad[i]);
		assert_non_null(reason);
		assert_int_equal(size, 7);
	}
	assert_int_equal(efs_sigv4_chunk_header_parse("10000", 5, 65535, &size, NULL, &reason),
			 -E2BIG);
}

static void test_chunk_header_parse(void **state)
{
	char sig[EFS_SIGV4_SIGNATURE_LEN + 1] = "untouched";
	uint64_t size = 7;
	const char *reason = NULL;
	const char *ok = "10000;chunk-signature="
			 "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648";
	assert_int_equal(efs_sigv4_chunk_header_parse(ok, strlen(ok), 1 << 20, &size, sig, &reason),
			 0);
	assert_int_equal(size, 65536);
	assert_string_equal(sig,
			    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648");

	static const char *const bad[] = {
	    ";chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
	    "10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a28864",
	    "10000;chunk-signature="
	    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a2886488",
	    "10000;chunk-signature="
	    "AD80C730A21E5B8D04586A2213DD63B9A0E99E0E2307B0ADE35A65485A288648",
	    "10000 "
	    ";chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
	    "10000;chunk-signaturE="
	    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
	    "00000000000000010000;chunk-signature="
	    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
	    "10000",
	    "",
	};
	for (size_t i = 0; i < EFS_ARRAY_SIZE(bad); i++) {
		reason = NULL;
		if (efs_sigv4_chunk_header_parse(bad[i], strlen(bad[i]), 1 << 20, &size, sig,
						 &reason) != -EINVAL)
			fail_msg("accepted \"%s\"", bad[i]);
		assert_non_null(reason);
	}
	/* Over the caller's cap. */
	assert_int_equal(efs_sigv4_chunk_header_parse(ok, strlen(ok), 65535, &size, sig, &reason),
			 -E2BIG);
	assert_int_equal(size, 65536);
	/* A NUL inside the line is not the end of it. */
	char with_nul[128];
	memcpy(with_nul, ok, strlen(ok));
	with_nul[30] = '\0';
	assert_int_equal(
	    efs_sigv4_chunk_header_parse(with_nul, strlen(ok), 1 << 20, &size, sig, &reason),
	    -EINVAL);
}

/* ---- the verifying side ---- */

static void test_auth_parse(void **state)
{
	struct efs_sigv4_auth auth;
	const char *reason = NULL;
	assert_int_equal(efs_sigv4_auth_parse(SUITE_AUTHZ VANILLA, &auth, &reason), 0);
	assert_string_equal(auth.access_key_id, "AKIDEXAMPLE");
	assert_string_equal(auth.date, "20150830");
	assert_string_equal(auth.region, "us-east-1");
	assert_string_equal(auth.service, "service");
	assert_string_equal(auth.signed_headers, "host;x-amz-date");
	assert_string_equal(auth.signature,
			    "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
	assert_string_equal(auth.amz_date, "");
	/* S3's documentation writes it without spaces; order is free. */
	assert_int_equal(
	    efs_sigv4_auth_parse(
		"AWS4-HMAC-SHA256 "
		"Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41,"
		"SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
		"Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request",
		&auth, &reason),
	    0);
	assert_string_equal(auth.service, "s3");
	assert_string_equal(auth.signed_headers, "host;range;x-amz-content-sha256;x-amz-date");
	/* "host" must be a whole name of the list, not the end of another. */
	assert_int_equal(
	    efs_sigv4_auth_parse(
		SUITE_AUTHZ
		"SignedHeaders=ahost;host, "
		"Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
		&auth, &reason),
	    0);
	assert_int_equal(
	    efs_sigv4_auth_parse(
		SUITE_AUTHZ
		"SignedHeaders=ahost;hosts, "
		"Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
		&auth, &reason),
	    -EINVAL);
	assert_string_equal(reason, "SignedHeaders does not include host");
}

static void test_auth_parse_refuses_with_a_reason(void **state)
{
#define CRED "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"
#define SH "SignedHeaders=host;x-amz-date"
#define SIG "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
	static const struct {
		const char *value, *reason;
	} bad[] = {
	    {"", "Authorization is not AWS4-HMAC-SHA256"},
	    {"AWS AKIDEXAMPLE:abc", "Authorization is not AWS4-HMAC-SHA256"},
	    {"AWS4-HMAC-SHA1 " CRED ", " SH ", " SIG, "Authorization is not AWS4-HMAC-SHA256"},
	    {"AWS4-HMAC-SHA256 " SH ", " SIG, "Authorization has no Credential"},
	    {"AWS4-HMAC-SHA256 " CRED ", " SIG, "Authorization has no SignedHeaders"},
	    {"AWS4-HMAC-SHA256 " CRED ", " SH, "Authorization has no Signature"},
	    {"AWS4-HMAC-SHA256 " CRED ", " CRED ", " SH ", " SIG,
	     "repeated Authorization component"},
	    {"AWS4-HMAC-SHA256 " CRED ", " SH ", " SIG ", Foo=bar",
	     "unknown Authorization component"},
	    {"AWS4-HMAC-SHA256 " CRED ", " SH ", " SIG ",", "trailing comma in Authorization"},
	    {"AWS4-HMAC-SHA256 " CRED " " SH ", " SIG,
	     "credential scope does not end in aws4_request"},
	    {"AWS4-HMAC-SHA256 " CRED ", " SH ", " SIG "0", "malformed Signature"},
	    {"AWS4-HMAC-SHA256 " CRED ", " SH
	     ", Signature=5FA00FA31553B73EBF1942676E86291E8372FF2A2260956D9B8AAE1D763FBF31",
	     "malformed Signature"},
	    {"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service, " SH ", " SIG,
	     "malformed Credential: too few parts"},
	    {"AWS4-HMAC-SHA256 "
	     "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request/x, " SH ", " SIG,
	     "malformed Credential: too many parts"},
	    {"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_reques, " SH
	     ", " SIG,
	     "credential scope does not end in aws4_request"},
	    {"AWS4-HMAC-SHA256 Credential=AKID EXAMPLE/20150830/us-east-1/service/aws4_request, " SH
	     ", " SIG,
	     "malformed access key id"},
	    {"AWS4-HMAC-SHA256 Credential=/20150830/us-east-1/service/aws4_request, " SH ", " SIG,
	     "malformed access key id"},
	    {"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20151330/us-east-1/service/aws4_request, " SH
	     ", " SIG,
	     "malformed credential date"},
	    {"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/US-east-1/service/aws4_request, " SH
	     ", " SIG,
	     "malformed credential region or service"},
	    {"AWS4-HMAC-SHA256 " CRED ", SignedHeaders=x-amz-date;host, " SIG,
	     "malformed SignedHeaders"},
	    {"AWS4-HMAC-SHA256 " CRED ", SignedHeaders=host;host, " SIG, "malformed SignedHeaders"},
	    {"AWS4-HMAC-SHA256 " CRED ", SignedHeaders=host;;x-amz-date, " SIG,
	     "malformed SignedHeaders"},
	    {"AWS4-HMAC-SHA256 " CRED ", SignedHeaders=Host;x-amz-date, " SIG,
	     "malformed SignedHeaders"},
	    {"AWS4-HMAC-SHA256 " CRED ", SignedHeaders=x-amz-date, " SIG,
	     "SignedHeaders does not include host"},
	    {"AWS4-HMAC-SHA256 " CRED ", SignedHeaders=, " SIG, "malformed SignedHeaders"},
	    {"AWS4-HMAC-SHA256 " CRED ", " SH ", Signature", "malformed Authorization component"},
	};
	struct efs_sigv4_auth auth;
	memset(&auth, 0x5a, sizeof(auth));
	struct efs_sigv4_auth before = auth;
	for (size_t i = 0; i < EFS_ARRAY_SIZE(bad); i++) {
		const char *reason = NULL;
		int r = efs_sigv4_auth_parse(bad[i].value, &auth, &reason);
		if (r != -EINVAL || !reason || strcmp(reason, bad[i].reason) != 0)
			fail_msg("\"%s\": %d \"%s\", want \"%s\"", bad[i].value, r,
				 reason ? reason : "", bad[i].reason);
	}
	assert_memory_equal(&auth, &before, sizeof(auth));
	assert_int_equal(efs_sigv4_auth_parse(NULL, &auth, NULL), -EINVAL);

	/* Over the cap, however well formed. */
	char longer[EFS_SIGV4_MAX_AUTHORIZATION + 64];
	int n = snprintf(longer, sizeof(longer), "AWS4-HMAC-SHA256 " CRED ", " SH ", " SIG);
	memset(longer + n, ' ', sizeof(longer) - (size_t)n - 1);
	longer[sizeof(longer) - 1] = '\0';
	const char *reason = NULL;
	assert_int_equal(efs_sigv4_auth_parse(longer, &auth, &reason), -EINVAL);
	assert_string_equal(reason, "Authorization header too long");
#undef CRED
#undef SH
#undef SIG
}

static void test_presigned_parse_refuses(void **state)
{
#define PQ_ALG "X-Amz-Algorithm=AWS4-HMAC-SHA256"
#define PQ_CRED "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
#define PQ_DATE "&X-Amz-Date=20130524T000000Z"
#define PQ_EXP "&X-Amz-Expires=86400"
#define PQ_SH "&X-Amz-SignedHeaders=host"
#define PQ_SIG "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
	static const struct {
		const char *query, *reason;
	} bad[] = {
	    {PQ_CRED PQ_DATE PQ_EXP PQ_SH PQ_SIG, "presigned URL is missing an X-Amz- parameter"},
	    {PQ_ALG PQ_DATE PQ_EXP PQ_SH PQ_SIG, "presigned URL is missing an X-Amz- parameter"},
	    {PQ_ALG PQ_CRED PQ_DATE PQ_EXP PQ_SH, "presigned URL is missing an X-Amz- parameter"},
	    {PQ_ALG "&" PQ_ALG PQ_CRED PQ_DATE PQ_EXP PQ_SH PQ_SIG, "repeated X-Amz- parameter"},
	    {"X-Amz-Algorithm=AWS4-HMAC-SHA1" PQ_CRED PQ_DATE PQ_EXP PQ_SH PQ_SIG,
	     "X-Amz-Algorithm is not AWS4-HMAC-SHA256"},
	    {PQ_ALG PQ_CRED "&X-Amz-Date=20130525T000000Z" PQ_EXP PQ_SH PQ_SIG,
	     "X-Amz-Date is not the credential's day"},
	    {PQ_ALG PQ_CRED "&X-Amz-Date=20130524" PQ_EXP PQ_SH PQ_SIG, "malformed X-Amz-Date"},
	    {PQ_ALG PQ_CRED PQ_DATE "&X-Amz-Expires=0" PQ_SH PQ_SIG,
	     "X-Amz-Expires is not 1..604800"},
	    {PQ_ALG PQ_CRED PQ_DATE "&X-Amz-Expires=604801" PQ_SH PQ_SIG,
	     "X-Amz-Expires is not 1..604800"},
	    {PQ_ALG PQ_CRED PQ_DATE "&X-Amz-Expires=-1" PQ_SH PQ_SIG,
	     "X-Amz-Expires is not 1..604800"},
	    {PQ_ALG PQ_CRED PQ_DATE "&X-Amz-Expires=99999999999999999999999" PQ_SH PQ_SIG,
	     "X-Amz- parameter too long"},
	    {PQ_ALG PQ_CRED PQ_DATE "&X-Amz-Expires=9999999999999999" PQ_SH PQ_SIG,
	     "X-Amz-Expires is not 1..604800"},
	    {PQ_ALG PQ_CRED PQ_DATE PQ_EXP "&X-Amz-SignedHeaders=x-amz-date" PQ_SIG,
	     "SignedHeaders does not include host"},
	    {PQ_ALG PQ_CRED PQ_DATE PQ_EXP PQ_SH "&X-Amz-Signature=%zz",
	     "malformed X-Amz- parameter"},
	    {PQ_ALG PQ_CRED PQ_DATE PQ_EXP PQ_SH "&X-Amz-Signature=ab%00",
	     "malformed X-Amz- parameter"},
	    {PQ_ALG "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3" PQ_DATE PQ_EXP
		 PQ_SH PQ_SIG,
	     "malformed Credential: too few parts"},
	};
	struct efs_sigv4_auth auth;
	memset(&auth, 0x5a, sizeof(auth));
	struct efs_sigv4_auth before = auth;
	for (size_t i = 0; i < EFS_ARRAY_SIZE(bad); i++) {
		const char *reason = NULL;
		int r = efs_sigv4_presigned_parse(bad[i].query, &auth, &reason);
		if (r != -EINVAL || !reason || strcmp(reason, bad[i].reason) != 0)
			fail_msg("\"%s\": %d \"%s\", want \"%s\"", bad[i].query, r,
				 reason ? reason : "", bad[i].reason);
	}
	/* Not a presigned request at all. */
	assert_int_equal(efs_sigv4_presigned_parse("list-type=2&prefix=a", &auth, NULL), -ENOENT);
	assert_int_equal(efs_sigv4_presigned_parse("", &auth, NULL), -ENOENT);
	assert_int_equal(efs_sigv4_presigned_parse(NULL, &auth, NULL), -ENOENT);
	assert_memory_equal(&auth, &before, sizeof(auth));
	/* Other parameters, encoded names and a trailing '&' are fine. */
	assert_int_equal(efs_sigv4_presigned_parse(
			     "a=1&" PQ_ALG PQ_CRED PQ_DATE PQ_EXP PQ_SH "&X%2DAmz%2DSignature="
			     "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404&",
			     &auth, NULL),
			 0);
	/* Too many parameters. */
	struct efs_buf q;
	efs_buf_init(&q, EFS_SIGV4_MAX_QUERY);
	for (int i = 0; i <= EFS_SIGV4_MAX_QUERY_PARAMS; i++)
		assert_int_equal(efs_buf_printf(&q, "p%d=1&", i), 0);
	const char *reason = NULL;
	assert_int_equal(efs_sigv4_presigned_parse(q.data, &auth, &reason), -EINVAL);
	assert_string_equal(reason, "too many query parameters");
	efs_buf_release(&q);
}

/* What a client signs, a server verifies; a change to any signed part
 * fails, a change to an unsigned header does not. */
static void test_verify_round_trip(void **state)
{
	struct efs_sigv4_key key;
	struct efs_sigv4_auth auth;
	struct efs_buf authz;
	const char *reason = NULL;
	struct efs_sigv4_header sent[] = {
	    {"Host", "127.0.0.1:9000"},
	    {"X-Amz-Date", S3_DATE},
	    {"X-Amz-Content-SHA256", EFS_SIGV4_UNSIGNED_PAYLOAD},
	    {"Content-Type", "text/plain"},
	};
	struct efs_sigv4_request req = {
	    .method = "PUT",
	    .path = "/bucket/dir/my%20file%2B1.txt",
	    .query = "tagging=&x=a%2Fb",
	    .headers = sent,
	    .header_count = EFS_ARRAY_SIZE(sent),
	    .payload_hash = EFS_SIGV4_UNSIGNED_PAYLOAD,
	    .flags = EFS_SIGV4_S3,
	};
	s3_key(&key);
	efs_buf_init(&authz, 4096);
	assert_int_equal(efs_sigv4_authorization(&req, S3_KEY_ID, S3_DATE, &key, &authz, NULL), 0);
	assert_int_equal(efs_sigv4_auth_parse(authz.data, &auth, &reason), 0);
	assert_string_equal(auth.signed_headers,
			    "content-type;host;x-amz-content-sha256;x-amz-date");

	/* The server sees more headers than were signed, in another order and
	 * case; and the path with its '+' left raw, and the query reordered. */
	struct efs_sigv4_header received[] = {
	    {"user-agent", "aws-cli/1.27"}, {"content-type", "text/plain"},
	    {"x-amz-date", S3_DATE},	    {"x-amz-content-sha256", EFS_SIGV4_UNSIGNED_PAYLOAD},
	    {"host", "127.0.0.1:9000"},	    {"Accept-Encoding", "identity"},
	};
	struct efs_sigv4_request server = req;
	server.headers = received;
	server.header_count = EFS_ARRAY_SIZE(received);
	server.path = "/bucket/dir/my%20file+1.txt";
	server.query = "x=a/b&tagging";
	assert_int_equal(efs_sigv4_verify(&server, &auth, S3_DATE, &key, &reason), 0);

	received[0].value = "curl"; /* unsigned */
	assert_int_equal(efs_sigv4_verify(&server, &auth, S3_DATE, &key, &reason), 0);
	received[1].value = "text/html";
	assert_int_equal(efs_sigv4_verify(&server, &auth, S3_DATE, &key, &reason), -EACCES);
	received[1].value = "text/plain";
	server.query = "x=a/b&tagging=1";
	assert_int_equal(efs_sigv4_verify(&server, &auth, S3_DATE, &key, &reason), -EACCES);
	server.query = "x=a/b&tagging";
	server.payload_hash = EFS_SIGV4_EMPTY_SHA256;
	assert_int_equal(efs_sigv4_verify(&server, &auth, S3_DATE, &key, &reason), -EACCES);
	server.payload_hash = EFS_SIGV4_UNSIGNED_PAYLOAD;
	/* A signed header the request does not carry. */
	server.header_count = 4;
	assert_int_equal(efs_sigv4_verify(&server, &auth, S3_DATE, &key, &reason), -EINVAL);
	assert_string_equal(reason, "a signed header is missing from the request");
	server.header_count = EFS_ARRAY_SIZE(received);
	/* An X-Amz-Date of another day than the scope's. */
	assert_int_equal(efs_sigv4_verify(&server, &auth, "20130525T000000Z", &key, &reason),
			 -EINVAL);
	/* A flipped signature. */
	auth.signature[10] = auth.signature[10] == '0' ? '1' : '0';
	assert_int_equal(efs_sigv4_verify(&server, &auth, S3_DATE, &key, &reason), -EACCES);
	efs_buf_release(&authz);
}

static void test_check_time(void **state)
{
	struct efs_sigv4_auth header = {.expires_s = 0}, presigned = {.expires_s = 86400};
	const int64_t t = 1369353600; /* 20130524T000000Z */
	const int64_t skew = 15 * 60;
	const char *reason = NULL;

	assert_int_equal(efs_sigv4_check_time(&header, S3_DATE, t, skew, &reason), 0);
	assert_int_equal(efs_sigv4_check_time(&header, S3_DATE, t + skew, skew, &reason), 0);
	assert_int_equal(efs_sigv4_check_time(&header, S3_DATE, t - skew, skew, &reason), 0);
	assert_int_equal(efs_sigv4_check_time(&header, S3_DATE, t + skew + 1, skew, &reason),
			 -ERANGE);
	assert_string_equal(reason, "request time too skewed");
	assert_int_equal(efs_sigv4_check_time(&header, S3_DATE, t - skew - 1, skew, &reason),
			 -ERANGE);

	assert_int_equal(efs_sigv4_check_time(&presigned, S3_DATE, t + 86400, skew, &reason), 0);
	assert_int_equal(efs_sigv4_check_time(&presigned, S3_DATE, t + 86401, skew, &reason),
			 -ETIMEDOUT);
	assert_string_equal(reason, "presigned URL expired");
	assert_int_equal(efs_sigv4_check_time(&presigned, S3_DATE, t - skew, skew, &reason), 0);
	assert_int_equal(efs_sigv4_check_time(&presigned, S3_DATE, t - skew - 1, skew, &reason),
			 -ERANGE);
	assert_string_equal(reason, "presigned URL not valid yet");
	assert_int_equal(efs_sigv4_check_time(&presigned, "2013", t, skew, &reason), -EINVAL);
	/* Extreme clocks do not overflow. */
	assert_int_equal(efs_sigv4_check_time(&header, S3_DATE, INT64_MAX, skew, &reason), -ERANGE);
	assert_int_equal(efs_sigv4_check_time(&header, S3_DATE, INT64_MIN, skew, &reason), -ERANGE);
	assert_int_equal(efs_sigv4_check_time(&presigned, S3_DATE, INT64_MAX, skew, &reason),
			 -ETIMEDOUT);
}

static void test_signature_equal(void **state)
{
	const char *a = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
	assert_true(efs_sigv4_signature_equal(
	    a, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"));
	assert_false(efs_sigv4_signature_equal(
	    a, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf30"));
	assert_false(efs_sigv4_signature_equal(
	    a, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf3"));
	assert_false(efs_sigv4_signature_equal(a, ""));
	assert_false(efs_sigv4_signature_equal(a, NULL));
	assert_false(efs_sigv4_signature_equal(NULL, NULL));
	assert_true(efs_sigv4_signature_equal("", ""));
}

/* ---- canonicalisation rules and caps ---- */

static void test_path_rules_s3_and_others(void **state)
{
	const struct efs_sigv4_header host[] = {{"host", "h"}};
	struct efs_sigv4_request req = {
	    .method = "GET",
	    .headers = host,
	    .header_count = 1,
	    .payload_hash = EFS_SIGV4_EMPTY_SHA256,
	};
	struct efs_buf out;
	efs_buf_init(&out, EFS_SIGV4_MAX_CANONICAL);
	static const struct {
		const char *path, *s3, *other;
	} cases[] = {
	    {"", "/", "/"},
	    {"/", "/", "/"},
	    {"/a%20b/./c/../d", "/a%20b/./c/../d", "/a%2520b/d"},
	    {"//a//b/", "//a//b/", "/a/b/"},
	    {"/a+b$c", "/a%2Bb%24c", "/a%2Bb%24c"},
	    {"/%7euser/%41", "/~user/A", "/%257euser/%2541"},
	    {"/\xe1\x88\xb4", "/%E1%88%B4", "/%E1%88%B4"},
	    {"/..", "/..", "/"},
	};
	for (size_t i = 0; i < EFS_ARRAY_SIZE(cases); i++) {
		for (int s3 = 0; s3 < 2; s3++) {
			req.path = cases[i].path;
			req.flags = s3 ? EFS_SIGV4_S3 : 0;
			assert_int_equal(efs_sigv4_canonical_request(&req, &out, NULL), 0);
			const char *line = strchr(out.data, '\n') + 1;
			size_t len = (size_t)(strchr(line, '\n') - line);
			const char *want = s3 ? cases[i].s3 : cases[i].other;
			if (len != strlen(want) || memcmp(line, want, len) != 0)
				fail_msg("%s path \"%s\": got \"%.*s\", want \"%s\"",
					 s3 ? "S3" : "other", cases[i].path, (int)len, line, want);
		}
	}
	const char *reason = NULL;
	req.flags = EFS_SIGV4_S3;
	req.path = "/a%2";
	assert_int_equal(efs_sigv4_canonical_request(&req, &out, &reason), -EINVAL);
	assert_string_equal(reason, "malformed percent escape in path");
	req.path = "a";
	assert_int_equal(efs_sigv4_canonical_request(&req, &out, &reason), -EINVAL);
	assert_string_equal(reason, "path does not start with /");
	efs_buf_release(&out);
}

static void test_query_rules(void **state)
{
	const struct efs_sigv4_header host[] = {{"host", "h"}};
	struct efs_sigv4_request req = {
	    .method = "GET",
	    .path = "/",
	    .headers = host,
	    .header_count = 1,
	    .payload_hash = EFS_SIGV4_EMPTY_SHA256,
	    .flags = EFS_SIGV4_S3,
	};
	static const struct {
		const char *query, *canonical;
	} cases[] = {
	    {"b=2&a=1", "a=1&b=2"},
	    {"a=2&a=1&a=", "a=&a=1&a=2"},
	    {"uploads", "uploads="},
	    {"a=x y+z", "a=x%20y%2Bz"},
	    {"prefix=a/b&delimiter=/", "delimiter=%2F&prefix=a%2Fb"},
	    {"k=%7e%2d", "k=~-"},
	    {"&&a=1&", "a=1"},
	    {"B=1&a=1&_=1", "B=1&_=1&a=1"}, /* byte order: upper case, '_', lower case */
	    {"a=b=c", "a=b%3Dc"},
	    {"a=%00", "a=%00"},
	};
	struct efs_buf out;
	efs_buf_init(&out, EFS_SIGV4_MAX_CANONICAL);
	for (size_t i = 0; i < EFS_ARRAY_SIZE(cases); i++) {
		req.query = cases[i].query;
		assert_int_equal(efs_sigv4_canonical_request(&req, &out, NULL), 0);
		const char *line = strchr(strchr(out.data, '\n') + 1, '\n') + 1;
		size_t len = (size_t)(strchr(line, '\n') - line);
		if (len != strlen(cases[i].canonical) || memcmp(line, cases[i].canonical, len) != 0)
			fail_msg("query \"%s\": got \"%.*s\", want \"%s\"", cases[i].query,
				 (int)len, line, cases[i].canonical);
	}
	const char *reason = NULL;
	req.query = "a=%g0";
	assert_int_equal(efs_sigv4_canonical_request(&req, &out, &reason), -EINVAL);
	assert_string_equal(reason, "malformed percent escape in query");
	efs_buf_release(&out);
}

static void test_headers_refused(void **state)
{
	struct efs_sigv4_header h[] = {{"host", "h"}, {"x-a", "1"}};
	struct efs_sigv4_request req = {
	    .method = "GET",
	    .path = "/",
	    .headers = h,
	    .header_count = 2,
	    .payload_hash = EFS_SIGV4_EMPTY_SHA256,
	};
	struct efs_buf out;
	const char *reason;
	efs_buf_init(&out, EFS_SIGV4_MAX_CANONICAL);

	h[1].name = "x a";
	assert_int_equal(efs_sigv4_canonical_request(&req, &out, &reason), -EINVAL);
	assert_string_equal(reason, "malformed header name");
	h[1].name = "";
	assert_int_equal(efs_sigv4_canonical_request(&req, &out, &reason), -EINVAL);
	h[1].name = "x-a";
	h[1].value = "a\r\nx-evil: 1";
	assert_int_equal(efs_sigv4_canonical_request(&req, &out, &reason), -EINVAL);
	assert_string_equal(reason, "control character in a header value");
	h[1].value = "1";
	req.method = "get";
	assert_int_equal(efs_sigv4_canonical_request(&req, &out, &reason), -EINVAL);
	assert_string_equal(reason, "malformed method");
	req.method = "GET";
	req.payload_hash = "abc";
	assert_int_equal(efs_sigv4_canonical_request(&req, &out, &reason), -EINVAL);
	assert_string_equal(reason, "malformed payload hash");
	req.payload_hash = EFS_SIGV4_EMPTY_SHA256;
	req.header_count = 0;
	assert_int_equal(efs_sigv4_canonical_request(&req, &out, &reason), -EINVAL);
	assert_string_equal(reason, "no header to sign");
	req.header_count = 2;
	req.signed_headers = "host;x-b";
	assert_int_equal(efs_sigv4_canonical_request(&req, &out, &reason), -EINVAL);
	assert_string_equal(reason, "a signed header is missing from the request");
	req.signed_headers = "x-a;host";
	assert_int_equal(efs_sigv4_canonical_request(&req, &out, &reason), -EINVAL);
	assert_string_equal(reason, "malformed SignedHeaders");
	req.signed_headers = "host;x-a";
	assert_int_equal(efs_sigv4_canonical_request(&req, &out, &reason), 0);
	efs_buf_release(&out);
}

static void test_caps(void **state)
{
	struct efs_buf out, big;
	const char *reason;
	struct efs_sigv4_header h[EFS_SIGV4_MAX_HEADERS + 1];
	for (size_t i = 0; i < EFS_ARRAY_SIZE(h); i++)
		h[i] = (struct efs_sigv4_header){"host", "h"};
	struct efs_sigv4_request req = {
	    .method = "GET",
	    .path = "/",
	    .headers = h,
	    .header_count = 1,
	    .payload_hash = EFS_SIGV4_EMPTY_SHA256,
	};
	efs_buf_init(&out, EFS_SIGV4_MAX_CANONICAL);
	efs_buf_init(&big, 4 * EFS_SIGV4_MAX_CANONICAL);
	assert_int_equal(efs_buf_reserve(&big, EFS_SIGV4_MAX_HEADER_VALUE + 2), 0);
	memset(big.data, 'a', EFS_SIGV4_MAX_HEADER_VALUE + 1);
	big.data[EFS_SIGV4_MAX_HEADER_VALUE + 1] = '\0';

	req.path = big.data;
	big.data[0] = '/';
	big.data[EFS_SIGV4_MAX_PATH] = '\0';
	assert_int_equal(efs_sigv4_canonical_request(&req, &out, &reason), 0);
	big.data[EFS_SIGV4_MAX_PATH] = 'a';
	big.data[EFS_SIGV4_MAX_PATH + 1] = '\0';
	assert_int_equal(efs_sigv4_canonical_request(&req, &out, &reason), -E2BIG);
	assert_string_equal(reason, "path too long");
	req.path = "/";

	req.query = big.data + 1;
	assert_int_equal(efs_sigv4_canonical_request(&req, &out, &reason), 0);
	req.query = big.data;
	assert_int_equal(efs_sigv4_canonical_request(&req, &out, &reason), -E2BIG);
	assert_string_equal(reason, "query string too long");
	req.query = NULL;

	memset(big.data, 'a', EFS_SIGV4_MAX_HEADER_VALUE + 1);
	h[0].value = big.data;
	assert_int_equal(efs_sigv4_canonical_request(&req, &out, &reason), -E2BIG);
	assert_string_equal(reason, "header value too long");
	h[0].value = "h";

	req.header_count = EFS_SIGV4_MAX_HEADERS + 1;
	assert_int_equal(efs_sigv4_canonical_request(&req, &out, &reason), -E2BIG);
	assert_string_equal(reason, "too many headers");

	/* Many long header values: the canonical request's own cap. */
	big.data[EFS_SIGV4_MAX_HEADER_VALUE] = '\0';
	for (size_t i = 0; i < 10; i++)
		h[i].value = big.data;
	req.header_count = 10;
	assert_int_equal(efs_sigv4_canonical_request(&req, &out, &reason), -E2BIG);
	assert_string_equal(reason, "canonical request too long");

	/* A signed headers list longer than a verifier parses is not signed. */
	char names[5][129];
	for (size_t i = 0; i < 5; i++) {
		memset(names[i], 'a' + (int)i, 128);
		names[i][128] = '\0';
		h[i] = (struct efs_sigv4_header){names[i], "v"};
	}
	req.header_count = 4; /* 4 * 129 - 1 = 515 bytes */
	assert_int_equal(efs_sigv4_canonical_request(&req, &out, &reason), -E2BIG);
	assert_string_equal(reason, "signed headers list too long");
	names[3][125] = '\0'; /* 512: just fits */
	assert_int_equal(efs_sigv4_canonical_request(&req, &out, &reason), 0);
	for (size_t i = 0; i < 5; i++)
		h[i] = (struct efs_sigv4_header){"host", "h"};

	/* Too many query parameters. */
	struct efs_buf q;
	efs_buf_init(&q, EFS_SIGV4_MAX_QUERY);
	for (int i = 0; i <= EFS_SIGV4_MAX_QUERY_PARAMS; i++)
		assert_int_equal(efs_buf_printf(&q, "p%d&", i), 0);
	req.header_count = 1;
	h[0].value = "h";
	req.query = q.data;
	assert_int_equal(efs_sigv4_canonical_request(&req, &out, &reason), -E2BIG);
	assert_string_equal(reason, "too many query parameters");
	efs_buf_release(&q);
	efs_buf_release(&out);
	efs_buf_release(&big);
}

/* ---- 4. botocore ---- */

struct boto_case {
	const char *name;
	const char *service;
	const char *method, *path, *query;
	struct efs_sigv4_header headers[5];
	size_t header_count;
	const char *body;
	unsigned flags;
	const char *payload_hash; /* NULL: the body's */
};

#define BOTOCORE_SCRIPT "tests/unit/sigv4_botocore.py"

/* botocore's presigned GET (S3SigV4QueryAuth, temporary credentials). */
static void check_botocore_presign(const char *expected_query)
{
	struct efs_sigv4_key key;
	struct efs_buf out;
	const struct efs_sigv4_header host[] = {{"host", "bucket.s3.amazonaws.com"}};
	const struct efs_sigv4_request req = {
	    .method = "GET",
	    .path = "/dir/a%20b.txt",
	    .query = "versionId=abc",
	    .headers = host,
	    .header_count = 1,
	    .payload_hash = EFS_SIGV4_UNSIGNED_PAYLOAD,
	    .flags = EFS_SIGV4_S3,
	};
	assert_int_equal(efs_sigv4_key_derive(&key, SUITE_SECRET, SUITE_DATE, "us-east-1", "s3"),
			 0);
	efs_buf_init(&out, 4096);
	assert_int_equal(
	    efs_sigv4_presign(&req, "AKIDEXAMPLE", "tok/en+==", SUITE_DATE, 900, &key, &out), 0);
	if (strcmp(out.data, expected_query) != 0)
		fail_msg("presigned: botocore %s\nwe       %s", expected_query, out.data);
	efs_buf_release(&out);
}

static void test_matches_botocore(void **state)
{
	/* The same requests as tests/unit/sigv4_botocore.py. */
	static const struct boto_case cases[] = {
	    {"dynamodb-post",
	     "dynamodb",
	     "POST",
	     "/",
	     NULL,
	     {{"Host", "dynamodb.us-east-1.amazonaws.com"},
	      {"Content-Type", "application/x-amz-json-1.0"},
	      {"X-Amz-Target", "DynamoDB_20120810.GetItem"},
	      {"X-Amz-Date", SUITE_DATE}},
	     4,
	     "{\"TableName\":\"files\",\"Key\":{\"id\":{\"S\":\"a b\"}}}",
	     0,
	     NULL},
	    {"service-path-query",
	     "service",
	     "GET",
	     "/a%20b/./c/../d",
	     "z=1&a=%2F&a=%20&empty=",
	     {{"Host", "example.amazonaws.com"},
	      {"My-Header", "  x   y  "},
	      {"X-Amz-Date", SUITE_DATE}},
	     3,
	     "",
	     0,
	     NULL},
	    {"s3-get-key",
	     "s3",
	     "GET",
	     "/dir/my%20key%2Bplus.txt",
	     "versionId=abc",
	     {{"Host", "bucket.s3.amazonaws.com"},
	      {"X-Amz-Content-SHA256", EFS_SIGV4_UNSIGNED_PAYLOAD},
	      {"Range", "bytes=0-9"},
	      {"X-Amz-Date", SUITE_DATE}},
	     4,
	     "",
	     EFS_SIGV4_S3,
	     EFS_SIGV4_UNSIGNED_PAYLOAD},
	    {"s3-list",
	     "s3",
	     "GET",
	     "/bucket",
	     "list-type=2&prefix=a%2Fb%20c&delimiter=%2F",
	     {{"Host", "s3.amazonaws.com"},
	      {"X-Amz-Content-SHA256", EFS_SIGV4_EMPTY_SHA256},
	      {"X-Amz-Date", SUITE_DATE}},
	     3,
	     "",
	     EFS_SIGV4_S3,
	     EFS_SIGV4_EMPTY_SHA256},
	};
	/* Run from the repository's root, as `make unit` does. */
	if (access(BOTOCORE_SCRIPT, R_OK) != 0) {
		print_message("%s not found (not run from the repository root): skipped\n",
			      BOTOCORE_SCRIPT);
		skip();
	}
	FILE *f = popen("/usr/bin/python3 " BOTOCORE_SCRIPT " 2>/dev/null", "r");
	char line[1024];
	size_t seen = 0;
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		char name[64], expected[512];
		if (sscanf(line, "%63s %511s", name, expected) != 2)
			fail_msg("unexpected line from sigv4_botocore.py: %s", line);
		if (strcmp(name, "s3-presign") == 0) {
			check_botocore_presign(expected);
			seen++;
			continue;
		}
		for (size_t i = 0; i < EFS_ARRAY_SIZE(cases); i++) {
			const struct boto_case *c = &cases[i];
			if (strcmp(c->name, name) != 0)
				continue;
			struct efs_sigv4_key key;
			char body_hash[EFS_SHA256_HEX_LEN + 1], sig[EFS_SIGV4_SIGNATURE_LEN + 1];
			const char *reason = NULL;
			efs_sha256_hex(c->body, strlen(c->body), body_hash);
			struct efs_sigv4_request req = {
			    .method = c->method,
			    .path = c->path,
			    .query = c->query,
			    .headers = c->headers,
			    .header_count = c->header_count,
			    .payload_hash = c->payload_hash ? c->payload_hash : body_hash,
			    .flags = c->flags,
			};
			assert_int_equal(efs_sigv4_key_derive(&key, SUITE_SECRET, SUITE_DATE,
							      "us-east-1", c->service),
					 0);
			assert_int_equal(efs_sigv4_signature(&req, SUITE_DATE, &key, sig, &reason),
					 0);
			if (strcmp(sig, expected) != 0)
				fail_msg("%s: botocore signs %s, we sign %s", name, expected, sig);
			seen++;
		}
	}
	int status = pclose(f);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
		print_message("botocore is not installed (python3-botocore): comparison skipped\n");
		skip();
	}
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(seen, EFS_ARRAY_SIZE(cases) + 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_aws_test_suite),
	    cmocka_unit_test(test_s3_trailer_signature),
	    cmocka_unit_test(test_unsigned_chunk_header_parse),
	    cmocka_unit_test(test_aws_test_suite_canonical_requests),
	    cmocka_unit_test(test_aws_test_suite_query_nonunreserved),
	    cmocka_unit_test(test_aws_test_suite_sts_header_after),
	    cmocka_unit_test(test_signing_key_iam_example),
	    cmocka_unit_test(test_signing_key_refuses_bad_scope),
	    cmocka_unit_test(test_amz_date),
	    cmocka_unit_test(test_s3_get_object_with_range),
	    cmocka_unit_test(test_s3_put_object),
	    cmocka_unit_test(test_s3_get_bucket_lifecycle_and_list_objects),
	    cmocka_unit_test(test_s3_presigned_url),
	    cmocka_unit_test(test_s3_presigned_url_verifies),
	    cmocka_unit_test(test_presign_with_session_token_round_trips),
	    cmocka_unit_test(test_s3_streaming_chunk_signatures),
	    cmocka_unit_test(test_chunk_header_parse),
	    cmocka_unit_test(test_auth_parse),
	    cmocka_unit_test(test_auth_parse_refuses_with_a_reason),
	    cmocka_unit_test(test_presigned_parse_refuses),
	    cmocka_unit_test(test_verify_round_trip),
	    cmocka_unit_test(test_check_time),
	    cmocka_unit_test(test_signature_equal),
	    cmocka_unit_test(test_path_rules_s3_and_others),
	    cmocka_unit_test(test_query_rules),
	    cmocka_unit_test(test_headers_refused),
	    cmocka_unit_test(test_caps),
	    cmocka_unit_test(test_matches_botocore),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
