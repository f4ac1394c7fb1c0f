/* SPDX-License-Identifier: MIT */
/* codec_bench.c - what each pass over an uploaded byte costs the master,
 * on one thread, for the "Large text upload" section of
 * docs/PERFORMANCE.md.
 *
 * Reads FILE (e.g. `build/bench/loadgen gen --kind text --size 67108864`),
 * cuts it into 1 MiB chunks (the default CHUNK_SIZE) and measures, per MiB
 * of input, the thread's CPU time (CLOCK_THREAD_CPUTIME_ID, so a busy
 * machine slows the figures less than wall time would) of:
 *
 *   memcpy         the feeding thread's copy into the chunk buffer
 *   sha256         one SHA-256 of each chunk (efs_sha256_hex); the master
 *                  makes two passes: the chunk id and the file hash
 *   encode         efs_codec_encode: the sample test and ISA-L level 1,
 *                  what the master does to each chunk
 *   sha+encode     the two one after the other, as a helper thread did
 *                  before efs_codec_encode_hash
 *   encode_hash    efs_codec_encode_hash: the chunk's SHA-256 and a
 *                  stateful level-1 deflate fed the same 64 KiB pieces in
 *                  turn, so that deflate reads bytes the hash has just
 *                  brought into cache (what a helper thread does now)
 *   fused 16K, fused 256K
 *                  the same with other piece sizes
 *   L0, L1 small, L1 xl, L1 hist 14, L2
 *                  other ISA-L settings, stateless, whole chunk, with the
 *                  compression ratio each gives
 *
 * Rounds alternate the stages so that each sees the same machine state;
 * each figure is the median of --runs rounds (of an even count, the mean of
 * the two middle rounds). Not a test: it asserts
 * nothing about speed.
 *
 *   make -C bench codec_bench            (needs `make` at the top first)
 *   build/bench/codec_bench [--runs N] FILE
 */
#include "echofs/buf.h"
#include "echofs/codec.h"
#include "echofs/hash.h"
#include "echofs/util.h"

#include <isa-l/igzip_lib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHUNK (1024 * 1024)
#define INPUT_CAP (256u * CHUNK)
#define MAX_RUNS 15

enum stage {
	MEMCPY,
	SHA,
	ENCODE,
	SHA_ENCODE,
	ENCODE_HASH,
	FUSED_16K,
	FUSED_256K,
	L0,
	L1_SMALL,
	L1_XL,
	L1_HIST14,
	L2,
	STAGES
};
static const char *const stage_names[STAGES] = {
    "memcpy",	  "sha256", "encode",	"sha+encode", "encode_hash", "fused 16K",
    "fused 256K", "L0",	    "L1 small", "L1 xl",      "L1 hist 14",  "L2",
};

static unsigned char level_buf[ISAL_DEF_LVL1_EXTRA_LARGE > ISAL_DEF_LVL2_DEFAULT
				   ? ISAL_DEF_LVL1_EXTRA_LARGE
				   : ISAL_DEF_LVL2_DEFAULT];

