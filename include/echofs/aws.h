/* SPDX-License-Identifier: MIT */
/* aws.h - the AWS plumbing shared by the S3 client (s3.h) and the DynamoDB
 * backend: configuration from the environment, and one function that sends
 * a SigV4-signed request with retries and turns AWS's errors into a
 * negative errno plus AWS's own error code and message.
 *
 * Configuration (efs_aws_config_load), the AWS SDKs' variables:
 *   AWS_REGION                  default us-east-1
 *   credentials                 AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY
 *                               (+ AWS_SESSION_TOKEN), else the shared
 *                               credentials file (AWS_SHARED_CREDENTIALS_FILE,
 *                               else ~/.aws/credentials), profile
 *                               AWS_PROFILE or "default"
 *   endpoints                   AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_DYNAMODB,
 *                               else AWS_ENDPOINT_URL, else AWS's own for
 *                               the region (https://s3.<region>.amazonaws.com,
 *                               https://dynamodb.<region>.amazonaws.com)
 *   S3 addressing               path style (endpoint/bucket/key) when an
 *                               endpoint is set or the bucket has a dot;
 *                               virtual-host style (bucket.endpoint/key)
 *                               otherwise
 *
 * Sending (efs_aws_send): signs with SigV4 (sigv4.h; signing keys cached
 * per service and day), sends through the project's HTTP client
 * (http_client.h: keep-alive, timeouts), and retries up to max_attempts
 * times with exponential backoff and full jitter on 5xx, 429, S3's
 * SlowDown, DynamoDB's ProvisionedThroughputExceededException and
 * ThrottlingException, and connection errors -- only when the request
 * says it may be sent twice (idempotent, or the caller knows). A streamed
 * body is never retried (it cannot be rewound).
 */
#ifndef ECHOFS_AWS_H
#define ECHOFS_AWS_H

#include "echofs/buf.h"
#include "echofs/common.h"
#include "echofs/http_client.h"
#include "echofs/sigv4.h"

#include <stdbool.h>

#define EFS_AWS_DEFAULT_REGION "us-east-1"
#define EFS_AWS_MAX_TOKEN 4096		    /* a session token */
#define EFS_AWS_MAX_AUTHORITY 255	    /* host[:port] of an endpoint */
#define EFS_AWS_MAX_CREDENTIALS_FILE 65536  /* the shared credentials file */
#define EFS_AWS_MAX_INI_LINE 8192	    /* one line of it */
#define EFS_AWS_MAX_HEADERS 10		    /* caller headers of one request */
#define EFS_AWS_MAX_ATTEMPTS 10		    /* cap on efs_aws_client_set_retry */
#define EFS_AWS_DEFAULT_ATTEMPTS 4
#define EFS_AWS_DEFAULT_BACKOFF_MS 50	    /* first retry waits up to this */
#define EFS_AWS_MAX_BACKOFF_MS 2000	    /* no wait is longer */
#define EFS_AWS_DEFAULT_RESP_CAP (1024 * 1024)

struct efs_aws_credentials {
	char access_key_id[EFS_SIGV4_MAX_ACCESS_KEY + 1];
	char secret_access_key[EFS_SIGV4_MAX_SECRET + 1];
	char session_token[EFS_AWS_MAX_TOKEN + 1]; /* "" when none */
};

/* Where one service's requests go. */
struct efs_aws_endpoint {
	bool https;
	char authority[EFS_AWS_MAX_AUTHORITY + 1]; /* "host" or "host:port" */
	bool custom;				   /* from an AWS_ENDPOINT_URL* variable */
};

struct efs_aws_config {
	char region[EFS_SIGV4_MAX_REGION + 1];
	struct efs_aws_credentials credentials;
	/* Where the credentials came from, for the start-up log line:
	 * "environment" or "shared credentials file <path> [profile]". */
	char credentials_source[320];
	struct efs_aws_endpoint s3;
	struct efs_aws_endpoint dynamodb;
};

