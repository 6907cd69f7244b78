"""Futures: arguments, errors, cancellation, waiting, as_completed, data."""

import os
import threading
import time

import numpy as np
import pytest

import dtask
from dtask import cfunc


def inc(x):
    return x + 1


def add(x, y=0, *rest):
    return x + y + sum(rest)


def total(xs, extra=None):
    return sum(xs) + sum((extra or {}).values())


class MyError(Exception):
    def __init__(self, what, code):
        super().__init__(what, code)
        self.code = code


def fail(x):
    raise MyError(f"bad {x}", 42)


def div(x, y):
    return x / y


def slow(x, seconds):
    time.sleep(seconds)
    return x


def test_submit_result(client):
    assert client.submit(inc, 1).result() == 2
    assert client.submit(lambda x, y: x * y, 6, y=7).result() == 42


def test_futures_as_arguments_at_any_depth(client):
    a = client.submit(inc, 1)
    b = client.submit(inc, 10)
    c = client.submit(add, a, y=b)
    assert c.result() == 2 + 11
    d = client.submit(total, [a, b, 100], extra={"k": a})
    assert d.result() == 2 + 11 + 100 + 2
    e = client.submit(add, 1, 2, 3, 4)
    assert e.result() == 10


def test_pure_keys_and_explicit_keys(client):
    a = client.submit(inc, 5)
    b = client.submit(inc, 5)
    assert a.key == b.key and a.key.startswith("inc-")
    c = client.submit(inc, 5, pure=False)
    assert c.key != a.key
    d = client.submit(inc, 7, key="my-key")
    assert d.key == "my-key" and d.result() == 8
    assert client.submit(lambda x: x, 1).key.startswith("lambda-")


def test_exception_is_reraised_with_its_type_and_remote_traceback(client):
    f = client.submit(fail, 3)
    with pytest.raises(MyError) as ei:
        f.result()
    assert ei.value.args == ("bad 3", 42) and ei.value.code == 42
    notes = "".join(getattr(ei.value, "__notes__", []))
    assert "Remote traceback" in notes and "in fail" in notes
    assert f.status == "error"
    assert isinstance(f.exception(), MyError)
    with pytest.raises(ZeroDivisionError):
        client.submit(div, 1, 0).result()


def test_dependent_of_failed_task_raises_the_original_error(client):
    f = client.submit(div, 1, 0)
    g = client.submit(inc, f)
    with pytest.raises(ZeroDivisionError):
        g.result()
    with pytest.raises(ZeroDivisionError):
        client.gather([client.submit(inc, 1), g])


def test_cancel(client):
    f = client.submit(slow, 1, 3, pure=False)
    g = client.submit(inc, f)
    time.sleep(0.2)
    f.cancel()
    with pytest.raises(dtask.CancelledError):
        f.result(timeout=10)
    assert f.status == "cancelled" and f.cancelled()
    with pytest.raises((dtask.CancelledError, dtask.DtaskError)):
        g.result(timeout=10)


def test_result_timeout(client):
    f = client.submit(slow, 1, 2, pure=False)
    t = time.monotonic()
    with pytest.raises(TimeoutError):
        f.result(timeout=0.3)
    assert time.monotonic() - t < 3
    f.cancel()


def test_as_completed_order():
    # a cluster of its own: all three tasks run at once
    with dtask.LocalCluster(n_workers=1, threads_per_worker=3, dashboard_address=None) as lc, \
            dtask.Client(lc, set_as_default=False) as client:
        fs = [client.submit(slow, i, s, pure=False) for i, s in enumerate([1.2, 0.1, 0.6])]
        order = [f.result() for f in dtask.as_completed(fs)]
        assert order == [1, 2, 0]
        ac = dtask.as_completed([client.submit(inc, 1)], with_results=True)
        ac.add(client.submit(inc, 2))
        assert sorted(r for _, r in ac) == [2, 3]


def test_wait_and_callbacks(client):
    fs = client.map(slow, range(4), [0.05] * 4, pure=False)
    done, not_done = dtask.wait(fs)
    assert len(done) == 4 and not not_done
    with pytest.raises(TimeoutError):
        dtask.wait([client.submit(slow, 0, 1, pure=False)], timeout=0.2)
    got = []
    ev = threading.Event()
    f = client.submit(inc, 41)
    f.add_done_callback(lambda fut: (got.append(fut.result()), ev.set()))
    assert ev.wait(10) and got == [42]
    first = dtask.wait([client.submit(slow, 0, 2, pure=False), client.submit(inc, 0)],
                       return_when=dtask.FIRST_COMPLETED)
    assert len(first.done) == 1


def test_map_gather_scatter(client):
    fs = client.map(inc, range(100))
    assert client.gather(fs) == list(range(1, 101))
    fs2 = client.map(add, range(10), range(10))
    assert client.gather(fs2) == [2 * i for i in range(10)]
    assert client.gather({"a": fs[0], "b": [fs[1], 5]}) == {"a": 1, "b": [2, 5]}
    [x, y] = client.scatter([10, {"k": (1, 2)}])
    assert client.submit(lambda d, n: d["k"][1] + n, y, x).result() == 12
    d = client.scatter({"p": 1, "q": 2})
    assert client.gather(d) == {"p": 1, "q": 2}
    z = client.scatter(np.arange(10))
    assert client.submit(np.sum, z).result() == 45


