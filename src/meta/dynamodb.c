/* SPDX-License-Identifier: MIT */
/* dynamodb.c - the DynamoDB metadata backend: opening (tables checked,
 * cluster id), the lease for background duties, totals, the calls of the
 * item helpers the other dynamodb_*.c files share (the worker chunk mode
 * is dynamodb_workers.c).
 *
 * Every call is one or a few DynamoDB requests; nothing is cached but the
 * lease's expiry and the cluster id (fixed for ever). docs/AWS.md has the
 * item layout, the write order and the cost of each call.
 */
#include "meta/dynamodb.h"

#include "echofs/log.h"
#include "echofs/util.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- item helpers --------------------------------------------------------- */

/* Unreachable or throttled: one line per DYN_QUIET_MS, not one per call of
 * every request during an outage (the master says 503 for each). */
#define DYN_QUIET_MS 10000
static _Atomic int64_t quiet_until_ms;
static _Atomic uint64_t quieted;

int dyn_fail(const char *what, int r, const struct ddb_result *res)
{
	int out = ddb_public_errno(r);
	if (r == -EAGAIN || r == -ENXIO) {
		int64_t now = efs_mono_ms(), until = atomic_load(&quiet_until_ms);
		if (now < until || !atomic_compare_exchange_strong(&quiet_until_ms, &until,
								    now + DYN_QUIET_MS)) {
			atomic_fetch_add(&quieted, 1);
			return out;
		}
		uint64_t skipped = atomic_exchange(&quieted, 0);
		if (skipped)
			efs_warn("dynamodb: %llu more failed calls in the last %d s not logged",
				 (unsigned long long)skipped, DYN_QUIET_MS / 1000);
	}
	if (r == -ENXIO)
		efs_error("dynamodb: %s: a table is missing (%s: %s); create the tables with"
			  " ./scripts/start_aws.sh --create or scripts/aws_tables.sh create",
			  what, res ? res->code : "", res ? res->message : "");
	else if (r != -ENOENT)
		efs_warn("dynamodb: %s failed: %s%s%s (%s)", what, res && res->code[0] ? res->code : "",
			 res && res->code[0] ? ": " : "", res ? res->message : "", strerror(-r));
	return out;
}

static void set_expr(json_t *body, const char *key, const char *expr)
{
	if (expr)
		json_object_set_new(body, key, json_string(expr));
}

static void set_obj(json_t *body, const char *key, json_t *value)
{
	if (value && json_object_size(value))
		json_object_set(body, key, value);
}

int dyn_get(struct dyn *d, const char *table, const char *pk, const char *sk, json_t **item)
{
	struct ddb_result res;
	json_t *answer = NULL;
	json_t *body = json_pack("{s:s, s:o, s:b}", "TableName", table, "Key", ddb_key(pk, sk),
				 "ConsistentRead", 1);
	int r = body ? ddb_call(&d->ddb, "GetItem", body, true, &answer, &res) : -ENOMEM;
	json_decref(body);
	if (r < 0)
		return dyn_fail("GetItem", r, &res);
	json_t *found = json_object_get(answer, "Item");
	if (!found) {
		json_decref(answer);
		return -ENOENT;
	}
	*item = json_incref(found);
	json_decref(answer);
	return 0;
}

int dyn_put(struct dyn *d, const char *table, json_t *item, const char *condition,
	    json_t *names, json_t *values, struct ddb_result *res)
{
	json_t *body = json_pack("{s:s, s:O}", "TableName", table, "Item", item);
	if (!body)
		return -ENOMEM;
	set_expr(body, "ConditionExpression", condition);
	set_obj(body, "ExpressionAttributeNames", names);
	set_obj(body, "ExpressionAttributeValues", values);
	/* A conditional put sent twice may fail its condition the second
	 * time: callers that care read back. */
	int r = ddb_call(&d->ddb, "PutItem", body, true, NULL, res);
	json_decref(body);
	return r;
}

