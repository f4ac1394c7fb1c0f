/* SPDX-License-Identifier: MIT */
/* api_files.c - the file endpoints: one-request upload, metadata, listing,
 * download with ranges, delete. */
#include "echofs/ec.h"
#include "echofs/hash.h"
#include "echofs/log.h"
#include "echofs/multipart.h"
#include "echofs/range.h"
#include "echofs/util.h"
#include "master/api.h"
#include "master/cache.h"
#include "master/chunk_cache.h"
#include "master/download.h"
#include "master/upload.h"
#include "master/upload_pipeline.h"

#include <string.h>
#include <strings.h>
#include <ctype.h>

#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 1000
#define CURSOR_MAX 128

/* ---- the File object ------------------------------------------------- */

json_t *efs_api_file_json(const struct efs_file_info *f)
{
	char when[EFS_ISO8601_LEN];
	json_t *obj = json_pack("{s:s, s:s, s:I, s:s, s:I, s:I, s:I, s:I, s:s, s:s}", "file_id",
			 f->file_id, "name", f->name, "size", (json_int_t)f->size, "sha256",
			 f->sha256, "chunk_size", (json_int_t)f->chunk_size, "chunk_count",
			 (json_int_t)f->chunk_count, "replication", (json_int_t)f->replication,
			 "stored_bytes", (json_int_t)f->stored_bytes, "owner", f->owner,
			 "created_at", efs_iso8601(f->created_at_ms, when));
	/* Its storage policy (issue 17); files from before policies were
	 * replicated. */
	char policy[EFS_POLICY_MAX_LEN + 1];
	if (f->policy[0])
		efs_strlcpy(policy, f->policy, sizeof(policy));
	else
		snprintf(policy, sizeof(policy), "replicas:%u", f->replication);
	if (obj)
		json_object_set_new(obj, "policy", json_string(policy));
	/* An S3 object (docs/S3.md): where it is in S3's terms. */
	if (obj && f->s3_bucket[0]) {
		json_object_set_new(obj, "bucket", json_string(f->s3_bucket));
		json_object_set_new(obj, "key", json_string(f->s3_key));
	}
	return obj;
}

/* Loads file @file_id of the caller (through the caches when @known is
 * not NULL: downloads, which check the chunk list unless the cache vouches
 * for the chunk ids it puts in @known). 0, -ENOENT (also for another
 * user's file: its existence is not revealed) or a store error: the
 * caller replies EFS_HTTP_OP_FILE. */
static int load_own_file(struct efs_http_req *req, const char *file_id,
			 struct efs_reader_known *known, struct efs_file_info *out)
{
	struct efs_master *m = efs_api_master(req);
	if (known)
		known->count = 0;
	int r = !efs_id_valid(file_id)	? -ENOENT
		: known			? efs_cache_file_get(m->cache, file_id, out, known)
					: efs_meta_file_get(m->meta, file_id, out);
	if (r == 0 && strcmp(out->owner, req->user) != 0)
		r = -ENOENT;
	return r;
}

/* ---- POST /api/v1/files/upload --------------------------------------- */

struct upload {
	struct efs_master *m;
	char user[EFS_ID_MAX + 1];
	/* Opened only once a second chunk is cut (open_hidden_session); a body
	 * of one chunk is recorded without one. */
	char session_id[EFS_ID_MAX + 1];
	bool session_open;
	char name[EFS_NAME_MAX + 1];
	struct efs_upload_pipeline *pipeline; /* chunking, hashing, storing */
	struct efs_multipart *mp; /* NULL: raw body */
	bool in_file_part;
	bool file_part_seen;
	uint64_t other_part_bytes;
	/* The first client error a multipart callback found (the parser
	 * only passes its errno on), replied when the body callback returns;
	 * fail_errno is 0 until one is recorded. */
	int fail_errno;
	enum efs_http_err fail_kind;
	char fail_message[256];
	size_t reserved; /* taken from the master's upload_memory */
	/* The master's uploader with this upload's storage policy: what the
	 * pipeline stores through (it outlives the pipeline). */
	struct efs_uploader uploader;
	char policy[EFS_POLICY_MAX_LEN + 1]; /* canonical, for the file row */
};

#define OTHER_PARTS_MAX (64 * 1024) /* form fields beside the file */
#define UPLOAD_RETRY_AFTER_S "1"       /* when upload_memory is full */

/* Remembers the client's error @kind, @message for the reply; @err
 * (negative) passes through. */