def test_retries(client, tmp_path):
    marker = tmp_path / "count"

    def flaky(path):
        n = int(open(path).read()) if os.path.exists(path) else 0
        open(path, "w").write(str(n + 1))
        if n < 2:
            raise RuntimeError(f"attempt {n}")
        return n

    assert client.submit(flaky, str(marker), retries=2, pure=False).result() == 2
    marker.unlink()
    with pytest.raises(RuntimeError, match="attempt 1"):
        client.submit(flaky, str(marker), retries=1, pure=False).result()


def test_worker_restrictions(client):
    f = client.submit(os.getpid, workers=["local-worker-1"], pure=False)
    g = client.submit(os.getpid, workers="local-worker-1", pure=False)
    assert f.result() == g.result()


def test_numpy_arrays_travel_out_of_band(client):
    a = np.random.default_rng(0).random((1000, 1000))  # 8 MB: its own frame
    x = client.scatter(a)
    y = client.submit(lambda m: m * 2, x)
    r = y.result()
    assert np.array_equal(r, a * 2)
    r[0, 0] = -1.0  # a result is the client's own copy, writable as in Dask

    def write_into(m):
        m[0, 0] = 1.0  # inputs are shared by the tasks that read them: read-only
        return m

    with pytest.raises(ValueError, match="read-only"):
        client.submit(write_into, x).result()
    assert client.submit(lambda m: float(m.sum()), y).result() == pytest.approx(float((a * 2).sum()))
    # in-band vs out-of-band: the pickle stream is small, the buffer separate
    main, bufs = dtask.serialize.dumps(a)
    assert len(main) < 1000 and len(bufs) == 1 and len(bufs[0]) == a.nbytes


def test_values_native_and_pickled():
    rt = dtask._core.roundtrip
    for v in [None, True, 3, -2**63, 2**70, 1.5, "héllo", b"\x00" * 70000, (1, "a"), [1, [2]],
              {"a": 1, 2: "b"}, {1, 2}, np.float32(2.5)]:
        r = rt(v)
        assert r == v and type(r) is type(v)
    assert rt({"a": [1, (2,)]}, True) == {"a": [1, [2]]}


def test_c_and_python_tasks_share_bytes_results(client):
    # a C task's bytes result read by a Python task, and the other way round
    rep = client.submit(cfunc("repeat"), "ab", 50000)
    assert client.submit(len, rep).result() == 100000
    assert client.submit(lambda b: b[:4], rep).result() == b"abab"
    words = np.arange(1 << 16, dtype=np.uint64)
    pyb = client.submit(lambda w: w.tobytes(), words)
    s = client.submit(cfunc("chunk_sum"), pyb).result()
    assert s == int(words.sum()) % (1 << 62)
    sq = client.submit(cfunc("square"), client.submit(inc, 6))
    assert sq.result() == 49
    assert client.submit(cfunc("shout"), "hi").result() == "HI!"
    with pytest.raises(dtask.DtaskError, match="square"):
        client.submit(cfunc("square"), "not a number").result()


def test_bad_input_has_clear_errors(client):
    with pytest.raises(TypeError, match="callable"):
        client.submit(42)
    with pytest.raises(dtask.DtaskError, match="DT_ENOFUNC|no_such_fn"):
        client.submit(cfunc("no_such_fn"), 1).result(timeout=30)
    with pytest.raises(ValueError):
        cfunc("")
    lock = threading.Lock()
    with pytest.raises(TypeError):
        client.submit(inc, lock)  # cannot be pickled: refused at submit
    f = client.submit(lambda: threading.Lock(), pure=False)  # result cannot be pickled
    with pytest.raises(dtask.DtaskError, match="serialise"):
        f.result()
    with pytest.raises(dtask.DtaskError, match="DT_ECONNECT"):
        dtask.Client("127.0.0.1:1", timeout=1, set_as_default=False)


def test_info(client, cluster):
    info = client.scheduler_info()
    assert info["n_workers"] == 2 and len(info["workers"]) == 2
    assert sum(client.nthreads().values()) == 4
    assert len(cluster.worker_pids) == 2 and cluster.scheduler_pid > 0
    pids = client.run(os.getpid)
    assert set(pids) == set(info["workers"]) and len(set(pids.values())) == 2
    assert list(client.run(os.getpid, workers=["local-worker-0"])) != []


def test_progress_draws_until_done(client, capfd):
    fs = client.map(slow, range(6), [0.1] * 6, pure=False)
    dtask.progress(fs)
    assert all(f.done() for f in fs)
    out = capfd.readouterr().out
    assert "6/6 done" in out  # not a terminal: a plain line per second and one at the end
