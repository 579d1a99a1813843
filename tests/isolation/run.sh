#!/usr/bin/env bash
# Deterministic interleavings of casecore's SQL on PostgreSQL, with PostgreSQL's own isolationtester.
#
# Usage: tests/isolation/run.sh [--cli PATH] [--keep] [PG_URL] [SPEC...]
#   PG_URL   server to use (default: $CASECORE_TEST_PG_URL); needs the right to CREATE DATABASE
#   SPEC     spec names (e.g. counter_gapless) to run; default: every tests/isolation/specs/*.spec
#   --cli    the `casecore` command line (build target casecore_cli) that installs the schema;
#            default: $CASECORE_CLI, else build/default/tools/casecore
#   --keep   keep the scratch database and the output folder (for post-mortems)
#
# What it does: creates a scratch database next to the one in PG_URL, installs casecore's schema
# in it with `casecore migrate` (exactly what a deployment runs), and runs each spec with
# pg_isolation_regress --use-existing. A spec is a set of sessions whose steps run the library's own
# statements (copied verbatim, the source function named in a comment) in an explicit order
# ("permutation"); isolationtester notices when a step blocks on a lock and moves on to the next
# session, so "A reads, B commits, A writes" happens exactly so, every run. Each spec's output is
# compared with tests/isolation/expected/<spec>.out; a mismatch prints the diff and fails.
# Exit status: 0 all specs match, 1 a spec differs, 2 usage / setup problem (never a silent skip).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
iso_dir=${PG_ISOLATION_DIR:-/usr/lib/postgresql/15/lib/pgxs/src/test/isolation}
pg_bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
cli=${CASECORE_CLI:-$root/build/default/tools/casecore}
keep=0
url=${CASECORE_TEST_PG_URL:-}
specs=()

die() { echo "isolation: $*" >&2; exit 2; }

while (($#)); do
  case $1 in
    --cli) cli=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    postgres://* | postgresql://*) url=$1; shift ;;
    -*) die "unknown option $1" ;;
    *) specs+=("${1%.spec}"); shift ;;
  esac
done

[[ -n $url ]] || die "no PostgreSQL URL: pass one or set CASECORE_TEST_PG_URL (scripts/pg-cluster.sh start DIR)"
[[ -x $iso_dir/pg_isolation_regress && -x $iso_dir/isolationtester ]] ||
  die "isolationtester not found in $iso_dir (Debian: postgresql-client-15; or set PG_ISOLATION_DIR)"
[[ -x $cli ]] || die "casecore command line not found at $cli (build target casecore_cli, or pass --cli)"
[[ -x $pg_bin/psql ]] || die "psql not found in $pg_bin (set PG_BIN)"

# postgresql://[user[:password]@]host[:port][/db][?params] -> the parts libpq's environment takes.
re='^postgres(ql)?://(([^:@/]*)(:([^@/]*))?@)?([^:/?]*)(:([0-9]+))?(/([^?]*))?(\?.*)?$'
[[ $url =~ $re ]] || die "cannot parse PostgreSQL URL (expected postgresql://user[:pw]@host[:port]/db)"
pg_user=${BASH_REMATCH[3]:-${USER:-postgres}}
pg_password=${BASH_REMATCH[5]:-}
pg_host=${BASH_REMATCH[6]:-127.0.0.1}
pg_port=${BASH_REMATCH[8]:-5432}
pg_db=${BASH_REMATCH[10]:-postgres}
unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGSERVICE PGOPTIONS
export PGHOST=$pg_host PGPORT=$pg_port PGUSER=$pg_user
[[ -n $pg_password ]] && export PGPASSWORD=$pg_password

