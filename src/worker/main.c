/* SPDX-License-Identifier: MIT */
/* main.c - echofs-worker: read the configuration, start, wait for a stop
 * signal, stop. */
#include "echofs/config.h"
#include "echofs/daemon.h"
#include "echofs/http_client.h"
#include "echofs/log.h"
#include "worker/worker.h"

#include <stdio.h>
#include <string.h>

int main(void)
{
	struct efs_worker_config cfg;
	struct efs_worker worker;
	char err[EFS_CONFIG_ERR_LEN];
	int r;

	efs_log_set_component("worker");
	if (efs_worker_config_load(&cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "echofs-worker: %s\n", err);
		return EFS_EXIT_CONFIG;
	}
	efs_log_set_level(cfg.log_level);
	efs_daemon_signals_block();
	if (efs_http_client_global_init() < 0) {
		efs_error("cannot initialise libcurl");
		return 1;
	}
	if ((r = efs_worker_start(&worker, &cfg, err, sizeof(err))) < 0) {
		if (r == -EINVAL)
			fprintf(stderr, "echofs-worker: %s\n", err);
		else
			efs_error("%s", err);
		efs_http_client_global_cleanup();
		return r == -EINVAL ? EFS_EXIT_CONFIG : 1;
	}
	/* The port listens and the background threads run: tell systemd
	 * (Type=notify), when it is there to hear it. */
	efs_daemon_ready("worker", cfg.port);
	int sig = efs_daemon_wait_for_signal();
	efs_info("%s received: finishing requests in flight, then exiting", strsignal(sig));
	efs_daemon_notify_stopping();
	efs_worker_stop(&worker);
	efs_http_client_global_cleanup();
	efs_info("stopped");
	return 0;
}
