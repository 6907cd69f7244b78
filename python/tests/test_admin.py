"""Management calls (issue 15): run, restart, restart_workers, plugins,
upload_file (.py and .so), and the small ones (get_versions,
write_scheduler_file, Security, shutdown)."""

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

import dtask
from dtask import CancelledError

from conftest import ROOT, mytasks_lib


def wait_file(path, limit=30.0):
    """Blocks (bounded) until path exists; returns True if it did."""
    t0 = time.monotonic()
    while not os.path.exists(path):
        if time.monotonic() - t0 > limit:
            return False
        time.sleep(0.01)
    return True


def inc(x):
    return x + 1


@pytest.fixture()
def one_thread():
    with dtask.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as lc:
        with dtask.Client(lc) as c:
            yield lc, c


@pytest.fixture()
def two_workers():
    with dtask.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as lc:
        with dtask.Client(lc) as c:
            c.wait_for_workers(2, timeout=30)
            yield lc, c


# ---------------------------------------------------------------- run

def test_run_runs_beside_a_long_task(one_thread, tmp_path):
    lc, c = one_thread
    started, release = str(tmp_path / "started"), str(tmp_path / "release")

    def long_task():
        open(started, "w").close()
        return wait_file(release)

    fut = c.submit(long_task, pure=False)
    assert wait_file(started, 30)  # the only thread is busy now
    try:
        res = c.run(lambda: os.getpid() * 0 + 42)
        assert not fut.done()  # run did not wait behind the task
        (addr,) = c.scheduler_info()["workers"]
        assert res == {addr: 42}
        assert addr.startswith("tcp://")
    finally:
        open(release, "w").close()
    assert fut.result(timeout=30) is True


def test_run_dask_worker_args_and_errors(two_workers):
    lc, c = two_workers

    def where(a, b=0, dask_worker=None):
        return (dask_worker.address, a + b)

    res = c.run(where, 1, b=2)
    addrs = sorted(c.scheduler_info()["workers"])
    assert sorted(res) == addrs
    assert all(v == (k, 3) for k, v in res.items())
    one = c.run(where, 5, workers=[addrs[0]])
    assert one == {addrs[0]: (addrs[0], 5)}

    def boom():
        raise ZeroDivisionError("boom here")

    with pytest.raises(ZeroDivisionError, match="boom here"):
        c.run(boom)
    ret = c.run(boom, on_error="return")
    assert sorted(ret) == addrs and all(isinstance(v, ZeroDivisionError) for v in ret.values())
    assert c.run(boom, on_error="ignore") == {}
    assert c.run(inc, 1, wait=False) is None
    with pytest.raises(NotImplementedError, match="nanny"):
        c.run(inc, 1, nanny=True)


# ---------------------------------------------------------------- restart

def test_restart_cancels_running_work_and_runs_new_work(two_workers, tmp_path):
    lc, c = two_workers
    started = str(tmp_path / "started")
    pids = c.run(os.getpid)
    done = c.submit(inc, 1)
    assert done.result(timeout=30) == 2

    def forever():
        open(started, "w").close()
        return wait_file(str(tmp_path / "never"), 60)

    running = c.submit(forever, pure=False)
    assert wait_file(started, 30)
    c.restart(timeout=60)
    # Dask: every future of the client is cancelled by a restart
    with pytest.raises(CancelledError):
        running.result(timeout=10)
    with pytest.raises(CancelledError):
        done.result(timeout=10)
    assert running.cancelled() and done.cancelled()
    new_pids = c.run(os.getpid)
    assert len(new_pids) == 2
    assert not set(new_pids.values()) & set(pids.values())  # fresh processes
    assert c.submit(inc, 10).result(timeout=30) == 11
    assert c.gather(c.map(inc, range(20))) == list(range(1, 21))


def test_restart_workers_restarts_only_those(two_workers):
    lc, c = two_workers
    pids = c.run(os.getpid)
    a, b = sorted(pids)
    assert c.restart_workers([a], timeout=60) == {a: "OK"}
    after = c.run(os.getpid)
    assert len(after) == 2
    assert after[b] == pids[b]  # the other one was left alone
    assert a not in after or after[a] != pids[a]
    assert c.submit(inc, 1).result(timeout=30) == 2


def test_restart_without_a_nanny_names_the_workers():
    with dtask.LocalCluster(n_workers=1, threads_per_worker=1, nanny=False,
                            dashboard_address=None) as lc, dtask.Client(lc) as c:
        (addr,) = c.scheduler_info()["workers"]
        fut = c.submit(inc, 1)
        assert fut.result(timeout=30) == 2
        with pytest.raises(ValueError, match="no nanny") as ei:
            c.restart(timeout=30)
        assert addr[len("tcp://"):] in str(ei.value)
        assert fut.result() == 2  # nothing was done
        with pytest.raises(ValueError, match="no nanny"):
            c.restart_workers([addr], timeout=30)
        out = c.restart_workers([addr], timeout=30, raise_for_error=False)
        assert list(out) == [addr] and "no nanny" in out[addr]


