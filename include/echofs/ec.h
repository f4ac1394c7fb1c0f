/* SPDX-License-Identifier: MIT */
/* ec.h - Reed-Solomon erasure coding over GF(2^8) (ISA-L), and the storage
 * policy strings that ask for it (issue 17).
 *
 * A stripe of N payload bytes is cut into K data shards and M parity
 * shards of one length, shard_len: any K of the K + M shards give back the
 * payload, so a stripe survives the loss of any M shards for (K + M) / K
 * times its size on disk (ec:4+2: 1.5x, against 3x for replicas:3).
 *
 * The code is systematic: data shard i holds payload bytes
 * [i * shard_len, (i + 1) * shard_len), zero-padded past N, so a healthy
 * read needs no decoding at all. The parity rows are a Cauchy matrix
 * (gf_gen_cauchy1_matrix), whose every K x K submatrix of [I; C] is
 * invertible: any K shards decode, for every K + M <= 256 (unlike the
 * Vandermonde-style gf_gen_rs_matrix, which has singular cases).
 *
 * A shard index is 0..K-1 for data and K..K+M-1 for parity. A set of
 * shards is a uint32_t mask (bit i = shard i), which is what caps K + M.
 *
 * This module is the only user of ISA-L's erasure_code.h. It does no I/O,
 * keeps no state that changes after efs_ec_new(), and never logs.
 */
#ifndef ECHOFS_EC_H
#define ECHOFS_EC_H

#include "echofs/common.h"

#include <stdbool.h>
#include <stdint.h>

/* At most 32 shards per stripe (K + M): a shard set is one uint32_t mask,
 * the per-call decode tables stay small enough for the stack (32 bytes per
 * coefficient, K * M <= 256 coefficients: 8 KiB), and a stripe needs
 * K + M distinct workers, far more than any layout in use (HDFS 6+3,
 * SeaweedFS 10+4, the widest common 17+3). GF(2^8) itself would allow 256. */
#define EFS_EC_MAX_SHARDS 32

/* shard_len is always a multiple of this: ISA-L's AVX2 / AVX-512 kernels
 * then run whole vectors from the first byte to the last. */
#define EFS_EC_SHARD_ALIGN 64

/* The longest shard: 1 GiB (ISA-L takes an int length; a stripe is a chunk
 * or a few, far below). A payload may be K times this. */
#define EFS_EC_MAX_SHARD_LEN ((size_t)1 << 30)

/* An immutable Reed-Solomon codec for one (K, M): its encode matrix and
 * encode tables, computed by efs_ec_new(). Shared by any number of threads
 * without locking: nothing in it changes after creation. */
struct efs_ec;

/* Creates the codec for @data_shards (K) and @parity_shards (M) into *out.
 * 0, -EINVAL (K < 1, M < 1 or K + M > EFS_EC_MAX_SHARDS; *out untouched)
 * or -ENOMEM. Free with efs_ec_free(). */
int efs_ec_new(unsigned data_shards, unsigned parity_shards, struct efs_ec **out);
/* Frees @ec; NULL accepted. */
void efs_ec_free(struct efs_ec *ec);

unsigned efs_ec_data_shards(const struct efs_ec *ec);	/* K */
unsigned efs_ec_parity_shards(const struct efs_ec *ec); /* M */

/* Where a payload's bytes go in a stripe. The caller keeps payload_len
 * (with the shards' location): the padding is not marked in the shards. */
struct efs_ec_layout {
	uint64_t payload_len;	/* N, the real bytes */
	size_t shard_len;	/* of every shard, data and parity */
	unsigned data_shards;	/* K */
	unsigned parity_shards; /* M */
};

/* The layout of @payload_len bytes under @ec into *out: shard_len is
 * ceil(N / K) rounded up to EFS_EC_SHARD_ALIGN (0 for an empty payload,
 * whose shards are all empty). 0, or -E2BIG when shard_len would exceed
 * EFS_EC_MAX_SHARD_LEN (*out untouched). */
int efs_ec_layout(const struct efs_ec *ec, uint64_t payload_len, struct efs_ec_layout *out);

/* How many payload bytes data shard @index holds (the rest of it is zero
 * padding): shard_len for the full ones, less for the one where the
 * payload ends, 0 for those past it, and 0 for a parity index. */
size_t efs_ec_layout_data_len(const struct efs_ec_layout *layout, unsigned index);

/* Copies @payload (layout->payload_len bytes) into the K data shards
 * @data[0..K-1], each of layout->shard_len bytes, zeroing the padding.
 * A caller whose payload already sits in one zero-padded buffer of
 * K * shard_len bytes may instead point data[i] at buffer + i * shard_len
 * and skip the copy. */
