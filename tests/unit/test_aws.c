/* SPDX-License-Identifier: MIT */
/* test_aws.c - unit tests of the AWS plumbing (include/echofs/aws.h) and
 * the expat wrapper (include/echofs/xml.h), without network: the shared
 * credentials file reader, the configuration's lookup order, endpoints and
 * S3 addressing, the S3 XML and DynamoDB JSON error parsers, the errno and
 * retry mapping, the ListObjectsV2 parser (include/echofs/s3.h). tests/integration/test_s3_client.py sends real requests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "echofs/aws.h"
#include "echofs/s3.h"
#include "echofs/util.h"
#include "echofs/xml.h"

#include <stdlib.h>
#include <unistd.h>

static const char *const ENV_VARS[] = {
    "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_SHARED_CREDENTIALS_FILE", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_DYNAMODB",
};

static int clear_env(void **state)
{
	(void)state;
	for (size_t i = 0; i < EFS_ARRAY_SIZE(ENV_VARS); i++)
		unsetenv(ENV_VARS[i]);
	setenv("HOME", "/nonexistent-echofs-home", 1);
	return 0;
}

static const char FILE_TEXT[] = "# comment\n"
				"; another\n"
				"[default]\n"
				"aws_access_key_id = AKIDDEFAULT\n"
				"aws_secret_access_key=secret/default+x\n"
				"\n"
				"[  work ]\r\n"
				"  aws_access_key_id   =  AKIDWORK  \r\n"
				"aws_secret_access_key = worksecret\r\n"
				"aws_session_token = TOKEN=abc\r\n"
				"region = eu-west-1\r\n"
				"[empty]\n"
				"aws_access_key_id = ONLYID\n";

static void test_credentials_file_profiles(void **state)
{
	(void)state;
	struct efs_aws_credentials c;
	const char *why = NULL;
	assert_int_equal(efs_aws_credentials_parse(FILE_TEXT, strlen(FILE_TEXT), "default", &c, &why),
			 0);
	assert_string_equal(c.access_key_id, "AKIDDEFAULT");
	assert_string_equal(c.secret_access_key, "secret/default+x");
	assert_string_equal(c.session_token, "");
	assert_int_equal(efs_aws_credentials_parse(FILE_TEXT, strlen(FILE_TEXT), "work", &c, &why), 0);
	assert_string_equal(c.access_key_id, "AKIDWORK");
	assert_string_equal(c.secret_access_key, "worksecret");
	assert_string_equal(c.session_token, "TOKEN=abc"); /* only the first '=' splits */
	memset(&c, 'x', sizeof(c));
	assert_int_equal(efs_aws_credentials_parse(FILE_TEXT, strlen(FILE_TEXT), "nope", &c, &why),
			 -ENOENT);
	assert_int_equal(c.access_key_id[0], 'x'); /* untouched */
	why = NULL;
	assert_int_equal(efs_aws_credentials_parse(FILE_TEXT, strlen(FILE_TEXT), "empty", &c, &why),
			 -EINVAL);
	assert_non_null(why);
}

