# shellcheck shell=bash
# lib.sh - shell helpers shared by bench/run.sh and bench/profile.sh: free
# ports, a throw-away local cluster, process accounting from /proc, and
# cleanup that stops only the processes the script started.
#
# Source it after `set -euo pipefail` with ROOT set to the repository and
# WORK to the run's temporary directory. Every process started through
# bench_spawn is recorded in BENCH_PIDS; bench_cleanup (installed by
# bench_install_traps on EXIT, INT and TERM) stops them, newest first, and
# removes WORK unless BENCH_KEEP=1.

BENCH_PIDS=()
BENCH_CLEANUP_HOOKS=()

# bench_median NUMBER... - the median of the arguments: the middle value of
# an odd count (printed as given), the mean of the two middle values of an
# even one (%.10g); nothing for none. Every bench script's median is this
# one (they used to print the lower middle value of an even count).
bench_median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { if (NR % 2) print v[(NR + 1) / 2]
		      else if (NR) printf "%.10g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

BENCH_T0=${EPOCHREALTIME:-0}

# bench_log MESSAGE - to stderr, with the seconds since the script started.
bench_log() {
	local now=${EPOCHREALTIME:-0}
	printf 'bench: [%6.1fs] %s\n' "$(awk -v a="$BENCH_T0" -v b="$now" 'BEGIN { print b - a }')" \
		"$*" >&2
}

bench_die() {
	bench_log "error: $*"
	exit 1
}

# bench_spawn LOGFILE CMD... - start CMD in the background, stdout and
# stderr to LOGFILE; its pid is in BENCH_LAST_PID and BENCH_PIDS.
bench_spawn() {
	local log=$1
	shift
	"$@" >"$log" 2>&1 &
	BENCH_LAST_PID=$!
	BENCH_PIDS+=("$BENCH_LAST_PID")
}

# bench_stop PID... - SIGTERM, up to 10 s to exit, then SIGKILL.
bench_stop() {
	local pid i
	for pid in "$@"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "$@"; do
		for i in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			bench_log "pid $pid did not stop on SIGTERM; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
		bench_forget "$pid"
	done
}

# bench_forget PID - drop PID from BENCH_PIDS once it is reaped, so that
# cleanup never signals a recycled pid.
bench_forget() {
	local kept=() p
	for p in "${BENCH_PIDS[@]}"; do
		[ "$p" = "$1" ] || kept+=("$p")
	done
	BENCH_PIDS=("${kept[@]}")
}

bench_cleanup() {
	local status=$?
	local i hook
	trap - EXIT INT TERM ERR
	for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
		bench_stop "${BENCH_PIDS[i]}"
	done
	for hook in "${BENCH_CLEANUP_HOOKS[@]}"; do
		"$hook" || true
	done
	if [ -n "${WORK:-}" ] && [ -d "$WORK" ]; then
		if [ "${BENCH_KEEP:-0}" = 1 ]; then
			bench_log "kept $WORK (BENCH_KEEP=1)"
		else
			rm -rf "$WORK"
		fi
	fi
	return "$status"
}

bench_install_traps() {
	trap 'bench_log "failed (status $?) at line $LINENO: $BASH_COMMAND"' ERR
	trap bench_cleanup EXIT
	trap 'bench_log "interrupted"; exit 130' INT
	trap 'bench_log "terminated"; exit 143' TERM
}

# bench_port_free PORT - true when no socket uses PORT locally (listening,
# connected or in TIME_WAIT: any of them can make a bind fail).
bench_port_free() {
	if command -v ss >/dev/null; then
		[ -z "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]
	else
		! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
	fi
}

# bench_pick_ports COUNT - print the first of COUNT consecutive free ports,
# from a random start between 20000 and the kernel's ephemeral range
# (which client sockets, ours and others', take their ports from).
bench_pick_ports() {
	local count=$1 low=20000 high base p ok
	high=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
	[ "$high" -gt $((low + 1000)) ] || { low=10000; high=20000; }
	for _ in $(seq 1 50); do
		base=$((low + (RANDOM * 32768 + RANDOM) % (high - low - count)))
		ok=1
		for ((p = base; p < base + count; p++)); do
			bench_port_free "$p" || { ok=0; break; }
		done
		if [ "$ok" = 1 ]; then
			echo "$base"
			return 0
		fi
	done
	return 1
}

bench_secret() {
	od -An -tx1 -N32 /dev/urandom | tr -d ' \n'
}

# bench_cluster_start DIR - one master and WORKER_COUNT (3) workers (the
# binaries of BENCH_BIN, default ROOT/bin: another build for a before/after) on
# 127.0.0.1 with data under DIR, on free ports. Sets MASTER_URL, TOKEN,
# MASTER_PID and WORKER_PIDS. Settings the daemons read (CHUNK_SIZE,
# REPLICATION_FACTOR, LOG_LEVEL...) pass through the environment.
bench_cluster_start() {
	local dir=$1 count=${WORKER_COUNT:-3} base i port alive body
	mkdir -p "$dir/logs"
	JWT_SECRET=$(bench_secret)
	CLUSTER_SECRET=$(bench_secret)
	export JWT_SECRET CLUSTER_SECRET
	base=$(bench_pick_ports $((count + 1))) || bench_die "no free ports for the cluster"
	MASTER_URL="http://127.0.0.1:$base"
	BENCH_MASTER_PORT=$base
	bench_master_spawn "$dir" "$dir/logs/master.log"
	WORKER_PIDS=()
	for i in $(seq 1 "$count"); do
		port=$((base + i))
		WORKER_HOST=127.0.0.1 WORKER_PORT=$port WORKER_DATA_DIR="$dir/worker$i" \
			MASTER_URL="$MASTER_URL" \
			bench_spawn "$dir/logs/worker$i.log" "${BENCH_BIN:-$ROOT/bin}/echofs-worker"
		WORKER_PIDS+=("$BENCH_LAST_PID")
	done
	alive=0
	for i in $(seq 1 150); do
		kill -0 "$MASTER_PID" "${WORKER_PIDS[@]}" 2>/dev/null || break
		body=$(curl -s "$MASTER_URL/api/v1/health" || true)
		alive=$(printf '%s' "$body" | sed -n 's/.*"workers_alive": *\([0-9]*\).*/\1/p')
		[ "${alive:-0}" -ge "$count" ] && break
		sleep 0.1
	done
	if [ "${alive:-0}" -lt "$count" ]; then
		tail -n 5 "$dir"/logs/*.log >&2 || true
		bench_die "the cluster did not come up (logs in $dir/logs)"
	fi
	# shellcheck disable=SC2034 # for the scripts that source this file
	TOKEN=$("${BENCH_BIN:-$ROOT/bin}/echofs" token --user bench --ttl 86400)
}

# bench_master_spawn DIR LOG [NAME=VALUE...] - start the master of the
# cluster in DIR (data DIR/master, port BENCH_MASTER_PORT) with the extra
# settings given, output to LOG; sets MASTER_PID. Does not wait.
bench_master_spawn() {
	local dir=$1 log=$2
	shift 2
	bench_spawn "$log" env MASTER_HOST=127.0.0.1 MASTER_PORT="$BENCH_MASTER_PORT" GRPC_PORT=0 \
		DATA_DIR="$dir/master" "$@" "${BENCH_BIN:-$ROOT/bin}/echofs-master"
	MASTER_PID=$BENCH_LAST_PID
}

# bench_master_restart DIR NAME [NAME=VALUE...] - stop the master of the
# cluster bench_cluster_start made in DIR and start it again on the same
# port and data, with the extra settings given (the environment's as
# before otherwise; log DIR/logs/master.NAME.log), then wait until
# /api/v1/health counts WORKER_COUNT workers alive again. Sets MASTER_PID;
# the workers keep running. Dies (with the log's tail) when the master
# does not come back within 15 s.
bench_master_restart() {
	local dir=$1 name=$2 count=${WORKER_COUNT:-3} log body alive=0 i
	shift 2
	log=$dir/logs/master.$name.log
	bench_stop "$MASTER_PID"
	bench_master_spawn "$dir" "$log" "$@"
	for i in $(seq 1 150); do
		kill -0 "$MASTER_PID" 2>/dev/null || break
		body=$(curl -s "$MASTER_URL/api/v1/health" || true)
		alive=$(printf '%s' "$body" | sed -n 's/.*"workers_alive": *\([0-9]*\).*/\1/p')
		[ "${alive:-0}" -ge "$count" ] && return 0
		sleep 0.1
	done
	tail -n 5 "$log" >&2 || true
	bench_die "the master did not come back with $count workers alive (log: $log)"
}

# bench_proc_sum FILE PROGRAM PID... - the sum over the processes of the
# number awk PROGRAM prints from /proc/PID/FILE.
bench_proc_sum() {
	local file=$1 program=$2 pid total=0
	shift 2
	for pid in "$@"; do
		total=$((total + $(awk "$program" "/proc/$pid/$file")))
	done
	echo "$total"
}

# bench_cpu_ticks PID... - utime + stime of the processes, in clock ticks
# (fields 14 and 15 of /proc/PID/stat, counted after the command name).
bench_cpu_ticks() {
	bench_proc_sum stat '{ sub(/.*\) /, ""); print $12 + $13 }' "$@"
}

# bench_write_bytes PID... - the bytes the processes sent to storage so far
# (/proc/PID/io write_bytes, summed: pages they dirtied in the page cache
# or wrote directly, counted once per page until it is written back).
bench_write_bytes() {
	bench_proc_sum io '$1 == "write_bytes:" { print $2 }' "$@"
}

# bench_cpu_each PID... - utime + stime of each process, in clock ticks,
# on one line in the order given.
bench_cpu_each() {
	local pid out=()
	for pid in "$@"; do
		out+=("$(bench_cpu_ticks "$pid")")
	done
	echo "${out[*]}"
}

# bench_status_kib PID FIELD - a kB figure from /proc/PID/status (VmHWM...).
bench_status_kib() {
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# bench_alive PID... - fail (naming it) if a process has exited.
bench_alive() {
	local pid
	for pid in "$@"; do
		kill -0 "$pid" 2>/dev/null || bench_die "process $pid exited early (see the logs in $WORK)"
	done
}
