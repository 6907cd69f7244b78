"""The worker side of a batch job: ``python -m dtask worker ADDRESS ...``
with dask-worker's options that dtask's C worker does not take itself.

- ``--nworkers N`` (dask-jobqueue's ``processes``): N workers named NAME-0 ..
  NAME-(N-1), each its own process.
- ``--nanny`` (dask's default; dtask's worker has its nanny unless
  ``--no-nanny``): accepted.
- ``--interface IF``: the workers listen on that interface's address.
- ``--lifetime D``, ``--lifetime-stagger S``, ``--lifetime-restart`` (as
  Dask's worker) are the C worker's own (src/worker/lifetime.c): after D +- S
  the worker retires gracefully -- it takes no new task, finishes the ones
  it runs, then asks the scheduler to retire it (RETIRE_ME), which moves
  the results it alone holds to other workers before closing it -- and,
  with --lifetime-restart, its nanny starts a fresh one.  Until another
  worker can take its results (a replacement job not yet connected) the
  scheduler keeps it and it asks again every second.  Here the durations
  are only read with Dask's parser (any of its spellings) and passed on in
  seconds; alone, ``python -m dtask worker --lifetime ...`` needs no
  supervisor.
- Connect-back diagnostics: before starting the worker, and while it cannot
  connect, a line on standard error (the job's output file) says which
  scheduler address it tried, from which interface and local address, and
  why it failed; ``--death-timeout`` bounds the wait.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

_OURS = {"--nworkers": 1, "--nprocs": 1, "--nanny": 0, "--interface": 1, "--lifetime": 1,
         "--lifetime-stagger": 1, "--lifetime-restart": 0}
# the C worker takes --nanny (LocalCluster's) and the lifetime options itself
_NEEDS = set(_OURS) - {"--nanny", "--lifetime", "--lifetime-stagger", "--lifetime-restart"}
ENV = "DTASK_JOBQUEUE_WORKER"  # set for the jobs by PBSCluster/SLURMCluster's submission


def wants_wrapper(args):
    return os.environ.get(ENV) == "1" or any(a.split("=", 1)[0] in _NEEDS for a in args)


def _split(args):
    ours, rest = {}, []
    i = 0
    while i < len(args):
        a = args[i]
        key, eq, val = a.partition("=")
        if key in _OURS:
            if _OURS[key] and not eq:
                val = args[i + 1] if i + 1 < len(args) else ""
                i += 1
            ours[key] = val if _OURS[key] else True
        else:
            rest.append(a)
        i += 1
    return ours, rest


def _opt(rest, name):
    for i, a in enumerate(rest):
        if a == name and i + 1 < len(rest):
            return rest[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def _set_opt(rest, name, value):
    out, i = [], 0
    while i < len(rest):
        if rest[i] == name:
            i += 2
            continue
        if rest[i].startswith(name + "="):
            i += 1
            continue
        out.append(rest[i])
        i += 1
    return out + [name, value]


def _seconds(s):
    import dask.utils

    return dask.utils.parse_timedelta(s, default="seconds")


def _log(msg):
    print(f"dtask worker: {msg}", file=sys.stderr, flush=True)


def _host_port(address):
    a = address.split("://", 1)[-1]
    host, _, port = a.rpartition(":")
    return host.strip("[]"), int(port)


def check_connect(address, interface=None, death_timeout=None):
    """Try the scheduler's address until it answers (True) or death_timeout
    passes (False), saying each time what was tried and why it failed."""
    try:
        host, port = _host_port(address)
    except ValueError:
        _log(f"cannot connect: scheduler address {address!r} is not host:port")
        return False
    src = None
    if interface:
        from .jobqueue_script import _interface_address

        try:
            src = _interface_address(interface)
        except ValueError as e:
            _log(f"cannot connect to {address}: {e}")
            return False
    deadline = None if death_timeout is None else time.monotonic() + death_timeout
    delay, first = 0.5, True
    while True:
        s = None
        try:
            s = socket.create_connection((host, port), timeout=5,
                                         source_address=(src, 0) if src else None)
            if not first:
                _log(f"connected to the scheduler at {host}:{port}")
            return True
        except OSError as e:
            local = src or _route_source(host) or "?"
            via = f"interface {interface} ({local})" if interface else \
                f"local address {local} (interface {_iface_of(local)})"
            why = e.strerror or str(e) or type(e).__name__
            if isinstance(e, socket.timeout):
                why = "no answer within 5 s (a firewall, or the wrong network?)"
            _log(f"cannot connect to the scheduler at {host}:{port} from {via}: {why}; "
                 + ("retrying" if deadline is None or time.monotonic() < deadline
                    else "giving up (--death-timeout)"))
            first = False
        finally:
            if s is not None:
                s.close()
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 5)


def _route_source(host):
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect((host, 9))
        ip = s.getsockname()[0]
        s.close()
        return ip
    except OSError:
        return None


def _iface_of(ip):
    try:
        from .jobqueue_script import _interface_address

        for _, name in socket.if_nameindex():
            try:
                if _interface_address(name) == ip:
                    return name
            except ValueError:
                continue
    except Exception:
        pass
    return "?"


class _One:
    """One worker process (its lifetime is the C worker's own)."""

    def __init__(self, address, args, name, lifetime, stagger, restart):
        self.address, self.args, self.name = address, args, name
        self.lifetime, self.stagger, self.restart = lifetime, stagger, restart
        self.proc = None
        self.stopping = False

    def argv(self):
        a = [sys.executable, "-m", "dtask", "worker", self.address] + self.args
        if self.name is not None:
            a = _set_opt(a, "--name", self.name)
        if self.lifetime is not None:
            a += ["--lifetime", f"{self.lifetime:.3f}s"]
            if self.stagger:
                a += ["--lifetime-stagger", f"{self.stagger:.3f}s"]
            if self.restart:
                a += ["--lifetime-restart"]
        return a

    def run(self):
        if self.stopping:
            return 0
        self.proc = subprocess.Popen(self.argv())
        return self.proc.wait()

    def stop(self, sig):
        self.stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)


def main(address, args):
    os.environ.pop(ENV, None)  # the workers started here are the C ones
    ours, rest = _split(args)
    interface = ours.get("--interface")
    dt = _opt(rest, "--death-timeout")
    death_timeout = _seconds(dt) if dt is not None else None
    if interface:
        from .jobqueue_script import _interface_address

        try:
            rest = _set_opt(rest, "--listen-host", _interface_address(interface))
        except ValueError as e:
            _log(str(e))
            return 1
    if address and not check_connect(address, interface, death_timeout):
        return 1
    n = int(ours.get("--nworkers") or ours.get("--nprocs") or 1)
    name = _opt(rest, "--name")
    lifetime = _seconds(ours["--lifetime"]) if "--lifetime" in ours else None
    stagger = _seconds(ours.get("--lifetime-stagger") or 0)
    restart = bool(ours.get("--lifetime-restart"))
    if n > 1:
        names = [f"{name}-{i}" if name else None for i in range(n)]
    else:
        names = [name]
    ones = [_One(address, rest, nm, lifetime, stagger, restart) for nm in names]

    def on_sig(sig, frame):
        for o in ones:
            o.stop(sig)

    signal.signal(signal.SIGTERM, on_sig)
    signal.signal(signal.SIGINT, on_sig)
    rcs = [0] * len(ones)

    def run(i):
        rcs[i] = ones[i].run()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(ones))]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.5)
    return max(rcs)
