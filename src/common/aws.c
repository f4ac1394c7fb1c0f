/* SPDX-License-Identifier: MIT */
/* aws.c - AWS configuration, signed requests with retries, AWS errors.
 *
 * Signing follows sigv4.h: the Host, x-amz-date, x-amz-content-sha256 and
 * x-amz-security-token headers are put in the request here and signed with
 * every caller header. The Host header is sent explicitly so that what is
 * signed is byte for byte what goes out (libcurl would drop a default
 * port). Each attempt is signed again (a retry may cross a second or a
 * day). */
#include "echofs/aws.h"
#include "echofs/hash.h"
#include "echofs/util.h"
#include "echofs/xml.h"

#include <ctype.h>
#include <jansson.h>
#include <pthread.h>
#include <strings.h>
#include <time.h>

/* ---- configuration -------------------------------------------------- */

static bool region_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > EFS_SIGV4_MAX_REGION)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '-'))
			return false;
	return true;
}

int efs_aws_endpoint_parse(const char *url, struct efs_aws_endpoint *out)
{
	struct efs_aws_endpoint e = {.custom = true};
	const char *p;
	if (strncmp(url, "https://", 8) == 0) {
		e.https = true;
		p = url + 8;
	} else if (strncmp(url, "http://", 7) == 0) {
		p = url + 7;
	} else {
		return -EINVAL;
	}
	size_t n = strcspn(p, "/");
	if (n == 0 || n > EFS_AWS_MAX_AUTHORITY || (p[n] == '/' && p[n + 1] != '\0'))
		return -EINVAL;
	bool port = false;
	size_t port_digits = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (port) {
			if (!isdigit(c) || ++port_digits > 5)
				return -EINVAL;
		} else if (c == ':') {
			if (i == 0)
				return -EINVAL;
			port = true;
		} else if (!(isalnum(c) || c == '.' || c == '-')) {
			return -EINVAL; /* no user@, no IPv6 literal, no query */
		}
	}
	if (port && port_digits == 0)
		return -EINVAL;
	memcpy(e.authority, p, n);
	e.authority[n] = '\0';
	*out = e;
	return 0;
}

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

/* Copies @v into @dst of @size; -E2BIG when it does not fit. */
static int copy_capped(char *dst, size_t size, const char *v, size_t len)
{
	if (len >= size)
		return -E2BIG;
	memcpy(dst, v, len);
	dst[len] = '\0';
	return 0;
}

/* Trims spaces and tabs at both ends of [*s, *s + *len). */
static void trim(const char **s, size_t *len)
{
	while (*len > 0 && (**s == ' ' || **s == '\t'))
		(*s)++, (*len)--;
	while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t' || (*s)[*len - 1] == '\r'))
		(*len)--;
}

