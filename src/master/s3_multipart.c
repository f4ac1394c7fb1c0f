/* SPDX-License-Identifier: MIT */
/* s3_multipart.c - S3 multipart uploads (contract in s3_multipart.h).
 *
 * A part streams through the upload pipeline as a PutObject body does,
 * into a hidden session (the pipeline is told there is no file: even a
 * one-chunk part goes into the session), so its chunks are referenced
 * from the moment they are stored. The part is acknowledged only once
 * efs_meta_s3_part_put has named that session in the part's row (and
 * given it the upload's expiry); a part refused or cut short has its
 * session deleted (or, after a crash, expired by the collector).
 *
 * Complete turns the listed parts' sessions into one file's chunk list
 * in one transaction: no byte is copied. A file's chunks are all
 * chunk_size long but the last (the download reader finds a byte by
 * division), so this needs every part but the last to be a whole number
 * of chunks, all of one chunk size; with the default CHUNK_SIZE (1 MiB)
 * every client's part size (5, 8, 15, 16 MiB...) is. The file's SHA-256
 * (EchoFS's own checksum, which the REST API and `echofs get` check)
 * cannot be derived from the parts' hashes, so Complete reads the parts'
 * chunks once to compute it.
 *
 * Parts that do not line up (5,000,000 bytes; 5 MiB parts with a 4 MiB
 * CHUNK_SIZE; parts stored before a CHUNK_SIZE change) are re-chunked:
 * the same read streams their bytes through an upload pipeline into new
 * chunks of the server's chunk size, in a hidden session of Complete's
 * own (chunks equal to the parts' are deduplicated as for any upload),
 * and the store commits that session's chunks as the file's, releasing
 * the parts. Time and I/O grow with the object; memory does not (one
 * chunk read at a time plus the pipeline's bounded buffers). The object's
 * part layout (?partNumber) still comes from the parts' sizes.
 */
#include "master/s3_multipart.h"
#include "echofs/hash.h"
#include "echofs/log.h"
#include "echofs/util.h"
#include "echofs/xml.h"
#include "master/api.h"
#include "master/chunk_backend.h"
#include "master/chunk_cache.h"
#include "master/download.h"
#include "master/s3_checksum.h"
#include "master/s3_hold.h"
#include "master/s3_bucket.h"
#include "master/s3_object.h"
#include "master/s3_policy.h"
#include "master/s3_xml.h"
#include "master/upload_pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* S3's limits: a part of 5 MiB..5 GiB (but the last may be smaller). */
#define PART_MIN_SIZE ((uint64_t)5 * 1024 * 1024)
#define PART_MAX_SIZE ((uint64_t)5 * 1024 * 1024 * 1024)
/* The <CompleteMultipartUpload> document: 10000 <Part>s of ~100 bytes
 * each, with room for checksums and white space. */
#define COMPLETE_BODY_MAX ((size_t)4 * 1024 * 1024)
#define LIST_MAX 1000	    /* parts or uploads in one listing page */
#define COMPLETE_ATTEMPTS 3 /* a part replaced meanwhile: read the parts again */
#define PART_PAGE 1000	    /* parts read from the store at once */

/* ---- common --------------------------------------------------------- */

/* A store operation the backend does not have (-ENOTSUP: every store has
 * them now; kept for a backend that would not). */
static int not_implemented(struct efs_s3_req *s)
{
	return efs_s3_error(s, 501, "NotImplemented",
			    "multipart upload is not implemented with this server's metadata "
			    "store");
}

static int no_such_upload(struct efs_s3_req *s)
{
	return efs_s3_error(s, 404, "NoSuchUpload",
			    "The specified upload does not exist. The upload ID may be invalid, "
			    "or the upload may have been aborted or completed.");
}

/* The upload @upload_id (?uploadId, may be NULL), in progress, for this
 * bucket and key, into @u. 0, or the reply made (NoSuchUpload, 501, store
 * errors) and -EACCES. With @completed_ok a completed upload is found too.
 * Reads nothing of the HTTP request (a held Complete's thread calls it). */
static int find_upload_id(struct efs_s3_req *s, const char *upload_id, struct efs_s3_upload *u,
			  bool completed_ok)
{
	int r;
	if (!upload_id || !*upload_id || strlen(upload_id) > EFS_ID_MAX)
		return no_such_upload(s), -EACCES;
	r = efs_meta_s3_upload_get(s->m->meta, upload_id, u);
	if (r == -ENOTSUP)
		return not_implemented(s), -EACCES;
	if (r == -ENOENT)
		return no_such_upload(s), -EACCES;
	if (r < 0)
		return efs_s3_error_store(s, r, "multipart upload lookup"), -EACCES;
	/* Another user's upload id is no upload of this bucket's owner. */
	if (strcmp(u->owner, s->principal.owner) != 0 || strcmp(u->obj.bucket, s->bucket) != 0 ||
	    strcmp(u->obj.key, s->key) != 0 || (u->completed && !completed_ok) ||
	    (!u->completed && u->expires_at_ms <= efs_now_ms()))
		return no_such_upload(s), -EACCES;
	return 0;
}

/* find_upload_id of the request's ?uploadId. */
static int find_upload(struct efs_s3_req *s, struct efs_s3_upload *u, bool completed_ok)
{
	return find_upload_id(s, efs_s3_query(s, "uploadId"), u, completed_ok);
}

/* A hex MD5 from an ETag as clients send it (quoted or not). false when
 * it is not 32 hex digits. */
