#!/usr/bin/env bash
# ec_cluster.sh - the "erasure coding in the cluster" phase of `make bench`
# (issue 17, item 8). bench/run.sh runs it after its own cluster has
# stopped; it can also run alone (below). It appends KEY=VALUE figures to
# the run's facts file for bench/report.py, all prefixed `ecc_`.
#
# A cluster of its own: 1 master + 6 workers (SQLite, default CHUNK_SIZE,
# GRPC_PORT=0, the bench's LOG_LEVEL), with REPAIR_AFTER_MS=0,
# WORKER_DEAD_AFTER_MS=2000 and REPAIR_BANDWIDTH=ECC_REPAIR_BANDWIDTH
# (1 GiB/s: the rebuild line measures the repair loop, not the pacing).
#
#   1. upload a random file of the run's large size as replicas:3, and
#      another random file (other bytes: no dedup) as ec:4+2; MiB/s, the
#      master's and the workers' CPU, and the workers' disk (du of their
#      data dirs, allocated blocks) before and after each upload
#   2. download each (healthy; every download line is the median of
#      ECC_RUNS), MiB/s and CPU; then the replicated file is
#      deleted, so that repair copies nothing of it while workers are down
#   3. degraded reads of the EC file: the worker with the lowest id (data
#      shard 0 of every stripe) SIGKILLed, download; the next lowest
#      (data shard 1) SIGKILLed too, download. The sha256 of the last one
#      is checked against the file's.
#   4. rebuild: both workers restarted on their data (nothing degraded
#      once the master has counted again); a 7th, empty, spare worker
#      joins (with 6 workers and one dead no worker is free to take a
#      shard); the worker with the lowest id is SIGKILLed for good. The
#      rebuild time runs from the moment the master counts it dead until
#      its /metrics shows echofs_ec_stripes_degraded 0; the shards rebuilt
#      are echofs_ec_shards_rebuilt_total's increase, their bytes (header +
#      shard) from the shard length of a 1 MiB random chunk.
#
# Environment: WORK (a directory of its own), FACTS (the facts file),
# LARGE_BYTES, LOADGEN, ROOT; optional ECC_REPAIR_BANDWIDTH,
# ECC_REBUILD_TIMEOUT_S (600), ECC_RUNS (3, odd: each download line is the
# median run of that many, by MiB/s, with that run's CPU), LOG_LEVEL.
# Alone:
#   WORK=$(mktemp -d) FACTS=/tmp/f.env LARGE_BYTES=$((64<<20)) \
#     LOADGEN=build/bench/loadgen bench/ec_cluster.sh
set -euo pipefail

