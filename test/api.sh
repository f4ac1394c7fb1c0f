#!/usr/bin/env bash
# test/api.sh - walks through the REST API with curl (the seed's entry point).
#
# Starts its own cluster (master + 3 workers on free ports, temporary data)
# unless ECHOFS_URL and ECHOFS_TOKEN point at a running one. Each step
# prints what it does; the first failed check stops the walk with status 1.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${ECHOFS_BIN_DIR:-$ROOT/bin}
PY=/usr/bin/python3

pass=0
step() { printf '\n== %s\n' "$*"; }
ok() { pass=$((pass + 1)); printf '   ok: %s\n' "$*"; }
fail() { printf '   FAILED: %s\n' "$*" >&2; exit 1; }
json() { $PY -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

TMP=""
pids=()
WORK=$(mktemp -d)
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK" ${TMP:+"$TMP"}
}
trap cleanup EXIT

if [ -z "${ECHOFS_URL:-}" ] || [ -z "${ECHOFS_TOKEN:-}" ]; then
	[ -x "$BIN/echofs-master" ] || make -s -C "$ROOT" all
	TMP=$(mktemp -d)
	free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
	export JWT_SECRET=api-walkthrough-jwt-secret CLUSTER_SECRET=api-walkthrough-cluster-secret
	MPORT=$(free_port)
	MASTER_HOST=127.0.0.1 MASTER_PORT=$MPORT GRPC_PORT=$(free_port) DATA_DIR=$TMP/master CHUNK_SIZE=65536 \
		HEARTBEAT_INTERVAL_MS=200 WORKER_DEAD_AFTER_MS=2000 GC_GRACE_MS=500 \
		"$BIN/echofs-master" 2>"$TMP/master.log" &
	pids+=($!)
	for i in 1 2 3; do
		WPORT=$(free_port)
		WORKER_HOST=127.0.0.1 WORKER_PORT=$WPORT WORKER_DATA_DIR=$TMP/w$i \
			MASTER_URL=http://127.0.0.1:$MPORT "$BIN/echofs-worker" 2>"$TMP/w$i.log" &
		pids+=($!)
	done
	ECHOFS_URL=http://127.0.0.1:$MPORT
	ECHOFS_TOKEN=$("$BIN/echofs" token --user api-walkthrough)
	for _ in $(seq 1 100); do
		alive=$(curl -s "$ECHOFS_URL/api/v1/health" | json 'd["workers_alive"]' 2>/dev/null || echo 0)
		[ "$alive" -ge 3 ] && break
		sleep 0.1
	done
fi
U=$ECHOFS_URL
AUTH="Authorization: Bearer $ECHOFS_TOKEN"

step "GET /api/v1/health (no credentials)"
h=$(curl -s "$U/api/v1/health")
echo "   $h"
[ "$(echo "$h" | json 'd["status"]')" = ok ] && ok "status ok" || fail "health not ok"

step "GET /api/v1/workers"
n=$(curl -s -H "$AUTH" "$U/api/v1/workers" | json 'sum(w["status"]=="alive" for w in d["workers"])')
[ "$n" -ge 3 ] && ok "$n workers alive" || fail "only $n workers alive"

step "401 without a token"
code=$(curl -s -o "$WORK/e.json" -w '%{http_code}' "$U/api/v1/files")
[ "$code" = 401 ] && [ "$(json 'd["error"]["code"]' <"$WORK/e.json")" = unauthorized ] \
	&& ok "401 unauthorized" || fail "expected 401, got $code"

step "POST /api/v1/files/upload (raw body, ?name=)"
head -c 200000 /dev/urandom >"$WORK/random.bin"
curl -s -H "$AUTH" --data-binary @"$WORK/random.bin" "$U/api/v1/files/upload?name=random.bin" >"$WORK/f1.json"
F1=$(json 'd["file_id"]' <"$WORK/f1.json")
[ "$(json 'd["sha256"]' <"$WORK/f1.json")" = "$(sha256sum "$WORK/random.bin" | cut -d' ' -f1)" ] \
	&& ok "stored $F1, sha256 matches" || fail "sha256 differs"

step "POST /api/v1/files/upload (multipart, text compresses)"
yes "EchoFS stores files durably across many machines." | head -c 300000 >"$WORK/text.txt" || true
curl -s -H "$AUTH" -F "file=@$WORK/text.txt" "$U/api/v1/files/upload" >"$WORK/f2.json"
stored=$(json 'd["stored_bytes"]' <"$WORK/f2.json")
[ "$stored" -lt 135000 ] && ok "300000 bytes of text stored in $stored" || fail "stored $stored"

