/* SPDX-License-Identifier: MIT */
/* test_two_masters.c - two masters, each with its own worker, in one
 * process.
 *
 * Every piece of a master's state is an object it owns (master.h), so two
 * masters started with efs_master_start in one process (distinct ports,
 * data directories and SQLite databases) run side by side. Each gets a
 * worker, also started in this process (efs_worker_start); files are
 * uploaded through each master over real HTTP (the one-request upload, one
 * chunk and several chunks) and downloaded byte-identical. Then the
 * per-master state is shown to be separate: the token a master verified is
 * in its token cache only, a file one master served is not in the other's
 * file cache, a chunk one master is writing is not seen by
 * the other's write guard, one master's placement load and upload memory
 * budget do not move the other's, and each calls the workers on its own
 * HTTP client. Both masters stop cleanly (the sanitizer build checks for
 * leaks).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "echofs/auth.h"
#include "echofs/hash.h"
#include "echofs/http_client.h"
#include "echofs/http_server.h"
#include "echofs/log.h"
#include "echofs/util.h"
#include "master/chunk_io.h"
#include "master/chunk_workers.h"
#include "master/master.h"
#include "worker/config.h"
#include "worker/worker.h"

#include <arpa/inet.h>
#include <ftw.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define JWT_SECRET "two-masters-jwt-secret"
#define CLUSTER_SECRET "two-masters-cluster-secret"
#define CHUNK_SIZE (64 * 1024)
#define WAIT_MS 10000

struct side {
	char name;
	uint16_t master_port, worker_port;
	char master_dir[128], worker_dir[128];
	char master_url[64];
	struct efs_master master;
	struct efs_worker worker;
	bool master_up, worker_up;
	char *token;
};

struct fixture {
	char base[64];
	struct efs_http_client *http; /* the test's own client, as a user's */
	struct side side[2];
};

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	return remove(path);
}

/* A port nothing listens on now (the kernel's choice for port 0). */
static uint16_t free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	uint16_t port = 0;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static void set(const char *name, const char *value)
{
	assert_int_equal(setenv(name, value, 1), 0);
}

static void set_u(const char *name, unsigned value)
{
	char text[32];
	snprintf(text, sizeof(text), "%u", value);
	set(name, text);
}

static int start_master(struct side *s)
{
	struct efs_master_config cfg;
	char err[256] = "";
	set_u("MASTER_PORT", s->master_port);
	set("GRPC_PORT", "0"); /* two masters in one process; 8090 may be taken */
	set("DATA_DIR", s->master_dir);
	if (efs_master_config_load(&cfg, err, sizeof(err)) < 0) {
		print_error("master %c config: %s\n", s->name, err);
		return -1;
	}
	/* The strings must outlive the master: ours, not the environment's. */
	cfg.data_dir = s->master_dir;
	cfg.jwt_secret = JWT_SECRET;
	cfg.cluster_secret = CLUSTER_SECRET;
	if (efs_master_start(&s->master, &cfg, err, sizeof(err)) < 0) {
		print_error("master %c: %s\n", s->name, err);
		return -1;
	}
	s->master_up = true;
	return 0;
}

static int start_worker(struct side *s)
{
	struct efs_worker_config cfg;
	char err[256] = "";
	char url[64];
	set_u("WORKER_PORT", s->worker_port);
	set("WORKER_DATA_DIR", s->worker_dir);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", s->worker_port);
	set("WORKER_ADVERTISE_URL", url);
	set("MASTER_URL", s->master_url);
	if (efs_worker_config_load(&cfg, err, sizeof(err)) < 0) {
		print_error("worker %c config: %s\n", s->name, err);
		return -1;
	}
	cfg.data_dir = s->worker_dir;
	cfg.cluster_secret = CLUSTER_SECRET;
	if (efs_worker_start(&s->worker, &cfg, err, sizeof(err)) < 0) {
		print_error("worker %c: %s\n", s->name, err);
		return -1;
	}
	s->worker_up = true;
	return 0;
}

/* Waits until @s's master counts its worker alive. */
static int wait_registered(struct side *s)
{
	for (int64_t start = efs_mono_ms(); efs_mono_ms() - start < WAIT_MS;) {
		size_t alive = 0, total = 0;
		if (efs_registry_count(&s->master.registry, &alive, &total) == 0 && alive == 1)
			return 0;
		usleep(20 * 1000);
	}
	print_error("worker %c never registered\n", s->name);
	return -1;
}

