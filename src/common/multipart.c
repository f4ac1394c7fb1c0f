/* SPDX-License-Identifier: MIT */
/* multipart.c - streaming multipart/form-data parser (RFC 7578, RFC 2046).
 *
 * A byte-driven state machine: preamble -> delimiter line -> part headers
 * -> part body -> delimiter line -> ... -> epilogue. Only part headers are
 * kept (in a fixed array); body bytes are passed on as soon as they cannot
 * be the start of the delimiter "\r\n--boundary".
 *
 * The body search relies on the boundary holding no CR (efs_multipart_new
 * accepts printable ASCII only): a '\r' then occurs in the delimiter only
 * at its first byte, so the bytes held back between feeds are always a
 * prefix of the delimiter (no copy is needed, the length says it all), and
 * when the next feed does not continue that prefix, no later byte of it can
 * start a delimiter either, so all of it is body data.
 */
#include "echofs/multipart.h"
#include "echofs/util.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Longest raw (still percent-encoded) filename* value: every decoded byte
 * as %XX plus room for the charset and language. */
#define EXT_RAW_MAX (3 * EFS_MULTIPART_NAME_MAX + 256)
/* "\r\n--" before the boundary. */
#define DELIM_PREFIX_LEN 4
/* Preamble: not at the start of a line, so no delimiter can match. */
#define NO_MATCH SIZE_MAX

enum mp_state {
	ST_PREAMBLE,   /* before the first delimiter */
	ST_DELIM_TAIL, /* right after "--boundary" */
	ST_DELIM_DASH, /* after "--boundary-" */
	ST_DELIM_PAD,  /* in the transport padding after "--boundary" */
	ST_DELIM_LF,   /* after "--boundary" [padding] "\r" */
	ST_HEADERS,    /* reading a part's header block */
	ST_BODY,       /* passing a part's body on */
	ST_EPILOGUE,   /* after the closing delimiter: everything is ignored */
};

struct efs_multipart {
	struct efs_multipart_callbacks cb;
	void *ctx;
	enum mp_state state;
	int err;	 /* 0, or the error the parser failed with */
	const char *msg; /* why it failed (static string) */

	char delim[DELIM_PREFIX_LEN + EFS_MULTIPART_BOUNDARY_MAX + 1]; /* "\r\n--" boundary */
	size_t delim_len;

	size_t match;	     /* preamble: bytes of "--boundary" matched on this line */
	size_t hold_len;     /* body: delim[0, hold_len) ended the data fed so far */
	size_t hold_virtual; /* how many of those are the CRLF implied at body start */
	bool in_part;	     /* part_begin called, part_end not yet */
	unsigned parts;	     /* parts started */

	size_t hdr_len;	   /* bytes in hdr */
	size_t line_start; /* where the current header line starts in hdr */
	/* Header block; one more byte for the '\r' of the blank line, one for a NUL. */
	char hdr[EFS_MULTIPART_HEADERS_MAX + 2];
	char name[EFS_MULTIPART_NAME_MAX + 1];
	char filename[EFS_MULTIPART_NAME_MAX + 1];
	char filename_ext[EFS_MULTIPART_NAME_MAX + 1]; /* filename* decoded */
	char ext_raw[EXT_RAW_MAX + 1];		       /* filename* as sent */
	const char *cur_filename;		       /* what part_begin gets */
	const char *cur_content_type;
};

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_ctl(char c)
{
	unsigned char u = (unsigned char)c;
	return u < 0x20 || u == 0x7f;
}

