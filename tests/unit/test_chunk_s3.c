/* SPDX-License-Identifier: MIT */
/* test_chunk_s3.c - unit tests of the S3 chunk backend's pure parts
 * (src/master/chunk_s3.c, included to reach its statics): the object key
 * of a chunk and its inverse for listings, the age of an object by S3's
 * clock (the conditional delete, LIFECYCLE R13), S3 failures as the
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
	(void)state;
	efs_chunk_s3_key(ID, key);
	assert_string_equal(
	    key, "chunks/ab/ab23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	const char *id = key_chunk_id(key);
	assert_non_null(id);
	assert_string_equal(id, ID);
	/* Anything else under the prefix is not a chunk's. */
	assert_null(key_chunk_id("chunks/not-a-chunk"));
	char bad[EFS_CHUNK_S3_KEY_SIZE];
	snprintf(bad, sizeof(bad), "chunks/cd/%s", ID); /* wrong directory */
	assert_null(key_chunk_id(bad));
	snprintf(bad, sizeof(bad), "chunks/AB/AB%s", ID + 2); /* upper case */
	assert_null(key_chunk_id(bad));
	snprintf(bad, sizeof(bad), "chunks/ab/%s0", ID); /* too long */
	assert_null(key_chunk_id(bad));
	snprintf(bad, sizeof(bad), "other/ab/%s", ID);
	assert_null(key_chunk_id(bad));
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
	pthread_cond_init(&b->removed, NULL);
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
	/* A remove of a pinned chunk keeps the object without asking S3 (no
	 * client is set up here: a request would crash). */
	snprintf(id, sizeof(id), "%064d", 7);
	assert_int_equal(s3_remove(b, id, NULL, 0, 0, 0), 0);
	for (int i = 0; i < PIN_SLOTS; i++) {
		snprintf(id, sizeof(id), "%064d", i);
		s3_unpin(b, id);
	}
	assert_false(s3_pinned(b, id));
	s3_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_key_and_its_inverse),
	    cmocka_unit_test(test_age_by_s3_clock),
	    cmocka_unit_test(test_s3_failures_as_errno),
	    cmocka_unit_test(test_pins_nest_and_fail_safe),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
