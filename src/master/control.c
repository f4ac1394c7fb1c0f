/* SPDX-License-Identifier: MIT */
/* control.c - the gRPC control plane's master side (contract in control.h
 * and proto/echofs.proto). The callbacks run on rpc.c's one thread. */
#include "master/control.h"
#include "echofs.pb-c.h"
#include "echofs/http_server.h"
#include "echofs/log.h"
#include "echofs/rpc.h"
#include "echofs/ticker.h"
#include "echofs/util.h"
#include "master/api.h"
#include "master/master.h"

#include <stdlib.h>
#include <string.h>

#define PATH_REGISTER "/echofs.v1.ControlPlane/Register"
#define PATH_CONNECT "/echofs.v1.ControlPlane/Connect"
#define PATH_REPORT "/echofs.v1.ControlPlane/Report"

/* An instruction sent and not yet collected (efs_control_collect), on
 * ctl->pending under ctl->lock. */
struct efs_control_ticket {
	uint64_t id;
	const struct control_stream *stream; /* the stream it went down */
	int status;			     /* the Ack's, or -EPIPE */
	bool done;
	bool copy;			     /* a CopyChunk (else a delete) */
	int64_t deadline_ms;		     /* efs_mono_ms(): the wait for its Ack ends */
	struct efs_control_ticket *next;
};

struct control_stream {
	struct efs_control *ctl;
	struct efs_rpc_call *call;
	char worker_id[EFS_ID_MAX + 1];	 /* set by the Hello */
	bool listed;			 /* in ctl->streams (under ctl->lock) */
	bool answered;			 /* Register: its one reply is sent */
	_Atomic int64_t last_message_ms; /* efs_mono_ms() of its latest message */
	bool silenced;			 /* the sweep ended it (under ctl->lock) */
	struct control_beat *beat;	 /* its beat waiting in the queue (lock) */
	int recording;			 /* its beats being recorded now (lock) */
	struct control_stream *next;
};

static int check_secret(struct efs_control *ctl, struct efs_rpc_call *call, const char *auth)
{
	const char *secret = ctl->master->cfg.cluster_secret;
	const char *token = auth && strncasecmp(auth, "Bearer ", 7) == 0 ? auth + 7 : NULL;
	if (token && secret && efs_secret_equal(token, secret))
		return 0;
	efs_warn("gRPC call from %s refused: %s", efs_rpc_call_peer(call),
		 token ? "wrong cluster secret" : "no cluster secret (authorization: Bearer ...)");
	efs_rpc_call_set_why(call, "this call needs the cluster secret");
	return -EACCES;
}

static int open_call(void *arg, struct efs_rpc_call *call, const char *auth, void **state)
{
	struct efs_control *ctl = arg;
	int r = check_secret(ctl, call, auth);
	if (r < 0)
		return r;
	struct control_stream *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->ctl = ctl;
	st->call = call;
	*state = st;
	return 0;
}

/* Packs and queues one message down. */
static int send_down(struct efs_rpc_call *call, const Echofs__V1__MasterMessage *msg)
{
	size_t len = echofs__v1__master_message__get_packed_size(msg);
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	echofs__v1__master_message__pack(msg, buf);
	int r = efs_rpc_call_send(call, buf, len);
	free(buf);
	return r;
}

static int space_valid(struct efs_rpc_call *call, const Echofs__V1__Space *space)
{
	if (!space || space->capacity_bytes > INT64_MAX ||
	    space->free_bytes > space->capacity_bytes || space->chunk_count > INT64_MAX) {
		efs_rpc_call_set_why(call, "space: free_bytes must not exceed capacity_bytes");
		return -EINVAL;
	}
	return 0;
}

/* ---- Register ---- */

static int register_message(void *state, struct efs_rpc_call *call, const uint8_t *data, size_t len)
{
	struct control_stream *st = state;
	struct efs_master *m = st->ctl->master;
	char id[EFS_ID_MAX + 1];
	int r;

	if (st->answered) {
		efs_rpc_call_set_why(call, "Register takes one message");
		return -EINVAL;
	}
	Echofs__V1__RegisterRequest *req = echofs__v1__register_request__unpack(NULL, len, data);
	if (!req) {
		efs_rpc_call_set_why(call, "malformed RegisterRequest");
		return -EINVAL;
	}
	const char *ours = efs_meta_cluster_id(m->meta);
	if (strlen(req->url) > EFS_URL_MAX || !efs_http_url_valid(req->url)) {
		efs_rpc_call_set_why(call, "url must be an http:// or https:// URL");
		r = -EINVAL;
	} else if (req->worker_id[0] && !efs_id_valid(req->worker_id)) {
		efs_rpc_call_set_why(call, "worker_id must be 1-64 characters of [A-Za-z0-9_-]");
		r = -EINVAL;
	} else if (!efs_zone_valid(req->zone)) {
		efs_rpc_call_set_why(call, "zone must be at most %d characters of [A-Za-z0-9._-]",
				     EFS_ZONE_MAX);
		r = -EINVAL;
	} else if (req->cluster_id[0] && strcmp(req->cluster_id, ours) != 0) {
		efs_rpc_call_set_why(call, "this master belongs to cluster %s", ours);
		r = -EXDEV;
	} else if ((r = space_valid(call, req->space)) == 0) {
		r = efs_registry_register(&m->registry, req->worker_id[0] ? req->worker_id : NULL,
					  req->url, req->zone, req->space->capacity_bytes,
					  req->space->free_bytes, req->space->chunk_count, id);
		if (r < 0) {
			efs_rpc_call_set_why(call, "metadata store: %s", strerror(-r));
			r = -EAGAIN;
		}
	}
	echofs__v1__register_request__free_unpacked(req, NULL);
	if (r < 0)
		return r;
	Echofs__V1__RegisterReply reply = ECHOFS__V1__REGISTER_REPLY__INIT;
	reply.worker_id = id;
	reply.heartbeat_interval_ms = (uint64_t)m->cfg.heartbeat_interval_ms;
	reply.cluster_id = (char *)ours;
	size_t n = echofs__v1__register_reply__get_packed_size(&reply);
	uint8_t buf[256];
	if (n > sizeof(buf))
		return -EIO;
	echofs__v1__register_reply__pack(&reply, buf);
	st->answered = true;
	return efs_rpc_call_send(call, buf, n);
}

