#!/usr/bin/env bash
# run.sh - the EchoFS benchmark (`make bench`): measures this machine's
# baselines and a throw-away local cluster in one run, then prints a table
# of figures, their ratios to the baselines and the performance targets,
# and writes bench/results/latest.json. docs/PERFORMANCE.md explains the
# figures.
#
#   baselines  dd conv=fsync of the large files (disk write); nginx from
#              Debian serving the same files (large download, 4 KiB req/s)
#   EchoFS     1 master + 3 workers on 127.0.0.1, replication 3, default
#              CHUNK_SIZE (1 MiB), SQLite, data on the repository's disk:
#              large uploads/downloads with curl (random and text files),
#              4 KiB uploads/downloads with bench/loadgen, peak RSS, CPU
#              seconds of each daemon per GiB (large files) and per 1,000
#              requests (4 KiB phases) from /proc/PID/stat
#   S3         the same cluster's S3 listener (S3_PORT, issue 13): one large
#              PUT and GET of another random file with boto3 (bench/s3_large.py,
#              put_object: one request, no multipart, as the REST upload is
#              one stream), the same with curl --aws-sigv4 and a third
#              file (the REST lines' client), 4 KiB PUTs/GETs with bench/loadgen
#              s3put/s3get (SigV4 by libcurl); each as a ratio to the same
#              operation through the REST API above
#   no cache   then the master alone restarts with CHUNK_CACHE_SIZE=0 on the
#              same data and workers, and the 4 KiB downloads run again
#              over the same files (issue 16's uncached figure)
#   EC         erasure coding (src/common/ec.c) of 4 MiB stripes, 4+2 and
#              10+4, one thread: encode and rebuild throughput as ratios to
#              memcpy of the same bytes (bench/ec_bench, no cluster)
#   EC cluster bench/ec_cluster.sh: a cluster of its own (1 master + 6
#              workers) with one file of the large size as replicas:3 and
#              one as ec:4+2: upload and download MiB/s side by side,
#              degraded reads with 1 and 2 workers SIGKILLed, the rebuild
#              of a lost worker's shards onto a spare, master and worker
#              CPU per GiB, and the workers' disk per stored byte
#   AWS mode   the local S3 server alone (s3rver through scripts/aws_local.sh,
#              on free ports): curl PUT and GET of each large file as one
#              object; then 1 master with S3_BUCKET_NAME (no workers) over
#              it: the same large uploads and downloads, CPU seconds of
#              master + s3rver (+ DynamoDB Local); ratios to the worker
#              mode, to s3rver alone and to dd/nginx
#
# Environment (all optional):
#   QUICK=1               64 MiB large files, 5 s small-file phases (< 2 min)
#   BENCH_LARGE_MIB       large file size (512; QUICK 64)
#   BENCH_SMALL_SECONDS   duration of each 4 KiB phase (20; QUICK 5)
#   BENCH_CONCURRENCY     4 KiB phase concurrency (16)
#   BENCH_S3_SIGNER       the 4 KiB S3 phases' signer: curl (libcurl derives
#                         the SigV4 key for every request; default) or cached
#                         (loadgen's own, the derived key kept per day as the
#                         AWS SDKs keep it: less client CPU on a shared machine)
#   BENCH_BASELINE_RUNS   dd and nginx large-file runs; the median counts (3)
#   BENCH_LOG_LEVEL       the daemons' LOG_LEVEL (warn: no access log lines)
#   BENCH_TMPDIR          where the run's temp dir goes (ROOT/build); keep it
#                         on the disk under test
#   BENCH_RESULTS         the JSON output (bench/results/latest.json)
#   BENCH_MILLION_RESULTS the latest `make bench-million` JSON the report
#                         quotes (bench/results/million-latest.json)
#   BENCH_KEEP=1          keep the temp dir (logs, data) for inspection
#   BENCH_STRICT=1        exit 1 when a target is missed (default: exit 0
#                         whenever the measurements themselves succeeded)
#   BENCH_EC=0            skip the EC cluster phase (bench/ec_cluster.sh)
#   BENCH_EC_LARGE_MIB    the EC cluster phase's file size (the large size)
#   BENCH_AWS=0           skip the AWS-mode phase (it is skipped, with the
#                         reason in the report, when node or s3rver is missing)
#   BENCH_AWS_METADATA    sqlite | dynamodb: the AWS-mode master's metadata.
#                         Default dynamodb when bin/echofs-master knows
#                         DYNAMODB_FILES_TABLE (then DynamoDB Local runs too,
#                         and the tables are made by scripts/aws_tables.sh),
#                         sqlite before that
#
# Every process it starts and the temp dir are removed on exit, failure,
# Ctrl-C or SIGTERM. The secrets are generated per run.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

case "${QUICK:-0}" in
0 | "" | no | false) QUICK=0 ;;
*) QUICK=1 ;;
esac
if [ "$QUICK" = 1 ]; then
	LARGE_MIB=${BENCH_LARGE_MIB:-64}
	SMALL_SECONDS=${BENCH_SMALL_SECONDS:-5}
else
	LARGE_MIB=${BENCH_LARGE_MIB:-512}
	SMALL_SECONDS=${BENCH_SMALL_SECONDS:-20}
fi
CONCURRENCY=${BENCH_CONCURRENCY:-16}
S3_SIGNER=${BENCH_S3_SIGNER:-curl}
case "$S3_SIGNER" in curl | cached) ;; *) bench_die "BENCH_S3_SIGNER must be curl or cached" ;; esac
BASELINE_RUNS=${BENCH_BASELINE_RUNS:-3}
SMALL_SIZE=4096
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results/latest.json}
MILLION_RESULTS=${BENCH_MILLION_RESULTS:-$ROOT/bench/results/million-latest.json}
LOADGEN=$ROOT/build/bench/loadgen
LARGE_BYTES=$((LARGE_MIB * 1048576))
EC_LARGE_MIB=${BENCH_EC_LARGE_MIB:-$LARGE_MIB}
case "${BENCH_EC:-1}" in
0 | no | false) EC_RUN=0 ;;
*) EC_RUN=1 ;;
esac

