"""Actors: stateful objects on one worker, as in dask.distributed.

    counter = client.submit(Counter, actor=True).result()   # an Actor
    counter.increment().result()                           # an ActorFuture
    counter.n                                              # an attribute, read now

``client.submit(cls, *args, actor=True)`` creates ``cls(*args)`` on the
worker that runs the task and keeps it there until the future is released;
the future's result is an :class:`Actor`, a proxy.  Method calls go from
the caller straight to that worker (never through the scheduler) and run
one at a time per actor, in arrival order, under the worker's GIL; each
returns an :class:`ActorFuture`.  An Actor pickles to (class, address, key)
and can be passed to tasks, where its calls go through ``get_client()``.
"""

from __future__ import annotations

import asyncio
import inspect
import pickle
import uuid

import cloudpickle

from . import _core
from .client import DtaskError, Future, _ms, _translate, funcname, get_client
from .serialize import dumps_call, execute, format_failure


class ActorFuture:
    """The future of one actor call: ``result(timeout)``, ``done()``, and
    ``await`` inside a coroutine."""

    __slots__ = ("_cf",)

    def __init__(self, cf):
        self._cf = cf

    def result(self, timeout=None):
        try:
            return self._cf.result(_ms(timeout))
        except DtaskError as e:
            raise _translate(e, self._cf.exception_text()) from None

    def done(self):
        return self._cf.done()

    def __await__(self):
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(None, self.result).__await__()

    def __repr__(self):
        return f"<ActorFuture: {'done' if self.done() else 'pending'}>"


class Actor:
    """A proxy on an actor held by a worker (dask.distributed.Actor)."""

    def __init__(self, cls, address, key, client=None, future=None):
        self._cls = cls
        self._address = address
        self.key = key
        self._client = client
        self._future = future  # keeps the actor alive while this proxy is

    def __reduce__(self):
        return (Actor, (self._cls, self._address, self.key))

    def __repr__(self):
        return f"<Actor: {getattr(self._cls, '__name__', self._cls)}, key={self.key}>"

    def _cclient(self):
        client = self._client
        if client is None:
            client = self._client = get_client()
        return client._c

    def _call(self, name, attribute, payload=None):
        args = (self._cclient(), self.key, self._address, name, attribute)
        if payload is not None:
            args += (payload,)
        return ActorFuture(_core.actor_call(*args))

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        attr = getattr(self._cls, name, None)
        if callable(attr) or isinstance(attr, (staticmethod, classmethod)):
            def call(*args, **kwargs):
                return self._call(name, False, cloudpickle.dumps((args, kwargs), protocol=5))
            call.__name__ = name
            return call
        fut = self._call(name, True)
        # an attribute: read it now, or an awaitable for an asynchronous
        # client on its loop (Dask's `await counter.n`)
        client = self._client
        if client is not None and getattr(client, "asynchronous", False):
            return fut
        return fut.result()

    def __dir__(self):
        return sorted(set(dir(type(self))) | {n for n in dir(self._cls) if not n.startswith("_")})


class _ActorCreation(Future):
    """The future of ``submit(cls, actor=True)``: its result is an Actor."""

    __slots__ = ("_cls", "_actor")

    def result(self, timeout=None):
        a = getattr(self, "_actor", None)
        if a is None:
            h = super().result(timeout)
            a = self._actor = Actor(self._cls, h["address"], h["actor"], self.client, self)
        return a


def submit_actor(client, cls, args, kwargs, key, opts):
    """client.submit(cls, *args, actor=True, **kwargs)"""
    if not isinstance(cls, type) and not callable(cls):
        raise TypeError(f"an actor needs a class, not {cls!r}")
    payload, deps = dumps_call(cls, args, kwargs, Future)
    name = funcname(cls)
    k = str(key) if key is not None else f"{name}-{uuid.uuid4().hex}"
    cf = client._c.submit("actor:py:" + name, [payload, *deps], key=k, pure=False, **opts)
    f = _ActorCreation(cf, client)
    f._cls = cls
    f._actor = None
    return f


# ---------------------------------------------------------------- worker side (core_actor.c)

def _worker_create(payload, deps):
    """Make the actor: (True, instance) or (False, error text)."""
    return execute(payload, deps)


def _worker_call(obj, name, attribute, payload):
    """One call on the actor obj: (True, result) or (False, error text)."""
    try:
        if attribute:
            return True, getattr(obj, name)
        if name.startswith("_"):
            raise AttributeError(f"{type(obj).__name__}.{name} is private")
        args, kwargs = pickle.loads(payload)
        r = getattr(obj, name)(*args, **kwargs)
        if inspect.iscoroutine(r):
            r = asyncio.run(r)
        return True, r
    except BaseException as e:  # every failure goes back to the caller
        return False, format_failure(e)


__all__ = ["Actor", "ActorFuture"]
