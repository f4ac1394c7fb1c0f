/* SPDX-License-Identifier: MIT */
/* control.h - the master's side of the gRPC control plane
 * (proto/echofs.proto): Register, the workers' Connect streams, and the
 * stream table /api/v1/workers reads its "protocol" from.
 *
 * Every call must carry "authorization: Bearer <CLUSTER_SECRET>". A
 * Connect stream begins with a Hello naming a registered worker of this
 * cluster; each Heartbeat on it goes to the same registry as POST
 * /api/v1/workers/{id}/heartbeat: stamped in memory on the completion-queue
 * thread (efs_registry_stamp; the registry's flusher writes the stamps),
 * or, with no fresh stamp (the stream's first beat, one after a gap),
 * recorded through the store by CONTROL_BEAT_THREADS threads off that
 * thread (efs_registry_stream_heartbeat); the master answers a rejoin with a
 * SendFullReport instruction and tells the interval at once. When a
 * stream breaks (the worker died, the connection dropped), the worker is
 * suspect at once and dead GRPC_STREAM_GRACE_MS later unless it beats
 * again (efs_registry_suspect); a stream ended by this master's own
 * shutdown suspects nobody. A stream with no message for
 * CONTROL_SILENT_BEATS heartbeat intervals and CONTROL_SILENT_MIN_MS (a
 * partition that closed nothing) is ended by this master and counts as
 * broken. The collector's replica deletes go down the stream of a worker
 * that has one (efs_control_delete_send), all of a chunk's at once, and
 * wait for their Acks; without a stream they stay HTTP calls. Repair's
 * copies to a worker with a stream go down it too (efs_control_copy_send:
 * the worker fetches the chunk from another worker over HTTP), several at
 * once, each Ack collected as it comes (efs_control_collect). A
 * ChunkDelta's corrupt and removed ids mark the worker's replicas of them
 * bad (as a report's `lost`: repair follows); its added ids are left to
 * the next full report. A Report call is a full chunk report in batches, each judged
 * by the HTTP report's own code (efs_api_report_judge) and answered with
 * its verdicts (a ReportReply) before the next.
 */
#ifndef ECHOFS_MASTER_CONTROL_H
#define ECHOFS_MASTER_CONTROL_H

#include "echofs/common.h"
#include "echofs/ticker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* A stream without a message for CONTROL_SILENT_BEATS heartbeat intervals,
 * and at least CONTROL_SILENT_MIN_MS (a loaded master or worker can delay a
 * few short beats), is ended. */
#define CONTROL_SILENT_BEATS 3
#define CONTROL_SILENT_MIN_MS 5000
/* The gRPC thread, with nothing ready after taking more than one
 * completion, sleeps this long before it waits again
 * (efs_rpc_server_config.batch_ms): a thousand streams' beats are
 * taken a few per wake-up instead of one or two. At most this much later
 * for a message, a broken stream's suspicion, a Register's answer; never
 * for an Ack (no sleep for EFS_RPC_ANSWER_MS after an instruction). */
#define CONTROL_BATCH_MS 5

struct efs_master;
struct efs_rpc_server;
struct control_stream;
struct efs_control_ticket;
struct control_beat;
/* Threads that record the streams' heartbeats in the registry, so that the
 * store's group commit batches them (one thread would wait for one commit
 * per beat: about 400 beats/s here, short of 1,000 workers at 1 s). */
#define CONTROL_BEAT_THREADS 8

struct efs_control {
	struct efs_master *master;
	/* NULL: GRPC_PORT=0, not started yet, or stopped. Published (start)
	 * and cleared (stop) under @lock, read under it (efs_control_port
	 * excepted: between start and stop only). */
	struct efs_rpc_server *rpc;
	pthread_mutex_t lock;		/* streams */
	/* Set by efs_control_stopping: pushed deletes wait for no Ack. */
	atomic_bool stopping;
	struct control_stream *streams; /* the current stream of each worker */
	/* Instructions waiting for their Ack, under lock; @acked is signalled
	 * (CLOCK_MONOTONIC) when one is answered or its stream ends. */
	struct efs_control_ticket *pending;
	pthread_cond_t acked;
	uint64_t next_instruction;
	_Atomic uint64_t streams_opened, streams_broken, heartbeats;
	_Atomic uint64_t deletes_pushed, deletes_acked;
	_Atomic uint64_t report_batches; /* Report batches judged */
	_Atomic uint64_t deltas, delta_marked; /* ChunkDeltas; replicas they marked bad */
	_Atomic uint64_t copies_pushed, copies_acked; /* repair's CopyChunk instructions */
	_Atomic uint64_t streams_silenced; /* of streams_broken: by the sweep */
	struct efs_ticker sweep;	   /* ends silent streams (control.c) */
	/* Stream beats waiting to be recorded (under lock), by
	 * CONTROL_BEAT_THREADS threads (control.c: off the CQ thread). */
	struct control_beat *beats_head, *beats_tail;
	pthread_cond_t beat_ready, beat_done;
	pthread_t beat_threads[CONTROL_BEAT_THREADS];
	size_t beat_thread_count;
	bool beats_stopping;
};

