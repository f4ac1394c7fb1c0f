/* SPDX-License-Identifier: MIT */
/* http_error.h - the one error contract of both daemons' HTTP APIs.
 *
 * Every error a client can get is one kind in enum efs_http_err; the
 * table in http_error.c gives each its HTTP status and its stable code
 * ("file_not_found"). docs/API.md's "Error codes" table lists the same
 * (code, status) pairs: tests/unit/test_http_error.c fails when they
 * drift apart.
 *
 * A negative errno becomes a kind through the same table: an operation
 * (enum efs_http_op: "a metadata lookup of the caller's file", "a chunk
 * read on the worker") says what an errno means there (-ENOENT is
 * file_not_found for a file, worker_not_found for a heartbeat), and the
 * message the client reads. No handler maps errnos to statuses itself.
 *
 * The contract, for every route callback (see http_server.h):
 *   - a handler replies exactly once, then returns 0 (or the reply call's
 *     own result); a negative return without a reply is the server's 500
 *     internal_error (logged there);
 *   - helpers (json readers, chunk_io, download, upload, the pipeline, the
 *     store) never reply and never log: they return 0 or a negative errno,
 *     with a detail out-parameter where the handler needs one;
 *   - the handler that decides logs once: efs_http_reply_errno writes the
 *     one log line of a 5xx reply it sends (ERROR for a 500, WARN for the
 *     503s that mean the data path failed), with the request and the cause.
 */
#ifndef ECHOFS_HTTP_ERROR_H
#define ECHOFS_HTTP_ERROR_H

#include "echofs/common.h"
#include "echofs/http_server.h"

#include <jansson.h>
#include <stddef.h>

/* Every error a client can see (one row each in the table). */
enum efs_http_err {
	/* any endpoint */
	EFS_HTTP_E_UNAUTHORIZED,
	EFS_HTTP_E_INVALID_TOKEN,
	EFS_HTTP_E_NOT_FOUND,
	EFS_HTTP_E_METHOD_NOT_ALLOWED,
	EFS_HTTP_E_BODY_TOO_LARGE,
	EFS_HTTP_E_INTERNAL_ERROR,
	EFS_HTTP_E_METADATA_UNAVAILABLE,
	EFS_HTTP_E_INVALID_JSON,
	/* workers registering and reporting */
	EFS_HTTP_E_INVALID_FIELD,
	EFS_HTTP_E_INVALID_WORKER_ID,
	EFS_HTTP_E_WORKER_NOT_FOUND,
	EFS_HTTP_E_INVALID_REPORT,
	/* files */
	EFS_HTTP_E_INVALID_NAME,
	EFS_HTTP_E_MISSING_NAME,
	EFS_HTTP_E_INVALID_POLICY,
	EFS_HTTP_E_MISSING_FILE,
	EFS_HTTP_E_FORM_TOO_LARGE,
	EFS_HTTP_E_INVALID_MULTIPART,
	EFS_HTTP_E_STORE_FAILED,
	EFS_HTTP_E_NO_CAPACITY,
	EFS_HTTP_E_INVALID_LIMIT,
	EFS_HTTP_E_INVALID_CURSOR,
	EFS_HTTP_E_FILE_NOT_FOUND,
	EFS_HTTP_E_RANGE_NOT_SATISFIABLE,
	EFS_HTTP_E_CHUNK_UNAVAILABLE,
	/* upload sessions */
	EFS_HTTP_E_INVALID_CHUNK_SIZE,
	EFS_HTTP_E_INVALID_SIZE,
	EFS_HTTP_E_TOO_MANY_CHUNKS,
	EFS_HTTP_E_MISSING_CHUNK,
	EFS_HTTP_E_INVALID_CHUNK_INDEX,
	EFS_HTTP_E_CHUNK_SIZE_MISMATCH,
	EFS_HTTP_E_EMPTY_CHUNK,
	EFS_HTTP_E_SESSION_CHUNK_TOO_LARGE, /* "chunk_too_large", 400 (master) */
	EFS_HTTP_E_CHECKSUM_MISMATCH,
	EFS_HTTP_E_SESSION_NOT_FOUND,
	EFS_HTTP_E_INVALID_SESSION_ID,
	EFS_HTTP_E_INCOMPLETE_SESSION,
	EFS_HTTP_E_SHORT_CHUNK,
	EFS_HTTP_E_SESSION_BUSY,
	EFS_HTTP_E_UPLOAD_MEMORY_FULL,
	/* worker chunk endpoints */
	EFS_HTTP_E_INVALID_CHUNK_ID,
	EFS_HTTP_E_INVALID_ENCODING,
	EFS_HTTP_E_INVALID_CHECKSUM,
	EFS_HTTP_E_INVALID_BATCH, /* "invalid_batch", 400: POST /chunks/batch (worker) */
	EFS_HTTP_E_LENGTH_MISMATCH,
	EFS_HTTP_E_LENGTH_REQUIRED,
	EFS_HTTP_E_CHUNK_TOO_LARGE, /* "chunk_too_large", 413 (worker PUT) */
	EFS_HTTP_E_INSUFFICIENT_STORAGE,
	EFS_HTTP_E_CHUNK_NOT_FOUND,
	EFS_HTTP_E_CHUNK_CORRUPT,
	EFS_HTTP_E_INVALID_HEADER,
	EFS_HTTP_E_CHUNK_REWRITTEN,
	EFS_HTTP_E_STORE_ERROR,
	/* cluster identity (master and worker) */
	EFS_HTTP_E_WRONG_CLUSTER,
	/* fencing: a duty's instruction from an old lease holder (worker) */
	EFS_HTTP_E_STALE_LEASE_EPOCH,
	/* topology shown to operators only (TOPOLOGY_VISIBLE_TO=operators) */
	EFS_HTTP_E_OPERATORS_ONLY,
	/* the request head and its framing (every endpoint, http_server.c) */
	EFS_HTTP_E_URI_TOO_LONG,
	EFS_HTTP_E_HEADERS_TOO_LARGE,
	EFS_HTTP_E_TOO_MANY_PARAMETERS,
	EFS_HTTP_E_MALFORMED_HEADER,
	EFS_HTTP_E_INVALID_FRAMING,
	EFS_HTTP_E_UNSUPPORTED_TRANSFER_CODING,
	/* the chunk store (S3) unreachable or failing after its retries */
	EFS_HTTP_E_CHUNK_STORE_UNAVAILABLE,
	/* access keys of the S3 API (api_keys.c) */
	EFS_HTTP_E_ACCESS_KEY_NOT_FOUND,
	EFS_HTTP_E_TOO_MANY_ACCESS_KEYS,
	EFS_HTTP_E_COUNT
};

