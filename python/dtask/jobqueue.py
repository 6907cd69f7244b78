"""PBSCluster and SLURMCluster: dask-jobqueue's classes on dtask.

A dtask scheduler runs in this process's machine (as LocalCluster's, with no
workers of its own); every job runs ``processes`` workers (``python -m dtask
worker``) that connect back to it.  The constructor options, their names,
their defaults and the dask config keys (``jobqueue.pbs.*``,
``jobqueue.slurm.*``, from dask-jobqueue's ``jobqueue.yaml`` or the user's
``~/.config/dask/jobqueue.yaml``) are dask-jobqueue 0.9.0's, and
``job_script()`` writes the same directives.

Scripts are written and submitted here in Python (``sbatch``/``qsub`` and
``scancel``/``qdel`` through subprocess), as dask-jobqueue does: a user's
``job_extra_directives``/``job_directives_skip`` and config behave exactly as
there.  A thread (the monitor) polls the batch system every
``poll_interval`` seconds: it forgets jobs that ended, replaces them while the
cluster wants them, submits the replacement of a job whose workers will
retire (``--lifetime`` in ``worker_extra_args``) ahead of time, and reports
jobs running whose workers never connected.

Beyond dask-jobqueue: ``max_jobs`` (never more jobs queued or running than
that, with a warning naming the limit), ``job_array=True`` (scaling up by N
jobs is one ``sbatch --array`` / ``qsub -J`` submission), ``connect_timeout``
(a running job whose workers have not connected after that long is reported
with its output file) -- see docs/hpc.md.

This file is the classes: their options, job_script(), scale(), adapt(),
close().  The job scripts and the options read as dask-jobqueue reads them are
jobqueue_script.py's; running sbatch/qsub, scancel/qdel and squeue/qstat (and
what differs between Slurm and PBS) jobqueue_batch.py's; the monitor thread
and adapt's loop jobqueue_monitor.py's.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import tempfile
import threading
import uuid
import warnings

from .cluster import Status, dashboard_link
from .jobqueue_batch import _BatchJobs, _Job, _PBSJobs, _SlurmJobs  # noqa: F401
from .jobqueue_monitor import _JobAdaptive, _JobMonitor
from .jobqueue_script import (_JobOptions, _cfg, _interface_address, _parse_seconds,  # noqa: F401
                              _walltime_seconds, nprocesses_nthreads, parse_memory,
                              pbs_format_bytes_ceil, slurm_format_bytes_ceil)

logger = logging.getLogger("dtask.jobqueue")


class JobQueueCluster(_BatchJobs, _JobMonitor):
    """The common part of PBSCluster and SLURMCluster (dask-jobqueue's
    JobQueueCluster): a dtask scheduler here, workers in batch jobs."""

    config_name = None
    submit_command = None
    cancel_command = None
    job_id_regexp = r"(?P<job_id>\d+(?:\[\])?(?:\.[\w.-]+)?)"

    def __init__(self, n_workers=0, job_cls=None, loop=None, security=None,
                 shared_temp_directory=None, silence_logs="error", name=None,
                 asynchronous=False, dashboard_address=None, host=None, scheduler_options=None,
                 scheduler_cls=None, interface=None, protocol=None, config_name=None,
                 max_jobs=None, job_array=False, connect_timeout=120, poll_interval=1.0,
                 replace_lead=None, journal=None, **job_kwargs):
        cls_name = type(self).__name__
        if dashboard_address is not None:
            raise ValueError(
                "Please pass 'dashboard_address' through 'scheduler_options': use\n"
                'cluster = {0}(..., scheduler_options={{"dashboard_address": ":12345"}}) '
                'rather than\n'
                'cluster = {0}(..., dashboard_address="12435")'.format(cls_name))
        if host is not None:
            raise ValueError(
                "Please pass 'host' through 'scheduler_options': use\n"
                'cluster = {0}(..., scheduler_options={{"host": "your-host"}}) rather than\n'
                'cluster = {0}(..., host="your-host")'.format(cls_name))
        if asynchronous:
            raise ValueError(f"{cls_name}(asynchronous=True) is not supported by dtask; "
                             "use it synchronously")
        if security not in (None, True, False):
            raise ValueError(
                f"{cls_name}(security=...): dtask's batch jobs use the cluster's shared secret "
                "(on by default: an auth file in shared_temp_directory or ~/.dtask, readable "
                "only by you); security=False turns it off.  TLS certificates for batch "
                "workers are not supported here yet")
        self.status = Status.created
        config_name = config_name or self.config_name
        if interface is None:
            interface = _cfg(config_name, "interface")
        if scheduler_options is None:
            scheduler_options = _cfg(config_name, "scheduler-options") or {}
        scheduler_options = dict({"dashboard_address": ":8787"}, **scheduler_options)
        if "host" not in scheduler_options and "interface" not in scheduler_options:
            scheduler_options["interface"] = interface
        self._job_kwargs = dict(job_kwargs, interface=interface, protocol=protocol)
        self._opts = _JobOptions(config_name, cluster_class=cls_name, **self._job_kwargs)
        self.shared_temp_directory = shared_temp_directory
        self.max_jobs = None if max_jobs is None else int(max_jobs)
        self.job_array = bool(job_array)
        self.connect_timeout = _parse_seconds(connect_timeout)
        self.poll_interval = float(poll_interval)
        self._name = name or uuid.uuid4().hex[:8]
        self.name = name
        self._lifetime = self._lifetime_of(self._opts.worker_extra_args)
        self._replace_lead = replace_lead
        self._worker_address = None  # tests: the address the jobs are told (else the scheduler's)
        wall = _walltime_seconds(self._opts.walltime)
        if self._lifetime is not None and wall and sum(self._lifetime) >= wall:
            warnings.warn(f"--lifetime {self._lifetime[0]:.0f}s (+- {self._lifetime[1]:.0f}s) "
                          f"reaches the walltime ({self._opts.walltime}): the batch system may "
                          "kill workers before they retire; give a lifetime a few minutes "
                          "shorter", RuntimeWarning, stacklevel=2)
        # the workers find the modules this interpreter imports, as LocalCluster's
        # (sbatch and qsub pass the environment on; a job's own setup comes first)
        os.environ["DTASK_SYS_PATH"] = os.pathsep.join(p for p in sys.path if p)
        # the scheduler (LocalCluster's, without workers of its own)
        from . import _core
        from .cluster import _parse_port

        dport, no_dash = _parse_port(scheduler_options.get("dashboard_address"))
        shost = scheduler_options.get("host")
        if shost is None and scheduler_options.get("interface"):
            shost = _interface_address(scheduler_options["interface"])
        if shost is None:  # as Dask's scheduler: the address other machines reach
            shost = _default_host()
        no_auth = security is False
        # journal=PATH: the scheduler keeps a journal (docs/hpc.md); a restart
        # must listen on the same port with the same secret to carry on
        self.journal = None if journal is None else os.path.abspath(os.fspath(journal))
        if self.journal and not int(scheduler_options.get("port") or 0):
            warnings.warn(f"{cls_name}(journal=...) with no fixed scheduler port: a restarted "
                          "scheduler must listen on the same port to carry on; give "
                          "scheduler_options={'port': N}", RuntimeWarning, stacklevel=2)
        self._c = _core.CLocalCluster(
            n_workers=0, threads_per_worker=1, dashboard_port=dport, no_dashboard=no_dash,
            role_command=[sys.executable, "-m", "dtask"], timeout_ms=30000,
            log_level="error" if silence_logs else None, no_auth=no_auth, host=shost,
            port=int(scheduler_options.get("port") or 0), start_empty=True,
            journal=self.journal)
        # the shared secret, where compute nodes read it (shared_temp_directory,
        # else ~/.dtask: home folders are shared on most clusters)
        self._auth_copy = None
        if self._c.auth_file:
            d = os.path.expanduser(os.path.expandvars(shared_temp_directory or
                                                      _cfg(config_name, "shared-temp-directory")
                                                      or "~/.dtask"))
            os.makedirs(d, mode=0o700, exist_ok=True)
            self._auth_copy = os.path.join(d, f"jobqueue-{self._name}-{os.getpid()}.auth")
            with open(self._c.auth_file, "rb") as f:
                secret = f.read()
            fd = os.open(self._auth_copy, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secret)
        self._lock = threading.RLock()
        self._jobs = {}  # n -> _Job
        self._next = 0
        self._target = 0  # jobs wanted
        self._adaptive = None
        self._warned_max = None
        self.messages = []  # what the monitor reported (also logged as warnings)
        self._tmpdir = tempfile.mkdtemp(prefix=f"dtask-jobqueue-{self._name}-")
        self._stop = threading.Event()
        self._monitor = threading.Thread(target=self._run_monitor, name="dtask-jobqueue",
                                         daemon=True)
        self.status = Status.running
        self._monitor.start()
        # as dask-jobqueue: the jobs are cancelled when this interpreter exits
        import atexit
        import weakref

        ref = weakref.ref(self)
        atexit.register(lambda: ref() is not None and ref().status == Status.running
                        and ref().close())
        if n_workers:
            self.scale(n_workers)

    # ------------------------------------------------------------ naming
    @staticmethod
    def _lifetime_of(args):
        """(lifetime, stagger) in seconds from --lifetime/--lifetime-stagger in
        worker_extra_args, or None."""
        args = [str(a) for a in args]
        vals = {}
        for i, a in enumerate(args):
            for opt in ("--lifetime", "--lifetime-stagger"):
                if a == opt and i + 1 < len(args):
                    vals[opt] = _parse_seconds(args[i + 1])
                elif a.startswith(opt + "="):
                    vals[opt] = _parse_seconds(a.split("=", 1)[1])
        if "--lifetime" not in vals:
            return None
        return vals["--lifetime"], vals.get("--lifetime-stagger", 0)

    @property
    def scheduler_address(self):
        return self._c.address

    @property
    def _address_for_jobs(self):
        return self._worker_address or self.scheduler_address

    @property
    def auth_file(self):
        return self._auth_copy or self._c.auth_file

    @property
    def dashboard_link(self):
        """The dashboard's address; with Dask's `distributed.dashboard.link`
        config set (dask-jobqueue's interactive.rst: "/proxy/{port}/status"
        behind Jupyter) that template, formatted as Dask's Cluster does
        (scheme, host, port and the environment), keeping dtask's token."""
        return dashboard_link(self._c.dashboard)

    @property
    def job_name(self):
        return self._opts.job_name

    @property
    def job_header(self):
        return self._opts.header()

    def job_script(self):
        """The script each job runs (with 'dummy-name' for the worker name, as
        dask-jobqueue's)."""
        return self._opts.script(self.scheduler_address, "dummy-name", self.auth_file)

    def _worker_names(self, n, array_index=None):
        base = f"{self._name}-{n}" if array_index is None else f"{self._name}-{n}-{array_index}"
        if self._opts.processes > 1:
            return [f"{base}-{i}" for i in range(self._opts.processes)]
        return [base]

    # ------------------------------------------------------------ scaling
    # (how many jobs are wanted; jobqueue_monitor.py submits or cancels to match)
    def _limit(self, jobs, what):
        if self.max_jobs is not None and jobs > self.max_jobs:
            asked = "no limit on" if jobs == math.inf else jobs
            msg = (f"{type(self).__name__}: {what} asks for {asked} jobs but max_jobs is "
                   f"{self.max_jobs}: at most {self.max_jobs} jobs (the queue's per-user limit)")
            if self._warned_max != (jobs, what):
                warnings.warn(msg, RuntimeWarning, stacklevel=3)
                logger.warning(msg)
                self.messages.append(msg)
                self._warned_max = (jobs, what)
            return self.max_jobs
        return jobs

    def scale(self, n=None, jobs=0, memory=None, cores=None):
        """Scale to n workers, or jobs jobs, or enough jobs for cores/memory
        (dask-jobqueue's rounding: whole jobs)."""
        if n is not None:
            jobs = int(math.ceil(n / self._opts.processes))
        elif cores is not None:
            jobs = int(math.ceil(cores / self._opts.cores))
        elif memory is not None:
            jobs = int(math.ceil(parse_memory(memory) / self._opts.memory))
        jobs = int(jobs)
        if jobs < 0:
            raise ValueError(f"scale: jobs must be >= 0, not {jobs}")
        if self._adaptive is not None and not getattr(self, "_from_adaptive", False):
            self._adaptive.stop()
            self._adaptive = None
        self._scale_jobs(self._limit(jobs, "scale"))

    def adapt(self, minimum=0, maximum=math.inf, minimum_jobs=None, maximum_jobs=None,
              minimum_cores=None, maximum_cores=None, minimum_memory=None, maximum_memory=None,
              interval="1s", wait_count=3, target_duration="5s", **kwargs):
        """Grow and shrink with the load, between the bounds (workers, or
        jobs with minimum_jobs/maximum_jobs); max_jobs caps it."""
        p = self._opts.processes
        if minimum_jobs is not None:
            minimum = minimum_jobs * p
        if maximum_jobs is not None:
            maximum = maximum_jobs * p
        if minimum_cores is not None:
            minimum = max(minimum, math.ceil(minimum_cores / self._opts.threads))
        if maximum_cores is not None:
            maximum = min(maximum, maximum_cores // self._opts.threads)
        if minimum_memory is not None:
            minimum = max(minimum, math.ceil(parse_memory(minimum_memory) * p / self._opts.memory))
        if maximum_memory is not None:
            maximum = min(maximum, parse_memory(maximum_memory) * p // self._opts.memory)
        if minimum > maximum:
            raise ValueError(f"adapt: minimum {minimum} is over maximum {maximum}")
        if self.max_jobs is not None and maximum > self.max_jobs * p:
            self._limit(math.ceil(maximum / p) if maximum != math.inf else math.inf, "adapt")
            maximum = self.max_jobs * p
        if self._adaptive is not None:
            self._adaptive.stop()
        self._adaptive = _JobAdaptive(self, minimum, maximum, interval, wait_count)
        return self._adaptive

    # ------------------------------------------------------------ introspection
    @property
    def jobs(self):
        """{job id: state} of this cluster's jobs (queued or running)."""
        with self._lock:
            return {j.job_id: j.state for j in self._jobs.values()}

    @property
    def workers(self):
        with self._lock:
            return {w: j.job_id for j in self._jobs.values() for w in j.names}

    @property
    def plan(self):
        with self._lock:
            return {w for j in self._live_jobs for w in j.names}

    requested = plan

    @property
    def observed(self):
        from .client import Client

        with Client(self, set_as_default=False) as c:
            return {w["name"] for w in c.scheduler_info()["workers"].values()}

    def scheduler_info(self, n_workers=-1):
        from .client import Client

        with Client(self, set_as_default=False) as c:
            return c.scheduler_info(n_workers)

    def wait_for_workers(self, n_workers=1, timeout=None):
        from .client import Client

        with Client(self, set_as_default=False) as c:
            c.wait_for_workers(n_workers, timeout)

    def get_client(self):
        from .client import Client

        return Client(self)

    def close(self, timeout=None):
        if self.status == Status.closed:
            return
        self.status = Status.closing
        if self._adaptive is not None:
            self._adaptive.stop()
            self._adaptive = None
        self._stop.set()
        if self._monitor is not threading.current_thread():
            self._monitor.join(timeout=30)
        with self._lock:
            jobs = list(self._jobs.values())
            self._jobs.clear()
        self._cancel(jobs)
        mc = getattr(self, "_mon_client", None)
        if mc is not None:
            try:
                mc.close()
            except Exception:
                pass
        self._c.close()
        if self._auth_copy:
            try:
                os.unlink(self._auth_copy)
            except OSError:
                pass
        import shutil

        shutil.rmtree(self._tmpdir, ignore_errors=True)  # the job scripts
        self.status = Status.closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            if self.status == Status.running:
                self.close()
        except Exception:
            pass

    def __repr__(self):
        return (f"{type(self).__name__}({self.scheduler_address!r}, jobs={len(self._jobs)}, "
                f"workers={sum(len(j.names) for j in self._jobs.values())})")


class SLURMCluster(_SlurmJobs, JobQueueCluster):
    """dask_jobqueue.SLURMCluster on dtask: workers in sbatch jobs.

    >>> cluster = SLURMCluster(cores=24, memory="100GB", queue="regular",
    ...                        walltime="02:00:00")
    >>> cluster.scale(jobs=10)
    >>> client = Client(cluster)
    """

    config_name = "slurm"
    submit_command = "sbatch"
    cancel_command = "scancel"


class PBSCluster(_PBSJobs, JobQueueCluster):
    """dask_jobqueue.PBSCluster on dtask: workers in qsub jobs.

    >>> cluster = PBSCluster(cores=24, memory="100GB", queue="regular",
    ...                      walltime="02:00:00")
    >>> cluster.scale(jobs=10)
    >>> client = Client(cluster)
    """

    config_name = "pbs"
    submit_command = "qsub"
    cancel_command = "qdel"


def _default_host():
    """This machine's address toward the outside (as dask's get_ip), or loopback."""
    import socket

    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.connect(("8.8.8.8", 80))
            return s.getsockname()[0]
        finally:
            s.close()
    except OSError:
        return "127.0.0.1"


# dask-jobqueue's other batch systems: refused by name, never a cluster of
# another kind (`from dtask.jobqueue import SGECluster` for
# `from dask_jobqueue import SGECluster`)
from .compat import _refusing_class  # noqa: E402

_OTHERS = ("dtask drives Slurm and PBS (with their qsub/sbatch), the two it is tested on; "
           "on {} start `dtask scheduler` and submit `python -m dtask worker ADDRESS "
           "--auth-file F` in your own job script (docs/hpc.md)")
SGECluster = _refusing_class("SGECluster", _OTHERS.format("SGE"))
LSFCluster = _refusing_class("LSFCluster", _OTHERS.format("LSF"))
HTCondorCluster = _refusing_class("HTCondorCluster", _OTHERS.format("HTCondor"))
MoabCluster = _refusing_class("MoabCluster", _OTHERS.format("Moab"))
OARCluster = _refusing_class("OARCluster", _OTHERS.format("OAR"))

__all__ = ["PBSCluster", "SLURMCluster", "JobQueueCluster", "SGECluster", "LSFCluster",
           "HTCondorCluster", "MoabCluster", "OARCluster"]
