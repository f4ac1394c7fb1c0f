/* SPDX-License-Identifier: MIT */
/* s3_probe.c - drives the S3 client (include/echofs/s3.h) from the command
 * line for tests/integration/test_s3_client.py, against a real S3 server
 * (the local s3rver). Configuration is aws.h's (the AWS_* variables), the
 * bucket S3_BUCKET_NAME. Prints one JSON object on stdout: the result, or
 * {"errno": -N, "code": .., "message": .., "status": .., "attempts": ..}
 * with exit status 1. ECHOFS_S3_PROBE_ATTEMPTS / _BACKOFF_MS set the retry
 * policy.
 *
 *   s3_probe put KEY FILE [name=value ...]
 *   s3_probe get KEY OUTFILE [OFFSET LENGTH [CAP]]
 *   s3_probe head KEY | delete KEY
 *   s3_probe list PREFIX MAX_KEYS [TOKEN]
 *   s3_probe list-all PREFIX MAX_KEYS       every page, followed
 *   s3_probe bucket-head | bucket-create
 *   s3_probe dynamodb ACTION JSON       one DynamoDB call (efs_aws_send's
 *                                       JSON side): prints the answer
 */
#include "echofs/aws.h"
#include "echofs/http_client.h"
#include "echofs/s3.h"
#include "echofs/util.h"

#include <jansson.h>

static int print_json(json_t *obj)
{
	char *text = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	if (!text)
		return 1;
	printf("%s\n", text);
	free(text);
	return 0;
}

static int fail(int r, const struct efs_s3_error *err)
{
	print_json(json_pack("{s:i, s:s, s:s, s:i, s:i}", "errno", r, "code", err->code, "message",
			     err->message, "status", (int)err->status, "attempts", err->attempts));
	return 1;
}

static json_t *info_json(const struct efs_s3_object_info *info)
{
	json_t *meta = json_object();
	for (size_t i = 0; i < info->meta_count; i++)
		json_object_set_new(meta, info->meta[i].name, json_string(info->meta[i].value));
	return json_pack("{s:I, s:s, s:s, s:o}", "size", (json_int_t)info->size, "etag", info->etag,
			 "last_modified", info->last_modified, "meta", meta);
}

static json_t *list_json(const struct efs_s3_list *list)
{
	json_t *keys = json_array();
	for (size_t i = 0; i < list->count; i++)
		json_array_append_new(keys, json_pack("{s:s, s:I, s:s}", "key", list->entries[i].key,
						      "size", (json_int_t)list->entries[i].size,
						      "etag", list->entries[i].etag));
	return keys;
}

static int read_all(const char *path, struct efs_buf *out)
{
	FILE *f = fopen(path, "rb");
	char chunk[65536];
	size_t n;
	int r = 0;
	if (!f)
		return -errno;
	while (r == 0 && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		r = efs_buf_append(out, chunk, n);
	fclose(f);
	return r;
}

static struct efs_aws_client *probe_aws; /* for the dynamodb command */

static int dynamodb_call(struct efs_s3 *s3, const char *action, const char *json)
{
	struct efs_s3_error err = {0};
	struct efs_aws_request req = {0};
	struct efs_aws_response resp;
	struct efs_buf url, host;
	char target[160];
	int r;
	(void)s3;
	efs_buf_init(&url, 1024);
	efs_buf_init(&host, 512);
	efs_aws_response_init(&resp);
	r = efs_aws_dynamodb_target(efs_aws_client_config(probe_aws), &url, &host);
	snprintf(target, sizeof(target), "X-Amz-Target: DynamoDB_20120810.%s", action);
	req.method = "POST";
	req.service = "dynamodb";
	req.url = url.data;
	req.host = host.data;
	req.path = "/";
	req.headers[0] = target;
	req.headers[1] = "Content-Type: application/x-amz-json-1.0";
	req.body = json;
	req.body_len = strlen(json);
	req.retry = true; /* the probe's calls are reads or idempotent */
	if (r == 0)
		r = efs_aws_send(probe_aws, &req, &resp);
	if (r < 0) {
		err.status = resp.status;
		err.attempts = resp.attempts;
		efs_strlcpy(err.code, resp.code, sizeof(err.code));
		efs_strlcpy(err.message, resp.message, sizeof(err.message));
	} else {
		json_t *answer = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0,
					    NULL);
		print_json(json_pack("{s:o*, s:i}", "answer", answer, "attempts", resp.attempts));
	}
	efs_aws_response_release(&resp);
	efs_buf_release(&url);
	efs_buf_release(&host);
	return r < 0 ? fail(r, &err) : 0;
}

