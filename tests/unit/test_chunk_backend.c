/* SPDX-License-Identifier: MIT */
/* test_chunk_backend.c - unit tests of the chunk backend interface
 * (src/master/chunk_backend.h): what the forwarders promise a backend
 * that fills only the required operations (put, get, remove, exists,
 * free), and the worker backend's pin/unpin through the interface.
 *
 * The data path of the worker backend itself (dedup, failover reads,
 * conditional deletes) is covered black-box by tests/integration.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "master/chunk_backend.h"
#include "master/chunk_workers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *CHUNK_ID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/* A backend with the required operations only, recording its calls. */
struct fake {
	int puts, gets, removes, exists_calls;
	int64_t unmodified_for_ms;
	uint64_t lease_epoch;
	unsigned known_count;
	bool recorded;
	int *freed;
};

static int fake_put(void *impl, const struct efs_chunk_info *chunk, const void *stored,
		    const struct efs_replica *known, unsigned known_count, bool recorded,
		    struct efs_chunk_put_result *out)
{
	struct fake *f = impl;
	f->puts++;
	f->known_count = known_count;
	f->recorded = recorded;
	return 0; /* leaves @out as the forwarder set it */
}

static int fake_get(void *impl, const struct efs_chunk_info *chunk,
		    const struct efs_replica *known, unsigned known_count, struct efs_buf *out,
		    struct efs_buf *scratch)
{
	struct fake *f = impl;
	f->gets++;
	return -EIO;
}

static int fake_remove(void *impl, const char *chunk_id, const struct efs_replica *known,
		       unsigned known_count, int64_t unmodified_for_ms, uint64_t lease_epoch)
{
	struct fake *f = impl;
	f->removes++;
	f->unmodified_for_ms = unmodified_for_ms;
	f->lease_epoch = lease_epoch;
	return 2;
}

static int fake_exists(void *impl, const char *chunk_id, const struct efs_replica *known,
		       unsigned known_count)
{
	struct fake *f = impl;
	f->exists_calls++;
	return 1;
}

static void fake_free(void *impl)
{
	struct fake *f = impl;
	(*f->freed)++;
	free(f);
}

static const struct efs_chunk_backend_ops fake_ops = {
	.name = "fake",
	.put = fake_put,
	.get = fake_get,
	.remove = fake_remove,
	.exists = fake_exists,
	.free = fake_free,
};

static struct efs_chunk_backend *fake_new(int *freed)
{
	struct efs_chunk_backend *b = NULL;
	struct fake *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->freed = freed;
	assert_int_equal(efs_chunk_backend_new(&fake_ops, f, &b), 0);
	return b;
}

/* The required operations are forwarded with their arguments and results;
 * a put's result starts empty whatever the caller's struct held. */
static void test_required_operations_are_forwarded(void **state)
{
	int freed = 0;
	struct efs_chunk_backend *b = fake_new(&freed);
	struct fake *f = b->impl;
	struct efs_chunk_info chunk = {.size = 3, .stored_size = 3};
	struct efs_replica known[2];
	struct efs_chunk_put_result put;
	struct efs_buf out, scratch;

	memset(known, 0, sizeof(known));
	memcpy(chunk.chunk_id, CHUNK_ID, 65);
	memset(&put, 0xff, sizeof(put));
	assert_string_equal(efs_chunk_backend_name(b), "fake");
	assert_int_equal(efs_chunk_backend_put(b, &chunk, "abc", known, 2, true, &put), 0);
	assert_int_equal(f->puts, 1);
	assert_int_equal(f->known_count, 2);
	assert_true(f->recorded);
	assert_int_equal(put.location_count, 0);
	assert_false(put.sent);

	efs_buf_init(&out, SIZE_MAX);
	efs_buf_init(&scratch, SIZE_MAX);
	assert_int_equal(efs_chunk_backend_get(b, &chunk, NULL, 0, &out, &scratch), -EIO);
	assert_int_equal(f->gets, 1);
	efs_buf_release(&out);
	efs_buf_release(&scratch);

	assert_int_equal(efs_chunk_backend_remove(b, CHUNK_ID, known, 2, 1500, 7), 2);
	assert_int_equal(f->removes, 1);
	assert_int_equal(f->unmodified_for_ms, 1500);
	assert_int_equal(f->lease_epoch, 7);
	assert_int_equal(efs_chunk_backend_exists(b, CHUNK_ID, NULL, 0), 1);
	assert_int_equal(f->exists_calls, 1);

	efs_chunk_backend_free(b);
	assert_int_equal(freed, 1);
	efs_chunk_backend_free(NULL);
}

