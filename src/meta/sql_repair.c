/* SPDX-License-Identifier: MIT */
/* sql_repair.c - what repair needs to know, and the reconciliation of a
 * worker's report of the chunks it holds (after HDFS block reports). */
#include "echofs/util.h"
#include "meta/report_rules.h"
#include "meta/sql_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Referenced chunks with the number of good replicas (for an EC chunk:
 * of shard rows) on workers heard from after $1, and their stripe shape
 * (0, 0: replicated); @where narrows the chunks. */
#define HOLDING_SQL(where)                                                                        \
	"SELECT c.chunk_id AS chunk_id, c.ec_data AS ec_data, c.ec_parity AS ec_parity,"        \
	" (SELECT COUNT(*) FROM replicas r"                                                      \
	"  JOIN workers w ON w.worker_id = r.worker_id"                                          \
	"  WHERE r.chunk_id = c.chunk_id AND r.state = 0 AND w.last_heartbeat > $1) AS holding" \
	" FROM chunks c WHERE c.refcount > 0" where

/* What a chunk needs, in SQL over HOLDING_SQL's columns: its full count
 * (REPLICATION_FACTOR, $2, or K + M shards) and the fewest it can be read
 * from (1, or K). */
#define WANT_SQL "CASE WHEN ec_data > 0 THEN ec_data + ec_parity ELSE $2 END"
#define LEAST_SQL "CASE WHEN ec_data > 0 THEN ec_data ELSE 1 END"

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
	/* A chunk with no good replica is listed when a bad one is on a worker
	 * heard from: its bytes may be intact (marked bad by a passing
	 * failure, a disk back from the dead), and repair reads it to find
	 * out. Chunks are taken by how many more losses they survive (good
	 * copies above 1, good shards above K: an EC stripe with M shards
	 * missing comes with a chunk down to its last replica); those that
	 * cannot be read at all (no good replica, fewer than K good shards)
	 * come after every other, so they do not hold the others up. */
	int r = SQL_ONE(impl,
			"SELECT chunk_id, holding FROM (" HOLDING_SQL("") ") t"
			" WHERE holding < " WANT_SQL
			" AND (holding > 0 OR EXISTS (SELECT 1 FROM replicas b"
			"  JOIN workers w ON w.worker_id = b.worker_id"
			"  WHERE b.chunk_id = t.chunk_id AND b.state <> 0 AND w.last_heartbeat > $1))"
			" ORDER BY CASE WHEN holding >= " LEAST_SQL " THEN 0 ELSE 1 END,"
			" holding - " LEAST_SQL ", chunk_id LIMIT $3",
			row_need, &rows, NULL, SQL_INT(holding_after_ms), SQL_INT(replication),
			SQL_INT(max));
	return sql_rows_finish(&rows, r, NULL, count);
}

/* The same count, set-based: the good replicas on live workers grouped
 * once (an index-only scan of replicas_good, in chunk order), joined to
 * the referenced chunks; a chunk without any such replica has no group
 * and counts as 0. PostgreSQL runs it as one pass and a hash join
 * (2.4 s at a million chunks against 6-12 s for the correlated form);
 * SQLite has no hash join and runs the correlated form faster (its
 * probe into replicas_good: 4.9 s against 9.3 s; since schema v16 into
 * the WITHOUT ROWID table's primary key, which covers it: 3.4 s), so
 * each gets its own. */
static const char under_replicated_grouped_sql[] =
	"SELECT COUNT(*) FROM chunks c LEFT JOIN"
	" (SELECT r.chunk_id AS chunk_id, COUNT(*) AS holding FROM replicas r"
	"  JOIN workers w ON w.worker_id = r.worker_id"
	"  WHERE r.state = 0 AND w.last_heartbeat > $1 GROUP BY r.chunk_id) h"
	" ON h.chunk_id = c.chunk_id"
	" WHERE c.refcount > 0 AND c.ec_data = 0 AND COALESCE(h.holding, 0) < $2";

int sql_under_replicated(void *impl, unsigned replication, int64_t live_after_ms,
			 uint64_t *count)
{
	const struct sql_store *s = impl;
	int64_t n = 0;
	const char *sql = strcmp(s->driver->name, "postgres") == 0
				  ? under_replicated_grouped_sql
				  : "SELECT COUNT(*) FROM (" HOLDING_SQL(" AND c.ec_data = 0") ") t"
				    " WHERE holding < $2";
	int r = SQL_ONE(impl, sql, sql_row_int, &n, NULL, SQL_INT(live_after_ms),
			SQL_INT(replication));
	if (r == 0)
		*count = (uint64_t)n;
	return r;
}

