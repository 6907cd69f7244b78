"""A cluster started by hand: the C scheduler (dtask scheduler or python -m
dtask scheduler) and Python workers (python -m dtask worker), as on HPC."""

import os
import signal
import subprocess
import sys
import time

import pytest

import dtask


def start(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "dtask", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_scheduler_and_workers_by_hand(tmp_path):
    sfile = tmp_path / "scheduler.json"
    secret = tmp_path / "secret"
    secret.write_text("a shared secret of this test cluster")
    os.chmod(secret, 0o600)
    procs = []
    try:
        procs.append(start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                            "--scheduler-file", str(sfile), "--auth-file", str(secret)]))
        deadline = time.monotonic() + 30
        while not (sfile.exists() and sfile.stat().st_size) and time.monotonic() < deadline:
            assert procs[0].poll() is None, procs[0].stdout.read()
            time.sleep(0.05)
        for i in range(2):
            procs.append(start(["worker", "--scheduler-file", str(sfile), "--nthreads", "1",
                                "--name", f"hand-{i}", "--auth-file", str(secret)],
                               cwd=os.path.dirname(__file__)))
        with dtask.Client(scheduler_file=str(sfile), auth_file=str(secret),
                          set_as_default=False) as c:
            c.wait_for_workers(2, timeout=30)
            pids = c.run(os.getpid)  # the workers are their nannies' children
            assert len(set(pids.values())) == 2
            assert c.submit(lambda x: x * 2, 21).result(timeout=30) == 42
            assert sum(c.gather(c.map(abs, range(-50, 50)))) == 2500
        # without the secret: refused, with a clear error
        with pytest.raises(dtask.DtaskError, match="DT_EAUTH|DT_ECONNECT|auth"):
            dtask.Client(scheduler_file=str(sfile), timeout=3, set_as_default=False)
    finally:
        stop(procs)


def test_usage_errors():
    r = subprocess.run([sys.executable, "-m", "dtask"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "python -m dtask worker" in r.stderr
    r = subprocess.run([sys.executable, "-m", "dtask", "worker", "--nthreads", "0", "127.0.0.1:1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "nthreads" in r.stderr
