/* SPDX-License-Identifier: MIT */
/* cmd_token.c - echofs token: sign a user token with JWT_SECRET (with
 * --admin, an operator's token: "admin": true). */
#include "cli/cli.h"
#include "echofs/auth.h"
#include "echofs/util.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define DEFAULT_TTL_S 86400
#define MAX_TTL_S (10LL * 365 * 86400)

int efs_cli_token(struct efs_cli *cli, int argc, char **argv)
{
	const char *user = NULL, *secret = getenv("JWT_SECRET");
	uint64_t ttl = DEFAULT_TTL_S;
	bool admin = false;
	char *token;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--user") == 0 && i + 1 < argc) {
			user = argv[++i];
		} else if (strcmp(argv[i], "--ttl") == 0 && i + 1 < argc) {
			if (efs_parse_u64(argv[++i], false, &ttl) < 0 || ttl < 1 ||
			    ttl > MAX_TTL_S)
				return efs_cli_fail("--ttl: '%s' is not a number of seconds "
						    "(1..%lld)",
						    argv[i], MAX_TTL_S);
		} else if (strcmp(argv[i], "--admin") == 0) {
			admin = true;
		} else if (strcmp(argv[i], "--secret") == 0 && i + 1 < argc) {
			secret = argv[++i];
		} else {
			return efs_cli_fail("token: unexpected argument '%s' (see echofs token "
					    "--help)",
					    argv[i]);
		}
	}
	if (!user)
		return efs_cli_fail("token: --user NAME is required");
	if (!efs_user_valid(user))
		return efs_cli_fail("token: user '%s' must be 1-64 characters of "
				    "[A-Za-z0-9_.@+-]",
				    user);
	if (!secret || !*secret)
		return efs_cli_fail("token: JWT_SECRET is not set");
	if (efs_jwt_issue_role(secret, user, admin, (int64_t)ttl, (int64_t)time(NULL), &token) < 0)
		return efs_cli_fail("token: cannot sign the token");
	printf("%s\n", token);
	free(token);
	return 0;
}
