#!/usr/bin/env bash
# s3_large.sh - large S3 PUT and GET against their REST twins, interleaved
# on one cluster, with the cluster's CPU per GiB.
#
# `make bench` runs its large REST transfers first, on a fresh cluster and
# a clean page cache, and the S3 ones minutes later, after both large
# REST uploads and the 4 KiB phases have left the disk busy writing back:
# their ratio mixes the two protocols with the order they ran in. This
# script starts a throw-away cluster like bench/run.sh (1 master with
# S3_PORT + 3 workers, replication 3, SQLite), takes an access key and a
# bucket, then runs BENCH_ROUNDS rounds of: REST upload (curl -T, one
# request), S3 PUT (curl --aws-sigv4, UNSIGNED-PAYLOAD, streaming -T: the
# same client), REST download, S3 GET, each of a fresh random file of
# BENCH_LARGE_MIB MiB (other bytes every time: no deduplication), so every
# S3 figure has a REST figure taken seconds before it. For every transfer
# it prints MiB/s, the ratio to the REST twin of the same round, and the
# CPU seconds per GiB of the master and of the three workers
# (/proc/PID/stat). The medians of the rounds close the report, which
# also goes to bench/results/s3-large.txt.
#
# BENCH_BOTO3=1 adds to each round, after the curl S3 PUT, a boto3 PUT
# (bench/s3_large.py --put-only: put_object of one more fresh file, the
# payload's SHA-256 signed over plain HTTP as boto3 does, so the master
# verifies it), reported as op "b3put" against the round's REST upload;
# its MiB/s counts the client's own pass over the file before it sends,
# its CPU columns are the daemons' only.
#
# Environment: BENCH_ROUNDS (3), BENCH_LARGE_MIB (64), ECHOFS_BIN_DIR
# (bin/, as bench/s3_small.sh), BENCH_PERF=1 (perf record the master
# during round 1's S3 PUT and REST upload: flat profiles to
# bench/results/s3-large-{put,up}.perf.txt; needs perf), BENCH_TMPDIR,
# BENCH_KEEP=1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

ROUNDS=${BENCH_ROUNDS:-3}
MIB=${BENCH_LARGE_MIB:-64}
BYTES=$((MIB * 1048576))
BIN=${ECHOFS_BIN_DIR:-$ROOT/bin}
OUT=$ROOT/bench/results/s3-large.txt
LOADGEN=$ROOT/build/bench/loadgen
REGION=${AWS_REGION:-us-east-1}
export WORKER_COUNT=3 REPLICATION_FACTOR=3 LOG_LEVEL=${BENCH_LOG_LEVEL:-warn}
unset CHUNK_SIZE DATABASE_URL REDIS_ADDR

[ -x "$BIN/echofs-master" ] || bench_die "$BIN/echofs-master is missing: run \`make\`"
make --no-print-directory -s -C "$ROOT/bench"
tmp_parent=${BENCH_TMPDIR:-$ROOT/build}
mkdir -p "$tmp_parent" "$(dirname "$OUT")"
WORK=$(mktemp -d "$tmp_parent/bench-s3large.XXXXXX")
bench_install_traps
avail_mib=$(df -Pm "$WORK" | awk 'NR == 2 { print $4 }')
need_mib=$((MIB * (3 + 3 * 3) * ROUNDS + 512))
[ "$avail_mib" -ge "$need_mib" ] || bench_die "$WORK has $avail_mib MiB free, the run needs about $need_mib MiB"

# bench_cluster_start runs $ROOT/bin/*: a copy of ROOT whose bin is $BIN.
if [ "$BIN" != "$ROOT/bin" ]; then
	mkdir -p "$WORK/root"
	ln -s "$BIN" "$WORK/root/bin"
	ROOT_SAVED=$ROOT
	ROOT=$WORK/root
fi
S3_PORT=$(bench_pick_ports 1) || bench_die "no free port for the S3 listener"
export S3_PORT
bench_cluster_start "$WORK/cluster"
ROOT=${ROOT_SAVED:-$ROOT}
S3_URL="http://127.0.0.1:$S3_PORT"
CLK_TCK=$(getconf CLK_TCK)

