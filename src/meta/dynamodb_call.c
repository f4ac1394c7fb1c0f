/* SPDX-License-Identifier: MIT */
/* dynamodb_call.c - DynamoDB's JSON protocol over efs_aws_send.
 *
 * The only file that knows DynamoDB's wire format (X-Amz-Target, the
 * attribute-value JSON, the error types, LastEvaluatedKey paging). Logs
 * nothing: the backend that decides logs, with the code and message this
 * file hands back.
 */
#include "meta/dynamodb_call.h"

#include "echofs/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ddb_init(struct ddb *d, char *err, size_t errlen)
{
	struct efs_aws_config cfg;
	struct efs_buf url, host;
	const char *reason = NULL;
	int r;

	memset(d, 0, sizeof(*d));
	if ((r = efs_aws_config_load(&cfg, &reason)) < 0) {
		snprintf(err, errlen, "DynamoDB metadata: AWS configuration: %s",
			 reason ? reason : "no credentials (AWS_ACCESS_KEY_ID or ~/.aws/credentials)");
		return -EINVAL;
	}
	efs_buf_init(&url, sizeof(d->url) - 1);
	efs_buf_init(&host, sizeof(d->host) - 1);
	r = efs_aws_dynamodb_target(&cfg, &url, &host);
	if (r == 0) {
		efs_strlcpy(d->url, url.data, sizeof(d->url));
		efs_strlcpy(d->host, host.data, sizeof(d->host));
	}
	efs_buf_release(&url);
	efs_buf_release(&host);
	if (r < 0) {
		snprintf(err, errlen, "DynamoDB metadata: the endpoint is too long");
		return -EINVAL;
	}
	if ((r = efs_http_client_new(&d->http)) < 0 ||
	    (r = efs_aws_client_new(&cfg, d->http, &d->aws)) < 0) {
		snprintf(err, errlen, "DynamoDB metadata: out of memory");
		ddb_release(d);
		return r;
	}
	return 0;
}

void ddb_release(struct ddb *d)
{
	efs_aws_client_free(d->aws);
	efs_http_client_free(d->http);
	d->aws = NULL;
	d->http = NULL;
}

/* Reads a TransactionCanceledException's CancellationReasons: -ECANCELED
 * when a condition failed (marking which), -EBUSY for a conflict,
 * -EAGAIN for throttling, -EIO otherwise. */
static int cancellation(const char *body, size_t len, struct ddb_result *res)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	json_t *reasons = root ? json_object_get(root, "CancellationReasons") : NULL;
	size_t i;
	json_t *reason;
	int r = -EIO;
	bool conflict = false, throttled = false, failed = false;

	json_array_foreach(reasons, i, reason) {
		const char *code = json_string_value(json_object_get(reason, "Code"));
		if (!code || strcmp(code, "None") == 0)
			continue;
		if (strcmp(code, "ConditionalCheckFailed") == 0) {
			failed = true;
			if (res && i < DDB_MAX_TX_ITEMS)
				res->failed[i] = true;
		} else if (strcmp(code, "TransactionConflict") == 0) {
			conflict = true;
		} else if (strstr(code, "Throttl") || strstr(code, "Throughput")) {
			throttled = true;
		}
	}
	if (failed)
		r = -ECANCELED;
	else if (conflict)
		r = -EBUSY;
	else if (throttled)
		r = -EAGAIN;
	else if (!reasons && res && strstr(res->message, "ConditionalCheckFailed"))
		r = -ECANCELED; /* servers that put the reasons in the message only */
	else if (!reasons && res && strstr(res->message, "TransactionConflict"))
		r = -EBUSY;
	json_decref(root);
	return r;
}

int ddb_call(struct ddb *d, const char *action, json_t *body, bool retry, json_t **out,
	     struct ddb_result *res)
{
	struct efs_aws_request req = {0};
	struct efs_aws_response resp;
	char target[96];
	char *text = json_dumps(body, JSON_COMPACT);
	int r;

