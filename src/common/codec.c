/* SPDX-License-Identifier: MIT */
/* codec.c - gzip encode/decode of whole chunks through ISA-L (stateless).
 *
 * The deflate state (an ~80 KiB stream and the ~276 KiB level-1 buffer) is
 * allocated once per thread and kept until the thread exits, instead of
 * once per encode: a 4 KiB upload would otherwise pay for mapping,
 * zeroing and faulting in far more memory than its body. */
#include "echofs/codec.h"
#include "echofs/hash.h"

#include <isa-l/igzip_lib.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

/* Level 1 with its large history buffer: about 15x zlib -6's speed on
 * text, and a ratio close to it. */
#define CODEC_LEVEL 1
#define CODEC_LEVEL_BUF ISAL_DEF_LVL1_DEFAULT

/* efs_codec_encode_hash feeds the hash and the deflate pieces of this
 * size in turn: small enough that deflate reads bytes the hash has just
 * brought into the L1/L2 cache (a 1 MiB chunk hashed whole is not in L2
 * any more when deflate starts), large enough that the per-call cost of
 * stateful deflate does not show. bench/codec_bench: 64 KiB pieces take
 * ~6% less CPU than the two passes over the whole chunk, 16 KiB no more. */
#define HASH_PIECE (64 * 1024)

/* The sample test (efs_codec_worth_trying): SAMPLE_COUNT pieces of
 * SAMPLE_LEN bytes spread evenly from the first byte to the last, each
 * deflated on its own at level 0 (no level buffer to set up). The full
 * attempt is made when they come to at most SAMPLE_WORTH_PERCENT of
 * their size. Small pieces compress worse than the whole chunk does (a
 * fresh dictionary each), so "any saving at all" is the right bar: text
 * comes to ~40%, random data to 100%. A chunk whose compressible part is
 * small enough to fall between the samples (under ~1/16 of it) would not
 * save 10% anyway. */
#define SAMPLE_FROM (256 * 1024) /* shorter chunks: tried whole (see below) */
#define SAMPLE_COUNT 16
#define SAMPLE_LEN 4096
#define SAMPLE_WORTH_PERCENT 97

/* Level 0 codes with ISA-L's default table, trained on typical data (a
 * byte costs 5 to 11 bits, about 9.8 for random ones, after a 109-byte
 * header), not with the sample's own: bytes drawn from a small alphabet
 * without repeats (hex digits, base64, which level 1's own tables code in
 * 4 and 6 bits) did not shrink in the samples, and whole 1 MiB chunks of
 * them that deflate to 54% and 75% were stored raw. So when the samples
 * do not shrink, the first HISTOGRAM_LEN bytes of each are counted too,
 * and the chunk is tried when their order-0 entropy is at most
 * HISTOGRAM_WORTH_PERCENT of 8 bits a byte (Huffman coding alone would
 * then save about 10%, its tables aside). Random data comes to ~99.9%. */
#define HISTOGRAM_LEN 1024
#define HISTOGRAM_WORTH_PERCENT 88

/* A chunk of at most SAMPLE_LEN bytes (every 4 KiB upload) is judged
 * whole and cautiously, so that no chunk level 1 would save 10% of is
 * left raw: tried when its own entropy is at most SMALL_WORTH_PERCENT of
 * 8 bits, or when the standard static code (8 or 9 bits a byte, no
 * header: unlike the default table it does not penalise high bytes)
 * shrinks it at all, which repeats of about 6% of it already do. */
#define SMALL_WORTH_PERCENT 95

/* One thread's deflate state, reused by each of its encodes. */
struct encoder {
	struct isal_zstream stream;
	unsigned char level_buf[CODEC_LEVEL_BUF];
};

