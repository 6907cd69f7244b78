"""The Client's diagnostics and failure calls, in Dask's names (issue 15):
``retry`` / ``Future.retry``, ``recreate_error_locally``,
``forward_logging`` / ``unforward_logging``, the print/warn events of
``dtask.print`` / ``dtask.warn``, and ``profile`` / ``benchmark_hardware``
refused with what dtask offers instead.

Events from tasks (print, warn, forwarded log records) are events on the
scheduler's topics (``log_event``); every Client follows its topics with
one background thread that asks the scheduler once and is answered when an
event comes (``wait_events``, a long poll), as ``subscribe_topic`` does.
"""

from __future__ import annotations

import logging
import threading
import weakref

from . import _core

_PRINT_TOPICS = ("print", "warn")


# a topic every follower also waits on: an event there makes the waits
# return, so that a follower sees a new topic or its stop at once
_WAKE = "dtask-follower-wake"
_WAIT_S = 10.0


class _Follower:
    """One thread following topics, {topic: [next seq, handler]}: it asks
    the scheduler once ("wait_events", a long poll) and is answered when an
    event comes on one of them (or after _WAIT_S with none)."""

    def __init__(self, client, name="dtask-diag-events"):
        self.ref = weakref.ref(client)
        self.topics = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = None
        self.name = name
        self.wake_next = 0

    @staticmethod
    def _next(client, topic):
        nxt = 0
        for seq, _t, _m in client._query("get_events", {"topic": topic, "since": 0}):
            nxt = max(nxt, seq + 1)
        return nxt

    def _wake(self, client, why):
        try:
            client._query("log_event", {"topic": _WAKE, "msg": why})
        except Exception:
            pass

    def add(self, client, topic, handler):
        nxt = self._next(client, topic)
        with self.lock:
            self.topics[topic] = [nxt, handler]
            start = self.thread is None
            if start:
                self.wake_next = self._next(client, _WAKE)
                self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self.thread.start()
        if not start:
            self._wake(client, "topic")  # the wait on its way does not name it

    def remove(self, topic):
        with self.lock:
            self.topics.pop(topic, None)

    def close(self, client=None):
        """Stops the thread and waits for it: the client it asks must not be
        closed (its C side freed) while a question is on its way."""
        self.stop.set()
        th = self.thread
        if th is None or th is threading.current_thread():
            return
        client = client or self.ref()
        if client is not None and th.is_alive():
            self._wake(client, "stop")
        th.join(timeout=_WAIT_S + 5)

    def _run(self):
        while not self.stop.is_set():
            client = self.ref()
            if client is None or getattr(client, "_c", None) is None:
                return
            with self.lock:
                want = {t: st[0] for t, st in self.topics.items()}
            want[_WAKE] = self.wake_next
            try:
                new = client._query("wait_events", {"topics": want, "timeout": _WAIT_S},
                                    timeout=_WAIT_S + 20)
            except Exception:
                return  # the client closed
            del client
            for topic, seq, t, m in new:
                if topic == _WAKE:
                    self.wake_next = max(self.wake_next, seq + 1)
                    continue
                with self.lock:
                    st = self.topics.get(topic)
                if st is None or seq < st[0]:
                    continue
                st[0] = seq + 1
                try:
                    st[1]((t, m))
                except Exception:  # a handler's error must not stop the others
                    import traceback
                    traceback.print_exc()


class _ForwardingHandler(logging.Handler):
    """On a worker: a log record becomes an event on the scheduler."""

    def __init__(self, topic, level=logging.NOTSET):
        super().__init__(level)
        self.topic = topic

    def emit(self, record):
        try:
            msg = {
                "name": record.name, "msg": record.getMessage(), "levelno": record.levelno,
                "levelname": record.levelname, "pathname": record.pathname,
                "lineno": record.lineno, "funcName": record.funcName or "",
                "created": record.created, "threadName": record.threadName or "",
                "processName": record.processName or "", "process": record.process or 0,
                "exc_text": (self.format(record).split("\n", 1)[1]
                             if record.exc_info else ""),
            }
            _core.log_event(self.topic, msg)
        except Exception:  # outside a task, or the scheduler is gone: local only
            pass