/* Reads the configuration from the environment (and the shared
 * credentials file). 0; -ENOENT when no credentials are found anywhere;
 * -EINVAL for a malformed value (a region that is not [a-z0-9-]{1,32}, an
 * endpoint that is not http(s)://host[:port][/], AWS_ACCESS_KEY_ID without
 * AWS_SECRET_ACCESS_KEY, a malformed credentials file or profile); -E2BIG
 * for an overlong value or file. @reason (may be NULL) then says which, in
 * a static string naming the variable. @cfg is untouched on failure. */
int efs_aws_config_load(struct efs_aws_config *cfg, const char **reason);

/* Parses a shared credentials file held in memory (@len bytes) and takes
 * @profile's aws_access_key_id, aws_secret_access_key and optional
 * aws_session_token. The format read: "[name]" section lines,
 * "key = value" lines, comments starting with '#' or ';', blank lines;
 * whitespace around names and values trimmed; other keys ignored; a
 * repeated key's last value wins. Strict: any other line, a line over
 * EFS_AWS_MAX_INI_LINE, a NUL byte, or a value over its cap is an error.
 * 0, -ENOENT (no such profile), -EINVAL (with @reason: malformed, or the
 * profile lacks a key), -E2BIG (over a cap). @out untouched on failure. */
int efs_aws_credentials_parse(const char *text, size_t len, const char *profile,
			      struct efs_aws_credentials *out, const char **reason);

/* Parses an endpoint URL ("http(s)://host[:port]" with an optional final
 * '/'; no user, path, query or fragment). 0 or -EINVAL. */
int efs_aws_endpoint_parse(const char *url, struct efs_aws_endpoint *out);

/* The URL, Host header value and canonical path of S3 object @key (NULL or
 * "" for the bucket itself) in @bucket: path style when the endpoint is
 * custom or the bucket name holds a '.', virtual-host style otherwise. The
 * key is URI-encoded ('/' kept). @query (already encoded, without '?', NULL
 * for none) is appended to the URL. 0, -EINVAL (an empty bucket), -E2BIG or
 * -ENOMEM. @url, @host and @path are replaced. */
int efs_aws_s3_target(const struct efs_aws_config *cfg, const char *bucket, const char *key,
		      const char *query, struct efs_buf *url, struct efs_buf *host,
		      struct efs_buf *path);

/* The URL ("scheme://authority/") and Host header value of DynamoDB's
 * endpoint; every DynamoDB call is a POST to "/" with
 * "X-Amz-Target: DynamoDB_20120810.<Action>" and
 * "Content-Type: application/x-amz-json-1.0". 0, -E2BIG or -ENOMEM. */
int efs_aws_dynamodb_target(const struct efs_aws_config *cfg, struct efs_buf *url,
			    struct efs_buf *host);

/* AWS error bodies. Each fills @code and @message (NUL-terminated,
 * truncated to their sizes) and returns 0, or -ENOENT when the body holds
 * no error code (@code/@message untouched).
 * S3: <Error><Code>..</Code><Message>..</Message></Error> (through xml.h).
 * DynamoDB: {"__type": "com.amazonaws.dynamodb.v20120810#Code",
 * "message": ".."} ("Message" too), the code taken after the '#'. */
int efs_aws_error_parse_xml(const char *body, size_t len, char *code, size_t code_size,
			    char *message, size_t message_size);
int efs_aws_error_parse_json(const char *body, size_t len, char *code, size_t code_size,
			     char *message, size_t message_size);

/* The negative errno for an AWS answer: -ENOENT (404, NoSuchBucket,
 * NoSuchKey, ResourceNotFoundException), -EACCES (403: AccessDenied,
 * SignatureDoesNotMatch, InvalidAccessKeyId...), -EEXIST (409), -ECANCELED
 * (412, ConditionalCheckFailedException, TransactionCanceledException),
 * -ERANGE (416), -E2BIG (413, EntityTooLarge), -EAGAIN (429, 5xx and the
 * throttling codes), -EINVAL (any other 4xx). @code may be "". */
int efs_aws_status_errno(long status, const char *code);

/* True when an answer of @status with @code may be retried (5xx, 429,
 * SlowDown, the DynamoDB throttling codes, RequestTimeout). */
