"""Dask graphs on dtask: ``Client.get`` (Dask's scheduler interface) and
``Client.compute``.

Every node of the graph (Dask's task spec: Task, Alias, DataNode, and the
older tuple tasks, converted by dask itself) becomes one "py:" task whose
pickled call is ``node(values)``, its dependencies' results passed as task
arguments; the whole graph goes to the scheduler in one message.
"""

from __future__ import annotations

import uuid

from dask._task_spec import convert_legacy_graph
from dask.core import flatten
from dask.utils import key_split

from .client import Future
from .serialize import DepRef, dumps_call, dumps_node


def dtask_key(key):
    """Dask keys are str or tuples like ('x-1a2b', 0, 1): dtask keys are str."""
    return key if isinstance(key, str) else str(key)


def _finalize(func, parts, extra):
    return func(parts, *extra)


def _external(client, dsk, key, ext):
    """A key the graph names but does not define: a future the client holds
    (a Future inside dask.delayed, or a persisted collection's part); its
    CFuture is remembered in ext.  KeyError for any other key."""
    if key in ext:
        return True
    cf = client._c.future_for_key(dtask_key(key)) if client is not None else None
    if cf is None:
        return False
    ext[key] = cf
    return True


def _nodes(dsk, outputs, client=None, ext=None):
    """(key, func, payload, deps) for the nodes outputs need, in dependency
    order; deps are keys of earlier nodes, or CFutures of futures the client
    already holds (collected in ext: key -> CFuture)."""
    ext = {} if ext is None else ext
    order, state = [], {}
    for root in outputs:
        if state.get(root):
            continue
        stack = [(root, False)]
        while stack:
            k, expanded = stack.pop()
            if expanded:
                state[k] = 2
                order.append(k)
                continue
            if state.get(k):
                continue
            state[k] = 1
            stack.append((k, True))
            for d in dsk[k].dependencies:
                if d not in dsk:
                    if _external(client, dsk, d, ext):
                        continue
                    raise KeyError(f"task {k!r} depends on {d!r}, which is not in the graph")
                if not state.get(d):
                    stack.append((d, False))
                elif state[d] == 1:
                    raise ValueError(f"the graph has a cycle through {d!r}")
    nodes = []
    for k in order:
        node = dsk[k]
        keys = list(node.dependencies)
        nodes.append((dtask_key(k), "py:" + key_split(k), dumps_node(node, keys),
                      [ext[d] if d in ext else dtask_key(d) for d in keys]))
    return nodes


def _graph(dsk):
    if hasattr(dsk, "__dask_graph__"):
        dsk = dsk.__dask_graph__()
    # dask.delayed(future) is a graph {key: the future itself}: that key is
    # the future's, not a node to run
    dsk = {k: v for k, v in dict(dsk).items() if not (type(v) is Future and v.key == dtask_key(k))}
    return convert_legacy_graph(dsk)


def get(client, dsk, keys, sync=True, **kwargs):
    """Runs the graph on the cluster and returns the results of keys, in the
    same structure (a key, or nested lists of keys); sync=False: Futures in
    that structure instead, as Dask's Client.get."""
    dsk = _graph(dsk)
    flat = list(flatten(keys)) if isinstance(keys, list) else [keys]
    outs = list(dict.fromkeys(flat))
    ext = {}
    for k in outs:
        if k not in dsk and not _external(client, dsk, k, ext):
            raise KeyError(f"key {k!r} is not in the graph")
    run = [k for k in outs if k not in ext]
    nodes = _nodes(dsk, run, client, ext)
    cfs = client._c.graph_submit(nodes, [dtask_key(k) for k in run]) if run else []
    byk = dict(zip(run, cfs))
    futs = [Future(byk[k] if k in byk else ext[k], client) for k in outs]
    res = dict(zip(outs, futs if not sync else client.gather(futs)))

    def pack(x):
        return [pack(y) for y in x] if isinstance(x, list) else res[x]

    return pack(keys)


def _identity(parts):
    return parts


def _optimized(c, optimize_graph, finalize=False):
    """c's expression, optimized (and lowered) as dask.compute/dask.persist
    do it (dask.optimize would keep the unoptimized graph under new keys)."""
    from dask._expr import FinalizeCompute
    from dask.base import collections_to_expr

    expr = collections_to_expr(c, optimize_graph)
    return (FinalizeCompute(expr) if finalize else expr).optimize()


def compute(client, collections, optimize_graph=True, **kwargs):
    """One future per collection, whose result is the computed value."""
    futures = []
    for c in collections:
        expr = _optimized(c, optimize_graph, finalize=True)
        dsk = _graph(expr.__dask_graph__())
        keys = expr.__dask_keys__()
        flat = list(flatten(keys)) if isinstance(keys, list) else [keys]
        ext = {}
        run = [k for k in dict.fromkeys(flat) if not (k not in dsk and _external(client, dsk, k, ext))]
        nodes = _nodes(dsk, run, client, ext)
        if len(flat) == 1 and flat[0] in ext:
            futures.append(Future(ext[flat[0]], client))
            continue
        if len(flat) == 1:
            (cf,) = client._c.graph_submit(nodes, [dtask_key(flat[0])])
            futures.append(Future(cf, client))
            continue

        def refs(x):
            if isinstance(x, list):
                return [refs(y) for y in x]
            return Future(ext[x], client) if x in ext else DepRef(dtask_key(x))

        payload, deps = dumps_call(_finalize, (_identity, refs(keys), ()), {}, Future)
        fkey = f"finalize-{uuid.uuid4().hex}"
        nodes.append((fkey, "py:finalize", payload, deps))
        (cf,) = client._c.graph_submit(nodes, [fkey])
        futures.append(Future(cf, client))
    return futures


def persist(client, collections, optimize_graph=True, **opts):
    """The collections with every output key computed and kept in worker
    memory: each comes back (through its __dask_postpersist__) with a graph
    of futures, one per key, so later computations start from them."""
    from dask._expr import CompositeExpr

    out = []
    for c in collections:
        expr = _optimized(c, optimize_graph)
        dsk = _graph(expr.__dask_graph__())
        keys = list(dict.fromkeys(flatten(expr.__dask_keys__())))
        ext = {}
        run = [k for k in keys if not (k not in dsk and _external(client, dsk, k, ext))]
        nodes = _nodes(dsk, run, client, ext)
        cfs = client._c.graph_submit(nodes, [dtask_key(k) for k in run], **opts) if run else []
        futs = {k: Future(cf, client) for k, cf in zip(run, cfs)}
        for k in keys:
            if k not in futs:
                futs[k] = Future(ext[k], client)
        if isinstance(expr, CompositeExpr):
            from dask.base import _rebuild_composite_collection

            out.append(_rebuild_composite_collection(c, expr, futs, cull_to_child_keys=True))
            continue
        rebuild, args = c.__dask_postpersist__()
        out.append(rebuild(futs, *args))
    return out
