"""Batch grading of a class: one sub-folder or ``.zip`` per student, resumable.

Each student is graded exactly as ``python -m autograder grade-one`` grades it, ``--jobs`` at a
time, in grader processes that each grade up to :data:`STUDENTS_PER_GRADER` students in turn
(:class:`_Grader`; starting Python, torch and pytest once, not per student).  Under bwrap each
student gets a sandboxed zygote of its own (never shared); with ``--no-sandbox`` the grader
processes share one worker zygote.  Each student's grading has a wall-clock limit
(``--student-timeout``, default :data:`STUDENT_TIMEOUT`): past it the grader process is killed and
the student's report says ``time limit``.

Each student writes ``<reports>/<student>.json`` atomically (temporary file + ``os.replace``),
and only once grading finished (``"complete": true``).  A student counts as done when that file
parses, is complete and its ``fingerprint`` (the SHA-256 of the submission's gradable files,
:func:`autograder.grading.gradeone.fingerprint`) and ``--only`` match the submission as it is now: a
student who changed files is graded again (``--regrade NAME``, ``--regrade-all`` force it).  So a
run interrupted mid-way (Ctrl-C, SIGTERM, a killed grader) and started again grades each remaining
student exactly once and never keeps a partial score.  The CSV (with the submission time, late
penalties and student ids) and the per-student feedback files are written only by this process,
atomically, after every grader process is gone; they are rebuilt from the reports on every run.
"""
from __future__ import annotations

import csv
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from ..spec import EXERCISES
from ..sandbox.zygote import ZYGOTE_FD_ENV, Zygote, ZygoteError

STUDENT_TIMEOUT = 900.0  # seconds of wall clock per student (all exercises, zip extraction included)

_SAFE = re.compile(r"[^A-Za-z0-9._@+-]+")


def student_name(entry: str) -> str:
    base = os.path.basename(entry.rstrip(os.sep))
    if base.lower().endswith(".zip"):
        base = base[:-4]
    return _SAFE.sub("_", base).strip("._") or "student"


#: Canvas's "Download Submissions": ``lastfirst[_LATE]_<user id>_<submission id>_<file as uploaded>``, flat.
CANVAS_FILE = re.compile(r"^(?P<who>[a-z0-9]+?)_(?P<late>late_)?(?P<uid>\d+)_(?P<sid>\d+)_(?P<file>.+)$", re.I)
#: Moodle's "Download all submissions": ``Full Name_<participant id>_assignsubmission_<plugin>_`` folders
#: ("download submissions in folders", the default) or the same prefix on each file (flat).
MOODLE_ENTRY = re.compile(r"^(?P<who>.+?)_(?P<uid>\d+)_assignsubmission_(?P<plugin>[a-z]+)_(?P<file>.*)$")


@dataclass
class ClassFolder:
    """What a class folder holds: ``students`` as ``(name, path)``, ``lms`` (``name -> {"lms": "canvas" |
    "moodle", "id": the LMS's user / participant id, "late": the LMS marked it late}``), ``entries``
    (``name -> the download name(s)``, for the id map), ``skipped`` (entries that are no student)."""
    students: list = field(default_factory=list)
    lms: dict = field(default_factory=dict)
    entries: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)


def _unique(name: str, seen: set) -> str:
    if name in seen:
        k = 2
        while f"{name}-{k}" in seen:
            k += 1
        name = f"{name}-{k}"
    seen.add(name)
    return name


