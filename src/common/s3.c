/* SPDX-License-Identifier: MIT */
/* s3.c - S3 object calls built on efs_aws_send: each builds its URL with
 * efs_aws_s3_target, its headers, and reads what it needs from the answer's
 * headers (a HEAD has no body) or its XML (ListObjectsV2, via xml.h). */
#include "echofs/s3.h"
#include "echofs/util.h"
#include "echofs/xml.h"

#include <ctype.h>
#include <strings.h>
#include <time.h>

/* The least answer a GET accepts: an S3 error body fits. */
#define GET_MIN_RESP_CAP 8192

struct efs_s3 {
	struct efs_aws_client *aws;
	char bucket[EFS_S3_MAX_BUCKET + 1];
};

static bool bucket_valid(const char *b)
{
	size_t n = strlen(b);
	if (n < 3 || n > EFS_S3_MAX_BUCKET)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(islower((unsigned char)b[i]) || isdigit((unsigned char)b[i]) || b[i] == '.' ||
		      b[i] == '-'))
			return false;
	return true;
}

int efs_s3_new(struct efs_aws_client *aws, const char *bucket, struct efs_s3 **out)
{
	if (!bucket_valid(bucket))
		return -EINVAL;
	struct efs_s3 *s3 = calloc(1, sizeof(*s3));
	if (!s3)
		return -ENOMEM;
	s3->aws = aws;
	efs_strlcpy(s3->bucket, bucket, sizeof(s3->bucket));
	*out = s3;
	return 0;
}

void efs_s3_free(struct efs_s3 *s3)
{
	free(s3);
}

static bool key_valid(const char *key)
{
	size_t n = key ? strlen(key) : 0;
	return n > 0 && n <= EFS_S3_MAX_KEY && efs_utf8_valid(key, n);
}

/* One request's URL parts. */
struct target {
	struct efs_buf url, host, path;
};

static int target_init(struct efs_s3 *s3, struct target *t, const char *key, const char *query)
{
	efs_buf_init(&t->url, 16384);
	efs_buf_init(&t->host, 512);
	efs_buf_init(&t->path, 8192);
	return efs_aws_s3_target(efs_aws_client_config(s3->aws), s3->bucket, key, query, &t->url,
				 &t->host, &t->path);
}

static void target_release(struct target *t)
{
	efs_buf_release(&t->url);
	efs_buf_release(&t->host);
	efs_buf_release(&t->path);
}

static void request_init(struct efs_aws_request *req, const char *method, struct target *t,
			 const char *query)
{
	memset(req, 0, sizeof(*req));
	req->method = method;
	req->service = "s3";
	req->url = t->url.data;
	req->host = t->host.data;
	req->path = t->path.data;
	req->query = query;
	req->retry = true; /* every call here is idempotent */
}

static void error_fill(struct efs_s3_error *err, const struct efs_aws_response *resp)
{
	if (!err)
		return;
	err->status = resp->status;
	err->attempts = resp->attempts;
	efs_strlcpy(err->code, resp->code, sizeof(err->code));
	efs_strlcpy(err->message, resp->message, sizeof(err->message));
}

static void error_local(struct efs_s3_error *err, const char *message)
{
	if (!err)
		return;
	memset(err, 0, sizeof(*err));
	efs_strlcpy(err->message, message, sizeof(err->message));
}

/* One request to the bucket: its URL parts, the request, its answer. */
struct s3_call {
	struct target t;
	struct efs_aws_request req;
	struct efs_aws_response resp;
};

/* Prepares @c for @method on @key (NULL: the bucket) with @query. Always
 * pair with call_end(), whatever this returns. */
static int call_begin(struct efs_s3 *s3, struct s3_call *c, const char *method, const char *key,
		      const char *query)
{
	efs_aws_response_init(&c->resp);
	int r = target_init(s3, &c->t, key, query);
	if (r == 0)
		request_init(&c->req, method, &c->t, query);
	return r;
}