if ((${#specs[@]} == 0)); then
  for f in "$here"/specs/*.spec; do
    [[ -e $f ]] && specs+=("$(basename "$f" .spec)")
  done
fi
((${#specs[@]} > 0)) || die "no specs in $here/specs"
for s in "${specs[@]}"; do
  [[ -f $here/specs/$s.spec ]] || die "no spec $here/specs/$s.spec"
  [[ -f $here/expected/$s.out ]] || die "no expected output $here/expected/$s.out (run once with --keep and review results/$s.out)"
done

# Drift check: a spec must run the statements the library runs. Every "PREPARE name AS <sql>;" that
# follows a "-- sql-from: src/FILE" comment must appear verbatim in FILE's string literals (adjacent
# literals joined); a statement wrapped as "WITH lib AS (<sql>) SELECT ... FROM lib" is checked
# without the wrapper. When the library's SQL changes, the spec fails here until it is re-synced.
literals() { sed 's:^[[:space:]]*//.*$::' "$1" | grep -o '"\([^"\\]\|\\.\)*"' | sed 's/^"//; s/"$//' | tr -d '\n'; }
drift=0
for s in "${specs[@]}"; do
  src=""
  while IFS= read -r line; do
    if [[ $line =~ --\ sql-from:\ ([^ ]+) ]]; then
      src=${BASH_REMATCH[1]}
      [[ -f $root/$src ]] || { echo "isolation: $s.spec names $src, which does not exist" >&2; drift=1; }
      continue
    fi
    [[ $line =~ ^[[:space:]]*PREPARE\ ([A-Za-z_0-9]+)\ AS\ (.*)\;[[:space:]]*$ ]] || continue
    name=${BASH_REMATCH[1]} stmt=${BASH_REMATCH[2]}
    if [[ -z $src ]]; then
      echo "isolation: note: $s.spec statement $name has no '-- sql-from:' line, not checked against the library" >&2
      continue
    fi
    if [[ $stmt == "WITH lib AS ("* ]]; then
      stmt=${stmt#WITH lib AS (}
      stmt=${stmt%) SELECT *}
    fi
    if [[ -f $root/$src && $(literals "$root/$src") != *"$stmt"* ]]; then
      echo "isolation: $s.spec statement '$name' is no longer in $src: the library's SQL changed;" \
        "copy the new statement into the spec and review its expected output" >&2
      drift=1
    fi
    src=""
  done <"$here/specs/$s.spec"
done
((drift == 0)) || exit 1

scratch=casecore_iso_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
out=$(mktemp -d "${TMPDIR:-/tmp}/casecore-isolation-XXXXXX")
psql_admin() { "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -d "$pg_db" "$@" </dev/null; }
cleanup() {
  if ((keep)); then
    echo "isolation: kept database $scratch and $out" >&2
  else
    psql_admin -c "DROP DATABASE IF EXISTS $scratch WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$out"
  fi
}
trap cleanup EXIT

psql_admin -c "CREATE DATABASE $scratch" >/dev/null || die "cannot create database $scratch on $pg_host:$pg_port"
scratch_url="postgresql://$pg_user${pg_password:+:$pg_password}@$pg_host:$pg_port/$scratch"
if ! "$cli" --db "$scratch_url" migrate >"$out/migrate.log" 2>&1; then
  cat "$out/migrate.log" >&2
  die "casecore migrate failed on $scratch"
fi

# --use-existing: run in our scratch database, never create or drop anything else.
status=0
"$iso_dir/pg_isolation_regress" --use-existing --dbname="$scratch" --host="$pg_host" --port="$pg_port" \
  --user="$pg_user" --bindir="$pg_bin" --inputdir="$here" --outputdir="$out" "${specs[@]}" >"$out/summary.log" 2>&1 ||
  status=$?
cat "$out/summary.log"
if ((status != 0)); then
  if [[ -s $out/regression.diffs ]]; then
    echo "isolation: output differs from tests/isolation/expected (- expected, + actual):"
    cat "$out/regression.diffs"
  fi
  echo "isolation: FAILED (rerun with --keep to keep the actual outputs in results/)" >&2
  exit 1
fi
echo "isolation: ${#specs[@]} spec(s) passed: ${specs[*]}"
