/* SPDX-License-Identifier: MIT */
/* heartbeat.c - registration, heartbeats and master failover. */
#include "worker/heartbeat.h"
#include "echofs.pb-c.h"
#include "echofs/config.h"
#include "echofs/control_plane.h"
#include "echofs/http_client.h"
#include "echofs/json.h"
#include "echofs/log.h"
#include "echofs/rpc.h"
#include "echofs/util.h"
#include "worker/context.h"
#include "worker/copier.h"
#include "worker/fence.h"
#include "worker/store.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* Tries to open a gRPC stream again after 1 s, doubling up to 5 s. */
#define GRPC_BACKOFF_MIN_MS 1000
#define GRPC_BACKOFF_MAX_MS 5000
/* A stream that lived this long resets the backoff. */
#define GRPC_STABLE_MS 10000
/* Most a stream open or a send on one may take. */
#define GRPC_TIMEOUT_MS 2000
/* The longest slice of a wait on the stream (the ticker's stop is checked
 * between slices). */
#define GRPC_WAIT_SLICE_MS 100
/* The slice while the copier holds pushed deletes (each done in a few ms:
 * a tombstone written and synced) or copies: their Acks are sent between
 * slices, and the master's collector waits for a chunk's Acks before its
 * next chunk (a 100 ms slice cost each pushed delete ~50 ms). */
#define GRPC_DELETE_SLICE_MS 2
#define GRPC_COPY_SLICE_MS 20
#define PATH_CONNECT "/echofs.v1.ControlPlane/Connect"
#define ID_FILE "worker_id"
#define CLUSTER_FILE "cluster_id"
/* do_register's answer when the master is another cluster's. */
#define WRONG_CLUSTER (-EXDEV)

static int data_path(const struct efs_worker_ctx *ctx, const char *name, char *out, size_t size)
{
	int n = snprintf(out, size, "%s/%s", ctx->cfg->data_dir, name);
	return (n < 0 || (size_t)n >= size) ? -ENAMETOOLONG : 0;
}

static int id_path(const struct efs_worker_ctx *ctx, char *out, size_t size)
{
	return data_path(ctx, ID_FILE, out, size);
}

/* Reads the cluster this data directory belongs to; absent is fine (a new
 * data directory adopts the first master's cluster). -EINVAL: the file is
 * there but unreadable or damaged, and the worker must not guess. */
static int cluster_load(struct efs_heartbeat *hb)
{
	char path[PATH_MAX], text[EFS_CLUSTER_ID_LEN + 2];
	int r = data_path(hb->ctx, CLUSTER_FILE, path, sizeof(path));
	if (r < 0)
		return r;
	long n = efs_read_file(path, text, sizeof(text));
	if (n == -ENOENT)
		return 0;
	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
		text[--n] = '\0';
	if (n < 0 || !efs_cluster_id_valid(text)) {
		efs_error("%s is not a valid cluster id: refusing to start (it names the cluster "
			  "this data belongs to; see docs/OPERATIONS.md#cluster-identity)",
			  path);
		return -EINVAL;
	}
	efs_strlcpy(hb->ctx->cluster_id, text, sizeof(hb->ctx->cluster_id));
	efs_info("data directory belongs to cluster %s (from %s)", text, path);
	return 0;
}

/* Adopts the cluster of the first master that accepted this worker:
 * written to the data directory (atomically) before it is used. */
static int cluster_adopt(struct efs_heartbeat *hb, const char *cluster_id)
{
	char path[PATH_MAX], text[EFS_CLUSTER_ID_LEN + 2];
	int r = data_path(hb->ctx, CLUSTER_FILE, path, sizeof(path));
	if (r < 0)
		return r;
	int n = snprintf(text, sizeof(text), "%s\n", cluster_id);
	if ((r = efs_write_file_atomic(path, text, (size_t)n)) < 0)
		return r;
	pthread_mutex_lock(&hb->ctx->lock);
	efs_strlcpy(hb->ctx->cluster_id, cluster_id, sizeof(hb->ctx->cluster_id));
	pthread_mutex_unlock(&hb->ctx->lock);
	efs_info("data directory now belongs to cluster %s (written to %s)", cluster_id, path);
	return 0;
}

/* Logs a refused master once per master URL (and again after that master
 * was accepted in between). */
static void log_refused(struct efs_heartbeat *hb, const char *master_cluster)
{
	struct efs_worker_ctx *ctx = hb->ctx;
	if (hb->refused_logged[ctx->master_index])
		return;
	hb->refused_logged[ctx->master_index] = true;
	efs_error("master %s belongs to cluster %s, this worker's data belongs to cluster %s: "
		  "refusing; nothing deleted (see docs/OPERATIONS.md#cluster-identity)",
		  efs_worker_ctx_master_url(ctx), master_cluster, ctx->cluster_id);
}

/* Checks the cluster a master's answer names (registration, heartbeat).
 * 0 when it is ours, or adopted now (a new data directory), or the master
 * names none; WRONG_CLUSTER (logged) when it is another cluster's. */
