/* SPDX-License-Identifier: MIT */
/* meta.c - picks the backend from DATABASE_URL and forwards every call. */
#include "echofs/meta.h"
#include "echofs/util.h"
#include "meta/backend.h"
#include "meta/dynamodb.h"
#include "meta/sql.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int efs_meta_open(const char *database_url, const char *data_dir, struct efs_meta **out,
		  char *err, size_t errlen)
{
	char path[PATH_MAX];
	const struct efs_sql_driver *driver;
	const char *target;
	struct efs_meta *m;
	int r;

	if (!database_url || !*database_url) {
		int n = snprintf(path, sizeof(path), "%s/echofs.db", data_dir);
		if (n < 0 || (size_t)n >= sizeof(path)) {
			snprintf(err, errlen, "DATA_DIR is too long");
			return -EINVAL;
		}
		driver = &efs_sql_sqlite_driver;
		target = path;
	} else if (strncmp(database_url, "sqlite:", 7) == 0 && database_url[7]) {
		driver = &efs_sql_sqlite_driver;
		target = database_url + 7;
	} else if (strncmp(database_url, "postgres://", 11) == 0 ||
		   strncmp(database_url, "postgresql://", 13) == 0) {
		driver = efs_sql_postgres_driver;
		target = database_url;
		if (!driver) {
			snprintf(err, errlen,
				 "DATABASE_URL: the PostgreSQL backend is not available in this build");
			return -EINVAL;
		}
	} else {
		snprintf(err, errlen,
			 "DATABASE_URL: '%.48s' is neither sqlite:PATH nor postgres://...",
			 database_url);
		return -EINVAL;
	}

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	r = efs_sql_store_open(driver, target, &m->impl, err, errlen);
	if (r < 0) {
		free(m);
		return r;
	}
	m->ops = &efs_sql_store_ops;
	/* SQLite serves one master (docs/ARCHITECTURE.md, "Metadata
	 * backends"); PostgreSQL is shared by several. */
	m->exclusive = driver == &efs_sql_sqlite_driver;
	*out = m;
	return 0;
}

int efs_meta_open_dynamodb(const struct efs_meta_dynamodb_config *cfg, struct efs_meta **out,
			   char *err, size_t errlen)
{
	struct efs_meta *m = calloc(1, sizeof(*m));
	int r;
	if (!m)
		return -ENOMEM;
	if ((r = efs_dynamodb_store_open(cfg, &m->impl, err, errlen)) < 0) {
		free(m);
		return r;
	}
	m->ops = &efs_dynamodb_ops;
	*out = m;
	return 0;
}

void efs_meta_close(struct efs_meta *m)
{
	if (!m)
		return;
	m->ops->close(m->impl);
	free(m);
}

const char *efs_meta_backend(const struct efs_meta *m)
{
	return m->ops->backend_name(m->impl);
}

const char *efs_meta_cluster_id(const struct efs_meta *m)
{
	return m->ops->cluster_id(m->impl);
}

int efs_meta_schema_version(struct efs_meta *m, int *out)
{
	return m->ops->schema_version(m->impl, out);
}

int efs_meta_ping(struct efs_meta *m)
{
	return m->ops->ping(m->impl);
}

int efs_meta_worker_register(struct efs_meta *m, const struct efs_worker_info *w)
{
	return m->ops->worker_register(m->impl, w);
}

int efs_meta_worker_retire_url(struct efs_meta *m, const char *url, const char *keep_id)
{
	return m->ops->worker_retire_url(m->impl, url, keep_id);
}

int efs_meta_worker_heartbeat(struct efs_meta *m, const char *worker_id,
			      uint64_t capacity_bytes, uint64_t free_bytes,
			      uint64_t chunk_count, int64_t now_ms)
{
	return m->ops->worker_heartbeat(m->impl, worker_id, capacity_bytes, free_bytes,
					chunk_count, now_ms);
}

