/* SPDX-License-Identifier: MIT */
/* replica_batch.c - per-worker queues of small replica writes, sent as
 * one POST /chunks/batch at a time per worker by whichever caller finds
 * that worker idle (replica_batch.h). One lock for all the queues (the
 * critical sections are a few pointer moves) and a condition per caller:
 * a batch's end wakes the callers whose last item it answered, and one
 * caller waiting with an item queued on its worker, to send the next; the
 * others sleep on (a broadcast to all woke each of them at every batch's
 * end, to queue on the lock and sleep again). */
#include "master/replica_batch.h"
#include "echofs/chunk_batch.h"
#include "echofs/json.h"
#include "echofs/log.h"
#include "echofs/util.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONNECT_TIMEOUT_MS 2000
#define STALL_TIMEOUT_S 3 /* as a single replica PUT (chunk_io.c) */
/* The reply: an object per item, each at most an error's code and message. */
#define REPLY_CAP (64 * 1024)

struct lane;

/* One caller of efs_replica_batch_write, on its stack; under b->lock. */
struct waiter {
	pthread_cond_t cond;
	size_t pending; /* its items not done */
	bool waiting;	/* in pthread_cond_wait (not sending a batch) */
};

/* One replica of one chunk, on its caller's stack until done. */
struct item {
	const char *chunk_id;
	const void *data;
	size_t len;
	uint8_t flags;
	uint32_t crc;
	const char *url; /* the worker's, from the caller's target */
	struct efs_replica_batch_result *res;
	struct lane *lane;
	struct waiter *owner;
	bool taken; /* in a batch being sent */
	bool done;  /* res is final (set under the lock, after res) */
	struct item *next;
};

/* One worker's queue. */
struct lane {
	char worker_id[EFS_ID_MAX + 1];
	bool in_flight;	  /* a batch of its items is being sent */
	bool unsupported; /* answered 404/405: single PUTs from now on */
	struct item *head, *tail;
};

/* A batch taken off a lane, being sent by its leader. */
struct outgoing {
	struct efs_replica_batch *b;
	bool finished; /* its items answered, its lane free (finish_batch) */
	struct lane *lane;
	struct item *items[EFS_CHUNK_BATCH_MAX_ITEMS];
	size_t count;
	char url[EFS_URL_MAX + 32];
	struct efs_buf body;
	struct efs_http_call call;
};

struct efs_replica_batch {
	struct efs_replica_batch_config cfg;
	pthread_mutex_t lock;
	struct lane **lanes;
	size_t lane_count;
	_Atomic uint64_t batches, items, unsupported;
	uint64_t queued; /* items waiting in a queue, not yet in a batch (under lock) */
};

int efs_replica_batch_new(const struct efs_replica_batch_config *cfg,
			  struct efs_replica_batch **out)
{
	if (cfg->max_items < 1 || cfg->max_items > EFS_CHUNK_BATCH_MAX_ITEMS)
		return -EINVAL;
	struct efs_replica_batch *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->lanes = calloc(EFS_REPLICA_BATCH_MAX_WORKERS, sizeof(*b->lanes));
	if (!b->lanes) {
		free(b);
		return -ENOMEM;
	}
	b->cfg = *cfg;
	pthread_mutex_init(&b->lock, NULL);
	*out = b;
	return 0;
}

void efs_replica_batch_free(struct efs_replica_batch *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->lane_count; i++)
		free(b->lanes[i]);
	free(b->lanes);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

/* Under b->lock: @worker_id's lane, made on first use; NULL when the
 * table is full or out of memory (the caller writes single PUTs). */
static struct lane *lane_get(struct efs_replica_batch *b, const char *worker_id, bool create)
{
	for (size_t i = 0; i < b->lane_count; i++)
		if (strcmp(b->lanes[i]->worker_id, worker_id) == 0)
			return b->lanes[i];
	if (!create || b->lane_count >= EFS_REPLICA_BATCH_MAX_WORKERS)
		return NULL;
	struct lane *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	efs_strlcpy(l->worker_id, worker_id, sizeof(l->worker_id));
	b->lanes[b->lane_count++] = l;
	return l;
}

bool efs_replica_batch_supported(struct efs_replica_batch *b, const char *worker_id)
{
	pthread_mutex_lock(&b->lock);
	struct lane *l = lane_get(b, worker_id, false);
	bool ok = !l || !l->unsupported;
	pthread_mutex_unlock(&b->lock);
	return ok;
}

