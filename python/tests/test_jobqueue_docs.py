"""dask-jobqueue's documentation, run on dtask with only the import changed (issue 16).

In the style of test_dask_docs.py: each test is one page of dask-jobqueue's
documentation (docs/source/*.rst of dask/dask-jobqueue, 0.9.0), its code
blocks in order, with `from dask_jobqueue import X` written `from dtask
import X`.  For every cluster a page constructs, dtask's `job_script()` is
compared with dask_jobqueue's for the same arguments (installed next to it),
directive by directive: the shebang, every `#PBS`/`#SBATCH` line in order,
the prologue lines and the worker's options (the worker program differs by
design: `python -m dtask worker` instead of `distributed.cli.dask_worker`).

What the pages leave implicit is made small and concrete: the scheduler on
loopback (`scheduler_options={"host": "127.0.0.1"}`), the jobs' resources
cut down to the local Slurm's one 4-CPU node, 10 jobs -> 2, 480 one-second
tasks -> 40 short ones.  The blocks that can run here run for real on the
local Slurm that scripts/start-slurm.sh starts (PBS through its qsub
wrappers); the pages' queue names ('regular', 'premium', ...) and
interfaces ('ib0') do not exist here, so those clusters are only compared
through job_script(), and starting one with the missing interface is
asserted to fail with dtask's clear error.  Every job a test submits is
cancelled by id at the end, even on failure; only this file's own jobs are
counted.

Pages:
  examples.rst (PBS, SLURM, low-priority SLURM, worker_extra_args/resources
    -- run on Slurm; Moab, SGE, LSF: refused, dtask has PBS and Slurm only),
  clusters-overview.rst (config'd PBSCluster(), scale(jobs=), Client, a
    dask.array computation, adapt(minimum_jobs=, maximum_jobs=),
    adapt(maximum_memory=) -- run on Slurm),
  clusters-configuration.rst (keywords; scale(jobs=)/scale(cores=)/
    scale(memory=) the same -- run on Slurm; jobqueue.yaml; PBSCluster() from
    it; keyword overrides),
  clusters-configuration-setup.rst (cores/memory, GB vs GiB, processes,
    queue, project/account, local-directory, interface),
  clusters-advanced-tips-and-tricks.rst (job_directives_skip,
    job_script_prologue, --lifetime; the walltime workflow -- run on Slurm,
    scaled down),
  debug.rst (print(job_script()), logging at DEBUG).
  interactive.rst (its Python-facing parts: the dashboard's port through
    scheduler_options, distributed.dashboard.link; the rest is shell commands
    for Jupyter and SSH).
Not run: the README (the stored copy is a fork's stub).
"""

from __future__ import annotations

import importlib
import logging
import math
import time
import warnings

import pytest

dask = pytest.importorskip("dask")
dj = pytest.importorskip("dask_jobqueue")
yaml = pytest.importorskip("yaml")

import dtask  # noqa: E402
from jobqueue_compare import _split_script, assert_same_job_script  # noqa: E402
from test_jobqueue import LOOPBACK, SLURM_DOWN, _ours_in_queue, _wait, tracking  # noqa: E402

needs_slurm = pytest.mark.skipif(SLURM_DOWN is not None, reason=f"no Slurm: {SLURM_DOWN}")


# ---------------------------------------------------------------- helpers

def _build(cls, kw):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with cls(**kw) as c:
            s = c.job_script()
    return s, sorted({type(x.message).__name__ for x in w if issubclass(
        x.category, FutureWarning)})


def compare(name, **kw):
    """dtask.<name>(**kw).job_script() against dask_jobqueue.<name>(**kw)'s,
    directive by directive; returns dtask's script."""
    kw.setdefault("scheduler_options", LOOPBACK)
    t, tw = _build(getattr(dj, name), dict(kw))
    o, ow = _build(getattr(dtask, name), dict(kw))
    _, t_cmd = assert_same_job_script(o, t, f"{name}({kw})")
    assert "distributed.cli.dask_worker" in t_cmd
    assert ow == tw  # the same deprecation warnings (project=, job_extra=, ...)
    return o