static int check_cluster(struct efs_heartbeat *hb, const json_t *answer)
{
	const char *theirs;
	if (efs_json_str(answer, "cluster_id", EFS_CLUSTER_ID_LEN, &theirs) < 0 ||
	    !efs_cluster_id_valid(theirs))
		return 0; /* a master without identity: as before */
	if (!hb->ctx->cluster_id[0]) {
		int r = cluster_adopt(hb, theirs);
		if (r < 0)
			efs_error("cannot store the cluster id in %s: %s",
				  hb->ctx->cfg->data_dir, strerror(-r));
		return r;
	}
	if (strcmp(theirs, hb->ctx->cluster_id) != 0) {
		log_refused(hb, theirs);
		return WRONG_CLUSTER;
	}
	return 0;
}

/* A 409 from a master: WRONG_CLUSTER (logged) when it is wrong_cluster,
 * the master refusing our cluster id; -EIO for any other. */
static int refused_by(struct efs_heartbeat *hb, const struct efs_http_call *call)
{
	json_t *answer = json_loadb(call->resp.data, call->resp.len, 0, NULL);
	json_t *error = json_object_get(answer, "error");
	const char *code = json_string_value(json_object_get(error, "code"));
	const char *theirs = json_string_value(json_object_get(error, "cluster_id"));
	int r = -EIO;
	if (code && strcmp(code, "wrong_cluster") == 0) {
		log_refused(hb, efs_cluster_id_valid(theirs) ? theirs : "(unknown)");
		r = WRONG_CLUSTER;
	}
	json_decref(answer);
	return r;
}

/* Reads the stored id into the context's worker_id; absent is fine. */
static void id_load(struct efs_heartbeat *hb)
{
	char path[PATH_MAX], text[EFS_ID_MAX + 2];
	if (id_path(hb->ctx, path, sizeof(path)) < 0)
		return;
	long n = efs_read_file(path, text, sizeof(text));
	if (n == -ENOENT)
		return;
	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
		text[--n] = '\0';
	if (n < 0 || !efs_id_valid(text)) {
		efs_warn("ignoring %s: not a valid worker id; registering as a new worker", path);
		return;
	}
	efs_strlcpy(hb->ctx->worker_id, text, sizeof(hb->ctx->worker_id));
	efs_info("worker id %s (from %s)", hb->ctx->worker_id, path);
}

static int id_store(const struct efs_heartbeat *hb, const char *id)
{
	char path[PATH_MAX], text[EFS_ID_MAX + 2];
	int r = id_path(hb->ctx, path, sizeof(path));
	if (r < 0)
		return r;
	int n = snprintf(text, sizeof(text), "%s\n", id);
	return efs_write_file_atomic(path, text, (size_t)n);
}

static json_t *space_json(struct efs_heartbeat *hb)
{
	struct efs_worker_space space = {0};
	int r = efs_worker_ctx_space(hb->ctx, &space);
	if (r < 0)
		efs_warn("cannot measure %s: %s", hb->ctx->cfg->data_dir, strerror(-r));
	return json_pack("{s:I, s:I, s:I}", "capacity_bytes", (json_int_t)space.capacity_bytes,
			 "free_bytes", (json_int_t)space.free_bytes, "chunk_count",
			 (json_int_t)space.chunk_count);
}

/* Reads heartbeat_interval_ms from a master's answer, if it sent one. */
static void take_interval(struct efs_heartbeat *hb, const json_t *answer)
{
	uint64_t ms;
	if (efs_json_u64(answer, "heartbeat_interval_ms", &ms) == 0 && ms >= 10 &&
	    ms <= 3600000)
		hb->interval_ms = (int64_t)ms;
}

/* Registers with the current master. 0 on success. */
static void stream_open(struct efs_heartbeat *hb);

