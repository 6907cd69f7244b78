"""Worker and nanny plugins, as in ``distributed.diagnostics.plugin``.

    class Setup(dtask.WorkerPlugin):
        def setup(self, worker):
            import numpy; worker.numpy_version = numpy.__version__

    client.register_plugin(Setup(), name="setup")

The scheduler keeps every registered plugin (pickled bytes, at most 64 of
64 MiB each) and sends it to every worker, including workers that join
later (``cluster.scale``): the worker runs ``setup(worker)`` before any task
that follows.  ``client.unregister_worker_plugin(name)`` runs
``teardown(worker)`` on every worker and forgets it.

Differences from Dask:

* ``WorkerPlugin.transition(key, start, finish, **kwargs)`` is called for
  the transitions a Python task makes on the worker it runs on:
  ``ready -> executing`` before it runs, then ``executing -> memory`` or
  ``executing -> error`` (dtask's worker is C; its other states are not
  visited by Python code).
* ``NannyPlugin.setup(nanny)`` / ``teardown(nanny)`` run in the worker
  process, not in the nanny: dtask's nanny is a small C parent process that
  runs no Python.  They run when the plugin is registered and again in each
  fresh worker the nanny starts; ``restart=True`` restarts the workers
  after registering, as Dask's does.
* ``SchedulerPlugin`` cannot run: the dtask scheduler is written in C.
  Registering one raises :class:`NotImplementedError` saying so.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import sys
import tempfile
import threading

SCHEDULER_IS_C = ("the dtask scheduler is written in C; Python code cannot run inside it: "
                  "use a WorkerPlugin or run code on the client")


class WorkerPlugin:
    """Dask's WorkerPlugin: setup(worker), teardown(worker),
    transition(key, start, finish, **kwargs)."""

    idempotent = False

    def setup(self, worker):
        pass

    def teardown(self, worker):
        pass

    def transition(self, key, start, finish, **kwargs):
        pass


class NannyPlugin:
    """Dask's NannyPlugin: setup(nanny), teardown(nanny); restart=True
    restarts the workers once registered.  In dtask they run in the worker
    process (the nanny is C)."""

    restart = False
    idempotent = False

    def setup(self, nanny):
        pass

    def teardown(self, nanny):
        pass


class SchedulerPlugin:
    """Dask's SchedulerPlugin.  dtask cannot run it: its scheduler is C."""

    idempotent = False

    def __init__(self, *args, **kwargs):
        pass


def _upload_dir():
    """This worker process's folder for uploaded files, on sys.path."""
    d = getattr(_upload_dir, "path", None)
    if d is None:
        d = _upload_dir.path = tempfile.mkdtemp(prefix=f"dtask-uploads-{os.getpid()}-")
    if d not in sys.path:
        sys.path.insert(0, d)
    return d


def _import_file(path):
    """Dask's import_file: a .py module, or every top-level module of a
    .zip/.egg (whose path joins sys.path); reloaded if imported already."""
    importlib.invalidate_caches()
    if path.endswith(".py"):
        names = [os.path.basename(path)[:-3]]
    else:
        if path not in sys.path:
            sys.path.insert(0, path)
        names = [m.name for m in pkgutil.iter_modules([path])]
    out = []
    for name in names:
        mod = sys.modules.get(name)
        out.append(importlib.reload(mod) if mod is not None else importlib.import_module(name))
    return out


class UploadFile(WorkerPlugin):
    """Dask's UploadFile: the file (.py, .zip, .egg) is written on every
    worker, its folder on sys.path, and imported when load=True."""

    name = "upload_file"

    def __init__(self, filepath, load=True):
        self.filename = os.path.basename(filepath)
        self.load = load
        with open(filepath, "rb") as f:
            self.data = f.read()

    def setup(self, worker=None):
        path = os.path.join(_upload_dir(), self.filename)
        tmp = path + f".tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(self.data)
        os.replace(tmp, path)
        if path.endswith((".zip", ".egg")) and path not in sys.path:
            sys.path.insert(0, path)
        if self.load and path.endswith((".py", ".zip", ".egg")):
            _import_file(path)


