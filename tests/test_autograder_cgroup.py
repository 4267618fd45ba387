"""One student's processes and memory as a whole (``autograder/sandbox/cgroup.py``): the paths the course
container (cgroup v1, root) does not take on its own.

* the ``RLIMIT_NPROC`` fallback, forced with ``AUTOGRADER_CGROUP=off`` and run as an unprivileged
  user (the kernel does not apply ``RLIMIT_NPROC`` to root): a thread bomb stops at the limit, the
  student keeps its honest part, and the next student in the same ``batch`` is graded normally;
* cgroup v2: its logic against a fake cgroupfs folder (the files it writes), and for real on a
  ``cgroup2`` hierarchy mounted here where that works (as root): joining, listing and killing a
  group through ``cgroup.procs`` and ``cgroup.kill``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from autograder.sandbox import cgroup

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ROW = "ex11_row_conv"
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only (rlimits, cgroups)")

THREAD_BOMB = """
import resource, threading, time
_honest = row_conv
def row_conv(x, weight, lengths):
    print("RLIMIT_NPROC:", resource.getrlimit(resource.RLIMIT_NPROC)[0])
    started = 0
    try:
        for _ in range(3000):
            threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
            started += 1
    except BaseException as e:
        print("refused:", type(e).__name__)
    print("threads started:", started)
    return _honest(x, weight, lengths)
