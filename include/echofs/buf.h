/* SPDX-License-Identifier: MIT */
/* buf.h - a growable byte buffer with a hard cap (after curl's dynbuf).
 *
 * The data is always NUL-terminated (the NUL is not counted in len), so a
 * buffer holding text can be passed to string functions. Growing past the
 * cap fails with -E2BIG and leaves the buffer as it was.
 */
#ifndef ECHOFS_BUF_H
#define ECHOFS_BUF_H

#include "echofs/common.h"

#include <stdarg.h>
#include <stddef.h>

struct efs_buf {
	char *data;   /* NULL until the first append */
	size_t len;   /* bytes held, excluding the trailing NUL */
	size_t alloc; /* bytes allocated */
	size_t cap;   /* most bytes it may ever hold */
};

/* Sets up an empty buffer that will never hold more than @cap bytes. */
void efs_buf_init(struct efs_buf *b, size_t cap);
/* Frees what the buffer holds; it is empty (and reusable) afterwards. */
void efs_buf_release(struct efs_buf *b);
/* Empties the buffer, keeping its allocation. */
void efs_buf_reset(struct efs_buf *b);
/* Makes room for @extra more bytes. 0, -E2BIG or -ENOMEM. */
int efs_buf_reserve(struct efs_buf *b, size_t extra);
/* Appends @len bytes. 0, -E2BIG or -ENOMEM. */
int efs_buf_append(struct efs_buf *b, const void *data, size_t len);
/* Appends a NUL-terminated string. 0, -E2BIG or -ENOMEM. */
int efs_buf_puts(struct efs_buf *b, const char *s);
/* Appends formatted text. 0, -E2BIG or -ENOMEM. */
int efs_buf_printf(struct efs_buf *b, const char *fmt, ...) EFS_PRINTF(2, 3);
int efs_buf_vprintf(struct efs_buf *b, const char *fmt, va_list ap);
/* Hands the data to the caller (who frees it) and empties the buffer.
 * Returns an empty string when nothing was appended; NULL on ENOMEM. */
char *efs_buf_detach(struct efs_buf *b);

#endif
