/* SPDX-License-Identifier: MIT */
/* test_upload_pipeline.c - unit tests of the one-request upload pipeline
 * (src/master/upload_pipeline.h).
 *
 * The pipeline is included whole and efs_upload_chunk_encoded (upload.h: store
 * one chunk) is replaced by a recorder, so the tests see every chunk the
 * pipeline hands on, from which thread, and in which order, and can make
 * one fail or wait. The contract under test: every chunk but the last is
 * exactly chunk_size bytes whatever the pieces fed, an empty stream has
 * none; each chunk is stored once under its index with its SHA-256 as id;
 * chunks may complete out of order and finish still waits for all of them
 * and reports the stream's size, count, stored bytes and SHA-256; the
 * first failure is returned (with its chunk's index) and stops further
 * chunks; chunks with one id are never stored at the same time; at depth
 * 1, and for the last chunk, storing happens in the feeding thread; free
 * joins everything (the sanitizer build checks for leaks). A stream that
 * fits in one chunk (or is empty) opens no session and goes to
 * efs_upload_single (also replaced) with the file; a longer one opens its
 * session once, before its first chunk is stored. With the MD5 asked
 * for, it is the stream's whatever the chunk buffers' reuse, hashed by a
 * thread of its own only for a stream of several chunks, known before the
 * last chunk is stored, and that thread ends with the pipeline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/master/upload_pipeline.c"
#include "master/config.h"
#include "echofs/codec.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHUNKS 256
#define KIB 1024

/* ---- the recorder standing in for efs_upload_chunk_encoded ---------- */

struct recorder {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	size_t chunk_size;
	unsigned char *stream; /* what the test fed, to compare against */
	size_t calls;
	uint64_t order[MAX_CHUNKS]; /* indexes in the order they completed */
	bool seen[MAX_CHUNKS];
	bool bad_bytes;     /* a chunk's bytes or id were not the stream's */
	bool off_main;      /* some chunk was stored outside the feeding thread */
	bool twice;         /* an index was stored twice */
	unsigned same_id_at_once; /* most calls with one chunk id at a time */
	unsigned active_same;
	char active_id[EFS_SHA256_HEX_LEN + 1];
	pthread_t main_thread;
	/* Chunk @hold_index waits until @release_after has completed. */
	int64_t hold_index, release_after;
	bool hold_timed_out;
	int64_t fail_index; /* this chunk fails with fail_code; -1: none */
	int fail_code;
	int64_t slow_index; /* this chunk waits until the test says go; -1 */
	bool slow_go;
	bool slow_entered;
	unsigned active, max_active; /* chunks being stored at once */
	unsigned delay_us;           /* each chunk takes this long */
	/* open_session and efs_upload_single */
	unsigned sessions_opened;
	int open_fail;             /* open_session's answer when < 0 */
	bool chunk_before_session; /* a chunk stored without a session id */
	unsigned single_calls;
	size_t single_len;
	bool single_bad; /* wrong bytes, id or file fields */
	int single_fail;
	struct efs_object_link *single_link; /* the link efs_upload_single got */
};

static struct recorder rec;
/* The budget every pipeline here takes its extra buffers from, a master's
 * size. */
static struct efs_upload_budget budget = {0, EFS_UPLOAD_PIPELINE_SHARED_BYTES};

static void recorder_reset(size_t chunk_size, unsigned char *stream)
{
	free(rec.stream);
	memset(&rec, 0, sizeof(rec));
	pthread_mutex_init(&rec.lock, NULL);
	pthread_cond_init(&rec.changed, NULL);
	rec.chunk_size = chunk_size;
	rec.stream = stream;
	rec.main_thread = pthread_self();
	rec.hold_index = rec.release_after = rec.fail_index = rec.slow_index = -1;
}

void efs_upload_buffers_init(struct efs_upload_buffers *b)
{
	efs_buf_init(&b->encoded, 16);
}

void efs_upload_buffers_release(struct efs_upload_buffers *b)
{
	efs_buf_release(&b->encoded);
}

/* upload.c's first half, as the real one: the id and the encoding in one
 * pass (the stand-in buffer's 16-byte cap stores every chunk raw). */
int efs_upload_encode(struct efs_upload_buffers *bufs, const char *data, size_t len,
		      char chunk_id[EFS_SHA256_HEX_LEN + 1])
{
	return efs_codec_encode_hash(data, len, &bufs->encoded, &bufs->encoded_gzip, chunk_id);
}

/* No cmocka asserts here: this runs on the pipeline's threads. The id it
 * is given must be its bytes' SHA-256 (efs_upload_encode's). */
