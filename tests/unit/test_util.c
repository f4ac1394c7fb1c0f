/* SPDX-License-Identifier: MIT */
/* test_util.c - unit tests of util.h and buf.h: number parsing with size
 * suffixes, id and secret checks, bounded string copy, ISO 8601 times,
 * atomic file writes and capped reads, and the capped growable buffer. */
#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "echofs/buf.h"
#include "echofs/util.h"

/* ---- helpers --------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void rm_rf(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int tmpdir_setup(void **state)
{
	char *dir = strdup("/tmp/echofs-test-util-XXXXXX");
	if (!dir || !mkdtemp(dir)) {
		free(dir);
		return -1;
	}
	*state = dir;
	return 0;
}

static int tmpdir_teardown(void **state)
{
	char *dir = *state;
	rm_rf(dir);
	free(dir);
	return 0;
}

/* Parses @s and asserts success with @want. */
static void parse_ok(const char *s, bool suffix, uint64_t want)
{
	uint64_t v = 12345;
	int r = efs_parse_u64(s, suffix, &v);
	if (r != 0)
		print_error("efs_parse_u64(\"%s\", %d) returned %d\n", s, suffix, r);
	assert_int_equal(r, 0);
	assert_true(v == want);
}

/* Parses @s and asserts failure with @err and an untouched output. */
static void parse_fails(const char *s, bool suffix, int err)
{
	uint64_t v = 12345;
	int r = efs_parse_u64(s, suffix, &v);
	if (r != err)
		print_error("efs_parse_u64(\"%s\", %d) returned %d, wanted %d\n", s ? s : "(null)",
			    suffix, r, err);
	assert_int_equal(r, err);
	assert_true(v == 12345);
}

/* ---- efs_parse_u64 --------------------------------------------------- */

/* Digests as S3 headers carry them: exact lengths, one encoding each. */
static void test_base64_decode_exact(void **state)
{
	unsigned char out[32], md5[16];
	memset(out, 0x55, sizeof(out));
	assert_int_equal(efs_base64_decode_exact("AAAAAA==", out, 4), 0);
	assert_memory_equal(out, "\0\0\0\0", 4);
	/* the CRC-32 of "123456789" */
	assert_int_equal(efs_base64_decode_exact("y/Q5Jg==", out, 4), 0);
	assert_memory_equal(out, "\xcb\xf4\x39\x26", 4);
	/* MD5("") = d41d8cd98f00b204e9800998ecf8427e */
	assert_int_equal(efs_base64_decode_exact("1B2M2Y8AsgTpgAmY7PhCfg==", md5, 16), 0);
	assert_memory_equal(md5, "\xd4\x1d\x8c\xd9\x8f\x00\xb2\x04\xe9\x80\x09\x98\xec\xf8\x42\x7e",
			    16);
	assert_int_equal(
	    efs_base64_decode_exact("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", out, 32), 0);
	assert_int_equal(out[0], 0xe3);
	assert_int_equal(out[31], 0x55);
	memset(out, 0x77, sizeof(out));
	const char *bad[] = {"", "AAAA", "AAAAAA=", "AAAAAAA=", "AAAAA===", "AAAAAB==",
			     "AA=AAA==", "AAAA AA=", "AAAAAA=="};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]) - 1; i++)
		assert_int_equal(efs_base64_decode_exact(bad[i], out, 4), -EINVAL);
	assert_int_equal(efs_base64_decode_exact(bad[8], out, 5), -EINVAL); /* length */
	assert_int_equal(efs_base64_decode_exact("AAAAAA==", out, 0), -EINVAL);
	assert_int_equal(out[0], 0x77); /* untouched */
}

static void test_parse_u64_plain(void **state)
{
	parse_ok("0", false, 0);
	parse_ok("7", false, 7);
	parse_ok("000123", false, 123);
	parse_ok("4194304", false, 4194304);
	parse_ok("18446744073709551615", false, UINT64_MAX);
	parse_ok("18446744073709551615", true, UINT64_MAX);
}

