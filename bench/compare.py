"""Run the same workloads on Dask, Ray and dtask in one run and print one
table (workload, Dask, Dask with queuing off, Ray, dtask, ratios), also
written as JSON.  Usually started by bench/compare.sh.

    .venv/bin/python bench/compare.py --bench build/bench [--scale 1] [--json out.json]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# lower is better for these units; higher for the others (tasks/s, MB/s)
LOWER_BETTER = {"ms", "us", "s", "B/task", "RTT"}


def run(cmd, out_json, env=None):
    print("$", " ".join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd + ["--json", out_json], check=True, env=env)
    print(f"  ({time.time() - t0:.0f} s)", flush=True)
    with open(out_json) as f:
        return json.load(f)


def has_module(name):
    try:
        __import__(name)
        return True
    except Exception:  # noqa: BLE001 - any import failure means missing
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True, help="path of dtask's bench program")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--systems", default="dask,dask-noq,ray,dtask")
    ap.add_argument("--json", help="write the merged results here")
    a = ap.parse_args()
    common = ["--scale", str(a.scale), "--workers", str(a.workers), "--threads", str(a.threads)]
    if a.skip_large:
        common.append("--skip-large")
    py = sys.executable
    systems = a.systems.split(",")
    docs = {}
    missing = {}
    need = {"dask": "distributed", "dask-noq": "distributed", "ray": "ray"}
    with tempfile.TemporaryDirectory() as d:
        for s in systems:
            out = os.path.join(d, s + ".json")
            if s not in ("dtask", "dask", "dask-noq", "ray"):
                sys.exit(f"unknown system {s}")
            if s != "dtask" and not has_module(need[s]):
                missing[s] = f"python module '{need[s]}' is not installed ({py})"
                print(f"MISSING: {s}: {missing[s]}", flush=True)
                continue
            try:
                if s == "dtask":
                    docs[s] = run([a.bench] + common, out)
                elif s == "dask":
                    docs[s] = run([py, os.path.join(HERE, "dask_bench.py"), "--queuing", "on"] + common, out)
                elif s == "dask-noq":
                    docs[s] = run([py, os.path.join(HERE, "dask_bench.py"), "--queuing", "off"] + common, out)
                else:
                    docs[s] = run([py, os.path.join(HERE, "ray_bench.py")] + common, out)
            except subprocess.CalledProcessError as e:
                if s == "dtask":
                    raise  # dtask's side must always run
                missing[s] = f"its benchmark failed (exit {e.returncode})"
                print(f"MISSING: {s}: {missing[s]}", flush=True)
    systems = [s for s in systems if s in docs] + [s for s in systems if s in missing]

    rows = []
    names = []
    for s in docs:
        for r in docs[s]["results"]:
            if r["workload"] not in names:
                names.append(r["workload"])
    for w in names:
        row = {"workload": w}
        for s in docs:
            for r in docs[s]["results"]:
                if r["workload"] == w:
                    row[s] = r["value"]
                    row["unit"] = r["unit"]
        rows.append(row)

    def ratio(row, other):
        a_, b_ = row.get("dtask"), row.get(other)
        if not a_ or not b_:
            return None
        return b_ / a_ if row["unit"] in LOWER_BETTER else a_ / b_

    others = [s for s in systems if s != "dtask"]
    head = f"{'workload':<26}{'unit':<9}" + "".join(f"{s:>13}" for s in systems)
    head += "".join(f"{'x vs ' + s:>14}" for s in others)
    print()
    print(f"scale {a.scale}, {a.workers} workers x {a.threads} thread(s); "
          + ", ".join(f"{s} {docs[s].get('version', '?')}" for s in docs))
    for s, why in missing.items():
        print(f"MISSING: {s}: {why}")
    print("ratios: how many times better dtask is (>1: dtask wins)")
    print(head)
    print("-" * len(head))
    for row in rows:
        line = f"{row['workload']:<26}{row.get('unit', ''):<9}"
        for s in systems:
            v = row.get(s)
            line += f"{v:>13.4g}" if v is not None else f"{'-':>13}"
        for s in others:
            r = ratio(row, s)
            row["x_vs_" + s] = r
            line += f"{r:>14.1f}" if r is not None else f"{'-':>14}"
        print(line)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"scale": a.scale, "workers": a.workers, "threads": a.threads,
                       "versions": {s: docs[s].get("version") for s in docs},
                       "missing": missing, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
