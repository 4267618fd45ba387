"""The grader's side of the zygote (fork server; its own side is ``worker_zygote.py``).

One :class:`Zygote` per grading process, started like a spawned worker (``python -I -B worker.py
--zygote``, clean environment, own session), never by forking the grader.  Under bwrap it runs in
a sandbox of its own with one student's files, and is never shared between students; without
bwrap, ``batch`` shares one zygote between its grading processes (:meth:`Zygote.attach`).  The
grader hands each child its two pipe ends over a private socket (``SCM_RIGHTS``); the zygote
reaps a worker only when the grader asks (:class:`ForkedProcess` stands in for ``Popen``), so
pids stay reserved until then.
"""
from __future__ import annotations

import json
import os
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

from .procs import WORKER_PY, clean_env, exit_reason, host_pid, kill_group


def _zpack(obj) -> bytes:
    """A zygote message: the protocol's framing (8-byte big-endian length, then UTF-8 JSON)."""
    body = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    return struct.pack(">Q", len(body)) + body


class ZygoteError(Exception):
    """The zygote could not fork a worker (the caller falls back to spawning one)."""


class Zygote:
    """``python -I -B worker.py --zygote``: imports torch once, forks one worker per request.

    It is started exactly like a spawned worker (clean environment, empty temporary cwd, own
    session, no descriptors but its control socket), never by forking the grader, so it holds
    nothing of the grader's (no ``reference``, no expected values).  It dies with the grader.
    """

    def __init__(self, start_timeout: float = 60.0, sock: socket.socket | None = None,
                 submission: str | None = None):
        """Start a zygote, or (``sock``) talk to one that another process started and attached.

        ``submission``: a folder with one student's exercise files: the zygote then runs in a bwrap
        sandbox of its own (``bwrap.py``) where that folder is ``/submission`` (read-only); its
        workers can reach nothing else of this machine's, and none outlives the zygote.
        """
        self.lock = threading.Lock()
        self.submission = submission
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
            if submission is not None:
                from . import bwrap

                argv = bwrap.command([sys.executable, "-I", "-B", bwrap.worker_script(), "--zygote"], submission)
                env = clean_env("/tmp")
            else:
                argv, env = [sys.executable, "-I", "-B", WORKER_PY, "--zygote"], clean_env(self.dir)
            self.proc = subprocess.Popen(
                argv, stdin=child.fileno(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                cwd=self.dir, env=env, start_new_session=True, close_fds=True,
            )
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
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
                    raise ZygoteError(f"the zygote exited ({exit_reason(self.proc.returncode)})")
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
                    kill_group(self.proc)
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
        pid = reply["pid"]
        if self.submission is not None:  # a pid in the sandbox's PID namespace: find ours for signals and RSS
            host = host_pid(pid, self.proc.pid)
            if host is None:
                os.close(req_w)
                os.close(resp_r)
                self.call({"op": "wait", "pid": pid, "timeout": 0})
                raise ZygoteError("could not find the sandboxed worker's process")
        else:
            host = pid
        return ForkedProcess(self, host, os.fdopen(req_w, "wb"), os.fdopen(resp_r, "rb", buffering=0), zpid=pid)

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
            kill_group(self.proc)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


class ForkedProcess:
    """A worker forked by the zygote, with the parts of ``subprocess.Popen`` that :class:`Worker` uses."""

    def __init__(self, zygote: Zygote, pid: int, stdin, stdout, zpid: int | None = None):
        """``pid``: as this process sees it (signals, memory); ``zpid``: as the zygote sees it."""
        self.zygote, self.pid, self.stdin, self.stdout = zygote, pid, stdin, stdout
        self.zpid = pid if zpid is None else zpid
        self.returncode = None

    def _gone(self) -> int:
        # The zygote died, so this worker lost its parent: PR_SET_PDEATHSIG (Linux) or its
        # watcher thread ends it, and init reaps it.  No signal here: the pid may be reused.
        return -signal.SIGKILL

    def poll(self):
        if self.returncode is None:
            try:
                code = self.zygote.wait(self.zpid, 0.0)
            except ZygoteError:
                code = self._gone()
            if code is not None:
                self.returncode = code
        return self.returncode

    def wait(self, timeout: float | None = None):
        if self.returncode is None:
            try:
                code = self.zygote.wait(self.zpid, 3600.0 if timeout is None else timeout)
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


def zygote(start_timeout: float = 60.0, start: bool = True, submission: str | None = None) -> Zygote | None:
    """This process's zygote (started on first use, restarted if it died); None after two failures.

    ``submission`` (bwrap mode): the zygote must be that student's own, sandboxed with that folder;
    a zygote of another submission (or an unsandboxed one) is stopped first: never shared.
    """
    global _ZYGOTE
    start_timeout = getattr(start_timeout, "start_timeout", start_timeout)  # a Limits is accepted too
    with _ZYGOTE_LOCK:
        if _ZYGOTE is not None and (not _ZYGOTE.alive() or (start and _ZYGOTE.submission != submission)):
            _ZYGOTE.stop()
            _ZYGOTE = None
        if _ZYGOTE is None and start and _ZYGOTE_FAILURES < 2:
            inherited = os.environ.pop(ZYGOTE_FD_ENV, "") if submission is None else ""
            try:
                if inherited.isdigit():  # a batch's zygote, attached for this process
                    _ZYGOTE = Zygote(sock=socket.socket(fileno=int(inherited)))
                else:
                    _ZYGOTE = Zygote(start_timeout, submission=submission)
            except OSError:
                _note_zygote_failure()
        return _ZYGOTE


def _note_zygote_failure() -> None:
    global _ZYGOTE_FAILURES
    _ZYGOTE_FAILURES += 1


def stop_zygote() -> None:
    global _ZYGOTE
    with _ZYGOTE_LOCK:
        if _ZYGOTE is not None:
            _ZYGOTE.stop()
            _ZYGOTE = None
