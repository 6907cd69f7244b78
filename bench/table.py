"""Turn the JSON written by compare.py into the Markdown table used in
docs/benchmarks.md, so that the numbers there come from a run.

    .venv/bin/python bench/table.py results.json
"""

import json
import sys


def fmt(v):
    if v is None:
        return "–"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def main():
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    rows = doc["rows"]
    systems = [s for s in ("dask", "dask-noq", "ray", "dtask") if any(s in r for r in rows)]
    for s, why in doc.get("missing", {}).items():
        print(f"Missing: {s}: {why}\n")
    others = [s for s in systems if s != "dtask"]
    print("| workload | unit | " + " | ".join(systems) + " | "
          + " | ".join(f"× vs {s}" for s in others) + " |")
    print("|---|---|" + "---:|" * (len(systems) + len(others)))
    for r in rows:
        cells = [r["workload"], r.get("unit", "")]
        cells += [fmt(r.get(s)) for s in systems]
        cells += [fmt(r.get("x_vs_" + s)) for s in others]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
