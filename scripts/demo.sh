#!/usr/bin/env bash
# The demo command: install what is missing, build the example programs and run them, each on its own
# embedded SQLite database: quickstart, then the three seed systems rebuilt on casecore
# (forensic_case, lab_protocols, work_orders). Each prints an invariant report and exits non-zero
# when one breaks; the demo stops at the first failure with that exit code.
#
# Usage: scripts/demo.sh [--db URL]
#   With --db, every program runs on that database instead; the seed examples get --fresh (on
#   PostgreSQL each runs in a private schema that is dropped afterwards; a SQLite file is recreated).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset default >/dev/null
cmake --build --preset default -j "$(nproc)" --target quickstart forensic_case lab_protocols work_orders
workdir=$(mktemp -d "${TMPDIR:-/tmp}/casecore-demo-XXXXXX")
trap 'rm -rf "$workdir"' EXIT

url=""
if [ $# -gt 0 ]; then
  [ "$1" = "--db" ] && [ $# -eq 2 ] || { echo "usage: scripts/demo.sh [--db URL]" >&2; exit 2; }
  url=$2
fi

run() { # run <name> <args...>
  local name=$1
  shift
  echo
  echo "=== $name"
  local rc=0
  "build/default/examples/$name/$name" "$@" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "demo: $name FAILED (exit $rc)" >&2
    exit "$rc"
  fi
}

for name in quickstart forensic_case lab_protocols work_orders; do
  if [ -z "$url" ]; then
    run "$name" --db "sqlite://$workdir/$name.db"
  elif [ "$name" = quickstart ]; then
    run "$name" --db "$url"
  else
    run "$name" --db "$url" --fresh
  fi
done
echo
echo "demo: every example ran and every invariant held"
