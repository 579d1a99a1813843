#!/usr/bin/env bash
# Install the Debian 12 packages needed to build and test casecore.
#
# Usage: scripts/install-deps.sh
#
# Only packages that are not already installed are passed to apt-get, so the
# script is fast (no apt-get update) when everything is present.  Runs apt-get
# directly as root, or through sudo otherwise.  Prints a single summary line on
# stdout; apt-get output is shown on stderr only if the installation fails.
set -euo pipefail

PACKAGES=(
    build-essential
    cmake
    pkg-config
    ccache            # rebuilds of unchanged files stay cheap across presets and clones
    git
    libsqlitecpp-dev
    libsqlite3-dev
    sqlite3
    libpqxx-dev
    libpq-dev
    libboost-thread-dev
    libmsgsl-dev
    doctest-dev
    libcli11-dev
    libssl-dev
    libhowardhinnant-date-dev # cron time zones (date/tz.h, libdate-tz; uses the OS tzdata)
    postgresql-15
    postgresql-client-15
    pgbouncer         # the suite runs through PgBouncer 1.18 in transaction and session mode
    iproute2          # test hosts in network namespaces (scripts/netns.sh)
    faketime          # skewed clocks per process (lease and trigger tests)
    clang-14          # libFuzzer targets (scripts/fuzz.sh)
    libfuzzer-14-dev
    strace            # "one getrandom per token" check
    librapidcheck-dev # property tests (tests/property)
    libfiu-dev        # injected I/O faults (tests/fiu)
    fiu-utils
    gcovr             # scripts/coverage.sh
    doxygen           # the API reference (cmake --build build/default --target docs)
    libcpp-httplib-dev # `casecore serve` (HTTP server of the dashboard and /metrics)
    chromium          # serve_browser_test drives headless Chromium (tests/browser/)
    nodejs            # ... through puppeteer-core (npm ci from tests/browser/package-lock.json)
    libspdlog-dev     # examples/spdlog_sink: the logging hook's spdlog adapter
)

die() {
    echo "install-deps: $*" >&2
    exit 1
}

is_installed() {
    local status
    status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)
    [[ $status == "install ok installed" ]]
}

command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found (this script targets Debian 12)"

missing=()
for pkg in "${PACKAGES[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
    echo "install-deps: nothing missing (all ${#PACKAGES[@]} packages already installed)"
    exit 0
fi

# Run as root directly, otherwise through sudo.
as_root=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "not root and sudo is not available; cannot install: ${missing[*]}"
    if [[ -t 0 ]]; then
        as_root=(sudo)
    else
        as_root=(sudo -n) # no TTY (CI): fail instead of waiting for a password
    fi
fi

log=$(mktemp "${TMPDIR:-/tmp}/install-deps.XXXXXX.log")
trap 'rm -f "$log"' EXIT

apt_get() {
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -q -o Dpkg::Use-Pty=0 "$@" </dev/null >>"$log" 2>&1
}

if ! apt_get update || ! apt_get install -y --no-install-recommends "${missing[@]}"; then
    cat "$log" >&2
    die "apt-get failed while installing: ${missing[*]}"
fi

still_missing=()
for pkg in "${missing[@]}"; do
    is_installed "$pkg" || still_missing+=("$pkg")
done
if ((${#still_missing[@]} > 0)); then
    cat "$log" >&2
    die "packages still not installed after apt-get: ${still_missing[*]}"
fi

echo "install-deps: installed ${#missing[@]} package(s): ${missing[*]}"