/* Deflated size of @n bytes (at most SAMPLE_LEN) at level 0, with the
 * default table or (@static_code) the standard static one; @n when they
 * do not shrink. @stream is zeroed once by the caller and reused, or a
 * thread encoder's: the init resets what a stateless call uses (clearing
 * the 80 KiB struct for each sample would cost more than deflating it),
 * and every public field such a call reads is set here. */
static size_t sample_size(struct isal_zstream *stream, const unsigned char *in, size_t n,
			  bool static_code)
{
	unsigned char out[SAMPLE_LEN];

	isal_deflate_stateless_init(stream);
	if (static_code && isal_deflate_set_hufftables(stream, NULL, IGZIP_HUFFTABLE_STATIC) != 0)
		return n;
	stream->next_in = (uint8_t *)in;
	stream->avail_in = (uint32_t)n;
	stream->next_out = out;
	stream->avail_out = (uint32_t)n; /* no room for more: it did not shrink */
	stream->end_of_stream = 1;
	stream->flush = NO_FLUSH;
	stream->gzip_flag = 0;
	stream->hist_bits = 0;
	stream->level = 0;
	stream->level_buf = NULL;
	stream->level_buf_size = 0;
	int r = isal_deflate_stateless(stream);
	if (r != COMP_OK || stream->avail_in != 0)
		return n;
	return EFS_MIN(stream->total_out, n);
}

/* Where sample @k (0 .. SAMPLE_COUNT - 1) of a chunk of @len bytes
 * (at least SAMPLE_LEN) begins: evenly spread, the last one ending on
 * its last byte. */
static const unsigned char *sample_at(const unsigned char *bytes, size_t len, size_t k)
{
	return bytes + k * (len - SAMPLE_LEN) / (SAMPLE_COUNT - 1);
}

/* Whether @n bytes counted in @count have an order-0 entropy of at most
 * @percent of 8 bits a byte. */
static bool skewed(const uint32_t count[256], size_t n, unsigned percent)
{
	double bits = 0;
	for (size_t b = 0; b < 256; b++)
		if (count[b])
			bits -= count[b] * log2((double)count[b] / (double)n);
	return bits <= (double)n * 8 * percent / 100;
}

/* Whether the bytes the samples start with are skewed enough that
 * Huffman coding alone would save about 10% (see HISTOGRAM_LEN). */
static bool skewed_samples(const unsigned char *bytes, size_t len)
{
	uint32_t count[256] = {0};

	for (size_t k = 0; k < SAMPLE_COUNT; k++) {
		const unsigned char *p = sample_at(bytes, len, k);
		for (size_t i = 0; i < HISTOGRAM_LEN; i++)
			count[p[i]]++;
	}
	return skewed(count, (size_t)SAMPLE_COUNT * HISTOGRAM_LEN, HISTOGRAM_WORTH_PERCENT);
}

static struct encoder *thread_encoder(void);

/* See SMALL_WORTH_PERCENT: the bytes counted first (skewed: tried), then
 * deflated at level 0 with the static code (shrinks: tried). An encode of
 * 4 KiB of random bytes, stored raw after both, takes about 11 us, where
 * with the failed level-1 attempt it took 17 (docs/PERFORMANCE.md,
 * "Pipelined upload and sampled compression"). */
static bool small_worth_trying(const unsigned char *bytes, size_t len)
{
	uint32_t count[256] = {0};
	struct encoder *e;

	for (size_t i = 0; i < len; i++)
		count[bytes[i]]++;
	if (skewed(count, len, SMALL_WORTH_PERCENT))
		return true;
	/* Out of memory: tried, and the encode reports it. */
	if (!(e = thread_encoder()))
		return true;
	return sample_size(&e->stream, bytes, len, true) < len;
}

