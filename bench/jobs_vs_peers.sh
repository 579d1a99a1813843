#!/usr/bin/env bash
# casecore's worker next to pg-boss and graphile-worker on the same PostgreSQL server, in one run.
#
# Usage: bench/jobs_vs_peers.sh PG_URL [JOBS] [CONC] [BATCH]    (defaults 20000, 16, 100)
#
# 1. `bench_jobs drain PG_URL JOBS CONC BATCH`: a fresh database, JOBS no-op jobs enqueued in chunks
#    of 1000, drained by a casecore worker with CONC threads (fencing on, heartbeats every 100 ms).
# 2. `bench/peers/run.sh PG_URL JOBS CONC` right after (pg-boss, then graphile-worker, each in its
#    own fresh database; see docs/peers.md — node >= 20 needed).
# 3. Prints the figures and the ratios casecore / peer (processed/s, bulk enqueue/s).
#
# BENCH_JOBS: the bench_jobs binary (default build/bench/bench_jobs; build it with
# `cmake --build build --target bench_jobs`).
set -euo pipefail
[[ $# -ge 1 && $# -le 4 ]] || { sed -n '4p' "$0" | sed 's/^# //' >&2; exit 2; }
url=$1
jobs=${2:-20000}
conc=${3:-16}
batch=${4:-100}
here=$(cd -- "$(dirname -- "$0")" && pwd)
bin=${BENCH_JOBS:-$here/../build/bench/bench_jobs}
[[ -x $bin ]] || { echo "jobs_vs_peers: $bin not built (cmake --build build --target bench_jobs)" >&2; exit 2; }

ours=$("$bin" drain "$url" "$jobs" "$conc" "$batch")
echo "$ours"
peers=$("$here/peers/run.sh" "$url" "$jobs" "$conc" | grep '^peer ')
echo "$peers"

field() { # field LINE NAME
    sed -n "s/.*[[:space:]]$2=\([0-9.]*\).*/\1/p" <<<"$1"
}
c_proc=$(field "$ours" processed_per_s)
c_enq=$(field "$ours" enqueue_per_s)
echo
echo "| peer | casecore processed/s | peer processed/s | ratio | casecore bulk enqueue/s | peer bulk enqueue/s | ratio |"
echo "|---|---:|---:|---:|---:|---:|---:|"
while read -r line; do
    name=$(awk '{print $2}' <<<"$line")
    p_proc=$(field "$line" processed_per_s)
    p_enq=$(field "$line" enqueue_per_s)
    awk -v n="$name" -v cp="$c_proc" -v pp="$p_proc" -v ce="$c_enq" -v pe="$p_enq" \
        'BEGIN { printf "| %s | %.0f | %.0f | %.2fx | %.0f | %.0f | %.2fx |\n", n, cp, pp, (pp > 0 ? cp / pp : 0), ce, pe, (pe > 0 ? ce / pe : 0) }'
done <<<"$peers"
