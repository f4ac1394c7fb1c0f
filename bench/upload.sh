#!/usr/bin/env bash
# upload.sh - the large-upload phase of run.sh alone, several times, with
# the CPU of the master and of the workers apart: for a change to the
# upload path, measured before and after in one session (a full `make
# bench` takes minutes and mixes every phase).
#
# Writes UPLOAD_RUNS files of UPLOAD_MIB MiB of UPLOAD_KIND (`random`:
# xoshiro256**; `text`: loadgen's English-like text, which EchoFS stores
# gzip'd, ~3.9x smaller; other bytes each, so deduplication skips
# nothing), measures `dd conv=fsync` of
# the first (median of 3: the disk baseline, as run.sh), starts a cluster
# like run.sh's (1 master + 3 workers, replication 3, default CHUNK_SIZE,
# SQLite) and uploads each file in one request with `curl -T`, checking
# its SHA-256. Prints one line per upload and a summary (medians; of an
# even UPLOAD_RUNS, the mean of the two middle values, bench/lib.sh):
#
#   upload N: MiB/s, ratio to dd/3, master CPU s/GiB, workers CPU s/GiB
#
# (text: the ratio is to dd, as run.sh's text target: 3 replicas of a
# quarter of the bytes are fewer bytes than dd writes.)
#
# Environment: UPLOAD_MIB (256), UPLOAD_RUNS (3), UPLOAD_KIND (random or
# text), BENCH_BIN (ROOT/bin: the
# daemons to measure; point it at another build's bin/ for the "before"
# and alternate the two), BENCH_TMPDIR, BENCH_KEEP=1, BENCH_LOG_LEVEL.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

MIB=${UPLOAD_MIB:-256}
RUNS=${UPLOAD_RUNS:-3}
KIND=${UPLOAD_KIND:-random}
case $KIND in
random) DD_SHARE=3 ;; # each of 3 replicas carries every byte
text) DD_SHARE=1 ;;
*) bench_die "UPLOAD_KIND must be random or text, not '$KIND'" ;;
esac
BYTES=$((MIB * 1048576))
BIN=${BENCH_BIN:-$ROOT/bin}
LOADGEN=$ROOT/build/bench/loadgen
export WORKER_COUNT=3 REPLICATION_FACTOR=3 LOG_LEVEL=${BENCH_LOG_LEVEL:-warn}
unset CHUNK_SIZE DATABASE_URL REDIS_ADDR

[ -x "$BIN/echofs-master" ] || bench_die "$BIN/echofs-master is missing: run \`make\`"
make --no-print-directory -s -C "$ROOT/bench"

tmp_parent=${BENCH_TMPDIR:-$ROOT/build}
mkdir -p "$tmp_parent"
WORK=$(mktemp -d "$tmp_parent/bench-upload.XXXXXX")
bench_install_traps

median() { # NUMBER... (lib.sh: the mean of the two middle values of an even count)
	bench_median "$@"
}

bench_log "generating $RUNS x $MIB MiB of $KIND data"
for i in $(seq 1 "$RUNS"); do
	"$LOADGEN" gen --kind "$KIND" --size "$BYTES" --seed $((100 + i)) >"$WORK/up-$i.bin"
done
sync "$WORK"/up-*.bin

dd_samples=()
for _ in 1 2 3; do
	LC_ALL=C dd if="$WORK/up-1.bin" of="$WORK/dd.out" bs=1M conv=fsync 2>"$WORK/dd.log"
	secs=$(sed -n 's/.* copied, \([0-9.e+-]*\) s,.*/\1/p' "$WORK/dd.log")
	[ -n "$secs" ] || bench_die "cannot read dd's output: $(cat "$WORK/dd.log")"
	dd_samples+=("$(awk -v b="$BYTES" -v s="$secs" 'BEGIN { printf "%.1f", b / 1048576 / s }')")
	rm -f "$WORK/dd.out"
done
DD=$(median "${dd_samples[@]}")
bench_log "dd conv=fsync: ${dd_samples[*]} MiB/s (median $DD)"

bench_cluster_start "$WORK/cluster"
AUTH="Authorization: Bearer $TOKEN"
HZ=$(getconf CLK_TCK)
dd_name=dd/3
[ "$DD_SHARE" = 1 ] && dd_name=dd
rates=() ratios=() masters=() workers=()
for i in $(seq 1 "$RUNS"); do
	file=$WORK/up-$i.bin
	want=$(sha256sum "$file" | cut -d' ' -f1)
	m0=$(bench_cpu_ticks "$MASTER_PID")
	w0=$(bench_cpu_ticks "${WORKER_PIDS[@]}")
	out=$(curl -sS -X POST -T "$file" -H "$AUTH" -H 'Content-Type: application/octet-stream' \
		-H 'Expect:' -o "$WORK/upload.json" -w '%{http_code} %{time_total}' \
		"$MASTER_URL/api/v1/files/upload?name=up-$i")
	m1=$(bench_cpu_ticks "$MASTER_PID")
	w1=$(bench_cpu_ticks "${WORKER_PIDS[@]}")
	read -r code secs <<<"$out"
	[ "$code" = 201 ] || bench_die "upload $i: HTTP $code: $(head -c 300 "$WORK/upload.json")"
	grep -q "\"sha256\": *\"$want\"" "$WORK/upload.json" || bench_die "upload $i: wrong sha256"
	line=$(awk -v b="$BYTES" -v s="$secs" -v dd="$DD" -v share="$DD_SHARE" -v m=$((m1 - m0)) -v w=$((w1 - w0)) \
		-v hz="$HZ" 'BEGIN { r = b / 1048576 / s; g = b / 1073741824;
			printf "%.1f %.3f %.2f %.2f", r, r / (dd / share), m / hz / g, w / hz / g }')
	read -r rate ratio mcpu wcpu <<<"$line"
	rates+=("$rate") ratios+=("$ratio") masters+=("$mcpu") workers+=("$wcpu")
	echo "upload $i ($KIND): $rate MiB/s, ratio to $dd_name $ratio, master $mcpu CPU s/GiB, workers $wcpu CPU s/GiB"
done
echo "median ($KIND): $(median "${rates[@]}") MiB/s, ratio to $dd_name $(median "${ratios[@]}"), master" \
	"$(median "${masters[@]}") CPU s/GiB, workers $(median "${workers[@]}") CPU s/GiB" \
	"(dd $DD MiB/s; $RUNS x $MIB MiB; $BIN)"
