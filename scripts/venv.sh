#!/usr/bin/env bash
# venv.sh -- create the project's Python virtual environment (.venv, ignored
# by git) with the machine's python3 and the pinned packages from PyPI: the
# reference systems of the benchmarks and what the Python package builds,
# runs and is tested with.
# Idempotent: does nothing when the environment matches the constraints.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.dtask-constraints
want=$(sha256sum bench/requirements.txt python/requirements.txt bench/constraints.txt | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r bench/requirements.txt \
  -r python/requirements.txt -c bench/constraints.txt
echo "$want" > "$stamp"
