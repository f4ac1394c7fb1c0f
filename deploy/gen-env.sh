#!/usr/bin/env bash
# gen-env.sh - write the secrets deploy/compose.yml reads into an env file.
#
#   ./deploy/gen-env.sh [FILE]        # default deploy/.env
#
# JWT_SECRET (signs user tokens), CLUSTER_SECRET (master <-> workers) and
# POSTGRES_PASSWORD, 32 random bytes each in hex, from /dev/urandom. The
# file is created with mode 0600 and never overwritten: rotating a secret
# is a deliberate edit (a new JWT_SECRET invalidates every token, a new
# POSTGRES_PASSWORD must also be set in PostgreSQL, whose volume keeps the
# old one). deploy/.env is git-ignored and kept out of the image's build
# context. Exits 1 when FILE exists.
set -euo pipefail
file=${1:-$(dirname "$0")/.env}
if [ -e "$file" ]; then
	echo "gen-env: $file exists; not overwriting it (delete it first to start over)" >&2
	exit 1
fi
secret() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
umask 077
{
	echo "# EchoFS compose secrets, made by deploy/gen-env.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ)."
	echo "# Keep this file private; back it up with the volumes (docs/DEPLOY.md#backups)."
	echo "JWT_SECRET=$(secret)"
	echo "CLUSTER_SECRET=$(secret)"
	echo "POSTGRES_PASSWORD=$(secret)"
} >"$file.tmp"
mv "$file.tmp" "$file"
echo "gen-env: wrote $file" >&2
