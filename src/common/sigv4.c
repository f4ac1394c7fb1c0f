/* SPDX-License-Identifier: MIT */
/* sigv4.c - AWS Signature Version 4: canonical requests, signing keys,
 * signatures, presigned URLs, aws-chunked chunk signatures, and the strict
 * parsers a server needs to verify them.
 *
 * Why it is written here rather than left to libcurl's CURLOPT_AWS_SIGV4:
 * curl 7.88 (Debian 12) signs the path and query string as given, without
 * normalising or encoding them, so anything but the simplest URL signs
 * differently from what AWS computes; and a server needs the verifying
 * half, which curl does not have. One implementation serves both, so that
 * what the master signs and what the S3 API checks cannot drift apart.
 *
 * Every input may come from the network: each part is measured against its
 * cap before any work, the canonical request is built in a capped buffer,
 * and parsers copy into fixed-size fields only after checking lengths.
 */
#include "echofs/sigv4.h"
#include "echofs/util.h"

#include <ctype.h>
#include <time.h>

#define SCOPE_TERMINATOR "aws4_request"
#define CHUNK_ALGORITHM "AWS4-HMAC-SHA256-PAYLOAD"
#define TRAILER_ALGORITHM "AWS4-HMAC-SHA256-TRAILER"
#define HEADER_NAME_MAX 128
#define SECURITY_TOKEN_MAX 4096

static void set_reason(const char **reason, const char *why)
{
	if (reason)
		*reason = why;
}

static bool is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

