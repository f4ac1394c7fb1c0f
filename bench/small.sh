#!/usr/bin/env bash
# small.sh - the 4 KiB phases of bench/run.sh alone, for A/B comparisons of
# two builds or settings (docs/PERFORMANCE.md, "Worker threading"): nginx
# 4 KiB GETs (the baseline), then on a fresh cluster (1 master + 3 workers,
# replication 3) 4 KiB uploads and 4 KiB downloads of every file uploaded,
# each with bench/loadgen at concurrency 16. Prints one JSON object: the
# rates, their ratios to nginx, p99s, the CPU seconds the workers (all
# three) and the master spent per 1,000 requests of each phase, and the
# KiB the master wrote to its disk per upload (its metadata store: WAL
# pages and their checkpoints).
#
#   bench/small.sh [BIN_ROOT]   BIN_ROOT: the checkout whose bin/ runs
#                               (default: this one); loadgen is this one's
#
# Environment: BENCH_SMALL_SECONDS (10), BENCH_CONCURRENCY (16),
# BENCH_LARGE_MIB (0: none; else one upload and one download of a random
# file this large with curl, after the 4 KiB phases, as MiB/s and the
# workers' and the master's CPU s per GiB), BENCH_DOWNLOAD_FILES (unset:
# every file uploaded; N: the downloads draw from the first N, so that
# runs of two builds download as many files whatever their upload rates),
# BENCH_TMPDIR (ROOT/build), and whatever the daemons read
# (WORKER_HTTP_THREADS, CHUNK_CACHE_SIZE...), passed through.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
LOADGEN=$ROOT/build/bench/loadgen
BIN_ROOT=$(cd "${1:-$ROOT}" && pwd)
SECONDS_EACH=${BENCH_SMALL_SECONDS:-10}
LARGE_MIB=${BENCH_LARGE_MIB:-0}
CONCURRENCY=${BENCH_CONCURRENCY:-16}
export WORKER_COUNT=3 REPLICATION_FACTOR=3 LOG_LEVEL=${BENCH_LOG_LEVEL:-warn}

BENCH_T0=${EPOCHREALTIME:-0}
BENCH_PIDS=()
BENCH_CLEANUP_HOOKS=()
mkdir -p "${BENCH_TMPDIR:-$ROOT/build}"
WORK=$(mktemp -d "${BENCH_TMPDIR:-$ROOT/build}/bench-small.XXXXXX")
bench_install_traps
[ -x "$LOADGEN" ] || make -s -C "$ROOT/bench" >/dev/null
for b in echofs-master echofs-worker echofs; do
	[ -x "$BIN_ROOT/bin/$b" ] || bench_die "$BIN_ROOT/bin/$b is missing: build it (make)"
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || bench_die "nginx is missing (bench/run.sh installs it)"

run_loadgen() { # NAME ARGS...
	local name=$1
	shift
	"$LOADGEN" "$@" --concurrency "$CONCURRENCY" --seconds "$SECONDS_EACH" >"$WORK/$name.json" ||
		bench_die "loadgen $name failed"
}
field() { # NAME KEY
	sed -n "s/.*\"$2\": *\([0-9.]*\).*/\1/p" "$WORK/$1.json"
}

# ---- nginx 4 KiB -------------------------------------------------------------
mkdir -p "$WORK/files" "$WORK/nginx/tmp"
"$LOADGEN" gen --kind random --size 4096 --seed 3 >"$WORK/files/small.bin"
port=$(bench_pick_ports 1) || bench_die "no free port for nginx"
user_line=""
[ "$(id -u)" -eq 0 ] && user_line="user root;"
cat >"$WORK/nginx/nginx.conf" <<EOF
$user_line
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
	access_log off; sendfile on; tcp_nopush on; tcp_nodelay on;
	keepalive_timeout 75s; keepalive_requests 1000000;
	default_type application/octet-stream;
	client_body_temp_path $WORK/nginx/tmp/body; proxy_temp_path $WORK/nginx/tmp/proxy;
	fastcgi_temp_path $WORK/nginx/tmp/fastcgi; uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
	scgi_temp_path $WORK/nginx/tmp/scgi;
	server { listen 127.0.0.1:$port; root $WORK/files; }
}
EOF
bench_spawn "$WORK/nginx/stderr.log" "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" \
	-e "$WORK/nginx/error.log" -g 'daemon off;'
NGINX_PID=$BENCH_LAST_PID
for _ in $(seq 1 100); do
	curl -sf -o /dev/null "http://127.0.0.1:$port/small.bin" && break
	sleep 0.1
done
bench_log "nginx 4 KiB GETs, c=$CONCURRENCY, ${SECONDS_EACH} s"
run_loadgen nginx get --url "http://127.0.0.1:$port/small.bin" --size 4096
bench_stop "$NGINX_PID"

# ---- EchoFS 4 KiB ------------------------------------------------------------
# bench_cluster_start runs $ROOT/bin: point it at the build under test.
ROOT_SAVED=$ROOT
ROOT=$BIN_ROOT
bench_cluster_start "$WORK/cluster"
ROOT=$ROOT_SAVED
ticks() { # PID...: echo "worker_ticks master_ticks"
	echo "$(bench_cpu_ticks "${WORKER_PIDS[@]}") $(bench_cpu_ticks "$MASTER_PID")"
}
read -r w0 m0 <<<"$(ticks)"
mio0=$(bench_write_bytes "$MASTER_PID")
bench_log "EchoFS 4 KiB uploads (WORKER_HTTP_THREADS=${WORKER_HTTP_THREADS:-unset})"
run_loadgen upload upload --url "$MASTER_URL" --token "$TOKEN" --size 4096 --ids-out "$WORK/ids.txt"
bench_alive "$MASTER_PID" "${WORKER_PIDS[@]}"
if [ -n "${BENCH_DOWNLOAD_FILES:-}" ]; then
	head -n "$BENCH_DOWNLOAD_FILES" "$WORK/ids.txt" >"$WORK/ids.head" && mv "$WORK/ids.head" "$WORK/ids.txt"
