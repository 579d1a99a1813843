#!/usr/bin/env bash
# The demo command: install what is missing, build, and run the example programs on an embedded
# SQLite database. Usage: scripts/demo.sh [--db URL]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset default >/dev/null
cmake --build --preset default -j "$(nproc)"
workdir=$(mktemp -d "${TMPDIR:-/tmp}/casecore-demo-XXXXXX")
trap 'rm -rf "$workdir"' EXIT
db_args=("$@")
[ ${#db_args[@]} -gt 0 ] || db_args=(--db "sqlite://$workdir/quickstart.db")
build/default/examples/quickstart/quickstart "${db_args[@]}"
