"""Turning a :class:`~autograder.grading.runner.Report` into a scoreboard, JSON and Gradescope's results.json."""
from __future__ import annotations

import json
import os
import tempfile

from .runner import KIND_LABELS, Report
from ..spec import EXERCISES


def scoreboard(report: Report, verbose: bool = False, width: int = 100) -> str:
    """The student's view: one line per exercise not started (or not graded: no file, a file that does
    not import, a forbidden call), every check of the ones in progress, the total, how to see output."""
    lines = []
    by_ex = report.by_exercise()
    printed = 0
    for ex_id, checks in by_ex.items():
        ex = EXERCISES.get(ex_id)
        earned = sum(c.earned for c in checks)
        possible = sum(c.points for c in checks)
        head = f"{ex_id} {ex.title if ex else ''}: {_pts(earned)} / {_pts(possible)}"
        fname = report.files.get(ex_id, f"(no {ex.filename if ex else ex_id})")
        failed = [c for c in checks if c.status != "passed"]
        printed += sum(1 for c in checks if c.output)
        one = _one_line(report, ex_id, checks, failed)
        if one is not None:
            lines.append(f"{head}   {one}")
            for f in report.findings.get(ex_id, []):
                lines.append(f"    ! {f}")
            continue
        lines.append(f"{head}   [{fname}]")
        for f in report.findings.get(ex_id, []):
            lines.append(f"    ! {f}")
        for c in checks:
            mark = "PASS" if c.status == "passed" else "FAIL"
            lines.append(f"  {mark} {_pts(c.earned):>4}/{_pts(c.points):<3} {c.title}")
            if c.status != "passed":
                label = KIND_LABELS.get(c.kind, c.kind)
                msg = c.message if (verbose or len(c.message) <= 600) else c.message[:600] + " [...]"
                # "frame_signal: not implemented yet (...)" says it already: no label in front
                lines.append(f"        {msg}" if c.kind == "notimpl" and label in msg else f"        {label}: {msg}")
            if c.output and verbose:
                out = c.output.rstrip("\n")
                cut = len(out) > 800
                lines.append("        your code printed" + (" (the last 800 characters):" if cut else ":"))
                lines += ["          " + line for line in out[-800:].split("\n")]
    lines.append("-" * 40)
    lines.append(f"TOTAL {_pts(report.score)} / {_pts(report.max_score)}   ({report.seconds:.1f} s)")
    for n in report.notes:
        lines.append(f"note: {n}")
    for e in report.grader_errors:
        lines.append(f"GRADER ERROR: {e[:2000]}")
    if not verbose:
        if printed:
            lines.append(f"your code printed something in {printed} check(s); to see it: make grade V=1 "
                         "(or python -m autograder -v)")
        else:
            lines.append("to see what your code prints (print debugging): make grade V=1 (or python -m autograder -v)")
    return "\n".join(lines)


def _one_line(report: Report, ex_id: str, checks, failed) -> str | None:
    """What an exercise with nothing to show check by check says on its own line, else ``None``."""
    if not checks or len(failed) < len(checks):
        return None
    ex = EXERCISES.get(ex_id)
    if all(c.kind == "notimpl" for c in failed):
        names = ", ".join(ex.graded) if ex else "its functions"
        return f"not started ({names}: NotImplementedError)"
    if ex_id in report.import_errors:
        return f"[{report.files.get(ex_id, '')}] not graded: {report.import_errors[ex_id]}"
    if len({(c.kind, c.message) for c in failed}) == 1:  # no file, or a forbidden call: one reason for all
        c = failed[0]
        return c.message if c.kind == "missing" else f"[{report.files.get(ex_id, '')}] {KIND_LABELS.get(c.kind, c.kind)}: {c.message}"
    return None


def _pts(x: float) -> str:
    return f"{x:g}"


def gradescope(report: Report) -> dict:
    """Gradescope's ``results.json``.  A hidden check (``@pytest.mark.hidden``, :mod:`.visibility`) is
    ``"visibility": "after_published"`` and says only passed or failed and why in a word: never its
    inputs, its message or what the code printed."""
    from .visibility import is_hidden

    tests = []
    for c in report.results:
        hidden = is_hidden(c.exercise, c.name)
        if hidden:
            out = "passed (hidden check)" if c.status == "passed" else \
                f"hidden check failed ({KIND_LABELS.get(c.kind, c.kind)}); its inputs are not shown"
        else:
            out = "passed" if c.status == "passed" else f"{KIND_LABELS.get(c.kind, c.kind)}: {c.message}"
            if c.output:
                out += "\n\nyour code printed:\n" + c.output[-2000:]
        tests.append({"name": f"{c.exercise} {c.title}" + (" (hidden)" if hidden else ""), "score": c.earned,
                      "max_score": c.points, "status": "passed" if c.status == "passed" else "failed",
                      "output": out, "visibility": "after_published" if hidden else "visible"})
    notes = list(report.notes) + [f"{ex}: {f}" for ex, fs in report.findings.items() for f in fs]
    out = {"score": report.score, "max_score": report.max_score, "execution_time": round(report.seconds, 2),
           "tests": tests, "visibility": "visible", "stdout_visibility": "hidden",
           "extra_data": {"sandbox": report.sandbox}}  # "bwrap" or "process": what isolated the code
    out["output"] = "\n".join([public_score_line(report.results)] + notes)
    return out


def public_score_line(results) -> str:
    """Gradescope hides the total while any test is hidden (``after_published``): the first line of
    ``results.json``'s output says the public part, and how many points wait for publishing."""
    from .visibility import is_hidden

    pub = [c for c in results if not is_hidden(c.exercise, c.name)]
    hid = [c for c in results if is_hidden(c.exercise, c.name)]
    line = f"public checks: {sum(c.earned for c in pub):g} / {sum(c.points for c in pub):g}"
    if hid:
        line += (f"; hidden checks: {sum(c.points for c in hid):g} points, shown when your instructor publishes "
                 "the grades (the total is hidden until then)")
    return line


def write_json_atomic(path: str, data) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file and ``os.replace`` (never half-written)."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
