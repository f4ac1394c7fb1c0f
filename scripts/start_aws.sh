#!/usr/bin/env bash
# start_aws.sh - run the master in AWS mode (the seed's entry point): chunks
# in the S3 bucket S3_BUCKET_NAME, metadata in the DynamoDB tables
# DYNAMODB_*_TABLE (all three; unset, SQLite under DATA_DIR or
# DATABASE_URL; the master logs which). Reads the variables that
# `source ./aws_test_config.sh` exports.
#
#   scripts/start_aws.sh            the master, on the configured endpoints
#   scripts/start_aws.sh --local    also starts the local servers
#                                   (scripts/aws_local.sh: DynamoDB Local and
#                                   s3rver) in a temporary directory and
#                                   creates the bucket and the tables
#   scripts/start_aws.sh --create   creates the bucket and tables that are
#                                   missing first (scripts/aws_tables.sh)
#
# Options: --dir DIR keeps the state (the local servers, the master's
# DATA_DIR with --local, master.pid, env) in DIR instead of a new
# temporary directory. Ports: MASTER_PORT (default 8080); the local
# servers take AWS_LOCAL_DYNAMODB_PORT / AWS_LOCAL_S3_PORT (8000 / 4568 from
# aws_test_config.sh; 0 or unset: free ones, which is what
# test/aws_integration.sh uses).
#
# It prints how to use the master (a token, curl lines) and writes
# DIR/env (ECHOFS_URL and the AWS variables in effect). It runs until
# Ctrl-C (SIGINT or SIGTERM), then stops the master and whatever it
# started. SIGHUP restarts the master alone (same data): what
# test/aws_integration.sh does to check that everything reads back.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
BIN=${ECHOFS_BIN_DIR:-$root/bin}
local_servers=false
create=false
state=""
while [ $# -gt 0 ]; do
	case "$1" in
	--local) local_servers=true ;;
	--create) create=true ;;
	--dir)
		state=${2:?--dir needs a directory}
		shift
		;;
	-h | --help)
		sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "start_aws: unknown option $1 (--local, --create, --dir DIR)" >&2
		exit 2
		;;
	esac
	shift
done

if [ -z "${S3_BUCKET_NAME:-}" ]; then
	echo "start_aws: S3_BUCKET_NAME is not set: source ./aws_test_config.sh first" >&2
	exit 2
fi
[ -x "$BIN/echofs-master" ] || make -s -C "$root" all
if [ -z "$state" ]; then
	state=$(mktemp -d "${TMPDIR:-/tmp}/echofs-aws.XXXXXX")
fi
mkdir -p "$state"
state=$(cd "$state" && pwd)

master_pid=""
servers_started=false
stop_all() {
	trap - INT TERM HUP EXIT
	if [ -n "$master_pid" ] && kill -0 "$master_pid" 2>/dev/null; then
		kill "$master_pid" 2>/dev/null || true
		wait "$master_pid" 2>/dev/null || true
	fi
	rm -f "$state/master.pid" "$state/start_aws.pid"
	if $servers_started; then
		echo "start_aws: stopping the local servers ($state)" >&2
		"$root/scripts/aws_local.sh" stop "$state/aws" || true
	fi
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if $local_servers; then
	echo "start_aws: starting DynamoDB Local and s3rver under $state/aws" >&2
	servers_started=true
	"$root/scripts/aws_local.sh" start "$state/aws" >/dev/null
	set -a
	# shellcheck source=/dev/null
	. "$state/aws/env"
	set +a
	export AWS_DEFAULT_REGION=$AWS_REGION
	create=true
	: "${DATA_DIR:=$state/master}"
	export DATA_DIR
fi
if $create; then
	echo "start_aws: creating the bucket and tables that are missing (scripts/aws_tables.sh)" >&2
	"$root/scripts/aws_tables.sh" create
fi

# Throwaway secrets for a local run; a real deployment sets its own.
if [ -z "${JWT_SECRET:-}" ] || [ -z "${CLUSTER_SECRET:-}" ]; then
	if ! $local_servers; then
		echo "start_aws: set JWT_SECRET and CLUSTER_SECRET (long random strings)" >&2
		exit 2
	fi
	export JWT_SECRET=${JWT_SECRET:-$(head -c 24 /dev/urandom | base64)}
	export CLUSTER_SECRET=${CLUSTER_SECRET:-$(head -c 24 /dev/urandom | base64)}
fi
export MASTER_PORT=${MASTER_PORT:-8080}
export MASTER_HOST=${MASTER_HOST:-127.0.0.1}
url="http://$MASTER_HOST:$MASTER_PORT"

start_master() {
	"$BIN/echofs-master" 2>>"$state/master.log" &
	master_pid=$!
	echo "$master_pid" >"$state/master.pid"
	for _ in $(seq 1 200); do
		curl -s -o /dev/null -m 2 "$url/api/v1/health" && return 0
		if ! kill -0 "$master_pid" 2>/dev/null; then
			echo "start_aws: the master exited; its log ($state/master.log):" >&2
			tail -n 20 "$state/master.log" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "start_aws: the master did not answer at $url within 20 s" >&2
	return 1
}
restart=false
trap 'restart=true; [ -n "$master_pid" ] && kill "$master_pid" 2>/dev/null || true' HUP

start_master
echo $$ >"$state/start_aws.pid"
# Written aside and renamed: a reader that waits for the file
# (test/aws_integration.sh polls for it) never sources half of it. It
# holds JWT_SECRET: readable by its owner only from the start.
(
	umask 077
	{
		echo "ECHOFS_URL=$url"
		echo "ECHOFS_AWS_DIR=$state"
		echo "JWT_SECRET=$JWT_SECRET"
		env | grep -E '^(AWS_[A-Z0-9_]+|S3_BUCKET_NAME|DYNAMODB_[A-Z_]+_TABLE|DATA_DIR|DATABASE_URL)=' || true
	} >"$state/env.tmp"
)
mv -f "$state/env.tmp" "$state/env"
token=$("$BIN/echofs" token --user alice)
grep -E "chunk backend|listening on" "$state/master.log" | tail -n 2 | sed 's/^/start_aws: /' >&2
cat >&2 <<EOF
start_aws: the master runs at $url (log: $state/master.log)
  health:    curl -s $url/api/v1/health
  a token:   TOKEN=\$(JWT_SECRET='$JWT_SECRET' $BIN/echofs token --user alice)
  upload:    curl -s -H "Authorization: Bearer $token" --data-binary @FILE "$url/api/v1/files/upload?name=FILE"
  the test:  set -a; . $state/env; set +a; ./test/aws_integration.sh
  Ctrl-C stops the master$($servers_started && echo " and the local servers"); kill -HUP $$ restarts the master.
EOF

while true; do
	status=0
	wait "$master_pid" || status=$?
	if $restart; then
		restart=false
		echo "start_aws: restarting the master (SIGHUP)" >&2
		# wait returned at the signal: let the old master finish first.
		while kill -0 "$master_pid" 2>/dev/null; do sleep 0.05; done
		start_master
		continue
	fi
	echo "start_aws: the master exited with status $status" >&2
	exit "$status"
done
