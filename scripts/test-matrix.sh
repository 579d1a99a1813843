#!/usr/bin/env bash
# The configuration matrix: rerun the parts of the suite whose guarantees depend on a setting, under
# the settings a deployment may have (docs/testing.md, "Configuration matrix"):
#   pg-repeatable-read  every *.postgres test on a database whose default_transaction_isolation is
#                       'repeatable read' (ALTER DATABASE ... SET, as a DBA would)
#   pg-serializable     the same with 'serializable'
#   sqlite-normal       every *.sqlite test with synchronous=normal (CASECORE_TEST_SQLITE_PARAMS)
#   jobs-batch-1        jobs and worker tests (both backends) with CASECORE_TEST_JOB_BATCH=1
#   jobs-batch-100      ... with CASECORE_TEST_JOB_BATCH=100
#   jobs-lease-300ms    ... with CASECORE_TEST_LEASE_MS=300 (tiny leases and heartbeats)
# CASECORE_TEST_LONG=1 does more: every variant repeated 3 times (ctest --repeat until-fail:3), two
# more job variants (batch 7, lease 150 ms) and the property tests with 10x their cases.
#
# Usage: scripts/test-matrix.sh [PRESET]   (default: default; run by scripts/test.sh after the suite)
# Needs CASECORE_TEST_PG_URL (a server where it may CREATE DATABASE; scripts/test.sh provides one).
# Prints a table of the variants; exits non-zero when one failed.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-default}
build=build/$preset
long=${CASECORE_TEST_LONG:-0}
[[ -d $build ]] || { echo "test-matrix: no build in $build (cmake --preset $preset && cmake --build --preset $preset)" >&2; exit 2; }
[[ -n ${CASECORE_TEST_PG_URL:-} ]] || { echo "test-matrix: CASECORE_TEST_PG_URL is not set" >&2; exit 2; }

pg_bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
base_url=${CASECORE_TEST_PG_URL%%\?*}
base_query=${CASECORE_TEST_PG_URL#"$base_url"}
server=${base_url%/*}   # postgresql://user@host:port
[[ $server == *://* && ${server#*://} != "" ]] || { echo "test-matrix: cannot find the database name in CASECORE_TEST_PG_URL" >&2; exit 2; }

psql_admin() { "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 "$CASECORE_TEST_PG_URL" "$@" </dev/null; }
created=()
cleanup() {
  for db in "${created[@]}"; do psql_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

# A database in the same cluster whose default isolation level is `level`; its URL goes to $db_url.
db_url=
database_with_default() {
  local db=$1 level=$2
  psql_admin -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
  psql_admin -c "CREATE DATABASE $db" >/dev/null
  psql_admin -c "ALTER DATABASE $db SET default_transaction_isolation = '$level'" >/dev/null
  created+=("$db")
  db_url="$server/$db$base_query"
  # A new session there must see the setting, or the variant would prove nothing.
  local seen
  seen=$("$pg_bin/psql" -X -A -t -c "SHOW default_transaction_isolation" "$db_url" </dev/null)
  [[ $seen == "$level" ]] || { echo "test-matrix: $db reports default_transaction_isolation '$seen', not '$level'" >&2; exit 2; }
}

repeat=()
((long == 1)) && repeat=(--repeat until-fail:3)
rows=()
failed=0
# run NAME SETTINGS -- ENV... -- CTEST-ARGS...
run() {
  local name=$1 settings=$2
  shift 2
  local envs=() args=()
  [[ $1 == -- ]] && shift
  while (($#)) && [[ $1 != -- ]]; do envs+=("$1"); shift; done
  [[ ${1:-} == -- ]] && shift
  args=("$@")
  local log=$build/test-matrix-$name.log t0=$SECONDS status=passed count
  echo "test-matrix: $name ($settings)"
  if ! env "${envs[@]}" ctest --test-dir "$build" -j 2 --timeout 900 --output-on-failure "${repeat[@]}" "${args[@]}" >"$log" 2>&1; then
    status=FAILED
    failed=1
    grep -E '^\s*[0-9]+ - |tests failed|Failed|\*\*\*' "$log" | tail -20 >&2 || true
    echo "test-matrix: $name failed, full log: $log" >&2
  fi
  count=$(grep -Eo 'tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1)
  [[ -n $count ]] || { count=0; status=FAILED; failed=1; }
  rows+=("$(printf '%-20s %-52s %6s %-7s %5ss' "$name" "$settings" "$count" "$status" "$((SECONDS - t0))")")
}

start=$SECONDS
jobs_tests='^(job_queue_test|job_queue_claims_test|job_queue_long_run_test|worker_test)\.'
# The property tests stay out of the short run (10,000 cases on PostgreSQL are mostly round trips;
# repository_test covers the same statements); CASECORE_TEST_LONG=1 runs them too.
pg_skip=(-LE property)
((long == 1)) && pg_skip=()
database_with_default casecore_matrix_rr 'repeatable read'
run pg-repeatable-read "default_transaction_isolation = 'repeatable read'" -- CASECORE_TEST_PG_URL="$db_url" -- -R '\.postgres$' "${pg_skip[@]}"
database_with_default casecore_matrix_ser 'serializable'
run pg-serializable "default_transaction_isolation = 'serializable'" -- CASECORE_TEST_PG_URL="$db_url" -- -R '\.postgres$' "${pg_skip[@]}"
run sqlite-normal "SQLite synchronous=normal" -- CASECORE_TEST_SQLITE_PARAMS=synchronous=normal -- -R '\.sqlite$'
run jobs-batch-1 "CASECORE_TEST_JOB_BATCH=1" -- CASECORE_TEST_JOB_BATCH=1 -- -R "$jobs_tests"
run jobs-batch-100 "CASECORE_TEST_JOB_BATCH=100" -- CASECORE_TEST_JOB_BATCH=100 -- -R "$jobs_tests"
run jobs-lease-300ms "CASECORE_TEST_LEASE_MS=300" -- CASECORE_TEST_LEASE_MS=300 -- -R "$jobs_tests"
if ((long == 1)); then
  run jobs-batch-7 "CASECORE_TEST_JOB_BATCH=7" -- CASECORE_TEST_JOB_BATCH=7 -- -R "$jobs_tests"
  run jobs-lease-150ms "CASECORE_TEST_LEASE_MS=150" -- CASECORE_TEST_LEASE_MS=150 -- -R "$jobs_tests"
  run property-x10 "CASECORE_TEST_LONG=1: 100,000 cases per property" -- CASECORE_TEST_LONG=1 -- -L property
fi

echo
echo "Configuration matrix (preset $preset${repeat:+, each variant repeated until-fail:3}):"
printf '%-20s %-52s %6s %-7s %6s\n' variant settings tests result time
for r in "${rows[@]}"; do echo "$r"; done
echo "test-matrix: done after $((SECONDS - start)) s"
exit "$failed"
