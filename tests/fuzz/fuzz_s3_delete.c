/* SPDX-License-Identifier: MIT */
/* fuzz_s3_delete.c - libFuzzer harness for DeleteObjects' <Delete> body
 * (efs_s3_delete_parse in src/master/s3_object.c), which a client sends
 * to POST /bucket?delete.
 *
 * Input: the body as sent (capped at 2 MiB by the handler; any length
 * here). Checked beyond the sanitizers, per s3_object.h:
 *   - the result is 0, -EBADMSG, -E2BIG or -ENOMEM;
 *   - on 0: 1..EFS_S3_DELETE_MAX keys, the key buffer exactly that many
 *     NUL-terminated keys, each non-empty and at most EFS_XML_MAX_TEXT
 *     bytes; @refused, when set, is one of the two static answers.
 * Build and run: make fuzz; bin/fuzz_s3_delete tests/fuzz/corpus/s3_delete
 */
#include "echofs/xml.h"
#include "master/s3_object.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct efs_s3_delete_list list;
	efs_s3_delete_list_init(&list);
	int r = efs_s3_delete_parse((const char *)data, size, &list);
	if (r != 0 && r != -EBADMSG && r != -E2BIG && r != -ENOMEM)
		abort();
	if (r == 0) {
		if (list.key_count < 1 || list.key_count > EFS_S3_DELETE_MAX)
			abort();
		size_t at = 0;
		for (size_t i = 0; i < list.key_count; i++) {
			if (at >= list.keys.len)
				abort();
			size_t n = strnlen(list.keys.data + at, list.keys.len - at);
			if (n == 0 || n > EFS_XML_MAX_TEXT || at + n >= list.keys.len)
				abort();
			at += n + 1;
		}
		if (at != list.keys.len)
			abort();
		if (list.refused && strcmp(list.refused, "VersionId") != 0 &&
		    strcmp(list.refused, "conditional deletes") != 0)
			abort();
	}
	efs_s3_delete_list_release(&list);
	return 0;
}
