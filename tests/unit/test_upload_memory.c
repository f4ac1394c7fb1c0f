/* SPDX-License-Identifier: MIT */
/* test_upload_memory.c - unit tests of upload_memory.h: the whole budget
 * bounds all requests, each user's share bounds that user's, the cluster's
 * requests count only in the whole, and what is given back can be taken
 * again. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "master/upload_memory.h"

static void test_one_user_cannot_take_everything(void **state)
{
	struct efs_upload_memory um;
	efs_upload_memory_init(&um, 100, 40);

	assert_int_equal(efs_upload_memory_take(&um, "alice", 30), 0);
	assert_int_equal(efs_upload_memory_take(&um, "alice", 11), -EDQUOT);
	assert_int_equal(efs_upload_memory_take(&um, "alice", 10), 0);
	assert_int_equal(efs_upload_memory_take(&um, "alice", 1), -EDQUOT);
	/* another user still gets a share */
	assert_int_equal(efs_upload_memory_take(&um, "bob", 40), 0);
	assert_int_equal(efs_upload_memory_used(&um, "alice"), 40);
	assert_int_equal(efs_upload_memory_used(&um, "bob"), 40);
	assert_int_equal(efs_upload_memory_used(&um, NULL), 80);
	/* the whole bounds them all */
	assert_int_equal(efs_upload_memory_take(&um, "carol", 21), -ENOSPC);
	assert_int_equal(efs_upload_memory_take(&um, "carol", 20), 0);
	assert_int_equal(efs_upload_memory_take(&um, "dave", 1), -ENOSPC);
	/* given back, taken again */
	efs_upload_memory_give(&um, "alice", 30);
	assert_int_equal(efs_upload_memory_used(&um, "alice"), 10);
	assert_int_equal(efs_upload_memory_take(&um, "dave", 30), 0);
	assert_int_equal(efs_upload_memory_take(&um, "alice", 1), -ENOSPC);
	efs_upload_memory_give(&um, "alice", 10);
	efs_upload_memory_give(&um, "bob", 40);
	efs_upload_memory_give(&um, "carol", 20);
	efs_upload_memory_give(&um, "dave", 30);
	assert_int_equal(efs_upload_memory_used(&um, NULL), 0);
	assert_int_equal(efs_upload_memory_used(&um, "alice"), 0);
	assert_int_equal(um.user_count, 0);
	efs_upload_memory_release(&um);
}

static void test_cluster_requests_count_only_in_the_whole(void **state)
{
	struct efs_upload_memory um;
	efs_upload_memory_init(&um, 100, 10);

	assert_int_equal(efs_upload_memory_take(&um, "", 60), 0);
	assert_int_equal(efs_upload_memory_take(&um, NULL, 30), 0);
	assert_int_equal(efs_upload_memory_take(&um, "alice", 10), 0);
	assert_int_equal(efs_upload_memory_take(&um, "", 1), -ENOSPC);
	assert_int_equal(efs_upload_memory_used(&um, ""), 0);
	efs_upload_memory_give(&um, "", 60);
	efs_upload_memory_give(&um, NULL, 30);
	efs_upload_memory_give(&um, "alice", 10);
	assert_int_equal(efs_upload_memory_used(&um, NULL), 0);
	/* a share larger than the whole is the whole */
	efs_upload_memory_release(&um);
	efs_upload_memory_init(&um, 100, 1000);
	assert_int_equal(efs_upload_memory_take(&um, "alice", 101), -ENOSPC);
	assert_int_equal(efs_upload_memory_take(&um, "alice", 100), 0);
	efs_upload_memory_give(&um, "alice", 100);
	efs_upload_memory_release(&um);
}

/* Many users at once (more than the first table), each under its share. */
static void test_many_users(void **state)
{
	struct efs_upload_memory um;
	char name[32];
	efs_upload_memory_init(&um, 1000, 3);

	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "user%d", i);
		assert_int_equal(efs_upload_memory_take(&um, name, 3), 0);
		assert_int_equal(efs_upload_memory_take(&um, name, 1), -EDQUOT);
	}
	assert_int_equal(efs_upload_memory_used(&um, NULL), 900);
	for (int i = 0; i < 300; i += 2) {
		snprintf(name, sizeof(name), "user%d", i);
		efs_upload_memory_give(&um, name, 3);
	}
	for (int i = 1; i < 300; i += 2) {
		snprintf(name, sizeof(name), "user%d", i);
		assert_int_equal(efs_upload_memory_used(&um, name), 3);
		efs_upload_memory_give(&um, name, 3);
	}
	assert_int_equal(efs_upload_memory_used(&um, NULL), 0);
	assert_int_equal(um.user_count, 0);
	efs_upload_memory_release(&um);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_one_user_cannot_take_everything),
	    cmocka_unit_test(test_cluster_requests_count_only_in_the_whole),
	    cmocka_unit_test(test_many_users),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