ROOT=${ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$ROOT"
: "${WORK:?WORK must name a directory for the phase}" "${FACTS:?FACTS must name the facts file}"
: "${LARGE_BYTES:?}" "${LOADGEN:?}"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
mkdir -p "$WORK"
bench_install_traps
# Not ours to remove: the caller's directory.
BENCH_KEEP=1

PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=python3
CLK_TCK=$(getconf CLK_TCK)
REBUILD_TIMEOUT_S=${ECC_REBUILD_TIMEOUT_S:-600}
RUNS=${ECC_RUNS:-3}
# The median run is one of the runs (its MiB/s with its own CPU), so the
# count must be odd: an even one has no middle run.
if ! [[ $RUNS =~ ^[0-9]+$ ]] || ((RUNS % 2 == 0)); then
	bench_die "ECC_RUNS must be an odd number of runs (the median run is reported), not '$RUNS'"
fi

fact() {
	printf 'ecc_%s=%s\n' "$1" "$2" >>"$FACTS"
}
secs() { # TICKS
	awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'
}
mib_per_s() { # BYTES SECONDS
	awk -v b="$1" -v s="$2" 'BEGIN { printf "%.2f", b / 1048576 / s }'
}
now() { date +%s.%N; }

# disk_bytes - the allocated bytes under every worker's data dir.
disk_bytes() {
	local d total=0
	for d in "$WORK"/cluster/worker*; do
		[ -d "$d" ] || continue
		total=$((total + $(du -s -B1 "$d" | cut -f1)))
	done
	echo "$total"
}

# metric NAME - the master's /metrics value of an unlabelled NAME (empty
# when absent).
metric() {
	{ curl -s "$MASTER_URL/metrics" || true; } | awk -v n="$1" '$1 == n { v = $2 } END { print v }'
}

# alive - the master's workers_alive.
alive() {
	{ curl -s "$MASTER_URL/api/v1/health" || true; } | sed -n 's/.*"workers_alive": *\([0-9]*\).*/\1/p'
}

wait_alive() { # COUNT WHAT
	local i
	for i in $(seq 1 300); do
		[ "$(alive)" = "$1" ] && return 0
		sleep 0.1
	done
	bench_die "EC phase: the master did not count $1 live workers ($2)"
}

gen() { # SEED FILE
	"$LOADGEN" gen --kind random --size "$LARGE_BYTES" --seed "$1" >"$2"
}

FILES=$WORK/files
mkdir -p "$FILES"
bench_log "EC phase: generating two $((LARGE_BYTES / 1048576)) MiB random files"
gen 11 "$FILES/rep.bin"
gen 12 "$FILES/ec.bin"
sync "$FILES/rep.bin" "$FILES/ec.bin"
EC_SHA=$(sha256sum "$FILES/ec.bin" | cut -d' ' -f1)

export WORKER_COUNT=6 REPLICATION_FACTOR=3 REPAIR_AFTER_MS=0 WORKER_DEAD_AFTER_MS=2000 HEARTBEAT_INTERVAL_MS=500
export REPAIR_BANDWIDTH=${ECC_REPAIR_BANDWIDTH:-1G} LOG_LEVEL=${LOG_LEVEL:-warn}
unset CHUNK_SIZE DATABASE_URL REDIS_ADDR S3_PORT STORAGE_POLICY
bench_log "EC phase: starting 1 master + 6 workers (REPAIR_AFTER_MS=0, REPAIR_BANDWIDTH=$REPAIR_BANDWIDTH)"
bench_cluster_start "$WORK/cluster"
AUTH="Authorization: Bearer $TOKEN"
fact workers 6
fact repair_bandwidth "$REPAIR_BANDWIDTH"
fact large_bytes "$LARGE_BYTES"

# The workers by id: WORKER_PIDS[i] is worker(i+1), on port MASTER_PORT+i+1.
master_port=${MASTER_URL##*:}
declare -A PID_BY_PORT
for i in "${!WORKER_PIDS[@]}"; do
	PID_BY_PORT[$((master_port + i + 1))]=${WORKER_PIDS[i]}
done
# ports_by_id - the live workers' ports, lowest worker id first.
ports_by_id() {
	curl -s -H "Authorization: Bearer $CLUSTER_SECRET" "$MASTER_URL/api/v1/workers" |
		"$PYTHON" -c '
import json, sys, urllib.parse
doc = json.load(sys.stdin)
ws = doc["workers"] if isinstance(doc, dict) else doc
for w in sorted(ws, key=lambda w: str(w.get("id", w.get("worker_id")))):
    url = w.get("url") or w.get("address") or ""
    print(urllib.parse.urlsplit(url if "//" in url else "http://" + url).port)
'
}

master_ticks() { bench_cpu_ticks "$MASTER_PID"; }
workers_ticks() { bench_cpu_ticks "${WORKER_PIDS[@]}"; }

# upload POLICY FILE NAME - one streaming upload; facts upload_<tag>_*.
declare -A FILE_ID
upload() {
	local tag=$1 policy=$2 file=$3 out code secs m0 w0 m1 w1 d0 d1
	d0=$(disk_bytes)
	m0=$(master_ticks)
	w0=$(workers_ticks)
	out=$(curl -sS -X POST -T "$file" -H "$AUTH" -H 'Content-Type: application/octet-stream' \
		-H 'Expect:' -o "$WORK/upload-$tag.json" -w '%{http_code} %{time_total}' \
		"$MASTER_URL/api/v1/files/upload?name=ec-bench-$tag&policy=${policy//+/%2B}")
	m1=$(master_ticks)
	w1=$(workers_ticks)
	read -r code secs <<<"$out"
	[ "$code" = 201 ] || bench_die "EC phase: upload ($policy): HTTP $code: $(head -c 300 "$WORK/upload-$tag.json")"
	bench_alive "$MASTER_PID" "${WORKER_PIDS[@]}"
	FILE_ID[$tag]=$(sed -n 's/.*"file_id": *"\([0-9a-f]*\)".*/\1/p' "$WORK/upload-$tag.json")
	grep -q "\"policy\": *\"$policy\"" "$WORK/upload-$tag.json" ||
		bench_die "EC phase: the upload's file is not $policy: $(head -c 300 "$WORK/upload-$tag.json")"
	sync
	d1=$(disk_bytes)
	fact "upload_${tag}_mib_s" "$(mib_per_s "$LARGE_BYTES" "$secs")"
	fact "upload_${tag}_master_cpu_s" "$(secs $((m1 - m0)))"
	fact "upload_${tag}_workers_cpu_s" "$(secs $((w1 - w0)))"
	fact "disk_${tag}_bytes" $((d1 - d0))
	fact "stored_${tag}_bytes" "$(sed -n 's/.*"stored_bytes": *\([0-9]*\).*/\1/p' "$WORK/upload-$tag.json")"
}

# download TAG NAME - ECC_RUNS downloads of FILE_ID[TAG] to /dev/null; facts
# download_<name>_* of the median run (by MiB/s) and every run's MiB/s.
download() {
	local tag=$1 name=$2 out code secs bytes m0 w0 m1 w1 live=() run rows=() pid mib m w
	for pid in "${WORKER_PIDS[@]}"; do
		kill -0 "$pid" 2>/dev/null && live+=("$pid")
	done
	for run in $(seq 1 "$RUNS"); do
		m0=$(master_ticks)
		w0=$(bench_cpu_ticks "${live[@]}")
		out=$(curl -sS -H "$AUTH" -o /dev/null -w '%{http_code} %{time_total} %{size_download}' \
			"$MASTER_URL/api/v1/files/${FILE_ID[$tag]}/download")
		m1=$(master_ticks)
		w1=$(bench_cpu_ticks "${live[@]}")
		read -r code secs bytes <<<"$out"
		{ [ "$code" = 200 ] && [ "$bytes" = "$LARGE_BYTES" ]; } ||
			bench_die "EC phase: download $name: HTTP $code, $bytes bytes"
		rows+=("$(mib_per_s "$LARGE_BYTES" "$secs") $((m1 - m0)) $((w1 - w0))")
	done
	# the median row by throughput, with its own CPU figures
	read -r mib m w <<<"$(printf '%s\n' "${rows[@]}" | sort -n -k1,1 | sed -n "$(((RUNS + 1) / 2))p")"
	fact "download_${name}_mib_s" "$mib"
	fact "download_${name}_master_cpu_s" "$(secs "$m")"
	fact "download_${name}_workers_cpu_s" "$(secs "$w")"
	fact "download_${name}_samples" "$(printf '%s\n' "${rows[@]}" | cut -d' ' -f1 | tr '\n' ' ' | sed 's/ $//')"
}

bench_log "EC phase: upload as replicas:3"
upload rep replicas:3 "$FILES/rep.bin"
bench_log "EC phase: upload as ec:4+2"
upload ec ec:4+2 "$FILES/ec.bin"
fact metric_disk_replicas_bytes "$(curl -s "$MASTER_URL/metrics" | sed -n 's/^echofs_disk_bytes{policy="replicas"} //p')"
fact metric_disk_ec_bytes "$(curl -s "$MASTER_URL/metrics" | sed -n 's/^echofs_disk_bytes{policy="ec"} //p')"

bench_log "EC phase: healthy downloads (replicas:3, ec:4+2)"
download rep rep
download ec ec

# Nothing replicated may be copied while workers are down (REPAIR_AFTER_MS=0).
code=$(curl -sS -X DELETE -H "$AUTH" -o "$WORK/delete.json" -w '%{http_code}' \
	"$MASTER_URL/api/v1/files/${FILE_ID[rep]}")
case "$code" in 200 | 204) ;; *) bench_die "EC phase: DELETE of the replicated file: HTTP $code" ;; esac

