/* SPDX-License-Identifier: MIT */
/* api_metrics.c - what the master tells about itself: GET /metrics
 * (Prometheus text) and GET /api/v1/stats (JSON for the dashboard).
 *
 * Both read one snapshot: the metadata totals, the worker list, and the
 * counters the repair loop, the collector and the upload path keep as
 * atomics. The totals are a pass over the files and chunks tables: they
 * come from the master's stats cache (stats_cache.h), computed at most
 * once a second whatever the number of scrapes. The HTTP metrics come from
 * the registry that http_server.c fills. */
#include "echofs/auth.h"
#include "echofs/log.h"
#include "master/api.h"
#include "master/chunk_cache.h"
#include "master/chunk_io.h"
#include "master/chunk_workers.h"

#include <string.h>

struct snapshot {
	int meta_error; /* 0, or why the totals are missing */
	struct efs_meta_stats totals;
	int workers_error;
	size_t workers_alive, workers_total;
	uint64_t capacity_bytes, free_bytes; /* over live workers */
	int64_t under_replicated;	     /* -1 before the repair loop's first pass */
	uint64_t repaired, repair_failed;
	int64_t ec_degraded, ec_unrecoverable; /* -1 before the repair loop's first pass */
	uint64_t ec_rebuilt;
	uint64_t ec_converted_chunks, ec_converted_bytes, ec_converted_files;
	uint64_t chunks_uploaded, chunks_deduplicated, chunk_lists_read, s3_object_reads;
	uint64_t chunks_collected, sessions_expired;
	uint64_t stats_computed;
	struct efs_chunk_cache_stats chunk_cache;
	uint64_t slow_abandons_write, slow_abandons_read;
	struct efs_replica_batch_stats replica_batch;
	/* What the chunks take on the workers, by storage policy: replicated
	 * chunks' stored sizes times REPLICATION_FACTOR (once with a backend
	 * that keeps its own copies: S3), EC chunks' shards. */
	uint64_t disk_replicas, disk_ec;
};

static void take_snapshot(struct efs_master *m, struct snapshot *s)
{
	struct efs_worker_status *workers = NULL;
	size_t n = 0;

	memset(s, 0, sizeof(*s));
	s->meta_error = efs_stats_cache_get(&m->stats_cache, m->meta, &s->totals);
	uint64_t copies = efs_chunk_backend_shows_locations(m->chunks) ? m->cfg.replication_factor : 1;
	s->disk_replicas = (s->totals.stored_bytes - s->totals.ec_stored_bytes) * copies;
	s->disk_ec = s->totals.ec_shard_bytes;
	s->stats_computed = atomic_load(&m->stats_cache.computations);
	s->workers_error = efs_registry_list(&m->registry, &workers, &n);
	if (s->workers_error == 0) {
		s->workers_total = n;
		for (size_t i = 0; i < n; i++) {
			if (!workers[i].alive)
				continue;
			s->workers_alive++;
			s->capacity_bytes += workers[i].info.capacity_bytes;
			s->free_bytes += workers[i].info.free_bytes;
		}
		free(workers);
	}
	s->under_replicated = atomic_load(&m->repair.under_replicated);
	s->repaired = atomic_load(&m->repair.repaired_total);
	s->repair_failed = atomic_load(&m->repair.failed_total);
	s->ec_degraded = atomic_load(&m->repair.ec_degraded);
	s->ec_unrecoverable = atomic_load(&m->repair.ec_unrecoverable);
	s->ec_rebuilt = atomic_load(&m->repair.ec_shards_rebuilt_total);
	s->ec_converted_chunks = atomic_load(&m->ec_convert.chunks_total);
	s->ec_converted_bytes = atomic_load(&m->ec_convert.bytes_total);
	s->ec_converted_files = atomic_load(&m->ec_convert.files_total);
	s->chunks_uploaded = atomic_load(&m->counters.chunks_uploaded);
	s->chunks_deduplicated = atomic_load(&m->counters.chunks_deduplicated);
	s->chunk_lists_read = atomic_load(&m->counters.chunk_lists_read);
	s->s3_object_reads = atomic_load(&m->counters.s3_object_reads);
	s->chunks_collected = atomic_load(&m->gc.chunks_collected);
	s->sessions_expired = atomic_load(&m->gc.sessions_expired);
	efs_chunk_cache_stats(m->chunk_cache, &s->chunk_cache);
	s->slow_abandons_write = atomic_load(&m->placement.slow_abandons_write);
	s->slow_abandons_read = atomic_load(&m->placement.slow_abandons_read);
	struct efs_chunk_io *io = efs_chunk_workers_io(m->chunks);
	efs_replica_batch_stats(io ? io->batch : NULL, &s->replica_batch);
}

