"""Command line: ``python -m autograder [FILES or DIR]`` and its subcommands.

    python -m autograder                      # grade exercises/ (all 11)
    python -m autograder exercises/ --only ex04 --json report.json --gradescope results.json
    python -m autograder batch SUBMISSIONS --csv grades.csv --jobs 2
    python -m autograder handin [DIR] [-o handin.zip]
    python -m autograder generate [--check]    # exercises/ from solutions/ (autograder.generate)
    python -m autograder nbgrader DIR          # an nbgrader course directory (autograder/NBGRADER.md)

Exit status: 0 when grading ran (whatever the score), 2 for bad arguments, 3 for a grader failure.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

from .spec import EXERCISES

SUBCOMMANDS = ("batch", "handin", "generate", "nbgrader", "grade-one")


def _only(value: str | None) -> list[str] | None:
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


def _limits(timeout):
    from .sandbox import Limits

    lim = Limits.from_env()
    if timeout:
        lim.call_timeout = float(timeout)
    return lim


def cmd_grade(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m autograder",
                                description="Grade exercise files against the reference (see autograder/README.md). "
                                            f"Subcommands: {', '.join(s for s in SUBCOMMANDS if s != 'grade-one')}.")
    p.add_argument("paths", nargs="*", default=["exercises"], help="exercise files or folders (default: exercises/)")
    p.add_argument("--only", type=_only, help="grade only these exercises, e.g. ex04 or ex04,ex05")
    p.add_argument("--json", metavar="PATH", help="write the full report as JSON")
    p.add_argument("--gradescope", metavar="PATH", help="write Gradescope's results.json")
    p.add_argument("--timeout", type=float, help="seconds per call into your code (default 10)")
    p.add_argument("-v", "--verbose", action="store_true", help="full messages and your code's output")
    args = p.parse_args(argv)
    from .report import gradescope, scoreboard, write_json_atomic
    from .runner import UsageError, grade

    try:
        report = grade(args.paths, only=args.only, limits=_limits(args.timeout))
    except UsageError as e:
        p.error(str(e))
    print(scoreboard(report, verbose=args.verbose))
    if args.json:
        write_json_atomic(args.json, report.to_dict())
    if args.gradescope:
        write_json_atomic(args.gradescope, gradescope(report))
    return 3 if report.grader_errors else 0


def _watch_parent():
    parent = os.getppid()

    def loop():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(75)

    threading.Thread(target=loop, daemon=True).start()


def cmd_grade_one(argv: list[str]) -> int:
    """Internal (used by ``batch``): grade one student's folder or zip into a JSON report."""
    p = argparse.ArgumentParser(prog="python -m autograder grade-one")
    p.add_argument("path")
    p.add_argument("--json", required=True)
    p.add_argument("--student", default="")
    p.add_argument("--only", type=_only)
    p.add_argument("--timeout", type=float)
    args = p.parse_args(argv)
    _watch_parent()
    from .handin import extract_handin
    from .report import write_json_atomic
    from .runner import grade

    notes = []
    tmp = None
    path = args.path
    try:
        if os.path.isfile(path) and path.lower().endswith(".zip"):
            tmp = tempfile.mkdtemp(prefix="ag-zip-")
            notes += [f"hand-in: {n}" for n in extract_handin(path, tmp)]
            path = tmp
        report = grade([path], only=args.only, limits=_limits(args.timeout))
        report.notes = notes + report.notes
        data = report.to_dict()
        data["student"] = args.student
        write_json_atomic(args.json, data)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def cmd_batch(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m autograder batch",
                                description="Grade a class: each sub-folder or .zip of SUBMISSIONS is one student. "
                                            "Resumable: students with a report are not graded again.")
    p.add_argument("submissions")
    p.add_argument("--csv", required=True, help="grades CSV to write")
    p.add_argument("--jobs", type=int, default=1, help="students graded in parallel (default 1)")
    p.add_argument("--reports", help="folder for the per-student JSON reports (default: next to the CSV)")
    p.add_argument("--only", type=_only)
    p.add_argument("--timeout", type=float)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error("--jobs must be at least 1")
    if not os.path.isdir(args.submissions):
        p.error(f"{args.submissions}: not a folder")
    from .batch import run_batch

    res = run_batch(args.submissions, args.csv, jobs=args.jobs, reports_dir=args.reports, only=args.only,
                    progress=not args.no_progress, call_timeout=args.timeout)
    print(f"graded {res['graded']} student(s), {res['skipped']} already done, {res['students']} in {args.csv} "
          f"({res['seconds']:.1f} s; {res['seconds_per_student']:.1f} s per graded student with --jobs {args.jobs})")
    print(f"reports: {res['reports']}")
    for f in res["failures"]:
        print(f"FAILED: {f}", file=sys.stderr)
    return 3 if res["failures"] else 0


def cmd_handin(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m autograder handin",
                                description="Zip the 11 exercise files with a manifest of their SHA-256 hashes.")
    p.add_argument("directory", nargs="?", default="exercises")
    p.add_argument("-o", "--output", default="handin.zip")
    args = p.parse_args(argv)
    from .handin import HandinError, build_handin

    if not os.path.isdir(args.directory):
        p.error(f"{args.directory}: not a folder")
    try:
        manifest = build_handin(args.directory, args.output)
    except HandinError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: {len(manifest['files'])} exercise files and MANIFEST.json")
    return 0


def cmd_generate(argv: list[str]) -> int:
    from . import generate

    return int(generate.main(argv) or 0)


def cmd_nbgrader(argv: list[str]) -> int:
    from . import nbgrader

    return int(nbgrader.main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        cmd, rest = argv[0], argv[1:]
        return {"batch": cmd_batch, "handin": cmd_handin, "generate": cmd_generate, "nbgrader": cmd_nbgrader,
                "grade-one": cmd_grade_one}[cmd](rest)
    return cmd_grade(argv)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