int efs_aws_credentials_parse(const char *text, size_t len, const char *profile,
			      struct efs_aws_credentials *out, const char **reason)
{
	struct efs_aws_credentials c = {0};
	bool in_profile = false, found = false, have_id = false, have_secret = false;
	const char *why = NULL;
	size_t pos = 0;
	int r = 0;
	if (len > EFS_AWS_MAX_CREDENTIALS_FILE) {
		why = "the credentials file is too large";
		r = -E2BIG;
		goto out;
	}
	if (memchr(text, '\0', len)) {
		why = "the credentials file holds a NUL byte";
		r = -EINVAL;
		goto out;
	}
	while (pos < len) {
		const char *line = text + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t line_len = nl ? (size_t)(nl - line) : len - pos;
		pos += line_len + (nl ? 1 : 0);
		if (line_len > EFS_AWS_MAX_INI_LINE) {
			why = "a line of the credentials file is too long";
			r = -E2BIG;
			goto out;
		}
		trim(&line, &line_len);
		if (line_len == 0 || line[0] == '#' || line[0] == ';')
			continue;
		if (line[0] == '[') {
			if (line[line_len - 1] != ']') {
				why = "a malformed [section] line in the credentials file";
				r = -EINVAL;
				goto out;
			}
			const char *name = line + 1;
			size_t name_len = line_len - 2;
			trim(&name, &name_len);
			in_profile = name_len == strlen(profile) && memcmp(name, profile, name_len) == 0;
			found |= in_profile;
			continue;
		}
		const char *eq = memchr(line, '=', line_len);
		if (!eq || eq == line) {
			why = "a line of the credentials file is neither [section] nor key = value";
			r = -EINVAL;
			goto out;
		}
		const char *key = line, *value = eq + 1;
		size_t key_len = (size_t)(eq - line), value_len = line_len - key_len - 1;
		trim(&key, &key_len);
		trim(&value, &value_len);
		if (!in_profile)
			continue;
#define KEY_IS(k) (key_len == sizeof(k) - 1 && strncasecmp(key, k, key_len) == 0)
		if (KEY_IS("aws_access_key_id")) {
			r = copy_capped(c.access_key_id, sizeof(c.access_key_id), value, value_len);
			have_id = value_len > 0;
		} else if (KEY_IS("aws_secret_access_key")) {
			r = copy_capped(c.secret_access_key, sizeof(c.secret_access_key), value,
					value_len);
			have_secret = value_len > 0;
		} else if (KEY_IS("aws_session_token")) {
			r = copy_capped(c.session_token, sizeof(c.session_token), value, value_len);
		}
#undef KEY_IS
		if (r < 0) {
			why = "a credential in the credentials file is too long";
			goto out;
		}
	}
	if (!found) {
		why = "the profile is not in the credentials file";
		r = -ENOENT;
	} else if (!have_id || !have_secret) {
		why = "the profile lacks aws_access_key_id or aws_secret_access_key";
		r = -EINVAL;
	}
out:
	if (r == 0)
		*out = c;
	else if (reason)
		*reason = why;
	explicit_bzero(&c, sizeof(c));
	return r;
}

/* The shared credentials file: AWS_SHARED_CREDENTIALS_FILE or
 * ~/.aws/credentials, profile AWS_PROFILE or "default". */
static int credentials_from_file(struct efs_aws_config *cfg, const char **reason)
{
	char path[256];
	const char *profile = env("AWS_PROFILE") ? env("AWS_PROFILE") : "default";
	const char *file = env("AWS_SHARED_CREDENTIALS_FILE");
	const char *home = env("HOME");
	int r;
	if (file) {
		if (strlen(file) >= sizeof(path)) {
			*reason = "AWS_SHARED_CREDENTIALS_FILE is too long";
			return -E2BIG;
		}
		efs_strlcpy(path, file, sizeof(path));
	} else if (home && (size_t)snprintf(path, sizeof(path), "%s/.aws/credentials", home) <
				   sizeof(path)) {
		/* path set */
	} else {
		*reason = "no AWS credentials: AWS_ACCESS_KEY_ID is not set and HOME is not "
			  "set or too long for ~/.aws/credentials";
		return -ENOENT;
	}
	char *text = malloc(EFS_AWS_MAX_CREDENTIALS_FILE + 1);
	if (!text)
		return -ENOMEM;
	long n = efs_read_file(path, text, EFS_AWS_MAX_CREDENTIALS_FILE + 1);
	if (n < 0) {
		*reason = "no AWS credentials: AWS_ACCESS_KEY_ID is not set and the shared "
			  "credentials file (AWS_SHARED_CREDENTIALS_FILE, ~/.aws/credentials) "
			  "cannot be read";
		r = -ENOENT;
		goto out;
	}
	r = efs_aws_credentials_parse(text, (size_t)n, profile, &cfg->credentials, reason);
	if (r == -ENOENT)
		*reason = "no AWS credentials: AWS_ACCESS_KEY_ID is not set and the profile "
			  "(AWS_PROFILE, default \"default\") is not in the shared credentials file";
	if (r == 0)
		snprintf(cfg->credentials_source, sizeof(cfg->credentials_source),
			 "shared credentials file %.200s [%.64s]", path, profile);
out:
	explicit_bzero(text, EFS_AWS_MAX_CREDENTIALS_FILE + 1);
	free(text);
	return r;
}

static int endpoint_from_env(struct efs_aws_endpoint *e, const char *var, const char *service,
			     const char *region, const char **reason, const char *why)
{
	const char *url = env(var) ? env(var) : env("AWS_ENDPOINT_URL");
	if (url) {
		if (efs_aws_endpoint_parse(url, e) < 0) {
			*reason = why;
			return -EINVAL;
		}
		return 0;
	}
	memset(e, 0, sizeof(*e));
	e->https = true;
	snprintf(e->authority, sizeof(e->authority), "%s.%s.amazonaws.com", service, region);
	return 0;
}

