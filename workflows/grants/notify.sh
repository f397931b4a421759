#!/bin/sh
# NotificationService: one notice per award in the input.
set -eu
out="$(dirname "$0")/out"
mkdir -p "$out"
sent=0
for id in $(grep -o '"id": *"[^"]*"' | sed 's/.*: *"//; s/"$//'); do
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) award notice sent for $id" >> "$out/notices.log"
  sent=$((sent + 1))
done
echo "notify: $sent notice(s) sent"
printf '{"sent": %s}\n' "$sent" > "${CONVEYOR_OUTPUT:-/dev/stdout}"
