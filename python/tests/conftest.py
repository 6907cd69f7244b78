import os
import pathlib

import pytest

import dtask

ROOT = pathlib.Path(__file__).resolve().parents[2]


def mytasks_lib():
    """examples/mytasks.c built by the C build (scripts/test.sh builds it first)."""
    p = os.environ.get("DTASK_PRELOAD_LIB") or str(ROOT / "build" / "libmytasks.so")
    if not os.path.exists(p):
        pytest.fail(f"{p} is missing: build the C project first (cmake --build build)")
    return p


@pytest.fixture(scope="session")
def cluster():
    with dtask.LocalCluster(n_workers=2, threads_per_worker=2, preload=mytasks_lib(),
                            dashboard_address=None) as c:
        yield c


@pytest.fixture()
def client(cluster):
    with dtask.Client(cluster) as c:
        yield c
