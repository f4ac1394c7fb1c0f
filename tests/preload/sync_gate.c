/* SPDX-License-Identifier: MIT */
/* sync_gate.c - an LD_PRELOAD shim for black-box tests: holds every
 * fdatasync() of the process while the file named by ECHOFS_SYNC_GATE
 * exists, then lets it through to the real one. A test closes the gate
 * (creates the file) to keep a worker's group commit from finishing, as a
 * slow disk would, for as long as it likes, and opens it (removes the
 * file) to let the commits finish: no sleep decides anything.
 *
 * Without ECHOFS_SYNC_GATE it changes nothing. Built without the
 * sanitizers (it is loaded into sanitized daemons too). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int fdatasync(int fd)
{
	static int (*real_fdatasync)(int);
	const char *gate = getenv("ECHOFS_SYNC_GATE");
	struct timespec pause = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};

	if (!real_fdatasync) {
		void *sym = dlsym(RTLD_NEXT, "fdatasync");
		/* POSIX dlsym: a function's address through an object pointer. */
		memcpy(&real_fdatasync, &sym, sizeof(real_fdatasync));
	}
	while (gate && *gate && access(gate, F_OK) == 0)
		nanosleep(&pause, NULL);
	return real_fdatasync(fd);
}
