"""The fast paths of submission (serialize.py's F payloads): dask.delayed
graphs whose tasks take plain values and direct dependencies, and
client.map / submit over plain arguments.  The function is pickled once in
the client and unpickled once per worker, in a bounded cache keyed by its
exact pickle."""

import pickle

import dask
import pytest

import dtask
from dtask import serialize


def inc(x):
    return x + 1


def add(*xs):
    return sum(xs)


def mul(x, y=1):
    return x * y


def boom(x):
    if x == 3:
        raise ValueError(f"no {x}")
    return x


def fn_cache_info():
    from dtask import serialize as s

    return s.fn_cache_info()


def set_fn_cache_max(n):
    from dtask import serialize as s

    s.FN_BLOB_CACHE_MAX = n
    return n


def test_payload_is_fast_for_plain_arguments():
    fnp = serialize.fn_pickle(inc)
    assert fnp is serialize.fn_pickle(inc)  # pickled once per process
    argp = serialize.f_args_plain((1, "a", None, 2.5, b"x", True), {"k": 3})
    assert argp is not None
    payload = serialize.f_header(fnp) + argp
    assert payload[:1] == b"F"
    assert serialize._execute_f(serialize.f_header(serialize.fn_pickle(add))
                                + serialize.f_args_plain((1, 2, 3), {}), []) == 6
    ok = serialize.execute(serialize.f_header(fnp) + serialize.f_args_plain((41,), {}), [])
    assert ok == (True, 42)
    # anything else than plain values takes the general path
    assert serialize.f_args_plain(([1],), {}) is None
    assert serialize.f_args_plain((1,), {"k": {"a": 1}}) is None


def test_delayed_graph_several_functions(client):
    leaves = [dask.delayed(inc)(i) for i in range(200)]
    doubled = [dask.delayed(mul)(x, y=2) for x in leaves]
    total = dask.delayed(add)(*doubled)
    assert dask.compute(total, optimize_graph=False)[0] == 2 * sum(range(1, 201))
    # the same dependency twice, keywords referencing tasks, constants mixed in
    a = dask.delayed(inc)(1)
    b = dask.delayed(add)(a, a, 10)
    c = dask.delayed(mul)(b, y=a)
    assert dask.compute(c, optimize_graph=False)[0] == (2 + 2 + 10) * 2


def test_delayed_nested_arguments_keep_dask_semantics(client):
    a = dask.delayed(inc)(1)
    b = dask.delayed(lambda xs, d: sum(xs) + d["k"])([a, a, 3], {"k": a})
    assert dask.compute(b, optimize_graph=False)[0] == 2 + 2 + 3 + 2
    fut = client.submit(inc, 100)
    c = dask.delayed(add)(fut, a)  # a Future inside a delayed call
    assert c.compute() == 101 + 2


def test_map_with_function_cache(client):
    assert client.gather(client.map(inc, range(500), pure=False)) == list(range(1, 501))
    assert client.gather(client.map(mul, range(50), range(50))) == [i * i for i in range(50)]
    assert client.gather(client.map(mul, range(5), y=3)) == [3 * i for i in range(5)]
    # the same call twice, pure: one key, as before
    f1, f2 = client.map(inc, [7, 7])
    assert f1.key == f2.key and f1.result() == 8
    assert client.submit(inc, 7).key == f1.key
    # impure keys are distinct and keep Dask's name-hex shape
    keys = [f.key for f in client.map(inc, range(20), pure=False)]
    assert len(set(keys)) == 20
    assert all(k.startswith("inc-") and len(k) == len("inc-") + 32 for k in keys)
    # one worker unpickled each function once: a bounded number of entries
    info = client.run(fn_cache_info)
    assert all(n >= 1 for n, _ in info.values())


def test_closures_with_different_state_are_not_conflated(client):
    def make(k):
        def f(x):
            return x + k

        return f

    fs = [make(k) for k in range(10)]
    futs = [client.map(f, range(5), pure=False) for f in fs]
    for k, fl in enumerate(futs):
        assert client.gather(fl) == [x + k for x in range(5)]
    lams = [lambda x, k=k: x * k for k in range(4)]
    assert [client.submit(g, 3).result() for g in lams] == [0, 3, 6, 9]


def test_function_cache_is_bounded(client):
    old = client.run(set_fn_cache_max, 4)
    try:
        def make(k):
            return lambda x: x + k

        for k in range(12):
            assert client.submit(make(k), 1, pure=False).result() == 1 + k
        info = client.run(fn_cache_info)
        assert all(n <= 4 for n, _ in info.values()), info
        # evicted functions still run (unpickled again)
        assert client.submit(make(0), 5, pure=False).result() == 5
    finally:
        client.run(set_fn_cache_max, 256)
    assert old


