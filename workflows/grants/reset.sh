#!/bin/sh
# Resets the grant demo: every application in processed/ goes back to the inbox (applications/), and the
# awards, letters, notices, ledger and archive in out/ are removed. Run it while no run of the pipeline is active:
#   sh workflows/grants/reset.sh
set -eu
grants="$(dirname "$0")"
if [ -d "$grants/processed" ]; then
  mkdir -p "$grants/applications"
  for file in "$grants/processed"/*.json; do
    [ -e "$file" ] || continue
    mv "$file" "$grants/applications/"
  done
  rmdir "$grants/processed" 2>/dev/null || echo "reset: kept $grants/processed: it holds more than applications" >&2
fi
rm -rf "$grants/out"
echo "reset: $(ls "$grants/applications"/*.json 2>/dev/null | wc -l | tr -d ' ') application(s) in $grants/applications, $grants/out removed"