def _forward_topic(logger_name):
    return "forwarded-log-record" + ("" if logger_name is None else "-" + logger_name)


def _handle_record(event):
    _, msg = event
    if not isinstance(msg, dict):
        return
    attrs = dict(msg)
    if attrs.get("exc_text") == "":
        attrs["exc_text"] = None
    attrs["args"] = None
    record = logging.makeLogRecord(attrs)
    logger = logging.getLogger(record.name if record.name != "root" else None)
    if record.levelno >= logger.getEffectiveLevel():
        logger.handle(record)


def _setup_forwarding(logger_name, level, topic):
    logger = logging.getLogger(logger_name)
    for h in logger.handlers:
        if isinstance(h, _ForwardingHandler) and h.topic == topic:
            return
    logger.addHandler(_ForwardingHandler(topic, level))
    if level and (logger.level == logging.NOTSET or logger.level > level):
        logger.setLevel(level)


def _teardown_forwarding(logger_name, topic):
    logger = logging.getLogger(logger_name)
    for h in list(logger.handlers):
        if isinstance(h, _ForwardingHandler) and h.topic == topic:
            logger.removeHandler(h)


def _plugin_class():
    from .plugins import WorkerPlugin

    class ForwardLoggingPlugin(WorkerPlugin):
        """As Dask's: a handler on the workers' logger sending its records."""

        def __init__(self, logger_name, level, topic):
            self.logger_name, self.level, self.topic = logger_name, level, topic

        def setup(self, worker):
            _setup_forwarding(self.logger_name, self.level, self.topic)

        def teardown(self, worker):
            _teardown_forwarding(self.logger_name, self.topic)

    return ForwardLoggingPlugin


class ForwardLoggingPlugin:
    """Pickles as the WorkerPlugin made by _plugin_class (plugins.py imports
    dtask.client, so the class is made on first use)."""

    def __new__(cls, logger_name, level, topic):
        return _plugin_class()(logger_name, level, topic)


