/* SPDX-License-Identifier: MIT */
/* put_session.c - a large upload through a resumable session.
 *
 * The main thread reads the file in order (so the whole file's SHA-256 is
 * computed as it goes, also over chunks the master already has) into a
 * small ring of chunk buffers; sender threads take the filled buffers,
 * lowest index first, and POST them. A sender that fails for good stops
 * the others at their next progress callback. */
#include "cli/put_session.h"
#include "echofs/util.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_ATTEMPTS 5
#define RETRY_FIRST_MS 500
#define CHUNK_TIMEOUT_MS (30LL * 60 * 1000)
#define COMPLETE_MIN_TIMEOUT_MS (3600LL * 1000)
#define COMPLETE_BYTES_PER_S (10 * EFS_MIB) /* the slowest read-back we wait for */

/* ---- open ---------------------------------------------------------------- */

static bool retryable(long status)
{
	/* No reply, or the master or its workers are busy or restarting. */
	return status == 0 || status == 500 || status == 502 || status == 503 || status == 504;
}

static void result_set(struct efs_cli_api_result *res, long status, const char *fmt, ...)
    EFS_PRINTF(3, 4);

static void result_set(struct efs_cli_api_result *res, long status, const char *fmt, ...)
{
	va_list ap;
	res->status = status;
	res->code[0] = '\0';
	va_start(ap, fmt);
	vsnprintf(res->err, sizeof(res->err), fmt, ap);
	va_end(ap);
}

static int set_geometry(struct efs_put_session *s, uint64_t chunk_size,
			struct efs_cli_api_result *res)
{
	if (chunk_size == 0) {
		result_set(res, 0, "the server gave a chunk size of 0");
		return -EPROTO;
	}
	s->chunk_size = chunk_size;
	s->chunk_count = (s->size + chunk_size - 1) / chunk_size;
	free(s->received);
	s->received = calloc(s->chunk_count ? s->chunk_count : 1, 1);
	if (!s->received) {
		result_set(res, 0, "out of memory for %llu chunks",
			   (unsigned long long)s->chunk_count);
		return -ENOMEM;
	}
	s->received_count = 0;
	s->received_bytes = 0;
	return 0;
}

static uint64_t chunk_len(const struct efs_put_session *s, uint64_t index)
{
	uint64_t start = index * s->chunk_size;
	return EFS_MIN(s->chunk_size, s->size - start);
}

/* Asks the master what the saved session has. 0 when it can be
 * continued, -ENOENT when it is gone or unusable, else an error. */
static int load_saved(struct efs_put_session *s, const struct efs_cli *cli,
		      struct efs_cli_api_result *res)
{
	char path[128];
	json_t *st = NULL, *idx;
	size_t i;
	int r;

	snprintf(path, sizeof(path), "/api/v1/files/upload/%s", s->state.session_id);
	r = efs_cli_api_json(cli, "GET", path, NULL, 200, 0, &st, res);
	if (r < 0)
		return res->status == 404 ? -ENOENT : r;
	int64_t declared = efs_cli_api_int(st, "size");
	int64_t chunk_size = efs_cli_api_int(st, "chunk_size");
	json_t *received = json_object_get(st, "received");
	/* Completed by an earlier run whose reply was lost: every chunk is
	 * there, and complete answers the same file again. */
	bool completed = strcmp(efs_cli_api_str(st, "state"), "completed") == 0;
	if ((declared >= 0 && (uint64_t)declared != s->size) || chunk_size <= 0 ||
	    (!completed && !json_is_array(received))) {
		r = -ENOENT; /* not a session of this file as we know it */
		goto out;
	}
	if ((r = set_geometry(s, (uint64_t)chunk_size, res)) < 0)
		goto out;
	if (completed) {
		memset(s->received, 1, s->chunk_count);
		s->received_count = s->chunk_count;
		s->received_bytes = s->size;
		s->completed = true;
		received = NULL;
	}
	json_array_foreach(received, i, idx)
	{
		json_int_t v = json_integer_value(idx);
		if (!json_is_integer(idx) || v < 0 || (uint64_t)v >= s->chunk_count ||
		    s->received[v])
			continue;
		s->received[v] = 1;
		s->received_count++;
		s->received_bytes += chunk_len(s, (uint64_t)v);
	}
	efs_strlcpy(s->session_id, s->state.session_id, sizeof(s->session_id));
	s->resumed = true;
out:
	json_decref(st);
	return r;
}

