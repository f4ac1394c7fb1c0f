/* SPDX-License-Identifier: MIT */
/* http_error.c - the table of every HTTP error: kind -> status and code,
 * and (operation, errno) -> kind and message. The only place an errno
 * becomes an HTTP status; docs/API.md's "Error codes" table is checked
 * against it by tests/unit/test_http_error.c. */
#include "echofs/http_error.h"
#include "echofs/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define NOLOG (-1)

static const struct efs_http_error_kind kinds[EFS_HTTP_E_COUNT] = {
    [EFS_HTTP_E_UNAUTHORIZED] = {401, "unauthorized", NOLOG},
    [EFS_HTTP_E_INVALID_TOKEN] = {401, "invalid_token", NOLOG},
    [EFS_HTTP_E_NOT_FOUND] = {404, "not_found", NOLOG},
    [EFS_HTTP_E_METHOD_NOT_ALLOWED] = {405, "method_not_allowed", NOLOG},
    [EFS_HTTP_E_BODY_TOO_LARGE] = {413, "body_too_large", NOLOG},
    [EFS_HTTP_E_INTERNAL_ERROR] = {500, "internal_error", EFS_LOG_ERROR},
    [EFS_HTTP_E_METADATA_UNAVAILABLE] = {503, "metadata_unavailable", NOLOG},
    [EFS_HTTP_E_INVALID_JSON] = {400, "invalid_json", NOLOG},
    [EFS_HTTP_E_INVALID_FIELD] = {400, "invalid_field", NOLOG},
    [EFS_HTTP_E_INVALID_WORKER_ID] = {400, "invalid_worker_id", NOLOG},
    [EFS_HTTP_E_WORKER_NOT_FOUND] = {404, "worker_not_found", NOLOG},
    [EFS_HTTP_E_INVALID_REPORT] = {400, "invalid_report", NOLOG},
    [EFS_HTTP_E_INVALID_NAME] = {400, "invalid_name", NOLOG},
    [EFS_HTTP_E_MISSING_NAME] = {400, "missing_name", NOLOG},
    [EFS_HTTP_E_INVALID_POLICY] = {400, "invalid_policy", NOLOG},
    [EFS_HTTP_E_MISSING_FILE] = {400, "missing_file", NOLOG},
    [EFS_HTTP_E_FORM_TOO_LARGE] = {413, "form_too_large", NOLOG},
    [EFS_HTTP_E_INVALID_MULTIPART] = {400, "invalid_multipart", NOLOG},
    [EFS_HTTP_E_STORE_FAILED] = {500, "store_failed", EFS_LOG_ERROR},
    [EFS_HTTP_E_NO_CAPACITY] = {503, "no_capacity", EFS_LOG_WARN},
    [EFS_HTTP_E_INVALID_LIMIT] = {400, "invalid_limit", NOLOG},
    [EFS_HTTP_E_INVALID_CURSOR] = {400, "invalid_cursor", NOLOG},
    [EFS_HTTP_E_FILE_NOT_FOUND] = {404, "file_not_found", NOLOG},
    [EFS_HTTP_E_RANGE_NOT_SATISFIABLE] = {416, "range_not_satisfiable", NOLOG},
    [EFS_HTTP_E_CHUNK_UNAVAILABLE] = {503, "chunk_unavailable", EFS_LOG_WARN},
    [EFS_HTTP_E_INVALID_CHUNK_SIZE] = {400, "invalid_chunk_size", NOLOG},
    [EFS_HTTP_E_INVALID_SIZE] = {400, "invalid_size", NOLOG},
    [EFS_HTTP_E_TOO_MANY_CHUNKS] = {400, "too_many_chunks", NOLOG},
    [EFS_HTTP_E_MISSING_CHUNK] = {400, "missing_chunk", NOLOG},
    [EFS_HTTP_E_INVALID_CHUNK_INDEX] = {400, "invalid_chunk_index", NOLOG},
    [EFS_HTTP_E_CHUNK_SIZE_MISMATCH] = {400, "chunk_size_mismatch", NOLOG},
    [EFS_HTTP_E_EMPTY_CHUNK] = {400, "empty_chunk", NOLOG},
    [EFS_HTTP_E_SESSION_CHUNK_TOO_LARGE] = {400, "chunk_too_large", NOLOG},
    [EFS_HTTP_E_CHECKSUM_MISMATCH] = {400, "checksum_mismatch", NOLOG},
    [EFS_HTTP_E_SESSION_NOT_FOUND] = {404, "session_not_found", NOLOG},
    [EFS_HTTP_E_INVALID_SESSION_ID] = {400, "invalid_session_id", NOLOG},
    [EFS_HTTP_E_INCOMPLETE_SESSION] = {409, "incomplete_session", NOLOG},
    [EFS_HTTP_E_SHORT_CHUNK] = {409, "short_chunk", NOLOG},
    [EFS_HTTP_E_SESSION_BUSY] = {409, "session_busy", NOLOG},
    [EFS_HTTP_E_UPLOAD_MEMORY_FULL] = {503, "upload_memory_full", NOLOG},
    [EFS_HTTP_E_INVALID_CHUNK_ID] = {400, "invalid_chunk_id", NOLOG},
    [EFS_HTTP_E_INVALID_ENCODING] = {400, "invalid_encoding", NOLOG},
    [EFS_HTTP_E_INVALID_CHECKSUM] = {400, "invalid_checksum", NOLOG},
    [EFS_HTTP_E_INVALID_BATCH] = {400, "invalid_batch", NOLOG},
    [EFS_HTTP_E_LENGTH_MISMATCH] = {400, "length_mismatch", NOLOG},
    [EFS_HTTP_E_LENGTH_REQUIRED] = {411, "length_required", NOLOG},
    [EFS_HTTP_E_CHUNK_TOO_LARGE] = {413, "chunk_too_large", NOLOG},
    [EFS_HTTP_E_INSUFFICIENT_STORAGE] = {507, "insufficient_storage", NOLOG},
    [EFS_HTTP_E_CHUNK_NOT_FOUND] = {404, "chunk_not_found", NOLOG},
    [EFS_HTTP_E_CHUNK_CORRUPT] = {500, "chunk_corrupt", EFS_LOG_ERROR},
    [EFS_HTTP_E_INVALID_HEADER] = {400, "invalid_header", NOLOG},
    [EFS_HTTP_E_CHUNK_REWRITTEN] = {412, "chunk_rewritten", NOLOG},
    [EFS_HTTP_E_STORE_ERROR] = {500, "store_error", EFS_LOG_ERROR},
    [EFS_HTTP_E_WRONG_CLUSTER] = {409, "wrong_cluster", NOLOG},
    [EFS_HTTP_E_STALE_LEASE_EPOCH] = {409, "stale_lease_epoch", NOLOG},
    [EFS_HTTP_E_OPERATORS_ONLY] = {403, "operators_only", NOLOG},
    [EFS_HTTP_E_URI_TOO_LONG] = {414, "uri_too_long", NOLOG},
    [EFS_HTTP_E_HEADERS_TOO_LARGE] = {431, "headers_too_large", NOLOG},
    [EFS_HTTP_E_TOO_MANY_PARAMETERS] = {400, "too_many_parameters", NOLOG},
    [EFS_HTTP_E_MALFORMED_HEADER] = {400, "malformed_header", NOLOG},
    [EFS_HTTP_E_INVALID_FRAMING] = {400, "invalid_framing", NOLOG},
    [EFS_HTTP_E_UNSUPPORTED_TRANSFER_CODING] = {501, "unsupported_transfer_coding", NOLOG},
    [EFS_HTTP_E_CHUNK_STORE_UNAVAILABLE] = {503, "chunk_store_unavailable", EFS_LOG_WARN},
    [EFS_HTTP_E_ACCESS_KEY_NOT_FOUND] = {404, "access_key_not_found", NOLOG},
    [EFS_HTTP_E_TOO_MANY_ACCESS_KEYS] = {409, "too_many_access_keys", NOLOG},
};

