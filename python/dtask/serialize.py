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
import gc
import io
import pickle
import threading
import traceback
from types import FunctionType

import cloudpickle

from . import _core

EXC_MARKER = "\n[dtask-exception:"


_by_ref = getattr(cloudpickle.cloudpickle, "_should_pickle_by_reference", None)
_fn_cache = {}  # id(obj) -> (obj, reduction): functions and classes pickled once
_FN_CACHE_MAX = 4096


def _load_cached(blob, _cache={}):
    """A function or class pickled by value, unpickled once per process."""
    obj = _cache.get(blob)
    if obj is None:
        obj = pickle.loads(blob)
        if len(_cache) >= _FN_CACHE_MAX:
            _cache.clear()
        _cache[blob] = obj
    return obj


class FastPickler(pickle.Pickler):
    """The C pickler, with cloudpickle only for what it must pickle by value
    (lambdas, closures, functions and classes of __main__), each pickled once
    and unpickled once per worker."""

    def __init__(self, file, buffer_callback=None):
        super().__init__(file, protocol=5, buffer_callback=buffer_callback)

    def reducer_override(self, obj):
        t = type(obj)
        if t is not FunctionType and t is not type:
            if _dask_ser_on:  # dtask.protocol.dask_serialize registrations
                return _dask_reduce(obj, t)
            return NotImplemented
        hit = _fn_cache.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        if _by_ref is not None and _by_ref(obj):
            red = NotImplemented
        else:
            red = (_load_cached, (cloudpickle.dumps(obj, protocol=5),))
        if len(_fn_cache) >= _FN_CACHE_MAX:
            _fn_cache.clear()
        _fn_cache[id(obj)] = (obj, red)
        return red


_DASK_SER = None  # (dask_serialize, dask_deserialize): set by dtask.protocol
_dask_ser_on = False
_dask_ser_cache = {}  # type -> serializer function, or None


def _dask_ser_changed():
    global _dask_ser_on
    _dask_ser_on = True
    _dask_ser_cache.clear()


def _dask_reduce(obj, t):
    """A type registered with dtask.protocol.dask_serialize: (header, frames)."""
    try:
        fn = _dask_ser_cache[t]
    except KeyError:
        try:
            fn = _DASK_SER[0].dispatch(t) if _DASK_SER is not None else None
        except TypeError:  # not registered
            fn = None
        if t.__module__ == "builtins":
            fn = None  # never divert builtins: ints, lists, dicts...
        if fn is not None:
            try:  # the deserializer travels along: the receiver need not register it
                fn = (fn, _DASK_SER[1].dispatch(t))
            except TypeError:
                fn = None
        _dask_ser_cache[t] = fn
    if fn is None:
        return NotImplemented
    header, frames = fn[0](obj)
    return _dask_deserialize, (fn[1], header, [bytes(f) for f in frames])


def _dask_deserialize(deserialize, header, frames):
    return deserialize(header, frames)


def _persistent_id(self, obj):
    """Futures and DepRefs become persistent ids (dependency numbers)."""
    t = type(obj)
    if t is self.future_type:
        ident, dep = obj.key, obj._cf
    elif t is DepRef:
        ident = dep = obj.key
    else:
        return None
    i = self.seen.get(ident)
    if i is None:
        i = self.seen[ident] = len(self.deps)
        self.deps.append(dep)
    return i


class FastCallPickler(FastPickler):
    def __init__(self, file, deps, future_type):
        super().__init__(file)
        self.deps = deps
        self.future_type = future_type
        self.seen = {}

    persistent_id = _persistent_id


def dumps(obj):
    """obj -> (main bytes, [out-of-band buffers])"""
    buffers = []
    f = io.BytesIO()
    try:
        FastPickler(f, buffer_callback=buffers.append).dump(obj)
        return f.getvalue(), [b.raw() for b in buffers]
    except BufferError:  # a non-contiguous buffer: keep it in band
        return cloudpickle.dumps(obj, protocol=5), []
    except Exception:  # what only cloudpickle can do
        buffers = []
        main = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        return main, [b.raw() for b in buffers]


def loads(main, buffers):
    return pickle.loads(main, buffers=buffers)


class DepRef:
    """A placeholder for a graph dependency (by key) inside a pickled call."""

    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key


class CallPickler(cloudpickle.Pickler):
    """The slow path: cloudpickle for everything; futures and DepRefs become
    persistent ids."""

    def __init__(self, file, deps, future_type):
        super().__init__(file, protocol=5)
        self.future_type = future_type
        self.deps = deps
        self.seen = {}

    persistent_id = _persistent_id


