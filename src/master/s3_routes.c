/* SPDX-License-Identifier: MIT */
/* s3_routes.c - the S3 listener's one route: names the bucket and key,
 * authenticates, refuses what is not implemented, dispatches (contract
 * in s3_routes.h). */
#include "master/s3_routes.h"
#include "echofs/hash.h"
#include "echofs/log.h"
#include "echofs/util.h"
#include "master/chunk_backend.h"
#include "master/s3_bucket.h"
#include "master/s3_hold.h"
#include "master/s3_multipart.h"
#include "master/s3_object.h"
#include "master/s3_xml.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The head is capped by the HTTP server (100 fields): room for all. */
#define MAX_AUTH_HEADERS 128
#define MAX_QUERY_NAME 64
/* The decoded path: "/" bucket "/" key, with room to tell "too long". */
#define MAX_PATH (1 + EFS_S3_BUCKET_MAX + 1 + EFS_S3_KEY_MAX + 2)

static int percent_decode(const char *in, size_t len, char *out, size_t size);

/* ---- errors ----------------------------------------------------------- */

/* The resource an error names: /bucket/key as the client addressed it. */
static void resource_of(const struct efs_s3_req *s, char *out, size_t size)
{
	snprintf(out, size, "/%s%s%s", s->bucket, s->has_key ? "/" : "", s->has_key ? s->key : "");
}

int efs_s3_error(struct efs_s3_req *s, unsigned status, const char *code, const char *fmt, ...)
{
	char message[512], resource[MAX_PATH + 8];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	resource_of(s, resource, sizeof(resource));
	if (s->hold) {
		struct efs_s3_xml x;
		efs_s3_xml_error(&x, code, message, resource, s->request_id);
		efs_s3_hold_document(s, status, &x);
		return 0;
	}
	efs_s3_reply_error(s->http, status, code, resource, s->request_id, "%s", message);
	return 0;
}

int efs_s3_check_signed_body(struct efs_s3_req *s, const char *data, size_t len)
{
	char sha[EFS_SHA256_HEX_LEN + 1];
	if (s->principal.payload != EFS_S3_PAYLOAD_SIGNED)
		return 0;
	efs_sha256_hex(data ? data : "", len, sha);
	if (strcasecmp(sha, s->principal.payload_sha256) == 0)
		return 0;
	efs_s3_error(s, 400, "XAmzContentSHA256Mismatch",
		     "The provided 'x-amz-content-sha256' header does not match what was "
		     "computed.");
	return -EINVAL;
}

int efs_s3_reply_xml(struct efs_s3_req *s, unsigned status, struct efs_s3_xml *x)
{
	if (efs_s3_hold_document(s, status, x))
		return 0;
	return efs_s3_xml_reply(s->http, status, x);
}

int efs_s3_error_store(struct efs_s3_req *s, int err, const char *what)
{
	if (err == -EAGAIN) {
		efs_warn("s3 %s: the metadata store is unavailable (request %s)", what,
			 s->request_id);
		return efs_s3_error(s, 503, "ServiceUnavailable",
				    "the metadata store is unavailable; retry shortly");
	}
	if (err == -ENOTSUP) { /* an operation this metadata backend lacks (meta.c) */
		efs_info("s3 %s: not supported by the %s metadata backend (request %s)", what,
			 efs_meta_backend(s->m->meta), s->request_id);
		return efs_s3_error(s, 501, "NotImplemented",
				    "%s is not implemented with this metadata backend", what);
	}
	efs_error("s3 %s: metadata store error: %s (request %s)", what, strerror(-err),
		  s->request_id);
	return efs_s3_error(s, 500, "InternalError", "internal error (request %s)", s->request_id);
}

int efs_s3_own_bucket(struct efs_s3_req *s, struct efs_bucket_info *out)
{
	int r = efs_meta_bucket_get(s->m->meta, s->bucket, out);
	if (r == -ENOENT)
		efs_s3_error(s, 404, "NoSuchBucket", "The specified bucket does not exist");
	else if (r < 0)
		efs_s3_error_store(s, r, "bucket lookup");
	else if (strcmp(out->owner, s->principal.owner) != 0)
		efs_s3_error(s, 403, "AccessDenied", "Access Denied");
	return r < 0 || strcmp(out->owner, s->principal.owner) != 0 ? -EACCES : 0;
}

