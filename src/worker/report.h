/* SPDX-License-Identifier: MIT */
/* report.h - telling the master what this worker holds (after HDFS block
 * reports), and which chunks its scrubber found corrupt.
 *
 * A full report lists every chunk (id, last write time) in batches of
 * 5000; the master answers each batch with the chunks to delete (surplus,
 * unreferenced, or unknown and older than its orphan grace), which are
 * deleted unless written after the report began. The last batch lets the
 * master mark what the worker no longer holds. Full reports go out after
 * every registration and every REPORT_INTERVAL_MS; corrupt chunks after
 * the next heartbeat.
 *
 * The heartbeat thread runs it: worker.c wires efs_report_tick as the
 * context's after_beat hook. The lost-chunk queue it drains is the
 * context's (context.h), filled by the scrubber.
 */
#ifndef ECHOFS_WORKER_REPORT_H
#define ECHOFS_WORKER_REPORT_H

#include <stdint.h>

struct efs_worker_ctx;

struct efs_reporter {
	struct efs_worker_ctx *ctx;
	int64_t next_report_ms; /* monotonic: when the next full report is due */
};

/* Sets up @rp to report for @ctx; the first full report goes out after
 * the first successful beat. */
void efs_report_init(struct efs_reporter *rp, struct efs_worker_ctx *ctx);

/* Called on the heartbeat thread after each successful beat: sends a full
 * report when one is due (or the context's full_report_due is set),
 * otherwise the queued lost chunks, if any. */
void efs_report_tick(struct efs_reporter *rp);

#endif
