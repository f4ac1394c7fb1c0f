/* SPDX-License-Identifier: MIT */
/* test_worker_context.c - unit tests of the worker context
 * (src/worker/context.h), the one thing the worker's threads share: the
 * lost-chunk queue and its cap, the registration state as other threads
 * see it, the space measure over a real store; and the worker's include
 * graph: no thread module (heartbeat, report, scrub) includes worker.h or
 * another thread module, only the store's files include its private
 * header, and no include cycle exists in src/worker/. Run from the
 * repository root (as `make unit` does). */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "echofs/http_client.h"
#include "worker/context.h"

#define ID_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void test_lost_queue_cap(void **state)
{
	struct efs_worker_config cfg = {0};
	struct efs_worker_ctx ctx;
	assert_int_equal(efs_worker_ctx_init(&ctx, &cfg, NULL), 0);
	for (int i = 0; i < EFS_LOST_MAX + 10; i++)
		efs_lost_queue_push(&ctx.lost, ID_A);
	assert_int_equal(ctx.lost.count, EFS_LOST_MAX);
	assert_string_equal(ctx.lost.ids[EFS_LOST_MAX - 1], ID_A);
	efs_worker_ctx_release(&ctx);
}

static void test_status_and_master(void **state)
{
	struct efs_worker_config cfg = {.master_count = 2};
	struct efs_worker_ctx ctx;
	char id[EFS_ID_MAX + 1] = "junk";
	bool registered = true;

	snprintf(cfg.master_urls[0], sizeof(cfg.master_urls[0]), "http://m1:1");
	snprintf(cfg.master_urls[1], sizeof(cfg.master_urls[1]), "http://m2:2");
	assert_int_equal(efs_worker_ctx_init(&ctx, &cfg, NULL), 0);
	/* Before the heartbeat registers: no id, not registered, no hook. */
	efs_worker_ctx_status(&ctx, id, &registered);
	assert_string_equal(id, "");
	assert_false(registered);
	assert_null(ctx.after_beat);
	assert_false(atomic_load(&ctx.full_report_due));
	assert_string_equal(efs_worker_ctx_master_url(&ctx), "http://m1:1");

	/* What the heartbeat writes is what other threads read. */
	snprintf(ctx.worker_id, sizeof(ctx.worker_id), "w-17");
	ctx.registered = true;
	ctx.master_index = 1;
	efs_worker_ctx_status(&ctx, id, &registered);
	assert_string_equal(id, "w-17");
	assert_true(registered);
	assert_string_equal(efs_worker_ctx_master_url(&ctx), "http://m2:2");
	efs_worker_ctx_release(&ctx);
}

static void test_space_with_capacity(void **state)
{
	char dir[] = "/tmp/echofs-test-worker-ctx-XXXXXX", err[256];
	struct efs_store *store;
	struct efs_store_writer *w;
	struct efs_worker_space space;
	struct efs_worker_ctx ctx;
	assert_non_null(mkdtemp(dir));
	struct efs_worker_config cfg = {.data_dir = dir, .capacity_bytes = 1 << 20};

	assert_int_equal(efs_store_open(dir, cfg.capacity_bytes, &store, err, sizeof(err)), 0);
	assert_int_equal(efs_worker_ctx_init(&ctx, &cfg, store), 0);
	assert_int_equal(efs_store_write_begin(store, ID_A, 1000, 0, &w), 0);
	char payload[1000] = {0};
	assert_int_equal(efs_store_write(w, payload, sizeof(payload)), 0);
	assert_int_equal(efs_store_write_commit(w, false, 0), 0);

	assert_int_equal(efs_worker_ctx_space(&ctx, &space), 0);
	assert_int_equal(space.capacity_bytes, 1 << 20);
	assert_int_equal(space.chunk_count, 1);
	assert_true(space.free_bytes <= (1 << 20) - 1000);

	/* Without a capacity the filesystem's size is reported. */
	cfg.capacity_bytes = 0;
	assert_int_equal(efs_worker_ctx_space(&ctx, &space), 0);
	assert_true(space.capacity_bytes > 0);
	assert_true(space.free_bytes <= space.capacity_bytes);
	efs_worker_ctx_release(&ctx);
	efs_store_close(store);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* jansson's allocator for test_post_out_of_memory: fails every allocation. */
static void *failing_malloc(size_t size)
{
	return NULL;
}

/* Out of memory while building a heartbeat (json_pack or json_dumps
 * failing) must leave the call initialised: the heartbeat releases it on
 * every path. Before, -ENOMEM returned before efs_http_call_init and the
 * release freed whatever the stack held. */
static void test_post_out_of_memory(void **state)
{
	struct efs_worker_config cfg = {.master_count = 1};
	struct efs_worker_ctx ctx;
	struct efs_http_call call;

	snprintf(cfg.master_urls[0], sizeof(cfg.master_urls[0]), "http://127.0.0.1:1");
	assert_int_equal(efs_worker_ctx_init(&ctx, &cfg, NULL), 0);
	/* A failed json_pack: NULL body. */
	memset(&call, 0xa5, sizeof(call));
	assert_int_equal(efs_worker_ctx_post(&ctx, &call, "/api/v1/workers/register", NULL),
			 -ENOMEM);
	efs_http_call_release(&call);
	/* A failed json_dumps. */
	json_t *body = json_pack("{s:s}", "url", "http://127.0.0.1:2");
	assert_non_null(body);
	json_set_alloc_funcs(failing_malloc, free);
	memset(&call, 0xa5, sizeof(call));
	int r = efs_worker_ctx_post(&ctx, &call, "/api/v1/workers/register", body);
	json_set_alloc_funcs(malloc, free);
	assert_int_equal(r, -ENOMEM);
	efs_http_call_release(&call);
	efs_worker_ctx_release(&ctx);
}

/* ---- the include graph of src/worker/ ---------------------------------- */

#define MAX_FILES 64
#define MAX_INCLUDES 16

struct source {
	char name[64];			 /* e.g. "heartbeat.c" */
	char includes[MAX_INCLUDES][64]; /* the worker headers it includes */
	size_t include_count;
};

static size_t load_sources(struct source *files)
{
	DIR *d = opendir("src/worker");
	assert_non_null(d); /* run from the repository root */
	struct dirent *e;
	size_t n = 0;
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (len < 3 || len >= 64 || e->d_name[len - 2] != '.' ||
		    (e->d_name[len - 1] != 'c' && e->d_name[len - 1] != 'h'))
			continue;
		assert_true(n < MAX_FILES);
		struct source *f = &files[n++];
		memset(f, 0, sizeof(*f));
		memcpy(f->name, e->d_name, len + 1);
		char path[128], line[512];
		snprintf(path, sizeof(path), "src/worker/%s", e->d_name);
		FILE *in = fopen(path, "r");
		assert_non_null(in);
		while (fgets(line, sizeof(line), in)) {
			const char *p = strstr(line, "#include \"worker/");
			if (p != line)
				continue;
			p += strlen("#include \"worker/");
			const char *end = strchr(p, '"');
			assert_non_null(end);
			assert_true(f->include_count < MAX_INCLUDES && end - p < 64);
			memcpy(f->includes[f->include_count], p, (size_t)(end - p));
			f->includes[f->include_count++][end - p] = '\0';
		}
		fclose(in);
	}
	closedir(d);
	return n;
}