int efs_s3_writable(struct efs_s3_req *s, const char *what)
{
	char why[160];
	int r = efs_chunk_backend_writable(s->m->chunks, 0, why, sizeof(why));
	if (r == -ENOSPC)
		efs_s3_error(s, 503, "SlowDown", "%s", why);
	else if (r < 0)
		efs_s3_error_store(s, r, what);
	return r < 0 ? -EAGAIN : 0;
}

const char *efs_s3_query(struct efs_s3_req *s, const char *name)
{
	return efs_http_query(s->http, name);
}

bool efs_s3_query_has(struct efs_s3_req *s, const char *name)
{
	for (const char *p = s->raw_query; p && *p;) {
		size_t len = strcspn(p, "&"), nlen = strcspn(p, "=&");
		char decoded[MAX_QUERY_NAME + 1];
		if (nlen && percent_decode(p, nlen, decoded, sizeof(decoded)) == 0 &&
		    strcmp(decoded, name) == 0)
			return true;
		p += len;
		if (*p == '&')
			p++;
	}
	return false;
}

/* ---- the request ------------------------------------------------------ */

/* Query parameters the access log leaves out: a presigned URL's
 * credentials (the signature would let a reader of the log replay it).
 * @name (@len bytes) as sent: compared decoded; one that does not decode
 * is left out too. */
static bool query_secret(const char *name, size_t len)
{
	static const char *const secrets[] = {"X-Amz-Signature", "X-Amz-Credential",
					      "X-Amz-Security-Token", NULL};
	char decoded[MAX_QUERY_NAME + 1];
	if (len > MAX_QUERY_NAME || percent_decode(name, len, decoded, sizeof(decoded)) < 0)
		return true;
	for (const char *const *n = secrets; *n; n++)
		if (strcasecmp(decoded, *n) == 0)
			return true;
	return false;
}

/* The access log shows the request's path and query (which operation:
 * ?delete, ?list-type=2&prefix=...), the query without its secrets. */
static int set_log_target(struct efs_s3_req *s)
{
	const char *target = efs_http_raw_target(s->http);
	const char *q = strchr(target, '?');
	char line[EFS_HTTP_LOG_TARGET_MAX + 1];
	size_t o = 0, path_len = q ? (size_t)(q - target) : strlen(target);

	if (!q)
		return efs_http_set_log_target(s->http, target);
	o = (size_t)snprintf(line, sizeof(line), "%.*s", (int)path_len, target);
	for (const char *p = q + 1; *p && o < sizeof(line) - 1;) {
		size_t len = strcspn(p, "&"), nlen = strcspn(p, "=&");
		if (len && !query_secret(p, nlen))
			o += (size_t)snprintf(line + o, sizeof(line) - o, "%c%.*s",
					      strchr(line, '?') ? '&' : '?', (int)len, p);
		p += len;
		if (*p == '&')
			p++;
	}
	return efs_http_set_log_target(s->http, line);
}

static void s3_req_free(void *state)
{
	struct efs_s3_req *s = state;
	if (!s)
		return;
	efs_s3_hold_end(s); /* a held operation uses the op until it returns */
	if (s->op_free)
		s->op_free(s->op);
	efs_s3_chunked_free(s->chunked);
	efs_sigv4_key_wipe(&s->principal.key);
	efs_buf_release(&s->small_body);
	free(s);
}

/* Percent-decodes @in (@len bytes) into @out (@size bytes). -EINVAL for a
 * bad escape or an encoded NUL, -E2BIG when it does not fit. */
static int percent_decode(const char *in, size_t len, char *out, size_t size)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == '%') {
			if (i + 2 >= len)
				return -EINVAL;
			int hi = efs_hex_value((unsigned char)in[i + 1]);
			int lo = efs_hex_value((unsigned char)in[i + 2]);
			if (hi < 0 || lo < 0)
				return -EINVAL;
			c = (unsigned char)(hi * 16 + lo);
			i += 2;
			if (c == 0)
				return -EINVAL;
		}
		if (o + 1 >= size)
			return -E2BIG;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

/* Virtual-host style: with @domain set and a @host of
 * "<bucket>.<domain>[:port]", the bucket's name (into @out). */
