"""Grader side of the worker: start it, send calls, enforce limits, restart it after a failure.

A :class:`Worker` owns one worker process for one exercise file.  The worker runs in its own
session and process group so that a timeout or the end of grading kills the worker and anything
it managed to start; the worker itself dies with its parent (see ``worker.py``).

Two ways to start a worker (``Limits.worker`` / ``AUTOGRADER_WORKER``):

* ``fork`` (``auto`` picks it on Linux): one :class:`Zygote` per grading process, started like a
  spawned worker (``python -I -B worker.py --zygote``, clean environment, own session), imports
  torch, numpy and the worker harness once, runs no torch operation, and forks a fresh worker for
  each exercise and each restart (a few milliseconds instead of ~2.5 s of Python + torch start).
  The grader hands the child its two pipe ends over a private socket (``SCM_RIGHTS``); the child
  applies exactly the isolation of a spawned worker.  The zygote reaps a worker only when the
  grader asks (:class:`ForkedProcess` stands in for ``Popen``), so pids stay reserved until then.
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
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field

from .spec import Exercise


class _LazyProtocol:
    """``protocol`` (numpy + torch) imported on first use: ``batch`` uses this module without torch."""

    def __getattr__(self, name):
        from . import protocol

        return getattr(protocol, name)


P = _LazyProtocol()


def _zpack(obj) -> bytes:
    """A zygote message: the protocol's framing (8-byte big-endian length, then UTF-8 JSON)."""
    body = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    return struct.pack(">Q", len(body)) + body

WORKER_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")

_LIVE: "weakref.WeakSet[Worker]" = weakref.WeakSet()


@dataclass
class Limits:
    call_timeout: float = 10.0     # seconds per call
    start_timeout: float = 60.0    # seconds to start python, import torch and the submission
    mem_bytes: int = 3 * 1024 ** 3  # address space (Linux) / resident set (polled, all platforms)
    output_bytes: int = 1024 * 1024  # what the student's code may print per worker
    rss_bytes: int = 2 * 1024 ** 3
    worker: str = "auto"           # "fork" (from a zygote), "spawn" (a new interpreter), "auto"

    @classmethod
    def from_env(cls) -> "Limits":
        lim = cls()
        if os.environ.get("AUTOGRADER_CALL_TIMEOUT"):
            lim.call_timeout = float(os.environ["AUTOGRADER_CALL_TIMEOUT"])
        if os.environ.get("AUTOGRADER_WORKER"):
            lim.worker = os.environ["AUTOGRADER_WORKER"].strip().lower()
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


# ----------------------------------------------------------------------------- the zygote (fork server)
class ZygoteError(Exception):
    """The zygote could not fork a worker (the caller falls back to spawning one)."""


