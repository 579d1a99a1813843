#!/usr/bin/env bash
# Plot throughput against concurrency from the tables of bench/run_all.sh (a documentation artifact,
# not part of the build or the tests; needs gnuplot, e.g. Debian's gnuplot-nox).
#
# Usage: bench/plot.sh RESULTS_DIR OUT.png
#        bench/plot.sh --from-doc docs/PERFORMANCE.md OUT.png   (the fsync-off tables of the page)
# One panel per backend (sqlite, postgres); per benchmark row name in PLOT_ROWS (a |-separated list
# of exact names; default below) casecore as a solid line and the raw SQL as a dashed line of the
# same colour (colour-blind safe Okabe-Ito palette), callers 1/8/32 on a log x axis, ops/s on a log
# y axis; the key says which line style is which. PLOT_SERVER is the server line of the caption
# (default: the settings scripts/pg-cluster.sh writes without CASECORE_PG_DURABLE).
set -euo pipefail
[[ $# -eq 2 || ($# -eq 3 && $1 == --from-doc) ]] || { sed -n '4,5p' "$0" | sed 's/^# *//' >&2; exit 2; }
dir=$1
out=$2
server=${PLOT_SERVER:-"PostgreSQL 15 (scripts/pg-cluster.sh): fsync = off, full_page_writes = off, shared_buffers = 256MB, max_connections = 300\\nSQLite 3.40: a database file in WAL mode. Client and server on the same 2 cores, shared with other builds"}
rows=${PLOT_ROWS:-"modify vs raw UPDATE WHERE version|counter next in caller's tx|register_staged new|claim 100 + complete (jobs/s)|enqueue bulk 100 (jobs/s)"}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
IFS='|' read -r -a names <<<"$rows"
tables() { # the benchmark tables: RESULTS_DIR/bench_*.md, or the fsync-off section of the doc page
    if [[ $dir == --from-doc ]]; then
        awk '/^## Tables .*fsync off/ { on = 1; next } /^## / { on = 0 } on' "$out_doc"
    else
        cat "$dir"/bench_*.md
    fi
}
if [[ $dir == --from-doc ]]; then out_doc=$2; out=${3:?"usage: bench/plot.sh --from-doc PAGE.md OUT.png"}; fi
tables | awk -F'|' -v rows="$rows" -v tmp="$tmp" '
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
        s+="$sep'$f' using 1:2 with linespoints ls $i lw 2.5 dt 1 pt 7 title '$t', '$f' using 1:3 with linespoints ls $i lw 1.5 dt 2 pt 6 notitle"
        sep=", "
    done
    # two key entries for the line styles themselves
    echo "$s, 1/0 with lines lw 2.5 dt 1 lc rgb 'black' title 'solid = casecore', 1/0 with lines lw 1.5 dt 2 lc rgb 'black' title 'dashed = raw SQL (same statements)'"
}
gnuplot <<EOF
set terminal pngcairo size 1400,680 font ",10" noenhanced
set output '$out'
# Okabe-Ito: distinguishable with the common colour-vision deficiencies and in greyscale by marker.
set style line 1 lc rgb '#0072B2'
set style line 2 lc rgb '#D55E00'
set style line 3 lc rgb '#009E73'
set style line 4 lc rgb '#CC79A7'
set style line 5 lc rgb '#E69F00'
set style line 6 lc rgb '#56B4E9'
set style line 7 lc rgb '#000000'
set multiplot layout 1,2 title "casecore (solid) vs raw SQL (dashed): throughput against concurrent callers\n$server" font ",11"
set logscale x 2
set logscale y
set xlabel "concurrent callers (log scale)"
set ylabel "operations per second (log scale)"
set xtics (1, 8, 32)
set xrange [0.8:40]
set grid
set key bottom right font ",8" box opaque
set title "SQLite (file, WAL)"
plot $(plots sqlite)
set title "PostgreSQL 15"
plot $(plots postgres)
unset multiplot
EOF
echo "plot.sh: wrote $out" >&2