static int upload_fail(struct upload *up, enum efs_http_err kind, const char *message, int err)
{
	if (!up->fail_errno) {
		up->fail_errno = err;
		up->fail_kind = kind;
		efs_strlcpy(up->fail_message, message, sizeof(up->fail_message));
	}
	return err;
}

const char *efs_api_upload_memory_full(int err)
{
	return err == -EDQUOT ? "your uploads in flight hold as many bytes as one user's may "
				"(UPLOAD_MEMORY_PER_USER); retry shortly"
			      : "the master holds as many upload bytes as it may "
				"(UPLOAD_MEMORY); retry shortly";
}

static void upload_free(void *state)
{
	struct upload *up = state;
	if (!up)
		return;
	/* Its threads are joined first: none may touch the session after. */
	efs_upload_pipeline_free(up->pipeline);
	if (up->session_open) {
		/* Never completed (bad input, no capacity, the client hung
		 * up): its chunks lose their reference now. */
		int r = efs_meta_session_delete(up->m->meta, up->session_id, efs_now_ms());
		if (r < 0 && r != -ENOENT)
			efs_warn("upload %s: could not release its chunks (%s); the session "
				 "collector will",
				 up->session_id, strerror(-r));
	}
	efs_multipart_free(up->mp);
	efs_upload_memory_give(&up->m->upload_memory, up->user, up->reserved);
	free(up);
}

/* Body bytes of the file: on into the pipeline. */
static int upload_feed(struct upload *up, const char *data, size_t len)
{
	return efs_upload_pipeline_feed(up->pipeline, data, len);
}

static int part_begin(void *ctx, const char *name, const char *filename,
		      const char *content_type)
{
	struct upload *up = ctx;
	if (strcmp(name, "file") != 0 || up->file_part_seen)
		return 0;
	up->in_file_part = true;
	up->file_part_seen = true;
	if (filename && *filename) {
		if (!efs_name_valid(filename, EFS_NAME_MAX))
			return upload_fail(up, EFS_HTTP_E_INVALID_NAME,
					   "the file name must be 1-255 bytes of UTF-8 without "
					   "control characters",
					   -EINVAL);
		efs_strlcpy(up->name, filename, sizeof(up->name));
	}
	return 0;
}

static int part_data(void *ctx, const char *data, size_t len)
{
	struct upload *up = ctx;
	if (up->in_file_part)
		return upload_feed(up, data, len);
	up->other_part_bytes += len;
	if (up->other_part_bytes > OTHER_PARTS_MAX)
		return upload_fail(up, EFS_HTTP_E_FORM_TOO_LARGE,
				   "form fields beside the file part exceed 64 KiB", -E2BIG);
	return 0;
}

static int part_end(void *ctx)
{
	struct upload *up = ctx;
	up->in_file_part = false;
	return 0;
}

static const struct efs_multipart_callbacks upload_parts = {part_begin, part_data, part_end};

/* The pipeline's efs_upload_session_open_fn: the hidden session the chunks
 * of a body longer than one chunk belong to (ended by upload_free unless
 * completed). */
static int open_hidden_session(void *ctx, char *session_id)
{
	struct upload *up = ctx;
	struct efs_master *m = up->m;
	struct efs_session_info s = {0};
	int r;

	if ((r = efs_ordered_hex(s.session_id, EFS_FILE_ID_LEN / 2)) < 0)
		return r;
	efs_strlcpy(s.owner, up->user, sizeof(s.owner));
	efs_strlcpy(s.name, up->name[0] ? up->name : "-", sizeof(s.name));
	s.declared_size = -1;
	s.chunk_size = m->cfg.chunk_size;
	s.hidden = true;
	s.created_at_ms = efs_now_ms();
	s.expires_at_ms = s.created_at_ms + m->cfg.upload_idle_ms;
	if ((r = efs_meta_session_create(m->meta, &s)) < 0)
		return r;
	efs_strlcpy(up->session_id, s.session_id, sizeof(up->session_id));
	up->session_open = true;
	efs_strlcpy(session_id, s.session_id, EFS_ID_MAX + 1);
	return 0;
}