static int do_register(struct efs_heartbeat *hb)
{
	struct efs_worker_ctx *ctx = hb->ctx;
	struct efs_http_call call;
	json_t *body = space_json(hb);
	const char *id;
	int r;

	json_object_set_new(body, "url", json_string(ctx->cfg->advertise_url));
	if (ctx->worker_id[0])
		json_object_set_new(body, "worker_id", json_string(ctx->worker_id));
	/* Sent only when set: a master from before zones never sees it. */
	if (ctx->cfg->zone[0])
		json_object_set_new(body, "zone", json_string(ctx->cfg->zone));
	r = efs_worker_ctx_post(ctx, &call, "/api/v1/workers/register", body);
	if (r < 0)
		goto out;
	if (call.status == 409) {
		r = refused_by(hb, &call);
		goto out;
	}
	if (call.status != 200) {
		r = call.status == 401 ? -EACCES : -EIO;
		goto out;
	}
	json_t *answer = json_loadb(call.resp.data, call.resp.len, 0, NULL);
	if (!answer || efs_json_str(answer, "worker_id", EFS_ID_MAX, &id) < 0 ||
	    !efs_id_valid(id)) {
		json_decref(answer);
		r = -EPROTO;
		goto out;
	}
	/* Before the worker id is taken: another cluster's master must not
	 * hand this worker an id, nor get its chunk report. */
	if ((r = check_cluster(hb, answer)) < 0) {
		json_decref(answer);
		goto out;
	}
	hb->refused_logged[ctx->master_index] = false;
	if (strcmp(id, ctx->worker_id) != 0) {
		if ((r = id_store(hb, id)) < 0) {
			efs_error("cannot store the worker id in %s: %s", ctx->cfg->data_dir,
				  strerror(-r));
			json_decref(answer);
			goto out;
		}
		pthread_mutex_lock(&ctx->lock);
		efs_strlcpy(ctx->worker_id, id, sizeof(ctx->worker_id));
		pthread_mutex_unlock(&ctx->lock);
	}
	take_interval(hb, answer);
	/* The master's control plane, when it has one (GRPC_PORT). */
	const char *grpc = json_string_value(json_object_get(answer, "grpc_url"));
	char *learned = hb->grpc_learned[ctx->master_index];
	if (!grpc || !efs_worker_grpc_target(grpc, strlen(grpc), learned, EFS_URL_MAX + 1))
		learned[0] = '\0';
	json_decref(answer);
	pthread_mutex_lock(&ctx->lock);
	ctx->registered = true;
	pthread_mutex_unlock(&ctx->lock);
	/* The stream first (when gRPC is wanted), so that the report below
	 * finds it and goes as a Report call. */
	stream_open(hb);
	/* a (re)registered worker reports what it holds */
	atomic_store(&ctx->full_report_due, true);
	efs_info("registered with %s as %s; heartbeat every %lld ms",
		 efs_worker_ctx_master_url(ctx), ctx->worker_id, (long long)hb->interval_ms);
out:
	efs_http_call_release(&call);
	return r;
}

/* Sends one heartbeat. 0, -ENOENT (the master does not know us), or an
 * error. */
static int do_heartbeat(struct efs_heartbeat *hb)
{
	struct efs_http_call call;
	char path[EFS_ID_MAX + 64];
	snprintf(path, sizeof(path), "/api/v1/workers/%s/heartbeat", hb->ctx->worker_id);
	int64_t sent_ms = efs_mono_ms();
	int r = efs_worker_ctx_post(hb->ctx, &call, path, space_json(hb));
	if (r == 0) {
		if (call.status == 200) {
			json_t *answer = json_loadb(call.resp.data, call.resp.len, 0, NULL);
			r = check_cluster(hb, answer);
			take_interval(hb, answer);
			/* The master had counted us dead (a partition, not a
			 * restart): it may have repaired our chunks elsewhere
			 * and deleted files meanwhile; the report settles it.
			 * It asks at every beat until a report ends: one begun
			 * since this beat was sent answers it already. */
			if (r == 0 && json_is_true(json_object_get(answer, "full_report")) &&
			    atomic_load(&hb->ctx->full_report_began_ms) < sent_ms &&
			    !atomic_exchange(&hb->ctx->full_report_due, true))
				efs_info("master %s had counted this worker dead: sending a full "
					 "chunk report now",
					 efs_worker_ctx_master_url(hb->ctx));
			json_decref(answer);
		} else if (call.status == 409) {
			r = refused_by(hb, &call);
		} else {
			r = call.status == 404 ? -ENOENT : call.status == 401 ? -EACCES : -EIO;
		}
	}
	efs_http_call_release(&call);
	return r;
}

/* ---- the gRPC stream (heartbeat thread only) ---- */

/* The current master's gRPC address, or NULL (none, or WORKER_PROTOCOL=http). */
static const char *grpc_target(const struct efs_heartbeat *hb)
{
	const struct efs_worker_config *cfg = hb->ctx->cfg;
	unsigned i = hb->ctx->master_index;
	if (!cfg->use_grpc || hb->grpc_wrong_cluster[i])
		return NULL;
	if (cfg->master_grpc[i][0])
		return cfg->master_grpc[i];
	return hb->grpc_learned[i][0] ? hb->grpc_learned[i] : NULL;
}

static int stream_send(struct efs_heartbeat *hb, const Echofs__V1__WorkerMessage *msg)
{
	size_t len = echofs__v1__worker_message__get_packed_size(msg);
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	echofs__v1__worker_message__pack(msg, buf);
	int r = efs_rpc_stream_send(hb->stream, buf, len, GRPC_TIMEOUT_MS);
	free(buf);
	return r;
}

/* The current master's control plane belongs to another cluster
 * (@theirs, may be "" when only the status said so): this worker stops
 * using it (grpc_target() names it no more) and registers again over
 * HTTP, which checks the cluster once more: refused there too, the worker
 * moves to its next master, as after any wrong_cluster answer. */
static void wrong_cluster(struct efs_heartbeat *hb, const char *theirs)
{
	struct efs_worker_ctx *ctx = hb->ctx;
	unsigned i = ctx->master_index;
	if (hb->grpc_wrong_cluster[i])
		return;
	hb->grpc_wrong_cluster[i] = true;
	efs_error("the gRPC control plane of master %s (%s) belongs to cluster %.64s, this "
		  "worker's data to cluster %s: refusing it, no more streams to it (nothing "
		  "deleted; check MASTER_GRPC_URL); registering again over HTTP",
		  efs_worker_ctx_master_url(ctx),
		  ctx->cfg->master_grpc[i][0] ? ctx->cfg->master_grpc[i] : hb->grpc_learned[i],
		  theirs[0] ? theirs : "(another)", ctx->cluster_id[0] ? ctx->cluster_id : "(none)");
	pthread_mutex_lock(&ctx->lock);
	ctx->registered = false;
	pthread_mutex_unlock(&ctx->lock);
}

