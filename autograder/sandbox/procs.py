"""Grader-side process helpers: the workers' clean environment, memory polling, kills, exit reasons.

Imports only the standard library (``batch`` uses it without torch).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER_PY = os.path.join(HERE, "worker.py")


def clean_env(home: str) -> dict:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "KMP_DUPLICATE_LIB_OK": "TRUE",
    }
    if sys.platform == "darwin":
        env["PATH"] = "/usr/bin:/bin:/usr/sbin:/sbin"
    return env


def rss_bytes(pid: int) -> int:
    try:
        if sys.platform.startswith("linux"):
            with open(f"/proc/{pid}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True, timeout=2)
        return int(out.stdout.strip() or 0) * 1024
    except (OSError, ValueError, subprocess.SubprocessError):
        return 0


def exit_reason(code) -> str:
    if code is None:
        return "it stopped responding"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        extra = {"SIGKILL": " (killed: out of memory?)", "SIGSEGV": " (a crash in native code)",
                 "SIGXCPU": " (CPU time limit)"}.get(name, "")
        return f"killed by {name}{extra}"
    return f"exited with status {code} (sys.exit or os._exit in your code?)"


def kill_group(proc) -> None:
    """SIGKILL ``proc``'s process group and ``proc``, then wait for it (at most 5 s)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass
    try:
        proc.kill()
    except OSError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _status(pid: int) -> dict:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("PPid", "NSpid"):
                    out[k] = v.split()
    except OSError:
        pass
    return out


def host_pid(ns_pid: int, ancestor: int) -> int | None:
    """The pid, as this process sees it, of the process ``ns_pid`` of a PID namespace whose
    processes descend from ``ancestor`` (bwrap).  Linux only; None when not found."""
    queue, seen = [ancestor], set()
    while queue:  # breadth-first over /proc/PID/task/*/children (a handful of processes)
        pid = queue.pop(0)
        if pid in seen:
            continue
        seen.add(pid)
        ns = _status(pid).get("NSpid", [])
        if pid != ancestor and len(ns) >= 2 and ns[-1] == str(ns_pid):
            return pid
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{pid}/task/{t}/children") as f:
                    queue += [int(c) for c in f.read().split()]
            except (OSError, ValueError):
                pass
    for entry in os.listdir("/proc"):  # no children files (an old kernel): scan every process
        if not entry.isdigit():
            continue
        st = _status(int(entry))
        ns = st.get("NSpid", [])
        if len(ns) >= 2 and ns[-1] == str(ns_pid):
            p, hops = int(entry), 0
            while p > 1 and hops < 8:
                p = int((_status(p).get("PPid") or ["0"])[0])
                hops += 1
                if p == ancestor:
                    return int(entry)
    return None
