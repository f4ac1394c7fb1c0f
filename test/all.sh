#!/usr/bin/env bash
# test/all.sh - the one test command: installs what is missing, builds, and
# runs every test (C unit tests and black-box tests), first on the
# developer build, then again under AddressSanitizer and UBSan.
# .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
echo "== developer build (warnings are errors)"
make -j2 all
echo "== unit and black-box tests"
make -j2 test
echo "== the same under sanitizers"
make -j2 SANITIZE=address,undefined test
echo "== all tests passed"
