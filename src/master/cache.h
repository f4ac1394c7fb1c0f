/* SPDX-License-Identifier: MIT */
/* cache.h - read-through caching of file and session metadata in Redis.
 *
 * A file's metadata never changes after it is written, so a download can
 * find it in Redis without touching the store; delete replaces the entry
 * with a tombstone (on any master: Redis is shared), and entries are only
 * added where no key exists, so a read racing the delete cannot bring the
 * file back. A session's fixed fields (owner, name,
 * sizes, expiry) are cached until the session expires; its version, which
 * changes with every chunk, is always read from the store. Without Redis,
 * or while it is unreachable, every call goes to the store.
 *
 * In front of Redis, each master keeps the file metadata of up to 32,768
 * recent downloads in its own memory (same TTL; files of 0 bytes are not
 * kept; EFS_FILE_CACHE_SETS sets of EFS_FILE_CACHE_WAYS entries by file
 * id, a full set dropping an expired or else its least recently used
 * entry). A delete through this master forgets its entry; a delete
 * through another master does not, which is safe because
 * efs_cache_file_get serves downloads only, and a download reads the
 * file's chunk list from the store: an empty list answers 404 and
 * forgets the entry.
 *
 * With a file of at most EFS_READER_KNOWN_MAX chunks the local entry may
 * also hold the chunk ids a download read (efs_cache_file_learn), which
 * let the next download take cached chunks without reading the chunk
 * list. They are handed out only while the store's removal count
 * (efs_meta_removals) is what it was before that chunk list was read:
 * only when no other process writes the store (SQLite: one master), and
 * any file removal through this master (a REST delete, an S3 object
 * deleted or replaced) stops them all, so a removed file is still never
 * served once its removal has returned.
 */
#ifndef ECHOFS_MASTER_CACHE_H
#define ECHOFS_MASTER_CACHE_H

#include "echofs/meta.h"
#include "echofs/redis.h"
#include "master/download.h"

/* One master's caches: its local tier, and the store and Redis (shared
 * with the other masters) it reads through. */
struct efs_cache;

#define EFS_FILE_CACHE_TTL_MS (10 * 60 * 1000)
#define EFS_FILE_CACHE_WAYS 8
#define EFS_FILE_CACHE_SETS 4096

/* A cache in front of @meta, with @redis as the shared tier (NULL: none);
 * both must outlive it. 0 or -ENOMEM. */
int efs_cache_new(struct efs_meta *meta, struct efs_redis *redis, struct efs_cache **out);
/* NULL accepted. */
void efs_cache_free(struct efs_cache *cache);

/* efs_meta_file_get through the caches, for downloads only (a deleted file
 * may still be found: the caller must check the chunk list, unless
 * @known says otherwise). @known (NULL: not wanted) gets the file's chunk
 * ids when the local entry holds them and no file was removed since they
 * were read (see above: then the file still exists); else its count is 0. */
int efs_cache_file_get(struct efs_cache *cache, const char *file_id, struct efs_file_info *out,
		       struct efs_reader_known *known);
/* efs_cache_file_get from this master's memory only, never waiting for
 * Redis or the store: -EAGAIN when the local entry is missing. */
int efs_cache_file_peek(struct efs_cache *cache, const char *file_id, struct efs_file_info *out,
			struct efs_reader_known *known);
/* Keeps @known (efs_reader_learned) with @file_id's local entry, if this
 * master has one. */
void efs_cache_file_learn(struct efs_cache *cache, const char *file_id,
			  const struct efs_reader_known *known);
void efs_cache_file_forget(struct efs_cache *cache, const char *file_id);
/* The set of this master's memory that @file_id's entry goes to, 0 ..
 * EFS_FILE_CACHE_SETS - 1 (for tests that fill one set). */
size_t efs_cache_file_set(const char *file_id);
/* efs_meta_session_get through the cache; out->version is -1 when it came
 * from the cache. */
int efs_cache_session_get(struct efs_cache *cache, const char *session_id,
			  struct efs_session_info *out);
void efs_cache_session_forget(struct efs_cache *cache, const char *session_id);

#endif
