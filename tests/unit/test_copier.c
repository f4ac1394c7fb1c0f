/* SPDX-License-Identifier: MIT */
/* test_copier.c - unit tests of the pushed-copy queue (src/worker/copier.h)
 * over a real store: its bound (a full queue refuses busy, finished
 * results count until taken), a chunk held when the job starts answers 204
 * without a fetch, an unreachable source 502, a stale lease epoch 409, and
 * a stop with jobs queued; pushed deletes on their own thread (204, 404,
 * 412, a bounded queue) that never wait behind stalled copies, and a
 * copy whose deadline passed while it was queued answers 504 without a
 * fetch. The fetch and store of a real copy are the
 * black-box tests' (test_grpc.py). */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "echofs/control_plane.h"
#include "echofs/util.h"
#include "worker/context.h"
#include "worker/fence.h"
/* the module itself, to reach copy_run() */
#include "../../src/worker/copier.c"

#define ID_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
/* Nothing listens on port 1: a fetch fails at once (connection refused). */
#define NOWHERE "http://127.0.0.1:1"

struct fixture {
	char dir[64];
	struct efs_worker_config cfg;
	struct efs_store *store;
	struct efs_fence fence;
	struct efs_worker_ctx ctx;
	struct efs_copier copier;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];
	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/echofs-test-copier-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->cfg.data_dir = f->dir;
	f->cfg.capacity_bytes = 1 << 20;
	f->cfg.cluster_secret = "secret";
	assert_int_equal(efs_store_open(f->dir, f->cfg.capacity_bytes, &f->store, err, sizeof(err)),
			 0);
	assert_int_equal(efs_fence_open(&f->fence, f->dir), 0);
	assert_int_equal(efs_worker_ctx_init(&f->ctx, &f->cfg, f->store), 0);
	f->ctx.fence = &f->fence;
	assert_int_equal(efs_copier_start(&f->copier, &f->ctx), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	efs_copier_stop(&f->copier);
	efs_worker_ctx_release(&f->ctx);
	efs_fence_close(&f->fence);
	efs_store_close(f->store);
	nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static struct efs_copy_request request(uint64_t instruction_id, const char *chunk_id)
{
	struct efs_copy_request req = {
	    .instruction_id = instruction_id, .stream_generation = 7, .size = 1000};
	efs_strlcpy(req.chunk_id, chunk_id, sizeof(req.chunk_id));
	efs_strlcpy(req.from_url, NOWHERE, sizeof(req.from_url));
	return req;
}

/* Takes @want results (waiting up to 10 s for them) into @out. */
static void take_all(struct efs_copier *cp, struct efs_copy_result *out, size_t want)
{
	size_t got = 0;
	for (int i = 0; i < 1000 && got < want; i++) {
		got += efs_copier_take(cp, out + got, want - got);
		if (got < want)
			usleep(10000);
	}
	assert_int_equal(got, want);
}

static void chunk_id_of(unsigned i, char *out)
{
	snprintf(out, 65, "%064x", i + 1);
}

static void test_full_queue_refuses_busy_until_results_are_taken(void **state)
{
	struct fixture *f = *state;
	struct efs_copy_result done[EFS_COPIER_JOBS_MAX];
	char id[65];

	for (unsigned i = 0; i < EFS_COPIER_JOBS_MAX; i++) {
		chunk_id_of(i, id);
		struct efs_copy_request req = request(100 + i, id);
		assert_int_equal(efs_copier_submit(&f->copier, &req), 0);
	}
	/* Queued, running or finished but not taken: all count. */
	chunk_id_of(99, id);
	struct efs_copy_request extra = request(999, id);
	assert_int_equal(efs_copier_submit(&f->copier, &extra), -EBUSY);
	assert_int_equal(atomic_load(&f->copier.refused), 1);

	take_all(&f->copier, done, EFS_COPIER_JOBS_MAX);
	uint64_t seen = 0;
	for (unsigned i = 0; i < EFS_COPIER_JOBS_MAX; i++) {
		assert_int_equal(done[i].status, 502); /* the source is unreachable */
		assert_int_equal(done[i].stream_generation, 7);
		assert_in_range(done[i].instruction_id, 100, 100 + EFS_COPIER_JOBS_MAX - 1);
		seen |= 1ULL << (done[i].instruction_id - 100);
	}
	assert_int_equal(seen, (1ULL << EFS_COPIER_JOBS_MAX) - 1); /* each once */
	assert_int_equal(atomic_load(&f->copier.running), 0);
	assert_int_equal(atomic_load(&f->copier.stored), 0);
	/* Taken: room again. */
	assert_int_equal(efs_copier_submit(&f->copier, &extra), 0);
	take_all(&f->copier, done, 1);
	assert_int_equal(done[0].instruction_id, 999);
}

static void test_chunk_held_when_the_job_starts_answers_204(void **state)
{
	struct fixture *f = *state;
	struct efs_store_writer *w;
	struct efs_copy_result done;
	char payload[1000] = {0};

	assert_int_equal(efs_store_write_begin(f->store, ID_A, sizeof(payload), 0, &w), 0);
	assert_int_equal(efs_store_write(w, payload, sizeof(payload)), 0);
	assert_int_equal(efs_store_write_commit(w, false, 0), 0);
	struct efs_copy_request req = request(5, ID_A);
	assert_int_equal(efs_copier_submit(&f->copier, &req), 0);
	take_all(&f->copier, &done, 1);
	/* 204 although the source is unreachable: nothing was fetched */
	assert_int_equal(done.status, 204);
	assert_int_equal(done.instruction_id, 5);
	assert_int_equal(atomic_load(&f->copier.held), 1);
}

static void test_epoch_superseded_while_queued_is_refused(void **state)
{
	struct fixture *f = *state;
	struct efs_copy_result done;
	struct efs_copy_request req = request(6, ID_A);
	req.lease_epoch = 3;
	assert_int_equal(efs_fence_admit(&f->fence, 4), 0); /* a newer master's */
	assert_int_equal(efs_copier_submit(&f->copier, &req), 0);
	take_all(&f->copier, &done, 1);
	assert_int_equal(done.status, 409);
}

static void test_stop_with_jobs_queued(void **state)
{
	struct fixture *f = *state;
	char id[65];
	for (unsigned i = 0; i < EFS_COPIER_JOBS_MAX; i++) {
		chunk_id_of(i, id);
		struct efs_copy_request req = request(i, id);
		assert_int_equal(efs_copier_submit(&f->copier, &req), 0);
	}
	efs_copier_stop(&f->copier); /* joins, frees what is left (ASan: no leak) */
	struct efs_copy_request req = request(1, ID_A);
	struct efs_copy_result done;
	assert_int_equal(efs_copier_submit(&f->copier, &req), -ESHUTDOWN);
	assert_int_equal(efs_copier_take(&f->copier, &done, 1), 0);
	efs_copier_stop(&f->copier); /* twice is fine (teardown) */
}

static void put_chunk(struct fixture *f, const char *chunk_id)
{
	struct efs_store_writer *w;
	char payload[1000] = {0};
	assert_int_equal(efs_store_write_begin(f->store, chunk_id, sizeof(payload), 0, &w), 0);
	assert_int_equal(efs_store_write(w, payload, sizeof(payload)), 0);
	assert_int_equal(efs_store_write_commit(w, false, 0), 0);
}

static struct efs_delete_request delete_request(uint64_t instruction_id, const char **ids,
						size_t n, int64_t unmodified_for_ms)
{
	struct efs_delete_request req = {.instruction_id = instruction_id,
					 .stream_generation = 7,
					 .chunk_ids = ids,
					 .chunk_count = n,
					 .unmodified_for_ms = unmodified_for_ms};
	return req;
}

static void test_pushed_deletes_run_on_the_copier_and_answer_as_http(void **state)
{
	struct fixture *f = *state;
	struct efs_copy_result done;
	uint64_t length;
	uint32_t flags;
	int64_t mtime_ms;
	const char *ids[] = {ID_A};

	put_chunk(f, ID_A);
	/* written just now: kept under an hour's X-Unmodified-For-Ms */
	struct efs_delete_request req = delete_request(1, ids, 1, 3600000);
	assert_int_equal(efs_copier_submit_delete(&f->copier, &req), 0);
	take_all(&f->copier, &done, 1);
	assert_int_equal(done.instruction_id, 1);
	assert_int_equal(done.status, 412);
	assert_int_equal(efs_store_stat(f->store, ID_A, &length, &flags, &mtime_ms), 0);

	usleep(5000); /* unwritten for more than 0 ms */
	req = delete_request(2, ids, 1, 0);
	assert_int_equal(efs_copier_submit_delete(&f->copier, &req), 0);
	take_all(&f->copier, &done, 1);
	assert_int_equal(done.instruction_id, 2);
	assert_int_equal(done.stream_generation, 7);
	assert_int_equal(done.status, 204);
	assert_int_equal(efs_store_stat(f->store, ID_A, &length, &flags, &mtime_ms), -ENOENT);
	assert_int_equal(atomic_load(&f->copier.deleted), 1);

	/* idempotent: gone already */
	req = delete_request(3, ids, 1, 0);
	assert_int_equal(efs_copier_submit_delete(&f->copier, &req), 0);
	take_all(&f->copier, &done, 1);
	assert_int_equal(done.status, 404);
	assert_int_equal(atomic_load(&f->copier.deleted), 1);

	req = delete_request(4, ids, 0, 0);
	assert_int_equal(efs_copier_submit_delete(&f->copier, &req), -EINVAL);
}

static void test_full_delete_queue_refuses_busy(void **state)
{
	struct fixture *f = *state;
	struct efs_copy_result done[EFS_COPIER_DELETES_MAX];
	const char *ids[] = {ID_A};

	for (unsigned i = 0; i < EFS_COPIER_DELETES_MAX; i++) {
		struct efs_delete_request req = delete_request(i, ids, 1, 0);
		assert_int_equal(efs_copier_submit_delete(&f->copier, &req), 0);
	}
	struct efs_delete_request extra = delete_request(999, ids, 1, 0);
	assert_int_equal(efs_copier_submit_delete(&f->copier, &extra), -EBUSY);
	assert_int_equal(atomic_load(&f->copier.deletes_refused), 1);
	/* The copies' bound is their own: a copy is still taken. */
	struct efs_copy_request copy = request(1000, ID_A);
	assert_int_equal(efs_copier_submit(&f->copier, &copy), 0);
	take_all(&f->copier, done, EFS_COPIER_DELETES_MAX);
	take_all(&f->copier, done, 1);
	assert_int_equal(efs_copier_submit_delete(&f->copier, &extra), 0);
	take_all(&f->copier, done, 1);
}

/* A loopback port that accepts connections (the kernel's backlog) and
 * never answers: a fetch from it stalls. */
static int silent_listener(char *url, size_t size)
{
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
	snprintf(url, size, "http://127.0.0.1:%u", (unsigned)ntohs(addr.sin_port));
	return fd;
}

static void test_delete_does_not_wait_behind_stalled_copies(void **state)
{
	struct fixture *f = *state;
	struct efs_copy_result done[EFS_COPIER_THREADS + 1];
	char url[64], id[65];
	const char *ids[] = {ID_A};
	int fd = silent_listener(url, sizeof(url));

	/* Every copy thread busy on a fetch that stalls (EFS_COPY_STALL_S). */
	for (unsigned i = 0; i < EFS_COPIER_THREADS; i++) {
		chunk_id_of(i, id);
		struct efs_copy_request req = request(100 + i, id);
		efs_strlcpy(req.from_url, url, sizeof(req.from_url));
		assert_int_equal(efs_copier_submit(&f->copier, &req), 0);
	}
	while (atomic_load(&f->copier.running) > 0 && f->copier.queue)
		usleep(1000); /* both taken by a thread */
	put_chunk(f, ID_A);
	usleep(5000); /* unwritten for more than 0 ms */
	struct efs_delete_request del = delete_request(1, ids, 1, 0);
	assert_int_equal(efs_copier_submit_delete(&f->copier, &del), 0);
	/* The delete's Ack comes first, the stalled copies' (502) after. */
	take_all(&f->copier, done, 1);
	assert_int_equal(done[0].instruction_id, 1);
	assert_int_equal(done[0].status, 204);
	take_all(&f->copier, done, EFS_COPIER_THREADS);
	for (unsigned i = 0; i < EFS_COPIER_THREADS; i++)
		assert_int_equal(done[i].status, 502);
	close(fd);
}

static void test_copy_past_its_deadline_when_it_starts_answers_504(void **state)
{
	struct fixture *f = *state;
	/* copy_run() as a copier thread calls it, for a job that was handed
	 * over longer than the deadline ago: nothing fetched (the source is
	 * unreachable, which would answer 502). */
	struct efs_copy_request req = request(8, ID_A);
	assert_int_equal(copy_run(&f->copier, &req, efs_mono_ms() - EFS_COPY_DEADLINE_MS - 1), 504);
	assert_int_equal(atomic_load(&f->copier.expired), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_full_queue_refuses_busy_until_results_are_taken,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_chunk_held_when_the_job_starts_answers_204, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_epoch_superseded_while_queued_is_refused, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_stop_with_jobs_queued, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pushed_deletes_run_on_the_copier_and_answer_as_http,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_full_delete_queue_refuses_busy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delete_does_not_wait_behind_stalled_copies, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_copy_past_its_deadline_when_it_starts_answers_504,
					    setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
