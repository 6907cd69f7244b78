#!/usr/bin/env bash
# install-deps.sh -- install what dtask needs to build and test on Debian 12,
# from Debian's packages.  Idempotent: installs only what is missing.
set -euo pipefail

PACKAGES=(
  build-essential   # gcc, make (and g++ for the header's C++ check)
  cmake
  ninja-build       # what pip's CMake build of the Python extension uses
  python3-dev       # Python's headers, for that extension
  python3-venv      # the project's .venv (scripts/venv.sh)
  pkg-config
  libuv1-dev        # event loop and sockets
  libmsgpuck-dev    # msgpack encoder/decoder that never allocates
  libcmocka-dev     # unit test framework, run by ctest
  libssl-dev        # OpenSSL: HMAC for authentication, TLS
  libmicrohttpd-dev # the scheduler's dashboard and /metrics HTTP server
  openssl           # the command that makes test certificates
  clang             # libFuzzer targets (fuzz/)
  chromium          # the dashboard's browser test (headless)
  libclang-rt-14-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
