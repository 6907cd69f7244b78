"""Client management calls, as dask.distributed's Client has them: run,
restart, restart_workers, register_plugin / register_worker_plugin /
unregister_worker_plugin, upload_file, write_scheduler_file, get_versions,
shutdown; and Security.  ``class Client`` (client.py) inherits ClientAdmin.

How they work (docs/python.md, "Management"):

* ``run`` sends the pickled call straight to each worker (ACTOR_CALL to
  the worker's built-in ``dtask:run`` actor, src/worker/admin.c), which runs
  it on a thread of its own: it is not queued behind running tasks.
* ``restart`` / ``restart_workers`` ask each worker's ``dtask:admin``
  actor to restart: it exits and its nanny (the C parent process) starts a
  fresh worker at once.  ``restart`` first cancels every future of this
  client (their ``result()`` raises ``CancelledError``, as in Dask).
* Plugins are kept by the scheduler and sent to every worker, joining ones
  too (dtask.plugins).
"""

from __future__ import annotations

import json
import os
import platform
import struct
import sys
import time

from . import _core
from .plugins import (SCHEDULER_IS_C, NannyPlugin, SchedulerPlugin, UploadFile,
                      _plugin_status, _worker_plugin_setup, _worker_plugin_teardown, plugin_name)


class Security:
    """Dask's Security, for what dtask supports: TLS files (``tls_ca_file``,
    ``tls_client_cert``, ``tls_client_key``; ``require_encryption``) and
    dtask's shared secret (``auth_file``, as ``--auth-file``).  Pass it as
    ``Client(address, security=...)``."""

    def __init__(self, require_encryption=None, *, tls_ca_file=None, tls_client_cert=None,
                 tls_client_key=None, tls_scheduler_cert=None, tls_scheduler_key=None,
                 tls_worker_cert=None, tls_worker_key=None, auth_file=None, **kwargs):
        self.require_encryption = bool(require_encryption)
        self.tls_ca_file = tls_ca_file
        self.tls_client_cert = tls_client_cert
        self.tls_client_key = tls_client_key
        self.tls_scheduler_cert = tls_scheduler_cert
        self.tls_scheduler_key = tls_scheduler_key
        self.tls_worker_cert = tls_worker_cert
        self.tls_worker_key = tls_worker_key
        self.auth_file = auth_file
        for k, v in kwargs.items():
            if not k.startswith("tls_"):
                raise TypeError(f"Security() got an unexpected keyword argument {k!r}")
            setattr(self, k, v)
        if self.require_encryption and not (self.tls_client_cert or self.tls_ca_file):
            raise ValueError("require_encryption=True needs TLS files (tls_ca_file, "
                             "tls_client_cert, tls_client_key)")

    @classmethod
    def temporary(cls, **kwargs):
        raise NotImplementedError(
            "dtask cannot make temporary certificates; make them with openssl and pass their "
            "files (tls_ca_file=, tls_client_cert=, tls_client_key=), or use dtask's shared "
            "secret (auth_file=)")

    def get_connection_args(self, role="client"):
        return {"ssl_context": None, "require_encryption": self.require_encryption,
                "extra_conn_args": {}}

    def __repr__(self):
        fields = {k: v for k, v in vars(self).items() if v}
        return "Security(" + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")"


def _tls_files(security):
    """(cert, key, ca) for the C client, from a Security (or None)."""
    if security is None:
        return (None, None, None)
    if not isinstance(security, Security):
        raise TypeError(f"security= takes a dtask.Security, not {type(security).__name__}")
    return (security.tls_client_cert, security.tls_client_key, security.tls_ca_file)


def _run_call(function, args, kwargs):
    """Runs on the worker for Client.run: passes dask_worker= when the
    function takes it, as Dask does."""
    import inspect

    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        params = {}
    if "dask_worker" in params:
        from .worker_client import get_worker

        kwargs = dict(kwargs, dask_worker=get_worker())
    return function(*args, **kwargs)


def _versions(packages=()):
    """Dask's get_versions() shape for this process."""
    import importlib

    host = {"python": ".".join(map(str, sys.version_info[:3])),
            "python-bits": struct.calcsize("P") * 8, "OS": platform.system(),
            "OS-release": platform.release(), "machine": platform.machine(),
            "processor": platform.processor(), "byteorder": sys.byteorder}
    pkgs = {"python": host["python"]}
    for name in ("dtask", "dask", "distributed", "numpy", "pandas", "cloudpickle", "msgpack",
                 "toolz", "lz4", *packages):
        try:
            mod = importlib.import_module(name)
            pkgs[name] = getattr(mod, "__version__", None)
        except Exception:
            pkgs[name] = None
    return {"host": host, "packages": pkgs}


_REQUIRED = ("python", "dtask", "dask", "cloudpickle", "numpy", "pandas")


