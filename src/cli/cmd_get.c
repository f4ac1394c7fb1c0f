/* SPDX-License-Identifier: MIT */
/* cmd_get.c - echofs get: download files, resumably.
 *
 * The bytes go to PATH.part. When PATH.part exists, its whole chunks are
 * checked against the chunk ids of the File object and the longest good
 * prefix is kept and hashed; the download asks only for the rest
 * (Range: bytes=N-); a server that
 * answers 200 instead of 206 gets the .part emptied and the download
 * starts over. Only a .part whose SHA-256 is the file's is renamed to
 * PATH; one that does not match is removed, so the next run starts clean. */
#include "cli/api.h"
#include "cli/cli.h"
#include "cli/progress.h"
#include "echofs/hash.h"
#include "echofs/util.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ERROR_BODY_CAP (16 * 1024)
#define HASH_BLOCK (1024 * 1024)

struct get_opts {
	const char *output; /* -o, or NULL */
	int64_t max_speed;
};

/* What a download writes to and checks as it goes. */
struct sink {
	struct efs_http_call *call;
	int fd;
	bool decided;	 /* the status of the reply was seen */
	bool ok;	 /* it is 200 or 206: bytes are the file's */
	int64_t offset;	 /* where this download starts (0 or the .part size) */
	int64_t size;	 /* the file's size */
	int64_t written; /* bytes in the output now */
	bool restarted;	 /* the server answered 200 to a range: started over */
	struct efs_sha256 hash;
	struct efs_progress *progress;
	struct efs_buf error_body;
	char problem[256]; /* why the sink aborted, for the message */
};

static int write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* True when Content-Range says the reply starts at @offset of @size. */
static bool content_range_ok(const char *value, int64_t offset, int64_t size)
{
	long long first, last, total;
	int used = 0;
	if (sscanf(value, "bytes %lld-%lld/%lld%n", &first, &last, &total, &used) != 3 ||
	    value[used] != '\0')
		return false;
	return first == offset && last == size - 1 && total == size;
}

/* Decides, on the first bytes of the reply, what they are. */
static int decide(struct sink *s)
{
	long status = s->call->status;
	s->decided = true;
	if (status == 206) {
		if (!content_range_ok(s->call->captured, s->offset, s->size)) {
			snprintf(s->problem, sizeof(s->problem),
				 "the server answered a range request with Content-Range '%s'",
				 s->call->captured);
			return -EPROTO;
		}
		s->ok = true;
		return 0;
	}
	if (status != 200)
		return 0; /* an error: its body is kept for the message */
	s->ok = true;
	if (s->offset == 0)
		return 0;
	/* The whole file instead of the rest: start the .part over. */
	if (ftruncate(s->fd, 0) < 0 || lseek(s->fd, 0, SEEK_SET) < 0)
		return -errno;
	efs_sha256_release(&s->hash);
	if (efs_sha256_init(&s->hash) < 0)
		return -ENOMEM;
	s->offset = 0;
	s->written = 0;
	s->restarted = true;
	efs_progress_set(s->progress, 0);
	return 0;
}

static int on_data(void *ctx, const char *data, size_t len)
{
	struct sink *s = ctx;
	int r;
	if (!s->decided && (r = decide(s)) < 0) {
		if (!s->problem[0])
			snprintf(s->problem, sizeof(s->problem), "starting over: %s", strerror(-r));
		return r;
	}
	if (!s->ok) {
		/* Keep the start of an error reply; the rest does not matter. */
		size_t room = ERROR_BODY_CAP - EFS_MIN(s->error_body.len, (size_t)ERROR_BODY_CAP);
		if (room)
			efs_buf_append(&s->error_body, data, EFS_MIN(len, room));
		return 0;
	}
	if (s->written + (int64_t)len > s->size) {
		snprintf(s->problem, sizeof(s->problem), "the server sent more than %lld bytes",
			 (long long)s->size);
		return -EPROTO;
	}
	if ((r = write_all(s->fd, data, len)) < 0) {
		snprintf(s->problem, sizeof(s->problem), "writing: %s", strerror(-r));
		return r;
	}
	efs_sha256_update(&s->hash, data, len);
	s->written += (int64_t)len;
	efs_progress_add(s->progress, (int64_t)len);
	return 0;
}