curl -sS -X POST -H "Authorization: Bearer $TOKEN" -o "$WORK/key.json" "$MASTER_URL/api/v1/keys"
KEY_ID=$(/usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["access_key_id"])' <"$WORK/key.json")
SECRET=$(/usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["secret_access_key"])' <"$WORK/key.json")
sig=(-sS --aws-sigv4 "aws:amz:$REGION:s3" --user "$KEY_ID:$SECRET" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD')
code=$(curl "${sig[@]}" -X PUT -o /dev/null -w '%{http_code}' "$S3_URL/echofs-bench")
[ "$code" = 200 ] || bench_die "CreateBucket: HTTP $code"

# transfer NAME EXPECT-CODE CURL-ARGS... - one curl transfer; prints
# "MiB/s master_cpu_s_per_gib workers_cpu_s_per_gib".
transfer() {
	local name=$1 want=$2 m0 m1 w0 w1 out code secs perf_pid=
	shift 2
	if [ "${BENCH_PERF:-0}" = 1 ] && [ "$round" = 1 ] && { [ "$name" = put ] || [ "$name" = up ]; }; then
		perf record -q -e cpu-clock -F 2000 -p "$MASTER_PID" -o "$WORK/$name.perf" 2>/dev/null &
		perf_pid=$!
		sleep 0.3
	fi
	m0=$(bench_cpu_ticks "$MASTER_PID")
	w0=$(bench_cpu_ticks "${WORKER_PIDS[@]}")
	out=$(curl "$@" -o "$WORK/$name.out" -w '%{http_code} %{time_total}')
	m1=$(bench_cpu_ticks "$MASTER_PID")
	w1=$(bench_cpu_ticks "${WORKER_PIDS[@]}")
	if [ -n "$perf_pid" ]; then
		kill -INT "$perf_pid" && wait "$perf_pid" || true
		{
			perf report -i "$WORK/$name.perf" --stdio --no-children --sort dso -g none \
				--percent-limit 0.5 2>/dev/null | grep -v '^#' | grep -v '^$'
			echo "# by thread (upload-md5: the S3 body's MD5, upload-helper: chunk stores)"
			perf report -i "$WORK/$name.perf" --stdio --no-children --sort comm -g none \
				--percent-limit 0.5 2>/dev/null | grep -v '^#' | grep -v '^$'
			echo "# by symbol"
			perf report -i "$WORK/$name.perf" --stdio --no-children --sort dso,symbol -g none \
				--percent-limit 0.7 2>/dev/null | grep -v '^#' | grep -v '^$'
		} >"$ROOT/bench/results/s3-large-$name.perf.txt" || true
	fi
	bench_alive "$MASTER_PID" "${WORKER_PIDS[@]}"
	read -r code secs <<<"$out"
	[ "$code" = "$want" ] || bench_die "$name: HTTP $code: $(head -c 300 "$WORK/$name.out")"
	awk -v b="$BYTES" -v s="$secs" -v m=$((m1 - m0)) -v w=$((w1 - w0)) -v hz="$CLK_TCK" \
		'BEGIN { g = b / 1073741824; printf "%.1f %.2f %.2f\n", b / 1048576 / s, m / hz / g, w / hz / g }'
}

# boto_put FILE KEY - the boto3 PUT of BENCH_BOTO3; prints as transfer.
boto_put() {
	local m0 m1 w0 w1 json
	m0=$(bench_cpu_ticks "$MASTER_PID")
	w0=$(bench_cpu_ticks "${WORKER_PIDS[@]}")
	json=$(/usr/bin/python3 "$ROOT/bench/s3_large.py" --endpoint "$S3_URL" --key-id "$KEY_ID" \
		--secret "$SECRET" --region "$REGION" --bucket echofs-bench --key "$2" --file "$1" \
		--put-only) || bench_die "the boto3 PUT of $2 failed"
	m1=$(bench_cpu_ticks "$MASTER_PID")
	w1=$(bench_cpu_ticks "${WORKER_PIDS[@]}")
	bench_alive "$MASTER_PID" "${WORKER_PIDS[@]}"
	/usr/bin/python3 -c 'import json, sys; print(json.loads(sys.argv[1])["put_mib_s"])' "$json" |
		awk -v b="$BYTES" -v m=$((m1 - m0)) -v w=$((w1 - w0)) -v hz="$CLK_TCK" \
			'{ g = b / 1073741824; printf "%.1f %.2f %.2f\n", $1, m / hz / g, w / hz / g }'
}

{
	echo "# s3_large.sh $(date -u +%FT%TZ) $(git -C "$ROOT" rev-parse --short HEAD) bin=$BIN"
	echo "# $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); ${MIB} MiB random files, curl for both APIs"
	printf '%-5s %-6s %9s %9s %7s %13s %13s %13s %13s\n' round op s3_mib_s rest_mib_s ratio \
		s3_master_s rest_master_s s3_workers_s rest_workers_s
} | tee "$OUT"
auth=(-sS -H "Authorization: Bearer $TOKEN")
for round in $(seq 1 "$ROUNDS"); do
	"$LOADGEN" gen --kind random --size "$BYTES" --seed $((round * 2 + 100)) >"$WORK/up.bin"
	"$LOADGEN" gen --kind random --size "$BYTES" --seed $((round * 2 + 101)) >"$WORK/put.bin"
	sync "$WORK/up.bin" "$WORK/put.bin"
	read -r up_r up_m up_w < <(transfer up 201 "${auth[@]}" -X POST -T "$WORK/up.bin" \
		-H 'Content-Type: application/octet-stream' -H 'Expect:' \
		"$MASTER_URL/api/v1/files/upload?name=large-$round")
	file_id=$(sed -n 's/.*"file_id": *"\([0-9a-f]*\)".*/\1/p' "$WORK/up.out")
	read -r put_r put_m put_w < <(transfer put 200 "${sig[@]}" -T "$WORK/put.bin" \
		-H 'Content-Type: application/octet-stream' "$S3_URL/echofs-bench/large-$round")
	if [ "${BENCH_BOTO3:-0}" = 1 ]; then
		"$LOADGEN" gen --kind random --size "$BYTES" --seed $((round * 2 + 1001)) >"$WORK/b3.bin"
		sync "$WORK/b3.bin"
		read -r b3_r b3_m b3_w < <(boto_put "$WORK/b3.bin" "large-b3-$round")
		rm -f "$WORK/b3.bin"
	fi
	read -r down_r down_m down_w < <(transfer down 200 "${auth[@]}" \
		"$MASTER_URL/api/v1/files/$file_id/download")
	read -r get_r get_m get_w < <(transfer get 200 "${sig[@]}" "$S3_URL/echofs-bench/large-$round")
	[ "$(stat -c %s "$WORK/get.out")" = "$BYTES" ] || bench_die "the S3 GET of round $round is short"
	cmp -s "$WORK/get.out" "$WORK/put.bin" || bench_die "the S3 GET of round $round returned other bytes"
	rm -f "$WORK/up.bin" "$WORK/put.bin" "$WORK/down.out" "$WORK/get.out"
	ops="put get"
	[ "${BENCH_BOTO3:-0}" != 1 ] || ops="put b3put get"
	for op in $ops; do
		case $op in
		put) set -- "$put_r" "$up_r" "$put_m" "$up_m" "$put_w" "$up_w" ;;
		b3put) set -- "$b3_r" "$up_r" "$b3_m" "$up_m" "$b3_w" "$up_w" ;;
		*) set -- "$get_r" "$down_r" "$get_m" "$down_m" "$get_w" "$down_w" ;;
		esac
		printf '%-5s %-6s %9s %9s %7s %13s %13s %13s %13s\n' "$round" "$op" "$1" "$2" \
			"$(awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }')" "$3" "$4" "$5" "$6" | tee -a "$OUT"
	done
done
awk '!/^#/ && $1 ~ /^[0-9]+$/ { r[$2] = r[$2] " " $5; a[$2] = a[$2] " " $6; b[$2] = b[$2] " " $7; c[$2] = c[$2] " " $8; d[$2] = d[$2] " " $9 }
function med(list,   x, n, i, j, v) { n = split(list, x, " ");
	for (i = 2; i <= n; i++) { v = x[i]; for (j = i - 1; j >= 1 && x[j] > v; j--) x[j + 1] = x[j]; x[j + 1] = v }
	return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2 }
END { for (op in r) printf "median %-4s ratio %.2f; CPU s/GiB: master S3 %.2f REST %.2f, workers S3 %.2f REST %.2f\n", op, med(r[op]), med(a[op]), med(b[op]), med(c[op]), med(d[op]) }' \
	"$OUT" | sort | tee -a "$OUT"
bench_stop "$MASTER_PID" "${WORKER_PIDS[@]}"
