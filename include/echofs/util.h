/* SPDX-License-Identifier: MIT */
/* util.h - time, random ids, bounded string and number helpers. */
#ifndef ECHOFS_UTIL_H
#define ECHOFS_UTIL_H

#include "echofs/common.h"

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

/* Wall-clock time in milliseconds since the Unix epoch. */
int64_t efs_now_ms(void);
/* Monotonic time in milliseconds, for durations and timeouts. */
int64_t efs_mono_ms(void);
/* Monotonic time in nanoseconds. */
int64_t efs_mono_ns(void);
/* Sleeps for @ms milliseconds (restarted after signals). */
void efs_sleep_ms(int64_t ms);

/* Writes @ms (Unix epoch ms) as "2026-11-26T10:00:00Z" into @out, which
 * holds at least EFS_ISO8601_LEN bytes. Returns @out. */
#define EFS_ISO8601_LEN 32
char *efs_iso8601(int64_t ms, char *out);

/* Fills @out with @nbytes random bytes from the kernel. 0 or -errno. */
int efs_random_bytes(void *out, size_t nbytes);
/* Writes a random id of 2 * @nbytes lowercase hex digits and a NUL into @out
 * (size >= 2 * nbytes + 1). 0 or -errno. */
int efs_random_hex(char *out, size_t nbytes);
/* As efs_random_hex, for ids that become B-tree keys (file and session
 * ids): the first 6 bytes are the Unix time in ms (big-endian, 48 bits,
 * until the year 10889), the other @nbytes - 6 random (@nbytes > 6). An
 * id made later sorts after one made earlier (within one ms, at random),
 * so the indexes keyed by them (files, file_chunks, sessions,
 * session_chunks) take each new row at their right edge instead of on a
 * random leaf: fewer pages written per upload, in SQLite's WAL and
 * PostgreSQL's (docs/PERFORMANCE.md, "Fewer index pages per 4 KiB
 * upload"). A clock stepped back only costs that locality. The id tells
 * when it was made, as its row's created_at does. 0 or -errno. */
int efs_ordered_hex(char *out, size_t nbytes);

/* Writes @len bytes of @in as lowercase hex plus a NUL into @out
 * (size >= 2 * len + 1). */
void efs_hex_encode(const void *in, size_t len, char *out);

/* Decodes @text, the standard base64 (RFC 4648 section 4, with its "="
 * padding) of exactly @n bytes (1..EFS_BASE64_DECODE_MAX: a digest in a
 * header), into @out. 0, or -EINVAL (another length, a character outside
 * the alphabet, padding in the wrong place or over non-zero bits: each
 * value has one accepted encoding); @out untouched on failure. */
#define EFS_BASE64_DECODE_MAX 64
int efs_base64_decode_exact(const char *text, void *out, size_t n);

/* The value of one hex digit (either case), or -1 when @c is not one. */
int efs_hex_value(unsigned char c);

/* Writes the @len bytes that the 2 * @len hex digits (either case) of
 * @hex stand for into @out. @hex must be checked by the caller (every
 * digit valid): efs_hex_encode's inverse for hex we made or validated. */
void efs_hex_decode(const char *hex, size_t len, void *out);

/* Copies @src into @dst of @size bytes, always NUL-terminated when size > 0.
 * Returns strlen(src); a value >= size means it was truncated. */
size_t efs_strlcpy(char *dst, const char *src, size_t size);

/* Makes room for one more element in the array *@items of *@alloc
 * elements of @elem bytes, @count of them used: when full, reallocates it
 * to twice the size (@first elements the first time). 0, or -ENOMEM with
 * the array untouched. */
int efs_array_reserve(void **items, size_t *alloc, size_t count, size_t elem, size_t first);

/* Parses a whole decimal string (no sign, no spaces, no trailing garbage)
 * into @out. An optional binary suffix K, M, G or T (KiB...) multiplies it
 * when @allow_suffix. 0, -EINVAL (not a number) or -ERANGE (overflow). */
int efs_parse_u64(const char *s, bool allow_suffix, uint64_t *out);

/* True when @s is 1..EFS_ID_MAX characters of [A-Za-z0-9_-]. Ids that pass
 * are safe in paths, URLs, SQL text and log lines. */
bool efs_id_valid(const char *s);

/* True when @s is a worker zone (WORKER_ZONE): "" (no zone: the worker is
 * a failure domain of its own) or 1..EFS_ZONE_MAX characters of
 * [A-Za-z0-9._-]. Zones that pass are safe in SQL text, JSON and logs. */
bool efs_zone_valid(const char *s);

/* True when @s is exactly 64 lowercase hex digits (a SHA-256 chunk id). */
bool efs_chunk_id_valid(const char *s);
/* True when @s is exactly EFS_CLUSTER_ID_LEN lowercase hex digits. */
bool efs_cluster_id_valid(const char *s);

/* Compares two secrets in time independent of where they differ (and of
 * their lengths, which are hashed first). */
bool efs_secret_equal(const char *a, const char *b);

/* True when the @len bytes at @data are well-formed UTF-8: no overlong
 * forms, surrogates, values past U+10FFFF or cut sequences. Any byte below
 * 0x80 (NUL and controls too) is accepted: callers refuse what they must. */
bool efs_utf8_valid(const void *data, size_t len);

/* True when @s is valid UTF-8 (efs_utf8_valid) without control characters
 * (a name that can go into JSON, headers and logs), 1..@max_len bytes. */
bool efs_name_valid(const char *s, size_t max_len);

/* Creates directory @path and its parents with mode 0700 where missing.
 * 0 or -errno. */
int efs_mkdir_p(const char *path);

/* Writes @len bytes to @path atomically and durably: a temporary file in the
 * same directory, fsync, rename, fsync of the directory. 0 or -errno. */
int efs_write_file_atomic(const char *path, const void *data, size_t len);

/* Reads at most @cap - 1 bytes of @path into @out and NUL-terminates it.
 * Returns the length, -ENOENT, -E2BIG when the file is larger, or -errno. */
long efs_read_file(const char *path, char *out, size_t cap);

#endif
