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

/* How deep a JSON request body may nest arrays and objects ({"a": [1]} is
 * 2). jansson's own limit is 2048 levels, each a recursion. */
#define EFS_JSON_MAX_DEPTH 32
/* Scans @len bytes of JSON text, without parsing it, for arrays and objects
 * nested deeper than @max_depth (brackets inside strings do not count).
 * 0, or -E2BIG as soon as the depth passes @max_depth. Text that is not
 * JSON is not its concern: the parser says so afterwards. */
int efs_json_check_depth(const char *text, size_t len, unsigned max_depth);

#endif