static int register_end(void *state, struct efs_rpc_call *call)
{
	struct control_stream *st = state;
	if (st->answered)
		return 0;
	efs_rpc_call_set_why(call, "Register needs one RegisterRequest");
	return -EINVAL;
}

static void plain_close(void *state, bool broken)
{
	free(state);
}

/* ---- Connect ---- */

/* Lists @st as its worker's stream, in place of an older one (a worker
 * that reconnected before this master saw its old stream break). */
static void list_stream(struct efs_control *ctl, struct control_stream *st)
{
	pthread_mutex_lock(&ctl->lock);
	for (struct control_stream **p = &ctl->streams; *p; p = &(*p)->next) {
		if (strcmp((*p)->worker_id, st->worker_id) == 0) {
			(*p)->listed = false;
			*p = (*p)->next;
			break;
		}
	}
	st->next = ctl->streams;
	ctl->streams = st;
	st->listed = true;
	pthread_mutex_unlock(&ctl->lock);
}

static int hello(struct control_stream *st, struct efs_rpc_call *call, const Echofs__V1__Hello *h)
{
	struct efs_master *m = st->ctl->master;
	const char *ours = efs_meta_cluster_id(m->meta);
	struct efs_worker_info info;

	if (!efs_id_valid(h->worker_id)) {
		efs_rpc_call_set_why(call,
				     "hello: worker_id must be 1-64 characters of [A-Za-z0-9_-]");
		return -EINVAL;
	}
	if (h->cluster_id[0] && strcmp(h->cluster_id, ours) != 0) {
		efs_error("worker %s belongs to cluster %.64s, this master to cluster %s: its gRPC "
			  "stream is refused (told WrongCluster)",
			  h->worker_id, h->cluster_id, ours);
		/* the instruction first, then the status: the worker stops
		 * using this master's control plane either way */
		Echofs__V1__MasterMessage down = ECHOFS__V1__MASTER_MESSAGE__INIT;
		Echofs__V1__WrongCluster wrong = ECHOFS__V1__WRONG_CLUSTER__INIT;
		wrong.cluster_id = (char *)ours;
		down.body_case = ECHOFS__V1__MASTER_MESSAGE__BODY_WRONG_CLUSTER;
		down.wrong_cluster = &wrong;
		send_down(call, &down);
		efs_rpc_call_set_why(call, "this master belongs to cluster %s", ours);
		return -EXDEV;
	}
	int r = efs_meta_worker_get(m->meta, h->worker_id, &info);
	if (r < 0) {
		efs_rpc_call_set_why(call, r == -ENOENT ? "unknown worker: register again"
							: "metadata store unavailable");
		return r == -ENOENT ? r : -EAGAIN;
	}
	efs_strlcpy(st->worker_id, h->worker_id, sizeof(st->worker_id));
	atomic_store(&st->last_message_ms, efs_mono_ms());
	list_stream(st->ctl, st);
	atomic_fetch_add(&st->ctl->streams_opened, 1);
	efs_info("worker %s connected over gRPC from %s", st->worker_id, efs_rpc_call_peer(call));
	Echofs__V1__MasterMessage down = ECHOFS__V1__MASTER_MESSAGE__INIT;
	Echofs__V1__SetHeartbeatInterval interval = ECHOFS__V1__SET_HEARTBEAT_INTERVAL__INIT;
	interval.heartbeat_interval_ms = (uint64_t)m->cfg.heartbeat_interval_ms;
	down.body_case = ECHOFS__V1__MASTER_MESSAGE__BODY_SET_HEARTBEAT_INTERVAL;
	down.set_heartbeat_interval = &interval;
	return send_down(call, &down);
}

/* A stream's heartbeat waiting for (or under) efs_registry_heartbeat on a
 * beat thread; one per stream at most: a newer beat replaces the data of
 * one still queued. @stream is NULL once the stream closed. */
struct control_beat {
	struct control_stream *stream;
	char worker_id[EFS_ID_MAX + 1];
	uint64_t capacity_bytes, free_bytes, chunk_count;
	struct control_beat *next;
};

/* Asks @st's worker for a full chunk report (a rejoin); a failed send is
 * asked again at its next beat. */
static void ask_report(struct control_stream *st)
{
	Echofs__V1__MasterMessage down = ECHOFS__V1__MASTER_MESSAGE__INIT;
	Echofs__V1__SendFullReport ask = ECHOFS__V1__SEND_FULL_REPORT__INIT;
	down.body_case = ECHOFS__V1__MASTER_MESSAGE__BODY_SEND_FULL_REPORT;
	down.send_full_report = &ask;
	send_down(st->call, &down);
}

/* A beat of a worker stamped lately is stamped again here, in memory
 * (efs_registry_stamp: the registry's flusher writes it); any other (the
 * stream's first, one after a gap) is queued for a beat thread, which
 * goes through the store: the CQ thread never waits for it. */
