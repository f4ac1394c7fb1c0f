#!/usr/bin/env bash
# s3_rechunk.sh - a multipart Complete of misaligned parts (re-chunked:
# copied once) against an aligned one (joined by reference), on a
# throw-away cluster like bench/run.sh's (1 master with S3_PORT + 3
# workers, replication 3, SQLite, CHUNK_SIZE 1 MiB): bench/s3_rechunk.py's
# rounds, report to bench/results/s3-rechunk.txt.
#
# Environment: BENCH_ROUNDS (3), BENCH_RECHUNK_MIB (200), ECHOFS_BIN_DIR
# (bin/), BENCH_TMPDIR, BENCH_KEEP=1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

ROUNDS=${BENCH_ROUNDS:-3}
MIB=${BENCH_RECHUNK_MIB:-200}
OUT=$ROOT/bench/results/s3-rechunk.txt
REGION=${AWS_REGION:-us-east-1}
export WORKER_COUNT=3 REPLICATION_FACTOR=3 LOG_LEVEL=${BENCH_LOG_LEVEL:-warn}
unset CHUNK_SIZE DATABASE_URL REDIS_ADDR

[ -x "${ECHOFS_BIN_DIR:-$ROOT/bin}/echofs-master" ] || bench_die "echofs-master is missing: run \`make\`"
BENCH_BIN=${ECHOFS_BIN_DIR:-$ROOT/bin}
export BENCH_BIN
tmp_parent=${BENCH_TMPDIR:-$ROOT/build}
mkdir -p "$tmp_parent" "$(dirname "$OUT")"
WORK=$(mktemp -d "$tmp_parent/bench-s3rechunk.XXXXXX")
bench_install_traps
S3_PORT=$(bench_pick_ports 1) || bench_die "no free port for the S3 listener"
export S3_PORT
bench_cluster_start "$WORK/cluster"
S3_URL="http://127.0.0.1:$S3_PORT"

curl -sS -X POST -H "Authorization: Bearer $TOKEN" -o "$WORK/key.json" "$MASTER_URL/api/v1/keys"
KEY_ID=$(/usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["access_key_id"])' <"$WORK/key.json")
SECRET=$(/usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["secret_access_key"])' <"$WORK/key.json")
sig=(-sS --aws-sigv4 "aws:amz:$REGION:s3" --user "$KEY_ID:$SECRET" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD')
code=$(curl "${sig[@]}" -X PUT -o /dev/null -w '%{http_code}' "$S3_URL/echofs-bench")
[ "$code" = 200 ] || bench_die "CreateBucket: HTTP $code"

{
	echo "# s3_rechunk $(date -u +%FT%TZ): $MIB MiB objects, $ROUNDS rounds, 3 workers, RF 3, CHUNK_SIZE 1 MiB"
	/usr/bin/python3 "$ROOT/bench/s3_rechunk.py" --endpoint "$S3_URL" --key-id "$KEY_ID" \
		--secret "$SECRET" --region "$REGION" --bucket echofs-bench --mib "$MIB" \
		--rounds "$ROUNDS" || bench_die "bench/s3_rechunk.py failed"
} | tee "$OUT"
bench_alive "$MASTER_PID" "${WORKER_PIDS[@]}"
bench_stop "$MASTER_PID" "${WORKER_PIDS[@]}"
