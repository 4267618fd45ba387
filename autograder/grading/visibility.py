"""Public and hidden checks: the one place that says which is which is the check itself.

A check is **hidden** when its function carries ``@pytest.mark.hidden`` (registered in
``checks/pytest.ini``); every other check is public.  Students see the public checks (the student
release ships only those: ``python -m autograder release``); an instructor's grading runs both
(the full repository, ``batch``, the Gradescope package, nbgrader).  A hidden check's failure is
reported to students by its title and pass/fail only, never with its inputs: Gradescope
``"visibility": "after_published"`` and a one-line output, feedback files by title, nbgrader hidden
tests (``HIDDEN_CHECKS`` in :mod:`autograder.classroom.nbgrader` comes from here).

The markers are read from the check modules' source (``ast``), not by importing them, so this
module is light (the kernel of an nbgrader notebook, the CSV writer and the release builder use it).
"""
from __future__ import annotations

import ast
import functools
import os
from dataclasses import dataclass

from ..spec import EXERCISES

CHECKS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "checks")


@dataclass(frozen=True)
class CheckSpec:
    exercise: str
    name: str          # the check's function name
    title: str         # first line of its docstring
    points: float
    hidden: bool


def _mark(dec: ast.expr) -> str | None:
    """``pytest.mark.NAME`` or ``pytest.mark.NAME(...)`` -> NAME."""
    node = dec.func if isinstance(dec, ast.Call) else dec
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "mark":
        return node.attr
    return None


def is_hidden_def(fn: ast.FunctionDef) -> bool:
    return any(_mark(d) == "hidden" for d in fn.decorator_list)


def _points(fn: ast.FunctionDef) -> float | None:
    for d in fn.decorator_list:
        if isinstance(d, ast.Call) and _mark(d) == "points" and d.args and isinstance(d.args[0], ast.Constant):
            return float(d.args[0].value)
    return None


def checks_in_source(exercise: str, source: str) -> list[CheckSpec]:
    out = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            points = _points(node)
            if points is None:
                continue
            doc = (ast.get_docstring(node) or node.name).strip().splitlines()[0].strip()
            out.append(CheckSpec(exercise, node.name, doc, points, is_hidden_def(node)))
    return out


@functools.lru_cache(maxsize=4)
def _all(checks_dir: str) -> tuple[CheckSpec, ...]:
    out: list[CheckSpec] = []
    for ex in EXERCISES.values():
        path = os.path.join(checks_dir, ex.check_module)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                out += checks_in_source(ex.id, f.read())
    return tuple(out)


def all_checks(checks_dir: str = CHECKS_DIR) -> list[CheckSpec]:
    """Every check of the course (of this copy of it: a student release has no hidden ones)."""
    return list(_all(checks_dir))


def hidden_names(checks_dir: str = CHECKS_DIR) -> frozenset[str]:
    return frozenset(c.name for c in _all(checks_dir) if c.hidden)


def is_hidden(exercise: str, name: str, checks_dir: str = CHECKS_DIR) -> bool:
    return any(c.hidden and c.exercise == exercise and c.name == name for c in _all(checks_dir))


def points(checks_dir: str = CHECKS_DIR) -> dict[str, float]:
    """``{"public": ..., "hidden": ...}``: the points of each kind."""
    out = {"public": 0.0, "hidden": 0.0}
    for c in _all(checks_dir):
        out["hidden" if c.hidden else "public"] += c.points
    return out
