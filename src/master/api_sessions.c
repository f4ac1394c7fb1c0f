/* SPDX-License-Identifier: MIT */
/* api_sessions.c - chunked upload sessions: init, chunk, complete, status,
 * abort. A session belongs to the user who opened it; anyone else, and
 * anyone after it expired, gets 404. Each chunk moves the expiry to at
 * least SESSION_TTL ahead. Complete is idempotent: a completed session is
 * remembered (in the metadata store, with the file it became) until its
 * expiry, and a repeated complete or a status answers that file. */
#include "echofs/hash.h"
#include "echofs/json.h"
#include "echofs/log.h"
#include "echofs/multipart.h"
#include "echofs/util.h"
#include "master/api.h"
#include "master/cache.h"
#include "master/chunk_backend.h"
#include "master/upload.h"

#include <string.h>
#include <strings.h>

/* Most chunks one session (one file) may have. */
#define MAX_SESSION_CHUNKS 1000000
#define FIELD_MAX 128

static json_t *received_json(const struct efs_session_chunk *chunks, size_t n)
{
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, json_integer((json_int_t)chunks[i].index));
	return list;
}

/* Loads the caller's live session @session_id: 0, -ENOENT (unknown,
 * another user's, expired) or a store error; the caller replies
 * EFS_HTTP_OP_SESSION. */
static int load_session(struct efs_http_req *req, const char *session_id,
			struct efs_session_info *out)
{
	struct efs_master *m = efs_api_master(req);
	int r = session_id && efs_id_valid(session_id)
			? efs_cache_session_get(m->cache, session_id, out)
			: -ENOENT;
	/* A cached copy holds the expiry it was cached with: a chunk may
	 * have moved it since. */
	if (r == 0 && out->expires_at_ms <= efs_now_ms())
		r = efs_meta_session_get(m->meta, session_id, out);
	if (r == 0 && (out->hidden || strcmp(out->owner, req->user) != 0 ||
		       out->expires_at_ms <= efs_now_ms()))
		r = -ENOENT;
	return r;
}

/* The caller's session @session_id that was completed into a file and is
 * still remembered: 0, -ENOENT (never completed, another user's, past its
 * expiry) or a store error. */
static int load_done(struct efs_http_req *req, const char *session_id,
		     struct efs_session_done *out)
{
	struct efs_master *m = efs_api_master(req);
	int r = session_id && efs_id_valid(session_id)
			? efs_meta_session_done_get(m->meta, session_id, out)
			: -ENOENT;
	if (r == 0 && (strcmp(out->owner, req->user) != 0 || out->expires_at_ms <= efs_now_ms()))
		r = -ENOENT;
	return r;
}

/* The file a completed session of the caller became: 1, or, with the
 * error replied, what the reply returned (0 or a negative errno): 404
 * session_not_found when no such session is remembered, 404
 * file_not_found when its file was deleted since, 503 on a store error. */
static int load_done_file(struct efs_http_req *req, const char *session_id,
			  struct efs_session_done *done, struct efs_file_info *f)
{
	struct efs_master *m = efs_api_master(req);
	int r = load_done(req, session_id, done);
	if (r < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_SESSION, r, session_id);
	r = efs_meta_file_get(m->meta, done->file_id, f);
	if (r == 0 && strcmp(f->owner, req->user) != 0)
		r = -ENOENT;
	if (r < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_FILE, r, done->file_id);
	return 1;
}

/* A repeated complete of a session completed before (its reply was lost):
 * the same file, with the same 201 as the first time. */
static int reply_completed(struct efs_http_req *req, const char *session_id)
{
	struct efs_session_done done;
	struct efs_file_info f;
	int r = load_done_file(req, session_id, &done, &f);
	if (r <= 0)
		return r;
	efs_info("session %s completed again: it is file %s", session_id, f.file_id);
	return efs_http_reply_json(req, 201, efs_api_file_json(&f));
}

/* The number of chunks a session with a declared size has, or -1. */
static int64_t expected_chunks(const struct efs_session_info *s)
{
	if (s->declared_size < 0)
		return -1;
	return (int64_t)(((uint64_t)s->declared_size + s->chunk_size - 1) / s->chunk_size);
}