bool efs_aws_retryable(long status, const char *code);
/* True when an answer of @status with @code says the request was refused
 * before it was performed (429, SlowDown and the throttling codes): safe
 * to send again even when the request is not idempotent. */
bool efs_aws_throttled(long status, const char *code);

/* A client: the configuration, the HTTP client it sends on (not owned) and
 * the cached signing keys. Thread-safe. */
struct efs_aws_client;

/* 0 or -ENOMEM. @cfg is copied; @http must outlive the client. */
int efs_aws_client_new(const struct efs_aws_config *cfg, struct efs_http_client *http,
		       struct efs_aws_client **out);
/* Wipes the keys and frees. NULL accepted. */
void efs_aws_client_free(struct efs_aws_client *client);
/* The configuration the client was made with. */
const struct efs_aws_config *efs_aws_client_config(const struct efs_aws_client *client);
/* Attempts per request (1..EFS_AWS_MAX_ATTEMPTS) and the first backoff
 * (ms, 1..EFS_AWS_MAX_BACKOFF_MS). 0 or -EINVAL. */
int efs_aws_client_set_retry(struct efs_aws_client *client, int max_attempts, int backoff_ms);

/* Called with each response header (see efs_http_header_fn), and with an
 * empty name before each attempt: forget what an earlier attempt gave. */
typedef efs_http_header_fn efs_aws_header_fn;

struct efs_aws_request {
	const char *method;  /* "GET", "PUT", ... */
	const char *service; /* "s3" or "dynamodb" (signing scope, endpoint) */
	const char *url;     /* the whole URL (efs_aws_s3_target for S3) */
	const char *host;    /* the Host header, as in @url */
	const char *path;    /* the path as sent, encoded ("/" at least) */
	const char *query;   /* as sent, encoded, without '?'; NULL for none */
	/* More "Name: value" headers, sent and signed; NULL-terminated early.
	 * One holding CR or LF is refused (-EINVAL). */
	const char *headers[EFS_AWS_MAX_HEADERS];
	const void *body;    /* from memory, or NULL */
	size_t body_len;
	/* Or streamed (when body is NULL and source is set): never retried. */
	efs_http_source_fn source;
	void *source_ctx;
	int64_t source_len;
	/* The x-amz-content-sha256 value; NULL: the SHA-256 of @body (or of
	 * nothing), UNSIGNED-PAYLOAD for a streamed body. */
	const char *payload_hash;
	/* May be sent more than once (after a lost answer or a 5xx). A
	 * request that may not is still sent again after a throttling answer
	 * (efs_aws_throttled), which says it was not performed. */
	bool retry;
	size_t resp_cap;     /* 0 = EFS_AWS_DEFAULT_RESP_CAP */
	long timeout_ms;     /* per attempt; 0 = the HTTP client's 30 s */
	efs_aws_header_fn header_fn; /* response headers, or NULL */
	void *header_ctx;
};

struct efs_aws_response {
	long status;		/* of the last attempt; 0 when none answered */
	struct efs_buf body;	/* its body (capped), for 2xx and errors */
	int attempts;		/* how many were sent */
	char code[64];		/* AWS's error code, "" on success */
	char message[256];	/* AWS's error message or the transport's */
};

void efs_aws_response_init(struct efs_aws_response *resp);
void efs_aws_response_release(struct efs_aws_response *resp);

/* Sends @req, signed, retrying as the top of this file says. Returns 0 for
 * a 2xx answer; otherwise a negative errno (efs_aws_status_errno for an
 * AWS answer: resp->code and resp->message then hold AWS's error, or a
 * code made from the status when the body has none, such as a HEAD's
 * "NotFound"; a transport error's -ECONNREFUSED, -ETIMEDOUT, -EIO...
 * with resp->message saying what failed; -E2BIG for an answer over
 * resp_cap; -EINVAL for a request that cannot be signed). */
int efs_aws_send(struct efs_aws_client *client, const struct efs_aws_request *req,
		 struct efs_aws_response *resp);

#endif