int dyn_delete(struct dyn *d, const char *table, const char *pk, const char *sk,
	       const char *condition, json_t *names, json_t *values, struct ddb_result *res)
{
	json_t *body = json_pack("{s:s, s:o}", "TableName", table, "Key", ddb_key(pk, sk));
	if (!body)
		return -ENOMEM;
	set_expr(body, "ConditionExpression", condition);
	set_obj(body, "ExpressionAttributeNames", names);
	set_obj(body, "ExpressionAttributeValues", values);
	int r = ddb_call(&d->ddb, "DeleteItem", body, true, NULL, res);
	json_decref(body);
	return r;
}

int dyn_update(struct dyn *d, const char *table, const char *pk, const char *sk,
	       const char *update, const char *condition, json_t *names, json_t *values,
	       bool retry, struct ddb_result *res)
{
	json_t *body = json_pack("{s:s, s:o, s:s}", "TableName", table, "Key", ddb_key(pk, sk),
				 "UpdateExpression", update);
	if (!body)
		return -ENOMEM;
	set_expr(body, "ConditionExpression", condition);
	set_obj(body, "ExpressionAttributeNames", names);
	set_obj(body, "ExpressionAttributeValues", values);
	int r = ddb_call(&d->ddb, "UpdateItem", body, retry, NULL, res);
	json_decref(body);
	return r;
}

int dyn_tx(struct dyn *d, json_t *items, size_t expected, struct ddb_result *res)
{
	char token[33];
	json_t *body;
	int r;
	/* an element that could not be built (ENOMEM) is missing from the
	 * array: never send a transaction short of one of its items */
	if (res)
		memset(res, 0, sizeof(*res));
	if (!items || json_array_size(items) != expected || efs_random_hex(token, 16) < 0) {
		json_decref(items);
		return -ENOMEM;
	}
	body = json_pack("{s:o, s:s}", "TransactItems", items, "ClientRequestToken", token);
	if (!body)
		return -ENOMEM;
	r = ddb_call(&d->ddb, "TransactWriteItems", body, true, NULL, res);
	json_decref(body);
	return r;
}

static json_t *tx_element(const char *kind, const char *table, const char *field, json_t *what,
			  const char *update, const char *condition, json_t *names, json_t *values)
{
	json_t *op = json_pack("{s:s, s:o}", "TableName", table, field, what);
	if (op) {
		set_expr(op, "UpdateExpression", update);
		set_expr(op, "ConditionExpression", condition);
		set_obj(op, "ExpressionAttributeNames", names);
		set_obj(op, "ExpressionAttributeValues", values);
	}
	json_decref(names); /* stolen, as @what */
	json_decref(values);
	return op ? json_pack("{s:o}", kind, op) : NULL;
}

json_t *dyn_tx_update(const char *table, json_t *key, const char *update, const char *condition,
		      json_t *names, json_t *values)
{
	return tx_element("Update", table, "Key", key, update, condition, names, values);
}

json_t *dyn_tx_put(const char *table, json_t *item, const char *condition, json_t *names,
		   json_t *values)
{
	return tx_element("Put", table, "Item", item, NULL, condition, names, values);
}

json_t *dyn_tx_delete(const char *table, json_t *key, const char *condition, json_t *names,
		      json_t *values)
{
	return tx_element("Delete", table, "Key", key, NULL, condition, names, values);
}

json_t *dyn_tx_check(const char *table, json_t *key, const char *condition, json_t *names,
		     json_t *values)
{
	return tx_element("ConditionCheck", table, "Key", key, NULL, condition, names, values);
}

int dyn_chunk_ensure(struct dyn *d, const struct efs_chunk_info *c, int64_t now_ms)
{
	struct ddb_result res;
	json_t *item = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "pk",
				 ddb_s(c->chunk_id), "sk", ddb_s("META"), "size",
				 ddb_n((int64_t)c->size), "stored_size", ddb_n((int64_t)c->stored_size),
				 "compressed", ddb_n(c->compressed ? 1 : 0), "refcount", ddb_n(0),
				 "created_at", ddb_n(now_ms), "zero_since", ddb_n(now_ms), "gc",
				 ddb_s("0"));
	if (!item)
		return -ENOMEM;
	int r = dyn_put(d, d->chunks, item, "attribute_not_exists(pk)", NULL, NULL, &res);
	json_decref(item);
	if (r == -ECANCELED)
		return 0; /* it exists */
	return r < 0 ? dyn_fail("PutItem (chunk)", r, &res) : 0;
}

