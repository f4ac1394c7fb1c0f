/* SPDX-License-Identifier: MIT */
/* util.c - time, random ids, bounded string and number helpers. */
#include "echofs/util.h"

#include <ctype.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t efs_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t efs_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t efs_mono_ms(void)
{
	return efs_mono_ns() / 1000000;
}

void efs_sleep_ms(int64_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

char *efs_iso8601(int64_t ms, char *out)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	strftime(out, EFS_ISO8601_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return out;
}

int efs_random_bytes(void *out, size_t nbytes)
{
	unsigned char *p = out;
	while (nbytes > 0) {
		ssize_t got = getrandom(p, nbytes, 0);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += got;
		nbytes -= (size_t)got;
	}
	return 0;
}

void efs_hex_encode(const void *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *p = in;
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * len] = '\0';
}

void efs_hex_decode(const char *hex, size_t len, void *out)
{
	unsigned char *p = out;
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(efs_hex_value((unsigned char)hex[2 * i]) << 4 |
				       efs_hex_value((unsigned char)hex[2 * i + 1]));
}

int efs_hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int efs_base64_decode_exact(const char *text, void *out, size_t n)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	unsigned char bytes[EFS_BASE64_DECODE_MAX];
	size_t len = strlen(text), groups = (n + 2) / 3, pad = groups * 3 - n, o = 0;
	uint32_t acc = 0;
	if (n == 0 || n > EFS_BASE64_DECODE_MAX || len != groups * 4)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		uint32_t v = 0;
		if (i >= len - pad) {
			if (text[i] != '=')
				return -EINVAL;
		} else {
			const char *p = strchr(alphabet, text[i]);
			if (!p || !text[i])
				return -EINVAL;
			v = (uint32_t)(p - alphabet);
		}
		acc = (acc << 6) | v;
		if (i % 4 == 3) {
			unsigned char group[3] = {(unsigned char)(acc >> 16),
						  (unsigned char)(acc >> 8), (unsigned char)acc};
			size_t take = i == len - 1 ? 3 - pad : 3;
			/* what the padding covers must be zero: one encoding per value */
			for (size_t k = take; k < 3; k++)
				if (group[k])
					return -EINVAL;
			memcpy(bytes + o, group, take);
			o += take;
			acc = 0;
		}
	}
	memcpy(out, bytes, n);
	return 0;
}

int efs_random_hex(char *out, size_t nbytes)
{
	unsigned char raw[64];
	if (nbytes > sizeof(raw))
		return -EINVAL;
	int r = efs_random_bytes(raw, nbytes);
	if (r < 0)
		return r;
	efs_hex_encode(raw, nbytes, out);
	return 0;
}

int efs_ordered_hex(char *out, size_t nbytes)
{
	unsigned char raw[64];
	if (nbytes <= 6 || nbytes > sizeof(raw))
		return -EINVAL;
	int r = efs_random_bytes(raw + 6, nbytes - 6);
	if (r < 0)
		return r;
	uint64_t ms = (uint64_t)efs_now_ms();
	for (int i = 5; i >= 0; i--, ms >>= 8)
		raw[i] = (unsigned char)ms;
	efs_hex_encode(raw, nbytes, out);
	return 0;
}

int efs_array_reserve(void **items, size_t *alloc, size_t count, size_t elem, size_t first)
{
	if (count < *alloc)
		return 0;
	size_t grown_to = *alloc ? *alloc * 2 : first;
	if (grown_to < *alloc || grown_to > SIZE_MAX / elem)
		return -ENOMEM;
	void *grown = realloc(*items, grown_to * elem);
	if (!grown)
		return -ENOMEM;
	*items = grown;
	*alloc = grown_to;
	return 0;
}

