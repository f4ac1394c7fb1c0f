/* SPDX-License-Identifier: MIT */
/* object_cache.h - what GetObject and HeadObject read of an S3 object (its
 * bucket's owner, its row, its file's row: struct efs_object_read) and its
 * small file's chunk ids, kept in this master's memory by bucket and key.
 *
 * An entry is stored with the store's removal count (efs_meta_removals)
 * read before the object was read, and is handed out only while the count
 * is still that: every call that may change what efs_meta_object_read
 * answers (a put, overwrite, delete, DeleteObjects, copy, multipart
 * complete, bucket delete, storage class change, REST delete of the
 * object's file) adds one once it has returned, so a GET that starts after
 * any of them answered reads the store again and sees it. Only stores that
 * count (SQLite: one master writes it) are cached; the caller asks
 * efs_meta_removals and stores nothing when it answers -ENOTSUP. Only
 * objects that exist are stored: a NoSuchKey or NoSuchBucket answer is
 * never cached.
 *
 * Direct-mapped slots (EFS_OBJECT_CACHE_SLOTS); an entry keeps the struct's
 * bytes with its runs of zeros squeezed out (an object with short headers
 * takes a few hundred bytes, not the struct's 12 KiB), and all entries
 * together at most EFS_OBJECT_CACHE_BYTES: past that, new entries are not
 * stored until old ones are replaced or found stale.
 */
#ifndef ECHOFS_MASTER_OBJECT_CACHE_H
#define ECHOFS_MASTER_OBJECT_CACHE_H

#include "echofs/meta.h"
#include "master/download.h"

#include <stddef.h>
#include <stdint.h>

#define EFS_OBJECT_CACHE_SLOTS 16384
#define EFS_OBJECT_CACHE_BYTES (16u * 1024 * 1024)

struct efs_object_cache;

/* 0 and *out, or -ENOMEM. */
int efs_object_cache_new(struct efs_object_cache **out);
/* NULL is accepted. */
void efs_object_cache_free(struct efs_object_cache *c);

/* 0 with *out filled when @c holds @bucket/@key stored at removal count
 * @removals (read by the caller before this call); @known (NULL: not
 * wanted) then gets the file's chunk ids if they were learnt at that
 * count, else its count is 0. -ENOENT otherwise (@out, @known untouched);
 * an entry stored at another count is dropped. */
int efs_object_cache_get(struct efs_object_cache *c, const char *bucket, const char *key,
			 uint64_t removals, struct efs_object_read *out,
			 struct efs_reader_known *known);
/* Keeps @x (an efs_meta_object_read answer of 0 for @x->object.bucket and
 * key) as read at removal count @removals, read before it was. Replaces
 * the slot's entry; stores nothing when out of memory or past
 * EFS_OBJECT_CACHE_BYTES. */
void efs_object_cache_put(struct efs_object_cache *c, const struct efs_object_read *x,
			  uint64_t removals);
/* Adds @known (efs_reader_learned: read at count known->removals) to the
 * entry of @bucket/@key if that entry holds file @file_id and was stored
 * at the same count. */
void efs_object_cache_learn(struct efs_object_cache *c, const char *bucket, const char *key,
			    const char *file_id, const struct efs_reader_known *known);
/* Drops the entry of @bucket/@key, if any. */
void efs_object_cache_forget(struct efs_object_cache *c, const char *bucket, const char *key);

/* Entries held and their bytes (for tests and metrics). */
void efs_object_cache_usage(struct efs_object_cache *c, size_t *entries, size_t *bytes);

#endif
