"""Issue 19's faults from Python: a task past its deadline (submit's
timeout=), cancel(force=True) of a task that never returns, and a frozen
scheduler (heartbeat_timeout: FutureLost naming the scheduler and the
silence).  Each test has a LocalCluster of its own; processes stopped
with SIGSTOP are continued before the cluster closes."""
import os
import signal
import time

import pytest

import dtask


def forever():
    while True:
        time.sleep(0.1)


def inc(x):
    return x + 1


@pytest.fixture()
def own():
    with dtask.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as lc:
        with dtask.Client(lc, heartbeat_timeout=2) as c:
            yield lc, c


def test_deadline_fails_and_worker_comes_back(own):
    lc, c = own
    f = c.submit(forever, pure=False, timeout=1)
    with pytest.raises(TimeoutError, match="past its deadline of 1 s"):
        f.result(timeout=30)
    # the worker restarted (its nanny): both workers take tasks again
    deadline = time.monotonic() + 30
    while len(c.scheduler_info()["workers"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert c.gather(c.map(inc, range(20), pure=False)) == list(range(1, 21))


def test_cancel_force_then_tasks_run(own):
    lc, c = own
    fs = [c.submit(forever, pure=False) for _ in range(2)]  # both threads busy
    time.sleep(1)
    c.cancel(fs, force=True)
    assert c.gather(c.map(inc, range(50), pure=False)) == list(range(1, 51))


def test_frozen_scheduler_raises_futurelost(own):
    lc, c = own
    f = c.submit(forever, pure=False)
    os.kill(lc.scheduler_pid, signal.SIGSTOP)
    try:
        with pytest.raises(dtask.FutureLost) as ei:
            f.result(timeout=30)
    finally:
        os.kill(lc.scheduler_pid, signal.SIGCONT)
    assert lc.scheduler_address.replace("tcp://", "") in str(ei.value)
    assert "not answered" in str(ei.value)
