/* SPDX-License-Identifier: MIT */
/* daemon.h - the start and stop of a long-running EchoFS process.
 *
 * efs_daemon_signals_block() is called first in main, before any thread
 * exists, so SIGINT/SIGTERM reach only the main thread's
 * efs_daemon_wait_for_signal(); SIGPIPE is ignored (a client that hangs up
 * is an error return, not a crash).
 *
 * Readiness for a service manager (systemd's Type=notify): when the build
 * found libsystemd (pkg-config libsystemd; `make SYSTEMD=0` leaves it out)
 * and the process runs with NOTIFY_SOCKET set, efs_daemon_notify_ready()
 * sends READY=1 and efs_daemon_notify_stopping() STOPPING=1 over that
 * socket. Without libsystemd, or without NOTIFY_SOCKET, both do nothing:
 * the units then use Type=simple (docs/OPERATIONS.md, "Installing without
 * containers").
 */
#ifndef ECHOFS_DAEMON_H
#define ECHOFS_DAEMON_H

#include <stdbool.h>

void efs_daemon_signals_block(void);
/* Blocks until SIGINT or SIGTERM arrives; returns the signal number. */
int efs_daemon_wait_for_signal(void);

/* Caps the malloc arenas of the process at @max (glibc's M_ARENA_MAX;
 * glibc's default is 8 per CPU). Call it before any thread starts. An
 * arena is where a thread that found the others locked allocates from
 * then on, and each keeps the memory freed into it for its own reuse: on
 * a busy master with many threads, tens of MiB sit free in a dozen
 * arenas. Returns 0, -EINVAL for @max 0, or -ENOTSUP without glibc or
 * when the allocator in use does not take the option (a sanitizer's). */
int efs_daemon_malloc_arenas(unsigned max);

/* Whether this binary was built with libsystemd (sd_notify readiness). */
bool efs_daemon_notify_supported(void);
/* Tells the service manager the daemon serves requests: call it once its
 * port listens and its background threads run. @status is a one-line
 * human description (shown by `systemctl status`), may be NULL. Returns 1
 * when a notification was sent, 0 when there is no service manager to tell
 * (no NOTIFY_SOCKET, or built without libsystemd), or a negative errno
 * when sending failed (the caller logs it; the daemon keeps running). */
int efs_daemon_notify_ready(const char *status);
/* efs_daemon_notify_ready for daemon @who ("master", "worker") serving on
 * @port, with that as its status line; logs a failure to tell (a warning:
 * the daemon keeps running) and a success (debug), so mains need not. */
void efs_daemon_ready(const char *who, unsigned port);
/* Tells the service manager the daemon is stopping. Same returns. */
int efs_daemon_notify_stopping(void);

#endif
