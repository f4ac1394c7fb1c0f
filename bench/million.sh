#!/usr/bin/env bash
# million.sh - costs at a million files: the same measurements on an empty
# cluster and on one holding N small files, in one run, as full/empty
# ratios (docs/PERFORMANCE.md#costs-at-a-million-files).
#
#   make bench-million [N=1000000] [BACKENDS="sqlite postgres"] [SECONDS=10]
#   bench/million.sh            (the same; N, BACKENDS, SECONDS from the environment)
#
# Per backend: one master and one worker (REPLICATION_FACTOR=1) on free
# ports, data under a new directory in /var/tmp (removed at the end unless
# BENCH_KEEP=1; about 1.5 GB at N=1,000,000).
#
#  1. empty: the cluster starts on empty stores; the HTTP measurements run
#     (below); it stops; the store probes run (build/bench/million).
#  2. fill: build/bench/million writes N files (one 512-byte chunk each,
#     replica on this worker) into the metadata store through
#     efs_meta_file_create_single and the same chunks into the worker's
#     volumes through its store module, from several threads.
#  3. full: the store probes again; the cluster starts again on the filled
#     stores; the HTTP measurements again.
#
# HTTP measurements: 4 KiB uploads and downloads (bench/loadgen, c=8,
# SECONDS each), GET /api/v1/files first page and last page (a cursor past
# every older file; median of 5), the master's CPU while idle for 10 s
# (what its periodic duties cost), a worker restart until it answers
# (index rebuild) and until its full chunk report is sent (at most
# REPORT_WAIT seconds, 600: then recorded as ">600000" and the run goes on).
# Store probes: listing first/last page, one collector pass's and one repair
# pass's store calls, the totals, the worker store's open (rebuild), walk,
# and per-chunk read+verify (the scrubber's work; the page cache is warm).
#
# PostgreSQL runs through scripts/services.sh on free ports (its own data
# directory, stopped at the end). Not a test: nothing asserts a time; the
# machine may be shared, so compare the ratios, and note the load (printed).
#
# Output: the table on stdout (and build/bench/million-STAMP.md), and the
# same figures as JSON in bench/results/million-STAMP.json, copied to
# BENCH_MILLION_RESULTS (bench/results/million-latest.json), which
# `make bench`'s report quotes with its date and commit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-1000000}
BACKENDS=${BACKENDS:-sqlite}
SECONDS_EACH=${SECONDS:-10}
# bash's own SECONDS (time since the shell started, 0 here) when the caller
# did not set it: the default then.
[ "$SECONDS_EACH" -gt 0 ] || SECONDS_EACH=10
REPORT_WAIT=${REPORT_WAIT:-600} # seconds a full chunk report may take before the run goes on
MILLION=$ROOT/build/bench/million
MILLION_RESULTS=${BENCH_MILLION_RESULTS:-$ROOT/bench/results/million-latest.json}
START_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
LOADGEN=$ROOT/build/bench/loadgen
WORK=$(mktemp -d /var/tmp/echofs-million.XXXXXX)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_install_traps

[ -x "$MILLION" ] && [ -x "$LOADGEN" ] || bench_die "build first: make all && make -C bench million"
[ -x "$ROOT/bin/echofs-master" ] || bench_die "build first: make all"

PG_DIR=""
pg_stop() {
	[ -n "$PG_DIR" ] && "$ROOT/scripts/services.sh" stop "$PG_DIR" >/dev/null 2>&1 || true
}
BENCH_CLEANUP_HOOKS+=(pg_stop)

export REPLICATION_FACTOR=1 LOG_LEVEL=info
WORKER_ID=w-million

# ms since the epoch
now_ms() { date +%s%3N; }

