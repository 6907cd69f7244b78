#!/usr/bin/env bash
# python_compare.sh -- set up .venv (Dask from PyPI, pinned), install the
# dtask Python package from this tree, and run bench/python_bench.py: the
# same Dask collections and futures code on Dask Distributed's LocalCluster
# and on dtask's, in one run.
#
#   bash bench/python_compare.sh [--scale 1] [--json bench/python-results.json]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/venv.sh
.venv/bin/pip install -q --disable-pip-version-check --no-build-isolation --no-deps .
exec .venv/bin/python bench/python_bench.py "$@"
