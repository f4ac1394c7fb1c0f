/* SPDX-License-Identifier: MIT */
/* sql_store.h - what the SQL store's files share (private to src/meta):
 * sql_store.c (pool, transactions and group commit, migrations),
 * sql_workers.c, sql_files.c and sql_repair.c (the queries). */
#ifndef ECHOFS_META_SQL_STORE_H
#define ECHOFS_META_SQL_STORE_H

#include "meta/sql.h"

#include <pthread.h>

#define SQL_POOL_MAX 16
#define SQL_GROUP_MAX 64 /* most transactions sharing one commit */

struct sql_conn;
typedef int (*sql_tx_fn)(struct sql_conn *c, void *ctx);

/* A write transaction waiting for the store's writer (group commit). It
 * lives on its caller's stack until @done. */
struct sql_tx_request {
	sql_tx_fn fn;
	void *ctx;
	int result;   /* valid once done */
	int attempts; /* runs that ended in a conflict or lost the transaction */
	bool retry;   /* set by the group: queue it again */
	bool blameless; /* ...and do not count it: another one lost the group */
	bool done;    /* written under sql_writer.lock */
	/* Its caller waits here: signalled when it is done, or when it heads
	 * the queue with no group running (it leads the next). */
	pthread_cond_t wake;
	struct sql_tx_request *next;
};

/* The one in-process writer of a group_commit store: a queue of write
 * transactions and the connection they run on. The first waiter finding
 * no group running becomes its leader: it takes up to SQL_GROUP_MAX queued
 * transactions, runs each in its own savepoint of one transaction,
 * commits once, and wakes their callers and the new head of the queue
 * (the next leader), each on its own condition: the other waiters sleep
 * on (a broadcast woke them all to queue on the lock and sleep again). */
struct sql_writer {
	pthread_mutex_t lock;
	struct sql_tx_request *head, *tail;
	size_t queued;
	bool running; /* a leader owns @conn */
	void *conn;   /* NULL: not connected (yet, or after a failure) */
	/* Counters since open: groups that committed and the transactions
	 * they held (for tests and the micro benchmark). */
	uint64_t groups_committed, txs_committed;
};

struct sql_store {
	const struct efs_sql_driver *driver;
	char *target;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned size;
	void *conns[SQL_POOL_MAX]; /* NULL: not connected (yet, or after a failure) */
	bool busy[SQL_POOL_MAX];
	bool unreachable; /* the last connect failed: logged once per outage */
	/* The lease for background duties: its own connection. */
	pthread_mutex_t lease_lock;
	void *lease_conn;
	bool lease_held;
	int64_t lease_epoch; /* of the lease held; 0 when not held */
	struct sql_writer writer; /* used when driver->group_commit */
	char cluster_id[EFS_CLUSTER_ID_LEN + 1]; /* read once, at open */
};

/* A connection borrowed from the pool for one operation. */
struct sql_conn {
	struct sql_store *store;
	unsigned slot;
	void *conn;
};

/* One statement on a borrowed connection. */
int sql_q(struct sql_conn *c, const char *sql, const struct efs_sql_value *params, size_t n,
	  efs_sql_row_fn cb, void *ctx, int64_t *changes);

/* Runs @fn in a write transaction and returns its result: 0 only once the
 * transaction that holds @fn's work is committed (durable). @fn returns 0
 * to keep its work or a negative errno to undo all of it; -EBUSY (a
 * conflict) makes the store run it again in a new transaction, up to 5
 * times. @fn may run more than once, so it must not depend on state it
 * changed in an earlier run that did not commit.
 *
 * With driver->group_commit, @fn runs on the store's writer connection
 * inside a savepoint, together with other callers' transactions that were
 * queued at the same time, and shares their COMMIT: its error undoes only
 * its own work, but a failed COMMIT fails every transaction in it (each
 * caller gets that error). Otherwise @fn runs alone on a pooled
 * connection. Must not be called from inside an @fn.
 *
 * -EAGAIN when the store is unreachable or stays busy. */
int sql_run_tx(struct sql_store *s, sql_tx_fn fn, void *ctx);
/* One statement on a pooled connection, outside a transaction: for reads.
 * A statement that writes goes through sql_write_one. */
int sql_run_one(struct sql_store *s, const char *sql, const struct efs_sql_value *params,
		size_t n, efs_sql_row_fn cb, void *ctx, int64_t *changes);
/* One statement that writes, committed on its own (as sql_run_tx; with
 * group_commit it joins the writer's queue rather than competing with it
 * for the database lock). */
