/* SPDX-License-Identifier: MIT */
/* copier.h - repair copies the master pushed on the control stream
 * (CopyChunk), carried out off the heartbeat thread.
 *
 * A copy fetches a chunk of up to 64 MiB from another worker over HTTP;
 * from a slow source that takes longer than the master's silence limit
 * and WORKER_DEAD_AFTER_MS. Run on the heartbeat thread, it stopped the
 * beats and the master ended the stream and counted the worker dead. So
 * the heartbeat thread only checks an instruction (validity, lease epoch,
 * chunk held already) and hands it here: a bounded queue
 * (EFS_COPIER_JOBS_MAX jobs queued, running, or finished and not yet
 * taken) served by EFS_COPIER_THREADS threads. A full queue refuses the
 * job (-EBUSY: the heartbeat thread answers 503, busy, and the master
 * writes that copy over HTTP instead). Each finished job leaves its
 * result (the Ack's status) for the heartbeat thread, which takes it
 * between slices of its wait on the stream and sends the Ack on the
 * stream the instruction came down, if that stream is still open
 * (@stream_generation); a result for a stream since closed is dropped
 * (the master gave up on it when the stream closed: -EPIPE, and wrote the
 * copy over HTTP).
 *
 * A job checks again when it starts what the heartbeat thread checked:
 * a newer lease epoch seen meanwhile refuses it (409), a copy stored
 * meanwhile answers 204 without a fetch. Two jobs for the same chunk may
 * run at once (a master that gave up and sent it again): both store the
 * same verified bytes, the store keeps one (the later record).
 *
 * Memory: each thread holds at most one chunk (its fetched bytes, and
 * the decoded ones of a gzip copy), 2 x 64 MiB at most per thread.
 *
 * Pushed deletes (DeleteChunks) run here too, off the heartbeat thread
 * (each writes and syncs a tombstone), on a queue and a thread of their
 * own (EFS_COPIER_DELETES_MAX jobs held), so that a delete never waits
 * behind a slow copy. A delete job does what DELETE /chunks/{id} with
 * X-Unmodified-For-Ms does for each of its ids (the heartbeat thread
 * checked the ids and admitted the lease epoch); its result is taken and
 * acknowledged as a copy's, with the status of its last id (204, 404,
 * 412, 500). A full delete queue refuses the job (-EBUSY: 503, the
 * collector deletes that copy over HTTP).
 */
#ifndef ECHOFS_WORKER_COPIER_H
#define ECHOFS_WORKER_COPIER_H

#include "echofs/common.h"
#include "echofs/meta.h" /* EFS_URL_MAX */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct efs_worker_ctx;

/* Copies carried out at once. */
#define EFS_COPIER_THREADS 2
/* Jobs held at once: queued, running, or finished and not yet taken. */
#define EFS_COPIER_JOBS_MAX 16
/* Delete jobs held at once: queued, running, or finished and not yet taken. */
#define EFS_COPIER_DELETES_MAX 64
/* The most chunk ids one delete job takes. */
#define EFS_COPIER_DELETE_IDS_MAX 1024
/* The largest chunk a pushed copy takes (the master's CHUNK_SIZE cap). */
#define EFS_COPIER_SIZE_MAX (64ULL * 1024 * 1024)

/* One pushed copy, as the heartbeat thread hands it over. */
struct efs_copy_request {
	uint64_t instruction_id;
	uint64_t stream_generation; /* the stream it came down (heartbeat.c) */
	char chunk_id[65];
	char from_url[EFS_URL_MAX + 1];
	uint64_t size;	      /* uncompressed bytes */
	uint64_t lease_epoch; /* 0: none */
};

/* One pushed delete, as the heartbeat thread hands it over (its ids are
 * valid chunk ids; its lease epoch admitted already). */
struct efs_delete_request {
	uint64_t instruction_id;
	uint64_t stream_generation;
	const char *const *chunk_ids; /* copied by efs_copier_submit_delete */
	size_t chunk_count;	      /* 1 .. EFS_COPIER_DELETE_IDS_MAX */
	int64_t unmodified_for_ms;
};

/* A finished copy or delete: the Ack to send. */
struct efs_copy_result {
	uint64_t instruction_id;
	uint64_t stream_generation;
	unsigned status; /* 201 stored, 204 held, 409, 502, 504, 507, 500 */
	int64_t took_ms; /* from the hand-over to now */
};

struct efs_copy_job;

struct efs_copier {
	struct efs_worker_ctx *ctx;
	pthread_mutex_t lock;
	pthread_cond_t ready; /* a job queued, or stopping */
	pthread_cond_t delete_ready; /* a delete queued, or stopping */
	pthread_t threads[EFS_COPIER_THREADS];
	size_t thread_count;
	pthread_t delete_thread;
	bool delete_started;
	bool stopping;				 /* under lock */
	atomic_bool aborting;			 /* running fetches give up (stop) */
	struct efs_copy_job *queue, *queue_tail; /* to run, oldest first */
	struct efs_copy_job *done, *done_tail;	 /* results not yet taken */
	size_t jobs;				 /* copies queued + running + done */
	struct efs_copy_job *deletes, *deletes_tail; /* deletes to run, oldest first */
	size_t delete_jobs;			     /* deletes queued + running + done */
	/* For the worker's metrics (any thread). */
	_Atomic uint64_t stored;  /* fetched, verified and stored (201) */
	_Atomic uint64_t held;	  /* answered 204: held already, nothing fetched */
	_Atomic uint64_t refused; /* refused busy: the queue was full */
	_Atomic uint64_t expired; /* answered 504: past EFS_COPY_DEADLINE_MS */
	_Atomic uint64_t running; /* jobs queued or running now */
	_Atomic uint64_t deleted; /* pushed deletes carried out (204), per chunk */
	_Atomic uint64_t deletes_refused; /* delete jobs refused busy */
};

/* Starts the copy threads and the delete thread. 0 or -errno (nothing to stop then). */
int efs_copier_start(struct efs_copier *cp, struct efs_worker_ctx *ctx);
/* Hands one copy over (copied). 0 queued; -EBUSY when EFS_COPIER_JOBS_MAX
 * jobs are held (counted in refused); -ENOMEM; -ESHUTDOWN when
 * stopping. */
int efs_copier_submit(struct efs_copier *cp, const struct efs_copy_request *req);
/* Hands one delete over (@req and its ids copied). 0 queued; -EBUSY when
 * EFS_COPIER_DELETES_MAX delete jobs are held (counted in
 * deletes_refused); -EINVAL for no or too many ids; -ENOMEM; -ESHUTDOWN
 * when stopping. */
int efs_copier_submit_delete(struct efs_copier *cp, const struct efs_delete_request *req);
/* Moves up to @max finished results into @out, oldest first; returns how
 * many. */
size_t efs_copier_take(struct efs_copier *cp, struct efs_copy_result *out, size_t max);
/* How many copies and deletes are held (queued, running, or finished and
 * not yet taken) now, into *@copies and *@deletes. */
void efs_copier_held(struct efs_copier *cp, size_t *copies, size_t *deletes);
/* Makes running fetches give up, drops queued jobs and results, joins the
 * threads. Safe on a copier that never started (zeroed). */
void efs_copier_stop(struct efs_copier *cp);

#endif