# ---------------------------------------------------------------- plugins

class EnvPlugin(dtask.WorkerPlugin):
    name = "env-plugin"

    def __init__(self, value):
        self.value = value

    def setup(self, worker):
        os.environ["DTASK_TEST_PLUGIN"] = f"{self.value}@{worker.address}"

    def teardown(self, worker):
        os.environ.pop("DTASK_TEST_PLUGIN", None)


class FailingPlugin(dtask.WorkerPlugin):
    def setup(self, worker):
        raise RuntimeError("setup failed on purpose")


class Transitions(dtask.WorkerPlugin):
    name = "transitions"

    def setup(self, worker):
        self.seen = []
        import dtask.plugins as p

        p.SEEN = self.seen

    def transition(self, key, start, finish, **kwargs):
        self.seen.append((key, start, finish))


def env():
    return os.environ.get("DTASK_TEST_PLUGIN")


def test_worker_plugin_on_every_worker_new_ones_too(two_workers):
    lc, c = two_workers
    out = c.register_plugin(EnvPlugin("v1"))
    addrs = sorted(c.scheduler_info()["workers"])
    assert sorted(out) == addrs and all(v == {"status": "OK"} for v in out.values())
    assert c.run(env) == {a: f"v1@{a}" for a in addrs}
    # a task submitted afterwards sees it, wherever it runs
    assert c.submit(env, pure=False).result(timeout=30).startswith("v1@")
    lc.scale(3)
    c.wait_for_workers(3, timeout=60)
    res = c.run(env)
    assert len(res) == 3 and res == {a: f"v1@{a}" for a in res}
    # the same name replaces it; register_worker_plugin is the older name
    c.register_worker_plugin(EnvPlugin("v2"))
    assert set(c.run(env).values()) == {f"v2@{a}" for a in res}
    c.unregister_worker_plugin("env-plugin")
    assert set(c.run(env).values()) == {None}  # teardown ran everywhere
    lc.scale(4)
    c.wait_for_workers(4, timeout=60)
    assert set(c.run(env).values()) == {None}  # joining workers no longer get it


def test_plugin_setup_error_and_transitions(two_workers):
    lc, c = two_workers
    with pytest.raises(RuntimeError, match="on purpose"):
        c.register_plugin(FailingPlugin(), name="failing")
    c.unregister_worker_plugin("failing")
    c.register_plugin(Transitions())
    f = c.submit(inc, 41, key="traced-key", workers=[sorted(c.scheduler_info()["workers"])[0]])
    assert f.result(timeout=30) == 42

    def seen():
        import dtask.plugins as p

        return [t for t in getattr(p, "SEEN", []) if t[0] == "traced-key"]

    got = [v for v in c.run(seen).values() if v]
    assert got == [[("traced-key", "ready", "executing"), ("traced-key", "executing", "memory")]]
    c.unregister_worker_plugin("transitions")


def test_scheduler_plugin_refused_clearly(two_workers):
    lc, c = two_workers
    with pytest.raises(NotImplementedError, match="scheduler is written in C"):
        c.register_plugin(dtask.SchedulerPlugin())
    with pytest.raises(NotImplementedError, match="scheduler is written in C"):
        c.register_scheduler_plugin(dtask.SchedulerPlugin())
    with pytest.raises(NotImplementedError, match="WorkerPlugin or run code on the client"):
        c.run_on_scheduler(os.getpid)


def test_nanny_plugin_runs_in_the_worker(two_workers):
    lc, c = two_workers

    class Marker(dtask.NannyPlugin):
        name = "marker"

        def setup(self, nanny):
            os.environ["DTASK_TEST_NANNY"] = "yes"

    def getenv(name):
        return os.environ.get(name)

    assert set(c.run(getenv, "DTASK_TEST_NANNY").values()) == {None}
    c.register_plugin(Marker())
    assert set(c.run(getenv, "DTASK_TEST_NANNY").values()) == {"yes"}
    c.unregister_worker_plugin("marker")

    class Restarting(dtask.NannyPlugin):
        name = "restarting"
        restart = True

        def setup(self, nanny):
            os.environ["DTASK_TEST_NANNY"] = "again"

    pids = c.run(os.getpid)
    c.register_plugin(Restarting())
    # fresh workers (restart=True), which set the plugin up again
    after = c.run(os.getpid)
    assert len(after) == 2 and not set(after.values()) & set(pids.values())
    assert set(c.run(getenv, "DTASK_TEST_NANNY").values()) == {"again"}