/* RFC 9110 token characters. */
static bool is_tchar(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* True when the @len bytes at @s are lower-case hex digits (a NUL is not). */
static bool lower_hex_span(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* True when @s is exactly @len lower-case hex digits and its NUL. */
static bool is_lower_hex(const char *s, size_t len)
{
	return lower_hex_span(s, len) && s[len] == '\0';
}

/* 1..@max characters of [a-z0-9-]: a region or a service name. */
static bool scope_part_valid(const char *s, size_t max)
{
	size_t len = strnlen(s, max + 1);
	if (len == 0 || len > max)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

static bool access_key_valid(const char *s, size_t len)
{
	if (len == 0 || len > EFS_SIGV4_MAX_ACCESS_KEY)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!(isalnum(c) && c < 0x80) && c != '_' && c != '-')
			return false;
	}
	return true;
}

int efs_sigv4_uri_encode(struct efs_buf *out, const char *s, size_t len, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	int r = efs_buf_reserve(out, len);
	for (size_t i = 0; r == 0 && i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (is_unreserved(c) || (keep_slash && c == '/')) {
			r = efs_buf_append(out, &s[i], 1);
		} else {
			char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
			r = efs_buf_append(out, esc, 3);
		}
	}
	return r;
}

/* Appends the percent-decoding of @len bytes of @s (RFC 3986: '+' stays a
 * '+'). -EINVAL on a malformed escape, -E2BIG or -ENOMEM. */
static int percent_decode(struct efs_buf *out, const char *s, size_t len)
{
	int r = 0;
	for (size_t i = 0; r == 0 && i < len; i++) {
		char c = s[i];
		if (c == '%') {
			int hi = i + 2 < len ? efs_hex_value((unsigned char)s[i + 1]) : -1;
			int lo = hi >= 0 ? efs_hex_value((unsigned char)s[i + 2]) : -1;
			if (lo < 0)
				return -EINVAL;
			c = (char)(hi << 4 | lo);
			i += 2;
		}
		r = efs_buf_append(out, &c, 1);
	}
	return r;
}

/* ---- dates ---- */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	/* Howard Hinnant's algorithm: days since 1970-01-01, proleptic Gregorian. */
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static bool digits(const char *s, size_t n, unsigned *value)
{
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*value = v;
	return true;
}

/* Parses YYYYMMDD (8 characters at @s, not NUL-checked past them) into days
 * since the epoch. */
static bool date8_parse(const char *s, int64_t *days)
{
	static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	unsigned y, m, d;
	if (!digits(s, 4, &y) || !digits(s + 4, 2, &m) || !digits(s + 6, 2, &d))
		return false;
	if (y < 1970 || m < 1 || m > 12 || d < 1)
		return false;
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (d > mdays[m - 1] + (m == 2 && leap))
		return false;
	*days = days_from_civil(y, m, d);
	return true;
}

int efs_sigv4_amz_date_parse(const char *amz_date, int64_t *epoch_s)
{
	int64_t days;
	unsigned hh, mm, ss;
	if (!amz_date || strnlen(amz_date, EFS_SIGV4_AMZ_DATE_LEN + 1) != EFS_SIGV4_AMZ_DATE_LEN)
		return -EINVAL;
	if (!date8_parse(amz_date, &days) || amz_date[8] != 'T' || amz_date[15] != 'Z')
		return -EINVAL;
	if (!digits(amz_date + 9, 2, &hh) || !digits(amz_date + 11, 2, &mm) ||
	    !digits(amz_date + 13, 2, &ss) || hh > 23 || mm > 59 || ss > 59)
		return -EINVAL;
	*epoch_s = days * 86400 + hh * 3600 + mm * 60 + ss;
	return 0;
}

int efs_sigv4_amz_date(int64_t epoch_s, char out[EFS_SIGV4_AMZ_DATE_LEN + 1])
{
	struct tm tm;
	time_t t = (time_t)epoch_s;
	char text[64]; /* what the compiler thinks %d of any int may take */
	/* 253402300799 is 9999-12-31T23:59:59Z. */
	if (epoch_s < 0 || epoch_s > INT64_C(253402300799) || !gmtime_r(&t, &tm))
		return -EINVAL;
	snprintf(text, sizeof(text), "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	memcpy(out, text, EFS_SIGV4_AMZ_DATE_LEN);
	out[EFS_SIGV4_AMZ_DATE_LEN] = '\0';
	return 0;
}

/* ---- signing key ---- */

static void wipe(void *p, size_t len)
{
	volatile unsigned char *v = p;
	while (len--)
		*v++ = 0;
}

int efs_sigv4_key_derive(struct efs_sigv4_key *key, const char *secret, const char *date,
			 const char *region, const char *service)
{
	unsigned char k1[EFS_SHA256_LEN], k2[EFS_SHA256_LEN];
	char seed[4 + EFS_SIGV4_MAX_SECRET];
	size_t secret_len;

	if (!key || !secret || !date || strnlen(date, EFS_SIGV4_DATE_LEN) < EFS_SIGV4_DATE_LEN)
		return -EINVAL;
	secret_len = strnlen(secret, EFS_SIGV4_MAX_SECRET + 1);
	if (secret_len == 0 || secret_len > EFS_SIGV4_MAX_SECRET)
		return -EINVAL;
	int64_t days;
	if (!date8_parse(date, &days) || (date[8] && date[8] != 'T'))
		return -EINVAL;
	if (!region || !service || !scope_part_valid(region, EFS_SIGV4_MAX_REGION) ||
	    !scope_part_valid(service, EFS_SIGV4_MAX_SERVICE))
		return -EINVAL;

	memcpy(seed, "AWS4", 4);
	memcpy(seed + 4, secret, secret_len);
	efs_hmac_sha256(seed, 4 + secret_len, date, EFS_SIGV4_DATE_LEN, k1);
	efs_hmac_sha256(k1, sizeof(k1), region, strlen(region), k2);
	efs_hmac_sha256(k2, sizeof(k2), service, strlen(service), k1);
	efs_hmac_sha256(k1, sizeof(k1), SCOPE_TERMINATOR, strlen(SCOPE_TERMINATOR), key->key);
	memcpy(key->date, date, EFS_SIGV4_DATE_LEN);
	key->date[EFS_SIGV4_DATE_LEN] = '\0';
	efs_strlcpy(key->region, region, sizeof(key->region));
	efs_strlcpy(key->service, service, sizeof(key->service));
	wipe(seed, sizeof(seed));
	wipe(k1, sizeof(k1));
	wipe(k2, sizeof(k2));
	return 0;
}

bool efs_sigv4_key_matches(const struct efs_sigv4_key *key, const char *date, const char *region,
			   const char *service)
{
	return key && date && region && service &&
	       strnlen(date, EFS_SIGV4_DATE_LEN) == EFS_SIGV4_DATE_LEN &&
	       memcmp(key->date, date, EFS_SIGV4_DATE_LEN) == 0 &&
	       strcmp(key->region, region) == 0 && strcmp(key->service, service) == 0;
}

void efs_sigv4_key_wipe(struct efs_sigv4_key *key)
{
	if (key)
		wipe(key, sizeof(*key));
}

/* ---- canonical request ---- */

static bool method_valid(const char *m)
{
	size_t len = m ? strnlen(m, 17) : 0;
	if (len == 0 || len > 16)
		return false;
	for (size_t i = 0; i < len; i++)
		if (m[i] < 'A' || m[i] > 'Z')
			return false;
	return true;
}

static bool payload_hash_valid(const char *h)
{
	static const char *const named[] = {
	    EFS_SIGV4_UNSIGNED_PAYLOAD,
	    EFS_SIGV4_STREAMING_PAYLOAD,
	    "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
	    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
	};
	if (!h)
		return false;
	if (is_lower_hex(h, EFS_SHA256_HEX_LEN))
		return true;
	for (size_t i = 0; i < EFS_ARRAY_SIZE(named); i++)
		if (strcmp(h, named[i]) == 0)
			return true;
	return false;
}

/* Removes dot segments and empty segments from @path (as botocore and the
 * AWS test suite do for every service but S3), then encodes it again. */
static int canonical_path_normalised(struct efs_buf *out, const char *path, size_t len)
{
	/* Segment starts and lengths; at most one per two bytes of path. */
	size_t max_segs = len / 2 + 1, nseg = 0;
	size_t *seg_start = malloc(max_segs * sizeof(*seg_start));
	size_t *seg_len = malloc(max_segs * sizeof(*seg_len));
	int r = 0;

	if (!seg_start || !seg_len) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < len;) {
		size_t j = i;
		while (j < len && path[j] != '/')
			j++;
		size_t n = j - i;
		if (n == 0 || (n == 1 && path[i] == '.')) {
			/* empty or "." */
		} else if (n == 2 && path[i] == '.' && path[i + 1] == '.') {
			if (nseg)
				nseg--;
		} else {
			seg_start[nseg] = i;
			seg_len[nseg] = n;
			nseg++;
		}
		i = j + 1;
	}
	r = efs_buf_puts(out, "/");
	for (size_t s = 0; r == 0 && s < nseg; s++) {
		if (s)
			r = efs_buf_puts(out, "/");
		if (r == 0)
			r = efs_sigv4_uri_encode(out, path + seg_start[s], seg_len[s], false);
	}
	if (r == 0 && nseg && path[len - 1] == '/')
		r = efs_buf_puts(out, "/");
out:
	free(seg_start);
	free(seg_len);
	return r;
}

static int canonical_path(struct efs_buf *out, const char *path, unsigned flags,
			  const char **reason)
{
	size_t len = path ? strnlen(path, EFS_SIGV4_MAX_PATH + 1) : 0;
	struct efs_buf decoded;
	int r;

	if (len > EFS_SIGV4_MAX_PATH) {
		set_reason(reason, "path too long");
		return -E2BIG;
	}
	if (len == 0)
		return efs_buf_puts(out, "/");
	if (path[0] != '/') {
		set_reason(reason, "path does not start with /");
		return -EINVAL;
	}
	if (!(flags & EFS_SIGV4_S3))
		return canonical_path_normalised(out, path, len);

	/* S3: the object key as the client meant it, encoded once. */
	efs_buf_init(&decoded, EFS_SIGV4_MAX_PATH);
	r = percent_decode(&decoded, path, len);
	if (r == -EINVAL)
		set_reason(reason, "malformed percent escape in path");
	if (r == 0)
		r = efs_sigv4_uri_encode(out, decoded.data, decoded.len, true);
	efs_buf_release(&decoded);
	return r;
}

struct query_param {
	size_t name; /* offsets into the scratch buffer, NUL-terminated */
	size_t value;
};

static int query_param_cmp(const void *a, const void *b, void *arg)
{
	const struct query_param *pa = a, *pb = b;
	const char *base = arg;
	int c = strcmp(base + pa->name, base + pb->name);
	return c ? c : strcmp(base + pa->value, base + pb->value);
}

/* Appends the decoded-then-encoded @len bytes at @s and a NUL to @scratch. */
static int reencode(struct efs_buf *scratch, struct efs_buf *tmp, const char *s, size_t len)
{
	int r;
	efs_buf_reset(tmp);
	r = percent_decode(tmp, s, len);
	if (r == 0)
		r = efs_sigv4_uri_encode(scratch, tmp->data ? tmp->data : "", tmp->len, false);
	if (r == 0)
		r = efs_buf_append(scratch, "", 1);
	return r;
}

static int canonical_query(struct efs_buf *out, const char *query, unsigned flags,
			   const char **reason)
{
	size_t len = query ? strnlen(query, EFS_SIGV4_MAX_QUERY + 1) : 0;
	struct query_param params[EFS_SIGV4_MAX_QUERY_PARAMS];
	size_t count = 0;
	struct efs_buf scratch, tmp;
	int r = 0;

	if (len > EFS_SIGV4_MAX_QUERY) {
		set_reason(reason, "query string too long");
		return -E2BIG;
	}
	/* Each byte encodes to at most 3, plus a NUL per name and value. */
	efs_buf_init(&scratch, 3 * EFS_SIGV4_MAX_QUERY + 2 * EFS_SIGV4_MAX_QUERY_PARAMS + 2);
	efs_buf_init(&tmp, EFS_SIGV4_MAX_QUERY);
	for (size_t i = 0; i < len;) {
		size_t end = i, eq;
		while (end < len && query[end] != '&')
			end++;
		if (end == i) { /* "a=1&&b=2": nothing between */
			i = end + 1;
			continue;
		}
		for (eq = i; eq < end && query[eq] != '='; eq++)
			;
		if (count == EFS_SIGV4_MAX_QUERY_PARAMS) {
			set_reason(reason, "too many query parameters");
			r = -E2BIG;
			goto out;
		}
		struct query_param p = {.name = scratch.len};
		r = reencode(&scratch, &tmp, query + i, eq - i);
		if (r == 0) {
			p.value = scratch.len;
			r = reencode(&scratch, &tmp, query + eq + (eq < end),
				     end - eq - (eq < end));
		}
		if (r == -EINVAL)
			set_reason(reason, "malformed percent escape in query");
		if (r < 0)
			goto out;
		if ((flags & EFS_SIGV4_PRESIGNED) &&
		    strcmp(scratch.data + p.name, "X-Amz-Signature") == 0) {
			i = end + 1;
			continue;
		}
		params[count++] = p;
		i = end + 1;
	}
	if (count)
		qsort_r(params, count, sizeof(params[0]), query_param_cmp, scratch.data);
	for (size_t k = 0; r == 0 && k < count; k++)
		r = efs_buf_printf(out, "%s%s=%s", k ? "&" : "", scratch.data + params[k].name,
				   scratch.data + params[k].value);
out:
	efs_buf_release(&scratch);
	efs_buf_release(&tmp);
	return r;
}

struct header_entry {
	char name[HEADER_NAME_MAX + 1]; /* lower case */
	const char *value;
	size_t index; /* position in the request: keeps repeated headers in order */
};

static int header_entry_cmp(const void *a, const void *b)
{
	const struct header_entry *ha = a, *hb = b;
	int c = strcmp(ha->name, hb->name);
	if (c)
		return c;
	return ha->index < hb->index ? -1 : ha->index > hb->index;
}

/* Checks a SignedHeaders list: 1..EFS_SIGV4_MAX_SIGNED_HEADERS bytes of
 * lower-case tokens separated by ';', strictly increasing. */
static bool signed_headers_valid(const char *list, size_t len)
{
	const char *prev = NULL;
	size_t prev_len = 0;

	if (len == 0 || len > EFS_SIGV4_MAX_SIGNED_HEADERS)
		return false;
	for (size_t i = 0; i <= len;) {
		size_t j = i;
		while (j < len && list[j] != ';')
			j++;
		if (j == i || j - i > HEADER_NAME_MAX)
			return false;
		for (size_t k = i; k < j; k++) {
			unsigned char c = (unsigned char)list[k];
			if (!is_tchar(c) || (c >= 'A' && c <= 'Z'))
				return false;
		}
		if (prev) {
			size_t n = EFS_MIN(prev_len, j - i);
			int c = memcmp(prev, list + i, n);
			if (c > 0 || (c == 0 && prev_len >= j - i))
				return false;
		}
		prev = list + i;
		prev_len = j - i;
		i = j + 1;
	}
	return true;
}

/* True when @name (NUL-terminated) is one of the names in @list. */
static bool in_list(const char *list, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = list; *p;) {
		const char *e = strchr(p, ';');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && memcmp(p, name, n) == 0)
			return true;
		if (!e)
			break;
		p = e + 1;
	}
	return false;
}