static void test_credentials_file_strict(void **state)
{
	(void)state;
	struct efs_aws_credentials c;
	const char *why = NULL;
	static const char *const bad[] = {
	    "[default\naws_access_key_id=a\naws_secret_access_key=b\n",
	    "[default]\njust a line\n",
	    "[default]\n= value\n",
	};
	for (size_t i = 0; i < EFS_ARRAY_SIZE(bad); i++) {
		why = NULL;
		assert_int_equal(efs_aws_credentials_parse(bad[i], strlen(bad[i]), "default", &c, &why),
				 -EINVAL);
		assert_non_null(why);
	}
	char nul[] = "[default]\naws_access_key_id=a\0\naws_secret_access_key=b\n";
	assert_int_equal(efs_aws_credentials_parse(nul, sizeof(nul) - 1, "default", &c, &why),
			 -EINVAL);
	/* A line over the cap, a value over its cap, a file over its cap. */
	size_t big = EFS_AWS_MAX_CREDENTIALS_FILE + 10;
	char *text = malloc(big + 1);
	assert_non_null(text);
	int n = snprintf(text, big, "[default]\naws_secret_access_key=");
	memset(text + n, 'a', EFS_AWS_MAX_INI_LINE + 10);
	text[n + EFS_AWS_MAX_INI_LINE + 10] = '\n';
	size_t len = (size_t)n + EFS_AWS_MAX_INI_LINE + 11;
	assert_int_equal(efs_aws_credentials_parse(text, len, "default", &c, &why), -E2BIG);
	n = snprintf(text, big, "[default]\naws_access_key_id=a\naws_secret_access_key=");
	memset(text + n, 's', EFS_SIGV4_MAX_SECRET + 1);
	len = (size_t)n + EFS_SIGV4_MAX_SECRET + 1;
	assert_int_equal(efs_aws_credentials_parse(text, len, "default", &c, &why), -E2BIG);
	memset(text, '#', big);
	assert_int_equal(efs_aws_credentials_parse(text, big, "default", &c, &why), -E2BIG);
	free(text);
}

static void test_config_environment_first_then_file(void **state)
{
	(void)state;
	struct efs_aws_config cfg;
	const char *why = NULL;
	/* Nothing anywhere: -ENOENT, with a reason naming the variable. */
	assert_int_equal(efs_aws_config_load(&cfg, &why), -ENOENT);
	assert_non_null(strstr(why, "AWS_ACCESS_KEY_ID"));

	char path[] = "/tmp/test_aws_credsXXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, FILE_TEXT, strlen(FILE_TEXT)), (ssize_t)strlen(FILE_TEXT));
	close(fd);
	setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
	assert_int_equal(efs_aws_config_load(&cfg, &why), 0);
	assert_string_equal(cfg.credentials.access_key_id, "AKIDDEFAULT");
	assert_string_equal(cfg.region, "us-east-1");
	setenv("AWS_PROFILE", "work", 1);
	assert_int_equal(efs_aws_config_load(&cfg, &why), 0);
	assert_string_equal(cfg.credentials.access_key_id, "AKIDWORK");
	assert_string_equal(cfg.credentials.session_token, "TOKEN=abc");
	assert_non_null(strstr(cfg.credentials_source, "[work]"));
	/* The environment wins over the file. */
	setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
	assert_int_equal(efs_aws_config_load(&cfg, &why), 0);
	assert_string_equal(cfg.credentials.access_key_id, "AKIDENV");
	assert_string_equal(cfg.credentials.session_token, "");
	assert_string_equal(cfg.credentials_source, "environment");
	/* Half set is refused, naming the missing variable. */
	unsetenv("AWS_SECRET_ACCESS_KEY");
	assert_int_equal(efs_aws_config_load(&cfg, &why), -EINVAL);
	assert_non_null(strstr(why, "AWS_SECRET_ACCESS_KEY"));
	setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
	setenv("AWS_REGION", "EU_WEST", 1);
	assert_int_equal(efs_aws_config_load(&cfg, &why), -EINVAL);
	assert_non_null(strstr(why, "AWS_REGION"));
	unlink(path);
}

