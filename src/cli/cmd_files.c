/* SPDX-License-Identifier: MIT */
/* cmd_files.c - echofs ls, stat, rm: the caller's files. */
#include "cli/api.h"
#include "cli/cli.h"
#include "cli/human.h"
#include "echofs/util.h"

#include <stdio.h>
#include <string.h>

#define LS_DEFAULT_LIMIT 1000
#define LS_MAX_LIMIT 1000

/* Parses the arguments of a command that takes FILE_IDs and, for ls/stat,
 * one flag. Fills @ids (argc entries) and returns their count, or -1 after
 * a usage error. */
static int parse_ids(struct efs_cli *cli, const char *command, int argc, char **argv,
		     const char **ids, const char *flag, bool *flag_set)
{
	bool options_done = false;
	int n = 0;
	for (int i = 1; i < argc; i++) {
		int r;
		if (options_done || !efs_cli_is_opt(argv[i])) {
			ids[n++] = argv[i];
		} else if (strcmp(argv[i], "--") == 0) {
			options_done = true;
		} else if (flag && strcmp(argv[i], flag) == 0) {
			*flag_set = true;
		} else if ((r = efs_cli_common_opt(cli, argc, argv, &i)) != 0) {
			if (r < 0) {
				efs_cli_usage_error(command, "%s needs a value", argv[i]);
				return -1;
			}
		} else {
			efs_cli_usage_error(command, "unknown option '%s'", argv[i]);
			return -1;
		}
	}
	if (n == 0) {
		efs_cli_usage_error(command, "no FILE_ID given");
		return -1;
	}
	return n;
}

/* ---- ls ---------------------------------------------------------------------- */

static void print_row(const json_t *f)
{
	printf("%-32s %14lld  %-20s  %s\n", efs_cli_api_str(f, "file_id"),
	       (long long)efs_cli_api_int(f, "size"), efs_cli_api_str(f, "created_at"),
	       efs_cli_api_str(f, "name"));
}

int efs_cli_ls(struct efs_cli *cli, int argc, char **argv)
{
	char cursor[1024] = "", escaped[3 * sizeof(cursor)], path[4096];
	uint64_t limit = LS_DEFAULT_LIMIT;
	struct efs_cli_api_result res;

	for (int i = 1; i < argc; i++) {
		const char *value;
		int r;
		if ((r = efs_cli_common_opt(cli, argc, argv, &i)) > 0)
			continue;
		if (r == 0 && (r = efs_cli_opt(argc, argv, &i, "--limit", &value)) > 0) {
			if (efs_parse_u64(value, false, &limit) < 0 || limit < 1 ||
			    limit > LS_MAX_LIMIT)
				return efs_cli_usage_error("ls",
							   "--limit: '%s' is not a number "
							   "from 1 to %d",
							   value, LS_MAX_LIMIT);
			continue;
		}
		if (r < 0)
			return efs_cli_usage_error("ls", "%s needs a value", argv[i]);
		return efs_cli_usage_error("ls", "unexpected argument '%s'", argv[i]);
	}
	if (efs_cli_need_token(cli, "ls") != 0)
		return EFS_CLI_EXIT_FAIL;

	bool header = false;
	do {
		json_t *page = NULL, *f;
		size_t i;
		if (efs_cli_api_escape(cursor, escaped, sizeof(escaped)) < 0)
			return efs_cli_fail("ls: the server's cursor is too long");
		snprintf(path, sizeof(path), "/api/v1/files?limit=%llu%s%s",
			 (unsigned long long)limit, cursor[0] ? "&cursor=" : "", escaped);
		if (efs_cli_api_json(cli, "GET", path, NULL, 200, 0, &page, &res) < 0)
			return efs_cli_fail("ls: %s", res.err);
		if (!header) { /* only once the server has answered */
			printf("%-32s %14s  %-20s  %s\n", "FILE ID", "SIZE", "CREATED", "NAME");
			header = true;
		}
		json_array_foreach(json_object_get(page, "files"), i, f)
		{
			print_row(f);
		}
		const char *next = json_string_value(json_object_get(page, "next_cursor"));
		size_t len = efs_strlcpy(cursor, next ? next : "", sizeof(cursor));
		json_decref(page);
		if (len >= sizeof(cursor))
			return efs_cli_fail("ls: the server's cursor is too long");
	} while (cursor[0]);
	fflush(stdout);
	return 0;
}

/* ---- stat -------------------------------------------------------------------- */

static void print_size_line(const char *label, const json_t *f, const char *key)
{
	char human[EFS_HUMAN_LEN];
	int64_t v = efs_cli_api_int(f, key);
	printf("%-12s %lld (%s)\n", label, (long long)v,
	       efs_human_bytes((uint64_t)EFS_MAX(v, 0), human, sizeof(human)));
}

