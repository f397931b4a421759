#!/bin/sh
# NotificationService: one notice per application that reached it, once per application id (a notice already
# in out/notices.log is not sent again); also for awards whose run stopped before its Notify.
set -eu
. "$(dirname "$0")/ledger.sh"
. "$grants/items.sh"
ids=$(applications | sed 's/.*"id": *"\([^"]*\)".*/\1/' || true)
lock
[ ! -e "$awards" ] || ids="$ids
$(sed -n 's/^{"id": "\([^"]*\)".*/\1/p' "$awards")"
sent=0
for id in $ids; do
  if [ -e "$out/notices.log" ] && awk -v id="$id" '$NF == id { found = 1 } END { exit !found }' "$out/notices.log"; then
    echo "notify: notice for $id was sent already"
    continue
  fi
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) award notice sent for $id" >> "$out/notices.log"
  echo "notify: notice sent for $id"
  sent=$((sent + 1))
done
echo "notify: $sent notice(s) sent"
printf '{"sent": %s}\n' "$sent" > "${CONVEYOR_OUTPUT:-/dev/stdout}"
