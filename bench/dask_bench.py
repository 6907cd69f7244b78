"""Dask Distributed's side of the benchmark: the workloads of workloads.py on
LocalCluster(n_workers, threads_per_worker, processes=True).

    .venv/bin/python bench/dask_bench.py [--scale 1] [--workers 2] [--threads 1]
                                         [--queuing on|off] [--json out.json]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import dask
import distributed
import psutil
from distributed import Client, LocalCluster, wait

sys.path.insert(0, os.path.dirname(__file__))
from workloads import Report, median_p99, sizes, timed  # noqa: E402


def inc(x):
    return x + 1


def add(a, b):
    return a + b


class Counter:
    """The actor of the actor_call workload."""

    n = 0

    def increment(self):
        self.n += 1
        return self.n


def make_bytes(n):
    return b"\x07" * n


def byte_len(b):
    return len(b)


def page_sum(b):
    return sum(b[::4096])  # one byte per 4 KiB page: every page is read


def tree(client, leaves):
    fs = client.map(inc, range(leaves), pure=False)
    while len(fs) > 1:
        fs = [client.submit(add, fs[i], fs[i + 1], pure=False) for i in range(0, len(fs), 2)]
    return fs[0].result()


def chain(client, n):
    x = client.submit(inc, 0, pure=False)
    for _ in range(n - 1):
        x = client.submit(inc, x, pure=False)
    return x.result()


def scheduler_memory(n, workers, threads, rep):
    """RSS growth of a separate `dask scheduler` process holding n results."""
    with tempfile.TemporaryDirectory() as d:
        sfile = os.path.join(d, "s.json")
        dask_bin = os.path.join(os.path.dirname(sys.executable), "dask")
        env = dict(os.environ, DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION=os.environ.get(
            "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION", "1.1"))
        sched = subprocess.Popen([dask_bin, "scheduler", "--port", "0", "--no-dashboard",
                                  "--scheduler-file", sfile], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        work = subprocess.Popen([dask_bin, "worker", "--scheduler-file", sfile, "--nworkers",
                                 str(workers), "--nthreads", str(threads), "--no-dashboard"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(600):
                if os.path.exists(sfile):
                    break
                time.sleep(0.05)
            client = Client(scheduler_file=sfile)
            client.wait_for_workers(workers, timeout=60)
            proc = psutil.Process(sched.pid)
            client.submit(inc, 1).result()
            base = proc.memory_info().rss
            fs = client.map(inc, range(n), pure=False)
            wait(fs)
            time.sleep(0.5)
            held = proc.memory_info().rss
            rep.add(f"sched_mem_{n}", (held - base) / n, "B/task", "scheduler RSS growth per task held")
            del fs
            for _ in range(200):
                if not client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)):
                    break
                time.sleep(0.05)
            time.sleep(1.5)  # as long as dtask's bench waits
            rep.add(f"sched_mem_{n}_released", (proc.memory_info().rss - base) / n, "B/task",
                    "after every future is released")
            client.close()
        finally:
            for p in (work, sched):
                p.terminate()
            for p in (work, sched):
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--queuing", choices=["on", "off"], default="on")
    ap.add_argument("--skip-large", action="store_true", help="skip the 1,000,000-task map")
    ap.add_argument("--json")
    a = ap.parse_args()
    sz = sizes(a.scale)
    sat = "1.1" if a.queuing == "on" else "inf"
    os.environ["DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION"] = sat
    dask.config.set({"distributed.scheduler.worker-saturation": float(sat)})
    name = "dask" if a.queuing == "on" else "dask-noq"
    rep = Report(name, distributed.__version__, a.workers, a.threads)

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=a.workers, threads_per_worker=a.threads, processes=True,
                           dashboard_address=None)
    client = Client(cluster)
    client.wait_for_workers(a.workers)
    rep.add("cluster_start", (time.perf_counter() - t0) * 1e3, "ms")

    for i in range(50):
        client.submit(inc, i, pure=False).result()
    samples = []
    for i in range(sz["latency_calls"]):
        dt, _ = timed(lambda: client.submit(inc, i, pure=False).result())
        samples.append(dt)
    med, p99 = median_p99(samples)
    rep.add("latency_median", med * 1e6, "us")
    rep.add("latency_p99", p99 * 1e6, "us")

    # actor round trip: client -> the actor's worker -> client, one at a time
    counter = client.submit(Counter, actor=True).result()
    for _ in range(20):
        counter.increment().result()
    samples = []
    for _ in range(sz["actor_calls"]):
        dt, _ = timed(lambda: counter.increment().result())
        samples.append(dt)
    assert counter.n == 20 + sz["actor_calls"]
    rep.add("actor_call_median", median_p99(samples)[0] * 1e6, "us")
    del counter

    for key, label in (("map_small", "map_small"), ("map_large", "map_large")):
        if key == "map_large" and a.skip_large:
            continue
        n = sz[key]
        dt, out = timed(lambda: client.gather(client.map(inc, range(n), pure=False)))
        assert out[-1] == n
        rep.add(label, n / dt, "tasks/s", f"{n} tasks")

    leaves = sz["tree_leaves"]
    dt, out = timed(lambda: tree(client, leaves))
    assert out == leaves * (leaves + 1) // 2
    rep.add("tree", (2 * leaves - 1) / dt, "tasks/s", f"{leaves} leaves")

    dt, out = timed(lambda: chain(client, sz["chain"]))
    assert out == sz["chain"]
    rep.add("chain", sz["chain"] / dt, "tasks/s", f"{sz['chain']} tasks")

    if a.workers >= 2:
        ws = list(client.scheduler_info()["workers"])
        big = client.submit(make_bytes, sz["transfer_bytes"], workers=[ws[0]], pure=False)
        wait(big)
        dt, out = timed(lambda: client.submit(page_sum, big, workers=[ws[1]], pure=False).result())
        assert out == 7 * ((sz["transfer_bytes"] + 4095) // 4096)
        rep.add("transfer", sz["transfer_bytes"] / dt / 1e6, "MB/s", "every page read")
        del big
        for name in ("transfer_256m", "transfer_1g"):
            nb = sz[name]
            big = client.submit(make_bytes, nb, workers=[ws[0]], pure=False)
            wait(big)
            dt, out = timed(lambda: client.submit(page_sum, big, workers=[ws[1]], pure=False).result())
            assert out == 7 * ((nb + 4095) // 4096)
            rep.add(name, nb / dt / 1e6, "MB/s", "moved, every page read")
            del big

    n = sz["submit_tasks"]
    t0 = time.perf_counter()
    fs = client.map(inc, range(n), pure=False)
    # a high-priority follower returns as soon as the graph is accepted
    client.submit(inc, -1, pure=False, priority=1000).result()
    rep.add("submit_graph", time.perf_counter() - t0, "s", f"{n} tasks accepted")
    del fs

    client.close()
    cluster.close()
    scheduler_memory(sz["memory_tasks"], a.workers, a.threads, rep)
    rep.write(a.json)


if __name__ == "__main__":
    main()
