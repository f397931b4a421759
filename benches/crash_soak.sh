#!/usr/bin/env bash
# Soak test of crash recovery: the random-kill fault test with N SIGKILLs of a real daemon (default 200).
# Prints the kills, runs, re-runs of succeeded tasks (must be 0) and orphans left (must be 0).
set -euo pipefail
cd "$(dirname "$0")/.."
kills="${1:-200}"
CONVEYOR_FAULT_KILLS="$kills" cargo test --test integration \
  faults::a_daemon_killed_at_random_times_loses_nothing_and_runs_nothing_twice -- --exact --nocapture 2>&1 |
  grep -E "random kills|test result|panicked"