#define UNAVAILABLE "the metadata store is unavailable; retry shortly"
#define STORE_ERROR "metadata store error: {errno}"
#define NO_CAPACITY "not enough live workers to store every replica"
/* -EHOSTUNREACH: the S3 chunk store's "unreachable or failing after its
 * retries" (chunk_s3.c); its log line says what S3 answered. */
#define CHUNK_STORE_DOWN "the chunk store (S3) is unreachable or failing; retry shortly"

/* Per operation: the errnos with a meaning of their own, then the
 * catch-all (err 0). Looked up in order. */
static const struct efs_http_errno_rule rules[] = {
    {EFS_HTTP_OP_REQUEST, 0, EFS_HTTP_E_INTERNAL_ERROR, "internal error: {errno}"},

    {EFS_HTTP_OP_JSON_BODY, -EINVAL, EFS_HTTP_E_INVALID_JSON,
     "request body must be a JSON object{}"},
    {EFS_HTTP_OP_JSON_BODY, 0, EFS_HTTP_E_INTERNAL_ERROR, "internal error: {errno}"},

    {EFS_HTTP_OP_META, -EAGAIN, EFS_HTTP_E_METADATA_UNAVAILABLE, UNAVAILABLE},
    {EFS_HTTP_OP_META, 0, EFS_HTTP_E_INTERNAL_ERROR, STORE_ERROR},

    {EFS_HTTP_OP_FILE, -ENOENT, EFS_HTTP_E_FILE_NOT_FOUND, "no file {}"},
    {EFS_HTTP_OP_FILE, -EAGAIN, EFS_HTTP_E_METADATA_UNAVAILABLE, UNAVAILABLE},
    {EFS_HTTP_OP_FILE, 0, EFS_HTTP_E_INTERNAL_ERROR, STORE_ERROR},

    {EFS_HTTP_OP_SESSION, -ENOENT, EFS_HTTP_E_SESSION_NOT_FOUND,
     "no upload session {} (unknown, expired or finished)"},
    {EFS_HTTP_OP_SESSION, -EAGAIN, EFS_HTTP_E_METADATA_UNAVAILABLE, UNAVAILABLE},
    {EFS_HTTP_OP_SESSION, 0, EFS_HTTP_E_INTERNAL_ERROR, STORE_ERROR},

    {EFS_HTTP_OP_WORKER, -ENOENT, EFS_HTTP_E_WORKER_NOT_FOUND, "unknown worker {}: register again"},
    {EFS_HTTP_OP_WORKER, -EAGAIN, EFS_HTTP_E_METADATA_UNAVAILABLE, UNAVAILABLE},
    {EFS_HTTP_OP_WORKER, 0, EFS_HTTP_E_INTERNAL_ERROR, STORE_ERROR},

    {EFS_HTTP_OP_MULTIPART, -EBADMSG, EFS_HTTP_E_INVALID_MULTIPART, "malformed multipart body: {}"},
    /* A form field beside the chunk over its cap (the chunk fields). */
    {EFS_HTTP_OP_MULTIPART, -E2BIG, EFS_HTTP_E_INVALID_MULTIPART,
     "malformed multipart body: a form field is too long"},
    {EFS_HTTP_OP_MULTIPART, 0, EFS_HTTP_E_INTERNAL_ERROR, "internal error: {errno}"},

    {EFS_HTTP_OP_STORE_CHUNK, -ENOSPC, EFS_HTTP_E_NO_CAPACITY, NO_CAPACITY},
    {EFS_HTTP_OP_STORE_CHUNK, -EHOSTUNREACH, EFS_HTTP_E_CHUNK_STORE_UNAVAILABLE, CHUNK_STORE_DOWN},
    {EFS_HTTP_OP_STORE_CHUNK, -ENOENT, EFS_HTTP_E_SESSION_NOT_FOUND,
     "the session ended while the chunk was stored"},
    {EFS_HTTP_OP_STORE_CHUNK, -EAGAIN, EFS_HTTP_E_METADATA_UNAVAILABLE, UNAVAILABLE},
    {EFS_HTTP_OP_STORE_CHUNK, 0, EFS_HTTP_E_INTERNAL_ERROR, STORE_ERROR},

    {EFS_HTTP_OP_STORE_FILE, -ENOSPC, EFS_HTTP_E_NO_CAPACITY, NO_CAPACITY},
    {EFS_HTTP_OP_STORE_FILE, -EHOSTUNREACH, EFS_HTTP_E_CHUNK_STORE_UNAVAILABLE, CHUNK_STORE_DOWN},
    {EFS_HTTP_OP_STORE_FILE, -EAGAIN, EFS_HTTP_E_METADATA_UNAVAILABLE, UNAVAILABLE},
    {EFS_HTTP_OP_STORE_FILE, 0, EFS_HTTP_E_STORE_FAILED, "cannot store {}: {errno}"},

    {EFS_HTTP_OP_READ_BACK, 0, EFS_HTTP_E_CHUNK_UNAVAILABLE,
     "the session's chunks could not be read back: {errno}"},

    {EFS_HTTP_OP_DOWNLOAD, -ENOENT, EFS_HTTP_E_FILE_NOT_FOUND, "no file {}"},
    {EFS_HTTP_OP_DOWNLOAD, -EAGAIN, EFS_HTTP_E_METADATA_UNAVAILABLE, UNAVAILABLE},
    {EFS_HTTP_OP_DOWNLOAD, 0, EFS_HTTP_E_CHUNK_UNAVAILABLE,
     "no replica of the file's data could be read now"},

    {EFS_HTTP_OP_CHUNK_WRITE, -ENOSPC, EFS_HTTP_E_INSUFFICIENT_STORAGE,
     "this worker is full (WORKER_CAPACITY_BYTES or its disk)"},
    {EFS_HTTP_OP_CHUNK_WRITE, -EDQUOT, EFS_HTTP_E_INSUFFICIENT_STORAGE,
     "this worker is full (its disk quota)"},
    {EFS_HTTP_OP_CHUNK_WRITE, -E2BIG, EFS_HTTP_E_LENGTH_MISMATCH, "more bytes than Content-Length"},
    {EFS_HTTP_OP_CHUNK_WRITE, -EPROTO, EFS_HTTP_E_LENGTH_MISMATCH,
     "fewer bytes than Content-Length"},
    {EFS_HTTP_OP_CHUNK_WRITE, -EBADMSG, EFS_HTTP_E_CHECKSUM_MISMATCH,
     "the chunk's bytes do not match X-Chunk-CRC32C"},
    {EFS_HTTP_OP_CHUNK_WRITE, 0, EFS_HTTP_E_STORE_ERROR, "cannot store the chunk: {errno}"},

    {EFS_HTTP_OP_CHUNK_READ, -ENOENT, EFS_HTTP_E_CHUNK_NOT_FOUND, "no chunk {} here"},
    {EFS_HTTP_OP_CHUNK_READ, -EBADMSG, EFS_HTTP_E_CHUNK_CORRUPT,
     "chunk {} failed its checksum on this worker"},
    {EFS_HTTP_OP_CHUNK_READ, 0, EFS_HTTP_E_STORE_ERROR, "cannot read the chunk: {errno}"},

    /* HEAD has no body: a corrupt (just quarantined) chunk is absent. */
    {EFS_HTTP_OP_CHUNK_STAT, -ENOENT, EFS_HTTP_E_CHUNK_NOT_FOUND, "no chunk {} here"},
    {EFS_HTTP_OP_CHUNK_STAT, -EBADMSG, EFS_HTTP_E_CHUNK_NOT_FOUND, "no chunk {} here"},
    {EFS_HTTP_OP_CHUNK_STAT, 0, EFS_HTTP_E_STORE_ERROR, "cannot read the chunk: {errno}"},

    {EFS_HTTP_OP_CHUNK_DELETE, -ENOENT, EFS_HTTP_E_CHUNK_NOT_FOUND, "no chunk {} here"},
    {EFS_HTTP_OP_CHUNK_DELETE, -EBUSY, EFS_HTTP_E_CHUNK_REWRITTEN,
     "chunk {} was written again since; kept"},
    {EFS_HTTP_OP_CHUNK_DELETE, 0, EFS_HTTP_E_STORE_ERROR, "cannot delete: {errno}"},

    {EFS_HTTP_OP_ACCESS_KEY, -ENOENT, EFS_HTTP_E_ACCESS_KEY_NOT_FOUND, "no access key {}"},
    {EFS_HTTP_OP_ACCESS_KEY, -EDQUOT, EFS_HTTP_E_TOO_MANY_ACCESS_KEYS,
     "you have as many access keys as allowed (MAX_ACCESS_KEYS_PER_USER): delete one first"},
    {EFS_HTTP_OP_ACCESS_KEY, -EAGAIN, EFS_HTTP_E_METADATA_UNAVAILABLE, UNAVAILABLE},
    {EFS_HTTP_OP_ACCESS_KEY, 0, EFS_HTTP_E_INTERNAL_ERROR, STORE_ERROR},
};