/* Closes the stream after @r (a failure), logs once per outage, and sets
 * when to try again. Beats go over HTTP meanwhile. */
static void stream_drop(struct efs_heartbeat *hb, int r, const char *doing)
{
	char why[EFS_RPC_WHY_MAX + 1] = "";
	const char *target = grpc_target(hb);
	if (hb->stream && r == -EPIPE)
		r = efs_rpc_stream_error(hb->stream, why, sizeof(why));
	if (hb->stream && efs_mono_ms() - hb->stream_opened_ms >= GRPC_STABLE_MS)
		hb->grpc_backoff_ms = 0;
	efs_rpc_stream_close(hb->stream);
	hb->stream = NULL;
	atomic_store(&hb->streaming, false);
	pthread_mutex_lock(&hb->ctx->lock);
	hb->ctx->grpc_target[0] = '\0';
	pthread_mutex_unlock(&hb->ctx->lock);
	hb->grpc_backoff_ms = hb->grpc_backoff_ms
				      ? EFS_MIN(hb->grpc_backoff_ms * 2, GRPC_BACKOFF_MAX_MS)
				      : GRPC_BACKOFF_MIN_MS;
	hb->grpc_retry_ms = efs_mono_ms() + hb->grpc_backoff_ms;
	if (r == -EXDEV) {
		/* FAILED_PRECONDITION: the master's cluster is not ours */
		wrong_cluster(hb, "");
		return;
	}
	if (r == -ENOENT) {
		/* the master does not know us: register again (over HTTP) */
		pthread_mutex_lock(&hb->ctx->lock);
		hb->ctx->registered = false;
		pthread_mutex_unlock(&hb->ctx->lock);
	}
	if (!hb->grpc_failing)
		efs_warn("gRPC %s %s: %s%s%s; heartbeats go over HTTP, gRPC again in %lld ms",
			 doing, target ? target : "(no address)",
			 r == -EACCES  ? "refused CLUSTER_SECRET"
			 : r == -EPIPE ? "the stream ended"
				       : strerror(-r),
			 why[0] ? ": " : "",
			 why, (long long)hb->grpc_backoff_ms);
	hb->grpc_failing = true;
}

/* Opens a stream to the current master when one is wanted and due. */
static void stream_open(struct efs_heartbeat *hb)
{
	struct efs_worker_ctx *ctx = hb->ctx;
	const char *target = grpc_target(hb);
	char auth[520]; /* rpc.c passes at most 512 bytes of "authorization" */
	char why[EFS_RPC_WHY_MAX + 1];
	int r;

	if (hb->stream && hb->stream_master != ctx->master_index)
		stream_drop(hb, -ECONNRESET, "stream moved off");
	if (hb->stream || !target || efs_mono_ms() < hb->grpc_retry_ms)
		return;
	int n = snprintf(auth, sizeof(auth), "Bearer %s", ctx->cfg->cluster_secret);
	if (n < 0 || n > 512) {
		if (!hb->grpc_failing)
			efs_warn("CLUSTER_SECRET is longer than gRPC calls carry here (505 bytes): "
				 "heartbeats stay on HTTP");
		hb->grpc_failing = true;
		hb->grpc_retry_ms = INT64_MAX;
		return;
	}
	/* TLS exactly when this master is reached over HTTPS (its control
	 * plane serves TLS from the same certificate), verified as HTTPS is */
	if (strncmp(efs_worker_ctx_master_url(ctx), "https://", 8) == 0)
		r = efs_rpc_stream_open_tls(target, PATH_CONNECT, auth, ctx->cfg->tls.ca_file,
					    GRPC_TIMEOUT_MS, &hb->stream, why, sizeof(why));
	else
		r = efs_rpc_stream_open(target, PATH_CONNECT, auth, GRPC_TIMEOUT_MS, &hb->stream,
					why, sizeof(why));
	if (r < 0) {
		hb->stream = NULL;
		stream_drop(hb, r, "stream to");
		return;
	}
	hb->stream_master = ctx->master_index;
	hb->stream_opened_ms = efs_mono_ms();
	hb->stream_generation++; /* copies pushed on an older one are not acked here */
	hb->stream_sequence = 0;
	Echofs__V1__WorkerMessage msg = ECHOFS__V1__WORKER_MESSAGE__INIT;
	Echofs__V1__Hello hello = ECHOFS__V1__HELLO__INIT;
	hello.worker_id = ctx->worker_id;
	hello.cluster_id = ctx->cluster_id;
	msg.body_case = ECHOFS__V1__WORKER_MESSAGE__BODY_HELLO;
	msg.hello = &hello;
	if ((r = stream_send(hb, &msg)) < 0) {
		stream_drop(hb, r, "hello to");
		return;
	}
	efs_info("heartbeats go over gRPC to %s (master %s)", target,
		 efs_worker_ctx_master_url(ctx));
	hb->grpc_failing = false;
	atomic_store(&hb->streaming, true);
	pthread_mutex_lock(&ctx->lock); /* the report thread reads it */
	efs_strlcpy(ctx->grpc_target, target, sizeof(ctx->grpc_target));
	pthread_mutex_unlock(&ctx->lock);
}

