"""The zygote (fork server): imports torch once, forks one worker per request.

Started by the grader as ``python -I -B worker.py --zygote`` (in a bwrap sandbox of its own, one
per student, or as a plain process), with a clean environment in an empty folder.  It imports
torch, numpy and the worker harness, runs **no** torch operation (so no OpenMP / intra-op thread
pool exists) and no student code, then waits on a private socket.  For each exercise (and after
every crash or timeout) the grader sends it a config and two pipe ends; the zygote checks that it
is still single-threaded and forks; the child applies the worker's isolation and never returns to
this loop.  It holds no grader data and reaps its children only when the grader asks, so a
worker's pid stays reserved until the grader has seen its exit status.

Loaded by file path (``_agw_zygote``) from ``worker.py``; imports only the standard library.
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
import time

try:
    import resource
except ImportError:  # pragma: no cover - not POSIX
    resource = None

ISO = sys.modules["_agw_isolation"]  # loaded by worker.py before this module

def thread_count() -> int:
    """OS threads of this process (Linux: all of them, native ones included)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _zygote_recv(ctl, P):
    import socket

    fds: list[int] = []
    head = b""
    while len(head) < 8:
        data, got, _flags, _addr = socket.recv_fds(ctl, 8 - len(head), 4)
        fds += got
        if not data:
            return None, fds
        head += data
    n = P.unpack_header(head)
    body = b""
    while len(body) < n:
        chunk = ctl.recv(min(n - len(body), 1 << 16))
        if not chunk:
            return None, fds
        body += chunk
    return json.loads(body.decode("utf-8")), fds


def _reap(pid: int):
    """The exit code of a child that ended (Popen's convention), or None while it runs."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return -signal.SIGKILL
    return os.waitstatus_to_exitcode(status) if done == pid else None


def zygote_main(W) -> None:
    """Fork server: see the module docstring.  Runs no torch operation and no student code.

    ``W`` is the worker module (``worker.py``, run as ``__main__``): its ``P`` (protocol),
    ``import_libraries`` and ``become_worker``.  Its first connection (stdin) is the owner's; the
    owner may ``attach`` more connections (one per ``grade-one`` process of a batch, in process mode).  Each connection may ``spawn`` workers and
    ``wait`` for its own; when a connection closes, its remaining workers are killed.
    """
    import select
    import socket

    parent = os.getppid()
    me = os.getpid()
    ctl_fd = os.dup(0)
    _null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(_null, fd)
    os.close(_null)
    owner = socket.socket(fileno=ctl_fd)
    if resource is not None:
        ISO.set_limit(resource.RLIMIT_CORE, 0)
    ISO.die_with_parent(parent)
    W.import_libraries()
    P = W.P
    for name in ("math", "collections", "dataclasses", "functools", "itertools", "heapq", "typing", "re",
                 "bisect", "string", "copy", "numbers", "abc", "enum"):
        importlib.import_module(name)  # what exercise files import anyway: stdlib only
    conns: dict = {owner: set()}       # connection -> pids of the workers it spawned
    pending: list = []                 # (connection, pid, deadline) of "wait" requests

    def reply(conn, obj):
        try:
            conn.sendall(P.pack(obj))
        except OSError:
            pass

    def drop(conn):
        for pid in conns.pop(conn, set()):
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            deadline = time.monotonic() + 5.0
            while _reap(pid) is None and time.monotonic() < deadline:
                time.sleep(0.005)
        pending[:] = [w for w in pending if w[0] is not conn]
        conn.close()
        if conn is owner:
            os._exit(0)

    reply(owner, {"status": "ready", "pid": me, "threads": thread_count()})
    while True:
        if os.getppid() != parent:
            os._exit(70)
        r, _, _ = select.select(list(conns), [], [], 0.005 if pending else 0.5)
        for conn in r:
            try:
                msg, fds = _zygote_recv(conn, P)
            except (OSError, ValueError):
                msg, fds = None, []
            if msg is None or not isinstance(msg, dict):  # the grader closed its end (or garbage)
                for fd in fds:
                    os.close(fd)
                drop(conn)
                continue
            op = msg.get("op")
            if op == "spawn" and len(fds) == 2 and thread_count() == 1:
                pid = os.fork()
                if pid == 0:  # the worker: never comes back into this loop
                    try:
                        for c in conns:
                            c.close()
                        W.become_worker(msg["config"], fds[0], fds[1], me)
                    finally:
                        os._exit(70)
                for fd in fds:
                    os.close(fd)
                conns[conn].add(pid)
                reply(conn, {"pid": pid})
                continue
            keep = fds[:1] if op == "attach" and conn is owner else []
            for fd in fds[len(keep):]:
                os.close(fd)
            if op == "spawn":
                n = thread_count()
                reply(conn, {"error": f"refusing to fork: {n} threads" if n != 1 else "expected two descriptors"})
            elif keep:
                conns[socket.socket(fileno=fds[0])] = set()
                reply(conn, {"ok": True})
            elif op == "wait" and int(msg.get("pid", 0)) in conns[conn]:
                pending.append((conn, int(msg["pid"]), time.monotonic() + max(0.0, float(msg.get("timeout", 0)))))
            elif op == "info":  # for the self-tests: what this process holds
                reply(conn, {"threads": thread_count(), "pid": me, "connections": len(conns),
                             "modules": sorted(m for m in sys.modules if m.split(".")[0] in
                                               ("autograder", "reference", "solutions", "pytest", "_pytest"))})
            else:
                reply(conn, {"error": f"refused: {op!r}"})
        still = []
        for conn, pid, deadline in pending:
            if conn not in conns:
                continue
            code = _reap(pid)
            if code is not None:
                conns[conn].discard(pid)
                reply(conn, {"code": code})
            elif time.monotonic() >= deadline:
                reply(conn, {"code": None})
            else:
                still.append((conn, pid, deadline))
        pending[:] = still