/* Releases @c; on failure (@r < 0) copies the answer's error into @err.
 * Returns @r. */
static int call_end(struct s3_call *c, int r, struct efs_s3_error *err)
{
	if (r < 0)
		error_fill(err, &c->resp);
	target_release(&c->t);
	efs_aws_response_release(&c->resp);
	return r;
}

/* ---- response headers into an object_info ------------------------------ */

struct head_ctx {
	struct efs_s3_object_info info;
	bool have_length, have_range_total;
	uint64_t content_length;
};

static bool name_is(const char *name, size_t len, const char *what)
{
	return len == strlen(what) && strncasecmp(name, what, len) == 0;
}

static int copy_value(char *dst, size_t size, const char *v, size_t len)
{
	if (len >= size)
		return -E2BIG;
	memcpy(dst, v, len);
	dst[len] = '\0';
	return 0;
}

static int parse_u64(const char *v, size_t len, uint64_t *out)
{
	char tmp[32];
	if (len == 0 || len >= sizeof(tmp))
		return -EBADMSG;
	memcpy(tmp, v, len);
	tmp[len] = '\0';
	return efs_parse_u64(tmp, false, out) < 0 ? -EBADMSG : 0;
}

static int on_header(void *ctx, const char *name, size_t name_len, const char *v, size_t vlen)
{
	struct head_ctx *h = ctx;
	static const char meta_prefix[] = "x-amz-meta-";
	const size_t mp_len = sizeof(meta_prefix) - 1;
	if (name_len == 0) { /* a new attempt */
		memset(h, 0, sizeof(*h));
		return 0;
	}
	if (name_is(name, name_len, "content-length")) {
		h->have_length = parse_u64(v, vlen, &h->content_length) == 0;
	} else if (name_is(name, name_len, "content-range")) {
		/* "bytes a-b/total" */
		const char *slash = memchr(v, '/', vlen);
		if (slash) {
			size_t tl = vlen - (size_t)(slash + 1 - v);
			h->have_range_total = parse_u64(slash + 1, tl, &h->info.size) == 0;
		}
	} else if (name_is(name, name_len, "etag")) {
		return copy_value(h->info.etag, sizeof(h->info.etag), v, vlen);
	} else if (name_is(name, name_len, "last-modified")) {
		return copy_value(h->info.last_modified, sizeof(h->info.last_modified), v, vlen);
	} else if (name_is(name, name_len, "date")) {
		return copy_value(h->info.date, sizeof(h->info.date), v, vlen);
	} else if (name_len > mp_len && strncasecmp(name, meta_prefix, mp_len) == 0) {
		if (h->info.meta_count >= EFS_S3_MAX_META)
			return -E2BIG;
		struct efs_s3_meta *m = &h->info.meta[h->info.meta_count];
		int r = copy_value(m->name, sizeof(m->name), name + mp_len, name_len - mp_len);
		if (r == 0)
			r = copy_value(m->value, sizeof(m->value), v, vlen);
		if (r < 0)
			return r;
		for (char *p = m->name; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		h->info.meta_count++;
	}
	return 0;
}

static void head_reset(struct head_ctx *h)
{
	memset(h, 0, sizeof(*h));
}

/* ---- put, get, head, delete ----------------------------------------------- */

static bool meta_valid(const struct efs_s3_meta *m)
{
	if (!m->name[0] || !m->value[0])
		return false;
	for (const char *p = m->name; *p; p++)
		if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-' ||
		      *p == '_'))
			return false;
	for (const char *p = m->value; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			return false;
	return m->value[0] != ' ' && m->value[strlen(m->value) - 1] != ' ';
}

