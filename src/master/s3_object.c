/* SPDX-License-Identifier: MIT */
/* s3_object.c - S3 objects as EchoFS files (contract in s3_object.h).
 *
 * PutObject streams the body into the upload pipeline as the REST
 * one-request upload does (its memory taken from UPLOAD_MEMORY first); the
 * pipeline hashes SHA-256, which a signed payload's x-amz-content-sha256
 * must match, and MD5 (the ETag) on a thread of its own for a body of
 * several chunks (upload_pipeline.h). Only when the file is
 * recorded and checked does the object row point at it
 * (efs_meta_object_put, which releases a replaced object's file in the
 * same transaction); a refused body's file is deleted again.
 */
#include "master/s3_object.h"
#include "echofs/hash.h"
#include "echofs/log.h"
#include "echofs/range.h"
#include "echofs/s3.h"
#include "echofs/util.h"
#include "echofs/xml.h"
#include "master/download.h"
#include "master/s3_checksum.h"
#include "master/s3_policy.h"
#include "master/s3_xml.h"
#include "master/upload_pipeline.h"

#include "master/api.h"

#include <ctype.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define USER_META_PREFIX "x-amz-meta-"
#define USER_META_MAX 2048 /* S3's limit: names and values together */
#define GET_ATTEMPTS 3	   /* an object replaced while being opened is read again */

/* ---- PutObject ------------------------------------------------------- */

struct put_op {
	struct efs_master *m;
	char owner[EFS_ID_MAX + 1]; /* the bucket's owner: the file's */
	char name[EFS_NAME_MAX + 1];
	char session_id[EFS_ID_MAX + 1];
	bool session_open;
	struct efs_upload_pipeline *pipeline;
	uint64_t expected; /* the body's (decoded) length */
	bool has_md5;	   /* Content-MD5 was sent: the body must match */
	unsigned char content_md5[EFS_MD5_LEN];
	struct efs_s3_checksum checksum; /* x-amz-checksum-*, header or trailer */
	uint64_t received;
	size_t reserved; /* from the master's upload_memory */
	struct efs_object_info obj;
	/* If-None-Match: * / If-Match, checked when the row is written */
	struct efs_object_cond cond;
	char if_etag[EFS_S3_ETAG_MAX + 1];
	/* The storage policy (s3_policy.h): the pipeline stores through
	 * uploader, the file row records policy (canonical). */
	struct efs_uploader uploader;
	struct efs_policy policy;
};

static void put_free(void *op)
{
	struct put_op *p = op;
	if (!p)
		return;
	efs_upload_pipeline_free(p->pipeline);
	if (p->session_open) {
		int r = efs_meta_session_delete(p->m->meta, p->session_id, efs_now_ms());
		if (r < 0 && r != -ENOENT)
			efs_warn("s3 put %s/%s: could not release the chunks of session %s (%s); "
				 "the session collector will",
				 p->obj.bucket, p->obj.key, p->session_id, strerror(-r));
	}
	efs_s3_checksum_release(&p->checksum);
	efs_upload_memory_give(&p->m->upload_memory, p->owner, p->reserved);
	free(p);
}

/* The pipeline's efs_upload_session_open_fn: a hidden session, as for a
 * REST one-request upload, ended by put_free unless completed. */
static int open_session(void *ctx, char *session_id)
{
	struct put_op *p = ctx;
	int r = efs_s3_session_open(p->m, p->owner, p->name, p->expected, session_id);
	if (r < 0)
		return r;
	efs_strlcpy(p->session_id, session_id, sizeof(p->session_id));
	p->session_open = true;
	return 0;
}

int efs_s3_session_open(struct efs_master *m, const char *owner, const char *name,
			uint64_t expected, char session_id[EFS_ID_MAX + 1])
{
	struct efs_session_info sess = {0};
	int r;
	if ((r = efs_ordered_hex(sess.session_id, EFS_FILE_ID_LEN / 2)) < 0)
		return r;
	efs_strlcpy(sess.owner, owner, sizeof(sess.owner));
	efs_strlcpy(sess.name, name, sizeof(sess.name));
	sess.declared_size = (int64_t)expected;
	sess.chunk_size = m->cfg.chunk_size;
	sess.hidden = true;
	sess.created_at_ms = efs_now_ms();
	sess.expires_at_ms = sess.created_at_ms + m->cfg.upload_idle_ms;
	if ((r = efs_meta_session_create(m->meta, &sess)) < 0)
		return r;
	efs_strlcpy(session_id, sess.session_id, EFS_ID_MAX + 1);
	return 0;
}

/* The file's name: the key's last segment, made a valid EchoFS name
 * (control characters as '_', cut to EFS_NAME_MAX bytes on a character
 * boundary). The full key stays in the object row. */
static void file_name_of(const char *key, char *out, size_t size)
{
	const char *end = key + strlen(key);
	while (end > key && end[-1] == '/')
		end--;
	const char *start = end;
	while (start > key && start[-1] != '/')
		start--;
	size_t len = (size_t)(end - start);
	if (len > size - 1)
		len = size - 1;
	while (len > 0 && ((unsigned char)start[len] & 0xC0) == 0x80)
		len--; /* do not cut a character */
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)start[i];
		out[i] = c < 0x20 || c == 0x7f ? '_' : (char)c;
	}
	out[len] = '\0';
	if (!efs_name_valid(out, EFS_NAME_MAX))
		efs_strlcpy(out, "object", size);
}

struct meta_collect {
	json_t *object;
	size_t bytes;
};

static int collect_user_meta(void *ctx, const char *name, const char *value)
{
	struct meta_collect *c = ctx;
	size_t plen = strlen(USER_META_PREFIX);
	if (strncasecmp(name, USER_META_PREFIX, plen) != 0 || !name[plen])
		return 0;
	char lower[256];
	size_t nlen = strlen(name + plen);
	c->bytes += nlen + strlen(value);
	if (nlen >= sizeof(lower) || c->bytes > USER_META_MAX)
		return -E2BIG;
	for (size_t i = 0; i <= nlen; i++)
		lower[i] = (char)tolower((unsigned char)name[plen + i]);
	if (!efs_utf8_valid(value, strlen(value)))
		return -EINVAL;
	return json_object_set_new(c->object, lower, json_string(value)) < 0 ? -ENOMEM : 0;
}

/* Copies request header @name into @out (""when absent). -E2BIG when
 * longer than the stored field. */
static int header_field(struct efs_s3_req *s, const char *name, char *out, size_t size)
{
	const char *v = efs_http_header(s->http, name);
	out[0] = '\0';
	if (!v)
		return 0;
	return efs_strlcpy(out, v, size) >= size ? -E2BIG : 0;
}

/* Content-Encoding without the "aws-chunked" coding (which is the
 * transfer's, not the object's). */
static void strip_aws_chunked(char *value)
{
	char out[EFS_S3_HEADER_MAX + 1] = "";
	size_t o = 0;
	for (char *p = value; *p;) {
		size_t len = strcspn(p, ",");
		char *b = p, *e = p + len;
		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (e > b && !((size_t)(e - b) == 11 && strncasecmp(b, "aws-chunked", 11) == 0)) {
			o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%.*s", o ? "," : "",
					      (int)(e - b), b);
			if (o >= sizeof(out))
				o = sizeof(out) - 1;
		}
		p += len;
		if (*p == ',')
			p++;
	}
	memcpy(value, out, o + 1);
}

/* The request's object headers into @o. Replies and returns -EINVAL when
 * one is unusable. */
