"""The nbgrader course (``python -m autograder nbgrader DIR``): same code, same score.

Fast tests check the generated course (cells, points, config, the notebook -> module rebuild).
The end-to-end test (``slow``) runs nbgrader's own commands on a throwaway course with two
exercises, **ex03** (word error rate) and **ex11** (row convolution, which has a hidden test):
generate_assignment, validate, autograde, generate_feedback and export, for four students:

* alice: the solutions (full marks), bob: the released stubs untouched (0),
* carol: plausible bugs (ex03: a cell she added that averages per-utterance WERs; ex11: a row
  convolution that forgets its last tap, in her answer cell),
* dave (ex11 only): carol's ex11 code, one test cell edited to ``print("passed")`` and one deleted.

Every nbgrader score in ``grades.csv`` must equal the CLI autograder's score of the same code
(``python -m autograder`` on the ``exNN_*.py`` rebuilt from the submitted notebook).  The full
pipeline for all 11 exercises is the same code path, only slower (about 15 s per notebook).
"""
from __future__ import annotations

import ast
import copy
import csv
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from autograder.classroom import nbgrader as NB
from autograder.nbgrader_support import notebook_to_module
from autograder.spec import EXERCISES, TOTAL_POINTS

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
E2E = ("ex03", "ex11")


def _env(tmp: Path | None = None) -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(PY) + os.pathsep + env.get("PATH", "")    # nbgrader runs `alembic`
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONWARNINGS"] = "ignore"
    if tmp is not None:                                                     # no user/global Jupyter config
        env["JUPYTER_CONFIG_DIR"] = str(tmp / "jupyter-config")
        env["JUPYTER_DATA_DIR"] = str(tmp / "jupyter-data")
    for k in ("NBGRADER_EXECUTION", "NBGRADER_VALIDATING", "AUTOGRADER_NBGRADER_NOTEBOOK"):
        env.pop(k, None)
    return env


# ============================================================================= fast tests
@pytest.fixture(scope="module")
def rendered():
    return NB.render_course()


def _cells(text: str) -> list[dict]:
    return json.loads(text)["cells"]


def test_one_test_cell_per_check_with_the_same_points(rendered):
    total = 0.0
    for ex in EXERCISES:
        cells = _cells(rendered[f"source/{ex}/{ex}.ipynb"])
        tests = {c["metadata"]["nbgrader"]["grade_id"]: c for c in cells if c["metadata"]["nbgrader"]["grade"]}
        checks = NB.checks_of(ex)
        assert checks, ex
        assert set(tests) == {NB.grade_id_of_check(ex, c, checks) for c in checks}
        for c in checks:
            cell = tests[NB.grade_id_of_check(ex, c, checks)]
            assert c.hidden == (c.name in NB.HIDDEN_CHECKS) and (c.name in cell["metadata"]["nbgrader"]["grade_id"]) != c.hidden
            assert cell["metadata"]["nbgrader"]["points"] == c.points
            assert cell["metadata"]["nbgrader"]["locked"] and not cell["metadata"]["nbgrader"]["solution"]
            assert f"check({ex!r}, {c.name!r}" in cell["source"]
            assert ("### BEGIN HIDDEN TESTS" in cell["source"]) == (c.name in NB.HIDDEN_CHECKS)
            total += c.points
        ids = [c["metadata"]["nbgrader"]["grade_id"] for c in cells]
        assert len(ids) == len(set(ids)) and len({c["id"] for c in cells}) == len(cells)
        answers = [c for c in cells if c["metadata"]["nbgrader"]["solution"]]
        assert answers and all("### BEGIN SOLUTION" in c["source"] for c in answers)
    assert total == TOTAL_POINTS


@pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")
def test_points_come_from_the_pytest_marks():
    """Cross-check the AST reading of the points with the marks pytest sees (imported modules)."""
    import importlib

    for ex in ("ex04", "ex11"):
        mod = importlib.import_module(f"autograder.checks.test_{EXERCISES[ex].module}")
        marks = {name: f.pytestmark for name, f in vars(mod).items() if name.startswith("test_") and callable(f)}
        points = {n: float(next(m.args[0] for m in ms if m.name == "points")) for n, ms in marks.items()}
        assert points == {c.name: c.points for c in NB.checks_of(ex)}


def test_notebook_module_is_the_solution(rendered):
    """The code cells of each source notebook are its solution file, statement for statement."""
    for ex, spec in EXERCISES.items():
        nb = json.loads(rendered[f"source/{ex}/{ex}.ipynb"])
        rebuilt = ast.parse(notebook_to_module(nb))
        original = ast.parse((ROOT / "solutions" / spec.filename).read_text(encoding="utf-8"))
        original.body = original.body[1:]                                  # the module docstring is the intro
        assert ast.dump(rebuilt) == ast.dump(original), ex


