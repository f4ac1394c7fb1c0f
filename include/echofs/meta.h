/* SPDX-License-Identifier: MIT */
/* meta.h - the metadata store: workers, files, chunks, replicas, sessions.
 *
 * One small interface, several backends: SQLite (embedded default) now,
 * PostgreSQL and DynamoDB later, chosen by DATABASE_URL. Callers never see
 * SQL. Every operation is atomic on its own; the ones that change several
 * tables run in one transaction inside the backend.
 *
 * Errors: -ENOENT (no such row), -EEXIST (conflict), -EAGAIN (the store is
 * unreachable or busy right now: answer 503), -EIO (anything else).
 * Thread-safe: the store keeps a small pool of connections.
 */
#ifndef ECHOFS_META_H
#define ECHOFS_META_H

#include "echofs/common.h"

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

struct efs_meta;

#define EFS_URL_MAX 512

struct efs_worker_info {
	char worker_id[EFS_ID_MAX + 1];
	char url[EFS_URL_MAX + 1];
	uint64_t capacity_bytes;
	uint64_t free_bytes;
	uint64_t chunk_count;
	int64_t registered_at_ms;  /* first registration, Unix ms */
	int64_t last_heartbeat_ms; /* last registration or heartbeat, Unix ms */
	/* The failure domain the worker declared (WORKER_ZONE) at its latest
	 * registration; "" for none: the worker is a zone of its own. */
	char zone[EFS_ZONE_MAX + 1];
};

#define EFS_NAME_MAX 255     /* longest file name, bytes */
#define EFS_S3_BUCKET_MAX 63 /* S3 bucket name, bytes (S3's rule) */
#define EFS_S3_KEY_MAX 1024  /* S3 object key, bytes (S3's rule) */
#define EFS_FILE_ID_LEN 32   /* file and session ids: 32 hex digits */
#define EFS_MAX_REPLICAS 16  /* most replicas listed per chunk */

struct efs_file_info {
	char file_id[EFS_ID_MAX + 1];
	char owner[EFS_ID_MAX + 1];
	char name[EFS_NAME_MAX + 1];
	uint64_t size;
	char sha256[65];
	uint64_t chunk_size;
	uint64_t chunk_count;
	unsigned replication;
	uint64_t stored_bytes; /* sum of the chunks' stored sizes, one replica */
	int64_t created_at_ms;
	/* When the file is an S3 object: its bucket and key (efs_meta_file_get
	 * and efs_meta_file_list fill them; "" otherwise). Never written by
	 * efs_meta_file_*: efs_meta_object_put links a file to its key. */
	char s3_bucket[EFS_S3_BUCKET_MAX + 1];
	char s3_key[EFS_S3_KEY_MAX + 1];
	/* The canonical storage policy it was uploaded with ("ec:4+2",
	 * "replicas:3"; echofs/ec.h); "" for a file stored before policies
	 * (replicas:@replication) and on the backends that keep none
	 * (DynamoDB). For an EC file, @replication is K + M (its shards). */
	char policy[24];
};

struct efs_chunk_info {
	char chunk_id[65]; /* SHA-256 hex of the uncompressed bytes */
	uint64_t size;        /* uncompressed */
	uint64_t stored_size; /* as stored on the workers */
	bool compressed;      /* stored as gzip */
	/* An erasure-coded chunk (issue 17): its stored form is one stripe
	 * of ec_data (K) data and ec_parity (M) parity shards, each replica
	 * row one shard (master/chunk_ec.h). 0, 0: full replicas. Only the
	 * SQL stores keep them (DynamoDB: always 0, and EC is refused). */
	unsigned ec_data;
	unsigned ec_parity;
};

/* A replica as the master sees it: where it is and whether it is usable. */
struct efs_replica {
	char worker_id[EFS_ID_MAX + 1];
	char url[EFS_URL_MAX + 1];
	int64_t last_heartbeat_ms; /* of its worker; 0 if the worker is unknown */
	bool bad;                  /* failed a read or a checksum */
	/* Which version of the row this is, for efs_meta_replica_mark_good:
	 * when it was recorded (master clock) and how many times it was
	 * marked bad since. */
	int64_t created_at_ms;
	int64_t bad_marks;
};

/* Chunk number @index of a file with its replicas. */
struct efs_file_chunk {
	uint64_t index;
	struct efs_chunk_info chunk;
	unsigned replica_count;
	struct efs_replica replicas[EFS_MAX_REPLICAS];
};

struct efs_session_info {
	char session_id[EFS_ID_MAX + 1];
	char owner[EFS_ID_MAX + 1];
	char name[EFS_NAME_MAX + 1];
	int64_t declared_size; /* -1 when the client did not say */
	uint64_t chunk_size;
	bool hidden;           /* a one-request upload, not a client's session */
	int64_t version;       /* bumped by every chunk received */
	int64_t created_at_ms;
	int64_t expires_at_ms;
	/* The canonical storage policy its chunks are stored by ("ec:4+2"),
	 * fixed at init; '' for the master's default (sessions from before
	 * schema version 12, hidden sessions, and every session on DynamoDB,
	 * which stores only the default, replicated policy). */
	char policy[24];
};

/* A session completed into a file, remembered so that a repeated complete
 * answers the same file (efs_meta_session_complete). */
struct efs_session_done {
	char session_id[EFS_ID_MAX + 1];
	char owner[EFS_ID_MAX + 1];
	char file_id[EFS_ID_MAX + 1];
	int64_t expires_at_ms;
};

/* A chunk a session has received. */
struct efs_session_chunk {
	uint64_t index;
	char chunk_id[65];
	uint64_t size;
	uint64_t stored_size;
};

/* Opens the store named by @database_url: NULL or "" for SQLite at
 * @data_dir/echofs.db, "sqlite:PATH" for SQLite at PATH, "postgres://..." or
 * "postgresql://..." for PostgreSQL. Creates what is missing and applies
 * schema migrations. On failure writes one line into @err and returns
 * -EINVAL (bad URL), -EAGAIN (unreachable) or -EIO. */
int efs_meta_open(const char *database_url, const char *data_dir, struct efs_meta **out,
		  char *err, size_t errlen);
/* The DynamoDB backend's three tables (docs/AWS.md): the master takes them
 * from DYNAMODB_FILES_TABLE, DYNAMODB_CHUNKS_TABLE, DYNAMODB_SESSIONS_TABLE. */