int efs_upload_chunk_encoded(const struct efs_uploader *up, struct efs_upload_buffers *bufs,
			     const char *session_id, uint64_t index, const char *data, size_t len,
			     const char *chunk_id, struct efs_chunk_result *out)
{
	char hex[EFS_SHA256_HEX_LEN + 1];
	int r = 0;

	efs_sha256_hex(data, len, hex);
	pthread_mutex_lock(&rec.lock);
	if (!chunk_id || strcmp(hex, chunk_id) != 0 || index >= MAX_CHUNKS ||
	    memcmp(data, rec.stream + index * rec.chunk_size, len) != 0)
		rec.bad_bytes = true;
	if (!pthread_equal(pthread_self(), rec.main_thread))
		rec.off_main = true;
	if (rec.active_same > 0 && strcmp(rec.active_id, hex) == 0) {
		rec.active_same++;
	} else if (rec.active_same == 0) {
		rec.active_same = 1;
		memcpy(rec.active_id, hex, sizeof(hex));
	}
	rec.same_id_at_once = EFS_MAX(rec.same_id_at_once, rec.active_same);
	rec.active++;
	rec.max_active = EFS_MAX(rec.max_active, rec.active);
	if (rec.delay_us) { /* so that chunks allowed to overlap do */
		pthread_mutex_unlock(&rec.lock);
		usleep(rec.delay_us);
		pthread_mutex_lock(&rec.lock);
	}
	if ((int64_t)index == rec.hold_index) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 20; /* only so that a broken pipeline fails, not hangs */
		while (!rec.seen[rec.release_after] && !rec.hold_timed_out)
			if (pthread_cond_timedwait(&rec.changed, &rec.lock, &until) == ETIMEDOUT)
				rec.hold_timed_out = true;
	}
	if ((int64_t)index == rec.slow_index) {
		rec.slow_entered = true;
		pthread_cond_broadcast(&rec.changed);
		while (!rec.slow_go)
			pthread_cond_wait(&rec.changed, &rec.lock);
	}
	if ((int64_t)index == rec.fail_index)
		r = rec.fail_code;
	if (!session_id || strcmp(session_id, "session-1") != 0)
		rec.chunk_before_session = true;
	if (index < MAX_CHUNKS) {
		if (rec.seen[index])
			rec.twice = true;
		rec.seen[index] = r == 0;
	}
	if (rec.calls < MAX_CHUNKS)
		rec.order[rec.calls] = index;
	rec.calls++;
	if (strcmp(rec.active_id, hex) == 0 && rec.active_same > 0)
		rec.active_same--;
	rec.active--;
	pthread_cond_broadcast(&rec.changed);
	pthread_mutex_unlock(&rec.lock);
	if (r == 0) {
		memset(out, 0, sizeof(*out));
		memcpy(out->chunk.chunk_id, hex, sizeof(hex));
		out->chunk.size = len;
		out->chunk.stored_size = len / 2 + 1;
	}
	return r;
}

/* The stand-in for upload.c's one-chunk store: checks what it is given
 * and fills the file as the real one does. */
int efs_upload_single(const struct efs_uploader *up, struct efs_upload_buffers *bufs,
		      const char *data, size_t len, const char *chunk_id,
		      struct efs_file_info *file, struct efs_object_link *link,
		      struct efs_chunk_result *out)
{
	char hex[EFS_SHA256_HEX_LEN + 1];

	efs_sha256_hex(data, len, hex);
	rec.single_calls++;
	rec.single_len = len;
	rec.single_link = link;
	if (!pthread_equal(pthread_self(), rec.main_thread))
		rec.off_main = true;
	if (strcmp(hex, chunk_id) != 0 || strcmp(file->sha256, hex) != 0 || file->size != len ||
	    strcmp(file->file_id, "file-1") != 0 || (len && memcmp(data, rec.stream, len) != 0))
		rec.single_bad = true;
	if (rec.single_fail)
		return rec.single_fail;
	file->chunk_count = len ? 1 : 0;
	file->stored_bytes = len ? len / 2 + 1 : 0;
	memset(out, 0, sizeof(*out));
	return 0;
}

static int open_session(void *ctx, char *session_id)
{
	rec.sessions_opened++;
	if (rec.open_fail)
		return rec.open_fail;
	efs_strlcpy(session_id, "session-1", EFS_ID_MAX + 1);
	return 0;
}

/* ---- helpers ---------------------------------------------------------- */

static unsigned char *make_stream(size_t len, uint64_t seed)
{
	unsigned char *s = malloc(len ? len : 1);
	uint64_t x = seed | 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		s[i] = (unsigned char)((x * 0x2545F4914F6CDD1DULL) >> 56);
	}
	return s;
}

/* Feeds @len bytes in pieces of varying size (1..5000 bytes). */
static int feed_in_pieces(struct efs_upload_pipeline *p, const unsigned char *s, size_t len)
{
	static const size_t sizes[] = {1, 7, 4096, 5000, 333, 2048, 17, 4999};
	size_t pos = 0;
	for (unsigned k = 0; pos < len; k++) {
		size_t n = EFS_MIN(sizes[k % EFS_ARRAY_SIZE(sizes)], len - pos);
		int r = efs_upload_pipeline_feed(p, (const char *)s + pos, n);
		if (r < 0)
			return r;
		pos += n;
	}
	return 0;
}

static struct efs_upload_pipeline *new_pipeline(size_t chunk_size)
{
	struct efs_upload_pipeline *p = NULL;
	assert_int_equal(efs_upload_pipeline_new(NULL, &budget, chunk_size, open_session, NULL, &p),
			 0);
	return p;
}

/* What the caller fills before finish. */
static struct efs_file_info file_template(void)
{
	struct efs_file_info f = {0};
	efs_strlcpy(f.file_id, "file-1", sizeof(f.file_id));
	efs_strlcpy(f.owner, "alice", sizeof(f.owner));
	efs_strlcpy(f.name, "a.bin", sizeof(f.name));
	return f;
}

static int finish(struct efs_upload_pipeline *p, struct efs_upload_summary *sum)
{
	struct efs_file_info f = file_template();
	return efs_upload_pipeline_finish(p, &f, sum);
}

/* ---- tests ------------------------------------------------------------ */

static void test_depth_follows_chunk_size(void **state)
{
	assert_int_equal(efs_upload_pipeline_depth(64 * KIB), EFS_UPLOAD_PIPELINE_MAX_DEPTH);
	assert_int_equal(efs_upload_pipeline_depth(1024 * KIB), 4);
	assert_int_equal(efs_upload_pipeline_depth(2048 * KIB), 2);
	assert_int_equal(efs_upload_pipeline_depth(4096 * KIB), 1);
	assert_int_equal(efs_upload_pipeline_depth(EFS_MAX_CHUNK_SIZE), 1);
}