/* RFC 9110 tchar: the characters of a token. */
static bool is_tchar(char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static const char *skip_ows(const char *s)
{
	while (is_ows(*s))
		s++;
	return s;
}

/* True when s[0, len) equals the literal @lit, ignoring ASCII case. */
static bool ieq(const char *s, size_t len, const char *lit)
{
	return strlen(lit) == len && strncasecmp(s, lit, len) == 0;
}

/* 1..70 printable ASCII characters, the last not a space (RFC 2046 allows
 * fewer characters; these are what can be matched without ambiguity). */
static bool boundary_valid(const char *b, size_t len)
{
	if (len == 0 || len > EFS_MULTIPART_BOUNDARY_MAX || b[len - 1] == ' ')
		return false;
	for (size_t i = 0; i < len; i++)
		if (b[i] < 0x20 || b[i] > 0x7e)
			return false;
	return true;
}

/* Parameter lists (Content-Type, Content-Disposition) ---------------- */

/* Reads the name of the next parameter of a list at *pos:
 * OWS ";" OWS name OWS "=" OWS. Empty parameters (";;") and a trailing ';'
 * are tolerated. Returns 1 with *pos at the value, 0 at the end of the
 * list, -EINVAL when malformed. */
static int param_name(const char **pos, const char **name, size_t *name_len)
{
	const char *s = skip_ows(*pos);
	const char *start;

	if (*s == '\0')
		return 0;
	if (*s != ';')
		return -EINVAL;
	while (*s == ';')
		s = skip_ows(s + 1);
	if (*s == '\0')
		return 0;
	start = s;
	while (is_tchar(*s))
		s++;
	if (s == start)
		return -EINVAL;
	*name = start;
	*name_len = (size_t)(s - start);
	s = skip_ows(s);
	if (*s != '=')
		return -EINVAL;
	*pos = skip_ows(s + 1);
	return 1;
}

/* Reads a parameter value at *pos: a quoted string (backslash escapes the
 * next character) or a bare run of characters other than ';', '"',
 * whitespace and controls. Writes up to @cap bytes of it, unquoted, and a
 * NUL into @dst (cap + 1 bytes; NULL to skip the value) and its full length
 * into *len, which exceeds @cap when it was cut. Only OWS may follow before
 * the next ';'. 0 with *pos after the value, or -EINVAL. */
static int param_value(const char **pos, char *dst, size_t cap, size_t *len)
{
	const char *s = *pos;
	size_t n = 0;

	if (*s == '"') {
		s++;
		for (;;) {
			char c = *s++;
			if (c == '\0')
				return -EINVAL;
			if (c == '"')
				break;
			if (c == '\\') {
				c = *s++;
				if (c == '\0')
					return -EINVAL;
			}
			if (is_ctl(c) && c != '\t')
				return -EINVAL;
			if (dst && n < cap)
				dst[n] = c;
			n++;
		}
	} else {
		for (; *s && *s != ';' && *s != '"' && !is_ows(*s); s++) {
			if (is_ctl(*s))
				return -EINVAL;
			if (dst && n < cap)
				dst[n] = *s;
			n++;
		}
		if (n == 0)
			return -EINVAL;
	}
	s = skip_ows(s);
	if (*s != '\0' && *s != ';')
		return -EINVAL;
	if (dst)
		dst[EFS_MIN(n, cap)] = '\0';
	*pos = s;
	*len = n;
	return 0;
}

int efs_multipart_boundary(const char *content_type, char *out, size_t outlen)
{
	static const char type[] = "multipart/form-data";
	char value[EFS_MULTIPART_BOUNDARY_MAX + 1];
	size_t value_len = 0;
	bool found = false;
	const char *s;
	size_t type_len;

	if (!content_type || !out)
		return -EINVAL;
	s = skip_ows(content_type);
	type_len = strcspn(s, "; \t");
	if (!ieq(s, type_len, type))
		return -EINVAL;
	s += type_len;
	for (;;) {
		const char *name;
		size_t name_len, len;
		bool is_boundary;
		int r = param_name(&s, &name, &name_len);

		if (r < 0)
			return -EINVAL;
		if (r == 0)
			break;
		is_boundary = ieq(name, name_len, "boundary");
		if (is_boundary && found)
			return -EINVAL;
		if (param_value(&s, is_boundary ? value : NULL, sizeof(value) - 1, &len) < 0)
			return -EINVAL;
		if (is_boundary) {
			found = true;
			value_len = len;
		}
	}
	if (!found || !boundary_valid(value, value_len) || value_len >= outlen)
		return -EINVAL;
	memcpy(out, value, value_len + 1);
	return 0;
}

/* Errors and callbacks ------------------------------------------------- */

static int bad(struct efs_multipart *mp, const char *why)
{
	mp->msg = why;
	return -EBADMSG;
}

static int callback_result(struct efs_multipart *mp, int r)
{
	if (r >= 0)
		return 0;
	mp->msg = "stopped by a callback";
	return r;
}

static int emit(struct efs_multipart *mp, const char *data, size_t len)
{
	if (len == 0 || !mp->cb.part_data)
		return 0;
	return callback_result(mp, mp->cb.part_data(mp->ctx, data, len));
}

static int end_part(struct efs_multipart *mp)
{
	if (!mp->in_part)
		return 0;
	mp->in_part = false;
	if (!mp->cb.part_end)
		return 0;
	return callback_result(mp, mp->cb.part_end(mp->ctx));
}

/* Part headers ---------------------------------------------------------- */

/* Decodes an RFC 5987 ext-value (charset "'" [language] "'" value-chars)
 * into filename_ext. UTF-8 must be well formed; ISO-8859-1 is converted to
 * UTF-8; any other charset leaves *used false, so that plain filename
 * applies (RFC 6266 4.3). Decoded controls are refused, as they are in a
 * quoted filename. */
static int decode_filename_ext(struct efs_multipart *mp, const char *raw, size_t raw_len,
			       bool *used)
{
	const char *q1 = memchr(raw, '\'', raw_len);
	const char *q2 = q1 ? memchr(q1 + 1, '\'', raw_len - (size_t)(q1 + 1 - raw)) : NULL;
	const char *s, *end = raw + raw_len;
	unsigned char *out = (unsigned char *)mp->filename_ext;
	size_t n = 0;
	bool latin1;

	*used = false;
	if (!q2)
		return bad(mp, "malformed filename*");
	if (ieq(raw, (size_t)(q1 - raw), "UTF-8"))
		latin1 = false;
	else if (ieq(raw, (size_t)(q1 - raw), "ISO-8859-1"))
		latin1 = true;
	else
		return 0;
	for (s = q2 + 1; s < end; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '%') {
			int hi, lo;
			if (end - s < 3)
				return bad(mp, "malformed filename*");
			hi = efs_hex_value((unsigned char)s[1]);
			lo = efs_hex_value((unsigned char)s[2]);
			if (hi < 0 || lo < 0)
				return bad(mp, "malformed filename*");
			c = (unsigned char)(hi << 4 | lo);
			s += 2;
		}
		if (is_ctl((char)c))
			return bad(mp, "malformed filename*");
		if (latin1 && c >= 0x80) {
			if (n + 2 > EFS_MULTIPART_NAME_MAX)
				return bad(mp, "filename too long");
			out[n++] = (unsigned char)(0xc0 | c >> 6);
			out[n++] = (unsigned char)(0x80 | (c & 0x3f));
			continue;
		}
		if (n + 1 > EFS_MULTIPART_NAME_MAX)
			return bad(mp, "filename too long");
		out[n++] = c;
	}
	out[n] = '\0';
	if (!latin1 && !efs_utf8_valid(out, n))
		return bad(mp, "filename* is not valid UTF-8");
	*used = true;
	return 0;
}