struct efs_meta_dynamodb_config {
	const char *files_table;
	const char *chunks_table;
	const char *sessions_table;
};
/* Opens the DynamoDB store over the tables of @cfg, at the endpoint and
 * with the credentials of the AWS variables (aws.h, efs_aws_config_load).
 * The tables must exist (a missing one is named in @err, with the command
 * that creates it); the cluster id is drawn by the first master. On
 * failure one line in @err and -EINVAL (configuration, missing table),
 * -EAGAIN (DynamoDB unreachable) or -EIO. Both chunk modes work on it:
 * chunks in S3 (no workers, no replicas) or on workers (worker, replica
 * and report calls with the semantics above; docs/AWS.md "The worker
 * chunk mode" lists the differences, none in these contracts). */
int efs_meta_open_dynamodb(const struct efs_meta_dynamodb_config *cfg, struct efs_meta **out,
			   char *err, size_t errlen);
/* Creates the tables of @cfg that are missing, with the keys and indexes
 * of docs/AWS.md (on-demand billing; TTL on the sessions' "ttl"), and
 * waits until they are active; with @drop, deletes them instead (tests).
 * 0, or a negative errno with one line in @err. */
int efs_meta_dynamodb_tables(const struct efs_meta_dynamodb_config *cfg, bool drop, char *err,
			     size_t errlen);
/* Closes the store; NULL is accepted. */
void efs_meta_close(struct efs_meta *m);

/* "sqlite", "postgres" or "dynamodb". */
const char *efs_meta_backend(const struct efs_meta *m);
/* The cluster's id (EFS_CLUSTER_ID_LEN hex digits), drawn when the store
 * was first opened and fixed from then on; owned by @m. */
const char *efs_meta_cluster_id(const struct efs_meta *m);
/* The schema version the store is at. */
int efs_meta_schema_version(struct efs_meta *m, int *out);
/* Round trip to the store: 0 or -EAGAIN. */
int efs_meta_ping(struct efs_meta *m);

/* Inserts or updates a worker (by worker_id): url, capacities, chunk count
 * and last_heartbeat; registered_at is kept when the worker exists. */
int efs_meta_worker_register(struct efs_meta *m, const struct efs_worker_info *w);
/* Marks every worker at @url other than @keep_id dead (last_heartbeat 0):
 * the machine behind the URL now answers under @keep_id. Returns how many
 * records were changed. */
int efs_meta_worker_retire_url(struct efs_meta *m, const char *url, const char *keep_id);
/* Records a heartbeat. -ENOENT when the worker is unknown. */
int efs_meta_worker_heartbeat(struct efs_meta *m, const char *worker_id,
			      uint64_t capacity_bytes, uint64_t free_bytes,
			      uint64_t chunk_count, int64_t now_ms);
/* One worker's heartbeat, for efs_meta_worker_heartbeat_many. */
struct efs_worker_beat {
	char worker_id[EFS_ID_MAX + 1];
	uint64_t capacity_bytes, free_bytes, chunk_count;
	int64_t at_ms; /* the beat's time: last_heartbeat */
};
/* Most beats one efs_meta_worker_heartbeat_many call takes. */
#define EFS_META_BEATS_MAX 1024
/* Records @n (at most EFS_META_BEATS_MAX) heartbeats as
 * efs_meta_worker_heartbeat does, in one transaction where the backend
 * has them (SQL: one commit for all), else one by one. @results[i] is 0
 * or -ENOENT (an unknown worker). Returns 0, -EINVAL (too many), or the
 * store's error: then on SQL none is recorded (one by one, those before
 * the failure are). */
int efs_meta_worker_heartbeat_many(struct efs_meta *m, const struct efs_worker_beat *beats,
				   size_t n, int *results);
/* Reads one worker. -ENOENT when unknown. */
int efs_meta_worker_get(struct efs_meta *m, const char *worker_id, struct efs_worker_info *out);
/* Every worker, ordered by worker_id. *out is a malloc'd array the caller
 * frees (NULL when the count is 0). */
int efs_meta_worker_list(struct efs_meta *m, struct efs_worker_info **out, size_t *count);

/* ---- sessions (also the one-request uploads, as hidden sessions) ---- */

int efs_meta_session_create(struct efs_meta *m, const struct efs_session_info *s);
/* -ENOENT when unknown (expired ones are found until the collector ends
 * them: callers check expires_at_ms). */
int efs_meta_session_get(struct efs_meta *m, const char *session_id,
			 struct efs_session_info *out);
/* The chunks received so far, ordered by index. *out is malloc'd. */
int efs_meta_session_chunks(struct efs_meta *m, const char *session_id,
			    struct efs_session_chunk **out, size_t *count);
/* Records chunk @index of a session, in one transaction: the chunk gains a
 * reference (its row is created with its replicas on @worker_ids, or, with
 * @dedup, an existing row is reused and @worker_ids are added to its
 * replicas) and whatever chunk the session had at @index loses one. A
 * hidden session's expiry moves to @hidden_expires_ms (a one-request
 * upload lives while chunks arrive); a client's session's expiry moves
 * forward to @expires_at_least_ms when that is later (it never moves
 * back). -ENOENT when the session is gone; -ESTALE when @dedup was asked
 * for a chunk the collector removed meanwhile (the caller stores it
 * again). */
int efs_meta_session_put_chunk(struct efs_meta *m, const char *session_id, uint64_t index,
			       const struct efs_chunk_info *chunk, const char *const *worker_ids,
			       size_t worker_count, bool dedup, int64_t now_ms,
			       int64_t hidden_expires_ms, int64_t expires_at_least_ms);
/* Turns a session into @file in one transaction: the file row, its chunk
 * list (the session's chunks, moved, not copied), the session's end and,
 * when @remember_until_ms > 0, a completed-session record (session id,
 * owner, file id) kept until then, which efs_meta_session_done_get finds.
 * -ENOENT when the session is gone; -ESTALE when it received a chunk since
 * @version was read (the caller reads the chunks again). */
int efs_meta_session_complete(struct efs_meta *m, const char *session_id, int64_t version,
			      const struct efs_file_info *file, int64_t remember_until_ms);
/* The record of session @session_id completed into a file (see
 * efs_meta_session_complete), also past its expires_at_ms until the
 * collector removes it: callers check. -ENOENT when there is none. */
