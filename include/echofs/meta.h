/* SPDX-License-Identifier: MIT */
/* meta.h - the metadata store: workers, files, chunks, replicas, sessions.
 *
 * One small interface, several backends: SQLite (embedded default) now,
 * PostgreSQL and DynamoDB later, chosen by DATABASE_URL. Callers never see
 * SQL. Every operation is atomic on its own; the ones that change several
 * tables run in one transaction inside the backend.
 *
 * Errors: -ENOENT (no such row), -EEXIST (conflict), -EAGAIN (the store is
 * unreachable or busy right now: answer 503), -EIO (anything else).
 * Thread-safe: the store keeps a small pool of connections.
 */
#ifndef ECHOFS_META_H
#define ECHOFS_META_H

#include "echofs/common.h"

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

struct efs_meta;

#define EFS_URL_MAX 512

struct efs_worker_info {
	char worker_id[EFS_ID_MAX + 1];
	char url[EFS_URL_MAX + 1];
	uint64_t capacity_bytes;
	uint64_t free_bytes;
	uint64_t chunk_count;
	int64_t registered_at_ms;  /* first registration, Unix ms */
	int64_t last_heartbeat_ms; /* last registration or heartbeat, Unix ms */
};

/* Opens the store named by @database_url: NULL or "" for SQLite at
 * @data_dir/echofs.db, "sqlite:PATH" for SQLite at PATH, "postgres://..." or
 * "postgresql://..." for PostgreSQL. Creates what is missing and applies
 * schema migrations. On failure writes one line into @err and returns
 * -EINVAL (bad URL), -EAGAIN (unreachable) or -EIO. */
int efs_meta_open(const char *database_url, const char *data_dir, struct efs_meta **out,
		  char *err, size_t errlen);
/* Closes the store; NULL is accepted. */
void efs_meta_close(struct efs_meta *m);

/* "sqlite" or "postgres". */
const char *efs_meta_backend(const struct efs_meta *m);
/* The schema version the store is at. */
int efs_meta_schema_version(struct efs_meta *m, int *out);
/* Round trip to the store: 0 or -EAGAIN. */
int efs_meta_ping(struct efs_meta *m);

/* Inserts or updates a worker (by worker_id): url, capacities, chunk count
 * and last_heartbeat; registered_at is kept when the worker exists. */
int efs_meta_worker_register(struct efs_meta *m, const struct efs_worker_info *w);
/* Marks every worker at @url other than @keep_id dead (last_heartbeat 0):
 * the machine behind the URL now answers under @keep_id. Returns how many
 * records were changed. */
int efs_meta_worker_retire_url(struct efs_meta *m, const char *url, const char *keep_id);
/* Records a heartbeat. -ENOENT when the worker is unknown. */
int efs_meta_worker_heartbeat(struct efs_meta *m, const char *worker_id,
			      uint64_t capacity_bytes, uint64_t free_bytes,
			      uint64_t chunk_count, int64_t now_ms);
/* Reads one worker. -ENOENT when unknown. */
int efs_meta_worker_get(struct efs_meta *m, const char *worker_id, struct efs_worker_info *out);
/* Every worker, ordered by worker_id. *out is a malloc'd array the caller
 * frees (NULL when the count is 0). */
int efs_meta_worker_list(struct efs_meta *m, struct efs_worker_info **out, size_t *count);

#endif
