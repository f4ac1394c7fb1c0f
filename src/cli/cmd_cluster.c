/* SPDX-License-Identifier: MIT */
/* cmd_cluster.c - echofs health, echofs workers. */
#include "cli/cli.h"
#include "echofs/http_client.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* GETs @path from the master into *out (parsed JSON). Prints the error
 * and returns 1 on failure. */
static int get_json(struct efs_cli *cli, const char *path, bool auth, json_t **out)
{
	struct efs_http_call call;
	char url[1024];
	int status = 1;

	snprintf(url, sizeof(url), "%s%s", cli->url, path);
	efs_http_call_init(&call, "GET", url);
	call.bearer = auth ? cli->token : NULL;
	if (efs_http_call_run(&call) < 0) {
		efs_cli_fail("%s: %s", cli->url, call.errmsg);
		goto out;
	}
	json_t *j = json_loadb(call.resp.data, call.resp.len, 0, NULL);
	if (!j) {
		efs_cli_fail("%s answered %ld with a body that is not JSON", url, call.status);
		goto out;
	}
	if (call.status >= 400 && call.status != 503) {
		const char *msg = json_string_value(
			json_object_get(json_object_get(j, "error"), "message"));
		efs_cli_fail("%s: %ld %s", path, call.status, msg ? msg : "");
		json_decref(j);
		goto out;
	}
	*out = j;
	status = 0;
out:
	efs_http_call_release(&call);
	return status;
}

int efs_cli_health(struct efs_cli *cli, int argc, char **argv)
{
	json_t *j;
	if (get_json(cli, "/api/v1/health", false, &j) != 0)
		return 1;
	char *text = json_dumps(j, JSON_INDENT(2));
	printf("%s\n", text ? text : "");
	free(text);
	const char *health = json_string_value(json_object_get(j, "status"));
	int ok = health && strcmp(health, "ok") == 0;
	json_decref(j);
	return ok ? 0 : 1;
}

int efs_cli_workers(struct efs_cli *cli, int argc, char **argv)
{
	json_t *j, *w;
	size_t i;
	if (!cli->token)
		return efs_cli_fail("workers: no token (set ECHOFS_TOKEN or pass --token)");
	if (get_json(cli, "/api/v1/workers", true, &j) != 0)
		return 1;
	printf("%-20s %-6s %-28s %14s %14s %8s  %s\n", "WORKER", "STATUS", "URL", "CAPACITY",
	       "FREE", "CHUNKS", "LAST HEARTBEAT");
	json_array_foreach(json_object_get(j, "workers"), i, w)
	{
		printf("%-20s %-6s %-28s %14lld %14lld %8lld  %s\n",
		       json_string_value(json_object_get(w, "worker_id")),
		       json_string_value(json_object_get(w, "status")),
		       json_string_value(json_object_get(w, "url")),
		       (long long)json_integer_value(json_object_get(w, "capacity_bytes")),
		       (long long)json_integer_value(json_object_get(w, "free_bytes")),
		       (long long)json_integer_value(json_object_get(w, "chunk_count")),
		       json_string_value(json_object_get(w, "last_heartbeat")));
	}
	json_decref(j);
	return 0;
}
