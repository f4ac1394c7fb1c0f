/* SPDX-License-Identifier: MIT */
/* api.h - what every echofs command needs to talk to the master: URLs,
 * authenticated calls, JSON requests and replies, and turning a failed
 * call into one readable line ("503 no_capacity: not enough live workers").
 *
 * These helpers print nothing; the command that decides reports the
 * result's err once, with its context.
 */
#ifndef ECHOFS_CLI_API_H
#define ECHOFS_CLI_API_H

#include "cli/cli.h"
#include "echofs/http_client.h"

#include <jansson.h>

#define EFS_CLI_API_URL_MAX 2048
#define EFS_CLI_API_ERR_MAX 512

/* Timeouts for transfers that may take long: no overall limit worth the
 * name, but give up on a connection that stalls. */
#define EFS_CLI_API_LONG_TIMEOUT_MS (7LL * 24 * 3600 * 1000)
#define EFS_CLI_API_STALL_S 60

/* What a call came to. */
struct efs_cli_api_result {
	long status;		       /* HTTP status, 0 when no reply arrived */
	char code[64];		       /* the error envelope's code, or "" */
	char err[EFS_CLI_API_ERR_MAX]; /* one line on failure, "" on success */
};

/* Writes cli->url (without trailing slashes) followed by the formatted
 * path into @out. 0 or -ENAMETOOLONG. */
int efs_cli_api_url(const struct efs_cli *cli, char *out, size_t cap, const char *fmt, ...)
    EFS_PRINTF(4, 5);

/* Percent-encodes @in for a query value or path segment into @out.
 * 0 or -ENAMETOOLONG. */
int efs_cli_api_escape(const char *in, char *out, size_t cap);

/* efs_http_call_init plus the client's token. @url must outlive the call. */
void efs_cli_api_call_init(struct efs_http_call *call, const struct efs_cli *cli,
			   const char *method, const char *url);

/* Fills @res from a finished call whose reply body is @body/@len (the
 * call's resp, or what a sink kept): status, and for a transport error or
 * a status other than @expect, code and a one-line err. Returns 0 when the
 * status is @expect, -EIO for a transport error, -EPROTO otherwise. */
int efs_cli_api_check(const struct efs_http_call *call, const char *body, size_t len, long expect,
		      struct efs_cli_api_result *res);

/* Runs @call on cli->http and checks it (efs_cli_api_check on
 * call->resp). */
int efs_cli_api_run(const struct efs_cli *cli, struct efs_http_call *call, long expect,
		    struct efs_cli_api_result *res);

/* @method on cli->url + @path with @body (a JSON object, or NULL for no
 * body), expecting @expect. On success *out (if not NULL) holds the parsed
 * reply, which the caller json_decref()s; a reply that is not JSON is
 * -EPROTO. @timeout_ms 0 means the client default. Returns as
 * efs_cli_api_check. */
int efs_cli_api_json(const struct efs_cli *cli, const char *method, const char *path, json_t *body,
		     long expect, long timeout_ms, json_t **out, struct efs_cli_api_result *res);

/* The File object of @file_id (GET /api/v1/files/{id}) with its whole
 * chunk list: the pages the server splits it into are fetched in turn
 * (following next_chunk) and joined into one "chunks" array. Pages of
 * ECHOFS_CHUNK_PAGE chunks when that is set (a test knob), else the
 * server's default. Returns and fills *out and @res as efs_cli_api_json;
 * -EPROTO when a page does not continue where the last one ended. */
int efs_cli_api_file(const struct efs_cli *cli, const char *file_id, json_t **out,
		     struct efs_cli_api_result *res);

/* A string member of @obj, or "" when absent or not a string. */
const char *efs_cli_api_str(const json_t *obj, const char *key);
/* An integer member of @obj, or -1 when absent or not a non-negative integer. */
int64_t efs_cli_api_int(const json_t *obj, const char *key);

#endif
