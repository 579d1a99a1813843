#!/usr/bin/env bash
# The test command: install what is missing, build, start a throwaway PostgreSQL 15 cluster on
# 127.0.0.1 (unless CASECORE_TEST_PG_URL names a server) with two PgBouncers in front of it
# (transaction and session pooling, fewer server connections than client threads), and run the whole
# suite on SQLite and PostgreSQL. The default preset then runs the PostgreSQL suite again through
# PgBouncer in transaction mode and in session mode, and the configuration matrix
# (scripts/test-matrix.sh).
# Usage: scripts/test.sh [default|debug|tsan|asan]
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-default}
scripts/install-deps.sh
# ccache (when installed) keeps rebuilds of unchanged files cheap across presets, reruns and clean
# clones in other folders (CI): the base dir makes its keys independent of where the tree lives.
if command -v ccache >/dev/null; then
  export CMAKE_CXX_COMPILER_LAUNCHER=ccache CMAKE_C_COMPILER_LAUNCHER=ccache CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=true
fi
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$(nproc)"
cleanup=()
trap 'for c in "${cleanup[@]}"; do eval "$c" >/dev/null 2>&1 || true; done' EXIT
if [ -z "${CASECORE_TEST_PG_URL:-}" ]; then
  pgdir=$(mktemp -d "${TMPDIR:-/tmp}/casecore-pg-XXXXXX")
  cleanup+=("scripts/pg-cluster.sh stop '$pgdir'; rm -rf '$pgdir'")
  CASECORE_TEST_PG_URL=$(scripts/pg-cluster.sh start "$pgdir")
  # The torture test restarts this throwaway server mid-run (scripts/pg-cluster.sh restart DIR).
  CASECORE_TEST_PG_DIR=$pgdir
  export CASECORE_TEST_PG_URL CASECORE_TEST_PG_DIR
fi
if [ -z "${CASECORE_TEST_PGBOUNCER_URL:-}" ]; then
  pg_port=$(echo "$CASECORE_TEST_PG_URL" | sed -E 's|.*:([0-9]+)/.*|\1|')
  bdir=$(mktemp -d "${TMPDIR:-/tmp}/casecore-bouncer-XXXXXX")
  chmod 0755 "$bdir" # as root, pgbouncer runs as postgres and must reach $bdir/tx and $bdir/session
  cleanup+=("scripts/pgbouncer.sh stop '$bdir/tx'; scripts/pgbouncer.sh stop '$bdir/session'; rm -rf '$bdir'")
  CASECORE_TEST_PGBOUNCER_URL=$(scripts/pgbouncer.sh start "$bdir/tx" "$pg_port" transaction 4)
  # Session mode pins a server connection per client connection: enough of them for the suite.
  CASECORE_TEST_PGBOUNCER_SESSION_URL=$(scripts/pgbouncer.sh start "$bdir/session" "$pg_port" session 80)
  export CASECORE_TEST_PGBOUNCER_URL CASECORE_TEST_PGBOUNCER_SESSION_URL
fi
echo "test: preset $preset, PostgreSQL at $CASECORE_TEST_PG_URL"
echo "test: PgBouncer transaction mode at $CASECORE_TEST_PGBOUNCER_URL, session mode at $CASECORE_TEST_PGBOUNCER_SESSION_URL"
ctest --preset "$preset"

if [ "$preset" = default ]; then
  # The PostgreSQL suite (torture included) again, through each pooler. Tests that need a direct
  # session skip themselves with a message (CASECORE_TEST_PG_POOLER).
  for mode in transaction session; do
    if [ $mode = transaction ]; then url=$CASECORE_TEST_PGBOUNCER_URL; else url=$CASECORE_TEST_PGBOUNCER_SESSION_URL; fi
    echo "test: the PostgreSQL suite through PgBouncer in $mode mode ($url)"
    CASECORE_TEST_PG_DIRECT_URL=$CASECORE_TEST_PG_URL CASECORE_TEST_PG_POOLER=$mode CASECORE_TEST_PG_URL=$url \
      ctest --preset "$preset" -R '\.postgres$' -E '^(pooler_test|consumer)'
  done
  # casecore built without PostgreSQL (-DCASECORE_WITH_POSTGRES=OFF, build/no-postgres): it builds,
  # its SQLite suite passes, and its install serves a SQLite-only consumer with no libpqxx anywhere
  # (consumer.installed there; the postgres component is refused with the reason).
  echo "test: the build without PostgreSQL (build/no-postgres): SQLite suite and SQLite-only consumer"
  launcher=() # a second full build: ccache makes reruns cheap where it is installed
  if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
  cmake -S . -B build/no-postgres -DCASECORE_WITH_POSTGRES=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" \
    -DCASECORE_WARNINGS_AS_ERRORS=ON -DCASECORE_BUILD_BENCH=OFF -DCASECORE_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build build/no-postgres -j "$(nproc)" --target casecore_tests casecore_umbrella_test
  (cd build/no-postgres && env -u CASECORE_TEST_PG_URL ctest -j 2 --output-on-failure --timeout 900 \
     -R '(\.sqlite$|_unit_test$|^umbrella\.|^consumer\.(installed|pkgconfig)$)' -E '^(torture|property|example|fiu)')
  # The configuration matrix reruns the setting-dependent tests under other server / SQLite / job
  # settings (docs/testing.md); the sanitizer presets skip it to keep CI short.
  scripts/test-matrix.sh "$preset"
fi

# The fuzzers, short (docs/SECURITY.md): clang + libFuzzer under ASan/UBSan in build/fuzz, each target
# CASECORE_FUZZ_SECONDS (default 30; 0 skips; scripts/fuzz.sh --long for the long run).
if [ "$preset" = default ] && [ "${CASECORE_FUZZ_SECONDS:-30}" != 0 ]; then
  scripts/fuzz.sh "${CASECORE_FUZZ_SECONDS:-30}"
fi
