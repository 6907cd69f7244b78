"""Python workers under the nanny: killed mid-graph, results stay right."""

import os
import signal
import time

import dask
import pytest

import dtask


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def slow_inc(i):
    time.sleep(0.05)
    return i + 1


def suicide(x):
    os.kill(os.getpid(), signal.SIGKILL)


def test_worker_killed_mid_graph_results_still_correct():
    with dtask.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as lc, \
            dtask.Client(lc, set_as_default=False) as client:
        leaves = [dask.delayed(slow_inc)(i) for i in range(80)]
        while len(leaves) > 1:
            leaves = [dask.delayed(sum)(leaves[i:i + 2]) for i in range(0, len(leaves), 2)]
        total = leaves[0]
        fut = client.compute(total)
        time.sleep(0.8)
        assert not fut.done()
        victims = children(lc.worker_pids[0])  # the nanny's child is the worker
        assert len(victims) == 1
        os.kill(victims[0], signal.SIGKILL)
        assert fut.result(timeout=60) == sum(range(1, 81))
        # the nanny started a new worker process
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and children(lc.worker_pids[0]) in ([], victims):
            time.sleep(0.05)
        assert children(lc.worker_pids[0]) not in ([], victims)


def test_task_that_kills_its_workers_fails_with_killed_worker():
    with dtask.LocalCluster(n_workers=2, threads_per_worker=1, allowed_failures=1,
                            dashboard_address=None) as lc, \
            dtask.Client(lc, set_as_default=False) as client:
        f = client.submit(suicide, 1)
        with pytest.raises(dtask.KilledWorker, match="suicide"):
            f.result(timeout=60)
        assert client.submit(slow_inc, 1).result(timeout=30) == 2


def exits_with(code):
    os._exit(code)


@pytest.mark.parametrize("code", [0, 3])
def test_task_calling_exit_is_a_dead_worker_not_a_closed_one(code):
    # 0 and 3 are the statuses a worker uses to tell its nanny "asked to
    # close" and "giving up": a task calling os._exit with them must not
    # make the nanny stop; the worker is restarted and the task reported
    with dtask.LocalCluster(n_workers=1, threads_per_worker=1, allowed_failures=1,
                            dashboard_address=None) as lc, \
            dtask.Client(lc, set_as_default=False) as client:
        nanny = lc.worker_pids[0]
        f = client.submit(exits_with, code)
        with pytest.raises(dtask.KilledWorker, match="exits_with"):
            f.result(timeout=60)
        assert client.submit(slow_inc, 1).result(timeout=30) == 2
        assert children(nanny)  # the same nanny, with a worker again
