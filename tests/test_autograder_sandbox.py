"""The sandbox boundary (bwrap) and a batch that cannot be cheated (issue 13).

Hostile submissions of our own, graded by ``batch`` in both modes where the defence holds in both
(``bwrap``, and ``process`` with ``--no-sandbox``), and in bwrap only where only the sandbox can
hold (a submission that escapes the in-process layer with ``_posixsubprocess.fork_exec`` and
leaves a detached process behind).  The invariant: a submission never scores more than its honest
part earns, and nothing it started or wrote survives grading.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from autograder.classroom import batch
from autograder.sandbox import bwrap
from autograder.grading import handin, runner
from autograder.sandbox.procs import clean_env
from autograder.sandbox.host import Limits

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
SOL = ROOT / "solutions"
EXE = ROOT / "exercises"
BWRAP = bwrap.probe()[0]
needs_bwrap = pytest.mark.skipif(not BWRAP, reason=f"bwrap unavailable: {bwrap.probe()[1]}")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only (bwrap, /proc)")

ROW, DEC, CTC = "ex11_row_conv", "ex02_ctc_decoding", "ex04_ctc_loss"

# Takes what it can of the course's answers: rebinds every rule it finds in sys.modules, drops
# the import blocker, puts the repository on sys.path, imports reference / solutions, and else
# reads their source by path.
STEAL = f'''
import importlib, sys
def _steal(name, relpath):
    for m in list(sys.modules.values()):
        for attr in ("BLOCKED", "READ_ROOTS", "WRITE_ROOTS", "READ_FILES"):
            try:
                setattr(m, attr, ("/",) if "ROOTS" in attr else ())
            except Exception:
                pass
    sys.meta_path[:] = [f for f in sys.meta_path if "Block" not in type(f).__name__]
    sys.path.insert(0, {str(ROOT)!r})
    for mod in ("refer" + "ence", "solu" + "tions." + relpath.split("/")[-1][:-3]):
        try:
            return getattr(importlib.import_module(mod), name)
        except BaseException:
            pass
    for path in ({str(ROOT)!r} + "/" + relpath, {str(ROOT / "reference" / "ctc.py")!r},
                 {str(ROOT / "reference" / "layers.py")!r}):
        try:
            ns = {{}}
            exec(compile(open(path).read(), path, "exec"), ns)
            return ns[name]
        except BaseException:
            pass
    raise NotImplementedError("nothing to steal")
'''


def _detach(name: str, base: Path) -> str:
    """Escapes the audit hook (fork_exec raises no audit event): a detached shell that waits for the
    batch to end, then rewrites the CSV and leaves a file behind."""
    csv_path, mark = base / "grades.csv", base / f"escaped-{name}"
    script = f"sleep 6; echo '{name},100,100' > {csv_path}; touch {mark}; sleep 300 # ag-escape-{name}"
    return f'''
import _posixsubprocess, os
def _spawn():
    args = [b"/bin/sh", b"-c", {script.encode()!r}]
    r, w = os.pipe()
    for extra in ((None, False), (None,)):
        try:
            return _posixsubprocess.fork_exec(args, [b"/bin/sh"], True, (w,), None, None, -1, -1, -1, -1, -1, -1,
                                              r, w, True, True, -1, None, None, None, -1, *extra)
        except TypeError:
            continue
def row_conv(x, weight, lengths):
    _spawn()
    return x
'''


def _escape_files(base: Path) -> str:
    esc = base / "escape"
    return f'''
import os, sqlite3, stat
def row_conv(x, weight, lengths):
    for f in (lambda: os.mkfifo({str(esc / "fifo")!r}),
              lambda: os.mknod({str(esc / "node")!r}, stat.S_IFREG | 0o600),
              lambda: sqlite3.connect({str(esc / "db.sqlite")!r}).execute("create table t (x)"),
              lambda: sqlite3.connect(":memory:").execute("attach database {str(esc / "attached.db")} as a")):
        try:
            f()
        except BaseException as e:
            print("refused:", type(e).__name__, e)
    return x
'''


ATEN = {
    "aten_ctc_getattr": "getattr(torch.ops.aten, 'ctc' + '_loss')",
    "aten_ctc_namespace": "type(torch.ops.aten).__getattr__(torch.ops.aten, 'ctc' + '_loss')",
    "aten_ctc_jit": "(lambda op: op[0] if isinstance(op, tuple) else op)(torch._C._jit_get_operation('aten::' + 'ctc_loss'))",
}


def _submissions(base: Path, mode: str) -> dict:
    """student -> (exercise, what the test expects); writes the folders and zips under base/subs."""
    subs = base / "subs"
    subs.mkdir()
    out = {}

    def folder(name, files, ex, expect):
        d = subs / name
        d.mkdir()
        for fname, text in files.items():
            (d / fname).write_text(text)
        out[name] = (ex, expect)

    sol = {m: (SOL / f"{m}.py").read_text() for m in (ROW, DEC, CTC)}
    folder("rebind_then_import", {f"{ROW}.py": sol[ROW] + STEAL + "def row_conv(x, weight, lengths):\n"
           f"    return _steal('row_conv', 'solutions/{ROW}.py')(x, weight, lengths)\n"}, "ex11", "zero")
    folder("escape_files", {f"{ROW}.py": sol[ROW] + _escape_files(base)}, "ex11", "zero")
    for name, expr in ATEN.items():
        folder(name, {f"{CTC}.py": sol[CTC] + f"""
