"""Build an nbgrader course directory from ``solutions/`` and the autograder's checks.

    python -m autograder nbgrader DIR [--only ex03,ex11] [--course-id ID] [--no-hidden] [--force]
    python -m autograder nbgrader --to-py OUT NOTEBOOK_OR_FOLDER ...   # notebooks -> exNN_*.py

writes::

    DIR/nbgrader_config.py          course id, timeouts, code stub, IgnorePattern, feedback without hidden tests
    DIR/source/exNN/exNN.ipynb      one assignment per exercise (ex01 .. ex11)
    DIR/README.md                   what this folder is; the guide is autograder/classroom/NBGRADER.md

Each notebook is its solution file cut at top-level statements: a read-only intro (the module
docstring and the points of every check), locked read-only cells for the given code (imports,
constants, helpers), one autograded-answer cell per graded function or class holding the
solution between ``### BEGIN SOLUTION`` / ``### END SOLUTION``, and after it one locked
autograder-test cell per check of ``autograder/checks/test_exNN_*.py`` with that check's points.
A test cell calls :func:`autograder.nbgrader_support.check`, which grades the notebook's code
with the CLI autograder: the nbgrader score of a notebook is the CLI score of the same code.

``--to-py`` rebuilds ``exNN_<topic>.py`` files from notebooks (submitted or autograded) so that a
class can also be graded with ``python -m autograder batch`` (the trusted path: student code never
shares a process with the grader there).

The build is deterministic; an existing file that would change is refused unless ``--force``
(a course that has run ``generate_assignment`` keeps its cells' checksums in ``gradebook.db``).
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..generate import BEGIN_SOLUTION, END_SOLUTION, SOLUTIONS_DIR, exercise_id
from ..spec import EXERCISES
from ..grading.visibility import hidden_names

__all__ = ["CheckInfo", "checks_of", "build_notebook", "build_course", "config_text", "notebooks_to_py",
           "HIDDEN_CHECKS", "grade_id_of_check", "DEFAULT_COURSE_ID", "CODE_STUB", "main"]

CHECKS_DIR = Path(__file__).resolve().parents[1] / "checks"
DEFAULT_COURSE_ID = "deepspeech2"
CODE_STUB = '# YOUR CODE HERE\nraise NotImplementedError("replace this line with your code")'
NBGRADER_SCHEMA = 3

#: Checks released as nbgrader hidden tests (``### BEGIN HIDDEN TESTS``): the checks marked
#: ``@pytest.mark.hidden`` in ``autograder/checks`` (:mod:`autograder.grading.visibility`, the one place that
#: says which checks are hidden).  Students see a test cell worth the same points that runs only when
#: the notebook is graded.
HIDDEN_CHECKS = hidden_names()

#: stderr that nbgrader drops before scoring (IgnorePattern): Python warnings raised inside
#: torch/numpy and torch's C++ warnings ("[W...] Warning: ...").
IGNORE_PATTERN = (r"(?m)(^\S*(torch|numpy|IPython|ipykernel|jupyter_client)\S*\.py:\d+: \w*Warning\b"
                  r"|^\[W[^\]]*\] Warning: |^\s*warnings\.warn\()")


@dataclass(frozen=True)
class CheckInfo:
    name: str          # test_ctc_loss_values
    title: str         # first line of its docstring
    points: float
    uses: tuple        # graded names it mentions, in order of appearance
    hidden: bool = False


def _points_of(fn: ast.FunctionDef) -> float | None:
    for d in fn.decorator_list:
        if (isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "points"
                and d.args and isinstance(d.args[0], ast.Constant)):
            return float(d.args[0].value)
    return None


def checks_of(exercise: str, hidden: bool = True) -> list[CheckInfo]:
    """The checks of one exercise, in file order, read from its check module (not imported)."""
    ex = EXERCISES[exercise]
    tree = ast.parse((CHECKS_DIR / ex.check_module).read_text(encoding="utf-8"))
    out = []
    for node in tree.body:
        if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
            continue
        points = _points_of(node)
        if points is None:
            continue
        doc = (ast.get_docstring(node) or node.name).strip().splitlines()[0].strip()
        uses = []
        for sub in ast.walk(node):
            if isinstance(sub, ast.Constant) and sub.value in ex.graded and sub.value not in uses:
                uses.append(sub.value)
        out.append(CheckInfo(node.name, doc, points, tuple(uses), hidden and node.name in HIDDEN_CHECKS))
    return out


# ----------------------------------------------------------------------------- notebook cells
def _cell_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", text)[:64]


def _meta(grade_id: str, *, grade: bool, solution: bool, locked: bool, points: float | None = None) -> dict:
    nbg = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": NBGRADER_SCHEMA,
           "solution": solution}
    if grade:
        nbg["points"] = points
    return {"nbgrader": nbg}


def _markdown(grade_id: str, text: str) -> dict:
    return {"cell_type": "markdown", "id": _cell_id(grade_id), "source": text,
            "metadata": _meta(grade_id, grade=False, solution=False, locked=True)}


def _code(grade_id: str, text: str, **kw) -> dict:
    return {"cell_type": "code", "id": _cell_id(grade_id), "source": text, "execution_count": None,
            "outputs": [], "metadata": _meta(grade_id, **kw)}


def _split(source: str) -> tuple[str, list[tuple[str, bool, str | None]]]:
    """(module docstring, [(code, holds_a_solution, graded_name)]) cut at top-level statements;
    consecutive statements without a solution region are merged into one given cell."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    doc = ast.get_docstring(tree) or ""
    body = list(tree.body)
    start = 0
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        start = body[0].end_lineno
        body = body[1:]
    chunks: list[tuple[str, bool, str | None]] = []
    for node in body:
        end = node.end_lineno
        text = "".join(lines[start:end])
        start = end
        has_solution = BEGIN_SOLUTION in text
        name = getattr(node, "name", None)
        if not has_solution and chunks and not chunks[-1][1]:
            chunks[-1] = (chunks[-1][0] + text, False, None)
        else:
            chunks.append((text, has_solution, name if has_solution else None))
    tail = "".join(lines[start:])
    if tail.strip():
        chunks.append((tail, False, None))
    return doc, [(t.strip("\n") + "\n", s, n) for t, s, n in chunks if t.strip()]