int efs_meta_worker_heartbeat_many(struct efs_meta *m, const struct efs_worker_beat *beats,
				   size_t n, int *results)
{
	if (n > EFS_META_BEATS_MAX)
		return -EINVAL;
	if (n == 0)
		return 0;
	if (m->ops->worker_heartbeat_many)
		return m->ops->worker_heartbeat_many(m->impl, beats, n, results);
	for (size_t i = 0; i < n; i++) {
		const struct efs_worker_beat *b = &beats[i];
		int r = m->ops->worker_heartbeat(m->impl, b->worker_id, b->capacity_bytes,
						 b->free_bytes, b->chunk_count, b->at_ms);
		if (r < 0 && r != -ENOENT)
			return r;
		results[i] = r;
	}
	return 0;
}

int efs_meta_worker_get(struct efs_meta *m, const char *worker_id, struct efs_worker_info *out)
{
	return m->ops->worker_get(m->impl, worker_id, out);
}

int efs_meta_worker_list(struct efs_meta *m, struct efs_worker_info **out, size_t *count)
{
	return m->ops->worker_list(m->impl, out, count);
}

int efs_meta_session_create(struct efs_meta *m, const struct efs_session_info *s)
{
	return m->ops->session_create(m->impl, s);
}

int efs_meta_session_get(struct efs_meta *m, const char *session_id,
			 struct efs_session_info *out)
{
	return m->ops->session_get(m->impl, session_id, out);
}

int efs_meta_session_chunks(struct efs_meta *m, const char *session_id,
			    struct efs_session_chunk **out, size_t *count)
{
	return m->ops->session_chunks(m->impl, session_id, out, count);
}

int efs_meta_session_put_chunk(struct efs_meta *m, const char *session_id, uint64_t index,
			       const struct efs_chunk_info *chunk, const char *const *worker_ids,
			       size_t worker_count, bool dedup, int64_t now_ms,
			       int64_t hidden_expires_ms, int64_t expires_at_least_ms)
{
	int r = m->ops->session_put_chunk(m->impl, session_id, index, chunk, worker_ids,
					 worker_count, dedup, now_ms, hidden_expires_ms,
					 expires_at_least_ms);
	atomic_fetch_add(&m->changes, 1);
	return r;
}

int efs_meta_session_complete(struct efs_meta *m, const char *session_id, int64_t version,
			      const struct efs_file_info *file, int64_t remember_until_ms)
{
	int r = m->ops->session_complete(m->impl, session_id, version, file, remember_until_ms);
	atomic_fetch_add(&m->changes, 1);
	return r;
}

int efs_meta_session_done_get(struct efs_meta *m, const char *session_id,
			      struct efs_session_done *out)
{
	return m->ops->session_done_get(m->impl, session_id, out);
}

int efs_meta_session_done_purge(struct efs_meta *m, int64_t now_ms, size_t max, size_t *count)
{
	return m->ops->session_done_purge(m->impl, now_ms, max, count);
}

int efs_meta_file_create_single(struct efs_meta *m, const struct efs_file_info *file,
				const struct efs_chunk_info *chunk, const char *const *worker_ids,
				size_t worker_count, bool dedup, int64_t now_ms)
{
	int r = m->ops->file_create_single(m->impl, file, chunk, worker_ids, worker_count, dedup,
					  now_ms);
	atomic_fetch_add(&m->changes, 1);
	return r;
}

bool efs_meta_has_file_create_object(const struct efs_meta *m)
{
	return m->ops->file_create_object != NULL;
}

int efs_meta_file_create_object(struct efs_meta *m, const struct efs_file_info *file,
				const struct efs_chunk_info *chunk, const char *const *worker_ids,
				size_t worker_count, bool dedup, struct efs_object_link *link,
				int64_t now_ms)
{
	link->refused = 0;
	if (!m->ops->file_create_object)
		return -ENOTSUP;
	int r = m->ops->file_create_object(m->impl, file, chunk, worker_ids, worker_count, dedup,
					   link, now_ms);
	atomic_fetch_add(&m->changes, 1);
	atomic_fetch_add(&m->removals, 1);
	return r;
}

