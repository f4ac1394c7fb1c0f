/* SPDX-License-Identifier: MIT */
/* schema.c - the metadata schema, one migration per version.
 *
 * Migrations only ever get appended: a store at version N applies N+1...
 * in order, each in its own transaction together with its row in
 * efs_schema. The SQL is the common subset of SQLite and PostgreSQL
 * (BIGINT, TEXT, INTEGER; no AUTOINCREMENT/SERIAL). Times are Unix
 * milliseconds in BIGINT columns.
 */
#include "meta/schema.h"

static const char schema_v1[] =
	/* Workers: registration and the latest heartbeat. */
	"CREATE TABLE workers ("
	"  worker_id TEXT PRIMARY KEY,"
	"  url TEXT NOT NULL,"
	"  capacity_bytes BIGINT NOT NULL DEFAULT 0,"
	"  free_bytes BIGINT NOT NULL DEFAULT 0,"
	"  chunk_count BIGINT NOT NULL DEFAULT 0,"
	"  registered_at BIGINT NOT NULL,"
	"  last_heartbeat BIGINT NOT NULL"
	");"
	/* Files: one row per complete file; written last on upload. */
	"CREATE TABLE files ("
	"  file_id TEXT PRIMARY KEY,"
	"  owner TEXT NOT NULL,"
	"  name TEXT NOT NULL,"
	"  size BIGINT NOT NULL,"
	"  sha256 TEXT NOT NULL,"
	"  chunk_size BIGINT NOT NULL,"
	"  chunk_count BIGINT NOT NULL,"
	"  replication INTEGER NOT NULL,"
	"  stored_bytes BIGINT NOT NULL,"
	"  created_at BIGINT NOT NULL"
	");"
	"CREATE INDEX files_by_owner ON files (owner, created_at, file_id);"
	/* Chunks: keyed by the SHA-256 of their bytes, so dedup is a lookup.
	 * refcount = file_chunks rows + session_chunks rows naming it;
	 * zero_since is when it last dropped to 0 (NULL while referenced). */
	"CREATE TABLE chunks ("
	"  chunk_id TEXT PRIMARY KEY,"
	"  size BIGINT NOT NULL,"
	"  stored_size BIGINT NOT NULL,"
	"  compressed INTEGER NOT NULL,"
	"  refcount BIGINT NOT NULL DEFAULT 0,"
	"  zero_since BIGINT,"
	"  created_at BIGINT NOT NULL"
	");"
	/* The ordered chunk list of each file. */
	"CREATE TABLE file_chunks ("
	"  file_id TEXT NOT NULL,"
	"  idx BIGINT NOT NULL,"
	"  chunk_id TEXT NOT NULL,"
	"  PRIMARY KEY (file_id, idx)"
	");"
	"CREATE INDEX file_chunks_by_chunk ON file_chunks (chunk_id);"
	"CREATE INDEX chunks_garbage ON chunks (zero_since);"
	/* Where each chunk's replicas are; state 0 = good, 1 = bad. */
	"CREATE TABLE replicas ("
	"  chunk_id TEXT NOT NULL,"
	"  worker_id TEXT NOT NULL,"
	"  state INTEGER NOT NULL DEFAULT 0,"
	"  created_at BIGINT NOT NULL,"
	"  PRIMARY KEY (chunk_id, worker_id)"
	");"
	"CREATE INDEX replicas_by_worker ON replicas (worker_id);"
	/* Upload sessions and the chunks received so far. A one-request
	 * upload runs as a hidden session, so its chunks are referenced (and
	 * safe from the collector) from the moment they are stored. */
	"CREATE TABLE sessions ("
	"  session_id TEXT PRIMARY KEY,"
	"  owner TEXT NOT NULL,"
	"  name TEXT NOT NULL,"
	"  declared_size BIGINT,"
	"  chunk_size BIGINT NOT NULL,"
	"  hidden INTEGER NOT NULL DEFAULT 0,"
	"  version BIGINT NOT NULL DEFAULT 0,"
	"  created_at BIGINT NOT NULL,"
	"  expires_at BIGINT NOT NULL"
	");"
	"CREATE INDEX sessions_by_expiry ON sessions (expires_at);"
	"CREATE TABLE session_chunks ("
	"  session_id TEXT NOT NULL,"
	"  idx BIGINT NOT NULL,"
	"  chunk_id TEXT NOT NULL,"
	"  size BIGINT NOT NULL,"
	"  PRIMARY KEY (session_id, idx)"
	");"
	"CREATE INDEX session_chunks_by_chunk ON session_chunks (chunk_id);";