/* The policy session @s stores its chunks by: the one its init chose, or
 * STORAGE_POLICY for a session without one. 0, or -EIO for a stored
 * policy that does not parse (a damaged row). */
static int session_policy(const struct efs_master *m, const struct efs_session_info *s,
			  struct efs_policy *out)
{
	if (!s->policy[0]) {
		*out = m->cfg.default_policy;
		return 0;
	}
	return efs_ec_policy_parse(s->policy, out) < 0 ? -EIO : 0;
}

/* ---- POST /api/v1/files/upload/init ----------------------------------- */

int efs_api_session_init(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	struct efs_session_info s = {0};
	const char *name;
	uint64_t size = 0, chunk_size = m->cfg.chunk_size;
	char when[EFS_ISO8601_LEN];
	char why[EFS_HTTP_JSON_WHY_MAX];
	json_t *body;
	int r;

	if ((r = efs_http_body_json(req, &body, why)) < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_JSON_BODY, r, why);
	if (efs_json_str(body, "name", EFS_NAME_MAX, &name) < 0 ||
	    !efs_name_valid(name, EFS_NAME_MAX)) {
		efs_http_reply_err(req, EFS_HTTP_E_INVALID_NAME,
				   "name must be 1-255 bytes of UTF-8 without control "
				   "characters");
		goto out;
	}
	r = efs_json_u64(body, "chunk_size", &chunk_size);
	/* A floor, or a file of tiny chunks costs far more metadata (and
	 * listing) than its bytes. */
	if (r == -EINVAL || chunk_size < m->cfg.min_chunk_size || chunk_size < 1 ||
	    chunk_size > EFS_MAX_CHUNK_SIZE) {
		efs_http_reply_err(req, EFS_HTTP_E_INVALID_CHUNK_SIZE,
				   "chunk_size must be an integer from %llu to %d",
				   (unsigned long long)m->cfg.min_chunk_size, EFS_MAX_CHUNK_SIZE);
		goto out;
	}
	r = efs_json_u64(body, "size", &size);
	if (r == -EINVAL || (r == 0 && size > INT64_MAX)) {
		efs_http_reply_err(req, EFS_HTTP_E_INVALID_SIZE,
				   "size must be a non-negative integer");
		goto out;
	}
	s.declared_size = r == 0 ? (int64_t)size : -1;
	s.chunk_size = chunk_size;
	/* The policy: ?policy= or the body's "policy" (the same, if both;
	 * null is absent, as for size). */
	const char *asked = efs_http_query(req, "policy");
	const char *in_body = NULL;
	json_t *policy_json = json_object_get(body, "policy");
	if (policy_json && !json_is_null(policy_json) &&
	    efs_json_str(body, "policy", EFS_POLICY_MAX_LEN + 8, &in_body) < 0) {
		efs_http_reply_err(req, EFS_HTTP_E_INVALID_POLICY,
				   "policy must be a string: replicas:N or ec:K+M");
		goto out;
	}
	if (asked && in_body && strcmp(asked, in_body) != 0) {
		efs_http_reply_err(req, EFS_HTTP_E_INVALID_POLICY,
				   "?policy=%.24s and the body's policy differ", asked);
		goto out;
	}
	/* An asked policy is checked as a one-request upload's is (400, or
	 * 503 when it cannot be placed now); the default is not, so that an
	 * init stays possible while workers come up, as before policies: its
	 * chunks answer 503 no_capacity until they can be stored. */
	struct efs_policy policy = m->cfg.default_policy;
	if ((asked || in_body) &&
	    (r = efs_api_upload_policy(req, asked ? asked : in_body, &policy)) != 0)
		goto out; /* replied, or a store error */
	/* Remembered canonical, so that every master stores its chunks
	 * alike whatever its own STORAGE_POLICY. */
	efs_ec_policy_format(&policy, s.policy, sizeof(s.policy));
	if (expected_chunks(&s) > MAX_SESSION_CHUNKS) {
		efs_http_reply_err(req, EFS_HTTP_E_TOO_MANY_CHUNKS,
				   "size / chunk_size exceeds %d chunks", MAX_SESSION_CHUNKS);
		goto out;
	}
	if ((r = efs_ordered_hex(s.session_id, EFS_FILE_ID_LEN / 2)) < 0)
		goto out;
	efs_strlcpy(s.owner, req->user, sizeof(s.owner));
	efs_strlcpy(s.name, name, sizeof(s.name));
	s.created_at_ms = efs_now_ms();
	s.expires_at_ms = s.created_at_ms + m->cfg.session_ttl_ms;
	if ((r = efs_meta_session_create(m->meta, &s)) < 0) {
		efs_http_reply_errno(req, EFS_HTTP_OP_META, r, NULL);
		goto out;
	}
	efs_info("session %s opened by %s for \"%s\", policy %s", s.session_id, s.owner, s.name,
		 s.policy);
	efs_http_reply_json(req, 201,
			    json_pack("{s:s, s:I, s:s, s:s}", "session_id", s.session_id,
				      "chunk_size", (json_int_t)s.chunk_size, "expires_at",
				      efs_iso8601(s.expires_at_ms, when), "policy", s.policy));
out:
	json_decref(body);
	return r < 0 && !efs_http_replied(req) ? r : 0;
}