static void test_endpoints_precedence(void **state)
{
	(void)state;
	struct efs_aws_config cfg;
	const char *why = NULL;
	setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "s", 1);
	setenv("AWS_REGION", "eu-west-3", 1);
	assert_int_equal(efs_aws_config_load(&cfg, &why), 0);
	assert_true(cfg.s3.https);
	assert_false(cfg.s3.custom);
	assert_string_equal(cfg.s3.authority, "s3.eu-west-3.amazonaws.com");
	assert_string_equal(cfg.dynamodb.authority, "dynamodb.eu-west-3.amazonaws.com");
	setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000/", 1);
	assert_int_equal(efs_aws_config_load(&cfg, &why), 0);
	assert_string_equal(cfg.s3.authority, "127.0.0.1:9000");
	assert_string_equal(cfg.dynamodb.authority, "127.0.0.1:9000");
	assert_false(cfg.s3.https);
	assert_true(cfg.s3.custom);
	setenv("AWS_ENDPOINT_URL_S3", "https://s3.local:4568", 1);
	setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://localhost:8000", 1);
	assert_int_equal(efs_aws_config_load(&cfg, &why), 0);
	assert_string_equal(cfg.s3.authority, "s3.local:4568");
	assert_true(cfg.s3.https);
	assert_string_equal(cfg.dynamodb.authority, "localhost:8000");
	struct efs_buf url, host;
	efs_buf_init(&url, 1024);
	efs_buf_init(&host, 512);
	assert_int_equal(efs_aws_dynamodb_target(&cfg, &url, &host), 0);
	assert_string_equal(url.data, "http://localhost:8000/");
	assert_string_equal(host.data, "localhost:8000");
	efs_buf_release(&url);
	efs_buf_release(&host);
	setenv("AWS_ENDPOINT_URL_S3", "ftp://x", 1);
	assert_int_equal(efs_aws_config_load(&cfg, &why), -EINVAL);
	assert_non_null(strstr(why, "AWS_ENDPOINT_URL_S3"));

	struct efs_aws_endpoint e;
	static const char *const bad[] = {"http://", "http://a/b", "http://u@h", "http://h:",
					  "http://:80", "http://h:123456", "http://h?x", "h:80",
					  "http://[::1]:80"};
	for (size_t i = 0; i < EFS_ARRAY_SIZE(bad); i++)
		assert_int_equal(efs_aws_endpoint_parse(bad[i], &e), -EINVAL);
}

static void test_s3_addressing(void **state)
{
	(void)state;
	struct efs_aws_config cfg = {.region = "us-east-1"};
	struct efs_buf url, host, path;
	efs_buf_init(&url, 4096);
	efs_buf_init(&host, 512);
	efs_buf_init(&path, 4096);
	/* Real AWS: virtual-host style. */
	assert_int_equal(efs_aws_endpoint_parse("https://s3.us-east-1.amazonaws.com", &cfg.s3), 0);
	cfg.s3.custom = false;
	assert_int_equal(efs_aws_s3_target(&cfg, "bkt", "a b/c+d=é~", NULL, &url, &host, &path), 0);
	assert_string_equal(host.data, "bkt.s3.us-east-1.amazonaws.com");
	assert_string_equal(path.data, "/a%20b/c%2Bd%3D%C3%A9~");
	assert_string_equal(url.data, "https://bkt.s3.us-east-1.amazonaws.com/a%20b/c%2Bd%3D%C3%A9~");
	/* A bucket with a dot: path style even on AWS (its certificate). */
	assert_int_equal(efs_aws_s3_target(&cfg, "my.bkt", "k", "x=1", &url, &host, &path), 0);
	assert_string_equal(url.data, "https://s3.us-east-1.amazonaws.com/my.bkt/k?x=1");
	/* A custom endpoint: path style. */
	assert_int_equal(efs_aws_endpoint_parse("http://127.0.0.1:4568", &cfg.s3), 0);
	assert_int_equal(efs_aws_s3_target(&cfg, "bkt", "k/x", NULL, &url, &host, &path), 0);
	assert_string_equal(url.data, "http://127.0.0.1:4568/bkt/k/x");
	assert_string_equal(host.data, "127.0.0.1:4568");
	assert_string_equal(path.data, "/bkt/k/x");
	assert_int_equal(efs_aws_s3_target(&cfg, "bkt", NULL, "list-type=2", &url, &host, &path), 0);
	assert_string_equal(url.data, "http://127.0.0.1:4568/bkt?list-type=2");
	assert_int_equal(efs_aws_s3_target(&cfg, "", "k", NULL, &url, &host, &path), -EINVAL);
	efs_buf_release(&url);
	efs_buf_release(&host);
	efs_buf_release(&path);
}

