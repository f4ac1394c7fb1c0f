/* SPDX-License-Identifier: MIT */
/* cmd_key.c - echofs key create|list|delete: the caller's S3 access keys
 * (POST, GET, DELETE /api/v1/keys). */
#include "cli/api.h"
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

#define KEY_ID_MAX 64

static int key_create(struct efs_cli *cli)
{
	struct efs_cli_api_result res;
	json_t *key = NULL;
	if (efs_cli_api_json(cli, "POST", "/api/v1/keys", NULL, 201, 0, &key, &res) < 0)
		return efs_cli_fail("key create: %s", res.err);
	const char *id = efs_cli_api_str(key, "access_key_id");
	const char *secret = efs_cli_api_str(key, "secret_access_key");
	printf("access_key_id      %s\n", id);
	printf("secret_access_key  %s\n", secret);
	printf("created_at         %s\n", efs_cli_api_str(key, "created_at"));
	if (!cli->quiet) {
		printf(
		    "\nThe secret is shown only now: EchoFS keeps it encrypted and cannot show it"
		    " again.\nTo use this key with the aws CLI:\n\n");
		printf("  aws configure set aws_access_key_id %s\n", id);
		printf("  aws configure set aws_secret_access_key %s\n", secret);
	}
	fflush(stdout);
	json_decref(key);
	return 0;
}

static int key_list(struct efs_cli *cli)
{
	struct efs_cli_api_result res;
	json_t *page = NULL, *k;
	size_t i;
	if (efs_cli_api_json(cli, "GET", "/api/v1/keys", NULL, 200, 0, &page, &res) < 0)
		return efs_cli_fail("key list: %s", res.err);
	printf("%-20s  %s\n", "ACCESS KEY ID", "CREATED");
	json_array_foreach(json_object_get(page, "keys"), i, k)
	{
		printf("%-20s  %s\n", efs_cli_api_str(k, "access_key_id"),
		       efs_cli_api_str(k, "created_at"));
	}
	fflush(stdout);
	json_decref(page);
	return 0;
}

static int key_delete(struct efs_cli *cli, const char **ids, int n)
{
	struct efs_cli_api_result res;
	int status = 0;
	for (int i = 0; i < n; i++) {
		char path[128];
		size_t len = strlen(ids[i]);
		bool shape = len > 0 && len <= KEY_ID_MAX;
		for (size_t c = 0; shape && c < len; c++)
			shape = (ids[i][c] >= 'A' && ids[i][c] <= 'Z') ||
				(ids[i][c] >= '0' && ids[i][c] <= '9');
		if (!shape) {
			status = efs_cli_fail("key delete %s: not an access key id", ids[i]);
			continue;
		}
		snprintf(path, sizeof(path), "/api/v1/keys/%s", ids[i]);
		if (efs_cli_api_json(cli, "DELETE", path, NULL, 204, 0, NULL, &res) < 0)
			status = efs_cli_fail("key delete %s: %s", ids[i], res.err);
	}
	return status;
}

int efs_cli_key(struct efs_cli *cli, int argc, char **argv)
{
	const char *ids[64];
	const char *action = NULL;
	bool options_done = false;
	int n = 0;

	for (int i = 1; i < argc; i++) {
		int r;
		if (options_done || !efs_cli_is_opt(argv[i])) {
			if (!action)
				action = argv[i];
			else if (n < (int)(sizeof(ids) / sizeof(ids[0])))
				ids[n++] = argv[i];
			else
				return efs_cli_usage_error("key", "at most %zu ids at once",
							   sizeof(ids) / sizeof(ids[0]));
		} else if (strcmp(argv[i], "--") == 0) {
			options_done = true;
		} else if ((r = efs_cli_common_opt(cli, argc, argv, &i)) != 0) {
			if (r < 0)
				return efs_cli_usage_error("key", "%s needs a value", argv[i]);
		} else {
			return efs_cli_usage_error("key", "unknown option '%s'", argv[i]);
		}
	}
	if (!action)
		return efs_cli_usage_error("key", "no action given: create, list or delete");
	bool is_delete = strcmp(action, "delete") == 0;
	if (strcmp(action, "create") != 0 && strcmp(action, "list") != 0 && !is_delete)
		return efs_cli_usage_error("key", "unknown action '%s': create, list or delete",
					   action);
	if (is_delete && n == 0)
		return efs_cli_usage_error("key", "delete: no ACCESS_KEY_ID given");
	if (!is_delete && n > 0)
		return efs_cli_usage_error("key", "%s takes no argument ('%s')", action, ids[0]);
	if (efs_cli_need_token(cli, "key") != 0)
		return EFS_CLI_EXIT_FAIL;
	if (strcmp(action, "create") == 0)
		return key_create(cli);
	if (strcmp(action, "list") == 0)
		return key_list(cli);
	return key_delete(cli, ids, n);
}