def find_class(submissions: str, staging: str | None = None) -> ClassFolder:
    """The students of a class folder, sorted by name: one sub-folder or ``.zip`` per student (hand-ins,
    copies of the repository), Moodle's folders (``Full Name_12345_assignsubmission_file_/``; the student is
    ``Full_Name_12345``, the LMS id 12345), and flat LMS downloads, Canvas's
    (``lastfirst_12345_678901_ex01_spectrogram.py``: student ``lastfirst_12345``, LMS id 12345) or Moodle's:
    each student's files are copied into ``staging/<student>/`` under the names they were uploaded with
    (``staging`` is emptied first; without it, flat files are skipped)."""
    cf = ClassFolder()
    seen: set = set()
    groups: dict = {}   # (lms, who, uid) -> {"files": [(upload name, path)], "folders": [(plugin, path)], ...}
    for entry in sorted(os.listdir(submissions)):
        path = os.path.join(submissions, entry)
        if entry.startswith(".") or entry == "__MACOSX":
            continue
        is_dir = os.path.isdir(path)
        m = MOODLE_ENTRY.match(entry)
        c = None if m else CANVAS_FILE.match(entry)
        if m and (is_dir or os.path.isfile(path)):
            g = groups.setdefault(("moodle", m.group("who"), m.group("uid")), {"files": [], "folders": [],
                                                                             "late": False, "entries": []})
            g["entries"].append(entry)
            if is_dir:
                g["folders"].append((m.group("plugin"), path))
            elif m.group("file"):
                g["files"].append((m.group("file"), path))
            continue
        if c and os.path.isfile(path) and not os.path.islink(path):
            g = groups.setdefault(("canvas", c.group("who"), c.group("uid")), {"files": [], "folders": [],
                                                                             "late": False, "entries": []})
            g["entries"].append(entry)
            g["files"].append((c.group("file"), path))
            g["late"] = g["late"] or bool(c.group("late"))
            continue
        if is_dir or (os.path.isfile(path) and entry.lower().endswith(".zip")):
            name = _unique(student_name(entry), seen)
            cf.students.append((name, path))
            cf.entries[name] = [entry]
        else:
            cf.skipped.append(entry)
    if groups and staging:
        _reset_staging(staging, submissions)
    for (lms, who, uid), g in groups.items():
        name = _unique(student_name(f"{who}_{uid}"), seen)
        cf.lms[name] = {"lms": lms, "id": uid, "late": g["late"]}
        cf.entries[name] = g["entries"]
        folders = sorted(g["folders"], key=lambda fp: (fp[0] != "file", fp[1]))
        if folders and not g["files"]:
            cf.students.append((name, folders[0][1]))  # the file plugin's folder (online text aside)
            continue
        if not staging:
            cf.skipped += g["entries"]
            del cf.lms[name]
            continue
        dest = os.path.join(staging, name)
        os.makedirs(dest, exist_ok=True)
        for upload, src in g["files"]:
            target = os.path.join(dest, upload.replace(os.sep, "_").lstrip(".") or "file")  # the uploaded name
            if os.path.lexists(target):
                continue
            shutil.copy2(src, target, follow_symlinks=False)  # keeps the file's time (a mark, never a penalty)
        for plugin, src in folders:
            shutil.copytree(src, os.path.join(dest, plugin), symlinks=True, dirs_exist_ok=True)
        cf.students.append((name, dest))
    cf.students.sort()
    return cf


STAGING_MARKER = ".ds2-lms-staging"


def _reset_staging(staging: str, submissions: str) -> None:
    """Empty the folder flat LMS downloads are gathered in: only one this module made (it holds
    :data:`STAGING_MARKER`), never the submissions or a folder holding them."""
    staging, subs = os.path.realpath(staging), os.path.realpath(submissions)
    if staging == subs or subs.startswith(staging + os.sep) or staging.startswith(subs + os.sep):
        raise ValueError(f"{staging}: where a flat LMS download's files are gathered (next to the CSV) is the "
                         f"submissions folder, inside it or holds it: write the CSV outside {submissions}")
    if os.path.lexists(staging):
        if not os.path.isfile(os.path.join(staging, STAGING_MARKER)):
            raise ValueError(f"{staging} exists and was not made by the autograder: it gathers a flat LMS download's "
                             "files there (next to the CSV); move it, or write the CSV elsewhere")
        shutil.rmtree(staging)
    os.makedirs(staging)
    with open(os.path.join(staging, STAGING_MARKER), "w", encoding="utf-8") as f:
        f.write("Each student's files of a flat LMS download, gathered by python -m autograder batch; "
                "rebuilt on every run.\n")


def list_students(submissions: str, staging: str | None = None) -> list[tuple[str, str]]:
    """``(name, path)`` for every student of ``submissions`` (:func:`find_class`), sorted by name."""
    return find_class(submissions, staging).students


