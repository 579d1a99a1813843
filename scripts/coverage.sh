#!/usr/bin/env bash
# Coverage as a floor, not the proof: build the `coverage` preset (gcc --coverage with atomic
# counters, since the threaded tests corrupt plain gcov counters), run the whole suite on SQLite and
# on PostgreSQL (a throwaway cluster, as scripts/test.sh starts one, unless CASECORE_TEST_PG_URL is
# set), then report src/ line and branch coverage with gcovr (throw and unreachable branches
# excluded) and fail below the floors.
#
# Usage: scripts/coverage.sh [--no-build] [--keep-going]
#   --no-build     reuse build/coverage as it is (still clears old counters and reruns the suite)
#   --keep-going   report coverage even when a test failed (the script still exits non-zero)
# Floors (percent, decimals allowed): CASECORE_COVERAGE_MIN_LINES, CASECORE_COVERAGE_MIN_BRANCHES.
# Output: the summary, the files below 100 %, the unit of work's unreached lines, and
# build/coverage/coverage.{txt,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# The floors sit just under today's figures (96.6 % lines, 85.4 % branches; timing-dependent paths
# move them by about 0.1) so a change that drops coverage fails; raise them as tests are added.
# Issue 10's target is 95 % / 85 % (docs/testing.md has the history).
min_lines=${CASECORE_COVERAGE_MIN_LINES:-96.4}
min_branches=${CASECORE_COVERAGE_MIN_BRANCHES:-85.0} # issue 10's target; measured 85.2-85.5
build=1
keep_going=0
for a in "$@"; do
  case $a in
    --no-build) build=0 ;;
    --keep-going) keep_going=1 ;;
    *) echo "usage: scripts/coverage.sh [--no-build] [--keep-going]" >&2; exit 2 ;;
  esac
done

start=$SECONDS
if ((build)); then
  scripts/install-deps.sh
  if command -v ccache >/dev/null; then # as in scripts/test.sh
    export CMAKE_CXX_COMPILER_LAUNCHER=ccache CMAKE_C_COMPILER_LAUNCHER=ccache CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=true
  fi
  cmake --preset coverage >/dev/null
  cmake --build --preset coverage -j "$(nproc)"
fi
command -v gcovr >/dev/null || { echo "coverage: gcovr not found (apt-get install gcovr)" >&2; exit 2; }

# The same servers as scripts/test.sh: a throwaway cluster and two PgBouncers in front of it.
cleanup=()
trap 'for c in "${cleanup[@]}"; do eval "$c" >/dev/null 2>&1 || true; done' EXIT
if [ -z "${CASECORE_TEST_PG_URL:-}" ]; then
  pgdir=$(mktemp -d "${TMPDIR:-/tmp}/casecore-pg-XXXXXX")
  cleanup+=("scripts/pg-cluster.sh stop '$pgdir'; rm -rf '$pgdir'")
  CASECORE_TEST_PG_URL=$(scripts/pg-cluster.sh start "$pgdir")
  CASECORE_TEST_PG_DIR=$pgdir
  export CASECORE_TEST_PG_URL CASECORE_TEST_PG_DIR
fi
if [ -z "${CASECORE_TEST_PGBOUNCER_URL:-}" ]; then
  pg_port=$(echo "$CASECORE_TEST_PG_URL" | sed -E 's|.*:([0-9]+)/.*|\1|')
  bdir=$(mktemp -d "${TMPDIR:-/tmp}/casecore-bouncer-XXXXXX")
  chmod 0755 "$bdir" # as root, pgbouncer runs as postgres and must reach $bdir/tx and $bdir/session
  cleanup+=("scripts/pgbouncer.sh stop '$bdir/tx'; scripts/pgbouncer.sh stop '$bdir/session'; rm -rf '$bdir'")
  CASECORE_TEST_PGBOUNCER_URL=$(scripts/pgbouncer.sh start "$bdir/tx" "$pg_port" transaction 4)
  CASECORE_TEST_PGBOUNCER_SESSION_URL=$(scripts/pgbouncer.sh start "$bdir/session" "$pg_port" session 80)
  export CASECORE_TEST_PGBOUNCER_URL CASECORE_TEST_PGBOUNCER_SESSION_URL
fi

# The property tests run 1,000 cases each here instead of 10,000 (the default suite runs those):
# -O0 with atomic counters makes them ten times slower, and more cases add no covered line.
export CASECORE_PROPERTY_CASES=${CASECORE_PROPERTY_CASES:-1000}
# Counters of an earlier run would be added to this one's.
find build/coverage -name '*.gcda' -delete
echo "coverage: running the suite (both backends), PostgreSQL at $CASECORE_TEST_PG_URL"
suite=0
ctest --preset coverage || suite=$?
if ((suite != 0 && !keep_going)); then
  echo "coverage: the suite failed (rerun with --keep-going to report coverage anyway)" >&2
  exit "$suite"
fi

report=(gcovr --root "$root" --object-directory "$root/build/coverage" --filter "$root/src/"
        --exclude-throw-branches --exclude-unreachable-branches --gcov-ignore-parse-errors
        --gcov-exclude ".*CMakeCXXCompilerId.*")
"${report[@]}" --txt "build/coverage/coverage.txt" --json-summary "build/coverage/coverage.json" --json-summary-pretty
read -r lines branches < <(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
print(s["line_percent"], s["branch_percent"])' build/coverage/coverage.json)

echo
echo "coverage: files of src/ below 100 % lines (lines, branches, missing line numbers):"
awk '$1 ~ /^src\// && $4 != "100%"' build/coverage/coverage.txt || true
echo
echo "coverage: unreached lines of the unit of work (src/database.cpp, src/transaction.cpp, src/pool.cpp):"
grep -E '^src/(database|transaction|pool)\.cpp' build/coverage/coverage.txt || true
echo
printf 'coverage: src/ lines %s %% (floor %s), branches %s %% (floor %s), throw/unreachable branches excluded; %d s\n' \
  "$lines" "$min_lines" "$branches" "$min_branches" "$((SECONDS - start))"
fail=0
awk -v a="$lines" -v b="$min_lines" 'BEGIN { exit !(a + 0 < b + 0) }' && { echo "coverage: lines below the floor" >&2; fail=1; }
awk -v a="$branches" -v b="$min_branches" 'BEGIN { exit !(a + 0 < b + 0) }' && { echo "coverage: branches below the floor" >&2; fail=1; }
((suite == 0)) || fail=1
exit "$fail"
