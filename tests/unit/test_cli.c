/* SPDX-License-Identifier: MIT */
/* test_cli.c - unit tests of the echofs client's pure parts: option
 * parsing (cli.c), URLs and escaping (api.c), human-readable numbers
 * (human.c) and upload state files (resume.c). The commands themselves are
 * tested black-box in tests/integration/test_cli.py. */
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
#include <unistd.h>

#include <cmocka.h>

#include "cli/api.h"
#include "cli/cli.h"
#include "cli/human.h"
#include "cli/resume.h"

/* ---- cli.c ----------------------------------------------------------- */

static void test_opt_forms(void **state)
{
	char *argv[] = {"put", "--chunk-size", "4M", "--chunk-size=8M", "--chunk-sizes", "--name"};
	int argc = 6, i = 1;
	const char *value = NULL;

	assert_int_equal(efs_cli_opt(argc, argv, &i, "--chunk-size", &value), 1);
	assert_string_equal(value, "4M");
	assert_int_equal(i, 2); /* past the value */
	i = 3;
	assert_int_equal(efs_cli_opt(argc, argv, &i, "--chunk-size", &value), 1);
	assert_string_equal(value, "8M");
	assert_int_equal(i, 3);
	i = 4; /* a longer option is not this one */
	assert_int_equal(efs_cli_opt(argc, argv, &i, "--chunk-size", &value), 0);
	i = 5; /* the value is missing */
	assert_int_equal(efs_cli_opt(argc, argv, &i, "--name", &value), -EINVAL);
}

static void test_common_opts(void **state)
{
	char *argv[] = {"ls", "-q", "--url", "http://m:1/", "--token=abc", "--other", "--token"};
	struct efs_cli cli = {.url = "http://default"};
	int argc = 7, i;

	i = 1;
	assert_int_equal(efs_cli_common_opt(&cli, argc, argv, &i), 1);
	assert_true(cli.quiet);
	i = 2;
	assert_int_equal(efs_cli_common_opt(&cli, argc, argv, &i), 1);
	assert_string_equal(cli.url, "http://m:1/");
	i = 4;
	assert_int_equal(efs_cli_common_opt(&cli, argc, argv, &i), 1);
	assert_string_equal(cli.token, "abc");
	i = 5;
	assert_int_equal(efs_cli_common_opt(&cli, argc, argv, &i), 0);
	i = 6;
	assert_int_equal(efs_cli_common_opt(&cli, argc, argv, &i), -EINVAL);
	char *tls_argv[] = {"ls", "--cacert", "/etc/ca.pem", "--cacert="};
	i = 1;
	assert_int_equal(efs_cli_common_opt(&cli, 4, tls_argv, &i), 1);
	assert_string_equal(cli.ca_file, "/etc/ca.pem");
	assert_int_equal(i, 2);
	i = 3; /* an empty value: back to the system's CAs */
	assert_int_equal(efs_cli_common_opt(&cli, 4, tls_argv, &i), 1);
	assert_null(cli.ca_file);
	assert_true(efs_cli_is_opt("-q"));
	assert_false(efs_cli_is_opt("-"));
	assert_false(efs_cli_is_opt("file"));
}

/* ---- api.c ----------------------------------------------------------- */

static void test_url_joins_without_double_slash(void **state)
{
	struct efs_cli cli = {.url = "http://127.0.0.1:8080//"};
	char url[64];
	assert_int_equal(efs_cli_api_url(&cli, url, sizeof(url), "/api/v1/files/%s", "abc"), 0);
	assert_string_equal(url, "http://127.0.0.1:8080/api/v1/files/abc");
	assert_int_equal(efs_cli_api_url(&cli, url, 20, "/api/v1/files"), -ENAMETOOLONG);
}

