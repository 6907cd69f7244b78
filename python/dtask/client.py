"""Client and Future: dask.distributed's API over dtask's C client."""

from __future__ import annotations

import atexit
import collections.abc
import concurrent.futures
import hashlib
import os
import queue
import threading
import uuid

from . import _core, serialize
from .primitives import DatasetsMixin
from .aio import AsyncClientMixin, AsyncFutureMixin
from .compat import CompatClientMixin
from .serialize import dumps_call
from .client_state import ClientStateMixin
from .client_admin import ClientAdmin, _tls_files  # noqa: E402  (management: restart, plugins, run...)
from .client_diag import ClientDiagMixin, FutureDiagMixin  # noqa: E402  (retry, recreate_error_locally, print, logging)
from .bulk import map_py  # noqa: E402  (client.map's body: the fast paths of issue 17)

CancelledError = concurrent.futures.CancelledError


class KilledWorker(Exception):
    """The task was running on workers that died too many times
    (allowed_failures): it is probably what kills them."""


class FutureLost(Exception):
    """The scheduler went away before the future finished."""


class DtaskError(Exception):
    """An error of the dtask runtime: code (a DT_E* number), name (e.g.
    "DT_ECONNECT") and a message naming the thing that failed."""

    def __init__(self, code, name, message):
        super().__init__(code, name, message)
        self.code = code
        self.name = name
        self.message = message

    def __str__(self):
        return f"{self.name}: {self.message}"


_core.set_error_class(DtaskError)


def _translate(err, remote=None):
    """A DtaskError from the C core as the exception a Dask user expects."""
    code, name, message = err.code, err.name, err.message
    if code == _core.DT_ETASK and (remote or message):
        exc = serialize.rebuild_exception(remote or message)
        if exc is not None:
            return exc
    text = serialize.error_text_without_pickle(message)
    if code == _core.DT_ETIMEDOUT:
        return TimeoutError(text)
    if code == _core.DT_ECANCELLED:
        return CancelledError(text)
    if code == _core.DT_EKILLED:
        return KilledWorker(text)
    if code == _core.DT_ECONNLOST:
        return FutureLost(text)
    return DtaskError(code, name, text)


def funcname(fn):
    while hasattr(fn, "func"):  # functools.partial and friends
        fn = fn.func
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return "lambda" if name == "<lambda>" else name


class cfunc:
    """A C task function by name, e.g. ``client.submit(dtask.cfunc("inc"), 1)``:
    it runs on workers that registered it (DT_TASK in the program, or
    ``--preload lib.so``); its arguments must be None, bool, int, float, str,
    bytes, lists, tuples, dicts with str keys and futures."""

    def __init__(self, name):
        if not isinstance(name, str) or not name or name.startswith("py:"):
            raise ValueError(f"cfunc needs the name of a C task function, not {name!r}")
        self.name = name

    def __repr__(self):
        return f"cfunc({self.name!r})"


try:  # a Future is a reference to a key in Dask's graphs (as distributed's is)
    from dask._task_spec import TaskRef as _FutureBase
except ImportError:  # dask is optional
    _FutureBase = object


