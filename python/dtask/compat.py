"""The rest of ``distributed``'s names: aliases that behave as Dask's, small
implementations over what dtask has, and, where a Dask feature cannot exist
in dtask, a name that raises a clear error saying why and what to use
instead (never a missing attribute).  docs/python.md lists every name of
``distributed.__all__`` and ``Client`` with its status.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import subprocess
import sys
import time

from .plugins import NannyPlugin, WorkerPlugin


class NotAvailableInDtask(NotImplementedError):
    """A dask.distributed feature that cannot exist in dtask (the message
    says why and what to use instead)."""


def _refuse(what, why):
    raise NotAvailableInDtask(f"{what} is not available in dtask: {why}")


def _refusing_class(name, why):
    def __init__(self, *args, **kwargs):
        _refuse(name, why)

    return type(name, (), {"__init__": __init__, "__doc__": f"Refused in dtask: {why}"})


def _refusing_function(name, why):
    def f(*args, **kwargs):
        _refuse(name, why)

    f.__name__ = f.__qualname__ = name
    f.__doc__ = f"Refused in dtask: {why}"
    return f


_SERVERS = ("dtask's scheduler and workers are C processes, not Python objects in this "
            "interpreter: start them with LocalCluster, `python -m dtask scheduler|worker` or "
            "`dtask scheduler|worker`")
Scheduler = _refusing_class("Scheduler", _SERVERS)
Worker = _refusing_class("Worker", _SERVERS)
Nanny = _refusing_class("Nanny", _SERVERS)
SpecCluster = _refusing_class(
    "SpecCluster", "dtask's clusters are LocalCluster, PBSCluster/SLURMCluster and hand-started "
    "daemons; a spec of Python worker classes cannot describe C workers")
SSHCluster = _refusing_class(
    "SSHCluster", "dtask has no SSH launcher: start `dtask scheduler` on one host and "
    "`dtask worker ADDRESS --auth-file F` on the others (docs/hpc.md)")
rpc = _refusing_class("rpc", "dtask's processes speak their own msgpack protocol, not "
                      "Dask's comm layer: use the Client's methods")
connect = _refusing_function("connect", "dtask's processes speak their own msgpack protocol, "
                             "not Dask's comm layer: use Client(address)")


def CompatibleExecutor(*args, **kwargs):
    """As Dask's: moved to Client.get_executor()."""
    raise Exception("This has been moved to the Client.get_executor() method")


def SubprocessCluster(host=None, scheduler_port=0, scheduler_kwargs=None,
                      dashboard_address=":8787", worker_class=None, n_workers=None,
                      threads_per_worker=None, worker_kwargs=None, silence_logs=30, **kwargs):
    """A scheduler and workers as subprocesses of this one: in dtask that is
    what LocalCluster always is (its workers are processes)."""
    from .cluster import LocalCluster

    if worker_class not in (None, "distributed.Nanny", "distributed.Worker"):
        _refuse("SubprocessCluster(worker_class=...)", _SERVERS)
    kw = dict(worker_kwargs or {})
    return LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, host=host,
                        scheduler_port=scheduler_port, dashboard_address=dashboard_address,
                        nanny=worker_class != "distributed.Worker",
                        **{k: v for k, v in {**kw, **kwargs}.items()
                           if k in ("memory_limit", "resources", "preload")})


def local_client(timeout=None):
    """Deprecated in Dask in favour of worker_client; the same here."""
    from .worker_client import worker_client

    return worker_client(timeout=timeout) if timeout is not None else worker_client()


def sync(loop, func, *args, callback_timeout=None, **kwargs):
    """Runs the coroutine function func(*args, **kwargs) on loop (an asyncio
    loop running in another thread) and returns its result, as Dask's
    distributed.utils.sync; with no loop running, on a fresh one here."""
    coro = func(*args, **kwargs)
    if loop is None or not loop.is_running():
        return asyncio.run(asyncio.wait_for(coro, callback_timeout) if callback_timeout else coro)
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        raise RuntimeError("sync() called from the loop's own thread: await the coroutine instead")
    fut = asyncio.run_coroutine_threadsafe(coro, loop)
    return fut.result(callback_timeout)


class get_task_metadata:
    """Collects the final state of the tasks that finished inside the block
    (Dask's ``with get_task_metadata() as tm: ...; tm.state``), and the
    metadata set on them with Client.set_metadata([key, ...])."""

    def __init__(self):
        self.keys = set()
        self.metadata = None
        self.state = None

    def __enter__(self):
        from .client import default_client

        self._client = default_client()
        self._start = time.time()
        return self

    def __exit__(self, *exc):
        rows = self._client.get_task_stream(start=self._start)
        self.state = {r["key"]: "memory" if r.get("status") == "OK" else "erred" for r in rows}
        self.keys = set(self.state)
        self.metadata = {}
        for k in self.keys:
            try:
                self.metadata[k] = self._client.get_metadata([k], None) or {}
            except Exception:
                self.metadata[k] = {}
        return False


