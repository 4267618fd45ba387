"""Grader side of the worker: start it, send calls, enforce limits, restart it after a failure.

A :class:`Worker` owns one worker process for one exercise file.  The worker runs in its own
session and process group so that a timeout or the end of grading kills the worker and anything
it managed to start; the worker itself dies with its parent (see ``worker_isolation.py``).

Where the worker runs (``Limits.sandbox`` / ``AUTOGRADER_SANDBOX``, see ``bwrap.py``):

* ``bwrap`` (``auto`` picks it where bubblewrap works): in a bubblewrap sandbox (own mount, PID,
  network and IPC namespaces) that holds the Python runtime read-only, a read-only copy of the
  student's files and a private ``/tmp``, never this repository.  Nothing started inside
  outlives the sandbox.
* ``process``: a plain process with the in-process isolation only (audit hook, import blocker,
  rlimits); see ``autograder/README.md`` for what that does not hold.

How it is started (``Limits.worker`` / ``AUTOGRADER_WORKER``):

* ``fork`` (``auto`` picks it on Linux): forked by a zygote (``zygote.py``) that imported torch
  once (a few milliseconds instead of ~2.5 s of Python + torch start).  Under bwrap the zygote is
  one student's, sandboxed with that student's files.
* ``spawn``: ``python -I -B worker.py CONFIG`` per worker (other platforms, or the zygote failed).

Each call has a wall-clock timeout; on Linux the address space is capped inside the worker
(``RLIMIT_AS``); on every platform the grader also polls the worker's resident memory and kills
it above the cap (that is the only memory cap on macOS).  After a crash, a timeout or a kill the
next call starts a fresh worker: one bad test costs only that test.
"""
from __future__ import annotations

import atexit
import json
import os
import secrets
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field

from . import bwrap, cgroup
from .procs import WORKER_PY, clean_env, exit_reason, host_pid, kill_group, rss_bytes
from ..spec import Exercise
from .zygote import (ZYGOTE_FD_ENV, ForkedProcess, Zygote, ZygoteError, _note_zygote_failure,  # noqa: F401
                     stop_zygote, zygote)

# Old private names, kept for the checks and tests that used them.
_exit_reason, _kill_group, _rss_bytes = exit_reason, kill_group, rss_bytes


class _LazyProtocol:
    """``protocol`` (numpy + torch) imported on first use: ``batch`` uses this module without torch."""

    def __getattr__(self, name):
        from . import protocol

        return getattr(protocol, name)


P = _LazyProtocol()

_LIVE: "weakref.WeakSet[Worker]" = weakref.WeakSet()


