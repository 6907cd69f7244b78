"""The Client's questions to the scheduler in Dask's names and shapes:
who_has, has_what, nbytes, processing, story, events, metadata, the task
stream, logs, dump_cluster_state, replicate, rebalance, and clear errors."""

import gzip
import threading
import time

import msgpack
import pytest

import dtask


@pytest.fixture(scope="module")
def client():
    with dtask.LocalCluster(n_workers=2, threads_per_worker=2, dashboard_address=None,
                            log_level="info") as lc, dtask.Client(lc) as c:
        c.wait_for_workers(2, timeout=30)
        yield c


def _inc(x):
    return x + 1


def _slow(x):
    time.sleep(1.5)
    return x


def _logs_event(x):
    dtask.log_event("py-topic", {"x": x, "from": "task"})
    return x


def _addrs(client):
    return sorted(client.scheduler_info()["workers"])


def test_who_has_has_what_nbytes(client):
    a0, a1 = _addrs(client)
    f = client.submit(_inc, 1, workers=[a1], key="st-who")
    assert f.result() == 2
    assert client.who_has([f]) == {"st-who": [a1]}
    assert client.who_has(f)["st-who"] == [a1]
    hw = client.has_what()
    assert "st-who" in hw[a1] and "st-who" not in hw[a0]
    assert set(client.has_what(workers=[a0])) == {a0}
    nb = client.nbytes(keys=[f])
    assert nb["st-who"] > 0
    from dask.utils import key_split
    assert client.nbytes(summary=True)[key_split("st-who")] >= nb["st-who"]
    assert client.ncores() == {a0: 2, a1: 2}
    assert client.nthreads(workers=[a1]) == {a1: 2}
    assert f.type is int


def test_processing_shows_the_running_task(client):
    a0, a1 = _addrs(client)
    f = client.submit(_slow, 3, workers=[a0], key="st-slow")
    seen = False
    for _ in range(100):
        p = client.processing()
        assert "st-slow" not in p[a1]
        if "st-slow" in p[a0]:
            seen = True
            break
        time.sleep(0.02)
    assert seen
    assert f.result() == 3
    assert "st-slow" not in client.processing()[a0]


def test_story_in_order(client):
    f = client.submit(_inc, 10, key="st-story")
    f.result()
    story = client.story(f)
    assert all(len(r) == 6 and r[0] == "st-story" for r in story)
    finishes = [r[2] for r in story]
    i = finishes.index("waiting")
    j = finishes.index("processing", i)
    finishes.index("memory", j)
    times = [r[5] for r in story]
    assert times == sorted(times)


def test_log_event_from_a_task_and_the_client(client):
    f = client.submit(_logs_event, 5, key="st-logev")
    assert f.result() == 5
    ev = client.get_events("py-topic")
    assert len(ev) == 1
    t, msg = ev[0]
    assert msg == {"x": 5, "from": "task"} and abs(t - time.time()) < 600
    client.log_event(["py-topic", "other"], "from client")
    assert client.get_events("py-topic")[-1][1] == "from client"
    assert client.get_events()["other"][0][1] == "from client"
    assert client.get_events("never-used") == ()


def test_wait_events_long_poll(client):
    # the query behind subscribe_topic and print/warn: answered when an event
    # comes on one of the topics named, not polled
    first = len(client.get_events("lp-topic"))
    out = {}

    def wait():
        out["events"] = client._query("wait_events", {"topics": {"lp-topic": first, "lp-other": 0},
                                                      "timeout": 30}, timeout=60)

    th = threading.Thread(target=wait)
    th.start()
    time.sleep(0.3)
    assert th.is_alive()  # nothing yet: the question waits at the scheduler
    client.log_event("lp-topic", {"n": 1})
    th.join(60)
    assert not th.is_alive()
    [(topic, seq, _t, msg)] = out["events"]
    assert (topic, seq, msg) == ("lp-topic", first, {"n": 1})
    # events already there are answered at once; none by the timeout: []
    assert [e[3] for e in client._query("wait_events", {"topics": {"lp-topic": first}})] == [{"n": 1}]
    assert client._query("wait_events", {"topics": {"lp-topic": first + 1}, "timeout": 0.2}) == []
    for bad in ({"topics": ["lp-topic"]}, {"topics": {"lp-topic": "x"}}, {"topics": {"t": 0}, "timeout": -1}):
        with pytest.raises(Exception, match="wait_events"):
            client._query("wait_events", bad)


def test_subscribe_topic(client):
    got = []
    done = threading.Event()

    def handler(event):
        got.append(event)
        done.set()

    client.log_event("sub-topic", "before")  # not delivered: it was there already
    client.subscribe_topic("sub-topic", handler)
    try:
        client.log_event("sub-topic", {"n": 1})
        assert done.wait(10)
        assert [m for _, m in got] == [{"n": 1}]
    finally:
        client.unsubscribe_topic("sub-topic")
    client.log_event("sub-topic", "after")
    time.sleep(0.3)
    assert [m for _, m in got] == [{"n": 1}]


def test_metadata_round_trip(client):
    client.set_metadata(["a", "b", "c"], [1, 2, 3])
    client.set_metadata("flat", {"k": "v"})
    assert client.get_metadata(["a", "b", "c"]) == [1, 2, 3]
    assert client.get_metadata(["a", "b"]) == {"c": [1, 2, 3]}
    assert client.get_metadata("flat") == {"k": "v"}
    assert client.get_metadata(["a", "nope"], default=None) is None
    with pytest.raises(KeyError):
        client.get_metadata(["a", "nope"])


