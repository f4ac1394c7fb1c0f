/* SPDX-License-Identifier: MIT */
/* test_http_error.c - unit tests of the error table (include/echofs/http_error.h).
 *
 * docs/API.md's "Error codes" table and the C table list the same
 * (code, status) pairs, both ways; the "Errors that any endpoint can
 * return" table lists only pairs of the C table. Every operation has a
 * catch-all rule, and messages are expanded as documented. Run from the
 * repository root (as `make unit` does): the doc is read from docs/API.md.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "echofs/http_error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOC_PATH "docs/API.md"
#define MAX_PAIRS 128

struct pair {
	char code[64];
	unsigned status;
	bool seen;
};

static int add_pair(struct pair *pairs, int n, const char *code, size_t len, unsigned status)
{
	assert_true(n < MAX_PAIRS);
	assert_true(len < sizeof(pairs[n].code));
	memcpy(pairs[n].code, code, len);
	pairs[n].code[len] = '\0';
	pairs[n].status = status;
	pairs[n].seen = false;
	return n + 1;
}

/* Every `code` in @cell, each paired with @status. */
static int add_codes(struct pair *pairs, int n, const char *cell, size_t cell_len, unsigned status)
{
	const char *end = cell + cell_len;
	for (const char *p = cell; p < end;) {
		const char *open = memchr(p, '`', (size_t)(end - p));
		if (!open)
			break;
		const char *close = memchr(open + 1, '`', (size_t)(end - open - 1));
		assert_non_null(close);
		n = add_pair(pairs, n, open + 1, (size_t)(close - open - 1), status);
		p = close + 1;
	}
	return n;
}

/* Reads the markdown table rows after the line starting with @heading, up
 * to the next heading; @code_col and @status_col are 0-based cells. */
static int read_doc_table(const char *heading, int code_col, int status_col, struct pair *pairs)
{
	FILE *f = fopen(DOC_PATH, "r");
	if (!f)
		fail_msg("cannot open %s: run the unit tests from the repository root", DOC_PATH);
	char line[2048];
	bool in_section = false;
	int n = 0;
	while (fgets(line, sizeof(line), f)) {
		if (!in_section) {
			in_section = strncmp(line, heading, strlen(heading)) == 0;
			continue;
		}
		if (line[0] == '#')
			break;
		if (line[0] != '|' || strncmp(line, "|---", 4) == 0)
			continue;
		/* Split the row into cells. */
		const char *cells[8];
		size_t lens[8];
		int count = 0;
		for (char *p = line + 1; *p && *p != '\n' && count < 8;) {
			char *bar = strchr(p, '|');
			if (!bar)
				break;
			cells[count] = p;
			lens[count] = (size_t)(bar - p);
			count++;
			p = bar + 1;
		}
		if (count <= code_col || count <= status_col)
			continue;
		char status_text[16] = "";
		size_t sl = lens[status_col] < sizeof(status_text) - 1 ? lens[status_col]
								       : sizeof(status_text) - 1;
		memcpy(status_text, cells[status_col], sl);
		unsigned long status = strtoul(status_text, NULL, 10);
		if (status == 0)
			continue; /* the header row */
		n = add_codes(pairs, n, cells[code_col], lens[code_col], (unsigned)status);
	}
	fclose(f);
	if (!in_section)
		fail_msg("%s has no section \"%s\"", DOC_PATH, heading);
	return n;
}

static bool in_c_table(const struct pair *p)
{
	for (int i = 0; i < EFS_HTTP_E_COUNT; i++) {
		const struct efs_http_error_kind *k = efs_http_error_kind((enum efs_http_err)i);
		if (strcmp(k->code, p->code) == 0 && k->status == p->status)
			return true;
	}
	return false;
}

static void test_doc_error_codes_match_the_table(void **state)
{
	struct pair doc[MAX_PAIRS];
	int n = read_doc_table("## Error codes", 0, 1, doc);
	int missing = 0;

	assert_true(n > 0);
	for (int i = 0; i < n; i++) {
		if (!in_c_table(&doc[i])) {
			print_error("docs/API.md lists %s %u, which the C table does not\n",
				    doc[i].code, doc[i].status);
			missing++;
		}
	}
	for (int e = 0; e < EFS_HTTP_E_COUNT; e++) {
		const struct efs_http_error_kind *k = efs_http_error_kind((enum efs_http_err)e);
		bool found = false;
		for (int i = 0; i < n && !found; i++)
			found = strcmp(doc[i].code, k->code) == 0 && doc[i].status == k->status;
		if (!found) {
			print_error("the C table has %s %u, which docs/API.md's Error codes "
				    "table does not list\n",
				    k->code, k->status);
			missing++;
		}
	}
	assert_int_equal(missing, 0);
}

static void test_doc_common_errors_are_in_the_table(void **state)
{
	struct pair doc[MAX_PAIRS];
	int n = read_doc_table("Errors that any endpoint can return", 1, 0, doc);
	assert_true(n >= 7);
	for (int i = 0; i < n; i++)
		if (!in_c_table(&doc[i]))
			fail_msg("docs/API.md's common errors list %s %u, which the C table "
				 "does not",
				 doc[i].code, doc[i].status);
}

