"""Tasks that launch tasks: worker_client, get_client + secede/rejoin,
fire_and_forget, get_worker, Reschedule, futures that outlive their task.
A dedicated LocalCluster of 2 workers x 1 thread: there, a recursive
computation deadlocks unless waiting tasks hand their thread back."""

import os
import signal
import time

import pytest

import dtask
from dtask import (Reschedule, fire_and_forget, get_client, get_worker, rejoin, secede,
                   worker_client)


@pytest.fixture(scope="module")
def cluster1():
    with dtask.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as c:
        yield c


@pytest.fixture()
def client1(cluster1):
    with dtask.Client(cluster1) as c:
        yield c


def fib_wc(n):
    if n < 2:
        return n
    with worker_client() as client:
        a = client.submit(fib_wc, n - 1)
        b = client.submit(fib_wc, n - 2)
        a, b = client.gather([a, b])
    return a + b


def fib_gc(n):
    if n < 2:
        return n
    client = get_client()
    a = client.submit(fib_gc, n - 1)
    b = client.submit(fib_gc, n - 2)
    secede()
    a, b = client.gather([a, b])
    rejoin()
    return a + b


def fib_auto(n):  # no explicit secede: result() secedes while it waits
    if n < 2:
        return n
    client = get_client()
    a = client.submit(fib_auto, n - 1)
    b = client.submit(fib_auto, n - 2)
    return a.result() + b.result()


def test_fib_worker_client(client1):
    assert client1.submit(fib_wc, 20).result(timeout=120) == 6765


def test_fib_get_client_secede_rejoin(client1):
    assert client1.submit(fib_gc, 20).result(timeout=120) == 6765


def test_fib_automatic_secede(client1):
    assert client1.submit(fib_auto, 15).result(timeout=120) == 610


def inc(x):
    return x + 1


def fan_out(n):
    client = get_client()
    futs = client.map(inc, range(n), pure=False)
    return sum(client.gather(futs))


def test_fan_out_10000(client1):
    assert client1.submit(fan_out, 10000, pure=False).result(timeout=240) == 10000 * 10001 // 2


def spawn(n):
    client = get_client()
    return [client.submit(inc, 100 + i, pure=False) for i in range(n)]


def test_returned_futures_known_at_once(client1):
    # the subtasks travel on the worker client's connection, the parent's
    # result on the worker's: without a round trip on the first before the
    # result is reported, the scheduler could hear this client want the
    # subtasks' keys first ("key is not known": ~1 in 3 here, before)
    for _ in range(100):
        futs = client1.submit(spawn, 5, pure=False).result(timeout=60)
        assert client1.gather(futs) == [101, 102, 103, 104, 105]


def test_subtasks_outlive_parent(client1):
    parent = client1.submit(spawn, 5, pure=False)
    futs = parent.result(timeout=60)
    assert all(isinstance(f, dtask.Future) for f in futs)
    time.sleep(0.3)  # the parent finished: its subtasks are still there
    assert client1.gather(futs) == [101, 102, 103, 104, 105]
    del parent
    # the client's own futures keep them after the parent result is gone
    assert client1.submit(sum, futs).result(timeout=60) == 515


def slow_inc(x):
    time.sleep(0.05)
    return x + 1


def slow_parent(path, n):
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    client = get_client()
    return sum(client.gather(client.map(slow_inc, range(n))))


def test_kill_parent_worker(client1, cluster1, tmp_path):
    path = str(tmp_path / "pid")
    fut = client1.submit(slow_parent, path, 40, pure=False)
    pid = None
    deadline = time.monotonic() + 30
    while pid is None and time.monotonic() < deadline:
        if os.path.exists(path):
            txt = open(path).read().split()
            pid = int(txt[0]) if txt else None
        time.sleep(0.02)
    assert pid
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)  # the worker process (its nanny restarts it)
    assert fut.result(timeout=120) == 40 * 41 // 2
    client1.wait_for_workers(2, timeout=30)


def write_later(path, delay):
    time.sleep(delay)
    with open(path, "w") as f:
        f.write("done")
    return 1


def test_fire_and_forget_after_client_closed(cluster1, tmp_path):
    path = str(tmp_path / "ff")
    c = dtask.Client(cluster1, set_as_default=False)
    fut = c.submit(write_later, path, 0.5, pure=False)
    fire_and_forget(fut)
    del fut
    c.close()
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert open(path).read() == "done"


def ff_from_task(path):
    client = get_client()
    fire_and_forget(client.submit(write_later, path, 0.3, pure=False))
    return "submitted"


def test_fire_and_forget_from_task(client1, tmp_path):
    path = str(tmp_path / "ff2")
    assert client1.submit(ff_from_task, path, pure=False).result(timeout=30) == "submitted"
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert open(path).read() == "done"


def resched(path):
    with open(path, "a") as f:
        f.write("x")
    if os.path.getsize(path) == 1:
        raise Reschedule()
    return os.path.getsize(path)


def test_reschedule_runs_again(client1, tmp_path):
    path = str(tmp_path / "r")
    assert client1.submit(resched, path, pure=False).result(timeout=60) == 2


def where():
    w = get_worker()
    return w.address, w.name, w.nthreads, w.scheduler.address


def test_get_worker_inside_and_outside(client1, cluster1):
    addr, name, nthreads, sched = client1.submit(where, pure=False).result(timeout=30)
    assert nthreads == 1
    assert addr in client1.scheduler_info()["workers"]
    assert name
    assert sched.endswith(cluster1.scheduler_address.split(":")[-1])
    with pytest.raises(ValueError, match="No worker found"):
        get_worker()
    assert get_client() is client1  # outside a task: the default client
