#!/bin/sh
# PolicyService: awards each application that passed Review, once per application id whatever the runs and
# attempts: an id already in out/awards.jsonl is not awarded again. Then one letter per award in out/letters/,
# and the files of what this run took move to processed/ — awarded, or rejected at Review (noted in the
# ledger). Passes its input on.
set -eu
. "$(dirname "$0")/ledger.sh"
. "$grants/items.sh"
run="${CONVEYOR_RUN_ID:-manual}"
input=$(cat)
passed=$(printf '%s\n' "$input" | applications || true)
lock

awarded=" "
for id in $(printf '%s\n' "$passed" | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p'); do
  usable_id "$id" || { echo "award: skipped an application with the unusable id \"$id\"" >&2; continue; }
  awarded="$awarded$id "
  state=$(state_of "$id")
  case $state in
    "awarded "*) echo "award: $id was awarded by run ${state#* } already: not again" ;;
    *)
      application=$(printf '%s\n' "$passed" | with_id "$id" | head -n 1)
      printf '{"id": "%s", "run": "%s", "award": %s}\n' "$id" "$run" "$application" >> "$awards"
      echo "award: recorded $id" ;;
  esac
done

# Tests' stand-ins for a crash between recording the awards and filing the applications away: this attempt
# fails, or it stops here (still holding the lock) until it is killed, with its engine.
case ${GRANTS_FAILPOINT:-} in
  award.fail)
    echo "award: failing at GRANTS_FAILPOINT=award.fail" >&2
    exit 1 ;;
  award.hang)
    echo "award: stopped at GRANTS_FAILPOINT=award.hang" >&2
    : > "$out/.failpoint"
    exec sleep 120 ;;
esac

for id in $awarded; do
  state=$(state_of "$id")
  letter "$id" "$(printf '%s\n' "$passed" | with_id "$id" | head -n 1)" "${state#* }"
  file_away "$(file_of "$id")"
done

# What this run took and Review dropped (by a rule or an operator) is rejected, unless another run has taken
# it since this one released it.
for id in $(grep -F "\"state\": \"claimed\", \"run\": \"$run\"," "$ledger" 2>/dev/null | sed 's/^{"id": "\([^"]*\)".*/\1/' | sort -u); do
  case $awarded in *" $id "*) continue ;; esac
  case $(state_of "$id") in
    "claimed $run" | "released $run")
      note "$id" rejected "$run" "$(file_of "$id")"
      file_away "$(file_of "$id")"
      echo "award: $id was not approved: filed as rejected" ;;
  esac
done
printf '%s\n' "$input" > "${CONVEYOR_OUTPUT:-/dev/null}"
