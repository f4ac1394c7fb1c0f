/* SPDX-License-Identifier: MIT */
/* fuzz_sigv4.c - libFuzzer harness for the SigV4 parsers and canonicaliser
 * (src/common/sigv4.c), which will read an S3 client's request.
 *
 * Input: a mode byte, then bytes.
 *   mode 0: an Authorization header value (efs_sigv4_auth_parse);
 *   mode 1: a presigned URL's query (efs_sigv4_presigned_parse), then the
 *     request it signs verified (canonical query of untrusted bytes);
 *   mode 2: an aws-chunked chunk header line (efs_sigv4_chunk_header_parse),
 *     the first 4 bytes being the caller's size cap;
 *   mode 3: a request, "method\0path\0query\0name\0value\0name\0value..."
 *     canonicalised with S3's rules and the others', signed, and verified.
 * Checked beyond the sanitizers:
 *   - each function returns only what sigv4.h lists, a reason with every
 *     -EINVAL, and leaves its outputs untouched on failure;
 *   - a parsed Authorization has the documented shape, and printed back in
 *     the canonical form it parses to the same fields;
 *   - a parsed presigned query has 1 <= expires <= 7 days and an X-Amz-Date
 *     on the credential's day;
 *   - a parsed chunk header has size <= the cap and a 64-hex signature;
 *   - a request that signs verifies against its own Authorization, and no
 *     longer does with one signature digit changed.
 * Build and run: make fuzz; bin/fuzz_sigv4 tests/fuzz/corpus/sigv4
 */
#include "echofs/sigv4.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define AMZ_DATE "20130524T000000Z"