json_t *dyn_chunk_ref(struct dyn *d, const char *chunk_id, int64_t delta)
{
	return dyn_tx_update(d->chunks, ddb_key(chunk_id, "META"),
			     delta > 0 ? "ADD refcount :d REMOVE zero_since, gc" : "ADD refcount :d",
			     "attribute_exists(pk)", NULL, json_pack("{s:o}", ":d", ddb_n(delta)));
}

json_t *dyn_chunk_ref_new(struct dyn *d, const struct efs_chunk_info *c, int64_t now_ms)
{
	/* Created with its first reference, or counted up: never an item at
	 * refcount 0 between two requests, which the collector could take
	 * while the upload's copies wait to be recorded (and a worker's
	 * report then judge them orphans). */
	return dyn_tx_update(
	    d->chunks, ddb_key(c->chunk_id, "META"),
	    "SET #s = if_not_exists(#s, :s), stored_size = if_not_exists(stored_size, :st),"
	    " compressed = if_not_exists(compressed, :c), created_at = if_not_exists(created_at,"
	    " :now) ADD refcount :one REMOVE zero_since, gc",
	    NULL, json_pack("{s:s}", "#s", "size"),
	    json_pack("{s:o, s:o, s:o, s:o, s:o}", ":s", ddb_n((int64_t)c->size), ":st",
		      ddb_n((int64_t)c->stored_size), ":c", ddb_n(c->compressed ? 1 : 0), ":now",
		      ddb_n(now_ms), ":one", ddb_n(1)));
}

void dyn_chunks_mark_zero(struct dyn *d, const char (*ids)[65], size_t count, int64_t now_ms)
{
	for (size_t i = 0; i < count; i++) {
		struct ddb_result res;
		json_t *item = NULL;
		int64_t refcount = 1;
		int r = dyn_get(d, d->chunks, ids[i], "META", &item);
		if (r == 0)
			ddb_get_n(item, "refcount", &refcount);
		bool marked = item && json_object_get(item, "zero_since");
		json_decref(item);
		if (r < 0 || refcount > 0 || marked)
			continue;
		json_t *values = json_pack("{s:o, s:o, s:o}", ":now", ddb_n(now_ms), ":gc",
					   ddb_s("0"), ":z", ddb_n(0));
		r = dyn_update(d, d->chunks, ids[i], "META", "SET zero_since = :now, gc = :gc",
			       "refcount <= :z AND attribute_not_exists(zero_since)", NULL, values,
			       true, &res);
		json_decref(values);
		if (r < 0 && r != -ECANCELED)
			dyn_fail("UpdateItem (chunk to the collector)", r, &res);
	}
}

/* ---- open, close, identity ------------------------------------------------ */

static const char *dyn_backend_name(void *impl)
{
	return "dynamodb";
}

static const char *dyn_cluster_id(void *impl)
{
	return ((struct dyn *)impl)->cluster_id;
}

static int dyn_schema_version(void *impl, int *out)
{
	*out = DYN_SCHEMA_VERSION;
	return 0;
}

static int dyn_ping(void *impl)
{
	struct dyn *d = impl;
	json_t *item = NULL;
	int r = dyn_get(d, d->files, "CLUSTER", "META", &item);
	json_decref(item);
	return r == -ENOENT ? 0 : r < 0 ? -EAGAIN : 0;
}

/* The cluster id: drawn by the first master, read by every later one,
 * with the item layout's version the first master wrote beside it (in
 * *@version; 1 when the item has none). The caller refuses a version
 * above DYN_SCHEMA_VERSION. */