/* @num / @den, or 1 when there is nothing to divide (no data: no
 * reduction). */
static double ratio(uint64_t num, uint64_t den)
{
	return den ? (double)num / (double)den : 1.0;
}

/* ---- GET /metrics -------------------------------------------------------- */

static int put_totals(struct efs_metrics *reg, const struct snapshot *s)
{
	const struct efs_meta_stats *t = &s->totals;
	static const struct {
		const char *name, *help;
		size_t offset;
	} gauges[] = {
	    {"echofs_files", "Complete files stored.", offsetof(struct efs_meta_stats, file_count)},
	    {"echofs_logical_bytes", "Sum of the sizes of all complete files.",
	     offsetof(struct efs_meta_stats, logical_bytes)},
	    {"echofs_chunks", "Distinct chunks referenced by files or upload sessions.",
	     offsetof(struct efs_meta_stats, chunk_count)},
	    {"echofs_chunk_bytes", "Uncompressed size of the distinct chunks, each counted once.",
	     offsetof(struct efs_meta_stats, chunk_bytes)},
	    {"echofs_stored_bytes",
	     "Stored (compressed) size of the distinct chunks, one replica each.",
	     offsetof(struct efs_meta_stats, stored_bytes)},
	    {"echofs_ec_chunks", "Distinct erasure-coded chunks (in echofs_chunks too).",
	     offsetof(struct efs_meta_stats, ec_chunk_count)},
	};
	int r = 0;
	for (size_t i = 0; r == 0 && i < EFS_ARRAY_SIZE(gauges); i++) {
		const uint64_t *v = (const uint64_t *)((const char *)t + gauges[i].offset);
		r = efs_metrics_put(reg, EFS_METRIC_GAUGE, gauges[i].name, gauges[i].help,
				    (double)*v);
	}
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_GAUGE, "echofs_compression_ratio",
				    "echofs_chunk_bytes / echofs_stored_bytes: what gzip saves "
				    "(1 when nothing is stored).",
				    ratio(t->chunk_bytes, t->stored_bytes));
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_GAUGE, "echofs_dedup_ratio",
				    "echofs_logical_bytes / echofs_chunk_bytes: what "
				    "deduplication saves (1 when nothing is stored).",
				    ratio(t->logical_bytes, t->chunk_bytes));
	static const char *const by_policy[] = {"policy", NULL};
	struct efs_metric *disk;
	if (r == 0)
		r = efs_metrics_declare(reg, EFS_METRIC_GAUGE, "echofs_disk_bytes",
					"What the chunks take on the workers by storage policy: "
					"replicas (stored size x REPLICATION_FACTOR), ec (the K+M "
					"shards with their headers).",
					by_policy, NULL, 0, &disk);
	if (r == 0)
		r = efs_metric_set(disk, (const char *const[]){"replicas"}, (double)s->disk_replicas);
	if (r == 0)
		r = efs_metric_set(disk, (const char *const[]){"ec"}, (double)s->disk_ec);
	struct efs_metric *logical_by, *stored_by;
	if (r == 0)
		r = efs_metrics_declare(reg, EFS_METRIC_GAUGE, "echofs_policy_logical_bytes",
					"echofs_logical_bytes by the policy each file was uploaded "
					"with: replicas, ec.",
					by_policy, NULL, 0, &logical_by);
	if (r == 0)
		r = efs_metric_set(logical_by, (const char *const[]){"replicas"},
				   (double)(t->logical_bytes - t->ec_logical_bytes));
	if (r == 0)
		r = efs_metric_set(logical_by, (const char *const[]){"ec"},
				   (double)t->ec_logical_bytes);
	if (r == 0)
		r = efs_metrics_declare(reg, EFS_METRIC_GAUGE, "echofs_policy_stored_bytes",
					"echofs_stored_bytes by how each chunk is stored: replicas "
					"(one copy counted), ec.",
					by_policy, NULL, 0, &stored_by);
	if (r == 0)
		r = efs_metric_set(stored_by, (const char *const[]){"replicas"},
				   (double)(t->stored_bytes - t->ec_stored_bytes));
	if (r == 0)
		r = efs_metric_set(stored_by, (const char *const[]){"ec"}, (double)t->ec_stored_bytes);
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_GAUGE, "echofs_effective_overhead",
				    "sum(echofs_disk_bytes) / echofs_logical_bytes: the disk each "
				    "byte of the files costs, after compression, deduplication and "
				    "the storage policies (1 when no file is stored).",
				    ratio(s->disk_replicas + s->disk_ec, t->logical_bytes));
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_GAUGE, "echofs_storage_overhead",
				    "sum(echofs_disk_bytes) / echofs_stored_bytes: the disk each "
				    "stored byte costs (REPLICATION_FACTOR when every chunk is "
				    "replicated, (K+M)/K and a little for ec:K+M; 1 when nothing "
				    "is stored).",
				    ratio(s->disk_replicas + s->disk_ec, t->stored_bytes));
	return r;
}