@dataclass
class Limits:
    call_timeout: float = 10.0     # seconds per call
    start_timeout: float = 60.0    # seconds to start python, import torch and the submission
    mem_bytes: int = 3 * 1024 ** 3  # address space (Linux) / resident set (polled, all platforms)
    output_bytes: int = 1024 * 1024  # what the student's code may print per worker; also each file's cap
    disk_bytes: int = 64 * 1024 ** 2  # the files of one worker's folder in all, without bwrap (its tmpfs is 512 MiB)
    rss_bytes: int = 2 * 1024 ** 3
    group_pids: int = cgroup.PIDS_MAX       # processes + threads of one student's workers, together
    group_mem_bytes: int = cgroup.MEM_BYTES  # memory of one student's workers, together (cgroup only)
    worker: str = "auto"           # "fork" (from a zygote), "spawn" (a new interpreter), "auto"
    sandbox: str = "auto"          # "bwrap", "off" (in-process isolation only), "auto" (bwrap if it works)

    @classmethod
    def from_env(cls, timeout: float | None = None) -> "Limits":
        lim = cls()
        if os.environ.get("AUTOGRADER_CALL_TIMEOUT"):
            lim.call_timeout = float(os.environ["AUTOGRADER_CALL_TIMEOUT"])
        if os.environ.get("AUTOGRADER_WORKER"):
            lim.worker = os.environ["AUTOGRADER_WORKER"].strip().lower()
        if os.environ.get("AUTOGRADER_STUDENT_PIDS"):
            lim.group_pids = int(os.environ["AUTOGRADER_STUDENT_PIDS"])
        if os.environ.get("AUTOGRADER_STUDENT_MEM"):
            lim.group_mem_bytes = int(float(os.environ["AUTOGRADER_STUDENT_MEM"]) * 1024 ** 3)
        if os.environ.get("AUTOGRADER_WORKER_DISK"):
            lim.disk_bytes = int(float(os.environ["AUTOGRADER_WORKER_DISK"]) * 1024 ** 2)
        if os.environ.get("AUTOGRADER_SANDBOX"):
            lim.sandbox = bwrap.requested(os.environ["AUTOGRADER_SANDBOX"])
        if timeout:
            lim.call_timeout = float(timeout)
        return lim

    def worker_mode(self) -> str:
        """``fork`` or ``spawn``: what :class:`Worker` will try first."""
        can_fork = hasattr(os, "fork") and hasattr(socket, "send_fds") and sys.platform != "win32"
        if self.worker == "spawn" or not can_fork:
            return "spawn"
        if self.worker == "fork":
            return "fork"
        if self.worker != "auto":
            raise ValueError(f"AUTOGRADER_WORKER must be fork, spawn or auto (got {self.worker!r})")
        # macOS: forking after torch/numpy loaded Accelerate/libdispatch is not fork-safe; spawn there.
        return "fork" if sys.platform.startswith("linux") else "spawn"

    def sandbox_mode(self) -> str:
        """``bwrap`` or ``process`` (raises ``bwrap.SandboxUnavailable`` if bwrap is required and broken)."""
        return bwrap.mode(self.sandbox)


class WorkerFailure(Exception):
    """The call did not produce a value: ``kind`` says why (for the report)."""

    def __init__(self, kind: str, message: str, reply: dict | None = None):
        super().__init__(message)
        self.kind, self.message, self.reply = kind, message, reply or {}


@dataclass
class Reply:
    value: object
    raw: dict
    stdout: str = ""
    events: list = field(default_factory=list)
    grads: list | None = None         # d out / d each requires_grad tensor of the call's args, in order
    param_grads: dict | None = None   # parameter name -> its gradient (a method call with params)


# ----------------------------------------------------------------------------- what a reply may hold
#: A reply is whatever the worker's process wrote on its reply descriptor, and student code runs in
#: that process: it can rebind the worker's helpers or write a reply of its own.  So nothing in a
#: reply is trusted: it is read within size and depth bounds (``protocol.loads_reply``), every field
#: of the envelope is checked and cleaned here, gradients are checked against the request (one per
#: leaf, of the leaf's shape), values by the checks' comparisons; anything else is the student's
#: failure on that check ("the worker's reply was malformed"), never a grader error.
STATUSES = frozenset({"ready", "ok", "output_cap", "disk", "memory", "exit", "forbidden", "notimpl", "raised"})


class BadReply(Exception):
    """A reply that is not what an honest worker sends."""


def _text(v, limit: int) -> str:
    return v[:limit] if isinstance(v, str) else ""


def _texts(v, n: int, limit: int) -> list[str]:
    return [x[:limit] for x in v[:n] if isinstance(x, str)] if isinstance(v, list) else []


