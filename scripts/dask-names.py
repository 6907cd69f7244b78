#!/usr/bin/env python3
"""dask-names.py -- writes docs/python.md's table of dask.distributed's names
(every name of ``distributed.__all__``, and every public attribute of
``distributed.Client``, ``Future`` and ``LocalCluster``) with dtask's status:
"as Dask", "differs: ..." or "refused: ...".  The notes are kept here; the
names come from the installed distributed, so a name Dask adds shows up as
missing (python/tests/test_compat.py fails until it is listed).

usage: .venv/bin/python scripts/dask-names.py [--check]
"""
import os
import sys

import distributed

import dtask

DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "python.md")
BEGIN, END = "<!-- dask-names:begin -->\n", "<!-- dask-names:end -->"

C = "the dtask scheduler and workers are C processes"
NOTES = {
    # distributed.__all__
    "Scheduler": f"refused: {C}; start them with LocalCluster or the `dtask` command",
    "Worker": f"refused: {C}",
    "Nanny": f"refused: {C} (dtask's nanny is a C parent process)",
    "SpecCluster": "refused: no worker-class specs for C workers",
    "SSHCluster": "refused: no SSH launcher (start `dtask worker` on each host)",
    "rpc": "refused: dtask speaks its own protocol, not Dask's comm layer",
    "connect": "refused: dtask speaks its own protocol, not Dask's comm layer",
    "SchedulerPlugin": "refused: Python cannot run inside the C scheduler",
    "CompatibleExecutor": "as Dask (raises: moved to Client.get_executor)",
    "SubprocessCluster": "differs: a LocalCluster (dtask's workers are always processes)",
    "NannyPlugin": "differs: setup/teardown run in the worker process",
    "WorkerPlugin": "differs: transition() sees a Python task's ready/executing/memory|error only",
    "Environ": "differs: set in the worker process, for the tasks that follow",
    "Security": "differs: TLS files and dtask's shared secret (auth_file); no temporary()",
    "TimeoutError": "as Dask (the builtin)",
    "widgets": "differs: an empty module (dtask's reprs are plain text)",
    "get_task_metadata": "differs: state from the task stream (finished tasks only)",
    "span": "differs: see docs/python.md, Diagnostics",
    "performance_report": "differs: a standalone HTML page of its own layout",
    "Adaptive": "differs: LocalCluster.adapt's loop (PBS/Slurm: the C job-queue adapt)",
    "LocalCluster": "differs: processes=False gives one in-process worker (n_workers > 1 refused: its state is process-wide); no Bokeh dashboard (dtask's own)",
    "Actor": "differs: calls go straight to the worker; futures as call arguments refused",
    "get_worker": "differs: a small object (address, name, nthreads, scheduler, key)",
    "Reschedule": "differs: the task is placed again by the usual rules",
    "Lock": "differs: held by the client connection, not by the Lock object",
    "Semaphore": "differs: no lease_timeout (leases go with their client's connection)",
    "fire_and_forget": "as Dask (a holder on the scheduler)",
    # Client
    "Client.run": "differs: nanny=True refused; one run at a time per worker",
    "Client.restart": "differs: only this client's futures are cancelled",
    "Client.run_on_scheduler": "refused: Python cannot run inside the C scheduler",
    "Client.register_scheduler_plugin": "refused: Python cannot run inside the C scheduler",
    "Client.unregister_scheduler_plugin": "refused: Python cannot run inside the C scheduler",
    "Client.amm": "refused: no Active Memory Manager (use rebalance/replicate/retire_workers)",
    "Client.call_stack": "refused: workers do not sample stacks",
    "Client.profile": "refused: workers do not sample stacks",
    "Client.benchmark_hardware": "refused: see bench/ for dtask's own measurements",
    "Client.subscribe_topic": "differs: the handler runs on a background thread of its own (Dask: on the client's event loop); an async handler is not awaited",
    "Client.get_task_stream": "differs: plot=True refused (no Bokeh); plot='save' writes a standalone HTML page and gives its path",
    "Client.dump_cluster_state": "differs: dtask's own layout",
    "Client.story": "differs: from a bounded ring of recent transitions",
    "Client.rebalance": "differs: by bytes, results held by one worker only",
    "Client.scheduler_info": "as Dask (plus the scheduler's task counts)",
    "Client.loop": "differs: an asyncio loop (Dask's is tornado's IOLoop)",
    "Client.get_worker_logs": "differs: nanny=True refused",
    "Client.forward_logging": "differs: see docs/python.md, Diagnostics",
    "Client.upload_file": "differs: also a C .so, whose tasks become callable",
    "Client.normalize_collection": "as Dask",
    "Client.start": "as Dask (a dtask client is connected when made)",
    "Future.bind_client": "differs: a future cannot move to another client",
    "Future.type": "differs: fetches the result to read its type",
    "LocalCluster.from_name": "refused: no registry of clusters by name",
    "LocalCluster.start_worker": f"refused: {C}; use scale(n)",
    "LocalCluster.new_worker_spec": f"refused: {C}",
    "LocalCluster.get_logs": "differs: the daemons' in-memory log rings",
}


def rows():
    out = []
    for n in sorted(distributed.__all__):
        out.append((n, hasattr(dtask, n), NOTES.get(n, "as Dask")))
    for cls in ("Client", "Future", "LocalCluster"):
        ours = getattr(dtask, cls)
        for n in sorted(a for a in dir(getattr(distributed, cls)) if not a.startswith("_")):
            key = f"{cls}.{n}"
            out.append((key, hasattr(ours, n) or n == "name", NOTES.get(key, "as Dask")))
    return out


def table():
    lines = ["| name | in dtask |", "|---|---|"]
    for name, have, note in rows():
        lines.append(f"| `{name}` | {note if have else 'MISSING'} |")
    return "\n".join(lines) + "\n"


def main():
    s = open(DOC).read()
    i, j = s.index(BEGIN) + len(BEGIN), s.index(END)
    new = s[:i] + table() + s[j:]
    if "--check" in sys.argv:
        if new != s:
            print("docs/python.md's table of Dask names is out of date: run "
                  "scripts/dask-names.py", file=sys.stderr)
            return 1
        return 0
    open(DOC, "w").write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