/* Optional operations a backend leaves NULL answer as documented: no
 * list and no health of its own (-ENOTSUP), pins are no-ops and nothing
 * is pinned. */
static void test_absent_optional_operations(void **state)
{
	int freed = 0;
	struct efs_chunk_backend *b = fake_new(&freed);
	struct efs_chunk_listed ids[4];
	size_t count = 7;
	struct efs_chunk_health health;

	char cursor[EFS_CHUNK_LIST_CURSOR_MAX] = "";
	assert_int_equal(efs_chunk_backend_list(b, cursor, 4, ids, &count), -ENOTSUP);
	assert_int_equal(count, 7);
	assert_int_equal(efs_chunk_backend_health(b, &health), -ENOTSUP);
	efs_chunk_backend_pin(b, CHUNK_ID);
	assert_false(efs_chunk_backend_pinned(b, CHUNK_ID));
	efs_chunk_backend_unpin(b, CHUNK_ID);
	assert_null(efs_chunk_workers_io(b));
	struct efs_replica rep = {.last_heartbeat_ms = 1};
	assert_false(efs_chunk_backend_shows_locations(b));
	assert_false(efs_chunk_backend_location_live(b, &rep));
	char why[64] = "x";
	assert_int_equal(efs_chunk_backend_writable(b, 3, why, sizeof(why)), 0);
	assert_string_equal(why, "");
	efs_chunk_backend_free(b);
	assert_int_equal(freed, 1);
}

/* The worker backend keeps pins in chunk_io's write guard: they nest, and
 * its transport is reachable for repair and the reports. */
static void test_worker_backend_pins_nest(void **state)
{
	struct efs_chunk_workers_config cfg = {
		.cluster_id = "test-cluster",
		.worker_dead_after_ms = 15000,
		.replication_factor = 3,
	};
	struct efs_chunk_backend *b = NULL;
	const char *other = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

	assert_int_equal(efs_chunk_workers_new(&cfg, &b), 0);
	assert_string_equal(efs_chunk_backend_name(b), "workers");
	assert_non_null(efs_chunk_workers_io(b));
	efs_chunk_backend_pin(b, CHUNK_ID);
	efs_chunk_backend_pin(b, CHUNK_ID);
	assert_true(efs_chunk_backend_pinned(b, CHUNK_ID));
	assert_false(efs_chunk_backend_pinned(b, other));
	efs_chunk_backend_unpin(b, CHUNK_ID);
	assert_true(efs_chunk_backend_pinned(b, CHUNK_ID));
	efs_chunk_backend_unpin(b, CHUNK_ID);
	assert_false(efs_chunk_backend_pinned(b, CHUNK_ID));
	/* Its locations are replicas a user sees: one whose worker never
	 * sent a heartbeat, or marked bad, cannot be read now. */
	assert_true(efs_chunk_backend_shows_locations(b));
	struct efs_replica rep = {.worker_id = "w1", .last_heartbeat_ms = 0};
	assert_false(efs_chunk_backend_location_live(b, &rep));
	/* No list: the workers report their chunks; health is the registry's. */
	size_t count = 0;
	struct efs_chunk_listed ids[1];
	char cursor[EFS_CHUNK_LIST_CURSOR_MAX] = "";
	assert_int_equal(efs_chunk_backend_list(b, cursor, 1, ids, &count), -ENOTSUP);
	efs_chunk_backend_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_required_operations_are_forwarded),
	    cmocka_unit_test(test_absent_optional_operations),
	    cmocka_unit_test(test_worker_backend_pins_nest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