int efs_meta_session_done_get(struct efs_meta *m, const char *session_id,
			      struct efs_session_done *out);
/* Removes up to @max completed-session records whose expires_at_ms is
 * before @now_ms; *count is how many went. */
int efs_meta_session_done_purge(struct efs_meta *m, int64_t now_ms, size_t max, size_t *count);
/* Records a file of at most one chunk without a session, in one
 * transaction: for a one-request upload whose body fit in one chunk, one
 * commit instead of three (session_create, session_put_chunk,
 * session_complete). @chunk (NULL for an empty file) gains a reference as
 * in session_put_chunk (created with its replicas on @worker_ids, or, with
 * @dedup, an existing row reused and @worker_ids added to its replicas)
 * and becomes chunk 0 of @file. Call it only once every replica is
 * durable. -ESTALE when @dedup was asked for a chunk the collector removed
 * meanwhile (the caller stores it again); -EEXIST when @file's id is
 * taken. On error nothing is recorded. */
int efs_meta_file_create_single(struct efs_meta *m, const struct efs_file_info *file,
				const struct efs_chunk_info *chunk, const char *const *worker_ids,
				size_t worker_count, bool dedup, int64_t now_ms);
/* The S3 object a file recorded by efs_meta_file_create_object becomes.
 * @object is the row as efs_meta_object_put takes it (file_id, size and
 * last_modified_ms those of the file); @cond as for efs_meta_object_put_if
 * (NULL: unconditional). @refused is set by the call: 0, or why the object
 * could not be written (-ENOENT: no bucket; -EEXIST, -ENODATA, -ESTALE: as
 * efs_meta_object_put_if's @cond). */
struct efs_object_link {
	const struct efs_object_info *object;
	const struct efs_object_cond *cond;
	int refused;
};
/* Whether the store can record a one-chunk file and its S3 object in one
 * transaction (efs_meta_file_create_object); else the caller records the
 * file, then puts the object. */
bool efs_meta_has_file_create_object(const struct efs_meta *m);
/* efs_meta_file_create_single and efs_meta_object_put_if(@link->object,
 * @link->cond) in one transaction (a small PutObject: one commit instead
 * of two). The bucket's row is locked and @link->cond checked first. When
 * the object is refused nothing is recorded, @link->refused says why and
 * the call returns -ECANCELED; the other errors are
 * efs_meta_file_create_single's (-ESTALE: a deduplicated chunk collected
 * meanwhile, store it again; -EEXIST: the file id is taken). -ENOTSUP
 * unless efs_meta_has_file_create_object. */
int efs_meta_file_create_object(struct efs_meta *m, const struct efs_file_info *file,
				const struct efs_chunk_info *chunk, const char *const *worker_ids,
				size_t worker_count, bool dedup, struct efs_object_link *link,
				int64_t now_ms);
/* Ends a session and releases its chunks. -ENOENT when unknown. */
int efs_meta_session_delete(struct efs_meta *m, const char *session_id, int64_t now_ms);
/* Up to @max ids of sessions that expired before @now_ms. */
int efs_meta_session_expired(struct efs_meta *m, int64_t now_ms, size_t max,
			     char (*ids)[EFS_ID_MAX + 1], size_t *count);

/* ---- files ----------------------------------------------------------- */

/* -ENOENT when unknown. */
int efs_meta_file_get(struct efs_meta *m, const char *file_id, struct efs_file_info *out);
/* Chunks @first .. @first + @max - 1 of a file with their replicas. */
int efs_meta_file_chunks(struct efs_meta *m, const char *file_id, uint64_t first, size_t max,
			 struct efs_file_chunk **out, size_t *count);
/* @owner's files ordered by (created_at, file_id), starting after the
 * cursor (after_created_ms, after_id); after_id "" starts at the first. */
int efs_meta_file_list(struct efs_meta *m, const char *owner, int64_t after_created_ms,
		       const char *after_id, size_t limit, struct efs_file_info **out,
		       size_t *count);
/* Deletes a file of @owner and releases its chunks, in one transaction.
 * -ENOENT when there is no such file of that owner. */
int efs_meta_file_delete(struct efs_meta *m, const char *file_id, const char *owner,
			 int64_t now_ms);

/* ---- S3 buckets and objects (docs/S3.md) ------------------------------
 * Every backend: SQL (sql_s3.c) and DynamoDB (dynamodb_s3.c, docs/AWS.md).
 * An operation a backend leaves NULL answers -ENOTSUP (the S3 API then
 * answers 501 NotImplemented). An object IS a file: its row names the
 * file holding its bytes, whose owner is the bucket's owner. */

#define EFS_S3_REGION_MAX 32
#define EFS_S3_BUCKETS_PER_OWNER 1000 /* more: -EDQUOT */
/* Stored object headers, bytes each; S3's own limit on user metadata
 * (x-amz-meta-*, names and values together) is 2 KiB. */
#define EFS_S3_HEADER_MAX 1024
#define EFS_S3_USER_META_MAX 4096 /* the JSON object holding them */
#define EFS_S3_ETAG_MAX 64
/* A stored x-amz-checksum: "<ALG>:<base64 value>" ("CRC32:4waSgw=="), the
 * value of a multipart object's composite checksum ending in "-<parts>";
 * "" when the object or part was stored without one (docs/S3.md#checksums). */
#define EFS_S3_CHECKSUM_MAX 80

struct efs_bucket_info {
	char name[EFS_S3_BUCKET_MAX + 1];
	char owner[EFS_ID_MAX + 1];
	char region[EFS_S3_REGION_MAX + 1];
	int64_t created_at_ms;
};

/* An object's row: where its bytes are and the headers it was put with
 * ("" when absent). */
struct efs_object_info {
	char bucket[EFS_S3_BUCKET_MAX + 1];
	char key[EFS_S3_KEY_MAX + 1];
	char file_id[EFS_ID_MAX + 1];
	uint64_t size;
	char etag[EFS_S3_ETAG_MAX + 1]; /* hex MD5 of the bytes, no quotes */
	char content_type[EFS_S3_HEADER_MAX + 1];
	char content_encoding[EFS_S3_HEADER_MAX + 1];
	char content_disposition[EFS_S3_HEADER_MAX + 1];
	char cache_control[EFS_S3_HEADER_MAX + 1];
	char expires[EFS_S3_HEADER_MAX + 1];
	char user_meta[EFS_S3_USER_META_MAX + 1]; /* JSON object: name -> value */
	int64_t last_modified_ms;
	char checksum[EFS_S3_CHECKSUM_MAX + 1]; /* the one it was put with, or "" */
};

