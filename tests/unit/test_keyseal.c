/* SPDX-License-Identifier: MIT */
/* test_keyseal.c - unit tests of src/common/keyseal.c: AES-256-GCM sealing
 * round trips, a fresh nonce each time, and every way a sealed value can
 * be wrong (key, context, bytes, form). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "echofs/keyseal.h"

#include <errno.h>
#include <string.h>

#define KEY_HEX "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define CONTEXT "EKTESTKEY00000000001"

static void test_round_trip_and_fresh_nonce(void **state)
{
	struct efs_keyseal ks;
	char a[256], b[256], out[64];
	(void)state;
	assert_int_equal(efs_keyseal_init_hex(&ks, KEY_HEX), 0);
	assert_int_equal(efs_keyseal_seal(&ks, CONTEXT, SECRET, a, sizeof(a)), 0);
	assert_int_equal(strlen(a), EFS_KEYSEAL_SEALED_LEN(strlen(SECRET)));
	assert_memory_equal(a, "v1:", 3);
	assert_null(strstr(a, SECRET));
	assert_int_equal(efs_keyseal_open(&ks, CONTEXT, a, out, sizeof(out)), 0);
	assert_string_equal(out, SECRET);
	/* the same secret sealed again: another nonce, another ciphertext */
	assert_int_equal(efs_keyseal_seal(&ks, CONTEXT, SECRET, b, sizeof(b)), 0);
	assert_string_not_equal(a, b);
	assert_memory_not_equal(a + 3, b + 3, 24);
	assert_int_equal(efs_keyseal_open(&ks, CONTEXT, b, out, sizeof(out)), 0);
	assert_string_equal(out, SECRET);
	efs_keyseal_release(&ks);
}

static void test_wrong_key_context_or_bytes(void **state)
{
	struct efs_keyseal ks, other, derived, derived2;
	char sealed[256], bad[256], out[64] = "untouched";
	(void)state;
	assert_int_equal(efs_keyseal_init_hex(&ks, KEY_HEX), 0);
	assert_int_equal(efs_keyseal_init_derive(&other, "a-jwt-secret"), 0);
	assert_int_equal(efs_keyseal_seal(&ks, CONTEXT, SECRET, sealed, sizeof(sealed)), 0);

	assert_int_equal(efs_keyseal_open(&other, CONTEXT, sealed, out, sizeof(out)), -EACCES);
	assert_int_equal(efs_keyseal_open(&ks, "EKTESTKEY00000000002", sealed, out, sizeof(out)),
			 -EACCES);
	assert_string_equal(out, "untouched");
	/* every byte of nonce, ciphertext and tag is covered */
	for (size_t i = 3; i < strlen(sealed); i++) {
		memcpy(bad, sealed, sizeof(bad));
		bad[i] = bad[i] == '0' ? '1' : '0';
		int r = efs_keyseal_open(&ks, CONTEXT, bad, out, sizeof(out));
		if (r != -EACCES)
			fail_msg("hex digit %zu changed: %d", i, r);
	}
	/* malformed */
	assert_int_equal(efs_keyseal_open(&ks, CONTEXT, "v2:00", out, sizeof(out)), -EINVAL);
	assert_int_equal(efs_keyseal_open(&ks, CONTEXT, "v1:0011", out, sizeof(out)), -EINVAL);
	memcpy(bad, sealed, sizeof(bad));
	bad[10] = 'x';
	assert_int_equal(efs_keyseal_open(&ks, CONTEXT, bad, out, sizeof(out)), -EINVAL);
	memcpy(bad, sealed, sizeof(bad));
	bad[strlen(bad) - 1] = '\0';
	assert_int_equal(efs_keyseal_open(&ks, CONTEXT, bad, out, sizeof(out)), -EINVAL);
	assert_int_equal(efs_keyseal_open(&ks, CONTEXT, sealed, out, 10), -E2BIG);
	assert_int_equal(efs_keyseal_seal(&ks, CONTEXT, SECRET, bad, 20), -E2BIG);
	assert_int_equal(efs_keyseal_seal(&ks, CONTEXT, "", bad, sizeof(bad)), -EINVAL);

	/* derivation: deterministic, and a function of the secret */
	assert_int_equal(efs_keyseal_init_derive(&derived, "a-jwt-secret"), 0);
	assert_memory_equal(derived.key, other.key, EFS_KEYSEAL_KEY_LEN);
	assert_int_equal(efs_keyseal_init_derive(&derived2, "a-jwt-secreT"), 0);
	assert_memory_not_equal(derived.key, derived2.key, EFS_KEYSEAL_KEY_LEN);
	assert_int_equal(efs_keyseal_init_derive(&derived2, ""), -EINVAL);
}

static void test_hex_key_form(void **state)
{
	struct efs_keyseal ks;
	(void)state;
	assert_int_equal(efs_keyseal_init_hex(&ks, KEY_HEX), 0);
	assert_int_equal(ks.key[0], 0);
	assert_int_equal(ks.key[31], 0x1f);
	assert_int_equal(efs_keyseal_init_hex(&ks, "00"), -EINVAL);
	assert_int_equal(efs_keyseal_init_hex(&ks, KEY_HEX "00"), -EINVAL);
	assert_int_equal(
	    efs_keyseal_init_hex(&ks,
				 "g00102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1"),
	    -EINVAL);
	assert_int_equal(efs_keyseal_init_hex(&ks, NULL), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip_and_fresh_nonce),
	    cmocka_unit_test(test_wrong_key_context_or_bytes),
	    cmocka_unit_test(test_hex_key_form),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
