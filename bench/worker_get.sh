#!/usr/bin/env bash
# worker_get.sh - a worker's CPU per MiB of chunk GETs, from the buffer
# (the default) and with WORKER_SENDFILE_MIN_BYTES (sendfile from the
# volume file), alternated, optionally against an older build.
#
# Each variant gets a throw-away cluster of 1 master and 1 worker (SQLite)
# of its own; one chunk of BENCH_CHUNK random bytes is PUT on the worker,
# then one curl fetches it BENCH_GETS times on one kept-alive connection
# (GET /chunks/{id}, the call a master's download makes). Printed per
# variant and round: the worker's CPU (utime+stime from /proc/PID/stat
# around the GETs) per MiB served, and the MiB/s curl saw; the medians
# close the report, which also goes to bench/results/worker-get.txt. The
# variants of a round run one after the other, in an order that turns
# round by round, so a busy machine's drift falls on all of them.
#
# Everything runs on one machine: the receiving curl copies the bytes out
# of the page cache whichever way the worker sends them (see
# docs/PERFORMANCE.md, "Worker GET: sendfile measured").
#
# Environment: BENCH_ROUNDS (3), BENCH_GETS (1000), BENCH_CHUNK (1048576
# bytes), BENCH_SENDFILE (256K: the WORKER_SENDFILE_MIN_BYTES of the
# sendfile variant), BENCH_BEFORE_BIN (unset: a bin/ directory of another
# build, measured as a third variant "before", with its default settings),
# BENCH_TMPDIR, BENCH_KEEP=1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

ROUNDS=${BENCH_ROUNDS:-3}
GETS=${BENCH_GETS:-1000}
CHUNK=${BENCH_CHUNK:-1048576}
SENDFILE=${BENCH_SENDFILE:-256K}
BEFORE_BIN=${BENCH_BEFORE_BIN:-}
OUT=$ROOT/bench/results/worker-get.txt
export WORKER_COUNT=1 REPLICATION_FACTOR=1 LOG_LEVEL=${BENCH_LOG_LEVEL:-warn}
unset CHUNK_SIZE DATABASE_URL REDIS_ADDR WORKER_SENDFILE_MIN_BYTES

[ -x "$ROOT/bin/echofs-worker" ] || bench_die "bin/echofs-worker is missing: run \`make\`"
[ -z "$BEFORE_BIN" ] || [ -x "$BEFORE_BIN/echofs-worker" ] ||
	bench_die "BENCH_BEFORE_BIN=$BEFORE_BIN has no echofs-worker"
tmp_parent=${BENCH_TMPDIR:-$ROOT/build}
mkdir -p "$tmp_parent" "$(dirname "$OUT")"
WORK=$(mktemp -d "$tmp_parent/bench-worker-get.XXXXXX")
bench_install_traps
CLK_TCK=$(getconf CLK_TCK)
head -c "$CHUNK" /dev/urandom >"$WORK/chunk"
CHUNK_ID=$(sha256sum "$WORK/chunk" | cut -d' ' -f1)

VARIANTS=(buffer sendfile)
[ -z "$BEFORE_BIN" ] || VARIANTS=(before "${VARIANTS[@]}")
if [ -n "$BEFORE_BIN" ]; then
	# bench_cluster_start runs $ROOT/bin/*: a copy of ROOT whose bin is it.
	mkdir -p "$WORK/before"
	ln -s "$BEFORE_BIN" "$WORK/before/bin"
fi

# measure VARIANT ROUND - one cluster, one chunk, GETS GETs; prints a line
# and appends "variant cpu mib_s" to WORK/samples.
measure() {
	local variant=$1 round=$2 root=$ROOT sendfile_min=0 port t0 t1 s0 s1 urls=() i line
	[ "$variant" = before ] && root=$WORK/before
	[ "$variant" = sendfile ] && sendfile_min=$SENDFILE
	ROOT=$root WORKER_SENDFILE_MIN_BYTES=$sendfile_min bench_cluster_start "$WORK/cluster"
	port=$(tr '\0' '\n' <"/proc/${WORKER_PIDS[0]}/environ" | sed -n 's/^WORKER_PORT=//p')
	local auth="Authorization: Bearer $CLUSTER_SECRET" url="http://127.0.0.1:$port/chunks/$CHUNK_ID"
	curl -sS -f -X PUT -H "$auth" -H 'X-Chunk-Encoding: identity' --data-binary @"$WORK/chunk" \
		-o /dev/null "$url"
	for ((i = 0; i < GETS; i++)); do
		urls+=(-o /dev/null "$url")
	done
	curl -sS -f -H "$auth" -o /dev/null "$url" # warm: page cache, connection pool
	t0=$(bench_cpu_ticks "${WORKER_PIDS[0]}")
	s0=$EPOCHREALTIME
	curl -sS -f -H "$auth" "${urls[@]}"
	s1=$EPOCHREALTIME
	t1=$(bench_cpu_ticks "${WORKER_PIDS[0]}")
	bench_stop "$MASTER_PID" "${WORKER_PIDS[@]}"
	rm -rf "$WORK/cluster"
	line=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$GETS" -v size="$CHUNK" -v a="$s0" \
		-v b="$s1" 'BEGIN { mib = n * size / 1048576
			printf "%.3f %.0f", t * 1000 / hz / mib, mib / (b - a) }')
	echo "$variant $line" >>"$WORK/samples"
	printf '%5s  %-9s %12s %8s\n' "$round" "$variant" "${line% *}" "${line#* }" | tee -a "$OUT"
}

: >"$OUT"
printf 'worker GET, %s x %s-byte chunk per variant and round, %s CPUs, load %s\n' "$GETS" \
	"$CHUNK" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT"
printf '%5s  %-9s %12s %8s\n' round variant "CPU ms/MiB" "MiB/s" | tee -a "$OUT"
for round in $(seq 1 "$ROUNDS"); do
	order=("${VARIANTS[@]}")
	for ((i = 1; i < round; i++)); do # turn the order round by round
		order=("${order[@]:1}" "${order[0]}")
	done
	for variant in "${order[@]}"; do
		measure "$variant" "$round"
	done
done
median() { # COLUMN VARIANT - the median of a column of WORK/samples (lib.sh's)
	# shellcheck disable=SC2046 # one number a word
	bench_median $(awk -v v="$2" -v c="$1" '$1 == v { print $c }' "$WORK/samples")
}
for variant in "${VARIANTS[@]}"; do
	printf 'median %-9s %12s %8s\n' "$variant" "$(median 2 "$variant")" "$(median 3 "$variant")"
done | tee -a "$OUT"
bench_log "written to $OUT"
