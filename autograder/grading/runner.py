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
import re
import shutil
import stat
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

from . import scan
from ..sandbox import bwrap
from ..sandbox import host as sandbox
from ..sandbox.host import Limits
from ..spec import EXERCISES, exercise_of_file

CHECKS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "checks")

KIND_LABELS = {
    "notimpl": "not implemented yet",
    "wrong": "wrong result",
    "error": "raised an exception",
    "timeout": "timed out",
    "crash": "crashed",
    "memory": "out of memory",
    "output": "printed too much",
    "disk": "wrote too much to disk",
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
    import_errors: dict[str, str] = field(default_factory=dict)  # exercise id -> why its file did not import

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


def _name_needed(path: str, only: list[str] | None) -> str:
    """What to tell a student whose file's name names no exercise (``my_ex04.py``, ``notes.py``)."""
    name = os.path.basename(path)
    m = re.search(r"ex[_ -]?0*(\d{1,2})(?!\d)", name.lower())
    ex = EXERCISES.get(f"ex{int(m.group(1)):02d}") if m else None
    if only and len(only) > 1:
        return (f"{path}: its name does not say which exercise it is, and --only names {len(only)}; "
                f"grade it alone with --only {ex.id if ex else 'exNN'}")
    if ex is not None:
        return f"{path}: not an exercise file name; rename it {ex.filename}, or keep the name and add --only {ex.id}"
    return (f"{path}: not an exercise file name (expected exNN_<topic>.py, e.g. ex04_ctc_loss.py); rename it, "
            "or add --only exNN to say which exercise it is")


def find_exercises_dir(start: str | None = None) -> str:
    """The ``exercises/`` folder of the repository holding ``start`` (default: the current folder):
    ``start`` itself or the nearest ``exercises/`` with exercise files in it, from ``start`` upwards."""
    here = os.path.abspath(start or os.getcwd())
    d = here
    while True:
        for cand in (d, os.path.join(d, "exercises")):
            if os.path.basename(cand) == "exercises" and os.path.isdir(cand) and any(
                    exercise_of_file(n) for n in os.listdir(cand)):
                return os.path.relpath(cand) if cand != here else "."
        parent = os.path.dirname(d)
        if parent == d:
            raise UsageError(f"no exercises/ folder in {here} or above it; run this inside the course repository, "
                             "or say what to grade: python -m autograder FILES_OR_FOLDER")
        d = parent


def find_submission_files(paths: list[str], only: list[str] | None = None) -> tuple[dict[str, str], list[str]]:
    """Map exercise id -> file path from files and/or directories.  Returns (files, notes).

    A file given by name whose name is not an exercise's (``my_ex04.py``) is that exercise when
    ``only`` names exactly one; otherwise it is a :class:`UsageError` saying which name it needs."""
    files: dict[str, str] = {}
    notes: list[str] = []
    candidates: list[str] = []
    renamed: dict[str, str] = {}  # path -> exercise id, for files given as --only's one exercise
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
            ex = exercise_of_file(os.path.basename(p))
            if ex is None and only and len(only) == 1:
                renamed[p] = only[0]
            elif ex is None:
                raise UsageError(_name_needed(p, only))
            candidates.append(p)
        else:
            raise UsageError(f"{p}: no such file or directory")
    for full in candidates:
        ex = EXERCISES[renamed[full]] if full in renamed else exercise_of_file(os.path.basename(full))
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
        self.import_errors: dict[str, tuple[str, str]] = {}  # exercise id -> (kind, message): its file did not import

    interrupted = False

    def pytest_keyboard_interrupt(self, excinfo):
        self.interrupted = True

    def pytest_collectreport(self, report):
        if report.failed:
            self.errors.append(f"could not collect {report.nodeid}: {report.longreprtext[-2000:]}")

    def pytest_collection_modifyitems(self, session, config, items):
        # Hidden checks run after every public check of the submission (each exercise's in a fresh
        # worker, see checks/conftest.py): nothing a hidden check sends can reach a public check's
        # output.  The report keeps the checks' own order.
        self.order = {item.nodeid: i for i, item in enumerate(items)}
        items.sort(key=lambda item: item.get_closest_marker("hidden") is not None)

    order: dict = {}

    def pytest_collection_finish(self, session):
        # A failed check's message comes from its exception (pytest_runtest_makereport below). pytest
        # would also format a long traceback with source for every failed check, never shown here
        # (no terminal plugin) and ~40 ms each: "value" style keeps only the exception's text.
        # Collection errors (before this point) keep pytest's short traceback.
        session.config.option.tbstyle = "value"

    def pytest_runtest_logstart(self, nodeid, location):
        self._start[nodeid] = time.perf_counter()

    def pytest_runtest_setup(self, item):
        # A file that did not import (an infinite loop or an exception at module level) is imported
        # once: its exercise's other checks are not run (each would start a worker and wait again).
        ex_m = item.get_closest_marker("exercise")
        failed = self.import_errors.get(ex_m.args[0]) if ex_m else None
        if failed is not None:
            from ..checks._support import CheckFailed

            raise CheckFailed(f"not run: importing {EXERCISES[ex_m.args[0]].filename} failed in an earlier check",
                              failed[0])

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
        from ..checks._support import CheckFailed

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
            if call.when == "call" and getattr(getattr(sub, "worker", None), "load_error", None) is not None:
                self.import_errors.setdefault(r.exercise, (r.kind, r.message))
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
    limits = limits or Limits.from_env()
    try:
        mode = limits.sandbox_mode()
    except bwrap.SandboxUnavailable as e:
        raise UsageError(str(e)) from None
    private = tempfile.mkdtemp(prefix="ag-files-")  # what is graded: a copy, read once, links refused
    try:
        paths, zip_notes = _unpack_zips(paths, private)
        files, notes = find_submission_files(paths, only)
        report = Report(notes=zip_notes + notes, sandbox=mode)
        if not only and paths and all(os.path.isfile(p) for p in paths):
            only = [ex for ex in EXERCISES if ex in files]  # files named one by one: those exercises only
        selected = [e for e in EXERCISES if not only or e in only]
        return _grade(files, selected, limits, report, private, start)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _unpack_zips(paths: list[str], private: str) -> tuple[list[str], list[str]]:
    """A hand-in zip (``python -m autograder handin``) among ``paths`` becomes the folder it is
    extracted to (checked as ``batch`` checks it); returns the new paths and the zip's notes."""
    from .handin import extract_handin

    out, notes = [], []
    for i, p in enumerate(paths):
        if os.path.isfile(p) and p.lower().endswith(".zip"):
            dest = os.path.join(private, f"zip{i}")
            os.mkdir(dest)
            notes += [f"hand-in {os.path.basename(p)}: {n}" for n in extract_handin(p, dest)]
            out.append(dest)
        else:
            out.append(p)
    return out, notes


def _grade(files, selected, limits, report, private, start) -> Report:
    import pytest

    from ..checks import _support as S

    shown = {}  # exercise id -> the file's own name (the copy has the exercise's, which the worker imports)
    for ex_id, path in list(files.items()):
        copy = os.path.join(private, EXERCISES[ex_id].filename)
        try:
            sandbox.copy_file_nofollow(path, copy)
        except OSError as e:
            report.notes.append(f"{os.path.basename(path)} could not be read ({e.strerror or e}): not graded")
            del files[ex_id]
            continue
        files[ex_id], shown[ex_id] = copy, os.path.basename(path)
    all_files = {os.path.basename(p): p for p in files.values()}
    static = {}
    for ex_id, path in files.items():
        report.files[ex_id] = shown[ex_id]
        report.hashes[shown[ex_id]] = sha256_of(path)
        if ex_id in selected:
            siblings = {EXERCISES[other].module: p for other, p in files.items()}
            found = scan.scan_with_imports(path, EXERCISES[ex_id], siblings)
            static[ex_id] = found
            if found:
                report.findings[ex_id] = [str(f) for f in found]
    if any(ex_id in selected for ex_id in files):
        sandbox.prestart(limits, all_files)  # the zygote imports torch while pytest collects the checks
    S.CONTEXT = S.Context(files={k: v for k, v in files.items() if k in selected}, all_files=all_files,
                          limits=limits, static=static)
    collector = Collector()
    args = ["-c", os.path.join(CHECKS_DIR, "pytest.ini"), "--rootdir", CHECKS_DIR, "--confcutdir", CHECKS_DIR,
            "-p", "no:cacheprovider", "-p", "no:terminal", "-p", "no:stepwise", "-s", "--continue-on-collection-errors",
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
    if collector.interrupted or (int(code) == int(pytest.ExitCode.INTERRUPTED) and not collector.errors):
        raise GradingInterrupted("grading was interrupted: no report written")  # else a check module is broken
    if int(code) not in (0, 1):
        report.grader_errors.append(f"pytest exited with status {int(code)}")
    report.grader_errors.extend(collector.errors)
    report.import_errors = {ex: msg for ex, (_, msg) in collector.import_errors.items()}
    order = {ex: i for i, ex in enumerate(EXERCISES)}
    report.results = [r for _, r in sorted(collector.results.items(), key=lambda kv: (
        order.get(kv[1].exercise, 99), collector.order.get(kv[0], 0)))]
    for r in report.results:
        r.earned = r.points if r.status == "passed" else 0.0
    report.seconds = time.perf_counter() - start
    return report
