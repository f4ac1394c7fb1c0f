/* SPDX-License-Identifier: MIT */
/* chunk_backend.c - forwards each efs_chunk_backend_* call to the
 * backend's operations; optional ones absent answer as documented. */
#include "master/chunk_backend.h"
#include "echofs/codec.h"
#include "echofs/hash.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int efs_chunk_backend_new(const struct efs_chunk_backend_ops *ops, void *impl,
			  struct efs_chunk_backend **out)
{
	struct efs_chunk_backend *b = calloc(1, sizeof(*b));
	if (!b) {
		ops->free(impl);
		return -ENOMEM;
	}
	b->ops = ops;
	b->impl = impl;
	*out = b;
	return 0;
}

void efs_chunk_backend_free(struct efs_chunk_backend *b)
{
	if (!b)
		return;
	b->ops->free(b->impl);
	free(b);
}

const char *efs_chunk_backend_name(const struct efs_chunk_backend *b)
{
	return b->ops->name;
}

int efs_chunk_backend_put(struct efs_chunk_backend *b, const struct efs_chunk_info *chunk,
			  const void *stored, const struct efs_replica *known,
			  unsigned known_count, bool recorded, struct efs_chunk_put_result *out)
{
	out->location_count = 0;
	out->sent = false;
	return b->ops->put(b->impl, chunk, stored, known, known_count, recorded, out);
}

int efs_chunk_backend_get(struct efs_chunk_backend *b, const struct efs_chunk_info *chunk,
			  const struct efs_replica *known, unsigned known_count,
			  struct efs_buf *out, struct efs_buf *scratch)
{
	return b->ops->get(b->impl, chunk, known, known_count, out, scratch);
}

/* Whether @a and @b name the same set of locations. */
static bool same_locations(const struct efs_replica *a, unsigned na, const struct efs_replica *b,
			   unsigned nb)
{
	if (na != nb)
		return false;
	for (unsigned i = 0; i < na; i++) {
		bool found = false;
		for (unsigned j = 0; j < nb && !found; j++)
			found = strcmp(a[i].worker_id, b[j].worker_id) == 0;
		if (!found)
			return false;
	}
	return true;
}

int efs_chunk_backend_get_fresh(struct efs_chunk_backend *b, struct efs_meta *meta,
				const struct efs_chunk_info *chunk, const struct efs_replica *known,
				unsigned known_count, struct efs_buf *out, struct efs_buf *scratch)
{
	struct efs_replica fresh[EFS_MAX_REPLICAS];
	struct efs_chunk_info row;
	unsigned fresh_count = 0;
	int r = efs_chunk_backend_get(b, chunk, known, known_count, out, scratch);
	if (r != -EIO || !meta)
		return r;
	if (efs_meta_chunk_get(meta, chunk->chunk_id, &row, fresh, &fresh_count) < 0 ||
	    same_locations(known, known_count, fresh, fresh_count))
		return r;
	return efs_chunk_backend_get(b, chunk, fresh, fresh_count, out, scratch);
}

int efs_chunk_backend_writable(struct efs_chunk_backend *b, unsigned copies, char *why,
			       size_t why_len)
{
	if (why_len)
		why[0] = '\0';
	return b->ops->writable ? b->ops->writable(b->impl, copies, why, why_len) : 0;
}

bool efs_chunk_backend_erasure_coding(const struct efs_chunk_backend *b)
{
	return b->ops->erasure_coding;
}

bool efs_chunk_backend_shows_locations(const struct efs_chunk_backend *b)
{
	return b->ops->location_live != NULL;
}

bool efs_chunk_backend_location_live(struct efs_chunk_backend *b, const struct efs_replica *rep)
{
	return b->ops->location_live && b->ops->location_live(b->impl, rep);
}

int efs_chunk_backend_redundant(struct efs_chunk_backend *b, const struct efs_chunk_info *chunk,
				const struct efs_replica *known, unsigned known_count,
				char keep[EFS_ID_MAX + 1], char (*drop)[EFS_ID_MAX + 1],
				unsigned *drop_count)
{
	*drop_count = 0;
	keep[0] = '\0';
	if (!b->ops->redundant)
		return 0;
	return b->ops->redundant(b->impl, chunk, known, known_count, keep, drop, drop_count);
}

bool efs_chunk_backend_has_redundant(const struct efs_chunk_backend *b)
{
	return b->ops->redundant != NULL;
}

int efs_chunk_backend_remove(struct efs_chunk_backend *b, const char *chunk_id,
			      const struct efs_replica *known, unsigned known_count,
			      int64_t unmodified_for_ms, uint64_t lease_epoch)
{
	return b->ops->remove(b->impl, chunk_id, known, known_count, unmodified_for_ms,
			      lease_epoch);
}

int efs_chunk_backend_exists(struct efs_chunk_backend *b, const char *chunk_id,
			     const struct efs_replica *known, unsigned known_count)
{
	return b->ops->exists(b->impl, chunk_id, known, known_count);
}

int efs_chunk_backend_list(struct efs_chunk_backend *b, char *cursor, size_t max,
			   struct efs_chunk_listed *out, size_t *count)
{
	if (!b->ops->list)
		return -ENOTSUP;
	return b->ops->list(b->impl, cursor, max, out, count);
}

void efs_chunk_backend_pin(struct efs_chunk_backend *b, const char *chunk_id)
{
	if (b->ops->pin)
		b->ops->pin(b->impl, chunk_id);
}

void efs_chunk_backend_unpin(struct efs_chunk_backend *b, const char *chunk_id)
{
	if (b->ops->unpin)
		b->ops->unpin(b->impl, chunk_id);
}

bool efs_chunk_backend_pinned(struct efs_chunk_backend *b, const char *chunk_id)
{
	return b->ops->pinned ? b->ops->pinned(b->impl, chunk_id) : false;
}

int efs_chunk_backend_health(struct efs_chunk_backend *b, struct efs_chunk_health *out)
{
	if (!b->ops->health)
		return -ENOTSUP;
	return b->ops->health(b->impl, out);
}

int efs_chunk_from_stored(const struct efs_chunk_info *chunk, bool gzip, struct efs_buf *scratch,
			  struct efs_buf *out)
{
	char hex[EFS_SHA256_HEX_LEN + 1];
	if (gzip) {
		int r = efs_codec_decode(scratch->data ? scratch->data : "", scratch->len,
					 chunk->size, out);
		if (r < 0)
			return r;
	} else {
		if (scratch->len != chunk->size)
			return -EBADMSG;
		if (scratch->len > out->cap)
			return -E2BIG;
		/* The stored bytes are the chunk: swap the buffers, no copy
		 * (each keeps its cap). */
		struct efs_buf held = *out;
		*out = *scratch;
		out->cap = held.cap;
		held.cap = scratch->cap;
		*scratch = held;
	}
	efs_sha256_hex(out->data ? out->data : "", out->len, hex);
	return strcmp(hex, chunk->chunk_id) == 0 ? 0 : -EBADMSG;
}
