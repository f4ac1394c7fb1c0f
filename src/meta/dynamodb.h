/* SPDX-License-Identifier: MIT */
/* dynamodb.h - the DynamoDB metadata backend's shared parts (private to
 * src/meta): the handle, item helpers and the release of references that
 * deleting a file or a session (or expiring one) runs.
 *
 * Item layout and write order: docs/AWS.md. dynamodb.c opens, leases and
 * totals; dynamodb_sessions.c has the sessions; dynamodb_files.c the
 * files, chunks, garbage and the releases.
 */
#ifndef ECHOFS_META_DYNAMODB_H
#define ECHOFS_META_DYNAMODB_H

#include "echofs/meta.h"
#include "meta/backend.h"
#include "meta/dynamodb_call.h"

#include <pthread.h>

#define DYN_TABLE_MAX 255
#define DYN_SCHEMA_VERSION 1
/* The lease for background duties: taken for this long, renewed by the
 * holder once less than half of it is left. */
#define DYN_LEASE_TERM_MS 30000
/* A release (file or session delete) whose marker is older than this is
 * finished by the lease holder (its master died half way). */
#define DYN_RELEASE_STALE_MS 60000
/* Retries of a transaction that lost a race (a conflict, a version that
 * moved, a chunk item the collector took meanwhile). */
#define DYN_TX_ATTEMPTS 10
/* Chunk ids in one chunk-list item of a file (plus the item: 100). */
#define DYN_LIST_IDS 99
/* Session CHUNK# items released by one transaction (each with its chunk). */
#define DYN_SESSION_RELEASE 50
/* The TTL backstop: DynamoDB removes a session item this long after it
 * expired, a day after the collector should have (docs/AWS.md). */
#define DYN_TTL_GRACE_S 86400
/* The sort key of the item a complete's commit puts in the session's
 * partition: its CHUNK# items count nothing any more (deleted with them). */
#define DYN_SESSION_COMPLETED_SK "COMPLETED"
/* The collector's sweep of leftover items (dynamodb_leftovers.c) takes
 * only items older than this (or with no created_at: written before it). */
#define DYN_LEFTOVER_GRACE_MS (60 * 60 * 1000)

struct dyn {
	struct ddb ddb;
	char files[DYN_TABLE_MAX + 1];
	char chunks[DYN_TABLE_MAX + 1];
	char sessions[DYN_TABLE_MAX + 1];
	char cluster_id[EFS_CLUSTER_ID_LEN + 1];
	char holder[33]; /* this handle's id in the lease item */
	pthread_mutex_t lease_lock;
	int64_t lease_until_ms; /* 0: not held */
	int64_t lease_epoch;	/* of the lease held (the item's epoch); 0: not held */
	int64_t last_sweep_ms;	/* dynamodb_files.c's sweep, under lease_lock */
};

extern const struct efs_meta_ops efs_dynamodb_ops;
/* Opens the backend: the tables checked (a missing one named in @err),
 * the cluster id read or drawn. */
int efs_dynamodb_store_open(const struct efs_meta_dynamodb_config *cfg, void **out, char *err,
			    size_t errlen);

/* Logs a failed call once (with the table/action, AWS's code and message)
 * and returns the errno callers of meta.h get. */
int dyn_fail(const char *what, int r, const struct ddb_result *res);

/* GetItem with ConsistentRead; *@item is the item (caller decrefs).
 * -ENOENT when there is none. */
int dyn_get(struct dyn *d, const char *table, const char *pk, const char *sk, json_t **item);
/* PutItem / DeleteItem / UpdateItem with a condition (NULL for none) and
 * the names and values the expressions use (borrowed; may be NULL). */
int dyn_put(struct dyn *d, const char *table, json_t *item, const char *condition,
	    json_t *names, json_t *values, struct ddb_result *res);
int dyn_delete(struct dyn *d, const char *table, const char *pk, const char *sk,
	       const char *condition, json_t *names, json_t *values, struct ddb_result *res);