static const struct efs_http_errno_rule fallback = {
    EFS_HTTP_OP_REQUEST, 0, EFS_HTTP_E_INTERNAL_ERROR, "internal error: {errno}"};

const struct efs_http_error_kind *efs_http_error_kind(enum efs_http_err err)
{
	if ((unsigned)err >= EFS_HTTP_E_COUNT)
		return NULL;
	return &kinds[err];
}

const struct efs_http_errno_rule *efs_http_errno_rule(enum efs_http_op op, int err)
{
	const struct efs_http_errno_rule *any = NULL;
	for (size_t i = 0; i < EFS_ARRAY_SIZE(rules); i++) {
		if (rules[i].op != op)
			continue;
		if (rules[i].err == err && err != 0)
			return &rules[i];
		if (rules[i].err == 0 && !any)
			any = &rules[i];
	}
	return any ? any : &fallback;
}

unsigned efs_http_errno_status(enum efs_http_op op, int err)
{
	return kinds[efs_http_errno_rule(op, err)->kind].status;
}

/* Appends @s to @out (of @size, @len used), cut at the end. */
static size_t put(char *out, size_t size, size_t len, const char *s)
{
	size_t n = strlen(s);
	if (len + 1 >= size)
		return len;
	if (n > size - 1 - len)
		n = size - 1 - len;
	memcpy(out + len, s, n);
	out[len + n] = '\0';
	return len + n;
}