static int heartbeat(struct control_stream *st, struct efs_rpc_call *call,
		     const Echofs__V1__Heartbeat *hb)
{
	struct efs_control *ctl = st->ctl;
	struct efs_registry *reg = &ctl->master->registry;
	int r = space_valid(call, hb->space);
	if (r < 0)
		return r;
	pthread_mutex_lock(&ctl->lock);
	/* Only this thread queues its beats: with none queued or under way,
	 * none can start before the stamp below (beats stay in order). */
	bool idle = !st->beat && st->recording == 0;
	pthread_mutex_unlock(&ctl->lock);
	bool rejoined = false;
	if (idle && efs_registry_stamp(reg, st->worker_id, hb->space->capacity_bytes,
				       hb->space->free_bytes, hb->space->chunk_count,
				       &rejoined) == 0) {
		atomic_fetch_add(&ctl->heartbeats, 1);
		if (rejoined)
			ask_report(st);
		return 0;
	}
	pthread_mutex_lock(&ctl->lock);
	struct control_beat *b = st->beat;
	if (!b) {
		b = calloc(1, sizeof(*b));
		if (!b) {
			pthread_mutex_unlock(&ctl->lock);
			return 0; /* the next beat may pass */
		}
		b->stream = st;
		efs_strlcpy(b->worker_id, st->worker_id, sizeof(b->worker_id));
		if (ctl->beats_tail)
			ctl->beats_tail->next = b;
		else
			ctl->beats_head = b;
		ctl->beats_tail = b;
		st->beat = b;
		pthread_cond_signal(&ctl->beat_ready);
	}
	b->capacity_bytes = hb->space->capacity_bytes;
	b->free_bytes = hb->space->free_bytes;
	b->chunk_count = hb->space->chunk_count;
	pthread_mutex_unlock(&ctl->lock);
	/* Alive here while that beat waits for the store (R17). */
	efs_registry_heard(reg, st->worker_id);
	return 0;
}

/* Under ctl->lock: @st is no longer its worker's current stream. */
static void unlist_locked(struct efs_control *ctl, struct control_stream *st)
{
	if (!st->listed)
		return;
	for (struct control_stream **p = &ctl->streams; *p; p = &(*p)->next) {
		if (*p == st) {
			*p = st->next;
			break;
		}
	}
	st->listed = false;
}

/* Records one queued beat (the lock is not held), then answers a rejoin
 * or ends the stream of an unknown worker while the stream still lives. */
static void beat_record(struct efs_control *ctl, struct control_beat *b)
{
	struct efs_master *m = ctl->master;
	bool rejoined = false;
	int r = efs_registry_stream_heartbeat(&m->registry, b->worker_id, b->capacity_bytes,
					      b->free_bytes, b->chunk_count, &rejoined);
	if (r < 0 && r != -ENOENT)
		efs_warn("heartbeat of worker %s (gRPC) not recorded: %s", b->worker_id,
			 strerror(-r)); /* the stream stays, the next may pass */
	if (r == 0)
		atomic_fetch_add(&ctl->heartbeats, 1);
	pthread_mutex_lock(&ctl->lock);
	struct control_stream *st = b->stream; /* alive: close() waits for us */
	st->recording--;
	if (r == -ENOENT) {
		efs_warn("worker %s beats on gRPC but is unknown here: ending its stream (it "
			 "registers again)",
			 b->worker_id);
		unlist_locked(ctl, st); /* refused, not broken: nobody to suspect */
		efs_rpc_call_cancel(st->call, -ENOENT, "unknown worker: register again");
	} else if (rejoined) {
		ask_report(st);
	}
	pthread_cond_broadcast(&ctl->beat_done);
	pthread_mutex_unlock(&ctl->lock);
	free(b);
}

static void *beat_main(void *arg)
{
	struct efs_control *ctl = arg;
	pthread_mutex_lock(&ctl->lock);
	for (;;) {
		while (!ctl->beats_head && !ctl->beats_stopping)
			pthread_cond_wait(&ctl->beat_ready, &ctl->lock);
		struct control_beat *b = ctl->beats_head;
		if (!b)
			break; /* stopping, nothing left */
		ctl->beats_head = b->next;
		if (!ctl->beats_head)
			ctl->beats_tail = NULL;
		if (!b->stream) { /* its stream closed first */
			free(b);
			continue;
		}
		b->stream->beat = NULL; /* a newer beat queues anew */
		b->stream->recording++;
		pthread_mutex_unlock(&ctl->lock);
		beat_record(ctl, b);
		pthread_mutex_lock(&ctl->lock);
	}
	pthread_mutex_unlock(&ctl->lock);
	return NULL;
}

/* An Ack from @st's worker: its waiting instruction is answered. */
static void acked(struct control_stream *st, const Echofs__V1__Ack *ack)
{
	struct efs_control *ctl = st->ctl;
	pthread_mutex_lock(&ctl->lock);
	for (struct efs_control_ticket *p = ctl->pending; p; p = p->next) {
		if (p->id == ack->instruction_id && p->stream == st && !p->done) {
			p->status = ack->status > 0 && ack->status < 600 ? (int)ack->status : 500;
			p->done = true;
			atomic_fetch_add(p->copy ? &ctl->copies_acked : &ctl->deletes_acked, 1);
			pthread_cond_broadcast(&ctl->acked);
			break;
		}
	}
	pthread_mutex_unlock(&ctl->lock);
}

/* Marks @worker_id's replicas of @ids bad (the report's `lost`); returns
 * how many rows changed. An id no row of that worker names changes
 * nothing. */
static size_t mark_bad(struct efs_master *m, const char *worker_id, char **ids, size_t n)
{
	size_t marked = 0;
	for (size_t i = 0; i < n; i++)
		marked += efs_meta_replica_mark_lost(m->meta, ids[i], worker_id, INT64_MAX) > 0;
	return marked;
}

