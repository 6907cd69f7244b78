"""The Client's questions to the scheduler, in Dask's names and shapes:
who_has, has_what, nbytes, processing, story, events, metadata, the task
stream, logs, dump_cluster_state, replicate and rebalance.

Each is one named query (``Client._c.query(name, args)``) answered by the C
scheduler's table of queries (src/scheduler/query.c); see docs/python.md for
where dtask differs from Dask.
"""

from __future__ import annotations

import threading
import time

from . import _core

_NO_DEFAULT = object()


def _tcp(address):
    if isinstance(address, str) and "://" not in address:
        return "tcp://" + address
    return address


def _keys(futures):
    """Keys of futures (a Future, a key, or a collection of them); None: all."""
    if futures is None:
        return None
    if isinstance(futures, (str, bytes)) or hasattr(futures, "key"):
        futures = [futures]
    out = []
    for f in futures:
        k = getattr(f, "key", f)
        out.append(k.decode() if isinstance(k, bytes) else str(k))
    return out


def _worker_names(workers):
    if workers is None:
        return None
    if isinstance(workers, str):
        workers = [workers]
    return [str(w) for w in workers]


def _key_split(key):
    try:
        from dask.utils import key_split
        return key_split(key)
    except ImportError:  # pragma: no cover - dask is a dependency of the tests
        return key.rsplit("-", 1)[0]


def _when(t):
    """Dask's start/stop: a timestamp, a datetime, or a duration ago ("20s")."""
    if t is None:
        return None
    if isinstance(t, str):
        from dask.utils import parse_timedelta
        return time.time() - parse_timedelta(t)
    if hasattr(t, "timestamp"):
        return t.timestamp()
    return float(t)


