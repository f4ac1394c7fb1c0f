/* SPDX-License-Identifier: MIT */
/* ec.c - Reed-Solomon erasure coding through ISA-L (the only includer of
 * isa-l/erasure_code.h), and the storage policy strings.
 *
 * ISA-L computes "rows" output vectors as GF(2^8) dot products of K input
 * vectors with a rows x K coefficient matrix, expanded by ec_init_tables()
 * into 32 bytes of lookup table per coefficient. Encoding is that product
 * with the parity rows of the encode matrix; decoding is the same product
 * with rows derived from the inverse of the K x K matrix of the shards
 * at hand.
 *
 * Decode tables are built per call, not cached. Measured (bench/ec_bench,
 * docs/PERFORMANCE.md): ~0.7 us per call for 4+2 and ~8 us for 10+4,
 * nearly all of it gf_invert_matrix(), against 0.3-0.5 ms of CPU to
 * rebuild M data shards of a 4 MiB stripe: 0.2% and 1.6% (5-7% for
 * 10+4 on 1 MiB stripes). A cache keyed by (present, wanted) would save
 * that and bring a lock, eviction and mutable shared state into a codec
 * that is otherwise read-only; worth it only if stripes shrink well below
 * 1 MiB for wide layouts.
 */
#include "echofs/ec.h"

#include "echofs/hash.h"

#include <isa-l/erasure_code.h>

/* Largest K * rows of any table: K + M <= 32 gives K * M <= 16 * 16. */
#define EC_MAX_COEFFS ((EFS_EC_MAX_SHARDS / 2) * (EFS_EC_MAX_SHARDS / 2))

struct efs_ec {
	unsigned k, m;
	/* The (K + M) x K encode matrix, row-major: identity on top, the
	 * Cauchy parity rows below. */
	unsigned char matrix[EFS_EC_MAX_SHARDS * EFS_EC_MAX_SHARDS];
	/* ec_init_tables() of the M parity rows: 32 * K * M bytes used. */
	unsigned char encode_tables[32 * EC_MAX_COEFFS];
};

int efs_ec_new(unsigned data_shards, unsigned parity_shards, struct efs_ec **out)
{
	struct efs_ec *ec;

	/* Each bounded before the sum, which could wrap. */
	if (data_shards < 1 || parity_shards < 1 || data_shards >= EFS_EC_MAX_SHARDS ||
	    parity_shards >= EFS_EC_MAX_SHARDS || data_shards + parity_shards > EFS_EC_MAX_SHARDS)
		return -EINVAL;
	if (!(ec = calloc(1, sizeof(*ec))))
		return -ENOMEM;
	ec->k = data_shards;
	ec->m = parity_shards;
	gf_gen_cauchy1_matrix(ec->matrix, (int)(ec->k + ec->m), (int)ec->k);
	ec_init_tables((int)ec->k, (int)ec->m, &ec->matrix[ec->k * ec->k], ec->encode_tables);
	*out = ec;
	return 0;
}

void efs_ec_free(struct efs_ec *ec)
{
	free(ec);
}

unsigned efs_ec_data_shards(const struct efs_ec *ec)
{
	return ec->k;
}

unsigned efs_ec_parity_shards(const struct efs_ec *ec)
{
	return ec->m;
}

int efs_ec_layout(const struct efs_ec *ec, uint64_t payload_len, struct efs_ec_layout *out)
{
	/* ceil(N / K) rounded up to the alignment, without overflowing for
	 * any N: compare in shard units before multiplying. */
	uint64_t per_shard = payload_len / ec->k + (payload_len % ec->k != 0);
	if (per_shard > EFS_EC_MAX_SHARD_LEN)
		return -E2BIG;
	per_shard = (per_shard + EFS_EC_SHARD_ALIGN - 1) / EFS_EC_SHARD_ALIGN * EFS_EC_SHARD_ALIGN;
	out->payload_len = payload_len;
	out->shard_len = (size_t)per_shard;
	out->data_shards = ec->k;
	out->parity_shards = ec->m;
	return 0;
}

