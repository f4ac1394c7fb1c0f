/* SPDX-License-Identifier: MIT */
/* put_session.h - upload a large file through a resumable upload session.
 *
 *   open      continue the session saved in the file's state file (asking
 *             the master which chunks it has), or start a new one and save
 *             its id there
 *   send      read the file chunk by chunk, in order, hashing it whole, and
 *             send the chunks the master lacks, several at once, each with
 *             X-Chunk-SHA256; never more than (parallel + 1) chunks in memory
 *   complete  turn the session into a file, check its SHA-256 against the
 *             local one, and remove the state file; after no reply or a
 *             5xx, ask again: complete is idempotent, so a lost reply
 *             gets the same file, never a second one. A saved session
 *             that an earlier run completed (the master says "completed")
 *             is confirmed the same way, without sending a chunk
 *
 * Every step returns 0 or a negative errno with res->err saying what went
 * wrong; nothing is printed here. After a failure the state file stays, so
 * running `echofs put` again continues where this run stopped.
 */
#ifndef ECHOFS_CLI_PUT_SESSION_H
#define ECHOFS_CLI_PUT_SESSION_H

#include "cli/api.h"
#include "cli/progress.h"
#include "cli/resume.h"
#include "echofs/hash.h"

#include <stdbool.h>
#include <sys/stat.h>

struct efs_put_session_opts {
	uint64_t chunk_size; /* of a new session; 0 = the server's CHUNK_SIZE */
	unsigned parallel;   /* chunks in flight at once, >= 1 */
	bool fresh;	     /* abort a saved session and start over */
	int64_t max_speed;   /* bytes/s over all chunks in flight; 0 = no cap */
	/* The storage policy of a new session ("ec:4+2"; NULL = the master's
	 * STORAGE_POLICY). A resumed session keeps the one it began with. */
	const char *policy;
};

struct efs_put_session {
	char session_id[EFS_ID_MAX + 1];
	uint64_t size;
	int64_t mtime_ns;        /* the file's when opened */
	uint64_t chunk_size;
	uint64_t chunk_count;
	uint8_t *received;	 /* one flag per chunk: the master has it */
	uint64_t received_count; /* when opened */
	uint64_t received_bytes;
	uint64_t sent_count; /* chunks this run sent */
	bool resumed;	     /* continues a saved session */
	bool completed;	     /* ... that an earlier run completed (its reply lost) */
	bool expired;	     /* a saved session was gone: this one is new */
	bool saved;	     /* a state file holds the session id */
	struct efs_resume state;
	char sha256[EFS_SHA256_HEX_LEN + 1]; /* the local file's, after send */
};

/* Continues the saved session for @abs_path (@st) or starts one named
 * @name. Without a usable state directory the upload still works, but
 * cannot be resumed. */
int efs_put_session_open(struct efs_put_session *s, const struct efs_cli *cli,
			 const struct efs_put_session_opts *opts, const char *abs_path,
			 const struct stat *st, const char *name, struct efs_cli_api_result *res);

/* Reads the file open as @fd and sends what the master lacks, drawing
 * @progress. Fails if the file changes meanwhile. */
int efs_put_session_send(struct efs_put_session *s, const struct efs_cli *cli,
			 const struct efs_put_session_opts *opts, int fd,
			 struct efs_progress *progress, struct efs_cli_api_result *res);

/* Completes the session; *file is the new File object (json_decref it).
 * A file whose SHA-256 is not the local one is -EBADMSG: it is kept on the
 * server, and res->err names it. */
int efs_put_session_complete(struct efs_put_session *s, const struct efs_cli *cli, json_t **file,
			     struct efs_cli_api_result *res);

/* Frees what the session holds (not the state file). */
void efs_put_session_release(struct efs_put_session *s);

#endif