int efs_s3_put(struct efs_s3 *s3, const char *key, const void *data, size_t len,
	       const char *content_type, const struct efs_s3_meta *meta, size_t meta_count,
	       char etag[EFS_S3_ETAG_SIZE], struct efs_s3_error *err)
{
	char meta_headers[EFS_S3_MAX_META][EFS_S3_MAX_META_NAME + EFS_S3_MAX_META_VALUE + 16];
	char type_header[160];
	struct s3_call c;
	struct head_ctx h;
	size_t n = 0;
	int r;
	if (!key_valid(key) || meta_count > EFS_S3_MAX_META ||
	    (content_type && (strlen(content_type) > 128 || strpbrk(content_type, "\r\n")))) {
		error_local(err, "invalid key, metadata or content type");
		return -EINVAL;
	}
	for (size_t i = 0; i < meta_count; i++) {
		if (!meta_valid(&meta[i])) {
			error_local(err, "invalid metadata");
			return -EINVAL;
		}
	}
	r = call_begin(s3, &c, "PUT", key, NULL);
	if (r < 0)
		return call_end(&c, r, err);
	struct efs_aws_request *req = &c.req;
	if (content_type) {
		snprintf(type_header, sizeof(type_header), "Content-Type: %s", content_type);
		req->headers[n++] = type_header;
	}
	for (size_t i = 0; i < meta_count; i++) {
		snprintf(meta_headers[i], sizeof(meta_headers[i]), "x-amz-meta-%s: %s", meta[i].name,
			 meta[i].value);
		req->headers[n++] = meta_headers[i];
	}
	req->body = data ? data : "";
	req->body_len = len;
	head_reset(&h);
	req->header_fn = on_header;
	req->header_ctx = &h;
	req->resp_cap = 64 * 1024;
	r = efs_aws_send(s3->aws, req, &c.resp);
	if (r == 0 && etag)
		efs_strlcpy(etag, h.info.etag, EFS_S3_ETAG_SIZE);
	return call_end(&c, r, err);
}

int efs_s3_get(struct efs_s3 *s3, const char *key, uint64_t offset, uint64_t length, size_t cap,
	       struct efs_buf *out, struct efs_s3_object_info *info, struct efs_s3_error *err)
{
	char range[80];
	struct s3_call c;
	struct head_ctx h;
	int r;
	if (!key_valid(key)) {
		error_local(err, "invalid key");
		return -EINVAL;
	}
	r = call_begin(s3, &c, "GET", key, NULL);
	if (r < 0)
		goto out;
	if (length > 0) {
		snprintf(range, sizeof(range), "Range: bytes=%llu-%llu", (unsigned long long)offset,
			 (unsigned long long)(offset + length - 1));
		c.req.headers[0] = range;
	}
	head_reset(&h);
	c.req.header_fn = on_header;
	c.req.header_ctx = &h;
	/* Room for an error body even under a small cap; the cap itself is
	 * checked below. */
	c.req.resp_cap = EFS_MAX(cap, (size_t)GET_MIN_RESP_CAP);
	r = efs_aws_send(s3->aws, &c.req, &c.resp);
	if (r < 0)
		goto out;
	if (c.resp.body.len > cap) {
		efs_strlcpy(c.resp.message, "response too large", sizeof(c.resp.message));
		r = -E2BIG;
		goto out;
	}
	if (!h.have_range_total)
		h.info.size = c.resp.body.len;
	/* The answer's buffer becomes the caller's: no copy of a chunk. */
	efs_buf_release(out);
	*out = c.resp.body;
	out->cap = cap;
	efs_buf_init(&c.resp.body, 0);
	if (info)
		*info = h.info;
out:
	return call_end(&c, r, err);
}

int efs_s3_head(struct efs_s3 *s3, const char *key, struct efs_s3_object_info *info,
		struct efs_s3_error *err)
{
	struct s3_call c;
	struct head_ctx h;
	int r;
	if (!key_valid(key)) {
		error_local(err, "invalid key");
		return -EINVAL;
	}
	r = call_begin(s3, &c, "HEAD", key, NULL);
	if (r < 0)
		goto out;
	head_reset(&h);
	c.req.header_fn = on_header;
	c.req.header_ctx = &h;
	c.req.resp_cap = 64 * 1024;
	r = efs_aws_send(s3->aws, &c.req, &c.resp);
	if (r == 0 && !h.have_length)
		r = -EBADMSG;
	if (r == 0) {
		h.info.size = h.content_length;
		if (info)
			*info = h.info;
	}
out:
	return call_end(&c, r, err);
}

