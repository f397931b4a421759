#!/bin/sh
# PolicyService: records each application that reached it as an award; passes its input on.
set -eu
here="$(dirname "$0")"
. "$here/items.sh"
mkdir -p "$here/out"
input=$(cat)
printf '%s\n' "$input" | applications | while IFS= read -r award; do
  printf '{"run": "%s", "award": %s}\n' "${CONVEYOR_RUN_ID:-manual}" "$award" >> "$here/out/awards.jsonl"
  echo "award: recorded $(printf '%s' "$award" | sed 's/.*"id": *"\([^"]*\)".*/\1/')"
done
printf '%s\n' "$input" > "${CONVEYOR_OUTPUT:-/dev/null}"
