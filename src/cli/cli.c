/* SPDX-License-Identifier: MIT */
/* cli.c - the command table, option parsing shared by every command, and
 * dispatch. The commands live in cmd_*.c. */
#include "cli/cli.h"
#include "echofs/http_client.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_URL "http://127.0.0.1:8080"

static const struct efs_cli_command commands[] = {
    {"put", "upload files; prints each new file id",
     "put [-q] [--name NAME] [--chunk-size SIZE] [--parallel N] [--threshold SIZE]\n"
     "           [--limit-rate RATE] [--policy POLICY] [--resume | --no-resume] FILE...\n"
     "\n"
     "  Uploads each FILE and prints its new file id, one line per file, in the\n"
     "  order given. FILE - reads standard input (then --name is required).\n"
     "\n"
     "  A file up to --threshold (default 8M) goes up in one request. A larger\n"
     "  one goes up in a resumable upload session: chunks of --chunk-size\n"
     "  (default 4M), --parallel (default 4) at a time, each with its SHA-256.\n"
     "  The session id is kept in a state file under $XDG_STATE_HOME/echofs\n"
     "  (~/.local/state/echofs), so running the same command again after an\n"
     "  interruption sends only the chunks the server does not have yet.\n"
     "  The whole file's SHA-256 is checked against the server's at the end.\n"
     "\n"
     "  --name NAME        the name to store (one FILE only; default: its basename)\n"
     "  --chunk-size SIZE  chunk size of a new session (1 to 64M; K, M, G suffixes)\n"
     "  --parallel N       chunks in flight at once (1 to 32, default 4)\n"
     "  --threshold SIZE   files larger than SIZE use a session (default 8M)\n"
     "  --limit-rate RATE  at most RATE bytes per second in all (K, M suffixes)\n"
     "  --policy POLICY    store by replicas:N or ec:K+M (default: the master's\n"
     "                     STORAGE_POLICY); a resumed session keeps its own\n"
     "  --resume           continue a saved session (the default; says so when none)\n"
     "  --no-resume        abort any saved session and start over\n"
     "  -q, --quiet        no progress bar\n",
     efs_cli_put},
    {"get", "download files (resumable)",
     "get [-q] [-o PATH] [--limit-rate RATE] FILE_ID...\n"
     "\n"
     "  Downloads each file into the current directory under its stored name,\n"
     "  or into PATH (a directory, or a file name for one FILE_ID; - is standard\n"
     "  output). An existing file is replaced. The bytes go to PATH.part first;\n"
     "  an interrupted download continues from the end of PATH.part with a\n"
     "  Range request. The SHA-256 of the result is checked against the file's\n"
     "  before PATH.part is renamed to PATH; on a mismatch PATH.part is removed.\n"
     "\n"
     "  -o, --output PATH   where to write (- for standard output)\n"
     "  --limit-rate RATE   at most RATE bytes per second (K, M suffixes)\n"
     "  -q, --quiet         no progress bar\n",
     efs_cli_get},
    {"ls", "list your files",
     "ls [--limit N]\n"
     "\n"
     "  Lists your files, oldest first, one line each: file id, size in bytes,\n"
     "  creation time (UTC) and name. Follows the server's cursor through\n"
     "  every page.\n"
     "\n"
     "  --limit N   fetch N files per request (1 to 1000, default 1000)\n",
     efs_cli_ls},
    {"stat", "show a file and its chunks",
     "stat [--json] FILE_ID...\n"
     "\n"
     "  Shows the file's metadata and every chunk with its size, stored size,\n"
     "  compression and replicas.\n"
     "\n"
     "  --json   print the server's File object as indented JSON instead\n",
     efs_cli_stat},
    {"rm", "delete files",
     "rm FILE_ID...\n"
     "\n"
     "  Deletes each file. Prints nothing on success; a file that cannot be\n"
     "  deleted is reported and the others are still tried.\n",
     efs_cli_rm},
    {"key", "manage your S3 access keys",
     "key create | key list | key delete ACCESS_KEY_ID...\n"
     "\n"
     "  create   makes a new access key for the S3 API and prints its id and\n"
     "           secret, with the aws CLI commands that configure it. The secret\n"
     "           is shown only this once (the master stores it encrypted).\n"
     "  list     lists your access keys: id and creation time (never secrets).\n"
     "  delete   deletes each key; S3 requests signed with it are refused within\n"
     "           seconds.\n"
     "\n"
     "  -q, --quiet   create: print only the id, the secret and the time\n",
     efs_cli_key},
    {"workers", "list the workers",
     "workers\n"
     "\n"
     "  Lists the workers: id, alive/dead, URL, capacity, free bytes, chunks\n"
     "  and last heartbeat (GET /api/v1/workers). Needs a token; with\n"
     "  TOPOLOGY_VISIBLE_TO=operators on the master, an operator's (token --admin).\n",
     efs_cli_workers},
    {"health", "show the cluster's health",
     "health\n"
     "\n"
     "  Prints GET /api/v1/health. Exits 0 only when the status is \"ok\".\n"
     "  Needs no token.\n",
     efs_cli_health},
    {"token", "print a user token signed with JWT_SECRET",
     "token --user NAME [--ttl SECONDS] [--admin] [--secret SECRET]\n"
     "\n"
     "  Prints an HS256 JWT for NAME, valid for SECONDS (default 86400).\n"
     "  --admin adds the claim \"admin\": true: an operator's token, which sees\n"
     "  the workers, their URLs and the cluster's totals whatever\n"
     "  TOPOLOGY_VISIBLE_TO says.\n"
     "  Reads the signing secret from JWT_SECRET (or --secret SECRET).\n"
     "  Works offline; never contacts the master.\n",
     efs_cli_token},
};