int efs_api_policy_check(struct efs_master *m, const char *asked, struct efs_policy *out,
			 char *why, size_t why_size)
{
	struct efs_policy p = m->cfg.default_policy;
	if (asked && efs_ec_policy_parse(asked, &p) < 0) {
		snprintf(why, why_size,
			 "policy must be replicas:N or ec:K+M (for example ec:4+2), without spaces "
			 "or leading zeros");
		return -EINVAL;
	}
	if (p.kind == EFS_POLICY_REPLICAS && p.replicas != m->cfg.replication_factor) {
		snprintf(why, why_size,
			 "this cluster stores replicated files with %u copies "
			 "(REPLICATION_FACTOR): replicas:%u",
			 m->cfg.replication_factor, m->cfg.replication_factor);
		return -EINVAL;
	}
	bool ec = p.kind == EFS_POLICY_EC;
	if (ec) {
		if (p.data_shards + p.parity_shards > EFS_MAX_REPLICAS) {
			snprintf(why, why_size, "ec:K+M stores at most %u shards per stripe",
				 EFS_MAX_REPLICAS);
			return -EINVAL;
		}
		bool coded = efs_chunk_backend_erasure_coding(m->chunks);
		if (!coded || m->cfg.dynamodb.files_table) {
			snprintf(why, why_size,
				 "erasure coding needs the worker chunk store and a SQL metadata "
				 "store (this master has %s)",
				 coded ? "DynamoDB" : "S3 chunks");
			return -EINVAL;
		}
	}
	/* The distinct places each new chunk needs: K+M shards, or the
	 * replicas (the backend's default). */
	int r = efs_chunk_backend_writable(m->chunks, ec ? p.data_shards + p.parity_shards : 0,
					   why, why_size);
	if (r < 0)
		return r;
	*out = p;
	return 0;
}

int efs_api_upload_policy(struct efs_http_req *req, const char *asked, struct efs_policy *out)
{
	char why[160];
	int r = efs_api_policy_check(efs_api_master(req), asked, out, why, sizeof(why));
	if (r == -EINVAL)
		efs_http_reply_err(req, EFS_HTTP_E_INVALID_POLICY, "%s", why);
	else if (r == -ENOSPC)
		efs_http_reply_err(req, EFS_HTTP_E_NO_CAPACITY, "%s", why);
	else
		return r;
	return 1;
}

void efs_api_policy_uploader(const struct efs_uploader *base, const struct efs_policy *policy,
			     struct efs_uploader *out)
{
	bool ec = policy->kind == EFS_POLICY_EC;
	*out = *base;
	out->ec_data = ec ? policy->data_shards : 0;
	out->ec_parity = ec ? policy->parity_shards : 0;
}

/* Headers are in: decide raw or multipart, check the name and capacity,
 * and set up the pipeline (the hidden session comes later, if needed). */
int efs_api_file_upload_begin(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	const char *content_type = efs_http_header(req, "Content-Type");
	const char *name = efs_http_query(req, "name");
	char boundary[128];
	bool multipart = content_type && strncasecmp(content_type, "multipart/form-data", 19) == 0;

	if (multipart && efs_multipart_boundary(content_type, boundary, sizeof(boundary)) < 0)
		return efs_http_reply_err(req, EFS_HTTP_E_INVALID_MULTIPART,
					  "multipart/form-data needs a boundary parameter");
	if (name && !efs_name_valid(name, EFS_NAME_MAX))
		return efs_http_reply_err(req, EFS_HTTP_E_INVALID_NAME,
					  "name must be 1-255 bytes of UTF-8 without control "
					  "characters");
	if (!multipart && !name)
		return efs_http_reply_err(req, EFS_HTTP_E_MISSING_NAME,
					  "a raw upload names the file with ?name=");
	int r;
	struct efs_policy policy;
	if ((r = efs_api_upload_policy(req, efs_http_query(req, "policy"), &policy)) != 0)
		return r < 0 ? efs_http_reply_errno(req, EFS_HTTP_OP_META, r, NULL) : 0;

	/* The first chunk buffer and its compressed copy come from the
	 * budget of all uploads (the pipeline's others from its own): no
	 * bigger than the body when its length is known. */
	size_t most = m->cfg.chunk_size;
	if (req->content_length >= 0 && (uint64_t)req->content_length < most)
		most = (size_t)req->content_length;
	if ((r = efs_upload_memory_take(&m->upload_memory, req->user, 2 * most)) < 0) {
		if (r == -ENOMEM)
			return r;
		efs_http_add_header(req, "Retry-After", UPLOAD_RETRY_AFTER_S);
		return efs_http_reply_err(req, EFS_HTTP_E_UPLOAD_MEMORY_FULL, "%s",
					  efs_api_upload_memory_full(r));
	}
	struct upload *up = calloc(1, sizeof(*up));
	if (!up) {
		efs_upload_memory_give(&m->upload_memory, req->user, 2 * most);
		return -ENOMEM;
	}
	up->m = m;
	up->reserved = 2 * most;
	efs_api_policy_uploader(&m->uploader, &policy, &up->uploader);
	efs_ec_policy_format(&policy, up->policy, sizeof(up->policy));
	efs_strlcpy(up->user, req->user, sizeof(up->user));
	req->state = up;
	req->state_free = upload_free;
	if (name)
		efs_strlcpy(up->name, name, sizeof(up->name));
	if (multipart && (r = efs_multipart_new(boundary, &upload_parts, up, &up->mp)) < 0)
		return r;
	return efs_upload_pipeline_new(&up->uploader, &m->upload_budget, m->cfg.chunk_size,
				       open_hidden_session, up, &up->pipeline);
}

