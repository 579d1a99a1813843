#!/usr/bin/env bash
# The torture harness across hosts that share nothing but PostgreSQL: N network namespaces joined by
# veth pairs (scripts/netns.sh), a throwaway PostgreSQL listening on each host's gateway address,
# worker processes spread over the hosts (each in its own working folder, file content in PostgreSQL
# chunk rows), with SIGKILLs and injected faults; every invariant checked from the database.
# Usage: scripts/hosts-torture.sh [SECONDS] [HOSTS] [PROCESSES] [THREADS] [KILL_EVERY] [extra torture args]
#        (default 20 2 4 3 5). Needs root (network namespaces); exits 77 without.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20} hosts=${2:-2} processes=${3:-4} threads=${4:-3} kill_every=${5:-5}
torture=${CASECORE_TORTURE:-build/default/tools/casecore-torture} # the ctest entry passes its own build
[[ -x $torture ]] || { echo "hosts-torture: build first (cmake --build --preset default)" >&2; exit 2; }
name=t$(($$ % 100000))
net=$((100 + $$ % 150))
dir=$(mktemp -d "${TMPDIR:-/tmp}/casecore-hosts-XXXXXX")
chmod 0755 "$dir" # the cluster runs as the postgres user
cleanup() {
    scripts/pg-cluster.sh stop "$dir/pg" >/dev/null 2>&1 || true
    scripts/netns.sh down "$name" "$hosts" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT
rc=0
scripts/netns.sh up "$name" "$hosts" "$net" >"$dir/hosts" || rc=$?
if ((rc == 77)); then
    echo "hosts-torture: skipped: this machine does not allow network namespaces (needs root)" >&2
    exit 77
fi
((rc == 0)) || exit "$rc"
listen=127.0.0.1
host_args=()
while read -r ns address; do
    listen+=",$address"
    host_args+=(--host "$ns=$address")
done <"$dir/hosts"
url=$(CASECORE_PG_LISTEN=$listen scripts/pg-cluster.sh start "$dir/pg" 2>/dev/null)
echo "hosts-torture: $hosts hosts (${host_args[*]}), PostgreSQL $url, $seconds s" >&2
"$torture" --db "$url" -p "$processes" -t "$threads" -s "$seconds" --kill-rate "$kill_every" "${host_args[@]}" "${@:6}"
