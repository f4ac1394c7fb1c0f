/* SPDX-License-Identifier: MIT */
/* main.c - echofs-master: read the configuration, start, wait for a stop
 * signal, stop. */
#include "echofs/daemon.h"
#include "echofs/config.h"
#include "echofs/http_client.h"
#include "echofs/log.h"
#include "master/master.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
	struct efs_master_config cfg;
	struct efs_master master;
	char err[EFS_CONFIG_ERR_LEN];
	int r;

	efs_log_set_component("master");
	if (efs_master_config_load(&cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "echofs-master: %s\n", err);
		return EFS_EXIT_CONFIG;
	}
	efs_log_set_level(cfg.log_level);
	/* Before the first thread: an arena is made when a thread finds the
	 * others busy. */
	/* Not glibc's allocator (a sanitizer build): nothing to cap, and
	 * nothing to warn about on every start. */
	if ((r = efs_daemon_malloc_arenas(cfg.malloc_arena_max)) == -ENOTSUP)
		efs_debug("malloc arenas not capped: the allocator in use does not take "
			  "MALLOC_ARENA_MAX");
	else if (r < 0)
		efs_warn("cannot cap malloc arenas at %u (MALLOC_ARENA_MAX): %s",
			 cfg.malloc_arena_max, strerror(-r));
	efs_daemon_signals_block();
	if (efs_http_client_global_init() < 0) {
		efs_error("cannot initialise libcurl");
		return 1;
	}
	if ((r = efs_master_start(&master, &cfg, err, sizeof(err))) < 0) {
		/* A configuration error reads like the others: one line. */
		if (r == -EINVAL)
			fprintf(stderr, "echofs-master: %s\n", err);
		else
			efs_error("%s", err);
		efs_http_client_global_cleanup();
		return r == -EINVAL ? EFS_EXIT_CONFIG : 1;
	}
	if (strlen(cfg.jwt_secret) < 16 || strlen(cfg.cluster_secret) < 16)
		efs_warn("JWT_SECRET or CLUSTER_SECRET is shorter than 16 characters; use long "
			 "random secrets outside tests");
	/* The port listens and the background threads run: tell systemd
	 * (Type=notify), when it is there to hear it. */
	efs_daemon_ready("master", cfg.port);
	int sig = efs_daemon_wait_for_signal();
	efs_info("%s received: finishing requests in flight, then exiting", strsignal(sig));
	efs_daemon_notify_stopping();
	efs_master_stop(&master);
	efs_http_client_global_cleanup();
	efs_info("stopped");
	return 0;
}