int dyn_update(struct dyn *d, const char *table, const char *pk, const char *sk,
	       const char *update, const char *condition, json_t *names, json_t *values,
	       bool retry, struct ddb_result *res);
/* TransactWriteItems of @items (stolen), which must hold @expected
 * elements (-ENOMEM otherwise: one could not be built), with a fresh
 * ClientRequestToken so that a retry after a lost answer is not applied
 * twice. */
int dyn_tx(struct dyn *d, json_t *items, size_t expected, struct ddb_result *res);
/* One element of a transaction: {"Update": {...}} etc. (new references;
 * @key/@item, @names and @values are stolen). */
json_t *dyn_tx_update(const char *table, json_t *key, const char *update, const char *condition,
		      json_t *names, json_t *values);
json_t *dyn_tx_put(const char *table, json_t *item, const char *condition, json_t *names,
		   json_t *values);
json_t *dyn_tx_delete(const char *table, json_t *key, const char *condition, json_t *names,
		      json_t *values);
json_t *dyn_tx_check(const char *table, json_t *key, const char *condition, json_t *names,
		     json_t *values);

/* The chunk item with refcount 0 and zero_since @now_ms, unless it exists
 * (T5: the collector takes it after its grace if nothing references it). */
int dyn_chunk_ensure(struct dyn *d, const struct efs_chunk_info *chunk, int64_t now_ms);
/* The transaction element adding @delta to @chunk_id's refcount (the item
 * must exist); @delta > 0 also takes it off the collector's list. */
json_t *dyn_chunk_ref(struct dyn *d, const char *chunk_id, int64_t delta);
/* The transaction element giving @chunk one more reference, creating its
 * item when missing (an upsert, as SQL's INSERT ... ON CONFLICT). */
json_t *dyn_chunk_ref_new(struct dyn *d, const struct efs_chunk_info *chunk, int64_t now_ms);
/* Puts chunks whose refcount is 0 on the collector's list (zero_since
 * @now_ms), reading each back first; errors are logged and ignored (the
 * sweep in garbage_list finds what was missed). */
void dyn_chunks_mark_zero(struct dyn *d, const char (*ids)[65], size_t count, int64_t now_ms);

/* Releases marker: "F#<file_id>" or "S#<session_id>". Puts in @tx (a
 * transaction being built) the marker item of a release about to start. */
json_t *dyn_release_marker(struct dyn *d, const char *what, const char *owner, int64_t now_ms);
/* Releases what a deleted file or session referenced, then removes the
 * marker; safe to run twice, concurrently too. */
int dyn_release(struct dyn *d, const char *what, int64_t now_ms);
/* Finishes up to @max releases started before @before_ms (their master
 * died). */
int dyn_release_stale(struct dyn *d, int64_t before_ms, size_t max);
/* The lease holder's sweep of items a dead master left that no file or
 * session names (docs/AWS.md, "Leftovers"): a file's chunk lists without
 * META, a session's CHUNK# items without META. Items younger than
 * @before_ms are left alone. Logs what it does; errors end the pass. */
void dyn_sweep_leftovers(struct dyn *d, int64_t before_ms, int64_t now_ms);
/* Tests only (tests/unit/test_meta_s3.c): when set, a bucket delete calls
 * it after finding the bucket empty, before its final transaction. */
extern void (*dyn_test_bucket_delete_hook)(const char *bucket);
/* Tests only (tests/unit/test_meta_files.c): when set, a complete calls it
 * between writing the file's chunk lists and its commit. NULL otherwise. */
extern void (*dyn_test_before_commit)(struct dyn *d, const char *file_id);

/* Tests only (tests/unit/test_meta_s3.c): when set, a CopyObject calls it
 * after writing each chunk-list item of its new file (@step counts them
 * from 1), before its commit. A negative return stops the copy there as a
 * master that died would (-EINTR, nothing undone). */
extern int (*dyn_test_copy_hook)(struct dyn *d, const char *dst_file_id, unsigned step);
/* Attribute values for the item of @f. */
int dyn_file_from_item(const json_t *item, struct efs_file_info *f);
/* A chunk item's fields. */
int dyn_chunk_from_item(const json_t *item, struct efs_chunk_info *c);