/* Version 2: when a worker last reported holding each replica (its own
 * clock, the start of that report), for finding replicas it lost. */
static const char schema_v2[] = "ALTER TABLE replicas ADD COLUMN seen_at BIGINT;";

/* Version 3: sessions completed into files, remembered until expires_at
 * so that a repeated complete (its reply was lost) answers the same file
 * instead of creating a second one. Written in the transaction that
 * creates the file; the collector deletes rows past expires_at. */
static const char schema_v3[] = "CREATE TABLE completed_sessions ("
				"  session_id TEXT PRIMARY KEY,"
				"  owner TEXT NOT NULL,"
				"  file_id TEXT NOT NULL,"
				"  expires_at BIGINT NOT NULL"
				");"
				"CREATE INDEX completed_sessions_by_expiry"
				" ON completed_sessions (expires_at);";

/* Version 4: the cluster's identity, one row. Its id is drawn once, by
 * the first master that opens the store (sql_store.c:migrate_tx, in the
 * same transaction), and never changes: workers remember it and refuse a
 * master of another cluster (docs/OPERATIONS.md#cluster-identity). */
static const char schema_v4[] = "CREATE TABLE cluster ("
				"  singleton INTEGER PRIMARY KEY CHECK (singleton = 1),"
				"  cluster_id TEXT NOT NULL);";

/* Version 5: how many times each replica was marked bad. A verified read
 * of a bad replica makes it good again only if the count (and created_at)
 * are those the reader loaded before reading: a replica marked bad again
 * meanwhile (a later read, the scrubber, a report) stays bad
 * (sql_files.c:sql_replica_mark_good, docs/LIFECYCLE.md R12). */
static const char schema_v5[] =
	"ALTER TABLE replicas ADD COLUMN bad_marks BIGINT NOT NULL DEFAULT 0;";

/* Version 6: the lease's epoch, one row. Grows by one each time a master
 * takes the lease for background duties (sql_store.c:store_lease, on the
 * lease's own connection under the lock), never on a renewal; every
 * instruction of a duty carries it and workers refuse older ones
 * (docs/OPERATIONS.md#fencing). */
static const char schema_v6[] = "CREATE TABLE lease ("
				"  singleton INTEGER PRIMARY KEY CHECK (singleton = 1),"
				"  epoch BIGINT NOT NULL);"
				"INSERT INTO lease (singleton, epoch) VALUES (1, 0);";

/* Version 7: the S3 API's access keys (sql_keys.c). The secret is stored
 * sealed (AES-256-GCM, keyseal.h), never in plain text; access_key_counts
 * holds each owner's number of keys, the row a create locks to keep the
 * per-user cap exact. */
static const char schema_v7[] = "CREATE TABLE access_keys ("
				"  access_key_id TEXT PRIMARY KEY,"
				"  owner TEXT NOT NULL,"
				"  sealed_secret TEXT NOT NULL,"
				"  created_at BIGINT NOT NULL"
				");"
				"CREATE INDEX access_keys_by_owner"
				" ON access_keys (owner, created_at, access_key_id);"
				"CREATE TABLE access_key_counts ("
				"  owner TEXT PRIMARY KEY,"
				"  key_count BIGINT NOT NULL"
				");";

