"""How Python objects and calls travel (the hooks the C extension calls).

* A value that is not None/bool/int/float/str/bytes is pickled with
  cloudpickle, protocol 5: out-of-band buffers (NumPy arrays, pandas blocks,
  anything exporting a contiguous buffer) become separate frames and are read
  back in place, without copies.
* A call is ``(fn, args, kwargs)`` pickled the same way, except that every
  dtask Future (or graph dependency) inside it, at any depth, is replaced by
  a persistent reference: the worker gets the dependencies' results as extra
  task arguments and the unpickler puts them back where the futures were.
* A failure is the exception's type and message, the remote traceback, and
  the pickled exception itself after a marker, so the client re-raises the
  original type (``rebuild_exception``).
"""

from __future__ import annotations

import base64
import io
import pickle
import traceback

import cloudpickle

from . import _core

EXC_MARKER = "\n[dtask-exception:"


def dumps(obj):
    """obj -> (main bytes, [out-of-band buffers])"""
    buffers = []
    try:
        main = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        return main, [b.raw() for b in buffers]
    except BufferError:  # a non-contiguous buffer: keep it in band
        return cloudpickle.dumps(obj, protocol=5), []


def loads(main, buffers):
    return pickle.loads(main, buffers=buffers)


class DepRef:
    """A placeholder for dependency ``i`` of a task (graph dependencies)."""

    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key


class CallPickler(cloudpickle.Pickler):
    """Pickles a call; futures and DepRefs become persistent ids."""

    def __init__(self, file, future_type):
        super().__init__(file, protocol=5)
        self.future_type = future_type
        self.deps = []  # CFutures or dependency keys, in id order
        self.seen = {}

    def persistent_id(self, obj):
        t = type(obj)
        if t is self.future_type:
            ident = obj.key
            dep = obj._cf
        elif t is DepRef:
            ident = obj.key
            dep = obj.key
        else:
            return None
        i = self.seen.get(ident)
        if i is None:
            i = self.seen[ident] = len(self.deps)
            self.deps.append(dep)
        return i


def dumps_call(fn, args, kwargs, future_type):
    """-> (payload bytes, deps): deps are CFutures or graph keys"""
    f = io.BytesIO()
    p = CallPickler(f, future_type)
    p.dump((fn, args, kwargs))
    return f.getvalue(), p.deps


class _CallUnpickler(pickle.Unpickler):
    def __init__(self, data, deps):
        super().__init__(io.BytesIO(data))
        self.deps = deps

    def persistent_load(self, pid):
        return self.deps[pid]


def format_failure(exc):
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        blob = cloudpickle.dumps(exc.with_traceback(None), protocol=5)
        pickle.loads(blob)  # must come back on the client too
        enc = base64.b64encode(blob).decode("ascii")
    except Exception:
        enc = ""
    text = f"{type(exc).__name__}: {exc}\nRemote traceback:\n{tb.rstrip()}"
    return f"{text}{EXC_MARKER}{type(exc).__module__}.{type(exc).__qualname__}:{enc}]"


def execute(payload, deps):
    """Run one pickled call with its dependencies' results (the "py:" task)."""
    try:
        fn, args, kwargs = _CallUnpickler(payload, deps).load()
        return True, fn(*args, **kwargs)
    except BaseException as e:  # every failure goes back to the client
        return False, format_failure(e)


def rebuild_exception(text):
    """The original exception from a task's error text, with the remote
    traceback as a note; None when the text carries none."""
    i = text.rfind(EXC_MARKER)
    if i < 0:
        return None
    body = text[i + len(EXC_MARKER):].rstrip("]")
    _, _, enc = body.partition(":")
    if not enc:
        return None
    try:
        exc = pickle.loads(base64.b64decode(enc))
    except Exception:
        return None
    if not isinstance(exc, BaseException):
        return None
    j = text.find("Remote traceback:\n")
    if j >= 0 and hasattr(exc, "add_note"):
        exc.add_note("".join(text[j:i]))
    return exc


def error_text_without_pickle(text):
    i = text.rfind(EXC_MARKER)
    return text if i < 0 else text[:i]


_core.set_hooks(dumps, loads, execute)