static bool etag_hex(const char *text, size_t len, char out[EFS_MD5_HEX_LEN + 1])
{
	while (len && (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r'))
		text++, len--;
	while (len && (text[len - 1] == ' ' || text[len - 1] == '\t' || text[len - 1] == '\n' ||
		       text[len - 1] == '\r'))
		len--;
	if (len >= 2 && text[0] == '"' && text[len - 1] == '"')
		text++, len -= 2;
	if (len != EFS_MD5_HEX_LEN)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (efs_hex_value((unsigned char)text[i]) < 0)
			return false;
		out[i] = (char)(text[i] >= 'A' && text[i] <= 'F' ? text[i] - 'A' + 'a' : text[i]);
	}
	out[len] = '\0';
	return true;
}

/* ---- CreateMultipartUpload --------------------------------------------- */

int efs_s3_create_upload(struct efs_s3_req *s)
{
	struct efs_bucket_info b;
	struct efs_s3_upload *u = NULL;
	struct efs_s3_xml x;
	char random_part[21];
	int64_t now = efs_now_ms();
	int r = 0;

	if (efs_s3_own_bucket(s, &b) < 0)
		return 0;
	if (!(u = calloc(1, sizeof(*u))))
		return -ENOMEM;
	if ((r = efs_s3_object_headers(s, &u->obj)) < 0) {
		r = efs_http_replied(s->http) ? 0 : r;
		goto out;
	}
	/* The parts' policy, checked now if asked, and remembered canonical
	 * so that every master stores the parts alike (SQL; DynamoDB keeps
	 * none: its only policy is the default). */
	struct efs_policy policy;
	bool asked;
	if ((r = efs_s3_policy(s, &policy, &asked)) < 0) {
		r = efs_http_replied(s->http) ? 0 : r;
		goto out;
	}
	efs_ec_policy_format(&policy, u->policy, sizeof(u->policy));
	/* Upload ids sort by creation time (ListMultipartUploads lists the
	 * uploads of a key in that order, as S3): 12 hex digits of the
	 * milliseconds, then 20 random ones. */
	if ((r = efs_random_hex(random_part, 10)) < 0)
		goto out;
	snprintf(u->upload_id, sizeof(u->upload_id), "%012llx%s",
		 (unsigned long long)(now & 0xffffffffffffLL), random_part);
	efs_strlcpy(u->owner, b.owner, sizeof(u->owner));
	efs_strlcpy(u->obj.bucket, s->bucket, sizeof(u->obj.bucket));
	efs_strlcpy(u->obj.key, s->key, sizeof(u->obj.key));
	u->created_at_ms = now;
	u->expires_at_ms = now + s->m->cfg.s3_multipart_expiry_ms;
	r = efs_meta_s3_upload_create(s->m->meta, u);
	if (r == -ENOTSUP) {
		r = not_implemented(s);
		goto out;
	}
	if (r == -ENOENT) {
		r = efs_s3_error(s, 404, "NoSuchBucket", "The specified bucket does not exist");
		goto out;
	}
	if (r < 0) {
		r = efs_s3_error_store(s, r, "CreateMultipartUpload");
		goto out;
	}
	efs_info("s3 multipart upload %s of %s/%s started by %s, policy %s (request %s)",
		 u->upload_id, s->bucket, s->key, s->principal.owner, u->policy, s->request_id);
	efs_s3_xml_init(&x);
	efs_s3_xml_open(&x, "InitiateMultipartUploadResult", EFS_S3_XMLNS);
	efs_s3_xml_text(&x, "Bucket", s->bucket);
	efs_s3_xml_text(&x, "Key", s->key);
	efs_s3_xml_text(&x, "UploadId", u->upload_id);
	efs_s3_xml_close(&x, "InitiateMultipartUploadResult");
	r = efs_s3_xml_reply(s->http, 200, &x);
out:
	free(u);
	return r;
}

/* ---- UploadPart ----------------------------------------------------------- */

struct part_op {
	struct efs_master *m;
	char upload_id[EFS_ID_MAX + 1];
	char owner[EFS_ID_MAX + 1];
	char name[EFS_NAME_MAX + 1];
	unsigned part_number;
	char session_id[EFS_ID_MAX + 1];
	bool session_open; /* deleted at the end unless the part was acknowledged */
	struct efs_upload_pipeline *pipeline; /* hashes the part's MD5 too */
	uint64_t expected, received;
	bool has_md5;
	unsigned char content_md5[EFS_MD5_LEN];
	struct efs_s3_checksum checksum; /* x-amz-checksum-*, header or trailer */
	size_t reserved;		 /* from the master's upload_memory */
	/* The upload's storage policy: the pipeline stores through this. */
	struct efs_uploader uploader;
	/* UploadPartCopy: the source file and the range of it to copy */
	bool copy;
	struct efs_file_info source;
	uint64_t first, last;
};

static void part_free(void *op)
{
	struct part_op *p = op;
	if (!p)
		return;
	efs_upload_pipeline_free(p->pipeline);
	if (p->session_open) {
		int r = efs_meta_session_delete(p->m->meta, p->session_id, efs_now_ms());
		if (r < 0 && r != -ENOENT)
			efs_warn("s3 upload %s part %u: could not release the chunks of session %s "
				 "(%s); the session collector will",
				 p->upload_id, p->part_number, p->session_id, strerror(-r));
	}
	efs_s3_checksum_release(&p->checksum);
	efs_upload_memory_give(&p->m->upload_memory, p->owner, p->reserved);
	free(p);
}

/* The pipeline's efs_upload_session_open_fn: a hidden session, alive while
 * chunks arrive (as a one-request upload's); the part's acknowledgement
 * gives it the upload's expiry. */
static int part_open_session(void *ctx, char *session_id)
{
	struct part_op *p = ctx;
	int r = efs_s3_session_open(p->m, p->owner, p->name, p->expected, session_id);
	if (r < 0)
		return r;
	efs_strlcpy(p->session_id, session_id, sizeof(p->session_id));
	p->session_open = true;
	return 0;
}

static int part_body(struct efs_s3_req *s, const char *data, size_t len)
{
	struct part_op *p = s->op;
	return efs_s3_body_feed(s, p->pipeline, &p->checksum, &p->received, p->expected, data, len);
}

static int part_end(struct efs_s3_req *s)
{
	struct part_op *p = s->op;
	struct efs_upload_summary sum;
	struct efs_s3_part part;
	char etag[EFS_S3_ETAG_MAX + 3];
	int r;

	if (p->received != p->expected)
		return efs_s3_error(s, 400, "IncompleteBody",
				    "You did not provide the number of bytes specified by the "
				    "Content-Length HTTP header");
	if ((r = efs_upload_pipeline_finish(p->pipeline, NULL, &sum)) < 0) {
		if (r == -ENOSPC)
			return efs_s3_error(s, 503, "SlowDown",
					    "Not enough live workers with room for every replica");
		efs_error("s3 upload %s part %u: storing the body failed: %s (request %s)",
			  p->upload_id, p->part_number, strerror(-r), s->request_id);
		return r;
	}
	/* A copy's signed payload is its (empty) body, checked in copy_end. */
	if (!p->copy && s->principal.payload == EFS_S3_PAYLOAD_SIGNED &&
	    strcasecmp(sum.sha256, s->principal.payload_sha256) != 0)
		return efs_s3_error(s, 400, "XAmzContentSHA256Mismatch",
				    "The provided 'x-amz-content-sha256' header does not match "
				    "what was computed.");
	memset(&part, 0, sizeof(part));
	efs_strlcpy(part.etag, sum.md5, sizeof(part.etag));
	if (p->has_md5) {
		char expected[EFS_MD5_HEX_LEN + 1];
		efs_hex_encode(p->content_md5, EFS_MD5_LEN, expected);
		if (strcmp(expected, part.etag) != 0)
			return efs_s3_error(s, 400, "BadDigest",
					    "The Content-MD5 you specified did not match what we "
					    "received.");
	}
	if (!p->copy && (r = efs_s3_checksum_check(s, &p->checksum)) != 0)
		return r < 0 ? r : 0; /* the part is not recorded; part_free drops its chunks */
	part.part_number = p->part_number;
	/* Kept for the object's composite checksum (a copied part has none). */
	efs_s3_checksum_stored(&p->checksum, part.checksum, sizeof(part.checksum));
	efs_strlcpy(part.session_id, p->session_open ? p->session_id : "", sizeof(part.session_id));
	part.size = sum.size;
	part.chunk_size = p->m->cfg.chunk_size;
	part.chunk_count = sum.chunk_count;
	part.stored_bytes = sum.stored_bytes;
	part.last_modified_ms = efs_now_ms();
	r = efs_meta_s3_part_put(p->m->meta, p->upload_id, p->owner, &part, efs_now_ms());
	if (r == -ENOENT)
		return no_such_upload(s); /* aborted, completed or expired meanwhile */
	if (r == -ESTALE) {
		efs_warn("s3 upload %s part %u: its session %s expired before the part was "
			 "acknowledged (request %s)",
			 p->upload_id, p->part_number, p->session_id, s->request_id);
		return efs_s3_error(s, 503, "SlowDown", "The part took too long; send it again");
	}
	if (r < 0)
		return efs_s3_error_store(s, r, "UploadPart");
	p->session_open = false; /* the part's row holds it now */
	efs_info("s3 upload %s part %u stored: %llu bytes in %llu chunks (request %s)",
		 p->upload_id, p->part_number, (unsigned long long)part.size,
		 (unsigned long long)part.chunk_count, s->request_id);
	snprintf(etag, sizeof(etag), "\"%s\"", part.etag);
	if (p->copy) {
		struct efs_s3_xml x;
		efs_s3_xml_init(&x);
		efs_s3_xml_open(&x, "CopyPartResult", EFS_S3_XMLNS);
		efs_s3_xml_time(&x, "LastModified", part.last_modified_ms);
		efs_s3_xml_text(&x, "ETag", etag);
		efs_s3_xml_close(&x, "CopyPartResult");
		return efs_s3_xml_reply(s->http, 200, &x);
	}
	efs_http_add_header(s->http, "ETag", etag);
	efs_s3_checksum_reply(s, &p->checksum);
	return efs_http_reply_empty(s->http, 200);
}

/* ---- UploadPartCopy --------------------------------------------------- */

#define COPY_BLOCK (256 * 1024)

/* UploadPartCopy's end step: the source range streams from the download
 * reader into the part's pipeline (its chunks deduplicated against the
 * source's where they line up), then as part_end. */
static int copy_end(struct efs_s3_req *s)
{
	struct part_op *p = s->op;
	struct efs_reader *rd = NULL;
	char *block = NULL;
	int r = 0;

	if (efs_s3_check_signed_body(s, s->small_body.data, s->small_body.len) < 0)
		return 0;
	if (p->expected > 0) {
		if (!(block = malloc(COPY_BLOCK)))
			return -ENOMEM;
		if ((r = efs_reader_new(&p->m->reader_source, &p->source, p->first, p->last, &rd)) <
		    0)
			goto out;
		while (p->received < p->expected) {
			ssize_t n = efs_reader_read(rd, block, COPY_BLOCK);
			if (n == 0 || n == -ENOENT) {
				r = efs_s3_error(s, 404, "NoSuchKey",
						 "The source object was deleted during the copy.");
				goto out;
			}
			if (n < 0) {
				efs_error("s3 upload %s part %u: reading the copy source file %s "
					  "failed: %s (request %s)",
					  p->upload_id, p->part_number, p->source.file_id,
					  strerror((int)-n), s->request_id);
				r = efs_s3_error(
				    s, 503, "ServiceUnavailable",
				    "The source object cannot be read right now; retry");
				goto out;
			}
			if ((r = part_body(s, block, (size_t)n)) < 0) {
				r = efs_http_replied(s->http) ? 0 : r;
				goto out;
			}
		}
	}
	r = part_end(s);
out:
	efs_reader_free(rd);
	free(block);
	return r;
}

/* x-amz-copy-source ("bucket/key" or "/bucket/key", URL-encoded) and
 * x-amz-copy-source-range ("bytes=first-last") into p->source, first and
 * last. The source must be an object of a bucket of the caller. Replies
 * and returns -EACCES when refused. */
static int copy_source(struct efs_s3_req *s, struct part_op *p, const char *header)
{
	static const char *const conditions[] = {
	    "x-amz-copy-source-if-match", "x-amz-copy-source-if-none-match",
	    "x-amz-copy-source-if-modified-since", "x-amz-copy-source-if-unmodified-since", NULL};
	struct efs_s3_target *t = NULL;
	struct efs_object_info *o = NULL;
	struct efs_bucket_info b;
	char *target = NULL;
	const char *code = NULL;
	const char *range = efs_http_header(s->http, "x-amz-copy-source-range");
	int r = -EACCES;

	for (const char *const *c = conditions; *c; c++)
		if (efs_http_header(s->http, *c))
			return efs_s3_error(s, 501, "NotImplemented",
					    "A header you provided implies functionality that is "
					    "not implemented: %s",
					    *c),
			       -EACCES;
	if (strchr(header, '?'))
		return efs_s3_error(s, 501, "NotImplemented",
				    "versionId in x-amz-copy-source is not implemented"),
		       -EACCES;
	size_t len = strlen(header);
	if (!(t = malloc(sizeof(*t))) || !(o = malloc(sizeof(*o))) || !(target = malloc(len + 2))) {
		r = -ENOMEM;
		goto out;
	}
	snprintf(target, len + 2, "%s%s", header[0] == '/' ? "" : "/", header);
	if (efs_s3_target_parse(target, NULL, NULL, t, &code) < 0 || !t->has_key || !t->bucket[0]) {
		efs_s3_error(s, 400, "InvalidArgument",
			     "Copy Source must mention the source bucket and key: "
			     "sourcebucket/sourcekey");
		goto out;
	}
	int g = efs_meta_bucket_get(s->m->meta, t->bucket, &b);
	if (g == -ENOENT) {
		efs_s3_error(s, 404, "NoSuchBucket", "The specified bucket does not exist");
		goto out;
	}
	if (g < 0) {
		efs_s3_error_store(s, g, "UploadPartCopy source bucket");
		goto out;
	}
	if (strcmp(b.owner, s->principal.owner) != 0) {
		efs_s3_error(s, 403, "AccessDenied", "Access Denied");
		goto out;
	}
	if ((g = efs_meta_object_get(s->m->meta, t->bucket, t->key, o)) == 0)
		g = efs_meta_file_get(s->m->meta, o->file_id, &p->source);
	if (g == -ENOENT) {
		efs_s3_error(s, 404, "NoSuchKey", "The specified key does not exist.");
		goto out;
	}
	if (g < 0) {
		efs_s3_error_store(s, g, "UploadPartCopy source");
		goto out;
	}
	p->first = 0;
	p->last = p->source.size ? p->source.size - 1 : 0;
	p->expected = p->source.size;
	if (range) {
		unsigned long long a, z;
		int used = 0;
		if (sscanf(range, "bytes=%llu-%llu%n", &a, &z, &used) != 2 ||
		    (size_t)used != strlen(range) || a > z || z >= p->source.size) {
			efs_s3_error(s, 400, "InvalidArgument",
				     "Range specified is not valid for source object of size: %llu",
				     (unsigned long long)p->source.size);
			goto out;
		}
		p->first = a;
		p->last = z;
		p->expected = z - a + 1;
	}
	if (p->expected > PART_MAX_SIZE) {
		efs_s3_error(s, 400, "InvalidRequest",
			     "The specified copy source is larger than the maximum allowable size "
			     "for a copy source: 5 GiB");
		goto out;
	}
	r = 0;
out:
	free(t);
	free(o);
	free(target);
	return r;
}

int efs_s3_upload_part_begin(struct efs_s3_req *s)
{
	struct efs_master *m = s->m;
	struct efs_bucket_info b;
	struct efs_s3_upload *u = NULL;
	const char *number_s = efs_s3_query(s, "partNumber");
	const char *copy_header = efs_http_header(s->http, "x-amz-copy-source");
	uint64_t number = 0;
	int64_t length;
	int r = 0;

	if (efs_s3_own_bucket(s, &b) < 0)
		return 0;
	if (!number_s || efs_parse_u64(number_s, false, &number) < 0 || number < 1 ||
	    number > EFS_S3_PART_MAX)
		return efs_s3_error(s, 400, "InvalidArgument",
				    "Part number must be an integer between 1 and %d, inclusive",
				    EFS_S3_PART_MAX);
	if (!(u = malloc(sizeof(*u))))
		return -ENOMEM;
	if (find_upload(s, u, false) < 0)
		goto out;
	length = s->principal.payload == EFS_S3_PAYLOAD_STREAMING ? s->principal.decoded_length
								  : s->http->content_length;
	if (copy_header)
		length = 0; /* known once the source is read */
	else if (length < 0) {
		r = efs_s3_error(s, 411, "MissingContentLength",
				 "You must provide the Content-Length HTTP header.");
		goto out;
	}
	if ((uint64_t)length > PART_MAX_SIZE) {
		r = efs_s3_error(s, 400, "EntityTooLarge",
				 "Your proposed upload exceeds the maximum allowed size (5 GiB a "
				 "part).");
		goto out;
	}
	if (efs_s3_writable(s, "UploadPart") < 0) {
		r = 0;
		goto out;
	}
	struct part_op *p = calloc(1, sizeof(*p));
	if (!p) {
		r = -ENOMEM;
		goto out;
	}
	p->m = m;
	s->op = p;
	s->op_free = part_free;
	efs_strlcpy(p->upload_id, u->upload_id, sizeof(p->upload_id));
	efs_strlcpy(p->owner, u->owner, sizeof(p->owner));
	efs_s3_file_name(s->key, p->name, sizeof(p->name));
	p->part_number = (unsigned)number;
	p->expected = (uint64_t)length;
	struct efs_policy policy;
	if ((r = efs_s3_upload_policy(m, u, &policy)) < 0) {
		r = efs_s3_error_store(s, r, "UploadPart policy");
		goto out;
	}
	efs_api_policy_uploader(&m->uploader, &policy, &p->uploader);
	if (copy_header) {
		p->copy = true;
		if ((r = copy_source(s, p, copy_header)) < 0) {
			r = efs_http_replied(s->http) ? 0 : r;
			goto out;
		}
	}
	const char *md5 = copy_header ? NULL : efs_http_header(s->http, "Content-MD5");
	if (md5 && efs_s3_content_md5(md5, p->content_md5) < 0) {
		r = efs_s3_error(s, 400, "InvalidDigest",
				 "The Content-MD5 you specified is not valid.");
		goto out;
	}
	p->has_md5 = md5 != NULL;
	if (!copy_header && (r = efs_s3_checksum_begin(s, &p->checksum)) != 0) {
		r = r < 0 ? r : 0;
		goto out;
	}
	/* The first chunk buffer and its compressed copy, from the budget of
	 * all uploads, as PutObject. */
	size_t most = (size_t)EFS_MIN((uint64_t)m->cfg.chunk_size, EFS_MAX(p->expected, 1));
	if ((r = efs_upload_memory_take(&m->upload_memory, p->owner, 2 * most)) < 0) {
		if (r == -ENOMEM)
			goto out;
		efs_http_add_header(s->http, "Retry-After", "1");
		r = efs_s3_error(s, 503, "SlowDown", "%s", efs_api_upload_memory_full(r));
		goto out;
	}
	p->reserved = 2 * most;
	if ((r = efs_upload_pipeline_new(&p->uploader, &m->upload_budget, m->cfg.chunk_size,
					 part_open_session, p, &p->pipeline)) < 0 ||
	    (r = efs_upload_pipeline_hash_md5(p->pipeline)) < 0)
		goto out;
	if (copy_header) {
		s->on_end = copy_end; /* no body: the small one is buffered and ignored */
	} else {
		s->on_body = part_body;
		s->on_end = part_end;
	}
out:
	free(u);
	return r;
}

/* ---- CompleteMultipartUpload ------------------------------------------- */

struct complete_op {
	struct efs_buf body;
	struct efs_s3_listed_part *listed;
	size_t listed_count;
	/* ?uploadId, read on the connection's thread ("" when absent or too
	 * long: NoSuchUpload) */
	char upload_id[EFS_ID_MAX + 1];
};

static void complete_free(void *op)
{
	struct complete_op *c = op;
	if (!c)
		return;
	efs_buf_release(&c->body);
	free(c->listed);
	free(c);
}

static int complete_body(struct efs_s3_req *s, const char *data, size_t len)
{
	struct complete_op *c = s->op;
	if (efs_buf_append(&c->body, data, len) < 0)
		return efs_s3_error(s, 400, "MaxMessageLengthExceeded",
				    "Your request was too big (at most %zu bytes here).",
				    COMPLETE_BODY_MAX),
		       -E2BIG;
	return 0;
}

/* The parser's state over one <CompleteMultipartUpload> document. */
struct complete_parse {
	struct efs_s3_listed_part *out;
	size_t count;
	bool in_part, has_number, has_etag, out_of_order;
	struct efs_s3_listed_part cur;
};

/* <CompleteMultipartUpload> (<Part><PartNumber>n</PartNumber>
 * <ETag>"..."</ETag> [<Checksum...>]</Part>)+ */
static int complete_start(void *ctx, int depth, const char *name)
{
	struct complete_parse *c = ctx;
	if (depth == 1)
		return strcmp(name, "CompleteMultipartUpload") == 0 ? 0 : -EBADMSG;
	if (depth == 2 && strcmp(name, "Part") == 0) {
		if (c->count == EFS_S3_PART_MAX)
			return -EBADMSG;
		c->in_part = true;
		c->has_number = c->has_etag = false;
		memset(&c->cur, 0, sizeof(c->cur));
		return 0;
	}
	if (depth == 3 && c->in_part &&
	    (strcmp(name, "PartNumber") == 0 || strcmp(name, "ETag") == 0 ||
	     strncmp(name, "Checksum", 8) == 0))
		return 0; /* a part's checksum: its stored one counts (docs/S3.md) */
	return -EBADMSG;
}

static int complete_end(void *ctx, int depth, const char *name, const char *text, size_t len)
{
	struct complete_parse *c = ctx;
	if (depth == 3 && strcmp(name, "PartNumber") == 0) {
		uint64_t n;
		char digits[16];
		if (c->has_number || len == 0 || len >= sizeof(digits))
			return -EBADMSG;
		memcpy(digits, text, len);
		digits[len] = '\0';
		if (efs_parse_u64(digits, false, &n) < 0 || n < 1 || n > EFS_S3_PART_MAX)
			return -EBADMSG;
		c->cur.number = (unsigned)n;
		c->has_number = true;
	} else if (depth == 3 && strcmp(name, "ETag") == 0) {
		if (c->has_etag)
			return -EBADMSG;
		c->cur.etag_valid = etag_hex(text, len, c->cur.etag);
		c->has_etag = true;
	} else if (depth == 2 && strcmp(name, "Part") == 0) {
		if (!c->has_number || !c->has_etag)
			return -EBADMSG;
		if (c->count > 0 && c->cur.number <= c->out[c->count - 1].number)
			c->out_of_order = true;
		c->out[c->count++] = c->cur;
		c->in_part = false;
	}
	return 0;
}

int efs_s3_complete_parse(const char *body, size_t len, struct efs_s3_listed_part *out,
			  size_t *count)
{
	struct complete_parse c = {.out = out};
	int r = len ? efs_xml_parse(body, len, complete_start, complete_end, &c) : -EBADMSG;
	if (r == -E2BIG || (r == 0 && c.count == 0))
		r = -EBADMSG;
	if (r < 0)
		return r;
	*count = c.count;
	return c.out_of_order ? -ERANGE : 0;
}

/* "hex(MD5(the parts' binary MD5s))-N", S3's multipart ETag. */
static int multipart_etag(const struct efs_s3_listed_part *listed, size_t n, char *out, size_t size)
{
	struct efs_md5 md5;
	unsigned char bin[EFS_MD5_LEN];
	char hex[EFS_MD5_HEX_LEN + 1];
	int r = efs_md5_init(&md5);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		/* Not efs_hex_decode: a listed ETag need not be hex yet (one
		 * that is not gets InvalidPart once the parts are matched), and
		 * this arithmetic stays defined for any byte. */
		for (size_t j = 0; j < EFS_MD5_LEN; j++)
			bin[j] =
			    (unsigned char)(efs_hex_value((unsigned char)listed[i].etag[2 * j]) *
						16 +
					    efs_hex_value(
						(unsigned char)listed[i].etag[2 * j + 1]));
		efs_md5_update(&md5, (const char *)bin, EFS_MD5_LEN);
	}
	efs_md5_final_hex(&md5, hex);
	efs_md5_release(&md5);
	snprintf(out, size, "%s-%zu", hex, n);
	return 0;
}

