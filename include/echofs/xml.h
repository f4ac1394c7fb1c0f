/* SPDX-License-Identifier: MIT */
/* xml.h - the one wrapper around expat: a small, capped, event parser for
 * the XML documents AWS sends (S3's <Error> bodies, ListObjectsV2).
 *
 * The caller gets each element's start and, at its end, its text (the
 * character data directly inside it, concatenated). Refused: a document
 * with a DOCTYPE (no entities beyond the five predefined, no external
 * anything), one nested deeper than EFS_XML_MAX_DEPTH, an element's text
 * over EFS_XML_MAX_TEXT bytes, malformed XML. Element names are as written
 * (S3's default namespace leaves them unprefixed).
 */
#ifndef ECHOFS_XML_H
#define ECHOFS_XML_H

#include "echofs/common.h"

#define EFS_XML_MAX_DEPTH 16
#define EFS_XML_MAX_TEXT 4096 /* one element's text, bytes */

/* @depth is 1 for the root element. Return 0 to go on or a negative errno
 * to stop the parse with it. */
typedef int (*efs_xml_start_fn)(void *ctx, int depth, const char *name);
typedef int (*efs_xml_end_fn)(void *ctx, int depth, const char *name, const char *text,
			      size_t text_len);

/* Parses the @len bytes at @data, calling @on_start and @on_end (either may
 * be NULL). 0, -EBADMSG (not well-formed XML, or a DOCTYPE), -E2BIG (too
 * deep, a text over its cap), -ENOMEM, or a callback's error. */
int efs_xml_parse(const char *data, size_t len, efs_xml_start_fn on_start, efs_xml_end_fn on_end,
		  void *ctx);

#endif
