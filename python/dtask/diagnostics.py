"""Diagnostics, in dask.distributed's names (issue 15):

* ``performance_report(filename="dask-report.html")``: a context manager
  that writes a standalone HTML page (inline SVG, CSS and a few lines of
  inline script; nothing fetched from the network) with the task stream of
  the tasks run in the block, a table per function (count, total, mean and
  max compute time, errors) and each worker's memory (sampled during the
  block, and at its end).
* ``MemorySampler`` (``distributed.diagnostics.MemorySampler``): samples the
  cluster's memory (summed over workers, from ``scheduler_info``) every
  ``interval`` seconds inside ``with ms.sample(label):``; ``to_pandas()``.
* ``span(*tags)`` (``distributed.span``): annotates what is submitted in the
  block with ``span={"name": tags, "ids": ids}`` (as Dask) and yields the
  span's id.
* ``print`` / ``warn`` (``distributed.print`` / ``distributed.warn``): from a
  task, prints (warns) on the worker and on every client of the scheduler:
  the call is an event on topic ``"print"`` / ``"warn"``, which each Client
  follows (``client_diag.py``).
"""

from __future__ import annotations

import builtins
import contextlib
import html
import json
import sys
import threading
import time
import uuid
import warnings as _warnings

from . import _core

# ---------------------------------------------------------------- print/warn


def _in_task():
    try:
        return _core.task_info() is not None
    except Exception:
        return False


def print(*args, sep=" ", end="\n", file=None, flush=False):  # noqa: A001
    """As ``distributed.print``: builtins.print, and from a task the same
    output on every client of the scheduler (stdout, or stderr when
    ``file=sys.stderr``)."""
    builtins.print(*args, sep=sep, end=end, file=file, flush=flush)
    if not _in_task():
        return
    code = 2 if file is sys.stderr else 1 if file in (None, sys.stdout) else None
    if code is None:  # another file: local only, as Dask
        return
    msg = {"args": [str(a) for a in args], "sep": "" if sep is None else str(sep),
           "end": "" if end is None else str(end), "file": code, "flush": bool(flush)}
    _core.log_event("print", msg)


def warn(message, category=UserWarning, stacklevel=1, source=None, **kwargs):
    """As ``distributed.warn``: warnings.warn, and from a task the same
    warning raised on every client of the scheduler."""
    _warnings.warn(message, category=category, stacklevel=stacklevel + 1, source=source)
    if not _in_task():
        return
    if isinstance(message, Warning):
        category, message = type(message), str(message)
    _core.log_event("warn", {"message": str(message), "category": category.__name__,
                             "module": category.__module__})


def _handle_print(event):
    _, msg = event
    if not isinstance(msg, dict):
        builtins.print(msg)
        return
    out = sys.stderr if msg.get("file") == 2 else sys.stdout
    builtins.print(*msg.get("args", ()), sep=msg.get("sep", " "), end=msg.get("end", "\n"),
                   file=out, flush=True)


def _handle_warn(event):
    _, msg = event
    if not isinstance(msg, dict):
        _warnings.warn(str(msg))
        return
    cat = UserWarning
    try:
        mod = sys.modules.get(msg.get("module", "builtins"))
        c = getattr(mod, msg.get("category", ""), None) if mod is not None else None
        if isinstance(c, type) and issubclass(c, Warning):
            cat = c
    except Exception:
        pass
    _warnings.warn(msg.get("message", ""), category=cat)


# ---------------------------------------------------------------- span


@contextlib.contextmanager
def span(*tags):
    """As ``distributed.span``: what is submitted in the block carries the
    annotation ``span={"name": tags, "ids": ids}`` (nested spans extend both);
    yields the span's id."""
    import dask

    if not tags:
        raise ValueError("span() needs at least one tag")
    if any(not isinstance(t, str) for t in tags):
        raise TypeError(f"span tags must be strings: {tags!r}")
    outer = dask.get_annotations().get("span", {})
    name = tuple(outer.get("name", ())) + tuple(tags)
    ids = tuple(outer.get("ids", ())) + (str(uuid.uuid4()),)
    with dask.annotate(span={"name": name, "ids": ids}):
        yield ids[-1]


