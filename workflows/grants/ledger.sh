# Shared by the grant scripts: what has become of each application, kept in grants/out/ so that no run takes,
# awards or notifies one twice. Tasks run at least once per attempt and runs overlap, so every script reads and
# writes these files only while it holds the lock.
#
#   out/awards.jsonl   one line per award, {"id": …, "run": …, "award": {the application}}: the authority on
#                      "awarded", written in one append so an award is never half-recorded
#   out/ledger.jsonl   one line per change of the other states, {"id", "state", "run", "file", "at"}:
#                      claimed (a run's Ingest took it), released (that run failed first), rejected (its Review
#                      dropped it); an application's state is its last line
#   out/letters/ID.txt one award letter per awarded application
#   processed/         where an application's file goes from applications/ once it is awarded or rejected

grants="$(dirname "$0")"
inbox="$grants/applications"
processed="$grants/processed"
out="$grants/out"
ledger="$out/ledger.jsonl"
awards="$out/awards.jsonl"
letters="$out/letters"

# A symlink to the holder's PID: making one is atomic and fails when it exists, on every system (flock is not
# everywhere), and it is no directory for a watcher of the workflows folder to track. A lock whose holder has
# died (killed while holding it) is taken over; two takers racing for the same dead lock is the one window left.
lock() {
  mkdir -p "$out"
  waited=0
  until ln -s "$$" "$out/.lock" 2>/dev/null; do
    holder=$(readlink "$out/.lock" 2>/dev/null || true)
    if [ -n "$holder" ] && ! kill -0 "$holder" 2>/dev/null; then
      echo "grants: taking over $out/.lock from PID $holder, which is gone" >&2
      rm -f "$out/.lock"
      continue
    fi
    waited=$((waited + 1))
    if [ "$waited" -gt 300 ]; then
      echo "grants: $out/.lock is held by PID ${holder:-?} for over a minute: if no grant script runs, remove it" >&2
      exit 1
    fi
    sleep 0.2
  done
  trap unlock EXIT
  trap 'exit 1' HUP INT TERM
}

unlock() {
  rm -f "$out/.lock"
}

# id_of JSON: the "id" of an application object.
id_of() {
  printf '%s\n' "$1" | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -n 1
}

# with_id ID: the lines of stdin (one application object each) whose "id" is ID, written compactly or not.
with_id() {
  awk -v id="$1" 'index($0, "\"id\":\"" id "\"") || index($0, "\"id\": \"" id "\"")'
}

# usable_id ID: whether ID can name a file (letters/ID.txt) and a ledger line without escaping.
usable_id() {
  case $1 in
    '' | *[!A-Za-z0-9._-]* | .*) return 1 ;;
  esac
}

# field NAME JSON: a string or number field of a flat object, empty when absent.
field() {
  _value=$(printf '%s\n' "$2" | sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" | head -n 1)
  [ -n "$_value" ] || _value=$(printf '%s\n' "$2" | sed -n "s/.*\"$1\": *\(-\{0,1\}[0-9][0-9.]*\).*/\1/p" | head -n 1)
  printf '%s' "$_value"
}

# state_of ID: "awarded RUN", or the last ledger state with its run ("claimed RUN", "released RUN",
# "rejected RUN"), or nothing for an application no run has taken.
state_of() {
  _line=$(grep -F "{\"id\": \"$1\"," "$awards" 2>/dev/null | head -n 1 || true)
  if [ -n "$_line" ]; then
    echo "awarded $(field run "$_line")"
    return
  fi
  _line=$(grep -F "{\"id\": \"$1\"," "$ledger" 2>/dev/null | tail -n 1 || true)
  [ -z "$_line" ] || echo "$(field state "$_line") $(field run "$_line")"
}

# note ID STATE RUN FILE: appends a change of state to the ledger.
note() {
  printf '{"id": "%s", "state": "%s", "run": "%s", "file": "%s", "at": "%s"}\n' \
    "$1" "$2" "$3" "$4" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$ledger"
}

# file_of ID: the inbox file the last claim of ID named.
file_of() {
  field file "$(grep -F "{\"id\": \"$1\", \"state\": \"claimed\"," "$ledger" 2>/dev/null | tail -n 1 || true)"
}

# letter ID JSON RUN: writes out/letters/ID.txt unless it is there; whole or not at all (a rename).
letter() {
  [ ! -e "$letters/$1.txt" ] || return 0
  mkdir -p "$letters"
  _applicant=$(field applicant "$2")
  _amount=$(field amount "$2")
  {
    printf 'Award letter %s\n\n' "$1"
    printf 'To: %s\n' "${_applicant:-the applicant}"
    printf 'Amount awarded: %s\n' "${_amount:-as requested}"
    printf 'Decided in run: %s\n\n' "$3"
    printf 'Dear %s,\n\n' "${_applicant:-applicant}"
    printf 'we are pleased to tell you that your application %s has been approved for a grant of %s.\n' \
      "$1" "${_amount:-the amount you requested}"
  } > "$letters/.$1.txt.$$"
  mv "$letters/.$1.txt.$$" "$letters/$1.txt"
  echo "letter: wrote out/letters/$1.txt"
}

# file_away NAME: moves applications/NAME to processed/ (nothing to do when it is gone already).
file_away() {
  [ -n "$1" ] && [ -e "$inbox/$1" ] || return 0
  mkdir -p "$processed"
  mv "$inbox/$1" "$processed/$1"
}