/* Replies the upload's failure @r: the client's error a multipart
 * callback recorded, a malformed body, or the pipeline's error (the
 * pipeline stops at its first, which every call returns from then on). */
static int upload_reply_failure(struct efs_http_req *req, struct upload *up, int r)
{
	char subject[64] = "the upload";

	if (up->fail_errno)
		return efs_http_reply_err(req, up->fail_kind, "%s", up->fail_message);
	if (up->mp && r == -EBADMSG)
		return efs_http_reply_errno(req, EFS_HTTP_OP_MULTIPART, r,
					    efs_multipart_error(up->mp));
	uint64_t index = efs_upload_pipeline_failed_index(up->pipeline);
	if (index != UINT64_MAX)
		snprintf(subject, sizeof(subject), "chunk %llu", (unsigned long long)index);
	return efs_http_reply_errno(req, EFS_HTTP_OP_STORE_FILE, r, subject);
}

int efs_api_file_upload_body(struct efs_http_req *req, const char *data, size_t len)
{
	struct upload *up = req->state;
	int r = up->mp ? efs_multipart_feed(up->mp, data, len) : upload_feed(up, data, len);
	return r < 0 ? upload_reply_failure(req, up, r) : 0;
}

int efs_api_file_upload(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	struct upload *up = req->state;
	struct efs_session_info s;
	struct efs_file_info f = {0};
	struct efs_upload_summary sum;
	int r;

	if (up->mp) {
		if ((r = efs_multipart_finish(up->mp)) < 0)
			return upload_reply_failure(req, up, r);
		if (!up->file_part_seen)
			return efs_http_reply_err(req, EFS_HTTP_E_MISSING_FILE,
						  "the multipart body has no part named \"file\"");
		if (!up->name[0])
			return efs_http_reply_err(req, EFS_HTTP_E_MISSING_NAME,
						  "the file part has no filename and there is "
						  "no ?name=");
	}
	if ((r = efs_ordered_hex(f.file_id, EFS_FILE_ID_LEN / 2)) < 0)
		return r;
	efs_strlcpy(f.owner, req->user, sizeof(f.owner));
	efs_strlcpy(f.name, up->name, sizeof(f.name));
	f.chunk_size = m->cfg.chunk_size;
	f.replication = up->uploader.ec_data ? up->uploader.ec_data + up->uploader.ec_parity
					     : m->cfg.replication_factor;
	efs_strlcpy(f.policy, up->policy, sizeof(f.policy));
	f.created_at_ms = efs_now_ms();
	/* Every chunk is durable and recorded once this returns; a body of
	 * one chunk (or none) is recorded with its file row already. */
	if ((r = efs_upload_pipeline_finish(up->pipeline, &f, &sum)) < 0)
		return upload_reply_failure(req, up, r);
	if (!sum.recorded) {
		/* The hidden session cannot have ended (-ENOENT, -ESTALE): an
		 * internal error as any other here. */
		if ((r = efs_meta_session_get(m->meta, up->session_id, &s)) < 0)
			return efs_http_reply_errno(req, EFS_HTTP_OP_META, r, NULL);
		f.size = sum.size;
		efs_strlcpy(f.sha256, sum.sha256, sizeof(f.sha256));
		f.chunk_count = sum.chunk_count;
		f.stored_bytes = sum.stored_bytes;
		/* The file row is the last write: every chunk is durable by now. */
		if ((r = efs_meta_session_complete(m->meta, up->session_id, s.version, &f, 0)) < 0)
			return efs_http_reply_errno(req, EFS_HTTP_OP_META, r, NULL);
		up->session_open = false;
	}
	efs_info("file %s stored: \"%s\", %llu bytes in %llu chunks, %llu stored, owner %s",
		 f.file_id, f.name, (unsigned long long)f.size, (unsigned long long)f.chunk_count,
		 (unsigned long long)f.stored_bytes, f.owner);
	return efs_http_reply_json(req, 201, efs_api_file_json(&f));
}

