/* SPDX-License-Identifier: MIT */
/* s3_bucket.c - S3 buckets and listings (contract in s3_bucket.h). */
#include "master/s3_bucket.h"
#include "echofs/log.h"
#include "echofs/util.h"
#include "echofs/xml.h"
#include "master/s3_policy.h"
#include "master/s3_xml.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIST_MAX_KEYS 1000
/* Appended to a common prefix, it sorts after every valid UTF-8 key that
 * starts with the prefix: a listing resumes past the prefix's keys
 * without reading them. (U+10FFFF, the highest code point, four times.) */
#define PAST_PREFIX "\xf4\x8f\xbf\xbf\xf4\x8f\xbf\xbf\xf4\x8f\xbf\xbf\xf4\x8f\xbf\xbf"
#define CURSOR_MAX (EFS_S3_KEY_MAX + sizeof(PAST_PREFIX))

static const char *region_of(const struct efs_s3_req *s)
{
	return s->m->cfg.s3_region;
}

bool efs_s3_bucket_name_valid(const char *name)
{
	size_t len = strlen(name);
	if (len < 3 || len > EFS_S3_BUCKET_MAX)
		return false;
	bool all_ip = true;
	unsigned dots = 0;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (!(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && c != '.' && c != '-')
			return false;
		if (c == '.' && i > 0 && name[i - 1] == '.')
			return false;
		dots += c == '.';
		all_ip = all_ip && ((c >= '0' && c <= '9') || c == '.');
	}
	if (!isalnum((unsigned char)name[0]) || !isalnum((unsigned char)name[len - 1]))
		return false;
	if (all_ip && dots == 3)
		return false; /* formatted as an IP address */
	if (strncmp(name, "xn--", 4) == 0 || strncmp(name, "sthree-", 7) == 0 ||
	    (len > 8 && strcmp(name + len - 8, "-s3alias") == 0) ||
	    (len > 6 && strcmp(name + len - 6, "--ol-s3") == 0))
		return false;
	return true;
}

static void owner_xml(struct efs_s3_xml *x, const char *owner)
{
	efs_s3_xml_open(x, "Owner", NULL);
	efs_s3_xml_text(x, "ID", owner);
	efs_s3_xml_text(x, "DisplayName", owner);
	efs_s3_xml_close(x, "Owner");
}

/* ---- ListBuckets ------------------------------------------------------- */

int efs_s3_list_buckets(struct efs_s3_req *s)
{
	struct efs_bucket_info *buckets = NULL;
	struct efs_s3_xml x;
	size_t n = 0;
	int r = efs_meta_bucket_list(s->m->meta, s->principal.owner, &buckets, &n);
	if (r < 0)
		return efs_s3_error_store(s, r, "ListBuckets");
	efs_s3_xml_init(&x);
	efs_s3_xml_open(&x, "ListAllMyBucketsResult", EFS_S3_XMLNS);
	owner_xml(&x, s->principal.owner);
	efs_s3_xml_open(&x, "Buckets", NULL);
	for (size_t i = 0; i < n; i++) {
		efs_s3_xml_open(&x, "Bucket", NULL);
		efs_s3_xml_text(&x, "Name", buckets[i].name);
		efs_s3_xml_time(&x, "CreationDate", buckets[i].created_at_ms);
		efs_s3_xml_close(&x, "Bucket");
	}
	efs_s3_xml_close(&x, "Buckets");
	efs_s3_xml_close(&x, "ListAllMyBucketsResult");
	free(buckets);
	return efs_s3_xml_reply(s->http, 200, &x);
}

/* ---- CreateBucket ------------------------------------------------------ */

struct create_config {
	bool root_seen;
	bool bad_root;
	bool has_location;
	char location[EFS_S3_REGION_MAX + 2];
};

static int config_start(void *ctx, int depth, const char *name)
{
	struct create_config *c = ctx;
	if (depth == 1) {
		c->root_seen = true;
		c->bad_root = strcmp(name, "CreateBucketConfiguration") != 0;
	}
	return 0;
}

static int config_end(void *ctx, int depth, const char *name, const char *text, size_t len)
{
	struct create_config *c = ctx;
	if (depth == 2 && strcmp(name, "LocationConstraint") == 0) {
		c->has_location = true;
		if (len >= sizeof(c->location))
			len = sizeof(c->location) - 1; /* too long: no region matches */
		memcpy(c->location, text, len);
		c->location[len] = '\0';
	}
	return 0;
}