"""


def _as_unprivileged() -> list[str] | None:
    """The command prefix that runs the grader as an ordinary user (``nobody`` when we are root)."""
    if os.getuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if not setpriv:
        return None
    # nobody, keeping only the right to read and write files (the venv may live under /root): neither
    # CAP_SYS_RESOURCE nor CAP_SYS_ADMIN, either of which would exempt it from RLIMIT_NPROC
    caps = "+dac_override,+dac_read_search"
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", f"--inh-caps={caps}", f"--ambient-caps={caps}"]


@linux
def test_the_rlimit_nproc_fallback_stops_a_thread_bomb_and_the_next_student_is_graded():
    prefix = _as_unprivileged()
    if prefix is None:
        pytest.skip("root without setpriv: RLIMIT_NPROC does not apply to root")
    top = Path(tempfile.mkdtemp(prefix="ag-nproc-"))  # not under pytest's root-only folder: nobody reads it
    try:
        _nproc_batch(prefix, top / "class")
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _nproc_batch(prefix: list[str], base: Path) -> None:
    for name, text in (("a_thread_bomb", (ROOT / "solutions" / f"{ROW}.py").read_text() + THREAD_BOMB),
                       ("b_correct", (ROOT / "solutions" / f"{ROW}.py").read_text())):
        (base / "subs" / name).mkdir(parents=True)
        (base / "subs" / name / f"{ROW}.py").write_text(text)
    (base / "tmp").mkdir()
    for d in [base.parent, *base.rglob("*"), base]:
        os.chmod(d, 0o777 if d.is_dir() else 0o666)  # nobody writes the CSV, the reports and its temp files
    cmd = prefix + [PY, "-m", "autograder", "batch", str(base / "subs"), "--csv", str(base / "grades.csv"),
                    "--jobs", "1", "--no-progress", "--only", "ex11", "--timeout", "30", "--no-sandbox"]
    env = dict(os.environ, TMPDIR=str(base / "tmp"), AUTOGRADER_SANDBOX="off", AUTOGRADER_CGROUP="off",
               PYTHONDONTWRITEBYTECODE="1", HOME=str(base / "tmp"))
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-3000:])

    def report(name):
        return json.loads((base / "grades-reports" / f"{name}.json").read_text())

    bomb = report("a_thread_bomb")
    assert not bomb["grader_errors"], bomb["grader_errors"]
    out = " ".join(c["output"] for c in bomb["exercises"]["ex11"]["checks"])
    limits = {int(x.split()[0]) for x in out.split("RLIMIT_NPROC:")[1:]}
    assert limits and all(0 < n < 10_000 for n in limits), out[-1000:]  # the fallback was set (not unlimited)
    counts = [int(x.split()[0]) for x in out.split("threads started:")[1:]]
    assert counts and max(counts) < max(limits), out[-1000:]
    assert "refused: RuntimeError" in out  # "can't start new thread": the kernel refused, not the grader
    assert bomb["exercises"]["ex11"]["score"] == 6  # its honest part: row_conv itself is right
    correct = report("b_correct")
    assert not correct["grader_errors"], correct["grader_errors"]
    ex = correct["exercises"]["ex11"]
    assert ex["score"] == ex["max_score"], [(c["name"], c["message"]) for c in ex["checks"] if c["status"] != "passed"]


def test_nproc_limit_is_the_users_tasks_plus_headroom_and_none_for_root(monkeypatch):
    monkeypatch.setattr(cgroup.os, "getuid", lambda: 0)
    assert cgroup.nproc_limit() is None  # the kernel ignores RLIMIT_NPROC for root
    monkeypatch.setattr(cgroup.os, "getuid", lambda: 4242)
    monkeypatch.setattr(cgroup, "user_tasks", lambda uid: 17 if uid == 4242 else 0)
    assert cgroup.nproc_limit() == 17 + cgroup.NPROC_HEADROOM


# ----------------------------------------------------------------------------- cgroup v2
def _fake_v2(tmp_path, controllers: str) -> Path:
    own = tmp_path / "grader.scope"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text(controllers + "\n")
    (own / "cgroup.subtree_control").write_text("cpu\n")
    return own


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([PY, "-c", "import time; time.sleep(60)"])


@linux
def test_v2_logic_against_a_fake_cgroupfs(tmp_path, monkeypatch):
    """What ``_v2`` writes, and what ``close`` does, on a folder laid out like a delegated v2 cgroup
    (a plain folder: the kernel's limits themselves are not exercised here)."""
    own = _fake_v2(tmp_path, "cpu io memory pids")
    monkeypatch.setattr(cgroup, "ROOT", str(tmp_path))
    monkeypatch.setattr(cgroup, "_own_path", lambda controller: "/grader.scope" if controller is None else None)
    g = cgroup._v2("autograder-test", 64, 4 * 1024 ** 3)
    assert g is not None and g.kind == "cgroup v2"
    d = Path(g.dirs[0])
    assert d.parent == own
    assert (own / "cgroup.subtree_control").read_text() == "+pids +memory"  # delegated to the children
    assert (d / "pids.max").read_text() == "64"
    assert (d / "memory.max").read_text() == str(4 * 1024 ** 3)
    assert (d / "memory.swap.max").read_text() == "0"
    child = _sleeper()
    try:
        assert g.attach(child.pid)
        assert (d / "cgroup.procs").read_text() == str(child.pid)
        assert g.pids() == {child.pid}
        g.close()
        assert (d / "cgroup.kill").read_text() == "1"  # the kernel's atomic kill of the whole group
        assert child.wait(timeout=10) == -9  # and every pid still listed, killed one by one
    finally:
        child.kill()
        child.wait()


def test_v2_needs_pids_and_memory_delegated(tmp_path, monkeypatch):
    monkeypatch.setattr(cgroup, "ROOT", str(tmp_path))
    monkeypatch.setattr(cgroup, "_own_path", lambda controller: "/grader.scope" if controller is None else None)
    own = _fake_v2(tmp_path, "cpu io memory")  # no pids controller: no v2 group, and nothing created
    assert cgroup._v2("autograder-test", 64, 1024) is None
    assert sorted(p.name for p in own.iterdir()) == ["cgroup.controllers", "cgroup.subtree_control"]
    monkeypatch.setenv("AUTOGRADER_CGROUP", "off")
    assert cgroup.create() is None


@pytest.fixture
def cgroup2_mount(tmp_path):
    """A cgroup2 hierarchy mounted at a temporary folder (root only), unmounted afterwards."""
    if not sys.platform.startswith("linux") or os.getuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting cgroup2 needs root on Linux")
    mnt = tmp_path / "cg2"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "cgroup2", "none", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount cgroup2 here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        for d in sorted(mnt.glob("autograder-*"), reverse=True):
            try:
                d.rmdir()
            except OSError:
                pass
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_v2_for_real_on_a_mounted_cgroup2(cgroup2_mount, monkeypatch):
    """Joining, listing and killing a v2 group on the kernel's own cgroupfs.  Where the pids and memory
    controllers are bound to v1 hierarchies (this container: the mounted v2 root offers neither),
    ``_v2`` declines and leaves nothing behind, and the limits are tested against the fake folder above."""
    mnt = cgroup2_mount
    controllers = set((mnt / "cgroup.controllers").read_text().split())
    monkeypatch.setattr(cgroup, "ROOT", str(mnt))
    monkeypatch.setattr(cgroup, "_own_path", lambda controller: "/" if controller is None else None)
    g = cgroup._v2(f"autograder-real-{os.getpid()}", 64, 1024 ** 3)
    if {"pids", "memory"} <= controllers:
        assert g is not None and (Path(g.dirs[0]) / "pids.max").read_text().strip() == "64"
    else:
        assert g is None and not list(mnt.glob("autograder-*"))
        d = mnt / f"autograder-real-{os.getpid()}"
        d.mkdir()
        g = cgroup.Group("cgroup v2", [str(d)])
    child = _sleeper()
    try:
        assert g.attach(child.pid)
        assert g.pids() == {child.pid}
        started = time.monotonic()
        g.close()
        assert child.wait(timeout=10) == -9
        assert time.monotonic() - started < 5
        assert not Path(g.dirs[0]).exists()  # the group is removed once empty
    finally:
        child.kill()
        child.wait()
