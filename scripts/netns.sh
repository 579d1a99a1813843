#!/usr/bin/env bash
# Throwaway "hosts" for tests: network namespaces joined to this machine by veth pairs.
#
# Usage:
#   scripts/netns.sh up   NAME N [NET]  # create hosts NAME-h1..NAME-hN; print "NAME-hK 10.NET.K.1" per host
#   scripts/netns.sh down NAME N        # delete them (and their veth pairs)
#
# Host K lives in namespace NAME-hK with address 10.NET.K.2/24 on its end of a veth pair (NET: 2..254,
# default 231; runs at the same time need different NETs); this machine's end has 10.NET.K.1/24.
# A server listening on 10.NET.K.1 (e.g. PostgreSQL started with
# CASECORE_PG_LISTEN, see pg-cluster.sh) is what host K reaches: the hosts share nothing else — no
# loopback, no Unix sockets. Needs CAP_NET_ADMIN and CAP_SYS_ADMIN (root); exits 77 without them.
# NAME: 1..6 letters/digits (interface names are limited to 15 bytes). N: 1..9.
set -euo pipefail
die() {
    echo "netns: $*" >&2
    exit "${2:-1}"
}
(($# == 3 || $# == 4)) || die "usage: netns.sh up|down NAME N [NET]"
cmd=$1 name=$2 n=$3 net=${4:-231}
[[ $net =~ ^[0-9]+$ ]] && ((net >= 2 && net <= 254)) || die "NET must be 2..254"
[[ $name =~ ^[a-z0-9]{1,6}$ ]] || die "NAME must be 1..6 lowercase letters or digits"
[[ $n =~ ^[1-9]$ ]] || die "N must be 1..9"
command -v ip >/dev/null || die "ip (iproute2) is not installed" 77

up() {
    if ! ip netns add "$name-probe" 2>/dev/null; then
        die "cannot create network namespaces here (needs root / CAP_SYS_ADMIN)" 77
    fi
    ip netns del "$name-probe"
    local k
    for ((k = 1; k <= n; k++)); do
        local ns=$name-h$k outer=${name}o$k inner=${name}i$k
        ip netns add "$ns"
        ip link add "$outer" type veth peer name "$inner"
        ip link set "$inner" netns "$ns"
        ip addr add "10.$net.$k.1/24" dev "$outer"
        ip link set "$outer" up
        ip -n "$ns" addr add "10.$net.$k.2/24" dev "$inner"
        ip -n "$ns" link set "$inner" up
        ip -n "$ns" link set lo up
        echo "$ns 10.$net.$k.1"
    done
}

down() {
    local k
    for ((k = 1; k <= n; k++)); do
        ip link del "${name}o$k" 2>/dev/null || true
        ip netns del "$name-h$k" 2>/dev/null || true
    done
}

case $cmd in
up) up ;;
down) down ;;
*) die "usage: netns.sh up|down NAME N [NET]" ;;
esac