static void test_parse_u64_suffixes(void **state)
{
	parse_ok("1K", true, 1024);
	parse_ok("1k", true, 1024);
	parse_ok("4M", true, 4 * EFS_MIB);
	parse_ok("4m", true, 4 * EFS_MIB);
	parse_ok("10G", true, 10 * EFS_GIB);
	parse_ok("2T", true, 2 * EFS_GIB * 1024);
	parse_ok("4KiB", true, 4096);
	parse_ok("4MiB", true, 4 * EFS_MIB);
	parse_ok("3GiB", true, 3 * EFS_GIB);
	parse_ok("1TiB", true, EFS_GIB * 1024);
	parse_ok("4KB", true, 4096);
	parse_ok("4MB", true, 4 * EFS_MIB);
	parse_ok("1GB", true, EFS_GIB);
	parse_ok("1TB", true, EFS_GIB * 1024);
	parse_ok("0M", true, 0);
	/* the largest value a suffix still fits */
	parse_ok("17179869183G", true, (UINT64_MAX >> 30) << 30);
	parse_ok("16777215T", true, (UINT64_MAX >> 40) << 40);
}

static void test_parse_u64_suffix_not_allowed(void **state)
{
	parse_fails("4M", false, -EINVAL);
	parse_fails("1K", false, -EINVAL);
	parse_fails("1KiB", false, -EINVAL);
}

static void test_parse_u64_overflow(void **state)
{
	parse_fails("18446744073709551616", false, -ERANGE);
	parse_fails("18446744073709551620", false, -ERANGE);
	parse_fails("99999999999999999999999", false, -ERANGE);
	parse_fails("99999999999999999999999", true, -ERANGE);
	parse_fails("17179869184G", true, -ERANGE);
	parse_fails("16777216T", true, -ERANGE);
	parse_fails("18446744073709551615K", true, -ERANGE);
}

static void test_parse_u64_garbage(void **state)
{
	static const char *const bad[] = {
		"",     " ",   "abc", "12abc", "1.5",  "0x10", "-1",    "+1",   " 1",
		"1 ",   "1\n", "K",   "1X",    "1KK",  "1Ki",  "1KiBx", "1Kb",  "1B",
		"1iB",  "1 K", "1,0", "1e3",   "M4",   "-0",   "\t7",   "4M ",
	};
	for (size_t i = 0; i < EFS_ARRAY_SIZE(bad); i++) {
		parse_fails(bad[i], true, -EINVAL);
		parse_fails(bad[i], false, -EINVAL);
	}
	parse_fails(NULL, true, -EINVAL);
}

/* ---- ids and secrets -------------------------------------------------- */

static void test_id_valid(void **state)
{
	char id64[EFS_ID_MAX + 2];

	assert_true(efs_id_valid("a"));
	assert_true(efs_id_valid("worker-1"));
	assert_true(efs_id_valid("Abc_DEF-123"));
	assert_false(efs_id_valid(NULL));
	assert_false(efs_id_valid(""));
	assert_false(efs_id_valid("a b"));
	assert_false(efs_id_valid("a/b"));
	assert_false(efs_id_valid("../x"));
	assert_false(efs_id_valid("a.b"));
	assert_false(efs_id_valid("a'b"));
	assert_false(efs_id_valid("a\nb"));
	assert_false(efs_id_valid("caf\xc3\xa9"));

	memset(id64, 'x', EFS_ID_MAX);
	id64[EFS_ID_MAX] = '\0';
	assert_true(efs_id_valid(id64));
	id64[EFS_ID_MAX] = 'x';
	id64[EFS_ID_MAX + 1] = '\0';
	assert_false(efs_id_valid(id64));
}

/* ---- UTF-8 and names -------------------------------------------------- */

#define UTF8_OK(lit) assert_true(efs_utf8_valid(lit, sizeof(lit) - 1))
#define UTF8_BAD(lit) assert_false(efs_utf8_valid(lit, sizeof(lit) - 1))

