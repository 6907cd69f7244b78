"""Actors (dask.distributed's Actor): stateful objects on one worker whose
method calls go straight to that worker and run one at a time."""

import asyncio
import concurrent.futures
import pickle
import threading

import pytest

import dtask
from dtask import Actor, ActorFuture


class Counter:
    """Dask's example actor."""

    n = 0

    def __init__(self, start=0):
        self.n = start

    def increment(self, by=1):
        # read, yield the GIL, write: overlapping calls would lose updates
        n = self.n
        threading.Event().wait(0.0001)
        self.n = n + by
        return self.n

    def add_many(self, *xs, scale=1):
        self.n += sum(xs) * scale
        return self.n

    def fail(self, msg):
        raise KeyError(msg)

    async def aincrement(self):
        await asyncio.sleep(0)
        self.n += 1
        return self.n


class AppError(Exception):
    pass


class Failing:
    def __init__(self):
        raise AppError("no state for you")


def test_dask_counter_example(client):
    future = client.submit(Counter, actor=True)
    counter = future.result()
    assert isinstance(counter, Actor)
    assert counter.n == 0
    f = counter.increment()
    assert isinstance(f, ActorFuture)
    assert f.result(timeout=30) == 1
    assert f.done()
    assert counter.n == 1
    assert counter.add_many(1, 2, 3, scale=10).result(timeout=30) == 61
    assert counter.aincrement().result(timeout=30) == 62


def test_constructor_args_and_worker(client):
    counter = client.submit(Counter, 40, actor=True).result(timeout=30)
    assert counter.increment(2).result(timeout=30) == 42
    assert "tcp://" + counter._address in client.scheduler_info()["workers"]


def test_100_increments_from_client_threads(client):
    counter = client.submit(Counter, actor=True).result(timeout=30)
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        futs = list(ex.map(lambda _: counter.increment(), range(100)))
        results = sorted(f.result(timeout=60) for f in futs)
    assert results == list(range(1, 101))  # one at a time: no lost update
    assert counter.n == 100


def test_calls_in_order(client):
    counter = client.submit(Counter, actor=True).result(timeout=30)
    futs = [counter.increment() for _ in range(200)]
    assert [f.result(timeout=60) for f in futs] == list(range(1, 201))


def test_method_exception_reraised_with_type(client):
    counter = client.submit(Counter, actor=True).result(timeout=30)
    with pytest.raises(KeyError, match="missing"):
        counter.fail("missing").result(timeout=30)
    assert counter.increment().result(timeout=30) == 1  # still alive


def test_constructor_exception(client):
    f = client.submit(Failing, actor=True)
    with pytest.raises(AppError, match="no state for you"):
        f.result(timeout=30)


def test_unknown_method_and_attribute(client):
    counter = client.submit(Counter, actor=True).result(timeout=30)
    with pytest.raises(AttributeError):
        counter.nope
    with pytest.raises(AttributeError):
        counter._call("nope", False, pickle.dumps(((), {}))).result(timeout=30)


def test_released_actor_errors(client):
    future = client.submit(Counter, actor=True)
    counter = future.result(timeout=30)
    key, address = counter.key, counter._address
    assert counter.increment().result(timeout=30) == 1
    del counter
    future.release()
    del future
    stale = Actor(Counter, address, key, client)
    err = None
    for _ in range(200):  # the worker drops it once FREE_KEYS arrives
        try:
            stale.increment().result(timeout=30)
        except dtask.DtaskError as e:
            err = e
            break
        threading.Event().wait(0.02)
    assert err is not None and "no actor" in str(err)


def test_actor_pickles(client):
    counter = client.submit(Counter, actor=True).result(timeout=30)
    back = pickle.loads(pickle.dumps(counter))
    assert back.key == counter.key and back._address == counter._address
    back._client = client
    assert back.increment().result(timeout=30) == 1


def actor_key(a):
    return a.key


def test_actor_passed_to_task(client):
    counter = client.submit(Counter, actor=True).result(timeout=30)
    assert client.submit(actor_key, counter).result(timeout=30) == counter.key


def increment_it(a):
    return a.increment().result(timeout=30)


def test_100_increments_from_tasks(client):
    counter = client.submit(Counter, actor=True).result(timeout=30)
    futs = [client.submit(increment_it, counter, pure=False) for _ in range(100)]
    assert sorted(f.result(timeout=60) for f in futs) == list(range(1, 101))
    assert counter.n == 100


def test_await_actor_future(client):
    counter = client.submit(Counter, actor=True).result(timeout=30)

    async def main():
        return await counter.increment()

    assert asyncio.run(main()) == 1