static void test_escape(void **state)
{
	char out[64];
	assert_int_equal(efs_cli_api_escape("a b&c=d/é.txt", out, sizeof(out)), 0);
	assert_string_equal(out, "a%20b%26c%3Dd%2F%C3%A9.txt");
	assert_int_equal(efs_cli_api_escape("", out, sizeof(out)), 0);
	assert_string_equal(out, "");
	assert_int_equal(efs_cli_api_escape("abc", out, 3), -ENAMETOOLONG);
	assert_int_equal(efs_cli_api_escape("a b", out, 5), -ENAMETOOLONG);
	assert_int_equal(efs_cli_api_escape("a b", out, 6), 0);
}

static void test_check_describes_the_error_envelope(void **state)
{
	struct efs_http_call call;
	struct efs_cli_api_result res;
	const char *body = "{\"error\": {\"code\": \"no_capacity\", \"message\": \"2 of 3 alive\"}}";

	efs_http_call_init(&call, "POST", "http://m/api/v1/files/upload?name=x");
	call.status = 503;
	assert_int_equal(efs_cli_api_check(&call, body, strlen(body), 201, &res), -EPROTO);
	assert_int_equal(res.status, 503);
	assert_string_equal(res.code, "no_capacity");
	assert_string_equal(res.err, "503 no_capacity: 2 of 3 alive");

	call.status = 502; /* not our envelope */
	assert_int_equal(efs_cli_api_check(&call, "<html>", 6, 201, &res), -EPROTO);
	assert_string_equal(res.err, "502: unexpected reply from the server");

	call.status = 0; /* no reply: the URL without its query */
	call.error = -ECONNREFUSED;
	snprintf(call.errmsg, sizeof(call.errmsg), "Couldn't connect to server");
	assert_int_equal(efs_cli_api_check(&call, NULL, 0, 201, &res), -EIO);
	assert_string_equal(res.err,
			    "cannot reach http://m/api/v1/files/upload: Couldn't connect to server");

	call.error = -EPERM; /* an https master whose certificate did not verify */
	snprintf(call.errmsg, sizeof(call.errmsg), "SSL certificate problem: self-signed");
	assert_int_equal(efs_cli_api_check(&call, NULL, 0, 201, &res), -EIO);
	assert_non_null(strstr(res.err, "SSL certificate problem: self-signed"));
	assert_non_null(strstr(res.err, "--cacert FILE or ECHOFS_CA_FILE"));

	call.status = 201;
	call.error = 0;
	assert_int_equal(efs_cli_api_check(&call, NULL, 0, 201, &res), 0);
	assert_string_equal(res.err, "");
	efs_http_call_release(&call);
}

/* ---- human.c --------------------------------------------------------- */

static void test_human_bytes(void **state)
{
	char s[EFS_HUMAN_LEN];
	assert_string_equal(efs_human_bytes(0, s, sizeof(s)), "0 B");
	assert_string_equal(efs_human_bytes(1023, s, sizeof(s)), "1023 B");
	assert_string_equal(efs_human_bytes(1024, s, sizeof(s)), "1.0 KiB");
	assert_string_equal(efs_human_bytes(200 * 1024 * 1024, s, sizeof(s)), "200.0 MiB");
	assert_string_equal(efs_human_bytes(3ULL << 40, s, sizeof(s)), "3.0 TiB");
	assert_string_equal(efs_human_bytes(UINT64_MAX, s, sizeof(s)), "16384.0 PiB");
}

static void test_human_duration(void **state)
{
	char s[EFS_HUMAN_LEN];
	assert_string_equal(efs_human_duration(0, s, sizeof(s)), "0:00");
	assert_string_equal(efs_human_duration(7, s, sizeof(s)), "0:07");
	assert_string_equal(efs_human_duration(754, s, sizeof(s)), "12:34");
	assert_string_equal(efs_human_duration(3723, s, sizeof(s)), "1:02:03");
	assert_string_equal(efs_human_duration(-1, s, sizeof(s)), "--:--");
	assert_string_equal(efs_human_duration(1000LL * 3600, s, sizeof(s)), "--:--");
}

