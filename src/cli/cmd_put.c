/* SPDX-License-Identifier: MIT */
/* cmd_put.c - echofs put: upload files, print their ids.
 *
 * Small files (and standard input, pipes) go up in one streamed request;
 * regular files over the threshold go through a resumable upload session
 * (put_session.c). Either way the whole file's SHA-256 is computed while
 * it is read and compared with the one the master reports. */
#include "cli/api.h"
#include "cli/cli.h"
#include "cli/progress.h"
#include "cli/put_session.h"
#include "echofs/hash.h"
#include "echofs/util.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_THRESHOLD (8 * EFS_MIB)
#define DEFAULT_CHUNK_SIZE (4 * EFS_MIB)
#define MAX_CHUNK_SIZE (64 * EFS_MIB) /* the master's limit */
#define DEFAULT_PARALLEL 4
#define MAX_PARALLEL 32
#define NAME_URL_MAX (255 * 3 + 1)
#define POLICY_URL_MAX 64 /* "&policy=" and an escaped policy ("ec:10+4" is 7 bytes) */

struct put_opts {
	const char *name; /* --name, or NULL for each file's basename */
	uint64_t threshold;
	bool resume; /* --resume given: mention when there is nothing to resume */
	struct efs_put_session_opts session;
};

/* ---- one request ------------------------------------------------------------ */

struct source {
	int fd;
	int64_t left; /* bytes still to send when the length is known, else -1 */
	uint64_t sent;
	struct efs_sha256 hash;
	struct efs_progress *progress;
};

static ssize_t read_source(void *ctx, char *buf, size_t cap)
{
	struct source *src = ctx;
	if (src->left >= 0)
		cap = (size_t)EFS_MIN((int64_t)cap, src->left);
	if (cap == 0)
		return 0;
	ssize_t n;
	do
		n = read(src->fd, buf, cap);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0 && src->left > 0)
		return -ENODATA; /* the file got shorter than its Content-Length */
	efs_sha256_update(&src->hash, buf, (size_t)n);
	src->sent += (uint64_t)n;
	if (src->left >= 0)
		src->left -= n;
	efs_progress_add(src->progress, n);
	return n;
}

static int on_request_progress(void *ctx, int64_t down_total, int64_t down_now, int64_t up_total,
			       int64_t up_now)
{
	efs_progress_tick(ctx); /* keeps the rate honest while the master works */
	return 0;
}

/* Uploads @fd (@size bytes, or -1 when unknown) in one request. */
static int put_request(const struct efs_cli *cli, const struct put_opts *opts, int fd, int64_t size,
		       const char *name, struct efs_progress *progress, json_t **file,
		       struct efs_cli_api_result *res)
{
	char url[EFS_CLI_API_URL_MAX], escaped[NAME_URL_MAX], sha[EFS_SHA256_HEX_LEN + 1];
	char policy[POLICY_URL_MAX] = "";
	struct source src = {.fd = fd, .left = size, .progress = progress};
	struct efs_http_call call;
	int r;

	if (opts->session.policy) {
		memcpy(policy, "&policy=", 8);
		if (efs_cli_api_escape(opts->session.policy, policy + 8, sizeof(policy) - 8) < 0) {
			snprintf(res->err, sizeof(res->err), "the policy is too long");
			return -ENAMETOOLONG;
		}
	}
	if (efs_cli_api_escape(name, escaped, sizeof(escaped)) < 0 ||
	    efs_cli_api_url(cli, url, sizeof(url), "/api/v1/files/upload?name=%s%s", escaped,
			    policy) < 0) {
		snprintf(res->err, sizeof(res->err), "the name is too long (255 bytes at most)");
		return -ENAMETOOLONG;
	}
	if ((r = efs_sha256_init(&src.hash)) < 0) {
		snprintf(res->err, sizeof(res->err), "out of memory");
		return r;
	}
	efs_cli_api_call_init(&call, cli, "POST", url);
	call.content_type = "application/octet-stream";
	call.source = read_source;
	call.source_ctx = &src;
	call.source_len = size;
	call.timeout_ms = EFS_CLI_API_LONG_TIMEOUT_MS;
	call.stall_timeout_s = EFS_CLI_API_STALL_S;
	call.progress = on_request_progress;
	call.progress_ctx = progress;
	call.max_speed = opts->session.max_speed;
	r = efs_cli_api_run(cli, &call, 201, res);
	if (r < 0) {
		if (call.error == -ENODATA)
			snprintf(res->err, sizeof(res->err),
				 "the file got shorter while being read");
		else if (call.error && call.error != -EIO && call.error != -ETIMEDOUT &&
			 call.error != -ECONNREFUSED && call.error != -EPERM)
			snprintf(res->err, sizeof(res->err), "reading: %s", strerror(-call.error));
		goto out;
	}
	json_t *reply = json_loadb(call.resp.data, call.resp.len, 0, NULL);
	efs_sha256_final_hex(&src.hash, sha);
	const char *got = efs_cli_api_str(reply, "sha256");
	int64_t got_size = efs_cli_api_int(reply, "size");
	if (!reply || strcmp(got, sha) != 0 || got_size < 0 || (uint64_t)got_size != src.sent) {
		snprintf(res->err, sizeof(res->err),
			 "SHA-256 mismatch: the server stored %s (%lld bytes) as file %s, "
			 "the local data is %s (%llu bytes)",
			 reply ? got : "?", (long long)got_size,
			 reply ? efs_cli_api_str(reply, "file_id") : "?", sha,
			 (unsigned long long)src.sent);
		json_decref(reply);
		r = -EBADMSG;
		goto out;
	}
	*file = reply;
out:
	efs_sha256_release(&src.hash);
	efs_http_call_release(&call);
	return r;
}

