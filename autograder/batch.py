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
parses and is complete, so a run interrupted mid-way (Ctrl-C, SIGTERM, a killed grader) and
started again grades each remaining student exactly once and never keeps a partial score.  The
CSV is written only by this process, atomically, after every grader process is gone.
"""
from __future__ import annotations

import csv
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from .spec import EXERCISES
from .zygote import ZYGOTE_FD_ENV, Zygote, ZygoteError

STUDENT_TIMEOUT = 900.0  # seconds of wall clock per student (all exercises, zip extraction included)

_SAFE = re.compile(r"[^A-Za-z0-9._@+-]+")


def student_name(entry: str) -> str:
    base = os.path.basename(entry.rstrip(os.sep))
    if base.lower().endswith(".zip"):
        base = base[:-4]
    return _SAFE.sub("_", base).strip("._") or "student"


def list_students(submissions: str) -> list[tuple[str, str]]:
    """``(name, path)`` for every sub-folder and ``.zip`` of ``submissions``, sorted by name."""
    out, seen = [], set()
    for entry in sorted(os.listdir(submissions)):
        path = os.path.join(submissions, entry)
        if entry.startswith("."):
            continue
        if os.path.isdir(path) or (os.path.isfile(path) and entry.lower().endswith(".zip")):
            name = student_name(entry)
            if name in seen:
                k = 2
                while f"{name}-{k}" in seen:
                    k += 1
                name = f"{name}-{k}"
            seen.add(name)
            out.append((name, path))
    return out


def _load_report(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) and "score" in data and data.get("complete") is True else None
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- grader processes
STUDENTS_PER_GRADER = 8  # then a fresh grader process (bounds whatever a long run accumulates)
_SERVE = "import sys; from autograder.batch import serve; sys.exit(serve())"


class _Grader:
    """A ``python -c 'autograder.batch.serve()'`` process that grades students one after another.

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

    from .gradeone import cmd_grade_one

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


class BatchInterrupted(KeyboardInterrupt):
    """SIGTERM (or Ctrl-C) during a batch: graders are killed, nothing partial is kept."""


def _time_limit_report(name: str, seconds: float, sandbox: str) -> dict:
    return {"score": 0, "max_score": None, "seconds": round(seconds, 2), "files": {}, "hashes": {},
            "notes": [f"time limit: grading took more than {seconds:g} s (--student-timeout) and was stopped; "
                      f"score 0 (delete this report to grade the student again)"],
            "findings": {}, "grader_errors": [], "sandbox": sandbox, "complete": True, "status": "time limit",
            "exercises": {}, "student": name}


def run_batch(submissions: str, csv_path: str, jobs: int = 1, reports_dir: str | None = None,
              only: list[str] | None = None, progress: bool = True, call_timeout: float | None = None,
              sandbox: str = "bwrap", student_timeout: float = STUDENT_TIMEOUT) -> dict:
    """``sandbox``: ``bwrap`` (each student's workers in a bubblewrap sandbox of their own) or ``off``."""
    if not os.path.isdir(submissions):
        raise FileNotFoundError(f"{submissions}: not a folder")
    if sandbox not in ("bwrap", "off"):
        raise ValueError(f"sandbox must be bwrap or off (got {sandbox!r})")
    reports_dir = reports_dir or os.path.splitext(os.path.abspath(csv_path))[0] + "-reports"
    os.makedirs(reports_dir, exist_ok=True)
    students = list_students(submissions)
    todo = [(n, p) for n, p in students if _load_report(os.path.join(reports_dir, n + ".json")) is None]
    started = time.perf_counter()
    failures: list[str] = []

    from tqdm import tqdm

    from .report import write_json_atomic
    from .sandbox import Limits

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
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
            write_json_atomic(out, _time_limit_report(name, student_timeout, mode_name))
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
        for fut in as_completed(futures):
            name, code, err = fut.result()
            if code is None:
                failures.append(f"{name}: time limit ({student_timeout:g} s): stopped, score 0")
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
    rows = write_csv(csv_path, students, reports_dir)  # every grader (and its workers) is gone
    elapsed = time.perf_counter() - started
    return {"students": len(students), "graded": len(todo), "skipped": len(students) - len(todo),
            "failures": failures, "seconds": elapsed, "csv": csv_path, "reports": reports_dir, "rows": rows,
            "seconds_per_student": elapsed / len(todo) if todo else 0.0, "sandbox": mode_name}


def write_csv(csv_path: str, students: list[tuple[str, str]], reports_dir: str) -> int:
    header = ["student", "score", "max_score"] + list(EXERCISES) + ["status", "sandbox", "notes"]
    d = os.path.dirname(os.path.abspath(csv_path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".csv", dir=d)
    n = 0
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for name, _ in students:
            rep = _load_report(os.path.join(reports_dir, name + ".json"))
            if rep is None:
                w.writerow([name, "", "", *[""] * len(EXERCISES), "not graded", "", ""])
            else:
                exs = rep.get("exercises", {})
                status = rep.get("status") or ("grader error" if rep.get("grader_errors") else "ok")
                notes = "; ".join(rep.get("notes", []))[:1000]
                w.writerow([name, _num(rep["score"]), _num(rep.get("max_score")),
                            *[_num(exs[e]["score"]) if e in exs else "" for e in EXERCISES], status,
                            rep.get("sandbox", ""), notes])
            n += 1
    os.replace(tmp, csv_path)
    return n


def _num(x) -> str:
    return "" if x is None else f"{float(x):g}"
