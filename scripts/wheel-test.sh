#!/usr/bin/env bash
# wheel-test.sh -- the Python package as a user builds it: `pip install .`
# and `pip wheel .` in clean virtual environments WITH build isolation (pip
# installs the build back end, scikit-build-core, from PyPI into a throwaway
# environment; the system's cmake and ninja build the extension), then the
# seed's Python example from what was installed, run outside the source tree:
#   LocalCluster + Client, client.submit(lambda x: x + 1, 10).result() == 11
# Everything pip downloads, build requirements included, is pinned by
# bench/constraints.txt (PIP_CONSTRAINT reaches pip's isolated build
# environment too).  Nothing is installed into the project's .venv.
# Needs: python3 with venv (scripts/install-deps.sh), cmake, ninja, a C
# compiler and the -dev packages of scripts/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tmp=$(mktemp -d /tmp/dtask-wheel-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export PIP_CONSTRAINT="$root/bench/constraints.txt"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# a stale in-tree build folder must not be what the test sees: each build
# gets a new one (scikit-build-core's build-dir setting)
pipq=(-q -C "build-dir=$tmp/skbuild")

seed() { # seed VENV WHAT: the seed example with the installed package
  local out
  out=$(cd "$tmp" && timeout 300 "$1/bin/python" - <<'PY'
import os, sys
import dtask
from dtask import Client, LocalCluster
# the package comes from the environment's site-packages, not the tree
assert os.path.realpath(dtask.__file__).startswith(os.path.realpath(sys.prefix)), dtask.__file__
with LocalCluster(n_workers=2) as cluster, Client(cluster) as client:
    future = client.submit(lambda x: x + 1, 10)
    print(future.result())
PY
) || { echo "wheel-test: the seed example failed with $2"; return 1; }
  if [ "$out" != 11 ]; then echo "wheel-test: the seed example printed '$out' with $2, not 11"; return 1; fi
  echo "wheel-test: $2: the seed example printed $out"
}

# 1. pip install . (build isolation) into a new environment
python3 -m venv "$tmp/venv-install"
"$tmp/venv-install/bin/pip" install "${pipq[@]}" "$root"
seed "$tmp/venv-install" "pip install ."

# 2. pip wheel . (build isolation), the wheel installed into another new one
rm -rf "$tmp/skbuild"
python3 -m venv "$tmp/venv-wheel"
"$tmp/venv-wheel/bin/pip" wheel "${pipq[@]}" --no-deps -w "$tmp/wheelhouse" "$root"
wheel=$(ls "$tmp"/wheelhouse/dtask-*.whl)
# (grep reads the whole listing: with -q it would stop early and, under pipefail, the
# listing's broken pipe would fail the check)
python3 -m zipfile -l "$wheel" | grep "dtask/_core[.].*so" >/dev/null ||
  { echo "wheel-test: $wheel has no dtask/_core extension"; exit 1; }
"$tmp/venv-wheel/bin/pip" install -q "$wheel"
seed "$tmp/venv-wheel" "pip wheel . ($(basename "$wheel"))"
# the back end that built it is the pinned one (the constraints reached the
# isolated build environment)
want=$(sed -n 's/^scikit[-_]build[-_]core==//p' "$PIP_CONSTRAINT")
gen=$(python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); print(next(l for n in z.namelist() if n.endswith(".dist-info/WHEEL") for l in z.read(n).decode().splitlines() if l.startswith("Generator:")))' "$wheel")
echo "wheel-test: $gen"
[ "$gen" = "Generator: scikit-build-core $want" ] ||
  { echo "wheel-test: built by '$gen', not the pinned scikit-build-core $want"; exit 1; }
echo "wheel-test: passed"
