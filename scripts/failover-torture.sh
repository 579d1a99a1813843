#!/usr/bin/env bash
# The torture harness across a failover: a throwaway primary with a synchronous streaming standby,
# casecore-torture running through a two-host URL, the primary killed (pg_ctl -m immediate) and the
# standby promoted mid-run; then every invariant is checked on the new primary.
# Usage: scripts/failover-torture.sh [SECONDS] [PROCESSES] [THREADS] [KILL_EVERY]   (default 20 3 3 5)
# Needs a built default preset (build/default/tools/casecore-torture). Prints the torture report.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20} processes=${2:-3} threads=${3:-3} kill_every=${4:-5}
torture=build/default/tools/casecore-torture
[[ -x $torture ]] || { echo "failover-torture: build first (cmake --build --preset default)" >&2; exit 2; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/casecore-failover-XXXXXX")
chmod 0755 "$dir" # the clusters run as the postgres user
trap 'scripts/pg-cluster.sh stop "$dir/primary" >/dev/null 2>&1 || true; scripts/pg-cluster.sh stop "$dir/standby" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
primary=$(scripts/pg-cluster.sh start "$dir/primary" 2>/dev/null)
standby=$(scripts/pg-cluster.sh standby "$dir/primary" "$dir/standby" 2>/dev/null)
hp() { echo "$1" | sed -E 's|postgresql://[^@]*@([^/]*)/.*|\1|'; }
url="postgresql://postgres@$(hp "$primary"),$(hp "$standby")/casecore_test?reconnect_budget_ms=30000"
echo "failover-torture: primary $(hp "$primary"), synchronous standby $(hp "$standby"), $seconds s" >&2
failover="scripts/pg-cluster.sh kill '$dir/primary' && sleep 0.3 && scripts/pg-cluster.sh promote '$dir/standby'"
"$torture" --db "$url" -p "$processes" -t "$threads" -s "$seconds" --kill-rate "$kill_every" \
    --pg-restart-cmd "$failover" --restart-at 0.5 "${@:5}"
