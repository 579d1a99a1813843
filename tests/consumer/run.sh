#!/usr/bin/env bash
# Downstream builds of casecore, the ways a user consumes it (ctest label "consumer", docs/packaging.md):
#   run.sh installed BUILD_DIR     find_package against `cmake --install BUILD_DIR`: with a PostgreSQL
#                                  build, COMPONENTS sqlite postgres, and sqlite alone with pkg-config
#                                  (so libpqxx) unavailable; without PostgreSQL, COMPONENTS sqlite with
#                                  libpqxx unavailable, nothing installed naming it, and COMPONENTS
#                                  postgres refused with the reason
#   run.sh pkgconfig BUILD_DIR     a compiler command line from `pkg-config --cflags --libs casecore`
#   run.sh subdirectory SOURCE_DIR add_subdirectory: the parent's build type stays, no casecore tests
#   run.sh deb SOURCE_DIR DEB_DIR  a shared build in DEB_DIR (kept for reuse), cpack, `apt-get install
#                                  ./casecore_*.deb` into the system, consumers via find_package and
#                                  pkg-config against /usr, then the package is removed again. Needs
#                                  root and no casecore installed already; else skipped (exit 77).
# Each prints "consumer: 42 (...)" lines; any failure exits non-zero.
set -euo pipefail
mode=$1 arg=$2
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/casecore-consumer-XXXXXX")
cleanup=("rm -rf '$work'")
trap 'for c in "${cleanup[@]}"; do eval "$c" || true; done' EXIT
fail() { echo "consumer ($mode): FAILED: $*" >&2; exit 1; }
jobs=$(nproc)

# configure+build the project in tests/consumer/project; $1 = build dir, rest = cmake arguments
build_project() {
  local dir=$1; shift
  cmake -S "$here/project" -B "$dir" "$@" >"$dir.log" 2>&1 || { cat "$dir.log" >&2; fail "configure $*"; }
  cmake --build "$dir" -j "$jobs" >>"$dir.log" 2>&1 || { cat "$dir.log" >&2; fail "build $*"; }
}
# pkg-config that knows every module of this system but libpqxx
nopqxx=$work/pkgconfig-without-libpqxx
mkdir -p "$nopqxx"
for d in $(pkg-config --variable pc_path pkg-config | tr : ' '); do
  for pc in "$d"/*.pc; do [ -e "$pc" ] && [ "$(basename "$pc")" != libpqxx.pc ] && ln -sf "$pc" "$nopqxx/"; done
done
sqlite_only_consumer() { # $1 = build dir; libpqxx unavailable, and the configure never looked for it
  PKG_CONFIG_LIBDIR=$nopqxx build_project "$1" -DCMAKE_PREFIX_PATH="$work/prefix" -DCASECORE_COMPONENTS=sqlite
  if grep -n PQXX "$1/CMakeCache.txt"; then fail "find_package(casecore COMPONENTS sqlite) looked for libpqxx"; fi
  if ldd "$1/consumer" | grep pqxx; then fail "the SQLite-only consumer links libpqxx"; fi
  "$1/consumer"
}
no_header_leaks() { # public headers name no dependency that only casecore's sources use
  if grep -rEn '#include <(pqxx|SQLiteCpp|sqlite3\.h|boost/|gsl/|openssl/|date/)' "$1"; then fail "an installed header includes a private dependency"; fi
}
pkgconfig_build() { # $1 = directory holding casecore.pc (empty: the system's)
  local flags
  flags=$(PKG_CONFIG_PATH=${1:-} pkg-config --cflags --libs casecore) || fail "pkg-config casecore"
  # a shared casecore outside the loader's path: find it at run time from where pkg-config says it is
  [ -z "${1:-}" ] || flags+=" -Wl,-rpath,$(PKG_CONFIG_PATH=$1 pkg-config --variable=libdir casecore)"
  echo "consumer: pkg-config casecore = $flags"
  # shellcheck disable=SC2086
  c++ -std=c++20 "$here/project/main.cpp" -o "$work/pc-consumer" $flags || fail "compile with pkg-config flags"
  "$work/pc-consumer"
}

case $mode in
installed)
  cmake --install "$arg" --prefix "$work/prefix" >/dev/null
  no_header_leaks "$work/prefix/include"
  if grep -q '^CASECORE_WITH_POSTGRES:BOOL=ON' "$arg/CMakeCache.txt"; then
    build_project "$work/both" -DCMAKE_PREFIX_PATH="$work/prefix" "-DCASECORE_COMPONENTS=sqlite;postgres"
    "$work/both/consumer" | tee "$work/both.out"
    grep -q 'postgres linked' "$work/both.out" || fail "COMPONENTS sqlite postgres did not link the PostgreSQL adapter"
    # The sqlite component of a full install must not look for libpqxx.
    sqlite_only_consumer "$work/sqlite"
  else
    # (casecoreConfig.cmake mentions libpqxx only in the postgres branch it refuses, tested below)
    if grep -EnI 'pqxx|PQXX' "$work"/prefix/lib*/cmake/casecore/casecore-*.cmake "$(find "$work/prefix" -name casecore.pc)"; then
      fail "a PostgreSQL-less install names libpqxx"
    fi
    [ ! -e "$work/prefix/include/casecore/postgres" ] || fail "a PostgreSQL-less install has the PostgreSQL headers"
    sqlite_only_consumer "$work/sqlite"
    # Asking for what is not there fails at configure time and says why.
    if cmake -S "$here/project" -B "$work/pg" -DCMAKE_PREFIX_PATH="$work/prefix" -DCASECORE_COMPONENTS=postgres >"$work/pg.log" 2>&1; then
      fail "COMPONENTS postgres was accepted by a build without PostgreSQL"
    fi
    reason=$(tr -s ' \n' ' ' <"$work/pg.log" | grep -o 'component postgres: [^;]*' | head -1)
    [[ $reason == *"built without PostgreSQL"* ]] || { cat "$work/pg.log" >&2; fail "COMPONENTS postgres refused without the reason"; }
    echo "consumer: COMPONENTS postgres refused: $reason"
  fi
  ;;
