"""PBSCluster / SLURMCluster (dtask.jobqueue): job_script() against
dask-jobqueue's directive by directive, and, on the local Slurm that
scripts/start-slurm.sh starts (with its PBS qsub wrappers), the seed-shaped
program, scale/adapt counted in squeue, arrays, max_jobs, worker lifetime
with replacement, and a job whose worker cannot reach the scheduler."""

import glob
import os
import shutil
import subprocess
import time
import uuid
import warnings

import pytest

import dtask
from dtask import Client, PBSCluster, SLURMCluster
from dtask.jobqueue import JobQueueCluster
from jobqueue_compare import _cmd_options, _split_script, assert_same_job_script

dask = pytest.importorskip("dask")


def _slurm_up():
    if not shutil.which("sbatch") or not shutil.which("squeue"):
        return "sbatch/squeue not on PATH (run scripts/start-slurm.sh as root)"
    try:
        p = subprocess.run(["squeue", "-h"], capture_output=True, text=True, timeout=10)
    except Exception as e:
        return f"squeue: {e}"
    if p.returncode != 0:
        return "no Slurm controller (run scripts/start-slurm.sh as root): " + p.stderr.strip()
    return None


SLURM_DOWN = _slurm_up()
needs_slurm = pytest.mark.skipif(SLURM_DOWN is not None, reason=f"no Slurm: {SLURM_DOWN}")


LOOPBACK = {"host": "127.0.0.1", "dashboard_address": ":0"}  # tests stay on loopback

# ---------------------------------------------------------------- job_script vs dask-jobqueue

CASES = [
    dict(cores=1, memory="1GB", queue="batch", walltime="00:10:00"),
    dict(cores=8, memory="16GB", processes=2, queue="regular", account="proj42",
         walltime="02:00:00", job_script_prologue=["module load gcc", "export A=1"],
         job_extra_directives=["--exclusive"], local_directory="/scratch",
         death_timeout=30, worker_extra_args=["--lifetime", "55m", "--lifetime-stagger", "4m"],
         job_name="myjob"),
    dict(cores=24, memory="100GB", queue="regular", walltime="01:00:00",
         job_directives_skip=["-n 1", "walltime"],
         log_directory="/tmp/dtask-jq-logs", shebang="#!/bin/bash", python="/opt/py/bin/python3",
         interface="lo"),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("kind", ["slurm", "pbs"])
def test_job_script_matches_dask_jobqueue(kind, case):
    dj = pytest.importorskip("dask_jobqueue")
    opts = dict(CASES[case])
    if kind == "pbs":
        opts["resource_spec"] = "select=1:ncpus=8" if case == 1 else None
        theirs_cls, ours_cls = dj.PBSCluster, PBSCluster
    else:
        if case == 1:
            opts.update(job_cpu=16, job_mem="20G")
        theirs_cls, ours_cls = dj.SLURMCluster, SLURMCluster
    with theirs_cls(**opts, scheduler_options=LOOPBACK) as theirs:
        t = theirs.job_script()
    with ours_cls(**opts, scheduler_options=LOOPBACK) as ours:
        o = ours.job_script()
    assert_same_job_script(o, t, f"{ours_cls.__name__}({opts})")


def test_config_read_as_dask_jobqueue():
    dj = pytest.importorskip("dask_jobqueue")
    cfg = {"jobqueue.slurm.cores": 4, "jobqueue.slurm.memory": "8GB",
           "jobqueue.slurm.queue": "debug", "jobqueue.slurm.walltime": "00:20:00",
           "jobqueue.slurm.job-extra-directives": ["--qos=low"],
           "jobqueue.slurm.job-script-prologue": ["source env.sh"],
           "jobqueue.pbs.cores": 2, "jobqueue.pbs.memory": "2GB",
           "jobqueue.pbs.resource-spec": "select=1:ncpus=2", "jobqueue.pbs.name": "cfgname"}
    with dask.config.set(cfg):
        for theirs_cls, ours_cls in ((dj.SLURMCluster, SLURMCluster), (dj.PBSCluster, PBSCluster)):
            with theirs_cls(scheduler_options=LOOPBACK) as theirs:
                t = theirs.job_script()
            with ours_cls(scheduler_options=LOOPBACK) as ours:
                o = ours.job_script()
            assert _split_script(o)[1] == _split_script(t)[1]
            assert _split_script(o)[2] == _split_script(t)[2]
            assert _cmd_options(o.split("\n")[-2]) == _cmd_options(t.split("\n")[-2])


def test_cores_and_memory_required():
    with pytest.raises(ValueError, match="cores and memory"):
        SLURMCluster(scheduler_options=LOOPBACK)
    with pytest.raises(ValueError, match="scheduler_options"):
        PBSCluster(cores=1, memory="1GB", host="x")


# ---------------------------------------------------------------- on the local Slurm

def _queue_ids():
    p = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30)
    return set(p.stdout.split())