int efs_s3_create_bucket(struct efs_s3_req *s)
{
	struct efs_bucket_info b = {0}, existing;
	struct create_config config = {0};
	char location[EFS_S3_BUCKET_MAX + 2];
	int r;

	if (!efs_s3_bucket_name_valid(s->bucket))
		return efs_s3_error(s, 400, "InvalidBucketName",
				    "The specified bucket is not valid.");
	if (s->small_body.len > 0) {
		r = efs_xml_parse(s->small_body.data, s->small_body.len, config_start, config_end,
				  &config);
		if (r < 0 || !config.root_seen || config.bad_root)
			return efs_s3_error(s, 400, "MalformedXML",
					    "The XML you provided was not well-formed or did not "
					    "validate against our published schema.");
	}
	/* us-east-1 is S3's empty LocationConstraint. */
	bool default_region = strcmp(region_of(s), "us-east-1") == 0;
	if (config.has_location && strcmp(config.location, region_of(s)) != 0 &&
	    !(default_region && config.location[0] == '\0'))
		return efs_s3_error(s, 400, "IllegalLocationConstraintException",
				    "The %s location constraint is incompatible for the region "
				    "specific endpoint this request was sent to (%s).",
				    config.location, region_of(s));
	efs_strlcpy(b.name, s->bucket, sizeof(b.name));
	efs_strlcpy(b.owner, s->principal.owner, sizeof(b.owner));
	efs_strlcpy(b.region, region_of(s), sizeof(b.region));
	b.created_at_ms = efs_now_ms();
	r = efs_meta_bucket_create(s->m->meta, &b);
	if (r == -EEXIST) {
		if ((r = efs_meta_bucket_get(s->m->meta, s->bucket, &existing)) < 0 && r != -ENOENT)
			return efs_s3_error_store(s, r, "CreateBucket");
		if (r == 0 && strcmp(existing.owner, s->principal.owner) == 0)
			return efs_s3_error(s, 409, "BucketAlreadyOwnedByYou",
					    "Your previous request to create the named bucket "
					    "succeeded and you already own it.");
		return efs_s3_error(
		    s, 409, "BucketAlreadyExists",
		    "The requested bucket name is not available. The bucket "
		    "namespace is shared by all users of the system. Please select a "
		    "different name and try again.");
	}
	if (r == -EDQUOT)
		return efs_s3_error(s, 400, "TooManyBuckets",
				    "You have attempted to create more buckets than allowed (%d).",
				    EFS_S3_BUCKETS_PER_OWNER);
	if (r < 0)
		return efs_s3_error_store(s, r, "CreateBucket");
	efs_info("s3 bucket %s created by %s (request %s)", b.name, b.owner, s->request_id);
	snprintf(location, sizeof(location), "/%s", b.name);
	efs_http_add_header(s->http, "Location", location);
	return efs_http_reply_empty(s->http, 200);
}

/* ---- DeleteBucket, HeadBucket, GetBucketLocation ------------------------ */

int efs_s3_delete_bucket(struct efs_s3_req *s)
{
	struct efs_bucket_info b;
	if (efs_s3_own_bucket(s, &b) < 0)
		return 0;
	int r = efs_meta_bucket_delete(s->m->meta, s->bucket, s->principal.owner);
	if (r == -ENOTEMPTY)
		return efs_s3_error(s, 409, "BucketNotEmpty",
				    "The bucket you tried to delete is not empty");
	if (r == -ENOENT)
		return efs_s3_error(s, 404, "NoSuchBucket", "The specified bucket does not exist");
	if (r < 0)
		return efs_s3_error_store(s, r, "DeleteBucket");
	efs_info("s3 bucket %s deleted by %s (request %s)", s->bucket, s->principal.owner,
		 s->request_id);
	return efs_http_reply_empty(s->http, 204);
}

int efs_s3_head_bucket(struct efs_s3_req *s)
{
	struct efs_bucket_info b;
	if (efs_s3_own_bucket(s, &b) < 0)
		return 0;
	efs_http_add_header(s->http, "x-amz-bucket-region", b.region);
	return efs_http_reply_empty(s->http, 200);
}

