"""Ray's side of the benchmark: the workloads of workloads.py that have a
Ray equivalent (remote functions, ray.get, object refs as arguments), on a
local Ray with as many CPUs as dtask and Dask get workers x threads.

    .venv/bin/python bench/ray_bench.py [--scale 1] [--workers 2] [--threads 1] [--json out.json]
"""

import argparse
import os
import sys
import time

import ray

sys.path.insert(0, os.path.dirname(__file__))
from workloads import Report, median_p99, sizes, timed  # noqa: E402


@ray.remote
def inc(x):
    return x + 1


@ray.remote
def add(a, b):
    return a + b


@ray.remote
def make_bytes(n):
    return b"\x07" * n


@ray.remote
def byte_len(b):
    return len(b)


@ray.remote
def page_sum(b):
    return sum(b[::4096])  # one byte per 4 KiB page: every page is read


@ray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def increment(self):
        self.n += 1
        return self.n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    sz = sizes(a.scale)
    rep = Report("ray", ray.__version__, a.workers, a.threads)
    cpus = a.workers * a.threads

    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    ray.get([inc.remote(i) for i in range(cpus)])  # the worker processes are up
    rep.add("cluster_start", (time.perf_counter() - t0) * 1e3, "ms")

    for i in range(50):
        ray.get(inc.remote(i))
    samples = []
    for i in range(sz["latency_calls"]):
        dt, _ = timed(lambda: ray.get(inc.remote(i)))
        samples.append(dt)
    med, p99 = median_p99(samples)
    rep.add("latency_median", med * 1e6, "us")
    rep.add("latency_p99", p99 * 1e6, "us")

    # actor round trip: driver -> the actor's process -> driver, one at a time
    counter = Counter.remote()
    for _ in range(20):
        ray.get(counter.increment.remote())
    samples = []
    for _ in range(sz["actor_calls"]):
        dt, _ = timed(lambda: ray.get(counter.increment.remote()))
        samples.append(dt)
    assert ray.get(counter.increment.remote()) == 21 + sz["actor_calls"]
    rep.add("actor_call_median", median_p99(samples)[0] * 1e6, "us")
    del counter

    for key in ("map_small", "map_large"):
        if key == "map_large" and a.skip_large:
            continue
        n = sz[key]
        dt, out = timed(lambda: ray.get([inc.remote(i) for i in range(n)]))
        assert out[-1] == n
        rep.add(key, n / dt, "tasks/s", f"{n} tasks")

    leaves = sz["tree_leaves"]

    def tree():
        fs = [inc.remote(i) for i in range(leaves)]
        while len(fs) > 1:
            fs = [add.remote(fs[i], fs[i + 1]) for i in range(0, len(fs), 2)]
        return ray.get(fs[0])

    dt, out = timed(tree)
    assert out == leaves * (leaves + 1) // 2
    rep.add("tree", (2 * leaves - 1) / dt, "tasks/s", f"{leaves} leaves")

    def chain():
        x = inc.remote(0)
        for _ in range(sz["chain"] - 1):
            x = inc.remote(x)
        return ray.get(x)

    dt, out = timed(chain)
    assert out == sz["chain"]
    rep.add("chain", sz["chain"] / dt, "tasks/s", f"{sz['chain']} tasks")

    big = make_bytes.remote(sz["transfer_bytes"])
    ray.wait([big])
    dt, out = timed(lambda: ray.get(page_sum.remote(big)))
    assert out == 7 * ((sz["transfer_bytes"] + 4095) // 4096)
    rep.add("transfer", sz["transfer_bytes"] / dt / 1e6, "MB/s", "one node: shared-memory object store")
    del big
    for name in ("transfer_256m", "transfer_1g"):
        nb = sz[name]
        big = make_bytes.remote(nb)
        ray.wait([big])
        dt, out = timed(lambda: ray.get(page_sum.remote(big)))
        assert out == 7 * ((nb + 4095) // 4096)
        rep.add(name, nb / dt / 1e6, "MB/s", "moved, every page read")
        del big

    n = sz["submit_tasks"]
    t0 = time.perf_counter()
    fs = [inc.remote(i) for i in range(n)]
    ray.get(inc.remote(-1))
    rep.add("submit_graph", time.perf_counter() - t0, "s", f"{n} tasks accepted")
    del fs
    ray.shutdown()
    rep.write(a.json)


if __name__ == "__main__":
    main()
