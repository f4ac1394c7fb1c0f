/* SPDX-License-Identifier: MIT */
/* store.c - one file per chunk, checksummed, written atomically. */
#include "worker/store.h"
#include "echofs/hash.h"
#include "echofs/util.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER_LEN 32
#define MAGIC "EFSC"
#define FORMAT_VERSION 1

struct efs_store {
	char dir[PATH_MAX - 128]; /* leaves room for "/chunks/xx/<id>" */
	uint64_t capacity;
	pthread_mutex_t lock;
	uint64_t chunk_count;
	uint64_t bytes;    /* payload bytes of stored chunks */
	uint64_t reserved; /* payload bytes of writes in flight */
	int dir_fds[256];  /* chunks/<xx>, kept open for the directory fsync */
};

struct efs_store_writer {
	struct efs_store *s;
	char chunk_id[65];
	char tmp_path[PATH_MAX];
	int fd;
	uint64_t length;
	uint64_t written;
	uint32_t flags;
	uint32_t crc;
};

/* The header: "EFSC", version, flags, 2 reserved, length (le64), payload
 * CRC32C (le32), 8 reserved, header CRC32C over the first 28 bytes. */
static void header_encode(unsigned char *h, uint32_t flags, uint64_t length, uint32_t crc)
{
	memset(h, 0, HEADER_LEN);
	memcpy(h, MAGIC, 4);
	h[4] = FORMAT_VERSION;
	h[5] = (unsigned char)flags;
	for (int i = 0; i < 8; i++)
		h[8 + i] = (unsigned char)(length >> (8 * i));
	for (int i = 0; i < 4; i++)
		h[16 + i] = (unsigned char)(crc >> (8 * i));
	uint32_t hcrc = efs_crc32c(0, h, 28);
	for (int i = 0; i < 4; i++)
		h[28 + i] = (unsigned char)(hcrc >> (8 * i));
}

static int header_decode(const unsigned char *h, uint32_t *flags, uint64_t *length,
			 uint32_t *crc)
{
	uint32_t hcrc = 0;
	uint64_t len = 0;
	uint32_t c = 0;
	for (int i = 0; i < 4; i++)
		hcrc |= (uint32_t)h[28 + i] << (8 * i);
	if (memcmp(h, MAGIC, 4) != 0 || h[4] != FORMAT_VERSION || efs_crc32c(0, h, 28) != hcrc)
		return -EBADMSG;
	for (int i = 0; i < 8; i++)
		len |= (uint64_t)h[8 + i] << (8 * i);
	for (int i = 0; i < 4; i++)
		c |= (uint32_t)h[16 + i] << (8 * i);
	if (len > EFS_STORE_MAX_CHUNK)
		return -EBADMSG;
	*flags = h[5];
	*length = len;
	*crc = c;
	return 0;
}

static int chunk_path(const struct efs_store *s, const char *chunk_id, char *out, size_t size)
{
	int n = snprintf(out, size, "%s/chunks/%.2s/%s", s->dir, chunk_id, chunk_id);
	return (n < 0 || (size_t)n >= size) ? -ENAMETOOLONG : 0;
}

static int subdir_index(const char *chunk_id)
{
	static const char hex[] = "0123456789abcdef";
	return (int)((strchr(hex, chunk_id[0]) - hex) * 16 + (strchr(hex, chunk_id[1]) - hex));
}

static int write_all(int fd, const void *data, size_t len, off_t offset)
{
	const char *p = data;
	while (len > 0) {
		ssize_t w = pwrite(fd, p, len, offset);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		len -= (size_t)w;
		offset += w;
	}
	return 0;
}

static int read_all(int fd, void *data, size_t len, off_t offset)
{
	char *p = data;
	while (len > 0) {
		ssize_t got = pread(fd, p, len, offset);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (got == 0)
			return -EBADMSG; /* truncated */
		p += got;
		len -= (size_t)got;
		offset += got;
	}
	return 0;
}

/* Counts the chunks stored (every file named by a chunk id: its payload
 * is its size less the header, or 0) into s->chunk_count and s->bytes.
 * With @remove_temps, leftovers of writes cut by a crash are removed (only
 * at open: later, temporaries belong to writes in flight). */
