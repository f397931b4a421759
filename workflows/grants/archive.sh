#!/bin/sh
# ArchiveService: copies the file named in the input ("file": "...") into grants/out/archive/.
set -eu
out="$(dirname "$0")/out/archive"
mkdir -p "$out"
file=$(grep -o '"file": *"[^"]*"' | head -n 1 | sed 's/.*: *"//; s/"$//')
[ -n "$file" ] || { echo "archive: no file in the input" >&2; exit 2; }
cp "$file" "$out/"
echo "archive: copied $file"
printf '{"archived": "%s"}\n' "$out/$(basename "$file")" > "${CONVEYOR_OUTPUT:-/dev/stdout}"
