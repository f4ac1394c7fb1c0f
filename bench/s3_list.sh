#!/usr/bin/env bash
# s3_list.sh - ListObjects on a bucket of a million keys against one of a
# thousand, in the same run: a listing must cost the page it returns, not
# the bucket (issue 13: "listing a bucket with a million keys must not
# load them all").
#
# Starts a throw-away cluster like bench/run.sh (1 master with S3_PORT,
# 1 worker, SQLite), takes an access key, creates two buckets through S3,
# and fills them straight into the master's SQLite database (the sqlite3
# CLI, one transaction): "big" with BENCH_LIST_KEYS (1,000,000) empty
# objects, "small" with 10,000, keys "dNNN/kNNNNNNN" (1,000 prefixes). An
# empty object is a file of no chunks, so the rows are what PutObject of
# an empty body writes. Then, through the S3 endpoint with boto3, each
# listing BENCH_ROUNDS (5) times on each bucket, median, each returning
# the same number of entries from both:
#   first page (1,000 keys), a page from the middle (StartAfter), the last
#   page, the top level with Delimiter "/" (1,000 common prefixes: one
#   seek past each prefix's keys), 10 keys of one prefix with Delimiter,
#   and v1 with a Marker from the middle;
# and prints each median and the big/small ratio (1.0: flat), the
# master's RSS after the fill and after the listings (a listing that
# loaded the bucket would show there), and the fill's own time. The
# report also goes to bench/results/s3-list.txt.
#
# Environment: BENCH_LIST_KEYS (1000000), BENCH_ROUNDS (5), ECHOFS_BIN_DIR
# (bin/), BENCH_TMPDIR, BENCH_KEEP=1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

KEYS=${BENCH_LIST_KEYS:-1000000}
ROUNDS=${BENCH_ROUNDS:-5}
OUT=$ROOT/bench/results/s3-list.txt
REGION=${AWS_REGION:-us-east-1}
export WORKER_COUNT=1 REPLICATION_FACTOR=1 LOG_LEVEL=${BENCH_LOG_LEVEL:-warn}
unset CHUNK_SIZE DATABASE_URL REDIS_ADDR

command -v sqlite3 >/dev/null || bench_die "sqlite3 (the CLI) is missing: apt-get install sqlite3"
[ -x "$ROOT/bin/echofs-master" ] || bench_die "bin/echofs-master is missing: run \`make\`"
[ "$KEYS" -ge 10000 ] && [ $((KEYS % 1000)) = 0 ] ||
	bench_die "BENCH_LIST_KEYS must be a multiple of 1000, at least 10000"
tmp_parent=${BENCH_TMPDIR:-$ROOT/build}
mkdir -p "$tmp_parent" "$(dirname "$OUT")"
WORK=$(mktemp -d "$tmp_parent/bench-s3list.XXXXXX")
bench_install_traps

S3_PORT=$(bench_pick_ports 1) || bench_die "no free port for the S3 listener"
export S3_PORT
bench_cluster_start "$WORK/cluster"
S3_URL="http://127.0.0.1:$S3_PORT"
DB="$WORK/cluster/master/echofs.db"
[ -f "$DB" ] || bench_die "no SQLite database at $DB"

curl -sS -X POST -H "Authorization: Bearer $TOKEN" -o "$WORK/key.json" "$MASTER_URL/api/v1/keys"
KEY_ID=$(/usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["access_key_id"])' <"$WORK/key.json")
SECRET=$(/usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["secret_access_key"])' <"$WORK/key.json")
for b in big small; do
	code=$(curl -sS --aws-sigv4 "aws:amz:$REGION:s3" --user "$KEY_ID:$SECRET" \
		-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -X PUT -o /dev/null -w '%{http_code}' "$S3_URL/$b")
	[ "$code" = 200 ] || bench_die "CreateBucket $b: HTTP $code"
done

# fill BUCKET COUNT - COUNT empty objects, each with its file row.
fill() {
	local bucket=$1 count=$2 now
	now=$(($(date +%s) * 1000))
	sqlite3 "$DB" <<EOF || bench_die "filling $bucket failed"
.timeout 30000
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $count)
INSERT INTO files (file_id, owner, name, size, sha256, chunk_size, chunk_count, replication,
		   stored_bytes, created_at)