static void vfail(const char *fmt, va_list ap)
{
	char line[2048];
	vsnprintf(line, sizeof(line), fmt, ap);
	/* One line, whatever a server message or a file name holds. */
	for (char *c = line; *c; c++)
		if (*c == '\n' || *c == '\r' || *c == '\t')
			*c = ' ';
	fprintf(stderr, "echofs: %s\n", line);
}

int efs_cli_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail(fmt, ap);
	va_end(ap);
	return EFS_CLI_EXIT_FAIL;
}

int efs_cli_usage_error(const char *command, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	efs_cli_fail("%s: %s (see echofs %s --help)", command, msg, command);
	return EFS_CLI_EXIT_USAGE;
}

bool efs_cli_is_opt(const char *arg)
{
	return arg[0] == '-' && arg[1] != '\0';
}

int efs_cli_opt(int argc, char **argv, int *i, const char *name, const char **value)
{
	const char *arg = argv[*i];
	size_t n = strlen(name);
	if (strncmp(arg, name, n) != 0)
		return 0;
	if (arg[n] == '=') {
		*value = arg + n + 1;
		return 1;
	}
	if (arg[n] != '\0')
		return 0;
	if (*i + 1 >= argc)
		return -EINVAL;
	*value = argv[++*i];
	return 1;
}

int efs_cli_common_opt(struct efs_cli *cli, int argc, char **argv, int *i)
{
	const char *value;
	int r;
	if (strcmp(argv[*i], "-q") == 0 || strcmp(argv[*i], "--quiet") == 0) {
		cli->quiet = true;
		return 1;
	}
	if ((r = efs_cli_opt(argc, argv, i, "--url", &value)) != 0) {
		if (r > 0)
			cli->url = *value ? value : DEFAULT_URL;
		return r;
	}
	if ((r = efs_cli_opt(argc, argv, i, "--token", &value)) != 0) {
		if (r > 0)
			cli->token = value;
		return r;
	}
	if ((r = efs_cli_opt(argc, argv, i, "--cacert", &value)) != 0) {
		if (r > 0)
			cli->ca_file = *value ? value : NULL;
		return r;
	}
	return 0;
}