/* ---- POST /api/v1/files/upload/chunk ---------------------------------- */

/* A chunk request is admitted before any of its chunk's bytes is held:
 * the session (the caller's, live), the index (in range) and the length
 * (at most chunk_size; exact when the session declared its size and
 * Content-Length gives it) are checked, and twice the chunk (its bytes and
 * their compressed copy) is taken from the master's upload budget
 * (UPLOAD_MEMORY, shared by all requests, of which each user may hold
 * UPLOAD_MEMORY_PER_USER), or the request is refused with 503
 * upload_memory_full. A raw request is admitted in
 * begin(), from the query string, before its body is read; a multipart
 * one when its "chunk" part starts, from the form fields before it or
 * the query string, so the fields must come first. A chunk growing past
 * what was admitted is refused at once, not read to its end. */

/* Seconds a client is told to wait when the budget is full. */
#define RETRY_AFTER_S "1"

struct chunk_upload {
	struct efs_http_req *req;
	struct efs_multipart *mp; /* NULL: raw body */
	struct efs_buf data;      /* the chunk, capped at what was admitted */
	char session_id[FIELD_MAX + 1];
	char chunk_index[FIELD_MAX + 1];
	char *field; /* the form field being read, or NULL */
	size_t field_len;
	bool in_chunk_part;
	bool chunk_part_seen;
	/* Set by admit(): */
	bool admitted;
	struct efs_session_info session;
	uint64_t index;
	size_t reserved; /* taken from the upload budget */
};

/* Drops the chunk's bytes and gives its memory back: the request is
 * answered, or over. */
static void cu_drop(struct chunk_upload *cu)
{
	efs_buf_release(&cu->data);
	if (cu->reserved) {
		efs_upload_memory_give(&efs_api_master(cu->req)->upload_memory, cu->req->user,
				       cu->reserved);
		cu->reserved = 0;
	}
}

static void chunk_upload_free(void *state)
{
	struct chunk_upload *cu = state;
	if (!cu)
		return;
	cu_drop(cu);
	efs_multipart_free(cu->mp);
	free(cu);
}

/* The exact length chunk @index must have, or 0 when the session declared
 * no size (any length up to chunk_size). */
static uint64_t wanted_length(const struct efs_session_info *s, uint64_t index)
{
	int64_t expected = expected_chunks(s);
	if (expected < 0)
		return 0;
	return (int64_t)index + 1 < expected ? s->chunk_size
					     : (uint64_t)s->declared_size - index * s->chunk_size;
}

/* Checks the session, the index and @length (-1: unknown yet) of the
 * chunk named by cu->session_id and cu->chunk_index; with @reserve, takes
 * its memory from the budget too. 0 when admitted, or replies the refusal
 * and returns -ECANCELED. */
