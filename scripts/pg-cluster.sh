#!/usr/bin/env bash
# Throwaway PostgreSQL 15 clusters for casecore tests.
#
# Usage:
#   scripts/pg-cluster.sh start   DIR   # create+start a cluster in DIR/data, print its URL
#   scripts/pg-cluster.sh stop    DIR   # pg_ctl stop -m immediate (no-op if not running)
#   scripts/pg-cluster.sh restart DIR   # pg_ctl restart -m fast on the same port, wait until ready
#   scripts/pg-cluster.sh url     DIR   # print the URL (cat DIR/url)
#   scripts/pg-cluster.sh standby PRIMARY_DIR DIR  # a streaming standby of PRIMARY_DIR in DIR, made
#                                         # synchronous (synchronous_commit = on); print its URL
#   scripts/pg-cluster.sh promote DIR   # promote a standby to primary, wait until it takes writes
#   scripts/pg-cluster.sh kill    DIR   # stop at once (immediate mode), as a crash would
#
# Example:
#   d=$(mktemp -d); url=$(scripts/pg-cluster.sh start "$d"); psql "$url" -c 'select 1'
#   scripts/pg-cluster.sh stop "$d"; rm -rf "$d"
#
# Layout of DIR: data/ (PGDATA), log (server log), url, port, user, plus the
# Unix socket (.s.PGSQL.PORT).  The server listens on 127.0.0.1 only, on a
# random free port in 20000-40000, with trust auth and superuser "postgres";
# the database "casecore_test" is created.  Only the URL goes to stdout.
#
# As root, the server runs as the "postgres" system user (or "casecore-pg",
# created on demand, if "postgres" does not exist) because initdb refuses to
# run as root; DIR is chowned to that user and made 0755.  Otherwise it runs as
# the calling user.  PG_BIN overrides /usr/lib/postgresql/15/bin.
# CASECORE_PG_DURABLE=1 at the first start writes fsync = on and full_page_writes = on instead of
# off (for benchmarks that should pay for durable commits; tests do not need it).
# CASECORE_PG_LISTEN="127.0.0.1,10.231.1.1" at the first start listens on those addresses too and
# trusts clients on their networks (test hosts in network namespaces, scripts/netns.sh).
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
DB_NAME=casecore_test
PORT_MIN=20000
PORT_MAX=40000
READY_TIMEOUT=30
FALLBACK_USER=casecore-pg

# Do not let the caller's libpq environment redirect our client commands.
unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGPASSWORD PGSERVICE PGOPTIONS PGDATA

log() { echo "pg-cluster: $*" >&2; }
die() {
    log "$*"
    exit 1
}