static bool host_bucket(const char *host, const char *domain, char *out, size_t size)
{
	if (!domain || !*domain || !host)
		return false;
	size_t hlen = strcspn(host, ":"), dlen = strlen(domain);
	if (hlen <= dlen + 1 || host[hlen - dlen - 1] != '.' ||
	    strncasecmp(host + hlen - dlen, domain, dlen) != 0)
		return false;
	size_t blen = hlen - dlen - 1;
	if (blen >= size)
		blen = size - 1; /* too long: refused as an invalid name */
	for (size_t i = 0; i < blen; i++)
		out[i] = (char)tolower((unsigned char)host[i]);
	out[blen] = '\0';
	return true;
}

int efs_s3_target_parse(const char *target, const char *host, const char *domain,
			struct efs_s3_target *out, const char **code)
{
	const char *q = strchr(target, '?');
	size_t path_len = q ? (size_t)(q - target) : strlen(target);
	char path[MAX_PATH + 1];
	char vhost[EFS_S3_BUCKET_MAX + 2];
	struct efs_s3_target t;

	memset(&t, 0, sizeof(t));
	int r = percent_decode(target, path_len, path, sizeof(path));
	if (r == -E2BIG)
		return *code = "KeyTooLongError", -EINVAL;
	if (r < 0 || path[0] != '/')
		return *code = "InvalidURI", -EINVAL;
	const char *rest = path + 1;
	if (host_bucket(host, domain, vhost, sizeof(vhost))) {
		if (strlen(vhost) > EFS_S3_BUCKET_MAX)
			return *code = "InvalidBucketName", -EINVAL;
		efs_strlcpy(t.bucket, vhost, sizeof(t.bucket));
	} else if (*rest) {
		size_t blen = strcspn(rest, "/");
		if (blen > EFS_S3_BUCKET_MAX)
			return *code = "InvalidBucketName", -EINVAL;
		memcpy(t.bucket, rest, blen);
		t.bucket[blen] = '\0';
		rest += blen;
		if (*rest == '/')
			rest++;
		else
			rest = NULL; /* "/bucket": no key */
	} else {
		rest = NULL;
	}
	if (rest && *rest) {
		size_t klen = strlen(rest);
		if (klen > EFS_S3_KEY_MAX)
			return *code = "KeyTooLongError", -EINVAL;
		if (!efs_utf8_valid(rest, klen))
			return *code = "InvalidURI", -EINVAL;
		memcpy(t.key, rest, klen + 1);
		t.has_key = true;
	}
	*out = t;
	return 0;
}

/* Names the bucket and key from the request target. Replies and returns
 * -EINVAL when they cannot be. */
static int parse_target(struct efs_s3_req *s, const char **query)
{
	const char *target = efs_http_raw_target(s->http);
	const char *q = strchr(target, '?');
	struct efs_s3_target *t = malloc(sizeof(*t));
	const char *code = "InvalidURI";

	if (!t)
		return -ENOMEM;
	*query = q ? q + 1 : NULL;
	int r = efs_s3_target_parse(target, efs_http_header(s->http, "Host"), s->m->cfg.s3_domain,
				    t, &code);
	if (r == 0) {
		memcpy(s->bucket, t->bucket, sizeof(s->bucket));
		memcpy(s->key, t->key, sizeof(s->key));
		s->has_key = t->has_key;
	} else if (strcmp(code, "KeyTooLongError") == 0) {
		efs_s3_error(s, 400, code, "Your key is too long");
	} else if (strcmp(code, "InvalidBucketName") == 0) {
		efs_s3_error(s, 400, code, "The specified bucket is not valid.");
	} else {
		efs_s3_error(s, 400, code, "Couldn't parse the specified URI (keys are UTF-8).");
	}
	free(t);
	return r;
}

struct header_list {
	struct efs_sigv4_header items[MAX_AUTH_HEADERS];
	size_t count;
};

static int collect_header(void *ctx, const char *name, const char *value)
{
	struct header_list *l = ctx;
	if (l->count >= MAX_AUTH_HEADERS)
		return -E2BIG;
	l->items[l->count].name = name;
	l->items[l->count].value = value;
	l->count++;
	return 0;
}

