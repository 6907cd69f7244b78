"""The asynchronous API (dask.distributed's, on asyncio): plain pytest
functions that run their coroutine with asyncio.run."""

import asyncio
import threading
import time
import traceback

import pytest

import dtask
from dtask import Client, LocalCluster, as_completed, wait


def inc(x):
    return x + 1


def slow_inc(x, delay=0.002):
    time.sleep(delay)
    return x + 1


def fail(x):
    raise ZeroDivisionError(f"no {x}")


def _register_numpy_dispatch():
    import numpy as np
    from dask.array.dispatch import concatenate_lookup

    return concatenate_lookup.dispatch(np.ndarray) is not None


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def test_gather_1000_while_another_coroutine_runs(cluster):
    async def main():
        async with Client(cluster, asynchronous=True) as c:
            assert c.asynchronous
            futs = c.map(slow_inc, range(1000))
            sample = futs[-20:]
            stop = asyncio.Event()
            ticks = {"all": 0, "pending": 0}

            async def ticker():
                for _ in range(200_000):  # bounded
                    if stop.is_set():
                        return
                    ticks["all"] += 1
                    if not all(f.done() for f in sample):
                        ticks["pending"] += 1
                    await asyncio.sleep(0.001)

            t = asyncio.ensure_future(ticker())
            res = await c.gather(futs)
            stop.set()
            await t
            assert res == list(range(1, 1001))
            # the ticker advanced while the futures were still running: the
            # gather waited without blocking the event loop
            assert ticks["pending"] > 0
            assert all(f.done() for f in futs)

    run(main())


def test_await_future_and_result_forms(cluster):
    async def main():
        c = await Client(cluster, asynchronous=True)
        try:
            assert c.loop is asyncio.get_running_loop()
            f = c.submit(inc, 10)
            assert await f == 11
            assert await f.result() == 11
            assert await f.result(timeout=30) == 11
            assert await f.exception() is None
            assert await f.traceback() is None
            assert f.status == "finished"
            # in another thread the same client is synchronous, as Dask's
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, lambda: c.asynchronous) is False
            assert await loop.run_in_executor(None, lambda: c.gather([f])) == [11]
            assert await loop.run_in_executor(None, f.result) == 11
            # gather keeps the structure
            g = c.submit(inc, 20)
            assert await c.gather({"a": f, "b": [g, 5]}) == {"a": 11, "b": [21, 5]}
            assert await c.gather(f) == 11
        finally:
            await c.close()
            await c.close()  # a second close is a no-op

    run(main())


def test_errors_reraised_with_their_type(cluster):
    async def main():
        async with Client(cluster, asynchronous=True) as c:
            f = c.submit(fail, 3)
            with pytest.raises(ZeroDivisionError, match="no 3"):
                await f
            with pytest.raises(ZeroDivisionError):
                await f.result()
            exc = await f.exception()
            assert isinstance(exc, ZeroDivisionError)
            tb = await f.traceback()
            assert any("fail" in line for line in traceback.format_tb(tb))
            ok = c.submit(inc, 1)
            with pytest.raises(ZeroDivisionError):
                await c.gather([ok, f])
            assert await c.gather([ok, f], errors="skip") == [2]
            # a cancelled future raises CancelledError when awaited
            s = c.submit(slow_inc, 1, 2.0, pure=False)
            await s.cancel()
            with pytest.raises(dtask.CancelledError):
                await s
            s1 = c.submit(slow_inc, 1, 2.0, pure=False)
            await c.cancel([s1])
            assert s1.cancelled()
            # a wait past its timeout
            s2 = c.submit(slow_inc, 2, 1.0, pure=False)
            with pytest.raises(TimeoutError):
                await s2.result(timeout=0.01)
            with pytest.raises(TimeoutError):
                await wait([s2], timeout=0.01)
            assert await s2 == 3

    run(main())


def test_async_with_local_cluster_and_client():
    async def main():
        async with LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=None,
                                asynchronous=True) as cluster:
            assert cluster.asynchronous
            assert cluster.scheduler_address
            async with Client(cluster, asynchronous=True) as c:
                await c.wait_for_workers(1)
                info = c.scheduler_info()  # a dict at once, as Dask's
                assert len(info["workers"]) == 1
                assert len((await c.scheduler_info())["workers"]) == 1
                assert list((await c.run(inc, 1)).values()) == [2]
                assert await c.submit(inc, 1) == 2
            # await Client(address, asynchronous=True)
            c2 = await Client(cluster.scheduler_address, asynchronous=True)
            assert await c2.submit(inc, 5) == 6
            await c2.close()
        # await LocalCluster(...) and await cluster.close(); a client made
        # with a cluster still starting waits for it
        cl = LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None,
                          asynchronous=True)
        try:
            async with Client(cl, asynchronous=True) as c:
                assert await cl is cl
                assert await c.submit(inc, 41) == 42
        finally:
            await cl.close()

    run(main())


