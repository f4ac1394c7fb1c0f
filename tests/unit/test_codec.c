/* SPDX-License-Identifier: MIT */
/* test_codec.c - unit tests of the chunk codec (include/echofs/codec.h) and
 * the hashes (include/echofs/hash.h).
 *
 * The codec stores a chunk as gzip only when that saves at least 10%; what
 * it writes must be real gzip (the gzip tool reads it back) and decoding
 * must refuse anything that does not come to exactly the expected bytes.
 * The hashes are checked against the published test vectors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "echofs/buf.h"
#include "echofs/codec.h"
#include "echofs/hash.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* efs_codec_encode as 1 (gzip), 0 (raw) or a negative errno, the form the
 * checks below compare with. */
static int encode(const void *in, size_t len, struct efs_buf *out)
{
	bool gzip = false;
	int r = efs_codec_encode(in, len, out, &gzip);
	return r < 0 ? r : gzip ? 1 : 0;
}

#define MIB (1024 * 1024)

/* xorshift64*: a fixed, portable sequence for reproducible test data. */
static uint64_t prng_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static void fill_random(unsigned char *data, size_t len, uint64_t seed)
{
	uint64_t s = seed;
	for (size_t i = 0; i < len; i++)
		data[i] = (unsigned char)(prng_next(&s) >> 56);
}

/* English-like text: words from a list, in sentences, with punctuation. */
static void fill_text(unsigned char *data, size_t len, uint64_t seed)
{
	static const char *const words[] = {
		"the",	   "of",      "and",	 "to",	     "in",	"a",	    "is",
		"that",	   "for",     "it",	 "as",	     "was",	"with",	    "be",
		"by",	   "on",      "not",	 "he",	     "this",	"are",	    "or",
		"his",	   "from",    "at",	 "which",    "but",	"have",	    "an",
		"had",	   "they",    "you",	 "were",     "their",	"one",	    "all",
		"we",	   "can",     "her",	 "has",	     "there",	"been",	    "if",
		"more",	   "when",    "will",	 "would",    "who",	"so",	    "no",
		"storage", "chunk",   "replica", "worker",   "master",	"file",	    "data",
		"network", "disk",    "system",	 "cluster",  "request", "response", "server",
		"client",  "session", "upload",	 "download", "metadata"};
	uint64_t s = seed;
	size_t pos = 0;
	unsigned words_in_sentence = 0;

	while (pos < len) {
		const char *w = words[prng_next(&s) % EFS_ARRAY_SIZE(words)];
		char piece[32];
		int n;
		words_in_sentence++;
		if (words_in_sentence > 6 && prng_next(&s) % 5 == 0) {
			n = snprintf(piece, sizeof(piece), "%s. ", w);
			words_in_sentence = 0;
		} else if (prng_next(&s) % 11 == 0) {
			n = snprintf(piece, sizeof(piece), "%s, ", w);
		} else {
			n = snprintf(piece, sizeof(piece), "%s ", w);
		}
		for (int i = 0; i < n && pos < len; i++)
			data[pos++] = (unsigned char)piece[i];
	}
}

/* ---- codec ------------------------------------------------------------ */

struct fixture {
	unsigned char *text; /* 1 MiB of text */
	struct efs_buf gz;   /* its gzip encoding */
	/* Whatever a test needs besides, here so that a failing assertion
	 * (which leaves the test at once) leaks nothing. */
	unsigned char *data; /* MIB + 1 bytes */
	struct efs_buf out, other, capped;
};

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (!f)
		return 0;
	free(f->text);
	free(f->data);
	efs_buf_release(&f->gz);
	efs_buf_release(&f->out);
	efs_buf_release(&f->other);
	efs_buf_release(&f->capped);
	free(f);
	return 0;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	*state = f;
	if (!f || !(f->text = malloc(MIB)) || !(f->data = malloc(MIB + 1)))
		goto fail;
	fill_text(f->text, MIB, 42);
	efs_buf_init(&f->gz, SIZE_MAX);
	efs_buf_init(&f->out, SIZE_MAX);
	efs_buf_init(&f->other, SIZE_MAX);
	efs_buf_init(&f->capped, SIZE_MAX);
	if (encode(f->text, MIB, &f->gz) != 1)
		goto fail;
	return 0;
fail:
	teardown(state);
	*state = NULL;
	return -1;
}

static void test_encode_empty_stays_raw(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(efs_buf_puts(&f->out, "left over"), 0);

	assert_int_equal(encode("", 0, &f->out), 0);
	assert_int_equal(f->out.len, 0); /* reset first */
}