/* Appends @value trimmed, with every run of spaces and tabs made one space. */
static int append_trimmed(struct efs_buf *out, const char *value)
{
	const char *s = value, *e = value + strlen(value);
	int r = 0;
	while (s < e && (*s == ' ' || *s == '\t'))
		s++;
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	while (r == 0 && s < e) {
		if (*s == ' ' || *s == '\t') {
			while (*s == ' ' || *s == '\t')
				s++;
			r = efs_buf_append(out, " ", 1);
		} else {
			r = efs_buf_append(out, s++, 1);
		}
	}
	return r;
}

/* Appends the canonical headers (each line ending in '\n') to @out and the
 * signed headers list to @signed_out. */
static int canonical_headers(const struct efs_sigv4_request *req, struct efs_buf *out,
			     struct efs_buf *signed_out, const char **reason)
{
	const char *filter = req->signed_headers;
	struct header_entry *entries = NULL;
	size_t count = 0;
	int r = 0;

	if (req->header_count > EFS_SIGV4_MAX_HEADERS) {
		set_reason(reason, "too many headers");
		return -E2BIG;
	}
	if (req->header_count && !req->headers)
		return -EINVAL;
	if (filter &&
	    !signed_headers_valid(filter, strnlen(filter, EFS_SIGV4_MAX_SIGNED_HEADERS + 1))) {
		set_reason(reason, "malformed SignedHeaders");
		return -EINVAL;
	}
	entries = calloc(req->header_count ? req->header_count : 1, sizeof(*entries));
	if (!entries)
		return -ENOMEM;
	for (size_t i = 0; i < req->header_count; i++) {
		const char *name = req->headers[i].name, *value = req->headers[i].value;
		size_t nlen = name ? strnlen(name, HEADER_NAME_MAX + 1) : 0;
		size_t vlen = value ? strnlen(value, EFS_SIGV4_MAX_HEADER_VALUE + 1) : 0;
		struct header_entry *h = &entries[count];

		if (nlen == 0 || nlen > HEADER_NAME_MAX || !value) {
			set_reason(reason,
				   value ? "malformed header name" : "header without a value");
			r = -EINVAL;
			goto out;
		}
		if (vlen > EFS_SIGV4_MAX_HEADER_VALUE) {
			set_reason(reason, "header value too long");
			r = -E2BIG;
			goto out;
		}
		for (size_t k = 0; k < nlen; k++) {
			unsigned char c = (unsigned char)name[k];
			if (!is_tchar(c)) {
				set_reason(reason, "malformed header name");
				r = -EINVAL;
				goto out;
			}
			h->name[k] = (char)tolower(c);
		}
		h->name[nlen] = '\0';
		for (size_t k = 0; k < vlen; k++) {
			unsigned char c = (unsigned char)value[k];
			if ((c < 0x20 && c != '\t') || c == 0x7f) {
				set_reason(reason, "control character in a header value");
				r = -EINVAL;
				goto out;
			}
		}
		if (filter && !in_list(filter, h->name))
			continue;
		h->value = value;
		h->index = i;
		count++;
	}
	if (count == 0) {
		set_reason(reason, "no header to sign");
		r = -EINVAL;
		goto out;
	}
	qsort(entries, count, sizeof(*entries), header_entry_cmp);
	for (size_t i = 0; r == 0 && i < count; i++) {
		bool repeat = i && strcmp(entries[i - 1].name, entries[i].name) == 0;
		if (repeat) {
			r = efs_buf_append(out, ",", 1);
		} else {
			if (i)
				r = efs_buf_append(out, "\n", 1);
			if (r == 0)
				r = efs_buf_printf(out, "%s:", entries[i].name);
			if (r == 0)
				r = efs_buf_printf(signed_out, "%s%s", signed_out->len ? ";" : "",
						   entries[i].name);
		}
		if (r == 0)
			r = append_trimmed(out, entries[i].value);
	}
	if (r == 0)
		r = efs_buf_append(out, "\n", 1);
	/* What we sign, a verifier must be able to parse back. */
	if (r == 0 && signed_out->len > EFS_SIGV4_MAX_SIGNED_HEADERS) {
		set_reason(reason, "signed headers list too long");
		r = -E2BIG;
	}
	/* Every name the client signed must be in the request. */
	if (r == 0 && filter && strcmp(filter, signed_out->data) != 0) {
		set_reason(reason, "a signed header is missing from the request");
		r = -EINVAL;
	}
out:
	free(entries);
	return r;
}

