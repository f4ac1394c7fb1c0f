/* SPDX-License-Identifier: MIT */
/* range.c - single byte-range parsing. */
#include "echofs/range.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

/* Parses digits at *p into *out, advancing *p. False if none or overflow. */
static int parse_num(const char **p, uint64_t *out)
{
	uint64_t v = 0;
	const char *s = *p;
	if (!isdigit((unsigned char)*s))
		return 0;
	for (; isdigit((unsigned char)*s); s++) {
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return 0;
		v = v * 10 + d;
	}
	*p = s;
	*out = v;
	return 1;
}

static void skip_ws(const char **p)
{
	while (**p == ' ' || **p == '\t')
		(*p)++;
}

/* 1 with the range, 0 (ignore the header) or -ERANGE. */
static int classify(const char *header, uint64_t size, uint64_t *first, uint64_t *last)
{
	uint64_t a = 0, b = 0;
	const char *p = header;

	if (!header)
		return 0;
	skip_ws(&p);
	if (strncasecmp(p, "bytes", 5) != 0)
		return 0;
	p += 5;
	skip_ws(&p);
	if (*p++ != '=')
		return 0;
	skip_ws(&p);
	if (strchr(p, ','))
		return 0; /* several ranges: ignored, the whole body is sent */
	if (*p == '-') {
		p++;
		skip_ws(&p);
		if (!parse_num(&p, &b))
			return 0;
		skip_ws(&p);
		if (*p)
			return 0;
		if (b == 0 || size == 0)
			return -ERANGE;
		*first = b >= size ? 0 : size - b;
		*last = size - 1;
		return 1;
	}
	if (!parse_num(&p, &a))
		return 0;
	skip_ws(&p);
	if (*p++ != '-')
		return 0;
	skip_ws(&p);
	int has_end = parse_num(&p, &b);
	skip_ws(&p);
	if (*p)
		return 0;
	if (has_end && b < a)
		return 0; /* invalid: ignored per RFC 9110 */
	if (a >= size)
		return -ERANGE;
	*first = a;
	*last = has_end ? EFS_MIN(b, size - 1) : size - 1;
	return 1;
}

int efs_range_parse(const char *header, uint64_t size, bool *partial, uint64_t *first,
		    uint64_t *last)
{
	int r = classify(header, size, first, last);
	if (r < 0)
		return r;
	*partial = r == 1;
	return 0;
}