SELECT printf('%s%026x', substr('$bucket', 1, 1) || 'f', i), 'bench', printf('k%07d', i), 0,
       'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 4194304, 0, 1, 0, $now
FROM n;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $count)
INSERT INTO s3_objects (bucket, object_key, file_id, size, etag, content_type, content_encoding,
			content_disposition, cache_control, expires, user_meta, last_modified)
SELECT '$bucket', printf('d%03d/k%07d', i % 1000, i), printf('%s%026x', substr('$bucket', 1, 1) || 'f', i),
       0, 'd41d8cd98f00b204e9800998ecf8427e', 'binary/octet-stream', '', '', '', '', '{}', $now
FROM n;
COMMIT;
EOF
}
fill_start=$SECONDS
fill big "$KEYS"
fill small 10000
fill_s=$((SECONDS - fill_start))
rss_filled=$(bench_status_kib "$MASTER_PID" VmRSS)

/usr/bin/python3 - "$S3_URL" "$KEY_ID" "$SECRET" "$REGION" "$KEYS" "$ROUNDS" >"$WORK/list.txt" <<'EOF'
import statistics, sys, time
import boto3
from botocore.config import Config

url, key_id, secret, region, keys, rounds = sys.argv[1:7]
keys, rounds = int(keys), int(rounds)
s3 = boto3.client("s3", endpoint_url=url, region_name=region, aws_access_key_id=key_id,
                  aws_secret_access_key=secret,
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def key_of(i):
    return "d%03d/k%07d" % (i % 1000, i)


def key_at(p, count):
    """The key at position @p of the bucket in key order (prefix, then
    index): count / 1000 keys a prefix."""
    per = count // 1000
    return key_of((p % per) * 1000 + p // per)


def ops(bucket, count):
    return {
        "first page": lambda: s3.list_objects_v2(Bucket=bucket),
        "middle page": lambda: s3.list_objects_v2(Bucket=bucket,
                                                  StartAfter=key_at(count // 2, count)),
        "last page": lambda: s3.list_objects_v2(Bucket=bucket,
                                                StartAfter=key_at(count - 1001, count)),
        "top level, delimiter /": lambda: s3.list_objects_v2(Bucket=bucket, Delimiter="/"),
        "one prefix, 10 keys": lambda: s3.list_objects_v2(Bucket=bucket, Prefix="d123/",
                                                          Delimiter="/", MaxKeys=10),
        "v1, marker in the middle": lambda: s3.list_objects(Bucket=bucket,
                                                            Marker=key_at(count // 2, count)),
    }


def check(name, page, bucket, count):
    """Each listing returns the same number of entries on both buckets."""
    got = len(page.get("Contents", [])) + len(page.get("CommonPrefixes", []))
    want = 10 if name == "one prefix, 10 keys" else 1000
    assert got == want, (bucket, name, got)
    if name == "last page":
        assert page["Contents"][-1]["Key"] == key_at(count - 1, count), (bucket, name)
        assert not page["IsTruncated"], (bucket, name)


times = {}
for bucket, count in (("small", 10000), ("big", keys)):
    for name, call in ops(bucket, count).items():
        samples = []
        for _ in range(rounds):
            t = time.perf_counter()
            page = call()
            samples.append(time.perf_counter() - t)
        check(name, page, bucket, count)
        times[(bucket, name)] = statistics.median(samples)
for name in ops("small", 10000):
    small, big = times[("small", name)], times[("big", name)]
    print("%-26s %10.1f %10.1f %8.2f" % (name, small * 1000, big * 1000, big / small))
EOF
rss_listed=$(bench_status_kib "$MASTER_PID" VmRSS)
bench_alive "$MASTER_PID" "${WORKER_PIDS[@]}"
{
	echo "# s3_list.sh $(date -u +%FT%TZ) $(git -C "$ROOT" rev-parse --short HEAD)"
	echo "# $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); big: $KEYS keys, small: 10000; median of $ROUNDS, boto3 through the S3 endpoint (SQLite)"
	printf '%-26s %10s %10s %8s\n' listing small_ms big_ms big/small
	cat "$WORK/list.txt"
	echo "# master RSS: ${rss_filled} KiB after the fill, ${rss_listed} KiB after the listings; fill ${fill_s} s (sqlite3, one transaction per bucket)"
} | tee "$OUT"