mapfile -t PORTS < <(ports_by_id)
[ "${#PORTS[@]}" = 6 ] || bench_die "EC phase: GET /api/v1/workers listed ${#PORTS[@]} workers, not 6"
first_pid=${PID_BY_PORT[${PORTS[0]}]:-}
second_pid=${PID_BY_PORT[${PORTS[1]}]:-}
second_port=${PORTS[1]}
[ -n "$first_pid" ] && [ -n "$second_pid" ] || bench_die "EC phase: cannot map worker ports ${PORTS[*]} to pids"

bench_log "EC phase: SIGKILL of the worker with the lowest id (port ${PORTS[0]}), degraded download"
kill -KILL "$first_pid"
{ wait "$first_pid"; } 2>/dev/null || true
bench_forget "$first_pid"
download ec degraded1
bench_log "EC phase: SIGKILL of the next worker (port $second_port), degraded download"
kill -KILL "$second_pid"
{ wait "$second_pid"; } 2>/dev/null || true
bench_forget "$second_pid"
download ec degraded2
bench_log "EC phase: sha256 of a download with 2 workers down"
sha=$(curl -sS -H "$AUTH" "$MASTER_URL/api/v1/files/${FILE_ID[ec]}/download" | sha256sum | cut -d' ' -f1)
fact runs "$RUNS"
[ "$sha" = "$EC_SHA" ] || bench_die "EC phase: the degraded download's sha256 is $sha, expected $EC_SHA"
fact degraded2_sha_ok 1

