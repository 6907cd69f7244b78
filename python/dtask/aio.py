"""The asynchronous API, as dask.distributed has it, on asyncio.

``Client(asynchronous=True)`` and ``LocalCluster(asynchronous=True)`` start
in the event loop's default executor (the C client connects, the cluster
starts its processes) and are awaited (``await Client(...)``, ``async
with``).  In asynchronous mode ``submit``/``map``/``compute``/``persist``
return at once, as in Dask, while the calls that wait (``gather``,
``scatter``, ``close``, ``run``, ``wait_for_workers``, and the management
calls listed in ``_AWAITABLE``) return awaitables.

How waiting works without polling: a coroutine that waits for futures
registers one done callback per pending future on the C client
(``CFuture.add_done_callback``: the C client runs it on its I/O thread, or
at once when the future is already done); the last one to run wakes the
event loop through ``loop.call_soon_threadsafe``.  Only then is the
blocking C call made (fetching the values of finished futures), in the
loop's default executor, so the event loop never blocks on the network.
Calls that have no done event to wait on (``wait_for_workers``,
``restart``, ...) run their synchronous form in the executor; there, the
client is not asynchronous (the thread runs no event loop), so the
synchronous code path is taken.

The mixins below are bases of ``Client``, ``Future`` and ``LocalCluster``;
``__init_subclass__`` wraps the methods named in the lists (when the class
has them, whichever module defines them), so the synchronous methods stay
written once, in client.py and cluster.py.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading

# Client methods that return awaitables in asynchronous mode (as Dask's,
# which go through SyncMethodMixin.sync); each runs its synchronous form in
# the loop's executor, except those with an own coroutine in _ASYNC_IMPL.
_AWAITABLE = (
    "gather", "scatter", "run", "wait_for_workers", "close", "shutdown", "get", "retry",
    "publish_dataset", "unpublish_dataset", "list_datasets", "get_dataset", "run_on_scheduler",
    "restart", "restart_workers", "upload_file", "rebalance", "replicate", "nthreads", "ncores",
    "who_has", "has_what", "processing", "nbytes", "call_stack", "profile",
    "dump_cluster_state", "get_metadata", "set_metadata", "get_scheduler_logs",
    "get_worker_logs", "benchmark_hardware", "log_event", "get_events", "retire_workers",
    "get_versions", "story", "get_task_stream", "register_plugin", "register_worker_plugin",
    "register_scheduler_plugin", "unregister_worker_plugin", "unregister_scheduler_plugin",
    "register_worker_callbacks", "forward_logging", "unforward_logging",
)

# Client methods that do not wait (they queue a message): in asynchronous
# mode they act at once and return an awaitable that is already done, so that
# Dask's ``await client.cancel(fs)`` and a bare ``client.cancel(fs)`` both work.
_DONE_AT_ONCE = ("cancel",)

# LocalCluster methods that return awaitables in asynchronous mode.
_CLUSTER_AWAITABLE = ("close", "get_logs", "wait_for_workers", "logs")


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _as_asyncio_loop(loop):
    """An asyncio loop from an asyncio loop or a tornado IOLoop."""
    if loop is None:
        return None
    return getattr(loop, "asyncio_loop", loop)


def _done_awaitable(value=None):
    """An awaitable already done with value: ``await`` it or drop it."""
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut


class _AwaitableDict(dict):
    """A dict (what Dask's asynchronous scheduler_info returns) that can also
    be awaited (giving itself)."""

    def __await__(self):
        return self
        yield  # noqa: unreachable: makes this a generator


def _wake_all(loop, futures):
    """An asyncio future of loop, done once every C future of ``futures``
    (dtask Futures) is done: one done callback per future on the C client,
    the last one wakes the loop."""
    waiter = loop.create_future()
    pending = [f for f in futures if not f.done()]
    if not pending:
        waiter.set_result(None)
        return waiter
    left = [len(pending)]
    lock = threading.Lock()

    def finish():
        if not waiter.done():
            waiter.set_result(None)

    def one_done():  # on the C client's I/O thread (or here if already done)
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            try:
                loop.call_soon_threadsafe(finish)
            except RuntimeError:  # the loop was closed meanwhile
                pass

    for f in pending:
        f._cf.add_done_callback(one_done)
    return waiter


def _first_of(loop, futures):
    """Done once one of ``futures`` is done."""
    waiter = loop.create_future()
    fired = [False]
    lock = threading.Lock()

    def finish():
        if not waiter.done():
            waiter.set_result(None)

    def one_done():
        with lock:
            if fired[0]:
                return
            fired[0] = True
        try:
            loop.call_soon_threadsafe(finish)
        except RuntimeError:
            pass

    for f in futures:
        f._cf.add_done_callback(one_done)
    return waiter


async def _wait_done(futures, timeout=None):
    """Waits (without blocking the loop) until all futures are done."""
    waiter = _wake_all(asyncio.get_running_loop(), futures)
    if timeout is None:
        await waiter
    else:
        from .client import _ms

        await asyncio.wait_for(waiter, _ms(timeout) / 1000)


async def _run_sync(fn, *args, **kwargs):
    """fn(*args, **kwargs) in the running loop's default executor."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))


# ------------------------------------------------------------------ Client


class _LoopThread:
    """The event loop of synchronous clients (``client.loop``,
    ``client.sync``): one asyncio loop in a daemon thread, started on first
    use."""

    _loop = None
    _lock = threading.Lock()

    @classmethod
    def get(cls):
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run():
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                threading.Thread(target=run, name="dtask-loop", daemon=True).start()
                ready.wait()
                cls._loop = loop
            return cls._loop


def _sync_on(loop, func, args, kwargs, callback_timeout):
    """func(*args, **kwargs) (a coroutine function, or one returning an
    awaitable or a value) run on loop, in its thread; blocks for the
    result (Dask's distributed.utils.sync)."""
    if _running_loop() is loop:
        raise RuntimeError("sync() called from thread of running loop")

    async def run():
        r = func(*args, **kwargs)
        if inspect.isawaitable(r):
            if callback_timeout is not None:
                r = asyncio.wait_for(r, callback_timeout)
            r = await r
        return r

    return asyncio.run_coroutine_threadsafe(run(), loop).result()


def _timeout_s(t):
    if t is None:
        return None
    from .client import _ms

    return _ms(t) / 1000


def _client_awaitable(name, meth):
    """meth (a synchronous Client method) returning an awaitable when the
    client is asynchronous (or asynchronous=True is passed, as Dask's)."""

    @functools.wraps(meth)
    def wrapper(self, *args, asynchronous=None, **kwargs):
        if asynchronous is None:
            asynchronous = self.asynchronous
        if not asynchronous:
            return meth(self, *args, **kwargs)
        impl = _ASYNC_IMPL.get(name)
        if impl is not None:
            return impl(self, meth, *args, **kwargs)
        return _run_sync(meth, self, *args, **kwargs)

    wrapper.__dtask_awaitable__ = True
    return wrapper


def _client_done_at_once(meth):
    @functools.wraps(meth)
    def wrapper(self, *args, asynchronous=None, **kwargs):
        r = meth(self, *args, **kwargs)
        if asynchronous is None:
            asynchronous = self.asynchronous
        return _done_awaitable(r) if asynchronous else r

    wrapper.__dtask_awaitable__ = True
    return wrapper


async def _gather_async(self, meth, futures, errors="raise", direct=None, **kwargs):
    from .client import _walk_futures

    flat = []
    _walk_futures(futures, flat)
    uniq = list({f.key: f for f in flat}.values())
    await _wait_done(uniq)
    # every future is done: the synchronous gather only fetches the values
    return await _run_sync(meth, self, futures, errors=errors, direct=direct, **kwargs)


def _close_impl(self, meth, *args, **kwargs):
    if getattr(self, "_aio_closed", False):
        return _done_awaitable(None)
    self._aio_closed = True
    return _run_sync(meth, self, *args, **kwargs)


_ASYNC_IMPL = {"gather": _gather_async, "close": _close_impl, "shutdown": _close_impl}


def _wrap_compute(meth):
    @functools.wraps(meth)
    def compute(self, collections, *args, sync=False, asynchronous=None, **kwargs):
        if asynchronous is None:
            asynchronous = self.asynchronous
        if not (sync and asynchronous):
            return meth(self, collections, *args, sync=sync, **kwargs)
        # submits now (fast); the results are awaited
        futs = meth(self, collections, *args, sync=False, **kwargs)
        return self.gather(futs, asynchronous=True)

    return compute


def _wrap_scheduler_info(meth):
    @functools.wraps(meth)
    def scheduler_info(self, *args, **kwargs):
        info = meth(self, *args, **kwargs)
        # Dask's asynchronous client answers at once (a dict, not awaited);
        # dtask's answer is also awaitable for code that awaits it
        return _AwaitableDict(info) if self.asynchronous and type(info) is dict else info

    return scheduler_info


def _wrap_init(init):
    """__init__ taking Dask's asynchronous= and loop=: in asynchronous mode
    the synchronous __init__ (which connects, or starts processes) runs in
    the loop's executor; ``await obj`` waits for it."""

    @functools.wraps(init)
    def __init__(self, *args, asynchronous=False, loop=None, **kwargs):
        self._asynchronous = bool(asynchronous)
        self._aio_loop = _as_asyncio_loop(loop)
        self._aio_closed = False
        if not asynchronous:
            init(self, *args, **kwargs)
            return
        running = _running_loop()
        if running is None:
            raise RuntimeError(
                f"{type(self).__name__}(asynchronous=True) needs a running asyncio event loop: "
                f"create it inside a coroutine (async def), then await it")
        self._aio_loop = running

        async def start():
            for a in (*args, *kwargs.values()):  # e.g. a LocalCluster still starting
                if isinstance(getattr(a, "_started", None), asyncio.Future):
                    await a._started
            await running.run_in_executor(None, functools.partial(init, self, *args, **kwargs))
            return self

        self._started = asyncio.ensure_future(start())

    return __init__


def _is_asynchronous(self):
    """Whether calls should return awaitables: the object was made with
    asynchronous=True and this thread runs its event loop (as Dask's)."""
    if not getattr(self, "_asynchronous", False):
        return False
    loop = _running_loop()
    return loop is not None and loop is getattr(self, "_aio_loop", None)


def _await_started(self):
    started = getattr(self, "_started", None)
    if started is not None:
        return started.__await__()

    async def ready():
        return self

    return ready().__await__()


class AsyncClientMixin:
    """Dask's asynchronous API for ``Client`` (see the module docstring)."""

    _asynchronous = False
    _aio_loop = None

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "__init__" in cls.__dict__:
            cls.__init__ = _wrap_init(cls.__dict__["__init__"])
        for name in _AWAITABLE:
            meth = getattr(cls, name, None)
            if callable(meth) and not getattr(meth, "__dtask_awaitable__", False):
                setattr(cls, name, _client_awaitable(name, meth))
        for name in _DONE_AT_ONCE:
            meth = getattr(cls, name, None)
            if callable(meth) and not getattr(meth, "__dtask_awaitable__", False):
                setattr(cls, name, _client_done_at_once(meth))
        if callable(getattr(cls, "compute", None)):
            cls.compute = _wrap_compute(cls.compute)
        if callable(getattr(cls, "scheduler_info", None)):
            cls.scheduler_info = _wrap_scheduler_info(cls.scheduler_info)

    asynchronous = property(_is_asynchronous, doc=_is_asynchronous.__doc__)

    @property
    def loop(self):
        """The client's asyncio event loop: the one it was made in for an
        asynchronous client, else dtask's loop thread (made on first use)."""
        if self._aio_loop is None:
            self._aio_loop = _LoopThread.get()
        return self._aio_loop

    def sync(self, func, *args, asynchronous=None, callback_timeout=None, **kwargs):
        """Dask's Client.sync: in asynchronous mode returns func(*args,
        **kwargs) (an awaitable) as is; otherwise runs it on ``self.loop``
        (in that loop's thread) and blocks for its result."""
        timeout = _timeout_s(callback_timeout)
        if asynchronous is None:
            asynchronous = self.asynchronous
        if asynchronous:
            r = func(*args, **kwargs)
            if timeout is not None:
                r = asyncio.wait_for(r, timeout)
            return r
        return _sync_on(self.loop, func, args, kwargs, timeout)

    def __await__(self):
        return _await_started(self)

    async def __aenter__(self):
        await self
        return self

    async def __aexit__(self, *exc):
        await self.close(asynchronous=True)


# ------------------------------------------------------------------ Future


async def _result_async(fut, timeout=None, raiseit=True):
    await _wait_done([fut], timeout)
    if fut.status == "finished":
        return await _run_sync(fut._sync_result, None)
    # an error, cancelled or lost: known here, nothing to fetch
    exc = fut._sync_exception(None)
    if raiseit:
        raise exc
    return exc


async def _exception_async(fut, timeout=None):
    await _wait_done([fut], timeout)
    return None if fut.status == "finished" else fut._sync_exception(None)


async def _traceback_async(fut, timeout=None):
    exc = await _exception_async(fut, timeout)
    return exc.__traceback__ if exc is not None else None


def _future_awaitable(impl, meth):
    @functools.wraps(meth)
    def wrapper(self, timeout=None, **kwargs):
        if not _future_async(self, kwargs.pop("asynchronous", None)):
            return meth(self, timeout, **kwargs)
        return impl(self, timeout)

    return wrapper


def _future_async(fut, asynchronous=None):
    if asynchronous is not None:
        return asynchronous
    client = getattr(fut, "client", None)
    return client is not None and bool(getattr(client, "asynchronous", False))


def _wrap_add_done_callback(meth):
    @functools.wraps(meth)
    def add_done_callback(self, fn):
        client = getattr(self, "client", None)
        loop = getattr(client, "_aio_loop", None)
        if not getattr(client, "_asynchronous", False) or loop is None:
            return meth(self, fn)

        # an asynchronous client: fn(future) runs on its event loop's thread
        def done():  # on the C client's I/O thread
            try:
                loop.call_soon_threadsafe(fn, self)
            except RuntimeError:  # the loop is closed
                pass

        self._cf.add_done_callback(done)

    return add_done_callback


def _wrap_cancel(meth):
    @functools.wraps(meth)
    def cancel(self, *args, **kwargs):
        r = meth(self, *args, **kwargs)  # does not wait: done now
        return _done_awaitable(r) if _future_async(self) else r

    return cancel


class AsyncFutureMixin:
    """``await future`` and, for futures of asynchronous clients, awaitable
    ``result``/``exception``/``traceback`` and done callbacks on the loop."""

    __slots__ = ()

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cls._sync_result = cls.result
        cls._sync_exception = cls.exception
        cls.result = _future_awaitable(_result_async, cls.result)
        cls.exception = _future_awaitable(_exception_async, cls.exception)
        cls.traceback = _future_awaitable(_traceback_async, cls.traceback)
        cls.add_done_callback = _wrap_add_done_callback(cls.add_done_callback)
        cls.cancel = _wrap_cancel(cls.cancel)

    def __await__(self):
        """``await future``: its result, waited for on the running loop
        (whether or not the client is asynchronous)."""
        return _result_async(self).__await__()


# ------------------------------------------------------------------ LocalCluster


def _cluster_awaitable(meth):
    @functools.wraps(meth)
    def wrapper(self, *args, asynchronous=None, **kwargs):
        if asynchronous is None:
            asynchronous = self.asynchronous
        if not asynchronous:
            return meth(self, *args, **kwargs)
        if meth.__name__ == "close":
            return _close_impl(self, meth, *args, **kwargs)
        return _run_sync(meth, self, *args, **kwargs)

    return wrapper


class AsyncClusterMixin:
    """``LocalCluster(asynchronous=True)``: ``await LocalCluster(...)``,
    ``async with``, awaitable ``close``."""

    _asynchronous = False
    _aio_loop = None

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "__init__" in cls.__dict__:
            cls.__init__ = _wrap_init(cls.__dict__["__init__"])
        for name in _CLUSTER_AWAITABLE:
            meth = getattr(cls, name, None)
            if callable(meth):
                setattr(cls, name, _cluster_awaitable(meth))

    asynchronous = property(_is_asynchronous, doc=_is_asynchronous.__doc__)

    @property
    def loop(self):
        if self._aio_loop is None:
            self._aio_loop = _LoopThread.get()
        return self._aio_loop

    def sync(self, func, *args, asynchronous=None, callback_timeout=None, **kwargs):
        return AsyncClientMixin.sync(self, func, *args, asynchronous=asynchronous,
                                     callback_timeout=callback_timeout, **kwargs)

    def __await__(self):
        return _await_started(self)

    async def __aenter__(self):
        await self
        return self

    async def __aexit__(self, *exc):
        await self.close(asynchronous=True)


__all__ = ["AsyncClientMixin", "AsyncFutureMixin", "AsyncClusterMixin"]
