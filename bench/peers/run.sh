#!/usr/bin/env bash
# Run the pg-boss and graphile-worker peer benchmarks against a PostgreSQL server, so that
# casecore's job-queue benchmark can be compared with them on the same server in the same run.
#
# Usage: bench/peers/run.sh PG_URL [JOBS] [CONC]        (defaults: JOBS=20000, CONC=16)
#
#   PG_URL  postgresql://postgres@127.0.0.1:PORT/DB. Only the port (and a password, if any) is
#           passed on: the peers' common.js hard-codes host 127.0.0.1 and user "postgres", so the
#           URL must name that host (or localhost) and that user. DB is used to create and drop
#           one fresh database per peer (casecore_peer_<peer>_<pid>); the user must be allowed to.
#
# Environment:
#   CASECORE_PEERS_DIR      source folder (package.json, package-lock.json, *.js). Default:
#                           <repo>/../shared/baselines/peers, else /work/shared/baselines/peers.
#   CASECORE_PEERS_CACHE    working copy + node_modules. Default:
#                           ${XDG_CACHE_HOME:-$HOME/.cache}/casecore-peers.
#   CASECORE_PEERS_ONLY     "pg-boss", "graphile-worker" or both (default: both, in that order).
#   CASECORE_PEERS_KEEP_DB  1 = keep the per-peer databases afterwards (default: drop them).
#   CASECORE_PEERS_TIMEOUT  seconds per peer before it is killed (default 1500).
#   PGBOSS_B1_WINDOW_S      pg-boss batchSize=1 measuring window, seconds (default 20; read by
#                           pgboss_bench.js itself).
#
# Output (stdout): every `RESULT {json}` line of the peers, unchanged, then one summary line per
# peer:
#   peer pg-boss processed_per_s=… enqueue_per_s=… send_per_s=… batch1_processed_per_s=… complete=…
#   peer graphile-worker processed_per_s=… enqueue_per_s=… add_job_per_s=… processed_after_single_per_s=… complete=…
# processed_per_s / enqueue_per_s are the drain after a bulk enqueue and the bulk (chunks of 1000)
# enqueue rate; see docs/peers.md for what each figure measures. Progress goes to stderr.
#
# Requires node >= 20 and npm (pg-boss 10 declares engines.node ">=20"). Exit status: 0 ok,
# 1 a benchmark failed or did not drain all jobs, 2 usage, 3 node/npm missing or too old.
set -euo pipefail

log() { echo "peers: $*" >&2; }
die() {
    log "$*"
    exit 1
}
usage() {
    sed -n '5,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[[ $# -ge 1 && $# -le 3 ]] || usage
[[ $1 == -h || $1 == --help ]] && usage
url=$1
jobs=${2:-20000}
conc=${3:-16}
[[ $jobs =~ ^[1-9][0-9]*$ ]] || { log "JOBS must be a positive integer, got '$jobs'"; usage; }
[[ $conc =~ ^[1-9][0-9]*$ ]] || { log "CONC must be a positive integer, got '$conc'"; usage; }

# --- node / npm ----------------------------------------------------------------------------------
need_node() {
    printf 'peers: %s\n' >&2 \
        'node >= 20 and npm are required (pg-boss 10 declares engines.node ">=20").' \
        "Debian 12's own packages (\`apt-get install nodejs npm\`) give node 18 and npm 9, which is" \
        'too old for pg-boss 10. Install node 20 instead, e.g. from NodeSource' \
        '(https://github.com/nodesource/distributions: its nodejs 20.x .deb includes npm), or an' \
        'official tarball from https://nodejs.org/dist/ on PATH. On distributions whose packaged' \
        'node is >= 20, `apt-get install nodejs npm` is enough. See docs/peers.md.'
    exit 3
}
command -v node >/dev/null 2>&1 || { log "node not found on PATH"; need_node; }
command -v npm >/dev/null 2>&1 || { log "npm not found on PATH"; need_node; }
node_version=$(node --version)
node_major=${node_version#v}
node_major=${node_major%%.*}
[[ $node_major =~ ^[0-9]+$ && $node_major -ge 20 ]] || { log "node $node_version is too old"; need_node; }
command -v psql >/dev/null 2>&1 || die "psql not found on PATH (needed to create the peer databases)"

# --- PG_URL ----------------------------------------------------------------------------------------
# postgres[ql]://[user[:password]@]host[:port][/db][?params]
re='^postgres(ql)?://(([^:@/]*)(:([^@/]*))?@)?([^:/?]*)(:([0-9]+))?(/([^?]*))?(\?.*)?$'
[[ $url =~ $re ]] || die "cannot parse PG_URL '$url' (expected postgresql://postgres@127.0.0.1:PORT/DB)"
url_user=${BASH_REMATCH[3]}
url_pass=${BASH_REMATCH[5]}
url_host=${BASH_REMATCH[6]}
url_port=${BASH_REMATCH[8]:-5432}
case $url_host in
127.0.0.1 | localhost) ;;
*) die "PG_URL host is '$url_host', but the peers' common.js always connects to 127.0.0.1" ;;
esac
[[ -z $url_user || $url_user == postgres ]] ||
    die "PG_URL user is '$url_user', but the peers' common.js always connects as 'postgres'"