static void test_stream_is_cut_into_chunks_and_hashed(void **state)
{
	size_t chunk = 64 * KIB, len = 10 * chunk + 1234;
	unsigned char *s = make_stream(len, 1);
	recorder_reset(chunk, s);
	struct efs_upload_pipeline *p = new_pipeline(chunk);
	struct efs_upload_summary sum;
	char want[EFS_SHA256_HEX_LEN + 1];

	assert_int_equal(feed_in_pieces(p, s, len), 0);
	assert_int_equal(finish(p, &sum), 0);
	efs_sha256_hex(s, len, want);
	assert_string_equal(sum.sha256, want);
	assert_int_equal(sum.size, len);
	assert_int_equal(sum.chunk_count, 11);
	assert_int_equal(sum.stored_bytes, 10 * (chunk / 2 + 1) + (1234 / 2 + 1));
	assert_int_equal(rec.calls, 11);
	for (unsigned i = 0; i < 11; i++)
		assert_true(rec.seen[i]);
	assert_false(rec.bad_bytes);
	assert_false(rec.twice);
	assert_true(rec.off_main); /* full chunks went to helper threads */
	assert_true(p->thread_count >= 1 && p->thread_count <= p->depth - 1);
	assert_int_equal(efs_upload_pipeline_failed_index(p), UINT64_MAX);
	efs_upload_pipeline_free(p);
}

static void test_exact_multiple_has_no_empty_last_chunk(void **state)
{
	size_t chunk = 64 * KIB, len = 3 * chunk;
	unsigned char *s = make_stream(len, 2);
	recorder_reset(chunk, s);
	struct efs_upload_pipeline *p = new_pipeline(chunk);
	struct efs_upload_summary sum;

	assert_int_equal(efs_upload_pipeline_feed(p, (const char *)s, len), 0);
	assert_int_equal(finish(p, &sum), 0);
	assert_int_equal(sum.chunk_count, 3);
	assert_int_equal(rec.calls, 3);
	assert_false(rec.bad_bytes);
	efs_upload_pipeline_free(p);
}

