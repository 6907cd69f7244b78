"""Issue 18: a scheduler with a journal (python -m dtask scheduler --journal)
killed with SIGKILL while a client's futures are pending, and started again
at the same address: the futures resolve with the right values, and
wait/as_completed go on.  Also LocalCluster(journal=...) writes a journal."""

import os
import signal
import socket
import subprocess
import sys
import time

import dtask


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, log, cwd):
    # run in cwd (a worker killed with SIGKILL leaves its spill folder there);
    # this folder on the path, so that the workers import this module
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (here, os.environ.get("PYTHONPATH")) if p))
    return subprocess.Popen([sys.executable, "-m", "dtask", *args], stdout=log,
                            stderr=subprocess.STDOUT, cwd=cwd, env=env)


def _stop(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait(timeout=30)


def slow_square(x):
    time.sleep(0.02)
    return x * x


def test_scheduler_killed_and_restarted(tmp_path):
    port = _free_port()
    addr = f"127.0.0.1:{port}"
    journal = tmp_path / "sched.journal"
    log = open(tmp_path / "log.txt", "w")
    sargs = ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
             "--journal", str(journal), "--journal-grace", "5s"]
    procs = [_start(sargs, log, tmp_path)]
    try:
        procs.append(_start(["worker", addr, "--nthreads", "2", "--no-nanny"], log, tmp_path))
        procs.append(_start(["worker", addr, "--nthreads", "2", "--no-nanny"], log, tmp_path))
        deadline = time.monotonic() + 30
        client = None
        while client is None and time.monotonic() < deadline:
            try:
                client = dtask.Client(addr, timeout=2, set_as_default=False)
            except Exception:
                time.sleep(0.1)
        assert client is not None
        with client:
            client.wait_for_workers(2, timeout=30)
            futs = client.map(slow_square, range(400))
            total = client.submit(sum, futs)
            first = futs[0].result(timeout=30)
            assert first == 0
            # kill the scheduler mid-way and start it again at the same address
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait(timeout=10)
            time.sleep(0.3)
            procs[0] = _start(sargs, log, tmp_path)
            done = dtask.wait(futs, timeout=120)
            assert len(done.done) == 400 and not done.not_done
            seen = set()
            for f in dtask.as_completed(futs):
                seen.add(f.key)
            assert len(seen) == 400
            assert client.gather(futs) == [x * x for x in range(400)]
            assert total.result(timeout=60) == sum(x * x for x in range(400))
            info = client.scheduler_info()
            assert info is not None
        with open(journal, "rb") as f:
            assert f.read(8) == b"DTJOURNL"
    finally:
        _stop(procs)
        log.close()


def test_local_cluster_journal(tmp_path):
    journal = tmp_path / "lc.journal"
    with dtask.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None,
                            journal=journal) as lc:
        with dtask.Client(lc, set_as_default=False) as c:
            assert c.submit(slow_square, 7).result(timeout=30) == 49
    with open(journal, "rb") as f:
        assert f.read(8) == b"DTJOURNL"


def test_coordination_across_restart(tmp_path):
    """Variable, Queue, Event and Lock from Python across a scheduler killed
    with SIGKILL and started again; a Queue.get blocked at the crash
    completes with the item put after the restart."""
    import threading

    port = _free_port()
    addr = f"127.0.0.1:{port}"
    journal = tmp_path / "coord.journal"
    log = open(tmp_path / "log.txt", "w")
    sargs = ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
             "--journal", str(journal), "--journal-grace", "2s",
             "--journal-client-grace", "5s"]
    procs = [_start(sargs, log, tmp_path)]
    try:
        deadline = time.monotonic() + 30
        client = None
        while client is None and time.monotonic() < deadline:
            try:
                client = dtask.Client(addr, timeout=2, set_as_default=False,
                                      name="py-coord")
            except Exception:
                time.sleep(0.1)
        assert client is not None
        with client:
            v = dtask.Variable("jv", client=client)
            v.set({"answer": 41})
            q = dtask.Queue("jq", client=client)
            q.put("first")
            q.put("second")
            q.put("third")
            assert q.get(timeout=5) == "first"
            ev = dtask.Event("je", client=client)
            ev.set()
            lock = dtask.Lock("jl", client=client)
            assert lock.acquire(timeout=5)
            got = {}

            def getter():
                try:
                    got["value"] = dtask.Queue("jq2", client=client).get(timeout=60)
                except Exception as e:  # the test fails on it below
                    got["error"] = repr(e)

            t = threading.Thread(target=getter, daemon=True)
            t.start()
            time.sleep(0.5)  # the get waits at the scheduler
            assert not got
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait(timeout=10)
            time.sleep(0.3)
            procs[0] = _start(sargs, log, tmp_path)
            # the client reconnects by itself; its calls work again
            size, deadline = None, time.monotonic() + 30
            while size is None and time.monotonic() < deadline:
                try:
                    size = q.qsize()
                except Exception:
                    time.sleep(0.1)
            assert size == 2
            assert v.get(timeout=5) == {"answer": 41}
            assert q.get(timeout=5) == "second"
            assert q.get(timeout=5) == "third"
            assert ev.is_set()
            assert ev.wait(timeout=5)
            assert lock.locked()
            lock.release()  # this client held it before the crash, and still does
            assert not lock.locked()
            assert not got  # still waiting, not failed
            dtask.Queue("jq2", client=client).put("after")
            t.join(timeout=30)
            assert got == {"value": "after"}
    finally:
        _stop(procs)
        log.close()