static void test_encode_tiny_stays_raw(void **state)
{
	struct fixture *f = *state;
	unsigned char zeros[63];
	memset(zeros, 0, sizeof(zeros));
	assert_int_equal(efs_buf_puts(&f->out, "left over"), 0);

	/* Very compressible, but under 64 bytes: not worth a gzip member. */
	for (size_t len = 1; len < 64; len++) {
		assert_int_equal(encode(zeros, len, &f->out), 0);
		assert_int_equal(f->out.len, 0);
	}
}

static void test_encode_random_stays_raw(void **state)
{
	struct fixture *f = *state;
	fill_random(f->data, MIB, 7);
	assert_int_equal(efs_buf_puts(&f->out, "left over"), 0);

	assert_int_equal(encode(f->data, MIB, &f->out), 0);
	assert_int_equal(f->out.len, 0);
}

static void test_encode_text_compresses_and_round_trips(void **state)
{
	struct fixture *f = *state;

	/* setup encoded it already; encode again into a fresh buffer. */
	struct efs_buf *gz = &f->other;
	assert_int_equal(encode(f->text, MIB, gz), 1);
	if (gz->len > MIB * 45 / 100)
		print_error("1 MiB of text took %zu bytes as gzip (%.1f%%)\n", gz->len,
			    100.0 * (double)gz->len / MIB);
	assert_true(gz->len > 0);
	assert_true(gz->len <= MIB * 45 / 100);
	assert_int_equal(gz->len, f->gz.len); /* deterministic */
	assert_memory_equal(gz->data, f->gz.data, gz->len);

	assert_int_equal(efs_codec_decode(f->gz.data, f->gz.len, MIB, &f->out), 0);
	assert_int_equal(f->out.len, MIB);
	assert_memory_equal(f->out.data, f->text, MIB);
}

/* Leaves 16-bit words of @pattern in the stack below the caller's frame,
 * where the next call's locals will live. */
static __attribute__((noinline)) void scribble_stack(uint16_t pattern)
{
	volatile uint16_t junk[128 * 1024]; /* 256 KiB: isal_zstream alone is ~70 KiB */
	for (size_t i = 0; i < EFS_ARRAY_SIZE(junk); i++)
		junk[i] = pattern;
}

/* The encoding of a chunk depends on its bytes only, not on what the
 * memory the encoder uses held before (uninitialised state). */
static void test_encode_does_not_depend_on_stale_memory(void **state)
{
	struct fixture *f = *state;
	static const uint16_t patterns[] = {0x0000, 0x0005, 0x0009, 0xffff};
	struct efs_buf *gz = &f->other;

	for (size_t i = 0; i < EFS_ARRAY_SIZE(patterns); i++) {
		scribble_stack(patterns[i]);
		int r = encode(f->text, MIB, gz);
		if (r != 1 || gz->len != f->gz.len || memcmp(gz->data, f->gz.data, gz->len) != 0)
			print_error("stack pattern 0x%04x: encode returned %d with %zu bytes; "
				    "want 1 with the %zu bytes of the reference\n",
				    patterns[i], r, gz->len, f->gz.len);
		assert_int_equal(r, 1);
		assert_int_equal(gz->len, f->gz.len);
		assert_memory_equal(gz->data, f->gz.data, gz->len);
	}
}

/* Each thread keeps its deflate state between encodes: what an earlier
 * encode left in it (other bytes, another size, an overflow) must not
 * change the next one's output. */
static void test_encode_reuses_its_state_cleanly(void **state)
{
	struct fixture *f = *state;
	struct efs_buf *gz = &f->other;

	fill_random(f->data, 64 * 1024, 7); /* overflows: stored raw */
	assert_int_equal(encode(f->data, 64 * 1024, gz), 0);
	fill_text(f->data, 4096, 9);
	assert_int_equal(encode(f->data, 4096, gz), 1);
	assert_int_equal(encode(f->text, MIB, gz), 1);
	assert_int_equal(gz->len, f->gz.len);
	assert_memory_equal(gz->data, f->gz.data, gz->len);
	/* And a small chunk after a large one: as from a fresh state. */
	assert_int_equal(encode(f->data, 4096, &f->out), 1);
	assert_int_equal(efs_codec_decode(f->out.data, f->out.len, 4096, &f->capped), 0);
	assert_memory_equal(f->capped.data, f->data, 4096);
}

#define CODEC_THREADS 4
#define CODEC_ROUNDS 12