void efs_http_errno_message(const struct efs_http_errno_rule *rule, int err, const char *subject,
			    char *out, size_t size)
{
	char piece[2] = {0};
	size_t len = 0;

	if (size == 0)
		return;
	out[0] = '\0';
	for (const char *p = rule->message; *p; p++) {
		if (strncmp(p, "{}", 2) == 0) {
			len = put(out, size, len, subject ? subject : "");
			p += 1;
		} else if (strncmp(p, "{errno}", 7) == 0) {
			len = put(out, size, len, strerror(err < 0 ? -err : err));
			p += 6;
		} else {
			piece[0] = *p;
			len = put(out, size, len, piece);
		}
	}
}

int efs_http_reply_err_extra(struct efs_http_req *req, enum efs_http_err err, json_t *extra,
			     const char *fmt, ...)
{
	const struct efs_http_error_kind *kind = efs_http_error_kind(err);
	char message[512];
	va_list ap;

	if (!kind)
		kind = &kinds[EFS_HTTP_E_INTERNAL_ERROR];
	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	return efs_http_reply_error_extra(req, kind->status, kind->code, extra, "%s", message);
}

int efs_http_reply_errno(struct efs_http_req *req, enum efs_http_op op, int err,
			 const char *subject)
{
	const struct efs_http_errno_rule *rule = efs_http_errno_rule(op, err);
	const struct efs_http_error_kind *kind = &kinds[rule->kind];
	char message[512];

	/* Path parameters are capped at 128 bytes; a subject is never longer
	 * in a message. */
	char short_subject[129];
	if (subject)
		snprintf(short_subject, sizeof(short_subject), "%s", subject);
	efs_http_errno_message(rule, err, subject ? short_subject : NULL, message, sizeof(message));
	if (kind->log_level >= 0) {
		/* The cause too, unless the message gives it already. */
		char cause[128] = "";
		if (!strstr(rule->message, "{errno}"))
			snprintf(cause, sizeof(cause), " (%s)", strerror(err < 0 ? -err : err));
		efs_log((enum efs_log_level)kind->log_level, "%s %s: %u %s: %s%s", req->method,
			req->path, kind->status, kind->code, message, cause);
	}
	return efs_http_reply_error_extra(req, kind->status, kind->code, NULL, "%s", message);
}