int sql_write_one(struct sql_store *s, const char *sql, const struct efs_sql_value *params,
		  size_t n, efs_sql_row_fn cb, void *ctx, int64_t *changes);
/* Row callback storing column 0 as int64 into *(int64_t *)ctx. */
int sql_row_int(void *ctx, const struct efs_sql_row *row);

/* The one collector that row callbacks fill, an item per row: either
 * growable (SQL_ROWS_GROW: items on the heap, doubling, capped at
 * SQL_ROWS_MAX_BYTES) or the caller's fixed array (SQL_ROWS_FIXED: at most
 * @max items; rows past it are dropped, as the query's LIMIT says they
 * cannot come). */
#define SQL_ROWS_MAX_BYTES ((size_t)1 << 30)
struct sql_rows {
	void *items;
	size_t count, alloc, item_size;
	bool fixed;
};
#define SQL_ROWS_GROW(type) ((struct sql_rows){.item_size = sizeof(type)})
#define SQL_ROWS_FIXED(array, max)                                                                \
	((struct sql_rows){.items = (array), .alloc = (max), .item_size = sizeof(*(array)),        \
			   .fixed = true})
/* The next item, zeroed, and counted; NULL when it cannot be had: then
 * return sql_rows_full(@r) from the row callback (0 for a fixed array,
 * which drops the row; -ENOMEM for a growable one, which fails the
 * query). */
void *sql_rows_push(struct sql_rows *r);
int sql_rows_full(const struct sql_rows *r);
/* The last item pushed, or NULL. */
void *sql_rows_last(const struct sql_rows *r);
/* After the query: on success (@result 0) hands a growable collector's
 * items to the caller (*out, to free; *count), and a fixed one's count;
 * on failure frees what was gathered and leaves *out and *count alone.
 * Returns @result. @out may be NULL for a fixed collector. */
int sql_rows_finish(struct sql_rows *r, int result, void **out, size_t *count);

#define SQL_PARAMS(...) (const struct efs_sql_value[]){__VA_ARGS__}
#define SQL_NPARAMS(...) (sizeof(SQL_PARAMS(__VA_ARGS__)) / sizeof(struct efs_sql_value))

/* The FROM and WHERE of an UPDATE of chunks by the references one file's
 * or session's list holds: d.n per chunk named in @table's rows whose
 * @key is $1, grouped once (a chunk listed twice counts 2), read through
 * the table's primary key (schema v15 has no by-chunk index). */
#define SQL_REFS_PER_CHUNK(table, key)                                                             \
	" FROM (SELECT chunk_id, COUNT(*) AS n FROM " table " WHERE " key " = $1"                  \
	" GROUP BY chunk_id) AS d WHERE chunks.chunk_id = d.chunk_id"

/* sql_q / sql_run_one / sql_write_one with the parameters listed inline. */
#define SQL_Q(c, sql, cb, ctx, changes, ...)                                                      \
	sql_q((c), (sql), SQL_PARAMS(__VA_ARGS__), SQL_NPARAMS(__VA_ARGS__), (cb), (ctx), (changes))
#define SQL_ONE(s, sql, cb, ctx, changes, ...)                                                    \
	sql_run_one((s), (sql), SQL_PARAMS(__VA_ARGS__), SQL_NPARAMS(__VA_ARGS__), (cb), (ctx),  \
		    (changes))
#define SQL_WRITE(s, sql, cb, ctx, changes, ...)                                                  \
	sql_write_one((s), (sql), SQL_PARAMS(__VA_ARGS__), SQL_NPARAMS(__VA_ARGS__), (cb), (ctx), \
		      (changes))

/* sql_keys.c */
int sql_key_create(void *impl, const struct efs_access_key *k, unsigned max_per_owner);
int sql_key_get(void *impl, const char *access_key_id, struct efs_access_key *out);
int sql_key_list(void *impl, const char *owner, struct efs_access_key **out, size_t *count);
int sql_key_delete(void *impl, const char *access_key_id, const char *owner);

/* sql_workers.c */
int sql_worker_register(void *impl, const struct efs_worker_info *w);
int sql_worker_retire_url(void *impl, const char *url, const char *keep_id);
int sql_worker_heartbeat(void *impl, const char *worker_id, uint64_t capacity_bytes,
			 uint64_t free_bytes, uint64_t chunk_count, int64_t now_ms);
int sql_worker_heartbeat_many(void *impl, const struct efs_worker_beat *beats, size_t n,
			      int *results);
