"""ClientExecutor: a concurrent.futures.Executor over a dtask Client
(``client.get_executor(**submit_kwargs)``), as dask.distributed's."""

from __future__ import annotations

import concurrent.futures as cf
import time
import weakref


class ClientExecutor(cf.Executor):
    """Runs calls on the cluster; each returns a concurrent.futures.Future
    that completes when the dtask future does (no thread waits for it: the
    dtask future's done callback completes it).  Cancelling it cancels the
    task."""

    _allowed_kwargs = frozenset(["pure", "workers", "resources", "allow_other_workers", "retries"])

    def __init__(self, client, **kwargs):
        unknown = set(kwargs) - self._allowed_kwargs
        if unknown:
            raise TypeError(f"unsupported arguments to ClientExecutor: {sorted(unknown)}")
        self._client = client
        self._futures = weakref.WeakSet()
        self._shutdown = False
        self._kwargs = kwargs

    def _wrap(self, future):
        out = cf.Future()

        def cancel_task(f):
            if f.cancelled() and future.status != "cancelled":
                future.cancel()

        out.add_done_callback(cancel_task)

        def done(fut):
            if out.done():
                return
            if fut.status == "cancelled":
                out.cancel()
                out.set_running_or_notify_cancel()
                return
            try:
                res = fut.result()
            except BaseException as e:
                if out.set_running_or_notify_cancel():
                    out.set_exception(e)
            else:
                if out.set_running_or_notify_cancel():
                    out.set_result(res)

        future.add_done_callback(done)
        return out

    def submit(self, fn, *args, **kwargs):
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        future = self._client.submit(fn, *args, **{**self._kwargs, **kwargs})
        self._futures.add(future)
        return self._wrap(future)

    def map(self, fn, *iterables, timeout=None, chunksize=1, **kwargs):
        if kwargs:
            raise TypeError(f"unexpected arguments to map(): {sorted(kwargs)}")
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        end = None if timeout is None else time.monotonic() + timeout
        fs = iter(self._client.map(fn, *iterables, **self._kwargs))

        def results():
            try:
                for f in fs:
                    self._futures.add(f)
                    if end is None:
                        yield f.result()
                    else:
                        try:
                            yield f.result(max(0.0, end - time.monotonic()))
                        except TimeoutError:
                            raise cf.TimeoutError from None
            finally:
                rest = list(fs)
                self._futures.update(rest)
                self._client.cancel(rest)

        return results()

    def shutdown(self, wait=True, *, cancel_futures=False):
        if self._shutdown:
            return
        self._shutdown = True
        fs = list(self._futures)
        if wait and not cancel_futures:
            from .client import wait as wait_all

            if fs:
                wait_all(fs)
        else:
            self._client.cancel(fs)