struct efs_http_error_kind {
	unsigned status;  /* HTTP status */
	const char *code; /* stable, snake_case */
	/* The one log line of this reply when sent by efs_http_reply_errno:
	 * -1 none (the client's mistake, or a state it can wait out), else
	 * an enum efs_log_level. */
	int log_level;
};

/* The row of @err; NULL when @err is out of range. */
const struct efs_http_error_kind *efs_http_error_kind(enum efs_http_err err);

/* Replies {"error": {"code", "message"}} with @err's status and code; the
 * message is printf-formatted. @extra (stolen, may be NULL) is merged into
 * the error object, e.g. {"missing": [1, 2]}. 0 or a negative errno (as
 * efs_http_reply_json). Never logs. */
int efs_http_reply_err_extra(struct efs_http_req *req, enum efs_http_err err, json_t *extra,
			     const char *fmt, ...) EFS_PRINTF(4, 5);
#define efs_http_reply_err(req, err, ...) efs_http_reply_err_extra((req), (err), NULL, __VA_ARGS__)

/* What an errno means to the client, by what failed. */
enum efs_http_op {
	EFS_HTTP_OP_REQUEST,	  /* a callback failed without replying */
	EFS_HTTP_OP_JSON_BODY,	  /* efs_http_body_json: subject = the parser's complaint */
	EFS_HTTP_OP_META,	  /* a metadata store call */
	EFS_HTTP_OP_FILE,	  /* the caller's file, subject = file id */
	EFS_HTTP_OP_SESSION,	  /* the caller's session, subject = session id */
	EFS_HTTP_OP_WORKER,	  /* a registered worker, subject = worker id */
	EFS_HTTP_OP_MULTIPART,	  /* a multipart body, subject = what is wrong */
	EFS_HTTP_OP_STORE_CHUNK,  /* efs_upload_chunk of a session chunk */
	EFS_HTTP_OP_STORE_FILE,	  /* the one-request upload's pipeline, subject =
				   * "chunk N" or "the upload" */
	EFS_HTTP_OP_READ_BACK,	  /* complete reading its chunks back */
	EFS_HTTP_OP_DOWNLOAD,	  /* a download's first chunk, subject = file id */
	EFS_HTTP_OP_CHUNK_WRITE,  /* worker: PUT /chunks/{id} */
	EFS_HTTP_OP_CHUNK_READ,	  /* worker: GET /chunks/{id}, subject = chunk id */
	EFS_HTTP_OP_CHUNK_STAT,	  /* worker: HEAD /chunks/{id} */
	EFS_HTTP_OP_CHUNK_DELETE, /* worker: DELETE /chunks/{id}, subject = chunk id */
	EFS_HTTP_OP_ACCESS_KEY,	  /* the caller's access key, subject = its id */
	EFS_HTTP_OP_COUNT
};

/* One row of the errno table: in @op, @err (a negative errno; 0: any
 * other) is @kind, told with @message, where "{}" stands for the caller's
 * subject and "{errno}" for strerror of the errno. */
struct efs_http_errno_rule {
	enum efs_http_op op;
	int err;
	enum efs_http_err kind;
	const char *message;
};

/* The rule for errno @err (negative) in @op: never NULL (every op has a
 * catch-all row). */
const struct efs_http_errno_rule *efs_http_errno_rule(enum efs_http_op op, int err);

/* The HTTP status errno @err means in @op (for replies without a body). */
unsigned efs_http_errno_status(enum efs_http_op op, int err);

/* Writes the message of @rule for @err and @subject (NULL: "") into @out
 * (always NUL-terminated, cut at @size). */
void efs_http_errno_message(const struct efs_http_errno_rule *rule, int err, const char *subject,
			    char *out, size_t size);

/* Replies the error errno @err (negative) means in @op, as the table says;
 * @subject names what the message is about (see enum efs_http_op; may be
 * NULL). A kind with a log level gets one log line: the request, the
 * message and the errno. 0 or a negative errno (as efs_http_reply_json). */
int efs_http_reply_errno(struct efs_http_req *req, enum efs_http_op op, int err,
			 const char *subject);

#endif
