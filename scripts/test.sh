#!/usr/bin/env bash
# test.sh -- build dtask and run every test: a warnings-as-errors build, an
# AddressSanitizer + UndefinedBehaviorSanitizer build and a ThreadSanitizer
# build, each running the whole ctest suite; then a small benchmark run
# against Dask and Ray (installed from PyPI into .venv).  Exits non-zero on
# any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

JOBS=$(nproc 2>/dev/null || echo 2)

run_config() {
  local dir=$1
  shift
  echo "== $dir: configure ($*)"
  cmake -S . -B "$dir" -DDTASK_WERROR=ON "$@" >/dev/null
  echo "== $dir: build"
  cmake --build "$dir" -j "$JOBS" >/dev/null
  echo "== $dir: test"
  (cd "$dir" && ctest --output-on-failure --timeout 300)
}

run_config build -DCMAKE_BUILD_TYPE=RelWithDebInfo
# sanitizer reports from child processes (scheduler, workers) go to files we check
logdir=$(mktemp -d /tmp/dtask-san-XXXXXX)
trap 'rm -rf "$logdir"' EXIT
ASAN_OPTIONS="log_path=$logdir/asan:detect_leaks=1" UBSAN_OPTIONS="log_path=$logdir/ubsan" \
  run_config build-asan -DCMAKE_BUILD_TYPE=Debug -DDTASK_SANITIZE=ON
TSAN_OPTIONS="log_path=$logdir/tsan" run_config build-tsan -DCMAKE_BUILD_TYPE=Debug -DDTASK_TSAN=ON
if ls "$logdir"/* >/dev/null 2>&1; then
  echo "== sanitizer reports:"
  cat "$logdir"/*
  exit 1
fi
echo "== benchmark smoke run: dtask, Dask and Ray on the same small workloads (numbers not checked)"
bash bench/compare.sh --scale 0.01 --skip-large
echo "== all tests passed (release, asan+ubsan, tsan) and the benchmark smoke run worked"