static int put_workers(struct efs_metrics *reg, const struct snapshot *s)
{
	static const char *const by_state[] = {"state", NULL};
	struct efs_metric *workers;
	int r = efs_metrics_declare(reg, EFS_METRIC_GAUGE, "echofs_workers",
				    "Registered workers by liveness (dead: no heartbeat for "
				    "WORKER_DEAD_AFTER_MS).",
				    by_state, NULL, 0, &workers);
	if (r == 0)
		r = efs_metric_set(workers, (const char *const[]){"alive"},
				   (double)s->workers_alive);
	if (r == 0)
		r = efs_metric_set(workers, (const char *const[]){"dead"},
				   (double)(s->workers_total - s->workers_alive));
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_GAUGE, "echofs_cluster_capacity_bytes",
				    "Capacity the live workers report, summed.",
				    (double)s->capacity_bytes);
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_GAUGE, "echofs_cluster_free_bytes",
				    "Free space the live workers report, summed.",
				    (double)s->free_bytes);
	return r;
}

static int put_counters(struct efs_metrics *reg, const struct snapshot *s)
{
	const struct {
		const char *name, *help;
		uint64_t value;
	} counters[] = {
	    {"echofs_repair_chunks_repaired_total",
	     "Chunks repaired since the master started, each once when done: its copies "
	     "written, or every pushed copy acknowledged (a failed one counts when rewritten "
	     "over HTTP).",
	     s->repaired},
	    {"echofs_repair_failures_total", "Chunk copies by repair that failed.",
	     s->repair_failed},
	    {"echofs_ec_shards_rebuilt_total",
	     "Shards of erasure-coded chunks rebuilt by repair (lost, corrupt, or on a worker "
	     "dead past REPAIR_AFTER_MS) since the master started.",
	     s->ec_rebuilt},
	    {"echofs_ec_converted_chunks_total",
	     "Replicated chunks converted to erasure coding (EC_AFTER) by this master since it "
	     "started.",
	     s->ec_converted_chunks},
	    {"echofs_ec_converted_bytes_total",
	     "Logical (uncompressed) bytes of the chunks converted to erasure coding since the "
	     "master started.",
	     s->ec_converted_bytes},
	    {"echofs_ec_converted_files_total",
	     "Files whose every chunk was converted and whose policy became EC_POLICY since the "
	     "master started.",
	     s->ec_converted_files},
	    {"echofs_upload_chunks_total", "Chunks stored by uploads (one-request and sessions).",
	     s->chunks_uploaded},
	    {"echofs_upload_chunks_deduplicated_total",
	     "Uploaded chunks that were already stored: no bytes were sent to workers.",
	     s->chunks_deduplicated},
	    {"echofs_gc_chunks_collected_total", "Unreferenced chunks removed by the collector.",
	     s->chunks_collected},
	    {"echofs_gc_sessions_expired_total", "Upload sessions that expired.",
	     s->sessions_expired},
	    {"echofs_metadata_stats_computed_total",
	     "Passes over the metadata for the totals (echofs_files ...): at most one a "
	     "second, shared by concurrent scrapes.",
	     s->stats_computed},
	    {"echofs_chunk_cache_hits_total",
	     "Chunks downloads took from the master's chunk cache (CHUNK_CACHE_SIZE).",
	     s->chunk_cache.hits},
	    {"echofs_chunk_cache_misses_total",
	     "Chunks downloads looked for in the chunk cache and read from a worker.",
	     s->chunk_cache.misses},
	    {"echofs_download_chunk_lists_read_total",
	     "Chunk list queries of downloads (batches of up to 64 chunks with their replicas); "
	     "a small file's download whose chunks are cached makes none.",
	     s->chunk_lists_read},
	    {"echofs_replica_batches_total",
	     "POST /chunks/batch requests sent to workers: the small replica writes of "
	     "concurrent uploads, several to a worker in one request (REPLICA_BATCH_MAX_ITEMS).",
	     s->replica_batch.batches},
	    {"echofs_replica_batch_items_total",
	     "Replica writes those batches held (more than the batches when uploads share them).",
	     s->replica_batch.items},
	    {"echofs_replica_batch_unsupported_workers_total",
	     "Workers that answered 404/405 to POST /chunks/batch (older, or "
	     "WORKER_BATCH_WRITES=0): written one PUT per replica since.",
	     s->replica_batch.unsupported},
	    {"echofs_s3_object_reads_total",
	     "Object reads (bucket, object row and file row) of S3 GetObject and HeadObject "
	     "from the store; one answered from the master's object cache makes none.",
	     s->s3_object_reads},
	};
	int r = 0;
	for (size_t i = 0; r == 0 && i < EFS_ARRAY_SIZE(counters); i++)
		r = efs_metrics_put(reg, EFS_METRIC_COUNTER, counters[i].name, counters[i].help,
				    (double)counters[i].value);
	static const char *const by_op[] = {"op", NULL};
	struct efs_metric *slow;
	if (r == 0)
		r = efs_metrics_declare(reg, EFS_METRIC_COUNTER,
					"echofs_slow_transfers_abandoned_total",
					"Chunk transfers to (op=write: placed on another worker) or from "
					"(op=read: another replica read) a worker given up on for "
					"moving under SLOW_WORKER_MIN_RATE (stalls not counted).",
					by_op, NULL, 0, &slow);
	if (r == 0)
		r = efs_metric_set(slow, (const char *const[]){"write"},
				   (double)s->slow_abandons_write);
	if (r == 0)
		r = efs_metric_set(slow, (const char *const[]){"read"},
				   (double)s->slow_abandons_read);
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_GAUGE, "echofs_replica_batch_queued",
				    "Small replica writes waiting now for their worker's batch in "
				    "flight to end (REPLICA_BATCH_MAX_ITEMS).",
				    (double)s->replica_batch.queued);
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_GAUGE, "echofs_chunk_cache_bytes",
				    "Bytes the chunk cache holds, 128 per entry included.",
				    (double)s->chunk_cache.bytes);
	return r;
}

