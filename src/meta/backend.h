/* SPDX-License-Identifier: MIT */
/* backend.h - what a metadata backend implements (private to src/meta).
 *
 * meta.c forwards each efs_meta_* call to these operations. The SQL
 * backends share one implementation (sql_store.c) over a driver (sql.h);
 * a backend that is not SQL (DynamoDB) fills this table itself.
 */
#ifndef ECHOFS_META_BACKEND_H
#define ECHOFS_META_BACKEND_H

#include "echofs/meta.h"

#include <stdatomic.h>

struct efs_meta_ops {
	const char *(*backend_name)(void *impl);
	void (*close)(void *impl);
	int (*schema_version)(void *impl, int *out);
	const char *(*cluster_id)(void *impl);
	int (*ping)(void *impl);
	int (*worker_register)(void *impl, const struct efs_worker_info *w);
	int (*worker_retire_url)(void *impl, const char *url, const char *keep_id);
	int (*worker_heartbeat)(void *impl, const char *worker_id, uint64_t capacity_bytes,
				uint64_t free_bytes, uint64_t chunk_count, int64_t now_ms);
	/* optional: without it meta.c calls worker_heartbeat for each beat */
	int (*worker_heartbeat_many)(void *impl, const struct efs_worker_beat *beats, size_t n,
				     int *results);
	int (*worker_get)(void *impl, const char *worker_id, struct efs_worker_info *out);
	int (*worker_list)(void *impl, struct efs_worker_info **out, size_t *count);
	int (*session_create)(void *impl, const struct efs_session_info *s);
	int (*session_get)(void *impl, const char *session_id, struct efs_session_info *out);
	int (*session_chunks)(void *impl, const char *session_id, struct efs_session_chunk **out,
			      size_t *count);
	int (*session_put_chunk)(void *impl, const char *session_id, uint64_t index,
				 const struct efs_chunk_info *chunk, const char *const *worker_ids,
				 size_t worker_count, bool dedup, int64_t now_ms,
				 int64_t hidden_expires_ms, int64_t expires_at_least_ms);
	int (*session_complete)(void *impl, const char *session_id, int64_t version,
				const struct efs_file_info *file, int64_t remember_until_ms);
	int (*session_done_get)(void *impl, const char *session_id, struct efs_session_done *out);
	int (*session_done_purge)(void *impl, int64_t now_ms, size_t max, size_t *count);
	int (*file_create_single)(void *impl, const struct efs_file_info *file,
				  const struct efs_chunk_info *chunk, const char *const *worker_ids,
				  size_t worker_count, bool dedup, int64_t now_ms);
	/* NULL in a backend without it (efs_meta_has_file_create_object) */
	int (*file_create_object)(void *impl, const struct efs_file_info *file,
				  const struct efs_chunk_info *chunk, const char *const *worker_ids,
				  size_t worker_count, bool dedup, struct efs_object_link *link,
				  int64_t now_ms);
	int (*session_delete)(void *impl, const char *session_id, int64_t now_ms);
	int (*session_expired)(void *impl, int64_t now_ms, size_t max, char (*ids)[EFS_ID_MAX + 1],
			       size_t *count);
	int (*file_get)(void *impl, const char *file_id, struct efs_file_info *out);
	int (*file_chunks)(void *impl, const char *file_id, uint64_t first, size_t max,
			   struct efs_file_chunk **out, size_t *count);
	int (*file_list)(void *impl, const char *owner, int64_t after_created_ms,
			 const char *after_id, size_t limit, struct efs_file_info **out,
			 size_t *count);
	int (*file_delete)(void *impl, const char *file_id, const char *owner, int64_t now_ms);
	int (*chunk_get)(void *impl, const char *chunk_id, struct efs_chunk_info *out,
			 struct efs_replica *replicas, unsigned *replica_count);
	/* Marks the row bad only if recorded at or before @recorded_by_ms
	 * (INT64_MAX: whenever): 1 when it did, 0 when no row was marked. */
	int (*replica_mark_bad)(void *impl, const char *chunk_id, const char *worker_id,
				int64_t recorded_by_ms);
	int (*replica_mark_good)(void *impl, const char *chunk_id, const struct efs_replica *rep,
				 int64_t now_ms);
	int (*replica_add)(void *impl, const char *chunk_id, const char *const *worker_ids,
			   size_t worker_count, int64_t now_ms);
	int (*chunk_record_unreferenced)(void *impl, const struct efs_chunk_info *chunk,
					 const char *const *worker_ids, size_t worker_count,
					 int64_t now_ms);
	int (*replica_remove)(void *impl, const char *chunk_id, const char *worker_id);
	int (*replica_remove_if)(void *impl, const char *chunk_id, const char *worker_id,
				 const char *keep_id);
	int (*repair_list)(void *impl, unsigned replication, int64_t holding_after_ms, size_t max,
			   struct efs_repair_need *out, size_t *count);
	int (*under_replicated)(void *impl, unsigned replication, int64_t live_after_ms,
				uint64_t *count);
	/* NULL on a backend that stores no EC chunk (efs_meta_ec_stripes: 0, 0) */
	int (*ec_stripes)(void *impl, int64_t live_after_ms, uint64_t *degraded,
			  uint64_t *unrecoverable);
	/* Conversion to EC (issue 17); NULL on a backend without EC chunks
	 * (efs_meta_ec_*: -ENOTSUP). */
	int (*ec_candidates)(void *impl, int64_t created_before_ms, uint64_t min_size,
			     int64_t after_created_ms, const char *after_id, size_t max,
			     struct efs_ec_candidate *out, size_t *count);
	int (*chunk_make_ec)(void *impl, const char *chunk_id, unsigned data_shards,
			     unsigned parity_shards, const char *const *worker_ids,
			     size_t worker_count, int64_t now_ms);
	int (*file_set_policy)(void *impl, const char *file_id, const char *policy,
			       unsigned replication);
	int (*report_batch)(void *impl, const struct efs_report_context *ctx,
			    struct efs_report_entry *entries, size_t count);
	int (*report_finish)(void *impl, const struct efs_report_context *ctx);
	bool (*lease)(void *impl);
	uint64_t (*lease_epoch)(void *impl);
	void (*lease_drop)(void *impl);
	int (*stats)(void *impl, struct efs_meta_stats *out);
	int (*garbage_list)(void *impl, int64_t before_ms, size_t max, char (*ids)[65],
			    size_t *count);
	/* S3 (NULL in a backend without them: -ENOTSUP) */
	int (*bucket_create)(void *impl, const struct efs_bucket_info *b);
	int (*bucket_get)(void *impl, const char *name, struct efs_bucket_info *out);
	int (*bucket_list)(void *impl, const char *owner, struct efs_bucket_info **out,
			   size_t *count);
	int (*bucket_delete)(void *impl, const char *name, const char *owner);
	int (*object_get)(void *impl, const char *bucket, const char *key,
			  struct efs_object_info *out);
	/* NULL: meta.c composes it from bucket_get, object_get, file_get. */
	int (*object_read)(void *impl, const char *bucket, const char *key,
			   struct efs_object_read *out);
	int (*object_put)(void *impl, const struct efs_object_info *o,
			  const struct efs_object_cond *cond, int64_t now_ms);
	int (*object_delete)(void *impl, const char *bucket, const char *key, int64_t now_ms);
	int (*object_copy)(void *impl, struct efs_object_copy *copy, int64_t now_ms);
	int (*object_list)(void *impl, const char *bucket, const char *prefix, const char *after,
			   size_t limit, struct efs_object_entry *out, size_t *count);
	/* S3 multipart uploads (NULL: -ENOTSUP) */
	int (*s3_upload_create)(void *impl, const struct efs_s3_upload *u);
	int (*s3_upload_get)(void *impl, const char *upload_id, struct efs_s3_upload *out);
	int (*s3_part_put)(void *impl, const char *upload_id, const char *owner,
			   const struct efs_s3_part *p, int64_t now_ms);
	int (*s3_part_list)(void *impl, const char *upload_id, unsigned after, size_t limit,
			    struct efs_s3_part *out, size_t *count);
	int (*s3_upload_complete)(void *impl, const struct efs_s3_upload *u,
				  const struct efs_s3_part *parts, size_t count,
				  const char *chunks_session,
				  const struct efs_file_info *file, int64_t now_ms);
	int (*s3_upload_abort)(void *impl, const char *upload_id, const char *owner,
			       int64_t now_ms);
	int (*s3_upload_list)(void *impl, const char *bucket, const char *prefix,
			      const char *key_marker, const char *id_marker, size_t limit,
			      struct efs_s3_upload_entry *out, size_t *count);
	int (*s3_upload_expired)(void *impl, int64_t now_ms, size_t max,
				 char (*ids)[EFS_ID_MAX + 1], size_t *count);
	/* The object's file id (EFS_ID_MAX + 1 bytes) and its part layout
	 * (malloc'd, "" when none: efs_s3_parts_encode's text). -ENOENT when
	 * the key holds no object. */
	int (*object_parts)(void *impl, const char *bucket, const char *key, char *file_id,
			    char **layout);
	int (*garbage_take)(void *impl, const char *chunk_id, struct efs_replica *replicas,
			    unsigned *replica_count);
	int (*key_create)(void *impl, const struct efs_access_key *k, unsigned max_per_owner);
	int (*key_get)(void *impl, const char *access_key_id, struct efs_access_key *out);
	int (*key_list)(void *impl, const char *owner, struct efs_access_key **out, size_t *count);
	int (*key_delete)(void *impl, const char *access_key_id, const char *owner);
};

struct efs_meta {
	const struct efs_meta_ops *ops;
	void *impl;
	/* Calls through this handle that may change the totals (meta.c);
	 * efs_meta_changes. */
	_Atomic uint64_t changes;
	/* Calls through this handle that may remove a file row, counted once
	 * they return (meta.c); efs_meta_removals. */
	_Atomic uint64_t removals;
	/* Only this process writes the store (SQLite: one master). */
	bool exclusive;
};

#endif
