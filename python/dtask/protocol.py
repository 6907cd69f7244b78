"""Custom serialization, as ``distributed.protocol``: register a type's
serializer and deserializer and dtask uses them whenever it pickles a value
of that type (results, scattered data, task arguments)::

    from dtask.protocol import dask_serialize, dask_deserialize

    @dask_serialize.register(MyType)
    def serialize(obj) -> tuple[dict, list[bytes]]:
        return {"version": 1}, [obj.data]

    @dask_deserialize.register(MyType)
    def deserialize(header, frames) -> MyType:
        return MyType(frames[0])

The pair travels inside dtask's pickle stream (``dtask/serialize.py``):
the object is replaced by ``(type, header, frames)``; the receiving side
looks the deserializer up by the type.  Subclasses use their base class's
registration, as Dask's ``Dispatch`` does.
"""

from __future__ import annotations

from . import serialize as _ser

try:
    from dask.utils import Dispatch
except ImportError:  # dask is optional: the same lookup, by the type's MRO

    class Dispatch:
        def __init__(self, name=None):
            self._lookup, self._lazy = {}, {}
            if name:
                self.__name__ = name

        def register(self, type, func=None):
            def wrapper(func):
                for t in type if isinstance(type, tuple) else (type,):
                    self._lookup[t] = func
                return func

            return wrapper(func) if func is not None else wrapper

        def register_lazy(self, toplevel, func=None):
            def wrapper(func):
                self._lazy[toplevel] = func
                return func

            return wrapper(func) if func is not None else wrapper

        def dispatch(self, cls):
            for c in cls.__mro__:
                if c in self._lookup:
                    return self._lookup[c]
                top = c.__module__.split(".", 1)[0]
                if top in self._lazy:
                    self._lazy.pop(top)()
                    return self.dispatch(cls)
            raise TypeError(f"No dispatch for {cls}")

        def __call__(self, arg, *args, **kwargs):
            return self.dispatch(type(arg))(arg, *args, **kwargs)


class _Dispatch(Dispatch):
    """dask.utils.Dispatch that tells dtask's pickler a registration exists."""

    def register(self, type, func=None):
        _ser._dask_ser_changed()
        return super().register(type, func)

    def register_lazy(self, toplevel, func=None):
        _ser._dask_ser_changed()
        return super().register_lazy(toplevel, func)


dask_serialize = _Dispatch("dask_serialize")
dask_deserialize = _Dispatch("dask_deserialize")
_ser._DASK_SER = (dask_serialize, dask_deserialize)

__all__ = ["dask_serialize", "dask_deserialize"]
