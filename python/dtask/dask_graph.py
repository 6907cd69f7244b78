"""Dask graphs on dtask: ``Client.get`` (Dask's scheduler interface) and
``Client.compute``.

Every node of the graph (Dask's task spec: Task, Alias, DataNode, and the
older tuple tasks, converted by dask itself) becomes one "py:" task whose
pickled call is ``node(values)``, its dependencies' results passed as task
arguments; the whole graph goes to the scheduler in one message.
"""

from __future__ import annotations

import pickle
import uuid
from itertools import chain

from dask._task_spec import convert_legacy_graph
from dask.core import flatten
from dask.utils import key_split

from dask._task_spec import Task, TaskRef

from . import _core
from .client import Future
from .serialize import _PLAIN, DepRef, dumps_call, dumps_node, f_header, fn_pickle, gc_paused


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
    if type(dsk) is dict:  # the walk below, in C (core_graph.c)
        order = _core.toposort(dsk, outputs, lambda d: _external(client, dsk, d, ext))
    else:
        order = _toposort_py(dsk, outputs, client, ext)
    nodes = []
    hdrs = {}  # id(func) -> (func, F payload header or None)
    for k in order:
        node = dsk[k]
        fast = _fast_node(node, hdrs) if type(node) is Task else None
        if fast is not None:
            payload, keys = fast
        else:
            keys = list(node.dependencies)
            payload = dumps_node(node, keys)
        nodes.append((k if type(k) is str else str(k), "py:" + key_split(k), payload,
                      [ext[d] if d in ext else dtask_key(d) for d in keys]))
    return nodes


def _toposort_py(dsk, outputs, client, ext):
    """_core.toposort for a graph that is not a dict."""
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
    return order


def _fast_node(node, hdrs, dumps=pickle.dumps):
    """(F payload, dependency keys) of a Task whose arguments are plain
    values or direct references (most of dask.delayed's graphs): no
    per-node pickler, the function pickled once; None for anything else
    (nested tasks, containers, Futures: dumps_node keeps Dask's semantics)."""
    fn = node.func
    h = hdrs.get(id(fn))
    if h is None or h[0] is not fn:
        fnp = fn_pickle(fn)
        h = hdrs[id(fn)] = (fn, None if fnp is None else f_header(fnp))
    if h[1] is None:
        return None
    P = _PLAIN
    args = node.args
    refs, keys, pos = [], [], {}
    kw = node.kwargs
    if kw:
        kw = dict(kw)
    # positional slots are ints, keyword ones names: one walk for both
    for i, a in (chain(enumerate(args), kw.items()) if kw else enumerate(args)):
        t = type(a)
        if t is TaskRef:
            d = pos.get(a.key)
            if d is None:
                d = pos[a.key] = len(keys)
                keys.append(a.key)
            refs.append((i, d))
            if type(i) is str:
                kw[i] = None
        elif t not in P:
            return None
    if refs:
        args = tuple(None if type(a) is TaskRef else a for a in args)
    return h[1] + dumps((args, kw or {}, refs), protocol=5), keys


# ---------------------------------------------------------------- annotations
# dask.annotate(priority=, retries=, resources=, workers=, allow_other_workers=)
# as Dask's client reads them: the graph layers' annotations (HighLevelGraph)
# or the expression's (__dask_annotations__), and dask.get_annotations() at
# the call.  Optimization may fuse annotated tasks away, as in Dask.
_ANN = ("priority", "retries", "resources", "workers", "allow_other_workers")


def _annotations_of(obj):
    """{dtask key: {option: value}} from a graph or collection's annotations."""
    out = {}
    g = obj.__dask_graph__() if hasattr(obj, "__dask_graph__") else obj
    layers = getattr(g, "layers", None)
    if layers:
        for layer in layers.values():
            ann = getattr(layer, "annotations", None)
            if not ann:
                continue
            ann = {k: v for k, v in ann.items() if k in _ANN}
            if not ann:
                continue
            for key in layer.keys():
                out[dtask_key(key)] = {k: (v(key) if callable(v) else v) for k, v in ann.items()}
    elif hasattr(obj, "__dask_graph__"):
        try:
            from dask.base import collections_to_expr

            per = collections_to_expr([obj], False).__dask_annotations__()
        except Exception:
            per = {}
        for name, bykey in per.items():
            if name in _ANN:
                for key, v in bykey.items():
                    out.setdefault(dtask_key(key), {})[name] = v
    return out


def _call_annotations():
    import dask

    return {k: v for k, v in dask.get_annotations().items() if k in _ANN}


def _opts(base, ann):
    from .client import _resources, _workers

    o = dict(base)
    if "priority" in ann and ann["priority"] is not None:
        o["priority"] = int(ann["priority"])
    if "retries" in ann and ann["retries"] is not None:
        o["retries"] = int(ann["retries"])
    if "resources" in ann:
        o["resources"] = _resources(ann["resources"])
    if "workers" in ann:
        o["workers"] = _workers(ann["workers"])
    if "allow_other_workers" in ann:
        o["allow_other_workers"] = bool(ann["allow_other_workers"])
    return o