def refused(name):
    """dask-jobqueue's other batch systems: `from dtask import X` fails clearly."""
    with pytest.raises(ImportError, match=f"cannot import name '{name}' from 'dtask'"):
        exec(f"from dtask import {name}", {})


@pytest.fixture
def track(tmp_path, monkeypatch):
    """track(cluster) -> cluster: every job it submits is cancelled by id at the
    end, even on failure.  Runs in tmp_path (where sbatch/qsub put the jobs'
    output files when the page gives no log_directory)."""
    monkeypatch.chdir(tmp_path)
    yield from tracking()


def _flat(d, prefix):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "scheduler-options":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def yaml_config(tmp_path, text):
    """A jobqueue.yaml written to a folder and read with Dask's own loader
    (as ~/.config/dask/jobqueue.yaml is): the dotted keys for dask.config.set."""
    d = tmp_path / "dask-config"
    d.mkdir(exist_ok=True)
    (d / "jobqueue.yaml").write_text(text)
    cfg = dask.config.collect(paths=[str(d)], env={})
    return _flat(cfg, "")


# ---------------------------------------------------------------- examples.rst

def test_examples_pbs_deployments():
    # from dtask import PBSCluster
    compare("PBSCluster", queue='regular', project='DaskOnPBS', local_directory='$TMPDIR',
            cores=24, processes=6, memory='16GB',
            resource_spec='select=1:ncpus=24:mem=100GB')
    s = compare("PBSCluster", cores=24, processes=6, shebang='#!/usr/bin/env zsh',
                memory="6GB", project='P48500028', queue='premium',
                resource_spec='select=1:ncpus=36:mem=109G', walltime='02:00:00',
                interface='ib0')
    assert s.startswith("#!/usr/bin/env zsh\n")
    assert "#PBS -A P48500028\n" in s and "#PBS -q premium\n" in s
    assert "--nworkers 6" in s and "--nthreads 4" in s and "--interface ib0" in s
    # without a host for the scheduler, 'ib0' is where it would listen: there is
    # no such interface here, and dtask says so (with the ones there are)
    with pytest.raises(ValueError, match=r"network interface 'ib0'.*'lo'"):
        dtask.PBSCluster(cores=24, processes=6, memory="6GB", interface='ib0',
                         scheduler_options={"dashboard_address": ":0"})


def test_examples_moab_sge_lsf_refused():
    # dtask has PBSCluster and SLURMCluster only: the other systems' classes are
    # not there (a clear ImportError, never a cluster of another kind)
    for name in ("MoabCluster", "SGECluster", "LSFCluster", "HTCondorCluster", "OARCluster"):
        refused(name)
        assert not hasattr(dtask, name)
        # dask_jobqueue's namespace, dtask.jobqueue: refused by name, saying why
        with pytest.raises(dtask.NotAvailableInDtask, match=f"{name} is not available in dtask"):
            getattr(importlib.import_module("dtask.jobqueue"), name)(cores=1, memory="1GB")


def test_examples_slurm_deployments():
    s = compare("SLURMCluster", cores=8, processes=4, memory="16GB", project="woodshole",
                walltime="01:00:00", queue="normal")
    assert "#SBATCH -A woodshole\n" in s and "#SBATCH -p normal\n" in s
    # low-priority node usage (job_extra: deprecated, still respected, as there)
    s = compare("SLURMCluster", cores=24, processes=6, memory="16GB", project="co_laika",
                queue='savio2_bigmem',
                job_script_prologue=['export LANG="en_US.utf8"',
                                     'export LANGUAGE="en_US.utf8"',
                                     'export LC_ALL="en_US.utf8"'],
                job_extra=['--qos="savio_lowprio"'])
    assert '#SBATCH --qos="savio_lowprio"\n' in s
    assert 'export LC_ALL="en_US.utf8"\n' in s


