#!/usr/bin/env bash
# Peak memory of the engine against hostile tasks: `conveyor run` on each workflow below, in a fresh folder,
# under GNU time. "Maximum resident set size" is the largest of the engine and the task processes it reaped
# (`yes`, `tr`, `head`: a few MiB each), so it bounds the engine's own peak from above.
#   benches/hostile_tasks.sh            the release binary (built first)
#   PROFILE=debug benches/hostile_tasks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-release}"
if [ "$profile" = release ]; then cargo build --release --quiet; else cargo build --quiet; fi
binary="$PWD/target/$profile/conveyor"
[ -x /usr/bin/time ] || { echo "needs GNU time (/usr/bin/time -v)" >&2; exit 2; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/workflows"
cat > "$work/workflows/long_line.toml" <<'TOML'
id = "LongLine"
[[tasks]]
name = "Line"
run = "yes | tr -d '\\n' | head -c 400000000"
TOML
cat > "$work/workflows/big_output.toml" <<'TOML'
id = "BigOutput"
[[tasks]]
name = "Output"
run = """{ printf '['; yes '"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",' | head -c 100000000; printf '0]'; } > "$CONVEYOR_OUTPUT\""""
TOML
cat > "$work/workflows/log_flood.toml" <<'TOML'
id = "LogFlood"
[[tasks]]
name = "Flood"
run = "yes 'a line of output that goes on and on' | head -c 400000000"
TOML

printf '%-10s %-9s %14s %10s %12s  %s\n' workflow profile "peak RSS (MiB)" "wall (s)" "log (MiB)" "outcome"
for workflow in LongLine BigOutput LogFlood; do
  state="$work/state-$workflow"
  set +e
  /usr/bin/time -v -o "$work/time" "$binary" --workflows "$work/workflows" --state "$state" run "$workflow" \
    > "$work/out" 2>&1
  code=$?
  set -e
  kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time")
  log_bytes=$(cat "$state"/logs/*/*.log | wc -c)
  outcome=$(grep -E '^(✓|✗)' "$work/out" | head -1 | cut -c1-110)
  printf '%-10s %-9s %14.1f %10s %12.1f  exit %s: %s\n' "$workflow" "$profile" "$(echo "$kib / 1024" | bc -l)" \
    "$wall" "$(echo "$log_bytes / 1048576" | bc -l)" "$code" "$outcome"
done