# node-postgres falls back to $PGPASSWORD when the connection string has no password.
if [[ -n $url_pass ]]; then export PGPASSWORD=$url_pass; fi
# Keep the caller's libpq environment from redirecting psql (the URL says where to go).
unset PGHOST PGHOSTADDR PGDATABASE PGUSER PGSERVICE PGOPTIONS
psql_admin() { PGOPTIONS="-c client_min_messages=warning" psql "$url" -X -q -v ON_ERROR_STOP=1 "$@"; }
psql_admin -Atc 'select 1' >/dev/null || die "cannot connect to $url"
server_info=$(psql_admin -Atc "select current_setting('server_version') || ' fsync=' || current_setting('fsync') || ' synchronous_commit=' || current_setting('synchronous_commit')")

# --- source and cache ----------------------------------------------------------------------------
script_dir=$(cd "$(dirname "$0")" && pwd)
if [[ -n ${CASECORE_PEERS_DIR:-} ]]; then
    src=$CASECORE_PEERS_DIR
else
    src=
    if top=$(git -C "$script_dir" rev-parse --show-toplevel 2>/dev/null) && [[ -d $top/../shared/baselines/peers ]]; then
        src=$top/../shared/baselines/peers
    fi
    [[ -n $src ]] || src=/work/shared/baselines/peers
fi
for f in package.json package-lock.json common.js pgboss_bench.js graphile_bench.js; do
    [[ -f $src/$f ]] || die "$src/$f not found (set CASECORE_PEERS_DIR to the peers folder)"