class Future(AsyncFutureMixin, FutureDiagMixin, _FutureBase):
    """A remote result.  ``result()`` waits for it and re-raises a remote
    exception with its type, the remote traceback attached as a note.
    Inside ``dask.delayed`` calls and collections it stands for its key: the
    graph depends on it."""

    __slots__ = ("_cf", "client", "__weakref__") + (("key",) if _FutureBase is object else ())
    __dtask_future__ = True

    def __init__(self, cf, client):
        self._cf = cf
        self.client = client
        self.key = cf.key

    @property
    def status(self):
        return self._cf.status

    def done(self):
        return self._cf.done()

    @property
    def type(self):
        """The result's type once it is in memory, else None (dtask reads it
        from the result, which this fetches)."""
        return type(self.result()) if self._cf.status == "finished" else None

    def cancelled(self):
        return self._cf.status == "cancelled"

    def result(self, timeout=None):
        try:
            return self._cf.result(_ms(timeout))
        except DtaskError as e:
            raise _translate(e, self._cf.exception_text()) from None

    def exception(self, timeout=None):
        """The exception of a failed future (None if it succeeded)."""
        try:
            self._cf.result(_ms(timeout))
            return None
        except DtaskError as e:
            exc = _translate(e, self._cf.exception_text())
            if isinstance(exc, TimeoutError) and e.args[0] == _core.DT_ETIMEDOUT:
                raise exc from None
            return exc

    def traceback(self, timeout=None):
        """The remote traceback of a failed future, as a traceback object
        (``traceback.format_tb(future.traceback())``, as in Dask); None if
        it succeeded or its frames could not be carried back."""
        exc = self.exception(timeout)
        return exc.__traceback__ if exc is not None else None

    def cancel(self, force=False):
        """force=True: a worker still running the task restarts (under its
        nanny) to reclaim the thread; without it a running task keeps its
        thread until it returns (counted busy meanwhile)."""
        self._cf.cancel(force=bool(force))

    def release(self):
        """Drop this handle's interest in the key now."""
        self._cf = _Released(self.key)

    def add_done_callback(self, fn):
        """fn(future) runs once the future is done, on the client's
        callback thread (at once there if already done)."""
        cbs = _callbacks()
        self._cf.add_done_callback(lambda: cbs.put((fn, self)))

    def __repr__(self):
        return f"<Future: {self.status}, key: {self.key}>"

    def __hash__(self):
        return hash(self.key)

    def bind_client(self, client):
        """Dask's: this future's client (a dtask future belongs to the client
        that made it; binding it to another one is refused)."""
        if client is not self.client:
            raise ValueError(f"future {self.key!r} belongs to {self.client!r}; a dtask future "
                             "cannot move to another client (submit or scatter there instead)")
        return self

    @property
    def executor(self):
        return self.client

    def __dask_tokenize__(self):
        return (type(self).__name__, self.key)

    def __eq__(self, other):
        return isinstance(other, Future) and other.key == self.key

    def __reduce__(self):
        # a Future travels by key (e.g. returned from a task); unpickled, it
        # is bound to get_client() there, which wants the key
        from .worker_client import _rebuild_future

        return (_rebuild_future, (self.key,))


serialize.FUTURE_TYPE = Future


class _Released:
    def __init__(self, key):
        self.key = key

    def __getattr__(self, name):
        raise ValueError(f"future {self.key!r} was released")


_cb_queue = None
_cb_lock = threading.Lock()


def _callbacks():
    """The queue of the thread that runs done callbacks."""
    global _cb_queue
    with _cb_lock:
        if _cb_queue is None:
            q = queue.SimpleQueue()

            def run():
                while True:
                    fn, fut = q.get()
                    try:
                        fn(fut)
                    except Exception:
                        import traceback

                        traceback.print_exc()

            threading.Thread(target=run, name="dtask-callbacks", daemon=True).start()
            _cb_queue = q
        return _cb_queue


def _ms(timeout):
    if timeout is None:
        return -1
    if isinstance(timeout, str):
        import dask.utils

        timeout = dask.utils.parse_timedelta(timeout)
    return max(0, int(timeout * 1000))


def _walk_futures(x, out):
    if type(x) is Future:
        out.append(x)
    elif isinstance(x, (list, tuple, set, frozenset)):
        for y in x:
            _walk_futures(y, out)
    elif isinstance(x, dict):
        for y in x.values():
            _walk_futures(y, out)


def _fast_payload(func, args, kwargs):
    """The F payload of func(*args, **kwargs) when every argument is a plain
    value (serialize.py), else None."""
    argp = serialize.f_args_plain(args, kwargs)
    if argp is None:
        return None
    fnp = serialize.fn_pickle(func)
    return None if fnp is None else serialize.f_header(fnp) + argp


