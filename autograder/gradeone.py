"""``python -m autograder grade-one``: grade one student's folder or hand-in zip into a JSON report.

Used by ``batch`` (``batch.serve`` calls :func:`cmd_grade_one` in its grading processes).  The
report is written atomically and only when grading finished: an interrupted grading (Ctrl-C,
SIGTERM, a killed process) leaves no report, so a resumed batch grades that student again.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time

from .spec import EXERCISES


def parse_only(value: str | None) -> list[str] | None:
    if not value:
        return None
    out = []
    for part in value.replace(" ", ",").split(","):
        part = part.strip().lower()
        if not part:
            continue
        if part.isdigit():
            part = f"ex{int(part):02d}"
        if part not in EXERCISES:
            raise argparse.ArgumentTypeError(f"unknown exercise {part!r} (expected ex01 .. ex11)")
        out.append(part)
    return out


def limits_for(timeout):
    from .sandbox import Limits

    return Limits.from_env(timeout)


def _watch_parent():
    parent = os.getppid()

    def loop():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(75)

    threading.Thread(target=loop, daemon=True).start()


def refused_report(student: str, note: str, sandbox: str) -> dict:
    """A complete report for a submission that could not be graded at all (score 0, the reason)."""
    return {"score": 0, "max_score": None, "seconds": 0.0, "files": {}, "hashes": {}, "notes": [note],
            "findings": {}, "grader_errors": [], "sandbox": sandbox, "complete": True, "exercises": {},
            "student": student}


def cmd_grade_one(argv: list[str]) -> int:
    """Internal (used by ``batch``): grade one student's folder or zip into a JSON report."""
    p = argparse.ArgumentParser(prog="python -m autograder grade-one")
    p.add_argument("path")
    p.add_argument("--json", required=True)
    p.add_argument("--student", default="")
    p.add_argument("--only", type=parse_only)
    p.add_argument("--timeout", type=float)
    args = p.parse_args(argv)
    _watch_parent()
    from .handin import extract_handin
    from .report import write_json_atomic
    from .runner import grade

    limits = limits_for(args.timeout)
    notes = []
    tmp = None
    path = args.path
    if os.path.islink(path.rstrip(os.sep)):
        write_json_atomic(args.json, refused_report(
            args.student, "the submission is a symbolic link: not graded (hand in a folder or a zip, not a link)",
            limits.sandbox_mode()))
        return 0
    try:
        if os.path.isfile(path) and path.lower().endswith(".zip"):
            tmp = tempfile.mkdtemp(prefix="ag-zip-")
            notes += [f"hand-in: {n}" for n in extract_handin(path, tmp)]
            path = tmp
        report = grade([path], only=args.only, limits=limits)
        report.notes = notes + report.notes
        data = report.to_dict()
        data["student"] = args.student
        write_json_atomic(args.json, data)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0