class ClientStateMixin:
    """Mixed into dtask.Client: the state and data placement calls."""

    def _query(self, name, args=None, timeout=30):
        from .client import _translate, DtaskError
        try:
            return self._c.query(name, args, int(timeout * 1000))
        except DtaskError as e:
            if e.name == "DT_ENOTFOUND":
                raise KeyError(e.message) from None
            if e.name == "DT_EINVAL":
                raise ValueError(e.message) from None
            raise _translate(e) from None

    # -------------------------------------------------------- where data is
    def who_has(self, futures=None, **kwargs):
        """{key: [worker address...]}: the workers holding each result
        (every result in memory when futures is None)."""
        keys = _keys(futures)
        ans = self._query("who_has", {"keys": keys} if keys is not None else None)
        return {k: [_tcp(a) for a in v] for k, v in ans.items()}

    def has_what(self, workers=None, **kwargs):
        """{worker address: [key...]}: the results each worker holds."""
        ans = self._query("has_what", {"workers": _worker_names(workers)})
        return {_tcp(w): list(v) for w, v in ans.items()}

    def nbytes(self, keys=None, summary=False, **kwargs):
        """{key: bytes} of results in memory; summary: summed per key prefix."""
        ks = _keys(keys)
        ans = self._query("nbytes", {"keys": ks} if ks is not None else None)
        if not summary:
            return ans
        out = {}
        for k, n in ans.items():
            p = _key_split(k)
            out[p] = out.get(p, 0) + n
        return out

    def processing(self, workers=None):
        """{worker address: [key...]}: the tasks sent to each worker and not finished."""
        ans = self._query("processing", {"workers": _worker_names(workers)})
        return {_tcp(w): list(v) for w, v in ans.items()}

    def call_stack(self, futures=None, keys=None):
        raise NotImplementedError(
            "call_stack is not available in dtask: workers run C task functions and embedded "
            "Python without stack sampling; use client.processing() or get_task_stream()")

    def story(self, *keys_or_stimuli, on_error="raise"):
        """The recent transitions of these keys on the scheduler, oldest first,
        as Dask's tuples (key, start, finish, recommendations, stimulus_id, timestamp)."""
        keys = _keys(list(keys_or_stimuli))
        rows = self._query("story", {"keys": keys})
        return [(k, a, b, {}, s, t) for k, a, b, s, t in rows]

    # -------------------------------------------------------- events
    def log_event(self, topic, msg):
        """Records msg under topic (or each of a list of topics) on the scheduler.
        From a task, use dtask.log_event(topic, msg)."""
        self._query("log_event", {"topic": topic if isinstance(topic, str) else list(topic),
                                  "msg": msg})

    def get_events(self, topic=None):
        """topic's events [(timestamp, msg)...], or {topic: [...]} for every topic."""
        ans = self._query("get_events", {"topic": topic} if topic is not None else None)
        if topic is not None:
            return tuple((t, m) for t, m in ans)
        return {k: tuple((t, m) for t, m in v) for k, v in ans.items()}

    def subscribe_topic(self, topic, handler):
        """handler(event) for each new event of topic, (timestamp, msg), called
        from a background thread that waits for them at the scheduler (a long
        poll: answered as an event comes)."""
        from .client_diag import _Follower

        self.unsubscribe_topic(topic)
        subs = self.__dict__.setdefault("_topic_subs", {})
        # events already there when subscribing are not delivered (as in Dask)
        f = _Follower(self, name=f"dtask-topic-{topic}")
        subs[topic] = f
        f.add(self, topic, handler)

    def unsubscribe_topic(self, topic):
        f = self.__dict__.get("_topic_subs", {}).pop(topic, None)
        if f is not None:
            f.close(self)

    # -------------------------------------------------------- metadata
    def set_metadata(self, key, value):
        """Stores value at key (a string, or a list: a path in nested dicts)."""
        keys = [key] if isinstance(key, str) else [str(k) for k in key]
        self._query("set_metadata", {"keys": keys, "value": value})

    def get_metadata(self, keys, default=_NO_DEFAULT):
        """The value at keys (a string or a path); default if absent, else KeyError."""
        ks = [keys] if isinstance(keys, str) else [str(k) for k in keys]
        args = {"keys": ks}
        if default is not _NO_DEFAULT:
            args.update(default=default, has_default=True)
        return self._query("get_metadata", args)

    # -------------------------------------------------------- diagnostics
    def get_task_stream(self, start=None, stop=None, count=None, plot=False, filename=None,
                        bokeh_resources=None):
        """The recently finished tasks, as Dask's records: {key, worker,
        status, nbytes, startstops: [{action: 'compute', start, stop}], ...}."""
        _check_plot(plot)
        args = {}
        if start is not None:
            args["start"] = _when(start)
        if stop is not None:
            args["stop"] = _when(stop)
        if count is not None:
            args["count"] = int(count)
        rows = self._query("task_stream", args)
        for r in rows:
            r["worker"] = _tcp(r["worker"])
            r.setdefault("thread", None)
            r.setdefault("type", None)
            r.setdefault("typename", None)
            r.setdefault("metadata", {})
        if plot == "save":
            return rows, _save_stream(rows, filename or "task-stream.html")
        return rows

    def get_scheduler_logs(self, n=None):
        """The scheduler's recent log lines [(level, line)...], oldest first."""
        return [tuple(x) for x in self._query("logs", {"n": 100 if n is None else int(n)})]

    def get_worker_logs(self, n=None, workers=None, nanny=False):
        """{worker address: [(level, line)...]}: each worker's recent log lines."""
        if nanny:
            raise NotImplementedError("dtask's nannies keep no log ring: use nanny=False")
        ans = self._query("worker_logs", {"n": 100 if n is None else int(n),
                                          "workers": _worker_names(workers)})
        return {_tcp(w): [tuple(x) for x in v] for w, v in ans.items()}

    def dump_cluster_state(self, filename="dask-cluster-dump", write_from_scheduler=None,
                           exclude=(), format="msgpack", **storage_options):
        """Writes what the scheduler and the workers report to filename +
        '.msgpack.gz' (or '.yaml'): scheduler info, who_has, processing, task
        stream, events, logs, and each worker's held keys and logs."""
        info = self.scheduler_info()
        state = {
            "scheduler": {
                "info": info,
                "who_has": self.who_has(),
                "processing": self.processing(),
                "task_stream": self.get_task_stream(),
                "events": {k: [list(e) for e in v] for k, v in self.get_events().items()},
                "logs": [list(x) for x in self.get_scheduler_logs(n=1000)],
            },
            "workers": {},
            "versions": {"dtask": __import__("dtask").__version__},
        }
        has_what = self.has_what()
        logs = self.get_worker_logs(n=1000)
        for w in info["workers"]:
            state["workers"][w] = {"info": info["workers"][w], "has_what": has_what.get(w, []),
                                   "logs": [list(x) for x in logs.get(w, [])]}
        for k in exclude:
            state["scheduler"].pop(k, None)
        if format == "msgpack":
            import gzip
            import msgpack
            path = filename if filename.endswith(".msgpack.gz") else filename + ".msgpack.gz"
            with gzip.open(path, "wb") as f:
                msgpack.pack(state, f, default=repr)
        elif format == "yaml":
            import yaml
            path = filename if filename.endswith(".yaml") else filename + ".yaml"
            with open(path, "w") as f:
                yaml.safe_dump(_plain(state), f)
        else:
            raise ValueError(f"Unsupported format {format!r}: use 'msgpack' or 'yaml'")
        return path

    # -------------------------------------------------------- placement
    def replicate(self, futures, n=None, workers=None, branching_factor=2, **kwargs):
        """Copies each result to n workers (all of them, or of workers, when
        n is None) and waits until they hold it (at most 30 s)."""
        keys = _keys(futures)
        args = {"keys": keys, "workers": _worker_names(workers)}
        if n is not None:
            args["n"] = int(n)
        self._query("replicate", args)
        nw = len(self._query("ncores", {"workers": _worker_names(workers)}))
        want = nw if n is None else min(int(n), max(nw, 1))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            wh = self._query("who_has", {"keys": keys})
            if all(len(v) >= want or not v for v in wh.values()):
                return
            time.sleep(0.02)

    def rebalance(self, futures=None, workers=None, **kwargs):
        """Moves results so that each worker (of workers) holds about the same
        bytes, and waits until the moves are done (at most 30 s)."""
        keys = _keys(futures)
        args = {"workers": _worker_names(workers)}
        if keys is not None:
            args["keys"] = keys

        def where():
            return self._query("who_has", {"keys": keys} if keys is not None else None)

        before = where()
        asked = self._query("rebalance", args)
        if not asked:
            return
        # done when `asked` keys sit elsewhere and each has one copy again
        # (a move is a copy to the destination, then the source's freed)
        total = sum(len(v) for v in before.values())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = where()
            moved = sum(1 for k, v in now.items() if sorted(v) != sorted(before.get(k, ())))
            if moved >= asked and sum(len(v) for v in now.values()) == total:
                return
            time.sleep(0.02)


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return repr(x)


