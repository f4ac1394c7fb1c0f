/* SPDX-License-Identifier: MIT */
/* multipart.h - streaming multipart/form-data parser (RFC 7578, RFC 2046).
 *
 * Built for upload endpoints whose bodies may be many gigabytes: a part's
 * body is never buffered. Bytes reach part_data as they are fed, in pieces,
 * and the parser holds back only what might be the start of a delimiter
 * (fewer than strlen(boundary) + 4 bytes). A part's header block is kept
 * whole (at most EFS_MULTIPART_HEADERS_MAX bytes). The parser allocates
 * nothing after efs_multipart_new, so its memory is fixed.
 *
 * Grammar accepted:
 *   - a preamble, ignored, up to the first line starting with "--boundary"
 *     (at the start of the body or after a LF);
 *   - per part, header lines ended by CRLF or a bare LF, then a blank line.
 *     Lines starting with a space or tab continue the previous header. Each
 *     part needs "Content-Disposition: form-data" (case-insensitive);
 *     Content-Type is reported, every other header is ignored;
 *   - the part's body, ended by CRLF "--boundary". Inside a body the
 *     delimiter is recognised only after CRLF (a bare LF or no line break
 *     does not count), except at the very start of a body, where
 *     "--boundary" alone ends an empty body (the CRLF is shared with the
 *     blank line, as some clients send it);
 *   - after "--boundary": "--" ends the body (everything after it, the
 *     epilogue, is ignored) or optional spaces/tabs and CRLF (or LF) start
 *     the next part. Anything else there is malformed. As RFC 2046 says,
 *     the boundary need only appear in full at the start of a line, so
 *     "--boundaryX" is a delimiter line followed by junk, not body data.
 */
#ifndef ECHOFS_MULTIPART_H
#define ECHOFS_MULTIPART_H

#include "echofs/common.h"

#include <stddef.h>

/* Longest boundary, in characters (RFC 2046). */
#define EFS_MULTIPART_BOUNDARY_MAX 70
/* Largest header block of one part, in bytes, line endings included, the
 * blank line that ends it excluded. */
#define EFS_MULTIPART_HEADERS_MAX 8192
/* Most parts in one body. */
#define EFS_MULTIPART_PARTS_MAX 64
/* Longest name or filename, in bytes, after unquoting/percent-decoding. */
#define EFS_MULTIPART_NAME_MAX 1024

struct efs_multipart; /* opaque */

/* The strings passed to part_begin live in the parser and are valid only
 * during the call. Any callback may be NULL. A callback returning a negative
 * errno stops parsing: efs_multipart_feed returns that value. Callbacks are
 * called in the order part_begin, part_data*, part_end for every part; a
 * part that is cut short by an error or by the end of input gets no
 * part_end. */
struct efs_multipart_callbacks {
	/* A part starts. name is the Content-Disposition "name" (never NULL;
	 * "" if absent), filename its "filename" (NULL when absent;
	 * filename*=UTF-8''... per RFC 5987 wins over filename when both are
	 * given, percent-decoded), content_type the part's Content-Type or
	 * NULL. Return 0 or a negative errno to stop parsing with that error. */
	int (*part_begin)(void *ctx, const char *name, const char *filename,
			  const char *content_type);
	/* A piece of the current part's body (len > 0). */
	int (*part_data)(void *ctx, const char *data, size_t len);
	/* The current part ended (its closing boundary was seen). */
	int (*part_end)(void *ctx);
};

/* Extracts the boundary parameter of a multipart/form-data Content-Type
 * header value (case-insensitive type and parameter name, quoted or bare
 * value, other parameters allowed before/after) into @out, NUL-terminated.
 * 0, or -EINVAL when the type is not multipart/form-data, the parameter
 * list is malformed, the boundary is missing, given twice, empty, longer
 * than 70 characters (RFC 2046), has a character outside printable ASCII,
 * ends in a space, or does not fit @outlen (which needs strlen + 1).
 * @out is untouched on failure. */
int efs_multipart_boundary(const char *content_type, char *out, size_t outlen);

/* Creates a parser for a body delimited by @boundary (as returned by
 * efs_multipart_boundary: 1..70 printable ASCII characters, not ending in a
 * space). @cb is copied; @ctx is passed to every callback. On success *out
 * is the parser, which the caller frees with efs_multipart_free.
 * 0, -EINVAL (bad boundary, NULL cb or out) or -ENOMEM. */
int efs_multipart_new(const char *boundary, const struct efs_multipart_callbacks *cb, void *ctx,
		      struct efs_multipart **out);

/* Feeds the next @len bytes of the body (@data may be NULL when len is 0);
 * any split of the body into feeds gives the same callbacks, apart from
 * how part bodies are cut into part_data pieces. Returns 0, a callback's
 * negative error (returned as is), -EBADMSG for malformed input (a part's
 * headers over EFS_MULTIPART_HEADERS_MAX, a header line without ':', no
 * Content-Disposition: form-data, a malformed Content-Disposition, a name
 * or filename over EFS_MULTIPART_NAME_MAX, more than
 * EFS_MULTIPART_PARTS_MAX parts, junk after a boundary). After an error the
 * parser stays failed: every later feed or finish returns the same error.
 * Bytes after the closing boundary (the epilogue) are ignored. */
int efs_multipart_feed(struct efs_multipart *mp, const char *data, size_t len);

/* The body ended: 0 when the closing boundary ("--boundary--") was seen,
 * else -EBADMSG (or the error the parser already failed with). */
int efs_multipart_finish(struct efs_multipart *mp);

/* Frees the parser. NULL accepted. */
void efs_multipart_free(struct efs_multipart *mp);

/* A short description of why the parser failed, for the JSON error message
 * ("part headers too large", "missing closing boundary", ...; "stopped by a
 * callback" when a callback's error stopped it), or "no error". Never NULL;
 * a static string. */
const char *efs_multipart_error(const struct efs_multipart *mp);

/* For tests and diagnostics: how many input bytes the parser holds right
 * now - a partial header block (at most EFS_MULTIPART_HEADERS_MAX + 1) or
 * held-back body bytes that may start a delimiter (fewer than
 * strlen(boundary) + 4). 0 for NULL. */
size_t efs_multipart_buffered(const struct efs_multipart *mp);

#endif