/* Version 8: S3 buckets and objects (docs/S3.md). Bucket names are unique
 * in the cluster. An object row names the file holding its bytes (owned by
 * the bucket's owner) and keeps the headers it was put with. Keys sort
 * bytewise as S3 lists them: SQLite's default BINARY collation compares
 * bytes; PostgreSQL's column takes the "C" collation (its default follows
 * the database's locale). */
#define SCHEMA_V8(KEY_COLLATION)                                                                  \
	"CREATE TABLE s3_buckets ("                                                               \
	"  name TEXT PRIMARY KEY,"                                                                \
	"  owner TEXT NOT NULL,"                                                                  \
	"  region TEXT NOT NULL,"                                                                 \
	"  created_at BIGINT NOT NULL"                                                            \
	");"                                                                                      \
	"CREATE INDEX s3_buckets_by_owner ON s3_buckets (owner, name);"                           \
	"CREATE TABLE s3_objects ("                                                               \
	"  bucket TEXT NOT NULL,"                                                                 \
	"  object_key TEXT " KEY_COLLATION " NOT NULL,"                                           \
	"  file_id TEXT NOT NULL,"                                                                \
	"  size BIGINT NOT NULL,"                                                                 \
	"  etag TEXT NOT NULL,"                                                                   \
	"  content_type TEXT NOT NULL,"                                                           \
	"  content_encoding TEXT NOT NULL,"                                                       \
	"  content_disposition TEXT NOT NULL,"                                                    \
	"  cache_control TEXT NOT NULL,"                                                          \
	"  expires TEXT NOT NULL,"                                                                \
	"  user_meta TEXT NOT NULL,"                                                              \
	"  last_modified BIGINT NOT NULL,"                                                        \
	"  PRIMARY KEY (bucket, object_key)"                                                      \
	");"                                                                                      \
	"CREATE INDEX s3_objects_by_file ON s3_objects (file_id);"
static const char schema_v8[] = SCHEMA_V8("");
static const char schema_v8_postgres[] = SCHEMA_V8("COLLATE \"C\"");

/* Version 9: S3 multipart uploads (docs/S3.md#multipart-upload). An
 * upload row keeps the object's headers from CreateMultipartUpload and,
 * once completed, the object it made (kept until expires_at for a retried
 * complete; the collector deletes rows past expires_at, aborting those
 * still in progress). A part row names the hidden session whose
 * session_chunks hold its chunks' references (session_id '' for an empty
 * part); replacing, aborting or expiring releases that session, completing
 * moves its references into the file's chunk list. */
#define SCHEMA_V9(KEY_COLLATION)                                                                  \
	"CREATE TABLE s3_uploads ("                                                               \
	"  upload_id TEXT PRIMARY KEY,"                                                           \
	"  bucket TEXT NOT NULL,"                                                                 \
	"  object_key TEXT " KEY_COLLATION " NOT NULL,"                                           \
	"  owner TEXT NOT NULL,"                                                                  \
	"  content_type TEXT NOT NULL,"                                                           \
	"  content_encoding TEXT NOT NULL,"                                                       \
	"  content_disposition TEXT NOT NULL,"                                                    \
	"  cache_control TEXT NOT NULL,"                                                          \
	"  expires TEXT NOT NULL,"                                                                \
	"  user_meta TEXT NOT NULL,"                                                              \
	"  created_at BIGINT NOT NULL,"                                                           \
	"  expires_at BIGINT NOT NULL,"                                                           \
	"  completed INTEGER NOT NULL DEFAULT 0,"                                                 \
	"  file_id TEXT NOT NULL DEFAULT '',"                                                     \
	"  size BIGINT NOT NULL DEFAULT 0,"                                                       \
	"  etag TEXT NOT NULL DEFAULT '',"                                                        \
	"  last_modified BIGINT NOT NULL DEFAULT 0"                                               \
	");"                                                                                      \
	"CREATE INDEX s3_uploads_by_key ON s3_uploads (bucket, object_key, upload_id);"           \
	"CREATE INDEX s3_uploads_by_expiry ON s3_uploads (expires_at);"                           \
	"CREATE TABLE s3_parts ("                                                                 \
	"  upload_id TEXT NOT NULL,"                                                              \
	"  part_number BIGINT NOT NULL,"                                                          \
	"  session_id TEXT NOT NULL,"                                                             \
	"  size BIGINT NOT NULL,"                                                                 \
	"  etag TEXT NOT NULL,"                                                                   \
	"  chunk_size BIGINT NOT NULL,"                                                           \
	"  chunk_count BIGINT NOT NULL,"                                                          \
	"  stored_bytes BIGINT NOT NULL,"                                                         \
	"  last_modified BIGINT NOT NULL,"                                                        \
	"  PRIMARY KEY (upload_id, part_number)"                                                  \
	");"
