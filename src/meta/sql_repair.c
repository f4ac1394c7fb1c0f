/* SPDX-License-Identifier: MIT */
/* sql_repair.c - what repair needs to know, and the reconciliation of a
 * worker's report of the chunks it holds (after HDFS block reports). */
#include "echofs/util.h"
#include "meta/sql_store.h"

#include <string.h>

/* Clock skew tolerated between two masters: the end of a report compares
 * replica creation times (the recording master's clock) with the report's
 * start as read by the master that answered its first request. Worker
 * clocks take no part in it. */
#define SKEW_MARGIN_MS 5000

/* Referenced chunks with the number of good replicas on workers heard
 * from after $1. */
#define HOLDING_SQL                                                                               \
	"SELECT c.chunk_id AS chunk_id, (SELECT COUNT(*) FROM replicas r"                        \
	"  JOIN workers w ON w.worker_id = r.worker_id"                                          \
	"  WHERE r.chunk_id = c.chunk_id AND r.state = 0 AND w.last_heartbeat > $1) AS holding" \
	" FROM chunks c WHERE c.refcount > 0"

static int row_need(void *ctx, const struct efs_sql_row *row)
{
	struct efs_repair_need *need = sql_rows_push(ctx);
	if (!need)
		return sql_rows_full(ctx);
	efs_strlcpy(need->chunk_id, efs_sql_text(row, 0), sizeof(need->chunk_id));
	need->holding = (unsigned)efs_sql_int(row, 1);
	return 0;
}

int sql_repair_list(void *impl, unsigned replication, int64_t holding_after_ms, size_t max,
		    struct efs_repair_need *out, size_t *count)
{
	struct sql_rows rows = SQL_ROWS_FIXED(out, max);
	int r = SQL_ONE(impl,
			"SELECT chunk_id, holding FROM (" HOLDING_SQL ") t"
			" WHERE holding < $2 AND holding > 0 ORDER BY holding, chunk_id LIMIT $3",
			row_need, &rows, NULL, SQL_INT(holding_after_ms), SQL_INT(replication),
			SQL_INT(max));
	return sql_rows_finish(&rows, r, NULL, count);
}

int sql_under_replicated(void *impl, unsigned replication, int64_t live_after_ms,
			 uint64_t *count)
{
	int64_t n = 0;
	int r = SQL_ONE(impl, "SELECT COUNT(*) FROM (" HOLDING_SQL ") t WHERE holding < $2",
			sql_row_int, &n, NULL, SQL_INT(live_after_ms), SQL_INT(replication));
	if (r == 0)
		*count = (uint64_t)n;
	return r;
}

/* Runs a query whose single integer answer goes to *out (-1: no row). */
static int q_int(struct sql_conn *c, const char *sql, const struct efs_sql_value *params,
		 size_t n, int64_t *out)
{
	*out = -1;
	return sql_q(c, sql, params, n, sql_row_int, out, NULL);
}

#define Q_INT(c, sql, out, ...) q_int((c), (sql), SQL_PARAMS(__VA_ARGS__), SQL_NPARAMS(__VA_ARGS__), (out))

static int good_live_count(struct sql_conn *c, const char *chunk_id, int64_t live_after,
			   int64_t *out)
{
	return Q_INT(c,
		     "SELECT COUNT(*) FROM replicas r JOIN workers w ON w.worker_id = r.worker_id"
		     " WHERE r.chunk_id = $1 AND r.state = 0 AND w.last_heartbeat > $2",
		     out, SQL_TEXT(chunk_id), SQL_INT(live_after));
}

/* Decides one reported chunk. */
static int judge(struct sql_conn *c, const struct efs_report_context *ctx,
		 struct efs_report_entry *e)
{
	int64_t refcount, state, good;
	int r;

