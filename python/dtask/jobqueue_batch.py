"""PBSCluster and SLURMCluster's batch system (jobqueue.py): a job's record,
submitting job scripts with ``sbatch``/``qsub`` (one array job when
``job_array``), cancelling with ``scancel``/``qdel``, and reading the jobs'
states from ``squeue``/``qstat`` -- all through subprocess, bounded in time,
as dask-jobqueue does.  What differs between Slurm and PBS (state names,
array options and ids, output files) is in _SlurmJobs and _PBSJobs."""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import time

logger = logging.getLogger("dtask.jobqueue")


class _Job:
    __slots__ = ("n", "job_id", "names", "state", "submitted", "started", "expiring",
                 "reported", "array_of", "out_path", "connected")

    def __init__(self, n, names):
        self.n, self.names = n, names
        self.job_id = None
        self.state = "PENDING"
        self.submitted = time.monotonic()
        self.started = None
        self.expiring = False  # its workers retire soon: a replacement is on its way
        self.reported = False
        self.array_of = None
        self.out_path = None
        self.connected = False  # one of its workers was seen by the scheduler


class _BatchJobs:
    """JobQueueCluster's part that runs the batch system's commands (a base
    of JobQueueCluster: uses its _opts, _jobs, _tmpdir, submit_command,
    cancel_command and job_id_regexp)."""

    def _call(self, cmd):
        # PBS writes the output files where qsub ran when it does not take
        # `#PBS -o dir/` (Torque-style wrappers): there, log_directory too
        cwd = self._opts.log_directory if cmd[0] == "qsub" else None
        try:  # the jobs' `python -m dtask worker` runs the supervisor (jobqueue_worker.py)
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd,
                               env=dict(os.environ, DTASK_JOBQUEUE_WORKER="1"))
        except FileNotFoundError:
            raise RuntimeError(f"{cmd[0]} not found: is {self.config_name.upper()} installed "
                               "here (and on PATH)?") from None
        if p.returncode != 0:
            raise RuntimeError("Command exited with non-zero exit code.\nExit code: {}\n"
                               "Command:\n{}\nstdout:\n{}\nstderr:\n{}\n".format(
                                   p.returncode, " ".join(cmd), p.stdout, p.stderr))
        return p.stdout

    def _submit(self, count):
        """Submit `count` jobs (one array job if job_array and count > 1)."""
        if count <= 0:
            return
        if self.job_array and count > 1:
            n = self._next
            self._next += 1
            script = self._opts.script(self._address_for_jobs, f"{self._name}-{n}",
                                       self.auth_file, array=True)
            path = self._write_script(n, script)
            out = self._call(shlex.split(self.submit_command) + self._array_args(count) + [path])
            base = self._job_id(out)
            for i in range(count):
                j = _Job(f"{n}-{i}", self._worker_names(n, i))
                j.job_id = self._array_element_id(base, i)
                j.array_of = base
                j.out_path = self._out_path(j.job_id)
                self._jobs[j.n] = j
            logger.info("submitted array job %s (%d jobs)", base, count)
            return
        for _ in range(count):
            n = self._next
            self._next += 1
            j = _Job(n, self._worker_names(n))
            script = self._opts.script(self._address_for_jobs, j.names[0] if
                                       self._opts.processes == 1 else f"{self._name}-{n}",
                                       self.auth_file)
            path = self._write_script(n, script)
            out = self._call(shlex.split(self.submit_command) + [path])
            j.job_id = self._job_id(out)
            j.out_path = self._out_path(j.job_id)
            self._jobs[n] = j

    def _write_script(self, n, script):
        path = os.path.join(self._tmpdir, f"job-{n}.sh")
        with open(path, "w") as f:
            f.write(script)
        return path

    def _job_id(self, out):
        m = re.search(self.job_id_regexp, out)
        if m is None:
            raise ValueError("Could not parse job id from submission command output.\n"
                             f"Job id regexp is {self.job_id_regexp!r}\nSubmission command "
                             f"output is:\n{out}")
        return m.group("job_id")

    def _cancel(self, jobs):
        ids = sorted({j.array_of or j.job_id for j in jobs if j.job_id and j.array_of is None} |
                     {j.job_id for j in jobs if j.array_of is not None})
        if not ids:
            return
        try:
            self._call(shlex.split(self.cancel_command) + ids)
        except RuntimeError as e:  # already gone
            logger.debug("cancel %s: %s", ids, e)

    # what differs between batch systems (_SlurmJobs, _PBSJobs)
    def _states(self, jobs):
        """{job_id: state} (PENDING, RUNNING, or absent when gone)."""
        raise NotImplementedError

    # array ids
    def _array_args(self, count):
        raise NotImplementedError

    def _array_element_id(self, base, i):
        raise NotImplementedError

    def _out_path(self, job_id):
        raise NotImplementedError


class _SlurmJobs:
    """SLURMCluster's squeue states, --array ids and output files."""

    def _states(self, jobs):
        ids = sorted({j.array_of or j.job_id for j in jobs})
        out = self._call(["squeue", "-h", "-o", "%i %T", "-j", ",".join(ids)]) if ids else ""
        st = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2:
                st[parts[0]] = parts[1]
        # an array's pending elements show as BASE_[0-3]
        for j in jobs:
            if j.job_id not in st and j.array_of:
                for k, v in st.items():
                    if k.startswith(j.array_of + "_[") and v == "PENDING":
                        st[j.job_id] = "PENDING"
        return st

    def _array_args(self, count):
        return [f"--array=0-{count - 1}"]

    def _array_element_id(self, base, i):
        return f"{base}_{i}"

    def _out_path(self, job_id):
        d = self._opts.log_directory  # the workers' messages go to standard error
        if d is not None:
            return os.path.join(d, f"{self._opts.job_name or 'worker'}-{job_id.split('_')[0]}.err")
        base, _, idx = job_id.partition("_")
        return os.path.join(os.getcwd(), f"slurm-{base}_{idx}.out" if idx else
                            f"slurm-{base}.out")


class _PBSJobs:
    """PBSCluster's qstat states, -J ids and output files."""

    def _states(self, jobs):
        st = {}
        ids = sorted({j.array_of or j.job_id for j in jobs})  # an array: its one line
        try:
            out = self._call(["qstat"] + ids)
        except RuntimeError as e:  # qstat fails on an id it no longer knows
            out = str(e)
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 6 and parts[0] in ids:
                st[parts[0]] = {"Q": "PENDING", "H": "PENDING", "W": "PENDING",
                                "B": "RUNNING", "R": "RUNNING"}.get(parts[4], parts[4])
        for j in jobs:  # elements of an array take the array's state
            if j.array_of and j.array_of in st:
                st[j.job_id] = st[j.array_of]
        return st

    def _array_args(self, count):
        return ["-J", f"0-{count - 1}"]

    def _array_element_id(self, base, i):
        if "[]" in base:  # PBS Pro: 123[].server -> 123[4].server
            return base.replace("[]", f"[{i}]")
        return f"{base}_{i}"

    def _out_path(self, job_id):
        d = self._opts.log_directory or os.getcwd()
        return os.path.join(d, f"{self._opts.job_name}.e{job_id.split('.')[0]}")