/* One entry of a listing: what ListObjects shows of an object. */
struct efs_object_entry {
	char key[EFS_S3_KEY_MAX + 1];
	uint64_t size;
	char etag[EFS_S3_ETAG_MAX + 1];
	int64_t last_modified_ms;
	char policy[24]; /* its file's (its storage class); '' replicated (DynamoDB: always) */
};

/* Creates bucket @b. -EEXIST when the name is taken (by anyone: read it
 * with efs_meta_bucket_get to tell whose), -EDQUOT when its owner has
 * EFS_S3_BUCKETS_PER_OWNER already. */
int efs_meta_bucket_create(struct efs_meta *m, const struct efs_bucket_info *b);
/* -ENOENT when there is no such bucket. */
int efs_meta_bucket_get(struct efs_meta *m, const char *name, struct efs_bucket_info *out);
/* @owner's buckets by name (at most EFS_S3_BUCKETS_PER_OWNER); *out is
 * malloc'd (NULL when none), the caller frees it. */
int efs_meta_bucket_list(struct efs_meta *m, const char *owner, struct efs_bucket_info **out,
			 size_t *count);
/* Deletes bucket @name of @owner if it holds no object, in one transaction
 * that excludes a concurrent efs_meta_object_put into it. -ENOENT (no
 * such bucket of that owner), -ENOTEMPTY. */
int efs_meta_bucket_delete(struct efs_meta *m, const char *name, const char *owner);
/* -ENOENT when the bucket has no such key. */
int efs_meta_object_get(struct efs_meta *m, const char *bucket, const char *key,
			struct efs_object_info *out);
/* What GetObject and HeadObject need, read at once: the bucket's owner,
 * the object at the key and the file holding its bytes. */
struct efs_object_read {
	char bucket_owner[EFS_ID_MAX + 1];
	struct efs_object_info object;
	struct efs_file_info file; /* s3_bucket, s3_key: the object's */
};
/* Reads bucket @bucket, its object at @key and that object's file, in one
 * consistent read where the backend can (SQL: one statement joining the
 * three tables; a backend without it: three reads, as efs_meta_bucket_get,
 * efs_meta_object_get and efs_meta_file_get). 0 with @out filled;
 * -ENOENT: no such bucket (@out untouched); -ENOKEY: the bucket has no
 * such key (only out->bucket_owner filled); -ESTALE: the row names a file
 * that is gone (an overwrite or delete between the reads: read again;
 * out->bucket_owner and out->object filled); or a store error (@out
 * then possibly partly written). */
int efs_meta_object_read(struct efs_meta *m, const char *bucket, const char *key,
			 struct efs_object_read *out);
/* Makes @o the object at (o->bucket, o->key), in one transaction: the row
 * is inserted or replaced, and the file the replaced row named (if any) is
 * deleted and its chunks released, so a reader finds the old object or
 * the new one, never neither. @o->file_id must name a recorded file of
 * the bucket's owner. -ENOENT when the bucket is gone (the caller then
 * deletes the new file). */
int efs_meta_object_put(struct efs_meta *m, const struct efs_object_info *o, int64_t now_ms);
/* What efs_meta_object_put_if requires of the object it would replace. */
struct efs_object_cond {
	bool if_absent; /* no object at the key (If-None-Match: *), else -EEXIST */
	/* NULL: no requirement; "*": an object at the key; else an object
	 * whose ETag (hex, compared case-insensitively) is this one. -ENODATA
	 * when the key holds no object, -ESTALE when its ETag differs. */
	const char *if_etag;
	/* 0: no requirement; else (ignored with if_etag, as RFC 7232 3.4)
	 * an object at the key must not have been modified after this time
	 * (whole seconds since the epoch), else -ESTALE; no object: holds. */
	int64_t if_unmodified_since_s;
};
/* efs_meta_object_put when @cond holds, checked in the same transaction
 * that makes the row visible (so of two conditional puts racing for one
 * key, at most one with if_absent succeeds). On -EEXIST, -ENODATA or
 * -ESTALE nothing changed: the caller deletes the new file. @cond NULL:
 * unconditional. */
int efs_meta_object_put_if(struct efs_meta *m, const struct efs_object_info *o,
			   const struct efs_object_cond *cond, int64_t now_ms);
/* CopyObject: what efs_meta_object_copy copies, and into what. */
struct efs_object_copy {
	const char *owner; /* must own both buckets */
	const char *src_bucket;
	const char *src_key;
	/* Instead of (src_bucket, src_key): a file of @owner (any file, one
	 * uploaded through the REST API too), whose ETag the caller gives
	 * (the hex MD5 of its bytes); its headers are then the defaults
	 * (binary/octet-stream, no metadata) and its Last-Modified its
	 * creation time. -ENOKEY when there is no such file of @owner. */
	const char *src_file_id;
	const char *src_etag;
	/* The new object. The caller sets bucket, key, file_id (a new,
	 * unused file id), last_modified_ms and, unless copy_headers, the
	 * headers (content_type ... user_meta). On success size and etag
	 * are the source's, and with copy_headers its headers too. */
	struct efs_object_info *dst;
	const char *file_name; /* the new file's name */
	bool copy_headers;
	const struct efs_object_cond *cond; /* on the destination, as put_if; NULL: none */
	/* Called inside the transaction with the source's row (possibly more
	 * than once: a conflict reruns it); a negative errno aborts the copy
	 * and is returned. NULL: no check. */
	int (*check_source)(void *ctx, const struct efs_object_info *src);
	void *check_ctx;
	/* The new file's policy and replication columns (issue 17; a policy
	 * asked for the copy): NULL or "" and 0 for the source file's. The
	 * chunks are the source's either way, stored as they are. DynamoDB
	 * keeps the source's (it stores the default policy only). */
	const char *dst_policy;
	unsigned dst_replication;
};
/* Makes a new object at (dst->bucket, dst->key) holding the bytes of the
 * object at (src_bucket, src_key), in one transaction and without
 * copying bytes: a new file row (owner @copy->owner) lists the source
 * file's chunks and each chunk's reference count goes up by the times it
 * is listed; then, as efs_meta_object_put_if, @cond is checked and the
 * object the destination held (if any) is replaced, its file released.
 * Both buckets' rows are locked (in name order) and the source file's
 * row too, so neither object nor file can go meanwhile. Source and
 * destination may be the same object (its old file is released, the new
 * one keeps the chunks). With src_file_id the source is that file (its
 * row locked likewise). 0, or -ENOENT (the destination bucket is gone
 * or not the owner's), -EACCES (the source bucket is gone or not the
 * owner's), -ENOKEY (no object at the source key), what check_source
 * returned, -EEXIST / -ENODATA / -ESTALE (@cond, as put_if), -EAGAIN,
 * -EIO. Nothing changes on failure. DynamoDB has no locks: there the new
 * file's chunk lists are counted first, each checked against the source
 * file, then one transaction commits; the outcome is the same (a source
 * that goes meanwhile is -ENOKEY; docs/AWS.md "CopyObject on DynamoDB"). */
