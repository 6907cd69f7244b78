#!/usr/bin/env python3
"""layers_test.py -- the folders of src/ are layers, and no lower layer
reaches a higher one (docs/architecture.md, "Layers"):

    common < proto < net < task < {scheduler, worker, client} < cluster < cli

The three daemons' folders sit side by side and never reach each other.
Checked two ways: every #include "..." in src/, and every symbol an object
file of the library needs from another object (nm), mapped to the folder
that defines it.  Also: no file under src/ is over 700 lines.

usage: layers_test.py SOURCE_DIR OBJECTS_DIR
"""
import os
import re
import subprocess
import sys

LAYER = {"common": 0, "proto": 1, "net": 2, "task": 3,
         "scheduler": 4, "worker": 4, "client": 4, "cluster": 5, "cli": 6}
MAX_LINES = 700


def allowed(src, dst):
    if src == dst:
        return True
    if LAYER[dst] == LAYER[src]:
        return False  # side by side: the daemons never reach each other
    return LAYER[dst] < LAYER[src]


def main():
    root, objdir = sys.argv[1], sys.argv[2]
    srcdir = os.path.join(root, "src")
    bad = []
    # 1. includes
    for folder in LAYER:
        d = os.path.join(srcdir, folder)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if not name.endswith((".c", ".h")):
                continue
            path = os.path.join(d, name)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            n = text.count("\n")
            if n > MAX_LINES and not name.endswith("_test.c"):
                bad.append(f"src/{folder}/{name}: {n} lines (at most {MAX_LINES})")
            for inc in re.findall(r'^\s*#\s*include\s+"([^"]+)"', text, re.M):
                target = os.path.normpath(os.path.join(d, inc))
                rel = os.path.relpath(target, srcdir)
                top = rel.split(os.sep)[0]
                if top in LAYER and not allowed(folder, top):
                    bad.append(f"src/{folder}/{name} includes {inc} (a {top} header)")
    # 2. symbols: who defines what, who needs what
    defined, needs = {}, []
    for dirpath, _, files in os.walk(objdir):
        for fn in files:
            if not fn.endswith(".o"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, fn), objdir)
            parts = rel.split(os.sep)
            if "src" not in parts:
                continue
            folder = parts[parts.index("src") + 1]
            if folder not in LAYER:
                continue
            out = subprocess.run(["nm", os.path.join(dirpath, fn)], capture_output=True,
                                 text=True, check=True).stdout
            for line in out.splitlines():
                f = line.split()
                if len(f) == 3 and f[1] in "TDBR":
                    defined[f[2]] = folder
                elif len(f) == 2 and f[0] == "U":
                    needs.append((folder, rel, f[1]))
    if len(defined) < 100:
        bad.append(f"only {len(defined)} symbols found under {objdir}: wrong folder?")
    for folder, obj, sym in needs:
        owner = defined.get(sym)
        if owner and not allowed(folder, owner):
            bad.append(f"{obj} ({folder}) calls {sym}, defined in {owner}")
    if bad:
        print("layering violations:")
        for b in bad:
            print("  " + b)
        return 1
    print(f"layers ok: {len(defined)} symbols, {len(needs)} references checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
