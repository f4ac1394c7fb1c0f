/* SPDX-License-Identifier: MIT */
/* chunker.c - fixed-size chunking of a stream. */
#include "master/chunker.h"

#include <string.h>

void efs_chunker_init(struct efs_chunker *c, size_t chunk_size, efs_chunk_fn emit, void *ctx)
{
	c->chunk_size = chunk_size;
	efs_buf_init(&c->pending, chunk_size);
	c->next_index = 0;
	c->total_bytes = 0;
	c->emit = emit;
	c->ctx = ctx;
}

static int emit(struct efs_chunker *c, const char *data, size_t len)
{
	return c->emit(c->ctx, c->next_index++, data, len);
}

int efs_chunker_feed(struct efs_chunker *c, const char *data, size_t len)
{
	int r;
	c->total_bytes += len;
	while (len > 0) {
		if (c->pending.len == 0 && len >= c->chunk_size) {
			if ((r = emit(c, data, c->chunk_size)) < 0)
				return r;
			data += c->chunk_size;
			len -= c->chunk_size;
			continue;
		}
		size_t take = EFS_MIN(len, c->chunk_size - c->pending.len);
		if ((r = efs_buf_append(&c->pending, data, take)) < 0)
			return r;
		data += take;
		len -= take;
		if (c->pending.len == c->chunk_size) {
			r = emit(c, c->pending.data, c->pending.len);
			efs_buf_reset(&c->pending);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

int efs_chunker_finish(struct efs_chunker *c)
{
	if (c->pending.len == 0)
		return 0;
	int r = emit(c, c->pending.data, c->pending.len);
	efs_buf_reset(&c->pending);
	return r;
}

void efs_chunker_release(struct efs_chunker *c)
{
	efs_buf_release(&c->pending);
}
