/* SPDX-License-Identifier: MIT */
/* api.c - authenticated calls to the master and readable errors. */
#include "cli/api.h"
#include "echofs/util.h"

#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

/* Enough for a session's "received" list of a million chunks. */
#define JSON_REPLY_CAP (16 * 1024 * 1024)

int efs_cli_api_url(const struct efs_cli *cli, char *out, size_t cap, const char *fmt, ...)
{
	size_t base = strlen(cli->url);
	while (base > 0 && cli->url[base - 1] == '/')
		base--;
	int n = snprintf(out, cap, "%.*s", (int)base, cli->url);
	if (n < 0 || (size_t)n >= cap)
		return -ENAMETOOLONG;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(out + n, cap - (size_t)n, fmt, ap);
	va_end(ap);
	if (m < 0 || (size_t)m >= cap - (size_t)n)
		return -ENAMETOOLONG;
	return 0;
}

int efs_cli_api_escape(const char *in, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		bool plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			     (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' ||
			     *p == '~';
		if (o + (plain ? 1 : 3) >= cap)
			return -ENAMETOOLONG;
		if (plain) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	if (o >= cap)
		return -ENAMETOOLONG;
	out[o] = '\0';
	return 0;
}

void efs_cli_api_call_init(struct efs_http_call *call, const struct efs_cli *cli,
			   const char *method, const char *url)
{
	efs_http_call_init(call, method, url);
	call->bearer = cli->token && *cli->token ? cli->token : NULL;
	call->connect_timeout_ms = 5000;
}

/* The reply of a failed request, when it is our error envelope:
 * "503 no_capacity: message". */
static bool describe_envelope(long status, const char *body, size_t len,
			      struct efs_cli_api_result *res)
{
	json_t *j = body && len ? json_loadb(body, len, 0, NULL) : NULL;
	json_t *e = json_object_get(j, "error");
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *msg = json_string_value(json_object_get(e, "message"));
	bool ok = code != NULL;
	if (ok) {
		efs_strlcpy(res->code, code, sizeof(res->code));
		snprintf(res->err, sizeof(res->err), "%ld %s: %s", status, code, msg ? msg : "");
	}
	json_decref(j);
	return ok;
}

int efs_cli_api_check(const struct efs_http_call *call, const char *body, size_t len, long expect,
		      struct efs_cli_api_result *res)
{
	res->status = call->status;
	res->code[0] = '\0';
	res->err[0] = '\0';
	if (call->error || call->status == 0) {
		/* The URL without its query: the server and path are what matter. */
		const char *q = strchr(call->url, '?');
		int url_len = q ? (int)(q - call->url) : (int)strlen(call->url);
		bool unreachable = call->error == -ECONNREFUSED || call->error == -EHOSTUNREACH;
		/* -EPERM: the server's certificate was not verified. */
		snprintf(res->err, sizeof(res->err), "%s%.*s: %s%s",
			 unreachable ? "cannot reach " : "", url_len, call->url,
			 call->errmsg[0] ? call->errmsg : "no reply",
			 call->error == -EPERM ? " (the server's TLS certificate is not trusted: "
						 "give its CA with --cacert FILE or ECHOFS_CA_FILE)"
					       : "");
		return -EIO;
	}
	if (call->status == expect)
		return 0;
	if (!describe_envelope(call->status, body, len, res))
		snprintf(res->err, sizeof(res->err), "%ld: unexpected reply from the server",
			 call->status);
	return -EPROTO;
}

int efs_cli_api_run(const struct efs_cli *cli, struct efs_http_call *call, long expect,
		    struct efs_cli_api_result *res)
{
	efs_http_call_run(cli->http, call);
	return efs_cli_api_check(call, call->resp.data, call->resp.len, expect, res);
}

int efs_cli_api_json(const struct efs_cli *cli, const char *method, const char *path, json_t *body,
		     long expect, long timeout_ms, json_t **out, struct efs_cli_api_result *res)
{
	struct efs_http_call call;
	char url[EFS_CLI_API_URL_MAX];
	char *text = NULL;
	int r;

	res->status = 0;
	res->code[0] = '\0';
	if (efs_cli_api_url(cli, url, sizeof(url), "%s", path) < 0) {
		snprintf(res->err, sizeof(res->err), "the URL is too long");
		return -ENAMETOOLONG;
	}
	efs_cli_api_call_init(&call, cli, method, url);
	call.timeout_ms = timeout_ms;
	call.resp_cap = JSON_REPLY_CAP;
	if (body) {
		text = json_dumps(body, JSON_COMPACT);
		if (!text) {
			snprintf(res->err, sizeof(res->err), "out of memory");
			r = -ENOMEM;
			goto out;
		}
		call.body = text;
		call.body_len = strlen(text);
		call.content_type = "application/json";
	}
	r = efs_cli_api_run(cli, &call, expect, res);
	if (r < 0 || !out)
		goto out;
	json_t *j = json_loadb(call.resp.data, call.resp.len, 0, NULL);
	if (!j) {
		snprintf(res->err, sizeof(res->err), "%ld: the server's reply is not JSON",
			 call.status);
		r = -EPROTO;
		goto out;
	}
	*out = j;
out:
	free(text);
	efs_http_call_release(&call);
	return r;
}

const char *efs_cli_api_str(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s ? s : "";
}

int64_t efs_cli_api_int(const json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	return (int64_t)json_integer_value(v);
}

int efs_cli_api_file(const struct efs_cli *cli, const char *file_id, json_t **out,
		     struct efs_cli_api_result *res)
{
	const char *page = getenv("ECHOFS_CHUNK_PAGE");
	uint64_t limit = 0;
	json_t *file = NULL;
	char path[256];
	int64_t from = 0;
	int r;

	if (page && *page && efs_parse_u64(page, false, &limit) < 0)
		limit = 0;
	for (;;) {
		json_t *part = NULL;
		int n = limit ? snprintf(path, sizeof(path),
					 "/api/v1/files/%s?chunks_from=%lld&chunk_limit=%llu",
					 file_id, (long long)from, (unsigned long long)limit)
			      : snprintf(path, sizeof(path), "/api/v1/files/%s?chunks_from=%lld",
					 file_id, (long long)from);
		if (n < 0 || (size_t)n >= sizeof(path)) {
			snprintf(res->err, sizeof(res->err), "the file id is too long");
			r = -ENAMETOOLONG;
			goto out;
		}
		if ((r = efs_cli_api_json(cli, "GET", path, NULL, 200, 0, &part, res)) < 0)
			goto out;
		json_t *chunks = json_object_get(part, "chunks");
		int64_t next = efs_cli_api_int(part, "next_chunk");
		bool moved = json_is_array(chunks) && json_array_size(chunks) > 0 && next > from;
		if (!file) {
			file = part;
		} else {
			json_array_extend(json_object_get(file, "chunks"), chunks);
			json_decref(part); /* and chunks with it */
		}
		if (next < 0)
			break;
		if (!moved) {
			snprintf(res->err, sizeof(res->err),
				 "the server's chunk list of %s does not continue at chunk %lld",
				 file_id, (long long)next);
			r = -EPROTO;
			goto out;
		}
		from = next;
	}
	json_object_del(file, "next_chunk");
	*out = file;
	file = NULL;
out:
	json_decref(file);
	return r;
}
