/* SPDX-License-Identifier: MIT */
/* fuzz_multipart.c - libFuzzer harness for the multipart/form-data parser
 * (src/common/multipart.c), which reads upload bodies from the network.
 *
 * Input: a first line holding a Content-Type value (fed to
 * efs_multipart_boundary; when that refuses it, a fixed boundary is
 * used), then the body. The body is parsed twice: in one feed, and cut at
 * split points drawn from a generator seeded by the input, so every
 * mutation also moves the cuts. Checked beyond the sanitizers:
 *   - the parser never holds more than its documented bound
 *     (efs_multipart_buffered);
 *   - callbacks come in the order part_begin, part_data*, part_end, with
 *     no empty part_data;
 *   - both runs end with the same result, and when it is success, with
 *     the same callbacks (part names, filenames, content types and the
 *     bytes of every part), as multipart.h promises for any split.
 * Build and run: make fuzz; bin/fuzz_multipart tests/fuzz/corpus/multipart
 */
#include "echofs/multipart.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FALLBACK_BOUNDARY "fuzzboundary"

struct events {
	uint64_t digest; /* FNV-1a over every callback and its arguments */
	int parts_begun, parts_ended;
	int in_part;
};

static void mix(struct events *ev, const void *p, size_t len)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < len; i++) {
		ev->digest ^= b[i];
		ev->digest *= 1099511628211ULL;
	}
}

static void mix_str(struct events *ev, const char *s)
{
	if (!s) {
		mix(ev, "\1null", 5);
		return;
	}
	mix(ev, s, strlen(s) + 1);
}

static int on_begin(void *ctx, const char *name, const char *filename, const char *content_type)
{
	struct events *ev = ctx;
	if (ev->in_part || !name)
		abort();
	ev->in_part = 1;
	ev->parts_begun++;
	mix(ev, "B", 1);
	mix_str(ev, name);
	mix_str(ev, filename);
	mix_str(ev, content_type);
	return 0;
}

static int on_data(void *ctx, const char *bytes, size_t len)
{
	struct events *ev = ctx;
	if (!ev->in_part || len == 0)
		abort();
	mix(ev, bytes, len); /* cut-independent: FNV runs over the bytes in order */
	return 0;
}

static int on_end(void *ctx)
{
	struct events *ev = ctx;
	if (!ev->in_part)
		abort();
	ev->in_part = 0;
	ev->parts_ended++;
	mix(ev, "E", 1);
	return 0;
}

static const struct efs_multipart_callbacks callbacks = {on_begin, on_data, on_end};

/* xorshift64*: the split points. */
static uint64_t next_rand(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 2685821657736338717ULL;
}

static void check_held(const struct efs_multipart *mp, size_t boundary_len)
{
	size_t held = efs_multipart_buffered(mp);
	size_t bound = EFS_MULTIPART_HEADERS_MAX + 1;
	if (boundary_len + 4 > bound)
		bound = boundary_len + 4;
	if (held > bound)
		abort();
}

/* Parses @body; @seed 0 feeds it whole, else in random pieces. Returns the
 * result of the last feed or of finish. */
static int run(const char *boundary, const char *body, size_t len, uint64_t seed,
	       struct events *ev)
{
	struct efs_multipart *mp = NULL;
	memset(ev, 0, sizeof(*ev));
	ev->digest = 14695981039346656037ULL;
	if (efs_multipart_new(boundary, &callbacks, ev, &mp) != 0)
		abort(); /* the boundary was checked */
	size_t blen = strlen(boundary);
	int r = 0;
	size_t off = 0;
	while (off < len && r == 0) {
		size_t piece = len - off;
		if (seed) {
			uint64_t x = next_rand(&seed);
			/* Mostly tiny pieces (where cuts fall inside delimiters),
			 * sometimes large ones. */
			size_t max = (x & 7) == 0 ? 4096 : (x & 1) ? 3 : blen + 6;
			piece = 1 + (size_t)((x >> 8) % max);
			if (piece > len - off)
				piece = len - off;
		}
		r = efs_multipart_feed(mp, body + off, piece);
		off += piece;
		check_held(mp, blen);
	}
	if (r == 0)
		r = efs_multipart_finish(mp);
	else if (efs_multipart_feed(mp, "x", 1) != r || efs_multipart_finish(mp) != r)
		abort(); /* a failed parser stays failed with the same error */
	if (!efs_multipart_error(mp))
		abort();
	efs_multipart_free(mp);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *nl = memchr(data, '\n', size);
	size_t line_len = nl ? (size_t)(nl - (const char *)data) : size;
	char boundary[EFS_MULTIPART_BOUNDARY_MAX + 1];
	char *content_type = malloc(line_len + 1);
	if (!content_type)
		return 0;
	memcpy(content_type, data, line_len);
	content_type[line_len] = '\0';
	if (efs_multipart_boundary(content_type, boundary, sizeof(boundary)) != 0)
		memcpy(boundary, FALLBACK_BOUNDARY, sizeof(FALLBACK_BOUNDARY));
	free(content_type);

	const char *body = nl ? nl + 1 : (const char *)data + size;
	size_t body_len = (size_t)((const char *)data + size - body);
	/* A copy of just the body, so ASan sees reads past its end. */
	char *copy = malloc(body_len ? body_len : 1);
	if (!copy)
		return 0;
	memcpy(copy, body, body_len);

	uint64_t seed = 14695981039346656037ULL;
	for (size_t i = 0; i < size; i++)
		seed = (seed ^ data[i]) * 1099511628211ULL;
	seed |= 1; /* never 0, which means "whole" */

	struct events whole, split;
	int r_whole = run(boundary, copy, body_len, 0, &whole);
	int r_split = run(boundary, copy, body_len, seed, &split);
	if (r_whole != r_split)
		abort();
	if (r_whole == 0 &&
	    (whole.digest != split.digest || whole.parts_begun != split.parts_begun ||
	     whole.parts_ended != split.parts_ended || whole.in_part))
		abort();
	free(copy);
	return 0;
}
