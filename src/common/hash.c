/* SPDX-License-Identifier: MIT */
/* hash.c - SHA-256, MD5 and HMAC-SHA256 through OpenSSL, CRC32C through ISA-L. */
#include "echofs/hash.h"
#include "echofs/util.h"

#include <isa-l/crc.h>
#include <pthread.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

int efs_sha256_init(struct efs_sha256 *h)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		return -ENOMEM;
	}
	h->ctx = ctx;
	return 0;
}

void efs_sha256_update(struct efs_sha256 *h, const void *data, size_t len)
{
	if (len)
		EVP_DigestUpdate(h->ctx, data, len);
}

void efs_sha256_final_hex(struct efs_sha256 *h, char hex[EFS_SHA256_HEX_LEN + 1])
{
	unsigned char digest[EFS_SHA256_LEN];
	unsigned int n = 0;
	EVP_DigestFinal_ex(h->ctx, digest, &n);
	efs_hex_encode(digest, EFS_SHA256_LEN, hex);
	efs_sha256_release(h);
}

void efs_sha256_release(struct efs_sha256 *h)
{
	EVP_MD_CTX_free(h->ctx);
	h->ctx = NULL;
}

int efs_md5_init(struct efs_md5 *h)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestInit_ex(ctx, EVP_md5(), NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		return -ENOMEM;
	}
	h->ctx = ctx;
	return 0;
}

void efs_md5_update(struct efs_md5 *h, const void *data, size_t len)
{
	if (len)
		EVP_DigestUpdate(h->ctx, data, len);
}

void efs_md5_final_hex(struct efs_md5 *h, char hex[EFS_MD5_HEX_LEN + 1])
{
	unsigned char digest[EFS_MD5_LEN];
	unsigned int n = 0;
	EVP_DigestFinal_ex(h->ctx, digest, &n);
	efs_hex_encode(digest, EFS_MD5_LEN, hex);
	efs_md5_release(h);
}

void efs_md5_release(struct efs_md5 *h)
{
	EVP_MD_CTX_free(h->ctx);
	h->ctx = NULL;
}

int efs_sha1_init(struct efs_sha1 *h)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		return -ENOMEM;
	}
	h->ctx = ctx;
	return 0;
}

void efs_sha1_update(struct efs_sha1 *h, const void *data, size_t len)
{
	if (len)
		EVP_DigestUpdate(h->ctx, data, len);
}

void efs_sha1_final_hex(struct efs_sha1 *h, char hex[EFS_SHA1_HEX_LEN + 1])
{
	unsigned char digest[EFS_SHA1_LEN];
	unsigned int n = 0;
	EVP_DigestFinal_ex(h->ctx, digest, &n);
	efs_hex_encode(digest, EFS_SHA1_LEN, hex);
	efs_sha1_release(h);
}

void efs_sha1_release(struct efs_sha1 *h)
{
	EVP_MD_CTX_free(h->ctx);
	h->ctx = NULL;
}

void efs_sha256_hex(const void *data, size_t len, char hex[EFS_SHA256_HEX_LEN + 1])
{
	unsigned char digest[EFS_SHA256_LEN];
	unsigned int n = 0;
	EVP_Digest(data, len, digest, &n, EVP_sha256(), NULL);
	efs_hex_encode(digest, EFS_SHA256_LEN, hex);
}

void efs_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
		     unsigned char mac[EFS_SHA256_LEN])
{
	unsigned int n = 0;
	if (!HMAC(EVP_sha256(), key, (int)key_len, data, len, mac, &n) || n != EFS_SHA256_LEN)
		memset(mac, 0, EFS_SHA256_LEN);
}

uint64_t efs_fnv1a(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

uint32_t efs_crc32(uint32_t crc, const void *data, size_t len)
{
	/* crc32_gzip_refl inverts on the way in and out itself (zlib's
	 * convention): the standard CRC-32 value continues from @crc. */
	return crc32_gzip_refl(crc, (unsigned char *)data, len);
}

/* The reflected CRC-64/NVME table, built once. */
static uint64_t crc64nvme_table[256];
static pthread_once_t crc64nvme_once = PTHREAD_ONCE_INIT;

static void crc64nvme_init(void)
{
	for (unsigned i = 0; i < 256; i++) {
		uint64_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x9A6C9329AC4BC9B5ULL : c >> 1;
		crc64nvme_table[i] = c;
	}
}

uint64_t efs_crc64nvme(uint64_t crc, const void *data, size_t len)
{
	const unsigned char *p = data;
	pthread_once(&crc64nvme_once, crc64nvme_init);
	crc = ~crc;
	for (size_t i = 0; i < len; i++)
		crc = crc64nvme_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
	return ~crc;
}

uint32_t efs_crc32c(uint32_t crc, const void *data, size_t len)
{
	/* ISA-L's crc32_iscsi takes and returns the raw register; invert on
	 * the way in and out for the standard CRC32C value. */
	return ~crc32_iscsi((unsigned char *)data, (int)len, ~crc);
}