static void test_xml_errors(void **state)
{
	(void)state;
	char code[64], msg[128];
	const char *body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
			   "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does "
			   "not exist</Message><BucketName>b</BucketName></Error>";
	assert_int_equal(efs_aws_error_parse_xml(body, strlen(body), code, sizeof(code), msg,
						 sizeof(msg)),
			 0);
	assert_string_equal(code, "NoSuchBucket");
	assert_string_equal(msg, "The specified bucket does not exist");
	/* Truncated to the caller's sizes. */
	char small[5];
	assert_int_equal(efs_aws_error_parse_xml(body, strlen(body), small, sizeof(small), msg,
						 sizeof(msg)),
			 0);
	assert_string_equal(small, "NoSu");
	/* Not an error, not XML, a DOCTYPE, too deep, a text over its cap. */
	static const char *const none[] = {
	    "", "<html>503</html>", "<Error><Message>x</Message></Error>", "not xml",
	    "<?xml version=\"1.0\"?><!DOCTYPE Error [<!ENTITY a \"NoSuchKey\">]>"
	    "<Error><Code>&a;</Code></Error>",
	    "<Error><Code>NoSuchKey</Code>", /* unterminated */
	};
	for (size_t i = 0; i < EFS_ARRAY_SIZE(none); i++) {
		efs_strlcpy(code, "unchanged", sizeof(code));
		assert_int_equal(efs_aws_error_parse_xml(none[i], strlen(none[i]), code,
							 sizeof(code), msg, sizeof(msg)),
				 -ENOENT);
		assert_string_equal(code, "unchanged");
	}
	char deep[512] = "";
	for (int i = 0; i < EFS_XML_MAX_DEPTH + 1; i++)
		efs_strlcpy(deep + strlen(deep), "<a>", sizeof(deep) - strlen(deep));
	assert_int_equal(efs_xml_parse(deep, strlen(deep), NULL, NULL, NULL), -E2BIG);
	size_t big = EFS_XML_MAX_TEXT + 64;
	char *text = malloc(big);
	assert_non_null(text);
	memcpy(text, "<a>", 3);
	memset(text + 3, 'x', big - 7);
	memcpy(text + big - 4, "</a>", 4);
	assert_int_equal(efs_xml_parse(text, big, NULL, NULL, NULL), -E2BIG);
	free(text);
}

static void test_json_errors(void **state)
{
	(void)state;
	char code[64], msg[128];
	const char *body = "{\"__type\":\"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException\","
			   "\"message\":\"Requested resource not found\"}";
	assert_int_equal(efs_aws_error_parse_json(body, strlen(body), code, sizeof(code), msg,
						  sizeof(msg)),
			 0);
	assert_string_equal(code, "ResourceNotFoundException");
	assert_string_equal(msg, "Requested resource not found");
	body = "{\"__type\":\"com.amazon.coral.validate#ValidationException\",\"Message\":\"bad\"}";
	assert_int_equal(efs_aws_error_parse_json(body, strlen(body), code, sizeof(code), msg,
						  sizeof(msg)),
			 0);
	assert_string_equal(code, "ValidationException");
	assert_string_equal(msg, "bad");
	static const char *const none[] = {"", "[]", "{}", "{\"__type\":\"x#\"}", "{\"__type\":1}",
					   "nope", "{\"__type\":\"a\",\"__type\":\"b\"}"};
	for (size_t i = 0; i < EFS_ARRAY_SIZE(none); i++)
		assert_int_equal(efs_aws_error_parse_json(none[i], strlen(none[i]), code,
							  sizeof(code), msg, sizeof(msg)),
				 -ENOENT);
}

