"""Coordination primitives and published datasets, as in dask.distributed.

``Variable``, ``Queue``, ``Lock``, ``MultiLock``, ``Event`` and ``Semaphore``
are named objects held by the scheduler: every client and task that uses the
same name shares them.  They pickle by name, so they can be passed into
tasks, where they use ``get_client()``.  Values are pickled; futures inside
a value stay futures (the scheduler keeps their results alive while it holds
the value).  Timeouts are seconds (None: wait forever) and are applied by
the scheduler, so a call that timed out took nothing.  Locks and semaphore
leases belong to the client connection that took them and are released when
it closes (for a task, when its worker goes).

``DatasetsMixin`` adds ``publish_dataset``, ``get_dataset``,
``list_datasets``, ``unpublish_dataset`` and the ``datasets`` mapping to
``Client``.
"""

from __future__ import annotations

import io
import os
import pickle
import threading
import uuid
from collections.abc import MutableMapping

import cloudpickle

from . import _core

__all__ = ["Variable", "Queue", "Lock", "MultiLock", "Event", "Semaphore", "DatasetsMixin"]

_NO_DEFAULT = object()


class _Pickler(cloudpickle.Pickler):
    """cloudpickle; dtask Futures become persistent ids (their positions)."""

    def __init__(self, file, futures, future_type):
        super().__init__(file, protocol=5)
        self.futures = futures
        self.future_type = future_type
        self.seen = {}

    def persistent_id(self, obj):
        if type(obj) is not self.future_type:
            return None
        i = self.seen.get(obj.key)
        if i is None:
            i = self.seen[obj.key] = len(self.futures)
            self.futures.append(obj._cf)
        return i


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, futures):
        super().__init__(file)
        self.futures = futures

    def persistent_load(self, pid):
        return self.futures[pid]


def _dumps(value):
    """value -> (bytes, [CFuture...]) for _core.coord"""
    from .client import Future

    futures = []
    f = io.BytesIO()
    _Pickler(f, futures, Future).dump(value)
    return f.getvalue(), futures


def _loads(reply, client):
    """what _core.coord returned for a value -> the Python value"""
    from .client import Future

    if reply[0] == "native":
        return reply[1]
    _, data, cfs = reply
    futures = [Future(cf, client) for cf in cfs]
    return _Unpickler(io.BytesIO(data), futures).load()


def _ms(timeout):
    from .client import _ms as ms

    return ms(timeout)


def _translate(err):
    from .client import _translate as tr

    return tr(err)


def _call(client, op, names, value=None, timeout=None, arg=0):
    """one request to the scheduler; DtaskErrors as Dask's exceptions"""
    from .client import DtaskError

    try:
        return _core.coord(client._c, op, list(names), value, _ms(timeout), int(arg))
    except DtaskError as e:
        raise _translate(e) from None


_process_clients = {}
_process_lock = threading.Lock()


def _where(client):
    """(address, auth_file) of client's scheduler, for a pickled primitive"""
    if client is None:
        return None
    cluster = getattr(client, "cluster", None)
    auth = getattr(cluster, "auth_file", None) or os.environ.get("DTASK_AUTH_FILE")
    return (client.address if isinstance(client.address, str) else None, auth)


def _client_for(where):
    """get_client(); where there is none (in a task on a worker, until the
    worker has a client of its own) one client per process for the
    scheduler the primitive came from"""
    from .client import Client, get_client

    try:
        return get_client()
    except ValueError:
        if not where or not where[0]:
            raise
    with _process_lock:
        c = _process_clients.get(where)
        if c is None:
            c = _process_clients[where] = Client(where[0], auth_file=where[1],
                                                 set_as_default=False)
        return c


class _Primitive:
    """A named primitive; pickles by name (and reattaches to get_client())."""

    _prefix = "primitive"

    def __init__(self, name=None, client=None):
        self.name = name or f"{self._prefix}-{uuid.uuid4().hex}"
        self._client = client
        self._where = None

    @property
    def client(self):
        if self._client is None:
            self._client = _client_for(self._where)
        return self._client

    def _op(self, op, value=None, timeout=None, arg=0):
        return _call(self.client, op, [self.name], value, timeout, arg)

    def __reduce__(self):
        where = _where(self._client) or self._where
        if where is None:  # made without a client: the default one's scheduler
            try:
                where = _where(_client_for(None))
            except ValueError:
                pass
        return (_rebuild, (type(self), self.name, self._state(), where))

    def _state(self):
        return None

    def _setstate(self, state):
        pass

    def __repr__(self):
        return f"<{type(self).__name__}: {self.name}>"