/* ---- GET /api/v1/files ------------------------------------------------ */

int efs_api_cursor_parse(const char *cursor, int64_t *created, char *file_id)
{
	char copy[CURSOR_MAX];
	uint64_t ms;
	if (efs_strlcpy(copy, cursor, sizeof(copy)) >= sizeof(copy))
		return -EINVAL;
	char *dot = strchr(copy, '.');
	if (!dot)
		return -EINVAL;
	*dot = '\0';
	if (efs_parse_u64(copy, false, &ms) < 0 || ms > INT64_MAX || !efs_id_valid(dot + 1))
		return -EINVAL;
	*created = (int64_t)ms;
	efs_strlcpy(file_id, dot + 1, EFS_ID_MAX + 1);
	return 0;
}

int efs_api_file_list(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	const char *limit_s = efs_http_query(req, "limit");
	const char *cursor = efs_http_query(req, "cursor");
	char after_id[EFS_ID_MAX + 1] = "";
	int64_t after_created = -1;
	uint64_t limit = LIST_LIMIT_DEFAULT;
	struct efs_file_info *files;
	size_t n;

	if (limit_s && (efs_parse_u64(limit_s, false, &limit) < 0 || limit < 1 ||
			limit > LIST_LIMIT_MAX))
		return efs_http_reply_err(req, EFS_HTTP_E_INVALID_LIMIT,
					  "limit must be an integer from 1 to %d", LIST_LIMIT_MAX);
	if (cursor && *cursor && efs_api_cursor_parse(cursor, &after_created, after_id) < 0)
		return efs_http_reply_err(req, EFS_HTTP_E_INVALID_CURSOR,
					  "cursor must be a next_cursor value from a listing");
	/* One more than asked tells whether there is a next page. */
	int r = efs_meta_file_list(m->meta, req->user, after_created, after_id, limit + 1, &files,
				   &n);
	if (r < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_META, r, NULL);
	json_t *list = json_array();
	size_t shown = EFS_MIN(n, (size_t)limit);
	for (size_t i = 0; i < shown; i++)
		json_array_append_new(list, efs_api_file_json(&files[i]));
	json_t *next = json_null();
	if (n > limit) {
		char c[CURSOR_MAX];
		snprintf(c, sizeof(c), "%lld.%s", (long long)files[shown - 1].created_at_ms,
			 files[shown - 1].file_id);
		next = json_string(c);
	}
	free(files);
	return efs_http_reply_json(req, 200, json_pack("{s:o, s:o}", "files", list, "next_cursor",
						       next));
}

/* ---- GET /api/v1/files/{fileId} -------------------------------------- */

/* The chunk list comes in pages (?chunks_from=N&chunk_limit=M), so a reply
 * has a bounded size whatever the file's chunk count. */
#define CHUNK_PAGE_DEFAULT 1000
#define CHUNK_PAGE_MAX 1000
#define CHUNK_BATCH 256 /* chunks read from the store at once */

/* A chunk with its replicas not marked bad. A worker's URL is topology:
 * shown only when the caller may see it (@with_urls); its id always, so
 * the owner sees where each chunk lives. good_replicas counts those
 * replicas whose worker is alive: the copies a read can use now (repair
 * restores it to REPLICATION_FACTOR). A backend that records no
 * locations (S3) shows none, good_replicas 1 (its one object) and its
 * name as "backend". */
static json_t *chunk_json(struct efs_chunk_backend *chunks, const struct efs_file_chunk *c,
			  bool with_urls)
{
	if (!efs_chunk_backend_shows_locations(chunks))
		return json_pack("{s:I, s:s, s:I, s:I, s:b, s:[], s:I, s:s}", "index",
				 (json_int_t)c->index, "chunk_id", c->chunk.chunk_id, "size",
				 (json_int_t)c->chunk.size, "stored_size",
				 (json_int_t)c->chunk.stored_size, "compressed", c->chunk.compressed,
				 "replicas", "good_replicas", (json_int_t)1, "backend",
				 efs_chunk_backend_name(chunks));
	json_t *reps = json_array();
	unsigned good = 0;
	for (unsigned k = 0; k < c->replica_count; k++) {
		const struct efs_replica *rep = &c->replicas[k];
		if (rep->bad)
			continue;
		good += efs_chunk_backend_location_live(chunks, rep);
		json_array_append_new(reps, with_urls
						? json_pack("{s:s, s:s}", "worker_id",
							    rep->worker_id, "url", rep->url)
						: json_pack("{s:s}", "worker_id", rep->worker_id));
	}
	return json_pack("{s:I, s:s, s:I, s:I, s:b, s:o, s:I}", "index", (json_int_t)c->index,
			 "chunk_id", c->chunk.chunk_id, "size", (json_int_t)c->chunk.size,
			 "stored_size", (json_int_t)c->chunk.stored_size, "compressed",
			 c->chunk.compressed, "replicas", reps, "good_replicas", (json_int_t)good);
}

