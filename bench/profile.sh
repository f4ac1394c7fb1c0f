#!/usr/bin/env bash
# profile.sh - a quick look at where EchoFS spends its time, for the
# "where the time goes" section of docs/PERFORMANCE.md.
#
# Starts a throw-away cluster like bench/run.sh (1 master + 3 workers,
# replication 3, default CHUNK_SIZE, SQLite) and attaches Linux perf to
# those processes only (perf -p, never system-wide; one perf for the
# master, one for the workers, since their threads share names):
#
#   1. large uploads (one random, one text file of PROFILE_MIB MiB):
#      a CPU profile (perf record -e cpu-clock: a software clock, so it
#      works in VMs without a hardware PMU), then counts of CPU time,
#      context switches and the syscalls that matter (perf stat on
#      syscall tracepoints) during a second pair of uploads with other
#      bytes, so that deduplication skips nothing;
#   2. large downloads of the files of step 1: the same two;
#   3. 4 KiB uploads at concurrency 16 for PROFILE_SECONDS: the same two.
#
# Counts are shown per 1 MiB chunk (large) and per upload (small). Prints
# the summaries and writes them to bench/results/profile.txt. Needs perf
# (Debian: linux-perf) and the right to attach to the processes (root, or
# kernel.perf_event_paranoid <= 1).
#
# Environment: PROFILE_MIB (128), PROFILE_SECONDS (10), BENCH_TMPDIR,
# BENCH_KEEP=1 (keep the temp dir with the perf.data files and logs).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

MIB=${PROFILE_MIB:-128}
SECONDS_SMALL=${PROFILE_SECONDS:-10}
OUT=$ROOT/bench/results/profile.txt
LOADGEN=$ROOT/build/bench/loadgen
export WORKER_COUNT=3 REPLICATION_FACTOR=3 LOG_LEVEL=${BENCH_LOG_LEVEL:-warn}
unset CHUNK_SIZE DATABASE_URL REDIS_ADDR

command -v perf >/dev/null || bench_die "perf is missing (Debian: apt-get install linux-perf)"
[ -x "$ROOT/bin/echofs-master" ] || bench_die "bin/echofs-master is missing: run \`make\`"
make --no-print-directory -s -C "$ROOT/bench"

tmp_parent=${BENCH_TMPDIR:-$ROOT/build}
mkdir -p "$tmp_parent" "$(dirname "$OUT")"
WORK=$(mktemp -d "$tmp_parent/bench-profile.XXXXXX")
bench_install_traps

bench_log "generating 4 x $MIB MiB of test data"
for seed in 11 13; do
	"$LOADGEN" gen --kind random --size $((MIB * 1048576)) --seed $seed >"$WORK/random-$seed.bin"
	"$LOADGEN" gen --kind text --size $((MIB * 1048576)) --seed $((seed + 1)) >"$WORK/text-$seed.txt"
done
sync "$WORK"/*.bin "$WORK"/*.txt

bench_cluster_start "$WORK/cluster"
DAEMONS=("$MASTER_PID" "${WORKER_PIDS[@]}")
AUTH="Authorization: Bearer $TOKEN"
CLK_TCK=$(getconf CLK_TCK)

STAT_EVENTS=task-clock,context-switches,page-faults
for call in fdatasync fsync rename openat pwrite64 write read sendto sendmsg recvfrom poll accept4 clone3 futex \
	clock_nanosleep mmap munmap; do
	STAT_EVENTS+=",syscalls:sys_enter_$call"
done

# perf_start KIND NAME - perf record (KIND=record) or perf stat (KIND=stat)
# in the background, one attached to the master and one to the workers:
# WORK/NAME-master.* and WORK/NAME-workers.*. Threads created later (one
# per connection) are followed.
perf_start() {
	local kind=$1 name=$2 role pids
	PERF_PIDS=()
	for role in master workers; do
		pids=$MASTER_PID
		[ "$role" = workers ] && pids=$(IFS=,; echo "${WORKER_PIDS[*]}")
		if [ "$kind" = record ]; then
			bench_spawn "$WORK/$name-$role.perf.log" perf record -q -e cpu-clock -F 999 \
				-g -p "$pids" -o "$WORK/$name-$role.data"
		else
			bench_spawn "$WORK/$name-$role.perf.log" perf stat -x, \
				-o "$WORK/$name-$role.stat" -e "$STAT_EVENTS" -p "$pids"
		fi
		PERF_PIDS+=("$BENCH_LAST_PID")
	done
	sleep 1 # perf attaches to every thread before the load starts
}

perf_stop() {
	local pid
	for pid in "${PERF_PIDS[@]}"; do
		kill -INT "$pid" 2>/dev/null || true
	done
	for pid in "${PERF_PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
		bench_forget "$pid"
	done
}

# upload FILE NAME - prints the seconds it took; FILE_IDS[NAME] is the id.
declare -A FILE_IDS
upload() {
	local out
	out=$(curl -sS -f -X POST -T "$1" -H "$AUTH" -H 'Content-Type: application/octet-stream' \
		-H 'Expect:' -o "$WORK/upload.json" -w '%{time_total}' \
		"$MASTER_URL/api/v1/files/upload?name=$2")
	FILE_IDS[$2]=$(sed -n 's/.*"file_id": *"\([0-9a-f]*\)".*/\1/p' "$WORK/upload.json")
	UPLOAD_SECONDS=$out
}

