"""Lessons teach; they never hand over a graded function.

No lesson defines a graded name (under its own name, ``my_<name>`` or any other), and no function a
lesson defines has the same normalised syntax tree as a solution's or the reference's graded
function: names of arguments and locals, docstrings, annotations and comments do not count.
"""
from __future__ import annotations

import ast
import difflib
import inspect
import re
import textwrap

import nbformat
import pytest

import reference
from autograder.spec import EXERCISES
from tools.run_lessons import ROOT, lesson_paths

GRADED = sorted({n for ex in EXERCISES.values() for n in ex.graded})
PATHS = lesson_paths()


def lesson_source(path) -> str:
    """The code cells of a notebook as one Python module (IPython magics and shell lines dropped)."""
    nb = nbformat.read(path, as_version=4)
    cells = []
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        lines = [ln for ln in c.source.splitlines() if not re.match(r"\s*[%!]", ln)]
        cells.append("\n".join(lines))
    return "\n\n".join(cells)


class _Normalise(ast.NodeTransformer):
    """Rename every argument and local name to its order of first appearance; drop docstrings,
    annotations and type comments; keep attribute names, calls and constants (the algorithm)."""

    def __init__(self):
        self.names: dict[str, str] = {}

    def _rename(self, name: str) -> str:
        return self.names.setdefault(name, f"v{len(self.names)}")

    def visit_FunctionDef(self, node):
        node.name = "f"
        node.returns = None
        node.decorator_list = []
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:] or [ast.Pass()]
        node.body = body
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_arg(self, node):
        node.arg = self._rename(node.arg)
        node.annotation = None
        return node

    def visit_Name(self, node):
        node.id = self._rename(node.id)
        return node

    def visit_AnnAssign(self, node):
        new = ast.Assign(targets=[node.target], value=node.value or ast.Constant(None))
        return self.generic_visit(new)


def normalised(fn: ast.FunctionDef) -> str:
    tree = _Normalise().visit(ast.parse(ast.unparse(fn)))
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def functions(tree) -> list[ast.FunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _solution_trees() -> dict[str, str]:
    """normalised tree -> where it comes from, for every function of solutions/ and the reference's graded names."""
    out = {}
    for path in sorted((ROOT / "solutions").glob("ex*.py")):
        src = path.read_text(encoding="utf-8").replace("### BEGIN SOLUTION", "").replace("### END SOLUTION", "")
        for fn in functions(ast.parse(src)):
            body = [s for s in fn.body if not (isinstance(s, ast.Expr) and isinstance(getattr(s, "value", None), ast.Constant))]
            if len(body) >= 2:  # a one-line helper is not an implementation worth matching
                out[normalised(fn)] = f"solutions/{path.name}:{fn.name}"
    for name in GRADED:
        obj = getattr(reference, name)
        src = textwrap.dedent(inspect.getsource(obj))
        for fn in functions(ast.parse(src)):
            body = [s for s in fn.body if not (isinstance(s, ast.Expr) and isinstance(getattr(s, "value", None), ast.Constant))]
            if len(body) >= 2:
                out[normalised(fn)] = f"reference.{name} ({fn.name})"
    return out


SOLUTION_TREES = _solution_trees()


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_lesson_defines_no_graded_name(path):
    tree = ast.parse(lesson_source(path))
    defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))}
    defined |= {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) and isinstance(n.value, ast.Lambda)
                for t in n.targets if isinstance(t, ast.Name)}
    bad = sorted(d for d in defined for g in GRADED if d == g or d == f"my_{g}" or d.endswith(f"_{g}") and d != g)
    assert not bad, f"{path.name} defines graded names (or twins of them): {bad}; call the reference or yourturn instead"


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_lesson_has_no_copy_of_a_solution(path):
    tree = ast.parse(lesson_source(path))
    copies = [(fn.name, fn.lineno, SOLUTION_TREES[normalised(fn)]) for fn in functions(tree)
              if normalised(fn) in SOLUTION_TREES]
    assert not copies, f"{path.name} defines functions that are a solution under another name: {copies}"


def test_normalisation_sees_through_renaming():
    a = ast.parse("def my_collapse(ids, blank=0):\n    'doc'\n    out = []\n    for i in ids:\n        out.append(i)\n"
                  "    return out\n").body[0]
    b = ast.parse("def squash(seq, b: int = 0) -> list:\n    res: list = []\n    for x in seq:\n        res.append(x)\n"
                  "    return res\n").body[0]
    c = ast.parse("def squash(seq, b=0):\n    res = []\n    for x in seq:\n        res.append(-x)\n    return res\n").body[0]
    assert normalised(a) == normalised(b)
    assert normalised(a) != normalised(c)


# ----------------------------------------------------------------------------- near copies
def node_sequence(node) -> list[str]:
    """The shape of a piece of code: node types in walk order (attribute names kept: ``.logsumexp``)."""
    return [type(n).__name__ + (":" + n.attr if isinstance(n, ast.Attribute) else "")
            for n in ast.walk(ast.parse(ast.unparse(node)))]


def solution_regions() -> dict[str, list[str]]:
    """Each ``### BEGIN SOLUTION`` region of solutions/, as a node sequence: the code a student writes."""
    out = {}
    for path in sorted((ROOT / "solutions").glob("ex*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        starts = [i for i, ln in enumerate(lines) if ln.strip() == "### BEGIN SOLUTION"]
        for k, i in enumerate(starts):
            j = next(j for j in range(i, len(lines)) if lines[j].strip() == "### END SOLUTION")
            body = textwrap.dedent("\n".join(lines[i + 1:j]))
            try:
                tree = ast.parse("def region():\n" + textwrap.indent(body or "pass", "    "))
            except SyntaxError:
                continue
            seq = node_sequence(tree.body[0])
            if len(seq) >= 40:
                out[f"solutions/{path.name} region {k + 1} (line {i + 1})"] = seq
    return out


REGIONS = solution_regions()
#: how alike two node sequences may be (difflib ratio); the lessons' own helpers sit below 0.6
NEAR_COPY = 0.8


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_lesson_has_no_near_copy_of_a_solution(path):
    tree = ast.parse(lesson_source(path))
    near = []
    for fn in functions(tree):
        seq = node_sequence(fn)
        if len(seq) < 40:
            continue
        for where, region in REGIONS.items():
            if len(region) > 2.5 * len(seq) or len(seq) > 2.5 * len(region):
                continue
            ratio = difflib.SequenceMatcher(None, seq, region, autojunk=False).ratio()
            if ratio >= NEAR_COPY:
                near.append((fn.name, where, round(ratio, 2)))
    assert not near, f"{path.name} defines functions that are nearly a solution region: {near}"