static void abort_session(const struct efs_cli *cli, const char *session_id)
{
	struct efs_cli_api_result ignored;
	char path[128];
	snprintf(path, sizeof(path), "/api/v1/files/upload/%s", session_id);
	efs_cli_api_json(cli, "DELETE", path, NULL, 204, 0, NULL, &ignored);
}

static int start_new(struct efs_put_session *s, const struct efs_cli *cli,
		     const struct efs_put_session_opts *opts, const char *name,
		     struct efs_cli_api_result *res)
{
	json_t *reply = NULL;
	json_t *body = json_pack("{s:s, s:I}", "name", name, "size", (json_int_t)s->size);
	int r = -ENOMEM;
	if (!body) {
		result_set(res, 0, "out of memory");
		goto out;
	}
	if (opts->chunk_size)
		json_object_set_new(body, "chunk_size", json_integer((json_int_t)opts->chunk_size));
	if (opts->policy)
		json_object_set_new(body, "policy", json_string(opts->policy));
	r = efs_cli_api_json(cli, "POST", "/api/v1/files/upload/init", body, 201, 0, &reply, res);
	if (r < 0)
		goto out;
	const char *sid = efs_cli_api_str(reply, "session_id");
	int64_t chunk_size = efs_cli_api_int(reply, "chunk_size");
	if (!efs_id_valid(sid) || chunk_size <= 0) {
		result_set(res, 201, "the server's reply to init has no session_id or chunk_size");
		r = -EPROTO;
		goto out;
	}
	efs_strlcpy(s->session_id, sid, sizeof(s->session_id));
	if ((r = set_geometry(s, (uint64_t)chunk_size, res)) < 0)
		goto out;
	/* Without a state file the upload still works; it just cannot resume. */
	if (s->state.path[0] && efs_resume_save(&s->state, sid, s->chunk_size) == 0)
		s->saved = true;
out:
	json_decref(body);
	json_decref(reply);
	return r;
}

int efs_put_session_open(struct efs_put_session *s, const struct efs_cli *cli,
			 const struct efs_put_session_opts *opts, const char *abs_path,
			 const struct stat *st, const char *name, struct efs_cli_api_result *res)
{
	int r;
	memset(s, 0, sizeof(*s));
	s->size = (uint64_t)st->st_size;
	s->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
	if (efs_resume_open(&s->state, cli->url, abs_path, st) < 0)
		s->state.path[0] = '\0'; /* no state directory: no resume */

	if (s->state.session_id[0] && opts->fresh) {
		abort_session(cli, s->state.session_id);
		efs_resume_remove(&s->state);
	}
	if (s->state.session_id[0]) {
		r = load_saved(s, cli, res);
		if (r == 0) {
			s->saved = true;
			return 0;
		}
		if (r != -ENOENT)
			return r;
		s->expired = true;
		efs_resume_remove(&s->state);
	}
	return start_new(s, cli, opts, name, res);
}

/* ---- send ------------------------------------------------------------------ */

enum slot_state { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_SENDING };

struct slot {
	char *data;
	size_t len;
	uint64_t index;
	char sha256[EFS_SHA256_HEX_LEN + 1];
	enum slot_state state;
};

struct pipeline {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	struct slot *slots;
	size_t slot_count;
	bool reading_done;
	atomic_bool failed;
	int error;		       /* the first failure, under lock */
	struct efs_cli_api_result res; /* its description */
	uint64_t sent_count;
	/* read-only while threads run */
	struct efs_put_session *session;
	const struct efs_cli *cli;
	struct efs_progress *progress;
	int64_t call_max_speed;
};

