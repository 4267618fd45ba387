"""One feedback file per student (Markdown), from a batch report.

Public checks are shown in full (what failed, on which input, the hint); hidden checks
(``@pytest.mark.hidden``) by their title and pass/fail only, never their inputs or messages.  An
exercise that failed for one reason (no file, not started, does not import) is one line, and a
submission with no exercise file at all is one sentence.  Only the notes ``batch`` gives it are shown:
the instructor's (id-map mismatches, the student's claimed id, file-time lateness) stay in the CSV.
"""
from __future__ import annotations

from ..grading.runner import KIND_LABELS
from ..spec import EXERCISES
from ..grading.visibility import is_hidden


def _pts(x) -> str:
    return "" if x is None else f"{float(x):g}"


def _block(text: str) -> str:
    text = text.replace("```", "'''")
    return "```\n" + text.strip() + "\n```"


def feedback_markdown(rep: dict, student: str, score_line: str | None = None) -> str:
    lines = [f"# Deep Speech 2 exercises: feedback for {student}", ""]
    lines.append(score_line or f"**Score: {_pts(rep.get('score'))} / {_pts(rep.get('max_score'))}**")
    status = rep.get("status") or "ok"
    if status != "ok":
        lines += ["", f"Status: **{status}**"]
    notes = list(rep.get("notes") or [])
    if notes:
        lines += ["", "Notes:", ""] + [f"* {n}" for n in notes]
    hidden_total = 0
    exercises = rep.get("exercises") or {}
    missing = [ex_id for ex_id, ex in exercises.items() if _one_reason(ex) == ("missing", True)]
    if exercises and len(missing) == len(exercises):  # nothing handed in: one line, not one per check
        lines += ["", f"No exercise file was graded ({len(missing)} exercise(s), score 0): hand in the files "
                      "named exNN_<topic>.py (`make handin`)."]
        return "\n".join(lines).rstrip() + "\n"
    for ex_id, ex in exercises.items():
        spec = EXERCISES.get(ex_id)
        lines += ["", f"## {ex_id} {spec.title if spec else ''}: {_pts(ex.get('score'))} / {_pts(ex.get('max_score'))}",
                  ""]
        for f in (rep.get("findings") or {}).get(ex_id, []):
            lines.append(f"* **!** {f}")
        kind, one = _one_reason(ex)
        if one:  # no file, not started, a file that does not import: one line for the exercise
            c = ex["checks"][0]
            lines.append(f"* {KIND_LABELS.get(kind, kind)}: {c.get('message', '')}" if kind != "notimpl" else
                         f"* not started ({', '.join(spec.graded) if spec else 'its functions'}: NotImplementedError)")
            continue
        for c in ex.get("checks", []):
            ok = c.get("status") == "passed"
            mark = "PASS" if ok else "FAIL"
            pts = f"{_pts(c.get('earned'))}/{_pts(c.get('points'))}"
            if is_hidden(ex_id, c.get("name", "")):
                hidden_total += 1
                lines.append(f"* {mark} {pts} {c.get('title', '')} *(hidden check: its inputs are not shown)*")
                continue
            lines.append(f"* {mark} {pts} {c.get('title', '')}")
            if not ok:
                label = KIND_LABELS.get(c.get("kind", ""), c.get("kind", ""))
                lines += ["", _indent(_block(f"{label}: {c.get('message', '')}")), ""]
                if c.get("output"):
                    lines += [_indent("Your code printed:"), "", _indent(_block(c["output"][-1500:])), ""]
    if hidden_total:
        lines += ["", "Hidden checks test the same contracts on other inputs (edge cases, random batches). "
                      "When one fails, run the public checks with `make grade` and test your code on the edge "
                      "cases the exercise's docstring names."]
    return "\n".join(lines).rstrip() + "\n"


def _one_reason(ex: dict) -> tuple[str, bool]:
    """``(kind, True)`` when every check of the exercise failed for one reason that is not about a check
    (no file, not started, an import error, a forbidden call): the feedback gives it one line."""
    checks = ex.get("checks") or []
    if not checks or any(c.get("status") == "passed" for c in checks):
        return "", False
    kinds = {c.get("kind") for c in checks}
    if kinds == {"notimpl"}:
        return "notimpl", True
    if len({(c.get("kind"), c.get("message")) for c in checks}) == 1 and len(checks) > 1:
        return checks[0].get("kind", ""), True
    return "", False


def _indent(text: str) -> str:
    return "\n".join("    " + line if line else line for line in text.splitlines())
