#!/bin/sh
# PolicyService: records each application in the input as an award.
set -eu
out="$(dirname "$0")/out"
mkdir -p "$out"
input=$(cat)
printf '%s\n' "$input" | tr -d '\n' | sed 's/}, *{/},\n{/g; s/\[ *{/[\n{/; s/} *\]/}\n]/' | grep '"id"' | sed 's/^ *//; s/,$//' | while IFS= read -r award; do
  printf '{"run": "%s", "award": %s}\n' "${CONVEYOR_RUN_ID:-manual}" "$award" >> "$out/awards.jsonl"
  echo "award: recorded $award"
done
printf '%s\n' "$input" > "${CONVEYOR_OUTPUT:-/dev/null}"
