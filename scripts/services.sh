#!/usr/bin/env bash
# services.sh - a throwaway PostgreSQL 15 and Redis on loopback for tests.
#
#   scripts/services.sh start DIR   start both under DIR (created), print the
#                                   environment to use and write it to DIR/env
#   scripts/services.sh stop DIR    stop them (DIR is left for the logs)
#   scripts/services.sh pg-stop DIR / pg-start DIR
#                                   stop or start PostgreSQL alone (outage tests)
#
# PostgreSQL refuses to run as root, so it runs as the postgres user
# (runuser), with trust authentication on 127.0.0.1 only. Ports are free
# ones picked at start.
set -euo pipefail
PGBIN=/usr/lib/postgresql/15/bin
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|pg-start|pg-stop DIR" >&2; exit 2; }

free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
as_postgres() {
	if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_start() {
	as_postgres "$PGBIN/pg_ctl" -D "$1/pg/data" -l "$1/pg/server.log" -w -t 30 \
		-o "-c listen_addresses=127.0.0.1 -p $(cat "$1/pg/port") -c unix_socket_directories='' -c max_connections=200" \
		start >/dev/null
}
pg_stop() {
	if [ -f "$1/pg/data/postmaster.pid" ]; then
		as_postgres "$PGBIN/pg_ctl" -D "$1/pg/data" -m fast -w stop >/dev/null 2>&1 || true
	fi
}

case "$cmd" in
start)
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	pg_port=$(free_port)
	redis_port=$(free_port)
	mkdir -p "$dir/pg"
	[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir/pg" && chmod 755 "$dir"
	as_postgres "$PGBIN/initdb" -D "$dir/pg/data" -U postgres --auth=trust -E UTF8 >"$dir/pg/initdb.log" 2>&1
	echo "$pg_port" >"$dir/pg/port"
	pg_start "$dir"
	redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
		--daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir"
	for _ in $(seq 1 50); do
		redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
		sleep 0.1
	done
	cat >"$dir/env" <<ENV
ECHOFS_TEST_PG_URL=postgres://postgres@127.0.0.1:$pg_port/postgres
ECHOFS_TEST_PG_PORT=$pg_port
ECHOFS_TEST_PG_DATA=$dir/pg/data
ECHOFS_TEST_REDIS_ADDR=127.0.0.1:$redis_port
ENV
	cat "$dir/env"
	;;
pg-start)
	pg_start "$dir"
	;;
pg-stop)
	pg_stop "$dir"
	;;
stop)
	[ -d "$dir" ] || exit 0
	pg_stop "$dir"
	if [ -f "$dir/redis.pid" ]; then
		kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
	fi
	;;
*)
	echo "usage: $0 start|stop|pg-start|pg-stop DIR" >&2
	exit 2
	;;
esac
