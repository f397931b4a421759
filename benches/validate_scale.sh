#!/usr/bin/env bash
# How `conveyor validate` scales: generates workflows of 5k and 50k tasks (a sequence, every 100th task with a
# `when` of its own) and a 10k-task `depends_on` chain, then times `conveyor validate` on each in release,
# alternating the files over RUNS rounds (default 5). Prints each run and the medians; linear validation gives a
# 50k/5k ratio near 10 (a quadratic one near 100).
#   benches/validate_scale.sh [RUNS]            # the current tree
#   BEFORE=/path/to/conveyor benches/validate_scale.sh   # also times another build, alternating with this one
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
cargo build --release --quiet --bin conveyor
binaries=("$PWD/target/release/conveyor")
labels=("now")
if [[ -n "${BEFORE:-}" ]]; then
  binaries+=("$BEFORE")
  labels+=("before")
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# generate NAME COUNT CHAIN: a workflow of COUNT tasks in its own folder (no registry beside it).
generate() {
  mkdir -p "$work/$1"
  awk -v count="$2" -v chain="$3" 'BEGIN {
    print "id = \"Scale\""
    for (i = 0; i < count; i++) {
      printf "[[tasks]]\nname = \"T%d\"\nrun = \"true\"\n", i
      if (chain && i > 0) printf "depends_on = [\"T%d\"]\n", i - 1
      if (i % 100 == 7) printf "when = \"size(input) > %d\"\n", i
    }
  }' >"$work/$1/w.toml"
}
generate seq5k 5000 0
generate seq50k 50000 0
generate chain10k 10000 1

# time_ms BINARY FILE: wall time of one validate, in milliseconds; the validate must succeed.
time_ms() {
  local start end
  start=$(date +%s%N)
  "$1" validate "$2" >/dev/null
  end=$(date +%s%N)
  echo $(((end - start) / 1000000))
}

declare -A samples
for ((round = 1; round <= runs; round++)); do
  for b in "${!binaries[@]}"; do
    for name in seq5k seq50k chain10k; do
      ms=$(time_ms "${binaries[$b]}" "$work/$name/w.toml")
      samples["${labels[$b]} $name"]+="$ms "
      echo "round $round ${labels[$b]} $name: $ms ms"
    done
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for label in "${labels[@]}"; do
  s5=$(echo "${samples["$label seq5k"]}" | median)
  s50=$(echo "${samples["$label seq50k"]}" | median)
  c10=$(echo "${samples["$label chain10k"]}" | median)
  ratio=$(awk -v a="$s50" -v b="$s5" 'BEGIN { printf "%.1f", (b > 0 ? a / b : 0) }')
  echo "$label: median 5k ${s5} ms, 50k ${s50} ms (50k/5k ${ratio}), 10k chain ${c10} ms"
done
