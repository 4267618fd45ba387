"""Grader side of the worker: start it, send calls, enforce limits, restart it after a failure.

A :class:`Worker` owns one worker process for one exercise file.  It is started in its own
process group (``start_new_session``) so that a timeout or the end of grading kills the worker
and anything it managed to start; the worker itself dies with the grader (see ``worker.py``).
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
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass, field

from . import protocol as P
from .spec import Exercise

WORKER_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")

_LIVE: "weakref.WeakSet[Worker]" = weakref.WeakSet()


@dataclass
class Limits:
    call_timeout: float = 10.0     # seconds per call
    start_timeout: float = 60.0    # seconds to start python, import torch and the submission
    mem_bytes: int = 3 * 1024 ** 3  # address space (Linux) / resident set (polled, all platforms)
    output_bytes: int = 1024 * 1024  # what the student's code may print per worker
    rss_bytes: int = 2 * 1024 ** 3

    @classmethod
    def from_env(cls) -> "Limits":
        lim = cls()
        if os.environ.get("AUTOGRADER_CALL_TIMEOUT"):
            lim.call_timeout = float(os.environ["AUTOGRADER_CALL_TIMEOUT"])
        return lim


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

    @property
    def grads(self):
        return P.decode(self.raw["grads"]) if "grads" in self.raw else None

    @property
    def param_grads(self):
        return P.decode(self.raw["param_grads"]) if "param_grads" in self.raw else None


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


def _rss_bytes(pid: int) -> int:
    try:
        if sys.platform.startswith("linux"):
            with open(f"/proc/{pid}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True, timeout=2)
        return int(out.stdout.strip() or 0) * 1024
    except (OSError, ValueError, subprocess.SubprocessError):
        return 0


class Worker:
    """One exercise file in its own process; restartable."""

    def __init__(self, exercise: Exercise, source_files: dict[str, str], limits: Limits | None = None):
        """``source_files``: file name -> path of the submission's exercise files to copy in."""
        self.exercise = exercise
        self.source_files = source_files
        self.limits = limits or Limits()
        self.proc: subprocess.Popen | None = None
        self.dir: str | None = None
        self.load_error: WorkerFailure | None = None
        self.names: list[str] = []
        self.restarts = 0
        self._log_offset = 0
        self._next_handle = 1
        _LIVE.add(self)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.stop()
        self.dir = tempfile.mkdtemp(prefix=f"ag-{self.exercise.id}-")
        for name, path in self.source_files.items():
            shutil.copyfile(path, os.path.join(self.dir, name))
        config = {
            "sandbox": self.dir,
            "exercise": self.exercise.id,
            "module": self.exercise.module,
            "forbidden_calls": list(self.exercise.forbidden_calls),
            "blocked_modules": list(self.exercise.forbidden_modules),
            "mem_bytes": self.limits.mem_bytes,
            "fsize_bytes": self.limits.output_bytes,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-B", WORKER_PY, json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            cwd=self.dir, env=clean_env(self.dir), start_new_session=True, close_fds=True,
        )
        self._log_offset = 0
        ready = self._receive(self.limits.start_timeout, what="starting Python and torch")
        if ready.get("status") != "ready":
            raise WorkerFailure("crash", "the worker did not start")
        self.load_error = None
        try:
            reply = self._request({"op": "load"}, self.limits.start_timeout)
            self.names = list(reply.value.get("names", [])) if isinstance(reply.value, dict) else []
        except WorkerFailure as f:
            self.load_error = f

    def stop(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc)
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            self.proc = None
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
        stdout = self._read_log()
        status = reply.get("status")
        events = list(reply.get("events") or [])
        if status == "ok":
            try:
                value = P.decode(reply.get("value"))
            except (ValueError, KeyError, TypeError) as e:
                raise WorkerFailure("protocol", f"the reply could not be decoded: {e}") from None
            return Reply(value, reply, stdout, events)
        if status == "output_cap":
            self._kill()
            raise WorkerFailure("output", f"your code printed more than {self.limits.output_bytes // 1024} KiB "
                                          "(output cap); remove the prints inside loops", reply)
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
        raise WorkerFailure("protocol", f"unexpected reply status {status!r}", reply)

    def _fail_dead(self, what: str):
        code = self.proc.poll() if self.proc else None
        self._kill()
        raise WorkerFailure("crash", f"{what}: {_exit_reason(code)}")

    def _receive(self, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        header = self._read(8, deadline, what)
        n = P.unpack_header(header)
        body = self._read(n, deadline + 5.0, what)
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            self._kill()
            raise WorkerFailure("protocol", "the worker's reply was garbled") from None

    def _read(self, n: int, deadline: float, what: str) -> bytes:
        fd = self.proc.stdout.fileno()
        chunks, got = [], 0
        next_mem_check = 0.0
        while got < n:
            now = time.monotonic()
            if now >= deadline:
                self._kill()
                raise WorkerFailure("timeout", f"timed out after {self.limits.call_timeout:g} s while {what} "
                                               "(an infinite loop, or far too slow?)")
            if now >= next_mem_check:
                next_mem_check = now + 0.2
                if _rss_bytes(self.proc.pid) > self.limits.rss_bytes:
                    self._kill()
                    raise WorkerFailure("memory", f"your code used more than {self.limits.rss_bytes / 1024 ** 3:.1f} "
                                                  f"GiB of memory while {what}")
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
                raise WorkerFailure("crash", f"the worker stopped while {what}: {_exit_reason(code)}")
            chunks.append(b)
            got += len(b)
        return b"".join(chunks)

    def _kill(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc)

    def _read_log(self, limit: int = 4000) -> str:
        if not self.dir:
            return ""
        path = os.path.join(self.dir, ".output.log")
        try:
            with open(path, "rb") as f:
                f.seek(self._log_offset)
                data = f.read(limit + 1)
                self._log_offset = f.seek(0, os.SEEK_END)
        except OSError:
            return ""
        text = data[:limit].decode("utf-8", errors="replace")
        if len(data) > limit:
            text += "\n[... output truncated]"
        return text


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


def _exit_reason(code) -> str:
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


def _kill_group(proc: subprocess.Popen) -> None:
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


@atexit.register
def _stop_all() -> None:
    for w in list(_LIVE):
        try:
            w.stop()
        except Exception:  # noqa: BLE001
            pass
