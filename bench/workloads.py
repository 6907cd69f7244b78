"""The benchmark workloads, defined once for every system (sizes scale with
--scale so that CI can run them small).  See bench/README.md."""

import json
import statistics
import time


def sizes(scale):
    def n(x, lo):
        return max(lo, int(x * scale))

    leaves = 8192
    while leaves > 64 and leaves > 8192 * scale:
        leaves //= 2
    return {
        "latency_calls": n(500, 20),
        "map_small": n(20000, 100),
        "map_large": n(1000000, 1000),
        "tree_leaves": leaves,
        "chain": n(2000, 50),
        "transfer_bytes": n(200_000_000, 1_000_000),
        # large results moved and read (one byte per 4 KiB page, so every
        # page is really on the receiver): 256 MiB and 1 GiB
        "transfer_256m": n(256 << 20, 1 << 20),
        "transfer_1g": n(1 << 30, 1 << 20),
        "submit_tasks": n(100000, 1000),
        "memory_tasks": n(100000, 1000),
        "actor_calls": n(1000, 20),  # sequential actor method round trips
    }


class Report:
    def __init__(self, system, version, workers, threads):
        self.doc = {"system": system, "version": version, "workers": workers,
                    "threads": threads, "results": []}

    def add(self, workload, value, unit, note=""):
        self.doc["results"].append({"workload": workload, "value": value, "unit": unit})
        print(f"{self.doc['system']:>6} {workload:<24} {value:>14.3f} {unit:<8} {note}", flush=True)

    def write(self, path):
        if path:
            with open(path, "w") as f:
                json.dump(self.doc, f, indent=1)


def median_p99(samples):
    s = sorted(samples)
    return statistics.median(s), s[min(len(s) - 1, int(len(s) * 0.99))]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out