def test_errors_and_retries_on_fast_paths(client):
    futs = client.map(boom, range(5), pure=False)
    with pytest.raises(ValueError, match="no 3") as ei:
        client.gather(futs)
    assert "Remote traceback" in "".join(getattr(ei.value, "__notes__", []))
    assert [f.result() for i, f in enumerate(futs) if i != 3] == [0, 1, 2, 4]
    # a delayed graph with a failing task
    d = dask.delayed(add)(dask.delayed(boom)(3), 1)
    with pytest.raises(ValueError, match="no 3"):
        dask.compute(d, optimize_graph=False)


def test_recreate_error_locally_fast_payload(client):
    f = client.submit(boom, 3, pure=False)
    with pytest.raises(ValueError):
        f.result()
    with pytest.raises(ValueError, match="no 3"):
        client.recreate_error_locally(f)


def test_unpicklable_function_still_errors(client):
    import threading

    lock = threading.Lock()
    with pytest.raises(TypeError):
        client.submit(lambda x: (lock, x)[1], 1).result()
    # a dependency referenced by keyword, through the F form, on the worker
    fnp = serialize.fn_pickle(mul)
    payload = serialize.f_header(fnp) + pickle.dumps(((None,), {"y": None}, [(0, 0), ("y", 1)]))
    assert serialize.execute(payload, [6, 7]) == (True, 42)


def test_toposort_in_c():
    from dask._task_spec import Task, TaskRef

    from dtask import _core

    g = {"a": Task("a", inc, 1), "b": Task("b", add, TaskRef("a"), TaskRef("a")),
         "c": Task("c", add, TaskRef("b"), TaskRef("a")), "x": Task("x", inc, 5)}
    order = _core.toposort(g, ["c"], lambda d: False)
    assert order == ["a", "b", "c"]  # only what c needs, dependencies first
    assert _core.toposort(g, ["c", "x", "a"], lambda d: False) == ["a", "b", "c", "x"]
    seen = []
    g2 = {"y": Task("y", add, TaskRef("ext"), TaskRef("a")), "a": g["a"]}
    assert _core.toposort(g2, ["y"], lambda d: seen.append(d) or True) == ["a", "y"]
    assert seen == ["ext"]
    with pytest.raises(KeyError, match="not in the graph"):
        _core.toposort(g2, ["y"], lambda d: False)
    cyc = {"p": Task("p", inc, TaskRef("q")), "q": Task("q", inc, TaskRef("p"))}
    with pytest.raises(ValueError, match="cycle"):
        _core.toposort(cyc, ["p"], lambda d: False)
    with pytest.raises(ZeroDivisionError):  # the callback's own error comes through
        _core.toposort(g2, ["y"], lambda d: 1 / 0)


def test_get_with_cycle_and_missing_key(client):
    from dask._task_spec import Task, TaskRef

    cyc = {"p": Task("p", inc, TaskRef("q")), "q": Task("q", inc, TaskRef("p"))}
    with pytest.raises(ValueError, match="cycle"):
        client.get(cyc, "p")
    g = {"a": Task("a", inc, 1), "b": Task("b", add, TaskRef("a"), TaskRef("nope"))}
    with pytest.raises(KeyError, match="not in the graph"):
        client.get(g, "b")
    g = {"a": Task("a", inc, 1), "b": Task("b", add, TaskRef("a"), 10), "c": (add, "a", "b")}
    assert client.get(g, ["b", "c"]) == [12, 14]


def test_f_args_matches_pickle():
    from dtask import _core

    cases = [(), (1,), (0, 255, 256, 65535, 65536, -1, -2 ** 31, 2 ** 31 - 1, 2 ** 31,
                         -2 ** 31 - 1, 2 ** 63 - 1, -2 ** 63),
             (1.5, -0.0, float("inf"), 1e300), ("", "a" * 300, "é✓", b"", b"x" * 300),
             (None, True, False), (1, 2, 3, 4, 5)]
    for c in cases:
        assert pickle.loads(_core.f_args(c, None)) == (c, {}, ())
        assert pickle.loads(_core.f_args(c, {"k": 1, "z": "s"})) == (c, {"k": 1, "z": "s"}, ())
    for bad in [(2 ** 64,), ([1],), ("\ud800",), (1.0, object())]:
        assert _core.f_args(bad, None) is None
    assert _core.f_args((1,), {"a": [1]}) is None
    # ints past 64 bits, lists...: the general path, same results
    assert serialize.f_args_plain((2 ** 70,), {}) is None
