#!/usr/bin/env bash
# Soak: 50 workflows firing every second (`* * * * * *`) under one release daemon for SECONDS (default 600).
# Prints fires per second per workflow, missed and doubled fires, fire latency (fired_at - scheduled_at)
# p50/p99/max, the daemon's RSS at start and end, and its CPU use. Needs python3 (its sqlite3 module).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
workflows="${2:-50}"
cargo build --release --quiet
binary="$PWD/target/release/conveyor"
dir=$(mktemp -d)
trap 'kill "$daemon" 2>/dev/null || true; rm -rf "$dir"' EXIT
mkdir -p "$dir/workflows"
for n in $(seq 1 "$workflows"); do
  printf 'id = "Beat%02d"\nkeep_runs = 20\n[trigger]\ntype = "schedule"\ncron = "* * * * * *"\ntimezone = "UTC"\n[[tasks]]\nname = "T"\nrun = "true"\n' "$n" \
    > "$dir/workflows/beat$n.toml"
done
cd "$dir"
"$binary" daemon 2> daemon.log &
daemon=$!
sleep 5
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$daemon/stat"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$daemon/status"; }
start_cpu=$(cpu); start_rss=$(rss); start=$(date +%s.%N)
sleep "$seconds"
end_cpu=$(cpu); end_rss=$(rss); end=$(date +%s.%N)
kill -TERM "$daemon"; wait "$daemon" || true
python3 - "$dir/.conveyor/conveyor.db" "$start" "$end" <<'PY'
import sqlite3, sys, statistics
from datetime import datetime
db, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
def t(text): return datetime.fromisoformat(text.replace('Z', '+00:00')).timestamp()
rows = sqlite3.connect(db).execute("SELECT workflow, scheduled_at, fired_at, outcome FROM fires").fetchall()
rows = [(w, t(s), t(f), o) for w, s, f, o in rows if start + 1 <= t(s) <= end - 1]
by = {}
for w, s, f, o in rows: by.setdefault(w, []).append(s)
missed = doubled = 0
for times in by.values():
    times.sort()
    doubled += len(times) - len(set(times))
    unique = sorted(set(times))
    missed += sum(round(b - a) - 1 for a, b in zip(unique, unique[1:]))
late = sorted((f - s) * 1000 for _, s, f, _ in rows)
span = end - start - 2
print(f"workflows {len(by)}, window {span:.0f} s, fires {len(rows)} ({len(rows) / span / max(len(by), 1):.3f} per second per workflow)")
print(f"missed {missed}, doubled {doubled}, skipped by overlap {sum(1 for r in rows if r[3].startswith('skipped'))}")
print(f"lateness ms: p50 {late[len(late)//2]:.2f}, p99 {late[int(len(late)*0.99)]:.2f}, max {late[-1]:.2f}")
# Why the tail: fires due at the same instant are handled one after another in one engine step.
ranks = {}
for _, s, f, _ in rows: ranks.setdefault(s, []).append((f - s) * 1000)
first = sorted(min(v) for v in ranks.values())
last = sorted(max(v) for v in ranks.values())
print(f"per instant: first fire's lateness p50 {first[len(first)//2]:.2f} ms, last fire's p50 {last[len(last)//2]:.2f} ms "
      f"({(last[len(last)//2] - first[len(first)//2]) / max(len(by) - 1, 1):.2f} ms per fire handled before it)")
PY
echo "RSS start ${start_rss} KiB, end ${end_rss} KiB; CPU $(echo "($end_cpu - $start_cpu) / $ticks / ($end - $start) * 100" | bc -l | cut -c1-5) % of a core"
