/* SPDX-License-Identifier: MIT */
/* range.h - the HTTP Range header (RFC 9110 section 14), single ranges. */
#ifndef ECHOFS_RANGE_H
#define ECHOFS_RANGE_H

#include "echofs/common.h"

#include <stdbool.h>
#include <stdint.h>

/* Interprets a Range header value for a representation of @size bytes.
 * Returns:
 *   0        with *partial true: a single satisfiable range, [*first,
 *            *last] (inclusive);
 *   0        with *partial false: no usable range (absent, another unit,
 *            several ranges, malformed): send the whole representation
 *            with 200; *first and *last untouched;
 *   -ERANGE  a well-formed single range that is unsatisfiable: 416; the
 *            out-parameters untouched.
 * "bytes=a-b" (b clamped to size-1), "bytes=a-", "bytes=-n" (the last n
 * bytes). */
int efs_range_parse(const char *header, uint64_t size, bool *partial, uint64_t *first,
		    uint64_t *last);

#endif
