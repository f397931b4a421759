#!/usr/bin/env bash
# Conveyor beside a peer anyone can install: Luigi (pip, into a throwaway virtual environment). The same chains
# of N `/bin/true` tasks (default 100 and 1000) run through `conveyor run` (release build), through Luigi's local
# scheduler, and as N bare spawns (`xargs -n1 /bin/true`), alternating over PAIRS rounds (default 12); each
# tool's time is printed as a ratio to the bare spawns of the same round, with the median and the spread. Then
# the 500-wide fan-out against `xargs -P16` (benches/fanout.sh).
#   benches/peers/run.sh [PAIRS] [SIZES...]
# Needs python3 with venv and network access to PyPI the first time (the environment is kept in
# $PEERS_VENV, default ~/.cache/conveyor-peers).
set -euo pipefail
cd "$(dirname "$0")/../.."
pairs="${1:-12}"
shift || true
sizes=("${@:-100 1000}")
# shellcheck disable=SC2206
sizes=(${sizes[*]})
venv="${PEERS_VENV:-$HOME/.cache/conveyor-peers}"
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet luigi
fi
cargo build --release --quiet --bin conveyor
binary="$PWD/target/release/conveyor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cat >"$work/chain.py" <<'PY'
import os, subprocess, sys
import luigi

sys.setrecursionlimit(100000)
OUT = os.environ["CHAIN_OUT"]

class T(luigi.Task):
    i = luigi.IntParameter()

    def requires(self):
        return T(i=self.i - 1) if self.i > 0 else []

    def output(self):
        return luigi.LocalTarget(os.path.join(OUT, f"{self.i}.done"))

    def run(self):
        subprocess.run(["/bin/true"], check=True)
        with self.output().open("w") as done:
            done.write("")
PY

for n in "${sizes[@]}"; do
  mkdir -p "$work/conveyor$n/workflows"
  benches/chain_workflow.sh "$n" >"$work/conveyor$n/workflows/chain.toml"
done

now() { date +%s%N; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
summary() { sort -n | awk '{ v[NR] = $1 } END { printf "median %s (min %s, max %s, %d pairs)", v[int((NR + 1) / 2)], v[1], v[NR], NR }'; }

for n in "${sizes[@]}"; do
  conveyor_ratios=()
  luigi_ratios=()
  for ((pair = 1; pair <= pairs; pair++)); do
    start=$(now)
    seq "$n" | xargs -n1 /bin/true
    raw_end=$(now)
    (cd "$work/conveyor$n" && "$binary" run Chain >/dev/null)
    conveyor_end=$(now)
    out="$work/luigi$n-$pair"
    mkdir -p "$out"
    (cd "$work" && CHAIN_OUT="$out" "$venv/bin/python" -m luigi --module chain T --i $((n - 1)) \
      --local-scheduler --workers 1 --no-lock >/dev/null 2>&1)
    luigi_end=$(now)
    [[ -f "$out/$((n - 1)).done" ]] || { echo "luigi did not finish the chain of $n" >&2; exit 1; }
    raw=$((raw_end - start))
    c=$(ratio $((conveyor_end - raw_end)) "$raw")
    l=$(ratio $((luigi_end - conveyor_end)) "$raw")
    conveyor_ratios+=("$c")
    luigi_ratios+=("$l")
    echo "N=$n pair $pair: bare spawns $((raw / 1000000)) ms; conveyor run x$c; luigi x$l"
  done
  echo "N=$n conveyor / bare spawns: $(printf '%s\n' "${conveyor_ratios[@]}" | summary)"
  echo "N=$n luigi / bare spawns:    $(printf '%s\n' "${luigi_ratios[@]}" | summary)"
done
benches/fanout.sh "$pairs"