/* Verifies the signature. Replies and returns -EACCES when refused. */
static int authenticate(struct efs_s3_req *s, const char *raw_query)
{
	struct header_list *headers = calloc(1, sizeof(*headers));
	struct efs_s3_auth_error err;
	char path[MAX_PATH * 3 + 1];
	const char *target = efs_http_raw_target(s->http);
	size_t path_len = raw_query ? (size_t)(raw_query - 1 - target) : strlen(target);

	if (!headers)
		return -ENOMEM;
	if (efs_http_headers(s->http, collect_header, headers) < 0) {
		free(headers);
		return efs_s3_error(
			   s, 400, "RequestHeaderSectionTooLarge",
			   "Your request header section exceeds the maximum allowed size."),
		       -EACCES;
	}
	if (path_len >= sizeof(path))
		path_len = sizeof(path) - 1; /* over the target cap anyway */
	memcpy(path, target, path_len);
	path[path_len] = '\0';
	struct efs_s3_auth_request rq = {
	    .method = s->http->method,
	    .path = path,
	    .query = raw_query,
	    .headers = headers->items,
	    .header_count = headers->count,
	};
	memset(&err, 0, sizeof(err));
	int r = efs_s3_auth_verify(s->m->s3_auth, &rq, efs_now_ms() / 1000, &s->principal, &err);
	free(headers);
	if (r == 0) {
		efs_strlcpy(s->http->user, s->principal.owner, sizeof(s->http->user));
		return 0;
	}
	if (err.http_status >= 500)
		efs_warn("s3 %s %s: authentication could not be checked: %s (request %s)",
			 s->http->method, s->http->path, err.message ? err.message : "?",
			 s->request_id);
	efs_s3_error(s, err.http_status ? (unsigned)err.http_status : 403,
		     err.code ? err.code : "AccessDenied", "%s",
		     err.message ? err.message : "Access Denied");
	return -EACCES;
}

/* ---- what is not implemented ---------------------------------------- */

/* Query parameters every request may carry: a presigned URL's, and the
 * operation hint newer SDKs add. */
static bool query_always_allowed(const char *name)
{
	return strncasecmp(name, "X-Amz-", 6) == 0 || strcmp(name, "x-id") == 0;
}

static bool in_list(const char *name, const char *const *list)
{
	for (; list && *list; list++)
		if (strcmp(name, *list) == 0)
			return true;
	return false;
}

/* The first query parameter of @raw_query not in @allowed, into @out
 * (decoded, cut to @size); false when every one is allowed. */
static bool unsupported_param(const char *raw_query, const char *const *allowed, char *out,
			      size_t size)
{
	const char *p = raw_query;
	while (p && *p) {
		size_t len = strcspn(p, "&");
		size_t nlen = strcspn(p, "=&");
		char name[MAX_QUERY_NAME + 1];
		if (nlen > 0) {
			if (nlen > MAX_QUERY_NAME ||
			    percent_decode(p, nlen, name, sizeof(name)) < 0) {
				efs_strlcpy(out, "?", size);
				return true;
			}
			if (!query_always_allowed(name) && !in_list(name, allowed)) {
				efs_strlcpy(out, name, size);
				return true;
			}
		}
		p += len;
		if (*p == '&')
			p++;
	}
	return false;
}

static const char *const BUCKET_GET_PARAMS[] = {
    "location",		  "list-type",	 "prefix",   "delimiter",
    "continuation-token", "start-after", "max-keys", "encoding-type",
    "fetch-owner",	  "marker",	 "versioning", NULL};
static const char *const UPLOADS_GET_PARAMS[] = {
    "uploads",     "prefix",        "delimiter", "key-marker", "upload-id-marker",
    "max-uploads", "encoding-type", NULL};

/* Conditional headers are implemented for GetObject/HeadObject, and
 * If-Match / If-None-Match / If-Unmodified-Since for PutObject and
 * CopyObject (s3_object.c). */
static bool condition_supported(struct efs_s3_req *s, const char *header)
{
	const char *method = s->http->method;
	if (!s->has_key)
		return false;
	if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
		return true;
	return strcmp(method, "PUT") == 0 &&
	       (strcmp(header, "If-Match") == 0 || strcmp(header, "If-None-Match") == 0 ||
		strcmp(header, "If-Unmodified-Since") == 0);
}

/* PutObject, CopyObject (a PUT of a key that is not UploadPart) or
 * CreateMultipartUpload (POST ?uploads). */
