#!/usr/bin/env bash
# A throwaway PgBouncer (Debian's pgbouncer 1.18) in front of a throwaway PostgreSQL, for tests.
#
# Usage:
#   scripts/pgbouncer.sh start DIR PG_PORT [MODE] [SERVER_CONNS]   # print the pooler's URL
#   scripts/pgbouncer.sh stop  DIR
#
# MODE is transaction (default) or session; SERVER_CONNS (default 4) is the number of server
# connections per database/user pair — fewer than the test's client threads, so clients really
# share server connections. Listens on 127.0.0.1 on a free port; every database is forwarded to
# 127.0.0.1:PG_PORT as user postgres (auth_type = any: a test rig, not a deployment).
# The URL printed names the database casecore_test. Layout of DIR: pgbouncer.ini, pid, log, port.
set -euo pipefail

BIN=${PGBOUNCER_BIN:-/usr/sbin/pgbouncer}
die() {
    echo "pgbouncer: $*" >&2
    exit 1
}

free_port() {
    local port i
    for ((i = 0; i < 200; i++)); do
        port=$((40001 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    die "no free port"
}

cmd_start() {
    local dir=$1 pg_port=$2 mode=${3:-transaction} conns=${4:-4}
    [[ -x $BIN ]] || die "$BIN not found (install pgbouncer, see scripts/install-deps.sh)"
    [[ $mode == transaction || $mode == session ]] || die "mode must be transaction or session"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)
    local run_as=()
    if [[ $(id -u) -eq 0 ]]; then
        # pgbouncer refuses to run as root.
        local user=postgres
        getent passwd "$user" >/dev/null || user=nobody
        chown "$user" "$dir"
        run_as=(runuser -u "$user" --)
    fi
    local port attempt
    for ((attempt = 1; attempt <= 10; attempt++)); do
        port=$(free_port)
        cat >"$dir/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=$pg_port user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = any
pool_mode = $mode
default_pool_size = $conns
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 1000
max_db_connections = $conns
server_reset_query = DISCARD ALL
server_reset_query_always = 0
ignore_startup_parameters = extra_float_digits
logfile = $dir/log
pidfile = $dir/pid
admin_users = postgres
EOF
        chmod 0644 "$dir/pgbouncer.ini"
        [[ ${#run_as[@]} -gt 0 ]] && chown "${run_as[2]}" "$dir/pgbouncer.ini"
        rm -f "$dir/pid"
        if "${run_as[@]}" "$BIN" -d -q "$dir/pgbouncer.ini" 2>>"$dir/start.err"; then
            local i
            for ((i = 0; i < 50; i++)); do
                if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                    echo "$port" >"$dir/port"
                    echo "postgresql://postgres@127.0.0.1:$port/casecore_test"
                    return 0
                fi
                sleep 0.1
            done
        fi
        echo "pgbouncer: port $port did not come up (attempt $attempt)" >&2
        cmd_stop "$dir" || true
    done
    tail -n 20 "$dir/log" "$dir/start.err" >&2 2>/dev/null || true
    die "could not start pgbouncer"
}

cmd_stop() {
    local dir=$1
    [[ -s $dir/pid ]] || return 0
    local pid
    pid=$(<"$dir/pid")
    kill -INT "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$dir/pid"
}

case ${1:-} in
start) (($# >= 3)) || die "usage: pgbouncer.sh start DIR PG_PORT [MODE] [SERVER_CONNS]"; cmd_start "$2" "$3" "${4:-transaction}" "${5:-4}" ;;
stop) (($# == 2)) || die "usage: pgbouncer.sh stop DIR"; cmd_stop "$2" ;;
*) die "usage: pgbouncer.sh start|stop DIR ..." ;;
esac
