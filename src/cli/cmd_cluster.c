/* SPDX-License-Identifier: MIT */
/* cmd_cluster.c - echofs health, echofs workers. */
#include "cli/api.h"
#include "cli/cli.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* Both commands take no arguments but the common options. */
static int no_arguments(struct efs_cli *cli, const char *command, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		int r = efs_cli_common_opt(cli, argc, argv, &i);
		if (r < 0)
			return efs_cli_usage_error(command, "%s needs a value", argv[i]);
		if (r == 0)
			return efs_cli_usage_error(command, "unexpected argument '%s'", argv[i]);
	}
	return 0;
}

int efs_cli_health(struct efs_cli *cli, int argc, char **argv)
{
	struct efs_cli_api_result res;
	struct efs_http_call call;
	char url[EFS_CLI_API_URL_MAX];
	int status = EFS_CLI_EXIT_FAIL;
	int r;

	if ((r = no_arguments(cli, "health", argc, argv)) != 0)
		return r;
	efs_cli_api_url(cli, url, sizeof(url), "/api/v1/health");
	efs_http_call_init(&call, "GET", url); /* no credentials needed */
	efs_http_call_run(cli->http, &call);
	/* 503 (metadata store down) has the same shape as 200: print either. */
	r = efs_cli_api_check(&call, call.resp.data, call.resp.len, call.status == 503 ? 503 : 200,
			      &res);
	json_t *j = r == 0 ? json_loadb(call.resp.data, call.resp.len, 0, NULL) : NULL;
	if (r < 0) {
		efs_cli_fail("health: %s", res.err);
		goto out;
	}
	if (!j) {
		efs_cli_fail("health: %ld: the server's reply is not JSON", call.status);
		goto out;
	}
	char *text = json_dumps(j, JSON_INDENT(2));
	printf("%s\n", text ? text : "");
	free(text);
	const char *health = json_string_value(json_object_get(j, "status"));
	if (health && strcmp(health, "ok") == 0)
		status = 0;
out:
	json_decref(j);
	efs_http_call_release(&call);
	return status;
}

int efs_cli_workers(struct efs_cli *cli, int argc, char **argv)
{
	struct efs_cli_api_result res;
	json_t *j = NULL, *w;
	size_t i;
	int r;

	if ((r = no_arguments(cli, "workers", argc, argv)) != 0)
		return r;
	if (efs_cli_need_token(cli, "workers") != 0)
		return EFS_CLI_EXIT_FAIL;
	if (efs_cli_api_json(cli, "GET", "/api/v1/workers", NULL, 200, 0, &j, &res) < 0)
		return efs_cli_fail("workers: %s", res.err);
	printf("%-20s %-6s %-28s %14s %14s %8s  %s\n", "WORKER", "STATUS", "URL", "CAPACITY",
	       "FREE", "CHUNKS", "LAST HEARTBEAT");
	json_array_foreach(json_object_get(j, "workers"), i, w)
	{
		printf("%-20s %-6s %-28s %14lld %14lld %8lld  %s\n",
		       efs_cli_api_str(w, "worker_id"), efs_cli_api_str(w, "status"),
		       efs_cli_api_str(w, "url"), (long long)efs_cli_api_int(w, "capacity_bytes"),
		       (long long)efs_cli_api_int(w, "free_bytes"),
		       (long long)efs_cli_api_int(w, "chunk_count"),
		       efs_cli_api_str(w, "last_heartbeat"));
	}
	json_decref(j);
	return 0;
}