static int row_ec_stripes(void *ctx, const struct efs_sql_row *row)
{
	uint64_t *counts = ctx;
	counts[0] = efs_sql_null(row, 0) ? 0 : (uint64_t)efs_sql_int(row, 0);
	counts[1] = efs_sql_null(row, 1) ? 0 : (uint64_t)efs_sql_int(row, 1);
	return 0;
}

int sql_ec_stripes(void *impl, int64_t live_after_ms, uint64_t *degraded,
		   uint64_t *unrecoverable)
{
	uint64_t counts[2] = {0, 0};
	int r = SQL_ONE(impl,
			"SELECT SUM(CASE WHEN holding < ec_data + ec_parity THEN 1 ELSE 0 END),"
			" SUM(CASE WHEN holding < ec_data THEN 1 ELSE 0 END)"
			" FROM (" HOLDING_SQL(" AND c.ec_data > 0") ") t",
			row_ec_stripes, counts, NULL, SQL_INT(live_after_ms));
	if (r == 0) {
		*degraded = counts[0];
		*unrecoverable = counts[1];
	}
	return r;
}

/* Whether a surplus good copy on the reporting worker may go without
 * narrowing the chunk's spread over zones: the other good copies on live
 * workers still cover as many distinct zones as all of them do, or at
 * least REPLICATION_FACTOR zones (more zones than copies cannot be kept,
 * and a rule asking for them would keep every copy of a chunk spread over
 * more zones than REPLICATION_FACTOR). A copy kept so is left for the
 * report of a holder in a zone with two copies, whose own copy is spare:
 * the over-represented zone loses its extra copy, the returning zone keeps
 * its own. Without zones each worker is a zone of its own, its copy's
 * removal leaves good - 1 >= REPLICATION_FACTOR zones: always spare, as
 * before zones. */
static bool zone_spare(const struct efs_report_context *ctx, const struct judged_row *row)
{
	int64_t need = EFS_MIN(row->zones, (int64_t)ctx->replication);
	return row->zones_without >= need;
}

/* THE RULES: decides one reported chunk from its loaded row data and sets
 * e->verdict; returns the writes it needs (enum judge_write bits). Pure:
 * no queries. report_slice_tx loads the rows and applies the writes. */
static unsigned judge(const struct efs_report_context *ctx, const struct judged_row *row,
		      struct efs_report_entry *e)
{
	/* Older than the orphan grace (both times the worker's clock): a
	 * younger copy may be a write not yet recorded, through this master or
	 * any other. */
	bool old = ctx->worker_now_ms - e->mtime_ms > ctx->orphan_grace_ms;
	e->verdict = EFS_REPORT_KEEP;
	if (!row->known) {
		/* Unknown to the master: an orphan once it is old enough not to
		 * belong to an upload still under way. */
		if (old)
			e->verdict = EFS_REPORT_DELETE;
		return JUDGE_WRITE_NONE;
	}
	if (row->state >= 0) {
		if (row->refcount == 0)
			return JUDGE_WRITE_SEEN; /* garbage: the collector's */
		if (row->state != 0) {
			/* A bad replica: repair replaces it and then drops its row.
			 * But with REPLICATION_FACTOR good replicas on live workers
			 * besides it, the chunk is never repair's again (a copy
			 * marked bad while repair replaced it, or after): row and
			 * copy would stay for ever. Surplus, once older than the
			 * orphan grace (worker clock): a young copy may be a write
			 * over the bad one that another master is about to record
			 * good (an upload or a repair may write to a bad row's
			 * worker); judged again once old. */
			if (!row->ec && row->good >= (int64_t)ctx->replication) {
				if (!old) {
					e->verdict = EFS_REPORT_YOUNG;
					return JUDGE_WRITE_SEEN;
				}
				e->verdict = EFS_REPORT_DELETE;
				return JUDGE_WRITE_SEEN | JUDGE_WRITE_DROP;
			}
			return JUDGE_WRITE_SEEN; /* repair decides */
		}
		if (!row->ec && row->good > (int64_t)ctx->replication && zone_spare(ctx, row)) {
			e->verdict = EFS_REPORT_DELETE; /* surplus, e.g. repaired while away */
			return JUDGE_WRITE_SEEN | JUDGE_WRITE_DROP;
		}
		return JUDGE_WRITE_SEEN;
	}
	/* A copy no replica row names may be an upload's, written and not yet
	 * recorded, through this master or any other: only an old one is
	 * dropped. */
	if (row->refcount == 0) {
		/* unreferenced, not recorded here */
		e->verdict = old ? EFS_REPORT_DELETE : EFS_REPORT_YOUNG;
		return JUDGE_WRITE_NONE;
	}
	if (row->ec || row->good >= (int64_t)ctx->replication) {
		/* Fully replicated elsewhere: surplus, e.g. a write the master
		 * gave up on that the worker finished later. But a first upload
		 * of the same bytes through another master may be writing it
		 * right now (it found no row to deduplicate against): a young
		 * copy is kept, as any unnamed one, and judged again once old. */
		e->verdict = old ? EFS_REPORT_DELETE : EFS_REPORT_YOUNG;
		return JUDGE_WRITE_NONE;
	}
	e->verdict = EFS_REPORT_ADOPT;
	return JUDGE_WRITE_ADOPT;
}