/* Every part of the upload, in order, into *@out (malloc'd). */
static int read_parts(struct efs_meta *meta, const char *upload_id, struct efs_s3_part **out,
		      size_t *count)
{
	struct efs_s3_part *parts = NULL;
	size_t n = 0;
	unsigned after = 0;
	for (;;) {
		struct efs_s3_part *grown = realloc(parts, (n + PART_PAGE) * sizeof(*parts));
		size_t got = 0;
		if (!grown) {
			free(parts);
			return -ENOMEM;
		}
		parts = grown;
		int r = efs_meta_s3_part_list(meta, upload_id, after, PART_PAGE, parts + n, &got);
		if (r < 0) {
			free(parts);
			return r;
		}
		n += got;
		if (got < PART_PAGE || n >= EFS_S3_PART_MAX)
			break;
		after = parts[n - 1].part_number;
	}
	*out = parts;
	*count = n;
	return 0;
}

/* Receives the parts' bytes, one chunk at a time, in order. 0 or -errno,
 * which stops the walk. */
typedef int (*part_bytes_fn)(void *ctx, const char *data, size_t len);

/* Reads the chunks of @parts (@n of them, in order) and gives each one's
 * bytes to @fn: from the chunk cache, else from the chunk's copies (one
 * chunk in memory at a time). 0; -ESTALE when a part's session no longer
 * holds its chunks (the upload expired, or the part was replaced, meanwhile);
 * a read error; or @fn's error. */
