"""The job scripts of PBSCluster and SLURMCluster (jobqueue.py): dask-jobqueue
0.9.0's options read as it reads them (arguments, then dask config
``jobqueue.<name>.*``, then its jobqueue.yaml defaults) and its directives,
in its order, followed by the dtask worker's command line."""

from __future__ import annotations

import math
import os
import sys
import warnings

# dask-jobqueue 0.9.0's jobqueue.yaml (the keys both classes read): used when
# neither dask_jobqueue (which loads it into dask.config) nor the user's
# config sets a key
_YAML_DEFAULTS = {
    "name": "dask-worker", "cores": None, "memory": None, "processes": None, "python": None,
    "interface": None, "death-timeout": 60, "local-directory": None,
    "shared-temp-directory": None, "extra": None,
    "worker-command": "distributed.cli.dask_worker", "worker-extra-args": [],
    "shebang": "#!/usr/bin/env bash", "queue": None, "account": None,
    "walltime": "00:30:00", "env-extra": None, "job-script-prologue": [],
    "resource-spec": None, "job-extra": None, "job-extra-directives": [],
    "job-directives-skip": [], "log-directory": None, "scheduler-options": {},
    "job-cpu": None, "job-mem": None,
}

_MISSING = object()


def _cfg(config_name, key):
    """dask.config's jobqueue.<config_name>.<key>, else jobqueue.yaml's default."""
    try:
        import dask.config

        v = dask.config.get(f"jobqueue.{config_name}.{key}", _MISSING)
    except ImportError:
        v = _MISSING
    return _YAML_DEFAULTS.get(key) if v is _MISSING else v


def _parse_bytes(s):
    import dask.utils

    return dask.utils.parse_bytes(s)


def _format_bytes(n):
    import dask.utils

    return dask.utils.format_bytes(n).replace(" ", "")


def _parse_seconds(s):
    import dask.utils

    return dask.utils.parse_timedelta(s, default="seconds")


def _walltime_seconds(w):
    """'HH:MM:SS', 'MM:SS', 'D-HH:MM:SS' or minutes -> seconds (None if unknown)."""
    if w is None:
        return None
    s = str(w).strip()
    days = 0
    if "-" in s:
        d, s = s.split("-", 1)
        days = int(d)
    parts = [float(p) for p in s.split(":")]
    if len(parts) == 1:
        return days * 86400 + parts[0] * 60
    while len(parts) < 3:
        parts.insert(0, 0.0)
    h, m, sec = parts
    return days * 86400 + h * 3600 + m * 60 + sec


def nprocesses_nthreads(n):
    """dask's split of n cores into processes x threads (distributed.deploy.local)."""
    if n <= 4:
        processes = n
    else:
        processes = min(f for f in range(1, n + 1) if n % f == 0 and f >= math.sqrt(n))
    return processes, n // processes


def pbs_format_bytes_ceil(n):
    if n >= 10 * (1024**3):
        return "%dGB" % math.ceil(n / (1024**3))
    if n >= 10 * (1024**2):
        return "%dMB" % math.ceil(n / (1024**2))
    if n >= 10 * 1024:
        return "%dkB" % math.ceil(n / 1024)
    return "%dB" % n


def slurm_format_bytes_ceil(n):
    if n >= (1024**3):
        return "%dG" % math.ceil(n / (1024**3))
    if n >= (1024**2):
        return "%dM" % math.ceil(n / (1024**2))
    if n >= 1024:
        return "%dK" % math.ceil(n / 1024)
    return "1K"


