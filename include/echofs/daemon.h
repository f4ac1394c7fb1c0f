/* SPDX-License-Identifier: MIT */
/* daemon.h - the start and stop of a long-running EchoFS process.
 *
 * efs_daemon_signals_block() is called first in main, before any thread
 * exists, so SIGINT/SIGTERM reach only the main thread's
 * efs_daemon_wait_for_signal(); SIGPIPE is ignored (a client that hangs up
 * is an error return, not a crash).
 */
#ifndef ECHOFS_DAEMON_H
#define ECHOFS_DAEMON_H

void efs_daemon_signals_block(void);
/* Blocks until SIGINT or SIGTERM arrives; returns the signal number. */
int efs_daemon_wait_for_signal(void);

#endif
