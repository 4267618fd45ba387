"""One feedback file per student (Markdown), from a batch report.

Public checks are shown in full (what failed, on which input, the hint); hidden checks
(``@pytest.mark.hidden``) by their title and pass/fail only, never their inputs or messages.
"""
from __future__ import annotations

from .runner import KIND_LABELS
from .spec import EXERCISES
from .visibility import is_hidden


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
    for ex_id, ex in (rep.get("exercises") or {}).items():
        spec = EXERCISES.get(ex_id)
        lines += ["", f"## {ex_id} {spec.title if spec else ''}: {_pts(ex.get('score'))} / {_pts(ex.get('max_score'))}",
                  ""]
        for f in (rep.get("findings") or {}).get(ex_id, []):
            lines.append(f"* **!** {f}")
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


def _indent(text: str) -> str:
    return "\n".join("    " + line if line else line for line in text.splitlines())
