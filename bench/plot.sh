#!/usr/bin/env bash
# Plot throughput against concurrency from the tables of bench/run_all.sh (a documentation artifact,
# not part of the build or the tests; needs gnuplot, e.g. Debian's gnuplot-nox).
#
# Usage: bench/plot.sh RESULTS_DIR OUT.png
# One panel per backend (sqlite, postgres); per benchmark row name in PLOT_ROWS (a |-separated list
# of exact names; default below) casecore as a solid line and the raw SQL as a dashed line of the
# same colour, callers 1/8/32 on the x axis, ops/s on a log y axis.
set -euo pipefail
[[ $# -eq 2 ]] || { sed -n '4p' "$0" | sed 's/^# //' >&2; exit 2; }
dir=$1
out=$2
rows=${PLOT_ROWS:-"modify vs raw UPDATE WHERE version|counter next in caller's tx|register_staged new|claim 100 + complete (jobs/s)|enqueue bulk 100 (jobs/s)"}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
IFS='|' read -r -a names <<<"$rows"
cat "$dir"/bench_*.md | awk -F'|' -v rows="$rows" -v tmp="$tmp" '
    BEGIN { n = split(rows, want, "|"); for (i = 1; i <= n; i++) idx[want[i]] = i }
    NF >= 7 {
        name = $2; gsub(/^ +| +$/, "", name); sub(/ \[queue ran dry\]$/, "", name)
        be = $3; gsub(/ /, "", be); c = $4 + 0; lib = $5 + 0; raw = $6 + 0
        if (!(name in idx) || c == 0 || (be != "sqlite" && be != "postgres")) next
        print c, lib, raw >> (tmp "/" be "_" idx[name] ".dat")
    }'
plots() { # plots BACKEND
    local be=$1 i sep="" s=""
    for ((i = 1; i <= ${#names[@]}; i++)); do
        local f=$tmp/${be}_$i.dat
        [[ -s $f ]] || continue
        local t=${names[$((i - 1))]//\'/\'\'}
        s+="$sep'$f' using 1:2 with linespoints lw 2 lc $i pt 7 title '$t', '$f' using 1:3 with linespoints lw 1 dt 2 lc $i pt 6 notitle"
        sep=", "
    done
    echo "$s"
}
gnuplot <<EOF
set terminal pngcairo size 1400,600 font ",10" noenhanced
set output '$out'
set multiplot layout 1,2 title "casecore (solid) vs raw SQL (dashed): throughput against concurrency"
set logscale y
set xlabel "concurrent callers"
set ylabel "operations per second"
set xtics (1, 8, 32)
set xrange [0:34]
set grid
set key bottom right font ",8"
set title "SQLite (file, WAL)"
plot $(plots sqlite)
set title "PostgreSQL 15"
plot $(plots postgres)
unset multiplot
EOF
echo "plot.sh: wrote $out" >&2