def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean"):
    op = {expr}
    return op(log_probs, targets, input_lengths, target_lengths, blank, 1 if reduction == "mean" else 0, False)
"""}, "ex04", "private bindings" if "torch._C" in expr else "forbids torch.ops.aten.ctc_loss")
    # the honest part alone, then the same with an attack in place of the rest: the same score
    honest = sol[DEC] + "\ndef greedy_decode(log_probs, encoder, lengths=None):\n    raise NotImplementedError\n"
    folder("honest_half", {f"{DEC}.py": honest}, "ex02", "honest")
    folder("hostile_half", {f"{DEC}.py": sol[DEC] + STEAL + "def greedy_decode(log_probs, encoder, lengths=None):\n"
           f"    return _steal('greedy_decode', 'solutions/{DEC}.py')(log_probs, encoder, lengths)\n"},
           "ex02", "same as honest_half")
    folder("hostile_stub", {f"{DEC}.py": (EXE / f"{DEC}.py").read_text() + STEAL + """
def ctc_collapse(ids, blank=0):
    return _steal('ctc_collapse', 'solutions/ex02_ctc_decoding.py')(ids, blank)
def greedy_decode(log_probs, encoder, lengths=None):
    return _steal('greedy_decode', 'solutions/ex02_ctc_decoding.py')(log_probs, encoder, lengths)