/* Records the first failure; later ones are consequences. */
static void fail(struct pipeline *p, int error, const struct efs_cli_api_result *res)
{
	pthread_mutex_lock(&p->lock);
	if (!p->error) {
		p->error = error;
		p->res = *res;
		atomic_store(&p->failed, true);
	}
	pthread_cond_broadcast(&p->changed);
	pthread_mutex_unlock(&p->lock);
}

struct chunk_call {
	struct pipeline *p;
	int64_t counted; /* bytes of this attempt added to the progress bar */
};

static int on_chunk_progress(void *ctx, int64_t down_total, int64_t down_now, int64_t up_total,
			     int64_t up_now)
{
	struct chunk_call *c = ctx;
	if (atomic_load(&c->p->failed))
		return -ECANCELED; /* another chunk failed for good: stop */
	if (up_now > c->counted) {
		efs_progress_add(c->p->progress, up_now - c->counted);
		c->counted = up_now;
	} else {
		efs_progress_tick(c->p->progress);
	}
	return 0;
}

static int send_chunk(struct pipeline *p, struct slot *slot, struct efs_cli_api_result *res)
{
	char url[EFS_CLI_API_URL_MAX], sha_header[96];
	struct chunk_call cc = {.p = p};
	int r = -EIO;

	if (efs_cli_api_url(p->cli, url, sizeof(url),
			    "/api/v1/files/upload/chunk?session_id=%s&chunk_index=%llu",
			    p->session->session_id, (unsigned long long)slot->index) < 0) {
		result_set(res, 0, "the URL is too long");
		return -ENAMETOOLONG;
	}
	snprintf(sha_header, sizeof(sha_header), "X-Chunk-SHA256: %s", slot->sha256);
	for (int attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
		struct efs_http_call call;
		efs_cli_api_call_init(&call, p->cli, "POST", url);
		call.content_type = "application/octet-stream";
		call.headers[0] = sha_header;
		call.body = slot->data;
		call.body_len = slot->len;
		call.timeout_ms = CHUNK_TIMEOUT_MS;
		call.stall_timeout_s = EFS_CLI_API_STALL_S;
		call.progress = on_chunk_progress;
		call.progress_ctx = &cc;
		call.max_speed = p->call_max_speed;
		r = efs_cli_api_run(p->cli, &call, 200, res);
		bool cancelled = call.error == -ECANCELED;
		efs_http_call_release(&call);
		if (r == 0) {
			/* Whatever the callback saw, the whole chunk is there. */
			efs_progress_add(p->progress, (int64_t)slot->len - cc.counted);
			return 0;
		}
		efs_progress_add(p->progress, -cc.counted);
		cc.counted = 0;
		if (cancelled || atomic_load(&p->failed) || !retryable(res->status) ||
		    attempt == MAX_ATTEMPTS)
			break;
		efs_sleep_ms((int64_t)RETRY_FIRST_MS << (attempt - 1));
	}
	/* Say which chunk, keeping the server's words. */
	char detail[EFS_CLI_API_ERR_MAX];
	efs_strlcpy(detail, res->err, sizeof(detail));
	snprintf(res->err, sizeof(res->err), "chunk %llu: %.*s", (unsigned long long)slot->index,
		 (int)sizeof(res->err) - 32, detail);
	return r;
}

/* The lowest-index chunk ready to go, or NULL. Under lock. */
static struct slot *next_ready(struct pipeline *p)
{
	struct slot *best = NULL;
	for (size_t i = 0; i < p->slot_count; i++) {
		struct slot *sl = &p->slots[i];
		if (sl->state == SLOT_READY && (!best || sl->index < best->index))
			best = sl;
	}
	return best;
}

