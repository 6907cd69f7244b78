"""LocalCluster: a dtask scheduler and Python workers on this machine."""

from __future__ import annotations

import enum
import json
import math
import os
import sys
import threading
import time

from . import _core
from .aio import AsyncClusterMixin


class Status(enum.Enum):
    """A cluster's (or client's) state, named as distributed.core.Status."""
    created = "created"
    running = "running"
    closing = "closing"
    closed = "closed"


def _config(key):
    """dask.config's value for key (None without dask)."""
    try:
        import dask.config
    except ImportError:
        return None
    return dask.config.get(key, None)


def _parse_port(dashboard_address):
    if dashboard_address is None:
        return 0, True
    s = str(dashboard_address)
    port = s.rsplit(":", 1)[-1]
    return (int(port) if port else 0), False


class LocalCluster(AsyncClusterMixin):
    """``LocalCluster(n_workers=4, threads_per_worker=1)``: a scheduler and
    n_workers worker processes (``python -m dtask worker``) that run Python
    callables (and C task functions from ``preload`` libraries).  The
    processes stop with ``close()``, at the end of a ``with`` block, and when
    this interpreter exits.  ``journal=PATH``: the scheduler keeps a journal
    there (docs/reliability.md); a scheduler restarted with it carries on."""

    name = None  # as given to the constructor (name=)

    def __init__(self, n_workers=None, threads_per_worker=None, processes=True,
                 memory_limit="auto", dashboard_address=":8787", host=None,
                 scheduler_port=0, silence_logs=None, nanny=True, allowed_failures=None,
                 worker_ttl=None, resources=None, preload=None, timeout=30, log_level=None,
                 journal=None, **kwargs):
        self._inproc = None  # processes=False: the worker on a thread here (cluster_inproc.py)
        if not processes:
            from . import cluster_inproc

            n_workers, threads_per_worker = cluster_inproc.defaults(n_workers, threads_per_worker)
            if cluster_inproc._current is not None and cluster_inproc._current.alive:
                raise ValueError("a LocalCluster(processes=False) worker runs in this process "
                                 "already: close that cluster first. " + cluster_inproc.ONE_ONLY)
        unknown = set(kwargs) - {"protocol", "interface", "asynchronous", "name"}
        if unknown:
            raise TypeError(f"LocalCluster got unexpected arguments {sorted(unknown)}")
        if n_workers is None and threads_per_worker is None:
            n_workers = os.cpu_count() or 1
            threads_per_worker = 1
        elif n_workers is None:
            n_workers = max(1, (os.cpu_count() or 1) // threads_per_worker)
        elif threads_per_worker is None:
            threads_per_worker = max(1, (os.cpu_count() or 1) // max(1, n_workers))
        if n_workers < 0:
            raise ValueError(f"n_workers must be >= 0, not {n_workers}")
        # Dask's config, read as Dask reads it when an argument is not given
        if allowed_failures is None:
            allowed_failures = _config("distributed.scheduler.allowed-failures")
        if worker_ttl is None:
            worker_ttl = _config("distributed.scheduler.worker-ttl")
        if timeout == 30:
            ct = _config("distributed.comm.timeouts.connect")
            if ct is not None:
                import dask.utils

                timeout = max(30, dask.utils.parse_timedelta(ct))
        extra = []
        for what in ("target", "spill", "pause", "terminate"):
            v = _config(f"distributed.worker.memory.{what}")
            if v is not None:
                extra += [f"--memory-{what}", "0" if v is False else str(float(v))]
        os.environ["DTASK_WORKER_ARGS"] = json.dumps(extra)
        dport, no_dash = _parse_port(dashboard_address)
        command = [sys.executable, "-m", "dtask"]
        if preload:
            pl = [preload] if isinstance(preload, str) else list(preload)
            os.environ["DTASK_PRELOAD"] = os.pathsep.join(os.path.abspath(p) for p in pl)
        else:
            os.environ.pop("DTASK_PRELOAD", None)
        # the workers find the modules this interpreter imports (as
        # multiprocessing's spawn passes sys.path to its children)
        os.environ["DTASK_SYS_PATH"] = os.pathsep.join(p for p in sys.path if p)
        if resources is None:  # Dask's config, as a Dask worker reads it
            resources = _config("distributed.worker.resources") or None
        if isinstance(resources, dict):
            resources = ",".join(f"{k}={v}" for k, v in resources.items())
        ml = None if memory_limit in (None, "auto") else str(memory_limit)
        self._c = _core.CLocalCluster(
            n_workers=int(n_workers) if processes else 0, threads_per_worker=int(threads_per_worker),
            memory_limit=ml, dashboard_port=dport, no_dashboard=no_dash, role_command=command,
            no_nanny=not nanny, timeout_ms=int(timeout * 1000),
            log_level=log_level or ("error" if silence_logs else None),
            allowed_failures=0 if allowed_failures is None else (int(allowed_failures) or -1),
            worker_ttl=None if worker_ttl is None else str(worker_ttl), resources=resources,
            host=host, port=int(scheduler_port or 0), start_empty=n_workers == 0 or not processes,
            journal=None if journal is None else os.fspath(journal))
        if not processes:
            wargs = ["--nthreads", str(int(threads_per_worker)), "--name", "local-worker-0",
                     "--no-nanny", "--memory-limit", ml or "auto"]
            if self._c.auth_file:
                wargs += ["--auth-file", self._c.auth_file]
            if resources:
                wargs += ["--resources", resources]
            for lib in filter(None, os.environ.get("DTASK_PRELOAD", "").split(os.pathsep)):
                wargs += ["--preload", lib]
            # no nanny to restart this process: as Dask's in-process workers, never terminate
            self._inproc_args = (wargs + extra + ["--memory-terminate", "0"], timeout)
            if n_workers:
                self._start_inproc()
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.name = kwargs.get("name")
        self.status = Status.running
        self._adaptive = None
        self._lock = threading.Lock()

    @property
    def scheduler_address(self):
        return self._c.address

    @property
    def dashboard_link(self):
        return dashboard_link(self._c.dashboard)

    @property
    def auth_file(self):
        return self._c.auth_file

    @property
    def worker_pids(self):
        """pids of the worker processes as started (their nannies); this
        process's for the in-process worker (processes=False)."""
        if self._inproc_args is not None:
            return [os.getpid()] if self._inproc is not None and self._inproc.alive else []
        return self._c.worker_pids

    @property
    def scheduler_pid(self):
        return self._c.scheduler_pid

    # -------------------------------------------------------- management
    def scale(self, n=None, memory=None, cores=None):
        """Run n workers (or as many as give `cores` threads / `memory`
        bytes): new ones start and join; the newest leave first, their
        results moved to the others."""
        if n is None:
            if cores is not None:
                n = math.ceil(cores / self.threads_per_worker)
            elif memory is not None:
                import dask.utils

                per = self._worker_memory()
                n = math.ceil(dask.utils.parse_bytes(memory) / per) if per else 1
            else:
                raise TypeError("scale needs n, cores or memory")
        n = int(n)
        if n < 0:
            raise ValueError(f"scale: n must be >= 0, not {n}")
        if self._inproc_args is not None:
            return self._scale_inproc(n)
        self._c.scale(n)
        self.n_workers = n

    # ------------------------------------------- processes=False (cluster_inproc.py)
    _inproc_args = None  # (worker options, timeout) when processes=False

    def _start_inproc(self):
        from .client import Client
        from .cluster_inproc import InprocWorker

        wargs, timeout = self._inproc_args
        self._inproc = InprocWorker(self._c.address, wargs, timeout)
        deadline = time.monotonic() + timeout
        with Client(self, set_as_default=False, timeout=timeout) as c:
            while time.monotonic() < deadline:
                if self._inproc.rc is not None:
                    raise RuntimeError(f"the in-process worker stopped at once (status "
                                       f"{self._inproc.rc}; see its message above)")
                if c.scheduler_info(0)["n_workers"]:
                    return
                time.sleep(0.05)
        raise TimeoutError(f"the in-process worker did not join within {timeout} s")

    def _scale_inproc(self, n):
        from .cluster_inproc import ONE_ONLY

        if n > 1:
            raise ValueError(f"scale({n}): " + ONE_ONLY)
        if n == 1 and (self._inproc is None or not self._inproc.alive):
            self._start_inproc()
        elif n == 0 and self._inproc is not None:
            self._inproc.stop()
            self._inproc = None
        self.n_workers = n

    def _worker_memory(self):
        from .client import Client

        with Client(self, set_as_default=False) as c:
            ws = list(c.scheduler_info()["workers"].values())
        return ws[0]["memory_limit"] if ws else 0

    def adapt(self, minimum=0, maximum=math.inf, minimum_cores=None, maximum_cores=None,
              minimum_memory=None, maximum_memory=None, interval="1s", wait_count=3,
              target_duration="5s", **kwargs):
        """Adapts the number of workers to the load between minimum and
        maximum, as Dask's Adaptive: more when tasks wait for threads, fewer
        after wait_count idle intervals.  Returns the Adaptive object
        (``.stop()`` ends it; a new adapt or scale replaces it)."""
        if self._inproc_args is not None:
            from .cluster_inproc import ONE_ONLY

            raise ValueError("adapt needs processes=True: " + ONE_ONLY)
        if self._adaptive is not None:
            self._adaptive.stop()
        tpw = self.threads_per_worker
        if minimum_cores is not None:
            minimum = max(minimum, math.ceil(minimum_cores / tpw))
        if maximum_cores is not None:
            maximum = min(maximum, maximum_cores // tpw)
        if minimum > maximum:
            raise ValueError(f"adapt: minimum {minimum} is over maximum {maximum}")
        self._adaptive = Adaptive(self, minimum, maximum, interval, wait_count)
        return self._adaptive

    @property
    def workers(self):
        """{name: worker} for the running workers (name, pid as started)."""
        if self._inproc_args is not None:
            return {"local-worker-0": _WorkerInfo("local-worker-0", os.getpid())} if (
                self._inproc is not None and self._inproc.alive) else {}
        return {n: _WorkerInfo(n, p) for n, p in zip(self._c.worker_names, self._c.worker_pids)}

    def scheduler_info(self, n_workers=-1):
        from .client import Client

        with Client(self, set_as_default=False) as c:
            return c.scheduler_info(n_workers)

    def get_client(self):
        """A Client of this cluster (the default client when it is one)."""
        from .client import Client, _defaults

        for c in reversed(_defaults):
            if getattr(c, "cluster", None) is self:
                return c
        return Client(self)

    def wait_for_workers(self, n_workers=1, timeout=None):
        from .client import Client

        with Client(self, set_as_default=False) as c:
            c.wait_for_workers(n_workers, timeout)

    def get_logs(self, cluster=True, scheduler=True, workers=True):
        """Dask's shape: {name: log text}.  dtask's daemons write their logs
        to this process's standard error; this gives what the scheduler and
        the workers hold in memory when they can answer (empty otherwise)."""
        from .client import Client

        out = {}
        with Client(self, set_as_default=False) as c:
            if scheduler and hasattr(c, "get_scheduler_logs"):
                out["Scheduler"] = "\n".join(f"{lvl}: {m}" for lvl, m in c.get_scheduler_logs())
            if workers and hasattr(c, "get_worker_logs"):
                for w, lines in c.get_worker_logs().items():
                    out[w] = "\n".join(f"{lvl}: {m}" for lvl, m in lines)
        return out

    def scale_up(self, n=None, memory=None, cores=None):
        """More workers, up to n (never fewer)."""
        if n is not None and n <= self.n_workers:
            return
        self.scale(n, memory=memory, cores=cores)

    def scale_down(self, workers):
        """Fewer workers: dtask retires the newest first, as many as named
        (their results are moved to the others first)."""
        names = [w for w in workers]
        self.scale(max(0, self.n_workers - len(names)))

    @property
    def plan(self):
        """The workers it should run (their names)."""
        if self._inproc_args is not None:
            return set(self.workers)
        return set(self._c.worker_names)

    requested = plan

    @property
    def observed(self):
        """The workers connected to the scheduler now (their names)."""
        info = self.scheduler_info()
        return {w["name"] for w in info["workers"].values()}

    @property
    def called_from_running_loop(self):
        import asyncio

        try:
            asyncio.get_running_loop()
            return True
        except RuntimeError:
            return False

    @classmethod
    def from_name(cls, name):
        from .compat import _refuse

        _refuse("LocalCluster.from_name", "dtask keeps no registry of clusters by name: pass "
                "the scheduler's address (or a scheduler file) to Client instead")

    def new_worker_spec(self):
        from .compat import _SERVERS, _refuse

        _refuse("LocalCluster.new_worker_spec", _SERVERS)

    def start_worker(self, *args, **kwargs):
        from .compat import _SERVERS, _refuse

        _refuse("LocalCluster.start_worker", _SERVERS + "; use cluster.scale(n)")

    def close(self, timeout=None):
        if self._adaptive is not None:
            self._adaptive.stop()
            self._adaptive = None
        self.status = Status.closing
        if self._inproc is not None:
            self._inproc.stop()
            self._inproc = None
        self._c.close()
        self.status = Status.closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"LocalCluster({self.scheduler_address!r}, workers={self.n_workers}, "
                f"threads={self.n_workers * self.threads_per_worker})")


class _WorkerInfo:
    __slots__ = ("name", "pid")

    def __init__(self, name, pid):
        self.name, self.pid = name, pid

    def __repr__(self):
        return f"<dtask worker {self.name!r}, pid {self.pid}>"


class Adaptive:
    """LocalCluster.adapt's loop, on a thread: every interval it asks the
    scheduler how much work there is (tasks processing, queued, waiting for
    a worker) and scales toward ceil(work / threads_per_worker) within
    [minimum, maximum]; it scales down only after wait_count intervals in a
    row wanted fewer (as Dask's Adaptive).  The job-queue clusters' loop
    (jobqueue_monitor._JobAdaptive) is this one counting whole jobs."""

    _thread_name = "dtask-adapt"

    def __init__(self, cluster, minimum, maximum, interval, wait_count):
        self.cluster, self.minimum, self.maximum = cluster, minimum, maximum
        self.interval = self._seconds(interval)
        self.wait_count = wait_count
        self._stop = threading.Event()
        self._down = 0
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()

    @staticmethod
    def _seconds(interval):
        import dask.utils

        return dask.utils.parse_timedelta(interval)

    def _threads(self):
        return self.cluster.threads_per_worker

    def target(self, info):
        work = info["processing"] + info["queued"] + info["no_worker"]
        want = math.ceil(work / max(1, self._threads()))
        return int(max(self.minimum, min(self.maximum, want)))

    # what the loop scales: workers here, jobs in _JobAdaptive
    def _want(self, info):
        return self.target(info)

    def _have(self):
        return self.cluster.n_workers

    def _scale(self, want):
        self.cluster._c.scale(want)
        self.cluster.n_workers = want

    def _run(self):
        from .client import Client

        try:
            c = Client(self.cluster, set_as_default=False)
        except Exception:
            return
        try:
            while not self._stop.is_set():
                try:
                    want = self._want(c.scheduler_info(0))
                except Exception:
                    break
                have = self._have()
                if want > have or (want < have and self._down + 1 >= self.wait_count):
                    self._down = 0
                    self._scale(want)
                elif want < have:
                    self._down += 1
                else:
                    self._down = 0
                self._stop.wait(self.interval)
        finally:
            c.close()

    def stop(self):
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=30)


def dashboard_link(d):
    """The dashboard's address d; with Dask's `distributed.dashboard.link`
    config set (e.g. "/proxy/{port}/status" behind Jupyter) that template,
    formatted as Dask's Cluster does (scheme, host, port and the
    environment), keeping dtask's token."""
    if not d:
        return None
    try:
        import dask

        template = dask.config.get("distributed.dashboard.link", None)
    except ImportError:
        template = None
    if not template or template == "{scheme}://{host}:{port}/status":  # Dask's default
        return d
    from urllib.parse import urlsplit

    u = urlsplit(d)
    link = template.format(**dict(os.environ, scheme=u.scheme, host=u.hostname, port=u.port))
    return link + ("?" + u.query if u.query else "")