static void test_empty_stream_has_no_chunk(void **state)
{
	recorder_reset(64 * KIB, make_stream(0, 3));
	struct efs_upload_pipeline *p = new_pipeline(64 * KIB);
	struct efs_upload_summary sum;

	assert_int_equal(finish(p, &sum), 0);
	assert_int_equal(sum.size, 0);
	assert_int_equal(sum.chunk_count, 0);
	assert_int_equal(sum.stored_bytes, 0);
	assert_string_equal(sum.sha256,
			    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	assert_true(sum.recorded); /* the file row alone, no session */
	assert_int_equal(rec.calls, 0);
	assert_int_equal(rec.single_calls, 1);
	assert_int_equal(rec.single_len, 0);
	assert_false(rec.single_bad);
	assert_int_equal(rec.sessions_opened, 0);
	efs_upload_pipeline_free(p);
}

static void test_one_chunk_is_stored_by_the_feeding_thread(void **state)
{
	size_t chunk = 64 * KIB, len = 4 * KIB;
	unsigned char *s = make_stream(len, 4);
	recorder_reset(chunk, s);
	struct efs_upload_pipeline *p = new_pipeline(chunk);
	struct efs_upload_summary sum;

	assert_int_equal(feed_in_pieces(p, s, len), 0);
	assert_int_equal(finish(p, &sum), 0);
	assert_int_equal(sum.chunk_count, 1);
	assert_int_equal(rec.single_calls, 1);
	assert_false(rec.off_main);
	assert_int_equal(p->thread_count, 0); /* a small upload starts no thread */
	efs_upload_pipeline_free(p);
}

/* A body of exactly one chunk is one chunk too: no session, the file
 * recorded with its chunk by efs_upload_single, which gets the bytes, the
 * file's SHA-256 as chunk id and the caller's file. */
static void test_one_chunk_needs_no_session(void **state)
{
	size_t chunk = 64 * KIB;
	unsigned char *s = make_stream(chunk, 12);
	recorder_reset(chunk, s);
	struct efs_upload_pipeline *p = new_pipeline(chunk);
	struct efs_file_info f = file_template();
	struct efs_upload_summary sum;
	char want[EFS_SHA256_HEX_LEN + 1];

	assert_int_equal(feed_in_pieces(p, s, chunk), 0);
	assert_int_equal(rec.single_calls + rec.calls, 0); /* nothing before finish */
	assert_int_equal(efs_upload_pipeline_finish(p, &f, &sum), 0);
	efs_sha256_hex(s, chunk, want);
	assert_true(sum.recorded);
	assert_int_equal(rec.sessions_opened, 0);
	assert_int_equal(rec.calls, 0);
	assert_int_equal(rec.single_calls, 1);
	assert_int_equal(rec.single_len, chunk);
	assert_false(rec.single_bad);
	assert_string_equal(sum.sha256, want);
	assert_string_equal(f.sha256, want);
	assert_int_equal(f.size, chunk);
	assert_int_equal(f.chunk_count, 1);
	assert_int_equal(f.stored_bytes, chunk / 2 + 1);
	assert_string_equal(f.owner, "alice");
	assert_int_equal(sum.chunk_count, 1);
	assert_int_equal(sum.stored_bytes, chunk / 2 + 1);
	efs_upload_pipeline_free(p);
}

/* PutObject's finish: the object goes to efs_upload_single with a body
 * of one chunk (recorded in the same transaction), and a body whose
 * SHA-256 is not the signed one is refused before anything is stored. */
static void test_finish_object_links_one_chunk(void **state)
{
	size_t chunk = 64 * KIB, len = 4 * KIB;
	unsigned char *s = make_stream(len, 15);
	recorder_reset(chunk, s);
	struct efs_upload_pipeline *p = new_pipeline(chunk);
	struct efs_file_info f = file_template();
	struct efs_object_info obj = {0};
	struct efs_object_link link = {&obj, NULL, 0};
	struct efs_upload_summary sum;
	char want[EFS_SHA256_HEX_LEN + 1];

	efs_sha256_hex(s, len, want);
	for (char *c = want; *c; c++) /* the signed hash in any case */
		*c = (char)toupper((unsigned char)*c);
	assert_int_equal(feed_in_pieces(p, s, len), 0);
	assert_int_equal(efs_upload_pipeline_finish_object(p, &f, want, &link, &sum), 0);
	assert_true(sum.recorded);
	assert_true(sum.object_linked);
	assert_int_equal(rec.single_calls, 1);
	assert_ptr_equal(rec.single_link, &link);
	assert_false(rec.single_bad);
	efs_upload_pipeline_free(p);
}

static void test_finish_object_refuses_another_sha256(void **state)
{
	size_t chunk = 64 * KIB;
	size_t lens[] = {4 * KIB, 3 * chunk + 5};
	for (size_t i = 0; i < EFS_ARRAY_SIZE(lens); i++) {
		unsigned char *s = make_stream(lens[i], 16 + i);
		recorder_reset(chunk, s);
		struct efs_upload_pipeline *p = new_pipeline(chunk);
		struct efs_file_info f = file_template();
		struct efs_object_info obj = {0};
		struct efs_object_link link = {&obj, NULL, 0};
		struct efs_upload_summary sum = {0};
		char other[EFS_SHA256_HEX_LEN + 1];

		efs_sha256_hex("not the body", 12, other);
		assert_int_equal(feed_in_pieces(p, s, lens[i]), 0);
		assert_int_equal(efs_upload_pipeline_finish_object(p, &f, other, &link, &sum),
				 -EBADMSG);
		assert_int_equal(rec.single_calls, 0); /* nothing recorded */
		assert_false(sum.recorded);
		assert_int_equal(f.size, 0); /* untouched */
		efs_upload_pipeline_free(p);
	}
}

/* One byte more and the session is opened, once, before the first chunk
 * is stored; the caller's file is left for it to complete the session. */
static void test_second_chunk_opens_the_session(void **state)
{
	size_t chunk = 64 * KIB, len = chunk + 1;
	unsigned char *s = make_stream(len, 13);
	recorder_reset(chunk, s);
	struct efs_upload_pipeline *p = new_pipeline(chunk);
	struct efs_file_info f = file_template();
	struct efs_upload_summary sum;

	assert_int_equal(feed_in_pieces(p, s, len), 0);
	assert_int_equal(efs_upload_pipeline_finish(p, &f, &sum), 0);
	assert_false(sum.recorded);
	assert_int_equal(rec.sessions_opened, 1);
	assert_int_equal(rec.single_calls, 0);
	assert_int_equal(rec.calls, 2);
	assert_false(rec.chunk_before_session);
	assert_false(rec.bad_bytes);
	assert_int_equal(sum.chunk_count, 2);
	assert_int_equal(sum.size, len);
	assert_int_equal(f.size, 0); /* untouched */
	assert_int_equal(f.chunk_count, 0);
	efs_upload_pipeline_free(p);
}

/* The session cannot be opened: the upload fails with that error, no
 * chunk is stored. */
static void test_session_open_failure_fails_the_upload(void **state)
{
	size_t chunk = 64 * KIB, len = 3 * chunk;
	unsigned char *s = make_stream(len, 14);
	recorder_reset(chunk, s);
	rec.open_fail = -EAGAIN;
	struct efs_upload_pipeline *p = new_pipeline(chunk);
	struct efs_upload_summary sum;

	assert_int_equal(efs_upload_pipeline_feed(p, (const char *)s, len), -EAGAIN);
	assert_int_equal(finish(p, &sum), -EAGAIN);
	assert_int_equal(efs_upload_pipeline_failed_index(p), UINT64_MAX);
	assert_int_equal(rec.calls, 0);
	assert_int_equal(rec.single_calls, 0);
	efs_upload_pipeline_free(p);
}

/* The one-chunk store fails: finish returns its error, as chunk 0's, and
 * leaves the file alone. */
static void test_single_failure_is_returned_by_finish(void **state)
{
	size_t chunk = 64 * KIB, len = 4 * KIB;
	unsigned char *s = make_stream(len, 15);
	recorder_reset(chunk, s);
	rec.single_fail = -ENOSPC;
	struct efs_upload_pipeline *p = new_pipeline(chunk);
	struct efs_file_info f = file_template();
	struct efs_upload_summary sum = {0};

	assert_int_equal(efs_upload_pipeline_feed(p, (const char *)s, len), 0);
	assert_int_equal(efs_upload_pipeline_finish(p, &f, &sum), -ENOSPC);
	assert_int_equal(efs_upload_pipeline_failed_index(p), 0);
	assert_int_equal(f.size, 0);
	assert_int_equal(f.sha256[0], '\0');
	assert_int_equal(sum.size, 0);
	assert_int_equal(efs_upload_pipeline_finish(p, &f, &sum), -ENOSPC);
	assert_int_equal(rec.single_calls, 1);
	efs_upload_pipeline_free(p);
}

static void test_depth_one_stores_in_the_feeding_thread(void **state)
{
	size_t chunk = 4 * 1024 * KIB, len = 2 * chunk + 10;
	unsigned char *s = make_stream(len, 5);
	recorder_reset(chunk, s);
	struct efs_upload_pipeline *p = new_pipeline(chunk);
	struct efs_upload_summary sum;

	assert_int_equal(p->depth, 1);
	assert_int_equal(efs_upload_pipeline_feed(p, (const char *)s, len), 0);
	assert_int_equal(finish(p, &sum), 0);
	assert_int_equal(sum.chunk_count, 3);
	assert_false(rec.off_main);
	assert_int_equal(p->thread_count, 0);
	assert_int_equal(rec.order[0], 0);
	assert_int_equal(rec.order[1], 1);
	assert_int_equal(rec.order[2], 2);
	efs_upload_pipeline_free(p);
}

/* Chunk 0 is held until chunk 2 is recorded: only a pipeline that stores
 * several chunks at once gets past it, and finish must still wait for
 * chunk 0 before it reports. */
static void test_chunks_complete_out_of_order(void **state)
{
	size_t chunk = 64 * KIB, len = 5 * chunk + 99;
	unsigned char *s = make_stream(len, 6);
	recorder_reset(chunk, s);
	rec.hold_index = 0;
	rec.release_after = 2;
	struct efs_upload_pipeline *p = new_pipeline(chunk);
	struct efs_upload_summary sum;
	char want[EFS_SHA256_HEX_LEN + 1];

	assert_int_equal(feed_in_pieces(p, s, len), 0);
	assert_int_equal(finish(p, &sum), 0);
	assert_false(rec.hold_timed_out);
	assert_int_equal(rec.calls, 6);
	size_t pos0 = 0, pos2 = 0;
	for (size_t i = 0; i < rec.calls; i++) {
		if (rec.order[i] == 0)
			pos0 = i;
		if (rec.order[i] == 2)
			pos2 = i;
	}
	assert_true(pos2 < pos0);
	for (unsigned i = 0; i < 6; i++)
		assert_true(rec.seen[i]);
	efs_sha256_hex(s, len, want);
	assert_string_equal(sum.sha256, want);
	assert_int_equal(sum.chunk_count, 6);
	assert_false(rec.bad_bytes);
	efs_upload_pipeline_free(p);
}

static void test_first_failure_stops_the_upload(void **state)
{
	size_t chunk = 64 * KIB, len = 40 * chunk;
	unsigned char *s = make_stream(len, 7);
	recorder_reset(chunk, s);
	rec.fail_index = 3;
	rec.fail_code = -ENOSPC;
	struct efs_upload_pipeline *p = new_pipeline(chunk);
	struct efs_upload_summary sum = {0};

	int r = feed_in_pieces(p, s, len);
	if (r == 0)
		r = finish(p, &sum);
	assert_int_equal(r, -ENOSPC);
	assert_int_equal(efs_upload_pipeline_failed_index(p), 3);
	assert_int_equal(sum.chunk_count, 0); /* untouched */
	/* Later calls keep returning the error. */
	assert_int_equal(efs_upload_pipeline_feed(p, (const char *)s, 10), -ENOSPC);
	assert_int_equal(finish(p, &sum), -ENOSPC);
	efs_upload_pipeline_free(p);
	assert_false(rec.bad_bytes);
}

/* Once a failure is recorded, no chunk is started: the feeding thread
 * gets the error at the next chunk and nothing more is stored. */
static void test_nothing_starts_after_a_failure(void **state)
{
	size_t chunk = 64 * KIB, len = 12 * chunk;
	unsigned char *s = make_stream(len, 11);
	recorder_reset(chunk, s);
	rec.fail_index = 0;
	rec.fail_code = -ENOSPC;
	struct efs_upload_pipeline *p = new_pipeline(chunk);

	/* Chunk 0 goes to a helper (once a byte follows it) and fails there,
	 * once the feed that handed it on has returned. */
	rec.slow_index = 0;
	assert_int_equal(efs_upload_pipeline_feed(p, (const char *)s, chunk + 1), 0);
	assert_int_equal(p->thread_count, 1);
	pthread_mutex_lock(&rec.lock);
	rec.slow_go = true;
	pthread_cond_broadcast(&rec.changed);
	pthread_mutex_unlock(&rec.lock);
	pthread_mutex_lock(&p->lock);
	while (atomic_load(&p->error) == 0)
		pthread_cond_wait(&p->changed, &p->lock);
	pthread_mutex_unlock(&p->lock);
	assert_int_equal(efs_upload_pipeline_feed(p, (const char *)s + chunk, len - chunk),
			 -ENOSPC);
	efs_upload_pipeline_free(p);
	assert_int_equal(rec.calls, 1);
}

static void test_failure_of_the_last_chunk_is_returned_by_finish(void **state)
{
	size_t chunk = 64 * KIB, len = 2 * chunk + 5;
	unsigned char *s = make_stream(len, 8);
	recorder_reset(chunk, s);
	rec.fail_index = 2;
	rec.fail_code = -EAGAIN;
	struct efs_upload_pipeline *p = new_pipeline(chunk);
	struct efs_upload_summary sum;

	assert_int_equal(efs_upload_pipeline_feed(p, (const char *)s, len), 0);
	assert_int_equal(finish(p, &sum), -EAGAIN);
	assert_int_equal(efs_upload_pipeline_failed_index(p), 2);
	efs_upload_pipeline_free(p);
}

/* A stream of zeros: every chunk has one id. Storing them at once would
 * send the same bytes several times; they go one after the other. */
static void test_same_chunk_is_not_stored_twice_at_once(void **state)
{
	size_t chunk = 64 * KIB, len = 12 * chunk;
	unsigned char *s = calloc(1, len);
	recorder_reset(chunk, s);
	struct efs_upload_pipeline *p = new_pipeline(chunk);
	struct efs_upload_summary sum;

	assert_int_equal(feed_in_pieces(p, s, len), 0);
	assert_int_equal(finish(p, &sum), 0);
	assert_int_equal(sum.chunk_count, 12);
	assert_int_equal(rec.calls, 12);
	assert_int_equal(rec.same_id_at_once, 1);
	assert_false(rec.bad_bytes);
	efs_upload_pipeline_free(p);
}

static void *release_when_stopping(void *arg)
{
	struct efs_upload_pipeline *p = arg;
	pthread_mutex_lock(&p->lock);
	while (!p->stopping)
		pthread_cond_wait(&p->changed, &p->lock);
	pthread_mutex_unlock(&p->lock);
	pthread_mutex_lock(&rec.lock);
	rec.slow_go = true;
	pthread_cond_broadcast(&rec.changed);
	pthread_mutex_unlock(&rec.lock);
	return NULL;
}

/* The client hangs up mid-stream: free drops what was not started, waits
 * for the chunk being stored, and leaks nothing. */
static void test_free_mid_stream_joins_everything(void **state)
{
	size_t chunk = 64 * KIB, len = 3 * chunk + 7;
	unsigned char *s = make_stream(len, 9);
	recorder_reset(chunk, s);
	rec.slow_index = 0;
	struct efs_upload_pipeline *p = new_pipeline(chunk);

	assert_int_equal(efs_upload_pipeline_feed(p, (const char *)s, len), 0);
	/* Chunk 0 is stuck in a helper; it is let go only once free has
	 * begun, so free must wait for it. */
	pthread_mutex_lock(&rec.lock);
	while (!rec.slow_entered)
		pthread_cond_wait(&rec.changed, &rec.lock);
	pthread_mutex_unlock(&rec.lock);
	pthread_t releaser;
	assert_int_equal(pthread_create(&releaser, NULL, release_when_stopping, p), 0);
	efs_upload_pipeline_free(p);
	assert_true(rec.calls >= 1);
	assert_true(rec.calls <= 3);
	assert_false(rec.twice);
	assert_false(rec.bad_bytes);
	pthread_join(releaser, NULL);
}

/* A budget gives out at most its limit, refuses without taking, and takes
 * back what was given (the session chunk budget's contract). */
static void test_budget_take_and_give(void **state)
{
	struct efs_upload_budget b;
	efs_upload_budget_init(&b, 100);
	assert_true(efs_upload_budget_take(&b, 60));
	assert_false(efs_upload_budget_take(&b, 41));
	assert_int_equal(efs_upload_budget_used(&b), 60);
	assert_true(efs_upload_budget_take(&b, 40));
	assert_false(efs_upload_budget_take(&b, 1));
	assert_false(efs_upload_budget_take(&b, SIZE_MAX)); /* no wrap-around */
	efs_upload_budget_give(&b, 60);
	assert_int_equal(efs_upload_budget_used(&b), 40);
	assert_false(efs_upload_budget_take(&b, SIZE_MAX - 10));
	assert_true(efs_upload_budget_take(&b, 60));
	efs_upload_budget_give(&b, 100);
	assert_int_equal(efs_upload_budget_used(&b), 0);
}

/* With no room in the shared budget an upload still completes, one chunk
 * at a time in the feeding thread (no helper); with room for one more
 * buffer, two chunks at a time at most, with one helper. What it took is
 * given back by free. */
static void test_shared_budget_limits_chunks_in_flight(void **state)
{
	size_t chunk = 64 * KIB, len = 8 * chunk + 3;
	unsigned char *s = make_stream(len, 10);
	struct efs_upload_summary sum;
	char want[EFS_SHA256_HEX_LEN + 1];
	efs_sha256_hex(s, len, want);

	for (unsigned room = 0; room <= 1; room++) {
		rec.stream = NULL; /* s lives on: teardown frees it */
		recorder_reset(chunk, s);
		rec.delay_us = 2000;
		size_t start = EFS_UPLOAD_PIPELINE_SHARED_BYTES - room * chunk;
		atomic_store(&budget.used, start);
		struct efs_upload_pipeline *p = new_pipeline(chunk);
		int r = feed_in_pieces(p, s, len);
		if (r == 0)
			r = finish(p, &sum);
		size_t during = efs_upload_budget_used(&budget);
		unsigned extra = p->extra, threads = p->thread_count;
		efs_upload_pipeline_free(p);
		size_t after = efs_upload_budget_used(&budget);
		atomic_store(&budget.used, 0);
		assert_int_equal(r, 0);
		assert_int_equal(extra, room);
		assert_int_equal(during, EFS_UPLOAD_PIPELINE_SHARED_BYTES);
		assert_int_equal(after, start);
		assert_int_equal(threads, room);
		assert_true(rec.off_main == (room > 0));
		assert_string_equal(sum.sha256, want);
		assert_int_equal(sum.chunk_count, 9);
		assert_false(rec.bad_bytes);
		assert_true(rec.max_active <= 1 + room);
	}
}

/* ---- the MD5 (PutObject's and UploadPart's ETag) ----------------------- */

static void md5_of(const unsigned char *s, size_t len, char hex[EFS_MD5_HEX_LEN + 1])
{
	struct efs_md5 h;
	assert_int_equal(efs_md5_init(&h), 0);
	efs_md5_update(&h, s, len);
	efs_md5_final_hex(&h, hex);
}

static struct efs_upload_pipeline *new_md5_pipeline(size_t chunk_size)
{
	struct efs_upload_pipeline *p = new_pipeline(chunk_size);
	assert_int_equal(efs_upload_pipeline_hash_md5(p), 0);
	return p;
}

/* A stream of many chunks: its MD5 is hashed by a digest thread of its
 * own, in order, from the chunk buffers, which are reused many times
 * over (64 chunks through 4 buffers, stores that take no time): a buffer
 * reused before its MD5 was done would give another digest. Without the
 * MD5 asked for there is no such thread and the summary's md5 is "". */
static void test_md5_of_many_chunks_on_its_own_thread(void **state)
{
	size_t chunk = 64 * KIB, len = 64 * chunk + 4321;
	unsigned char *s = make_stream(len, 21);
	char want[EFS_MD5_HEX_LEN + 1], want_sha[EFS_SHA256_HEX_LEN + 1];
	md5_of(s, len, want);
	efs_sha256_hex(s, len, want_sha);

	for (int with = 0; with <= 1; with++) {
		rec.stream = NULL; /* s lives on: teardown frees it */
		recorder_reset(chunk, s);
		struct efs_upload_pipeline *p =
		    with ? new_md5_pipeline(chunk) : new_pipeline(chunk);
		struct efs_upload_summary sum;
		assert_int_equal(feed_in_pieces(p, s, len), 0);
		assert_int_equal(finish(p, &sum), 0);
		assert_int_equal(sum.chunk_count, 65);
		assert_string_equal(sum.sha256, want_sha);
		assert_string_equal(sum.md5, with ? want : "");
		assert_true(p->md5_thread == (with == 1));
		assert_false(rec.bad_bytes);
		efs_upload_pipeline_free(p);
	}
}

/* Bodies of one chunk or less (empty, small, exactly one chunk) start no
 * thread at all: the MD5 is the feeding thread's, at the end. */
static void test_md5_of_one_chunk_starts_no_thread(void **state)
{
	size_t chunk = 64 * KIB;
	size_t lens[] = {0, 4 * KIB, chunk};
	for (size_t i = 0; i < EFS_ARRAY_SIZE(lens); i++) {
		unsigned char *s = make_stream(lens[i], 22 + i);
		char want[EFS_MD5_HEX_LEN + 1];
		md5_of(s, lens[i], want);
		recorder_reset(chunk, s);
		struct efs_upload_pipeline *p = new_md5_pipeline(chunk);
		struct efs_upload_summary sum;
		assert_int_equal(feed_in_pieces(p, s, lens[i]), 0);
		assert_int_equal(finish(p, &sum), 0);
		assert_string_equal(sum.md5, want);
		assert_false(p->md5_thread);
		assert_int_equal(p->thread_count, 0);
		efs_upload_pipeline_free(p);
	}
	/* A part of one chunk (no file: stored in the session) alike. */
	unsigned char *s = make_stream(4 * KIB, 25);
	char want[EFS_MD5_HEX_LEN + 1];
	md5_of(s, 4 * KIB, want);
	recorder_reset(chunk, s);
	struct efs_upload_pipeline *p = new_md5_pipeline(chunk);
	struct efs_upload_summary sum;
	assert_int_equal(feed_in_pieces(p, s, 4 * KIB), 0);
	assert_int_equal(efs_upload_pipeline_finish(p, NULL, &sum), 0);
	assert_string_equal(sum.md5, want);
	assert_false(p->md5_thread);
	assert_int_equal(rec.calls, 1);
	efs_upload_pipeline_free(p);
}

/* PutObject asks for the digests before finish: the last chunk is not
 * stored yet (and a one-chunk body not recorded), so a body refused for
 * its Content-MD5 leaves nothing; finish then reports the same digests. */
static void test_digests_come_before_the_last_chunk(void **state)
{
	size_t chunk = 64 * KIB;
	size_t lens[] = {4 * KIB, 5 * chunk + 17, 3 * chunk};
	for (size_t i = 0; i < EFS_ARRAY_SIZE(lens); i++) {
		unsigned char *s = make_stream(lens[i], 30 + i);
		char want[EFS_MD5_HEX_LEN + 1], want_sha[EFS_SHA256_HEX_LEN + 1];
		char md5[EFS_MD5_HEX_LEN + 1], sha[EFS_SHA256_HEX_LEN + 1];
		md5_of(s, lens[i], want);
		efs_sha256_hex(s, lens[i], want_sha);
		recorder_reset(chunk, s);
		struct efs_upload_pipeline *p = new_md5_pipeline(chunk);
		struct efs_upload_summary sum;
		size_t chunks = (lens[i] + chunk - 1) / chunk;

		assert_int_equal(feed_in_pieces(p, s, lens[i]), 0);
		assert_int_equal(efs_upload_pipeline_digests(p, sha, md5), 0);
		assert_string_equal(md5, want);
		assert_string_equal(sha, want_sha);
		pthread_mutex_lock(&p->lock);
		while (p->in_flight > 0)
			pthread_cond_wait(&p->changed, &p->lock);
		pthread_mutex_unlock(&p->lock);
		assert_int_equal(rec.single_calls, 0);
		assert_int_equal(rec.calls, chunks > 1 ? chunks - 1 : 0); /* not the last */
		assert_int_equal(finish(p, &sum), 0);
		assert_string_equal(sum.md5, want);
		assert_string_equal(sum.sha256, want_sha);
		assert_int_equal(rec.calls + rec.single_calls, chunks);
		efs_upload_pipeline_free(p);
	}
}

/* At depth 1 (one buffer) the digest thread hashes the chunk the feeding
 * thread is storing, from the same buffer, which is refilled only after
 * both: the MD5 is still the stream's. */
static void test_md5_at_depth_one(void **state)
{
	size_t chunk = 4 * 1024 * KIB, len = 3 * chunk + 10;
	unsigned char *s = make_stream(len, 35);
	char want[EFS_MD5_HEX_LEN + 1];
	md5_of(s, len, want);
	recorder_reset(chunk, s);
	struct efs_upload_pipeline *p = new_md5_pipeline(chunk);
	struct efs_upload_summary sum;

	assert_int_equal(p->depth, 1);
	assert_int_equal(efs_upload_pipeline_feed(p, (const char *)s, len), 0);
	assert_int_equal(finish(p, &sum), 0);
	assert_string_equal(sum.md5, want);
	assert_true(p->md5_thread);
	assert_false(rec.off_main); /* stores stay in the feeding thread */
	assert_false(rec.bad_bytes);
	efs_upload_pipeline_free(p);
}

/* A chunk fails while the digest thread runs: finish and digests return
 * the error, and free joins the digest thread (the sanitizer build checks
 * that nothing leaks). */
static void test_md5_thread_ends_after_a_failure(void **state)
{
	size_t chunk = 64 * KIB, len = 20 * chunk;
	unsigned char *s = make_stream(len, 36);
	recorder_reset(chunk, s);
	rec.fail_index = 2;
	rec.fail_code = -ENOSPC;
	struct efs_upload_pipeline *p = new_md5_pipeline(chunk);
	struct efs_upload_summary sum = {0};
	char md5[EFS_MD5_HEX_LEN + 1] = "", sha[EFS_SHA256_HEX_LEN + 1] = "";

	int r = feed_in_pieces(p, s, len);
	if (r == 0)
		r = efs_upload_pipeline_digests(p, sha, md5);
	assert_int_equal(r, -ENOSPC);
	assert_string_equal(md5, ""); /* untouched */
	assert_int_equal(finish(p, &sum), -ENOSPC);
	assert_true(p->md5_thread);
	efs_upload_pipeline_free(p);
}

/* The client hangs up mid-body with the digest thread running and a
 * chunk stuck in a helper: free stops both and joins them. */
static void test_free_mid_stream_joins_the_md5_thread(void **state)
{
	size_t chunk = 64 * KIB, len = 3 * chunk + 7;
	unsigned char *s = make_stream(len, 37);
	recorder_reset(chunk, s);
	rec.slow_index = 0;
	struct efs_upload_pipeline *p = new_md5_pipeline(chunk);

	assert_int_equal(efs_upload_pipeline_feed(p, (const char *)s, len), 0);
	assert_true(p->md5_thread);
	pthread_mutex_lock(&rec.lock);
	while (!rec.slow_entered)
		pthread_cond_wait(&rec.changed, &rec.lock);
	pthread_mutex_unlock(&rec.lock);
	pthread_t releaser;
	assert_int_equal(pthread_create(&releaser, NULL, release_when_stopping, p), 0);
	efs_upload_pipeline_free(p);
	assert_false(rec.twice);
	assert_false(rec.bad_bytes);
	pthread_join(releaser, NULL);
}

static int teardown(void **state)
{
	free(rec.stream);
	rec.stream = NULL;
	/* Every pipeline gave back what it took of the shared budget. */
	assert_int_equal(efs_upload_budget_used(&budget), 0);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_depth_follows_chunk_size),
		cmocka_unit_test(test_budget_take_and_give),
		cmocka_unit_test_teardown(test_stream_is_cut_into_chunks_and_hashed, teardown),
		cmocka_unit_test_teardown(test_exact_multiple_has_no_empty_last_chunk, teardown),
		cmocka_unit_test_teardown(test_empty_stream_has_no_chunk, teardown),
		cmocka_unit_test_teardown(test_one_chunk_is_stored_by_the_feeding_thread, teardown),
		cmocka_unit_test_teardown(test_one_chunk_needs_no_session, teardown),
		cmocka_unit_test_teardown(test_finish_object_links_one_chunk, teardown),
		cmocka_unit_test_teardown(test_finish_object_refuses_another_sha256, teardown),
		cmocka_unit_test_teardown(test_second_chunk_opens_the_session, teardown),
		cmocka_unit_test_teardown(test_session_open_failure_fails_the_upload, teardown),
		cmocka_unit_test_teardown(test_single_failure_is_returned_by_finish, teardown),
		cmocka_unit_test_teardown(test_depth_one_stores_in_the_feeding_thread, teardown),
		cmocka_unit_test_teardown(test_chunks_complete_out_of_order, teardown),
		cmocka_unit_test_teardown(test_first_failure_stops_the_upload, teardown),
		cmocka_unit_test_teardown(test_nothing_starts_after_a_failure, teardown),
		cmocka_unit_test_teardown(test_failure_of_the_last_chunk_is_returned_by_finish,
					  teardown),
		cmocka_unit_test_teardown(test_same_chunk_is_not_stored_twice_at_once, teardown),
		cmocka_unit_test_teardown(test_free_mid_stream_joins_everything, teardown),
		cmocka_unit_test_teardown(test_shared_budget_limits_chunks_in_flight, teardown),
		cmocka_unit_test_teardown(test_md5_of_many_chunks_on_its_own_thread, teardown),
		cmocka_unit_test_teardown(test_md5_of_one_chunk_starts_no_thread, teardown),
		cmocka_unit_test_teardown(test_digests_come_before_the_last_chunk, teardown),
		cmocka_unit_test_teardown(test_md5_at_depth_one, teardown),
		cmocka_unit_test_teardown(test_md5_thread_ends_after_a_failure, teardown),
		cmocka_unit_test_teardown(test_free_mid_stream_joins_the_md5_thread, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