size_t efs_strlcpy(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);
	if (size > 0) {
		size_t n = len < size - 1 ? len : size - 1;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

int efs_parse_u64(const char *s, bool allow_suffix, uint64_t *out)
{
	uint64_t value = 0;
	const char *p = s;

	if (!s || !isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		unsigned digit = (unsigned)(*p - '0');
		if (value > (UINT64_MAX - digit) / 10)
			return -ERANGE;
		value = value * 10 + digit;
	}
	if (*p && allow_suffix) {
		unsigned shift;
		switch (*p) {
		case 'K': case 'k': shift = 10; break;
		case 'M': case 'm': shift = 20; break;
		case 'G': case 'g': shift = 30; break;
		case 'T': case 't': shift = 40; break;
		default: return -EINVAL;
		}
		p++;
		if (*p == 'i' && p[1] == 'B')
			p += 2;
		else if (*p == 'B')
			p++;
		if (value > (UINT64_MAX >> shift))
			return -ERANGE;
		value <<= shift;
	}
	if (*p)
		return -EINVAL;
	*out = value;
	return 0;
}

bool efs_id_valid(const char *s)
{
	size_t n = 0;
	if (!s)
		return false;
	for (; s[n]; n++) {
		char c = s[n];
		if (n >= EFS_ID_MAX)
			return false;
		if (!(isalnum((unsigned char)c) || c == '_' || c == '-'))
			return false;
	}
	return n > 0;
}

bool efs_zone_valid(const char *s)
{
	size_t n = 0;
	if (!s)
		return false;
	for (; s[n]; n++) {
		char c = s[n];
		if (n >= EFS_ZONE_MAX)
			return false;
		if (!(isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.'))
			return false;
	}
	return true;
}

/* True when @s is exactly @len lowercase hex digits. */
static bool lower_hex(const char *s, size_t len)
{
	size_t n = 0;
	if (!s)
		return false;
	for (; s[n]; n++) {
		if (n >= len)
			return false;
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
			return false;
	}
	return n == len;
}

bool efs_chunk_id_valid(const char *s)
{
	return lower_hex(s, 64);
}

bool efs_cluster_id_valid(const char *s)
{
	return lower_hex(s, EFS_CLUSTER_ID_LEN);
}

bool efs_secret_equal(const char *a, const char *b)
{
	unsigned char ha[SHA256_DIGEST_LENGTH], hb[SHA256_DIGEST_LENGTH];
	if (!a || !b)
		return false;
	SHA256((const unsigned char *)a, strlen(a), ha);
	SHA256((const unsigned char *)b, strlen(b), hb);
	return CRYPTO_memcmp(ha, hb, sizeof(ha)) == 0;
}

bool efs_utf8_valid(const void *data, size_t len)
{
	const unsigned char *s = data;
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t follow;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			follow = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			follow = 2, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			follow = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (follow > len - i - 1)
			return false;
		for (size_t k = 1; k <= follow; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		/* No overlong forms, surrogates or values past U+10FFFF. */
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += follow + 1;
	}
	return true;
}

bool efs_name_valid(const char *s, size_t max_len)
{
	if (!s || !*s)
		return false;
	size_t n = 0;
	for (; s[n]; n++) {
		unsigned char c = (unsigned char)s[n];
		if (c < 0x20 || c == 0x7f)
			return false;
		if (n >= max_len)
			return false; /* too long: stop before reading the rest */
	}
	return efs_utf8_valid(s, n);
}

int efs_mkdir_p(const char *path)
{
	char tmp[PATH_MAX];
	if (efs_strlcpy(tmp, path, sizeof(tmp)) >= sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int fsync_parent_dir(const char *path)
{
	char dir[PATH_MAX];
	if (efs_strlcpy(dir, path, sizeof(dir)) >= sizeof(dir))
		return -ENAMETOOLONG;
	char *slash = strrchr(dir, '/');
	if (!slash)
		efs_strlcpy(dir, ".", sizeof(dir));
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return r;
}

int efs_write_file_atomic(const char *path, const void *data, size_t len)
{
	char tmp[PATH_MAX], suffix[17];
	int r = efs_random_hex(suffix, 8);
	if (r < 0)
		return r;
	/* A random suffix: two writers of one path never share a temp file. */
	int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%s", path, suffix);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -ENAMETOOLONG;

	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	const char *p = data;
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto fail;
		}
		p += w;
		len -= (size_t)w;
	}
	if (fsync(fd) < 0) {
		r = -errno;
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		r = -errno;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		r = -errno;
		goto fail;
	}
	return fsync_parent_dir(path);
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return r;
}

long efs_read_file(const char *path, char *out, size_t cap)
{
	long r;
	if (cap == 0)
		return -E2BIG;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t len = 0;
	for (;;) {
		if (len + 1 >= cap) {
			char extra;
			ssize_t more = read(fd, &extra, 1);
			r = more > 0 ? -E2BIG : (more < 0 ? -errno : (long)len);
			goto out;
		}
		ssize_t got = read(fd, out + len, cap - 1 - len);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto out;
		}
		if (got == 0) {
			r = (long)len;
			goto out;
		}
		len += (size_t)got;
	}
out:
	if (r >= 0)
		out[len] = '\0';
	close(fd);
	return r;
}
