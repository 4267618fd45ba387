"""The bridge between nbgrader's test cells and the course autograder.

Every autograder test cell of a course notebook built by ``python -m autograder nbgrader`` is::

    from autograder.nbgrader_support import check
    check("ex04", "test_ctc_loss_values")

:func:`check` reads the exercise's notebook **file** (``exNN.ipynb`` in the kernel's working
directory: nbgrader runs ``autograde`` and ``validate`` with the notebook's folder as the
working directory, and Jupyter does the same for a student), rebuilds the exercise module from
its code cells (:func:`notebook_to_module`: every code cell except the autograder test cells,
in order), writes it as ``exNN_<topic>.py`` into a temporary folder and grades it with the
sandboxed CLI autograder (``python -m autograder FILE --only exNN --json ...``) in a
subprocess.  The check passes in nbgrader exactly when it passes in the CLI, so an nbgrader
score is the CLI score of the same code.

One CLI run grades the whole exercise; its report is kept in this kernel, keyed by the SHA-256
of the rebuilt module, so the other test cells of the notebook reuse it while the code is
unchanged.  Nothing is written to stderr (nbgrader gives 0 to a test cell with stderr output):
a failed check raises :class:`CheckFailed`, shown by IPython as one line (no traceback, so a
hidden test's source never appears in the output).  Hidden checks (``hidden=True``) report only
that they failed and why in one word, not the inputs or expected values.

The student release ships this module (and only it of the nbgrader tooling): there it grades with the
release's autograder, whose checks are the public ones; the released hidden test cells hold only a
comment.  Students: ``docs/nbgrader-students.md``.

Environment: ``AUTOGRADER_NBGRADER_NOTEBOOK`` (the notebook to read instead of ``exNN.ipynb`` in
the working directory), ``AUTOGRADER_NBGRADER_TIMEOUT`` (seconds for one exercise's CLI run,
default 600), ``AUTOGRADER_PYTHON`` (the interpreter that runs the CLI, default the kernel's).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time

__all__ = ["check", "CheckFailed", "notebook_to_module", "module_of_notebook_file", "grade_module"]

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_CACHE: dict[tuple[str, str], dict] = {}
_FUTURE = re.compile(r"^from\s+__future__\s+import\s+[^\n]*$", re.MULTILINE)
_MAGIC_LINE = re.compile(r"^(\s*)([%!].*)$")

KIND_LABELS = {  # the same words as autograder.grading.runner.KIND_LABELS (not imported: the kernel stays light)
    "notimpl": "not implemented yet", "wrong": "wrong result", "error": "raised an exception",
    "timeout": "timed out", "crash": "crashed", "memory": "out of memory", "output": "printed too much",
    "exit": "exited", "forbidden": "forbidden call or import", "missing": "file missing",
    "protocol": "garbled reply", "grader": "grader error",
}


class CheckFailed(AssertionError):
    """An autograder check that did not pass (nbgrader: the test cell scores 0)."""


# ----------------------------------------------------------------------------- notebook -> module
def _is_test_cell(cell: dict) -> bool:
    nbg = (cell.get("metadata") or {}).get("nbgrader") or {}
    return bool(nbg.get("grade")) and not nbg.get("solution")


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _python_only(src: str) -> str:
    """The cell as plain Python: IPython magics and shell escapes become ``pass`` (they are not graded).

    Cells that already compile are returned unchanged (so ``%`` continuation lines are safe)."""
    try:
        compile(src, "<cell>", "exec", dont_inherit=True)
        return src
    except SyntaxError:
        pass
    lines = src.split("\n")
    if src.lstrip().startswith("%%"):
        return "\n".join("# (cell magic, not graded) " + line for line in lines)
    out = []
    for line in lines:
        m = _MAGIC_LINE.match(line)
        if m and not m.group(2).startswith("!="):
            out.append(f"{m.group(1)}pass  # notebook only, not graded: {m.group(2)}")
        else:
            out.append(line)
    return "\n".join(out)


def notebook_to_module(nb: dict, name: str = "the notebook") -> str:
    """The exercise module a notebook holds: its code cells in order, without the autograder test
    cells; ``from __future__`` imports are hoisted to the top, IPython magics turned into ``pass``."""
    cells = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code" or _is_test_cell(cell):
            continue
        cells.append(_python_only(_source(cell)).rstrip())
    body = "\n\n\n".join(c for c in cells if c.strip())
    futures = []
    for m in _FUTURE.finditer(body):
        if m.group(0) not in futures:
            futures.append(m.group(0))
    body = _FUTURE.sub("", body)
    head = f"# rebuilt from {name} by autograder.nbgrader_support (code cells, without the test cells)\n"
    return head + "".join(f + "\n" for f in futures) + "\n" + body.strip("\n") + "\n"


def module_of_notebook_file(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    return notebook_to_module(nb, os.path.basename(path))


# ----------------------------------------------------------------------------- grading
def _exercise(exercise: str):
    from autograder.spec import EXERCISES  # light: dataclasses and re only

    if exercise not in EXERCISES:
        raise CheckFailed(f"unknown exercise {exercise!r}")
    return EXERCISES[exercise]


def grade_module(exercise: str, source: str, timeout: float | None = None) -> dict:
    """Grade ``source`` as the exercise's file with the CLI autograder; return its JSON report."""
    ex = _exercise(exercise)
    key = (exercise, hashlib.sha256(source.encode("utf-8")).hexdigest())
    if key in _CACHE:
        return _CACHE[key]
    timeout = float(timeout or os.environ.get("AUTOGRADER_NBGRADER_TIMEOUT") or 600)
    python = os.environ.get("AUTOGRADER_PYTHON") or sys.executable
    env = dict(os.environ)
    env["PYTHONPATH"] = _PACKAGE_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONWARNINGS"] = "ignore"
    with tempfile.TemporaryDirectory(prefix="ag-nbgrader-") as tmp:
        sub = os.path.join(tmp, "submission")
        os.mkdir(sub)
        with open(os.path.join(sub, ex.filename), "w", encoding="utf-8") as f:
            f.write(source)
        out = os.path.join(tmp, "report.json")
        cmd = [python, "-m", "autograder", os.path.join(sub, ex.filename), "--only", exercise, "--json", out]
        try:
            proc = subprocess.run(cmd, cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"grading {exercise} took longer than {timeout:g} s "
                              "(AUTOGRADER_NBGRADER_TIMEOUT)") from None
        if not os.path.exists(out):
            tail = proc.stdout.decode("utf-8", "replace")[-1500:]
            raise CheckFailed(f"the autograder could not grade {exercise} (exit status {proc.returncode}): {tail}")
        with open(out, encoding="utf-8") as f:
            report = json.load(f)
    if len(_CACHE) > 32:
        _CACHE.clear()
    _CACHE[key] = report
    return report


