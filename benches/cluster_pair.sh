#!/usr/bin/env bash
# Two builds of `conveyor` on one engine sharing a throwaway PostgreSQL (run as the `postgres` user), the
# TASKS-task wide DAG of /bin/true (cap 16), alternated ROUNDS times: a daemon per round on a fresh database,
# `conveyor run Wide` timed from the shell. Prints `ROUND BUILD MILLISECONDS` per run.
#   benches/cluster_pair.sh ROUNDS TASKS BUILD_A BUILD_B
set -euo pipefail
rounds="$1"; tasks="$2"; a="$3"; b="$4"
bindir="$(pg_config --bindir)"
work="$(mktemp -d)"; chmod 755 "$work"
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true
  su postgres -s /bin/sh -c "$bindir/pg_ctl -D $work/pg/data -m immediate stop" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/pg" && chown postgres "$work/pg"
su postgres -s /bin/sh -c "$bindir/initdb -D $work/pg/data -A trust -U postgres" >/dev/null
su postgres -s /bin/sh -c "$bindir/pg_ctl -D $work/pg/data -o '-k $work/pg -h \"\" -p 55498' -l $work/pg/log start" >/dev/null
socket="${work//\//%2F}%2Fpg"
mkdir -p "$work/workflows"; echo "max_parallel_tasks = 16" >"$work/workflows/conveyor.toml"
awk -v count="$tasks" 'BEGIN { print "id = \"Wide\"\nkeep_runs = 1000\n[[tasks]]\nname = \"Start\"\ncommand = [\"/bin/true\"]"
  for (i = 0; i < count; i++) printf "[[tasks]]\nname = \"T%d\"\ncommand = [\"/bin/true\"]\ndepends_on = [\"Start\"]\n", i }' >"$work/workflows/wide.toml"
for ((round = 1; round <= rounds; round++)); do
  for bin in "$a" "$b"; do
    db="d_${round}_$(basename $bin | tr -c 'a-z0-9\n' '_')"
    su postgres -s /bin/sh -c "$bindir/createdb -h $work/pg -p 55498 $db"
    rm -rf "$work/state" "$work/log"
    "$bin" daemon --workflows "$work/workflows" --state "$work/state" --store "postgres://postgres@$socket:55498/$db" 2>"$work/log" &
    pid=$!
    until grep -qs "running .* workflow(s)" "$work/log"; do sleep 0.1; done
    begin=$(date +%s%N)
    "$bin" run Wide --workflows "$work/workflows" --state "$work/cli" --store "postgres://postgres@$socket:55498/$db" >/dev/null 2>&1
    end=$(date +%s%N)
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    echo "$round $(basename $bin) $(((end - begin) / 1000000))"
  done
done