/* dynamodb_workers.c: the worker chunk mode */
/* The transaction element recording a good replica of @chunk_id on
 * @worker_id at @now_ms (created, or made good again: bad_marks kept). */
json_t *dyn_replica_good(struct dyn *d, const char *chunk_id, const char *worker_id,
			 int64_t now_ms);
/* The replicas of @chunk_id (at most EFS_MAX_REPLICAS, by worker id) with
 * their workers' url and last heartbeat from @workers (sorted by id, as
 * dyn_worker_list gives them; NULL: left empty). */
int dyn_replicas_load(struct dyn *d, const char *chunk_id, const struct efs_worker_info *workers,
		      size_t worker_count, struct efs_replica *out, unsigned *count);
int dyn_worker_register(void *impl, const struct efs_worker_info *w);
int dyn_worker_retire_url(void *impl, const char *url, const char *keep_id);
int dyn_worker_heartbeat(void *impl, const char *worker_id, uint64_t capacity_bytes,
			 uint64_t free_bytes, uint64_t chunk_count, int64_t now_ms);
int dyn_worker_get(void *impl, const char *worker_id, struct efs_worker_info *out);
int dyn_worker_list(void *impl, struct efs_worker_info **out, size_t *count);
int dyn_replica_mark_bad(void *impl, const char *chunk_id, const char *worker_id,
			 int64_t recorded_by_ms);
int dyn_replica_mark_good(void *impl, const char *chunk_id, const struct efs_replica *rep,
			  int64_t now_ms);
int dyn_replica_add(void *impl, const char *chunk_id, const char *const *worker_ids,
		    size_t worker_count, int64_t now_ms);
int dyn_replica_remove(void *impl, const char *chunk_id, const char *worker_id);
int dyn_replica_remove_if(void *impl, const char *chunk_id, const char *worker_id,
			  const char *keep_id);
int dyn_repair_list(void *impl, unsigned replication, int64_t holding_after_ms, size_t max,
		    struct efs_repair_need *out, size_t *count);
int dyn_under_replicated(void *impl, unsigned replication, int64_t live_after_ms,
			 uint64_t *count);
int dyn_report_batch(void *impl, const struct efs_report_context *ctx,
		     struct efs_report_entry *entries, size_t count);
int dyn_report_finish(void *impl, const struct efs_report_context *ctx);

/* dynamodb_sessions.c */
int dyn_session_create(void *impl, const struct efs_session_info *s);
int dyn_session_get(void *impl, const char *session_id, struct efs_session_info *out);
int dyn_session_chunks(void *impl, const char *session_id, struct efs_session_chunk **out,
		       size_t *count);
int dyn_session_put_chunk(void *impl, const char *session_id, uint64_t index,
			  const struct efs_chunk_info *chunk, const char *const *worker_ids,
			  size_t worker_count, bool dedup, int64_t now_ms, int64_t hidden_expires_ms,
			  int64_t expires_at_least_ms);
int dyn_session_complete(void *impl, const char *session_id, int64_t version,
			 const struct efs_file_info *file, int64_t remember_until_ms);
int dyn_session_done_get(void *impl, const char *session_id, struct efs_session_done *out);
int dyn_session_done_purge(void *impl, int64_t now_ms, size_t max, size_t *count);
int dyn_session_delete(void *impl, const char *session_id, int64_t now_ms);
int dyn_session_expired(void *impl, int64_t now_ms, size_t max, char (*ids)[EFS_ID_MAX + 1],
			size_t *count);

/* dynamodb_keys.c */
int dyn_key_create(void *impl, const struct efs_access_key *k, unsigned max_per_owner);
int dyn_key_get(void *impl, const char *access_key_id, struct efs_access_key *out);
int dyn_key_list(void *impl, const char *owner, struct efs_access_key **out, size_t *count);
int dyn_key_delete(void *impl, const char *access_key_id, const char *owner);

