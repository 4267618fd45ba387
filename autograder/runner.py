"""Grade one submission: find its exercise files, scan them, run the checks with pytest.

pytest runs in the grader's process on the check modules only (``autograder/checks``), with
``-c autograder/checks/pytest.ini`` (so rootdir and the configuration are the checks' own),
``--confcutdir`` at the checks, ``-p no:cacheprovider`` and plugin autoloading off.  Nothing is
ever collected from the submission's folder, so a ``conftest.py`` or ``pytest.ini`` planted there
has no effect.  A small plugin (:class:`Collector`) records each check's outcome and points.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

from . import bwrap, sandbox, scan
from .sandbox import Limits
from .spec import EXERCISES, exercise_of_file

CHECKS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checks")

KIND_LABELS = {
    "notimpl": "not implemented yet",
    "wrong": "wrong result",
    "error": "raised an exception",
    "timeout": "timed out",
    "crash": "crashed",
    "memory": "out of memory",
    "output": "printed too much",
    "exit": "exited",
    "forbidden": "forbidden call or import",
    "missing": "file missing",
    "protocol": "garbled reply",
    "grader": "grader error",
}


@dataclass
class CheckResult:
    exercise: str
    name: str            # the check's function name, e.g. test_ctc_collapse_examples
    title: str           # first line of its docstring
    points: float
    earned: float
    status: str          # "passed" | "failed"
    kind: str = ""       # why it failed (see KIND_LABELS)
    message: str = ""    # the first failing check, for the student
    output: str = ""     # what the student's code printed during this check (truncated)
    seconds: float = 0.0


@dataclass
class Report:
    results: list[CheckResult] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)        # exercise id -> file name
    hashes: dict[str, str] = field(default_factory=dict)       # file name -> sha256
    notes: list[str] = field(default_factory=list)
    findings: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    grader_errors: list[str] = field(default_factory=list)
    sandbox: str = ""    # what isolated the student's code: "bwrap" or "process"

    @property
    def score(self) -> float:
        return round(sum(r.earned for r in self.results), 6)

    @property
    def max_score(self) -> float:
        return round(sum(r.points for r in self.results), 6)

    def by_exercise(self) -> dict[str, list[CheckResult]]:
        out: dict[str, list[CheckResult]] = {}
        for r in self.results:
            out.setdefault(r.exercise, []).append(r)
        return out

    def to_dict(self) -> dict:
        return {
            "score": self.score, "max_score": self.max_score, "seconds": round(self.seconds, 2),
            "files": self.files, "hashes": self.hashes, "notes": self.notes, "findings": self.findings,
            "grader_errors": self.grader_errors, "sandbox": self.sandbox, "complete": True,
            "exercises": {ex: {"score": round(sum(r.earned for r in rs), 6), "max_score": sum(r.points for r in rs),
                               "checks": [asdict(r) for r in rs]} for ex, rs in self.by_exercise().items()},
        }


# ----------------------------------------------------------------------------- finding files
class UsageError(Exception):
    """Bad arguments (exit status 2)."""


class GradingInterrupted(Exception):
    """pytest was interrupted (Ctrl-C, SIGTERM): the report would be partial, so there is none."""


def find_submission_files(paths: list[str]) -> tuple[dict[str, str], list[str]]:
    """Map exercise id -> file path from files and/or directories.  Returns (files, notes)."""
    files: dict[str, str] = {}
    notes: list[str] = []
    candidates: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            for name in sorted(os.listdir(p)):
                full = os.path.join(p, name)
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                if stat.S_ISLNK(st.st_mode):  # never followed: it could point at solutions/ or /etc/passwd
                    if exercise_of_file(name) is not None:
                        notes.append(f"{name} is a symbolic link: not graded (hand in the file itself, not a link)")
                    continue
                if stat.S_ISREG(st.st_mode) and name.endswith(".py"):
                    candidates.append(full)
        elif os.path.isfile(p):
            if exercise_of_file(os.path.basename(p)) is None:
                raise UsageError(f"{p}: not an exercise file (expected a name like ex04_ctc_loss.py)")
            candidates.append(p)
        else:
            raise UsageError(f"{p}: no such file or directory")
    for full in candidates:
        ex = exercise_of_file(os.path.basename(full))
        if ex is None:
            continue
        if ex.id in files:
            keep = files[ex.id] if os.path.basename(files[ex.id]) == ex.filename else full
            other = full if keep == files[ex.id] else files[ex.id]
            if os.path.basename(full) == ex.filename:
                keep, other = full, files[ex.id]
            notes.append(f"{ex.id}: more than one file ({os.path.basename(keep)}, {os.path.basename(other)}); "
                         f"graded {os.path.basename(keep)}")
            files[ex.id] = keep
        else:
            files[ex.id] = full
    return files, notes


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- the pytest plugin
class Collector:
    """Records outcome, points and the first failure message of every check."""

    def __init__(self):
        self.results: dict[str, CheckResult] = {}
        self.errors: list[str] = []
        self._start: dict[str, float] = {}

    interrupted = False

    def pytest_keyboard_interrupt(self, excinfo):
        self.interrupted = True

    def pytest_collectreport(self, report):
        if report.failed:
            self.errors.append(f"could not collect {report.nodeid}: {report.longreprtext[-2000:]}")

    def pytest_collection_finish(self, session):
        # A failed check's message comes from its exception (pytest_runtest_makereport below). pytest
        # would also format a long traceback with source for every failed check, never shown here
        # (no terminal plugin) and ~40 ms each: "value" style keeps only the exception's text.
        # Collection errors (before this point) keep pytest's short traceback.
        session.config.option.tbstyle = "value"

    def pytest_runtest_logstart(self, nodeid, location):
        self._start[nodeid] = time.perf_counter()

    def _result_for(self, item) -> CheckResult:
        r = self.results.get(item.nodeid)
        if r is None:
            points_m = item.get_closest_marker("points")
            ex_m = item.get_closest_marker("exercise")
            doc = (getattr(item.function, "__doc__", None) or "").strip().splitlines()
            r = CheckResult(exercise=ex_m.args[0] if ex_m else "?", name=item.name,
                            title=doc[0].strip() if doc else item.name,
                            points=float(points_m.args[0]) if points_m else 0.0, earned=0.0, status="passed")
            self.results[item.nodeid] = r
        return r

    def pytest_runtest_makereport(self, item, call):
        from .checks._support import CheckFailed

        r = self._result_for(item)
        sub = item.funcargs.get("sub") if hasattr(item, "funcargs") else None
        if call.when == "call" and sub is not None:
            r.output = (sub.test_output or "")[-4000:]
            sub.test_output = ""
        if call.excinfo is None or r.status == "failed":
            return
        exc = call.excinfo.value
        r.status = "failed"
        if isinstance(exc, CheckFailed):
            r.kind, r.message = exc.kind, exc.message
        elif call.excinfo.errisinstance(AssertionError):
            r.kind, r.message = "wrong", str(exc)
        elif type(exc).__name__ == "Failed":  # pytest.fail
            r.kind, r.message = "wrong", str(exc)
        else:
            r.kind = "grader"
            r.message = f"grader error: {type(exc).__name__}: {exc}"
            self.errors.append(f"{item.nodeid}: {str(call.excinfo.getrepr(style='short'))[-1500:]}")

    def pytest_runtest_logfinish(self, nodeid, location):
        r = self.results.get(nodeid)
        if r is not None:
            r.seconds = time.perf_counter() - self._start.get(nodeid, time.perf_counter())
            r.earned = r.points if r.status == "passed" else 0.0


# ----------------------------------------------------------------------------- grading
def check_files(only: list[str] | None = None) -> list[str]:
    out = []
    for ex in EXERCISES.values():
        if only and ex.id not in only:
            continue
        path = os.path.join(CHECKS_DIR, ex.check_module)
        if os.path.exists(path):
            out.append(path)
    return out


def grade(paths: list[str], only: list[str] | None = None, limits: Limits | None = None) -> Report:
    """Grade the exercise files found in ``paths`` (files or folders).

    Raises :class:`GradingInterrupted` rather than return a partial report."""
    start = time.perf_counter()
    if only:
        unknown = [o for o in only if o not in EXERCISES]
        if unknown:
            raise UsageError(f"unknown exercise {', '.join(unknown)} (expected ex01 .. ex11)")
    files, notes = find_submission_files(paths)
    limits = limits or Limits.from_env()
    try:
        mode = limits.sandbox_mode()
    except bwrap.SandboxUnavailable as e:
        raise UsageError(str(e)) from None
    report = Report(notes=notes, sandbox=mode)
    selected = [e for e in EXERCISES if not only or e in only]
    private = tempfile.mkdtemp(prefix="ag-files-")  # what is graded: a copy, read once, links refused
    try:
        return _grade(files, selected, limits, report, private, start)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _grade(files, selected, limits, report, private, start) -> Report:
    import pytest

    from .checks import _support as S

    for ex_id, path in list(files.items()):
        copy = os.path.join(private, os.path.basename(path))
        try:
            sandbox.copy_file_nofollow(path, copy)
        except OSError as e:
            report.notes.append(f"{os.path.basename(path)} could not be read ({e.strerror or e}): not graded")
            del files[ex_id]
            continue
        files[ex_id] = copy
    all_files = {os.path.basename(p): p for p in files.values()}
    static = {}
    for ex_id, path in files.items():
        report.files[ex_id] = os.path.basename(path)
        report.hashes[os.path.basename(path)] = sha256_of(path)
        if ex_id in selected:
            found = scan.scan_file(path, EXERCISES[ex_id])
            static[ex_id] = found
            if found:
                report.findings[ex_id] = [str(f) for f in found]
    if any(ex_id in selected for ex_id in files):
        sandbox.prestart(limits, all_files)  # the zygote imports torch while pytest collects the checks
    S.CONTEXT = S.Context(files={k: v for k, v in files.items() if k in selected}, all_files=all_files,
                          limits=limits, static=static)
    collector = Collector()
    args = ["-c", os.path.join(CHECKS_DIR, "pytest.ini"), "--rootdir", CHECKS_DIR, "--confcutdir", CHECKS_DIR,
            "-p", "no:cacheprovider", "-p", "no:terminal", "-p", "no:stepwise", "-s",
            "--import-mode=importlib", "-W", "ignore::DeprecationWarning"] + check_files(selected)
    old_env = os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    saved_modules = set(sys.modules)
    try:
        code = pytest.main(args, plugins=[collector])
    finally:
        if old_env is None:
            os.environ.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
        else:
            os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = old_env
        for w in S.CONTEXT.workers:
            w.stop()
        sandbox.end_grading()  # a sandboxed zygote is this submission's only: nothing it started survives
        S.CONTEXT = None
        for name in set(sys.modules) - saved_modules:  # let the next run import the checks afresh
            if name.startswith(("autograder.checks.test_", "autograder.checks.conftest", "test_ex", "conftest")):
                del sys.modules[name]
    if int(code) == int(pytest.ExitCode.INTERRUPTED) or collector.interrupted:
        raise GradingInterrupted("grading was interrupted: no report written")
    if int(code) not in (0, 1):
        report.grader_errors.append(f"pytest exited with status {int(code)}")
    report.grader_errors.extend(collector.errors)
    order = {ex: i for i, ex in enumerate(EXERCISES)}
    report.results = sorted(collector.results.values(), key=lambda r: order.get(r.exercise, 99))
    for r in report.results:
        r.earned = r.points if r.status == "passed" else 0.0
    report.seconds = time.perf_counter() - start
    return report