class UploadDirectory(NannyPlugin):
    """Dask's UploadDirectory: a folder copied to every worker; its parent
    joins sys.path when update_path=True; restart=True restarts them."""

    def __init__(self, path, restart=False, update_path=False,
                 skip_words=(".git", ".github", ".pytest_cache", "tests", "docs"),
                 skip=(lambda fn: os.path.splitext(fn)[1] == ".pyc",)):
        path = os.path.expanduser(path.rstrip("/"))
        self.path = path
        self.restart = restart
        self.update_path = update_path
        self.name = "upload-directory-" + os.path.basename(path)
        self.files = {}
        for root, dirs, files in os.walk(path):
            for fn in files:
                full = os.path.join(root, fn)
                rel = os.path.relpath(full, os.path.dirname(path))
                if any(w in rel.split(os.sep) for w in skip_words) or any(s(full) for s in skip):
                    continue
                with open(full, "rb") as f:
                    self.files[rel] = f.read()

    def setup(self, nanny=None):
        base = _upload_dir()
        for rel, data in self.files.items():
            out = os.path.join(base, rel)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(out, "wb") as f:
                f.write(data)
        if self.update_path:
            d = os.path.join(base, os.path.basename(self.path))
            if d not in sys.path:
                sys.path.insert(0, d)
        importlib.invalidate_caches()


# ------------------------------------------------------------------ worker side

_lock = threading.Lock()
_plugins: dict = {}  # name -> plugin, on this worker
_status: dict = {}  # name -> {"status": "OK"} or {"status": "error", "exception": ...}


def _worker_obj():
    from .worker_client import get_worker

    try:
        w = get_worker()
    except ValueError:
        return None
    w.plugins = _plugins
    w.local_directory = os.getcwd()
    return w


def _call_hook(fn, obj, argname):
    params = inspect.signature(fn).parameters
    if argname in params or len(params) >= 1:
        return fn(obj)
    return fn()


def _teardown(name, plugin):
    hook = getattr(plugin, "teardown", None)
    if hook is not None:
        _call_hook(hook, _worker_obj(), "nanny" if isinstance(plugin, NannyPlugin) else "worker")


def _worker_plugin_setup(name, plugin, idempotent):
    """Runs on the worker (its loop thread, before any later task)."""
    with _lock:
        if idempotent and name in _plugins:
            return None
        old = _plugins.pop(name, None)
        _status.pop(name, None)
    try:
        if old is not None:
            _teardown(name, old)
        hook = getattr(plugin, "setup", None)
        if hook is not None:
            res = _call_hook(hook, _worker_obj(),
                             "nanny" if isinstance(plugin, NannyPlugin) else "worker")
            if inspect.iscoroutine(res):  # Dask's hooks may be async
                import asyncio

                asyncio.run(res)
        st = {"status": "OK"}
    except BaseException as e:  # noqa: BLE001  reported to the client
        st = {"status": "error", "exception": e}
    with _lock:
        _plugins[name] = plugin
        _status[name] = st
        _update_execute_hook()
    return None


def _worker_plugin_teardown(name):
    with _lock:
        plugin = _plugins.pop(name, None)
        _status.pop(name, None)
        _update_execute_hook()
    if plugin is not None:
        _teardown(name, plugin)
    return None


def _plugin_status(names):
    """Client.run target: the status of each named plugin here (None: not yet)."""
    with _lock:
        return {n: _status.get(n) for n in names}


def _transition(key, start, finish, **kwargs):
    """Called by the execute hook around a Python task (see the module doc)."""
    for p in list(_plugins.values()):
        hook = getattr(p, "transition", None)
        if hook is not None and type(p).transition is not WorkerPlugin.transition:
            try:
                hook(key, start, finish, **kwargs)
            except Exception:  # noqa: BLE001  as Dask: a plugin's error does not fail the task
                pass


def plugin_name(plugin):
    """Dask's _get_plugin_name: plugin.name, else the type's name and a token."""
    name = getattr(plugin, "name", None)
    if name:
        return str(name)
    import uuid

    return f"{type(plugin).__name__}-{uuid.uuid4()}"



def _traced_execute(payload, deps):
    """serialize.execute with the transition hooks of the plugins installed
    (the execute hook while any plugin defines transition)."""
    from . import _core, serialize

    info = _core.task_info()
    key = info["key"] if info else None
    if key is None or key == "dtask:run" or key.startswith("plugin-"):
        return serialize.execute(payload, deps)
    _transition(key, "ready", "executing")
    out = serialize.execute(payload, deps)
    _transition(key, "executing", "memory" if out[0] else "error")
    return out


def _update_execute_hook():
    from . import _core, serialize

    traced = any(type(p).transition is not WorkerPlugin.transition
                 for p in _plugins.values() if isinstance(p, WorkerPlugin))
    _core.set_hooks(serialize.dumps, serialize.loads,
                    _traced_execute if traced else serialize.execute)


__all__ = ["WorkerPlugin", "NannyPlugin", "SchedulerPlugin", "UploadFile", "UploadDirectory"]
