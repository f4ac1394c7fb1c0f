/* SPDX-License-Identifier: MIT */
/* report_rules.h - the verdict on one chunk of a worker's report, shared
 * by every metadata backend (private to src/meta). The rules themselves
 * are sql_repair.c's judge() (LIFECYCLE.md T14-T19): a backend loads a
 * struct judged_row for the chunk, asks for the verdict and applies the
 * writes it returns.
 */
#ifndef ECHOFS_META_REPORT_RULES_H
#define ECHOFS_META_REPORT_RULES_H

#include "echofs/meta.h"

#include <stdbool.h>
#include <stdint.h>

/* What the rules need to know about one reported chunk. */
struct judged_row {
	bool known; /* the master has a chunk row */
	int64_t refcount;
	int64_t state; /* this worker's replica state; -1: no replica row */
	int64_t good;  /* good replicas on live workers (this one included) */
	/* The distinct zones those good replicas cover, and the distinct
	 * zones the same replicas but this worker's cover. A worker without
	 * a zone is a zone of its own. zones_without == zones: this worker's
	 * copy shares its zone with another good copy (or is not counted). */
	int64_t zones;
	int64_t zones_without;
	/* An erasure-coded chunk: each replica row is a distinct shard, never
	 * surplus to another, and a copy no row names is not adopted (which
	 * shard it is is in its bytes, not known here): deleted once old. */
	bool ec;
};

/* What the rules ask to be written for one chunk. */
enum judge_write {
	JUDGE_WRITE_NONE = 0,
	JUDGE_WRITE_SEEN = 1,  /* seen_at of the worker's replica */
	JUDGE_WRITE_DROP = 2,  /* delete the worker's replica row */
	JUDGE_WRITE_ADOPT = 4, /* insert a good replica row for the worker */
};

/* Sets e->verdict from @row and returns the writes it needs (enum
 * judge_write bits). Pure: no store access. */
unsigned efs_meta_report_judge(const struct efs_report_context *ctx, const struct judged_row *row,
			       struct efs_report_entry *e);

#endif
