#!/usr/bin/env bash
# s3_small.sh - the 4 KiB S3 PUT and GET rates against their REST twins,
# interleaved on one cluster, with the master's CPU per request.
#
# The 4 KiB lines of `make bench` run each operation once, minutes apart
# from its REST twin; on a shared, noisy machine their ratio swings by 2x.
# This script starts a throw-away cluster like bench/run.sh (1 master with
# S3_PORT + 3 workers, replication 3, SQLite), takes an access key and a
# bucket, then runs BENCH_ROUNDS rounds of: REST 4 KiB uploads, S3 4 KiB
# PUTs, REST downloads, S3 GETs (loadgen, concurrency 16, BENCH_SECONDS
# each), so that each S3 figure has a REST figure taken seconds before it.
# For every phase it prints the rate, the ratio to the REST twin of the
# same round, the master's CPU microseconds per request (utime+stime
# from /proc/PID/stat around the phase) and the load generator's own
# (/usr/bin/time): on a 2-CPU machine the client's CPU is taken from the
# server, and libcurl's SigV4 signing is part of the S3 client's. The medians of the rounds close
# the report, which also goes to bench/results/s3-small.txt.
#
# Environment: BENCH_ROUNDS (3), BENCH_SECONDS (5), BENCH_CONCURRENCY
# (16), ECHOFS_BIN_DIR (bin/: the daemons to measure; point it at a copy
# of older binaries to compare two builds in the same session),
# BENCH_SYSCALLS=1 (before round 1's S3 GETs, one extra phase of each
# operation under `perf stat`: the master's fcntl and pread64 calls per
# download and GET, its fdatasync, fsync, pwrite64 and fcntl calls per
# upload and PUT (SQLite's commits), printed after the table; needs perf),
# BENCH_S3_SIGNER (curl: libcurl's CURLOPT_AWS_SIGV4, the key derived for
# every request, as make bench; cached: loadgen's own signer, the derived
# key made once per day as the AWS SDKs keep it: less client CPU per
# request, the same signature checked by the master),
# BENCH_PERF=1 (perf record the master during round 1's S3 GETs: its
# flat profile goes to bench/results/s3-small-get.perf.txt; needs perf),
# BENCH_TMPDIR, BENCH_KEEP=1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECONDS:-5}
CONC=${BENCH_CONCURRENCY:-16}
SIZE=4096
BIN=${ECHOFS_BIN_DIR:-$ROOT/bin}
OUT=$ROOT/bench/results/s3-small.txt
LOADGEN=$ROOT/build/bench/loadgen
REGION=${AWS_REGION:-us-east-1}
SIGNER=${BENCH_S3_SIGNER:-curl}
case "$SIGNER" in curl | cached) ;; *) bench_die "BENCH_S3_SIGNER must be curl or cached" ;; esac
export WORKER_COUNT=3 REPLICATION_FACTOR=3 LOG_LEVEL=${BENCH_LOG_LEVEL:-warn}
unset CHUNK_SIZE DATABASE_URL REDIS_ADDR

[ -x "$BIN/echofs-master" ] || bench_die "$BIN/echofs-master is missing: run \`make\`"
make --no-print-directory -s -C "$ROOT/bench"
tmp_parent=${BENCH_TMPDIR:-$ROOT/build}
mkdir -p "$tmp_parent" "$(dirname "$OUT")"
WORK=$(mktemp -d "$tmp_parent/bench-s3small.XXXXXX")
bench_install_traps

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
code=$(curl -sS --aws-sigv4 "aws:amz:$REGION:s3" --user "$KEY_ID:$SECRET" \
	-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -X PUT -o /dev/null -w '%{http_code}' "$S3_URL/echofs-bench")
[ "$code" = 200 ] || bench_die "CreateBucket: HTTP $code"

# phase NAME LOADGEN-ARGS... - runs loadgen, prints "ops_per_s master_us_per_op".
phase() {
	local name=$1 before after
	shift
	before=$(bench_cpu_ticks "$MASTER_PID")
	/usr/bin/time -f '%U %S' -o "$WORK/$name.time" \
		"$LOADGEN" "$@" --size "$SIZE" --concurrency "$CONC" --seconds "$SECS" >"$WORK/$name.json" ||
		bench_die "loadgen $name failed"
	after=$(bench_cpu_ticks "$MASTER_PID")
	bench_alive "$MASTER_PID" "${WORKER_PIDS[@]}"
	/usr/bin/python3 - "$WORK/$name.json" $((after - before)) "$CLK_TCK" "$WORK/$name.time" <<'EOF'
import json, sys
lg = json.load(open(sys.argv[1]))
if lg["errors"] or not lg["ops"]:
    sys.exit("loadgen: %d errors, %d ops" % (lg["errors"], lg["ops"]))
us = int(sys.argv[2]) / int(sys.argv[3]) * 1e6 / lg["ops"]
client_us = sum(map(float, open(sys.argv[4]).read().split()[-2:])) * 1e6 / lg["ops"]
print("%.0f %.0f %.0f" % (lg["ops_per_s"], us, client_us))
EOF
}

