/* SPDX-License-Identifier: MIT */
/* test_multipart.c - streaming multipart/form-data parser.
 *
 * Every body is also fed split at many positions: the callbacks must tell
 * the same story whatever the split. Callbacks are recorded into a trace
 * ("B[name|filename|type]" data... "E;") in which consecutive data pieces
 * merge, so traces of differently split feeds compare equal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "echofs/buf.h"
#include "echofs/hash.h"
#include "echofs/multipart.h"

#define TRACE_CAP (4 * EFS_MIB)

struct rec {
	struct efs_buf trace;
	bool in_part;
	int begins, ends, data_calls;
	size_t delivered;
	uint64_t hash;	/* FNV-1a of the data, when no_trace */
	bool no_trace;	/* only count and hash the data */
	int fail_begin; /* return -EIO from the n-th part_begin (1-based); 0: never */
	int fail_data;
	int fail_end;
};

static void rec_init(struct rec *r)
{
	memset(r, 0, sizeof(*r));
	efs_buf_init(&r->trace, TRACE_CAP);
	r->hash = EFS_FNV1A_INIT;
}

static void rec_release(struct rec *r)
{
	efs_buf_release(&r->trace);
}

static int on_begin(void *ctx, const char *name, const char *filename, const char *content_type)
{
	struct rec *r = ctx;

	assert_false(r->in_part);
	assert_non_null(name);
	r->in_part = true;
	r->begins++;
	if (r->fail_begin == r->begins)
		return -EIO;
	assert_int_equal(efs_buf_printf(&r->trace, "B[%s|%s|%s]", name,
					filename ? filename : "(null)",
					content_type ? content_type : "(null)"),
			 0);
	return 0;
}

static int on_data(void *ctx, const char *data, size_t len)
{
	struct rec *r = ctx;

	assert_true(r->in_part);
	assert_true(len > 0);
	r->data_calls++;
	r->delivered += len;
	if (r->fail_data == r->data_calls)
		return -EIO;
	if (r->no_trace) {
		r->hash = efs_fnv1a(r->hash, data, len);
		return 0;
	}
	assert_int_equal(efs_buf_append(&r->trace, data, len), 0);
	return 0;
}

static int on_end(void *ctx)
{
	struct rec *r = ctx;

	assert_true(r->in_part);
	r->in_part = false;
	r->ends++;
	if (r->fail_end == r->ends)
		return -EIO;
	assert_int_equal(efs_buf_puts(&r->trace, "E;"), 0);
	return 0;
}

static const struct efs_multipart_callbacks rec_cb = {
    .part_begin = on_begin,
    .part_data = on_data,
    .part_end = on_end,
};

/* Parses @body fed in pieces of @chunk bytes (0: whole). Returns the first
 * feed error, else what finish returns. */
static int run_chunked(const char *boundary, const char *body, size_t len, size_t chunk,
		       struct rec *rec)
{
	struct efs_multipart *mp = NULL;
	int r;

	assert_int_equal(efs_multipart_new(boundary, &rec_cb, rec, &mp), 0);
	if (chunk == 0)
		chunk = len ? len : 1;
	for (size_t off = 0; off < len; off += chunk) {
		r = efs_multipart_feed(mp, body + off, EFS_MIN(chunk, len - off));
		if (r < 0)
			goto out;
	}
	r = efs_multipart_finish(mp);
out:
	efs_multipart_free(mp);
	return r;
}

/* Parses @body fed as the pieces [0,a) [a,b) [b,len). */
static int run_split(const char *boundary, const char *body, size_t len, size_t a, size_t b,
		     struct rec *rec)
{
	struct efs_multipart *mp = NULL;
	int r;

	assert_int_equal(efs_multipart_new(boundary, &rec_cb, rec, &mp), 0);
	r = efs_multipart_feed(mp, body, a);
	if (r == 0)
		r = efs_multipart_feed(mp, body + a, b - a);
	if (r == 0)
		r = efs_multipart_feed(mp, body + b, len - b);
	if (r == 0)
		r = efs_multipart_finish(mp);
	efs_multipart_free(mp);
	return r;
}

/* Checks that @body parses to @expect_r / @expect_trace fed whole, in
 * pieces of 1..17 and 4096 bytes, and split in two at every position
 * (and in three at every pair of positions when @three_way). */
static void check_all_splits(const char *boundary, const char *body, size_t len, int expect_r,
			     const char *expect_trace, size_t expect_len, bool three_way)
{
	static const size_t chunks[] = {0,  1,	2,  3,	4,  5,	6,  7,	8,   9,
					10, 11, 12, 13, 14, 15, 16, 17, 4096};
	struct rec rec;

	for (size_t i = 0; i < EFS_ARRAY_SIZE(chunks); i++) {
		rec_init(&rec);
		assert_int_equal(run_chunked(boundary, body, len, chunks[i], &rec), expect_r);
		if (expect_trace) {
			assert_int_equal(rec.trace.len, expect_len);
			assert_memory_equal(rec.trace.data ? rec.trace.data : "", expect_trace,
					    expect_len);
		}
		rec_release(&rec);
	}
	for (size_t a = 0; a <= len; a++) {
		for (size_t b = three_way ? a : len; b <= len; b++) {
			rec_init(&rec);
			assert_int_equal(run_split(boundary, body, len, a, b, &rec), expect_r);
			if (expect_trace) {
				assert_int_equal(rec.trace.len, expect_len);
				assert_memory_equal(rec.trace.data ? rec.trace.data : "",
						    expect_trace, expect_len);
			}
			rec_release(&rec);
		}
	}
}

