/* SPDX-License-Identifier: MIT */
/* dynamodb_lists.c - the counted chunk lists of a new file whose chunks
 * another item holds while they are written: CopyObject (the source
 * file's lists, dynamodb_s3.c) and multipart Complete (the parts'
 * sessions, dynamodb_s3_multipart.c). docs/AWS.md, "CopyObject" and
 * "Multipart uploads on DynamoDB".
 *
 * Each piece is one transaction: the caller's guard (a condition check on
 * the item that holds the chunks: so none of them can be at 0 while the
 * piece raises its counts), the new list item put with `counted` (the
 * leftovers sweep then releases it rather than dropping it, should the
 * writer die before its commit), and each distinct chunk's count raised
 * by its occurrences in the piece.
 */
#include "meta/dynamodb.h"
#include "echofs/log.h"
#include "echofs/util.h"

#include <stdio.h>
#include <string.h>

/* Counts the distinct chunk ids of @ids[0..n) into @st. */
static size_t count_distinct(struct dyn_lists *st, const char *ids, size_t stride, size_t n)
{
	size_t distinct = 0;
	for (size_t i = 0; i < n; i++) {
		const char *id = ids + i * stride;
		size_t k = 0;
		while (k < distinct && strcmp(st->distinct[k], id) != 0)
			k++;
		if (k == distinct) {
			efs_strlcpy(st->distinct[distinct], id, sizeof(st->distinct[distinct]));
			st->counts[distinct++] = 0;
		}
		st->counts[k]++;
	}
	return distinct;
}

/* One piece: ids[0..n) at index @first (n <= DYN_LIST_IDS, at most
 * DYN_LISTS_TX_CHUNKS distinct). */
static int write_piece(struct dyn_lists *st, const json_t *guard, uint64_t first,
		       const char *ids, size_t stride, size_t n)
{
	struct dyn *d = st->d;
	struct ddb_result res;
	char fpk[EFS_ID_MAX + 16], sk[32];
	size_t distinct = count_distinct(st, ids, stride, n);
	int r = -EAGAIN;

	snprintf(fpk, sizeof(fpk), "FILE#%s", st->file_id);
	dyn_list_sk(first, sk);
	for (int attempt = 0; attempt < DYN_TX_ATTEMPTS; attempt++) {
		json_t *list = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(list, ddb_s(ids + i * stride));
		json_t *items = json_array();
		json_array_append_new(items, json_deep_copy(guard));
		json_array_append_new(
		    items,
		    dyn_tx_put(d->files,
			       json_pack("{s:o, s:o, s:o, s:{s:o}, s:o, s:o}", "pk", ddb_s(fpk),
					 "sk", ddb_s(sk), "first", ddb_n((int64_t)first),
					 "chunk_ids", "L", list, "created_at", ddb_n(st->now_ms),
					 "counted", ddb_n(1)),
			       "attribute_not_exists(sk)", NULL, NULL));
		for (size_t k = 0; k < distinct; k++)
			json_array_append_new(items,
					      dyn_chunk_ref(d, st->distinct[k], st->counts[k]));
		r = dyn_tx(d, items, 2 + distinct, &res);
		if (r != -EBUSY)
			break;
		efs_sleep_ms(5 * (attempt + 1));
	}
	if (r == -ECANCELED)
		return -ECANCELED;
	if (r < 0) {
		char what[64];
		snprintf(what, sizeof(what), "TransactWriteItems (%s chunk lists)", st->what);
		return r == -EBUSY ? -EAGAIN : dyn_fail(what, r, &res);
	}
	if (!st->first_sk[0])
		memcpy(st->first_sk, sk, sizeof(sk));
	st->written++;
	if (st->hook && st->hook(d, st->file_id, st->written) < 0) {
		st->died = true;
		return -EINTR;
	}
	return 0;
}

int dyn_lists_write(struct dyn_lists *st, const json_t *guard, uint64_t first, const char *ids,
		    size_t stride, size_t n)
{
	size_t from = 0, distinct = 0;
	int r;
	/* pieces: cut before an id that would make one list too long or one
	 * distinct chunk too many for a transaction */
	for (size_t i = 0; i < n; i++) {
		bool seen = false;
		for (size_t j = from; j < i && !seen; j++)
			seen = strcmp(ids + j * stride, ids + i * stride) == 0;
		if (i - from == DYN_LIST_IDS || (!seen && distinct == DYN_LISTS_TX_CHUNKS)) {
			if ((r = write_piece(st, guard, first + from, ids + from * stride, stride,
					     i - from)) < 0)
				return r;
			from = i;
			distinct = 0;
			seen = false;
		}
		distinct += !seen;
	}
	if (n > from)
		return write_piece(st, guard, first + from, ids + from * stride, stride, n - from);
	return 0;
}

void dyn_lists_undo(struct dyn_lists *st, const char *owner)
{
	struct ddb_result res;
	char what[EFS_ID_MAX + 8];
	if (!st->written || st->died)
		return;
	snprintf(what, sizeof(what), "F#%s", st->file_id);
	json_t *marker = dyn_release_marker(st->d, what, owner, st->now_ms);
	int r = marker ? dyn_put(st->d, st->d->sessions, marker, NULL, NULL, NULL, &res) : -ENOMEM;
	json_decref(marker);
	if (r == 0)
		r = dyn_release(st->d, what, st->now_ms);
	if (r < 0)
		efs_warn("dynamodb: %s into file %s abandoned: its chunk lists are not all"
			 " released yet (%s); the leftovers sweep does it",
			 st->what, st->file_id, strerror(-r));
	st->written = 0;
	st->first_sk[0] = 0;
}