static void test_utf8_valid(void **state)
{
	UTF8_OK("");
	UTF8_OK("plain ascii");
	UTF8_OK("caf\xc3\xa9");			 /* U+00E9 */
	UTF8_OK("\xe2\x82\xac");		 /* U+20AC, three bytes */
	UTF8_OK("\xf0\x9f\x98\x80");		 /* U+1F600, four bytes */
	UTF8_OK("\xf4\x8f\xbf\xbf");		 /* U+10FFFF, the last */
	UTF8_OK("a\0b");			 /* NUL is a byte like others here */
	UTF8_BAD("\xc3");			 /* cut after the lead byte */
	UTF8_BAD("\xe2\x82");			 /* cut in a three-byte form */
	UTF8_BAD("\xc0\xaf");			 /* overlong '/' */
	UTF8_BAD("\xe0\x80\xaf");		 /* overlong, three bytes */
	UTF8_BAD("\xf0\x80\x80\xaf");		 /* overlong, four bytes */
	UTF8_BAD("\xed\xa0\x80");		 /* surrogate U+D800 */
	UTF8_BAD("\xf4\x90\x80\x80");		 /* past U+10FFFF */
	UTF8_BAD("\xff");			 /* never a lead byte */
	UTF8_BAD("\x80");			 /* continuation without a lead */
	UTF8_BAD("\xc3\x28");			 /* lead followed by ASCII */
	/* The length bounds the check: a valid prefix of a cut sequence. */
	assert_true(efs_utf8_valid("ab\xc3\xa9", 2));
	assert_false(efs_utf8_valid("ab\xc3\xa9", 3));
}

static void test_name_valid(void **state)
{
	char name[300];

	assert_true(efs_name_valid("report.pdf", 255));
	assert_true(efs_name_valid("caf\xc3\xa9 \xe2\x82\xac.txt", 255));
	assert_false(efs_name_valid(NULL, 255));
	assert_false(efs_name_valid("", 255));
	assert_false(efs_name_valid("a\nb", 255));
	assert_false(efs_name_valid("a\x7f", 255));
	assert_false(efs_name_valid("a\x1b[31m", 255));
	assert_false(efs_name_valid("bad\xc0\xaf", 255));
	assert_false(efs_name_valid("cut\xe2\x82", 255));
	assert_false(efs_name_valid("sur\xed\xa0\x80", 255));

	memset(name, 'x', 255);
	name[255] = '\0';
	assert_true(efs_name_valid(name, 255));
	name[255] = 'x';
	name[256] = '\0';
	assert_false(efs_name_valid(name, 255));
	/* The bound is in bytes: two-byte characters count twice. */
	assert_true(efs_name_valid("\xc3\xa9\xc3\xa9", 4));
	assert_false(efs_name_valid("\xc3\xa9\xc3\xa9", 3));
}

