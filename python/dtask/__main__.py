"""python -m dtask worker ADDRESS [options] | python -m dtask scheduler [options]

The worker is dtask's C worker (same options as ``dtask worker``) hosting
Python: it runs Python callables sent by dtask's Python client ("py:" tasks)
beside C task functions from --preload libraries.
"""

import json
import os
import sys


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("worker", "scheduler"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    role, args = argv[0], argv[1:]
    for p in reversed(os.environ.get("DTASK_SYS_PATH", "").split(os.pathsep)):
        if p and p not in sys.path:
            sys.path.insert(1, p)
    import dtask
    from dtask import _core

    if role == "scheduler":
        return _core.scheduler_main(args)
    from . import jobqueue_worker  # dask-worker's --nworkers, --interface (batch jobs)

    if jobqueue_worker.wants_wrapper(args):
        addr = args[0] if args and not args[0].startswith("-") else None
        return jobqueue_worker.main(addr, args[1:] if addr else args)
    for lib in filter(None, os.environ.get("DTASK_PRELOAD", "").split(os.pathsep)):
        args += ["--preload", lib]
    # extra worker options from the LocalCluster that started us (Dask's
    # distributed.worker.memory.* config, read in the client's process)
    args += json.loads(os.environ.get("DTASK_WORKER_ARGS") or "[]")
    del dtask
    return _core.worker_main(args)


if __name__ == "__main__":
    sys.exit(main())