/* ---- a session -------------------------------------------------------------- */

static int put_session(const struct efs_cli *cli, const struct put_opts *opts, const char *path,
		       int fd, const struct stat *st, const char *name,
		       struct efs_progress *progress, json_t **file, struct efs_cli_api_result *res)
{
	struct efs_put_session s;
	char abs_path[PATH_MAX];
	bool notes = efs_cli_show_progress(cli);
	int r;

	if (!realpath(path, abs_path))
		efs_strlcpy(abs_path, path, sizeof(abs_path));
	r = efs_put_session_open(&s, cli, &opts->session, abs_path, st, name, res);
	if (r < 0)
		goto out;
	if (notes && s.completed)
		fprintf(stderr, "the upload of %s was completed by an earlier run; confirming it\n",
			name);
	else if (notes && s.resumed)
		fprintf(stderr,
			"resuming the upload of %s: %llu of %llu chunks are on the server\n", name,
			(unsigned long long)s.received_count, (unsigned long long)s.chunk_count);
	else if (notes && s.expired)
		fprintf(stderr, "the saved upload session of %s is gone; starting over\n", name);
	else if (notes && opts->resume)
		fprintf(stderr, "nothing to resume for %s; starting a new upload\n", name);

	r = efs_put_session_send(&s, cli, &opts->session, fd, progress, res);
	if (r == 0)
		r = efs_put_session_complete(&s, cli, file, res);
	if (r < 0 && r != -EBADMSG && s.saved) {
		size_t len = strlen(res->err);
		snprintf(res->err + len, sizeof(res->err) - len,
			 " (run the same command again to resume)");
	}
out:
	efs_put_session_release(&s);
	return r;
}

/* ---- the command ------------------------------------------------------------- */

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash && slash[1] ? slash + 1 : path;
}

/* Uploads one FILE and prints its id. Returns the exit status. */
static int put_one(const struct efs_cli *cli, const struct put_opts *opts, const char *path)
{
	struct efs_cli_api_result res = {0};
	struct efs_progress progress;
	struct stat st;
	json_t *file = NULL;
	bool from_stdin = strcmp(path, "-") == 0;
	const char *name = opts->name ? opts->name : base_name(path);
	int fd = from_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
	int r = -EIO;

	if (fd < 0)
		return efs_cli_fail("put %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		efs_cli_fail("put %s: %s", path, strerror(errno));
		goto close;
	}
	if (S_ISDIR(st.st_mode)) {
		efs_cli_fail("put %s: is a directory", path);
		r = -EISDIR;
		goto close;
	}
	bool regular = S_ISREG(st.st_mode);
	int64_t size = regular ? (int64_t)st.st_size : -1;
	efs_progress_init(&progress, efs_cli_show_progress(cli), name, size);
	if (regular && (uint64_t)st.st_size > opts->threshold)
		r = put_session(cli, opts, path, fd, &st, name, &progress, &file, &res);
	else
		r = put_request(cli, opts, fd, size, name, &progress, &file, &res);
	efs_progress_end(&progress, r == 0);
	efs_progress_release(&progress);
	if (r < 0) {
		efs_cli_fail("put %s: %s", path, res.err);
		goto close;
	}
	printf("%s\n", efs_cli_api_str(file, "file_id"));
	fflush(stdout);
	json_decref(file);
close:
	if (!from_stdin)
		close(fd);
	return r < 0 ? EFS_CLI_EXIT_FAIL : 0;
}

