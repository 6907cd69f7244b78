"""The Python package against Dask Distributed, in one run: the same Dask
collections and futures code on Dask's LocalCluster and on dtask's, with the
same numbers of worker processes and threads.  Prints one table (workload,
Dask, dtask, ratio) and writes it as JSON.  Usually started by
bench/python_compare.sh.

    .venv/bin/python bench/python_bench.py [--scale 1] [--workers 2] [--threads 1]
                                           [--only dask|dtask] [--json out.json]
                                           [--workloads tasks_from_tasks,actor_call,...]
    .venv/bin/python bench/python_bench.py --markdown out.json   # the table for the docs

Workloads (--scale shrinks them for smoke runs):
  array_mean     (x + x.T).mean(axis=0), x: 4000 x 4000 random in 500 x 500 chunks
  array_matmul   a.T @ a, a = x[:, :1000] (8 x 8 block products)
  array_reduce   (x ** 2).sum(), x.std(axis=1), x.max(axis=0) - x.min(axis=0)
  dataframe      dask.datasets.timeseries (30 days, 1 s) groupby("name").agg(...)
  delayed_100k   a graph of 100,000 tiny dask.delayed calls (inc, then an 8-ary
                 tree of sums: 114,286 tasks) computed with optimize_graph=False
  map_20k        client.map(inc, range(20000)) + gather
  delayed_100k   (issue 17) the delayed graph above, built once, computed 3 times:
                 the best run's tasks/s (optimize_graph=False)
  map_100k       (issue 17) client.map(inc, range(100000), pure=False) + gather,
                 best of 3
  latency        submit -> result of a trivial task (median of 300)
  tasks_from_tasks  one task fans out 5,000 inc subtasks through the worker's
                 client (get_client) and gathers them (seceded while it waits)
  actor_call     counter.increment().result() on an actor (median of 1000)
"""

import argparse
import json
import os
import statistics
import sys
import time

import dask
import dask.array as da
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def inc(x):
    return x + 1


def add(*xs):
    return sum(xs)


class Counter:
    """The actor of the actor call workload."""

    n = 0

    def increment(self):
        self.n += 1
        return self.n


def warm():
    """What a worker imports for the collections below (Dask's workers have
    numpy loaded already, not pandas or dask's collections)."""
    import dask.array  # noqa: F401
    import dask.dataframe  # noqa: F401
    import pandas  # noqa: F401
    return os.getpid()


def build_delayed(n):
    layer = [dask.delayed(inc)(i) for i in range(n)]
    ntasks = n
    while len(layer) > 1:
        layer = [dask.delayed(add)(*layer[i:i + 8]) for i in range(0, len(layer), 8)]
        ntasks += len(layer)
    return layer[0], ntasks


def best(fn, repeat, warm=True):
    """The best of repeat timed runs, after one untimed run (workers import
    numpy, pandas and dask's modules on first use)."""
    if warm:
        fn()
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        if os.environ.get("BENCH_VERBOSE"):
            print("   ", getattr(fn, "__name__", "?"), f"{times[-1]:.4f}", flush=True)
    return min(times), out


def fan_out(n, system):
    """Tasks from tasks: a task submits n subtasks and gathers them."""
    if system == "dask":
        from distributed import get_client, rejoin, secede
    else:
        from dtask import get_client, rejoin, secede
    client = get_client()
    futs = client.map(inc, range(n), pure=False)
    secede()  # Dask needs it on one-thread workers; dtask secedes by itself too
    out = sum(client.gather(futs))
    rejoin()
    return out


