#!/usr/bin/env bash
# Prints the workflow the chain benches run: `Chain`, N tasks of `/bin/true` one after another.
#   benches/chain_workflow.sh N
set -euo pipefail
awk -v count="$1" 'BEGIN {
  print "id = \"Chain\"\nkeep_runs = 1000"
  for (i = 0; i < count; i++) printf "[[tasks]]\nname = \"T%d\"\ncommand = [\"/bin/true\"]\n", i
}'
