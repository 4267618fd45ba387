"""The worker's process model: forked from a zygote (default on Linux) or spawned (the fallback).

Both modes must give the same isolation: own session and process group, the sandbox as cwd and
HOME, rlimits, one torch thread, no descriptor of the zygote or the grader, death with the
grader.  The zygote must hold nothing of the grader's and stay single-threaded (no OpenMP /
intra-op pool) so that forking it is safe.  These tests look at the processes from outside, so
they run without bwrap (``sandbox="off"``); ``test_autograder_sandbox.py`` covers the bwrap
sandbox, and the killed-grader test runs in both.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from autograder.sandbox import bwrap, host as sandbox
from autograder.sandbox import zygote as zygote_mod
from autograder.sandbox.host import Limits, Worker, WorkerFailure, Zygote
from autograder.spec import EXERCISES

ROOT = Path(__file__).resolve().parents[1]
LINUX = sys.platform.startswith("linux")
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")

PROBE = '''
import os, sys, torch

def row_conv(x, weight, lengths):
    return x

def probe():
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # an intra-op pool created now must work (none was inherited)
    total = float(torch.ones(4_000_000).sum()) + float((torch.ones(300, 300) @ torch.ones(300, 300)).sum())
    torch.set_num_threads(1)
    return {"pid": os.getpid(), "ppid": os.getppid(), "pgid": os.getpgid(0), "sid": os.getsid(0),
            "cwd": os.getcwd(), "home": os.environ.get("HOME"), "tmpdir": os.environ.get("TMPDIR"),
            "threads": before, "total": total, "path": list(sys.path),
            "grader_modules": sorted(m for m in sys.modules if m.split(".")[0] in
                                     ("autograder", "reference", "solutions", "pytest", "_pytest"))}

def die(code):
    os._exit(code)
'''


def _worker(tmp_path, mode: str) -> Worker:
    ex = EXERCISES["ex11"]
    (tmp_path / ex.filename).write_text(PROBE)
    return Worker(ex, {ex.filename: str(tmp_path / ex.filename)}, Limits(worker=mode, call_timeout=20, sandbox="off"))


def _call(w: Worker, fn: str, *args):
    return w.request({"op": "call", "fn": fn, "args": list(args), "kwargs": {}}).value


def _limits_of(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]:
        name = line[:26].strip()
        out[name] = line[26:47].strip()
    return out


@pytest.fixture(scope="module")
def own_zygote():
    sandbox.stop_zygote()  # a fresh one for this module
    yield
    sandbox.stop_zygote()


@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_worker_isolation_is_the_same_in_both_modes(tmp_path, own_zygote, mode):
    w = _worker(tmp_path, mode)
    try:
        w.ensure()
        assert w.mode == mode
        facts = _call(w, "probe")
        pid = facts["pid"]
        assert pid == w.proc.pid
        assert facts["pgid"] == pid and facts["sid"] == pid, "the worker must lead its own session/process group"
        sandbox_dir = os.path.realpath(w.dir)
        assert facts["cwd"] == sandbox_dir and facts["home"] == sandbox_dir and facts["tmpdir"] == sandbox_dir
        assert facts["path"][0] == sandbox_dir and not any(str(ROOT) == p for p in facts["path"])
        assert facts["threads"] == 1
        assert facts["total"] == 4_000_000 + 300 * 300 * 300
        assert facts["grader_modules"] == []
        if mode == "fork":
            zyg = sandbox.zygote(start=False)
            assert zyg is not None and facts["ppid"] == zyg.pid
        else:
            assert facts["ppid"] == os.getpid()
        if LINUX:
            lim = _limits_of(pid)
            assert lim["Max address space"] == str(Limits().mem_bytes)
            assert lim["Max file size"] == str(Limits().output_bytes)
            assert lim["Max core file size"] == "0"
            fds = {}
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    fds[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    pass
            assert fds[0] == "/dev/null"
            assert fds[1] == fds[2] == os.path.join(sandbox_dir, ".output.log")
            others = [v for k, v in fds.items() if k > 2 and v != fds[1]]  # the log, read back for the replies
            assert sorted(v.split(":")[0] for v in others) == ["pipe", "pipe"], fds  # no socket, no other file
            assert os.readlink(f"/proc/{pid}/cwd") == sandbox_dir
    finally:
        w.stop()


def test_zygote_holds_no_grader_code_and_no_thread_pool(own_zygote):
    zyg = sandbox.zygote(Limits(worker="fork"))
    info = zyg.call({"op": "info"})
    assert info["modules"] == []      # no autograder, reference, solutions or pytest in the zygote
    assert info["threads"] == 1       # no OpenMP / intra-op / OpenBLAS thread: fork is safe
    if LINUX:
        cmd = Path(f"/proc/{zyg.pid}/cmdline").read_bytes().split(b"\0")
        assert cmd[1:3] == [b"-I", b"-B"] and cmd[3].endswith(b"worker.py") and cmd[4] == b"--zygote"
        env = dict(kv.split("=", 1) for kv in Path(f"/proc/{zyg.pid}/environ").read_text().split("\0") if "=" in kv)
        assert set(env) == set(sandbox.clean_env("/x"))
        assert os.getsid(zyg.pid) == zyg.pid


def test_forked_worker_restarts_after_a_crash(tmp_path, own_zygote):
    w = _worker(tmp_path, "fork")
    try:
        w.ensure()
        first = w.proc.pid
        with pytest.raises(WorkerFailure) as e:
            _call(w, "die", 3)
        assert e.value.kind == "crash" and "exited with status 3" in e.value.message
        assert _call(w, "probe")["pid"] != first and w.restarts == 1 and w.mode == "fork"
        with pytest.raises(WorkerFailure) as e:
            w.request({"op": "call", "fn": "probe", "args": [], "kwargs": {}}, timeout=1e-3)
        assert e.value.kind == "timeout"
    finally:
        w.stop()


def test_falls_back_to_spawn_when_the_zygote_fails(tmp_path, own_zygote, monkeypatch):
    def broken_spawn(self, config):
        raise sandbox.ZygoteError("simulated")

    monkeypatch.setattr(sandbox.Zygote, "spawn", broken_spawn)
    monkeypatch.setattr(zygote_mod, "_ZYGOTE_FAILURES", 0)
    w = _worker(tmp_path, "fork")
    try:
        w.ensure()
        assert w.mode == "spawn"
        assert _call(w, "probe")["ppid"] == os.getpid()
    finally:
        w.stop()


def test_attached_connection_closing_kills_its_workers(tmp_path):
    owner = Zygote()
    try:
        conn = owner.attach()
        client = Zygote(sock=conn)
        cfg = {"sandbox": str(tmp_path), "exercise": "ex11", "module": "ex11_row_conv", "forbidden_calls": [],
               "blocked_modules": [], "mem_bytes": Limits().mem_bytes, "fsize_bytes": Limits().output_bytes}
        (tmp_path / "ex11_row_conv.py").write_text(PROBE)
        proc = client.spawn(cfg)
        assert proc.stdout.read(8)  # the worker's "ready" header
        assert proc.poll() is None
        with pytest.raises(sandbox.ZygoteError):
            owner.wait(proc.pid, 0)  # only the connection that spawned a worker may wait for it
        client.stop()  # like a grade-one process that died
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _exists(proc.pid):
            time.sleep(0.05)
        assert not _exists(proc.pid)
    finally:
        owner.stop()


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    if LINUX:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
        except OSError:
            return False
    return True


BWRAP_OK = bwrap.probe()[0]


@pytest.mark.parametrize("sandboxed", [False, pytest.param(True, marks=pytest.mark.skipif(
    not BWRAP_OK, reason="bwrap unavailable"))], ids=["process", "bwrap"])
@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_killed_grader_takes_its_workers_along(tmp_path, mode, sandboxed):
    ex = EXERCISES["ex11"]
    (tmp_path / ex.filename).write_text(PROBE + "\ndef spin():\n    while True:\n        pass\n")
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from autograder.sandbox import host as sandbox
        from autograder.sandbox.host import Limits, Worker
        from autograder.spec import EXERCISES
        ex = EXERCISES["ex11"]
        w = Worker(ex, {{ex.filename: {str(tmp_path / ex.filename)!r}}},
                   Limits(worker={mode!r}, sandbox={"bwrap" if sandboxed else "off"!r}))
        w.ensure()
        z = sandbox.zygote(start=False)
        print(w.proc.pid, z.pid if z else 0, flush=True)
        w.request({{"op": "call", "fn": "spin", "args": [], "kwargs": {{}}}}, timeout=600)
    """)
    tmp = tmp_path / "tmp"  # a grader killed with SIGKILL cannot remove its folders: keep them in tmp_path
    tmp.mkdir()
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True,
                         env={**os.environ, "TMPDIR": str(tmp)})
    try:
        line = p.stdout.readline()
        pids = [int(x) for x in line.split() if int(x)]
        assert len(pids) == (2 if mode == "fork" else 1), line
        time.sleep(0.5)
        assert all(_exists(pid) for pid in pids)
        p.kill()  # SIGKILL: no atexit, no cleanup in the grader
        p.wait()
        # 30 s, not 5: a local CI try on a loaded machine (its own two test processes and two training jobs)
        # once saw the sandboxed zygote go after more than 5 s; a worker that does outlive its grader spins for ever
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_exists(pid) for pid in pids):
            time.sleep(0.05)
        assert not [pid for pid in pids if _exists(pid)], "the worker (or zygote) outlived the grader"
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        p.wait()
