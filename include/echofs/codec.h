/* SPDX-License-Identifier: MIT */
/* codec.h - how a chunk is stored: gzip through ISA-L's igzip, or as is.
 *
 * A chunk is compressed only when gzip saves at least 10% of its size;
 * otherwise it is stored raw (incompressible data costs one quick attempt,
 * bounded by the 90% output buffer, and nothing on read).
 */
#ifndef ECHOFS_CODEC_H
#define ECHOFS_CODEC_H

#include "echofs/buf.h"
#include "echofs/common.h"

#include <stdbool.h>

/* Compresses @in as gzip into @out (reset first) when the result is at most
 * 90% of @len. Returns 1 when @out holds the gzip data, 0 when the chunk is
 * better stored raw (@out is then empty), or -ENOMEM. */
int efs_codec_encode(const void *in, size_t len, struct efs_buf *out);

/* Decompresses gzip @in into @out (reset first), which must come to exactly
 * @expected_len bytes. 0, -EBADMSG (corrupt data, bad gzip CRC or another
 * length), -E2BIG (over out's cap) or -ENOMEM. */
int efs_codec_decode(const void *in, size_t len, size_t expected_len, struct efs_buf *out);

#endif