unsigned efs_meta_report_judge(const struct efs_report_context *ctx, const struct judged_row *row,
			       struct efs_report_entry *e)
{
	return judge(ctx, row, e);
}

/* A batch is judged in slices of REPORT_SLICE chunks: each slice costs at
 * most five statements (lock, load, and one per kind of write), whatever
 * its size, instead of about five per chunk. Every statement names the
 * slice's ids in an IN list of exactly REPORT_SLICE placeholders (a short
 * slice repeats its last id), so each statement's text is the same for
 * every slice and prepared once per connection. */
#define REPORT_SLICE 500
#define SLICE_LEAD_MAX 3 /* parameters before the ids */

/* "<head> IN ($<lead+1>, ..., $<lead+REPORT_SLICE>)" into @sql; a head
 * that names the ids itself has each SLICE_IDS in it replaced by that IN
 * list instead (a statement that filters two tables by the slice). */
#define SLICE_IDS "@IDS"
static void slice_sql(char *sql, size_t size, const char *head, size_t lead)
{
	const char *at = strstr(head, SLICE_IDS);
	size_t len = 0;
	for (;;) {
		size_t part = at ? (size_t)(at - head) : strlen(head);
		len += (size_t)snprintf(sql + len, size - len, "%.*s IN (", (int)part, head);
		for (size_t i = 0; i < REPORT_SLICE && len < size; i++)
			len += (size_t)snprintf(sql + len, size - len, "%s$%zu", i ? ", " : "",
						lead + 1 + i);
		if (len < size)
			len += (size_t)snprintf(sql + len, size - len, ")");
		if (!at || len >= size)
			break;
		head = at + strlen(SLICE_IDS);
		at = strstr(head, SLICE_IDS);
		if (!at) {
			if (len < size)
				snprintf(sql + len, size - len, "%s", head);
			break;
		}
	}
}

#define SLICE_SQL_MAX (1024 + 2 * REPORT_SLICE * 8)

/* A worker's zone for counting distinct zones (workers w): its zone, or
 * for a worker without one (zone ''), a zone of its own named after it;
 * the prefixes keep the two kinds of name apart. */
#define ZONE_KEY_SQL "CASE WHEN w.zone = '' THEN 'w:' || w.worker_id ELSE 'z:' || w.zone END"

struct slice {
	const struct efs_report_context *ctx;
	struct efs_report_entry **sorted; /* the slice's entries by chunk id */
	size_t count;
	bool after_first; /* sorted[-1] is the previous slice's last entry */
	struct judged_row *rows;          /* parallel to sorted */
	unsigned writes[REPORT_SLICE];    /* what judge() asked, parallel to sorted */
	struct efs_sql_value params[SLICE_LEAD_MAX + REPORT_SLICE];
	char sql[SLICE_SQL_MAX];
};

static int entry_cmp(const void *a, const void *b)
{
	const struct efs_report_entry *const *x = a, *const *y = b;
	return strcmp((*x)->chunk_id, (*y)->chunk_id);
}

static int row_load(void *arg, const struct efs_sql_row *row)
{
	struct slice *s = arg;
	struct efs_report_entry key, *keyp = &key;
	efs_strlcpy(key.chunk_id, efs_sql_text(row, 0), sizeof(key.chunk_id));
	struct efs_report_entry **hit =
		bsearch(&keyp, s->sorted, s->count, sizeof(*s->sorted), entry_cmp);
	if (!hit)
		return 0;
	/* bsearch may land on any copy of a chunk listed twice: the first. */
	while (hit > s->sorted && strcmp(hit[-1]->chunk_id, key.chunk_id) == 0)
		hit--;
	struct judged_row *jr = &s->rows[hit - s->sorted];
	jr->known = true;
	jr->refcount = efs_sql_int(row, 1);
	jr->state = efs_sql_null(row, 2) ? -1 : efs_sql_int(row, 2);
	jr->good = efs_sql_int(row, 3);
	jr->ec = efs_sql_int(row, 4) > 0;
	jr->zones = efs_sql_int(row, 5);
	jr->zones_without = efs_sql_int(row, 6);
	return 0;
}

