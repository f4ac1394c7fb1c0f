/* SPDX-License-Identifier: MIT */
/* sql_keys.c - the access keys of the S3 API (schema v7).
 *
 * A key row holds only the sealed secret (keyseal.h). The per-owner cap is
 * kept by a counter row per owner, upserted first in the creating
 * transaction: that write locks the owner's row, so two concurrent
 * creates of one user are serialised and the cap holds exactly, on
 * PostgreSQL as on SQLite.
 */
#include "echofs/util.h"
#include "meta/sql_store.h"

#include <stdlib.h>
#include <string.h>

struct key_create {
	const struct efs_access_key *k;
	unsigned max_per_owner;
};

static int key_create_tx(struct sql_conn *c, void *ctx)
{
	struct key_create *p = ctx;
	int64_t held = 0;
	int r = SQL_Q(c,
		      "INSERT INTO access_key_counts (owner, key_count) VALUES ($1, 1)"
		      " ON CONFLICT (owner) DO UPDATE SET"
		      "  key_count = access_key_counts.key_count + 1",
		      NULL, NULL, NULL, SQL_TEXT(p->k->owner));
	if (r < 0)
		return r;
	r = SQL_Q(c, "SELECT key_count FROM access_key_counts WHERE owner = $1", sql_row_int, &held,
		  NULL, SQL_TEXT(p->k->owner));
	if (r < 0)
		return r;
	if (held > (int64_t)p->max_per_owner)
		return -EDQUOT; /* undoes the count too */
	return SQL_Q(c,
		     "INSERT INTO access_keys (access_key_id, owner, sealed_secret, created_at)"
		     " VALUES ($1, $2, $3, $4)",
		     NULL, NULL, NULL, SQL_TEXT(p->k->access_key_id), SQL_TEXT(p->k->owner),
		     SQL_TEXT(p->k->sealed_secret), SQL_INT(p->k->created_at_ms));
}

int sql_key_create(void *impl, const struct efs_access_key *k, unsigned max_per_owner)
{
	struct key_create p = {k, max_per_owner};
	return sql_run_tx(impl, key_create_tx, &p);
}

#define KEY_COLUMNS "access_key_id, owner, sealed_secret, created_at"

static void key_from_row(const struct efs_sql_row *row, struct efs_access_key *k)
{
	efs_strlcpy(k->access_key_id, efs_sql_text(row, 0), sizeof(k->access_key_id));
	efs_strlcpy(k->owner, efs_sql_text(row, 1), sizeof(k->owner));
	efs_strlcpy(k->sealed_secret, efs_sql_text(row, 2), sizeof(k->sealed_secret));
	k->created_at_ms = efs_sql_int(row, 3);
}

struct key_one {
	struct efs_access_key *out;
	bool found;
};

static int row_key_one(void *ctx, const struct efs_sql_row *row)
{
	struct key_one *one = ctx;
	key_from_row(row, one->out);
	one->found = true;
	return 0;
}

int sql_key_get(void *impl, const char *access_key_id, struct efs_access_key *out)
{
	struct efs_access_key tmp;
	struct key_one one = {&tmp, false};
	int r = SQL_ONE(impl, "SELECT " KEY_COLUMNS " FROM access_keys WHERE access_key_id = $1",
			row_key_one, &one, NULL, SQL_TEXT(access_key_id));
	if (r < 0)
		return r;
	if (!one.found)
		return -ENOENT;
	*out = tmp;
	return 0;
}

static int row_key_many(void *ctx, const struct efs_sql_row *row)
{
	struct efs_access_key *k = sql_rows_push(ctx);
	if (!k)
		return sql_rows_full(ctx);
	key_from_row(row, k);
	return 0;
}

int sql_key_list(void *impl, const char *owner, struct efs_access_key **out, size_t *count)
{
	struct sql_rows rows = SQL_ROWS_GROW(struct efs_access_key);
	void *items;
	int r = SQL_ONE(impl,
			"SELECT " KEY_COLUMNS " FROM access_keys WHERE owner = $1"
			" ORDER BY created_at, access_key_id",
			row_key_many, &rows, NULL, SQL_TEXT(owner));
	if ((r = sql_rows_finish(&rows, r, &items, count)) == 0)
		*out = items;
	return r;
}

struct key_delete {
	const char *access_key_id;
	const char *owner;
};

static int key_delete_tx(struct sql_conn *c, void *ctx)
{
	struct key_delete *p = ctx;
	int64_t changed = 0;
	int r = SQL_Q(c, "DELETE FROM access_keys WHERE access_key_id = $1 AND owner = $2", NULL,
		      NULL, &changed, SQL_TEXT(p->access_key_id), SQL_TEXT(p->owner));
	if (r < 0)
		return r;
	if (!changed)
		return -ENOENT;
	return SQL_Q(c, "UPDATE access_key_counts SET key_count = key_count - 1 WHERE owner = $1",
		     NULL, NULL, NULL, SQL_TEXT(p->owner));
}

int sql_key_delete(void *impl, const char *access_key_id, const char *owner)
{
	struct key_delete p = {access_key_id, owner};
	return sql_run_tx(impl, key_delete_tx, &p);
}