# The daemons' settings: the defaults, stated, except the log level.
export WORKER_COUNT=3 REPLICATION_FACTOR=3 LOG_LEVEL=${BENCH_LOG_LEVEL:-warn}
unset CHUNK_SIZE DATABASE_URL REDIS_ADDR

[ -x "$ROOT/bin/echofs-master" ] || bench_die "bin/echofs-master is missing: run \`make bench\`"
make --no-print-directory -s -C "$ROOT/bench"

# The metadata of the AWS phase, checked before anything runs: DynamoDB
# when the master knows it (its binary names DYNAMODB_FILES_TABLE), SQLite
# before that backend exists.
master_has_dynamodb=0
grep -qa DYNAMODB_FILES_TABLE "$ROOT/bin/echofs-master" && master_has_dynamodb=1
AWS_METADATA=${BENCH_AWS_METADATA:-}
if [ -z "$AWS_METADATA" ]; then
	AWS_METADATA=sqlite
	[ "$master_has_dynamodb" = 1 ] && AWS_METADATA=dynamodb
fi
case "$AWS_METADATA" in
sqlite) ;;
dynamodb)
	[ "$master_has_dynamodb" = 1 ] ||
		bench_die "BENCH_AWS_METADATA=dynamodb, but bin/echofs-master does not know DYNAMODB_FILES_TABLE"
	;;
*) bench_die "BENCH_AWS_METADATA must be sqlite or dynamodb, not '$AWS_METADATA'" ;;
esac
AWS_PREFIX=${AWS_LOCAL_PREFIX:-$ROOT/build/aws-local}
S3_PROBE=$ROOT/build/dev/tests/s3_probe

tmp_parent=${BENCH_TMPDIR:-$ROOT/build}
mkdir -p "$tmp_parent"
WORK=$(mktemp -d "$tmp_parent/bench-run.XXXXXX")
bench_install_traps
FACTS=$WORK/facts.env
: >"$FACTS"

# fact KEY VALUE - one measured or recorded figure, for report.py.
fact() {
	printf '%s=%s\n' "$1" "$2" >>"$FACTS"
}

# Space: the two large files, a dd copy, 3 replicas of each (the text one
# compressed ~4x), the small files, and a margin; for AWS mode one S3
# baseline object at a time and one copy of each file (text ~4x smaller).
# The S3 phase adds two more random files and their 3 replicas.
need_mib=$((LARGE_MIB * 2 + LARGE_MIB + LARGE_MIB * 3 + LARGE_MIB * 3 / 4 + 1024 + LARGE_MIB * 9 / 4 +
	LARGE_MIB * 8))
# The EC cluster phase, after the first cluster's data is gone: its two
# files, 3 replicas of one and 1.5x of the other, and the rebuilt shards.
[ "$EC_RUN" = 1 ] && need_mib=$((need_mib + EC_LARGE_MIB * 7))
avail_mib=$(df -Pm "$WORK" | awk 'NR == 2 { print $4 }')
[ "$avail_mib" -ge "$need_mib" ] ||
	bench_die "$WORK has $avail_mib MiB free, the run needs about $need_mib MiB"

fact date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
fact nproc "$(nproc)"
fact kernel "$(uname -r)"
fact cpu_model "$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
fact mem_total_mib $(($(awk '/^MemTotal:/ { print $2 }' /proc/meminfo) / 1024))
fact loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
fact fs_type "$(stat -f -c %T "$WORK")"
fact fs_device "$(df -P "$WORK" | awk 'NR == 2 { print $1 }')"
fact git_commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
fact quick "$QUICK"
fact large_bytes "$LARGE_BYTES"
fact small_size "$SMALL_SIZE"
fact small_seconds "$SMALL_SECONDS"
fact concurrency "$CONCURRENCY"
fact s3_signer "$S3_SIGNER"
fact baseline_runs "$BASELINE_RUNS"
fact workers "$WORKER_COUNT"
fact replication "$REPLICATION_FACTOR"
fact log_level "$LOG_LEVEL"
fact tmpdir "$WORK"

# ---- nginx ---------------------------------------------------------------

NGINX=""
POLICY_RC_CREATED=0
remove_policy_rc() {
	if [ "$POLICY_RC_CREATED" = 1 ]; then
		${SUDO:-} rm -f /usr/sbin/policy-rc.d
		POLICY_RC_CREATED=0
	fi
}
BENCH_CLEANUP_HOOKS+=(remove_policy_rc)

