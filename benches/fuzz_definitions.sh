#!/usr/bin/env bash
# More mutated workflow and registry files through load and validation than `cargo test` tries: CASES per seed
# (default 20000) for each SEED given (default one seed, from the date). A panic names its seed and case; a stack
# overflow aborts the process, so each case is first written to target/fuzz-last-case.{workflow,registry}.toml —
# copy it into tests/fixtures/hostile/ when one is found.
#   benches/fuzz_definitions.sh [CASES] [SEED...]
set -euo pipefail
cd "$(dirname "$0")/.."
cases="${1:-20000}"
shift || true
seeds=("$@")
[[ ${#seeds[@]} -gt 0 ]] || seeds=("$(date +%Y%m%d)")
for seed in "${seeds[@]}"; do
  start=$(date +%s)
  CONVEYOR_FUZZ_CASES="$cases" CONVEYOR_FUZZ_SEED="$seed" CONVEYOR_FUZZ_DUMP="$PWD/target/fuzz-last-case" \
    cargo test --quiet --lib -- --exact \
    definition::fuzz::mutated_workflows_and_registries_load_without_panicking_and_every_problem_is_located 2>&1 |
    grep -E "test result|panicked|case|overflow" || true
  echo "seed $seed: $cases cases in $(($(date +%s) - start)) s"
done
