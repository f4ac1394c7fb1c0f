/* SPDX-License-Identifier: MIT */
/* fuzz_policy.c - libFuzzer harness for the storage policy parser
 * (src/common/ec.c, efs_ec_policy_parse), which will read STORAGE_POLICY
 * and an upload's ?policy= (issue 17).
 *
 * Input: the policy string (a NUL ends it early, as in a C string).
 * Checked beyond the sanitizers, per ec.h:
 *   - 0 or -EINVAL, nothing else; on -EINVAL the output untouched;
 *   - a policy that parses is within the caps (replicas 1..16; K, M >= 1,
 *     K + M <= EFS_EC_MAX_SHARDS), has a codec (efs_ec_new succeeds), and
 *     formats back to exactly the input (one spelling per policy);
 *   - the answer does not depend on anything past the string's NUL.
 * Build and run: make fuzz; bin/fuzz_policy tests/fuzz/corpus/policy
 */
#include "echofs/ec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse(const char *s, struct efs_policy *p)
{
	struct efs_policy before;
	memset(p, 0xa5, sizeof(*p));
	before = *p;
	int r = efs_ec_policy_parse(s, p);
	if (r == -EINVAL) {
		if (memcmp(p, &before, sizeof(*p)) != 0)
			abort();
		return r;
	}
	if (r != 0)
		abort();
	char back[EFS_POLICY_MAX_LEN + 1];
	if (efs_ec_policy_format(p, back, sizeof(back)) != 0 || strcmp(back, s) != 0)
		abort();
	if (p->kind == EFS_POLICY_REPLICAS) {
		if (p->replicas < 1 || p->replicas > EFS_POLICY_MAX_REPLICAS)
			abort();
	} else if (p->kind == EFS_POLICY_EC) {
		struct efs_ec *ec = NULL;
		if (p->data_shards < 1 || p->parity_shards < 1 ||
		    p->data_shards + p->parity_shards > EFS_EC_MAX_SHARDS ||
		    efs_ec_new(p->data_shards, p->parity_shards, &ec) != 0)
			abort();
		efs_ec_free(ec);
	} else {
		abort();
	}
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy (NUL added), so ASan sees any read past it. */
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	struct efs_policy p;
	int r = parse(s, &p);

	/* The same string with junk after its NUL gives the same answer. */
	size_t len = strlen(s);
	char *padded = malloc(len + 8);
	if (padded) {
		memcpy(padded, s, len + 1);
		memset(padded + len + 1, '7', 7);
		struct efs_policy p2;
		if (parse(padded, &p2) != r || (r == 0 && memcmp(&p, &p2, sizeof(p)) != 0))
			abort();
		free(padded);
	}
	free(s);
	return 0;
}
