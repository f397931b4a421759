#!/bin/sh
# The pipeline's on_failure handler: gives back the applications a failed run took and did not decide, so the
# next run takes them. By hand: `sh workflows/grants/release.sh RUN` (for a run that was cancelled).
set -eu
. "$(dirname "$0")/ledger.sh"
run="${1:-${CONVEYOR_RUN_ID:-}}"
[ -n "$run" ] || { echo "release: expected a run id: sh grants/release.sh RUN" >&2; exit 2; }
lock
released=0
for id in $(grep -F "\"state\": \"claimed\", \"run\": \"$run\"," "$ledger" 2>/dev/null | sed 's/^{"id": "\([^"]*\)".*/\1/' | sort -u); do
  [ "$(state_of "$id")" = "claimed $run" ] || continue
  note "$id" released "$run" "$(file_of "$id")"
  echo "release: $id is free for the next run"
  released=$((released + 1))
done
echo "release: $released application(s) released by run $run"
