/* SPDX-License-Identifier: MIT */
/* chunk_batch.c - the frame of a batched replica write (chunk_batch.h):
 * built by the master, parsed by the worker from bytes off the network,
 * so every field is checked against its cap before it is used. */
#include "echofs/chunk_batch.h"
#include "echofs/util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

#define FLAGS_KNOWN (EFS_CHUNK_BATCH_GZIP | EFS_CHUNK_BATCH_CRC)

int efs_chunk_batch_parse(const void *body, size_t len, struct efs_chunk_batch_item *items,
			  size_t *count, char *why, size_t why_len)
{
	/* Parsed into a scratch array first: @items untouched on failure. */
	struct efs_chunk_batch_item parsed[EFS_CHUNK_BATCH_MAX_ITEMS];
	const uint8_t *p = body;
	size_t pos, n;

	if (len > EFS_CHUNK_BATCH_MAX_BODY) {
		snprintf(why, why_len, "a batch holds at most %d bytes", EFS_CHUNK_BATCH_MAX_BODY);
		return -E2BIG;
	}
	if (len < EFS_CHUNK_BATCH_HEAD_LEN) {
		snprintf(why, why_len, "truncated: %zu bytes, shorter than the %d-byte head", len,
			 EFS_CHUNK_BATCH_HEAD_LEN);
		return -EBADMSG;
	}
	if (memcmp(p, EFS_CHUNK_BATCH_MAGIC, 4) != 0 || p[4] != EFS_CHUNK_BATCH_VERSION || p[5] ||
	    p[6] || p[7]) {
		snprintf(why, why_len, "not a version %d batch (magic, version or reserved bytes)",
			 EFS_CHUNK_BATCH_VERSION);
		return -EBADMSG;
	}
	uint32_t announced = get_u32(p + 8);
	if (announced == 0 || announced > EFS_CHUNK_BATCH_MAX_ITEMS) {
		snprintf(why, why_len, "item count %u: a batch holds 1 to %d items", announced,
			 EFS_CHUNK_BATCH_MAX_ITEMS);
		return -EBADMSG;
	}
	pos = EFS_CHUNK_BATCH_HEAD_LEN;
	for (n = 0; n < announced; n++) {
		struct efs_chunk_batch_item *it = &parsed[n];
		if (len - pos < EFS_CHUNK_BATCH_ITEM_HEAD_LEN) {
			snprintf(why, why_len, "truncated in the head of item %zu", n);
			return -EBADMSG;
		}
		const uint8_t *h = p + pos;
		memcpy(it->chunk_id, h, EFS_CHUNK_BATCH_ID_LEN);
		it->chunk_id[EFS_CHUNK_BATCH_ID_LEN] = '\0';
		/* A NUL among the 64 bytes makes a shorter string: refused. */
		if (!efs_chunk_id_valid(it->chunk_id)) {
			snprintf(why, why_len, "item %zu: a chunk id is 64 lowercase hex digits",
				 n);
			return -EBADMSG;
		}
		it->flags = h[64];
		if ((it->flags & ~FLAGS_KNOWN) || h[65] || h[66] || h[67]) {
			snprintf(why, why_len, "item %zu: unknown flags or reserved bytes", n);
			return -EBADMSG;
		}
		it->crc = get_u32(h + 68);
		it->length = get_u32(h + 72);
		if (get_u32(h + 76) != 0) {
			snprintf(why, why_len, "item %zu: reserved bytes", n);
			return -EBADMSG;
		}
		if (it->length > EFS_CHUNK_BATCH_MAX_ITEM) {
			snprintf(why, why_len,
				 "item %zu: %u bytes, over the %d a batched chunk may hold", n,
				 it->length, EFS_CHUNK_BATCH_MAX_ITEM);
			return -EBADMSG;
		}
		pos += EFS_CHUNK_BATCH_ITEM_HEAD_LEN;
		if (len - pos < it->length) {
			snprintf(why, why_len, "truncated in the payload of item %zu", n);
			return -EBADMSG;
		}
		it->payload = p + pos;
		pos += it->length;
	}
	if (pos != len) {
		snprintf(why, why_len, "%zu bytes after the last of %zu items", len - pos, n);
		return -EBADMSG;
	}
	memcpy(items, parsed, n * sizeof(*parsed));
	*count = n;
	return 0;
}

size_t efs_chunk_batch_size(size_t count, size_t payload_bytes)
{
	return EFS_CHUNK_BATCH_HEAD_LEN + count * EFS_CHUNK_BATCH_ITEM_HEAD_LEN + payload_bytes;
}

int efs_chunk_batch_begin(struct efs_buf *out, size_t count)
{
	uint8_t head[EFS_CHUNK_BATCH_HEAD_LEN] = {0};
	if (count == 0 || count > EFS_CHUNK_BATCH_MAX_ITEMS)
		return -EINVAL;
	efs_buf_reset(out);
	memcpy(head, EFS_CHUNK_BATCH_MAGIC, 4);
	head[4] = EFS_CHUNK_BATCH_VERSION;
	put_u32(head + 8, (uint32_t)count);
	return efs_buf_append(out, head, sizeof(head));
}

int efs_chunk_batch_add(struct efs_buf *out, const char *chunk_id, uint8_t flags, uint32_t crc,
			const void *payload, size_t length)
{
	uint8_t h[EFS_CHUNK_BATCH_ITEM_HEAD_LEN] = {0};
	if (!efs_chunk_id_valid(chunk_id) || (flags & ~FLAGS_KNOWN) ||
	    length > EFS_CHUNK_BATCH_MAX_ITEM)
		return -EINVAL;
	memcpy(h, chunk_id, EFS_CHUNK_BATCH_ID_LEN);
	h[64] = flags;
	put_u32(h + 68, crc);
	put_u32(h + 72, (uint32_t)length);
	int r = efs_buf_reserve(out, sizeof(h) + length);
	if (r == 0)
		r = efs_buf_append(out, h, sizeof(h));
	if (r == 0)
		r = efs_buf_append(out, payload, length);
	return r;
}