def clean_reply(reply) -> dict:
    """The envelope of a reply, every field of the type the grader reads, strings truncated.

    ``value``, ``grads`` and ``param_grads`` stay raw (decoded by the caller, which knows what the
    call must return); a missing or unknown ``status`` raises :class:`BadReply`."""
    if not isinstance(reply, dict):
        raise BadReply(f"a reply that is a JSON {type(reply).__name__}, not an object")
    status = reply.get("status")
    if status not in STATUSES:
        raise BadReply(f"unknown status {str(status)[:40]!r}")
    out = {"status": status, "nonce": _text(reply.get("nonce"), 64), "stdout": _text(reply.get("stdout"), 8000),
           "events": _texts(reply.get("events"), 50, 500), "forbidden": _texts(reply.get("forbidden"), 50, 200),
           "msg": _text(reply.get("msg"), 2000)}
    if isinstance(reply.get("pid"), int) and not isinstance(reply.get("pid"), bool):
        out["pid"] = reply["pid"]
    if reply.get("disk") == "tmpfs":
        out["disk"] = "tmpfs"
    el = reply.get("elapsed")
    if isinstance(el, (int, float)) and not isinstance(el, bool):
        out["elapsed"] = float(el)
    if "rng_touched" in reply:
        out["rng_touched"] = _texts(reply.get("rng_touched"), 4, 20)
    if reply.get("grad_error") is not None:
        out["grad_error"] = _text(reply.get("grad_error"), 1000) or "the gradient could not be computed"
    exc = reply.get("exc")
    if isinstance(exc, dict):
        frames = []
        for fr in exc.get("frames")[:5] if isinstance(exc.get("frames"), list) else []:
            if isinstance(fr, dict):
                line = fr.get("line")
                frames.append({"file": _text(fr.get("file"), 200), "func": _text(fr.get("func"), 200),
                               "code": _text(fr.get("code"), 200),
                               "line": line if isinstance(line, int) and not isinstance(line, bool) else 0})
        out["exc"] = {"type": _text(exc.get("type"), 100) or "an exception", "bases": _texts(exc.get("bases"), 20, 100),
                      "msg": _text(exc.get("msg"), 2000), "frames": frames}
    elif status in ("raised", "notimpl", "memory"):
        out["exc"] = {"type": "an exception", "bases": [], "msg": "", "frames": []}
    for k in ("value", "grads", "param_grads"):
        if k in reply:
            out[k] = reply[k]
    return out


def _grad_leaves(wired, out: list) -> list:
    """The shapes of the tensors a request sends with ``requires_grad``, in the worker's order
    (``worker._leaves``: lists, tuples and dict values, depth first)."""
    if isinstance(wired, list):
        for v in wired:
            _grad_leaves(v, out)
    elif isinstance(wired, dict):
        tag = wired.get("__t")
        if tag == "tensor":
            if wired.get("rg"):
                out.append(tuple(wired["shape"]))
        elif tag == "tuple":
            _grad_leaves(wired["items"], out)
        elif tag is None:
            for v in wired.values():
                _grad_leaves(v, out)
    return out


def check_grads(req: dict, raw: dict) -> tuple[list | None, dict | None]:
    """The reply's gradients, checked against the request: one per leaf tensor of the arguments
    (``None`` or a floating tensor of that leaf's shape), one per requested parameter."""
    if req.get("grad") is None or raw.get("grad_error"):
        return None, None  # no gradients asked for, or the student's output had none (the check says so)
    if "grads" not in raw:
        raise BadReply("no gradients, and no reason why")
    shapes = _grad_leaves(req.get("args", []), [])
    try:
        grads = P.decode(raw.get("grads"))
        pgrads = P.decode(raw.get("param_grads", {}))
    except ValueError as e:
        raise BadReply(f"its gradients could not be decoded ({e})") from None
    if type(grads) is not list or len(grads) != len(shapes):
        raise BadReply(f"{_count(grads)} gradients for the {len(shapes)} input tensors that require grad")
    for i, (g, shape) in enumerate(zip(grads, shapes)):
        if g is None:
            continue
        if type(g) is not torch_tensor_type() or not g.is_floating_point() or tuple(g.shape) != shape:
            raise BadReply(f"gradient {i} is {_what_is(g)}, not None or a floating tensor of shape {shape}")
    names = list((req.get("grad") or {}).get("params") or []) if req.get("op") == "method" else []
    if type(pgrads) is not dict or sorted(pgrads) != sorted(names):
        raise BadReply(f"parameter gradients for {sorted(pgrads) if type(pgrads) is dict else _what_is(pgrads)}, "
                       f"asked for {sorted(names)}")
    for n, g in pgrads.items():
        if g is not None and (type(g) is not torch_tensor_type() or not g.is_floating_point()):
            raise BadReply(f"the gradient of {n} is {_what_is(g)}")
    return grads, pgrads


