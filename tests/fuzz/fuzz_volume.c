/* SPDX-License-Identifier: MIT */
/* fuzz_volume.c - libFuzzer harness for the worker's volume record reader
 * (src/worker/store_record.c, store_recovery.c: the scan and replay at
 * open; store.c reads; store_compact.c copies): a damaged volume file must
 * never crash the worker, leak, hang, or make it serve what it did not
 * store.
 *
 * Input (at most 1 MiB): a flags byte, then the contents of up to four
 * volume files separated by "--vol--".
 *   flag 0x01: make each record header in the chain check (magic,
 *              version, CRC) - random bytes almost never would;
 *   flag 0x02: make each trailer commit its header (magic, CRC);
 *   flag 0x04: make each trailer's payload CRC match the payload;
 *   flag 0x08: write the clean marker naming volume 1 (its payloads are
 *              then not checked at open).
 * The fix-ups follow the chain the way store_scan_volume does, so the
 * fuzzer's mutations reach the replay (sequence numbers, tombstones and
 * their volume ranges, lengths, flags) instead of stopping at a CRC.
 *
 * Each run writes the volumes to a scratch directory (under /dev/shm when
 * it exists), opens a store on it, lists and reads every chunk, compacts
 * until nothing qualifies, lists and reads again, closes, reopens, lists
 * and reads again, writes a chunk and deletes one, closes, reopens and
 * checks both, and closes. Checked beyond the sanitizers:
 *   - open either fails cleanly or succeeds; no call crashes;
 *   - every listed chunk stats with the listed length and reads back (or
 *     reports -EBADMSG: quarantined, absent from then on) with that length;
 *     every other one is read by descriptor (efs_store_get_payload, the
 *     sendfile path), whose bytes at the offset must match the CRC it
 *     verified;
 *   - compaction changes no chunk that reads back: the same ids with the
 *     same bytes before and after;
 *   - after close and reopen every chunk that read back still reads back
 *     with the same bytes (an older copy may reappear for a quarantined
 *     one; nothing else may appear);
 *   - a chunk written and one deleted after that reopen are still
 *     written and deleted after the next one.
 * Build and run: make fuzz; bin/fuzz_volume tests/fuzz/corpus/volume
 */
#include "echofs/buf.h"
#include "echofs/hash.h"
#include "echofs/util.h"
#include "worker/store_internal.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INPUT_MAX (1024 * 1024)
#define MAX_VOLUMES 4
#define SEPARATOR "--vol--"
#define MAX_SEEN 4096
#define NEW_ID "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff00"
#define NEW_DATA "written after the damaged volumes were opened"

#define FIX_HEADER 0x01
#define FIX_TRAILER 0x02
#define FIX_PAYLOAD 0x04
#define CLEAN_MARKER 0x08

static char base[256];

struct seen {
	size_t count;
	struct {
		char id[65];
		uint64_t length;
		uint32_t crc;
		bool readable;
	} chunk[MAX_SEEN];
	size_t quarantined_count;
	char quarantined[MAX_SEEN][65];
};

static void put_le(unsigned char *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* Makes the chain of records in @vol (@len bytes) check, per @flags. */
static void fix_volume(unsigned char *vol, size_t len, unsigned flags)
{
	for (size_t off = 0; off + HEADER_LEN + TRAILER_LEN <= len;) {
		unsigned char *h = vol + off;
		if (flags & FIX_HEADER) {
			memcpy(h, RECORD_MAGIC, 4);
			h[4] = FORMAT_VERSION;
			put_le(h + 92, efs_crc32c(0, h, 92), 4);
		}
		uint32_t header_crc = (uint32_t)store_get_le(h + 92, 4);
		uint64_t length = store_get_le(h + 8, 8);
		if (length > EFS_STORE_MAX_CHUNK || off + RECORD_LEN(length) > len)
			break;
		unsigned char *t = h + HEADER_LEN + length;
		if (flags & FIX_PAYLOAD)
			put_le(t, efs_crc32c(0, h + HEADER_LEN, (size_t)length), 4);
		if (flags & FIX_TRAILER) {
			memcpy(t + 4, COMMIT_MAGIC, 4);
			put_le(t + 28, efs_crc32c(header_crc, t, 28), 4);
		}
		off += (size_t)RECORD_LEN(length);
	}
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	return remove(path);
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || (len && write(fd, data, len) != (ssize_t)len))
		abort();
	close(fd);
}