class ClientAdmin:
    """The management half of dtask.Client (see the module doc)."""

    # ------------------------------------------------------------ helpers
    def _worker_rows(self, workers=None):
        from .client import _tcp, _workers

        rows = self._c.workers()
        if workers is not None:
            want = set(_workers(workers))
            rows = [w for w in rows
                    if w["name"] in want or w["address"] in want or _tcp(w["address"]) in want]
        return rows

    # ------------------------------------------------------------ run
    def run(self, function, *args, workers=None, wait=True, nanny=False, on_error="raise",
            **kwargs):
        """function(*args, **kwargs) on every worker (or those named), now, on
        a thread of its own beside running tasks: {"tcp://host:port": result}.
        A function taking ``dask_worker`` gets the worker (get_worker()).
        on_error: "raise" (the first error), "return" (the exception as the
        result) or "ignore" (left out).  wait=False: returns None at once."""
        from .client import Future, _tcp, _translate, DtaskError
        from .serialize import dumps_call

        if nanny:
            raise NotImplementedError(
                "Client.run(nanny=True): dtask's nanny is a small C process that runs no Python; "
                "run it on the workers (nanny=False)")
        if on_error not in ("raise", "return", "ignore"):
            raise ValueError(f"on_error must be 'raise', 'return' or 'ignore', not {on_error!r}")
        payload, deps = dumps_call(_run_call, (function, args, kwargs), {}, Future)
        if deps:
            raise TypeError("Client.run does not take futures as arguments")
        calls = {}
        for w in self._worker_rows(workers):
            calls[_tcp(w["address"])] = _core.actor_call(self._c, "dtask:run", w["address"],
                                                         "run:py:", False, payload)
        if not wait:
            return None
        out = {}
        for addr, cf in calls.items():
            try:
                out[addr] = cf.result(-1)
            except DtaskError as e:
                exc = _translate(e, cf.exception_text())
                if on_error == "raise":
                    raise exc from None
                if on_error == "return":
                    out[addr] = exc
        return out

    def run_on_scheduler(self, function, *args, **kwargs):
        raise NotImplementedError(f"run_on_scheduler: {SCHEDULER_IS_C}")

    # ------------------------------------------------------------ restart
    def restart(self, timeout=None, wait_for_workers=True):
        """Dask's restart: every future of this client is cancelled (its
        result() raises CancelledError), every worker is restarted by its
        nanny, and (wait_for_workers) the call returns once as many workers
        are back.  Workers without a nanny: ValueError naming them, before
        anything is done.  TimeoutError past timeout (default 120 s)."""
        from .client import DtaskError, _ms, _translate

        t = _ms(120 if timeout is None else timeout)
        try:
            _core.restart(self._c, -1 if t is None else t, bool(wait_for_workers))
        except DtaskError as e:
            if e.code == _core.DT_EINVAL:
                raise ValueError(e.message) from None
            raise _translate(e) from None
        return None

    def restart_workers(self, workers, timeout=None, raise_for_error=True):
        """Dask's restart_workers: restarts these workers (addresses or
        names) through their nannies; the results they held are lost
        (recomputed if still wanted).  {address: "OK"}, or with
        raise_for_error=False {address: the error text} when it failed."""
        from .client import DtaskError, _ms, _tcp, _translate

        if isinstance(workers, str):
            workers = [workers]
        rows = self._worker_rows(workers)
        found = {w["name"] for w in rows} | {w["address"] for w in rows} | {
            _tcp(w["address"]) for w in rows}
        missing = [w for w in workers if str(w) not in found]
        if missing and raise_for_error:
            raise ValueError(f"restart_workers: no such workers: {missing}")
        addrs = [w["address"] for w in rows]
        t = _ms(120 if timeout is None else timeout)
        try:
            _core.restart_workers(self._c, addrs, -1 if t is None else t)
        except DtaskError as e:
            if raise_for_error:
                if e.code == _core.DT_EINVAL:
                    raise ValueError(e.message) from None
                raise _translate(e) from None
            return {_tcp(a): ("timed out" if e.code == _core.DT_ETIMEDOUT else e.message)
                    for a in addrs}
        return {_tcp(a): "OK" for a in addrs}

    # ------------------------------------------------------------ plugins
    def register_plugin(self, plugin, name=None, idempotent=None):
        """Dask's register_plugin for a WorkerPlugin or NannyPlugin: kept by
        the scheduler, set up on every worker (joining ones too) before their
        next task.  Returns {worker address: {"status": "OK"}} once every
        current worker set it up; the first setup error is raised.  A
        SchedulerPlugin raises NotImplementedError (the scheduler is C)."""
        from .client import Future
        from .serialize import dumps_call

        if isinstance(plugin, SchedulerPlugin):
            raise NotImplementedError(f"register_plugin(SchedulerPlugin): {SCHEDULER_IS_C}")
        if name is None:
            name = plugin_name(plugin)
        if idempotent is None:
            idempotent = bool(getattr(plugin, "idempotent", False))
        data, _ = dumps_call(_worker_plugin_setup, (name, plugin, bool(idempotent)), {}, Future)
        _core.plugin_add(self._c, name, "py:", data)
        out = self._wait_plugin(name)
        if getattr(plugin, "restart", False) and isinstance(plugin, NannyPlugin):
            self.restart_workers([a for a in out], raise_for_error=True)
        return out

    def _wait_plugin(self, name, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            res = self.run(_plugin_status, [name], on_error="return")
            pending = []
            for addr, st in res.items():
                if isinstance(st, BaseException):  # the worker is restarting, say
                    pending.append(addr)
                    continue
                s = st.get(name)
                if s is None:
                    pending.append(addr)
                elif s["status"] == "error":
                    raise s["exception"]
            if not pending:
                return {addr: {"status": "OK"} for addr in res}
            if time.monotonic() > deadline:
                raise TimeoutError(f"plugin {name!r} not set up after {timeout} s on: {pending}")
            time.sleep(0.02)

    def register_worker_plugin(self, plugin=None, name=None, nanny=None, **kwargs):
        """Dask's older name for register_plugin (a class is instantiated
        with kwargs, as Dask did)."""
        if isinstance(plugin, type):
            plugin = plugin(**kwargs)
        return self.register_plugin(plugin, name=name)

    def register_scheduler_plugin(self, plugin, name=None, idempotent=None):
        raise NotImplementedError(f"register_scheduler_plugin: {SCHEDULER_IS_C}")

    def unregister_scheduler_plugin(self, name):
        raise NotImplementedError(f"unregister_scheduler_plugin: {SCHEDULER_IS_C}")

    def unregister_worker_plugin(self, name, nanny=None):
        """Runs the plugin's teardown on every worker and forgets it (joining
        workers no longer get it)."""
        from .client import Future
        from .serialize import dumps_call

        data, _ = dumps_call(_worker_plugin_teardown, (name,), {}, Future)
        _core.plugin_remove(self._c, name, "py:", data)
        deadline = time.monotonic() + 30
        while True:  # until no worker has it
            res = self.run(_plugin_status, [name], on_error="return")
            left = [a for a, st in res.items() if isinstance(st, dict) and st.get(name)]
            if not left:
                return {a: {"status": "OK"} for a in res}
            if time.monotonic() > deadline:
                raise TimeoutError(f"plugin {name!r} still on {left} after 30 s")
            time.sleep(0.02)

    def upload_file(self, filename, load=True):
        """Dask's upload_file: a .py, .zip or .egg importable on every worker,
        joining ones too (the UploadFile plugin), imported there when load;
        a .so (C) loaded by every worker: its DT_TASK functions become
        callable as dtask.cfunc("name")."""
        if filename.endswith(".so"):
            with open(filename, "rb") as f:
                data = f.read()
            _core.plugin_add(self._c, "upload-" + os.path.basename(filename), "dtask:so", data)
            # every worker loads it before any task submitted after this call
            # (the scheduler sends it ahead of them on the same connection)
            from .client import _tcp

            return {_tcp(w["address"]): {"status": "OK"} for w in self._c.workers()}
        if not filename.endswith((".py", ".zip", ".egg")):
            raise ValueError(f"upload_file takes .py, .zip, .egg or .so files, not {filename!r}")
        return self.register_plugin(UploadFile(filename, load=load),
                                    name="upload-" + os.path.basename(filename))

    # ------------------------------------------------------------ small ones
    def write_scheduler_file(self, filename):
        """Dask's write_scheduler_file: {"type": "Scheduler", "address":
        ...} in a JSON file that Client(scheduler_file=) and workers read."""
        from .client import _tcp

        info = {"type": "Scheduler", "id": f"Scheduler-{self.address}",
                "address": _tcp(self.address)}
        with open(filename, "w") as f:
            json.dump(info, f, indent=2)

    def get_versions(self, check=False, packages=None):
        """Dask's shape: {"scheduler": ..., "client": ..., "workers": {addr:
        ...}}, each {"host": {...}, "packages": {...}}.  The scheduler is C:
        its packages name only dtask.  check=True raises ValueError when
        the client and workers differ in a required package."""
        from . import __version__

        packages = tuple(packages or ())
        client = _versions(packages)
        workers = self.run(_versions, packages)
        sched = {"host": {"OS": platform.system()},
                 "packages": {"dtask": __version__, "python": None}}
        out = {"scheduler": sched, "client": client, "workers": workers}
        if check:
            bad = []
            for name in _REQUIRED + packages:
                vals = {client["packages"].get(name)} | {
                    w["packages"].get(name) for w in workers.values()}
                if len(vals) > 1:
                    bad.append(f"{name}: client {client['packages'].get(name)}, workers "
                               f"{sorted(map(str, vals))}")
            if bad:
                raise ValueError("Mismatched versions found\n" + "\n".join(bad))
        return out

    def shutdown(self):
        """Dask's shutdown: closes the cluster (the scheduler and workers this
        client was given or started) and the client."""
        cluster = getattr(self, "cluster", None)
        self.close()
        if cluster is not None:
            cluster.close()
