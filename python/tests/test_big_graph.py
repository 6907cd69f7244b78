"""A graph or map bigger than one UPDATE_GRAPH slice, submitted in one call
(src/client/slices.c): the slices made small here (DTASK_SLICE_TASKS, read
at each submission), dependencies crossing slice boundaries, every result
checked."""

import dask
import pytest


def inc(x):
    return x + 1


def add(a, b):
    return a + b


@pytest.fixture()
def small_slices(monkeypatch):
    monkeypatch.setenv("DTASK_SLICE_TASKS", "100")
    monkeypatch.setenv("DTASK_SLICE_BYTES", "16384")


def test_delayed_graph_in_slices(client, small_slices):
    n = 1000
    chain = [dask.delayed(inc)(0)]
    for i in range(1, n):
        chain.append(dask.delayed(inc)(chain[-1]))
    # only the jumps are wanted: jump i needs chain[i // 7], sent slices before
    jumps = [dask.delayed(add)(chain[i // 7], chain[i]) for i in range(n)]
    got = dask.compute(*jumps, optimize_graph=False)
    assert list(got) == [(i // 7 + 1) + (i + 1) for i in range(n)]


def test_map_in_slices(client, small_slices):
    futs = client.map(inc, range(3000), pure=False)
    assert client.gather(futs) == list(range(1, 3001))