static int list_one(void *ctx, const char *chunk_id, uint64_t length, int64_t mtime_ms)
{
	struct seen *seen = ctx;
	if (!efs_chunk_id_valid(chunk_id) || length > EFS_STORE_MAX_CHUNK)
		abort();
	if (seen->count < MAX_SEEN) {
		memcpy(seen->chunk[seen->count].id, chunk_id, 65);
		seen->chunk[seen->count].length = length;
		seen->count++;
	}
	return 0;
}

/* Lists and reads every chunk of @s into @seen. */
static void read_all(struct efs_store *s, struct seen *seen)
{
	struct efs_buf buf;
	memset(seen, 0, sizeof(*seen));
	if (efs_store_iterate(s, list_one, seen) < 0)
		abort();
	efs_buf_init(&buf, EFS_STORE_MAX_CHUNK);
	for (size_t i = 0; i < seen->count; i++) {
		uint64_t length;
		uint32_t flags, crc;
		int64_t mtime;
		const char *id = seen->chunk[i].id;
		if (efs_store_stat(s, id, &length, &flags, &mtime) != 0 ||
		    length != seen->chunk[i].length)
			abort();
		/* Every other chunk by descriptor (the sendfile path): the bytes
		 * there must be the ones verified. */
		struct efs_store_payload p = {.fd = -1};
		int r = i % 2 ? efs_store_get_payload(s, id, 0, &buf, &p)
			      : efs_store_get_crc(s, id, &buf, &flags, &crc);
		if (r == 0 && i % 2) {
			if (p.fd < 0 || p.length != length || efs_buf_reserve(&buf, length) < 0 ||
			    pread(p.fd, buf.data, length, (off_t)p.offset) != (ssize_t)length)
				abort();
			close(p.fd);
			buf.len = length;
			crc = p.crc;
		}
		if (r == 0) {
			if (buf.len != length || efs_crc32c(0, buf.data, buf.len) != crc)
				abort();
			seen->chunk[i].readable = true;
			seen->chunk[i].crc = crc;
		} else if (r == -EBADMSG) {
			memcpy(seen->quarantined[seen->quarantined_count++], id, 65);
			if (efs_store_stat(s, id, &length, &flags, &mtime) != -ENOENT)
				abort();
		} else {
			abort();
		}
	}
	efs_buf_release(&buf);
}

