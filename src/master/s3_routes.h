/* SPDX-License-Identifier: MIT */
/* s3_routes.h - the S3 listener: one catch-all route that names the
 * bucket and key (path style, or virtual-host style under S3_DOMAIN),
 * authenticates (s3_auth.h), refuses what is not implemented (501
 * NotImplemented, never a wrong success) and hands the request to
 * s3_bucket.c or s3_object.c. docs/S3.md is the user's view.
 *
 * Every reply carries x-amz-request-id; every error is S3's XML
 * (s3_xml.h). A handler that returns a negative errno without replying
 * gets a 500 InternalError (503 ServiceUnavailable for -EAGAIN), logged
 * once here.
 *
 * Bodies: a handler that takes a body sets on_body / on_end in begin; an
 * aws-chunked body (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) reaches on_body
 * decoded and verified. Without on_body, a body is buffered up to
 * EFS_S3_SMALL_BODY_MAX bytes (request XML) into @small_body.
 */
#ifndef ECHOFS_MASTER_S3_ROUTES_H
#define ECHOFS_MASTER_S3_ROUTES_H

#include "echofs/buf.h"
#include "echofs/http_server.h"
#include "echofs/meta.h"
#include "master/master.h"
#include "master/s3_auth.h"

#define EFS_S3_SMALL_BODY_MAX (64 * 1024)
#define EFS_S3_REQUEST_ID_LEN 16

struct efs_s3_req;
typedef int (*efs_s3_body_fn)(struct efs_s3_req *s, const char *data, size_t len);
typedef int (*efs_s3_fn)(struct efs_s3_req *s);

/* One S3 request's state (req->state of the HTTP request). */
struct efs_s3_req {
	struct efs_master *m;
	struct efs_http_req *http;
	char request_id[EFS_S3_REQUEST_ID_LEN + 1];
	char bucket[EFS_S3_BUCKET_MAX + 1]; /* "" : the service (ListBuckets) */
	char key[EFS_S3_KEY_MAX + 1];	    /* "" : the bucket itself */
	bool has_key;
	const char *raw_query;		   /* as sent, without '?'; NULL: none */
	struct efs_s3_principal principal; /* who: principal.owner */
	struct efs_s3_chunked *chunked;	   /* an aws-chunked body's decoder */
	struct efs_buf small_body;
	/* Set by a handler's begin step. */
	efs_s3_body_fn on_body;
	efs_s3_fn on_end;
	void *op;
	void (*op_free)(void *op);
	/* Set when the reply's 200 went out before the operation ended
	 * (s3_hold.h): its documents go into the held body. */
	struct efs_s3_hold *hold;
};

/* The bucket and key a request addresses. */
struct efs_s3_target {
	char bucket[EFS_S3_BUCKET_MAX + 1]; /* "" : the service */
	char key[EFS_S3_KEY_MAX + 1];       /* "" : the bucket itself */
	bool has_key;
};
/* Names them from @target, the request target as sent (path, then maybe
 * "?query"), percent-decoded: path style "/bucket/key", or, when @domain
 * (S3_DOMAIN, may be NULL) is set and @host (the Host header, may be NULL)
 * is "<bucket>.<domain>[:port]", virtual-host style with the whole path
 * as the key. 0 with @out filled; -EINVAL with @code the S3 error
 * ("InvalidURI": a bad escape, an encoded NUL, not absolute, a key not
 * UTF-8; "InvalidBucketName": over 63 bytes; "KeyTooLongError": over 1024
 * bytes), @out untouched. Pure: fuzzed by tests/fuzz/fuzz_s3_target.c. */
int efs_s3_target_parse(const char *target, const char *host, const char *domain,
			struct efs_s3_target *out, const char **code);

/* The S3 listener's route table (one catch-all route). */
extern const struct efs_http_route efs_s3_routes[];
extern const size_t efs_s3_route_count;

/* Replies S3 error @code with @status; the resource is the request's
 * path. Returns 0 (the reply's own failure is logged by the wrapper). */
int efs_s3_error(struct efs_s3_req *s, unsigned status, const char *code, const char *fmt, ...)
    EFS_PRINTF(4, 5);
/* Replies the document @x (released) with @status; into the held body
 * when the request is held (s3_hold.h). As efs_s3_xml_reply. */
struct efs_s3_xml;
int efs_s3_reply_xml(struct efs_s3_req *s, unsigned status, struct efs_s3_xml *x);
/* For a buffered body (@data may be NULL when @len is 0): 0 when the
 * request's payload is not signed or its signed SHA-256 is the body's;
 * otherwise replies 400 XAmzContentSHA256Mismatch and returns -EINVAL. */
int efs_s3_check_signed_body(struct efs_s3_req *s, const char *data, size_t len);
/* Replies the S3 error for a metadata store failure @err (503
 * ServiceUnavailable for -EAGAIN, else 500 InternalError), logged. */
int efs_s3_error_store(struct efs_s3_req *s, int err, const char *what);
/* Loads the request's bucket and checks the caller owns it. 0 with @out
 * filled, or the reply made (NoSuchBucket 404, AccessDenied 403, store
 * errors) and -EACCES returned. */
int efs_s3_own_bucket(struct efs_s3_req *s, struct efs_bucket_info *out);
/* Checks that the chunk backend can store a new chunk now
 * (efs_chunk_backend_writable), before an upload (@what: "PutObject")
 * takes memory. 0, or the reply made (503 SlowDown naming why, store
 * errors) and -EAGAIN returned. */
int efs_s3_writable(struct efs_s3_req *s, const char *what);
/* The request's query parameter @name (decoded), or NULL (also for a
 * parameter without a value, "?location": see efs_s3_query_has). */
const char *efs_s3_query(struct efs_s3_req *s, const char *name);
/* True when the query names parameter @name, with or without a value. */
bool efs_s3_query_has(struct efs_s3_req *s, const char *name);

#endif