s3=(--url "$S3_URL" --bucket echofs-bench --s3-user "$KEY_ID:$SECRET" --region "$REGION" --signer "$SIGNER")
rest=(--url "$MASTER_URL" --token "$TOKEN")
{
	echo "# s3_small.sh $(date -u +%FT%TZ) $(git -C "$ROOT" rev-parse --short HEAD) bin=$BIN"
	echo "# $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); ${SECS} s phases, concurrency $CONC, S3 signer $SIGNER"
	printf '%-5s %-12s %10s %10s %8s %14s %14s %14s %14s\n' round op s3_ops_s rest_ops_s ratio s3_master_us rest_master_us s3_client_us rest_client_us
} | tee "$OUT"
rm -f "$OUT.sys"
for round in $(seq 1 "$ROUNDS"); do
	read -r up_ops up_us up_cl < <(phase "up$round" upload "${rest[@]}" --ids-out "$WORK/ids$round.txt")
	read -r put_ops put_us put_cl < <(phase "put$round" s3put "${s3[@]}" --ids-out "$WORK/keys$round.txt")
	read -r down_ops down_us down_cl < <(phase "down$round" download "${rest[@]}" --ids "$WORK/ids$round.txt")
	perf_pid=
	if [ "${BENCH_PERF:-0}" = 1 ] && [ "$round" = 1 ]; then
		perf record -q -e cpu-clock -F 2000 -g -p "$MASTER_PID" -o "$WORK/get.perf" 2>/dev/null &
		perf_pid=$!
	fi
	if [ "${BENCH_SYSCALLS:-0}" = 1 ] && [ "$round" = 1 ]; then
		# Store work per request, which load does not blur: SQLite's
		# locks (fcntl) and page reads (pread64) in the master.
		# Writes: SQLite's commits (synchronous=FULL: an fdatasync of
		# the WAL per group commit) and WAL page writes per upload/PUT.
		for op in up put down get; do
			case $op in
			up | put) events=syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync,syscalls:sys_enter_pwrite64,syscalls:sys_enter_fcntl ;;
			*) events=syscalls:sys_enter_fcntl,syscalls:sys_enter_pread64 ;;
			esac
			perf stat -x, -e "$events" -p "$MASTER_PID" -o "$WORK/$op.stat" &
			stat_pid=$!
			sleep 0.5
			case $op in
			up) phase "sys-up" upload "${rest[@]}" >"$WORK/$op.rate" ;;
			put) phase "sys-put" s3put "${s3[@]}" >"$WORK/$op.rate" ;;
			down) phase "sys-down" download "${rest[@]}" --ids "$WORK/ids$round.txt" >"$WORK/$op.rate" ;;
			get) phase "sys-get" s3get "${s3[@]}" --ids "$WORK/keys$round.txt" >"$WORK/$op.rate" ;;
			esac
			kill -INT "$stat_pid" && wait "$stat_pid" || true
			ops=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ops"])' "$WORK/sys-$op.json")
			awk -F, -v ops="$ops" -v op="$op" '$3 ~ /sys_enter/ { sub(/.*sys_enter_/, "", $3);
				printf "syscalls %-5s %-4s %-9s %.2f per request (%d requests)\n", op == "get" || op == "put" ? "S3" : "REST", op, $3, $1 / ops, ops }' \
				"$WORK/$op.stat" | tee -a "$OUT.sys"
		done
	fi
	read -r get_ops get_us get_cl < <(phase "get$round" s3get "${s3[@]}" --ids "$WORK/keys$round.txt")
	if [ -n "$perf_pid" ]; then
		kill -INT "$perf_pid" && wait "$perf_pid" || true
		perf report -i "$WORK/get.perf" --stdio --no-children --sort symbol -g none \
			--percent-limit 0.7 2>/dev/null | grep -v '^#' | grep -v '^$' >"$ROOT/bench/results/s3-small-get.perf.txt" || true
		{
			echo "# with children: EchoFS's own functions"
			perf report -i "$WORK/get.perf" --stdio --children --sort symbol -g none \
				--percent-limit 1 2>/dev/null | grep -E 'efs_|sql_|s3_|authenticate|sigv4|handle|sqlite3_step|json_'
		} >>"$ROOT/bench/results/s3-small-get.perf.txt" || true
	fi
	for op in put get; do
		if [ $op = put ]; then set -- "$put_ops" "$up_ops" "$put_us" "$up_us" "$put_cl" "$up_cl"; else
			set -- "$get_ops" "$down_ops" "$get_us" "$down_us" "$get_cl" "$down_cl"; fi
		printf '%-5s %-12s %10s %10s %8s %14s %14s %14s %14s\n' "$round" "4KiB-$op" "$1" "$2" \
			"$(awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }')" "$3" "$4" "$5" "$6" | tee -a "$OUT"
	done
done
awk '!/^#/ && $1 ~ /^[0-9]+$/ { r[$2] = r[$2] " " $5; s[$2] = s[$2] " " $6; t[$2] = t[$2] " " $7; c[$2] = c[$2] " " $8; d[$2] = d[$2] " " $9 }
function med(list,   a, n, i, j, x) { n = split(list, a, " ");
	for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
END { for (op in r) printf "median %-12s ratio %.2f, master us/op S3 %.0f REST %.0f, load generator us/op S3 %.0f REST %.0f\n", op, med(r[op]), med(s[op]), med(t[op]), med(c[op]), med(d[op]) }' \
	"$OUT" | sort | tee -a "$OUT"
if [ -f "$OUT.sys" ]; then
	cat "$OUT.sys" >>"$OUT"
	rm -f "$OUT.sys"
fi
bench_stop "$MASTER_PID" "${WORKER_PIDS[@]}"