size_t efs_ec_layout_data_len(const struct efs_ec_layout *layout, unsigned index)
{
	uint64_t start = (uint64_t)index * layout->shard_len;

	if (index >= layout->data_shards || start >= layout->payload_len)
		return 0;
	return (size_t)EFS_MIN((uint64_t)layout->shard_len, layout->payload_len - start);
}

void efs_ec_split(const struct efs_ec_layout *layout, const void *payload,
		  unsigned char *const data[])
{
	const unsigned char *bytes = payload;

	for (unsigned i = 0; i < layout->data_shards; i++) {
		size_t used = efs_ec_layout_data_len(layout, i);
		if (used)
			memcpy(data[i], bytes + (size_t)i * layout->shard_len, used);
		memset(data[i] + used, 0, layout->shard_len - used);
	}
}

void efs_ec_join(const struct efs_ec_layout *layout, unsigned char *const data[], void *payload)
{
	unsigned char *bytes = payload;

	for (unsigned i = 0; i < layout->data_shards; i++) {
		size_t used = efs_ec_layout_data_len(layout, i);
		if (used)
			memcpy(bytes + (size_t)i * layout->shard_len, data[i], used);
	}
}

static bool shard_len_valid(size_t shard_len)
{
	return shard_len % EFS_EC_SHARD_ALIGN == 0 && shard_len <= EFS_EC_MAX_SHARD_LEN;
}

int efs_ec_encode(const struct efs_ec *ec, size_t shard_len, unsigned char *const data[],
		  unsigned char *const parity[])
{
	if (!shard_len_valid(shard_len) || !data || !parity)
		return -EINVAL;
	for (unsigned i = 0; i < ec->k; i++)
		if (!data[i])
			return -EINVAL;
	for (unsigned i = 0; i < ec->m; i++)
		if (!parity[i])
			return -EINVAL;
	if (shard_len == 0)
		return 0;
	/* ISA-L's prototype is not const-correct: it only reads the data and
	 * the tables. */
	ec_encode_data((int)shard_len, (int)ec->k, (int)ec->m, (unsigned char *)ec->encode_tables,
		       (unsigned char **)data, (unsigned char **)parity);
	return 0;
}

int efs_ec_reconstruct(const struct efs_ec *ec, size_t shard_len, unsigned char *const shards[],
		       uint32_t present, uint32_t wanted)
{
	const unsigned k = ec->k, total = ec->k + ec->m;
	const uint32_t all = total == 32 ? UINT32_MAX : ((uint32_t)1 << total) - 1;
	unsigned char sub[EFS_EC_MAX_SHARDS * EFS_EC_MAX_SHARDS];     /* K x K of the sources */
	unsigned char inverse[EFS_EC_MAX_SHARDS * EFS_EC_MAX_SHARDS]; /* its inverse */
	unsigned char rows[EC_MAX_COEFFS];			      /* missing x K */
	unsigned char tables[32 * EC_MAX_COEFFS];
	unsigned char *sources[EFS_EC_MAX_SHARDS], *outputs[EFS_EC_MAX_SHARDS];
	unsigned nsources = 0, noutputs = 0;
	uint32_t missing;

	if (!shard_len_valid(shard_len) || !shards || (present & ~all) || (wanted & ~all))
		return -EINVAL;
	if ((unsigned)__builtin_popcount(present) < k)
		return -EIO;
	missing = wanted & ~present;
	for (unsigned i = 0; i < total; i++) {
		if (((present | missing) >> i & 1) && !shards[i])
			return -EINVAL;
	}
	if (!missing || shard_len == 0)
		return 0;

	/* The first K present shards (data shards come first, so a stripe
	 * missing only parity decodes from the identity rows). */
	for (unsigned i = 0; i < total && nsources < k; i++) {
		if (!(present >> i & 1))
			continue;
		memcpy(&sub[nsources * k], &ec->matrix[i * k], k);
		sources[nsources++] = shards[i];
	}
	/* Any K rows of [I; Cauchy] are independent, so this cannot fail;
	 * checked anyway rather than decoding garbage. */
	if (gf_invert_matrix(sub, inverse, (int)k) != 0)
		return -EIO;

	/* Each missing shard as a combination of the sources: data shard d
	 * is row d of the inverse; shard p (parity) is its encode row times
	 * the inverse (encode row p applied to the recovered data). */
	for (unsigned i = 0; i < total; i++) {
		if (!(missing >> i & 1))
			continue;
		unsigned char *row = &rows[noutputs * k];
		if (i < k) {
			memcpy(row, &inverse[i * k], k);
		} else {
			for (unsigned col = 0; col < k; col++) {
				unsigned char acc = 0;
				for (unsigned j = 0; j < k; j++)
					acc ^= gf_mul(ec->matrix[i * k + j], inverse[j * k + col]);
				row[col] = acc;
			}
		}
		outputs[noutputs++] = shards[i];
	}
	ec_init_tables((int)k, (int)noutputs, rows, tables);
	ec_encode_data((int)shard_len, (int)k, (int)noutputs, tables, sources, outputs);
	return 0;
}