int efs_aws_config_load(struct efs_aws_config *out, const char **reason)
{
	const char *why = NULL;
	const char **rp = reason ? reason : &why;
	struct efs_aws_config *cfg = calloc(1, sizeof(*cfg));
	int r;
	if (!cfg)
		return -ENOMEM;
	const char *region = env("AWS_REGION") ? env("AWS_REGION") : EFS_AWS_DEFAULT_REGION;
	if (!region_valid(region)) {
		*rp = "AWS_REGION is not a region name ([a-z0-9-], at most 32)";
		r = -EINVAL;
		goto out;
	}
	efs_strlcpy(cfg->region, region, sizeof(cfg->region));
	r = endpoint_from_env(&cfg->s3, "AWS_ENDPOINT_URL_S3", "s3", region, rp,
			      "AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL) is not "
			      "http(s)://host[:port]");
	if (r == 0)
		r = endpoint_from_env(&cfg->dynamodb, "AWS_ENDPOINT_URL_DYNAMODB", "dynamodb",
				      region, rp,
				      "AWS_ENDPOINT_URL_DYNAMODB (or AWS_ENDPOINT_URL) is not "
				      "http(s)://host[:port]");
	if (r < 0)
		goto out;
	const char *id = env("AWS_ACCESS_KEY_ID");
	if (id) {
		const char *secret = env("AWS_SECRET_ACCESS_KEY");
		const char *token = env("AWS_SESSION_TOKEN");
		struct efs_aws_credentials *c = &cfg->credentials;
		if (!secret) {
			*rp = "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not";
			r = -EINVAL;
			goto out;
		}
		if (copy_capped(c->access_key_id, sizeof(c->access_key_id), id, strlen(id)) < 0 ||
		    copy_capped(c->secret_access_key, sizeof(c->secret_access_key), secret,
				strlen(secret)) < 0 ||
		    (token && copy_capped(c->session_token, sizeof(c->session_token), token,
					  strlen(token)) < 0)) {
			*rp = "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_SESSION_TOKEN is too "
			      "long";
			r = -E2BIG;
			goto out;
		}
		efs_strlcpy(cfg->credentials_source, "environment", sizeof(cfg->credentials_source));
	} else {
		r = credentials_from_file(cfg, rp);
		if (r < 0)
			goto out;
	}
	*out = *cfg;
out:
	explicit_bzero(cfg, sizeof(*cfg));
	free(cfg);
	return r;
}

int efs_aws_s3_target(const struct efs_aws_config *cfg, const char *bucket, const char *key,
		      const char *query, struct efs_buf *url, struct efs_buf *host,
		      struct efs_buf *path)
{
	const struct efs_aws_endpoint *e = &cfg->s3;
	bool path_style = e->custom || strchr(bucket, '.');
	int r;
	if (!*bucket || strchr(bucket, '/'))
		return -EINVAL;
	efs_buf_reset(url);
	efs_buf_reset(host);
	efs_buf_reset(path);
	if (path_style) {
		r = efs_buf_puts(host, e->authority);
		if (r == 0)
			r = efs_buf_puts(path, "/");
		if (r == 0)
			r = efs_sigv4_uri_encode(path, bucket, strlen(bucket), false);
		if (r == 0 && key && *key)
			r = efs_buf_puts(path, "/");
	} else {
		r = efs_buf_printf(host, "%s.%s", bucket, e->authority);
		if (r == 0)
			r = efs_buf_puts(path, "/");
	}
	if (r == 0 && key && *key)
		r = efs_sigv4_uri_encode(path, key, strlen(key), true);
	if (r == 0)
		r = efs_buf_printf(url, "%s://%s%s%s%s", e->https ? "https" : "http", host->data,
				   path->data, query && *query ? "?" : "", query ? query : "");
	return r;
}

int efs_aws_dynamodb_target(const struct efs_aws_config *cfg, struct efs_buf *url,
			    struct efs_buf *host)
{
	const struct efs_aws_endpoint *e = &cfg->dynamodb;
	efs_buf_reset(url);
	efs_buf_reset(host);
	int r = efs_buf_puts(host, e->authority);
	if (r == 0)
		r = efs_buf_printf(url, "%s://%s/", e->https ? "https" : "http", e->authority);
	return r;
}