@needs_slurm
def test_examples_worker_extra_args_resources(track):
    # from dtask import SLURMCluster, Client
    from dask import delayed

    from dtask import Client, SLURMCluster

    kw = dict(memory="8g", processes=1, cores=2,
              worker_extra_args=["--resources ssdGB=200,GPU=2"])
    s = compare("SLURMCluster", **kw)
    assert " --resources ssdGB=200,GPU=2 " in s.splitlines()[-1]
    cluster = track(SLURMCluster(**kw, scheduler_options=LOOPBACK))
    cluster.scale(2)
    assert _ours_in_queue(list(cluster.jobs)) == 2
    client = Client(cluster)
    try:
        client.wait_for_workers(2, timeout=60)
        info = client.scheduler_info()["workers"]
        assert [w["resources"] for w in info.values()] == [{"ssdGB": 200, "GPU": 2}] * 2
        def step_1_w_single_GPU(data):
            return "Step 1 done for: %s" % data

        def step_2_w_local_IO(data):
            return "Step 2 done for: %s" % data

        stage_1 = [delayed(step_1_w_single_GPU)(i) for i in range(10)]
        stage_2 = [delayed(step_2_w_local_IO)(s2) for s2 in stage_1]
        # the page's per-collection form {tuple(collection): resources}
        result_stage_2 = client.compute(stage_2,
                                        resources={tuple(stage_1): {'GPU': 1},
                                                   tuple(stage_2): {'ssdGB': 100}})
        assert client.gather(result_stage_2) == [
            "Step 2 done for: Step 1 done for: %d" % i for i in range(10)]
        # the restrictions are kept: a collection asking for a resource no worker
        # has waits, in either form, while one the workers have runs
        tpu = [delayed(step_1_w_single_GPU)("tpu")]
        held = client.compute(tpu, resources={tuple(tpu): {'TPU': 1}})
        held2 = client.compute(delayed(step_2_w_local_IO)("x"), resources={'TPU': 1})
        ok = client.compute([delayed(step_2_w_local_IO)("ok")], resources={'GPU': 1})
        assert client.gather(ok) == ["Step 2 done for: ok"]
        assert held[0].status == "pending" and held2.status == "pending"
        client.cancel(held + [held2])
    finally:
        client.close()


# ---------------------------------------------------------------- clusters-overview.rst

@needs_slurm
def test_overview(tmp_path, track):
    # the page's PBSCluster() takes its job from the config (its configuration
    # page): one core, 1 GB, the local Slurm's 'batch' partition
    cfg = yaml_config(tmp_path, """
jobqueue:
  pbs:
    cores: 1
    memory: 1GB
    queue: batch
    walltime: "00:10:00"
    scheduler-options: {host: 127.0.0.1, dashboard_address: ":0"}
""")
    with dask.config.set(cfg):
        from dtask import PBSCluster
        cluster = track(PBSCluster())
        cluster.scale(jobs=2)    # Deploy two single-node jobs (the page: ten)
        ids = list(cluster.jobs)
        assert len(ids) == 2 and _ours_in_queue(ids) == 2

        from dtask import Client
        client = Client(cluster)  # Connect this local process to remote workers
        try:
            # wait for jobs to arrive, depending on the queue, this may take some time
            client.wait_for_workers(2, timeout=60)
            import dask.array as da
            x = da.arange(600, chunks=100).reshape(20, 30) + 1  # Dask commands use the workers
            assert float(x.sum().compute()) == 600 * 601 / 2
            assert int(x.T.dot(x)[0, 0].compute()) == sum(
                (30 * i + 1) ** 2 for i in range(20))
            assert len(client.scheduler_info()["workers"]) == 2

            # Adaptive Scaling (the page: between 10 and 100 jobs)
            a = cluster.adapt(minimum_jobs=1, maximum_jobs=2)
            assert a is not None
            # idle: adapt keeps its minimum, one job
            _wait(lambda: len(cluster.jobs) == 1 and _ours_in_queue(ids) == 1, 45,
                  "adapt(minimum_jobs=1) to leave one job")
            cluster.adapt(maximum_memory="10 TB")  # or use core/memory limits
            _wait(lambda: len(cluster.jobs) == 0 and _ours_in_queue(ids) == 0, 45,
                  "adapt(maximum_memory=) with no load to leave no job")
        finally:
            client.close()
        assert cluster.dashboard_link.startswith("http://")  # interactive.rst's dashboard
        cluster.close()


