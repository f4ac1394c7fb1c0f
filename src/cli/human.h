/* SPDX-License-Identifier: MIT */
/* human.h - sizes, rates and durations as people read them. */
#ifndef ECHOFS_CLI_HUMAN_H
#define ECHOFS_CLI_HUMAN_H

#include "echofs/common.h"

#define EFS_HUMAN_LEN 32

/* Writes @bytes as "512 B", "1.5 KiB", "12.3 MiB", "1.0 GiB"... into @out
 * (EFS_HUMAN_LEN bytes suffice). Returns @out. */
char *efs_human_bytes(uint64_t bytes, char *out, size_t cap);

/* Writes @seconds as "0:07", "12:34" or "1:02:03", and a negative value
 * (unknown) as "--:--". Returns @out. */
char *efs_human_duration(int64_t seconds, char *out, size_t cap);

#endif