def torch_tensor_type():
    import torch

    return torch.Tensor


def _count(v) -> str:
    return str(len(v)) if isinstance(v, (list, dict)) else f"not a list of ({type(v).__name__})"


def _what_is(v) -> str:
    if type(v) is torch_tensor_type():
        return f"a {str(v.dtype).replace('torch.', '')} tensor of shape {tuple(v.shape)}"
    return f"a {type(v).__name__}"


def check_value_shape(req: dict, value) -> None:
    """What the request fixes about the value: ``attrs`` and ``get`` replies are dicts of those names."""
    names = req.get("attrs") or (req.get("names") if req.get("op") == "get" else None)
    if names:
        if type(value) is not dict or any(n not in value for n in names):
            raise BadReply(f"a value that is {_what_is(value)}, not the fields {list(names)} the grader asked for")


# ----------------------------------------------------------------------------- one student's files
_COPIES: dict[tuple, str] = {}
_COPIES_LOCK = threading.Lock()


def copy_file_nofollow(src: str, dst: str) -> None:
    """Copy a regular file; a symbolic link (or anything else) is refused, never followed."""
    fd = os.open(src, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        import stat

        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"{src}: not a regular file")
        data = f.read()
    with open(dst, "wb") as out:
        out.write(data)


def submission_copy(source_files: dict[str, str]) -> str:
    """One read-only copy of a submission's exercise files per grading (bound at /submission)."""
    key = tuple(sorted(source_files.items()))
    with _COPIES_LOCK:
        d = _COPIES.get(key)
        if d is None or not os.path.isdir(d):
            d = tempfile.mkdtemp(prefix="ag-submission-")
            for name, path in source_files.items():
                copy_file_nofollow(path, os.path.join(d, os.path.basename(name)))
                os.chmod(os.path.join(d, os.path.basename(name)), 0o444)
            _COPIES[key] = d
        return d


def prestart(limits: Limits | None = None, source_files: dict[str, str] | None = None) -> None:
    """Start the zygote now (it imports torch while the grader collects its checks)."""
    limits = limits or Limits()
    if limits.worker_mode() != "fork":
        return
    if limits.sandbox_mode() == "bwrap":
        if source_files:
            zygote(limits.start_timeout, submission=submission_copy(source_files))
    else:
        zygote(limits.start_timeout)


# ----------------------------------------------------------------------------- one student's resources
_GROUP: dict = {}  # "group": cgroup.Group | None, "nproc": the RLIMIT_NPROC fallback, for this grading
_GROUP_LOCK = threading.Lock()


def student_group(limits: Limits) -> tuple["cgroup.Group | None", int | None]:
    """This grading's cgroup (every worker joins it before running student code), or else the
    RLIMIT_NPROC its workers set themselves (None as root without cgroups: nothing to set)."""
    with _GROUP_LOCK:
        if not _GROUP:
            g = cgroup.create(limits.group_pids, limits.group_mem_bytes) if sys.platform.startswith("linux") else None
            _GROUP.update(group=g, nproc=None if g is not None else cgroup.nproc_limit())
        return _GROUP["group"], _GROUP["nproc"]


def group_kind() -> str:
    """What limits the student's processes as a whole: ``cgroup v1``, ``cgroup v2``, ``RLIMIT_NPROC`` or ``none``."""
    g, nproc = _GROUP.get("group"), _GROUP.get("nproc")
    return g.kind if g is not None else "RLIMIT_NPROC" if nproc else "none"


def end_grading() -> None:
    """After one submission: stop a sandboxed zygote (nothing it started survives), kill what is left
    in the student's cgroup (detached children too, with or without bwrap) and drop the copies."""
    z = zygote(start=False)
    if z is not None and z.submission is not None:
        stop_zygote()
    with _GROUP_LOCK:
        g = _GROUP.get("group")
        _GROUP.clear()
    if g is not None:
        g.close()
    with _COPIES_LOCK:
        for d in _COPIES.values():
            shutil.rmtree(d, ignore_errors=True)
        _COPIES.clear()