/* Chunk ids per list of a ChunkDelta: 1024 * 2 * ~67 bytes, far under
 * the 1 MiB message cap; more wait for the next beat. */
#define DELTA_MAX_IDS 1024

/* Puts @n ids back in @q (a delta that did not go). */
static void requeue(struct efs_lost_queue *q, char (*ids)[65], size_t n)
{
	for (size_t i = 0; i < n; i++)
		efs_lost_queue_push(q, ids[i]);
}

/* Sends what changed since the last beat as a ChunkDelta: the chunks the
 * scrubber quarantined (corrupt) and those deleted through the API or a
 * pushed delete that are still gone (removed; a copy written again since
 * is held, so not sent). The master marks their replicas bad at once
 * (repair follows). 0, or -errno: the stream is dropped and the ids are
 * queued again (the corrupt ones then go in an HTTP report). */
static int stream_deltas(struct efs_heartbeat *hb)
{
	struct efs_worker_ctx *ctx = hb->ctx;
	char(*corrupt)[65] = malloc(DELTA_MAX_IDS * sizeof(*corrupt));
	char(*removed)[65] = malloc(DELTA_MAX_IDS * sizeof(*removed));
	char **cp = calloc(DELTA_MAX_IDS, sizeof(*cp)), **rp = calloc(DELTA_MAX_IDS, sizeof(*rp));
	size_t nc = 0, nr = 0, kept = 0;
	int r = 0;

	if (!corrupt || !removed || !cp || !rp)
		goto out; /* next beat */
	nc = efs_lost_queue_take(&ctx->lost, corrupt, DELTA_MAX_IDS);
	nr = efs_lost_queue_take(&ctx->removed, removed, DELTA_MAX_IDS);
	for (size_t i = 0; i < nc; i++)
		cp[i] = corrupt[i];
	for (size_t i = 0; i < nr; i++) {
		uint64_t length;
		uint32_t flags;
		int64_t mtime_ms;
		if (efs_store_stat(ctx->store, removed[i], &length, &flags, &mtime_ms) == -ENOENT)
			rp[kept++] = removed[i];
	}
	if (nc == 0 && kept == 0)
		goto out;
	Echofs__V1__WorkerMessage msg = ECHOFS__V1__WORKER_MESSAGE__INIT;
	Echofs__V1__ChunkDelta delta = ECHOFS__V1__CHUNK_DELTA__INIT;
	delta.n_corrupt = nc;
	delta.corrupt = cp;
	delta.n_removed = kept;
	delta.removed = rp;
	msg.body_case = ECHOFS__V1__WORKER_MESSAGE__BODY_DELTA;
	msg.delta = &delta;
	if ((r = stream_send(hb, &msg)) < 0) {
		requeue(&ctx->lost, corrupt, nc);
		requeue(&ctx->removed, removed, nr);
		stream_drop(hb, r, "chunk delta to");
		goto out;
	}
	atomic_fetch_add(&hb->deltas_sent, 1);
	if (nc)
		efs_warn("reported %zu corrupt chunks to the master on the gRPC stream, for repair",
			 nc);
	if (kept)
		efs_info("told the master on the gRPC stream that %zu deleted chunks are gone",
			 kept);
out:
	free(corrupt);
	free(removed);
	free(cp);
	free(rp);
	return r;
}

/* One heartbeat on the stream, after the chunk deltas. 0 or -errno (the
 * stream is then dropped). */
static int stream_beat(struct efs_heartbeat *hb)
{
	struct efs_worker_space space = {0};
	int r = stream_deltas(hb);
	if (r < 0)
		return r;
	r = efs_worker_ctx_space(hb->ctx, &space);
	if (r < 0)
		efs_warn("cannot measure %s: %s", hb->ctx->cfg->data_dir, strerror(-r));
	Echofs__V1__WorkerMessage msg = ECHOFS__V1__WORKER_MESSAGE__INIT;
	Echofs__V1__Heartbeat beat = ECHOFS__V1__HEARTBEAT__INIT;
	Echofs__V1__Space s = ECHOFS__V1__SPACE__INIT;
	s.capacity_bytes = space.capacity_bytes;
	s.free_bytes = space.free_bytes;
	s.chunk_count = space.chunk_count;
	beat.space = &s;
	beat.sequence = ++hb->stream_sequence;
	msg.body_case = ECHOFS__V1__WORKER_MESSAGE__BODY_HEARTBEAT;
	msg.heartbeat = &beat;
	r = stream_send(hb, &msg);
	if (r < 0)
		stream_drop(hb, r, "heartbeat to");
	return r;
}

