#!/bin/sh
# GrantIngestionService: one JSON application per file in grants/applications/, one per line of output.
set -eu
dir="$(dirname "$0")/applications"
count=$(ls "$dir"/*.json 2>/dev/null | wc -l)
echo "ingest: $count application(s) in $dir"
{
  printf '{"applications": [\n'
  first=1
  for file in "$dir"/*.json; do
    [ -e "$file" ] || continue
    [ "$first" = 1 ] || printf ',\n'
    first=0
    tr -d '\n' < "$file"
  done
  printf '\n]}\n'
} > "${CONVEYOR_OUTPUT:-/dev/stdout}"
