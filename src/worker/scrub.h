/* SPDX-License-Identifier: MIT */
/* scrub.h - the worker's scrubber: re-reads every stored chunk once per
 * SCRUB_INTERVAL_MS and checks it against its checksums.
 *
 * Reads are paced to SCRUB_BANDWIDTH bytes per second so the scrubber never
 * competes with client traffic; a pass that finishes early waits for the
 * interval. A chunk that fails is quarantined by the store and queued for
 * the master, which replaces it from a good replica.
 */
#ifndef ECHOFS_WORKER_SCRUB_H
#define ECHOFS_WORKER_SCRUB_H

#include "echofs/ticker.h"

#include <stdatomic.h>
#include <stdint.h>

struct efs_worker_ctx;

struct efs_scrub {
	struct efs_worker_ctx *ctx; /* its store, its config, the lost queue */
	struct efs_ticker ticker;
	_Atomic uint64_t passes;          /* complete passes */
	_Atomic uint64_t chunks_checked;  /* since start */
	_Atomic uint64_t corrupt_found;   /* since start */
};

int efs_scrub_start(struct efs_scrub *sc, struct efs_worker_ctx *ctx);
void efs_scrub_stop(struct efs_scrub *sc);

#endif
