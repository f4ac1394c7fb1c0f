/* SPDX-License-Identifier: MIT */
/* resume.h - state files that let an interrupted `echofs put` continue.
 *
 * One small JSON file per upload in progress, in $XDG_STATE_HOME/echofs
 * (or ~/.local/state/echofs when XDG_STATE_HOME is unset or not absolute),
 * named after a hash of the server URL, the file's absolute path, size and
 * modification time. It holds the upload session's id. A file that changed
 * (other size or mtime) or goes to another server gets a different state
 * file, so a stale session is never continued with other bytes.
 */
#ifndef ECHOFS_CLI_RESUME_H
#define ECHOFS_CLI_RESUME_H

#include "echofs/common.h"

#include <limits.h>
#include <sys/stat.h>

struct efs_resume {
	char path[PATH_MAX];		 /* the state file */
	char session_id[EFS_ID_MAX + 1]; /* the saved session, "" when none */
	/* What the key is made of, written into the file for people. */
	char url[1024];
	char file[PATH_MAX];
	uint64_t size;
	int64_t mtime_ns;
};

/* Writes the state directory into @out. 0, -ENOENT (neither
 * XDG_STATE_HOME nor HOME is usable) or -ENAMETOOLONG. */
int efs_resume_dir(char *out, size_t cap);

/* Works out the state file of uploading @abs_path (described by @st) to
 * @url, and loads the session id saved there, if any. Returns 0 (with
 * r->session_id "" when nothing is saved or the file is unreadable) or a
 * negative errno when there is no state directory. */
int efs_resume_open(struct efs_resume *r, const char *url, const char *abs_path,
		    const struct stat *st);

/* Saves @session_id (and @chunk_size, for people) durably, creating the
 * directory (0700) when needed. 0 or -errno. */
int efs_resume_save(struct efs_resume *r, const char *session_id, uint64_t chunk_size);

/* Removes the state file and forgets the session. 0 or -errno; a file
 * already gone is fine. */
int efs_resume_remove(struct efs_resume *r);

#endif
