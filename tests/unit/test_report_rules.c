/* SPDX-License-Identifier: MIT */
/* test_report_rules.c - unit tests of the verdict on a reported good
 * replica (src/meta/report_rules.h, LIFECYCLE T19): a surplus copy goes
 * only when the other good copies still cover as many zones as all of
 * them, or REPLICATION_FACTOR zones; never below REPLICATION_FACTOR
 * copies; never an erasure-coded shard. Pure logic: no store.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "echofs/meta.h"
#include "meta/report_rules.h"

#include <string.h>

#define NOW 1000000

/* The verdict on this worker's good replica of a referenced chunk with
 * @good good copies over @zones zones (@zones_without without this one),
 * at replication @rf. Checks the writes match the verdict. */
static enum efs_report_verdict judge_good(unsigned rf, int64_t good, int64_t zones,
					  int64_t zones_without, bool ec)
{
	struct efs_report_context ctx = {
		.worker_id = "w1",
		.started_ms = NOW - 10,
		.worker_now_ms = NOW,
		.orphan_grace_ms = 3600000,
		.replication = rf,
		.now_ms = NOW,
	};
	struct judged_row row = {.known = true,
				 .refcount = 1,
				 .state = 0,
				 .good = good,
				 .zones = zones,
				 .zones_without = zones_without,
				 .ec = ec};
	struct efs_report_entry e;
	memset(&e, 0, sizeof(e));
	e.mtime_ms = NOW - 10;
	unsigned writes = efs_meta_report_judge(&ctx, &row, &e);
	assert_true(writes & JUDGE_WRITE_SEEN);
	assert_int_equal(!!(writes & JUDGE_WRITE_DROP), e.verdict == EFS_REPORT_DELETE);
	assert_false(writes & JUDGE_WRITE_ADOPT);
	return e.verdict;
}

/* Without zones every worker is a zone of its own: a surplus copy's
 * removal leaves good - 1 zones, and it goes, as before zones. */
static void test_without_zones_a_surplus_copy_goes(void **state)
{
	(void)state;
	assert_int_equal(judge_good(3, 4, 4, 3, false), EFS_REPORT_DELETE);
	assert_int_equal(judge_good(2, 5, 5, 4, false), EFS_REPORT_DELETE);
	assert_int_equal(judge_good(3, 3, 3, 2, false), EFS_REPORT_KEEP); /* not surplus */
}

/* Zone a back from an outage: copies in a, b, c and a second in b. a's
 * copy is the only one of its zone and stays; either copy in b goes. */
static void test_a_zone_s_only_copy_stays_an_extra_one_goes(void **state)
{
	(void)state;
	assert_int_equal(judge_good(3, 4, 3, 2, false), EFS_REPORT_KEEP);   /* a's */
	assert_int_equal(judge_good(3, 4, 3, 3, false), EFS_REPORT_DELETE); /* b's */
	/* after b's went: 3 copies in 3 zones, nothing surplus */
	assert_int_equal(judge_good(3, 3, 3, 3, false), EFS_REPORT_KEEP);
}

/* More zones than REPLICATION_FACTOR: the other copies still cover
 * REPLICATION_FACTOR zones, so the copy goes (a rule asking for every
 * zone would keep every copy of a, b, c, d at replication 3). */
static void test_more_zones_than_copies_needed(void **state)
{
	(void)state;
	assert_int_equal(judge_good(3, 4, 4, 3, false), EFS_REPORT_DELETE);
	/* two zones only, four copies, a, a, b, b: any goes */
	assert_int_equal(judge_good(3, 4, 2, 2, false), EFS_REPORT_DELETE);
	/* a, b, b, b at replication 2: a stays, b's go */
	assert_int_equal(judge_good(2, 4, 2, 1, false), EFS_REPORT_KEEP);
	assert_int_equal(judge_good(2, 4, 2, 2, false), EFS_REPORT_DELETE);
}

/* Never below REPLICATION_FACTOR good copies, whatever the zones; an EC
 * shard is never surplus. */
static void test_never_below_the_factor_never_a_shard(void **state)
{
	(void)state;
	assert_int_equal(judge_good(3, 3, 1, 1, false), EFS_REPORT_KEEP);
	assert_int_equal(judge_good(3, 2, 2, 1, false), EFS_REPORT_KEEP);
	assert_int_equal(judge_good(3, 6, 3, 3, true), EFS_REPORT_KEEP);
	assert_int_equal(judge_good(1, 9, 9, 8, true), EFS_REPORT_KEEP);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_without_zones_a_surplus_copy_goes),
		cmocka_unit_test(test_a_zone_s_only_copy_stays_an_extra_one_goes),
		cmocka_unit_test(test_more_zones_than_copies_needed),
		cmocka_unit_test(test_never_below_the_factor_never_a_shard),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