def _submit(client, nodes, outputs, opts, ann):
    """graph_submit with per-key options: nodes (in dependency order) go in
    batches of equal options, each batch in one message, a later batch
    depending on an earlier one's futures; returns the CFutures of outputs."""
    glob = _call_annotations()
    if not ann and not glob:
        return client._c.graph_submit(nodes, outputs, **opts) if outputs else []
    key_opts = {}
    for n in nodes:
        a = dict(glob)
        a.update({k: (v(n[0]) if callable(v) else v) for k, v in glob.items()})
        a.update(ann.get(n[0], {}))
        o = _opts(opts, a)
        key_opts[n[0]] = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in o.items()))
    if len(set(key_opts.values())) <= 1:
        o = dict((k, list(v) if isinstance(v, tuple) else v) for k, v in next(iter(key_opts.values()), ())) \
            if key_opts else opts
        return client._c.graph_submit(nodes, outputs, **o) if outputs else []
    done = {}  # key -> CFuture of the batches sent
    remaining = list(nodes)
    while remaining:
        group = key_opts[remaining[0][0]]
        batch, inb, rest = [], set(), []
        for n in remaining:
            ok = key_opts[n[0]] == group and all(
                not isinstance(d, str) or d in done or d in inb for d in n[3])
            if ok:
                batch.append(n)
                inb.add(n[0])
            else:
                rest.append(n)
        batch = [(k, f, p, [done.get(d, d) if isinstance(d, str) else d for d in deps])
                 for k, f, p, deps in batch]
        o = {k: (list(v) if isinstance(v, tuple) else v) for k, v in group}
        keys = [n[0] for n in batch]
        done.update(zip(keys, client._c.graph_submit(batch, keys, **o)))
        remaining = rest
    return [done[k] for k in outputs]


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
    with gc_paused():
        return _get(client, dsk, keys, sync)


def _get(client, dsk, keys, sync):
    try:
        from dask._expr import Expr
    except ImportError:
        Expr = ()
    if isinstance(dsk, Expr):  # dask.compute's: materialised once, annotations from the expr
        try:
            ann = {}
            for name, bykey in dsk.__dask_annotations__().items():
                if name in _ANN:
                    for key, v in bykey.items():
                        ann.setdefault(dtask_key(key), {})[name] = v
        except Exception:
            ann = _annotations_of(dsk)
    else:
        ann = _annotations_of(dsk)
    dsk = _graph(dsk)
    flat = list(flatten(keys)) if isinstance(keys, list) else [keys]
    outs = list(dict.fromkeys(flat))
    ext = {}
    for k in outs:
        if k not in dsk and not _external(client, dsk, k, ext):
            raise KeyError(f"key {k!r} is not in the graph")
    run = [k for k in outs if k not in ext]
    nodes = _nodes(dsk, run, client, ext)
    cfs = _submit(client, nodes, [dtask_key(k) for k in run], {}, ann) if run else []
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


def _compute_opts(ann, workers=None, allow_other_workers=None, resources=None, retries=None,
                  priority=0, **kwargs):
    """Client.compute's workers/allow_other_workers/resources/retries/priority
    as persist's options; resources in distributed's per-collection form
    ({key or (collection, ...): {NAME: N}}, as dask-jobqueue's examples.rst
    writes it) go to those collections' keys (in ann)."""
    from dask import is_dask_collection

    from .client import _resources, _workers

    if isinstance(resources, dict) and resources and all(
            isinstance(v, dict) for v in resources.values()):
        for spec, r in resources.items():
            for part in (spec if isinstance(spec, tuple) else (spec,)):
                ks = flatten(part.__dask_keys__()) if is_dask_collection(part) else [part]
                for k in ks:
                    ann[dtask_key(k)] = dict(ann.get(dtask_key(k), {}), resources=r)
        resources = None
    return dict(priority=int(priority or 0), workers=_workers(workers),
                allow_other_workers=bool(allow_other_workers),
                resources=_resources(resources), retries=int(retries or 0))


def compute(client, collections, optimize_graph=True, **kwargs):
    """One future per collection, whose result is the computed value."""
    ann = {}
    for c in collections:
        ann.update(_annotations_of(c))
    opts = _compute_opts(ann, **kwargs)
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
            (cf,) = _submit(client, nodes, [dtask_key(flat[0])], opts, ann)
            futures.append(Future(cf, client))
            continue

        def refs(x):
            if isinstance(x, list):
                return [refs(y) for y in x]
            return Future(ext[x], client) if x in ext else DepRef(dtask_key(x))

        payload, deps = dumps_call(_finalize, (_identity, refs(keys), ()), {}, Future)
        fkey = f"finalize-{uuid.uuid4().hex}"
        nodes.append((fkey, "py:finalize", payload, deps))
        (cf,) = _submit(client, nodes, [fkey], opts, ann)
        futures.append(Future(cf, client))
    return futures


def persist(client, collections, optimize_graph=True, **opts):
    """The collections with every output key computed and kept in worker
    memory: each comes back (through its __dask_postpersist__) with a graph
    of futures, one per key, so later computations start from them."""
    from dask._expr import CompositeExpr

    ann = {}
    for c in collections:
        ann.update(_annotations_of(c))
    out = []
    for c in collections:
        expr = _optimized(c, optimize_graph)
        dsk = _graph(expr.__dask_graph__())
        keys = list(dict.fromkeys(flatten(expr.__dask_keys__())))
        ext = {}
        run = [k for k in keys if not (k not in dsk and _external(client, dsk, k, ext))]
        nodes = _nodes(dsk, run, client, ext)
        cfs = _submit(client, nodes, [dtask_key(k) for k in run], opts, ann) if run else []
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