_GRADE_YOUR_WORK = re.compile(r"\n*Grade your work.*?(?=\n\n(?! )|\Z)", re.DOTALL)
_WRITE_ONLY = re.compile(r"\n*Write your code only between.*?(?=\n\n|\Z)", re.DOTALL)


def _intro(exercise: str, doc: str, checks: list[CheckInfo]) -> str:
    ex = EXERCISES[exercise]
    lines = doc.strip().splitlines()
    title = lines[0].strip() if lines else f"{exercise} — {ex.title}"
    rest = "\n".join(lines[1:]).strip("\n")
    rest = _WRITE_ONLY.sub("", _GRADE_YOUR_WORK.sub("", rest)).strip()
    total = sum(c.points for c in checks)
    rows = "\n".join(f"| {'hidden test (runs when your notebook is graded)' if c.hidden else c.title} "
                     f"| {c.points:g} |" for c in checks)
    return (f"# {title}\n\n{rest}\n\n"
            f"## How this notebook works\n\n"
            f"Fill in every cell that says `# YOUR CODE HERE` (replace the `raise NotImplementedError(...)` "
            f"line); leave the signatures, the input checks above the stub and the `return` below it. "
            f"The read-only cells are given code. Each test cell below an answer runs one check of the "
            f"course autograder on the code of this notebook **as saved**: save (Ctrl-S), then run the "
            f"cell, or *Validate* the whole notebook. Cells you add are part of your code; IPython magics are not.\n\n"
            f"Use only `torch`, `numpy`, `math` and the standard library; never import `reference`, "
            f"`solutions` or `autograder` in your code (the grader gives the exercise 0 if you do).\n\n"
            f"| check | points |\n| --- | --- |\n{rows}\n| **total** | **{total:g}** |\n")


