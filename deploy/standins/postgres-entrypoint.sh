#!/bin/sh
# postgres-entrypoint - first start: initdb with POSTGRES_USER's password
# and create POSTGRES_DB; every start: run postgres on every interface
# (password authentication over TCP), as the official image does.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	if [ -z "${POSTGRES_PASSWORD:-}" ]; then
		echo "postgres-entrypoint: POSTGRES_PASSWORD is required" >&2
		exit 1
	fi
	pwfile=$(mktemp)
	printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
	initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" -E UTF8 \
		--auth-local=trust --auth-host=scram-sha-256 >/dev/null
	rm -f "$pwfile"
	echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
	pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -k /tmp" start >/dev/null
	if [ "$db" != postgres ]; then
		psql -v ON_ERROR_STOP=1 -h /tmp -U "$user" -d postgres -q \
			-c "CREATE DATABASE \"$db\" OWNER \"$user\""
	fi
	pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
	echo "postgres-entrypoint: initialised $PGDATA (role $user, database $db)" >&2
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -k /tmp "$@"