static const char schema_v9[] = SCHEMA_V9("");
static const char schema_v9_postgres[] = SCHEMA_V9("COLLATE \"C\"");

/* Version 10: erasure-coded chunks (issue 17, docs/ARCHITECTURE.md
 * "Erasure coding"). A chunk with ec_data = K > 0 is one Reed-Solomon
 * stripe of K data and ec_parity = M parity shards: each of its replica
 * rows is one shard, on its own worker, stored under the chunk's id (the
 * shard's index is in the shard's own header). ec_data = 0: full copies,
 * as before. A file's policy is the canonical policy string it was
 * uploaded with ("ec:4+2"), '' for the files before it (replicas:N, N =
 * replication). */
static const char schema_v10[] =
    "ALTER TABLE chunks ADD COLUMN ec_data INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE chunks ADD COLUMN ec_parity INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE files ADD COLUMN policy TEXT NOT NULL DEFAULT '';";

/* Version 11: the part layout of an object a multipart upload made, for
 * GetObject/HeadObject with ?partNumber (docs/S3.md): efs_s3_parts_encode's
 * run-length text of the parts' sizes ("8388608*24,1048576*1"), '' for any
 * other object (those before it included: partNumber=1 is all of one).
 * And the x-amz-checksum an object or part was stored with
 * ("CRC32:4waSgw==", a multipart object's composite "...-3"; '' none),
 * which GetObject/HeadObject return with x-amz-checksum-mode: ENABLED. */
static const char schema_v11[] =
    "ALTER TABLE s3_objects ADD COLUMN parts TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE s3_objects ADD COLUMN checksum TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE s3_parts ADD COLUMN checksum TEXT NOT NULL DEFAULT '';";

/* Version 12: the storage policy (issue 17) of an upload session and of
 * an S3 multipart upload, the canonical string asked for at init or
 * CreateMultipartUpload, '' for the default (STORAGE_POLICY). Each chunk
 * the session or a part receives is stored by it, and complete gives it
 * to the file. */
static const char schema_v12[] =
    "ALTER TABLE sessions ADD COLUMN policy TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE s3_uploads ADD COLUMN policy TEXT NOT NULL DEFAULT '';";

/* Version 13: the failure domain a worker
 * declares (WORKER_ZONE) at registration, '' for none (the worker is a
 * zone of its own; every worker before it). Placement spreads a chunk's
 * replicas and shards over distinct zones first (placement.h). */
static const char schema_v13[] = "ALTER TABLE workers ADD COLUMN zone TEXT NOT NULL DEFAULT '';";

/* Version 14: the good replicas of each chunk, for counting them without
 * reading the table: repair's under-replicated count (sql_repair.c) runs
 * over every referenced chunk, and this index makes its per-chunk probe
 * (SQLite: a covering search, hence state among the columns, which SQLite
 * does not take from the WHERE) or its one ordered pass over the good
 * replicas (PostgreSQL: an index-only scan) cheaper; docs/PERFORMANCE.md
 * "Costs at a million files". Most replicas are good, so it is about the
 * primary key's size. */
static const char schema_v14[] =
    "CREATE INDEX replicas_good ON replicas (chunk_id, worker_id, state) WHERE state = 0;";

