/* SPDX-License-Identifier: MIT */
/* fuzz_chunk_batch.c - libFuzzer harness for the batched replica write
 * frame parser (src/common/chunk_batch.c, efs_chunk_batch_parse), which a
 * worker runs on a POST /chunks/batch body from the network.
 *
 * Input: the body. Checked beyond the sanitizers, per chunk_batch.h:
 *   - 0: 1..EFS_CHUNK_BATCH_MAX_ITEMS items, each a valid chunk id, known
 *     flags, at most EFS_CHUNK_BATCH_MAX_ITEM bytes lying inside the body,
 *     the items back to back to the body's last byte; and the frame built
 *     again from them is the same bytes;
 *   - -EBADMSG or -E2BIG: the outputs untouched and a reason given;
 *   - no other return value.
 * Build and run: make fuzz; bin/fuzz_chunk_batch tests/fuzz/corpus/chunk_batch
 */
#include "echofs/chunk_batch.h"
#include "echofs/util.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct efs_chunk_batch_item items[EFS_CHUNK_BATCH_MAX_ITEMS];
	size_t count = SIZE_MAX;
	char why[160] = "";
	memset(items, 0xa5, sizeof(items));
	int r = efs_chunk_batch_parse(data, size, items, &count, why, sizeof(why));
	if (r == -EBADMSG || r == -E2BIG) {
		if (count != SIZE_MAX || ((unsigned char *)items)[0] != 0xa5 || !why[0])
			abort();
		return 0;
	}
	if (r != 0 || count == 0 || count > EFS_CHUNK_BATCH_MAX_ITEMS)
		abort();
	struct efs_buf again;
	efs_buf_init(&again, EFS_CHUNK_BATCH_MAX_BODY);
	if (efs_chunk_batch_begin(&again, count) != 0)
		abort();
	const uint8_t *expect = data + EFS_CHUNK_BATCH_HEAD_LEN;
	for (size_t i = 0; i < count; i++) {
		const struct efs_chunk_batch_item *it = &items[i];
		if (!efs_chunk_id_valid(it->chunk_id) || it->length > EFS_CHUNK_BATCH_MAX_ITEM ||
		    (it->flags & ~(EFS_CHUNK_BATCH_GZIP | EFS_CHUNK_BATCH_CRC)))
			abort();
		if (it->payload != expect + EFS_CHUNK_BATCH_ITEM_HEAD_LEN)
			abort();
		expect = it->payload + it->length;
		if (efs_chunk_batch_add(&again, it->chunk_id, it->flags, it->crc, it->payload,
					it->length) != 0)
			abort();
	}
	if (expect != data + size || again.len != size || memcmp(again.data, data, size) != 0)
		abort();
	efs_buf_release(&again);
	return 0;
}