/* A ChunkDelta: the corrupt (quarantined by the scrubber) and removed
 * (deleted, still gone) copies lose their replica: marked bad, as a
 * report's `lost`, so repair copies the chunk from a good replica (and
 * removes the bad row once it has). Added ids are not acted on: whether
 * an unnamed copy is adopted, kept or deleted is a full report's verdict
 * (its age, the chunk's replicas), and the next report gives it. */
static int delta(struct control_stream *st, struct efs_rpc_call *call,
		 const Echofs__V1__ChunkDelta *d)
{
	struct efs_master *m = st->ctl->master;
	for (size_t i = 0; i < d->n_corrupt; i++)
		if (!efs_chunk_id_valid(d->corrupt[i]))
			goto bad;
	for (size_t i = 0; i < d->n_removed; i++)
		if (!efs_chunk_id_valid(d->removed[i]))
			goto bad;
	size_t corrupt = mark_bad(m, st->worker_id, d->corrupt, d->n_corrupt);
	size_t removed = mark_bad(m, st->worker_id, d->removed, d->n_removed);
	atomic_fetch_add(&st->ctl->deltas, 1);
	atomic_fetch_add(&st->ctl->delta_marked, corrupt + removed);
	if (d->n_corrupt || corrupt || removed)
		efs_warn("worker %s (gRPC delta): %zu chunks corrupt, %zu deleted; %zu replicas "
			 "marked bad for repair",
			 st->worker_id, d->n_corrupt, d->n_removed, corrupt + removed);
	return 0;
bad:
	efs_rpc_call_set_why(call, "delta: chunk ids must be 64 hex");
	return -EINVAL;
}

static int connect_message(void *state, struct efs_rpc_call *call, const uint8_t *data, size_t len)
{
	struct control_stream *st = state;
	atomic_store(&st->last_message_ms, efs_mono_ms());
	Echofs__V1__WorkerMessage *msg = echofs__v1__worker_message__unpack(NULL, len, data);
	int r = 0;
	if (!msg) {
		efs_warn("gRPC stream from %s (worker %s): malformed message, ending it",
			 efs_rpc_call_peer(call), st->worker_id[0] ? st->worker_id : "?");
		efs_rpc_call_set_why(call, "malformed WorkerMessage");
		return -EINVAL;
	}
	bool hello_first = msg->body_case == ECHOFS__V1__WORKER_MESSAGE__BODY_HELLO;
	if (hello_first == (st->worker_id[0] != '\0')) {
		efs_rpc_call_set_why(call, "a stream begins with one Hello, and has only one");
		r = -EINVAL;
		goto out;
	}
	switch (msg->body_case) {
	case ECHOFS__V1__WORKER_MESSAGE__BODY_HELLO:
		r = hello(st, call, msg->hello);
		break;
	case ECHOFS__V1__WORKER_MESSAGE__BODY_HEARTBEAT:
		r = heartbeat(st, call, msg->heartbeat);
		break;
	case ECHOFS__V1__WORKER_MESSAGE__BODY_ACK:
		acked(st, msg->ack);
		break;
	case ECHOFS__V1__WORKER_MESSAGE__BODY_DELTA:
		r = delta(st, call, msg->delta);
		break;
	default:
		efs_rpc_call_set_why(call, "empty WorkerMessage");
		r = -EINVAL;
	}
out:
	echofs__v1__worker_message__free_unpacked(msg, NULL);
	return r;
}

static void connect_close(void *state, bool broken)
{
	struct control_stream *st = state;
	struct efs_control *ctl = st->ctl;
	pthread_mutex_lock(&ctl->lock);
	/* Its beat: a queued one is dropped; one being recorded is waited for,
	 * so that no beat of this stream lands after the suspicion below. */
	while (st->recording > 0)
		pthread_cond_wait(&ctl->beat_done, &ctl->lock);
	if (st->beat)
		st->beat->stream = NULL;
	st->beat = NULL;
	/* what still waits for an Ack on it: the callers go over HTTP */
	for (struct efs_control_ticket *p = ctl->pending; p; p = p->next) {
		if (p->stream == st && !p->done) {
			p->status = -EPIPE;
			p->done = true;
			pthread_cond_broadcast(&ctl->acked);
		}
	}
	bool current = st->listed;
	bool silenced = st->silenced;
	if (current) {
		for (struct control_stream **p = &ctl->streams; *p; p = &(*p)->next) {
			if (*p == st) {
				*p = st->next;
				break;
			}
		}
		st->listed = false;
	}
	/* NULL only before start published it: not stopping then */
	bool stopping = ctl->rpc && efs_rpc_server_stopping(ctl->rpc);
	pthread_mutex_unlock(&ctl->lock);
	if (current && broken && !stopping) {
		int64_t grace = ctl->master->cfg.grpc_stream_grace_ms;
		const char *how = silenced ? "went silent (ended by this master)" : "broke";
		atomic_fetch_add(&ctl->streams_broken, 1);
		if (silenced)
			atomic_fetch_add(&ctl->streams_silenced, 1);
		int r = efs_registry_suspect(&ctl->master->registry, st->worker_id, grace);
		if (r < 0)
			efs_warn("worker %s: its gRPC stream %s; cannot mark it suspect (%s): it "
				 "is counted dead WORKER_DEAD_AFTER_MS after its last beat",
				 st->worker_id, how, strerror(-r));
		else
			efs_warn("worker %s: its gRPC stream %s: suspect now, dead in %lld ms "
				 "(GRPC_STREAM_GRACE_MS) unless it beats again",
				 st->worker_id, how, (long long)grace);
	} else if (current) {
		efs_info("worker %s: its gRPC stream ended%s", st->worker_id,
			 stopping ? " (this master is stopping)" : "");
	}
	free(st);
}