static int walk_parts(struct efs_master *m, const struct efs_s3_part *parts, size_t n,
		      part_bytes_fn fn, void *ctx)
{
	struct efs_buf data, scratch;
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	int r = 0;
	efs_buf_init(&data, SIZE_MAX);
	efs_buf_init(&scratch, SIZE_MAX);
	for (size_t i = 0; i < n && r == 0; i++) {
		struct efs_session_chunk *chunks = NULL;
		size_t count = 0;
		if (!parts[i].session_id[0])
			continue;
		if ((r = efs_meta_session_chunks(m->meta, parts[i].session_id, &chunks, &count)) <
		    0) {
			r = r == -ENOENT ? -ESTALE : r;
			break;
		}
		if (count != parts[i].chunk_count)
			r = -ESTALE; /* its session is gone: the upload expired meanwhile */
		for (size_t j = 0; j < count && r == 0; j++) {
			struct efs_chunk_info info;
			unsigned replica_count = 0;
			if (efs_chunk_cache_get(m->chunk_cache, chunks[j].chunk_id, &data) == 0 &&
			    data.len == chunks[j].size) {
				r = fn(ctx, data.data, data.len);
				continue;
			}
			/* A chunk collected meanwhile belonged to a part
			 * replaced since (its session released): -ESTALE, the
			 * caller reads the parts again. */
			if ((r = efs_meta_chunk_get(m->meta, chunks[j].chunk_id, &info, replicas,
						    &replica_count)) < 0) {
				r = r == -ENOENT ? -ESTALE : r;
				break;
			}
			r = efs_chunk_backend_get_fresh(m->chunks, m->meta, &info, replicas,
							replica_count, &data, &scratch);
			if (r < 0 && r != -ENOMEM &&
			    efs_meta_chunk_get(m->meta, chunks[j].chunk_id, &info, replicas,
					       &replica_count) == -ENOENT)
				r = -ESTALE; /* collected while it was read */
			if (r == 0)
				r = fn(ctx, data.data, data.len);
		}
		free(chunks);
	}
	efs_buf_release(&data);
	efs_buf_release(&scratch);
	return r;
}