"""}, "ex02", "zero")
    for name, target in (("symlink_to_solutions", SOL / f"{ROW}.py"), ("symlink_to_passwd", Path("/etc/passwd"))):
        d = subs / name
        d.mkdir()
        (d / (f"{ROW}.py" if "solutions" in name else f"{DEC}.py")).symlink_to(target)
        out[name] = ("ex11" if "solutions" in name else "ex02", "symbolic link")
    with zipfile.ZipFile(subs / "zip_many_members.zip", "w") as z:
        for i in range(3000):
            z.writestr(f"ex11_row_conv_{i}.py", "x = 1\n")
    out["zip_many_members"] = ("ex11", "has 3000 members")
    with zipfile.ZipFile(subs / "zip_too_big.zip", "w", compression=zipfile.ZIP_DEFLATED) as z:
        for i in range(10):
            z.writestr(f"ex11_row_conv_{i}.py", "#" * (handin.MAX_MEMBER_BYTES - 10))
    out["zip_too_big"] = ("ex11", "uncompressed")
    if mode == "bwrap":
        folder("detached_process", {f"{ROW}.py": sol[ROW] + _detach("detached_process", base)}, "ex11", "zero")
    return out


def _escaped_processes(marker: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if marker in cmd:
                found.append(f"{pid}: {cmd}")
    return found


@pytest.fixture(scope="module", params=[pytest.param("bwrap", marks=needs_bwrap), "process"])
def graded(request, tmp_path_factory):
    mode = request.param
    base = tmp_path_factory.mktemp(f"sandbox-{mode}")
    expect = _submissions(base, mode)
    (base / "escape").mkdir()
    tmp = base / "tmp"
    tmp.mkdir()
    cmd = [PY, "-m", "autograder", "batch", str(base / "subs"), "--csv", str(base / "grades.csv"), "--jobs", "2",
           "--no-progress", "--only", "ex02,ex04,ex11", "--timeout", "5"]
    if mode == "process":
        cmd.append("--no-sandbox")
    started = time.monotonic()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env=dict(os.environ, TMPDIR=str(tmp), AUTOGRADER_SANDBOX="auto"))
    csv_after = (base / "grades.csv").read_text() if (base / "grades.csv").exists() else ""
    return {"mode": mode, "base": base, "res": res, "expect": expect, "csv": csv_after,
            "seconds": time.monotonic() - started}


def _report(g, name):
    return json.loads((g["base"] / "grades-reports" / f"{name}.json").read_text())


def test_batch_ran_and_every_report_names_its_mode(graded):
    assert graded["res"].returncode == 0, graded["res"].stderr[-3000:]
    for name in graded["expect"]:
        assert _report(graded, name)["sandbox"] == graded["mode"]
    rows = graded["csv"].splitlines()
    assert rows[0].split(",")[-2:] == ["sandbox", "notes"]
    assert all(f",{graded['mode']}," in r for r in rows[1:]), rows


@pytest.mark.parametrize("name", ["rebind_then_import", "escape_files", "hostile_stub", "symlink_to_solutions",
                                  "symlink_to_passwd", "zip_many_members", "zip_too_big", "detached_process",
                                  *ATEN])
def test_hostile_submission_earns_nothing_it_did_not_compute(graded, name):
    if name not in graded["expect"]:
        pytest.skip("only the bwrap sandbox stops this one")
    ex, expect = graded["expect"][name]
    rep = _report(graded, name)
    text = json.dumps(rep)
    assert not rep["grader_errors"], rep["grader_errors"]
    if expect == "private bindings":      # found by the static scan: the whole exercise scores 0
        assert expect in " ".join(rep["findings"][ex]), rep["findings"]
        assert rep["exercises"][ex]["score"] == 0
    elif expect.startswith("forbids"):
        e = rep["exercises"][ex]
        failed = [c for c in e["checks"] if c["status"] == "failed"]
        assert failed and all("ctc_loss" in c["title"] or "ctc_loss" in c["message"] for c in failed)
        assert expect in text, text[:2000]
        assert e["score"] < e["max_score"]
    else:
        assert rep["score"] == 0, [(c["name"], c["status"]) for x in rep["exercises"].values() for c in x["checks"]]
    if expect not in ("zero", "private bindings") and not expect.startswith("forbids"):
        assert expect in " ".join(rep["notes"]), rep["notes"]
    assert "root:x:0:0" not in text  # a linked /etc/passwd is never read, so never printed


def test_zip_bombs_are_refused_before_anything_is_read(graded):
    for name in ("zip_many_members", "zip_too_big"):
        rep = _report(graded, name)
        assert rep["files"] == {} and rep["seconds"] < 60, rep


def test_a_submission_never_scores_more_than_its_honest_part(graded):
    honest = _report(graded, "honest_half")["exercises"]["ex02"]["score"]
    assert 0 < honest < _report(graded, "honest_half")["exercises"]["ex02"]["max_score"]
    assert _report(graded, "hostile_half")["exercises"]["ex02"]["score"] == honest
    assert _report(graded, "hostile_stub")["exercises"]["ex02"]["score"] == 0


def test_files_outside_the_temp_folder_are_not_created(graded):
    assert sorted(os.listdir(graded["base"] / "escape")) == []
    assert sorted(os.listdir(graded["base"] / "tmp")) == []  # the grader's own copies and folders are gone too
    rep = _report(graded, "escape_files")
    out = " ".join(c["output"] for c in rep["exercises"]["ex11"]["checks"])
    assert out.count("refused:") >= 4, out[:2000]


def test_nothing_the_submission_started_outlives_grading(graded):
    if graded["mode"] != "bwrap":
        pytest.skip("without bwrap a native fork escapes the in-process layer (see autograder/README.md)")
    time.sleep(8)  # the detached shell would have rewritten the CSV after 6 s
    assert (graded["base"] / "grades.csv").read_text() == graded["csv"]
    assert "detached_process,100" not in graded["csv"]
    assert not (graded["base"] / "escaped-detached_process").exists()
    assert not _escaped_processes("ag-escape-"), _escaped_processes("ag-escape-")


# ----------------------------------------------------------------------------- what the sandbox looks like
@needs_bwrap
def test_the_sandbox_hides_the_course_the_network_and_the_host(tmp_path):
    (tmp_path / f"{ROW}.py").write_text("x = 1\n")
    probe = f'''
import json, os, socket, sys
root = {str(ROOT)!r}
facts = {{"course": [p for p in ("reference", "solutions", "autograder", "exercises", "lessons")
                     if os.path.exists(os.path.join(root, p))],
         "root_listing": sorted(os.listdir(root)) if os.path.isdir(root) else [],
         "submission": sorted(os.listdir("/submission")), "passwd": os.path.exists("/etc/passwd"),
         "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
         "caps": [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0]}}
for what, path in (("write_submission", "/submission/x"), ("write_python", os.path.join(sys.prefix, "x")),
                   ("write_tmp", "/tmp/x")):
    try:
        open(path, "w").write("x")
        facts[what] = True
    except OSError:
        facts[what] = False
try:
    socket.create_connection(("1.1.1.1", 80), timeout=2)
    facts["network"] = True
except OSError:
    facts["network"] = False
print(json.dumps(facts))
'''
    res = subprocess.run(bwrap.command([PY, "-I", "-c", probe], submission=str(tmp_path)), capture_output=True,
                         text=True, env=clean_env("/tmp"), timeout=120)
    assert res.returncode == 0, res.stderr
    facts = json.loads(res.stdout)
    assert facts["course"] == [] and set(facts["root_listing"]) <= {".venv"}
    assert facts["submission"] == [f"{ROW}.py"] and not facts["passwd"]
    assert facts["processes"] == [1, 2] or len(facts["processes"]) <= 3  # bwrap's init and us
    assert int(facts["caps"], 16) == 0
    assert not facts["write_submission"] and not facts["write_python"] and facts["write_tmp"]
    assert not facts["network"]


def test_sandbox_mode_is_chosen_and_overridable(monkeypatch):
    assert bwrap.requested("off") == "process" or bwrap.requested("off") == "off"
    assert bwrap.mode("off") == "process"
    with pytest.raises(ValueError):
        bwrap.requested("sometimes")
    monkeypatch.setenv("AUTOGRADER_SANDBOX", "off")
    assert Limits.from_env().sandbox_mode() == "process"
    monkeypatch.setattr(bwrap, "_PROBE", (False, "bwrap is not installed; " + bwrap.INSTALL_HINT))
    assert bwrap.mode("auto") == "process"
    with pytest.raises(bwrap.SandboxUnavailable):
        bwrap.mode("bwrap")
    monkeypatch.setenv("AUTOGRADER_SANDBOX", "auto")
    line = bwrap.off_notice()
    assert "\n" not in line and "sandbox off" in line and "apt-get install bubblewrap" in line


def test_student_without_bwrap_is_graded_with_one_line_saying_so(tmp_path):
    env = dict(os.environ, PATH="/nonexistent", AUTOGRADER_SANDBOX="auto")  # no bwrap on PATH
    res = subprocess.run([PY, "-m", "autograder", str(SOL / f"{ROW}.py"), "--only", "ex11", "--json",
                          str(tmp_path / "r.json")], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "ex11 row convolution: 6 / 6" in res.stdout
    notices = [line for line in res.stderr.splitlines() if "sandbox off" in line]
    assert len(notices) == 1 and "install bubblewrap" in notices[0], res.stderr
    assert json.loads((tmp_path / "r.json").read_text())["sandbox"] == "process"
    res = subprocess.run([PY, "-m", "autograder", "batch", str(tmp_path), "--csv", str(tmp_path / "g.csv")],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2 and "--no-sandbox" in res.stderr and not (tmp_path / "g.csv").exists()


# ----------------------------------------------------------------------------- the batch itself
def test_symlinks_in_a_folder_are_refused_never_followed(tmp_path):
    (tmp_path / f"{ROW}.py").symlink_to(SOL / f"{ROW}.py")
    (tmp_path / f"{DEC}.py").write_text("x = 1\n")
    files, notes = runner.find_submission_files([str(tmp_path)])
    assert list(files) == ["ex02"] and any("symbolic link" in n for n in notes)


def test_zip_limits_refuse_before_reading(tmp_path):
    z = tmp_path / "many.zip"
    with zipfile.ZipFile(z, "w") as out:
        for i in range(handin.MAX_MEMBERS + 1):
            out.writestr(f"ex11_row_conv_{i}.py", "x = 1\n")
    dest = tmp_path / "out"
    dest.mkdir()
    started = time.monotonic()
    problems = handin.extract_handin(str(z), str(dest))
    assert time.monotonic() - started < 5 and os.listdir(dest) == []
    assert len(problems) == 1 and "members" in problems[0]


def test_only_complete_reports_count_as_done(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"score": 3, "grader_errors": ["pytest exited with status 2"]}))
    (tmp_path / "b.json").write_text(json.dumps({"score": 3, "complete": True}))
    assert batch._load_report(str(tmp_path / "a.json")) is None
    assert batch._load_report(str(tmp_path / "b.json"))["score"] == 3


def _ours(tmp: Path) -> list[str]:
    """Processes of a batch run with TMPDIR=tmp: by command line, working folder or environment."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
            env = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(tmp) in cmd or cwd.startswith(str(tmp)) or f"TMPDIR={tmp}\0" in env + "\0":
            out.append(f"{pid}:{cmd}")
    return out