static int admit(struct chunk_upload *cu, int64_t length, bool reserve)
{
	struct efs_http_req *req = cu->req;
	struct efs_master *m = efs_api_master(req);
	struct efs_session_info *s = &cu->session;
	const char *sid = cu->session_id[0] ? cu->session_id : NULL;
	uint64_t index;
	int r;

	if ((r = load_session(req, sid, s)) < 0) {
		if (!sid && cu->mp && cu->chunk_part_seen)
			efs_http_reply_err(req, EFS_HTTP_E_SESSION_NOT_FOUND,
					   "session_id is missing: in a multipart body it must "
					   "come before the chunk part, or in the query string");
		else
			efs_http_reply_errno(req, EFS_HTTP_OP_SESSION, r, sid);
		return -ECANCELED;
	}
	if (efs_parse_u64(cu->chunk_index, false, &index) < 0) {
		efs_http_reply_err(req, EFS_HTTP_E_INVALID_CHUNK_INDEX,
				   cu->mp && cu->chunk_part_seen
					   ? "chunk_index must be a non-negative integer, before "
					     "the chunk part or in the query string"
					   : "chunk_index must be a non-negative integer");
		return -ECANCELED;
	}
	int64_t expected = expected_chunks(s);
	if ((expected >= 0 && index >= (uint64_t)expected) || index >= MAX_SESSION_CHUNKS) {
		efs_http_reply_err(req, EFS_HTTP_E_INVALID_CHUNK_INDEX,
				   "chunk_index %llu is out of range (the file has %lld chunks)",
				   (unsigned long long)index,
				   (long long)(expected >= 0 ? expected : MAX_SESSION_CHUNKS));
		return -ECANCELED;
	}
	if (length > (int64_t)s->chunk_size) {
		efs_http_reply_err(req, EFS_HTTP_E_SESSION_CHUNK_TOO_LARGE,
				   "a chunk of this session holds at most %llu bytes",
				   (unsigned long long)s->chunk_size);
		return -ECANCELED;
	}
	uint64_t want = wanted_length(s, index);
	if (length >= 0 && want && (uint64_t)length != want) {
		efs_http_reply_err(req, EFS_HTTP_E_CHUNK_SIZE_MISMATCH,
				   "chunk %llu must be exactly %llu bytes, got %lld",
				   (unsigned long long)index, (unsigned long long)want,
				   (long long)length);
		return -ECANCELED;
	}
	cu->index = index;
	if (!reserve)
		return 0;
	/* The most the chunk can be: what was announced, else the exact
	 * length, else chunk_size. */
	size_t most = length >= 0 ? (size_t)length : want ? (size_t)want : (size_t)s->chunk_size;
	if ((r = efs_upload_memory_take(&m->upload_memory, req->user, 2 * most)) < 0) {
		if (r == -ENOMEM)
			return r;
		efs_http_add_header(req, "Retry-After", RETRY_AFTER_S);
		efs_http_reply_err(req, EFS_HTTP_E_UPLOAD_MEMORY_FULL, "%s",
				   efs_api_upload_memory_full(r));
		return -ECANCELED;
	}
	cu->reserved = 2 * most;
	cu->data.cap = most;
	cu->admitted = true;
	/* A known length is allocated once, not grown by doubling. */
	if (length > 0 && efs_buf_reserve(&cu->data, (size_t)length) < 0) {
		cu_drop(cu);
		return -ENOMEM;
	}
	return 0;
}

/* Refuses a chunk longer than what was admitted, at once. */
static int refuse_too_long(struct chunk_upload *cu)
{
	const struct efs_session_info *s = &cu->session;
	uint64_t want = wanted_length(s, cu->index);
	cu_drop(cu);
	if (want && want < s->chunk_size)
		efs_http_reply_err(cu->req, EFS_HTTP_E_CHUNK_SIZE_MISMATCH,
				   "chunk %llu must be exactly %llu bytes, got more",
				   (unsigned long long)cu->index, (unsigned long long)want);
	else
		efs_http_reply_err(cu->req, EFS_HTTP_E_SESSION_CHUNK_TOO_LARGE,
				   "a chunk of this session holds at most %llu bytes",
				   (unsigned long long)s->chunk_size);
	return -ECANCELED;
}

static int cu_append(struct chunk_upload *cu, const char *data, size_t len)
{
	int r = efs_buf_append(&cu->data, data, len);
	if (r == -E2BIG)
		return refuse_too_long(cu);
	return r;
}

