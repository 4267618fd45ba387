"""Hand-in zips: exactly the 11 exercise files plus ``MANIFEST.json`` (SHA-256 of each file).

``python -m autograder handin [DIR] [-o handin.zip]`` builds one; the batch grader accepts them
and checks the manifest (a file whose hash differs, a missing or an extra file is reported).
A zip with more than :data:`MAX_MEMBERS` members or more than :data:`MAX_TOTAL_BYTES` uncompressed
is refused before anything is read (a note in the report says so); a member above
:data:`MAX_MEMBER_BYTES` is skipped.
"""
from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import re
import zipfile

from ..spec import EXERCISES, exercise_of_file, recognise_file

MANIFEST = "MANIFEST.json"
MAX_MEMBER_BYTES = 2 * 1024 * 1024
MAX_MEMBERS = 64                     # a hand-in has 12; more is refused before anything is read
MAX_TOTAL_BYTES = 16 * 1024 * 1024   # uncompressed, all members together


_STUDENT_RE = re.compile(r"[A-Za-z0-9._@+-]{1,100}")


class HandinError(Exception):
    pass


def build_handin(directory: str, output: str, student: str = "") -> dict:
    missing = [ex.filename for ex in EXERCISES.values() if not os.path.isfile(os.path.join(directory, ex.filename))]
    if missing:
        raise HandinError(f"cannot hand in: {len(missing)} exercise file(s) missing from {directory}: "
                          f"{', '.join(missing)} (each of the 11 files must be there, even if unfinished)")
    files = {}
    for ex in EXERCISES.values():
        with open(os.path.join(directory, ex.filename), "rb") as f:
            files[ex.filename] = f.read()
    student = (student or "").strip()
    if student and not _STUDENT_RE.fullmatch(student):
        raise HandinError(f"student id {student!r}: use letters, digits and . _ @ + - only (your id as your "
                          "course lists it)")
    manifest = {"format": "ds2-course-handin", "version": 1,
                "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}}
    if student:
        manifest["student"] = student
    tmp = output + ".part"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr(MANIFEST, json.dumps(manifest, indent=2))
    os.replace(tmp, output)
    return manifest


def extract_handin(zip_path: str, dest: str) -> list[str]:
    """Extract the exercise files of a zip into ``dest`` (flat; nothing else).  Returns problems found."""
    problems: list[str] = []
    try:
        z = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        return [f"not a readable zip file: {e}"]
    with z:
        infos = z.infolist()
        if len(infos) > MAX_MEMBERS:
            return [f"refused: the zip has {len(infos)} members (a hand-in has 12; at most {MAX_MEMBERS} are "
                    "accepted): nothing was extracted, nothing graded"]
        total = sum(max(0, i.file_size) for i in infos)
        if total > MAX_TOTAL_BYTES:
            return [f"refused: the zip's members add up to {total / 1024 ** 2:.1f} MiB uncompressed (at most "
                    f"{MAX_TOTAL_BYTES // 1024 ** 2} MiB are accepted): nothing was extracted, nothing graded"]
        names = z.namelist()
        manifest = None
        if MANIFEST in names:
            try:
                manifest = json.loads(z.read(MANIFEST).decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                problems.append("MANIFEST.json is not valid JSON")
        else:
            problems.append("no MANIFEST.json (not made with `python -m autograder handin`)")
        seen = {}
        for info in z.infolist():
            base = os.path.basename(info.filename)
            if info.is_dir() or base == MANIFEST or not base:
                continue
            hit = recognise_file(base)
            if hit is None:
                problems.append(f"unexpected file {info.filename} (ignored)")
                continue
            if hit[1]:  # Ex01_spectrogram.py, ex5_conv.py ...: graded under the exercise's name
                canonical = hit[0].filename
                if canonical in seen or any(exercise_of_file(os.path.basename(n)) is hit[0] for n in names):
                    problems.append(f"{info.filename}: another file for {hit[0].id} is in the zip (ignored)")
                    continue
                problems.append(f"graded {info.filename} as {canonical} ({hit[1]}); name it {canonical} next time")
                base = canonical
            if info.file_size > MAX_MEMBER_BYTES:
                problems.append(f"{info.filename} is larger than {MAX_MEMBER_BYTES // 1024} KiB (ignored)")
                continue
            if base in seen:
                problems.append(f"{info.filename}: a second {base} (ignored)")
                continue
            try:
                with z.open(info) as member:
                    data = member.read(MAX_MEMBER_BYTES + 1)
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, ValueError) as e:
                problems.append(f"{info.filename} could not be read ({e}) (ignored)")
                continue
            if len(data) > MAX_MEMBER_BYTES:  # its header lied about its size
                problems.append(f"{info.filename} is larger than {MAX_MEMBER_BYTES // 1024} KiB (ignored)")
                continue
            seen[base] = hashlib.sha256(data).hexdigest()
            with open(os.path.join(dest, base), "wb") as f:  # flat: no path from the zip is used
                f.write(data)
        if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict):
            listed = manifest["files"]
            for name, digest in listed.items():
                if name not in seen:
                    problems.append(f"{name} is in the manifest but not in the zip")
                elif seen[name] != digest:
                    problems.append(f"{name} does not match its manifest hash (changed after `handin`?)")
            for name in seen:
                if name not in listed:
                    problems.append(f"{name} is not in the manifest")
    return problems