/* Stops the beat threads (what is still queued names no stream). */
static void beats_stop(struct efs_control *ctl)
{
	if (!ctl->master->cfg.grpc_port)
		return;
	pthread_mutex_lock(&ctl->lock);
	ctl->beats_stopping = true;
	pthread_cond_broadcast(&ctl->beat_ready);
	pthread_mutex_unlock(&ctl->lock);
	for (size_t i = 0; i < ctl->beat_thread_count; i++)
		pthread_join(ctl->beat_threads[i], NULL);
	ctl->beat_thread_count = 0;
	pthread_cond_destroy(&ctl->beat_ready);
	pthread_cond_destroy(&ctl->beat_done);
}

/* ---- the silence sweep ---- */

/* A partition that sends neither FIN nor RST leaves a stream open and
 * silent: nothing breaks it before the keepalive (rpc.c), and the registry
 * would wait WORKER_DEAD_AFTER_MS. A listed stream with no message for
 * CONTROL_SILENT_BEATS heartbeat intervals (the interval it was told at
 * its Hello), and at least CONTROL_SILENT_MIN_MS, is ended here: its close suspects the worker, dead
 * GRPC_STREAM_GRACE_MS later unless it beats again (the worker's own
 * keepalive breaks its side; it then beats over HTTP and reconnects). */
static int64_t silence_ms(const struct efs_control *ctl)
{
	return EFS_MAX(CONTROL_SILENT_BEATS * ctl->master->cfg.heartbeat_interval_ms,
		       CONTROL_SILENT_MIN_MS);
}

static void sweep_main(struct efs_ticker *t, void *arg)
{
	struct efs_control *ctl = arg;
	int64_t limit = silence_ms(ctl);
	int64_t period = EFS_MAX(ctl->master->cfg.heartbeat_interval_ms / 2, 10);

	while (!efs_ticker_wait(t, period)) {
		int64_t now = efs_mono_ms();
		pthread_mutex_lock(&ctl->lock);
		/* listed streams are alive: close() unlists under this lock */
		for (struct control_stream *st = ctl->streams; st; st = st->next) {
			int64_t quiet = now - atomic_load(&st->last_message_ms);
			if (st->silenced || quiet <= limit)
				continue;
			st->silenced = true;
			efs_warn("worker %s: no message on its gRPC stream from %s for %lld ms (more "
				 "than %lld): ending the stream",
				 st->worker_id, efs_rpc_call_peer(st->call), (long long)quiet,
				 (long long)limit);
			efs_rpc_call_cancel(st->call, -EIO, "no message for too long (a partition?)");
		}
		pthread_mutex_unlock(&ctl->lock);
	}
}

/* ---- Report ---- */

/* One Report call: the worker it reports for, fixed by its first batch. */
struct report_call {
	struct efs_control *ctl;
	char worker_id[EFS_ID_MAX + 1];
};

static int report_open(void *arg, struct efs_rpc_call *call, const char *auth, void **state)
{
	struct efs_control *ctl = arg;
	int r = check_secret(ctl, call, auth);
	if (r < 0)
		return r;
	struct report_call *rc = calloc(1, sizeof(*rc));
	if (!rc)
		return -ENOMEM;
	rc->ctl = ctl;
	*state = rc;
	return 0;
}

/* Who the batch is from: the first names a registered worker of this
 * cluster, the others the same one. 0 or -errno (the call's status). */
static int report_who(struct report_call *rc, struct efs_rpc_call *call,
		      const Echofs__V1__ReportBatch *b)
{
	struct efs_master *m = rc->ctl->master;
	const char *ours = efs_meta_cluster_id(m->meta);
	struct efs_worker_info info;

	if (rc->worker_id[0]) {
		if (strcmp(rc->worker_id, b->worker_id) == 0)
			return 0;
		efs_rpc_call_set_why(call, "every batch of a report names the same worker_id");
		return -EINVAL;
	}
	if (!efs_id_valid(b->worker_id)) {
		efs_rpc_call_set_why(call, "worker_id must be 1-64 characters of [A-Za-z0-9_-]");
		return -EINVAL;
	}
	/* as the HTTP report's EFS_HDR_CLUSTER: another cluster's chunks are
	 * not this cluster's orphans */
	if (b->cluster_id[0] && strcmp(b->cluster_id, ours) != 0) {
		efs_error("worker %s (cluster %.64s) sent a gRPC report to this master of "
			  "cluster %s: refused",
			  b->worker_id, b->cluster_id, ours);
		efs_rpc_call_set_why(call, "this master belongs to cluster %s", ours);
		return -EXDEV;
	}
	int r = efs_meta_worker_get(m->meta, b->worker_id, &info);
	if (r < 0) {
		efs_rpc_call_set_why(call, r == -ENOENT ? "unknown worker: register again"
							: "metadata store unavailable");
		return r == -ENOENT ? r : -EAGAIN;
	}
	efs_strlcpy(rc->worker_id, b->worker_id, sizeof(rc->worker_id));
	return 0;
}

/* The batch as the HTTP report's checked body (efs_api_report_parse's
 * rules); @lost is a new JSON array the caller frees. */