/* A request without body or answer to keep: DELETE key, HEAD/PUT bucket. */
static int simple_call(struct efs_s3 *s3, const char *method, const char *key, const char *body,
		       struct efs_s3_error *err)
{
	struct s3_call c;
	int r = call_begin(s3, &c, method, key, NULL);
	if (r == 0) {
		if (body) {
			c.req.body = body;
			c.req.body_len = strlen(body);
		}
		c.req.resp_cap = 64 * 1024;
		r = efs_aws_send(s3->aws, &c.req, &c.resp);
	}
	return call_end(&c, r, err);
}

int efs_s3_parse_http_date(const char *text, int64_t *out_ms)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	/* IMF-fixdate, the only form S3 sends (RFC 9110 5.6.7). */
	const char *end = text ? strptime(text, "%a, %d %b %Y %H:%M:%S GMT", &tm) : NULL;
	if (!end || *end)
		return -EINVAL;
	time_t t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	*out_ms = (int64_t)t * 1000;
	return 0;
}

int efs_s3_delete(struct efs_s3 *s3, const char *key, struct efs_s3_error *err)
{
	if (!key_valid(key)) {
		error_local(err, "invalid key");
		return -EINVAL;
	}
	return simple_call(s3, "DELETE", key, NULL, err);
}

int efs_s3_bucket_head(struct efs_s3 *s3, struct efs_s3_error *err)
{
	return simple_call(s3, "HEAD", NULL, NULL, err);
}

int efs_s3_bucket_create(struct efs_s3 *s3, struct efs_s3_error *err)
{
	char body[256];
	const char *region = efs_aws_client_config(s3->aws)->region;
	/* us-east-1 takes no location constraint (and refuses one). */
	if (strcmp(region, "us-east-1") == 0)
		return simple_call(s3, "PUT", NULL, "", err);
	snprintf(body, sizeof(body),
		 "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
		 "<LocationConstraint>%s</LocationConstraint></CreateBucketConfiguration>",
		 region);
	return simple_call(s3, "PUT", NULL, body, err);
}

/* ---- list ----------------------------------------------------------------- */

struct list_ctx {
	struct efs_s3_list list;
	size_t max;
	bool in_result, in_contents;
	struct efs_s3_list_entry cur;
	bool cur_has_key;
};

static int list_start(void *ctx, int depth, const char *name)
{
	struct list_ctx *l = ctx;
	if (depth == 1) {
		l->in_result = strcmp(name, "ListBucketResult") == 0;
		return l->in_result ? 0 : -EBADMSG;
	}
	if (depth == 2 && strcmp(name, "Contents") == 0) {
		if (l->list.count >= l->max)
			return -EBADMSG; /* more than asked for */
		memset(&l->cur, 0, sizeof(l->cur));
		l->cur_has_key = false;
		l->in_contents = true;
	}
	return 0;
}

static int list_end(void *ctx, int depth, const char *name, const char *text, size_t len)
{
	struct list_ctx *l = ctx;
	if (depth == 3 && l->in_contents) {
		if (strcmp(name, "Key") == 0) {
			if (len == 0 || len > EFS_S3_MAX_KEY)
				return -EBADMSG;
			copy_value(l->cur.key, sizeof(l->cur.key), text, len);
			l->cur_has_key = true;
		} else if (strcmp(name, "Size") == 0) {
			return parse_u64(text, len, &l->cur.size);
		} else if (strcmp(name, "ETag") == 0) {
			return copy_value(l->cur.etag, sizeof(l->cur.etag), text, len) < 0 ? -EBADMSG
											     : 0;
		} else if (strcmp(name, "LastModified") == 0) {
			return copy_value(l->cur.last_modified, sizeof(l->cur.last_modified), text,
					  len) < 0
				       ? -EBADMSG
				       : 0;
		}
		return 0;
	}
	if (depth == 2 && strcmp(name, "Contents") == 0) {
		l->in_contents = false;
		if (!l->cur_has_key)
			return -EBADMSG;
		l->list.entries[l->list.count++] = l->cur;
	} else if (depth == 2 && strcmp(name, "IsTruncated") == 0) {
		l->list.truncated = len == 4 && memcmp(text, "true", 4) == 0;
	} else if (depth == 2 && strcmp(name, "NextContinuationToken") == 0) {
		if (copy_value(l->list.next_token, sizeof(l->list.next_token), text, len) < 0)
			return -EBADMSG;
	}
	return 0;
}

