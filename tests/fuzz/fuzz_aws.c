/* SPDX-License-Identifier: MIT */
/* fuzz_aws.c - libFuzzer harness for what the AWS client reads from the
 * network and from disk (src/common/aws.c, src/common/xml.c).
 *
 * Input: a mode byte, then bytes.
 *   mode 0: an S3 error body (efs_aws_error_parse_xml);
 *   mode 1: a DynamoDB error body (efs_aws_error_parse_json);
 *   mode 2: a shared credentials file (efs_aws_credentials_parse, profiles
 *     "default" and "p");
 *   mode 3: any XML through efs_xml_parse with callbacks that check what
 *     they are given;
 *   mode 4: a ListObjectsV2 answer (efs_s3_list_parse, max-keys 1..8 from
 *     the second byte).
 * Checked beyond the sanitizers:
 *   - results are only those the headers list; outputs untouched on
 *     failure, NUL-terminated within their sizes on success, a non-empty
 *     code without '#';
 *   - a credentials profile that parses has a non-empty key id and secret
 *     within their caps, and a reason comes with every error;
 *   - the XML callbacks see depths 1..EFS_XML_MAX_DEPTH, balanced starts
 *     and ends, texts within EFS_XML_MAX_TEXT;
 *   - a listing has at most max-keys entries, each with a key of 1..1024
 *     bytes, and a token when truncated.
 * Build and run: make fuzz; bin/fuzz_aws tests/fuzz/corpus/aws
 */
#include "echofs/aws.h"
#include "echofs/s3.h"
#include "echofs/xml.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_error(int r, const char *code, size_t code_size, const char *msg,
			size_t msg_size)
{
	if (r == -ENOENT) {
		if (strcmp(code, "unset") != 0 || strcmp(msg, "unset") != 0)
			abort();
		return;
	}
	if (r != 0 || !memchr(code, '\0', code_size) || !memchr(msg, '\0', msg_size) || !code[0])
		abort();
}

struct xml_check {
	int depth;
};

static int on_start(void *ctx, int depth, const char *name)
{
	struct xml_check *x = ctx;
	if (depth != x->depth + 1 || depth < 1 || depth > EFS_XML_MAX_DEPTH || !name)
		abort();
	x->depth = depth;
	return 0;
}

static int on_end(void *ctx, int depth, const char *name, const char *text, size_t len)
{
	struct xml_check *x = ctx;
	if (depth != x->depth || !name || !text || len > EFS_XML_MAX_TEXT)
		abort();
	x->depth--;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int mode = data[0] % 5;
	const char *body = (const char *)data + 1;
	size_t len = size - 1;
	char code[24] = "unset", msg[40] = "unset";
	int r;
	switch (mode) {
	case 0:
		r = efs_aws_error_parse_xml(body, len, code, sizeof(code), msg, sizeof(msg));
		check_error(r, code, sizeof(code), msg, sizeof(msg));
		break;
	case 1:
		r = efs_aws_error_parse_json(body, len, code, sizeof(code), msg, sizeof(msg));
		check_error(r, code, sizeof(code), msg, sizeof(msg));
		if (r == 0 && strchr(code, '#'))
			abort();
		break;
	case 2: {
		static const char *const profiles[] = {"default", "p"};
		for (size_t i = 0; i < 2; i++) {
			struct efs_aws_credentials c, before;
			const char *why = NULL;
			memset(&c, 0x5a, sizeof(c));
			before = c;
			r = efs_aws_credentials_parse(body, len, profiles[i], &c, &why);
			if (r == 0) {
				if (!c.access_key_id[0] || !c.secret_access_key[0] ||
				    strlen(c.access_key_id) > EFS_SIGV4_MAX_ACCESS_KEY ||
				    strlen(c.secret_access_key) > EFS_SIGV4_MAX_SECRET ||
				    strlen(c.session_token) > EFS_AWS_MAX_TOKEN)
					abort();
			} else if ((r != -ENOENT && r != -EINVAL && r != -E2BIG) || !why ||
				   memcmp(&c, &before, sizeof(c)) != 0) {
				abort();
			}
		}
		break;
	}
	case 4: {
		struct efs_s3_list list = {.count = 99};
		unsigned max = len ? (unsigned)(body[0] & 7) + 1 : 1;
		if (len) {
			body++;
			len--;
		}
		r = efs_s3_list_parse(body, len, max, &list);
		if (r == 0) {
			if (list.count > max || (list.truncated && !list.next_token[0]))
				abort();
			for (size_t i = 0; i < list.count; i++)
				if (!list.entries[i].key[0] || strlen(list.entries[i].key) > EFS_S3_MAX_KEY)
					abort();
			efs_s3_list_release(&list);
		} else if ((r != -EBADMSG && r != -ENOMEM) || list.count != 99) {
			abort();
		}
		break;
	}
	default: {
		struct xml_check x = {0};
		r = efs_xml_parse(body, len, on_start, on_end, &x);
		if (r != 0 && r != -EBADMSG && r != -E2BIG && r != -ENOMEM)
			abort();
		if (r == 0 && x.depth != 0)
			abort();
		break;
	}
	}
	return 0;
}