int efs_meta_session_delete(struct efs_meta *m, const char *session_id, int64_t now_ms)
{
	int r = m->ops->session_delete(m->impl, session_id, now_ms);
	atomic_fetch_add(&m->changes, 1);
	return r;
}

int efs_meta_session_expired(struct efs_meta *m, int64_t now_ms, size_t max,
			     char (*ids)[EFS_ID_MAX + 1], size_t *count)
{
	return m->ops->session_expired(m->impl, now_ms, max, ids, count);
}

int efs_meta_file_get(struct efs_meta *m, const char *file_id, struct efs_file_info *out)
{
	return m->ops->file_get(m->impl, file_id, out);
}

int efs_meta_file_chunks(struct efs_meta *m, const char *file_id, uint64_t first, size_t max,
			 struct efs_file_chunk **out, size_t *count)
{
	return m->ops->file_chunks(m->impl, file_id, first, max, out, count);
}

int efs_meta_file_list(struct efs_meta *m, const char *owner, int64_t after_created_ms,
		       const char *after_id, size_t limit, struct efs_file_info **out,
		       size_t *count)
{
	return m->ops->file_list(m->impl, owner, after_created_ms, after_id, limit, out, count);
}

int efs_meta_file_delete(struct efs_meta *m, const char *file_id, const char *owner,
			 int64_t now_ms)
{
	int r = m->ops->file_delete(m->impl, file_id, owner, now_ms);
	atomic_fetch_add(&m->changes, 1);
	atomic_fetch_add(&m->removals, 1);
	return r;
}

int efs_meta_chunk_get(struct efs_meta *m, const char *chunk_id, struct efs_chunk_info *out,
		       struct efs_replica *replicas, unsigned *replica_count)
{
	return m->ops->chunk_get(m->impl, chunk_id, out, replicas, replica_count);
}

int efs_meta_replica_mark_bad(struct efs_meta *m, const char *chunk_id, const char *worker_id)
{
	int r = m->ops->replica_mark_bad(m->impl, chunk_id, worker_id, INT64_MAX);
	return r < 0 ? r : 0;
}

int efs_meta_replica_mark_lost(struct efs_meta *m, const char *chunk_id, const char *worker_id,
			       int64_t recorded_by_ms)
{
	return m->ops->replica_mark_bad(m->impl, chunk_id, worker_id, recorded_by_ms);
}

int efs_meta_replica_mark_good(struct efs_meta *m, const char *chunk_id,
			       const struct efs_replica *rep, int64_t now_ms)
{
	return m->ops->replica_mark_good(m->impl, chunk_id, rep, now_ms);
}

uint64_t efs_meta_changes(struct efs_meta *m)
{
	return atomic_load(&m->changes);
}

int efs_meta_removals(struct efs_meta *m, uint64_t *out)
{
	if (!m->exclusive)
		return -ENOTSUP;
	*out = atomic_load(&m->removals);
	return 0;
}

int efs_meta_stats(struct efs_meta *m, struct efs_meta_stats *out)
{
	return m->ops->stats(m->impl, out);
}

int efs_meta_garbage_list(struct efs_meta *m, int64_t before_ms, size_t max,
			  char (*ids)[65], size_t *count)
{
	return m->ops->garbage_list(m->impl, before_ms, max, ids, count);
}

int efs_meta_garbage_take(struct efs_meta *m, const char *chunk_id,
			  struct efs_replica *replicas, unsigned *replica_count)
{
	return m->ops->garbage_take(m->impl, chunk_id, replicas, replica_count);
}

int efs_meta_replica_add(struct efs_meta *m, const char *chunk_id, const char *const *worker_ids,
			 size_t worker_count, int64_t now_ms)
{
	return m->ops->replica_add(m->impl, chunk_id, worker_ids, worker_count, now_ms);
}

int efs_meta_replica_remove(struct efs_meta *m, const char *chunk_id, const char *worker_id)
{
	return m->ops->replica_remove(m->impl, chunk_id, worker_id);
}

int efs_meta_replica_remove_if(struct efs_meta *m, const char *chunk_id, const char *worker_id,
			       const char *keep_id)
{
	if (strcmp(worker_id, keep_id) == 0)
		return -EINVAL;
	return m->ops->replica_remove_if(m->impl, chunk_id, worker_id, keep_id);
}

