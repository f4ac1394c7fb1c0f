/* SPDX-License-Identifier: MIT */
/* download.h - streams a byte range of a file, chunk by chunk.
 *
 * A reader holds one chunk at a time (decoded and verified by chunk_io),
 * and the chunk list in batches, so a download of any size needs about
 * two chunks of memory. The HTTP layer pulls bytes with efs_reader_read.
 */
#ifndef ECHOFS_MASTER_DOWNLOAD_H
#define ECHOFS_MASTER_DOWNLOAD_H

#include "echofs/buf.h"
#include "echofs/meta.h"

#include <sys/types.h>

struct efs_master;
struct efs_reader;

/* A reader of bytes [@first, @last] of @file. */
int efs_reader_new(struct efs_master *m, const struct efs_file_info *file, uint64_t first,
		   uint64_t last, struct efs_reader **out);
void efs_reader_free(struct efs_reader *rd);
/* Loads the chunk holding the next byte, so a failure shows before any
 * byte is sent. 0, -ENOENT (the file has no chunk list: deleted), -EIO or
 * store errors. */
int efs_reader_prefetch(struct efs_reader *rd);
/* The next bytes into @out: count, 0 at the end, or -errno. */
ssize_t efs_reader_read(struct efs_reader *rd, char *out, size_t max);


#endif