static int put_headers(struct efs_s3_req *s, struct efs_object_info *o)
{
	static const struct {
		const char *header;
		size_t offset;
	} fields[] = {
	    {"Content-Type", offsetof(struct efs_object_info, content_type)},
	    {"Content-Encoding", offsetof(struct efs_object_info, content_encoding)},
	    {"Content-Disposition", offsetof(struct efs_object_info, content_disposition)},
	    {"Cache-Control", offsetof(struct efs_object_info, cache_control)},
	    {"Expires", offsetof(struct efs_object_info, expires)},
	};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (header_field(s, fields[i].header, (char *)o + fields[i].offset,
				 EFS_S3_HEADER_MAX + 1) < 0)
			return efs_s3_error(s, 400, "InvalidArgument", "%s is longer than %d bytes",
					    fields[i].header, EFS_S3_HEADER_MAX),
			       -EINVAL;
	strip_aws_chunked(o->content_encoding);
	if (!o->content_type[0])
		efs_strlcpy(o->content_type, "binary/octet-stream", sizeof(o->content_type));

	struct meta_collect c = {json_object(), 0};
	if (!c.object)
		return -ENOMEM;
	int r = efs_http_headers(s->http, collect_user_meta, &c);
	char *text = r == 0 ? json_dumps(c.object, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(c.object);
	if (r == -E2BIG)
		return efs_s3_error(s, 400, "MetadataTooLarge",
				    "Your metadata headers exceed the maximum allowed metadata "
				    "size (%d bytes).",
				    USER_META_MAX),
		       -EINVAL;
	if (r == -EINVAL)
		return efs_s3_error(s, 400, "InvalidArgument", "x-amz-meta-* values must be UTF-8"),
		       -EINVAL;
	if (r < 0 || !text) {
		free(text);
		return r < 0 ? r : -ENOMEM;
	}
	r = efs_strlcpy(o->user_meta, text, sizeof(o->user_meta)) >= sizeof(o->user_meta) ? -E2BIG
											  : 0;
	free(text);
	if (r < 0)
		return efs_s3_error(s, 400, "MetadataTooLarge",
				    "Your metadata headers are too large"),
		       -EINVAL;
	return 0;
}

/* Content-MD5: the base64 of 16 bytes. 0 with @out filled, or -EINVAL. */
static int content_md5_decode(const char *text, unsigned char out[EFS_MD5_LEN])
{
	unsigned char bytes[EFS_MD5_LEN];
	if (efs_base64_decode_exact(text, bytes, sizeof(bytes)) < 0)
		return -EINVAL;
	memcpy(out, bytes, EFS_MD5_LEN);
	return 0;
}

int efs_s3_body_feed(struct efs_s3_req *s, struct efs_upload_pipeline *pipeline,
		     struct efs_s3_checksum *checksum, uint64_t *received, uint64_t expected,
		     const char *data, size_t len)
{
	*received += len;
	if (*received > expected)
		return efs_s3_error(s, 400, "IncompleteBody",
				    "The body is longer than its declared length"),
		       -EINVAL;
	efs_s3_checksum_update(checksum, data, len);
	int r = efs_upload_pipeline_feed(pipeline, data, len);
	if (r == -ENOSPC)
		return efs_s3_error(s, 503, "SlowDown",
				    "Not enough live workers with room for every replica"),
		       r;
	return r;
}

static int put_body(struct efs_s3_req *s, const char *data, size_t len)
{
	struct put_op *p = s->op;
	return efs_s3_body_feed(s, p->pipeline, &p->checksum, &p->received, p->expected, data, len);
}

/* Storing the body failed (@r from the pipeline): 503 SlowDown when the
 * workers have no room, otherwise logged and returned. */
static int put_store_failed(struct efs_s3_req *s, struct put_op *p, int r)
{
	if (r == -ENOSPC)
		return efs_s3_error(s, 503, "SlowDown",
				    "Not enough live workers with room for every replica");
	efs_error("s3 put %s/%s: storing the body failed: %s (request %s)", p->obj.bucket,
		  p->obj.key, strerror(-r), s->request_id);
	return r;
}

/* Deletes the file just stored for a refused PUT (its chunks go to the
 * collector). */
static void drop_new_file(struct put_op *p, const char *file_id)
{
	int r = efs_meta_file_delete(p->m->meta, file_id, p->owner, efs_now_ms());
	if (r < 0 && r != -ENOENT)
		efs_warn("s3 put %s/%s: could not delete the refused upload's file %s (%s)",
			 p->obj.bucket, p->obj.key, file_id, strerror(-r));
}

/* The answer to a PUT whose object row was refused (-ENOENT, -ENODATA,
 * -EEXIST, -ESTALE as efs_meta_object_put_if) or could not be written. */
static int put_refused(struct efs_s3_req *s, struct put_op *p, int r)
{
	if (r == -ENOENT)
		return efs_s3_error(s, 404, "NoSuchBucket", "The specified bucket does not exist");
	if (r == -ENODATA)
		return efs_s3_error(s, 404, "NoSuchKey", "The specified key does not exist.");
	if (r == -EEXIST || r == -ESTALE) {
		efs_info("s3 put %s/%s refused: %s (request %s)", p->obj.bucket, p->obj.key,
			 r == -EEXIST ? "If-None-Match: * and the key exists"
				      : "If-Match or If-Unmodified-Since does not hold",
			 s->request_id);
		return efs_s3_error(s, 412, "PreconditionFailed",
				    "At least one of the pre-conditions you specified did "
				    "not hold");
	}
	return efs_s3_error_store(s, r, "PutObject");
}

/* Every check of the body (Content-MD5, x-amz-checksum-*, the signed
 * SHA-256, which the pipeline checks) comes before anything is recorded,
 * so a refused body leaves no file behind (its session's chunks are
 * released by put_free). A body of one chunk is then recorded with its
 * object row in one transaction where the store can
 * (efs_meta_file_create_object): one commit per small PUT. */
static int put_end(struct efs_s3_req *s)
{
	struct put_op *p = s->op;
	struct efs_master *m = p->m;
	struct efs_file_info f = {0};
	struct efs_upload_summary sum;
	struct efs_session_info sess;
	struct efs_object_link link = {&p->obj, &p->cond, 0};
	const char *signed_sha256 = NULL;
	char etag[EFS_S3_ETAG_MAX + 3];
	char sha256[EFS_SHA256_HEX_LEN + 1];
	int r;

	if (p->received != p->expected)
		return efs_s3_error(s, 400, "IncompleteBody",
				    "You did not provide the number of bytes specified by the "
				    "Content-Length HTTP header");
	/* The MD5 (its thread caught up) before the last chunk is stored. */
	if ((r = efs_upload_pipeline_digests(p->pipeline, sha256, p->obj.etag)) < 0)
		return put_store_failed(s, p, r);
	if (p->has_md5) {
		char expected[EFS_MD5_HEX_LEN + 1];
		efs_hex_encode(p->content_md5, EFS_MD5_LEN, expected);
		if (strcmp(expected, p->obj.etag) != 0)
			return efs_s3_error(s, 400, "BadDigest",
					    "The Content-MD5 you specified did not match what we "
					    "received.");
	}
	if ((r = efs_s3_checksum_check(s, &p->checksum)) != 0)
		return r < 0 ? r : 0;
	if ((r = efs_ordered_hex(f.file_id, EFS_FILE_ID_LEN / 2)) < 0)
		return r;
	efs_strlcpy(f.owner, p->owner, sizeof(f.owner));
	efs_strlcpy(f.name, p->name, sizeof(f.name));
	f.chunk_size = m->cfg.chunk_size;
	efs_s3_policy_file(m, &p->policy, &f);
	f.created_at_ms = efs_now_ms();
	efs_strlcpy(p->obj.file_id, f.file_id, sizeof(p->obj.file_id));
	p->obj.size = p->received;
	p->obj.last_modified_ms = f.created_at_ms;
	efs_s3_checksum_stored(&p->checksum, p->obj.checksum, sizeof(p->obj.checksum));
	if (s->principal.payload == EFS_S3_PAYLOAD_SIGNED)
		signed_sha256 = s->principal.payload_sha256;
	r = efs_upload_pipeline_finish_object(
	    p->pipeline, &f, signed_sha256, efs_meta_has_file_create_object(m->meta) ? &link : NULL,
	    &sum);
	if (r == -EBADMSG) {
		efs_info("s3 put %s/%s refused: the body's SHA-256 is not the signed %s "
			 "(request %s)",
			 p->obj.bucket, p->obj.key, s->principal.payload_sha256, s->request_id);
		return efs_s3_error(s, 400, "XAmzContentSHA256Mismatch",
				    "The provided 'x-amz-content-sha256' header does not match "
				    "what was computed.");
	}
	if (r == -ECANCELED)
		return put_refused(s, p, link.refused);
	if (r < 0)
		return put_store_failed(s, p, r);
	if (!sum.recorded) {
		if ((r = efs_meta_session_get(m->meta, p->session_id, &sess)) < 0)
			return efs_s3_error_store(s, r, "PutObject session");
		f.size = sum.size;
		efs_strlcpy(f.sha256, sum.sha256, sizeof(f.sha256));
		f.chunk_count = sum.chunk_count;
		f.stored_bytes = sum.stored_bytes;
		if ((r = efs_meta_session_complete(m->meta, p->session_id, sess.version, &f, 0)) <
		    0)
			return efs_s3_error_store(s, r, "PutObject complete");
		p->session_open = false;
	}
	if (!sum.object_linked &&
	    (r = efs_meta_object_put_if(m->meta, &p->obj, &p->cond, efs_now_ms())) < 0) {
		drop_new_file(p, f.file_id);
		return put_refused(s, p, r);
	}
	efs_info("s3 object %s/%s stored: file %s, %llu bytes in %llu chunks, policy %s, owner %s "
		 "(request %s)",
		 p->obj.bucket, p->obj.key, f.file_id, (unsigned long long)f.size,
		 (unsigned long long)f.chunk_count, f.policy, f.owner, s->request_id);
	snprintf(etag, sizeof(etag), "\"%s\"", p->obj.etag);
	efs_http_add_header(s->http, "ETag", etag);
	efs_s3_checksum_reply(s, &p->checksum);
	return efs_http_reply_empty(s->http, 200);
}

static bool header_date(struct efs_s3_req *s, const char *name, int64_t *out_s);
static bool etag_listed(const char *list, const char *etag);

/* The destination conditions of PutObject and CopyObject into @cond:
 * If-None-Match (only "*", as S3), If-Match (one entity tag, quoted or not,
 * or "*"; into @if_etag) and, without If-Match, If-Unmodified-Since (RFC
 * 7232 3.4; a date that does not parse is ignored). Replies and returns
 * -EINVAL when unusable. */
static int put_conditions(struct efs_s3_req *s, struct efs_object_cond *cond,
			  char if_etag[EFS_S3_ETAG_MAX + 1])
{
	const char *if_none_match = efs_http_header(s->http, "If-None-Match");
	const char *if_match = efs_http_header(s->http, "If-Match");
	int64_t date_s;
	if (if_none_match) {
		if (strcmp(if_none_match, "*") != 0)
			return efs_s3_error(s, 501, "NotImplemented",
					    "A header you provided implies functionality that is "
					    "not implemented: If-None-Match other than *"),
			       -EINVAL;
		cond->if_absent = true;
	}
	if (if_match) {
		const char *b = if_match, *e = if_match + strlen(if_match);
		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (e - b >= 2 && *b == '"' && e[-1] == '"')
			b++, e--;
		if (e == b || (size_t)(e - b) > EFS_S3_ETAG_MAX || memchr(b, ',', (size_t)(e - b)))
			return efs_s3_error(s, 400, "InvalidArgument",
					    "If-Match must be one entity tag or *"),
			       -EINVAL;
		memcpy(if_etag, b, (size_t)(e - b));
		if_etag[e - b] = '\0';
		cond->if_etag = if_etag;
	} else if (header_date(s, "If-Unmodified-Since", &date_s)) {
		cond->if_unmodified_since_s = date_s;
	}
	return 0;
}

/* Sets up @p's storing by p->policy of p->expected bytes: its memory
 * from UPLOAD_MEMORY, the pipeline hashing MD5 too. Replies 503 SlowDown and
 * returns -EBUSY when the memory is taken; -ENOMEM. */
static int put_start(struct efs_s3_req *s, struct put_op *p)
{
	struct efs_master *m = p->m;
	int r;

	efs_api_policy_uploader(&m->uploader, &p->policy, &p->uploader);
	/* The first chunk buffer and its compressed copy, from the budget of
	 * all uploads (as api_files.c): no bigger than the body. */
	size_t most = (size_t)EFS_MIN((uint64_t)m->cfg.chunk_size, p->expected);
	if ((r = efs_upload_memory_take(&m->upload_memory, p->owner, 2 * most)) < 0) {
		if (r == -ENOMEM)
			return r;
		efs_http_add_header(s->http, "Retry-After", "1");
		return efs_s3_error(s, 503, "SlowDown", "%s", efs_api_upload_memory_full(r)),
		       -EBUSY;
	}
	p->reserved = 2 * most;
	if ((r = efs_upload_pipeline_new(&p->uploader, &m->upload_budget, m->cfg.chunk_size,
					 open_session, p, &p->pipeline)) < 0)
		return r;
	return efs_upload_pipeline_hash_md5(p->pipeline);
}

int efs_s3_put_object_begin(struct efs_s3_req *s)
{
	struct efs_master *m = s->m;
	struct efs_bucket_info b;
	int64_t length;
	int r;

	if (efs_s3_own_bucket(s, &b) < 0)
		return 0;
	length = s->principal.payload == EFS_S3_PAYLOAD_STREAMING ? s->principal.decoded_length
								  : s->http->content_length;
	if (length < 0)
		return efs_s3_error(s, 411, "MissingContentLength",
				    "You must provide the Content-Length HTTP header.");
	if ((uint64_t)length > EFS_S3_MAX_PUT_SIZE)
		return efs_s3_error(s, 400, "EntityTooLarge",
				    "Your proposed upload exceeds the maximum allowed object size "
				    "(5 GiB in one PUT; use multipart upload for more).");
	if (efs_s3_writable(s, "PutObject") < 0)
		return 0;
	struct put_op *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->m = m;
	efs_strlcpy(p->owner, b.owner, sizeof(p->owner));
	s->op = p;
	s->op_free = put_free;
	p->expected = (uint64_t)length;
	efs_strlcpy(p->obj.bucket, s->bucket, sizeof(p->obj.bucket));
	efs_strlcpy(p->obj.key, s->key, sizeof(p->obj.key));
	file_name_of(s->key, p->name, sizeof(p->name));
	if ((r = put_headers(s, &p->obj)) < 0)
		return efs_http_replied(s->http) ? 0 : r;
	const char *md5 = efs_http_header(s->http, "Content-MD5");
	if (md5 && content_md5_decode(md5, p->content_md5) < 0)
		return efs_s3_error(s, 400, "InvalidDigest",
				    "The Content-MD5 you specified is not valid.");
	p->has_md5 = md5 != NULL;
	if ((r = efs_s3_checksum_begin(s, &p->checksum)) != 0)
		return r < 0 ? r : 0;
	if ((r = put_conditions(s, &p->cond, p->if_etag)) < 0)
		return efs_http_replied(s->http) ? 0 : r;
	bool asked;
	if ((r = efs_s3_policy(s, &p->policy, &asked)) < 0)
		return efs_http_replied(s->http) ? 0 : r;
	if ((r = put_start(s, p)) < 0)
		return efs_http_replied(s->http) ? 0 : r;
	s->on_body = put_body;
	s->on_end = put_end;
	return 0;
}

/* ---- GetObject, HeadObject ------------------------------------------- */

static ssize_t object_read(void *ctx, uint64_t pos, char *out, size_t max)
{
	ssize_t n = efs_reader_read(ctx, out, max);
	if (n < 0)
		efs_error("s3 object file %s: download aborted at byte %llu: %s",
			  efs_reader_file_id(ctx), (unsigned long long)pos, strerror((int)-n));
	return n;
}

static void object_read_free(void *ctx)
{
	efs_reader_free(ctx);
}

/* HEAD: libmicrohttpd sends the length and never reads the body. */
static ssize_t no_body(void *ctx, uint64_t pos, char *out, size_t max)
{
	(void)ctx, (void)pos, (void)out, (void)max;
	return 0;
}

/* The stored headers of @o on the reply. */
static void object_headers(struct efs_s3_req *s, const struct efs_object_info *o)
{
	char etag[EFS_S3_ETAG_MAX + 3], date[EFS_S3_HTTP_DATE_LEN];
	snprintf(etag, sizeof(etag), "\"%s\"", o->etag);
	efs_http_add_header(s->http, "ETag", etag);
	efs_http_add_header(s->http, "Last-Modified", efs_s3_http_date(o->last_modified_ms, date));
	efs_http_add_header(s->http, "Accept-Ranges", "bytes");
	efs_http_add_header(s->http, "Content-Type", o->content_type);
	if (o->content_encoding[0])
		efs_http_add_header(s->http, "Content-Encoding", o->content_encoding);
	if (o->content_disposition[0])
		efs_http_add_header(s->http, "Content-Disposition", o->content_disposition);
	if (o->cache_control[0])
		efs_http_add_header(s->http, "Cache-Control", o->cache_control);
	if (o->expires[0])
		efs_http_add_header(s->http, "Expires", o->expires);
	json_t *meta = json_loads(o->user_meta, 0, NULL);
	const char *name;
	json_t *value;
	json_object_foreach(meta, name, value)
	{
		char header[300];
		snprintf(header, sizeof(header), USER_META_PREFIX "%s", name);
		if (json_is_string(value))
			efs_http_add_header(s->http, header, json_string_value(value));
	}
	json_decref(meta);
}

/* ---- conditional requests ------------------------------------------- */

/* Whether the entity-tag list @list (If-Match / If-None-Match: "*" or
 * comma-separated tags, quoted or not, a weak W/ prefix ignored) names
 * @etag (hex, unquoted). */
static bool etag_listed(const char *list, const char *etag)
{
	size_t etag_len = strlen(etag);
	for (const char *p = list; *p;) {
		size_t len = strcspn(p, ",");
		const char *b = p, *e = p + len;
		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (e - b >= 2 && b[0] == 'W' && b[1] == '/')
			b += 2;
		if (e - b >= 2 && *b == '"' && e[-1] == '"')
			b++, e--;
		if ((e - b == 1 && *b == '*') ||
		    ((size_t)(e - b) == etag_len && strncasecmp(b, etag, etag_len) == 0))
			return true;
		p += len;
		if (*p == ',')
			p++;
	}
	return false;
}

/* Header @name as a date, in whole seconds; false when absent or not an
 * HTTP date (S3 then ignores the condition). */
static bool header_date(struct efs_s3_req *s, const char *name, int64_t *out_s)
{
	int64_t ms;
	const char *v = efs_http_header(s->http, name);
	if (!v || efs_s3_parse_http_date(v, &ms) < 0)
		return false;
	*out_s = ms / 1000;
	return true;
}

/* RFC 7232 section 6, as S3 applies it to GetObject/HeadObject of the
 * existing object @o: If-Match (else If-Unmodified-Since) failing is 412
 * PreconditionFailed; If-None-Match (else If-Modified-Since) failing is 304
 * Not Modified with the validators and no body. So If-Match true wins over
 * If-Unmodified-Since false, and If-None-Match false wins over
 * If-Modified-Since true. 1 when replied, 0 to serve the object. */
static int get_conditions(struct efs_s3_req *s, const struct efs_object_info *o)
{
	const char *if_match = efs_http_header(s->http, "If-Match");
	const char *if_none_match = efs_http_header(s->http, "If-None-Match");
	int64_t modified_s = o->last_modified_ms / 1000, date_s;

	if (if_match ? !etag_listed(if_match, o->etag)
		     : header_date(s, "If-Unmodified-Since", &date_s) && modified_s > date_s) {
		efs_s3_error(s, 412, "PreconditionFailed",
			     "At least one of the pre-conditions you specified did not hold");
		return 1;
	}
	/* A date later than now is ignored (RFC 7232 3.3). */
	if (if_none_match ? etag_listed(if_none_match, o->etag)
			  : header_date(s, "If-Modified-Since", &date_s) &&
				date_s <= efs_now_ms() / 1000 && modified_s <= date_s) {
		char etag[EFS_S3_ETAG_MAX + 3], date[EFS_S3_HTTP_DATE_LEN];
		snprintf(etag, sizeof(etag), "\"%s\"", o->etag);
		efs_http_add_header(s->http, "ETag", etag);
		efs_http_add_header(s->http, "Last-Modified",
				    efs_s3_http_date(o->last_modified_ms, date));
		efs_http_reply_empty(s->http, 304);
		return 1;
	}
	return 0;
}

/* ?partNumber of GetObject/HeadObject into *number (0: absent). 1 when
 * replied (400: not 1..10000, or with a Range, as S3), else 0. */
static int part_number_param(struct efs_s3_req *s, unsigned *number)
{
	const char *text = efs_s3_query(s, "partNumber");
	uint64_t n = 0;
	*number = 0;
	if (!text)
		return 0;
	if (efs_parse_u64(text, false, &n) < 0 || n < 1 || n > EFS_S3_PART_MAX) {
		efs_s3_error(s, 400, "InvalidArgument",
			     "Part number must be an integer between 1 and %d, inclusive",
			     EFS_S3_PART_MAX);
		return 1;
	}
	if (efs_http_header(s->http, "Range")) {
		efs_s3_error(s, 400, "InvalidRequest",
			     "Cannot specify both Range header and partNumber query parameter");
		return 1;
	}
	*number = (unsigned)n;
	return 0;
}

/* Where part @number of the object @x read is: *first, *size, *count
 * (parts of a multipart object, 0 for another). 0; 1 when replied (416
 * InvalidPartNumber, or a store error); -ESTALE when the object changed
 * since @x was read (read again). */
static int part_range(struct efs_s3_req *s, const struct efs_object_read *x, unsigned number,
		      uint64_t *first, uint64_t *part_size, unsigned *count)
{
	uint64_t offset = 0, size = 0;
	int r = efs_meta_object_part(s->m->meta, s->bucket, s->key, x->object.file_id, x->file.size,
				     number, &offset, &size, count);
	if (r == -ESTALE)
		return r;
	if (r == -ERANGE) {
		efs_s3_error(s, 416, "InvalidPartNumber",
			     "The requested partnumber is not "
			     "satisfiable");
		return 1;
	}
	if (r < 0) {
		efs_s3_error_store(s, r, "GetObject");
		return 1;
	}
	*first = offset;
	*part_size = size;
	return 0;
}

int efs_s3_get_object(struct efs_s3_req *s)
{
	struct efs_master *m = s->m;
	/* The bucket's owner, the row and its file: one store read, or none
	 * when this master's object cache holds them (object_cache.h).
	 * Zeroed: the cache keeps the struct with its zeros squeezed out. */
	struct efs_object_read *x = calloc(1, sizeof(*x));
	struct efs_object_info *o = x ? &x->object : NULL;
	const struct efs_file_info *f = x ? &x->file : NULL;
	struct efs_reader *rd = NULL;
	bool head = strcmp(s->http->method, "HEAD") == 0;
	bool partial = false;
	uint64_t first = 0, last = 0;
	char range[96];
	unsigned part_number = 0, parts_count = 0; /* ?partNumber */
	bool empty_part = false;		   /* an empty part (or object): no body */
	struct efs_reader_known known, learned;
	uint64_t removals = 0;
	bool counted = false; /* the store counts removals: @removals, cacheable */
	bool cached = false;  /* @x came from the object cache */
	int r = 0;

	if (!x)
		return -ENOMEM;
	if (part_number_param(s, &part_number))
		goto out; /* replied */
	/* The row, its file and (GET) the first chunk: an overwrite between
	 * them released the file read, so the row is read again. */
	for (int attempt = 0; attempt < GET_ATTEMPTS; attempt++) {
		efs_reader_free(rd);
		rd = NULL;
		known.count = 0;
		/* Read before the object: a write after this is counted past
		 * it, so an entry stored with it is never newer than it says. */
		counted = efs_meta_removals(m->meta, &removals) == 0;
		/* Only the first attempt: a later one follows a file gone
		 * under the entry. */
		cached = counted && attempt == 0 &&
			 efs_object_cache_get(m->object_cache, s->bucket, s->key, removals, x,
					      &known) == 0;
		if (cached) {
			r = 0;
		} else {
			atomic_fetch_add(&m->counters.s3_object_reads, 1);
			r = efs_meta_object_read(m->meta, s->bucket, s->key, x);
			/* Objects that exist only: never a NoSuchKey. */
			if (r == 0 && counted)
				efs_object_cache_put(m->object_cache, x, removals);
		}
		/* As efs_s3_own_bucket: no bucket, then another's, then the key. */
		if (r == -ENOENT) {
			r = efs_s3_error(s, 404, "NoSuchBucket",
					 "The specified bucket does not exist");
			goto out;
		}
		if (r < 0 && r != -ENOKEY && r != -ESTALE) {
			r = efs_s3_error_store(s, r, "GetObject");
			goto out;
		}
		if (strcmp(x->bucket_owner, s->principal.owner) != 0) {
			r = efs_s3_error(s, 403, "AccessDenied", "Access Denied");
			goto out;
		}
		if (r == -ENOKEY) {
			r = efs_s3_error(s, 404, "NoSuchKey", "The specified key does not exist.");
			goto out;
		}
		int found = r;
		if ((r = get_conditions(s, o)) != 0) {
			r = 0;
			goto out;
		}
		if ((r = found) == -ESTALE)
			continue;
		partial = false;
		if (part_number) {
			uint64_t part_size = 0;
			if ((r = part_range(s, x, part_number, &first, &part_size, &parts_count)) ==
			    -ESTALE)
				continue;
			if (r) {
				r = 0;
				goto out;
			}
			/* An empty part has no byte range to name: 200, empty. */
			empty_part = part_size == 0;
			partial = !empty_part;
			last = empty_part ? first : first + part_size - 1;
		} else if (efs_range_parse(efs_http_header(s->http, "Range"), f->size, &partial,
					   &first, &last) < 0) {
			snprintf(range, sizeof(range), "bytes */%llu", (unsigned long long)f->size);
			efs_http_add_header(s->http, "Content-Range", range);
			r = efs_s3_error(s, 416, "InvalidRange",
					 "The requested range is not satisfiable");
			goto out;
		}
		if (!partial) {
			first = 0;
			last = f->size ? f->size - 1 : 0;
		}
		if (head || f->size == 0 || empty_part)
			break;
		if ((r = efs_reader_new(&m->reader_source, f, first, last, &rd)) < 0)
			goto out;
		efs_reader_know(rd, &known);
		if ((r = efs_reader_prefetch(rd)) == 0) {
			/* A small file's chunk ids, read with its chunk list at
			 * the entry's count, spare the next GET that list. */
			if (counted && !known.count && efs_reader_learned(rd, &learned))
				efs_object_cache_learn(m->object_cache, s->bucket, s->key,
						       f->file_id, &learned);
			break;
		}
		if (r == -ENOENT)
			efs_object_cache_forget(m->object_cache, s->bucket, s->key);
		if (r != -ENOENT) {
			efs_error("s3 get %s/%s: file %s unreadable: %s (request %s)", s->bucket,
				  s->key, f->file_id, strerror(-r), s->request_id);
			r = efs_s3_error(s, 503, "ServiceUnavailable",
					 "The object's data cannot be read right now; retry "
					 "shortly");
			goto out;
		}
	}
	if (r < 0) {
		r = efs_s3_error(s, 503, "SlowDown", "The object is being replaced; retry");
		goto out;
	}
	object_headers(s, o);
	/* How the file is stored now (s3_policy.h); STANDARD goes unsaid, as
	 * S3 leaves it. */
	const char *storage_class = efs_s3_storage_class(f->policy);
	if (strcmp(storage_class, "STANDARD") != 0)
		efs_http_add_header(s->http, "x-amz-storage-class", storage_class);
	/* The stored checksum, of the whole object only (not of a range or
	 * of one part of several), as S3. */
	const char *mode = efs_http_header(s->http, "x-amz-checksum-mode");
	if (mode && strcasecmp(mode, "ENABLED") == 0 && (part_number ? parts_count == 0 : !partial))
		efs_s3_checksum_reply_stored(s, o->checksum);
	if (parts_count) {
		char count_text[16];
		snprintf(count_text, sizeof(count_text), "%u", parts_count);
		efs_http_add_header(s->http, "x-amz-mp-parts-count", count_text);
	}
	unsigned status = partial ? 206 : 200;
	if (partial) {
		snprintf(range, sizeof(range), "bytes %llu-%llu/%llu", (unsigned long long)first,
			 (unsigned long long)last, (unsigned long long)f->size);
		efs_http_add_header(s->http, "Content-Range", range);
	}
	uint64_t length = f->size && !empty_part ? last - first + 1 : 0;
	if (length == 0) {
		r = efs_http_reply_empty(s->http, status);
	} else if (head) {
		r = efs_http_reply_stream(s->http, status, (int64_t)length, no_body, NULL, NULL);
	} else {
		struct efs_buf whole;
		size_t offset, len;
		efs_buf_init(&whole, SIZE_MAX);
		if (efs_reader_take(rd, &whole, &offset, &len)) {
			r = efs_http_reply_buf(s->http, status, NULL, &whole, offset, len);
			efs_buf_release(&whole);
		} else {
			r = efs_http_reply_stream(s->http, status, (int64_t)length, object_read, rd,
						  object_read_free);
			rd = NULL; /* the reply owns it */
		}
	}
out:
	efs_reader_free(rd);
	free(x);
	return r;
}

/* ---- DeleteObject ---------------------------------------------------- */

int efs_s3_delete_object(struct efs_s3_req *s)
{
	struct efs_bucket_info b;
	if (efs_s3_own_bucket(s, &b) < 0)
		return 0;
	int r = efs_meta_object_delete(s->m->meta, s->bucket, s->key, efs_now_ms());
	if (r < 0 && r != -ENOENT)
		return efs_s3_error_store(s, r, "DeleteObject");
	if (r == 0)
		efs_info("s3 object %s/%s deleted by %s (request %s)", s->bucket, s->key,
			 s->principal.owner, s->request_id);
	return efs_http_reply_empty(s->http, 204);
}

/* ---- DeleteObjects ---------------------------------------------------- */

/* The <Delete> document: at most EFS_S3_DELETE_MAX keys of 1024 bytes,
 * each escaped at worst 6 times over (&#xNN;), with room for the markup. */
#define DELETE_BODY_MAX ((size_t)2 * 1024 * 1024)

struct delete_op {
	struct efs_buf body;
	struct efs_s3_delete_list list;
};

static void delete_free(void *op)
{
	struct delete_op *d = op;
	if (!d)
		return;
	efs_buf_release(&d->body);
	efs_s3_delete_list_release(&d->list);
	free(d);
}

static int delete_body(struct efs_s3_req *s, const char *data, size_t len)
{
	struct delete_op *d = s->op;
	if (efs_buf_append(&d->body, data, len) < 0)
		return efs_s3_error(s, 400, "MaxMessageLengthExceeded",
				    "Your request was too big (at most %zu bytes here).",
				    DELETE_BODY_MAX),
		       -E2BIG;
	return 0;
}

/* The parser's state over the list it fills. */
struct delete_parse {
	struct efs_s3_delete_list *list;
	bool in_object, object_has_key;
};

/* <Delete> [<Quiet>bool</Quiet>] (<Object><Key>k</Key></Object>)+ */
static int delete_start(void *ctx, int depth, const char *name)
{
	struct delete_parse *d = ctx;
	if (depth == 1)
		return strcmp(name, "Delete") == 0 ? 0 : -EBADMSG;
	if (depth == 2 && strcmp(name, "Object") == 0) {
		if (d->list->key_count == EFS_S3_DELETE_MAX)
			return -EBADMSG;
		d->in_object = true;
		d->object_has_key = false;
		return 0;
	}
	if (depth == 2)
		return strcmp(name, "Quiet") == 0 ? 0 : -EBADMSG;
	if (depth == 3 && d->in_object && strcmp(name, "Key") == 0)
		return 0;
	if (depth == 3 && d->in_object &&
	    (strcmp(name, "VersionId") == 0 || strcmp(name, "ETag") == 0 ||
	     strcmp(name, "LastModifiedTime") == 0 || strcmp(name, "Size") == 0)) {
		d->list->refused =
		    strcmp(name, "VersionId") == 0 ? "VersionId" : "conditional deletes";
		return 0;
	}
	return -EBADMSG;
}

static int delete_end(void *ctx, int depth, const char *name, const char *text, size_t text_len)
{
	struct delete_parse *d = ctx;
	if (depth == 2 && strcmp(name, "Quiet") == 0) {
		if (strcmp(text, "true") != 0 && strcmp(text, "false") != 0)
			return -EBADMSG;
		d->list->quiet = strcmp(text, "true") == 0;
	} else if (depth == 2 && strcmp(name, "Object") == 0) {
		if (!d->object_has_key)
			return -EBADMSG;
		d->in_object = false;
		d->list->key_count++;
	} else if (depth == 3 && strcmp(name, "Key") == 0) {
		if (d->object_has_key || text_len == 0 || memchr(text, '\0', text_len))
			return -EBADMSG;
		d->object_has_key = true;
		return efs_buf_append(&d->list->keys, text, text_len + 1);
	}
	return 0;
}

void efs_s3_delete_list_init(struct efs_s3_delete_list *list)
{
	memset(list, 0, sizeof(*list));
	efs_buf_init(&list->keys, (size_t)EFS_S3_DELETE_MAX * (EFS_XML_MAX_TEXT + 1));
}

void efs_s3_delete_list_release(struct efs_s3_delete_list *list)
{
	efs_buf_release(&list->keys);
}

int efs_s3_delete_parse(const char *body, size_t len, struct efs_s3_delete_list *out)
{
	struct delete_parse d = {.list = out};
	int r = len ? efs_xml_parse(body, len, delete_start, delete_end, &d) : -EBADMSG;
	if (r == 0 && out->key_count == 0)
		r = -EBADMSG;
	return r;
}

/* The body digests DeleteObjects takes: S3 requires one (Content-MD5, or
 * the x-amz-checksum-* newer SDKs send instead), and each one given must
 * be the body's. */
enum body_digest { DIGEST_MD5, DIGEST_CRC32, DIGEST_CRC32C, DIGEST_SHA256 };

static const struct {
	const char *header;
	const char *name; /* in messages */
	size_t len;	  /* decoded bytes */
} BODY_DIGESTS[] = {
    [DIGEST_MD5] = {"Content-MD5", "Content-MD5", EFS_MD5_LEN},
    [DIGEST_CRC32] = {"x-amz-checksum-crc32", "CRC32", 4},
    [DIGEST_CRC32C] = {"x-amz-checksum-crc32c", "CRC32C", 4},
    [DIGEST_SHA256] = {"x-amz-checksum-sha256", "SHA256", EFS_SHA256_LEN},
};

/* Digest @kind of @data (@len bytes), in lower-case hex, into @hex. */
static int body_digest_hex(enum body_digest kind, const char *data, size_t len,
			   char hex[EFS_SHA256_HEX_LEN + 1])
{
	struct efs_md5 md5;
	int r;
	switch (kind) {
	case DIGEST_MD5:
		if ((r = efs_md5_init(&md5)) < 0)
			return r;
		efs_md5_update(&md5, data, len);
		efs_md5_final_hex(&md5, hex);
		efs_md5_release(&md5);
		return 0;
	case DIGEST_SHA256:
		efs_sha256_hex(data, len, hex);
		return 0;
	case DIGEST_CRC32: /* big-endian bytes, as S3 encodes it */
		snprintf(hex, EFS_SHA256_HEX_LEN + 1, "%08x", (unsigned)efs_crc32(0, data, len));
		return 0;
	case DIGEST_CRC32C:
		snprintf(hex, EFS_SHA256_HEX_LEN + 1, "%08x", (unsigned)efs_crc32c(0, data, len));
		return 0;
	}
	return -EINVAL;
}

/* Checks DeleteObjects' body digests. 0 when they hold, 1 when refused
 * (replied), or a negative errno. */
static int delete_body_integrity(struct efs_s3_req *s, struct delete_op *d)
{
	const char *data = d->body.data ? d->body.data : "";
	bool any = false;
	for (size_t i = 0; i < sizeof(BODY_DIGESTS) / sizeof(BODY_DIGESTS[0]); i++) {
		const char *value = efs_http_header(s->http, BODY_DIGESTS[i].header);
		unsigned char given[EFS_SHA256_LEN];
		char given_hex[EFS_SHA256_HEX_LEN + 1], computed_hex[EFS_SHA256_HEX_LEN + 1];
		int r;
		if (!value)
			continue;
		any = true;
		if (efs_base64_decode_exact(value, given, BODY_DIGESTS[i].len) < 0) {
			if (i == DIGEST_MD5)
				efs_s3_error(s, 400, "InvalidDigest",
					     "The Content-MD5 you specified is not valid.");
			else
				efs_s3_error(s, 400, "InvalidRequest",
					     "Value for %s header is invalid.",
					     BODY_DIGESTS[i].header);
			return 1;
		}
		if ((r = body_digest_hex((enum body_digest)i, data, d->body.len, computed_hex)) < 0)
			return r;
		efs_hex_encode(given, BODY_DIGESTS[i].len, given_hex);
		if (strcmp(given_hex, computed_hex) != 0) {
			if (i == DIGEST_MD5)
				efs_s3_error(s, 400, "BadDigest",
					     "The Content-MD5 you specified did not match what we "
					     "received.");
			else
				efs_s3_error(s, 400, "BadDigest",
					     "The %s you specified did not match the calculated "
					     "checksum.",
					     BODY_DIGESTS[i].name);
			return 1;
		}
	}
	if (!any) {
		efs_s3_error(s, 400, "InvalidRequest",
			     "Missing required header for this request: Content-MD5 (or an "
			     "x-amz-checksum-crc32, -crc32c or -sha256)");
		return 1;
	}
	return 0;
}

static int delete_objects_end(struct efs_s3_req *s)
{
	struct delete_op *d = s->op;
	struct efs_bucket_info b;
	struct efs_s3_xml x;
	size_t deleted = 0, failed = 0;
	int r;

	if (efs_s3_check_signed_body(s, d->body.data, d->body.len) < 0)
		return 0;
	if ((r = delete_body_integrity(s, d)) != 0)
		return r < 0 ? r : 0;
	r = efs_s3_delete_parse(d->body.data, d->body.len, &d->list);
	if (r == -EBADMSG || r == -E2BIG)
		return efs_s3_error(s, 400, "MalformedXML",
				    "The XML you provided was not well-formed or did not validate "
				    "against our published schema (a <Delete> of 1 to %d <Object> "
				    "with a <Key> each).",
				    EFS_S3_DELETE_MAX);
	if (r < 0)
		return r;
	if (d->list.refused)
		return efs_s3_error(s, 501, "NotImplemented",
				    "%s in DeleteObjects is not implemented by this server",
				    d->list.refused);
	if (efs_s3_own_bucket(s, &b) < 0)
		return 0;

	efs_s3_xml_init(&x);
	efs_s3_xml_open(&x, "DeleteResult", EFS_S3_XMLNS);
	const char *key = d->list.keys.data;
	for (size_t i = 0; i < d->list.key_count; i++, key += strlen(key) + 1) {
		const char *code = NULL, *message = NULL;
		if (strlen(key) > EFS_S3_KEY_MAX || !efs_utf8_valid(key, strlen(key))) {
			code = "KeyTooLongError";
			message = "Your key is too long";
		} else {
			r = efs_meta_object_delete(s->m->meta, s->bucket, key, efs_now_ms());
			if (r == -EAGAIN) {
				code = "ServiceUnavailable";
				message = "the metadata store is unavailable; retry shortly";
			} else if (r < 0 && r != -ENOENT) {
				efs_error("s3 delete-objects %s/%s: metadata store error: %s "
					  "(request %s)",
					  s->bucket, key, strerror(-r), s->request_id);
				code = "InternalError";
				message = "We encountered an internal error.";
			}
		}
		if (code) {
			failed++;
			efs_s3_xml_open(&x, "Error", NULL);
			efs_s3_xml_text(&x, "Key", key);
			efs_s3_xml_text(&x, "Code", code);
			efs_s3_xml_text(&x, "Message", message);
			efs_s3_xml_close(&x, "Error");
			continue;
		}
		deleted++;
		if (!d->list.quiet) {
			efs_s3_xml_open(&x, "Deleted", NULL);
			efs_s3_xml_text(&x, "Key", key);
			efs_s3_xml_close(&x, "Deleted");
		}
	}
	efs_s3_xml_close(&x, "DeleteResult");
	efs_info("s3 delete-objects %s: %zu deleted (or absent), %zu failed, by %s (request %s)",
		 s->bucket, deleted, failed, s->principal.owner, s->request_id);
	return efs_s3_xml_reply(s->http, 200, &x);
}

int efs_s3_delete_objects_begin(struct efs_s3_req *s)
{
	struct delete_op *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	efs_buf_init(&d->body, DELETE_BODY_MAX);
	efs_s3_delete_list_init(&d->list);
	s->op = d;
	s->op_free = delete_free;
	if (s->http->content_length > (int64_t)DELETE_BODY_MAX)
		return efs_s3_error(s, 400, "MaxMessageLengthExceeded",
				    "Your request was too big (at most %zu bytes here).",
				    DELETE_BODY_MAX);
	s->on_body = delete_body;
	s->on_end = delete_objects_end;
	return 0;
}

/* ---- CopyObject ------------------------------------------------------- */

/* The copy source that names an EchoFS file instead of an object:
 * "_files/<file id>" ("_" is never in a bucket name). */
#define FILES_SOURCE "_files"

struct copy_op {
	struct efs_s3_target source; /* from x-amz-copy-source */
	bool from_file;		     /* source.key is a file id (FILES_SOURCE) */
	char file_etag[EFS_MD5_HEX_LEN + 1];
	bool replace_headers; /* x-amz-metadata-directive: REPLACE */
	/* x-amz-copy-source-if-*: NULL / 0 when absent (an unusable date is
	 * ignored, as S3 and RFC 7232 do) */
	const char *if_match, *if_none_match;
	int64_t if_modified_since_s, if_unmodified_since_s;
	struct efs_object_cond cond; /* the destination's, as PutObject's */
	char if_etag[EFS_S3_ETAG_MAX + 1];
	struct efs_object_info obj; /* the new object */
	/* x-amz-storage-class / x-echofs-policy (s3_policy.h): the new
	 * file's policy (canonical; "" without the headers: the source's).
	 * The copy still shares the source's chunks, which stay stored as they
	 * are, as any chunk deduplication shares (docs/S3.md). */
	bool policy_asked;
	struct efs_policy policy;
	char dst_policy[EFS_POLICY_MAX_LEN + 1];
	unsigned dst_replication;
};

/* The copy-source conditions on the source's row @src, as S3 evaluates
 * them: if-match (else if-unmodified-since) and if-none-match (else
 * if-modified-since, a date later than now ignored) must all hold; any
 * failure is 412 (-ECANCELED here). Run inside the copy's transaction. */
static int copy_source_check(void *ctx, const struct efs_object_info *src)
{
	const struct copy_op *c = ctx;
	int64_t modified_s = src->last_modified_ms / 1000;
	if (c->if_match ? !etag_listed(c->if_match, src->etag)
			: c->if_unmodified_since_s && modified_s > c->if_unmodified_since_s)
		return -ECANCELED;
	if (c->if_none_match
		? etag_listed(c->if_none_match, src->etag)
		: c->if_modified_since_s && c->if_modified_since_s <= efs_now_ms() / 1000 &&
		      modified_s <= c->if_modified_since_s)
		return -ECANCELED;
	return 0;
}

/* The hex MD5 of file @f's bytes (an S3 ETag), read through the download
 * path: a file uploaded through the REST API has none recorded. */
static int file_md5(struct efs_master *m, const struct efs_file_info *f,
		    char out[EFS_MD5_HEX_LEN + 1])
{
	struct efs_md5 md5;
	struct efs_reader *rd = NULL;
	size_t cap = 256 * 1024;
	char *buf = NULL;
	int r;

	if ((r = efs_md5_init(&md5)) < 0)
		return r;
	if (f->size == 0)
		goto done;
	if (!(buf = malloc(cap))) {
		r = -ENOMEM;
		goto out;
	}
	if ((r = efs_reader_new(&m->reader_source, f, 0, f->size - 1, &rd)) < 0)
		goto out;
	for (;;) {
		ssize_t n = efs_reader_read(rd, buf, cap);
		if (n < 0) {
			r = (int)n;
			goto out;
		}
		if (n == 0)
			break;
		efs_md5_update(&md5, buf, (size_t)n);
	}
done:
	efs_md5_final_hex(&md5, out);
	r = 0;
out:
	efs_reader_free(rd);
	free(buf);
	efs_md5_release(&md5);
	return r;
}

/* The source file of a "_files/<id>" copy: the caller's own (another
 * user's is NoSuchKey, as the REST API answers file_not_found), its MD5
 * into c->file_etag. Replies and returns -EINVAL when it cannot be had. */
static int copy_file_source(struct efs_s3_req *s, struct copy_op *c)
{
	struct efs_file_info f;
	int r = efs_meta_file_get(s->m->meta, c->source.key, &f);
	if (r == -ENOENT || (r == 0 && strcmp(f.owner, s->principal.owner) != 0))
		return efs_s3_error(s, 404, "NoSuchKey",
				    "The specified key does not exist (no such file of yours: "
				    "the copy source)."),
		       -EINVAL;
	if (r < 0)
		return efs_s3_error_store(s, r, "CopyObject source file"), -EINVAL;
	if ((r = file_md5(s->m, &f, c->file_etag)) == -ENOENT)
		return efs_s3_error(s, 404, "NoSuchKey",
				    "The specified key does not exist (the copy source file "
				    "was deleted)."),
		       -EINVAL;
	if (r < 0) {
		efs_error("s3 copy %s/%s <- file %s: reading it for its MD5 failed: %s (request "
			  "%s)",
			  s->bucket, s->key, f.file_id, strerror(-r), s->request_id);
		return efs_s3_error(s, 503, "ServiceUnavailable",
				    "The source file's data cannot be read right now; retry "
				    "shortly"),
		       -EINVAL;
	}
	return 0;
}

static int copy_end(struct efs_s3_req *s)
{
	struct copy_op *c = s->op;
	struct efs_bucket_info b, src_bucket;
	char name[EFS_NAME_MAX + 1];
	int r;

	if (efs_s3_own_bucket(s, &b) < 0)
		return 0;
	if (c->from_file && copy_file_source(s, c) < 0)
		return 0;
	if (c->from_file)
		goto copy;
	if ((r = efs_meta_bucket_get(s->m->meta, c->source.bucket, &src_bucket)) == -ENOENT)
		return efs_s3_error(s, 404, "NoSuchBucket",
				    "The specified bucket does not exist (the copy source's)");
	if (r < 0)
		return efs_s3_error_store(s, r, "CopyObject source bucket");
	if (strcmp(src_bucket.owner, s->principal.owner) != 0) {
		efs_info("s3 copy %s/%s <- %s/%s refused: the source bucket is not %s's "
			 "(request %s)",
			 s->bucket, s->key, c->source.bucket, c->source.key, s->principal.owner,
			 s->request_id);
		return efs_s3_error(s, 403, "AccessDenied", "Access Denied");
	}
copy:
	if ((r = efs_ordered_hex(c->obj.file_id, EFS_FILE_ID_LEN / 2)) < 0)
		return r;
	efs_strlcpy(c->obj.bucket, s->bucket, sizeof(c->obj.bucket));
	efs_strlcpy(c->obj.key, s->key, sizeof(c->obj.key));
	c->obj.last_modified_ms = efs_now_ms();
	file_name_of(s->key, name, sizeof(name));
	struct efs_object_copy copy = {
	    .owner = s->principal.owner,
	    .src_bucket = c->source.bucket,
	    .src_key = c->source.key,
	    .src_file_id = c->from_file ? c->source.key : NULL,
	    .src_etag = c->from_file ? c->file_etag : NULL,
	    .dst = &c->obj,
	    .file_name = name,
	    .copy_headers = !c->replace_headers,
	    .cond = &c->cond,
	    .check_source = copy_source_check,
	    .check_ctx = c,
	    .dst_policy = c->dst_policy,
	    .dst_replication = c->dst_replication,
	};
	r = efs_meta_object_copy(s->m->meta, &copy, efs_now_ms());
	switch (r) {
	case 0:
		break;
	case -ENOKEY:
		return efs_s3_error(s, 404, "NoSuchKey",
				    "The specified key does not exist (the copy source's).");
	case -ENOENT:
		return efs_s3_error(s, 404, "NoSuchBucket", "The specified bucket does not exist");
	case -EACCES: /* the source bucket went or changed hands since */
		return efs_s3_error(s, 404, "NoSuchBucket",
				    "The specified bucket does not exist (the copy source's)");
	case -ENODATA:
		return efs_s3_error(s, 404, "NoSuchKey", "The specified key does not exist.");
	case -ECANCELED:
	case -EEXIST:
	case -ESTALE:
		efs_info("s3 copy %s/%s <- %s/%s refused: %s (request %s)", s->bucket, s->key,
			 c->source.bucket, c->source.key,
			 r == -ECANCELED ? "an x-amz-copy-source-if-* condition does not hold"
			 : r == -EEXIST	 ? "If-None-Match: * and the key exists"
					 : "If-Match or If-Unmodified-Since does not hold",
			 s->request_id);
		return efs_s3_error(
		    s, 412, "PreconditionFailed",
		    "At least one of the pre-conditions you specified did not hold");
	default:
		return efs_s3_error_store(s, r, "CopyObject");
	}
	efs_info("s3 object %s/%s copied from %s/%s: file %s shares its %llu bytes, owner %s "
		 "(request %s)",
		 s->bucket, s->key, c->source.bucket, c->source.key, c->obj.file_id,
		 (unsigned long long)c->obj.size, s->principal.owner, s->request_id);
	char etag[EFS_S3_ETAG_MAX + 3];
	struct efs_s3_xml x;
	snprintf(etag, sizeof(etag), "\"%s\"", c->obj.etag);
	efs_s3_xml_init(&x);
	efs_s3_xml_open(&x, "CopyObjectResult", EFS_S3_XMLNS);
	efs_s3_xml_time(&x, "LastModified", c->obj.last_modified_ms);
	efs_s3_xml_text(&x, "ETag", etag);
	efs_s3_xml_close(&x, "CopyObjectResult");
	return efs_s3_xml_reply(s->http, 200, &x);
}

/* x-amz-copy-source: "bucket/key" URL-encoded, maybe with a leading "/"
 * and "?versionId=null" (the only version of an object here). Replies and
 * returns -EINVAL when unusable. */
static int copy_source(struct efs_s3_req *s, const char *value, struct efs_s3_target *out)
{
	char target[3 * (EFS_S3_BUCKET_MAX + EFS_S3_KEY_MAX) + 64];
	const char *code = NULL;
	const char *query = strchr(value, '?');
	if (snprintf(target, sizeof(target), "%s%s", value[0] == '/' ? "" : "/", value) >=
	    (int)sizeof(target))
		return efs_s3_error(s, 400, "KeyTooLongError", "Your key is too long"), -EINVAL;
	if (query && strcmp(query, "?versionId=null") != 0)
		return efs_s3_error(s, 501, "NotImplemented",
				    "A copy source version other than versionId=null is not "
				    "implemented: versioning is not supported"),
		       -EINVAL;
	if (efs_s3_target_parse(target, NULL, NULL, out, &code) < 0) {
		if (strcmp(code, "KeyTooLongError") == 0)
			return efs_s3_error(s, 400, code, "Your key is too long"), -EINVAL;
		return efs_s3_error(s, 400, "InvalidArgument",
				    "Invalid copy source encoding (x-amz-copy-source)"),
		       -EINVAL;
	}
	if (!out->bucket[0] || !out->has_key)
		return efs_s3_error(s, 400, "InvalidArgument",
				    "Copy Source must mention the source bucket and key: "
				    "sourcebucket/sourcekey"),
		       -EINVAL;
	if (strcmp(out->bucket, FILES_SOURCE) == 0 &&
	    (strlen(out->key) != EFS_FILE_ID_LEN || !efs_id_valid(out->key)))
		return efs_s3_error(s, 400, "InvalidArgument",
				    "A copy source " FILES_SOURCE "/<id> names an EchoFS file by "
				    "its id (%d hex digits)",
				    EFS_FILE_ID_LEN),
		       -EINVAL;
	return 0;
}

int efs_s3_copy_object_begin(struct efs_s3_req *s)
{
	struct copy_op *c = calloc(1, sizeof(*c));
	int64_t date_s;
	int r;

	if (!c)
		return -ENOMEM;
	s->op = c;
	s->op_free = free;
	if ((r = copy_source(s, efs_http_header(s->http, "x-amz-copy-source"), &c->source)) < 0)
		return 0;
	c->from_file = strcmp(c->source.bucket, FILES_SOURCE) == 0;
	const char *directive = efs_http_header(s->http, "x-amz-metadata-directive");
	if (directive && strcmp(directive, "COPY") != 0 && strcmp(directive, "REPLACE") != 0)
		return efs_s3_error(s, 400, "InvalidArgument", "Unknown metadata directive.");
	c->replace_headers = directive && strcmp(directive, "REPLACE") == 0;
	if ((r = efs_s3_policy(s, &c->policy, &c->policy_asked)) < 0)
		return efs_http_replied(s->http) ? 0 : r;
	if (c->policy_asked) {
		struct efs_file_info as_stored = {0};
		efs_s3_policy_file(s->m, &c->policy, &as_stored);
		efs_strlcpy(c->dst_policy, as_stored.policy, sizeof(c->dst_policy));
		c->dst_replication = as_stored.replication;
	}
	if (!c->replace_headers && !c->policy_asked && !c->from_file &&
	    strcmp(c->source.bucket, s->bucket) == 0 &&
	    strcmp(c->source.key, s->key) == 0)
		return efs_s3_error(s, 400, "InvalidRequest",
				    "This copy request is illegal because it is trying to copy an "
				    "object to itself without changing the object's metadata, "
				    "storage class, website redirect location or encryption "
				    "attributes.");
	if (c->replace_headers && (r = put_headers(s, &c->obj)) < 0)
		return efs_http_replied(s->http) ? 0 : r;
	c->if_match = efs_http_header(s->http, "x-amz-copy-source-if-match");
	c->if_none_match = efs_http_header(s->http, "x-amz-copy-source-if-none-match");
	if (header_date(s, "x-amz-copy-source-if-modified-since", &date_s))
		c->if_modified_since_s = date_s;
	if (header_date(s, "x-amz-copy-source-if-unmodified-since", &date_s))
		c->if_unmodified_since_s = date_s;
	if ((r = put_conditions(s, &c->cond, c->if_etag)) < 0)
		return efs_http_replied(s->http) ? 0 : r;
	s->on_end = copy_end; /* a body, if any, is read and ignored (at most 64 KiB) */
	return 0;
}

/* ---- shared with multipart uploads (s3_multipart.c) -------------------- */

int efs_s3_object_headers(struct efs_s3_req *s, struct efs_object_info *o)
{
	return put_headers(s, o);
}

void efs_s3_file_name(const char *key, char *out, size_t size)
{
	file_name_of(key, out, size);
}

int efs_s3_content_md5(const char *text, unsigned char out[EFS_MD5_LEN])
{
	return content_md5_decode(text, out);
}
