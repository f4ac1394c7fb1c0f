#!/usr/bin/env bash
# dev-cluster.sh - a local EchoFS cluster for development: one master and
# three workers on 127.0.0.1, SQLite metadata and chunk data under ./data.
#
# Secrets are generated on the first run and kept in ./data/secrets.env, so
# tokens and worker ids survive a restart. Ctrl-C stops everything cleanly.
#
# Environment: MASTER_PORT (8080), WORKER_BASE_PORT (8081: workers use
# 8081..8083), WORKER_COUNT (3), S3_PORT (9000: the S3 API, docs/S3.md;
# 0 turns it off), GRPC_PORT (8090: the workers' gRPC control streams; 0
# turns it off and they beat over HTTP), DATA (./data), plus anything the
# daemons read
# (CHUNK_SIZE, REPLICATION_FACTOR, LOG_LEVEL...).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DATA=${DATA:-$ROOT/data}
MASTER_PORT=${MASTER_PORT:-8080}
WORKER_BASE_PORT=${WORKER_BASE_PORT:-8081}
WORKER_COUNT=${WORKER_COUNT:-3}
S3_PORT=${S3_PORT:-9000}
GRPC_PORT=${GRPC_PORT:-8090}
export GRPC_PORT

./scripts/install-deps.sh
make -s all

port_busy() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
s3_ports=()
[ "$S3_PORT" != 0 ] && s3_ports=("$S3_PORT")
[ "$GRPC_PORT" != 0 ] && s3_ports+=("$GRPC_PORT")
for port in "$MASTER_PORT" "${s3_ports[@]}" $(seq "$WORKER_BASE_PORT" $((WORKER_BASE_PORT + WORKER_COUNT - 1))); do
	if port_busy "$port"; then
		echo "dev-cluster: port $port is already in use (is a cluster already running?)." >&2
		echo "dev-cluster: set MASTER_PORT / WORKER_BASE_PORT / S3_PORT / GRPC_PORT to use other ports." >&2
		exit 1
	fi
done

mkdir -p "$DATA/logs"
chmod 700 "$DATA"
if [ ! -s "$DATA/secrets.env" ]; then
	umask 077
	{
		echo "JWT_SECRET=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
		echo "CLUSTER_SECRET=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
	} >"$DATA/secrets.env"
fi
set -a
# shellcheck source=/dev/null
. "$DATA/secrets.env"
set +a

pids=()
stop_all() {
	local status=${1:-0}
	trap - INT TERM
	echo
	echo "dev-cluster: stopping..."
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	echo "dev-cluster: stopped. Data is kept in $DATA."
	exit "$status"
}
trap stop_all INT TERM

MASTER_URL="http://127.0.0.1:$MASTER_PORT"
MASTER_HOST=${MASTER_HOST:-127.0.0.1} MASTER_PORT=$MASTER_PORT S3_PORT=$S3_PORT DATA_DIR="$DATA/master" \
	"$ROOT/bin/echofs-master" >>"$DATA/logs/master.log" 2>&1 &
pids+=($!)
for i in $(seq 1 "$WORKER_COUNT"); do
	port=$((WORKER_BASE_PORT + i - 1))
	WORKER_HOST=127.0.0.1 WORKER_PORT=$port WORKER_DATA_DIR="$DATA/worker$i" \
		MASTER_URL="$MASTER_URL" \
		"$ROOT/bin/echofs-worker" >>"$DATA/logs/worker$i.log" 2>&1 &
	pids+=($!)
done

# Wait until every worker is registered and alive.
alive=0
for _ in $(seq 1 100); do
	body=$(curl -s "$MASTER_URL/api/v1/health" || true)
	alive=$(printf '%s' "$body" | sed -n 's/.*"workers_alive":\([0-9]*\).*/\1/p')
	[ "${alive:-0}" -ge "$WORKER_COUNT" ] && break
	sleep 0.1
done
if [ "${alive:-0}" -lt "$WORKER_COUNT" ]; then
	echo "dev-cluster: the cluster did not come up; see $DATA/logs/" >&2
	tail -n 5 "$DATA"/logs/*.log >&2 || true
	stop_all 1
fi

TOKEN=$("$ROOT/bin/echofs" token --user dev --ttl 2592000)
cat <<INFO

EchoFS is running: master $MASTER_URL with $WORKER_COUNT workers (ports $WORKER_BASE_PORT..$((WORKER_BASE_PORT + WORKER_COUNT - 1))).
Data and logs: $DATA (logs in $DATA/logs). Secrets: $DATA/secrets.env.

A token for user "dev" (valid 30 days):
  export ECHOFS_URL=$MASTER_URL
  export ECHOFS_TOKEN=$TOKEN

Try:
  ./bin/echofs put README.md           # prints the new file's id
  ./bin/echofs ls
  ./bin/echofs get FILE_ID -o copy.md
  ./bin/echofs workers
  curl -s \$ECHOFS_URL/api/v1/health
  curl -s -H "Authorization: Bearer \$ECHOFS_TOKEN" --data-binary @README.md "\$ECHOFS_URL/api/v1/files/upload?name=README.md"
  ./bin/echofs token --user alice      # with JWT_SECRET from $DATA/secrets.env

Dashboard: $MASTER_URL/ (paste the token). Metrics: $MASTER_URL/metrics

INFO

if [ "$S3_PORT" != 0 ]; then
	# An S3 access key for "dev" (POST /api/v1/keys), kept for later runs.
	if [ ! -s "$DATA/s3-key.env" ]; then
		reply=$(curl -s -X POST -H "Authorization: Bearer $TOKEN" "$MASTER_URL/api/v1/keys" || true)
		key_id=$(printf '%s' "$reply" | sed -n 's/.*"access_key_id":"\([^"]*\)".*/\1/p')
		secret=$(printf '%s' "$reply" | sed -n 's/.*"secret_access_key":"\([^"]*\)".*/\1/p')
		if [ -n "$key_id" ] && [ -n "$secret" ]; then
			(umask 077; printf 'AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n' "$key_id" "$secret" >"$DATA/s3-key.env")
		fi
	fi
	if [ -s "$DATA/s3-key.env" ]; then
		key_lines=$(sed 's/^/  export /' "$DATA/s3-key.env")
	else
		key_lines="  # no key yet: curl -s -X POST -H \"Authorization: Bearer \$ECHOFS_TOKEN\" $MASTER_URL/api/v1/keys"
	fi
	cat <<INFO
S3 API: http://127.0.0.1:$S3_PORT (region us-east-1; docs/S3.md). With an access key of user "dev":
$key_lines
  export AWS_DEFAULT_REGION=us-east-1
  aws --endpoint-url http://127.0.0.1:$S3_PORT s3 mb s3://my-bucket
  aws --endpoint-url http://127.0.0.1:$S3_PORT s3 cp README.md s3://my-bucket/README.md
  aws --endpoint-url http://127.0.0.1:$S3_PORT s3 ls s3://my-bucket
  aws --endpoint-url http://127.0.0.1:$S3_PORT s3 cp s3://my-bucket/README.md copy.md
  aws --endpoint-url http://127.0.0.1:$S3_PORT s3 rm s3://my-bucket/README.md
  aws --endpoint-url http://127.0.0.1:$S3_PORT s3 rb s3://my-bucket

INFO
fi
echo "Ctrl-C stops the cluster."

# Stop everything when one process dies unexpectedly.
set +e
wait -n "${pids[@]}"
status=$?
echo "dev-cluster: a process exited (status $status); see $DATA/logs/" >&2
stop_all 1
