#!/bin/sh
# EligibilityAgent: adds a "score" from 0 to 1 to each application, from its years active and whether it
# serves people with disabilities.
set -eu
here="$(dirname "$0")"
. "$here/items.sh"
scored=$(applications | awk '
  function number(field,   rest) {
    if (!match($0, "\"" field "\": *[0-9.]+")) return 0
    rest = substr($0, RSTART, RLENGTH); sub(/.*: */, "", rest); return rest + 0
  }
  {
    years = number("years_active"); score = 0.3 + (years > 10 ? 10 : years) * 0.05
    if ($0 ~ /"serves_disabled": *true/) score += 0.3
    if (score > 1) score = 1
    line = $0; sub(/} *$/, "", line)
    printf "%s%s, \"score\": %.2f}", (NR > 1 ? ", " : ""), line, score
    id = $0; sub(/.*"id": *"/, "", id); sub(/".*/, "", id)
    printf "score: %s scores %.2f (years active: %d%s)\n", id, score, years, ($0 ~ /"serves_disabled": *true/ ? ", serves people with disabilities" : "") > "/dev/stderr"
  }
')
printf '{"applications": [%s]}\n' "$scored" > "${CONVEYOR_OUTPUT:-/dev/stdout}"
echo "score: done"