static bool hex64(const char *s)
{
	if (strlen(s) != EFS_SIGV4_SIGNATURE_LEN)
		return false;
	for (size_t i = 0; i < EFS_SIGV4_SIGNATURE_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static void check_auth_shape(const struct efs_sigv4_auth *a)
{
	int64_t t;
	char amz[EFS_SIGV4_AMZ_DATE_LEN + 1];
	if (!a->access_key_id[0] || !a->region[0] || !a->service[0] || !hex64(a->signature))
		abort();
	snprintf(amz, sizeof(amz), "%sT000000Z", a->date);
	if (efs_sigv4_amz_date_parse(amz, &t) != 0)
		abort();
	/* host is always signed, as a whole item of the list. */
	bool host = false;
	for (const char *p = a->signed_headers; *p;) {
		size_t n = strcspn(p, ";");
		host |= n == 4 && memcmp(p, "host", 4) == 0;
		p += n + (p[n] == ';');
	}
	if (!host)
		abort();
}

static void fuzz_authorization(const char *value)
{
	struct efs_sigv4_auth auth, again;
	const char *reason = NULL;
	memset(&auth, 0xa5, sizeof(auth));
	struct efs_sigv4_auth before = auth;
	int r = efs_sigv4_auth_parse(value, &auth, &reason);
	if (r == -EINVAL) {
		if (!reason || memcmp(&auth, &before, sizeof(auth)) != 0)
			abort();
		return;
	}
	if (r != 0)
		abort();
	check_auth_shape(&auth);
	char printed[EFS_SIGV4_MAX_AUTHORIZATION + 1];
	int n = snprintf(printed, sizeof(printed),
			 EFS_SIGV4_ALGORITHM
			 " Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, Signature=%s",
			 auth.access_key_id, auth.date, auth.region, auth.service,
			 auth.signed_headers, auth.signature);
	if (n < 0 || (size_t)n >= sizeof(printed))
		return; /* the canonical form of a long list may pass the cap */
	if (efs_sigv4_auth_parse(printed, &again, &reason) != 0 ||
	    memcmp(&auth, &again, sizeof(auth)) != 0)
		abort();
}

static void fuzz_presigned(const char *query)
{
	struct efs_sigv4_auth auth;
	const char *reason = NULL;
	memset(&auth, 0xa5, sizeof(auth));
	struct efs_sigv4_auth before = auth;
	int r = efs_sigv4_presigned_parse(query, &auth, &reason);
	if (r == -EINVAL || r == -ENOENT) {
		if ((r == -EINVAL && !reason) || memcmp(&auth, &before, sizeof(auth)) != 0)
			abort();
		return;
	}
	if (r != 0)
		abort();
	check_auth_shape(&auth);
	if (auth.expires_s < 1 || auth.expires_s > EFS_SIGV4_MAX_EXPIRES ||
	    memcmp(auth.amz_date, auth.date, EFS_SIGV4_DATE_LEN) != 0)
		abort();

	struct efs_sigv4_key key;
	if (efs_sigv4_key_derive(&key, SECRET, auth.date, auth.region, auth.service) != 0)
		abort(); /* the parser accepted the scope: the key must derive */
	const struct efs_sigv4_header headers[] = {{"Host", "127.0.0.1:9000"}};
	const struct efs_sigv4_request req = {
	    .method = "GET",
	    .path = "/b/k",
	    .query = query,
	    .headers = headers,
	    .header_count = 1,
	    .payload_hash = EFS_SIGV4_UNSIGNED_PAYLOAD,
	    .flags = EFS_SIGV4_S3 | EFS_SIGV4_PRESIGNED,
	};
	r = efs_sigv4_verify(&req, &auth, auth.amz_date, &key, &reason);
	if (r != -EACCES && r != -EINVAL && r != -E2BIG)
		abort(); /* 0 would be a forged signature */
}

static void fuzz_chunk_header(const uint8_t *data, size_t size)
{
	uint32_t cap = 0;
	uint64_t chunk_size = 12345;
	char sig[EFS_SIGV4_SIGNATURE_LEN + 1] = "untouched";
	const char *reason = NULL;
	if (size < 4)
		return;
	memcpy(&cap, data, 4);
	int r = efs_sigv4_chunk_header_parse((const char *)data + 4, size - 4, cap, &chunk_size,
					     sig, &reason);
	if (r == -EINVAL || r == -E2BIG) {
		if (!reason || chunk_size != 12345 || strcmp(sig, "untouched") != 0)
			abort();
		return;
	}
	if (r != 0 || chunk_size > cap || !hex64(sig))
		abort();
}

#define MAX_FUZZ_HEADERS 16

static void fuzz_request(const char *data, size_t size)
{
	const char *field[3 + 2 * MAX_FUZZ_HEADERS];
	size_t nfield = 0, start = 0;
	for (size_t i = 0; i <= size && nfield < EFS_ARRAY_SIZE(field); i++) {
		if (i == size || data[i] == '\0') {
			field[nfield++] = data + start;
			start = i + 1;
		}
	}
	if (nfield < 3)
		return;
	struct efs_sigv4_header headers[MAX_FUZZ_HEADERS + 2];
	size_t nh = 0;
	headers[nh++] = (struct efs_sigv4_header){"host", "example.com"};
	headers[nh++] = (struct efs_sigv4_header){"x-amz-date", AMZ_DATE};
	for (size_t f = 3; f + 1 < nfield; f += 2)
		headers[nh++] = (struct efs_sigv4_header){field[f], field[f + 1]};

	struct efs_sigv4_key key;
	if (efs_sigv4_key_derive(&key, SECRET, AMZ_DATE, "us-east-1", "s3") != 0)
		abort();
	for (int s3 = 0; s3 < 2; s3++) {
		struct efs_sigv4_request req = {
		    .method = field[0],
		    .path = field[1],
		    .query = field[2],
		    .headers = headers,
		    .header_count = nh,
		    .payload_hash = EFS_SIGV4_EMPTY_SHA256,
		    .flags = s3 ? EFS_SIGV4_S3 : 0,
		};
		struct efs_buf out;
		const char *reason = NULL;
		efs_buf_init(&out, EFS_SIGV4_MAX_CANONICAL);
		int r = efs_sigv4_canonical_request(&req, &out, &reason);
		if (r != 0 && r != -EINVAL && r != -E2BIG)
			abort();
		if (r == -EINVAL && !reason)
			abort();
		if (r == 0 && out.len > EFS_SIGV4_MAX_CANONICAL)
			abort();

		char sig[EFS_SIGV4_SIGNATURE_LEN + 1];
		int rs = efs_sigv4_authorization(&req, "AKIAIOSFODNN7EXAMPLE", AMZ_DATE, &key, &out,
						 sig);
		if ((rs == 0) != (r == 0))
			abort(); /* signing fails exactly when canonicalising does */
		if (rs == 0) {
			struct efs_sigv4_auth auth;
			if (efs_sigv4_auth_parse(out.data, &auth, &reason) != 0)
				abort();
			if (efs_sigv4_verify(&req, &auth, AMZ_DATE, &key, &reason) != 0)
				abort();
			auth.signature[0] = auth.signature[0] == '0' ? '1' : '0';
			if (efs_sigv4_verify(&req, &auth, AMZ_DATE, &key, &reason) != -EACCES)
				abort();
		}
		efs_buf_release(&out);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 64 * 1024)
		return 0;
	unsigned mode = data[0] % 4;
	data++;
	size--;
	if (mode == 2) {
		fuzz_chunk_header(data, size);
		return 0;
	}
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (mode == 0)
		fuzz_authorization(text);
	else if (mode == 1)
		fuzz_presigned(text);
	else
		fuzz_request(text, size);
	free(text);
	return 0;
}
