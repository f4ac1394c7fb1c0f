/* SPDX-License-Identifier: MIT */
/* dynamodb_workers.c - the worker chunk mode on DynamoDB: worker items,
 * replica items, what repair needs to know and the reconciliation of a
 * worker's report (the rules: report_rules.h, shared with SQL).
 *
 * Workers are items of one partition of the files table (pk "WORKERS",
 * sk the worker id): one consistent Query lists them all. Replicas are
 * items of their chunk's partition in the chunks table (sk
 * "REPLICA#<worker_id>"), indexed by worker in by_worker. Costs and the
 * differences from SQL: docs/AWS.md "The worker chunk mode".
 */
#include "meta/dynamodb.h"
#include "meta/report_rules.h"

#include "echofs/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKERS_PK "WORKERS"
#define REPLICA_SK "REPLICA#"

static void replica_sk(const char *worker_id, char out[EFS_ID_MAX + 16])
{
	snprintf(out, EFS_ID_MAX + 16, REPLICA_SK "%s", worker_id);
}

static json_t *state_name(void)
{
	return json_pack("{s:s}", "#st", "state");
}

/* ---- workers --------------------------------------------------------------- */

int dyn_worker_register(void *impl, const struct efs_worker_info *w)
{
	struct dyn *d = impl;
	struct ddb_result res;
	/* "zone" is a DynamoDB reserved word: named through #z */
	json_t *names = json_pack("{s:s, s:s}", "#u", "url", "#z", "zone");
	json_t *values =
	    json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", ":u", ddb_s(w->url), ":c",
		      ddb_n((int64_t)w->capacity_bytes), ":f", ddb_n((int64_t)w->free_bytes), ":n",
		      ddb_n((int64_t)w->chunk_count), ":r", ddb_n(w->registered_at_ms), ":h",
		      ddb_n(w->last_heartbeat_ms));
	/* No zone: no attribute (an item written before zones reads the same). */
	if (values && w->zone[0])
		json_object_set_new(values, ":z", ddb_s(w->zone));
	/* registered_at is kept when the worker exists, as SQL's upsert */
	int r = names && values ? dyn_update(d, d->files, WORKERS_PK, w->worker_id,
					     w->zone[0]
						 ? "SET #u = :u, capacity_bytes = :c, free_bytes = :f,"
						   " chunk_count = :n, last_heartbeat = :h,"
						   " registered_at = if_not_exists(registered_at, :r),"
						   " #z = :z"
						 : "SET #u = :u, capacity_bytes = :c, free_bytes = :f,"
						   " chunk_count = :n, last_heartbeat = :h,"
						   " registered_at = if_not_exists(registered_at, :r)"
						   " REMOVE #z",
					     NULL, names, values, true, &res)
				: -ENOMEM;
	json_decref(names);
	json_decref(values);
	return r < 0 ? dyn_fail("UpdateItem (worker)", r, &res) : 0;
}

int dyn_worker_heartbeat(void *impl, const char *worker_id, uint64_t capacity_bytes,
			 uint64_t free_bytes, uint64_t chunk_count, int64_t now_ms)
{
	struct dyn *d = impl;
	struct ddb_result res;
	json_t *values = json_pack("{s:o, s:o, s:o, s:o}", ":c", ddb_n((int64_t)capacity_bytes),
				   ":f", ddb_n((int64_t)free_bytes), ":n",
				   ddb_n((int64_t)chunk_count), ":h", ddb_n(now_ms));
	int r = values ? dyn_update(d, d->files, WORKERS_PK, worker_id,
				    "SET capacity_bytes = :c, free_bytes = :f, chunk_count = :n,"
				    " last_heartbeat = :h",
				    "attribute_exists(sk)", NULL, values, true, &res)
		       : -ENOMEM;
	json_decref(values);
	if (r == -ECANCELED)
		return -ENOENT;
	return r < 0 ? dyn_fail("UpdateItem (heartbeat)", r, &res) : 0;
}

static int worker_from_item(const json_t *item, struct efs_worker_info *w)
{
	int64_t cap = 0, free_bytes = 0, chunks = 0;
	memset(w, 0, sizeof(*w));
	if (ddb_get_s(item, "sk", w->worker_id, EFS_ID_MAX) < 0 ||
	    ddb_get_s(item, "url", w->url, EFS_URL_MAX) < 0 ||
	    ddb_get_n(item, "capacity_bytes", &cap) < 0 ||
	    ddb_get_n(item, "free_bytes", &free_bytes) < 0 ||
	    ddb_get_n(item, "chunk_count", &chunks) < 0 ||
	    ddb_get_n(item, "registered_at", &w->registered_at_ms) < 0 ||
	    ddb_get_n(item, "last_heartbeat", &w->last_heartbeat_ms) < 0)
		return -EIO;
	/* absent: no zone (memset above) */
	if (ddb_get_s(item, "zone", w->zone, EFS_ZONE_MAX) == -EINVAL)
		return -EIO;
	w->capacity_bytes = (uint64_t)cap;
	w->free_bytes = (uint64_t)free_bytes;
	w->chunk_count = (uint64_t)chunks;
	return 0;
}