static int scan(struct efs_store *s, bool remove_temps)
{
	s->chunk_count = 0;
	s->bytes = 0;
	char path[PATH_MAX];
	for (int i = 0; i < 256; i++) {
		snprintf(path, sizeof(path), "%s/chunks/%02x", s->dir, i);
		DIR *d = opendir(path);
		if (!d)
			return -errno;
		struct dirent *e;
		while ((e = readdir(d))) {
			struct stat st;
			if (remove_temps && strncmp(e->d_name, ".tmp-", 5) == 0) {
				unlinkat(dirfd(d), e->d_name, 0); /* a write cut by a crash */
				continue;
			}
			if (!efs_chunk_id_valid(e->d_name) || fstatat(dirfd(d), e->d_name, &st, 0) < 0)
				continue;
			s->chunk_count++;
			if (st.st_size > HEADER_LEN)
				s->bytes += (uint64_t)st.st_size - HEADER_LEN;
		}
		closedir(d);
	}
	return 0;
}

int efs_store_open(const char *dir, uint64_t capacity_bytes, struct efs_store **out, char *err,
		   size_t errlen)
{
	char path[PATH_MAX];
	struct efs_store *s = calloc(1, sizeof(*s));
	int r;
	if (!s)
		return -ENOMEM;
	for (int i = 0; i < 256; i++)
		s->dir_fds[i] = -1;
	pthread_mutex_init(&s->lock, NULL);
	s->capacity = capacity_bytes;
	if (efs_strlcpy(s->dir, dir, sizeof(s->dir)) >= sizeof(s->dir)) {
		r = -ENAMETOOLONG;
		goto fail;
	}
	for (int i = 0; i < 256; i++) {
		snprintf(path, sizeof(path), "%s/chunks/%02x", dir, i);
		if ((r = efs_mkdir_p(path)) < 0)
			goto fail;
		s->dir_fds[i] = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (s->dir_fds[i] < 0) {
			r = -errno;
			goto fail;
		}
	}
	snprintf(path, sizeof(path), "%s/corrupt", dir);
	if ((r = efs_mkdir_p(path)) < 0 || (r = scan(s, true)) < 0)
		goto fail;
	*out = s;
	return 0;
fail:
	snprintf(err, errlen, "cannot open the chunk store in %s: %s", dir, strerror(-r));
	efs_store_close(s);
	return r;
}