/* A pushed delete (DeleteChunks): what DELETE /chunks/{id} with
 * X-Unmodified-For-Ms and the lease epoch does (api.c), for each chunk.
 * Checked here (the lease epoch admitted or 409, a malformed instruction
 * or any id not a chunk id 400, nothing deleted), then handed to the
 * copier's delete thread (copier.h): each delete writes and syncs a
 * tombstone, not for this thread, which goes on beating; acks_send()
 * answers it (the status of its last id) when it is done. Returns the
 * Ack's status now, or 0 when the copier took it; 503 (busy) when its
 * delete queue is full: the collector deletes it over HTTP instead. */
static unsigned pushed_delete(struct efs_heartbeat *hb, uint64_t instruction_id,
			      const Echofs__V1__DeleteChunks *del)
{
	struct efs_worker_ctx *ctx = hb->ctx;
	if (del->unmodified_for_ms > INT64_MAX / 2 || del->n_chunk_ids == 0 ||
	    del->n_chunk_ids > EFS_COPIER_DELETE_IDS_MAX)
		return 400;
	for (size_t i = 0; i < del->n_chunk_ids; i++)
		if (!efs_chunk_id_valid(del->chunk_ids[i]))
			return 400;
	if (del->lease_epoch && ctx->fence) {
		int r = efs_fence_admit(ctx->fence, del->lease_epoch);
		if (r == -ESTALE) {
			efs_warn("pushed delete refused: lease epoch %llu is older than %llu, the "
				 "newest seen (a master that lost the lease); nothing changed",
				 (unsigned long long)del->lease_epoch,
				 (unsigned long long)efs_fence_newest(ctx->fence));
			return 409;
		}
		if (r < 0) {
			efs_error("cannot record lease epoch %llu: %s; pushed delete refused",
				  (unsigned long long)del->lease_epoch, strerror(-r));
			return 500;
		}
	}
	struct efs_delete_request req = {.instruction_id = instruction_id,
					 .stream_generation = hb->stream_generation,
					 .chunk_ids = (const char *const *)del->chunk_ids,
					 .chunk_count = del->n_chunk_ids,
					 .unmodified_for_ms = (int64_t)del->unmodified_for_ms};
	int r = efs_copier_submit_delete(&hb->copier, &req);
	if (r == -EBUSY)
		efs_info("pushed delete of chunk %.12s refused: %d deletes are under way or "
			 "waiting (busy: the master deletes it over HTTP)",
			 del->chunk_ids[0], EFS_COPIER_DELETES_MAX);
	return r < 0 ? 503 : 0;
}

/* A pushed copy (CopyChunk): repair's copy of a chunk to this worker.
 * Checked here (a malformed instruction 400, a stale lease epoch 409, a
 * chunk held already 204: the copy is idempotent), then handed to the
 * copier (copier.h), whose threads fetch, verify and store it while this
 * thread goes on beating; acks_send() answers it when it is done. Returns
 * the Ack's status now, or 0 when the copier took it; 503 (busy) when
 * its queue is full: the master writes that copy over HTTP instead. */
static unsigned pushed_copy(struct efs_heartbeat *hb, uint64_t instruction_id,
			    const Echofs__V1__CopyChunk *c)
{
	struct efs_worker_ctx *ctx = hb->ctx;
	struct efs_copy_request req = {.instruction_id = instruction_id,
				       .stream_generation = hb->stream_generation,
				       .size = c->size,
				       .lease_epoch = c->lease_epoch};
	uint64_t length;
	uint32_t flags;
	int64_t mtime_ms;

	if (!efs_chunk_id_valid(c->chunk_id) || strlen(c->from_url) > EFS_URL_MAX ||
	    !efs_http_url_valid(c->from_url) || c->size == 0 || c->size > EFS_COPIER_SIZE_MAX)
		return 400;
	if (c->lease_epoch && ctx->fence) {
		int r = efs_fence_admit(ctx->fence, c->lease_epoch);
		if (r == -ESTALE) {
			efs_warn("pushed copy of chunk %s refused: lease epoch %llu is older than "
				 "%llu, the newest seen",
				 c->chunk_id, (unsigned long long)c->lease_epoch,
				 (unsigned long long)efs_fence_newest(ctx->fence));
			return 409;
		}
		if (r < 0)
			return 500;
	}
	if (efs_store_stat(ctx->store, c->chunk_id, &length, &flags, &mtime_ms) == 0) {
		atomic_fetch_add(&hb->copier.held, 1);
		return 204; /* held already: the copy is idempotent */
	}
	efs_strlcpy(req.chunk_id, c->chunk_id, sizeof(req.chunk_id));
	efs_strlcpy(req.from_url, c->from_url, sizeof(req.from_url));
	int r = efs_copier_submit(&hb->copier, &req);
	if (r == -EBUSY) {
		efs_info("pushed copy of chunk %.12s refused: %d copies are under way or waiting "
			 "(busy: the master writes it over HTTP)",
			 c->chunk_id, EFS_COPIER_JOBS_MAX);
		return 503;
	}
	return r < 0 ? 503 : 0;
}

/* Answers instruction @id with @status. A failed send drops the stream
 * (the master retries the instruction over HTTP). */
