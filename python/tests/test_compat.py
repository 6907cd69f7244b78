"""Every name of dask.distributed exists in dtask: as Dask's, or refused
with a clear error (NotAvailableInDtask) where it cannot exist."""
import asyncio
import os
import threading

import dask
import pytest

import dtask

distributed = pytest.importorskip("distributed")


def test_every_distributed_name_exists():
    missing = [n for n in distributed.__all__ if not hasattr(dtask, n)]
    assert missing == []
    cmissing = [n for n in dir(distributed.Client)
                if not n.startswith("_") and not hasattr(dtask.Client, n)]
    assert cmissing == []
    fmissing = [n for n in dir(distributed.Future)
                if not n.startswith("_") and not hasattr(dtask.Future, n)]
    assert fmissing == []


@pytest.mark.parametrize("name", ["Scheduler", "Worker", "Nanny", "SpecCluster", "SSHCluster",
                                  "rpc", "connect"])
def test_refused_names_say_why(name):
    with pytest.raises(dtask.NotAvailableInDtask, match=f"{name} is not available in dtask"):
        getattr(dtask, name)()
    assert issubclass(dtask.NotAvailableInDtask, NotImplementedError)


def test_aliases():
    assert dtask.TimeoutError is TimeoutError
    assert dtask.config is dask.config.config and dtask.dask is dask
    with pytest.raises(Exception, match="get_executor"):
        dtask.CompatibleExecutor()


def read_env(name):
    return os.environ.get(name)


def test_environ_plugin_and_callbacks(client):
    client.register_plugin(dtask.Environ({"DTASK_TEST_ENV": "42"}))
    assert set(client.run(read_env, "DTASK_TEST_ENV").values()) == {"42"}
    calls = []

    def setup(dask_worker):
        os.environ["DTASK_TEST_CB"] = dask_worker.name

    client.register_worker_callbacks(setup)
    got = client.run(read_env, "DTASK_TEST_CB")
    assert len(got) == 2 and all(v and v.startswith("local-worker-") for v in got.values())
    assert calls == []  # ran on the workers, not here
    with pytest.raises(TypeError):
        dtask.PipInstall("notalist")
    assert dtask.PipInstall(["pkg"], pip_options=["--no-deps"]).command()[-2:] == ["--no-deps", "pkg"]


def inc(x):
    return x + 1


def test_current_as_current_and_normalize(client):
    assert dtask.Client.current() is client
    with dtask.Client(client.cluster, set_as_default=False) as other:
        with other.as_current():
            assert dtask.Client.current() is other
        assert dtask.Client.current() is client
    import dask.array as da

    x = da.arange(20, chunks=5) + 1
    y = client.persist(x)
    n = client.normalize_collection(da.arange(20, chunks=5) + 1)
    assert len(dtask.futures_of(n)) == 4 and len(dtask.futures_of(y)) == 4
    assert int(n.sum().compute()) == 210
    with pytest.raises(dtask.NotAvailableInDtask, match="AMM|Active Memory"):
        client.amm
    f = client.submit(inc, 1)
    assert f.bind_client(client) is f and f.executor is client


def test_get_task_metadata(client):
    with dtask.get_task_metadata() as tm:
        a = client.submit(inc, 100, key="meta-a")
        a.result()
    assert tm.state.get("meta-a") == "memory" and "meta-a" in tm.keys


def test_sync_on_a_loop_in_another_thread():
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    try:
        async def add(a, b):
            await asyncio.sleep(0.01)
            return a + b

        assert dtask.sync(loop, add, 2, 3) == 5
        assert dtask.sync(None, add, 1, 1) == 2
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)


def test_subprocess_cluster_and_local_cluster_extras():
    with dtask.SubprocessCluster(n_workers=1, threads_per_worker=1,
                                 dashboard_address=None) as lc, dtask.Client(lc) as c:
        assert c.submit(inc, 1).result(timeout=30) == 2
        assert lc.plan == lc.requested == {"local-worker-0"}
        assert lc.observed == {"local-worker-0"}
        lc.scale_up(2)
        assert len(lc.plan) == 2
        lc.scale_down(["local-worker-1"])
        assert lc.plan == {"local-worker-0"}
        assert lc.called_from_running_loop is False
        with pytest.raises(dtask.NotAvailableInDtask):
            lc.start_worker()


def test_docs_table_of_names_is_current():
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, str(root / "scripts" / "dask-names.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "MISSING" not in (root / "docs" / "python.md").read_text()