def _rebuild(cls, name, state, where):
    obj = cls.__new__(cls)
    _Primitive.__init__(obj, name, None)
    obj._where = where
    obj._setstate(state)
    return obj


class Variable(_Primitive):
    """A named value: ``set``, ``get(timeout=None)`` (waits until it is
    set; TimeoutError), ``delete``."""

    _prefix = "variable"

    def set(self, value, timeout=None):
        self._op(_core.COORD_VAR_SET, _dumps(value))

    def get(self, timeout=None):
        _, reply = self._op(_core.COORD_VAR_GET, timeout=timeout)
        return _loads(reply, self.client)

    def delete(self):
        self._op(_core.COORD_VAR_DELETE, timeout=0)


class Queue(_Primitive):
    """A named FIFO: ``put(value, timeout=None)``, ``get(timeout=None,
    batch=False)``, ``qsize()``; ``maxsize`` > 0 bounds it (a put waits for
    room).  TimeoutError when a timeout passes."""

    _prefix = "queue"

    def __init__(self, name=None, client=None, maxsize=0):
        super().__init__(name, client)
        self.maxsize = int(maxsize or 0)

    def _state(self):
        return self.maxsize

    def _setstate(self, state):
        self.maxsize = state or 0

    def put(self, value, timeout=None):
        self._op(_core.COORD_QUEUE_PUT, _dumps(value), timeout, self.maxsize)

    def _get1(self, timeout):
        _, reply = self._op(_core.COORD_QUEUE_GET, timeout=timeout)
        return _loads(reply, self.client)

    def get(self, timeout=None, batch=False):
        """one value; batch=True: every value there now (a list, maybe
        empty); batch=n: a list of n values, each waited for"""
        if batch is True:
            out = []
            while True:
                try:
                    out.append(self._get1(0))
                except TimeoutError:
                    return out
        if batch is not False and batch is not None:
            return [self._get1(timeout) for _ in range(int(batch))]
        return self._get1(timeout)

    def qsize(self):
        count, _ = self._op(_core.COORD_QUEUE_SIZE, timeout=0)
        return count


class Lock(_Primitive):
    """A named lock held by this client: ``acquire(blocking=True,
    timeout=None)`` returns whether it got it; ``release()`` raises
    RuntimeError if this client does not hold it; ``locked()``; ``with``."""

    _prefix = "lock"

    def acquire(self, blocking=True, timeout=None):
        if not blocking:
            if timeout is not None:
                raise ValueError("can't specify a timeout for a non-blocking call")
            timeout = 0
        try:
            self._op(_core.COORD_LOCK_ACQUIRE, timeout=timeout)
            return True
        except TimeoutError:
            return False

    def release(self):
        try:
            self._op(_core.COORD_LOCK_RELEASE, timeout=0)
        except Exception as e:
            if getattr(e, "code", None) == _core.DT_EINVAL:
                raise RuntimeError(f"Released too often: lock {self.name!r} is not held") from None
            raise

    def locked(self):
        count, _ = self._op(_core.COORD_LOCK_LOCKED, timeout=0)
        return bool(count)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


class MultiLock(_Primitive):
    """Several named locks taken all at once (or ``num_locks`` of them),
    never some while waiting: ``acquire(blocking=True, timeout=None,
    num_locks=None)`` returns whether it got them; ``release()``; ``with``."""

    def __init__(self, names=(), client=None):
        super().__init__("multilock", client)
        self.names = [str(n) for n in names]

    def _state(self):
        return self.names

    def _setstate(self, state):
        self.names = list(state or ())

    def acquire(self, blocking=True, timeout=None, num_locks=None):
        if not self.names:
            return True
        if not blocking:
            if timeout is not None:
                raise ValueError("can't specify a timeout for a non-blocking call")
            timeout = 0
        try:
            _call(self.client, _core.COORD_MLOCK_ACQUIRE, self.names, None, timeout, num_locks or 0)
            return True
        except TimeoutError:
            return False

    def release(self):
        if not self.names:
            return
        try:
            _call(self.client, _core.COORD_MLOCK_RELEASE, self.names, None, 0)
        except Exception as e:
            if getattr(e, "code", None) == _core.DT_EINVAL:
                raise RuntimeError(f"Released too often: multilock {self.names!r} is not held") from None
            raise

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

    def __repr__(self):
        return f"<MultiLock: {self.names}>"