#define CHECK_ALL(boundary, body, r, trace, three)                                                 \
	check_all_splits(boundary, body, sizeof(body) - 1, r, trace, sizeof(trace) - 1, three)

/* Parses @body whole and returns the result; the error text into *why. */
static int run_whole(const char *boundary, const char *body, size_t len, const char **why)
{
	struct efs_multipart *mp = NULL;
	struct rec rec;
	int r;

	rec_init(&rec);
	assert_int_equal(efs_multipart_new(boundary, &rec_cb, &rec, &mp), 0);
	r = efs_multipart_feed(mp, body, len);
	if (r == 0)
		r = efs_multipart_finish(mp);
	*why = efs_multipart_error(mp); /* static strings outlive the parser */
	efs_multipart_free(mp);
	rec_release(&rec);
	return r;
}

/* Boundary extraction ------------------------------------------------------ */

static void test_boundary_extract(void **state)
{
	char out[EFS_MULTIPART_BOUNDARY_MAX + 1];
	char small[4];
	char b70[EFS_MULTIPART_BOUNDARY_MAX + 1];
	char ct[200];

	assert_int_equal(
	    efs_multipart_boundary("multipart/form-data; boundary=AaB03x", out, sizeof(out)), 0);
	assert_string_equal(out, "AaB03x");
	/* quoted, with characters a token cannot hold and an escape */
	assert_int_equal(
	    efs_multipart_boundary("multipart/form-data; boundary=\"gc0p4Jq0M:2Yt08j\\\"34 c0p\"",
				   out, sizeof(out)),
	    0);
	assert_string_equal(out, "gc0p4Jq0M:2Yt08j\"34 c0p");
	/* case of type and parameter name, whitespace */
	assert_int_equal(
	    efs_multipart_boundary("  Multipart/Form-Data ;BOUNDARY = xyz  ", out, sizeof(out)), 0);
	assert_string_equal(out, "xyz");
	/* other parameters before and after */
	assert_int_equal(efs_multipart_boundary("multipart/form-data; charset=utf-8; "
						"boundary=\"----WebKitFormBoundary7MA4YWxk\"; "
						"foo=\"a;b\"",
						out, sizeof(out)),
			 0);
	assert_string_equal(out, "----WebKitFormBoundary7MA4YWxk");
	assert_int_equal(
	    efs_multipart_boundary("multipart/form-data;boundary=q;", out, sizeof(out)), 0);
	assert_string_equal(out, "q");

	/* 70 characters fit, 71 do not */
	memset(b70, 'b', 70);
	b70[70] = '\0';
	snprintf(ct, sizeof(ct), "multipart/form-data; boundary=%s", b70);
	assert_int_equal(efs_multipart_boundary(ct, out, sizeof(out)), 0);
	assert_string_equal(out, b70);
	snprintf(ct, sizeof(ct), "multipart/form-data; boundary=%sb", b70);
	assert_int_equal(efs_multipart_boundary(ct, out, sizeof(out)), -EINVAL);
	snprintf(ct, sizeof(ct), "multipart/form-data; boundary=\"%sb\"", b70);
	assert_int_equal(efs_multipart_boundary(ct, out, sizeof(out)), -EINVAL);

	/* failures leave out untouched */
	memcpy(out, "keep", 5);
	assert_int_equal(efs_multipart_boundary("multipart/form-data", out, sizeof(out)), -EINVAL);
	assert_int_equal(
	    efs_multipart_boundary("multipart/form-data; charset=utf-8", out, sizeof(out)),
	    -EINVAL);
	assert_int_equal(efs_multipart_boundary("multipart/form-data; boundary=", out, sizeof(out)),
			 -EINVAL);
	assert_int_equal(
	    efs_multipart_boundary("multipart/form-data; boundary=\"\"", out, sizeof(out)),
	    -EINVAL);
	assert_int_equal(efs_multipart_boundary("multipart/mixed; boundary=abc", out, sizeof(out)),
			 -EINVAL);
	assert_int_equal(efs_multipart_boundary("text/plain; boundary=abc", out, sizeof(out)),
			 -EINVAL);
	assert_int_equal(
	    efs_multipart_boundary("multipart/form-datax; boundary=abc", out, sizeof(out)),
	    -EINVAL);
	assert_int_equal(efs_multipart_boundary("", out, sizeof(out)), -EINVAL);
	assert_int_equal(efs_multipart_boundary(NULL, out, sizeof(out)), -EINVAL);
	/* given twice, unterminated quote, junk after the value, ends in space */
	assert_int_equal(
	    efs_multipart_boundary("multipart/form-data; boundary=a; boundary=b", out, sizeof(out)),
	    -EINVAL);
	assert_int_equal(
	    efs_multipart_boundary("multipart/form-data; boundary=\"abc", out, sizeof(out)),
	    -EINVAL);
	assert_int_equal(
	    efs_multipart_boundary("multipart/form-data; boundary=\"abc\"x", out, sizeof(out)),
	    -EINVAL);
	assert_int_equal(
	    efs_multipart_boundary("multipart/form-data; boundary=\"abc \"", out, sizeof(out)),
	    -EINVAL);
	assert_int_equal(
	    efs_multipart_boundary("multipart/form-data; boundary=\"a\rb\"", out, sizeof(out)),
	    -EINVAL);
	assert_string_equal(out, "keep");
	/* does not fit outlen (needs strlen + 1) */
	assert_int_equal(
	    efs_multipart_boundary("multipart/form-data; boundary=abcd", small, sizeof(small)),
	    -EINVAL);
	assert_int_equal(
	    efs_multipart_boundary("multipart/form-data; boundary=abc", small, sizeof(small)), 0);
	assert_string_equal(small, "abc");
}

