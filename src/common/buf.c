/* SPDX-License-Identifier: MIT */
/* buf.c - growable byte buffer with a hard cap. */
#include "echofs/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void efs_buf_init(struct efs_buf *b, size_t cap)
{
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
	b->cap = cap;
}

void efs_buf_release(struct efs_buf *b)
{
	if (!b)
		return;
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
}

void efs_buf_reset(struct efs_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

int efs_buf_reserve(struct efs_buf *b, size_t extra)
{
	if (extra > b->cap || b->len > b->cap - extra)
		return -E2BIG;
	size_t need = b->len + extra + 1;
	if (need <= b->alloc)
		return 0;
	size_t grow = b->alloc ? b->alloc : 256;
	while (grow < need)
		grow = grow > SIZE_MAX / 2 ? need : grow * 2;
	if (b->cap < SIZE_MAX && grow > b->cap + 1)
		grow = b->cap + 1;
	char *p = realloc(b->data, grow);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->alloc = grow;
	return 0;
}

int efs_buf_append(struct efs_buf *b, const void *data, size_t len)
{
	int r = efs_buf_reserve(b, len);
	if (r < 0)
		return r;
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

int efs_buf_puts(struct efs_buf *b, const char *s)
{
	return efs_buf_append(b, s, strlen(s));
}

int efs_buf_vprintf(struct efs_buf *b, const char *fmt, va_list ap)
{
	va_list copy;
	va_copy(copy, ap);
	int n = vsnprintf(NULL, 0, fmt, copy);
	va_end(copy);
	if (n < 0)
		return -EINVAL;
	int r = efs_buf_reserve(b, (size_t)n);
	if (r < 0)
		return r;
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int efs_buf_printf(struct efs_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = efs_buf_vprintf(b, fmt, ap);
	va_end(ap);
	return r;
}

char *efs_buf_detach(struct efs_buf *b)
{
	char *p = b->data;
	if (!p)
		p = calloc(1, 1);
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
	return p;
}
