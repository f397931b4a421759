#!/usr/bin/env bash
# Engines sharing one PostgreSQL (a throwaway cluster in a temp folder, run as the `postgres` user):
#  1. a 2,000-task wide DAG of /bin/true (cap 16 per engine) triggered on a cluster of 1, 2 and 3 engines,
#     alternating the cluster sizes over ROUNDS rounds (default 12): whole run, trigger to end, as `conveyor run`
#     sees it; and claim latency (an attempt's offer to its claim, both on the database's clock, recorded by a
#     trigger this script adds to the bench's database only), p50/p99 per cluster size;
#  2. fire lateness with 3 engines: 50 every-second workflows for SECONDS (default 60), then fired_at minus
#     scheduled_at over every fire, p50/p99/max, and the count of missed and doubled instants.
# Needs PostgreSQL's server binaries (`pg_config --bindir`) and root (to run them as `postgres`).
#   [CONVEYOR=BINARY] benches/cluster.sh [ROUNDS] [TASKS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-12}"
tasks="${2:-2000}"
seconds="${3:-60}"
if [[ -z "${CONVEYOR:-}" ]]; then
  cargo build --release --quiet --bin conveyor
fi
binary="${CONVEYOR:-$PWD/target/release/conveyor}"
bindir="$(pg_config --bindir)"
work="$(mktemp -d)"
chmod 755 "$work"
engines=()
stop_all() {
  for pid in "${engines[@]:-}"; do [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  su postgres -s /bin/sh -c "$bindir/pg_ctl -D $work/pg/data -m immediate stop" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap stop_all EXIT
mkdir -p "$work/pg" && chown postgres "$work/pg"
su postgres -s /bin/sh -c "$bindir/initdb -D $work/pg/data -A trust -U postgres" >/dev/null
su postgres -s /bin/sh -c "$bindir/pg_ctl -D $work/pg/data -o '-k $work/pg -h \"\" -p 55499 -c max_connections=200 -c fsync=on' -l $work/pg/log start" >/dev/null
socket="${work//\//%2F}%2Fpg"
export CONVEYOR_CLUSTER_TIMING=3000,500

start_engines() { # COUNT DATABASE FOLDER
  engines=()
  for ((n = 1; n <= $1; n++)); do
    mkdir -p "$3/state$n"
    "$binary" daemon --workflows "$3/workflows" --state "$3/state$n" --store "postgres://postgres@$socket:55499/$2" \
      2>"$3/engine$n.log" &
    engines+=($!)
  done
  # Ready once one leads (the others stand by).
  until grep -qs "running .* workflow(s)" "$3"/engine*.log; do sleep 0.1; done
}
stop_engines() {
  for pid in "${engines[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${engines[@]}"; do wait "$pid" 2>/dev/null || true; done
  engines=()
}

# The work rows are deleted once settled: a trigger keeps each claim's wait, from the offer's commit to the
# claiming statement, on the database's clock (call once the engines have made the schema).
record_claims() { # DATABASE
  "$bindir/psql" -h "$work/pg" -p 55499 -U postgres "$1" -q -c "
    CREATE TABLE claims_seen (ms double precision);
    CREATE FUNCTION claim_seen() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN
      INSERT INTO claims_seen VALUES (extract(epoch FROM NEW.claimed_at - NEW.offered_at) * 1000); RETURN NEW; END \$\$;
    CREATE TRIGGER claim_seen AFTER UPDATE OF state ON work FOR EACH ROW
      WHEN (OLD.state = 'ready' AND NEW.state = 'running') EXECUTE FUNCTION claim_seen();"
}

# --- 1. the wide DAG on 1, 2 and 3 engines
wide="$work/wide"
mkdir -p "$wide/workflows"
echo "max_parallel_tasks = 16" >"$wide/workflows/conveyor.toml"
awk -v count="$tasks" 'BEGIN {
  print "id = \"Wide\"\nkeep_runs = 1000\n[[tasks]]\nname = \"Start\"\ncommand = [\"/bin/true\"]"
  for (i = 0; i < count; i++) printf "[[tasks]]\nname = \"T%d\"\ncommand = [\"/bin/true\"]\ndepends_on = [\"Start\"]\n", i
}' >"$wide/workflows/wide.toml"
declare -A took
for ((round = 1; round <= rounds; round++)); do
  for size in 1 2 3; do
    db="wide_${round}_$size"
    su postgres -s /bin/sh -c "$bindir/createdb -h $work/pg -p 55499 $db"
    rm -rf "$wide"/state* "$wide"/engine*.log
    start_engines "$size" "$db" "$wide"
    record_claims "$db"
    begin=$(date +%s%N)
    "$binary" run Wide --workflows "$wide/workflows" --state "$wide/cli" --store "postgres://postgres@$socket:55499/$db" >/dev/null
    end=$(date +%s%N)
    stop_engines
    "$bindir/psql" -h "$work/pg" -p 55499 -U postgres "$db" -Atc "SELECT ms FROM claims_seen" >>"$work/claims_$size"
    echo "  engines that ran its attempts: $("$bindir/psql" -h "$work/pg" -p 55499 -U postgres "$db" -Atc \
      "SELECT string_agg(n::text, ' ') FROM (SELECT count(*) AS n FROM attempts GROUP BY engine ORDER BY engine) per")"
    took[$size]+="$(((end - begin) / 1000000)) "
    echo "round $round, $size engine(s): $(((end - begin) / 1000000)) ms"
  done
done
for size in 1 2 3; do
  echo "${took[$size]}" | tr ' ' '\n' | grep . | sort -n | awk -v size="$size" -v tasks="$tasks" '{ v[NR] = $1 } END {
    m = v[int((NR + 1) / 2)]
    printf "%d engine(s): median %d ms (%.0f tasks/s), quartiles %d-%d ms, min %d, max %d\n", size, m, tasks * 1000 / m,
      v[int(NR / 4) + 1], v[int((3 * NR + 3) / 4)], v[1], v[NR] }'
