#!/bin/sh
# NotificationService: one notice per application that reached it.
set -eu
here="$(dirname "$0")"
. "$here/items.sh"
mkdir -p "$here/out"
sent=0
for id in $(applications | sed 's/.*"id": *"\([^"]*\)".*/\1/'); do
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) award notice sent for $id" >> "$here/out/notices.log"
  echo "notify: notice sent for $id"
  sent=$((sent + 1))
done
echo "notify: $sent notice(s) sent"
printf '{"sent": %s}\n' "$sent" > "${CONVEYOR_OUTPUT:-/dev/stdout}"