/* ---- resume.c -------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int tmpdir_setup(void **state)
{
	char *dir = strdup("/tmp/echofs-test-cli-XXXXXX");
	if (!dir || !mkdtemp(dir)) {
		free(dir);
		return -1;
	}
	setenv("XDG_STATE_HOME", dir, 1);
	*state = dir;
	return 0;
}

static int tmpdir_teardown(void **state)
{
	nftw(*state, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(*state);
	unsetenv("XDG_STATE_HOME");
	return 0;
}

static void test_resume_dir(void **state)
{
	char dir[PATH_MAX], want[PATH_MAX];
	snprintf(want, sizeof(want), "%s/echofs", (char *)*state);
	assert_int_equal(efs_resume_dir(dir, sizeof(dir)), 0);
	assert_string_equal(dir, want);

	setenv("XDG_STATE_HOME", "relative/dir", 1); /* invalid: ignored */
	setenv("HOME", "/home/someone", 1);
	assert_int_equal(efs_resume_dir(dir, sizeof(dir)), 0);
	assert_string_equal(dir, "/home/someone/.local/state/echofs");
	unsetenv("HOME");
	assert_int_equal(efs_resume_dir(dir, sizeof(dir)), -ENOENT);
	setenv("XDG_STATE_HOME", *state, 1);
}

static void test_resume_save_load_remove(void **state)
{
	struct efs_resume r, again, other;
	struct stat st = {.st_size = 123456789};
	st.st_mtim.tv_sec = 1700000000;
	st.st_mtim.tv_nsec = 5;

	assert_int_equal(efs_resume_open(&r, "http://m:8080", "/data/big.iso", &st), 0);
	assert_string_equal(r.session_id, "");
	assert_int_equal(efs_resume_save(&r, "0df6386a0891ffb9497cad8edc7808f0", 4194304), 0);
	struct stat file;
	assert_int_equal(stat(r.path, &file), 0);

	assert_int_equal(efs_resume_open(&again, "http://m:8080", "/data/big.iso", &st), 0);
	assert_string_equal(again.path, r.path);
	assert_string_equal(again.session_id, "0df6386a0891ffb9497cad8edc7808f0");

	/* Another server, path, size or mtime: another state file. */
	assert_int_equal(efs_resume_open(&other, "http://m:9090", "/data/big.iso", &st), 0);
	assert_string_not_equal(other.path, r.path);
	assert_string_equal(other.session_id, "");
	assert_int_equal(efs_resume_open(&other, "http://m:8080", "/data/big2.iso", &st), 0);
	assert_string_equal(other.session_id, "");
	st.st_mtim.tv_nsec = 6;
	assert_int_equal(efs_resume_open(&other, "http://m:8080", "/data/big.iso", &st), 0);
	assert_string_not_equal(other.path, r.path);
	assert_string_equal(other.session_id, "");

	assert_int_equal(efs_resume_remove(&again), 0);
	assert_int_equal(stat(r.path, &file), -1);
	assert_int_equal(efs_resume_remove(&again), 0); /* already gone: fine */
}

static void test_resume_ignores_garbage(void **state)
{
	struct efs_resume r;
	struct stat st = {.st_size = 10};
	assert_int_equal(efs_resume_open(&r, "http://m", "/f", &st), 0);
	assert_int_equal(efs_resume_save(&r, "abc", 1), 0);
	FILE *f = fopen(r.path, "w");
	assert_non_null(f);
	fputs("{\"session_id\": \"../../etc\", \"path\": \"/f\", \"url\": \"http://m\", "
	      "\"size\": 10}",
	      f);
	fclose(f);
	assert_int_equal(efs_resume_open(&r, "http://m", "/f", &st), 0);
	assert_string_equal(r.session_id, ""); /* not a valid id */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_opt_forms),
		cmocka_unit_test(test_common_opts),
		cmocka_unit_test(test_url_joins_without_double_slash),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_check_describes_the_error_envelope),
		cmocka_unit_test(test_human_bytes),
		cmocka_unit_test(test_human_duration),
		cmocka_unit_test_setup_teardown(test_resume_dir, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_resume_save_load_remove, tmpdir_setup,
						tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_resume_ignores_garbage, tmpdir_setup,
						tmpdir_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
