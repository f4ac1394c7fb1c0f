#!/usr/bin/env bash
# test/all.sh - the one test command: installs what is missing, builds, and
# runs every test. .ci/run calls exactly this.
#
#   1. C unit tests and black-box tests on the developer build (SQLite),
#      with a throwaway PostgreSQL 15 and Redis running for the tests that
#      need them (the store suite on PostgreSQL, two masters, outages),
#      and the local AWS servers' test (test_aws_local.py, this round only);
#   2. the whole black-box suite again with every master on PostgreSQL and
#      Redis, and its core over HTTPS (make integration-tls);
#   3. the unit and black-box tests again under AddressSanitizer and UBSan;
#   4. the curl walk through the API (test/api.sh);
#   5. every libFuzzer harness for a short fixed time (make fuzz-smoke).
#
# Rounds 1-3 run the black-box tests on TEST_JOBS (default 3) pytest-xdist
# workers, then the tests marked serial (tests/integration/conftest.py:
# SERIAL) alone; the unit programs run TEST_JOBS at a time, the fuzzers two
# at a time. TEST_JOBS=1 runs everything one at a time, as before.
# docs/HACKING.md ("How CI spends its time") has each round's time.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
# Each round's heading says when it began (seconds since the start).
round() { echo "== $* (at $((SECONDS - started)) s)"; }

./scripts/install-deps.sh
# Installed just above: the local AWS servers' test must run, not skip.
export ECHOFS_REQUIRE_AWS_LOCAL=1
export TEST_JOBS=${TEST_JOBS:-3}
round "developer build (warnings are errors)"
make -j2 all

services=$(mktemp -d)
trap './scripts/services.sh stop "$services"' EXIT
round "starting PostgreSQL 15 and Redis for the tests"
./scripts/services.sh start "$services" >/dev/null
set -a
# shellcheck source=/dev/null
. "$services/env"
set +a

round "unit and black-box tests"
make -j2 test
round "black-box tests with the masters on PostgreSQL and Redis"
ECHOFS_TEST_BACKEND=postgres make integration
round "the core black-box tests over HTTPS (verified certificates everywhere)"
make integration-tls
round "unit and black-box tests under sanitizers"
make -j2 SANITIZE=address,undefined test
round "the API walk-through"
./test/api.sh
round "fuzzing each parser harness for 15 s"
make -j2 fuzz-smoke FUZZ_SECONDS=15
round "all tests passed"