static int run(struct efs_s3 *s3, int argc, char **argv)
{
	struct efs_s3_error err = {0};
	struct efs_s3_object_info info = {0};
	const char *cmd = argv[1];
	int r;
	if (strcmp(cmd, "put") == 0 && argc >= 4) {
		struct efs_s3_meta meta[EFS_S3_MAX_META + 2] = {0};
		size_t meta_count = 0;
		char etag[EFS_S3_ETAG_SIZE] = "";
		struct efs_buf body;
		efs_buf_init(&body, 256 * EFS_MIB);
		r = read_all(argv[3], &body);
		for (int i = 4; r == 0 && i < argc && meta_count < EFS_ARRAY_SIZE(meta); i++) {
			char *eq = strchr(argv[i], '=');
			if (!eq)
				return 2;
			*eq = '\0';
			efs_strlcpy(meta[meta_count].name, argv[i], sizeof(meta[0].name));
			efs_strlcpy(meta[meta_count].value, eq + 1, sizeof(meta[0].value));
			meta_count++;
		}
		if (r == 0)
			r = efs_s3_put(s3, argv[2], body.data, body.len, "application/octet-stream",
				       meta, meta_count, etag, &err);
		efs_buf_release(&body);
		return r < 0 ? fail(r, &err) : print_json(json_pack("{s:s}", "etag", etag));
	}
	if (strcmp(cmd, "get") == 0 && argc >= 4) {
		uint64_t offset = 0, length = 0, cap = 64 * EFS_MIB;
		if (argc >= 6 && (efs_parse_u64(argv[4], false, &offset) < 0 ||
				  efs_parse_u64(argv[5], false, &length) < 0))
			return 2;
		if (argc >= 7 && efs_parse_u64(argv[6], false, &cap) < 0)
			return 2;
		struct efs_buf out;
		efs_buf_init(&out, (size_t)cap);
		r = efs_s3_get(s3, argv[2], offset, length, (size_t)cap, &out, &info, &err);
		if (r == 0) {
			FILE *f = fopen(argv[3], "wb");
			if (!f || fwrite(out.data ? out.data : "", 1, out.len, f) != out.len)
				r = -EIO;
			if (f)
				fclose(f);
		}
		efs_buf_release(&out);
		return r < 0 ? fail(r, &err) : print_json(info_json(&info));
	}
	if (strcmp(cmd, "head") == 0 && argc >= 3) {
		r = efs_s3_head(s3, argv[2], &info, &err);
		return r < 0 ? fail(r, &err) : print_json(info_json(&info));
	}
	if (strcmp(cmd, "delete") == 0 && argc >= 3) {
		r = efs_s3_delete(s3, argv[2], &err);
		return r < 0 ? fail(r, &err) : print_json(json_object());
	}
	if ((strcmp(cmd, "list") == 0 || strcmp(cmd, "list-all") == 0) && argc >= 4) {
		uint64_t max_keys;
		if (efs_parse_u64(argv[3], false, &max_keys) < 0 || max_keys > UINT32_MAX)
			return 2;
		struct efs_s3_list list = {0};
		char token[EFS_S3_MAX_TOKEN + 1] = "";
		if (argc >= 5)
			efs_strlcpy(token, argv[4], sizeof(token));
		json_t *keys = json_array();
		int pages = 0;
		bool truncated;
		do {
			r = efs_s3_list(s3, argv[2], token, (unsigned)max_keys, &list, &err);
			if (r < 0) {
				json_decref(keys);
				return fail(r, &err);
			}
			pages++;
			json_t *page = list_json(&list);
			json_array_extend(keys, page);
			json_decref(page);
			efs_strlcpy(token, list.next_token, sizeof(token));
			truncated = list.truncated;
			efs_s3_list_release(&list);
		} while (truncated && strcmp(cmd, "list-all") == 0 && pages < 10000);
		return print_json(json_pack("{s:o, s:b, s:s, s:i}", "keys", keys, "truncated",
					    truncated, "next_token", token, "pages", pages));
	}
	if (strcmp(cmd, "dynamodb") == 0 && argc >= 4)
		return dynamodb_call(s3, argv[2], argv[3]);
	if (strcmp(cmd, "bucket-head") == 0) {
		r = efs_s3_bucket_head(s3, &err);
		return r < 0 ? fail(r, &err) : print_json(json_object());
	}
	if (strcmp(cmd, "bucket-create") == 0) {
		r = efs_s3_bucket_create(s3, &err);
		return r < 0 ? fail(r, &err) : print_json(json_object());
	}
	return 2;
}

int main(int argc, char **argv)
{
	struct efs_aws_config cfg;
	struct efs_http_client *http = NULL;
	struct efs_aws_client *aws = NULL;
	struct efs_s3 *s3 = NULL;
	const char *why = NULL;
	const char *bucket = getenv("S3_BUCKET_NAME");
	int status = 2;
	if (argc < 2) {
		fprintf(stderr, "usage: see tests/tools/s3_probe.c\n");
		return 2;
	}
	int r = efs_aws_config_load(&cfg, &why);
	if (r < 0) {
		fprintf(stderr, "s3_probe: %s\n", why ? why : strerror(-r));
		return 2;
	}
	if (efs_http_client_global_init() < 0 || efs_http_client_new(&http) < 0 ||
	    efs_aws_client_new(&cfg, http, &aws) < 0 || !bucket ||
	    efs_s3_new(aws, bucket, &s3) < 0) {
		fprintf(stderr, "s3_probe: cannot set up (S3_BUCKET_NAME set and valid?)\n");
		goto out;
	}
	const char *attempts = getenv("ECHOFS_S3_PROBE_ATTEMPTS");
	const char *backoff = getenv("ECHOFS_S3_PROBE_BACKOFF_MS");
	if (attempts || backoff) {
		uint64_t a = EFS_AWS_DEFAULT_ATTEMPTS, b = EFS_AWS_DEFAULT_BACKOFF_MS;
		if ((attempts && efs_parse_u64(attempts, false, &a) < 0) ||
		    (backoff && efs_parse_u64(backoff, false, &b) < 0) ||
		    efs_aws_client_set_retry(aws, (int)a, (int)b) < 0) {
			fprintf(stderr, "s3_probe: bad retry settings\n");
			goto out;
		}
	}
	probe_aws = aws;
	status = run(s3, argc, argv);
	if (status == 2)
		fprintf(stderr, "s3_probe: bad arguments\n");
out:
	efs_s3_free(s3);
	efs_aws_client_free(aws);
	efs_http_client_free(http);
	efs_http_client_global_cleanup();
	explicit_bzero(&cfg, sizeof(cfg));
	return status;
}