def build_notebook(exercise: str, solution_source: str, hidden: bool = True) -> dict:
    """The nbgrader source notebook of one exercise (a dict in nbformat 4.5)."""
    checks = checks_of(exercise, hidden=hidden)
    doc, chunks = _split(solution_source)
    cells = [_markdown(f"{exercise}-intro", _intro(exercise, doc, checks))]
    answer_at: dict[str, int] = {}
    answers: list[list[dict]] = []            # per chunk: the cells to emit after it
    for i, (text, has_solution, name) in enumerate(chunks):
        if has_solution:
            answer_at[name] = i
        answers.append([])
    last = len(chunks) - 1
    for c in checks:
        at = max((answer_at[u] for u in c.uses if u in answer_at), default=last)
        answers[at].append(c)
    given_no = 0
    for i, (text, has_solution, name) in enumerate(chunks):
        if has_solution:
            cells.append(_code(f"{exercise}-{name}", text, grade=False, solution=True, locked=False))
        else:
            given_no += 1
            cells.append(_code(f"{exercise}-given-{given_no}", text, grade=False, solution=False, locked=True))
        for c in answers[i]:
            cells.append(_code(grade_id_of_check(exercise, c, checks), _test_source(exercise, c), grade=True,
                               solution=False, locked=True, points=c.points))
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4, "nbformat_minor": 5,
    }


def grade_id_of_check(exercise: str, c: CheckInfo, checks: list[CheckInfo]) -> str:
    """``exNN-test_name``; a hidden check is ``exNN-hidden-K`` (the id is shown in the feedback)."""
    if not c.hidden:
        return f"{exercise}-{c.name}"
    return f"{exercise}-hidden-{[h.name for h in checks if h.hidden].index(c.name) + 1}"


def _test_source(exercise: str, c: CheckInfo) -> str:
    pts = f"{c.points:g} point{'s' if c.points != 1 else ''}"
    if c.hidden:
        return (f"# {exercise} · {pts} · hidden test (it runs when your notebook is graded)\n"
                f"### BEGIN HIDDEN TESTS\n"
                f"from autograder.nbgrader_support import check\n"
                f"check({exercise!r}, {c.name!r}, hidden=True)\n"
                f"### END HIDDEN TESTS")
    return (f"# {exercise} · {pts} · {c.title}\n"
            f"from autograder.nbgrader_support import check\n"
            f"check({exercise!r}, {c.name!r})")


# ----------------------------------------------------------------------------- the course
REPO_ROOT = Path(__file__).resolve().parents[2]