static void test_new_args(void **state)
{
	struct efs_multipart *mp = (struct efs_multipart *)&mp; /* must stay untouched */
	struct efs_multipart *orig = mp;
	char b71[72];

	memset(b71, 'x', 71);
	b71[71] = '\0';
	assert_int_equal(efs_multipart_new("", &rec_cb, NULL, &mp), -EINVAL);
	assert_int_equal(efs_multipart_new(b71, &rec_cb, NULL, &mp), -EINVAL);
	assert_int_equal(efs_multipart_new("a\r\nb", &rec_cb, NULL, &mp), -EINVAL);
	assert_int_equal(efs_multipart_new("ab ", &rec_cb, NULL, &mp), -EINVAL);
	assert_int_equal(efs_multipart_new(NULL, &rec_cb, NULL, &mp), -EINVAL);
	assert_int_equal(efs_multipart_new("ab", NULL, NULL, &mp), -EINVAL);
	assert_ptr_equal(mp, orig);
	b71[70] = '\0';
	assert_int_equal(efs_multipart_new(b71, &rec_cb, NULL, &mp), 0);
	assert_string_equal(efs_multipart_error(mp), "no error");
	assert_int_equal(efs_multipart_feed(mp, NULL, 0), 0);
	efs_multipart_free(mp);
	efs_multipart_free(NULL);
	assert_string_equal(efs_multipart_error(NULL), "no error");
}

/* Bodies ---------------------------------------------------------------- */

static const char simple_body[] =
    "--AaB03x\r\n"
    "Content-Disposition: form-data; name=\"field1\"\r\n"
    "\r\n"
    "Joe Blow\r\nalmost tricky\r\n"
    "\r\n--AaB03x\r\n"
    "Content-Disposition: form-data; name=\"pics\"; filename=\"file1.txt\"\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "...contents of file1.txt...\r\n"
    "\r\n--AaB03x--\r\n";
static const char simple_trace[] = "B[field1|(null)|(null)]Joe Blow\r\nalmost tricky\r\nE;"
				   "B[pics|file1.txt|text/plain]...contents of file1.txt...\r\nE;";

static void test_simple_whole(void **state)
{
	struct rec rec;

	rec_init(&rec);
	assert_int_equal(run_chunked("AaB03x", simple_body, sizeof(simple_body) - 1, 0, &rec), 0);
	assert_int_equal(rec.begins, 2);
	assert_int_equal(rec.ends, 2);
	/* fed whole, each body arrives in one piece */
	assert_int_equal(rec.data_calls, 2);
	assert_int_equal(rec.trace.len, sizeof(simple_trace) - 1);
	assert_memory_equal(rec.trace.data, simple_trace, sizeof(simple_trace) - 1);
	rec_release(&rec);
}

static void test_simple_every_split(void **state)
{
	CHECK_ALL("AaB03x", simple_body, 0, simple_trace, true);
}

/* Data full of things that look like the delimiter but are not. */
static const char tricky_body[] =
    "--XyZ-boundary-42\r\n"
    "Content-Disposition: form-data; name=\"bin\"; filename=\"b.bin\"\r\n"
    "Content-Type: application/octet-stream\r\n"
    "\r\n"
    "a\r\n--b\r\n--XyZ\r\r\n--XyZ-boundary-4\r\n-\r\n\r\n--\n--XyZ-boundary-42\r"
    "--XyZ-boundary-42 --XyZ-boundary-42\0\xff\r\n\r\r\n\r\n-"
    "\r\n--XyZ-boundary-42\r\n"
    "Content-Disposition: form-data; name=\"lead\"\r\n"
    "\r\n"
    "--XyZ-boundar!\r\n--XyZ-boundary-4"
    "\r\n--XyZ-boundary-42--";
static const char tricky_trace[] =
    "B[bin|b.bin|application/octet-stream]"
    "a\r\n--b\r\n--XyZ\r\r\n--XyZ-boundary-4\r\n-\r\n\r\n--\n--XyZ-boundary-42\r"
    "--XyZ-boundary-42 --XyZ-boundary-42\0\xff\r\n\r\r\n\r\n-E;"
    "B[lead|(null)|(null)]--XyZ-boundar!\r\n--XyZ-boundary-4E;";

static void test_binary_lookalikes(void **state)
{
	CHECK_ALL("XyZ-boundary-42", tricky_body, 0, tricky_trace, false);
}

