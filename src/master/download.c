/* SPDX-License-Identifier: MIT */
/* download.c - a streaming, verifying reader of file ranges. */
#include "master/download.h"
#include "echofs/log.h"
#include "master/chunk_io.h"
#include "master/master.h"

#include <string.h>

#define BATCH 64

struct efs_reader {
	struct efs_master *m;
	struct efs_file_info file;
	uint64_t pos;  /* next file offset to hand out */
	uint64_t last; /* last offset (inclusive) */
	/* chunk list batch */
	struct efs_file_chunk *batch;
	size_t batch_count;
	/* the current chunk, decoded */
	int64_t loaded_index; /* -1: none */
	struct efs_buf data;
	struct efs_buf scratch;
};

int efs_reader_new(struct efs_master *m, const struct efs_file_info *file, uint64_t first,
		   uint64_t last, struct efs_reader **out)
{
	struct efs_reader *rd = calloc(1, sizeof(*rd));
	if (!rd)
		return -ENOMEM;
	rd->m = m;
	rd->file = *file;
	rd->pos = first;
	rd->last = last;
	rd->loaded_index = -1;
	efs_buf_init(&rd->data, SIZE_MAX);
	efs_buf_init(&rd->scratch, SIZE_MAX);
	*out = rd;
	return 0;
}

void efs_reader_free(struct efs_reader *rd)
{
	if (!rd)
		return;
	free(rd->batch);
	efs_buf_release(&rd->data);
	efs_buf_release(&rd->scratch);
	free(rd);
}

/* Finds chunk @index in the batch, fetching the batch that holds it. */
static int chunk_entry(struct efs_reader *rd, uint64_t index, const struct efs_file_chunk **out)
{
	for (int pass = 0; pass < 2; pass++) {
		if (rd->batch_count > 0 && index >= rd->batch[0].index &&
		    index < rd->batch[0].index + rd->batch_count) {
			const struct efs_file_chunk *fc = &rd->batch[index - rd->batch[0].index];
			if (fc->index != index)
				return -EIO; /* a hole in the chunk list */
			*out = fc;
			return 0;
		}
		if (pass == 1)
			break;
		free(rd->batch);
		rd->batch = NULL;
		rd->batch_count = 0;
		int r = efs_meta_file_chunks(rd->m->meta, rd->file.file_id, index, BATCH, &rd->batch,
					     &rd->batch_count);
		if (r < 0)
			return r;
		if (rd->batch_count == 0)
			return -ENOENT; /* the file is gone (deleted meanwhile) */
	}
	efs_error("file %s: chunk %llu is missing from the metadata", rd->file.file_id,
		  (unsigned long long)index);
	return -EIO;
}

int efs_reader_prefetch(struct efs_reader *rd)
{
	if (rd->pos > rd->last || rd->file.chunk_size == 0)
		return 0;
	uint64_t index = rd->pos / rd->file.chunk_size;
	if ((int64_t)index == rd->loaded_index)
		return 0;
	const struct efs_file_chunk *fc;
	int r = chunk_entry(rd, index, &fc);
	if (r < 0)
		return r;
	r = efs_chunk_read(rd->m, &fc->chunk, fc->replicas, fc->replica_count, &rd->data,
			   &rd->scratch);
	if (r < 0) {
		rd->loaded_index = -1;
		return r;
	}
	rd->loaded_index = (int64_t)index;
	return 0;
}

ssize_t efs_reader_read(struct efs_reader *rd, char *out, size_t max)
{
	if (rd->pos > rd->last)
		return 0;
	int r = efs_reader_prefetch(rd);
	if (r < 0) {
		efs_error("file %s: download aborted at byte %llu: %s", rd->file.file_id,
			  (unsigned long long)rd->pos, strerror(-r));
		return r;
	}
	uint64_t offset = rd->pos - (uint64_t)rd->loaded_index * rd->file.chunk_size;
	if (offset >= rd->data.len)
		return -EIO;
	size_t n = (size_t)EFS_MIN((uint64_t)max, rd->data.len - offset);
	n = (size_t)EFS_MIN((uint64_t)n, rd->last - rd->pos + 1);
	memcpy(out, rd->data.data + offset, n);
	rd->pos += n;
	return (ssize_t)n;
}
