"""One student's processes, threads and memory as a whole: a cgroup per grading, or RLIMIT_NPROC.

Per-process limits (``RLIMIT_AS``, the grader's RSS polling) do not bound what a submission holds
in total: threads are not processes, and children started past the audit hook (``fork_exec``) each
get their own address-space limit.  So every worker of one student's grading is put, right after it
starts and before any student code runs (the ``load`` request), into a control group of that
grading's own, which caps

* ``pids``: processes and threads together (:data:`PIDS_MAX`), so 3,000 threads or a fork loop stop
  at the cap instead of taking the host's PIDs;
* ``memory``: everything its processes hold, the private ``/tmp`` of the bwrap sandbox included
  (a tmpfs is charged to the cgroup that wrote it), at :data:`MEM_BYTES` by default.

Children inherit the group, detached ones included, and :meth:`Group.close` kills whatever is
left in it when the grading ends (without bwrap too).  Which kind is used:

* cgroup v2 where the grader's own cgroup is writable with the ``pids`` and ``memory``
  controllers delegated (root, or ``systemd-run --user --scope -p Delegate=yes``);
* cgroup v1 (``/sys/fs/cgroup/pids``, ``/sys/fs/cgroup/memory``) where those hierarchies are
  writable (root on a v1 or hybrid host, as in the course container);
* otherwise :func:`nproc_limit`: ``RLIMIT_NPROC`` in the worker (processes and threads of the
  grading user, counted by the kernel across the host), where the grader is not root (the kernel
  does not apply RLIMIT_NPROC to root).  Memory is then only per process.

``AUTOGRADER_CGROUP=off`` turns the groups off (the rlimit fallback still applies).
"""
from __future__ import annotations

import itertools
import os
import signal
import time

PIDS_MAX = 64                   # processes + threads of one student's workers at a time
MEM_BYTES = 4 * 1024 ** 3       # all of one student's processes (and its tmpfs)
NPROC_HEADROOM = 64             # RLIMIT_NPROC fallback: the user's tasks at the start, plus this

ROOT = "/sys/fs/cgroup"
_COUNTER = itertools.count()


def _own_path(controller: str | None) -> str | None:
    """This process's cgroup path in the v2 hierarchy (``controller`` None) or v1's ``controller``."""
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                if controller is None and ctrls == "":
                    return path
                if controller is not None and controller in ctrls.split(","):
                    return path
    except OSError:
        return None
    return None


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


class Group:
    """One grading's cgroup(s): ``dirs`` are the folders to write pids to (one per v1 controller)."""

    def __init__(self, kind: str, dirs: list[str]):
        self.kind, self.dirs = kind, dirs

    def attach(self, pid: int) -> bool:
        ok = True
        for d in self.dirs:
            try:
                _write(os.path.join(d, "cgroup.procs"), str(int(pid)))
            except OSError:
                ok = False
        return ok

    def pids(self) -> set[int]:
        out: set[int] = set()
        for d in self.dirs:
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    out |= {int(x) for x in f.read().split()}
            except OSError:
                pass
        return out

    def stat(self) -> dict:
        """``pids``, ``pids_refused`` (forks the cap refused), ``memory_peak``, ``oom_kills`` where known."""
        out = {}
        for d in self.dirs:
            for name, key in (("pids.current", "pids"), ("pids.peak", "pids_peak"),
                              ("memory.max_usage_in_bytes", "memory_peak"), ("memory.peak", "memory_peak")):
                try:
                    with open(os.path.join(d, name)) as f:
                        out[key] = int(f.read().split()[0])
                except (OSError, ValueError, IndexError):
                    pass
            for name in ("pids.events",):
                try:
                    with open(os.path.join(d, name)) as f:
                        out["pids_refused"] = int(f.read().split()[-1])
                except (OSError, ValueError, IndexError):
                    pass
        return out

    def close(self) -> None:
        """Kill whatever is left in the group (detached children included), then remove it.

        On v2, ``cgroup.kill`` (Linux 5.14+) kills every process in the group at once, so a fork loop
        cannot outrun the kill; then (and on v1, or an older kernel) every pid still listed is killed."""
        if self.kind == "cgroup v2":
            for d in self.dirs:
                try:
                    _write(os.path.join(d, "cgroup.kill"), "1")
                except OSError:
                    pass
        deadline = time.monotonic() + 5.0
        while True:
            left = self.pids()
            if not left or time.monotonic() > deadline:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.05)
        for d in self.dirs:
            try:
                os.rmdir(d)
            except OSError:
                pass