/* Runs "<head> IN (ids...)" with @lead parameters first ($1..$lead), for
 * the slice's entries whose writes include @want (all of them with @want
 * 0). Nothing to do when no entry is wanted. */
static int slice_run(struct sql_conn *c, struct slice *s, unsigned want, const char *head,
		     const struct efs_sql_value *lead_params, size_t lead, efs_sql_row_fn cb)
{
	size_t n = 0;
	for (size_t i = 0; i < s->count; i++)
		if (!want || (s->writes[i] & want))
			s->params[lead + n++] = SQL_TEXT(s->sorted[i]->chunk_id);
	if (n == 0)
		return 0;
	for (size_t i = n; i < REPORT_SLICE; i++)
		s->params[lead + i] = s->params[lead + n - 1];
	memcpy(s->params, lead_params, lead * sizeof(*lead_params));
	slice_sql(s->sql, sizeof(s->sql), head, lead);
	return sql_q(c, s->sql, s->params, lead + REPORT_SLICE, cb, s, NULL);
}

#define SLICE_RUN(c, s, want, head, cb, ...)                                                      \
	slice_run((c), (s), (want), (head), SQL_PARAMS(__VA_ARGS__), SQL_NPARAMS(__VA_ARGS__), (cb))

static bool listed_twice(const struct slice *s, size_t i)
{
	if (i == 0 && !s->after_first)
		return false;
	return strcmp(s->sorted[i]->chunk_id, s->sorted[(ptrdiff_t)i - 1]->chunk_id) == 0;
}

static int report_slice_tx(struct sql_conn *c, struct slice *s)
{
	const struct efs_report_context *ctx = s->ctx;
	int r;

	memset(s->rows, 0, s->count * sizeof(*s->rows));
	/* Lock the slice's chunk rows in one statement (race rule R8):
	 * concurrent reports (several masters) judge a chunk one at a time,
	 * so two surplus copies are not both dropped. */
	if ((r = SLICE_RUN(c, s, 0,
			   "UPDATE chunks SET refcount = refcount WHERE CAST($1 AS TEXT) <> '' AND chunk_id", NULL,
			   SQL_TEXT(ctx->worker_id))) < 0)
		return r;
	/* Then everything judge() needs, for the whole slice: the good
	 * replicas on live workers and the zones they cover, with and without
	 * this worker's, in one pass over the slice's replicas (a grouped
	 * join: three correlated subqueries cost half as much again). */
	if ((r = SLICE_RUN(c, s, 0,
			   "SELECT c.chunk_id, c.refcount, r.state, COALESCE(z.good, 0), c.ec_data,"
			   " COALESCE(z.zones, 0), COALESCE(z.zones_without, 0)"
			   " FROM chunks c LEFT JOIN replicas r ON r.chunk_id = c.chunk_id"
			   " AND r.worker_id = $1"
			   " LEFT JOIN (SELECT g.chunk_id AS chunk_id, COUNT(*) AS good,"
			   "  COUNT(DISTINCT " ZONE_KEY_SQL ") AS zones,"
			   "  COUNT(DISTINCT CASE WHEN g.worker_id <> $1 THEN " ZONE_KEY_SQL " END)"
			   "  AS zones_without"
			   "  FROM replicas g JOIN workers w ON w.worker_id = g.worker_id"
			   "  WHERE g.state = 0 AND w.last_heartbeat > $2 AND g.chunk_id " SLICE_IDS
			   "  GROUP BY g.chunk_id) z ON z.chunk_id = c.chunk_id"
			   " WHERE c.chunk_id " SLICE_IDS,
			   row_load, SQL_TEXT(ctx->worker_id), SQL_INT(ctx->live_after_ms))) < 0)
		return r;
	for (size_t i = 0; i < s->count; i++) {
		s->writes[i] = JUDGE_WRITE_NONE;
		if (listed_twice(s, i))
			s->sorted[i]->verdict = EFS_REPORT_KEEP; /* judged once, at its first copy */
		else
			s->writes[i] = judge(ctx, &s->rows[i], s->sorted[i]);
	}
	if ((r = SLICE_RUN(c, s, JUDGE_WRITE_SEEN,
			   "UPDATE replicas SET seen_at = $2 WHERE worker_id = $1 AND chunk_id", NULL,
			   SQL_TEXT(ctx->worker_id), SQL_INT(ctx->started_ms))) < 0)
		return r;
	if ((r = SLICE_RUN(c, s, JUDGE_WRITE_DROP,
			   "DELETE FROM replicas WHERE worker_id = $1 AND chunk_id", NULL,
			   SQL_TEXT(ctx->worker_id))) < 0)
		return r;
	return SLICE_RUN(c, s, JUDGE_WRITE_ADOPT,
			 "INSERT INTO replicas (chunk_id, worker_id, state, created_at, seen_at)"
			 " SELECT chunk_id, CAST($1 AS TEXT), 0, CAST($2 AS BIGINT), CAST($3 AS BIGINT)"
			 " FROM chunks WHERE chunk_id",
			 NULL, SQL_TEXT(ctx->worker_id), SQL_INT(ctx->now_ms), SQL_INT(ctx->started_ms));
}