/* The canonical request into @out, the signed headers list into
 * @signed_out (both emptied first). */
static int build_canonical(const struct efs_sigv4_request *req, struct efs_buf *out,
			   struct efs_buf *signed_out, const char **reason)
{
	int r;

	set_reason(reason, NULL);
	efs_buf_reset(out);
	efs_buf_reset(signed_out);
	if (!req || !method_valid(req->method)) {
		set_reason(reason, "malformed method");
		return -EINVAL;
	}
	if (!payload_hash_valid(req->payload_hash)) {
		set_reason(reason, "malformed payload hash");
		return -EINVAL;
	}
	r = efs_buf_printf(out, "%s\n", req->method);
	if (r == 0)
		r = canonical_path(out, req->path, req->flags, reason);
	if (r == 0)
		r = efs_buf_append(out, "\n", 1);
	if (r == 0)
		r = canonical_query(out, req->query, req->flags, reason);
	if (r == 0)
		r = efs_buf_append(out, "\n", 1);
	if (r == 0)
		r = canonical_headers(req, out, signed_out, reason);
	if (r == 0)
		r = efs_buf_printf(out, "\n%s\n%s", signed_out->data, req->payload_hash);
	if (r == -E2BIG && reason && !*reason)
		*reason = "canonical request too long";
	return r;
}

int efs_sigv4_canonical_request(const struct efs_sigv4_request *req, struct efs_buf *out,
				const char **reason)
{
	struct efs_buf signed_list;
	efs_buf_init(&signed_list, EFS_SIGV4_MAX_SIGNED_HEADERS * 2);
	int r = build_canonical(req, out, &signed_list, reason);
	efs_buf_release(&signed_list);
	return r;
}

/* ---- signatures ---- */

static int check_date_and_key(const char *amz_date, const struct efs_sigv4_key *key,
			      const char **reason)
{
	int64_t t;
	if (efs_sigv4_amz_date_parse(amz_date, &t) < 0) {
		set_reason(reason, "malformed X-Amz-Date");
		return -EINVAL;
	}
	if (!key || memcmp(key->date, amz_date, EFS_SIGV4_DATE_LEN) != 0) {
		set_reason(reason, "X-Amz-Date is not the signing key's day");
		return -EINVAL;
	}
	return 0;
}

/* HMAC of @string_to_sign under @key, as hex. */
static void sign_string(const struct efs_sigv4_key *key, const char *string_to_sign, size_t len,
			char signature[EFS_SIGV4_SIGNATURE_LEN + 1])
{
	unsigned char mac[EFS_SHA256_LEN];
	efs_hmac_sha256(key->key, sizeof(key->key), string_to_sign, len, mac);
	efs_hex_encode(mac, sizeof(mac), signature);
}

