"""LocalCluster's management calls, as Dask's: n_workers=0 then scale,
scale down (results moved first), adapt, workers, status, get_client,
scheduler_info, and dask.config keys read as Dask reads them."""
import os
import signal
import time

import dask
import pytest

import dtask
from dtask.cluster import Status


def slow(x, t):
    time.sleep(t)
    return x


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def wait_until(pred, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def test_scale_from_zero_and_down():
    with dtask.LocalCluster(n_workers=0, threads_per_worker=1, dashboard_address=None) as lc:
        assert lc.status == Status.running and lc.workers == {}
        with dtask.Client(lc) as c:
            assert c.scheduler_info()["n_workers"] == 0
            lc.scale(2)
            assert len(lc.workers) == 2 and c.scheduler_info()["n_workers"] == 2
            # a result held by the newest worker survives scaling down to one
            newest = list(lc.workers)[-1]
            f = c.submit(slow, 7, 0, workers=[newest], pure=False)
            assert f.result(timeout=30) == 7
            lc.scale(1)
            assert list(lc.workers) == ["local-worker-0"]
            assert c.scheduler_info()["n_workers"] == 1
            assert f.result(timeout=30) == 7 and c.gather(f) == 7
            lc.scale(cores=2)  # threads_per_worker=1: two workers
            assert len(lc.workers) == 2 and "local-worker-2" in lc.workers  # names never reused
            lc.scale(0)
            assert lc.workers == {} and wait_until(lambda: c.scheduler_info()["n_workers"] == 0)
            with pytest.raises(ValueError):
                lc.scale(-1)
    assert lc.status == Status.closed


def test_adapt_up_and_down():
    with dtask.LocalCluster(n_workers=0, threads_per_worker=1, dashboard_address=None) as lc:
        ad = lc.adapt(minimum=0, maximum=2, interval="100ms", wait_count=2)
        with dtask.Client(lc) as c:
            fs = c.map(slow, range(6), [0.3] * 6, pure=False)
            assert c.gather(fs) == list(range(6))  # ran: workers were added for the work
            assert wait_until(lambda: c.scheduler_info()["n_workers"] == 0, 30), "not scaled down"
        ad.stop()
        with pytest.raises(ValueError):
            lc.adapt(minimum=3, maximum=1)


def test_cluster_views(cluster):
    info = cluster.scheduler_info()
    assert info["n_workers"] == 2 and len(cluster.workers) == 2
    assert {w.pid for w in cluster.workers.values()} == set(cluster.worker_pids)
    with dtask.Client(cluster) as c:
        assert cluster.get_client() is c
        assert cluster.get_client().submit(slow, 3, 0).result() == 3
    assert isinstance(cluster.get_logs(), dict)


def test_processes_false_says_why():
    # one in-process worker only (test_inproc.py tests processes=False)
    with pytest.raises(ValueError, match="processes=False"):
        dtask.LocalCluster(processes=False, n_workers=2)


def test_dask_config_allowed_failures():
    # allowed-failures 0: the first worker death fails the task (KilledWorker)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with dtask.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as lc, \
                dtask.Client(lc) as c:
            with pytest.raises(dtask.KilledWorker):
                c.submit(die, pure=False).result(timeout=60)


def test_dask_config_memory_thresholds_reach_workers():
    # target/spill off and pause at 1% of 64 MiB: the worker pauses at once
    cfg = {"distributed.worker.memory.target": False, "distributed.worker.memory.spill": False,
           "distributed.worker.memory.pause": 0.01}
    with dask.config.set(cfg):
        with dtask.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None,
                                memory_limit="64MiB") as lc, dtask.Client(lc) as c:
            assert wait_until(lambda: next(iter(c.scheduler_info()["workers"].values()))
                              ["status"] == "paused", 20)


def test_dashboard_link_follows_dask_config(monkeypatch):
    # Dask's distributed.dashboard.link (set behind Jupyter's proxy) shapes
    # LocalCluster.dashboard_link as it does Dask's; the token stays
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    with dtask.LocalCluster(n_workers=0) as lc:
        raw = lc._c.dashboard
        port = int(raw.split("//")[1].split("/")[0].rsplit(":", 1)[1])
        assert lc.dashboard_link == raw  # Dask's default template: unchanged
        with dask.config.set({"distributed.dashboard.link": "/user/{JUPYTERHUB_USER}/proxy/{port}/status"}):
            link = lc.dashboard_link
        assert link.split("?")[0] == "/user/alice/proxy/%d/status" % port, link
        if "?" in raw:
            assert link.endswith("?" + raw.split("?", 1)[1])
