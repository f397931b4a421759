#!/bin/sh
# EligibilityAgent: adds a "score" from 0 to 1 to each application (one per line of input).
set -eu
# One application object per line, whatever the layout of the JSON on stdin.
tr -d '\n' | sed 's/}, *{/},\n{/g; s/\[ *{/[\n{/; s/} *\]/}\n]/' | awk '
  function number(field,   rest) {
    if (!match($0, "\"" field "\": *[0-9.]+")) return 0
    rest = substr($0, RSTART, RLENGTH); sub(/.*: */, "", rest); return rest + 0
  }
  /^ *\{ *"id"/ {
    years = number("years_active"); score = 0.3 + (years > 10 ? 10 : years) * 0.05
    if ($0 ~ /"serves_disabled": *true/) score += 0.3
    if (score > 1) score = 1
    line = $0; trailing = (line ~ /,$/) ? "," : ""; sub(/,$/, "", line); sub(/} *$/, "", line)
    printf "%s, \"score\": %.2f}%s\n", line, score, trailing
    printf "score: %s\n", line > "/dev/stderr"
    next
  }
  { print }
' > "${CONVEYOR_OUTPUT:-/dev/stdout}"
echo "score: done"