def _read_report(path: str):
    """The report if it parses and is complete (a grader error's included), else None."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) and "score" in data and data.get("complete") is True else None
    except (OSError, ValueError):
        return None


def _load_report(path: str):
    """The report if it is a final grade: complete, and not a grader error (a grader error is never a
    final grade: the student is graded again on the next run, and the CSV says so meanwhile)."""
    data = _read_report(path)
    if data is None or data.get("status") == "grader error" or data.get("grader_errors"):
        return None
    return data


# ----------------------------------------------------------------------------- grader processes
STUDENTS_PER_GRADER = 8  # then a fresh grader process (bounds whatever a long run accumulates)
_SERVE = "import sys; from autograder.classroom.batch import serve; sys.exit(serve())"


class _Grader:
    """A ``python -c 'autograder.classroom.batch.serve()'`` process that grades students one after another.

    Each student is exactly what ``python -m autograder grade-one`` does (``cmd_grade_one``),
    called in a process that has already imported torch, pytest and the checks' dependencies
    (~3 s per student saved).  Student code never runs here either: each exercise still runs in
    its own worker.  After a failure, or :data:`STUDENTS_PER_GRADER` students, a fresh process.
    """

    def __init__(self, env: dict, root: str, conn=None):
        self.err = tempfile.TemporaryFile()
        # Its own session: Ctrl-C in the terminal reaches the batch only, which then kills this
        # process (a grading cut off mid-pytest must write nothing).
        self.proc = subprocess.Popen([sys.executable, "-c", _SERVE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, env=env, cwd=root, start_new_session=True,
                                     pass_fds=(conn.fileno(),) if conn is not None else ())
        self.graded = 0

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL this grader and its process group (its sandboxed zygote dies with it)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.kill()
        except OSError:
            pass

    def grade(self, argv: list[str], timeout: float | None = None) -> tuple[int, str]:
        """(exit status, error text); status None when the student's time limit ran out (then killed)."""
        self.graded += 1
        line = b""
        try:
            self.proc.stdin.write((json.dumps(argv) + "\n").encode("utf-8"))
            self.proc.stdin.flush()
            deadline = None if timeout is None else time.monotonic() + timeout
            fd = self.proc.stdout.fileno()
            buf = b""
            while not buf.endswith(b"\n"):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    self.kill()
                    self.proc.wait()
                    return None, f"time limit: more than {timeout:g} s"
                r, _, _ = select.select([fd], [], [], 1.0 if left is None else min(1.0, left))
                if not r:
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                buf += chunk
            line = buf if buf.endswith(b"\n") else b""
        except OSError:
            line = b""
        if not line:
            code = self.proc.wait()
            self.err.seek(0)
            return (code or 1), self.err.read().decode("utf-8", "replace")[-2000:]
        reply = json.loads(line)
        return int(reply.get("code", 1)), str(reply.get("err", ""))[-2000:]

    def close(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.err.close()


def serve() -> int:
    """The grader process's loop: one JSON ``grade-one`` argv per line in, one JSON result per line out."""
    import io
    import traceback

    from ..grading.gradeone import cmd_grade_one

    out = os.fdopen(os.dup(1), "w", encoding="utf-8")  # replies; whatever else prints goes to stderr
    os.dup2(2, 1)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", line_buffering=True)
    for line in sys.stdin:
        try:
            code, err = int(cmd_grade_one(json.loads(line)) or 0), ""
        except SystemExit as e:
            code, err = (e.code if isinstance(e.code, int) else 1) or 0, f"exited: {e.code!r}"
        except BaseException:  # noqa: BLE001 - reported for this student; the batch starts a fresh process
            code, err = 1, traceback.format_exc()[-2000:]
        out.write(json.dumps({"code": code, "err": err}) + "\n")
        out.flush()
    return 0


def _completed(futures, every: float = 0.5):
    """``concurrent.futures.as_completed``, but the waiting (main) thread wakes every ``every`` seconds.

    Ctrl-C or SIGTERM can be delivered to a grading thread; Python then runs the handler in the main thread
    only when that thread runs again.  Blocked until the next student was graded, it let a grading that the
    interrupt should have cut off finish and write its report (a CI run, under load: 214 s late).
    """
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=every, return_when=FIRST_COMPLETED)
        yield from done


class BatchInterrupted(KeyboardInterrupt):
    """SIGTERM (or Ctrl-C) during a batch: graders are killed, nothing partial is kept."""


