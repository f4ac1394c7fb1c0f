#!/usr/bin/env bash
# run_master.sh - development mode (the seed's entry point): master + 3
# workers on localhost with data under ./data. See scripts/dev-cluster.sh.
exec "$(dirname "$0")/scripts/dev-cluster.sh" "$@"
