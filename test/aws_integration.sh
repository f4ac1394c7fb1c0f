#!/usr/bin/env bash
# test/aws_integration.sh - AWS mode end to end (the seed's entry point):
# uploads small, large and compressible files through the REST API (one
# request and a session), reads them and byte ranges back, checks with the
# aws CLI that the bucket holds one object per distinct chunk (gzip'd ones
# smaller, with their metadata), checks the DynamoDB tables when the
# master's metadata is there, restarts the master and reads everything
# back, deletes and sees the objects go. Prints "N passed, N failed" last
# and exits 1 on any failure.
#
# Without ECHOFS_URL it starts its own: scripts/start_aws.sh --local on
# free ports (the local servers, the bucket and tables, the master) in a
# temporary directory, stopped at the end. With ECHOFS_URL it tests that
# master and needs JWT_SECRET (or ECHOFS_TOKEN) and the AWS variables the
# master runs with (the bucket and endpoints: `set -a; . DIR/env; set +a`
# after start_aws.sh, which also gives ECHOFS_AWS_DIR so the master can be
# restarted). ECHOFS_MASTER_RESTART, a shell command that restarts that
# master and returns once it did (test/docker.sh: `compose restart
# master`), is used instead where there is no start_aws.sh state; with
# neither, the restart check is skipped, and says so. ECHOFS_GC_WAIT_S
# (default 60) bounds the wait for a running master's collector.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${ECHOFS_BIN_DIR:-$ROOT/bin}
PY=/usr/bin/python3
# No "| head": under pipefail a reader that exits early can kill the
# writer with SIGPIPE (exit 141, no message), as CI saw once.
AWS_CLI=${AWS_CLI:-$(command -v /usr/bin/aws || command -v aws || true)}