# ---------------------------------------------------------------- interactive.rst

def test_interactive_dashboard(monkeypatch):
    # "The dashboard's default port is at 8787, and is configurable": through
    # scheduler_options, as dask-jobqueue 0.9.0 (a dashboard_address keyword is
    # refused with the same advice by both)
    for cls in (dj.PBSCluster, dtask.PBSCluster):
        with pytest.raises(ValueError, match="scheduler_options"):
            cls(cores=1, memory="1GB", dashboard_address=":8787")
    # the link shown by the cluster, from the config the page adds
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    for template, want in (("/proxy/{port}/status", "/proxy/%d/status"),
                           ("/user/{JUPYTERHUB_USER}/proxy/{port}/status",
                            "/user/alice/proxy/%d/status")):
        with dask.config.set({"distributed.dashboard.link": template}):
            with dtask.PBSCluster(cores=1, memory="1GB", scheduler_options=LOOPBACK) as c:
                port = int(c._c.dashboard.split("//")[1].split("/")[0].rsplit(":", 1)[1])
                link = c.dashboard_link
                assert link.split("?")[0] == want % port, link


# ---------------------------------------------------------------- clusters-configuration.rst

CONFIG_PAGE_YAML = """
# jobqueue.yaml file
jobqueue:
  pbs:
    cores: 24
    memory: 100GB
    processes: 6
    shebang: "#!/usr/bin/env zsh"

    interface: ib0
    local-directory: $TMPDIR

    resource-spec: "select=1:ncpus=24:mem=100GB"
    queue: regular
    account: my-account
    walltime: 00:30:00
"""


@needs_slurm
def test_configuration(tmp_path, track):
    # Keyword Arguments
    s = compare("PBSCluster",
                cores=24, memory='100GB', shebang='#!/usr/bin/env zsh', processes=6,
                local_directory='$TMPDIR', resource_spec='select=1:ncpus=24:mem=100GB',
                queue='regular', account='my-account', walltime='02:00:00')
    assert "--local-directory $TMPDIR" in s  # expanded when the job starts
    # "cluster.scale(jobs=2) / scale(cores=48) / scale(memory='200 GB'): these
    # all accomplish the same thing" -- on the local Slurm with a job a quarter
    # the size (24 cores/100GB do not fit its node): the same 2 jobs each time
    from dtask import SLURMCluster
    cluster = track(SLURMCluster(cores=2, memory="2GB", processes=1, queue="batch",
                                 walltime="00:10:00", scheduler_options=LOOPBACK))
    cluster.scale(jobs=2)
    first = set(cluster.jobs)
    assert len(first) == 2 and _ours_in_queue(first) == 2
    cluster.scale(cores=4)
    assert set(cluster.jobs) == first
    cluster.scale(memory="4 GB")
    assert set(cluster.jobs) == first and _ours_in_queue(first) == 2
    cluster.scale(memory="2 GB")  # and down: one job left in squeue
    _wait(lambda: len(cluster.jobs) == 1 and _ours_in_queue(first) == 1, 30, "scale down")
    cluster.close()

    # Configuration Files: the page's jobqueue.yaml, read with dask's loader
    cfg = yaml_config(tmp_path, CONFIG_PAGE_YAML)
    assert cfg["jobqueue.pbs.walltime"] == "00:30:00"
    with dask.config.set(cfg):
        s = compare("PBSCluster")  # cluster = PBSCluster()
        assert "#PBS -A my-account\n" in s and "#PBS -l walltime=00:30:00\n" in s
        assert "--interface ib0" in s and "--nworkers 6" in s
        s = compare("PBSCluster", processes=12)  # cluster = PBSCluster(processes=12)
        assert "--nworkers 12" in s and "--nthreads 2" in s
        # without scheduler_options the scheduler would listen on ib0: not here
        with pytest.raises(ValueError, match="network interface 'ib0'"):
            dtask.PBSCluster(scheduler_options={"dashboard_address": ":0"})