void efs_ec_split(const struct efs_ec_layout *layout, const void *payload,
		  unsigned char *const data[]);

/* Copies the payload back out of the data shards @data[0..K-1] into
 * @payload (layout->payload_len bytes). */
void efs_ec_join(const struct efs_ec_layout *layout, unsigned char *const data[], void *payload);

/* Computes the M parity shards @parity[0..M-1] from the K data shards
 * @data[0..K-1], every one @shard_len bytes (no buffer may overlap
 * another). 0, or -EINVAL when shard_len is not a multiple of
 * EFS_EC_SHARD_ALIGN or over EFS_EC_MAX_SHARD_LEN, or a pointer is NULL
 * (nothing written). Thread-safe; allocates nothing. */
int efs_ec_encode(const struct efs_ec *ec, size_t shard_len, unsigned char *const data[],
		  unsigned char *const parity[]);

/* Rebuilds shards from any K others. @shards[0..K+M-1] are shard_len
 * bytes each; @present is the set of those holding good bytes (checked
 * by the caller: see efs_ec_verify()), @wanted the set to rebuild.
 * Every shard in @wanted and not in @present is written, from the
 * first K present shards by index (data shards first, which a healthy
 * stripe has); present shards are only read. shards[i] may be NULL when
 * i is neither present nor wanted.
 * 0; -EIO when fewer than K shards are present (nothing written: a
 * stripe that lost more than M shards is reported, never guessed);
 * -EINVAL for a bad shard_len (as encode), a mask naming a shard >= K + M,
 * or a NULL buffer that is needed. The decode matrix is computed per call
 * (a K x K inversion: ~1 us for 4+2, ~8 us for 10+4; docs/PERFORMANCE.md,
 * "Erasure coding"), so the codec stays read-only; thread-safe, allocates
 * nothing. */
int efs_ec_reconstruct(const struct efs_ec *ec, size_t shard_len, unsigned char *const shards[],
		       uint32_t present, uint32_t wanted);

/* The CRC32C each shard is stored with (efs_crc32c over the whole shard,
 * padding included). */
uint32_t efs_ec_shard_crc(const unsigned char *shard, size_t shard_len);

/* Of the @count shards @shards[0..count-1] in @present, the set whose
 * CRC32C matches @crcs[i]: what may be passed to efs_ec_reconstruct() as
 * present. Shards outside @present (or NULL) are not read and never in
 * the result. */
uint32_t efs_ec_verify(size_t shard_len, unsigned char *const shards[], const uint32_t crcs[],
		       unsigned count, uint32_t present);

/* ---- storage policies ------------------------------------------------ */

/* How a file's chunks are stored: "replicas:N" (N full copies) or
 * "ec:K+M" (erasure-coded stripes). */
enum efs_policy_kind {
	EFS_POLICY_REPLICAS,
	EFS_POLICY_EC,
};

/* The most copies "replicas:N" may ask for: the master's
 * REPLICATION_FACTOR cap (EFS_MAX_REPLICATION, src/master/config.h). */
#define EFS_POLICY_MAX_REPLICAS 16

/* The longest policy string accepted, without the NUL ("replicas:16",
 * "ec:31+1"); the canonical form efs_ec_policy_format() writes fits in
 * EFS_POLICY_MAX_LEN + 1 bytes. */
#define EFS_POLICY_MAX_LEN 16

struct efs_policy {
	enum efs_policy_kind kind;
	unsigned replicas;	/* EFS_POLICY_REPLICAS: N, 1..EFS_POLICY_MAX_REPLICAS */
	unsigned data_shards;	/* EFS_POLICY_EC: K >= 1 */
	unsigned parity_shards; /* EFS_POLICY_EC: M >= 1, K + M <= EFS_EC_MAX_SHARDS */
};

/* Parses a policy string (STORAGE_POLICY, ?policy=) into *out, strictly:
 * exactly "replicas:N" or "ec:K+M", lowercase, decimal numbers without
 * sign, spaces or leading zeros (one spelling per policy, so a stored
 * string compares as the policy does), at most EFS_POLICY_MAX_LEN
 * characters, within the caps above. 0, or -EINVAL (*out untouched). The
 * string comes from the network: it is read no further than
 * EFS_POLICY_MAX_LEN + 1 bytes. */
int efs_ec_policy_parse(const char *s, struct efs_policy *out);

/* Writes the canonical string of @p ("replicas:3", "ec:4+2") into @buf of
 * @size bytes. 0, -EINVAL (@p out of the caps above) or -E2BIG (@size too
 * small; @buf then holds an empty string when size > 0). */
int efs_ec_policy_format(const struct efs_policy *p, char *buf, size_t size);

#endif