def test_notebook_to_module_rules():
    def cell(src, **nbg):
        return {"cell_type": "code", "source": src, "metadata": {"nbgrader": nbg} if nbg else {}}

    nb = {"cells": [
        {"cell_type": "markdown", "source": "# title", "metadata": {}},
        cell("%matplotlib inline\nimport math"),
        cell("from __future__ import annotations\nx = 1", grade=False, solution=False, locked=True),
        cell("def f():\n    return 2 % 1\n", grade=False, solution=True),
        cell("from autograder.nbgrader_support import check\ncheck('ex11', 'test_x')", grade=True, solution=False),
        cell("%%timeit\nf()"),
        cell("y = (3\n     % 2)"),
    ]}
    text = notebook_to_module(nb)
    assert "autograder" not in text.split("\n", 1)[1] and "check(" not in text
    assert text.split("\n")[1] == "from __future__ import annotations"
    assert "pass  # notebook only, not graded: %matplotlib inline" in text
    assert "# (cell magic, not graded) %%timeit" in text
    assert "y = (3\n     % 2)" in text                                     # a valid '%' line is left alone
    ns: dict = {}
    exec(compile(text, "<rebuilt>", "exec"), ns)
    assert ns["f"]() == 0 and ns["y"] == 1


def test_config_settings(tmp_path, rendered):
    from traitlets.config.loader import PyFileConfigLoader

    path = tmp_path / "nbgrader_config.py"
    path.write_text(rendered["nbgrader_config.py"])
    cfg = PyFileConfigLoader(path.name, path=str(tmp_path)).load_config()
    assert cfg.CourseDirectory.course_id == NB.DEFAULT_COURSE_ID
    assert cfg.ClearSolutions.code_stub["python"].startswith("# YOUR CODE HERE\nraise NotImplementedError(")
    assert cfg.Execute.timeout >= 600
    assert cfg.IgnorePattern.enabled and cfg.OverwriteCells.add_missing_cells
    assert "ClearHiddenTests" in [c.__name__ for c in cfg.GenerateFeedback.preprocessors]
    pattern = re.compile(cfg.IgnorePattern.pattern)
    assert pattern.search("/x/site-packages/torch/nn/modules/module.py:1: UserWarning: something\n  warnings.warn(")
    assert pattern.search("[W123 12:00:00.000 init.cpp:1] Warning: something (function x)\n")
    assert not pattern.search("Traceback (most recent call last):\nAssertionError: wrong\n")


def test_build_is_deterministic_and_refuses_changes(tmp_path, capsys):
    d = tmp_path / "course"
    assert NB.main([str(d), "--only", "ex11,3"]) == 0
    assert sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()) == [
        "README.md", "nbgrader_config.py", "source/ex03/ex03.ipynb", "source/ex11/ex11.ipynb"]
    assert NB.build_course(d, only=["ex03", "ex11"]) == []                 # same input, nothing rewritten
    nb = d / "source/ex11/ex11.ipynb"
    nb.write_text(nb.read_text().replace("row_conv", "row_conv_edited", 1))
    assert NB.main([str(d), "--only", "ex11"]) == 2
    assert "--force" in capsys.readouterr().err
    assert NB.main([str(d), "--only", "ex11", "--force"]) == 0
    assert nb.read_text() == NB.render_course(["ex11"])["source/ex11/ex11.ipynb"]