static void test_every_kind_has_a_row(void **state)
{
	for (int e = 0; e < EFS_HTTP_E_COUNT; e++) {
		const struct efs_http_error_kind *k = efs_http_error_kind((enum efs_http_err)e);
		assert_non_null(k);
		assert_non_null(k->code);
		assert_true(k->status >= 400 && k->status < 600);
	}
	assert_null(efs_http_error_kind(EFS_HTTP_E_COUNT));
}

static void test_every_op_has_a_catch_all(void **state)
{
	for (int op = 0; op < EFS_HTTP_OP_COUNT; op++) {
		const struct efs_http_errno_rule *r =
		    efs_http_errno_rule((enum efs_http_op)op, -ENOTRECOVERABLE);
		assert_non_null(r);
		assert_int_equal(r->op, op);
		assert_int_equal(r->err, 0);
		assert_true(efs_http_error_kind(r->kind)->status >= 500);
	}
}

/* One errno, several meanings: the operation decides. */
static void test_errno_depends_on_the_operation(void **state)
{
	struct {
		enum efs_http_op op;
		int err;
		unsigned status;
		const char *code;
	} cases[] = {
	    {EFS_HTTP_OP_FILE, -ENOENT, 404, "file_not_found"},
	    {EFS_HTTP_OP_SESSION, -ENOENT, 404, "session_not_found"},
	    {EFS_HTTP_OP_WORKER, -ENOENT, 404, "worker_not_found"},
	    {EFS_HTTP_OP_CHUNK_READ, -ENOENT, 404, "chunk_not_found"},
	    {EFS_HTTP_OP_META, -ENOENT, 500, "internal_error"},
	    {EFS_HTTP_OP_META, -EAGAIN, 503, "metadata_unavailable"},
	    {EFS_HTTP_OP_FILE, -EAGAIN, 503, "metadata_unavailable"},
	    {EFS_HTTP_OP_STORE_CHUNK, -ENOSPC, 503, "no_capacity"},
	    {EFS_HTTP_OP_STORE_FILE, -ENOSPC, 503, "no_capacity"},
	    {EFS_HTTP_OP_STORE_FILE, -EIO, 500, "store_failed"},
	    {EFS_HTTP_OP_CHUNK_WRITE, -ENOSPC, 507, "insufficient_storage"},
	    {EFS_HTTP_OP_CHUNK_WRITE, -EBADMSG, 400, "checksum_mismatch"},
	    {EFS_HTTP_OP_CHUNK_READ, -EBADMSG, 500, "chunk_corrupt"},
	    {EFS_HTTP_OP_CHUNK_STAT, -EBADMSG, 404, "chunk_not_found"},
	    {EFS_HTTP_OP_CHUNK_DELETE, -EBUSY, 412, "chunk_rewritten"},
	    {EFS_HTTP_OP_DOWNLOAD, -EIO, 503, "chunk_unavailable"},
	    {EFS_HTTP_OP_DOWNLOAD, -ENOENT, 404, "file_not_found"},
	    {EFS_HTTP_OP_READ_BACK, -EAGAIN, 503, "chunk_unavailable"},
	    {EFS_HTTP_OP_REQUEST, -ENOMEM, 500, "internal_error"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct efs_http_errno_rule *r =
		    efs_http_errno_rule(cases[i].op, cases[i].err);
		const struct efs_http_error_kind *k = efs_http_error_kind(r->kind);
		if (k->status != cases[i].status || strcmp(k->code, cases[i].code) != 0)
			fail_msg("case %zu: op %d errno %d gave %u %s, not %u %s", i, cases[i].op,
				 cases[i].err, k->status, k->code, cases[i].status, cases[i].code);
		assert_int_equal(efs_http_errno_status(cases[i].op, cases[i].err), cases[i].status);
	}
}

static void test_message_expansion(void **state)
{
	char out[128];
	const struct efs_http_errno_rule *r = efs_http_errno_rule(EFS_HTTP_OP_FILE, -ENOENT);
	efs_http_errno_message(r, -ENOENT, "abc", out, sizeof(out));
	assert_string_equal(out, "no file abc");

	r = efs_http_errno_rule(EFS_HTTP_OP_STORE_FILE, -EIO);
	efs_http_errno_message(r, -EIO, "chunk 3", out, sizeof(out));
	assert_string_equal(out, "cannot store chunk 3: Input/output error");

	efs_http_errno_message(r, -EIO, NULL, out, sizeof(out));
	assert_string_equal(out, "cannot store : Input/output error");

	/* Cut at the buffer, always terminated. */
	efs_http_errno_message(r, -EIO, "chunk 3", out, 8);
	assert_string_equal(out, "cannot ");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_doc_error_codes_match_the_table),
	    cmocka_unit_test(test_doc_common_errors_are_in_the_table),
	    cmocka_unit_test(test_every_kind_has_a_row),
	    cmocka_unit_test(test_every_op_has_a_catch_all),
	    cmocka_unit_test(test_errno_depends_on_the_operation),
	    cmocka_unit_test(test_message_expansion),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
