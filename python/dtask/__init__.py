"""dtask: a fast dynamic distributed task scheduler with dask.distributed's API.

    from dtask import Client, LocalCluster      # instead of dask.distributed

    cluster = LocalCluster(n_workers=4)
    client = Client(cluster)
    future = client.submit(lambda x: x + 1, 10)
    future.result()                              # 11
"""

import os as _os
import sys as _sys

# C task libraries a worker preloads resolve dtask's C API from this module:
# load it with its symbols global.
_flags = _sys.getdlopenflags()
_sys.setdlopenflags(_flags | _os.RTLD_GLOBAL)
try:
    from . import _core  # noqa: E402
finally:
    _sys.setdlopenflags(_flags)

from . import serialize  # noqa: E402,F401  (sets the C hooks)
from .client import (  # noqa: E402
    ALL_COMPLETED, FIRST_COMPLETED, CancelledError, Client, DtaskError, Future, FutureLost,
    KilledWorker, as_completed, cfunc, default_client, fire_and_forget, futures_of, get_client,
    progress, wait)
from .cluster import LocalCluster, Status  # noqa: E402
from .worker_client import (  # noqa: E402
    Reschedule, get_worker, rejoin, secede, worker_client)
from .actor import Actor, ActorFuture  # noqa: E402
from .primitives import Event, Lock, MultiLock, Queue, Semaphore, Variable  # noqa: E402
from .client_state import get_task_stream, log_event  # noqa: E402
from .plugins import (  # noqa: E402
    NannyPlugin, SchedulerPlugin, UploadDirectory, UploadFile, WorkerPlugin)
from .client_admin import Security  # noqa: E402
from .aio_completed import as_completed, wait  # noqa: E402,F811  (with async forms)
from .cluster import Adaptive  # noqa: E402
from .compat import (  # noqa: E402
    CompatibleExecutor, CondaInstall, Environ, InstallPlugin, Nanny, NotAvailableInDtask,
    PipInstall, Scheduler, SpecCluster, SSHCluster, SubprocessCluster, TimeoutError, Worker,
    connect, get_task_metadata, local_client, rpc, sync)
from . import widgets  # noqa: E402
from .actor import ActorFuture as BaseActorFuture  # noqa: E402

try:  # as distributed: its config is dask's
    import dask  # noqa: E402
    from dask.config import config  # noqa: E402
except ImportError:  # dask is optional
    dask = None
    config = {}
from .diagnostics import MemorySampler, performance_report, print, span, warn  # noqa: E402,A004
from . import protocol  # noqa: E402,F401  (dask_serialize / dask_deserialize)
from .jobqueue import PBSCluster, SLURMCluster  # noqa: E402  (dask-jobqueue's)

__version__ = "0.1.0"
__all__ = [
    "Client", "LocalCluster", "Future", "wait", "as_completed", "progress", "cfunc",
    "KilledWorker", "CancelledError", "FutureLost", "DtaskError", "FIRST_COMPLETED",
    "ALL_COMPLETED", "fire_and_forget", "default_client", "get_client", "futures_of",
    "Status", "worker_client", "secede", "rejoin", "get_worker", "Reschedule",
    "Actor", "ActorFuture", "Variable", "Queue", "Lock", "MultiLock", "Event", "Semaphore",
    "get_task_stream", "log_event",
    "Actor", "ActorFuture",
    "WorkerPlugin", "NannyPlugin", "SchedulerPlugin", "UploadFile", "UploadDirectory", "Security",
    "Adaptive", "BaseActorFuture", "CompatibleExecutor", "CondaInstall", "Environ",
    "InstallPlugin", "Nanny", "PipInstall", "SSHCluster", "Scheduler", "SpecCluster",
    "SubprocessCluster", "TimeoutError", "Worker", "config", "connect", "dask",
    "get_task_metadata", "local_client", "rpc", "sync", "widgets", "NotAvailableInDtask",
    "performance_report", "MemorySampler", "span", "print", "warn",
    "PBSCluster", "SLURMCluster",
]
