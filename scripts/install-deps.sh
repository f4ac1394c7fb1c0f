#!/usr/bin/env bash
# install-deps.sh - install the Debian packages EchoFS builds, runs and tests with.
#
# Idempotent: asks dpkg first and says nothing when every package is present.
# Needs root (or sudo) only when something is missing.
set -euo pipefail

PACKAGES=(
	build-essential pkg-config
	libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libisal-dev
	libssl-dev libsqlite3-dev libpq-dev libhiredis-dev libjwt-dev
	libcmocka-dev
	python3-pytest python3-requests
	postgresql-15 redis-server
	curl procps
)

missing=()
for pkg in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
	[ "$status" = "install ok installed" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done" >&2