int efs_api_file_get(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	struct efs_file_info f;
	const char *file_id = efs_http_param(req, "fileId");
	const char *from_s = efs_http_query(req, "chunks_from");
	const char *limit_s = efs_http_query(req, "chunk_limit");
	uint64_t from = 0, limit = CHUNK_PAGE_DEFAULT;

	if (limit_s && (efs_parse_u64(limit_s, false, &limit) < 0 || limit < 1 ||
			limit > CHUNK_PAGE_MAX))
		return efs_http_reply_err(req, EFS_HTTP_E_INVALID_LIMIT,
					  "chunk_limit must be an integer from 1 to %d",
					  CHUNK_PAGE_MAX);
	if (from_s && efs_parse_u64(from_s, false, &from) < 0)
		return efs_http_reply_err(req, EFS_HTTP_E_INVALID_CURSOR,
					  "chunks_from must be a chunk index (a next_chunk value)");
	int r = load_own_file(req, file_id, NULL, &f);
	if (r < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_FILE, r, file_id);
	json_t *obj = efs_api_file_json(&f);
	json_t *chunks = json_array();
	bool with_urls = efs_api_topology_visible(req);
	uint64_t end = from < f.chunk_count ? EFS_MIN(f.chunk_count, from + limit) : from;
	uint64_t next = from;
	while (next < end) {
		struct efs_file_chunk *batch;
		size_t n;
		r = efs_meta_file_chunks(m->meta, f.file_id, next,
					 (size_t)EFS_MIN(end - next, CHUNK_BATCH), &batch, &n);
		if (r < 0) {
			json_decref(obj);
			json_decref(chunks);
			return efs_http_reply_errno(req, EFS_HTTP_OP_META, r, NULL);
		}
		for (size_t i = 0; i < n; i++)
			json_array_append_new(chunks,
					      chunk_json(m->chunks, &batch[i], with_urls));
		if (n > 0)
			next = batch[n - 1].index + 1;
		free(batch);
		if (n == 0)
			break;
	}
	json_object_set_new(obj, "chunks", chunks);
	json_object_set_new(obj, "next_chunk",
			    next < f.chunk_count && next > from ? json_integer((json_int_t)next)
								: json_null());
	return efs_http_reply_json(req, 200, obj);
}

/* ---- GET /api/v1/files/{fileId}/download ------------------------------ */

/* The stream's read callback: the headers are sent, so a failure can only
 * cut the stream short; it is logged here, once. */
static ssize_t download_read(void *ctx, uint64_t pos, char *out, size_t max)
{
	ssize_t n = efs_reader_read(ctx, out, max);
	if (n < 0)
		efs_error("file %s: download aborted at byte %llu: %s", efs_reader_file_id(ctx),
			  (unsigned long long)pos, strerror((int)-n));
	return n;
}

static void download_free(void *ctx)
{
	efs_reader_free(ctx);
}

/* Content-Disposition with an ASCII fallback and the exact UTF-8 name;
 * @out holds at least CONTENT_DISPOSITION_LEN bytes. */
#define CONTENT_DISPOSITION_LEN (64 + 4 * EFS_NAME_MAX)
static void content_disposition(const char *name, char *out, size_t size)
{
	char ascii[EFS_NAME_MAX + 1];
	char encoded[3 * EFS_NAME_MAX + 1];
	size_t a = 0, e = 0;
	bool plain = true;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		bool safe = *p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\';
		plain = plain && safe;
		ascii[a++] = safe ? (char)*p : '_';
		if (isalnum(*p) || strchr("-._~", *p)) {
			encoded[e++] = (char)*p;
		} else {
			snprintf(encoded + e, 4, "%%%02X", *p);
			e += 3;
		}
	}
	ascii[a] = '\0';
	encoded[e] = '\0';
	if (plain)
		snprintf(out, size, "attachment; filename=\"%s\"", ascii);
	else
		snprintf(out, size, "attachment; filename=\"%s\"; filename*=UTF-8''%s", ascii,
			 encoded);
}