def _c_args(x):
    """cfunc arguments: Futures as CFutures, containers walked."""
    if type(x) is Future:
        return x._cf
    if isinstance(x, (list, tuple)):
        return [_c_args(y) for y in x]
    if isinstance(x, dict):
        return {k: _c_args(v) for k, v in x.items()}
    return x


class Client(DatasetsMixin, ClientStateMixin, ClientAdmin, AsyncClientMixin, ClientDiagMixin,
             CompatClientMixin):
    """Connects to a dtask scheduler: ``Client(cluster)``, ``Client("host:port")``,
    or ``Client()`` to start a LocalCluster, as dask.distributed does."""

    def __init__(self, address=None, *, timeout=10, name=None, set_as_default=True,
                 auth_file=None, scheduler_file=None, heartbeat_timeout=60, **cluster_kwargs):
        from .cluster import LocalCluster

        self.cluster = None
        self._own_cluster = False
        security = cluster_kwargs.pop("security", None)  # dtask.Security (client_admin.py)
        auth_file = auth_file or getattr(security, "auth_file", None)
        if address is None and not scheduler_file and not os.environ.get("DTASK_SCHEDULER_ADDRESS"):
            address = LocalCluster(**cluster_kwargs)
            self._own_cluster = True
        if isinstance(address, LocalCluster):
            self.cluster = address
            auth_file = auth_file or address.auth_file
            address = address.scheduler_address
        elif hasattr(address, "scheduler_address"):  # another cluster object
            address = address.scheduler_address
        self.address = address or scheduler_file or os.environ.get("DTASK_SCHEDULER_ADDRESS")
        # heartbeat_timeout: seconds of silence from the scheduler after which
        # waiting calls raise FutureLost (None: never)
        hb = -1 if heartbeat_timeout is None else max(1, _ms(heartbeat_timeout))
        self._c = _core.CClient(address, _ms(timeout), name, auth_file, scheduler_file,
                                *_tls_files(security), heartbeat_timeout_ms=hb)
        self._dask_config = None
        if set_as_default:
            self._set_default()
        _live_clients.add(self)
        self._diag_init()  # print/warn from tasks (client_diag.py)

    # -------------------------------------------------------- submitting
    @staticmethod
    def _key(name, payload, deps, key, pure):
        """An explicit key, a fresh one (impure), or name-hash(call, deps)."""
        if key is not None:
            return str(key)
        if not pure:
            return f"{name}-{uuid.uuid4().hex}"
        h = hashlib.blake2b(payload, digest_size=16)
        for d in deps:
            h.update(b"\0" + d.key.encode())
        return f"{name}-{h.hexdigest()}"

    def submit(self, func, *args, key=None, workers=None, resources=None, retries=None,
               priority=0, allow_other_workers=False, pure=True, actor=False, timeout=None,
               fifo_timeout=None,
               **kwargs):
        """Runs func(*args, **kwargs) on a worker; returns a Future.  Futures
        among the arguments (at any depth) become dependencies.  actor=True:
        func is a class, kept on the worker as an actor (dtask.actor)."""
        if not callable(func) and not isinstance(func, cfunc):
            raise TypeError(f"First input to submit must be a callable function, not {func!r}")
        opts = dict(priority=int(priority), workers=_workers(workers),
                    allow_other_workers=bool(allow_other_workers),
                    resources=_resources(resources), retries=int(retries or 0))
        if timeout:  # seconds one run may take: past it, TimeoutError and the worker restarts
            opts["timeout"] = float(timeout)
        if actor:
            from .actor import submit_actor
            return submit_actor(self, func, args, kwargs, key, opts)
        if isinstance(func, cfunc):
            k = key if key is not None else None
            cf = self._c.submit(func.name, _c_args(list(args)), _c_args(kwargs) if kwargs else None,
                                key=None if k is None else str(k), pure=bool(pure), **opts)
            return Future(cf, self)
        payload = _fast_payload(func, args, kwargs)
        if payload is not None:
            deps = ()
        else:
            payload, deps = dumps_call(func, args, kwargs, Future)
        k = self._key(funcname(func), payload, deps, key, pure)
        cf = self._c.submit("py:" + funcname(func), [payload, *deps], key=k, pure=bool(pure), **opts)
        return Future(cf, self)

    def map(self, func, *iterables, key=None, workers=None, retries=None, resources=None,
            priority=0, allow_other_workers=False, pure=True, batch_size=None, fifo_timeout=None,
            **kwargs):
        """submit(func, *args) for each set of arguments from the iterables
        (in one message); returns a list of Futures."""
        if not callable(func) and not isinstance(func, cfunc):
            raise TypeError(f"First input to map must be a callable function, not {func!r}")
        if not iterables:
            return []
        calls = list(zip(*iterables))
        keys = list(key) if isinstance(key, (list, tuple)) else None
        if keys is not None and len(keys) != len(calls):
            raise ValueError(f"map got {len(keys)} keys for {len(calls)} calls")
        if isinstance(func, cfunc):
            return [self.submit(func, *a, key=None if keys is None else keys[i], workers=workers,
                                retries=retries, resources=resources, priority=priority,
                                allow_other_workers=allow_other_workers, pure=pure, **kwargs)
                    for i, a in enumerate(calls)]
        with serialize.gc_paused():
            return map_py(self, func, calls, keys, key, pure, kwargs, priority, workers,
                          allow_other_workers, resources, retries)

    def gather(self, futures, errors="raise", direct=None, asynchronous=None):
        """The results of futures, in the same structure (a Future, a list,
        tuple, set or dict of them, nested)."""
        with serialize.gc_paused():
            return self._gather(futures, errors)

    def _gather(self, futures, errors):
        flat = []
        _walk_futures(futures, flat)
        results = {}
        if flat:
            uniq = list({f.key: f for f in flat}.values())
            if errors == "skip":
                for f in uniq:
                    try:
                        results[f.key] = f.result()
                    except Exception:
                        pass
            else:
                try:
                    vals = self._c.gather([f._cf for f in uniq], -1)
                except DtaskError as e:
                    # find the future that failed, for its own error text
                    for f in uniq:
                        if f.status in ("error", "cancelled", "lost"):
                            f.result()
                    raise _translate(e) from None
                results = {f.key: v for f, v in zip(uniq, vals)}
        return _rebuild(futures, results, errors == "skip")

    def scatter(self, data, workers=None, broadcast=False, direct=None, hash=True):
        """Sends data to workers; returns Futures in the same structure (one
        for a single object, a list for a list, a dict for a dict)."""
        ws = _workers(workers)
        if isinstance(data, dict):
            keys = list(data)
            cfs = self._c.scatter(list(data.values()), workers=ws, broadcast=bool(broadcast))
            return {k: Future(cf, self) for k, cf in zip(keys, cfs)}
        if isinstance(data, (list, tuple, set, frozenset)):
            items = list(data)
            cfs = self._c.scatter(items, workers=ws, broadcast=bool(broadcast))
            out = [Future(cf, self) for cf in cfs]
            return type(data)(out) if not isinstance(data, list) else out
        if not isinstance(data, (range, collections.abc.Iterator)):
            (cf,) = self._c.scatter([data], workers=ws, broadcast=bool(broadcast))
            return Future(cf, self)
        # a range or an iterator (a generator, map(...)): a list, as in Dask
        items = list(data)
        cfs = self._c.scatter(items, workers=ws, broadcast=bool(broadcast))
        return [Future(cf, self) for cf in cfs]

    def get_executor(self, **kwargs):
        """A concurrent.futures Executor that runs calls on this client
        (kwargs: submit's pure, workers, resources, allow_other_workers,
        retries)."""
        from .executor import ClientExecutor

        return ClientExecutor(self, **kwargs)

    def futures_of(self, futures):
        return futures_of(futures, client=self)

    def cancel(self, futures, force=False):
        """Cancels futures: one, any nesting of lists/tuples/sets/dicts of
        them, or the futures behind a persisted dask collection; force=True
        also stops a task that is running (its worker restarts)."""
        for f in futures_of(futures):
            f.cancel(force=force)

    # -------------------------------------------------------- dask collections
    def get(self, dsk, keys, **kwargs):
        """Dask's scheduler interface: ``dask.compute(x, scheduler=client.get)``."""
        from .dask_graph import get

        return get(self, dsk, keys, **kwargs)

    def compute(self, collections, sync=False, **kwargs):
        """Futures for dask collections (one, or a list for a list)."""
        from .dask_graph import compute

        single = not isinstance(collections, (list, tuple))
        futs = compute(self, [collections] if single else list(collections), **kwargs)
        if sync:
            res = self.gather(futs)
            return res[0] if single else res
        return futs[0] if single else futs

    def persist(self, collections, optimize_graph=True, workers=None, allow_other_workers=None,
                resources=None, retries=None, priority=0, fifo_timeout=None, actors=None,
                **kwargs):
        """Computes dask collections on the cluster and keeps their results in
        worker memory: returns the same collections (one, or a list for a
        list) backed by futures (``dask.persist`` and ``x.persist()`` come
        here when this client is the default)."""
        from .dask_graph import persist

        single = not isinstance(collections, (list, tuple))
        opts = dict(priority=int(priority or 0), workers=_workers(workers),
                    allow_other_workers=bool(allow_other_workers),
                    resources=_resources(resources), retries=int(retries or 0))
        res = persist(self, [collections] if single else list(collections),
                      optimize_graph=optimize_graph, **opts)
        return res[0] if single else res

    # -------------------------------------------------------- cluster
    def wait_for_workers(self, n_workers=1, timeout=None):
        try:
            self._c.wait_for_workers(int(n_workers), _ms(timeout))
        except DtaskError as e:
            raise _translate(e) from None

    def scheduler_info(self, n_workers=-1, **kwargs):
        """Dask's shape: the scheduler's type, id, address, services,
        n_workers, total_threads, total_memory, and ``workers``: {address:
        {type, id, host, resources, local_directory, name, nthreads,
        memory_limit, last_seen, services, metrics, status, nanny}} for the
        first n_workers workers (-1: all).  dtask adds the scheduler's task
        counts (``n_tasks``, ``processing``, ``memory``...) at the top."""
        import time

        info = self._c.cluster_info()
        rows = self._c.workers()
        now = time.time()
        workers = {}
        for w in rows if n_workers is None or n_workers < 0 else rows[:n_workers]:
            addr = _tcp(w["address"])
            res = {}
            for item in filter(None, w["resources"].split(",")):
                k, _, v = item.partition("=")
                res[k] = float(v)
            workers[addr] = {
                "type": "Worker", "id": w["name"], "host": addr[6:].rsplit(":", 1)[0].strip("[]"),
                "resources": res, "local_directory": None, "name": w["name"],
                "nthreads": w["nthreads"], "memory_limit": w["memory_limit"],
                "last_seen": now - w["last_seen"], "services": {},
                "metrics": {
                    "executing": w["processing"], "in_memory": w["n_keys"],
                    "managed_bytes": w["memory"],
                    "spilled_bytes": {"memory": w["memory"], "disk": w["spilled"]},
                    "cpu": w["cpu"], "memory": w["rss"], "time": now,
                    "task_counts": {}, "num_fds": None,
                },
                "status": "paused" if w["paused"] else "running",
                "nanny": None, "pid": w["pid"],
            }
        dash = self.cluster.dashboard_link if self.cluster is not None else None
        out = {
            "type": "Scheduler", "id": f"Scheduler-{self.address}", "address": _tcp(self.address),
            "services": {"dashboard": int(dash.rsplit(":", 1)[1].split("/")[0])} if dash else {},
            "started": None, "n_workers": info["n_workers"],
            "total_threads": sum(w["nthreads"] for w in rows),
            "total_memory": sum(w["memory_limit"] for w in rows),
            "workers": workers,
        }
        out.update({k: v for k, v in info.items() if k not in out})
        return out

    def nthreads(self, workers=None):
        if workers is not None:  # by name or address (client_state.py)
            return {_tcp(a): n for a, n in self._query("ncores", {"workers": _workers(workers)}).items()}
        return {_tcp(w["address"]): w["nthreads"] for w in self._c.workers()}

    ncores = nthreads

    def retire_workers(self, workers, timeout=30):
        return self._c.retire_workers([str(w) for w in workers], _ms(timeout))

    @property
    def dashboard_link(self):
        return self.cluster.dashboard_link if self.cluster else None

    # -------------------------------------------------------- lifetime
    def _set_default(self):
        try:
            import dask
        except ImportError:
            return
        self._dask_config = dask.config.set(scheduler=self.get)
        self._dask_config.__enter__()
        _defaults.append(self)

    def close(self, timeout=None):
        if self._dask_config is not None:
            import dask

            if _defaults and _defaults[-1] is self:
                _defaults.pop()
                prev = _defaults[-1].get if _defaults else None
                dask.config.set(scheduler=prev)
            elif self in _defaults:
                _defaults.remove(self)
            self._dask_config = None
        self._diag_close()  # its threads stop asking first
        self._c.close()
        _live_clients.discard(self)
        if self._own_cluster and self.cluster is not None:
            self.cluster.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<Client: scheduler={self.address!r}>"