def test_cli_subcommand(tmp_path):
    r = subprocess.run([PY, "-m", "autograder", "nbgrader", str(tmp_path / "c"), "--only", "ex02", "--no-hidden"],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "c/source/ex02/ex02.ipynb").is_file()
    r = subprocess.run([PY, "-m", "autograder", "nbgrader", "--only", "ex99", str(tmp_path / "d")],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown exercise" in r.stderr


# ============================================================================= end to end
def _nbgrader(course: Path, tmp: Path, *args, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run([PY, "-m", "nbgrader", *args], cwd=course, env=_env(tmp), capture_output=True, text=True,
                       timeout=900)
    if check and r.returncode != 0:
        raise AssertionError(f"nbgrader {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    return r


def _by_id(nb: dict) -> dict[str, dict]:
    return {c["metadata"]["nbgrader"]["grade_id"]: c for c in nb["cells"] if "nbgrader" in c.get("metadata", {})}


def _strip_markers(src: str) -> str:
    return "\n".join(l for l in src.split("\n") if l.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))


MUTANT_EX03 = '''def word_error_rate(refs, hyps):
    refs, hyps = list(refs), list(hyps)
    return sum(edit_distance(r.split(), h.split()) / len(r.split()) for r, h in zip(refs, hyps)) / len(refs)
'''
MUTANT_EX11 = '''def row_conv(x, weight, lengths):
    T, B, H = x.shape
    lengths = torch.as_tensor(lengths)
    mask = (torch.arange(T)[:, None] < lengths[None, :]).unsqueeze(-1)
    x = torch.where(mask, x, torch.zeros_like(x))
    tau = weight.shape[0] - 1
    x_padded = torch.cat([x, x.new_zeros(tau, B, H)], dim=0)
    out = sum(weight[j] * x_padded[j: j + T] for j in range(tau))     # the last tap is missing
    if tau == 0:
        out = weight[0] * x
    return torch.where(mask, out, torch.zeros_like(out))
'''


def _submissions(course: Path) -> dict[str, dict[str, dict]]:
    """{student: {exercise: notebook}} made from the released notebooks, as students would."""
    out: dict[str, dict[str, dict]] = {"alice": {}, "bob": {}, "carol": {}, "dave": {}}
    for ex in E2E:
        released = json.loads((course / "release" / ex / f"{ex}.ipynb").read_text())
        source = _by_id(json.loads((course / "source" / ex / f"{ex}.ipynb").read_text()))
        solved = copy.deepcopy(released)
        for gid, cell in _by_id(solved).items():
            if cell["metadata"]["nbgrader"]["solution"]:
                assert "# YOUR CODE HERE" in "".join(cell["source"])        # the released stub
                cell["source"] = _strip_markers(source[gid]["source"])
        out["alice"][ex] = solved
        out["bob"][ex] = released
        mutant = copy.deepcopy(solved)
        if ex == "ex03":                                                   # a cell carol added herself
            at = next(i for i, c in enumerate(mutant["cells"])
                      if c["metadata"].get("nbgrader", {}).get("grade_id") == "ex03-word_error_rate")
            mutant["cells"].insert(at + 1, {"cell_type": "code", "id": "carol-own-cell", "metadata": {},
                                            "execution_count": None, "outputs": [], "source": MUTANT_EX03})
        else:                                                              # her answer cell, rewritten
            _by_id(mutant)["ex11-row_conv"]["source"] = MUTANT_EX11
        out["carol"][ex] = mutant
    tampered = copy.deepcopy(out["carol"]["ex11"])
    _by_id(tampered)["ex11-test_row_conv_values"]["source"] = 'print("passed")'
    tampered["cells"] = [c for c in tampered["cells"]
                         if c["metadata"].get("nbgrader", {}).get("grade_id") != "ex11-test_row_conv_gradient"]
    out["dave"]["ex11"] = tampered
    return out


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nbgrader")
    course = tmp / "course"
    r = subprocess.run([PY, "-m", "autograder", "nbgrader", str(course), "--only", ",".join(E2E)], cwd=ROOT,
                       env=_env(tmp), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    _nbgrader(course, tmp, "generate_assignment", "ex*", "--force")
    subs = _submissions(course)
    for student, nbs in subs.items():
        for ex, nb in nbs.items():
            d = course / "submitted" / student / ex
            d.mkdir(parents=True)
            (d / f"{ex}.ipynb").write_text(json.dumps(nb, indent=1))

    # the CLI autograder on the same code (exNN_*.py rebuilt from the submitted notebooks), in
    # the background while nbgrader works
    py = tmp / "py"
    r = subprocess.run([PY, "-m", "autograder", "nbgrader", "--to-py", str(py), str(course / "submitted")],
                       cwd=ROOT, env=_env(tmp), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr

    def cli(student):
        out = tmp / f"cli-{student}.json"
        p = subprocess.run([PY, "-m", "autograder", str(py / student), "--only", ",".join(E2E), "--json", str(out)],
                           cwd=tmp, env=_env(tmp), capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        return student, json.loads(out.read_text())

    with ThreadPoolExecutor(1) as pool:
        pending = pool.map(cli, sorted(subs))
        validate = _nbgrader(course, tmp, "validate", "submitted/alice/ex11/ex11.ipynb",
                             "submitted/dave/ex11/ex11.ipynb", check=False)
        _nbgrader(course, tmp, "autograde", "ex*", "--force")
        _nbgrader(course, tmp, "generate_feedback", "ex*", "--force")
        _nbgrader(course, tmp, "export")
        reports = dict(pending)
    with open(course / "grades.csv", newline="") as f:
        grades = {(row["student_id"], row["assignment"]): row for row in csv.DictReader(f)}
    return {"course": course, "grades": grades, "reports": reports, "subs": subs, "validate": validate, "py": py}


def _cli_score(report: dict, ex: str) -> float:
    return float(report["exercises"][ex]["score"])


@pytest.mark.slow
def test_same_code_same_score(pipeline):
    grades, reports = pipeline["grades"], pipeline["reports"]
    table = []
    for student, nbs in pipeline["subs"].items():
        for ex in E2E:
            row = grades[(student, ex)]
            max_score = sum(c.points for c in NB.checks_of(ex))
            assert float(row["max_score"]) == max_score
            nb_score = float(row["score"])
            cli = _cli_score(reports[student], ex) if ex in nbs else 0.0
            table.append((student, ex, nb_score, cli))
            assert nb_score == cli, f"{student} {ex}: nbgrader {nb_score} != CLI {cli}"
    scores = {(s, ex): n for s, ex, n, _ in table}
    for ex in E2E:
        assert scores[("alice", ex)] == sum(c.points for c in NB.checks_of(ex))   # the solutions: full marks
        assert scores[("bob", ex)] == 0                                          # the released stubs: 0
        assert 0 < scores[("carol", ex)] < scores[("alice", ex)]                 # the mutant loses some
    assert scores[("dave", "ex11")] == scores[("carol", "ex11")]                 # tampering gains nothing
    assert scores[("dave", "ex03")] == 0                                         # nothing submitted


@pytest.mark.slow
def test_solutions_rebuilt_from_notebooks_are_the_solution_files(pipeline):
    for ex in E2E:
        name = EXERCISES[ex].filename
        rebuilt = ast.parse((pipeline["py"] / "alice" / name).read_text())
        original = ast.parse((ROOT / "solutions" / name).read_text())
        original.body = original.body[1:]
        assert ast.dump(rebuilt) == ast.dump(original)


@pytest.mark.slow
def test_test_cells_write_nothing_to_stderr_and_fail_in_one_line(pipeline):
    course = pipeline["course"]
    for student, nbs in pipeline["subs"].items():
        for ex in nbs:
            nb = json.loads((course / "autograded" / student / ex / f"{ex}.ipynb").read_text())
            for gid, cell in _by_id(nb).items():
                if not cell["metadata"]["nbgrader"].get("grade"):
                    continue
                for out in cell["outputs"]:
                    assert not (out["output_type"] == "stream" and out["name"] == "stderr"), (student, gid, out)
                    if out["output_type"] == "error":
                        assert out["ename"] == "CheckFailed" and len(out["traceback"]) == 1, (student, gid, out)


@pytest.mark.slow
def test_locked_test_cells_are_restored(pipeline):
    """dave edited one test cell and deleted another: nbgrader's checksums catch both."""
    course = pipeline["course"]
    v = pipeline["validate"]
    text = v.stdout + v.stderr
    assert "THE CONTENTS OF 1 TEST CELL(S) HAVE CHANGED" in text, text[-3000:]
    assert "Success! Your notebook passes all the tests." in text             # alice's solution validates
    nb = _by_id(json.loads((course / "autograded/dave/ex11/ex11.ipynb").read_text()))
    source = _by_id(json.loads((course / "source/ex11/ex11.ipynb").read_text()))
    assert "".join(nb["ex11-test_row_conv_values"]["source"]) == source["ex11-test_row_conv_values"]["source"]
    restored = "".join(nb["ex11-test_row_conv_gradient"]["source"])
    assert "was missing from the submission" in restored and "check('ex11', 'test_row_conv_gradient')" in restored
    assert any(o["output_type"] == "error" for o in nb["ex11-test_row_conv_values"]["outputs"])


@pytest.mark.slow
def test_feedback_does_not_leak_hidden_tests(pipeline):
    course = pipeline["course"]
    hidden = next(c for c in NB.checks_of("ex11") if c.name in NB.HIDDEN_CHECKS)
    seen = 0
    for student in pipeline["subs"]:
        for html in (course / "feedback" / student).rglob("*.html"):
            text = html.read_text()
            seen += 1
            for secret in ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS", hidden.name, hidden.title):
                assert secret not in text, (html, secret)
    assert seen == 7
    bob = (course / "feedback/bob/ex11/ex11.html").read_text()
    assert "a hidden test failed" in bob
    alice = (course / "feedback/alice/ex11/ex11.html").read_text()
    assert "passed: hidden test" in alice
    # the autograded notebook (instructors only) still holds the hidden test
    assert hidden.name in (course / "autograded/alice/ex11/ex11.ipynb").read_text()