def dumps_call(fn, args, kwargs, future_type):
    """-> (payload bytes, deps): deps are CFutures or graph keys.  The task
    gets the deps' results as arguments and puts them back in the call."""
    f = io.BytesIO()
    f.write(b"C")
    deps = []
    try:
        FastCallPickler(f, deps, future_type).dump((fn, args, kwargs))
    except Exception:
        f = io.BytesIO()
        f.write(b"C")
        deps = []
        CallPickler(f, deps, future_type).dump((fn, args, kwargs))
    return f.getvalue(), deps


FUTURE_TYPE = None  # dtask.client.Future, set by client.py


def _future_as_ref(obj):
    """A dtask Future inside a Dask graph node pickles as Dask's TaskRef of
    its key: on the worker the node finds the key's value among its inputs."""
    if type(obj) is FUTURE_TYPE:
        from dask._task_spec import TaskRef

        return TaskRef, (obj.key,)
    return NotImplemented


class _NodePickler(FastPickler):
    def reducer_override(self, obj):
        red = _future_as_ref(obj)
        return red if red is not NotImplemented else super().reducer_override(obj)


class _NodeCloudPickler(cloudpickle.Pickler):
    def reducer_override(self, obj):
        red = _future_as_ref(obj)
        return red if red is not NotImplemented else super().reducer_override(obj)


def dumps_node(node, keys):
    """A Dask graph node (Task, Alias, DataNode...) whose dependencies' results
    arrive, in the order of keys, as the task's arguments."""
    f = io.BytesIO()
    f.write(b"G")
    try:
        _NodePickler(f).dump((node, keys))
    except Exception:
        f = io.BytesIO()
        f.write(b"G")
        _NodeCloudPickler(f, protocol=5).dump((node, keys))
    return f.getvalue()


class _CallUnpickler(pickle.Unpickler):
    def __init__(self, data, deps):
        super().__init__(io.BytesIO(data))
        self.deps = deps

    def persistent_load(self, pid):
        return self.deps[pid]


def _tb_dict(exc):
    """The exception's traceback as tblib's plain dict (None without tblib)."""
    try:
        from tblib import Traceback
    except ImportError:
        return None
    try:
        return Traceback(exc.__traceback__).to_dict() if exc.__traceback__ else None
    except Exception:
        return None


def format_failure(exc):
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        tbd = _tb_dict(exc)  # before with_traceback(None), which clears it in place
        blob = cloudpickle.dumps((exc.with_traceback(None), tbd), protocol=5)
        pickle.loads(blob)  # must come back on the client too
        enc = base64.b64encode(blob).decode("ascii")
    except Exception:
        enc = ""
    text = f"{type(exc).__name__}: {exc}\nRemote traceback:\n{tb.rstrip()}"
    return f"{text}{EXC_MARKER}{type(exc).__module__}.{type(exc).__qualname__}:{enc}]"



class gc_paused:
    """Python's cyclic collector paused while a bulk call (map, a graph's
    lowering, gather) makes 100,000s of objects that are not garbage: its
    collections would scan them again and again (a third of map's time)."""

    __slots__ = ("was",)

    def __enter__(self):
        self.was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        if self.was:
            gc.enable()


# ---------------------------------------------------------------- the F payload
# The fast form of a call whose arguments are plain values (None, bool, int,
# float, str, bytes) or direct dependencies: b"F", the length of the
# function's pickle (4 bytes, little-endian), the function's pickle -- made
# once per function in the client (fn_pickle), unpickled once per worker
# (a bounded cache keyed by those exact bytes, so two closures with
# different state never share an entry) -- then pickle.dumps((args, kwargs,
# refs)) made by the C pickler alone: refs are (position, dependency
# number) pairs, a position being an argument index or a keyword name,
# whose value the worker takes from the task's dependency arguments.
_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})
_fnp_cache = {}  # id(fn) -> (fn, its pickle): plain functions pickled once per process
_FNP_CACHE_MAX = 1024
_fn_by_blob = {}  # worker: a function's pickle -> the function (insertion order: oldest first)
FN_BLOB_CACHE_MAX = 256  # entries
FN_BLOB_CACHE_BYTES = 64 << 20  # total bytes of the pickles held
_fn_by_blob_bytes = 0
_fn_by_blob_lock = threading.Lock()
_BUILTIN_FN = type(len)