fi
download_files=$(wc -l <"$WORK/ids.txt")
bench_log "EchoFS 4 KiB downloads over $download_files files"
read -r w1 m1 <<<"$(ticks)"
mio1=$(bench_write_bytes "$MASTER_PID")
run_loadgen download download --url "$MASTER_URL" --token "$TOKEN" --ids "$WORK/ids.txt" --size 4096
read -r w2 m2 <<<"$(ticks)"
bench_alive "$MASTER_PID" "${WORKER_PIDS[@]}"

# ---- optional: one large upload and download ---------------------------------
large=""
if [ "$LARGE_MIB" -gt 0 ]; then
	"$LOADGEN" gen --kind random --size $((LARGE_MIB * 1048576)) --seed 1 >"$WORK/files/large.bin"
	sync "$WORK/files/large.bin"
	read -r w3 m3 <<<"$(ticks)"
	bench_log "EchoFS: upload of a ${LARGE_MIB} MiB random file"
	out=$(curl -sS -X POST -T "$WORK/files/large.bin" -H "Authorization: Bearer $TOKEN" \
		-H 'Expect:' -o "$WORK/large.json" -w '%{http_code} %{time_total}' \
		"$MASTER_URL/api/v1/files/upload?name=large")
	read -r code up_s <<<"$out"
	[ "$code" = 201 ] || bench_die "large upload: HTTP $code"
	read -r w4 m4 <<<"$(ticks)"
	id=$(sed -n 's/.*"file_id": *"\([0-9a-f]*\)".*/\1/p' "$WORK/large.json")
	bench_log "EchoFS: download of it"
	out=$(curl -sS -o /dev/null -H "Authorization: Bearer $TOKEN" -w '%{http_code} %{time_total}' \
		"$MASTER_URL/api/v1/files/$id/download")
	read -r code down_s <<<"$out"
	[ "$code" = 200 ] || bench_die "large download: HTTP $code"
	read -r w5 m5 <<<"$(ticks)"
	large=$(awk -v mib="$LARGE_MIB" -v us="$up_s" -v ds="$down_s" -v wu=$((w4 - w3)) \
		-v wd=$((w5 - w4)) -v mu=$((m4 - m3)) -v md=$((m5 - m4)) -v hz="$(getconf CLK_TCK)" 'BEGIN {
		printf ", \"large_upload_mib_s\": %.1f, \"large_download_mib_s\": %.1f, ", mib / us, mib / ds
		printf "\"worker_cpu_s_per_gib_upload\": %.2f, \"worker_cpu_s_per_gib_download\": %.2f, ", wu / hz / mib * 1024, wd / hz / mib * 1024
		printf "\"master_cpu_s_per_gib_upload\": %.2f, \"master_cpu_s_per_gib_download\": %.2f", mu / hz / mib * 1024, md / hz / mib * 1024
	}')
fi

hz=$(getconf CLK_TCK)
awk -v nginx="$(field nginx ops_per_s)" \
	-v up="$(field upload ops_per_s)" -v up_ops="$(field upload ops)" \
	-v up_p99="$(field upload p99_ms)" -v up_err="$(field upload errors)" \
	-v down="$(field download ops_per_s)" -v down_ops="$(field download ops)" \
	-v down_p99="$(field download p99_ms)" -v down_err="$(field download errors)" \
	-v wu=$((w1 - w0)) -v mu=$((m1 - m0)) -v mio=$((mio1 - mio0)) -v wd=$((w2 - w1)) -v md=$((m2 - m1)) -v hz="$hz" \
	-v threads="${WORKER_HTTP_THREADS:-unset}" -v bin="$BIN_ROOT" -v files="$download_files" 'BEGIN {
	printf "{\"bin\": \"%s\", \"worker_http_threads\": \"%s\", \"nginx_4k_per_s\": %.0f, ", bin, threads, nginx
	printf "\"download_files\": %d, ", files
	printf "\"upload_per_s\": %.0f, \"upload_vs_nginx\": %.4f, \"upload_p99_ms\": %.1f, \"upload_errors\": %d, ", up, up / nginx, up_p99, up_err
	printf "\"download_per_s\": %.0f, \"download_vs_nginx\": %.4f, \"download_p99_ms\": %.1f, \"download_errors\": %d, ", down, down / nginx, down_p99, down_err
	printf "\"worker_cpu_s_per_1k_upload\": %.3f, \"master_cpu_s_per_1k_upload\": %.3f, ", wu / hz / up_ops * 1000, mu / hz / up_ops * 1000
	printf "\"master_write_kib_per_upload\": %.1f, ", mio / 1024 / up_ops
	printf "\"worker_cpu_s_per_1k_download\": %.3f, \"master_cpu_s_per_1k_download\": %.3f", wd / hz / down_ops * 1000, md / hz / down_ops * 1000
}'
echo "$large}"