static double thread_seconds(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Stateless gzip of @len bytes at @level; the compressed size, or 0 when
 * it does not fit in @cap. */
static size_t deflate_once(const unsigned char *in, size_t len, unsigned char *out, size_t cap,
			   int level, uint32_t buf_size, uint16_t hist_bits)
{
	struct isal_zstream s;

	memset(&s, 0, sizeof(s));
	isal_deflate_stateless_init(&s);
	s.next_in = (uint8_t *)in;
	s.avail_in = (uint32_t)len;
	s.next_out = out;
	s.avail_out = (uint32_t)cap;
	s.end_of_stream = 1;
	s.flush = NO_FLUSH;
	s.gzip_flag = IGZIP_GZIP;
	s.hist_bits = hist_bits;
	s.level = (uint32_t)level;
	s.level_buf = buf_size ? level_buf : NULL;
	s.level_buf_size = buf_size;
	if (isal_deflate_stateless(&s) != COMP_OK || s.avail_in != 0)
		return 0;
	return s.total_out;
}

/* efs_codec_encode_hash's way with @piece bytes at a time: SHA-256 and a
 * stateful level-1 deflate fed the same pieces in turn. The compressed
 * size, or 0 on overflow. */
static size_t fused(const unsigned char *in, size_t len, unsigned char *out, size_t cap,
		    size_t piece, char hex[EFS_SHA256_HEX_LEN + 1])
{
	struct isal_zstream s;
	struct efs_sha256 h;

	if (efs_sha256_init(&h) < 0)
		return 0;
	memset(&s, 0, sizeof(s));
	isal_deflate_init(&s);
	s.level = 1;
	s.level_buf = level_buf;
	s.level_buf_size = ISAL_DEF_LVL1_DEFAULT;
	s.gzip_flag = IGZIP_GZIP;
	s.next_out = out;
	s.avail_out = (uint32_t)cap;
	for (size_t off = 0; off < len; off += piece) {
		size_t n = EFS_MIN(piece, len - off);
		efs_sha256_update(&h, in + off, n);
		s.next_in = (uint8_t *)in + off;
		s.avail_in = (uint32_t)n;
		s.end_of_stream = off + n == len;
		s.flush = NO_FLUSH;
		if (isal_deflate(&s) != COMP_OK) {
			efs_sha256_release(&h);
			return 0;
		}
	}
	efs_sha256_final_hex(&h, hex);
	return s.internal_state.state == ZSTATE_END ? s.total_out : 0;
}

/* One pass of @stage over every chunk; the bytes it produced (0 for the
 * stages that produce none) into *@produced. */
static double run_stage(enum stage st, const unsigned char *in, size_t len, unsigned char *out,
			struct efs_buf *encoded, size_t *produced)
{
	char hex[EFS_SHA256_HEX_LEN + 1];
	double t0 = thread_seconds();
	size_t total = 0;
	bool gzip;

	for (size_t off = 0; off + CHUNK <= len; off += CHUNK) {
		const unsigned char *c = in + off;
		switch (st) {
		case MEMCPY:
			memcpy(out, c, CHUNK);
			break;
		case SHA:
			efs_sha256_hex(c, CHUNK, hex);
			break;
		case SHA_ENCODE:
			efs_sha256_hex(c, CHUNK, hex);
			/* fall through */
		case ENCODE:
			if (efs_codec_encode(c, CHUNK, encoded, &gzip) < 0)
				return -1;
			total += gzip ? encoded->len : CHUNK;
			break;
		case ENCODE_HASH:
			if (efs_codec_encode_hash(c, CHUNK, encoded, &gzip, hex) < 0)
				return -1;
			total += gzip ? encoded->len : CHUNK;
			break;
		case FUSED_16K:
			total += fused(c, CHUNK, out, 2 * CHUNK, 16 * 1024, hex);
			break;
		case FUSED_256K:
			total += fused(c, CHUNK, out, 2 * CHUNK, 256 * 1024, hex);
			break;
		case L0:
			total += deflate_once(c, CHUNK, out, 2 * CHUNK, 0, 0, 0);
			break;
		case L1_SMALL:
			total += deflate_once(c, CHUNK, out, 2 * CHUNK, 1, ISAL_DEF_LVL1_SMALL, 0);
			break;
		case L1_XL:
			total +=
			    deflate_once(c, CHUNK, out, 2 * CHUNK, 1, ISAL_DEF_LVL1_EXTRA_LARGE, 0);
			break;
		case L1_HIST14:
			total +=
			    deflate_once(c, CHUNK, out, 2 * CHUNK, 1, ISAL_DEF_LVL1_DEFAULT, 14);
			break;
		case L2:
			total +=
			    deflate_once(c, CHUNK, out, 2 * CHUNK, 2, ISAL_DEF_LVL2_DEFAULT, 0);
			break;
		case STAGES:
			break;
		}
	}
	*produced = total;
	return thread_seconds() - t0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	static double samples[STAGES][MAX_RUNS];
	size_t produced[STAGES] = {0};
	struct efs_buf encoded;
	unsigned char *in = NULL, *out = NULL;
	int runs = 5, argi = 1, rc = 1;
	size_t len = 0;
	FILE *f = NULL;

	if (argc > 2 && strcmp(argv[1], "--runs") == 0) {
		runs = (int)strtol(argv[2], NULL, 10);
		argi = 3;
	}
	if (argi != argc - 1 || runs < 1 || runs > MAX_RUNS) {
		fprintf(stderr, "usage: codec_bench [--runs 1..%d] FILE\n", MAX_RUNS);
		return 2;
	}
	efs_buf_init(&encoded, CHUNK);
	if (!(in = malloc(INPUT_CAP)) || !(out = malloc(2 * CHUNK))) {
		fprintf(stderr, "codec_bench: out of memory\n");
		goto out;
	}
	if (!(f = fopen(argv[argi], "rb"))) {
		perror(argv[argi]);
		goto out;
	}
	len = fread(in, 1, INPUT_CAP, f) / CHUNK * CHUNK;
	if (len == 0) {
		fprintf(stderr, "codec_bench: %s holds less than one 1 MiB chunk\n", argv[argi]);
		goto out;
	}
	for (int r = 0; r < runs; r++)
		for (int st = 0; st < STAGES; st++)
			if ((samples[st][r] =
				 run_stage(st, in, len, out, &encoded, &produced[st])) < 0) {
				fprintf(stderr, "codec_bench: out of memory\n");
				goto out;
			}
	printf("%zu MiB in 1 MiB chunks, median of %d rounds, one thread's CPU\n", len / CHUNK,
	       runs);
	printf("%-12s %10s %8s\n", "stage", "ms/MiB", "ratio");
	for (int st = 0; st < STAGES; st++) {
		qsort(samples[st], (size_t)runs, sizeof(double), cmp_double);
		double mid = runs % 2 ? samples[st][runs / 2]
				      : (samples[st][runs / 2 - 1] + samples[st][runs / 2]) / 2;
		double ms = mid * 1000.0 / (double)(len / CHUNK);
		if (produced[st])
			printf("%-12s %10.3f %8.3f\n", stage_names[st], ms,
			       (double)len / (double)produced[st]);
		else
			printf("%-12s %10.3f %8s\n", stage_names[st], ms, "-");
	}
	rc = 0;
out:
	if (f)
		fclose(f);
	efs_buf_release(&encoded);
	free(in);
	free(out);
	return rc;
}