static void test_chunk_id_valid(void **state)
{
	char id[80];

	memset(id, 0, sizeof(id));
	memset(id, 'a', 64);
	assert_true(efs_chunk_id_valid(id));
	assert_true(efs_chunk_id_valid(
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
	assert_true(efs_chunk_id_valid(
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));

	assert_false(efs_chunk_id_valid(NULL));
	assert_false(efs_chunk_id_valid(""));
	/* uppercase hex is not the canonical form */
	assert_false(efs_chunk_id_valid(
		"E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"));
	id[10] = 'A';
	assert_false(efs_chunk_id_valid(id));
	id[10] = 'g';
	assert_false(efs_chunk_id_valid(id));
	id[10] = '-';
	assert_false(efs_chunk_id_valid(id));
	id[10] = 'a';
	/* 63 and 65 digits */
	id[63] = '\0';
	assert_false(efs_chunk_id_valid(id));
	id[63] = 'a';
	id[64] = 'a';
	assert_false(efs_chunk_id_valid(id));
	id[64] = '\0';
	assert_true(efs_chunk_id_valid(id));
}

static void test_secret_equal(void **state)
{
	assert_true(efs_secret_equal("s3cret", "s3cret"));
	assert_true(efs_secret_equal("", ""));
	assert_false(efs_secret_equal("s3cret", "s3creT"));
	assert_false(efs_secret_equal("s3cret", "s3cre"));
	assert_false(efs_secret_equal("s3cret", "s3crett"));
	assert_false(efs_secret_equal("s3cret", ""));
	assert_false(efs_secret_equal(NULL, "s3cret"));
	assert_false(efs_secret_equal("s3cret", NULL));
	assert_false(efs_secret_equal(NULL, NULL));
}

/* ---- strings and times ------------------------------------------------ */

static void test_strlcpy(void **state)
{
	char dst[8];

	memset(dst, '#', sizeof(dst));
	assert_int_equal(efs_strlcpy(dst, "abc", sizeof(dst)), 3);
	assert_string_equal(dst, "abc");

	/* exactly fits: 7 characters and the NUL */
	assert_int_equal(efs_strlcpy(dst, "1234567", sizeof(dst)), 7);
	assert_string_equal(dst, "1234567");

	/* truncated, still terminated, returns the source length */
	memset(dst, '#', sizeof(dst));
	assert_int_equal(efs_strlcpy(dst, "0123456789", sizeof(dst)), 10);
	assert_string_equal(dst, "0123456");
	assert_int_equal(dst[7], '\0');

	assert_int_equal(efs_strlcpy(dst, "", sizeof(dst)), 0);
	assert_string_equal(dst, "");

	/* size 1: only the NUL */
	dst[0] = 'x';
	assert_int_equal(efs_strlcpy(dst, "abc", 1), 3);
	assert_int_equal(dst[0], '\0');

	/* size 0: nothing written */
	memset(dst, '#', sizeof(dst));
	assert_int_equal(efs_strlcpy(dst, "abc", 0), 3);
	assert_int_equal(dst[0], '#');
}

static void test_iso8601(void **state)
{
	char out[EFS_ISO8601_LEN];

	assert_ptr_equal(efs_iso8601(0, out), out);
	assert_string_equal(out, "1970-01-01T00:00:00Z");
	assert_string_equal(efs_iso8601(1795687200000LL, out), "2026-11-26T10:00:00Z");
	/* milliseconds are dropped, not rounded */
	assert_string_equal(efs_iso8601(1795687200999LL, out), "2026-11-26T10:00:00Z");
	assert_string_equal(efs_iso8601(951782400000LL, out), "2000-02-29T00:00:00Z");
	assert_string_equal(efs_iso8601(1704067199000LL, out), "2023-12-31T23:59:59Z");
}

/* ---- files ------------------------------------------------------------ */

static void path_in(char *out, size_t size, const char *dir, const char *name)
{
	int n = snprintf(out, size, "%s/%s", dir, name);
	assert_true(n > 0 && (size_t)n < size);
}

static void test_write_read_file(void **state)
{
	const char *dir = *state;
	char path[PATH_MAX], out[64];
	static const char text[] = "hello, echofs\n";

	path_in(path, sizeof(path), dir, "state.json");
	assert_int_equal(efs_write_file_atomic(path, text, strlen(text)), 0);
	memset(out, '#', sizeof(out));
	assert_int_equal(efs_read_file(path, out, sizeof(out)), (long)strlen(text));
	assert_string_equal(out, text);

	/* overwrite with shorter content: the old bytes are gone */
	assert_int_equal(efs_write_file_atomic(path, "v2", 2), 0);
	assert_int_equal(efs_read_file(path, out, sizeof(out)), 2);
	assert_string_equal(out, "v2");

	/* an empty file */
	assert_int_equal(efs_write_file_atomic(path, "", 0), 0);
	out[0] = 'x';
	assert_int_equal(efs_read_file(path, out, sizeof(out)), 0);
	assert_string_equal(out, "");

	/* no temporary file is left behind */
	char tmp[PATH_MAX + 32];
	int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	assert_true(n > 0 && (size_t)n < sizeof(tmp));
	assert_int_equal(access(tmp, F_OK), -1);
	assert_int_equal(errno, ENOENT);

	/* private to the owner */
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_read_file_sizes(void **state)
{
	const char *dir = *state;
	char path[PATH_MAX], out[8];

	path_in(path, sizeof(path), dir, "sized");

	/* cap - 1 bytes fit exactly */
	assert_int_equal(efs_write_file_atomic(path, "1234567", 7), 0);
	memset(out, '#', sizeof(out));
	assert_int_equal(efs_read_file(path, out, sizeof(out)), 7);
	assert_string_equal(out, "1234567");

	/* one byte more is too large */
	assert_int_equal(efs_write_file_atomic(path, "12345678", 8), 0);
	assert_int_equal(efs_read_file(path, out, sizeof(out)), -E2BIG);

	/* much more too */
	char big[4096];
	memset(big, 'z', sizeof(big));
	assert_int_equal(efs_write_file_atomic(path, big, sizeof(big)), 0);
	assert_int_equal(efs_read_file(path, out, sizeof(out)), -E2BIG);
}

static void test_read_file_missing(void **state)
{
	const char *dir = *state;
	char path[PATH_MAX], out[16];

	path_in(path, sizeof(path), dir, "does-not-exist");
	memset(out, '#', sizeof(out));
	assert_int_equal(efs_read_file(path, out, sizeof(out)), -ENOENT);
	assert_int_equal(out[0], '#');

	/* writing into a missing directory fails with -ENOENT, creates nothing */
	path_in(path, sizeof(path), dir, "no-such-dir/file");
	assert_int_equal(efs_write_file_atomic(path, "x", 1), -ENOENT);
	path_in(path, sizeof(path), dir, "no-such-dir");
	assert_int_equal(access(path, F_OK), -1);
}

/* ---- efs_buf ----------------------------------------------------------- */

static void test_buf_append(void **state)
{
	struct efs_buf b;

	efs_buf_init(&b, 64);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 64);

	assert_int_equal(efs_buf_append(&b, "abc", 3), 0);
	assert_int_equal(efs_buf_puts(&b, "def"), 0);
	assert_int_equal(b.len, 6);
	assert_string_equal(b.data, "abcdef");

	/* binary data with NULs keeps its length */
	assert_int_equal(efs_buf_append(&b, "\0x", 2), 0);
	assert_int_equal(b.len, 8);
	assert_memory_equal(b.data, "abcdef\0x", 9);

	efs_buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");
	assert_int_equal(efs_buf_puts(&b, "again"), 0);
	assert_string_equal(b.data, "again");

	efs_buf_release(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	/* released buffers are reusable, with the same cap */
	assert_int_equal(efs_buf_puts(&b, "reuse"), 0);
	assert_string_equal(b.data, "reuse");
	efs_buf_release(&b);
	efs_buf_release(NULL);
}

static void test_buf_cap(void **state)
{
	struct efs_buf b;

	efs_buf_init(&b, 10);
	assert_int_equal(efs_buf_puts(&b, "0123456"), 0);

	/* 7 + 4 > 10: refused, the buffer is as it was */
	assert_int_equal(efs_buf_append(&b, "abcd", 4), -E2BIG);
	assert_int_equal(b.len, 7);
	assert_string_equal(b.data, "0123456");
	assert_int_equal(efs_buf_puts(&b, "abcd"), -E2BIG);
	assert_string_equal(b.data, "0123456");
	assert_int_equal(efs_buf_printf(&b, "%d", 1234), -E2BIG);
	assert_int_equal(b.len, 7);
	assert_string_equal(b.data, "0123456");
	assert_int_equal(efs_buf_reserve(&b, 4), -E2BIG);
	assert_int_equal(efs_buf_reserve(&b, SIZE_MAX), -E2BIG);
	assert_int_equal(efs_buf_append(&b, "x", SIZE_MAX), -E2BIG);
	assert_int_equal(b.len, 7);

	/* up to the cap exactly is fine */
	assert_int_equal(efs_buf_append(&b, "abc", 3), 0);
	assert_int_equal(b.len, 10);
	assert_string_equal(b.data, "0123456abc");
	assert_true(b.alloc >= 11);
	assert_int_equal(efs_buf_append(&b, "", 0), 0);
	assert_int_equal(efs_buf_append(&b, "z", 1), -E2BIG);
	assert_string_equal(b.data, "0123456abc");
	efs_buf_release(&b);

	/* a zero cap holds only the empty string */
	efs_buf_init(&b, 0);
	assert_int_equal(efs_buf_append(&b, "a", 1), -E2BIG);
	assert_int_equal(efs_buf_puts(&b, ""), 0);
	assert_string_equal(b.data, "");
	efs_buf_release(&b);
}

static void test_buf_printf(void **state)
{
	struct efs_buf b;

	efs_buf_init(&b, 4096);
	assert_int_equal(efs_buf_printf(&b, "%s=%d", "chunks", 42), 0);
	assert_int_equal(efs_buf_printf(&b, ";%05u;%s", 7u, ""), 0);
	assert_string_equal(b.data, "chunks=42;00007;");
	assert_int_equal(b.len, strlen("chunks=42;00007;"));

	/* growing past the first allocation keeps the earlier text */
	for (int i = 0; i < 100; i++)
		assert_int_equal(efs_buf_printf(&b, "%03d,", i), 0);
	assert_int_equal(b.len, 16 + 100 * 4);
	assert_memory_equal(b.data, "chunks=42;00007;000,001,", 24);
	assert_string_equal(b.data + b.len - 4, "099,");
	efs_buf_release(&b);

	/* exactly to the cap with printf */
	efs_buf_init(&b, 5);
	assert_int_equal(efs_buf_printf(&b, "%d", 12345), 0);
	assert_string_equal(b.data, "12345");
	assert_int_equal(efs_buf_printf(&b, "%s", "x"), -E2BIG);
	assert_string_equal(b.data, "12345");
	efs_buf_release(&b);
}

static void test_buf_detach(void **state)
{
	struct efs_buf b;

	efs_buf_init(&b, 100);
	assert_int_equal(efs_buf_puts(&b, "take me"), 0);
	char *s = efs_buf_detach(&b);
	assert_non_null(s);
	assert_string_equal(s, "take me");
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.alloc, 0);
	free(s);

	/* after a detach the buffer works again, same cap */
	assert_int_equal(efs_buf_puts(&b, "more"), 0);
	assert_string_equal(b.data, "more");
	assert_int_equal(b.cap, 100);
	efs_buf_release(&b);

	/* nothing appended: an empty, freeable string */
	efs_buf_init(&b, 100);
	s = efs_buf_detach(&b);
	assert_non_null(s);
	assert_string_equal(s, "");
	free(s);
}

static void test_hex_value(void **state)
{
	(void)state;
	assert_int_equal(efs_hex_value('0'), 0);
	assert_int_equal(efs_hex_value('9'), 9);
	assert_int_equal(efs_hex_value('a'), 10);
	assert_int_equal(efs_hex_value('F'), 15);
	assert_int_equal(efs_hex_value('g'), -1);
	assert_int_equal(efs_hex_value('/'), -1);
	assert_int_equal(efs_hex_value(':'), -1);
	assert_int_equal(efs_hex_value('\0'), -1);
	assert_int_equal(efs_hex_value(0xff), -1);
	/* Every byte that encodes back to itself decodes. */
	char hex[3];
	for (unsigned v = 0; v < 256; v++) {
		unsigned char b = (unsigned char)v;
		efs_hex_encode(&b, 1, hex);
		assert_int_equal(efs_hex_value((unsigned char)hex[0]) << 4 |
					 efs_hex_value((unsigned char)hex[1]),
				 v);
	}
}

/* efs_hex_decode undoes efs_hex_encode for every byte value, and takes
 * either case. */
static void test_hex_decode(void **state)
{
	(void)state;
	unsigned char all[256], back[256];
	char hex[2 * sizeof(all) + 1];
	for (size_t i = 0; i < sizeof(all); i++)
		all[i] = (unsigned char)(255 - i);
	efs_hex_encode(all, sizeof(all), hex);
	memset(back, 0, sizeof(back));
	efs_hex_decode(hex, sizeof(back), back);
	assert_memory_equal(back, all, sizeof(all));
	efs_hex_decode("0aFf7E", 3, back);
	assert_int_equal(back[0], 0x0a);
	assert_int_equal(back[1], 0xff);
	assert_int_equal(back[2], 0x7e);
}

/* efs_ordered_hex: 2 * nbytes hex digits, the first 12 the time it was
 * made in ms; an id made a few ms later sorts after; a burst of ids made in
 * the same ms stays distinct (the random part). */
static void test_ordered_hex(void **state)
{
	(void)state;
	char id[33], prev[33] = "", first[33];
	int64_t before = efs_now_ms();
	assert_int_equal(efs_ordered_hex(id, 16), 0);
	int64_t after = efs_now_ms();
	assert_int_equal(strlen(id), 32);
	for (size_t i = 0; i < 32; i++)
		assert_true(efs_hex_value((unsigned char)id[i]) >= 0 &&
			    !isupper((unsigned char)id[i]));
	assert_true(efs_id_valid(id));
	int64_t stamped = 0;
	for (size_t i = 0; i < 12; i++)
		stamped = stamped << 4 | efs_hex_value((unsigned char)id[i]);
	assert_true(stamped >= before && stamped <= after);

	/* In a burst: prefixes never go back, no id repeats. */
	memcpy(first, id, sizeof(first));
	for (int k = 0; k < 1000; k++) {
		assert_int_equal(efs_ordered_hex(id, 16), 0);
		assert_true(strncmp(id, prev, 12) >= 0);
		assert_string_not_equal(id, prev);
		assert_string_not_equal(id, first);
		memcpy(prev, id, sizeof(prev));
	}
	struct timespec two_ms = {0, 2 * 1000 * 1000};
	nanosleep(&two_ms, NULL);
	assert_int_equal(efs_ordered_hex(id, 16), 0);
	assert_true(strcmp(id, prev) > 0);

	/* Not enough bytes for the time and some randomness, or too many. */
	assert_int_equal(efs_ordered_hex(id, 6), -EINVAL);
	assert_int_equal(efs_ordered_hex(id, 65), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hex_value),
		cmocka_unit_test(test_hex_decode),
		cmocka_unit_test(test_ordered_hex),
		cmocka_unit_test(test_base64_decode_exact),
		cmocka_unit_test(test_parse_u64_plain),
		cmocka_unit_test(test_parse_u64_suffixes),
		cmocka_unit_test(test_parse_u64_suffix_not_allowed),
		cmocka_unit_test(test_parse_u64_overflow),
		cmocka_unit_test(test_parse_u64_garbage),
		cmocka_unit_test(test_id_valid),
		cmocka_unit_test(test_chunk_id_valid),
		cmocka_unit_test(test_utf8_valid),
		cmocka_unit_test(test_name_valid),
		cmocka_unit_test(test_secret_equal),
		cmocka_unit_test(test_strlcpy),
		cmocka_unit_test(test_iso8601),
		cmocka_unit_test_setup_teardown(test_write_read_file, tmpdir_setup,
						tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_read_file_sizes, tmpdir_setup,
						tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_read_file_missing, tmpdir_setup,
						tmpdir_teardown),
		cmocka_unit_test(test_buf_append),
		cmocka_unit_test(test_buf_cap),
		cmocka_unit_test(test_buf_printf),
		cmocka_unit_test(test_buf_detach),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