usage() {
    cat >&2 <<'EOF'
usage: pg-cluster.sh start DIR     create and start a throwaway PostgreSQL 15 cluster, print its URL
       pg-cluster.sh stop DIR      stop it (immediate mode); no-op if not running
       pg-cluster.sh restart DIR   restart it (fast mode) on the same port and wait until ready
       pg-cluster.sh url DIR       print its URL
       pg-cluster.sh standby PRIMARY_DIR DIR   a synchronous streaming standby, print its URL
       pg-cluster.sh promote DIR   promote a standby
       pg-cluster.sh kill DIR      stop at once (immediate), as a crash would
EOF
    exit 2
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# --- state -------------------------------------------------------------------

DIR=
DATA=
PG_USER=

# set_dir DIR [create]: absolute, symlink-free path of DIR.
set_dir() {
    local d=$1
    if [[ ${2:-} == create ]]; then
        mkdir -p -- "$d"
    fi
    [[ -d $d ]] || die "directory does not exist: $d"
    DIR=$(cd -- "$d" && pwd -P)
    DATA=$DIR/data
}

# User that owns/runs an existing cluster.
existing_user() {
    if ! is_root; then
        id -un
    elif [[ -s $DIR/user ]]; then
        cat -- "$DIR/user"
    else
        stat -c %U -- "$DATA"
    fi
}

# User to run a new cluster as (creating casecore-pg if needed).
new_user() {
    if ! is_root; then
        id -un
    elif getent passwd postgres >/dev/null; then
        echo postgres
    else
        if ! getent passwd "$FALLBACK_USER" >/dev/null; then
            log "creating system user $FALLBACK_USER"
            useradd --system --user-group --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin "$FALLBACK_USER" >&2 ||
                getent passwd "$FALLBACK_USER" >/dev/null || # lost a race with a parallel start
                die "could not create user $FALLBACK_USER"
        fi
        echo "$FALLBACK_USER"
    fi
}

# run_pg CMD...: run CMD as the cluster user, with DIR as working directory
# (the caller's cwd may not be accessible to that user).  stdin is /dev/null.
run_pg() {
    if ! is_root || [[ $PG_USER == root ]]; then
        (cd -- "$DIR" && "$@") </dev/null
    elif command -v runuser >/dev/null 2>&1; then
        (cd -- "$DIR" && runuser -u "$PG_USER" -- "$@") </dev/null
    else
        (cd -- "$DIR" && su -s /bin/bash -c "$(printf '%q ' "$@")" "$PG_USER") </dev/null
    fi
}

is_running() {
    run_pg "$PG_BIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1
}

# --- helpers -----------------------------------------------------------------

port_in_use() {
    local port=$1
    if command -v ss >/dev/null 2>&1 && [[ -n $(ss -Hltn "sport = :$port" 2>/dev/null) ]]; then
        return 0
    fi
    # A successful connect means something is listening.
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

pick_port() {
    local port i
    for ((i = 0; i < 200; i++)); do
        port=$((PORT_MIN + RANDOM % (PORT_MAX - PORT_MIN + 1)))
        if ! port_in_use "$port"; then
            echo "$port"
            return 0
        fi
    done
    die "could not find a free TCP port in $PORT_MIN-$PORT_MAX"
}

# Quote a value for postgresql.conf.
conf_quote() {
    local s=${1//\\/\\\\}
    s=${s//\'/\'\'}
    printf "'%s'" "$s"
}

write_conf() {
    local port=$1 conf=$DATA/casecore.conf durable=off note="NOT durable" listen=${CASECORE_PG_LISTEN:-127.0.0.1}
    if [[ ${CASECORE_PG_DURABLE:-0} == 1 ]]; then
        durable=on
        note="durable (CASECORE_PG_DURABLE=1)"
    fi
    cat >"$conf" <<EOF
# Written by scripts/pg-cluster.sh -- throwaway test cluster, $note.
port = $port
listen_addresses = '$listen'
unix_socket_directories = $(conf_quote "$DIR")
fsync = $durable
full_page_writes = $durable
max_connections = 300
shared_buffers = 256MB
EOF
    if is_root; then chown "$PG_USER": "$conf"; fi
    chmod 0600 "$conf"
}

wait_ready() {
    local port=$1 deadline=$((SECONDS + READY_TIMEOUT))
    until "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres </dev/null; do
        if ((SECONDS >= deadline)); then
            log "server on port $port not ready after ${READY_TIMEOUT}s; last lines of $DIR/log:"
            tail -n 30 -- "$DIR/log" >&2 2>/dev/null || true
            return 1
        fi
        sleep 0.2
    done
}

psql_admin() {
    local port=$1
    shift
    "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@" </dev/null
}

log_size() { stat -c %s -- "$DIR/log" 2>/dev/null || echo 0; }

# pg_ctl start; returns 0 on success, 10 if the port was taken, 1 otherwise.
start_server() {
    local before
    before=$(log_size)
    if run_pg "$PG_BIN/pg_ctl" start -D "$DATA" -l "$DIR/log" -w -t "$READY_TIMEOUT" -s >&2; then
        return 0
    fi
    if tail -c +"$((before + 1))" -- "$DIR/log" 2>/dev/null | grep -qiE 'could not (bind|create listen)|address already in use'; then
        return 10
    fi
    log "pg_ctl start failed; last lines of $DIR/log:"
    tail -n 30 -- "$DIR/log" >&2 2>/dev/null || true
    return 1
}

# --- subcommands -------------------------------------------------------------

cmd_start() {
    set_dir "$1" create
    [[ -x $PG_BIN/initdb ]] || die "$PG_BIN/initdb not found (install postgresql-15, see scripts/install-deps.sh)"

    # Socket path must fit in sun_path (107 bytes): DIR/.s.PGSQL.NNNNN.lock
    if ((${#DIR} + 21 > 107)); then
        die "directory path too long for a Unix socket: $DIR"
    fi

    local port rc attempt
    if [[ -f $DATA/PG_VERSION ]]; then
        # Existing cluster: reuse it (and its port).
        PG_USER=$(existing_user)
        [[ -s $DIR/port ]] || die "$DATA exists but $DIR/port is missing; remove $DIR and retry"
        port=$(<"$DIR/port")
        if ! is_running; then
            log "starting existing cluster in $DATA on port $port"
            start_server || die "could not start existing cluster in $DATA"
        fi
    else
        PG_USER=$(new_user)
        if is_root; then
            chown -R "$PG_USER": "$DIR"
        fi
        chmod 0755 "$DIR"
        run_pg test -w "$DIR" -a -x "$DIR" ||
            die "user $PG_USER cannot access $DIR (are all parent directories traversable?)"

        log "initdb in $DATA (as $PG_USER)"
        if ! run_pg "$PG_BIN/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --locale=C \
            --no-sync --no-instructions >"$DIR/initdb.log" 2>&1; then
            cat -- "$DIR/initdb.log" >&2
            die "initdb failed"
        fi
        echo "include 'casecore.conf'" >>"$DATA/postgresql.conf"
        if [[ -n ${CASECORE_PG_LISTEN:-} ]]; then
            # Clients on the listed addresses' networks (test hosts in network namespaces) may connect.
            echo "host all all samenet trust" >>"$DATA/pg_hba.conf"
        fi
        echo "$PG_USER" >"$DIR/user"

        # Retry with another port if we lost a race for it.
        for ((attempt = 1; ; attempt++)); do
            port=$(pick_port)
            write_conf "$port"
            rc=0
            start_server || rc=$?
            ((rc == 0)) && break
            if ((rc == 10 && attempt < 10)); then
                log "port $port already in use, retrying with another one"
                continue
            fi
            die "could not start PostgreSQL in $DATA"
        done
        echo "$port" >"$DIR/port"
    fi

    wait_ready "$port" || die "server did not become ready"

    if [[ -z $(psql_admin "$port" -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'") ]]; then
        psql_admin "$port" -c "CREATE DATABASE $DB_NAME" >&2 || die "could not create database $DB_NAME"
    fi

    local url="postgresql://postgres@127.0.0.1:$port/$DB_NAME"
    echo "$url" >"$DIR/url"
    log "cluster running in $DATA (port $port, log $DIR/log)"
    echo "$url"
}

cmd_stop() {
    if [[ ! -d $1 ]]; then
        log "no such directory: $1 (nothing to stop)"
        return 0
    fi
    set_dir "$1"
    if [[ ! -f $DATA/PG_VERSION ]]; then
        log "no cluster in $DIR (nothing to stop)"
        return 0
    fi
    PG_USER=$(existing_user)
    if ! is_running; then
        log "cluster in $DATA is not running"
        return 0
    fi
    if ! run_pg "$PG_BIN/pg_ctl" stop -D "$DATA" -m immediate -w -t "$READY_TIMEOUT" -s >&2; then
        is_running && die "could not stop cluster in $DATA"
    fi
    log "stopped cluster in $DATA"
}

cmd_restart() {
    set_dir "$1"
    [[ -f $DATA/PG_VERSION ]] || die "no cluster in $DIR (run: pg-cluster.sh start $DIR)"
    [[ -s $DIR/port ]] || die "$DIR/port is missing"
    PG_USER=$(existing_user)
    local port
    port=$(<"$DIR/port")
    # Port is fixed in data/casecore.conf, so it survives the restart.
    if ! run_pg "$PG_BIN/pg_ctl" restart -D "$DATA" -m fast -l "$DIR/log" -w -t "$READY_TIMEOUT" -s >&2; then
        log "pg_ctl restart failed; last lines of $DIR/log:"
        tail -n 30 -- "$DIR/log" >&2 2>/dev/null || true
        die "could not restart cluster in $DATA"
    fi
    wait_ready "$port" || die "server did not become ready after restart"
    log "restarted cluster in $DATA (port $port)"
}

cmd_standby() {
    local primary_dir
    primary_dir=$(cd -- "$1" && pwd -P)
    [[ -s $primary_dir/port ]] || die "no running primary in $primary_dir"
    local primary_port
    primary_port=$(<"$primary_dir/port")
    set_dir "$2" create
    [[ -f $DATA/PG_VERSION ]] && die "$DATA already holds a cluster"
    PG_USER=$(new_user)
    if is_root; then chown -R "$PG_USER": "$DIR"; fi
    chmod 0755 "$DIR"
    log "base backup of 127.0.0.1:$primary_port into $DATA"
    run_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres -D "$DATA" -X stream -R -c fast \
        >"$DIR/basebackup.log" 2>&1 || { cat "$DIR/basebackup.log" >&2; die "pg_basebackup failed"; }
    echo "$PG_USER" >"$DIR/user"
    # A named walreceiver, so the primary can wait for it (synchronous replication).
    echo "primary_conninfo = 'host=127.0.0.1 port=$primary_port user=postgres application_name=casecore_standby'" \
        >"$DATA/postgresql.auto.conf"
    local port rc attempt
    for ((attempt = 1; ; attempt++)); do
        port=$(pick_port)
        write_conf "$port" # its own port and socket folder
        rc=0
        start_server || rc=$?
        ((rc == 0)) && break
        if ((rc == 10 && attempt < 10)); then continue; fi
        die "could not start the standby in $DATA"
    done
    echo "$port" >"$DIR/port"
    wait_ready "$port" || die "standby did not become ready"
    # Synchronous replication: a COMMIT the primary acknowledges is on the standby too.
    psql_admin "$primary_port" -c "ALTER SYSTEM SET synchronous_standby_names = 'casecore_standby'" >&2
    psql_admin "$primary_port" -c "ALTER SYSTEM SET synchronous_commit = on" >&2
    psql_admin "$primary_port" -c "SELECT pg_reload_conf()" >&2
    local deadline=$((SECONDS + READY_TIMEOUT))
    until [[ $(psql_admin "$primary_port" -c "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'casecore_standby'") == sync ]]; do
        ((SECONDS < deadline)) || die "the standby did not become synchronous"
        sleep 0.2
    done
    local url="postgresql://postgres@127.0.0.1:$port/$DB_NAME"
    echo "$url" >"$DIR/url"
    log "synchronous standby of 127.0.0.1:$primary_port running in $DATA (port $port)"
    echo "$url"
}

cmd_promote() {
    set_dir "$1"
    PG_USER=$(existing_user)
    local port
    port=$(<"$DIR/port")
    run_pg "$PG_BIN/pg_ctl" promote -D "$DATA" -w -t "$READY_TIMEOUT" -s >&2 || die "promote failed"
    local deadline=$((SECONDS + READY_TIMEOUT))
    until [[ $(psql_admin "$port" -c "SELECT pg_is_in_recovery()") == f ]]; do
        ((SECONDS < deadline)) || die "the promoted server is still in recovery"
        sleep 0.05
    done
    # Nobody is left to confirm synchronous commits: the new primary commits on its own.
    psql_admin "$port" -c "ALTER SYSTEM RESET synchronous_standby_names" >&2
    psql_admin "$port" -c "SELECT pg_reload_conf()" >&2
    log "promoted $DATA (port $port)"
}

cmd_url() {
    [[ -s $1/url ]] || die "no URL in $1/url (cluster not started?)"
    cat -- "$1/url"
}

# --- main --------------------------------------------------------------------

(($# >= 2)) || usage
case $1 in
start) cmd_start "$2" ;;
stop | kill) cmd_stop "$2" ;;
standby) (($# == 3)) || usage; cmd_standby "$2" "$3" ;;
promote) cmd_promote "$2" ;;
restart) cmd_restart "$2" ;;
url) cmd_url "$2" ;;
*) usage ;;
esac