# ---------------------------------------------------------------- upload_file

def test_upload_file_py_on_every_worker_new_ones_too(two_workers, tmp_path):
    lc, c = two_workers
    mod = tmp_path / "dtask_uploaded_mod.py"
    mod.write_text("def answer():\n    return 4242\n")

    def use():
        import dtask_uploaded_mod

        return dtask_uploaded_mod.answer()

    with pytest.raises(ModuleNotFoundError):
        c.submit(use, pure=False).result(timeout=30)
    c.upload_file(str(mod))
    assert set(c.run(use).values()) == {4242}
    assert c.submit(use, pure=False).result(timeout=30) == 4242
    lc.scale(3)
    c.wait_for_workers(3, timeout=60)
    res = c.run(use)
    assert len(res) == 3 and set(res.values()) == {4242}
    # a new version replaces (reloads) it
    mod.write_text("def answer():\n    return 7\n")
    c.upload_file(str(mod))
    assert set(c.run(use).values()) == {7}


def test_upload_file_zip(two_workers, tmp_path):
    import zipfile

    lc, c = two_workers
    z = tmp_path / "dtask_zipped.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("dtask_zipped_pkg/__init__.py", "VALUE = 'from zip'\n")

    def use():
        import dtask_zipped_pkg

        return dtask_zipped_pkg.VALUE

    c.upload_file(str(z))
    assert set(c.run(use).values()) == {"from zip"}


SO_SRC = r"""
#include "dtask.h"
DT_TASK(admin_uploaded_triple) {
  int64_t x;
  if (dt_task_arg_int(task, 0, &x) != 0) return dt_task_fail(task, "an int, please");
  return dt_int(3 * x);
}
"""


def build_so(tmp_path):
    src = tmp_path / "uploaded.c"
    src.write_text(SO_SRC)
    so = tmp_path / "libadmin_uploaded.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-I", str(ROOT / "include"), str(src),
                    "-o", str(so)], check=True, timeout=60)
    return so


def test_upload_file_so_makes_c_task_callable_new_workers_too(two_workers, tmp_path):
    lc, c = two_workers
    so = build_so(tmp_path)
    triple = dtask.cfunc("admin_uploaded_triple")
    with pytest.raises(Exception):
        c.submit(triple, 2).result(timeout=30)
    c.upload_file(str(so))
    addrs = sorted(c.scheduler_info()["workers"])
    for i, a in enumerate(addrs):
        assert c.submit(triple, 10 + i, workers=[a]).result(timeout=30) == 3 * (10 + i)
    lc.scale(3)
    c.wait_for_workers(3, timeout=60)
    (new,) = set(c.scheduler_info()["workers"]) - set(addrs)
    assert c.submit(triple, 7, workers=[new], allow_other_workers=False).result(timeout=30) == 21


# ---------------------------------------------------------------- small ones

def test_get_versions_scheduler_file_security(two_workers, tmp_path):
    lc, c = two_workers
    v = c.get_versions(check=True, packages=["json"])
    assert set(v) == {"scheduler", "client", "workers"}
    assert sorted(v["workers"]) == sorted(c.scheduler_info()["workers"])
    assert v["client"]["packages"]["dtask"] == dtask.__version__
    assert v["client"]["packages"]["python"] == ".".join(map(str, sys.version_info[:3]))
    for w in v["workers"].values():
        assert w["packages"]["dtask"] == dtask.__version__ and "numpy" in w["packages"]
    f = tmp_path / "sched.json"
    c.write_scheduler_file(str(f))
    info = json.loads(f.read_text())
    assert info["address"].endswith(lc.scheduler_address.split("://")[-1])
    with dtask.Client(scheduler_file=str(f), auth_file=lc.auth_file) as c2:
        assert c2.submit(inc, 1).result(timeout=30) == 2
    sec = dtask.Security(auth_file=lc.auth_file)
    with dtask.Client(lc.scheduler_address, security=sec) as c3:
        assert c3.submit(inc, 2).result(timeout=30) == 3
    with pytest.raises(ValueError, match="TLS"):
        dtask.Security(require_encryption=True)
    with pytest.raises(TypeError):
        dtask.Client(lc.scheduler_address, security="nope")


def test_shutdown_closes_the_cluster():
    lc = dtask.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None)
    try:
        c = dtask.Client(lc)
        assert c.submit(inc, 1).result(timeout=30) == 2
        c.shutdown()
        assert str(lc.status).endswith("closed")
    finally:
        lc.close()