int efs_cli_need_token(const struct efs_cli *cli, const char *command)
{
	if (cli->token && *cli->token)
		return 0;
	return efs_cli_fail("%s: no token (set ECHOFS_TOKEN or pass --token; "
			    "echofs token --user NAME makes one)",
			    command);
}

bool efs_cli_show_progress(const struct efs_cli *cli)
{
	return cli->stderr_tty && !cli->quiet;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: echofs [--url URL] [--token TOKEN] [--cacert FILE] [-q] COMMAND "
		     "[ARGS]\n\n"
		     "commands:\n");
	for (size_t i = 0; i < EFS_ARRAY_SIZE(commands); i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\noptions (also accepted after the command):\n"
		     "  --url URL       the master (default $ECHOFS_URL, else " DEFAULT_URL ")\n"
		     "  --token TOKEN   a user token (default $ECHOFS_TOKEN)\n"
		     "  --cacert FILE   verify an https:// master with the CA certificates in\n"
		     "                  FILE (PEM; default $ECHOFS_CA_FILE, else the system's)\n"
		     "  -q, --quiet     no progress bar (there is none unless stderr is a "
		     "terminal)\n"
		     "\nechofs COMMAND --help describes a command. Exit status: 0 success, "
		     "1 failure, 2 usage error.\n");
}

static bool wants_help(int argc, char **argv)
{
	for (int j = 1; j < argc; j++) {
		if (strcmp(argv[j], "--") == 0)
			return false;
		if (strcmp(argv[j], "--help") == 0 || strcmp(argv[j], "-h") == 0)
			return true;
	}
	return false;
}

int efs_cli_main(int argc, char **argv)
{
	struct efs_cli cli = {
	    .url = getenv("ECHOFS_URL"),
	    .token = getenv("ECHOFS_TOKEN"),
	    .ca_file = getenv("ECHOFS_CA_FILE"),
	    .prog = "echofs",
	    .stderr_tty = isatty(STDERR_FILENO) == 1,
	};
	int i = 1;

	for (; i < argc && efs_cli_is_opt(argv[i]); i++) {
		int r = efs_cli_common_opt(&cli, argc, argv, &i);
		if (r > 0)
			continue;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		}
		if (r < 0)
			efs_cli_fail("%s needs a value", argv[i]);
		else
			efs_cli_fail("unknown option '%s'", argv[i]);
		usage(stderr);
		return EFS_CLI_EXIT_USAGE;
	}
	if (!cli.url || !*cli.url)
		cli.url = DEFAULT_URL;
	if (i >= argc) {
		usage(stderr);
		return EFS_CLI_EXIT_USAGE;
	}
	if (strcmp(argv[i], "help") == 0) {
		usage(stdout);
		return 0;
	}
	for (size_t c = 0; c < EFS_ARRAY_SIZE(commands); c++) {
		if (strcmp(argv[i], commands[c].name) != 0)
			continue;
		if (wants_help(argc - i, argv + i)) {
			printf("usage: echofs %s", commands[c].usage);
			return 0;
		}
		if (efs_http_client_global_init() < 0)
			return efs_cli_fail("cannot initialise libcurl");
		if (cli.ca_file && !*cli.ca_file)
			cli.ca_file = NULL;
		if (efs_http_client_new(&cli.http) < 0 ||
		    efs_http_client_set_ca_file(cli.http, cli.ca_file) < 0) {
			efs_http_client_free(cli.http);
			efs_http_client_global_cleanup();
			return efs_cli_fail("out of memory");
		}
		int status = commands[c].run(&cli, argc - i, argv + i);
		efs_http_client_free(cli.http);
		efs_http_client_global_cleanup();
		return status;
	}
	efs_cli_fail("unknown command '%s'", argv[i]);
	usage(stderr);
	return EFS_CLI_EXIT_USAGE;
}