# ---------------------------------------------------------------- memory

_MEASURES = ("process", "managed", "unmanaged", "spilled")


def _cluster_memory(client, measure):
    total = 0
    for w in client._c.workers():
        if measure == "process":
            total += w["rss"]
        elif measure == "managed":
            total += w["memory"]
        elif measure == "unmanaged":
            total += max(w["rss"] - w["memory"], 0)
        else:
            total += w["spilled"]
    return total


def _worker_memory(client):
    return {("tcp://" + w["address"]) if "://" not in w["address"] else w["address"]:
            {"rss": w["rss"], "managed": w["memory"], "spilled": w["spilled"],
             "limit": w["memory_limit"]} for w in client._c.workers()}


class _Sampler:
    """A thread calling fn() every interval seconds until stopped."""

    def __init__(self, fn, interval):
        self.fn, self.interval = fn, max(float(interval), 0.01)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="dtask-sampler", daemon=True)

    def _run(self):
        while True:
            try:
                self.fn()
            except Exception:  # the client closed: stop sampling
                return
            if self.stop.wait(self.interval):
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)
        return False


class MemorySampler:
    """As ``distributed.diagnostics.MemorySampler``::

        ms = MemorySampler()
        with ms.sample("label"):
            ...
        ms.to_pandas()          # index: seconds (or times), one column per label

    ``measure``: "process" (each worker's RSS, summed; the default),
    "managed" (the bytes of results held), "unmanaged", "spilled".  dtask
    samples from the client (one ``scheduler_info``-like question per
    interval) where Dask's scheduler samples itself."""

    def __init__(self):
        self.samples = {}

    @contextlib.contextmanager
    def sample(self, label=None, *, client=None, measure="process", interval=0.5):
        from .client import default_client

        if measure not in _MEASURES:
            raise ValueError(f"measure must be one of {_MEASURES}, not {measure!r}")
        client = client or default_client()
        if label is None:
            label = f"Samples {len(self.samples)}"
        rows = self.samples.setdefault(label, [])

        def take():
            rows.append((time.time(), _cluster_memory(client, measure)))

        with _Sampler(take, interval):
            yield
        take()

    def to_pandas(self, *, align=False):
        """A DataFrame: a column per label, indexed by time (a DatetimeIndex),
        or by seconds since each label's first sample when align=True."""
        import pandas as pd

        series = []
        for label, rows in self.samples.items():
            if not rows:
                continue
            t0 = rows[0][0]
            idx = ([t - t0 for t, _ in rows] if align
                   else pd.to_datetime([t for t, _ in rows], unit="s"))
            s = pd.Series([m for _, m in rows], index=idx, name=label)
            series.append(s)
        if not series:
            return pd.DataFrame()
        df = pd.concat(series, axis=1)
        if align:
            df.index = pd.to_timedelta(df.index, unit="s")
            df = df.ffill()
        df.index.name = "time"
        return df

    def plot(self, *, align=True, **kwargs):
        """As Dask: the samples in GiB with pandas' plot (needs matplotlib)."""
        return (self.to_pandas(align=align) / 2**30).plot(ylabel="Cluster memory (GiB)", **kwargs)


# ---------------------------------------------------------------- performance_report


def _key_split(key):
    from dask.utils import key_split

    return key_split(key)