static bool includes(const struct source *f, const char *header)
{
	for (size_t i = 0; i < f->include_count; i++)
		if (strcmp(f->includes[i], header) == 0)
			return true;
	return false;
}

static bool is_thread_module(const char *name)
{
	static const char *const modules[] = {"heartbeat.", "report.", "scrub."};
	for (size_t i = 0; i < 3; i++)
		if (strncmp(name, modules[i], strlen(modules[i])) == 0)
			return true;
	return false;
}

/* Whether @a and @b name one module: "heartbeat.c" and "heartbeat.h" do;
 * the store's files (store.h, store_internal.h, store_commit.c ...) are
 * one module. */
static bool same_module(const char *a, const char *b)
{
	size_t la = strcspn(a, "._"), lb = strcspn(b, "._");
	return la == lb && strncmp(a, b, la) == 0;
}

/* Depth-first search over modules (a module includes another when one of
 * its files includes the other's header); mark: 1 on the path, 2 done. */
static bool has_cycle(const struct source *files, size_t n, size_t at, int *mark)
{
	for (size_t k = 0; k < n; k++) /* one mark per module */
		if (same_module(files[k].name, files[at].name) && mark[k])
			return mark[k] == 1;
	for (size_t k = 0; k < n; k++)
		if (same_module(files[k].name, files[at].name))
			mark[k] = 1;
	for (size_t k = 0; k < n; k++) {
		if (!same_module(files[k].name, files[at].name))
			continue;
		for (size_t i = 0; i < files[k].include_count; i++) {
			for (size_t next = 0; next < n; next++) {
				if (strcmp(files[next].name, files[k].includes[i]) != 0 ||
				    same_module(files[next].name, files[at].name))
					continue;
				if (has_cycle(files, n, next, mark))
					return true;
			}
		}
	}
	for (size_t k = 0; k < n; k++)
		if (same_module(files[k].name, files[at].name))
			mark[k] = 2;
	return false;
}

static void test_include_graph(void **state)
{
	struct source files[MAX_FILES];
	int mark[MAX_FILES] = {0};
	size_t n = load_sources(files);
	bool have_context = false;
	for (size_t i = 0; i < n; i++)
		have_context |= strcmp(files[i].name, "context.h") == 0;
	assert_true(have_context);

	for (size_t i = 0; i < n; i++) {
		const struct source *f = &files[i];
		if (is_thread_module(f->name)) {
			/* A thread sees the context and the store, not the worker
			 * or another thread. */
			assert_false(includes(f, "worker.h"));
			assert_false(includes(f, "api.h"));
			for (size_t j = 0; j < f->include_count; j++) {
				if (is_thread_module(f->includes[j])) {
					char own[64];
					snprintf(own, sizeof(own), "%.*s.h",
						 (int)(strchr(f->name, '.') - f->name), f->name);
					assert_string_equal(f->includes[j], own);
				}
			}
		}
		if (includes(f, "store_internal.h"))
			assert_true(strncmp(f->name, "store", 5) == 0);
		if (strcmp(f->name, "context.h") == 0 || strcmp(f->name, "context.c") == 0) {
			assert_false(includes(f, "worker.h"));
			assert_false(includes(f, "heartbeat.h"));
			assert_false(includes(f, "report.h"));
			assert_false(includes(f, "scrub.h"));
		}
	}
	for (size_t i = 0; i < n; i++)
		assert_false(has_cycle(files, n, i, mark));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lost_queue_cap),
	    cmocka_unit_test(test_status_and_master),
	    cmocka_unit_test(test_space_with_capacity),
	    cmocka_unit_test(test_post_out_of_memory),
	    cmocka_unit_test(test_include_graph),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