struct codec_worker {
	const unsigned char *text;  /* the fixture's 1 MiB, shared read-only */
	const struct efs_buf *want; /* its reference encoding */
	uint64_t seed;
	unsigned mismatches; /* encodes that differ from the reference */
	unsigned bad_round_trips;
};

/* No cmocka asserts on these threads: counts are checked after the join. */
static void *codec_worker_main(void *arg)
{
	struct codec_worker *w = arg;
	unsigned char small[16 * 1024];
	struct efs_buf gz, back;

	efs_buf_init(&gz, SIZE_MAX);
	efs_buf_init(&back, SIZE_MAX);
	fill_text(small, sizeof(small), w->seed);
	for (unsigned i = 0; i < CODEC_ROUNDS; i++) {
		/* Alternate a thread-specific small chunk and the shared large
		 * one, so a state shared between threads would mix them. */
		if (encode(small, sizeof(small), &gz) != 1 ||
		    efs_codec_decode(gz.data, gz.len, sizeof(small), &back) != 0 ||
		    memcmp(back.data, small, sizeof(small)) != 0)
			w->bad_round_trips++;
		if (encode(w->text, MIB, &gz) != 1 || gz.len != w->want->len ||
		    memcmp(gz.data, w->want->data, gz.len) != 0)
			w->mismatches++;
	}
	efs_buf_release(&gz);
	efs_buf_release(&back);
	return NULL;
}

/* Encodes from several threads at once each give the output of a lone
 * encode; the sanitizer build checks that every thread's state is freed
 * when it exits. */
static void test_encode_is_thread_safe(void **state)
{
	struct fixture *f = *state;
	struct codec_worker workers[CODEC_THREADS];
	pthread_t threads[CODEC_THREADS];

	for (unsigned i = 0; i < CODEC_THREADS; i++) {
		workers[i] = (struct codec_worker){f->text, &f->gz, 100 + i, 0, 0};
		assert_int_equal(pthread_create(&threads[i], NULL, codec_worker_main, &workers[i]),
				 0);
	}
	for (unsigned i = 0; i < CODEC_THREADS; i++)
		pthread_join(threads[i], NULL);
	for (unsigned i = 0; i < CODEC_THREADS; i++) {
		assert_int_equal(workers[i].mismatches, 0);
		assert_int_equal(workers[i].bad_round_trips, 0);
	}
}

static void test_encode_writes_real_gzip(void **state)
{
	struct fixture *f = *state;
	char dir[] = "/tmp/efs-codec-XXXXXX";
	char gz_path[64], cmd[160];
	unsigned char *back = f->data;
	size_t got = 0, n;

	assert_true(f->gz.len > 18);
	assert_int_equal((unsigned char)f->gz.data[0], 0x1f);
	assert_int_equal((unsigned char)f->gz.data[1], 0x8b);
	assert_int_equal((unsigned char)f->gz.data[2], 8); /* deflate */

	assert_non_null(mkdtemp(dir));
	snprintf(gz_path, sizeof(gz_path), "%s/chunk.gz", dir);
	FILE *fp = fopen(gz_path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(f->gz.data, 1, f->gz.len, fp), f->gz.len);
	assert_int_equal(fclose(fp), 0);

	snprintf(cmd, sizeof(cmd), "gzip -dc '%s'", gz_path);
	FILE *pipe = popen(cmd, "r");
	assert_non_null(pipe);
	while (got <= MIB && (n = fread(back + got, 1, MIB + 1 - got, pipe)) > 0)
		got += n;
	int status = pclose(pipe);
	unlink(gz_path);
	rmdir(dir);

	assert_int_equal(status, 0);
	assert_int_equal(got, MIB);
	assert_memory_equal(back, f->text, MIB);
}

static void test_decode_wrong_length_fails(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(efs_codec_decode(f->gz.data, f->gz.len, MIB - 1, &f->out), -EBADMSG);
	assert_int_equal(efs_codec_decode(f->gz.data, f->gz.len, MIB + 1, &f->out), -EBADMSG);
	assert_int_equal(efs_codec_decode(f->gz.data, f->gz.len, 0, &f->out), -EBADMSG);
	assert_int_equal(efs_codec_decode(f->gz.data, f->gz.len, MIB / 2, &f->out), -EBADMSG);
}