int efs_meta_object_copy(struct efs_meta *m, struct efs_object_copy *copy, int64_t now_ms);
/* Deletes the object and its file (chunks released), in one transaction.
 * -ENOENT when there is none. */
int efs_meta_object_delete(struct efs_meta *m, const char *bucket, const char *key,
			   int64_t now_ms);
/* Up to @limit objects of @bucket whose key starts with @prefix and sorts
 * (bytewise) after @after ("" : from the first), in key order, into the
 * caller's @out; *count is how many. One bounded query: the store never
 * loads more than @limit rows. */
int efs_meta_object_list(struct efs_meta *m, const char *bucket, const char *prefix,
			 const char *after, size_t limit, struct efs_object_entry *out,
			 size_t *count);

/* ---- S3 multipart uploads (docs/S3.md#multipart-upload) ---------------
 * SQL and DynamoDB (docs/AWS.md, "Multipart uploads on DynamoDB": there
 * Complete writes counted chunk lists, then commits). A part's
 * chunks are held by a hidden session (session_chunks references, as any
 * upload's): the session is named by the part's row once the part is
 * acknowledged, and its expiry is then the upload's. Completing moves the
 * parts' session references into the new file's chunk list (no byte is
 * copied, no count changes); aborting, expiring or replacing a part
 * releases its session (docs/LIFECYCLE.md). */

#define EFS_S3_PART_MAX 10000 /* part numbers 1..10000, as S3 */
#define EFS_S3_UPLOAD_ID_LEN 32

/* A multipart upload: the object it will make (bucket, key, headers; the
 * rest of @obj is set when completed) and who started it. */
struct efs_s3_upload {
	char upload_id[EFS_ID_MAX + 1];
	char owner[EFS_ID_MAX + 1];
	int64_t created_at_ms;
	int64_t expires_at_ms; /* collected (aborted) after this */
	/* Completed: obj.file_id, size, etag, last_modified_ms are the object's;
	 * the row is kept (for a retried complete) until expires_at_ms. */
	bool completed;
	struct efs_object_info obj;
	/* The canonical storage policy its parts are stored by ("ec:4+2"),
	 * fixed at creation; '' for STORAGE_POLICY (uploads from before
	 * schema version 12, and every upload on DynamoDB, which keeps only
	 * the default, replicated policy). */
	char policy[24];
};

/* One acknowledged part. */
struct efs_s3_part {
	unsigned part_number;
	char session_id[EFS_ID_MAX + 1]; /* the session holding its chunks; "" when empty */
	uint64_t size;
	char etag[EFS_S3_ETAG_MAX + 1]; /* hex MD5 of its bytes */
	uint64_t chunk_size;
	uint64_t chunk_count;
	uint64_t stored_bytes;
	int64_t last_modified_ms;
	char checksum[EFS_S3_CHECKSUM_MAX + 1]; /* the one it was uploaded with, or "" */
};

/* One entry of ListMultipartUploads. */
struct efs_s3_upload_entry {
	char key[EFS_S3_KEY_MAX + 1];
	char upload_id[EFS_ID_MAX + 1];
	char owner[EFS_ID_MAX + 1];
	int64_t created_at_ms;
	char policy[24]; /* as efs_s3_upload's ('' on DynamoDB) */
};

/* Records upload @u (not completed) in its bucket, in one transaction with
 * the bucket's row locked. -ENOENT when the bucket is gone. */
int efs_meta_s3_upload_create(struct efs_meta *m, const struct efs_s3_upload *u);
/* -ENOENT when there is no such upload (aborted, collected, never made).
 * Callers check owner, bucket, key and expires_at_ms. */
int efs_meta_s3_upload_get(struct efs_meta *m, const char *upload_id, struct efs_s3_upload *out);
/* Acknowledges part @p of upload @upload_id, in one transaction: the
 * upload must exist, be @owner's, not completed and not expired at
 * @now_ms (else -ENOENT); @p's session must hold exactly p->chunk_count
 * chunks (else -ESTALE); a part of that number already there is replaced
 * and its session released; @p's session then expires with the upload. */
int efs_meta_s3_part_put(struct efs_meta *m, const char *upload_id, const char *owner,
			 const struct efs_s3_part *p, int64_t now_ms);
/* Up to @limit parts of the upload numbered above @after, in order, into
 * the caller's @out. */
int efs_meta_s3_part_list(struct efs_meta *m, const char *upload_id, unsigned after, size_t limit,
			  struct efs_s3_part *out, size_t *count);
/* Completes upload @u into object u->obj (file_id, size, etag,
 * last_modified_ms set by the caller) with file @file, from @parts (in
 * order, as read before with efs_meta_s3_part_list), in one transaction:
 * the object replaces what the key held (as efs_meta_object_put); the
 * object's part layout is @parts' sizes; parts not listed are released;
 * the upload is kept as completed. The file's chunks:
 * - @chunks_session NULL (parts aligned on chunks): each listed part's
 *   session references become the file's chunks, in order (moved, not
 *   copied);
 * - otherwise the references of session @chunks_session (the parts'
 *   bytes copied once into file->chunk_count chunks of file->chunk_size,
 *   a hidden session of the caller's) become the file's chunks, that
 *   session ends, and every part is released (its chunks go to the
 *   collector unless the copy's reference them). The listed parts are
 *   still checked current. On error that session is untouched: the
 *   caller ends it.
 * -ENOENT: no such upload of u->owner, or expired; -EALREADY: already
 * completed (read it again); -ESTALE: a listed part was replaced or its
 * session (or @chunks_session) is gone since it was read (read again);
 * -ENXIO: the bucket is gone. Nothing changes on error. */