class performance_report:
    """As ``distributed.performance_report``: ``with
    performance_report(filename="dask-report.html"): ...`` writes a
    standalone HTML report of the block (task stream, per-function times,
    worker memory) when the block ends.  ``mode`` and ``storage_options``
    are accepted for Dask's signature (the file is always self-contained;
    ``storage_options`` with a remote path needs fsspec)."""

    def __init__(self, filename="dask-report.html", stacklevel=1, mode=None,
                 storage_options=None):
        self.filename = filename
        self.stacklevel = stacklevel
        self.mode = mode
        self.storage_options = storage_options or {}

    def __enter__(self):
        from .client import default_client

        self.client = default_client()
        self.start = time.time()
        self.memory = []  # (time, {worker: rss})
        client = self.client

        def take():
            self.memory.append((time.time(), {a: m["rss"] for a, m in _worker_memory(client).items()}))

        self._sampler = _Sampler(take, 0.25).__enter__()
        try:
            frame = sys._getframe(self.stacklevel)
            self.code = f"{frame.f_code.co_filename}:{frame.f_lineno}"
        except Exception:
            self.code = ""
        return self

    def __exit__(self, *exc):
        self._sampler.__exit__()
        stop = time.time()
        stream = self.client.get_task_stream(start=self.start)
        workers = _worker_memory(self.client)
        self.memory.append((stop, {a: m["rss"] for a, m in workers.items()}))
        page = render_report(stream, workers, self.memory, self.start, stop, self.code)
        self.data = stream
        if "://" in str(self.filename):
            import fsspec

            with fsspec.open(self.filename, mode="w", **self.storage_options) as f:
                f.write(page)
        else:
            with open(self.filename, "w", encoding="utf-8") as f:
                f.write(page)
        return False

    async def __aenter__(self):
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(None, self.__enter__)

    async def __aexit__(self, *exc):
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(None, self.__exit__, *exc)


_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94"]


def _fmt_bytes(n):
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def _stream_svg(stream, t0, t1):
    """The task stream: one row per (worker, thread lane), a rect per task."""
    e = html.escape
    width, row_h, left = 900, 18, 170
    span_s = max(t1 - t0, 1e-6)
    lanes = {}  # worker -> [end time of each lane]
    placed = []
    colors = {}
    for r in sorted(stream, key=lambda r: r["startstops"][0]["start"] if r["startstops"] else 0):
        if not r.get("startstops"):
            continue
        ss = r["startstops"][0]
        w = r["worker"]
        ends = lanes.setdefault(w, [])
        lane = next((i for i, end in enumerate(ends) if end <= ss["start"]), None)
        if lane is None:
            lane = len(ends)
            ends.append(0)
        ends[lane] = ss["stop"]
        fn = _key_split(r["key"])
        colors.setdefault(fn, _COLORS[len(colors) % len(_COLORS)])
        placed.append((w, lane, ss["start"], ss["stop"], r, fn))
    rows = []
    for w in sorted(lanes):
        for lane in range(len(lanes[w])):
            rows.append((w, lane))
    rowidx = {wl: i for i, wl in enumerate(rows)}
    height = max(len(rows), 1) * row_h + 30
    out = [f'<svg id="task-stream" xmlns="http://www.w3.org/2000/svg" width="{width + left}" '
           f'height="{height}" role="img" aria-label="task stream">']
    for (w, lane), i in rowidx.items():
        out.append(f'<text x="4" y="{i * row_h + 13}" class="lbl">{e(w)} #{lane}</text>')
    for w, lane, a, b, r, fn in placed:
        x = left + (a - t0) / span_s * width
        wd = max((b - a) / span_s * width, 1.0)
        y = rowidx[(w, lane)] * row_h + 2
        fill = "#d62728" if r.get("status") != "OK" else colors[fn]
        tip = f"{r['key']} ({fn}) on {w}: {1000 * (b - a):.2f} ms, {r.get('status')}"
        out.append(f'<rect class="task" x="{x:.2f}" y="{y}" width="{wd:.2f}" height="{row_h - 4}" '
                   f'fill="{fill}" data-key="{e(str(r["key"]))}"><title>{e(tip)}</title></rect>')
    axis_y = len(rows) * row_h + 14
    for k in range(6):
        x = left + k * width / 5
        out.append(f'<text x="{x:.1f}" y="{axis_y + 12}" class="lbl">{k * span_s / 5:.3g} s</text>')
    out.append("</svg>")
    return "\n".join(out), colors