def test_task_stream(client):
    with dtask.get_task_stream(client=client) as ts:
        futs = client.map(_inc, range(4), key=[f"st-ts-{i}" for i in range(4)])
        client.gather(futs)
    keys = {r["key"] for r in ts.data}
    assert {f"st-ts-{i}" for i in range(4)} <= keys
    addrs = _addrs(client)
    for r in ts.data:
        (ss,) = r["startstops"]
        assert ss["action"] == "compute" and ss["start"] <= ss["stop"]
        assert r["worker"] in addrs and r["status"] == "OK"
    recs = client.get_task_stream(count=2)
    assert len(recs) == 2
    with pytest.raises(NotImplementedError, match="plot='save'"):
        client.get_task_stream(plot=True)


def test_task_stream_plot_save(client, tmp_path):
    out = str(tmp_path / "ts.html")
    with dtask.get_task_stream(plot="save", filename=out) as ts:
        client.gather(client.map(_inc, range(3), key=[f"st-save-{i}" for i in range(3)]))
    assert ts.figure == out
    page = open(out).read()
    assert page.startswith("<!DOCTYPE html>") or "<html" in page[:200]
    assert all(f"st-save-{i}" in page for i in range(3))
    rows, path = client.get_task_stream(plot="save", filename=str(tmp_path / "b.html"))
    assert path.endswith("b.html") and {f"st-save-{i}" for i in range(3)} <= {r["key"] for r in rows}


def test_logs(client):
    wl = client.get_worker_logs(n=200)
    assert set(wl) == set(_addrs(client))
    for lines in wl.values():
        assert lines and all(len(x) == 2 for x in lines)
        assert any("worker" in line for _, line in lines)
    sl = client.get_scheduler_logs(n=3)
    assert 0 < len(sl) <= 3 and "scheduler" in sl[0][1]


def test_dump_cluster_state(client, tmp_path):
    f = client.submit(_inc, 3, key="st-dump")
    f.result()
    path = client.dump_cluster_state(str(tmp_path / "dump"))
    with gzip.open(path) as fh:
        state = msgpack.unpack(fh)
    assert "st-dump" in state["scheduler"]["who_has"]
    assert set(state["workers"]) == set(_addrs(client))
    ypath = client.dump_cluster_state(str(tmp_path / "dump"), format="yaml")
    assert "st-dump" in open(ypath).read()


def test_replicate(client):
    a0, a1 = _addrs(client)
    f = client.submit(_inc, 100, workers=[a0], key="st-rep")
    f.result()
    assert client.who_has(f)["st-rep"] == [a0]
    client.replicate([f])
    assert sorted(client.who_has(f)["st-rep"]) == [a0, a1]


def test_rebalance():
    # a cluster of its own: rebalance weighs all the bytes workers hold, and
    # the shared cluster's workers hold other tests' results
    with dtask.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as lc, \
            dtask.Client(lc, set_as_default=False) as client:
        a0, a1 = _addrs(client)
        futs = [client.submit(_inc, i, workers=[a0], key=f"st-reb-{i}") for i in range(8)]
        client.gather(futs)
        client.rebalance(futs)
        hw = client.has_what()
        on = [sum(k.startswith("st-reb-") for k in hw[a]) for a in (a0, a1)]
        assert sum(on) == 8 and min(on) >= 3
        assert client.gather(futs) == [i + 1 for i in range(8)]


def test_bad_input_is_a_clear_error(client):
    with pytest.raises(ValueError, match="unknown query 'nope'"):
        client._query("nope")
    with pytest.raises(ValueError, match="'keys' must be"):
        client._query("who_has", {"keys": 5})
    with pytest.raises(ValueError, match="'count' must be an integer"):
        client._query("task_stream", {"count": "ten"})
    with pytest.raises(NotImplementedError, match="call_stack"):
        client.call_stack()
    with pytest.raises(NotImplementedError, match="nanny"):
        client.get_worker_logs(nanny=True)
    with pytest.raises(ValueError):
        client.dump_cluster_state("x", format="xml")
    assert len(client.ncores()) == 2  # the connection is fine


def test_transfer_logs(client):
    a0, a1 = _addrs(client)
    big = client.submit(lambda: b"x" * 100_000, workers=[a0], key="st-xfer-a", pure=False)
    big.result()
    n = client.submit(len, big, workers=[a1], key="st-xfer-b", pure=False)
    assert n.result() == 100_000

    def logs(dask_worker):
        return list(dask_worker.incoming_transfer_log), list(dask_worker.outgoing_transfer_log)

    got = client.run(logs)
    inc = [e for e in got[a1][0] if "st-xfer-a" in e["keys"]]
    out = [e for e in got[a0][1] if "st-xfer-a" in e["keys"]]
    assert inc and inc[-1]["who"] == a0 and inc[-1]["total"] == inc[-1]["keys"]["st-xfer-a"]
    assert inc[-1]["total"] >= 100_000 and inc[-1]["start"] <= inc[-1]["stop"]
    assert out and out[-1]["who"].startswith("tcp://127.0.0.1:") and out[-1]["total"] >= 100_000
    assert set(inc[-1]) >= {"start", "stop", "middle", "duration", "who", "keys", "total",
                            "bandwidth"}