int efs_meta_s3_upload_complete(struct efs_meta *m, const struct efs_s3_upload *u,
				const struct efs_s3_part *parts, size_t count,
				const char *chunks_session, const struct efs_file_info *file,
				int64_t now_ms);
/* Aborts the upload: its parts' sessions are released and its rows go, in
 * one transaction. @owner NULL: whoever's (the collector), completed ones
 * too. -ENOENT when there is none (of @owner, not completed). */
int efs_meta_s3_upload_abort(struct efs_meta *m, const char *upload_id, const char *owner,
			     int64_t now_ms);
/* Up to @limit uploads of @bucket in progress whose key starts with
 * @prefix, in (key, upload id) order, after (@key_marker, @id_marker)
 * (@id_marker NULL: after every upload of @key_marker), into @out. */
int efs_meta_s3_upload_list(struct efs_meta *m, const char *bucket, const char *prefix,
			    const char *key_marker, const char *id_marker, size_t limit,
			    struct efs_s3_upload_entry *out, size_t *count);
/* Up to @max ids of uploads whose expires_at_ms is before @now_ms. */
int efs_meta_s3_upload_expired(struct efs_meta *m, int64_t now_ms, size_t max,
			       char (*ids)[EFS_ID_MAX + 1], size_t *count);

/* The part layout of an object made by CompleteMultipartUpload, for
 * GetObject/HeadObject with ?partNumber (src/meta/s3_parts.c): the sizes
 * of the parts it joined, in order (part N is the Nth part Complete
 * listed, whatever number it was uploaded as). */

/* The layout of @parts (@count of them, in order) into *out (malloc'd,
 * the caller frees it; "" for none). 0 or -ENOMEM. */
int efs_s3_parts_encode(const struct efs_s3_part *parts, size_t count, char **out);
/* Part @number (1-based) of @layout: its offset in the object into
 * *first, its size into *size; the number of parts into *count. 0;
 * -ERANGE when @number is 0 or past the last part (*count set, *first and
 * *size untouched; "" has 0 parts); -EIO when @layout does not parse. */
int efs_s3_parts_find(const char *layout, unsigned number, uint64_t *first, uint64_t *size,
		      unsigned *count);
/* Part @number of the object at (@bucket, @key), as efs_s3_parts_find,
 * read from the object's row; *count 0 (and -ERANGE unless @number is 1,
 * then the whole object: *first 0, *size the object's size) for an
 * object not made by a multipart upload (a PutObject, a CopyObject).
 * -ESTALE when the key holds no object or another file than @file_id now
 * (an overwrite since @file_id was read: read again); -ENOTSUP when the
 * backend keeps no layouts; or a store error. */
int efs_meta_object_part(struct efs_meta *m, const char *bucket, const char *key,
			 const char *file_id, uint64_t object_size, unsigned number,
			 uint64_t *first, uint64_t *size, unsigned *count);

/* ---- chunks, replicas, garbage --------------------------------------- */

/* A stored chunk and its replicas (NULL @replicas: just the chunk).
 * -ENOENT when not stored. */
int efs_meta_chunk_get(struct efs_meta *m, const char *chunk_id, struct efs_chunk_info *out,
		       struct efs_replica *replicas, unsigned *replica_count);
/* Marks a replica bad (a failed read or checksum): it is no longer read
 * and repair replaces it. Counts the mark (efs_replica.bad_marks), also on
 * a replica already bad. */
int efs_meta_replica_mark_bad(struct efs_meta *m, const char *chunk_id, const char *worker_id);
/* As efs_meta_replica_mark_bad, for a copy its worker found gone after
 * @recorded_by_ms (master clock): marks the row only if it was recorded
 * at or before then. A later row names a copy written again since (an
 * upload or a repair recorded it after the worker looked), and is left
 * as it is. 1 when the row was marked, 0 when none was (no row, or a
 * later one), -errno. */
int efs_meta_replica_mark_lost(struct efs_meta *m, const char *chunk_id, const char *worker_id,
			       int64_t recorded_by_ms);
/* Makes bad replica @rep of @chunk_id good again, because bytes read from
 * it just now verified against the chunk id; recorded at @now_ms (so a
 * report whose snapshot predates the read does not mark it again). Only
 * if the row is still the one the caller loaded before reading: still
 * bad, with the same created_at_ms and bad_marks. A replica marked bad
 * again meanwhile (another read, the scrubber, a report's end), removed
 * or rewritten is left as it is: -ESTALE. */
int efs_meta_replica_mark_good(struct efs_meta *m, const char *chunk_id,
			       const struct efs_replica *rep, int64_t now_ms);
/* Adds (or makes good again) replicas of a stored chunk on @worker_ids. */
int efs_meta_replica_add(struct efs_meta *m, const char *chunk_id, const char *const *worker_ids,
			 size_t worker_count, int64_t now_ms);
/* Records copies of a chunk written for an upload that then failed: the
 * chunk row is created unreferenced (refcount 0, zero_since now) unless it
 * exists, and the copies become its replicas, so the collector removes
 * them after its grace period (or they serve the existing chunk). */
int efs_meta_chunk_record_unreferenced(struct efs_meta *m, const struct efs_chunk_info *chunk,
				       const char *const *worker_ids, size_t worker_count,
				       int64_t now_ms);
/* Forgets one replica (it was repaired elsewhere, or deleted). */
int efs_meta_replica_remove(struct efs_meta *m, const char *chunk_id, const char *worker_id);
/* Forgets location @worker_id of @chunk_id only while location @keep_id
 * is still recorded on the chunk, atomically (one statement on SQL, a
 * transaction with a condition check on DynamoDB): trimming a redundant
 * copy never leaves the row without the one it keeps (LIFECYCLE R13).
 * 0 when it was removed, -ENOENT when nothing was (@worker_id not
 * recorded, or @keep_id no longer), -errno. */
int efs_meta_replica_remove_if(struct efs_meta *m, const char *chunk_id, const char *worker_id,
			       const char *keep_id);

