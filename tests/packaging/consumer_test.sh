#!/bin/sh
# consumer_test.sh BUILD_DIR -- install a built dtask tree into a temporary
# prefix (cmake --install), then build tests/packaging/consumer.c against the
# installed files only, twice: with `pkg-config --cflags --libs dtask` and
# with CMake's find_package(dtask CONFIG) (the imported target dtask::dtask).
# Each program must link the installed libdtask.so and print 11 (the seed
# example: submit(inc, 10) on a LocalCluster).  Registered with ctest as
# consumer_test (plain builds; the sanitizer builds skip it).
set -eu
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d /tmp/dtask-consumer-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

cmake --install "$build" --prefix "$prefix" >/dev/null
for f in bin/dtask include/dtask.h lib/libdtask.a lib/libdtask.so lib/pkgconfig/dtask.pc \
         lib/cmake/dtask/dtaskConfig.cmake lib/cmake/dtask/dtaskConfigVersion.cmake; do
  test -e "$prefix/$f" || { echo "consumer_test: the install has no $f"; exit 1; }
done
# only the installed files: the sources are copied away from the tree
mkdir "$tmp/src"
cp "$here/consumer.c" "$here/CMakeLists.txt" "$tmp/src/"

check() { # check NAME EXE: links the installed libdtask.so and prints 11
  if ! ldd "$2" | grep -q "libdtask[.]so[.][0-9]* => $prefix/lib/"; then
    echo "consumer_test: $1 does not use $prefix/lib/libdtask.so:"; ldd "$2"; exit 1
  fi
  out=$(timeout 120 "$2") || { echo "consumer_test: $1 failed (exit $?): $out"; exit 1; }
  if [ "$out" != 11 ]; then echo "consumer_test: $1 printed '$out', not 11"; exit 1; fi
  echo "consumer_test: $1: $out"
}

# 1. pkg-config (the .pc file is relative to where it is installed)
flags=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs dtask)
case "$flags" in *"$prefix"*) ;; *) echo "consumer_test: pkg-config gave '$flags'"; exit 1;; esac
${CC:-cc} -std=c11 -Wall -Wextra -Werror -o "$tmp/consumer_pc" "$tmp/src/consumer.c" $flags \
  -Wl,-rpath,"$prefix/lib"
check pkg-config "$tmp/consumer_pc"

# 2. CMake: find_package(dtask CONFIG) with only the prefix to look in
cmake -S "$tmp/src" -B "$tmp/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >/dev/null
cmake --build "$tmp/build" >/dev/null
check find_package "$tmp/build/consumer"
echo "consumer_test: passed"
