"""wait and as_completed with their asynchronous forms (``await wait(fs)``,
``async for f in as_completed(fs)``), as dask.distributed's; see aio.py for
how waiting wakes the event loop."""

from __future__ import annotations

import asyncio
import queue
import threading

from . import client as _client
from .aio import _first_of, _result_async, _timeout_s, _wake_all


def _client_of(fs):
    for f in fs:
        c = getattr(f, "client", None)
        if c is not None:
            return c
    return _client._defaults[-1] if _client._defaults else None


def _flatten(fs):
    from .client import Future, futures_of

    if isinstance(fs, Future):
        return [fs]
    if isinstance(fs, (list, tuple, set, frozenset)) and all(isinstance(f, Future) for f in fs):
        return list(fs)
    return futures_of(fs)  # nested containers, persisted collections (as Dask's _wait)


def wait(fs, timeout=None, return_when="ALL_COMPLETED"):
    """Waits until all (or the first) of fs are done: (done, not_done) sets;
    TimeoutError after timeout seconds.  fs: a Future, futures (nested) or
    persisted collections.  With an asynchronous client, in its loop, an
    awaitable (``await wait(futures)``), as Dask's."""
    from . import client as _client

    flat = _flatten(fs)
    c = _client_of(flat)
    if c is not None and c.asynchronous:
        return _wait_async(flat, timeout, return_when)
    return _client.wait(flat, timeout=timeout, return_when=return_when)


async def _wait_async(fs, timeout, return_when):
    from .client import ALL_COMPLETED, FIRST_COMPLETED, DoneAndNotDoneFutures

    if return_when not in (ALL_COMPLETED, FIRST_COMPLETED):
        raise ValueError(f"return_when must be ALL_COMPLETED or FIRST_COMPLETED, not {return_when!r}")
    if fs:
        loop = asyncio.get_running_loop()
        waiter = _wake_all(loop, fs) if return_when == ALL_COMPLETED else _first_of(loop, fs)
        t = _timeout_s(timeout)
        try:
            await (waiter if t is None else asyncio.wait_for(waiter, t))
        except asyncio.TimeoutError:
            raise TimeoutError(f"wait: {sum(not f.done() for f in fs)} of {len(fs)} futures "
                               f"not done after {timeout} s") from None
    done = {f for f in fs if f.done()}
    return DoneAndNotDoneFutures(done, set(fs) - done)


class as_completed(_client.as_completed):
    """Iterates over futures in the order they finish, with ``for`` or
    ``async for`` (Dask's signature: futures, loop, with_results,
    raise_errors, timeout).  ``async for`` waits on the running loop,
    woken by the futures' done callbacks."""

    def __init__(self, futures=None, loop=None, with_results=False, raise_errors=True, *,
                 timeout=None):
        self._waiters = []
        self._wlock = threading.Lock()
        self._timeout = _timeout_s(timeout)
        super().__init__(futures, with_results=with_results, raise_errors=raise_errors)

    def add(self, future):
        from .client import Future

        if not isinstance(future, Future):
            raise TypeError(f"Input must be a future, got {future!r}")
        with self._lock:
            self._pending += 1
        q = self._q

        def done():  # on the C client's I/O thread: queue, then wake
            q.put(future)
            self._notify()

        future._cf.add_done_callback(done)

    def _notify(self):
        with self._wlock:
            waiters, self._waiters = self._waiters, []
        for loop, w in waiters:
            try:
                loop.call_soon_threadsafe(_set_done, w)
            except RuntimeError:
                pass

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._timeout is None:
            return await self._anext()
        try:
            return await asyncio.wait_for(self._anext(), self._timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"as_completed: nothing finished in {self._timeout} s") from None

    async def _anext(self):
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._pending == 0:
                    raise StopAsyncIteration
            try:
                f = self._q.get_nowait()
                break
            except queue.Empty:
                pass
            w = loop.create_future()
            with self._wlock:
                self._waiters.append((loop, w))
            if self._q.empty():  # a put after this check notifies w
                await w
        with self._lock:
            self._pending -= 1
        if not self.with_results:
            return f
        try:
            return f, await _result_async(f)
        except Exception as e:
            if self.raise_errors:
                raise
            return f, e


def _set_done(w):
    if not w.done():
        w.set_result(None)


__all__ = ["wait", "as_completed"]