static void test_decode_flipped_byte_fails(void **state)
{
	struct fixture *f = *state;
	unsigned char *copy = f->data;
	assert_true(f->gz.len <= MIB);
	/* the middle of the deflate data, the CRC32 trailer, the ISIZE trailer */
	size_t offsets[] = {f->gz.len / 2, f->gz.len - 6, f->gz.len - 2};

	for (size_t i = 0; i < EFS_ARRAY_SIZE(offsets); i++) {
		memcpy(copy, f->gz.data, f->gz.len);
		copy[offsets[i]] ^= 0x10;
		assert_int_equal(efs_codec_decode(copy, f->gz.len, MIB, &f->out), -EBADMSG);
	}
}

static void test_decode_truncated_fails(void **state)
{
	struct fixture *f = *state;
	/* inside the header, in the middle, and cutting only the trailer
	 * (CRC32 + ISIZE, 8 bytes), where the data itself is complete */
	size_t lengths[] = {0, 5, 10, f->gz.len / 2, f->gz.len - 8, f->gz.len - 4,
			    f->gz.len - 1};
	size_t wrong = 0;

	for (size_t i = 0; i < EFS_ARRAY_SIZE(lengths); i++) {
		int r = efs_codec_decode(f->gz.data, lengths[i], MIB, &f->out);
		if (r != -EBADMSG) {
			print_error("decode of the first %zu of %zu bytes returned %d, not -EBADMSG\n",
				    lengths[i], f->gz.len, r);
			wrong++;
		}
	}
	assert_int_equal(wrong, 0);
}

static void test_decode_garbage_fails(void **state)
{
	struct fixture *f = *state;
	unsigned char garbage[4096];

	fill_random(garbage, sizeof(garbage), 99);
	assert_int_equal(efs_codec_decode(garbage, sizeof(garbage), sizeof(garbage), &f->out),
			 -EBADMSG);
	/* a gzip header followed by noise */
	garbage[0] = 0x1f;
	garbage[1] = 0x8b;
	garbage[2] = 8;
	garbage[3] = 0;
	assert_int_equal(efs_codec_decode(garbage, sizeof(garbage), sizeof(garbage), &f->out),
			 -EBADMSG);
	/* text is not gzip */
	assert_int_equal(efs_codec_decode(f->text, 4096, 4096, &f->out), -EBADMSG);
}

static void test_decode_resets_out_between_calls(void **state)
{
	struct fixture *f = *state;
	unsigned char small[5000];
	struct efs_buf *small_gz = &f->other;

	fill_text(small, sizeof(small), 5);
	assert_int_equal(encode(small, sizeof(small), small_gz), 1);

	assert_int_equal(efs_buf_puts(&f->out, "left over"), 0);
	assert_int_equal(efs_codec_decode(f->gz.data, f->gz.len, MIB, &f->out), 0);
	assert_int_equal(f->out.len, MIB);
	assert_memory_equal(f->out.data, f->text, MIB);

	assert_int_equal(efs_codec_decode(small_gz->data, small_gz->len, sizeof(small), &f->out),
			 0);
	assert_int_equal(f->out.len, sizeof(small));
	assert_memory_equal(f->out.data, small, sizeof(small));
	assert_int_equal(f->out.data[f->out.len], '\0');

	assert_int_equal(efs_codec_decode(f->gz.data, f->gz.len, MIB, &f->out), 0);
	assert_int_equal(f->out.len, MIB);
	assert_memory_equal(f->out.data, f->text, MIB);
}

/* -E2BIG is for output over out's cap; a cap of exactly the decoded
 * length holds it. */
static void test_decode_respects_cap(void **state)
{
	struct fixture *f = *state;
	unsigned char small[5000];
	struct efs_buf *small_gz = &f->other, *out = &f->capped;

	fill_text(small, sizeof(small), 6);
	assert_int_equal(encode(small, sizeof(small), small_gz), 1);

	efs_buf_release(out);
	efs_buf_init(out, sizeof(small) - 1);
	assert_int_equal(efs_codec_decode(small_gz->data, small_gz->len, sizeof(small), out),
			 -E2BIG);

	efs_buf_release(out);
	efs_buf_init(out, sizeof(small));
	assert_int_equal(efs_codec_decode(small_gz->data, small_gz->len, sizeof(small), out), 0);
	assert_int_equal(out->len, sizeof(small));
	assert_memory_equal(out->data, small, sizeof(small));
}

/* ---- the sample test: incompressible chunks skip the full deflate ------ */