static void test_errno_and_retry_mapping(void **state)
{
	(void)state;
	assert_int_equal(efs_aws_status_errno(404, "NoSuchKey"), -ENOENT);
	assert_int_equal(efs_aws_status_errno(404, "NoSuchBucket"), -ENOENT);
	assert_int_equal(efs_aws_status_errno(400, "ResourceNotFoundException"), -ENOENT);
	assert_int_equal(efs_aws_status_errno(403, "SignatureDoesNotMatch"), -EACCES);
	assert_int_equal(efs_aws_status_errno(403, "AccessDenied"), -EACCES);
	assert_int_equal(efs_aws_status_errno(400, "AccessDeniedException"), -EACCES);
	assert_int_equal(efs_aws_status_errno(400, "ConditionalCheckFailedException"), -ECANCELED);
	assert_int_equal(efs_aws_status_errno(503, "SlowDown"), -EAGAIN);
	assert_int_equal(efs_aws_status_errno(400, "ThrottlingException"), -EAGAIN);
	assert_int_equal(efs_aws_status_errno(400, "ProvisionedThroughputExceededException"),
			 -EAGAIN);
	assert_int_equal(efs_aws_status_errno(500, ""), -EAGAIN);
	assert_int_equal(efs_aws_status_errno(416, "InvalidRange"), -ERANGE);
	assert_int_equal(efs_aws_status_errno(409, "BucketAlreadyOwnedByYou"), -EEXIST);
	assert_int_equal(efs_aws_status_errno(400, "ValidationException"), -EINVAL);
	assert_true(efs_aws_retryable(503, "SlowDown"));
	assert_true(efs_aws_retryable(429, ""));
	assert_true(efs_aws_retryable(400, "ProvisionedThroughputExceededException"));
	assert_true(efs_aws_retryable(400, "ThrottlingException"));
	assert_false(efs_aws_retryable(403, "SignatureDoesNotMatch"));
	assert_false(efs_aws_retryable(404, "NoSuchKey"));
	assert_false(efs_aws_retryable(400, "ValidationException"));
	/* throttled: refused before it was performed, so sent again even
	 * when not idempotent; a 5xx or a timeout may have been performed */
	assert_true(efs_aws_throttled(400, "ThrottlingException"));
	assert_true(efs_aws_throttled(400, "ProvisionedThroughputExceededException"));
	assert_true(efs_aws_throttled(503, "SlowDown"));
	assert_true(efs_aws_throttled(429, ""));
	assert_false(efs_aws_throttled(500, "InternalError"));
	assert_false(efs_aws_throttled(400, "RequestTimeout"));
	assert_false(efs_aws_throttled(400, "ConditionalCheckFailedException"));
}

/* A caller header with CR or LF is refused before anything is sent (the
 * URL would refuse a connection: -EINVAL proves nothing went out). */
static void test_send_refuses_header_injection(void **state)
{
	(void)state;
	struct efs_aws_config cfg = {.region = "us-east-1"};
	struct efs_http_client *http;
	struct efs_aws_client *aws;
	struct efs_aws_response resp;
	efs_strlcpy(cfg.credentials.access_key_id, "AKID", sizeof(cfg.credentials.access_key_id));
	efs_strlcpy(cfg.credentials.secret_access_key, "s", sizeof(cfg.credentials.secret_access_key));
	assert_int_equal(efs_http_client_global_init(), 0);
	assert_int_equal(efs_http_client_new(&http), 0);
	assert_int_equal(efs_aws_client_new(&cfg, http, &aws), 0);
	assert_int_equal(efs_aws_client_set_retry(aws, 0, 10), -EINVAL);
	assert_int_equal(efs_aws_client_set_retry(aws, EFS_AWS_MAX_ATTEMPTS + 1, 10), -EINVAL);
	efs_aws_response_init(&resp);
	struct efs_aws_request req = {
	    .method = "GET", .service = "s3", .url = "http://127.0.0.1:1/b/k",
	    .host = "127.0.0.1:1", .path = "/b/k", .retry = true,
	    .headers = {"x-amz-meta-a: b\r\nx-evil: 1"},
	};
	assert_int_equal(efs_aws_send(aws, &req, &resp), -EINVAL);
	assert_int_equal(resp.attempts, 0);
	/* Without it: a refused connection, retried up to the attempts. */
	req.headers[0] = "x-amz-meta-a: b";
	assert_int_equal(efs_aws_client_set_retry(aws, 2, 1), 0);
	assert_int_equal(efs_aws_send(aws, &req, &resp), -ECONNREFUSED);
	assert_int_equal(resp.attempts, 2);
	assert_int_equal(resp.status, 0);
	efs_aws_response_release(&resp);
	efs_aws_client_free(aws);
	efs_http_client_free(http);
	efs_http_client_global_cleanup();
}