static int load_cluster_id(struct dyn *d, int64_t *version)
{
	char fresh[EFS_CLUSTER_ID_LEN + 1];
	struct ddb_result res;
	json_t *item;
	int r = efs_random_hex(fresh, EFS_CLUSTER_ID_LEN / 2);
	if (r < 0)
		return r;
	item = json_pack("{s:o, s:o, s:o, s:o}", "pk", ddb_s("CLUSTER"), "sk", ddb_s("META"),
			 "cluster_id", ddb_s(fresh), "schema_version", ddb_n(DYN_SCHEMA_VERSION));
	r = item ? dyn_put(d, d->files, item, "attribute_not_exists(pk)", NULL, NULL, &res)
		 : -ENOMEM;
	json_decref(item);
	if (r < 0 && r != -ECANCELED)
		return r;
	item = NULL;
	if ((r = dyn_get(d, d->files, "CLUSTER", "META", &item)) < 0)
		return r;
	r = ddb_get_s(item, "cluster_id", d->cluster_id, EFS_CLUSTER_ID_LEN);
	*version = DYN_SCHEMA_VERSION;
	int v = ddb_get_n(item, "schema_version", version);
	json_decref(item);
	if (v < 0 && v != -ENOENT)
		return -EIO;
	return r == 0 && efs_cluster_id_valid(d->cluster_id) ? 0 : -EIO;
}

/* DescribeTable of each table: a missing one is named. */
static int check_tables(struct dyn *d, char *err, size_t errlen)
{
	const char *tables[3] = {d->files, d->chunks, d->sessions};
	const char *vars[3] = {"DYNAMODB_FILES_TABLE", "DYNAMODB_CHUNKS_TABLE",
			       "DYNAMODB_SESSIONS_TABLE"};
	for (int i = 0; i < 3; i++) {
		struct ddb_result res;
		json_t *body = json_pack("{s:s}", "TableName", tables[i]);
		int r = body ? ddb_call(&d->ddb, "DescribeTable", body, true, NULL, &res) : -ENOMEM;
		json_decref(body);
		if (r == -ENXIO) {
			snprintf(err, errlen,
				 "DynamoDB table '%s' (%s) does not exist at %s: create the tables"
				 " with ./scripts/start_aws.sh --create (or scripts/aws_tables.sh"
				 " create)",
				 tables[i], vars[i], d->ddb.url);
			return -EINVAL;
		}
		if (r < 0) {
			snprintf(err, errlen, "DynamoDB at %s: DescribeTable %s: %s%s%s", d->ddb.url,
				 tables[i], res.code, res.code[0] ? ": " : "", res.message);
			return r == -EAGAIN ? -EAGAIN : -EIO;
		}
	}
	return 0;
}

static void dyn_close(void *impl)
{
	struct dyn *d = impl;
	if (!d)
		return;
	if (d->lease_until_ms) {
		/* hand the lease over now rather than at its expiry; the item
		 * stays, for its epoch */
		json_t *values = json_pack("{s:o, s:o}", ":me", ddb_s(d->holder), ":gone", ddb_n(0));
		dyn_update(d, d->files, "LEASE#background", "META", "SET expires_at = :gone",
			   "holder = :me", NULL, values, false, NULL);
		json_decref(values);
	}
	ddb_release(&d->ddb);
	pthread_mutex_destroy(&d->lease_lock);
	free(d);
}

static int copy_table(char *dst, const char *src, const char *var, char *err, size_t errlen)
{
	if (!src || !*src) {
		snprintf(err, errlen, "%s is not set", var);
		return -EINVAL;
	}
	if (strlen(src) > DYN_TABLE_MAX) {
		snprintf(err, errlen, "%s is longer than %d bytes", var, DYN_TABLE_MAX);
		return -EINVAL;
	}
	efs_strlcpy(dst, src, DYN_TABLE_MAX + 1);
	return 0;
}