/* dynamodb_s3.c */
int dyn_bucket_create(void *impl, const struct efs_bucket_info *b);
int dyn_bucket_get(void *impl, const char *name, struct efs_bucket_info *out);
int dyn_bucket_list(void *impl, const char *owner, struct efs_bucket_info **out, size_t *count);
int dyn_bucket_delete(void *impl, const char *name, const char *owner);
int dyn_object_get(void *impl, const char *bucket, const char *key, struct efs_object_info *out);
int dyn_object_put(void *impl, const struct efs_object_info *o, const struct efs_object_cond *cond,
		   int64_t now_ms);
int dyn_object_delete(void *impl, const char *bucket, const char *key, int64_t now_ms);
int dyn_object_copy(void *impl, struct efs_object_copy *copy, int64_t now_ms);
int dyn_object_parts(void *impl, const char *bucket, const char *key, char *file_id, char **layout);
int dyn_object_list(void *impl, const char *bucket, const char *prefix, const char *after,
		    size_t limit, struct efs_object_entry *out, size_t *count);

/* dynamodb_s3.c, shared with dynamodb_s3_multipart.c */
/* The object item of @o (new reference). */
json_t *dyn_object_item(const struct efs_object_info *o);
/* The object at (@bucket, @key) into *@out (heap: ~10 KiB). -ENOENT when
 * there is none. */
int dyn_object_read(struct dyn *d, const char *bucket, const char *key,
		    struct efs_object_info *out);
/* Appends to @items the two elements that end @file_id's life as the
 * object at (@bucket, @key): its META out (conditioned on the link) and a
 * release marker in. */
void dyn_object_release_append(struct dyn *d, json_t *items, const char *file_id,
			       const char *owner, const char *bucket, const char *key,
			       int64_t now_ms);
/* After the transaction that took @file_id's META: its references (a
 * failure is logged; the lease holder finishes it). */
void dyn_object_release_finish(struct dyn *d, const char *file_id, int64_t now_ms);
/* Whether @file_id's META exists (a consistent read). */
int dyn_file_exists(struct dyn *d, const char *file_id, bool *exists);
/* A write's bucket check failed: -ENOENT (the bucket is gone), 0 (retry:
 * a stale delete mark was cleared, or a fresh one may go away), or an
 * error. */
int dyn_bucket_blocked(struct dyn *d, const char *bucket, int64_t now_ms);

/* dynamodb_lists.c: the counted chunk lists of a new file written from
 * chunks another item holds (CopyObject, multipart Complete). */
#define DYN_LISTS_TX_CHUNKS (DDB_MAX_TX_ITEMS - 2)
struct dyn_lists {
	struct dyn *d;
	const char *file_id; /* the new file */
	int64_t now_ms;
	const char *what; /* "copy", "S3 complete": for logs */
	/* Tests: called after each list item written (@step from 1); a
	 * negative return stops the writer as a master that died would
	 * (-EINTR, nothing undone). NULL otherwise. */
	int (*hook)(struct dyn *d, const char *file_id, unsigned step);
	unsigned written;  /* list items written */
	bool died;	   /* stopped by the hook: no undo */
	char first_sk[32]; /* the first list item written ("": none yet) */
	char distinct[DYN_LISTS_TX_CHUNKS][65];
	int64_t counts[DYN_LISTS_TX_CHUNKS];
};
/* Writes the @n chunk ids at @ids, @stride bytes apart (the id i at
 * @ids + i * @stride, NUL-terminated), as @st->file_id's list items from
 * chunk index @first: pieces of at most DYN_LIST_IDS ids and
 * DYN_LISTS_TX_CHUNKS distinct chunks, each one transaction of a copy of
 * @guard (a condition check on the item that holds the chunks; the caller
 * keeps @guard), the list item put with `counted`, and each distinct
 * chunk's count raised by its occurrences. Transaction conflicts are
 * retried. 0; -ECANCELED when a piece's guard (or its item's absence)
 * failed: that piece wrote nothing, earlier ones stay counted (undo them);
 * -EINTR (the hook); -EAGAIN (conflicts went on); -errno. */
