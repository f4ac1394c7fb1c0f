#!/usr/bin/env bash
# test/all.sh - the one test command: installs what is missing, builds, and
# runs every test. .ci/run calls exactly this.
#
#   1. C unit tests and black-box tests on the developer build (SQLite),
#      with a throwaway PostgreSQL 15 and Redis running for the tests that
#      need them (the store suite on PostgreSQL, two masters, outages),
#      DynamoDB Local for the store suite on DynamoDB (also in round 3),
#      and the local AWS servers' test (test_aws_local.py, this round only);
#   2. the whole black-box suite again with every master on PostgreSQL and
#      Redis and every worker on a gRPC control stream (round 1's workers
#      heartbeat over HTTP, so each protocol runs the whole suite once),
#      its core over HTTPS (make integration-tls), and its core in
#      full AWS mode, chunks in S3 and metadata in DynamoDB, with S3 and
#      DynamoDB throttling (make integration-aws, on the local servers
#      started below);
#   3. the unit and black-box tests again under AddressSanitizer and UBSan;
#   4. the curl walk through the API (test/api.sh);
#   5. AWS mode end to end (test/aws_integration.sh: its own local S3 and
#      DynamoDB servers and master, on free ports);
#   6. every libFuzzer harness for a short fixed time (make fuzz-smoke);
#   7. the container image and the compose cluster on a real Docker engine
#      (test/docker.sh; it skips, saying why, where Docker cannot run).
#
# Rounds 1-3 (and round 2's HTTPS and AWS parts) run the black-box tests on
# TEST_JOBS (default 3) pytest-xdist workers, longest files first (by the
# durations the sessions before recorded in build/), then the tests marked
# serial (tests/integration/conftest.py: SERIAL) alone; the unit programs
# run TEST_JOBS at a time, the fuzzers two at a time. TEST_JOBS=1 runs
# everything one at a time, as before.
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
aws_local=$(mktemp -d)
stop_services() {
	./scripts/aws_local.sh stop "$aws_local" || true
	./scripts/services.sh stop "$services"
}
trap stop_services EXIT
round "starting PostgreSQL 15 and Redis for the tests"
./scripts/services.sh start "$services" >/dev/null
set -a
# shellcheck source=/dev/null
. "$services/env"
set +a
# DynamoDB Local for the store suite (tests/unit/test_meta_files.c): only
# its endpoint is exported, so that no master of the black-box tests picks
# up AWS variables by accident.
round "starting DynamoDB Local (and s3rver) for the store suite"
./scripts/aws_local.sh start "$aws_local" >/dev/null
ECHOFS_TEST_DYNAMODB=$(sed -n 's/^AWS_ENDPOINT_URL_DYNAMODB=//p' "$aws_local/env")
export ECHOFS_TEST_DYNAMODB

round "unit and black-box tests"
# test_random_faults.py's rounds (20 by default; a new seed each run, so
# its coverage adds up over runs): 12 here, for CI's 30 minutes.
export ECHOFS_FAULT_ROUNDS=${ECHOFS_FAULT_ROUNDS:-12}
make -j2 test
round "black-box tests with the masters on PostgreSQL and Redis, the workers on gRPC streams"
ECHOFS_TEST_BACKEND=postgres ECHOFS_TEST_WORKER_PROTOCOL=grpc make integration
round "the core black-box tests over HTTPS (verified certificates everywhere)"
make integration-tls
round "the core black-box tests in full AWS mode (S3 chunks, DynamoDB metadata)"
# On the local servers started above: a bucket and tables per cluster.
ECHOFS_TEST_AWS_ENV=$aws_local/env make integration-aws
round "unit and black-box tests under sanitizers"
make -j2 SANITIZE=address,undefined test
round "the API walk-through"
./test/api.sh
round "AWS mode end to end (local S3 and DynamoDB servers, free ports)"
# Not the fixed development ports of aws_test_config.sh, and no master of
# the caller's: the script starts its own.
env -u ECHOFS_URL -u AWS_LOCAL_DYNAMODB_PORT -u AWS_LOCAL_S3_PORT -u AWS_ENDPOINT_URL \
	-u AWS_ENDPOINT_URL_S3 -u AWS_ENDPOINT_URL_DYNAMODB ./test/aws_integration.sh
round "fuzzing each parser harness for 4 s"
make -j2 fuzz-smoke FUZZ_SECONDS=4
round "the container image and the compose cluster (test/docker.sh)"
./test/docker.sh
round "all tests passed"
