"""jobqueue_bench.py -- time from ``cluster.scale(jobs=N)`` to N connected
workers on the local Slurm (scripts/start-slurm.sh), dtask's SLURMCluster
beside dask-jobqueue's, in one run, alternating, same options.

usage: PYTHONPATH=<dtask> .venv/bin/python bench/jobqueue_bench.py [--jobs 1,2,4] [--reps 3]

Prints one line per (system, N): median and min seconds over the
repetitions, and a JSON summary.  Every job is cancelled at the end
(``scancel -n`` on the benchmark's own job names).
"""

import argparse
import json
import statistics
import subprocess
import time
import warnings


def one(system, n, timeout=120):
    name = f"jqbench-{system}"
    opts = dict(cores=1, memory="512MB", processes=1, queue="batch", walltime="00:10:00",
                job_name=name, scheduler_options={"host": "127.0.0.1", "dashboard_address": ":0"})
    if system == "dtask":
        from dtask import Client, SLURMCluster
    else:
        from dask.distributed import Client
        from dask_jobqueue import SLURMCluster
    with SLURMCluster(**opts) as cluster:
        with Client(cluster) as client:
            t0 = time.perf_counter()
            cluster.scale(jobs=n)
            client.wait_for_workers(n, timeout=timeout)
            dt = time.perf_counter() - t0
            # a real task too, so the workers are usable
            assert client.submit(sum, [1, 2, 3]).result() == 6
        cluster.scale(0)
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", default="1,2,4")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    res = {}
    try:
        for n in [int(x) for x in a.jobs.split(",")]:
            for _ in range(a.reps):
                for system in ("dtask", "dask-jobqueue"):
                    res.setdefault(f"{system} jobs={n}", []).append(one(system, n))
                    time.sleep(1)  # the previous jobs leave the node
    finally:
        for system in ("dtask", "dask-jobqueue"):
            subprocess.run(["scancel", "-n", f"jqbench-{system}"], capture_output=True)
    for k, v in res.items():
        print(f"{k:28s} median {statistics.median(v):6.2f} s  min {min(v):6.2f} s  "
              f"({', '.join(f'{x:.2f}' for x in v)})")
    print(json.dumps({k: {"median_s": round(statistics.median(v), 3), "min_s": round(min(v), 3)}
                      for k, v in res.items()}))


if __name__ == "__main__":
    main()
