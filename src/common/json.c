/* SPDX-License-Identifier: MIT */
/* json.c - typed reads of jansson objects, and the nesting limit checked
 * before a request body is handed to jansson. */
#include "echofs/json.h"

#include <string.h>

int efs_json_u64(const json_t *obj, const char *key, uint64_t *out)
{
	const json_t *v = json_object_get(obj, key);
	if (!v || json_is_null(v))
		return -ENOENT;
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -EINVAL;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

int efs_json_str(const json_t *obj, const char *key, size_t max_len, const char **out)
{
	const json_t *v = json_object_get(obj, key);
	if (!v || json_is_null(v))
		return -ENOENT;
	if (!json_is_string(v) || json_string_length(v) > max_len ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return -EINVAL;
	*out = json_string_value(v);
	return 0;
}

int efs_json_check_depth(const char *text, size_t len, unsigned max_depth)
{
	unsigned depth = 0;
	bool in_string = false;
	for (size_t i = 0; i < len; i++) {
		char c = text[i];
		if (in_string) {
			if (c == '\\')
				i++; /* the escaped character, whatever it is */
			else if (c == '"')
				in_string = false;
		} else if (c == '"') {
			in_string = true;
		} else if (c == '[' || c == '{') {
			if (++depth > max_depth)
				return -E2BIG;
		} else if ((c == ']' || c == '}') && depth > 0) {
			depth--;
		}
	}
	return 0;
}
