"""Diagnostics and failure handling in Dask's names (issue 15):
performance_report, MemorySampler, span, print/warn from tasks,
dask_serialize registration, dask.annotate for collections, fifo_timeout,
Future.retry / Client.retry, recreate_error_locally, forward_logging, and
the calls refused with a clear error."""

import logging
import os
import re
import time
import warnings

import dask
import pytest

import dtask
from dtask.diagnostics import MemorySampler
from dtask.protocol import dask_deserialize, dask_serialize


@pytest.fixture(scope="module")
def client():
    with dtask.LocalCluster(n_workers=2, threads_per_worker=2, dashboard_address=None) as lc, \
            dtask.Client(lc) as c:
        c.wait_for_workers(2, timeout=30)
        yield c


def _inc(x):
    return x + 1


def _poll(cond, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


# ---------------------------------------------------------------- report


def test_performance_report_holds_the_block(client, tmp_path):
    before = client.submit(_inc, -100).result()  # not in the block
    path = tmp_path / "report.html"
    with dtask.performance_report(filename=str(path)):
        futs = client.map(_inc, range(30))
        assert client.gather(futs) == list(range(1, 31))
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    for f in futs:
        assert f.key in page
    assert len(re.findall(r'<rect class="task"', page)) == 30
    assert "_inc" in page and 'id="functions"' in page and 'id="workers"' in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # standalone
    assert "https://" not in page
    assert before == -99
    # the browser test (tests/browser_test.c) loads a report written here
    out = os.environ.get("DTASK_REPORT_OUT")
    if out:
        with open(out, "w") as f:
            f.write(page)


def test_memory_sampler(client):
    # the workers report their memory with their heartbeats (the first one
    # within a second or so of starting)
    assert _poll(lambda: all(w["metrics"]["memory"] > 0
                             for w in client.scheduler_info()["workers"].values()))
    ms = MemorySampler()
    with ms.sample("run", client=client, interval=0.05):
        client.gather(client.map(lambda i: bytes(1 << 20), range(8)))
        time.sleep(0.2)
    with ms.sample("managed", client=client, measure="managed", interval=0.05):
        held = client.map(lambda i: bytes(1 << 20), range(4), pure=False)
        dtask.wait(held)
        # the workers report their bytes with their heartbeats
        _poll(lambda: max((m for _, m in ms.samples["managed"]), default=0) >= 4 << 20)
    df = ms.to_pandas()
    assert list(df.columns) == ["run", "managed"]
    assert len(ms.samples["run"]) >= 2
    assert all(m > 0 for _, m in ms.samples["run"])
    assert max(m for _, m in ms.samples["managed"]) >= 4 << 20
    aligned = ms.to_pandas(align=True)
    assert len(aligned) >= 2
    with pytest.raises(ValueError):
        with ms.sample("bad", measure="nope"):
            pass


# ---------------------------------------------------------------- print, warn


def _prints(tag):
    dtask.print("from-task", tag, sep=":")
    return tag


def _warns(tag):
    dtask.warn(f"careful-{tag}", RuntimeWarning)
    return tag


def test_print_from_task_reaches_client(client, capsys):
    # capsys: the client process's sys.stdout only, not the workers' output
    tag = "p%d" % os.getpid()
    assert client.submit(_prints, tag, pure=False).result() == tag
    seen = []

    def got():
        seen.append(capsys.readouterr().out)
        return f"from-task:{tag}\n" in "".join(seen)

    assert _poll(got)


def test_warn_from_task_reaches_client(client):
    tag = "w%d" % os.getpid()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        client.submit(_warns, tag, pure=False).result()
        assert _poll(lambda: any(f"careful-{tag}" in str(w.message) for w in rec))
    w = next(w for w in rec if f"careful-{tag}" in str(w.message))
    assert w.category is RuntimeWarning


def test_print_outside_a_task_is_plain_print(capsys):
    dtask.print("plain", 1)
    assert capsys.readouterr().out == "plain 1\n"


# ---------------------------------------------------------------- dask_serialize

SER_CALLS = []


class Blob:
    def __init__(self, data):
        self.data = data

    def __reduce__(self):  # plain pickling must not be used for it
        raise TypeError("Blob must go through dask_serialize")


@dask_serialize.register(Blob)
def _ser_blob(b):
    SER_CALLS.append(len(b.data))
    return {"n": len(b.data)}, [b.data]


@dask_deserialize.register(Blob)
def _deser_blob(header, frames):
    assert header["n"] == len(frames[0])
    return Blob(bytes(frames[0]))


def _blob_len(b):
    assert type(b).__name__ == "Blob"
    return len(b.data)


def _make_blob(n):
    return Blob(b"z" * n)


def test_dask_serialize_is_used(client):
    n0 = len(SER_CALLS)
    assert client.submit(_blob_len, Blob(b"abcd")).result() == 4
    assert SER_CALLS[n0:] == [4]
    fut = client.scatter(Blob(b"xyz"))
    assert client.submit(_blob_len, fut).result() == 3
    back = fut.result()
    assert isinstance(back, Blob) and back.data == b"xyz"
    made = client.submit(_make_blob, 7).result()  # serialized on the worker
    assert isinstance(made, Blob) and made.data == b"z" * 7


# ---------------------------------------------------------------- annotations


def _stamp(tag):
    time.sleep(0.02)
    return (tag, time.time())


def _block(s):
    time.sleep(s)
    return s


def test_annotate_priority_orders_a_collection():
    with dtask.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as lc, \
            dtask.Client(lc, set_as_default=False) as c:
        c.wait_for_workers(1, timeout=30)
        # slow tasks first: the scheduler then sends the worker one task
        # beyond its thread (its capacity follows the mean task time)
        c.gather(c.map(_block, [0.05] * 4, pure=False))

        def run(prio):
            blocker = c.submit(_block, 0.5, pure=False)
            time.sleep(0.1)  # the worker's only thread is busy from now on
            lo = [dask.delayed(_stamp, pure=False)("lo") for _ in range(6)]
            with dask.annotate(priority=prio):
                hi = [dask.delayed(_stamp, pure=False)("hi") for _ in range(6)]
            out = c.gather(c.compute(lo + hi))  # lo first in submission order
            blocker.result()
            return [t for t, _ in sorted(out, key=lambda r: r[1])]

        with_prio = run(10)
        assert with_prio[-1] == "lo" and with_prio[:6].count("hi") >= 5, with_prio
        without = run(0)
        assert without[:6].count("lo") >= 5, without  # the control: FIFO


def _flaky_file(path):
    n = int(open(path).read()) if os.path.exists(path) else 0
    with open(path, "w") as f:
        f.write(str(n + 1))
    if n < 2:
        raise RuntimeError(f"flaky {n}")
    return n


def test_annotate_retries_and_workers(client, tmp_path):
    path = str(tmp_path / "count")
    with dask.annotate(retries=2):
        d = dask.delayed(_flaky_file, pure=False)(path)
    assert client.compute(d).result() == 2  # failed twice, retried
    w = sorted(client.scheduler_info()["workers"])[1]
    with dask.annotate(workers=[w]):
        ds = [dask.delayed(_inc, pure=False)(i) for i in range(6)]
    futs = client.compute(ds)
    assert [f.result() for f in futs] == list(range(1, 7))
    held = client.who_has(futs)
    assert all(held[f.key] == [w] for f in futs), held


def test_fifo_timeout_accepted_and_span(client):
    assert client.submit(_inc, 1, fifo_timeout="100ms").result() == 2
    assert client.map(_inc, [1, 2], fifo_timeout="1s") and True
    with dtask.span("outer") as sid:
        assert isinstance(sid, str) and len(sid) > 8
        assert dask.get_annotations()["span"]["name"] == ("outer",)
        with dtask.span("inner") as sid2:
            ann = dask.get_annotations()["span"]
            assert ann["name"] == ("outer", "inner") and ann["ids"] == (sid, sid2)
        assert client.compute(dask.delayed(_inc)(5)).result() == 6
    assert "span" not in dask.get_annotations()


# ---------------------------------------------------------------- retry, recreate


def _fails_once(path, x):
    if not os.path.exists(path):
        open(path, "w").close()
        raise ValueError("first time")
    return x * 10


def test_future_retry(client, tmp_path):
    f = client.submit(_fails_once, str(tmp_path / "a"), 4)
    with pytest.raises(ValueError, match="first time"):
        f.result()
    assert f.status == "error"
    f.retry()
    assert f.result(timeout=30) == 40
    # a dependent that failed because its dependency failed: both run again
    g = client.submit(_fails_once, str(tmp_path / "b"), 5)
    h = client.submit(_inc, g)
    with pytest.raises(ValueError):
        h.result()
    client.retry([h])
    assert h.result(timeout=30) == 51
    assert g.result() == 50
    f.retry()  # not failed: nothing happens
    assert f.result() == 40


def _div(a, b):
    return a / b


def _check(x):
    raise KeyError(f"bad value {x}")


def test_recreate_error_locally(client):
    f = client.submit(_div, 1, 0)
    with pytest.raises(ZeroDivisionError):
        f.result()
    with pytest.raises(ZeroDivisionError):
        client.recreate_error_locally(f)
    x = client.submit(_inc, 41)
    y = client.submit(_check, x)
    z = client.submit(_inc, y)  # fails because y failed: y's function is run
    with pytest.raises(KeyError, match="bad value 42"):
        client.recreate_error_locally(z)
    ok = client.submit(_inc, 1)
    ok.result()
    with pytest.raises(ValueError, match="did not fail"):
        client.recreate_error_locally(ok)
    # a Dask collection's failed node
    d = dask.delayed(_div)(dask.delayed(_inc)(1), 0)
    fd = client.compute(d)
    with pytest.raises(ZeroDivisionError):
        client.recreate_error_locally(fd)


# ---------------------------------------------------------------- logging, refused


def _logs(tag):
    logging.getLogger("dtask.test.fwd").warning("record %s", tag)
    return tag


class _Keep(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_forward_logging(client):
    keep = _Keep()
    lg = logging.getLogger("dtask.test.fwd")
    lg.addHandler(keep)
    try:
        client.forward_logging("dtask.test.fwd", level=logging.INFO)
        tag = "r%d" % os.getpid()
        client.submit(_logs, tag, pure=False).result()
        assert _poll(lambda: any(r.getMessage() == f"record {tag}" for r in keep.records))
        r = next(r for r in keep.records if r.getMessage() == f"record {tag}")
        assert r.levelno == logging.WARNING and r.name == "dtask.test.fwd"
        assert r.process != os.getpid()  # it came from a worker
        client.unforward_logging("dtask.test.fwd")
    finally:
        lg.removeHandler(keep)


def test_refused_with_a_clear_error(client):
    with pytest.raises(NotImplementedError, match="get_task_stream"):
        client.profile()
    with pytest.raises(NotImplementedError, match="client.run"):
        client.benchmark_hardware()


def test_report_opens_in_chromium(client, tmp_path):
    """tests/browser/report.mjs: the report in headless Chromium, network
    blocked: no console errors, every task drawn (skipped without Chromium
    or playwright-core, as tests/browser_test.c is)."""
    import shutil
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = os.path.join(root, "tests", "browser", "report.mjs")
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not (os.access(chromium, os.X_OK) and shutil.which("node") and os.path.exists(
            os.path.join(root, "tests", "browser", "node_modules", "playwright-core"))):
        pytest.skip("needs Chromium, node and tests/browser/node_modules (scripts/test.sh)")
    path = tmp_path / "report.html"
    with dtask.performance_report(filename=str(path)):
        client.gather(client.map(_inc, range(40), pure=False))
        client.submit(_div, 1, 0, pure=False).exception()  # a fresh key: not an earlier test's
    out = subprocess.run(["node", script, str(path), "41"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "41 tasks drawn" in out.stdout


def test_close_waits_for_the_clients_own_threads(client):
    # the threads that ask the scheduler for print/warn events and for a
    # subscribed topic's events stop before the client's C side is freed
    # (a question on its way while close() freed the client corrupted the
    # heap: "malloc(): unsorted double linked list corrupted")
    seen = []
    for _ in range(10):
        c = dtask.Client(client.address, set_as_default=False)
        c.subscribe_topic("close-race", seen.append)
        follower = c._diag_follower.thread
        topic_thread = c._topic_subs["close-race"].thread
        client.log_event("close-race", "x")
        assert follower.is_alive() and topic_thread.is_alive()
        c.close()
        assert not follower.is_alive()
        assert not topic_thread.is_alive()
