#!/usr/bin/env bash
# The test command: install what is missing, build, start a throwaway PostgreSQL 15 cluster on
# 127.0.0.1 (unless CASECORE_TEST_PG_URL names a server), and run the whole suite on SQLite and
# PostgreSQL (the default preset then also runs the configuration matrix, scripts/test-matrix.sh).
# Usage: scripts/test.sh [default|debug|tsan|asan]
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-default}
scripts/install-deps.sh
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$(nproc)"
if [ -z "${CASECORE_TEST_PG_URL:-}" ]; then
  pgdir=$(mktemp -d "${TMPDIR:-/tmp}/casecore-pg-XXXXXX")
  trap 'scripts/pg-cluster.sh stop "$pgdir" >/dev/null 2>&1 || true; rm -rf "$pgdir"' EXIT
  CASECORE_TEST_PG_URL=$(scripts/pg-cluster.sh start "$pgdir")
  # The torture test restarts this throwaway server mid-run (scripts/pg-cluster.sh restart DIR).
  CASECORE_TEST_PG_DIR=$pgdir
  export CASECORE_TEST_PG_URL CASECORE_TEST_PG_DIR
fi
echo "test: preset $preset, PostgreSQL at $CASECORE_TEST_PG_URL"
ctest --preset "$preset"
# The configuration matrix reruns the setting-dependent tests under other server / SQLite / job
# settings (docs/testing.md); the sanitizer presets skip it to keep CI short.
if [ "$preset" = default ]; then
  scripts/test-matrix.sh "$preset"
fi
