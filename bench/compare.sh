#!/usr/bin/env bash
# compare.sh -- build dtask, set up the Python environment with Dask and Ray,
# and run every workload on all of them in one run:
#
#   bash bench/compare.sh [--scale 1] [--skip-large] [--json bench/results.json]
#
# A full run (--scale 1) takes tens of minutes, most of it Dask's million-task
# map; CI runs it with --scale 0.01 --skip-large.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)" --target bench >/dev/null
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
# the references come from PyPI; if that fails they are reported as missing
# and dtask's side runs anyway
py=.venv/bin/python
if ! bash scripts/venv.sh; then
  echo "MISSING: the Python environment with Dask and Ray could not be set up (see above)"
  [ -x "$py" ] || py=python3
fi
exec "$py" bench/compare.py --bench build/bench "$@"
