/* SPDX-License-Identifier: MIT */
/* api_system.c - health. */
#include "master/api.h"

/* "ok" when the store answers, at least REPLICATION_FACTOR workers are
 * alive (a new file can be stored in full) and no chunk is short of
 * replicas; otherwise "degraded". 503 only when the metadata store is
 * unreachable. */
int efs_api_health(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	size_t alive = 0, total = 0;

	int r = efs_meta_ping(m->meta);
	if (r == 0)
		r = efs_registry_count(&m->registry, &alive, &total);
	bool metadata_ok = r == 0;
	int64_t under = atomic_load(&m->repair.under_replicated);
	bool redis_ok = !m->redis || efs_redis_ping(m->redis) == 0;
	bool ok = metadata_ok && redis_ok && alive >= m->cfg.replication_factor && under <= 0;
	/* Redis is an accelerator: without it the master works from the
	 * store, so its absence degrades health but does not fail it. */
	json_t *body = json_pack("{s:s, s:I, s:I, s:s, s:I, s:I, s:{s:I, s:I}}", "status",
			  ok ? "ok" : "degraded", "workers_alive", (json_int_t)alive,
			  "workers_total", (json_int_t)total, "metadata",
			  metadata_ok ? "ok" : "unavailable", "replication_factor",
			  (json_int_t)m->cfg.replication_factor, "under_replicated",
			  (json_int_t)(under < 0 ? 0 : under), "repair", "repaired_total",
			  (json_int_t)atomic_load(&m->repair.repaired_total), "failed_total",
			  (json_int_t)atomic_load(&m->repair.failed_total));
	if (m->redis)
		json_object_set_new(body, "redis", json_string(redis_ok ? "ok" : "unavailable"));
	/* Not a secret: it names the cluster, it grants nothing. */
	json_object_set_new(body, "cluster_id", json_string(efs_meta_cluster_id(m->meta)));
	return efs_http_reply_json(req, metadata_ok ? 200 : 503, body);
}