uint32_t efs_ec_shard_crc(const unsigned char *shard, size_t shard_len)
{
	return efs_crc32c(0, shard, shard_len);
}

uint32_t efs_ec_verify(size_t shard_len, unsigned char *const shards[], const uint32_t crcs[],
		       unsigned count, uint32_t present)
{
	uint32_t good = 0;

	for (unsigned i = 0; i < count && i < EFS_EC_MAX_SHARDS; i++) {
		if ((present >> i & 1) && shards[i] &&
		    efs_ec_shard_crc(shards[i], shard_len) == crcs[i])
			good |= (uint32_t)1 << i;
	}
	return good;
}

/* ---- storage policies ------------------------------------------------ */

/* A decimal number of 1..2 digits at *s, no leading zero, into *out;
 * advances *s past it. False when there is none. Two digits cover every
 * cap (16 replicas, 31 shards). */
static bool parse_small(const char **s, unsigned *out)
{
	const char *p = *s;
	unsigned v = 0, digits = 0;

	while (*p >= '0' && *p <= '9') {
		if (++digits > 2 || (digits == 2 && v == 0))
			return false;
		v = v * 10 + (unsigned)(*p - '0');
		p++;
	}
	if (digits == 0)
		return false;
	*s = p;
	*out = v;
	return true;
}

static bool policy_valid(const struct efs_policy *p)
{
	switch (p->kind) {
	case EFS_POLICY_REPLICAS:
		return p->replicas >= 1 && p->replicas <= EFS_POLICY_MAX_REPLICAS;
	case EFS_POLICY_EC:
		return p->data_shards >= 1 && p->parity_shards >= 1 &&
		       p->data_shards < EFS_EC_MAX_SHARDS && p->parity_shards < EFS_EC_MAX_SHARDS &&
		       p->data_shards + p->parity_shards <= EFS_EC_MAX_SHARDS;
	}
	return false;
}

int efs_ec_policy_parse(const char *s, struct efs_policy *out)
{
	struct efs_policy p = {0};

	if (!s || strnlen(s, EFS_POLICY_MAX_LEN + 1) > EFS_POLICY_MAX_LEN)
		return -EINVAL;
	if (strncmp(s, "replicas:", 9) == 0) {
		s += 9;
		p.kind = EFS_POLICY_REPLICAS;
		if (!parse_small(&s, &p.replicas))
			return -EINVAL;
	} else if (strncmp(s, "ec:", 3) == 0) {
		s += 3;
		p.kind = EFS_POLICY_EC;
		if (!parse_small(&s, &p.data_shards) || *s++ != '+' ||
		    !parse_small(&s, &p.parity_shards))
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	if (*s != '\0' || !policy_valid(&p))
		return -EINVAL;
	*out = p;
	return 0;
}

int efs_ec_policy_format(const struct efs_policy *p, char *buf, size_t size)
{
	int n;

	if (!policy_valid(p))
		return -EINVAL;
	if (p->kind == EFS_POLICY_REPLICAS)
		n = snprintf(buf, size, "replicas:%u", p->replicas);
	else
		n = snprintf(buf, size, "ec:%u+%u", p->data_shards, p->parity_shards);
	if (n < 0 || (size_t)n >= size) {
		if (size > 0)
			buf[0] = '\0';
		return -E2BIG;
	}
	return 0;
}