class _JobOptions:
    """dask-jobqueue's Job.__init__: the options, read from the arguments,
    then the config, then the defaults, in its order."""

    def __init__(self, config_name, cores=None, memory=None, processes=None, nanny=True,
                 protocol=None, security=None, interface=None, death_timeout=None,
                 local_directory=None, extra=None, worker_command=None, worker_extra_args=None,
                 job_extra=None, job_extra_directives=None, env_extra=None,
                 job_script_prologue=None, header_skip=None, job_directives_skip=None,
                 log_directory=None, shebang=None, python=None, job_name=None, queue=None,
                 project=None, account=None, walltime=None, resource_spec=None, job_cpu=None,
                 job_mem=None, cluster_class="Cluster"):
        c = config_name
        cores = _cfg(c, "cores") if cores is None else cores
        memory = _cfg(c, "memory") if memory is None else memory
        if cores is None or memory is None:
            raise ValueError(
                "You must specify how much cores and memory per job you want to use, for "
                "example:\ncluster = {}(cores={}, memory={!r})".format(
                    cluster_class, cores or 8, memory or "24GB"))
        if python is None:
            python = _cfg(c, "python") or sys.executable
        job_name = _cfg(c, "name") if job_name is None else job_name
        if processes is None:
            processes = _cfg(c, "processes")
            if processes is None:
                processes, _ = nprocesses_nthreads(cores)
        interface = _cfg(c, "interface") if interface is None else interface
        death_timeout = _cfg(c, "death-timeout") if death_timeout is None else death_timeout
        if local_directory is None:
            local_directory = _cfg(c, "local-directory")
        extra = _cfg(c, "extra") if extra is None else extra
        if worker_extra_args is None:
            worker_extra_args = _cfg(c, "worker-extra-args")
        if extra is not None:
            warnings.warn("extra has been renamed to worker_extra_args", FutureWarning)
            if not worker_extra_args:
                worker_extra_args = extra
        job_extra = _cfg(c, "job-extra") if job_extra is None else job_extra
        if job_extra_directives is None:
            job_extra_directives = _cfg(c, "job-extra-directives") or []
        if job_extra is not None:
            warnings.warn("job_extra has been renamed to job_extra_directives", FutureWarning)
            if not job_extra_directives:
                job_extra_directives = job_extra
        env_extra = _cfg(c, "env-extra") if env_extra is None else env_extra
        if job_script_prologue is None:
            job_script_prologue = _cfg(c, "job-script-prologue")
        if env_extra is not None:
            warnings.warn("env_extra has been renamed to job_script_prologue", FutureWarning)
            if not job_script_prologue:
                job_script_prologue = env_extra
        header_skip = _cfg(c, "header-skip") if header_skip is None else header_skip
        if job_directives_skip is None:
            job_directives_skip = _cfg(c, "job-directives-skip") or ()
        if header_skip is not None:
            warnings.warn("header_skip has been renamed to job_directives_skip", FutureWarning)
            if not job_directives_skip:
                job_directives_skip = header_skip
        log_directory = _cfg(c, "log-directory") if log_directory is None else log_directory
        shebang = _cfg(c, "shebang") if shebang is None else shebang
        queue = _cfg(c, "queue") if queue is None else queue
        walltime = _cfg(c, "walltime") if walltime is None else walltime
        if account is None:
            account = _cfg(c, "account")
            if c == "pbs":
                account = account or os.environ.get("PBS_ACCOUNT")
        project = _cfg(c, "project") if project is None else project
        if project is not None:
            warnings.warn("project has been renamed to account", FutureWarning)
            if not account:
                account = project
        if resource_spec is None and c == "pbs":
            resource_spec = _cfg(c, "resource-spec")
        job_cpu = _cfg(c, "job-cpu") if job_cpu is None else job_cpu
        job_mem = _cfg(c, "job-mem") if job_mem is None else job_mem
        if worker_command is None:
            worker_command = _cfg(c, "worker-command")
        # dtask's workers are `python -m dtask worker`, whatever dask's config names
        if worker_command in (None, "distributed.cli.dask_worker", "dask_worker", "dask-worker"):
            worker_command = "dtask worker"
        self.__dict__.update(
            config_name=c, cores=int(cores), memory=parse_memory(memory), processes=int(processes),
            nanny=nanny, protocol=protocol, security=security, interface=interface,
            death_timeout=death_timeout, local_directory=local_directory,
            worker_command=worker_command, worker_extra_args=list(worker_extra_args or []),
            job_extra_directives=list(job_extra_directives or []),
            job_script_prologue=list(job_script_prologue or []),
            job_directives_skip=set(job_directives_skip), log_directory=log_directory,
            shebang=shebang, python=python, job_name=job_name, queue=queue, account=account,
            walltime=walltime, resource_spec=resource_spec, job_cpu=job_cpu, job_mem=job_mem)
        if log_directory is not None and not os.path.exists(log_directory):
            os.makedirs(log_directory)

    @property
    def threads(self):
        return int(self.cores / self.processes)

    @property
    def process_memory(self):
        return _format_bytes(self.memory / self.processes)

    def _skip(self, lines):
        return [ln for ln in lines if not any(s in ln for s in self.job_directives_skip)]

    def header(self):
        if self.config_name == "pbs":
            return self._pbs_header()
        return self._slurm_header()

    def _pbs_header(self):
        h = []
        if self.job_name is not None:
            h.append("#PBS -N %s" % self.job_name)
        if self.queue is not None:
            h.append("#PBS -q %s" % self.queue)
        if self.account is not None:
            h.append("#PBS -A %s" % self.account)
        spec = self.resource_spec
        if spec is None:
            spec = "select=1:ncpus=%d" % self.cores + ":mem=" + pbs_format_bytes_ceil(self.memory)
        h.append("#PBS -l %s" % spec)
        if self.walltime is not None:
            h.append("#PBS -l walltime=%s" % self.walltime)
        if self.log_directory is not None:
            h.append("#PBS -e %s/" % self.log_directory)
            h.append("#PBS -o %s/" % self.log_directory)
        h = self._skip(h)
        h.extend("#PBS %s" % a for a in self.job_extra_directives)
        return "\n".join(h)

    def _slurm_header(self):
        h = []
        if self.job_name is not None:
            h.append("#SBATCH -J %s" % self.job_name)
        if self.log_directory is not None:
            h.append("#SBATCH -e %s/%s-%%J.err" % (self.log_directory, self.job_name or "worker"))
            h.append("#SBATCH -o %s/%s-%%J.out" % (self.log_directory, self.job_name or "worker"))
        if self.queue is not None:
            h.append("#SBATCH -p %s" % self.queue)
        if self.account is not None:
            h.append("#SBATCH -A %s" % self.account)
        h.append("#SBATCH -n 1")
        h.append("#SBATCH --cpus-per-task=%d" % (self.job_cpu or self.cores))
        mem = self.job_mem if self.job_mem is not None else slurm_format_bytes_ceil(self.memory)
        if mem is not None:
            h.append("#SBATCH --mem=%s" % mem)
        if self.walltime is not None:
            h.append("#SBATCH -t %s" % self.walltime)
        h = self._skip(h)
        h.extend("#SBATCH %s" % a for a in self.job_extra_directives)
        return "\n".join(h)

    def command(self, address, name, auth_file=None):
        """the worker command line, as dask-jobqueue's (dtask's worker)."""
        args = ["%s -m %s" % (self.python, self.worker_command), address]
        args += ["--name", str(name), "--nthreads", self.threads,
                 "--memory-limit", self.process_memory]
        if self.processes > 1:
            args += ["--nworkers", self.processes]
        args += ["--nanny" if self.nanny else "--no-nanny"]
        if self.death_timeout is not None:
            args += ["--death-timeout", self.death_timeout]
        if self.local_directory is not None:
            args += ["--local-directory", self.local_directory]
        args += self.worker_extra_args
        if self.interface:
            args += ["--interface", self.interface]
        if auth_file:
            args += ["--auth-file", auth_file]
        return " ".join(map(str, args))

    def script(self, address, name, auth_file=None, array=False):
        prologue = list(self.job_script_prologue)
        if array:  # each array element names its workers after its index
            prologue.append("DTASK_ARRAY_INDEX="
                            "${SLURM_ARRAY_TASK_ID:-${PBS_ARRAY_INDEX:-$PBS_ARRAYID}}")
            name = f"{name}-$DTASK_ARRAY_INDEX"
        return "%s\n%s\n%s\n%s\n" % (self.shebang, self.header(),
                                     "\n".join(filter(None, prologue)),
                                     self.command(address, name, auth_file))


def parse_memory(m):
    return int(_parse_bytes(m)) if isinstance(m, str) else int(m)


def _interface_address(interface):
    """The IPv4 address of a network interface ('eth0', 'ib0')."""
    import fcntl
    import socket
    import struct

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", interface[:15].encode()))
    except OSError as e:
        raise ValueError(f"network interface {interface!r}: {e.strerror}; the interfaces here "
                         f"are {[n for _, n in socket.if_nameindex()]}") from None
    finally:
        s.close()
    return socket.inet_ntoa(packed[20:24])