/* Listens on MASTER_HOST:GRPC_PORT (nothing when it is 0). 0, or -errno
 * with one line in @err. */
int efs_control_start(struct efs_control *ctl, struct efs_master *m, char *err, size_t errlen);
/* The port it listens on; 0 when off. Between start and stop only (it
 * reads ctl->rpc unlocked: the HTTP handlers that ask run within them). */
uint16_t efs_control_port(const struct efs_control *ctl);
/* Whether @worker_id has an open Connect stream to this master. */
bool efs_control_streaming(struct efs_control *ctl, const char *worker_id);
/* Pushes a conditional delete of @chunk_id (kept unless unwritten for
 * @unmodified_for_ms, refused under a lease epoch older than one the
 * worker saw) to @worker_id's stream without waiting: 0 with *@ticket,
 * whose Ack is awaited until @timeout_ms from now and taken with
 * efs_control_collect (or dropped with efs_control_forget), exactly one
 * of the two, once; so a chunk's deletes on several workers are under way
 * at once. The Ack's status is the HTTP DELETE's answer (204, 404, 412,
 * 409, 400, 500; 503: the worker's delete queue is full), or -EPIPE (the
 * stream ended first) or -ETIMEDOUT; after a negative answer the delete
 * may still happen (it is idempotent: retry it over HTTP). -ENOTCONN (no
 * stream to this master: call it over HTTP) or -ENOMEM, no ticket. Once
 * the master is stopping (efs_control_stopping) a collect that waits on
 * a delete's ticket returns at once, as for its cancel: the delete was
 * sent but is not waited for (nor worth an HTTP retry now). Any thread but
 * the control plane's own. */
int efs_control_delete_send(struct efs_control *ctl, const char *worker_id,
			    const char *chunk_id, int64_t unmodified_for_ms, uint64_t lease_epoch,
			    int64_t timeout_ms, struct efs_control_ticket **ticket);
/* Pushes a repair copy to @worker_id's stream: the worker fetches
 * @chunk_id (@size bytes uncompressed) from @from_url over HTTP, checks
 * its SHA-256, and stores it (refused under a lease epoch older than one it
 * saw). Sends the CopyChunk and returns 0 with *@ticket, whose Ack is
 * awaited until @timeout_ms from now and taken with efs_control_collect
 * (or dropped with efs_control_forget): exactly one of the two, once. So
 * a caller has several copies under way at once. The Ack's status: 201
 * stored, 204 already held (idempotent), 409 stale epoch, 502 the source
 * failed or its bytes did not verify, 507 no room, 503 busy, 500.
 * -ENOTCONN (no stream: copy it over HTTP) or -ENOMEM, no ticket. Any
 * thread but the control plane's own. */
int efs_control_copy_send(struct efs_control *ctl, const char *worker_id, const char *chunk_id,
			  uint64_t size, const char *from_url, uint64_t lease_epoch,
			  int64_t timeout_ms, struct efs_control_ticket **ticket);
/* Waits until one of @tickets[0..@n) (@n > 0) is answered, its stream
 * ended or its wait ran out, whichever comes first; an answered one is
 * taken before one whose wait ran out. Frees that ticket and returns its
 * index (the caller drops it from its array), with its status in
 * *@status (the Ack's status, -EPIPE: its stream ended, -ETIMEDOUT).
 * With @cancel (NULL: none) true, or made true and then efs_control_wake
 * called, returns @n at once instead when none is answered: no ticket
 * taken, *@status untouched (the caller collects or forgets them later);
 * so too, once the master is stopping, when one of @tickets is a
 * delete's.
 * Any thread but the control plane's own. */
size_t efs_control_collect(struct efs_control *ctl, struct efs_control_ticket *const *tickets,
			   size_t n, int *status, const atomic_bool *cancel);
/* Wakes every efs_control_collect waiting now, so that each looks at its
 * @cancel again (set it first). */
void efs_control_wake(struct efs_control *ctl);
/* Drops @ticket unanswered (a caller that stops waiting: its Ack, if one
 * comes, is ignored: the ticket is off the list Acks are matched on before
 * it is freed). NULL is accepted. */
void efs_control_forget(struct efs_control *ctl, struct efs_control_ticket *ticket);
/* The master is stopping: every efs_control_collect waiting on a delete's
 * ticket returns now, as do later ones at once. Copies are not touched
 * (repair stops its own waits: efs_control_collect's cancel). Before
 * efs_control_stop; idempotent. */
void efs_control_stopping(struct efs_control *ctl);
/* How many workers have an open stream to this master now. */
size_t efs_control_streams(struct efs_control *ctl);
/* Ends every stream (no worker is suspected for it) and stops. Tickets
 * still held are abandoned, not freed: answered -EPIPE at once, each still
 * its holder's to collect or forget (before or after this returns: both
 * go on working, so the holder may be stopped after the control plane).
 * A zeroed, never started one is accepted. */
void efs_control_stop(struct efs_control *ctl);

#endif