static int hash_bytes(void *ctx, const char *data, size_t len)
{
	efs_sha256_update(ctx, data, len);
	return 0;
}

/* The SHA-256 of the parts' bytes, in order (walk_parts' errors). */
static int hash_parts(struct efs_master *m, const struct efs_s3_part *parts, size_t n,
		      char out[EFS_SHA256_HEX_LEN + 1])
{
	struct efs_sha256 hash;
	int r = efs_sha256_init(&hash);
	if (r < 0)
		return r;
	if ((r = walk_parts(m, parts, n, hash_bytes, &hash)) == 0)
		efs_sha256_final_hex(&hash, out);
	efs_sha256_release(&hash);
	return r;
}

/* A copy of misaligned parts into new chunks of the server's chunk size
 * (re-chunking at Complete), in a hidden session of its own. */
struct parts_copy {
	struct efs_master *m;
	const struct efs_s3_req *s; /* held: the copy stops if the client leaves */
	const char *owner, *name;
	uint64_t size; /* the parts' bytes together */
	struct efs_upload_pipeline *pipeline;
	char session_id[EFS_ID_MAX + 1];
	bool session_open; /* ended by copy_release unless the object took it */
	size_t reserved;   /* from the master's upload_memory */
};

/* The pipeline's efs_upload_session_open_fn, as part_open_session. */
static int copy_open_session(void *ctx, char *session_id)
{
	struct parts_copy *cp = ctx;
	int r = efs_s3_session_open(cp->m, cp->owner, cp->name, cp->size, session_id);
	if (r < 0)
		return r;
	efs_strlcpy(cp->session_id, session_id, sizeof(cp->session_id));
	cp->session_open = true;
	return 0;
}

static int copy_bytes(void *ctx, const char *data, size_t len)
{
	struct parts_copy *cp = ctx;
	if (efs_s3_hold_cancelled(cp->s))
		return -ECANCELED;
	return efs_upload_pipeline_feed(cp->pipeline, data, len);
}

/* Ends what copy_parts made: the pipeline, the session (unless handed
 * over: session_open false), the memory. @cp can be used again. */
static void copy_release(struct parts_copy *cp, const char *upload_id)
{
	efs_upload_pipeline_free(cp->pipeline);
	cp->pipeline = NULL;
	if (cp->session_open) {
		int r = efs_meta_session_delete(cp->m->meta, cp->session_id, efs_now_ms());
		if (r < 0 && r != -ENOENT)
			efs_warn("s3 upload %s: could not release the chunks of its copy's session "
				 "%s (%s); the session collector will",
				 upload_id, cp->session_id, strerror(-r));
		cp->session_open = false;
	}
	efs_upload_memory_give(&cp->m->upload_memory, cp->owner, cp->reserved);
	cp->reserved = 0;
}

/* Streams the bytes of @parts (@n, in order, @file->size together) through
 * a new upload pipeline storing with @uploader: chunks of the server's
 * chunk size in session cp->session_id (deduplicated against the parts'
 * where they line up). Fills @file's size, sha256, chunk_size,
 * chunk_count and stored_bytes. Memory: one chunk read at a time, and the
 * pipeline's (its first two chunks from the upload memory budget). 0;
 * -EDQUOT/-ENOSPC (that budget is full), walk_parts' and the pipeline's
 * errors; the caller calls copy_release in every case. */
static int copy_parts(struct parts_copy *cp, const struct efs_uploader *uploader,
		      const struct efs_s3_part *parts, size_t n, struct efs_file_info *file)
{
	struct efs_master *m = cp->m;
	struct efs_upload_summary sum;
	size_t most = (size_t)EFS_MIN((uint64_t)m->cfg.chunk_size, EFS_MAX(file->size, 1));
	int r = efs_upload_memory_take(&m->upload_memory, cp->owner, 2 * most);
	if (r < 0)
		return r;
	cp->reserved = 2 * most;
	cp->size = file->size;
	if ((r = efs_upload_pipeline_new(uploader, &m->upload_budget, m->cfg.chunk_size,
					 copy_open_session, cp, &cp->pipeline)) < 0 ||
	    (r = walk_parts(m, parts, n, copy_bytes, cp)) < 0 ||
	    (r = efs_upload_pipeline_finish(cp->pipeline, NULL, &sum)) < 0)
		return r;
	if (sum.size != file->size || !cp->session_open)
		return -ESTALE; /* a part's chunks were not what its row says */
	file->chunk_size = m->cfg.chunk_size;
	file->chunk_count = sum.chunk_count;
	file->stored_bytes = sum.stored_bytes;
	efs_strlcpy(file->sha256, sum.sha256, sizeof(file->sha256));
	return 0;
}

/* The CompleteMultipartUploadResult of the object @o. */
static int complete_reply(struct efs_s3_req *s, const struct efs_object_info *o)
{
	struct efs_s3_xml x;
	char etag[EFS_S3_ETAG_MAX + 3], location[EFS_S3_BUCKET_MAX + EFS_S3_KEY_MAX + 8];
	snprintf(etag, sizeof(etag), "\"%s\"", o->etag);
	snprintf(location, sizeof(location), "/%s/%s", o->bucket, o->key);
	efs_s3_xml_init(&x);
	efs_s3_xml_open(&x, "CompleteMultipartUploadResult", EFS_S3_XMLNS);
	efs_s3_xml_text(&x, "Location", location);
	efs_s3_xml_text(&x, "Bucket", o->bucket);
	efs_s3_xml_text(&x, "Key", o->key);
	efs_s3_xml_text(&x, "ETag", etag);
	/* The composite checksum (a retried Complete's answer has none: the
	 * upload's row does not keep it). */
	char element[32];
	const char *value = NULL;
	if (efs_s3_checksum_element(o->checksum, element, &value)) {
		efs_s3_xml_text(&x, element, value);
		efs_s3_xml_text(&x, "ChecksumType", "COMPOSITE");
	}
	efs_s3_xml_close(&x, "CompleteMultipartUploadResult");
	return efs_s3_reply_xml(s, 200, &x);
}

/* Checks the listed parts against @parts (the upload's, in order), copies
 * them into @chosen and fills @file's size, chunk_size, chunk_count and
 * stored_bytes as joined parts make them. 0 when the parts' chunks line
 * up (every part but the last a whole number of chunks, all of one chunk
 * size); 1 when they do not ("misaligned": they must be copied into new
 * chunks, @file's chunk fields then mean nothing). Replies and returns
 * -EINVAL when the list is refused. */
static int check_parts(struct efs_s3_req *s, const struct complete_op *c,
		       const struct efs_s3_part *parts, size_t n, struct efs_s3_part *chosen,
		       struct efs_file_info *file)
{
	size_t j = 0;
	bool misaligned = false;
	memset(file, 0, sizeof(*file));
	file->chunk_size = s->m->cfg.chunk_size;
	for (size_t i = 0; i < c->listed_count; i++) {
		const struct efs_s3_listed_part *l = &c->listed[i];
		while (j < n && parts[j].part_number < l->number)
			j++;
		if (j == n || parts[j].part_number != l->number || !l->etag_valid ||
		    strcmp(parts[j].etag, l->etag) != 0)
			return efs_s3_error(
				   s, 400, "InvalidPart",
				   "One or more of the specified parts could not be found. "
				   "The part may not have been uploaded, or the specified "
				   "entity tag may not match the part's entity tag "
				   "(part %u).",
				   l->number),
			       -EINVAL;
		chosen[i] = parts[j];
		bool last = i + 1 == c->listed_count;
		if (!last && parts[j].size < PART_MIN_SIZE)
			return efs_s3_error(
				   s, 400, "EntityTooSmall",
				   "Your proposed upload is smaller than the minimum "
				   "allowed object size (part %u is %llu bytes; every part "
				   "but the last must be at least 5 MiB).",
				   l->number, (unsigned long long)parts[j].size),
			       -EINVAL;
		if (parts[j].chunk_count > 0) {
			if (file->chunk_count == 0)
				file->chunk_size = parts[j].chunk_size;
			/* Joined, chunks must line up: a file's chunks are all
			 * chunk_size long but the last. */
			bool whole = parts[j].chunk_size == file->chunk_size &&
				     (last || parts[j].size % parts[j].chunk_size == 0);
			bool after_short = file->size % file->chunk_size != 0;
			if (!whole || after_short)
				misaligned = true;
		}
		file->size += parts[j].size;
		file->chunk_count += parts[j].chunk_count;
		file->stored_bytes += parts[j].stored_bytes;
	}
	return misaligned ? 1 : 0;
}

