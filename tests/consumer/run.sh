#!/usr/bin/env bash
# Build and run the consumer: run.sh installed BUILD_DIR | run.sh subdirectory SOURCE_DIR
set -euo pipefail
mode=$1 arg=$2
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/casecore-consumer-XXXXXX")
trap 'rm -rf "$work"' EXIT
if [ "$mode" = installed ]; then
  cmake --install "$arg" --prefix "$work/prefix" >/dev/null
  cmake -S "$here/project" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
else
  cmake -S "$here/project" -B "$work/build" -DCASECORE_SOURCE_DIR="$arg" >/dev/null
fi
cmake --build "$work/build" -j "$(nproc)" >/dev/null
"$work/build/consumer"