def _time_limit_report(name: str, seconds: float, sandbox: str, digest: str = "", only=None) -> dict:
    return {"score": 0, "max_score": None, "seconds": round(seconds, 2), "files": {}, "hashes": {},
            "notes": [f"time limit: grading took more than {seconds:g} s (--student-timeout) and was stopped; "
                      f"score 0 (`batch --regrade {name}` grades the student again)"],
            "findings": {}, "grader_errors": [], "sandbox": sandbox, "complete": True, "status": "time limit",
            "exercises": {}, "student": name, "fingerprint": digest, "only": list(only or [])}


def _why_grade(rep: dict | None, digest: str, only, forced: bool) -> str | None:
    """Why a student is graded (again) now, or None when its report is current."""
    if forced:
        return "regrade asked"
    if rep is None:
        return "new"
    if rep.get("status") == "grader error" or rep.get("grader_errors"):
        return "grader error last time"
    if rep.get("fingerprint") != digest:
        return "files changed"
    if list(rep.get("only") or []) != list(only or []):
        return "other --only"
    return None


def run_batch(submissions: str, csv_path: str, jobs: int = 1, reports_dir: str | None = None,
              only: list[str] | None = None, progress: bool = True, call_timeout: float | None = None,
              sandbox: str = "bwrap", student_timeout: float = STUDENT_TIMEOUT, regrade=(),
              regrade_all: bool = False, ids: str | None = None, deadline: str | None = None,
              late_rule: str | None = None, feedback_dir: str | None = None, file_times: bool = False,
              formats=(), assignment: str | None = None) -> dict:
    """``sandbox``: ``bwrap`` (each student's workers in a bubblewrap sandbox of their own) or ``off``.
    ``regrade``: student names graded again whatever their report says; ``ids``: a CSV mapping download
    names to student ids (and LMS times, extensions); ``deadline`` / ``late_rule``: see :mod:`.late`;
    ``file_times``: penalise lateness measured from file times too (default: marked, never penalised);
    ``feedback_dir``: one Markdown feedback file per student (default ``<csv>-feedback/``); ``formats``: LMS
    exports written next to the CSV (:data:`EXPORTS`), ``assignment`` their assignment column.
    Raises ValueError when the folder holds no student."""
    from ..grading.gradeone import fingerprint
    from .late import parse_deadline, parse_rule

    if not os.path.isdir(submissions):
        raise FileNotFoundError(f"{submissions}: not a folder")
    if sandbox not in ("bwrap", "off"):
        raise ValueError(f"sandbox must be bwrap or off (got {sandbox!r})")
    rule = parse_rule(late_rule)
    due = parse_deadline(deadline) if deadline else None
    id_map = read_id_map(ids) if ids else {}
    bad = [f for f in formats if f not in EXPORTS]
    if bad:
        raise ValueError(f"--format {', '.join(bad)}: expected {', '.join(EXPORTS)}")
    reports_dir = reports_dir or os.path.splitext(os.path.abspath(csv_path))[0] + "-reports"
    feedback_dir = feedback_dir or os.path.splitext(os.path.abspath(csv_path))[0] + "-feedback"
    cf = find_class(submissions, os.path.splitext(os.path.abspath(csv_path))[0] + "-lms")
    students = cf.students
    if not students:
        found = ", ".join(cf.skipped[:8]) + (" ..." if len(cf.skipped) > 8 else "")
        raise ValueError(f"{submissions}: no student found (expected one sub-folder or .zip per student, or an LMS "
                         "download: Canvas's lastfirst_12345_678901_<file>, Moodle's "
                         "'Full Name_12345_assignsubmission_file_/')" + (f"; found: {found}" if found else
                                                                          ": the folder is empty"))
    os.makedirs(reports_dir, exist_ok=True)
    names = {n for n, _ in students}
    unknown = [r for r in regrade if r not in names]
    if unknown:
        raise ValueError(f"--regrade: no student named {', '.join(unknown)} in {submissions} "
                         f"(names as in the CSV's student column)")
    todo, reasons, digests = [], {}, {}
    for n, p in students:
        digests[n] = "link" if os.path.islink(p.rstrip(os.sep)) else fingerprint(p)
        why = _why_grade(_read_report(os.path.join(reports_dir, n + ".json")), digests[n], only,
                         regrade_all or n in regrade)
        if why:
            todo.append((n, p))
            reasons[n] = why
    started = time.perf_counter()
    failures: list[str] = []

    from tqdm import tqdm

    from ..grading.report import write_json_atomic
    from ..sandbox.host import Limits

    bar = tqdm(total=len(students), initial=len(students) - len(todo), unit="student", disable=not progress,
               desc="grading", dynamic_ncols=True)
    graders: set = set()
    lock = threading.Lock()
    stopping = threading.Event()
    # Without the sandbox, one zygote for the whole class: each grader process gets its own
    # connection to it.  Under bwrap each student's grading starts its own sandboxed zygote.
    limits = Limits.from_env()
    zyg = Zygote(limits.start_timeout) if todo and sandbox == "off" and limits.worker_mode() == "fork" else None
    local = threading.local()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    mode_name = "bwrap" if sandbox == "bwrap" else "process"

    def start_grader() -> _Grader:
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["AUTOGRADER_SANDBOX"] = sandbox
        env.pop(ZYGOTE_FD_ENV, None)
        conn = None
        if zyg is not None and zyg.alive():
            try:
                conn = zyg.attach()
                env[ZYGOTE_FD_ENV] = str(conn.fileno())
            except ZygoteError:
                conn = None  # the grader starts its own zygote
        try:
            g = _Grader(env, root, conn)
        finally:
            if conn is not None:
                conn.close()
        with lock:
            graders.add(g)
        return g

    def grade_one(name: str, path: str) -> tuple[str, int | None, str]:
        if stopping.is_set():
            return name, -1, "interrupted"
        out = os.path.join(reports_dir, name + ".json")
        argv = [path, "--json", out, "--student", name]
        if only:
            argv += ["--only", ",".join(only)]
        if call_timeout:
            argv += ["--timeout", str(call_timeout)]
        g = getattr(local, "grader", None)
        if g is None or g.graded >= STUDENTS_PER_GRADER or not g.alive():
            if g is not None:
                g.close()
            g = local.grader = start_grader()
        code, err = g.grade(argv, student_timeout)
        if stopping.is_set():
            return name, -1, "interrupted"
        if code is None:
            write_json_atomic(out, _time_limit_report(name, student_timeout, mode_name, digests.get(name, ""),
                                                      only))
        if code != 0:  # a fresh process for the next student
            g.close()
            local.grader = None
        return name, code, err

    def on_sigterm(signum, frame):
        raise BatchInterrupted()

    old_term = None
    if threading.current_thread() is threading.main_thread():
        old_term = signal.signal(signal.SIGTERM, on_sigterm)
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        futures = [pool.submit(grade_one, n, p) for n, p in todo]
        for fut in _completed(futures):
            name, code, err = fut.result()
            if code is None:
                failures.append(f"{name}: time limit ({student_timeout:g} s): stopped, score 0")
            elif code == 0 and (_read_report(os.path.join(reports_dir, name + ".json")) or {}).get("grader_errors"):
                failures.append(f"{name}: grader error (not a final grade: graded again on the next run)")
            elif code != 0 or _load_report(os.path.join(reports_dir, name + ".json")) is None:
                failures.append(f"{name}: grading failed (status {code}): {err.strip()[-500:]}")
            bar.update(1)
    except BaseException:
        stopping.set()
        pool.shutdown(wait=False, cancel_futures=True)
        with lock:
            for g in graders:  # mid-pytest graders die before they write anything
                g.kill()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        with lock:
            for g in graders:  # graders end when their stdin closes (after the last student)
                for f in (g.proc.stdin, g.proc.stdout):
                    try:
                        f.close()
                    except OSError:
                        pass
            for g in graders:
                try:
                    g.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    g.kill()
                    g.proc.wait()
                try:
                    os.killpg(g.proc.pid, signal.SIGKILL)  # anything left in a grader's group
                except OSError:
                    pass
        bar.close()
        if zyg is not None:
            zyg.stop()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    # every grader (and its workers) is gone
    rows, warnings = write_csv(csv_path, students, reports_dir, id_map=id_map, deadline=due, rule=rule,
                               feedback_dir=feedback_dir, entries=cf.entries, lms=cf.lms, file_times=file_times,
                               formats=formats, assignment=assignment)
    if cf.skipped:
        warnings.append(f"{len(cf.skipped)} entr(y/ies) of {submissions} are no student's (not a folder, a .zip or an "
                        f"LMS file name): {', '.join(cf.skipped[:10])}")
    elapsed = time.perf_counter() - started
    regraded = sum(1 for n, _ in todo if reasons[n] != "new")
    return {"students": len(students), "graded": len(todo), "skipped": len(students) - len(todo),
            "regraded": regraded, "reasons": reasons, "failures": failures, "seconds": elapsed, "csv": csv_path,
            "reports": reports_dir, "feedback": feedback_dir, "rows": rows, "warnings": warnings,
            "exports": {f: export_path(csv_path, f) for f in formats}, "lms": cf.lms,
            "seconds_per_student": elapsed / len(todo) if todo else 0.0, "sandbox": mode_name}


