"""Where dtask answered differently from Dask (issue 15's "wrong today"):
Future.traceback() is a traceback object, scatter of a range or an iterator
gives a list of futures, scheduler_info() has Dask's keys, and resources
set in dask.config before LocalCluster reach its workers."""
import traceback

import dask
from dask._task_spec import Task, TaskRef
import pytest

import dtask


def fails_deep(x):
    return _inner_failure(x)


def _inner_failure(x):
    raise ValueError(f"deep failure {x}")


def use_gpu(x):
    return x * 2


# what Dask's Scheduler.identity() and WorkerState.identity() return
DASK_SCHEDULER_KEYS = {"type", "id", "address", "services", "started", "n_workers",
                       "total_threads", "total_memory", "workers"}
DASK_WORKER_KEYS = {"type", "id", "host", "resources", "local_directory", "name", "nthreads",
                    "memory_limit", "last_seen", "services", "metrics", "status", "nanny"}


def test_traceback_is_a_traceback_object(client):
    f = client.submit(fails_deep, 3)
    with pytest.raises(ValueError, match="deep failure 3"):
        f.result()
    tb = f.traceback()
    assert tb is not None and type(tb).__name__ == "traceback"
    lines = traceback.format_tb(tb)
    assert any("_inner_failure" in line for line in lines), lines
    assert any("fails_deep" in line for line in lines), lines
    # the exception raised by result() carries the remote frames too
    try:
        f.result()
    except ValueError as e:
        names = [fr.name for fr in traceback.extract_tb(e.__traceback__)]
        assert "_inner_failure" in names, names
    assert client.submit(use_gpu, 1).traceback() is None


def test_scatter_range_and_iterators_give_lists(client):
    fs = client.scatter(range(4))
    assert isinstance(fs, list) and len(fs) == 4
    assert client.gather(fs) == [0, 1, 2, 3]
    gs = client.scatter(x * 10 for x in range(3))
    assert isinstance(gs, list) and client.gather(gs) == [0, 10, 20]
    one = client.scatter("abc")  # a string is one object, as in Dask
    assert isinstance(one, dtask.Future) and one.result() == "abc"


def test_scheduler_info_has_dasks_keys(client, cluster):
    info = client.scheduler_info()
    assert DASK_SCHEDULER_KEYS <= set(info), DASK_SCHEDULER_KEYS - set(info)
    assert info["type"] == "Scheduler" and info["n_workers"] == 2
    assert info["address"].startswith("tcp://")
    assert len(info["workers"]) == 2
    assert info["total_threads"] == 4
    for addr, w in info["workers"].items():
        assert DASK_WORKER_KEYS <= set(w), DASK_WORKER_KEYS - set(w)
        assert addr.startswith("tcp://") and w["type"] == "Worker"
        assert w["nthreads"] == 2 and w["host"] == "127.0.0.1"
        assert w["memory_limit"] > 0  # memory_limit="auto" on the cluster
        assert isinstance(w["metrics"], dict) and "memory" in w["metrics"]
    assert info["total_memory"] == sum(w["memory_limit"] for w in info["workers"].values())
    assert set(client.nthreads()) == set(info["workers"])
    assert len(client.scheduler_info(n_workers=1)["workers"]) == 1
    # the addresses Dask users take from scheduler_info work as restrictions
    addr = next(iter(info["workers"]))
    assert list(client.run(lambda: 1, workers=[addr])) == [addr]


def test_dask_config_resources_reach_local_cluster():
    with dask.config.set({"distributed.worker.resources.GPU": 2}):
        with dtask.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None,
                                memory_limit="512MiB") as lc, dtask.Client(lc) as c:
            (w,) = c.scheduler_info()["workers"].values()
            assert w["resources"] == {"GPU": 2.0}
            assert w["memory_limit"] == 512 * 2**20
            assert c.submit(use_gpu, 21, resources={"GPU": 1}).result(timeout=30) == 42


def add_one(v):
    return v + 1


