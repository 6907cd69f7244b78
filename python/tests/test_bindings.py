"""The extension sees the library only through dtask.h and the bindings
header (src/client/bind.h), and the paths that header serves keep their
behaviour: whole error texts, future keys, wrapped buffers kept private."""
import re

import numpy as np
import pytest

import dtask

from conftest import ROOT

ALLOWED = {"Python.h", "dtask.h", "core.h", "../../src/client/bind.h"}
STD = {"stdbool.h", "stddef.h", "stdint.h", "stdlib.h", "string.h", "stdio.h"}


def includes(path):
    return re.findall(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', path.read_text(), re.M)


def test_extension_includes_only_the_public_and_binding_headers():
    files = sorted((ROOT / "python" / "dtask").glob("*.[ch]"))
    assert files
    for f in files:
        for inc in includes(f):
            assert inc in ALLOWED or inc in STD, f"{f.name} includes {inc}"
    bind = ROOT / "src" / "client" / "bind.h"
    assert set(includes(bind)) <= STD | {"dtask.h"}


class LongError(Exception):
    pass


def fail_long(n):
    raise LongError("x" * n)


def test_long_task_error_arrives_whole(client):
    # the error text (message, traceback, pickled exception: about 6 KB) is
    # longer than dt_task_fail's 4 KB buffer and within the scheduler's 8 KB
    # cap: the worker must pass it on whole for the exception to come back
    f = client.submit(fail_long, 1500)
    with pytest.raises(LongError) as ei:
        f.result()
    assert ei.value.args == ("x" * 1500,)
    assert 4096 < len(f._cf.exception_text()) < 8192


def test_future_inside_native_value_names_its_key(client):
    f = client.submit(lambda: 1, pure=False)
    f.result()
    # a CFuture in a native value becomes a DT_FUTURE value, read back as its key
    assert dtask._core.roundtrip([f._cf], True) == [f.key]


def test_scattered_array_stays_the_callers_own(client):
    a = np.arange(1 << 16, dtype=np.float64)  # 512 KiB: wrapped, not copied
    x = client.scatter(a)
    r = x.result()
    assert np.array_equal(r, a) and not np.shares_memory(r, a)
    r[0] = -1.0  # received data is the client's own, writable copy
    assert a[0] == 0.0
    r = client.submit(lambda m: m * 2, x).result()
    assert r.flags.writeable and np.array_equal(r, a * 2)