/* ---- errors ---------------------------------------------------------- */

struct xml_error {
	char *code, *message;
	size_t code_size, message_size;
	bool in_error, have_code;
};

static void copy_trunc(char *dst, size_t size, const char *s, size_t len)
{
	len = EFS_MIN(len, size - 1);
	memcpy(dst, s, len);
	dst[len] = '\0';
}

static int xml_error_start(void *ctx, int depth, const char *name)
{
	struct xml_error *x = ctx;
	if (depth == 1)
		x->in_error = strcmp(name, "Error") == 0;
	return 0;
}

static int xml_error_end(void *ctx, int depth, const char *name, const char *text, size_t len)
{
	struct xml_error *x = ctx;
	if (!x->in_error || depth != 2)
		return 0;
	if (strcmp(name, "Code") == 0 && len > 0) {
		copy_trunc(x->code, x->code_size, text, len);
		x->have_code = true;
	} else if (strcmp(name, "Message") == 0) {
		copy_trunc(x->message, x->message_size, text, len);
	}
	return 0;
}

int efs_aws_error_parse_xml(const char *body, size_t len, char *code, size_t code_size,
			    char *message, size_t message_size)
{
	char c[128] = "", m[512] = "";
	struct xml_error x = {.code = c, .message = m, .code_size = sizeof(c),
			      .message_size = sizeof(m)};
	if (len == 0 || efs_xml_parse(body, len, xml_error_start, xml_error_end, &x) < 0 ||
	    !x.have_code)
		return -ENOENT;
	copy_trunc(code, code_size, c, strlen(c));
	copy_trunc(message, message_size, m, strlen(m));
	return 0;
}

int efs_aws_error_parse_json(const char *body, size_t len, char *code, size_t code_size,
			     char *message, size_t message_size)
{
	json_t *root = len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
	int r = -ENOENT;
	if (!json_is_object(root))
		goto out;
	const char *type = json_string_value(json_object_get(root, "__type"));
	if (!type)
		type = json_string_value(json_object_get(root, "code"));
	if (!type || !*type)
		goto out;
	const char *hash = strrchr(type, '#');
	if (hash)
		type = hash + 1;
	if (!*type)
		goto out;
	const char *msg = json_string_value(json_object_get(root, "message"));
	if (!msg)
		msg = json_string_value(json_object_get(root, "Message"));
	copy_trunc(code, code_size, type, strlen(type));
	copy_trunc(message, message_size, msg ? msg : "", msg ? strlen(msg) : 0);
	r = 0;
out:
	json_decref(root);
	return r;
}

static bool code_is(const char *code, const char *what)
{
	return code && strcmp(code, what) == 0;
}

bool efs_aws_throttled(long status, const char *code)
{
	return status == 429 || code_is(code, "SlowDown") ||
	       code_is(code, "ProvisionedThroughputExceededException") ||
	       code_is(code, "ThrottlingException") || code_is(code, "RequestLimitExceeded");
}

bool efs_aws_retryable(long status, const char *code)
{
	return status >= 500 || efs_aws_throttled(status, code) || code_is(code, "RequestTimeout");
}

int efs_aws_status_errno(long status, const char *code)
{
	if (code_is(code, "NoSuchBucket") || code_is(code, "NoSuchKey") ||
	    code_is(code, "ResourceNotFoundException") || status == 404)
		return -ENOENT;
	if (code_is(code, "ConditionalCheckFailedException") ||
	    code_is(code, "TransactionCanceledException") || status == 412)
		return -ECANCELED;
	if (efs_aws_retryable(status, code))
		return -EAGAIN;
	switch (status) {
	case 403:
		return -EACCES;
	case 409:
		return -EEXIST;
	case 413:
		return -E2BIG;
	case 416:
		return -ERANGE;
	default:
		return code_is(code, "AccessDeniedException") ||
				       code_is(code, "UnrecognizedClientException")
			       ? -EACCES
			       : -EINVAL;
	}
}