static void remove_base(void)
{
	nftw(base, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *find(const struct seen *seen, const char *id, size_t *at)
{
	for (size_t i = 0; i < seen->count; i++)
		if (strcmp(seen->chunk[i].id, id) == 0) {
			*at = i;
			return seen->chunk[i].id;
		}
	return NULL;
}

/* Every readable chunk of @before reads the same in @after; with @exact,
 * nothing else reads in @after. */
static void compare(const struct seen *before, const struct seen *after, bool exact)
{
	size_t j;
	for (size_t i = 0; i < before->count; i++) {
		if (!before->chunk[i].readable)
			continue;
		if (!find(after, before->chunk[i].id, &j) || !after->chunk[j].readable ||
		    after->chunk[j].crc != before->chunk[i].crc ||
		    after->chunk[j].length != before->chunk[i].length)
			abort();
	}
	for (size_t i = 0; i < after->count; i++) {
		if (!after->chunk[i].readable)
			continue;
		if (find(before, after->chunk[i].id, &j) && before->chunk[j].readable)
			continue;
		if (exact)
			abort();
		bool was_quarantined = false;
		for (size_t q = 0; q < before->quarantined_count; q++)
			was_quarantined |= strcmp(before->quarantined[q], after->chunk[i].id) == 0;
		if (!was_quarantined)
			abort();
	}
}

static struct efs_store *open_store(const char *dir)
{
	struct efs_store_options opt = {.volume_bytes = 64 * 1024, .compact_interval_ms = 0};
	struct efs_store *s = NULL;
	char err[512];
	if (efs_store_open_with(dir, &opt, &s, err, sizeof(err)) != 0)
		return NULL;
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct seen first, compacted, reopened;
	char dir[512], path[600];
	if (size < 1 || size > INPUT_MAX)
		return 0;
	if (!base[0]) {
		const char *root = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
		snprintf(base, sizeof(base), "%s/fuzz_volume.XXXXXX", root);
		if (!mkdtemp(base))
			abort();
		atexit(remove_base);
	}
	unsigned flags = data[0];
	data++, size--;

	snprintf(dir, sizeof(dir), "%s/store", base);
	nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	snprintf(path, sizeof(path), "%s/volumes", dir);
	if (mkdir(dir, 0700) < 0 || mkdir(path, 0700) < 0)
		abort();
	unsigned char *copy = malloc(size ? size : 1);
	if (!copy)
		abort();
	memcpy(copy, data, size);
	size_t off = 0;
	for (unsigned v = 1; v <= MAX_VOLUMES && off <= size; v++) {
		unsigned char *start = copy + off;
		unsigned char *sep = memmem(start, size - off, SEPARATOR, strlen(SEPARATOR));
		size_t len = sep ? (size_t)(sep - start) : size - off;
		if (v == MAX_VOLUMES)
			len = size - off;
		fix_volume(start, len, flags);
		snprintf(path, sizeof(path), "%s/volumes/%010u.vol", dir, v);
		write_file(path, start, len);
		if (!sep || v == MAX_VOLUMES)
			break;
		off += len + strlen(SEPARATOR);
	}
	free(copy);
	if (flags & CLEAN_MARKER) {
		snprintf(path, sizeof(path), "%s/volumes/clean", dir);
		write_file(path, "1\n", 2);
	}

	struct efs_store *s = open_store(dir);
	if (!s)
		return 0;
	read_all(s, &first);
	for (int i = 0; i < 16 && efs_store_compact(s) > 0; i++)
		;
	read_all(s, &compacted);
	compare(&first, &compacted, true);
	/* Older copies of what either read quarantined may come back. */
	for (size_t q = 0; q < first.quarantined_count && compacted.quarantined_count < MAX_SEEN;
	     q++)
		memcpy(compacted.quarantined[compacted.quarantined_count++], first.quarantined[q],
		       65);
	efs_store_close(s);

	s = open_store(dir);
	if (!s)
		abort(); /* it opened before: what it wrote must open again */
	read_all(s, &reopened);
	compare(&compacted, &reopened, false);

	/* The worker keeps working on what it found: a new write and a
	 * delete survive the next restart. */
	const char *deleted = NULL;
	for (size_t i = 0; i < reopened.count && !deleted; i++)
		if (reopened.chunk[i].readable && strcmp(reopened.chunk[i].id, NEW_ID) != 0)
			deleted = reopened.chunk[i].id;
	struct efs_store_writer *w = NULL;
	if (efs_store_write_begin(s, NEW_ID, strlen(NEW_DATA), 0, &w) != 0 ||
	    efs_store_write(w, NEW_DATA, strlen(NEW_DATA)) != 0 ||
	    efs_store_write_commit(w, false, 0) != 0)
		abort();
	if (deleted && efs_store_delete(s, deleted, 0) != 0)
		abort();
	efs_store_close(s);

	s = open_store(dir);
	if (!s)
		abort();
	struct efs_buf buf;
	uint32_t chunk_flags;
	uint64_t length;
	int64_t mtime;
	efs_buf_init(&buf, EFS_STORE_MAX_CHUNK);
	if (efs_store_get(s, NEW_ID, &buf, &chunk_flags) != 0 || buf.len != strlen(NEW_DATA) ||
	    memcmp(buf.data, NEW_DATA, buf.len) != 0)
		abort(); /* the acknowledged write is lost or replaced */
	if (deleted && efs_store_stat(s, deleted, &length, &chunk_flags, &mtime) != -ENOENT)
		abort(); /* the deleted chunk came back */
	efs_buf_release(&buf);
	efs_store_close(s);
	return 0;
}