int efs_dynamodb_store_open(const struct efs_meta_dynamodb_config *cfg, void **out, char *err,
			    size_t errlen)
{
	struct dyn *d = calloc(1, sizeof(*d));
	int r;
	if (!d)
		return -ENOMEM;
	pthread_mutex_init(&d->lease_lock, NULL);
	if ((r = copy_table(d->files, cfg->files_table, "DYNAMODB_FILES_TABLE", err, errlen)) < 0 ||
	    (r = copy_table(d->chunks, cfg->chunks_table, "DYNAMODB_CHUNKS_TABLE", err, errlen)) <
		0 ||
	    (r = copy_table(d->sessions, cfg->sessions_table, "DYNAMODB_SESSIONS_TABLE", err,
			    errlen)) < 0) {
		pthread_mutex_destroy(&d->lease_lock);
		free(d);
		return r;
	}
	if ((r = ddb_init(&d->ddb, err, errlen)) < 0) {
		pthread_mutex_destroy(&d->lease_lock);
		free(d);
		return r;
	}
	if ((r = efs_random_hex(d->holder, 16)) < 0 || (r = check_tables(d, err, errlen)) < 0)
		goto fail;
	int64_t version = 0;
	if ((r = load_cluster_id(d, &version)) < 0) {
		snprintf(err, errlen, "DynamoDB at %s: cannot read or write the cluster id in %s",
			 d->ddb.url, d->files);
		r = r == -EAGAIN ? -EAGAIN : -EIO;
		goto fail;
	}
	if (version > DYN_SCHEMA_VERSION) {
		/* A newer binary's item layout: a configuration error (exit
		 * status 2), docs/OPERATIONS.md#upgrades-and-downgrades. */
		snprintf(err, errlen,
			 "the DynamoDB metadata tables are at schema version %lld, newer than this "
			 "binary's (%d): run the newer echofs-master that wrote them (or a later "
			 "one); DYNAMODB_FILES_TABLE %s",
			 (long long)version, DYN_SCHEMA_VERSION, d->files);
		r = -EINVAL;
		goto fail;
	}
	*out = d;
	return 0;
fail:
	dyn_close(d);
	return r;
}

/* ---- the lease ----------------------------------------------------------- */

/* Takes the lease item (a takeover: free, expired, or ours but dropped
 * here) with its epoch one higher, or renews it (ours and held: the
 * epoch stays), in one conditional UpdateItem. 0 with the item's epoch in
 * *@epoch, -ECANCELED when another master holds it, or -errno. */
static int lease_update(struct dyn *d, bool renew, int64_t now, int64_t *epoch)
{
	struct ddb_result res;
	json_t *out = NULL;
	json_t *values = renew ? json_pack("{s:o, s:o, s:o}", ":me", ddb_s(d->holder), ":until",
					   ddb_n(now + DYN_LEASE_TERM_MS), ":epoch",
					   ddb_n(d->lease_epoch))
			       : json_pack("{s:o, s:o, s:o, s:o}", ":me", ddb_s(d->holder), ":until",
					   ddb_n(now + DYN_LEASE_TERM_MS), ":now", ddb_n(now),
					   ":one", ddb_n(1));
	json_t *body = json_pack(
	    "{s:s, s:o, s:s, s:s, s:s}", "TableName", d->files, "Key",
	    ddb_key("LEASE#background", "META"), "UpdateExpression",
	    renew ? "SET expires_at = :until" : "SET holder = :me, expires_at = :until ADD epoch :one",
	    "ConditionExpression",
	    renew ? "holder = :me AND epoch = :epoch"
		  : "attribute_not_exists(pk) OR expires_at < :now OR holder = :me",
	    "ReturnValues", "ALL_NEW");
	int r = -ENOMEM;
	if (values && body) {
		json_object_set(body, "ExpressionAttributeValues", values);
		/* Not retried after a lost answer: a takeover sent twice
		 * would be refused the second time only if someone else took
		 * it meanwhile, and then it is not ours. */
		r = ddb_call(&d->ddb, "UpdateItem", body, false, &out, &res);
	}
	json_decref(values);
	json_decref(body);
	if (r == 0) {
		int64_t e = 0;
		if (ddb_get_n(json_object_get(out, "Attributes"), "epoch", &e) < 0 || e <= 0)
			r = -EIO;
		else
			*epoch = e;
	} else if (r != -ECANCELED) {
		dyn_fail("UpdateItem (lease)", r, &res);
	}
	json_decref(out);
	return r;
}