static int cu_part_begin(void *ctx, const char *name, const char *filename,
			 const char *content_type)
{
	struct chunk_upload *cu = ctx;
	cu->field = NULL;
	cu->field_len = 0;
	if (strcmp(name, "chunk") == 0 && !cu->chunk_part_seen) {
		cu->in_chunk_part = cu->chunk_part_seen = true;
		/* Everything that names the chunk is known now: admit it
		 * before its first byte. */
		return admit(cu, -1, true);
	} else if (strcmp(name, "session_id") == 0) {
		cu->field = cu->session_id;
	} else if (strcmp(name, "chunk_index") == 0) {
		cu->field = cu->chunk_index;
	}
	if (cu->field && cu->chunk_part_seen) {
		efs_http_reply_err(cu->req, EFS_HTTP_E_INVALID_MULTIPART,
				   "session_id and chunk_index must come before the chunk part");
		return -ECANCELED;
	}
	if (cu->field)
		cu->field[0] = '\0';
	return 0;
}

static int cu_part_data(void *ctx, const char *data, size_t len)
{
	struct chunk_upload *cu = ctx;
	if (cu->in_chunk_part)
		return cu_append(cu, data, len);
	if (cu->field) {
		if (cu->field_len + len > FIELD_MAX)
			return -E2BIG;
		memcpy(cu->field + cu->field_len, data, len);
		cu->field_len += len;
		cu->field[cu->field_len] = '\0';
	}
	return 0;
}

static int cu_part_end(void *ctx)
{
	struct chunk_upload *cu = ctx;
	cu->in_chunk_part = false;
	cu->field = NULL;
	return 0;
}

static const struct efs_multipart_callbacks chunk_parts = {cu_part_begin, cu_part_data,
							   cu_part_end};

int efs_api_session_chunk_begin(struct efs_http_req *req)
{
	const char *content_type = efs_http_header(req, "Content-Type");
	const char *sid = efs_http_query(req, "session_id");
	const char *index = efs_http_query(req, "chunk_index");
	char boundary[128];
	bool multipart = content_type && strncasecmp(content_type, "multipart/form-data", 19) == 0;

	struct chunk_upload *cu = calloc(1, sizeof(*cu));
	if (!cu)
		return -ENOMEM;
	cu->req = req;
	req->state = cu;
	req->state_free = chunk_upload_free;
	/* admit() sets the real cap; nothing is appended before it. */
	efs_buf_init(&cu->data, 0);
	if (sid)
		efs_strlcpy(cu->session_id, sid, sizeof(cu->session_id));
	if (index)
		efs_strlcpy(cu->chunk_index, index, sizeof(cu->chunk_index));
	if (!multipart) {
		int r = admit(cu, req->content_length, true);
		return r == -ECANCELED ? 0 : r;
	}
	if (efs_multipart_boundary(content_type, boundary, sizeof(boundary)) < 0)
		return efs_http_reply_err(req, EFS_HTTP_E_INVALID_MULTIPART,
					  "multipart/form-data needs a boundary");
	/* A session named in the query string is checked before the body
	 * is read (the memory is taken when the chunk part starts). */
	if (sid && index && admit(cu, -1, false) == -ECANCELED)
		return 0;
	return efs_multipart_new(boundary, &chunk_parts, cu, &cu->mp);
}

int efs_api_session_chunk_body(struct efs_http_req *req, const char *data, size_t len)
{
	struct chunk_upload *cu = req->state;
	int r = cu->mp ? efs_multipart_feed(cu->mp, data, len) : cu_append(cu, data, len);
	if (r < 0 && efs_http_replied(req))
		return 0;
	if (r < 0 && cu->mp)
		return efs_http_reply_errno(req, EFS_HTTP_OP_MULTIPART, r,
					    efs_multipart_error(cu->mp));
	return r;
}

