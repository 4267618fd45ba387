"""A student's first hour with the grader: what `make grade` / `python -m autograder` say and where
they work (issue 11).  Each test grades one or two exercises through the real command line."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
HINT = "make grade V=1"


def run(*args, cwd=ROOT, timeout=300, env=None):
    return subprocess.run([PY, "-m", "autograder", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)


def points_of(ex_module: str) -> float:
    """The exercise's possible points, read from its check module's ``@pytest.mark.points(n)`` (not the grader)."""
    tree = ast.parse((ROOT / "autograder" / "checks" / f"test_{ex_module}.py").read_text())
    total = 0.0
    for fn in tree.body:
        for d in getattr(fn, "decorator_list", []):
            if isinstance(d, ast.Call) and ast.unparse(d.func).endswith("mark.points"):
                total += float(d.args[0].value)
    return total


def half_done_ex02(dest: Path, name: str = "ex02_ctc_decoding.py") -> Path:
    """ex02 with ctc_collapse written (the solution's lines, plus a debugging print) and greedy_decode a stub."""
    sol = (ROOT / "solutions" / "ex02_ctc_decoding.py").read_text()
    body = sol.split("### BEGIN SOLUTION", 1)[1].split("### END SOLUTION", 1)[0]
    stub = (ROOT / "exercises" / "ex02_ctc_decoding.py").read_text()
    marker = 'raise NotImplementedError("ex02: ctc_collapse")'
    assert marker in stub
    stub = stub.replace(marker, "print('debug: collapsing', len(ids))" + body.rstrip() + "\n", 1)
    path = dest / name
    path.write_text(stub)
    return path


def test_untouched_stubs_one_line_per_exercise_and_the_output_hint():
    res = run("--only", "ex01,ex02,ex07")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    for head in ("ex01 spectrograms: 0 / 8", "ex02 CTC collapse and greedy decoding: 0 / 8",
                 "ex07 sequence-wise batch norm: 0 / 10"):
        mine = [ln for ln in lines if ln.startswith(head.split(":")[0])]
        assert len(mine) == 1 and mine[0].startswith(head) and "not started" in mine[0], res.stdout
    assert "frame_signal, compute_spectrogram" in res.stdout
    assert not any(ln.lstrip().startswith("FAIL") for ln in lines), res.stdout
    assert "not implemented yet" not in res.stdout  # said once per exercise, not once per check
    assert HINT in lines[-1] and "-v" in lines[-1]
    assert len(lines) <= 8, res.stdout


def test_one_file_is_that_exercise_out_of_its_own_points_with_details_and_its_output(tmp_path):
    f = half_done_ex02(tmp_path)
    res = run(str(f))
    assert res.returncode == 0, res.stderr
    possible = points_of("ex02_ctc_decoding")
    out = res.stdout
    assert f"TOTAL 4 / {possible:g}" in out, out  # ctc_collapse's 2 + 2 points of the ex02 checks
    assert "ex01" not in out and "file missing" not in out and "no ex03 file" not in out
    assert out.count("PASS") == 2 and out.count("FAIL") == 2  # in progress: every check is listed
    assert "greedy_decode: not implemented yet" in out
    assert "debug: collapsing" not in out and "printed something in 2 check(s)" in out and HINT in out
    verbose = run(str(f), "-v")
    assert "debug: collapsing 6" in verbose.stdout  # the lesson's first example has 6 ids, in a passing check
    assert HINT not in verbose.stdout


def test_a_file_with_another_name_needs_only_or_says_the_name_it_needs(tmp_path):
    f = half_done_ex02(tmp_path, "my_ex02.py")
    res = run(str(f))
    assert res.returncode == 2
    err = [ln for ln in res.stderr.strip().splitlines() if not ln.startswith("note: sandbox off")]
    assert len(err) == 1 and "ex02_ctc_decoding.py" in err[0] and "--only ex02" in err[0], res.stderr
    res = run(str(f), "--only", "ex02")
    assert res.returncode == 0, res.stderr
    assert "[my_ex02.py]" in res.stdout and f"TOTAL 4 / {points_of('ex02_ctc_decoding'):g}" in res.stdout
    (tmp_path / "notes.py").write_text("x = 1\n")
    res = run(str(tmp_path / "notes.py"))
    assert res.returncode == 2 and "exNN_<topic>.py" in res.stderr and "--only exNN" in res.stderr
    # a file named like an exercise but not exactly (ex11_mine.py) is imported under its exercise's name
    shutil.copy(ROOT / "solutions" / "ex11_row_conv.py", tmp_path / "ex11_mine.py")
    res = run(str(tmp_path / "ex11_mine.py"))
    assert res.returncode == 0 and f"TOTAL {points_of('ex11_row_conv'):g} / {points_of('ex11_row_conv'):g}" \
        in res.stdout, res.stdout + res.stderr


def test_a_handin_zip_is_graded_and_its_manifest_checked(tmp_path):
    zpath = tmp_path / "handin.zip"
    assert run("handin", str(ROOT / "solutions"), "-o", str(zpath)).returncode == 0
    res = run(str(zpath), "--only", "ex11")
    assert res.returncode == 0, res.stderr
    p11 = points_of("ex11_row_conv")
    assert f"ex11 row convolution: {p11:g} / {p11:g}" in res.stdout and "manifest" not in res.stdout
    with zipfile.ZipFile(zpath) as z, zipfile.ZipFile(tmp_path / "edited.zip", "w") as out:
        for n in z.namelist():
            out.writestr(n, z.read(n) + (b"\n# edited\n" if n == "ex11_row_conv.py" else b""))
    res = run(str(tmp_path / "edited.zip"), "--only", "ex11")
    assert res.returncode == 0 and "does not match its manifest hash" in res.stdout, res.stdout + res.stderr


def test_grading_works_from_inside_the_repository(tmp_path):
    for cwd in (ROOT / "exercises", ROOT / "autograder" / "checks"):
        res = run("--only", "ex11", cwd=cwd)
        assert res.returncode == 0, res.stderr
        assert "ex11 row convolution: 0 / " in res.stdout and "not started" in res.stdout
    res = run("--only", "ex11", cwd=tmp_path)  # outside any repository: says what to do, in one line
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "no exercises/ folder" in res.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_grade_from_inside_exercises_runs_the_roots_rule():
    res = subprocess.run(["make", "-n", "grade", "ONLY=ex04", "V=1"], cwd=ROOT / "exercises", capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "-m autograder exercises --only ex04 -v" in res.stdout


def test_a_file_that_does_not_import_is_imported_once_and_reported_once(tmp_path):
    src = (ROOT / "exercises" / "ex11_row_conv.py").read_text()
    (tmp_path / "ex11_row_conv.py").write_text(src + "\nraise RuntimeError('left over from debugging')\n")
    res = run(str(tmp_path / "ex11_row_conv.py"), "-v")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("raised RuntimeError") == 1, res.stdout  # one message, not one per check
    head = [ln for ln in res.stdout.splitlines() if ln.startswith("ex11")]
    assert len(head) == 1 and "not graded" in head[0] and "importing ex11_row_conv.py" in head[0]
    from autograder import grade

    rep = grade([str(tmp_path / "ex11_row_conv.py")])
    assert [c.message.startswith("not run") for c in rep.results] == [False] + [True] * (len(rep.results) - 1)


def test_a_module_level_infinite_loop_costs_one_import_not_one_per_check(tmp_path):
    from autograder import grade
    from autograder.sandbox.host import Limits

    src = (ROOT / "exercises" / "ex11_row_conv.py").read_text()
    (tmp_path / "ex11_row_conv.py").write_text(src + "\nwhile True:\n    pass\n")
    limits = Limits.from_env()
    limits.call_timeout = 10.0  # the student's import is waited for like a call
    rep = grade([str(tmp_path)], only=["ex11"], limits=limits)
    assert len(rep.results) >= 3 and rep.score == 0
    assert {c.kind for c in rep.results} == {"timeout"}
    assert sum(not c.message.startswith("not run") for c in rep.results) == 1
    assert rep.seconds < 3 * limits.call_timeout, rep.seconds  # one import waited for, not one per check


@pytest.mark.slow
def test_a_module_level_infinite_loop_is_reported_with_the_true_figure_within_30_s(tmp_path):
    src = (ROOT / "exercises" / "ex11_row_conv.py").read_text()
    (tmp_path / "ex11_row_conv.py").write_text(src + "\nwhile True:\n    pass\n")
    shutil.copy(ROOT / "exercises" / "ex02_ctc_decoding.py", tmp_path)
    res = run(str(tmp_path), "--only", "ex02,ex11", "--timeout", "3", timeout=200)
    assert res.returncode == 0, res.stderr
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("ex11")][0]
    assert "timed out after 3 s" in line
    assert float(res.stdout.split("TOTAL", 1)[1].split("(", 1)[1].split(" s)", 1)[0]) < 30


def test_the_sandbox_off_notice_is_one_line():
    env = {k: v for k, v in os.environ.items() if k != "AUTOGRADER_SANDBOX"}
    res = run("--only", "ex11", env=dict(env, PATH="/nonexistent"))  # no bwrap on the PATH: auto falls back
    assert res.returncode == 0, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "sandbox" in res.stderr and "bubblewrap" in res.stderr


def test_a_broken_check_module_is_a_grader_error_not_an_interruption(tmp_path, monkeypatch):
    from autograder.grading import runner
    from autograder.grading.report import scoreboard

    checks = tmp_path / "checks"
    shutil.copytree(ROOT / "autograder" / "checks", checks, ignore=shutil.ignore_patterns("__pycache__"))
    with open(checks / "test_ex02_ctc_decoding.py", "a") as f:
        f.write("\nthis is not python(\n")
    monkeypatch.setattr(runner, "CHECKS_DIR", str(checks))
    rep = runner.grade([str(ROOT / "solutions")], only=["ex02", "ex11"])
    assert rep.grader_errors and "test_ex02_ctc_decoding.py" in rep.grader_errors[0]
    assert rep.score == rep.max_score == points_of("ex11_row_conv")  # the other exercise is still graded
    assert "GRADER ERROR" in scoreboard(rep)