done
src=$(cd "$src" && pwd)
cache=${CASECORE_PEERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/casecore-peers}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
# Top-level regular files only (never a node_modules from the source); the source may be
# read-only, so install them 0644 rather than cp them (which would keep r--r--r--).
for f in "$src"/*; do
    [[ -f $f ]] && install -m 0644 "$f" "$cache/"
done

# npm ci only when node_modules is missing or the lock file (or node's major version) changed.
stamp_file=$cache/node_modules/.casecore-peers-stamp
stamp="$(sha256sum "$cache/package-lock.json" | cut -d' ' -f1) node$node_major"
if [[ ! -d $cache/node_modules || ! -f $stamp_file || $(cat "$stamp_file") != "$stamp" ]]; then
    log "npm ci in $cache (node $node_version, npm $(npm --version 2>/dev/null))"
    (cd "$cache" && npm ci --no-audit --no-fund --loglevel=error >&2) ||
        die "npm ci failed in $cache (is the npm registry reachable? npm config get registry)"
    echo "$stamp" >"$stamp_file"
else
    log "using cached node_modules in $cache"
fi
pgboss_version=$(cd "$cache" && node -p "require('pg-boss/package.json').version")
graphile_version=$(cd "$cache" && node -p "require('graphile-worker/package.json').version")

# --- run -----------------------------------------------------------------------------------------
peers=${CASECORE_PEERS_ONLY:-pg-boss graphile-worker}
timeout_s=${CASECORE_PEERS_TIMEOUT:-1500}
created_dbs=()
cleanup() {
    if [[ ${CASECORE_PEERS_KEEP_DB:-0} != 1 ]]; then
        for db in "${created_dbs[@]}"; do
            psql_admin -c "drop database if exists \"$db\" with (force)" >/dev/null 2>&1 || true
        done
    fi
}
trap cleanup EXIT

# summarize PEER: read RESULT lines on stdin, print the summary line; exit 1 if incomplete.
summarize() {
    node -e '
const peer = process.argv[1];
const recs = require("fs").readFileSync(0, "utf8").split("\n")
  .filter((l) => l.startsWith("RESULT ")).map((l) => JSON.parse(l.slice(7)));
const find = (re) => recs.find((r) => re.test(r.phase));
const rate = (r) => (r ? r.jobs_per_s : "NA");
let f;
if (peer === "pg-boss") {
  const drain = find(/batchSize=100 .*drain/);
  f = { processed_per_s: rate(drain), enqueue_per_s: rate(find(/^enqueue insert\(\)/)),
        send_per_s: rate(find(/^enqueue send\(\)/)), batch1_processed_per_s: rate(find(/batchSize=1 /)),
        complete: drain ? drain.complete : false };
} else {
  const d1 = find(/^process run\(\).*\(drain\)$/), d2 = find(/after bulk enqueue/);
  f = { processed_per_s: rate(d2), enqueue_per_s: rate(find(/^enqueue addJobs\(\)/)),
        add_job_per_s: rate(find(/^enqueue addJob\(\)/)), processed_after_single_per_s: rate(d1),
        complete: !!(d1 && d1.complete && d2 && d2.complete) };
}
console.log(["peer", peer, ...Object.entries(f).map(([k, v]) => `${k}=${v}`)].join(" "));
process.exit(f.complete ? 0 : 1);
' "$1"
}

log "server $url_host:$url_port ($server_info); jobs=$jobs conc=$conc; pg-boss $pgboss_version, graphile-worker $graphile_version"
status=0
summaries=()
for peer in $peers; do
    case $peer in
    pg-boss) js=pgboss_bench.js tag=pgboss ;;
    graphile-worker) js=graphile_bench.js tag=graphile ;;
    *) die "unknown peer '$peer' in CASECORE_PEERS_ONLY (pg-boss, graphile-worker)" ;;
    esac
    db=casecore_peer_${tag}_$$
    psql_admin -c "drop database if exists \"$db\" with (force)" >/dev/null
    psql_admin -c "create database \"$db\"" >/dev/null
    created_dbs+=("$db")
    log "$peer: database $db, running $js"
    out=$cache/last_${tag}.out
    t0=$(date +%s.%N)
    rc=0
    (cd "$cache" && PEER_DB=$db PGPORT=$url_port PEER_JOBS=$jobs PEER_CONC=$conc \
        timeout --kill-after=10 "$timeout_s" node "$js") >"$out" || rc=$?
    t1=$(date +%s.%N)
    grep '^RESULT ' "$out" || true
    grep -v '^RESULT ' "$out" >&2 || true
    log "$peer: exit $rc after $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')s"
    if [[ $rc -ne 0 ]]; then
        [[ $rc -eq 124 ]] && log "$peer: killed after ${timeout_s}s (CASECORE_PEERS_TIMEOUT)"
        status=1
    fi
    if s=$(grep '^RESULT ' "$out" | summarize "$peer"); then :; else
        log "$peer: not all jobs were processed (complete=false) or results are missing"
        status=1
    fi
    summaries+=("$s")
done
printf '%s\n' "${summaries[@]}"
exit $status
