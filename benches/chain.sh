#!/usr/bin/env bash
# A chain of N `/bin/true` tasks through `conveyor run` (whole process: start, store, every task, finish),
# against N bare spawns of the same round (`examples/spawn_loop.rs`: std's spawn and wait, N times, stdio
# inherited; BARE=xargs for `xargs -n1 /bin/true`, which the peer script uses), alternating over PAIRS rounds. With several
# binaries (e.g. two builds to compare), each runs once per round, in turn, with its own state folder; each
# gets its ratio to the round's bare spawns, and from the second on, its time over the first's, pair by pair.
#   benches/chain.sh [PAIRS] [N] [BINARY...]      (default 12, 200, target/release/conveyor)
# The state folders live under $CHAIN_DIR (default: a temporary folder under /tmp, so on this machine ext4).
set -euo pipefail
cd "$(dirname "$0")/.."
pairs="${1:-12}"
n="${2:-200}"
shift 2 || shift $# || true
binaries=("$@")
cargo build --profile measure --quiet --example spawn_loop
spawn_loop="$PWD/target/measure/examples/spawn_loop"
bare() {
  if [[ "${BARE:-}" == xargs ]]; then seq "$n" | xargs -n1 /bin/true; else "$spawn_loop" "$n" /bin/true; fi
}
if [[ ${#binaries[@]} -eq 0 ]]; then
  cargo build --release --quiet --bin conveyor
  binaries=("$PWD/target/release/conveyor")
fi
work="$(mktemp -d "${CHAIN_DIR:-/tmp}/chain.XXXXXX")"
trap 'rm -rf "$work"' EXIT
for index in "${!binaries[@]}"; do
  mkdir -p "$work/$index/workflows"
  benches/chain_workflow.sh "$n" >"$work/$index/workflows/chain.toml"
done

now() { date +%s%N; }
summary() { sort -n | awk '{ v[NR] = $1 } END {
  printf "median %s (min %s, quartiles %s-%s, max %s; %d pairs)", v[int((NR + 1) / 2)], v[1], v[int((NR + 3) / 4)],
    v[int((3 * NR + 1) / 4)], v[NR], NR }'; }
declare -A ratios against
for ((pair = 1; pair <= pairs; pair++)); do
  start=$(now)
  bare
  raw=$(($(now) - start))
  line="pair $pair: bare $((raw / 1000000)) ms"
  first=0
  for index in "${!binaries[@]}"; do
    start=$(now)
    (cd "$work/$index" && "${binaries[$index]}" run Chain >/dev/null)
    took=$(($(now) - start))
    ratio=$(awk -v a="$took" -v b="$raw" 'BEGIN { printf "%.3f", a / b }')
    ratios[$index]+="$ratio "
    line+="; #$index x$ratio"
    if [[ $index -eq 0 ]]; then
      first=$took
    else
      against[$index]+="$(awk -v a="$took" -v b="$first" 'BEGIN { printf "%.3f", a / b }') "
    fi
  done
  echo "$line"
done
for index in "${!binaries[@]}"; do
  echo "#$index ${binaries[$index]} / bare spawns, N=$n: $(tr ' ' '\n' <<<"${ratios[$index]}" | grep . | summary)"
  if [[ $index -gt 0 ]]; then
    echo "#$index / #0, pair by pair: $(tr ' ' '\n' <<<"${against[$index]}" | grep . | summary)"
  fi
done
