/* SPDX-License-Identifier: MIT */
/* store_volume.c - the volume set: which volume files exist, which one is
 * active, where a new record goes (store_reserve), and which tombstones a
 * volume must keep.
 *
 * Invariants owned here: s->vols is sorted by increasing id; a volume is
 * freed when its last reference goes (the table, writers, readers, the
 * dirty list, compaction); a reserved region's header is written before
 * any later region is reserved, so the chain of headers a scan follows is
 * never broken by a record that was acknowledged; a new volume file's
 * directory entry is synced before any record in it can be acknowledged;
 * a volume counts for tombstone ranges until its unlink is durable.
 */
#include "worker/store_internal.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- volumes ---------------------------------------------------------- */

void store_volume_path(const struct efs_store *s, uint32_t id, char *out, size_t size)
{
	snprintf(out, size, "%s/volumes/%010u.vol", s->dir, id);
}

/* Under s->lock. */
void store_volume_unref(struct volume *v)
{
	if (--v->refs > 0)
		return;
	close(v->fd);
	free(v->tombs);
	free(v);
}

/* Under s->lock (or at open). */
int store_volume_add_tomb(struct volume *v, uint32_t first, uint32_t last)
{
	for (size_t i = 0; i < v->tomb_count; i++) {
		if (v->tombs[i].first == first && v->tombs[i].last == last) {
			v->tombs[i].bytes += RECORD_LEN(0);
			return 0;
		}
	}
	struct tomb_bytes *p = realloc(v->tombs, (v->tomb_count + 1) * sizeof(*p));
	if (!p)
		return -ENOMEM;
	v->tombs = p;
	v->tombs[v->tomb_count++] = (struct tomb_bytes){first, last, RECORD_LEN(0)};
	return 0;
}

int store_volume_table_add(struct efs_store *s, struct volume *v)
{
	if (s->vol_count == s->vol_alloc) {
		size_t grow = s->vol_alloc ? s->vol_alloc * 2 : 16;
		struct volume **p = realloc(s->vols, grow * sizeof(*p));
		if (!p)
			return -ENOMEM;
		s->vols = p;
		s->vol_alloc = grow;
	}
	s->vols[s->vol_count++] = v;
	return 0;
}

/* Whether a volume other than @except with an id in [first, last] exists:
 * a tombstone in @except for that range still shadows records there. A
 * volume counts until its unlink is durable (compact_volume). */
bool store_volume_in_range(const struct efs_store *s, uint32_t first, uint32_t last,
			   const struct volume *except)
{
	for (size_t i = 0; i < s->vol_count; i++)
		if (s->vols[i] != except && s->vols[i]->id >= first && s->vols[i]->id <= last)
			return true;
	return false;
}

/* Bytes of @v that compaction would have to keep. */
uint64_t store_volume_needed(const struct efs_store *s, const struct volume *v)
{
	uint64_t needed = v->live;
	for (size_t i = 0; i < v->tomb_count; i++)
		if (store_volume_in_range(s, v->tombs[i].first, v->tombs[i].last, v))
			needed += v->tombs[i].bytes;
	return needed;
}

void store_volume_table_remove(struct efs_store *s, struct volume *v)
{
	for (size_t i = 0; i < s->vol_count; i++) {
		if (s->vols[i] == v) {
			memmove(&s->vols[i], &s->vols[i + 1], (s->vol_count - i - 1) * sizeof(v));
			s->vol_count--;
			return;
		}
	}
}

/* Starts a new active volume. Under s->lock (rare: once per volume_bytes).
 * The directory is fsync'd before any record in the file can be acknowledged. */
static int volume_start(struct efs_store *s)
{
	char path[PATH_MAX];
	struct volume *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->id = s->next_volume_id;
	store_volume_path(s, v->id, path, sizeof(path));
	v->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (v->fd < 0) {
		int r = -errno;
		free(v);
		return r;
	}
	v->refs = 1;
	int r = fsync(s->vol_dir_fd) < 0 ? -errno : store_volume_table_add(s, v);
	if (r < 0) {
		close(v->fd);
		unlink(path);
		free(v);
		return r;
	}
	s->next_volume_id++;
	s->active = v;
	return 0;
}

/* Takes a region of @record_len bytes at the end of the active volume and
 * writes @header there. Under s->lock: because the header is written before
 * any later region is reserved, a sync that covers a later record covers
 * this header too, so a scan can always follow the chain of headers. The
 * caller gets a reference to the volume and counts as one of its writers. */
int store_reserve(struct efs_store *s, const unsigned char *header, uint64_t record_len,
		  struct volume **vol, uint64_t *offset)
{
	int r;
	if (s->broken)
		return s->broken;
	struct volume *v = s->active;
	if (v && v->size > 0 && v->size + record_len > s->volume_bytes) {
		v->sealed = true;
		s->active = v = NULL;
	}
	if (!v) {
		if ((r = volume_start(s)) < 0)
			return r;
		v = s->active;
	}
	if ((r = store_write_all(v->fd, header, HEADER_LEN, v->size)) < 0)
		return r;
	*offset = v->size;
	v->size += record_len;
	v->refs++;
	v->writers++;
	*vol = v;
	return 0;
}