int efs_meta_repair_list(struct efs_meta *m, unsigned replication, int64_t holding_after_ms,
			 size_t max, struct efs_repair_need *out, size_t *count)
{
	return m->ops->repair_list(m->impl, replication, holding_after_ms, max, out, count);
}

int efs_meta_under_replicated(struct efs_meta *m, unsigned replication, int64_t live_after_ms,
			      uint64_t *count)
{
	return m->ops->under_replicated(m->impl, replication, live_after_ms, count);
}

int efs_meta_ec_candidates(struct efs_meta *m, int64_t created_before_ms, uint64_t min_size,
			   int64_t after_created_ms, const char *after_id, size_t max,
			   struct efs_ec_candidate *out, size_t *count)
{
	if (!m->ops->ec_candidates)
		return -ENOTSUP;
	return m->ops->ec_candidates(m->impl, created_before_ms, min_size, after_created_ms,
				     after_id, max, out, count);
}

int efs_meta_chunk_make_ec(struct efs_meta *m, const char *chunk_id, unsigned data_shards,
			   unsigned parity_shards, const char *const *worker_ids,
			   size_t worker_count, int64_t now_ms)
{
	if (!m->ops->chunk_make_ec)
		return -ENOTSUP;
	if (data_shards == 0 || parity_shards == 0)
		return -EINVAL;
	return m->ops->chunk_make_ec(m->impl, chunk_id, data_shards, parity_shards, worker_ids,
				     worker_count, now_ms);
}

int efs_meta_file_set_policy(struct efs_meta *m, const char *file_id, const char *policy,
			     unsigned replication)
{
	if (!m->ops->file_set_policy)
		return -ENOTSUP;
	/* The storage class GetObject reports changes: counted as an object
	 * write (efs_meta_removals). */
	int r = m->ops->file_set_policy(m->impl, file_id, policy, replication);
	atomic_fetch_add(&m->removals, 1);
	return r;
}

int efs_meta_ec_stripes(struct efs_meta *m, int64_t live_after_ms, uint64_t *degraded,
			uint64_t *unrecoverable)
{
	if (!m->ops->ec_stripes) {
		*degraded = *unrecoverable = 0;
		return 0;
	}
	return m->ops->ec_stripes(m->impl, live_after_ms, degraded, unrecoverable);
}

int efs_meta_report_batch(struct efs_meta *m, const struct efs_report_context *ctx,
			  struct efs_report_entry *entries, size_t count)
{
	return m->ops->report_batch(m->impl, ctx, entries, count);
}

int efs_meta_report_finish(struct efs_meta *m, const struct efs_report_context *ctx)
{
	return m->ops->report_finish(m->impl, ctx);
}

bool efs_meta_lease(struct efs_meta *m)
{
	return m->ops->lease(m->impl);
}

uint64_t efs_meta_lease_epoch(struct efs_meta *m)
{
	return m->ops->lease_epoch(m->impl);
}

void efs_meta_lease_drop(struct efs_meta *m)
{
	m->ops->lease_drop(m->impl);
}

int efs_meta_chunk_record_unreferenced(struct efs_meta *m, const struct efs_chunk_info *chunk,
				       const char *const *worker_ids, size_t worker_count,
				       int64_t now_ms)
{
	return m->ops->chunk_record_unreferenced(m->impl, chunk, worker_ids, worker_count, now_ms);
}

/* ---- S3 buckets and objects ------------------------------------------ */

int efs_meta_bucket_create(struct efs_meta *m, const struct efs_bucket_info *b)
{
	return m->ops->bucket_create ? m->ops->bucket_create(m->impl, b) : -ENOTSUP;
}

int efs_meta_bucket_get(struct efs_meta *m, const char *name, struct efs_bucket_info *out)
{
	return m->ops->bucket_get ? m->ops->bucket_get(m->impl, name, out) : -ENOTSUP;
}