master_start() { # DIR
	local dir=$1 i body
	MASTER_HOST=127.0.0.1 MASTER_PORT=$PORT GRPC_PORT=0 DATA_DIR="$dir/master" \
		bench_spawn "$dir/logs/master.$PHASE.log" "$ROOT/bin/echofs-master"
	MASTER_PID=$BENCH_LAST_PID
	for i in $(seq 1 600); do
		body=$(curl -s "$MASTER_URL/api/v1/health" || true)
		[ -n "$body" ] && return 0
		bench_alive "$MASTER_PID"
		sleep 0.1
	done
	bench_die "the master did not answer (log: $dir/logs/master.$PHASE.log)"
}

# worker_start DIR - starts the worker; sets WORKER_PID, SERVE_MS (start
# until /metrics answers) and REPORT_MS (start until the full chunk report
# was sent, from its log).
worker_start() {
	local dir=$1 log="$dir/logs/worker.$PHASE.$RANDOM.log" t0 i
	t0=$(now_ms)
	WORKER_HOST=127.0.0.1 WORKER_PORT=$((PORT + 1)) WORKER_DATA_DIR="$dir/worker" \
		MASTER_URL="$MASTER_URL" bench_spawn "$log" "$ROOT/bin/echofs-worker"
	WORKER_PID=$BENCH_LAST_PID
	SERVE_MS=""
	for i in $(seq 1 12000); do
		if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((PORT + 1))/metrics")" = 200 ]; then
			SERVE_MS=$(($(now_ms) - t0))
			break
		fi
		bench_alive "$WORKER_PID"
		sleep 0.05
	done
	[ -n "$SERVE_MS" ] || bench_die "the worker did not answer (log: $log)"
	REPORT_MS=""
	while [ $(($(now_ms) - t0)) -lt $((REPORT_WAIT * 1000)) ]; do
		if grep -q "chunk report sent" "$log"; then
			REPORT_MS=$(($(now_ms) - t0))
			break
		fi
		bench_alive "$WORKER_PID"
		sleep 0.1
	done
	if [ -z "$REPORT_MS" ]; then
		# Recorded as the wait, marked: the run goes on.
		REPORT_MS=">$((REPORT_WAIT * 1000))"
		bench_log "no full chunk report within ${REPORT_WAIT} s ($(grep -c 'chunk report to .* failed' "$log" || true) failed attempts; log: $log)"
	else
		grep "chunk report sent" "$log" | tail -n 1 | sed 's/^/bench:   /' >&2
	fi
}

# median of the arguments (lib.sh: the mean of the two middle values of an even count)
median() { bench_median "$@"; }

list_ms() { # QUERY
	local i t=()
	for i in 1 2 3 4 5; do
		t+=("$(curl -s -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $TOKEN" \
			"$MASTER_URL/api/v1/files?limit=100$1" | awk '{ printf "%.2f", $1 * 1000 }')")
	done
	median "${t[@]}"
}

record() { # KEY VALUE
	echo "$BACKEND $PHASE $1 $2" >>"$WORK/results.txt"
	bench_log "$BACKEND $PHASE $1 = $2"
}

json_field() { # FILE KEY
	sed -n "s/.*\"$2\": *\"\{0,1\}\([^,\"}]*\).*/\1/p;T;q" "$1"
}