find_nginx() {
	NGINX=$(command -v nginx || true)
	[ -n "$NGINX" ] || { [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx; } || true
}

# Installs Debian's nginx if it is missing. A temporary policy-rc.d keeps
# the package from starting a system-wide nginx on port 80: the benchmark
# runs its own.
ensure_nginx() {
	find_nginx
	[ -n "$NGINX" ] && return 0
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	bench_log "installing nginx (apt-get install -y nginx)"
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
		$SUDO chmod 755 /usr/sbin/policy-rc.d
		POLICY_RC_CREATED=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	local apt=(apt-get -o DPkg::Lock::Timeout=300)
	[ -z "$SUDO" ] || apt=("$SUDO" "${apt[@]}")
	if ! "${apt[@]}" install -y -q nginx >"$WORK/apt.log" 2>&1; then
		"${apt[@]}" update -qq >>"$WORK/apt.log" 2>&1 || true
		"${apt[@]}" install -y -q nginx >>"$WORK/apt.log" 2>&1 ||
			{ tail -n 20 "$WORK/apt.log" >&2; bench_die "could not install nginx"; }
	fi
	remove_policy_rc
	find_nginx
	[ -n "$NGINX" ] || bench_die "nginx is not on PATH after installing it"
}

# nginx_start DOCROOT - nginx in the foreground (daemon off) on a free port,
# serving DOCROOT with sendfile, keep-alive and no access log. Sets
# NGINX_URL and NGINX_PID.
nginx_start() {
	local docroot=$1 dir=$WORK/nginx port user_line="" i
	mkdir -p "$dir/tmp"
	port=$(bench_pick_ports 1) || bench_die "no free port for nginx"
	# As root nginx's workers would run as nobody, who cannot read the
	# temp dir; they run as the invoking user instead.
	[ "$(id -u)" -eq 0 ] && user_line="user root;"
	cat >"$dir/nginx.conf" <<EOF
$user_line
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	tcp_nodelay on;
	keepalive_timeout 75s;
	keepalive_requests 1000000;
	default_type application/octet-stream;
	client_body_temp_path $dir/tmp/body;
	proxy_temp_path $dir/tmp/proxy;
	fastcgi_temp_path $dir/tmp/fastcgi;
	uwsgi_temp_path $dir/tmp/uwsgi;
	scgi_temp_path $dir/tmp/scgi;
	server {
		listen 127.0.0.1:$port;
		root $docroot;
	}
}
EOF
	bench_spawn "$dir/stderr.log" "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" \
		-g 'daemon off;'
	NGINX_PID=$BENCH_LAST_PID
	NGINX_URL="http://127.0.0.1:$port"
	for i in $(seq 1 100); do
		curl -sf -o /dev/null "$NGINX_URL/small.bin" && return 0
		kill -0 "$NGINX_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$dir/stderr.log" "$dir/error.log" >&2 2>/dev/null || true
	bench_die "nginx did not start"
}

# ---- measuring helpers -----------------------------------------------------

# curl_get URL [HEADER] - one streaming download to
# /dev/null; sets GET_SECONDS and GET_BYTES.
curl_get() {
	local url=$1 header=${2:-X-Bench: 1} out code
	out=$(curl -sS -o /dev/null -H "$header" -w '%{http_code} %{time_total} %{size_download}' "$url")
	read -r code GET_SECONDS GET_BYTES <<<"$out"
	[ "$code" = 200 ] || bench_die "GET $url answered HTTP $code"
}

# ticks_s TICKS - clock ticks as CPU seconds (2 decimals).
ticks_s() {
	awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'
}

# cpu_mark - every cluster daemon's CPU ticks now (DAEMONS: the master,
# then the workers), kept in CPU_MARK for cpu_facts.
cpu_mark() {
	read -r -a CPU_MARK <<<"$(bench_cpu_each "${DAEMONS[@]}")"
}

