/* SPDX-License-Identifier: MIT */
/* s3_xml.h - the one writer of the S3 listener's XML: documents and
 * errors (docs/S3.md).
 *
 * A document is built in a capped buffer; every text goes through one
 * escaping function (& < > " ' and control characters), so no caller
 * writes markup by hand. A write that would pass the cap, or fails to
 * allocate, is remembered and makes the reply fail (-E2BIG / -ENOMEM): a
 * document is never sent truncated.
 */
#ifndef ECHOFS_MASTER_S3_XML_H
#define ECHOFS_MASTER_S3_XML_H

#include "echofs/buf.h"
#include "echofs/common.h"
#include "echofs/http_server.h"

#include <stdint.h>

#define EFS_S3_XMLNS "http://s3.amazonaws.com/doc/2006-03-01/"
/* The largest document: a listing of 1000 keys of 1024 bytes, escaped. */
#define EFS_S3_XML_MAX ((size_t)16 * 1024 * 1024)

/* The first line of every document. */
#define EFS_S3_XML_DECLARATION "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"

struct efs_s3_xml {
	struct efs_buf buf;
	int err; /* the first failure, 0 while none */
};

/* Starts a document (the XML declaration) capped at EFS_S3_XML_MAX. */
void efs_s3_xml_init(struct efs_s3_xml *x);
/* Frees it (after a reply, or instead of one). */
void efs_s3_xml_release(struct efs_s3_xml *x);
/* <name> or, with @xmlns, <name xmlns="...">. */
void efs_s3_xml_open(struct efs_s3_xml *x, const char *name, const char *xmlns);
/* </name> */
void efs_s3_xml_close(struct efs_s3_xml *x, const char *name);
/* <name>text</name>, @text escaped (NULL: an empty element). */
void efs_s3_xml_text(struct efs_s3_xml *x, const char *name, const char *text);
void efs_s3_xml_u64(struct efs_s3_xml *x, const char *name, uint64_t value);
void efs_s3_xml_bool(struct efs_s3_xml *x, const char *name, bool value);
/* <name>2026-12-03T13:14:27.000Z</name> for Unix ms @ms. */
void efs_s3_xml_time(struct efs_s3_xml *x, const char *name, int64_t ms);
/* Appends @text escaped for XML character data (no element). */
void efs_s3_xml_escape(struct efs_s3_xml *x, const char *text);

/* Replies @status with the document (application/xml) and releases it.
 * 0, or the document's remembered failure / the reply's error (nothing
 * sent then). */
int efs_s3_xml_reply(struct efs_http_req *req, unsigned status, struct efs_s3_xml *x);

/* Starts @x as an S3 error document (the one efs_s3_reply_error sends),
 * for a caller that sends it itself. @resource may be NULL. */
void efs_s3_xml_error(struct efs_s3_xml *x, const char *code, const char *message,
		      const char *resource, const char *request_id);
/* Replies an S3 error document:
 *   <Error><Code>@code</Code><Message>...</Message>
 *   <Resource>@resource</Resource><RequestId>@request_id</RequestId></Error>
 * with @status. @resource may be NULL. */
int efs_s3_reply_error(struct efs_http_req *req, unsigned status, const char *code,
		       const char *resource, const char *request_id, const char *fmt, ...)
    EFS_PRINTF(6, 7);

/* HTTP-date of Unix ms @ms ("Thu, 03 Dec 2026 13:14:27 GMT") into @out
 * (at least EFS_S3_HTTP_DATE_LEN bytes). */
#define EFS_S3_HTTP_DATE_LEN 32
char *efs_s3_http_date(int64_t ms, char *out);

#endif