/* Signs @req; the signed headers list stays in @signed_out. */
static int sign_request(const struct efs_sigv4_request *req, const char *amz_date,
			const struct efs_sigv4_key *key, struct efs_buf *signed_out,
			char signature[EFS_SIGV4_SIGNATURE_LEN + 1], const char **reason)
{
	char creq_hash[EFS_SHA256_HEX_LEN + 1];
	struct efs_buf creq, sts;
	int r = check_date_and_key(amz_date, key, reason);
	if (r < 0)
		return r;

	efs_buf_init(&creq, EFS_SIGV4_MAX_CANONICAL);
	efs_buf_init(&sts, 512);
	r = build_canonical(req, &creq, signed_out, reason);
	if (r < 0)
		goto out;
	efs_sha256_hex(creq.data, creq.len, creq_hash);
	r = efs_buf_printf(&sts, EFS_SIGV4_ALGORITHM "\n%s\n%s/%s/%s/" SCOPE_TERMINATOR "\n%s",
			   amz_date, key->date, key->region, key->service, creq_hash);
	if (r < 0)
		goto out;
	sign_string(key, sts.data, sts.len, signature);
out:
	efs_buf_release(&creq);
	efs_buf_release(&sts);
	return r;
}

int efs_sigv4_signature(const struct efs_sigv4_request *req, const char *amz_date,
			const struct efs_sigv4_key *key,
			char signature[EFS_SIGV4_SIGNATURE_LEN + 1], const char **reason)
{
	struct efs_buf signed_list;
	char sig[EFS_SIGV4_SIGNATURE_LEN + 1];
	efs_buf_init(&signed_list, EFS_SIGV4_MAX_SIGNED_HEADERS * 2);
	int r = sign_request(req, amz_date, key, &signed_list, sig, reason);
	if (r == 0)
		memcpy(signature, sig, sizeof(sig));
	efs_buf_release(&signed_list);
	return r;
}

int efs_sigv4_authorization(const struct efs_sigv4_request *req, const char *access_key_id,
			    const char *amz_date, const struct efs_sigv4_key *key,
			    struct efs_buf *out, char signature[EFS_SIGV4_SIGNATURE_LEN + 1])
{
	struct efs_buf signed_list;
	char sig[EFS_SIGV4_SIGNATURE_LEN + 1];
	int r;

	if (!access_key_id ||
	    !access_key_valid(access_key_id, strnlen(access_key_id, EFS_SIGV4_MAX_ACCESS_KEY + 1)))
		return -EINVAL;
	efs_buf_init(&signed_list, EFS_SIGV4_MAX_SIGNED_HEADERS * 2);
	r = sign_request(req, amz_date, key, &signed_list, sig, NULL);
	if (r < 0)
		goto out;
	efs_buf_reset(out);
	r = efs_buf_printf(out,
			   EFS_SIGV4_ALGORITHM " Credential=%s/%s/%s/%s/" SCOPE_TERMINATOR
					       ", SignedHeaders=%s, Signature=%s",
			   access_key_id, key->date, key->region, key->service, signed_list.data,
			   sig);
	if (r == 0 && signature)
		memcpy(signature, sig, sizeof(sig));
out:
	efs_buf_release(&signed_list);
	return r;
}

/* Appends "&name=" (no '&' when @out is empty) and @value encoded. */
static int append_param(struct efs_buf *out, const char *name, const char *value)
{
	int r = efs_buf_printf(out, "%s%s=", out->len ? "&" : "", name);
	if (r == 0)
		r = efs_sigv4_uri_encode(out, value, strlen(value), false);
	return r;
}

int efs_sigv4_presign(const struct efs_sigv4_request *req, const char *access_key_id,
		      const char *session_token, const char *amz_date, unsigned expires_s,
		      const struct efs_sigv4_key *key, struct efs_buf *out)
{
	struct efs_buf hdrs, signed_list, query, credential;
	struct efs_sigv4_request presigned;
	char sig[EFS_SIGV4_SIGNATURE_LEN + 1], expires[16];
	int r;

	if (!req || !access_key_id ||
	    !access_key_valid(access_key_id,
			      strnlen(access_key_id, EFS_SIGV4_MAX_ACCESS_KEY + 1)) ||
	    expires_s < 1 || expires_s > EFS_SIGV4_MAX_EXPIRES ||
	    (session_token && (!*session_token || strnlen(session_token, SECURITY_TOKEN_MAX + 1) >
						      SECURITY_TOKEN_MAX)))
		return -EINVAL;
	r = check_date_and_key(amz_date, key, NULL);
	if (r < 0)
		return r;

	efs_buf_init(&hdrs, EFS_SIGV4_MAX_CANONICAL);
	efs_buf_init(&signed_list, EFS_SIGV4_MAX_SIGNED_HEADERS * 2);
	efs_buf_init(&query, EFS_SIGV4_MAX_QUERY);
	efs_buf_init(&credential, 512);
	/* The signed headers list goes into the query it signs. */
	r = canonical_headers(req, &hdrs, &signed_list, NULL);
	if (r == 0 && req->query && *req->query)
		r = efs_buf_puts(&query, req->query);
	if (r == 0)
		r = efs_buf_printf(&credential, "%s/%s/%s/%s/" SCOPE_TERMINATOR, access_key_id,
				   key->date, key->region, key->service);
	snprintf(expires, sizeof(expires), "%u", expires_s);
	if (r == 0)
		r = append_param(&query, "X-Amz-Algorithm", EFS_SIGV4_ALGORITHM);
	if (r == 0)
		r = append_param(&query, "X-Amz-Credential", credential.data);
	if (r == 0)
		r = append_param(&query, "X-Amz-Date", amz_date);
	if (r == 0)
		r = append_param(&query, "X-Amz-Expires", expires);
	if (r == 0)
		r = append_param(&query, "X-Amz-SignedHeaders", signed_list.data);
	if (r == 0 && session_token)
		r = append_param(&query, "X-Amz-Security-Token", session_token);
	if (r < 0)
		goto out;
	presigned = *req;
	presigned.query = query.data;
	presigned.signed_headers = NULL;
	presigned.flags &= ~(unsigned)EFS_SIGV4_PRESIGNED;
	r = sign_request(&presigned, amz_date, key, &signed_list, sig, NULL);
	if (r == 0)
		r = append_param(&query, "X-Amz-Signature", sig);
	if (r < 0)
		goto out;
	efs_buf_reset(out);
	r = efs_buf_append(out, query.data, query.len);
out:
	efs_buf_release(&hdrs);
	efs_buf_release(&signed_list);
	efs_buf_release(&query);
	efs_buf_release(&credential);
	return r;
}