static void ack(struct efs_heartbeat *hb, uint64_t id, unsigned status)
{
	Echofs__V1__WorkerMessage msg = ECHOFS__V1__WORKER_MESSAGE__INIT;
	Echofs__V1__Ack a = ECHOFS__V1__ACK__INIT;
	a.instruction_id = id;
	a.status = status;
	a.ok = status < 300 || status == 404 || status == 412;
	msg.body_case = ECHOFS__V1__WORKER_MESSAGE__BODY_ACK;
	msg.ack = &a;
	int r = stream_send(hb, &msg);
	if (r < 0)
		stream_drop(hb, r, "ack to");
}

/* Sends the Acks of the copies and deletes the copier finished. One whose stream
 * has closed since it came is not answered (the master gave up on it
 * then, -EPIPE, and wrote the copy over HTTP); nor is one the master
 * stopped waiting for (EFS_COPY_ACK_MS). If such a copy was stored,
 * it is a copy the master may not record: a full report soon lets the
 * master judge it (kept while younger than its orphan grace, adopted, or
 * deleted), as after an HTTP write that stalled (api.c). */
static void acks_send(struct efs_heartbeat *hb)
{
	struct efs_copy_result done[EFS_COPIER_JOBS_MAX];
	size_t n = efs_copier_take(&hb->copier, done, EFS_COPIER_JOBS_MAX);
	for (size_t i = 0; i < n; i++) {
		bool answered = hb->stream && done[i].stream_generation == hb->stream_generation;
		if (answered)
			ack(hb, done[i].instruction_id, done[i].status);
		if ((!answered || done[i].took_ms >= EFS_COPY_ACK_MS) && done[i].status == 201 &&
		    !atomic_exchange(&hb->ctx->full_report_due, true))
			efs_warn("a pushed copy was stored after %lld ms%s (written elsewhere "
				 "by the master meanwhile?): sending a full chunk report",
				 (long long)done[i].took_ms,
				 answered ? "" : ", its stream closed since");
	}
}

/* Acts on one instruction from the master. */
static void instruction(struct efs_heartbeat *hb, const struct efs_buf *in, int64_t beat_ms)
{
	Echofs__V1__MasterMessage *msg =
		echofs__v1__master_message__unpack(NULL, in->len, (const uint8_t *)in->data);
	if (!msg) {
		efs_warn("master %s sent a malformed gRPC message: ignored",
			 efs_worker_ctx_master_url(hb->ctx));
		return;
	}
	switch (msg->body_case) {
	case ECHOFS__V1__MASTER_MESSAGE__BODY_SET_HEARTBEAT_INTERVAL: {
		uint64_t ms = msg->set_heartbeat_interval->heartbeat_interval_ms;
		if (ms >= 10 && ms <= 3600000)
			hb->interval_ms = (int64_t)ms;
		break;
	}
	case ECHOFS__V1__MASTER_MESSAGE__BODY_DELETE_CHUNKS:
	{
		unsigned status = pushed_delete(hb, msg->instruction_id, msg->delete_chunks);
		if (status)
			ack(hb, msg->instruction_id, status);
		break;
	}
	case ECHOFS__V1__MASTER_MESSAGE__BODY_COPY_CHUNK: {
		unsigned status = pushed_copy(hb, msg->instruction_id, msg->copy_chunk);
		if (status)
			ack(hb, msg->instruction_id, status);
		break;
	}
	case ECHOFS__V1__MASTER_MESSAGE__BODY_WRONG_CLUSTER: {
		char theirs[EFS_CLUSTER_ID_LEN + 1];
		efs_strlcpy(theirs, msg->wrong_cluster->cluster_id, sizeof(theirs));
		wrong_cluster(hb, efs_cluster_id_valid(theirs) ? theirs : "");
		stream_drop(hb, -EXDEV, "stream to");
		break;
	}
	case ECHOFS__V1__MASTER_MESSAGE__BODY_SEND_FULL_REPORT:
		/* as the HTTP answer's "full_report" (do_heartbeat) */
		if (atomic_load(&hb->ctx->full_report_began_ms) < beat_ms &&
		    !atomic_exchange(&hb->ctx->full_report_due, true))
			efs_info("master %s had counted this worker dead: sending a full chunk "
				 "report now",
				 efs_worker_ctx_master_url(hb->ctx));
		break;
	default:
		efs_debug("master %s sent a gRPC instruction this worker does not act on yet "
			  "(%d): ignored",
			  efs_worker_ctx_master_url(hb->ctx), (int)msg->body_case);
		break;
	}
	echofs__v1__master_message__free_unpacked(msg, NULL);
}

/* Waits @ms for the next beat, taking instructions from the stream
 * meanwhile. Returns early (false) when the stream breaks, so the next
 * beat goes over HTTP at once; true when the ticker is stopping. */
