#!/usr/bin/env bash
# regen-msg-table.sh -- rewrites docs/architecture.md's message table (between
# its <!-- messages:begin/end --> markers) from src/proto/msgs.h, through a
# built msg_test (usage: scripts/regen-msg-table.sh [BUILD_DIR], default build).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
table=$(DTASK_PRINT_MSG_TABLE=1 "$build/msg_test")
python3 - "$table" <<'PY'
import sys
p = "docs/architecture.md"
s = open(p).read()
b, e = "<!-- messages:begin -->\n", "<!-- messages:end -->"
i, j = s.index(b) + len(b), s.index(e)
open(p, "w").write(s[:i] + sys.argv[1] + "\n" + s[j:])
PY
