#!/usr/bin/env bash
# test/workers.sh - the worker tests (the seed's entry point): registration,
# heartbeats, dead detection, restart under the same id, worker auth.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
make -s all
exec /usr/bin/python3 -m pytest -q tests/integration/test_registry.py "$@"
