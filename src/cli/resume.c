/* SPDX-License-Identifier: MIT */
/* resume.c - state files for interrupted uploads (see resume.h). */
#include "cli/resume.h"
#include "echofs/hash.h"
#include "echofs/util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STATE_FILE_MAX (16 * 1024)
#define KEY_HEX_LEN 40 /* of the SHA-256's 64: plenty against collisions */

int efs_resume_dir(char *out, size_t cap)
{
	const char *xdg = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	int n;
	/* The XDG spec: a relative XDG_STATE_HOME is invalid and ignored. */
	if (xdg && xdg[0] == '/')
		n = snprintf(out, cap, "%s/echofs", xdg);
	else if (home && home[0] == '/')
		n = snprintf(out, cap, "%s/.local/state/echofs", home);
	else
		return -ENOENT;
	if (n < 0 || (size_t)n >= cap)
		return -ENAMETOOLONG;
	return 0;
}

/* Reads the saved session id; leaves r->session_id "" when the file is
 * absent, unreadable or describes something else. */
static void load(struct efs_resume *r)
{
	char text[STATE_FILE_MAX];
	r->session_id[0] = '\0';
	if (efs_read_file(r->path, text, sizeof(text)) < 0)
		return;
	json_t *j = json_loads(text, 0, NULL);
	const char *sid = json_string_value(json_object_get(j, "session_id"));
	const char *file = json_string_value(json_object_get(j, "path"));
	const char *url = json_string_value(json_object_get(j, "url"));
	json_t *size = json_object_get(j, "size");
	if (sid && efs_id_valid(sid) && file && strcmp(file, r->file) == 0 && url &&
	    strcmp(url, r->url) == 0 && json_is_integer(size) &&
	    (uint64_t)json_integer_value(size) == r->size)
		efs_strlcpy(r->session_id, sid, sizeof(r->session_id));
	json_decref(j);
}

int efs_resume_open(struct efs_resume *r, const char *url, const char *abs_path,
		    const struct stat *st)
{
	char dir[PATH_MAX], key[256], hex[EFS_SHA256_HEX_LEN + 1];
	struct efs_sha256 h;
	int ret;

	memset(r, 0, sizeof(*r));
	if ((ret = efs_resume_dir(dir, sizeof(dir))) < 0)
		return ret;
	if (efs_strlcpy(r->url, url, sizeof(r->url)) >= sizeof(r->url) ||
	    efs_strlcpy(r->file, abs_path, sizeof(r->file)) >= sizeof(r->file))
		return -ENAMETOOLONG;
	/* http://m:8080/ and http://m:8080 are one server. */
	for (size_t n = strlen(r->url); n > 0 && r->url[n - 1] == '/'; n--)
		r->url[n - 1] = '\0';
	r->size = (uint64_t)st->st_size;
	r->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;

	if ((ret = efs_sha256_init(&h)) < 0)
		return ret;
	snprintf(key, sizeof(key), "%llu %lld ", (unsigned long long)r->size,
		 (long long)r->mtime_ns);
	efs_sha256_update(&h, key, strlen(key));
	efs_sha256_update(&h, r->url, strlen(r->url) + 1); /* the NULs separate */
	efs_sha256_update(&h, r->file, strlen(r->file) + 1);
	efs_sha256_final_hex(&h, hex);
	int n = snprintf(r->path, sizeof(r->path), "%s/upload-%.*s.json", dir, KEY_HEX_LEN, hex);
	if (n < 0 || (size_t)n >= sizeof(r->path))
		return -ENAMETOOLONG;
	load(r);
	return 0;
}

int efs_resume_save(struct efs_resume *r, const char *session_id, uint64_t chunk_size)
{
	char dir[PATH_MAX];
	char *text = NULL;
	int ret;

	if (efs_strlcpy(r->session_id, session_id, sizeof(r->session_id)) >= sizeof(r->session_id))
		return -EINVAL;
	if ((ret = efs_resume_dir(dir, sizeof(dir))) < 0)
		return ret;
	if ((ret = efs_mkdir_p(dir)) < 0)
		return ret;
	json_t *j =
	    json_pack("{s:i, s:s, s:s, s:s, s:I, s:I, s:I}", "version", 1, "session_id", session_id,
		      "url", r->url, "path", r->file, "size", (json_int_t)r->size, "mtime_ns",
		      (json_int_t)r->mtime_ns, "chunk_size", (json_int_t)chunk_size);
	if (j)
		text = json_dumps(j, JSON_INDENT(2));
	json_decref(j);
	if (!text)
		return -ENOMEM;
	size_t len = strlen(text);
	text[len] = '\n'; /* replaces the NUL: the length is known */
	ret = efs_write_file_atomic(r->path, text, len + 1);
	free(text);
	return ret;
}

int efs_resume_remove(struct efs_resume *r)
{
	r->session_id[0] = '\0';
	if (unlink(r->path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}