# ---------------------------------------------------------------- clusters-configuration-setup.rst

def test_configuration_setup(tmp_path):
    compare("PBSCluster", cores=36, memory='100GB', queue='regular')
    with dask.config.set(yaml_config(tmp_path, """
jobqueue:
  pbs:
    cores: 36
    memory: 100GB
    queue: regular
""")):
        compare("PBSCluster")
    # Gigabyte vs Gibibyte: memory='20GB' is a request for 19GB on PBS's side
    s = compare("PBSCluster", cores=1, memory='20GB')
    assert "mem=19GB" in s
    s = compare("SLURMCluster", cores=1, memory='20GB')
    assert "#SBATCH --mem=19G\n" in s
    s = compare("PBSCluster", cores=1, memory='20GiB')  # always using GiB avoids it
    assert "mem=20GB" in s
    # Processes: cores <= 4 -> one process per core; else at least sqrt(cores)
    s = compare("PBSCluster", cores=4, memory='4GB')
    assert "--nthreads 1" in s and "--nworkers 4" in s
    s = compare("PBSCluster", cores=36, memory='100GB')
    nworkers = int(s.split("--nworkers ")[1].split()[0])
    nthreads = int(s.split("--nthreads ")[1].split()[0])
    assert nworkers >= math.sqrt(36) and nworkers * nthreads == 36
    s = compare("PBSCluster", cores=36, memory='100GB', processes=9)
    assert "--nworkers 9" in s and "--nthreads 4" in s
    # Queue, Project or Account, Local Storage (an environment variable, expanded
    # in the job), each as a config key
    for kind, q in (("pbs", "#PBS -q regular"), ("slurm", "#SBATCH -p regular")):
        with dask.config.set(yaml_config(tmp_path, f"""
jobqueue:
  {kind}:
    cores: 36
    memory: 100GB
    processes: 9
    queue: regular
    project: XYZW-1234
    local-directory: $LOCAL_STORAGE
""")):
            s = compare({"pbs": "PBSCluster", "slurm": "SLURMCluster"}[kind])
            assert q + "\n" in s and "-A XYZW-1234\n" in s
            assert "--local-directory $LOCAL_STORAGE" in s
    # Network Interface: the scheduler listens on the interface named (here
    # only 'lo' exists; 'ib0' is refused with the interfaces there are)
    s = compare("SLURMCluster", cores=1, memory="1GB", interface="lo")
    assert "--interface lo" in s
    with dtask.SLURMCluster(cores=1, memory="1GB", interface="lo",
                            scheduler_options={"dashboard_address": ":0"}) as c:
        assert c.scheduler_address.split("//")[-1].startswith("127.0.0.1:")
    with pytest.raises(ValueError, match=r"network interface 'ib0'.*the interfaces here"):
        dtask.SLURMCluster(cores=1, memory="1GB", interface="ib0",
                           scheduler_options={"dashboard_address": ":0"})


# ------------------------------------------------ clusters-advanced-tips-and-tricks.rst