static void print_replicas(const json_t *chunk)
{
	json_t *rep;
	size_t i;
	json_array_foreach(json_object_get(chunk, "replicas"), i, rep)
	{
		printf("%s%s", i ? "," : "", efs_cli_api_str(rep, "worker_id"));
	}
	if (json_array_size(json_object_get(chunk, "replicas")) == 0)
		printf("(none)");
}

static void print_file(const json_t *f)
{
	json_t *chunk;
	size_t i;
	printf("%-12s %s\n", "file_id", efs_cli_api_str(f, "file_id"));
	printf("%-12s %s\n", "name", efs_cli_api_str(f, "name"));
	print_size_line("size", f, "size");
	printf("%-12s %s\n", "sha256", efs_cli_api_str(f, "sha256"));
	print_size_line("chunk_size", f, "chunk_size");
	printf("%-12s %lld\n", "chunk_count", (long long)efs_cli_api_int(f, "chunk_count"));
	printf("%-12s %lld\n", "replication", (long long)efs_cli_api_int(f, "replication"));
	print_size_line("stored", f, "stored_bytes");
	printf("%-12s %s\n", "owner", efs_cli_api_str(f, "owner"));
	printf("%-12s %s\n", "created_at", efs_cli_api_str(f, "created_at"));
	json_t *chunks = json_object_get(f, "chunks");
	if (json_array_size(chunks) == 0)
		return;
	printf("\n%5s %12s %12s %4s  %-64s  %s\n", "INDEX", "SIZE", "STORED", "GZIP", "CHUNK ID",
	       "REPLICAS");
	json_array_foreach(chunks, i, chunk)
	{
		printf("%5lld %12lld %12lld %4s  %-64s  ",
		       (long long)efs_cli_api_int(chunk, "index"),
		       (long long)efs_cli_api_int(chunk, "size"),
		       (long long)efs_cli_api_int(chunk, "stored_size"),
		       json_is_true(json_object_get(chunk, "compressed")) ? "yes" : "no",
		       efs_cli_api_str(chunk, "chunk_id"));
		print_replicas(chunk);
		printf("\n");
	}
}

int efs_cli_stat(struct efs_cli *cli, int argc, char **argv)
{
	const char **ids = calloc((size_t)argc, sizeof(*ids));
	struct efs_cli_api_result res;
	bool as_json = false;
	int status = EFS_CLI_EXIT_USAGE;

	if (!ids)
		return efs_cli_fail("stat: out of memory");
	int n = parse_ids(cli, "stat", argc, argv, ids, "--json", &as_json);
	if (n < 0)
		goto out;
	status = EFS_CLI_EXIT_FAIL;
	if (efs_cli_need_token(cli, "stat") != 0)
		goto out;
	status = 0;
	for (int i = 0; i < n; i++) {
		json_t *f = NULL;
		if (!efs_id_valid(ids[i])) {
			status = efs_cli_fail("stat %s: not a file id", ids[i]);
			continue;
		}
		if (efs_cli_api_file(cli, ids[i], &f, &res) < 0) {
			status = efs_cli_fail("stat %s: %s", ids[i], res.err);
			continue;
		}
		if (i > 0)
			printf("\n");
		if (as_json) {
			char *text = json_dumps(f, JSON_INDENT(2));
			printf("%s\n", text ? text : "null");
			free(text);
		} else {
			print_file(f);
		}
		fflush(stdout);
		json_decref(f);
	}
out:
	free(ids);
	return status;
}

/* ---- rm ---------------------------------------------------------------------- */

int efs_cli_rm(struct efs_cli *cli, int argc, char **argv)
{
	const char **ids = calloc((size_t)argc, sizeof(*ids));
	struct efs_cli_api_result res;
	int status = EFS_CLI_EXIT_USAGE;

	if (!ids)
		return efs_cli_fail("rm: out of memory");
	int n = parse_ids(cli, "rm", argc, argv, ids, NULL, NULL);
	if (n < 0)
		goto out;
	status = EFS_CLI_EXIT_FAIL;
	if (efs_cli_need_token(cli, "rm") != 0)
		goto out;
	status = 0;
	for (int i = 0; i < n; i++) {
		char path[128];
		if (!efs_id_valid(ids[i])) {
			status = efs_cli_fail("rm %s: not a file id", ids[i]);
			continue;
		}
		snprintf(path, sizeof(path), "/api/v1/files/%s", ids[i]);
		if (efs_cli_api_json(cli, "DELETE", path, NULL, 204, 0, NULL, &res) < 0)
			status = efs_cli_fail("rm %s: %s", ids[i], res.err);
	}
out:
	free(ids);
	return status;
}