/* complete_commit's answer when the parts must be copied and the request
 * is not held yet: nothing was done, the caller holds it and runs
 * complete_commit again on the hold's thread. */
#define COMPLETE_HOLD 1

/* Completes the upload from the listed parts (c->listed, checked well
 * formed) and replies: joins aligned parts; copies misaligned ones
 * (COMPLETE_HOLD first when @may_hold and the request is not held). 0
 * (replied), COMPLETE_HOLD, or -errno without a reply. */
static int complete_commit(struct efs_s3_req *s, bool may_hold)
{
	struct complete_op *c = s->op;
	struct efs_master *m = s->m;
	struct efs_s3_upload *u = NULL;
	struct efs_s3_part *parts = NULL, *chosen = NULL;
	struct efs_file_info *file = NULL;
	struct parts_copy copy = {.m = m, .s = s};
	/* As long as the copy's pipeline: its threads use them until
	 * copy_release, which may come at out: */
	struct efs_policy policy;
	struct efs_uploader uploader;
	char etag[EFS_S3_ETAG_MAX + 1];
	size_t n = 0;
	int misaligned = 0;
	int r;

	if (!(u = malloc(sizeof(*u))) || !(file = malloc(sizeof(*file))) ||
	    !(chosen = malloc(c->listed_count * sizeof(*chosen)))) {
		r = -ENOMEM;
		goto out;
	}
	if ((r = multipart_etag(c->listed, c->listed_count, etag, sizeof(etag))) < 0)
		goto out;
	for (int attempt = 0; attempt < COMPLETE_ATTEMPTS; attempt++) {
		if ((r = find_upload_id(s, c->upload_id, u, true)) < 0) {
			r = 0;
			goto out;
		}
		/* Completed before (a retry whose answer was lost): the same
		 * answer, when the same parts are listed. */
		if (u->completed) {
			r = strcmp(u->obj.etag, etag) == 0 ? complete_reply(s, &u->obj)
							   : no_such_upload(s);
			goto out;
		}
		free(parts);
		parts = NULL;
		if ((r = read_parts(m->meta, u->upload_id, &parts, &n)) < 0) {
			r = efs_s3_error_store(s, r, "CompleteMultipartUpload parts");
			goto out;
		}
		if ((misaligned = check_parts(s, c, parts, n, chosen, file)) < 0) {
			r = 0;
			goto out;
		}
		if (misaligned && may_hold && !s->hold) {
			r = COMPLETE_HOLD;
			goto out;
		}
		if ((r = efs_ordered_hex(file->file_id, EFS_FILE_ID_LEN / 2)) < 0)
			goto out;
		efs_strlcpy(file->owner, u->owner, sizeof(file->owner));
		efs_s3_file_name(s->key, file->name, sizeof(file->name));
		if ((r = efs_s3_upload_policy(m, u, &policy)) < 0) {
			r = efs_s3_error_store(s, r, "CompleteMultipartUpload policy");
			goto out;
		}
		efs_s3_policy_file(m, &policy, file);
		file->created_at_ms = efs_now_ms();
		if (misaligned) {
			/* Re-chunk: the parts' bytes, copied once into new chunks
			 * (the pipeline hashes them as they pass). */
			efs_api_policy_uploader(&m->uploader, &policy, &uploader);
			copy.owner = u->owner;
			copy.name = file->name;
			efs_info("s3 upload %s: parts not aligned on chunks: copying %llu bytes of "
				 "%zu parts into chunks of %llu bytes (request %s)",
				 u->upload_id, (unsigned long long)file->size, c->listed_count,
				 (unsigned long long)m->cfg.chunk_size, s->request_id);
			r = copy_parts(&copy, &uploader, chosen, c->listed_count, file);
		} else {
			r = hash_parts(m, chosen, c->listed_count, file->sha256);
		}
		if (r == -ESTALE) {
			copy_release(&copy, u->upload_id);
			continue; /* a part changed under us: read them again */
		}
		if (r == -ECANCELED && efs_s3_hold_cancelled(s)) {
			efs_warn("s3 upload %s: the client left during the copy of its parts: "
				 "stopped, the copy released, the upload still open (request %s)",
				 u->upload_id, s->request_id);
			goto out;
		}
		if ((r == -EDQUOT || r == -ENOSPC) && misaligned) {
			if (!s->hold) /* a held reply's head went out */
				efs_http_add_header(s->http, "Retry-After", "1");
			r = efs_s3_error(s, 503, "SlowDown", "%s",
					 copy.reserved ? "Not enough live workers with room for "
							 "every replica"
						       : efs_api_upload_memory_full(r));
			goto out;
		}
		if (r < 0) {
			efs_error("s3 upload %s: reading the parts back failed: %s (request %s)",
				  u->upload_id, strerror(-r), s->request_id);
			r = efs_s3_error(s, 503, "ServiceUnavailable",
					 "The parts cannot be read right now; retry shortly");
			goto out;
		}
		efs_strlcpy(u->obj.file_id, file->file_id, sizeof(u->obj.file_id));
		efs_strlcpy(u->obj.etag, etag, sizeof(u->obj.etag));
		/* The parts' checksums (each verified when it came) combined. */
		if ((r = efs_s3_checksum_composite(chosen, c->listed_count, u->obj.checksum,
						   sizeof(u->obj.checksum))) < 0)
			goto out;
		u->obj.size = file->size;
		u->obj.last_modified_ms = file->created_at_ms;
		r = efs_meta_s3_upload_complete(m->meta, u, chosen, c->listed_count,
						misaligned ? copy.session_id : NULL, file,
						efs_now_ms());
		if (r == 0)
			copy.session_open = false; /* the file's chunks now */
		copy_release(&copy, u->upload_id);
		if (r == -ESTALE || r == -EALREADY)
			continue; /* read the upload and its parts again */
		break;
	}
	if (r == -ESTALE || r == -EALREADY) {
		r = efs_s3_error(s, 503, "SlowDown",
				 "The upload's parts keep changing; retry the request");
		goto out;
	}
	if (r == -ENOTSUP) {
		r = not_implemented(s);
		goto out;
	}
	if (r == -ENOENT) {
		r = no_such_upload(s);
		goto out;
	}
	if (r == -ENXIO) {
		r = efs_s3_error(s, 404, "NoSuchBucket", "The specified bucket does not exist");
		goto out;
	}
	if (r < 0) {
		r = efs_s3_error_store(s, r, "CompleteMultipartUpload");
		goto out;
	}
	efs_info("s3 multipart upload %s completed: object %s/%s, file %s, %llu bytes in %zu "
		 "parts, %llu chunks%s (request %s)",
		 u->upload_id, s->bucket, s->key, file->file_id, (unsigned long long)file->size,
		 c->listed_count, (unsigned long long)file->chunk_count,
		 misaligned ? " (copied)" : "", s->request_id);
	r = complete_reply(s, &u->obj);
out:
	copy_release(&copy, u ? u->upload_id : "");
	free(u);
	free(file);
	free(parts);
	free(chosen);
	return r;
}

/* efs_s3_hold_start's operation: the copy and the rest, held. */
static int complete_held(struct efs_s3_req *s, void *ctx)
{
	(void)ctx;
	return complete_commit(s, false);
}