int efs_meta_bucket_list(struct efs_meta *m, const char *owner, struct efs_bucket_info **out,
			 size_t *count)
{
	return m->ops->bucket_list ? m->ops->bucket_list(m->impl, owner, out, count) : -ENOTSUP;
}

int efs_meta_bucket_delete(struct efs_meta *m, const char *name, const char *owner)
{
	if (!m->ops->bucket_delete)
		return -ENOTSUP;
	/* Its name is free for another owner: counted (efs_meta_removals). */
	int r = m->ops->bucket_delete(m->impl, name, owner);
	atomic_fetch_add(&m->removals, 1);
	return r;
}

int efs_meta_object_get(struct efs_meta *m, const char *bucket, const char *key,
			struct efs_object_info *out)
{
	return m->ops->object_get ? m->ops->object_get(m->impl, bucket, key, out) : -ENOTSUP;
}

int efs_meta_object_read(struct efs_meta *m, const char *bucket, const char *key,
			 struct efs_object_read *out)
{
	struct efs_bucket_info b;
	int r;
	if (m->ops->object_read)
		return m->ops->object_read(m->impl, bucket, key, out);
	if (!m->ops->bucket_get || !m->ops->object_get)
		return -ENOTSUP;
	if ((r = m->ops->bucket_get(m->impl, bucket, &b)) < 0)
		return r;
	efs_strlcpy(out->bucket_owner, b.owner, sizeof(out->bucket_owner));
	if ((r = m->ops->object_get(m->impl, bucket, key, &out->object)) < 0)
		return r == -ENOENT ? -ENOKEY : r;
	r = m->ops->file_get(m->impl, out->object.file_id, &out->file);
	return r == -ENOENT ? -ESTALE : r;
}

int efs_meta_object_put_if(struct efs_meta *m, const struct efs_object_info *o,
			   const struct efs_object_cond *cond, int64_t now_ms)
{
	if (!m->ops->object_put)
		return -ENOTSUP;
	int r = m->ops->object_put(m->impl, o, cond, now_ms);
	atomic_fetch_add(&m->changes, 1);
	atomic_fetch_add(&m->removals, 1);
	return r;
}

int efs_meta_object_put(struct efs_meta *m, const struct efs_object_info *o, int64_t now_ms)
{
	return efs_meta_object_put_if(m, o, NULL, now_ms);
}

int efs_meta_object_delete(struct efs_meta *m, const char *bucket, const char *key,
			   int64_t now_ms)
{
	if (!m->ops->object_delete)
		return -ENOTSUP;
	int r = m->ops->object_delete(m->impl, bucket, key, now_ms);
	atomic_fetch_add(&m->changes, 1);
	atomic_fetch_add(&m->removals, 1);
	return r;
}

int efs_meta_object_copy(struct efs_meta *m, struct efs_object_copy *copy, int64_t now_ms)
{
	if (!m->ops->object_copy)
		return -ENOTSUP;
	int r = m->ops->object_copy(m->impl, copy, now_ms);
	atomic_fetch_add(&m->changes, 1);
	atomic_fetch_add(&m->removals, 1);
	return r;
}

int efs_meta_object_list(struct efs_meta *m, const char *bucket, const char *prefix,
			 const char *after, size_t limit, struct efs_object_entry *out,
			 size_t *count)
{
	return m->ops->object_list
		       ? m->ops->object_list(m->impl, bucket, prefix, after, limit, out, count)
		       : -ENOTSUP;
}

int efs_meta_object_part(struct efs_meta *m, const char *bucket, const char *key,
			 const char *file_id, uint64_t object_size, unsigned number,
			 uint64_t *first, uint64_t *size, unsigned *count)
{
	char current[EFS_ID_MAX + 1];
	char *layout = NULL;
	if (!m->ops->object_parts)
		return -ENOTSUP;
	int r = m->ops->object_parts(m->impl, bucket, key, current, &layout);
	if (r == -ENOENT)
		return -ESTALE;
	if (r < 0)
		return r;
	if (strcmp(current, file_id) != 0) {
		r = -ESTALE;
		goto out;
	}
	if (layout[0]) {
		r = efs_s3_parts_find(layout, number, first, size, count);
		goto out;
	}
	/* Not a multipart object: part 1 is all of it. */
	*count = 0;
	if (number != 1) {
		r = -ERANGE;
		goto out;
	}
	*first = 0;
	*size = object_size;
out:
	free(layout);
	return r;
}