/*
 * Starts @s's master, then its worker. A port free_port() found free may be
 * taken before we bind it (another master's outgoing connection, a test
 * running alongside us: the CI runs the black-box suite meanwhile), so a
 * start that fails is retried on fresh ports, a few times.
 */
static int start_side(struct side *s)
{
	for (int attempt = 0;; attempt++) {
		if (start_master(s) == 0)
			break;
		if (attempt == 4 || !(s->master_port = free_port()))
			return -1;
		snprintf(s->master_url, sizeof(s->master_url), "http://127.0.0.1:%u",
			 s->master_port);
		print_message("master %c: retrying on port %u\n", s->name, s->master_port);
	}
	for (int attempt = 0;; attempt++) {
		if (start_worker(s) == 0)
			return 0;
		if (attempt == 4 || !(s->worker_port = free_port()))
			return -1;
		print_message("worker %c: retrying on port %u\n", s->name, s->worker_port);
	}
}

static void stop_side(struct side *s)
{
	if (s->worker_up)
		efs_worker_stop(&s->worker);
	s->worker_up = false;
	if (s->master_up)
		efs_master_stop(&s->master);
	s->master_up = false;
	free(s->token);
	s->token = NULL;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	*state = f;
	snprintf(f->base, sizeof(f->base), "/tmp/efs-two-masters-XXXXXX");
	if (!mkdtemp(f->base) || efs_http_client_new(&f->http) < 0)
		return -1;
	set("MASTER_HOST", "127.0.0.1");
	set("WORKER_HOST", "127.0.0.1");
	set("JWT_SECRET", JWT_SECRET);
	set("CLUSTER_SECRET", CLUSTER_SECRET);
	set("REPLICATION_FACTOR", "1");
	set_u("CHUNK_SIZE", CHUNK_SIZE);
	set("HEARTBEAT_INTERVAL_MS", "100");
	set("CHUNK_CACHE_SIZE", "0");
	unsetenv("LOG_LEVEL");
	unsetenv("DATABASE_URL");
	unsetenv("REDIS_ADDR");
	unsetenv("WORKER_CAPACITY_BYTES");
	for (int i = 0; i < 2; i++) {
		struct side *s = &f->side[i];
		s->name = (char)('A' + i);
		s->master_port = free_port();
		s->worker_port = free_port();
		if (!s->master_port || !s->worker_port)
			return -1;
		snprintf(s->master_dir, sizeof(s->master_dir), "%s/master-%c", f->base, s->name);
		snprintf(s->worker_dir, sizeof(s->worker_dir), "%s/worker-%c", f->base, s->name);
		snprintf(s->master_url, sizeof(s->master_url), "http://127.0.0.1:%u",
			 s->master_port);
		if (efs_jwt_issue(JWT_SECRET, i ? "bob" : "alice", 3600, (int64_t)time(NULL),
				  &s->token) < 0)
			return -1;
	}
	for (int i = 0; i < 2; i++)
		if (start_side(&f->side[i]) < 0)
			return -1;
	for (int i = 0; i < 2; i++)
		if (wait_registered(&f->side[i]) < 0)
			return -1;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (!f)
		return 0;
	for (int i = 0; i < 2; i++)
		stop_side(&f->side[i]);
	efs_http_client_free(f->http);
	if (f->base[0])
		nftw(f->base, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* Uploads @len bytes through @s's master; the new file's id in @file_id. */
static void upload(struct fixture *f, struct side *s, const char *name, const unsigned char *data,
		   size_t len, char *file_id)
{
	struct efs_http_call call;
	char url[160];
	snprintf(url, sizeof(url), "%s/api/v1/files/upload?name=%s", s->master_url, name);
	efs_http_call_init(&call, "POST", url);
	call.bearer = s->token;
	call.content_type = "application/octet-stream";
	call.body = data;
	call.body_len = len;
	assert_int_equal(efs_http_call_run(f->http, &call), 0);
	if (call.status != 201)
		print_error("upload to %c: %ld %s\n", s->name, call.status,
			    call.resp.data ? call.resp.data : "");
	assert_int_equal(call.status, 201);
	json_t *j = json_loadb(call.resp.data, call.resp.len, 0, NULL);
	assert_non_null(j);
	const char *id = json_string_value(json_object_get(j, "file_id"));
	assert_non_null(id);
	assert_true(strlen(id) <= EFS_ID_MAX);
	efs_strlcpy(file_id, id, EFS_ID_MAX + 1);
	json_decref(j);
	efs_http_call_release(&call);
}

/* Downloads @file_id through @s's master: answers @want_status and, when
 * 200, exactly @data. */
static void download(struct fixture *f, struct side *s, const char *file_id, long want_status,
		     const unsigned char *data, size_t len)
{
	struct efs_http_call call;
	char url[160];
	snprintf(url, sizeof(url), "%s/api/v1/files/%s/download", s->master_url, file_id);
	efs_http_call_init(&call, "GET", url);
	call.bearer = s->token;
	call.resp_cap = len + 4096; /* room for an error body */
	assert_int_equal(efs_http_call_run(f->http, &call), 0);
	assert_int_equal(call.status, want_status);
	if (want_status == 200) {
		assert_int_equal(call.resp.len, len);
		assert_memory_equal(call.resp.data, data, len);
	}
	efs_http_call_release(&call);
}

static unsigned char *make_data(size_t len, unsigned seed)
{
	unsigned char *d = malloc(len ? len : 1);
	assert_non_null(d);
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		d[i] = (unsigned char)(x >> 16);
	}
	return d;
}

/* Both masters store and serve files; each knows only its own. */
static void test_both_masters_store_and_serve(void **state)
{
	struct fixture *f = *state;
	struct side *a = &f->side[0], *b = &f->side[1];
	size_t small = 1000, large = 5 * CHUNK_SIZE + 123;
	unsigned char *data[2][2];
	char ids[2][2][EFS_ID_MAX + 1];

	for (int i = 0; i < 2; i++) {
		data[i][0] = make_data(small, 10 + (unsigned)i);
		data[i][1] = make_data(large, 20 + (unsigned)i);
		upload(f, &f->side[i], "small.bin", data[i][0], small, ids[i][0]);
		upload(f, &f->side[i], "large.bin", data[i][1], large, ids[i][1]);
	}
	for (int i = 0; i < 2; i++) {
		download(f, &f->side[i], ids[i][0], 200, data[i][0], small);
		download(f, &f->side[i], ids[i][1], 200, data[i][1], large);
		/* The other master's files are not in this one's store. */
		download(f, &f->side[i], ids[!i][1], 404, NULL, 0);
	}
	/* Each master's chunks went to its own worker. */
	for (int i = 0; i < 2; i++) {
		struct efs_file_info info;
		assert_int_equal(efs_meta_file_get(f->side[i].master.meta, ids[i][1], &info), 0);
		assert_int_equal(info.chunk_count, 6);
		assert_int_equal(efs_meta_file_get(f->side[!i].master.meta, ids[i][1], &info),
				 -ENOENT);
	}
	/* Each master's file cache (its local tier) holds its own downloads
	 * only: the other master's file is not found through it. */
	for (int i = 0; i < 2; i++) {
		struct efs_file_info info;
		assert_int_equal(
		    efs_cache_file_get(f->side[i].master.cache, ids[i][1], &info, NULL), 0);
		assert_string_equal(info.file_id, ids[i][1]);
		assert_int_equal(
		    efs_cache_file_get(f->side[!i].master.cache, ids[i][1], &info, NULL), -ENOENT);
	}
	/* Each master called its worker on its own client. */
	assert_ptr_not_equal(a->master.http_client, b->master.http_client);
	assert_true(efs_http_client_connections_opened(a->master.http_client) >= 1);
	assert_true(efs_http_client_connections_opened(b->master.http_client) >= 1);
	for (int i = 0; i < 2; i++)
		for (int k = 0; k < 2; k++)
			free(data[i][k]);
}

/* A token verified by one master is in that master's cache only. */
static void test_token_caches_are_per_master(void **state)
{
	struct fixture *f = *state;
	struct side *a = &f->side[0], *b = &f->side[1];
	int64_t now = (int64_t)time(NULL);
	unsigned char *d = make_data(100, 3);
	char id[EFS_ID_MAX + 1];

	upload(f, a, "a.bin", d, 100, id);
	assert_true(efs_token_cache_holds(a->master.tokens, JWT_SECRET, a->token, now));
	assert_false(efs_token_cache_holds(b->master.tokens, JWT_SECRET, a->token, now));
	upload(f, b, "b.bin", d, 100, id);
	assert_true(efs_token_cache_holds(b->master.tokens, JWT_SECRET, b->token, now));
	assert_false(efs_token_cache_holds(a->master.tokens, JWT_SECRET, b->token, now));
	free(d);
}

/* Waits until no upload of @m holds any of its budget; 0 or -1. */
static int wait_budget_empty(struct efs_master *m)
{
	for (int64_t start = efs_mono_ms(); efs_mono_ms() - start < WAIT_MS;) {
		if (efs_upload_budget_used(&m->upload_budget) == 0)
			return 0;
		usleep(5 * 1000);
	}
	return -1;
}

/* One master's in-flight write guard, placement load and upload budget
 * are not the other's. */
static void test_write_guard_load_and_budget_are_per_master(void **state)
{
	struct fixture *f = *state;
	struct efs_master *a = &f->side[0].master, *b = &f->side[1].master;
	const char *chunk_id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

	efs_chunk_backend_pin(a->chunks, chunk_id);
	assert_true(efs_chunk_backend_pinned(a->chunks, chunk_id));
	assert_false(efs_chunk_backend_pinned(b->chunks, chunk_id));
	efs_chunk_backend_unpin(a->chunks, chunk_id);
	assert_false(efs_chunk_backend_pinned(a->chunks, chunk_id));

	efs_placement_load_add(&a->placement, "some-worker", 5);
	assert_int_equal(efs_placement_load(&a->placement, "some-worker"), 5);
	assert_int_equal(efs_placement_load(&b->placement, "some-worker"), 0);
	efs_placement_load_add(&a->placement, "some-worker", -5);

	/* Master A's budget used up: its uploads store one chunk at a time,
	 * B's budget is untouched, and uploads through either still work. */
	size_t len = 6 * CHUNK_SIZE;
	unsigned char *d = make_data(len, 7);
	char ids[2][EFS_ID_MAX + 1];
	atomic_store(&a->upload_budget.used, a->upload_budget.limit);
	upload(f, &f->side[0], "full.bin", d, len, ids[0]);
	assert_int_equal(wait_budget_empty(b), 0);
	upload(f, &f->side[1], "free.bin", d, len, ids[1]);
	/* B's upload gives back what it took (when its request is freed,
	 * just after the reply), to B's budget, not A's. */
	assert_int_equal(wait_budget_empty(b), 0);
	assert_int_equal(efs_upload_budget_used(&a->upload_budget), a->upload_budget.limit);
	atomic_store(&a->upload_budget.used, 0);
	download(f, &f->side[0], ids[0], 200, d, len);
	download(f, &f->side[1], ids[1], 200, d, len);
	free(d);
}

/* LIFECYCLE R2: the in-flight table fails safe. A write begun while
 * every slot is taken makes every chunk count as being written (reports
 * this master answers then delete nothing) until that write ends; before,
 * it was silently not guarded. */
static void test_write_guard_fails_safe_when_full(void **state)
{
	struct fixture *f = *state;
	struct efs_chunk_io *io = efs_chunk_workers_io(f->side[0].master.chunks);
	char id[65];
	const char *other = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

	for (int i = 0; i < EFS_CHUNK_WRITING_SLOTS; i++) {
		snprintf(id, sizeof(id), "%064x", i);
		efs_chunk_writing_begin(io, id);
	}
	assert_false(efs_chunk_is_writing(io, other)); /* full, but all guarded */
	snprintf(id, sizeof(id), "%064x", EFS_CHUNK_WRITING_SLOTS); /* no slot left */
	efs_chunk_writing_begin(io, id);
	assert_true(efs_chunk_is_writing(io, id));
	assert_true(efs_chunk_is_writing(io, other)); /* fail safe: everything kept */
	efs_chunk_writing_end(io, id);
	assert_false(efs_chunk_is_writing(io, id));
	assert_false(efs_chunk_is_writing(io, other));
	for (int i = 0; i < EFS_CHUNK_WRITING_SLOTS; i++) {
		snprintf(id, sizeof(id), "%064x", i);
		assert_true(efs_chunk_is_writing(io, id));
		efs_chunk_writing_end(io, id);
		assert_false(efs_chunk_is_writing(io, id));
	}
}

int main(void)
{
	efs_log_set_level(EFS_LOG_WARN);
	if (efs_http_client_global_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_both_masters_store_and_serve),
	    cmocka_unit_test(test_token_caches_are_per_master),
	    cmocka_unit_test(test_write_guard_load_and_budget_are_per_master),
	    cmocka_unit_test(test_write_guard_fails_safe_when_full),
	};
	int failed = cmocka_run_group_tests(tests, setup, teardown);
	efs_http_client_global_cleanup();
	return failed;
}
