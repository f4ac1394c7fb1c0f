/* SPDX-License-Identifier: MIT */
/* cli.h - the echofs command-line client: the command table and what the
 * commands share (server URL, token, error output). */
#ifndef ECHOFS_CLI_CLI_H
#define ECHOFS_CLI_CLI_H

#include "echofs/common.h"

struct efs_cli {
	const char *url;   /* --url or ECHOFS_URL (http://127.0.0.1:8080) */
	const char *token; /* --token or ECHOFS_TOKEN */
	const char *prog;
};

struct efs_cli_command {
	const char *name;
	const char *summary;
	const char *usage; /* printed by --help */
	/* argv[0] is the command name. Returns the exit status. */
	int (*run)(struct efs_cli *cli, int argc, char **argv);
};

/* Runs the client with main's arguments; returns the exit status. */
int efs_cli_main(int argc, char **argv);

/* Prints "echofs: <message>" on stderr and returns 1. */
int efs_cli_fail(const char *fmt, ...) EFS_PRINTF(1, 2);

/* cmd_token.c */
int efs_cli_token(struct efs_cli *cli, int argc, char **argv);
/* cmd_cluster.c */
int efs_cli_health(struct efs_cli *cli, int argc, char **argv);
int efs_cli_workers(struct efs_cli *cli, int argc, char **argv);

#endif
