/* SPDX-License-Identifier: MIT */
/* sql_workers.c - the workers table. */
#include "echofs/util.h"
#include "meta/sql_store.h"

#include <stdlib.h>
#include <string.h>

int sql_worker_register(void *impl, const struct efs_worker_info *w)
{
	return SQL_WRITE(impl,
		   "INSERT INTO workers (worker_id, url, capacity_bytes, free_bytes, chunk_count,"
		   "  registered_at, last_heartbeat, zone)"
		   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
		   " ON CONFLICT (worker_id) DO UPDATE SET url = excluded.url,"
		   "  capacity_bytes = excluded.capacity_bytes, free_bytes = excluded.free_bytes,"
		   "  chunk_count = excluded.chunk_count, last_heartbeat = excluded.last_heartbeat,"
		   "  zone = excluded.zone",
		   NULL, NULL, NULL, SQL_TEXT(w->worker_id), SQL_TEXT(w->url),
		   SQL_INT(w->capacity_bytes), SQL_INT(w->free_bytes), SQL_INT(w->chunk_count),
		   SQL_INT(w->registered_at_ms), SQL_INT(w->last_heartbeat_ms), SQL_TEXT(w->zone));
}

int sql_worker_retire_url(void *impl, const char *url, const char *keep_id)
{
	int64_t changed = 0;
	int r = SQL_WRITE(impl,
		    "UPDATE workers SET last_heartbeat = 0"
		    " WHERE url = $1 AND worker_id <> $2 AND last_heartbeat <> 0",
		    NULL, NULL, &changed, SQL_TEXT(url), SQL_TEXT(keep_id));
	return r < 0 ? r : (int)changed;
}

int sql_worker_heartbeat(void *impl, const char *worker_id, uint64_t capacity_bytes,
				  uint64_t free_bytes, uint64_t chunk_count, int64_t now_ms)
{
	int64_t changed = 0;
	int r = SQL_WRITE(impl,
		    "UPDATE workers SET capacity_bytes = $2, free_bytes = $3, chunk_count = $4,"
		    "  last_heartbeat = $5 WHERE worker_id = $1",
		    NULL, NULL, &changed, SQL_TEXT(worker_id), SQL_INT(capacity_bytes),
		    SQL_INT(free_bytes), SQL_INT(chunk_count), SQL_INT(now_ms));
	if (r < 0)
		return r;
	return changed > 0 ? 0 : -ENOENT;
}

struct beats_many {
	const struct efs_worker_beat *beats;
	size_t n;
	int *results;
};

/* Every beat in one transaction: one commit (one fdatasync on SQLite)
 * for the lot. A batch holds beats stamped a while ago: it never moves a
 * newer last_heartbeat back (an HTTP beat since). May run again after a
 * conflict: it writes only results. */
static int beats_many_tx(struct sql_conn *c, void *ctx)
{
	struct beats_many *bm = ctx;
	for (size_t i = 0; i < bm->n; i++) {
		const struct efs_worker_beat *b = &bm->beats[i];
		int64_t changed = 0;
		int r = SQL_Q(c,
			      "UPDATE workers SET capacity_bytes = $2, free_bytes = $3,"
			      "  chunk_count = $4, last_heartbeat = CASE WHEN last_heartbeat < $5"
			      "  THEN $5 ELSE last_heartbeat END WHERE worker_id = $1",
			      NULL, NULL, &changed, SQL_TEXT(b->worker_id),
			      SQL_INT(b->capacity_bytes), SQL_INT(b->free_bytes),
			      SQL_INT(b->chunk_count), SQL_INT(b->at_ms));
		if (r < 0)
			return r;
		bm->results[i] = changed > 0 ? 0 : -ENOENT;
	}
	return 0;
}

int sql_worker_heartbeat_many(void *impl, const struct efs_worker_beat *beats, size_t n,
			      int *results)
{
	struct beats_many bm = {beats, n, results};
	return sql_run_tx(impl, beats_many_tx, &bm);
}

#define WORKER_COLUMNS                                                                            \
	"worker_id, url, capacity_bytes, free_bytes, chunk_count, registered_at, last_heartbeat,"    \
	" zone"

static void worker_from_row(const struct efs_sql_row *row, struct efs_worker_info *w)
{
	efs_strlcpy(w->worker_id, efs_sql_text(row, 0), sizeof(w->worker_id));
	efs_strlcpy(w->url, efs_sql_text(row, 1), sizeof(w->url));
	w->capacity_bytes = (uint64_t)efs_sql_int(row, 2);
	w->free_bytes = (uint64_t)efs_sql_int(row, 3);
	w->chunk_count = (uint64_t)efs_sql_int(row, 4);
	w->registered_at_ms = efs_sql_int(row, 5);
	w->last_heartbeat_ms = efs_sql_int(row, 6);
	efs_strlcpy(w->zone, efs_sql_text(row, 7), sizeof(w->zone));
}

struct worker_one {
	struct efs_worker_info *out;
	bool found;
};

static int row_worker_one(void *ctx, const struct efs_sql_row *row)
{
	struct worker_one *one = ctx;
	worker_from_row(row, one->out);
	one->found = true;
	return 0;
}

int sql_worker_get(void *impl, const char *worker_id, struct efs_worker_info *out)
{
	struct efs_worker_info tmp;
	struct worker_one one = {&tmp, false};
	int r = SQL_ONE(impl, "SELECT " WORKER_COLUMNS " FROM workers WHERE worker_id = $1",
		    row_worker_one, &one, NULL, SQL_TEXT(worker_id));
	if (r < 0)
		return r;
	if (!one.found)
		return -ENOENT;
	*out = tmp;
	return 0;
}

static int row_worker_many(void *ctx, const struct efs_sql_row *row)
{
	struct efs_worker_info *w = sql_rows_push(ctx);
	if (!w)
		return sql_rows_full(ctx);
	worker_from_row(row, w);
	return 0;
}

int sql_worker_list(void *impl, struct efs_worker_info **out, size_t *count)
{
	struct sql_rows rows = SQL_ROWS_GROW(struct efs_worker_info);
	void *items;
	int r = sql_run_one(impl, "SELECT " WORKER_COLUMNS " FROM workers ORDER BY worker_id", NULL,
			0, row_worker_many, &rows, NULL);
	if ((r = sql_rows_finish(&rows, r, &items, count)) == 0)
		*out = items;
	return r;
}

