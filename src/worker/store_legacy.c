/* SPDX-License-Identifier: MIT */
/* store_legacy.c - import of the layout before volumes
 * (data/chunks/<2 hex>/<id>, a 32-byte header then the payload) at open.
 *
 * Invariants owned here: every imported chunk keeps its write time; the
 * imported records are durable before any old file is removed, and the
 * removals are durable before the store serves (a file that came back
 * after a crash would be imported again over a delete made in between);
 * damaged files go to corrupt/.
 */
#include "worker/store_internal.h"
#include "echofs/hash.h"
#include "echofs/util.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The layout before volumes: data/chunks/<2 hex>/<id>, a 32-byte header. */
#define LEGACY_HEADER_LEN 32
#define LEGACY_MAGIC "EFSC"

/* ---- the layout before volumes ------------------------------------------ */

static int legacy_header_decode(const unsigned char *h, uint32_t *flags, uint64_t *length,
				uint32_t *crc)
{
	if (memcmp(h, LEGACY_MAGIC, 4) != 0 || h[4] != 1 ||
	    efs_crc32c(0, h, 28) != (uint32_t)store_get_le(h + 28, 4))
		return -EBADMSG;
	*flags = h[5];
	*length = store_get_le(h + 8, 8);
	*crc = (uint32_t)store_get_le(h + 16, 4);
	return *length > EFS_STORE_MAX_CHUNK ? -EBADMSG : 0;
}

/* Appends one chunk file of the old layout as a record (its write time
 * kept). -EBADMSG when the file is damaged: the caller moves it to
 * corrupt/. */
static int import_legacy(struct efs_store *s, int dir_fd, const char *name, char *buf,
			 uint64_t *ticket)
{
	unsigned char header[LEGACY_HEADER_LEN];
	struct efs_store_writer *w = NULL;
	struct stat st;
	uint64_t length;
	uint32_t flags, crc;
	int r;

	int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if ((r = store_read_all(fd, header, LEGACY_HEADER_LEN, 0)) < 0 ||
	    (r = legacy_header_decode(header, &flags, &length, &crc)) < 0)
		goto out;
	if ((uint64_t)st.st_size != length + LEGACY_HEADER_LEN) {
		r = -EBADMSG;
		goto out;
	}
	if ((r = store_writer_begin(s, name, length, flags, false, &w)) < 0)
		goto out;
	for (uint64_t pos = 0; pos < length && r == 0;) {
		size_t n = (size_t)EFS_MIN(length - pos, COPY_BUF_LEN);
		if ((r = store_read_all(fd, buf, n, LEGACY_HEADER_LEN + pos)) == 0)
			r = efs_store_write(w, buf, n);
		pos += n;
	}
	if (r < 0) {
		efs_store_write_abort(w);
		goto out;
	}
	r = store_writer_commit(w, true, crc,
				(int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000,
				false, ticket);
out:
	close(fd);
	return r;
}

/* A data directory of the old layout (data/chunks/<2 hex>/<id>) is moved
 * into volumes at open: every file appended, the volume synced once, then
 * the files removed, and the removals synced before the store serves: a
 * file that came back after a crash would be imported again with a new
 * sequence number, over a delete made in between. A crash before that
 * imports them again (the copies are identical; the newest wins). Damaged
 * files go to corrupt/. */
int store_migrate_legacy(struct efs_store *s)
{
	char path[PATH_MAX], dest[PATH_MAX];
	uint64_t ticket = 0;
	int r = 0;

	snprintf(path, sizeof(path), "%s/chunks", s->dir);
	if (access(path, F_OK) < 0)
		return 0;
	char *buf = malloc(COPY_BUF_LEN);
	if (!buf)
		return -ENOMEM;
	for (int pass = 0; pass < 2 && r == 0; pass++) {
		for (int i = 0; i < 256 && r == 0; i++) {
			snprintf(path, sizeof(path), "%s/chunks/%02x", s->dir, i);
			DIR *d = opendir(path);
			if (!d)
				continue;
			struct dirent *e;
			while (r == 0 && (e = readdir(d))) {
				if (pass == 1 || strncmp(e->d_name, ".tmp-", 5) == 0) {
					if (e->d_name[0] != '.' ||
					    strncmp(e->d_name, ".tmp-", 5) == 0)
						unlinkat(dirfd(d), e->d_name, 0);
					continue;
				}
				if (!efs_chunk_id_valid(e->d_name))
					continue;
				r = import_legacy(s, dirfd(d), e->d_name, buf, &ticket);
				if (r == -EBADMSG || r == -EPROTO) {
					snprintf(dest, sizeof(dest), "%s/corrupt/%.64s", s->dir,
						 e->d_name);
					renameat(dirfd(d), e->d_name, AT_FDCWD, dest);
					r = 0;
				}
			}
			if (pass == 1 && r == 0 && fsync(dirfd(d)) < 0)
				r = -errno;
			closedir(d);
			if (pass == 1 && r == 0)
				rmdir(path);
		}
		/* Everything imported is durable before any file goes. */
		if (pass == 0 && r == 0 && ticket)
			r = store_wait_durable(s, ticket);
	}
	free(buf);
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "%s/chunks", s->dir);
	rmdir(path);
	return store_fsync_dir(s->dir);
}
