/* SPDX-License-Identifier: MIT */
/* hash.h - SHA-256 (OpenSSL, the CPU's SHA extensions) for content ids and
 * whole files, HMAC-SHA256 for SigV4; CRC32C (ISA-L) for cheap per-record checks. The only files
 * that include OpenSSL's or ISA-L's CRC headers are hash.c and codec.c. */
#ifndef ECHOFS_HASH_H
#define ECHOFS_HASH_H

#include "echofs/common.h"

#include <stdint.h>

#define EFS_SHA256_LEN 32
#define EFS_SHA256_HEX_LEN 64

/* An incremental SHA-256. */
struct efs_sha256 {
	void *ctx; /* EVP_MD_CTX */
};

/* 0 or -ENOMEM. */
int efs_sha256_init(struct efs_sha256 *h);
void efs_sha256_update(struct efs_sha256 *h, const void *data, size_t len);
/* Writes the digest as 64 lowercase hex digits plus a NUL into @hex and
 * releases the context. */
void efs_sha256_final_hex(struct efs_sha256 *h, char hex[EFS_SHA256_HEX_LEN + 1]);
/* Frees the context without a digest; NULL ctx accepted. */
void efs_sha256_release(struct efs_sha256 *h);

/* One-shot SHA-256 of a buffer, as hex. */
/* Streaming MD5 (the S3 ETag of a single PUT; not for security): init
 * (0 or -ENOMEM), update, then final_hex, which releases; release alone
 * when abandoned (NULL ctx accepted). */
#define EFS_MD5_LEN 16
#define EFS_MD5_HEX_LEN 32
struct efs_md5 {
	void *ctx; /* EVP_MD_CTX */
};
int efs_md5_init(struct efs_md5 *h);
void efs_md5_update(struct efs_md5 *h, const void *data, size_t len);
void efs_md5_final_hex(struct efs_md5 *h, char hex[EFS_MD5_HEX_LEN + 1]);
void efs_md5_release(struct efs_md5 *h);

/* Streaming SHA-1 (only for S3's x-amz-checksum-sha1, which clients may
 * send; not for security): as MD5 above. */
#define EFS_SHA1_LEN 20
#define EFS_SHA1_HEX_LEN 40
struct efs_sha1 {
	void *ctx; /* EVP_MD_CTX */
};
int efs_sha1_init(struct efs_sha1 *h);
void efs_sha1_update(struct efs_sha1 *h, const void *data, size_t len);
void efs_sha1_final_hex(struct efs_sha1 *h, char hex[EFS_SHA1_HEX_LEN + 1]);
void efs_sha1_release(struct efs_sha1 *h);

void efs_sha256_hex(const void *data, size_t len, char hex[EFS_SHA256_HEX_LEN + 1]);

/* HMAC-SHA256 of @data under @key, the raw 32-byte MAC into @mac (SigV4
 * signing keys and signatures). Cannot fail short of memory exhaustion in
 * OpenSSL, in which case @mac is zeroed: a zero MAC never verifies. */
void efs_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
		     unsigned char mac[EFS_SHA256_LEN]);

/* CRC-32 (IEEE 802.3, zlib's crc32) of @data continuing from @crc (0 to
 * start). */
uint32_t efs_crc32(uint32_t crc, const void *data, size_t len);
/* CRC32C (Castagnoli) of @data continuing from @crc (0 to start). */
uint32_t efs_crc32c(uint32_t crc, const void *data, size_t len);
/* CRC-64/NVME (polynomial 0xAD93D23594C93659 reflected, initial and final
 * value all ones: S3's CRC64NVME checksum; "123456789" is
 * 0xAE8B14860A799888) of @data continuing from @crc (0 to start). A table
 * per byte: the ISA-L of Debian 12 (2.30) has no Rocksoft CRC. */
uint64_t efs_crc64nvme(uint64_t crc, const void *data, size_t len);

/* FNV-1a of @data continuing from @h (EFS_FNV1A_INIT to start): a cheap,
 * well-spread hash for in-memory tables, not for anything an attacker
 * could aim at. */
#define EFS_FNV1A_INIT 14695981039346656037ULL
uint64_t efs_fnv1a(uint64_t h, const void *data, size_t len);

#endif