struct batch {
	const struct efs_report_context *ctx;
	struct efs_report_entry **sorted; /* all entries, by chunk id */
	size_t count;
	struct judged_row *rows;          /* REPORT_SLICE of them */
};

static int report_slice_run(struct sql_conn *c, void *arg)
{
	return report_slice_tx(c, arg);
}

/* Each slice is a transaction of its own, not the whole batch: a batch of
 * 5000 chunks held the writer for seconds on a loaded SQLite, and every
 * heartbeat write queued behind it, so a worker's report made all workers
 * miss WORKER_DEAD_AFTER_MS, be counted dead, rejoin and report again
 * (issue 19's rejoin-report loop). A slice holds the writer for about a
 * tenth of that. Nothing needs the batch to be atomic: each slice locks,
 * judges and writes only its own chunks' rows, and a batch that fails
 * half-way is as one whose answer is lost (the worker reports again; rows
 * a committed slice dropped or adopted are judged again then). */
static int report_batch_slices(void *impl, struct batch *b)
{
	struct slice *s = malloc(sizeof(*s));
	int r = 0;
	if (!s)
		return -ENOMEM;
	for (size_t first = 0; first < b->count && r == 0; first += REPORT_SLICE) {
		size_t n = EFS_MIN((size_t)REPORT_SLICE, b->count - first);
		s->ctx = b->ctx;
		s->sorted = b->sorted + first;
		s->count = n;
		s->after_first = first > 0;
		s->rows = b->rows;
		r = sql_run_tx(impl, report_slice_run, s);
	}
	free(s);
	return r;
}

int sql_report_batch(void *impl, const struct efs_report_context *ctx,
		     struct efs_report_entry *entries, size_t count)
{
	struct batch b = {.ctx = ctx, .count = count};
	int r;
	if (count == 0)
		return 0;
	b.sorted = malloc(count * sizeof(*b.sorted));
	b.rows = malloc(REPORT_SLICE * sizeof(*b.rows));
	if (!b.sorted || !b.rows) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < count; i++)
		b.sorted[i] = &entries[i];
	/* By chunk id: slices lock their rows in one order everywhere. */
	qsort(b.sorted, count, sizeof(*b.sorted), entry_cmp);
	r = report_batch_slices(impl, &b);
out:
	free(b.sorted);
	free(b.rows);
	return r;
}

int sql_report_finish(void *impl, const struct efs_report_context *ctx)
{
	int64_t changed = 0;
	/* A replica recorded after the master's reading of the report's start
	 * may have been written after the worker's snapshot: not judged. With
	 * no such reading (a worker that does not send it), nothing is: a
	 * worker's clock ahead of the master's would otherwise get fresh
	 * replicas marked. seen_at and started_ms are both the worker's. */
	if (ctx->master_started_ms <= EFS_META_SKEW_MARGIN_MS)
		return 0;
	int r = SQL_WRITE(impl,
			"UPDATE replicas SET state = 1, bad_marks = bad_marks + 1"
			" WHERE worker_id = $1 AND state = 0"
			" AND created_at < $2 AND (seen_at IS NULL OR seen_at < $3)",
			NULL, NULL, &changed, SQL_TEXT(ctx->worker_id),
			SQL_INT(ctx->master_started_ms - EFS_META_SKEW_MARGIN_MS), SQL_INT(ctx->started_ms));
	return r < 0 ? r : (int)changed;
}