def _v2(name: str, pids_max: int, mem_bytes: int) -> Group | None:
    own = _own_path(None)
    base = os.path.join(ROOT, (own or "/").lstrip("/"))
    try:
        with open(os.path.join(base, "cgroup.controllers")) as f:
            available = set(f.read().split())
    except OSError:
        return None
    if not {"pids", "memory"} <= available:
        return None
    try:
        with open(os.path.join(base, "cgroup.subtree_control")) as f:
            enabled = set(f.read().split())
        if not {"pids", "memory"} <= enabled:
            _write(os.path.join(base, "cgroup.subtree_control"), "+pids +memory")
        d = os.path.join(base, name)
        os.mkdir(d)
    except OSError:
        return None
    try:
        _write(os.path.join(d, "pids.max"), str(pids_max))
        _write(os.path.join(d, "memory.max"), str(mem_bytes))
        try:
            _write(os.path.join(d, "memory.swap.max"), "0")
        except OSError:
            pass
    except OSError:
        os.rmdir(d)
        return None
    return Group("cgroup v2", [d])


def _v1(name: str, pids_max: int, mem_bytes: int) -> Group | None:
    dirs = []
    try:
        for ctrl, settings in (("pids", {"pids.max": pids_max}), ("memory", {"memory.limit_in_bytes": mem_bytes})):
            own = _own_path(ctrl)
            hier = os.path.join(ROOT, ctrl)
            if own is None or not os.path.isdir(hier) or os.path.isfile(os.path.join(hier, "cgroup.controllers")):
                raise OSError(f"no v1 {ctrl} hierarchy")
            d = os.path.join(hier, own.lstrip("/"), name)
            os.mkdir(d)
            dirs.append(d)
            for k, v in settings.items():
                _write(os.path.join(d, k), str(v))
            if ctrl == "memory":
                try:
                    _write(os.path.join(d, "memory.memsw.limit_in_bytes"), str(mem_bytes))
                except OSError:
                    pass
    except OSError:
        for d in dirs:
            try:
                os.rmdir(d)
            except OSError:
                pass
        return None
    return Group("cgroup v1", dirs)


def create(pids_max: int = PIDS_MAX, mem_bytes: int = MEM_BYTES) -> Group | None:
    """A new group for one student's grading, or None where this process cannot make one."""
    if os.environ.get("AUTOGRADER_CGROUP", "").strip().lower() in ("off", "0", "no") or \
            not os.path.isdir(ROOT) or not hasattr(os, "getuid"):
        return None
    name = f"autograder-{os.getpid()}-{next(_COUNTER)}"
    return _v2(name, pids_max, mem_bytes) or _v1(name, pids_max, mem_bytes)


def user_tasks(uid: int) -> int:
    """Tasks (threads) the kernel counts against ``uid``'s RLIMIT_NPROC, as this process sees /proc."""
    n = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                uid_ok = threads = None
                for line in f:
                    if line.startswith("Uid:"):
                        uid_ok = int(line.split()[1]) == uid
                    elif line.startswith("Threads:"):
                        threads = int(line.split()[1])
                if uid_ok and threads:
                    n += threads
        except (OSError, ValueError, IndexError):
            continue
    return n


def nproc_limit() -> int | None:
    """The fallback: an RLIMIT_NPROC for the worker (None as root, where the kernel ignores it)."""
    if not hasattr(os, "getuid") or os.getuid() == 0 or not os.path.isdir("/proc"):
        return None
    return user_tasks(os.getuid()) + NPROC_HEADROOM