/* Version 15: fewer index entries per upload (docs/PERFORMANCE.md, "Fewer
 * index pages per 4 KiB upload"). No query looks file_chunks or
 * session_chunks up by chunk alone: every one names its file or session,
 * the primary key's prefix (a release counts a file's references to each
 * chunk in one grouped pass, sql_files.c), so their by-chunk indexes only
 * cost a random B-tree leaf per chunk reference written. The collector
 * asks chunks_garbage only for rows with a zero_since (sql_garbage_list),
 * so it keeps only those: a chunk written with references, every
 * upload's, adds no entry. */
static const char schema_v15[] =
    "DROP INDEX file_chunks_by_chunk;"
    "DROP INDEX session_chunks_by_chunk;"
    "DROP INDEX chunks_garbage;"
    "CREATE INDEX chunks_garbage ON chunks (zero_since) WHERE zero_since IS NOT NULL;";

/* Version 16 (SQLite): replicas becomes a WITHOUT ROWID table, its rows
 * stored in the primary key's B-tree (chunk_id, worker_id). A new row
 * then writes one random leaf instead of two (the key's index's and
 * replicas_good's) and no page at the rowid table's end, and the key
 * covers every column, so replicas_good (a copy of the key for covering
 * probes, v14) is not needed there. replicas_by_worker gains created_at:
 * its entries carry the key instead of a rowid, and ordered by creation
 * they still land at each worker's end of the index, not on a random
 * leaf; report_finish's "this worker's replicas created before" is a
 * range of it. The rows are copied once (docs/PERFORMANCE.md, "Fewer
 * index pages per 4 KiB upload"). PostgreSQL keeps its heap and v14's
 * index (its under-replicated count is an index-only scan of
 * replicas_good). Unlike the others, this migration is not independent of
 * later ones: it copies the six columns replicas has up to here, so a
 * later migration that adds a column to replicas must be numbered after
 * it and land after it (a store that took that one first would lose the
 * column here). */
static const char schema_v16[] =
    "CREATE TABLE replicas_v16 ("
    "  chunk_id TEXT NOT NULL,"
    "  worker_id TEXT NOT NULL,"
    "  state INTEGER NOT NULL DEFAULT 0,"
    "  created_at BIGINT NOT NULL,"
    "  seen_at BIGINT,"
    "  bad_marks BIGINT NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (chunk_id, worker_id)"
    ") WITHOUT ROWID;"
    "INSERT INTO replicas_v16 (chunk_id, worker_id, state, created_at, seen_at, bad_marks)"
    " SELECT chunk_id, worker_id, state, created_at, seen_at, bad_marks FROM replicas;"
    "DROP TABLE replicas;"
    "ALTER TABLE replicas_v16 RENAME TO replicas;"
    "CREATE INDEX replicas_by_worker ON replicas (worker_id, created_at);";
static const char schema_v16_postgres[] = "SELECT 1;";

const struct efs_migration efs_migrations[] = {
	{1, schema_v1, NULL},
	{2, schema_v2, NULL},
	{3, schema_v3, NULL},
	{4, schema_v4, NULL},
	{5, schema_v5, NULL},
	{6, schema_v6, NULL},
	{7, schema_v7, NULL},
	{8, schema_v8, schema_v8_postgres},
	{9, schema_v9, schema_v9_postgres},
	{10, schema_v10, NULL},
	{11, schema_v11, NULL},
	{12, schema_v12, NULL},
	{13, schema_v13, NULL},
	{14, schema_v14, NULL},
	{15, schema_v15, NULL},
	{16, schema_v16, schema_v16_postgres},
};
const size_t efs_migration_count = sizeof(efs_migrations) / sizeof(efs_migrations[0]);

int efs_schema_latest(void)
{
	int latest = 0;
	for (size_t i = 0; i < efs_migration_count; i++)
		if (efs_migrations[i].version > latest)
			latest = efs_migrations[i].version;
	return latest;
}