/* How a download may run on an event thread (MASTER_HTTP_THREADS), which
 * must not wait for a worker, Redis or a remote store. True when it can
 * be answered from this master's memory (its file entry with its chunk
 * ids, every chunk in the chunk cache), or when the store is local
 * (SQLite, no Redis in front: reads from the page cache that never wait
 * for the writer, as a worker's event threads read its volumes) and then
 * only from the chunk cache (efs_reader_cached_only): a chunk evicted
 * between the check and the read sends it to the pool after all. */
static bool store_is_local(const struct efs_master *m)
{
	return !m->redis && strcmp(efs_meta_backend(m->meta), "sqlite") == 0;
}

static bool download_in_memory(struct efs_master *m, const char *file_id)
{
	struct efs_file_info f;
	struct efs_reader_known known;
	if (!efs_id_valid(file_id) || efs_cache_file_peek(m->cache, file_id, &f, &known) < 0 ||
	    known.count == 0 || known.count < f.chunk_count)
		return false;
	for (size_t i = 0; i < known.count; i++)
		if (!efs_chunk_cache_contains(m->chunk_cache, known.chunk[i].chunk_id))
			return false;
	return true;
}

/* A download handed to a blocking thread when its chunk was not cached
 * (MASTER_HTTP_THREADS): what it had read, its row, range and reader
 * (with the chunk list), for the blocking thread to go on from the fetch
 * instead of reading them again. */
struct parked_download {
	struct efs_file_info f;
	struct efs_reader *rd;
	uint64_t first, last;
	unsigned status;
	bool learn;
};

static void parked_download_free(void *p)
{
	struct parked_download *d = p;
	efs_reader_free(d->rd);
	free(d);
}

static int download_send(struct efs_http_req *req, const struct efs_file_info *f,
			 struct efs_reader *rd, uint64_t first, uint64_t last, unsigned status,
			 bool learn, bool cached_only);

/* Parks the download (its row, range and @rd, taken) for a blocking
 * thread, which runs the handler again. */
static int park_download(struct efs_http_req *req, const struct efs_file_info *f,
			 struct efs_reader *rd, uint64_t first, uint64_t last, unsigned status,
			 bool learn)
{
	struct parked_download *d = calloc(1, sizeof(*d));
	if (!d) {
		efs_reader_free(rd);
		return -ENOMEM;
	}
	*d = (struct parked_download){*f, rd, first, last, status, learn};
	/* Set before the offload: the blocking thread may run at once. */
	req->state = d;
	req->state_free = parked_download_free;
	int r = efs_http_offload(req);
	if (r < 0) {
		req->state = NULL;
		req->state_free = NULL;
		parked_download_free(d);
	}
	return r;
}

int efs_api_file_download(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	struct efs_file_info f;
	struct efs_reader *rd;
	char header[CONTENT_DISPOSITION_LEN];
	uint64_t first = 0, last = 0;
	unsigned status = 200;
	struct efs_reader_known known;
	const char *file_id = efs_http_param(req, "fileId");
	struct parked_download *parked = req->state;
	if (parked) {
		/* On a blocking thread, after park_download: go on. */
		rd = parked->rd;
		parked->rd = NULL;
		efs_reader_cached_only(rd, false);
		return download_send(req, &parked->f, rd, parked->first, parked->last,
				     parked->status, parked->learn, false);
	}
	/* The route runs on an event thread with MASTER_HTTP_THREADS: what
	 * would wait for the store or a worker goes to a blocking thread. */
	bool on_event_thread = !efs_http_may_block(req);
	if (on_event_thread && !store_is_local(m) && !download_in_memory(m, file_id))
		return efs_http_offload(req);
	int r = load_own_file(req, file_id, &known, &f);

	if (r < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_FILE, r, file_id);
	bool partial = false;
	/* The one error of the parser: unsatisfiable. */
	if (efs_range_parse(efs_http_header(req, "Range"), f.size, &partial, &first, &last) < 0) {
		snprintf(header, sizeof(header), "bytes */%llu", (unsigned long long)f.size);
		efs_http_add_header(req, "Content-Range", header);
		return efs_http_reply_err(req, EFS_HTTP_E_RANGE_NOT_SATISFIABLE,
					  "the file has %llu bytes", (unsigned long long)f.size);
	}
	if (partial) {
		status = 206;
		snprintf(header, sizeof(header), "bytes %llu-%llu/%llu", (unsigned long long)first,
			 (unsigned long long)last, (unsigned long long)f.size);
		efs_http_add_header(req, "Content-Range", header);
	} else {
		first = 0;
		last = f.size ? f.size - 1 : 0;
	}
	r = efs_reader_new(&m->reader_source, &f, first, f.size ? last : 0, &rd);
	if (r < 0)
		return r;
	if (f.size == 0)
		efs_reader_free(rd), rd = NULL;
	else
		efs_reader_know(rd, &known);
	if (rd && on_event_thread)
		efs_reader_cached_only(rd, true);
	return download_send(req, &f, rd, first, last, status, known.count == 0, on_event_thread);
}

