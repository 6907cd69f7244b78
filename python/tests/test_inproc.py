"""LocalCluster(processes=False): the scheduler as a child process, one C
worker on a thread of this process running Python tasks on this
interpreter (python/dtask/cluster_inproc.py)."""

import os
import threading
import time

import pytest

import dtask

# read by tasks: mutated by the tests after the functions are defined (a
# worker process would import this module afresh and never see it)
STATE = {"value": 0}


def read_state(key):
    return STATE[key]


def set_state(key, value):
    STATE[key] = value


SLOW_STARTED = threading.Event()  # same process: set by the task, seen by the test


def slow():
    SLOW_STARTED.set()
    time.sleep(0.5)
    STATE.setdefault("slow_done", []).append(os.getpid())
    return 1


def whoami():
    return os.getpid(), dtask.get_worker().name, threading.current_thread() is threading.main_thread()


def inc(x):
    return x + 1


def sum_children(n):
    with dtask.worker_client() as wc:
        return sum(wc.gather(wc.map(inc, range(n))))


@pytest.fixture()
def inproc():
    with dtask.LocalCluster(processes=False, threads_per_worker=2, dashboard_address=None) as cl:
        yield cl


def test_tasks_run_in_this_process(inproc):
    with dtask.Client(inproc, set_as_default=False) as c:
        pid, name, on_main = c.submit(whoami).result(timeout=30)
        assert pid == os.getpid()
        assert name == "local-worker-0"
        assert on_main is False  # a pool thread, not this one
        assert inproc.worker_pids == [os.getpid()]
        assert [w.pid for w in inproc.workers.values()] == [os.getpid()]
        info = c.scheduler_info()
        assert info["n_workers"] == 1
        assert [w["nthreads"] for w in info["workers"].values()] == [2]


def test_submit_map_gather_and_collections(inproc):
    import dask
    import dask.array as da
    import dask.bag as db

    with dtask.Client(inproc, set_as_default=False) as c:
        assert c.submit(inc, 41).result(timeout=30) == 42
        assert c.gather(c.map(inc, range(20))) == list(range(1, 21))
        assert c.submit(lambda x, y: x * y, 6, y=7).result(timeout=30) == 42
        x = da.arange(1000, chunks=100)
        assert c.compute(x.sum()).result(timeout=60) == sum(range(1000))
        b = db.from_sequence(range(10), npartitions=3).map(inc)
        assert c.compute(b.sum()).result(timeout=60) == 55
        d = dask.delayed(inc)(dask.delayed(inc)(1))
        assert c.compute(d).result(timeout=60) == 3
        with pytest.raises(ZeroDivisionError):
            c.submit(lambda: 1 / 0).result(timeout=30)
        assert c.submit(sum_children, 5).result(timeout=60) == 15  # tasks from tasks


def test_tasks_see_this_interpreter(inproc):
    with dtask.Client(inproc, set_as_default=False) as c:
        STATE["value"] = 123  # after read_state was defined (and imported)
        assert c.submit(read_state, "value", pure=False).result(timeout=30) == 123
        STATE["value"] = 456
        assert c.submit(read_state, "value", pure=False).result(timeout=30) == 456
        # and a task's side effects are seen here
        c.submit(set_state, "from_task", 7).result(timeout=30)
        assert STATE["from_task"] == 7


def test_calls_are_still_pickled_as_in_dask(inproc):
    # Dask's client serializes the graph even for in-process workers: an
    # object that cannot be pickled cannot be sent (dtask matches)
    lock = threading.Lock()
    with dtask.Client(inproc, set_as_default=False) as c:
        with pytest.raises(TypeError, match="pickle"):
            c.submit(lambda: lock.locked()).result(timeout=30)


def test_default_is_one_worker_with_a_thread_per_cpu():
    with dtask.Client(processes=False, dashboard_address=None, set_as_default=False) as c:
        assert c.cluster.n_workers == 1
        assert c.cluster.threads_per_worker == (os.cpu_count() or 1)
        ws = list(c.scheduler_info()["workers"].values())
        assert [w["nthreads"] for w in ws] == [os.cpu_count() or 1]
        assert c.submit(os.getpid).result(timeout=30) == os.getpid()


def test_one_in_process_worker_only(inproc):
    with pytest.raises(ValueError, match="process-wide"):
        dtask.LocalCluster(processes=False, n_workers=2, dashboard_address=None)
    with pytest.raises(ValueError, match="already"):  # inproc runs one already
        dtask.LocalCluster(processes=False, dashboard_address=None)
    with pytest.raises(ValueError, match="process-wide"):
        inproc.scale(2)
    with pytest.raises(ValueError, match="processes=True"):
        inproc.adapt(minimum=0, maximum=1)
    with dtask.Client(inproc, set_as_default=False) as c:  # still working
        assert c.submit(inc, 1).result(timeout=30) == 2


def test_close_waits_for_running_tasks_then_another_cluster_starts():
    STATE.pop("slow_done", None)
    SLOW_STARTED.clear()
    cl = dtask.LocalCluster(processes=False, threads_per_worker=1, dashboard_address=None)
    try:
        with dtask.Client(cl, set_as_default=False) as c:
            c.submit(sum_children, 3).result(timeout=60)
            f = c.submit(slow)
            assert SLOW_STARTED.wait(30)  # running on the worker's pool thread now
            cl.close()  # the client still wants f: the task is not cancelled
    finally:
        cl.close()
    assert STATE["slow_done"] == [os.getpid()]  # close returned after the task finished
    assert not any(t.name == "dtask-inproc-worker" for t in threading.enumerate())
    del f
    # the worker's state was reset: a second cluster (new scheduler) works,
    # tasks from tasks included (the task client follows the new scheduler)
    for _ in range(2):
        with dtask.LocalCluster(processes=False, threads_per_worker=2, dashboard_address=None) as cl2:
            with dtask.Client(cl2, set_as_default=False) as c:
                assert c.gather(c.map(inc, range(10))) == list(range(1, 11))
                assert c.submit(sum_children, 4).result(timeout=60) == 10
                assert c.submit(os.getpid).result(timeout=30) == os.getpid()


def test_scale_to_zero_and_back():
    with dtask.LocalCluster(processes=False, n_workers=0, threads_per_worker=2,
                            dashboard_address=None) as cl:
        assert cl.workers == {}
        cl.scale(1)
        with dtask.Client(cl, set_as_default=False) as c:
            assert c.submit(inc, 1).result(timeout=30) == 2
            cl.scale(0)
            assert cl.workers == {}
            deadline = time.monotonic() + 30
            while c.scheduler_info()["n_workers"] != 0:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            cl.scale(1)
            assert c.submit(inc, 2).result(timeout=30) == 3