int efs_s3_list_parse(const char *body, size_t len, unsigned max_keys, struct efs_s3_list *out)
{
	struct list_ctx l = {.max = max_keys};
	int r;
	if (max_keys < 1 || max_keys > EFS_S3_MAX_LIST_KEYS)
		return -EINVAL;
	l.list.entries = calloc(max_keys, sizeof(*l.list.entries));
	if (!l.list.entries)
		return -ENOMEM;
	r = efs_xml_parse(body, len, list_start, list_end, &l);
	if (r == 0 && (!l.in_result || (l.list.truncated && !l.list.next_token[0])))
		r = -EBADMSG;
	if (r < 0) {
		free(l.list.entries);
		return r == -ENOMEM ? r : -EBADMSG;
	}
	*out = l.list;
	return 0;
}

int efs_s3_list(struct efs_s3 *s3, const char *prefix, const char *continuation_token,
		unsigned max_keys, struct efs_s3_list *out, struct efs_s3_error *err)
{
	struct efs_aws_request req;
	struct efs_aws_response resp;
	struct efs_buf query;
	struct target t;
	int r;
	if (max_keys < 1 || max_keys > EFS_S3_MAX_LIST_KEYS ||
	    (prefix && strlen(prefix) > EFS_S3_MAX_KEY) ||
	    (continuation_token && strlen(continuation_token) > EFS_S3_MAX_TOKEN)) {
		error_local(err, "invalid prefix, token or max-keys");
		return -EINVAL;
	}
	efs_aws_response_init(&resp);
	efs_buf_init(&query, 16384);
	efs_buf_init(&t.url, 0);
	efs_buf_init(&t.host, 0);
	efs_buf_init(&t.path, 0);
	r = 0;
	if (continuation_token && *continuation_token) {
		r = efs_buf_puts(&query, "continuation-token=");
		if (r == 0)
			r = efs_sigv4_uri_encode(&query, continuation_token,
						 strlen(continuation_token), false);
		if (r == 0)
			r = efs_buf_puts(&query, "&");
	}
	if (r == 0)
		r = efs_buf_printf(&query, "list-type=2&max-keys=%u", max_keys);
	if (r == 0 && prefix && *prefix) {
		r = efs_buf_puts(&query, "&prefix=");
		if (r == 0)
			r = efs_sigv4_uri_encode(&query, prefix, strlen(prefix), false);
	}
	if (r == 0)
		r = target_init(s3, &t, NULL, query.data);
	if (r < 0)
		goto out;
	request_init(&req, "GET", &t, query.data);
	req.resp_cap = EFS_S3_MAX_LIST_RESPONSE;
	r = efs_aws_send(s3->aws, &req, &resp);
	if (r < 0)
		goto out;
	r = efs_s3_list_parse(resp.body.data ? resp.body.data : "", resp.body.len, max_keys, out);
	if (r < 0)
		error_local(err, "the listing is not a ListObjectsV2 answer within the caps");
out:
	if (r < 0 && resp.attempts > 0 && resp.status != 200)
		error_fill(err, &resp);
	efs_buf_release(&query);
	target_release(&t);
	efs_aws_response_release(&resp);
	return r;
}

void efs_s3_list_release(struct efs_s3_list *list)
{
	if (!list)
		return;
	free(list->entries);
	list->entries = NULL;
	list->count = 0;
}