/* Only with REDIS_ADDR: the circuit breaker as it stands (no ping: a
 * scrape never waits on Redis). */
static int put_redis(struct efs_metrics *reg, const struct efs_redis *redis)
{
	int r = efs_metrics_put(reg, EFS_METRIC_GAUGE, "echofs_redis_up",
				"1 while Redis answers (the circuit breaker is closed), 0 while "
				"the master bypasses it and works from the metadata store alone.",
				efs_redis_up(redis));
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_COUNTER, "echofs_redis_breaker_opened_total",
				    "Times a Redis call failed and the master began to bypass Redis.",
				    (double)efs_redis_opened_total(redis));
	return r;
}

/* Only with GRPC_PORT: the control plane's streams. */
static int put_grpc(struct efs_metrics *reg, struct efs_control *ctl)
{
	int r = efs_metrics_put(reg, EFS_METRIC_GAUGE, "echofs_grpc_streams",
				"Workers with an open gRPC control stream to this master.",
				(double)efs_control_streams(ctl));
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_COUNTER, "echofs_grpc_streams_opened_total",
				    "gRPC control streams a worker opened (its Hello was taken).",
				    (double)atomic_load(&ctl->streams_opened));
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_COUNTER, "echofs_grpc_streams_broken_total",
				    "gRPC control streams that broke (the worker was then suspect "
				    "and dead after GRPC_STREAM_GRACE_MS unless it beat again).",
				    (double)atomic_load(&ctl->streams_broken));
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_COUNTER, "echofs_grpc_streams_silenced_total",
				    "Of the broken gRPC control streams, those this master ended "
				    "because no message came for 3 heartbeat intervals (5 s at least).",
				    (double)atomic_load(&ctl->streams_silenced));
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_COUNTER, "echofs_grpc_heartbeats_total",
				    "Heartbeats recorded from gRPC control streams.",
				    (double)atomic_load(&ctl->heartbeats));
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_COUNTER, "echofs_grpc_heartbeats_stamped_total",
				    "Of those, heartbeats only stamped in memory (written later by "
				    "the flusher, with the others of that quarter period).",
				    (double)atomic_load(&ctl->master->registry.stamped_beats));
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_COUNTER, "echofs_grpc_beat_flushes_total",
				    "Flushes of stamped stream heartbeats to the store (one "
				    "transaction each) and Redis (one pipeline).",
				    (double)atomic_load(&ctl->master->registry.flushes));
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_COUNTER, "echofs_grpc_deletes_pushed_total",
				    "Replica deletes sent down gRPC control streams instead of HTTP.",
				    (double)atomic_load(&ctl->deletes_pushed));
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_COUNTER, "echofs_grpc_deletes_acked_total",
				    "Pushed replica deletes the worker acknowledged in time (the "
				    "others were retried over HTTP).",
				    (double)atomic_load(&ctl->deletes_acked));
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_COUNTER, "echofs_grpc_report_batches_total",
				    "Chunk report batches judged from gRPC Report calls (the "
				    "others came over HTTP).",
				    (double)atomic_load(&ctl->report_batches));
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_COUNTER, "echofs_grpc_copies_pushed_total",
				    "Repair copies sent down gRPC control streams (CopyChunk) instead "
				    "of written over HTTP.",
				    (double)atomic_load(&ctl->copies_pushed));
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_COUNTER, "echofs_grpc_copies_acked_total",
				    "Pushed repair copies the worker acknowledged in time (any status).",
				    (double)atomic_load(&ctl->copies_acked));
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_COUNTER, "echofs_grpc_chunk_deltas_total",
				    "Chunk deltas received on gRPC control streams.",
				    (double)atomic_load(&ctl->deltas));
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_COUNTER, "echofs_grpc_delta_marked_bad_total",
				    "Replicas marked bad because a worker's chunk delta named them "
				    "corrupt or deleted (repair follows).",
				    (double)atomic_load(&ctl->delta_marked));
	return r;
}