def _check_plot(plot):
    if plot not in (False, None, "save"):
        raise NotImplementedError(
            "dtask draws no Bokeh figures: get_task_stream(plot=True) is not available; "
            "plot='save' writes the task stream to a standalone HTML file (filename=)")


def _save_stream(rows, filename):
    """Writes the task stream of rows as a standalone HTML page (the
    performance report's drawing); returns the file's path (Dask returns a
    Bokeh figure there)."""
    from .diagnostics import render_report

    starts = [ss["start"] for r in rows for ss in r.get("startstops", ())]
    stops = [ss["stop"] for r in rows for ss in r.get("startstops", ())]
    t0 = min(starts) if starts else time.time()
    t1 = max(stops) if stops else t0
    with open(filename, "w", encoding="utf-8") as f:
        f.write(render_report(rows, {}, [], t0, t1))
    return filename


class get_task_stream:
    """Collects the task stream of the tasks run inside the block, as Dask's
    ``with get_task_stream() as ts: ...; ts.data``; plot='save' also writes
    it to filename as a standalone HTML page (``ts.figure`` is its path)."""

    def __init__(self, client=None, plot=False, filename="task-stream.html"):
        _check_plot(plot)
        self.client = client
        self.plot, self.filename = plot, filename
        self.figure = None
        self.data = []

    def __enter__(self):
        from .client import default_client
        self.client = self.client or default_client()
        self.start = time.time()
        return self

    def __exit__(self, *exc):
        self.data.extend(self.client.get_task_stream(start=self.start))
        if self.plot == "save":
            self.figure = _save_stream(self.data, self.filename)
        return False


def log_event(topic, msg):
    """From a task on a worker: records msg under topic on the scheduler
    (Dask: get_worker().log_event).  It arrives before the task's result."""
    _core.log_event(topic, msg)