	if (res)
		memset(res, 0, sizeof(*res));
	if (!text)
		return -ENOMEM;
	snprintf(target, sizeof(target), "X-Amz-Target: DynamoDB_20120810.%s", action);
	req.method = "POST";
	req.service = "dynamodb";
	req.url = d->url;
	req.host = d->host;
	req.path = "/";
	req.headers[0] = target;
	req.headers[1] = "Content-Type: application/x-amz-json-1.0";
	req.body = text;
	req.body_len = strlen(text);
	req.retry = retry;
	req.resp_cap = DDB_RESP_CAP;
	req.timeout_ms = 10000;
	efs_aws_response_init(&resp);
	r = efs_aws_send(d->aws, &req, &resp);
	free(text);
	if (res) {
		efs_strlcpy(res->code, resp.code, sizeof(res->code));
		efs_strlcpy(res->message, resp.message, sizeof(res->message));
	}
	if (r == 0) {
		if (out) {
			json_t *answer = json_loadb(resp.body.data ? resp.body.data : "{}",
						    resp.body.data ? resp.body.len : 2, 0, NULL);
			if (!answer) {
				if (res)
					snprintf(res->message, sizeof(res->message),
						 "%s: the answer is not JSON", action);
				r = -EIO;
			} else {
				*out = answer;
			}
		}
	} else if (strcmp(resp.code, "ResourceNotFoundException") == 0) {
		r = -ENXIO;
	} else if (strcmp(resp.code, "TransactionCanceledException") == 0) {
		r = cancellation(resp.body.data ? resp.body.data : "", resp.body.len, res);
	} else if (strcmp(resp.code, "TransactionInProgressException") == 0) {
		r = -EBUSY;
	} else if (r == -ECANCELED || r == -EAGAIN) {
		/* a failed condition; throttling or 5xx after the retries */
	} else if (resp.status == 0 || r == -ECONNREFUSED || r == -ETIMEDOUT ||
		   r == -ECONNRESET || r == -EHOSTUNREACH) {
		r = -EAGAIN; /* not answered: unreachable */
	} else {
		r = -EIO;
	}
	efs_aws_response_release(&resp);
	return r;
}

json_t *ddb_s(const char *value)
{
	return json_pack("{s:s}", "S", value);
}

json_t *ddb_n(int64_t value)
{
	char text[32];
	snprintf(text, sizeof(text), "%" PRId64, value);
	return json_pack("{s:s}", "N", text);
}

json_t *ddb_key(const char *pk, const char *sk)
{
	return json_pack("{s:o, s:o}", "pk", ddb_s(pk), "sk", ddb_s(sk));
}

int ddb_get_s(const json_t *item, const char *name, char *out, size_t max)
{
	const json_t *v = json_object_get(json_object_get(item, name), "S");
	if (!json_object_get(item, name))
		return -ENOENT;
	if (!json_is_string(v) || json_string_length(v) > max)
		return -EINVAL;
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

int ddb_get_n(const json_t *item, const char *name, int64_t *out)
{
	const json_t *v = json_object_get(json_object_get(item, name), "N");
	char *end;
	if (!json_object_get(item, name))
		return -ENOENT;
	if (!json_is_string(v))
		return -EINVAL;
	errno = 0;
	long long n = strtoll(json_string_value(v), &end, 10);
	if (errno || *end || end == json_string_value(v))
		return -EINVAL;
	*out = n;
	return 0;
}

int ddb_query_all(struct ddb *d, const char *action, json_t *body, size_t max, ddb_item_fn fn,
		  void *ctx)
{
	size_t seen = 0;
	int r = 0;

	json_object_del(body, "ExclusiveStartKey");
	for (unsigned page = 0; page < DDB_MAX_PAGES; page++) {
		json_t *answer = NULL, *item, *last;
		size_t i;
		if (max)
			json_object_set_new(body, "Limit", json_integer((json_int_t)(max - seen)));
		if ((r = ddb_call(d, action, body, true, &answer, NULL)) < 0)
			return r;
		json_array_foreach(json_object_get(answer, "Items"), i, item) {
			if (max && seen >= max)
				break;
			seen++;
			if ((r = fn(ctx, item)) < 0)
				break;
		}
		last = json_object_get(answer, "LastEvaluatedKey");
		if (r < 0 || !last || (max && seen >= max)) {
			json_decref(answer);
			return r < 0 ? r : 0;
		}
		json_object_set(body, "ExclusiveStartKey", last);
		json_decref(answer);
	}
	return -E2BIG;
}

int ddb_public_errno(int r)
{
	if (r == -ENXIO || r == -EBUSY)
		return -EAGAIN;
	if (r == -ECANCELED)
		return -EIO; /* a condition the caller did not expect */
	return r;
}