bool efs_codec_worth_trying(const void *in, size_t len)
{
	const size_t bar = (size_t)SAMPLE_COUNT * SAMPLE_LEN * SAMPLE_WORTH_PERCENT / 100;
	struct isal_zstream stream;
	const unsigned char *bytes = in;
	size_t total = 0;

	if (len <= SAMPLE_LEN)
		return len == 0 || small_worth_trying(bytes, len);
	if (len < SAMPLE_FROM)
		return true;
	/* Zeroed only here: a chunk under SAMPLE_FROM never comes here, and
	 * a small one's test uses its thread's encoder instead. */
	memset(&stream, 0, sizeof(stream));
	for (size_t k = 0; k < SAMPLE_COUNT; k++) {
		total += sample_size(&stream, sample_at(bytes, len, k), SAMPLE_LEN, false);
		/* Decided once even incompressible samples from here on could
		 * not lift the total over the bar: text stops after one. */
		if (total + (SAMPLE_COUNT - 1 - k) * SAMPLE_LEN <= bar)
			return true;
	}
	return total <= bar || skewed_samples(bytes, len);
}

/* Process-wide on purpose: a pthread key names per-thread storage, so it
 * is created once per process (pthread_once) and holds no state of any
 * master or worker, only each thread's own scratch encoder. */
static pthread_key_t encoder_key;
static pthread_once_t encoder_once = PTHREAD_ONCE_INIT;
static int encoder_key_error;

static void encoder_key_create(void)
{
	encoder_key_error = pthread_key_create(&encoder_key, free);
}

/* The calling thread's encoder, made (zeroed) on its first use and freed
 * when the thread exits; NULL when out of memory. */
static struct encoder *thread_encoder(void)
{
	struct encoder *e;

	pthread_once(&encoder_once, encoder_key_create);
	if (encoder_key_error)
		return NULL;
	if ((e = pthread_getspecific(encoder_key)))
		return e;
	if (!(e = calloc(1, sizeof(*e))))
		return NULL;
	if (pthread_setspecific(encoder_key, e) != 0) {
		free(e);
		return NULL;
	}
	return e;
}

/* Sets every public field of @stream that a level-1 gzip of @len bytes
 * into @out (at most @limit bytes) reads, for stateless (@stateless) or
 * stateful use. The init resets what a call reads of the internal state,
 * and the call starts its level buffer's hash tables afresh (the output
 * depends on the input only: test_codec checks it against a fresh
 * thread's); hist_bits too is set here, which init leaves alone. */
static void stream_start(struct encoder *e, bool stateless, const void *in, size_t len,
			 struct efs_buf *out, size_t limit)
{
	struct isal_zstream *stream = &e->stream;

	if (stateless)
		isal_deflate_stateless_init(stream);
	else
		isal_deflate_init(stream);
	stream->next_in = (uint8_t *)in;
	stream->avail_in = (uint32_t)len;
	stream->next_out = (uint8_t *)out->data;
	stream->avail_out = (uint32_t)limit;
	stream->end_of_stream = 1;
	stream->flush = NO_FLUSH;
	stream->gzip_flag = IGZIP_GZIP;
	stream->hist_bits = 0;
	stream->level = CODEC_LEVEL;
	stream->level_buf = e->level_buf;
	stream->level_buf_size = CODEC_LEVEL_BUF;
}

/* Resets @out and decides whether @in (@len bytes) is worth deflating
 * into at most @limit bytes: 1 with the thread's encoder in *@e and room
 * reserved in @out, 0 when it is stored raw (too small or large, the
 * sample does not compress, @limit over @out's cap), or -errno. */
static int encode_begin(const void *in, size_t len, size_t limit, struct efs_buf *out,
			struct encoder **e)
{
	int r;
	efs_buf_reset(out);
	if (len < 64 || len > UINT32_MAX || !efs_codec_worth_trying(in, len))
		return 0;
	if ((r = efs_buf_reserve(out, limit)) == -E2BIG)
		return 0;
	if (r < 0)
		return r;
	if (!(*e = thread_encoder()))
		return -ENOMEM;
	return 1;
}