static int report_body(struct efs_rpc_call *call, const Echofs__V1__ReportBatch *b,
		       struct efs_report_body *rb, json_t **lost)
{
	if (b->started_at_ms > INT64_MAX || b->now_ms > INT64_MAX) {
		efs_rpc_call_set_why(call, "started_at_ms and now_ms must be below 2^63");
		return -EINVAL;
	}
	struct efs_report_entry *e = calloc(b->n_chunks ? b->n_chunks : 1, sizeof(*e));
	json_t *list = json_array();
	if (!e || !list) {
		free(e);
		json_decref(list);
		return -ENOMEM;
	}
	for (size_t i = 0; i < b->n_chunks; i++) {
		const char *id = b->chunks[i]->chunk_id;
		if (!efs_chunk_id_valid(id)) {
			efs_rpc_call_set_why(call, "chunks[%zu]: chunk_id must be 64 hex", i);
			free(e);
			json_decref(list);
			return -EINVAL;
		}
		efs_strlcpy(e[i].chunk_id, id, sizeof(e[i].chunk_id));
		e[i].mtime_ms = b->chunks[i]->mtime_ms;
	}
	for (size_t i = 0; i < b->n_lost; i++)
		json_array_append_new(list, json_string(b->lost[i]));
	*rb = (struct efs_report_body){
	    .started_ms = (int64_t)b->started_at_ms,
	    .worker_now_ms = (int64_t)b->now_ms,
	    .master_started_ms = b->master_started_ms,
	    .entries = e,
	    .count = b->n_chunks,
	    .lost = list,
	    .lost_checked_after_ms = b->lost_checked_after_ms,
	    .last = b->last,
	};
	*lost = list;
	return 0;
}

/* One batch: judged as an HTTP report's (efs_api_report_judge), answered
 * with its verdicts. Runs on rpc.c's thread: a batch's transaction holds
 * the other streams' messages meanwhile (a batch is at most a few
 * thousand chunks). */
static int report_message(void *state, struct efs_rpc_call *call, const uint8_t *data, size_t len)
{
	struct report_call *rc = state;
	struct efs_master *m = rc->ctl->master;
	struct efs_report_body rb;
	struct efs_report_verdicts v = {0};
	json_t *lost = NULL;
	int r;

	Echofs__V1__ReportBatch *b = echofs__v1__report_batch__unpack(NULL, len, data);
	if (!b) {
		efs_rpc_call_set_why(call, "malformed ReportBatch");
		return -EINVAL;
	}
	if ((r = report_who(rc, call, b)) < 0 || (r = report_body(call, b, &rb, &lost)) < 0)
		goto out;
	r = efs_api_report_judge(m, rc->worker_id, &rb, &v);
	free(rb.entries);
	json_decref(lost);
	if (r < 0) {
		efs_warn("gRPC report batch of worker %s not judged: %s", rc->worker_id,
			 strerror(-r));
		efs_rpc_call_set_why(call, "metadata store: %s", strerror(-r));
		r = r == -ENOMEM ? r : -EAGAIN;
		goto out;
	}
	atomic_fetch_add(&rc->ctl->report_batches, 1);
	size_t n = json_array_size(v.del);
	char **ids = calloc(n ? n : 1, sizeof(*ids));
	if (!ids) {
		r = -ENOMEM;
		goto verdicts;
	}
	for (size_t i = 0; i < n; i++)
		ids[i] = (char *)json_string_value(json_array_get(v.del, i));
	Echofs__V1__ReportReply reply = ECHOFS__V1__REPORT_REPLY__INIT;
	reply.accepted = b->n_chunks;
	reply.n_delete_ = n;
	reply.delete_ = ids;
	reply.adopted = (uint64_t)v.adopted;
	reply.lost_marked = (uint64_t)v.marked;
	reply.now_ms = (uint64_t)efs_now_ms();
	reply.report_again_in_ms = (uint64_t)EFS_MAX(v.again_in_ms, 0);
	size_t plen = echofs__v1__report_reply__get_packed_size(&reply);
	uint8_t *buf = malloc(plen ? plen : 1);
	if (!buf) {
		r = -ENOMEM;
	} else {
		echofs__v1__report_reply__pack(&reply, buf);
		r = efs_rpc_call_send(call, buf, plen);
		if (r == -EMSGSIZE)
			efs_rpc_call_set_why(call, "the verdicts on this batch exceed a message: "
						   "send smaller batches");
		free(buf);
	}
	free(ids);
verdicts:
	json_decref(v.del);
out:
	echofs__v1__report_batch__free_unpacked(b, NULL);
	return r;
}

static const struct efs_rpc_method methods[] = {
    {PATH_REGISTER, open_call, register_message, register_end, plain_close},
    {PATH_CONNECT, open_call, connect_message, NULL, connect_close},
    {PATH_REPORT, report_open, report_message, NULL, plain_close},
};