int dyn_worker_get(void *impl, const char *worker_id, struct efs_worker_info *out)
{
	struct dyn *d = impl;
	struct efs_worker_info w;
	json_t *item = NULL;
	int r = dyn_get(d, d->files, WORKERS_PK, worker_id, &item);
	if (r < 0)
		return r;
	r = worker_from_item(item, &w);
	json_decref(item);
	if (r == 0)
		*out = w;
	return r;
}

struct worker_rows {
	struct efs_worker_info *items;
	size_t count, alloc;
};

static int push_worker(void *ctx, const json_t *item)
{
	struct worker_rows *rows = ctx;
	if (efs_array_reserve((void **)&rows->items, &rows->alloc, rows->count,
			      sizeof(*rows->items), 16) < 0)
		return -ENOMEM;
	if (worker_from_item(item, &rows->items[rows->count]) < 0)
		return -EIO;
	rows->count++;
	return 0;
}

/* One consistent Query of the WORKERS partition, in sort key (worker id)
 * order: the order SQL's ORDER BY worker_id gives (both compare bytes). */
int dyn_worker_list(void *impl, struct efs_worker_info **out, size_t *count)
{
	struct dyn *d = impl;
	struct worker_rows rows = {0};
	json_t *body = json_pack("{s:s, s:s, s:b, s:{s:o}}", "TableName", d->files,
				 "KeyConditionExpression", "pk = :pk", "ConsistentRead", 1,
				 "ExpressionAttributeValues", ":pk", ddb_s(WORKERS_PK));
	int r = body ? ddb_query_all(&d->ddb, "Query", body, 0, push_worker, &rows) : -ENOMEM;
	json_decref(body);
	if (r < 0) {
		free(rows.items);
		return r == -ENOMEM || r == -EIO ? r : dyn_fail("Query (workers)", r, NULL);
	}
	*out = rows.items;
	*count = rows.count;
	return 0;
}

int dyn_worker_retire_url(void *impl, const char *url, const char *keep_id)
{
	struct dyn *d = impl;
	struct efs_worker_info *workers = NULL;
	size_t count = 0;
	int r = dyn_worker_list(d, &workers, &count), changed = 0;
	if (r < 0)
		return r;
	for (size_t i = 0; i < count; i++) {
		struct ddb_result res;
		if (strcmp(workers[i].url, url) != 0 ||
		    strcmp(workers[i].worker_id, keep_id) == 0 || workers[i].last_heartbeat_ms == 0)
			continue;
		json_t *names = json_pack("{s:s}", "#u", "url");
		json_t *values = json_pack("{s:o, s:o}", ":u", ddb_s(url), ":z", ddb_n(0));
		r = names && values
			? dyn_update(d, d->files, WORKERS_PK, workers[i].worker_id,
				     "SET last_heartbeat = :z", "#u = :u AND last_heartbeat <> :z",
				     names, values, true, &res)
			: -ENOMEM;
		json_decref(names);
		json_decref(values);
		if (r == 0)
			changed++;
		else if (r != -ECANCELED) {
			r = dyn_fail("UpdateItem (retire worker)", r, &res);
			goto out;
		}
	}
	r = changed;
out:
	free(workers);
	return r;
}

