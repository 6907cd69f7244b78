"""client.map's body for Python functions (issue 17's fast paths): impure
maps over plain arguments go to the C extension in one call
(``_core.map_submit``, core_graph.c); others build F payloads
(serialize.py) or general pickled calls, one graph message either way."""

from __future__ import annotations

import uuid

from . import _core, serialize
from .serialize import dumps_call


def map_py(self, func, calls, keys, key, pure, kwargs, priority, workers,
           allow_other_workers, resources, retries):
    """Client.map of a Python function (self: the Client; the caller pauses
    the GC): a list of Futures, one per call."""
    from .client import Future, _resources, _workers, funcname

    name = funcname(func)
    prefix = key if isinstance(key, str) else name
    cname = "py:" + name
    nodes, outs = [], []
    # impure keys: one random prefix per call, numbered (a uuid4 per item
    # costs more than the rest of the item); plain arguments: F payloads
    # (serialize.py), the function pickled once
    base = uuid.uuid4().hex[:24] if not pure and keys is None else None
    if base is not None and workers is None and resources is None and calls:
        # all in C (core_graph.c) when every argument is a plain value
        fnp = serialize.fn_pickle(func)
        cfs = None if fnp is None else _core.map_submit(
            self._c, cname, serialize.f_header(fnp), calls, kwargs or None, prefix, base,
            int(priority), int(retries or 0), bool(allow_other_workers))
        if cfs is not None:
            return [Future(cf, self) for cf in cfs]
    hdr = None
    f_args, fast_ok = serialize.f_args_plain, True
    for i, a in enumerate(calls):
        argp = f_args(a, kwargs) if fast_ok else None
        if argp is not None and hdr is None:
            fnp = serialize.fn_pickle(func)
            hdr = serialize.f_header(fnp) if fnp is not None else None
            fast_ok = hdr is not None
        if argp is not None and hdr is not None:
            payload, deps = hdr + argp, []
        else:
            payload, deps = dumps_call(func, a, kwargs, Future)
        if base is not None:
            k = f"{prefix}-{base}{i:08x}"
        else:
            k = self._key(prefix, payload, deps, None if keys is None else keys[i], pure)
        nodes.append((k, cname, payload, deps))
        outs.append(k)
    uniq = list(dict.fromkeys(outs))
    seen = set()
    nodes = [n for n in nodes if not (n[0] in seen or seen.add(n[0]))]
    cfs = self._c.graph_submit(nodes, uniq, priority=int(priority), workers=_workers(workers),
                               allow_other_workers=bool(allow_other_workers),
                               resources=_resources(resources), retries=int(retries or 0))
    byk = {k: Future(cf, self) for k, cf in zip(uniq, cfs)}
    return [byk[k] for k in outs]
