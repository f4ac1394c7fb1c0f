/* SPDX-License-Identifier: MIT */
/* xml.c - owns expat. Keeps a stack of the open elements' text so that each
 * element's end sees its own text, and stops the parser at the first
 * error (expat then reports XML_ERROR_ABORTED, mapped back here). */
#include "echofs/xml.h"
#include "echofs/buf.h"

#include <expat.h>

struct parse {
	XML_Parser parser;
	efs_xml_start_fn on_start;
	efs_xml_end_fn on_end;
	void *ctx;
	int depth;
	int error;
	struct efs_buf text[EFS_XML_MAX_DEPTH];
};

static void stop(struct parse *p, int error)
{
	if (!p->error)
		p->error = error;
	XML_StopParser(p->parser, XML_FALSE);
}

static void XMLCALL on_start(void *data, const XML_Char *name, const XML_Char **attrs)
{
	struct parse *p = data;
	(void)attrs;
	if (p->error)
		return;
	if (p->depth >= EFS_XML_MAX_DEPTH) {
		stop(p, -E2BIG);
		return;
	}
	efs_buf_reset(&p->text[p->depth]);
	p->depth++;
	if (p->on_start) {
		int r = p->on_start(p->ctx, p->depth, name);
		if (r < 0)
			stop(p, r);
	}
}

static void XMLCALL on_end(void *data, const XML_Char *name)
{
	struct parse *p = data;
	if (p->error || p->depth <= 0)
		return;
	struct efs_buf *t = &p->text[p->depth - 1];
	int r = 0;
	if (p->on_end)
		r = p->on_end(p->ctx, p->depth, name, t->data ? t->data : "", t->len);
	p->depth--;
	if (r < 0)
		stop(p, r);
}

static void XMLCALL on_text(void *data, const XML_Char *s, int len)
{
	struct parse *p = data;
	if (p->error || p->depth <= 0)
		return;
	int r = efs_buf_append(&p->text[p->depth - 1], s, (size_t)len);
	if (r < 0)
		stop(p, r);
}

/* No DTDs at all: what AWS sends never has one. */
static void XMLCALL on_doctype(void *data, const XML_Char *name, const XML_Char *sysid,
			       const XML_Char *pubid, int has_internal_subset)
{
	(void)name, (void)sysid, (void)pubid, (void)has_internal_subset;
	stop(data, -EBADMSG);
}

int efs_xml_parse(const char *data, size_t len, efs_xml_start_fn start_fn, efs_xml_end_fn end_fn,
		  void *ctx)
{
	struct parse p = {.on_start = start_fn, .on_end = end_fn, .ctx = ctx};
	int r = 0;
	if (len > (size_t)INT32_MAX)
		return -E2BIG;
	for (size_t i = 0; i < EFS_ARRAY_SIZE(p.text); i++)
		efs_buf_init(&p.text[i], EFS_XML_MAX_TEXT);
	p.parser = XML_ParserCreate("UTF-8");
	if (!p.parser) {
		r = -ENOMEM;
		goto out;
	}
	XML_SetUserData(p.parser, &p);
	XML_SetElementHandler(p.parser, on_start, on_end);
	XML_SetCharacterDataHandler(p.parser, on_text);
	XML_SetStartDoctypeDeclHandler(p.parser, on_doctype);
	if (XML_Parse(p.parser, data, (int)len, XML_TRUE) != XML_STATUS_OK)
		r = p.error ? p.error
			    : (XML_GetErrorCode(p.parser) == XML_ERROR_NO_MEMORY ? -ENOMEM : -EBADMSG);
	else if (p.error)
		r = p.error;
out:
	if (p.parser)
		XML_ParserFree(p.parser);
	for (size_t i = 0; i < EFS_ARRAY_SIZE(p.text); i++)
		efs_buf_release(&p.text[i]);
	return r;
}
