"""Coordination primitives and published datasets, from clients and tasks."""

import os
import pickle
import signal
import threading
import time

import pytest

import dtask
from dtask import Event, Lock, MultiLock, Queue, Semaphore, Variable


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def inc(x):
    return x + 1


@pytest.fixture()
def two(cluster):
    with dtask.Client(cluster, set_as_default=False) as a, \
            dtask.Client(cluster, set_as_default=False) as b:
        yield a, b


def test_variable_holds_values_and_futures(two):
    a, b = two
    Variable("pv", client=a).set({"x": [1, 2]})
    assert Variable("pv", client=b).get(timeout=5) == {"x": [1, 2]}
    f = a.submit(inc, 41, pure=False)
    Variable("pv", client=a).set(f)
    key = f.key
    del f  # only the variable keeps the result alive now
    time.sleep(0.1)
    g = Variable("pv", client=b).get(timeout=5)
    assert isinstance(g, dtask.Future) and g.key == key
    assert g.result(timeout=30) == 42
    Variable("pv", client=a).delete()
    with pytest.raises(TimeoutError):
        Variable("pv", client=b).get(timeout=0.1)


def test_variable_get_waits_for_set(two):
    a, b = two
    out = []
    t = threading.Thread(target=lambda: out.append(Variable("pw", client=b).get(timeout=20)))
    t.start()
    time.sleep(0.1)
    Variable("pw", client=a).set("hello")
    t.join(30)
    assert out == ["hello"]
    Variable("pw", client=a).delete()


def test_queue_between_clients(two):
    a, b = two
    qa, qb = Queue("pq", client=a), Queue("pq", client=b)
    for i in range(5):
        qa.put(i)
    assert qb.qsize() == 5
    assert [qb.get(timeout=1) for _ in range(2)] == [0, 1]
    assert qb.get(batch=2) == [2, 3]
    assert qb.get(batch=True) == [4]
    assert qb.get(batch=True) == []
    with pytest.raises(TimeoutError):
        qb.get(timeout=0.05)
    qa.put("after")  # the timed-out get took nothing
    assert qb.qsize() == 1
    assert qb.get(timeout=1) == "after"
    # bounded
    small = Queue("pq-small", client=a, maxsize=1)
    small.put(1)
    with pytest.raises(TimeoutError):
        small.put(2, timeout=0.05)
    assert small.qsize() == 1
    assert small.get(timeout=1) == 1
    # a future through the queue
    f = a.submit(inc, 1, pure=False)
    qa.put([f, "tag"])
    del f
    g, tag = qb.get(timeout=5)
    assert tag == "tag" and g.result(timeout=30) == 2


def producer(q, n):
    for i in range(n):
        q.put(i)
    return n


def consumer(q, n):
    return sum(q.get(timeout=60) for _ in range(n))


def test_queue_producer_and_consumer_tasks(client):
    q = Queue("tasks-q")
    c = client.submit(consumer, q, 20, pure=False)
    p = client.submit(producer, q, 20, pure=False)
    assert p.result(timeout=60) == 20
    assert c.result(timeout=60) == sum(range(20))
    assert Queue("tasks-q", client=client).qsize() == 0


def test_lock_mutual_exclusion_and_errors(cluster):
    clients = [dtask.Client(cluster, set_as_default=False) for _ in range(3)]
    try:
        state = {"counter": 0, "inside": 0, "overlaps": 0}

        def work(c):
            lock = Lock("plock", client=c)
            for _ in range(10):
                with lock:
                    state["inside"] += 1
                    if state["inside"] > 1:
                        state["overlaps"] += 1
                    x = state["counter"]
                    time.sleep(0.002)
                    state["counter"] = x + 1
                    state["inside"] -= 1

        ts = [threading.Thread(target=work, args=(c,)) for c in clients]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert state["counter"] == 30 and state["overlaps"] == 0
        la, lb = Lock("plock2", client=clients[0]), Lock("plock2", client=clients[1])
        assert la.acquire(blocking=False)
        assert la.locked()
        assert not lb.acquire(blocking=False)
        assert not lb.acquire(timeout=0.05)
        with pytest.raises(RuntimeError):
            lb.release()
        with pytest.raises(dtask.DtaskError):
            Queue("plock2", client=clients[1]).put(1)  # a lock's name
        la.release()
        assert lb.acquire(timeout=5)
        lb.release()
        assert not la.locked()
    finally:
        for c in clients:
            c.close()