int efs_sigv4_chunk_signature(const struct efs_sigv4_key *key, const char *amz_date,
			      const char *prev_signature, const char *chunk_sha256_hex,
			      char signature[EFS_SIGV4_SIGNATURE_LEN + 1])
{
	/* Fixed parts: 24 + 16 + scope (<= 8+32+32+12+3) + 64 + 64 + 64 + 5 newlines. */
	char sts[512];
	int n;

	if (check_date_and_key(amz_date, key, NULL) < 0 || !prev_signature ||
	    !is_lower_hex(prev_signature, EFS_SIGV4_SIGNATURE_LEN) || !chunk_sha256_hex ||
	    !is_lower_hex(chunk_sha256_hex, EFS_SHA256_HEX_LEN))
		return -EINVAL;
	n = snprintf(sts, sizeof(sts),
		     CHUNK_ALGORITHM "\n%s\n%s/%s/%s/" SCOPE_TERMINATOR
				     "\n%s\n" EFS_SIGV4_EMPTY_SHA256 "\n%s",
		     amz_date, key->date, key->region, key->service, prev_signature,
		     chunk_sha256_hex);
	if (n < 0 || (size_t)n >= sizeof(sts))
		return -EINVAL;
	sign_string(key, sts, (size_t)n, signature);
	return 0;
}

int efs_sigv4_trailer_signature(const struct efs_sigv4_key *key, const char *amz_date,
				const char *prev_signature, const char *trailer_sha256_hex,
				char signature[EFS_SIGV4_SIGNATURE_LEN + 1])
{
	char sts[512]; /* 24 + 16 + scope + 64 + 64 + 4 newlines */
	int n;

	if (check_date_and_key(amz_date, key, NULL) < 0 || !prev_signature ||
	    !is_lower_hex(prev_signature, EFS_SIGV4_SIGNATURE_LEN) || !trailer_sha256_hex ||
	    !is_lower_hex(trailer_sha256_hex, EFS_SHA256_HEX_LEN))
		return -EINVAL;
	n = snprintf(sts, sizeof(sts),
		     TRAILER_ALGORITHM "\n%s\n%s/%s/%s/" SCOPE_TERMINATOR "\n%s\n%s", amz_date,
		     key->date, key->region, key->service, prev_signature, trailer_sha256_hex);
	if (n < 0 || (size_t)n >= sizeof(sts))
		return -EINVAL;
	sign_string(key, sts, (size_t)n, signature);
	return 0;
}

int efs_sigv4_chunk_header_parse(const char *line, size_t len, uint64_t max_size, uint64_t *size,
				 char signature[EFS_SIGV4_SIGNATURE_LEN + 1], const char **reason)
{
	static const char ext[] = ";chunk-signature=";
	uint64_t value = 0;
	size_t i = 0;

	if (!line) {
		set_reason(reason, "no chunk header");
		return -EINVAL;
	}
	while (i < len && efs_hex_value((unsigned char)line[i]) >= 0) {
		if (i == 16) {
			set_reason(reason, "chunk size too long");
			return -EINVAL;
		}
		value = value << 4 | (uint64_t)efs_hex_value((unsigned char)line[i]);
		i++;
	}
	if (i == 0) {
		set_reason(reason, "malformed chunk size");
		return -EINVAL;
	}
	if (!signature) { /* unsigned: the size alone */
		if (i != len) {
			set_reason(reason, "malformed unsigned chunk size");
			return -EINVAL;
		}
		if (value > max_size) {
			set_reason(reason, "chunk larger than allowed");
			return -E2BIG;
		}
		*size = value;
		return 0;
	}
	if (len - i != sizeof(ext) - 1 + EFS_SIGV4_SIGNATURE_LEN ||
	    memcmp(line + i, ext, sizeof(ext) - 1) != 0) {
		set_reason(reason, "malformed chunk-signature extension");
		return -EINVAL;
	}
	i += sizeof(ext) - 1;
	for (size_t k = 0; k < EFS_SIGV4_SIGNATURE_LEN; k++) {
		char c = line[i + k];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
			set_reason(reason, "malformed chunk signature");
			return -EINVAL;
		}
	}
	if (value > max_size) {
		set_reason(reason, "chunk larger than allowed");
		return -E2BIG;
	}
	*size = value;
	memcpy(signature, line + i, EFS_SIGV4_SIGNATURE_LEN);
	signature[EFS_SIGV4_SIGNATURE_LEN] = '\0';
	return 0;
}

/* ---- parsing what a client sent ---- */

/* Parses "<key>/<YYYYMMDD>/<region>/<service>/aws4_request" (@len bytes). */
static int credential_parse(const char *s, size_t len, struct efs_sigv4_auth *a,
			    const char **reason)
{
	const char *part[5];
	size_t plen[5], n = 0, start = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != '/')
			continue;
		if (n == 5) {
			set_reason(reason, "malformed Credential: too many parts");
			return -EINVAL;
		}
		part[n] = s + start;
		plen[n] = i - start;
		n++;
		start = i + 1;
	}
	if (n != 5) {
		set_reason(reason, "malformed Credential: too few parts");
		return -EINVAL;
	}
	if (!access_key_valid(part[0], plen[0])) {
		set_reason(reason, "malformed access key id");
		return -EINVAL;
	}
	int64_t days;
	if (plen[1] != EFS_SIGV4_DATE_LEN || !date8_parse(part[1], &days)) {
		set_reason(reason, "malformed credential date");
		return -EINVAL;
	}
	if (plen[2] == 0 || plen[2] > EFS_SIGV4_MAX_REGION || plen[3] == 0 ||
	    plen[3] > EFS_SIGV4_MAX_SERVICE) {
		set_reason(reason, "malformed credential region or service");
		return -EINVAL;
	}
	memcpy(a->region, part[2], plen[2]);
	a->region[plen[2]] = '\0';
	memcpy(a->service, part[3], plen[3]);
	a->service[plen[3]] = '\0';
	if (!scope_part_valid(a->region, EFS_SIGV4_MAX_REGION) ||
	    !scope_part_valid(a->service, EFS_SIGV4_MAX_SERVICE)) {
		set_reason(reason, "malformed credential region or service");
		return -EINVAL;
	}
	if (plen[4] != strlen(SCOPE_TERMINATOR) ||
	    memcmp(part[4], SCOPE_TERMINATOR, plen[4]) != 0) {
		set_reason(reason, "credential scope does not end in aws4_request");
		return -EINVAL;
	}
	memcpy(a->access_key_id, part[0], plen[0]);
	a->access_key_id[plen[0]] = '\0';
	memcpy(a->date, part[1], EFS_SIGV4_DATE_LEN);
	a->date[EFS_SIGV4_DATE_LEN] = '\0';
	return 0;
}