int efs_codec_encode(const void *in, size_t len, struct efs_buf *out, bool *gzip)
{
	size_t limit = len - len / 10; /* must save at least 10% */
	struct encoder *e;
	int r;

	if ((r = encode_begin(in, len, limit, out, &e)) < 0)
		return r;
	if (r == 0)
		goto raw;
	struct isal_zstream *stream = &e->stream;
	stream_start(e, true, in, len, out, limit);
	r = isal_deflate_stateless(stream);
	if (r != COMP_OK || stream->avail_in != 0)
		goto raw; /* STATELESS_OVERFLOW: saves less than 10% */
	out->len = stream->total_out;
	out->data[out->len] = '\0';
	*gzip = true;
	return 0;
raw:
	efs_buf_reset(out);
	*gzip = false;
	return 0;
}

int efs_codec_encode_hash(const void *in, size_t len, struct efs_buf *out, bool *gzip,
			  char sha256_hex[EFS_SHA256_HEX_LEN + 1])
{
	const unsigned char *bytes = in;
	size_t limit = len - len / 10; /* must save at least 10% */
	size_t hashed = 0;
	struct efs_sha256 hash;
	struct encoder *e;
	bool deflated = false;
	int r;

	if ((r = encode_begin(in, len, limit, out, &e)) < 0)
		return r;
	if (r == 0)
		goto raw;
	if ((r = efs_sha256_init(&hash)) < 0)
		return r;
	struct isal_zstream *stream = &e->stream;
	stream_start(e, false, in, 0, out, limit);
	/* Stateful deflate, fed HASH_PIECE bytes at a time, each hashed
	 * first. It stops taking input when the output reaches the limit
	 * (a chunk that would save less than 10%): stored raw then, and the
	 * rest hashed on its own. */
	while (hashed < len) {
		size_t n = EFS_MIN((size_t)HASH_PIECE, len - hashed);
		efs_sha256_update(&hash, bytes + hashed, n);
		stream->next_in = (uint8_t *)bytes + hashed;
		stream->avail_in = (uint32_t)n;
		stream->end_of_stream = hashed + n == len;
		hashed += n;
		if (isal_deflate(stream) != COMP_OK || stream->avail_in != 0)
			break;
	}
	deflated =
	    hashed == len && stream->avail_in == 0 && stream->internal_state.state == ZSTATE_END;
	if (hashed < len)
		efs_sha256_update(&hash, bytes + hashed, len - hashed);
	efs_sha256_final_hex(&hash, sha256_hex);
	if (!deflated) {
		efs_buf_reset(out);
		*gzip = false;
		return 0;
	}
	out->len = stream->total_out;
	out->data[out->len] = '\0';
	*gzip = true;
	return 0;
raw:
	/* Nothing deflated: the hash is the only pass. */
	efs_sha256_hex(in, len, sha256_hex);
	efs_buf_reset(out);
	*gzip = false;
	return 0;
}

int efs_codec_decode(const void *in, size_t len, size_t expected_len, struct efs_buf *out)
{
	struct inflate_state state = {0};
	int r;

	efs_buf_reset(out);
	if (len > UINT32_MAX || expected_len > UINT32_MAX)
		return -EBADMSG;
	/* The buffer always has a spare byte (for the NUL): it catches output
	 * longer than expected. */
	if ((r = efs_buf_reserve(out, expected_len)) < 0)
		return r;
	isal_inflate_init(&state);
	state.next_in = (uint8_t *)in;
	state.avail_in = (uint32_t)len;
	state.next_out = (uint8_t *)out->data;
	state.avail_out = (uint32_t)expected_len + 1;
	state.crc_flag = ISAL_GZIP;
	r = isal_inflate_stateless(&state);
	/* ISAL_END_INPUT means the input stopped early: a truncated stream,
	 * its CRC never checked. */
	if (r != ISAL_DECOMP_OK || state.total_out != expected_len)
		return -EBADMSG;
	out->len = expected_len;
	out->data[out->len] = '\0';
	return 0;
}