/* ---- S3 multipart uploads -------------------------------------------- */

int efs_meta_s3_upload_create(struct efs_meta *m, const struct efs_s3_upload *u)
{
	return m->ops->s3_upload_create ? m->ops->s3_upload_create(m->impl, u) : -ENOTSUP;
}

int efs_meta_s3_upload_get(struct efs_meta *m, const char *upload_id, struct efs_s3_upload *out)
{
	return m->ops->s3_upload_get ? m->ops->s3_upload_get(m->impl, upload_id, out) : -ENOTSUP;
}

int efs_meta_s3_part_put(struct efs_meta *m, const char *upload_id, const char *owner,
			 const struct efs_s3_part *p, int64_t now_ms)
{
	if (!m->ops->s3_part_put)
		return -ENOTSUP;
	int r = m->ops->s3_part_put(m->impl, upload_id, owner, p, now_ms);
	atomic_fetch_add(&m->changes, 1);
	return r;
}

int efs_meta_s3_part_list(struct efs_meta *m, const char *upload_id, unsigned after, size_t limit,
			  struct efs_s3_part *out, size_t *count)
{
	return m->ops->s3_part_list ? m->ops->s3_part_list(m->impl, upload_id, after, limit, out,
							   count)
				    : -ENOTSUP;
}

int efs_meta_s3_upload_complete(struct efs_meta *m, const struct efs_s3_upload *u,
				const struct efs_s3_part *parts, size_t count,
				const char *chunks_session, const struct efs_file_info *file,
				int64_t now_ms)
{
	if (!m->ops->s3_upload_complete)
		return -ENOTSUP;
	int r = m->ops->s3_upload_complete(m->impl, u, parts, count, chunks_session, file, now_ms);
	atomic_fetch_add(&m->changes, 1);
	atomic_fetch_add(&m->removals, 1);
	return r;
}

int efs_meta_s3_upload_abort(struct efs_meta *m, const char *upload_id, const char *owner,
			     int64_t now_ms)
{
	if (!m->ops->s3_upload_abort)
		return -ENOTSUP;
	int r = m->ops->s3_upload_abort(m->impl, upload_id, owner, now_ms);
	atomic_fetch_add(&m->changes, 1);
	return r;
}

int efs_meta_s3_upload_list(struct efs_meta *m, const char *bucket, const char *prefix,
			    const char *key_marker, const char *id_marker, size_t limit,
			    struct efs_s3_upload_entry *out, size_t *count)
{
	return m->ops->s3_upload_list ? m->ops->s3_upload_list(m->impl, bucket, prefix, key_marker,
							       id_marker, limit, out, count)
				      : -ENOTSUP;
}

int efs_meta_s3_upload_expired(struct efs_meta *m, int64_t now_ms, size_t max,
			       char (*ids)[EFS_ID_MAX + 1], size_t *count)
{
	return m->ops->s3_upload_expired ? m->ops->s3_upload_expired(m->impl, now_ms, max, ids,
								     count)
					 : -ENOTSUP;
}

int efs_meta_key_create(struct efs_meta *m, const struct efs_access_key *k, unsigned max_per_owner)
{
	return m->ops->key_create(m->impl, k, max_per_owner);
}

int efs_meta_key_get(struct efs_meta *m, const char *access_key_id, struct efs_access_key *out)
{
	return m->ops->key_get(m->impl, access_key_id, out);
}

int efs_meta_key_list(struct efs_meta *m, const char *owner, struct efs_access_key **out,
		      size_t *count)
{
	return m->ops->key_list(m->impl, owner, out, count);
}

int efs_meta_key_delete(struct efs_meta *m, const char *access_key_id, const char *owner)
{
	return m->ops->key_delete(m->impl, access_key_id, owner);
}