def fn_pickle(fn):
    """fn's pickle for F payloads (None where it has none).  Functions
    (def, lambda, builtins) are pickled once per process, as FastPickler
    already reduces them once; other callables (partials, instances) once
    per call, their state may change."""
    t = type(fn)
    cacheable = t is FunctionType or t is _BUILTIN_FN
    if cacheable:
        hit = _fnp_cache.get(id(fn))
        if hit is not None and hit[0] is fn:
            return hit[1]
    try:
        f = io.BytesIO()
        FastPickler(f).dump(fn)
        b = f.getvalue()
    except Exception:
        try:
            b = cloudpickle.dumps(fn, protocol=5)
        except Exception:
            return None
    if cacheable:
        if len(_fnp_cache) >= _FNP_CACHE_MAX:
            _fnp_cache.clear()
        _fnp_cache[id(fn)] = (fn, b)
    return b


def f_header(fnp):
    """The part of an F payload before the arguments."""
    return b"F" + len(fnp).to_bytes(4, "little") + fnp


def f_args_plain(args, kwargs):
    """The arguments' part of an F payload, or None when some argument is
    not a plain value (the caller takes the general path).  Written by the
    C extension (core_graph.c) -- the same bytes map_submit writes, so a
    pure call's key is the same whichever path made it."""
    return _core.f_args(args if type(args) is tuple else tuple(args), kwargs or None)


def _f_args_plain_py(args, kwargs):
    """f_args_plain's Python twin (the fallback of tests and of readers)."""
    P = _PLAIN
    for a in args:
        if type(a) not in P:
            return None
    if kwargs:
        for v in kwargs.values():
            if type(v) not in P:
                return None
    return pickle.dumps((args, kwargs, ()), protocol=5)


def _fn_from_blob(blob):
    """The worker's function for a pickle, unpickled once (bounded cache;
    a miss takes a lock: pool threads share the cache)."""
    global _fn_by_blob_bytes
    fn = _fn_by_blob.get(blob)
    if fn is None:
        fn = pickle.loads(blob)
        n = len(blob)
        if n <= FN_BLOB_CACHE_BYTES // 4:
            with _fn_by_blob_lock:
                while _fn_by_blob and (len(_fn_by_blob) >= FN_BLOB_CACHE_MAX
                                       or _fn_by_blob_bytes + n > FN_BLOB_CACHE_BYTES):
                    old = next(iter(_fn_by_blob))
                    del _fn_by_blob[old]
                    _fn_by_blob_bytes -= len(old)
                if blob not in _fn_by_blob:
                    _fn_by_blob[blob] = fn
                    _fn_by_blob_bytes += n
    return fn


def fn_cache_info():
    """(entries, bytes) of this process's cache of unpickled functions."""
    return len(_fn_by_blob), _fn_by_blob_bytes


def _execute_f(payload, deps):
    n = int.from_bytes(payload[1:5], "little")
    fn = _fn_from_blob(bytes(payload[5:5 + n]))
    args, kwargs, refs = pickle.loads(payload[5 + n:])
    if refs:
        args = list(args)
        for pos, d in refs:
            if type(pos) is int:
                args[pos] = deps[d]
            else:
                kwargs[pos] = deps[d]
    return fn(*args, **kwargs)

def execute(payload, deps):
    """Run one task (the "py:" handler): a pickled call or a Dask graph node."""
    try:
        kind = payload[0]
        if kind == 70:  # b"F": the fast form (above)
            result = _execute_f(payload, deps)
            refs = _result_refs(result) if type(result) not in _PLAIN else None
            return (True, result) if refs is None else (True, result, refs)
        if kind == 71:  # b"G": node(values)
            node, keys = pickle.loads(payload[1:])
            return True, node(dict(zip(keys, deps)))
        fn, args, kwargs = _CallUnpickler(payload[1:], deps).load()
        result = fn(*args, **kwargs)
        refs = _result_refs(result)  # Futures it returns: kept alive with it
        return (True, result) if refs is None else (True, result, refs)
    except Reschedule:  # run it again, not a failure
        return None, None
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
        exc, tbd = pickle.loads(base64.b64decode(enc))
    except Exception:
        return None
    if not isinstance(exc, BaseException):
        return None
    if tbd is not None:  # the remote frames as a real traceback (Dask's shape)
        try:
            from tblib import Traceback

            exc = exc.with_traceback(Traceback.from_dict(tbd).as_traceback())
        except Exception:
            pass
    j = text.find("Remote traceback:\n")
    if j >= 0 and hasattr(exc, "add_note"):
        exc.add_note("".join(text[j:i]))
    return exc


def error_text_without_pickle(text):
    i = text.rfind(EXC_MARKER)
    return text if i < 0 else text[:i]


from .worker_client import Reschedule, _result_refs  # noqa: E402

_core.set_hooks(dumps, loads, execute)