static int on_progress(void *ctx, int64_t down_total, int64_t down_now, int64_t up_total,
		       int64_t up_now)
{
	efs_progress_tick(ctx);
	return 0;
}

/* Reads exactly @len bytes at @off. 0, -errno, or -ENODATA at the end. */
static int read_at(int fd, char *buf, size_t len, int64_t off)
{
	while (len > 0) {
		ssize_t n = pread(fd, buf, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ENODATA;
		buf += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* Of the @have bytes already in a .part, keeps the longest prefix of whole
 * chunks whose SHA-256 is their chunk id (the File object lists them), so
 * what a resumed download builds on is known good; sets *kept and hashes
 * the kept bytes into @hash. A File object without a usable chunk list
 * keeps everything, and the final check decides. */
static int verify_part(int fd, int64_t have, const json_t *file, struct efs_sha256 *hash,
		       int64_t *kept)
{
	const json_t *chunks = json_object_get(file, "chunks");
	int64_t chunk_size = efs_cli_api_int(file, "chunk_size");
	int64_t off = 0;
	char *block = NULL;
	int r = 0;

	if (!json_is_array(chunks) || chunk_size <= 0 || chunk_size > 64 * (int64_t)EFS_MIB)
		chunk_size = HASH_BLOCK;
	if (!(block = malloc((size_t)chunk_size)))
		return -ENOMEM;
	for (size_t i = 0; json_is_array(chunks) && i < json_array_size(chunks); i++) {
		const json_t *c = json_array_get(chunks, i);
		int64_t len = efs_cli_api_int(c, "size");
		const char *id = efs_cli_api_str(c, "chunk_id");
		char got[EFS_SHA256_HEX_LEN + 1];
		if (efs_cli_api_int(c, "index") != (int64_t)i || len <= 0 || len > chunk_size ||
		    off + len > have)
			break;
		if ((r = read_at(fd, block, (size_t)len, off)) < 0)
			goto out;
		efs_sha256_hex(block, (size_t)len, got);
		if (strcmp(got, id) != 0)
			break;
		efs_sha256_update(hash, block, (size_t)len);
		off += len;
	}
	if (!json_is_array(chunks)) {
		for (; off < have; off += chunk_size) {
			size_t len = (size_t)EFS_MIN(chunk_size, have - off);
			if ((r = read_at(fd, block, len, off)) < 0)
				goto out;
			efs_sha256_update(hash, block, len);
		}
		off = have;
	}
	*kept = off;
out:
	free(block);
	return r;
}

/* Downloads the rest of the file into s->fd. Returns 0, or a negative
 * errno with @err saying why. */
static int download(const struct efs_cli *cli, const struct get_opts *opts, const char *id,
		    struct sink *s, char *err, size_t err_cap)
{
	struct efs_http_call call;
	struct efs_cli_api_result res;
	char url[EFS_CLI_API_URL_MAX], range[64];
	int r;

	efs_cli_api_url(cli, url, sizeof(url), "/api/v1/files/%s/download", id);
	efs_cli_api_call_init(&call, cli, "GET", url);
	if (s->offset > 0) {
		snprintf(range, sizeof(range), "Range: bytes=%lld-", (long long)s->offset);
		call.headers[0] = range;
	}
	call.capture_header = "Content-Range";
	call.sink = on_data;
	call.sink_ctx = s;
	call.progress = on_progress;
	call.progress_ctx = s->progress;
	call.timeout_ms = EFS_CLI_API_LONG_TIMEOUT_MS;
	call.stall_timeout_s = EFS_CLI_API_STALL_S;
	call.max_speed = opts->max_speed;
	s->call = &call;
	efs_buf_init(&s->error_body, ERROR_BODY_CAP + 1);
	efs_http_call_run(cli->http, &call);
	r = efs_cli_api_check(&call, s->error_body.data, s->error_body.len,
			      s->offset > 0 ? 206 : 200, &res);
	if (r < 0 && call.status == 200 && s->restarted)
		r = 0; /* 200 to a range request: accepted, the file was sent whole */
	if (call.error && s->problem[0])
		snprintf(err, err_cap, "%s", s->problem);
	else if (r < 0)
		snprintf(err, err_cap, "%s", res.err);
	else if (s->written != s->size)
		snprintf(err, err_cap, "the download ended after %lld of %lld bytes",
			 (long long)s->written, (long long)s->size);
	if (r == 0 && s->written != s->size)
		r = -EIO;
	efs_buf_release(&s->error_body);
	efs_http_call_release(&call);
	s->call = NULL;
	return r;
}

/* A file name for the stored name that stays in the directory it is put in. */
static void local_name(const char *name, const char *id, char *out, size_t cap)
{
	if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
		efs_strlcpy(out, id, cap);
		return;
	}
	efs_strlcpy(out, name, cap);
	for (char *c = out; *c; c++)
		if (*c == '/')
			*c = '_';
}

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Where the file goes. */
static int destination(const struct get_opts *opts, const char *name, const char *id, char *out,
		       size_t cap)
{
	char local[NAME_MAX + 1];
	int n;
	local_name(name, id, local, sizeof(local));
	if (!opts->output)
		n = snprintf(out, cap, "%s", local);
	else if (is_dir(opts->output))
		n = snprintf(out, cap, "%s/%s", opts->output, local);
	else
		n = snprintf(out, cap, "%s", opts->output);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

static int get_to_stdout(const struct efs_cli *cli, const struct get_opts *opts, const char *id,
			 const char *sha256, struct sink *s)
{
	char err[EFS_CLI_API_ERR_MAX], got[EFS_SHA256_HEX_LEN + 1];
	s->fd = STDOUT_FILENO;
	int r = download(cli, opts, id, s, err, sizeof(err));
	efs_progress_end(s->progress, r == 0);
	if (r < 0)
		return efs_cli_fail("get %s: %s", id, err);
	efs_sha256_final_hex(&s->hash, got);
	if (strcmp(got, sha256) != 0)
		return efs_cli_fail("get %s: SHA-256 mismatch: received %s, the file's is %s", id,
				    got, sha256);
	return 0;
}

static int get_to_file(const struct efs_cli *cli, const struct get_opts *opts, const char *id,
		       const json_t *file, const char *dest, const char *sha256, struct sink *s)
{
	char part[PATH_MAX], err[EFS_CLI_API_ERR_MAX], got[EFS_SHA256_HEX_LEN + 1];
	struct stat st;
	int status = EFS_CLI_EXIT_FAIL;
	int r;

	if (snprintf(part, sizeof(part), "%s.part", dest) >= (int)sizeof(part))
		return efs_cli_fail("get %s: %s: name too long", id, dest);
	s->fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (s->fd < 0)
		return efs_cli_fail("get %s: %s: %s", id, part, strerror(errno));
	if (fstat(s->fd, &st) < 0) {
		efs_cli_fail("get %s: %s: %s", id, part, strerror(errno));
		goto out;
	}
	/* Larger than the file: not a prefix of it. */
	int64_t have = st.st_size <= s->size ? st.st_size : 0;
	if (have > 0 && (r = verify_part(s->fd, have, file, &s->hash, &s->offset)) < 0) {
		efs_cli_fail("get %s: reading %s: %s", id, part, strerror(-r));
		goto out;
	}
	if (s->offset != st.st_size && ftruncate(s->fd, s->offset) < 0) {
		efs_cli_fail("get %s: %s: %s", id, part, strerror(errno));
		goto out;
	}
	if (lseek(s->fd, s->offset, SEEK_SET) < 0) {
		efs_cli_fail("get %s: %s: %s", id, part, strerror(errno));
		goto out;
	}
	s->written = s->offset;
	efs_progress_set(s->progress, s->offset);
	if (s->offset < s->size) {
		r = download(cli, opts, id, s, err, sizeof(err));
		if (r < 0) {
			efs_progress_end(s->progress, false);
			efs_cli_fail("get %s: %s%s", id, err,
				     s->written > 0 ? " (run the same command again to resume)"
						    : "");
			goto out;
		}
	}
	efs_progress_end(s->progress, true);
	efs_sha256_final_hex(&s->hash, got);
	if (strcmp(got, sha256) != 0) {
		unlink(part);
		efs_cli_fail("get %s: SHA-256 mismatch: %s has %s, the file's is %s; removed it, "
			     "run the same command again to download it anew",
			     id, part, got, sha256);
		goto out;
	}
	if (fsync(s->fd) < 0 || rename(part, dest) < 0) {
		efs_cli_fail("get %s: %s: %s", id, dest, strerror(errno));
		goto out;
	}
	status = 0;
out:
	efs_progress_end(s->progress, false);
	close(s->fd);
	return status;
}

/* Downloads one file. Returns the exit status. */
static int get_one(const struct efs_cli *cli, const struct get_opts *opts, const char *id)
{
	struct efs_cli_api_result res;
	struct efs_progress progress;
	struct sink s = {.fd = -1};
	char dest[PATH_MAX];
	json_t *file = NULL;
	int status;

	if (!efs_id_valid(id))
		return efs_cli_fail("get %s: not a file id", id);
	if (efs_cli_api_file(cli, id, &file, &res) < 0)
		return efs_cli_fail("get %s: %s", id, res.err);
	const char *name = efs_cli_api_str(file, "name");
	const char *sha256 = efs_cli_api_str(file, "sha256");
	s.size = efs_cli_api_int(file, "size");
	if (s.size < 0 || strlen(sha256) != EFS_SHA256_HEX_LEN) {
		status = efs_cli_fail("get %s: the server's File object has no size or sha256", id);
		goto out;
	}
	bool to_stdout = opts->output && strcmp(opts->output, "-") == 0;
	if (!to_stdout && destination(opts, name, id, dest, sizeof(dest)) < 0) {
		status = efs_cli_fail("get %s: the destination path is too long", id);
		goto out;
	}
	if (efs_sha256_init(&s.hash) < 0) {
		status = efs_cli_fail("get %s: out of memory", id);
		goto out;
	}
	efs_progress_init(&progress, efs_cli_show_progress(cli), to_stdout ? name : dest, s.size);
	s.progress = &progress;
	if (to_stdout)
		status = get_to_stdout(cli, opts, id, sha256, &s);
	else
		status = get_to_file(cli, opts, id, file, dest, sha256, &s);
	efs_progress_release(&progress);
	efs_sha256_release(&s.hash);
out:
	json_decref(file);
	return status;
}

int efs_cli_get(struct efs_cli *cli, int argc, char **argv)
{
	struct get_opts opts = {0};
	const char **ids = calloc((size_t)argc, sizeof(*ids));
	size_t nids = 0;
	bool options_done = false;
	int status = EFS_CLI_EXIT_USAGE;

	if (!ids)
		return efs_cli_fail("get: out of memory");
	for (int i = 1; i < argc; i++) {
		const char *value = NULL;
		int r;
		if (options_done || !efs_cli_is_opt(argv[i])) {
			ids[nids++] = argv[i];
			continue;
		}
		if (strcmp(argv[i], "--") == 0) {
			options_done = true;
		} else if ((r = efs_cli_common_opt(cli, argc, argv, &i)) != 0 ||
			   (r = efs_cli_opt(argc, argv, &i, "-o", &opts.output)) != 0 ||
			   (r = efs_cli_opt(argc, argv, &i, "--output", &opts.output)) != 0) {
			if (r < 0)
				goto missing;
		} else if ((r = efs_cli_opt(argc, argv, &i, "--limit-rate", &value)) != 0) {
			uint64_t v;
			if (r < 0)
				goto missing;
			if (efs_parse_u64(value, true, &v) < 0 || v < 1 || v > INT64_MAX) {
				efs_cli_usage_error("get",
						    "--limit-rate: '%s' is not a rate in bytes "
						    "per second (K, M suffixes work)",
						    value);
				goto out;
			}
			opts.max_speed = (int64_t)v;
		} else {
			efs_cli_usage_error("get", "unknown option '%s'", argv[i]);
			goto out;
		}
		continue;
	missing:
		efs_cli_usage_error("get", "%s needs a value", argv[i]);
		goto out;
	}
	if (nids == 0) {
		efs_cli_usage_error("get", "no FILE_ID given");
		goto out;
	}
	if (opts.output && nids > 1 && strcmp(opts.output, "-") != 0 && !is_dir(opts.output)) {
		efs_cli_usage_error("get", "-o with several FILE_IDs must be a directory or -");
		goto out;
	}
	if (efs_cli_need_token(cli, "get") != 0) {
		status = EFS_CLI_EXIT_FAIL;
		goto out;
	}
	status = 0;
	for (size_t f = 0; f < nids; f++)
		if (get_one(cli, &opts, ids[f]) != 0)
			status = EFS_CLI_EXIT_FAIL;
out:
	free(ids);
	return status;
}