def test_future_inside_dask_delayed_is_a_dependency(client):
    x = client.submit(add_one, 40)
    d = dask.delayed(add_one)(x)
    assert d.compute() == 42
    assert client.compute(d).result() == 42
    assert dask.delayed(x).compute() == 41  # the future itself as a leaf
    assert dask.compute(dask.delayed(x), d) == (41, 42)
    assert dask.delayed(sum)([x, x, 1]).compute() == 83
    # a key the graph names that nobody holds is a clear error
    x.release()
    with pytest.raises(KeyError, match="not in the graph"):
        client.get({"z": Task("z", add_one, TaskRef("no-such-key"))}, "z")


def record_call(path, i):
    with open(path, "a") as f:
        f.write(f"{i}\n")
    return i * 10


def test_persist_keeps_results_on_workers(client, tmp_path):
    import dask.array as da
    import dask.bag as db

    log = str(tmp_path / "calls")
    parts = [dask.delayed(record_call)(log, i, dask_key_name=f"rec-{i}") for i in range(4)]
    total = dask.delayed(sum)(parts)
    (p,) = dask.persist(total)  # dask.persist goes through Client.persist
    assert p.compute() == 60
    assert dask.delayed(lambda v: v + 1)(p).compute() == 61
    with open(log) as f:
        assert sorted(f.read().split()) == ["0", "1", "2", "3"]  # each part ran once
    # the persisted results are held on the scheduler as futures of this client
    assert all(isinstance(v, dtask.Future) for v in p.__dask_graph__().values())
    x = da.arange(100, chunks=25) * 2
    y = client.persist(x)
    n_before = client.scheduler_info()["n_tasks"]
    assert int(y.sum().compute()) == 9900 and int((y + 1).sum().compute()) == 10000
    assert client.scheduler_info()["n_tasks"] == n_before  # nothing recomputed or left behind
    b = db.from_sequence(range(10), npartitions=3).map(lambda v: v * 2).persist()
    assert b.sum().compute() == 90
    lst = client.persist([x, b])
    assert isinstance(lst, list) and len(lst) == 2 and lst[1].sum().compute() == 90


def test_futures_of(client):
    import dask.array as da

    y = client.persist(da.arange(40, chunks=10))
    fs = dtask.futures_of(y)
    assert len(fs) == 4 and all(isinstance(f, dtask.Future) for f in fs)
    assert sorted(int(v.sum()) for v in client.gather(fs)) \
        == [45, 145, 245, 345]
    a = client.submit(add_one, 1)
    assert dtask.futures_of([a, {"k": (a, 3)}]) == [a]
    assert client.futures_of([a]) == [a]


def test_get_executor(client):
    import concurrent.futures as cf

    with client.get_executor(pure=False) as ex:
        f = ex.submit(add_one, 1)
        assert isinstance(f, cf.Future) and f.result(timeout=30) == 2
        assert list(ex.map(add_one, range(5))) == [1, 2, 3, 4, 5]
        bad = ex.submit(_inner_failure, 1)
        assert isinstance(bad.exception(timeout=30), ValueError)
        done, _ = cf.wait([ex.submit(add_one, i) for i in range(10)], timeout=30)
        assert sorted(d.result() for d in done) == list(range(1, 11))
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(add_one, 1)
    with pytest.raises(TypeError, match="unsupported"):
        client.get_executor(bogus=1)


def test_get_sync_false_gives_futures(client):
    dsk = {"gx": 1, "gy": (add_one, "gx"), "gz": (add_one, "gy")}
    fs = client.get(dsk, ["gy", ["gz"]], sync=False)
    assert isinstance(fs[0], dtask.Future) and isinstance(fs[1][0], dtask.Future)
    assert client.gather(fs) == [2, [3]]
    assert client.get(dsk, "gz") == 3


def test_xarray_on_dask(client):
    xr = pytest.importorskip("xarray")
    import numpy as np

    ds = xr.Dataset({"t": (("x", "y"), np.arange(100.0).reshape(10, 10))}).chunk({"x": 5})
    assert float(ds.t.mean().compute()) == 49.5
    assert float((ds.t * 2).sum(dim="x").max().compute()) == 1080.0
    p = ds.persist()  # through Client.persist: the chunks stay on the workers
    assert len(dtask.futures_of(p)) == 2 and float(p.t.sum().compute()) == 4950.0
    assert float(client.compute(ds.t.mean()).result()) == 49.5
