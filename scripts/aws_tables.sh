#!/usr/bin/env bash
# shellcheck disable=SC2016 # the backquotes in --query are JMESPath literals
# aws_tables.sh - create the S3 bucket and the three DynamoDB tables of AWS
# mode, with the keys, indexes and TTL that docs/AWS.md describes.
#
#   scripts/aws_tables.sh create   create whatever is missing; an existing
#                                  bucket or table is left alone, but a
#                                  table whose keys or indexes differ from
#                                  docs/AWS.md is reported (exit 1)
#   scripts/aws_tables.sh check    only the report: exit 1 if anything is
#                                  missing or different
#
# Reads S3_BUCKET_NAME, DYNAMODB_FILES_TABLE, DYNAMODB_CHUNKS_TABLE,
# DYNAMODB_SESSIONS_TABLE, AWS_REGION (default us-east-1), the credentials
# the aws CLI reads, and the endpoints AWS_ENDPOINT_URL_S3 /
# AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL (passed as --endpoint-url:
# Debian's aws CLI 2.9 does not read them itself). `source
# ./aws_test_config.sh` sets them all; scripts/start_aws.sh --create calls
# this. Tables are on-demand (PAY_PER_REQUEST).
set -euo pipefail
cmd=${1:-}
case "$cmd" in create | check) ;; *)
	echo "usage: $0 create|check" >&2
	exit 2
	;;
esac
for v in S3_BUCKET_NAME DYNAMODB_FILES_TABLE DYNAMODB_CHUNKS_TABLE DYNAMODB_SESSIONS_TABLE; do
	if [ -z "${!v:-}" ]; then
		echo "aws_tables: $v is not set (source ./aws_test_config.sh)" >&2
		exit 2
	fi
done
# Debian's CLI first: another one earlier in PATH may be a different major.
# No "| head": under pipefail a reader that exits early can kill the
# writer with SIGPIPE (exit 141, no message), as CI saw once.
AWS_CLI=${AWS_CLI:-$(command -v /usr/bin/aws || command -v aws || true)}
[ -n "$AWS_CLI" ] || { echo "aws_tables: the aws CLI is missing (Debian: awscli)" >&2; exit 1; }
export AWS_REGION=${AWS_REGION:-us-east-1}
export AWS_DEFAULT_REGION=$AWS_REGION
export AWS_PAGER=""
s3_endpoint=${AWS_ENDPOINT_URL_S3:-${AWS_ENDPOINT_URL:-}}
ddb_endpoint=${AWS_ENDPOINT_URL_DYNAMODB:-${AWS_ENDPOINT_URL:-}}
s3() { "$AWS_CLI" s3api ${s3_endpoint:+--endpoint-url "$s3_endpoint"} "$@"; }
ddb() { "$AWS_CLI" dynamodb ${ddb_endpoint:+--endpoint-url "$ddb_endpoint"} "$@"; }
status=0