passed=0
failed=0
skipped=0
step() { printf '\n== %s\n' "$*"; }
ok() { passed=$((passed + 1)); printf '   ok: %s\n' "$*"; }
bad() { failed=$((failed + 1)); printf '   FAILED: %s\n' "$*" >&2; }
skip() { skipped=$((skipped + 1)); printf '   skipped: %s\n' "$*"; }
check() { # check DESCRIPTION COMMAND...: ok when the command succeeds
	local what=$1
	shift
	if "$@"; then ok "$what"; else bad "$what"; fi
}
json() { $PY -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
summary() {
	printf '\n%d passed, %d failed' "$passed" "$failed"
	[ "$skipped" -gt 0 ] && printf ' (%d skipped)' "$skipped"
	printf '\n'
}

WORK=$(mktemp -d)
own_pid=""
own_dir=""
cleanup() {
	if [ -n "$own_pid" ]; then
		kill "$own_pid" 2>/dev/null || true
		wait "$own_pid" 2>/dev/null || true
	fi
	rm -rf "$WORK"
	if [ -n "$own_dir" ] && [ "$failed" -eq 0 ]; then
		rm -rf "$own_dir" "$own_dir.log"
	elif [ -n "$own_dir" ]; then
		echo "aws_integration: logs kept in $own_dir ($own_dir.log)" >&2
	fi
}
trap cleanup EXIT

if [ -z "$AWS_CLI" ]; then
	echo "aws_integration: the aws CLI is missing (Debian: awscli; scripts/install-deps.sh)" >&2
	bad "the aws CLI is installed"
	summary
	exit 1
fi

if [ -z "${ECHOFS_URL:-}" ]; then
	step "starting AWS mode on the local servers (scripts/start_aws.sh --local)"
	[ -x "$BIN/echofs-master" ] || make -s -C "$ROOT" all
	own_dir=$(mktemp -d "${TMPDIR:-/tmp}/echofs-aws-it.XXXXXX")
	# Free ports whatever aws_test_config.sh said: CI runs this beside
	# other jobs, and the fixed 8000/4568 may be taken.
	(
		unset ECHOFS_URL DATABASE_URL DATA_DIR JWT_SECRET CLUSTER_SECRET
		export AWS_LOCAL_DYNAMODB_PORT=0 AWS_LOCAL_S3_PORT=0
		export MASTER_PORT
		MASTER_PORT=$(free_port)
		export GRPC_PORT=0 # no workers in AWS mode; 8090 may be taken
		export MASTER_HOST=127.0.0.1 GC_GRACE_MS=2000 CHUNK_SIZE=1048576 LOG_LEVEL=${LOG_LEVEL:-info}
		export S3_BUCKET_NAME=${S3_BUCKET_NAME:-echofs-chunks}
		exec "$ROOT/scripts/start_aws.sh" --local --dir "$own_dir"
	) >"$WORK/start_aws.out" 2>"$own_dir.log" &
	own_pid=$!
	for _ in $(seq 1 1200); do
		[ -f "$own_dir/env" ] && break
		if ! kill -0 "$own_pid" 2>/dev/null; then break; fi
		sleep 0.1
	done
	if [ ! -f "$own_dir/env" ]; then
		tail -n 30 "$own_dir.log" >&2
		bad "start_aws.sh --local started the local servers and the master"
		summary
		exit 1
	fi
	ok "start_aws.sh --local started the local servers and the master ($own_dir)"
	set -a
	# shellcheck source=/dev/null
	. "$own_dir/env"
	set +a
	gc_wait_s=40
else
	# A master of someone else's: its collector has GC_GRACE_MS (10 s
	# by default) + 30 s to delete.
	gc_wait_s=${ECHOFS_GC_WAIT_S:-60}
fi
U=$ECHOFS_URL
TOKEN=${ECHOFS_TOKEN:-}
if [ -z "$TOKEN" ]; then
	if [ -z "${JWT_SECRET:-}" ]; then
		echo "aws_integration: ECHOFS_URL is set: set ECHOFS_TOKEN or JWT_SECRET too" >&2
		exit 2
	fi
	TOKEN=$(JWT_SECRET=$JWT_SECRET "$BIN/echofs" token --user "aws-it-$$")
fi
AUTH="Authorization: Bearer $TOKEN"
BUCKET=${S3_BUCKET_NAME:?S3_BUCKET_NAME is not set (source ./aws_test_config.sh)}
s3api() { "$AWS_CLI" s3api ${AWS_ENDPOINT_URL_S3:+--endpoint-url "$AWS_ENDPOINT_URL_S3"} "$@"; }
ddb() { "$AWS_CLI" dynamodb ${AWS_ENDPOINT_URL_DYNAMODB:+--endpoint-url "$AWS_ENDPOINT_URL_DYNAMODB"} "$@"; }
export AWS_DEFAULT_REGION=${AWS_REGION:-us-east-1}

step "GET /api/v1/health"
curl -s "$U/api/v1/health" >"$WORK/health.json"
echo "   $(cat "$WORK/health.json")"
chunk_backend=$(json 'd.get("chunk_backend","")' <"$WORK/health.json" 2>/dev/null)
meta_backend=$(json 'd.get("metadata_backend","")' <"$WORK/health.json" 2>/dev/null)
check "the chunks are in S3 (chunk_backend s3)" [ "$chunk_backend" = s3 ]
check "the bucket answers (status ok, chunk_store ok)" \
	[ "$(json 'd["status"] + "/" + d.get("chunk_store","")' <"$WORK/health.json")" = ok/ok ]
echo "   metadata backend: $meta_backend"

# Files: small, large (several chunks), compressible, and a session upload.
# The text gets a random first line so that a shared bucket holds no copy
# of it from an earlier run.
head -c 1000 /dev/urandom >"$WORK/small.bin"
head -c $((3 * 1048576 + 12345)) /dev/urandom >"$WORK/large.bin"
{
	echo "run $$ $(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
	yes "EchoFS keeps its chunks in S3 in AWS mode; this line compresses well." | head -c $((2 * 1048576 + 777)) || true
} >"$WORK/text.txt"
head -c $((2 * 1048576 + 99)) /dev/urandom >"$WORK/session.bin"

upload() { # upload NAME FILE -> file id on stdout
	curl -s -H "$AUTH" --data-binary @"$2" "$U/api/v1/files/upload?name=$1" >"$WORK/$1.json"
	json 'd["file_id"]' <"$WORK/$1.json" 2>/dev/null
}
same_download() { # same_download FILE_ID FILE
	curl -s -f -H "$AUTH" "$U/api/v1/files/$1/download" -o "$WORK/got" && cmp -s "$WORK/got" "$2"
}
declare -A IDS
step "POST /api/v1/files/upload: small, large and compressible files"
for f in small.bin large.bin text.txt; do
	id=$(upload "$f" "$WORK/$f")
	if [ -n "$id" ]; then
		IDS[$f]=$id
		ok "$f stored as $id ($(json 'd["chunk_count"]' <"$WORK/$f.json") chunks, $(json 'd["stored_bytes"]' <"$WORK/$f.json") bytes stored)"
	else
		bad "$f stored: $(cat "$WORK/$f.json")"
	fi
done
stored=$(json 'd["stored_bytes"]' <"$WORK/text.txt.json" 2>/dev/null || echo 0)
smaller=false
[ "${stored:-0}" -gt 0 ] && [ "${stored:-0}" -lt "$(stat -c %s "$WORK/text.txt")" ] && smaller=true
check "the text file is stored compressed ($stored of $(stat -c %s "$WORK/text.txt") bytes)" $smaller

step "a session upload: init, three chunks, complete"
curl -s -H "$AUTH" -H 'Content-Type: application/json' \
	-d "{\"name\": \"session.bin\", \"size\": $(stat -c %s "$WORK/session.bin"), \"chunk_size\": 1048576}" \
	"$U/api/v1/files/upload/init" >"$WORK/init.json"
SID=$(json 'd["session_id"]' <"$WORK/init.json" 2>/dev/null)
for i in 0 1 2; do
	dd if="$WORK/session.bin" of="$WORK/part$i" bs=1048576 skip=$i count=1 status=none
	code=$(curl -s -o "$WORK/chunk$i.json" -w '%{http_code}' -H "$AUTH" \
		-H 'Content-Type: application/octet-stream' --data-binary @"$WORK/part$i" \
		"$U/api/v1/files/upload/chunk?session_id=$SID&chunk_index=$i")
	[ "$code" = 200 ] || bad "chunk $i of the session: $code $(cat "$WORK/chunk$i.json")"
done
if [ "$meta_backend" = dynamodb ]; then
	out=$(ddb get-item --table-name "$DYNAMODB_SESSIONS_TABLE" --consistent-read \
		--key "{\"pk\": {\"S\": \"SESSION#$SID\"}, \"sk\": {\"S\": \"META\"}}" 2>&1)
	check "the sessions table holds the open session" grep -q '"Item"' <<<"$out"
fi
curl -s -H "$AUTH" -H 'Content-Type: application/json' -d "{\"session_id\": \"$SID\"}" \
	"$U/api/v1/files/upload/complete" >"$WORK/complete.json"
id=$(json 'd["file_id"]' <"$WORK/complete.json" 2>/dev/null)
if [ -n "$id" ]; then
	IDS[session.bin]=$id
	ok "the session completed into $id"
else
	bad "the session completed: $(cat "$WORK/complete.json")"
fi

step "downloads, byte-identical, and ranges"
for f in "${!IDS[@]}"; do
	check "$f downloads byte-identical" same_download "${IDS[$f]}" "$WORK/$f"
done
range_ok() { # range_ok FILE FIRST LAST
	curl -s -H "$AUTH" -H "Range: bytes=$2-$3" "$U/api/v1/files/${IDS[$1]}/download" -o "$WORK/range" &&
		cmp -s "$WORK/range" <(tail -c +$(($2 + 1)) "$WORK/$1" | head -c $(($3 - $2 + 1)))
}
check "a range across the first chunk boundary of large.bin" range_ok large.bin 1048000 1049999
check "a range inside the last chunk of text.txt" range_ok text.txt 2097200 2097300

step "the bucket (aws s3api, endpoint ${AWS_ENDPOINT_URL_S3:-the AWS default})"
declare -A CHUNKS
for f in "${!IDS[@]}"; do
	curl -s -H "$AUTH" "$U/api/v1/files/${IDS[$f]}" >"$WORK/meta.json"
	while read -r cid comp size ssize; do
		CHUNKS[$cid]="$comp $size $ssize"
	done < <(json '"\n".join("%s %d %d %d" % (c["chunk_id"], c["compressed"], c["size"], c["stored_size"]) for c in d["chunks"])' <"$WORK/meta.json")
done
list_keys() {
	s3api list-objects-v2 --bucket "$BUCKET" --prefix chunks/ --output json >"$WORK/list.json" 2>"$WORK/list.err" || return 1
	# An empty listing is no output at all from aws CLI 2.
	grep -q . "$WORK/list.json" || return 0
	json '"\n".join(sorted(o["Key"] for o in d.get("Contents", [])))' <"$WORK/list.json"
}
keys=$(list_keys) || bad "list-objects-v2: $(cat "$WORK/list.err")"
# One object per chunk, a generation of it: chunks/<2 hex>/<id>.<16 hex>
# (docs/OPERATIONS.md, "Object keys").
key_of() { grep -x "chunks/${1:0:2}/$1\.[0-9a-f]\{16\}" <<<"$keys"; }
missing=0
for cid in "${!CHUNKS[@]}"; do
	[ "$(key_of "$cid" | grep -c .)" = 1 ] || missing=$((missing + 1))
done
check "every one of the ${#CHUNKS[@]} distinct chunks is one object chunks/<2 hex>/<id>.<generation> ($missing missing)" [ "$missing" -eq 0 ]
gz=""
for cid in "${!CHUNKS[@]}"; do
	read -r comp size ssize <<<"${CHUNKS[$cid]}"
	[ "$comp" = 1 ] && gz=$cid && break
done
if [ -n "$gz" ]; then
	s3api head-object --bucket "$BUCKET" --key "$(key_of "$gz" | head -1)" --output json >"$WORK/head.json" 2>&1
	read -r comp size ssize <<<"${CHUNKS[$gz]}"
	check "a text chunk's object is gzip'd ($(json 'd["ContentLength"]' <"$WORK/head.json" 2>/dev/null) bytes for $size), with its encoding and CRC32C" \
		[ "$(json '"%s %s %d" % (d["Metadata"].get("encoding"), len(d["Metadata"].get("crc32c", "")), d["ContentLength"])' <"$WORK/head.json" 2>/dev/null)" = "gzip 8 $ssize" ]
else
	bad "a compressed chunk among the text file's"
fi
count_before=$(grep -c . <<<"$keys")
id=$(upload again.bin "$WORK/large.bin")
keys2=$(list_keys) || keys2=""
same=false
[ "$count_before" -gt 0 ] && [ "$keys" = "$keys2" ] && same=true
check "the same content again adds no object ($count_before before, $(grep -c . <<<"$keys2") after)" $same
[ -n "$id" ] && IDS[again.bin]=$id && cp "$WORK/large.bin" "$WORK/again.bin"

step "the metadata tables"
if [ "$meta_backend" = dynamodb ]; then
	out=$(ddb get-item --table-name "$DYNAMODB_FILES_TABLE" --consistent-read \
		--key "{\"pk\": {\"S\": \"FILE#${IDS[large.bin]}\"}, \"sk\": {\"S\": \"META\"}}" 2>&1)
	check "the files table holds large.bin" grep -q '"Item"' <<<"$out"
	out=$(ddb get-item --table-name "$DYNAMODB_CHUNKS_TABLE" --consistent-read \
		--key "{\"pk\": {\"S\": \"$gz\"}, \"sk\": {\"S\": \"META\"}}" 2>&1)
	check "the chunks table holds a text chunk with its reference count" grep -q '"refcount"' <<<"$out"
else
	skip "the DynamoDB table checks: the master's metadata is ${meta_backend:-unknown} (SQL), not DynamoDB"
fi

step "the master restarted reads everything back"
if [ -n "${ECHOFS_AWS_DIR:-}" ] && [ -f "$ECHOFS_AWS_DIR/start_aws.pid" ]; then
	old=$(cat "$ECHOFS_AWS_DIR/master.pid")
	kill -HUP "$(cat "$ECHOFS_AWS_DIR/start_aws.pid")"
	for _ in $(seq 1 300); do
		new=$(cat "$ECHOFS_AWS_DIR/master.pid" 2>/dev/null)
		[ -n "$new" ] && [ "$new" != "$old" ] && curl -s -o /dev/null -m 2 "$U/api/v1/health" && break
		sleep 0.1
	done
	restarted=false
	[ -n "$new" ] && [ "$new" != "$old" ] && restarted=true
	check "the master restarted (pid $old -> ${new:-none})" $restarted
	for f in "${!IDS[@]}"; do
		check "$f reads back after the restart" same_download "${IDS[$f]}" "$WORK/$f"
	done
elif [ -n "${ECHOFS_MASTER_RESTART:-}" ]; then
	# The command says whether it restarted; the master must then answer
	# its health within 60 s and serve every file again.
	restarted=false
	sh -c "$ECHOFS_MASTER_RESTART" >"$WORK/restart.out" 2>&1 && restarted=true
	check "ECHOFS_MASTER_RESTART restarted the master ($(tail -n 1 "$WORK/restart.out"))" $restarted
	for _ in $(seq 1 600); do
		[ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$U/api/v1/health")" = 200 ] && break
		sleep 0.1
	done
	check "the master answers its health again after the restart" \
		[ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$U/api/v1/health")" = 200 ]
	for f in "${!IDS[@]}"; do
		check "$f reads back after the restart" same_download "${IDS[$f]}" "$WORK/$f"
	done
else
	skip "the restart: no start_aws.sh state (ECHOFS_AWS_DIR) nor ECHOFS_MASTER_RESTART to restart the master through"
fi

step "delete every file; the collector deletes the objects"
for f in "${!IDS[@]}"; do
	code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "$AUTH" "$U/api/v1/files/${IDS[$f]}")
	check "DELETE $f: 204" [ "$code" = 204 ]
done
left=${#CHUNKS[@]}
for _ in $(seq 1 "$gc_wait_s"); do
	left=${#CHUNKS[@]}
	keys=$(list_keys) || { sleep 1; continue; } # an unreadable listing proves nothing
	left=0
	for cid in "${!CHUNKS[@]}"; do
		grep -q "^chunks/${cid:0:2}/$cid" <<<"$keys" && left=$((left + 1))
	done
	[ "$left" -eq 0 ] && break
	sleep 1
done
check "every object of the deleted files is gone ($left left after at most $gc_wait_s s)" [ "$left" -eq 0 ]
code=$(curl -s -o /dev/null -w '%{http_code}' -H "$AUTH" "$U/api/v1/files/${IDS[small.bin]:-none}")
check "a deleted file answers 404" [ "$code" = 404 ]

summary
[ "$failed" -eq 0 ]
