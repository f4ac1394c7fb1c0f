/* SPDX-License-Identifier: MIT */
/* cli.c - option parsing shared by every command, and dispatch. */
#include "cli/cli.h"
#include "echofs/http_client.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct efs_cli_command commands[] = {
	{"token", "print a user token signed with JWT_SECRET",
	 "token --user NAME [--ttl SECONDS]\n"
	 "  Prints an HS256 JWT for NAME, valid for SECONDS (default 86400).\n"
	 "  Reads the signing secret from JWT_SECRET (or --secret SECRET).",
	 efs_cli_token},
	{"health", "show the cluster's health", "health\n  GET /api/v1/health and print it.",
	 efs_cli_health},
	{"workers", "list the workers", "workers\n  GET /api/v1/workers and print one line each.",
	 efs_cli_workers},
};

int efs_cli_fail(const char *fmt, ...)
{
	va_list ap;
	fputs("echofs: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: echofs [--url URL] [--token TOKEN] COMMAND [ARGS]\n\n"
		     "commands:\n");
	for (size_t i = 0; i < EFS_ARRAY_SIZE(commands); i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\nECHOFS_URL and ECHOFS_TOKEN stand in for --url and --token.\n"
		     "echofs COMMAND --help describes a command.\n");
}

int efs_cli_main(int argc, char **argv)
{
	struct efs_cli cli = {
		.url = getenv("ECHOFS_URL"),
		.token = getenv("ECHOFS_TOKEN"),
		.prog = "echofs",
	};
	int i = 1;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if ((strcmp(argv[i], "--url") == 0 || strcmp(argv[i], "--token") == 0) &&
		    i + 1 < argc) {
			if (argv[i][2] == 'u')
				cli.url = argv[++i];
			else
				cli.token = argv[++i];
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (!cli.url || !*cli.url)
		cli.url = "http://127.0.0.1:8080";
	if (i >= argc) {
		usage(stderr);
		return 2;
	}
	for (size_t c = 0; c < EFS_ARRAY_SIZE(commands); c++) {
		if (strcmp(argv[i], commands[c].name) != 0)
			continue;
		for (int j = i + 1; j < argc; j++) {
			if (strcmp(argv[j], "--help") == 0 || strcmp(argv[j], "-h") == 0) {
				printf("usage: echofs %s\n", commands[c].usage);
				return 0;
			}
		}
		if (efs_http_client_global_init() < 0)
			return efs_cli_fail("cannot initialise libcurl");
		int status = commands[c].run(&cli, argc - i, argv + i);
		efs_http_client_global_cleanup();
		return status;
	}
	efs_cli_fail("unknown command '%s'", argv[i]);
	usage(stderr);
	return 2;
}