static bool policy_writer(struct efs_s3_req *s)
{
	const char *method = s->http->method;
	if (!s->has_key)
		return false;
	if (strcmp(method, "PUT") == 0)
		return !efs_s3_query_has(s, "uploadId") && !efs_s3_query_has(s, "partNumber");
	return strcmp(method, "POST") == 0 && efs_s3_query_has(s, "uploads");
}

/* Request headers whose meaning we do not implement: answered 501 rather
 * than ignored (a conditional request must not succeed regardless). */
static const char *unsupported_header(struct efs_s3_req *s)
{
	static const char *const conditions[] = {"If-Match", "If-None-Match", "If-Modified-Since",
						 "If-Unmodified-Since", NULL};
	static const char *const names[] = {"x-amz-tagging",
					    "x-amz-server-side-encryption",
					    "x-amz-server-side-encryption-customer-algorithm",
					    "x-amz-object-lock-mode",
					    "x-amz-object-lock-legal-hold",
					    "x-amz-website-redirect-location",
					    "x-amz-grant-read",
					    "x-amz-grant-write",
					    "x-amz-grant-full-control",
					    "x-amz-bucket-object-lock-enabled",
					    NULL};
	for (const char *const *n = conditions; *n; n++)
		if (efs_http_header(s->http, *n) && !condition_supported(s, *n))
			return *n;
	for (const char *const *n = names; *n; n++)
		if (efs_http_header(s->http, *n))
			return *n;
	const char *acl = efs_http_header(s->http, "x-amz-acl");
	if (acl && strcmp(acl, "private") != 0)
		return "x-amz-acl";
	/* PutObject, CopyObject and CreateMultipartUpload take a storage
	 * class or policy (s3_policy.h); other operations only STANDARD. */
	if (policy_writer(s))
		return NULL;
	const char *sc = efs_http_header(s->http, "x-amz-storage-class");
	if (sc && strcmp(sc, "STANDARD") != 0)
		return "x-amz-storage-class";
	if (efs_http_header(s->http, "x-echofs-policy"))
		return "x-echofs-policy";
	return NULL;
}

/* ---- dispatch --------------------------------------------------------- */

/* The operations on one multipart upload of a key (?uploadId, with
 * ?partNumber for UploadPart): sets s->on_end or the begin step, or
 * replies. */
static int dispatch_upload(struct efs_s3_req *s, const char *raw_query)
{
	static const char *const part_params[] = {"partNumber", "uploadId", NULL};
	static const char *const list_params[] = {"uploadId", "max-parts", "part-number-marker",
						  "encoding-type", NULL};
	static const char *const abort_params[] = {"uploadId", NULL};
	const char *method = s->http->method;
	const char *const *allowed = NULL;
	char param[MAX_QUERY_NAME + 1];

	if (strcmp(method, "PUT") == 0)
		allowed = part_params;
	else if (strcmp(method, "GET") == 0)
		allowed = list_params;
	else if (strcmp(method, "DELETE") == 0)
		allowed = abort_params;
	/* (GET/HEAD ?partNumber without ?uploadId is GetObject of a part.) */
	if (!allowed || (strcmp(method, "PUT") != 0 && efs_s3_query_has(s, "partNumber")))
		return efs_s3_error(s, 501, "NotImplemented",
				    "%s with ?partNumber and ?uploadId is not implemented by this "
				    "server",
				    method);
	if (unsupported_param(raw_query, allowed, param, sizeof(param)))
		return efs_s3_error(s, 501, "NotImplemented",
				    "?%s is not implemented by this server (docs/S3.md, \"Not "
				    "supported yet\")",
				    param);
	if (!efs_s3_query_has(s, "uploadId"))
		return efs_s3_error(s, 400, "InvalidArgument",
				    "partNumber needs an uploadId (UploadPart)");
	if (strcmp(method, "PUT") == 0)
		return efs_s3_upload_part_begin(s);
	s->on_end = strcmp(method, "GET") == 0 ? efs_s3_list_parts : efs_s3_abort_upload;
	return 0;
}

/* Chooses the operation; sets s->on_end (and for PutObject its body
 * step), or replies. */