def test_async_for_as_completed_and_wait(cluster):
    async def main():
        async with Client(cluster, asynchronous=True) as c:
            futs = c.map(slow_inc, range(30))
            ac = as_completed(futs)
            seen = []
            extra = c.submit(inc, 100)
            async for f in ac:
                if not seen:
                    ac.add(extra)  # added while iterating
                seen.append(f)
            assert len(seen) == 31 and {f.key for f in seen} == {f.key for f in futs + [extra]}
            assert all(f.done() for f in seen)

            pairs = [p async for p in as_completed(c.map(inc, range(10)), with_results=True)]
            assert sorted(r for _, r in pairs) == list(range(1, 11))

            bad = [c.submit(fail, 1), c.submit(inc, 1)]
            res = [r async for _, r in as_completed(bad, with_results=True, raise_errors=False)]
            assert sum(isinstance(r, ZeroDivisionError) for r in res) == 1 and 2 in res

            # the synchronous form still iterates
            assert len(list(as_completed(c.map(inc, range(5))))) == 5

            fs = c.map(slow_inc, range(10, 20))
            done, not_done = await wait(fs)
            assert len(done) == 10 and not not_done
            slow = c.submit(slow_inc, 0, 1.0, pure=False)
            done, not_done = await wait([slow, fs[0]], return_when="FIRST_COMPLETED")
            assert fs[0] in done
            await wait(slow)

    run(main())


def test_done_callbacks_run_on_the_loop_thread(cluster):
    async def main():
        async with Client(cluster, asynchronous=True) as c:
            loop_thread = threading.get_ident()
            got = []
            ev = asyncio.Event()

            def cb(fut):
                got.append((threading.get_ident(), fut.key, fut.status))
                if len(got) == 2:
                    ev.set()  # an asyncio call: only safe on the loop's thread

            f = c.submit(slow_inc, 1, 0.2, pure=False)
            f.add_done_callback(cb)
            await f
            f.add_done_callback(cb)  # already done: still on the loop
            await asyncio.wait_for(ev.wait(), 60)
            assert [g[0] for g in got] == [loop_thread, loop_thread]
            assert {g[1] for g in got} == {f.key} and got[0][2] == "finished"

    run(main())


def test_await_scatter_compute_persist(cluster):
    da = pytest.importorskip("dask.array")

    async def main():
        async with Client(cluster, asynchronous=True) as c:
            a, b = await c.scatter([1, 2])
            assert isinstance(a, dtask.Future)
            assert await c.submit(lambda x, y: x + y, a, b) == 3
            d = await c.scatter({"x": 10})
            assert await d["x"] == 10

            # workaround, not under test here: two worker threads meeting Dask's
            # lazy dispatch registration (concatenate_lookup for numpy) at once can
            # fail one task with "No dispatch for numpy.ndarray" (reported)
            await c.run(_register_numpy_dispatch)
            x = da.arange(100, chunks=10)
            fut = c.compute(x.sum())  # submits at once: a Future
            assert isinstance(fut, dtask.Future)
            assert await fut == 4950
            assert await c.compute(x.sum(), sync=True) == 4950
            futs = c.compute([x.sum(), x.max()])
            assert await c.gather(futs) == [4950, 99]

            y = c.persist(x + 1)  # returns the collection at once, as Dask's
            await wait(y)
            assert all(f.done() for f in dtask.futures_of(y))
            assert await c.compute(y.sum()) == 5050

    run(main())


def test_client_sync(client):
    async def add(x, y):
        await asyncio.sleep(0)
        return x + y

    assert client.asynchronous is False
    assert client.sync(add, 1, y=2) == 3
    assert client.sync(lambda: 7) == 7

    async def f():
        # the client's loop runs this coroutine, in its own thread
        assert asyncio.get_running_loop() is client.loop
        fut = client.submit(inc, 10)
        return await client.gather(fut, asynchronous=True), await fut

    assert client.sync(f) == (11, 11)

    async def forever():
        await asyncio.sleep(60)

    with pytest.raises(TimeoutError):
        client.sync(forever, callback_timeout=0.05)

    async def main():
        # in an asynchronous client's loop, sync returns the awaitable
        async with Client(client.cluster, asynchronous=True) as c:
            aw = c.sync(add, 2, 3)
            assert asyncio.iscoroutine(aw)
            return await aw

    assert run(main()) == 5


# Dask's documentation, "Asynchronous Operation" (docs/source/asynchronous.rst):
# the code blocks with only the import changed (dask.distributed -> dtask).

def test_dask_docs_asynchronous_operation(cluster, monkeypatch):
    # Client() connects to this address (instead of starting a cluster)
    monkeypatch.setenv("DTASK_SCHEDULER_ADDRESS", cluster.scheduler_address)
    import dask.array as da

    from dtask import Client

    out = {}

    async def f():
        async with Client(asynchronous=True) as client:
            future = client.submit(lambda x: x + 1, 10)
            result = await future
            out["await"] = result
            result = await client.gather(future)
            out["gather"] = result

    asyncio.run(f())
    assert out == {"await": 11, "gather": 11}

    client = Client()  # normal blocking client

    async def f():
        future = client.submit(lambda x: x + 1, 10)
        result = await client.gather(future, asynchronous=True)
        return result

    assert client.sync(f) == 11
    client.close()

    async def g():
        async with Client(asynchronous=True) as client:
            arr = da.random.random((1000, 1000), chunks=(1000, 100))
            return await client.compute(arr.mean())

    m = asyncio.run(g())
    assert 0.45 < m < 0.55


def test_dask_docs_asyncio_example():
    # the self-contained example: Client() starts (and closes) its own cluster
    import asyncio

    from dtask import Client

    async def f():
        async with Client(asynchronous=True) as client:
            future = client.submit(lambda x: x + 1, 10)
            result = await future
        return result

    assert asyncio.run(f()) == 11


def test_asynchronous_client_needs_a_running_loop():
    with pytest.raises(RuntimeError, match="running asyncio event loop"):
        Client(asynchronous=True)
