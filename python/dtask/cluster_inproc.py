"""LocalCluster(processes=False): the scheduler still runs as a child process
(it is C), and ONE worker runs on a background thread of this process: the
C worker's event loop on that thread, its pool threads running Python tasks
on this interpreter (they take the GIL per task), so tasks see this
interpreter's modules and their state.  Calls still go through pickle, as
in Dask (whose client serializes the graph even for in-process workers):
what cannot be pickled cannot be submitted, but functions and classes
defined in importable modules are pickled by reference and so are this
process's own objects.

Only one such worker per process: the C worker keeps its state
process-wide (the worker's loop, its store, its task table, its pool), so
a second one waits until the first has stopped (close)."""

from __future__ import annotations

import atexit
import os
import threading
import time

from . import _core

ONE_ONLY = ("LocalCluster(processes=False) runs at most one worker, on a thread of this "
            "process: dtask's C worker keeps its state process-wide (one worker per "
            "process). Use n_workers=1 with threads_per_worker=N for more threads, or "
            "processes=True (the default) for several workers")

_current = None  # the running InprocWorker, if any
_lock = threading.Lock()


def defaults(n_workers, threads_per_worker):
    """Dask's defaults for processes=False: one worker with a thread per CPU."""
    if n_workers is None:
        n_workers = 1
    if threads_per_worker is None:
        threads_per_worker = os.cpu_count() or 1
    if n_workers > 1:
        raise ValueError(f"n_workers={n_workers}: " + ONE_ONLY)
    return n_workers, threads_per_worker


class InprocWorker:
    """One C worker on a thread of this process (see the module's doc)."""

    def __init__(self, address, args, timeout):
        global _current
        with _lock:
            if _current is not None and _current.alive:
                raise ValueError("a LocalCluster(processes=False) worker runs in this process "
                                 "already: close that cluster first. " + ONE_ONLY)
            self.rc = None
            self.args = [address] + list(args)
            if timeout:
                self.args += ["--death-timeout", f"{max(1.0, float(timeout))}s"]
            self._thread = threading.Thread(target=self._run, name="dtask-inproc-worker",
                                            daemon=True)
            self._thread.start()
            _current = self

    def _run(self):
        self.rc = _core.worker_inproc(self.args)

    @property
    def alive(self):
        return self._thread.is_alive()

    def stop(self, timeout=60):
        """Ask the worker to leave and wait for its thread (tasks still
        running finish first); True when it has stopped."""
        global _current
        if self._thread is threading.current_thread():
            raise RuntimeError("the in-process worker cannot be stopped from one of its tasks")
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            _core.worker_inproc_stop()
            self._thread.join(0.1)
        with _lock:
            if _current is self and not self._thread.is_alive():
                _current = None
        return not self._thread.is_alive()


@atexit.register
def _stop_at_exit():
    w = _current
    if w is not None and w.alive:
        w.stop(timeout=10)
