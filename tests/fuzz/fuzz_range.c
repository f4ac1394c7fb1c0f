/* SPDX-License-Identifier: MIT */
/* fuzz_range.c - libFuzzer harness for the Range header parser
 * (src/common/range.c, efs_range_parse), which reads a request header.
 *
 * Input: 8 bytes of representation size (little-endian; sizes near 0 and
 * near UINT64_MAX come up as often as the fuzzer likes), then the header
 * value (a NUL ends it early, as it would in a C string). Checked beyond
 * the sanitizers, per range.h:
 *   - success with a range: first <= last < size;
 *   - success without one, and -ERANGE: the out-parameters untouched;
 *   - no other return value;
 *   - the answer does not depend on anything past the header's NUL.
 * Build and run: make fuzz; bin/fuzz_range tests/fuzz/corpus/range
 */
#include "echofs/range.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SENTINEL 0xa5a5a5a5a5a5a5a5ULL

static int parse(const char *header, uint64_t rep_size, bool *partial, uint64_t *first,
		 uint64_t *last)
{
	*partial = false;
	*first = SENTINEL;
	*last = SENTINEL;
	int r = efs_range_parse(header, rep_size, partial, first, last);
	if (r == 0 && *partial) {
		if (!(*first <= *last && *last < rep_size))
			abort();
	} else if (r == 0 || r == -ERANGE) {
		if (*first != SENTINEL || *last != SENTINEL || *partial)
			abort();
	} else {
		abort();
	}
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t rep_size = 0;
	if (size < 8)
		return 0;
	for (int i = 0; i < 8; i++)
		rep_size |= (uint64_t)data[i] << (8 * i);
	size -= 8;
	/* An exact-size copy (NUL added), so ASan sees any read past it. */
	char *header = malloc(size + 1);
	if (!header)
		return 0;
	memcpy(header, data + 8, size);
	header[size] = '\0';

	bool partial;
	uint64_t first, last;
	int r = parse(header, rep_size, &partial, &first, &last);

	/* The same header with junk after its NUL gives the same answer. */
	size_t len = strlen(header);
	char *padded = malloc(len + 8);
	if (padded) {
		memcpy(padded, header, len + 1);
		memset(padded + len + 1, ',', 7);
		bool partial2;
		uint64_t first2, last2;
		int r2 = parse(padded, rep_size, &partial2, &first2, &last2);
		if (r2 != r || partial2 != partial ||
		    (partial && (first2 != first || last2 != last)))
			abort();
		free(padded);
	}
	/* NULL (no header) means the whole representation. */
	if (efs_range_parse(NULL, rep_size, &partial, &first, &last) != 0 || partial)
		abort();
	free(header);
	return 0;
}
