"""``python -m autograder grade-one``: grade one student's folder or hand-in zip into a JSON report.

Used by ``batch`` (``batch.serve`` calls :func:`cmd_grade_one` in its grading processes).  The
report is written atomically and only when grading finished: an interrupted grading (Ctrl-C,
SIGTERM, a killed process) leaves no report, so a resumed batch grades that student again.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import shutil
import stat
import tempfile
import threading
import time
from dataclasses import dataclass, field

from ..spec import EXERCISES, exercise_of_file, recognise_file


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
    from ..sandbox.host import Limits

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
            "student": student, "status": "refused"}


# ----------------------------------------------------------------------------- finding a student's files
MAX_DEPTH = 4          # folders below a student's folder searched for exercise files
MAX_ENTRIES = 2000     # entries looked at in one student's folder (an LMS download, not a disk)

#: ``status`` of a report (and the CSV): ``ok`` or what was unusual about the submission.
STATUS_OK = "ok"
STATUS_NESTED = "ok (files in a subfolder)"
STATUS_RENAMED = "misnamed files, graded"      # Ex01_spectrogram.py, ex5_conv.py, ex03-wer.py.txt ...
STATUS_UNGRADED = "files not graded"         # .py files whose names name no exercise
STATUS_ZIP_IN_FOLDER = "ok (a zip in the folder)"
STATUS_NO_FILES = "no exercise files"
STATUS_NOTEBOOKS = "notebooks, no .py files"
STATUS_REFUSED = "refused"


def _walk(root: str):
    """``(relative path, full path)`` of the regular files under ``root`` (links never followed), up to
    :data:`MAX_DEPTH` folders down, hidden entries and ``__MACOSX`` skipped."""
    out, stack, seen = [], [(root, 0)], 0
    while stack:
        d, depth = stack.pop()
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for name in names:
            seen += 1
            if seen > MAX_ENTRIES:
                return out
            if name.startswith(".") or name in ("__MACOSX", "__pycache__"):
                continue
            full = os.path.join(d, name)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and depth < MAX_DEPTH:
                stack.append((full, depth + 1))
            elif stat.S_ISREG(st.st_mode):
                out.append((os.path.relpath(full, root), full))
    return sorted(out)


def fingerprint(path: str) -> str:
    """SHA-256 over what a submission holds that could be graded: the zip's bytes, or for a folder the
    relative path and SHA-256 of every exercise file (misnamed ones included: :func:`~autograder.spec.recognise_file`),
    ``.ipynb`` and ``.zip`` in it.  ``batch`` grades
    a student again exactly when this changes (the report's existence alone never decides)."""
    from .runner import sha256_of

    h = hashlib.sha256()
    if os.path.isfile(path):
        h.update(b"file\0" + sha256_of(path).encode())
        return h.hexdigest()
    for rel, full in _walk(path):
        base = os.path.basename(rel)
        if recognise_file(base) or base.lower().endswith((".ipynb", ".zip")):
            try:
                h.update(f"{rel}\0{sha256_of(full)}\n".encode())
            except OSError:
                h.update(f"{rel}\0unreadable\n".encode())
    return h.hexdigest()


@dataclass
class Located:
    """What to grade for one submission, and what was unusual about it."""
    paths: list = field(default_factory=list)   # folders or files for runner.grade
    notes: list = field(default_factory=list)
    status: str = STATUS_OK
    submitted: str = ""          # ISO time
    submitted_from: str = ""     # where that time comes from
    handin_student: str = ""     # the id written by `make handin STUDENT=...` (the student's own claim)
    tmp: str | None = None       # a temporary folder to remove after grading


def _iso_mtime(paths) -> str:
    times = []
    for p in paths:
        try:
            times.append(os.lstat(p).st_mtime)
        except OSError:
            pass
    if not times:
        return ""
    return datetime.datetime.fromtimestamp(max(times)).astimezone().isoformat(timespec="seconds")


def _locate_zip(zip_path: str, shown: str) -> Located:
    from .handin import extract_handin, zip_info

    loc = Located(tmp=tempfile.mkdtemp(prefix="ag-zip-"))
    loc.paths = [loc.tmp]
    problems = extract_handin(zip_path, loc.tmp)
    loc.notes += [f"hand-in: {n}" for n in problems]
    info = zip_info(zip_path)
    if info["created"]:
        loc.submitted, loc.submitted_from = info["created"], "hand-in manifest"
    elif info["newest"]:
        loc.submitted, loc.submitted_from = info["newest"], "newest zip member"
    loc.handin_student = info["student"]
    loc.notes += [f"hand-in: {n}" for n in info.get("manifest_problems", [])]
    if any(p.startswith("refused") or p.startswith("not a readable zip") for p in problems):
        loc.status = STATUS_REFUSED
    elif not any(exercise_of_file(n) for n in os.listdir(loc.tmp)):
        if info["notebooks"]:
            loc.status = STATUS_NOTEBOOKS
            loc.notes.append(_notebook_note(info["notebooks"], shown))
        else:
            loc.status = STATUS_NO_FILES
            loc.notes.append(f"{shown} holds no exercise file (exNN_<topic>.py): nothing to grade, score 0")
    elif any(p.startswith("graded ") for p in problems):
        loc.status = STATUS_RENAMED
    return loc


def _notebook_note(notebooks, shown: str) -> str:
    listed = ", ".join(os.path.basename(n) for n in notebooks[:5]) + (" ..." if len(notebooks) > 5 else "")
    return (f"{shown} holds notebooks ({listed}) but no exercise file (exNN_<topic>.py): score 0. Grade "
            "nbgrader notebooks with `python -m autograder nbgrader --to-py OUT FOLDER`, then batch OUT; or "
            "ask for the .py files (`make handin`)")


def _choose(files) -> tuple[dict, list, list]:
    """One file per exercise among ``files`` (``(rel, full)``): a proper name before a misnamed one, then the
    shallowest, then by name.  Returns ``({ex_id: (rel, full, why misnamed or "")}, dropped, unrecognised .py)``."""
    found, unrecognised = [], []
    for rel, full in files:
        base = os.path.basename(rel)
        hit = recognise_file(base)
        if hit is None:
            if base.lower().endswith((".py", ".py.txt")) and base != "__init__.py":
                unrecognised.append(rel)
            continue
        found.append((bool(hit[1]), rel.count(os.sep), rel, full, hit))
    found.sort(key=lambda t: t[:3])
    chosen, dropped = {}, []
    for _, _, rel, full, (ex, why) in found:
        if ex.id in chosen:
            dropped.append(rel)
        else:
            chosen[ex.id] = (rel, full, why)
    return chosen, dropped, unrecognised


def _stage(chosen: dict, loc: "Located") -> None:
    """Copy the chosen files under their exercises' names into a private folder (links never followed)."""
    from ..sandbox.host import copy_file_nofollow

    loc.tmp = tempfile.mkdtemp(prefix="ag-renamed-")
    loc.paths = [loc.tmp]
    for ex_id, (rel, full, _) in chosen.items():
        try:
            copy_file_nofollow(full, os.path.join(loc.tmp, EXERCISES[ex_id].filename))
        except OSError as e:
            loc.notes.append(f"{rel} could not be read ({e}): not graded")


def stage_misnamed(folder: str) -> tuple[str | None, list[str]]:
    """``python -m autograder FOLDER``: when the folder's top holds misnamed exercise files, a private copy
    of its exercise files under their proper names (to grade instead, then remove) and notes naming them;
    else ``(None, [])``: the folder is graded as it is."""
    try:
        top = [(n, os.path.join(folder, n)) for n in sorted(os.listdir(folder))
               if stat.S_ISREG(os.lstat(os.path.join(folder, n)).st_mode)]
    except OSError:
        return None, []
    chosen, dropped, _ = _choose(top)
    if not any(c[2] for c in chosen.values()):
        return None, []
    loc = Located()
    for ex_id, (rel, _, why) in sorted(chosen.items()):
        if why:
            loc.notes.append(f"graded {rel} as {EXERCISES[ex_id].filename} ({why}); rename it "
                             f"{EXERCISES[ex_id].filename} (`make handin` needs that name)")
    if dropped:
        loc.notes.append(f"also found, not graded (another file for the same exercise was graded): "
                         f"{', '.join(dropped[:10])}")
    _stage(chosen, loc)
    return loc.tmp, loc.notes


def locate(path: str, shown: str | None = None) -> Located:
    """Find a student's exercise files: a hand-in zip; a folder with them at the top (``ok``); a folder
    with them further down (``exercises/`` inside, as LMS downloads and zips of the repository have
    them: graded, with a note); misnamed files (``Ex01_spectrogram.py``, ``ex04_ctc_loss (1).py``,
    ``ex5_conv.py``, ``ex02_ctc_decoding.py.txt``: graded under the exercise's name, with a note naming
    the file, status ``misnamed files, graded``); a folder holding one zip; otherwise a status that says
    why it is 0 (``no exercise files``, ``notebooks, no .py files``).  ``.py`` files whose names name no
    exercise are listed in a note (status ``files not graded`` when no other status applies)."""
    shown = shown or os.path.basename(path.rstrip(os.sep)) or path
    if os.path.isfile(path) and path.lower().endswith(".zip"):
        return _locate_zip(path, shown)
    files = _walk(path)
    chosen, dropped, unrecognised = _choose(files)
    if chosen:
        renamed = {ex_id: c for ex_id, c in chosen.items() if c[2]}
        folders = sorted({os.path.dirname(rel) for rel, _, _ in chosen.values()} - {""})
        loc = Located(submitted_from="newest file's mtime")
        loc.submitted = _iso_mtime([full for _, full, _ in chosen.values()])
        if folders:
            loc.status = STATUS_NESTED
            loc.notes.append(f"the exercise files are not at the top of {shown}/ but in "
                             f"{', '.join(f + '/' for f in folders)}: graded those")
        if renamed:
            loc.status = STATUS_RENAMED
            for ex_id, (rel, _, why) in sorted(renamed.items()):
                loc.notes.append(f"graded {rel} as {EXERCISES[ex_id].filename} ({why}); name it "
                                 f"{EXERCISES[ex_id].filename} next time")
            _stage(chosen, loc)
        elif folders:
            loc.paths = [full for _, full, _ in chosen.values()]
        else:
            loc.paths = [path]  # the runner reads the folder itself (and notes links and duplicates)
        if not (folders or renamed):  # the runner notes two proper names for one exercise itself
            dropped = [rel for rel in dropped if os.sep in rel or exercise_of_file(rel) is None]
        if dropped:
            loc.notes.append(f"also found, not graded (another file for the same exercise was graded): "
                             f"{', '.join(dropped[:10])}")
        if unrecognised:
            if loc.status == STATUS_OK:
                loc.status = STATUS_UNGRADED
            loc.notes.append(f"not graded (the name names no exercise; expected exNN_<topic>.py): "
                             f"{', '.join(unrecognised[:10])}")
        return loc
    try:  # only links: the runner refuses them with a note of its own
        if any(exercise_of_file(n) for n in os.listdir(path)):
            return Located(paths=[path], submitted_from="newest file's mtime")
    except OSError:
        pass
    zips = [full for rel, full in files if rel.lower().endswith(".zip")]
    if len(zips) == 1:
        loc = _locate_zip(zips[0], f"{shown}/{os.path.relpath(zips[0], path)}")
        if loc.status == STATUS_OK:
            loc.status = STATUS_ZIP_IN_FOLDER
        loc.notes.insert(0, f"graded the zip {os.path.relpath(zips[0], path)} found in {shown}/")
        return loc
    loc = Located(paths=[], tmp=tempfile.mkdtemp(prefix="ag-empty-"), submitted_from="newest file's mtime")
    loc.paths = [loc.tmp]
    loc.submitted = _iso_mtime([full for _, full in files])
    notebooks = [rel for rel, _ in files if rel.lower().endswith(".ipynb")]
    if notebooks:
        loc.status = STATUS_NOTEBOOKS
        loc.notes.append(_notebook_note(notebooks, shown))
    else:
        loc.status = STATUS_NO_FILES
        found = ", ".join(rel for rel, _ in files[:8]) + (" ..." if len(files) > 8 else "")
        loc.notes.append(f"{shown}/ holds no exercise file (exNN_<topic>.py)"
                         + (f"; found: {found}" if files else ": it is empty")
                         + (f"; {len(zips)} zips (expected one)" if len(zips) > 1 else "") + "; score 0")
    return loc


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
    from .report import write_json_atomic

    limits = limits_for(args.timeout)
    path = args.path
    if os.path.islink(path.rstrip(os.sep)):
        data = refused_report(args.student, "the submission is a symbolic link: not graded (hand in a folder or "
                                            "a zip, not a link)", limits.sandbox_mode())
        data.update(fingerprint="link", only=args.only or [])
        write_json_atomic(args.json, data)
        return 0
    data = grade_located(path, args.student, args.only, limits)
    write_json_atomic(args.json, data)
    return 0


def grade_located(path: str, student: str, only, limits) -> dict:
    """Locate and grade one submission; the complete report as a dict (with ``status``, ``fingerprint``,
    ``submitted``, ``submitted_from``, ``handin_student``, ``only``)."""
    from .runner import grade

    digest = fingerprint(path)
    loc = locate(path, student or None)
    try:
        # every exercise (or --only's) even when the files were found one by one (a nested layout)
        report = grade(loc.paths, only=list(only or EXERCISES), limits=limits)
        report.notes = loc.notes + report.notes
        data = report.to_dict()
    finally:
        if loc.tmp:
            shutil.rmtree(loc.tmp, ignore_errors=True)
    data.update(student=student, status=("grader error" if data.get("grader_errors") else loc.status),
                fingerprint=digest, submitted=loc.submitted, submitted_from=loc.submitted_from,
                handin_student=loc.handin_student, only=list(only or []),
                graded_at=datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
    return data
