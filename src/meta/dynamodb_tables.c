/* SPDX-License-Identifier: MIT */
/* dynamodb_tables.c - creates (or drops) the DynamoDB backend's three
 * tables with the keys and indexes of docs/AWS.md, the same ones
 * scripts/aws_tables.sh creates. The tests make fresh tables per test with
 * it; the master never creates tables itself.
 */
#include "meta/dynamodb.h"

#include "echofs/util.h"

#include <stdio.h>
#include <string.h>

#define TABLE_WAIT_MS 120000

struct table_def {
	const char *name;
	const char *attrs[3][2]; /* besides pk and sk: name, type */
	const char *indexes[2][3]; /* name, hash key, range key */
	bool ttl;
};

static json_t *table_body(const struct table_def *t)
{
	json_t *attrs = json_pack("[{s:s, s:s}, {s:s, s:s}]", "AttributeName", "pk",
				  "AttributeType", "S", "AttributeName", "sk", "AttributeType",
				  "S");
	json_t *gsis = json_array();
	for (int i = 0; i < 3 && t->attrs[i][0]; i++)
		json_array_append_new(attrs, json_pack("{s:s, s:s}", "AttributeName", t->attrs[i][0],
						       "AttributeType", t->attrs[i][1]));
	for (int i = 0; i < 2 && t->indexes[i][0]; i++)
		json_array_append_new(
		    gsis, json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:s}], s:{s:s}}", "IndexName",
				    t->indexes[i][0], "KeySchema", "AttributeName",
				    t->indexes[i][1], "KeyType", "HASH", "AttributeName",
				    t->indexes[i][2], "KeyType", "RANGE", "Projection",
				    "ProjectionType", "ALL"));
	return json_pack("{s:s, s:o, s:[{s:s, s:s}, {s:s, s:s}], s:o, s:s}", "TableName", t->name,
			 "AttributeDefinitions", attrs, "KeySchema", "AttributeName", "pk",
			 "KeyType", "HASH", "AttributeName", "sk", "KeyType", "RANGE",
			 "GlobalSecondaryIndexes", gsis, "BillingMode", "PAY_PER_REQUEST");
}

/* Waits until DescribeTable says ACTIVE (at once on DynamoDB Local). */
static int wait_active(struct ddb *d, const char *name)
{
	for (int64_t waited = 0; waited < TABLE_WAIT_MS; waited += 500) {
		json_t *body = json_pack("{s:s}", "TableName", name), *answer = NULL;
		int r = ddb_call(d, "DescribeTable", body, true, &answer, NULL);
		json_decref(body);
		if (r < 0 && r != -ENXIO)
			return r;
		const char *status = json_string_value(
		    json_object_get(json_object_get(answer, "Table"), "TableStatus"));
		bool active = status && strcmp(status, "ACTIVE") == 0;
		json_decref(answer);
		if (active)
			return 0;
		efs_sleep_ms(500);
	}
	return -ETIMEDOUT;
}

int efs_meta_dynamodb_tables(const struct efs_meta_dynamodb_config *cfg, bool drop, char *err,
			     size_t errlen)
{
	const struct table_def defs[3] = {
		{cfg->files_table,
		 {{"owner", "S"}, {"list_key", "S"}, {NULL, NULL}},
		 {{"by_owner", "owner", "list_key"}, {NULL, NULL, NULL}},
		 false},
		{cfg->chunks_table,
		 {{"worker_id", "S"}, {"gc", "S"}, {"zero_since", "N"}},
		 {{"by_worker", "worker_id", "pk"}, {"garbage", "gc", "zero_since"}},
		 false},
		{cfg->sessions_table,
		 {{"kind", "S"}, {"expires_at", "N"}, {NULL, NULL}},
		 {{"by_expiry", "kind", "expires_at"}, {NULL, NULL, NULL}},
		 true},
	};
	struct ddb d;
	int r = ddb_init(&d, err, errlen);
	if (r < 0)
		return r;
	for (int i = 0; i < 3 && r == 0; i++) {
		struct ddb_result res;
		json_t *body = drop ? json_pack("{s:s}", "TableName", defs[i].name)
				    : table_body(&defs[i]);
		r = body ? ddb_call(&d, drop ? "DeleteTable" : "CreateTable", body, false, NULL,
				    &res)
			 : -ENOMEM;
		json_decref(body);
		if (drop && r == -ENXIO) {
			r = 0;
			continue;
		}
		if (!drop && r < 0 && strcmp(res.code, "ResourceInUseException") == 0) {
			r = 0; /* exists */
			continue;
		}
		if (r < 0) {
			snprintf(err, errlen, "%s %s: %s: %s", drop ? "DeleteTable" : "CreateTable",
				 defs[i].name, res.code, res.message);
			break;
		}
		if (drop)
			continue;
		if ((r = wait_active(&d, defs[i].name)) < 0) {
			snprintf(err, errlen, "table %s did not become active", defs[i].name);
			break;
		}
		if (defs[i].ttl) {
			body = json_pack("{s:s, s:{s:b, s:s}}", "TableName", defs[i].name,
					 "TimeToLiveSpecification", "Enabled", 1, "AttributeName",
					 "ttl");
			r = body ? ddb_call(&d, "UpdateTimeToLive", body, false, NULL, &res)
				 : -ENOMEM;
			json_decref(body);
			if (r < 0) {
				snprintf(err, errlen, "UpdateTimeToLive %s: %s: %s", defs[i].name,
					 res.code, res.message);
				break;
			}
		}
	}
	ddb_release(&d);
	return r;
}