def _find_notebook(exercise: str, notebook: str | None) -> str:
    path = notebook or os.environ.get("AUTOGRADER_NBGRADER_NOTEBOOK") or f"{exercise}.ipynb"
    if not os.path.isfile(path):
        raise CheckFailed(f"cannot find {path} in {os.getcwd()}: the tests grade the saved notebook file "
                          f"{exercise}.ipynb (keep its name, and run the notebook from its own folder)")
    return path


def check(exercise: str, name: str, hidden: bool = False, notebook: str | None = None) -> None:
    """Pass (print one line) when the autograder check ``name`` of ``exercise`` passes on the code
    of the saved notebook; raise :class:`CheckFailed` otherwise.  Returns ``None`` (a value would
    be read by nbgrader as partial credit).  Every failure is a :class:`CheckFailed` (one line,
    no traceback)."""
    try:
        return _check(exercise, name, hidden, notebook)
    except CheckFailed:
        raise
    except Exception as e:  # noqa: BLE001 -- never a traceback (it would show the cell's source)
        raise CheckFailed(f"could not grade {exercise}: {type(e).__name__}: {e}") from None


def _check(exercise: str, name: str, hidden: bool, notebook: str | None) -> None:
    path = _find_notebook(exercise, notebook)
    source = module_of_notebook_file(path)
    report = grade_module(exercise, source)
    checks = (report.get("exercises", {}).get(exercise) or {}).get("checks", [])
    found = [c for c in checks if c.get("name") == name]
    if not found and not hidden and not report.get("grader_errors") and _is_release():
        raise CheckFailed(f"{exercise} {name}: this check is not in this copy of the autograder (the student "
                          "release has the public checks only); your instructor's grading runs it")
    if not found:
        errors = "; ".join(report.get("grader_errors", []))[:800]
        raise CheckFailed(f"the autograder did not run {exercise} {'(hidden check)' if hidden else name}"
                          + (f": {errors}" if errors else ""))
    c = found[0]
    if c.get("status") == "passed":
        what = "hidden test" if hidden else c.get("title", name)
        print(f"passed: {what} ({c.get('earned', 0):g}/{c.get('points', 0):g} points)")
        if not os.environ.get("NBGRADER_EXECUTION"):
            saved = time.strftime("%H:%M:%S", time.localtime(os.path.getmtime(path)))
            print(f"(graded {os.path.basename(path)} as saved at {saved}: save the notebook before running the tests)")
        return None
    label = KIND_LABELS.get(c.get("kind", ""), c.get("kind") or "failed")
    if hidden:
        raise CheckFailed(f"a hidden test failed ({label})") from None
    raise CheckFailed(f"{c.get('title', name)}: {label}: {c.get('message', '')}".rstrip(": "))


def _is_release() -> bool:
    return os.path.isfile(os.path.join(_PACKAGE_PARENT, "autograder", "release.json"))


# ----------------------------------------------------------------------------- IPython display
def _show_check_failed(shell, etype, value, tb, tb_offset=None):
    """Show a failed check as one line, without the traceback (no source lines of the cell)."""
    stb = [f"\x1b[0;31m{etype.__name__}\x1b[0m: {value}"]
    shell._showtraceback(etype, value, stb)
    return stb


def _install_display() -> None:
    try:
        from IPython import get_ipython
    except Exception:  # noqa: BLE001 -- plain Python: ordinary tracebacks
        return
    shell = get_ipython()
    if shell is not None and CheckFailed not in getattr(shell, "custom_exceptions", ()):
        shell.set_custom_exc((CheckFailed,), _show_check_failed)


_install_display()
