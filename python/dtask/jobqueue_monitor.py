"""The monitor of PBSCluster and SLURMCluster (jobqueue.py): it keeps the
number of jobs the cluster wants.  scale() and adapt() set that number; here
it is reached (jobs submitted, or their workers retired and the jobs
cancelled) and kept: a thread polls the batch system every ``poll_interval``
seconds (jobqueue_batch.py's _states), forgets jobs that ended and replaces
them while they are wanted, submits the replacement of a job whose workers
will retire (``--lifetime`` in ``worker_extra_args``) ahead of time, and
reports jobs that run without a worker connected after ``connect_timeout``
(with their output file) and jobs that ended before any worker connected.
_JobAdaptive is adapt()'s loop."""

from __future__ import annotations

import logging
import math
import time
import warnings

from .cluster import Adaptive, Status
from .jobqueue_script import _parse_seconds

logger = logging.getLogger("dtask.jobqueue")


class _JobMonitor:
    """JobQueueCluster's part that keeps its jobs (a base of JobQueueCluster:
    uses its _lock, _jobs, _target, _stop, the batch system's _submit,
    _cancel and _states, and runs as its monitor thread)."""

    # ------------------------------------------------------------ scaling
    @property
    def _live_jobs(self):
        return [j for j in self._jobs.values() if not j.expiring]

    def _scale_jobs(self, jobs):
        with self._lock:
            self._target = jobs
            live = self._live_jobs
            if len(live) < jobs:
                room = jobs - len(live)
                if self.max_jobs is not None:  # expiring jobs count against the queue too
                    room = min(room, self.max_jobs - len(self._jobs))
                self._submit(max(0, room))
            elif len(live) > jobs or (jobs == 0 and self._jobs):
                # pending ones go first, then the newest; scale(0): every job,
                # those whose workers are retiring already too
                order = sorted(live, key=lambda j: (j.state == "RUNNING", -j.submitted))
                drop = order[:len(live) - jobs]
                if jobs == 0:
                    drop += [j for j in self._jobs.values() if j.expiring]
                self._retire_and_cancel(drop)

    def _retire_and_cancel(self, drop):
        running = [w for j in drop if j.state == "RUNNING" for w in j.names]
        if running:
            try:
                from .client import Client

                with Client(self, set_as_default=False, timeout=10) as c:
                    c.retire_workers(running, timeout=30)
            except Exception as e:  # they go anyway; their results are recomputed
                logger.warning("retiring %s: %s", running, e)
        for j in drop:
            self._jobs.pop(j.n, None)
        self._cancel(drop)

    # ------------------------------------------------------------ the monitor
    def _run_monitor(self):
        while not self._stop.wait(self.poll_interval):
            try:
                self._check()
            except Exception as e:  # the batch system hiccupped: next time
                logger.debug("monitor: %s", e)

    def _connected(self):
        from .client import Client

        if not hasattr(self, "_mon_client"):
            self._mon_client = Client(self, set_as_default=False, timeout=10)
        info = self._mon_client.scheduler_info()
        return {w.get("name") for w in info["workers"].values()}

    def _check(self):
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.job_id]
        if not jobs:
            return
        states = self._states(jobs)
        now = time.monotonic()
        connected = None
        with self._lock:
            for j in jobs:
                st = states.get(j.job_id)
                if st is None or st in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "C",
                                        "E", "F", "X", "NODE_FAIL", "OUT_OF_MEMORY"):
                    self._jobs.pop(j.n, None)  # ended: replaced below while wanted
                    if not j.connected:
                        # never connected: another would fail the same way (no storm)
                        self._target = max(0, self._target - 1)
                        msg = (f"job {j.job_id} ended without any of its workers connecting "
                               f"to the scheduler at {self.scheduler_address}; not replacing "
                               f"it: see its output file {j.out_path}")
                        logger.warning(msg)
                        self.messages.append(msg)
                    continue
                if st in ("RUNNING", "R", "COMPLETING"):
                    if j.state != "RUNNING":
                        j.state, j.started = "RUNNING", now
                        # how long jobs wait in the queue: the replacement's head start
                        self._observed_start = max(0.5 * self._start_delay(), now - j.submitted)
                else:
                    j.state = "PENDING"
            # workers that never connected back
            if any(j.state == "RUNNING" and not j.connected for j in self._jobs.values()):
                connected = self._connected()
                for j in self._jobs.values():
                    if any(w in connected for w in j.names):
                        j.connected = True
            for j in self._jobs.values():
                if j.state == "RUNNING" and not j.reported and not j.connected and \
                        now - j.started > self.connect_timeout:
                    if connected is None:
                        connected = self._connected()
                    if not any(w in connected for w in j.names):
                        msg = (f"job {j.job_id} has been running for {now - j.started:.0f} s "
                               f"but none of its workers ({', '.join(j.names)}) connected to the "
                               f"scheduler at {self.scheduler_address}; see its output file "
                               f"{j.out_path}")
                        logger.warning(msg)
                        warnings.warn(msg, RuntimeWarning)
                        self.messages.append(msg)
                    j.reported = True
            # lifetime: a job whose workers will retire soon gets its replacement now
            if self._lifetime is not None:
                life, stagger = self._lifetime
                lead = self._replace_lead
                if lead is None:  # twice the queue wait seen lately, at least a minute
                    lead = min(max(60.0, 2 * self._start_delay()), (life - stagger) / 2)
                for j in self._jobs.values():
                    if j.state == "RUNNING" and not j.expiring and \
                            now - j.started > life - stagger - lead:
                        j.expiring = True
                        logger.info("job %s: its workers retire within %.0f s: replacing it",
                                    j.job_id, life - stagger - (now - j.started) + 2 * stagger)
            want = self._target
            live = len(self._live_jobs)
            if live < want and self.status == Status.running:
                room = want - live
                if self.max_jobs is not None:
                    room = min(room, self.max_jobs - len(self._jobs))
                if room > 0:
                    self._submit(room)

    def _start_delay(self):
        return getattr(self, "_observed_start", 5.0)


class _JobAdaptive(Adaptive):
    """adapt's loop: scales (in whole jobs) toward the work waiting, within
    [minimum, maximum] workers; down only after wait_count quiet intervals."""

    _thread_name = "dtask-jobqueue-adapt"
    _seconds = staticmethod(_parse_seconds)

    def _threads(self):
        return self.cluster._opts.threads

    def _want(self, info):
        return math.ceil(self.target(info) / self.cluster._opts.processes)

    def _have(self):
        return self.cluster._target

    def _scale(self, want):
        self.cluster._scale_jobs(want)