/* The scrape-time families: absent values are left out (a gap in a graph,
 * not a false zero); echofs_metadata_up says why (as of the totals'
 * computation, up to a second ago). */
static int scrape(struct efs_master *m, struct efs_metrics *reg)
{
	struct snapshot s;
	int r;

	take_snapshot(m, &s);
	r = efs_metrics_put(reg, EFS_METRIC_GAUGE, "echofs_lease_epoch",
			    "The epoch of the lease for background duties this master holds (0: "
			    "another master holds it, or the metadata store did not answer).",
			    (double)efs_meta_lease_epoch(m->meta));
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_GAUGE, "echofs_metadata_up",
			    "1 when the metadata store answered (within the last second), else 0.",
			    s.meta_error == 0 && s.workers_error == 0);
	if (r == 0 && s.meta_error == 0)
		r = put_totals(reg, &s);
	if (r == 0 && s.workers_error == 0)
		r = put_workers(reg, &s);
	if (r == 0)
		r = efs_metrics_put(reg, EFS_METRIC_GAUGE, "echofs_replication_factor",
				    "REPLICATION_FACTOR: replicas each chunk should have.",
				    m->cfg.replication_factor);
	if (r == 0 && s.under_replicated >= 0)
		r = efs_metrics_put(reg, EFS_METRIC_GAUGE, "echofs_chunks_under_replicated",
				    "Referenced chunks with fewer good replicas on live workers "
				    "than REPLICATION_FACTOR (as of the repair loop's last pass).",
				    (double)s.under_replicated);
	if (r == 0 && s.ec_degraded >= 0)
		r = efs_metrics_put(reg, EFS_METRIC_GAUGE, "echofs_ec_stripes_degraded",
				    "Referenced erasure-coded chunks with fewer than K + M good "
				    "shards on live workers (as of the repair loop's last pass).",
				    (double)s.ec_degraded);
	if (r == 0 && s.ec_unrecoverable >= 0)
		r = efs_metrics_put(reg, EFS_METRIC_GAUGE, "echofs_ec_stripes_unrecoverable",
				    "Referenced erasure-coded chunks with fewer than K good shards "
				    "on live workers: unreadable until a worker returns.",
				    (double)s.ec_unrecoverable);
	if (r == 0)
		r = put_counters(reg, &s);
	if (r == 0 && m->redis)
		r = put_redis(reg, m->redis);
	if (r == 0 && efs_control_port(&m->control))
		r = put_grpc(reg, &m->control);
	return r;
}