_defaults: list = []
_live_clients: set = set()


@atexit.register
def _close_clients():
    for c in list(_live_clients):
        try:
            c.close()
        except Exception:
            pass
    _core._exiting()


def _tcp(address):
    """A worker's or the scheduler's address as Dask spells it (tcp://host:port)."""
    if address is None or "://" in address or not isinstance(address, str):
        return address
    return "tcp://" + address


def _workers(w):
    if w is None:
        return None
    if isinstance(w, str):
        return [w]
    return [str(x) for x in w]


def _resources(r):
    if r is None:
        return None
    if isinstance(r, str):
        return r
    return ",".join(f"{k}={v}" for k, v in r.items())


def _rebuild(x, results, skip):
    if type(x) is Future:
        return results[x.key]
    if isinstance(x, (list, tuple, set, frozenset)):
        items = [_rebuild(y, results, skip) for y in x
                 if not (skip and type(y) is Future and y.key not in results)]
        return type(x)(items) if not isinstance(x, list) else items
    if isinstance(x, dict):
        return {k: _rebuild(v, results, skip) for k, v in x.items()
                if not (skip and type(v) is Future and v.key not in results)}
    return x


def default_client():
    if not _defaults:
        raise ValueError("No clients found: start one with dtask.Client()")
    return _defaults[-1]


def get_client(timeout=None, resolve_address=True):
    """Inside a task: the worker's client (docs/python.md, "Tasks from
    tasks").  Elsewhere: the default client."""
    from .worker_client import get_client as _gc

    return _gc(timeout, resolve_address)


# the module functions on futures live in waiting.py (after Future exists)
from .waiting import (  # noqa: E402,F401
    ALL_COMPLETED, FIRST_COMPLETED, DoneAndNotDoneFutures, _forgotten, as_completed,
    fire_and_forget, futures_of, progress, wait)

__all__ = [
    "Client", "Future", "wait", "as_completed", "progress", "cfunc", "KilledWorker",
    "CancelledError", "FutureLost", "DtaskError", "FIRST_COMPLETED", "ALL_COMPLETED",
    "fire_and_forget", "default_client", "get_client", "futures_of",
]