static bool dyn_lease(void *impl)
{
	struct dyn *d = impl;
	int64_t now = efs_now_ms();
	pthread_mutex_lock(&d->lease_lock);
	bool was_held = d->lease_until_ms > now;
	if (d->lease_until_ms - now > DYN_LEASE_TERM_MS / 2) {
		pthread_mutex_unlock(&d->lease_lock);
		return true;
	}
	int64_t epoch = d->lease_epoch;
	int r = lease_update(d, was_held, now, &epoch);
	if (r == 0) {
		d->lease_until_ms = now + DYN_LEASE_TERM_MS;
		if (!was_held || epoch != d->lease_epoch)
			efs_info("this master now runs the background duties (collection, repair), "
				 "lease epoch %lld",
				 (long long)epoch);
		d->lease_epoch = epoch;
	} else {
		/* Lost, or unknown: a failed renewal ends the lease here now,
		 * not at its expiry (another master may take it meanwhile). */
		if (was_held)
			efs_info(r == -ECANCELED ? "another master runs the background duties now"
						 : "background duties paused: the metadata store is "
						   "unreachable (lease dropped)");
		d->lease_until_ms = 0;
		d->lease_epoch = 0;
	}
	bool held = d->lease_until_ms > now;
	pthread_mutex_unlock(&d->lease_lock);
	return held;
}

static uint64_t dyn_lease_epoch(void *impl)
{
	struct dyn *d = impl;
	pthread_mutex_lock(&d->lease_lock);
	uint64_t epoch = d->lease_until_ms > efs_now_ms() ? (uint64_t)d->lease_epoch : 0;
	pthread_mutex_unlock(&d->lease_lock);
	return epoch;
}

static void dyn_lease_drop(void *impl)
{
	struct dyn *d = impl;
	pthread_mutex_lock(&d->lease_lock);
	if (d->lease_until_ms)
		efs_warn("background duties stopped: a metadata call failed, lease epoch %lld "
			 "dropped (taken again, with a new epoch, once the store answers)",
			 (long long)d->lease_epoch);
	d->lease_until_ms = 0;
	d->lease_epoch = 0;
	pthread_mutex_unlock(&d->lease_lock);
}

/* ---- totals -------------------------------------------------------------- */

static int sum_file(void *ctx, const json_t *item)
{
	struct efs_meta_stats *st = ctx;
	int64_t size = 0;
	ddb_get_n(item, "size", &size);
	st->file_count++;
	st->logical_bytes += (uint64_t)size;
	return 0;
}

static int sum_chunk(void *ctx, const json_t *item)
{
	struct efs_meta_stats *st = ctx;
	int64_t size = 0, stored = 0;
	ddb_get_n(item, "size", &size);
	ddb_get_n(item, "stored_size", &stored);
	st->chunk_count++;
	st->chunk_bytes += (uint64_t)size;
	st->stored_bytes += (uint64_t)stored;
	return 0;
}

/* Two Scans (files, chunks): reads both tables whole. Callers cache the
 * totals by efs_meta_changes (docs/AWS.md, costs). */