http_measure() { # DIR
	local dir=$1 t0 c0 c1 hz
	t0=$(now_ms)
	"$LOADGEN" upload --url "$MASTER_URL" --token "$TOKEN" --size 4096 --concurrency 8 \
		--seconds "$SECONDS_EACH" --ids-out "$dir/ids.$PHASE.txt" >"$dir/up.$PHASE.json" ||
		bench_die "loadgen upload failed"
	"$LOADGEN" download --url "$MASTER_URL" --token "$TOKEN" --ids "$dir/ids.$PHASE.txt" \
		--size 4096 --concurrency 8 --seconds "$SECONDS_EACH" >"$dir/down.$PHASE.json" ||
		bench_die "loadgen download failed"
	record upload_ops_s "$(json_field "$dir/up.$PHASE.json" ops_per_s)"
	record download_ops_s "$(json_field "$dir/down.$PHASE.json" ops_per_s)"
	record list_first_page_ms "$(list_ms "")"
	# A cursor just before this phase's uploads: every filled file is older.
	record list_last_page_ms "$(list_ms "&cursor=$((t0 - 1)).0")"
	hz=$(getconf CLK_TCK)
	c0=$(bench_cpu_ticks "$MASTER_PID")
	sleep 10
	c1=$(bench_cpu_ticks "$MASTER_PID")
	record master_idle_cpu_pct "$(awk -v d=$((c1 - c0)) -v hz="$hz" 'BEGIN { printf "%.1f", d * 100 / hz / 10 }')"
	bench_stop "$WORKER_PID"
	worker_start "$dir"
	record worker_restart_serve_ms "$SERVE_MS"
	record worker_report_done_ms "$REPORT_MS"
}

probes() { # DIR
	local dir=$1 p=$WORK/probe.json
	"$MILLION" meta-probe --data "$dir/master" ${DATABASE_URL:+--url "$DATABASE_URL"} >"$p" ||
		bench_die "meta-probe failed"
	for k in list_first_ms list_last_ms gc_pass_ms under_replicated_ms repair_list_ms stats_ms; do
		record "store_$k" "$(json_field "$p" "$k")"
	done
	"$MILLION" store-probe --dir "$dir/worker" >"$p" || bench_die "store-probe failed"
	for k in chunks open_ms iterate_ms read_us_per_chunk scrub_pass_est_ms; do
		record "volume_$k" "$(json_field "$p" "$k")"
	done
}