int efs_control_start(struct efs_control *ctl, struct efs_master *m, char *err, size_t errlen)
{
	memset(ctl, 0, sizeof(*ctl));
	ctl->master = m;
	pthread_mutex_init(&ctl->lock, NULL);
	int r = efs_ticker_cond_init(&ctl->acked);
	if (r < 0) {
		snprintf(err, errlen, "cannot set up the control plane: %s", strerror(-r));
		return r;
	}
	atomic_init(&ctl->deletes_pushed, 0);
	atomic_init(&ctl->deletes_acked, 0);
	atomic_init(&ctl->streams_opened, 0);
	atomic_init(&ctl->streams_broken, 0);
	atomic_init(&ctl->heartbeats, 0);
	atomic_init(&ctl->report_batches, 0);
	atomic_init(&ctl->deltas, 0);
	atomic_init(&ctl->copies_pushed, 0);
	atomic_init(&ctl->copies_acked, 0);
	atomic_init(&ctl->delta_marked, 0);
	atomic_init(&ctl->streams_silenced, 0);
	atomic_init(&ctl->stopping, false);
	if (!m->cfg.grpc_port)
		return 0;
	pthread_cond_init(&ctl->beat_ready, NULL);
	pthread_cond_init(&ctl->beat_done, NULL);
	for (size_t i = 0; i < CONTROL_BEAT_THREADS; i++) {
		if ((r = -pthread_create(&ctl->beat_threads[i], NULL, beat_main, ctl)) < 0) {
			snprintf(err, errlen, "cannot start the gRPC beat threads: %s",
				 strerror(-r));
			beats_stop(ctl);
			return r;
		}
		ctl->beat_thread_count++;
	}
	struct efs_rpc_server_config cfg = {
	    .host = m->cfg.host,
	    .port = m->cfg.grpc_port,
	    .methods = methods,
	    .method_count = EFS_ARRAY_SIZE(methods),
	    .ctx = ctl,
	    .tls_cert_file = m->cfg.tls.cert_file, /* both or neither (efs_env_tls) */
	    .tls_key_file = m->cfg.tls.key_file,
	    .batch_ms = CONTROL_BATCH_MS,
	};
	struct efs_rpc_server *rpc;
	r = efs_rpc_server_start(&cfg, &rpc);
	if (r < 0) {
		beats_stop(ctl);
		snprintf(err, errlen, "cannot listen on %s:%u (MASTER_HOST/GRPC_PORT) for gRPC%s: %s",
			 m->cfg.host, m->cfg.grpc_port,
			 cfg.tls_cert_file ? " over TLS (TLS_CERT_FILE, TLS_KEY_FILE)" : "",
			 strerror(-r));
		return r;
	}
	/* Published under the lock: its thread (a stream's close) already
	 * runs, and reads it under the lock. */
	pthread_mutex_lock(&ctl->lock);
	ctl->rpc = rpc;
	pthread_mutex_unlock(&ctl->lock);
	if ((r = efs_registry_flusher_start(&m->registry)) < 0 ||
	    (r = efs_ticker_start(&ctl->sweep, sweep_main, ctl)) < 0) {
		snprintf(err, errlen, "cannot start the gRPC silence sweep or beat flusher: %s",
			 strerror(-r));
		efs_rpc_server_stop(rpc);
		pthread_mutex_lock(&ctl->lock);
		ctl->rpc = NULL;
		pthread_mutex_unlock(&ctl->lock);
		beats_stop(ctl);
		efs_registry_flusher_stop(&m->registry);
		return r;
	}
	efs_info("gRPC control plane listening on %s:%u%s; a broken worker stream counts the "
		 "worker dead after %lld ms, a stream silent for %lld ms is ended; stream beats "
		 "are written to the store every %lld ms",
		 m->cfg.host, efs_rpc_server_port(rpc), cfg.tls_cert_file ? " (TLS)" : "",
		 (long long)m->cfg.grpc_stream_grace_ms, (long long)silence_ms(ctl),
		 (long long)EFS_MAX(m->cfg.worker_dead_after_ms / 4, 1));
	return 0;
}

uint16_t efs_control_port(const struct efs_control *ctl)
{
	return ctl->rpc ? efs_rpc_server_port(ctl->rpc) : 0;
}

bool efs_control_streaming(struct efs_control *ctl, const char *worker_id)
{
	bool found = false;
	pthread_mutex_lock(&ctl->lock);
	for (struct control_stream *st = ctl->rpc ? ctl->streams : NULL; st && !found;
	     st = st->next)
		found = strcmp(st->worker_id, worker_id) == 0;
	pthread_mutex_unlock(&ctl->lock);
	return found;
}

/* Sends @down (its instruction id set here) to @worker_id's stream; its
 * Ack is awaited until @timeout_ms from now. 0 and *@out (a ticket on
 * ctl->pending, for efs_control_collect), or -ENOTCONN (no stream, or
 * the send failed), -ENOMEM. */
static int push_send(struct efs_control *ctl, const char *worker_id,
		     Echofs__V1__MasterMessage *down, bool copy, int64_t timeout_ms,
		     struct efs_control_ticket **out)
{
	struct efs_control_ticket *p;
	struct control_stream *st;
	uint8_t buf[2048];
	int r = 0;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->copy = copy;
	p->deadline_ms = efs_mono_ms() + EFS_MAX(timeout_ms, 0);
	pthread_mutex_lock(&ctl->lock);
	for (st = ctl->rpc ? ctl->streams : NULL; st && strcmp(st->worker_id, worker_id) != 0;
	     st = st->next)
		;
	if (!st) {
		r = -ENOTCONN;
		goto out;
	}
	down->instruction_id = p->id = ++ctl->next_instruction;
	size_t len = echofs__v1__master_message__get_packed_size(down);
	if (len > sizeof(buf)) {
		r = -ENOTCONN;
		goto out;
	}
	echofs__v1__master_message__pack(down, buf);
	/* Under the lock: @st cannot be closed (and freed) meanwhile. */
	if (efs_rpc_call_send(st->call, buf, len) < 0) {
		r = -ENOTCONN;
		goto out;
	}
	atomic_fetch_add(copy ? &ctl->copies_pushed : &ctl->deletes_pushed, 1);
	p->stream = st;
	p->next = ctl->pending;
	ctl->pending = p;
	*out = p;
	p = NULL;
out:
	pthread_mutex_unlock(&ctl->lock);
	free(p);
	return r;
}

/* Takes @p off ctl->pending and frees it. Under ctl->lock. */
static void ticket_drop(struct efs_control *ctl, struct efs_control_ticket *p)
{
	for (struct efs_control_ticket **q = &ctl->pending; *q; q = &(*q)->next) {
		if (*q == p) {
			*q = p->next;
			break;
		}
	}
	free(p);
}