def _given_source() -> str:
    """The text of ``sandbox/given.py``, read here (grader side) and sent only to the workers that need it."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "given.py"), encoding="utf-8") as f:
        return f.read()


# ----------------------------------------------------------------------------- one worker's disk (no bwrap)
#: Without bwrap, each file is capped by RLIMIT_FSIZE and the audit hook allows 256 files; the total is
#: bounded by the kernel where the worker could mount a tmpfs of ``disk_bytes`` over its folder (as root:
#: ``worker_isolation.private_tmpfs``, in a mount namespace of its own, gone with it), else by the
#: grader polling the folder's size (:func:`folder_bytes`) while it waits for a reply.
def folder_bytes(path: str, limit_entries: int = 4096) -> int:
    """The bytes the files under ``path`` occupy (allocated blocks; links not followed).  A folder with
    more than ``limit_entries`` entries counts as unbounded (the audit hook allows 256)."""
    total, seen, stack = 0, 0, [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    seen += 1
                    if seen > limit_entries:
                        return 1 << 62
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += getattr(st, "st_blocks", 0) * 512 or st.st_size
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
        except OSError:
            continue
    return total


class Worker:
    """One exercise file in its own process; restartable."""

    def __init__(self, exercise: Exercise, source_files: dict[str, str], limits: Limits | None = None):
        """``source_files``: file name -> path of the submission's exercise files to copy in."""
        self.exercise = exercise
        self.source_files = source_files
        self.limits = limits or Limits()
        self.proc: subprocess.Popen | ForkedProcess | None = None
        self.mode = ""  # how the current process was started: "fork" or "spawn"
        self.sandbox = ""  # where it runs: "bwrap" or "process"
        self.rss_pid = 0   # whose memory the grader polls (the worker itself, also under bwrap)
        self.dir: str | None = None
        self.tmpfs = False  # the worker's folder is its own tmpfs of limits.disk_bytes (process mode, as root)
        self.load_error: WorkerFailure | None = None
        self.names: list[str] = []
        self.restarts = 0
        self._next_handle = 1
        _LIVE.add(self)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.stop()
        self.sandbox = self.limits.sandbox_mode()
        config = {
            "exercise": self.exercise.id,
            "module": self.exercise.module,
            "forbidden_calls": list(self.exercise.forbidden_calls),
            "blocked_modules": list(self.exercise.forbidden_modules),
            "mem_bytes": self.limits.mem_bytes,
            "fsize_bytes": self.limits.output_bytes,
            "disk_bytes": self.limits.disk_bytes,
            "tmpfs": os.environ.get("AUTOGRADER_WORKER_TMPFS", "").strip().lower() not in ("off", "0", "no"),
        }
        group, nproc = student_group(self.limits)
        if nproc:
            config["nproc"] = nproc
        submission = None
        if self.sandbox == "bwrap":  # the worker copies /submission into its own folder in its private /tmp
            submission = submission_copy(self.source_files)
            config.update(source=bwrap.SUBMISSION_DIR, files=sorted(os.path.basename(n) for n in self.source_files))
        else:
            self.dir = tempfile.mkdtemp(prefix=f"ag-{self.exercise.id}-")
            for name, path in self.source_files.items():
                copy_file_nofollow(path, os.path.join(self.dir, os.path.basename(name)))
            config["sandbox"] = self.dir
        if self.limits.worker_mode() == "fork":
            zyg = zygote(self.limits.start_timeout, submission=submission)
            if zyg is not None:
                try:
                    self.proc, self.mode = zyg.spawn(config), "fork"
                except ZygoteError:
                    _note_zygote_failure()
        if self.proc is None:
            if submission is not None:
                argv = bwrap.command([sys.executable, "-I", "-B", bwrap.worker_script(), json.dumps(config)], submission)
                env, cwd = clean_env("/tmp"), submission
            else:
                argv = [sys.executable, "-I", "-B", WORKER_PY, json.dumps(config)]
                env, cwd = clean_env(self.dir), self.dir
            self.proc, self.mode = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                cwd=cwd, env=env, start_new_session=True, close_fds=True,
            ), "spawn"
        self.rss_pid = self.proc.pid
        ready = self._receive(self.limits.start_timeout, what="starting Python and torch")
        if self.mode == "spawn" and submission is not None and isinstance(ready.get("pid"), int):
            self.rss_pid = host_pid(ready["pid"], self.proc.pid) or self.proc.pid  # the worker, not bwrap
        if ready.get("status") != "ready":
            raise WorkerFailure("crash", "the worker did not start")
        self.tmpfs = ready.get("disk") == "tmpfs"  # sent before any student code ran: its own tmpfs, or polled
        if group is not None and not group.attach(self.rss_pid):  # before the student's import
            self._kill()
            raise WorkerFailure("crash", "the worker could not join the student's process group")
        self.load_error = None
        try:
            reply = self._request({"op": "load"}, self.limits.call_timeout)  # the student's import: a call
            self.names = list(reply.value.get("names", [])) if isinstance(reply.value, dict) else []
            given = self.exercise.extra.get("given")
            if given:  # graded on its own: the course's earlier pieces, not the submission's (sandbox/given.py)
                self._request({"op": "given", "source": _given_source(), "names": list(given)},
                              self.limits.call_timeout)
        except WorkerFailure as f:
            self.load_error = f

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            self.proc = None
        self.tmpfs = False
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    close = stop

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ensure(self) -> None:
        if not self.alive():
            if self.proc is not None:
                self.restarts += 1
            self.start()
        if self.load_error is not None:
            raise self.load_error

    # ---------------------------------------------------------------- calls
    def new_handle(self) -> int:
        h = self._next_handle
        self._next_handle += 1
        return h

    def request(self, req: dict, timeout: float | None = None) -> Reply:
        self.ensure()
        return self._request(req, timeout or self.limits.call_timeout)

    def _request(self, req: dict, timeout: float) -> Reply:
        nonce = secrets.token_hex(8)
        req = dict(req, nonce=nonce)
        try:
            self.proc.stdin.write(P.pack(req))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            reply = None
            self._fail_dead("the worker died before the call")
        reply = self._receive(timeout, what=_describe_req(req))
        if reply.get("nonce") != nonce:
            self._kill()
            raise WorkerFailure("protocol", "the worker's reply was garbled (did the code write to a file descriptor?)")
        stdout = reply["stdout"]
        status = reply["status"]
        events = reply["events"]
        if status == "ok":
            try:
                value = P.decode(reply.get("value"))
                check_value_shape(req, value)
                grads, pgrads = check_grads(req, reply)
            except (ValueError, BadReply) as e:
                self._kill()  # whatever wrote it may write again: a fresh worker for the next call
                raise WorkerFailure("protocol", f"the worker's reply was malformed: {e} (did your code change "
                                                "the worker, or write to its reply channel?)", reply) from None
            return Reply(value, reply, stdout, events, grads, pgrads)
        if status == "output_cap":
            self._kill()
            raise WorkerFailure("output", f"your code printed more than {self.limits.output_bytes // 1024} KiB "
                                          "(output cap); remove the prints inside loops", reply)
        if status == "disk":
            if reply.get("msg") == "file":
                why = f"a file larger than {self.limits.output_bytes / 1024 ** 2:g} MiB (each file's cap)"
            else:
                why = f"more than {self.limits.disk_bytes / 1024 ** 2:g} MiB of files in all (the folder's cap)"
            raise WorkerFailure("disk", f"your code wrote {why}: graded code should not need large files", reply)
        if status == "memory":
            self._kill()
            raise WorkerFailure("memory", "your code ran out of memory (MemoryError under the "
                                          f"{self.limits.mem_bytes / 1024 ** 3:.1f} GiB cap)", reply)
        if status == "exit":
            raise WorkerFailure("exit", f"your code called {reply.get('msg')}: return a value instead", reply)
        if status == "forbidden":
            raise WorkerFailure("forbidden", reply.get("msg", "forbidden call"), reply)
        if status == "notimpl":
            raise WorkerFailure("notimpl", reply.get("msg") or "not implemented yet", reply)
        if status == "raised":
            raise WorkerFailure("raised", "raised", reply)
        self._kill()
        raise WorkerFailure("protocol", f"unexpected reply status {status!r}", reply)

    def _fail_dead(self, what: str):
        code = self.proc.poll() if self.proc else None
        self._kill()
        raise WorkerFailure("crash", f"{what}: {exit_reason(code)}")

    def _receive(self, timeout: float, what: str) -> dict:
        """One reply, read within ``protocol.MAX_REPLY`` bytes and its depth and size bounds, its
        envelope checked (:func:`clean_reply`); anything else kills the worker: a ``protocol`` failure."""
        deadline = time.monotonic() + timeout
        header = self._read(8, deadline, what, timeout)
        try:
            n = P.unpack_header(header, P.MAX_REPLY)
        except ValueError as e:
            self._kill()
            raise WorkerFailure("protocol", f"the worker's reply was refused: {e} (did your code write to "
                                            "its reply channel?)") from None
        body = self._read(n, deadline + 5.0, what, timeout)
        try:
            return clean_reply(P.loads_reply(body))
        except (ValueError, BadReply) as e:
            self._kill()
            raise WorkerFailure("protocol", f"the worker's reply was malformed: {e} (did your code change the "
                                            "worker, or write to its reply channel?)") from None

    def _read(self, n: int, deadline: float, what: str, timeout: float) -> bytes:
        fd = self.proc.stdout.fileno()
        chunks, got = [], 0
        next_mem_check = next_disk_check = 0.0
        while got < n:
            now = time.monotonic()
            if now >= deadline:
                self._kill()
                raise WorkerFailure("timeout", f"timed out after {timeout:g} s while {what} "
                                               "(an infinite loop, or far too slow?)")
            if now >= next_mem_check:
                next_mem_check = now + 0.2
                if rss_bytes(self.rss_pid) > self.limits.rss_bytes:
                    self._kill()
                    raise WorkerFailure("memory", f"your code used more than {self.limits.rss_bytes / 1024 ** 3:.1f} "
                                                  f"GiB of memory while {what}")
            if self.dir and not self.tmpfs and now >= next_disk_check:  # no tmpfs: the folder's total, polled
                next_disk_check = now + 0.5
                if folder_bytes(self.dir) > self.limits.disk_bytes:
                    self._kill()
                    raise WorkerFailure("disk", f"your code wrote more than {self.limits.disk_bytes / 1024 ** 2:g} MiB "
                                                f"of files in all (the folder's cap) while {what}")
            r, _, _ = select.select([fd], [], [], min(0.2, max(0.0, deadline - now)))
            if not r:
                continue
            b = os.read(fd, min(n - got, 1 << 20))
            if not b:
                code = None
                try:
                    code = self.proc.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    pass
                self._kill()
                raise WorkerFailure("crash", f"the worker stopped while {what}: {exit_reason(code)}")
            chunks.append(b)
            got += len(b)
        return b"".join(chunks)

    def _kill(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)


def _describe_req(req: dict) -> str:
    op = req.get("op")
    if op == "call":
        return f"running {req.get('fn')}()"
    if op == "load":
        return "importing your file"
    if op == "method":
        return f"running .{req.get('name')}()"
    if op == "new":
        return f"constructing {req.get('cls')}"
    return f"running {op}"


@atexit.register
def _stop_all() -> None:
    for w in list(_LIVE):
        try:
            w.stop()
        except Exception:  # noqa: BLE001
            pass
    try:
        stop_zygote()
        end_grading()
    except Exception:  # noqa: BLE001
        pass