static const char empty_body[] = "--b\r\n"
				 "Content-Disposition: form-data; name=\"e1\"\r\n"
				 "\r\n"
				 "\r\n--b\r\n"
				 "Content-Disposition: form-data; name=\"e2\"; filename=\"\"\r\n"
				 "\r\n"
				 "--b\r\n" /* no CRLF of its own: shares the blank line's */
				 "Content-Disposition: form-data; name=\"x\"\r\n"
				 "\r\n"
				 "x"
				 "\r\n--b--";
static const char empty_trace[] = "B[e1|(null)|(null)]E;B[e2||(null)]E;B[x|(null)|(null)]xE;";

static void test_empty_body(void **state)
{
	struct rec rec;

	rec_init(&rec);
	assert_int_equal(run_chunked("b", empty_body, sizeof(empty_body) - 1, 0, &rec), 0);
	assert_int_equal(rec.data_calls, 1);
	rec_release(&rec);
	CHECK_ALL("b", empty_body, 0, empty_trace, true);
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void test_large_random_file(void **state)
{
	static const char head[] = "--7MA4YWxkTrZu0gW\r\n"
				   "Content-Disposition: form-data; name=\"file\"; "
				   "filename=\"random.bin\"\r\n"
				   "Content-Type: application/octet-stream\r\n\r\n";
	static const char tail[] = "\r\n--7MA4YWxkTrZu0gW--\r\n";
	static const char expect_head[] = "B[file|random.bin|application/octet-stream]";
	const size_t size = EFS_MIB;
	struct efs_buf body;
	struct rec rec;
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	int feeds = 0;

	efs_buf_init(&body, 2 * EFS_MIB);
	assert_int_equal(efs_buf_append(&body, head, sizeof(head) - 1), 0);
	assert_int_equal(efs_buf_reserve(&body, size), 0);
	for (size_t i = 0; i < size; i += 8) {
		uint64_t v = xorshift(&seed);
		memcpy(body.data + body.len + i, &v, 8);
	}
	body.len += size;
	assert_int_equal(efs_buf_append(&body, tail, sizeof(tail) - 1), 0);

	rec_init(&rec);
	struct efs_multipart *mp = NULL;
	assert_int_equal(efs_multipart_new("7MA4YWxkTrZu0gW", &rec_cb, &rec, &mp), 0);
	for (size_t off = 0; off < body.len; off += 1000, feeds++)
		assert_int_equal(
		    efs_multipart_feed(mp, body.data + off, EFS_MIN(1000, body.len - off)), 0);
	assert_int_equal(efs_multipart_finish(mp), 0);
	efs_multipart_free(mp);

	assert_int_equal(rec.begins, 1);
	assert_int_equal(rec.ends, 1);
	assert_int_equal(rec.delivered, size);
	/* no byte-by-byte delivery: at most a held-back prefix and the rest */
	assert_true(rec.data_calls <= 2 * feeds);
	assert_int_equal(rec.trace.len, sizeof(expect_head) - 1 + size + 2);
	assert_memory_equal(rec.trace.data, expect_head, sizeof(expect_head) - 1);
	assert_memory_equal(rec.trace.data + sizeof(expect_head) - 1, body.data + sizeof(head) - 1,
			    size);
	assert_memory_equal(rec.trace.data + rec.trace.len - 2, "E;", 2);
	rec_release(&rec);
	efs_buf_release(&body);
}

/* Content-Disposition ------------------------------------------------------ */

static const char names_body[] =
    "--b\r\n"
    "Content-Disposition: form-data; name=\"q\"; filename=\"a \\\"quoted\\\" \\\\ n;m.txt\"\r\n"
    "\r\n1\r\n--b\r\n"
    "Content-Disposition: form-data; name=\"u\"; filename=\"euro.txt\"; "
    "filename*=UTF-8''%E2%82%AC.txt\r\n"
    "\r\n2\r\n--b\r\n"
    "content-disposition: FORM-DATA ;  FileName*=utf-8'en'%e2%82%ac%20rate.txt ; "
    "NAME = bare ; Filename=\"fallback.txt\"\r\n"
    "\r\n3\r\n--b\r\n"
    "Content-Disposition: form-data; filename*=ISO-8859-1''%A3%20rates.txt\r\n"
    "\r\n4\r\n--b\r\n"
    "Content-Disposition: form-data; name=\"k\"; filename=\"plain.txt\"; "
    "filename*=KOI8-R''%C1.txt; x-other=\"a;b\"; size=12\r\n"
    "\r\n5\r\n--b\r\n"
    "Content-Disposition: form-data; name=\"\xc3\xa9t\xc3\xa9\"\r\n"
    "\r\n6\r\n--b--";
static const char names_trace[] = "B[q|a \"quoted\" \\ n;m.txt|(null)]1E;"
				  "B[u|\xe2\x82\xac.txt|(null)]2E;"
				  "B[bare|\xe2\x82\xac rate.txt|(null)]3E;"
				  "B[|\xc2\xa3 rates.txt|(null)]4E;"
				  "B[k|plain.txt|(null)]5E;"
				  "B[\xc3\xa9t\xc3\xa9|(null)|(null)]6E;";

static void test_disposition_params(void **state)
{
	CHECK_ALL("b", names_body, 0, names_trace, false);
}

static void test_name_limits(void **state)
{
	struct efs_buf body;
	const char *why;
	char name[EFS_MULTIPART_NAME_MAX + 2];

	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	efs_buf_init(&body, 64 * EFS_KIB);

	/* 1024 bytes are fine, 1025 are not: name, filename, filename* */
	name[EFS_MULTIPART_NAME_MAX] = '\0';
	assert_int_equal(efs_buf_printf(&body,
					"--b\r\nContent-Disposition: form-data; name=\"%s\"; "
					"filename=\"%s\"\r\n\r\n\r\n--b--",
					name, name),
			 0);
	assert_int_equal(run_whole("b", body.data, body.len, &why), 0);

	name[EFS_MULTIPART_NAME_MAX] = 'n';
	efs_buf_reset(&body);
	assert_int_equal(efs_buf_printf(&body,
					"--b\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n"
					"\r\n--b--",
					name),
			 0);
	assert_int_equal(run_whole("b", body.data, body.len, &why), -EBADMSG);
	assert_string_equal(why, "part name too long");

	efs_buf_reset(&body);
	assert_int_equal(efs_buf_printf(&body,
					"--b\r\nContent-Disposition: form-data; name=a; "
					"filename=%s\r\n\r\n\r\n--b--",
					name),
			 0);
	assert_int_equal(run_whole("b", body.data, body.len, &why), -EBADMSG);
	assert_string_equal(why, "filename too long");

	efs_buf_reset(&body);
	assert_int_equal(efs_buf_puts(&body, "--b\r\nContent-Disposition: form-data; name=a; "
					     "filename*=UTF-8''"),
			 0);
	for (int i = 0; i < EFS_MULTIPART_NAME_MAX / 2 + 1; i++)
		assert_int_equal(efs_buf_puts(&body, "%C3%A9"), 0);
	assert_int_equal(efs_buf_puts(&body, "\r\n\r\n\r\n--b--"), 0);
	assert_int_equal(run_whole("b", body.data, body.len, &why), -EBADMSG);
	assert_string_equal(why, "filename too long");

	efs_buf_release(&body);
}

/* Preamble, epilogue, line endings --------------------------------------- */

static const char preamble_body[] = "This is the preamble. It is to be ignored --b, though it\r\n"
				    "is a handy place for composition agents to include an\r\n"
				    "-b explanatory note --b\n"
				    "\r\n"
				    "-\n"
				    "--b   \t\r\n" /* transport padding */
				    "Content-Disposition: form-data; name=\"a\"\r\n"
				    "\r\n"
				    "A"
				    "\r\n--b--  and this is the epilogue\r\n"
				    "--b\r\nContent-Disposition: junk\r\n\r\nignored\r\n--b--\r\n";
static const char preamble_trace[] = "B[a|(null)|(null)]AE;";

static void test_preamble_epilogue(void **state)
{
	CHECK_ALL("b", preamble_body, 0, preamble_trace, false);
}

static const char lf_body[] = "--b\n"
			      "Content-Disposition: form-data; name=\"a\"\n"
			      "Content-Type: text/plain;\n"
			      "\tcharset=utf-8\n" /* folded */
			      "X-Ignored: yes\n"
			      "\n"
			      "line1\nline2\n--b not a delimiter"
			      "\r\n--b \n"
			      "Content-Disposition: form-data; name=\"b\"\r\n"
			      "\n"
			      "B"
			      "\r\n--b--\n";
static const char lf_trace[] = "B[a|(null)|text/plain; \tcharset=utf-8]"
			       "line1\nline2\n--b not a delimiterE;"
			       "B[b|(null)|(null)]BE;";

static void test_lf_line_endings(void **state)
{
	CHECK_ALL("b", lf_body, 0, lf_trace, false);
}

static void test_no_parts(void **state)
{
	static const char body[] = "--b--\r\n";
	const char *why;

	CHECK_ALL("b", body, 0, "", false);
	assert_int_equal(run_whole("b", "", 0, &why), -EBADMSG);
	assert_string_equal(why, "no multipart boundary found");
}

/* Malformed input ---------------------------------------------------------- */

static void expect_bad(const char *boundary, const char *body, size_t len, const char *expect_why)
{
	const char *why;

	assert_int_equal(run_whole(boundary, body, len, &why), -EBADMSG);
	assert_string_equal(why, expect_why);
	/* the same, byte by byte */
	check_all_splits(boundary, body, len, -EBADMSG, NULL, 0, false);
}

#define EXPECT_BAD(body, why) expect_bad("b", body, sizeof(body) - 1, why)

static void test_missing_closing(void **state)
{
	EXPECT_BAD("--b\r\nContent-Disposition: form-data; name=a\r\n\r\ndata",
		   "missing closing boundary");
	EXPECT_BAD("--b\r\nContent-Disposition: form-data; name=a\r\n\r\ndata\r\n--b",
		   "missing closing boundary");
	EXPECT_BAD("--b\r\nContent-Disposition: form-data; name=a\r\n\r\ndata\r\n--b-",
		   "missing closing boundary");
	EXPECT_BAD("--b\r\nContent-Disposition: form-data; name=a\r\n\r\ndata\r\n--b\r\n",
		   "missing closing boundary");
	EXPECT_BAD("--b\r\nContent-Disposition: form-data; name=a\r\n", "missing closing boundary");
	EXPECT_BAD("preamble only", "no multipart boundary found");
}

static void test_headers_too_large(void **state)
{
	static const char cd[] = "Content-Disposition: form-data; name=a\r\n";
	struct efs_buf body;
	const char *why;
	size_t pad;

	efs_buf_init(&body, 64 * EFS_KIB);
	/* exactly EFS_MULTIPART_HEADERS_MAX bytes of headers: accepted */
	pad = EFS_MULTIPART_HEADERS_MAX - (sizeof(cd) - 1) - strlen("X-Pad: \r\n");
	assert_int_equal(efs_buf_printf(&body, "--b\r\n%sX-Pad: ", cd), 0);
	for (size_t i = 0; i < pad; i++)
		assert_int_equal(efs_buf_puts(&body, "p"), 0);
	assert_int_equal(efs_buf_puts(&body, "\r\n\r\nv\r\n--b--"), 0);
	assert_int_equal(run_whole("b", body.data, body.len, &why), 0);
	check_all_splits("b", body.data, body.len, 0, NULL, 0, false);

	/* the same ended by a bare LF blank line */
	body.len = body.len - strlen("\r\nv\r\n--b--");
	assert_int_equal(efs_buf_puts(&body, "\nv\r\n--b--"), 0);
	assert_int_equal(run_whole("b", body.data, body.len, &why), 0);

	/* one more byte: refused, whatever ends the blank line */
	for (int lf_only = 0; lf_only < 2; lf_only++) {
		efs_buf_reset(&body);
		assert_int_equal(efs_buf_printf(&body, "--b\r\n%sX-Pad: p", cd), 0);
		for (size_t i = 0; i < pad; i++)
			assert_int_equal(efs_buf_puts(&body, "p"), 0);
		assert_int_equal(
		    efs_buf_puts(&body, lf_only ? "\r\n\nv\r\n--b--" : "\r\n\r\nv\r\n--b--"), 0);
		expect_bad("b", body.data, body.len, "part headers too large");
	}

	/* a never-ending header line is refused without waiting for its end */
	efs_buf_reset(&body);
	assert_int_equal(efs_buf_puts(&body, "--b\r\nX-Pad: "), 0);
	for (size_t i = 0; i < 3 * EFS_MULTIPART_HEADERS_MAX; i++)
		assert_int_equal(efs_buf_puts(&body, "p"), 0);
	assert_int_equal(run_whole("b", body.data, body.len, &why), -EBADMSG);
	assert_string_equal(why, "part headers too large");

	/* many short lines */
	efs_buf_reset(&body);
	assert_int_equal(efs_buf_printf(&body, "--b\r\n%s", cd), 0);
	for (size_t i = 0; i < EFS_MULTIPART_HEADERS_MAX / 4; i++)
		assert_int_equal(efs_buf_puts(&body, "X:\r\n"), 0);
	assert_int_equal(efs_buf_puts(&body, "\r\nv\r\n--b--"), 0);
	assert_int_equal(run_whole("b", body.data, body.len, &why), -EBADMSG);
	assert_string_equal(why, "part headers too large");
	efs_buf_release(&body);
}

static void test_bad_headers(void **state)
{
	EXPECT_BAD("--b\r\nContent-Disposition form-data; name=a\r\n\r\nv\r\n--b--",
		   "part header line without ':'");
	EXPECT_BAD("--b\r\nContent-Type: text/plain\r\n\r\nv\r\n--b--",
		   "part has no Content-Disposition: form-data");
	EXPECT_BAD("--b\r\n\r\nv\r\n--b--", "part has no Content-Disposition: form-data");
	EXPECT_BAD("--b\r\nContent-Disposition: attachment; name=a\r\n\r\nv\r\n--b--",
		   "Content-Disposition is not form-data");
	EXPECT_BAD("--b\r\nContent-Disposition: form-data; name=\"a\r\n\r\nv\r\n--b--",
		   "malformed Content-Disposition");
	EXPECT_BAD("--b\r\nContent-Disposition: form-data; name=\"a\"x\r\n\r\nv\r\n--b--",
		   "malformed Content-Disposition");
	EXPECT_BAD("--b\r\nContent-Disposition: form-data; name\r\n\r\nv\r\n--b--",
		   "malformed Content-Disposition");
	EXPECT_BAD("--b\r\nContent-Disposition: form-data; name=a; name=b\r\n\r\nv\r\n--b--",
		   "duplicate Content-Disposition parameter");
	EXPECT_BAD("--b\r\nContent-Disposition: form-data; name=a\r\n"
		   "Content-Disposition: form-data; name=b\r\n\r\nv\r\n--b--",
		   "duplicate Content-Disposition");
	EXPECT_BAD("--b\r\nContent-Disposition: form-data; name=a; filename*=UTF-8''%G1\r\n"
		   "\r\nv\r\n--b--",
		   "malformed filename*");
	EXPECT_BAD("--b\r\nContent-Disposition: form-data; name=a; filename*=UTF-8''%0A.txt\r\n"
		   "\r\nv\r\n--b--",
		   "malformed filename*");
	EXPECT_BAD("--b\r\nContent-Disposition: form-data; name=a; filename*=%E2.txt\r\n"
		   "\r\nv\r\n--b--",
		   "malformed filename*");
	EXPECT_BAD("--b\r\nContent-Disposition: form-data; name=a; filename*=UTF-8''%FF.txt\r\n"
		   "\r\nv\r\n--b--",
		   "filename* is not valid UTF-8");
	EXPECT_BAD("--b\r\nContent-Disposition: form-data; name=a\rX\r\n\r\nv\r\n--b--",
		   "invalid character in part headers");
	expect_bad("b", "--b\r\nContent-Disposition: form-data; name=a\0b\r\n\r\nv\r\n--b--",
		   sizeof("--b\r\nContent-Disposition: form-data; name=a\0b\r\n\r\nv\r\n--b--") - 1,
		   "invalid character in part headers");
	EXPECT_BAD("--b\r\n Content-Disposition: form-data; name=a\r\n\r\nv\r\n--b--",
		   "part headers start with a continuation line");
	EXPECT_BAD("--b\r\nBad Name: x\r\nContent-Disposition: form-data\r\n\r\nv\r\n--b--",
		   "invalid part header name");
}

static void test_junk_after_boundary(void **state)
{
	EXPECT_BAD("--bX\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--b--",
		   "junk after boundary");
	EXPECT_BAD("--b\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--bc--",
		   "junk after boundary");
	EXPECT_BAD("--b\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--b-x",
		   "junk after boundary");
	EXPECT_BAD("--b\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--b \r-",
		   "junk after boundary");
	EXPECT_BAD("--b\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--b --",
		   "junk after boundary");
}

static void test_part_count(void **state)
{
	struct efs_buf body;
	struct rec rec;
	const char *why;

	efs_buf_init(&body, EFS_MIB);
	assert_int_equal(efs_buf_puts(&body, "--b"), 0);
	for (int i = 0; i < EFS_MULTIPART_PARTS_MAX; i++)
		assert_int_equal(efs_buf_printf(&body,
						"\r\nContent-Disposition: form-data; name=f%d\r\n"
						"\r\n%d\r\n--b",
						i, i),
				 0);
	assert_int_equal(efs_buf_puts(&body, "--"), 0);
	rec_init(&rec);
	assert_int_equal(run_chunked("b", body.data, body.len, 7, &rec), 0);
	assert_int_equal(rec.begins, EFS_MULTIPART_PARTS_MAX);
	assert_int_equal(rec.ends, EFS_MULTIPART_PARTS_MAX);
	rec_release(&rec);

	/* the 65th part */
	body.len -= 2;
	assert_int_equal(efs_buf_puts(&body, "\r\nContent-Disposition: form-data; name=x\r\n"
					     "\r\nx\r\n--b--"),
			 0);
	assert_int_equal(run_whole("b", body.data, body.len, &why), -EBADMSG);
	assert_string_equal(why, "too many parts");
	rec_init(&rec);
	assert_int_equal(run_chunked("b", body.data, body.len, 3, &rec), -EBADMSG);
	assert_int_equal(rec.begins, EFS_MULTIPART_PARTS_MAX);
	rec_release(&rec);
	efs_buf_release(&body);
}

/* Callbacks stop the parse --------------------------------------------------- */

static void check_callback_error(int fail_begin, int fail_data, int fail_end, int begins,
				 int data_calls, int ends)
{
	struct efs_multipart *mp = NULL;
	struct rec rec;

	rec_init(&rec);
	rec.fail_begin = fail_begin;
	rec.fail_data = fail_data;
	rec.fail_end = fail_end;
	assert_int_equal(efs_multipart_new("AaB03x", &rec_cb, &rec, &mp), 0);
	assert_int_equal(efs_multipart_feed(mp, simple_body, sizeof(simple_body) - 1), -EIO);
	assert_string_equal(efs_multipart_error(mp), "stopped by a callback");
	/* nothing more happens: the parser stays failed */
	assert_int_equal(efs_multipart_feed(mp, simple_body, sizeof(simple_body) - 1), -EIO);
	assert_int_equal(efs_multipart_finish(mp), -EIO);
	assert_int_equal(rec.begins, begins);
	assert_int_equal(rec.data_calls, data_calls);
	assert_int_equal(rec.ends, ends);
	efs_multipart_free(mp);
	rec_release(&rec);
}

static void test_callback_error(void **state)
{
	check_callback_error(1, 0, 0, 1, 0, 0);
	check_callback_error(2, 0, 0, 2, 1, 1);
	check_callback_error(0, 1, 0, 1, 1, 0);
	check_callback_error(0, 2, 0, 2, 2, 1);
	check_callback_error(0, 0, 1, 1, 1, 1);
	check_callback_error(0, 0, 2, 2, 2, 2);
}

static void test_failed_stays_failed(void **state)
{
	static const char bad_body[] = "--b\r\nno colon\r\n\r\n";
	static const char good_body[] = "--b\r\nContent-Disposition: form-data\r\n\r\n\r\n--b--";
	struct efs_multipart *mp = NULL;
	struct rec rec;

	rec_init(&rec);
	assert_int_equal(efs_multipart_new("b", &rec_cb, &rec, &mp), 0);
	assert_int_equal(efs_multipart_feed(mp, bad_body, sizeof(bad_body) - 1), -EBADMSG);
	assert_int_equal(efs_multipart_feed(mp, good_body, sizeof(good_body) - 1), -EBADMSG);
	assert_int_equal(efs_multipart_finish(mp), -EBADMSG);
	assert_string_equal(efs_multipart_error(mp), "part header line without ':'");
	assert_int_equal(rec.begins, 0);
	efs_multipart_free(mp);
	rec_release(&rec);
}

/* Memory ------------------------------------------------------------------- */

/* 64 MiB in 64 KiB feeds, each ending in all but the last byte of the
 * delimiter, so the parser has to hold back the most it ever may. Checked
 * through efs_multipart_buffered and through what was delivered after each
 * feed; the parser itself allocates nothing after efs_multipart_new. */
static void test_memory_bounded(void **state)
{
	static const char boundary[] = "----EchoFSBoundary7MA4YWxkTrZu0gW";
	const size_t delim_len = 4 + sizeof(boundary) - 1;
	const size_t piece = 64 * EFS_KIB, total = 64 * EFS_MIB;
	struct efs_multipart *mp = NULL;
	struct rec rec;
	char *buf = malloc(piece);
	char head[256], tail[128];
	uint64_t hash = EFS_FNV1A_INIT;
	int head_len, tail_len;

	assert_non_null(buf);
	for (size_t i = 0; i < piece; i++)
		buf[i] = (char)('a' + i % 26);
	/* the piece ends in "\r\n--" + boundary minus its last character */
	buf[piece - delim_len + 1] = '\r';
	buf[piece - delim_len + 2] = '\n';
	memcpy(buf + piece - delim_len + 3, "--", 2);
	memcpy(buf + piece - delim_len + 5, boundary, sizeof(boundary) - 2);
	for (size_t n = 0; n < total / piece; n++)
		hash = efs_fnv1a(hash, buf, piece);

	head_len = snprintf(head, sizeof(head),
			    "--%s\r\nContent-Disposition: form-data; name=\"big\"; "
			    "filename=\"big.bin\"\r\n\r\n",
			    boundary);
	tail_len = snprintf(tail, sizeof(tail), "\r\n--%s--\r\n", boundary);
	rec_init(&rec);
	rec.no_trace = true;
	assert_int_equal(efs_multipart_new(boundary, &rec_cb, &rec, &mp), 0);
	assert_int_equal(efs_multipart_feed(mp, head, (size_t)head_len), 0);
	assert_int_equal(efs_multipart_buffered(mp), 0);
	for (size_t fed = piece; fed <= total; fed += piece) {
		assert_int_equal(efs_multipart_feed(mp, buf, piece), 0);
		assert_true(efs_multipart_buffered(mp) < delim_len);
		assert_int_equal(efs_multipart_buffered(mp), delim_len - 1);
		assert_int_equal(rec.delivered + efs_multipart_buffered(mp), fed);
	}
	assert_int_equal(efs_multipart_feed(mp, tail, (size_t)tail_len), 0);
	assert_int_equal(efs_multipart_finish(mp), 0);
	assert_int_equal(rec.delivered, total);
	assert_true(rec.hash == hash);
	assert_int_equal(rec.ends, 1);
	/* two deliveries per feed at most: the held-back bytes and the rest */
	assert_true(rec.data_calls <= (int)(2 * total / piece + 2));
	efs_multipart_free(mp);
	rec_release(&rec);
	free(buf);
}

static void test_buffered_headers(void **state)
{
	static const char part[] = "--b\r\nContent-Disposition: form-data; name=a\r\nX-A: 1";
	struct efs_multipart *mp = NULL;
	struct rec rec;

	rec_init(&rec);
	assert_int_equal(efs_multipart_new("b", &rec_cb, &rec, &mp), 0);
	assert_int_equal(efs_multipart_buffered(mp), 0);
	assert_int_equal(efs_multipart_feed(mp, part, sizeof(part) - 1), 0);
	/* the header lines so far */
	assert_int_equal(efs_multipart_buffered(mp),
			 strlen("Content-Disposition: form-data; name=a\r\nX-A: 1"));
	assert_int_equal(efs_multipart_buffered(NULL), 0);
	efs_multipart_free(mp);
	rec_release(&rec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_boundary_extract),	cmocka_unit_test(test_new_args),
	    cmocka_unit_test(test_simple_whole),	cmocka_unit_test(test_simple_every_split),
	    cmocka_unit_test(test_binary_lookalikes),	cmocka_unit_test(test_empty_body),
	    cmocka_unit_test(test_large_random_file),	cmocka_unit_test(test_disposition_params),
	    cmocka_unit_test(test_name_limits),		cmocka_unit_test(test_preamble_epilogue),
	    cmocka_unit_test(test_lf_line_endings),	cmocka_unit_test(test_no_parts),
	    cmocka_unit_test(test_missing_closing),	cmocka_unit_test(test_headers_too_large),
	    cmocka_unit_test(test_bad_headers),		cmocka_unit_test(test_junk_after_boundary),
	    cmocka_unit_test(test_part_count),		cmocka_unit_test(test_callback_error),
	    cmocka_unit_test(test_failed_stays_failed), cmocka_unit_test(test_memory_bounded),
	    cmocka_unit_test(test_buffered_headers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
