"""Tasks that launch tasks (Dask's "Launch Tasks from Tasks").

Inside a task, ``get_client()`` is the worker's client (one per worker
process, shared by its tasks, connected to the worker's scheduler with the
worker's secret/TLS), ``worker_client()`` is the same client as a context
manager that secedes on entry and rejoins on exit, ``secede()`` hands the
task's thread back to the worker (the scheduler stops counting the task
against the worker's threads), ``rejoin()`` waits for a thread slot again.
Waiting on futures inside a task (``result``, ``gather``, ``wait``,
``as_completed``) secedes automatically while it waits, with the GIL
released.  ``raise Reschedule()`` puts the task back to run again, not as a
failure.  ``get_worker()`` says where the task runs.
"""

from __future__ import annotations

import contextlib
import threading

from . import _core

_lock = threading.Lock()
_client = None  # the worker's Client, made on first use


class Reschedule(Exception):
    """Raise inside a task to have it run again (elsewhere if possible);
    the scheduler does not count it as a failure."""


def _task_client():
    """The worker's Client, or None outside a task."""
    global _client
    info = _core.task_info()
    if info is None:
        return None
    with _lock:
        # (a new scheduler: an in-process worker of a later LocalCluster(processes=False))
        if _client is None or _client._c is None or _client.address != info["scheduler"]:
            from .client import Client

            c = Client.__new__(Client)
            c.cluster = None
            c._own_cluster = False
            c.address = info["scheduler"]
            c._dask_config = None
            c._c = _core.task_client()  # borrowed: never closed from Python
            _client = c
        return _client


def get_client(timeout=None, resolve_address=True):
    """Inside a task: the worker's client.  Elsewhere: the default client."""
    c = _task_client()
    if c is not None:
        return c
    from .client import default_client

    return default_client()


def secede():
    """Hand this task's thread back to the worker: it runs other tasks
    meanwhile, and the scheduler no longer counts this one against it."""
    _core.task_secede()


def rejoin():
    """Wait until the worker has a free thread slot again and take it."""
    _core.task_rejoin()


@contextlib.contextmanager
def worker_client(timeout=None, separate_thread=True):
    """``with worker_client() as client:`` inside a task: the worker's
    client, with the task seceded for the duration (as Dask)."""
    c = _task_client()
    if c is None:
        raise ValueError("worker_client() must be used inside a task")
    if separate_thread:
        secede()
    try:
        yield c
    finally:
        if separate_thread:
            rejoin()


def _tcp(address):
    return address if not address or "://" in address else "tcp://" + address


class _SchedulerInfo:
    __slots__ = ("address",)

    def __init__(self, address):
        self.address = address

    def __repr__(self):
        return f"<Scheduler {self.address!r}>"


class WorkerInfo:
    """What a task can know of the worker it runs on (a subset of Dask's
    Worker): address, name, nthreads, scheduler.address, the running key."""

    def __init__(self, info):
        self.address = _tcp(info["address"])  # as Dask spells it: tcp://host:port
        self.name = info["name"]
        self.nthreads = info["nthreads"]
        self.scheduler = _SchedulerInfo(_tcp(info["scheduler"]))
        self.key = info["key"]

    @property
    def contact_address(self):
        return self.address

    @property
    def incoming_transfer_log(self):
        """The last results this worker fetched from peers (Dask's entries:
        start, stop, middle, duration, who, keys {key: nbytes}, total,
        bandwidth), oldest first."""
        import collections

        return collections.deque(_core.transfer_log(False), maxlen=100000)

    @property
    def outgoing_transfer_log(self):
        """The last results this worker sent to peers and clients (logged as
        the reply is written: duration 0), oldest first."""
        import collections

        return collections.deque(_core.transfer_log(True), maxlen=100000)

    def __repr__(self):
        return f"<Worker {self.name!r}: {self.address}, threads: {self.nthreads}>"


def get_worker():
    """The worker running the current task; ValueError outside a task."""
    info = _core.task_info()
    if info is None:
        raise ValueError("No worker found")
    return WorkerInfo(info)


def _rebuild_future(key):
    """A Future unpickled: bound to get_client() (the worker's inside a task)."""
    from .client import Future

    c = get_client()
    return Future(c._c.future(key), c)


def _result_refs(value):
    """The Futures a task's result holds (in lists, tuples, sets, dicts):
    the worker keeps their keys wanted while it holds the result."""
    from .client import Future, _walk_futures

    if type(value) is Future:
        return [value._cf]
    if not isinstance(value, (list, tuple, set, frozenset, dict)):
        return None
    out = []
    _walk_futures(value, out)
    return [f._cf for f in out] or None


__all__ = ["get_client", "worker_client", "secede", "rejoin", "get_worker", "Reschedule"]
