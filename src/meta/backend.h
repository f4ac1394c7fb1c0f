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

struct efs_meta_ops {
	const char *(*backend_name)(void *impl);
	void (*close)(void *impl);
	int (*schema_version)(void *impl, int *out);
	int (*ping)(void *impl);
	int (*worker_register)(void *impl, const struct efs_worker_info *w);
	int (*worker_retire_url)(void *impl, const char *url, const char *keep_id);
	int (*worker_heartbeat)(void *impl, const char *worker_id, uint64_t capacity_bytes,
				uint64_t free_bytes, uint64_t chunk_count, int64_t now_ms);
	int (*worker_get)(void *impl, const char *worker_id, struct efs_worker_info *out);
	int (*worker_list)(void *impl, struct efs_worker_info **out, size_t *count);
};

struct efs_meta {
	const struct efs_meta_ops *ops;
	void *impl;
};

#endif