def _ours_in_queue(ids):
    """how many of these job ids squeue lists (array elements: BASE_i and BASE_[..])"""
    q = _queue_ids()
    n = 0
    for i in ids:
        if i in q:
            n += 1
        elif "_" in i and any(x.startswith(i.split("_")[0] + "_[") for x in q):
            n += 1
    return n


def tracking():
    """A generator for fixtures (test_jobqueue_docs.py's too): yields
    add(cluster) -> cluster; when resumed it closes every cluster added and
    cancels by id every job they submitted, even after a failure, then checks
    the queue is rid of them."""
    made, seen = [], set()

    def add(c):
        orig = c._submit

        def tracked(count):
            try:
                return orig(count)
            finally:
                seen.update(j.array_of or j.job_id for j in c._jobs.values() if j.job_id)

        c._submit = tracked
        made.append(c)
        return c

    yield add
    for c in made:
        try:
            c.close()
        except Exception:
            pass
    if seen:
        subprocess.run(["scancel"] + sorted(seen), capture_output=True, timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _ours_in_queue(seen):
            time.sleep(0.5)
        assert not _ours_in_queue(seen), "jobs left in the queue"


@pytest.fixture
def jq(tmp_path):
    """make(cls, **opts): a cluster on the local Slurm, loopback only; every
    job any of them submitted is cancelled at the end, even on failure."""
    track = tracking()
    add = next(track)

    def make(cls, **opts):
        opts.setdefault("scheduler_options", LOOPBACK)
        opts.setdefault("log_directory", str(tmp_path / "logs"))
        opts.setdefault("queue", "batch")
        opts.setdefault("walltime", "00:10:00")
        return add(cls(**opts))

    yield make
    for _ in track:
        pass


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _square(x):
    return x * x


@needs_slurm
@pytest.mark.parametrize("cls", [PBSCluster, SLURMCluster])
def test_seed_program(jq, cls):
    cluster = jq(cls, cores=1, memory="1GB", queue="batch", walltime="00:10:00")
    cluster.scale(jobs=2)
    ids = list(cluster.jobs)
    assert len(ids) == 2
    assert _ours_in_queue(ids) == 2
    client = Client(cluster)
    try:
        client.wait_for_workers(2, timeout=60)
        futs = client.map(_square, range(200))
        total = client.submit(sum, futs)
        assert total.result(timeout=60) == sum(i * i for i in range(200))
        import dask.array as da

        x = da.ones((400, 400), chunks=(100, 100))
        assert float((x + x.T).sum().compute()) == 2 * 400 * 400
        names = set(client.scheduler_info()["workers"][w]["name"]
                    for w in client.scheduler_info()["workers"])
        assert names == set(cluster.workers)
    finally:
        client.close()
    assert cluster.dashboard_link is None or cluster.dashboard_link.startswith("http")
    cluster.close()
    _wait(lambda: _ours_in_queue(ids) == 0, 30, "the jobs to leave the queue after close")


def _slow(x, t=0.5):
    time.sleep(t)
    return x


@needs_slurm
def test_scale_and_adapt_counted_in_squeue(jq):
    cluster = jq(SLURMCluster, cores=1, memory="512MB", processes=1)
    cluster.scale(3)  # workers: 3 jobs of one
    ids = list(cluster.jobs)
    assert len(ids) == 3 and _ours_in_queue(ids) == 3
    cluster.wait_for_workers(3, timeout=60)
    cluster.scale(jobs=1)
    assert list(cluster.jobs) == [ids[0]]  # the newest went first
    _wait(lambda: _ours_in_queue(ids) == 1, 30, "scale down to one job")
    cluster.scale(cores=2)
    assert len(cluster.jobs) == 2
    cluster.scale(memory="1.5GB")  # 3 jobs of 512MB
    assert len(cluster.jobs) == 3
    cluster.scale(0)
    _wait(lambda: _queue_ids().isdisjoint(cluster.jobs) and not cluster.jobs, 30, "scale(0)")
    # adapt: up from zero while work waits, back to zero when idle
    ad = cluster.adapt(minimum_jobs=0, maximum_jobs=2, interval="0.5s", wait_count=2)
    with Client(cluster) as c:
        futs = c.map(_slow, range(12))
        _wait(lambda: len(cluster.jobs) == 2, 30, "adapt to go up to maximum_jobs=2")
        assert c.gather(futs) == list(range(12))
        up = list(cluster.jobs)
        assert _ours_in_queue(up) == 2
        _wait(lambda: not cluster.jobs, 40, "adapt to go back to zero jobs")
        _wait(lambda: _ours_in_queue(up) == 0, 30, "the adapted jobs to leave the queue")
    ad.stop()


@needs_slurm
def test_max_jobs_honoured(jq):
    cluster = jq(SLURMCluster, cores=1, memory="512MB", max_jobs=2)
    with pytest.warns(RuntimeWarning, match="max_jobs is 2"):
        cluster.scale(jobs=5)
    assert len(cluster.jobs) == 2
    assert _ours_in_queue(cluster.jobs) == 2
    with pytest.warns(RuntimeWarning, match="max_jobs is 2"):
        cluster.adapt(minimum=0, maximum_jobs=6, interval="0.3s")
    with Client(cluster) as c:
        futs = c.map(_slow, range(20), t=0.2)
        seen = 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            seen = max(seen, len(cluster.jobs))
            assert len(cluster.jobs) <= 2
            time.sleep(0.2)
        assert c.gather(futs) == list(range(20))
    assert any("max_jobs is 2" in m for m in cluster.messages)


@needs_slurm
@pytest.mark.parametrize("cls", [SLURMCluster, PBSCluster])
def test_array_submission(jq, monkeypatch, cls):
    cluster = jq(cls, cores=1, memory="512MB", job_array=True)
    calls = []
    orig = cluster._call

    def spy(cmd):
        calls.append(cmd)
        return orig(cmd)

    monkeypatch.setattr(cluster, "_call", spy)
    cluster.scale(jobs=3)
    subs = [c for c in calls if c[0] in ("sbatch", "qsub")]
    assert len(subs) == 1
    assert subs[0][1:-1] == (["--array=0-2"] if cls is SLURMCluster else ["-J", "0-2"])
    ids = list(cluster.jobs)
    assert len({i.split("_")[0] for i in ids}) == 1 and len(ids) == 3
    with Client(cluster) as c:
        c.wait_for_workers(3, timeout=60)
        assert sum(c.gather(c.map(_square, range(50)))) == sum(i * i for i in range(50))
        names = {w["name"] for w in c.scheduler_info()["workers"].values()}
    assert names == set(cluster.workers) and len(names) == 3


@needs_slurm
@pytest.mark.filterwarnings("ignore:job .* has been running")
def test_unreachable_scheduler_reported(jq, tmp_path):
    cluster = jq(SLURMCluster, cores=1, memory="512MB", connect_timeout=2, death_timeout=6)
    cluster._worker_address = "127.0.0.1:9"  # nothing listens there
    cluster.scale(jobs=1)
    (jid,) = cluster.jobs
    msg = _wait(lambda: [m for m in cluster.messages if jid in m], 60,
                "the cluster to report the job whose worker never connected")[0]
    assert "none of its workers" in msg and cluster.scheduler_address in msg
    path = msg.rsplit("output file ", 1)[1]
    out = _wait(lambda: os.path.exists(path) and "cannot connect" in open(path).read()
                and open(path).read(), 30, f"the worker's diagnostic in {path}")
    assert "cannot connect to the scheduler at 127.0.0.1:9 from local address" in out
    assert "Connection refused" in out
    # the worker gives up (--death-timeout); the job is not replaced by another doomed one
    _wait(lambda: any("not replacing" in m for m in cluster.messages), 60, "the job to end")
    assert "giving up" in open(path).read()
    time.sleep(2)
    assert cluster.jobs == {}


def _record(i, d, t):
    """a task that leaves one file per execution"""
    time.sleep(t)
    with open(os.path.join(d, f"{i}-{uuid.uuid4().hex}"), "w") as f:
        f.write(os.environ.get("SLURM_JOB_ID", "?"))
    return i


def _add(*xs):
    return sum(xs)


@needs_slurm
def test_lifetime_retires_and_replaces_without_recompute(jq, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    cluster = jq(SLURMCluster, cores=1, memory="512MB",
                 worker_extra_args=["--lifetime", "8s", "--lifetime-stagger", "2s"],
                 replace_lead=4)
    cluster.scale(jobs=2)
    first = set(cluster.jobs)
    with Client(cluster) as c:
        c.wait_for_workers(2, timeout=60)
        # a graph that runs ~25 s on two workers: leaves, then sums of them
        leaves = [c.submit(_record, i, str(runs), 0.6, pure=False) for i in range(80)]
        sums = [c.submit(_add, *leaves[k:k + 10]) for k in range(0, 80, 10)]
        total = c.submit(_add, *sums)
        assert total.result(timeout=120) == sum(range(80))
    files = os.listdir(runs)
    counts = {}
    for f in files:
        counts[int(f.split("-")[0])] = counts.get(int(f.split("-")[0]), 0) + 1
    assert sorted(counts) == list(range(80))
    assert all(v == 1 for v in counts.values()), {k: v for k, v in counts.items() if v > 1}
    jobs_used = {open(runs / f).read() for f in files}
    assert len(jobs_used) > 2  # replacements ran tasks
    # every first job retired (its worker left, so the job ended)
    _wait(lambda: _ours_in_queue(first) == 0, 30, "the first jobs to end after retiring")


@needs_slurm
def test_processes_per_job_and_n_workers(jq):
    cluster = jq(SLURMCluster, cores=2, memory="1GB", processes=2, n_workers=4)
    assert len(cluster.jobs) == 2  # 4 workers, 2 per job
    assert _ours_in_queue(cluster.jobs) == 2
    with Client(cluster) as c:
        c.wait_for_workers(4, timeout=60)
        info = c.scheduler_info()["workers"].values()
        assert {w["name"] for w in info} == set(cluster.workers)
        assert all(w["nthreads"] == 1 for w in info)
        assert sum(c.gather(c.map(_square, range(40)))) == sum(i * i for i in range(40))
    cluster.scale(3)  # whole jobs: ceil(3 / 2)
    assert len(cluster.jobs) == 2
    cluster.scale(2)
    assert len(cluster.jobs) == 1


def test_worker_wrapper_nworkers_and_lifetime_restart(tmp_path):
    """`python -m dtask worker ADDR --nworkers 2 --lifetime 3s --lifetime-restart`
    (no batch system): two workers, each retired after its lifetime and started again."""
    import sys

    with dtask.LocalCluster(n_workers=0, dashboard_address=None) as lc:
        cmd = [sys.executable, "-m", "dtask", "worker", lc.scheduler_address, "--name", "lt",
               "--nthreads", "1", "--nworkers", "2", "--nanny", "--lifetime", "3s",
               "--lifetime-restart", "--death-timeout", "10", "--interface", "lo"]
        if lc.auth_file:
            cmd += ["--auth-file", lc.auth_file]
        log = open(tmp_path / "wrapper.err", "w")
        p = subprocess.Popen(cmd, stderr=log, env=dict(os.environ))
        try:
            with Client(lc) as c:
                def names():
                    return {w["name"]: a for a, w in c.scheduler_info()["workers"].items()}

                first = _wait(lambda: len(names()) == 2 and names(), 30, "two workers")
                assert set(first) == {"lt-0", "lt-1"}
                # both retire after 3 s and come back as new processes (new addresses)
                _wait(lambda: len(names()) == 2 and set(names().values()).isdisjoint(
                    first.values()), 30, "the workers to retire and restart")
                assert c.submit(_square, 7).result(timeout=30) == 49
        finally:
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            log.close()
    text = open(tmp_path / "wrapper.err").read()
    # the C worker's own lifetime (src/worker/lifetime.c) and its nanny's restart
    assert "lifetime of" in text and "starting a fresh one (--lifetime-restart)" in text


def test_worker_lifetime_without_wrapper(tmp_path):
    """`python -m dtask worker ADDR --lifetime 4s` (no supervisor: the C
    worker's own lifetime): it retires, its result moved to the other worker,
    and exits 0."""
    import sys

    from dtask import jobqueue_worker

    args = ["--name", "lt-py", "--nthreads", "1", "--lifetime", "4s", "--lifetime-stagger", "0.2s"]
    assert not jobqueue_worker.wants_wrapper(args) or os.environ.get(jobqueue_worker.ENV) == "1"
    env = dict(os.environ)
    env.pop(jobqueue_worker.ENV, None)
    with dtask.LocalCluster(n_workers=1, dashboard_address=None) as lc:
        cmd = [sys.executable, "-m", "dtask", "worker", lc.scheduler_address] + args
        if lc.auth_file:
            cmd += ["--auth-file", lc.auth_file]
        log = open(tmp_path / "worker.err", "w")
        p = subprocess.Popen(cmd, stderr=log, env=env)
        try:
            with Client(lc) as c:
                _wait(lambda: "lt-py" in {w["name"] for w in c.scheduler_info()["workers"].values()},
                      30, "the worker")
                f = c.submit(_square, 9, workers=["lt-py"], pure=False)
                assert f.result(timeout=30) == 81
                assert p.wait(timeout=30) == 0  # retired by itself: a clean exit
                assert "lt-py" not in {w["name"] for w in c.scheduler_info()["workers"].values()}
                assert len(c.who_has(f)[f.key]) == 1  # moved to the other worker
                assert c.submit(_square, f).result(timeout=30) == 81 * 81
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()
    assert "lifetime of" in open(tmp_path / "worker.err").read()


def test_worker_wrapper_bad_interface_and_address():
    import sys

    p = subprocess.run([sys.executable, "-m", "dtask", "worker", "127.0.0.1:9", "--nanny",
                        "--interface", "nosuch0"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "network interface 'nosuch0'" in p.stderr and "'lo'" in p.stderr
    # as in a job submitted by the cluster (DTASK_JOBQUEUE_WORKER=1 in its environment)
    p = subprocess.run([sys.executable, "-m", "dtask", "worker", "127.0.0.1:9", "--nanny",
                        "--death-timeout", "1"], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, DTASK_JOBQUEUE_WORKER="1"))
    assert p.returncode == 1
    assert "cannot connect to the scheduler at 127.0.0.1:9 from local address 127.0.0.1" \
        in p.stderr and "Connection refused" in p.stderr and "giving up" in p.stderr


@needs_slurm
def test_jobs_failing_at_start_are_not_resubmitted(jq):
    """a job that ends before its workers connect (here: a wrong python) is
    reported and not replaced: no submission storm."""
    cluster = jq(SLURMCluster, cores=1, memory="512MB", python="/nonexistent/python")
    cluster.scale(jobs=2)
    first = set(cluster.jobs)
    seen = set(first)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (cluster.jobs or len(cluster.messages) < 2):
        seen |= set(cluster.jobs)
        time.sleep(0.2)
    time.sleep(2)  # a few more monitor rounds
    seen |= set(cluster.jobs)
    assert seen == first and cluster.jobs == {}
    ended = [m for m in cluster.messages if "not replacing" in m]
    assert len(ended) == 2
    path = ended[0].rsplit("output file ", 1)[1]
    assert "/nonexistent/python" in open(path).read()


@needs_slurm
def test_jobs_cancelled_when_the_interpreter_exits(tmp_path):
    import sys

    script = tmp_path / "leave.py"
    script.write_text(
        "from dtask import SLURMCluster\n"
        "c = SLURMCluster(cores=1, memory='512MB', queue='batch', log_directory=%r,\n"
        "                 scheduler_options={'host': '127.0.0.1', 'dashboard_address': ':0'})\n"
        "c.scale(jobs=1)\n"
        "print(list(c.jobs)[0])\n" % str(tmp_path))
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                       cwd=str(tmp_path))
    jid = p.stdout.strip()
    try:
        assert p.returncode == 0 and jid.isdigit(), p.stderr
        _wait(lambda: not _ours_in_queue([jid]), 20, "the job to be cancelled at exit")
    finally:
        if jid.isdigit():
            subprocess.run(["scancel", jid], capture_output=True, timeout=30)
