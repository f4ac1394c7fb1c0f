/* SPDX-License-Identifier: MIT */
/* json.h - small typed reads of jansson objects that came from the network. */
#ifndef ECHOFS_JSON_H
#define ECHOFS_JSON_H

#include "echofs/common.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Reads a non-negative integer member. -ENOENT when absent (or null),
 * -EINVAL when not a non-negative integer. */
int efs_json_u64(const json_t *obj, const char *key, uint64_t *out);
/* Reads a string member. -ENOENT when absent (or null), -EINVAL when not a
 * string or longer than @max_len bytes. */
int efs_json_str(const json_t *obj, const char *key, size_t max_len, const char **out);

#endif