static void test_samples_find_random_incompressible(void **state)
{
	struct fixture *f = *state;
	fill_random(f->data, MIB, 11);
	assert_false(efs_codec_worth_trying(f->data, MIB));
	assert_true(efs_codec_worth_trying(f->text, MIB));
	/* Chunks under 256 KiB are tried whole (those of at most 4 KiB
	 * after a look: test_small_chunks_are_judged_whole). */
	assert_true(efs_codec_worth_trying(f->data, 128 * 1024));
	assert_int_equal(encode(f->data, 128 * 1024, &f->out), 0);
}

/* Encodes @len bytes of f->data, checks the encoding chosen, and that a
 * gzip result decodes back and saves at least 10%. */
static void check_encoding(struct fixture *f, size_t len, int want)
{
	assert_int_equal(encode(f->data, len, &f->out), want);
	if (want == 1) {
		assert_true(f->out.len <= len - len / 10);
		assert_int_equal(efs_codec_decode(f->out.data, f->out.len, len, &f->other), 0);
		assert_memory_equal(f->other.data, f->data, len);
	} else {
		assert_int_equal(f->out.len, 0);
	}
}

static void test_mixed_chunks_choose_the_right_encoding(void **state)
{
	struct fixture *f = *state;

	/* Half random, half text (either order): gzip saves ~35%. */
	fill_random(f->data, MIB / 2, 12);
	memcpy(f->data + MIB / 2, f->text, MIB / 2);
	check_encoding(f, MIB, 1);
	memcpy(f->data, f->text, MIB / 2);
	fill_random(f->data + MIB / 2, MIB / 2, 13);
	check_encoding(f, MIB, 1);

	/* Random with text in the last fifth only: still saves over 10%. */
	fill_random(f->data, MIB, 14);
	memcpy(f->data + MIB - MIB / 5, f->text, MIB / 5);
	check_encoding(f, MIB, 1);

	/* Random with a twentieth of text: gzip cannot save 10%. */
	fill_random(f->data, MIB, 15);
	memcpy(f->data + MIB / 2, f->text, MIB / 20);
	check_encoding(f, MIB, 0);

	/* Zeros, and a chunk of another size than 1 MiB. */
	memset(f->data, 0, MIB);
	check_encoding(f, MIB, 1);
	fill_random(f->data, 300 * 1024 + 3, 16);
	check_encoding(f, 300 * 1024 + 3, 0);
	memcpy(f->data, f->text, 300 * 1024 + 3);
	check_encoding(f, 300 * 1024 + 3, 1);
}

/* efs_codec_encode_hash on @len bytes of f->data: the id is the SHA-256 of
 * every byte, whether the chunk was deflated, stored raw after the samples
 * or stored raw after an overflow midway; the encoding chosen is @want, a
 * gzip result decodes back, saves at least 10% and is the same each time. */
static void check_encode_hash(struct fixture *f, size_t len, int want)
{
	char want_id[EFS_SHA256_HEX_LEN + 1], id[EFS_SHA256_HEX_LEN + 1];
	bool gzip = !want;

	efs_sha256_hex(f->data, len, want_id);
	memset(id, 'x', sizeof(id));
	assert_int_equal(efs_buf_puts(&f->out, "left over"), 0);
	assert_int_equal(efs_codec_encode_hash(f->data, len, &f->out, &gzip, id), 0);
	assert_string_equal(id, want_id);
	assert_int_equal(gzip, want);
	if (!want) {
		assert_int_equal(f->out.len, 0);
		return;
	}
	assert_true(f->out.len <= len - len / 10);
	assert_int_equal(efs_codec_decode(f->out.data, f->out.len, len, &f->other), 0);
	assert_memory_equal(f->other.data, f->data, len);
	assert_int_equal(efs_codec_encode_hash(f->data, len, &f->capped, &gzip, id), 0);
	assert_int_equal(f->capped.len, f->out.len);
	assert_memory_equal(f->capped.data, f->out.data, f->out.len);
}

/* @len bytes drawn at random from the first @n bytes of @alphabet. */
static void fill_alphabet(unsigned char *data, size_t len, const char *alphabet, size_t n,
			  uint64_t seed)
{
	uint64_t s = seed;
	for (size_t i = 0; i < len; i++)
		data[i] = (unsigned char)alphabet[(prng_next(&s) >> 32) % n];
}

/* Bytes of a small alphabet without repeats do not shrink under the
 * samples' level 0 (fixed tables: 8 bits a byte at best), but level 1
 * codes hex digits in 4 bits and base64 in 6: such chunks were stored
 * raw. The samples' byte counts catch them; 200 symbols (7.6 bits a byte,
 * under 10% to save) stay raw, as random bytes do. */
