"""SLURMCluster(journal=...) / PBSCluster(journal=...): the job-queue
cluster's scheduler keeps a journal (docs/hpc.md).  Without Slurm: the
scheduler starts with the journal file created and scheduler_info() shows
its bytes; a journal without a fixed port warns.  On the local Slurm
(scripts/start-slurm.sh): a job's worker computes, and the journal grows;
every job submitted is cancelled by id at the end."""

import socket
import subprocess
import time
import warnings

import pytest

from dtask import Client, PBSCluster, SLURMCluster

from test_jobqueue import _ours_in_queue, needs_slurm


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _opts(tmp_path, port):
    return dict(cores=1, memory="512MB", queue="batch", walltime="00:10:00",
                log_directory=str(tmp_path / "logs"),
                scheduler_options={"host": "127.0.0.1", "dashboard_address": ":0",
                                   "port": port})


@pytest.mark.parametrize("cls", [SLURMCluster, PBSCluster])
def test_journal_created_and_reported(tmp_path, cls):
    journal = tmp_path / "jq.journal"
    port = _free_port()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fixed port: no warning
        cluster = cls(journal=journal, **_opts(tmp_path, port))
    try:
        assert cluster.journal == str(journal)
        assert cluster.scheduler_address.endswith(f":{port}")
        assert "--journal" not in cluster.job_script()  # the workers are not told
        with open(journal, "rb") as f:
            assert f.read(8) == b"DTJOURNL"
        with Client(cluster, set_as_default=False) as c:
            info = c.scheduler_info()
            assert info["journal_bytes"] > 0
    finally:
        cluster.close()


def test_journal_without_fixed_port_warns(tmp_path):
    opts = _opts(tmp_path, 0)
    with pytest.warns(RuntimeWarning, match="fixed scheduler port"):
        cluster = SLURMCluster(journal=tmp_path / "j", **opts)
    cluster.close()


def _square(x):
    return x * x


@needs_slurm
def test_journal_on_slurm(tmp_path):
    journal = tmp_path / "slurm.journal"
    cluster = SLURMCluster(journal=journal, **_opts(tmp_path, _free_port()))
    ids = set()
    try:
        cluster.scale(jobs=1)
        ids.update(cluster.jobs)
        assert len(ids) == 1
        with Client(cluster, set_as_default=False) as c:
            before = c.scheduler_info()["journal_bytes"]
            c.wait_for_workers(1, timeout=60)
            assert c.submit(_square, 12).result(timeout=60) == 144
            deadline = time.monotonic() + 10
            while c.scheduler_info()["journal_bytes"] <= before and time.monotonic() < deadline:
                time.sleep(0.1)
            assert c.scheduler_info()["journal_bytes"] > before
    finally:
        cluster.close()
        if ids:
            subprocess.run(["scancel"] + sorted(ids), capture_output=True, timeout=30)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _ours_in_queue(ids):
                time.sleep(0.5)
            assert not _ours_in_queue(ids), "jobs left in the queue"