	e->verdict = EFS_REPORT_KEEP;
	if ((r = Q_INT(c, "SELECT refcount FROM chunks WHERE chunk_id = $1", &refcount,
		       SQL_TEXT(e->chunk_id))) < 0)
		return r;
	if (refcount < 0) {
		/* Unknown to the master: an orphan once it is old enough not to
		 * belong to an upload still under way. */
		if (ctx->worker_now_ms - e->mtime_ms > ctx->orphan_grace_ms)
			e->verdict = EFS_REPORT_DELETE;
		return 0;
	}
	/* Lock the chunk's row: concurrent reports (several masters) judge
	 * one chunk at a time, so two surplus copies are not both dropped. */
	if ((r = SQL_Q(c, "UPDATE chunks SET refcount = refcount WHERE chunk_id = $1", NULL, NULL,
		       NULL, SQL_TEXT(e->chunk_id))) < 0)
		return r;
	if ((r = Q_INT(c, "SELECT state FROM replicas WHERE chunk_id = $1 AND worker_id = $2",
		       &state, SQL_TEXT(e->chunk_id), SQL_TEXT(ctx->worker_id))) < 0)
		return r;
	if (state >= 0) {
		r = SQL_Q(c, "UPDATE replicas SET seen_at = $3 WHERE chunk_id = $1 AND worker_id = $2",
			  NULL, NULL, NULL, SQL_TEXT(e->chunk_id), SQL_TEXT(ctx->worker_id),
			  SQL_INT(ctx->started_ms));
		if (r < 0 || state != 0 || refcount == 0)
			return r; /* bad replicas: repair decides; garbage: the collector */
		if ((r = good_live_count(c, e->chunk_id, ctx->live_after_ms, &good)) < 0)
			return r;
		if (good > (int64_t)ctx->replication) {
			e->verdict = EFS_REPORT_DELETE; /* surplus, e.g. repaired while away */
			return SQL_Q(c, "DELETE FROM replicas WHERE chunk_id = $1 AND worker_id = $2",
				     NULL, NULL, NULL, SQL_TEXT(e->chunk_id),
				     SQL_TEXT(ctx->worker_id));
		}
		return 0;
	}
	/* A copy no replica row names may be an upload's, written and not yet
	 * recorded, through this master or any other: only one older than the
	 * orphan grace is dropped. Both times are the worker's clock. */
	bool old = ctx->worker_now_ms - e->mtime_ms > ctx->orphan_grace_ms;
	if (refcount == 0) {
		if (old)
			e->verdict = EFS_REPORT_DELETE; /* unreferenced, not recorded here */
		return 0;
	}
	if ((r = good_live_count(c, e->chunk_id, ctx->live_after_ms, &good)) < 0)
		return r;
	if (good >= (int64_t)ctx->replication) {
		/* Fully replicated elsewhere: surplus, e.g. a write the master
		 * gave up on that the worker finished later. But a first upload
		 * of the same bytes through another master may be writing it
		 * right now (it found no row to deduplicate against): a young
		 * copy is kept, as any unnamed one. */
		if (old)
			e->verdict = EFS_REPORT_DELETE;
		return 0;
	}
	e->verdict = EFS_REPORT_ADOPT;
	return SQL_Q(c,
		     "INSERT INTO replicas (chunk_id, worker_id, state, created_at, seen_at)"
		     " VALUES ($1, $2, 0, $3, $4)",
		     NULL, NULL, NULL, SQL_TEXT(e->chunk_id), SQL_TEXT(ctx->worker_id),
		     SQL_INT(ctx->now_ms), SQL_INT(ctx->started_ms));
}

struct batch {
	const struct efs_report_context *ctx;
	struct efs_report_entry *entries;
	size_t count;
};

static int report_batch_tx(struct sql_conn *c, void *arg)
{
	struct batch *b = arg;
	for (size_t i = 0; i < b->count; i++) {
		int r = judge(c, b->ctx, &b->entries[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

int sql_report_batch(void *impl, const struct efs_report_context *ctx,
		     struct efs_report_entry *entries, size_t count)
{
	struct batch b = {ctx, entries, count};
	return sql_run_tx(impl, report_batch_tx, &b);
}

int sql_report_finish(void *impl, const struct efs_report_context *ctx)
{
	int64_t changed = 0;
	/* A replica recorded after the master's reading of the report's start
	 * may have been written after the worker's snapshot: not judged. With
	 * no such reading (a worker that does not send it), nothing is: a
	 * worker's clock ahead of the master's would otherwise get fresh
	 * replicas marked. seen_at and started_ms are both the worker's. */
	if (ctx->master_started_ms <= SKEW_MARGIN_MS)
		return 0;
	int r = SQL_WRITE(impl,
			"UPDATE replicas SET state = 1 WHERE worker_id = $1 AND state = 0"
			" AND created_at < $2 AND (seen_at IS NULL OR seen_at < $3)",
			NULL, NULL, &changed, SQL_TEXT(ctx->worker_id),
			SQL_INT(ctx->master_started_ms - SKEW_MARGIN_MS), SQL_INT(ctx->started_ms));
	return r < 0 ? r : (int)changed;
}