def check_manifest_fields(data: dict) -> tuple[str, str, list[str]]:
    """``(created, student, problems)`` from a manifest, each field as ``handin`` writes it or ``""``.

    The manifest is written on the student's machine and can say anything: ``student`` must be what
    ``handin --student`` accepts (letters, digits and ``. _ @ + -``, at most 100, not starting with one of
    ``= + - @``: a spreadsheet would read that as a formula), ``created`` an ISO time with its UTC offset.
    Anything else is dropped, with a problem saying which field and why (never copied into the CSV)."""
    problems = []
    student = data.get("student", "")
    if not isinstance(student, str) or (student and (not _STUDENT_RE.fullmatch(student) or student[0] in "=+-@")):
        problems.append(f"the manifest's student field is not a student id ({_shown(student)}): ignored")
        student = ""
    created = data.get("created", "")
    if not isinstance(created, str) or (created and not _iso_with_offset(created)):
        problems.append(f"the manifest's created field is not an ISO time with an offset ({_shown(created)}): "
                        "ignored")
        created = ""
    return created, student, problems


def _shown(value) -> str:
    text = repr(value)
    return text[:40] + ("..." if len(text) > 40 else "")


def _iso_with_offset(text: str) -> bool:
    if len(text) > 40 or not re.fullmatch(r"\d{4}-\d\d-\d\d[T ][0-9:.]+(Z|[+-]\d\d:?\d\d)", text):
        return False
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


def zip_info(zip_path: str) -> dict:
    """What a hand-in zip says about itself, without extracting it: ``created`` and ``student`` from its
    manifest (as the student's machine wrote them, validated: :func:`check_manifest_fields`; what was
    dropped is in ``manifest_problems``), ``newest`` (the newest member's date, ISO, local
    time as stored), ``notebooks`` (``.ipynb`` members) and ``exercise_files`` (how many ``exNN_*.py``)."""
    out = {"created": "", "student": "", "newest": "", "notebooks": [], "exercise_files": 0, "manifest_problems": []}
    try:
        with zipfile.ZipFile(zip_path) as z:
            infos = z.infolist()
            if len(infos) > MAX_MEMBERS:
                return out
            files = [i for i in infos if not i.is_dir()]
            out["notebooks"] = [i.filename for i in files if i.filename.lower().endswith(".ipynb")][:20]
            out["exercise_files"] = sum(1 for i in files if exercise_of_file(os.path.basename(i.filename)))
            dates = [i.date_time for i in files if os.path.basename(i.filename) != MANIFEST]
            if dates:
                out["newest"] = datetime.datetime(*max(dates)).isoformat()
            m = [i for i in files if os.path.basename(i.filename) == MANIFEST and i.file_size < 65536]
            if m:
                data = json.loads(z.read(m[0]).decode("utf-8"))
                if isinstance(data, dict):
                    out["created"], out["student"], out["manifest_problems"] = check_manifest_fields(data)
    except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError, RuntimeError, NotImplementedError):
        pass
    return out
