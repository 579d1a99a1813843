#!/usr/bin/env bash
# Build casecore's libFuzzer targets with clang under ASan + UBSan in build/fuzz and run each one.
#
# Usage:
#   scripts/fuzz.sh [SECONDS] [TARGET...]   # default 30 s per target, every target (CI short run)
#   scripts/fuzz.sh --long [TARGET...]      # 3600 s per target (CASECORE_FUZZ_LONG_SECONDS overrides)
#
# Targets: url trigger validators text format_number (fuzz/fuzz_<target>.cpp). Each run starts from
# the committed seeds (fuzz/corpus/<target>) plus the regression inputs (fuzz/regressions/<target>)
# and keeps what it learns in build/fuzz/corpus/<target> (not committed). A crash, leak or sanitizer
# report stops with a non-zero exit and leaves the input in build/fuzz/artifacts/<target>/: copy it
# to fuzz/regressions/<target>/ so the ctest entry fuzz_replay.<target> replays it on every build.
# The last lines printed are one summary row per target: executions, corpus size, seconds.
#
# The short run (CI) is reproducible: libFuzzer starts from seed 1 (CASECORE_FUZZ_SEED overrides;
# 0 means a random seed), so on a clean clone it tries the same inputs in the same order and a
# slower machine tries a prefix of them: CI fails on a regression, not on the luck of the draw.
# Finding new inputs is the long run's job (--long, random seed); what it finds is kept as a
# regression input and then replayed everywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=30
seed=${CASECORE_FUZZ_SEED:-1}
if [ "${1:-}" = "--long" ]; then
  seconds=${CASECORE_FUZZ_LONG_SECONDS:-3600}
  seed=${CASECORE_FUZZ_SEED:-0}
  shift
elif [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  seconds=$1
  shift
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(url trigger validators text format_number)

cxx=${CASECORE_FUZZ_CXX:-}
if [ -z "$cxx" ]; then
  for c in clang++ clang++-16 clang++-15 clang++-14; do
    if command -v "$c" >/dev/null 2>&1; then cxx=$c; break; fi
  done
fi
[ -n "$cxx" ] || { echo "fuzz: clang++ not found (Debian: apt-get install clang libfuzzer-14-dev)" >&2; exit 2; }

flags="-fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"
cmake -S . -B build/fuzz -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCASECORE_BUILD_FUZZERS=ON -DCASECORE_BUILD_TESTS=OFF -DCASECORE_BUILD_EXAMPLES=OFF \
  -DCASECORE_BUILD_BENCH=OFF -DCASECORE_BUILD_TOOLS=OFF -DCASECORE_INSTALL=OFF -DCASECORE_WITH_POSTGRES=OFF >/dev/null
build_targets=()
for t in "${targets[@]}"; do build_targets+=(--target "casecore_fuzz_$t"); done
cmake --build build/fuzz -j "${CASECORE_FUZZ_JOBS:-2}" "${build_targets[@]}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
summary=()
status=0
for t in "${targets[@]}"; do
  corpus=build/fuzz/corpus/$t
  artifacts=build/fuzz/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  log=build/fuzz/$t.log
  echo "fuzz: $t for ${seconds}s (seed $seed)"
  start=$(date +%s)
  set +e
  build/fuzz/fuzz/casecore_fuzz_"$t" "$corpus" "fuzz/corpus/$t" "fuzz/regressions/$t" \
    -max_total_time="$seconds" -seed="$seed" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" >"$log" 2>&1
  rc=$?
  set -e
  elapsed=$(( $(date +%s) - start ))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  files=$(find "$corpus" -type f | wc -l)
  if [ $rc -ne 0 ]; then
    status=1
    echo "fuzz: $t FAILED (exit $rc); see $log; inputs in $artifacts:" >&2
    ls "$artifacts" >&2 || true
    grep -E 'ERROR|runtime error|invariant broken' "$log" | head -5 >&2 || true
  fi
  summary+=("$(printf '%-14s %12s execs  %6s corpus files  %5ss  %s' "$t" "${execs:-?}" "$files" "$elapsed" "$([ $rc -eq 0 ] && echo ok || echo FAILED)")")
done
echo "fuzz summary (target, executions, corpus size, time):"
printf '  %s\n' "${summary[@]}"
exit $status
