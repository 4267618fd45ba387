"""The points of the course add up to 100; every check has exactly one points marker; ids agree."""
from __future__ import annotations

import ast
from pathlib import Path

from autograder.spec import EXERCISES, TOTAL_POINTS, exercise_of_file

CHECKS = Path(__file__).resolve().parents[1] / "autograder" / "checks"


def _marks(fn: ast.FunctionDef, name: str):
    out = []
    for d in fn.decorator_list:
        if isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == name:
            out.append(d.args[0].value)
    return out


def _checks():
    per_ex = {}
    for ex in EXERCISES.values():
        path = CHECKS / ex.check_module
        assert path.exists(), f"missing {path.name}"
        tree = ast.parse(path.read_text())
        marks = [n for n in tree.body if isinstance(n, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)]
        assert marks and repr(ex.id) in ast.unparse(marks[0].value), f"{path.name}: pytestmark exercise({ex.id!r})"
        fns = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
        per_ex[ex.id] = fns
    return per_ex


def test_points_total_100():
    total = 0
    for ex, fns in _checks().items():
        assert fns, f"{ex} has no checks"
        for fn in fns:
            pts = _marks(fn, "points")
            assert len(pts) == 1 and pts[0] > 0, f"{ex} {fn.name}: needs exactly one @pytest.mark.points(n)"
            assert ast.get_docstring(fn), f"{ex} {fn.name}: needs a docstring (its title on the scoreboard)"
            total += pts[0]
    assert total == TOTAL_POINTS == 100


def test_file_names_map_to_exercises():
    assert exercise_of_file("ex04_ctc_loss.py").id == "ex04"
    assert exercise_of_file("ex04_whatever.py").id == "ex04"
    assert exercise_of_file("ex12_nope.py") is None
    assert exercise_of_file("conftest.py") is None
    for ex in EXERCISES.values():
        assert exercise_of_file(ex.filename) is ex


def test_static_scan_finds_forbidden_names_by_line():
    from autograder.grading.scan import scan_source

    src = ("import torch\nimport torch.nn.functional as F\nfrom torch import nn\n"
           "def f(x, y):\n    return F.ctc_loss(x, y, 1, 1)\n"
           "def g():\n    return nn.GRU(3, 4)\n"
           "def h(x):\n    return x.stft(320)\n"
           "import jiwer\n"
           "def k():\n    return __import__('reference')\n"
           "if __name__ == '__main__':\n    import reference\n")
    for ex, line, word in [("ex04", 5, "ctc_loss"), ("ex06", 7, "GRU"), ("ex01", 9, "stft"), ("ex03", 10, "jiwer"),
                           ("ex02", 12, "reference")]:
        found = scan_source(src, EXERCISES[ex])
        assert any(f.line == line and word in f.what for f in found), (ex, found)
        assert not any(f.line == 14 for f in found)  # the __main__ block is the student's own experiment
    assert scan_source("import torch\nx = torch.fft.rfft\n", EXERCISES["ex01"]) == []


def test_each_check_module_states_its_exercise_total():
    """The module docstring's "(N points)" is the sum of its checks' points (docs/checks.md repeats it)."""
    import re

    docs = (CHECKS.parents[1] / "docs" / "checks.md").read_text()
    for ex, fns in _checks().items():
        tree = ast.parse((CHECKS / EXERCISES[ex].check_module).read_text())
        m = re.search(r"\((\d+) points\)", ast.get_docstring(tree) or "")
        assert m, f"{ex}: the module docstring should say '(N points)'"
        total = sum(_marks(fn, "points")[0] for fn in fns)
        assert int(m.group(1)) == total, (ex, m.group(1), total)
        assert re.search(rf"^## {ex} .*\({total} points\)$", docs, re.M), f"docs/checks.md: {ex} ({total} points)"