/* Parses a number with an optional K/M/G suffix; prints a usage error and
 * returns -EINVAL when it is not one from @min to @max. */
static int parse_size(const char *opt, const char *value, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v;
	if (efs_parse_u64(value, true, &v) < 0 || v < min || v > max) {
		efs_cli_usage_error("put", "%s: '%s' is not a number from %llu to %llu%s", opt,
				    value, (unsigned long long)min, (unsigned long long)max,
				    max > 1024 ? " (K, M, G suffixes work)" : "");
		return -EINVAL;
	}
	*out = v;
	return 0;
}

int efs_cli_put(struct efs_cli *cli, int argc, char **argv)
{
	struct put_opts opts = {
	    .threshold = DEFAULT_THRESHOLD,
	    .session = {.chunk_size = DEFAULT_CHUNK_SIZE, .parallel = DEFAULT_PARALLEL},
	};
	const char **files = calloc((size_t)argc, sizeof(*files));
	size_t nfiles = 0;
	bool options_done = false;
	int status = EFS_CLI_EXIT_USAGE;
	uint64_t v = 0;

	if (!files)
		return efs_cli_fail("put: out of memory");
	for (int i = 1; i < argc; i++) {
		const char *value = NULL;
		int r;
		if (options_done || !efs_cli_is_opt(argv[i])) {
			files[nfiles++] = argv[i];
			continue;
		}
		if (strcmp(argv[i], "--") == 0) {
			options_done = true;
		} else if ((r = efs_cli_common_opt(cli, argc, argv, &i)) != 0) {
			if (r < 0)
				goto missing;
		} else if ((r = efs_cli_opt(argc, argv, &i, "--name", &value)) != 0) {
			if (r < 0)
				goto missing;
			opts.name = value;
		} else if ((r = efs_cli_opt(argc, argv, &i, "--chunk-size", &value)) != 0) {
			if (r < 0)
				goto missing;
			if (parse_size("--chunk-size", value, 1, MAX_CHUNK_SIZE,
				       &opts.session.chunk_size) < 0)
				goto out;
		} else if ((r = efs_cli_opt(argc, argv, &i, "--threshold", &value)) != 0) {
			if (r < 0)
				goto missing;
			if (parse_size("--threshold", value, 0, UINT64_MAX / 2, &opts.threshold) <
			    0)
				goto out;
		} else if ((r = efs_cli_opt(argc, argv, &i, "--parallel", &value)) != 0) {
			if (r < 0)
				goto missing;
			if (parse_size("--parallel", value, 1, MAX_PARALLEL, &v) < 0)
				goto out;
			opts.session.parallel = (unsigned)v;
		} else if ((r = efs_cli_opt(argc, argv, &i, "--limit-rate", &value)) != 0) {
			if (r < 0)
				goto missing;
			if (parse_size("--limit-rate", value, 1, INT64_MAX, &v) < 0)
				goto out;
			opts.session.max_speed = (int64_t)v;
		} else if ((r = efs_cli_opt(argc, argv, &i, "--policy", &value)) != 0) {
			if (r < 0)
				goto missing;
			opts.session.policy = value; /* the master checks it */
		} else if (strcmp(argv[i], "--resume") == 0) {
			opts.resume = true;
		} else if (strcmp(argv[i], "--no-resume") == 0) {
			opts.session.fresh = true;
		} else {
			efs_cli_usage_error("put", "unknown option '%s'", argv[i]);
			goto out;
		}
		continue;
	missing:
		efs_cli_usage_error("put", "%s needs a value", argv[i]);
		goto out;
	}
	if (nfiles == 0) {
		efs_cli_usage_error("put", "no FILE given");
		goto out;
	}
	if (opts.name && nfiles > 1) {
		efs_cli_usage_error("put", "--name works with one FILE only");
		goto out;
	}
	if (opts.resume && opts.session.fresh) {
		efs_cli_usage_error("put", "--resume and --no-resume contradict each other");
		goto out;
	}
	for (size_t f = 0; f < nfiles; f++) {
		if (strcmp(files[f], "-") == 0 && !opts.name) {
			efs_cli_usage_error("put", "standard input (-) needs --name NAME");
			goto out;
		}
	}
	if (efs_cli_need_token(cli, "put") != 0) {
		status = EFS_CLI_EXIT_FAIL;
		goto out;
	}
	status = 0;
	for (size_t f = 0; f < nfiles; f++)
		if (put_one(cli, &opts, files[f]) != 0)
			status = EFS_CLI_EXIT_FAIL;
out:
	free(files);
	return status;
}