int efs_s3_bucket_location(struct efs_s3_req *s)
{
	struct efs_bucket_info b;
	struct efs_s3_xml x;
	if (efs_s3_own_bucket(s, &b) < 0)
		return 0;
	efs_s3_xml_init(&x);
	efs_s3_xml_open(&x, "LocationConstraint", EFS_S3_XMLNS);
	/* S3 answers an empty constraint for us-east-1. */
	if (strcmp(b.region, "us-east-1") != 0)
		efs_s3_xml_escape(&x, b.region);
	efs_s3_xml_close(&x, "LocationConstraint");
	return efs_s3_xml_reply(s->http, 200, &x);
}

int efs_s3_bucket_versioning(struct efs_s3_req *s)
{
	struct efs_bucket_info b;
	struct efs_s3_xml x;
	if (efs_s3_own_bucket(s, &b) < 0)
		return 0;
	/* No <Status>: versioning was never enabled, which is S3's answer
	 * for such a bucket (and the truth here: it cannot be). */
	efs_s3_xml_init(&x);
	efs_s3_xml_open(&x, "VersioningConfiguration", EFS_S3_XMLNS);
	efs_s3_xml_close(&x, "VersioningConfiguration");
	return efs_s3_xml_reply(s->http, 200, &x);
}

/* ---- ListObjects, ListObjectsV2 ----------------------------------------- */

struct list_item {
	bool is_prefix;
	struct efs_object_entry entry; /* key: the common prefix when is_prefix */
};

struct listing {
	struct list_item *items;
	size_t count;
	bool truncated;
	char next[CURSOR_MAX + 1]; /* where the next page starts (exclusive) */
};

/* Text for the document: @text itself, or URL-encoded (encoding-type=url:
 * every byte but unreserved ones and '/' as %XX) into @buf. */
static const char *encoded(bool url, const char *text, char *buf, size_t size)
{
	static const char hex[] = "0123456789ABCDEF";
	if (!url)
		return text;
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)text; *p && o + 4 < size; p++) {
		if (isalnum(*p) || strchr("-_.~/", *p)) {
			buf[o++] = (char)*p;
		} else {
			buf[o++] = '%';
			buf[o++] = hex[*p >> 4];
			buf[o++] = hex[*p & 15];
		}
	}
	buf[o] = '\0';
	return buf;
}

int efs_s3_token_decode(const char *token, char *out, size_t size)
{
	size_t len = strlen(token);
	if (len % 2 || len / 2 >= size)
		return -EINVAL;
	for (size_t i = 0; i < len / 2; i++) {
		int hi = efs_hex_value((unsigned char)token[2 * i]);
		int lo = efs_hex_value((unsigned char)token[2 * i + 1]);
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
			return -EINVAL;
		out[i] = (char)(hi * 16 + lo);
	}
	out[len / 2] = '\0';
	return efs_utf8_valid(out, len / 2) ? 0 : -EINVAL;
}

/* After a jump past a common prefix, the store is asked for this many
 * rows first (then twice as many each time a batch is used up without a
 * jump): a listing of N prefixes costs about N small reads, not N reads
 * of max_keys + 1 rows of which one is used (bench/s3_list.sh). */
#define JUMP_BATCH 8

/* Lists up to @max_keys keys and common prefixes after @start. A common
 * prefix is reported once, then the scan jumps past its keys; one that
 * sorts at or before @start (the client has it) is skipped. The store
 * is asked for one batch at a time (max_keys + 1 rows at most). */