/* Parses the value of Content-Disposition: "form-data" and its parameters
 * name, filename and filename*; others are checked for syntax and ignored.
 * A parameter given twice is refused rather than guessed at. */
static int parse_disposition(struct efs_multipart *mp, const char *value)
{
	size_t type_len = strcspn(value, "; \t");
	const char *s = value + type_len;
	bool have_name = false, have_filename = false, have_ext = false, ext_used = false;
	size_t ext_len = 0;
	int r;

	if (!ieq(value, type_len, "form-data"))
		return bad(mp, "Content-Disposition is not form-data");
	mp->name[0] = '\0';
	for (;;) {
		const char *pname;
		size_t pname_len, len;
		char *dst = NULL;
		size_t cap = 0;
		bool *seen = NULL;
		const char *too_long = NULL;

		r = param_name(&s, &pname, &pname_len);
		if (r < 0)
			return bad(mp, "malformed Content-Disposition");
		if (r == 0)
			break;
		if (ieq(pname, pname_len, "name")) {
			dst = mp->name;
			cap = EFS_MULTIPART_NAME_MAX;
			seen = &have_name;
			too_long = "part name too long";
		} else if (ieq(pname, pname_len, "filename")) {
			dst = mp->filename;
			cap = EFS_MULTIPART_NAME_MAX;
			seen = &have_filename;
			too_long = "filename too long";
		} else if (ieq(pname, pname_len, "filename*")) {
			dst = mp->ext_raw;
			cap = EXT_RAW_MAX;
			seen = &have_ext;
			too_long = "filename too long";
		}
		if (seen && *seen)
			return bad(mp, "duplicate Content-Disposition parameter");
		if (param_value(&s, dst, cap, &len) < 0)
			return bad(mp, "malformed Content-Disposition");
		if (!seen)
			continue;
		*seen = true;
		if (len > cap)
			return bad(mp, too_long);
		if (seen == &have_ext)
			ext_len = len;
	}
	if (have_ext) {
		r = decode_filename_ext(mp, mp->ext_raw, ext_len, &ext_used);
		if (r < 0)
			return r;
	}
	if (ext_used)
		mp->cur_filename = mp->filename_ext;
	else if (have_filename)
		mp->cur_filename = mp->filename;
	else
		mp->cur_filename = NULL;
	return 0;
}