/* The result of a replica to write as a single PUT instead. */
static void set_unsupported(struct efs_replica_batch_result *res)
{
	memset(res, 0, sizeof(*res));
	res->unsupported = true;
}

/* Under b->lock: @it has its answer; its owner is woken if it was the
 * last it waited for (the owner cannot leave before the lock is free). */
static void item_done(struct item *it)
{
	it->done = true;
	if (--it->owner->pending == 0)
		pthread_cond_signal(&it->owner->cond);
}

/* Under b->lock: @it is done, to be written as a single PUT. */
static void mark_unsupported(struct item *it)
{
	set_unsupported(it->res);
	item_done(it);
}

/* Under b->lock, @l idle: wakes one caller waiting with an item queued
 * there, to send it. A caller busy sending another batch is not woken: it
 * looks at every lane of its items when it is back. */
static void wake_leader(struct lane *l)
{
	for (struct item *q = l->head; q; q = q->next)
		if (q->owner->waiting) {
			pthread_cond_signal(&q->owner->cond);
			return;
		}
}

/* Under b->lock: takes the lane's queue head into a batch (at least one
 * item, then as many as fit the caps); NULL out of memory. */
static struct outgoing *take_batch(struct efs_replica_batch *b, struct lane *l)
{
	struct outgoing *o = calloc(1, sizeof(*o));
	if (!o)
		return NULL;
	size_t bytes = EFS_CHUNK_BATCH_HEAD_LEN;
	o->b = b;
	o->lane = l;
	snprintf(o->url, sizeof(o->url), "%s/chunks/batch", l->head->url);
	while (l->head && o->count < b->cfg.max_items) {
		struct item *it = l->head;
		size_t need = EFS_CHUNK_BATCH_ITEM_HEAD_LEN + it->len;
		if (o->count > 0 && bytes + need > EFS_CHUNK_BATCH_MAX_BODY)
			break;
		bytes += need;
		l->head = it->next;
		it->next = NULL;
		it->taken = true;
		o->items[o->count++] = it;
		b->queued--;
	}
	if (!l->head)
		l->tail = NULL;
	l->in_flight = true;
	return o;
}

static void fail_all(struct outgoing *o, int error, const char *why)
{
	for (size_t i = 0; i < o->count; i++) {
		struct efs_replica_batch_result *res = o->items[i]->res;
		memset(res, 0, sizeof(*res));
		res->error = error;
		res->elapsed_ms = o->call.elapsed_ms;
		efs_strlcpy(res->errmsg, why, sizeof(res->errmsg));
	}
}

/* Under b->lock, after @o failed in transport: the items queued behind it
 * on its worker are failed unsent (replica_batch.h), not sent into the
 * same stall. */
static void fail_queued(struct efs_replica_batch *b, struct outgoing *o)
{
	struct lane *l = o->lane;
	for (struct item *q = l->head; q; q = q->next) {
		b->queued--;
		memset(q->res, 0, sizeof(*q->res));
		q->res->error = o->call.error;
		q->res->unsent = true;
		snprintf(q->res->errmsg, sizeof(q->res->errmsg),
			 "not sent: the batch before it to this worker failed: %.100s",
			 o->call.errmsg);
		item_done(q);
	}
	l->head = l->tail = NULL;
}