static const struct efs_worker_info *find_worker(const struct efs_worker_info *workers,
						 size_t count, const char *worker_id)
{
	size_t lo = 0, hi = count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(workers[mid].worker_id, worker_id);
		if (c == 0)
			return &workers[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* ---- replicas -------------------------------------------------------------- */

json_t *dyn_replica_good(struct dyn *d, const char *chunk_id, const char *worker_id, int64_t now_ms)
{
	char sk[EFS_ID_MAX + 16];
	replica_sk(worker_id, sk);
	/* an upsert: a replica marked bad before is good again (its worker
	 * was just written), as SQL's add_replicas */
	return dyn_tx_update(d->chunks, ddb_key(chunk_id, sk),
			     "SET worker_id = :w, #st = :g, created_at = :now ADD bad_marks :g",
			     NULL, state_name(),
			     json_pack("{s:o, s:o, s:o}", ":w", ddb_s(worker_id), ":g", ddb_n(0),
				       ":now", ddb_n(now_ms)));
}

struct replica_rows {
	struct efs_replica *out;
	unsigned count;
	const struct efs_worker_info *workers;
	size_t worker_count;
};

static int replica_from_item(const json_t *item, struct efs_replica *rep)
{
	int64_t state = 0;
	memset(rep, 0, sizeof(*rep));
	if (ddb_get_s(item, "worker_id", rep->worker_id, EFS_ID_MAX) < 0 ||
	    ddb_get_n(item, "state", &state) < 0 ||
	    ddb_get_n(item, "created_at", &rep->created_at_ms) < 0)
		return -EIO;
	if (ddb_get_n(item, "bad_marks", &rep->bad_marks) < 0)
		rep->bad_marks = 0;
	rep->bad = state != 0;
	return 0;
}

static int push_replica(void *ctx, const json_t *item)
{
	struct replica_rows *rows = ctx;
	if (rows->count == EFS_MAX_REPLICAS)
		return 0; /* as SQL: the first EFS_MAX_REPLICAS by worker id */
	struct efs_replica *rep = &rows->out[rows->count];
	if (replica_from_item(item, rep) < 0)
		return -EIO;
	const struct efs_worker_info *w =
	    find_worker(rows->workers, rows->worker_count, rep->worker_id);
	if (w) {
		efs_strlcpy(rep->url, w->url, sizeof(rep->url));
		rep->last_heartbeat_ms = w->last_heartbeat_ms;
	}
	rows->count++;
	return 0;
}

int dyn_replicas_load(struct dyn *d, const char *chunk_id, const struct efs_worker_info *workers,
		      size_t worker_count, struct efs_replica *out, unsigned *count)
{
	struct replica_rows rows = {out, 0, workers, worker_count};
	json_t *body = json_pack("{s:s, s:s, s:b, s:{s:o, s:o}}", "TableName", d->chunks,
				 "KeyConditionExpression", "pk = :pk AND begins_with(sk, :r)",
				 "ConsistentRead", 1, "ExpressionAttributeValues", ":pk",
				 ddb_s(chunk_id), ":r", ddb_s(REPLICA_SK));
	int r = body ? ddb_query_all(&d->ddb, "Query", body, 0, push_replica, &rows) : -ENOMEM;
	json_decref(body);
	if (r < 0)
		return r == -ENOMEM || r == -EIO ? r : dyn_fail("Query (replicas)", r, NULL);
	*count = rows.count;
	return 0;
}

/* Records good replicas on @worker_ids in one transaction with a check
 * that the chunk item exists: -ENOENT when it does not. */
static int replicas_add_checked(struct dyn *d, const char *chunk_id, const char *const *worker_ids,
				size_t worker_count, int64_t now_ms)
{
	struct ddb_result res;
	if (worker_count == 0)
		return 0;
	if (worker_count > EFS_MAX_REPLICAS)
		return -EINVAL;
	json_t *items = json_array();
	json_array_append_new(items, dyn_tx_check(d->chunks, ddb_key(chunk_id, "META"),
						  "attribute_exists(pk)", NULL, NULL));
	for (size_t i = 0; i < worker_count; i++)
		json_array_append_new(items, dyn_replica_good(d, chunk_id, worker_ids[i], now_ms));
	int r = dyn_tx(d, items, worker_count + 1, &res);
	if (r == -ECANCELED && res.failed[0])
		return -ENOENT;
	return r < 0 ? dyn_fail("TransactWriteItems (replicas)", r, &res) : 0;
}

int dyn_replica_add(void *impl, const char *chunk_id, const char *const *worker_ids,
		    size_t worker_count, int64_t now_ms)
{
	int r = -EAGAIN;
	for (int attempt = 0; attempt < DYN_TX_ATTEMPTS; attempt++) {
		r = replicas_add_checked(impl, chunk_id, worker_ids, worker_count, now_ms);
		if (r != -EAGAIN && r != -EBUSY)
			return r;
		efs_sleep_ms(5 * (attempt + 1));
	}
	return r;
}

int dyn_chunk_record_unreferenced(void *impl, const struct efs_chunk_info *chunk,
				  const char *const *worker_ids, size_t worker_count,
				  int64_t now_ms)
{
	int r = -EAGAIN;
	/* the chunk item unless it exists, then its replicas with a check
	 * that it still does (the collector may take it in between: again) */
	for (int attempt = 0; attempt < DYN_TX_ATTEMPTS; attempt++) {
		if ((r = dyn_chunk_ensure(impl, chunk, now_ms)) < 0)
			return r;
		r = replicas_add_checked(impl, chunk->chunk_id, worker_ids, worker_count, now_ms);
		if (r != -ENOENT && r != -EBUSY)
			return r;
		efs_sleep_ms(5 * (attempt + 1));
	}
	return r == -ENOENT ? -EAGAIN : r;
}

int dyn_replica_remove(void *impl, const char *chunk_id, const char *worker_id)
{
	struct dyn *d = impl;
	struct ddb_result res;
	char sk[EFS_ID_MAX + 16];
	replica_sk(worker_id, sk);
	int r = dyn_delete(d, d->chunks, chunk_id, sk, NULL, NULL, NULL, &res);
	return r < 0 ? dyn_fail("DeleteItem (replica)", r, &res) : 0;
}

int dyn_replica_remove_if(void *impl, const char *chunk_id, const char *worker_id,
			  const char *keep_id)
{
	struct dyn *d = impl;
	struct ddb_result res;
	char sk[EFS_ID_MAX + 16], keep_sk[EFS_ID_MAX + 16];
	replica_sk(worker_id, sk);
	replica_sk(keep_id, keep_sk);
	json_t *items = json_array();
	if (items) {
		json_array_append_new(items, dyn_tx_delete(d->chunks, ddb_key(chunk_id, sk),
							   "attribute_exists(sk)", NULL, NULL));
		json_array_append_new(items, dyn_tx_check(d->chunks, ddb_key(chunk_id, keep_sk),
							  "attribute_exists(sk)", NULL, NULL));
	}
	int r = items ? dyn_tx(d, items, 2, &res) : -ENOMEM;
	if (r == -ECANCELED && (res.failed[0] || res.failed[1]))
		return -ENOENT;
	return r < 0 ? dyn_fail("TransactWriteItems (replica trim)", r, &res) : 0;
}

int dyn_replica_mark_bad(void *impl, const char *chunk_id, const char *worker_id,
			 int64_t recorded_by_ms)
{
	struct dyn *d = impl;
	struct ddb_result res;
	char sk[EFS_ID_MAX + 16];
	replica_sk(worker_id, sk);
	/* every mark counts, on a bad replica too (mark_good compares) */
	json_t *names = state_name(), *values = json_pack("{s:o, s:o}", ":one", ddb_n(1), ":by",
							  ddb_n(recorded_by_ms));
	int r = names && values
		    ? dyn_update(d, d->chunks, chunk_id, sk, "SET #st = :one ADD bad_marks :one",
				 "attribute_exists(sk) AND created_at <= :by", names, values, false,
				 &res)
		    : -ENOMEM;
	json_decref(names);
	json_decref(values);
	if (r == -ECANCELED)
		return 0; /* no such replica, or a later one: nothing marked, as SQL */
	return r < 0 ? dyn_fail("UpdateItem (replica bad)", r, &res) : 1;
}

int dyn_replica_mark_good(void *impl, const char *chunk_id, const struct efs_replica *rep,
			  int64_t now_ms)
{
	struct dyn *d = impl;
	struct ddb_result res;
	char sk[EFS_ID_MAX + 16];
	replica_sk(rep->worker_id, sk);
	/* Only the bad item the reader loaded before its read (R12/T29): the
	 * condition compares state, created_at and bad_marks on the item
	 * itself, so of two masters only one with a current view wins. */
	json_t *names = state_name();
	json_t *values = json_pack("{s:o, s:o, s:o, s:o, s:o}", ":one", ddb_n(1), ":zero", ddb_n(0),
				   ":c", ddb_n(rep->created_at_ms), ":b", ddb_n(rep->bad_marks),
				   ":now", ddb_n(now_ms));
	int r = names && values
		    ? dyn_update(d, d->chunks, chunk_id, sk, "SET #st = :zero, created_at = :now",
				 "#st = :one AND created_at = :c AND (bad_marks = :b OR"
				 " (attribute_not_exists(bad_marks) AND :b = :zero))",
				 names, values, false, &res)
		    : -ENOMEM;
	json_decref(names);
	json_decref(values);
	if (r == -ECANCELED)
		return -ESTALE;
	return r < 0 ? dyn_fail("UpdateItem (replica good)", r, &res) : 0;
}

/* ---- repair ---------------------------------------------------------------- */

/* One item of the chunks table Scan: a referenced chunk, or a replica with
 * whether it is good or bad on a live worker. */
struct scanned {
	char chunk_id[65];
	bool meta;
	bool good_live;
	bool bad_live;
};

struct scan {
	struct scanned *items;
	size_t count, alloc;
	const struct efs_worker_info *workers;
	size_t worker_count;
	int64_t live_after_ms;
};

static int push_scanned(void *ctx, const json_t *item)
{
	struct scan *s = ctx;
	char sk[EFS_ID_MAX + 16], worker_id[EFS_ID_MAX + 1];
	int64_t state = 0;
	if (s->count == s->alloc) {
		size_t alloc = s->alloc ? s->alloc * 2 : 256;
		void *grown = realloc(s->items, alloc * sizeof(*s->items));
		if (!grown)
			return -ENOMEM;
		s->items = grown;
		s->alloc = alloc;
	}
	struct scanned *e = &s->items[s->count];
	memset(e, 0, sizeof(*e));
	if (ddb_get_s(item, "pk", e->chunk_id, 64) < 0 ||
	    ddb_get_s(item, "sk", sk, EFS_ID_MAX + 8) < 0)
		return 0; /* not a chunk's item */
	if (strcmp(sk, "META") == 0) {
		e->meta = true;
	} else {
		if (ddb_get_s(item, "worker_id", worker_id, EFS_ID_MAX) < 0 ||
		    ddb_get_n(item, "state", &state) < 0)
			return 0;
		const struct efs_worker_info *w =
		    find_worker(s->workers, s->worker_count, worker_id);
		if (!w || w->last_heartbeat_ms <= s->live_after_ms)
			return 0; /* counts for nothing */
		e->good_live = state == 0;
		e->bad_live = state != 0;
	}
	s->count++;
	return 0;
}

static int scanned_cmp(const void *a, const void *b)
{
	const struct scanned *x = a, *y = b;
	int c = strcmp(x->chunk_id, y->chunk_id);
	return c ? c : (int)y->meta - (int)x->meta;
}

/* Every referenced chunk with its good and bad replicas on live workers:
 * one Scan of the chunks table (chunk META items with refcount > 0 and
 * every replica item, projected to a few attributes) and one Query of the
 * workers. Cost: reads the whole chunks table, each call (docs/AWS.md). */
static int holding_scan(struct dyn *d, int64_t live_after_ms, struct scan *s)
{
	struct efs_worker_info *workers = NULL;
	size_t worker_count = 0;
	int r = dyn_worker_list(d, &workers, &worker_count);
	if (r < 0)
		return r;
	memset(s, 0, sizeof(*s));
	s->workers = workers;
	s->worker_count = worker_count;
	s->live_after_ms = live_after_ms;
	json_t *body =
	    json_pack("{s:s, s:s, s:s, s:{s:s}, s:{s:o, s:o, s:o}}", "TableName", d->chunks,
		      "FilterExpression", "(sk = :meta AND refcount > :z) OR begins_with(sk, :rep)",
		      "ProjectionExpression", "pk, sk, worker_id, #st", "ExpressionAttributeNames",
		      "#st", "state", "ExpressionAttributeValues", ":meta", ddb_s("META"), ":z",
		      ddb_n(0), ":rep", ddb_s(REPLICA_SK));
	r = body ? ddb_query_all(&d->ddb, "Scan", body, 0, push_scanned, s) : -ENOMEM;
	json_decref(body);
	free(workers);
	s->workers = NULL;
	if (r < 0) {
		free(s->items);
		s->items = NULL;
		return r == -ENOMEM || r == -EIO ? r : dyn_fail("Scan (replicas)", r, NULL);
	}
	if (s->count) /* items is NULL for an empty table */
		qsort(s->items, s->count, sizeof(*s->items), scanned_cmp);
	return 0;
}

/* Walks the sorted scan by chunk: @fn gets each referenced chunk with its
 * good replicas on live workers and whether a bad one is on such. */
static void each_referenced(const struct scan *s,
			    void (*fn)(void *ctx, const char *chunk_id, unsigned holding,
				       bool bad_live),
			    void *ctx)
{
	for (size_t i = 0; i < s->count;) {
		size_t j = i;
		unsigned holding = 0;
		bool bad_live = false;
		while (j < s->count && strcmp(s->items[j].chunk_id, s->items[i].chunk_id) == 0) {
			holding += s->items[j].good_live;
			bad_live |= s->items[j].bad_live;
			j++;
		}
		if (s->items[i].meta) /* sorted first: referenced */
			fn(ctx, s->items[i].chunk_id, holding, bad_live);
		i = j;
	}
}

struct needs {
	unsigned replication;
	struct efs_repair_need *items;
	bool *readable; /* holding > 0 */
	size_t count, alloc;
	uint64_t under;
	int err;
};

static void add_need(void *ctx, const char *chunk_id, unsigned holding, bool bad_live)
{
	struct needs *n = ctx;
	if (holding >= n->replication)
		return;
	n->under++;
	if (!n->alloc || (holding == 0 && !bad_live))
		return; /* counting only, or nothing to copy from */
	if (n->count == n->alloc) {
		size_t alloc = n->alloc * 2;
		void *grown = realloc(n->items, alloc * sizeof(*n->items));
		if (!grown) {
			n->err = -ENOMEM;
			return;
		}
		n->items = grown;
		n->alloc = alloc;
	}
	efs_strlcpy(n->items[n->count].chunk_id, chunk_id, sizeof(n->items[0].chunk_id));
	n->items[n->count++].holding = holding;
}

static int need_cmp(const void *a, const void *b)
{
	const struct efs_repair_need *x = a, *y = b;
	/* those with a good replica first, then the fewest, then by id */
	if ((x->holding == 0) != (y->holding == 0))
		return x->holding == 0 ? 1 : -1;
	if (x->holding != y->holding)
		return x->holding < y->holding ? -1 : 1;
	return strcmp(x->chunk_id, y->chunk_id);
}

int dyn_repair_list(void *impl, unsigned replication, int64_t holding_after_ms, size_t max,
		    struct efs_repair_need *out, size_t *count)
{
	struct scan s;
	struct needs n = {.replication = replication, .alloc = 64};
	int r = holding_scan(impl, holding_after_ms, &s);
	if (r < 0)
		return r;
	if (!(n.items = malloc(n.alloc * sizeof(*n.items)))) {
		free(s.items);
		return -ENOMEM;
	}
	each_referenced(&s, add_need, &n);
	free(s.items);
	if (n.err < 0) {
		free(n.items);
		return n.err;
	}
	if (n.count)
		qsort(n.items, n.count, sizeof(*n.items), need_cmp);
	size_t kept = n.count < max ? n.count : max;
	if (kept)
		memcpy(out, n.items, kept * sizeof(*out));
	free(n.items);
	*count = kept;
	return 0;
}

int dyn_under_replicated(void *impl, unsigned replication, int64_t live_after_ms, uint64_t *count)
{
	struct scan s;
	struct needs n = {.replication = replication};
	int r = holding_scan(impl, live_after_ms, &s);
	if (r < 0)
		return r;
	each_referenced(&s, add_need, &n);
	free(s.items);
	*count = n.under;
	return 0;
}

/* ---- reports --------------------------------------------------------------- */

static int entry_cmp(const void *a, const void *b)
{
	const struct efs_report_entry *const *x = a, *const *y = b;
	return strcmp((*x)->chunk_id, (*y)->chunk_id);
}

/* The zone of @worker_id in @workers, NULL for a worker without one (or
 * not listed): a zone of its own. */
static const char *zone_of(const struct efs_worker_info *workers, size_t worker_count,
			   const char *worker_id)
{
	for (size_t i = 0; i < worker_count; i++)
		if (strcmp(workers[i].worker_id, worker_id) == 0)
			return workers[i].zone[0] ? workers[i].zone : NULL;
	return NULL;
}

/* The distinct zones of @zones (one per good replica on a live worker,
 * NULL: a zone of its own), leaving out entry @skip (n: none). */
static int64_t distinct_zones(const char *const *zones, unsigned n, unsigned skip)
{
	int64_t count = 0;
	for (unsigned i = 0; i < n; i++) {
		bool seen = false;
		if (i == skip)
			continue;
		for (unsigned j = 0; j < i && zones[i] && !seen; j++)
			seen = j != skip && zones[j] && strcmp(zones[i], zones[j]) == 0;
		count += !seen;
	}
	return count;
}

/* Loads what the rules need about one chunk: its item (refcount and the
 * drop version "rv"), this worker's replica and the good ones on live
 * workers, with the zones those cover (the SQL judge's counts, from the
 * worker list read once per batch). */
static int judge_load(struct dyn *d, const struct efs_report_context *ctx,
		      const struct efs_worker_info *workers, size_t worker_count,
		      const char *chunk_id, struct judged_row *row, int64_t *rv)
{
	struct efs_replica reps[EFS_MAX_REPLICAS];
	unsigned n = 0;
	json_t *item = NULL;
	memset(row, 0, sizeof(*row));
	row->state = -1;
	*rv = 0;
	int r = dyn_get(d, d->chunks, chunk_id, "META", &item);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	row->known = true;
	ddb_get_n(item, "refcount", &row->refcount);
	ddb_get_n(item, "rv", rv);
	json_decref(item);
	if ((r = dyn_replicas_load(d, chunk_id, workers, worker_count, reps, &n)) < 0)
		return r;
	const char *zones[EFS_MAX_REPLICAS];
	unsigned mine = EFS_MAX_REPLICAS; /* this worker's entry of zones: none */
	for (unsigned i = 0; i < n; i++) {
		if (strcmp(reps[i].worker_id, ctx->worker_id) == 0)
			row->state = reps[i].bad ? 1 : 0;
		if (!reps[i].bad && reps[i].last_heartbeat_ms > ctx->live_after_ms) {
			if (strcmp(reps[i].worker_id, ctx->worker_id) == 0)
				mine = (unsigned)row->good;
			zones[row->good++] = zone_of(workers, worker_count, reps[i].worker_id);
		}
	}
	row->zones = distinct_zones(zones, (unsigned)row->good, (unsigned)row->good);
	row->zones_without = distinct_zones(zones, (unsigned)row->good, mine);
	return 0;
}

static int write_seen(struct dyn *d, const struct efs_report_context *ctx, const char *chunk_id)
{
	struct ddb_result res;
	char sk[EFS_ID_MAX + 16];
	replica_sk(ctx->worker_id, sk);
	json_t *values = json_pack("{s:o}", ":s", ddb_n(ctx->started_ms));
	int r = values ? dyn_update(d, d->chunks, chunk_id, sk, "SET seen_at = :s",
				    "attribute_exists(sk)", NULL, values, true, &res)
		       : -ENOMEM;
	json_decref(values);
	if (r == -ECANCELED)
		return 0; /* removed meanwhile */
	return r < 0 ? dyn_fail("UpdateItem (replica seen)", r, &res) : 0;
}

/* Drops the worker's surplus replica (R8): the chunk item's drop version
 * "rv" must still be the one judged on, so of two reports judging the
 * same chunk concurrently only one drops, and the replica still in the
 * @state judged on (good, or bad). -ECANCELED when either moved. */
static int write_drop(struct dyn *d, const struct efs_report_context *ctx, const char *chunk_id,
		      int64_t rv, int64_t state)
{
	struct ddb_result res;
	char sk[EFS_ID_MAX + 16];
	replica_sk(ctx->worker_id, sk);
	json_t *items = json_array();
	json_array_append_new(items,
			      dyn_tx_delete(d->chunks, ddb_key(chunk_id, sk), "#st = :st",
					    state_name(), json_pack("{s:o}", ":st", ddb_n(state))));
	json_array_append_new(
	    items, dyn_tx_update(
		       d->chunks, ddb_key(chunk_id, "META"), "ADD rv :one",
		       rv ? "rv = :rv" : "attribute_exists(pk) AND attribute_not_exists(rv)", NULL,
		       rv ? json_pack("{s:o, s:o}", ":one", ddb_n(1), ":rv", ddb_n(rv))
			  : json_pack("{s:o}", ":one", ddb_n(1))));
	int r = dyn_tx(d, items, 2, &res);
	if (r == -ECANCELED || r == -EBUSY)
		return -ECANCELED;
	return r < 0 ? dyn_fail("TransactWriteItems (surplus replica)", r, &res) : 0;
}

static int write_adopt(struct dyn *d, const struct efs_report_context *ctx, const char *chunk_id)
{
	struct ddb_result res;
	char sk[EFS_ID_MAX + 16];
	replica_sk(ctx->worker_id, sk);
	json_t *items = json_array();
	json_array_append_new(items, dyn_tx_check(d->chunks, ddb_key(chunk_id, "META"),
						  "attribute_exists(pk)", NULL, NULL));
	json_array_append_new(
	    items, dyn_tx_update(d->chunks, ddb_key(chunk_id, sk),
				 "SET worker_id = :w, #st = :g, created_at = :now, seen_at = :s"
				 " ADD bad_marks :g",
				 "attribute_not_exists(sk)", state_name(),
				 json_pack("{s:o, s:o, s:o, s:o}", ":w", ddb_s(ctx->worker_id),
					   ":g", ddb_n(0), ":now", ddb_n(ctx->now_ms), ":s",
					   ddb_n(ctx->started_ms))));
	int r = dyn_tx(d, items, 2, &res);
	if (r == -ECANCELED || r == -EBUSY)
		return 0; /* collected, or recorded meanwhile: nothing to adopt */
	return r < 0 ? dyn_fail("TransactWriteItems (adopt replica)", r, &res) : 0;
}

/* Not one transaction per batch as SQL's: each chunk is judged and written
 * on its own (a GetItem, a Query, at most one write), with conditions
 * where two masters could race (docs/AWS.md). A failure stops the batch
 * (the worker sends it again). */
int dyn_report_batch(void *impl, const struct efs_report_context *ctx,
		     struct efs_report_entry *entries, size_t count)
{
	struct dyn *d = impl;
	struct efs_worker_info *workers = NULL;
	struct efs_report_entry **sorted = NULL;
	size_t worker_count = 0;
	int r;
	if (count == 0)
		return 0;
	if ((r = dyn_worker_list(d, &workers, &worker_count)) < 0)
		return r;
	if (!(sorted = malloc(count * sizeof(*sorted)))) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < count; i++)
		sorted[i] = &entries[i];
	qsort(sorted, count, sizeof(*sorted), entry_cmp);
	for (size_t i = 0; i < count; i++) {
		struct efs_report_entry *e = sorted[i];
		struct judged_row row;
		int64_t rv = 0;
		if (i > 0 && strcmp(sorted[i - 1]->chunk_id, e->chunk_id) == 0) {
			e->verdict = EFS_REPORT_KEEP; /* judged once, at its first copy */
			continue;
		}
		if ((r = judge_load(d, ctx, workers, worker_count, e->chunk_id, &row, &rv)) < 0)
			goto out;
		unsigned writes = efs_meta_report_judge(ctx, &row, e);
		if (writes & JUDGE_WRITE_DROP) {
			r = write_drop(d, ctx, e->chunk_id, rv, row.state);
			if (r == -ECANCELED) {
				/* another report dropped a copy meanwhile: keep
				 * this one, judged again at the next report */
				e->verdict = EFS_REPORT_KEEP;
				r = write_seen(d, ctx, e->chunk_id);
			}
		} else if (writes & JUDGE_WRITE_ADOPT) {
			r = write_adopt(d, ctx, e->chunk_id);
		} else if (writes & JUDGE_WRITE_SEEN) {
			r = write_seen(d, ctx, e->chunk_id);
		}
		if (r < 0)
			goto out;
	}
	r = 0;
out:
	free(sorted);
	free(workers);
	return r;
}

struct finish {
	struct dyn *d;
	const struct efs_report_context *ctx;
	int marked;
	int err;
};

static int mark_unseen(void *arg, const json_t *item)
{
	struct finish *f = arg;
	struct ddb_result res;
	char chunk_id[65], sk[EFS_ID_MAX + 16];
	if (ddb_get_s(item, "pk", chunk_id, 64) < 0 ||
	    ddb_get_s(item, "sk", sk, EFS_ID_MAX + 8) < 0)
		return 0;
	/* the index is eventually consistent: the condition re-checks on the
	 * item itself */
	json_t *values = json_pack("{s:o, s:o, s:o, s:o}", ":g", ddb_n(0), ":one", ddb_n(1), ":m",
				   ddb_n(f->ctx->master_started_ms - EFS_META_SKEW_MARGIN_MS), ":s",
				   ddb_n(f->ctx->started_ms));
	json_t *names = state_name();
	int r = values && names ? dyn_update(f->d, f->d->chunks, chunk_id, sk,
					     "SET #st = :one ADD bad_marks :one",
					     "#st = :g AND created_at < :m AND"
					     " (attribute_not_exists(seen_at) OR seen_at < :s)",
					     names, values, false, &res)
				: -ENOMEM;
	json_decref(values);
	json_decref(names);
	if (r == 0)
		f->marked++;
	else if (r != -ECANCELED)
		return f->err = dyn_fail("UpdateItem (replica not reported)", r, &res);
	return 0;
}

int dyn_report_finish(void *impl, const struct efs_report_context *ctx)
{
	struct dyn *d = impl;
	struct finish f = {d, ctx, 0, 0};
	/* as SQL: with no master reading of the report's start, nothing */
	if (ctx->master_started_ms <= EFS_META_SKEW_MARGIN_MS)
		return 0;
	json_t *body = json_pack(
	    "{s:s, s:s, s:s, s:s, s:s, s:{s:s}, s:{s:o, s:o, s:o, s:o}}", "TableName", d->chunks,
	    "IndexName", "by_worker", "KeyConditionExpression", "worker_id = :w",
	    "FilterExpression",
	    "#st = :g AND created_at < :m AND (attribute_not_exists(seen_at) OR seen_at < :s)",
	    "ProjectionExpression", "pk, sk", "ExpressionAttributeNames", "#st", "state",
	    "ExpressionAttributeValues", ":w", ddb_s(ctx->worker_id), ":g", ddb_n(0), ":m",
	    ddb_n(ctx->master_started_ms - EFS_META_SKEW_MARGIN_MS), ":s", ddb_n(ctx->started_ms));
	int r = body ? ddb_query_all(&d->ddb, "Query", body, 0, mark_unseen, &f) : -ENOMEM;
	json_decref(body);
	if (f.err < 0)
		return f.err;
	if (r < 0)
		return r == -ENOMEM ? r : dyn_fail("Query (by_worker)", r, NULL);
	return f.marked;
}