/* The rest of a download from its first chunk's fetch on: takes @rd
 * (NULL: an empty file). @learn: keep the chunk ids it reads with the
 * cached row. @cached_only: @rd is (efs_reader_cached_only), so its
 * -EWOULDBLOCK means "not cached" (it is -EAGAIN too, which the store
 * answers when unreachable: a 503 otherwise). */
static int download_send(struct efs_http_req *req, const struct efs_file_info *f,
			 struct efs_reader *rd, uint64_t first, uint64_t last, unsigned status,
			 bool learn, bool cached_only)
{
	struct efs_master *m = efs_api_master(req);
	struct efs_reader_known learned;
	char header[CONTENT_DISPOSITION_LEN], etag[80];
	int r;
	/* The first chunk is fetched now: if no replica answers, the client
	 * gets a JSON 503 instead of a stream cut short. */
	if (rd && (r = efs_reader_prefetch(rd)) < 0) {
		if (r == -EWOULDBLOCK && cached_only) /* a blocking thread fetches it */
			return park_download(req, f, rd, first, last, status, learn);
		efs_reader_free(rd);
		/* -ENOENT: deleted since it was cached (on another master, or
		 * while Redis was away). */
		if (r == -ENOENT)
			efs_cache_file_forget(m->cache, f->file_id);
		return efs_http_reply_errno(req, EFS_HTTP_OP_DOWNLOAD, r, f->file_id);
	}
	/* A small file's chunk ids, read with its chunk list, spare the next
	 * download of it that list while its chunks are cached. */
	if (rd && learn && efs_reader_learned(rd, &learned))
		efs_cache_file_learn(m->cache, f->file_id, &learned);
	snprintf(etag, sizeof(etag), "\"%s\"", f->sha256);
	content_disposition(f->name, header, sizeof(header));
	efs_http_add_header(req, "Content-Type", "application/octet-stream");
	efs_http_add_header(req, "Content-Disposition", header);
	efs_http_add_header(req, "ETag", etag);
	efs_http_add_header(req, "Accept-Ranges", "bytes");
	if (!rd)
		return efs_http_reply_empty(req, 200);
	/* A range within the chunk just fetched (every small file) goes out
	 * from that buffer: no stream, no copy. */
	struct efs_buf whole;
	size_t offset, len;
	efs_buf_init(&whole, SIZE_MAX);
	if (efs_reader_take(rd, &whole, &offset, &len)) {
		efs_reader_free(rd);
		r = efs_http_reply_buf(req, status, NULL, &whole, offset, len);
		efs_buf_release(&whole);
		return r;
	}
	/* The stream's reads run on a blocking thread (http_server.h) */
	efs_reader_cached_only(rd, false);
	return efs_http_reply_stream(req, status, (int64_t)(last - first + 1), download_read, rd,
				     download_free);
}

/* ---- DELETE /api/v1/files/{fileId} ----------------------------------- */

int efs_api_file_delete(struct efs_http_req *req)
{
	struct efs_master *m = efs_api_master(req);
	const char *file_id = efs_http_param(req, "fileId");
	int r = efs_id_valid(file_id)
		    ? efs_meta_file_delete(m->meta, file_id, req->user, efs_now_ms())
		    : -ENOENT;
	if (r < 0)
		return efs_http_reply_errno(req, EFS_HTTP_OP_FILE, r, file_id);
	efs_cache_file_forget(m->cache, file_id);
	efs_info("file %s deleted by %s; its chunks are collected once unreferenced", file_id,
		 req->user);
	return efs_http_reply_empty(req, 204);
}