def test_multilock(two):
    a, b = two
    ma, mb = MultiLock(["m1", "m2"], client=a), MultiLock(["m2", "m3"], client=b)
    assert ma.acquire(timeout=1)
    assert not mb.acquire(blocking=False)
    got = []
    t = threading.Thread(target=lambda: got.append(mb.acquire(timeout=20)))
    t.start()
    time.sleep(0.1)
    ma.release()
    t.join(30)
    assert got == [True]
    with MultiLock(["m1"], client=a):
        pass
    mb.release()


def test_event(two):
    a, b = two
    ea, eb = Event("pev", client=a), Event("pev", client=b)
    assert not eb.is_set()
    assert not eb.wait(0.05)
    got = []
    t = threading.Thread(target=lambda: got.append(eb.wait(20)))
    t.start()
    time.sleep(0.1)
    ea.set()
    t.join(30)
    assert got == [True]
    assert eb.is_set() and eb.wait(0)
    ea.clear()
    assert not eb.is_set()


def limited(sem, q, i):
    with sem:
        q.put(("in", i))
        time.sleep(0.05)
        q.put(("out", i))
    return i


def test_semaphore_limits_tasks(client):
    sem = Semaphore(max_leases=2, name="psem")
    q = Queue("psem-log")
    fs = client.map(limited, [sem] * 8, [q] * 8, range(8), pure=False)
    assert client.gather(fs) == list(range(8))
    log = Queue("psem-log", client=client).get(batch=True)
    assert len(log) == 16
    now = most = 0
    for what, _ in log:  # the scheduler orders the puts: a lease is held between in and out
        now += 1 if what == "in" else -1
        most = max(most, now)
    assert 1 <= most <= 2
    s = Semaphore(max_leases=2, name="psem", client=client)
    assert s.get_value() == 0
    assert s.acquire(timeout=1) and s.acquire(timeout=1)
    assert not s.acquire(timeout=0.05)
    assert s.get_value() == 2
    s.release()
    s.release()
    with pytest.raises(RuntimeError):
        s.release()


def test_primitives_pickle_by_name():
    for p in (Lock("n1"), Event("n2"), Variable("n3"), Queue("n4", maxsize=3),
              Semaphore(max_leases=3, name="n5")):
        q = pickle.loads(pickle.dumps(p))
        assert type(q) is type(p) and q.name == p.name
    assert pickle.loads(pickle.dumps(Queue("n4", maxsize=3))).maxsize == 3
    assert pickle.loads(pickle.dumps(Semaphore(3, "n5"))).max_leases == 3
    assert pickle.loads(pickle.dumps(MultiLock(["a", "b"]))).names == ["a", "b"]


def hold_lock(lock, ev):
    lock.acquire()
    ev.set()
    time.sleep(30)


def test_lock_of_a_killed_worker_is_freed():
    with dtask.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as lc, \
            dtask.Client(lc, set_as_default=False) as client:
        lock, ev = Lock("held-by-task", client=client), Event("held-ev", client=client)
        f = client.submit(hold_lock, lock, ev, pure=False)
        assert ev.wait(60)
        assert lock.locked()
        assert not lock.acquire(blocking=False)
        got = []
        t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=60)))
        t.start()
        time.sleep(0.3)  # queued before the task runs again on a new worker
        victims = children(lc.worker_pids[0])
        assert len(victims) == 1
        os.kill(victims[0], signal.SIGKILL)
        t.join(90)
        assert got == [True]
        lock.release()
        f.release()  # not cancel(): a cancelled future outliving its client crashes (see report)


def test_dataset_outlives_its_client(cluster):
    pub = dtask.Client(cluster, set_as_default=False)
    f = pub.submit(inc, 99, pure=False)
    pub.publish_dataset(f, name="pds")
    pub.publish_dataset(other=[1, 2, 3])
    with pytest.raises(ValueError):
        pub.publish_dataset(other=[4])
    del f
    pub.close()
    with dtask.Client(cluster, set_as_default=False) as c:
        assert sorted(c.list_datasets()) == ["other", "pds"]
        assert c.get_dataset("pds").result(timeout=30) == 100
        assert c.datasets["other"] == [1, 2, 3]
        assert "pds" in c.datasets and len(c.datasets) == 2
        c.datasets["third"] = "x"
        assert c.get_dataset("third") == "x"
        del c.datasets["third"]
        c.unpublish_dataset("pds")
        c.unpublish_dataset("other")
        with pytest.raises(KeyError):
            c.get_dataset("pds")
        assert c.get_dataset("pds", default=None) is None
        with pytest.raises(KeyError):
            del c.datasets["pds"]
        assert c.list_datasets() == []