int sql_worker_get(void *impl, const char *worker_id, struct efs_worker_info *out);
int sql_worker_list(void *impl, struct efs_worker_info **out, size_t *count);

/* sql_files.c */
int sql_session_create(void *impl, const struct efs_session_info *s);
int sql_session_get(void *impl, const char *session_id, struct efs_session_info *out);
int sql_session_chunks(void *impl, const char *session_id, struct efs_session_chunk **out,
		       size_t *count);
int sql_session_put_chunk(void *impl, const char *session_id, uint64_t index,
			  const struct efs_chunk_info *chunk, const char *const *worker_ids,
			  size_t worker_count, bool dedup, int64_t now_ms, int64_t hidden_expires_ms,
			  int64_t expires_at_least_ms);
int sql_session_complete(void *impl, const char *session_id, int64_t version,
			 const struct efs_file_info *file, int64_t remember_until_ms);
int sql_session_done_get(void *impl, const char *session_id, struct efs_session_done *out);
int sql_session_done_purge(void *impl, int64_t now_ms, size_t max, size_t *count);
int sql_file_create_single(void *impl, const struct efs_file_info *file,
			   const struct efs_chunk_info *chunk, const char *const *worker_ids,
			   size_t worker_count, bool dedup, int64_t now_ms);
int sql_file_create_object(void *impl, const struct efs_file_info *file,
			   const struct efs_chunk_info *chunk, const char *const *worker_ids,
			   size_t worker_count, bool dedup, struct efs_object_link *link,
			   int64_t now_ms);
int sql_session_delete(void *impl, const char *session_id, int64_t now_ms);
int sql_session_expired(void *impl, int64_t now_ms, size_t max, char (*ids)[EFS_ID_MAX + 1],
			size_t *count);
int sql_file_get(void *impl, const char *file_id, struct efs_file_info *out);
int sql_file_chunks(void *impl, const char *file_id, uint64_t first, size_t max,
		    struct efs_file_chunk **out, size_t *count);
int sql_file_list(void *impl, const char *owner, int64_t after_created_ms, const char *after_id,
		  size_t limit, struct efs_file_info **out, size_t *count);
int sql_file_delete(void *impl, const char *file_id, const char *owner, int64_t now_ms);
int sql_chunk_get(void *impl, const char *chunk_id, struct efs_chunk_info *out,
		  struct efs_replica *replicas, unsigned *replica_count);
int sql_replica_mark_bad(void *impl, const char *chunk_id, const char *worker_id,
			 int64_t recorded_by_ms);
int sql_replica_mark_good(void *impl, const char *chunk_id, const struct efs_replica *rep,
			  int64_t now_ms);
int sql_replica_add(void *impl, const char *chunk_id, const char *const *worker_ids,
		    size_t worker_count, int64_t now_ms);
int sql_chunk_record_unreferenced(void *impl, const struct efs_chunk_info *chunk,
				  const char *const *worker_ids, size_t worker_count, int64_t now_ms);
int sql_replica_remove(void *impl, const char *chunk_id, const char *worker_id);
int sql_replica_remove_if(void *impl, const char *chunk_id, const char *worker_id,
			  const char *keep_id);
int sql_stats(void *impl, struct efs_meta_stats *out);
int sql_ec_candidates(void *impl, int64_t created_before_ms, uint64_t min_size,
		      int64_t after_created_ms, const char *after_id, size_t max,
		      struct efs_ec_candidate *out, size_t *count);
int sql_chunk_make_ec(void *impl, const char *chunk_id, unsigned data_shards,
		      unsigned parity_shards, const char *const *worker_ids, size_t worker_count,
		      int64_t now_ms);
int sql_file_set_policy(void *impl, const char *file_id, const char *policy,
			unsigned replication);

/* sql_repair.c */
int sql_repair_list(void *impl, unsigned replication, int64_t holding_after_ms, size_t max,
		    struct efs_repair_need *out, size_t *count);
int sql_under_replicated(void *impl, unsigned replication, int64_t live_after_ms,
			 uint64_t *count);
int sql_ec_stripes(void *impl, int64_t live_after_ms, uint64_t *degraded,
		   uint64_t *unrecoverable);
int sql_report_batch(void *impl, const struct efs_report_context *ctx,
		     struct efs_report_entry *entries, size_t count);
int sql_report_finish(void *impl, const struct efs_report_context *ctx);

/* In a transaction (sql_files.c): deletes file @file_id (of @owner, or of
 * anyone when @owner is NULL), its S3 object row if any, and releases its
 * chunks. -ENOENT when there is no such file. */