class Event(_Primitive):
    """A named flag: ``set()``, ``clear()``, ``is_set()``, ``wait(timeout=None)``
    returns whether it was set in time."""

    _prefix = "event"

    def set(self):
        self._op(_core.COORD_EVENT_SET, timeout=0)

    def clear(self):
        self._op(_core.COORD_EVENT_CLEAR, timeout=0)

    def is_set(self):
        count, _ = self._op(_core.COORD_EVENT_IS_SET, timeout=0)
        return bool(count)

    def wait(self, timeout=None):
        try:
            self._op(_core.COORD_EVENT_WAIT, timeout=timeout)
            return True
        except TimeoutError:
            return False


class Semaphore(_Primitive):
    """At most ``max_leases`` holders at once: ``acquire(timeout=None)``
    returns whether it got a lease; ``release()`` (RuntimeError if this
    client holds none); ``get_value()``: leases held; ``with``."""

    _prefix = "semaphore"

    def __init__(self, max_leases=1, name=None, register=True, scheduler_rpc=None, loop=None,
                 client=None):
        super().__init__(name, client)
        if int(max_leases) < 1:
            raise ValueError("max_leases must be at least 1")
        self.max_leases = int(max_leases)

    def _state(self):
        return self.max_leases

    def _setstate(self, state):
        self.max_leases = state or 1

    def acquire(self, timeout=None):
        try:
            self._op(_core.COORD_SEM_ACQUIRE, timeout=timeout, arg=self.max_leases)
            return True
        except TimeoutError:
            return False

    def release(self):
        try:
            self._op(_core.COORD_SEM_RELEASE, timeout=0)
            return True
        except Exception as e:
            if getattr(e, "code", None) == _core.DT_EINVAL:
                raise RuntimeError(f"Released too often: semaphore {self.name!r}") from None
            raise

    def get_value(self):
        count, _ = self._op(_core.COORD_SEM_VALUE, timeout=0)
        return count

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


# ---------------------------------------------------------------- datasets


class Datasets(MutableMapping):
    """``client.datasets``: the published datasets as a mapping."""

    def __init__(self, client):
        self._client = client

    def __getitem__(self, name):
        return self._client.get_dataset(name)

    def __setitem__(self, name, value):
        self._client.publish_dataset(value, name=name, override=True)

    def __delitem__(self, name):
        if name not in self._client.list_datasets():
            raise KeyError(name)
        self._client.unpublish_dataset(name)

    def __iter__(self):
        return iter(self._client.list_datasets())

    def __len__(self):
        return len(self._client.list_datasets())

    def __contains__(self, name):
        return name in self._client.list_datasets()

    def __repr__(self):
        return f"<Datasets: {sorted(self._client.list_datasets())}>"


class DatasetsMixin:
    """Published datasets for Client (dask.distributed's names)."""

    def publish_dataset(self, *args, name=None, override=False, **kwargs):
        """publish_dataset(x, name="x") or publish_dataset(x=x, y=y): the
        values (futures inside stay alive) outlive this client until
        unpublished.  ValueError if a name exists (unless override)."""
        from .client import DtaskError

        if args and name is None:
            raise ValueError("publish_dataset: positional values need name=")
        if len(args) > 1:
            raise ValueError("publish_dataset: one positional value with name=")
        items = dict(kwargs)
        if args:
            items[name] = args[0]
        for key, value in items.items():
            try:
                _core.coord(self._c, _core.COORD_DS_PUBLISH, [str(key)], _dumps(value), 0,
                            1 if override else 0)
            except DtaskError as e:
                if e.code == _core.DT_EINVAL:
                    raise ValueError(f"Dataset {key!r} already exists") from None
                raise _translate(e) from None

    def get_dataset(self, name, default=_NO_DEFAULT, **kwargs):
        """the published value; KeyError (or default) if there is none"""
        from .client import DtaskError

        try:
            _, reply = _core.coord(self._c, _core.COORD_DS_GET, [str(name)], None, 0, 0)
        except DtaskError as e:
            if e.code == _core.DT_ENOTFOUND:
                if default is _NO_DEFAULT:
                    raise KeyError(f"Dataset '{name}' not found") from None
                return default
            raise _translate(e) from None
        return _loads(reply, self)

    def list_datasets(self, **kwargs):
        return _call(self, _core.COORD_DS_LIST, [])

    def unpublish_dataset(self, name, **kwargs):
        from .client import DtaskError

        try:
            _core.coord(self._c, _core.COORD_DS_UNPUBLISH, [str(name)], None, 0, 0)
        except DtaskError as e:
            if e.code != _core.DT_ENOTFOUND:
                raise _translate(e) from None

    @property
    def datasets(self):
        return Datasets(self)