/* Parses the NUL-terminated header line @line in place: checks it, trims
 * the value and points *disposition / *content_type at it. */
static int parse_header_line(struct efs_multipart *mp, char *line, char **disposition,
			     char **content_type)
{
	char *colon = NULL, *name_end, *value, *value_end;

	for (char *c = line; *c; c++) {
		if (is_ctl(*c) && *c != '\t')
			return bad(mp, "invalid character in part headers");
		if (*c == ':' && !colon)
			colon = c;
	}
	if (!colon)
		return bad(mp, "part header line without ':'");
	name_end = colon;
	while (name_end > line && is_ows(name_end[-1]))
		name_end--;
	if (name_end == line)
		return bad(mp, "part header without a name");
	for (char *c = line; c < name_end; c++)
		if (!is_tchar(*c))
			return bad(mp, "invalid part header name");
	value = (char *)skip_ows(colon + 1);
	value_end = value + strlen(value);
	while (value_end > value && is_ows(value_end[-1]))
		value_end--;
	*value_end = '\0';

	if (ieq(line, (size_t)(name_end - line), "Content-Disposition")) {
		if (*disposition)
			return bad(mp, "duplicate Content-Disposition");
		*disposition = value;
	} else if (ieq(line, (size_t)(name_end - line), "Content-Type")) {
		if (*content_type)
			return bad(mp, "duplicate Content-Type");
		*content_type = value;
	}
	return 0;
}

/* Parses the complete header block in hdr (lines ended by '\n', maybe
 * with '\r' before it, the blank line removed). */
static int parse_headers(struct efs_multipart *mp)
{
	char *h = mp->hdr, *end = mp->hdr + mp->hdr_len, *line;
	char *disposition = NULL, *content_type = NULL;
	int r;

	/* A NUL would silently cut a name short: refuse it like other controls. */
	if (memchr(h, '\0', mp->hdr_len))
		return bad(mp, "invalid character in part headers");
	*end = '\0';
	/* Unfold: a line starting with SP/HT continues the one before. */
	if (is_ows(h[0]))
		return bad(mp, "part headers start with a continuation line");
	for (char *c = h; c < end; c++) {
		if (*c == '\n' && is_ows(c[1])) {
			*c = ' ';
			if (c > h && c[-1] == '\r')
				c[-1] = ' ';
		}
	}
	for (line = h; line < end;) {
		char *nl = memchr(line, '\n', (size_t)(end - line));
		char *eol = nl ? nl : end;
		if (eol > line && eol[-1] == '\r')
			eol[-1] = '\0';
		*eol = '\0';
		r = parse_header_line(mp, line, &disposition, &content_type);
		if (r < 0)
			return r;
		line = eol + 1;
	}
	if (!disposition)
		return bad(mp, "part has no Content-Disposition: form-data");
	r = parse_disposition(mp, disposition);
	if (r < 0)
		return r;
	mp->cur_content_type = content_type && *content_type ? content_type : NULL;
	return 0;
}

/* The blank line ended a part's headers: report the part, start its body. */
static int headers_done(struct efs_multipart *mp)
{
	int r = parse_headers(mp);

	if (r < 0)
		return r;
	mp->in_part = true;
	mp->state = ST_BODY;
	/* An implied CRLF lets "--boundary" right at the start of the body
	 * end it: the blank line's CRLF doubles as the delimiter's. */
	mp->hold_len = 2;
	mp->hold_virtual = 2;
	if (!mp->cb.part_begin)
		return 0;
	return callback_result(
	    mp, mp->cb.part_begin(mp->ctx, mp->name, mp->cur_filename, mp->cur_content_type));
}