void efs_store_close(struct efs_store *s)
{
	if (!s)
		return;
	for (int i = 0; i < 256; i++)
		if (s->dir_fds[i] >= 0)
			close(s->dir_fds[i]);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

int efs_store_write_begin(struct efs_store *s, const char *chunk_id, uint64_t length,
			  uint32_t flags, struct efs_store_writer **out)
{
	unsigned char header[HEADER_LEN];
	char suffix[17];
	int r;

	if (!efs_chunk_id_valid(chunk_id) || length > EFS_STORE_MAX_CHUNK)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	if (s->capacity && s->bytes + s->reserved + length > s->capacity) {
		pthread_mutex_unlock(&s->lock);
		return -ENOSPC;
	}
	s->reserved += length;
	pthread_mutex_unlock(&s->lock);

	struct efs_store_writer *w = calloc(1, sizeof(*w));
	if (!w) {
		r = -ENOMEM;
		goto fail;
	}
	w->s = s;
	w->fd = -1;
	w->length = length;
	w->flags = flags;
	efs_strlcpy(w->chunk_id, chunk_id, sizeof(w->chunk_id));
	if ((r = efs_random_hex(suffix, 8)) < 0)
		goto fail;
	/* Temporary names are not chunk ids, so a scan after a crash removes
	 * them; they live beside the final name, so the rename is atomic. */
	snprintf(w->tmp_path, sizeof(w->tmp_path), "%s/chunks/%.2s/.tmp-%s", s->dir, chunk_id,
		 suffix);
	w->fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (w->fd < 0) {
		r = -errno;
		goto fail;
	}
	header_encode(header, 0, 0, 0); /* placeholder until commit */
	if ((r = write_all(w->fd, header, HEADER_LEN, 0)) < 0)
		goto fail;
	*out = w;
	return 0;
fail:
	if (w) {
		if (w->fd >= 0) {
			close(w->fd);
			unlink(w->tmp_path);
		}
		free(w);
	}
	pthread_mutex_lock(&s->lock);
	s->reserved -= length;
	pthread_mutex_unlock(&s->lock);
	return r;
}

int efs_store_write(struct efs_store_writer *w, const void *data, size_t len)
{
	if (len > w->length - w->written)
		return -E2BIG;
	int r = write_all(w->fd, data, len, (off_t)(HEADER_LEN + w->written));
	if (r < 0)
		return r;
	w->crc = efs_crc32c(w->crc, data, len);
	w->written += len;
	return 0;
}

static void writer_free(struct efs_store_writer *w, bool keep)
{
	struct efs_store *s = w->s;
	if (w->fd >= 0)
		close(w->fd);
	if (!keep)
		unlink(w->tmp_path);
	pthread_mutex_lock(&s->lock);
	s->reserved -= w->length;
	pthread_mutex_unlock(&s->lock);
	free(w);
}

int efs_store_write_commit(struct efs_store_writer *w, bool check_crc, uint32_t crc)
{
	struct efs_store *s = w->s;
	unsigned char header[HEADER_LEN];
	char path[PATH_MAX];
	struct stat old;
	int r;

	if (w->written != w->length) {
		r = -EPROTO;
		goto fail;
	}
	if (check_crc && crc != w->crc) {
		r = -EBADMSG;
		goto fail;
	}
	header_encode(header, w->flags, w->length, w->crc);
	if ((r = write_all(w->fd, header, HEADER_LEN, 0)) < 0)
		goto fail;
	if (fdatasync(w->fd) < 0) {
		r = -errno;
		goto fail;
	}
	chunk_path(s, w->chunk_id, path, sizeof(path));
	bool replaced = stat(path, &old) == 0;
	if (rename(w->tmp_path, path) < 0) {
		r = -errno;
		goto fail;
	}
	/* The chunk is in place now; a failed directory fsync is reported
	 * (the write is not acknowledged) but the counts follow the file. */
	r = fsync(s->dir_fds[subdir_index(w->chunk_id)]) < 0 ? -errno : 0;
	pthread_mutex_lock(&s->lock);
	if (replaced) {
		s->bytes -= EFS_MIN(s->bytes, old.st_size > HEADER_LEN
						      ? (uint64_t)old.st_size - HEADER_LEN
						      : 0);
		if (s->chunk_count > 0)
			s->chunk_count--;
	}
	s->bytes += w->length;
	s->chunk_count++;
	pthread_mutex_unlock(&s->lock);
	writer_free(w, true);
	return r;
fail:
	writer_free(w, false);
	return r;
}

void efs_store_write_abort(struct efs_store_writer *w)
{
	if (w)
		writer_free(w, false);
}

/* Takes a chunk file of @file_size bytes out of the counts (the rule of
 * scan()). */
static void account_removed(struct efs_store *s, off_t file_size)
{
	pthread_mutex_lock(&s->lock);
	if (s->chunk_count > 0)
		s->chunk_count--;
	s->bytes -= EFS_MIN(s->bytes, file_size > HEADER_LEN ? (uint64_t)file_size - HEADER_LEN : 0);
	pthread_mutex_unlock(&s->lock);
}

/* Moves a chunk that failed its checks out of the way. A damaged file's
 * size says nothing reliable about what was counted for it, so the counts
 * are taken again from the disk (corruption is rare). */
static void quarantine(struct efs_store *s, const char *chunk_id, const char *path)
{
	char dest[PATH_MAX];
	snprintf(dest, sizeof(dest), "%s/corrupt/%s", s->dir, chunk_id);
	if (rename(path, dest) == 0) {
		pthread_mutex_lock(&s->lock);
		scan(s, false);
		pthread_mutex_unlock(&s->lock);
	}
}

/* Opens chunk @chunk_id (its path goes to @path) and reads its header.
 * On success *fd is open for the caller to close. -EINVAL (bad id),
 * -ENOENT, -EBADMSG (damaged header: the caller quarantines) or -errno. */
static int open_chunk(struct efs_store *s, const char *chunk_id, char *path, size_t path_size,
		      int *fd, uint32_t *flags, uint64_t *length, uint32_t *crc)
{
	unsigned char header[HEADER_LEN];
	int r;

	if (!efs_chunk_id_valid(chunk_id))
		return -EINVAL;
	chunk_path(s, chunk_id, path, path_size);
	int f = open(path, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return -errno;
	if ((r = read_all(f, header, HEADER_LEN, 0)) < 0 ||
	    (r = header_decode(header, flags, length, crc)) < 0) {
		close(f);
		return r;
	}
	*fd = f;
	return 0;
}

int efs_store_get(struct efs_store *s, const char *chunk_id, struct efs_buf *out,
		  uint32_t *flags)
{
	char path[PATH_MAX];
	uint64_t length;
	uint32_t crc, f;
	int fd = -1;

	int r = open_chunk(s, chunk_id, path, sizeof(path), &fd, &f, &length, &crc);
	if (r < 0)
		goto out;
	efs_buf_reset(out);
	if ((r = efs_buf_reserve(out, length)) < 0)
		goto out;
	if ((r = read_all(fd, out->data, length, HEADER_LEN)) < 0)
		goto out;
	out->len = length;
	out->data[length] = '\0';
	if (efs_crc32c(0, out->data, length) != crc) {
		r = -EBADMSG;
		goto out;
	}
	*flags = f;
out:
	if (fd >= 0)
		close(fd);
	if (r == -EBADMSG)
		quarantine(s, chunk_id, path);
	return r;
}

int efs_store_stat(struct efs_store *s, const char *chunk_id, uint64_t *length, uint32_t *flags,
		   int64_t *mtime_ms)
{
	char path[PATH_MAX];
	struct stat st;
	uint64_t len;
	uint32_t crc, f;
	int fd = -1;

	int r = open_chunk(s, chunk_id, path, sizeof(path), &fd, &f, &len, &crc);
	if (r == 0) {
		if (fstat(fd, &st) < 0)
			r = -errno;
		else if ((uint64_t)st.st_size != len + HEADER_LEN)
			r = -EBADMSG; /* truncated or extended behind our back */
		close(fd);
	}
	if (r == -EBADMSG)
		quarantine(s, chunk_id, path);
	if (r < 0)
		return r;
	*length = len;
	*flags = f;
	*mtime_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
	return 0;
}

int efs_store_delete(struct efs_store *s, const char *chunk_id, int64_t unmodified_since_ms)
{
	char path[PATH_MAX];
	struct stat st;

	if (!efs_chunk_id_valid(chunk_id))
		return -EINVAL;
	chunk_path(s, chunk_id, path, sizeof(path));
	if (stat(path, &st) < 0)
		return -errno;
	int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
	if (unmodified_since_ms > 0 && mtime >= unmodified_since_ms)
		return -EBUSY;
	if (unlink(path) < 0)
		return -errno;
	account_removed(s, st.st_size);
	return 0;
}

int efs_store_iterate(struct efs_store *s, efs_store_iter_fn fn, void *ctx)
{
	char path[PATH_MAX];
	int r = 0;
	for (int i = 0; i < 256 && r == 0; i++) {
		snprintf(path, sizeof(path), "%s/chunks/%02x", s->dir, i);
		DIR *d = opendir(path);
		if (!d)
			return -errno;
		struct dirent *e;
		while (r == 0 && (e = readdir(d))) {
			struct stat st;
			if (!efs_chunk_id_valid(e->d_name) ||
			    fstatat(dirfd(d), e->d_name, &st, 0) < 0 || st.st_size < HEADER_LEN)
				continue;
			r = fn(ctx, e->d_name, (uint64_t)st.st_size - HEADER_LEN,
			       (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000);
		}
		closedir(d);
	}
	return r;
}

void efs_store_stats(struct efs_store *s, struct efs_store_stats *out)
{
	pthread_mutex_lock(&s->lock);
	out->chunk_count = s->chunk_count;
	out->bytes = s->bytes + s->reserved;
	pthread_mutex_unlock(&s->lock);
}
