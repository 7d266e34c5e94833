#!/usr/bin/env bash
# The README's test command, and what CI runs: installs what is needed, builds, and runs
# every test — the doctest suite on both engine backends, the whole suite again under
# ASan+UBSan, the concurrency tests under TSan, and each libFuzzer target for a bounded
# time. Ends with one line "N passed, N failed".
#   FUZZ_SECONDS=N  seconds per fuzz target (default 60; 0 skips fuzzing)
# Disk: every test binary links the whole library, so a sanitizer build is large (about
# 8 GiB under ASan+UBSan with full debug info). The sanitizer and fuzz builds therefore keep
# line tables only (-g1: reports still name file and line), and each is cleaned
# (`ninja -t clean`: outputs go, configuration and meson-logs stay; ninja rebuilds them on
# the next run) once its tests have run, so that one sanitizer build is on disk at a time.
set -uo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh || exit 1
fuzz_seconds=${FUZZ_SECONDS:-60}
passed=0
failed=0
failures=()

step() {  # step NAME COMMAND...: runs a step, counts it, keeps going on failure
  local name=$1; shift
  local start=$SECONDS
  echo "=== $name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$name"); fi
  echo "=== $name: $((SECONDS - start)) s"  # where CI's time goes, step by step
}

setup() {  # setup DIR OPTIONS...: configure once, then build; shows the log on failure.
  # With SUITE set, builds only what that suite's tests need (tests/suite_targets.py).
  local dir=$1; shift
  local log targets
  log=$(mktemp)
  if { [ -f "$dir/build.ninja" ] || meson setup "$dir" "$@"; } >"$log" 2>&1 &&
     if [ -n "${SUITE:-}" ]; then
       targets=$(python3 tests/suite_targets.py "$dir" "$SUITE") && ninja -C "$dir" $targets
     else
       ninja -C "$dir"
     fi >>"$log" 2>&1; then
    rm -f "$log"
  else
    tail -n 40 "$log"
    rm -f "$log"
    return 1
  fi
}

shed() {  # shed DIR: deletes DIR's build outputs, keeping its configuration and logs
  ninja -C "$1" -t clean >/dev/null || true
}

step "build" setup build
step "tests" meson test -C build --print-errorlogs --num-processes 2
# ASan+UBSan at -O0: optimizing under both sanitizers made this build 21 of CI's 56
# minutes (one test file took 105 s to compile at -O2, 31 s at -O0); unoptimized, the
# suite runs about a minute longer, and LeakSanitizer found a leak (tools/bridge_keys.cpp)
# that the -O2 build did not report.
step "build (ASan+UBSan)" setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dcpp_args=-g1 -Doptimization=0
step "tests (ASan+UBSan)" env ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  meson test -C build-asan --print-errorlogs --num-processes 2 --timeout-multiplier 3
shed build-asan
# TSan runs the concurrency suite alone, so it builds only what that suite needs.
SUITE=concurrency step "build (TSan)" setup build-tsan -Db_sanitize=thread -Db_lundef=false -Dcpp_args=-g1
step "concurrency tests (TSan)" env TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp \
  meson test -C build-tsan --suite concurrency --no-rebuild --print-errorlogs --num-processes 2 --timeout-multiplier 4
shed build-tsan

if [ "$fuzz_seconds" != 0 ]; then
  CXX=clang++ step "build (fuzzers)" setup build-fuzz -Dfuzz=true -Dtests=false -Dcpp_args=-g1
  for target in build-fuzz/tests/fuzz/*_fuzz; do
    [ -x "$target" ] || continue
    name=$(basename "$target")
    corpus=tests/fuzz/corpus/$name
    work=$(mktemp -d)
    step "fuzz $name (${fuzz_seconds}s)" "$target" -max_total_time="$fuzz_seconds" -print_final_stats=1 \
      -artifact_prefix="$work/" "$work" "$corpus"
    rm -rf "$work"
  done
fi

echo
[ "$failed" = 0 ] || python3 tests/failed_tests.py build build-asan build-tsan
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "steps: $passed passed, $failed failed"
[ "$failed" = 0 ]