static int list_scan(struct efs_s3_req *s, const char *prefix, const char *delimiter,
		     const char *start, size_t max_keys, struct listing *out)
{
	size_t batch_max = max_keys + 1;
	struct efs_object_entry *batch = calloc(batch_max, sizeof(*batch));
	char *cursor = malloc(CURSOR_MAX + 1), *jump = malloc(CURSOR_MAX + 1);
	char *common = malloc(EFS_S3_KEY_MAX + 1), *last_prefix = calloc(1, EFS_S3_KEY_MAX + 1);
	size_t plen = strlen(prefix), dlen = delimiter ? strlen(delimiter) : 0;
	int r = 0;

	out->items = calloc(max_keys ? max_keys : 1, sizeof(*out->items));
	if (!batch || !cursor || !jump || !common || !last_prefix || !out->items) {
		r = -ENOMEM;
		goto out;
	}
	efs_strlcpy(cursor, start, CURSOR_MAX + 1);
	size_t ask = batch_max;
	for (;;) {
		size_t got = 0;
		bool jumped = false;
		r = efs_meta_object_list(s->m->meta, s->bucket, prefix, cursor, ask, batch, &got);
		if (r < 0)
			goto out;
		for (size_t i = 0; i < got; i++) {
			const char *key = batch[i].key;
			const char *d = dlen ? strstr(key + plen, delimiter) : NULL;
			if (d) {
				size_t clen = (size_t)(d - key) + dlen;
				memcpy(common, key, clen);
				common[clen] = '\0';
				snprintf(jump, CURSOR_MAX + 1, "%s%s", common, PAST_PREFIX);
				/* Listed on an earlier page (at or before @start), or
				 * just now: not again. The scan jumps past its keys;
				 * a key sorting after the jump point (it holds
				 * U+10FFFF) is passed over alone, so the scan always
				 * moves forward. */
				if (strcmp(common, start) <= 0 ||
				    strcmp(common, last_prefix) == 0) {
					bool past = strcmp(key, jump) >= 0;
					efs_strlcpy(cursor, past ? key : jump, CURSOR_MAX + 1);
					if (past)
						continue;
					jumped = true;
					break;
				}
			}
			if (out->count == max_keys) {
				out->truncated = true;
				goto out;
			}
			struct list_item *it = &out->items[out->count++];
			if (d) {
				it->is_prefix = true;
				efs_strlcpy(it->entry.key, common, sizeof(it->entry.key));
				efs_strlcpy(last_prefix, common, EFS_S3_KEY_MAX + 1);
				bool past = strcmp(key, jump) >= 0;
				efs_strlcpy(cursor, past ? key : jump, CURSOR_MAX + 1);
				efs_strlcpy(out->next, cursor, sizeof(out->next));
				if (past)
					continue;
				jumped = true;
				break;
			}
			it->entry = batch[i];
			efs_strlcpy(cursor, key, CURSOR_MAX + 1);
			efs_strlcpy(out->next, key, sizeof(out->next));
		}
		if (!jumped && got < ask)
			break; /* the end of the prefix's keys */
		/* After a jump the next prefix may hold few keys or many: start
		 * small and grow while batches are used up. */
		ask = jumped ? EFS_MIN(batch_max, (size_t)JUMP_BATCH) : EFS_MIN(batch_max, 2 * ask);
	}
out:
	free(batch);
	free(cursor);
	free(jump);
	free(common);
	free(last_prefix);
	return r;
}