static void test_samples_see_a_small_alphabet(void **state)
{
	struct fixture *f = *state;
	static const char base64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char wide[200];
	for (size_t i = 0; i < sizeof(wide); i++)
		wide[i] = (char)(i + 28);

	fill_alphabet(f->data, MIB, "0123456789abcdef", 16, 21);
	assert_true(efs_codec_worth_trying(f->data, MIB));
	check_encoding(f, MIB, 1);
	assert_true(f->out.len < MIB * 56 / 100);
	check_encode_hash(f, MIB, 1);

	fill_alphabet(f->data, MIB, base64, 64, 22);
	assert_true(efs_codec_worth_trying(f->data, MIB));
	check_encoding(f, MIB, 1);
	assert_true(f->out.len < MIB * 78 / 100);

	fill_alphabet(f->data, MIB, wide, sizeof(wide), 23);
	assert_false(efs_codec_worth_trying(f->data, MIB));
	check_encoding(f, MIB, 0);
}

/* Both encodes of @in on a thread of their own (its first encoder). */
struct fresh_encode {
	const unsigned char *in;
	size_t len;
	struct efs_buf plain, hashed;
	int result;
};

static void *fresh_encode_main(void *arg)
{
	struct fresh_encode *fe = arg;
	char id[EFS_SHA256_HEX_LEN + 1];
	bool gzip = false;
	efs_buf_init(&fe->plain, SIZE_MAX);
	efs_buf_init(&fe->hashed, SIZE_MAX);
	fe->result = efs_codec_encode(fe->in, fe->len, &fe->plain, &gzip);
	if (fe->result == 0 && gzip)
		fe->result = efs_codec_encode_hash(fe->in, fe->len, &fe->hashed, &gzip, id);
	if (fe->result == 0 && !gzip)
		fe->result = -EINVAL;
	return NULL;
}

/* Chunks of at most 4 KiB are judged whole before the level-1 attempt:
 * their bytes counted, then deflated at level 0. What either test finds
 * (skewed bytes, repeats) is tried and deflated; random bytes and a wide
 * alphabet are stored raw without the attempt; and a level-0 test on the
 * thread's encoder leaves the next encode's output as it was. */
static void test_small_chunks_are_judged_whole(void **state)
{
	struct fixture *f = *state;
	const size_t n = 4096;
	char wide[200];
	for (size_t i = 0; i < sizeof(wide); i++)
		wide[i] = (char)(i + 28);

	fill_random(f->data, n, 31);
	assert_false(efs_codec_worth_trying(f->data, n));
	check_encoding(f, n, 0);
	check_encode_hash(f, n, 0);
	fill_random(f->data, 1000, 32);
	check_encoding(f, 1000, 0);

	fill_alphabet(f->data, n, wide, sizeof(wide), 33);
	assert_false(efs_codec_worth_trying(f->data, n));
	check_encoding(f, n, 0);

	/* Repeats only: 2 KiB of random bytes twice; and a fifth of the
	 * chunk copied from the rest, which ISA-L's default table (high bytes
	 * at 11 bits) would not shrink, but level 1 saves 10% of. */
	fill_random(f->data, n / 2, 34);
	memcpy(f->data + n / 2, f->data, n / 2);
	assert_true(efs_codec_worth_trying(f->data, n));
	check_encoding(f, n, 1);
	check_encode_hash(f, n, 1);
	fill_random(f->data, n, 37);
	memcpy(f->data + 1000, f->data + 3000, n / 5);
	assert_true(efs_codec_worth_trying(f->data, n));
	check_encoding(f, n, 1);

	/* Skewed bytes only: hex digits. */
	fill_alphabet(f->data, n, "0123456789abcdef", 16, 35);
	assert_true(efs_codec_worth_trying(f->data, n));
	check_encoding(f, n, 1);

	memset(f->data, 0, 100);
	check_encoding(f, 100, 1);

	/* Text encoded after a level-0 test on this thread's encoder comes
	 * out as on a thread that never made one, by either encode. */
	memcpy(f->data, f->text, n);
	struct fresh_encode fresh = {.in = f->data, .len = n};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, fresh_encode_main, &fresh), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(fresh.result, 0);
	fill_random(f->data + n, n, 36);
	assert_false(efs_codec_worth_trying(f->data + n, n));
	assert_int_equal(encode(f->data, n, &f->out), 1);
	assert_int_equal(f->out.len, fresh.plain.len);
	assert_memory_equal(f->out.data, fresh.plain.data, f->out.len);
	assert_false(efs_codec_worth_trying(f->data + n, n));
	bool gzip = false;
	char id[EFS_SHA256_HEX_LEN + 1];
	assert_int_equal(efs_codec_encode_hash(f->data, n, &f->out, &gzip, id), 0);
	assert_true(gzip);
	assert_int_equal(f->out.len, fresh.hashed.len);
	assert_memory_equal(f->out.data, fresh.hashed.data, f->out.len);
	efs_buf_release(&fresh.plain);
	efs_buf_release(&fresh.hashed);
}

