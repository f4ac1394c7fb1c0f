/* SPDX-License-Identifier: MIT */
/* s3_parts.c - the part layout of an object a multipart upload made.
 *
 * GetObject/HeadObject with ?partNumber=N serve the Nth part of the
 * object (docs/S3.md "Multipart upload"), so Complete records the sizes of
 * the parts it joined, in order, with the object's row (SQL: the parts
 * column, schema version 11; DynamoDB: the object item's parts
 * attribute). Clients use one part size for all parts but the last, so
 * the sizes are run-length encoded: "SIZE*COUNT" runs joined by commas
 * ("8388608*24,1048576*1"); at most EFS_S3_PART_MAX runs, each at most
 * 41 bytes. The text never comes from a client: a layout that does not
 * parse is a store error (-EIO).
 */
#include "echofs/meta.h"
#include "echofs/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int efs_s3_parts_encode(const struct efs_s3_part *parts, size_t count, char **out)
{
	size_t cap = count * 42 + 1, len = 0;
	char *text = malloc(cap);
	if (!text)
		return -ENOMEM;
	text[0] = 0;
	for (size_t i = 0; i < count;) {
		size_t run = 1;
		while (i + run < count && parts[i + run].size == parts[i].size)
			run++;
		int n = snprintf(text + len, cap - len, "%s%llu*%zu", len ? "," : "",
				 (unsigned long long)parts[i].size, run);
		if (n < 0 || (size_t)n >= cap - len) {
			free(text);
			return -EOVERFLOW;
		}
		len += (size_t)n;
		i += run;
	}
	*out = text;
	return 0;
}

int efs_s3_parts_find(const char *layout, unsigned number, uint64_t *first, uint64_t *size,
		      unsigned *count)
{
	uint64_t offset = 0, found_first = 0, found_size = 0;
	unsigned total = 0;
	bool found = false;
	for (const char *p = layout; *p;) {
		char *end;
		errno = 0;
		unsigned long long run_size = strtoull(p, &end, 10);
		if (errno || end == p || *end != '*')
			return -EIO;
		p = end + 1;
		unsigned long long run = strtoull(p, &end, 10);
		if (errno || end == p || run == 0 || run > EFS_S3_PART_MAX - total ||
		    (*end && *end != ','))
			return -EIO;
		p = *end ? end + 1 : end;
		if (!found && number > total && number <= total + run) {
			found = true;
			found_first = offset + (number - total - 1) * run_size;
			found_size = run_size;
		}
		offset += run * run_size;
		total += (unsigned)run;
	}
	*count = total;
	if (!found)
		return -ERANGE;
	*first = found_first;
	*size = found_size;
	return 0;
}