int efs_api_session_chunk(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	struct chunk_upload *cu = req->state;
	struct efs_session_info s;
	struct efs_upload_buffers bufs;
	struct efs_chunk_result res;
	const char *expect_sha = efs_http_header(req, "X-Chunk-SHA256");
	char sha[EFS_SHA256_HEX_LEN + 1];
	uint64_t index = cu->index;
	int r;

	if (cu->mp) {
		/* Finish fails only on a malformed body (a form field too
		 * long failed the feed already). */
		if ((r = efs_multipart_finish(cu->mp)) < 0)
			return efs_http_reply_errno(req, EFS_HTTP_OP_MULTIPART, -EBADMSG,
						    efs_multipart_error(cu->mp));
		if (!cu->chunk_part_seen)
			return efs_http_reply_err(req, EFS_HTTP_E_MISSING_CHUNK,
						  "the multipart body has no part named "
						  "\"chunk\"");
	}
	if (!cu->admitted)
		return -EPROTO; /* admit() replied, or the chunk part did */
	/* Again: the session may have ended while the body arrived. */
	if ((r = load_session(req, cu->session.session_id, &s)) < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_SESSION, r, cu->session.session_id);
	uint64_t want = wanted_length(&s, index);
	if (want) {
		if (cu->data.len != want)
			return efs_http_reply_err(req, EFS_HTTP_E_CHUNK_SIZE_MISMATCH,
						  "chunk %llu must be exactly %llu bytes, got %zu",
						  (unsigned long long)index,
						  (unsigned long long)want, cu->data.len);
	} else if (cu->data.len == 0) { /* no size declared */
		return efs_http_reply_err(req, EFS_HTTP_E_EMPTY_CHUNK, "a chunk cannot be empty");
	}
	efs_sha256_hex(cu->data.data ? cu->data.data : "", cu->data.len, sha);
	if (expect_sha && strcasecmp(expect_sha, sha) != 0)
		return efs_http_reply_err(req, EFS_HTTP_E_CHECKSUM_MISMATCH,
					  "X-Chunk-SHA256 does not match the chunk's bytes "
					  "(got %s)",
					  sha);
	struct efs_policy policy;
	if ((r = session_policy(m, &s, &policy)) < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_SESSION, r, s.session_id);
	struct efs_uploader uploader;
	efs_api_policy_uploader(&m->uploader, &policy, &uploader);
	efs_upload_buffers_init(&bufs);
	r = efs_upload_chunk(&uploader, &bufs, s.session_id, index,
			     cu->data.data ? cu->data.data : "", cu->data.len, sha, &res);
	efs_upload_buffers_release(&bufs);
	size_t len = cu->data.len;
	cu_drop(cu);
	if (r < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_STORE_CHUNK, r, s.session_id);
	return efs_http_reply_json(req, 200,
				   json_pack("{s:s, s:I, s:I, s:s}", "session_id", s.session_id,
					     "chunk_index", (json_int_t)index, "size",
					     (json_int_t)len, "chunk_id", sha));
}

/* ---- POST /api/v1/files/upload/complete ------------------------------- */

/* Hashes the session's chunks in order by reading them back from the
 * chunk backend (each verified against its own SHA-256): the file's SHA-256
 * without holding the file anywhere. */
static int hash_chunks(struct efs_master *m, const struct efs_session_chunk *chunks, size_t n,
		       char *hex)
{
	struct efs_sha256 h;
	struct efs_buf data, scratch;
	struct efs_replica replicas[EFS_MAX_REPLICAS];
	int r = efs_sha256_init(&h);
	if (r < 0)
		return r;
	efs_buf_init(&data, SIZE_MAX);
	efs_buf_init(&scratch, SIZE_MAX);
	for (size_t i = 0; i < n && r == 0; i++) {
		struct efs_chunk_info info;
		unsigned count = 0;
		r = efs_meta_chunk_get(m->meta, chunks[i].chunk_id, &info, replicas, &count);
		if (r == 0)
			r = efs_chunk_backend_get_fresh(m->chunks, m->meta, &info, replicas,
							count, &data, &scratch);
		if (r == 0)
			efs_sha256_update(&h, data.data, data.len);
	}
	if (r == 0)
		efs_sha256_final_hex(&h, hex);
	efs_sha256_release(&h);
	efs_buf_release(&data);
	efs_buf_release(&scratch);
	return r;
}