static void test_encode_hash_gives_the_id_of_every_byte(void **state)
{
	struct fixture *f = *state;
	const size_t sample_len = 4096, samples = 16;

	/* Text: deflated in 64 KiB pieces, and a size that is not a
	 * multiple of them. */
	memcpy(f->data, f->text, MIB);
	check_encode_hash(f, MIB, 1);
	check_encode_hash(f, 300 * 1024 + 3, 1);
	/* Random: the samples send it raw at once. */
	fill_random(f->data, MIB, 21);
	check_encode_hash(f, MIB, 0);
	/* Too short to deflate, and empty. */
	check_encode_hash(f, 63, 0);
	check_encode_hash(f, 0, 0);
	/* Random with text exactly where the samples look: they say "try",
	 * the whole chunk saves under 10%, so deflate overflows midway and
	 * the bytes after that point are hashed on their own. */
	fill_random(f->data, MIB, 22);
	for (size_t k = 0; k < samples; k++)
		memcpy(f->data + k * (MIB - sample_len) / (samples - 1), f->text + k * sample_len,
		       sample_len);
	assert_true(efs_codec_worth_trying(f->data, MIB));
	check_encode_hash(f, MIB, 0);
	/* Zeros: the output is tiny, the input ends in the last piece. */
	memset(f->data, 0, MIB);
	check_encode_hash(f, MIB, 1);
}

/* ---- hashes ----------------------------------------------------------- */

#define SHA256_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA256_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/* FIPS 180-2 appendix B.2: the 448-bit two-block message. */
#define SHA256_TWO_BLOCK_MSG "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
#define SHA256_TWO_BLOCK "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"

static void test_sha256_known_vectors(void **state)
{
	char hex[EFS_SHA256_HEX_LEN + 1];

	memset(hex, 'x', sizeof(hex));
	efs_sha256_hex("", 0, hex);
	assert_string_equal(hex, SHA256_EMPTY);
	efs_sha256_hex("abc", 3, hex);
	assert_string_equal(hex, SHA256_ABC);
	efs_sha256_hex(SHA256_TWO_BLOCK_MSG, strlen(SHA256_TWO_BLOCK_MSG), hex);
	assert_string_equal(hex, SHA256_TWO_BLOCK);
}

static void test_sha256_incremental_equals_one_shot(void **state)
{
	struct fixture *f = *state;
	char one_shot[EFS_SHA256_HEX_LEN + 1], pieces[EFS_SHA256_HEX_LEN + 1];
	struct efs_sha256 h;
	static const size_t sizes[] = {0, 1, 63, 64, 65, 1000, 4096, 0, 77777};
	size_t off = 0, k = 0;

	efs_sha256_hex(f->text, MIB, one_shot);
	assert_int_equal(efs_sha256_init(&h), 0);
	while (off < MIB) {
		size_t n = EFS_MIN(sizes[k++ % EFS_ARRAY_SIZE(sizes)], MIB - off);
		efs_sha256_update(&h, f->text + off, n);
		off += n;
	}
	efs_sha256_final_hex(&h, pieces);
	assert_string_equal(pieces, one_shot);

	/* and the known vector, fed a byte at a time */
	assert_int_equal(efs_sha256_init(&h), 0);
	for (size_t i = 0; i < 3; i++)
		efs_sha256_update(&h, "abc" + i, 1);
	efs_sha256_final_hex(&h, pieces);
	assert_string_equal(pieces, SHA256_ABC);

	/* release without a digest frees the context */
	assert_int_equal(efs_sha256_init(&h), 0);
	efs_sha256_update(&h, "abc", 3);
	efs_sha256_release(&h);
	assert_null(h.ctx);
	efs_sha256_release(&h); /* NULL ctx accepted */
}

/* CRC-64/NVME's catalogue check value, the empty input, and a value
 * continued across calls (S3's CRC64NVME streams over the body). */