def config_text(course_id: str = DEFAULT_COURSE_ID, repo: str | Path = REPO_ROOT) -> str:
    stub = json.dumps(CODE_STUB)
    return f'''# nbgrader configuration of the Deep Speech 2 course, written by `python -m autograder nbgrader`.
# Run every nbgrader command from this folder (nbgrader reads ./nbgrader_config.py), with the course's
# Python environment (the kernel must import torch and the `autograder` package).
# Guide: autograder/classroom/NBGRADER.md
import os

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import ClearHiddenTests, GetGrades

c = get_config()  # noqa: F821

# The course repository: its `autograder` (the test cells' bridge) and `reference` (the oracle) must
# be importable by the kernels nbgrader starts.  Put on PYTHONPATH here (kernels inherit it), unless
# the course package is installed (`make setup` installs it into .venv).  Override: DS2_COURSE_REPO.
COURSE_REPO = os.environ.get("DS2_COURSE_REPO", {str(repo)!r})
if os.path.isdir(os.path.join(COURSE_REPO, "autograder")):
    _path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if COURSE_REPO not in _path:
        os.environ["PYTHONPATH"] = os.pathsep.join([COURSE_REPO] + _path)

c.CourseDirectory.course_id = {course_id!r}
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))

# Released stubs look like the course's own: "# YOUR CODE HERE" then a NotImplementedError.
c.ClearSolutions.code_stub = {{"python": {stub}}}

# One test cell grades the whole exercise with the CLI autograder (torch, a worker process; the
# training exercise takes the longest): give a cell minutes, not nbgrader's default 30 s.
c.Execute.timeout = 900
c.Execute.startup_timeout = 120

# A test cell with stderr output scores 0 in nbgrader: drop torch/numpy warnings before scoring.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = {IGNORE_PATTERN!r}

# A deleted test cell is put back and run at autograde time (an edited one is restored from the
# gradebook by its checksum anyway), so deleting or editing a test cell never earns its points.
c.OverwriteCells.add_missing_cells = True

# nbgrader shows hidden tests in the feedback by design (jupyter/nbgrader#917): strip them.  The
# test cells' failures are one line without a traceback, so no hidden source reaches the HTML.
c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, CSSHTMLHeaderPreprocessor]

# Students receive and submit through the exchange (JupyterHub or one shared machine), or you
# release files yourself and collect an LMS download with `nbgrader zip_collect` (see the guide).
# c.Exchange.root = "/srv/nbgrader/exchange"
# c.ZipCollectApp.archive_directory = "downloaded/{{assignment_id}}/archive"
# c.FileNameCollectorPlugin.named_regexp = r".*_(?P<student_id>\\w+)_attempt_(?P<timestamp>[0-9\\-]+)_(?P<file_id>.*)"
'''


_README = """# nbgrader course: {course_id}

Generated by `python -m autograder nbgrader` from the course's `solutions/` and the autograder's
checks (`autograder/checks/`). One assignment per exercise in `source/exNN/exNN.ipynb`; their test
cells grade with the course autograder, so a notebook's nbgrader score is the CLI score of the
same code. Run nbgrader from this folder, in the course's Python environment.

The step-by-step guide (release, collect, autograde, feedback, grades.csv) is
`autograder/classroom/NBGRADER.md` in the course repository.
"""


def _solution_files(solutions_dir: Path) -> dict[str, Path]:
    return {exercise_id(p.name): p for p in sorted(Path(solutions_dir).glob("ex*.py")) if exercise_id(p.name)}


def render_course(only: list[str] | None = None, course_id: str = DEFAULT_COURSE_ID, hidden: bool = True,
                  solutions_dir: str | Path = SOLUTIONS_DIR) -> dict[str, str]:
    """``{relative path: text}`` of everything :func:`build_course` writes."""
    files = _solution_files(Path(solutions_dir))
    out = {"nbgrader_config.py": config_text(course_id), "README.md": _README.format(course_id=course_id)}
    for ex in EXERCISES:
        if only and ex not in only:
            continue
        if ex not in files:
            raise FileNotFoundError(f"no solutions/{EXERCISES[ex].filename}")
        source = files[ex].read_text(encoding="utf-8")
        if END_SOLUTION not in source:
            raise ValueError(f"{files[ex]} has no {BEGIN_SOLUTION} region")
        nb = build_notebook(ex, source, hidden=hidden)
        out[f"source/{ex}/{ex}.ipynb"] = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    return out


class BuildError(Exception):
    pass


def build_course(directory: str | Path, only: list[str] | None = None, course_id: str = DEFAULT_COURSE_ID,
                 hidden: bool = True, force: bool = False, solutions_dir: str | Path = SOLUTIONS_DIR) -> list[Path]:
    """Write the course into ``directory``; return the paths written (unchanged files are left alone)."""
    directory = Path(directory)
    rendered = render_course(only, course_id, hidden, solutions_dir)
    changed = []
    for rel, text in rendered.items():
        path = directory / rel
        if path.exists() and path.read_text(encoding="utf-8") != text:
            changed.append(rel)
    if changed and not force:
        raise BuildError(f"{directory}: would change {', '.join(changed)}; rerun with --force (after "
                         "generate_assignment, changing a notebook changes its cells' checksums)")
    written = []
    for rel, text in rendered.items():
        path = directory / rel
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        written.append(path)
    return written