/* A code for an answer without an error body (a HEAD's, a proxy's). */
static const char *status_code_name(long status)
{
	switch (status) {
	case 301:
		return "PermanentRedirect";
	case 400:
		return "BadRequest";
	case 403:
		return "Forbidden";
	case 404:
		return "NotFound";
	case 409:
		return "Conflict";
	case 412:
		return "PreconditionFailed";
	case 416:
		return "InvalidRange";
	case 429:
		return "TooManyRequests";
	case 503:
		return "ServiceUnavailable";
	default:
		return status >= 500 ? "InternalError" : "UnexpectedStatus";
	}
}

/* ---- the client --------------------------------------------------------- */

/* Signing keys: one per service (s3, dynamodb), derived again when the day
 * changes. */
#define KEY_SLOTS 4

struct efs_aws_client {
	struct efs_aws_config cfg;
	struct efs_http_client *http;
	int max_attempts;
	int backoff_ms;
	pthread_mutex_t lock; /* the key cache */
	struct efs_sigv4_key keys[KEY_SLOTS];
	size_t key_count;
};

int efs_aws_client_new(const struct efs_aws_config *cfg, struct efs_http_client *http,
		       struct efs_aws_client **out)
{
	struct efs_aws_client *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->cfg = *cfg;
	c->http = http;
	c->max_attempts = EFS_AWS_DEFAULT_ATTEMPTS;
	c->backoff_ms = EFS_AWS_DEFAULT_BACKOFF_MS;
	pthread_mutex_init(&c->lock, NULL);
	*out = c;
	return 0;
}

void efs_aws_client_free(struct efs_aws_client *c)
{
	if (!c)
		return;
	pthread_mutex_destroy(&c->lock);
	explicit_bzero(c, sizeof(*c));
	free(c);
}

const struct efs_aws_config *efs_aws_client_config(const struct efs_aws_client *c)
{
	return &c->cfg;
}

int efs_aws_client_set_retry(struct efs_aws_client *c, int max_attempts, int backoff_ms)
{
	if (max_attempts < 1 || max_attempts > EFS_AWS_MAX_ATTEMPTS || backoff_ms < 1 ||
	    backoff_ms > EFS_AWS_MAX_BACKOFF_MS)
		return -EINVAL;
	c->max_attempts = max_attempts;
	c->backoff_ms = backoff_ms;
	return 0;
}

/* Copies into @key the cached key for @amz_date's day and @service,
 * deriving and caching it when absent. */
static int signing_key(struct efs_aws_client *c, const char *amz_date, const char *service,
		       struct efs_sigv4_key *key)
{
	int r = 0;
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->key_count; i++) {
		if (efs_sigv4_key_matches(&c->keys[i], amz_date, c->cfg.region, service)) {
			*key = c->keys[i];
			goto out;
		}
	}
	r = efs_sigv4_key_derive(key, c->cfg.credentials.secret_access_key, amz_date,
				 c->cfg.region, service);
	if (r < 0)
		goto out;
	/* Replace this service's key of an earlier day, else take a free
	 * slot, else the first. */
	size_t slot = c->key_count < KEY_SLOTS ? c->key_count : 0;
	for (size_t i = 0; i < c->key_count; i++)
		if (strcmp(c->keys[i].service, service) == 0)
			slot = i;
	if (slot == c->key_count)
		c->key_count++;
	c->keys[slot] = *key;
out:
	pthread_mutex_unlock(&c->lock);
	return r;
}

void efs_aws_response_init(struct efs_aws_response *resp)
{
	memset(resp, 0, sizeof(*resp));
	efs_buf_init(&resp->body, EFS_AWS_DEFAULT_RESP_CAP);
}

void efs_aws_response_release(struct efs_aws_response *resp)
{
	if (resp)
		efs_buf_release(&resp->body);
}

/* Full jitter: a random wait in [0, min(cap, base * 2^attempt)]. */
static void backoff(const struct efs_aws_client *c, int attempt)
{
	int64_t ceiling = c->backoff_ms;
	for (int i = 1; i < attempt && ceiling < EFS_AWS_MAX_BACKOFF_MS; i++)
		ceiling *= 2;
	ceiling = EFS_MIN(ceiling, (int64_t)EFS_AWS_MAX_BACKOFF_MS);
	uint32_t rnd = 0;
	if (efs_random_bytes(&rnd, sizeof(rnd)) < 0)
		rnd = (uint32_t)efs_mono_ns();
	efs_sleep_ms((int64_t)(rnd % (uint32_t)(ceiling + 1)));
}