int sql_file_release(struct sql_conn *c, const char *file_id, const char *owner, int64_t now_ms);

/* In a transaction (sql_files.c): deletes session @session_id's rows
 * and its chunk rows, leaving the chunks' counts alone (the caller moved
 * the references, or released them). */
int sql_session_end(struct sql_conn *c, const char *session_id);
/* In a transaction (sql_files.c): ends session @session_id and releases
 * its chunks, as efs_meta_session_delete. -ENOENT when there is none. */
int sql_session_release(struct sql_conn *c, const char *session_id, int64_t now_ms);
/* In a transaction (sql_files.c): the row of file @f (its chunk list is
 * the caller's to write). */
int sql_file_insert(struct sql_conn *c, const struct efs_file_info *f);

/* sql_s3.c */
/* In a transaction: makes @o the object at its key, as
 * efs_meta_object_put (the bucket's row locked, the old object's file
 * released). -ENOENT when the bucket is gone. */
int sql_object_replace(struct sql_conn *c, const struct efs_object_info *o, int64_t now_ms);
/* sql_object_replace in two steps, for a transaction that writes more
 * between them (sql_file_create_object): first the bucket's row locked
 * and @cond (NULL: none) checked against the current row (-ENOENT: no
 * bucket; -EEXIST, -ENODATA, -ESTALE as efs_meta_object_put_if), then the
 * old object's file released and @o's row written. */
int sql_object_lock_check(struct sql_conn *c, const struct efs_object_info *o,
			  const struct efs_object_cond *cond);
int sql_object_write(struct sql_conn *c, const struct efs_object_info *o, int64_t now_ms);
int sql_bucket_create(void *impl, const struct efs_bucket_info *b);
int sql_bucket_get(void *impl, const char *name, struct efs_bucket_info *out);
int sql_bucket_list(void *impl, const char *owner, struct efs_bucket_info **out, size_t *count);
int sql_bucket_delete(void *impl, const char *name, const char *owner);
int sql_object_get(void *impl, const char *bucket, const char *key, struct efs_object_info *out);
int sql_object_read(void *impl, const char *bucket, const char *key, struct efs_object_read *out);
int sql_object_put(void *impl, const struct efs_object_info *o, const struct efs_object_cond *cond,
		   int64_t now_ms);
int sql_object_delete(void *impl, const char *bucket, const char *key, int64_t now_ms);
int sql_object_copy(void *impl, struct efs_object_copy *copy, int64_t now_ms);
int sql_object_parts(void *impl, const char *bucket, const char *key, char *file_id, char **layout);
int sql_object_list(void *impl, const char *bucket, const char *prefix, const char *after,
		    size_t limit, struct efs_object_entry *out, size_t *count);

/* sql_s3_multipart.c */
int sql_s3_upload_create(void *impl, const struct efs_s3_upload *u);
int sql_s3_upload_get(void *impl, const char *upload_id, struct efs_s3_upload *out);
int sql_s3_part_put(void *impl, const char *upload_id, const char *owner,
		    const struct efs_s3_part *p, int64_t now_ms);
int sql_s3_part_list(void *impl, const char *upload_id, unsigned after, size_t limit,
		     struct efs_s3_part *out, size_t *count);
int sql_s3_upload_complete(void *impl, const struct efs_s3_upload *u,
			   const struct efs_s3_part *parts, size_t count,
			   const char *chunks_session,
			   const struct efs_file_info *file, int64_t now_ms);
int sql_s3_upload_abort(void *impl, const char *upload_id, const char *owner, int64_t now_ms);
int sql_s3_upload_list(void *impl, const char *bucket, const char *prefix, const char *key_marker,
		       const char *id_marker, size_t limit, struct efs_s3_upload_entry *out,
		       size_t *count);
int sql_s3_upload_expired(void *impl, int64_t now_ms, size_t max, char (*ids)[EFS_ID_MAX + 1],
			  size_t *count);
/* In a transaction (sql_s3_multipart.c): aborts every upload of bucket
 * @bucket (its bucket is being deleted). */
int sql_s3_bucket_uploads_release(struct sql_conn *c, const char *bucket, int64_t now_ms);

int sql_garbage_list(void *impl, int64_t before_ms, size_t max, char (*ids)[65], size_t *count);
int sql_garbage_take(void *impl, const char *chunk_id, struct efs_replica *replicas,
		     unsigned *replica_count);

#endif