def _batch_env(tmp: Path) -> dict:
    return dict(os.environ, TMPDIR=str(tmp), AUTOGRADER_SANDBOX="auto")


def _sigint_default() -> None:
    """In the batch's child before exec: Ctrl-C as a terminal's foreground job has it.  A test run started in
    the background by a script (``cmd &``) inherits SIGINT ignored, and Python keeps an ignored SIGINT ignored:
    the batch would then finish a grading the interrupt should have cut off (two local CI tries did)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_until_grading(tmp: Path, proc, timeout=120.0) -> None:
    """Until a worker (or its zygote) of this batch runs: the batch is then mid-pytest."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if [p for p in _ours(tmp) if "worker.py" in p]:
            time.sleep(2.0)
            return
        time.sleep(0.2)
    raise AssertionError("grading never started")


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "kill-grader"])
def test_interrupted_grading_leaves_no_report_and_is_graded_again(tmp_path, how):
    subs, tmp = tmp_path / "subs", tmp_path / "tmp"
    subs.mkdir()
    tmp.mkdir()
    (subs / "a_slow").mkdir()
    # slow but never past the per-call limit (--timeout 60 below): each call sleeps 30 s, so grading it takes
    # minutes, far longer than finding its worker on a loaded machine (with 8 s calls a CI run once graded it
    # whole, in 61 s, before the interrupt came)
    (subs / "a_slow" / f"{ROW}.py").write_text((SOL / f"{ROW}.py").read_text() + "\n_fast = row_conv\n\n\n"
                                               "def row_conv(x, weight, lengths):\n    import time\n"
                                               "    time.sleep(30)\n    return _fast(x, weight, lengths)\n")
    (subs / "b_ok").mkdir()
    (subs / "b_ok" / f"{ROW}.py").write_text((SOL / f"{ROW}.py").read_text())
    cmd = [PY, "-m", "autograder", "batch", str(subs), "--csv", str(tmp_path / "g.csv"), "--only", "ex11",
           "--no-progress", "--timeout", "60"] + ([] if BWRAP else ["--no-sandbox"])
    p = subprocess.Popen(cmd, cwd=ROOT, env=_batch_env(tmp), start_new_session=True, preexec_fn=_sigint_default,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_grading(tmp, p)
        if how == "ctrl-c":
            os.killpg(p.pid, signal.SIGINT)  # what the terminal does: the batch's foreground group
        elif how == "sigterm":
            p.send_signal(signal.SIGTERM)
        else:  # the grading process dies mid-pytest; the batch goes on with the next student
            graders = [int(x.split(":")[0]) for x in _ours(tmp) if "autograder.classroom.batch import serve" in x]
            assert graders
            os.kill(graders[0], signal.SIGKILL)
        out, err = p.communicate(timeout=240)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    reports = tmp_path / "g-reports"
    assert not (reports / "a_slow.json").exists(), (reports / "a_slow.json").read_text()
    if how == "kill-grader":
        assert p.returncode == 3 and "a_slow" in err
        assert ",not graded," in (tmp_path / "g.csv").read_text().splitlines()[1]
    else:
        assert p.returncode != 0
        assert not (reports / "b_ok.json").exists()
    time.sleep(1)
    assert not _ours(tmp), _ours(tmp)
    if how != "ctrl-c":
        return
    # resumed: a_slow is graded again (and stopped by the per-student limit), b_ok graded once
    res = subprocess.run(cmd + ["--student-timeout", "20"], cwd=ROOT, env=_batch_env(tmp), capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 3 and "time limit" in res.stderr, res.stderr[-2000:]
    slow = json.loads((reports / "a_slow.json").read_text())
    assert slow["status"] == "time limit" and slow["score"] == 0 and slow["complete"] is True
    assert json.loads((reports / "b_ok.json").read_text())["score"] == 6
    rows = (tmp_path / "g.csv").read_text().splitlines()
    assert rows[1].startswith("a_slow,0,,") and ",time limit," in rows[1]
    assert rows[2].startswith("b_ok,6,6,")
