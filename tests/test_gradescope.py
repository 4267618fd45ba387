"""The Gradescope package: the zip's layout, and run_autograder run in a folder laid out as Gradescope
lays out /autograder (GRADESCOPE_ROOT), with the course's Python instead of setup.sh."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from autograder.grading import visibility

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

# passes every public row_conv check, fails the hidden edge cases (tau = 0)
ROW_CONV_TAU0_BUG = """

_row_conv = row_conv


def row_conv(x, weight, lengths):
    if weight.shape[0] == 1:
        return x * 0
    return _row_conv(x, weight, lengths)
"""


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gs") / "autograder.zip"
    res = subprocess.run([PY, "-m", "autograder", "gradescope", str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    return out


def _run(package: Path, base: Path, fill) -> tuple[subprocess.CompletedProcess, dict]:
    """Gradescope's layout: the zip unpacked in source/, the student's files in submission/, results/."""
    with zipfile.ZipFile(package) as z:
        z.extractall(base / "source")
        for info in z.infolist():  # extractall drops the mode bits; Gradescope keeps them
            mode = info.external_attr >> 16
            if mode:
                os.chmod(base / "source" / info.filename, stat.S_IMODE(mode))
    (base / "submission").mkdir()
    fill(base / "submission")
    env = dict(os.environ, GRADESCOPE_ROOT=str(base), GRADESCOPE_PYTHON=PY)
    env.pop("PYTHONPATH", None)
    res = subprocess.run([str(base / "source" / "run_autograder")], cwd=base, env=env, capture_output=True,
                         text=True, timeout=600)
    results = base / "results" / "results.json"
    assert results.is_file(), res.stdout[-2000:] + res.stderr[-3000:]
    return res, json.loads(results.read_text())


def test_the_zip_holds_what_gradescope_runs_and_no_answer_key(package):
    with zipfile.ZipFile(package) as z:
        names = set(z.namelist())
        modes = {i.filename: i.external_attr >> 16 for i in z.infolist()}
        setup = z.read("setup.sh").decode()
        reqs = z.read("requirements.txt").decode()
        docker = z.read("Dockerfile").decode()
        check = z.read("autograder/checks/test_ex11_row_conv.py").decode()
    assert {"setup.sh", "run_autograder", "Dockerfile", "requirements.txt", "autograder/__main__.py",
            "reference/ctc.py"} <= names
    assert modes["run_autograder"] & 0o111 and modes["setup.sh"] & 0o111
    assert not [n for n in names if n.startswith(("solutions/", "tests/", "exercises/"))]
    assert "apt-get install" in setup and "bubblewrap" in setup and "-r requirements.txt" in setup
    assert "torch==" in reqs and "pytest" in reqs
    assert "/autograder/source" in docker and "run_autograder" in docker
    assert "@pytest.mark.hidden" in check  # the instructor's grading runs the hidden checks


def test_run_autograder_grades_a_nested_submission_with_hidden_checks_hidden(package, tmp_path):
    def fill(sub: Path):
        (sub / "exercises").mkdir()
        (sub / "exercises" / "ex02_ctc_decoding.py").write_text((ROOT / "solutions" / "ex02_ctc_decoding.py").read_text())
        (sub / "exercises" / "ex11_row_conv.py").write_text((ROOT / "solutions" / "ex11_row_conv.py").read_text()
                                                            + ROW_CONV_TAU0_BUG)

    res, r = _run(package, tmp_path, fill)
    assert res.returncode == 0, res.stderr[-3000:]
    hidden = [c for c in visibility.all_checks() if c.hidden and c.exercise == "ex11"]
    assert r["score"] == 8 + 6 - sum(c.points for c in hidden) and r["max_score"] == 100
    assert "exercises/" in r["output"] and "subfolder" in r["output"]  # the nested layout is said, not silent
    # Gradescope hides the total while a test is hidden: the first line says the public part (issue 20 item 4)
    pub = {c.exercise: 0.0 for c in visibility.all_checks()}
    for c in visibility.all_checks():
        if not c.hidden and c.exercise in ("ex02", "ex11"):
            pub[c.exercise] += c.points
    pts = visibility.points()
    assert r["output"].splitlines()[0] == (
        f"public checks: {pub['ex02'] + pub['ex11']:g} / {pts['public']:g}; hidden checks: {pts['hidden']:g} points, "
        "shown when your instructor publishes the grades (the total is hidden until then)")
    assert r["stdout_visibility"] == "hidden"
    by_name = {t["name"]: t for t in r["tests"]}
    assert len(by_name) == len(visibility.all_checks())
    for c in visibility.all_checks():
        t = next(t for n, t in by_name.items() if n.startswith(f"{c.exercise} {c.title}"))
        assert t["visibility"] == ("after_published" if c.hidden else "visible")
    failed_hidden = [t for t in r["tests"] if t["visibility"] != "visible" and t["status"] == "failed"
                     and t["name"].startswith("ex11")]
    assert failed_hidden, r["tests"]
    for t in failed_hidden:  # its title and pass/fail, never its inputs
        assert "tau=" not in t["output"] and "lengths=" not in t["output"] and "weight" not in t["output"]
        assert "hidden check failed" in t["output"]
    missing = [t for t in r["tests"] if t["name"].startswith("ex04")]
    assert missing and all(t["status"] == "failed" and t["score"] == 0 for t in missing)


def test_run_autograder_grades_a_zip_in_the_submission(package, tmp_path):
    def fill(sub: Path):
        with zipfile.ZipFile(sub / "my-work.zip", "w") as z:
            z.writestr("exercises/ex11_row_conv.py", (ROOT / "solutions" / "ex11_row_conv.py").read_text())

    res, r = _run(package, tmp_path, fill)
    assert res.returncode == 0, res.stderr[-3000:]
    assert r["score"] == 6 and r["max_score"] == 100
    assert "my-work.zip" in r["output"] and "MANIFEST" in r["output"]
    assert r["extra_data"]["sandbox"] in ("bwrap", "process")


def test_run_autograder_grades_misnamed_files_with_a_note(package, tmp_path):
    def fill(sub: Path):
        (sub / "Ex11_row_conv (1).py").write_text((ROOT / "solutions" / "ex11_row_conv.py").read_text())

    res, r = _run(package, tmp_path, fill)
    assert res.returncode == 0, res.stderr[-3000:]
    assert r["score"] == 6 and "status: misnamed files, graded" in r["output"]
    assert "Ex11_row_conv (1).py" in r["output"] and r["extra_data"]["status"] == "misnamed files, graded"


def test_a_results_json_whatever_fails(tmp_path, monkeypatch):
    """Any crash of the grading leaves a results.json (score 0, saying it is a grader error), not Gradescope's
    "autograder failed" with nothing; a missing submission folder too."""
    from autograder.grading import gradeone
    from autograder.classroom import gradescope

    results = tmp_path / "results" / "results.json"
    assert gradescope.run_main(["--root", str(tmp_path)]) == 2  # no submission/ folder
    r = json.loads(results.read_text())
    assert r["score"] == 0 and "grader error" in r["output"] and "submission" in r["extra_data"]["grader_errors"][0]
    results.unlink()
    (tmp_path / "submission").mkdir()

    def boom(*a, **k):
        raise RuntimeError("the checks could not be imported")

    monkeypatch.setattr(gradeone, "grade_located", boom)
    assert gradescope.run_main(["--root", str(tmp_path)]) == 3
    r = json.loads(results.read_text())
    assert r["score"] == 0 and r["max_score"] == 100 and r["tests"] == []
    assert "not your score" in r["output"] and "RuntimeError" in r["extra_data"]["grader_errors"][0]
