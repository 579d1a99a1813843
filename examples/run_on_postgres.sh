#!/bin/sh
# Runs an example program on the PostgreSQL server named by CASECORE_TEST_PG_URL, in a private schema
# (--fresh). Usage: run_on_postgres.sh <example-binary> [options...]
# A missing CASECORE_TEST_PG_URL is a failure, not a skip: a green PostgreSQL entry must mean it ran.
if [ -z "${CASECORE_TEST_PG_URL:-}" ]; then
  echo "run_on_postgres.sh: CASECORE_TEST_PG_URL is not set; cannot run $1 on PostgreSQL" >&2
  exit 1
fi
binary=$1
shift
exec "$binary" --db "$CASECORE_TEST_PG_URL" --fresh "$@"