# ----------------------------------------------------------------------------- class outputs
CSV_COLUMNS = (["student", "score", "max_score"] + list(EXERCISES)
               + ["student_id", "raw_score", "late", "late_penalty", "deadline", "submitted", "submitted_from",
                  "graded_at", "feedback", "status", "sandbox", "notes"])
#: Submission times that are file times (a download or a copy can change them; the student can set them).
FILE_TIME_SOURCES = ("newest file's mtime", "newest zip member")
STATUS_GRADER_ERROR = "grader error: not final, graded again on the next run"
#: ``--format``: LMS gradebook imports written next to the CSV (``<csv>-<format>.csv``).
EXPORTS = ("canvas", "moodle")
DEFAULT_ASSIGNMENT = "Deep Speech 2 exercises"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value) -> str:
    """A CSV cell a spreadsheet never runs: text starting with ``= + - @`` (or a tab or carriage return)
    gets a leading ``'`` (OWASP's rule against CSV injection).  Every CSV the autograder writes uses it."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def safe_row(row) -> list[str]:
    return [safe_cell(v) for v in row]


def read_id_map(path: str) -> dict[str, dict]:
    """``--ids map.csv``: ``download name -> {"id": ..., "submitted": ..., "extension": ...}``.

    Columns: the name as downloaded (a student's folder or zip, ``.zip`` optional; for a flat Canvas or
    Moodle download the student's name as the CSV shows it, ``lastfirst_12345``, or the LMS id alone), the
    student id, optionally the submission time the LMS recorded (ISO; it then replaces the manifest's or
    the files' time) and optionally an extension (``2d``, ``36h``, ``90min`` or the student's own ISO
    deadline).  A first row whose second cell is not an id (``name,student_id``...) is a header."""
    from .late import LateRuleError, apply_extension, parse_time

    out: dict[str, dict] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if rows and len(rows[0]) >= 2 and rows[0][1].strip().lower().replace(" ", "_") in (
            "id", "student_id", "studentid", "student", "sis_id", "username", "email", "login"):
        rows = rows[1:]
    probe = parse_time("2026-01-01T00:00+00:00")
    for i, r in enumerate(rows, 1):
        if len(r) < 2 or not r[0].strip() or not r[1].strip():
            raise ValueError(f"{path}, row {i}: expected 'download name,student id[,submitted[,extension]]' "
                             f"(got {r!r})")
        name = r[0].strip()
        entry = {"id": r[1].strip(), "submitted": r[2].strip() if len(r) > 2 else "",
                 "extension": r[3].strip() if len(r) > 3 else ""}
        if entry["submitted"]:
            try:
                parse_time(entry["submitted"])
            except ValueError:
                raise ValueError(f"{path}, row {i}: submitted {entry['submitted']!r} is not an ISO time "
                                 "(e.g. 2026-12-01T22:10:00+01:00)") from None
        try:
            apply_extension(probe, entry["extension"])
        except LateRuleError as e:
            raise ValueError(f"{path}, row {i}: {e}") from None
        for key in {name, name[:-4] if name.lower().endswith(".zip") else name, student_name(name)}:
            out[key] = entry
    return out


def export_path(csv_path: str, fmt: str) -> str:
    return os.path.splitext(os.path.abspath(csv_path))[0] + f"-{fmt}.csv"


def write_csv(csv_path: str, students: list[tuple[str, str]], reports_dir: str, id_map: dict | None = None,
              deadline=None, rule=None, feedback_dir: str | None = None, entries: dict | None = None,
              lms: dict | None = None, file_times: bool = False, formats=(),
              assignment: str | None = None) -> tuple[int, list[str]]:
    """The class CSV (and, with ``feedback_dir``, one ``<student>.md`` per graded student; with
    ``formats``, the LMS imports), rebuilt from the reports.  Returns (rows, warnings)."""
    from .feedback import feedback_markdown
    from .late import LateRule, apply_extension, describe, lateness

    rule = rule or LateRule()
    id_map = id_map or {}
    entries = entries or {}
    lms = lms or {}
    warnings: list[str] = []
    d = os.path.dirname(os.path.abspath(csv_path))
    os.makedirs(d, exist_ok=True)
    if feedback_dir:
        os.makedirs(feedback_dir, exist_ok=True)
    rows: list[dict] = []
    unmapped, ids_seen = [], {}
    for name, _ in students:
        rep = _read_report(os.path.join(reports_dir, name + ".json"))
        keys = list(entries.get(name) or []) + [name] + ([lms[name]["id"]] if name in lms else [])
        mapped = next((id_map[k] for k in keys if k in id_map), None)
        student_id = (mapped or {}).get("id", "")
        instructor: list[str] = []  # notes for the CSV only, never the student's feedback
        if not student_id and name in lms:
            student_id = lms[name]["id"]
            instructor.append(f"student id {student_id} from the {lms[name]['lms'].capitalize()} download's names")
        if id_map and not mapped:
            unmapped.append(name)
        row = {c: "" for c in CSV_COLUMNS}
        row.update(student=name, student_id=student_id)
        if name in lms and lms[name].get("late"):
            instructor.append("Canvas marked this submission late (LATE in its file names)")
        if rep is None:
            row["status"] = "not graded"
            row["notes"] = "; ".join(instructor)
            rows.append(row)
            continue
        notes = list(rep.get("notes", []))  # the student's: what was graded and how
        claimed = rep.get("handin_student") or ""
        if not student_id and claimed:
            student_id = claimed
            instructor.append(f"student id {claimed!r} from the hand-in manifest (the student's own claim)")
        elif claimed and claimed != student_id:
            instructor.append(f"the hand-in manifest says student {claimed!r}, the id map {student_id!r}")
        if student_id:
            ids_seen.setdefault(student_id, []).append(name)
        submitted, source = rep.get("submitted") or "", rep.get("submitted_from") or ""
        if mapped and mapped.get("submitted"):
            submitted, source = mapped["submitted"], "id map"
        raw = rep.get("score")
        status = rep.get("status") or ("grader error" if rep.get("grader_errors") else "ok")
        late_txt, penalty, final, due = "", 0.0, raw, deadline
        if deadline is not None:
            ext = (mapped or {}).get("extension", "")
            due = apply_extension(deadline, ext)
            if ext:
                notes.append(f"extension {ext}: due {due.isoformat(timespec='seconds')}")
            lt = lateness(submitted, due, rule)
            if lt is None:
                late_txt = "unknown"
                instructor.append("no readable submission time: no late penalty applied (check by hand)")
            else:
                late_txt = describe(lt[0])
                penalty = lt[1]
                if lt[0] > 0 and source in FILE_TIME_SOURCES:
                    late_txt += " (file times)"
                    matters = bool(penalty and raw)  # a rule with a penalty, and a score it would cut
                    if file_times:
                        status += "; late by file times (penalised)" if matters else ""
                        instructor.append(f"late by the {source}: penalised (--late-from-file-times)")
                    else:
                        status += "; late by file times (not penalised)" if matters else ""
                        instructor.append(f"late by the {source}: not penalised, file times are not submission "
                                          "times (put the LMS's time in the id map's third column, or pass "
                                          "--late-from-file-times)")
                        penalty = 0.0
                if penalty and raw is not None:
                    final = round(float(raw) * (1 - penalty / 100), 4)
                    notes.append(f"late ({late_txt}; rule {rule.text}): -{penalty:g}% of {float(raw):g}")
        if rep.get("grader_errors") or rep.get("status") == "grader error":
            status = STATUS_GRADER_ERROR
            instructor.append(f"partial score {_num(raw)} while the grader failed: not a grade")
            final = None
        exs = rep.get("exercises", {})
        fb = ""
        if feedback_dir and final is not None:
            fb_path = os.path.join(feedback_dir, name + ".md")
            line = f"**Score: {_num(final)} / {_num(rep.get('max_score'))}**"
            if penalty:
                line += f" (checks: {_num(raw)}; late {late_txt}: -{penalty:g}%)"
            _write_text_atomic(fb_path, feedback_markdown(dict(rep, notes=notes), name, line))
            fb = os.path.relpath(fb_path, d)
        row.update({e: _num(exs[e]["score"]) if e in exs else "" for e in EXERCISES})
        row.update(score=_num(final), max_score=_num(rep.get("max_score")), student_id=student_id, raw_score=_num(raw),
                   late=late_txt, late_penalty=f"{penalty:g}" if deadline is not None else "",
                   deadline=due.isoformat(timespec="seconds") if due is not None else "", submitted=submitted,
                   submitted_from=source, graded_at=rep.get("graded_at", ""), feedback=fb, status=status,
                   sandbox=rep.get("sandbox", ""), notes="; ".join(notes + instructor)[:1000])
        rows.append(row)
    _write_csv_atomic(csv_path, CSV_COLUMNS, [[r[c] for c in CSV_COLUMNS] for r in rows])
    for fmt in formats:
        header, body = _export(fmt, rows, lms, assignment or DEFAULT_ASSIGNMENT)
        _write_csv_atomic(export_path(csv_path, fmt), header, body)
    if unmapped:
        warnings.append(f"{len(unmapped)} submission(s) not in the id map: {', '.join(unmapped[:20])}")
    for sid, who in ids_seen.items():
        if len(who) > 1:
            warnings.append(f"student id {sid} belongs to {len(who)} submissions: {', '.join(who)}")
    return len(rows), warnings


#: The columns of each LMS export (docs/instructors.md lists them; tests/test_batch_class.py checks it).
EXPORT_COLUMNS = {
    # Canvas: Grades -> Import.  Students are matched by ID (Canvas's user id) or SIS User ID; a column
    # named after an assignment that does not exist yet creates it.  The second row holds the points.
    "canvas": ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "{assignment}"],
    # Moodle: the assignment's "Upload grading worksheet" (Identifier "Participant <id>") ...
    "moodle": ["Identifier", "Full name", "Grade", "Maximum grade", "Feedback comments"],
}


def _export(fmt: str, rows: list[dict], lms: dict, assignment: str) -> tuple[list, list]:
    """An LMS import from the CSV's rows.  A row without a final score (not graded, a grader error) has an
    empty grade: the LMS leaves that student's grade as it was."""
    header = [c.replace("{assignment}", assignment) for c in EXPORT_COLUMNS[fmt]]
    body = []
    if fmt == "canvas":
        max_score = next((r["max_score"] for r in rows if r["max_score"]), "")
        body.append(["Points Possible", "", "", "", "", max_score])
        for r in rows:
            info = lms.get(r["student"], {})
            canvas_id = info.get("id", "") if info.get("lms") == "canvas" else ""
            sis = r["student_id"] if r["student_id"] != canvas_id else ""
            body.append([r["student"], canvas_id, sis, "", "", r["score"]])
    elif fmt == "moodle":
        for r in rows:
            info = lms.get(r["student"], {})
            ident = f"Participant {info['id']}" if info.get("lms") == "moodle" else r["student_id"]
            comment = "" if r["status"] == "ok" else r["status"]
            body.append([ident, r["student"], r["score"], r["max_score"], comment])
    return header, body


def _write_csv_atomic(path: str, header, body) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".csv", dir=d)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(safe_row(header))
        for row in body:
            w.writerow(safe_row(row))
    os.replace(tmp, path)


def _write_text_atomic(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".md", dir=os.path.dirname(os.path.abspath(path)))
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _num(x) -> str:
    return "" if x is None else f"{float(x):g}"