int efs_api_session_complete(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	struct efs_session_info s;
	const char *sid = NULL;
	char session_id[EFS_ID_MAX + 1];
	char why[EFS_HTTP_JSON_WHY_MAX];
	json_t *body;
	int r;

	if ((r = efs_http_body_json(req, &body, why)) < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_JSON_BODY, r, why);
	if (efs_json_str(body, "session_id", EFS_ID_MAX, &sid) < 0) {
		json_decref(body);
		return efs_http_reply_err(req, EFS_HTTP_E_INVALID_SESSION_ID,
					  "session_id is required");
	}
	efs_strlcpy(session_id, sid, sizeof(session_id));
	json_decref(body); /* sid lived in it */
	r = load_session(req, session_id, &s);
	if (r == -ENOENT)
		return reply_completed(req, session_id);
	if (r < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_SESSION, r, session_id);

	for (int attempt = 0; attempt < 3; attempt++) {
		struct efs_session_chunk *chunks;
		struct efs_file_info f = {0};
		size_t n;
		/* The version first (from the store, never a cache): a chunk
		 * arriving after this point makes the commit fail and retry. */
		if ((r = efs_meta_session_get(m->meta, session_id, &s)) == -ENOENT)
			return reply_completed(req, session_id); /* by a concurrent complete */
		if (r < 0)
			return efs_http_reply_errno(req, EFS_HTTP_OP_SESSION, r, session_id);
		if ((r = efs_meta_session_chunks(m->meta, s.session_id, &chunks, &n)) < 0)
			return efs_http_reply_errno(req, EFS_HTTP_OP_META, r, NULL);
		int64_t expected = expected_chunks(&s);
		if (expected < 0)
			expected = n ? (int64_t)chunks[n - 1].index + 1 : 0;
		json_t *missing = json_array();
		size_t k = 0;
		uint64_t size = 0, stored = 0;
		for (int64_t i = 0; i < expected; i++) {
			if (k < n && chunks[k].index == (uint64_t)i) {
				size += chunks[k].size;
				stored += chunks[k].stored_size;
				k++;
			} else {
				json_array_append_new(missing, json_integer(i));
			}
		}
		if (json_array_size(missing) > 0) {
			free(chunks);
			/* A concurrent complete that committed between our two
			 * reads moved the chunks to its file: the session is
			 * gone, and this is a repeated complete. */
			struct efs_session_info now;
			if (efs_meta_session_get(m->meta, session_id, &now) == -ENOENT) {
				json_decref(missing);
				return reply_completed(req, session_id);
			}
			return efs_http_reply_err_extra(req, EFS_HTTP_E_INCOMPLETE_SESSION,
							json_pack("{s:o}", "missing", missing),
							"%zu of %lld chunks are missing",
							json_array_size(missing),
							(long long)expected);
		}
		json_decref(missing);
		for (size_t i = 0; i + 1 < n; i++) {
			if (chunks[i].size != s.chunk_size) {
				unsigned long long short_index = chunks[i].index;
				free(chunks);
				return efs_http_reply_err(req, EFS_HTTP_E_SHORT_CHUNK,
							  "chunk %llu is shorter than chunk_size "
							  "but is not the last one",
							  short_index);
			}
		}
		if ((r = hash_chunks(m, chunks, n, f.sha256)) < 0) {
			free(chunks);
			return efs_http_reply_errno(req, EFS_HTTP_OP_READ_BACK, r, NULL);
		}
		free(chunks);
		efs_strlcpy(f.owner, s.owner, sizeof(f.owner));
		efs_strlcpy(f.name, s.name, sizeof(f.name));
		f.size = size;
		f.chunk_size = s.chunk_size;
		f.chunk_count = n;
		struct efs_policy policy;
		if ((r = session_policy(m, &s, &policy)) < 0)
			return efs_http_reply_errno(req, EFS_HTTP_OP_SESSION, r, s.session_id);
		f.replication = policy.kind == EFS_POLICY_EC
				    ? policy.data_shards + policy.parity_shards
				    : m->cfg.replication_factor;
		efs_ec_policy_format(&policy, f.policy, sizeof(f.policy));
		f.stored_bytes = stored;
		/* After the read-back: the id's time is the file's creation. */
		if ((r = efs_ordered_hex(f.file_id, EFS_FILE_ID_LEN / 2)) < 0)
			return r;
		f.created_at_ms = efs_now_ms();
		/* Remembered for a repeated complete until the session would
		 * have expired, and at least SESSION_TTL. */
		int64_t remember_until =
		    EFS_MAX(s.expires_at_ms, f.created_at_ms + m->cfg.session_ttl_ms);
		r = efs_meta_session_complete(m->meta, s.session_id, s.version, &f, remember_until);
		if (r == -ESTALE)
			continue; /* a chunk arrived meanwhile: look again */
		if (r == -ENOENT) {
			efs_cache_session_forget(m->cache, session_id);
			return reply_completed(req, session_id); /* by a concurrent complete */
		}
		if (r < 0)
			return efs_http_reply_errno(req, EFS_HTTP_OP_SESSION, r, s.session_id);
		efs_cache_session_forget(m->cache, s.session_id);
		efs_info("session %s completed into file %s (%llu bytes, %llu chunks)",
			 s.session_id, f.file_id, (unsigned long long)f.size,
			 (unsigned long long)f.chunk_count);
		return efs_http_reply_json(req, 201, efs_api_file_json(&f));
	}
	return efs_http_reply_err(req, EFS_HTTP_E_SESSION_BUSY,
				  "chunks kept arriving during complete; retry");
}

