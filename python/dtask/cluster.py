"""LocalCluster: a dtask scheduler and Python workers on this machine."""

from __future__ import annotations

import os
import sys

from . import _core
from .aio import AsyncClusterMixin


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
    this interpreter exits."""

    def __init__(self, n_workers=None, threads_per_worker=None, processes=True,
                 memory_limit="auto", dashboard_address=":8787", host=None,
                 scheduler_port=0, silence_logs=None, nanny=True, allowed_failures=None,
                 worker_ttl=None, resources=None, preload=None, timeout=30, log_level=None,
                 **kwargs):
        if not processes:
            raise ValueError("dtask's LocalCluster runs workers as processes (processes=True)")
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
        if n_workers < 1 and n_workers != 0:
            raise ValueError(f"n_workers must be >= 0, not {n_workers}")
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
            n_workers=int(n_workers), threads_per_worker=int(threads_per_worker),
            memory_limit=ml, dashboard_port=dport, no_dashboard=no_dash, role_command=command,
            no_nanny=not nanny, timeout_ms=int(timeout * 1000),
            log_level=log_level or ("error" if silence_logs else None),
            allowed_failures=0 if allowed_failures is None else (int(allowed_failures) or -1),
            worker_ttl=worker_ttl, resources=resources, host=host, port=int(scheduler_port or 0))
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker

    @property
    def scheduler_address(self):
        return self._c.address

    @property
    def dashboard_link(self):
        d = self._c.dashboard
        return d if d else None

    @property
    def auth_file(self):
        return self._c.auth_file

    @property
    def worker_pids(self):
        """pids of the worker processes as started (their nannies)."""
        return self._c.worker_pids

    @property
    def scheduler_pid(self):
        return self._c.scheduler_pid

    def close(self, timeout=None):
        self._c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"LocalCluster({self.scheduler_address!r}, workers={self.n_workers}, "
                f"threads={self.n_workers * self.threads_per_worker})")
