"""Command line: ``python -m autograder [FILES or DIR]`` and its subcommands.

    python -m autograder                      # grade exercises/ (all 11)
    python -m autograder exercises/ --only ex04 --json report.json --gradescope results.json
    python -m autograder batch SUBMISSIONS --csv grades.csv --jobs 2
    python -m autograder handin [DIR] [-o handin.zip]
    python -m autograder generate [--check]    # exercises/ from solutions/ (autograder.generate)
    python -m autograder nbgrader DIR          # an nbgrader course directory (autograder/classroom/NBGRADER.md)
    python -m autograder release DIR           # the student release: public checks only, no solutions/
    python -m autograder gradescope OUT.zip    # the Gradescope autograder zip (hidden checks inside)
    python -m autograder similarity SUBMISSIONS --out DIR   # copydetect report over a class

Exit status: 0 when grading ran (whatever the score), 2 for bad arguments, 3 for a grader failure.
"""
from __future__ import annotations

import argparse
import os
import sys

SUBCOMMANDS = ("batch", "handin", "generate", "nbgrader", "grade-one", "release", "gradescope", "gradescope-run",
               "similarity")
#: Instructor tooling that the student release leaves out (autograder/classroom/release.py): where its module is
#: missing, the subcommand says so instead of a traceback.
INSTRUCTOR_ONLY = {"batch": "classroom/batch", "generate": "generate", "nbgrader": "classroom/nbgrader",
                   "release": "classroom/release", "gradescope": "classroom/gradescope",
                   "gradescope-run": "classroom/gradescope", "similarity": "classroom/similarity"}


def _only(value: str | None) -> list[str] | None:
    from .grading.gradeone import parse_only

    return parse_only(value)


def _limits(timeout):
    from .grading.gradeone import limits_for

    return limits_for(timeout)


def cmd_grade(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m autograder",
                                description="Grade exercise files against the reference (see autograder/README.md). "
                                            f"Subcommands: {', '.join(s for s in SUBCOMMANDS if s not in ('grade-one', 'gradescope-run'))}.")
    p.add_argument("paths", nargs="*", help="exercise files, folders or a hand-in zip (default: the repository's "
                                            "exercises/, found from the current folder upwards)")
    p.add_argument("--only", type=_only, help="grade only these exercises, e.g. ex04 or ex04,ex05")
    p.add_argument("--json", metavar="PATH", help="write the full report as JSON")
    p.add_argument("--gradescope", metavar="PATH", help="write Gradescope's results.json")
    p.add_argument("--timeout", type=float, help="seconds per call into your code (default 10)")
    p.add_argument("-v", "--verbose", action="store_true", help="full messages and your code's output")
    args = p.parse_args(argv)
    from .sandbox import bwrap
    from .grading.report import gradescope, scoreboard, write_json_atomic
    from .grading.runner import GradingInterrupted, UsageError, find_exercises_dir, grade

    try:
        if not args.paths:
            args.paths = [find_exercises_dir()]
        limits = _limits(args.timeout)
        if limits.sandbox_mode() == "process":
            print(bwrap.off_notice(), file=sys.stderr)
        report = _grade_paths(grade, args.paths, args.only, limits)
    except (UsageError, ValueError, bwrap.SandboxUnavailable) as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)  # the one line that says what to do, no usage block
        return 2
    except GradingInterrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return 130
    try:
        print(scoreboard(report, verbose=args.verbose), flush=True)
    except BrokenPipeError:  # `python -m autograder | head`
        sys.stdout = None
    if args.json:
        write_json_atomic(args.json, report.to_dict())
    if args.gradescope:
        write_json_atomic(args.gradescope, gradescope(report))
    return 3 if report.grader_errors else 0


def _grade_paths(grade, paths, only, limits):
    """``grade(paths)``; a folder holding misnamed exercise files (``Ex01_spectrogram.py``, ``ex5_conv.py``)
    is graded from a copy under the proper names, with a note naming each file (autograder.grading.gradeone)."""
    import shutil

    from .grading.gradeone import stage_misnamed

    staged, notes, todo = [], [], []
    try:
        for p in paths:
            tmp, why = stage_misnamed(p) if os.path.isdir(p) else (None, [])
            staged += [tmp] if tmp else []
            notes += why
            todo.append(tmp or p)
        report = grade(todo, only=only, limits=limits)
    finally:
        for tmp in staged:
            shutil.rmtree(tmp, ignore_errors=True)
    report.notes = notes + report.notes
    return report


