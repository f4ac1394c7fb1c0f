/* SPDX-License-Identifier: MIT */
/* store_record.c - the on-disk record: how a header and a trailer are
 * encoded and checked, what makes a record committed (a trailer whose CRC,
 * seeded with its header's, checks) and how one is made dead again
 * (store_uncommit), plus the pread/pwrite loops every store file uses.
 *
 * Invariants owned here: a trailer only ever commits its own header; a
 * header that decodes names a valid chunk id, a known type and a length
 * within EFS_STORE_MAX_CHUNK (none for a tombstone). The layout is in
 * store.h; nothing here takes s->lock.
 */
#include "worker/store_internal.h"
#include "echofs/hash.h"
#include "echofs/util.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

/* ---- record encoding ------------------------------------------------- */

static void put_le(unsigned char *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

uint64_t store_get_le(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* Header: "EFSR", version, type, flags, 1 reserved, length (le64), target
 * volume (le32), first volume (le32; 0 in tombstones written before it
 * existed), chunk id (64 ASCII), 4 reserved, CRC32C of the first 92 bytes.
 * Returns the header CRC. */
uint32_t store_header_encode(unsigned char *h, const struct record *rec)
{
	memset(h, 0, HEADER_LEN);
	memcpy(h, RECORD_MAGIC, 4);
	h[4] = FORMAT_VERSION;
	h[5] = rec->type;
	h[6] = rec->flags;
	put_le(h + 8, rec->length, 8);
	put_le(h + 16, rec->target_volume, 4);
	put_le(h + 20, rec->first_volume, 4);
	memcpy(h + 24, rec->chunk_id, 64);
	uint32_t crc = efs_crc32c(0, h, 92);
	put_le(h + 92, crc, 4);
	return crc;
}

int store_header_decode(const unsigned char *h, struct record *rec)
{
	uint32_t crc = (uint32_t)store_get_le(h + 92, 4);
	if (memcmp(h, RECORD_MAGIC, 4) != 0 || efs_crc32c(0, h, 92) != crc)
		return -EBADMSG;
	/* Intact, so written that way: by a newer binary above ours. */
	if (h[4] > FORMAT_VERSION)
		return -EPROTONOSUPPORT;
	if (h[4] != FORMAT_VERSION)
		return -EBADMSG;
	rec->type = h[5];
	rec->flags = h[6];
	rec->length = store_get_le(h + 8, 8);
	rec->target_volume = (uint32_t)store_get_le(h + 16, 4);
	/* An old tombstone named only the newest record's volume: assume any
	 * volume up to it may hold an older one. */
	rec->first_volume = (uint32_t)store_get_le(h + 20, 4);
	if (rec->first_volume == 0 && rec->target_volume)
		rec->first_volume = 1;
	memcpy(rec->chunk_id, h + 24, 64);
	rec->chunk_id[64] = '\0';
	rec->header_crc = crc;
	if ((rec->type != TYPE_CHUNK && rec->type != TYPE_TOMBSTONE) ||
	    rec->length > EFS_STORE_MAX_CHUNK || (rec->type == TYPE_TOMBSTONE && rec->length) ||
	    !efs_chunk_id_valid(rec->chunk_id))
		return -EBADMSG;
	return 0;
}

/* Trailer: payload CRC32C, "EFSK", sequence number (le64), commit time
 * (le64 ms), 4 reserved, CRC32C of the first 28 bytes seeded with the
 * header's CRC (so a trailer only ever commits its own header). A sequence
 * number past INT64_MAX does not commit either: no store writes 2^63
 * records, and replaying one near UINT64_MAX would wrap the next number
 * to 0, so that every later write lost to it at the next open. */
void store_trailer_encode(unsigned char *t, uint32_t header_crc, const struct commit *c)
{
	memset(t, 0, TRAILER_LEN);
	put_le(t, c->payload_crc, 4);
	memcpy(t + 4, COMMIT_MAGIC, 4);
	put_le(t + 8, c->seq, 8);
	put_le(t + 16, (uint64_t)c->mtime_ms, 8);
	put_le(t + 28, efs_crc32c(header_crc, t, 28), 4);
}

int store_trailer_decode(const unsigned char *t, uint32_t header_crc, struct commit *c)
{
	if (memcmp(t + 4, COMMIT_MAGIC, 4) != 0 ||
	    efs_crc32c(header_crc, t, 28) != (uint32_t)store_get_le(t + 28, 4) ||
	    store_get_le(t + 8, 8) > INT64_MAX)
		return -EBADMSG;
	c->payload_crc = (uint32_t)store_get_le(t, 4);
	c->seq = store_get_le(t + 8, 8);
	c->mtime_ms = (int64_t)store_get_le(t + 16, 8);
	return 0;
}

/* ---- I/O helpers ----------------------------------------------------- */

int store_write_all(int fd, const void *data, size_t len, uint64_t offset)
{
	const char *p = data;
	while (len > 0) {
		ssize_t w = pwrite(fd, p, len, (off_t)offset);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		len -= (size_t)w;
		offset += (uint64_t)w;
	}
	return 0;
}

/* -EBADMSG when the file ends first (a truncated volume). */
int store_read_all(int fd, void *data, size_t len, uint64_t offset)
{
	char *p = data;
	while (len > 0) {
		ssize_t got = pread(fd, p, len, (off_t)offset);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (got == 0)
			return -EBADMSG;
		p += got;
		len -= (size_t)got;
		offset += (uint64_t)got;
	}
	return 0;
}

int store_fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return r;
}

/* ---- uncommitting ---------------------------------------------------- */

/* Makes a committed record dead on disk by overwriting its commit magic,
 * if the trailer at the place the index gives carries one. A replay then
 * treats it like a write cut before its commit: an older copy of the chunk
 * wins, or none. The caller syncs the volume (or accepts that a crash
 * undoes it). */
int store_uncommit(struct volume *v, uint64_t offset, uint64_t length)
{
	static const unsigned char zero[4];
	unsigned char magic[4];
	uint64_t at = offset + HEADER_LEN + length + 4;
	int r = store_read_all(v->fd, magic, sizeof(magic), at);
	if (r == -EBADMSG || (r == 0 && memcmp(magic, COMMIT_MAGIC, 4) != 0))
		return 0; /* not there (truncated) or not committed */
	return r < 0 ? r : store_write_all(v->fd, zero, sizeof(zero), at);
}