def test_tips_job_directives_skip_prologue_lifetime(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # log_directory='logs' is made where it runs
    # this will remove any line containing either '--mem' or 'another-string'
    s = compare("SLURMCluster", job_directives_skip=['--mem', 'another-string'],
                cores=2, memory="4GB", job_extra_directives=["--comment=another-string"])
    d = _split_script(s)[1]
    assert not [x for x in d if "--mem" in x]
    # as dask-jobqueue 0.9.0 (compare() checked it): the skip applies to the
    # generated directives, not to the user's own job_extra_directives
    assert d[-1] == "#SBATCH --comment=another-string"
    assert "#SBATCH --cpus-per-task=2\n" in s
    s2 = compare("SLURMCluster", header_skip=['--mem', 'another-string'], cores=2,
                 memory="4GB", job_extra_directives=["--comment=another-string"])
    assert _split_script(s2)[1] == _split_script(s)[1]  # the deprecated name, the same
    # job_script_prologue: the page's HTCondorCluster is not in dtask (refused);
    # "for other batch systems the commands are inserted as separate lines"
    refused("HTCondorCluster")
    job_script_prologue = ['cd /some/path', 'source venv/bin/activate']
    for name in ("SLURMCluster", "PBSCluster"):
        s = compare(name, cores=1, memory="2GB", log_directory='logs', python='python3',
                    job_script_prologue=job_script_prologue)
        lines = s.splitlines()
        i = lines.index('cd /some/path')
        assert lines[i + 1] == 'source venv/bin/activate'
        assert lines[-1].startswith("python3 -m dtask worker ")
    # walltime: --lifetime / --lifetime-stagger
    for name in ("SLURMCluster", "PBSCluster"):
        s = compare(name, walltime="01:00:00", cores=4, memory="16gb",
                    worker_extra_args=["--lifetime", "55m", "--lifetime-stagger", "4m"])
        assert " --lifetime 55m --lifetime-stagger 4m " in s.splitlines()[-1]
    # a lifetime that reaches the walltime is warned about (dtask only)
    with pytest.warns(RuntimeWarning, match="reaches the walltime"):
        dtask.SLURMCluster(walltime="00:10:00", cores=1, memory="1GB",
                           worker_extra_args=["--lifetime", "10m"],
                           scheduler_options=LOOPBACK).close()


@needs_slurm
def test_tips_walltime_workflow(track):
    import numpy as np

    from dtask import Client, as_completed
    from dtask import PBSCluster as Cluster

    # the page's own cluster: walltime one minute, one core, 4gb, adapt 0..4
    cluster = track(Cluster(walltime='00:01:00', cores=1, memory='4gb', queue="batch",
                            scheduler_options=LOOPBACK))
    cluster.adapt(minimum=0, maximum=4)
    client = Client(cluster)
    try:
        # 40 files of 0.05 s (the page: 480 of 1 s, longer than this test may run)
        def features(num_fn):
            num, image_fn = num_fn
            time.sleep(0.05)  # the page: about 1s to compute features on an image
            features = np.random.random(246)
            return num, features

        filenames = [f'img{num}.jpg' for num in range(40)]
        num_files = len(filenames)
        num_features = len(features((0, filenames[0]))[1])
        X = np.zeros((num_files, num_features), dtype=np.float32)
        for future in as_completed(client.map(features, list(enumerate(filenames)))):
            i, v = future.result(timeout=60)
            X[i, :] = v
        assert X.shape == (40, 246) and (X > 0).all(axis=1).all()  # every row filled
        assert len(cluster.workers) >= 1  # adapt submitted jobs for the load
    finally:
        client.close()


# ---------------------------------------------------------------- debug.rst

def test_debug(caplog):
    with dtask.SLURMCluster(cores=1, memory="1GB", scheduler_options=LOOPBACK) as cluster:
        out = cluster.job_script()
        print(out)
        assert out.startswith("#!/usr/bin/env bash\n#SBATCH ")
        assert out.rstrip().split("\n")[-1].split()[1:4] == ["-m", "dtask", "worker"]
        logging.basicConfig(format='%(levelname)s:%(message)s', level=logging.DEBUG)
        # under pytest the root logger has a handler already, so basicConfig does
        # nothing: set the root's level as it does in a plain script
        caplog.set_level(logging.DEBUG)
        assert logging.getLogger("dtask.jobqueue").level == logging.NOTSET  # inherits it
        # the cluster's logger is dtask.jobqueue, as dask-jobqueue's is dask_jobqueue
        assert logging.getLogger("dtask.jobqueue").isEnabledFor(logging.DEBUG)
    # the submission command and its parsing (the page's _job_id_from_submit_output)
    assert cluster.submit_command == "sbatch" and dtask.PBSCluster.submit_command == "qsub"
    assert cluster._job_id("Submitted batch job 4242\n") == "4242"
    with pytest.raises(ValueError, match="Could not parse job id"):
        cluster._job_id("sbatch: error: no partition\n")
