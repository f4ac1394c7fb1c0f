/* SPDX-License-Identifier: MIT */
/* fuzz_s3_chunked.c - libFuzzer harness for the aws-chunked body decoder
 * (src/master/s3_auth.c, efs_s3_chunked_*), which reads an S3 PUT's body.
 *
 * Input: 1 byte giving where to split the rest (as a fraction of it),
 * then the body, fed to a decoder of each of the three aws-chunked modes
 * (signed, signed with a trailer, unsigned with a trailer: both declare
 * x-amz-checksum-crc32) whose seed is that of the body in
 * tests/unit/s3_auth_vectors.h (so the corpus's valid bodies decode).
 * Checked beyond the sanitizers, per s3_auth.h:
 *   - feed returns only 0, -EACCES, -EINVAL or -E2BIG (the sink never
 *     fails here), and finish the same error once one was returned;
 *   - the result and the decoded bytes do not depend on the split;
 *   - finish's 0 means the bytes decoded are x-amz-decoded-content-length;
 *   - a trailer value only after finish's 0 in a -TRAILER mode (always
 *     then), not empty, at most EFS_S3_CHECKSUM_VALUE_MAX bytes.
 * Build and run: make fuzz; bin/fuzz_s3_chunked tests/fuzz/corpus/s3_chunked
 */
#include "master/s3_auth.h"
#include "master/s3_checksum.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define AMZ_DATE "20261203T120000Z"
/* The seed signature of tests/unit/s3_auth_vectors.h's stream_put. */
#define SEED "0000000000000000000000000000000000000000000000000000000000000000"
#define DECODED_LENGTH 100

struct sink {
	unsigned char *data;
	size_t len, cap;
};

static int collect(void *ctx, const char *data, size_t len)
{
	struct sink *s = ctx;
	if (len > s->cap - s->len)
		abort(); /* never more than the body */
	memcpy(s->data + s->len, data, len);
	s->len += len;
	return 0;
}

static int run(const struct efs_s3_principal *p, const uint8_t *body, size_t size, size_t cut,
	       struct sink *out)
{
	struct efs_s3_chunked *c = NULL;
	if (efs_s3_chunked_new(p, &c) != 0)
		abort();
	int r = efs_s3_chunked_feed(c, (const char *)body, cut, collect, out);
	if (r == 0)
		r = efs_s3_chunked_feed(c, (const char *)body + cut, size - cut, collect, out);
	int f = efs_s3_chunked_finish(c);
	if (r != 0 && r != -EACCES && r != -EINVAL && r != -E2BIG)
		abort();
	if (r != 0 && f != r)
		abort(); /* sticky */
	if (r == 0 && f != 0 && f != -EINVAL)
		abort();
	if (r == 0 && f == 0 && out->len != DECODED_LENGTH)
		abort();
	/* a trailer only from a body that decoded, only in a -TRAILER mode,
	 * never empty, at most its cap */
	const char *trailer = efs_s3_chunked_trailer(c);
	if (trailer && (r != 0 || f != 0 || !p->trailer_mode || !*trailer ||
			strlen(trailer) > EFS_S3_CHECKSUM_VALUE_MAX))
		abort();
	if (p->trailer_mode && r == 0 && f == 0 && !trailer)
		abort(); /* the declared trailer is required */
	efs_s3_chunked_free(c);
	return r ? r : f;
}

/* The three aws-chunked modes: STREAMING-AWS4-HMAC-SHA256-PAYLOAD, its
 * -TRAILER variant and STREAMING-UNSIGNED-PAYLOAD-TRAILER (both declaring
 * x-amz-checksum-crc32). */
enum { MODE_SIGNED, MODE_SIGNED_TRAILER, MODE_UNSIGNED_TRAILER, MODES };

static void principal_init(struct efs_s3_principal *p, int mode)
{
	memset(p, 0, sizeof(*p));
	p->payload = EFS_S3_PAYLOAD_STREAMING;
	if (efs_sigv4_key_derive(&p->key, SECRET, AMZ_DATE, "us-east-1", "s3") != 0)
		abort();
	memcpy(p->amz_date, AMZ_DATE, sizeof(AMZ_DATE));
	memcpy(p->seed_signature, SEED, sizeof(SEED));
	p->decoded_length = DECODED_LENGTH;
	p->chunk_signed = mode != MODE_UNSIGNED_TRAILER;
	p->trailer_mode = mode != MODE_SIGNED;
	if (p->trailer_mode)
		memcpy(p->trailer, "x-amz-checksum-crc32", sizeof("x-amz-checksum-crc32"));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct efs_s3_principal p[MODES];
	static int ready;
	if (!ready) {
		for (int mode = 0; mode < MODES; mode++)
			principal_init(&p[mode], mode);
		ready = 1;
	}
	if (size < 1)
		return 0;
	const uint8_t *body = data + 1;
	size_t len = size - 1, cut = len * data[0] / 255;
	for (int mode = 0; mode < MODES; mode++) {
		struct sink a = {malloc(len + 1), 0, len}, b = {malloc(len + 1), 0, len};
		if (!a.data || !b.data)
			abort();
		int ra = run(&p[mode], body, len, cut, &a);
		int rb = run(&p[mode], body, len, len, &b);
		/* the same answer whatever the split; the same bytes when it
		 * succeeds */
		if (ra != rb || (ra == 0 && (a.len != b.len || memcmp(a.data, b.data, a.len) != 0)))
			abort();
		free(a.data);
		free(b.data);
	}
	return 0;
}