done

for size in 1 2 3; do
  sort -g "$work/claims_$size" | awk -v size="$size" '{ v[NR] = $1 } END {
    printf "%d engine(s): claim latency over %d claims: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", size, NR,
      v[int(NR * 0.5) + 1], v[int(NR * 0.99) + 1], v[NR] }'
done

# --- 1b. claim latency of an idle cluster: a chain of CHAIN tasks (one ready at a time) on 2 engines
chain="$work/chain"
mkdir -p "$chain/workflows"
awk -v count="${CHAIN:-300}" 'BEGIN {
  print "id = \"Chain\"\n[[tasks]]\nname = \"T0\"\ncommand = [\"/bin/true\"]"
  for (i = 1; i < count; i++) printf "[[tasks]]\nname = \"T%d\"\ncommand = [\"/bin/true\"]\ndepends_on = [\"T%d\"]\n", i, i - 1
}' >"$chain/workflows/chain.toml"
su postgres -s /bin/sh -c "$bindir/createdb -h $work/pg -p 55499 chain"
start_engines 2 chain "$chain"
record_claims chain
begin=$(date +%s%N)
"$binary" run Chain --workflows "$chain/workflows" --state "$chain/cli" --store "postgres://postgres@$socket:55499/chain" >/dev/null
end=$(date +%s%N)
stop_engines
echo "chain of ${CHAIN:-300} on 2 engines: $(((end - begin) / 1000000)) ms"
"$bindir/psql" -h "$work/pg" -p 55499 -U postgres chain -Atc "SELECT ms FROM claims_seen" | sort -g | awk '{ v[NR] = $1 } END {
  printf "idle claim latency (offer committed to claimed) over %d claims: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", NR,
    v[int(NR * 0.5) + 1], v[int(NR * 0.99) + 1], v[NR] }'

# --- 2. fire lateness with 3 engines
fires="$work/fires"
mkdir -p "$fires/workflows"
for ((n = 0; n < 50; n++)); do
  printf 'id = "Every%02d"\n[trigger]\ntype = "schedule"\ncron = "* * * * * *"\n[[tasks]]\nname = "T"\ncommand = ["/bin/true"]\n' \
    "$n" >"$fires/workflows/every$n.toml"
done
su postgres -s /bin/sh -c "$bindir/createdb -h $work/pg -p 55499 fires"
start_engines 3 fires "$fires"
sleep "$seconds"
stop_engines
psql=("$bindir/psql" -h "$work/pg" -p 55499 -U postgres fires -Atc)
"${psql[@]}" "SELECT 'fires ' || count(*) || ', lateness p50 ' ||
    round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) || ' ms, p99 ' ||
    round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1) || ' ms, max ' || round(max(ms)::numeric, 1) || ' ms'
  FROM (SELECT extract(epoch FROM fired_at - scheduled_at) * 1000 AS ms FROM fires) late"
"${psql[@]}" "SELECT 'instants fired twice: ' || count(*) FROM (SELECT 1 FROM fires GROUP BY workflow, scheduled_at HAVING count(*) > 1) twice"
"${psql[@]}" "SELECT 'instants missed: ' || coalesce(sum(expected - got), 0) FROM (
    SELECT workflow, count(*) AS got,
      extract(epoch FROM max(scheduled_at) - min(scheduled_at))::int + 1 AS expected FROM fires GROUP BY workflow) per"