int efs_s3_list_objects(struct efs_s3_req *s)
{
	struct efs_bucket_info b;
	struct listing list = {0};
	struct efs_s3_xml x;
	const char *list_type = efs_s3_query(s, "list-type");
	const char *prefix = efs_s3_query(s, "prefix");
	const char *delimiter = efs_s3_query(s, "delimiter");
	const char *max_s = efs_s3_query(s, "max-keys");
	const char *encoding = efs_s3_query(s, "encoding-type");
	const char *fetch_owner = efs_s3_query(s, "fetch-owner");
	const char *token = efs_s3_query(s, "continuation-token");
	const char *start_after = efs_s3_query(s, "start-after");
	const char *marker = efs_s3_query(s, "marker");
	char start[CURSOR_MAX + 1] = "";
	uint64_t max_keys = LIST_MAX_KEYS;
	bool v2 = list_type && strcmp(list_type, "2") == 0;
	char *ebuf = NULL;
	int r;

	if (efs_s3_own_bucket(s, &b) < 0)
		return 0;
	if (list_type && !v2)
		return efs_s3_error(s, 400, "InvalidArgument", "Invalid list-type: %s", list_type);
	if (max_s && efs_parse_u64(max_s, false, &max_keys) < 0)
		return efs_s3_error(s, 400, "InvalidArgument",
				    "max-keys must be a non-negative integer");
	if (encoding && strcmp(encoding, "url") != 0)
		return efs_s3_error(s, 400, "InvalidArgument",
				    "Invalid Encoding Method specified "
				    "in Request");
	max_keys = EFS_MIN(max_keys, (uint64_t)LIST_MAX_KEYS);
	prefix = prefix ? prefix : "";
	if (delimiter && !*delimiter)
		delimiter = NULL;
	if (strlen(prefix) > EFS_S3_KEY_MAX || (delimiter && strlen(delimiter) > EFS_S3_KEY_MAX))
		return efs_s3_error(s, 400, "InvalidArgument", "prefix or delimiter too long");
	if (v2 && token) {
		if (efs_s3_token_decode(token, start, sizeof(start)) < 0)
			return efs_s3_error(s, 400, "InvalidArgument",
					    "The continuation token provided is incorrect");
	} else {
		const char *from = v2 ? start_after : marker;
		if (from && strlen(from) > EFS_S3_KEY_MAX)
			return efs_s3_error(s, 400, "InvalidArgument", "start key too long");
		efs_strlcpy(start, from ? from : "", sizeof(start));
	}
	r = list_scan(s, prefix, delimiter, start, (size_t)max_keys, &list);
	if (r < 0) {
		free(list.items);
		return efs_s3_error_store(s, r, "ListObjects");
	}

	bool url = encoding != NULL;
	size_t esize = 3 * CURSOR_MAX + 1;
	if (!(ebuf = malloc(esize))) {
		free(list.items);
		return -ENOMEM;
	}
	efs_s3_xml_init(&x);
	efs_s3_xml_open(&x, "ListBucketResult", EFS_S3_XMLNS);
	efs_s3_xml_text(&x, "Name", s->bucket);
	efs_s3_xml_text(&x, "Prefix", encoded(url, prefix, ebuf, esize));
	if (v2) {
		if (token)
			efs_s3_xml_text(&x, "ContinuationToken", token);
		if (start_after)
			efs_s3_xml_text(&x, "StartAfter", encoded(url, start_after, ebuf, esize));
		efs_s3_xml_u64(&x, "KeyCount", list.count);
	} else {
		efs_s3_xml_text(&x, "Marker", encoded(url, marker ? marker : "", ebuf, esize));
	}
	efs_s3_xml_u64(&x, "MaxKeys", max_keys);
	if (delimiter)
		efs_s3_xml_text(&x, "Delimiter", encoded(url, delimiter, ebuf, esize));
	if (url)
		efs_s3_xml_text(&x, "EncodingType", "url");
	efs_s3_xml_bool(&x, "IsTruncated", list.truncated);
	if (list.truncated && v2) {
		char *hex = malloc(2 * CURSOR_MAX + 1);
		if (hex) {
			efs_hex_encode(list.next, strlen(list.next), hex);
			efs_s3_xml_text(&x, "NextContinuationToken", hex);
		} else {
			x.err = -ENOMEM;
		}
		free(hex);
	}
	if (list.truncated && !v2 && delimiter && list.count) {
		const struct list_item *last = &list.items[list.count - 1];
		efs_s3_xml_text(&x, "NextMarker", encoded(url, last->entry.key, ebuf, esize));
	}
	for (size_t i = 0; i < list.count; i++) {
		const struct list_item *it = &list.items[i];
		if (it->is_prefix)
			continue;
		char etag[EFS_S3_ETAG_MAX + 3];
		snprintf(etag, sizeof(etag), "\"%s\"", it->entry.etag);
		efs_s3_xml_open(&x, "Contents", NULL);
		efs_s3_xml_text(&x, "Key", encoded(url, it->entry.key, ebuf, esize));
		efs_s3_xml_time(&x, "LastModified", it->entry.last_modified_ms);
		efs_s3_xml_text(&x, "ETag", etag);
		efs_s3_xml_u64(&x, "Size", it->entry.size);
		if (!v2 || (fetch_owner && strcmp(fetch_owner, "true") == 0))
			owner_xml(&x, b.owner);
		efs_s3_xml_text(&x, "StorageClass", efs_s3_storage_class(it->entry.policy));
		efs_s3_xml_close(&x, "Contents");
	}
	for (size_t i = 0; i < list.count; i++) {
		if (!list.items[i].is_prefix)
			continue;
		efs_s3_xml_open(&x, "CommonPrefixes", NULL);
		efs_s3_xml_text(&x, "Prefix", encoded(url, list.items[i].entry.key, ebuf, esize));
		efs_s3_xml_close(&x, "CommonPrefixes");
	}
	efs_s3_xml_close(&x, "ListBucketResult");
	free(ebuf);
	free(list.items);
	return efs_s3_xml_reply(s->http, 200, &x);
}

/* ---- shared with multipart uploads (s3_multipart.c) -------------------- */

const char *efs_s3_url_encoded(bool url, const char *text, char *buf, size_t size)
{
	return encoded(url, text, buf, size);
}

void efs_s3_owner_xml(struct efs_s3_xml *x, const char *name, const char *owner)
{
	efs_s3_xml_open(x, name, NULL);
	efs_s3_xml_text(x, "ID", owner);
	efs_s3_xml_text(x, "DisplayName", owner);
	efs_s3_xml_close(x, name);
}
