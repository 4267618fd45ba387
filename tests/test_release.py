"""The student release (``python -m autograder release DIR``): no answer key, no hidden check, and its
own autograder grades the solutions with exactly the public points."""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.classroom import release
from autograder.grading import visibility
from autograder.spec import EXERCISES

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


@pytest.fixture(scope="module")
def rel(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("release") / "ds2"
    res = subprocess.run([PY, "-m", "autograder", "release", str(dest)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    return dest


def _texts(dest: Path) -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(dest):
        for f in files:
            p = Path(dirpath) / f
            out[p.relative_to(dest).as_posix()] = p.read_bytes().decode("utf-8", "replace")
    return out


def _hidden_secrets() -> dict[str, str]:
    """Each hidden check's name and every statement of its body long enough to be an input."""
    out = {}
    for ex in EXERCISES.values():
        tree = ast.parse((ROOT / "autograder" / "checks" / ex.check_module).read_text())
        for fn in tree.body:
            if isinstance(fn, ast.FunctionDef) and visibility.is_hidden_def(fn):
                out[fn.name] = fn.name
                for stmt in fn.body[1:]:
                    line = ast.unparse(stmt).splitlines()[0]
                    if len(line) >= 30:
                        out[line] = fn.name
    return out


def test_the_course_has_public_and_hidden_checks():
    pts = visibility.points()
    assert pts["public"] + pts["hidden"] == 100 and 0 < pts["hidden"] < 30
    from autograder.classroom import nbgrader

    assert nbgrader.HIDDEN_CHECKS == visibility.hidden_names()  # nbgrader's hidden tests come from the markers


def test_no_solution_and_no_hidden_check_in_the_release(rel):
    texts = _texts(rel)
    assert not [p for p in texts if p.split("/")[0] in ("solutions", "tests", "benchmarks")]
    for gone in ("classroom/batch.py", "classroom/nbgrader.py", "generate.py", "classroom/release.py",
                 "classroom/similarity.py", "classroom/gradescope/__init__.py", "classroom/NBGRADER.md"):
        assert f"autograder/{gone}" not in texts
    assert "docs/instructors.md" not in texts
    solutions = {p.read_text() for p in (ROOT / "solutions").glob("*.py")}
    secrets = _hidden_secrets()
    assert len(secrets) > 20
    sol_lines = release.solution_only_lines()
    assert len(sol_lines) > 50  # the answer key's own lines: none may ship
    for path, text in texts.items():
        assert text not in solutions, f"{path} is a solutions/ file"
        for secret, check in secrets.items():
            assert secret not in text, f"{path} holds the hidden check {check}: {secret!r}"
        for line in sol_lines:
            assert line not in text, f"{path} holds a line of solutions/: {line!r}"
    for ex in EXERCISES.values():  # every public check is still there, and nothing else
        names = [c.name for c in visibility.checks_in_source(ex.id, texts[f"autograder/checks/{ex.check_module}"])]
        assert names == [c.name for c in visibility.all_checks() if c.exercise == ex.id and not c.hidden]
    for rel_path in ("Makefile", "README.md", "requirements.txt", "pyproject.toml", "exercises/ex04_ctc_loss.py",
                     "reference/ctc.py", "lessons/yourturn.py", "autograder/grading/handin.py"):
        assert rel_path in texts
    assert all(t in texts["Makefile"] for t in ("\nsetup:", "\ngrade:", "\nlab:", "\nhandin:"))


def test_strip_hidden_removes_the_checks_and_the_helpers_only_they_use():
    src = ('import pytest\n\npytestmark = pytest.mark.exercise("ex02")\nSHARED = 3\n_SECRET = [7, 7, 0, 7]\n\n\n'
           'def _only_hidden():\n    return _SECRET\n\n\n@pytest.mark.points(1)\ndef test_public(sub):\n'
           '    """a"""\n    return SHARED\n\n\n@pytest.mark.hidden\n@pytest.mark.points(1)\ndef test_secret(sub):\n'
           '    """b"""\n    return _only_hidden() + [SHARED]\n')
    out, removed = release.strip_hidden(src)
    assert removed == ["_SECRET", "_only_hidden", "test_secret"]
    assert "test_public" in out and "SHARED = 3" in out and "7, 7" not in out and "hidden" not in out
    ast.parse(out)


def test_the_release_grades_the_solutions_with_the_public_points_only(rel, tmp_path):
    out = tmp_path / "report.json"
    res = subprocess.run([PY, "-m", "autograder", str(ROOT / "solutions"), "--json", str(out)], cwd=rel,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rep = json.loads(out.read_text())
    public = visibility.points()["public"]
    assert rep["score"] == rep["max_score"] == public < 100, res.stdout[-3000:]
    graded = {c["name"] for e in rep["exercises"].values() for c in e["checks"]}
    assert graded and not graded & visibility.hidden_names()
    # instructor tooling says it is not there, without a traceback
    res = subprocess.run([PY, "-m", "autograder", "batch", "x", "--csv", "g.csv"], cwd=rel, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and "not part of the student release" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_the_release_makefile_grades_and_hands_in_like_the_course(rel):
    res = subprocess.run(["make", "-n", "grade", "handin", "STUDENT=s123"], cwd=rel, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert "-m autograder exercises" in res.stdout and "--student s123" in res.stdout


def test_release_refuses_to_overwrite_what_it_did_not_build(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(release.ReleaseError, match="not empty"):
        release.build_release(tmp_path)
    with pytest.raises(release.ReleaseError, match="not a student release"):
        release.build_release(tmp_path, force=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_docs_checks_table_matches_the_markers():
    import re

    text = (ROOT / "docs" / "checks.md").read_text()
    rows = re.findall(r"^\| (ex\d\d) \| `(test_\w+)` \| ([\d.]+) \| \**(public|hidden)\** \|$", text, re.M)
    assert sorted((e, n, float(p), v == "hidden") for e, n, p, v in rows) == sorted(
        (c.exercise, c.name, c.points, c.hidden) for c in visibility.all_checks())


def test_nbgrader_notebooks_grade_with_the_release(rel, tmp_path):
    """A student's nbgrader notebook runs its test cells against the release's public checks (issue 20
    item 7: no ModuleNotFoundError), and the support module names no hidden check."""
    texts = _texts(rel)
    assert "autograder/nbgrader_support/__init__.py" in texts and "docs/nbgrader-students.md" in texts
    assert "docs/nbgrader-students.md" in texts["README.md"]
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
         "source": (ROOT / "solutions" / "ex03_wer.py").read_text()}]}
    (tmp_path / "ex03.ipynb").write_text(json.dumps(nb))
    code = ("from autograder.nbgrader_support import check, CheckFailed\n"
            "check('ex03', 'test_edit_distance')\n"
            "try:\n    check('ex03', 'test_no_reference_words_is_a_value_error')\n"
            "except CheckFailed as e:\n    print('refused:', e)\n")
    env = dict(os.environ, PYTHONPATH=str(rel))
    res = subprocess.run([PY, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "passed: edit_distance" in res.stdout and "(3/3 points)" in res.stdout
    assert "refused:" in res.stdout and "public checks only" in res.stdout  # a hidden check is not there


def test_the_release_speaks_to_a_student_not_to_the_course_repository(rel):
    """Issue 18, item 5: no git command for a folder that is not a repository, no generator, no tests/."""
    texts = _texts(rel)
    for path, text in texts.items():
        if path.startswith(("exercises/", "lessons/README")):
            assert "GENERATED" not in text and "autograder.generate" not in text, path
            assert "instructor-only" not in text, path
    for ex in EXERCISES.values():
        first = texts[f"exercises/{ex.filename}"].splitlines()[0]
        assert first == release.STUDENT_STUB_HEADER.format(id=ex.id).strip()
        assert "YOUR CODE HERE" in first
    assert texts["exercises/Makefile"].startswith("# `make grade` works here too")
    readme = texts["exercises/README.md"]
    assert "git checkout" not in readme and "## Starting again" in readme
    lessons = texts["lessons/README.md"]
    assert "tests/" not in lessons and "--exercises solutions" not in lessons and "solutions/" not in lessons
    assert "DS2_EXERCISES" in lessons and "make lessons" in lessons
    # the course repository keeps its own wording (generate --check compares against it)
    assert (ROOT / "exercises" / "ex04_ctc_loss.py").read_text().startswith("# GENERATED from solutions/")
    assert "git checkout" in (ROOT / "exercises" / "README.md").read_text()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_the_release_setup_filters_pips_warnings_like_the_course(rel):
    res = subprocess.run(["make", "-n", "-B", "setup"], cwd=rel, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    installs = [line for line in res.stdout.splitlines() if "pip install" in line and "--index-url" not in line]
    assert len(installs) == 2, res.stdout
    course = (ROOT / "Makefile").read_text()
    noise = "is ignored: it is neither"
    assert f'grep -v "{noise}"' in course
    assert all(f'grep -v "{noise}"' in line and line.rstrip().endswith("|| true") for line in installs), installs
    assert "import torch, numpy" in res.stdout   # a failed install still stops setup
