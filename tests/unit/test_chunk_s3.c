/* SPDX-License-Identifier: MIT */
/* test_chunk_s3.c - unit tests of the S3 chunk backend's pure parts
 * (src/master/chunk_s3.c, included to reach its statics): the object key
 * of a chunk's generation (and the legacy key) and its inverse for
 * listings, which objects recorded locations name, the age of an object by
 * S3's clock (the conditional delete, LIFECYCLE R13), S3 failures as the
 * backend's errno, and pins that nest and fail safe. The data path runs
 * black-box against s3rver in tests/integration/test_s3_mode.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/master/chunk_s3.c"

static const char *ID = "ab23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static void test_key_and_its_inverse(void **state)
{
	char key[EFS_CHUNK_S3_KEY_SIZE];
	struct efs_chunk_listed listed;
	(void)state;
	/* A generation's key, listed back as its chunk and its location. */
	efs_chunk_s3_key(ID, "0123456789abcdef", key);
	assert_string_equal(key, "chunks/ab/ab23456789abcdef0123456789abcdef0123456789abcdef"
				 "0123456789abcdef.0123456789abcdef");
	assert_int_equal(key_parse(key, &listed), 0);
	assert_string_equal(listed.chunk_id, ID);
	assert_string_equal(listed.location, "s3:0123456789abcdef");
	/* The legacy key (written before generations): location "". */
	efs_chunk_s3_key(ID, NULL, key);
	assert_string_equal(
	    key, "chunks/ab/ab23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	efs_chunk_s3_key(ID, "", key);
	assert_string_equal(
	    key, "chunks/ab/ab23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	assert_int_equal(key_parse(key, &listed), 0);
	assert_string_equal(listed.chunk_id, ID);
	assert_string_equal(listed.location, "");
	/* Anything else under the prefix is not a chunk's. */
	assert_int_equal(key_parse("chunks/not-a-chunk", &listed), -EINVAL);
	char bad[EFS_CHUNK_S3_KEY_SIZE + 8];
	snprintf(bad, sizeof(bad), "chunks/cd/%s", ID); /* wrong directory */
	assert_int_equal(key_parse(bad, &listed), -EINVAL);
	snprintf(bad, sizeof(bad), "chunks/AB/AB%s", ID + 2); /* upper case */
	assert_int_equal(key_parse(bad, &listed), -EINVAL);
	snprintf(bad, sizeof(bad), "chunks/ab/%s0", ID); /* too long */
	assert_int_equal(key_parse(bad, &listed), -EINVAL);
	snprintf(bad, sizeof(bad), "other/ab/%s", ID);
	assert_int_equal(key_parse(bad, &listed), -EINVAL);
	snprintf(bad, sizeof(bad), "chunks/ab/%s.0123456789ABCDEF", ID); /* upper case gen */
	assert_int_equal(key_parse(bad, &listed), -EINVAL);
	snprintf(bad, sizeof(bad), "chunks/ab/%s-0123456789abcdef", ID); /* not a dot */
	assert_int_equal(key_parse(bad, &listed), -EINVAL);
	snprintf(bad, sizeof(bad), "chunks/ab/%s.0123456789abcde", ID); /* gen too short */
	assert_int_equal(key_parse(bad, &listed), -EINVAL);
}

/* The objects an operation looks at: the generations the metadata records
 * for the chunk, or the legacy key when it records none of this backend's
 * (a row written before generations). */
static void test_known_locations_name_the_objects(void **state)
{
	struct efs_replica known[EFS_MAX_REPLICAS + 2];
	char gens[GENS_MAX][EFS_CHUNK_S3_GEN_LEN + 1];
	(void)state;
	memset(known, 0, sizeof(known));
	assert_int_equal(known_gens(NULL, 0, gens), 1);
	assert_string_equal(gens[0], "");
	snprintf(known[0].worker_id, sizeof(known[0].worker_id), "worker-1"); /* not ours */
	snprintf(known[1].worker_id, sizeof(known[1].worker_id), "s3:00000000000000ff");
	snprintf(known[2].worker_id, sizeof(known[2].worker_id), "s3:short");
	snprintf(known[3].worker_id, sizeof(known[3].worker_id), "s3:0a0b0c0d0e0f0102");
	assert_int_equal(known_gens(known, 4, gens), 2);
	assert_string_equal(gens[0], "00000000000000ff");
	assert_string_equal(gens[1], "0a0b0c0d0e0f0102");
	assert_int_equal(known_gens(known, 1, gens), 1); /* none of ours: legacy */
	assert_string_equal(gens[0], "");
	/* At most GENS_MAX. */
	for (unsigned i = 0; i < EFS_MAX_REPLICAS + 2; i++)
		snprintf(known[i].worker_id, sizeof(known[i].worker_id), "s3:%016x", i);
	assert_int_equal(known_gens(known, EFS_MAX_REPLICAS + 2, gens), GENS_MAX);
	assert_string_equal(gens[GENS_MAX - 1], "000000000000000f");
}

static void test_age_by_s3_clock(void **state)
{
	struct efs_s3_object_info info;
	int64_t ms = 0;
	(void)state;
	assert_int_equal(efs_s3_parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT", &ms), 0);
	assert_int_equal(ms, 784111777000LL);
	assert_int_equal(efs_s3_parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT junk", &ms),
			 -EINVAL);
	assert_int_equal(efs_s3_parse_http_date("1994-11-06T08:49:37Z", &ms), -EINVAL);
	assert_int_equal(efs_s3_parse_http_date("", &ms), -EINVAL);

	memset(&info, 0, sizeof(info));
	snprintf(info.last_modified, sizeof(info.last_modified), "Thu, 03 Dec 2026 09:00:00 GMT");
	snprintf(info.date, sizeof(info.date), "Thu, 03 Dec 2026 09:00:07 GMT");
	assert_int_equal(object_age_ms(&info), 7000);
	/* Without a Date there is no age on one clock: the caller keeps it. */
	info.date[0] = '\0';
	assert_int_equal(object_age_ms(&info), -1);
}

static void test_s3_failures_as_errno(void **state)
{
	struct efs_s3_error err;
	(void)state;
	memset(&err, 0, sizeof(err));
	err.status = 0; /* no answer: unreachable */
	assert_int_equal(s3_errno(-ECONNREFUSED, &err), -EHOSTUNREACH);
	err.status = 503;
	assert_int_equal(s3_errno(-EAGAIN, &err), -EHOSTUNREACH);
	err.status = 403;
	assert_int_equal(s3_errno(-EACCES, &err), -EACCES);
	err.status = 404;
	assert_int_equal(s3_errno(-ENOENT, &err), -ENOENT);
	assert_int_equal(s3_errno(-ENOMEM, &err), -ENOMEM);
}

static void test_pins_nest_and_fail_safe(void **state)
{
	struct s3_backend *b = calloc(1, sizeof(*b));
	char id[65];
	(void)state;
	assert_non_null(b);
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->written, NULL);
	s3_pin(b, ID);
	s3_pin(b, ID);
	s3_unpin(b, ID);
	assert_true(s3_pinned(b, ID));
	s3_unpin(b, ID);
	assert_false(s3_pinned(b, ID));
	/* Every slot taken: one more pin makes every chunk pinned until it
	 * ends. */
	for (int i = 0; i < PIN_SLOTS; i++) {
		snprintf(id, sizeof(id), "%064d", i);
		s3_pin(b, id);
	}
	assert_false(s3_pinned(b, ID));
	s3_pin(b, ID);
	assert_true(s3_pinned(b, "ffff"));
	s3_unpin(b, ID);
	assert_false(s3_pinned(b, "ffff"));
	for (int i = 0; i < PIN_SLOTS; i++) {
		snprintf(id, sizeof(id), "%064d", i);
		s3_unpin(b, id);
	}
	assert_false(s3_pinned(b, id));
	s3_free(b);
}

struct second_upload {
	struct s3_backend *b;
	int claimed; /* claim_writer's answer */
	bool done;
};

static void *second_upload_main(void *arg)
{
	struct second_upload *u = arg;
	s3_pin(u->b, ID);
	u->claimed = claim_writer(u->b, ID);
	pthread_mutex_lock(&u->b->lock);
	u->done = true;
	pthread_mutex_unlock(&u->b->lock);
	s3_unpin(u->b, ID);
	return NULL;
}

/* Two uploads of one new chunk on one master: the first claims the write;
 * the second waits until the first unpins (its record is done) and is
 * told to look again (-ESTALE), so only one generation is written. The
 * writer itself may claim again (a retry after its record found the row
 * collected). */
static void test_second_writer_waits_and_looks_again(void **state)
{
	struct s3_backend *b = calloc(1, sizeof(*b));
	struct second_upload u;
	pthread_t t;
	(void)state;
	assert_non_null(b);
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->written, NULL);
	s3_pin(b, ID);
	assert_int_equal(claim_writer(b, ID), 0);
	assert_int_equal(claim_writer(b, ID), 0); /* the writer again */
	memset(&u, 0, sizeof(u));
	u.b = b;
	u.claimed = 1;
	assert_int_equal(pthread_create(&t, NULL, second_upload_main, &u), 0);
	efs_sleep_ms(100);
	pthread_mutex_lock(&b->lock);
	bool early = u.done;
	pthread_mutex_unlock(&b->lock);
	assert_false(early); /* still waiting for the writer's record */
	s3_unpin(b, ID);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(u.claimed, -ESTALE);
	assert_false(s3_pinned(b, ID));
	/* Nobody writing: the next upload claims it. */
	s3_pin(b, ID);
	assert_int_equal(claim_writer(b, ID), 0);
	s3_unpin(b, ID);
	s3_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_key_and_its_inverse),
	    cmocka_unit_test(test_known_locations_name_the_objects),
	    cmocka_unit_test(test_age_by_s3_clock),
	    cmocka_unit_test(test_s3_failures_as_errno),
	    cmocka_unit_test(test_pins_nest_and_fail_safe),
	    cmocka_unit_test(test_second_writer_waits_and_looks_again),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
