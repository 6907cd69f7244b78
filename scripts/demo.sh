#!/usr/bin/env bash
# demo.sh -- build dtask and run the main demo (examples/demo.c): a
# LocalCluster, the seed's example, a map-reduce, a Monte Carlo estimate of
# pi and 20,000 tiny tasks, with timings.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
exec ./build/demo
