/* SPDX-License-Identifier: MIT */
/* dynamodb_call.h - DynamoDB's JSON protocol, once (private to src/meta).
 *
 * One function sends an action ("GetItem", "TransactWriteItems", ...) with
 * a JSON body through efs_aws_send (SigV4, retries on throttling and 5xx)
 * and hands back the parsed answer; small helpers build and read attribute
 * values ({"S": ".."}, {"N": ".."}), and one pages through a Query or Scan
 * (LastEvaluatedKey) with a cap on the items it collects.
 *
 * Errors, mapped so that the backend can act on them:
 *   -ECANCELED  a condition failed (ConditionalCheckFailedException, or a
 *               TransactionCanceledException whose reasons name one:
 *               ddb_result.failed[i] says which of the items)
 *   -EBUSY      a TransactionCanceledException for a conflict with another
 *               transaction on the same items (try again)
 *   -ENXIO      ResourceNotFoundException: a table (or index) is missing
 *   -EAGAIN     DynamoDB unreachable, throttling, 5xx
 *   -EIO        anything else (ValidationException: a bug here; access
 *               denied; an answer that is not JSON)
 * The result's code and message keep AWS's own words for the log.
 */
#ifndef ECHOFS_META_DYNAMODB_CALL_H
#define ECHOFS_META_DYNAMODB_CALL_H

#include "echofs/aws.h"
#include "echofs/http_client.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define DDB_MAX_TX_ITEMS 100	    /* TransactWriteItems' limit */
#define DDB_MAX_BATCH_WRITE 25	    /* BatchWriteItem's limit */
#define DDB_MAX_BATCH_GET 100	    /* BatchGetItem's limit */
#define DDB_RESP_CAP (4 * 1024 * 1024) /* a page is at most 1 MB of items */
#define DDB_MAX_PAGES 1000	    /* pages one ddb_query_all reads */

struct ddb {
	struct efs_http_client *http;
	struct efs_aws_client *aws;
	char url[EFS_AWS_MAX_AUTHORITY + 16];
	char host[EFS_AWS_MAX_AUTHORITY + 1];
};

struct ddb_result {
	char code[64];	    /* AWS's error code, "" on success */
	char message[256];  /* AWS's message or the transport's */
	/* For a cancelled transaction: failed[i] is true when item i's
	 * condition failed. */
	bool failed[DDB_MAX_TX_ITEMS];
};

/* Sets up @d from the environment (efs_aws_config_load). 0, or a negative
 * errno with one line in @err. */
int ddb_init(struct ddb *d, char *err, size_t errlen);
void ddb_release(struct ddb *d);

/* POSTs @action with @body (borrowed) and, on success, sets *@out (may be
 * NULL) to the parsed answer, which the caller json_decref's. @retry: the
 * request may be sent twice (reads, idempotent writes, transactions with a
 * ClientRequestToken). @res may be NULL. Errors as the top of this file
 * says; *@out untouched on failure. */
int ddb_call(struct ddb *d, const char *action, json_t *body, bool retry, json_t **out,
	     struct ddb_result *res);

/* Attribute values (new references; NULL on ENOMEM, which json_object_set_new
 * and json_pack's "o" then refuse). */
json_t *ddb_s(const char *value);
json_t *ddb_n(int64_t value);
/* {"pk": {"S": pk}, "sk": {"S": sk}} */
json_t *ddb_key(const char *pk, const char *sk);

/* Reads attribute @name of @item: a string of at most @max bytes copied
 * into @out (@max + 1 bytes), or a number. -ENOENT when absent, -EINVAL
 * when of another type or too long. */
int ddb_get_s(const json_t *item, const char *name, char *out, size_t max);
int ddb_get_n(const json_t *item, const char *name, int64_t *out);

/* Called with each item of a Query or Scan; a negative return stops. */
typedef int (*ddb_item_fn)(void *ctx, const json_t *item);
/* Runs the Query or Scan @action with @body (its ExclusiveStartKey is
 * replaced page after page) until the items run out, @max items were
 * passed to @fn (0: no cap but DDB_MAX_PAGES pages) or @fn returns < 0. */
int ddb_query_all(struct ddb *d, const char *action, json_t *body, size_t max, ddb_item_fn fn,
		  void *ctx);

/* The errno the metadata interface gives callers for a call's error:
 * -ENXIO (a table is gone: DynamoDB Local restarted, or deleted) and
 * -EBUSY become -EAGAIN (503, try later); the others are kept. */
int ddb_public_errno(int r);

#endif
