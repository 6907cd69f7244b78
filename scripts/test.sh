#!/usr/bin/env bash
# test.sh -- build dtask and run every test, warnings as errors: a Release
# build (what a user's `cmake -DCMAKE_BUILD_TYPE=Release` makes), an
# AddressSanitizer + UndefinedBehaviorSanitizer build and a ThreadSanitizer
# build, each running the whole ctest suite; a RelWithDebInfo build (the one
# the Python tests and the benchmarks use) running the unit and packaging
# tests; the Python package's pytest suite, and the package built by pip with
# build isolation into clean environments (scripts/wheel-test.sh); the
# fuzzers; then a small benchmark run against Dask and Ray (installed from
# PyPI into .venv).  Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

JOBS=$(nproc 2>/dev/null || echo 2)

# the browser test's driver, playwright-core, from the npm registry (pinned in
# tests/browser/package-lock.json); it needs Node.js 20 or later
if ! command -v node >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null || true
fi
if command -v npm >/dev/null 2>&1; then
  (cd tests/browser && npm ci --no-audit --no-fund --silent) ||
    echo "== npm ci failed: the browser test will be skipped"
else
  echo "== no npm here: the browser test will be skipped"
fi

# a real single-node Slurm (with PBS qsub wrappers) for the HPC tests; where
# it cannot start, those tests skip with a message
if ! bash scripts/start-slurm.sh; then
  echo "== Slurm could not be started here: the HPC tests on real jobs will be skipped"
fi

# run_config DIR CMAKE_ARGS... [-- CTEST_ARGS...]
run_config() {
  local dir=$1 start=$SECONDS
  shift
  local cmake_args=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do cmake_args+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  echo "== $dir: configure (${cmake_args[*]})"
  cmake -S . -B "$dir" -DDTASK_WERROR=ON "${cmake_args[@]}" >/dev/null
  echo "== $dir: build"
  cmake --build "$dir" -j "$JOBS" >/dev/null
  echo "== $dir: test $*"
  (cd "$dir" && ctest --output-on-failure --timeout 300 "$@")
  echo "== $dir: built and tested in $((SECONDS - start)) s"
}

# Release (-O3) is what users and distributions build: the whole suite, the
# packaging tests included (consumer_test installs it and builds a program
# against it with pkg-config and find_package).  RelWithDebInfo (-O2 -g)
# builds `build`, which the Python tests, the benchmarks and demo.sh use; its
# warnings fail CI too, and its unit and packaging tests run (the sanitizer
# builds and Release run every end-to-end test already).
# The Release build adds what Debian's packaging builds with (dpkg-buildflags:
# _FORTIFY_SOURCE, stack protector, format checks, full RELRO), so that a
# distribution's build is warning-free too.
run_config build-release -DCMAKE_BUILD_TYPE=Release \
  "-DCMAKE_C_FLAGS=-D_FORTIFY_SOURCE=2 -fstack-protector-strong -Wformat -Werror=format-security" \
  "-DCMAKE_EXE_LINKER_FLAGS=-Wl,-z,relro,-z,now" "-DCMAKE_SHARED_LINKER_FLAGS=-Wl,-z,relro,-z,now" \
  "-DCMAKE_MODULE_LINKER_FLAGS=-Wl,-z,relro,-z,now"
run_config build -DCMAKE_BUILD_TYPE=RelWithDebInfo -- -L 'unit|packaging'
# sanitizer reports from child processes (scheduler, workers) go to files we check
logdir=$(mktemp -d /tmp/dtask-san-XXXXXX)
# (printed however the script ends: a failing sanitizer test shows its report)
trap 'if ls "$logdir"/* >/dev/null 2>&1; then echo "== sanitizer reports:"; cat "$logdir"/*; fi; rm -rf "$logdir"' EXIT
ASAN_OPTIONS="log_path=$logdir/asan:detect_leaks=1" UBSAN_OPTIONS="log_path=$logdir/ubsan" \
  run_config build-asan -DCMAKE_BUILD_TYPE=Debug -DDTASK_SANITIZE=ON
TSAN_OPTIONS="log_path=$logdir/tsan" run_config build-tsan -DCMAKE_BUILD_TYPE=Debug -DDTASK_TSAN=ON
if ls "$logdir"/* >/dev/null 2>&1; then
  exit 1 # the EXIT trap prints them
fi
# the Python package: built with pip from this tree into .venv, then its
# pytest suite (the seed example, futures, Dask collections, killed workers)
echo "== python: install the dtask package into .venv and run pytest"
bash scripts/venv.sh
.venv/bin/pip install -q --disable-pip-version-check --no-build-isolation --no-deps .
DTASK_PRELOAD_LIB="$PWD/build/libmytasks.so" timeout 1200 .venv/bin/python -m pytest -q python/tests
# the package as a user builds it: pip install . and pip wheel . with build
# isolation into clean virtual environments, then the seed example
echo "== python: pip install . and pip wheel . with build isolation (scripts/wheel-test.sh)"
start=$SECONDS
bash scripts/wheel-test.sh
echo "== python: wheel test took $((SECONDS - start)) s"
# fuzzing: each libFuzzer target (clang, ASan+UBSan) runs for a bounded time
# from the seed corpus in fuzz/corpus (new inputs go to a scratch folder)
FUZZ_SECONDS=${DTASK_FUZZ_SECONDS:-60}
echo "== build-fuzz: configure and build (clang, libFuzzer, ASan+UBSan)"
CC=clang cmake -S . -B build-fuzz -DDTASK_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDTASK_FUZZ=ON >/dev/null
cmake --build build-fuzz -j "$JOBS" --target fuzz_decode fuzz_scheduler fuzz_journal >/dev/null
for t in decode scheduler journal; do
  scratch=$(mktemp -d /tmp/dtask-fuzz-XXXXXX)
  mkdir "$scratch/corpus"
  echo "== fuzz_$t: ${FUZZ_SECONDS} s"
  root=$PWD
  if ! (cd "$scratch" && "$root/build-fuzz/fuzz_$t" -max_total_time="$FUZZ_SECONDS" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 "$scratch/corpus" "$root/fuzz/corpus/$t" \
        >"$scratch/log" 2>&1); then
    tail -60 "$scratch/log"
    echo "== fuzz_$t FAILED: the crashing input is in $scratch (crash-*)"
    exit 1
  fi
  grep -E "^Done [0-9]+ runs|stat::peak_rss_mb" "$scratch/log" | sed "s/^/   fuzz_$t: /"
  rm -rf "$scratch"
done
echo "== benchmark smoke run: dtask, Dask and Ray on the same small workloads (numbers not checked)"
bash bench/compare.sh --scale 0.01 --skip-large
echo "== Python benchmark smoke run: Dask's LocalCluster and dtask's on the same small collections"
.venv/bin/python bench/python_bench.py --scale 0.01
echo "== all tests passed (Release, RelWithDebInfo, asan+ubsan, tsan, Python, the wheel), the fuzzers ran clean, and the benchmark smoke run worked"