step "GET /api/v1/files/{id}/download"
curl -s -H "$AUTH" "$U/api/v1/files/$F1/download" -o "$WORK/back.bin"
cmp -s "$WORK/random.bin" "$WORK/back.bin" && ok "byte-identical" || fail "download differs"

step "Range: bytes=100-199 -> 206; past the end -> 416"
code=$(curl -s -H "$AUTH" -H "Range: bytes=100-199" -o "$WORK/part" -w '%{http_code}' "$U/api/v1/files/$F1/download")
dd if="$WORK/random.bin" bs=1 skip=100 count=100 status=none >"$WORK/want"
[ "$code" = 206 ] && cmp -s "$WORK/part" "$WORK/want" && ok "206 with the right 100 bytes" || fail "range: $code"
code=$(curl -s -H "$AUTH" -H "Range: bytes=999999-" -o /dev/null -w '%{http_code}' "$U/api/v1/files/$F1/download")
[ "$code" = 416 ] && ok "416" || fail "expected 416, got $code"

step "GET /api/v1/files/{id} (chunks and replicas)"
curl -s -H "$AUTH" "$U/api/v1/files/$F1" >"$WORK/meta.json"
reps=$(json 'min(len(c["replicas"]) for c in d["chunks"])' <"$WORK/meta.json")
[ "$reps" -ge 3 ] && ok "$(json 'd["chunk_count"]' <"$WORK/meta.json") chunks, each on $reps workers" || fail "replicas: $reps"

step "GET /api/v1/files (listing)"
count=$(curl -s -H "$AUTH" "$U/api/v1/files?limit=1000" | json 'len(d["files"])')
[ "$count" -ge 2 ] && ok "$count files listed" || fail "listed $count"

step "Upload session: init, chunks out of order, 409, complete"
head -c 150000 /dev/urandom >"$WORK/s.bin"
S=$(curl -s -H "$AUTH" -d '{"name":"s.bin","size":150000,"chunk_size":65536}' "$U/api/v1/files/upload/init" | json 'd["session_id"]')
for i in 2 0; do
	dd if="$WORK/s.bin" bs=65536 skip=$i count=1 status=none >"$WORK/c$i"
	curl -s -o /dev/null -H "$AUTH" --data-binary @"$WORK/c$i" "$U/api/v1/files/upload/chunk?session_id=$S&chunk_index=$i"
done
got=$(curl -s -H "$AUTH" "$U/api/v1/files/upload/$S" | json 'd["received"]')
[ "$got" = "[0, 2]" ] && ok "received $got" || fail "received $got"
code=$(curl -s -o "$WORK/c.json" -w '%{http_code}' -H "$AUTH" -d "{\"session_id\":\"$S\"}" "$U/api/v1/files/upload/complete")
[ "$code" = 409 ] && [ "$(json 'd["error"]["missing"]' <"$WORK/c.json")" = "[1]" ] \
	&& ok "409, missing [1]" || fail "complete: $code"
dd if="$WORK/s.bin" bs=65536 skip=1 count=1 status=none >"$WORK/c1"
curl -s -o /dev/null -H "$AUTH" -H "X-Chunk-SHA256: $(sha256sum "$WORK/c1" | cut -d' ' -f1)" \
	--data-binary @"$WORK/c1" "$U/api/v1/files/upload/chunk?session_id=$S&chunk_index=1"
curl -s -H "$AUTH" -d "{\"session_id\":\"$S\"}" "$U/api/v1/files/upload/complete" >"$WORK/c.json"
F3=$(json 'd["file_id"]' <"$WORK/c.json")
curl -s -H "$AUTH" "$U/api/v1/files/$F3/download" -o "$WORK/s.back"
cmp -s "$WORK/s.back" "$WORK/s.bin" && ok "completed into $F3, byte-identical" || fail "session file differs"

step "DELETE /api/v1/files/{id}"
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "$AUTH" "$U/api/v1/files/$F1")
[ "$code" = 204 ] && ok "204" || fail "delete: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "$AUTH" "$U/api/v1/files/$F1/download")
[ "$code" = 404 ] && ok "then 404" || fail "after delete: $code"

printf '\n%d passed, 0 failed\n' "$pass"
