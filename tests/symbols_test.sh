#!/bin/sh
# symbols_test.sh -- checks which symbols the dtask libraries define.
#
#   sh symbols_test.sh LIBDTASK.SO LIBDTASK.A DTASK.H CC
#
# 1. libdtask.so exports (nm -D --defined-only) only public names: every one
#    matches ^dt_[a-z] (so no dt__ internal, no mp_, nothing unprefixed) and
#    is a function declared in dtask.h;
# 2. every function declared in dtask.h is exported from libdtask.so (the
#    header gives its declarations default visibility; this fails when one is
#    declared outside that region, or declared and never defined);
# 3. every global symbol libdtask.a defines starts with dt_ (public, and then
#    declared in dtask.h) or dt__ (internal), except msgpuck's mp_* in the
#    member built from src/proto/msgpuck.c, and only there.
#
# Why mp_* stay global in libdtask.a: msgpuck.h defines its functions as C99
# `inline` (no external copy) in every file that includes it, so the
# compiler calls the external copies in msgpuck.c whenever it does not inline
# (every call at -O0: the Debug, ASan and TSan builds), and its lookup tables
# (mp_type_hint, mp_parser_hint, mp_char2escape) are extern data used by the
# inline functions at every -O level.  Those callers are the library's files
# and also the unit tests, bench and fuzz programs that include msgpuck.h and
# link libdtask.a, so the copies must stay visible to the static linker; an
# archive cannot hide them from its users without a partial link (ld -r) and
# renaming that the tests would then need undone.  They are hidden in
# libdtask.so (-fvisibility=hidden and its version script), where check 1
# applies.
#
# Prints every offending name and exits 1 if any check fails.
set -eu

if [ $# -ne 4 ]; then
  echo "usage: $0 LIBDTASK.SO LIBDTASK.A DTASK.H CC" >&2
  exit 2
fi
so=$1
ar=$2
header=$3
cc=$4
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dtask-symbols-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failed=0

# fail TITLE FILE: reports the names in FILE (if any) under TITLE
fail() {
  if [ -s "$2" ]; then
    echo "FAIL: $1:"
    sed 's/^/  /' "$2"
    failed=1
  fi
}

# The functions dtask.h declares: `dt_name(` in the preprocessed header
# (comments and macro bodies such as DT_TASK's gone; function pointer types
# like `(*dt_task_fn)(` do not match).
"$cc" -E -P -x c "$header" >"$tmp/header.i"
tr '\n' ' ' <"$tmp/header.i" | grep -oE '(^|[^A-Za-z0-9_])dt_[a-z][A-Za-z0-9_]*[[:space:]]*[(]' |
  sed -E 's/^[^d]*//; s/[[:space:]]*[(]$//' | sort -u >"$tmp/declared"
ndecl=$(wc -l <"$tmp/declared")
if [ "$ndecl" -lt 10 ]; then
  echo "FAIL: found only $ndecl function declarations in $header; is the parser wrong?"
  exit 1
fi

# 1 and 2: the shared library's dynamic symbol table.
nm -D --defined-only "$so" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//' | sort -u >"$tmp/exported"
if [ ! -s "$tmp/exported" ]; then
  echo "FAIL: $so exports nothing"
  exit 1
fi
grep -vE '^dt_[a-z]' "$tmp/exported" >"$tmp/bad_so" || true
fail "$so exports non-public names (not ^dt_[a-z], or dt__)" "$tmp/bad_so"
grep -E '^dt_[a-z]' "$tmp/exported" | comm -23 - "$tmp/declared" >"$tmp/undeclared_so" || true
fail "$so exports dt_ names that dtask.h does not declare" "$tmp/undeclared_so"
comm -23 "$tmp/declared" "$tmp/exported" >"$tmp/missing" || true
fail "functions declared in dtask.h but not exported from $so (outside the header's visibility region, or not defined)" "$tmp/missing"

# 3: the static library's global definitions, as "member name".
nm -A -g --defined-only "$ar" | awk 'NF >= 3 {
    n = split($1, f, ":"); print f[n - 1], $3 }' | sort -u >"$tmp/archive"
if [ ! -s "$tmp/archive" ]; then
  echo "FAIL: $ar defines nothing"
  exit 1
fi
# (AddressSanitizer adds an ODR indicator __odr_asan.NAME beside each global
# variable NAME: judged as NAME.)
awk '{ name = $2; sub(/^__odr_asan[.]/, "", name) }
     name ~ /^dt_/ { next }
     name ~ /^mp_/ && $1 == "msgpuck.c.o" { next }
     { print $2 " (in " $1 ")" }' "$tmp/archive" >"$tmp/bad_a"
fail "$ar defines global names outside dt_/dt__ (mp_ is allowed only from msgpuck.c.o)" "$tmp/bad_a"
awk '$2 ~ /^dt_[a-z]/ { print $2 }' "$tmp/archive" | sort -u | comm -23 - "$tmp/declared" \
  >"$tmp/undeclared_a" || true
fail "$ar defines dt_ names that dtask.h does not declare (internal names are dt__)" "$tmp/undeclared_a"

nexp=$(wc -l <"$tmp/exported")
if [ "$failed" -ne 0 ]; then
  exit 1
fi
echo "ok: $nexp symbols exported from $so, all $ndecl functions of dtask.h; $ar clean"
