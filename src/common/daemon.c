/* SPDX-License-Identifier: MIT */
/* daemon.c - signal handling shared by the master and the worker. */
#include "echofs/daemon.h"

#include <pthread.h>
#include <signal.h>

static sigset_t stop_signals(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	return set;
}

void efs_daemon_signals_block(void)
{
	sigset_t set = stop_signals();
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int efs_daemon_wait_for_signal(void)
{
	sigset_t set = stop_signals();
	int sig = 0;
	while (sigwait(&set, &sig) != 0)
		;
	return sig;
}
