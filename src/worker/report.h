/* SPDX-License-Identifier: MIT */
/* report.h - telling the master what this worker holds (after HDFS block
 * reports), and which chunks its scrubber found corrupt.
 *
 * A full report lists every chunk (id, last write time) in batches of
 * 5000; the master answers each batch with the chunks to delete (surplus,
 * unreferenced, or unknown and older than its orphan grace), which are
 * deleted unless written after the report began. The last batch lets the
 * master mark what the worker no longer holds. Full reports go out after
 * every registration, when a heartbeat's answer says "full_report" (the
 * master had counted this worker dead: a partition healed), within a
 * batch answer's "report_again_in_ms" (copies kept only for their youth)
 * and every REPORT_INTERVAL_MS; corrupt chunks within a fraction of a
 * second.
 *
 * Reports run on their own thread, with their own connection (opened for a
 * report, closed after it), never on
 * the heartbeat's: a report of a large store takes seconds, and the
 * heartbeat must not miss a beat for it (the master would think the worker
 * dead). The thread looks for work every 200 ms: the context's
 * full_report_due (set by every registration), the interval, and the
 * lost-chunk queue (context.h, filled by the scrubber).
 *
 * A batch whose exchange fails (a timeout, a lost connection or answer, a
 * broken gRPC call, a master answering 5xx) is sent again, up to
 * REPORT_BATCH_ATTEMPTS times in all, and the report goes on from there:
 * the batches the master answered stand (each is judged on its own, with
 * the report's started_at_ms and master_started_ms, which a resend keeps),
 * so the report resumes at the first batch not acknowledged instead of
 * listing the store again. A broken gRPC call goes on over HTTP. Only when
 * one batch fails every attempt (or the master no longer knows this
 * worker) is the report given up, to start over after REPORT_RETRY_MS; the
 * master marks missing replicas only at a report's last batch, so a report
 * given up half way marks nothing.
 */
#ifndef ECHOFS_WORKER_REPORT_H
#define ECHOFS_WORKER_REPORT_H

#include "echofs/ticker.h"

#include <stdatomic.h>
#include <stdint.h>

struct efs_worker_ctx;
struct efs_http_client;

struct efs_reporter {
	struct efs_worker_ctx *ctx;
	struct efs_ticker ticker;
	struct efs_http_client *http; /* the report under way's calls to the master */
	int64_t next_report_ms;	      /* monotonic: when the next full report is due */
	int64_t again_in_ms;	      /* the last report's "report_again_in_ms" (0: none) */
	/* monotonic: a full report due after a (re)registration waits until
	 * then for the control stream (WORKER_PROTOCOL=grpc; 0: no wait) */
	int64_t stream_wait_until_ms;
	/* For /metrics: report requests the master answered (every batch of
	 * full and lost-chunk reports), batches sent again after a failed
	 * exchange (the report resumed there), and full reports given up (to
	 * start over). */
	atomic_ullong batches_answered;
	atomic_ullong batches_resent;
	atomic_ullong reports_failed;
};

/* Starts the report thread for @ctx: the first full report goes out once
 * the worker is registered. 0 or -errno. */
int efs_report_start(struct efs_reporter *rp, struct efs_worker_ctx *ctx);
/* Stops the thread (a report under way ends at its next request) and frees
 * what start set up. Does nothing if not started. */
void efs_report_stop(struct efs_reporter *rp);

#endif