static int signed_headers_set(const char *s, size_t len, struct efs_sigv4_auth *a,
			      const char **reason)
{
	if (!signed_headers_valid(s, len)) {
		set_reason(reason, "malformed SignedHeaders");
		return -EINVAL;
	}
	memcpy(a->signed_headers, s, len);
	a->signed_headers[len] = '\0';
	if (!in_list(a->signed_headers, "host")) {
		set_reason(reason, "SignedHeaders does not include host");
		return -EINVAL;
	}
	return 0;
}

static int signature_set(const char *s, size_t len, struct efs_sigv4_auth *a, const char **reason)
{
	if (len != EFS_SIGV4_SIGNATURE_LEN || !lower_hex_span(s, len)) {
		set_reason(reason, "malformed Signature");
		return -EINVAL;
	}
	memcpy(a->signature, s, len);
	a->signature[len] = '\0';
	return 0;
}

int efs_sigv4_auth_parse(const char *authorization, struct efs_sigv4_auth *auth,
			 const char **reason)
{
	static const char prefix[] = EFS_SIGV4_ALGORITHM " ";
	struct efs_sigv4_auth a;
	bool seen[3] = {false, false, false};
	size_t len, i;

	memset(&a, 0, sizeof(a));
	if (!authorization) {
		set_reason(reason, "no Authorization header");
		return -EINVAL;
	}
	len = strnlen(authorization, EFS_SIGV4_MAX_AUTHORIZATION + 1);
	if (len > EFS_SIGV4_MAX_AUTHORIZATION) {
		set_reason(reason, "Authorization header too long");
		return -EINVAL;
	}
	if (len < sizeof(prefix) - 1 || memcmp(authorization, prefix, sizeof(prefix) - 1) != 0) {
		set_reason(reason, "Authorization is not AWS4-HMAC-SHA256");
		return -EINVAL;
	}
	i = sizeof(prefix) - 1;
	for (;;) {
		while (i < len && authorization[i] == ' ')
			i++;
		if (i == len)
			break;
		size_t name = i, eq, end;
		for (eq = i; eq < len && authorization[eq] != '=' && authorization[eq] != ','; eq++)
			;
		if (eq == len || authorization[eq] != '=') {
			set_reason(reason, "malformed Authorization component");
			return -EINVAL;
		}
		for (end = eq + 1; end < len && authorization[end] != ','; end++)
			;
		size_t vlen = end - eq - 1;
		while (vlen && authorization[eq + vlen] == ' ')
			vlen--;
		const char *value = authorization + eq + 1;
		size_t nlen = eq - name;
		int which, r;
		if (nlen == 10 && memcmp(authorization + name, "Credential", 10) == 0)
			which = 0;
		else if (nlen == 13 && memcmp(authorization + name, "SignedHeaders", 13) == 0)
			which = 1;
		else if (nlen == 9 && memcmp(authorization + name, "Signature", 9) == 0)
			which = 2;
		else {
			set_reason(reason, "unknown Authorization component");
			return -EINVAL;
		}
		if (seen[which]) {
			set_reason(reason, "repeated Authorization component");
			return -EINVAL;
		}
		seen[which] = true;
		if (which == 0)
			r = credential_parse(value, vlen, &a, reason);
		else if (which == 1)
			r = signed_headers_set(value, vlen, &a, reason);
		else
			r = signature_set(value, vlen, &a, reason);
		if (r < 0)
			return r;
		i = end;
		if (i < len) {
			i++; /* the comma */
			while (i < len && authorization[i] == ' ')
				i++;
			if (i == len) {
				set_reason(reason, "trailing comma in Authorization");
				return -EINVAL;
			}
		}
	}
	if (!seen[0] || !seen[1] || !seen[2]) {
		set_reason(reason, !seen[0]   ? "Authorization has no Credential"
				   : !seen[1] ? "Authorization has no SignedHeaders"
					      : "Authorization has no Signature");
		return -EINVAL;
	}
	*auth = a;
	return 0;
}

enum presigned_param {
	P_ALGORITHM,
	P_CREDENTIAL,
	P_DATE,
	P_EXPIRES,
	P_SIGNED_HEADERS,
	P_SIGNATURE,
	P_TOKEN,
	P_COUNT
};