class ClientDiagMixin:
    """Mixed into dtask.Client."""

    def _diag_follow(self, topic, handler):
        f = self.__dict__.get("_diag_follower")
        if f is None:
            f = self.__dict__["_diag_follower"] = _Follower(self)
        f.add(self, topic, handler)

    def _diag_close(self):
        """Before the client closes: no thread of its own may be asking the
        scheduler anything (the follower of print/warn and forwarded logs,
        subscribe_topic's threads)."""
        f = self.__dict__.pop("_diag_follower", None)
        if f is not None:
            f.close(self)
        for topic in list(self.__dict__.get("_topic_subs", {})):
            self.unsubscribe_topic(topic)

    def _diag_init(self):
        """Called at the end of Client.__init__: print/warn from tasks reach
        this client (as Dask's clients subscribe to "print" and "warn")."""
        from .diagnostics import _handle_print, _handle_warn

        try:
            self._diag_follow("print", _handle_print)
            self._diag_follow("warn", _handle_warn)
        except Exception:  # an older scheduler: no events, nothing to follow
            pass

    # -------------------------------------------------------- failures
    def retry(self, futures, asynchronous=None):
        """As Dask: the failed tasks of futures (and the failed tasks they
        depend on) run again; their futures become pending."""
        from .client import Future, _translate, DtaskError, _walk_futures

        flat = []
        _walk_futures(futures if not isinstance(futures, Future) else [futures], flat)
        if not flat:
            return None
        try:
            self._c.retry([f._cf for f in flat], 30000)
        except DtaskError as e:
            raise _translate(e) from None
        return None

    def recreate_error_locally(self, future):
        """As Dask: runs the failed task's function with its inputs in this
        process, so its exception is raised here (for a debugger).  For a
        task that failed because a dependency failed, the failed dependency
        is run.  Its inputs are fetched from the cluster (recomputed if they
        were released)."""
        from .client import Future

        fut = future
        if not isinstance(fut, Future):
            from .client import futures_of

            fs = futures_of(future)
            if not fs:
                raise ValueError("recreate_error_locally needs a future (or a collection of futures)")
            fut = next((f for f in fs if f.status == "error"), fs[0])
        from .client import wait

        wait([fut])
        if fut.status != "error":
            raise ValueError(f"future {fut.key!r} did not fail (status {fut.status!r})")
        spec = self._query("task_spec", {"key": fut.key})
        return _run_spec_locally(self, spec)

    def recreate_task_locally(self, future):
        """As Dask: runs the task's function with its inputs here; returns the
        result (or raises what it raises)."""
        from .client import wait

        wait([future])
        return _run_spec_locally(self, self._query("task_spec", {"key": future.key, "root": False}))

    # -------------------------------------------------------- logging
    def forward_logging(self, logger_name=None, level=logging.NOTSET):
        """As Dask: records of logger_name (the root logger when None) at
        level or above, logged by tasks on the workers, are handled by the
        same logger in this process."""
        topic = _forward_topic(logger_name)
        self._diag_follow(topic, _handle_record)
        self.register_plugin(ForwardLoggingPlugin(logger_name, level, topic),
                             name=f"forward-logging-{topic}")

    def unforward_logging(self, logger_name=None):
        topic = _forward_topic(logger_name)
        f = self.__dict__.get("_diag_follower")
        if f is not None:
            f.remove(topic)
        try:
            self.unregister_worker_plugin(f"forward-logging-{topic}")
        except Exception:
            pass

    # -------------------------------------------------------- refused
    def profile(self, key=None, start=None, stop=None, workers=None, merge_workers=True,
                plot=False, filename=None, server=False, scheduler=False):
        raise NotImplementedError(
            "Client.profile is not available in dtask: its workers do not sample the stacks of "
            "running tasks. Use client.get_task_stream() (per-task compute times), "
            "dtask.performance_report(filename=...) (task stream and per-function times), "
            "or run cProfile inside a task (client.run / a task that profiles itself).")

    def benchmark_hardware(self):
        raise NotImplementedError(
            "Client.benchmark_hardware is not available in dtask. Measure what you need with "
            "client.run(fn) on every worker (e.g. a disk or memory benchmark function), or "
            "with bench/ in the dtask repository.")


def _run_spec_locally(client, spec):
    """spec: {key, payload (bytes), deps: [key...]} of a "py:" task."""
    from . import serialize
    from .client import Future

    payload = spec.get("payload")
    if not isinstance(payload, (bytes, bytearray)) or not payload:
        raise ValueError(f"task {spec.get('key')!r} is a C task ({spec.get('func')}): dtask "
                         "cannot run it in Python; run it with dtask.cfunc on a worker, or call the "
                         "C function from a C program")
    deps = [Future(client._c.future(k), client) for k in spec.get("deps", [])]
    values = client.gather(deps) if deps else []
    payload = bytes(payload)
    if payload[0] == 70:  # b"F": the fast form of a call (serialize.py)
        return serialize._execute_f(payload, values)
    if payload[0] == 71:  # b"G": a Dask graph node
        import pickle

        node, keys = pickle.loads(payload[1:])
        return node(dict(zip(keys, values)))
    fn, args, kwargs = serialize._CallUnpickler(payload[1:], values).load()
    return fn(*args, **kwargs)


class FutureDiagMixin:
    """Mixed into dtask.Future."""

    __slots__ = ()

    def retry(self, **kwargs):
        """As Dask: if the task failed, run it again (and the failed tasks
        it depends on); the future becomes pending."""
        return self.client.retry([self], **kwargs)