# ---------------------------------------------------------------- plugins


class Environ(NannyPlugin):
    """Sets environment variables on every worker (Dask's Environ; in dtask
    they are set in the worker process, for the tasks that follow)."""

    name = "environ"

    def __init__(self, environ=None):
        self.environ = {k: str(v) for k, v in (environ or {}).items()}

    def setup(self, nanny):
        os.environ.update(self.environ)


class InstallPlugin(WorkerPlugin):
    """Installs packages on every worker once (Dask's InstallPlugin): the
    command runs on each worker as its setup; restart_workers=True restarts
    the workers afterwards (through their nannies)."""

    idempotent = True
    INSTALLER = None

    def __init__(self, packages, options=None, restart_workers=False):
        if isinstance(packages, str):
            raise TypeError("packages must be a list of package names, not a string")
        self.packages = list(packages)
        self.options = list(options or [])
        self.restart_workers = restart_workers
        self.name = f"{type(self).__name__.lower()}-{'-'.join(self.packages)}"

    def command(self):
        raise NotImplementedError

    def setup(self, worker):
        cmd = self.command()
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed on {worker.name} "
                               f"(exit {r.returncode}): {r.stderr.strip()[-2000:]}")


class PipInstall(InstallPlugin):
    """pip install packages on every worker (Dask's PipInstall)."""

    def __init__(self, packages, pip_options=None, restart_workers=False):
        super().__init__(packages, pip_options, restart_workers)

    def command(self):
        return [sys.executable, "-m", "pip", "install", *self.options, *self.packages]


class CondaInstall(InstallPlugin):
    """conda install packages on every worker (Dask's CondaInstall)."""

    def __init__(self, packages, conda_options=None, restart_workers=False):
        super().__init__(packages, conda_options, restart_workers)

    def command(self):
        exe = os.environ.get("CONDA_EXE") or "conda"
        return [exe, "install", "-y", *self.options, *self.packages]


# ---------------------------------------------------------------- Client extras


class CompatClientMixin:
    """Client methods kept for Dask's API: current/as_current, start,
    normalize_collection, register_worker_callbacks, amm (refused)."""

    @classmethod
    def current(cls, allow_global=True):
        """The client in effect (the default client); ValueError if none."""
        from .client import default_client

        return default_client()

    @contextlib.contextmanager
    def as_current(self):
        """This client as the default one inside the block."""
        from .client import _defaults

        _defaults.append(self)
        try:
            yield self
        finally:
            if self in _defaults:
                _defaults.reverse()
                _defaults.remove(self)
                _defaults.reverse()

    def start(self, **kwargs):
        """A dtask client is connected when it is made: nothing to start."""
        return self

    def normalize_collection(self, collection):
        """The collection with the parts this client already holds as
        futures replaced by those futures (Dask's normalize_collection)."""
        graph = dict(collection.__dask_graph__())
        swap = {}
        for k in graph:
            cf = self._c.future_for_key(k if isinstance(k, str) else str(k))
            if cf is not None:
                from .client import Future

                swap[k] = Future(cf, self)
        if not swap:
            return collection
        from dask.highlevelgraph import HighLevelGraph

        graph.update(swap)
        name = next(iter(collection.__dask_layers__()), "normalized")
        hlg = HighLevelGraph.from_collections(name, graph, dependencies=())
        rebuild, args = collection.__dask_postpersist__()
        return rebuild(hlg, *args)

    def register_worker_callbacks(self, setup=None):
        """Deprecated in Dask: setup(dask_worker) on every worker, as a plugin."""
        plugin = _SetupPlugin(setup)
        return self.register_plugin(plugin, name=f"setup-{getattr(setup, '__name__', 'fn')}")

    @property
    def amm(self):
        _refuse("Client.amm (the Active Memory Manager)",
                "dtask's scheduler does not run Dask's AMM policies; use Client.rebalance, "
                "Client.replicate or Client.retire_workers to move data")


class _SetupPlugin(WorkerPlugin):
    def __init__(self, setup):
        self._setup = setup

    def setup(self, worker):
        import inspect

        if "dask_worker" in inspect.signature(self._setup).parameters:
            self._setup(dask_worker=worker)
        else:
            self._setup()


TimeoutError = builtins.TimeoutError


def _client_status(self):
    """Dask's Client.status: "running" while connected, "closed" after close()."""
    from .client import _live_clients

    return "running" if self in _live_clients else "closed"


CompatClientMixin.status = property(_client_status)
