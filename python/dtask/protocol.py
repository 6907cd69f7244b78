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

from dask.utils import Dispatch

from . import serialize as _ser


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