static void *sender_main(void *arg)
{
	struct pipeline *p = arg;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		if (p->error)
			break;
		struct slot *sl = next_ready(p);
		if (!sl) {
			if (p->reading_done)
				break;
			pthread_cond_wait(&p->changed, &p->lock);
			continue;
		}
		sl->state = SLOT_SENDING;
		pthread_mutex_unlock(&p->lock);

		struct efs_cli_api_result res;
		int r = send_chunk(p, sl, &res);
		if (r < 0)
			fail(p, r, &res);

		pthread_mutex_lock(&p->lock);
		if (r == 0)
			p->sent_count++;
		sl->state = SLOT_FREE;
		pthread_cond_broadcast(&p->changed);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* A free buffer for the reader, or NULL once something failed. */
static struct slot *take_free(struct pipeline *p)
{
	struct slot *found = NULL;
	pthread_mutex_lock(&p->lock);
	while (!p->error) {
		for (size_t i = 0; i < p->slot_count && !found; i++)
			if (p->slots[i].state == SLOT_FREE)
				found = &p->slots[i];
		if (found) {
			found->state = SLOT_FILLING;
			break;
		}
		pthread_cond_wait(&p->changed, &p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return found;
}

static void put_back(struct pipeline *p, struct slot *sl, enum slot_state state)
{
	pthread_mutex_lock(&p->lock);
	sl->state = state;
	pthread_cond_broadcast(&p->changed);
	pthread_mutex_unlock(&p->lock);
}

/* Reads exactly @len bytes at @offset. 0, -errno, or -ENODATA when the
 * file ends early (it shrank). */
static int read_exact(int fd, char *buf, size_t len, uint64_t offset)
{
	while (len > 0) {
		ssize_t n = pread(fd, buf, len, (off_t)offset);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ENODATA;
		buf += n;
		len -= (size_t)n;
		offset += (uint64_t)n;
	}
	return 0;
}

/* The reader: every chunk in order into the whole-file hash; the missing
 * ones on to the senders. */
static void read_all(struct pipeline *p, int fd, struct efs_sha256 *whole)
{
	struct efs_put_session *s = p->session;
	for (uint64_t index = 0; index < s->chunk_count; index++) {
		struct slot *sl = take_free(p);
		if (!sl)
			return;
		size_t len = (size_t)chunk_len(s, index);
		int r = read_exact(fd, sl->data, len, index * s->chunk_size);
		if (r < 0) {
			struct efs_cli_api_result res;
			result_set(&res, 0, "reading chunk %llu: %s", (unsigned long long)index,
				   r == -ENODATA ? "the file got shorter" : strerror(-r));
			put_back(p, sl, SLOT_FREE);
			fail(p, r, &res);
			return;
		}
		efs_sha256_update(whole, sl->data, len);
		if (s->received[index]) {
			put_back(p, sl, SLOT_FREE);
			continue;
		}
		efs_sha256_hex(sl->data, len, sl->sha256);
		sl->len = len;
		sl->index = index;
		put_back(p, sl, SLOT_READY);
	}
}

static bool file_changed(int fd, const struct efs_put_session *s)
{
	struct stat now;
	if (fstat(fd, &now) < 0)
		return true;
	int64_t mtime_ns = (int64_t)now.st_mtim.tv_sec * 1000000000LL + now.st_mtim.tv_nsec;
	return (uint64_t)now.st_size != s->size || mtime_ns != s->mtime_ns;
}

int efs_put_session_send(struct efs_put_session *s, const struct efs_cli *cli,
			 const struct efs_put_session_opts *opts, int fd,
			 struct efs_progress *progress, struct efs_cli_api_result *res)
{
	struct pipeline p = {
	    .session = s,
	    .cli = cli,
	    .progress = progress,
	};
	pthread_t threads[64];
	size_t started = 0;
	struct efs_sha256 whole = {0};
	int r;

	uint64_t missing = s->chunk_count - s->received_count;
	size_t senders = (size_t)EFS_MIN((uint64_t)EFS_MAX(opts->parallel, 1u), missing);
	senders = EFS_MIN(senders, EFS_ARRAY_SIZE(threads));
	p.call_max_speed =
	    opts->max_speed > 0 ? EFS_MAX(opts->max_speed / (int64_t)EFS_MAX(senders, 1), 1) : 0;
	/* One more buffer than senders, so reading overlaps sending. */
	p.slot_count = senders + 1;
	atomic_init(&p.failed, false);
	pthread_mutex_init(&p.lock, NULL);
	pthread_cond_init(&p.changed, NULL);
	if ((r = efs_sha256_init(&whole)) < 0) {
		result_set(res, 0, "out of memory");
		goto out;
	}
	p.slots = calloc(p.slot_count, sizeof(*p.slots));
	r = -ENOMEM;
	if (!p.slots)
		goto nomem;
	for (size_t i = 0; i < p.slot_count; i++)
		if (!(p.slots[i].data = malloc(s->chunk_size ? s->chunk_size : 1)))
			goto nomem;
	efs_progress_set(progress, (int64_t)s->received_bytes);

	for (; started < senders; started++) {
		if (pthread_create(&threads[started], NULL, sender_main, &p) != 0) {
			struct efs_cli_api_result tres;
			result_set(&tres, 0, "cannot start a thread");
			fail(&p, -EAGAIN, &tres);
			break;
		}
	}
	if (!p.error)
		read_all(&p, fd, &whole);
	pthread_mutex_lock(&p.lock);
	p.reading_done = true;
	pthread_cond_broadcast(&p.changed);
	pthread_mutex_unlock(&p.lock);
	for (size_t i = 0; i < started; i++)
		pthread_join(threads[i], NULL);

	s->sent_count = p.sent_count;
	if (p.error) {
		r = p.error;
		*res = p.res;
		goto out;
	}
	if (file_changed(fd, s)) {
		result_set(res, 0, "the file changed while it was being uploaded");
		r = -ESTALE;
		goto out;
	}
	efs_sha256_final_hex(&whole, s->sha256);
	r = 0;
	goto out;
nomem:
	result_set(res, 0, "out of memory for %zu chunk buffers of %llu bytes", p.slot_count,
		   (unsigned long long)s->chunk_size);
out:
	efs_sha256_release(&whole);
	for (size_t i = 0; p.slots && i < p.slot_count; i++)
		free(p.slots[i].data);
	free(p.slots);
	pthread_cond_destroy(&p.changed);
	pthread_mutex_destroy(&p.lock);
	return r;
}

/* ---- complete ---------------------------------------------------------------- */

int efs_put_session_complete(struct efs_put_session *s, const struct efs_cli *cli, json_t **file,
			     struct efs_cli_api_result *res)
{
	json_t *reply = NULL;
	json_t *body = json_pack("{s:s}", "session_id", s->session_id);
	int64_t timeout_ms =
	    EFS_MAX(COMPLETE_MIN_TIMEOUT_MS, (int64_t)(s->size / COMPLETE_BYTES_PER_S) * 1000);
	int r = -ENOMEM;
	if (!body) {
		result_set(res, 0, "out of memory");
		goto out;
	}
	/* Complete is idempotent: after no reply (the connection broke, the
	 * master restarted) or a 5xx, asking again answers the file the first
	 * request made, if it made one, rather than a second file. */
	for (int attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
		r = efs_cli_api_json(cli, "POST", "/api/v1/files/upload/complete", body, 201,
				     (long)timeout_ms, &reply, res);
		if (r == 0 || !retryable(res->status) || attempt == MAX_ATTEMPTS)
			break;
		efs_sleep_ms((int64_t)RETRY_FIRST_MS << (attempt - 1));
	}
	if (r < 0)
		goto out;
	/* The session is gone now, whatever the checks below find. */
	if (s->saved)
		efs_resume_remove(&s->state);
	const char *sha = efs_cli_api_str(reply, "sha256");
	int64_t size = efs_cli_api_int(reply, "size");
	if (strcmp(sha, s->sha256) != 0 || size < 0 || (uint64_t)size != s->size) {
		result_set(res, 201,
			   "SHA-256 mismatch: the server stored %s (%lld bytes) as file %s, "
			   "the local file is %s (%llu bytes); delete it with echofs rm %s",
			   sha, (long long)size, efs_cli_api_str(reply, "file_id"), s->sha256,
			   (unsigned long long)s->size, efs_cli_api_str(reply, "file_id"));
		r = -EBADMSG;
		goto out;
	}
	*file = reply;
	reply = NULL;
out:
	json_decref(body);
	json_decref(reply);
	return r;
}

void efs_put_session_release(struct efs_put_session *s)
{
	if (!s)
		return;
	free(s->received);
	s->received = NULL;
}