static int complete_upload_end(struct efs_s3_req *s)
{
	struct complete_op *c = s->op;
	struct efs_bucket_info b;
	int r;

	if (efs_s3_check_signed_body(s, c->body.data, c->body.len) < 0)
		return 0;
	const char *upload_id = efs_s3_query(s, "uploadId");
	if (upload_id && strlen(upload_id) <= EFS_ID_MAX)
		efs_strlcpy(c->upload_id, upload_id, sizeof(c->upload_id));
	if (!(c->listed = malloc(EFS_S3_PART_MAX * sizeof(*c->listed))))
		return -ENOMEM;
	r = efs_s3_complete_parse(c->body.data, c->body.len, c->listed, &c->listed_count);
	if (r == -EBADMSG)
		return efs_s3_error(
		    s, 400, "MalformedXML",
		    "The XML you provided was not well-formed or did not validate "
		    "against our published schema (a <CompleteMultipartUpload> of 1 "
		    "to %d <Part>s, each with a <PartNumber> and an <ETag>).",
		    EFS_S3_PART_MAX);
	if (r == -ERANGE)
		return efs_s3_error(s, 400, "InvalidPartOrder",
				    "The list of parts was not in ascending order. The parts list "
				    "must be specified in order by part number.");
	if (r < 0)
		return r;
	if (efs_s3_own_bucket(s, &b) < 0)
		return 0;
	/* Parts to copy can take minutes: as S3, 200 at once, then spaces
	 * until the document (s3_hold.h). Errors found before the copy
	 * starts still get their own status. */
	if ((r = complete_commit(s, true)) != COMPLETE_HOLD)
		return r;
	if ((r = efs_s3_hold_start(s, complete_held, NULL, s->m->cfg.s3_keepalive_ms)) == 0)
		return 0;
	efs_warn("s3 request %s: cannot hold the reply (%s): copying the parts before any "
		 "answer",
		 s->request_id, strerror(-r));
	return complete_commit(s, false);
}

int efs_s3_complete_upload_begin(struct efs_s3_req *s)
{
	struct complete_op *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	efs_buf_init(&c->body, COMPLETE_BODY_MAX);
	s->op = c;
	s->op_free = complete_free;
	if (s->http->content_length > (int64_t)COMPLETE_BODY_MAX)
		return efs_s3_error(s, 400, "MaxMessageLengthExceeded",
				    "Your request was too big (at most %zu bytes here).",
				    COMPLETE_BODY_MAX);
	s->on_body = complete_body;
	s->on_end = complete_upload_end;
	return 0;
}

/* ---- AbortMultipartUpload ---------------------------------------------- */

int efs_s3_abort_upload(struct efs_s3_req *s)
{
	struct efs_bucket_info b;
	struct efs_s3_upload *u = malloc(sizeof(*u));
	int r = 0;
	if (!u)
		return -ENOMEM;
	if (efs_s3_own_bucket(s, &b) < 0 || find_upload(s, u, false) < 0)
		goto out;
	r = efs_meta_s3_upload_abort(s->m->meta, u->upload_id, s->principal.owner, efs_now_ms());
	if (r == -ENOENT) {
		r = no_such_upload(s);
		goto out;
	}
	if (r < 0) {
		r = efs_s3_error_store(s, r, "AbortMultipartUpload");
		goto out;
	}
	efs_info("s3 multipart upload %s of %s/%s aborted by %s: its parts were released "
		 "(request %s)",
		 u->upload_id, s->bucket, s->key, s->principal.owner, s->request_id);
	r = efs_http_reply_empty(s->http, 204);
out:
	free(u);
	return r;
}

/* ---- ListParts ------------------------------------------------------------ */

/* ?@name as an integer in 0..@max (absent: @def). Replies and returns
 * -EINVAL when it is not one. */
static int query_number(struct efs_s3_req *s, const char *name, uint64_t def, uint64_t max,
			uint64_t *out)
{
	const char *v = efs_s3_query(s, name);
	uint64_t n = def;
	if (v && (efs_parse_u64(v, false, &n) < 0 || n > (uint64_t)INT32_MAX))
		return efs_s3_error(s, 400, "InvalidArgument",
				    "%s must be an integer between 0 and %d", name, INT32_MAX),
		       -EINVAL;
	*out = EFS_MIN(n, max);
	return 0;
}

int efs_s3_list_parts(struct efs_s3_req *s)
{
	struct efs_bucket_info b;
	struct efs_s3_upload *u = malloc(sizeof(*u));
	struct efs_s3_part *parts = NULL;
	struct efs_s3_xml x;
	uint64_t max_parts, marker;
	size_t n = 0;
	char text[64];
	int r = 0;

	if (!u)
		return -ENOMEM;
	if (efs_s3_own_bucket(s, &b) < 0 || find_upload(s, u, false) < 0)
		goto out;
	if (query_number(s, "max-parts", LIST_MAX, LIST_MAX, &max_parts) < 0 ||
	    query_number(s, "part-number-marker", 0, EFS_S3_PART_MAX, &marker) < 0)
		goto out;
	if (!(parts = malloc((max_parts + 1) * sizeof(*parts)))) {
		r = -ENOMEM;
		goto out;
	}
	r = efs_meta_s3_part_list(s->m->meta, u->upload_id, (unsigned)marker, max_parts + 1, parts,
				  &n);
	if (r < 0) {
		r = efs_s3_error_store(s, r, "ListParts");
		goto out;
	}
	bool truncated = n > max_parts;
	if (truncated)
		n = max_parts;
	efs_s3_xml_init(&x);
	efs_s3_xml_open(&x, "ListPartsResult", EFS_S3_XMLNS);
	efs_s3_xml_text(&x, "Bucket", s->bucket);
	efs_s3_xml_text(&x, "Key", s->key);
	efs_s3_xml_text(&x, "UploadId", u->upload_id);
	efs_s3_owner_xml(&x, "Initiator", u->owner);
	efs_s3_owner_xml(&x, "Owner", u->owner);
	efs_s3_xml_text(&x, "StorageClass", efs_s3_storage_class(u->policy));
	efs_s3_xml_u64(&x, "PartNumberMarker", marker);
	efs_s3_xml_u64(&x, "NextPartNumberMarker", n ? parts[n - 1].part_number : marker);
	efs_s3_xml_u64(&x, "MaxParts", max_parts);
	efs_s3_xml_bool(&x, "IsTruncated", truncated);
	for (size_t i = 0; i < n; i++) {
		efs_s3_xml_open(&x, "Part", NULL);
		efs_s3_xml_u64(&x, "PartNumber", parts[i].part_number);
		efs_s3_xml_time(&x, "LastModified", parts[i].last_modified_ms);
		snprintf(text, sizeof(text), "\"%s\"", parts[i].etag);
		efs_s3_xml_text(&x, "ETag", text);
		efs_s3_xml_u64(&x, "Size", parts[i].size);
		char element[32];
		const char *value = NULL;
		if (efs_s3_checksum_element(parts[i].checksum, element, &value))
			efs_s3_xml_text(&x, element, value);
		efs_s3_xml_close(&x, "Part");
	}
	efs_s3_xml_close(&x, "ListPartsResult");
	r = efs_s3_xml_reply(s->http, 200, &x);
out:
	free(u);
	free(parts);
	return r;
}

/* ---- ListMultipartUploads --------------------------------------------- */

/* Appended to a common prefix, it sorts after every valid UTF-8 key that
 * starts with it (U+10FFFF four times, as the object listing's jump in
 * s3_bucket.c): the scan resumes past the prefix's uploads unread. */
#define PAST_PREFIX "\xf4\x8f\xbf\xbf\xf4\x8f\xbf\xbf\xf4\x8f\xbf\xbf\xf4\x8f\xbf\xbf"
/* After a jump the store is asked for this many uploads first (then twice
 * as many while batches are used up), as the object listing does. */
#define UPLOADS_JUMP_BATCH 8

/* One entry of the answer: an upload, or a common prefix (its key). */
struct upload_item {
	bool is_prefix;
	struct efs_s3_upload_entry entry;
};

/* Where the scan goes on: after (key, id), or after every upload of key
 * (no id). */
struct uploads_cursor {
	char key[EFS_S3_KEY_MAX + 1];
	char id[EFS_ID_MAX + 1];
	bool has_id;
};

/* The cursor past every upload whose key starts with @common, read at
 * @key: common + PAST_PREFIX when that is a key the store takes, else
 * (a prefix near the key length limit, or a key sorting past that point)
 * after every upload of @key alone, which still moves forward. */
static void cursor_past(struct uploads_cursor *c, const char *common, const char *key)
{
	char jump[EFS_S3_KEY_MAX + 1];
	c->has_id = false;
	if (strlen(common) + sizeof(PAST_PREFIX) - 1 <= EFS_S3_KEY_MAX) {
		snprintf(jump, sizeof(jump), "%s%s", common, PAST_PREFIX);
		if (strcmp(key, jump) < 0) {
			efs_strlcpy(c->key, jump, sizeof(c->key));
			return;
		}
	}
	efs_strlcpy(c->key, key, sizeof(c->key));
}

