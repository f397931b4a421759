#!/usr/bin/env bash
# 500 independent `/bin/true` tasks under a cap of 16, against `xargs -P16` of the same 500 spawns: the run's
# whole `conveyor run` (start, store, finish) against the bare fan-out, alternating over PAIRS pairs (default
# 12). Prints each pair's ratio and the median with its spread.
#   [CONVEYOR=BINARY] benches/fanout.sh [PAIRS] [TASKS] [CAP]
set -euo pipefail
cd "$(dirname "$0")/.."
pairs="${1:-12}"
tasks="${2:-500}"
cap="${3:-16}"
# CONVEYOR=path/to/binary measures that build instead of a fresh release build.
if [[ -z "${CONVEYOR:-}" ]]; then
  cargo build --release --quiet --bin conveyor
fi
binary="${CONVEYOR:-$PWD/target/release/conveyor}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/workflows"
echo "max_parallel_tasks = $cap" >"$work/workflows/conveyor.toml"
awk -v count="$tasks" 'BEGIN {
  print "id = \"Wide\"\nkeep_runs = 1000\n[[tasks]]\nname = \"Start\"\ncommand = [\"/bin/true\"]"
  for (i = 0; i < count; i++) printf "[[tasks]]\nname = \"T%d\"\ncommand = [\"/bin/true\"]\ndepends_on = [\"Start\"]\n", i
}' >"$work/workflows/wide.toml"

ms() { echo $((($2 - $1) / 1000000)); }
ratios=()
for ((pair = 1; pair <= pairs; pair++)); do
  start=$(date +%s%N)
  (cd "$work" && "$binary" run Wide >/dev/null)
  middle=$(date +%s%N)
  seq "$tasks" | xargs -P"$cap" -n1 /bin/true >/dev/null
  end=$(date +%s%N)
  conveyor_ms=$(ms "$start" "$middle")
  xargs_ms=$(ms "$middle" "$end")
  ratio=$(awk -v a="$conveyor_ms" -v b="$xargs_ms" 'BEGIN { printf "%.2f", a / b }')
  ratios+=("$ratio")
  echo "pair $pair: conveyor run $conveyor_ms ms, xargs -P$cap $xargs_ms ms, ratio $ratio"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END {
  printf "ratio conveyor / xargs over %d pairs: median %s, min %s, max %s\n", NR, v[int((NR + 1) / 2)], v[1], v[NR] }'