# stat_table NAME UNITS WHAT - the perf stat counts of master and workers
# divided by UNITS (chunks or uploads).
stat_table() {
	printf '%-22s %14s %14s   (per %s)\n' event master workers "$3"
	awk -F, -v units="$2" '
		FNR == 1 { role = (FILENAME ~ /-master\.stat$/) ? "m" : "w" }
		$3 != "" && $1 ~ /^[0-9.]+$/ {
			ev = $3; sub(/^syscalls:sys_enter_/, "", ev)
			if (ev == "task-clock") ev = "CPU ms (task-clock)"
			if (!(ev in seen)) { seen[ev] = 1; order[n++] = ev }
			v[role, ev] = $1
		}
		END {
			for (i = 0; i < n; i++)
				printf "%-22s %14.2f %14.2f\n", order[i], v["m", order[i]] / units,
					v["w", order[i]] / units
		}
	' "$WORK/$1-master.stat" "$WORK/$1-workers.stat"
}

# report_record NAME - CPU profile: by shared object, then by function.
report_record() {
	local role
	for role in master workers; do
		echo "-- $role: CPU by object (perf record -e cpu-clock; share of the $role's samples)"
		perf report -i "$WORK/$1-$role.data" --stdio --no-children -g none --sort dso \
			2>/dev/null | grep -v -e '^#' -e '^$' | awk 'NR <= 8'
		echo "-- $role: CPU by function, top 15"
		perf report -i "$WORK/$1-$role.data" --stdio --no-children -g none --sort dso,sym \
			2>/dev/null | grep -v -e '^#' -e '^$' | awk 'NR <= 15'
	done
}

say() { # TEXT... - to stdout and to the profile file
	printf '%s\n' "$*" | tee -a "$OUT"
}
: >"$OUT"

say "EchoFS profile $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD)," \
	"$(nproc) CPUs, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
say "cluster: 1 master + 3 workers, replication 3, CHUNK_SIZE default (1 MiB), SQLite"
say

say "== 1. large uploads: ${MIB} MiB random + ${MIB} MiB text, curl -T, one at a time"
bench_log "profiling large uploads (perf record)"
cpu0=$(bench_cpu_ticks "${DAEMONS[@]}")
perf_start record large
upload "$WORK/random-11.bin" random-11
t_random=$UPLOAD_SECONDS
upload "$WORK/text-11.txt" text-11
t_text=$UPLOAD_SECONDS
perf_stop
cpu1=$(bench_cpu_ticks "${DAEMONS[@]}")
say "wall: random $t_random s, text $t_text s; CPU of master+workers:" \
	"$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }') s (under perf)"
report_record large | tee -a "$OUT"
bench_log "profiling large uploads (perf stat)"
perf_start stat large
upload "$WORK/random-13.bin" random-13
t_random=$UPLOAD_SECONDS
upload "$WORK/text-13.txt" text-13
t_text=$UPLOAD_SECONDS
perf_stop
say "-- counts per 1 MiB chunk (perf stat; uploads took $t_random s and $t_text s)"
stat_table large $((2 * MIB)) chunk | tee -a "$OUT"
say

say "== 2. large downloads: the same files, curl, one at a time"
download() { # NAME
	curl -sS -f -H "$AUTH" -o /dev/null -w '%{time_total}' \
		"$MASTER_URL/api/v1/files/${FILE_IDS[$1]}/download"
}
bench_log "profiling large downloads (perf record)"
perf_start record download
t_random=$(download random-11)
t_text=$(download text-11)
perf_stop
say "wall: random $t_random s, text $t_text s"
report_record download | tee -a "$OUT"
bench_log "profiling large downloads (perf stat)"
perf_start stat download
t_random=$(download random-13)
t_text=$(download text-13)
perf_stop
say "-- counts per 1 MiB chunk (perf stat; downloads took $t_random s and $t_text s)"
stat_table download $((2 * MIB)) chunk | tee -a "$OUT"
say

say "== 3. 4 KiB uploads, concurrency 16, ${SECONDS_SMALL} s"
bench_log "profiling 4 KiB uploads (perf record)"
perf_start record small
"$LOADGEN" upload --url "$MASTER_URL" --token "$TOKEN" --concurrency 16 \
	--seconds "$SECONDS_SMALL" >"$WORK/small-record.json"
perf_stop
say "loadgen under perf record: $(cat "$WORK/small-record.json")"
report_record small | tee -a "$OUT"
bench_log "profiling 4 KiB uploads (perf stat)"
perf_start stat small
"$LOADGEN" upload --url "$MASTER_URL" --token "$TOKEN" --concurrency 16 \
	--seconds "$SECONDS_SMALL" >"$WORK/small-stat.json"
perf_stop
ops=$(sed -n 's/.*"ops": \([0-9]*\),.*/\1/p' "$WORK/small-stat.json")
say "loadgen under perf stat: $(cat "$WORK/small-stat.json")"
say "-- counts per upload (perf stat)"
stat_table small "${ops:-1}" upload | tee -a "$OUT"
bench_log "written to $OUT"
