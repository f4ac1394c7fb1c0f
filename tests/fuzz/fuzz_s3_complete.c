/* SPDX-License-Identifier: MIT */
/* fuzz_s3_complete.c - libFuzzer harness for the CompleteMultipartUpload
 * body (efs_s3_complete_parse in src/master/s3_multipart.c), the one XML
 * document of multipart uploads a client sends.
 *
 * Input: the body as sent (capped at 4 MiB by the handler; any length
 * here). Checked beyond the sanitizers:
 *   - the result is 0, -ERANGE, -EBADMSG or -ENOMEM;
 *   - on 0 or -ERANGE: 1..10000 parts, each numbered 1..10000; a valid
 *     ETag is 32 lower-case hex digits; on 0 the numbers strictly ascend,
 *     on -ERANGE they do not.
 * Build and run: make fuzz; bin/fuzz_s3_complete tests/fuzz/corpus/s3_complete
 */
#include "echofs/meta.h"
#include "master/s3_multipart.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct efs_s3_listed_part parts[EFS_S3_PART_MAX];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t count = 0;
	int r = efs_s3_complete_parse((const char *)data, size, parts, &count);
	if (r != 0 && r != -ERANGE && r != -EBADMSG && r != -ENOMEM)
		abort();
	if (r != 0 && r != -ERANGE)
		return 0;
	if (count < 1 || count > EFS_S3_PART_MAX)
		abort();
	bool ascending = true;
	for (size_t i = 0; i < count; i++) {
		if (parts[i].number < 1 || parts[i].number > EFS_S3_PART_MAX)
			abort();
		if (i > 0 && parts[i].number <= parts[i - 1].number)
			ascending = false;
		if (parts[i].etag_valid) {
			if (strlen(parts[i].etag) != 32 ||
			    strspn(parts[i].etag, "0123456789abcdef") != 32)
				abort();
		}
	}
	if (ascending != (r == 0))
		abort();
	return 0;
}