/* One signed attempt: fills @call's headers (kept in @hdrs) and runs it. */
struct attempt_headers {
	char host[EFS_AWS_MAX_AUTHORITY + 80];
	char date[32 + EFS_SIGV4_AMZ_DATE_LEN];
	char sha[32 + EFS_SHA256_HEX_LEN];
	char token[32 + EFS_AWS_MAX_TOKEN];
	struct efs_buf auth;
};

static int sign_attempt(struct efs_aws_client *c, const struct efs_aws_request *req,
			const char *payload_hash, struct attempt_headers *ah,
			struct efs_http_call *call)
{
	struct efs_sigv4_header sh[EFS_AWS_MAX_HEADERS + 4];
	char names[EFS_AWS_MAX_HEADERS][128];
	char amz_date[EFS_SIGV4_AMZ_DATE_LEN + 1];
	struct efs_sigv4_key key;
	size_t n = 0, slot = 0;
	int r = efs_sigv4_amz_date(efs_now_ms() / 1000, amz_date);
	if (r < 0)
		return r;
	snprintf(ah->host, sizeof(ah->host), "Host: %s", req->host);
	snprintf(ah->date, sizeof(ah->date), "x-amz-date: %s", amz_date);
	snprintf(ah->sha, sizeof(ah->sha), "x-amz-content-sha256: %s", payload_hash);
	sh[n++] = (struct efs_sigv4_header){"host", req->host};
	sh[n++] = (struct efs_sigv4_header){"x-amz-date", amz_date};
	sh[n++] = (struct efs_sigv4_header){"x-amz-content-sha256", payload_hash};
	call->headers[slot++] = ah->host;
	call->headers[slot++] = ah->date;
	call->headers[slot++] = ah->sha;
	if (c->cfg.credentials.session_token[0]) {
		snprintf(ah->token, sizeof(ah->token), "x-amz-security-token: %s",
			 c->cfg.credentials.session_token);
		sh[n++] = (struct efs_sigv4_header){"x-amz-security-token",
						    c->cfg.credentials.session_token};
		call->headers[slot++] = ah->token;
	}
	for (size_t i = 0; i < EFS_AWS_MAX_HEADERS && req->headers[i]; i++) {
		const char *h = req->headers[i];
		const char *colon = strchr(h, ':');
		if (!colon || colon == h || (size_t)(colon - h) >= sizeof(names[i]) ||
		    strpbrk(h, "\r\n"))
			return -EINVAL; /* no header injection */
		memcpy(names[i], h, (size_t)(colon - h));
		names[i][colon - h] = '\0';
		const char *v = colon + 1;
		while (*v == ' ')
			v++;
		sh[n++] = (struct efs_sigv4_header){names[i], v};
		if (slot >= EFS_ARRAY_SIZE(call->headers))
			return -E2BIG;
		call->headers[slot++] = h;
	}
	struct efs_sigv4_request sreq = {
		.method = req->method,
		.path = req->path,
		.query = req->query,
		.headers = sh,
		.header_count = n,
		.payload_hash = payload_hash,
		.flags = strcmp(req->service, "s3") == 0 ? EFS_SIGV4_S3 : 0,
	};
	r = signing_key(c, amz_date, req->service, &key);
	if (r == 0)
		r = efs_buf_puts(&ah->auth, "Authorization: ");
	if (r == 0) {
		struct efs_buf value;
		efs_buf_init(&value, 2048);
		r = efs_sigv4_authorization(&sreq, c->cfg.credentials.access_key_id, amz_date,
					    &key, &value, NULL);
		if (r == 0)
			r = efs_buf_puts(&ah->auth, value.data);
		efs_buf_release(&value);
	}
	efs_sigv4_key_wipe(&key);
	if (r < 0)
		return r;
	if (slot >= EFS_ARRAY_SIZE(call->headers))
		return -E2BIG;
	call->headers[slot++] = ah->auth.data;
	return 0;
}