# restart_worker PORT - a worker again on PORT and its old data dir (same
# worker id); replaces the dead pid in WORKER_PIDS.
restart_worker() {
	local port=$1 idx=$(($1 - master_port)) dead=$2 kept=() pid
	WORKER_HOST=127.0.0.1 WORKER_PORT=$port WORKER_DATA_DIR="$WORK/cluster/worker$idx" \
		MASTER_URL="$MASTER_URL" bench_spawn "$WORK/cluster/logs/worker$idx.restart.log" \
		"$ROOT/bin/echofs-worker"
	PID_BY_PORT[$port]=$BENCH_LAST_PID
	for pid in "${WORKER_PIDS[@]}"; do
		[ "$pid" = "$dead" ] && pid=$BENCH_LAST_PID
		kept+=("$pid")
	done
	WORKER_PIDS=("${kept[@]}")
}

# wait_degraded VALUE TIMEOUT_S - until the master's gauge reads VALUE.
wait_degraded() {
	local deadline=$(($(date +%s) + $2)) cur
	while :; do
		cur=$(metric echofs_ec_stripes_degraded)
		[ "$cur" = "$1" ] && return 0
		[ "$(date +%s)" -lt "$deadline" ] ||
			bench_die "EC phase: echofs_ec_stripes_degraded still '$cur' after $2 s (expected $1)"
		bench_alive "$MASTER_PID" "${WORKER_PIDS[@]}"
		sleep 0.1
	done
}

# Both workers back on their data: no shard was rebuilt meanwhile (no
# worker was free), their rows still count, and nothing is degraded once a
# repair pass has counted again (which also outlasts the repair loop's
# back-off from the passes that found no worker for the missing shards).
bench_log "EC phase: both workers restarted on their data"
restart_worker "${PORTS[0]}" "$first_pid"
restart_worker "$second_port" "$second_pid"
wait_alive 6 "the two workers restarted"
wait_degraded 0 60