size_t efs_control_collect(struct efs_control *ctl, struct efs_control_ticket *const *tickets,
			   size_t n, int *status, const atomic_bool *cancel)
{
	struct timespec deadline;
	size_t found = n;
	bool deletes = false;
	/* A stopping master abandons its waits for deletes: the worker may
	 * still carry one out (it is idempotent); if not, the copy is an
	 * orphan that its next chunk report finds (LIFECYCLE T13, T14), as
	 * after any delete that failed. The collector does not retry it: the
	 * chunk's row is gone. */
	for (size_t i = 0; i < n; i++)
		deletes |= !tickets[i]->copy;
	pthread_mutex_lock(&ctl->lock);
	for (;;) {
		/* An answer first, also once cancelled or stopping (it came:
		 * the caller records it rather than count it lost). */
		for (size_t i = 0; i < n && found == n; i++)
			if (tickets[i]->done)
				found = i;
		/* Checked under the lock efs_control_wake signals under: a
		 * cancel (or stop) set before that call is never slept
		 * through. */
		if (found == n &&
		    ((cancel && atomic_load(cancel)) || (deletes && atomic_load(&ctl->stopping)))) {
			pthread_mutex_unlock(&ctl->lock);
			return n;
		}
		/* Else the first wait that ended. */
		int64_t now = efs_mono_ms(), soonest = INT64_MAX;
		for (size_t i = 0; i < n && found == n; i++) {
			if (tickets[i]->deadline_ms <= now)
				found = i;
			soonest = EFS_MIN(soonest, tickets[i]->deadline_ms);
		}
		if (found < n)
			break;
		efs_ticker_deadline(soonest - now, &deadline);
		pthread_cond_timedwait(&ctl->acked, &ctl->lock, &deadline);
	}
	*status = tickets[found]->done ? tickets[found]->status : -ETIMEDOUT;
	ticket_drop(ctl, tickets[found]);
	pthread_mutex_unlock(&ctl->lock);
	return found;
}

void efs_control_wake(struct efs_control *ctl)
{
	pthread_mutex_lock(&ctl->lock);
	pthread_cond_broadcast(&ctl->acked);
	pthread_mutex_unlock(&ctl->lock);
}

void efs_control_forget(struct efs_control *ctl, struct efs_control_ticket *ticket)
{
	if (!ticket)
		return;
	pthread_mutex_lock(&ctl->lock);
	ticket_drop(ctl, ticket);
	pthread_mutex_unlock(&ctl->lock);
}

int efs_control_delete_send(struct efs_control *ctl, const char *worker_id,
			    const char *chunk_id, int64_t unmodified_for_ms, uint64_t lease_epoch,
			    int64_t timeout_ms, struct efs_control_ticket **ticket)
{
	Echofs__V1__MasterMessage down = ECHOFS__V1__MASTER_MESSAGE__INIT;
	Echofs__V1__DeleteChunks del = ECHOFS__V1__DELETE_CHUNKS__INIT;
	char *ids[1] = {(char *)chunk_id};

	del.n_chunk_ids = 1;
	del.chunk_ids = ids;
	del.lease_epoch = lease_epoch;
	del.unmodified_for_ms = (uint64_t)EFS_MAX(unmodified_for_ms, 0);
	down.body_case = ECHOFS__V1__MASTER_MESSAGE__BODY_DELETE_CHUNKS;
	down.delete_chunks = &del;
	return push_send(ctl, worker_id, &down, false, timeout_ms, ticket);
}

void efs_control_stopping(struct efs_control *ctl)
{
	if (!ctl->master)
		return; /* never started */
	/* Set before the wake, which signals under the lock that collect
	 * checks the flag under: no waiter sleeps through it. */
	atomic_store(&ctl->stopping, true);
	efs_control_wake(ctl);
}

int efs_control_copy_send(struct efs_control *ctl, const char *worker_id, const char *chunk_id,
			  uint64_t size, const char *from_url, uint64_t lease_epoch,
			  int64_t timeout_ms, struct efs_control_ticket **ticket)
{
	Echofs__V1__MasterMessage down = ECHOFS__V1__MASTER_MESSAGE__INIT;
	Echofs__V1__CopyChunk copy = ECHOFS__V1__COPY_CHUNK__INIT;

	copy.chunk_id = (char *)chunk_id;
	copy.from_url = (char *)from_url;
	copy.lease_epoch = lease_epoch;
	copy.size = size;
	down.body_case = ECHOFS__V1__MASTER_MESSAGE__BODY_COPY_CHUNK;
	down.copy_chunk = &copy;
	return push_send(ctl, worker_id, &down, true, timeout_ms, ticket);
}

size_t efs_control_streams(struct efs_control *ctl)
{
	size_t n = 0;
	pthread_mutex_lock(&ctl->lock);
	for (struct control_stream *st = ctl->rpc ? ctl->streams : NULL; st; st = st->next)
		n++;
	pthread_mutex_unlock(&ctl->lock);
	return n;
}

void efs_control_stop(struct efs_control *ctl)
{
	if (!ctl || !ctl->master)
		return;
	efs_ticker_stop(&ctl->sweep);
	efs_rpc_server_stop(ctl->rpc); /* every close() ran: no beat names a stream */
	/* Under the lock the callers read it under (push_send, streaming,
	 * streams: no longer at stop today, but not by contract). */
	pthread_mutex_lock(&ctl->lock);
	ctl->rpc = NULL;
	pthread_mutex_unlock(&ctl->lock);
	beats_stop(ctl);
	efs_registry_flusher_stop(&ctl->master->registry); /* writes the last stamps */
	/* Every stream's close answered its tickets -EPIPE; what is still
	 * pending is abandoned here: answered (so a collector returns at once)
	 * and taken off the list, each left to its holder's collect or forget,
	 * which frees it (control.h). No Ack can come any more. The lock and
	 * the Ack condition outlive the stop for those calls (they hold no
	 * resource: nothing to destroy), so the holder may stop before or
	 * after this. */
	pthread_mutex_lock(&ctl->lock);
	for (struct efs_control_ticket *p = ctl->pending, *next; p; p = next) {
		next = p->next;
		if (!p->done)
			p->status = -EPIPE;
		p->done = true;
		p->next = NULL;
	}
	ctl->pending = NULL;
	pthread_cond_broadcast(&ctl->acked);
	pthread_mutex_unlock(&ctl->lock);
	ctl->master = NULL;
}