/* ---- GET / DELETE /api/v1/files/upload/{sessionId} --------------------- */

/* The status of a session completed before: state "completed" and the
 * file it became. */
static int reply_status_completed(struct efs_http_req *req, const char *session_id)
{
	struct efs_session_done done;
	struct efs_file_info f;
	char when[EFS_ISO8601_LEN];
	int r = load_done_file(req, session_id, &done, &f);
	if (r <= 0)
		return r;
	return efs_http_reply_json(
	    req, 200,
	    json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s}", "session_id", done.session_id,
		      "state", "completed", "file_id", f.file_id, "name", f.name, "size",
		      (json_int_t)f.size, "chunk_size", (json_int_t)f.chunk_size, "expires_at",
		      efs_iso8601(done.expires_at_ms, when)));
}

int efs_api_session_status(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	struct efs_session_info s;
	struct efs_session_chunk *chunks;
	char when[EFS_ISO8601_LEN];
	size_t n;

	const char *session_id = efs_http_param(req, "sessionId");
	int r = load_session(req, session_id, &s);
	if (r == -ENOENT)
		return reply_status_completed(req, session_id);
	/* The expiry from the store: each chunk moves it. */
	if (r == 0)
		r = efs_meta_session_get(m->meta, s.session_id, &s);
	if (r == -ENOENT) /* completed (or aborted) since the first look */
		return reply_status_completed(req, session_id);
	if (r < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_SESSION, r, session_id);
	r = efs_meta_session_chunks(m->meta, s.session_id, &chunks, &n);
	if (r < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_META, r, NULL);
	/* A complete may have moved them to its file since the session was
	 * read: all at once (SQL: none are left), or, on DynamoDB, the
	 * session's end first and its chunk items after (docs/AWS.md, write
	 * order 2), so a read racing it sees some missing. A session still
	 * there after the chunks were read had none removed before that read:
	 * the list is whole. Gone, it is the file's status. */
	if (efs_meta_session_get(m->meta, s.session_id, &s) == -ENOENT) {
		free(chunks);
		return reply_status_completed(req, session_id);
	}
	json_t *obj = json_pack("{s:s, s:s, s:I, s:o, s:s}", "session_id", s.session_id, "name",
				s.name, "chunk_size", (json_int_t)s.chunk_size, "received",
				received_json(chunks, n), "expires_at",
				efs_iso8601(s.expires_at_ms, when));
	if (s.declared_size >= 0)
		json_object_set_new(obj, "size", json_integer(s.declared_size));
	free(chunks);
	return efs_http_reply_json(req, 200, obj);
}

int efs_api_session_abort(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	struct efs_session_info s;
	const char *session_id = efs_http_param(req, "sessionId");
	int r = load_session(req, session_id, &s);
	if (r < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_SESSION, r, session_id);
	r = efs_meta_session_delete(m->meta, s.session_id, efs_now_ms());
	efs_cache_session_forget(m->cache, s.session_id);
	if (r < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_SESSION, r, s.session_id);
	efs_info("session %s aborted by %s", s.session_id, req->user);
	return efs_http_reply_empty(req, 204);
}
