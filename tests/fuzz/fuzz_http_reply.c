/* SPDX-License-Identifier: MIT */
/* fuzz_http_reply.c - libFuzzer harness for the reply parser of the
 * direct-body path (src/common/http_client.c, direct_take: the status
 * line, headers, interim 1xx replies, Content-Length, chunked and
 * until-close bodies of a worker's answer to a replica write).
 *
 * Input: 1 byte giving where to split the rest (as a fraction of it),
 * then the bytes a worker sends back, fed in two pieces to a fresh
 * parser and whole to another. Checked beyond the sanitizers:
 *   - direct_take returns only 0, -EIO or -E2BIG;
 *   - the result, the status, the completeness and the body kept do not
 *     depend on the split;
 *   - a complete reply has a status of 100-999, never an interim 1xx
 *     (101 aside), and a body no longer than the call's cap (1 KiB here);
 *   - the captured header is NUL-terminated within its buffer.
 * The file includes http_client.c to reach its static functions (as the
 * unit tests of other modules do). Build and run: make fuzz;
 * bin/fuzz_http_reply tests/fuzz/corpus/http_reply
 */
#include "common/http_client.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct outcome {
	int result;
	bool done;
	long status;
	size_t body_len;
	char body[1024 + 1];
};

static void parse(const char *reply, size_t len, size_t cut, struct outcome *out)
{
	static struct direct d; /* 25 KiB: not on the fuzzer's stack */
	struct efs_http_call call;
	memset(&d, 0, sizeof(d));
	efs_http_call_init(&call, "PUT", "http://127.0.0.1:1/chunks/x");
	call.resp.cap = 1024;
	call.capture_header = "X-Answer";
	d.call = &call;
	d.fd = -1;
	int r = direct_take(&d, reply, cut);
	if (r == 0 && !d.resp_done)
		r = direct_take(&d, reply + cut, len - cut);
	if (r != 0 && r != -EIO && r != -E2BIG)
		abort();
	if (memchr(call.captured, '\0', sizeof(call.captured)) == NULL)
		abort();
	if (r == 0 && d.resp_done) {
		if (d.status < 100 || d.status > 999 || (d.status < 200 && d.status != 101))
			abort();
		if (call.resp.len > 1024)
			abort();
	}
	out->result = r;
	out->done = r == 0 && d.resp_done;
	out->status = r == 0 ? d.status : 0;
	out->body_len = r == 0 ? call.resp.len : 0;
	if (out->body_len)
		memcpy(out->body, call.resp.data, out->body_len);
	efs_http_call_release(&call);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct outcome whole, split;
	if (size < 1)
		return 0;
	const char *reply = (const char *)data + 1;
	size_t len = size - 1;
	size_t cut = len * data[0] / 255;
	parse(reply, len, len, &whole);
	parse(reply, len, cut, &split);
	/* Stopping at the first complete reply: bytes after it never matter,
	 * so both ways see the same reply. */
	if (whole.result != split.result || whole.done != split.done ||
	    whole.status != split.status || whole.body_len != split.body_len ||
	    memcmp(whole.body, split.body, whole.body_len) != 0)
		abort();
	return 0;
}