pkgconfig)
  cmake --install "$arg" --prefix "$work/prefix" >/dev/null
  pc=$(find "$work/prefix" -name casecore.pc | head -1)
  [ -n "$pc" ] || fail "no casecore.pc installed"
  pkgconfig_build "$(dirname "$pc")"
  ;;
subdirectory)
  # Only the consumer's target: casecore's libraries, nothing else; the parent sets no build type.
  cmake -S "$here/project" -B "$work/sub" -DCASECORE_SOURCE_DIR="$arg" >"$work/sub.log" 2>&1 || { cat "$work/sub.log" >&2; fail configure; }
  grep -q "consumer: CMAKE_BUILD_TYPE after add_subdirectory: ''" "$work/sub.log" || { cat "$work/sub.log" >&2; fail "casecore set the parent's build type"; }
  cmake --build "$work/sub" -j "$jobs" --target consumer >>"$work/sub.log" 2>&1 || { cat "$work/sub.log" >&2; fail build; }
  "$work/sub/consumer"
  ;;
deb)
  debdir=$3
  if [ "$(id -u)" != 0 ]; then echo "consumer.deb: SKIPPED: installing the .deb into the system needs root"; exit 77; fi
  exec 9>/tmp/casecore-consumer-deb.lock # one system-wide install at a time (parallel CI runs)
  flock 9
  if dpkg-query -W -f='${Status}' casecore 2>/dev/null | grep -q 'installed' || [ -e /usr/include/casecore ]; then
    echo "consumer.deb: SKIPPED: casecore is already installed on this system (not replacing it)"; exit 77
  fi
  # A shared, library-only build; kept in DEB_DIR so that a rerun rebuilds only what changed.
  buildtype=-DCMAKE_BUILD_TYPE=Release # a fresh directory; a reused one keeps its own
  [ ! -f "$debdir/CMakeCache.txt" ] || buildtype=
  cmake -S "$arg" -B "$debdir" -DBUILD_SHARED_LIBS=ON -DCMAKE_INSTALL_PREFIX=/usr $buildtype \
    -DCASECORE_BUILD_TESTS=OFF -DCASECORE_BUILD_EXAMPLES=OFF -DCASECORE_BUILD_BENCH=OFF -DCASECORE_BUILD_TOOLS=OFF \
    -DCASECORE_INSTALL=ON >"$work/deb.log" 2>&1 || { cat "$work/deb.log" >&2; fail "configure the shared build"; }
  cmake --build "$debdir" -j "$jobs" >>"$work/deb.log" 2>&1 || { cat "$work/deb.log" >&2; fail "build the shared libraries"; }
  # Hidden visibility: the shared libraries export casecore's API, never the SQLiteCpp they link.
  for lib in "$debdir"/libcasecore*.so; do
    if nm -DC --defined-only "$lib" | grep ' SQLite::'; then fail "$(basename "$lib") re-exports SQLiteCpp symbols"; fi
    echo "consumer: $(basename "$lib"): $(nm -D --defined-only "$lib" | wc -l) exported symbols, SONAME $(objdump -p "$lib" | awk '/SONAME/ {print $2}')"
  done
  rm -f "$debdir"/casecore_*.deb
  (cd "$debdir" && cpack >>"$work/deb.log" 2>&1) || { cat "$work/deb.log" >&2; fail cpack; }
  version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$debdir/CMakeCache.txt")
  deb=$debdir/casecore_${version}_$(dpkg --print-architecture).deb
  [ -f "$deb" ] || { ls "$debdir" >&2; fail "cpack made no $(basename "$deb")"; }
  echo "consumer: $(basename "$deb"): Depends: $(dpkg-deb -f "$deb" Depends)"
  cleanup+=("dpkg --purge casecore >/dev/null 2>&1; [ ! -e /usr/include/casecore ] || echo 'consumer.deb: WARNING: /usr/include/casecore left behind' >&2")
  DEBIAN_FRONTEND=noninteractive apt-get install -y "$deb" >"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; fail "apt-get install ./$(basename "$deb")"; }
  dpkg -L casecore | grep -E 'libcasecore\.so\.|casecoreConfig\.cmake|casecore\.pc|casecore/casecore\.hpp' | sed 's/^/consumer: installed /'
  no_header_leaks /usr/include/casecore
  build_project "$work/deb-find" "-DCASECORE_COMPONENTS=sqlite;postgres"
  "$work/deb-find/consumer"
  pkgconfig_build ""
  ;;
*)
  fail "unknown mode $mode"
  ;;
esac
