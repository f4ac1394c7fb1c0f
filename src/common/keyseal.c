/* SPDX-License-Identifier: MIT */
/* keyseal.c - AES-256-GCM sealing of stored secrets through OpenSSL EVP
 * (the one place that uses its ciphers and HKDF). */
#include "echofs/keyseal.h"
#include "echofs/util.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <string.h>

#define NONCE_LEN 12
#define TAG_LEN 16
#define PREFIX "v1:"
#define PREFIX_LEN 3

static void wipe(void *p, size_t n)
{
	volatile unsigned char *v = p;
	while (n--)
		*v++ = 0;
}

static int hex_decode(const char *hex, size_t hex_len, unsigned char *out)
{
	if (hex_len % 2)
		return -EINVAL;
	for (size_t i = 0; i < hex_len / 2; i++) {
		int hi = efs_hex_value((unsigned char)hex[2 * i]);
		int lo = efs_hex_value((unsigned char)hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

int efs_keyseal_init_hex(struct efs_keyseal *ks, const char *hex)
{
	unsigned char key[EFS_KEYSEAL_KEY_LEN];
	if (!hex || strlen(hex) != EFS_KEYSEAL_KEY_HEX_LEN ||
	    hex_decode(hex, EFS_KEYSEAL_KEY_HEX_LEN, key) < 0)
		return -EINVAL;
	memcpy(ks->key, key, sizeof(key));
	wipe(key, sizeof(key));
	return 0;
}

int efs_keyseal_init_derive(struct efs_keyseal *ks, const char *secret)
{
	static const char salt[] = "echofs-keyseal";
	static const char info[] = "echofs access key secrets v1";
	unsigned char key[EFS_KEYSEAL_KEY_LEN];
	size_t key_len = sizeof(key);
	int r = -EIO;

	if (!secret || !*secret)
		return -EINVAL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
	if (!ctx)
		return -EIO;
	if (EVP_PKEY_derive_init(ctx) != 1 || EVP_PKEY_CTX_set_hkdf_md(ctx, EVP_sha256()) != 1 ||
	    EVP_PKEY_CTX_set1_hkdf_salt(ctx, (const unsigned char *)salt, sizeof(salt) - 1) != 1 ||
	    EVP_PKEY_CTX_set1_hkdf_key(ctx, (const unsigned char *)secret, (int)strlen(secret)) !=
		1 ||
	    EVP_PKEY_CTX_add1_hkdf_info(ctx, (const unsigned char *)info, sizeof(info) - 1) != 1 ||
	    EVP_PKEY_derive(ctx, key, &key_len) != 1 || key_len != sizeof(key))
		goto out;
	memcpy(ks->key, key, sizeof(key));
	r = 0;
out:
	wipe(key, sizeof(key));
	EVP_PKEY_CTX_free(ctx);
	return r;
}

void efs_keyseal_release(struct efs_keyseal *ks)
{
	if (ks)
		wipe(ks->key, sizeof(ks->key));
}

int efs_keyseal_seal(const struct efs_keyseal *ks, const char *context, const char *plain,
		     char *out, size_t out_size)
{
	unsigned char buf[NONCE_LEN + EFS_KEYSEAL_MAX_PLAIN + TAG_LEN];
	size_t plain_len = plain ? strlen(plain) : 0;
	int len = 0, r = -EIO;

	if (!context || plain_len == 0 || plain_len > EFS_KEYSEAL_MAX_PLAIN)
		return -EINVAL;
	if (out_size < EFS_KEYSEAL_SEALED_LEN(plain_len) + 1)
		return -E2BIG;
	if ((r = efs_random_bytes(buf, NONCE_LEN)) < 0)
		return r;
	r = -EIO;
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		return -ENOMEM;
	if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
	    EVP_EncryptInit_ex(ctx, NULL, NULL, ks->key, buf) != 1 ||
	    EVP_EncryptUpdate(ctx, NULL, &len, (const unsigned char *)context,
			      (int)strlen(context)) != 1 ||
	    EVP_EncryptUpdate(ctx, buf + NONCE_LEN, &len, (const unsigned char *)plain,
			      (int)plain_len) != 1 ||
	    (size_t)len != plain_len ||
	    EVP_EncryptFinal_ex(ctx, buf + NONCE_LEN + plain_len, &len) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, buf + NONCE_LEN + plain_len) !=
		1)
		goto out;
	memcpy(out, PREFIX, PREFIX_LEN);
	efs_hex_encode(buf, NONCE_LEN + plain_len + TAG_LEN, out + PREFIX_LEN);
	r = 0;
out:
	wipe(buf, sizeof(buf));
	EVP_CIPHER_CTX_free(ctx);
	return r;
}

int efs_keyseal_open(const struct efs_keyseal *ks, const char *context, const char *sealed,
		     char *out, size_t out_size)
{
	unsigned char buf[NONCE_LEN + EFS_KEYSEAL_MAX_PLAIN + TAG_LEN];
	unsigned char plain[EFS_KEYSEAL_MAX_PLAIN];
	size_t sealed_len = sealed ? strlen(sealed) : 0;
	int len = 0, r = -EIO;

	if (!context || sealed_len < PREFIX_LEN || memcmp(sealed, PREFIX, PREFIX_LEN) != 0)
		return -EINVAL;
	size_t hex_len = sealed_len - PREFIX_LEN;
	if (hex_len % 2 || hex_len / 2 <= NONCE_LEN + TAG_LEN || hex_len / 2 > sizeof(buf))
		return -EINVAL;
	size_t n = hex_len / 2, plain_len = n - NONCE_LEN - TAG_LEN;
	if (hex_decode(sealed + PREFIX_LEN, hex_len, buf) < 0)
		return -EINVAL;
	if (out_size < plain_len + 1)
		return -E2BIG;
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		return -ENOMEM;
	if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
	    EVP_DecryptInit_ex(ctx, NULL, NULL, ks->key, buf) != 1 ||
	    EVP_DecryptUpdate(ctx, NULL, &len, (const unsigned char *)context,
			      (int)strlen(context)) != 1 ||
	    EVP_DecryptUpdate(ctx, plain, &len, buf + NONCE_LEN, (int)plain_len) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, buf + NONCE_LEN + plain_len) !=
		1)
		goto out;
	if (EVP_DecryptFinal_ex(ctx, plain + len, &len) != 1) {
		r = -EACCES; /* the tag does not match: wrong key, context or bytes */
		goto out;
	}
	if (memchr(plain, '\0', plain_len)) {
		r = -EINVAL;
		goto out;
	}
	memcpy(out, plain, plain_len);
	out[plain_len] = '\0';
	r = 0;
out:
	wipe(buf, sizeof(buf));
	wipe(plain, sizeof(plain));
	EVP_CIPHER_CTX_free(ctx);
	return r;
}