static int dyn_stats(void *impl, struct efs_meta_stats *out)
{
	struct dyn *d = impl;
	struct efs_meta_stats st;
	memset(&st, 0, sizeof(st));
	json_t *files = json_pack(
	    "{s:s, s:s, s:s, s:{s:s, s:s}, s:{s:o, s:o}}", "TableName", d->files,
	    "FilterExpression", "sk = :meta AND begins_with(pk, :file) AND attribute_exists(#o)",
	    "ProjectionExpression", "#s", "ExpressionAttributeNames", "#s", "size", "#o", "owner",
	    "ExpressionAttributeValues", ":meta", ddb_s("META"), ":file", ddb_s("FILE#"));
	json_t *chunks = json_pack("{s:s, s:s, s:s, s:{s:s}, s:{s:o, s:o}}", "TableName", d->chunks,
				   "FilterExpression", "sk = :meta AND refcount > :z",
				   "ProjectionExpression", "#s, stored_size",
				   "ExpressionAttributeNames", "#s", "size",
				   "ExpressionAttributeValues", ":meta", ddb_s("META"), ":z",
				   ddb_n(0));
	int r = files && chunks ? ddb_query_all(&d->ddb, "Scan", files, 0, sum_file, &st) : -ENOMEM;
	if (r == 0)
		r = ddb_query_all(&d->ddb, "Scan", chunks, 0, sum_chunk, &st);
	json_decref(files);
	json_decref(chunks);
	if (r < 0)
		return dyn_fail("Scan (stats)", r, NULL);
	*out = st;
	return 0;
}

const struct efs_meta_ops efs_dynamodb_ops = {
	.backend_name = dyn_backend_name,
	.close = dyn_close,
	.schema_version = dyn_schema_version,
	.cluster_id = dyn_cluster_id,
	.ping = dyn_ping,
	.worker_register = dyn_worker_register,
	.worker_retire_url = dyn_worker_retire_url,
	.worker_heartbeat = dyn_worker_heartbeat,
	.worker_get = dyn_worker_get,
	.worker_list = dyn_worker_list,
	.session_create = dyn_session_create,
	.session_get = dyn_session_get,
	.session_chunks = dyn_session_chunks,
	.session_put_chunk = dyn_session_put_chunk,
	.session_complete = dyn_session_complete,
	.session_done_get = dyn_session_done_get,
	.session_done_purge = dyn_session_done_purge,
	.file_create_single = dyn_file_create_single,
	.session_delete = dyn_session_delete,
	.session_expired = dyn_session_expired,
	.file_get = dyn_file_get,
	.file_chunks = dyn_file_chunks,
	.file_list = dyn_file_list,
	.file_delete = dyn_file_delete,
	.chunk_get = dyn_chunk_get,
	.replica_mark_bad = dyn_replica_mark_bad,
	.replica_mark_good = dyn_replica_mark_good,
	.replica_add = dyn_replica_add,
	.chunk_record_unreferenced = dyn_chunk_record_unreferenced,
	.replica_remove = dyn_replica_remove,
	.replica_remove_if = dyn_replica_remove_if,
	.repair_list = dyn_repair_list,
	.under_replicated = dyn_under_replicated,
	.report_batch = dyn_report_batch,
	.report_finish = dyn_report_finish,
	.lease = dyn_lease,
	.lease_epoch = dyn_lease_epoch,
	.lease_drop = dyn_lease_drop,
	.stats = dyn_stats,
	.garbage_list = dyn_garbage_list,
	.garbage_take = dyn_garbage_take,
	.bucket_create = dyn_bucket_create,
	.bucket_get = dyn_bucket_get,
	.bucket_list = dyn_bucket_list,
	.bucket_delete = dyn_bucket_delete,
	.object_get = dyn_object_get,
	.object_put = dyn_object_put,
	.object_delete = dyn_object_delete,
	.object_copy = dyn_object_copy,
	.object_list = dyn_object_list,
	.object_parts = dyn_object_parts,
	.s3_upload_create = dyn_s3_upload_create,
	.s3_upload_get = dyn_s3_upload_get,
	.s3_part_put = dyn_s3_part_put,
	.s3_part_list = dyn_s3_part_list,
	.s3_upload_complete = dyn_s3_upload_complete,
	.s3_upload_abort = dyn_s3_upload_abort,
	.s3_upload_list = dyn_s3_upload_list,
	.s3_upload_expired = dyn_s3_upload_expired,
	.key_create = dyn_key_create,
	.key_get = dyn_key_get,
	.key_list = dyn_key_list,
	.key_delete = dyn_key_delete,
};
