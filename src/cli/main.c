/* SPDX-License-Identifier: MIT */
/* main.c - echofs, the command-line client. */
#include "cli/cli.h"

int main(int argc, char **argv)
{
	return efs_cli_main(argc, argv);
}