/* ---- repair and worker reports ---------------------------------------- */

/* A referenced chunk with fewer than @replication good replicas on workers
 * whose last heartbeat is after @holding_after_ms; for an erasure-coded
 * chunk, fewer than K + M good shard rows there. */
struct efs_repair_need {
	char chunk_id[65];
	unsigned holding; /* good replicas on such workers */
};
/* Up to @max chunks needing repair, replicated and erasure-coded, those
 * that survive the fewest further losses first (good replicas above 1,
 * good shards above K), then those that cannot be read as they are (no
 * good replica, or fewer than K good shards) but have a bad row on such a
 * worker (repair tries to read it: intact bytes make it good again, or
 * serve as a source of a rebuild). Chunks with no
 * replica at all on such workers are left out: nothing can be copied from
 * them until a worker holding one comes back (they still count in
 * efs_meta_under_replicated). */
int efs_meta_repair_list(struct efs_meta *m, unsigned replication, int64_t holding_after_ms,
			 size_t max, struct efs_repair_need *out, size_t *count);
/* How many referenced replicated chunks have fewer than @replication good
 * replicas on workers that heartbeat after @live_after_ms (EC chunks are
 * counted by efs_meta_ec_stripes). */
int efs_meta_under_replicated(struct efs_meta *m, unsigned replication, int64_t live_after_ms,
			      uint64_t *count);
/* ---- conversion of replicated files to erasure coding (issue 17) ------ */

/* A file conversion may take: a replicated one (policy '' or replicas:N). */
struct efs_ec_candidate {
	char file_id[EFS_ID_MAX + 1];
	int64_t created_at_ms;
	uint64_t size;
};
/* Up to @max replicated files created before @created_before_ms of at
 * least @min_size bytes, ordered by (created_at, file_id) after the cursor
 * (@after_created_ms, @after_id; "" starts at the first). -ENOTSUP on a
 * backend without EC chunks (DynamoDB). */
int efs_meta_ec_candidates(struct efs_meta *m, int64_t created_before_ms, uint64_t min_size,
			   int64_t after_created_ms, const char *after_id, size_t max,
			   struct efs_ec_candidate *out, size_t *count);
/* The flip of a conversion (docs/LIFECYCLE.md T37), in one transaction:
 * referenced replicated chunk @chunk_id becomes an ec:@data_shards+
 * @parity_shards stripe and @worker_ids (which hold shards already) are
 * added to its rows; its existing rows stay (their full copies are read
 * as such until overwritten by their shards). -ENOENT: no such chunk, or
 * unreferenced; -EALREADY: it is EC already (nothing written); -ENOTSUP. */
int efs_meta_chunk_make_ec(struct efs_meta *m, const char *chunk_id, unsigned data_shards,
			   unsigned parity_shards, const char *const *worker_ids,
			   size_t worker_count, int64_t now_ms);
/* Sets file @file_id's policy (canonical text) and replication (K + M),
 * only when every chunk of it is EC (one statement). 0 when set; -EAGAIN
 * when a chunk of it is still replicated; -ENOENT when the file is gone;
 * -ENOTSUP. */
int efs_meta_file_set_policy(struct efs_meta *m, const char *file_id, const char *policy,
			     unsigned replication);

/* Of the referenced erasure-coded chunks, how many have fewer than K + M
 * good shard rows on workers that heartbeat after @live_after_ms
 * (*@degraded) and how many fewer than K (*@unrecoverable, counted in
 * *@degraded too). 0, 0 on a backend without EC chunks; -errno. */
int efs_meta_ec_stripes(struct efs_meta *m, int64_t live_after_ms, uint64_t *degraded,
			uint64_t *unrecoverable);

/* One chunk a worker reports holding, and what the master decides. */
enum efs_report_verdict {
	EFS_REPORT_KEEP = 0,   /* known replica (or too young to judge) */
	EFS_REPORT_ADOPT = 1,  /* the master had lost track: recorded again */
	EFS_REPORT_DELETE = 2, /* not needed: surplus, unreferenced or orphan */
	/* An unnamed copy of a chunk the master knows (fully replicated
	 * elsewhere, or unreferenced) kept only because it is younger than the
	 * orphan grace: deleted by a report once older (the worker is asked to
	 * report again then). A write the master gave up on that landed late,
	 * e.g. when a partition healed. */
	EFS_REPORT_YOUNG = 3,
};
struct efs_report_entry {
	char chunk_id[65];
	int64_t mtime_ms; /* worker clock */
	enum efs_report_verdict verdict;
};
struct efs_report_context {
	const char *worker_id;
	int64_t started_ms;       /* worker clock: when it began listing */
	int64_t worker_now_ms;    /* worker clock: now */
	int64_t orphan_grace_ms;  /* chunks unknown to the master younger than this are kept */
	unsigned replication;
	int64_t live_after_ms;    /* master clock: workers heartbeating since are alive */
	int64_t now_ms;           /* master clock */
	/* Master clock, read by a master before the worker took the snapshot
	 * it lists (the answer to the report's first request, echoed back);
	 * 0 when the worker did not send it. */
	int64_t master_started_ms;
};
/* Reconciles one batch of a worker's report in one transaction, setting
 * each entry's verdict. */
int efs_meta_report_batch(struct efs_meta *m, const struct efs_report_context *ctx,
			  struct efs_report_entry *entries, size_t count);
/* Clock skew tolerated between two masters at a report's end: replica
 * creation times (the recording master's clock) are compared with the
 * report's start as read by the master that answered its first request.
 * Worker clocks take no part in it. One value for every store. */
#define EFS_META_SKEW_MARGIN_MS 5000
/* Ends a report: good replicas on the worker that it did not report, not
 * seen in this report, and recorded before ctx->master_started_ms (less
 * EFS_META_SKEW_MARGIN_MS) are marked bad; with no
 * master_started_ms nothing is. Both times of that comparison are master
 * clocks, so the worker's clock cannot get a fresh replica marked. Returns
 * how many. */
int efs_meta_report_finish(struct efs_meta *m, const struct efs_report_context *ctx);