#define LIST_HEAD                                                                                  \
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult "                             \
	"xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name>"
#define ENTRY(k, n) "<Contents><Key>" k "</Key><Size>" n "</Size><ETag>&quot;e&quot;</ETag>" \
		    "<LastModified>2026-12-03T06:37:26.000Z</LastModified></Contents>"

static void test_list_parse(void **state)
{
	(void)state;
	struct efs_s3_list list = {0};
	const char *body = LIST_HEAD "<IsTruncated>true</IsTruncated>"
				     "<NextContinuationToken>tok+/=</NextContinuationToken>" ENTRY(
					 "a &amp; b/é", "6") ENTRY("c", "0") "</ListBucketResult>";
	assert_int_equal(efs_s3_list_parse(body, strlen(body), 2, &list), 0);
	assert_int_equal(list.count, 2);
	assert_string_equal(list.entries[0].key, "a & b/é");
	assert_int_equal(list.entries[0].size, 6);
	assert_string_equal(list.entries[0].etag, "\"e\"");
	assert_string_equal(list.entries[0].last_modified, "2026-12-03T06:37:26.000Z");
	assert_string_equal(list.entries[1].key, "c");
	assert_true(list.truncated);
	assert_string_equal(list.next_token, "tok+/=");
	efs_s3_list_release(&list);
	/* More entries than asked for, truncated without a token, an entry
	 * without a key, a bad size, another document: refused. */
	static const char *const bad[] = {
	    LIST_HEAD ENTRY("a", "1") ENTRY("b", "1") ENTRY("c", "1") "</ListBucketResult>",
	    LIST_HEAD "<IsTruncated>true</IsTruncated>" ENTRY("a", "1") "</ListBucketResult>",
	    LIST_HEAD "<Contents><Size>1</Size></Contents></ListBucketResult>",
	    LIST_HEAD ENTRY("a", "-1") "</ListBucketResult>",
	    LIST_HEAD ENTRY("a", "99999999999999999999999") "</ListBucketResult>",
	    "<Error><Code>NoSuchBucket</Code></Error>",
	    LIST_HEAD ENTRY("a", "1"), /* cut short */
	};
	for (size_t i = 0; i < EFS_ARRAY_SIZE(bad); i++) {
		struct efs_s3_list untouched = {.count = 77};
		assert_int_equal(efs_s3_list_parse(bad[i], strlen(bad[i]), 2, &untouched), -EBADMSG);
		assert_int_equal(untouched.count, 77);
	}
	/* An empty listing; max_keys out of range. */
	body = LIST_HEAD "<IsTruncated>false</IsTruncated><KeyCount>0</KeyCount></ListBucketResult>";
	assert_int_equal(efs_s3_list_parse(body, strlen(body), 1000, &list), 0);
	assert_int_equal(list.count, 0);
	assert_false(list.truncated);
	efs_s3_list_release(&list);
	assert_int_equal(efs_s3_list_parse(body, strlen(body), 0, &list), -EINVAL);
	assert_int_equal(efs_s3_list_parse(body, strlen(body), 1001, &list), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_credentials_file_profiles),
	    cmocka_unit_test(test_credentials_file_strict),
	    cmocka_unit_test_setup(test_config_environment_first_then_file, clear_env),
	    cmocka_unit_test_setup(test_endpoints_precedence, clear_env),
	    cmocka_unit_test(test_s3_addressing),
	    cmocka_unit_test(test_xml_errors),
	    cmocka_unit_test(test_json_errors),
	    cmocka_unit_test(test_errno_and_retry_mapping),
	    cmocka_unit_test(test_send_refuses_header_injection),
	    cmocka_unit_test(test_list_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