# table NAME KEYS INDEXES TTL_ATTR ATTRIBUTE-DEFINITIONS... : the expected
# key schema ("pk sk"), the expected GSIs as "name:hash:range ..." and the
# TTL attribute ("" for none), then create-table's attribute definitions.
# Runs in the background (each aws CLI call starts Python: seconds on a
# loaded machine); a difference leaves $tmp/failed, an error returns 1 (the
# CLI has printed it). errexit does not apply inside (called with ||).
table() {
	local name=$1 keys=$2 indexes=$3 ttl=$4
	shift 4
	if ! grep -qxF "$name" "$tmp/tables"; then
		if [ "$cmd" = check ]; then
			echo "aws_tables: table $name is missing" >&2
			touch "$tmp/failed"
			return
		fi
		local gsis=() idx iname hash range table_status
		for idx in $indexes; do
			IFS=: read -r iname hash range <<<"$idx"
			gsis+=("{\"IndexName\":\"$iname\",\"KeySchema\":[{\"AttributeName\":\"$hash\",\"KeyType\":\"HASH\"},{\"AttributeName\":\"$range\",\"KeyType\":\"RANGE\"}],\"Projection\":{\"ProjectionType\":\"ALL\"}}")
		done
		table_status=$(ddb create-table --table-name "$name" --billing-mode PAY_PER_REQUEST \
			--attribute-definitions "$@" \
			--key-schema AttributeName=pk,KeyType=HASH AttributeName=sk,KeyType=RANGE \
			--global-secondary-indexes "[$(IFS=,; echo "${gsis[*]}")]" \
			--query TableDescription.TableStatus --output text) || return 1
		# AWS takes seconds to make a table ACTIVE; DynamoDB Local none.
		if [ "$table_status" != ACTIVE ]; then
			ddb wait table-exists --table-name "$name" || return 1
		fi
		echo "aws_tables: created table $name" >&2
		if [ -n "$ttl" ]; then
			ddb update-time-to-live --table-name "$name" \
				--time-to-live-specification "Enabled=true,AttributeName=$ttl" >/dev/null || return 1
			echo "aws_tables: enabled TTL on $name.$ttl" >&2
		fi
		return 0
	fi
	local have want_idx
	have=$(ddb describe-table --table-name "$name" \
		--query '[join(`" "`, Table.KeySchema[].AttributeName), join(`" "`, sort(Table.GlobalSecondaryIndexes[].join(`":"`, [IndexName, join(`":"`, KeySchema[].AttributeName)]) || `[]`))]' \
		--output text) || return 1
	want_idx=$(tr ' ' '\n' <<<"$indexes" | sort | paste -s -d ' ')
	if [ "$have" != "$keys	$want_idx" ]; then
		echo "aws_tables: table $name exists with keys/indexes \"$have\", expected \"$keys	$want_idx\" (docs/AWS.md); left alone" >&2
		touch "$tmp/failed"
	fi
	[ -n "$ttl" ] || return 0
	local ttl_have
	ttl_have=$(ddb describe-time-to-live --table-name "$name" \
		--query 'join(`":"`, [TimeToLiveDescription.TimeToLiveStatus, TimeToLiveDescription.AttributeName || `""`])' --output text) || return 1
	case "$ttl_have" in
	ENABLED:"$ttl" | ENABLING:"$ttl") ;;
	DISABLED:* | DISABLED)
		if [ "$cmd" = create ]; then
			ddb update-time-to-live --table-name "$name" \
				--time-to-live-specification "Enabled=true,AttributeName=$ttl" >/dev/null || return 1
			echo "aws_tables: enabled TTL on $name.$ttl" >&2
		else
			echo "aws_tables: TTL is off on table $name" >&2
			touch "$tmp/failed"
		fi
		;;
	*)
		echo "aws_tables: table $name has TTL \"$ttl_have\", expected on attribute $ttl; left alone" >&2
		touch "$tmp/failed"
		;;
	esac
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The bucket: path-style when an endpoint is set (the CLI does so by itself
# for an IP address endpoint). us-east-1 takes no LocationConstraint.
if ! s3 head-bucket --bucket "$S3_BUCKET_NAME" 2>"$tmp/err"; then
	if ! grep -q -E '404|Not Found|NoSuchBucket' "$tmp/err"; then
		echo "aws_tables: cannot reach bucket $S3_BUCKET_NAME: $(cat "$tmp/err")" >&2
		status=1
	elif [ "$cmd" = check ]; then
		echo "aws_tables: bucket $S3_BUCKET_NAME is missing" >&2
		status=1
	elif [ "$AWS_REGION" = us-east-1 ]; then
		s3 create-bucket --bucket "$S3_BUCKET_NAME" >/dev/null
		echo "aws_tables: created bucket $S3_BUCKET_NAME" >&2
	else
		s3 create-bucket --bucket "$S3_BUCKET_NAME" \
			--create-bucket-configuration "LocationConstraint=$AWS_REGION" >/dev/null
		echo "aws_tables: created bucket $S3_BUCKET_NAME" >&2
	fi
fi

if ! ddb list-tables --query 'TableNames[]' --output text 2>"$tmp/err" | tr '\t' '\n' >"$tmp/tables"; then
	echo "aws_tables: cannot list the tables: $(cat "$tmp/err")" >&2
	exit 1
fi

# Files: file items, their chunk lists, workers, the lease, the cluster id.
table "$DYNAMODB_FILES_TABLE" "pk sk" "by_owner:owner:list_key" "" \
	AttributeName=pk,AttributeType=S AttributeName=sk,AttributeType=S \
	AttributeName=owner,AttributeType=S AttributeName=list_key,AttributeType=S || touch "$tmp/failed" &
# Chunks: one item per chunk with its count, one per replica (worker mode).
table "$DYNAMODB_CHUNKS_TABLE" "pk sk" "by_worker:worker_id:pk garbage:gc:zero_since" "" \
	AttributeName=pk,AttributeType=S AttributeName=sk,AttributeType=S \
	AttributeName=worker_id,AttributeType=S AttributeName=gc,AttributeType=S \
	AttributeName=zero_since,AttributeType=N || touch "$tmp/failed" &
# Sessions: open sessions, their chunks, completed sessions; TTL backstop.
table "$DYNAMODB_SESSIONS_TABLE" "pk sk" "by_expiry:kind:expires_at" ttl \
	AttributeName=pk,AttributeType=S AttributeName=sk,AttributeType=S \
	AttributeName=kind,AttributeType=S AttributeName=expires_at,AttributeType=N || touch "$tmp/failed" &
wait
[ ! -e "$tmp/failed" ] || status=1
exit $status
