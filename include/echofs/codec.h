/* SPDX-License-Identifier: MIT */
/* codec.h - how a chunk is stored: gzip through ISA-L's igzip, or as is.
 *
 * A chunk is compressed only when gzip saves at least 10% of its size;
 * otherwise it is stored raw. Chunks of 256 KiB and more are sampled
 * first (16 pieces of 4 KiB spread over the chunk, ~6% of its bytes):
 * when no sample shrinks, the chunk is stored raw without deflating it
 * whole, so incompressible data costs little. Otherwise the whole chunk
 * is deflated into an output buffer of 90% of its size, and the attempt
 * ends as soon as that overflows. The samples miss redundancy that no
 * 4 KiB piece shows on its own (a random block repeated every 16 KiB, say,
 * which gzip's 32 KiB window would find): such a chunk is stored raw.
 */
#ifndef ECHOFS_CODEC_H
#define ECHOFS_CODEC_H

#include "echofs/buf.h"
#include "echofs/common.h"
#include "echofs/hash.h"

#include <stdbool.h>

/* Compresses @in as gzip into @out (reset first) when the result is at most
 * 90% of @len. Returns 0 with *gzip true when @out holds the gzip data, or
 * false when the chunk is better stored raw (@out is then empty; also when
 * the samples showed it incompressible); or -ENOMEM (*gzip untouched).
 * Thread-safe: each calling thread keeps its own deflate state (about
 * 360 KiB, allocated by its first encode that deflates or tests a chunk
 * of at most 4 KiB, and freed when the thread exits). */
int efs_codec_encode(const void *in, size_t len, struct efs_buf *out, bool *gzip);

/* efs_codec_encode, and the SHA-256 of @in (its chunk id) into
 * @sha256_hex in the same pass over the bytes: each 64 KiB piece is hashed
 * just before it is deflated, while it is in cache, instead of two passes
 * over the whole chunk (stateful deflate: the gzip bytes may differ from
 * efs_codec_encode's, but they decode to @in alike, and equal inputs give
 * equal outputs). Stored raw under the same rules; @sha256_hex is set
 * whenever 0 is returned. -ENOMEM: *gzip and @sha256_hex untouched. */
int efs_codec_encode_hash(const void *in, size_t len, struct efs_buf *out, bool *gzip,
			  char sha256_hex[EFS_SHA256_HEX_LEN + 1]);

/* The test before the full attempt, alone: false (encode then stores the
 * chunk raw at once) when @len is at least 256 KiB, none of the samples
 * of @in shrinks under deflate and their bytes are not skewed enough for
 * Huffman coding alone to save about 10%; or when @len is 1 to 4096, the
 * bytes' entropy is over 95% of 8 bits and the static code does not
 * shrink them (it then makes the calling thread's deflate state, as an
 * encode would); true otherwise. */
bool efs_codec_worth_trying(const void *in, size_t len);

/* Decompresses gzip @in into @out (reset first), which must come to exactly
 * @expected_len bytes. 0, -EBADMSG (corrupt data, bad gzip CRC or another
 * length), -E2BIG (over out's cap) or -ENOMEM. */
int efs_codec_decode(const void *in, size_t len, size_t expected_len, struct efs_buf *out);

#endif
