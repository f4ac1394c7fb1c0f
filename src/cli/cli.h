/* SPDX-License-Identifier: MIT */
/* cli.h - the echofs command-line client: the command table and what the
 * commands share (server URL, token, quiet mode, option parsing, error
 * output).
 *
 * Exit statuses, for every command: 0 success, 1 failure (one line
 * "echofs: ..." on stderr), 2 usage error.
 */
#ifndef ECHOFS_CLI_CLI_H
#define ECHOFS_CLI_CLI_H

#include "echofs/common.h"

#include <stdbool.h>

struct efs_http_client;

#define EFS_CLI_EXIT_FAIL 1
#define EFS_CLI_EXIT_USAGE 2

struct efs_cli {
	const char *url;   /* --url or ECHOFS_URL (http://127.0.0.1:8080) */
	const char *token; /* --token or ECHOFS_TOKEN, or NULL */
	const char *ca_file; /* --cacert or ECHOFS_CA_FILE: verifies an https master, or NULL */
	const char *prog;
	bool quiet;		      /* -q: no progress bar, no notes */
	bool stderr_tty;	      /* stderr is a terminal */
	struct efs_http_client *http; /* every request runs on it (set by efs_cli_main) */
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
/* Prints "echofs: <command>: <message> (see echofs <command> --help)" on
 * stderr and returns 2. */
int efs_cli_usage_error(const char *command, const char *fmt, ...) EFS_PRINTF(2, 3);

/* Matches argv[*i] against the option @name ("--chunk-size"), whose value
 * is the next argument or follows '=' ("--chunk-size=4M"). Returns 1 and
 * sets *value (advancing *i past a separate value) when it matches, 0 when
 * it does not, -EINVAL when the value is missing. */
int efs_cli_opt(int argc, char **argv, int *i, const char *name, const char **value);
/* Consumes the options every command accepts wherever they appear: --url,
 * --token, --cacert, -q/--quiet. Returns 1 when argv[*i] was one (advancing *i past
 * its value), 0 when not, -EINVAL when a value is missing. */
int efs_cli_common_opt(struct efs_cli *cli, int argc, char **argv, int *i);
/* True for an argument that is an option: "-x" or "--x", but not "-". */
bool efs_cli_is_opt(const char *arg);

/* 0 when the client has a token; otherwise prints why not and returns 1. */
int efs_cli_need_token(const struct efs_cli *cli, const char *command);
/* True when a progress bar should be drawn: stderr is a terminal and -q
 * was not given. */
bool efs_cli_show_progress(const struct efs_cli *cli);

/* cmd_token.c */
int efs_cli_token(struct efs_cli *cli, int argc, char **argv);
/* cmd_cluster.c */
int efs_cli_health(struct efs_cli *cli, int argc, char **argv);
int efs_cli_workers(struct efs_cli *cli, int argc, char **argv);
/* cmd_put.c */
int efs_cli_put(struct efs_cli *cli, int argc, char **argv);
/* cmd_get.c */
int efs_cli_get(struct efs_cli *cli, int argc, char **argv);
/* cmd_key.c */
int efs_cli_key(struct efs_cli *cli, int argc, char **argv);
/* cmd_files.c */
int efs_cli_ls(struct efs_cli *cli, int argc, char **argv);
int efs_cli_stat(struct efs_cli *cli, int argc, char **argv);
int efs_cli_rm(struct efs_cli *cli, int argc, char **argv);

#endif