def cmd_grade_one(argv: list[str]) -> int:
    from .grading.gradeone import cmd_grade_one as run

    return run(argv)


def cmd_batch(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m autograder batch",
                                description="Grade a class: each sub-folder or .zip of SUBMISSIONS is one student. "
                                            "Resumable: students with a report are not graded again.")
    p.add_argument("submissions")
    p.add_argument("--csv", required=True, help="grades CSV to write")
    p.add_argument("--jobs", type=int, default=1, help="students graded in parallel (default 1)")
    p.add_argument("--reports", help="folder for the per-student JSON reports (default: next to the CSV)")
    p.add_argument("--only", type=_only)
    p.add_argument("--timeout", type=float, help="seconds per call into a student's code (default 10)")
    p.add_argument("--student-timeout", type=float, default=None, metavar="S",
                   help="wall-clock seconds for one student's whole grading (default 900; then status "
                        "'time limit', score 0)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="grade without bubblewrap (in-process isolation only: trusted submissions only)")
    p.add_argument("--no-progress", action="store_true")
    # -- a real class (autograder/README.md, "Grading a class"; docs/instructors.md)
    p.add_argument("--regrade", action="append", default=[], metavar="NAME",
                   help="grade this student again even if the files did not change (repeatable; NAME,NAME)")
    p.add_argument("--regrade-all", action="store_true", help="grade every student again")
    p.add_argument("--ids", metavar="MAP.csv",
                   help="CSV 'download name,student id[,submitted[,extension]]': the student_id column, the LMS's "
                        "time, a per-student extension (2d, 36h or an ISO deadline)")
    p.add_argument("--deadline", metavar="ISO", help="e.g. 2026-12-01T23:59 (local time; on time until the end of "
                                                     "that minute) or ...+01:00")
    p.add_argument("--late-from-file-times", action="store_true",
                   help="also penalise lateness measured from file times (default: marked in the status, "
                        "not penalised)")
    p.add_argument("--format", action="append", default=[], metavar="LMS",
                   help="also write an LMS gradebook import next to the CSV: canvas, moodle (repeatable; a,b)")
    p.add_argument("--assignment", metavar="NAME", help="the assignment's column in the Canvas import "
                                                        "(default 'Deep Speech 2 exercises')")
    p.add_argument("--late-rule", metavar="RULE",
                   help="penalty after --deadline: '10%%/day', '10%%/day,cap=50%%', '2%%/hour,grace=15min' or "
                        "'none' (default: marked late, no penalty)")
    p.add_argument("--feedback", metavar="DIR", help="one Markdown feedback file per student (default: next to "
                                                     "the CSV, <csv>-feedback/)")
    args = p.parse_args(argv)
    if args.late_rule and not args.deadline:
        p.error("--late-rule needs --deadline")
    if args.deadline:
        from .classroom.late import LateRuleError, parse_deadline, parse_rule

        try:
            parse_deadline(args.deadline)
        except ValueError:
            p.error(f"--deadline {args.deadline!r}: expected an ISO time such as 2026-12-01T23:59 "
                    "or 2026-12-01T23:59+01:00")
        try:
            parse_rule(args.late_rule)
        except LateRuleError as e:
            p.error(str(e))
    if args.ids and not os.path.isfile(args.ids):
        p.error(f"--ids {args.ids}: no such file")
    regrade = [n.strip() for r in args.regrade for n in r.split(",") if n.strip()]
    if args.jobs < 1:
        p.error("--jobs must be at least 1")
    if args.student_timeout is not None and args.student_timeout <= 0:
        p.error("--student-timeout must be positive")
    if not os.path.isdir(args.submissions):
        p.error(f"{args.submissions}: not a folder")
    from .sandbox import bwrap
    from .classroom.batch import STUDENT_TIMEOUT, run_batch

    if args.no_sandbox:
        sandbox = "off"
    else:
        try:
            sandbox = bwrap.requested()
            if sandbox == "off" or bwrap.mode(sandbox) != "bwrap":
                _, why = bwrap.probe()
                p.error("refusing to batch-grade untrusted submissions without the bubblewrap sandbox "
                        f"({why or 'AUTOGRADER_SANDBOX=off'}); {bwrap.INSTALL_HINT}, or pass --no-sandbox "
                        "if you trust every submission")
            sandbox = "bwrap"
        except (ValueError, bwrap.SandboxUnavailable) as e:
            p.error(str(e))
    try:
        res = run_batch(args.submissions, args.csv, jobs=args.jobs, reports_dir=args.reports, only=args.only,
                        progress=not args.no_progress, call_timeout=args.timeout, sandbox=sandbox,
                        student_timeout=args.student_timeout or STUDENT_TIMEOUT, regrade=regrade,
                        regrade_all=args.regrade_all, ids=args.ids, deadline=args.deadline,
                        late_rule=args.late_rule, feedback_dir=args.feedback,
                        file_times=args.late_from_file_times, assignment=args.assignment,
                        formats=[f.strip().lower() for x in args.format for f in x.split(",") if f.strip()])
    except ValueError as e:
        p.error(str(e))
    print(f"graded {res['graded']} student(s) ({res['regraded']} again: files changed or --regrade), "
          f"{res['skipped']} already done (files unchanged), {res['students']} in {args.csv} "
          f"({res['seconds']:.1f} s; {res['seconds_per_student']:.1f} s per graded student with --jobs {args.jobs})")
    print(f"reports: {res['reports']}")
    print(f"feedback: {res['feedback']} (one .md per student: public checks in full, hidden ones by title)")
    for fmt, path in res["exports"].items():
        print(f"{fmt}: {path} (gradebook import)")
    if res["lms"]:
        kinds = sorted({v["lms"].capitalize() for v in res["lms"].values()})
        print(f"LMS download: {len(res['lms'])} student(s) read from {' and '.join(kinds)} file names")
    for w in res["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    for f in res["failures"]:
        print(f"FAILED: {f}", file=sys.stderr)
    return 3 if res["failures"] else 0


def cmd_handin(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m autograder handin",
                                description="Zip the 11 exercise files with a manifest of their SHA-256 hashes.")
    p.add_argument("directory", nargs="?", default="exercises")
    p.add_argument("-o", "--output", default="handin.zip")
    p.add_argument("--student", default="", help="your student id, recorded in MANIFEST.json")
    args = p.parse_args(argv)
    from .grading.handin import HandinError, build_handin

    if not os.path.isdir(args.directory):
        p.error(f"{args.directory}: not a folder")
    try:
        manifest = build_handin(args.directory, args.output, student=args.student)
    except HandinError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    who = f" (student {manifest['student']})" if manifest.get("student") else \
        " (no student id: `make handin STUDENT=<your id>` or --student records it)"
    print(f"wrote {args.output}: {len(manifest['files'])} exercise files and MANIFEST.json{who}")
    return 0


def cmd_generate(argv: list[str]) -> int:
    from . import generate

    return int(generate.main(argv) or 0)


def cmd_nbgrader(argv: list[str]) -> int:
    from .classroom import nbgrader

    return int(nbgrader.main(argv) or 0)


def cmd_release(argv: list[str]) -> int:
    from .classroom import release

    return int(release.main(argv) or 0)


def cmd_gradescope(argv: list[str]) -> int:
    from .classroom import gradescope

    return int(gradescope.main(argv) or 0)


def cmd_gradescope_run(argv: list[str]) -> int:
    from .classroom import gradescope

    return int(gradescope.run_main(argv) or 0)


def cmd_similarity(argv: list[str]) -> int:
    from .classroom import similarity

    return int(similarity.main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        cmd, rest = argv[0], argv[1:]
        module = INSTRUCTOR_ONLY.get(cmd)
        if module:
            here = os.path.dirname(os.path.abspath(__file__))  # this copy's own files (not an install elsewhere)
            path = os.path.join(here, *module.split("/"))
            if not (os.path.isfile(path + ".py") or os.path.isfile(os.path.join(path, "__init__.py"))):
                print(f"python -m autograder {cmd} is instructor tooling: it is not part of the student release "
                      "(grade your own files with `make grade` or `python -m autograder`)", file=sys.stderr)
                return 2
        return {"batch": cmd_batch, "handin": cmd_handin, "generate": cmd_generate, "nbgrader": cmd_nbgrader,
                "grade-one": cmd_grade_one, "release": cmd_release, "gradescope": cmd_gradescope,
                "gradescope-run": cmd_gradescope_run, "similarity": cmd_similarity}[cmd](rest)
    return cmd_grade(argv)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