/* Collects header lines up to the blank line, within the size cap. */
static int read_headers(struct efs_multipart *mp, const char **pos, const char *end)
{
	const char *p = *pos;
	int r = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t chunk = (size_t)((nl ? nl : end) - p);
		size_t line_len;

		/* One byte over the cap is the '\r' of a blank line. */
		if (chunk > EFS_MULTIPART_HEADERS_MAX + 1 - mp->hdr_len) {
			r = bad(mp, "part headers too large");
			goto out;
		}
		memcpy(mp->hdr + mp->hdr_len, p, chunk);
		mp->hdr_len += chunk;
		p += chunk;
		if (!nl)
			break;
		p++;
		line_len = mp->hdr_len - mp->line_start;
		if (line_len == 0 || (line_len == 1 && mp->hdr[mp->line_start] == '\r')) {
			mp->hdr_len = mp->line_start;
			r = headers_done(mp);
			goto out;
		}
		if (mp->hdr_len + 1 > EFS_MULTIPART_HEADERS_MAX) {
			r = bad(mp, "part headers too large");
			goto out;
		}
		mp->hdr[mp->hdr_len++] = '\n';
		mp->line_start = mp->hdr_len;
	}
out:
	*pos = p;
	return r;
}

/* Part bodies and delimiters ---------------------------------------------- */

/* Passes body bytes on up to the delimiter, holding back a possible
 * delimiter prefix at the end of the data. */
static int read_body(struct efs_multipart *mp, const char **pos, const char *end)
{
	const char *data = *pos, *scan = data;
	int r;

	if (mp->hold_len > 0) {
		size_t need = mp->delim_len - mp->hold_len;
		size_t avail = (size_t)(end - data);
		size_t n = EFS_MIN(need, avail);

		if (memcmp(mp->delim + mp->hold_len, data, n) == 0) {
			if (n < need) { /* the data ran out: still a prefix */
				mp->hold_len += n;
				*pos = end;
				return 0;
			}
			mp->hold_len = 0;
			mp->hold_virtual = 0;
			mp->state = ST_DELIM_TAIL;
			*pos = data + n;
			return 0;
		}
		/* Not the delimiter: what was held is body data (see the top). */
		r = emit(mp, mp->delim + mp->hold_virtual, mp->hold_len - mp->hold_virtual);
		mp->hold_len = 0;
		mp->hold_virtual = 0;
		if (r < 0)
			return r;
	}
	for (;;) {
		const char *cr = memchr(scan, '\r', (size_t)(end - scan));
		size_t avail;

		if (!cr) {
			*pos = end;
			return emit(mp, data, (size_t)(end - data));
		}
		avail = (size_t)(end - cr);
		if (avail >= mp->delim_len) {
			if (memcmp(cr, mp->delim, mp->delim_len) == 0) {
				mp->state = ST_DELIM_TAIL;
				*pos = cr + mp->delim_len;
				return emit(mp, data, (size_t)(cr - data));
			}
		} else if (memcmp(cr, mp->delim, avail) == 0) {
			mp->hold_len = avail;
			*pos = end;
			return emit(mp, data, (size_t)(cr - data));
		}
		scan = cr + 1;
	}
}

/* Skips the preamble up to a line starting with "--boundary". */
static void read_preamble(struct efs_multipart *mp, const char **pos, const char *end)
{
	const char *p = *pos;
	const char *dash_boundary = mp->delim + 2;
	size_t dash_boundary_len = mp->delim_len - 2;

	while (p < end) {
		if (mp->match == NO_MATCH) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			if (!nl) {
				p = end;
				break;
			}
			p = nl + 1;
			mp->match = 0;
			continue;
		}
		char c = *p++;
		if (c == dash_boundary[mp->match]) {
			if (++mp->match == dash_boundary_len) {
				mp->state = ST_DELIM_TAIL;
				break;
			}
		} else {
			mp->match = c == '\n' ? 0 : NO_MATCH;
		}
	}
	*pos = p;
}

/* A delimiter line ended with CRLF: the part before it (if any) ended,
 * the next one starts. */
static int next_part(struct efs_multipart *mp)
{
	int r = end_part(mp);

	if (r < 0)
		return r;
	if (++mp->parts > EFS_MULTIPART_PARTS_MAX)
		return bad(mp, "too many parts");
	mp->hdr_len = 0;
	mp->line_start = 0;
	mp->state = ST_HEADERS;
	return 0;
}