int efs_sigv4_presigned_parse(const char *query, struct efs_sigv4_auth *auth, const char **reason)
{
	static const char *const names[P_COUNT] = {
	    "X-Amz-Algorithm",	   "X-Amz-Credential", "X-Amz-Date",	       "X-Amz-Expires",
	    "X-Amz-SignedHeaders", "X-Amz-Signature",  "X-Amz-Security-Token",
	};
	static const size_t caps[P_COUNT] = {
	    32,
	    256,
	    EFS_SIGV4_AMZ_DATE_LEN,
	    16,
	    EFS_SIGV4_MAX_SIGNED_HEADERS,
	    EFS_SIGV4_SIGNATURE_LEN,
	    SECURITY_TOKEN_MAX,
	};
	struct efs_buf value[P_COUNT], name;
	bool seen[P_COUNT] = {false};
	struct efs_sigv4_auth a;
	size_t len = query ? strnlen(query, EFS_SIGV4_MAX_QUERY + 1) : 0, params = 0;
	int r = 0;

	memset(&a, 0, sizeof(a));
	efs_buf_init(&name, 64);
	for (int p = 0; p < P_COUNT; p++)
		efs_buf_init(&value[p], caps[p]);
	if (len > EFS_SIGV4_MAX_QUERY) {
		set_reason(reason, "query string too long");
		r = -EINVAL;
		goto out;
	}
	for (size_t i = 0; i < len;) {
		size_t end = i, eq;
		while (end < len && query[end] != '&')
			end++;
		for (eq = i; eq < end && query[eq] != '='; eq++)
			;
		if (end > i && ++params > EFS_SIGV4_MAX_QUERY_PARAMS) {
			set_reason(reason, "too many query parameters");
			r = -EINVAL;
			goto out;
		}
		efs_buf_reset(&name);
		/* Names longer than any of ours are someone else's parameters. */
		if (end > i && eq - i <= 3 * 64 && percent_decode(&name, query + i, eq - i) == 0) {
			for (int p = 0; p < P_COUNT; p++) {
				if (!name.data || strcmp(name.data, names[p]) != 0)
					continue;
				if (seen[p]) {
					set_reason(reason, "repeated X-Amz- parameter");
					r = -EINVAL;
					goto out;
				}
				seen[p] = true;
				size_t vs = eq + (eq < end);
				r = percent_decode(&value[p], query + vs, end - vs);
				if (r < 0 || !value[p].data ||
				    strlen(value[p].data) != value[p].len) {
					set_reason(reason, r == -E2BIG
							       ? "X-Amz- parameter too long"
							       : "malformed X-Amz- parameter");
					r = -EINVAL;
					goto out;
				}
			}
		}
		i = end + 1;
	}
	if (!seen[P_ALGORITHM] && !seen[P_SIGNATURE]) {
		r = -ENOENT;
		goto out;
	}
	for (int p = 0; p < P_TOKEN; p++) {
		if (!seen[p]) {
			set_reason(reason, "presigned URL is missing an X-Amz- parameter");
			r = -EINVAL;
			goto out;
		}
	}
	if (strcmp(value[P_ALGORITHM].data, EFS_SIGV4_ALGORITHM) != 0) {
		set_reason(reason, "X-Amz-Algorithm is not AWS4-HMAC-SHA256");
		r = -EINVAL;
		goto out;
	}
	r = credential_parse(value[P_CREDENTIAL].data, value[P_CREDENTIAL].len, &a, reason);
	if (r == 0)
		r = signed_headers_set(value[P_SIGNED_HEADERS].data, value[P_SIGNED_HEADERS].len,
				       &a, reason);
	if (r == 0)
		r = signature_set(value[P_SIGNATURE].data, value[P_SIGNATURE].len, &a, reason);
	if (r < 0)
		goto out;
	int64_t t;
	if (efs_sigv4_amz_date_parse(value[P_DATE].data, &t) < 0) {
		set_reason(reason, "malformed X-Amz-Date");
		r = -EINVAL;
		goto out;
	}
	if (memcmp(value[P_DATE].data, a.date, EFS_SIGV4_DATE_LEN) != 0) {
		set_reason(reason, "X-Amz-Date is not the credential's day");
		r = -EINVAL;
		goto out;
	}
	memcpy(a.amz_date, value[P_DATE].data, EFS_SIGV4_AMZ_DATE_LEN + 1);
	if (efs_parse_u64(value[P_EXPIRES].data, false, &a.expires_s) < 0 || a.expires_s < 1 ||
	    a.expires_s > EFS_SIGV4_MAX_EXPIRES) {
		set_reason(reason, "X-Amz-Expires is not 1..604800");
		r = -EINVAL;
		goto out;
	}
	a.has_security_token = seen[P_TOKEN];
	*auth = a;
	r = 0;
out:
	efs_buf_release(&name);
	for (int p = 0; p < P_COUNT; p++)
		efs_buf_release(&value[p]);
	return r;
}

int efs_sigv4_check_time(const struct efs_sigv4_auth *auth, const char *amz_date, int64_t now_s,
			 int64_t max_skew_s, const char **reason)
{
	int64_t t;
	if (!auth || efs_sigv4_amz_date_parse(amz_date, &t) < 0 || max_skew_s < 0) {
		set_reason(reason, "malformed X-Amz-Date");
		return -EINVAL;
	}
	/* Differences in unsigned arithmetic: exact whatever @now_s is. */
	uint64_t ahead = t > now_s ? (uint64_t)t - (uint64_t)now_s : 0;
	uint64_t behind = now_s > t ? (uint64_t)now_s - (uint64_t)t : 0;
	if (ahead > (uint64_t)max_skew_s) {
		set_reason(reason, auth->expires_s ? "presigned URL not valid yet"
						   : "request time too skewed");
		return -ERANGE;
	}
	if (!auth->expires_s) {
		if (behind > (uint64_t)max_skew_s) {
			set_reason(reason, "request time too skewed");
			return -ERANGE;
		}
		return 0;
	}
	if (behind > auth->expires_s) {
		set_reason(reason, "presigned URL expired");
		return -ETIMEDOUT;
	}
	return 0;
}

bool efs_sigv4_signature_equal(const char *a, const char *b)
{
	size_t la, lb;
	unsigned char diff = 0;

	if (!a || !b)
		return false;
	la = strnlen(a, EFS_SIGV4_SIGNATURE_LEN + 1);
	lb = strnlen(b, EFS_SIGV4_SIGNATURE_LEN + 1);
	if (la != lb || la > EFS_SIGV4_SIGNATURE_LEN)
		return false;
	for (size_t i = 0; i < la; i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0;
}

int efs_sigv4_verify(const struct efs_sigv4_request *req, const struct efs_sigv4_auth *auth,
		     const char *amz_date, const struct efs_sigv4_key *key, const char **reason)
{
	struct efs_sigv4_request copy;
	char sig[EFS_SIGV4_SIGNATURE_LEN + 1];
	int r;

	if (!req || !auth || !key) {
		set_reason(reason, "nothing to verify");
		return -EINVAL;
	}
	if (!efs_sigv4_key_matches(key, auth->date, auth->region, auth->service)) {
		set_reason(reason, "signing key is for another scope");
		return -EINVAL;
	}
	copy = *req;
	copy.signed_headers = auth->signed_headers;
	r = efs_sigv4_signature(&copy, amz_date, key, sig, reason);
	if (r < 0)
		return r;
	if (!efs_sigv4_signature_equal(sig, auth->signature)) {
		set_reason(reason, "signature does not match");
		return -EACCES;
	}
	return 0;
}
