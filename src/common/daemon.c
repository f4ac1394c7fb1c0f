/* SPDX-License-Identifier: MIT */
/* daemon.c - signal handling shared by the master and the worker, and
 * readiness notification to the service manager.
 *
 * This file is the one place that calls libsystemd (sd_notify), and only
 * when the Makefile found it (EFS_HAVE_LIBSYSTEMD). sd_notify() is called
 * with unset_environment=0 so that STOPPING=1 can follow READY=1; the
 * daemons start no processes that could inherit NOTIFY_SOCKET. */
#include "echofs/daemon.h"
#include "echofs/log.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h> /* mallopt */
#endif

#ifdef EFS_HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

/* A STATUS= line is shown by systemctl; longer descriptions are cut. */
#define MAX_NOTIFY_STATUS 256

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

int efs_daemon_malloc_arenas(unsigned max)
{
	if (max == 0 || max > INT_MAX)
		return -EINVAL;
#ifdef __GLIBC__
	/* 0 from mallopt: the allocator in use is not glibc's own (the
	 * sanitizers replace malloc and answer 0 to every option). */
	return mallopt(M_ARENA_MAX, (int)max) == 1 ? 0 : -ENOTSUP;
#else
	return -ENOTSUP;
#endif
}

bool efs_daemon_notify_supported(void)
{
#ifdef EFS_HAVE_LIBSYSTEMD
	return true;
#else
	return false;
#endif
}

#ifdef EFS_HAVE_LIBSYSTEMD
/* sd_notify answers > 0 when sent, 0 without NOTIFY_SOCKET, < 0 (-errno)
 * on failure: the contract of daemon.h already. */
static int notify(const char *state)
{
	int r = sd_notify(0, state);
	return r > 0 ? 1 : r;
}
#endif

int efs_daemon_notify_ready(const char *status)
{
#ifdef EFS_HAVE_LIBSYSTEMD
	char state[MAX_NOTIFY_STATUS + 32];
	if (status)
		snprintf(state, sizeof(state), "READY=1\nSTATUS=%.*s", MAX_NOTIFY_STATUS, status);
	else
		snprintf(state, sizeof(state), "READY=1");
	return notify(state);
#else
	(void)status;
	return 0;
#endif
}

void efs_daemon_ready(const char *who, unsigned port)
{
	char status[64];
	snprintf(status, sizeof(status), "serving on port %u", port);
	int r = efs_daemon_notify_ready(status);
	if (r < 0)
		efs_warn("cannot tell the service manager that the %s is ready (NOTIFY_SOCKET): %s",
			 who, strerror(-r));
	else if (r > 0)
		efs_debug("told the service manager the %s is ready", who);
}

int efs_daemon_notify_stopping(void)
{
#ifdef EFS_HAVE_LIBSYSTEMD
	return notify("STOPPING=1\nSTATUS=finishing requests in flight");
#else
	return 0;
#endif
}