def notebooks_to_py(out_dir: str | Path, inputs: list[str]) -> list[tuple[str, Path]]:
    """Rebuild ``exNN_<topic>.py`` from notebooks named ``exNN.ipynb``.  A folder is searched
    recursively; with nbgrader's layout ``<root>/<student>/<exNN>/exNN.ipynb`` (``submitted/`` or
    ``autograded/``) each student gets ``out_dir/<student>/``, ready for ``python -m autograder batch``."""
    from ..nbgrader_support import module_of_notebook_file

    found: list[tuple[Path, Path]] = []
    for item in inputs:
        p = Path(item)
        if p.is_file():
            found.append((p, Path(".")))
        elif p.is_dir():
            for nb in sorted(p.rglob("ex[0-9][0-9].ipynb")):
                if ".ipynb_checkpoints" in nb.parts:
                    continue
                rel = nb.parent.relative_to(p)
                student = rel.parent if rel.name == nb.stem and len(rel.parts) >= 2 else rel
                found.append((nb, student))
        else:
            raise FileNotFoundError(item)
    written = []
    for nb, student in found:
        ex = EXERCISES.get(nb.stem)
        if ex is None:
            continue
        target = Path(out_dir) / student / ex.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(module_of_notebook_file(str(nb)), encoding="utf-8")
        written.append((str(nb), target))
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m autograder nbgrader",
        description="Build an nbgrader course directory (nbgrader_config.py, source/exNN/exNN.ipynb) from solutions/ "
                    "and the autograder's checks; see autograder/classroom/NBGRADER.md.")
    p.add_argument("directory", nargs="?", help="the course directory to write (e.g. build/nbgrader-course)")
    p.add_argument("--only", help="exercises to include, e.g. ex03,ex11 (default: all 11)")
    p.add_argument("--course-id", default=DEFAULT_COURSE_ID, help=f"nbgrader course id (default {DEFAULT_COURSE_ID})")
    p.add_argument("--no-hidden", action="store_true", help="release every check as a visible test")
    p.add_argument("--force", action="store_true", help="overwrite files that would change")
    p.add_argument("--to-py", nargs="+", metavar=("OUT", "NOTEBOOK"),
                   help="instead of building: rebuild exNN_*.py from notebooks (files or nbgrader folders such as "
                        "submitted/) into OUT, one sub-folder per student, for `python -m autograder batch`")
    args = p.parse_args(argv)
    if args.to_py:
        if len(args.to_py) < 2 or args.directory:
            p.error("--to-py OUT NOTEBOOK_OR_FOLDER ...")
        try:
            written = notebooks_to_py(args.to_py[0], args.to_py[1:])
        except FileNotFoundError as e:
            p.error(f"{e}: no such file or directory")
        for nb, py in written:
            print(f"{nb} -> {py}")
        print(f"wrote {len(written)} exercise file(s) under {args.to_py[0]}")
        return 0
    if not args.directory:
        p.error("the course directory is required")
    only = None
    if args.only:
        only = []
        for part in re.split(r"[,\s]+", args.only.strip()):
            if not part:
                continue
            part = f"ex{int(part):02d}" if part.isdigit() else part.lower()
            if part not in EXERCISES:
                p.error(f"unknown exercise {part!r} (expected ex01 .. ex11)")
            only.append(part)
    try:
        written = build_course(args.directory, only=only, course_id=args.course_id, hidden=not args.no_hidden,
                               force=args.force)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n = len(only) if only else len(EXERCISES)
    print(f"nbgrader course {args.course_id!r} in {args.directory}: {n} assignment(s), "
          f"{len(written)} file(s) written")
    print(f"next: cd {args.directory} && nbgrader generate_assignment ex01 (see autograder/classroom/NBGRADER.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
