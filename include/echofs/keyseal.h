/* SPDX-License-Identifier: MIT */
/* keyseal.h - secrets sealed at rest: AES-256-GCM (OpenSSL EVP) with a
 * fresh random 96-bit nonce per seal, for the S3 access keys' secrets that
 * the metadata store keeps.
 *
 * The sealing key is 32 bytes: KEYS_ENCRYPTION_KEY (64 hex digits) when
 * set, otherwise derived from JWT_SECRET with HKDF-SHA256 (so rotating
 * JWT_SECRET without setting KEYS_ENCRYPTION_KEY makes every stored secret
 * unreadable: docs/S3.md#encryption-at-rest). A sealed value is text, fit
 * for any store: "v1:" then the hex of nonce (12 bytes), ciphertext and
 * tag (16 bytes). It is bound to a context string (the access key id, as
 * GCM's additional data): a sealed secret copied onto another key's row
 * does not open.
 *
 * Every function returns 0 or a negative errno and leaves out-parameters
 * untouched on failure (a failed open writes nothing).
 */
#ifndef ECHOFS_KEYSEAL_H
#define ECHOFS_KEYSEAL_H

#include <stddef.h>

#define EFS_KEYSEAL_KEY_LEN 32
#define EFS_KEYSEAL_KEY_HEX_LEN 64
#define EFS_KEYSEAL_MAX_PLAIN 256 /* longest secret sealed */
/* The length of a sealed value of @plain_len bytes, without the NUL. */
#define EFS_KEYSEAL_SEALED_LEN(plain_len) (3 + 2 * (12 + (plain_len) + 16))

struct efs_keyseal {
	unsigned char key[EFS_KEYSEAL_KEY_LEN];
};

/* The key from @hex: exactly 64 hex digits (either case). 0 or -EINVAL. */
int efs_keyseal_init_hex(struct efs_keyseal *ks, const char *hex);
/* The key derived from @secret (JWT_SECRET, non-empty) with HKDF-SHA256
 * (salt "echofs-keyseal", info "echofs access key secrets v1"). 0, -EINVAL
 * (empty) or -EIO (OpenSSL failed). */
int efs_keyseal_init_derive(struct efs_keyseal *ks, const char *secret);
/* Forgets the key (memset the compiler keeps). NULL accepted. */
void efs_keyseal_release(struct efs_keyseal *ks);

/* Seals @plain (NUL-terminated, 1..EFS_KEYSEAL_MAX_PLAIN bytes) bound to
 * @context into @out of @out_size bytes. 0, -EINVAL, -E2BIG (@out too
 * small: it needs EFS_KEYSEAL_SEALED_LEN(strlen(plain)) + 1), -EIO. */
int efs_keyseal_seal(const struct efs_keyseal *ks, const char *context, const char *plain,
		     char *out, size_t out_size);
/* Opens @sealed (as efs_keyseal_seal wrote it) for @context into @out of
 * @out_size bytes (NUL-terminated). 0, -EINVAL (malformed), -EACCES (the
 * wrong key or context, or tampered with), -E2BIG (@out too small), -EIO. */
int efs_keyseal_open(const struct efs_keyseal *ks, const char *context, const char *sealed,
		     char *out, size_t out_size);

#endif