def _memory_svg(memory):
    if not memory:
        return "<p>no samples</p>"
    width, height, left = 900, 160, 60
    t0, t1 = memory[0][0], max(memory[-1][0], memory[0][0] + 1e-6)
    top = max([max(m.values(), default=0) for _, m in memory] + [1])
    workers = sorted({w for _, m in memory for w in m})
    out = [f'<svg id="memory" xmlns="http://www.w3.org/2000/svg" width="{width + left}" '
           f'height="{height + 20}">']
    for i, w in enumerate(workers):
        pts = " ".join(f"{left + (t - t0) / (t1 - t0) * width:.1f},"
                       f"{height - m.get(w, 0) / top * (height - 10):.1f}" for t, m in memory)
        out.append(f'<polyline fill="none" stroke="{_COLORS[i % len(_COLORS)]}" stroke-width="2" '
                   f'points="{pts}"><title>{html.escape(w)}</title></polyline>')
    out.append(f'<text x="2" y="12" class="lbl">{_fmt_bytes(top)}</text>')
    out.append(f'<text x="2" y="{height}" class="lbl">0</text></svg>')
    return "\n".join(out)


def render_report(stream, workers, memory, t0, t1, code=""):
    """The report page (a str): standalone HTML, nothing loaded from elsewhere."""
    e = html.escape
    svg, colors = _stream_svg(stream, t0, t1)
    funcs = {}
    for r in stream:
        fn = _key_split(r["key"])
        d = funcs.setdefault(fn, {"count": 0, "total": 0.0, "max": 0.0, "errors": 0, "nbytes": 0})
        d["count"] += 1
        for ss in r.get("startstops", ()):
            dur = ss["stop"] - ss["start"]
            d["total"] += dur
            d["max"] = max(d["max"], dur)
        d["errors"] += r.get("status") != "OK"
        d["nbytes"] += r.get("nbytes") or 0
    frows = "\n".join(
        f'<tr><td><span class="sw" style="background:{colors.get(fn, "#999")}"></span>{e(fn)}</td>'
        f'<td>{d["count"]}</td><td>{1000 * d["total"]:.2f}</td>'
        f'<td>{1000 * d["total"] / max(d["count"], 1):.3f}</td><td>{1000 * d["max"]:.3f}</td>'
        f'<td>{d["errors"]}</td><td>{_fmt_bytes(d["nbytes"])}</td></tr>'
        for fn, d in sorted(funcs.items(), key=lambda kv: -kv[1]["total"]))
    wrows = "\n".join(
        f'<tr><td>{e(a)}</td><td>{_fmt_bytes(m["rss"])}</td><td>{_fmt_bytes(m["managed"])}</td>'
        f'<td>{_fmt_bytes(m["spilled"])}</td><td>{_fmt_bytes(m["limit"]) if m["limit"] else "-"}</td></tr>'
        for a, m in sorted(workers.items()))
    keys = json.dumps([str(r["key"]) for r in stream]).replace("</", "<\\/")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t0))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Dask Performance Report (dtask)</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; font-size: 13px; }}
td:first-child, th:first-child {{ text-align: left; }}
.lbl {{ font-size: 11px; fill: #444; }}
.sw {{ display: inline-block; width: 10px; height: 10px; margin-right: 6px; }}
rect.task:hover {{ stroke: #000; }}
</style></head><body>
<h1>Dask Performance Report</h1>
<p>dtask, {e(when)}; duration {t1 - t0:.3f} s; {len(stream)} tasks; {len(workers)} workers.
{("Code: " + e(code)) if code else ""}</p>
<h2>Task stream</h2>
<div id="stream-box">{svg}</div>
<h2>Functions</h2>
<table id="functions"><tr><th>function</th><th>count</th><th>total ms</th><th>mean ms</th>
<th>max ms</th><th>errors</th><th>result bytes</th></tr>
{frows}
</table>
<h2>Worker memory</h2>
{_memory_svg(memory)}
<table id="workers"><tr><th>worker</th><th>process</th><th>managed</th><th>spilled</th><th>limit</th></tr>
{wrows}
</table>
<script id="task-keys" type="application/json">{keys}</script>
<script>
(function () {{
  var keys = JSON.parse(document.getElementById("task-keys").textContent);
  var rects = document.querySelectorAll("#task-stream rect.task");
  document.body.setAttribute("data-tasks", String(rects.length));
  document.body.setAttribute("data-keys", String(keys.length));
}})();
</script>
</body></html>
"""
