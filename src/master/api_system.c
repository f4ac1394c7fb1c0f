/* SPDX-License-Identifier: MIT */
/* api_system.c - health, and who may see the cluster's topology. */
#include "echofs/auth.h"
#include "master/api.h"

bool efs_api_topology_visible(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	return m->cfg.topology == EFS_TOPOLOGY_USERS || efs_auth_is_operator(req);
}

bool efs_api_refuse_topology(struct efs_http_req *req, const char *what)
{
	if (efs_api_topology_visible(req))
		return false;
	efs_http_reply_err(req, EFS_HTTP_E_OPERATORS_ONLY,
			   "%s is for operators (the cluster secret or a token with \"admin\": "
			   "true): TOPOLOGY_VISIBLE_TO=operators",
			   what);
	return true;
}

/* "ok" when the store answers and the chunk backend can store a new file
 * in full: with workers, at least REPLICATION_FACTOR are alive and no
 * chunk is short of replicas; with S3, the bucket answers (HeadBucket).
 * Otherwise "degraded". 503 only when the metadata store is
 * unreachable. No credentials needed; with TOPOLOGY_VISIBLE_TO=operators
 * a caller who is not an operator gets the contract's four fields only
 * (status, workers_alive, workers_total, metadata). */
int efs_api_health(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	size_t alive = 0, total = 0;

	/* Optional credentials: a bad or missing token is simply anonymous. */
	if (m->cfg.topology == EFS_TOPOLOGY_OPERATORS)
		(void)efs_auth_identify(req, &m->keys);

	int r = efs_meta_ping(m->meta);
	if (r == 0)
		r = efs_registry_count(&m->registry, &alive, &total);
	bool metadata_ok = r == 0;
	int64_t under = atomic_load(&m->repair.under_replicated);
	bool redis_ok = !m->redis || efs_redis_ping(m->redis) == 0;
	/* A backend with a health of its own (S3) does not need workers. */
	struct efs_chunk_health chunks = {.ok = false};
	bool own_health = efs_chunk_backend_health(m->chunks, &chunks) == 0;
	bool chunks_ok = own_health ? chunks.ok : alive >= m->cfg.replication_factor && under <= 0;
	bool ok = metadata_ok && redis_ok && chunks_ok;
	/* Redis is an accelerator: without it the master works from the
	 * store, so its absence degrades health but does not fail it. */
	json_t *body = json_pack("{s:s, s:I, s:I, s:s}", "status", ok ? "ok" : "degraded",
				 "workers_alive", (json_int_t)alive, "workers_total",
				 (json_int_t)total, "metadata", metadata_ok ? "ok" : "unavailable");
	if (!body)
		return -ENOMEM;
	if (!efs_api_topology_visible(req))
		return efs_http_reply_json(req, metadata_ok ? 200 : 503, body);
	json_object_set_new(body, "replication_factor",
			    json_integer((json_int_t)m->cfg.replication_factor));
	json_object_set_new(body, "under_replicated", json_integer(under < 0 ? 0 : under));
	json_object_set_new(body, "repair",
			    json_pack("{s:I, s:I}", "repaired_total",
				      (json_int_t)atomic_load(&m->repair.repaired_total),
				      "failed_total",
				      (json_int_t)atomic_load(&m->repair.failed_total)));
	if (m->redis)
		json_object_set_new(body, "redis", json_string(redis_ok ? "ok" : "unavailable"));
	json_object_set_new(body, "metadata_backend", json_string(efs_meta_backend(m->meta)));
	json_object_set_new(body, "chunk_backend", json_string(efs_chunk_backend_name(m->chunks)));
	if (own_health) {
		json_object_set_new(body, "chunk_store", json_string(chunks.ok ? "ok" : "unavailable"));
		if (!chunks.ok)
			json_object_set_new(body, "chunk_store_detail", json_string(chunks.detail));
	}
	/* Not a secret: it names the cluster, it grants nothing. */
	json_object_set_new(body, "cluster_id", json_string(efs_meta_cluster_id(m->meta)));
	return efs_http_reply_json(req, metadata_ok ? 200 : 503, body);
}