/* The lease for background duties (collection, repair, session expiry):
 * true while this process holds it. With PostgreSQL it is a session-level
 * advisory lock on a dedicated connection, so it moves to another master
 * within seconds of this one dying; with SQLite (one master) it is always
 * held; with DynamoDB it is an item with a holder and an expiry. Call it
 * before each round of duties: it asks the store (PostgreSQL: the lock's
 * connection answers; DynamoDB: when half the term is gone), and a failed
 * renewal drops the lease here at once (false).
 *
 * Each time this process takes the lease (a takeover, also of a lease it
 * dropped itself: not a renewal) the store's lease epoch grows by one, in
 * the store, under the lease's own guard (PostgreSQL: on the locked
 * connection; DynamoDB: the conditional update that takes the item). */
bool efs_meta_lease(struct efs_meta *m);
/* The epoch of the lease this process holds (>= 1), 0 when it holds none
 * (as the last efs_meta_lease or efs_meta_lease_drop left it; no call to
 * the store). Duties send it with every instruction to a worker
 * (EFS_HDR_LEASE_EPOCH), read again before each: a worker refuses an
 * epoch older than the newest it has seen (docs/OPERATIONS.md#fencing). */
uint64_t efs_meta_lease_epoch(struct efs_meta *m);
/* Drops the lease here at once (a duty's metadata call failed: the store
 * may be unreachable and another master may take the lease): epoch 0
 * until efs_meta_lease takes it again, with a new epoch. PostgreSQL: the
 * lock's connection is closed (the server frees the lock when it sees
 * that). Any thread. */
void efs_meta_lease_drop(struct efs_meta *m);
/* ---- totals ---------------------------------------------------------- */

/* What the cluster stores, for /metrics and /api/v1/stats. */
struct efs_meta_stats {
	uint64_t file_count;    /* complete files (open sessions not counted) */
	uint64_t logical_bytes; /* the sum of their sizes */
	uint64_t chunk_count;   /* distinct chunks referenced by files or sessions */
	uint64_t chunk_bytes;   /* their uncompressed sizes, each chunk once */
	uint64_t stored_bytes;  /* their stored sizes, each chunk once (one replica) */
	/* Of those, the erasure-coded ones (ec_data > 0): how many, their
	 * stored sizes (in stored_bytes too), and what their K + M shards
	 * take on the workers: per chunk (K + M) x (32-byte shard header +
	 * ceil(stored / K) rounded up to 64), as chunk_ec.c lays them out. */
	uint64_t ec_chunk_count;
	uint64_t ec_stored_bytes;
	uint64_t ec_shard_bytes;
	/* Of the complete files, those uploaded erasure-coded (policy
	 * "ec:K+M"): how many, and the sum of their sizes (in logical_bytes
	 * too). 0 on DynamoDB, which keeps no policy (its files are in S3). */
	uint64_t ec_file_count;
	uint64_t ec_logical_bytes;
};
/* The totals above, in one statement: one aggregate pass over files and
 * one over chunks, no joins. *out is untouched on failure. */
int efs_meta_stats(struct efs_meta *m, struct efs_meta_stats *out);
/* A count that grows with every call through @m that may change the
 * totals (files and session chunks written or deleted): totals computed
 * at an unchanged count are still those of this process's writes. */
uint64_t efs_meta_changes(struct efs_meta *m);
/* A count that grows after every call through @m that may remove a file
 * row or change what efs_meta_object_read answers (efs_meta_file_delete,
 * efs_meta_file_create_object, efs_meta_file_set_policy, and the S3 calls
 * that put, delete, replace or copy over an object, complete a multipart
 * upload over a key or delete a bucket), once the call has returned,
 * whatever its result. When only this process writes the store (SQLite,
 * which serves one master), a file whose row and chunk list were read
 * after the count was N is still there while the count is N, and an
 * object read (efs_meta_object_read, answer 0) after the count was N is
 * still what the store holds while the count is N: 0 and the count in
 * *out. -ENOTSUP (*out untouched) when other processes
 * may write the store (PostgreSQL, DynamoDB: other masters' deletes are
 * not counted here). */
int efs_meta_removals(struct efs_meta *m, uint64_t *out);

/* Up to @max chunks unreferenced since before @before_ms. */
int efs_meta_garbage_list(struct efs_meta *m, int64_t before_ms, size_t max,
			  char (*ids)[65], size_t *count);
/* Removes an unreferenced chunk's rows, in one transaction, and reports
 * where its replicas were. -ENOENT when it is referenced again (or gone). */
int efs_meta_garbage_take(struct efs_meta *m, const char *chunk_id,
			  struct efs_replica *replicas, unsigned *replica_count);

/* ---- access keys (the S3 API's credentials) ---------------------------- */

/* An access key: an id (EFS_ACCESS_KEY_ID_LEN of [A-Z0-9], "EK..."), the
 * user it belongs to (a JWT subject) and its secret, sealed: the store
 * only ever sees the ciphertext efs_keyseal_seal made (keyseal.h). */
#define EFS_ACCESS_KEY_ID_LEN 20
#define EFS_ACCESS_KEY_SEALED_MAX 160 /* the sealed secret, characters */
struct efs_access_key {
	char access_key_id[EFS_ACCESS_KEY_ID_LEN + 1];
	char owner[EFS_ID_MAX + 1];
	char sealed_secret[EFS_ACCESS_KEY_SEALED_MAX + 1];
	int64_t created_at_ms;
};
/* Stores @k, atomically with a check that its owner then holds at most
 * @max_per_owner keys (this one included). 0, -EEXIST (the id is taken),
 * -EDQUOT (the owner already has @max_per_owner keys), -EAGAIN / -EIO. */
int efs_meta_key_create(struct efs_meta *m, const struct efs_access_key *k, unsigned max_per_owner);
/* The key @access_key_id into *out. 0, -ENOENT, -EAGAIN / -EIO. */
int efs_meta_key_get(struct efs_meta *m, const char *access_key_id, struct efs_access_key *out);
/* Every key of @owner, oldest first, into a malloc'ed array (*out, caller
 * frees; NULL when none) of *count. 0, -EAGAIN / -EIO / -ENOMEM. */
int efs_meta_key_list(struct efs_meta *m, const char *owner, struct efs_access_key **out,
		      size_t *count);
/* Deletes @access_key_id if @owner holds it. 0, -ENOENT (no such key, or
 * another owner's), -EAGAIN / -EIO. */
int efs_meta_key_delete(struct efs_meta *m, const char *access_key_id, const char *owner);

#endif
