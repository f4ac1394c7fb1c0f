/* SPDX-License-Identifier: MIT */
/* control_plane.h - limits of the master-worker control plane that both
 * sides must agree on (proto/echofs.proto is the contract; these are its
 * numbers, in one place for the two binaries).
 *
 * A pushed copy (CopyChunk) has two clocks: the master waits
 * EFS_COPY_ACK_MS for its Ack and then writes the copy over HTTP instead;
 * the worker gives the copy EFS_COPY_DEADLINE_MS from the moment the
 * instruction reached it (its time queued for a copier thread included)
 * and answers 504 once that has passed, storing nothing. The worker's
 * clock is the shorter by EFS_COPY_DEADLINE_MARGIN_MS (the instruction's
 * way down the stream and the Ack's way up), so that a copy the master
 * gave up on is not stored as well: the chunk is written once, not
 * twice. A fetch that stalls (no byte for EFS_COPY_STALL_S seconds) or
 * crawls (fewer than EFS_COPY_MIN_SPEED bytes/s over that window) fails
 * early (502), and the master writes the copy over HTTP at once.
 */
#ifndef ECHOFS_CONTROL_PLANE_H
#define ECHOFS_CONTROL_PLANE_H

/* The master's wait for a pushed copy's Ack. */
#define EFS_COPY_ACK_MS 30000
/* What the worker keeps of it for the network both ways. */
#define EFS_COPY_DEADLINE_MARGIN_MS 5000
/* The worker's deadline for a pushed copy, from its arrival. */
#define EFS_COPY_DEADLINE_MS (EFS_COPY_ACK_MS - EFS_COPY_DEADLINE_MARGIN_MS)
/* A copy's fetch gives up after this many seconds without a byte... */
#define EFS_COPY_STALL_S 5
/* ...or moving fewer than this many bytes/s over that window. */
#define EFS_COPY_MIN_SPEED 8192

_Static_assert(EFS_COPY_DEADLINE_MS > 0 && EFS_COPY_DEADLINE_MS < EFS_COPY_ACK_MS,
	       "a pushed copy's worker deadline must end before the master's wait");

#endif
