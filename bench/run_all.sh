#!/usr/bin/env bash
# Run every benchmark program against one PostgreSQL server (and SQLite), one output file each.
#
# Usage: BENCH_MS=2000 bench/run_all.sh PG_URL OUT_DIR
# Writes OUT_DIR/bench_<name>.md (the markdown tables the programs print). Build first:
#   cmake --build build --target bench_core bench_counter bench_repository bench_files bench_jobs bench_kit bench_leases
set -euo pipefail
[[ $# -eq 2 ]] || { sed -n '4p' "$0" | sed 's/^# //' >&2; exit 2; }
here=$(cd -- "$(dirname -- "$0")" && pwd)
bin=${BENCH_BIN_DIR:-$here/../build/bench}
mkdir -p "$2"
for b in bench_core bench_counter bench_repository bench_files bench_jobs bench_kit bench_leases; do
    echo "run_all: $b" >&2
    BENCH_PG_URL=$1 "$bin/$b" >"$2/$b.md" 2>"$2/$b.err" || echo "run_all: $b exited $?" >&2
done