# The rebuild: a 7th, empty worker joins (with 6 workers and one dead no
# worker would be free to take a shard), then the worker with the lowest
# id is SIGKILLed for good. Timed from the moment the master counts it
# dead (WORKER_DEAD_AFTER_MS after its last beat, or at once when its
# stream breaks) to echofs_ec_stripes_degraded 0: the wait for the next
# repair pass (1 s) counts, the detection does not.
spare_port=$(bench_pick_ports 1) || bench_die "EC phase: no free port for the spare worker"
bench_log "EC phase: a 7th, empty worker (port $spare_port)"
WORKER_HOST=127.0.0.1 WORKER_PORT=$spare_port WORKER_DATA_DIR="$WORK/cluster/worker7" \
	MASTER_URL="$MASTER_URL" bench_spawn "$WORK/cluster/logs/worker7.log" "$ROOT/bin/echofs-worker"
WORKER_PIDS+=("$BENCH_LAST_PID")
wait_alive 7 "the spare worker started"
rebuilt_before=$(metric echofs_ec_shards_rebuilt_total)
victim=${PID_BY_PORT[${PORTS[0]}]}
bench_log "EC phase: SIGKILL of the worker on port ${PORTS[0]} (pid $victim); timing the rebuild"
m0=$(master_ticks)
kill -KILL "$victim"
{ wait "$victim"; } 2>/dev/null || true
bench_forget "$victim"
kept=()
for pid in "${WORKER_PIDS[@]}"; do
	[ "$pid" = "$victim" ] || kept+=("$pid")
done
WORKER_PIDS=("${kept[@]}")
w0=$(workers_ticks)
wait_alive 6 "the killed worker counted dead"
t0=$(now)
degraded_seen=0
deadline=$(($(date +%s) + REBUILD_TIMEOUT_S))
while :; do
	cur=$(metric echofs_ec_stripes_degraded)
	[ -n "$cur" ] && [ "$cur" -gt "$degraded_seen" ] && degraded_seen=$cur
	[ "$cur" = 0 ] && [ "$(metric echofs_ec_shards_rebuilt_total)" != "$rebuilt_before" ] && break
	[ "$(date +%s)" -lt "$deadline" ] ||
		bench_die "EC phase: echofs_ec_stripes_degraded still $cur after ${REBUILD_TIMEOUT_S} s"
	bench_alive "$MASTER_PID" "${WORKER_PIDS[@]}"
	sleep 0.1
done
t1=$(now)
m1=$(master_ticks)
w1=$(workers_ticks)
rebuilt_after=$(metric echofs_ec_shards_rebuilt_total)
rebuilt=$((${rebuilt_after:-0} - ${rebuilt_before:-0}))
# A 1 MiB random chunk is stored as is (gzip does not win): 4 shards of
# 262144 bytes, each with its 32-byte header.
shard_bytes=$((262144 + 32))
fact degraded_seen "$degraded_seen"
fact stripes $((LARGE_BYTES / 1048576))
fact rebuild_seconds "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
fact rebuild_shards "$rebuilt"
fact rebuild_shard_bytes "$shard_bytes"
fact rebuild_mib_s "$(awk -v n="$rebuilt" -v s="$shard_bytes" -v a="$t0" -v b="$t1" \
	'BEGIN { printf "%.2f", n * s / 1048576 / (b - a) }')"
fact rebuild_master_cpu_s "$(secs $((m1 - m0)))"
fact rebuild_workers_cpu_s "$(secs $((w1 - w0)))"

bench_log "EC phase: download after the rebuild"
download ec rebuilt
fact master_vmhwm_kib "$(bench_status_kib "$MASTER_PID" VmHWM)"
bench_stop "$MASTER_PID" "${WORKER_PIDS[@]}"
rm -rf "$FILES"