/* The reply of a batch that was sent: each item's result. */
static void read_reply(struct efs_replica_batch *b, struct outgoing *o)
{
	struct efs_http_call *c = &o->call;
	if (c->error) {
		fail_all(o, c->error, c->errmsg);
		return;
	}
	if (c->status == 404 || c->status == 405) {
		pthread_mutex_lock(&b->lock);
		bool first = !o->lane->unsupported;
		o->lane->unsupported = true;
		pthread_mutex_unlock(&b->lock);
		if (first) {
			atomic_fetch_add(&b->unsupported, 1);
			efs_info(
			    "worker %s answered %ld to POST /chunks/batch (an older worker, or "
			    "WORKER_BATCH_WRITES=0): its replicas are written one PUT each",
			    o->lane->worker_id, c->status);
		}
		/* Results only: done is set under the lock (finish_batch), as
		 * the owner may wake and leave as soon as it reads it. */
		for (size_t i = 0; i < o->count; i++)
			set_unsupported(o->items[i]->res);
		return;
	}
	if (c->status != 200) {
		/* Refused whole (wrong cluster, malformed, a lease): every item
		 * gets that answer, as its own PUT would have. */
		for (size_t i = 0; i < o->count; i++) {
			struct efs_replica_batch_result *res = o->items[i]->res;
			memset(res, 0, sizeof(*res));
			res->status = c->status;
			res->elapsed_ms = c->elapsed_ms;
			efs_strlcpy(res->body, c->resp.data ? c->resp.data : "", sizeof(res->body));
		}
		return;
	}
	json_error_t jerr;
	json_t *root = json_loadb(c->resp.data ? c->resp.data : "", c->resp.len, 0, &jerr);
	json_t *arr = root ? json_object_get(root, "items") : NULL;
	if (!json_is_array(arr) || json_array_size(arr) != o->count) {
		json_decref(root);
		fail_all(o, -EPROTO, "malformed reply to POST /chunks/batch");
		return;
	}
	for (size_t i = 0; i < o->count; i++) {
		struct efs_replica_batch_result *res = o->items[i]->res;
		json_t *el = json_array_get(arr, i);
		json_t *st = json_object_get(el, "status");
		memset(res, 0, sizeof(*res));
		res->elapsed_ms = c->elapsed_ms;
		if (!json_is_integer(st)) {
			res->error = -EPROTO;
			efs_strlcpy(res->errmsg,
				    "malformed item in the reply to POST /chunks/batch",
				    sizeof(res->errmsg));
			continue;
		}
		res->status = (long)json_integer_value(st);
		if (res->status != 201) {
			char *text = json_dumps(el, JSON_COMPACT);
			efs_strlcpy(res->body, text ? text : "", sizeof(res->body));
			free(text);
		}
	}
	json_decref(root);
}

/* A batch's call ended (or never started): its items get their answers,
 * those queued behind a transport failure fail unsent, and its worker's
 * queue is free for the next leader at once, whatever the leader's other
 * batches still wait for. */
static void finish_batch(struct efs_replica_batch *b, struct outgoing *o)
{
	if (o->finished)
		return;
	o->finished = true;
	read_reply(b, o);
	pthread_mutex_lock(&b->lock);
	for (size_t i = 0; i < o->count; i++)
		item_done(o->items[i]);
	if (o->call.error)
		fail_queued(b, o);
	o->lane->in_flight = false;
	wake_leader(o->lane);
	pthread_mutex_unlock(&b->lock);
}

static void batch_call_done(struct efs_http_call *call, void *ctx)
{
	(void)call;
	struct outgoing *o = ctx;
	finish_batch(o->b, o);
}

/* Sends the batches (in parallel: one per worker); each is finished as
 * its own call ends. Nothing held. */
static void send_batches(struct efs_replica_batch *b, struct outgoing **out, size_t n)
{
	struct efs_http_call *callp[EFS_MAX_REPLICAS];
	size_t sending = 0;

	for (size_t k = 0; k < n; k++) {
		struct outgoing *o = out[k];
		size_t payload = 0;
		int r;
		for (size_t i = 0; i < o->count; i++)
			payload += o->items[i]->len;
		efs_buf_init(&o->body, EFS_CHUNK_BATCH_MAX_BODY);
		r = efs_buf_reserve(&o->body, efs_chunk_batch_size(o->count, payload));
		if (r == 0)
			r = efs_chunk_batch_begin(&o->body, o->count);
		for (size_t i = 0; r == 0 && i < o->count; i++) {
			struct item *it = o->items[i];
			r = efs_chunk_batch_add(&o->body, it->chunk_id, it->flags, it->crc,
						it->data, it->len);
		}
		efs_http_call_init(&o->call, "POST", o->url);
		if (r < 0) {
			o->call.error = r;
			snprintf(o->call.errmsg, sizeof(o->call.errmsg),
				 "cannot build the batch: %s", strerror(-r));
			continue;
		}
		o->call.bearer = b->cfg.cluster_secret;
		o->call.content_type = "application/octet-stream";
		o->call.headers[0] = b->cfg.cluster_header[0] ? b->cfg.cluster_header : NULL;
		o->call.body = o->body.data;
		o->call.body_len = o->body.len;
		o->call.direct_body = true;
		o->call.timeout_ms = 10000 + (long)(o->body.len / (10 * 1024));
		o->call.connect_timeout_ms = CONNECT_TIMEOUT_MS;
		o->call.stall_timeout_s = STALL_TIMEOUT_S;
		o->call.resp_cap = REPLY_CAP;
		o->call.on_done = batch_call_done;
		o->call.on_done_ctx = o;
		callp[sending++] = &o->call;
		atomic_fetch_add(&b->batches, 1);
		atomic_fetch_add(&b->items, o->count);
	}
	if (sending)
		efs_http_call_run_parallel(b->cfg.http, callp, sending);
	/* Those not sent, or failed before they started (no on_done). */
	for (size_t k = 0; k < n; k++)
		finish_batch(b, out[k]);
}