/* No credentials by default (Prometheus scrapes as it is); with
 * TOPOLOGY_VISIBLE_TO=operators the totals and worker figures are an
 * operator's: the scraper sends the cluster secret or an admin token
 * (401 without credentials, 403 operators_only for a plain user). */
int efs_api_metrics(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	struct efs_metrics *now = NULL;

	if (m->cfg.topology == EFS_TOPOLOGY_OPERATORS) {
		int a = efs_auth_check(req, EFS_AUTH_ANY, &m->keys);
		if (a < 0 || efs_http_replied(req))
			return a < 0 ? a : 0;
		if (efs_api_refuse_topology(req, "/metrics"))
			return 0;
	}
	int r = efs_metrics_new(&now);
	if (r == 0)
		r = scrape(m, now);
	if (r == 0) {
		struct efs_metrics *const regs[] = {m->metrics, now};
		r = efs_http_reply_metrics(req, regs, EFS_ARRAY_SIZE(regs));
	}
	efs_metrics_free(now);
	return r;
}

/* ---- GET /api/v1/stats ----------------------------------------------------- */

/* A JSON integer from a count (counts stay far below 2^63). */
#define J(v) ((json_int_t)(v))

int efs_api_stats(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	struct snapshot s;

	/* cluster-wide totals: an operator's when TOPOLOGY_VISIBLE_TO=operators */
	if (efs_api_refuse_topology(req, "the cluster's totals"))
		return 0;
	take_snapshot(m, &s);
	if (s.meta_error < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_META, s.meta_error, NULL);
	if (s.workers_error < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_META, s.workers_error, NULL);
	const struct efs_meta_stats *t = &s.totals;
	json_t *workers =
	    json_pack("{s:I, s:I, s:I, s:I, s:I}", "alive", J(s.workers_alive), "dead",
		      J(s.workers_total - s.workers_alive), "total", J(s.workers_total),
		      "capacity_bytes", J(s.capacity_bytes), "free_bytes", J(s.free_bytes));
	json_t *repair =
	    json_pack("{s:I, s:I, s:I}", "repaired_total", J(s.repaired), "failed_total",
		      J(s.repair_failed), "ec_shards_rebuilt_total", J(s.ec_rebuilt));
	json_t *ec_degraded = s.ec_degraded >= 0 ? json_integer(s.ec_degraded) : json_null();
	json_t *ec_lost = s.ec_unrecoverable >= 0 ? json_integer(s.ec_unrecoverable) : json_null();
	json_t *uploads = json_pack("{s:I, s:I}", "chunks_total", J(s.chunks_uploaded),
				    "chunks_deduplicated_total", J(s.chunks_deduplicated));
	json_t *gc = json_pack("{s:I, s:I}", "chunks_collected_total", J(s.chunks_collected),
			       "sessions_expired_total", J(s.sessions_expired));
	json_t *under = s.under_replicated >= 0 ? json_integer(s.under_replicated) : json_null();
	json_t *disk = json_pack("{s:I, s:I}", "replicas", J(s.disk_replicas), "ec", J(s.disk_ec));
	/* Per policy: files by the policy they were uploaded with, chunks by
	 * how they are stored (a chunk two files of different policies share
	 * is stored as the first one stored it), disk from the chunks. */
	uint64_t rep_stored = t->stored_bytes - t->ec_stored_bytes;
	json_t *by_policy = json_pack(
	    "{s:{s:I, s:I, s:I, s:I, s:f}, s:{s:I, s:I, s:I, s:I, s:f}}", "replicas", "files",
	    J(t->file_count - t->ec_file_count), "logical_bytes",
	    J(t->logical_bytes - t->ec_logical_bytes), "stored_bytes", J(rep_stored), "disk_bytes",
	    J(s.disk_replicas), "overhead", ratio(s.disk_replicas, rep_stored), "ec", "files",
	    J(t->ec_file_count), "logical_bytes", J(t->ec_logical_bytes), "stored_bytes",
	    J(t->ec_stored_bytes), "disk_bytes", J(s.disk_ec), "overhead",
	    ratio(s.disk_ec, t->ec_stored_bytes));
	/* "o" steals each part, also when the pack fails (NULL: ENOMEM). */
	json_t *body = json_pack(
	    "{s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:I, s:I, s:o, s:o, s:o, s:f, s:f, s:o, s:o, s:o, "
	    "s:o, s:o, s:o}",
	    "files", J(t->file_count), "logical_bytes", J(t->logical_bytes), "chunks",
	    J(t->chunk_count), "chunk_bytes", J(t->chunk_bytes), "stored_bytes", J(t->stored_bytes),
	    "compression_ratio", ratio(t->chunk_bytes, t->stored_bytes), "dedup_ratio",
	    ratio(t->logical_bytes, t->chunk_bytes), "replication_factor",
	    J(m->cfg.replication_factor), "ec_chunks", J(t->ec_chunk_count), "ec_stripes_degraded",
	    ec_degraded, "ec_stripes_unrecoverable", ec_lost, "disk_bytes", disk,
	    "storage_overhead", ratio(s.disk_replicas + s.disk_ec, t->stored_bytes),
	    "effective_overhead", ratio(s.disk_replicas + s.disk_ec, t->logical_bytes), "by_policy",
	    by_policy, "workers", workers, "under_replicated", under, "repair", repair, "uploads", uploads, "gc", gc);
	if (!body)
		return -ENOMEM;
	return efs_http_reply_json(req, 200, body);
}

/* GET /api/v1/stats/history - the last hour of this master's load, per
 * HISTORY_INTERVAL_MS, for the dashboard's charts. The same audience as
 * /api/v1/stats: the worker ids and their space are topology. */
int efs_api_stats_history(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	json_t *body = NULL;
	int r;

	if (efs_api_refuse_topology(req, "the cluster's history"))
		return 0;
	if ((r = efs_history_json(&m->history, &body)) < 0)
		return r;
	return efs_http_reply_json(req, 200, body);
}
