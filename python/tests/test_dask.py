"""Dask collections computed on dtask give what Dask's synchronous
scheduler gives."""

import dask
import dask.array as da
import dask.bag as db
import numpy as np
import pandas as pd
import pytest

import dtask


@pytest.fixture(scope="module")
def x():
    return da.random.default_rng(0).random((4000, 4000), chunks=(500, 500))


def test_array_mean_of_sum_with_transpose(client, x):
    y = (x + x.T).mean(axis=0)
    got = dask.compute(y, scheduler=client.get)[0]
    np.testing.assert_allclose(got, y.compute(scheduler="sync"))
    assert got.shape == (4000,)


def test_array_matrix_product(client, x):
    a = x[:, :1000]
    y = (a.T @ a)  # (1000, 1000) from a 4000-long inner dimension: 8 x 8 chunk products
    got = y.compute()  # the client is the default scheduler
    np.testing.assert_allclose(got, y.compute(scheduler="sync"))


def test_array_reductions(client, x):
    y = [(x ** 2).sum(), x.std(axis=1), x.max(axis=0) - x.min(axis=0), (x > 0.5).sum()]
    got = dask.compute(*y, scheduler=client.get)
    want = dask.compute(*y, scheduler="sync")
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w)


def test_dataframe_groupby_aggregation(client):
    df = dask.datasets.timeseries(start="2000-01-01", end="2000-01-15", freq="1s", seed=0)
    g = df.groupby("name").agg({"x": "mean", "y": "max", "id": "count"})
    with dask.config.set(scheduler=client.get):
        got = g.compute()
    want = g.compute(scheduler="sync")
    assert len(got) > 20
    pd.testing.assert_frame_equal(got.sort_index(), want.sort_index())
    s = df.x.sum()
    assert float(s.compute()) == pytest.approx(float(s.compute(scheduler="sync")))


def test_bag_word_count(client):
    lines = [f"the quick brown fox {i % 7} jumps over the lazy dog {i % 3}" for i in range(2000)]
    b = db.from_sequence(lines, npartitions=8)
    wc = b.str.split().flatten().frequencies()
    got = dict(wc.compute(scheduler=client.get))
    assert got == dict(wc.compute(scheduler="sync"))
    assert got["the"] == 4000


def test_delayed_graph(client):
    @dask.delayed
    def inc(i):
        return i + 1

    @dask.delayed
    def add(a, b):
        return a + b

    @dask.delayed(pure=True)
    def total(xs):
        return sum(xs)

    layer = [inc(i) for i in range(50)]
    pairs = [add(layer[i], layer[i + 1]) for i in range(49)]
    t = total(pairs)
    assert t.compute(scheduler=client.get) == t.compute(scheduler="sync") == 2 * sum(range(1, 51)) - 1 - 50
    # several outputs with shared parts, nested structure
    out = dask.compute({"a": layer[:3], "b": (pairs[0], t)}, scheduler=client.get)[0]
    assert out == {"a": [1, 2, 3], "b": (3, t.compute(scheduler="sync"))}


def test_legacy_tuple_graph(client):
    from operator import add, mul

    dsk = {"a": 1, "b": (add, "a", 10), "c": (mul, "b", "b"), ("d", 0): (sum, ["a", "b", "c"]),
           "e": "c"}
    assert client.get(dsk, "c") == 121
    assert client.get(dsk, [["e", ("d", 0)], "a"]) == [[121, 1 + 11 + 121], 1]
    with pytest.raises(KeyError):
        client.get(dsk, "nope")


def test_errors_in_collections_raise_the_original_type(client):
    @dask.delayed
    def boom(i):
        raise ValueError(f"boom {i}")

    with pytest.raises(ValueError, match="boom 3"):
        dask.compute(boom(3), scheduler=client.get)


def test_client_compute_returns_futures(client, x):
    y = x[:1000, :1000].sum()
    f = client.compute(y)
    assert isinstance(f, dtask.Future)
    assert f.result() == pytest.approx(float(y.compute(scheduler="sync")))
    fs = client.compute([y, x[0, 0]])
    assert len(fs) == 2 and client.gather(fs)[1] == pytest.approx(float(x[0, 0].compute()))
