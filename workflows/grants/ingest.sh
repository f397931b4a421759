#!/bin/sh
# GrantIngestionService: takes the new applications in grants/applications/ (one JSON object per file) and
# outputs them as {"applications": [...]}. Each one it takes is claimed for this run in out/ledger.jsonl; a
# later run skips it while this one holds it, and for good once it is awarded or rejected (then its file moves
# to processed/). A retried attempt of the same run takes its own claims again.
set -eu
. "$(dirname "$0")/ledger.sh"
run="${CONVEYOR_RUN_ID:-manual}"
lock
taken=0
seen=" "
# Inside the block stdout is the output; what it says goes to the log (the original stdout), fd 3.
exec 3>&1
{
  printf '{"applications": [\n'
  for file in "$inbox"/*.json; do
    [ -e "$file" ] || continue
    name=$(basename "$file")
    application=$(tr -d '\n' < "$file")
    id=$(id_of "$application")
    if ! usable_id "$id"; then
      echo "ingest: skipped $name: expected an \"id\" of letters, digits, '.', '_' or '-', found \"$id\"" >&2
      continue
    fi
    case $seen in *" $id "*)
      echo "ingest: skipped $name: another file has the id $id" >&2
      continue ;;
    esac
    seen="$seen$id "
    state=$(state_of "$id")
    case $state in
      "awarded "* | "rejected "*)
        # Decided, but its run stopped before filing it away: finish that run's work, take nothing.
        [ "${state%% *}" != awarded ] || letter "$id" "$application" "${state#* }" >&3
        file_away "$name"
        echo "ingest: $id was ${state%% *} by run ${state#* } already: moved to processed/" >&3
        continue ;;
      "claimed $run") ;;
      "claimed "*)
        echo "ingest: $id is held by run ${state#* }, which took it first" >&3
        continue ;;
      *) note "$id" claimed "$run" "$name" ;;
    esac
    [ "$taken" = 0 ] || printf ',\n'
    taken=$((taken + 1))
    printf '%s' "$application"
  done
  printf '\n]}\n'
} > "${CONVEYOR_OUTPUT:-/dev/stdout}"
if [ "$taken" = 0 ]; then
  echo "ingest: nothing new in $inbox"
else
  echo "ingest: took $taken application(s) from $inbox"
fi