/* Up to @max uploads and common prefixes (keys with @delimiter after
 * @prefix, each reported once, then skipped over in the store's order)
 * after (@key_marker, @id_marker) into @items (@max of them); *truncated
 * when more follow. A common prefix at or before @key_marker is the
 * client's already. One bounded store read per batch. */
static int uploads_scan(struct efs_s3_req *s, const char *prefix, const char *delimiter,
			const char *key_marker, const char *id_marker, size_t max,
			struct upload_item *items, size_t *count, bool *truncated)
{
	size_t batch_max = max + 1, plen = strlen(prefix), dlen = delimiter ? strlen(delimiter) : 0;
	struct efs_s3_upload_entry *batch = calloc(batch_max, sizeof(*batch));
	struct uploads_cursor *cursor = calloc(1, sizeof(*cursor));
	char *common = malloc(EFS_S3_KEY_MAX + 1), *last_prefix = calloc(1, EFS_S3_KEY_MAX + 1);
	size_t n = 0, ask = batch_max;
	int r = 0;

	*truncated = false;
	if (!batch || !cursor || !common || !last_prefix) {
		r = -ENOMEM;
		goto out;
	}
	efs_strlcpy(cursor->key, key_marker, sizeof(cursor->key));
	if (id_marker) {
		efs_strlcpy(cursor->id, id_marker, sizeof(cursor->id));
		cursor->has_id = true;
	}
	for (;;) {
		size_t got = 0;
		bool jumped = false;
		r = efs_meta_s3_upload_list(s->m->meta, s->bucket, prefix, cursor->key,
					    cursor->has_id ? cursor->id : NULL, ask, batch, &got);
		if (r < 0)
			goto out;
		for (size_t i = 0; i < got && !jumped; i++) {
			const struct efs_s3_upload_entry *e = &batch[i];
			const char *d = dlen ? strstr(e->key + plen, delimiter) : NULL;
			if (d) {
				size_t clen = (size_t)(d - e->key) + dlen;
				memcpy(common, e->key, clen);
				common[clen] = '\0';
				bool seen = strcmp(common, key_marker) <= 0 ||
					    strcmp(common, last_prefix) == 0;
				if (!seen && n == max) {
					*truncated = true;
					goto out;
				}
				if (!seen) {
					items[n].is_prefix = true;
					efs_strlcpy(items[n].entry.key, common,
						    sizeof(items[n].entry.key));
					n++;
					efs_strlcpy(last_prefix, common, EFS_S3_KEY_MAX + 1);
				}
				cursor_past(cursor, common, e->key);
				/* A jump leaves the batch; passing one key keeps to it. */
				jumped = strcmp(cursor->key, e->key) != 0;
				continue;
			}
			if (n == max) {
				*truncated = true;
				goto out;
			}
			items[n].is_prefix = false;
			items[n++].entry = *e;
			efs_strlcpy(cursor->key, e->key, sizeof(cursor->key));
			efs_strlcpy(cursor->id, e->upload_id, sizeof(cursor->id));
			cursor->has_id = true;
		}
		if (!jumped && got < ask)
			break; /* the end of the prefix's uploads */
		ask = jumped ? EFS_MIN(batch_max, (size_t)UPLOADS_JUMP_BATCH)
			     : EFS_MIN(batch_max, 2 * ask);
	}
out:
	if (r == 0)
		*count = n;
	free(batch);
	free(cursor);
	free(common);
	free(last_prefix);
	return r;
}

int efs_s3_list_uploads(struct efs_s3_req *s)
{
	struct efs_bucket_info b;
	struct upload_item *items = NULL;
	struct efs_s3_xml x;
	const char *prefix = efs_s3_query(s, "prefix");
	const char *delimiter = efs_s3_query(s, "delimiter");
	const char *key_marker = efs_s3_query(s, "key-marker");
	const char *id_marker = efs_s3_query(s, "upload-id-marker");
	const char *encoding = efs_s3_query(s, "encoding-type");
	uint64_t max_uploads;
	size_t n = 0, esize = 3 * EFS_S3_KEY_MAX + 1;
	bool truncated = false;
	char *ebuf = NULL;
	int r = 0;

	if (efs_s3_own_bucket(s, &b) < 0)
		return 0;
	if (query_number(s, "max-uploads", LIST_MAX, LIST_MAX, &max_uploads) < 0)
		return 0;
	if (encoding && strcmp(encoding, "url") != 0)
		return efs_s3_error(s, 400, "InvalidArgument",
				    "Invalid Encoding Method specified in Request");
	prefix = prefix ? prefix : "";
	key_marker = key_marker ? key_marker : "";
	if (delimiter && !*delimiter)
		delimiter = NULL;
	if (strlen(prefix) > EFS_S3_KEY_MAX || strlen(key_marker) > EFS_S3_KEY_MAX ||
	    (delimiter && strlen(delimiter) > EFS_S3_KEY_MAX) ||
	    (id_marker && strlen(id_marker) > EFS_ID_MAX))
		return efs_s3_error(s, 400, "InvalidArgument",
				    "a marker, prefix or delimiter is too long");
	/* S3 ignores upload-id-marker without key-marker; an empty one (the
	 * NextUploadIdMarker after a common prefix) is none. */
	if (!*key_marker || (id_marker && !*id_marker))
		id_marker = NULL;
	if (!(items = calloc(max_uploads ? max_uploads : 1, sizeof(*items))) ||
	    !(ebuf = malloc(esize))) {
		r = -ENOMEM;
		goto out;
	}
	r = uploads_scan(s, prefix, delimiter, key_marker, id_marker, max_uploads, items, &n,
			 &truncated);
	if (r == -ENOTSUP) {
		r = not_implemented(s);
		goto out;
	}
	if (r < 0) {
		r = efs_s3_error_store(s, r, "ListMultipartUploads");
		goto out;
	}
	bool url = encoding != NULL;
	efs_s3_xml_init(&x);
	efs_s3_xml_open(&x, "ListMultipartUploadsResult", EFS_S3_XMLNS);
	efs_s3_xml_text(&x, "Bucket", s->bucket);
	efs_s3_xml_text(&x, "KeyMarker", efs_s3_url_encoded(url, key_marker, ebuf, esize));
	efs_s3_xml_text(&x, "UploadIdMarker", id_marker ? id_marker : "");
	if (n) {
		/* After a common prefix: the prefix, whose uploads a next
		 * request with it as key-marker skips (no upload id). */
		efs_s3_xml_text(&x, "NextKeyMarker",
				efs_s3_url_encoded(url, items[n - 1].entry.key, ebuf, esize));
		efs_s3_xml_text(&x, "NextUploadIdMarker",
				items[n - 1].is_prefix ? "" : items[n - 1].entry.upload_id);
	}
	efs_s3_xml_text(&x, "Prefix", efs_s3_url_encoded(url, prefix, ebuf, esize));
	if (delimiter)
		efs_s3_xml_text(&x, "Delimiter", efs_s3_url_encoded(url, delimiter, ebuf, esize));
	if (url)
		efs_s3_xml_text(&x, "EncodingType", "url");
	efs_s3_xml_u64(&x, "MaxUploads", max_uploads);
	efs_s3_xml_bool(&x, "IsTruncated", truncated);
	for (size_t i = 0; i < n; i++) {
		const struct efs_s3_upload_entry *e = &items[i].entry;
		if (items[i].is_prefix)
			continue;
		efs_s3_xml_open(&x, "Upload", NULL);
		efs_s3_xml_text(&x, "Key", efs_s3_url_encoded(url, e->key, ebuf, esize));
		efs_s3_xml_text(&x, "UploadId", e->upload_id);
		efs_s3_owner_xml(&x, "Initiator", e->owner);
		efs_s3_owner_xml(&x, "Owner", e->owner);
		efs_s3_xml_text(&x, "StorageClass", efs_s3_storage_class(e->policy));
		efs_s3_xml_time(&x, "Initiated", e->created_at_ms);
		efs_s3_xml_close(&x, "Upload");
	}
	for (size_t i = 0; i < n; i++) {
		if (!items[i].is_prefix)
			continue;
		efs_s3_xml_open(&x, "CommonPrefixes", NULL);
		efs_s3_xml_text(&x, "Prefix",
				efs_s3_url_encoded(url, items[i].entry.key, ebuf, esize));
		efs_s3_xml_close(&x, "CommonPrefixes");
	}
	efs_s3_xml_close(&x, "ListMultipartUploadsResult");
	r = efs_s3_xml_reply(s->http, 200, &x);
out:
	free(items);
	free(ebuf);
	return r;
}
