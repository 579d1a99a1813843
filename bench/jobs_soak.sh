#!/usr/bin/env bash
# Long runs of the job queue (issue 17): drain 10^6 jobs on an empty table and next to 10^6 jobs
# scheduled an hour ahead, on PostgreSQL and on SQLite, then the idle cost of a worker; writes every
# figure to OUT_DIR and plots jobs/s and the oldest transaction per 10 % slice.
#
# Usage: bench/jobs_soak.sh PG_ADMIN_URL OUT_DIR [JOBS] [PLOT.png]     (JOBS default 1000000)
#
# PG_ADMIN_URL: a server where the bench may CREATE / DROP databases (use fsync on for figures:
# CASECORE_PG_DURABLE=1 scripts/pg-cluster.sh start DIR). BENCH_JOBS: the bench_jobs binary
# (default build/default/bench/bench_jobs). The plot needs gnuplot (Debian: gnuplot-nox).
# PLOT_ONLY=1: skip the runs, summarise and plot what OUT_DIR already holds.
set -euo pipefail
[[ $# -ge 2 && $# -le 4 ]] || { sed -n '6p' "$0" | sed 's/^# //' >&2; exit 2; }
url=$1
out=$2
jobs=${3:-1000000}
png=${4:-}
here=$(cd -- "$(dirname -- "$0")" && pwd)
bin=${BENCH_JOBS:-$here/../build/default/bench/bench_jobs}
[[ -x $bin ]] || { echo "jobs_soak: $bin not built (cmake --build build/default --target bench_jobs)" >&2; exit 2; }
mkdir -p "$out"
csv=$out/slices.csv
run() { # run NAME ARGS...
    local name=$1
    shift
    echo "== $name" >&2
    "$bin" "$@" | tee "$out/$name.txt"
}
if [[ -z ${PLOT_ONLY:-} ]]; then
: >"$csv"
run postgres_empty soak "$url" --jobs "$jobs" --csv "$csv" --label empty
run postgres_future soak "$url" --jobs "$jobs" --future "$jobs" --csv "$csv" --label future
run sqlite_empty soak sqlite --jobs "$jobs" --csv "$csv" --label empty
run sqlite_future soak sqlite --jobs "$jobs" --future "$jobs" --csv "$csv" --label future
run postgres_idle idle "$url" --future "$jobs" --seconds 30
run postgres_idle_poll10 idle "$url" --future "$jobs" --seconds 30 --poll 10
fi

field() { sed -n "s/.*[[:space:]]$2=\([0-9.]*\).*/\1/p" "$out/$1.txt" | tail -1; }
{
    for be in postgres sqlite; do
        e=$(field ${be}_empty avg_per_s)
        f=$(field ${be}_future avg_per_s)
        awk -v be="$be" -v e="$e" -v f="$f" -v l="$(field ${be}_empty last_over_first)" -v lf="$(field ${be}_future last_over_first)" \
            'BEGIN { printf "%s: empty %.0f jobs/s (last/first slice %.2f), next to future jobs %.0f jobs/s (last/first %.2f), future/empty %.2f\n", be, e, l, f, lf, (e > 0 ? f / e : 0) }'
    done
} | tee "$out/summary.txt"

[[ -n $png ]] || exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for be in postgres sqlite; do
    for label in empty future; do
        awk -F, -v be="$be" -v l="$label" '$1 == be && $2 == l { print $3 * 10, $4, $5 }' "$csv" >"$tmp/${be}_$label.dat"
    done
done
gnuplot <<EOF
set terminal pngcairo size 1400,600 font ",10" noenhanced
set output '$png'
set multiplot layout 1,2 title "casecore jobs: draining $jobs no-op jobs, 16 threads, batch 100 (fsync on)"
set xlabel "jobs drained (%)"
set grid
set key bottom right
set xrange [0:105]
set title "throughput per 10 % slice"
set ylabel "jobs per second"
set yrange [0:*]
plot '$tmp/postgres_empty.dat' using 1:2 with linespoints lw 2 pt 7 lc 1 title 'PostgreSQL, empty table', \
     '$tmp/postgres_future.dat' using 1:2 with linespoints lw 2 pt 6 dt 2 lc 1 title 'PostgreSQL, + 10^6 future jobs', \
     '$tmp/sqlite_empty.dat' using 1:2 with linespoints lw 2 pt 7 lc 2 title 'SQLite, empty table', \
     '$tmp/sqlite_future.dat' using 1:2 with linespoints lw 2 pt 6 dt 2 lc 2 title 'SQLite, + 10^6 future jobs'
set title "oldest casecore transaction in the slice"
set ylabel "milliseconds"
plot '$tmp/postgres_empty.dat' using 1:3 with linespoints lw 2 pt 7 lc 1 title 'PostgreSQL (pg_stat_activity), empty', \
     '$tmp/postgres_future.dat' using 1:3 with linespoints lw 2 pt 6 dt 2 lc 1 title 'PostgreSQL, + future jobs', \
     '$tmp/sqlite_empty.dat' using 1:3 with linespoints lw 2 pt 7 lc 2 title 'SQLite (longest transaction), empty', \
     '$tmp/sqlite_future.dat' using 1:3 with linespoints lw 2 pt 6 dt 2 lc 2 title 'SQLite, + future jobs'
unset multiplot
EOF
echo "jobs_soak: wrote $png" >&2
