/* SPDX-License-Identifier: MIT */
/* s3_xml.c - S3 XML documents and errors: escaping in one place. */
#include "master/s3_xml.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void efs_s3_xml_init(struct efs_s3_xml *x)
{
	efs_buf_init(&x->buf, EFS_S3_XML_MAX);
	x->err = efs_buf_puts(&x->buf, EFS_S3_XML_DECLARATION);
}

void efs_s3_xml_release(struct efs_s3_xml *x)
{
	efs_buf_release(&x->buf);
}

static void put(struct efs_s3_xml *x, const char *s, size_t len)
{
	if (!x->err)
		x->err = efs_buf_append(&x->buf, s, len);
}

void efs_s3_xml_escape(struct efs_s3_xml *x, const char *text)
{
	const char *run = text;
	for (const char *p = text; *p; p++) {
		unsigned char c = (unsigned char)*p;
		const char *rep = NULL;
		char num[8];
		switch (c) {
		case '&':
			rep = "&amp;";
			break;
		case '<':
			rep = "&lt;";
			break;
		case '>':
			rep = "&gt;";
			break;
		case '"':
			rep = "&quot;";
			break;
		case '\'':
			rep = "&apos;";
			break;
		default:
			/* Control characters as references (keys may hold them;
			 * encoding-type=url is the way to read such keys back). */
			if (c < 0x20 || c == 0x7f) {
				snprintf(num, sizeof(num), "&#x%X;", c);
				rep = num;
			}
		}
		if (!rep)
			continue;
		put(x, run, (size_t)(p - run));
		put(x, rep, strlen(rep));
		run = p + 1;
	}
	put(x, run, strlen(run));
}

void efs_s3_xml_open(struct efs_s3_xml *x, const char *name, const char *xmlns)
{
	put(x, "<", 1);
	put(x, name, strlen(name));
	if (xmlns) {
		put(x, " xmlns=\"", 8);
		efs_s3_xml_escape(x, xmlns);
		put(x, "\"", 1);
	}
	put(x, ">", 1);
}

void efs_s3_xml_close(struct efs_s3_xml *x, const char *name)
{
	put(x, "</", 2);
	put(x, name, strlen(name));
	put(x, ">", 1);
}

void efs_s3_xml_text(struct efs_s3_xml *x, const char *name, const char *text)
{
	efs_s3_xml_open(x, name, NULL);
	if (text)
		efs_s3_xml_escape(x, text);
	efs_s3_xml_close(x, name);
}

void efs_s3_xml_u64(struct efs_s3_xml *x, const char *name, uint64_t value)
{
	char num[24];
	snprintf(num, sizeof(num), "%llu", (unsigned long long)value);
	efs_s3_xml_text(x, name, num);
}

void efs_s3_xml_bool(struct efs_s3_xml *x, const char *name, bool value)
{
	efs_s3_xml_text(x, name, value ? "true" : "false");
}

void efs_s3_xml_time(struct efs_s3_xml *x, const char *name, int64_t ms)
{
	char when[40];
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&s, &tm);
	size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + n, sizeof(when) - n, ".%03dZ", (int)(ms % 1000));
	efs_s3_xml_text(x, name, when);
}

char *efs_s3_http_date(int64_t ms, char *out)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&s, &tm);
	strftime(out, EFS_S3_HTTP_DATE_LEN, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	return out;
}

int efs_s3_xml_reply(struct efs_http_req *req, unsigned status, struct efs_s3_xml *x)
{
	int r = x->err;
	if (r == 0)
		r = efs_http_reply_buf(req, status, "application/xml", &x->buf, 0, x->buf.len);
	efs_s3_xml_release(x);
	return r;
}

void efs_s3_xml_error(struct efs_s3_xml *x, const char *code, const char *message,
		      const char *resource, const char *request_id)
{
	efs_s3_xml_init(x);
	efs_s3_xml_open(x, "Error", NULL);
	efs_s3_xml_text(x, "Code", code);
	efs_s3_xml_text(x, "Message", message);
	if (resource)
		efs_s3_xml_text(x, "Resource", resource);
	efs_s3_xml_text(x, "RequestId", request_id);
	efs_s3_xml_close(x, "Error");
}

int efs_s3_reply_error(struct efs_http_req *req, unsigned status, const char *code,
		       const char *resource, const char *request_id, const char *fmt, ...)
{
	char message[512];
	struct efs_s3_xml x;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);

	efs_s3_xml_error(&x, code, message, resource, request_id);
	return efs_s3_xml_reply(req, status, &x);
}