# cpu_facts PHASE - the CPU seconds each daemon spent since cpu_mark:
# cpu_PHASE_master_s and cpu_PHASE_worker<N>_s (N from 1, as WORKER_PIDS).
cpu_facts() {
	local now i
	read -r -a now <<<"$(bench_cpu_each "${DAEMONS[@]}")"
	fact "cpu_$1_master_s" "$(ticks_s $((now[0] - CPU_MARK[0])))"
	for ((i = 1; i < ${#now[@]}; i++)); do
		fact "cpu_$1_worker${i}_s" "$(ticks_s $((now[i] - CPU_MARK[i])))"
	done
}

mib_per_s() { # BYTES SECONDS
	awk -v b="$1" -v s="$2" 'BEGIN { printf "%.2f", b / 1048576 / s }'
}

median() { # NUMBER... (lib.sh: the mean of the two middle values of an even count)
	bench_median "$@"
}

# loadgen_run NAME ARGS... - run the load generator, keep its JSON as
# WORK/NAME.json, and fail on a run where every request failed.
loadgen_run() {
	local name=$1
	shift
	"$LOADGEN" "$@" >"$WORK/$name.json" || bench_die "loadgen $name failed"
	grep -q '"ops": 0,' "$WORK/$name.json" && bench_die "loadgen $name: no request succeeded"
	return 0
}

# ---- 1. test data ----------------------------------------------------------

FILES=$WORK/files
mkdir -p "$FILES"
chmod 755 "$WORK" "$FILES"
bench_log "generating the test files: ${LARGE_MIB} MiB random, ${LARGE_MIB} MiB text, 4 KiB"
"$LOADGEN" gen --kind random --size "$LARGE_BYTES" --seed 1 >"$FILES/random.bin"
"$LOADGEN" gen --kind text --size "$LARGE_BYTES" --seed 2 >"$FILES/text.txt"
"$LOADGEN" gen --kind random --size "$SMALL_SIZE" --seed 3 >"$FILES/small.bin"
# The S3 PUTs' files (boto3, curl): random like random.bin but other
# bytes, so that deduplication never short-cuts one.
"$LOADGEN" gen --kind random --size "$LARGE_BYTES" --seed 4 >"$FILES/s3.bin"
"$LOADGEN" gen --kind random --size "$LARGE_BYTES" --seed 5 >"$FILES/s3-curl.bin"
# Written back now, so that no writeback of them overlaps a measurement.
sync "$FILES/random.bin" "$FILES/text.txt" "$FILES/small.bin" "$FILES/s3.bin" "$FILES/s3-curl.bin"
declare -A SHA
for kind in random text; do
	file=$FILES/random.bin
	[ "$kind" = text ] && file=$FILES/text.txt
	SHA[$kind]=$(sha256sum "$file" | cut -d' ' -f1)
done

# ---- 1b. erasure coding, one thread, no cluster --------------------------------

# Encode and rebuild of 4 MiB stripes (4+2, 10+4) against memcpy of the
# same bytes, on the thread's CPU clock (bench/ec_bench.c); before the
# cluster starts, so nothing of ours competes for the CPU.
EC_BENCH=$ROOT/build/bench/ec_bench
ec_runs=7
[ "$QUICK" = 1 ] && ec_runs=3
bench_log "erasure coding: encode and rebuild of 4 MiB stripes against memcpy (ec_bench)"
"$EC_BENCH" --facts --runs "$ec_runs" 4+2 10+4 >>"$FACTS" || bench_die "ec_bench failed"

# ---- 2. baseline: the disk -------------------------------------------------

for kind in random text; do
	file=$FILES/random.bin
	[ "$kind" = text ] && file=$FILES/text.txt
	bench_log "baseline: dd conv=fsync of the $kind file (median of $BASELINE_RUNS)"
	samples=()
	for _ in $(seq 1 "$BASELINE_RUNS"); do
		LC_ALL=C dd if="$file" of="$WORK/dd.out" bs=1M conv=fsync 2>"$WORK/dd.log"
		secs=$(sed -n 's/.* copied, \([0-9.e+-]*\) s,.*/\1/p' "$WORK/dd.log")
		[ -n "$secs" ] || bench_die "cannot read dd's output: $(cat "$WORK/dd.log")"
		samples+=("$(mib_per_s "$LARGE_BYTES" "$secs")")
		rm -f "$WORK/dd.out"
	done
	fact "dd_${kind}_mib_s" "$(median "${samples[@]}")"
	fact "dd_${kind}_samples" "${samples[*]}"
done

# ---- 3. baseline: nginx ----------------------------------------------------

ensure_nginx
fact nginx_version "$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')"
nginx_start "$FILES"
for kind in random text; do
	name=random.bin
	[ "$kind" = text ] && name=text.txt
	bench_log "baseline: nginx download of the $kind file (median of $BASELINE_RUNS)"
	samples=()
	for _ in $(seq 1 "$BASELINE_RUNS"); do
		curl_get "$NGINX_URL/$name"
		[ "$GET_BYTES" = "$LARGE_BYTES" ] || bench_die "nginx sent $GET_BYTES bytes of $name"
		samples+=("$(mib_per_s "$GET_BYTES" "$GET_SECONDS")")
	done
	fact "nginx_${kind}_mib_s" "$(median "${samples[@]}")"
	fact "nginx_${kind}_samples" "${samples[*]}"
done
bench_log "baseline: nginx 4 KiB GETs, concurrency $CONCURRENCY, ${SMALL_SECONDS} s"
loadgen_run nginx-4k get --url "$NGINX_URL/small.bin" --size "$SMALL_SIZE" \
	--concurrency "$CONCURRENCY" --seconds "$SMALL_SECONDS"
bench_stop "$NGINX_PID"

# ---- 4. EchoFS: large files --------------------------------------------------

bench_log "starting the cluster: 1 master + $WORKER_COUNT workers, replication $REPLICATION_FACTOR"
# The master serves S3 too (the S3 phase, section 6b); the workers ignore it.
S3_PORT=$(bench_pick_ports 1) || bench_die "no free port for the S3 listener"
export S3_PORT
bench_cluster_start "$WORK/cluster"
S3_URL="http://127.0.0.1:$S3_PORT"
AUTH="Authorization: Bearer $TOKEN"
DAEMONS=("$MASTER_PID" "${WORKER_PIDS[@]}")
CLK_TCK=$(getconf CLK_TCK)
fact clk_tck "$CLK_TCK"

declare -A FILE_ID
cpu_upload_start=$(bench_cpu_ticks "${DAEMONS[@]}")
for kind in random text; do
	file=$FILES/random.bin
	[ "$kind" = text ] && file=$FILES/text.txt
	bench_log "EchoFS: upload of the $kind file (${LARGE_MIB} MiB, curl -T, one request)"
	before=$(bench_cpu_ticks "${DAEMONS[@]}")
	cpu_mark
	# -T streams the file (--data-binary @file would read it whole).
	out=$(curl -sS -X POST -T "$file" -H "$AUTH" -H 'Content-Type: application/octet-stream' \
		-H 'Expect:' -o "$WORK/upload-$kind.json" -w '%{http_code} %{time_total}' \
		"$MASTER_URL/api/v1/files/upload?name=bench-$kind")
	after=$(bench_cpu_ticks "${DAEMONS[@]}")
	cpu_facts "upload_$kind"
	read -r code secs <<<"$out"
	[ "$code" = 201 ] ||
		bench_die "upload of the $kind file: HTTP $code: $(head -c 300 "$WORK/upload-$kind.json")"
	bench_alive "${DAEMONS[@]}"
	resp=$WORK/upload-$kind.json
	FILE_ID[$kind]=$(sed -n 's/.*"file_id": *"\([0-9a-f]*\)".*/\1/p' "$resp")
	sha=$(sed -n 's/.*"sha256": *"\([0-9a-f]*\)".*/\1/p' "$resp")
	stored=$(sed -n 's/.*"stored_bytes": *\([0-9]*\).*/\1/p' "$resp")
	[ "$sha" = "${SHA[$kind]}" ] || bench_die "the $kind file's sha256 is $sha, expected ${SHA[$kind]}"
	fact "upload_${kind}_mib_s" "$(mib_per_s "$LARGE_BYTES" "$secs")"
	fact "upload_${kind}_cpu_s" "$(awk -v t=$((after - before)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')"
	fact "stored_${kind}_bytes" "$stored"
done
cpu_upload_end=$(bench_cpu_ticks "${DAEMONS[@]}")
fact upload_cpu_s "$(awk -v t=$((cpu_upload_end - cpu_upload_start)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')"
fact upload_bytes $((LARGE_BYTES * 2))

for kind in random text; do
	bench_log "EchoFS: download of the $kind file"
	before=$(bench_cpu_ticks "${DAEMONS[@]}")
	cpu_mark
	curl_get "$MASTER_URL/api/v1/files/${FILE_ID[$kind]}/download" "$AUTH"
	after=$(bench_cpu_ticks "${DAEMONS[@]}")
	cpu_facts "download_$kind"
	[ "$GET_BYTES" = "$LARGE_BYTES" ] || bench_die "the $kind download sent $GET_BYTES bytes"
	fact "download_${kind}_mib_s" "$(mib_per_s "$GET_BYTES" "$GET_SECONDS")"
	fact "download_${kind}_cpu_s" "$(awk -v t=$((after - before)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')"
done

# ---- 5. EchoFS: 4 KiB files ------------------------------------------------

bench_log "EchoFS: 4 KiB uploads, concurrency $CONCURRENCY, ${SMALL_SECONDS} s"
cpu_mark
loadgen_run small-upload upload --url "$MASTER_URL" --token "$TOKEN" --size "$SMALL_SIZE" \
	--concurrency "$CONCURRENCY" --seconds "$SMALL_SECONDS" --ids-out "$WORK/ids.txt"
cpu_facts small_upload
bench_alive "${DAEMONS[@]}"
bench_log "EchoFS: 4 KiB downloads, concurrency $CONCURRENCY, ${SMALL_SECONDS} s"
cpu_mark
loadgen_run small-download download --url "$MASTER_URL" --token "$TOKEN" --ids "$WORK/ids.txt" \
	--size "$SMALL_SIZE" --concurrency "$CONCURRENCY" --seconds "$SMALL_SECONDS"
cpu_facts small_download
bench_alive "${DAEMONS[@]}"

# ---- 6. memory, then the report ----------------------------------------------

fact master_vmhwm_kib "$(bench_status_kib "$MASTER_PID" VmHWM)"
i=1
for pid in "${WORKER_PIDS[@]}"; do
	fact "worker${i}_vmhwm_kib" "$(bench_status_kib "$pid" VmHWM)"
	i=$((i + 1))
done

# ---- 6b. S3: the same operations through the S3 endpoint ----------------------

# After the REST phases and their memory figures, on the same cluster, so
# that each S3 figure has its REST twin from this run: the large PUT/GET
# against the random file's upload/download (same size, random bytes, one
# request each), 4 KiB PUT/GET against the 4 KiB uploads/downloads (same
# load generator, concurrency and duration). The REST side streams with
# curl and sends a bearer token; the S3 side is boto3 for the large
# transfers (issue 13 asks for an S3 client; over plain HTTP it reads the
# file once to hash it for the signature before sending) and SigV4-signing
# libcurl for the small ones.
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=python3
bench_log "S3: an access key (POST /api/v1/keys) and the bucket"
code=$(curl -sS -X POST -H "$AUTH" -o "$WORK/s3-key.json" -w '%{http_code}' "$MASTER_URL/api/v1/keys") ||
	bench_die "POST /api/v1/keys failed"
[ "$code" = 201 ] || bench_die "POST /api/v1/keys: HTTP $code: $(head -c 300 "$WORK/s3-key.json")"
S3_KEY_ID=$("$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["access_key_id"])' <"$WORK/s3-key.json")
S3_SECRET=$("$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["secret_access_key"])' <"$WORK/s3-key.json")
S3_BUCKET=echofs-bench
S3_REGION=${AWS_REGION:-us-east-1} # the master's region: it reads AWS_REGION too
"$PYTHON" -c 'import boto3' 2>/dev/null ||
	bench_die "boto3 is missing for $PYTHON (Debian: python3-boto3; scripts/install-deps.sh)"
bench_log "S3: boto3 put_object and get_object of a ${LARGE_MIB} MiB random file (one request each)"
before=$(bench_cpu_ticks "${DAEMONS[@]}")
"$PYTHON" "$ROOT/bench/s3_large.py" --endpoint "$S3_URL" --key-id "$S3_KEY_ID" --secret "$S3_SECRET" \
	--region "$S3_REGION" --bucket "$S3_BUCKET" --key bench-large/random.bin --file "$FILES/s3.bin" --create-bucket \
	>"$WORK/s3-large.json" || bench_die "the S3 large PUT/GET failed (bench/s3_large.py)"
after=$(bench_cpu_ticks "${DAEMONS[@]}")
bench_alive "${DAEMONS[@]}"
fact s3_large_cpu_s "$(awk -v t=$((after - before)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')"
# The same with the REST lines' own client: curl streaming the file, signed
# by curl (UNSIGNED-PAYLOAD, so neither side hashes the body for the
# signature; no "Expect:" header, which curl would sign but not send).
bench_log "S3: curl --aws-sigv4 PUT and GET of a ${LARGE_MIB} MiB random file"
s3_sig=(-sS --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_KEY_ID:$S3_SECRET"
	-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD')
before=$(bench_cpu_ticks "${DAEMONS[@]}")
out=$(curl "${s3_sig[@]}" -T "$FILES/s3-curl.bin" -H 'Content-Type: application/octet-stream' \
	-o "$WORK/s3-curl-put.out" -w '%{http_code} %{time_total}' "$S3_URL/$S3_BUCKET/bench-large/curl.bin")
read -r code secs <<<"$out"
[ "$code" = 200 ] || bench_die "S3 curl PUT: HTTP $code: $(head -c 300 "$WORK/s3-curl-put.out")"
fact s3_curl_put_mib_s "$(mib_per_s "$LARGE_BYTES" "$secs")"
out=$(curl "${s3_sig[@]}" -o /dev/null -w '%{http_code} %{time_total} %{size_download}' \
	"$S3_URL/$S3_BUCKET/bench-large/curl.bin")
read -r code secs bytes <<<"$out"
{ [ "$code" = 200 ] && [ "$bytes" = "$LARGE_BYTES" ]; } || bench_die "S3 curl GET: HTTP $code, $bytes bytes"
fact s3_curl_get_mib_s "$(mib_per_s "$LARGE_BYTES" "$secs")"
after=$(bench_cpu_ticks "${DAEMONS[@]}")
bench_alive "${DAEMONS[@]}"
fact s3_curl_large_cpu_s "$(awk -v t=$((after - before)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')"
bench_log "S3: 4 KiB PUTs, concurrency $CONCURRENCY, ${SMALL_SECONDS} s"
loadgen_run s3-small-put s3put --url "$S3_URL" --bucket "$S3_BUCKET" --s3-user "$S3_KEY_ID:$S3_SECRET" \
	--region "$S3_REGION" --signer "$S3_SIGNER" \
	--size "$SMALL_SIZE" --concurrency "$CONCURRENCY" --seconds "$SMALL_SECONDS" \
	--ids-out "$WORK/s3-keys.txt"
bench_alive "${DAEMONS[@]}"
bench_log "S3: 4 KiB GETs, concurrency $CONCURRENCY, ${SMALL_SECONDS} s"
loadgen_run s3-small-get s3get --url "$S3_URL" --bucket "$S3_BUCKET" --s3-user "$S3_KEY_ID:$S3_SECRET" \
	--region "$S3_REGION" --signer "$S3_SIGNER" \
	--ids "$WORK/s3-keys.txt" --size "$SMALL_SIZE" --concurrency "$CONCURRENCY" \
	--seconds "$SMALL_SECONDS"
bench_alive "${DAEMONS[@]}"
fact s3_master_vmhwm_kib "$(bench_status_kib "$MASTER_PID" VmHWM)"

# ---- 6c. 4 KiB downloads without the master's chunk cache ----------------------

# The master alone restarts with CHUNK_CACHE_SIZE=0 on the same data and
# workers, and the 4 KiB downloads run again over the files of the upload
# phase (WORK/ids.txt), as issue 16's uncached figure asks. After the S3
# phase, so that every S3 line had the same master as its REST twin; the
# S3 phase's files are in the store too but never downloaded here. The
# CPU marks start after the master is back: its start-up is not counted.
unset S3_PORT
bench_log "EchoFS: restarting the master with CHUNK_CACHE_SIZE=0 (same data, same workers)"
bench_master_restart "$WORK/cluster" nocache CHUNK_CACHE_SIZE=0
DAEMONS=("$MASTER_PID" "${WORKER_PIDS[@]}")
bench_log "EchoFS: 4 KiB downloads without the chunk cache, concurrency $CONCURRENCY, ${SMALL_SECONDS} s"
cpu_mark
loadgen_run small-download-nocache download --url "$MASTER_URL" --token "$TOKEN" --ids "$WORK/ids.txt" \
	--size "$SMALL_SIZE" --concurrency "$CONCURRENCY" --seconds "$SMALL_SECONDS"
cpu_facts small_download_nocache
bench_alive "${DAEMONS[@]}"
fact nocache_master_vmhwm_kib "$(bench_status_kib "$MASTER_PID" VmHWM)"
bench_stop "${DAEMONS[@]}"

# ---- 6d. erasure coding in a cluster -------------------------------------------

# A cluster of its own (bench/ec_cluster.sh: 6 workers, ec:4+2 beside
# replicas:3), after the first one has stopped and its data is removed.
if [ "$EC_RUN" = 1 ]; then
	rm -rf "$WORK/cluster"
	bench_log "EC cluster: ${EC_LARGE_MIB} MiB as replicas:3 and as ec:4+2 (bench/ec_cluster.sh)"
	WORK="$WORK/ec" FACTS="$FACTS" LARGE_BYTES=$((EC_LARGE_MIB * 1048576)) LOADGEN="$LOADGEN" \
		ROOT="$ROOT" LOG_LEVEL="$LOG_LEVEL" "$ROOT/bench/ec_cluster.sh" ||
		bench_die "the EC cluster phase failed (BENCH_KEEP=1 keeps its logs under $WORK/ec)"
	[ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$WORK/ec"
else
	bench_log "EC cluster phase skipped: BENCH_EC=0"
	fact ecc_skipped "BENCH_EC=0"
fi

# ---- 7. AWS mode: the same large files through S3 ----------------------------

# s3_curl METHOD KEY [FILE] - one SigV4-signed request to the local S3
# server (curl signs; UNSIGNED-PAYLOAD, as s3rver_sigv4.js allows), PUT
# streaming FILE or GET to /dev/null. Sets S3_SECONDS and S3_BYTES.
s3_curl() {
	local method=$1 key=$2 file=${3:-} out code
	local args=(-sS --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY"
		-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -H 'Expect:')
	if [ "$method" = PUT ]; then
		out=$(curl "${args[@]}" -T "$file" -o "$WORK/s3-put.out" \
			-w '%{http_code} %{time_total} %{size_upload}' "$AWS_ENDPOINT_URL_S3/$S3_BUCKET_NAME/$key")
	else
		out=$(curl "${args[@]}" -o /dev/null -w '%{http_code} %{time_total} %{size_download}' \
			"$AWS_ENDPOINT_URL_S3/$S3_BUCKET_NAME/$key")
	fi
	read -r code S3_SECONDS S3_BYTES <<<"$out"
	if [ "$code" != 200 ]; then
		[ "$method" = PUT ] && head -c 300 "$WORK/s3-put.out" >&2
		bench_die "S3 $method $key answered HTTP $code"
	fi
}

# aws_skip REASON - the AWS phase does not run; the report says why.
aws_skip() {
	bench_log "AWS mode skipped: $1"
	fact aws_skipped "$1"
}

AWS_DIR=$WORK/aws
aws_stop_servers() {
	[ -d "$AWS_DIR" ] || return 0
	"$ROOT/scripts/aws_local.sh" stop "$AWS_DIR" >/dev/null 2>&1
}


case "${BENCH_AWS:-1}" in
0 | no | false) aws_skip "BENCH_AWS=0" ;;
*)
	if ! command -v node >/dev/null; then
		aws_skip "node is missing (s3rver runs on Node.js; scripts/install-deps.sh)"
	elif [ ! -f "$AWS_PREFIX/node_modules/s3rver/bin/s3rver.js" ]; then
		aws_skip "s3rver is missing under $AWS_PREFIX (scripts/aws_local.sh install)"
	elif [ ! -x "$S3_PROBE" ]; then
		aws_skip "$S3_PROBE is missing (make all)"
	elif [ "$AWS_METADATA" = dynamodb ] && ! command -v java >/dev/null; then
		aws_skip "java is missing (DynamoDB Local; BENCH_AWS_METADATA=sqlite runs without it)"
	else
		AWS_RUN=1
	fi
	;;
esac

if [ "${AWS_RUN:-0}" = 1 ]; then
	fact aws_metadata "$AWS_METADATA"
	servers=s3
	[ "$AWS_METADATA" = dynamodb ] && servers=all
	bench_log "AWS mode: starting the local servers ($servers; free ports) and creating the bucket"
	BENCH_CLEANUP_HOOKS+=(aws_stop_servers)
	# Free ports always (never aws_test_config.sh's fixed 8000/4568), a
	# bucket of our own, the servers' key pair.
	AWS_LOCAL_SERVERS=$servers AWS_LOCAL_DYNAMODB_PORT=0 AWS_LOCAL_S3_PORT=0 AWS_LOCAL_PREFIX="$AWS_PREFIX" \
		S3_BUCKET_NAME=echofs-bench DYNAMODB_FILES_TABLE=bench-files \
		DYNAMODB_CHUNKS_TABLE=bench-chunks DYNAMODB_SESSIONS_TABLE=bench-sessions \
		"$ROOT/scripts/aws_local.sh" start "$AWS_DIR" >"$WORK/aws-start.log" 2>&1 ||
		{ cat "$WORK/aws-start.log" >&2; bench_die "scripts/aws_local.sh start failed (logs in $AWS_DIR)"; }
	unset AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_ENDPOINT_URL_DYNAMODB AWS_SESSION_TOKEN AWS_PROFILE \
		DYNAMODB_FILES_TABLE DYNAMODB_CHUNKS_TABLE DYNAMODB_SESSIONS_TABLE
	set -a
	# shellcheck disable=SC1091 # written by aws_local.sh start
	. "$AWS_DIR/env"
	set +a
	AWS_PIDS=("$(cat "$AWS_DIR/s3rver.pid")")
	if [ "$AWS_METADATA" = dynamodb ]; then
		AWS_PIDS+=("$(cat "$AWS_DIR/dynamodb.pid")")
		"$ROOT/scripts/aws_tables.sh" create >"$WORK/aws-tables.log" 2>&1 ||
			{ cat "$WORK/aws-tables.log" >&2; bench_die "scripts/aws_tables.sh create failed"; }
	else
		"$S3_PROBE" bucket-create >"$WORK/aws-bucket.log" 2>&1 ||
			{ cat "$WORK/aws-bucket.log" >&2; bench_die "could not create the bucket"; }
	fi
	fact s3rver_version "$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p;T;q' \
		"$AWS_PREFIX/node_modules/s3rver/package.json")"
	fact node_version "$(node --version)"

	# The S3 server alone: each large file PUT as one object and GET back
	# with curl, the median of BASELINE_RUNS; then removed.
	for kind in random text; do
		file=$FILES/random.bin
		[ "$kind" = text ] && file=$FILES/text.txt
		bench_log "S3 baseline: curl PUT and GET of the $kind file to s3rver (median of $BASELINE_RUNS)"
		put_samples=()
		get_samples=()
		for run in $(seq 1 "$BASELINE_RUNS"); do
			s3_curl PUT "bench-baseline/$kind-$run" "$file"
			[ "$S3_BYTES" = "$LARGE_BYTES" ] || bench_die "S3 PUT sent $S3_BYTES bytes of the $kind file"
			put_samples+=("$(mib_per_s "$LARGE_BYTES" "$S3_SECONDS")")
			s3_curl GET "bench-baseline/$kind-$run"
			[ "$S3_BYTES" = "$LARGE_BYTES" ] || bench_die "S3 GET sent $S3_BYTES bytes of the $kind file"
			get_samples+=("$(mib_per_s "$LARGE_BYTES" "$S3_SECONDS")")
			"$S3_PROBE" delete "bench-baseline/$kind-$run" >/dev/null ||
				bench_die "could not delete bench-baseline/$kind-$run"
		done
		fact "s3_put_${kind}_mib_s" "$(median "${put_samples[@]}")"
		fact "s3_put_${kind}_samples" "${put_samples[*]}"
		fact "s3_get_${kind}_mib_s" "$(median "${get_samples[@]}")"
		fact "s3_get_${kind}_samples" "${get_samples[*]}"
	done

	bench_log "AWS mode: starting a master (S3 chunks, $AWS_METADATA metadata; no workers)"
	port=$(bench_pick_ports 1) || bench_die "no free port for the AWS-mode master"
	AWS_MASTER_URL="http://127.0.0.1:$port"
	MASTER_HOST=127.0.0.1 MASTER_PORT=$port GRPC_PORT=0 DATA_DIR="$WORK/aws-master" \
		bench_spawn "$WORK/aws-master.log" "$ROOT/bin/echofs-master"
	AWS_MASTER_PID=$BENCH_LAST_PID
	health=""
	for _ in $(seq 1 150); do
		kill -0 "$AWS_MASTER_PID" 2>/dev/null || break
		health=$(curl -s "$AWS_MASTER_URL/api/v1/health" || true)
		case "$health" in *'"chunk_store": "ok"'* | *'"chunk_store":"ok"'*) break ;; esac
		sleep 0.1
	done
	case "$health" in *'"chunk_store": "ok"'* | *'"chunk_store":"ok"'*) ;; *)
		tail -n 20 "$WORK/aws-master.log" >&2 || true
		bench_die "the AWS-mode master did not come up with its bucket reachable: $health"
		;;
	esac
	backend=$(printf '%s' "$health" | sed -n 's/.*"metadata_backend": *"\([a-z]*\)".*/\1/p')
	[ "$backend" = "$AWS_METADATA" ] ||
		bench_die "the AWS-mode master reports metadata_backend '$backend', expected $AWS_METADATA"
	AWS_DAEMONS=("$AWS_MASTER_PID" "${AWS_PIDS[@]}")
	AWS_NAMES=(master s3rver)
	[ "$AWS_METADATA" = dynamodb ] && AWS_NAMES+=(dynamodb)
	declare -A AWS_TICKS
	# aws_cpu_snapshot WHEN - each AWS-mode daemon's CPU ticks, by name.
	aws_cpu_snapshot() {
		local i
		for i in "${!AWS_NAMES[@]}"; do
			AWS_TICKS[$1.${AWS_NAMES[i]}]=$(bench_cpu_ticks "${AWS_DAEMONS[i]}")
		done
	}
	# aws_cpu_facts PREFIX - PREFIX_<name>_cpu_s for each daemon, from
	# the before and after snapshots.
	aws_cpu_facts() {
		local name
		for name in "${AWS_NAMES[@]}"; do
			fact "$1_${name}_cpu_s" "$(awk -v t=$((${AWS_TICKS[after.$name]} - ${AWS_TICKS[before.$name]})) \
				-v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')"
		done
	}

	declare -A AWS_FILE_ID
	for kind in random text; do
		file=$FILES/random.bin
		[ "$kind" = text ] && file=$FILES/text.txt
		bench_log "AWS mode: upload of the $kind file (${LARGE_MIB} MiB, curl -T, one request)"
		before=$(bench_cpu_ticks "${AWS_DAEMONS[@]}")
		aws_cpu_snapshot before
		out=$(curl -sS -X POST -T "$file" -H "$AUTH" -H 'Content-Type: application/octet-stream' \
			-H 'Expect:' -o "$WORK/aws-upload-$kind.json" -w '%{http_code} %{time_total}' \
			"$AWS_MASTER_URL/api/v1/files/upload?name=bench-$kind")
		after=$(bench_cpu_ticks "${AWS_DAEMONS[@]}")
		aws_cpu_snapshot after
		read -r code secs <<<"$out"
		[ "$code" = 201 ] ||
			bench_die "AWS mode: upload of the $kind file: HTTP $code: $(head -c 300 "$WORK/aws-upload-$kind.json")"
		bench_alive "${AWS_DAEMONS[@]}"
		resp=$WORK/aws-upload-$kind.json
		AWS_FILE_ID[$kind]=$(sed -n 's/.*"file_id": *"\([0-9a-f]*\)".*/\1/p' "$resp")
		sha=$(sed -n 's/.*"sha256": *"\([0-9a-f]*\)".*/\1/p' "$resp")
		[ "$sha" = "${SHA[$kind]}" ] ||
			bench_die "AWS mode: the $kind file's sha256 is $sha, expected ${SHA[$kind]}"
		fact "aws_upload_${kind}_mib_s" "$(mib_per_s "$LARGE_BYTES" "$secs")"
		fact "aws_upload_${kind}_cpu_s" "$(awk -v t=$((after - before)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')"
		aws_cpu_facts "aws_upload_${kind}"
	done
	for kind in random text; do
		bench_log "AWS mode: download of the $kind file"
		before=$(bench_cpu_ticks "${AWS_DAEMONS[@]}")
		aws_cpu_snapshot before
		curl_get "$AWS_MASTER_URL/api/v1/files/${AWS_FILE_ID[$kind]}/download" "$AUTH"
		after=$(bench_cpu_ticks "${AWS_DAEMONS[@]}")
		aws_cpu_snapshot after
		[ "$GET_BYTES" = "$LARGE_BYTES" ] || bench_die "AWS mode: the $kind download sent $GET_BYTES bytes"
		fact "aws_download_${kind}_mib_s" "$(mib_per_s "$GET_BYTES" "$GET_SECONDS")"
		fact "aws_download_${kind}_cpu_s" "$(awk -v t=$((after - before)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')"
		aws_cpu_facts "aws_download_${kind}"
	done
	fact aws_master_vmhwm_kib "$(bench_status_kib "$AWS_MASTER_PID" VmHWM)"
	fact aws_s3rver_vmhwm_kib "$(bench_status_kib "${AWS_PIDS[0]}" VmHWM)"
	[ "$AWS_METADATA" = dynamodb ] &&
		fact aws_dynamodb_vmhwm_kib "$(bench_status_kib "${AWS_PIDS[1]}" VmHWM)"
	bench_stop "$AWS_MASTER_PID"
	aws_stop_servers
fi

fact loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$(dirname "$RESULTS")"
report_args=(--work "$WORK" --out "$RESULTS" --million "$MILLION_RESULTS")
[ "${BENCH_STRICT:-0}" = 1 ] && report_args+=(--strict)
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=python3
"$PYTHON" "$ROOT/bench/report.py" "${report_args[@]}"