static int dispatch(struct efs_s3_req *s, const char *raw_query)
{
	const char *method = s->http->method;
	char param[MAX_QUERY_NAME + 1];
	const char *header;

	if ((header = unsupported_header(s)))
		return efs_s3_error(s, 501, "NotImplemented",
				    "A header you provided implies functionality that is not "
				    "implemented: %s",
				    header);
	if (!s->bucket[0]) {
		if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
			return efs_s3_error(s, 405, "MethodNotAllowed",
					    "The specified method is not allowed against this "
					    "resource.");
		if (unsupported_param(raw_query, NULL, param, sizeof(param)))
			goto not_implemented;
		s->on_end = efs_s3_list_buckets;
		return 0;
	}
	if (strcmp(method, "POST") == 0 && !s->has_key && efs_s3_query_has(s, "delete")) {
		static const char *const delete_params[] = {"delete", NULL};
		if (unsupported_param(raw_query, delete_params, param, sizeof(param)))
			goto not_implemented;
		return efs_s3_delete_objects_begin(s);
	}
	if (strcmp(method, "POST") == 0 && s->has_key && efs_s3_query_has(s, "uploads")) {
		static const char *const create_params[] = {"uploads", NULL};
		if (unsupported_param(raw_query, create_params, param, sizeof(param)))
			goto not_implemented;
		s->on_end = efs_s3_create_upload;
		return 0;
	}
	if (strcmp(method, "POST") == 0 && s->has_key && efs_s3_query_has(s, "uploadId")) {
		static const char *const complete_params[] = {"uploadId", NULL};
		if (unsupported_param(raw_query, complete_params, param, sizeof(param)))
			goto not_implemented;
		return efs_s3_complete_upload_begin(s);
	}
	/* GetObject/HeadObject of one part: ?partNumber without ?uploadId. */
	if (s->has_key && !efs_s3_query_has(s, "uploadId") && efs_s3_query_has(s, "partNumber") &&
	    (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)) {
		static const char *const part_get_params[] = {"partNumber", NULL};
		if (unsupported_param(raw_query, part_get_params, param, sizeof(param)))
			goto not_implemented;
		s->on_end = efs_s3_get_object;
		return 0;
	}
	if (s->has_key && (efs_s3_query_has(s, "uploadId") || efs_s3_query_has(s, "partNumber")))
		return dispatch_upload(s, raw_query);
	if (strcmp(method, "POST") == 0 || strcmp(method, "OPTIONS") == 0 ||
	    strcmp(method, "PATCH") == 0) {
		efs_strlcpy(param, method, sizeof(param));
		goto not_implemented;
	}
	if (!s->has_key) {
		bool get = strcmp(method, "GET") == 0;
		bool uploads = get && efs_s3_query_has(s, "uploads");
		if (unsupported_param(raw_query,
				      uploads ? UPLOADS_GET_PARAMS : get ? BUCKET_GET_PARAMS : NULL,
				      param, sizeof(param)))
			goto not_implemented;
		if (uploads)
			s->on_end = efs_s3_list_uploads;
		else if (get && efs_s3_query_has(s, "location"))
			s->on_end = efs_s3_bucket_location;
		else if (get && efs_s3_query_has(s, "versioning"))
			s->on_end = efs_s3_bucket_versioning;
		else if (get)
			s->on_end = efs_s3_list_objects;
		else if (strcmp(method, "PUT") == 0)
			s->on_end = efs_s3_create_bucket;
		else if (strcmp(method, "DELETE") == 0)
			s->on_end = efs_s3_delete_bucket;
		else if (strcmp(method, "HEAD") == 0)
			s->on_end = efs_s3_head_bucket;
		else
			return efs_s3_error(s, 405, "MethodNotAllowed",
					    "The specified method is not allowed against this "
					    "resource.");
		return 0;
	}
	if (unsupported_param(raw_query, NULL, param, sizeof(param)))
		goto not_implemented;
	if (strcmp(method, "PUT") == 0 && efs_http_header(s->http, "x-amz-copy-source"))
		return efs_s3_copy_object_begin(s);
	if (strcmp(method, "PUT") == 0)
		return efs_s3_put_object_begin(s);
	if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
		s->on_end = efs_s3_get_object;
	else if (strcmp(method, "DELETE") == 0)
		s->on_end = efs_s3_delete_object;
	else
		return efs_s3_error(s, 405, "MethodNotAllowed",
				    "The specified method is not allowed against this resource.");
	return 0;
not_implemented:
	return efs_s3_error(s, 501, "NotImplemented",
			    "%s%s is not implemented by this server (docs/S3.md, \"Not supported "
			    "yet\")",
			    strcmp(param, method) == 0 ? "" : "?", param);
}