static bool stream_wait(struct efs_heartbeat *hb, struct efs_ticker *t, int64_t ms,
			int64_t beat_ms)
{
	struct efs_buf in;
	int64_t until = efs_mono_ms() + ms;
	bool stopping = false;
	efs_buf_init(&in, EFS_RPC_MESSAGE_MAX);
	while (hb->stream) {
		acks_send(hb); /* copies finished meanwhile: their Acks go now */
		if (!hb->stream)
			break;
		int64_t left = until - efs_mono_ms();
		if (left <= 0)
			break;
		size_t copies, deletes;
		efs_copier_held(&hb->copier, &copies, &deletes);
		int64_t slice = deletes  ? GRPC_DELETE_SLICE_MS
				: copies ? GRPC_COPY_SLICE_MS
					 : GRPC_WAIT_SLICE_MS;
		int r = efs_rpc_stream_recv(hb->stream, EFS_MIN(left, slice), &in);
		if (r > 0) {
			instruction(hb, &in, beat_ms);
			continue;
		}
		if (r < 0) {
			stream_drop(hb, r, "stream to");
			break;
		}
		if ((stopping = efs_ticker_wait(t, 0)))
			break;
	}
	efs_buf_release(&in);
	return stopping;
}

static void heartbeat_main(struct efs_ticker *t, void *arg)
{
	struct efs_heartbeat *hb = arg;
	struct efs_worker_ctx *ctx = hb->ctx;
	int64_t backoff = BACKOFF_MIN_MS;
	bool failing = false; /* logged once per outage, not per retry */

	for (;;) {
		int r;
		int64_t beat_ms = efs_mono_ms();
		acks_send(hb); /* without a stream: drops those of closed ones */
		if (ctx->registered)
			stream_open(hb);
		if (!ctx->registered) {
			r = do_register(hb);
		} else if (hb->stream && stream_beat(hb) == 0) {
			r = 0;
		} else {
			r = do_heartbeat(hb);
			if (r == WRONG_CLUSTER) {
				/* Another cluster's master now answers at this URL:
				 * no more reports to it (they follow registration). */
				pthread_mutex_lock(&ctx->lock);
				ctx->registered = false;
				pthread_mutex_unlock(&ctx->lock);
			}
			if (r == -ENOENT) {
				efs_warn("master %s does not know worker %s: registering again",
					 efs_worker_ctx_master_url(ctx), ctx->worker_id);
				pthread_mutex_lock(&ctx->lock);
				ctx->registered = false;
				pthread_mutex_unlock(&ctx->lock);
				r = do_register(hb);
			}
		}
		if (r == 0) {
			if (failing)
				efs_info("master %s reachable again",
					 efs_worker_ctx_master_url(ctx));
			failing = false;
			backoff = BACKOFF_MIN_MS;
			if (ctx->after_beat)
				ctx->after_beat(ctx->after_beat_arg);
			if (hb->stream ? stream_wait(hb, t, hb->interval_ms, beat_ms)
				       : efs_ticker_wait(t, hb->interval_ms))
				break;
			continue;
		}
		if (!failing && r != WRONG_CLUSTER)
			efs_warn("master %s: %s; retrying with backoff%s",
				 efs_worker_ctx_master_url(ctx),
				 r == -EACCES  ? "refused CLUSTER_SECRET (401)"
				 : r == -EPERM ? "its TLS certificate is not trusted (TLS_CA_FILE)"
					       : strerror(-r),
				 ctx->cfg->master_count > 1 ? ", trying the other masters" : "");
		failing = true;
		/* Next master in the list, if there is more than one. */
		pthread_mutex_lock(&ctx->lock);
		ctx->master_index = (ctx->master_index + 1) % ctx->cfg->master_count;
		pthread_mutex_unlock(&ctx->lock);
		if (hb->stream)
			stream_drop(hb, -ECONNRESET, "stream left for another master:");
		if (efs_ticker_wait(t, backoff))
			break;
		/* Never wait longer than a heartbeat interval between tries: a
		 * master restarted in a rolling upgrade counts this worker dead
		 * (uploads get 503 no_capacity) from WORKER_DEAD_AFTER_MS after
		 * our last beat until the next one reaches it, so a backoff grown
		 * to BACKOFF_MAX_MS during its downtime would keep it refusing
		 * uploads for seconds after it is back. One try per interval is
		 * the load a master takes from this worker anyway (and never
		 * more than one per BACKOFF_MIN_MS, however short the interval). */
		int64_t cap = EFS_MAX(BACKOFF_MIN_MS, EFS_MIN(hb->interval_ms, BACKOFF_MAX_MS));
		backoff = EFS_MIN(backoff * 2, cap);
	}
	efs_rpc_stream_close(hb->stream);
	hb->stream = NULL;
}

int efs_heartbeat_start(struct efs_heartbeat *hb, struct efs_worker_ctx *ctx)
{
	memset(hb, 0, sizeof(*hb));
	hb->ctx = ctx;
	hb->interval_ms = 2000;
	id_load(hb);
	int r = cluster_load(hb);
	if (r < 0)
		return r;
	if ((r = efs_copier_start(&hb->copier, ctx)) < 0)
		return r;
	if ((r = efs_ticker_start(&hb->ticker, heartbeat_main, hb)) < 0)
		efs_copier_stop(&hb->copier);
	return r;
}

void efs_heartbeat_stop(struct efs_heartbeat *hb)
{
	if (!hb->ticker.running)
		return;
	efs_ticker_stop(&hb->ticker);
	efs_copier_stop(&hb->copier); /* after the thread that hands copies over */
}