def sizes(s):
    return {"side": max(500, int(4000 * min(1.0, s ** 0.5)) // 500 * 500),
            "days": max(1, int(30 * s)), "nd": max(1000, int(100_000 * s)),
            "nmap": max(500, int(20_000 * s)), "nfan": max(200, int(5_000 * s))}


def collections(sz):
    x = da.random.default_rng(0).random((sz["side"], sz["side"]), chunks=(500, 500))
    a2 = x[:, : min(sz["side"], 1000)]
    days = sz["days"]
    end = f"2000-01-{1 + days:02d}" if days < 31 else "2000-02-01"
    df = dask.datasets.timeseries(start="2000-01-01", end=end, freq="1s", seed=0)
    return {"mean": (x + x.T).mean(axis=0), "matmul": a2.T @ a2,
            "reduce": [(x ** 2).sum(), x.std(axis=1), x.max(axis=0) - x.min(axis=0)],
            "groupby": df.groupby("name").agg({"x": "mean", "y": "max", "id": "count"})}


def reference(sz):
    """Dask's synchronous scheduler's answers, computed before any cluster
    exists (a distributed Client changes how collections are lowered)."""
    c = collections(sz)
    return {"mean": c["mean"].compute(scheduler="sync"),
            "matmul": c["matmul"].compute(scheduler="sync"),
            "reduce": c["reduce"][0].compute(scheduler="sync"),
            "groupby": c["groupby"].compute(scheduler="sync")}


def run(system, a, ref):
    s = a.scale
    sz = sizes(s)
    side, days, nd, nmap = sz["side"], sz["days"], sz["nd"], sz["nmap"]
    repeat = 3 if s >= 0.5 else 1
    if system == "dask":
        import distributed

        t0 = time.perf_counter()
        cluster = distributed.LocalCluster(n_workers=a.workers, threads_per_worker=a.threads,
                                           processes=True, dashboard_address=None)
        client = distributed.Client(cluster)
        client.wait_for_workers(a.workers)
        version = distributed.__version__
    else:
        import dtask

        t0 = time.perf_counter()
        cluster = dtask.LocalCluster(n_workers=a.workers, threads_per_worker=a.threads,
                                     dashboard_address=None)
        client = dtask.Client(cluster)
        version = dtask.__version__
    res = {"cluster_start_s": time.perf_counter() - t0}

    assert len(client.run(warm)) == a.workers
    want = (lambda w: a.workloads is None or w in a.workloads)
    if want("collections"):
        collections_run(client, sz, ref, repeat, res)
    if want("delayed"):
        delayed_run(nd, res)
    if want("map"):
        def do_map():
            return client.gather(client.map(inc, range(nmap), pure=False))

        dt, got = best(do_map, repeat)
        assert got == list(range(1, nmap + 1)), "map: wrong result"
        res["map_tasks_per_s"] = nmap / dt
    if want("delayed_100k"):
        n100 = max(1000, int(100_000 * s))
        total, ntasks = build_delayed(n100)
        dt, got = best(lambda: dask.compute(total, optimize_graph=False)[0], 3, warm=False)
        assert got == sum(range(1, n100 + 1)), "delayed_100k: wrong result"
        res["delayed_100k_tasks_per_s"] = ntasks / dt
    if want("map_100k"):
        n100 = max(1000, int(100_000 * s))
        dt, got = best(lambda: client.gather(client.map(inc, range(n100), pure=False)), 3,
                       warm=False)
        assert got == list(range(1, n100 + 1)), "map_100k: wrong result"
        res["map_100k_tasks_per_s"] = n100 / dt
    if want("tasks_from_tasks"):
        nfan = sz["nfan"]
        dt, got = best(lambda: client.submit(fan_out, nfan, system, pure=False).result(), repeat)
        assert got == nfan * (nfan + 1) // 2, "tasks_from_tasks: wrong result"
        res["tasks_from_tasks_per_s"] = nfan / dt
    if want("latency"):
        latency_run(client, res)
    if want("actor_call"):
        actor_run(client, s, res)
    client.close()
    cluster.close()
    return {"system": system, "version": version, "workers": a.workers, "threads": a.threads,
            "sizes": {"array_side": side, "days": days, "delayed_leaves": nd, "map": nmap},
            "results": res}


def collections_run(client, sz, ref, repeat, res):
    c = collections(sz)
    res["array_mean_s"], got = best(lambda: c["mean"].compute(), repeat)
    assert np.allclose(got, ref["mean"]), "array_mean: wrong result"
    res["array_matmul_s"], got = best(lambda: c["matmul"].compute(), repeat)
    assert np.allclose(got, ref["matmul"]), "array_matmul: wrong result"
    res["array_reduce_s"], got = best(lambda: dask.compute(*c["reduce"]), repeat)
    assert np.allclose(got[0], ref["reduce"]), "array_reduce: wrong result"
    res["dataframe_s"], got = best(lambda: c["groupby"].compute(), repeat)
    want = ref["groupby"]
    assert np.allclose(got.sort_index().values, want.sort_index().values), "dataframe: wrong result"


def delayed_run(nd, res):
    total, ntasks = build_delayed(nd)
    dt, got = best(lambda: dask.compute(total, optimize_graph=False)[0], 1, warm=False)
    assert got == sum(range(1, nd + 1)), "delayed: wrong result"
    res["delayed_tasks"] = ntasks
    res["delayed_s"] = dt
    res["delayed_tasks_per_s"] = ntasks / dt


def latency_run(client, res):
    for i in range(30):
        client.submit(inc, i, pure=False).result()
    lat = []
    for i in range(300):
        t0 = time.perf_counter()
        client.submit(inc, i, pure=False).result()
        lat.append(time.perf_counter() - t0)
    res["latency_median_us"] = statistics.median(lat) * 1e6


def actor_run(client, s, res):
    # actor round trip: client -> the actor's worker -> client, one at a time
    counter = client.submit(Counter, actor=True).result()
    for _ in range(20):
        counter.increment().result()
    lat = []
    for _ in range(max(20, int(1000 * s))):
        t0 = time.perf_counter()
        counter.increment().result()
        lat.append(time.perf_counter() - t0)
    assert counter.n == 20 + len(lat), "actor: wrong count"
    res["actor_call_median_us"] = statistics.median(lat) * 1e6
    del counter


ROWS = [  # key, label, unit, lower is better
    ("cluster_start_s", "cluster start", "s", True),
    ("array_mean_s", "array (x + x.T).mean(0)", "s", True),
    ("array_matmul_s", "array a.T @ a", "s", True),
    ("array_reduce_s", "array reductions", "s", True),
    ("dataframe_s", "dataframe groupby-agg", "s", True),
    ("delayed_s", "delayed graph", "s", True),
    ("delayed_tasks_per_s", "delayed graph", "tasks/s", False),
    ("map_tasks_per_s", "map + gather", "tasks/s", False),
    ("delayed_100k_tasks_per_s", "delayed 100k graph (best of 3)", "tasks/s", False),
    ("map_100k_tasks_per_s", "map 100k + gather (best of 3)", "tasks/s", False),
    ("latency_median_us", "submit -> result", "us", True),
    ("tasks_from_tasks_per_s", "tasks from tasks (fan-out)", "tasks/s", False),
    ("actor_call_median_us", "actor call round trip", "us", True),
]


def table(runs):
    by = {r["system"]: r["results"] for r in runs}
    lines = [f"{'workload':<26} {'unit':<8} {'Dask':>12} {'dtask':>12} {'dtask vs Dask':>14}"]
    rows = []
    for key, label, unit, lower in ROWS:
        d, t = by.get("dask", {}).get(key), by.get("dtask", {}).get(key)
        if d is None and t is None:
            continue  # not run (--workloads)
        ratio = None
        if d and t:
            ratio = d / t if lower else t / d
        rows.append({"workload": label, "key": key, "unit": unit, "dask": d, "dtask": t,
                     "speedup": ratio})
        fmt = (lambda v: "MISSING" if v is None else f"{v:,.3f}" if v < 100 else f"{v:,.0f}")
        lines.append(f"{label:<26} {unit:<8} {fmt(d):>12} {fmt(t):>12} "
                     f"{'' if ratio is None else f'{ratio:.1f}x faster':>14}")
    return "\n".join(lines), rows


def markdown(path):
    """The table of a JSON result file, in Markdown (for docs/python.md)."""
    with open(path) as f:
        doc = json.load(f)
    out = ["| workload | unit | Dask | dtask | dtask vs Dask |", "|---|---|---:|---:|---:|"]
    for r in doc["table"]:
        fmt = (lambda v: "missing" if v is None else f"{v:,.3f}" if v < 100 else f"{v:,.0f}")
        sp = "" if r["speedup"] is None else f"{r['speedup']:.1f}x faster"
        out.append(f"| {r['workload']} | {r['unit']} | {fmt(r['dask'])} | {fmt(r['dtask'])} | {sp} |")
    return "\n".join(out)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--markdown":
        print(markdown(sys.argv[2]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", choices=["dask", "dtask"])
    ap.add_argument("--json")
    ap.add_argument("--workloads", type=lambda v: set(v.split(",")),
                    help="comma list of: collections, delayed, map, delayed_100k, map_100k, "
                         "tasks_from_tasks, latency, actor_call (default: all)")
    a = ap.parse_args()
    runs = []
    ref = reference(sizes(a.scale)) if a.workloads is None or "collections" in a.workloads else None
    for system in ("dask", "dtask"):
        if a.only and system != a.only:
            continue
        try:
            __import__("distributed" if system == "dask" else "dtask")
        except ImportError as e:
            print(f"MISSING: {system} cannot be imported ({e}); its column stays empty")
            continue
        print(f"== {system}", flush=True)
        t0 = time.perf_counter()
        runs.append(run(system, a, ref))
        print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    text, rows = table(runs)
    print(f"\nPython front end, {a.workers} workers x {a.threads} threads, scale {a.scale}\n")
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"scale": a.scale, "runs": runs, "table": rows,
                       "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}},
                      f, indent=1)
    if not any(r["system"] == "dtask" for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