/* A callback's failure that did not reply becomes S3's 500/503. */
static int finish_callback(struct efs_s3_req *s, int r, const char *step)
{
	if (r >= 0 || efs_http_replied(s->http))
		return 0;
	if (r == -EAGAIN)
		return efs_s3_error_store(s, r, step);
	efs_error("s3 %s %s: %s failed: %s (request %s)", s->http->method, s->http->path, step,
		  strerror(-r), s->request_id);
	return efs_s3_error(s, 500, "InternalError", "internal error (request %s)", s->request_id);
}

static int s3_begin(struct efs_http_req *req)
{
	struct efs_s3_req *s = calloc(1, sizeof(*s));
	const char *raw_query;
	int r;

	if (!s)
		return -ENOMEM;
	s->m = efs_http_ctx(req);
	s->http = req;
	req->state = s;
	req->state_free = s3_req_free;
	efs_buf_init(&s->small_body, EFS_S3_SMALL_BODY_MAX);
	if ((r = efs_random_hex(s->request_id, EFS_S3_REQUEST_ID_LEN / 2)) < 0)
		return r;
	for (char *p = s->request_id; *p; p++)
		*p = (char)toupper((unsigned char)*p);
	efs_http_add_header(req, "x-amz-request-id", s->request_id);
	efs_http_add_header(req, "Server", "EchoFS");
	if ((r = set_log_target(s)) < 0)
		return r;
	if ((r = parse_target(s, &raw_query)) < 0)
		return r == -EINVAL ? 0 : r;
	s->raw_query = raw_query;
	if ((r = authenticate(s, raw_query)) < 0)
		return finish_callback(s, r == -EACCES ? 0 : r, "authentication");
	if (s->principal.payload == EFS_S3_PAYLOAD_STREAMING &&
	    (r = efs_s3_chunked_new(&s->principal, &s->chunked)) < 0)
		return finish_callback(s, r, "aws-chunked decoder");
	r = dispatch(s, raw_query);
	return finish_callback(s, r, "request");
}

/* Where decoded body bytes go: the operation's body step, or the small
 * buffer. */
static int body_sink(void *ctx, const char *data, size_t len)
{
	struct efs_s3_req *s = ctx;
	if (s->on_body)
		return s->on_body(s, data, len);
	if (efs_buf_append(&s->small_body, data, len) < 0) {
		efs_s3_error(s, 400, "MaxMessageLengthExceeded",
			     "Your request was too big (at most %d bytes here).",
			     EFS_S3_SMALL_BODY_MAX);
		return -E2BIG;
	}
	return 0;
}

/* The chunked decoder's error @r as S3's reply (unless a sink replied). */
static int chunked_failure(struct efs_s3_req *s, int r)
{
	if (efs_http_replied(s->http))
		return 0;
	if (r == -EACCES)
		return efs_s3_error(s, 403, "SignatureDoesNotMatch",
				    "The request signature we calculated does not match the "
				    "signature you provided (an aws-chunked chunk).");
	if (r == -EINVAL || r == -E2BIG)
		return efs_s3_error(s, 400, "IncompleteBody",
				    "The aws-chunked body is malformed or incomplete.");
	return finish_callback(s, r, "body");
}

static int s3_body(struct efs_http_req *req, const char *data, size_t len)
{
	struct efs_s3_req *s = req->state;
	if (s->chunked) {
		int r = efs_s3_chunked_feed(s->chunked, data, len, body_sink, s);
		return r < 0 ? chunked_failure(s, r) : 0;
	}
	int r = body_sink(s, data, len);
	return finish_callback(s, r, "body");
}

static int s3_handle(struct efs_http_req *req)
{
	struct efs_s3_req *s = req->state;
	int r;
	if (s->chunked && (r = efs_s3_chunked_finish(s->chunked)) < 0)
		return chunked_failure(s, r);
	if (!s->on_end)
		return efs_s3_error(s, 500, "InternalError", "no operation");
	r = s->on_end(s);
	return finish_callback(s, r, "operation");
}

const struct efs_http_route efs_s3_routes[] = {
    {"*", "*", EFS_AUTH_NONE, .begin = s3_begin, .body = s3_body, .handle = s3_handle},
};
const size_t efs_s3_route_count = sizeof(efs_s3_routes) / sizeof(efs_s3_routes[0]);