/* What follows "--boundary": "--", or transport padding and CRLF. */
static int read_delimiter_line(struct efs_multipart *mp, const char **pos, const char *end)
{
	const char *p = *pos;
	int r = 0;

	while (p < end && r == 0) {
		char c = *p++;

		switch (mp->state) {
		case ST_DELIM_TAIL:
		case ST_DELIM_PAD:
			if (c == '-' && mp->state == ST_DELIM_TAIL)
				mp->state = ST_DELIM_DASH;
			else if (is_ows(c))
				mp->state = ST_DELIM_PAD;
			else if (c == '\r')
				mp->state = ST_DELIM_LF;
			else if (c == '\n')
				r = next_part(mp);
			else
				r = bad(mp, "junk after boundary");
			break;
		case ST_DELIM_DASH:
			if (c != '-') {
				r = bad(mp, "junk after boundary");
				break;
			}
			r = end_part(mp);
			mp->state = ST_EPILOGUE;
			break;
		case ST_DELIM_LF:
			r = c == '\n' ? next_part(mp) : bad(mp, "junk after boundary");
			break;
		default:
			r = bad(mp, "internal state error");
			break;
		}
		if (mp->state == ST_HEADERS || mp->state == ST_EPILOGUE)
			break;
	}
	*pos = p;
	return r;
}

/* Public interface -------------------------------------------------------- */

int efs_multipart_new(const char *boundary, const struct efs_multipart_callbacks *cb, void *ctx,
		      struct efs_multipart **out)
{
	struct efs_multipart *mp;
	size_t len;

	if (!boundary || !cb || !out)
		return -EINVAL;
	len = strnlen(boundary, EFS_MULTIPART_BOUNDARY_MAX + 1);
	if (!boundary_valid(boundary, len))
		return -EINVAL;
	mp = calloc(1, sizeof(*mp));
	if (!mp)
		return -ENOMEM;
	mp->cb = *cb;
	mp->ctx = ctx;
	mp->state = ST_PREAMBLE;
	mp->msg = "no error";
	memcpy(mp->delim, "\r\n--", DELIM_PREFIX_LEN);
	memcpy(mp->delim + DELIM_PREFIX_LEN, boundary, len);
	mp->delim_len = DELIM_PREFIX_LEN + len;
	mp->delim[mp->delim_len] = '\0';
	mp->match = 0; /* the body starts at the start of a line */
	*out = mp;
	return 0;
}

int efs_multipart_feed(struct efs_multipart *mp, const char *data, size_t len)
{
	const char *p, *end;
	int r = 0;

	if (!mp || (!data && len))
		return -EINVAL;
	if (mp->err)
		return mp->err;
	if (len == 0)
		return 0;
	p = data;
	end = data + len;
	while (p < end && r == 0) {
		switch (mp->state) {
		case ST_PREAMBLE:
			read_preamble(mp, &p, end);
			break;
		case ST_DELIM_TAIL:
		case ST_DELIM_DASH:
		case ST_DELIM_PAD:
		case ST_DELIM_LF:
			r = read_delimiter_line(mp, &p, end);
			break;
		case ST_HEADERS:
			r = read_headers(mp, &p, end);
			break;
		case ST_BODY:
			r = read_body(mp, &p, end);
			break;
		case ST_EPILOGUE:
			p = end;
			break;
		}
	}
	if (r < 0)
		mp->err = r;
	return r;
}

int efs_multipart_finish(struct efs_multipart *mp)
{
	if (!mp)
		return -EINVAL;
	if (mp->err)
		return mp->err;
	if (mp->state == ST_EPILOGUE)
		return 0;
	mp->err = bad(mp, mp->state == ST_PREAMBLE ? "no multipart boundary found"
						   : "missing closing boundary");
	return mp->err;
}

void efs_multipart_free(struct efs_multipart *mp)
{
	free(mp);
}

const char *efs_multipart_error(const struct efs_multipart *mp)
{
	if (!mp || !mp->err)
		return "no error";
	return mp->msg;
}

size_t efs_multipart_buffered(const struct efs_multipart *mp)
{
	if (!mp)
		return 0;
	if (mp->state == ST_HEADERS)
		return mp->hdr_len;
	if (mp->state == ST_BODY)
		return mp->hold_len - mp->hold_virtual;
	return 0;
}
