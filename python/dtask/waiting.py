"""wait, as_completed, progress, futures_of and fire_and_forget: the module
functions of dask.distributed that act on futures (re-exported by
dtask.client and dtask)."""

from __future__ import annotations

import queue
import threading
from collections import namedtuple

from . import _core
from .client import CancelledError, Future, _callbacks, _ms, _walk_futures  # noqa: F401

DoneAndNotDoneFutures = namedtuple("DoneAndNotDoneFutures", "done not_done")
FIRST_COMPLETED = "FIRST_COMPLETED"
ALL_COMPLETED = "ALL_COMPLETED"


def wait(fs, timeout=None, return_when=ALL_COMPLETED):
    """Waits until all (or the first) of fs are done; TimeoutError after
    timeout seconds.  Returns (done, not_done) sets."""
    if isinstance(fs, Future):
        fs = [fs]
    fs = list(fs)
    if return_when not in (ALL_COMPLETED, FIRST_COMPLETED):
        raise ValueError(f"return_when must be ALL_COMPLETED or FIRST_COMPLETED, not {return_when!r}")
    if fs and not _core.wait([f._cf for f in fs], _ms(timeout), return_when == FIRST_COMPLETED):
        raise TimeoutError(f"wait: {sum(not f.done() for f in fs)} of {len(fs)} futures not done "
                           f"after {timeout} s")
    done = {f for f in fs if f.done()}
    return DoneAndNotDoneFutures(done, set(fs) - done)


class as_completed:
    """Iterates over futures in the order they finish; ``add`` more while
    iterating; ``with_results=True`` yields (future, result) pairs."""

    def __init__(self, futures=None, with_results=False, raise_errors=True):
        self._q = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self.with_results = with_results
        self.raise_errors = raise_errors
        for f in futures or ():
            self.add(f)

    def add(self, future):
        with self._lock:
            self._pending += 1
        q = self._q
        future._cf.add_done_callback(lambda: q.put(future))

    def update(self, futures):
        for f in futures:
            self.add(f)

    def count(self):
        with self._lock:
            return self._pending

    def is_empty(self):
        return self.count() == 0

    def __iter__(self):
        return self

    def __next__(self):
        with self._lock:
            if self._pending == 0:
                raise StopIteration
        while True:
            try:
                f = self._q.get(timeout=0.2)  # wake up for ^C
                break
            except queue.Empty:
                continue
        with self._lock:
            self._pending -= 1
        if self.with_results:
            try:
                return f, f.result()
            except Exception as e:
                if self.raise_errors:
                    raise
                return f, e
        return f

    def next_batch(self, block=True):
        out = [next(self)] if block else []
        while True:
            try:
                f = self._q.get_nowait()
            except queue.Empty:
                return out
            with self._lock:
                self._pending -= 1
            out.append((f, f.result()) if self.with_results else f)

    def batches(self):
        while not self.is_empty():
            yield self.next_batch()


def progress(*futures, notebook=None, multi=True, complete=True):
    """Draws a progress bar on stdout until the futures are done."""
    flat = []
    for f in futures:
        _walk_futures(f if not isinstance(f, Future) else [f], flat)
    if not flat:
        return
    flat[0].client._c.progress([f._cf for f in flat], -1)


def futures_of(o, client=None):
    """The Futures in o: nested lists, tuples, sets and dicts, and the graphs
    of dask collections (a persisted collection's futures), as Dask's
    futures_of.  With client, CancelledError if one of them was cancelled."""
    stack, seen, out = [o], set(), []
    while stack:
        x = stack.pop()
        if type(x) in (tuple, set, list):
            stack.extend(x)
        elif type(x) is dict:
            stack.extend(x.values())
        elif isinstance(x, Future):
            if x.key not in seen:
                seen.add(x.key)
                out.append(x)
        elif hasattr(x, "__dask_graph__") and callable(x.__dask_graph__):
            g = x.__dask_graph__()
            if g is not None:
                stack.extend(g.values())
    if client is not None:
        bad = [f.key for f in out if f.cancelled()]
        if bad:
            raise CancelledError(f"futures cancelled: {bad}")
    return out[::-1]


def fire_and_forget(futures):
    """Keep the tasks running after their futures are released (the
    scheduler keeps a task while a client wants it: this holds them)."""
    flat = []
    _walk_futures(futures if not isinstance(futures, Future) else [futures], flat)
    by_client = {}
    for f in flat:
        by_client.setdefault(id(f.client), (f.client, []))[1].append(f._cf)
    for c, cfs in by_client.values():
        c._c.fire_and_forget(cfs)  # the scheduler's holder keeps them to the end


_forgotten: set = set()