int dyn_lists_write(struct dyn_lists *st, const json_t *guard, uint64_t first, const char *ids,
		    size_t stride, size_t n);
/* Undoes the lists @st wrote and did not commit: a release marker of the
 * file, then dyn_release() (each list's counts subtracted once). A
 * failure is logged and leaves them `counted` without META: the leftovers
 * sweep releases them. Nothing when none was written or the hook
 * stopped the writer. */
void dyn_lists_undo(struct dyn_lists *st, const char *owner);

/* dynamodb_s3_multipart.c */
int dyn_s3_upload_create(void *impl, const struct efs_s3_upload *u);
int dyn_s3_upload_get(void *impl, const char *upload_id, struct efs_s3_upload *out);
int dyn_s3_part_put(void *impl, const char *upload_id, const char *owner,
		    const struct efs_s3_part *p, int64_t now_ms);
int dyn_s3_part_list(void *impl, const char *upload_id, unsigned after, size_t limit,
		     struct efs_s3_part *out, size_t *count);
int dyn_s3_upload_complete(void *impl, const struct efs_s3_upload *u,
			   const struct efs_s3_part *parts, size_t count,
			   const char *chunks_session,
			   const struct efs_file_info *file, int64_t now_ms);
int dyn_s3_upload_abort(void *impl, const char *upload_id, const char *owner, int64_t now_ms);
int dyn_s3_upload_list(void *impl, const char *bucket, const char *prefix,
		       const char *key_marker, const char *id_marker, size_t limit,
		       struct efs_s3_upload_entry *out, size_t *count);
int dyn_s3_upload_expired(void *impl, int64_t now_ms, size_t max, char (*ids)[EFS_ID_MAX + 1],
			  size_t *count);
/* A bucket delete, once no put can commit into the bucket (its mark is
 * set) and it holds no object: aborts every upload in progress in it. */
int dyn_s3_bucket_uploads_abort(struct dyn *d, const char *bucket, int64_t now_ms);
/* Tests only (tests/unit/test_meta_s3.c): when set, a complete calls it
 * after writing each chunk-list item of its new file (@step counts them
 * from 1), before its commit. A negative return stops the complete there
 * as a master that died would (-EINTR, nothing undone). */
extern int (*dyn_test_complete_hook)(struct dyn *d, const char *file_id, unsigned step);

/* dynamodb_files.c */
int dyn_file_create_single(void *impl, const struct efs_file_info *file,
			   const struct efs_chunk_info *chunk, const char *const *worker_ids,
			   size_t worker_count, bool dedup, int64_t now_ms);
int dyn_file_get(void *impl, const char *file_id, struct efs_file_info *out);
int dyn_file_chunks(void *impl, const char *file_id, uint64_t first, size_t max,
		    struct efs_file_chunk **out, size_t *count);
int dyn_file_list(void *impl, const char *owner, int64_t after_created_ms, const char *after_id,
		  size_t limit, struct efs_file_info **out, size_t *count);
int dyn_file_delete(void *impl, const char *file_id, const char *owner, int64_t now_ms);
int dyn_chunk_get(void *impl, const char *chunk_id, struct efs_chunk_info *out,
		  struct efs_replica *replicas, unsigned *replica_count);
int dyn_chunk_record_unreferenced(void *impl, const struct efs_chunk_info *chunk,
				  const char *const *worker_ids, size_t worker_count,
				  int64_t now_ms);
int dyn_garbage_list(void *impl, int64_t before_ms, size_t max, char (*ids)[65], size_t *count);
int dyn_garbage_take(void *impl, const char *chunk_id, struct efs_replica *replicas,
		     unsigned *replica_count);
/* The file's META item: file_info fields, owner and list_key. */
json_t *dyn_file_item(const struct efs_file_info *f);
/* "CHUNKS#<12 digits>" */
void dyn_list_sk(uint64_t first, char out[32]);

#endif