int efs_aws_send(struct efs_aws_client *c, const struct efs_aws_request *req,
		 struct efs_aws_response *resp)
{
	char hash[EFS_SHA256_HEX_LEN + 1];
	const char *payload_hash = req->payload_hash;
	bool streamed = !req->body && req->source;
	bool json = strcmp(req->service, "s3") != 0;
	struct attempt_headers *ah = calloc(1, sizeof(*ah));
	int r = -EIO;
	if (!ah)
		return -ENOMEM;
	efs_buf_init(&ah->auth, 4096);
	if (!payload_hash) {
		if (streamed) {
			payload_hash = EFS_SIGV4_UNSIGNED_PAYLOAD;
		} else {
			efs_sha256_hex(req->body ? req->body : "", req->body ? req->body_len : 0,
				       hash);
			payload_hash = hash;
		}
	}
	resp->status = 0;
	resp->attempts = 0;
	resp->code[0] = resp->message[0] = '\0';
	/* Not streamed: up to max_attempts; a request that must not be
	 * performed twice is sent again only after a throttling answer. */
	int max = !streamed ? c->max_attempts : 1;
	for (int attempt = 1; attempt <= max; attempt++) {
		struct efs_http_call call;
		efs_http_call_init(&call, req->method, req->url);
		efs_buf_reset(&ah->auth);
		r = sign_attempt(c, req, payload_hash, ah, &call);
		if (r < 0) {
			snprintf(resp->message, sizeof(resp->message), "cannot sign the request: %s",
				 strerror(-r));
			efs_http_call_release(&call);
			break;
		}
		/* A PUT or POST without a body still says Content-Length: 0. */
		call.body = req->body ? req->body : (streamed ? NULL : "");
		call.body_len = req->body ? req->body_len : 0;
		if (!req->body && !streamed && (strcmp(req->method, "GET") == 0 ||
						strcmp(req->method, "HEAD") == 0 ||
						strcmp(req->method, "DELETE") == 0))
			call.body = NULL;
		call.source = req->source;
		call.source_ctx = req->source_ctx;
		call.source_len = req->source_len;
		call.resp_cap = req->resp_cap ? req->resp_cap : EFS_AWS_DEFAULT_RESP_CAP;
		call.timeout_ms = req->timeout_ms;
		call.header_fn = req->header_fn;
		call.header_ctx = req->header_ctx;
		resp->attempts = attempt;
		if (req->header_fn) /* a new attempt: forget the last one's headers */
			req->header_fn(req->header_ctx, "", 0, "", 0);
		r = efs_http_call_run(c->http, &call);
		resp->status = call.status;
		resp->code[0] = resp->message[0] = '\0';
		bool retry;
		if (r < 0) {
			efs_strlcpy(resp->message, call.errmsg, sizeof(resp->message));
			/* A connection failure: the request may or may not have
			 * been performed. An answer over the cap, a certificate
			 * refused, a local failure (-ENOMEM...) are final. */
			retry = req->retry && (r == -ECONNREFUSED || r == -ETIMEDOUT || r == -EIO ||
					       r == -ECONNRESET || r == -EHOSTUNREACH);
		} else {
			efs_buf_release(&resp->body);
			resp->body = call.resp;
			efs_buf_init(&call.resp, 0);
			if (call.status >= 200 && call.status < 300) {
				efs_http_call_release(&call);
				r = 0;
				break;
			}
			const char *b = resp->body.data ? resp->body.data : "";
			int p = json ? efs_aws_error_parse_json(b, resp->body.len, resp->code,
								sizeof(resp->code), resp->message,
								sizeof(resp->message))
				     : efs_aws_error_parse_xml(b, resp->body.len, resp->code,
							       sizeof(resp->code), resp->message,
							       sizeof(resp->message));
			if (p < 0) {
				efs_strlcpy(resp->code, status_code_name(call.status),
					    sizeof(resp->code));
				snprintf(resp->message, sizeof(resp->message),
					 "HTTP %ld without an AWS error body", call.status);
			}
			r = efs_aws_status_errno(call.status, resp->code);
			retry = req->retry ? efs_aws_retryable(call.status, resp->code)
					   : efs_aws_throttled(call.status, resp->code);
		}
		efs_http_call_release(&call);
		if (!retry || attempt == max)
			break;
		backoff(c, attempt);
	}
	efs_buf_release(&ah->auth);
	explicit_bzero(ah, sizeof(*ah));
	free(ah);
	return r;
}