void efs_replica_batch_write(struct efs_replica_batch *b, const char *chunk_id, const void *data,
			     size_t len, bool gzip, uint32_t crc, const struct efs_target *targets,
			     size_t count, struct efs_replica_batch_result *results)
{
	struct item mine[EFS_MAX_REPLICAS];
	count = EFS_MIN(count, EFS_MAX_REPLICAS);
	struct waiter me = {.pending = count};
	memset(mine, 0, sizeof(mine));
	pthread_cond_init(&me.cond, NULL);
	pthread_mutex_lock(&b->lock);
	for (size_t i = 0; i < count; i++) {
		struct item *it = &mine[i];
		it->res = &results[i];
		it->owner = &me;
		it->lane = len <= EFS_CHUNK_BATCH_MAX_ITEM ? lane_get(b, targets[i].worker_id, true)
							   : NULL;
		if (!it->lane || it->lane->unsupported) {
			mark_unsupported(it);
			continue;
		}
		it->chunk_id = chunk_id;
		it->data = data;
		it->len = len;
		it->flags = EFS_CHUNK_BATCH_CRC | (gzip ? EFS_CHUNK_BATCH_GZIP : 0);
		it->crc = crc;
		it->url = targets[i].url;
		if (it->lane->tail)
			it->lane->tail->next = it;
		else
			it->lane->head = it;
		it->lane->tail = it;
		b->queued++;
	}
	for (;;) {
		struct outgoing *out[EFS_MAX_REPLICAS];
		size_t n = 0;
		for (size_t i = 0; i < count; i++) {
			struct item *it = &mine[i];
			if (it->done || it->taken || it->lane->in_flight)
				continue;
			struct lane *l = it->lane;
			if (l->unsupported) {
				/* Found out while these waited: all of them back. */
				for (struct item *q = l->head; q; q = q->next) {
					mark_unsupported(q);
					b->queued--;
				}
				l->head = l->tail = NULL;
				continue;
			}
			struct outgoing *o = take_batch(b, l);
			if (!o) {
				/* Out of memory: this one item as a single PUT. */
				mark_unsupported(it);
				b->queued--;
				for (struct item **p = &l->head; *p; p = &(*p)->next)
					if (*p == it) {
						*p = it->next;
						break;
					}
				l->tail = NULL;
				for (struct item *q = l->head; q; q = q->next)
					l->tail = q;
				wake_leader(l); /* the others queued there: one of them sends */
				continue;
			}
			out[n++] = o;
		}
		if (n > 0) {
			pthread_mutex_unlock(&b->lock);
			send_batches(b, out, n);
			for (size_t k = 0; k < n; k++) {
				efs_http_call_release(&out[k]->call);
				efs_buf_release(&out[k]->body);
				free(out[k]);
			}
			pthread_mutex_lock(&b->lock);
			continue;
		}
		if (me.pending == 0)
			break;
		me.waiting = true;
		pthread_cond_wait(&me.cond, &b->lock);
		me.waiting = false;
	}
	pthread_mutex_unlock(&b->lock);
	pthread_cond_destroy(&me.cond);
}

void efs_replica_batch_stats(struct efs_replica_batch *b, struct efs_replica_batch_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!b)
		return;
	out->batches = atomic_load(&b->batches);
	out->items = atomic_load(&b->items);
	out->unsupported = atomic_load(&b->unsupported);
	pthread_mutex_lock(&b->lock);
	out->queued = b->queued;
	pthread_mutex_unlock(&b->lock);
}