bench_log "N=$N backends: $BACKENDS; load: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
: >"$WORK/results.txt"
for BACKEND in $BACKENDS; do
	dir=$WORK/$BACKEND
	mkdir -p "$dir/logs" "$dir/master" "$dir/worker"
	echo "$WORKER_ID" >"$dir/worker/worker_id"
	unset DATABASE_URL
	if [ "$BACKEND" = postgres ]; then
		PG_DIR=$WORK/services
		chmod 755 "$WORK" # services.sh runs PostgreSQL as the postgres user, under it
		"$ROOT/scripts/services.sh" start "$PG_DIR" >/dev/null || bench_die "services.sh start failed"
		set -a
		# shellcheck disable=SC1091
		. "$PG_DIR/env"
		set +a
		unset REDIS_ADDR
		export DATABASE_URL=${ECHOFS_TEST_PG_URL:?services.sh gave no ECHOFS_TEST_PG_URL}
	fi
	JWT_SECRET=$(bench_secret)
	CLUSTER_SECRET=$(bench_secret)
	export JWT_SECRET CLUSTER_SECRET
	PORT=$(bench_pick_ports 2) || bench_die "no free ports"
	MASTER_URL="http://127.0.0.1:$PORT"
	TOKEN=$("$ROOT/bin/echofs" token --user bench --ttl 86400)

	PHASE=empty
	master_start "$dir"
	worker_start "$dir"
	http_measure "$dir"
	bench_stop "$WORKER_PID" "$MASTER_PID"
	probes "$dir"

	bench_log "$BACKEND: filling $N files"
	"$MILLION" meta-fill --data "$dir/master" ${DATABASE_URL:+--url "$DATABASE_URL"} --n "$N" \
		--worker "$WORKER_ID" >"$WORK/fill.json" || bench_die "meta-fill failed"
	bench_log "meta-fill: $(cat "$WORK/fill.json")"
	"$MILLION" store-fill --dir "$dir/worker" --n "$N" >"$WORK/fill.json" ||
		bench_die "store-fill failed"
	bench_log "store-fill: $(cat "$WORK/fill.json")"

	PHASE=full
	probes "$dir"
	master_start "$dir"
	worker_start "$dir"
	http_measure "$dir"
	bench_stop "$WORKER_PID" "$MASTER_PID"
	du -sh "$dir" >&2
	[ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$dir"
	if [ "$BACKEND" = postgres ]; then
		pg_stop
		PG_DIR=""
	fi
done

bench_log "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
table_md=$ROOT/build/bench/million-$stamp.md
echo
echo "N=$N files; full/empty (same run); machine load $(cut -d' ' -f1-3 /proc/loadavg)"
awk '
{ key = $1 " " $3; v[key, $2] = $4; if (!(key in seen)) { seen[key] = 1; order[++n] = key } }
END {
	printf "| %-8s | %-30s | %12s | %12s | %9s |\n", "backend", "measurement", "empty", "full", "full/empty"
	printf "|----------|--------------------------------|--------------|--------------|-----------|\n"
	for (i = 1; i <= n; i++) {
		split(order[i], p, " ")
		e = v[order[i], "empty"]; f = v[order[i], "full"]
		r = (e + 0 > 0) ? sprintf("%.2f", f / e) : "-"
		printf "| %-8s | %-30s | %12s | %12s | %9s |\n", p[1], p[2], e, f, r
	}
}' "$WORK/results.txt" | tee "$table_md"

# The JSON: {"results": {BACKEND: {MEASUREMENT: {"empty", "full",
# "full_over_empty"}}}} and the run's facts. A value that is not a number
# (">600000": no report within REPORT_WAIT) stays a string, and its ratio
# is null.
json_out=$ROOT/bench/results/million-$stamp.json
mkdir -p "$(dirname "$json_out")" "$(dirname "$MILLION_RESULTS")"
awk -v date="$START_DATE" -v commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
	-v n="$N" -v backends="$BACKENDS" -v secs="$SECONDS_EACH" -v nproc="$(nproc)" \
	-v load0="$START_LOAD" -v load1="$(cut -d' ' -f1-3 /proc/loadavg)" -v table="$table_md" '
function isnum(x) { return x ~ /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/ }
function val(x) { return x == "" ? "null" : (isnum(x) ? x : "\"" x "\"") }
{
	if (!($1 in bseen)) { bseen[$1] = 1; border[++nb] = $1 }
	key = $1 SUBSEP $3
	if (!(key in mseen)) { mseen[key] = 1; morder[$1, ++nm[$1]] = $3 }
	v[$1, $3, $2] = $4
}
END {
	printf "{\n  \"schema\": 1,\n  \"date\": \"%s\",\n  \"git_commit\": \"%s\",\n", date, commit
	printf "  \"n\": %d,\n  \"backends\": \"%s\",\n  \"seconds_each\": %s,\n", n, backends, secs
	printf "  \"nproc\": %d,\n  \"loadavg_start\": \"%s\",\n  \"loadavg_end\": \"%s\",\n", nproc, load0, load1
	printf "  \"table\": \"%s\",\n  \"results\": {", table
	for (b = 1; b <= nb; b++) {
		be = border[b]
		printf "%s\n    \"%s\": {", (b > 1 ? "," : ""), be
		for (i = 1; i <= nm[be]; i++) {
			m = morder[be, i]; e = v[be, m, "empty"]; f = v[be, m, "full"]
			r = (isnum(e) && isnum(f) && e + 0 > 0) ? sprintf("%.4f", f / e) : "null"
			printf "%s\n      \"%s\": {\"empty\": %s, \"full\": %s, \"full_over_empty\": %s}", \
				(i > 1 ? "," : ""), m, val(e), val(f), r
		}
		printf "\n    }"
	}
	printf "\n  }\n}\n"
}' "$WORK/results.txt" >"$json_out.tmp"
mv "$json_out.tmp" "$json_out"
cp "$json_out" "$MILLION_RESULTS.tmp"
mv "$MILLION_RESULTS.tmp" "$MILLION_RESULTS"
bench_log "results: $json_out (and $MILLION_RESULTS)"