class Zygote:
    """``python -I -B worker.py --zygote``: imports torch once, forks one worker per request.

    It is started exactly like a spawned worker (clean environment, empty temporary cwd, own
    session, no descriptors but its control socket), never by forking the grader, so it holds
    nothing of the grader's (no ``reference``, no expected values).  It dies with the grader.
    """

    def __init__(self, start_timeout: float = 60.0, sock: socket.socket | None = None):
        """Start a zygote, or (``sock``) talk to one that another process started and attached."""
        self.lock = threading.Lock()
        self.ready = sock is not None
        self.broken = False
        self.deadline = time.monotonic() + start_timeout
        self.info: dict = {}
        self.proc = None
        self.dir = None
        if sock is not None:
            self.sock = sock
            return
        self.dir = tempfile.mkdtemp(prefix="ag-zygote-")
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-B", WORKER_PY, "--zygote"],
                stdin=child.fileno(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                cwd=self.dir, env=clean_env(self.dir), start_new_session=True, close_fds=True,
            )
        finally:
            child.close()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else self.info.get("pid")

    def alive(self) -> bool:
        return not self.broken and (self.proc is None or self.proc.poll() is None)

    def attach(self) -> socket.socket:
        """A new connection to this zygote, for another grading process (``batch`` -> ``grade-one``).

        Workers spawned through it are that process's; the zygote kills them when it closes.
        """
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            reply = self.call({"op": "attach"}, fds=(theirs.fileno(),))
        finally:
            theirs.close()
        if not reply.get("ok"):
            mine.close()
            raise ZygoteError(str(reply.get("error") or "attach refused"))
        return mine

    # ------------------------------------------------------------ wire
    def _recv(self, deadline: float) -> dict:
        buf = b""
        need = 8
        n = None
        while len(buf) < need:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ZygoteError("the zygote did not answer in time")
            r, _, _ = select.select([self.sock], [], [], min(left, 1.0))
            if not r:
                if self.proc is not None and self.proc.poll() is not None:
                    raise ZygoteError(f"the zygote exited ({_exit_reason(self.proc.returncode)})")
                continue
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ZygoteError("the zygote closed its socket")
            buf += chunk
            if n is None and len(buf) >= 8:
                (n,) = struct.unpack(">Q", buf[:8])
                if n > 1 << 20:
                    raise ZygoteError("garbled reply from the zygote")
                need = 8 + n
        try:
            return json.loads(buf[8:need].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ZygoteError("garbled reply from the zygote") from None

    def _wait_ready(self) -> None:
        if self.ready:
            return
        msg = self._recv(self.deadline)
        if msg.get("status") != "ready":
            raise ZygoteError("the zygote did not start")
        self.info = msg
        self.ready = True

    def call(self, msg: dict, fds: tuple = (), timeout: float = 30.0) -> dict:
        with self.lock:
            if self.broken:
                raise ZygoteError("the zygote is gone")
            try:
                self._wait_ready()
                data = _zpack(msg)
                if fds:
                    socket.send_fds(self.sock, [data], list(fds))
                else:
                    self.sock.sendall(data)
                return self._recv(time.monotonic() + timeout)
            except (OSError, ValueError, ZygoteError) as e:
                self.broken = True
                if self.proc is not None:
                    _kill_group(self.proc)
                raise ZygoteError(str(e)) from None

    # ------------------------------------------------------------ workers
    def spawn(self, config: dict) -> "ForkedProcess":
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        try:
            reply = self.call({"op": "spawn", "config": config}, fds=(req_r, resp_w))
        except ZygoteError:
            os.close(req_w)
            os.close(resp_r)
            raise
        finally:  # the child holds these now; the grader must not, or it would never see EOF
            os.close(req_r)
            os.close(resp_w)
        if not isinstance(reply.get("pid"), int):
            os.close(req_w)
            os.close(resp_r)
            raise ZygoteError(str(reply.get("error") or "the zygote did not fork"))
        return ForkedProcess(self, reply["pid"], os.fdopen(req_w, "wb"), os.fdopen(resp_r, "rb", buffering=0))

    def wait(self, pid: int, timeout: float):
        reply = self.call({"op": "wait", "pid": pid, "timeout": timeout}, timeout=timeout + 10.0)
        if "error" in reply:
            raise ZygoteError(reply["error"])
        return reply.get("code")

    def stop(self) -> None:
        self.broken = True
        try:
            self.sock.close()
        except OSError:
            pass
        if self.proc is not None:
            _kill_group(self.proc)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


class ForkedProcess:
    """A worker forked by the zygote, with the parts of ``subprocess.Popen`` that :class:`Worker` uses."""

    def __init__(self, zygote: Zygote, pid: int, stdin, stdout):
        self.zygote, self.pid, self.stdin, self.stdout = zygote, pid, stdin, stdout
        self.returncode = None

    def _gone(self) -> int:
        # The zygote died, so this worker lost its parent: PR_SET_PDEATHSIG (Linux) or its
        # watcher thread ends it, and init reaps it.  No signal here: the pid may be reused.
        return -signal.SIGKILL

    def poll(self):
        if self.returncode is None:
            try:
                code = self.zygote.wait(self.pid, 0.0)
            except ZygoteError:
                code = self._gone()
            if code is not None:
                self.returncode = code
        return self.returncode

    def wait(self, timeout: float | None = None):
        if self.returncode is None:
            try:
                code = self.zygote.wait(self.pid, 3600.0 if timeout is None else timeout)
            except ZygoteError:
                code = self._gone()
            if code is None:
                raise subprocess.TimeoutExpired("worker", timeout)
            self.returncode = code
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None and not self.zygote.broken:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass


_ZYGOTE: Zygote | None = None
ZYGOTE_FD_ENV = "AUTOGRADER_ZYGOTE_FD"  # set by batch for its grade-one processes
_ZYGOTE_FAILURES = 0
_ZYGOTE_LOCK = threading.Lock()


def zygote(limits: Limits | None = None, start: bool = True) -> Zygote | None:
    """This process's zygote (started on first use, restarted if it died); None after two failures."""
    global _ZYGOTE
    with _ZYGOTE_LOCK:
        if _ZYGOTE is not None and not _ZYGOTE.alive():
            _ZYGOTE.stop()
            _ZYGOTE = None
        if _ZYGOTE is None and start and _ZYGOTE_FAILURES < 2:
            inherited = os.environ.pop(ZYGOTE_FD_ENV, "")
            try:
                if inherited.isdigit():  # a batch's zygote, attached for this process
                    _ZYGOTE = Zygote(sock=socket.socket(fileno=int(inherited)))
                else:
                    _ZYGOTE = Zygote((limits or Limits()).start_timeout)
            except OSError:
                _note_zygote_failure()
        return _ZYGOTE


def _note_zygote_failure() -> None:
    global _ZYGOTE_FAILURES
    _ZYGOTE_FAILURES += 1


def prestart(limits: Limits | None = None) -> None:
    """Start the zygote now (it imports torch while the grader collects its checks)."""
    limits = limits or Limits()
    if limits.worker_mode() == "fork":
        zygote(limits)


def stop_zygote() -> None:
    global _ZYGOTE
    with _ZYGOTE_LOCK:
        if _ZYGOTE is not None:
            _ZYGOTE.stop()
            _ZYGOTE = None


class Worker:
    """One exercise file in its own process; restartable."""

    def __init__(self, exercise: Exercise, source_files: dict[str, str], limits: Limits | None = None):
        """``source_files``: file name -> path of the submission's exercise files to copy in."""
        self.exercise = exercise
        self.source_files = source_files
        self.limits = limits or Limits()
        self.proc: subprocess.Popen | ForkedProcess | None = None
        self.mode = ""  # how the current process was started: "fork" or "spawn"
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
        if self.limits.worker_mode() == "fork":
            zyg = zygote(self.limits)
            if zyg is not None:
                try:
                    self.proc, self.mode = zyg.spawn(config), "fork"
                except ZygoteError:
                    _note_zygote_failure()
        if self.proc is None:
            self.proc, self.mode = subprocess.Popen(
                [sys.executable, "-I", "-B", WORKER_PY, json.dumps(config)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                cwd=self.dir, env=clean_env(self.dir), start_new_session=True, close_fds=True,
            ), "spawn"
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


def _kill_group(proc) -> None:
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
    try:
        stop_zygote()
    except Exception:  # noqa: BLE001
        pass