static void test_crc64nvme_check_value(void **state)
{
	(void)state;
	assert_true(efs_crc64nvme(0, "123456789", 9) == 0xAE8B14860A799888ULL);
	assert_true(efs_crc64nvme(0, "", 0) == 0);
	assert_true(efs_crc64nvme(efs_crc64nvme(0, "1234", 4), "56789", 5) ==
		    0xAE8B14860A799888ULL);
	/* the aws-checksums library's vector: 32 zero bytes */
	unsigned char zeros[32] = {0};
	assert_true(efs_crc64nvme(0, zeros, sizeof(zeros)) == 0xCF3473434D4ECF3BULL);
}

static void test_crc32c_check_value(void **state)
{
	assert_int_equal(efs_crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(efs_crc32c(0, "", 0), 0);
	/* RFC 3720 B.4: 32 bytes of zeros, and of 0xff */
	unsigned char block[32];
	memset(block, 0, sizeof(block));
	assert_int_equal(efs_crc32c(0, block, sizeof(block)), 0x8A9136AAu);
	memset(block, 0xff, sizeof(block));
	assert_int_equal(efs_crc32c(0, block, sizeof(block)), 0x62A8AB43u);
}

/* CRC-32's check value (zlib's crc32), whole and in pieces. */
static void test_crc32_check_value(void **state)
{
	assert_int_equal(efs_crc32(0, "123456789", 9), 0xCBF43926u);
	assert_int_equal(efs_crc32(0, "", 0), 0);
	assert_int_equal(efs_crc32(efs_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
}

/* The published FNV-1a 64-bit test vectors; pieces continue the hash. */
static void test_fnv1a_known_vectors(void **state)
{
	assert_true(efs_fnv1a(EFS_FNV1A_INIT, "", 0) == 0xcbf29ce484222325ULL);
	assert_true(efs_fnv1a(EFS_FNV1A_INIT, "a", 1) == 0xaf63dc4c8601ec8cULL);
	assert_true(efs_fnv1a(EFS_FNV1A_INIT, "foobar", 6) == 0x85944171f73967e8ULL);
	assert_true(efs_fnv1a(efs_fnv1a(EFS_FNV1A_INIT, "foo", 3), "bar", 3) ==
		    0x85944171f73967e8ULL);
}

static void test_crc32c_continues(void **state)
{
	struct fixture *f = *state;
	uint32_t whole = efs_crc32c(0, f->text, MIB);
	static const size_t splits[] = {0, 1, 4, 7, MIB / 2, MIB - 1, MIB};

	for (size_t i = 0; i < EFS_ARRAY_SIZE(splits); i++) {
		size_t cut = splits[i];
		uint32_t crc = efs_crc32c(0, f->text, cut);
		crc = efs_crc32c(crc, f->text + cut, MIB - cut);
		assert_int_equal(crc, whole);
	}
	assert_int_equal(efs_crc32c(efs_crc32c(0, "12345", 5), "6789", 4), 0xE3069283u);
	assert_int_not_equal(whole, efs_crc32c(0, f->text, MIB - 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_encode_empty_stays_raw, setup, teardown),
		cmocka_unit_test_setup_teardown(test_encode_tiny_stays_raw, setup, teardown),
		cmocka_unit_test_setup_teardown(test_encode_random_stays_raw, setup, teardown),
		cmocka_unit_test_setup_teardown(test_encode_text_compresses_and_round_trips, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_encode_does_not_depend_on_stale_memory, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_encode_reuses_its_state_cleanly, setup, teardown),
		cmocka_unit_test_setup_teardown(test_encode_is_thread_safe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_encode_writes_real_gzip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_wrong_length_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_flipped_byte_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_truncated_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_garbage_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_resets_out_between_calls, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_decode_respects_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_samples_find_random_incompressible, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_samples_see_a_small_alphabet, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_small_chunks_are_judged_whole, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_mixed_chunks_choose_the_right_encoding, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_encode_hash_gives_the_id_of_every_byte, setup,
						teardown),
		cmocka_unit_test(test_sha256_known_vectors),
		cmocka_unit_test_setup_teardown(test_sha256_incremental_equals_one_shot, setup,
						teardown),
		cmocka_unit_test(test_crc32c_check_value),
		cmocka_unit_test(test_crc64nvme_check_value),
	    cmocka_unit_test(test_crc32_check_value),
		cmocka_unit_test(test_fnv1a_known_vectors),
		cmocka_unit_test_setup_teardown(test_crc32c_continues, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
