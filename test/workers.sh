#!/usr/bin/env bash
# test/workers.sh - the worker tests (the seed's entry point): registration,
# heartbeats, dead detection, restart under the same id, worker auth.
#
# Without ECHOFS_URL: runs tests/integration/test_registry.py, which starts
# its own masters and workers (arguments go to pytest).
#
# With ECHOFS_URL, ECHOFS_TOKEN and CLUSTER_SECRET: walks the same checks
# with curl against that running cluster instead (test/docker.sh does this
# against the compose cluster): at least 3 workers registered and alive,
# heartbeats advancing, a wrong cluster secret refused. When
# ECHOFS_WORKER_URL (one worker's advertised URL), ECHOFS_WORKER_STOP and
# ECHOFS_WORKER_START (shell commands that stop and start that worker) are
# set too, it also stops the worker, waits for the master to declare it
# dead, starts it and checks it comes back alive under the same id. Waits
# are bounded by ECHOFS_WAIT_S (default 60) and never asserted as speeds.
# The first failed check stops the walk with status 1.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${ECHOFS_URL:-}" ]; then
	./scripts/install-deps.sh
	make -s all
	exec /usr/bin/python3 -m pytest -q tests/integration/test_registry.py "$@"
fi

: "${ECHOFS_TOKEN:?ECHOFS_TOKEN is needed with ECHOFS_URL}"
: "${CLUSTER_SECRET:?CLUSTER_SECRET is needed with ECHOFS_URL}"
U=$ECHOFS_URL
WAIT_S=${ECHOFS_WAIT_S:-60}
PY=/usr/bin/python3
pass=0
step() { printf '\n== %s\n' "$*"; }
ok() { pass=$((pass + 1)); printf '   ok: %s\n' "$*"; }
fail() { printf '   FAILED: %s\n' "$*" >&2; exit 1; }
json() { $PY -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
workers() { curl -sf -H "Authorization: Bearer $ECHOFS_TOKEN" "$U/api/v1/workers"; }
# until SECONDS COMMAND...: run COMMAND every 0.2 s until it succeeds.
until_ok() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.2
	done
}
alive_count() { workers | json 'sum(w["status"]=="alive" for w in d["workers"])'; }
at_least_3_alive() { [ "$(alive_count 2>/dev/null || echo 0)" -ge 3 ]; }
health_status() { curl -s "$U/api/v1/health" | json 'd["status"]'; }
health_ok() { [ "$(health_status 2>/dev/null)" = ok ]; }

step "at least 3 workers registered and alive; health ok"
until_ok "$WAIT_S" at_least_3_alive || fail "$(alive_count) workers alive"
ok "$(alive_count) workers alive"
workers | json 'all(w["worker_id"] and w["url"].startswith("http") for w in d["workers"])' | grep -qx True \
	&& ok "each has an id and a URL" || fail "a worker without id or URL"
until_ok "$WAIT_S" health_ok || fail "health $(health_status)"
ok "health ok"

step "heartbeats advance last_heartbeat (the store's copy lags up to WORKER_DEAD_AFTER_MS/4)"
first=$(workers | json 'max(w["last_heartbeat"] for w in d["workers"] if w["status"]=="alive")')
newer() { [ "$(workers | json 'max(w["last_heartbeat"] for w in d["workers"] if w["status"]=="alive")')" \> "$first" ]; }
until_ok "$WAIT_S" newer || fail "last_heartbeat stayed at $first"
ok "last_heartbeat moved past $first"

step "registration with a wrong cluster secret: 401, nothing recorded"
before=$(workers | json 'len(d["workers"])')
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer not-the-cluster-secret" \
	-H 'Content-Type: application/json' -d '{"url":"http://127.0.0.1:9"}' "$U/api/v1/workers/register")
[ "$code" = 401 ] && ok "401" || fail "expected 401, got $code"
[ "$(workers | json 'len(d["workers"])')" = "$before" ] && ok "still $before workers" || fail "a worker was recorded"

if [ -n "${ECHOFS_WORKER_URL:-}" ] && [ -n "${ECHOFS_WORKER_STOP:-}" ] && [ -n "${ECHOFS_WORKER_START:-}" ]; then
	step "a stopped worker turns dead, then comes back under its id"
	wid=$(workers | json "[w['worker_id'] for w in d['workers'] if w['url']=='$ECHOFS_WORKER_URL' and w['status']=='alive'][0]") \
		|| fail "no alive worker at $ECHOFS_WORKER_URL"
	status_of() { workers | json "[w['status'] for w in d['workers'] if w['worker_id']=='$wid'][0]"; }
	is_status() { [ "$(status_of 2>/dev/null)" = "$1" ]; }
	sh -c "$ECHOFS_WORKER_STOP" >/dev/null || fail "ECHOFS_WORKER_STOP failed"
	until_ok "$WAIT_S" is_status dead || fail "$wid still $(status_of)"
	ok "$wid dead"
	[ "$(health_status)" = degraded ] && ok "health degraded" || fail "health $(health_status)"
	sh -c "$ECHOFS_WORKER_START" >/dev/null || fail "ECHOFS_WORKER_START failed"
	until_ok "$WAIT_S" is_status alive || fail "$wid still $(status_of)"
	ok "$wid alive again, same id"
	[ "$(workers | json "sum(w['url']=='$ECHOFS_WORKER_URL' and w['status']=='alive' for w in d['workers'])")" = 1 ] \
		&& ok "one alive record at $ECHOFS_WORKER_URL" || fail "several alive records at $ECHOFS_WORKER_URL"
	until_ok "$WAIT_S" health_ok || fail "health $(health_status)"
	ok "health ok"
else
	printf '\n== (skipped: stop/start of a worker; set ECHOFS_WORKER_URL, ECHOFS_WORKER_STOP, ECHOFS_WORKER_START)\n'
fi

printf '\n%d passed, 0 failed\n' "$pass"
