"""Batch grading of a class: one sub-folder or ``.zip`` per student, resumable.

Each student is graded in its own ``python -m autograder grade-one`` process (``--jobs`` at a
time), which writes ``<reports>/<student>.json`` atomically (temporary file + ``os.replace``).
A student counts as done when that file exists and parses, so a run killed mid-way and started
again grades each remaining student exactly once.  The CSV is rebuilt from all the reports at
the end of every run (also atomically).
"""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from .spec import EXERCISES

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
        return data if isinstance(data, dict) and "score" in data else None
    except (OSError, ValueError):
        return None


def run_batch(submissions: str, csv_path: str, jobs: int = 1, reports_dir: str | None = None,
              only: list[str] | None = None, progress: bool = True, call_timeout: float | None = None) -> dict:
    if not os.path.isdir(submissions):
        raise FileNotFoundError(f"{submissions}: not a folder")
    reports_dir = reports_dir or os.path.splitext(os.path.abspath(csv_path))[0] + "-reports"
    os.makedirs(reports_dir, exist_ok=True)
    students = list_students(submissions)
    todo = [(n, p) for n, p in students if _load_report(os.path.join(reports_dir, n + ".json")) is None]
    started = time.perf_counter()
    failures: list[str] = []

    from tqdm import tqdm

    bar = tqdm(total=len(students), initial=len(students) - len(todo), unit="student", disable=not progress,
               desc="grading", dynamic_ncols=True)
    procs: set = set()
    lock = threading.Lock()

    def grade_one(name: str, path: str) -> tuple[str, int, str]:
        out = os.path.join(reports_dir, name + ".json")
        cmd = [sys.executable, "-m", "autograder", "grade-one", path, "--json", out, "--student", name]
        if only:
            cmd += ["--only", ",".join(only)]
        if call_timeout:
            cmd += ["--timeout", str(call_timeout)]
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=root)
        with lock:
            procs.add(p)
        try:
            _, err = p.communicate()
        finally:
            with lock:
                procs.discard(p)
        return name, p.returncode, err.decode("utf-8", "replace")[-2000:]

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(grade_one, n, p) for n, p in todo]
            for fut in as_completed(futures):
                name, code, err = fut.result()
                if code != 0 or _load_report(os.path.join(reports_dir, name + ".json")) is None:
                    failures.append(f"{name}: grading failed (status {code}): {err.strip()[-500:]}")
                bar.update(1)
    except BaseException:
        with lock:
            for p in procs:
                try:
                    p.send_signal(signal.SIGTERM)
                except OSError:
                    pass
        raise
    finally:
        bar.close()
    rows = write_csv(csv_path, students, reports_dir)
    elapsed = time.perf_counter() - started
    return {"students": len(students), "graded": len(todo), "skipped": len(students) - len(todo),
            "failures": failures, "seconds": elapsed, "csv": csv_path, "reports": reports_dir, "rows": rows,
            "seconds_per_student": elapsed / len(todo) if todo else 0.0}


def write_csv(csv_path: str, students: list[tuple[str, str]], reports_dir: str) -> int:
    header = ["student", "score", "max_score"] + list(EXERCISES) + ["status", "notes"]
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
                w.writerow([name, "", "", *[""] * len(EXERCISES), "not graded", ""])
            else:
                exs = rep.get("exercises", {})
                status = "grader error" if rep.get("grader_errors") else "ok"
                notes = "; ".join(rep.get("notes", []))[:1000]
                w.writerow([name, _num(rep["score"]), _num(rep["max_score"]),
                            *[_num(exs[e]["score"]) if e in exs else "" for e in EXERCISES], status, notes])
            n += 1
    os.replace(tmp, csv_path)
    return n


def _num(x) -> str:
    return f"{float(x):g}"
